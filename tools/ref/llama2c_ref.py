#!/usr/bin/python3
"""Independent PyTorch reference for llama2.c-format (Llama-2) checkpoints.

Written from the architecture's definition (Llama-2 paper / the llama2.c
"version 0" checkpoint layout), not from any C code:

  x = tok_emb[tokens]
  per layer l:
    h   = RMSNorm(x; rms_att[l])              RMSNorm(x) = x * rsqrt(mean(x^2)+1e-5) * w
    q,k,v = h Wq^T, h Wk^T, h Wv^T            (nn.Linear convention, W is (out, in))
    RoPE on q and k, INTERLEAVED pairs: dims (2i, 2i+1) of every head are one
         complex number rotated by pos * 10000^(-2i/head_dim)
    grouped-query attention: query head h reads kv head h // (n_heads // n_kv_heads)
    causal softmax(q k^T / sqrt(head_dim)) v, then Wo, residual add
    h   = RMSNorm(x; rms_ffn[l])
    x  += W2( silu(W1 h) * (W3 h) )
  logits = RMSNorm(x; rms_final) Wcls^T       (Wcls = tok_emb when the header's vocab > 0)

The whole token sequence is run in one causal forward pass (no KV cache), in
float32 on the CPU (single thread, for repeatable bytes).

Golden-logits file written by --out (little-endian):
  char magic[4] = "BLDG"; int32 version = 1; int32 T; int32 V;
  int32 tokens[T]; float32 logits[T*V]   (row t = logits after tokens[0..t])

Command-line modes (see tools/ref/README.md for the exact command lines):
  llama2c_ref.py CKPT --out FILE [--tokens random|text] [--tokenizer TOK] [-T 32] [--seed N]
  llama2c_ref.py CKPT --generate N --tokenizer TOK     (greedy generation from BOS)
  llama2c_ref.py --show FILE --tokenizer TOK           (print a golden's argmax pieces)

How golden tokens are chosen:
  --tokens random : tokens[0] = 1 (BOS), tokens[1:] = numpy.random.default_rng(seed)
                    .integers(3, V, size=T-1)   (seed default 1234)
  --tokens text   : tokens[0] = 1 (BOS), then STORY_TEXT encoded with the
                    checkpoint's llama2.c tokenizer by score-driven BPE
                    (sentencepiece style: a leading space is prepended, the
                    text is split into characters (unknown characters fall
                    back to byte tokens <0xXX> = byte + 3), then the adjacent
                    pair whose merged string is a vocabulary piece with the
                    highest score is merged, leftmost on ties, until no pair
                    merges); the first T-1 resulting ids are kept.
"""
import argparse
import math
import os
import struct
import sys

import numpy as np
import torch

# Text used for the realistic golden sequences (stories15M, stories260K).
# The first sentence is the one the brief asks for; the tail only makes sure
# there are at least T-1 = 31 tokens with either vocabulary.
STORY_TEXT = ("Once upon a time, there was a little girl named Lily. She loved to "
              "play outside in the park with her dog. One day, they found a big "
              "red ball under a tree.")

BOS = 1
ROPE_THETA = 10000.0
RMS_EPS = 1e-5

torch.set_num_threads(1)


