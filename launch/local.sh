#!/bin/sh
# launch/local.sh - BiLD as three processes on one host: starts the large and
# the small worker on ipc:// sockets in a private folder, waits until both
# say they are listening, runs the coordinator (bild generate) with the
# arguments given, and stops the workers by pid on any exit (also on error
# or Ctrl-C).
#
# usage: launch/local.sh [--small PATH] [--large PATH] [--tokenizer PATH]
#                        [--threads N (per worker; default: all cores)] [--] GENERATE-ARGS...
#   e.g. launch/local.sh -- -p "Once upon a time" -n 200
# Environment: BILD (the binary, default build/bild), LAUNCH_DIR (socket and
# log folder, default a new temporary one, removed at exit).
set -u
BILD=${BILD:-build/bild}
SMALL=tools/align/stories15M-aligned
LARGE=models/stories15M/stories15M.bin
TOK=models/stories15M/tokenizer.bin
THREADS=$(nproc 2>/dev/null || echo 1) # each worker gets every core: they compute in turn, and park their threads in between
while [ $# -gt 0 ]; do
    case "$1" in
        --small) SMALL=$2; shift 2 ;;
        --large) LARGE=$2; shift 2 ;;
        --tokenizer) TOK=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n 2,13p "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
for f in "$BILD" "$SMALL" "$LARGE" "$TOK"; do
    [ -e "$f" ] || { echo "launch/local.sh: $f not found (run make, make models)" >&2; exit 3; }
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

start() { # ROLE MODEL NAME
    "$BILD" "$1" -m "$2" -z "$TOK" -b "ipc://$LAUNCH_DIR/$3.sock" -j "$THREADS" >/dev/null 2>"$LAUNCH_DIR/$3.log" &
    pids="$pids $!"
}
start large-worker "$LARGE" large
start small-worker "$SMALL" small
for name in large small; do
    i=0
    until grep -q "listening on" "$LAUNCH_DIR/$name.log" 2>/dev/null; do
        for p in $pids; do
            if ! kill -0 "$p" 2>/dev/null; then
                echo "launch/local.sh: a worker exited during start-up:" >&2
                cat "$LAUNCH_DIR/large.log" "$LAUNCH_DIR/small.log" >&2 2>/dev/null
                exit 1
            fi
        done
        i=$((i + 1))
        if [ $i -gt 300 ]; then
            echo "launch/local.sh: the $name worker did not start within 30 s:" >&2
            cat "$LAUNCH_DIR/$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
done
"$BILD" generate --small-endpoint "ipc://$LAUNCH_DIR/small.sock" --large-endpoint "ipc://$LAUNCH_DIR/large.sock" \
    -z "$TOK" "$@"
