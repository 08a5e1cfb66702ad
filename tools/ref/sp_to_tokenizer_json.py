#!/usr/bin/python3
"""sp_to_tokenizer_json.py - a SentencePiece Unigram .model as a Hugging Face
tokenizer.json, laid out the way transformers' T5 converter writes them, so
that bild's Unigram loader (model/tokenizer_hf.c) can be checked against the
`tokenizers` library on files we made ourselves.

Reads the ModelProto (python3-sentencepiece's sentencepiece_model_pb2, which
needs python3-protobuf): the pieces, their scores and types, the trainer's
unk_id and byte_fallback, and the normalizer's precompiled_charsmap.

Written file:
  added_tokens   every CONTROL and UNKNOWN piece (T5: <pad>, </s>, <unk>),
                 special, not normalized
  normalizer     --style t5:     Sequence[Precompiled, Replace(Regex " {2,}" -> " ")]
                 --style legacy: Precompiled alone
                 (no charsmap, e.g. the identity rule: only the Replace, or null)
  pre_tokenizer  t5:     Sequence[WhitespaceSplit, Metaspace(prepend_scheme always, split)]
                 legacy: Metaspace(add_prefix_space true)
  post_processor TemplateProcessing, single [$A, </s>], pair [$A, </s>, $B, </s>]
  decoder        Metaspace (with byte_fallback: Sequence[Metaspace, ByteFallback])
  model          Unigram, unk_id, vocab [[piece, score], ...] in id order, byte_fallback

Usage: sp_to_tokenizer_json.py MODEL OUT [--style t5|legacy]
"""
import argparse
import base64
import json

from sentencepiece import sentencepiece_model_pb2 as spm_pb2

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPACE = "\u2581"


def convert(model_path, style):
    proto = spm_pb2.ModelProto()
    with open(model_path, "rb") as f:
        proto.ParseFromString(f.read())
    if proto.trainer_spec.model_type != 1:  # UNIGRAM
        raise SystemExit(f"{model_path}: model_type {proto.trainer_spec.model_type} is not Unigram")
    pieces = [(p.piece, p.score, p.type) for p in proto.pieces]
    unk_id = proto.trainer_spec.unk_id
    byte_fallback = bool(proto.trainer_spec.byte_fallback)
    eos = proto.trainer_spec.eos_piece
    eos_id = next(i for i, p in enumerate(pieces) if p[0] == eos)

    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}
             for i, (s, _, ty) in enumerate(pieces) if ty in (CONTROL, UNKNOWN)]

    charsmap = proto.normalizer_spec.precompiled_charsmap
    replace = {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}
    if style == "t5":
        norms = ([{"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode()}]
                 if charsmap else []) + [replace]
        normalizer = {"type": "Sequence", "normalizers": norms}
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "WhitespaceSplit"},
            {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "always", "split": True}]}
        meta_dec = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "always", "split": True}
    else:
        normalizer = ({"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode()}
                      if charsmap else None)
        pre = {"type": "Metaspace", "replacement": SPACE, "add_prefix_space": True}
        meta_dec = {"type": "Metaspace", "replacement": SPACE, "add_prefix_space": True}
    decoder = {"type": "Sequence", "decoders": [meta_dec, {"type": "ByteFallback"}]} if byte_fallback else meta_dec

    seq_a = {"Sequence": {"id": "A", "type_id": 0}}
    seq_b = {"Sequence": {"id": "B", "type_id": 0}}
    eos_tok = {"SpecialToken": {"id": eos, "type_id": 0}}
    post = {"type": "TemplateProcessing", "single": [seq_a, eos_tok], "pair": [seq_a, eos_tok, seq_b, eos_tok],
            "special_tokens": {eos: {"id": eos, "ids": [eos_id], "tokens": [eos]}}}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre,
        "post_processor": post,
        "decoder": decoder,
        "model": {"type": "Unigram", "unk_id": unk_id, "vocab": [[s, sc] for s, sc, _ in pieces],
                  "byte_fallback": byte_fallback},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--style", choices=["t5", "legacy"], default="t5")
    a = ap.parse_args()
    doc = convert(a.model, a.style)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
