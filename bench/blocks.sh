#!/bin/sh
# blocks.sh - A/B of the block kernels: `bench/decode --blocks` of one or
# more builds, run in alternation ROUNDS times (the machine's speed drifts
# between runs, so builds are compared round by round, never run after
# run), and the median and minimum over the rounds of each block's time
# relative to one step, 1 and 2 threads, plus the step's own time.
#
# usage: bench/blocks.sh ROUNDS LABEL=BENCH_DECODE [LABEL=BENCH_DECODE ...] [-- decode args]
#   e.g. git worktree add /tmp/old HEAD~1 && make -C /tmp/old BUILD=/tmp/old-build &&
#        bench/blocks.sh 5 old=/tmp/old-build/bench/decode new=build/bench/decode
# BILD_ISA=avx2 etc. pass through to bench/decode.
# Not a test: it prints numbers and asserts nothing.
set -eu
[ $# -ge 2 ] || { sed -n 8,11p "$0" >&2; exit 2; }
ROUNDS=$1
shift
builds=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case "$1" in
    *=*) [ -x "${1#*=}" ] || { echo "bench/blocks.sh: ${1#*=} is not an executable" >&2; exit 2; } ;;
    *) echo "bench/blocks.sh: '$1' is not LABEL=BENCH_DECODE" >&2; exit 2 ;;
    esac
    builds="$builds $1"
    shift
done
[ "${1:-}" = "--" ] && shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$ROUNDS"); do
    for b in $builds; do
        "${b#*=}" --blocks "$@" 2>&1 | awk -v L="${b%%=*}" '
            /^  T /        { $1 = ""; print L, "T", $0 }
            /^  1 thread /  { $1 = $2 = ""; print L, "1t", $0 }
            /^  2 threads / { $1 = $2 = ""; print L, "2t", $0 }
            /^  \(T = 1 takes/ { print L, "ms", $5, $10 }' >>"$out"
    done
done
/usr/bin/python3 - "$out" "$ROUNDS" <<'PY'
import collections, statistics as st, sys
rows, Ts, order = collections.defaultdict(list), None, []
for l in open(sys.argv[1]):
    f = l.split()
    if f[1] == "T":
        Ts = f[2:]
        continue
    if f[0] not in order:
        order.append(f[0])
    rows[(f[0], f[1])].append([float(v) for v in f[2:]])
print("bench/decode --blocks, %s rounds alternating; a block's time / one step's (median, then min over rounds)" % sys.argv[2])
print("  %-10s %-3s %s" % ("build", "thr", " ".join("%6s" % ("T=" + t) for t in Ts)))
for b in order:
    for k in ("1t", "2t"):
        cols = list(zip(*rows[(b, k)]))
        print("  %-10s %-3s %s" % (b, k, " ".join("%6.2f" % st.median(c) for c in cols)))
        print("  %-10s %-3s %s" % ("", "min", " ".join("%6.2f" % min(c) for c in cols)))
    ms = list(zip(*rows[(b, "ms")]))
    print("  %-10s one step: %.3f ms with 1 thread, %.3f ms with 2 (medians)" % (b, st.median(ms[0]), st.median(ms[1])))
PY
