#!/bin/sh
# test_default_small.sh - the project's default small model,
# tools/align/stories15M-aligned (made by tools/align/make_default.sh):
# its files are the ones its manifest lists (SHA-256), its own
# tokenizer.json is stories15M's vocabulary (bild generate's vocabulary
# check with each model's own tokenizer, and align-eval's), it drafts for
# stories15M in BiLD, and its teacher-forced greedy agreement with
# stories15M on the held-out TinyStories validation stories is at least
# 60% (the acceptance bar; align-eval, about 10 s). Timing (c) is a
# benchmark, not checked here.
set -u
. tests/cli_lib.sh
A=tools/align/stories15M-aligned
VAL=$DATA/tinystories/validation_100.txt

/usr/bin/python3 - "$A" <<'PY' && echo "ok   files match manifest.json" || fail "files vs manifest.json"
import hashlib, json, os, sys
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
assert m["format"] == "bild-small-model", m["format"]
for name, want in m["sha256"].items():
    got = hashlib.sha256(open(os.path.join(d, name), "rb").read()).hexdigest()
    assert got == want, "%s: sha256 %s, manifest %s" % (name, got, want)
total = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
assert total <= 20 * 1024 * 1024, "%d bytes, more than 20 MiB" % total
print("   %d files, %.1f MB" % (len(m["sha256"]), total / 1e6))
PY

# each model with its own tokenizer: the vocabulary check compares tokenizer.json with tokenizer.bin
"$BILD" generate -S "$A" -L "$LG" -p "Once upon a time" -n 40 -t 0 --json -q >"$tmp/g.json" 2>"$tmp/g.err" \
    && /usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
s = r["stats"]
assert s["generated"] == 40 or r["stop"] != "length", r
assert s["small_tokens"] > 0, s
print("   40 tokens, %d from the small model" % s["small_tokens"])' "$tmp/g.json" \
    && echo "ok   BiLD with its own tokenizer.json beside stories15M's tokenizer.bin" \
    || fail "generate: $(cat "$tmp/g.err")"

"$BILD" align-eval -S "$A" -L "$LG" --text "$VAL" -j 2 --json -q >"$tmp/e.json" 2>"$tmp/e.err" \
    && /usr/bin/python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))
print("   agreement %.1f%% over %d positions" % (100 * e["agreement"], e["positions"]))
assert e["positions"] > 20000, e["positions"]
assert e["agreement"] >= 0.60, "agreement %.3f < 0.60" % e["agreement"]' "$tmp/e.json" \
    && echo "ok   agreement >= 60% on the held-out validation stories" || fail "align-eval: $(cat "$tmp/e.err")"

# the same files with two pieces of tokenizer.json swapped (ids 365 and 366): refused, naming the id
mkdir "$tmp/alt"
for f in config.json model.safetensors; do ln -s "$(cd "$A" && pwd)/$f" "$tmp/alt/$f"; done
/usr/bin/python3 - "$A/tokenizer.json" "$tmp/alt/tokenizer.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
v = t["model"]["vocab"]
a, b = (next(k for k, i in v.items() if i == j) for j in (365, 366))
v[a], v[b] = 366, 365
json.dump(t, open(sys.argv[2], "w"), ensure_ascii=False)
PY
expect "two pieces swapped" 3 "tokenizers differ first at id 365" -- generate -S "$tmp/alt" -L "$LG" -p "Lily" -n 4 -q

# a small model of another vocabulary is refused
expect "other vocabulary" 3 "vocabularies differ" -- align-eval -S "$M260" -L "$LG" --text "$VAL" -q
echo "test_default_small: $fails failed"
[ $fails -eq 0 ]
