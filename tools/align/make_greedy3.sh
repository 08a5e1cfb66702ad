#!/bin/sh
# tools/align/make_greedy3.sh - the exact recipe of the third stage of the
# project's default small model: the second-stage model (make_greedy.sh,
# shipped at commit 5e71ad0) fine-tuned on more of the large model's greedy
# text, from prompts it has not seen.
#
#   1. the prompts of make_greedy.sh's three rounds again (same seeds), only
#      to leave them out of the new rounds;
#   2. rounds 4, 5 and 6: 10,000 rows of 40 tokens sampled at temperature 1
#      (seeds 5501, 6601, 7701), cut into prompts (seeds 10, 11, 12; the
#      benchmark prompts and every earlier round's prompts left out), each
#      continued greedily to a row of 256 tokens with the top-16;
#   3. the three merged (the held-out 2% are rows of round 6);
#   4. train_small.py --init the second-stage model, output layer over its
#      draft vocabulary, STEPS3 steps (default 820, about 2 epochs) at lr
#      LR3 (default 5e-4);
#   5. bf16 export, the draft vocabulary copied, align-eval on the
#      validation stories.
#
# usage: tools/align/make_greedy3.sh [WORK_DIR (default /tmp/bild-greedy3)] [INIT_DIR]
# INIT_DIR: the second-stage model (default: tools/align/stories15M-aligned
# as of commit 5e71ad0, taken out of git). Leaves WORK_DIR/small-bf16/ and
# WORK_DIR/eval.json. Needs build/bild (make) and python3-torch
# (scripts/install-deps.sh --align).
set -eu
W=${1:-/tmp/bild-greedy3}
INIT=${2:-}
STEPS3=${STEPS3:-820}
LR3=${LR3:-5e-4}
L=models/stories15M/stories15M.bin
TOK=models/stories15M/tokenizer.bin
VAL=tests/data/tinystories/validation_100.txt
EVALP=tests/data/prompts20.txt
DV=tools/align/stories15M-aligned/draft_vocab.txt
A=tools/align
mkdir -p "$W"
TIMES="$W/times.txt"
touch "$TIMES"
. tools/align/stage.sh
[ -n "$INIT" ] || { INIT=$W/init; shipped_model 5e71ad0 "$INIT"; }
prompts 1 7000 2207 7
prompts 2 10000 3301 8
prompts 3 10000 4401 9
round 4 10000 5501 10 2211
round 5 10000 6601 11 2212
round 6 10000 7701 12 2213
rm -rf "$W/merged"
/usr/bin/python3 $A/merge_corpus.py "$W/merged" "$W/greedy4" "$W/greedy5" "$W/greedy6"
train small "$INIT" "$STEPS3" "$LR3" 20 5
rm -rf "$W/small-bf16"
stage export /usr/bin/python3 tools/llama2c_to_hf.py "$W/small/model.bin" "$W/small-bf16" --dtype bf16
cp "$DV" "$W/small-bf16/"
build/bild align-eval -S "$W/small-bf16" -L "$L" -z "$TOK" --text "$VAL" -j 2 --json >"$W/eval.json"
cat "$W/eval.json" "$W/times.txt"
