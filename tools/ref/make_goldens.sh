#!/bin/sh
# Regenerate the tiny test checkpoints and every golden-logits file in
# tests/data with the independent PyTorch reference (tools/ref/llama2c_ref.py).
# Run from the repository root. Needs Debian's python (torch + numpy).
set -eu
PY=${PY:-/usr/bin/python3}
REF=tools/ref/llama2c_ref.py
M=${MODELS:-models}
D=tests/data

$PY tools/ref/make_tiny.py $D

# Real checkpoints: BOS + STORY_TEXT encoded with the model's own tokenizer.
$PY $REF $M/stories15M/stories15M.bin --tokens text \
    --tokenizer $M/stories15M/tokenizer.bin --out $D/stories15M.logits
$PY $REF $M/stories260K/stories260K.bin --tokens text \
    --tokenizer $M/stories260K/tok512.bin --out $D/stories260K.logits

# Tiny random checkpoints: BOS + 31 ids from default_rng(1234).integers(3, V).
for m in tiny_gqa tiny_shared tiny_mqa; do
    $PY $REF $D/$m.bin --tokens random --seed 1234 --out $D/$m.logits
done
