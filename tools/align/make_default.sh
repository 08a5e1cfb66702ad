#!/bin/sh
# tools/align/make_default.sh - the exact recipe that made the project's
# default small model, tools/align/stories15M-aligned/model.bin: a corpus of
# 2,000,128 tokens sampled from stories15M with its top-16 next-token
# distributions, a dim-80, 4-layer llama2.c model trained on it for 1,500
# steps with distillation, then evaluated on the held-out TinyStories
# validation stories. About 15 minutes for the corpus and 50 for the
# training on the 2-core build machine.
#
# usage: tools/align/make_default.sh [WORK_DIR (default /tmp/bild-align)] [SEED (default 1)]
# Needs build/bild (make) and python3-torch (scripts/install-deps.sh --align).
set -eu
W=${1:-/tmp/bild-align}
SEED=${2:-1}
L=../shared/models/stories15M/stories15M.bin
TOK=../shared/models/stories15M/tokenizer.bin
mkdir -p "$W"
build/bild align-data -L "$L" -z "$TOK" --tokens 2000000 --out "$W/corpus$SEED" -b 32 -j 2 -s "$SEED" --topk 16
/usr/bin/python3 tools/align/train_small.py --corpus "$W/corpus$SEED" --tokenizer "$TOK" --out "$W/small$SEED" \
    --dim 80 --n-layers 4 --n-heads 4 --steps 1500 --time-budget 3300 --seed "$SEED" --threads 2
build/bild align-eval -S "$W/small$SEED/model.bin" -L "$L" -z "$TOK" --text ../shared/data/tinystories/validation_100.txt -j 2
