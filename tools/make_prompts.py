#!/usr/bin/env python3
"""Writes tests/data/prompts20.txt: the first sentence of the first 20 whole
TinyStories validation stories in tests/data/tinystories/validation_100.txt
(stories are separated by <|endoftext|>; the file's first piece is a partial
story and is skipped). A sentence ends at the first '.', '!' or '?'.
One prompt per line. Used by the BiLD tests and benchmarks.
usage: python3 tools/make_prompts.py [STORIES_FILE] > tests/data/prompts20.txt"""
import re
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "tests/data/tinystories/validation_100.txt"
text = open(path, encoding="utf-8").read()
stories = [s.strip() for s in text.split("<|endoftext|>")][1:]
out = []
for s in stories:
    m = re.match(r"[^.!?]*[.!?]", s.replace("\n", " "))
    if m:
        out.append(m.group(0).strip())
    if len(out) == 20:
        break
assert len(out) == 20
print("\n".join(out))
