#!/bin/sh
# test_fuzz_tokenizer.sh - a short libFuzzer run on the tokenizer.json loader
# and encoder (tests/fuzz/fuzz_tokenizer_json.c, model/tokenizer_hf.c, under
# AddressSanitizer and UBSan): builds build/fuzz/fuzz_tokenizer_json, then
# runs FUZZ_RUNS executions (default 5000, about 15 s) from the seeds in
# tests/fuzz/tokenizer_seeds (read only; new inputs go to a temp folder).
# Fails on any crash, leak, sanitizer report or broken promise (ids outside
# the vocabulary, a text that does not decode back); the input that caused
# it is kept in build/fuzz/artifacts/. Fails when clang or its
# libFuzzer runtime is missing.
# The long run: make fuzz && build/fuzz/fuzz_tokenizer_json -runs=1000000 -max_len=6000 tests/fuzz/tokenizer_seeds
# Run from the repository root.
. tests/fuzz_lib.sh
fuzz_probe
F=build/fuzz/fuzz_tokenizer_json
echo "+ make $F"
make "$F" FUZZ_CC="$FUZZ_CC" || { echo "FAIL: make $F"; exit 1; }
fuzz_run "$F" "${FUZZ_RUNS:-5000}" 4 tests/fuzz/tokenizer_seeds -- -max_len=6000
