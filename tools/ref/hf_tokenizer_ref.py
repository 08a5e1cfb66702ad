#!/usr/bin/python3
"""An independent encoder/decoder for Hugging Face tokenizer.json BPE files,
written from the algorithm definitions of the `tokenizers` library (which is
not available here), and the golden-id writer for tests/test_tokenizer_hf.c.
It shares no code with the C tokenizer.

Encoding (tokenizers' TokenizerImpl::encode with add_special_tokens):
  1. Added tokens are split out of the raw text first: at each position the
     longest added token that starts there (leftmost-longest), lstrip/rstrip
     absorbing the whitespace beside it.
  2. Every other segment is normalized (Prepend, Replace, Sequence; Prepend
     only touches a non-empty segment), then pre-tokenized:
     Split(Regex, Isolated): matches and the gaps between them are pieces;
     ByteLevel: optional GPT-2 regex split and add_prefix_space, then every
     byte becomes its GPT-2 alphabet character; Metaspace: ' ' -> U+2581,
     prepend U+2581 (always / first segment only), optional split before
     every U+2581.
  3. Each piece goes through BPE: if ignore_merges and the piece is a
     vocabulary entry it is one token; else one symbol per character
     (byte_fallback: a character outside the vocabulary becomes its <0xXX>
     byte tokens; otherwise unk, runs of unk fused if fuse_unk), then, as
     long as any adjacent pair is a merge, the pair with the lowest merge
     rank is merged, the leftmost on equal ranks. (A plain quadratic scan;
     the C code uses a heap.)
  4. The TemplateProcessing post-processor's tokens before $A are prepended.
Decoding (decode with skip_special_tokens, as generation prints text):
special added tokens are dropped; byte-level pieces map back through the
GPT-2 alphabet; SentencePiece-style: U+2581 -> ' ', <0xXX> -> the byte, one
leading space of the whole text stripped.

Goldens (tests/data/tok_<variant>.golden.json): the two committed
tokenizer.json files and four variants of them given as patches of top-level
(or dotted "model.x") fields, which the C test applies the same way:
SmolLM-style Digits + ByteLevel(regex), Qwen2-style NFC + regex, RoBERTa-style ByteLevel with
add_prefix_space, Metaspace(always, split) and Metaspace(first, no split).
Each case: text, ids (encode with add_special_tokens), decoded (decode of
the ids after the template's prefix). Texts: lines of WMT14 and IWSLT17
(German and English) and TinyStories stories from ../shared/data, plus
EXTRA_TEXTS (punctuation, digits, emoji, Cyrillic, CJK, Arabic, Hebrew,
Devanagari, Thai, runs of spaces and newlines, added tokens).

usage:
  /usr/bin/python3 tools/ref/hf_tokenizer_ref.py goldens [--shared ../shared] [--out-dir tests/data]
  /usr/bin/python3 tools/ref/hf_tokenizer_ref.py encode TOKENIZER.json "text"
"""
import argparse
import json
import os
import re as stdre
import sys

import unicodedata

import regex

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SPM = "\u2581"
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")


def bytes_to_unicode():
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


def apply_patch(j, patch):
    """patch: {"a.b": value} replaces j["a"]["b"] (the golden variants)."""
    for key, value in (patch or {}).items():
        d = j
        parts = key.split(".")
        for k in parts[:-1]:
            d = d[k]
        d[parts[-1]] = value
    return j


