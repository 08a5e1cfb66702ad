#!/bin/sh
# Installs the Debian packages the build and tests need, if any is missing.
# Idempotent and quick when everything is there (dpkg query only).
#   build:  gcc make libcjson-dev libmsgpack-dev libzmq3-dev libpcre2-dev libicu-dev
#   tests:  python3 (JSON checks, test-file surgery), python3-numpy (the converter
#           tools/llama2c_to_hf.py in tests/test_convert.sh), procps (pgrep)
# The golden generators in tools/ref need python3-torch, python3-numpy and python3-regex;
# pass --ref to install those as well. The alignment tools (tools/align: train_small.py)
# need python3-torch and python3-numpy; pass --align for those.
set -eu
PKGS="gcc make libc6-dev libcjson-dev libmsgpack-dev libzmq3-dev libpcre2-dev libicu-dev python3 python3-numpy procps clang libclang-rt-14-dev"
[ "${1:-}" = "--ref" ] && PKGS="$PKGS python3-torch python3-regex"
[ "${1:-}" = "--align" ] && PKGS="$PKGS python3-torch"
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
