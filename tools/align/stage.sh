# tools/align/stage.sh - sourced by the recipes (make_default.sh,
# make_greedy.sh): stage NAME COMMAND... runs the command and appends
# "NAME SECONDS" (its wall time) to the file $TIMES.
stage() {
    name=$1
    shift
    t0=$(date +%s)
    "$@"
    echo "$name $(($(date +%s) - t0))" >>"$TIMES"
}
