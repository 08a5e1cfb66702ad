#!/usr/bin/python3
"""Rewrites a Hugging Face folder's model.safetensors as N shards
(model-0000i-of-0000N.safetensors) plus model.safetensors.index.json, the
layout transformers writes for large checkpoints; every other file is
copied. Tensors keep their header order and bytes; each shard gets about
1/N of them. Standard library only.

usage: shard_safetensors.py SRC_DIR DEST_DIR [--shards N]
"""
import argparse
import json
import os
import shutil
import struct


def read(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    head = json.loads(buf[8:8 + n])
    data = buf[8 + n:]
    meta = head.pop("__metadata__", None)
    items = [(k, v, data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in head.items()]
    return items, meta


def write(path, items):
    head, off, blobs = {}, 0, []
    for name, info, raw in items:
        head[name] = {"dtype": info["dtype"], "shape": info["shape"], "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(head).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return off


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("dest")
    ap.add_argument("--shards", type=int, default=2)
    a = ap.parse_args()
    items, _ = read(os.path.join(a.src, "model.safetensors"))
    if not 1 <= a.shards <= len(items):
        ap.error("--shards must be between 1 and the number of tensors (%d)" % len(items))
    os.makedirs(a.dest, exist_ok=True)
    for f in os.listdir(a.src):
        if f != "model.safetensors" and os.path.isfile(os.path.join(a.src, f)):
            shutil.copy(os.path.join(a.src, f), os.path.join(a.dest, f))
    n, total, wm = a.shards, 0, {}
    for i in range(n):
        part = items[i * len(items) // n:(i + 1) * len(items) // n]
        name = "model-%05d-of-%05d.safetensors" % (i + 1, n)
        total += write(os.path.join(a.dest, name), part)
        for t in part:
            wm[t[0]] = name
    with open(os.path.join(a.dest, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=1)


if __name__ == "__main__":
    main()
