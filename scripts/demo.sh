#!/bin/sh
# demo.sh - what `make demo` runs: installs the build's Debian packages,
# builds, fetches stories15M, writes a story with BiLD as three processes
# (launch/local.sh; the story on stdout), then measures on the same prompt,
# in this run, how fast BiLD is against the large model alone: in process
# and as three processes, with --exact (the large model's own greedy text,
# checked here token for token). Every part's wall time and the speed table
# go to stderr.
#
# usage: scripts/demo.sh [SMALL_MODEL] [PROMPT]
# Environment: BUILD (default build), DEMO_ROUNDS (speed runs per setting,
# interleaved; default 3), DEMO_TOKENS (default 200).
set -eu
cd "$(dirname "$0")/.."
SMALL=${1:-tools/align/stories15M-aligned}
PROMPT=${2:-Once upon a time, there was a little girl named Lily.}
BUILD=${BUILD:-build}
ROUNDS=${DEMO_ROUNDS:-3}
N=${DEMO_TOKENS:-200}
BILD=$BUILD/bild
L=models/stories15M/stories15M.bin
Z=models/stories15M/tokenizer.bin
PY=/usr/bin/python3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
now() { date +%s.%N; }
part() { # NAME START: records the wall time of a part
    awk -v a="$2" -v b="$(now)" -v n="$1" 'BEGIN{printf "  %-34s %6.1f s\n", n, b - a}' >>"$out/times"
}

t=$(now); sh scripts/install-deps.sh >&2; part "Debian packages (make deps)" "$t"
t=$(now); make -s all BUILD="$BUILD" >&2; part "build (make)" "$t"
t=$(now); sh scripts/get-models.sh >&2; part "stories15M (scripts/get-models.sh)" "$t"
if [ ! -e "$SMALL" ]; then
    echo "demo: no small model at $SMALL: the large model alone" >&2
    "$BILD" run -m "$L" -p "$PROMPT" -n "$N"
    exit 0
fi

echo "+ launch/local.sh: BiLD in three processes (small $SMALL, large stories15M)" >&2
t=$(now); BILD=$BILD sh launch/local.sh --small "$SMALL" -- -p "$PROMPT" -n "$N"; part "the story (three processes)" "$t"

# speed: the large model alone (bild run, greedy: its fastest way, the
# classifier through its exact int8 screen; and generate --mode large, the
# same policy machine as BiLD with the small model switched off), BiLD
# --exact in process and in three processes, interleaved round by round;
# each run reports its own tokens/s (generation with the prompt, loading
# excluded) and its tokens
echo "+ speed on this prompt: $ROUNDS interleaved runs of each, $N tokens, greedy" >&2
t=$(now)
for r in $(seq "$ROUNDS"); do
    "$BILD" run -m "$L" -z "$Z" -p "$PROMPT" -n "$N" -t 0 --json -q >"$out/run.$r.json"
    "$BILD" generate --mode large -L "$L" -z "$Z" -p "$PROMPT" -n "$N" --json -q >"$out/large.$r.json"
    "$BILD" generate --exact -S "$SMALL" -L "$L" -z "$Z" -p "$PROMPT" -n "$N" --json -q >"$out/inproc.$r.json"
    BILD=$BILD sh launch/local.sh --small "$SMALL" -- --exact -p "$PROMPT" -n "$N" --json -q >"$out/procs.$r.json"
done
part "speed runs" "$t"
"$PY" - "$out" "$ROUNDS" "$("$BILD" run -m "$L" -p x -n 1 -t 0 2>&1 >/dev/null | grep -o 'cpu/[a-z0-9]*, [0-9]* thread[s]*' | head -n 1)" <<'PY'
import json, statistics as st, sys
d, R, where = sys.argv[1], int(sys.argv[2]), sys.argv[3]
keys = ("run", "large", "inproc", "procs")
runs = {k: [json.load(open("%s/%s.%d.json" % (d, k, r))) for r in range(1, R + 1)] for k in keys}
ref = runs["run"][0]["tokens"]
def tps(k, x):  # generated tokens over the generation's time, the prompt included, for every kind alike
    return x["generated_tokens"] / (x["prompt_s"] + x["decode_s"]) if k == "run" else x["stats"]["tok_per_s"]
rate = {k: st.median(tps(k, x) for x in v) for k, v in runs.items()}
same = {k: all(x["tokens"] == ref for x in v) for k, v in runs.items()}
names = {"run": "large model alone: bild run", "large": "large model alone: --mode large",
         "inproc": "BiLD --exact, in process", "procs": "BiLD --exact, three processes"}
print("speed on this prompt (%s; medians of %d interleaved runs; ratios to bild run, the faster way"
      " to run the large model alone):" % (where or "cpu", R), file=sys.stderr)
for k in keys:
    note = "" if k == "run" else "  same text as bild run: %s" % ("yes" if same[k] else "NO")
    print("  %-34s %7.1f tok/s  %5.2fx%s" % (names[k], rate[k], rate[k] / rate["run"], note), file=sys.stderr)
if not all(same.values()):
    sys.exit("demo: another text than the large model's greedy text (bild run)")
PY
echo "wall time of each part:" >&2
cat "$out/times" >&2
