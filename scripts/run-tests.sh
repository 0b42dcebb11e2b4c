#!/usr/bin/env bash
# Builds both CMake trees and runs every test suite of craft, whatever fails along the way:
#   ctest in cbuild/default (RelWithDebInfo, -Werror) and cbuild/asan (ASan + UBSan),
#   pytest over python/tests (once it holds tests), the scenario transcripts of tests/transcripts
#   (python -m craft.sim run), tests/faults, tests/powerloss (power cuts under the lazyfs shim of
#   cbuild/default, about a minute) and tests/packaging (the sdist,
#   the repaired wheel and the version, through one `make wheel`), busted over spec/ once it
#   holds specs. pytest is the project's own: .venv/bin/python (made by `make venv`).
# Its last line sums all suites: "N passed, N failed" (", N skipped" when some were). A build
# that fails counts as one failed test; it keeps going, so every target that compiles is built
# and its tree's tests still run (a test whose program did not build fails as "Not Run").
# Exits 1 if anything failed.
#
# Called by `make test` (which passes MAKE and BUILD_DIR). Environment knobs:
#   CTEST_PARALLEL_LEVEL       ctest's own: run that many tests at once (default 1)
#   CRAFT_ASAN_SOAK_SEEDS      CRAFT_SOAK_SEEDS for the sanitizer tree (default 200)
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
MAKE=${MAKE:-make}
BUILD_DIR=${BUILD_DIR:-cbuild}

total_passed=0
total_failed=0
total_skipped=0
recap=()
log=$(mktemp "${TMPDIR:-/tmp}/craft-tests.XXXXXX") || exit 2
trap 'rm -f "$log"' EXIT

