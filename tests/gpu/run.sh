#!/bin/sh
# tests/gpu/run.sh - the GPU checks and benchmarks in one run, on a machine
# with an NVIDIA GPU (CI has none; tests/run.sh never runs this). Builds for
# the local GPU only, runs the GPU tests, then the GPU benchmarks, and prints
# a summary table last. About 2 to 5 minutes on one H100/H200.
#
#   sh tests/gpu/run.sh                 build (make CUDA=1 CUDA_ARCH=<this GPU>) and run
#
# Environment:
#   BILD_BUILD=DIR   use binaries already built there (make CUDA=1 BUILD=DIR) instead of building
#   LARGE=PATH       stories15M (llama2.c .bin or HF directory; default models/stories15M/stories15M.bin)
#   LARGE_BF16=DIR   stories15M as a bf16 HF directory (default: made with tools/llama2c_to_hf.py)
#   SMALL=PATH       the small model (default tools/align/stories15M-aligned)
#   TOK=PATH         tokenizer.bin (default models/stories15M/tokenizer.bin)
#   WORK=DIR         scratch folder (default a new temporary one)
#   OUT=DIR          where results.json and the logs are copied (optional)
#   N_PROMPTS=N      prompts for the text checks (default 5), TOKENS=N per prompt (default 100)
#   BENCH_MODELS     models for bench/gpu besides stories15M (default the 1B and 7B shapes)
#   DEV=cpu          a dry run of the script itself on a machine without a GPU
# When only LARGE_BF16 is given, the f32 model is made from it by widening
# (tests/gpu/widen_bf16.py): the same numbers in f32.
# Exit status: 0 when every check passed (benchmarks are reported, not judged).
set -u
cd "$(dirname "$0")/../.."
say() { printf '%s\n' "$*" >&2; }
DEV=${DEV:-cuda:0}
if [ "$DEV" = cpu ]; then # a dry run of this script on a machine without a GPU (needs BILD_BUILD)
    GPU="none (dry run on the CPU)" CAP=cpu
    [ -n "${BILD_BUILD:-}" ] || { say "tests/gpu/run.sh: DEV=cpu needs BILD_BUILD"; exit 2; }
else
    command -v nvidia-smi >/dev/null 2>&1 || { say "tests/gpu/run.sh: no nvidia-smi: this needs a machine with an NVIDIA GPU"; exit 77; }
    GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader -i 0 2>/dev/null | head -1)
    CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader -i 0 2>/dev/null | head -1 | tr -d .)
    [ -n "$CAP" ] || { say "tests/gpu/run.sh: nvidia-smi sees no GPU"; exit 77; }
fi
say "== GPU: $GPU (sm_$CAP)"

WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
if [ -n "${BILD_BUILD:-}" ]; then
    B=$BILD_BUILD
else
    B=build/gpu-sm$CAP
    say "== build: make CUDA=1 CUDA_ARCH=$CAP BUILD=$B"
    make -j"$(nproc)" CUDA=1 CUDA_ARCH="$CAP" BUILD="$B" all >"$WORK/build.log" 2>&1 ||
        { tail -30 "$WORK/build.log" >&2; say "build failed"; exit 1; }
fi
LARGE=${LARGE:-models/stories15M/stories15M.bin}
SMALL=${SMALL:-tools/align/stories15M-aligned}
TOK=${TOK:-models/stories15M/tokenizer.bin}
N_PROMPTS=${N_PROMPTS:-5}
TOKENS=${TOKENS:-100}
PY=python3
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null && PY=/usr/bin/python3
if [ ! -e "$LARGE" ] && [ -n "${LARGE_BF16:-}" ]; then
    LARGE=$WORK/stories15M-f32
    $PY tests/gpu/widen_bf16.py "$LARGE_BF16" "$LARGE" || exit 1
fi
if [ -z "${LARGE_BF16:-}" ]; then
    LARGE_BF16=$WORK/stories15M-bf16
    $PY tools/llama2c_to_hf.py --dtype bf16 --tokenizer "$TOK" "$LARGE" "$LARGE_BF16" >/dev/null || exit 1
fi
for f in "$LARGE" "$LARGE_BF16" "$SMALL" "$TOK"; do
    [ -e "$f" ] || { say "tests/gpu/run.sh: $f not found (make models; or set LARGE, LARGE_BF16, SMALL, TOK)"; exit 1; }
