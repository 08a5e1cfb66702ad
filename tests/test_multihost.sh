#!/bin/sh
# test_multihost.sh - BiLD across three hosts, made on this machine with
# Linux network namespaces: the coordinator, the small worker and the large
# worker each in a namespace of its own, joined by two veth pairs with
# addresses only on those links (coordinator 10.77.1.1 <-> small worker
# 10.77.1.2, coordinator 10.77.2.1 <-> large worker 10.77.2.2), the workers
# on tcp:// with --allow-remote and CURVE. Checks:
#   - the tokens are those of the in-process run;
#   - a coordinator whose key is not on the workers' allow list is refused;
#   - the large worker's link taken down mid-request (ip link set down) is
#     reported within the heartbeat limit, naming that worker;
#   - after the link comes back, serve mode's next request succeeds.
# The namespaces are removed at the end, also on failure. Needs root and
# iproute2 (CI runs as root); fails saying so when namespaces cannot be made.
set -u
. tests/cli_lib.sh
BILD=$(cd "$(dirname "$BILD")" && pwd)/$(basename "$BILD")
NS_C=bildc$$ NS_S=bilds$$ NS_L=bildl$$
HB=250 # heartbeat (ms) of the coordinator and the workers: a silent peer is lost after 3 beats
cleanup_ns() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for n in $NS_C $NS_S $NS_L; do ip netns del "$n" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup_ns EXIT INT TERM

[ "$(id -u)" = 0 ] || { echo "FAIL: network namespaces need root (ip netns add); run as root, as CI does"; exit 1; }
command -v ip >/dev/null || { echo "FAIL: no ip command: install iproute2 (make deps)"; exit 1; }
ip netns add $NS_C && ip netns add $NS_S && ip netns add $NS_L ||
    { echo "FAIL: cannot make network namespaces (ip netns add): is this a container without CAP_SYS_ADMIN?"; exit 1; }
ip link add c0 netns $NS_C type veth peer name s0 netns $NS_S &&
    ip link add c1 netns $NS_C type veth peer name l0 netns $NS_L ||
    { echo "FAIL: cannot make veth pairs (ip link add ... type veth): the kernel needs the veth module"; exit 1; }
ip -n $NS_C addr add 10.77.1.1/30 dev c0 && ip -n $NS_S addr add 10.77.1.2/30 dev s0 &&
    ip -n $NS_C addr add 10.77.2.1/30 dev c1 && ip -n $NS_L addr add 10.77.2.2/30 dev l0 || { echo "FAIL: ip addr add"; exit 1; }
for l in "$NS_C c0" "$NS_C c1" "$NS_S s0" "$NS_L l0" "$NS_C lo" "$NS_S lo" "$NS_L lo"; do
    set -- $l
    ip -n "$1" link set "$2" up || { echo "FAIL: ip link set $2 up"; exit 1; }
done
# the links are the only way: no route from the small worker's namespace to the large worker's
ip -n $NS_S route get 10.77.2.2 >/dev/null 2>&1 && fail "the small worker's namespace has a route to the large worker"
ip -n $NS_C route get 10.77.2.2 2>/dev/null | grep -q "dev c1" &&
    echo "ok   namespaces $NS_C, $NS_S, $NS_L joined by veth pairs (no route between the workers)" ||
    { echo "FAIL: the coordinator's namespace has no route to the large worker over c1"; exit 1; }

for k in small large coord other; do "$BILD" keygen "$tmp/$k" 2>/dev/null || { echo "FAIL: keygen $k"; exit 1; }; done
S_EP=tcp://10.77.1.2:5601 L_EP=tcp://10.77.2.2:5602

# start_in NS ROLE MODEL ENDPOINT KEY LOG: a worker in namespace NS; its pid in $wpid
start_in() {
    ns=$1 role=$2 model=$3 ep=$4 key=$5 log=$6
    ip netns exec "$ns" "$BILD" "$role" -m "$model" -z "$TOK" -b "$ep" --allow-remote --heartbeat $HB \
        --curve-key "$key" --curve-allow "$tmp/coord.pub" 2>"$log" &
    wpid=$!
    pids="$pids $wpid"
    i=0
    until grep -q "listening on" "$log"; do
        if [ $i -gt 200 ]; then echo "FAIL: $role did not start: $(cat "$log")"; exit 1; fi
        sleep 0.1; i=$((i + 1))
    done
}
start_in $NS_S small-worker "$SM" "$S_EP" "$tmp/small.key" "$tmp/s.log"
start_in $NS_L large-worker "$LG" "$L_EP" "$tmp/large.key" "$tmp/l.log"