class Tokenizer:
    def __init__(self, path, patch=None):
        j = apply_patch(json.load(open(path, encoding="utf-8")), patch)
        m = j["model"]
        assert m["type"] == "BPE", "only BPE"
        self.vocab = m["vocab"]
        self.inv = {i: p for p, i in self.vocab.items()}
        self.rank = {}
        for r, mg in enumerate(m["merges"]):
            a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
            self.rank.setdefault((a, b), r)
        self.byte_fallback = bool(m.get("byte_fallback"))
        self.ignore_merges = bool(m.get("ignore_merges"))
        self.unk = m.get("unk_token")
        self.fuse_unk = bool(m.get("fuse_unk"))
        self.added = j.get("added_tokens") or []
        for a in self.added:
            self.inv[a["id"]] = a["content"]
        self.special = {a["id"] for a in self.added if a["special"]}
        self.normalizer = j.get("normalizer")
        self.pre = j.get("pre_tokenizer")
        self.post = j.get("post_processor")
        self.b2u = bytes_to_unicode()
        self.u2b = {c: b for b, c in self.b2u.items()}
        self.bytelevel = self._has(self.pre, "ByteLevel")
        self.spm = next((p.get("replacement", SPM) for p in self._flatten(self.pre, "pretokenizers")
                         if p["type"] == "Metaspace"), SPM)

    @staticmethod
    def _flatten(x, key):
        if x is None:
            return []
        if x["type"] == "Sequence":
            return [y for z in x[key] for y in Tokenizer._flatten(z, key)]
        return [x]

    def _has(self, pre, typ):
        return any(p["type"] == typ for p in self._flatten(pre, "pretokenizers"))

    # -- added tokens --
    def split_added(self, text):
        """[(segment, is_added_id or None, starts_at_0)]"""
        out = []
        i = 0
        seg_start = 0
        while i < len(text):
            best = None
            for a in self.added:
                c = a["content"]
                if c and text.startswith(c, i) and (best is None or len(c) > len(best["content"])):
                    best = a
            if best is None:
                i += 1
                continue
            s, e = i, i + len(best["content"])
            if best.get("lstrip"):
                while s > seg_start and text[s - 1].isspace():
                    s -= 1
            if best.get("rstrip"):
                while e < len(text) and text[e].isspace():
                    e += 1
            if s > seg_start:
                out.append((text[seg_start:s], None, seg_start))
            out.append((best["content"], best["id"], s))
            i = seg_start = e
        if seg_start < len(text):
            out.append((text[seg_start:], None, seg_start))
        return out

    # -- normalizer --
    def normalize(self, s):
        for n in self._flatten(self.normalizer, "normalizers"):
            if n["type"] == "Prepend":
                if s:
                    s = n["prepend"] + s
            elif n["type"] == "NFC":
                s = unicodedata.normalize("NFC", s)
            elif n["type"] == "Replace":
                s = s.replace(n["pattern"]["String"], n["content"])
            else:
                raise ValueError(f"normalizer {n['type']}")
        return s

    # -- pre-tokenizer --
    def pretokenize(self, s, first):
        pieces = [s]
        for p in self._flatten(self.pre, "pretokenizers"):
            nxt = []
            for piece in pieces:
                if p["type"] == "Split":
                    pat = regex.compile(p["pattern"]["Regex"]) if "Regex" in p["pattern"] \
                        else regex.compile(regex.escape(p["pattern"]["String"]))
                    assert p["behavior"] == "Isolated" and not p.get("invert")
                    nxt.extend(isolated(pat, piece))
                elif p["type"] == "Digits":
                    pat = r"\p{N}" if p.get("individual_digits") else r"\p{N}+"
                    nxt.extend(isolated(regex.compile(pat), piece))
                elif p["type"] == "ByteLevel":
                    if p.get("add_prefix_space") and not piece.startswith(" "):
                        piece = " " + piece
                    parts = isolated(regex.compile(GPT2_PATTERN), piece) if p.get("use_regex", True) \
                        else [piece]
                    nxt.extend("".join(self.b2u[b] for b in x.encode("utf-8")) for x in parts)
                elif p["type"] == "Metaspace":
                    piece = piece.replace(" ", p.get("replacement", SPM))
                    scheme = p.get("prepend_scheme", "always" if p.get("add_prefix_space", True) else "never")
                    if (scheme == "always" or (scheme == "first" and first)) and not piece.startswith(SPM):
                        piece = SPM + piece
                    if p.get("split", True):
                        parts = [x for x in stdre.split("(?=" + SPM + ")", piece) if x]
                        nxt.extend(parts)
                    else:
                        nxt.append(piece)
                else:
                    raise ValueError(f"pre_tokenizer {p['type']}")
            pieces = [x for x in nxt if x]
        return pieces

    # -- BPE --
    def bpe(self, word):
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        syms = []  # list of [text, id]
        for ch in word:
            if ch in self.vocab:
                syms.append([ch, self.vocab[ch]])
            elif self.byte_fallback and all(f"<0x{b:02X}>" in self.vocab for b in ch.encode("utf-8")):
                for b in ch.encode("utf-8"):
                    syms.append([None, self.vocab[f"<0x{b:02X}>"]])
            else:
                uid = self.vocab[self.unk]
                if self.fuse_unk and syms and syms[-1][1] == uid and syms[-1][0] is None:
                    continue
                syms.append([None, uid])
        while True:
            best, at = None, -1
            for i in range(len(syms) - 1):
                a, b = syms[i][0], syms[i + 1][0]
                if a is None or b is None:
                    continue
                r = self.rank.get((a, b))
                if r is not None and (best is None or r < best):
                    best, at = r, i
            if at < 0:
                break
            t = syms[at][0] + syms[at + 1][0]
            syms[at:at + 2] = [[t, self.vocab[t]]]
        return [i for _, i in syms]

    def prefix_ids(self):
        for p in self._flatten(self.post, "processors"):
            if p["type"] == "TemplateProcessing":
                ids = []
                for item in p["single"]:
                    if "Sequence" in item:
                        return ids
                    ids.extend(p["special_tokens"][item["SpecialToken"]["id"]]["ids"])
        return []

    def encode(self, text, add_special=True):
        ids = list(self.prefix_ids()) if add_special else []
        for seg, aid, start in self.split_added(text):
            if aid is not None:
                ids.append(aid)
                continue
            for piece in self.pretokenize(self.normalize(seg), start == 0):
                ids.extend(self.bpe(piece))
        return ids

    def decode(self, ids, skip_special=True):
        """tokenizers' decode: skip_special drops special added tokens
        (otherwise they are their content); byte-level pieces map back
        through the byte alphabet; SentencePiece-style: U+2581 -> ' ',
        <0xXX> -> byte, one leading space of the whole text stripped."""
        added_ids = {a["id"] for a in self.added}
        out = bytearray()
        for i in ids:
            if skip_special and i in self.special:
                continue
            p = self.inv[i]
            if i in added_ids and p not in self.vocab:
                out += p.encode("utf-8")
            elif self.bytelevel:
                out += bytes(self.u2b[c] for c in p)
            else:
                mm = stdre.fullmatch(r"<0x([0-9A-F]{2})>", p)
                if mm:
                    out.append(int(mm.group(1), 16))
                else:
                    out += p.replace(self.spm, " ").encode("utf-8")
        if not self.bytelevel and out.startswith(b" "):
            out = out[1:]
        return out.decode("utf-8", errors="replace")


