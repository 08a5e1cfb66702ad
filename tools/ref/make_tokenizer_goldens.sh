#!/bin/sh
# Regenerate the tokenizer.json test files and their golden ids in tests/data
# (tok_bytelevel.json, tok_sp.json, tok_*.golden.json) and the fuzz seeds in
# tests/fuzz/tokenizer_seeds. Run from the repository root. Needs Debian's
# python3 with python3-regex (sh scripts/install-deps.sh --ref) and
# ../shared (SHARED overrides).
set -eu
PY=${PY:-/usr/bin/python3}
S=${SHARED:-../shared}
$PY tools/ref/make_tokenizer_json.py --tokenizer-bin "$S/models/stories15M/tokenizer.bin" --out-dir tests/data
$PY tools/ref/hf_tokenizer_ref.py goldens --shared "$S" --out-dir tests/data
$PY tools/ref/make_tokenizer_json.py --fuzz-seeds tests/fuzz/tokenizer_seeds \
    --tokenizer-bin "$S/models/stories260K/tok512.bin"