# record SUITE PASSED FAILED SKIPPED [NOTE]
record() {
    total_passed=$((total_passed + $2))
    total_failed=$((total_failed + $3))
    total_skipped=$((total_skipped + $4))
    # Deliberately not in the "N passed, N failed" shape: only the last line is the summary.
    local line
    line=$(printf '  %-24s pass %-5d fail %-5d skip %-5d %s' "$1" "$2" "$3" "$4" "${5:-}")
    recap+=("${line%"${line##*[! ]}"}")
}

banner() {
    printf '\n==== %s\n' "$*"
}

# Strips colours and carriage returns from a captured log.
plain() {
    sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g' -e 's/\r//g' "$log"
}

# --- C: build both trees, then ctest in each --------------------------------------------------

declare -A built
for tree in default asan; do
    banner "build $BUILD_DIR/$tree"
    if "$MAKE" --no-print-directory "build-$tree" KEEP_GOING=1; then
        built[$tree]=1
    elif [ -f "$BUILD_DIR/$tree/CTestTestfile.cmake" ]; then
        built[$tree]=1
        record "build $tree" 0 1 0 "build failed: see the errors above"
    else
        built[$tree]=0
        record "build $tree" 0 1 0 "configure failed: its tests were not run"
    fi
done

# run_ctest TREE [VAR=value...]
run_ctest() {
    local tree=$1
    shift
    local suite="ctest $tree"
    [ "${built[$tree]}" = 1 ] || return 0

    banner "$suite ($BUILD_DIR/$tree)"
    (cd "$BUILD_DIR/$tree" && env "$@" ctest --output-on-failure) 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}

    # "83% tests passed, 1 tests failed out of 6": the total counts skipped tests (SKIP_RETURN_CODE)
    # as passed; they are listed as "(Skipped)" under "The following tests did not run:".
    local line total failed skipped note=""
    line=$(plain | grep -E '^[0-9]+% tests? passed, [0-9]+ tests? failed out of [0-9]+' | tail -n 1)
    if [ -n "$line" ]; then
        failed=$(sed -E 's/.* ([0-9]+) tests? failed.*/\1/' <<<"$line")
        total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
        skipped=$(plain | awk '/^The following tests did not run:/ { s = 1; next }
                               s && /^[ \t]+[0-9]+ - .*\(Skipped\)$/ { n++; next }
                               s && !/^[ \t]/ { s = 0 }
                               END { print n + 0 }')
    elif plain | grep -q '^No tests were found'; then
        total=0 failed=0 skipped=0 note="no tests"
    else
        total=0 failed=1 skipped=0 note="ctest printed no summary"
    fi
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
        failed=1
        note="ctest exited $rc"
    fi
    record "$suite" $((total - failed - skipped)) "$failed" "$skipped" "$note"
}

run_ctest default
run_ctest asan \
    CRAFT_SOAK_SEEDS="${CRAFT_ASAN_SOAK_SEEDS:-200}" \
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"

# --- Fuzzing: the wire decoder under libFuzzer, bounded --------------------------------------

# Any byte string must decode or be refused, never crash or over-allocate (docs/wire.md). The
# corpus grows in cbuild/fuzz across runs. CRAFT_FUZZ_SECONDS=0 skips it.
run_fuzz() {
    local secs=${CRAFT_FUZZ_SECONDS:-60}
    if [ "$secs" = 0 ]; then
        record "fuzz frame decoder" 0 0 1 "skipped: CRAFT_FUZZ_SECONDS=0"
        return 0
    fi
    banner "libFuzzer: fuzz_frame for ${secs}s (scripts/fuzz.sh)"
    if ! command -v clang >/dev/null; then
        echo "clang is not installed (make deps installs it)"
        record "fuzz frame decoder" 0 1 0 "clang missing: run make deps"
        return 0
    fi
    if bash scripts/fuzz.sh "$secs" >"$log" 2>&1; then
        grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|Done )' "$log" | tail -n 3
        record "fuzz frame decoder" 1 0 0 "$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' || true) runs, no crash"
    else
        tail -n 40 "$log"
        record "fuzz frame decoder" 0 1 0 "crash or build failure: see cbuild/fuzz/artifacts"
    fi
}

run_fuzz

# --- Python: pytest over python/tests, tests/faults and tests/packaging ----------------------

# run_pytest DIR: one suite per folder, each with its own line in the recap.
# pytest exits 5 when it collects nothing. A folder without test files is 0 tests; a folder with
# test files from which nothing was collected is a failure, never a pass by accident.
run_pytest() {
    local dir=$1
    local suite="pytest $dir"
    local files
    files=$(find "$dir" \( -name 'test_*.py' -o -name '*_test.py' \) 2>/dev/null | head -n 1)
    if [ -z "$files" ]; then
        banner "pytest: no tests in $dir yet"
        return 0
    fi

    # Only the project's venv: a pytest installed by hand elsewhere must not make CI pass.
    local py=.venv/bin/python
    banner "$suite ($py)"
    if ! [ -x "$py" ] || ! "$py" -c 'import pytest' 2>/dev/null; then
        echo "pytest is not installed in .venv (make venv creates it)"
        record "$suite" 0 1 0 "pytest missing in .venv: run make venv"
        return 0
    fi
    "$py" -m pytest "$dir" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}

    # Final line, e.g. "==== 3 failed, 40 passed, 2 skipped, 1 error in 1.23s ====".
    local line passed=0 failed=0 skipped=0 note="" n word
    line=$(plain | grep -E '(passed|failed|error|skipped|xfailed|xpassed|no tests ran).* in [0-9.]+s' | tail -n 1)
    while read -r n word; do
        case $word in
            passed | xpassed) passed=$((passed + n)) ;;
            failed | error | errors) failed=$((failed + n)) ;;
            skipped | xfailed) skipped=$((skipped + n)) ;;
        esac
    done < <(grep -oE '[0-9]+ [a-z]+' <<<"$line")
    case $rc in
        0 | 1) ;;
        5) note="collected no tests from $dir" ;;
        *) note="pytest exited $rc" ;;
    esac
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
        failed=1
        [ -n "$note" ] || note="pytest exited $rc"
    fi
    record "$suite" "$passed" "$failed" "$skipped" "$note"
}

