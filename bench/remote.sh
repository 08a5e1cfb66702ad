#!/bin/sh
# bench/remote.sh - the multi-process cost, measured side by side in one run:
# the same prompts (tests/data/prompts20.txt), greedy BiLD, through
#   in-process  bild generate -S -L (one process, one thread pool)
#   ipc         small and large worker processes over ipc://
#   tcp         the same over tcp://127.0.0.1
#   ipc+overlap ipc with --overlap (the small worker drafts during verification)
# Configurations alternate within each round (so drift hits all alike); the
# generation time (the sum of each request's total_s: model loading and
# connecting excluded) of each configuration is the median over the rounds.
# Prints the ratios to the in-process run, round trips and bytes per token,
# and how many overlapped drafts were kept.
#
# usage: sh bench/remote.sh [ROUNDS] [WORKER_THREADS] [INPROC_THREADS]
#        (defaults 3, 1, 2; env BILD, SMALL, LARGE, TOK, N (tokens per prompt, 64))
set -u
ROUNDS=${1:-3}
WJ=${2:-1}
IJ=${3:-2}
BILD=${BILD:-build/bild}
SMALL=${SMALL:-tools/align/stories15M-aligned}
LARGE=${LARGE:-models/stories15M/stories15M.bin}
TOK=${TOK:-models/stories15M/tokenizer.bin}
N=${N:-64}
PROMPTS=tests/data/prompts20.txt
for f in "$BILD" "$SMALL" "$LARGE" "$TOK" "$PROMPTS"; do
    [ -e "$f" ] || { echo "bench/remote.sh: $f not found (make; make models)" >&2; exit 1; }
done
tmp=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
PORT=$((20000 + $$ % 6000 * 2))
start() { # ROLE MODEL ENDPOINT NAME
    "$BILD" "$1" -m "$2" -z "$TOK" -b "$3" -j "$WJ" >/dev/null 2>"$tmp/$4.log" &
    pids="$pids $!"
    i=0
    until grep -q "listening on" "$tmp/$4.log"; do
        i=$((i + 1)); [ $i -gt 200 ] && { echo "worker $4 did not start" >&2; exit 1; }
        sleep 0.1
    done
}
start small-worker "$SMALL" "ipc://$tmp/s.sock" s
start large-worker "$LARGE" "ipc://$tmp/l.sock" l
start small-worker "$SMALL" "tcp://127.0.0.1:$PORT" s2
start large-worker "$LARGE" "tcp://127.0.0.1:$((PORT + 1))" l2
IPC="--small-endpoint ipc://$tmp/s.sock --large-endpoint ipc://$tmp/l.sock -z $TOK"
TCP="--small-endpoint tcp://127.0.0.1:$PORT --large-endpoint tcp://127.0.0.1:$((PORT + 1)) -z $TOK"
COMMON="--prompts $PROMPTS -n $N -q"
echo "bench/remote: $(wc -l <"$PROMPTS") prompts x $N tokens, $ROUNDS rounds; workers $WJ thread(s) each, in-process $IJ thread(s); $(nproc) cores"
for r in $(seq "$ROUNDS"); do
    "$BILD" generate -S "$SMALL" -L "$LARGE" -j "$IJ" $COMMON >"$tmp/inproc.$r"
    "$BILD" generate $IPC $COMMON >"$tmp/ipc.$r"
    "$BILD" generate $TCP $COMMON >"$tmp/tcp.$r"
    "$BILD" generate $IPC --overlap $COMMON >"$tmp/overlap.$r"
done
/usr/bin/python3 - "$tmp" "$ROUNDS" <<'PY'
import json, statistics, sys
d, R = sys.argv[1], int(sys.argv[2])
def load(name, r):
    return [json.loads(l) for l in open("%s/%s.%d" % (d, name, r))]
res = {}
for name in ["inproc", "ipc", "tcp", "overlap"]:
    runs = [load(name, r) for r in range(1, R + 1)]
    for rows in runs:
        assert all("error" not in x for x in rows), name
    # same tokens in every configuration (greedy)
    ref = [x["tokens"] for x in load("inproc", 1)]
    assert all([x["tokens"] for x in rows] == ref for rows in runs), name + ": tokens differ"
    times = [sum(x["stats"]["total_s"] for x in rows) for rows in runs]
    rows = runs[0]
    toks = sum(x["stats"]["generated"] for x in rows)
    res[name] = dict(t=statistics.median(times), tmin=min(times), tmax=max(times), toks=toks,
                     trips=sum(x["stats"]["round_trips"] for x in rows) / toks,
                     byts=sum(x["stats"]["bytes_moved"] for x in rows) / toks,
                     spec=sum(x["stats"]["overlap_drafts"] for x in rows),
                     kept=sum(x["stats"]["overlap_kept"] for x in rows))
base = res["inproc"]["t"]
print("%-12s %9s %17s %8s %7s %11s %10s" % ("config", "gen s", "(min..max)", "vs in-p", "tok/s", "trips/tok", "bytes/tok"))
for name, x in res.items():
    print("%-12s %9.3f %7.3f..%-7.3f %7.2fx %7.0f %11.2f %10.0f" % (name, x["t"], x["tmin"], x["tmax"], x["t"] / base,
          x["toks"] / x["t"], x["trips"], x["byts"]))
o = res["overlap"]
print("overlap: %d drafts made during verification, %d kept (%.0f%%); overlap vs sequential ipc: %.2fx" % (
    o["spec"], o["kept"], 100.0 * o["kept"] / max(o["spec"], 1), o["t"] / res["ipc"]["t"]))
PY
