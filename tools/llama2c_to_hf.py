#!/usr/bin/python3
"""Converts a llama2.c checkpoint (+ its tokenizer.bin) into a Hugging Face
model directory: config.json (LlamaForCausalLM), generation_config.json,
model.safetensors (F32, F16 or BF16, written by hand), tokenizer.json (the
SentencePiece-style BPE equivalent of tokenizer.bin, from
tools/ref/make_tokenizer_json.py) and tokenizer_config.json.

Checkpoint layout (model/llama2c.c, "version 0"): 7 int32 dim, hidden_dim,
n_layers, n_heads, n_kv_heads, vocab_size (negative: separate classifier),
seq_len; then float32 token_embedding (vocab, dim), rms_att (L, dim),
wq (L, dim, dim), wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim),
rms_ffn (L, dim), w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden,
dim), rms_final (dim), freq_cis_real and freq_cis_imag (seq_len, head_dim/2
each; skipped), [wcls (vocab, dim)]. Matrices are (out, in) like
torch.nn.Linear.weight, so they are copied as they are, except:

RoPE: llama2.c rotates interleaved pairs (2i, 2i+1) of each head; HF Llama
rotates halves (i, i + head_dim/2). The rows of wq and wk are permuted so
that HF's rotate-half applied to the permuted projection equals llama2.c's
interleaved rotation of the original one: within each head, row 2i goes to
i and row 2i+1 to i + head_dim/2 (the inverse of what llama2.c's export.py
does to HF checkpoints, and what transformers' convert_llama_weights_to_hf
does to Meta's):
  wq_hf = wq.reshape(n_heads, head_dim//2, 2, dim).transpose(0,2,1,3).reshape(dim, dim)
  wk_hf = wk.reshape(n_kv_heads, head_dim//2, 2, dim).transpose(0,2,1,3).reshape(kv_dim, dim)

Half precision: bf16 by round-to-nearest-even of the f32 bits (NaN kept
quiet), f16 by numpy's astype (round-to-nearest-even; values beyond the f16
range are refused).

usage:
  /usr/bin/python3 tools/llama2c_to_hf.py CHECKPOINT.bin OUT_DIR [--dtype f32|f16|bf16]
        [--tokenizer tokenizer.bin | --no-tokenizer] [--verify]
  /usr/bin/python3 tools/llama2c_to_hf.py --verify-only OUT_DIR CHECKPOINT.bin
Needs numpy only (no torch).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
from make_tokenizer_json import sp_tokenizer_json  # noqa: E402

DTYPES = {"f32": ("F32", "float32"), "f16": ("F16", "float16"), "bf16": ("BF16", "bfloat16")}


def read_llama2c(path):
    """(config dict, {name: f32 array}) with llama2.c names and shapes."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size < 28:
        raise SystemExit(f"{path}: too short for a llama2.c header")
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28].tobytes())
    shared = vocab > 0
    vocab = abs(vocab)
    if min(dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len) <= 0 or dim % n_heads or n_heads % n_kv:
        raise SystemExit(f"{path}: implausible header {dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len}")
    hd = dim // n_heads
    kv_dim = n_kv * hd
    shapes = [("token_embedding", (vocab, dim)), ("rms_att", (n_layers, dim)),
              ("wq", (n_layers, dim, dim)), ("wk", (n_layers, kv_dim, dim)), ("wv", (n_layers, kv_dim, dim)),
              ("wo", (n_layers, dim, dim)), ("rms_ffn", (n_layers, dim)), ("w1", (n_layers, hidden, dim)),
              ("w2", (n_layers, dim, hidden)), ("w3", (n_layers, hidden, dim)), ("rms_final", (dim,)),
              ("freq_cis_real", (seq_len, hd // 2)), ("freq_cis_imag", (seq_len, hd // 2))]
    if not shared:
        shapes.append(("wcls", (vocab, dim)))
    want = 28 + 4 * sum(int(np.prod(s)) for _, s in shapes)
    if raw.size != want:
        raise SystemExit(f"{path}: {raw.size} bytes, the header implies {want}")
    f = raw[28:].view("<f4")
    w, pos = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        w[name] = f[pos:pos + n].reshape(shape).astype(np.float32)
        pos += n
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, vocab=vocab,
               seq_len=seq_len, shared=shared, head_dim=hd)
    return cfg, w


def permute_rope(w, n_heads, head_dim):
    """Rows of a q/k projection (n_heads*head_dim, in): interleaved -> halves."""
    rows, cols = w.shape
    return w.reshape(n_heads, head_dim // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def unpermute_rope(w, n_heads, head_dim):
    rows, cols = w.shape
    return w.reshape(n_heads, 2, head_dim // 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def hf_tensors(cfg, w):
    """[(HF name, f32 array)] in the usual order."""
    out = [("model.embed_tokens.weight", w["token_embedding"])]
    for l in range(cfg["n_layers"]):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", w["rms_att"][l]),
                (p + "self_attn.q_proj.weight", permute_rope(w["wq"][l], cfg["n_heads"], cfg["head_dim"])),
                (p + "self_attn.k_proj.weight", permute_rope(w["wk"][l], cfg["n_kv"], cfg["head_dim"])),
                (p + "self_attn.v_proj.weight", w["wv"][l]),
                (p + "self_attn.o_proj.weight", w["wo"][l]),
                (p + "post_attention_layernorm.weight", w["rms_ffn"][l]),
                (p + "mlp.gate_proj.weight", w["w1"][l]),
                (p + "mlp.down_proj.weight", w["w2"][l]),
                (p + "mlp.up_proj.weight", w["w3"][l])]
    out.append(("model.norm.weight", w["rms_final"]))
    if not cfg["shared"]:
        out.append(("lm_head.weight", w["wcls"]))
    return out


def to_bf16_bits(a):
    """float32 -> bfloat16 bits (uint16), round to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    nan = np.isnan(a)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def encode(a, dtype):
    if dtype == "f32":
        return np.ascontiguousarray(a, dtype="<f4").tobytes()
    if dtype == "f16":
        if np.any(np.abs(a) > 65504):
            raise SystemExit("a weight is beyond the float16 range; use --dtype bf16 or f32")
        return np.ascontiguousarray(a).astype("<f2").tobytes()
    return to_bf16_bits(a).astype("<u2").tobytes()


def decode(buf, dtype, shape):
    if dtype == "F32":
        return np.frombuffer(buf, dtype="<f4").reshape(shape)
    if dtype == "F16":
        return np.frombuffer(buf, dtype="<f2").astype(np.float32).reshape(shape)
    if dtype == "BF16":
        return from_bf16_bits(np.frombuffer(buf, dtype="<u2")).reshape(shape)
    raise ValueError(dtype)


def write_safetensors(path, tensors, dtype):
    """safetensors: u64 little-endian header length, the JSON header
    (dtype, shape, data_offsets relative to the data start; padded with
    spaces to a multiple of 8), then the tensors back to back."""
    st_dtype = DTYPES[dtype][0]
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors:
        b = encode(a, dtype)
        header[name] = {"dtype": st_dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """{name: (dtype, shape, f32 array)}; checks the layout strictly."""
    data = open(path, "rb").read()
    if len(data) < 8:
        raise SystemExit(f"{path}: too short")
    (hl,) = struct.unpack("<Q", data[:8])
    if 8 + hl > len(data):
        raise SystemExit(f"{path}: header length {hl} beyond the file ({len(data)} bytes)")
    header = json.loads(data[8:8 + hl])
    base = 8 + hl
    out, spans = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        s, e = info["data_offsets"]
        size = {"F32": 4, "F16": 2, "BF16": 2}[info["dtype"]]
        if not (0 <= s <= e <= len(data) - base) or e - s != size * int(np.prod(info["shape"])):
            raise SystemExit(f"{path}: {name}: data_offsets {s, e} do not fit dtype/shape or the file")
        spans.append((s, e, name))
        out[name] = (info["dtype"], tuple(info["shape"]), decode(data[base + s:base + e], info["dtype"],
                                                                 info["shape"]))
    spans.sort()
    for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
        if s1 < e0:
            raise SystemExit(f"{path}: {n0} and {n1} overlap")
    if spans and spans[-1][1] != len(data) - base:
        raise SystemExit(f"{path}: {len(data) - base - spans[-1][1]} bytes after the last tensor")
    return out


def config_json(cfg, dtype):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg["dim"],
        "intermediate_size": cfg["hidden"],
        "num_hidden_layers": cfg["n_layers"],
        "num_attention_heads": cfg["n_heads"],
        "num_key_value_heads": cfg["n_kv"],
        "head_dim": cfg["head_dim"],
        "hidden_act": "silu",
        "max_position_embeddings": cfg["seq_len"],
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": cfg["shared"],
        "vocab_size": cfg["vocab"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": DTYPES[dtype][1],
        "use_cache": True,
    }


def convert(ckpt, out_dir, dtype, tokenizer_bin):
    """Writes the directory; tokenizer_bin None: no tokenizer files."""
    cfg, w = read_llama2c(ckpt)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config_json(cfg, dtype), f, indent=2)
        f.write("\n")
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2}, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(out_dir, "model.safetensors"), hf_tensors(cfg, w), dtype)
    if tokenizer_bin is None:
        return cfg
    tok = sp_tokenizer_json(tokenizer_bin)
    if len(tok["model"]["vocab"]) != cfg["vocab"]:
        raise SystemExit(f"{tokenizer_bin}: {len(tok['model']['vocab'])} pieces, the model has {cfg['vocab']}")
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": True, "add_eos_token": False,
                   "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "legacy": True,
                   "model_max_length": cfg["seq_len"]}, f, indent=2)
        f.write("\n")
    return cfg


def _rmsnorm(x, g):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5) * g


def _forward(tokens, emb, layers, norm, head, n_heads, n_kv, hd, rope):
    """Causal Llama forward in float64 over a token list; rope(x, pos) rotates
    (T, heads, hd). layers: dicts with q, k, v, o, gate, up, down, ln1, ln2
    as (out, in) matrices. Returns logits (T, vocab)."""
    x = emb[tokens].astype(np.float64)
    T = len(tokens)
    pos = np.arange(T)
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for L in layers:
        h = _rmsnorm(x, L["ln1"])
        q = rope((h @ L["q"].T).reshape(T, n_heads, hd), pos)
        k = rope((h @ L["k"].T).reshape(T, n_kv, hd), pos)
        v = (h @ L["v"].T).reshape(T, n_kv, hd)
        rep = n_heads // n_kv
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", att, v).reshape(T, -1) @ L["o"].T
        h = _rmsnorm(x, L["ln2"])
        g = h @ L["gate"].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ L["up"].T)) @ L["down"].T
    return _rmsnorm(x, norm) @ head.T


def _angles(pos, hd):
    inv = 10000.0 ** (-np.arange(0, hd, 2) / hd)  # (hd/2)
    a = pos[:, None] * inv[None, :]
    return np.cos(a)[:, None, :], np.sin(a)[:, None, :]  # (T, 1, hd/2)


def rope_interleaved(x, pos):
    """llama2.c: pairs (2i, 2i+1) rotated by pos * 10000^(-2i/hd)."""
    c, s = _angles(pos, x.shape[-1])
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def rope_half(x, pos):
    """Hugging Face Llama: x * cos + rotate_half(x) * sin over halves."""
    c, s = _angles(pos, x.shape[-1])
    c, s = np.concatenate([c, c], -1), np.concatenate([s, s], -1)
    h = x.shape[-1] // 2
    rot = np.concatenate([-x[..., h:], x[..., :h]], -1)
    return x * c + rot * s


def check_logits(out_dir, ckpt, tokens):
    """Max |logits| difference between llama2.c's convention on the original
    checkpoint and HF's rotate-half convention on the written safetensors."""
    cfg, w = read_llama2c(ckpt)
    st = read_safetensors(os.path.join(out_dir, "model.safetensors"))
    nh, nkv, hd = cfg["n_heads"], cfg["n_kv"], cfg["head_dim"]
    tokens = [t % cfg["vocab"] for t in tokens]
    ref_layers = [dict(q=w["wq"][l], k=w["wk"][l], v=w["wv"][l], o=w["wo"][l], gate=w["w1"][l], up=w["w3"][l],
                       down=w["w2"][l], ln1=w["rms_att"][l], ln2=w["rms_ffn"][l]) for l in range(cfg["n_layers"])]
    ref = _forward(tokens, w["token_embedding"], ref_layers, w["rms_final"],
                   w["token_embedding"] if cfg["shared"] else w["wcls"], nh, nkv, hd, rope_interleaved)
    g = {n: a.astype(np.float64) for n, (_, _, a) in st.items()}
    hf_layers = []
    for l in range(cfg["n_layers"]):
        p = f"model.layers.{l}."
        hf_layers.append(dict(q=g[p + "self_attn.q_proj.weight"], k=g[p + "self_attn.k_proj.weight"],
                              v=g[p + "self_attn.v_proj.weight"], o=g[p + "self_attn.o_proj.weight"],
                              gate=g[p + "mlp.gate_proj.weight"], up=g[p + "mlp.up_proj.weight"],
                              down=g[p + "mlp.down_proj.weight"], ln1=g[p + "input_layernorm.weight"],
                              ln2=g[p + "post_attention_layernorm.weight"]))
    emb = g["model.embed_tokens.weight"]
    hf = _forward(tokens, emb, hf_layers, g["model.norm.weight"], g.get("lm_head.weight", emb), nh, nkv, hd,
                  rope_half)
    # The wrong pairing (HF weights with interleaved RoPE) must be far off,
    # or the check proves nothing.
    wrong = _forward(tokens, emb, hf_layers, g["model.norm.weight"], g.get("lm_head.weight", emb), nh, nkv, hd,
                     rope_interleaved)
    return (float(np.max(np.abs(hf - ref))), float(np.max(np.abs(wrong - ref))),
            int((hf.argmax(-1) == ref.argmax(-1)).sum()), len(tokens))


def verify(out_dir, ckpt):
    """Reads the directory back and checks it against the checkpoint: every
    tensor present with the right shape, equal to the source after rounding
    to the file's dtype, q/k un-permuting to llama2.c's rows, config fields,
    a tokenizer.json of the right size. Returns the max abs error vs f32."""
    cfg, w = read_llama2c(ckpt)
    conf = json.load(open(os.path.join(out_dir, "config.json")))
    assert conf["hidden_size"] == cfg["dim"] and conf["num_key_value_heads"] == cfg["n_kv"]
    assert conf["vocab_size"] == cfg["vocab"] and conf["tie_word_embeddings"] == cfg["shared"]
    st = read_safetensors(os.path.join(out_dir, "model.safetensors"))
    want = hf_tensors(cfg, w)
    assert set(st) == {n for n, _ in want}, sorted(set(st) ^ {n for n, _ in want})
    worst = 0.0
    for name, a in want:
        dt, shape, got = st[name]
        assert shape == a.shape, (name, shape, a.shape)
        if dt == "F32":
            ref = a
        elif dt == "F16":
            ref = a.astype(np.float16).astype(np.float32)
        else:
            ref = from_bf16_bits(to_bf16_bits(a))
        if not np.array_equal(got, ref):
            raise SystemExit(f"{out_dir}: {name} differs from the checkpoint")
        worst = max(worst, float(np.max(np.abs(got - a))))
    for l in range(cfg["n_layers"]):
        q = st[f"model.layers.{l}.self_attn.q_proj.weight"][2]
        k = st[f"model.layers.{l}.self_attn.k_proj.weight"][2]
        if st[f"model.layers.{l}.self_attn.q_proj.weight"][0] == "F32":
            assert np.array_equal(unpermute_rope(q, cfg["n_heads"], cfg["head_dim"]), w["wq"][l])
            assert np.array_equal(unpermute_rope(k, cfg["n_kv"], cfg["head_dim"]), w["wk"][l])
    if os.path.exists(os.path.join(out_dir, "tokenizer.json")):
        tok = json.load(open(os.path.join(out_dir, "tokenizer.json"), encoding="utf-8"))
        assert len(tok["model"]["vocab"]) == cfg["vocab"]
    return len(st), worst


def main():
    ap = argparse.ArgumentParser(description="llama2.c checkpoint -> Hugging Face directory")
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("out_dir", nargs="?")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    ap.add_argument("--tokenizer", help="tokenizer.bin (default: next to the checkpoint)")
    ap.add_argument("--no-tokenizer", action="store_true", help="write no tokenizer files (random test models)")
    ap.add_argument("--verify", action="store_true", help="read the written directory back and check it")
    ap.add_argument("--verify-only", nargs=2, metavar=("OUT_DIR", "CHECKPOINT"))
    a = ap.parse_args()
    if a.verify_only:
        n, worst = verify(*a.verify_only)
        print(f"{a.verify_only[0]}: {n} tensors ok, max |hf - llama2.c| = {worst:.3g}")
        return
    if not a.checkpoint or not a.out_dir:
        ap.error("CHECKPOINT and OUT_DIR are needed")
    tok = None if a.no_tokenizer else \
        a.tokenizer or os.path.join(os.path.dirname(os.path.abspath(a.checkpoint)), "tokenizer.bin")
    cfg = convert(a.checkpoint, a.out_dir, a.dtype, tok)
    print(f"{a.out_dir}: dim {cfg['dim']}, {cfg['n_layers']} layers, {cfg['n_heads']}/{cfg['n_kv']} heads, "
          f"vocab {cfg['vocab']}, {'tied' if cfg['shared'] else 'untied'} head, {a.dtype}")
    if a.verify:
        n, worst = verify(a.out_dir, a.checkpoint)
        print(f"verify: {n} tensors ok, max |hf - llama2.c| = {worst:.3g}")
        toks = [1, 9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826, 4257]
        d, dwrong, agree, T = check_logits(a.out_dir, a.checkpoint, toks)
        print(f"verify: logits over {T} tokens, HF rotate-half on the written weights vs llama2.c interleaved "
              f"on the checkpoint (float64): max |diff| {d:.3g}, argmax agrees at {agree}/{T}; "
              f"with the wrong RoPE: {dwrong:.3g}")
        if a.dtype == "f32" and d > 1e-4:
            raise SystemExit("verify: f32 logits differ by more than 1e-4")


if __name__ == "__main__":
    main()
