#!/usr/bin/python3
"""Greedy continuation with the PyTorch reference (hf_ref.py, float64 math)
of a Hugging Face directory, from the prompt ids of a `bild run --json`
result, compared with the engine's tokens in that result.

Used to tell where a bf16 model's greedy text departs from the f32 one
because of the rounded weights (the reference with the same weights departs
at the same token) rather than because of the engine.

usage: hf_greedy_ref.py DIR RUN.json [-n N]
prints one JSON line: {"n", "engine_vs_ref": "identical" | first differing index}
"""
import argparse, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
import torch
import hf_ref


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("run")
    ap.add_argument("-n", type=int, default=0, help="tokens (default: as many as the run has)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    j = json.load(open(a.run))
    n = a.n or len(j["tokens"])
    cfg, w = hf_ref.load(a.dir)
    ids, out = list(j["prompt_ids"]), []
    for _ in range(n):
        logits = hf_ref.forward(cfg, w, ids + out, torch.float64)
        out.append(int(np.argmax(logits[-1].numpy())))
    eng = j["tokens"][:n]
    diff = next((k for k, (x, y) in enumerate(zip(eng, out)) if x != y), None)
    print(json.dumps({"n": n, "engine_vs_ref": "identical" if diff is None and len(eng) == n else diff, "ref": out}))


if __name__ == "__main__":
    main()