def isolated(pat, s):
    """Split with behavior Isolated: every match and every gap is a piece."""
    out, pos = [], 0
    for m in pat.finditer(s):
        if m.start() > pos:
            out.append(s[pos:m.start()])
        if m.end() > m.start():
            out.append(m.group(0))
        pos = m.end()
    if pos < len(s):
        out.append(s[pos:])
    return out


# ---- golden texts -----------------------------------------------------------

EXTRA_TEXTS = [
    "Hello world",
    "Once upon a time",
    "Hello, world! How's it going? I'm fine; you'll see: they've done it, we'd go.",
    "THE CAT'S HAT. It'S AN 'ODD' CASE; 'S 'T 'RE.",
    "Numbers: 0 1 12 123 1234 12345 3.14159 -42 +7 1,000,000 2024-06-01 10:30am #1 $99.99 50%",
    "Emoji: 🙂 😀👍🏽 🇩🇪 👨‍👩‍👧 ❤️ ✨🚀",
    "Русский текст: Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Українська: Ґанок, їжак, єнот.",
    "中文：我们今天去公园散步，天气很好。日本語のテキストもあります。",
    "한국어 문장도 있습니다.",
    "العربية: مرحبا بالعالم، كيف حالك؟",
    "עברית: שלום עולם",
    "Ελληνικά: Γειά σου Κόσμε",
    "हिन्दी: नमस्ते दुनिया",
    "ไทย: สวัสดีชาวโลก",
    "Grüße aus Köln – „Anführungszeichen“ … ½ € ∑ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ß ẞ Œuvre",
    "Straße, Mädchen, Übermaß, Äpfel, Öl — ça va? naïve café résumé",
    "  two leading spaces and trailing  ",
    "   ",
    " ",
    "x",
    "a  b   c    d     e",
    "tabs\tand\t\tmore\ttabs",
    "line one\nline two\n\nline four\r\nwindows\r\n",
    "\n\n\n",
    " \n \n ",
    "trailing newline\n",
    "mixed \t\n whitespace \u00a0 nbsp \u3000 ideographic",
    "code: def f(x):\n    return x**2 + 1  # comment\n",
    "<html><body class=\"x\">Hi &amp; bye</body></html>",
    "URL https://example.com/a/b?c=d&e=f#g and mail a.b@c.de",
    "!!!??? ... --- *** ___ ((( ))) [[[ ]]] {{{ }}}",
    "aaaaaaaaaaaaaaaa bbbbbbbbbbbb eeeeeee ththththt",
    "<s> and </s> and <unk> are special; <0x41> is text",
    "<|begin_of_text|>Hello<|end_of_text|>",
    "Hi <|im_start|>user\nWhat?<|im_end|>\n<|im_start|>assistant\n",
    "a [NOTE] b[NOTE]c [NOTE]",
    "<|user|> question <|user|>",
    "tokens<|eot_id|><|eot_id|>twice",
    "Mr. O'Neil's dog—“quoted”—and ‘single’ quotes",
    "\u200b zero width \u200d joiner \ufeff bom",
    "e\u0301 combining acute vs é precomposed",
    "Ohm \u2126 Angstrom \u212b A\u030angström, jamo \u1100\u1161 vs \uac00, q\u0307\u0323 ﬁ ligature",
]


