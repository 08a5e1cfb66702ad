#!/bin/sh
# test_device_cli.sh - --device and --dummy-weights on a CPU machine: a GPU
# device in a build without CUDA (or on a machine without a GPU) ends every
# command at once with one clear line and exit status 1; a misspelt device is
# a usage error (2); a model shape from a config.json alone runs with random
# weights, deterministically; bench/gpu runs on the CPU.
set -u
. tests/cli_lib.sh
CFG=tests/gpu/configs/tiny
GPU_BENCH=${BUILD:-build}/bench/gpu

# quick: a device that cannot be used is found before any work is done
quick() { # NAME CODE PATTERN -- ARGS (as expect), and within 5 seconds
    t0=$(date +%s)
    expect "$@"
    [ $(($(date +%s) - t0)) -le 5 ] || fail "$1: took more than 5 s"
}
if "$BILD" run --device cuda:0 -m "$LG" -p x -n 1 -q >/dev/null 2>&1; then
    echo "this bild runs on a GPU: the no-CUDA checks do not apply"
else
    quick "run cuda:0" 1 "CUDA" -- run --device cuda:0 -m "$LG" -p "Once" -n 4
    quick "large-worker cuda:0" 1 "CUDA" -- large-worker --device cuda:0 -m "$LG" -z "$TOK" -b "ipc://$tmp/l.sock"
    quick "small-worker cuda" 1 "CUDA" -- small-worker -d cuda -m "$SM" -z "$TOK" -b "ipc://$tmp/s.sock"
    quick "generate --large-device cuda:1" 1 "CUDA" -- generate -S "$SM" -L "$LG" --large-device cuda:1 -p x -n 4
    quick "dummy run cuda:0" 1 "CUDA" -- run --dummy-weights -m "$CFG" --device cuda:0 -n 4
    [ -e "$tmp/l.sock" ] && fail "the worker bound its socket before checking the device"
fi
expect "run --device bogus" 2 "unknown device 'bogus'" -- run --device bogus -m "$LG" -p x
expect "worker --device cuda:x" 2 "after cuda: comes a GPU number" -- large-worker --device cuda:x -m "$LG" -b "ipc://$tmp/x.sock"
expect "generate --small-device" 2 "--small-device: unknown device" -- generate --small-device gpu -S "$SM" -L "$LG" -p x
expect "--dummy-dtype" 2 "--dummy-dtype: unknown type 'q4'" -- run --dummy-weights --dummy-dtype q4 -m "$CFG"
expect "dummy needs a folder" 3 "is not a directory" -- run --dummy-weights -m "$LG"
expect "dummy prompt text without a tokenizer" 2 "pass --tokenizer" -- run --dummy-weights -m "$CFG" -p "Once" -n 4
expect "dummy worker without a tokenizer" 3 "pass --tokenizer" -- large-worker --dummy-weights -m "$CFG" -b "ipc://$tmp/d.sock"

# random weights from config.json alone: 8 tokens, the same twice (greedy, and seeded sampling)
greedy=""
for args in "-t 0" "-s 7"; do
    # shellcheck disable=SC2086
    "$BILD" run --dummy-weights --model "$CFG" --device cpu -n 8 --json -q $args >"$tmp/a.json" 2>"$tmp/err" ||
        fail "dummy run $args: $(cat "$tmp/err")"
    # shellcheck disable=SC2086
    "$BILD" run --dummy-weights --model "$CFG/config.json" --device cpu -n 8 --json -q -j 1 $args >"$tmp/b.json" \
        2>>"$tmp/err" || fail "dummy run $args (config.json path, 1 thread): $(cat "$tmp/err")"
    ta=$(sed -n 's/.*"tokens":\[\([0-9,]*\)\].*/\1/p' "$tmp/a.json")
    tb=$(sed -n 's/.*"tokens":\[\([0-9,]*\)\].*/\1/p' "$tmp/b.json")
    n=$(echo "$ta" | tr ',' '\n' | grep -c .)
    if [ "$n" -ne 8 ]; then fail "dummy run $args: $n tokens, want 8: $(cat "$tmp/a.json")"
    elif [ "$ta" != "$tb" ]; then fail "dummy run $args: not deterministic: [$ta] vs [$tb]"
    elif ! grep -q '"prompt_ids":\[1\]' "$tmp/a.json"; then fail "dummy run $args: does not start from BOS"
    else echo "ok   dummy run $args: [$ta] twice"
    fi
    [ "$args" = "-t 0" ] && greedy=$ta
done
# without --json: the ids, space-separated, one line
"$BILD" run --dummy-weights -m "$CFG" -n 8 -t 0 -q >"$tmp/ids.txt" 2>"$tmp/err" || fail "dummy run text: $(cat "$tmp/err")"
[ -n "$greedy" ] && [ "$(tr ' ' ',' <"$tmp/ids.txt")" = "$greedy" ] &&
    echo "ok   dummy run without --json prints the ids" || fail "dummy ids: '$(cat "$tmp/ids.txt")', want [$greedy]"

