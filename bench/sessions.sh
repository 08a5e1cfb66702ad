#!/bin/sh
# bench/sessions.sh - one worker pair shared by C coordinators at once
# (C = 1, 2, 4, 8): aggregate throughput and per-request latency.
#
# Each coordinator is its own `bild generate` process serving the same
# requests (tests/data/prompts20.txt, the first R of them, greedy BiLD
# --exact, N tokens each) through the one small and one large worker
# (ipc://). Per setting: aggregate tokens/s = all coordinators' generated
# tokens / the wall time from the first start to the last exit (model
# loading excluded: the workers are already up, and a coordinator loads only
# its tokenizer); latency = each request's total_s (median and p90 over all
# requests of all coordinators). Settings alternate within each round; the
# table gives medians over the rounds and the ratios to C = 1. Two worker
# pairs run side by side, alternating: the default (the large worker
# verifies the blocks of the sessions waiting at the same moment in one
# pass) and --no-batch (one pass per block). A third setting runs no
# worker processes: one `bild generate -S -L --parallel C` with both models
# in process (their serve loops in threads on inproc://, the handlers taking
# turns on one backend of 2*WORKER_THREADS threads) serves the C x R
# requests; its wall time is the "served ... in S s" it prints (model
# loading excluded).
#
# usage: sh bench/sessions.sh [ROUNDS] [REQUESTS] [WORKER_THREADS]
#        (defaults 3, 10, 1; env BILD, SMALL, LARGE, TOK, N (tokens, 64), CS ("1 2 4 8"),
#        SJ and LJ: the small and the large worker's threads, each WORKER_THREADS unless given)
set -u
ROUNDS=${1:-3}
R=${2:-10}
WJ=${3:-1}
SJ=${SJ:-$WJ}
LJ=${LJ:-$WJ}
BILD=${BILD:-build/bild}
SMALL=${SMALL:-tools/align/stories15M-aligned}
LARGE=${LARGE:-models/stories15M/stories15M.bin}
TOK=${TOK:-models/stories15M/tokenizer.bin}
N=${N:-64}
CS=${CS:-1 2 4 8}
for f in "$BILD" "$SMALL" "$LARGE" "$TOK" tests/data/prompts20.txt; do
    [ -e "$f" ] || { echo "bench/sessions.sh: $f not found (make; make models)" >&2; exit 1; }
done
tmp=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
head -n "$R" tests/data/prompts20.txt >"$tmp/prompts.txt"
start() { # ROLE MODEL NAME THREADS [ARGS]
    "$BILD" "$1" -m "$2" -z "$TOK" -b "ipc://$tmp/$3.sock" -j "$4" --max-sessions 16 ${5:-} >/dev/null 2>"$tmp/$3.log" &
    pids="$pids $!"
    i=0
    until grep -q "listening on" "$tmp/$3.log" 2>/dev/null; do
        i=$((i + 1)); [ $i -gt 200 ] && { echo "worker $3 did not start: $(cat "$tmp/$3.log")" >&2; exit 1; }
        sleep 0.1
    done
}
start small-worker "$SMALL" small_b "$SJ"
start large-worker "$LARGE" large_b "$LJ"
start small-worker "$SMALL" small_n "$SJ"
start large-worker "$LARGE" large_n "$LJ" --no-batch
now() { date +%s.%N; }
for r in $(seq "$ROUNDS"); do
    for c in $CS; do
        for k in $(seq "$c"); do sed "s/^/$k /" "$tmp/prompts.txt"; done |
            /usr/bin/python3 -c 'import json, sys
