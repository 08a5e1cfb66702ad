#!/bin/sh
# tools/align/make_default.sh - the exact recipe that made the project's
# default small model, tools/align/stories15M-aligned/: a corpus of
# 2,000,128 tokens sampled from stories15M with its top-16 next-token
# distributions, a dim-128, 4-layer llama2.c model trained on it for 1,500
# steps with distillation, written out as a bf16 Hugging Face directory,
# then evaluated on the held-out TinyStories validation stories. About 15
# minutes for the corpus and 45 for the training on the 2-core build
# machine.
#
# usage: tools/align/make_default.sh [WORK_DIR (default /tmp/bild-align)] [SEED (default 1)]
# Leaves in WORK_DIR: corpusSEED/ (the corpus), smallSEED/ (checkpoint,
# f32 llama2.c model.bin, log), smallSEED-bf16/ (the model as shipped),
# evalSEED.json (align-eval --json of the bf16 model) and timesSEED.txt
# (wall seconds of each stage).
# To ship it: cp WORK_DIR/smallSEED-bf16/* tools/align/stories15M-aligned/
# Needs build/bild (make) and python3-torch (scripts/install-deps.sh --align).
set -eu
W=${1:-/tmp/bild-align}
SEED=${2:-1}
L=models/stories15M/stories15M.bin
TOK=models/stories15M/tokenizer.bin
VAL=tests/data/tinystories/validation_100.txt
mkdir -p "$W"
TIMES="$W/times$SEED.txt"
: >"$TIMES"
. tools/align/stage.sh
if [ ! -f "$W/corpus$SEED/manifest.json" ]; then
    stage corpus build/bild align-data -L "$L" -z "$TOK" --tokens 2000000 --out "$W/corpus$SEED" -b 32 -j 2 -s "$SEED" --topk 16
fi
stage train /usr/bin/python3 tools/align/train_small.py --corpus "$W/corpus$SEED" --tokenizer "$TOK" \
    --out "$W/small$SEED" --dim 128 --n-layers 4 --n-heads 4 --steps 1500 --time-budget 3000 \
    --seed "$SEED" --threads 2 --no-hf
stage export /usr/bin/python3 tools/llama2c_to_hf.py "$W/small$SEED/model.bin" "$W/small$SEED-bf16" --dtype bf16
build/bild align-eval -S "$W/small$SEED-bf16" -L "$L" -z "$TOK" --text "$VAL" -j 2 --json >"$W/eval$SEED.json"
cat "$W/eval$SEED.json" "$W/times$SEED.txt"
