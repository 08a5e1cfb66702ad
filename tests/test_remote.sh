#!/bin/sh
# test_remote.sh - BiLD across processes: bild small-worker and large-worker
# serve over ZeroMQ (ipc:// in a temp folder, and tcp://127.0.0.1), and the
# coordinator (bild generate --prompts, one request per prompt) must give the
# same tokens and the same statistics as the in-process run, greedy, on the
# 20 TinyStories prompts of tests/data/prompts20.txt x 3 threshold settings;
# --overlap gives the same tokens and statistics too. Round trips: exactly
# one per draft block and one per large pass in the sequential mode (no
# per-token round trips); with overlap, at most one more per speculative
# draft. Also: one worker remote and one in process; a worker refuses a
# non-loopback bind; a dead endpoint times out with a clear message; a role
# mismatch fails the handshake. Workers are killed by pid on any exit.
set -u
. tests/cli_lib.sh

PORT=$((20000 + $$ % 6000 * 2))
start_worker small-worker "$SM" "ipc://$tmp/small.sock" "$tmp/s.log" || exit 1
start_worker large-worker "$LG" "ipc://$tmp/large.sock" "$tmp/l.log" || exit 1
start_worker small-worker "$SM" "tcp://127.0.0.1:$PORT" "$tmp/s2.log" || exit 1
start_worker large-worker "$LG" "tcp://127.0.0.1:$((PORT + 1))" "$tmp/l2.log" || exit 1
IPC="--small-endpoint ipc://$tmp/small.sock --large-endpoint ipc://$tmp/large.sock -z $TOK"
TCP="--small-endpoint tcp://127.0.0.1:$PORT --large-endpoint tcp://127.0.0.1:$((PORT + 1)) -z $TOK"

# compare NAME LOCAL.jsonl REMOTE.jsonl OVERLAP(0/1)
compare() {
    /usr/bin/python3 - "$2" "$3" "$4" <<'PY' && echo "ok   $1" || fail "$1"
import json, sys
A, B = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
overlap = sys.argv[3] == "1"
keys = ["generated", "small_tokens", "large_tokens", "large_passes", "small_passes", "fallbacks", "rollbacks",
        "rolled_back", "n_drafted", "n_accept", "draft_calls", "verify_calls"]
assert len(A) == len(B) == 20, (len(A), len(B))
trips = toks = byts = spec = kept = 0
for i, (a, b) in enumerate(zip(A, B)):
    assert "error" not in b, b
    assert a["tokens"] == b["tokens"], "prompt %d: tokens differ" % (i + 1)
    sa, sb = a["stats"], b["stats"]
    assert all(sa[k] == sb[k] for k in keys), {k: (sa[k], sb[k]) for k in keys if sa[k] != sb[k]}
    assert sa["round_trips"] == 0 and sb["round_trips"] > 0
    calls = sb["draft_calls"] + sb["verify_calls"]
    if overlap:
        assert calls <= sb["round_trips"] <= calls + sb["overlap_drafts"], (sb["round_trips"], calls)
    else:
        assert sb["round_trips"] == calls, (sb["round_trips"], calls)
    trips += sb["round_trips"]; toks += sb["generated"]; byts += sb["bytes_moved"]
    spec += sb["overlap_drafts"]; kept += sb["overlap_kept"]
print("   20 prompts, %d tokens: %.2f round trips and %.0f bytes per token%s" % (
    toks, trips / toks, byts / toks, "; overlap drafts %d, kept %d" % (spec, kept) if overlap else ""))
PY
}

for th in "0.3 2" "0.6 5" "0.9 1"; do
    set -- $th
    args="--prompts tests/data/prompts20.txt -n 64 --fallback $1 --rollback $2 -q"
    "$BILD" generate -S "$SM" -L "$LG" $args >"$tmp/local.jsonl" 2>"$tmp/err" || fail "in-process run: $(cat "$tmp/err")"
    "$BILD" generate $IPC $args >"$tmp/ipc.jsonl" 2>"$tmp/err" || fail "ipc run: $(cat "$tmp/err")"
    compare "fallback $1 rollback $2 over ipc://" "$tmp/local.jsonl" "$tmp/ipc.jsonl" 0
    "$BILD" generate $TCP $args >"$tmp/tcp.jsonl" 2>"$tmp/err" || fail "tcp run: $(cat "$tmp/err")"
    compare "fallback $1 rollback $2 over tcp://127.0.0.1" "$tmp/local.jsonl" "$tmp/tcp.jsonl" 0
    "$BILD" generate $IPC --overlap $args >"$tmp/ov.jsonl" 2>"$tmp/err" || fail "overlap run: $(cat "$tmp/err")"
    compare "fallback $1 rollback $2 over ipc:// with --overlap" "$tmp/local.jsonl" "$tmp/ov.jsonl" 1
done
# faithful mode too
args="--prompts tests/data/prompts20.txt -n 64 --faithful -q"
"$BILD" generate -S "$SM" -L "$LG" $args >"$tmp/local.jsonl" 2>&1
"$BILD" generate $TCP --overlap $args >"$tmp/ov.jsonl" 2>"$tmp/err" || fail "faithful overlap run: $(cat "$tmp/err")"
compare "faithful mode over tcp:// with --overlap" "$tmp/local.jsonl" "$tmp/ov.jsonl" 1

# one remote, one local worker
"$BILD" generate -S "$SM" --large-endpoint "ipc://$tmp/large.sock" -z "$TOK" -p "Lily and Tom were playing." -n 40 --json -q \
    >"$tmp/mixed.json" 2>&1 || fail "mixed run"
"$BILD" generate -S "$SM" -L "$LG" -p "Lily and Tom were playing." -n 40 --json -q >"$tmp/local.json" 2>&1
/usr/bin/python3 -c 'import json,sys; a,b=(json.load(open(p)) for p in sys.argv[1:]); sys.exit(a["tokens"]!=b["tokens"])' \
    "$tmp/local.json" "$tmp/mixed.json" && echo "ok   small in process, large remote" || fail "mixed run differs"

expect "non-loopback bind refused" 2 "--allow-remote" -- small-worker -m "$SM" -z "$TOK" -b "tcp://0.0.0.0:$((PORT + 2))"
expect "dead endpoint times out" 5 "ipc://$tmp/nobody.sock" -- generate --small-endpoint "ipc://$tmp/nobody.sock" \
    -L "$LG" -p x --timeout 300
expect "role mismatch" 5 "wrong role" -- generate --small-endpoint "ipc://$tmp/large.sock" -L "$LG" -p x --timeout 2000
echo "test_remote: $fails failed"
[ $fails -eq 0 ]
