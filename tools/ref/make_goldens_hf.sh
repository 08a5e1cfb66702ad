#!/bin/sh
# Regenerate the tiny Hugging Face test directories (tests/data/hf/<variant>/)
# and their golden logits (tests/data/hf/<variant>.logits) with the
# independent PyTorch reference tools/ref/hf_ref.py (24 tokens: BOS, then
# default_rng(1234).integers(3, V, 23)). Run from the repository root.
# Needs Debian's python (torch + numpy); `make test` does not.
set -eu
PY=${PY:-/usr/bin/python3}
D=tests/data/hf

$PY tools/ref/make_tiny_hf.py $D
for v in llama_gqa_f32 llama_gqa_bf16 llama3_rope_f32 llama3_rope_bf16 mistral_f32 mistral_bf16 \
         mistral_f16 qwen2_f32 qwen2_bf16; do
    $PY tools/ref/hf_ref.py $D/$v -T 24 --seed 1234 --out $D/$v.logits
done
