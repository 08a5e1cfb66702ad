# cli_lib.sh - shared helpers of the shell tests (sourced, not run):
# BILD, the model paths LG, SM, TOK, M260, T512 (in models/, or BILD_MODELS:
# scripts/get-models.sh fetches and checks them), DATA (tests/data), a temp folder $tmp
# removed on exit (with every pid in $pids killed), and
#   fail MESSAGE      count a failure
#   expect NAME CODE PATTERN -- ARGS
#                     run bild ARGS (stdin: the file $expect_stdin, default
#                     /dev/null); require exit code CODE, exactly one
#                     stderr line containing PATTERN (a fixed string), and
#                     nothing on stdout
# A test that needs no models sets CLI_LIB_NO_MODELS=1 before sourcing.
#   start_worker ROLE MODEL ENDPOINT LOG [ARGS...]
#                     start bild ROLE (small-worker, large-worker) serving
#                     MODEL on ENDPOINT (with ARGS), its stderr in LOG; its
#                     pid goes to $last and $pids; waits (<= 20 s) for
#                     "listening on"
BILD=${BUILD:-build}/bild
MOD=${BILD_MODELS:-models}
LG=$MOD/stories15M/stories15M.bin       # the large model
SM=$MOD/stories15M-small/small.bin      # the small model
TOK=$MOD/stories15M/tokenizer.bin       # their tokenizer
M260=$MOD/stories260K/stories260K.bin
T512=$MOD/stories260K/tok512.bin        # stories260K's tokenizer
DATA=tests/data
[ "${CLI_LIB_NO_MODELS:-0}" = 1 ] || for f in "$LG" "$SM" "$TOK" "$M260" "$T512"; do
    [ -f "$f" ] || { echo "FAIL: $f missing: run make models (scripts/get-models.sh)"; exit 1; }
done
tmp=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
fails=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

expect() {
    name=$1 code=$2 pat=$3
    shift 4
    "$BILD" "$@" <"${expect_stdin:-/dev/null}" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    lines=$(wc -l <"$tmp/err")
    if [ $rc -ne "$code" ]; then fail "$name: exit $rc, want $code; stderr: $(cat "$tmp/err")"
    elif [ "$lines" -ne 1 ]; then fail "$name: $lines stderr lines, want 1: $(cat "$tmp/err")"
    elif ! grep -qF -- "$pat" "$tmp/err"; then fail "$name: message lacks '$pat': $(cat "$tmp/err")"
    elif [ -s "$tmp/out" ]; then fail "$name: wrote to stdout"
    else echo "ok   $name: $(cat "$tmp/err")"
    fi
}

start_worker() {
    sw_role=$1 sw_model=$2 sw_ep=$3 sw_log=$4
    shift 4
    "$BILD" "$sw_role" -m "$sw_model" -z "$TOK" -b "$sw_ep" -j 1 "$@" >/dev/null 2>"$sw_log" &
    last=$!
    pids="$pids $last"
    i=0
    while ! grep -q "listening on" "$sw_log" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 200 ]; then fail "$sw_role did not start: $(cat "$sw_log")"; return 1; fi
        sleep 0.1
    done
}
