#!/bin/sh
# test_faults.sh - the distributed mode under faults, with real processes.
# Every command runs under `timeout`, and every worker started here is
# killed by pid on exit. Checked:
#   - kill -9 of the large worker mid-request, then of the small worker: the
#     coordinator exits 5 within 5 s with a message naming the worker and its
#     address;
#   - a worker stopped with SIGSTOP: an error within 5 s (the heartbeat), no hang;
#   - serve mode (--requests): a request that meets a dead worker fails with
#     an error line, serving goes on, and the restarted worker is accepted
#     after a fresh handshake;
#   - the coordinator killed mid-request: the worker logs that it went away
#     and serves the next coordinator;
#   - refused at handshake with a reason: another vocabulary, another protocol
#     version, a CURVE key not on the allow list, CURVE on one side only;
#   - a second worker on an ipc:// path in use is refused (libzmq would
#     silently take the path over);
#   - SIGTERM: the worker exits 0.
set -u
. tests/cli_lib.sh
V2=${BUILD:-build}/tests/bild-proto1
TOK260=$T512
[ -x "$V2" ] || { echo "FAIL: $V2 missing (make all builds it)"; exit 1; }
pids=""
cleanup() { for p in $pids; do kill -9 "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
PROMPT="Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends."

# start BIN ROLE MODEL TOKENIZER ENDPOINT LOG [ARGS...]: starts a worker, waits
# (<= 20 s) until it listens; its pid in $wpid
start() {
    bin=$1 role=$2 model=$3 tk=$4 ep=$5 log=$6
    shift 6
    "$bin" "$role" -m "$model" -z "$tk" -b "$ep" -j 1 "$@" >/dev/null 2>"$log" 3>&- &
    wpid=$!
    pids="$pids $wpid"
    i=0
    while ! grep -q "listening on" "$log" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 200 ]; then fail "$role did not start: $(cat "$log")"; return 1; fi
        sleep 0.1
    done
}

now() { date +%s.%N; }
same_tokens() { /usr/bin/python3 -c 'import json,sys; a,b=(json.load(open(p)) for p in sys.argv[1:]); sys.exit(a["tokens"]!=b["tokens"])' "$1" "$2"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b - a}'; }

# gen_until_fault NAME PID SIGNAL PATTERN [LIMIT]: runs a long generation, sends
# SIGNAL to PID 0.3 s in, and requires exit 5 within LIMIT (default 5) s of the
# signal with PATTERN in the message
gen_until_fault() {
    name=$1 victim=$2 sig=$3 pat=$4 limit=${5:-5}
    (sleep 0.3; kill -"$sig" "$victim") &
    t0=$(now)
    timeout -k 1 30 "$BILD" generate --small-endpoint "ipc://$tmp/s.sock" --large-endpoint "ipc://$tmp/l.sock" \
        -z "$TOK" -p "$PROMPT" -n 230 --max-small 3 --fallback 0.9 -q >/dev/null 2>"$tmp/err"
    rc=$?
    took=$(elapsed "$t0")
    wait $! 2>/dev/null
    if [ $rc -ne 5 ]; then fail "$name: exit $rc, want 5: $(cat "$tmp/err")"
    elif ! grep -qF -- "$pat" "$tmp/err"; then fail "$name: message lacks '$pat': $(cat "$tmp/err")"
    elif awk -v t="$took" -v l="$limit" 'BEGIN{exit !(t > l + 0.3)}'; then fail "$name: took $took s (> $limit s after the fault)"
    else echo "ok   $name: exit 5 after $took s: $(cat "$tmp/err")"
    fi
}

start "$BILD" small-worker "$SM" "$TOK" "ipc://$tmp/s.sock" "$tmp/s.log" || exit 1
spid=$wpid
start "$BILD" large-worker "$LG" "$TOK" "ipc://$tmp/l.sock" "$tmp/l.log" || exit 1
lpid=$wpid

