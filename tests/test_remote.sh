#!/bin/sh
# test_remote.sh - BiLD across processes: bild small-worker and large-worker
# serve over ZeroMQ (ipc:// in a temp folder, and tcp://127.0.0.1), and
# `bild generate --small-endpoint/--large-endpoint` must give the same tokens
# and the same statistics as the in-process run, greedy, on 5 TinyStories
# prompts x 3 threshold settings. Also: a worker refuses a non-loopback bind,
# a dead endpoint times out with a clear message, a role mismatch fails the
# handshake. Workers are killed by pid on any exit.
set -u
. tests/cli_lib.sh
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

# start_worker ROLE MODEL ENDPOINT LOG: starts it and waits (<= 20 s) for "listening"
start_worker() {
    "$BILD" "$1" -m "$2" -z "$TOK" -b "$3" -j 1 2>"$4" &
    pids="$pids $!"
    i=0
    while ! grep -q "listening on" "$4" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 200 ]; then fail "$1 did not start: $(cat "$4")"; return 1; fi
        sleep 0.1
    done
}

PORT=$((20000 + $$ % 20000))
start_worker small-worker "$SM" "ipc://$tmp/small.sock" "$tmp/s.log" || exit 1
start_worker large-worker "$LG" "ipc://$tmp/large.sock" "$tmp/l.log" || exit 1
start_worker small-worker "$SM" "tcp://127.0.0.1:$PORT" "$tmp/s2.log" || exit 1
start_worker large-worker "$LG" "tcp://127.0.0.1:$((PORT + 1))" "$tmp/l2.log" || exit 1

compare() { # compare NAME LOCAL.json REMOTE.json
    python3 - "$2" "$3" <<'PY' && echo "ok   $1" || fail "$1"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
keys = ["generated", "small_tokens", "large_tokens", "large_passes", "small_passes", "fallbacks", "rollbacks",
        "rolled_back", "n_drafted", "n_accept"]
assert a["tokens"] == b["tokens"], "tokens differ"
assert all(a["stats"][k] == b["stats"][k] for k in keys), {k: (a["stats"][k], b["stats"][k]) for k in keys}
assert b["stats"]["round_trips"] > 0 and a["stats"]["round_trips"] == 0
PY
}

n=0
head -n 5 tests/data/prompts20.txt >"$tmp/prompts"
while IFS= read -r P; do
    n=$((n + 1))
    for th in "0.3 2" "0.6 5" "0.9 1"; do
        set -- $th
        "$BILD" generate -S "$SM" -L "$LG" -p "$P" -n 64 --fallback "$1" --rollback "$2" --json -q >"$tmp/local.json" 2>&1
        "$BILD" generate --small-endpoint "ipc://$tmp/small.sock" --large-endpoint "ipc://$tmp/large.sock" -z "$TOK" \
            -p "$P" -n 64 --fallback "$1" --rollback "$2" --json -q >"$tmp/ipc.json" 2>"$tmp/err" || fail "ipc run: $(cat "$tmp/err")"
        compare "prompt $n fb $1 rb $2 over ipc://" "$tmp/local.json" "$tmp/ipc.json"
        "$BILD" generate --small-endpoint "tcp://127.0.0.1:$PORT" --large-endpoint "tcp://127.0.0.1:$((PORT + 1))" \
            -z "$TOK" -p "$P" -n 64 --fallback "$1" --rollback "$2" --json -q >"$tmp/tcp.json" 2>"$tmp/err" || fail "tcp run: $(cat "$tmp/err")"
        compare "prompt $n fb $1 rb $2 over tcp://127.0.0.1" "$tmp/local.json" "$tmp/tcp.json"
    done
done <"$tmp/prompts"

# one remote, one local worker
"$BILD" generate -S "$SM" --large-endpoint "ipc://$tmp/large.sock" -z "$TOK" -p "Lily and Tom were playing." -n 40 --json -q \
    >"$tmp/mixed.json" 2>&1 || fail "mixed run"
"$BILD" generate -S "$SM" -L "$LG" -p "Lily and Tom were playing." -n 40 --json -q >"$tmp/local.json" 2>&1
compare "small in process, large remote" "$tmp/local.json" "$tmp/mixed.json"

expect "non-loopback bind refused" 2 "--allow-remote" -- small-worker -m "$SM" -z "$TOK" -b "tcp://0.0.0.0:$((PORT + 2))"
expect "dead endpoint times out" 5 "ipc://$tmp/nobody.sock" -- generate --small-endpoint "ipc://$tmp/nobody.sock" \
    -L "$LG" -p x --timeout 300
expect "role mismatch" 5 "wrong role" -- generate --small-endpoint "ipc://$tmp/large.sock" -L "$LG" -p x --timeout 2000
expect "remote sampling refused" 2 "greedily" -- generate --small-endpoint "ipc://$tmp/small.sock" -L "$LG" -p x -t 1
echo "test_remote: $fails failed"
[ $fails -eq 0 ]
