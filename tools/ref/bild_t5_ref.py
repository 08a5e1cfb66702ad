#!/usr/bin/python3
"""BiLD's faithful loop on a T5 / mT5 pair: goldens for tests/test_t5_bild.c.

The loop is tools/ref/bild_ref.py's `bild_faithful`, unchanged (a literal
transcription of docs/algorithm.md's "Faithful mode"); only its oracle and
stop set differ. For an encoder-decoder the "prompt" is the decoder's start
token, and the oracle's row(prefix) is the decoder's logits after that
decoder prefix, given the encoded source (tools/ref/t5_ref.py, float64, the
row rounded to float32 as the C engine produces it). Generation stops at
eos_token_id (T5 has no BOS). Fragile runs (a threshold or a greedy top-2
gap within 1e-4) are marked as bild_ref.py marks them.

  bild_t5_ref.py noisy LARGE_DIR SMALL_DIR [--noise 0.5] [--seed 3]
      the small model: the large model's weights plus Gaussian noise of
      noise x each tensor's standard deviation (same config), so that the
      pair agrees often but not always: fallbacks and rollbacks both happen
  bild_t5_ref.py golden LARGE_DIR SMALL_DIR --out FILE.json
      for each source of SOURCES and each (alpha_fb, alpha_rb) of the grid,
      max_small 10, N 40: the tokens and counters of the faithful loop, and
      the large model's greedy text
  bild_t5_ref.py cli LARGE_DIR SMALL_DIR --tok-golden GOLDEN.json --out FILE.json
      the same for a few source texts, tokenized by the Hugging Face
      tokenizers library (their ids taken from GOLDEN.json, the Unigram
      tokenizer goldens of tools/ref/make_unigram_goldens.sh): what
      `bild generate --source TEXT` must print (tests/test_t5_cli.sh)
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bild_ref as B  # noqa: E402
import t5_ref as T5R  # noqa: E402

SOURCES = [[5, 17, 200, 33, 91, 400, 7, 64, 300, 12, 88, 1], [9, 120, 77, 3, 250, 18, 460, 31, 1],
           [300, 301, 302, 44, 45, 46, 100, 1], [7, 1], [411, 12, 99, 250, 18, 3, 77, 64, 5, 5, 5, 1]]
ALPHA_FB = (0.3, 0.5, 0.7, 0.9)
ALPHA_RB = (1.0, 2.0, 3.0)
MAX_SMALL, N_NEW = 10, 40


class T5Oracle:
    """row(prefix): float32 logits after the decoder prefix; memoised."""

    def __init__(self, m, src):
        self.m, self.enc, self.memo, self.forwards = m, m.encode(src), {}, 0

    def row(self, prefix):
        key = tuple(prefix)
        if key not in self.memo:
            lg = self.m.logits(self.m.decode(list(prefix), self.m.new_cache(self.enc)))
            lg = lg.to(torch.float32).numpy()
            self.forwards += 1
            for t in range(len(prefix)):
                self.memo[key[:t + 1]] = lg[t].copy()
        return self.memo[key]


def noisy(large, small, noise, seed):
    cfg = T5R.read_config(large)
    w = T5R.read_safetensors(os.path.join(large, "model.safetensors"))
    rng = np.random.default_rng(seed)
    with open(os.path.join(large, "model.safetensors"), "rb") as f:
        (hl,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hl))
    dt = {"F32": "f32", "F16": "f16", "BF16": "bf16"}[next(v["dtype"] for k, v in header.items() if k != "__metadata__")]
    items = []
    for name, a in w.items():
        if name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            continue
        b = a + noise * float(a.std()) * rng.standard_normal(a.shape) if a.ndim > 1 else a.copy()
        items.append((name, b.astype(np.float32)))
    os.makedirs(small, exist_ok=True)
    shutil.copyfile(os.path.join(large, "config.json"), os.path.join(small, "config.json"))
    T5R.write_safetensors(os.path.join(small, "model.safetensors"), items, dt)
    print(f"wrote {small}: {len(items)} tensors, noise {noise} x std, seed {seed} ({cfg.get('model_type')})")


def golden(large, small, out):
    L, S = T5R.T5(*T5R.load(large)), T5R.T5(*T5R.load(small))
    eos = L.c["eos_token_id"]
    B.STOP = (eos,)                     # T5: EOS ends generation; there is no BOS
    start = [L.c["decoder_start_token_id"]]
    runs, greedy = [], []
    for si, src in enumerate(SOURCES):
        lo, so = T5Oracle(L, src), T5Oracle(S, src)
        g, gf = B.large_greedy(lo, start, N_NEW)
        greedy.append(dict(tokens=g, fragile=gf))
        for afb in ALPHA_FB:
            for arb in ALPHA_RB:
                r = B.bild_faithful(lo, so, start, afb, arb, MAX_SMALL, N_NEW)
                small_stop = r["stop"] == "eos" and r["origin_last_pass"] == "S"
                assert r["n_small_passes"] == r["small_tokens"] + r["rolled_back"] + r["fallbacks"] + small_stop, r
                assert r["n_large_passes"] == 1 + r["large_phases"] + r["rollbacks"] - r["ended_in_rollback"], r
                runs.append(dict(source_index=si, alpha_fb=afb, alpha_rb=arb, max_small=MAX_SMALL, n=N_NEW,
                                 **{k: r[k] for k in ("tokens", "n_large_passes", "n_small_passes", "fallbacks",
                                                      "rollbacks", "rolled_back", "small_tokens", "large_tokens",
                                                      "fragile", "stop")}))
        print(f"source {si}: {sum(r['rollbacks'] for r in runs if r['source_index'] == si)} rollbacks, "
              f"{sum(r['fallbacks'] for r in runs if r['source_index'] == si)} fallbacks, "
              f"{sum(r['fragile'] for r in runs if r['source_index'] == si)} fragile", file=sys.stderr)
    res = dict(settings=dict(large=large, small=small, mode="faithful", decoding="greedy", max_small=MAX_SMALL,
                             n=N_NEW, stop_tokens=[eos], decoder_start=start[0], fragile_eps=B.EPS_FRAGILE,
                             made_by="tools/ref/bild_t5_ref.py (bild_ref.bild_faithful on t5_ref.py oracles)"),
               sources=SOURCES, runs=runs, large_greedy=greedy)
    with open(out, "w") as f:
        json.dump(res, f, separators=(",", ":"))
    print(f"wrote {out}: {len(runs)} runs, {sum(r['fragile'] for r in runs)} fragile", file=sys.stderr)


CLI_GRID = ((0.5, 2.0), (0.9, 1.0), (0.7, 3.0))


def cli(large, small, tok_golden, out):
    """Faithful runs and the large model's greedy text for source texts."""
    L, S = T5R.T5(*T5R.load(large)), T5R.T5(*T5R.load(small))
    eos = L.c["eos_token_id"]
    B.STOP = (eos,)
    start = [L.c["decoder_start_token_id"]]
    cases = json.load(open(tok_golden))["cases"]
    # real sentences (WMT14 and IWSLT17 lines, one with NFKC characters), short enough to keep the file small
    texts = [c for c in cases if "text" in c and 8 <= len(c["ids"]) <= 40 and " " in c["text"].strip()]
    picked = [texts[0], texts[1], texts[len(texts) // 2], texts[-1]]
    res = []
    for c in picked:
        src = c["ids"]
        lo, so = T5Oracle(L, src), T5Oracle(S, src)
        g, gf = B.large_greedy(lo, start, N_NEW)
        runs = []
        for afb, arb in CLI_GRID:
            r = B.bild_faithful(lo, so, start, afb, arb, MAX_SMALL, N_NEW)
            runs.append(dict(alpha_fb=afb, alpha_rb=arb, **{k: r[k] for k in (
                "tokens", "n_large_passes", "n_small_passes", "fallbacks", "rollbacks", "rolled_back", "small_tokens",
                "large_tokens", "fragile", "stop")}))
        res.append(dict(text=c["text"], source_ids=src, large_greedy=g, large_greedy_fragile=gf, faithful=runs))
        print(f"{c['text'][:40]!r}: {len(src)} source tokens, {sum(r['rollbacks'] for r in runs)} rollbacks, "
              f"{sum(r['fallbacks'] for r in runs)} fallbacks", file=sys.stderr)
    with open(out, "w") as f:
        json.dump(dict(settings=dict(large=large, small=small, max_small=MAX_SMALL, n=N_NEW, tokenizer_golden=tok_golden,
                                     made_by="tools/ref/bild_t5_ref.py cli (bild_ref.bild_faithful on t5_ref.py "
                                             "oracles; source ids from the HF tokenizers library)"),
                       sources=res), f, ensure_ascii=False, separators=(",", ":"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("noisy")
    n.add_argument("large")
    n.add_argument("small")
    n.add_argument("--noise", type=float, default=0.5)
    n.add_argument("--seed", type=int, default=3)
    g = sub.add_parser("golden")
    g.add_argument("large")
    g.add_argument("small")
    g.add_argument("--out", required=True)
    c = sub.add_parser("cli")
    c.add_argument("large")
    c.add_argument("small")
    c.add_argument("--tok-golden", required=True)
    c.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.cmd == "noisy":
        noisy(a.large, a.small, a.noise, a.seed)
    elif a.cmd == "cli":
        cli(a.large, a.small, a.tok_golden, a.out)
    else:
        golden(a.large, a.small, a.out)


if __name__ == "__main__":
    main()
