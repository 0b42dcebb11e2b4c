#!/usr/bin/env bash
# Builds the wire codec's libFuzzer target with clang into cbuild/fuzz and runs it.
#   scripts/fuzz.sh [SECONDS]      default 60; exits non-zero if the fuzzer found a crash
# The seed corpus is generated from valid encodings of every message type at each run (into
# cbuild/fuzz/corpus/seeds); what the fuzzer finds accumulates in cbuild/fuzz/corpus/fuzz_frame
# across runs, and a crashing input is saved as cbuild/fuzz/artifacts/crash-*.
# Re-run one input:  cbuild/fuzz/fuzz_frame cbuild/fuzz/artifacts/crash-...
# Environment: CRAFT_FUZZ_BUILD_DIR (default cbuild/fuzz), CRAFT_FUZZ_ARGS (more libFuzzer flags).
set -euo pipefail

seconds=${1:-60}
case $seconds in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
build=${CRAFT_FUZZ_BUILD_DIR:-cbuild/fuzz}

command -v clang >/dev/null || { echo "fuzz: clang is not installed (make deps)" >&2; exit 2; }

# Optimized with debug info: libFuzzer needs speed more than single-stepping. Only the fuzz
# target is built (no tests, tools or benchmarks).
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCRAFT_FUZZ=ON -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" --target fuzz_frame -j"${JOBS:-2}"

seeds=$build/corpus/seeds
corpus=$build/corpus/fuzz_frame
artifacts=$build/artifacts
rm -rf "$seeds"
mkdir -p "$seeds" "$corpus" "$artifacts"
CRAFT_FUZZ_WRITE_CORPUS=$seeds "$build/fuzz_frame"

# allocator_may_return_null: a huge malloc returns NULL (the codec must cope) instead of
# aborting; -malloc_limit_mb still reports any single allocation above the limit as a bug.
# halt_on_error: undefined behaviour is a crash, not a warning libFuzzer would ignore.
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# shellcheck disable=SC2086 # CRAFT_FUZZ_ARGS is a list of flags
"$build/fuzz_frame" -max_total_time="$seconds" -malloc_limit_mb=512 -rss_limit_mb=2048 \
    -timeout=10 -print_final_stats=1 -artifact_prefix="$artifacts/" ${CRAFT_FUZZ_ARGS:-} \
    "$corpus" "$seeds"
