#!/bin/sh
# test_generate_cli.sh - `bild generate` end to end: refusals (vocabulary
# mismatch, thresholds out of range, unknown mode, missing models) each with
# the right exit code and a one-line message; greedy BiLD with a tiny
# rollback threshold equals `bild run` greedy; --json statistics add up.
set -u
. tests/cli_lib.sh

expect "vocabulary sizes differ" 3 "vocabularies differ" -- generate -S "$M260" -L "$LG" -p x
# same size, different pieces: a copy of tokenizer.bin with piece 1000 changed
python3 - "$TOK" "$tmp/tok2.bin" <<'PY'
import struct, sys
d = bytearray(open(sys.argv[1], "rb").read())
off = 4
for i in range(1000):
    n = struct.unpack_from("<i", d, off + 4)[0]
    off += 8 + n
n = struct.unpack_from("<i", d, off + 4)[0]
d[off + 8] = ord("Q") if d[off + 8] != ord("Q") else ord("R")
open(sys.argv[2], "wb").write(bytes(d))
PY
mkdir -p "$tmp/small"
cp "$SM" "$tmp/small/small.bin"
cp "$tmp/tok2.bin" "$tmp/small/tokenizer.bin"
expect "tokenizers differ" 3 "differ first at id 1000" -- generate -S "$tmp/small/small.bin" -L "$LG" -p x
expect "fallback out of range" 2 "--fallback: 1.5" -- generate -S "$SM" -L "$LG" -p x --fallback 1.5
expect "rollback not positive" 2 "--rollback: 0" -- generate -S "$SM" -L "$LG" -p x --rollback 0
expect "max-small too large" 2 "--max-small: 99" -- generate -S "$SM" -L "$LG" -p x --max-small 99
expect "unknown mode" 2 "unknown mode 'turbo'" -- generate -S "$SM" -L "$LG" -p x --mode turbo
expect "missing --small" 2 "--small is required" -- generate -L "$LG" -p x
expect "missing --large" 2 "--large is required" -- generate -S "$SM" -p x
expect "faithful outside bild" 2 "--faithful" -- generate -S "$SM" -L "$LG" -p x --mode spec --faithful
expect "missing small file" 3 "$tmp/none.bin" -- generate -S "$tmp/none.bin" -L "$LG" -p x
expect "top-p with spec sampling" 2 "--top-p" -- generate -S "$SM" -L "$LG" -p x --mode spec -t 1 --top-p 0.9

P="Once upon a time, there was a little girl named Lily."
"$BILD" run -m "$LG" -p "$P" -n 100 -t 0 -q >"$tmp/large.txt" 2>&1 || fail "bild run"
"$BILD" generate -S "$SM" -L "$LG" -p "$P" -n 100 --rollback 0.0001 -q >"$tmp/bild.txt" 2>&1 || fail "bild generate"
cmp -s "$tmp/large.txt" "$tmp/bild.txt" && echo "ok   BiLD (rollback 1e-4) text == bild run greedy" \
    || fail "BiLD text differs from the large model's: $(diff "$tmp/large.txt" "$tmp/bild.txt" | head -3)"
