#!/bin/sh
# test_sessions.sh - workers shared by many coordinators (real processes).
#
# 1. Exactness under concurrency: 8 coordinators started together against
#    one worker pair, each running tests/data/prompts20.txt, must give
#    exactly the tokens and the counting statistics (tokens from each
#    model, fallbacks, rollbacks, drafted, accepted, passes) of the same
#    requests run in process: over ipc://, over tcp://, with --overlap,
#    and with speculative sampling (--mode spec -t 1: the workers sample);
#    the workers must have run several sessions' requests together (each
#    says how many on exit: verifications in one pass, drafts in lockstep).
#    One coordinator with --parallel 8 gives each request's in-process
#    result too, and so does --parallel 8 with in-process models (worker
#    threads on inproc://, batching too); --parallel is refused where it
#    cannot hold (sampling, a single prompt).
# 2. Eviction never gives a wrong answer: with --max-sessions 1, a second
#    coordinator's session evicts the first one's; the first coordinator's
#    next request fails with a message saying its session was evicted, and
#    the request after that (a new session) gives the in-process text again.
#    With --session-idle 1, a coordinator quiet for 2 s gets the same kind
#    of message naming the idle limit.
# 3. A coordinator killed with SIGKILL (no BYE): both workers end its
#    sessions when its connections close.
set -u
. tests/cli_lib.sh
N=24
P=tests/data/prompts20.txt
NC=8
PORT=$((20000 + $$ % 6000 * 2))
"$BILD" generate -S "$SM" -L "$LG" --prompts "$P" -n $N -j 1 >"$tmp/ref.jsonl" 2>"$tmp/ref.err" \
    || { echo "FAIL: the in-process run: $(cat "$tmp/ref.err")"; exit 1; }

"$BILD" generate -S "$SM" -L "$LG" --prompts "$P" -n $N -j 1 --mode spec -t 1 -s 5 >"$tmp/ref_spec.jsonl" \
    2>"$tmp/ref.err" || { echo "FAIL: the in-process sampling run: $(cat "$tmp/ref.err")"; exit 1; }
REF=$tmp/ref.jsonl

# same REF OUT: tokens and counting statistics of every line equal
same() {
    /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
keys = ["generated", "small_tokens", "large_tokens", "large_passes", "small_passes", "fallbacks", "rollbacks",
        "rolled_back", "n_drafted", "n_accept"]
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(b) == len(a) == 20, "%d lines, want %d" % (len(b), len(a))
for i, (x, y) in enumerate(zip(a, b)):
    assert "error" not in y, "request %d: %s" % (i, y["error"])
    assert x["tokens"] == y["tokens"], "request %d: tokens differ" % i
    for k in keys:
        assert x["stats"][k] == y["stats"][k], "request %d: %s %r vs %r" % (i, k, x["stats"][k], y["stats"][k])
PY
}

# run_many NAME ARGS...: NC coordinators at once, each the whole prompt file
run_many() {
    name=$1
    shift
    cpids=""
    for c in $(seq $NC); do
        "$BILD" generate "$@" -z "$TOK" --prompts "$P" -n $N -j 1 >"$tmp/c$c.jsonl" 2>"$tmp/c$c.err" &
        cpids="$cpids $!"
    done
    bad=0
    c=0
    for p in $cpids; do
        c=$((c + 1))
        if ! wait "$p"; then
            fail "$name: coordinator $c exited non-zero: $(tail -n 2 "$tmp/c$c.err")"
            bad=1
        elif ! err=$(same "$REF" "$tmp/c$c.jsonl" 2>&1); then
            fail "$name: coordinator $c: $(echo "$err" | tail -n 1)"
            bad=1
        fi
    done
    [ $bad -eq 0 ] && echo "ok   $name: $NC coordinators x 20 requests, tokens and statistics as in process"
}

start_worker small-worker "$SM" "ipc://$tmp/small.sock" "$tmp/s.log" || exit 1
sw=$last
start_worker large-worker "$LG" "ipc://$tmp/large.sock" "$tmp/l.log" || exit 1
lw=$last
IPC="--small-endpoint ipc://$tmp/small.sock --large-endpoint ipc://$tmp/large.sock"
run_many "ipc://" $IPC
run_many "ipc:// --overlap" $IPC --overlap
REF=$tmp/ref_spec.jsonl run_many "ipc:// speculative sampling (-t 1)" $IPC --mode spec -t 1 -s 5
# one coordinator, --parallel 8: the same results by id, in completion order
/usr/bin/python3 -c 'import json, sys
for i, l in enumerate(open(sys.argv[1])): print(json.dumps({"id": i, "prompt": l.strip()}))' "$P" >"$tmp/req.jsonl"
if "$BILD" generate $IPC -z "$TOK" --requests "$tmp/req.jsonl" -n $N -j 1 --parallel 8 >"$tmp/par.jsonl" 2>"$tmp/par.err" &&
   /usr/bin/python3 - "$tmp/ref.jsonl" "$tmp/par.jsonl" <<'PY'
