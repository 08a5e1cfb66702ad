#!/usr/bin/python3
"""Write tiny random Hugging Face model directories for tests.

Each directory holds config.json and model.safetensors (or, for one
variant, model.safetensors.index.json with two shards), written by hand
from the safetensors format description: u64 little-endian header length,
JSON header {name: {"dtype", "shape", "data_offsets": [begin, end]}}
padded with spaces to a multiple of 8, then the raw little-endian data.
Tensor names and shapes follow transformers' LlamaForCausalLM,
MistralForCausalLM and Qwen2ForCausalLM checkpoints.

Variants (name: what it exercises):
  llama_gqa       Llama, GQA (4 heads, 2 kv heads), untied lm_head
  llama3_rope     Llama, llama3 rope_scaling (factor 8, low 1, high 4,
                  original_max_position_embeddings 64: with head_dim 16 and
                  theta 500000 the pairs fall in all three bands), MQA,
                  eos_token_id as a list
  mistral         Mistral, head_dim 12 != hidden/heads = 8, sliding_window
  qwen2           Qwen2, q/k/v biases, tied embeddings, theta 1e6, eps 1e-6
each as <name>_f32 and <name>_bf16; mistral also as mistral_f16, which is
sharded (model.safetensors.index.json + two shards) and whose embedding
holds a few f16 subnormals (row 29, which the golden sequence feeds in).

Weights are deterministic: numpy.random.default_rng(seed) per variant, drawn
in float64 in the order of TENSORS below, then rounded to the file dtype
(f32, or f32 -> bf16 by round-to-nearest-even, or f32 -> f16 by numpy).
The f32 and half directories of a variant hold the same draws, rounded.
Scales: matrices N(0, gain/sqrt(fan_in)) (gain 1.5 for q/k), norms
1 + N(0, 0.1), biases N(0, 0.5), embedding N(0, 0.1) or N(0, 2.5/sqrt(dim))
when tied, lm_head N(0, 2.5/sqrt(dim)).

Usage: make_tiny_hf.py [OUTDIR]    (default tests/data/hf)
"""
import json
import os
import sys

import numpy as np

VARIANTS = {
    "llama_gqa": dict(seed=11, arch="LlamaForCausalLM", model_type="llama", hidden_size=32,
                      intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=256, max_position_embeddings=128,
                      rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                      bos_token_id=1, eos_token_id=2),
    "llama3_rope": dict(seed=22, arch="LlamaForCausalLM", model_type="llama", hidden_size=32,
                        intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=1, vocab_size=256, max_position_embeddings=512,
                        rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
                        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                          high_freq_factor=4.0, original_max_position_embeddings=64),
                        bos_token_id=250, eos_token_id=[251, 253]),
    "mistral": dict(seed=33, arch="MistralForCausalLM", model_type="mistral", hidden_size=32,
                    intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=12, vocab_size=256, max_position_embeddings=1024,
                    sliding_window=256, rms_norm_eps=1e-5, rope_theta=1000000.0,
                    tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
    "qwen2": dict(seed=44, arch="Qwen2ForCausalLM", model_type="qwen2", hidden_size=32,
                  intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=300, max_position_embeddings=256,
                  rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
                  use_sliding_window=False, sliding_window=4096,
                  bos_token_id=None, eos_token_id=299),
}
DTYPES = {"llama_gqa": ["f32", "bf16"], "llama3_rope": ["f32", "bf16"],
          "mistral": ["f32", "bf16", "f16"], "qwen2": ["f32", "bf16"]}
SHARDED = {"mistral_f16"}