"$BILD" generate -S "$SM" -L "$LG" -p "$P" -n 100 --mode spec --gamma 4 -q >"$tmp/spec.txt" 2>&1
cmp -s "$tmp/large.txt" "$tmp/spec.txt" && echo "ok   greedy spec text == bild run greedy" || fail "spec text differs"
"$BILD" generate -S "$SM" -L "$LG" -p "$P" -n 100 --json -q >"$tmp/j" 2>&1 || fail "json run"
python3 - "$tmp/j" <<'PY' && echo "ok   --json statistics add up" || fail "--json statistics"
import json, sys
j = json.load(open(sys.argv[1]))
s = j["stats"]
assert s["small_tokens"] + s["large_tokens"] == s["generated"] == len(j["tokens"]) == len(j["sources"]), s
assert j["sources"].count("S") == s["small_tokens"], s
assert s["n_drafted"] == s["n_accept"] + s["rolled_back"], s
assert s["large_passes"] >= 1 and s["small_passes"] >= 1 and s["cost_ratio"] > 0, s
PY
"$BILD" generate -S "$SM" -L "$LG" -p "$P" -n 40 -t 0.8 -s 5 -q >"$tmp/s1" 2>&1
"$BILD" generate -S "$SM" -L "$LG" -p "$P" -n 40 -t 0.8 -s 5 -q >"$tmp/s2" 2>&1
cmp -s "$tmp/s1" "$tmp/s2" && echo "ok   seeded sampling reproducible" || fail "seeded sampling differs"
"$BILD" generate --help | grep -q -- "--rollback" && echo "ok   generate --help" || fail "generate --help"
# serve mode: JSON lines in, one result line per request out; bad lines get
# an error line and serving goes on; same tokens as single runs
printf '%s\n' '{"id": "a", "prompt": "Tom had a dog.", "max_tokens": 20}' 'not json' \
    '{"id": 3, "prompt": "Tom had a dog.", "max_tokens": 0}' '{"id": 4}' '' \
    '{"id": 5, "prompt": "Tom had a dog.", "max_tokens": 20, "fallback": 0.9, "rollback": 1, "max_small": 4}' \
    | "$BILD" generate -S "$SM" -L "$LG" --requests - >"$tmp/serve" 2>"$tmp/serve.err"
rc=$?
"$BILD" generate -S "$SM" -L "$LG" -p "Tom had a dog." -n 20 --json -q >"$tmp/one"
"$BILD" generate -S "$SM" -L "$LG" -p "Tom had a dog." -n 20 --fallback 0.9 --rollback 1 --max-small 4 --json -q >"$tmp/five"
python3 - "$tmp/serve" "$rc" "$tmp/one" "$tmp/five" <<'PY' && echo "ok   --requests: results, error lines, exit 1" || fail "--requests: $(cat "$tmp/serve" "$tmp/serve.err")"
import json, sys
L = [json.loads(l) for l in open(sys.argv[1])]
one, five = (json.load(open(p)) for p in sys.argv[3:5])
assert len(L) == 5, L
assert L[0]["id"] == "a" and L[0]["tokens"] == one["tokens"], L[0]
assert "error" in L[1] and "not a JSON object" in L[1]["error"], L[1]
assert L[2]["id"] == 3 and "max_tokens" in L[2]["error"], L[2]
assert L[3]["id"] == 4 and "prompt" in L[3]["error"], L[3]
assert L[4]["id"] == 5 and L[4]["tokens"] == five["tokens"], L[4]
assert sys.argv[2] == "1", "exit %s" % sys.argv[2]
PY
printf 'Tom had a dog.\n\nLily saw a bird.\n' | "$BILD" generate -S "$SM" -L "$LG" --prompts - -n 10 -q >"$tmp/p" 2>&1 \
    && [ "$(wc -l <"$tmp/p")" -eq 2 ] && echo "ok   --prompts: one line per prompt, blank lines skipped" || fail "--prompts"
expect "two prompt sources refused" 2 "exactly one of" -- generate -S "$SM" -L "$LG" -p x --prompts -

# --exact (rollback 0.5 < ln 2, --direct): the large model's greedy tokens, with the provisional
# small model and with the default one and its draft vocabulary; --direct and --exact refusals
A=tools/align/stories15M-aligned
for P in "Once upon a time, there was a little girl named Lily." "Tom had a red ball." "The sun was hot."; do
    "$BILD" generate --mode large -L "$LG" -p "$P" -n 80 --json -q >"$tmp/xl.json" 2>"$tmp/xl.err" || fail "large: $(cat "$tmp/xl.err")"
    for S in "$SM" "$A"; do
        "$BILD" generate --exact -S "$S" -L "$LG" -z "$TOK" -p "$P" -n 80 --json -q \
            >"$tmp/xe.json" 2>"$tmp/xe.err" || fail "--exact: $(cat "$tmp/xe.err")"
        python3 - "$tmp/xl.json" "$tmp/xe.json" <<'PY' || fail "--exact with $S differs from the large model on '$P'"
