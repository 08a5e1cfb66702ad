#!/usr/bin/python3
"""greedy_prompts.py - prompts for a greedy corpus, cut from sampled text.

usage: greedy_prompts.py --corpus DIR --tokenizer TOK.bin --out FILE
                         [--exclude FILE]... [--seed S]

A greedy corpus (`bild align-data -t 0 --prompts FILE`) needs many different
prompts: greedy decoding from the same prompt gives the same row. This reads
a short corpus sampled from the large model (`bild align-data -t 1
--row-len 40 --topk 0`), cuts each row after its first sentence (at token
5 or later; with probability 0.3, or when no sentence ends, after a random
3-20 tokens instead), decodes it with the llama2.c tokenizer and writes the
distinct prompts, one per line, in row order. A row's text stops at BOS or
EOS. Lines of the --exclude files (the evaluation prompts) are left out, so
no greedy row continues an evaluation prompt.
"""
import argparse
import array
import json
import os
import random
import struct
import sys


def read_vocab(path):
    pieces = []
    with open(path, "rb") as f:
        f.read(4)  # max_token_length
        while True:
            head = f.read(8)
            if len(head) < 8:
                break
            _, n = struct.unpack("<fi", head)
            pieces.append(f.read(n).decode("utf-8", "replace"))
    return pieces


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    m = json.load(open(os.path.join(a.corpus, "manifest.json")))
    vocab = read_vocab(a.tokenizer)
    if len(vocab) != m["vocab_size"]:
        sys.exit(f"greedy_prompts: {a.tokenizer}: {len(vocab)} pieces, the corpus has vocab_size {m['vocab_size']}")
    toks = array.array("I")
    toks.frombytes(open(os.path.join(a.corpus, m["files"]["tokens"]), "rb").read())
    L, rows = m["row_len"], m["rows"]
    stop = {m["bos_id"], m["eos_id"]}
    ends = {".", "!", "?", '."', '!"', '?"'}
    skip = set()
    for f in a.exclude:
        skip.update(line.strip() for line in open(f, encoding="utf-8"))
    rng = random.Random(a.seed)
    seen, out = set(), []
    for r in range(rows):
        row = []
        for t in toks[r * L + 1:(r + 1) * L]:  # position 0 is BOS
            if t in stop:
                break
            row.append(t)
        cut = next((i + 1 for i, t in enumerate(row) if i >= 5 and vocab[t].strip() in ends), None)
        if cut is None or rng.random() < 0.3:
            cut = rng.randint(3, 20)
        row = row[:cut]
        text = "".join(vocab[t] for t in row).strip()
        if len(row) < 3 or not text or "\n" in text or text in skip or text in seen:
            continue
        seen.add(text)
        out.append(text)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write("".join(s + "\n" for s in out))
    print(f"greedy_prompts: {a.out}: {len(out)} distinct prompts from {rows} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
