#!/bin/sh
# test_convert.sh - stories15M written out as a Hugging Face directory by
# tools/llama2c_to_hf.py (f32, rotate-half q/k permutation, tokenizer.json
# derived from tokenizer.bin) gives byte-identical greedy text to the
# llama2.c original on the first 5 TinyStories prompts (150 tokens each),
# through the safetensors loader, the half-rotation RoPE and the HF
# tokenizer. The bf16 directory must load and run; where its text departs
# from f32 is reported (it is the rounding of the weights: see
# tools/ref/hf_greedy_ref.py and the closing note of issue 3).
set -u
. tests/cli_lib.sh
/usr/bin/python3 -c 'import numpy' 2>/dev/null || { echo "FAIL: /usr/bin/python3 has no numpy (make deps installs python3-numpy)"; exit 1; }
for dt in f32 bf16; do
    /usr/bin/python3 tools/llama2c_to_hf.py "$LG" "$tmp/hf-$dt" --tokenizer "$TOK" --dtype "$dt" >"$tmp/conv.log" 2>&1 \
        || { fail "convert $dt: $(cat "$tmp/conv.log")"; continue; }
done
head -n 5 tests/data/prompts20.txt >"$tmp/p5"
n=0
while IFS= read -r P; do
    n=$((n + 1))
    "$BILD" run -m "$LG" -z "$TOK" -p "$P" -n 150 -t 0 -q >"$tmp/orig" 2>&1 || fail "original run"
    "$BILD" run -m "$tmp/hf-f32" -p "$P" -n 150 -t 0 -q >"$tmp/f32" 2>"$tmp/err" || fail "hf f32 run: $(cat "$tmp/err")"
    cmp -s "$tmp/orig" "$tmp/f32" && echo "ok   prompt $n: f32 directory, same text" || fail "prompt $n: f32 text differs"
    "$BILD" run -m "$LG" -z "$TOK" -p "$P" -n 150 -t 0 --json -q >"$tmp/o.json" 2>&1
    "$BILD" run -m "$tmp/hf-bf16" -p "$P" -n 150 -t 0 --json -q >"$tmp/b.json" 2>"$tmp/err" || fail "hf bf16 run: $(cat "$tmp/err")"
    /usr/bin/python3 -c '
import json, sys
a, b = (json.load(open(p))["tokens"] for p in sys.argv[1:3])
d = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), None)
print("     bf16: %s" % ("same %d tokens" % len(a) if a == b else "first differs at token %d" % d))' "$tmp/o.json" "$tmp/b.json"
done <"$tmp/p5"
# a large worker on the HF directory and a coordinator holding tokenizer.bin:
# one vocabulary, one fingerprint; same tokens as in process
"$BILD" large-worker -m "$tmp/hf-f32" -b "ipc://$tmp/l.sock" -j 1 >/dev/null 2>"$tmp/w.log" &
wpid=$!
trap 'kill $wpid 2>/dev/null; rm -rf "$tmp"' EXIT
i=0; while ! grep -q "listening on" "$tmp/w.log" && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
"$BILD" generate -S "$SM" -z "$TOK" --large-endpoint "ipc://$tmp/l.sock" -p "Tom had a red ball." -n 40 --json -q \
    >"$tmp/r.json" 2>"$tmp/err" || fail "HF worker with a tokenizer.bin coordinator: $(cat "$tmp/err")"
"$BILD" generate -S "$SM" -L "$LG" -p "Tom had a red ball." -n 40 --json -q >"$tmp/l.json" 2>&1
/usr/bin/python3 -c 'import json,sys; a,b=(json.load(open(p))["tokens"] for p in sys.argv[1:]); sys.exit(a!=b)' \
    "$tmp/r.json" "$tmp/l.json" && echo "ok   HF worker, tokenizer.bin coordinator: handshake accepted, same tokens" \
    || fail "HF worker run differs"
kill $wpid 2>/dev/null
echo "test_convert: $fails failed"
[ $fails -eq 0 ]
