#!/bin/sh
# test_fuzz_safetensors.sh - a short libFuzzer run on the safetensors header
# parser (tests/fuzz/fuzz_safetensors.c, model/safetensors.c, under
# AddressSanitizer and UBSan): builds build/fuzz/fuzz_safetensors, then runs
# FUZZ_RUNS executions (default 100000, a few seconds) from the seeds in
# tests/fuzz/safetensors_seeds (read only; new inputs go to a temp folder).
# Fails on any crash, leak, sanitizer report or broken promise of an
# accepted header; the input that caused it is kept in build/fuzz/artifacts/.
# Fails when clang or its libFuzzer runtime is missing (make deps installs them).
# The long run: make fuzz && build/fuzz/fuzz_safetensors -runs=1000000 tests/fuzz/safetensors_seeds
# Run from the repository root.
. tests/fuzz_lib.sh
fuzz_probe
F=build/fuzz/fuzz_safetensors
echo "+ make $F"
make "$F" FUZZ_CC="$FUZZ_CC" || { echo "FAIL: make $F"; exit 1; }
fuzz_run "$F" "${FUZZ_RUNS:-100000}" 4 tests/fuzz/safetensors_seeds
