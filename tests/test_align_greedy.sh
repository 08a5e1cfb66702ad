#!/bin/sh
# test_align_greedy.sh - the tools of the default small model's second stage
# (tools/align/make_greedy.sh), on stories260K: greedy_prompts.py cuts
# distinct prompts from a sampled corpus and leaves out the excluded lines;
# align-data continues them greedily (each row begins with BOS and its
# prompt's tokens, and a row equals `bild run -t 0` of its prompt);
# merge_corpus.py concatenates corpora byte for byte, refuses a corpus of
# another shape, and train_small.py accepts what it writes. Needs
# /usr/bin/python3 with torch (make deps).
set -u
. tests/cli_lib.sh
PY=/usr/bin/python3
$PY -c 'import torch, numpy' 2>/dev/null \
    || { echo "FAIL: /usr/bin/python3 cannot import torch and numpy (make deps installs python3-torch)"; exit 1; }
[ -x "$BILD" ] || { echo "FAIL: $BILD not built"; exit 1; }
AD="$BILD align-data -L $M260 -z $T512 -q -j 1"

$AD --tokens 4000 --row-len 24 -t 1 -s 5 --topk 0 --out "$tmp/pre" 2>"$tmp/err" || fail "align-data pre: $(cat "$tmp/err")"
$PY tools/align/greedy_prompts.py --corpus "$tmp/pre" --tokenizer "$T512" --out "$tmp/all.txt" --seed 1 2>"$tmp/err" \
    || fail "greedy_prompts: $(cat "$tmp/err")"
head -n 3 "$tmp/all.txt" >"$tmp/ex.txt"
$PY tools/align/greedy_prompts.py --corpus "$tmp/pre" --tokenizer "$T512" --out "$tmp/p.txt" --exclude "$tmp/ex.txt" \
    --seed 1 2>"$tmp/err" || fail "greedy_prompts --exclude: $(cat "$tmp/err")"
$PY - "$tmp/all.txt" "$tmp/p.txt" "$tmp/ex.txt" <<'EOF' && echo "ok   greedy_prompts: distinct prompts, excluded lines left out" || fail "greedy_prompts output"
import sys
a, p, ex = (open(f).read().splitlines() for f in sys.argv[1:])
assert len(a) >= 20 and len(set(a)) == len(a), (len(a), len(set(a)))
assert all(s.strip() == s and s for s in a), "blank or padded prompt"
assert p == [s for s in a if s not in ex], "exclusion changed more than the excluded lines"
print("   %d prompts from 166 rows, %d after leaving out 3" % (len(a), len(p)))
EOF

# greedy rows from the prompts; a row is bild run's greedy text from its prompt
head -n 8 "$tmp/p.txt" >"$tmp/p8.txt"
$AD --prompts "$tmp/p8.txt" --tokens $((8 * 32)) --row-len 32 -t 0 -s 1 --topk 4 --out "$tmp/g1" 2>"$tmp/err" \
    || fail "align-data greedy: $(cat "$tmp/err")"
$AD --prompts "$tmp/p8.txt" --tokens $((4 * 32)) --row-len 32 -t 0 -s 2 --topk 4 --out "$tmp/g2" 2>"$tmp/err" \
    || fail "align-data greedy 2: $(cat "$tmp/err")"
p3=$(sed -n 3p "$tmp/p8.txt")
"$BILD" run -m "$M260" -z "$T512" -p "$p3" -n 40 -t 0 --json -q >"$tmp/run.json" 2>"$tmp/err" || fail "run: $(cat "$tmp/err")"
$PY - "$tmp/g1" "$tmp/run.json" <<'EOF' && echo "ok   greedy row = bild run -t 0 from its prompt" || fail "greedy row vs bild run"
import array, json, sys
t = array.array("I"); t.frombytes(open(sys.argv[1] + "/tokens.u32", "rb").read())
row = list(t[2 * 32:3 * 32])  # row 2: prompt 3
r = json.load(open(sys.argv[2]))
want = r["tokens"]
assert row[0] == 1, row
n = r["prompt_tokens"]  # BOS included
assert row[n:] == want[:32 - n], "row 2 after its %d prompt tokens: %s, bild run: %s" % (n, row[n:], want[:32 - n])
print("   row 2: %d prompt tokens (BOS included), then %d greedy tokens equal to bild run's" % (n, 32 - n))
EOF

# merge: byte-for-byte concatenation, a manifest train_small accepts
$PY tools/align/merge_corpus.py "$tmp/m" "$tmp/g1" "$tmp/g2" >"$tmp/out" 2>"$tmp/err" || fail "merge: $(cat "$tmp/err")"
for f in tokens.u32 topk_ids.u32 topk_logp.f16; do
    cat "$tmp/g1/$f" "$tmp/g2/$f" | cmp -s - "$tmp/m/$f" || fail "merge: $f is not the concatenation"
done
$PY -c 'import json, sys; m = json.load(open(sys.argv[1])); assert m["rows"] == 12 and m["tokens"] == 384, m' \
    "$tmp/m/manifest.json" && echo "ok   merge_corpus: 8 + 4 rows, files concatenated" || fail "merge manifest"
$PY tools/align/train_small.py --corpus "$tmp/m" --tokenizer "$T512" --out "$tmp/t" --dim 16 --n-layers 1 --n-heads 2 \
    --steps 2 --batch 4 --threads 1 --no-hf >/dev/null 2>"$tmp/err" && echo "ok   train_small accepts the merged corpus" \
    || fail "train_small on the merged corpus: $(tail -n 3 "$tmp/err")"
$AD --tokens 64 --row-len 16 -t 0 --topk 4 --out "$tmp/g16" 2>/dev/null
if $PY tools/align/merge_corpus.py "$tmp/m2" "$tmp/g1" "$tmp/g16" 2>"$tmp/err"; then
    fail "merge of row_len 32 and 16 accepted"
elif grep -q "row_len" "$tmp/err" && [ ! -e "$tmp/m2" ]; then
    echo "ok   merge refuses another row_len: $(cat "$tmp/err")"
else
    fail "merge refusal: $(cat "$tmp/err")"
fi
echo "test_align_greedy: $fails failed"
[ $fails -eq 0 ]