import json, sys
l, e = (json.load(open(p)) for p in sys.argv[1:])
assert e["tokens"] == l["tokens"], (l["tokens"], e["tokens"])
assert e["direct"] is True and e["stats"]["small_tokens"] > 0, e["stats"]
PY
    done
done
[ $fails -eq 0 ] && echo "ok   --exact == the large model's greedy tokens (3 prompts, two small models)"
expect "--exact with rollback >= ln 2" 2 "below ln 2" -- generate -S "$SM" -L "$LG" -p x --exact --rollback 1
expect "--exact with sampling" 2 "greedy" -- generate -S "$SM" -L "$LG" -p x --exact -t 0.8
expect "--direct outside bild" 2 "--direct" -- generate -S "$SM" -L "$LG" -p x --mode spec --direct
expect "--direct with --faithful" 2 "--direct" -- generate -S "$SM" -L "$LG" -p x --faithful --direct

# the context limit: a story that runs into the model's 256 positions ends there
# in every mode (stop "context", prompt + output = 255: the last position is
# kept for checking a proposed stop token), greedy modes give a prefix of
# `bild run`'s tokens, sampled speculative runs never overrun the cache
head -c 720 "$DATA/tinystories/validation_100.txt" | tr '\n' ' ' >"$tmp/long.txt"
"$BILD" run -m "$LG" -p "$(cat "$tmp/long.txt")" -n 100 -t 0 --json -q >"$tmp/run.json" || fail "run, long prompt"
for m in "--mode large" "--exact" "--mode spec --gamma 4" "" "--faithful" "--mode small" "--exact --overlap"; do
    "$BILD" generate -S "$A" -L "$LG" -z "$TOK" $m -p "$(cat "$tmp/long.txt")" -n 100 --json -q \
        >"$tmp/ctx.json" 2>"$tmp/ctx.err" || { fail "context limit, mode '$m': $(cat "$tmp/ctx.err")"; continue; }
    python3 - "$tmp/run.json" "$tmp/ctx.json" "$m" <<'PY' || fail "context limit, mode '$m'"
import json, sys
r, g = (json.load(open(p)) for p in sys.argv[1:3])
assert r["stop"] == "context" and g["stop"] == "context", (r["stop"], g["stop"])
assert g["prompt_tokens"] + len(g["tokens"]) == 255, (g["prompt_tokens"], len(g["tokens"]))
if sys.argv[3] in ("--mode large", "--exact", "--mode spec --gamma 4", "--exact --overlap"):
    assert g["tokens"] == r["tokens"][:len(g["tokens"])], (r["tokens"], g["tokens"])
PY
done
[ $fails -eq 0 ] && echo "ok   the context limit: stop 'context' at 255 positions in 7 modes, greedy ones == bild run"
for seed in 1 2 3 4 5 6 7 8; do
    "$BILD" generate -S "$A" -L "$LG" -z "$TOK" -p "Once upon a time" --mode spec --gamma 4 -t 1 -s $seed -n 1000 \
        --json -q >"$tmp/ctx.json" 2>"$tmp/ctx.err" || fail "sampled spec, seed $seed: $(cat "$tmp/ctx.err")"
done
[ $fails -eq 0 ] && echo "ok   sampled spec (8 seeds, -n 1000) ends cleanly at EOS or the context"
head -c 1000 "$DATA/tinystories/validation_100.txt" | tr '\n' ' ' >"$tmp/toolong.txt"
expect "prompt beyond the context" 4 "up to 254 tokens" -- generate -q -S "$SM" -L "$LG" -p "$(cat "$tmp/toolong.txt")"

