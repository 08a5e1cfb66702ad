#!/usr/bin/python3
"""Write small random llama2.c-format ("version 0") checkpoints for tests.

Layout followed (little-endian): 7 int32 header (dim, hidden_dim, n_layers,
n_heads, n_kv_heads, vocab_size, seq_len; vocab_size < 0 means an unshared
classifier), then float32 arrays: tok_emb (V,dim), rms_att (L,dim),
wq (L,H*hd,dim), wk (L,KV*hd,dim), wv (L,KV*hd,dim), wo (L,dim,H*hd),
rms_ffn (L,dim), w1 (L,hid,dim), w2 (L,dim,hid), w3 (L,hid,dim),
rms_final (dim), freq_cis_real (S,hd/2), freq_cis_imag (S,hd/2) [legacy:
filled with cos/sin of pos*10000^(-2i/hd) as the old exporter did; readers
skip them], then wcls (V,dim) only when unshared.

Weights are deterministic: numpy.random.default_rng(seed), one seed per
model, drawn in file order in float64 and rounded to float32, so every run
writes the same bytes. Scales:
  matrices   N(0, gain / sqrt(fan_in))   (gain 1.0; 1.5 for wq/wk so that
             attention is visibly non-uniform) -> std roughly 0.08..0.2
  tok_emb    N(0, 0.1) when unshared; N(0, 2.5/sqrt(dim)) when shared
  wcls       N(0, 2.5/sqrt(dim))         -> logits of std ~2.5, max ~10
  rms_*      1.0 + N(0, 0.1)

Usage: make_tiny.py [OUTDIR]    (default tests/data)
"""
import os
import sys

import numpy as np

# name: (seed, dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared)
MODELS = {
    "tiny_gqa":    (101, 60, 97, 3, 6, 2, 103, 48, False),
    "tiny_shared": (202, 48, 130, 2, 4, 4, 67, 40, True),
    "tiny_mqa":    (303, 36, 50, 2, 3, 1, 259, 64, False),
}


def make(seed, dim, hidden, L, H, KV, V, S, shared):
    rng = np.random.default_rng(seed)
    hd = dim // H
    assert hd * H == dim and H % KV == 0 and hd % 2 == 0

    def mat(*shape, gain=1.0):           # shape (..., out, in): fan_in = last dim
        return rng.normal(0.0, gain / np.sqrt(shape[-1]), size=shape)

    def rms(*shape):
        return 1.0 + rng.normal(0.0, 0.1, size=shape)

    cls_std = 2.5 / np.sqrt(dim)
    pos = np.arange(S)[:, None]
    ang = pos * 10000.0 ** (-np.arange(0, hd, 2) / hd)[None, :]
    arrays = [
        rng.normal(0.0, cls_std if shared else 0.1, size=(V, dim)),  # tok_emb
        rms(L, dim),                                                 # rms_att
        mat(L, H * hd, dim, gain=1.5),                               # wq
        mat(L, KV * hd, dim, gain=1.5),                              # wk
        mat(L, KV * hd, dim),                                        # wv
        mat(L, dim, H * hd),                                         # wo
        rms(L, dim),                                                 # rms_ffn
        mat(L, hidden, dim),                                         # w1
        mat(L, dim, hidden),                                         # w2
        mat(L, hidden, dim),                                         # w3
        rms(dim),                                                    # rms_final
        np.cos(ang),                                                 # freq_cis_real (legacy)
        np.sin(ang),                                                 # freq_cis_imag (legacy)
    ]
    if not shared:
        arrays.append(rng.normal(0.0, cls_std, size=(V, dim)))       # wcls
    header = np.array([dim, hidden, L, H, KV, V if shared else -V, S], dtype="<i4")
    return header.tobytes() + b"".join(a.astype("<f4").tobytes() for a in arrays)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    os.makedirs(outdir, exist_ok=True)
    for name, spec in MODELS.items():
        path = os.path.join(outdir, name + ".bin")
        data = make(*spec)
        with open(path, "wb") as f:
            f.write(data)
        print(f"wrote {path}: {len(data)} bytes")


if __name__ == "__main__":
    main()
