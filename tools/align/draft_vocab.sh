#!/bin/sh
# draft_vocab.sh - ranks the large model's vocabulary by how often the large
# model itself emits each token, for the small model's draft vocabulary
# (frequency-ranked drafting, FR-Spec: Zhao et al. 2025; docs/engine.md,
# "Draft vocabulary"). The small model then computes its output layer over
# the top K ids only; the large model still verifies over all of them.
#
# usage: tools/align/draft_vocab.sh LARGE OUT [TOKENS (default 300000)] [SEED (default 7)]
#   LARGE  the large model (llama2.c checkpoint or Hugging Face folder)
#   OUT    the ranked list: every id the sample holds, most frequent first
#          (ties: lower id first), one per line after '#' comment lines
#          that record how it was made
# The sample: `bild align-data` rows of 256 tokens from BOS at temperature 1
# (the large model's own distribution; no prompt text, so no test prompt
# leaks into the ranking). Needs build/bild and /usr/bin/python3.
set -eu
[ $# -ge 2 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
LARGE=$1 OUT=$2 TOKENS=${3:-300000} SEED=${4:-7}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
build/bild align-data --large "$LARGE" --tokens "$TOKENS" --out "$tmp/c" --seed "$SEED" --topk 0 -q
/usr/bin/python3 - "$tmp/c" "$OUT" "$LARGE" "$TOKENS" "$SEED" <<'PY'
import collections, json, os, struct, sys
corpus, out, large, tokens, seed = sys.argv[1:]
man = json.load(open(os.path.join(corpus, "manifest.json")))
raw = open(os.path.join(corpus, man["files"]["tokens"]), "rb").read()
ids = struct.unpack("<%dI" % (len(raw) // 4), raw)
L = man["row_len"]
# position 0 of each row is the BOS the row starts from, not a generated token
gen = [t for i, t in enumerate(ids) if i % L]
cnt = collections.Counter(gen)
ranked = sorted(cnt, key=lambda t: (-cnt[t], t))
cum, marks = 0, {}
for r, t in enumerate(ranked, 1):
    cum += cnt[t]
    if r in (256, 512, 1024, 2048, 4096): marks[r] = cum / len(gen)
with open(out, "w") as f:
    f.write("# bild draft vocabulary: token ids ranked by how often the large model emits them\n")
    f.write("# made by: tools/align/draft_vocab.sh %s OUT %s %s\n" % (large, tokens, seed))
    f.write("# sample: %d generated tokens (bild align-data, temperature 1, from BOS, rows of %d, seed %s); "
            "%d distinct ids\n" % (len(gen), L, seed, len(ranked)))
    f.write("# large model fnv1a64 %s, vocabulary fingerprint %s\n" % (man["model"]["fnv1a64"], man["vocab_fingerprint"]))
    f.write("# share of the sample covered by the top K: %s\n" %
            ", ".join("K=%d %.4f" % (k, v) for k, v in sorted(marks.items())))
    for t in ranked: f.write("%d\n" % t)
print("draft_vocab: %d distinct ids in %d tokens; coverage %s" %
      (len(ranked), len(gen), ", ".join("top %d %.2f%%" % (k, 100 * v) for k, v in sorted(marks.items()))))
PY