import json, sys
ref = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
assert sorted(j["id"] for j in got) == list(range(20)), [j.get("id") for j in got]
for j in got:
    assert j["tokens"] == ref[j["id"]]["tokens"], "request %d differs" % j["id"]
    assert j["stats"]["fallbacks"] == ref[j["id"]]["stats"]["fallbacks"]
PY
then echo "ok   --parallel 8: 20 requests, each as in process ($(tail -n 1 "$tmp/par.err" | sed 's/.*served/served/'))"
else fail "--parallel 8: $(tail -n 2 "$tmp/par.err")"
fi
# in-process models with --parallel 8: worker threads on inproc://, the same results by id
for opt in "" "--overlap" "--mode large" "--mode spec --gamma 4"; do
    ref=$tmp/ref.jsonl
    if [ -n "$opt" ]; then
        ref=$tmp/ref_in.jsonl
        "$BILD" generate -S "$SM" -L "$LG" $opt --prompts "$P" -n $N -j 1 >"$ref" 2>"$tmp/ref.err" || fail "in process $opt"
    fi
    if "$BILD" generate -S "$SM" -L "$LG" $opt --requests "$tmp/req.jsonl" -n $N -j 1 --parallel 8 \
           >"$tmp/par.jsonl" 2>"$tmp/par.err" && /usr/bin/python3 - "$ref" "$tmp/par.jsonl" <<'PY'
import json, sys
keys = ["generated", "small_tokens", "large_tokens", "large_passes", "small_passes", "fallbacks", "rollbacks",
        "rolled_back", "n_drafted", "n_accept"]
ref = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
assert sorted(j["id"] for j in got) == list(range(20)), [j.get("id") for j in got]
for j in got:
    assert j["tokens"] == ref[j["id"]]["tokens"], "request %d differs" % j["id"]
    for k in keys:
        assert j["stats"][k] == ref[j["id"]]["stats"][k], "request %d: %s" % (j["id"], k)
PY
    then
        grep -q "in-process workers: .* in [1-9][0-9]* batched passes" "$tmp/par.err" \
            && echo "ok   in-process --parallel 8 $opt: 20 requests as serially in process, batched ($(grep -o '[0-9]* verifications in [0-9]* batched passes' "$tmp/par.err"))" \
            || fail "in-process --parallel 8 $opt: no batched passes: $(tail -n 2 "$tmp/par.err")"
    else fail "in-process --parallel 8 $opt: $(tail -n 2 "$tmp/par.err")"
    fi
done
expect "--parallel with sampling refused" 2 "--parallel is for greedy decoding" -- generate $IPC -z "$TOK" \
    --prompts "$P" --parallel 2 --mode spec -t 1
expect "--parallel without serving refused" 2 "--parallel is for serving" -- generate $IPC -z "$TOK" -p "x" --parallel 2

start_worker small-worker "$SM" "tcp://127.0.0.1:$PORT" "$tmp/s2.log" || exit 1
start_worker large-worker "$LG" "tcp://127.0.0.1:$((PORT + 1))" "$tmp/l2.log" || exit 1
run_many "tcp://127.0.0.1" --small-endpoint "tcp://127.0.0.1:$PORT" --large-endpoint "tcp://127.0.0.1:$((PORT + 1))"
grep -q "up to 16 sessions" "$tmp/l.log" && echo "ok   the worker says how many sessions it keeps" \
    || fail "no session limit in the start-up line: $(head -n 1 "$tmp/l.log")"
# the workers ran several sessions' requests together (and the results above were exact)
kill "$lw" "$sw" && wait "$lw" "$sw" 2>/dev/null
b=$(grep -o "[0-9]* verifications of several sessions ran together in [0-9]* passes" "$tmp/l.log")
[ -n "$b" ] && echo "ok   batched verification on the ipc:// pair: $b" || fail "no batched verification: $(tail -n 2 "$tmp/l.log")"
b=$(grep -o "[0-9]* drafts of several sessions ran together in [0-9]* lockstep runs" "$tmp/s.log")
[ -n "$b" ] && echo "ok   batched drafting on the ipc:// pair: $b" || fail "no batched drafting: $(tail -n 2 "$tmp/s.log")"

