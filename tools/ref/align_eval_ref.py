#!/usr/bin/python3
"""align_eval_ref.py - an independent check of `bild align-eval`'s numbers.

The same teacher-forced evaluation written from its definition in
docs/align.md, with llama2c_ref.py's PyTorch forward pass and BPE encoder
(no C code): documents are the text between <|endoftext|> markers,
stripped, empty ones skipped; each is encoded with BOS and cut into windows
of at most CTX tokens overlapping by one; at every position but a window's
last, the two models' argmax agree or not, the small model's max probability
is compared with 0.6, and -log p of the text's next token is summed. Prints
the reference numbers beside the ones in a `bild align-eval --json` output.

usage:
  build/bild align-eval -S SMALL -L LARGE --text FILE --ctx 96 --json -q >bild.json
  /usr/bin/python3 tools/ref/align_eval_ref.py SMALL LARGE TOKENIZER FILE 96 bild.json
Slow (float32 forward passes of whole windows on the CPU): use a few stories.
"""
import json
import math
import sys

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
import llama2c_ref as R  # noqa: E402


def main():
    small, large, tok, text, ctx, bild_json = sys.argv[1:7]
    ctx = int(ctx)
    torch.set_num_threads(2)
    cl, wl = R.load_checkpoint(large)
    cs, ws = R.load_checkpoint(small)
    pieces, scores = R.load_tokenizer(tok, cl["vocab_size"])
    docs = [d.strip() for d in open(text, encoding="utf-8").read().split("<|endoftext|>") if d.strip()]
    n = agree = conf = conf_agree = 0
    nll_s = nll_l = 0.0
    for d in docs:
        ids = [R.BOS] + R.bpe_encode(d, pieces, scores)
        for start in range(0, max(len(ids) - 1, 0), ctx - 1):
            w = ids[start:start + ctx]
            x = torch.tensor(w)
            with torch.no_grad():
                ll = torch.log_softmax(R.forward(cl, wl, x).double(), -1)
                ls = torch.log_softmax(R.forward(cs, ws, x).double(), -1)
            for t in range(len(w) - 1):
                a = int(ll[t].argmax()) == int(ls[t].argmax())
                n += 1
                agree += a
                nll_l -= float(ll[t, w[t + 1]])
                nll_s -= float(ls[t, w[t + 1]])
                if math.exp(float(ls[t].max())) >= 0.6:
                    conf += 1
                    conf_agree += a
    j = json.load(open(bild_json))
    t6 = [t for t in j["thresholds"] if abs(t["threshold"] - 0.6) < 1e-9]
    rows = [("positions", n, j["positions"]), ("agreement", agree / n, j["agreement"]),
            ("small perplexity", math.exp(nll_s / n), j["small"]["perplexity"]),
            ("large perplexity", math.exp(nll_l / n), j["large"]["perplexity"]),
            ("confident (max p >= 0.6)", conf / n, t6[0]["confident"] if t6 else float("nan")),
            ("agreement when confident", conf_agree / max(conf, 1), t6[0]["agreement"] if t6 else float("nan"))]
    print("%-28s %12s %12s" % ("", "reference", "bild"))
    for name, ref, got in rows:
        print("%-28s %12.6g %12.6g" % (name, ref, got))


if __name__ == "__main__":
    main()
