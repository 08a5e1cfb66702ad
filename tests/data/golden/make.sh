#!/bin/sh
# Remakes llama2c-stories260K-t0-n200.txt with llama2.c itself: its run
# program (run.c, built from llama2.c's source, e.g. by ../shared/peers/build.sh
# into /tmp/bild-peers/llama2c-run) on stories260K with tok512.bin, greedy,
# 200 steps; stdout is the golden (the same check llama2.c's own test suite
# makes). usage: sh tests/data/golden/make.sh [LLAMA2C_RUN]
set -eu
cd "$(dirname "$0")/../../.."
RUN=${1:-/tmp/bild-peers/llama2c-run}
[ -x "$RUN" ] || { echo "make.sh: $RUN is not an executable llama2.c run program" >&2; exit 1; }
"$RUN" models/stories260K/stories260K.bin -z models/stories260K/tok512.bin -t 0 -n 200 \
    >tests/data/golden/llama2c-stories260K-t0-n200.txt 2>/dev/null
echo "wrote tests/data/golden/llama2c-stories260K-t0-n200.txt"
