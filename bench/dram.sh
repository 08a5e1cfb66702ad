#!/bin/sh
# dram.sh - decoding a model no cache holds: a random llama2.c checkpoint of
# stories110M's shape (dim 768, 12 layers, 12 heads, hidden 2048, vocab
# 32000, seq 1024: 110M parameters, 436 MB f32), so the comparison means the
# same on a machine with a 300 MB L3 as on one with 32 MiB.
#
# Runs, interleaved round by round, `bild run` (as it comes, and with its
# classifier screen off: BILD_SCREEN=0) and llama2.c's run.c (built by
# ../shared/peers/build.sh) on it, 1 and 2 threads, and prints their median
# decode tokens/s, the ratio, and bild's fraction of the DRAM floor (weight
# bytes / the read bandwidth of a 1 GiB buffer in the pages bild holds the
# weights in, huge pages unless BILD_HUGEPAGES=0, measured by bench/decode in
# the same run); then bench/decode's own table on the model (f32, and its
# matrices as bf16: the bandwidth floor for half weights).
#
# usage: bench/dram.sh [ROUNDS (default 5)] [N tokens (default 128)]
# Environment: BILD (default build/bild), PEERS (default /tmp/bild-peers),
# DRAM_DIR (where the checkpoint is written once, default /tmp/bild-dram),
# TOK (a 32000-piece tokenizer.bin, default models/stories15M/tokenizer.bin).
# Not a test: it prints numbers and asserts nothing.
set -eu
ROUNDS=${1:-5}
N=${2:-128}
BILD=${BILD:-build/bild}
PEERS=${PEERS:-/tmp/bild-peers}
DIR=${DRAM_DIR:-/tmp/bild-dram}
TOK=${TOK:-models/stories15M/tokenizer.bin}
CK=$DIR/random110M.bin
mkdir -p "$DIR"
[ -f "$TOK" ] || { echo "bench/dram.sh: no tokenizer at $TOK (make models)" >&2; exit 2; }
if [ ! -f "$CK" ]; then
    echo "writing $CK (436 MB of random f32 weights)" >&2
    /usr/bin/python3 - "$CK" <<'PY'
import struct, sys
import numpy as np
dim, hid, L, H, KV, V, S = 768, 2048, 12, 12, 12, 32000, 1024
hd = dim // H
rng = np.random.default_rng(110)
with open(sys.argv[1] + ".tmp", "wb") as f:
    f.write(struct.pack("<7i", dim, hid, L, H, KV, V, S))  # V > 0: the classifier is tok_emb
    def mat(*shape, scale):
        f.write((rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)).tobytes())
    mat(V, dim, scale=2.5 / dim ** 0.5)                   # tok_emb (= classifier)
    f.write(np.ones((L, dim), np.float32).tobytes())       # rms_att
    for _ in range(4): mat(L, dim, dim, scale=1 / dim ** 0.5)  # wq wk wv wo
    f.write(np.ones((L, dim), np.float32).tobytes())       # rms_ffn
    mat(L, hid, dim, scale=1 / dim ** 0.5)                 # w1
    mat(L, dim, hid, scale=1 / hid ** 0.5)                 # w2
    mat(L, hid, dim, scale=1 / dim ** 0.5)                 # w3
    f.write(np.ones(dim, np.float32).tobytes())            # rms_final
    pos = np.arange(S)[:, None] * 10000.0 ** (-2 * np.arange(hd // 2) / hd)[None, :]
    f.write(np.cos(pos).astype(np.float32).tobytes())      # legacy freq_cis_real
    f.write(np.sin(pos).astype(np.float32).tobytes())      # legacy freq_cis_imag
import os
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
PY
fi
cat /proc/cpuinfo | grep -m1 'model name' >&2 || true
lscpu 2>/dev/null | grep -E '^L3' >&2 || true
out=$(mktemp)
trap 'rm -f "$out"' EXIT
have_peer=0
[ -x "$PEERS/llama2c-run" ] && have_peer=1
[ $have_peer -eq 1 ] || echo "bench/dram.sh: no $PEERS/llama2c-run (../shared/peers/build.sh): bild alone" >&2
P="Once upon a time"
for r in $(seq "$ROUNDS"); do
    for T in 1 2; do
        v=$("$BILD" run -m "$CK" -z "$TOK" -p "$P" -n "$N" -t 0 -j "$T" --json 2>/dev/null |
            /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["decode_tok_per_s"])')
        printf 'bild run\t%s\t%s\n' "$T" "$v" >>"$out"
        v=$(BILD_SCREEN=0 "$BILD" run -m "$CK" -z "$TOK" -p "$P" -n "$N" -t 0 -j "$T" --json 2>/dev/null |
            /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["decode_tok_per_s"])')
        printf 'bild run, no screen\t%s\t%s\n' "$T" "$v" >>"$out"
        if [ $have_peer -eq 1 ]; then
            v=$(OMP_NUM_THREADS=$T "$PEERS/llama2c-run" "$CK" -z "$TOK" -t 0 -n "$((N + 8))" -i "$P" 2>&1 |
                grep -oE 'achieved tok/s: [0-9.]+' | awk '{print $3}')
            printf 'llama2.c run.c\t%s\t%s\n' "$T" "$v" >>"$out"
        fi
    done
done
"${BENCH_DECODE:-$(dirname "$BILD")/bench/decode}" --model "$CK" --steps 64 >"$out.decode" 2>&1 || true
dram=$(grep -F '1 GiB buffer (DRAM)' "$out.decode" | awk '{print $5, $6}')
/usr/bin/python3 - "$out" "$(stat -c %s "$CK")" "$dram" <<'PY'
import collections, statistics as st, sys
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    k, t, v = l.rstrip("\n").split("\t")
    if v: d[(k, int(t))].append(float(v))
size = int(sys.argv[2]) - 28 - 2 * 1024 * 32 * 4  # weights read per step: the file less header and the legacy RoPE tables
bw = [float(x) for x in sys.argv[3].split()] if sys.argv[3].strip() else []
screened = size - 32000 * 768 * 3  # bild run's greedy step: the shared classifier through its int8 screen (a quarter of its bytes)
print("random stories110M-shaped checkpoint, %.0f MB of f32 weights read per step (%.0f MB by bild run's greedy step: the\n"
      "classifier's int8 screen; BILD_SCREEN=0 reads them all); median decode tokens/s:" % (size / 1e6, screened / 1e6))
for T in (1, 2):
    for k, nbytes in (("bild run", screened), ("bild run, no screen", size)):
        b = st.median(d[(k, T)]) if d[(k, T)] else float("nan")
        line = "  %d thread%s: %-19s %7.1f" % (T, "s" if T > 1 else " ", k, b)
        if d[("llama2.c run.c", T)]:
            p = st.median(d[("llama2.c run.c", T)])
            line += "   llama2.c %7.1f   bild / llama2.c %.2f" % (p, b / p)
        if len(bw) == 2:
            floor = bw[T - 1] * 1e9 / nbytes
            line += "   DRAM floor %.1f tok/s (%.0f MB at %.1f GB/s): bild at %.2f of it" % (floor, nbytes / 1e6, bw[T - 1], b / floor)
        print(line)
PY
echo
echo "bench/decode on it:"
cat "$out.decode"
rm -f "$out.decode"