done

SUMMARY=$WORK/summary.txt
: >"$SUMMARY"
FAILED=0
row() { printf '%-44s %-6s %s\n' "$1" "$2" "$3" >>"$SUMMARY"; }
check() { # NAME LOG CMD...: runs a check, records PASS/FAIL and the log's last line
    name=$1 log=$WORK/$2; shift 2
    say "== $name: $*"
    start=$(date +%s.%N)
    "$@" >"$log" 2>&1
    rc=$?
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
    last=$(tail -n 1 "$log")
    if [ $rc -eq 0 ]; then row "$name" PASS "$last (${secs}s)"
    else row "$name" FAIL "exit $rc: $last"; FAILED=1; tail -n 20 "$log" >&2; fi
}

# ONLY=plane: the data-plane check alone (a short device run)
if [ "${ONLY:-}" != plane ]; then
# 1. every CUDA kernel against the CPU reference (outputs poisoned first)
check "kernels vs CPU reference" kernels.log "$B/gpu/test_cuda_kernels" --device "$DEV"
# 2. logits on the GPU vs the CPU engine: stories15M in f32 and in bf16
check "logits stories15M f32 + bf16, GPU vs CPU" model.log "$B/gpu/test_cuda_model" --device "$DEV" "$LARGE" "$LARGE_BF16"
fi

# 3. BiLD greedy on the stories pair: the same tokens on the GPU as on the CPU,
#    in process and as three processes with both workers on the GPU
head -n "$N_PROMPTS" tests/data/prompts20.txt >"$WORK/prompts.txt"
gen() { # DEVICE OUT [extra args]
    dev=$1 out=$2; shift 2
    "$B/bild" generate -S "$SMALL" -L "$LARGE" -z "$TOK" --prompts "$WORK/prompts.txt" -n "$TOKENS" -t 0 \
        --device "$dev" "$@" >"$WORK/$out" 2>"$WORK/$out.err"
}
same_tokens() { # A B: same tokens and the same policy statistics per prompt
    $PY - "$WORK/$1" "$WORK/$2" <<'EOF'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
keys = ["generated", "small_tokens", "large_tokens", "fallbacks", "rollbacks", "rolled_back"]
bad = 0
for i, (x, y) in enumerate(zip(a, b)):
    if x["tokens"] != y["tokens"] or any(x["stats"][k] != y["stats"][k] for k in keys):
        n = next((j for j, (p, q) in enumerate(zip(x["tokens"], y["tokens"])) if p != q), None)
        print(f"prompt {i}: differs (first different token: {n})")
        bad += 1
if len(a) != len(b) or not a:
    print(f"{len(a)} vs {len(b)} results"); bad += 1
print(f"{len(a) - bad}/{len(a)} prompts: same tokens and statistics, {sum(len(x['tokens']) for x in a)} tokens")
sys.exit(1 if bad else 0)
EOF
}
plane_one_gpu() { # spec sampling, both workers on one GPU: auto picks the host plane; same tokens as in process
    "$B/bild" generate -S "$SMALL" -L "$LARGE" -z "$TOK" --prompts "$WORK/prompts.txt" -n 40 --mode spec -t 0.8 -s 7 \
        --device "$DEV" >"$WORK/spec_gpu.jsonl" 2>"$WORK/spec_gpu.err" || { cat "$WORK/spec_gpu.err"; return 1; }
    SMALL_DEVICE=$DEV LARGE_DEVICE=$DEV BILD="$B/bild" sh launch/multi-gpu.sh --small "$SMALL" --large "$LARGE" \
        --tokenizer "$TOK" -- --prompts "$WORK/prompts.txt" -n 40 --mode spec -t 0.8 -s 7 >"$WORK/spec_3proc.jsonl" \
        2>"$WORK/spec_3proc.err" || { cat "$WORK/spec_3proc.err"; return 1; }
    grep "data plane" "$WORK/spec_3proc.err"
    [ "$DEV" = cpu ] || grep -q "data plane host (both workers on one GPU" "$WORK/spec_3proc.err" || return 1
    if [ "$DEV" != cpu ]; then # NCCL cannot put both ranks on one GPU: asking for it is refused with the reason
        SMALL_DEVICE=$DEV LARGE_DEVICE=$DEV BILD="$B/bild" sh launch/multi-gpu.sh --small "$SMALL" --large "$LARGE" \
            --tokenizer "$TOK" -- -p "Tom had a dog" -n 10 --mode spec -t 0.8 --data-plane nccl >/dev/null \
            2>"$WORK/spec_nccl.err" && { echo "--data-plane nccl on one GPU was not refused"; return 1; }
        grep "data-plane nccl" "$WORK/spec_nccl.err"
        grep -q "the same GPU" "$WORK/spec_nccl.err" || return 1
    fi
    same_tokens spec_gpu.jsonl spec_3proc.jsonl
}
if [ "${ONLY:-}" = plane ]; then
    check "spec sampling, 3 processes on one GPU: host plane" plane.log plane_one_gpu
    { echo; echo "==== tests/gpu/run.sh ONLY=plane summary: $GPU (sm_$CAP)"; cat "$SUMMARY"; } | tee "$WORK/summary_table.txt"
    [ -n "${OUT:-}" ] && mkdir -p "$OUT" && cp "$WORK"/summary_table.txt "$WORK"/spec_3proc.err "$WORK"/plane.log "$OUT"/
    exit $FAILED
