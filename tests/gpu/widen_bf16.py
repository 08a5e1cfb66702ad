#!/usr/bin/env python3
"""widen_bf16.py SRC_DIR DST_DIR - copies a Hugging Face model directory whose
model.safetensors holds BF16 tensors, widening every BF16 tensor to F32
exactly (a bf16 value is the top 16 bits of an f32). tests/gpu/run.sh uses
it to get an f32 stories15M (with bf16-rounded weights) onto a GPU machine
that the f32 original does not fit on (the transfer limit); the f32 and bf16
directories then hold the same numbers in two dtypes. numpy only."""
import json, os, shutil, struct, sys

import numpy as np


def main():
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    for f in os.listdir(src):
        if f != "model.safetensors":
            shutil.copy(os.path.join(src, f), os.path.join(dst, f))
    raw = open(os.path.join(src, "model.safetensors"), "rb").read()
    hlen = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + hlen])
    data = raw[8 + hlen:]
    out, blobs, off = {}, [], 0
    for name, t in head.items():
        if name == "__metadata__":
            out[name] = t
            continue
        a, b = t["data_offsets"]
        buf = data[a:b]
        if t["dtype"] == "BF16":
            buf = (np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16).tobytes()
            dt = "F32"
        else:
            dt = t["dtype"]
        out[name] = {"dtype": dt, "shape": t["shape"], "data_offsets": [off, off + len(buf)]}
        blobs.append(buf)
        off += len(buf)
    h = json.dumps(out).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(dst, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    cfg_path = os.path.join(dst, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["torch_dtype"] = "float32"
    json.dump(cfg, open(cfg_path, "w"), indent=2)


if __name__ == "__main__":
    main()