def tensors(v):
    """(name, array float64) in a fixed order."""
    rng = np.random.default_rng(v["seed"])
    D, I, L = v["hidden_size"], v["intermediate_size"], v["num_hidden_layers"]
    H, KV, V = v["num_attention_heads"], v["num_key_value_heads"], v["vocab_size"]
    hd = v.get("head_dim") or D // H
    tied = v["tie_word_embeddings"]
    bias = v["arch"] == "Qwen2ForCausalLM"

    def mat(o, i, gain=1.0):
        return rng.normal(0.0, gain / np.sqrt(i), size=(o, i))

    def rms(n):
        return 1.0 + rng.normal(0.0, 0.1, size=n)

    out = [("model.embed_tokens.weight", rng.normal(0.0, 2.5 / np.sqrt(D) if tied else 0.1, size=(V, D)))]
    for l in range(L):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", rms(D)),
                (p + "self_attn.q_proj.weight", mat(H * hd, D, 1.5)),
                (p + "self_attn.k_proj.weight", mat(KV * hd, D, 1.5)),
                (p + "self_attn.v_proj.weight", mat(KV * hd, D))]
        if bias:
            out += [(p + "self_attn.q_proj.bias", rng.normal(0.0, 0.5, size=H * hd)),
                    (p + "self_attn.k_proj.bias", rng.normal(0.0, 0.5, size=KV * hd)),
                    (p + "self_attn.v_proj.bias", rng.normal(0.0, 0.5, size=KV * hd))]
        out += [(p + "self_attn.o_proj.weight", mat(D, H * hd)),
                (p + "post_attention_layernorm.weight", rms(D)),
                (p + "mlp.gate_proj.weight", mat(I, D)),
                (p + "mlp.up_proj.weight", mat(I, D)),
                (p + "mlp.down_proj.weight", mat(D, I))]
    out.append(("model.norm.weight", rms(D)))
    if not tied:
        out.append(("lm_head.weight", rng.normal(0.0, 2.5 / np.sqrt(D), size=(V, D))))
    return out


def to_bf16_bits(a):
    """float64 -> float32 -> bf16 bits, round to nearest even (finite inputs)."""
    u = np.asarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2")


def encode(a, dt):
    """(safetensors dtype, bytes)."""
    if dt == "f32":
        return "F32", np.asarray(a, dtype="<f4").tobytes()
    if dt == "bf16":
        return "BF16", to_bf16_bits(a).tobytes()
    return "F16", np.asarray(a, dtype="<f4").astype("<f2").tobytes()


def write_safetensors(path, items, dt):
    header, blobs, off = {}, [], 0
    for name, a in items:
        code, raw = encode(a, dt)
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        f.write(b"".join(blobs))


def config_json(v, dt):
    c = {k: x for k, x in v.items() if k not in ("seed", "arch")}
    c["architectures"] = [v["arch"]]
    c["hidden_act"] = "silu"
    c["torch_dtype"] = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}[dt]
    return c


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/data/hf"
    for name, v in VARIANTS.items():
        items = tensors(v)
        if name == "mistral":  # f16 subnormals and signed zeros in row 29, a golden input token
            e = items[0][1]
            e[29, :6] = [6e-8, -6e-8, 3e-6, -4.5e-5, 0.0, -0.0]
        for dt in DTYPES[name]:
            d = os.path.join(outdir, f"{name}_{dt}")
            os.makedirs(d, exist_ok=True)
            for f in os.listdir(d):
                os.remove(os.path.join(d, f))
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(config_json(v, dt), f, indent=2)
                f.write("\n")
            if f"{name}_{dt}" in SHARDED:
                half = len(items) // 2
                shards = [("model-00001-of-00002.safetensors", items[:half]),
                          ("model-00002-of-00002.safetensors", items[half:])]
                wm = {}
                for fn, part in shards:
                    write_safetensors(os.path.join(d, fn), part, dt)
                    wm.update({n: fn for n, _ in part})
                with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                    json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, f, indent=2)
                    f.write("\n")
            else:
                write_safetensors(os.path.join(d, "model.safetensors"), items, dt)
            size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
            print(f"wrote {d}: {size} bytes")


if __name__ == "__main__":
    main()
