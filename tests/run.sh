#!/bin/sh
# Runs every test program (build/tests/test_*) and shell test (tests/test_*.sh)
# with a hard time limit each, from the repository root. Exit status 77 means
# SKIP (printed with the reason the test gave); a skip never counts as a pass
# and fails the run: make test installs and fetches everything the tests
# need, so a test that cannot run is a defect. Ends with the line
# "N passed, N failed, N skipped" and exits non-zero if anything failed or
# was skipped.
BUILD=${BUILD:-build}
LIMIT=${TEST_TIMEOUT:-300}
pass=0; fail=0; skip=0; failed=""
export BUILD
# sanitizer builds: leaks made inside third-party libraries are suppressed (tests/lsan.supp says which and why)
LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
for t in "$BUILD"/tests/test_* tests/test_*.sh; do
    [ -f "$t" ] || continue
    case "$t" in
        *.sh) ;;
        *.o|*.d|*.log) continue ;;
        *) [ -x "$t" ] || continue ;;
    esac
    name=$(basename "$t")
    log="$BUILD/tests/$name.log"
    mkdir -p "$BUILD/tests"
    start=$(date +%s.%N)
    case "$t" in
        *.sh) timeout -k 5 "$LIMIT" sh "$t" >"$log" 2>&1 ;;
        *)    timeout -k 5 "$LIMIT" "$t" >"$log" 2>&1 ;;
    esac
    rc=$?
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{print b - a}')
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1)); printf 'PASS %-28s %6.2fs\n' "$name" "$secs"
    elif [ $rc -eq 77 ]; then
        skip=$((skip + 1)); printf 'SKIP %-28s %s\n' "$name" "$(tail -n 1 "$log")"
    else
        fail=$((fail + 1)); failed="$failed $name"
        [ $rc -eq 124 ] && echo "TIMEOUT after ${LIMIT}s" >>"$log"
        printf 'FAIL %-28s (exit %d); last lines of %s:\n' "$name" "$rc" "$log"
        tail -n 15 "$log" | sed 's/^/    /'
    fi
done
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed, $skip skipped"
[ $skip -eq 0 ] || echo "a skipped test fails the run: every test must run (make deps; make models)"
[ $fail -eq 0 ] && [ $skip -eq 0 ]