coord() { # coord KEY ARGS...: bild generate in the coordinator's namespace over CURVE
    key=$1
    shift
    ip netns exec $NS_C timeout -k 1 60 "$BILD" generate --small-endpoint "$S_EP" --large-endpoint "$L_EP" -z "$TOK" \
        --curve-key "$key" --small-server-key "$tmp/small.pub" --large-server-key "$tmp/large.pub" --heartbeat $HB "$@"
}

# 1. the same tokens as in process
P="Tom had a red ball."
"$BILD" generate -S "$SM" -L "$LG" -z "$TOK" -p "$P" -n 60 --json -q >"$tmp/one.json" 2>"$tmp/err" || fail "in process: $(cat "$tmp/err")"
coord "$tmp/coord.key" -p "$P" -n 60 --json -q >"$tmp/three.json" 2>"$tmp/err" || fail "across namespaces: $(cat "$tmp/err")"
/usr/bin/python3 - "$tmp/one.json" "$tmp/three.json" <<'PY' && echo "ok   three hosts over tcp:// and CURVE: the in-process tokens" || fail "tokens differ"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["tokens"] == b["tokens"] and len(a["tokens"]) > 0, (a["tokens"], b["tokens"])
PY

# 2. a key not on the allow list is refused, clearly
coord "$tmp/other.key" -p "$P" -n 5 --timeout 5000 -q >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 5 ] && grep -q "refused this coordinator's CURVE key" "$tmp/err"; then
    echo "ok   a coordinator with another key is refused: $(head -n 1 "$tmp/err")"
else
    fail "another key: exit $rc, want 5 with 'refused this coordinator's CURVE key': $(cat "$tmp/err")"
fi

# 3. serve mode; the large worker's link goes down mid-request, then comes back
mkfifo "$tmp/in"
: >"$tmp/serve.out"
trap '' PIPE
coord "$tmp/coord.key" --timeout 20000 --requests - >"$tmp/serve.out" 2>"$tmp/serve.err" <"$tmp/in" &
cpid=$!
pids="$pids $cpid"
exec 3>"$tmp/in"
wait_lines() { i=0; while [ "$(wc -l <"$tmp/serve.out")" -lt "$1" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done; }
echo "{\"id\": 1, \"prompt\": \"$P\", \"max_tokens\": 30}" >&3
wait_lines 1
# request 2 is long (every token checked by the large worker, about 1 s here); 0.15 s in, the link goes down
echo "{\"id\": 2, \"prompt\": \"$P\", \"max_tokens\": 240, \"fallback\": 0.99, \"max_small\": 1}" >&3
sleep 0.15
t_down=$(date +%s.%N)
ip -n $NS_L link set l0 down
wait_lines 2
took=$(awk -v a="$t_down" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b - a}')
ip -n $NS_L link set l0 up
sleep 0.5
echo "{\"id\": 3, \"prompt\": \"$P\", \"max_tokens\": 30}" >&3
exec 3>&-
wait $cpid
rc=$?
/usr/bin/python3 - "$tmp/serve.out" "$rc" "$took" "$HB" <<'PY' || fail "link down: $(cat "$tmp/serve.out" "$tmp/serve.err")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
took, hb = float(sys.argv[3]), int(sys.argv[4])
assert len(lines) == 3, lines
a, b, c = lines
assert a["id"] == 1 and len(a["tokens"]) > 0, a
assert b["id"] == 2 and "error" in b, b
assert "large worker at tcp://10.77.2.2:5602" in b["error"], b
limit = 3 * hb / 1000 + 1.5  # three missed beats, the next poll, and slack for a loaded machine
assert took <= limit, "the lost link was reported %.2f s after it went down (limit %.2f s)" % (took, limit)
assert c["id"] == 3 and c["tokens"] == a["tokens"], c
assert sys.argv[2] == "1", "exit status %s, want 1 (one request failed)" % sys.argv[2]
print("ok   link down mid-request: reported after %.2f s (heartbeat %d ms): %s" % (took, hb, b["error"]))
print("ok   link up again: the next request succeeds with the same tokens")
PY

echo "test_multihost: $fails failed"
[ $fails -eq 0 ]
