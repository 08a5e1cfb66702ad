#!/bin/sh
# launch/multi-gpu.sh - BiLD as three processes on one host with two GPUs:
# the small worker on one device (default cuda:0), the large worker on
# another (default cuda:1), both on ipc:// sockets in a private folder; waits
# until both say they are listening, runs the coordinator (bild generate)
# with the arguments given, and stops the workers by pid on any exit (also
# on error or Ctrl-C). A worker that cannot use its device exits at start-up
# and the script fails at once with its message. Needs a build with
# make CUDA=1 (BILD=build/cuda/bild) unless both devices are cpu.
#
# usage: launch/multi-gpu.sh [--small PATH] [--large PATH] [--tokenizer PATH]
#                            [--small-device DEV] [--large-device DEV]
#                            [--dummy-weights] [--threads N] [--] GENERATE-ARGS...
#   e.g. BILD=build/cuda/bild launch/multi-gpu.sh -- -p "Once upon a time" -n 200
#        SMALL_DEVICE=cpu LARGE_DEVICE=cpu launch/multi-gpu.sh -- -p "Once" -n 50
# --dummy-weights: --small and --large name config.json folders (random
# weights on each device; see bild large-worker --help).
# Environment: BILD (the binary, default build/cuda/bild if it exists, else
# build/bild), SMALL_DEVICE, LARGE_DEVICE (the defaults of the options),
# LAUNCH_DIR (socket and log folder, default a new temporary one, removed
# at exit).
set -u
if [ -z "${BILD:-}" ]; then
    BILD=build/bild
    [ -x build/cuda/bild ] && BILD=build/cuda/bild
fi
SMALL=tools/align/stories15M-aligned
LARGE=models/stories15M/stories15M.bin
TOK=models/stories15M/tokenizer.bin
SMALL_DEVICE=${SMALL_DEVICE:-cuda:0}
LARGE_DEVICE=${LARGE_DEVICE:-cuda:1}
DUMMY=""
THREADS=$(nproc 2>/dev/null || echo 1) # used by a worker on the cpu device only
while [ $# -gt 0 ]; do
    case "$1" in
        --small) SMALL=$2; shift 2 ;;
        --large) LARGE=$2; shift 2 ;;
        --tokenizer) TOK=$2; shift 2 ;;
        --small-device) SMALL_DEVICE=$2; shift 2 ;;
        --large-device) LARGE_DEVICE=$2; shift 2 ;;
        --dummy-weights) DUMMY=--dummy-weights; shift ;;
        --threads) THREADS=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n 2,22p "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
for f in "$BILD" "$SMALL" "$LARGE" "$TOK"; do
    [ -e "$f" ] || { echo "launch/multi-gpu.sh: $f not found (run make, make models)" >&2; exit 3; }
done
own_dir=0
if [ -z "${LAUNCH_DIR:-}" ]; then LAUNCH_DIR=$(mktemp -d); own_dir=1; fi
mkdir -p "$LAUNCH_DIR"
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    [ $own_dir -eq 1 ] && rm -rf "$LAUNCH_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # ROLE MODEL NAME DEVICE
    # shellcheck disable=SC2086 # $DUMMY is empty or one flag
    "$BILD" "$1" -m "$2" -z "$TOK" -b "ipc://$LAUNCH_DIR/$3.sock" -d "$4" -j "$THREADS" $DUMMY \
        >/dev/null 2>"$LAUNCH_DIR/$3.log" &
    pids="$pids $!"
}
start large-worker "$LARGE" large "$LARGE_DEVICE"
start small-worker "$SMALL" small "$SMALL_DEVICE"
for name in large small; do
    i=0
    # a GPU worker uploads (or makes) its weights before listening: allow 5 minutes
    until grep -q "listening on" "$LAUNCH_DIR/$name.log" 2>/dev/null; do
        for p in $pids; do
            if ! kill -0 "$p" 2>/dev/null; then
                echo "launch/multi-gpu.sh: a worker exited during start-up:" >&2
                cat "$LAUNCH_DIR/large.log" "$LAUNCH_DIR/small.log" >&2 2>/dev/null
                exit 1
            fi
        done
        i=$((i + 1))
        if [ $i -gt 3000 ]; then
            echo "launch/multi-gpu.sh: the $name worker did not start within 300 s:" >&2
            cat "$LAUNCH_DIR/$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
done
"$BILD" generate --small-endpoint "ipc://$LAUNCH_DIR/small.sock" --large-endpoint "ipc://$LAUNCH_DIR/large.sock" \
    -z "$TOK" "$@"
