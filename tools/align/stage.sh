# tools/align/stage.sh - sourced by the recipes (make_default.sh,
# make_greedy.sh, make_greedy3.sh): stage NAME COMMAND... runs the command
# and appends "NAME SECONDS" (its wall time) to the file $TIMES.
stage() {
    name=$1
    shift
    t0=$(date +%s)
    "$@"
    echo "$name $(($(date +%s) - t0))" >>"$TIMES"
}

# shipped_model REV DIR: the default small model as committed at REV, into DIR
shipped_model() {
    mkdir -p "$2"
    for f in config.json model.safetensors tokenizer.json tokenizer_config.json generation_config.json draft_vocab.txt; do
        git show "$1:tools/align/stories15M-aligned/$f" >"$2/$f"
    done
}

# The greedy-text rounds of make_greedy.sh and make_greedy3.sh. They use the
# recipe's W (work folder), L and TOK (the large model and its tokenizer),
# EVALP (the benchmark prompts, never trained on), A (tools/align) and DV
# (the draft vocabulary).
data() { build/bild align-data -L "$L" -z "$TOK" -b 64 -j 2 "$@"; }
# prompts I PRE_ROWS PRE_SEED CUT_SEED: PRE_ROWS rows of 40 tokens sampled
# at temperature 1 (seed PRE_SEED), cut into W/pI.txt (seed CUT_SEED) with
# the benchmark prompts and rounds 1..I-1's prompts left out
prompts() {
    i=$1
    [ -f "$W/pre$i/manifest.json" ] || stage "pre$i" data --tokens $(($2 * 40)) --row-len 40 -t 1 -s "$3" --topk 0 --out "$W/pre$i"
    ex="--exclude $EVALP"
    j=1
    while [ $j -lt "$i" ]; do ex="$ex --exclude $W/p$j.txt"; j=$((j + 1)); done
    /usr/bin/python3 $A/greedy_prompts.py --corpus "$W/pre$i" --tokenizer "$TOK" --out "$W/p$i.txt" $ex --seed "$4"
}
# greedy I SEED: each prompt of W/pI.txt continued greedily to a row of 256
# tokens with the top-16 (SEED is recorded only: greedy rows use no randomness)
greedy() {
    [ -f "$W/greedy$1/manifest.json" ] ||
        stage "greedy$1" data --prompts "$W/p$1.txt" --tokens $(($(wc -l <"$W/p$1.txt") * 256)) -t 0 -s "$2" --topk 16 --out "$W/greedy$1"
}
round() { # I PRE_ROWS PRE_SEED CUT_SEED GREEDY_SEED
    prompts "$1" "$2" "$3" "$4"
    greedy "$1" "$5"
}
# train NAME INIT STEPS LR WARMUP SEED: train_small.py on W/merged from INIT,
# the output layer over the draft vocabulary, then an f32 folder W/NAME-f32
train() {
    rm -rf "$W/$1" "$W/$1-f32"
    stage "$1" /usr/bin/python3 $A/train_small.py --corpus "$W/merged" --tokenizer "$TOK" --out "$W/$1" \
        --init "$2" --head-vocab "$DV" --steps "$3" --lr "$4" --warmup "$5" --seed "$6" --threads 2 \
        --no-hf --eval-every 410
    /usr/bin/python3 tools/llama2c_to_hf.py "$W/$1/model.bin" "$W/$1-f32" --dtype f32 >/dev/null
}
