#!/usr/bin/python3
"""Writes the two Hugging Face tokenizer.json files the C tokenizer is tested
with, from the published algorithm definitions (no `tokenizers` package):

  bytelevel  tests/data/tok_bytelevel.json: a byte-level BPE in the Llama-3
             layout: Split(Llama-3 regex, Isolated) + ByteLevel(no regex)
             pre-tokenizer, the GPT-2 byte-to-unicode alphabet, ignore_merges,
             a TemplateProcessing post-processor that prepends
             <|begin_of_text|>, merges in the ["a", "b"] list form. The merges
             are learned here (classic BPE training: count adjacent pairs over
             the pre-tokenized words, merge the most frequent, repeat) on the
             gettext catalogues of this Debian system (/usr/share/locale:
             English msgids and their German, French, Russian, Greek, Arabic
             and Chinese translations). ../shared/data is evaluation text only
             and is not trained on.
  sp         tests/data/tok_sp.json: a SentencePiece-style BPE derived from
             llama2.c's tokenizer.bin (stories15M, the Llama-2 vocabulary) the
             way transformers' LlamaConverter does it: pieces with ' ' turned
             back into U+2581, byte_fallback, normalizer
             Prepend(U+2581) + Replace(' ', U+2581), merges from
             SentencePieceExtractor (every split of every piece into two
             pieces, ordered by the piece's score), written as "a b" strings.

Each file gets a few extra added tokens (special and not) so the added-token
split is exercised. Importable: sp_tokenizer_json(path) (used by
tools/llama2c_to_hf.py), bytes_to_unicode().

usage: /usr/bin/python3 tools/ref/make_tokenizer_json.py [--tokenizer-bin PATH] [--out-dir tests/data]
       /usr/bin/python3 tools/ref/make_tokenizer_json.py --fuzz-seeds DIR --tokenizer-bin tok512.bin
(tools/ref/make_tokenizer_goldens.sh runs all of it.)
"""
import argparse
import collections
import gettext
import glob
import json
import os
import struct
import sys

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


# ---- byte-level BPE training ------------------------------------------------

def locale_corpus(langs=("de", "fr", "ru", "el", "ar", "zh_CN"),
                  domains=("apt", "Linux-PAM", "coreutils", "bash", "dpkg")):
    """English msgids and their translations from the system's .mo files,
    sorted so the result does not depend on directory order."""
    texts = set()
    for lang in langs:
        for dom in domains:
            path = f"/usr/share/locale/{lang}/LC_MESSAGES/{dom}.mo"
            if not os.path.exists(path):
                continue
            with open(path, "rb") as f:
                cat = gettext.GNUTranslations(f)._catalog
            for k, v in cat.items():
                if isinstance(k, tuple):
                    k = k[0]
                if k:
                    texts.add(k)
                if v:
                    texts.add(v)
    return sorted(texts)


def train_bytelevel(texts, n_merges):
    """Classic BPE training on byte-level words. Ties: the highest count,
    then the lexicographically smallest pair. Returns the merges list."""
    import regex
    b2u = bytes_to_unicode()
    pat = regex.compile(LLAMA3_PATTERN)
    counts = collections.Counter()
    for t in texts:
        for w in pat.findall(t):
            counts["".join(b2u[b] for b in w.encode("utf-8"))] += 1
    words = [list(w) for w in counts]
    freq = [counts[w] for w in counts]
    pair_count = collections.Counter()
    where = collections.defaultdict(set)
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_count[(a, b)] += freq[i]
            where[(a, b)].add(i)
    merges = []
    while len(merges) < n_merges and pair_count:
        best = min(pair_count.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        if pair_count[best] < 2:
            break
        merges.append(best)
        a, b = best
        for i in sorted(where.pop(best, ())):
            w = words[i]
            for x, y in zip(w, w[1:]):
                pair_count[(x, y)] -= freq[i]
                if pair_count[(x, y)] <= 0:
                    del pair_count[(x, y)]
            out, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for x, y in zip(out, out[1:]):
                pair_count[(x, y)] += freq[i]
                where[(x, y)].add(i)
        pair_count.pop(best, None)
    return merges


def bytelevel_tokenizer_json(n_merges=1500):
    b2u = bytes_to_unicode()
    merges = train_bytelevel(locale_corpus(), n_merges)
    vocab = {}
    for b in range(256):
        vocab[b2u[b]] = b
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    n = len(vocab)
    added = [("<|begin_of_text|>", True), ("<|end_of_text|>", True), ("<|eot_id|>", True),
             ("<|im_start|>", True), ("<|im_end|>", True), ("[NOTE]", False)]
    added_tokens = []
    for k, (content, special) in enumerate(added):
        added_tokens.append({"id": n + k, "content": content, "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": special})
    bos = added_tokens[0]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
             "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": bos["content"], "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": bos["content"], "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": bos["content"], "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {bos["content"]: {"id": bos["content"], "ids": [bos["id"]],
                                                 "tokens": [bos["content"]]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }


# ---- SentencePiece-style BPE from tokenizer.bin ------------------------------

def read_tokenizer_bin(path):
    """(piece, score) per id from llama2.c's tokenizer.bin, with the pieces as
    SentencePiece wrote them: ' ' -> U+2581, BOS/EOS without llama2.c's
    surrounding newlines."""
    data = open(path, "rb").read()
    pos = 4
    out = []
    while pos < len(data):
        score, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        piece = data[pos:pos + n].decode("utf-8")
        pos += n
        out.append((piece, score))
    if len(out) > 2 and out[1][0] == "\n<s>\n" and out[2][0] == "\n</s>\n":
        out[1] = ("<s>", out[1][1])
        out[2] = ("</s>", out[2][1])
    return [(p.replace(" ", "\u2581"), s) for p, s in out]


