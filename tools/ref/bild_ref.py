#!/usr/bin/python3
"""Independent reference of BiLD's *faithful mode* loop (docs/algorithm.md).

Writes tests/data/bild_faithful.json: for each prompt of tests/data/prompts20.txt
and each (alpha_fb, alpha_rb) in {0.3,0.5,0.7,0.9} x {1,2,3,5}, max_small = 10,
N = 64, greedy: the generated tokens and the counters of the faithful loop,
plus the large model's plain greedy text for each prompt.

The loop (`bild_faithful`) is a literal transcription of the "Faithful mode"
section of docs/algorithm.md. It never touches a KV cache: it only asks an
*oracle* for "the model's logits for the next token after this prefix". Pass
counting is bookkeeping in the loop, independent of how the oracle gets its
numbers. Two oracles give the same numbers:

  * NaiveOracle (--naive): llama2c_ref.forward over the whole prefix (no KV
    cache); every row of each forward is memoised under its prefix, which
    changes no value. Slow (minutes per prompt on 2 cores).
  * TrieOracle (default): a prefix trie. Each node holds the per-layer RoPE'd
    key/value vectors of its last position and its logits row; a new prefix
    is computed by a block forward of only its unseen tail over the keys and
    values gathered along its path. The layer maths are llama2c_ref's own
    helpers (rmsnorm, rope_interleaved) applied in the same order as
    llama2c_ref.forward. Each prompt's trie is checked against one full
    llama2c_ref.forward at the end (printed max |diff|), and --naive on a
    subset reproduces the same JSON runs (see README).

Numbers are float32 throughout (logits as the model produces them);
thresholds are evaluated in float64 from those float32 logits:
  max p = 1 / sum(exp(l - max l));   d = logsumexp(l) - l[y].
A run is "fragile" when any comparison it makes is within 1e-4 of its
threshold (|max p - alpha_fb| or |d - alpha_rb|), or when any greedy choice
it makes has its top-2 logits within 1e-4: the C engine may legitimately
decide the other way there.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama2c_ref as R  # noqa: E402

STOP = (1, 2)            # BOS and EOS end generation; never appended
EPS_FRAGILE = 1e-4
ALPHA_FB = (0.3, 0.5, 0.7, 0.9)
ALPHA_RB = (1, 2, 3, 5)
MAX_SMALL = 10
N_NEW = 64


# ----------------------------------------------------------------------------
# Oracles: logits row (float32 numpy, shape (V,)) for the token after `prefix`
# ----------------------------------------------------------------------------
class NaiveOracle:
    """Full-sequence llama2c_ref.forward; rows memoised by prefix."""

    def __init__(self, cfg, w):
        self.cfg, self.w, self.memo = cfg, w, {}
        self.forwards = 0

    def reset(self):
        self.memo = {}
        self.forwards = 0

    def row(self, prefix):
        key = tuple(prefix)
        if key not in self.memo:
            logits = R.forward(self.cfg, self.w, list(prefix)).numpy()
            self.forwards += 1
            for t in range(len(prefix)):
                self.memo[key[:t + 1]] = logits[t].copy()
        return self.memo[key]


class _Node:
    __slots__ = ("children", "k", "v", "logits")

    def __init__(self):
        self.children, self.k, self.v, self.logits = {}, None, None, None


@torch.no_grad()
def forward_block(cfg, w, past_k, past_v, tokens, start):
    """llama2c_ref.forward for positions start..start+T-1 given the RoPE'd keys
    and values of positions 0..start-1 (past_k/past_v: (n_layers, start, kvd)).
    Returns (logits (T, V), k (n_layers, T, kvd), v (n_layers, T, kvd))."""
    tokens = torch.tensor(np.asarray(tokens), dtype=torch.long)
    T = tokens.shape[0]
    S = start + T
    assert S <= cfg["seq_len"]
    H, KV, hd = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]
    pos = torch.arange(start, S)
    # row i (position start+i) may attend to key positions 0..start+i
    mask = torch.full((T, S), float("-inf"), dtype=w["tok_emb"].dtype).triu(start + 1)
    ks, vs = [], []
    x = w["tok_emb"][tokens]
    for l in range(cfg["n_layers"]):
        h = R.rmsnorm(x, w["rms_att"][l])
        q = (h @ w["wq"][l].T).view(T, H, hd)
        k = (h @ w["wk"][l].T).view(T, KV, hd)
        v = (h @ w["wv"][l].T).view(T, KV, hd)
        q = R.rope_interleaved(q, pos)
        k = R.rope_interleaved(k, pos)
        ks.append(k.reshape(T, KV * hd))
        vs.append(v.reshape(T, KV * hd))
        k_all = torch.cat((past_k[l].view(start, KV, hd), k), 0) if start else k
        v_all = torch.cat((past_v[l].view(start, KV, hd), v), 0) if start else v
        k_all = k_all.repeat_interleave(H // KV, dim=1)
        v_all = v_all.repeat_interleave(H // KV, dim=1)
        qh, kh, vh = (t.transpose(0, 1) for t in (q, k_all, v_all))   # (H, ., hd)
        att = (qh @ kh.transpose(1, 2)) / math.sqrt(hd) + mask
        att = torch.softmax(att, dim=-1)
        o = (att @ vh).transpose(0, 1).reshape(T, H * hd)
        x = x + o @ w["wo"][l].T
        h = R.rmsnorm(x, w["rms_ffn"][l])
        g = torch.nn.functional.silu(h @ w["w1"][l].T) * (h @ w["w3"][l].T)
        x = x + g @ w["w2"][l].T
    x = R.rmsnorm(x, w["rms_final"])
    return x @ w["wcls"].T, torch.stack(ks), torch.stack(vs)


class TrieOracle:
    """Prefix trie of per-position K/V and logits; see the module docstring."""

    def __init__(self, cfg, w):
        self.cfg, self.w = cfg, w
        self.forwards = 0
        self.reset()

    def reset(self):
        self.root = _Node()
        self.forwards = 0

    def row(self, prefix):
        node, path, i = self.root, [], 0
        while i < len(prefix) and prefix[i] in node.children:
            node = node.children[prefix[i]]
            path.append(node)
            i += 1
        if i < len(prefix):
            L = self.cfg["n_layers"]
            if path:
                pk = torch.stack([n.k for n in path], 1)    # (L, i, kvd)
                pv = torch.stack([n.v for n in path], 1)
            else:
                pk = pv = None
            logits, k, v = forward_block(self.cfg, self.w, pk, pv, prefix[i:], i)
            self.forwards += 1
            logits = logits.numpy()
            for j, tok in enumerate(prefix[i:]):
                child = _Node()
                child.k, child.v = k[:, j].clone(), v[:, j].clone()
                child.logits = logits[j].copy()
                node.children[tok] = child
                node = child
            assert L == k.shape[0]
        return node.logits


# ----------------------------------------------------------------------------
# Decisions (with fragility bookkeeping)
# ----------------------------------------------------------------------------
class Run:
    def __init__(self):
        self.fragile = False
        self.why = []

    def greedy(self, row, what):
        z = int(np.argmax(row))          # lowest id on ties
        top2 = np.partition(row, -2)[-2:]
        if float(top2[1]) - float(top2[0]) < EPS_FRAGILE:
            self.fragile = True
            self.why.append(f"{what}: top-2 gap {float(top2[1]) - float(top2[0]):.2e}")
        return z

    def max_prob(self, row, alpha, what):
        r = row.astype(np.float64)
        p = 1.0 / np.exp(r - r.max()).sum()
        if abs(p - alpha) < EPS_FRAGILE:
            self.fragile = True
            self.why.append(f"{what}: max p {p:.6f} vs alpha_fb {alpha}")
        return p

    def dist(self, row, y, alpha, what):
        r = row.astype(np.float64)
        m = r.max()
        d = m + math.log(np.exp(r - m).sum()) - r[y]
        if abs(d - alpha) < EPS_FRAGILE:
            self.fragile = True
            self.why.append(f"{what}: d {d:.6f} vs alpha_rb {alpha}")
        return d


# ----------------------------------------------------------------------------
# The faithful loop, literally docs/algorithm.md "Faithful mode"
# ----------------------------------------------------------------------------
def bild_faithful(L, S, prompt, alpha_fb, alpha_rb, max_small, N, trace=None):
    st = Run()
    seq = list(prompt)
    n_p = len(prompt)
    origin = []                        # 'L' / 'S' per generated token
    c = dict(n_large_passes=0, n_small_passes=0, fallbacks=0, rollbacks=0,
             rolled_back=0, large_phases=0)
    last = dict(p="L", rb=0)           # model of the last pass; 1 while a rollback's
                                       # token is appended but its extra step not run
    log = trace.append if trace is not None else (lambda s: None)

    def finish(stop):
        out = dict(tokens=seq[n_p:], stop=stop, **c)
        out["small_tokens"] = origin.count("S")
        out["large_tokens"] = origin.count("L")
        out["fragile"] = st.fragile
        out["fragile_why"] = st.why
        out["origin"] = "".join(origin)
        out["origin_last_pass"] = last["p"]
        out["ended_in_rollback"] = last["rb"]
        return out

    def append(tok, who):
        seq.append(tok)
        origin.append(who)
        log(f"  +{who} {tok} (n={len(seq) - n_p})")
        return len(seq) - n_p == N     # True: length limit reached

    # 1. Prompt: one large pass over seq[0:n_p], append its argmax.
    c["n_large_passes"] = 1
    z = st.greedy(L.row(seq), "prompt argmax")
    log(f"L pass #1 over prompt[0:{n_p}] -> {z}")
    if z in STOP:
        return finish("eos")
    if append(z, "L"):
        return finish("length")
    L_cached, S_cached = n_p, 0

    while True:
        # 2. Small phase.
        run = 0
        while True:
            if run == max_small:
                log(f"S run reached max_small={max_small}")
                break
            c["n_small_passes"] += 1
            last["p"] = "S"
            log(f"S pass #{c['n_small_passes']} over seq[{S_cached}:{len(seq)}]")
            S_cached = len(seq)
            row = S.row(seq)
            p = st.max_prob(row, alpha_fb, f"small pos {len(seq)}")
            if p < alpha_fb:
                c["fallbacks"] += 1
                log(f"  fallback (max p {p:.4f} < {alpha_fb})")
                break
            y = st.greedy(row, f"small pos {len(seq)}")
            if y in STOP:
                log(f"  small proposes stop {y} (max p {p:.4f})")
                return finish("eos")
            if append(y, "S"):
                return finish("length")
            run += 1

        # 3. Large phase.
        c["n_large_passes"] += 1
        c["large_phases"] += 1
        last["p"] = "L"
        chunk = seq[L_cached:]
        log(f"L pass #{c['n_large_passes']} over chunk seq[{L_cached}:{len(seq)}] = {chunk}")
        first_m, row_m = None, None
        for m in range(1, len(chunk)):
            row = L.row(seq[:L_cached + m])
            d = st.dist(row, chunk[m], alpha_rb, f"large check m={m} pos {L_cached + m}")
            if d > alpha_rb:
                first_m, row_m = m, row
                log(f"  first d > alpha_rb at m={m}: d={d:.4f}")
                break
        if first_m is not None:
            m = first_m
            z = st.greedy(row_m, f"large argmax at m={m}")
            if z != chunk[m]:
                c["rollbacks"] += 1
                c["rolled_back"] += len(chunk) - m
                cut = L_cached + m
                log(f"  ROLLBACK: argmax {z} != {chunk[m]}; removing {chunk[m:]}")
                del seq[cut:]
                del origin[cut - n_p:]
                S_cached = min(S_cached, cut)
                last["rb"] = 1
                if z in STOP:
                    return finish("eos")
                if append(z, "L"):
                    return finish("length")
                # one extra large step: a pass over z
                c["n_large_passes"] += 1
                last["rb"] = 0
                z2 = st.greedy(L.row(seq), "large extra step")
                log(f"L pass #{c['n_large_passes']} (extra step over {z}) -> {z2}")
                if z2 in STOP:
                    return finish("eos")
                if append(z2, "L"):
                    return finish("length")
                L_cached = len(seq) - 1
                continue
            log(f"  argmax at m={m} equals the small token: no rollback")
        z = st.greedy(L.row(seq), "large next token")
        if z in STOP:
            return finish("eos")
        if append(z, "L"):
            return finish("length")
        L_cached = len(seq) - 1


def large_greedy(L, prompt, N):
    st = Run()
    seq = list(prompt)
    for _ in range(N):
        z = st.greedy(L.row(seq), "greedy")
        if z in STOP:
            break
        seq.append(z)
    return seq[len(prompt):], st.fragile


# ----------------------------------------------------------------------------
def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.path.join(repo, "..", "shared"))
    ap.add_argument("--prompts", default=os.path.join(repo, "tests", "data", "prompts20.txt"))
    ap.add_argument("--out", default=os.path.join(repo, "tests", "data", "bild_faithful.json"))
    ap.add_argument("--only", help="comma-separated prompt indices to run (default all)")
    ap.add_argument("--naive", action="store_true", help="full-sequence forward oracle")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 measured 2.7x faster than 2 on the 2-core box)")
    ap.add_argument("--trace", help="print the trace of one run: PROMPT,ALPHA_FB,ALPHA_RB")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)   # llama2c_ref sets 1 at import

    t0 = time.time()
    mdir = os.path.join(a.shared, "models")
    large_path = os.path.join(mdir, "stories15M", "stories15M.bin")
    small_path = os.path.join(mdir, "stories15M-small", "small.bin")
    tok_path = os.path.join(mdir, "stories15M", "tokenizer.bin")
    cl, wl = R.load_checkpoint(large_path)
    cs, ws = R.load_checkpoint(small_path)
    assert cl["vocab_size"] == cs["vocab_size"] == 32000
    pieces, scores = R.load_tokenizer(tok_path, cl["vocab_size"])
    enc = [1] + R.bpe_encode("Once upon a time", pieces, scores)
    assert enc == [1, 9038, 2501, 263, 931], enc

    with open(a.prompts, encoding="utf-8") as f:
        lines = [ln.rstrip("\n") for ln in f if ln.strip()]
    prompts = [[1] + R.bpe_encode(ln, pieces, scores) for ln in lines]
    Oracle = NaiveOracle if a.naive else TrieOracle
    L, S = Oracle(cl, wl), Oracle(cs, ws)

    if a.trace:
        pi, afb, arb = a.trace.split(",")
        pi, afb, arb = int(pi), float(afb), float(arb)
        tr = []
        r = bild_faithful(L, S, prompts[pi], afb, arb, MAX_SMALL, N_NEW, trace=tr)
        print("\n".join(tr))
        print({k: v for k, v in r.items() if k not in ("tokens", "origin")})
        print("output (model:piece):")
        print(" ".join(f"{o}:{pieces[t].decode('utf-8', 'replace')!r}"
                       for o, t in zip(r["origin"], r["tokens"])))
        return

    only = None if not a.only else {int(x) for x in a.only.split(",")}
    runs, greedy_out, greedy_fragile = [], [], []
    checks = dict(n_L=0, ended_in_rollback=0)
    for pi, prompt in enumerate(prompts):
        if only is not None and pi not in only:
            continue
        tp = time.time()
        L.reset()
        S.reset()
        g, gf = large_greedy(L, prompt, N_NEW)
        greedy_out.append(g)
        greedy_fragile.append(gf)
        longest = prompt + g
        for afb in ALPHA_FB:
            for arb in ALPHA_RB:
                r = bild_faithful(L, S, prompt, afb, arb, MAX_SMALL, N_NEW)
                # consistency checks (independent ways to count the same things)
                assert r["small_tokens"] + r["large_tokens"] == len(r["tokens"])
                assert r["origin"].count("S") == r["small_tokens"]
                # every small pass falls back, appends a small token (kept or
                # later rolled back: only small tokens are rolled back), or
                # proposes a stop token
                small_stop = r["stop"] == "eos" and r["origin_last_pass"] == "S"
                assert r["n_small_passes"] == (r["small_tokens"] + r["rolled_back"]
                                               + r["fallbacks"] + small_stop), r
                # prompt pass + one pass per large phase + one extra step per
                # rollback, unless the run ended right after the rollback token
                nl = 1 + r["large_phases"] + r["rollbacks"] - r["ended_in_rollback"]
                assert r["n_large_passes"] == nl, r
                checks["n_L"] += 1
                checks["ended_in_rollback"] += r["ended_in_rollback"]
                runs.append(dict(prompt_index=pi, alpha_fb=afb, alpha_rb=arb,
                                 max_small=MAX_SMALL, n=N_NEW, **r))
                if len(r["tokens"]) > len(longest) - len(prompt):
                    longest = prompt + r["tokens"]
        # cross-check the oracle against one whole-sequence llama2c_ref.forward
        diffs = []
        for orc, (cfg, w) in ((L, (cl, wl)), (S, (cs, ws))):
            full = R.forward(cfg, w, longest).numpy()
            got = np.stack([orc.row(longest[:t + 1]) for t in range(len(longest))])
            diffs.append(float(np.abs(full - got).max()))
        assert max(diffs) < 1e-3, diffs
        print(f"prompt {pi:2d}: n_p={len(prompt):2d} {time.time() - tp:6.1f}s "
              f"forwards L={L.forwards} S={S.forwards} "
              f"oracle vs forward max|diff| L={diffs[0]:.1e} S={diffs[1]:.1e} "
              f"fragile={sum(r['fragile'] for r in runs if r['prompt_index'] == pi)}",
              file=sys.stderr)

    keys = ["prompt_index", "alpha_fb", "alpha_rb", "max_small", "n", "tokens",
            "n_large_passes", "n_small_passes", "fallbacks", "rollbacks",
            "rolled_back", "small_tokens", "large_tokens", "fragile", "stop"]
    settings = dict(
        large=os.path.relpath(large_path, a.shared), small=os.path.relpath(small_path, a.shared),
        tokenizer=os.path.relpath(tok_path, a.shared), prompts="tests/data/prompts20.txt",
        mode="faithful", decoding="greedy", alpha_fb=list(ALPHA_FB), alpha_rb=list(ALPHA_RB),
        max_small=MAX_SMALL, n=N_NEW, stop_tokens=list(STOP), fragile_eps=EPS_FRAGILE,
        note=("fragile: some threshold comparison or greedy top-2 gap within fragile_eps; "
              "large_tokens/small_tokens count tokens of the final output by the model that "
              "produced them; generated by tools/ref/bild_ref.py"))
    parts = ['{"settings": ' + json.dumps(settings) + ',\n"runs": [\n']
    parts.append(",\n".join(json.dumps({k: r[k] for k in keys}, separators=(",", ":"))
                            for r in runs))
    parts.append('\n],\n"large_greedy": [\n')
    parts.append(",\n".join(json.dumps(g, separators=(",", ":")) for g in greedy_out))
    parts.append('\n],\n"large_greedy_fragile": ' + json.dumps(greedy_fragile))
    parts.append(',\n"prompt_tokens": [\n')
    parts.append(",\n".join(json.dumps(p, separators=(",", ":"))
                            for i, p in enumerate(prompts) if only is None or i in only))
    parts.append("\n]}\n")
    with open(a.out, "w") as f:
        f.write("".join(parts))
    json.load(open(a.out))
    print(f"checks passed on {checks['n_L']} runs (N_L = 1 + large phases + rollbacks, "
          f"{checks['ended_in_rollback']} of them ending before a rollback's extra step; "
          f"N_S = small tokens + rolled back + fallbacks [+ small stop]; "
          f"small + large tokens = n)", file=sys.stderr)
    print(f"wrote {a.out}: {len(runs)} runs, {sum(r['fragile'] for r in runs)} fragile, "
          f"{time.time() - t0:.0f}s", file=sys.stderr)
    for r in runs:
        if r["fragile"]:
            print(f"  fragile p{r['prompt_index']} fb={r['alpha_fb']} rb={r['alpha_rb']}: "
                  f"{r['fragile_why']}", file=sys.stderr)


if __name__ == "__main__":
    main()