def shared_lines(shared):
    """(name, [lines]) from ../shared/data: sgm/xml segments and story lines."""
    seg = stdre.compile(r"<seg[^>]*>(.*)</seg>")
    out = []
    for rel, n in [("wmt14-deen/newstest2014-deen-src.de.sgm", 60),
                   ("wmt14-deen/newstest2014-deen-src.en.sgm", 60),
                   ("iwslt17-deen/IWSLT17.TED.tst2017.de-en.de.xml", 40),
                   ("iwslt17-deen/IWSLT17.TED.tst2017.en-de.en.xml", 40)]:
        lines = []
        with open(os.path.join(shared, "data", rel), encoding="utf-8") as f:
            for line in f:
                m = seg.search(line)
                if m and m.group(1).strip():
                    lines.append(m.group(1).strip())
        step = max(1, len(lines) // n)
        out.extend(lines[::step][:n])
    with open(os.path.join(shared, "data", "tinystories", "validation_100.txt"), encoding="utf-8") as f:
        stories = f.read().split("<|endoftext|>")
    out.extend(s.strip("\n") for s in stories[1:21])  # whole stories, newlines kept
    return out


# Variants of the two files, as patches the C test applies too (small).
VARIANTS = {
    "bytelevel": ("tok_bytelevel.json", None),
    "sp": ("tok_sp.json", None),
    # SmolLM layout: digits split one by one, GPT-2 regex inside ByteLevel, no BOS.
    "bytelevel_smollm": ("tok_bytelevel.json", {
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "model.ignore_merges": False}),
    # Qwen2 layout: NFC normalizer, the Qwen2 regex (digits one by one), no BOS.
    "bytelevel_qwen2": ("tok_bytelevel.json", {
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                           "use_regex": False},
        "model.ignore_merges": False}),
    # RoBERTa-like: ByteLevel with add_prefix_space and the GPT-2 regex.
    "bytelevel_prefix": ("tok_bytelevel.json", {
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": None}),
    # Newer Llama/Mistral files: Metaspace pre-tokenizer instead of the normalizer.
    "sp_metaspace": ("tok_sp.json", {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": SPM, "prepend_scheme": "always",
                          "split": True}}),
    "sp_metaspace_first": ("tok_sp.json", {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": SPM, "prepend_scheme": "first",
                          "split": False}}),
}


def goldens(shared, out_dir):
    all_texts = shared_lines(shared) + EXTRA_TEXTS
    for name, (base, patch) in VARIANTS.items():
        tok = Tokenizer(os.path.join(out_dir, base), patch)
        texts = all_texts if patch is None else all_texts[::8] + EXTRA_TEXTS
        cases = []
        n_rt = 0
        for t in texts:
            ids = tok.encode(t)
            dec = tok.decode(ids[len(tok.prefix_ids()):])
            # Without added tokens in the text, the base files must give the
            # text back (the variants with a prefix space need not).
            has_added = any(a["content"] in t for a in tok.added)
            assert dec == t or has_added or patch is not None, (name, t, dec)
            n_rt += dec == t
            cases.append({"text": t, "ids": ids, "decoded": dec})
        path = os.path.join(out_dir, f"tok_{name}.golden.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"tokenizer": base, "patch": patch, "add_special_tokens": True, "cases": cases},
                      f, ensure_ascii=False, indent=0)
            f.write("\n")
        print(f"{path}: {len(cases)} texts, {sum(len(c['ids']) for c in cases)} ids, "
              f"{n_rt} decode back to the text exactly", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("goldens")
    g.add_argument("--shared", default="../shared")
    g.add_argument("--out-dir", default="tests/data")
    e = sub.add_parser("encode")
    e.add_argument("tokenizer")
    e.add_argument("text")
    e.add_argument("--variant", choices=sorted(VARIANTS), help="apply this golden variant's patch")
    a = ap.parse_args()
    if a.cmd == "goldens":
        goldens(a.shared, a.out_dir)
    else:
        tok = Tokenizer(a.tokenizer, VARIANTS[a.variant][1] if a.variant else None)
        ids = tok.encode(a.text)
        print(ids)
        print([tok.inv[i] for i in ids])
        print(repr(tok.decode(ids)))


if __name__ == "__main__":
    main()
