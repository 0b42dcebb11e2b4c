#!/usr/bin/env bash
# B1/B2/B3/B6 for Python: craft (state machine in Python) against PySyncObj, same run.
# Installs craft into .venv when it is missing there (make python-install); PySyncObj goes into
# bench/.venv-pysyncobj (bench/python_bench.py creates it). Arguments go to the benchmark:
#   scripts/bench-python.sh            # full run, ~12-15 minutes
#   scripts/bench-python.sh --quick    # ~1-2 minutes, a smoke test, not a measurement
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/python -c 'import craft' 2>/dev/null; then
    make python-install
fi
exec .venv/bin/python bench/python_bench.py "$@"
