#!/usr/bin/env bash
# Builds and runs bench-cluster (bench/cluster_bench.c): craft as 3 processes on 127.0.0.1 beside
# canonical/raft, benchmarks B0, B1, B2, B5 (B4 with --b4) of docs/benchmarks.md.
#
#   scripts/bench-cluster.sh            # the full table, about 7 minutes
#   scripts/bench-cluster.sh --quick    # about one minute
#   scripts/bench-cluster.sh --help     # every option
#
# The peer column needs canonical/raft's headers and library, which the project does not
# require: `sudo apt-get install libraft-dev` (Debian 12: 0.15). Without them the benchmark
# prints "canonical/raft: not installed (apt-get install libraft-dev)" and the craft column.
# BUILD_DIR (default cbuild/default) is the CMake build directory to use.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-cbuild/default}
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
env -u MAKEFLAGS -u MAKELEVEL cmake --build "$BUILD_DIR" --target bench-cluster -j2 >/dev/null
if [ "${1:-}" = "--help" ]; then
    sed -n '2,40p' bench/cluster_bench.c | sed -n '/^ \* *bench-cluster \[/,/^ \*\/$/p'
    exit 0
fi
exec "$BUILD_DIR/bench-cluster" "$@"