# the draft vocabulary: found beside the small model, --draft-top, 'none', bad files refused
"$BILD" generate -S "$A" -L "$LG" -z "$TOK" -p "Tom had a dog." -n 20 --draft-top 1000 \
    >/dev/null 2>"$tmp/dv.err" && grep -q "drafts over 1000 tokens" "$tmp/dv.err" \
    && echo "ok   draft_vocab.txt beside the small model, first 1000 ids" || fail "draft vocab: $(cat "$tmp/dv.err")"
"$BILD" generate -S "$A" -L "$LG" -z "$TOK" -p "Tom had a dog." -n 20 --draft-vocab none \
    >/dev/null 2>"$tmp/dv.err" && ! grep -q "drafts over" "$tmp/dv.err" \
    && echo "ok   --draft-vocab none: the full vocabulary" || fail "draft vocab none: $(cat "$tmp/dv.err")"
printf '5\n17\n5\n' >"$tmp/dup.txt"
printf '5\n99999\n' >"$tmp/big.txt"
printf '# nothing\n' >"$tmp/empty.txt"
printf '5\n17\n' >"$tmp/two.txt"
printf '12 x\n' >"$tmp/junk.txt"
expect "draft vocab: an id twice" 3 "listed twice" -- generate -S "$SM" -L "$LG" -p x --draft-vocab "$tmp/dup.txt"
expect "draft vocab: an id too large" 3 "line 2: expected token ids" -- generate -S "$SM" -L "$LG" -p x --draft-vocab "$tmp/big.txt"
expect "draft vocab: no ids" 3 "no token ids" -- generate -S "$SM" -L "$LG" -p x --draft-vocab "$tmp/empty.txt"
expect "draft vocab: not a number" 3 "line 1: expected token ids" -- generate -S "$SM" -L "$LG" -p x --draft-vocab "$tmp/junk.txt"
expect "draft vocab: missing file" 3 "cannot open" -- generate -S "$SM" -L "$LG" -p x --draft-vocab "$tmp/none.txt"
expect "draft-top beyond the file" 3 "ranks 2 ids" -- generate -S "$SM" -L "$LG" -p x --draft-vocab "$tmp/two.txt" --draft-top 5
# the large model's classifier screen (greedy: argmaxes through an int8 copy, checked exactly) changes no token
# and no count: --exact, default BiLD, speculative decoding and the large model alone, against BILD_SCREEN=0
for m in "--exact" "--fallback 0.6 --rollback 5" "--mode spec --gamma 4" "--mode large"; do
    # shellcheck disable=SC2086
    "$BILD" generate -S "$A" -L "$LG" -z "$TOK" $m --prompts "$DATA/prompts20.txt" -n 40 -q >"$tmp/sc1" 2>"$tmp/sce" &&
        BILD_SCREEN=0 "$BILD" generate -S "$A" -L "$LG" -z "$TOK" $m --prompts "$DATA/prompts20.txt" -n 40 -q \
            >"$tmp/sc0" 2>>"$tmp/sce" || fail "screen $m: $(cat "$tmp/sce")"
    /usr/bin/python3 - "$tmp/sc1" "$tmp/sc0" <<'PY2' && echo "ok   $m: the same tokens and counts with the classifier screen as without" || fail "screen $m: results differ"
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 20, (len(a), len(b))
timing = ("small_s", "large_s", "other_s", "total_s", "tok_per_s", "cost_ratio", "predicted_speedup")
for x, y in zip(a, b):
    assert x["tokens"] == y["tokens"], (x["text"], y["text"])
    assert {k: v for k, v in x["stats"].items() if k not in timing} == {k: v for k, v in y["stats"].items() if k not in timing}
PY2
done
echo "test_generate_cli: $fails failed"
[ $fails -eq 0 ]
