#!/bin/sh
# test_fuzz.sh - a short libFuzzer run on the message decoder
# (tests/fuzz/fuzz_proto.c under AddressSanitizer and UBSan): builds it with
# `make fuzz` (into build/fuzz/, whatever BUILD and SANITIZE say), then runs
# FUZZ_RUNS executions (default 200000, a few seconds) from the seed corpus
# build/fuzz/corpus and the saved reproducers in tests/fuzz/crashes/ (inputs
# that once failed: an empty string field made get_str memcpy from NULL,
# fixed in 805a4a7; kept as regression seeds). Fails
# on any crash, leak, sanitizer report or round-trip mismatch; the input
# that caused it is kept in build/fuzz/artifacts/. Skips (exit 77) when
# clang or its libFuzzer runtime is missing (libclang-rt-14-dev).
# The long run: make fuzz && build/fuzz/fuzz_proto -runs=1000000 build/fuzz/corpus
# Run from the repository root.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
FUZZ_CC=${FUZZ_CC:-clang}
RUNS=${FUZZ_RUNS:-200000}
SEED=${FUZZ_SEED:-1}

if ! command -v "$FUZZ_CC" >/dev/null 2>&1; then
    echo "SKIP: $FUZZ_CC not found (install clang and libclang-rt-14-dev: make deps)"
    exit 77
fi
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return d && n ? 0 : 0; }\n' >"$tmp/probe.c"
if ! "$FUZZ_CC" -fsanitize=fuzzer,address,undefined "$tmp/probe.c" -o "$tmp/probe" >"$tmp/probe.log" 2>&1; then
    cat "$tmp/probe.log"
    echo "SKIP: $FUZZ_CC cannot link -fsanitize=fuzzer (libFuzzer runtime missing: install libclang-rt-14-dev)"
    exit 77
fi

echo "+ make fuzz"
make fuzz FUZZ_CC="$FUZZ_CC" || { echo "FAIL: make fuzz"; exit 1; }
F=build/fuzz/fuzz_proto
[ -x "$F" ] && [ -d build/fuzz/corpus ] || { echo "FAIL: $F or build/fuzz/corpus missing after make fuzz"; exit 1; }
n_seeds=$(ls build/fuzz/corpus | wc -l)
[ "$n_seeds" -ge 12 ] || { echo "FAIL: only $n_seeds seeds in build/fuzz/corpus"; exit 1; }

# New inputs go to a temp folder (the first one named), so the run does the
# same work each time; the seeds and the saved reproducers are read only.
mkdir -p "$tmp/new" build/fuzz/artifacts
set -- "$tmp/new" build/fuzz/corpus
[ -d tests/fuzz/crashes ] && set -- "$@" tests/fuzz/crashes
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export UBSAN_OPTIONS
echo "+ $F -runs=$RUNS -seed=$SEED -timeout=10 -rss_limit_mb=2048 $*"
"$F" -runs="$RUNS" -seed="$SEED" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix=build/fuzz/artifacts/ "$@" >"$tmp/log" 2>&1
rc=$?
grep -E '^(INFO: seed corpus|Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$tmp/log"
if [ $rc -ne 0 ]; then
    grep -E 'runtime error|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|^ +#[0-9]+ .* in |SUMMARY|Test unit written|^MS:|^0x' "$tmp/log" | head -40
    echo "FAIL: fuzz_proto exited $rc; reproduce with: $F <the file named above>"
    exit 1
fi
grep -q "^Done $RUNS runs" "$tmp/log" || { tail -20 "$tmp/log"; echo "FAIL: the run did not finish $RUNS executions"; exit 1; }
echo "ok   $RUNS fuzz executions, no crash"
