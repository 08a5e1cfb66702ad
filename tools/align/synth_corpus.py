#!/usr/bin/python3
"""synth_corpus.py - writes a synthetic alignment corpus in exactly the format
`bild align-data` writes (tools/align/README.md, "Corpus format"), for tests
and throughput measurements of train_small.py without a large model.

The "large model" is a random sparse Markov chain over the tokenizer's
vocabulary: every token has FAN successors with Dirichlet probabilities,
mixed with SMOOTH of uniform mass so that every token has a non-zero
probability. Rows start with BOS and are sampled from the chain; the top-K
files hold the chain's K most probable next tokens (descending, ties broken
by the lower id) and their natural log-probabilities in f16. So the corpus
is self-consistent: the hard next token is a sample of the distribution the
top-K files describe.

usage:
  /usr/bin/python3 tools/align/synth_corpus.py OUT_DIR --tokenizer TOK.bin
        [--rows 300] [--row-len 64] [--topk 8] [--fan 8] [--seed 1]
Needs numpy only.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

FNV_OFFSET, FNV_PRIME, MASK64 = 0xcbf29ce484222325, 0x100000001b3, (1 << 64) - 1


def fnv1a64(path):
    """FNV-1a 64 over the file's bytes, as 16 lowercase hex digits."""
    h = FNV_OFFSET
    with open(path, "rb") as f:
        for b in f.read():
            h = ((h ^ b) * FNV_PRIME) & MASK64
    return f"{h:016x}"


def count_pieces(path):
    raw = open(path, "rb").read()
    off, n = 4, 0
    while off < len(raw):
        _, ln = struct.unpack_from("<fi", raw, off)
        off += 8 + ln
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description="synthetic bild-align-corpus (Markov chain teacher)")
    ap.add_argument("out_dir")
    ap.add_argument("--tokenizer", required=True, help="tokenizer.bin whose piece count is the vocabulary")
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--row-len", type=int, default=64)
    ap.add_argument("--topk", type=int, default=8, help="0: no top-K files")
    ap.add_argument("--fan", type=int, default=8, help="successors per token")
    ap.add_argument("--smooth", type=float, default=0.02, help="uniform probability mass mixed in")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    V = count_pieces(a.tokenizer)
    S, L, K, fan = a.rows, a.row_len, a.topk, a.fan
    if K > V or 2 * fan > V - 3:
        sys.exit("synth_corpus: --topk and --fan must be below the vocabulary size")
    rng = np.random.default_rng(a.seed)
    bos, eos = 1, 2

    # successors (V, fan) of distinct ids >= 3 and their probabilities
    # (distinct: a random start plus strictly increasing offsets below V - 3)
    inc = rng.integers(1, max(2, (V - 3) // fan), size=(V, fan))
    succ = 3 + (rng.integers(0, V - 3, size=(V, 1)) + np.cumsum(inc, axis=1)) % (V - 3)
    sp = rng.dirichlet(np.full(fan, 0.5), size=V) * (1.0 - a.smooth)  # (V, fan) successor mass
    floor = a.smooth / V                     # the uniform share every token gets on top
    cum = np.cumsum(sp, axis=1)

    toks = np.empty((S, L), dtype="<u4")
    toks[:, 0] = bos
    for t in range(1, L):
        prev = toks[:, t - 1].astype(np.int64)
        u = rng.random(S)
        pick = (u[:, None] >= cum[prev]).sum(1)          # index into successors, fan = "uniform tail"
        tail = rng.integers(0, V, size=S)
        toks[:, t] = np.where(pick < fan, succ[prev, np.minimum(pick, fan - 1)], tail)

    os.makedirs(a.out_dir, exist_ok=True)
    toks.tofile(os.path.join(a.out_dir, "tokens.u32"))
    files = {"tokens": "tokens.u32"}
    if K > 0:
        # per token: the K most probable next ids (successors by probability,
        # then the lowest other ids at the floor probability)
        order = np.argsort(-sp, axis=1, kind="stable")
        top_ids = np.empty((V, K), dtype=np.int64)
        top_lp = np.empty((V, K), dtype=np.float64)
        for v in range(V):
            ids = list(succ[v, order[v]])
            ps = list(sp[v, order[v]] + floor)           # a successor also gets the uniform share
            j = 0
            while len(ids) < K:
                if j not in ids[:fan]:
                    ids.append(j)
                    ps.append(floor)
                j += 1
            top_ids[v], top_lp[v] = ids[:K], np.log(ps[:K])
        prev = toks.astype(np.int64)
        top_ids[prev].astype("<u4").tofile(os.path.join(a.out_dir, "topk_ids.u32"))
        top_lp[prev].astype("<f2").tofile(os.path.join(a.out_dir, "topk_logp.f16"))
        files.update(topk_ids="topk_ids.u32", topk_logp="topk_logp.f16")
    man = {
        "format": "bild-align-corpus", "version": 1, "rows": S, "row_len": L, "tokens": S * L,
        "vocab_size": V, "bos_id": bos, "eos_id": eos, "vocab_fingerprint": f"{rng.integers(1 << 62):016x}",
        "tokenizer": {"path": os.path.abspath(a.tokenizer), "fnv1a64": fnv1a64(a.tokenizer)},
        "model": {"path": "synthetic-markov-chain", "fnv1a64": "0000000000000000", "dim": 0, "n_layers": 0,
                  "n_heads": 0, "n_kv_heads": 0, "hidden_dim": 0, "vocab_size": V, "dtype": "f32"},
        "settings": {"temperature": 1.0, "top_p": 1.0, "seed": a.seed, "prompts": None, "topk": K,
                     "threads": 1, "batch": 1},
        "files": files, "wall_s": 0.0, "tok_s": 0.0,
    }
    with open(os.path.join(a.out_dir, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
        f.write("\n")
    print(f"{a.out_dir}: {S} rows x {L} tokens, vocab {V}, top-{K}", file=sys.stderr)


if __name__ == "__main__":
    main()