# MALLOC_PERTURB_ as for busted below: the extension is not built with ASan, and glibc filling
# freed memory makes a binding that reads a freed node or call crash at once, not once in a while.
MALLOC_PERTURB_=190 run_pytest python/tests

# --- Scenario transcripts: tests/transcripts/*.txt through `python -m craft.sim run` ---------

# Each file is a consensus scenario with the output every step must give (docs/simulator.md,
# "Transcripts"); one test per file. The C (test_sim_transcripts), Python and Lua suites run the
# same files through the same interpreter; this runs the command line a user runs.
run_transcripts() {
    local py=.venv/bin/python passed=0 failed=0 f
    banner "transcripts (python -m craft.sim run tests/transcripts/*.txt)"
    if ! [ -x "$py" ] || ! "$py" -c 'import craft.sim' 2>/dev/null; then
        echo "craft is not installed in .venv (make python-install)"
        record "transcripts" 0 1 0 "craft missing in .venv"
        return 0
    fi
    for f in tests/transcripts/*.txt; do
        [ -e "$f" ] || continue
        if "$py" -m craft.sim run "$f"; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1))
        fi
    done
    record "transcripts" "$passed" "$failed" 0
}

run_transcripts
run_pytest tests/faults
# The power-loss tests preload the shim built in the default tree (tests/powerloss/lazyfs.py).
case $BUILD_DIR in
    /*) shim_dir=$BUILD_DIR/default/powerloss ;;
    *) shim_dir=$PWD/$BUILD_DIR/default/powerloss ;;
esac
CRAFT_LAZYFS_SO=$shim_dir/craft_lazyfs.so run_pytest tests/powerloss
run_pytest tests/packaging

# --- Lua: busted over spec/ -------------------------------------------------------------------

# run_busted LUA: one pass of busted under that interpreter (lua5.4, luajit), each with its own
# line in the recap. `make lua-install` built the rock for both into ./lua_modules.
run_busted() {
    local lua=$1
    if [ -z "$(find spec -name '*_spec.lua' 2>/dev/null | head -n 1)" ]; then
        banner "busted: no specs in spec/ yet"
        return 0
    fi
    banner "busted ($lua)"
    if ! command -v busted >/dev/null; then
        echo "busted is not installed"
        record "busted $lua" 0 1 0 "busted missing"
        return 0
    fi
    # /usr/bin/busted starts under Lua 5.1: ask for the interpreter (TOOLCHAIN.md). The specs
    # bound their own waits; the timeout is the backstop that turns a hang into a failure.
    # MALLOC_PERTURB_: glibc fills freed memory (and the scripts the specs start inherit it),
    # so the binding reading a freed node or call crashes at once instead of once in a while;
    # the rock is not built with ASan.
    MALLOC_PERTURB_=190 timeout "${CRAFT_BUSTED_TIMEOUT:-900}" busted --lua="$lua" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}

    # "12 successes / 1 failure / 0 errors / 2 pending : 0.01 seconds"
    local line passed=0 failed=0 skipped=0 note="" f e
    line=$(plain | grep -E '^[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' | tail -n 1)
    if [ -n "$line" ]; then
        read -r passed _ _ f _ _ e _ _ skipped _ <<<"$line"
        failed=$((f + e))
    else
        note="busted printed no summary"
    fi
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
        failed=1
        [ -n "$note" ] || note="busted exited $rc"
    fi
    record "busted $lua" "$passed" "$failed" "$skipped" "$note"
}

run_busted lua5.4
run_busted luajit

# --- Summary ----------------------------------------------------------------------------------

banner "summary"
for line in "${recap[@]}"; do
    echo "$line"
done
if [ "$total_skipped" -gt 0 ]; then
    echo "$total_passed passed, $total_failed failed, $total_skipped skipped"
else
    echo "$total_passed passed, $total_failed failed"
fi
[ "$total_failed" -eq 0 ]
