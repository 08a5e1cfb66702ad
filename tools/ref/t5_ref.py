#!/usr/bin/python3
"""Independent PyTorch reference for Hugging Face T5 / mT5 encoder-decoder
models (T5ForConditionalGeneration, MT5ForConditionalGeneration), and a
writer of tiny random-weight T5 model directories for tests.

Written from transformers' modeling_t5.py semantics, without the
transformers or safetensors packages (neither is installed here):

  encoder: x = shared[src]  (no scaling)
    per block:  x += SelfAttention(LN(x), bias = enc_bias)          layer.0
                x += DenseReluDense(LN(x))                          layer.1
    enc = final_layer_norm(x)
  decoder: y = shared[dec]
    per block:  y += SelfAttention(LN(y), bias = dec_bias + causal)  layer.0
                y += EncDecAttention(LN(y), enc, bias = 0)           layer.1
                y += DenseReluDense(LN(y))                           layer.2
    h = final_layer_norm(y)
  logits = (h * d_model^-0.5) @ shared^T   when tie_word_embeddings (T5 v1.0)
           h @ lm_head^T                   otherwise (T5 v1.1, mT5)

  T5LayerNorm  w * x * rsqrt(mean(x^2) + eps): no mean, no bias.
  Attention    q, k, v, o without bias, inner dim num_heads * d_kv;
               softmax(q k^T + bias) v with NO 1/sqrt(d_kv) scaling.
  Position bias  only block 0 of each stack holds relative_attention_bias
               [num_buckets, num_heads]; the bias it gives is shared by all
               blocks of the stack. Bucket of (key j, query i) from j - i by
               _relative_position_bucket (bidirectional in the encoder,
               causal in the decoder; the log is taken in float32 as HF does).
  FFN          "relu": wo(relu(wi x)); "gated-gelu": wo(gelu_new(wi_0 x) *
               wi_1 x), gelu_new the tanh approximation. Others are refused.
  Dropout is ignored (eval). decoder.block.0.layer.1.EncDecAttention.
  relative_attention_bias.weight, found in old checkpoints, is ignored as HF
  ignores it (_keys_to_ignore_on_load_unexpected).

Precision: weights are read as stored and widened to float32 (bf16: bits << 16;
f16: numpy's exact conversion), then cast to float64; all math is float64.

Files: config.json (HF fields above; defaults as T5Config / MT5Config) and
model.safetensors (or model.safetensors.index.json + shards): u64 LE header
length, JSON header {name: {"dtype": F32|F16|BF16, "shape", "data_offsets"}},
optional "__metadata__", padded with spaces to a multiple of 8, then the data.

Tiny models (make): kinds t5 (v1.0: relu, tied, 32 buckets / 128), t5v11
(gated-gelu, untied, 16 buckets / max_distance 20, so the log and capped
buckets are reached by short inputs) and mt5 (gated-gelu, untied, d_kv 24 x 4
heads = 96 != d_model 64, 2 encoder / 3 decoder blocks); vocab 512, d_model 64.
Draws: numpy default_rng(seed), in expected_shapes() order, rounded to float32,
then to the file dtype (f16/bf16 by round-to-nearest-even), so the f32 and half
directories of a kind hold the same draws. Linears N(0, 1/sqrt(fan_in)),
q N(0, 2/sqrt(d_model*d_kv)) (scores ~ N(0, 2) without 1/sqrt(d_kv)),
shared N(0, 1), lm_head N(0, 2.5/sqrt(d_model)), layer norms 1 + N(0, 0.1),
relative bias N(0, 0.5). Relu wo rows are centred (relu's positive mean would
add one constant direction), and a tied model's decoder.final_layer_norm gets
random signs (otherwise tied input/output embeddings make greedy decoding
repeat its input token). encoder/decoder.embed_tokens are written = shared.

Usage:
  t5_ref.py make DIR --kind {t5,t5v11,mt5} [--dtype f32|f16|bf16] [--seed N] [--vocab V] ...
  t5_ref.py logits DIR --src 5,6,7,1 --dec 0,9,4 --out F.json
      -> {"encoder_out": [[d_model floats] per source position],
          "logits": [[vocab floats] per decoder position]}
  t5_ref.py greedy DIR --src 5,6,7,1 -n N --out F.json
      -> {"tokens": [generated ids, without the start token; ends at EOS if hit]}
  t5_ref.py selftest
"""
import argparse
import json
import math
import os
import struct
import tempfile

