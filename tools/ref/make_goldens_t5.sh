#!/bin/sh
# Regenerate the tiny T5 / mT5 test directories (tests/data/t5/<kind>_<dtype>/:
# config.json, model.safetensors) and their goldens (golden.json: encoder
# output and decoder logits for a fixed source and decoder input, and 64
# greedy tokens for another source, past any EOS) with the independent PyTorch reference
# tools/ref/t5_ref.py (float64), and tests/data/t5bild/ (a noisy small copy
# of t5v11_f32, faithful-loop goldens and the source-text goldens of
# tests/test_t5_cli.sh, tools/ref/bild_t5_ref.py).
# tests/test_t5.c and test_t5_bild.c check model/t5.c and the T5 links against
# them. Run from the repository root; needs Debian's python (torch + numpy).
set -eu
PY=${PY:-/usr/bin/python3}
D=tests/data/t5
SRC=5,17,200,33,91,400,7,64,300,12,88,1
DEC=0,44,12,301,5,99,250,7,18,411
GSRC=9,120,77,3,250,18,460,31,1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p $D
seed=1
for kind in t5 t5v11 mt5; do
    seed=$((seed + 1))
    for dt in f32 f16 bf16; do
        out=$D/${kind}_$dt
        rm -rf "$out"
        $PY tools/ref/t5_ref.py make "$out" --kind $kind --dtype $dt --seed $seed
        $PY tools/ref/t5_ref.py logits "$out" --src $SRC --dec $DEC --out "$tmp/logits.json"
        $PY tools/ref/t5_ref.py greedy "$out" --src $GSRC -n 64 --ignore-eos --out "$tmp/greedy.json"
        $PY - "$tmp/logits.json" "$tmp/greedy.json" "$out/golden.json" "$SRC" "$DEC" "$GSRC" <<'EOF'
import json, sys
lg, gr, out, src, dec, gsrc = sys.argv[1:]
a, b = json.load(open(lg)), json.load(open(gr))
ids = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
g = {"made_by": "tools/ref/make_goldens_t5.sh (tools/ref/t5_ref.py, float64)",
     "src": ids(src), "dec": ids(dec), "encoder_out": a["encoder_out"], "logits": a["logits"],
     "greedy_src": ids(gsrc), "greedy": b["tokens"]}
json.dump(g, open(out, "w"))
EOF
        echo "$out: $(wc -c <"$out/model.safetensors") bytes of weights, golden $(wc -c <"$out/golden.json") bytes"
    done
done
# BiLD on a T5 pair (tests/test_t5_bild.c): the small model is a noisy copy of
# t5v11_f32, the goldens the faithful loop of tools/ref/bild_ref.py on
# t5_ref.py oracles
B=tests/data/t5bild
rm -rf $B/small
$PY tools/ref/bild_t5_ref.py noisy $D/t5v11_f32 $B/small --noise 0.5 --seed 3
$PY tools/ref/bild_t5_ref.py golden $D/t5v11_f32 $B/small --out $B/faithful.json
# bild generate --source on text: source ids from the HF tokenizers goldens
# (tools/ref/make_unigram_goldens.sh), for tests/test_t5_cli.sh
$PY tools/ref/bild_t5_ref.py cli $D/t5v11_f32 $B/small --tok-golden tests/data/t5tok/golden_t5.json --out $B/cli.json