for i, l in enumerate(sys.stdin): print(json.dumps({"id": i, "prompt": l.split(" ", 1)[1].rstrip("\n")}))' >"$tmp/req.$c"
        "$BILD" generate -S "$SMALL" -L "$LARGE" -z "$TOK" --exact --requests "$tmp/req.$c" --parallel "$c" -n "$N" \
            -j $((SJ + LJ)) >"$tmp/out.i.$r.$c.1" 2>"$tmp/err.i.$r.$c" || { echo "in process failed: $(cat "$tmp/err.i.$r.$c")" >&2; exit 1; }
        sv=$(sed -n 's/.*served [0-9]* requests (0 failed) in \([0-9.]*\) s.*/\1/p' "$tmp/err.i.$r.$c")
        echo "i $r $c 0 $sv" >>"$tmp/walls"
        for m in b n; do
            EP="--small-endpoint ipc://$tmp/small_$m.sock --large-endpoint ipc://$tmp/large_$m.sock -z $TOK"
            t0=$(now)
            cp=""
            for k in $(seq "$c"); do
                "$BILD" generate $EP --exact --prompts "$tmp/prompts.txt" -n "$N" -j 1 >"$tmp/out.$m.$r.$c.$k" \
                    2>"$tmp/err.$m.$r.$c.$k" &
                cp="$cp $!"
            done
            for p in $cp; do wait "$p" || { echo "a coordinator failed: $(cat "$tmp"/err.$m.$r.$c.*)" >&2; exit 1; }; done
            echo "$m $r $c $t0 $(now)" >>"$tmp/walls"
        done
    done
done
/usr/bin/python3 - "$tmp" "$R" "$N" "$ROUNDS" "$CS" "$("$BILD" run -m "$LARGE" -p x -n 1 -t 0 2>&1 >/dev/null | grep -o 'cpu/[a-z0-9]*' | head -n 1)" "$SJ" "$LJ" <<'PY'
import glob, json, math, statistics as st, sys
d, R, N, rounds, cs, isa, sj, lj = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), [int(x) for x in sys.argv[5].split()], sys.argv[6], int(sys.argv[7]), int(sys.argv[8])
walls = {}
for line in open(d + "/walls"):
    m, r, c, a, b = line.split()
    walls[(m, int(r), int(c))] = float(b) - float(a)
rows = {}
ref, same = {}, True  # every coordinator runs the same prompts: line i's tokens must agree everywhere
for m in ("b", "n", "i"):
    for c in cs:
        agg, lat = [], []
        for r in range(1, rounds + 1):
            toks = 0
            for f in glob.glob("%s/out.%s.%d.%d.*" % (d, m, r, c)):
                for i, l in enumerate(open(f)):
                    j = json.loads(l)
                    toks += j["stats"]["generated"]
                    lat.append(j["stats"]["total_s"])
                    same &= ref.setdefault(j["id"] % R if "id" in j else i, j["tokens"]) == j["tokens"]
            agg.append(toks / walls[(m, r, c)])
        lat.sort()
        rows[(m, c)] = (st.median(agg), st.median(lat), lat[math.ceil(0.9 * len(lat)) - 1], min(agg), max(agg))
cpu = ""
for l in open("/proc/cpuinfo"):
    if l.startswith("model name"):
        cpu = l.split(":", 1)[1].strip()
        break
print("one small + one large worker (%s, %d and %d thread(s); %s), C coordinators at once, each %d requests x %d tokens,"
      " greedy BiLD --exact; medians of %d rounds" % (isa, sj, lj, cpu, R, N, rounds))
for m, title in (("b", "batched verification (the default)"), ("n", "--no-batch (one pass per block)"),
                 ("i", "no worker processes: bild generate -S -L --parallel C, %d threads" % (sj + lj))):
    print("\n" + title)
    print("%4s %15s %8s %17s %8s %14s %8s" % ("C", "aggregate tok/s", "vs C=1", "latency median s", "vs C=1", "latency p90 s", "vs C=1"))
    a1, m1, p1 = rows[(m, cs[0])][0], rows[(m, cs[0])][1], rows[(m, cs[0])][2]
    for c in cs:
        a, md, p, lo, hi = rows[(m, c)]
        print("%4d %15.1f %7.2fx %17.3f %7.2fx %14.3f %7.2fx   (aggregate %.1f-%.1f)" % (c, a, a / a1, md, md / m1, p, p / p1, lo, hi))
print("\ntokens of each request identical in every run, all three settings: %s" % ("yes" if same else "NO"))
print("batched / --no-batch aggregate: " + ", ".join("C=%d %.2fx" % (c, rows[("b", c)][0] / rows[("n", c)][0]) for c in cs))
PY