expect "ipc path in use refused" 1 "another process is listening" -- small-worker -m "$SM" -z "$TOK" -b "ipc://$tmp/s.sock"
gen_until_fault "kill -9 large worker" "$lpid" 9 "large worker at ipc://$tmp/l.sock"
start "$BILD" large-worker "$LG" "$TOK" "ipc://$tmp/l.sock" "$tmp/l.log" || exit 1
lpid=$wpid
gen_until_fault "kill -9 small worker" "$spid" 9 "small worker at ipc://$tmp/s.sock"
start "$BILD" small-worker "$SM" "$TOK" "ipc://$tmp/s.sock" "$tmp/s.log" || exit 1
spid=$wpid
# a stopped worker is silent: noticed after 3 missed heartbeats (1 s each)
gen_until_fault "SIGSTOP large worker" "$lpid" STOP "large worker at ipc://$tmp/l.sock" 8
kill -9 "$lpid" 2>/dev/null

# serve mode: request 1 fine; the large worker killed; request 2 fails with
# an error line; the worker restarted; request 3 fine after a new handshake
start "$BILD" large-worker "$LG" "$TOK" "ipc://$tmp/l.sock" "$tmp/l.log" || exit 1
lpid=$wpid
mkfifo "$tmp/in"
: >"$tmp/serve.out"
trap '' PIPE # a write to the fifo after the coordinator died must fail the test, not kill it
timeout -k 1 60 "$BILD" generate --small-endpoint "ipc://$tmp/s.sock" --large-endpoint "ipc://$tmp/l.sock" -z "$TOK" \
    --timeout 1500 --requests - >"$tmp/serve.out" 2>"$tmp/serve.err" <"$tmp/in" &
