#!/bin/sh
# test_launch.sh - launch/local.sh runs BiLD as three processes with the same
# text as the in-process run, and leaves no worker behind, also when the
# coordinator fails.
set -u
. tests/cli_lib.sh
P="One morning, a cat named Tom woke up."
export BILD
LAUNCH_DIR=$tmp/run sh launch/local.sh --small "$SM" --large "$LG" --tokenizer "$TOK" -- -p "$P" -n 60 -q \
    >"$tmp/three.txt" 2>"$tmp/err" || fail "launch/local.sh: $(cat "$tmp/err")"
"$BILD" generate -S "$SM" -L "$LG" -p "$P" -n 60 -q >"$tmp/one.txt" 2>&1
cmp -s "$tmp/three.txt" "$tmp/one.txt" && echo "ok   three processes == one process" || fail "texts differ"
pgrep -f "$tmp/run" >/dev/null && fail "workers left running" || echo "ok   no worker left"
LAUNCH_DIR=$tmp/run2 sh launch/local.sh --small "$SM" --large "$LG" --tokenizer "$TOK" -- -p x --rollback 0 \
    >/dev/null 2>&1 && fail "a bad coordinator argument should fail"
pgrep -f "$tmp/run2" >/dev/null && fail "workers left running after a failure" || echo "ok   no worker left after a failure"
echo "test_launch: $fails failed"
[ $fails -eq 0 ]
