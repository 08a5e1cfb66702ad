#!/usr/bin/python3
"""Independent PyTorch reference for Hugging Face Llama / Mistral / Qwen2
model directories (config.json + model.safetensors or a sharded index).

Written from transformers' modeling definitions (modeling_llama.py,
modeling_mistral.py, modeling_qwen2.py), not from any C code, and without
the transformers package (not installed here):

  x = embed_tokens[tokens]
  per layer:
    h = RMSNorm(x)            LlamaRMSNorm: w * (x * rsqrt(mean(x^2) + eps))
    q, k, v = q_proj(h), k_proj(h), v_proj(h)        (nn.Linear, +bias for Qwen2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin):  x*cos + rotate_half(x)*sin,
           rotate_half(x) = cat(-x[..., d/2:], x[..., :d/2]),
           cos/sin of cat(freqs, freqs), freqs = pos * inv_freq,
           inv_freq = theta^(-(0, 2, 4, ..)/head_dim), llama3-scaled as in
           _compute_llama3_parameters when rope_scaling.rope_type == "llama3"
    k, v = repeat_kv(k, v, n_heads // n_kv_heads)    (query head h reads kv head h // n_rep)
    o = softmax(q k^T * head_dim^-0.5 + causal mask) v ; x += o_proj(o)
    h = RMSNorm(x) ; x += down_proj(silu(gate_proj(h)) * up_proj(h))
  logits = lm_head(norm(x))      (lm_head = embed_tokens when tie_word_embeddings)

Precision: weights are read as stored and widened to float32 (bf16: the
16 bits shifted left by 16; f16: numpy's exact f16 -> f32), so a half
model is run exactly as the engine runs it (widened weights, f32 math);
the forward pass is float32 on the CPU with one thread. The RoPE frequency
and angle table is computed in float64 and rounded to float32 once (HF
computes it in float32; the difference is < 1e-6 in cos/sin here and
far below the 1e-4 tolerance).

Golden-logits file (--out), the same format as llama2c_ref.py:
  char magic[4] = "BLDG"; int32 version = 1; int32 T; int32 V;
  int32 tokens[T]; float32 logits[T*V]   (row t = logits after tokens[0..t])

Tokens (T = 24): tokens[0] = bos_token_id (1 when the config has none),
then numpy.random.default_rng(seed).integers(3, vocab_size, size=T-1),
seed 1234 by default.

Usage: hf_ref.py DIR --out FILE [-T 24] [--seed 1234] [--float64]
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama2c_ref import write_golden  # noqa: E402  (the shared golden format)

torch.set_num_threads(1)


# ----------------------------------------------------------------------------
# safetensors, by hand: u64 LE header length, JSON header, data section
# ----------------------------------------------------------------------------
def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        buf = data[b:e]
        shape = t["shape"]
        if t["dtype"] == "F32":
            a = np.frombuffer(buf, dtype="<f4").copy()
        elif t["dtype"] == "F16":
            a = np.frombuffer(buf, dtype="<f2").astype(np.float32)
        elif t["dtype"] == "BF16":
            a = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: {name}: dtype {t['dtype']}")
        out[name] = torch.from_numpy(a.reshape(shape).copy())
    return out


def load(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    single = os.path.join(d, "model.safetensors")
    if os.path.exists(single):
        w = read_safetensors(single)
    else:
        with open(os.path.join(d, "model.safetensors.index.json")) as f:
            wm = json.load(f)["weight_map"]
        w = {}
        for shard in sorted(set(wm.values())):
            w.update(read_safetensors(os.path.join(d, shard)))
    return cfg, w


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------
def inv_freq(cfg, hd):
    base = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = cfg.get("rope_scaling")
    if rs:
        kind = rs.get("rope_type", rs.get("type"))
        assert kind == "llama3", kind
        # transformers' _compute_llama3_parameters
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_freq_wavelen, high_freq_wavelen = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_freq_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv = torch.where(medium, smoothed, inv_l)
    return inv


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rmsnorm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


@torch.no_grad()
def forward(cfg, w, tokens, dtype=torch.float32):
    D, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H
    hd = cfg.get("head_dim") or D // H
    eps = cfg.get("rms_norm_eps", 1e-6)
    tied = cfg.get("tie_word_embeddings", False)
    W = {k: v.to(dtype) for k, v in w.items()}
    tokens = torch.tensor(tokens, dtype=torch.long)
    T = len(tokens)

    pos = torch.arange(T, dtype=torch.float64)
    freqs = pos[:, None] * inv_freq(cfg, hd)[None, :]             # (T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)                        # (T, hd)
    cos, sin = emb.cos().to(dtype)[None], emb.sin().to(dtype)[None]  # (1, T, hd)
    mask = torch.full((T, T), float("-inf"), dtype=dtype).triu(1)

    def lin(x, name):
        y = x @ W[name + ".weight"].T
        b = W.get(name + ".bias")
        return y + b if b is not None else y

    x = W["model.embed_tokens.weight"][tokens]
    for l in range(L):
        p = f"model.layers.{l}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = lin(h, p + "self_attn.q_proj").view(T, H, hd).transpose(0, 1)    # (H, T, hd)
        k = lin(h, p + "self_attn.k_proj").view(T, KV, hd).transpose(0, 1)
        v = lin(h, p + "self_attn.v_proj").view(T, KV, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        n_rep = H // KV                                              # repeat_kv
        k = k[:, None].expand(KV, n_rep, T, hd).reshape(H, T, hd)
        v = v[:, None].expand(KV, n_rep, T, hd).reshape(H, T, hd)
        att = torch.softmax(q @ k.transpose(1, 2) * hd ** -0.5 + mask, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(T, H * hd)
        x = x + lin(o, p + "self_attn.o_proj")
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = torch.nn.functional.silu(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj")
        x = x + lin(g, p + "mlp.down_proj")
    x = rmsnorm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if tied else W["lm_head.weight"]
    return x @ head.T


def choose_tokens(cfg, T, seed):
    bos = cfg.get("bos_token_id")
    bos = bos[0] if isinstance(bos, list) else bos
    rng = np.random.default_rng(seed)
    return [1 if bos is None else int(bos)] + [int(t) for t in rng.integers(3, cfg["vocab_size"], size=T - 1)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--out")
    ap.add_argument("-T", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--float64", action="store_true", help="also report the float32 run's distance from float64")
    a = ap.parse_args()
    cfg, w = load(a.dir)
    tokens = choose_tokens(cfg, a.T, a.seed)
    logits = forward(cfg, w, tokens).numpy()
    if a.out:
        write_golden(a.out, tokens, logits)
        print(f"wrote {a.out}: T={len(tokens)} V={logits.shape[1]} max|logit|={np.abs(logits).max():.4f}")
    if a.float64:
        l64 = forward(cfg, w, tokens, torch.float64).numpy()
        print(f"{a.dir}: max|f32 - f64| = {np.abs(logits - l64).max():.3e}")


if __name__ == "__main__":
    main()
