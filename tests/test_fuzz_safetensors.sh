#!/bin/sh
# test_fuzz_safetensors.sh - a short libFuzzer run on the safetensors header
# parser (tests/fuzz/fuzz_safetensors.c, model/safetensors.c, under
# AddressSanitizer and UBSan): builds build/fuzz/fuzz_safetensors, then runs
# FUZZ_RUNS executions (default 100000, a few seconds) from the seeds in
# tests/fuzz/safetensors_seeds (read only; new inputs go to a temp folder).
# Fails on any crash, leak, sanitizer report or broken promise of an
# accepted header; the input that caused it is kept in build/fuzz/artifacts/.
# Skips (exit 77) when clang or its libFuzzer runtime is missing.
# The long run: make fuzz && build/fuzz/fuzz_safetensors -runs=1000000 tests/fuzz/safetensors_seeds
# Run from the repository root.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
FUZZ_CC=${FUZZ_CC:-clang}
RUNS=${FUZZ_RUNS:-100000}
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

F=build/fuzz/fuzz_safetensors
echo "+ make $F"
make "$F" FUZZ_CC="$FUZZ_CC" || { echo "FAIL: make $F"; exit 1; }
n_seeds=$(ls tests/fuzz/safetensors_seeds | wc -l)
[ "$n_seeds" -ge 4 ] || { echo "FAIL: only $n_seeds seeds in tests/fuzz/safetensors_seeds"; exit 1; }
mkdir -p "$tmp/new" build/fuzz/artifacts
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export UBSAN_OPTIONS
echo "+ $F -runs=$RUNS -seed=$SEED $tmp/new tests/fuzz/safetensors_seeds"
"$F" -runs="$RUNS" -seed="$SEED" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix=build/fuzz/artifacts/ "$tmp/new" tests/fuzz/safetensors_seeds >"$tmp/log" 2>&1
rc=$?
grep -E '^(INFO: seed corpus|Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$tmp/log"
if [ $rc -ne 0 ]; then
    grep -E 'runtime error|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|^ +#[0-9]+ .* in |SUMMARY|Test unit written|^MS:|^0x' "$tmp/log" | head -40
    echo "FAIL: fuzz_safetensors exited $rc; reproduce with: $F <the file named above>"
    exit 1
fi
grep -q "^Done $RUNS runs" "$tmp/log" || { tail -20 "$tmp/log"; echo "FAIL: the run did not finish $RUNS executions"; exit 1; }
echo "ok   $RUNS fuzz executions, no crash"