coord=$!
exec 3>"$tmp/in"
echo '{"id": 1, "prompt": "Tom had a red ball.", "max_tokens": 30}' >&3
i=0; while [ "$(wc -l <"$tmp/serve.out")" -lt 1 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
kill -9 "$lpid"
sleep 0.3
echo '{"id": 2, "prompt": "Tom had a red ball.", "max_tokens": 30}' >&3
i=0; while [ "$(wc -l <"$tmp/serve.out")" -lt 2 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
start "$BILD" large-worker "$LG" "$TOK" "ipc://$tmp/l.sock" "$tmp/l.log" || exit 1
lpid=$wpid
echo '{"id": 3, "prompt": "Tom had a red ball.", "max_tokens": 30}' >&3
exec 3>&-
wait $coord
rc=$?
/usr/bin/python3 - "$tmp/serve.out" "$rc" <<'PY' && echo "ok   serve mode: failed request reported, restarted worker accepted" || fail "serve mode: $(cat "$tmp/serve.out" "$tmp/serve.err")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 3, lines
a, b, c = lines
assert a["id"] == 1 and len(a["tokens"]) > 0, a
assert b["id"] == 2 and "error" in b and "large worker at ipc://" in b["error"], b
assert c["id"] == 3 and c["tokens"] == a["tokens"], c
assert sys.argv[2] == "1", "exit status %s, want 1 (one request failed)" % sys.argv[2]
print("request 2:", b["error"])
PY

# the coordinator killed mid-request: the worker notices and serves the next one
timeout -k 1 30 "$BILD" generate --small-endpoint "ipc://$tmp/s.sock" --large-endpoint "ipc://$tmp/l.sock" -z "$TOK" \
    -p "$PROMPT" -n 230 --max-small 3 --fallback 0.9 -q >/dev/null 2>&1 &
coord=$!
sleep 0.4
kill -9 $coord
t0=$(now)
i=0; while ! grep -q "went away" "$tmp/l.log" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if grep -q "went away" "$tmp/l.log"; then echo "ok   coordinator killed: the large worker noticed after $(elapsed "$t0") s"
else fail "coordinator killed: the large worker did not notice: $(cat "$tmp/l.log")"; fi
timeout -k 1 30 "$BILD" generate --small-endpoint "ipc://$tmp/s.sock" --large-endpoint "ipc://$tmp/l.sock" -z "$TOK" \
    -p "Tom had a red ball." -n 30 --json -q >"$tmp/next.json" 2>"$tmp/err" \
    && echo "ok   the workers serve the next coordinator" || fail "next coordinator: $(cat "$tmp/err")"

# refusals at handshake, each with its reason
start "$BILD" large-worker "$M260" "$TOK260" "ipc://$tmp/v.sock" "$tmp/v.log" || exit 1
expect "another vocabulary refused" 3 "holds another vocabulary" -- generate --small-endpoint "ipc://$tmp/s.sock" \
    --large-endpoint "ipc://$tmp/v.sock" -z "$TOK" -p x --timeout 5000
# same size, one piece changed: caught by the fingerprint
/usr/bin/python3 - "$TOK" "$tmp/tok-edited.bin" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
off = 4
for i in range(1000):  # find piece 1000 and change its first byte
    score, n = struct.unpack_from("<fi", b, off)
    off += 8 + n
score, n = struct.unpack_from("<fi", b, off)
b[off + 8] = ord("Q") if b[off + 8] != ord("Q") else ord("R")
open(sys.argv[2], "wb").write(b)
PY
start "$BILD" large-worker "$LG" "$tmp/tok-edited.bin" "ipc://$tmp/fp.sock" "$tmp/fp.log" || exit 1
expect "same size, another vocabulary refused" 3 "holds another vocabulary (32000 tokens, fingerprint" -- generate \
    --small-endpoint "ipc://$tmp/s.sock" --large-endpoint "ipc://$tmp/fp.sock" -z "$TOK" -p x --timeout 5000
start "$V2" large-worker "$LG" "$TOK" "ipc://$tmp/v2.sock" "$tmp/v2.log" || exit 1
expect "another protocol version refused" 5 "speaks protocol version 1, this coordinator version 3" -- generate \
    --small-endpoint "ipc://$tmp/s.sock" --large-endpoint "ipc://$tmp/v2.sock" -z "$TOK" -p x --timeout 5000

"$BILD" keygen "$tmp/worker" 2>/dev/null && "$BILD" keygen "$tmp/coord" 2>/dev/null && "$BILD" keygen "$tmp/other" 2>/dev/null \
    || fail "keygen"
[ "$(stat -c %a "$tmp/worker.key")" = 600 ] && echo "ok   keygen: the key pair file is mode 600" || fail "key file mode"
expect "keygen refuses to overwrite" 3 "refusing to overwrite" -- keygen "$tmp/worker"
PORT=$((21000 + $$ % 5000 * 2))
start "$BILD" large-worker "$LG" "$TOK" "tcp://127.0.0.1:$PORT" "$tmp/c.log" --curve-key "$tmp/worker.key" \
    --curve-allow "$tmp/coord.pub" || exit 1
timeout -k 1 30 "$BILD" generate --small-endpoint "ipc://$tmp/s.sock" --large-endpoint "tcp://127.0.0.1:$PORT" -z "$TOK" \
    --curve-key "$tmp/coord.key" --large-server-key "$tmp/worker.pub" -p "Tom had a red ball." -n 30 --json -q \
    >"$tmp/curve.json" 2>"$tmp/err" && same_tokens "$tmp/curve.json" "$tmp/next.json" \
    && echo "ok   CURVE with the right keys: same output" || fail "CURVE run: $(cat "$tmp/err")"
expect "CURVE: key not on the allow list" 5 "refused this coordinator's CURVE key" -- generate \
    --small-endpoint "ipc://$tmp/s.sock" --large-endpoint "tcp://127.0.0.1:$PORT" -z "$TOK" -p x --timeout 5000 \
    --curve-key "$tmp/other.key" --large-server-key "$tmp/worker.pub"
expect "CURVE: coordinator without keys" 5 "security handshake failed" -- generate \
    --small-endpoint "ipc://$tmp/s.sock" --large-endpoint "tcp://127.0.0.1:$PORT" -z "$TOK" -p x --timeout 5000
grep -q "not on the allow list" "$tmp/c.log" && echo "ok   the worker logged the refused key" || fail "no refusal in the worker log"

# orderly shutdown on SIGTERM
kill -TERM "$spid"
i=0; while kill -0 "$spid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
wait "$spid"
rc=$?
[ $rc -eq 0 ] && grep -q "stopped by a signal" "$tmp/s.log" && echo "ok   SIGTERM: the small worker exited 0" \
    || fail "SIGTERM: exit $rc: $(tail -n 2 "$tmp/s.log")"
echo "test_faults: $fails failed"
[ $fails -eq 0 ]