# ----------------------------------------------------------------------------
# Checkpoint loading
# ----------------------------------------------------------------------------
def load_checkpoint(path, dtype=torch.float32):
    """Read a llama2.c version-0 checkpoint; returns (cfg dict, weights dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    assert dim % n_heads == 0 and n_heads % n_kv_heads == 0
    hd = dim // n_heads
    kvd = n_kv_heads * hd
    cfg = dict(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads,
               n_kv_heads=n_kv_heads, vocab_size=vocab, seq_len=seq_len,
               head_dim=hd, shared_classifier=shared)

    # (name, shape) in file order
    layout = [
        ("tok_emb", (vocab, dim)),
        ("rms_att", (n_layers, dim)),
        ("wq", (n_layers, n_heads * hd, dim)),
        ("wk", (n_layers, kvd, dim)),
        ("wv", (n_layers, kvd, dim)),
        ("wo", (n_layers, dim, n_heads * hd)),
        ("rms_ffn", (n_layers, dim)),
        ("w1", (n_layers, hidden, dim)),
        ("w2", (n_layers, dim, hidden)),
        ("w3", (n_layers, hidden, dim)),
        ("rms_final", (dim,)),
        ("freq_cis_real", (seq_len, hd // 2)),  # legacy, skipped
        ("freq_cis_imag", (seq_len, hd // 2)),  # legacy, skipped
    ]
    if not shared:
        layout.append(("wcls", (vocab, dim)))
    n_floats = sum(int(np.prod(s)) for _, s in layout)
    expected = 28 + 4 * n_floats
    assert len(raw) == expected, f"{path}: size {len(raw)} != {expected} implied by header"

    flat = np.frombuffer(raw, dtype="<f4", offset=28)
    w, off = {}, 0
    for name, shape in layout:
        n = int(np.prod(shape))
        w[name] = torch.from_numpy(flat[off:off + n].reshape(shape).astype(np.float32)).to(dtype)
        off += n
    del w["freq_cis_real"], w["freq_cis_imag"]
    if shared:
        w["wcls"] = w["tok_emb"]
    return cfg, w


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------
def rmsnorm(x, weight):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS) * weight


def rope_interleaved(x, positions):
    """x: (T, n_heads, head_dim). Rotate pairs (2i, 2i+1) by pos * theta^(-2i/head_dim)."""
    T, H, hd = x.shape
    i = torch.arange(0, hd, 2, dtype=torch.float64)              # 2i
    inv_freq = ROPE_THETA ** (-i / hd)                           # (hd/2,)
    ang = positions.to(torch.float64)[:, None] * inv_freq[None]  # (T, hd/2)
    cos = torch.cos(ang).to(x.dtype)[:, None, :]                 # (T, 1, hd/2)
    sin = torch.sin(ang).to(x.dtype)[:, None, :]
    xp = x.reshape(T, H, hd // 2, 2)
    re, im = xp[..., 0], xp[..., 1]
    out = torch.stack((re * cos - im * sin, re * sin + im * cos), dim=-1)
    return out.reshape(T, H, hd)


@torch.no_grad()
def forward(cfg, w, tokens):
    """Causal forward over the whole sequence; returns logits (T, vocab)."""
    tokens = torch.tensor(np.asarray(tokens), dtype=torch.long)
    T = tokens.shape[0]
    assert T <= cfg["seq_len"]
    H, KV, hd = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]
    pos = torch.arange(T)
    mask = torch.full((T, T), float("-inf"), dtype=w["tok_emb"].dtype).triu(1)

    x = w["tok_emb"][tokens]                                     # (T, dim)
    for l in range(cfg["n_layers"]):
        h = rmsnorm(x, w["rms_att"][l])
        q = (h @ w["wq"][l].T).view(T, H, hd)
        k = (h @ w["wk"][l].T).view(T, KV, hd)
        v = (h @ w["wv"][l].T).view(T, KV, hd)
        q = rope_interleaved(q, pos)
        k = rope_interleaved(k, pos)
        # query head h -> kv head h // (H // KV)
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))        # (H, T, hd)
        att = (q @ k.transpose(1, 2)) / math.sqrt(hd) + mask
        att = torch.softmax(att, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(T, H * hd)
        x = x + o @ w["wo"][l].T

        h = rmsnorm(x, w["rms_ffn"][l])
        g = torch.nn.functional.silu(h @ w["w1"][l].T) * (h @ w["w3"][l].T)
        x = x + g @ w["w2"][l].T

    x = rmsnorm(x, w["rms_final"])
    return x @ w["wcls"].T


# ----------------------------------------------------------------------------
# Tokenizer (llama2.c tokenizer.bin: int32 max_len; per piece f32 score, int32 len, bytes)
# ----------------------------------------------------------------------------
def load_tokenizer(path, vocab_size):
    with open(path, "rb") as f:
        raw = f.read()
    off = 4
    pieces, scores = [], []
    for _ in range(vocab_size):
        score, n = struct.unpack_from("<fi", raw, off)
        off += 8
        pieces.append(raw[off:off + n])
        scores.append(score)
        off += n
    assert off == len(raw), f"{path}: {len(raw) - off} trailing bytes"
    return pieces, scores


def bpe_encode(text, pieces, scores):
    """Score-driven BPE (sentencepiece style) as described in the module docstring."""
    index = {p: i for i, p in enumerate(pieces)}
    ids = []
    for ch in " " + text:                       # dummy prefix space
        b = ch.encode("utf-8")
        if b in index:
            ids.append(index[b])
        else:                                   # byte fallback: <0xXX> = byte + 3
            ids.extend(c + 3 for c in b)
    while True:
        best, best_i = None, -1
        for i in range(len(ids) - 1):
            j = index.get(pieces[ids[i]] + pieces[ids[i + 1]])
            if j is not None and (best is None or scores[j] > scores[best]):
                best, best_i = j, i
        if best is None:
            return ids
        ids[best_i:best_i + 2] = [best]


def decode_piece(pieces, prev, tok):
    """Bytes of token `tok` as printed text (leading space stripped after BOS)."""
    p = pieces[tok]
    if prev == BOS and p.startswith(b" "):
        p = p[1:]
    if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
        p = bytes([int(p[3:5], 16)])
    return p


# ----------------------------------------------------------------------------
# Golden files
# ----------------------------------------------------------------------------
def write_golden(path, tokens, logits):
    tokens = np.asarray(tokens, dtype="<i4")
    logits = np.ascontiguousarray(logits, dtype="<f4")
    T, V = logits.shape
    assert tokens.shape == (T,)
    with open(path, "wb") as f:
        f.write(b"BLDG")
        f.write(struct.pack("<3i", 1, T, V))
        f.write(tokens.tobytes())
        f.write(logits.tobytes())


def read_golden(path):
    with open(path, "rb") as f:
        raw = f.read()
    assert raw[:4] == b"BLDG"
    version, T, V = struct.unpack_from("<3i", raw, 4)
    assert version == 1 and len(raw) == 16 + 4 * T + 4 * T * V
    tokens = np.frombuffer(raw, dtype="<i4", count=T, offset=16)
    logits = np.frombuffer(raw, dtype="<f4", count=T * V, offset=16 + 4 * T).reshape(T, V)
    return tokens, logits


def choose_tokens(mode, T, V, seed, tokenizer):
    if mode == "random":
        rng = np.random.default_rng(seed)
        return [BOS] + [int(t) for t in rng.integers(3, V, size=T - 1)]
    pieces, scores = tokenizer
    ids = bpe_encode(STORY_TEXT, pieces, scores)
    assert len(ids) >= T - 1, f"text encodes to only {len(ids)} tokens"
    return [BOS] + ids[:T - 1]


def show(tokens, logits, pieces, last=None):
    """Print, per position, the input token and the argmax prediction."""
    am = logits.argmax(-1)
    start = 0 if last is None else max(0, len(tokens) - last)
    for t in range(start, len(tokens)):
        inp = pieces[tokens[t]].decode("utf-8", "replace")
        nxt = pieces[am[t]].decode("utf-8", "replace")
        print(f"  t={t:2d} in={tokens[t]:6d} {inp!r:14} argmax={am[t]:6d} {nxt!r:14} "
              f"max={logits[t].max():8.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--out", help="golden logits file to write")
    ap.add_argument("--tokens", choices=["random", "text"], default="random")
    ap.add_argument("--tokenizer", help="llama2.c tokenizer .bin")
    ap.add_argument("-T", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--generate", type=int, default=0, help="greedy-generate N tokens from BOS")
    ap.add_argument("--show", help="print argmax pieces of an existing golden file")
    a = ap.parse_args()

    if a.show:
        tokens, logits = read_golden(a.show)
        pieces, _ = load_tokenizer(a.tokenizer, logits.shape[1])
        print(f"{a.show}: T={len(tokens)} V={logits.shape[1]} max|logit|={np.abs(logits).max():.4f}")
        show(tokens, logits, pieces)
        return

    cfg, w = load_checkpoint(a.checkpoint)
    print(f"{a.checkpoint}: {cfg}", file=sys.stderr)
    tok = load_tokenizer(a.tokenizer, cfg["vocab_size"]) if a.tokenizer else None

    if a.generate:
        seq = [BOS]
        for _ in range(a.generate):
            seq.append(int(forward(cfg, w, seq)[-1].argmax()))
        text = b"".join(decode_piece(tok[0], p, t) for p, t in zip(seq, seq[1:]))
        print("ids:", seq)
        print(text.decode("utf-8", "replace"))
        return

    tokens = choose_tokens(a.tokens, a.T, cfg["vocab_size"], a.seed, tok)
    logits = forward(cfg, w, tokens).numpy()
    write_golden(a.out, tokens, logits)
    print(f"wrote {a.out}: T={len(tokens)} V={logits.shape[1]} "
          f"max|logit|={np.abs(logits).max():.4f} bytes={os.path.getsize(a.out)}")
    if tok:
        show(tokens, logits, tok[0], last=8)


if __name__ == "__main__":
    main()
