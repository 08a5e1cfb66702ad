#!/bin/sh
# test_plane.sh - sampling with workers in other processes, and the data
# plane (proto/plane.h). Speculative sampling (--mode spec -t 0.8) over
# ipc:// workers gives the same tokens and statistics as in process, with
# the distributions relayed by the coordinator (--data-plane messages) and
# sent worker to worker (--data-plane host, the acceptance then running on
# the large worker with the coordinator's random stream); the host plane
# moves almost nothing through the coordinator. BiLD sampling over remote
# workers equals in process too (the workers' samplers are seeded by the
# SESSION message). auto picks messages for CPU workers; nccl on CPU
# workers is refused with the reason; a restarted small worker gets a new
# plane. Workers are killed by pid on any exit.
set -u
. tests/cli_lib.sh

start_worker small-worker "$SM" "ipc://$tmp/small.sock" "$tmp/s.log" || exit 1
spid=$last
start_worker large-worker "$LG" "ipc://$tmp/large.sock" "$tmp/l.log" || exit 1
EP="--small-endpoint ipc://$tmp/small.sock --large-endpoint ipc://$tmp/large.sock -z $TOK"
head -n 6 tests/data/prompts20.txt >"$tmp/prompts.txt"

# compare NAME LOCAL.jsonl REMOTE.jsonl PLANE: same tokens and statistics, the plane reported
compare() {
    /usr/bin/python3 - "$2" "$3" "$4" <<'PY' && echo "ok   $1" || fail "$1"
import json, sys
A, B = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
keys = ["generated", "small_tokens", "large_tokens", "large_passes", "small_passes", "fallbacks", "rollbacks",
        "rolled_back", "n_drafted", "n_accept", "draft_calls", "verify_calls"]
assert len(A) == len(B) == 6, (len(A), len(B))
toks = byts = 0
for i, (a, b) in enumerate(zip(A, B)):
    assert "error" not in b, b
    assert a["tokens"] == b["tokens"], "prompt %d: tokens differ" % (i + 1)
    sa, sb = a["stats"], b["stats"]
    assert all(sa[k] == sb[k] for k in keys), {k: (sa[k], sb[k]) for k in keys if sa[k] != sb[k]}
    assert b["data_plane"] == sys.argv[3], b["data_plane"]
    toks += sb["generated"]; byts += sb["bytes_moved"]
print("   6 prompts, %d tokens, %d rollbacks: %.0f bytes per token through the coordinator" % (
    toks, sum(x["stats"]["rollbacks"] for x in B), byts / toks))
PY
}

args="--prompts $tmp/prompts.txt -n 40 --mode spec -t 0.8 -s 7 -q"
"$BILD" generate -S "$SM" -L "$LG" -j 1 $args >"$tmp/local.jsonl" 2>"$tmp/err" || fail "in process: $(cat "$tmp/err")"
for dp in messages host auto; do
    "$BILD" generate $EP $args --data-plane $dp >"$tmp/$dp.jsonl" 2>"$tmp/err" || fail "$dp: $(cat "$tmp/err")"
    want=$dp; [ $dp = auto ] && want=messages
    compare "spec sampling, --data-plane $dp == in process" "$tmp/local.jsonl" "$tmp/$dp.jsonl" $want
done
/usr/bin/python3 - "$tmp/messages.jsonl" "$tmp/host.jsonl" <<'PY' && echo "ok   the host plane keeps the distributions out of the coordinator" || fail "bytes through the coordinator"
import json, sys
m, h = (sum(json.loads(l)["stats"]["bytes_moved"] for l in open(p)) for p in sys.argv[1:])
print("   bytes through the coordinator: messages %d, host %d" % (m, h))
assert h * 100 < m, (m, h)
PY
grep -q "data plane host open (rank 0, ipc://" "$tmp/l.log" && grep -q "data plane host open (rank 1" "$tmp/s.log" &&
    echo "ok   both workers log the plane" || fail "worker logs: $(cat "$tmp/l.log" "$tmp/s.log")"

# BiLD with sampling: the workers sample with the coordinator's seeds
args="--prompts $tmp/prompts.txt -n 40 -t 0.7 -s 11 -q"
"$BILD" generate -S "$SM" -L "$LG" -j 1 $args >"$tmp/local.jsonl" 2>"$tmp/err" || fail "in process: $(cat "$tmp/err")"
"$BILD" generate $EP $args >"$tmp/bild.jsonl" 2>"$tmp/err" || fail "bild sampling: $(cat "$tmp/err")"
compare "BiLD sampling over remote workers == in process" "$tmp/local.jsonl" "$tmp/bild.jsonl" messages

# greedy needs no plane; nccl on CPU workers is refused with the reason
"$BILD" generate $EP -p "Tom had a dog" -n 10 --data-plane host --json -q >"$tmp/g.json" 2>"$tmp/err" &&
    grep -q '"data_plane":"messages"' "$tmp/g.json" && echo "ok   greedy: no plane needed" ||
    fail "greedy with --data-plane host: $(cat "$tmp/err" "$tmp/g.json")"
expect "nccl on CPU workers refused" 5 "needs the workers on two different GPUs" -- generate $EP -p x -n 5 \
    --mode spec -t 1 --data-plane nccl -q
expect "unknown plane" 2 "--data-plane: unknown kind" -- generate $EP -p x --data-plane tcp

# a restarted small worker: a fresh plane
kill "$spid"; wait "$spid" 2>/dev/null
rm -f "$tmp/s.log"
start_worker small-worker "$SM" "ipc://$tmp/small.sock" "$tmp/s.log" || exit 1
args="--prompts $tmp/prompts.txt -n 40 --mode spec -t 0.8 -s 7 -q"
"$BILD" generate -S "$SM" -L "$LG" -j 1 $args >"$tmp/local.jsonl" 2>&1
"$BILD" generate $EP $args --data-plane host >"$tmp/host2.jsonl" 2>"$tmp/err" || fail "after restart: $(cat "$tmp/err")"
compare "after a small-worker restart, --data-plane host == in process" "$tmp/local.jsonl" "$tmp/host2.jsonl" host
echo "test_plane: $fails failed"
[ $fails -eq 0 ]