def sp_merges(vocab_scores):
    """transformers' SentencePieceExtractor.extract(vocab_scores): for every
    piece, every split into two pieces of the vocabulary (ordered by their
    ids), all sorted by the piece's score, highest first (stable)."""
    vocab = {}
    for i, (p, _) in enumerate(vocab_scores):
        vocab.setdefault(p, i)
    merges = []
    for piece, score in vocab_scores:
        local = []
        for k in range(1, len(piece)):
            l, r = piece[:k], piece[k:]
            if l in vocab and r in vocab:
                local.append((l, r, score))
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda x: x[2], reverse=True)
    return [(l, r) for l, r, _ in merges]


def sp_tokenizer_json(tokenizer_bin, extra_added=()):
    """A Llama-2 style tokenizer.json (transformers' LlamaConverter layout,
    legacy normalizer form) for a llama2.c tokenizer.bin. extra_added:
    (content, special) pairs appended after the vocabulary."""
    vs = read_tokenizer_bin(tokenizer_bin)
    vocab = {}
    for i, (p, _) in enumerate(vs):
        if p in vocab:
            raise SystemExit(f"{tokenizer_bin}: piece {p!r} appears twice (ids {vocab[p]} and {i})")
        vocab[p] = i
    merges = sp_merges(vs)
    added = [{"id": 0, "content": vs[0][0], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True},
             {"id": 1, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True},
             {"id": 2, "content": "</s>", "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}]
    for k, (content, special) in enumerate(extra_added):
        added.append({"id": len(vs) + k, "content": content, "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": False, "special": special})
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{l} {r}" for l, r in merges]},
    }


def write_json(obj, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def fuzz_seeds(out, tokenizer_bin):
    """Small tokenizer.json files and two texts for tests/fuzz/fuzz_tokenizer_json.c
    (the byte-level file cut to 60 merges; tokenizer_bin: a small llama2.c
    vocabulary such as stories260K's tok512.bin)."""
    os.makedirs(out, exist_ok=True)

    def w(name, obj):
        write_json(obj, os.path.join(out, name))

    bl = json.load(open(os.path.join("tests", "data", "tok_bytelevel.json"), encoding="utf-8"))
    merges = bl["model"]["merges"][:30]
    vocab = {k: v for k, v in bl["model"]["vocab"].items() if v < 256}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    n = len(vocab)
    for i, a in enumerate(bl["added_tokens"]):
        a["id"] = n + i
    bl["post_processor"]["processors"][1]["special_tokens"]["<|begin_of_text|>"]["ids"] = [n]
    bl["model"]["vocab"], bl["model"]["merges"] = vocab, merges
    w("bytelevel_small.json", bl)
    bl["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}]}
    bl["post_processor"] = None
    w("bytelevel_digits.json", bl)
    bl["normalizer"] = {"type": "NFC"}
    bl["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}
    w("bytelevel_nfc.json", bl)
    sp = sp_tokenizer_json(tokenizer_bin, extra_added=[("<|user|>", True), ("[NOTE]", False)])
    # Keep the seeds small (the fuzzer mutates whole files): ids below 300.
    keep = {p: i for p, i in sp["model"]["vocab"].items() if i < 300}
    sp["model"]["vocab"] = keep
    sp["model"]["merges"] = [m for m in sp["model"]["merges"]
                             if all(x in keep for x in m.split(" ")) and m.replace(" ", "") in keep]
    sp["added_tokens"] = sp["added_tokens"][:3]
    w("sp_small.json", sp)
    sp["normalizer"] = None
    sp["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                           "split": True}
    w("sp_metaspace.json", sp)
    w("minimal.json", {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})
    with open(os.path.join(out, "text1"), "wb") as f:
        f.write("xHello wörld, 123 🙂 <|im_end|> [NOTE]  \n\n x e\u0301 \u2126".encode())
    with open(os.path.join(out, "text2"), "wb") as f:
        f.write(b"x\xff\xfe abc\xc3 <s>   ")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer-bin", default="../shared/models/stories15M/tokenizer.bin")
    ap.add_argument("--out-dir", default="tests/data")
    ap.add_argument("--merges", type=int, default=1500)
    ap.add_argument("--fuzz-seeds", metavar="DIR", help="write the fuzz seeds into DIR instead")
    a = ap.parse_args()
    if a.fuzz_seeds:
        fuzz_seeds(a.fuzz_seeds, a.tokenizer_bin)
        return
    bl = bytelevel_tokenizer_json(a.merges)
    write_json(bl, os.path.join(a.out_dir, "tok_bytelevel.json"))
    sp = sp_tokenizer_json(a.tokenizer_bin, extra_added=[("<|user|>", True), ("[NOTE]", False)])
    write_json(sp, os.path.join(a.out_dir, "tok_sp.json"))
    print(f"tok_bytelevel.json: {len(bl['model']['vocab'])} pieces, {len(bl['model']['merges'])} merges; "
          f"tok_sp.json: {len(sp['model']['vocab'])} pieces, {len(sp['model']['merges'])} merges",
          file=sys.stderr)


if __name__ == "__main__":
    main()