fi
gen cpu bild_cpu.jsonl
gen "$DEV" bild_gpu.jsonl
check "BiLD text: GPU vs CPU (in process)" bild_text.log same_tokens bild_cpu.jsonl bild_gpu.jsonl
gen cpu large_cpu.jsonl --mode large
gen "$DEV" large_gpu.jsonl --mode large
check "large-only text: GPU vs CPU" large_text.log same_tokens large_cpu.jsonl large_gpu.jsonl
multi() {
    SMALL_DEVICE=$DEV LARGE_DEVICE=$DEV BILD="$B/bild" sh launch/multi-gpu.sh --small "$SMALL" --large "$LARGE" \
        --tokenizer "$TOK" -- --prompts "$WORK/prompts.txt" -n "$TOKENS" >"$WORK/bild_3proc.jsonl" 2>"$WORK/bild_3proc.err" &&
        same_tokens bild_gpu.jsonl bild_3proc.jsonl
}
check "BiLD text: 3 processes, workers on cuda:0" bild_3proc.log multi
multi_overlap() {
    SMALL_DEVICE=$DEV LARGE_DEVICE=$DEV BILD="$B/bild" sh launch/multi-gpu.sh --small "$SMALL" --large "$LARGE" \
        --tokenizer "$TOK" -- --prompts "$WORK/prompts.txt" -n "$TOKENS" --overlap >"$WORK/bild_overlap.jsonl" \
        2>"$WORK/bild_overlap.err" && same_tokens bild_gpu.jsonl bild_overlap.jsonl
}
check "BiLD text: 3 processes, --overlap" bild_overlap.log multi_overlap
check "spec sampling, 3 processes on one GPU: host plane" plane.log plane_one_gpu
no_gpu_message() { # a worker asked for a GPU that is not there says so and exits
    CUDA_VISIBLE_DEVICES= timeout 20 "$B/bild" large-worker -m "$LARGE" -z "$TOK" -b "ipc://$WORK/nogpu.sock" \
        --device cuda:0 >/dev/null 2>"$WORK/nogpu.err"
    rc=$?
    cat "$WORK/nogpu.err"
    [ $rc -ne 0 ] && [ $rc -lt 124 ] && grep -qi "cuda" "$WORK/nogpu.err"
}
check "worker on a hidden GPU: clear error" nogpu.log no_gpu_message

# 4. benchmarks: decode tokens/s and the bandwidth floor at 1B and 7B shapes
#    (bf16, dummy weights), verify-block cost, both matmul paths
bench() {
    "$B/bench/gpu" --device "$DEV" --rounds 64 "$@"
}
say "== bench: the matmul op alone, and launch cost"
"$B/bench/gpu" --device "$DEV" --kernels >"$WORK/kernels.jsonl" 2>"$WORK/kernels.err" ||
    { row "bench/gpu --kernels" FAIL "$(tail -n 1 "$WORK/kernels.err")"; FAILED=1; }