# 2. eviction: a coordinator in serve mode fed one request line at a time
# through a FIFO held open on descriptor 3
ask() { # ask ID: one request to the serving coordinator, then wait for its result line
    echo "{\"id\": $1, \"prompt\": \"Tom had a dog.\", \"max_tokens\": 20}" >&3
    i=0
    while [ "$(grep -c "\"id\":$1," "$tmp/a.jsonl")" -eq 0 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
}
"$BILD" generate -S "$SM" -L "$LG" -p "Tom had a dog." -n 20 --json -q -j 1 >"$tmp/one.json" 2>/dev/null
want=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens"])' "$tmp/one.json")
toks() { /usr/bin/python3 -c 'import json,sys
for l in open(sys.argv[1]):
    j = json.loads(l)
    if j["id"] == int(sys.argv[2]): print(j.get("tokens", "error: " + j.get("error", "?")))' "$tmp/a.jsonl" "$1"; }
errof() { /usr/bin/python3 -c 'import json,sys
for l in open(sys.argv[1]):
    j = json.loads(l)
    if j["id"] == int(sys.argv[2]): print(j.get("error", "(no error)"))' "$tmp/a.jsonl" "$1"; }

evict_case() { # evict_case NAME PATTERN WORKER-ARGS...: request 2's error must contain PATTERN
    name=$1 pat=$2
    shift 2
    start_worker small-worker "$SM" "ipc://$tmp/es.sock" "$tmp/es.log" "$@" || return 1
    ws=$last
    start_worker large-worker "$LG" "ipc://$tmp/el.sock" "$tmp/el.log" "$@" || return 1
    wl=$last
    E="--small-endpoint ipc://$tmp/es.sock --large-endpoint ipc://$tmp/el.sock -z $TOK"
    rm -f "$tmp/fifo" && mkfifo "$tmp/fifo"
    "$BILD" generate $E --requests - -j 1 <"$tmp/fifo" >"$tmp/a.jsonl" 2>"$tmp/a.err" &
    apid=$!
    exec 3>"$tmp/fifo"
    ask 1
    [ "$(toks 1)" = "$want" ] && echo "ok   $name: first request as in process" || fail "$name: request 1: $(toks 1)"
    case "$name" in
    *max-sessions*)
        "$BILD" generate $E -p "Lily had a cat." -n 10 -q -j 1 >/dev/null 2>"$tmp/b.err" \
            || fail "$name: the second coordinator failed: $(cat "$tmp/b.err")" ;;
    *) sleep 2.5 ;;
    esac
    ask 2
    e=$(errof 2)
    case "$e" in
    *"$pat"*) echo "ok   $name: the next request is refused: $e" ;;
    *) fail "$name: request 2 should fail naming '$pat', got: $e" ;;
    esac
    ask 3
    [ "$(toks 3)" = "$want" ] && echo "ok   $name: the request after that (a new session) as in process" \
        || fail "$name: request 3: $(toks 3)"
    exec 3>&-
    wait $apid
    kill $ws $wl 2>/dev/null
    wait $ws $wl 2>/dev/null # gone before the next case binds the same paths
}
evict_case "--max-sessions 1" "was evicted: least recently used" --max-sessions 1
evict_case "--session-idle 1" "was evicted: idle for 1 s" --session-idle 1

# 3. a coordinator killed (no BYE): both workers end its sessions when the connection closes
start_worker small-worker "$SM" "ipc://$tmp/ks.sock" "$tmp/ks.log" || exit 1
start_worker large-worker "$LG" "ipc://$tmp/kl.sock" "$tmp/kl.log" || exit 1
rm -f "$tmp/fifo" && mkfifo "$tmp/fifo"
"$BILD" generate --small-endpoint "ipc://$tmp/ks.sock" --large-endpoint "ipc://$tmp/kl.sock" -z "$TOK" --requests - -j 1 \
    <"$tmp/fifo" >"$tmp/a.jsonl" 2>"$tmp/a.err" &
apid=$!
exec 3>"$tmp/fifo"
ask 1
kill -9 $apid
exec 3>&-
i=0
until grep -q "ended: its coordinator went away" "$tmp/ks.log" && grep -q "ended: its coordinator went away" "$tmp/kl.log"; do
    i=$((i + 1)); [ $i -gt 50 ] && break; sleep 0.1
done
if [ $i -le 50 ]; then echo "ok   a killed coordinator's sessions end on both workers: $(grep "went away (the" "$tmp/kl.log")"
else fail "a killed coordinator's sessions did not end: $(tail -n 2 "$tmp/ks.log" "$tmp/kl.log")"
fi
exit $((fails > 0))
