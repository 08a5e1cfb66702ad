#!/bin/sh
# test_fuzz.sh - a short libFuzzer run on the message decoder
# (tests/fuzz/fuzz_proto.c under AddressSanitizer and UBSan): builds it with
# `make fuzz` (into build/fuzz/, whatever BUILD and SANITIZE say), then runs
# FUZZ_RUNS executions (default 200000, a few seconds) from the seed corpus
# build/fuzz/corpus and the saved reproducers in tests/fuzz/crashes/ (inputs
# that once failed: an empty string field made get_str memcpy from NULL,
# fixed in 805a4a7; kept as regression seeds). Fails
# on any crash, leak, sanitizer report or round-trip mismatch; the input
# that caused it is kept in build/fuzz/artifacts/. Fails when
# clang or its libFuzzer runtime is missing (libclang-rt-14-dev).
# The long run: make fuzz && build/fuzz/fuzz_proto -runs=1000000 build/fuzz/corpus
# Run from the repository root.
. tests/fuzz_lib.sh
fuzz_probe
echo "+ make fuzz"
make fuzz FUZZ_CC="$FUZZ_CC" || { echo "FAIL: make fuzz"; exit 1; }
fuzz_run build/fuzz/fuzz_proto "${FUZZ_RUNS:-200000}" 19 build/fuzz/corpus tests/fuzz/crashes