import numpy as np
import torch

torch.set_num_threads(1)
ST_DTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}
IGNORED = {"decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"}


# ----------------------------------------------------------------------------
# safetensors, by hand
# ----------------------------------------------------------------------------
def to_bf16_bits(a):
    """float32 -> bfloat16 bits, round to nearest even (finite inputs)."""
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")


def encode(a, dt):
    if dt == "f32":
        return np.ascontiguousarray(a, dtype="<f4").tobytes()
    if dt == "f16":
        if np.any(np.abs(a) > 65504):
            raise SystemExit("a weight is beyond the float16 range; use --dtype bf16 or f32")
        return np.ascontiguousarray(a, dtype="<f4").astype("<f2").tobytes()
    return to_bf16_bits(a).tobytes()


def decode(buf, code, shape):
    if code == "F32":
        a = np.frombuffer(buf, dtype="<f4")
    elif code == "F16":
        a = np.frombuffer(buf, dtype="<f2").astype(np.float32)
    else:
        a = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    return a.reshape(shape).copy()


def write_safetensors(path, items, dt):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in items:
        raw = encode(a, dt)
        header[name] = {"dtype": ST_DTYPES[dt], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    """{name: float32 numpy array}; checks that each tensor fits the file."""
    data = open(path, "rb").read()
    (hl,) = struct.unpack("<Q", data[:8])
    if 8 + hl > len(data):
        raise SystemExit(f"{path}: header length {hl} beyond the file ({len(data)} bytes)")
    header, base, out = json.loads(data[8:8 + hl]), 8 + hl, {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        size = {"F32": 4, "F16": 2, "BF16": 2}.get(t["dtype"])
        if size is None:
            raise SystemExit(f"{path}: {name}: dtype {t['dtype']} is not F32, F16 or BF16")
        s, e = t["data_offsets"]
        if not 0 <= s <= e <= len(data) - base or e - s != size * int(np.prod(t["shape"])):
            raise SystemExit(f"{path}: {name}: data_offsets {s, e} do not fit dtype/shape or the file")
        out[name] = decode(data[base + s:base + e], t["dtype"], t["shape"])
    return out


# ----------------------------------------------------------------------------
# Loading: config with T5Config / MT5Config defaults, strict tensor check
# ----------------------------------------------------------------------------
def read_config(d):
    path = os.path.join(d, "config.json")
    return parse_config(json.load(open(path)), path)


def parse_config(c, path):
    mt = c.get("model_type", "t5")
    if mt not in ("t5", "mt5"):
        raise SystemExit(f"{path}: model_type {mt!r} is not t5 or mt5")
    for k in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads"):
        if k not in c:
            raise SystemExit(f"{path}: no {k}")
    ff = c.get("feed_forward_proj", "gated-gelu" if mt == "mt5" else "relu")
    if ff not in ("relu", "gated-gelu"):
        raise SystemExit(f"{path}: feed_forward_proj {ff!r} is not supported (only 'relu' and 'gated-gelu')")
    act, gated = ("gelu_new", True) if ff == "gated-gelu" else ("relu", False)
    if c.get("dense_act_fn", act) != act or c.get("is_gated_act", gated) != gated:
        raise SystemExit(f"{path}: dense_act_fn/is_gated_act disagree with feed_forward_proj {ff!r}")
    cfg = dict(c)
    cfg.update(feed_forward_proj=ff, gated=gated,
               num_decoder_layers=c.get("num_decoder_layers") or c["num_layers"],
               relative_attention_num_buckets=c.get("relative_attention_num_buckets", 32),
               relative_attention_max_distance=c.get("relative_attention_max_distance", 128),
               layer_norm_epsilon=c.get("layer_norm_epsilon", 1e-6),
               tie_word_embeddings=c.get("tie_word_embeddings", mt == "t5"),
               eos_token_id=c.get("eos_token_id", 1), pad_token_id=c.get("pad_token_id", 0))
    if cfg.get("decoder_start_token_id") is None:
        cfg["decoder_start_token_id"] = cfg["pad_token_id"]
    return cfg


def expected_shapes(cfg):
    """{name: shape} of every tensor the model uses (HF names)."""
    D, F, V, I = cfg["d_model"], cfg["d_ff"], cfg["vocab_size"], cfg["num_heads"] * cfg["d_kv"]
    NB, H = cfg["relative_attention_num_buckets"], cfg["num_heads"]
    ffn = {"wi_0": (F, D), "wi_1": (F, D), "wo": (D, F)} if cfg["gated"] else {"wi": (F, D), "wo": (D, F)}
    out = {"shared.weight": (V, D)}
    for stack, n in (("encoder", cfg["num_layers"]), ("decoder", cfg["num_decoder_layers"])):
        attn = ["SelfAttention"] + (["EncDecAttention"] if stack == "decoder" else [])
        for i in range(n):
            p = f"{stack}.block.{i}.layer."
            for j, a in enumerate(attn):
                out.update({f"{p}{j}.{a}.{m}.weight": (I, D) for m in "qkv"})
                out[f"{p}{j}.{a}.o.weight"] = (D, I)
                out[f"{p}{j}.layer_norm.weight"] = (D,)
            out.update({f"{p}{len(attn)}.DenseReluDense.{m}.weight": s for m, s in ffn.items()})
            out[f"{p}{len(attn)}.layer_norm.weight"] = (D,)
        out[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (NB, H)
        out[f"{stack}.final_layer_norm.weight"] = (D,)
    if not cfg["tie_word_embeddings"]:
        out["lm_head.weight"] = (V, D)
    return out


def load(d):
    cfg = read_config(d)
    single, w = os.path.join(d, "model.safetensors"), {}
    if os.path.exists(single):
        w = read_safetensors(single)
    else:
        wm = json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"]
        for shard in sorted(set(wm.values())):
            w.update(read_safetensors(os.path.join(d, shard)))
    if "shared.weight" not in w and "encoder.embed_tokens.weight" in w:
        w["shared.weight"] = w["encoder.embed_tokens.weight"]
    # Tied duplicates of shared (HF ties them to one parameter): must agree.
    dups = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]
    dups += ["lm_head.weight"] if cfg["tie_word_embeddings"] else []
    for k in dups:
        if k in w and not np.array_equal(w.pop(k), w.get("shared.weight")):
            raise SystemExit(f"{d}: {k} differs from shared.weight (they are tied)")
    shapes = expected_shapes(cfg)
    for k, s in shapes.items():
        if k not in w:
            raise SystemExit(f"{d}: no tensor {k}")
        if tuple(w[k].shape) != s:
            raise SystemExit(f"{d}: {k} has shape {list(w[k].shape)}, config.json implies {list(s)}")
    extra = sorted(set(w) - set(shapes) - IGNORED)
    if extra:
        raise SystemExit(f"{d}: unexpected tensors {extra[:4]}{' ...' if len(extra) > 4 else ''}")
    return cfg, {k: torch.from_numpy(w[k]).to(torch.float64) for k in shapes}


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------
def relative_position_bucket(rp, bidirectional, num_buckets, max_distance):
    """HF T5Attention._relative_position_bucket; rp = memory - query (long)."""
    buckets = torch.zeros_like(rp)
    if bidirectional:
        num_buckets //= 2
        buckets += (rp > 0).to(torch.long) * num_buckets
        rp = torch.abs(rp)
    else:
        rp = -torch.min(rp, torch.zeros_like(rp))
    max_exact = num_buckets // 2
    is_small = rp < max_exact
    large = max_exact + (torch.log(rp.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).to(torch.long)        # float32, as HF
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(is_small, rp, large)


class T5:
    def __init__(self, cfg, w):
        self.c, self.w = cfg, w
        self.H, self.dk, self.eps = cfg["num_heads"], cfg["d_kv"], cfg["layer_norm_epsilon"]

    def ln(self, x, name):
        return self.w[name] * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def heads(self, x, name):                                    # (T, D) -> (H, T, dk)
        return (x @ self.w[name].T).view(x.shape[0], self.H, self.dk).transpose(0, 1)

    def attend(self, q, k, v, bias, name):                       # (H,Tq,dk),(H,Tk,dk) -> (Tq, D)
        p = torch.softmax(q @ k.transpose(1, 2) + bias, dim=-1)
        return (p @ v).transpose(0, 1).reshape(q.shape[1], -1) @ self.w[name].T

    def ffn(self, x, p):
        w = self.w
        if self.c["gated"]:
            g = x @ w[p + "wi_0.weight"].T
            g = 0.5 * g * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (g + 0.044715 * g.pow(3))))
            return (g * (x @ w[p + "wi_1.weight"].T)) @ w[p + "wo.weight"].T
        return torch.relu(x @ w[p + "wi.weight"].T) @ w[p + "wo.weight"].T

    def bias(self, stack, qpos, klen):                           # -> (H, len(qpos), klen)
        rp = torch.arange(klen)[None, :] - qpos[:, None]
        b = relative_position_bucket(rp, stack == "encoder", self.c["relative_attention_num_buckets"],
                                     self.c["relative_attention_max_distance"])
        return self.w[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"][b].permute(2, 0, 1)

    @torch.no_grad()
    def encode(self, src):
        x = self.w["shared.weight"][torch.tensor(src)]
        bias = self.bias("encoder", torch.arange(len(src)), len(src))
        for i in range(self.c["num_layers"]):
            p = f"encoder.block.{i}.layer."
            h = self.ln(x, p + "0.layer_norm.weight")
            a = p + "0.SelfAttention."
            x = x + self.attend(self.heads(h, a + "q.weight"), self.heads(h, a + "k.weight"),
                                self.heads(h, a + "v.weight"), bias, a + "o.weight")
            x = x + self.ffn(self.ln(x, p + "1.layer_norm.weight"), p + "1.DenseReluDense.")
        return self.ln(x, "encoder.final_layer_norm.weight")

    def new_cache(self, enc):
        """Per decoder block: self K, V (grow) and cross K, V (computed once)."""
        cache = []
        for i in range(self.c["num_decoder_layers"]):
            a = f"decoder.block.{i}.layer.1.EncDecAttention."
            e = torch.zeros(self.H, 0, self.dk, dtype=enc.dtype)
            cache.append({"k": e, "v": e,
                          "ck": self.heads(enc, a + "k.weight"), "cv": self.heads(enc, a + "v.weight")})
        return cache

    @torch.no_grad()
    def decode(self, tokens, cache):
        """Decoder final hidden states of `tokens`, placed after the cache's
        positions; appends their self-attention K, V to the cache."""
        t0, n = cache[0]["k"].shape[1], len(tokens)
        qpos = torch.arange(t0, t0 + n)
        bias = self.bias("decoder", qpos, t0 + n)
        bias = bias.masked_fill(torch.arange(t0 + n)[None, None, :] > qpos[None, :, None], float("-inf"))
        y = self.w["shared.weight"][torch.tensor(tokens)]
        for i, c in enumerate(cache):
            p = f"decoder.block.{i}.layer."
            h, a = self.ln(y, p + "0.layer_norm.weight"), p + "0.SelfAttention."
            c["k"] = torch.cat([c["k"], self.heads(h, a + "k.weight")], 1)
            c["v"] = torch.cat([c["v"], self.heads(h, a + "v.weight")], 1)
            y = y + self.attend(self.heads(h, a + "q.weight"), c["k"], c["v"], bias, a + "o.weight")
            h, a = self.ln(y, p + "1.layer_norm.weight"), p + "1.EncDecAttention."
            y = y + self.attend(self.heads(h, a + "q.weight"), c["ck"], c["cv"], 0.0, a + "o.weight")
            y = y + self.ffn(self.ln(y, p + "2.layer_norm.weight"), p + "2.DenseReluDense.")
        return self.ln(y, "decoder.final_layer_norm.weight")

    def logits(self, h):
        if self.c["tie_word_embeddings"]:
            return (h * self.c["d_model"] ** -0.5) @ self.w["shared.weight"].T
        return h @ self.w["lm_head.weight"].T

    def full(self, src, dec):
        enc = self.encode(src)
        return enc, self.logits(self.decode(dec, self.new_cache(enc)))

    def greedy(self, src, n, tol=1e-9, stop_at_eos=True):
        """Incremental greedy decoding; every step's logits are checked
        against a full causal pass over the same decoder prefix. Without
        stop_at_eos it runs all n steps (a longer check of the decoder)."""
        enc = self.encode(src)
        cache, dec, out = self.new_cache(enc), [self.c["decoder_start_token_id"]], []
        for _ in range(n):
            step = self.logits(self.decode(dec[-1:], cache))[0]
            ref = self.logits(self.decode(dec, self.new_cache(enc)))[-1]
            err = (step - ref).abs().max().item()
            assert err <= tol, f"incremental vs full decoder logits differ by {err:.3g} at step {len(out)}"
            out.append(int(torch.argmax(step)))
            dec.append(out[-1])
            eos = self.c["eos_token_id"]
            if stop_at_eos and out[-1] in (eos if isinstance(eos, list) else [eos]):
                break
        return out


# ----------------------------------------------------------------------------
# Tiny random models
# ----------------------------------------------------------------------------
KINDS = {  # HF naming: t5 = v1.0 (relu, tied), t5v11 = v1.1 (gated-gelu, untied), mt5
    "t5": dict(seed=101, model_type="t5", arch="T5ForConditionalGeneration", feed_forward_proj="relu",
               tie_word_embeddings=True, vocab_size=512, d_model=64, d_kv=16, num_heads=4, d_ff=128,
               num_layers=2, num_decoder_layers=2, relative_attention_num_buckets=32,
               relative_attention_max_distance=128),
    "t5v11": dict(seed=202, model_type="t5", arch="T5ForConditionalGeneration", feed_forward_proj="gated-gelu",
                  tie_word_embeddings=False, vocab_size=512, d_model=64, d_kv=16, num_heads=4, d_ff=96,
                  num_layers=2, num_decoder_layers=2, relative_attention_num_buckets=16,
                  relative_attention_max_distance=20),
    "mt5": dict(seed=303, model_type="mt5", arch="MT5ForConditionalGeneration", feed_forward_proj="gated-gelu",
                tie_word_embeddings=False, vocab_size=512, d_model=64, d_kv=24, num_heads=4, d_ff=96,
                num_layers=2, num_decoder_layers=3, relative_attention_num_buckets=32,
                relative_attention_max_distance=128),
}


def make_config(k, dt):
    gated = k["feed_forward_proj"] == "gated-gelu"
    c = {"architectures": [k["arch"]], "model_type": k["model_type"], "is_encoder_decoder": True,
         "dense_act_fn": "gelu_new" if gated else "relu", "is_gated_act": gated,
         "layer_norm_epsilon": 1e-6, "dropout_rate": 0.1, "initializer_factor": 1.0,
         "decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0, "use_cache": True,
         "torch_dtype": {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[dt]}
    c.update({n: v for n, v in k.items() if n not in ("seed", "arch")})
    return c


def make_tensors(cfg, seed):
    """(name, float32 array) in expected_shapes order, from one numpy rng."""
    rng, D, dk = np.random.default_rng(seed), cfg["d_model"], cfg["d_kv"]
    out = []
    for name, s in expected_shapes(parse_config(cfg, "generated config")).items():
        if name.endswith("layer_norm.weight"):
            a = 1.0 + rng.normal(0.0, 0.1, s)
            if name == "decoder.final_layer_norm.weight" and cfg["tie_word_embeddings"]:
                a *= rng.choice([-1.0, 1.0], s)              # else tied models just repeat their input token
        elif name.endswith("relative_attention_bias.weight"):
            a = rng.normal(0.0, 0.5, s)
        elif name in ("shared.weight", "lm_head.weight"):   # untied head N(0, 2.5/sqrt(D)): logits O(1-3)
            a = rng.normal(0.0, 1.0 if name == "shared.weight" else 2.5 / math.sqrt(D), s)
        elif name.endswith(".q.weight"):                     # q k^T unscaled: keep scores ~ N(0, 2)
            a = rng.normal(0.0, 2.0 / math.sqrt(s[1] * dk), s)
        else:
            a = rng.normal(0.0, 1.0 / math.sqrt(s[1]), s)
            if name.endswith("DenseReluDense.wo.weight") and not cfg["is_gated_act"]:
                a -= a.mean(1, keepdims=True)                # relu's positive mean: no constant direction
        out.append((name, a.astype(np.float32)))
    return out


def make(d, kind, dt, seed=None, **over):
    k = dict(KINDS[kind], **{n: v for n, v in over.items() if v is not None})
    cfg = make_config(k, dt)
    items = make_tensors(cfg, k["seed"] if seed is None else seed)
    items[1:1] = [("encoder.embed_tokens.weight", items[0][1]), ("decoder.embed_tokens.weight", items[0][1])]
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(d, "model.safetensors"), items, dt)
    return items


# ----------------------------------------------------------------------------
# Self-test
# ----------------------------------------------------------------------------
BUCKETS = [  # (bidirectional, num_buckets, max_distance, {rp: bucket}); rp = key - query
    # bidirectional 32/128: 16 per side (+16 when rp > 0), max_exact 8, exact below |rp| 8,
    # else 8 + floor(8 * ln(|rp|/8) / ln 16), capped at 15:
    #   |rp| 9: 8 + 8*0.1178/2.7726 = 8.34 -> 8;  15: 8 + 8*0.6286/2.7726 = 9.81 -> 9
    #   |rp| 16: 8 + 8*ln2/ln16 = 10 exactly (float32 lands on 10.0);  20: 8 + 8*0.9163/2.7726 = 10.64 -> 10
    #   |rp| 32: 12 exactly;  100: 8 + 8*2.5257/2.7726 = 15.29 -> 15;  127: 15.98 -> 15;  1000: 21.9 -> cap 15
    (True, 32, 128, {0: 0, -1: 1, 1: 17, -7: 7, 7: 23, -8: 8, 8: 24, -9: 8, -15: 9, -16: 10, 16: 26,
                     -20: 10, 20: 26, -32: 12, -100: 15, -127: 15, -1000: 15, 1000: 31}),
    # causal 32/128: rp > 0 -> 0; max_exact 16; 16 + floor(16 * ln(|rp|/16) / ln 8), capped at 31:
    #   17: 16 + 16*0.0606/2.0794 = 16.47 -> 16;  20: 16 + 16*0.2231/2.0794 = 17.72 -> 17
    #   50: 16 + 16*1.1394/2.0794 = 24.77 -> 24;  100: 16 + 16*1.8326/2.0794 = 30.10 -> 30;  128: 32 -> cap 31
    (False, 32, 128, {0: 0, 5: 0, -1: 1, -5: 5, -15: 15, -16: 16, -17: 16, -20: 17, -50: 24, -100: 30,
                      -128: 31, -500: 31}),
    # bidirectional 16/20: 8 per side, max_exact 4; 4 + floor(4 * ln(|rp|/4) / ln 5), cap 7:
    #   5: 4 + 4*0.2231/1.6094 = 4.55 -> 4;  12: 4 + 4*1.0986/1.6094 = 6.73 -> 6;  19: 7.87 -> 7;  20: 8 -> cap 7
    (True, 16, 20, {-3: 3, -4: 4, -5: 4, -12: 6, -19: 7, -20: 7, 3: 11, 4: 12, 12: 14, 100: 15}),
    # causal 16/20: max_exact 8; 8 + floor(8 * ln(|rp|/8) / ln 2.5), cap 15:
    #   9: 8 + 8*0.1178/0.9163 = 9.03 -> 9;  12: 8 + 8*0.4055/0.9163 = 11.54 -> 11;  20: 16 -> cap 15
    (False, 16, 20, {-7: 7, -8: 8, -9: 9, -12: 11, -19: 15, -20: 15, 3: 0}),
]


def selftest():
    for bi, nb, md, table in BUCKETS:
        rp = torch.tensor(list(table))
        got = relative_position_bucket(rp, bi, nb, md).tolist()
        bad = [(r, g, e) for r, g, e in zip(table, got, table.values()) if g != e]
        assert not bad, f"buckets {'bi' if bi else 'causal'} {nb}/{md}: (rp, got, want) {bad}"
        print(f"ok buckets {'bidirectional' if bi else 'causal'} {nb}/{md}: {len(table)} positions")
    # Direction: bias[h, i, j] = table[bucket(j - i), h]. Encoder (32/128) query 1, keys 0..2:
    # rp -1, 0, +1 -> buckets 1, 0, 17; decoder query 3, keys 0..3: rp -3..0 -> 3, 2, 1, 0.
    tab = torch.arange(32 * 2, dtype=torch.float64).view(32, 2)
    m = T5(dict(num_heads=2, d_kv=1, layer_norm_epsilon=1e-6, relative_attention_num_buckets=32,
                relative_attention_max_distance=128),
           {f"{s}.block.0.layer.0.SelfAttention.relative_attention_bias.weight": tab for s in ("encoder", "decoder")})
    assert m.bias("encoder", torch.tensor([1]), 3)[1, 0].tolist() == [3, 1, 35]
    assert m.bias("decoder", torch.tensor([3]), 4)[0, 0].tolist() == [6, 4, 2, 0]
    print("ok bias direction: bias[h, i, j] = relative_attention_bias[bucket(j - i), h]")
    src = [37, 5, 400, 9, 9, 123, 77, 3, 250, 18, 61, 2, 300, 44, 8, 19, 201, 1]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            d = os.path.join(tmp, kind)
            make(d, kind, "f32")
            m = T5(*load(d))
            toks = m.greedy(src, 24)                        # asserts incremental == full per step
            enc, lg = m.full(src, [0] + toks)
            assert lg.shape == (len(toks) + 1, 512) and enc.shape == (len(src), 64)
            assert (lg[:-1].argmax(-1) == torch.tensor(toks)).all(), "greedy tokens are not the full pass argmax"
            print(f"ok incremental == full decoder ({kind}, {len(toks)} steps, {len(set(toks))} distinct tokens)")
        for dt, tdt in (("f16", torch.float16), ("bf16", torch.bfloat16)):
            d = os.path.join(tmp, "mt5_" + dt)
            items = dict(make(d, "mt5", dt))
            _, w = load(d)
            for name, t in w.items():                       # torch's own RNE conversion as the judge
                want = torch.from_numpy(items[name]).to(tdt).to(torch.float64)
                assert torch.equal(t, want), f"{dt} round trip differs at {name}"
            raw = read_safetensors(os.path.join(d, "model.safetensors"))
            assert set(raw) == set(items) and all(raw[k].dtype == np.float32 for k in raw)
            print(f"ok {dt} writer/reader round trip ({len(w)} tensors equal torch's {tdt} rounding)")
        cfg = json.load(open(os.path.join(tmp, "t5", "config.json")))
        for bad in ({"feed_forward_proj": "gated-silu"}, {"is_gated_act": True}):
            try:
                parse_config(dict(cfg, **bad), "config.json")
                raise AssertionError(f"config {bad} was not refused")
            except SystemExit as e:
                refusals = str(e)
        print(f"ok refusals (e.g. {refusals!r})")
        m = T5(*load(os.path.join(tmp, "t5")))
        enc = m.encode(src)
        h = m.decode([0, 7, 300], m.new_cache(enc))
        E, D = m.w["shared.weight"], m.c["d_model"]
        direct = (h * D ** -0.5) @ E.T
        assert torch.allclose(m.logits(h), direct, rtol=0, atol=1e-12)
        assert not torch.allclose(m.logits(h), h @ E.T, atol=1e-3)
        mu = T5(*load(os.path.join(tmp, "t5v11")))
        hu = mu.decode([0, 7, 300], mu.new_cache(mu.encode(src)))
        assert torch.allclose(mu.logits(hu), hu @ mu.w["lm_head.weight"].T, rtol=0, atol=1e-12)
        mu.c["tie_word_embeddings"] = True
        assert torch.allclose(mu.logits(hu), (hu * D ** -0.5) @ mu.w["shared.weight"].T, rtol=0, atol=1e-12)
        print("ok output head: tied = (h * d_model^-0.5) @ shared^T, untied = h @ lm_head^T (unscaled)")


def ids(s):
    return [int(t) for t in s.split(",") if t.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="write a tiny random T5 directory")
    mk.add_argument("dir")
    mk.add_argument("--kind", choices=sorted(KINDS), required=True)
    mk.add_argument("--dtype", choices=sorted(ST_DTYPES), default="f32")
    mk.add_argument("--seed", type=int)
    for flag, field in (("--vocab", "vocab_size"), ("--d-model", "d_model"), ("--d-kv", "d_kv"),
                        ("--heads", "num_heads"), ("--d-ff", "d_ff"), ("--layers", "num_layers"),
                        ("--decoder-layers", "num_decoder_layers"), ("--buckets", "relative_attention_num_buckets"),
                        ("--max-distance", "relative_attention_max_distance")):
        mk.add_argument(flag, dest=field, type=int)
    lg = sub.add_parser("logits", help="encoder output and decoder logits (float64)")
    lg.add_argument("dir")
    lg.add_argument("--src", required=True)
    lg.add_argument("--dec", required=True)
    lg.add_argument("--out", required=True)
    gr = sub.add_parser("greedy", help="greedy decoding (float64, incremental, checked against full passes)")
    gr.add_argument("dir")
    gr.add_argument("--src", required=True)
    gr.add_argument("-n", type=int, required=True)
    gr.add_argument("--ignore-eos", action="store_true", help="run all N steps, past an EOS")
    gr.add_argument("--out", required=True)
    sub.add_parser("selftest")
    a = ap.parse_args()
    if a.cmd == "selftest":
        selftest()
        return
    if a.cmd == "make":
        over = {f: getattr(a, f) for f in ("vocab_size", "d_model", "d_kv", "num_heads", "d_ff", "num_layers",
                                           "num_decoder_layers", "relative_attention_num_buckets",
                                           "relative_attention_max_distance")}
        items = make(a.dir, a.kind, a.dtype, a.seed, **over)
        print(f"wrote {a.dir}: {a.kind}, {a.dtype}, {len(items)} tensors, "
              f"{os.path.getsize(os.path.join(a.dir, 'model.safetensors'))} bytes")
        return
    m = T5(*load(a.dir))
    src, V = ids(a.src), m.c["vocab_size"]
    toks = src + (ids(a.dec) if a.cmd == "logits" else [])
    if not src or (a.cmd == "logits" and not ids(a.dec)) or any(not 0 <= t < V for t in toks):
        raise SystemExit(f"{a.dir}: token ids must be in [0, {V}) and --src/--dec non-empty")
    if a.cmd == "logits":
        enc, logits = m.full(src, ids(a.dec))
        res = {"encoder_out": enc.tolist(), "logits": logits.tolist()}
        msg = f"{len(src)} source, {len(ids(a.dec))} decoder positions"
    else:
        res = {"tokens": m.greedy(src, a.n, stop_at_eos=not a.ignore_eos)}
        msg = f"tokens {res['tokens']}"
    with open(a.out, "w") as f:
        json.dump(res, f)
    print(f"wrote {a.out}: {msg}")


if __name__ == "__main__":
    main()
