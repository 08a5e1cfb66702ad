#!/bin/sh
# bench/exact.sh - checks, prompt by prompt, that `bild generate --exact`
# (plus any settings given) gives exactly `bild run`'s greedy tokens of the
# large model: tests/data/prompts20.txt x N tokens. The speed claims of
# --exact (compare.sh, bench/bild) hold only where this says 20/20.
#
# usage: sh bench/exact.sh [N (128)] [extra generate options...]
#        env BILD, SMALL, LARGE, TOK, BILD_ISA as for bild
set -u
N=${1:-128}
[ $# -gt 0 ] && shift
BILD=${BILD:-build/bild}
SMALL=${SMALL:-tools/align/stories15M-aligned}
LARGE=${LARGE:-models/stories15M/stories15M.bin}
TOK=${TOK:-models/stories15M/tokenizer.bin}
same=0 n=0
while IFS= read -r p; do
    [ -n "$p" ] || continue
    n=$((n + 1))
    a=$("$BILD" run -m "$LARGE" -z "$TOK" -p "$p" -n "$N" -t 0 -j 2 --json 2>/dev/null |
        /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["tokens"])')
    b=$("$BILD" generate -S "$SMALL" -L "$LARGE" -z "$TOK" -p "$p" -n "$N" -j 2 --exact "$@" --json 2>/dev/null |
        /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["tokens"])')
    if [ -n "$a" ] && [ "$a" = "$b" ]; then same=$((same + 1)); else echo "prompt $n differs: $p" >&2; fi
done <tests/data/prompts20.txt
echo "bench/exact.sh: $same/$n prompts identical to bild run's greedy tokens ($N tokens; $SMALL; --exact $*)"
[ "$same" -eq "$n" ]
