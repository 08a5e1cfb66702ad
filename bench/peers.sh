#!/bin/sh
# peers.sh - decode only: stories15M f32, greedy, one short prompt and N new
# tokens, bild run against llama2.c's run.c and llama.cpp (both built by
# ../shared/peers/build.sh), 1 and 2 threads, bild on the machine's best
# kernels and on AVX2 (BILD_ISA=avx2). Every engine runs in every round,
# the rounds interleave all of them, and the table gives medians of each
# engine's own decode tokens/s and bild / the faster peer.
#
# ../shared/peers/compare.sh measures the same engines over 20 prompts with
# 128 tokens each; here one prompt and a longer generation, so the prompt's
# share of llama2.c's rate (it times its prompt steps too) is about 2% and
# every engine's number is its decode loop.
#
# usage: bench/peers.sh [ROUNDS (default 7)] [N tokens (default 200; the context is 256)]
# Environment: BILD (default build/bild), PEERS (default /tmp/bild-peers),
# MODEL_DIR (stories15M.bin and tokenizer.bin, default models/stories15M).
# Not a test: it prints numbers and asserts nothing.
set -eu
ROUNDS=${1:-7}
N=${2:-200}
BILD=${BILD:-build/bild}
PEERS=${PEERS:-/tmp/bild-peers}
M=${MODEL_DIR:-models/stories15M}
LC=$PEERS/llama.cpp/build/bin
GGUF=$PEERS/stories15M-f32.gguf
[ -f "$M/stories15M.bin" ] || { echo "bench/peers.sh: no $M/stories15M.bin (make models)" >&2; exit 2; }
[ -x "$BILD" ] || { echo "bench/peers.sh: no $BILD (make)" >&2; exit 2; }
if [ ! -x "$PEERS/llama2c-run" ] || [ ! -x "$LC/llama-completion" ] || [ ! -f "$GGUF" ]; then
    echo "bench/peers.sh: the peers are not built in $PEERS: run ../shared/peers/build.sh" >&2
    exit 2
fi
grep -m1 'model name' /proc/cpuinfo >&2 || true
lscpu 2>/dev/null | grep -E '^L3' >&2 || true
out=$(mktemp)
trap 'rm -f "$out"' EXIT
P="Once upon a time"
bild_run() { # ISA THREADS
    BILD_ISA=$1 "$BILD" run -m "$M/stories15M.bin" -z "$M/tokenizer.bin" -p "$P" -n "$N" -t 0 -j "$2" --json 2>/dev/null |
        /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["decode_tok_per_s"])'
}
for r in $(seq "$ROUNDS"); do
    for T in 1 2; do
        printf 'llama2.c\t%s\t%s\n' "$T" "$(OMP_NUM_THREADS=$T "$PEERS/llama2c-run" "$M/stories15M.bin" -z "$M/tokenizer.bin" \
            -t 0 -n "$((N + 5))" -i "$P" 2>&1 | grep -oE 'achieved tok/s: [0-9.]+' | awk '{print $3}')" >>"$out"
        printf 'llama.cpp\t%s\t%s\n' "$T" "$("$LC/llama-completion" -m "$GGUF" -p "$P" -n "$N" --temp 0 -no-cnv -t "$T" \
            -c 256 2>&1 </dev/null | grep ' eval time' | grep -v prompt | grep -oE '[0-9.]+ tokens per second' |
            awk '{print $1}')" >>"$out"
        printf 'bild\t%s\t%s\n' "$T" "$(bild_run auto "$T")" >>"$out"
        printf 'bild avx2\t%s\t%s\n' "$T" "$(bild_run avx2 "$T")" >>"$out"
    done
done
best=$(BILD_ISA=auto "$BILD" run -m "$M/stories15M.bin" -z "$M/tokenizer.bin" -p "$P" -n 2 -t 0 2>&1 >/dev/null |
    grep -oE 'cpu/[a-z0-9]+' | head -1)
/usr/bin/python3 - "$out" "$ROUNDS" "$N" "${best:-cpu/?}" <<'PY'
import collections, statistics as st, sys
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    k, t, v = l.rstrip("\n").split("\t")
    if v:
        d[(k, int(t))].append(float(v))
print("stories15M f32, decode only (%s rounds x %s tokens); median decode tokens/s; bild chose %s"
      % (sys.argv[2], sys.argv[3], sys.argv[4]))
print("  threads  llama2.c  llama.cpp     bild  bild avx2   bild / faster peer   avx2 / faster peer")
for T in (1, 2):
    med = {k: st.median(d[(k, T)]) if d[(k, T)] else float("nan") for k in ("llama2.c", "llama.cpp", "bild", "bild avx2")}
    peer = max(med["llama2.c"], med["llama.cpp"])
    print("  %7d  %8.1f  %9.1f  %7.1f  %9.1f   %18.2f   %18.2f"
          % (T, med["llama2.c"], med["llama.cpp"], med["bild"], med["bild avx2"], med["bild"] / peer, med["bild avx2"] / peer))
print("  ranges:", "; ".join("%s %dt %.0f-%.0f" % (k, t, min(v), max(v)) for (k, t), v in sorted(d.items())))
PY