# the statistics line names the backend: cpu/ISA, N threads (unchanged)
"$BILD" run -m "$LG" -p "Once" -n 4 -j 1 -s 1 >/dev/null 2>"$tmp/err"
grep -q "; cpu/[a-z0-9]*, 1 threads ([^)]*), weights in [a-zA-Z0-9 ]* pages ([^)]*); seed 1$" "$tmp/err" &&
    echo "ok   stats line: cpu/ISA, 1 threads, the weights' pages" || fail "stats line: $(cat "$tmp/err")"
# the weights in huge pages (kernels/hostmem.h) or as mapped: the same tokens; BILD_HUGEPAGES=0 says so
"$BILD" run -m "$LG" -p "Once" -n 24 -t 0 --json 2>"$tmp/err" >"$tmp/h1.json" || fail "run: $(cat "$tmp/err")"
BILD_HUGEPAGES=0 "$BILD" run -m "$LG" -p "Once" -n 24 -t 0 --json 2>"$tmp/err0" >"$tmp/h0.json" || fail "run: $(cat "$tmp/err0")"
grep -q "weights in 4 KiB pages (.*BILD_HUGEPAGES=0)" "$tmp/err0" && echo "ok   BILD_HUGEPAGES=0 is reported" ||
    fail "BILD_HUGEPAGES=0 not reported: $(cat "$tmp/err0")"
t1=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens"])' "$tmp/h1.json")
t0=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens"])' "$tmp/h0.json")
[ -n "$t1" ] && [ "$t1" = "$t0" ] && echo "ok   huge pages or not: the same 24 tokens ($(grep -o "weights in [^;]*" "$tmp/err"))" ||
    fail "tokens differ with BILD_HUGEPAGES=0: $t1 vs $t0"
# BILD_PACK=0: the matrices stay row-major as mapped (another summation order, so tokens may differ)
BILD_PACK=0 "$BILD" run -m "$LG" -p "Once" -n 24 -t 0 --json 2>"$tmp/errp" >"$tmp/p0.json" || fail "run: $(cat "$tmp/errp")"
grep -q "weights in [a-zA-Z0-9 ]* pages" "$tmp/errp" && ! grep -q "packed" "$tmp/errp" &&
    grep -q "packed into 16-row panels" "$tmp/err" && echo "ok   packed matrices reported, and BILD_PACK=0 keeps them as mapped" ||
    fail "BILD_PACK not reported: $(cat "$tmp/err" "$tmp/errp")"
for c in run generate small-worker large-worker; do
    "$BILD" $c --help | grep -q -- "--device DEV" && "$BILD" $c --help | grep -q -- "--dummy-weights" &&
        echo "ok   $c --help documents --device and --dummy-weights" || fail "$c --help lacks --device/--dummy-weights"
done

# bench/gpu on the CPU: one JSON line per model
if [ -x "$GPU_BENCH" ]; then
    "$GPU_BENCH" --device cpu --rounds 4 --threads 1 "$CFG" >"$tmp/bench.json" 2>"$tmp/err" ||
        fail "bench/gpu: $(cat "$tmp/err")"
    grep -q '"verify16_ratio":' "$tmp/bench.json" && grep -q '"bw_frac":null' "$tmp/bench.json" &&
        echo "ok   bench/gpu --device cpu: $(cat "$tmp/bench.json")" || fail "bench/gpu output: $(cat "$tmp/bench.json")"
else
    fail "$GPU_BENCH not built"
fi
# launch/multi-gpu.sh: on cpu devices the same text as in process; on GPUs
# this build cannot use, a fast failure with the workers' message and none left
export BILD
P="One morning, a cat named Tom woke up."
SMALL_DEVICE=cpu LARGE_DEVICE=cpu LAUNCH_DIR=$tmp/mg sh launch/multi-gpu.sh --small "$SM" --large "$LG" \
    --tokenizer "$TOK" --threads 1 -- -p "$P" -n 30 -q >"$tmp/three.txt" 2>"$tmp/err" ||
    fail "multi-gpu.sh on cpu: $(cat "$tmp/err")"
"$BILD" generate -S "$SM" -L "$LG" -p "$P" -n 30 -q >"$tmp/one.txt" 2>&1
cmp -s "$tmp/three.txt" "$tmp/one.txt" && echo "ok   multi-gpu.sh with cpu devices == one process" ||
    fail "multi-gpu.sh: texts differ"
if ! "$BILD" run --device cuda:0 -m "$LG" -p x -n 1 -q >/dev/null 2>&1; then
    LAUNCH_DIR=$tmp/mg2 sh launch/multi-gpu.sh --small "$SM" --large "$LG" --tokenizer "$TOK" -- -p x \
        >/dev/null 2>"$tmp/err" && fail "multi-gpu.sh on cuda devices should fail in this build"
    # both workers are refused; the launcher reports whichever exits first
    grep -Eq "(small|large)-worker: (device )?cuda:[01]: .*(CUDA=1|no usable GPU)" "$tmp/err" && echo "ok   multi-gpu.sh on cuda: fails with the reason" ||
        fail "multi-gpu.sh on cuda: $(cat "$tmp/err")"
fi
pgrep -f "$tmp/mg" >/dev/null && fail "workers left running" || echo "ok   no worker left"
echo "test_device_cli: $fails failed"
[ $fails -eq 0 ]
