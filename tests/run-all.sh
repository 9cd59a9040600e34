#!/usr/bin/env bash
# tests/run-all.sh — runs every test of voxd and ends with the line "N passed, N failed".
#
#   BUILD=build ./tests/run-all.sh              (make check)
#   BUILD=build-asan ASAN=1 ./tests/run-all.sh  (make asan)
#   ./tests/run-all.sh test_guild               (only tests whose file name contains a word)
#
# Unit test binaries ($BUILD/tests/unit/*/test_*) and integration scripts
# (tests/integration/test_*.py, run with /usr/bin/python3 and VOXD_BIN=$BUILD/voxd) print one line
# per case, "ok - name" or "not ok - name: why"; this script counts them. A binary or script that
# exits non-zero (or crashes) without printing a "not ok" line counts as one failure of its own.
# voxd's stderr of each integration script is kept under a temp dir (VOXD_LOG_DIR) and scanned for
# sanitizer reports: a report is a failure of that script. Exit status: 0 only if nothing failed.
set -u

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ASAN=${ASAN:-}
PY=/usr/bin/python3
FILTER=${1:-}
PER_TEST_TIMEOUT=${PER_TEST_TIMEOUT:-300}

if [ -n "$ASAN" ]; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi

TMP=$(mktemp -d /tmp/voxd-tests.XXXXXX)
KEEP_TMP=
cleanup() { [ -z "$KEEP_TMP" ] && rm -rf "$TMP"; }
trap cleanup EXIT

passed=0
failed=0
failures=()

SAN_RE='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: (Address|Undefined|Leak)Sanitizer'

# run_one NAME LOGDIR CMD...: runs CMD with a time bound, echoes its output, counts its lines.
run_one() {
    local name=$1 logdir=$2
    shift 2
    local out="$TMP/out.$$.txt"
    mkdir -p "$logdir"
    echo "# $name"
    VOXD_LOG_DIR="$logdir" timeout --kill-after=10 "$PER_TEST_TIMEOUT" "$@" >"$out" 2>"$logdir/script.stderr"
    local rc=$?
    local np nf
    np=$(grep -c '^ok - ' "$out")
    nf=$(grep -c '^not ok - ' "$out")
    sed -e 's/^/  /' "$out"
    passed=$((passed + np))
    failed=$((failed + nf))
    while IFS= read -r line; do failures+=("$line"); done < <(grep '^not ok - ' "$out")
    if [ "$rc" -ne 0 ] && [ "$nf" -eq 0 ]; then
        local why="exit code $rc"
        [ "$rc" -eq 124 ] && why="timed out after ${PER_TEST_TIMEOUT}s"
        [ "$rc" -gt 128 ] && why="killed by signal $((rc - 128))"
        local tail
        tail=$(tail -n 3 "$logdir/script.stderr" 2>/dev/null | tr '\n' ' ' | cut -c1-300)
        local line="not ok - $name: $why without a failing case${tail:+; stderr: $tail}"
        echo "  $line"
        failed=$((failed + 1))
        failures+=("$line")
    elif [ "$rc" -eq 0 ] && [ "$nf" -gt 0 ]; then
        echo "  # note: $name exited 0 although it printed failures"
    fi
    if [ -s "$logdir/script.stderr" ]; then
        sed -e 's/^/  # stderr: /' "$logdir/script.stderr" | head -n 20
    fi
    # sanitizer reports in anything this test left in its log dir (voxd's stderr, its own)
    local f
    for f in "$logdir"/*; do
        [ -f "$f" ] || continue
        if grep -Eq "$SAN_RE" "$f"; then
            local first
            first=$(grep -Em1 "$SAN_RE" "$f" | cut -c1-200)
            local line="not ok - $name: sanitizer report in $(basename "$f"): $first"
            echo "  $line"
            failed=$((failed + 1))
            failures+=("$line")
            mkdir -p tests/artifacts
            cp "$f" "tests/artifacts/$(basename "$f")" 2>/dev/null && \
                echo "  # full report kept in tests/artifacts/$(basename "$f")"
        fi
    done
    # keep the logs of a failing test (voxd's stderr included) where a human can read them
    if [ "$nf" -gt 0 ] || [ "$rc" -ne 0 ]; then
        local keep="tests/artifacts/logs/$(echo "$name" | tr / _)"
        rm -rf "$keep"
        mkdir -p "$keep" && cp -r "$logdir"/. "$keep"/ 2>/dev/null && \
            echo "  # logs kept in $keep"
    fi
    rm -f "$out"
}

# ---- unit tests ---------------------------------------------------------------------------------
shopt -s nullglob
units=("$BUILD"/tests/unit/*/test_*)
if [ ${#units[@]} -eq 0 ]; then
    echo "# no unit test binaries under $BUILD/tests/unit (not built?)"
fi
for t in "${units[@]}"; do
    [ -x "$t" ] || continue
    case "$t" in *.o|*.d) continue ;; esac
    [ -n "$FILTER" ] && [[ "$t" != *"$FILTER"* ]] && continue
    name=${t#"$BUILD"/}
    run_one "$name" "$TMP/logs/$(echo "$name" | tr / _)" "$t"
done

# ---- integration tests --------------------------------------------------------------------------
export VOXD_BIN="$PWD/$BUILD/voxd"
export PYTHONDONTWRITEBYTECODE=1
its=(tests/integration/test_*.py)
if [ ${#its[@]} -gt 0 ] && [ ! -x "$VOXD_BIN" ]; then
    line="not ok - tests/integration: $VOXD_BIN is missing (build it with make)"
    echo "$line"
    failed=$((failed + 1))
    failures+=("$line")
    its=()
fi
if [ ! -x "$PY" ] || ! "$PY" -c 'import websocket' 2>/dev/null; then
    line="not ok - tests/integration: $PY with the websocket module is missing (apt-get install python3-websocket)"
    echo "$line"
    failed=$((failed + 1))
    failures+=("$line")
    its=()
fi
for t in "${its[@]}"; do
    [ -n "$FILTER" ] && [[ "$t" != *"$FILTER"* ]] && continue
    name=$(basename "$t")
    run_one "$name" "$TMP/logs/${name%.py}" "$PY" "$t"
done

# ---- summary ------------------------------------------------------------------------------------
if [ ${#failures[@]} -gt 0 ]; then
    echo
    echo "# failures:"
    for f in "${failures[@]}"; do echo "$f"; done
fi
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