say "== bench: decode and verify blocks"
bench --profile ${BENCH_MODELS:-tests/gpu/configs/llama3.2-1b tests/gpu/configs/llama2-7b} "$LARGE" "$LARGE_BF16" >"$WORK/bench.jsonl" 2>"$WORK/bench.err" ||
    { row "bench/gpu" FAIL "$(tail -n 1 "$WORK/bench.err")"; FAILED=1; }
[ "$DEV" = cpu ] || bench --graphs ${BENCH_MODELS:-tests/gpu/configs/llama3.2-1b tests/gpu/configs/llama2-7b} "$LARGE_BF16" \
    >"$WORK/bench_graphs.jsonl" 2>"$WORK/bench_graphs.err" ||
    { row "bench/gpu --graphs" FAIL "$(tail -n 1 "$WORK/bench_graphs.err")"; FAILED=1; }
[ "$DEV" = cpu ] || bench --gemm cublas ${BENCH_CUBLAS:-tests/gpu/configs/llama2-7b} >"$WORK/bench_cublas.jsonl" 2>"$WORK/bench_cublas.err" ||
    { row "bench/gpu --gemm cublas" FAIL "$(tail -n 1 "$WORK/bench_cublas.err")"; FAILED=1; }
# 5. BiLD vs the large model alone on the stories pair, on the GPU (tok/s of the runs above)
speed() { $PY -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
g = sum(x["stats"]["generated"] for x in r); s = sum(x["stats"]["total_s"] for x in r)
print(f"{g / s:.1f}")' "$WORK/$1"; }

{
    echo
    echo "==== tests/gpu/run.sh summary: $GPU (sm_$CAP)"
    cat "$SUMMARY"
    echo
    echo "the matmul op alone at Llama-2-7B shapes (bf16 weights), bench/gpu --kernels:"
    cat "$WORK/kernels.err"
    echo
    echo "decode (T = 1) and verify blocks, bench/gpu:"
    $PY - "$WORK/bench.jsonl" "$WORK/bench_graphs.jsonl" "$WORK/bench_cublas.jsonl" <<'EOF'
import json, sys
print(f"{'model':34} {'dtype':5} {'params':>8} {'tok/s':>9} {'ms/step':>8} {'GB/step':>8} {'of BW':>6} {'T=8/T=1':>8} {'T=16/T=1':>9}")
for path in [p for p in sys.argv[1:] if __import__("os").path.exists(p)]:
    for l in open(path):
        try: r = json.loads(l)
        except ValueError: continue
        tag = " (cublas)" if "cublas" in path else " (graphs)" if "graphs" in path else ""
        name = r["model"].rstrip("/").split("/")[-1] + tag
        bw = r.get("bw_frac"); bw = f"{100 * bw:.0f}%" if isinstance(bw, (int, float)) else "n/a"
        print(f"{name:34} {r.get('dtype', '?'):5} {r.get('params', 0) / 1e6:7.0f}M {r['tok_s']:9.1f} {r['ms_step']:8.3f} "
              f"{r['bytes_step'] / 1e9:8.3f} {bw:>6} {r['verify8_ratio']:8.2f} {r['verify16_ratio']:9.2f}")
EOF
    echo
    echo "bench/gpu --profile (GPU time of a decoding step by kernel):"
    grep -v '^bench/gpu:' "$WORK/bench.err"
    echo
    echo "stories pair, 3 processes on the GPU: BiLD $(speed bild_3proc.jsonl) tok/s, with --overlap $(speed bild_overlap.jsonl) tok/s"
    echo "stories pair on the GPU (greedy, $N_PROMPTS prompts x $TOKENS tokens): BiLD $(speed bild_gpu.jsonl) tok/s," \
         "large alone $(speed large_gpu.jsonl) tok/s; on this machine's CPU: BiLD $(speed bild_cpu.jsonl)," \
         "large alone $(speed large_cpu.jsonl) tok/s"
    [ $FAILED -eq 0 ] && echo "all checks passed" || echo "SOME CHECKS FAILED"
} | tee "$WORK/summary_table.txt"
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    cp "$WORK"/summary_table.txt "$OUT"/ 2>/dev/null
    tar czf "$OUT/logs.tgz" -C "$WORK" --exclude='stories15M-*' . 2>/dev/null
fi
exit $FAILED
