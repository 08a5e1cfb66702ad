#!/usr/bin/python3
"""train_small.py - trains a small Llama-architecture model on an alignment
corpus written by `bild align-data` and exports it for bild.

The model is llama2.c's architecture exactly as model/llama2c.c and
tools/ref/llama2c_ref.py compute it: RMSNorm (eps 1e-5), RoPE on interleaved
pairs (2i, 2i+1) with theta 10000, grouped-query attention, SwiGLU feed-forward,
and the classifier tied to the token embedding, so that the small model has
the large model's exact vocabulary (the corpus manifest's tokenizer, checked
by its FNV-1a 64 and piece count).

Loss per position t of a row (next token y = tokens[t+1], the large model's
top-K ids k_1..k_K and log-probabilities l_1..l_K at t):
    loss = (1 - alpha) * (-log q(y)) + alpha * sum_k p_k * (-log q(k_k)),
    p_k = exp(l_k) / sum_j exp(l_j)
q is the student's softmax over the whole vocabulary. The teacher's top-K
is renormalised over the K ids (the mass outside the top-K, usually a few
percent, is dropped rather than put on the hard label): the distillation
term is then a proper cross-entropy against a distribution, and the hard
label keeps its own weight 1 - alpha. The last position of a row has no next
token in the row and is not trained on. The head's softmax gradient is
computed in one fused step (SparseHead) that keeps a single (rows, vocab)
buffer, which is what bounds memory at vocabulary 32000. The matrix products
run in bf16 (autocast; f32 weights, optimizer and evaluation) where the CPU
has bf16 instructions (--dtype): on the AMX machines here that is 4-6x the
f32 speed.

Training: AdamW (betas 0.9/0.95, weight decay on matrices only), linear
warm-up then a cosine from lr to lr/10, gradient clipping at 1.0. Batches are
drawn from a per-epoch permutation of the training windows that is a pure
function of (seed, epoch), so a resumed run draws the same batches as an
uninterrupted one and ends with the same weights (same thread count).

Export: OUT/model.bin (llama2.c version-0 checkpoint, shared classifier),
OUT/tokenizer.bin, OUT/hf/ (tools/llama2c_to_hf.py --verify) and
OUT/manifest.json; the exported logits are checked against
tools/ref/llama2c_ref.py. Usage and the recipe: tools/align/README.md.
"""
import argparse
import hashlib
import json
import math
import os
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PROG = "train_small"
EXIT_RUNTIME, EXIT_USAGE, EXIT_INPUT = 1, 2, 3
RMS_EPS, ROPE_THETA = 1e-5, 10000.0
CORPUS_FORMAT, CORPUS_VERSION = "bild-align-corpus", 1
FNV_OFFSET, FNV_PRIME, MASK64 = 0xcbf29ce484222325, 0x100000001b3, (1 << 64) - 1
SCAN_CHUNK = 1 << 24  # elements per pass when checking the corpus files


def refuse(code, msg):
    """One line on stderr naming what is wrong, then exit with code."""
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(code)


