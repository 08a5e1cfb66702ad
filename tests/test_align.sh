#!/bin/sh
# test_align.sh - `bild align-data` and `bild align-eval` end to end on
# stories260K: the corpus files' sizes and manifest fields (FNV-1a hashes
# recomputed here), reproducibility by seed (and independence from
# --batch), the top-K files' order and values, greedy rows equal to `bild
# run`'s greedy text, prompts, align-eval of a model against itself, and one
# case per kind of bad input (exit code and a one-line message).
# Run from the repository root; BUILD selects the build folder.
set -u
. tests/cli_lib.sh

PY=python3

# 1. A sampled corpus: 1000 tokens in rows of 64 -> 16 rows; top-8.
"$BILD" align-data -L "$M260" --tokens 1000 --row-len 64 --topk 8 --batch 5 -s 3 -j 2 --out "$tmp/c1" \
    >"$tmp/out" 2>"$tmp/err" || fail "align-data: $(cat "$tmp/err")"
[ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "wrote $tmp/c1: 16 rows x 64 tokens" "$tmp/err" && [ ! -s "$tmp/out" ] \
    && echo "ok   align-data: one summary line, nothing on stdout" || fail "align-data output: $(cat "$tmp/err" "$tmp/out")"
[ "$(ls -A "$tmp/c1" | tr '\n' ' ')" = "manifest.json tokens.u32 topk_ids.u32 topk_logp.f16 " ] \
    && echo "ok   align-data: exactly the four files (no temporaries left)" || fail "files: $(ls -A "$tmp/c1")"
$PY - "$tmp/c1" "$M260" "$T512" <<'EOF' && echo "ok   manifest fields, file sizes, hashes; top-K sorted, logp <= 0" || fail "corpus check"
import array, json, os, struct, sys
d, model, tok = sys.argv[1:4]
m = json.load(open(os.path.join(d, "manifest.json")))
def fnv(b, h=0xcbf29ce484222325):
    for x in b:
        h = ((h ^ x) * 0x100000001b3) & (2**64 - 1)
    return "%016x" % h
S, L, K, V = 16, 64, 8, 512
assert m["format"] == "bild-align-corpus" and m["version"] == 1, m
assert (m["rows"], m["row_len"], m["tokens"], m["vocab_size"], m["bos_id"], m["eos_id"]) == (S, L, S * L, V, 1, 2), m
assert len(m["vocab_fingerprint"]) == 16 and int(m["vocab_fingerprint"], 16) >= 0
assert m["tokenizer"] == {"path": tok, "fnv1a64": fnv(open(tok, "rb").read())}, m["tokenizer"]
raw = open(model, "rb").read()
hdr = struct.unpack("<7i", raw[:28])
dim, hid, nl, nh, nkv, vocab = hdr[:6]
emb = raw[28:28 + V * dim * 4]
want = {"path": model, "fnv1a64": fnv(struct.pack("<6i", dim, hid, nl, nh, nkv, V) + emb), "dim": dim,
        "n_layers": nl, "n_heads": nh, "n_kv_heads": nkv, "hidden_dim": hid, "vocab_size": V, "dtype": "f32"}
assert m["model"] == want, (m["model"], want)
assert m["settings"] == {"temperature": 1, "top_p": 1, "seed": 3, "prompts": None, "topk": K, "threads": 2,
                         "batch": 5}, m["settings"]
assert m["files"] == {"tokens": "tokens.u32", "topk_ids": "topk_ids.u32", "topk_logp": "topk_logp.f16"}
assert m["wall_s"] >= 0 and m["tok_s"] > 0
sizes = {f: os.path.getsize(os.path.join(d, f)) for f in m["files"].values()}
assert sizes == {"tokens.u32": S * L * 4, "topk_ids.u32": S * L * K * 4, "topk_logp.f16": S * L * K * 2}, sizes
t = array.array("I", open(os.path.join(d, "tokens.u32"), "rb").read())
ids = array.array("I", open(os.path.join(d, "topk_ids.u32"), "rb").read())
lp = struct.unpack("<%de" % (S * L * K), open(os.path.join(d, "topk_logp.f16"), "rb").read())
assert all(t[r * L] == 1 for r in range(S)), "rows start with BOS"
assert max(t) < V and max(ids) < V
for i in range(S * L):
    row, ps = ids[i * K:(i + 1) * K], lp[i * K:(i + 1) * K]
    assert len(set(row)) == K, row
    assert all(p <= 0 for p in ps), ps
    assert all(ps[k] >= ps[k + 1] for k in range(K - 1)), ps
    assert sum(2.718281828 ** p for p in ps) <= 1.001
EOF

# 2. Reproducible: the same seed gives the same bytes (with another batch
#    size and thread count too: each row's sampler depends on the seed and
#    the row only); another seed gives other tokens.
"$BILD" align-data -L "$M260" --tokens 1000 --row-len 64 --topk 8 --batch 5 -s 3 -j 2 --out "$tmp/c2" -q || fail "c2"
"$BILD" align-data -L "$M260" --tokens 1000 --row-len 64 --topk 8 --batch 16 -s 3 -j 1 --out "$tmp/c3" -q || fail "c3"
"$BILD" align-data -L "$M260" --tokens 1000 --row-len 64 --topk 8 --batch 5 -s 4 -j 2 --out "$tmp/c4" -q || fail "c4"
same=1
for f in tokens.u32 topk_ids.u32 topk_logp.f16; do cmp -s "$tmp/c1/$f" "$tmp/c2/$f" || same=0; done
[ $same -eq 1 ] && echo "ok   same seed: byte-identical corpus" || fail "same seed differs"
same=1
for f in tokens.u32 topk_ids.u32 topk_logp.f16; do cmp -s "$tmp/c1/$f" "$tmp/c3/$f" || same=0; done
[ $same -eq 1 ] && echo "ok   same seed, --batch 16 -j 1: byte-identical corpus" || fail "batch size changes the corpus"
cmp -s "$tmp/c1/tokens.u32" "$tmp/c4/tokens.u32" && fail "another seed gives the same tokens" || echo "ok   another seed differs"

# 3. Greedy: the next token is the top-1 of the position before, and each
#    row is `bild run`'s greedy text from BOS, token for token.
"$BILD" align-data -L "$M260" --tokens 192 --row-len 64 --topk 4 --batch 2 -t 0 --out "$tmp/g" -q --json \
    >"$tmp/gjson" 2>"$tmp/err" || fail "greedy corpus: $(cat "$tmp/err")"
"$BILD" run -m "$M260" -p "" -n 63 -t 0 -q --json >"$tmp/run.json" 2>"$tmp/err" || fail "bild run: $(cat "$tmp/err")"
$PY - "$tmp/g" "$tmp/run.json" "$tmp/gjson" <<'EOF' && echo "ok   greedy: tokens[t+1] = topk_ids[t][0]; rows = bild run -t 0 from BOS" || fail "greedy corpus"
import array, json, sys
d = sys.argv[1]
S, L, K = 3, 64, 4
t = array.array("I", open(d + "/tokens.u32", "rb").read())
ids = array.array("I", open(d + "/topk_ids.u32", "rb").read())
for r in range(S):
    for p in range(L - 1):
        assert t[r * L + p + 1] == ids[(r * L + p) * K], (r, p)
run = json.load(open(sys.argv[2]))["tokens"]
assert len(run) >= 40, len(run)  # stories260K's greedy story is longer than a row
for r in range(S):
    assert list(t[r * L + 1:r * L + 1 + len(run)]) == run, (r, list(t[r * L:r * L + 20]), run[:20])
s = json.loads(open(sys.argv[3]).read())
assert (s["rows"], s["row_len"], s["tokens"], s["topk"], s["batch"]) == (3, 64, 192, 4, 2), s
EOF

# 4. Prompts, cycled over rows: each row starts with its prompt's ids (BOS
#    first) and continues as `bild run` greedy does from that prompt.
printf 'Once upon a time\n\nLily had a cat\n' >"$tmp/prompts.txt"
"$BILD" align-data -L "$M260" --prompts "$tmp/prompts.txt" --tokens 256 --row-len 64 -t 0 --topk 0 -b 3 \
    --out "$tmp/p" -q || fail "prompts corpus"
"$BILD" run -m "$M260" -p "Once upon a time" -n 40 -t 0 -q --json >"$tmp/p1.json" || fail "run p1"
"$BILD" run -m "$M260" -p "Lily had a cat" -n 40 -t 0 -q --json >"$tmp/p2.json" || fail "run p2"
$PY - "$tmp/p" "$tmp/p1.json" "$tmp/p2.json" <<'EOF' && echo "ok   prompts: cycled over rows, continued as bild run does; no top-K files" || fail "prompts corpus"
import array, json, os, sys
d = sys.argv[1]
m = json.load(open(d + "/manifest.json"))
assert m["settings"]["topk"] == 0 and m["files"] == {"tokens": "tokens.u32"}, m
assert not os.path.exists(d + "/topk_ids.u32")
L = 64
t = array.array("I", open(d + "/tokens.u32", "rb").read())
runs = [json.load(open(p)) for p in sys.argv[2:4]]
for r in range(4):
    j = runs[r % 2]
    want = j["prompt_ids"] + j["tokens"]
    assert list(t[r * L:r * L + len(want)]) == want, (r, list(t[r * L:r * L + 12]), want[:12])
EOF

# 5. --force replaces a corpus; without it a non-empty folder is refused.
expect "existing non-empty --out" 2 "exists and is not empty" -- align-data -L "$M260" --tokens 64 --out "$tmp/c1"
"$BILD" align-data -L "$M260" --tokens 64 --row-len 32 --topk 0 --out "$tmp/c1" --force -q \
    && [ "$(ls -A "$tmp/c1" | tr '\n' ' ')" = "manifest.json tokens.u32 " ] && [ "$(wc -c <"$tmp/c1/tokens.u32")" -eq 256 ] \
    && echo "ok   --force replaces the corpus (old top-K files gone)" || fail "--force: $(ls -A "$tmp/c1")"

# 6. align-eval: a model against itself agrees everywhere, with equal perplexities.
printf 'Once upon a time, there was a little girl named Lily. She liked to play.\n<|endoftext|>\n' >"$tmp/text.txt"
printf '<|endoftext|>\nTom had a big red ball. He played with it every day.\n\nOne day the ball was lost.\n' >>"$tmp/text.txt"
printf '<|endoftext|>\n   \n<|endoftext|>\nThe sun was hot. Ben and Mia went to the park.\n' >>"$tmp/text.txt"
"$BILD" align-eval -S "$M260" -L "$M260" --text "$tmp/text.txt" --json -j 2 >"$tmp/eval.json" 2>"$tmp/err" \
    || fail "align-eval self: $(cat "$tmp/err")"
$PY - "$tmp/eval.json" <<'EOF' && echo "ok   align-eval self: 100% agreement, equal perplexities, 3 documents" || fail "align-eval self"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["documents"] == 3 and j["positions"] > 30, j
assert j["agreement"] == 1.0, j
assert j["small"]["perplexity"] == j["large"]["perplexity"] and 1 < j["small"]["perplexity"] < 100, j
assert j["small"]["accuracy"] == j["large"]["accuracy"]
assert [t["threshold"] for t in j["thresholds"]] == [0.5, 0.6, 0.7, 0.8, 0.9]
for t in j["thresholds"]:
    assert 0 <= t["confident"] <= 1 and (t["agreement"] is None or t["agreement"] == 1.0), t
assert j["c"] > 0 and j["timing_steps"] > 100
EOF
# one document without markers; windows of 8 tokens overlap by one: the
# same positions and perplexity as one long window
tr '\n' ' ' <"$tmp/text.txt" | sed 's/<|endoftext|>//g' >"$tmp/one.txt"
"$BILD" align-eval -S "$M260" -L "$M260" --text "$tmp/one.txt" --json -q >"$tmp/one.json" || fail "one document"
"$BILD" align-eval -S "$M260" -L "$M260" --text "$tmp/one.txt" --json -q --ctx 8 --thresholds 0.3 >"$tmp/one8.json" \
    || fail "ctx 8"
"$BILD" align-eval -S "$M260" -L "$M260" --text "$tmp/one.txt" --json -q --max-tokens 10 >"$tmp/max.json" \
    || fail "max-tokens"
$PY - "$tmp/one.json" "$tmp/one8.json" "$tmp/max.json" <<'EOF' && echo "ok   align-eval: one document, --ctx windows, --max-tokens" || fail "align-eval windows"
import json, sys
a, b, c = (json.load(open(p)) for p in sys.argv[1:4])
assert a["documents"] == 1 and a["windows"] == 1, a
assert b["windows"] > 5 and b["positions"] == a["positions"] and b["ctx"] == 8, (a, b)
assert [t["threshold"] for t in b["thresholds"]] == [0.3]
assert c["positions"] == 10, c
EOF
"$BILD" align-eval -S "$M260" -L "$M260" --text "$tmp/text.txt" -q >"$tmp/table" 2>"$tmp/err" \
    && grep -q "greedy agreement (small argmax = large argmax): 100.0%" "$tmp/table" && [ ! -s "$tmp/err" ] \
    && echo "ok   align-eval: the table on stdout" || fail "align-eval table: $(cat "$tmp/table" "$tmp/err")"

# 7. Bad input: one line, the right exit code.
expect "align-data: unreadable model" 3 "$tmp/nope.bin" -- align-data -L "$tmp/nope.bin" --tokens 10 --out "$tmp/x"
expect "align-data: tokenizer of another vocabulary" 3 "tokenizer.bin" -- align-data -L "$M260" -z "$TOK" --tokens 10 --out "$tmp/x"
expect "align-data: --tokens 0" 2 "--tokens: 0 is out of range" -- align-data -L "$M260" --tokens 0 --out "$tmp/x"
expect "align-data: no --tokens" 2 "--tokens is required" -- align-data -L "$M260" --out "$tmp/x"
expect "align-data: no --out" 2 "--out is required" -- align-data -L "$M260" --tokens 10
expect "align-data: row longer than the context" 4 "--row-len 513 is longer than the model's context of 512" -- \
    align-data -L "$M260" --tokens 10 --row-len 513 --out "$tmp/x"
expect "align-data: --topk above the vocabulary" 2 "--topk 600 is more than the vocabulary of 512" -- \
    align-data -L "$M260" --tokens 10 --topk 600 --out "$tmp/x"
expect "align-data: negative --topk" 2 "--topk: -1 is out of range" -- align-data -L "$M260" --tokens 10 --topk -1 --out "$tmp/x"
expect "align-data: --out is a file" 2 "is not a folder" -- align-data -L "$M260" --tokens 10 --out "$tmp/text.txt"
expect "align-data: unreadable prompts file" 3 "$tmp/nope.txt" -- align-data -L "$M260" --tokens 10 --prompts "$tmp/nope.txt" --out "$tmp/x"
printf '\n  \n' >"$tmp/blank.txt"
expect "align-data: prompts file without prompts" 3 "holds no prompt" -- align-data -L "$M260" --tokens 10 --prompts "$tmp/blank.txt" --out "$tmp/x"
expect "align-data: prompt longer than a row" 4 "longer than a row (4)" -- align-data -L "$M260" --tokens 10 --row-len 4 --prompts "$tmp/prompts.txt" --out "$tmp/x"
[ ! -e "$tmp/x" ] && echo "ok   refused runs leave no --out folder" || fail "a refused run made $tmp/x"
: >"$tmp/empty.txt"
expect "align-eval: empty text file" 3 "nothing to evaluate" -- align-eval -S "$M260" -L "$M260" --text "$tmp/empty.txt"
printf '<|endoftext|>\n\n<|endoftext|>\n' >"$tmp/seps.txt"
expect "align-eval: only separators" 3 "nothing to evaluate" -- align-eval -S "$M260" -L "$M260" --text "$tmp/seps.txt"
expect "align-eval: missing text file" 3 "$tmp/nope.txt" -- align-eval -S "$M260" -L "$M260" --text "$tmp/nope.txt"
expect "align-eval: vocabulary sizes differ" 3 "vocabularies differ: the small model has 103 tokens, the large one 512" -- \
    align-eval -S tests/data/tiny_gqa.bin -L "$M260" --text "$tmp/text.txt"
# same size, one piece changed: the small model's own tokenizer has another fingerprint
mkdir -p "$tmp/fp"
cp "$M260" "$tmp/fp/small.bin"
$PY - "$T512" "$tmp/fp/tok512.bin" <<'EOF'
import struct, sys
d = bytearray(open(sys.argv[1], "rb").read())
off = 4
for i in range(300):
    off += 8 + struct.unpack_from("<i", d, off + 4)[0]
d[off + 8] = ord("Q") if d[off + 8] != ord("Q") else ord("R")
open(sys.argv[2], "wb").write(bytes(d))
EOF
expect "align-eval: vocabulary fingerprints differ" 3 "first difference at id 300" -- \
    align-eval -S "$tmp/fp/small.bin" -L "$M260" --text "$tmp/text.txt"
expect "align-eval: unreadable small model" 3 "$tmp/nope.bin" -- align-eval -S "$tmp/nope.bin" -L "$M260" --text "$tmp/text.txt"
expect "align-eval: bad thresholds" 2 "--thresholds" -- align-eval -S "$M260" -L "$M260" --text "$tmp/text.txt" --thresholds 0.5,x
expect "align-eval: threshold above 1" 2 "--thresholds" -- align-eval -S "$M260" -L "$M260" --text "$tmp/text.txt" --thresholds 1.5
expect "align-eval: --ctx above the context" 4 "--ctx 600 is longer" -- align-eval -S "$M260" -L "$M260" --text "$tmp/text.txt" --ctx 600
expect "align-eval: no --text" 2 "--text is required" -- align-eval -S "$M260" -L "$M260"
# 8. Interrupted: exit 1, no corpus, no temporaries, and the folder it made is gone.
"$BILD" align-data -L "$LG" --tokens 1000000 --out "$tmp/int" -j 1 2>"$tmp/err" &
pid=$!
i=0
while [ ! -e "$tmp/int/.tokens.u32.tmp" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 1 ] && [ ! -e "$tmp/int" ] && grep -q "interrupted; nothing written" "$tmp/err" \
    && echo "ok   interrupted: exit 1, nothing left behind" || fail "interrupted: exit $rc, $(cat "$tmp/err"); $(ls -A "$tmp/int" 2>&1)"
"$BILD" align-data --help | grep -q -- "--row-len" && "$BILD" align-eval --help | grep -q -- "--thresholds" \
    && "$BILD" --help | grep -q "align-data" && echo "ok   --help" || fail "--help"

echo "test_align: $fails failed"
[ $fails -eq 0 ]
