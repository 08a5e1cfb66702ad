# fuzz_lib.sh - the shared part of the short libFuzzer runs in make test
# (sourced by tests/test_fuzz*.sh, run from the repository root).
#   fuzz_probe                 fail (exit 1) unless clang links -fsanitize=fuzzer
#   fuzz_run BIN RUNS MIN_SEEDS SEED_DIR [EXTRA_DIR...] [-- FLAG...]
#                              RUNS executions of BIN from SEED_DIR (and the
#                              read-only EXTRA_DIRs; new inputs go to a temp
#                              folder, so each run does the same work); fails
#                              (exit 1) on a crash, leak, sanitizer report or
#                              an unfinished run; the input that caused it is
#                              kept in build/fuzz/artifacts/
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
FUZZ_CC=${FUZZ_CC:-clang}
SEED=${FUZZ_SEED:-1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export UBSAN_OPTIONS

fuzz_probe() {
    if ! command -v "$FUZZ_CC" >/dev/null 2>&1; then
        echo "FAIL: $FUZZ_CC not found (make deps installs clang and libclang-rt-14-dev)"
        exit 1
    fi
    printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return d && n ? 0 : 0; }\n' >"$tmp/probe.c"
    if ! "$FUZZ_CC" -fsanitize=fuzzer,address,undefined "$tmp/probe.c" -o "$tmp/probe" >"$tmp/probe.log" 2>&1; then
        cat "$tmp/probe.log"
        echo "FAIL: $FUZZ_CC cannot link -fsanitize=fuzzer (libFuzzer runtime missing: make deps installs libclang-rt-14-dev)"
        exit 1
    fi
}

fuzz_run() {
    bin=$1 runs=$2 min_seeds=$3 seeds=$4
    shift 4
    dirs="$seeds"
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do [ -d "$1" ] && dirs="$dirs $1"; shift; done
    [ $# -gt 0 ] && shift # the flags follow --
    [ -x "$bin" ] || { echo "FAIL: $bin missing"; exit 1; }
    n_seeds=$(ls "$seeds" | wc -l)
    [ "$n_seeds" -ge "$min_seeds" ] || { echo "FAIL: only $n_seeds seeds in $seeds"; exit 1; }
    mkdir -p "$tmp/new" build/fuzz/artifacts
    echo "+ $bin -runs=$runs -seed=$SEED $* $tmp/new $dirs"
    # shellcheck disable=SC2086 # dirs is a list of paths without spaces
    "$bin" -runs="$runs" -seed="$SEED" "$@" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix=build/fuzz/artifacts/ "$tmp/new" $dirs >"$tmp/log" 2>&1
    rc=$?
    grep -E '^(INFO: seed corpus|Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$tmp/log"
    if [ $rc -ne 0 ]; then
        grep -E 'runtime error|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|^ +#[0-9]+ .* in |SUMMARY|Test unit written|^MS:|^0x' "$tmp/log" | head -40
        echo "FAIL: $bin exited $rc; reproduce with: $bin <the file named above>"
        exit 1
    fi
    grep -q "^Done $runs runs" "$tmp/log" || { tail -20 "$tmp/log"; echo "FAIL: the run did not finish $runs executions"; exit 1; }
    echo "ok   $runs fuzz executions, no crash"
}