def say(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# Tokenizer and corpus checks
# ----------------------------------------------------------------------------
def fnv1a64(path):
    """FNV-1a 64 over a file's bytes, as 16 lowercase hex digits."""
    h = FNV_OFFSET
    with open(path, "rb") as f:
        for b in f.read():
            h = ((h ^ b) * FNV_PRIME) & MASK64
    return f"{h:016x}"


def tokenizer_pieces(path):
    """Number of pieces in a llama2.c tokenizer.bin (int32 max_token_length,
    then per piece f32 score, int32 length, bytes); refuses a malformed file."""
    try:
        raw = open(path, "rb").read()
    except OSError as e:
        refuse(EXIT_INPUT, f"{path}: cannot read the tokenizer ({e.strerror})")
    if raw[:1] == b"{":
        refuse(EXIT_INPUT, f"{path}: a tokenizer.json; the exported llama2.c checkpoint needs a llama2.c "
               "tokenizer.bin (corpora from Hugging Face large models are not supported yet)")
    if len(raw) < 4:
        refuse(EXIT_INPUT, f"{path}: too short for a tokenizer.bin")
    off, n = 4, 0
    while off < len(raw):
        if off + 8 > len(raw):
            refuse(EXIT_INPUT, f"{path}: truncated in the header of piece {n}")
        _, ln = struct.unpack_from("<fi", raw, off)
        off += 8
        if ln < 0 or off + ln > len(raw):
            refuse(EXIT_INPUT, f"{path}: piece {n} has length {ln}, past the end of the file")
        off += ln
        n += 1
    return n


def _field(m, key, kind, where, check=None, what=None):
    """m[key] of type kind (bool never counts as int), satisfying check."""
    if key not in m:
        refuse(EXIT_INPUT, f"{where}: no \"{key}\"")
    v = m[key]
    ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
    if kind is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    if not ok or (check is not None and not check(v)):
        refuse(EXIT_INPUT, f"{where}: \"{key}\" is {json.dumps(v)}, want {what or kind.__name__}")
    return v


def _is_hex16(s):
    return len(s) == 16 and all(c in "0123456789abcdef" for c in s)


class Corpus:
    """A checked, memory-mapped corpus directory.
    tokens (S, L) uint32; topk_ids (S, L, K) uint32 and topk_logp (S, L, K)
    float16 when K > 0, else None. All borrowed views of the mapped files."""

    def __init__(self, path, scan=True):
        self.dir = path
        mpath = os.path.join(path, "manifest.json")
        try:
            with open(mpath, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            refuse(EXIT_INPUT, f"{mpath}: missing (is {path} a corpus written by bild align-data?)")
        except OSError as e:
            refuse(EXIT_INPUT, f"{mpath}: cannot read ({e.strerror})")
        try:
            m = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            refuse(EXIT_INPUT, f"{mpath}: corrupt JSON ({e})")
        if not isinstance(m, dict):
            refuse(EXIT_INPUT, f"{mpath}: corrupt manifest (not a JSON object)")
        self.manifest = m
        self.manifest_sha256 = hashlib.sha256(raw).hexdigest()
        fmt = m.get("format")
        if fmt != CORPUS_FORMAT:
            refuse(EXIT_INPUT, f"{mpath}: format {json.dumps(fmt)}, want \"{CORPUS_FORMAT}\"")
        ver = m.get("version")
        if ver != CORPUS_VERSION:
            refuse(EXIT_INPUT, f"{mpath}: version {json.dumps(ver)}, this reader knows version {CORPUS_VERSION}")
        pos = lambda v: v > 0  # noqa: E731
        S = _field(m, "rows", int, mpath, pos, "a positive integer")
        L = _field(m, "row_len", int, mpath, lambda v: v >= 2, "an integer >= 2")
        _field(m, "tokens", int, mpath, lambda v: v == S * L, f"rows * row_len = {S * L}")
        V = _field(m, "vocab_size", int, mpath, pos, "a positive integer")
        self.bos = _field(m, "bos_id", int, mpath, lambda v: 0 <= v < V, f"an id below vocab_size {V}")
        self.eos = _field(m, "eos_id", int, mpath, lambda v: 0 <= v < V, f"an id below vocab_size {V}")
        _field(m, "vocab_fingerprint", str, mpath, _is_hex16, "16 hex digits")
        tok = _field(m, "tokenizer", dict, mpath, what="an object")
        _field(tok, "fnv1a64", str, mpath + " tokenizer", _is_hex16, "16 lowercase hex digits")
        model = _field(m, "model", dict, mpath, what="an object")
        _field(model, "fnv1a64", str, mpath + " model", _is_hex16, "16 lowercase hex digits")
        if "vocab_size" in model:
            _field(model, "vocab_size", int, mpath + " model", lambda v: v == V, f"the corpus vocab_size {V}")
        settings = _field(m, "settings", dict, mpath, what="an object")
        K = _field(settings, "topk", int, mpath + " settings", lambda v: v >= 0, "an integer >= 0")
        files = _field(m, "files", dict, mpath, what="an object")
        want = ["tokens"] + (["topk_ids", "topk_logp"] if K > 0 else [])
        for key in ("topk_ids", "topk_logp"):
            if K == 0 and key in files:
                refuse(EXIT_INPUT, f"{mpath}: files names \"{key}\" but settings.topk is 0")
        names = {}
        for key in want:
            name = _field(files, key, str, mpath + " files", lambda v: v and os.path.basename(v) == v
                          and v not in (".", ".."), "a file name in the corpus folder")
            names[key] = os.path.join(path, name)
        self.rows, self.row_len, self.vocab_size, self.topk = S, L, V, K
        sizes = {"tokens": S * L * 4, "topk_ids": S * L * K * 4, "topk_logp": S * L * K * 2}
        for key, fpath in names.items():
            try:
                have = os.path.getsize(fpath)
            except OSError:
                refuse(EXIT_INPUT, f"{fpath}: missing (the manifest names it)")
            if have != sizes[key]:
                refuse(EXIT_INPUT, f"{fpath}: {have} bytes, the manifest implies {sizes[key]} "
                       f"({'truncated' if have < sizes[key] else 'too long'})")
        self.tokens = np.memmap(names["tokens"], dtype="<u4", mode="r", shape=(S, L))
        self.topk_ids = self.topk_logp = None
        if K > 0:
            self.topk_ids = np.memmap(names["topk_ids"], dtype="<u4", mode="r", shape=(S, L, K))
            self.topk_logp = np.memmap(names["topk_logp"], dtype="<f2", mode="r", shape=(S, L, K))
        self.paths = names
        if scan:
            self._scan()

    def _scan(self):
        """Every id below vocab_size, every row starting with BOS, top-K
        log-probabilities not NaN or +inf and the most probable one finite."""
        V = self.vocab_size
        first = np.asarray(self.tokens[:, 0])
        bad = np.flatnonzero(first != self.bos)
        if bad.size:
            refuse(EXIT_INPUT, f"{self.paths['tokens']}: row {bad[0]} starts with {first[bad[0]]}, "
                   f"not BOS {self.bos}")
        for key, arr in (("tokens", self.tokens), ("topk_ids", self.topk_ids)):
            if arr is None:
                continue
            flat = arr.reshape(-1)
            for s in range(0, flat.size, SCAN_CHUNK):
                c = np.asarray(flat[s:s + SCAN_CHUNK])
                if c.max() >= V:
                    i = s + int(np.argmax(c >= V))
                    where = np.unravel_index(i, arr.shape)
                    refuse(EXIT_INPUT, f"{self.paths[key]}: id {flat[i]} at {tuple(int(x) for x in where)} "
                           f">= vocab_size {V}")
        if self.topk_logp is not None:
            K = self.topk
            flat = self.topk_logp.reshape(-1)
            for s in range(0, flat.size, SCAN_CHUNK - SCAN_CHUNK % K):
                c = np.asarray(flat[s:s + SCAN_CHUNK - SCAN_CHUNK % K]).astype(np.float32)
                if np.isnan(c).any() or (c == np.inf).any() or not np.isfinite(c[::K]).all():
                    refuse(EXIT_INPUT, f"{self.paths['topk_logp']}: NaN or infinite log-probabilities "
                           f"near element {s}")


def check_tokenizer(tok_path, corpus_manifest, where):
    """The tokenizer file must be the one the corpus was made with."""
    if not os.path.isfile(tok_path):
        refuse(EXIT_INPUT, f"{tok_path}: no such tokenizer file")
    want = corpus_manifest["tokenizer"]["fnv1a64"]
    have = fnv1a64(tok_path)
    if have != want:
        refuse(EXIT_INPUT, f"{tok_path}: corpus from a different tokenizer (FNV-1a 64 {have}, "
               f"{where} says {want})")
    n = tokenizer_pieces(tok_path)
    if n != corpus_manifest["vocab_size"]:
        refuse(EXIT_INPUT, f"{tok_path}: {n} pieces, {where} has vocab_size {corpus_manifest['vocab_size']}")


# ----------------------------------------------------------------------------
# Model (llama2.c architecture)
# ----------------------------------------------------------------------------
def default_hidden_dim(dim, multiple_of=32):
    """llama2.c model.py's rule: 2/3 of 4*dim, rounded up to multiple_of."""
    h = int(2 * (4 * dim) / 3)
    return multiple_of * ((h + multiple_of - 1) // multiple_of)


def rope_tables(head_dim, seq_len):
    """cos and sin (seq_len, head_dim/2) in float32, computed as llama2.c's
    model.py precompute_freqs_cis does (these are also the legacy
    freq_cis_real / freq_cis_imag tables of the exported checkpoint)."""
    freqs = 1.0 / (ROPE_THETA ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    t = torch.arange(seq_len, device=freqs.device)
    freqs = torch.outer(t, freqs).float()
    return torch.cos(freqs), torch.sin(freqs)


def rmsnorm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS) * w


def rope(x, cos, sin):
    """x (B, T, H, hd): rotate the interleaved pairs (2i, 2i+1); cos, sin (T, hd/2)."""
    xr, xi = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)  # (B, T, H, hd/2) each
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((xr * c - xi * s, xr * s + xi * c), dim=-1).flatten(3)


# Parameters in llama2.c checkpoint order, stacked over layers (the names are
# the export's; shapes in Llama.__init__).
PARAM_ORDER = ["tok_emb", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final"]


class Llama(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = dict(cfg)
        d, hd, L = cfg["dim"], cfg["dim"] // cfg["n_heads"], cfg["n_layers"]
        kvd, hid, V = cfg["n_kv_heads"] * hd, cfg["hidden_dim"], cfg["vocab_size"]
        P = lambda *s: torch.nn.Parameter(torch.empty(*s))  # noqa: E731
        self.tok_emb = P(V, d)           # (vocab, dim), also the classifier
        self.rms_att = P(L, d)           # (L, dim)
        self.wq = P(L, d, d)             # (L, n_heads*hd, dim)
        self.wk = P(L, kvd, d)           # (L, n_kv_heads*hd, dim)
        self.wv = P(L, kvd, d)           # (L, n_kv_heads*hd, dim)
        self.wo = P(L, d, d)             # (L, dim, n_heads*hd)
        self.rms_ffn = P(L, d)           # (L, dim)
        self.w1 = P(L, hid, d)           # (L, hidden, dim) gate
        self.w2 = P(L, d, hid)           # (L, dim, hidden) down
        self.w3 = P(L, hid, d)           # (L, hidden, dim) up
        self.rms_final = P(d)            # (dim,)
        cos, sin = rope_tables(hd, cfg["seq_len"])
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def init_weights(self):
        """llama2.c model.py: N(0, 0.02), the residual projections (wo, w3)
        scaled by 1/sqrt(2 * n_layers), norms at 1. Uses the torch RNG."""
        with torch.no_grad():
            for name in PARAM_ORDER:
                p = getattr(self, name)
                if name.startswith("rms"):
                    p.fill_(1.0)
                else:
                    std = 0.02 / math.sqrt(2 * self.cfg["n_layers"]) if name in ("wo", "w3") else 0.02
                    p.normal_(0.0, std)

    def hidden(self, tokens):
        """tokens (B, T) int64 -> final normalised hidden states (B, T, dim)."""
        B, T = tokens.shape
        H, KV = self.cfg["n_heads"], self.cfg["n_kv_heads"]
        hd = self.cfg["dim"] // H
        cos, sin = self.cos[:T], self.sin[:T]
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = F.embedding(tokens, self.tok_emb)
        for l in range(self.cfg["n_layers"]):
            h = rmsnorm(x, self.rms_att[l])
            q = rope(F.linear(h, self.wq[l]).view(B, T, H, hd), cos, sin)
            k = rope(F.linear(h, self.wk[l]).view(B, T, KV, hd), cos, sin)
            v = F.linear(h, self.wv[l]).view(B, T, KV, hd)
            if KV != H:  # query head j reads kv head j // (H / KV)
                k = k.repeat_interleave(H // KV, dim=2)
                v = v.repeat_interleave(H // KV, dim=2)
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
            att = torch.softmax(q @ k.transpose(-2, -1) * (1.0 / math.sqrt(hd)) + mask, dim=-1)
            o = (att @ v).transpose(1, 2).reshape(B, T, H * hd)
            x = x + F.linear(o, self.wo[l])
            h = rmsnorm(x, self.rms_ffn[l])
            x = x + F.linear(F.silu(F.linear(h, self.w1[l])) * F.linear(h, self.w3[l]), self.w2[l])
        return rmsnorm(x, self.rms_final)

    def forward(self, tokens):
        """tokens (B, T) -> logits (B, T, vocab)."""
        return self.hidden(tokens) @ self.tok_emb.T


def head_nll(hc, ec, idx):
    """-log q of chosen ids: hc (N, dim), ec (V, dim) in one dtype, idx (N, J).
    Returns nll (N, J) f32, buf (N, V) = exp(logits - rowmax) in hc's dtype
    (its argmax is the logits' argmax) and s (N, 1) f32 = buf's row sums.
    One (N, V) buffer holds the logits, then their exponentials in place."""
    buf = hc @ ec.T                                # (N, V) logits
    picked = buf.gather(1, idx).float()            # (N, J)
    m = buf.max(dim=-1, keepdim=True).values       # (N, 1)
    buf.sub_(m).exp_()
    s = buf.sum(dim=-1, keepdim=True).float()      # (N, 1)
    return (m.float() + s.log()) - picked, buf, s


class SparseHead(torch.autograd.Function):
    """head_nll with its gradient, the matrix products in dtype dt (f32 or
    bf16; results f32). The backward turns the kept exponentials into the
    logits' gradient in place, sum_j g[n, j] * (softmax_n - onehot(idx[n, j])),
    so that one (N, V) buffer is all the head needs."""

    @staticmethod
    def forward(ctx, h, emb, idx, dt):
        hc, ec = h.to(dt), emb.to(dt)
        nll, buf, s = head_nll(hc, ec, idx)
        ctx.save_for_backward(hc, ec, idx, s)
        ctx.buf = buf
        return nll

    @staticmethod
    def backward(ctx, g):
        hc, ec, idx, s = ctx.saved_tensors
        G, ctx.buf = ctx.buf, None
        G.mul_((g.sum(1, keepdim=True) / s).to(G.dtype))   # softmax * sum_j g
        G.scatter_add_(1, idx, (-g).to(G.dtype))
        return (G @ ec).float(), (G.T @ hc).float(), None, None


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------
class Windows:
    """Training windows: row r of the corpus gives L // T windows of T input
    tokens (T = min(seq_len, row_len)); window w starts at w*T. Targets are
    the next tokens; the row's last position has none and is masked (-1)."""

    def __init__(self, corpus, rows, T):
        self.c, self.rows, self.T = corpus, np.asarray(rows), T
        self.per_row = corpus.row_len // T
        self.n = len(self.rows) * self.per_row

    def batch(self, idx):
        """idx (B,) window numbers -> x (B, T) int64, y (B, T) int64 (-1 =
        no target), topk ids (B, T, K) int64 and log-probs (B, T, K) f32 (None
        when the corpus has no top-K)."""
        c, T, B = self.c, self.T, len(idx)
        K = c.topk
        x = np.empty((B, T), np.int64)
        y = np.full((B, T), -1, np.int64)
        ti = np.empty((B, T, K), np.int64) if K else None
        tl = np.empty((B, T, K), np.float32) if K else None
        for i, w in enumerate(idx):
            r = self.rows[w // self.per_row]
            s = (w % self.per_row) * T
            seg = np.asarray(c.tokens[r, s:s + T + 1])
            x[i] = seg[:T]
            y[i, :len(seg) - 1] = seg[1:]
            if K:
                ti[i] = c.topk_ids[r, s:s + T]
                tl[i] = c.topk_logp[r, s:s + T]
        t = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
        return t(x), t(y), t(ti), t(tl)


class Sampler:
    """The window numbers of step s: batch-sized slices of a concatenation of
    per-epoch permutations, each a pure function of (seed, epoch)."""

    def __init__(self, n, batch, seed):
        self.n, self.batch, self.seed = n, batch, seed
        self._epoch, self._perm = -1, None

    def perm(self, e):
        if e != self._epoch:
            self._epoch, self._perm = e, np.random.default_rng([self.seed, e]).permutation(self.n)
        return self._perm

    def indices(self, step):
        out, pos = [], step * self.batch
        while len(out) < self.batch:
            e, off = divmod(pos, self.n)
            take = self.perm(e)[off:off + self.batch - len(out)]
            out.extend(take.tolist())
            pos += len(take)
        return out


def targets(y, ti, tl, alpha):
    """Sparse targets per position: ids (B*T, 1+K) = [next token, top-K] and
    weights (B*T, 1+K) = [(1-alpha), alpha * p_k] (zero where y = -1);
    p_k is the teacher's top-K renormalised over the K."""
    valid = (y >= 0).reshape(-1, 1).float()
    ids = y.clamp(min=0).reshape(-1, 1)
    w = valid * (1.0 - alpha)
    if alpha > 0:
        K = ti.shape[-1]
        p = torch.softmax(tl.reshape(-1, K), dim=-1)
        ids = torch.cat([ids, ti.reshape(-1, K)], dim=1)
        w = torch.cat([w, valid * alpha * p], dim=1)
    return ids, w


# ----------------------------------------------------------------------------
# Schedule, checkpoints, logs
# ----------------------------------------------------------------------------
def lr_at(step, a):
    """Linear warm-up over a.warmup steps, then a cosine from lr to lr/10 at the last step."""
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    span = max(1, a.steps - a.warmup)
    ratio = min(1.0, (step - a.warmup) / span)
    lo = a.lr / 10
    return lo + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (a.lr - lo)


# Arguments that may differ between a run and its --resume: they do not change
# the trajectory (where the files are, when to stop, how often to log). The
# corpus is compared by its manifest, the tokenizer by its hash.
NOT_TRAJECTORY = {"corpus", "tokenizer", "out", "resume", "export_only", "time_budget", "stop_at_step",
                  "threads", "ckpt_every", "log_every", "eval_every", "eval_rows", "no_hf"}


def save_atomic(obj, path):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_atomic(path, data, mode="wb"):
    tmp = path + ".tmp"
    with open(tmp, mode) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class JsonLog:
    """OUT/log.jsonl: one object per line ("train" and "eval" records)."""

    def __init__(self, path, keep_until=None):
        self.path = path
        if keep_until is not None and os.path.exists(path):
            # a resumed run: drop what an interrupted run logged after its checkpoint
            keep = [ln for ln in open(path) if ln.strip() and json.loads(ln).get("step", 0) <= keep_until]
            write_atomic(path, "".join(keep), "w")
        elif keep_until is None:
            open(path, "w").close()

    def write(self, rec):
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")


def fmt_s(s):
    s = int(s)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# ----------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model, windows, alpha, micro, head):
    """The f32 model over all windows of the held-out rows given: mean
    combined loss, CE, distillation term, next-token accuracy and agreement
    of the student's argmax with the teacher's top-1 (None without top-K).
    With a draft-vocabulary head, argmax and softmax are over the head's ids
    (as bild runs the model); a target outside the head counts as a miss and
    adds nothing to CE or the distillation term."""
    tot = dict(ce=0.0, kd=0.0, acc=0, agree=0, n=0)
    for s in range(0, windows.n, micro):
        x, y, ti, tl = windows.batch(list(range(s, min(s + micro, windows.n))))
        valid = (y >= 0).reshape(-1)
        ids, _ = targets(y, ti, tl, 0.0)
        if ti is not None:
            ids = torch.cat([ids, ti.reshape(-1, ti.shape[-1])], dim=1)
        pos, _, inside = head.map(ids)
        nll, buf, _ = head_nll(model.hidden(x).reshape(-1, model.cfg["dim"]), head.emb(model.tok_emb), pos)
        nll = torch.where(inside, nll, torch.zeros_like(nll))[valid]
        am = head.full(buf.argmax(-1))[valid]
        tot["n"] += int(valid.sum())
        tot["ce"] += float(nll[:, 0].sum())
        tot["acc"] += int((am == y.reshape(-1)[valid]).sum())
        if ti is not None:
            K = ti.shape[-1]
            p = torch.softmax(tl.reshape(-1, K)[valid], dim=-1)
            tot["kd"] += float((p * nll[:, 1:]).sum())
            tot["agree"] += int((am == ti.reshape(-1, K)[valid][:, 0]).sum())
    N = max(1, tot["n"])
    has_k = windows.c.topk > 0
    ce, kd = tot["ce"] / N, (tot["kd"] / N if has_k else None)
    return dict(val_loss=(1 - alpha) * ce + alpha * (kd or 0.0), val_ce=ce, val_kd=kd,
                val_acc=tot["acc"] / N, val_agree=tot["agree"] / N if has_k else None, val_positions=tot["n"])


# ----------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------
def write_llama2c(model, path):
    """llama2.c version-0 checkpoint: 7 int32 header (vocab_size positive =
    shared classifier), the f32 tensors in PARAM_ORDER, then freq_cis_real and
    freq_cis_imag (seq_len, head_dim/2)."""
    c = model.cfg
    hdr = struct.pack("<7i", c["dim"], c["hidden_dim"], c["n_layers"], c["n_heads"], c["n_kv_heads"],
                      c["vocab_size"], c["seq_len"])
    parts = [hdr]
    for name in PARAM_ORDER:
        parts.append(getattr(model, name).detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes())
    cos, sin = rope_tables(c["dim"] // c["n_heads"], c["seq_len"])
    parts += [cos.numpy().astype("<f4").tobytes(), sin.numpy().astype("<f4").tobytes()]
    write_atomic(path, b"".join(parts))


def export_logit_check(model, bin_path, n_tokens=16, seed=0):
    """Max |logits| difference over n_tokens between this torch model and
    tools/ref/llama2c_ref.py reading the exported checkpoint."""
    sys.path.insert(0, os.path.join(ROOT, "tools", "ref"))
    threads = torch.get_num_threads()
    import llama2c_ref  # noqa: E402  (sets torch to 1 thread on import)
    torch.set_num_threads(threads)
    cfg, w = llama2c_ref.load_checkpoint(bin_path)
    V = model.cfg["vocab_size"]
    n_tokens = min(n_tokens, model.cfg["seq_len"])
    toks = [1] + np.random.default_rng(seed).integers(3, V, size=n_tokens - 1).tolist()
    ref = llama2c_ref.forward(cfg, w, toks)
    with torch.no_grad():
        mine = model(torch.tensor([toks]))[0]
    return float((mine - ref).abs().max()), int((mine.argmax(-1) == ref.argmax(-1)).sum()), n_tokens


def export(out, model, st):
    """Writes model.bin, tokenizer.bin, hf/ and manifest.json under out."""
    t0 = time.time()
    bin_path = os.path.join(out, "model.bin")
    write_llama2c(model, bin_path)
    tok_src = st["tokenizer_path"]
    check_tokenizer(tok_src, st["corpus_manifest"], "the checkpoint's corpus manifest")
    tok_dst = os.path.join(out, "tokenizer.bin")
    shutil.copyfile(tok_src, tok_dst + ".tmp")
    os.replace(tok_dst + ".tmp", tok_dst)
    diff, agree, n = export_logit_check(model, bin_path)
    if diff > 1e-3:
        refuse(EXIT_RUNTIME, f"{bin_path}: exported logits differ from the torch model by {diff:.3g} "
               "(llama2c_ref.py): export is wrong")
    say(f"export: {bin_path}: logits vs tools/ref/llama2c_ref.py over {n} tokens: max |diff| {diff:.3g}, "
        f"argmax agrees {agree}/{n}")
    hf = os.path.join(out, "hf")
    hf_log = None
    if not st["args"].get("no_hf"):
        if os.path.isdir(hf):
            shutil.rmtree(hf)
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "llama2c_to_hf.py"), bin_path, hf,
                            "--tokenizer", tok_dst, "--verify"], capture_output=True, text=True)
        hf_log = (r.stdout + r.stderr).strip().splitlines()
        if r.returncode != 0:
            refuse(EXIT_RUNTIME, f"{hf}: tools/llama2c_to_hf.py failed: {' | '.join(hf_log[-3:])}")
        say(f"export: {hf}: {hf_log[-1] if hf_log else 'written'}")
    c = model.cfg
    n_params = sum(p.numel() for p in model.parameters())
    cm = st["corpus_manifest"]
    ev = st.get("last_eval") or {}
    recent = st.get("recent_losses") or []
    man = {
        "format": "bild-small-model", "version": 1,
        "architecture": dict(c, family="llama2.c", head_dim=c["dim"] // c["n_heads"], shared_classifier=True,
                             norm_eps=RMS_EPS, rope_theta=ROPE_THETA, rope="interleaved pairs (2i, 2i+1)"),
        "params": n_params, "non_embedding_params": n_params - model.tok_emb.numel(),
        "corpus": {"dir": st["corpus_dir"], "manifest_sha256": st["corpus_sha256"], "rows": cm["rows"],
                   "row_len": cm["row_len"], "tokens": cm["tokens"], "topk": cm["settings"]["topk"],
                   "vocab_fingerprint": cm["vocab_fingerprint"],
                   "tokenizer_fnv1a64": cm["tokenizer"]["fnv1a64"], "model_fnv1a64": cm["model"]["fnv1a64"],
                   "model_path": cm["model"].get("path"), "settings": cm["settings"]},
        "commands": st["commands"], "seed": st["args"]["seed"], "steps": st["step"],
        "planned_steps": st["args"]["steps"], "stopped": st.get("stopped", "completed"),
        "tokens_seen": st["tokens_seen"], "wall_s": round(st["wall_s"], 3),
        "training": {k: st["args"].get(k) for k in ("lr", "batch", "micro_batch", "warmup", "weight_decay", "dtype",
                                                    "distill", "seq_len_train", "train_rows", "val_rows", "init",
                                                    "init_layers", "head_vocab", "head_n")},
        "final_train_loss": sum(recent) / len(recent) if recent else None,
        "final_val_loss": ev.get("val_loss"), "final_val_ce": ev.get("val_ce"), "val_kd": ev.get("val_kd"),
        "val_agreement": ev.get("val_agree"), "val_next_token_acc": ev.get("val_acc"),
        "val_eval_step": ev.get("step"), "val_positions": ev.get("val_positions"),
        "export_check": {"reference": "tools/ref/llama2c_ref.py", "tokens": n, "max_abs_logit_diff": diff,
                         "argmax_agree": agree},
        "files": {"model": "model.bin", "tokenizer": "tokenizer.bin", "hf": None if hf_log is None else "hf",
                  "checkpoint": "ckpt.pt", "log": "log.jsonl"},
        "export_s": round(time.time() - t0, 3),
    }
    write_atomic(os.path.join(out, "manifest.json"), json.dumps(man, indent=1) + "\n", "w")
    say(f"export: {out}/manifest.json written ({time.time() - t0:.1f} s)")


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def default_dtype():
    """bf16 where the CPU multiplies bf16 in hardware (oneDNN's AMX or
    AVX512-BF16 kernels: 3-8x faster products than f32 here), else f32."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "f32"
    return "bf16" if ("amx_bf16" in flags or "avx512_bf16" in flags) else "f32"


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="train_small.py", description="Train a small llama2.c model on a bild align-data corpus and export it.",
        epilog="Details and the recipe: tools/align/README.md")
    ap.add_argument("--corpus", help="corpus folder written by bild align-data")
    ap.add_argument("--tokenizer", help="tokenizer.bin the corpus was made with (shipped with the model)")
    ap.add_argument("--out", required=True, help="output folder (ckpt.pt, log.jsonl, model.bin, hf/, ...)")
    g = ap.add_argument_group("model")
    g.add_argument("--dim", type=int, default=128)
    g.add_argument("--n-layers", type=int, default=4)
    g.add_argument("--n-heads", type=int, default=4)
    g.add_argument("--n-kv-heads", type=int, help="default: --n-heads")
    g.add_argument("--hidden-dim", type=int, help="default: llama2.c's rule (2/3 of 4*dim, multiple of 32)")
    g.add_argument("--seq-len", type=int, help="context of the exported model (default: the corpus row_len)")
    g.add_argument("--vocab-size", type=int, help="must equal the corpus vocab_size if given")
    g = ap.add_argument_group("training")
    g.add_argument("--lr", type=float, default=3e-3)
    g.add_argument("--batch", type=int, default=32, help="windows per step")
    g.add_argument("--micro-batch", type=int, default=0,
                   help="windows per forward/backward chunk (0: auto, the head's (positions, vocab) buffer <= 512 MiB)")
    g.add_argument("--steps", type=int, help="optimizer steps (default: one epoch, or from --tokens)")
    g.add_argument("--tokens", type=float, help="token budget; steps = ceil(tokens / (batch * seq_len))")
    g.add_argument("--warmup", type=int, help="warm-up steps (default: 5%% of the steps, at most 200)")
    g.add_argument("--weight-decay", type=float, default=0.1)
    g.add_argument("--distill", type=float, help="alpha of the top-K term (default 0.5 with top-K files, else 0)")
    g.add_argument("--dtype", choices=sorted(DTYPES), default=default_dtype(),
                   help="matrix products in training (weights, optimizer and evaluation stay f32); "
                   f"default here: {default_dtype()} (bf16 where the CPU has AMX or AVX512-BF16)")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--init-layers", help="with --init: the init folder's layers to take, in order (e.g. 0,1,5: "
                   "a layer-dropped copy of a larger model of the same dim); default all")
    g.add_argument("--head-vocab", help="train the output layer over these token ids only: the draft vocabulary "
                   "(draft_vocab.txt: ranked ids, '#' comments) the small model will run with")
    g.add_argument("--head-top", type=int, help="with --head-vocab: its first K ids (default all)")
    g.add_argument("--init", help="start from this model's weights instead of random ones: a Hugging Face "
                   "folder written by tools/llama2c_to_hf.py (f32, f16 or bf16; same shape as --dim etc.)")
    g.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    g.add_argument("--time-budget", type=float, help="seconds: stop before a step would run past it, then export")
    g.add_argument("--stop-at-step", type=int, help="stop (checkpoint and export) after this step, "
                   "as if the time ran out; the run can be --resume'd")
    g = ap.add_argument_group("checkpoints and logs")
    g.add_argument("--ckpt-every", type=int, default=250)
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--eval-every", type=int, default=250)
    g.add_argument("--eval-rows", type=int, default=128, help="held-out rows evaluated (the first N of them)")
    g.add_argument("--resume", action="store_true", help="continue OUT/ckpt.pt (same arguments)")
    g.add_argument("--export-only", action="store_true", help="export OUT/ckpt.pt and exit")
    g.add_argument("--no-hf", action="store_true", help="skip the Hugging Face directory")
    a = ap.parse_args(argv)
    for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "hidden_dim", "seq_len", "batch", "steps",
              "warmup", "ckpt_every", "log_every", "eval_every", "eval_rows", "stop_at_step"):
        v = getattr(a, k)
        if v is not None and v <= 0:
            refuse(EXIT_USAGE, f"--{k.replace('_', '-')} {v}: must be positive")
    for k in ("micro_batch", "threads"):
        if getattr(a, k) < 0:
            refuse(EXIT_USAGE, f"--{k.replace('_', '-')} must be >= 0")
    if a.distill is not None and not 0.0 <= a.distill <= 1.0:
        refuse(EXIT_USAGE, f"--distill {a.distill}: must be in [0, 1]")
    if a.lr <= 0 or a.weight_decay < 0:
        refuse(EXIT_USAGE, "--lr must be positive and --weight-decay >= 0")
    if a.steps is not None and a.tokens is not None:
        refuse(EXIT_USAGE, "give --steps or --tokens, not both")
    if a.init_layers is not None:
        if not a.init:
            refuse(EXIT_USAGE, "--init-layers needs --init")
        try:
            a.init_layers = [int(v) for v in a.init_layers.split(",")]
        except ValueError:
            refuse(EXIT_USAGE, f"--init-layers {a.init_layers}: want comma-separated layer numbers, e.g. 0,1,5")
    if a.head_top is not None and (a.head_top <= 0 or not a.head_vocab):
        refuse(EXIT_USAGE, "--head-top must be positive and needs --head-vocab")
    return a


def read_head_vocab(path, top, V):
    """The ids of a draft vocabulary file (one per line after '#' comment
    lines, as tools/align/draft_vocab.sh writes it and bild reads it), the
    first top of them; refuses ids outside [0, V) and repeats."""
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        refuse(EXIT_INPUT, f"{path}: cannot read the head vocabulary: {e.strerror}")
    ids, seen = [], set()
    for n, ln in enumerate(lines, 1):
        ln = ln.strip()
        if not ln or ln.startswith("#"):
            continue
        if not ln.isdigit() or int(ln) >= V:
            refuse(EXIT_INPUT, f"{path}:{n}: {ln!r} is not a token id below {V}")
        if int(ln) in seen:
            refuse(EXIT_INPUT, f"{path}:{n}: id {ln} repeats")
        seen.add(int(ln))
        ids.append(int(ln))
    if top is not None:
        if top > len(ids):
            refuse(EXIT_USAGE, f"--head-top {top}: {path} lists {len(ids)} ids")
        ids = ids[:top]
    if not ids:
        refuse(EXIT_INPUT, f"{path}: no token ids")
    return torch.tensor(ids, dtype=torch.int64)


class Head:
    """The output layer's vocabulary: all ids, or a draft vocabulary (the
    tied embedding's rows of those ids). Target ids outside it are mapped to
    position 0 with weight 0: the small model never drafts them, so only
    the large model can emit them."""

    def __init__(self, ids, V):
        self.ids = ids
        if ids is not None:
            self.pos = torch.full((V,), -1, dtype=torch.int64)
            self.pos[ids] = torch.arange(len(ids))

    def emb(self, tok_emb):
        return tok_emb if self.ids is None else tok_emb[self.ids]

    def map(self, ids, w=None):
        """Full-vocabulary ids -> head positions, w zeroed where outside;
        returns (positions, w, inside mask)."""
        if self.ids is None:
            return ids, w, torch.ones_like(ids, dtype=torch.bool)
        p = self.pos[ids]
        inside = p >= 0
        return p.clamp(min=0), None if w is None else w * inside, inside

    def full(self, pos):
        return pos if self.ids is None else self.ids[pos]


def resolve(a, corpus):
    """Fills the defaults that depend on the corpus; refuses a model that
    cannot share the corpus vocabulary. Returns the model config."""
    V = corpus.vocab_size
    if a.vocab_size is not None and a.vocab_size != V:
        refuse(EXIT_USAGE, f"--vocab-size {a.vocab_size}: the corpus vocabulary has {V} tokens "
               "(the small model must share the large model's vocabulary)")
    a.vocab_size = V
    a.n_kv_heads = a.n_kv_heads or a.n_heads
    if a.dim % a.n_heads:
        refuse(EXIT_USAGE, f"--dim {a.dim} is not divisible by --n-heads {a.n_heads}")
    if (a.dim // a.n_heads) % 2:
        refuse(EXIT_USAGE, f"head_dim {a.dim // a.n_heads} (dim / n_heads) is odd: RoPE rotates pairs")
    if a.n_heads % a.n_kv_heads:
        refuse(EXIT_USAGE, f"--n-heads {a.n_heads} is not a multiple of --n-kv-heads {a.n_kv_heads}")
    a.hidden_dim = a.hidden_dim or default_hidden_dim(a.dim)
    a.seq_len = a.seq_len or corpus.row_len
    a.seq_len_train = min(a.seq_len, corpus.row_len)
    if a.seq_len > corpus.row_len:
        say(f"warning: --seq-len {a.seq_len} > the corpus row_len {corpus.row_len}: positions past "
            f"{corpus.row_len} are never trained")
    elif corpus.row_len % a.seq_len:
        say(f"warning: row_len {corpus.row_len} is not a multiple of --seq-len {a.seq_len}: the last "
            f"{corpus.row_len % a.seq_len} tokens of every row are not trained on")
    if a.distill is None:
        a.distill = 0.5 if corpus.topk > 0 else 0.0
    if a.distill > 0 and corpus.topk == 0:
        refuse(EXIT_USAGE, f"--distill {a.distill}: the corpus has no top-K files (settings.topk 0)")
    a.val_rows = max(1, corpus.rows * 2 // 100)
    a.train_rows = corpus.rows - a.val_rows
    if a.train_rows < 1:
        refuse(EXIT_INPUT, f"{corpus.dir}: {corpus.rows} row(s): none left for training after the held-out 2%")
    n_windows = a.train_rows * (corpus.row_len // a.seq_len_train)
    if a.tokens is not None:
        a.steps = max(1, math.ceil(a.tokens / (a.batch * a.seq_len_train)))
    a.steps = a.steps or max(1, n_windows // a.batch)
    a.tokens = None
    a.warmup = a.warmup or max(1, min(200, a.steps // 20))
    a.head_n = len(read_head_vocab(a.head_vocab, a.head_top, V)) if a.head_vocab else None
    if a.micro_batch == 0:
        elem = 2 if a.dtype == "bf16" else 4
        a.micro_batch = max(1, min(a.batch, (512 << 20) // (elem * a.seq_len_train * (a.head_n or V))))
    a.micro_batch = min(a.micro_batch, a.batch)
    return dict(dim=a.dim, hidden_dim=a.hidden_dim, n_layers=a.n_layers, n_heads=a.n_heads,
                n_kv_heads=a.n_kv_heads, vocab_size=V, seq_len=a.seq_len)


def load_init(model, path, take=None):
    """Copies the weights of a llama2c_to_hf.py folder (HF Llama names, q/k
    rows in HF's rotate-half order) into model; refuses another shape."""
    sys.path.insert(0, ROOT + "/tools")
    import llama2c_to_hf as h
    st = h.read_safetensors(os.path.join(path, "model.safetensors"))
    c = model.cfg
    hd = c["dim"] // c["n_heads"]
    get = lambda n: torch.from_numpy(np.ascontiguousarray(st[n][2]))  # noqa: E731
    want = {"model.embed_tokens.weight": (c["vocab_size"], c["dim"])}
    if set(st) - {"model.embed_tokens.weight", "model.norm.weight"} - {
            n for n in st if n.startswith("model.layers.")} or "lm_head.weight" in st:
        refuse(EXIT_INPUT, f"{path}: not a tied-classifier Llama folder from tools/llama2c_to_hf.py")
    for n, shape in want.items():
        if n not in st or tuple(st[n][1]) != shape:
            refuse(EXIT_INPUT, f"{path}: {n} is not {shape}: another vocabulary or --dim")
    layers = 1 + max(int(n.split(".")[2]) for n in st if n.startswith("model.layers."))
    take = list(range(layers)) if take is None else take
    if any(not 0 <= l < layers for l in take):
        refuse(EXIT_USAGE, f"--init-layers {','.join(map(str, take))}: {path} has layers 0-{layers - 1}")
    if len(take) != c["n_layers"]:
        refuse(EXIT_INPUT, f"{path}: {len(take)} layers taken, the model has {c['n_layers']} (--n-layers)")
    with torch.no_grad():
        model.tok_emb.copy_(get("model.embed_tokens.weight"))
        model.rms_final.copy_(get("model.norm.weight"))
        for l, src in enumerate(take):
            p = f"model.layers.{src}."
            pairs = [("rms_att", "input_layernorm.weight", None), ("wq", "self_attn.q_proj.weight", c["n_heads"]),
                     ("wk", "self_attn.k_proj.weight", c["n_kv_heads"]), ("wv", "self_attn.v_proj.weight", None),
                     ("wo", "self_attn.o_proj.weight", None), ("rms_ffn", "post_attention_layernorm.weight", None),
                     ("w1", "mlp.gate_proj.weight", None), ("w2", "mlp.down_proj.weight", None),
                     ("w3", "mlp.up_proj.weight", None)]
            for ours, theirs, heads in pairs:
                if p + theirs not in st:
                    refuse(EXIT_INPUT, f"{path}: {p + theirs} missing")
                w = st[p + theirs][2]
                if heads:
                    w = h.unpermute_rope(w, heads, hd)
                dst = getattr(model, ours)[l]
                if tuple(w.shape) != tuple(dst.shape):
                    refuse(EXIT_INPUT, f"{path}: {p + theirs} is {tuple(w.shape)}, the model wants "
                           f"{tuple(dst.shape)} (--dim, --hidden-dim, --n-heads)")
                dst.copy_(torch.from_numpy(np.ascontiguousarray(w)))


def make_optimizer(model, a):
    decay = [p for n, p in model.named_parameters() if not n.startswith("rms")]
    plain = [p for n, p in model.named_parameters() if n.startswith("rms")]
    return torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                              {"params": plain, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.95), eps=1e-8)


def export_only(a):
    ck = os.path.join(a.out, "ckpt.pt")
    if not os.path.isfile(ck):
        refuse(EXIT_INPUT, f"{ck}: missing (nothing to export)")
    st = torch.load(ck, weights_only=False)
    if a.tokenizer:
        st["tokenizer_path"] = os.path.abspath(a.tokenizer)
    st["commands"] = st["commands"] + [shlex.join([sys.executable] + sys.argv)]
    st["args"]["no_hf"] = a.no_hf
    model = Llama(st["arch"])
    model.load_state_dict(st["model"])
    export(a.out, model, st)


def main(argv=None):
    a = parse_args(argv if argv is not None else sys.argv[1:])
    torch.set_num_threads(a.threads or len(os.sched_getaffinity(0)))
    if a.export_only:
        return export_only(a)
    if not a.corpus or not a.tokenizer:
        refuse(EXIT_USAGE, "--corpus and --tokenizer are needed (or --export-only)")
    t_start = time.time()
    corpus = Corpus(a.corpus)
    check_tokenizer(a.tokenizer, corpus.manifest, f"{a.corpus}/manifest.json")
    cfg = resolve(a, corpus)
    ck = os.path.join(a.out, "ckpt.pt")
    command = shlex.join([sys.executable] + (argv if argv is not None else sys.argv))
    args_d = vars(a).copy()

    model = Llama(cfg)
    opt = make_optimizer(model, a)
    if a.resume:
        if not os.path.isfile(ck):
            refuse(EXIT_INPUT, f"{ck}: missing (nothing to resume)")
        st = torch.load(ck, weights_only=False)
        if st["corpus_sha256"] != corpus.manifest_sha256:
            refuse(EXIT_USAGE, f"{a.corpus}/manifest.json: not the corpus {ck} was trained on")
        diff = [f"--{k.replace('_', '-')} {st['args'].get(k)} -> {v}" for k, v in args_d.items()
                if k not in NOT_TRAJECTORY and st["args"].get(k) != v]
        if diff:
            refuse(EXIT_USAGE, f"{ck}: --resume needs the same arguments: {', '.join(diff)}")
        if st["args"]["threads"] != a.threads:
            say(f"warning: --threads differs from the checkpoint's run; the result may differ in the last bits")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        torch.set_rng_state(st["torch_rng"])
        np.random.set_state(st["numpy_rng"])
        st["commands"].append(command)
        st["args"] = args_d
        say(f"resuming {ck} at step {st['step']}/{a.steps}")
        log = JsonLog(os.path.join(a.out, "log.jsonl"), keep_until=st["step"])
    else:
        if os.path.exists(ck):
            refuse(EXIT_USAGE, f"{ck} exists: pass --resume to continue it, or choose another --out")
        torch.manual_seed(a.seed)
        np.random.seed(a.seed)
        model.init_weights()
        if a.init:
            load_init(model, a.init, a.init_layers)
            say(f"weights from {a.init}" + (f", layers {a.init_layers}" if a.init_layers else ""))
        st = dict(step=0, tokens_seen=0, wall_s=0.0, commands=[command], args=args_d, arch=cfg,
                  corpus_manifest=corpus.manifest, corpus_sha256=corpus.manifest_sha256,
                  corpus_dir=os.path.abspath(a.corpus), tokenizer_path=os.path.abspath(a.tokenizer),
                  recent_losses=[], last_eval=None)
        os.makedirs(a.out, exist_ok=True)  # after every refusal: a refused run leaves nothing behind
        log = JsonLog(os.path.join(a.out, "log.jsonl"))
    st["tokenizer_path"] = os.path.abspath(a.tokenizer)
    st["corpus_dir"] = os.path.abspath(a.corpus)

    head = Head(read_head_vocab(a.head_vocab, a.head_top, a.vocab_size) if a.head_vocab else None,
                a.vocab_size)
    T = a.seq_len_train
    train = Windows(corpus, range(a.train_rows), T)
    val = Windows(corpus, range(a.train_rows, a.train_rows + min(a.val_rows, a.eval_rows)), T)
    sampler = Sampler(train.n, a.batch, a.seed)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"model: dim {a.dim}, hidden {a.hidden_dim}, {a.n_layers} layers, {a.n_heads}/{a.n_kv_heads} heads, "
        f"vocab {a.vocab_size}, seq_len {a.seq_len}: {n_params:,} params "
        f"({n_params - model.tok_emb.numel():,} outside the embedding)")
    say(f"corpus: {corpus.rows} rows x {corpus.row_len} (top-{corpus.topk}); {a.train_rows} train rows "
        f"({train.n} windows of {T}), {a.val_rows} held out ({val.n} windows evaluated); "
        f"{a.steps} steps of {a.batch} windows (micro {a.micro_batch}) = "
        f"{a.steps * a.batch / max(1, train.n):.2f} epochs; lr {a.lr:g}, warm-up {a.warmup}, "
        f"distill {a.distill:g}, {a.dtype} products, {torch.get_num_threads()} threads"
        + (f"; output layer over {a.head_n} ids of {a.head_vocab}" if a.head_vocab else ""))

    stop = {"why": None}

    def on_signal(sig, _frame):
        if stop["why"] is not None:
            raise KeyboardInterrupt
        stop["why"] = signal.Signals(sig).name
        say(f"{stop['why']}: stopping after this step (again to abort)")
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def checkpoint():
        st.update(model=model.state_dict(), optimizer=opt.state_dict(), torch_rng=torch.get_rng_state(),
                  numpy_rng=np.random.get_state(), wall_s=wall0 + time.time() - t_start,
                  schedule=dict(lr=a.lr, warmup=a.warmup, steps=a.steps, min_lr=a.lr / 10))
        save_atomic(st, ck)

    def run_eval():
        t0 = time.time()
        ev = evaluate(model, val, a.distill, a.micro_batch, head)
        ev["step"] = st["step"]
        st["last_eval"] = ev
        log.write(dict(kind="eval", **ev, eval_s=round(time.time() - t0, 3)))
        agree = f", agree {ev['val_agree']:.3f}" if ev["val_agree"] is not None else ""
        say(f"eval  step {st['step']}: val loss {ev['val_loss']:.4f} (ce {ev['val_ce']:.4f}), "
            f"acc {ev['val_acc']:.3f}{agree} [{time.time() - t0:.1f} s]")

    wall0 = st["wall_s"]
    tok_step = a.batch * T
    win = dict(t=time.time(), steps=0, loss=0.0, ce=0.0, kd=0.0)
    step_time = None
    while st["step"] < a.steps:
        if stop["why"]:
            break
        if a.stop_at_step is not None and st["step"] >= a.stop_at_step:
            stop["why"] = "stop_at_step"
            break
        if a.time_budget is not None and step_time is not None and \
                time.time() - t_start + step_time > a.time_budget:
            stop["why"] = "time_budget"
            say(f"time budget {a.time_budget:g} s: stopping at step {st['step']}")
            break
        t0 = time.time()
        step = st["step"]
        lr = lr_at(step, a)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y, ti, tl = train.batch(sampler.indices(step))
        n_valid = int((y >= 0).sum())
        loss_sum = ce_sum = kd_sum = 0.0
        opt.zero_grad(set_to_none=True)
        for s in range(0, a.batch, a.micro_batch):
            sl = slice(s, s + a.micro_batch)
            ids, w = targets(y[sl], ti[sl] if ti is not None else None, tl[sl] if tl is not None else None,
                             a.distill)
            ids, w, inside = head.map(ids, w)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
                h = model.hidden(x[sl]).reshape(-1, a.dim)
            nll = SparseHead.apply(h.float(), head.emb(model.tok_emb), ids, DTYPES[a.dtype])
            loss = (nll * w).sum() / n_valid
            loss.backward()
            with torch.no_grad():
                loss_sum += float(loss)
                valid = (y[sl] >= 0).reshape(-1) & inside[:, 0]
                ce_sum += float(nll[:, 0][valid].sum())
                if a.distill > 0:
                    kd_sum += float((w[:, 1:] * nll[:, 1:]).sum()) / a.distill
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        st["step"] = step + 1
        st["tokens_seen"] += tok_step
        st["recent_losses"] = (st["recent_losses"] + [loss_sum])[-50:]
        dt = time.time() - t0
        step_time = dt if step_time is None else 0.8 * step_time + 0.2 * dt
        win["steps"] += 1
        win["loss"] += loss_sum
        win["ce"] += ce_sum / n_valid
        win["kd"] += kd_sum / n_valid
        if st["step"] % a.log_every == 0 or st["step"] == a.steps:
            now = time.time()
            k = win["steps"]
            tok_s = k * tok_step / (now - win["t"])
            eta = (a.steps - st["step"]) * step_time
            if a.time_budget is not None:
                eta = min(eta, max(0.0, a.time_budget - (now - t_start)))
            rec = dict(kind="train", step=st["step"], loss=win["loss"] / k, ce=win["ce"] / k,
                       kd=win["kd"] / k if a.distill > 0 else None, lr=lr, tok_s=round(tok_s, 1),
                       tokens_seen=st["tokens_seen"], elapsed_s=round(wall0 + now - t_start, 2), eta_s=round(eta, 1))
            log.write(rec)
            kd = f", kd {rec['kd']:.4f}" if a.distill > 0 else ""
            say(f"step {st['step']}/{a.steps}: loss {rec['loss']:.4f} (ce {rec['ce']:.4f}{kd}), lr {lr:.2e}, "
                f"{tok_s:,.0f} tok/s, {fmt_s(now - t_start)} elapsed, ETA {fmt_s(eta)}")
            win = dict(t=time.time(), steps=0, loss=0.0, ce=0.0, kd=0.0)
        t_aside = time.time()
        if st["step"] % a.eval_every == 0 and st["step"] < a.steps:
            run_eval()
        if st["step"] % a.ckpt_every == 0 and st["step"] < a.steps:
            checkpoint()
        win["t"] += time.time() - t_aside  # tokens/s counts training steps only
    for s, h in old.items():
        signal.signal(s, h)
    st["stopped"] = stop["why"] or "completed"
    if st["last_eval"] is None or st["last_eval"]["step"] != st["step"]:
        run_eval()
    checkpoint()
    say(f"{st['stopped']} at step {st['step']}/{a.steps}: {st['tokens_seen']:,} tokens, "
        f"{fmt_s(st['wall_s'])} of training in all; checkpoint {ck}")
    export(a.out, model, st)
    return 0


if __name__ == "__main__":
    sys.exit(main())
