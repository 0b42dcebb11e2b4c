#!/usr/bin/env bash
# Builds and runs bench-cluster (bench/cluster_bench.c): craft as 3 processes on 127.0.0.1 beside
# canonical/raft and hashicorp/raft, benchmarks B0, B1, B2, B5 (B4 with --b4) of docs/benchmarks.md.
#
#   scripts/bench-cluster.sh            # the full table, about 10 minutes with both peers
#   scripts/bench-cluster.sh --quick    # about one minute
#   scripts/bench-cluster.sh --help     # every option
#   scripts/bench-cluster.sh -w 1,16,64,256,1024 -t 10 -r 3 -f 20   # BENCHMARKS.md's points
#   scripts/bench-cluster.sh --security tls --only b1 -w 1,256 --no-peer   # what TLS costs
#
# The project requires neither peer. The canonical/raft column needs its headers and library,
# libraft-dev (Debian 12: 0.15), which `make bench-deps` installs (this script runs it first).
# The hashicorp/raft column needs Go
# (>= 1.22; `go` on PATH, $GO, or /usr/local/go/bin/go): bench-cluster builds the Go harness
# bench/peers/hashicorp (its go.mod pins hashicorp/raft v1.7.2 and raft-boltdb/v2 v2.3.1, fetched
# from the Go module proxy on the first build). A peer that is missing is skipped with a line
# "<peer>: skipped: <why>" and its columns read n/a; --peers picks the peers.
# BUILD_DIR (default cbuild/default) is the CMake build directory to use.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-cbuild/default}
make -s bench-deps || true   # canonical/raft's library, when the archive has it
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
env -u MAKEFLAGS -u MAKELEVEL cmake --build "$BUILD_DIR" --target bench-cluster -j2 >/dev/null
if [ "${1:-}" = "--help" ]; then
    sed -n '2,40p' bench/cluster_bench.c | sed -n '/^ \* *bench-cluster \[/,/^ \*\/$/p'
    exit 0
fi
exec "$BUILD_DIR/bench-cluster" "$@"
