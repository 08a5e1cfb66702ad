#!/bin/sh
# test_slurm.sh - BiLD as a Slurm job (launch/slurm/) on a single-node
# cluster that the test starts in a temporary folder (munged, slurmctld -D,
# slurmd -D as root, ports below the ephemeral range) and stops at the end, also
# on failure. Checks:
#   - a job over tests/data/prompts20.txt gives the in-process run's text and
#     tokens for every prompt, exit status 0, the workers stopped by SIGTERM;
#   - a second job cancelled mid-run (scancel) ends CANCELLED, records exit
#     status 143, and leaves no process behind.
# Needs root and Debian's slurm-wlm and munge (make deps installs them); fails
# saying what is missing otherwise.
set -u
. tests/cli_lib.sh
BILD=$(cd "$(dirname "$BILD")" && pwd)/$(basename "$BILD")
for c in munged slurmctld slurmd sbatch squeue scancel scontrol sinfo; do
    command -v $c >/dev/null || { echo "FAIL: no $c: install slurm-wlm and munge (make deps)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "FAIL: the test cluster's daemons run as root; run as root, as CI does"; exit 1; }
C=$tmp/cluster
mkdir -p "$C/state" "$C/spool" && chmod 755 "$tmp" "$C"
H=$(hostname -s)
cleanup_cluster() {
    [ -f "$C/slurmd.pid" ] && kill "$(cat "$C/slurmd.pid")" 2>/dev/null
    [ -f "$C/slurmctld.pid" ] && kill "$(cat "$C/slurmctld.pid")" 2>/dev/null
    for p in $pids; do kill "$p" 2>/dev/null; done
    sleep 0.5
    munged --stop --socket="$C/munge.sock" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup_cluster EXIT INT TERM
head -c 128 /dev/urandom >"$C/munge.key" && chmod 600 "$C/munge.key"
munged -f --socket="$C/munge.sock" --key-file="$C/munge.key" --log-file="$C/munged.log" --pid-file="$C/munged.pid" \
    --seed-file="$C/munged.seed" || { echo "FAIL: munged did not start: $(cat "$C/munged.log" 2>/dev/null)"; exit 1; }
# The cluster comes up on ports below the kernel's ephemeral range (so no
# outgoing connection can hold them), a new pair on each of up to 4 tries.
# Each try is bounded by wall time: a client such as sinfo takes about 9 s
# to give up on a controller that is not there, so counting calls is no bound.
write_conf() {
cat >"$C/slurm.conf" <<EOF
ClusterName=bildtest
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$P
SlurmdPort=$((P + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$C/munge.sock
StateSaveLocation=$C/state
SlurmdSpoolDir=$C/spool
SlurmctldPidFile=$C/slurmctld.pid
SlurmdPidFile=$C/slurmd.pid
SlurmctldLogFile=$C/slurmctld.log
SlurmdLogFile=$C/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
KillWait=10
NodeName=$H NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
}
export SLURM_CONF=$C/slurm.conf
cluster_logs() { for f in slurmctld.log slurmctld.out slurmd.log slurmd.out; do echo "--- $f"; tail -n 5 "$C/$f" 2>/dev/null; done; }
up=0
for try in 1 2 3 4; do
    P=$((20000 + ($$ + try * 1543) % 6000 * 2))
    write_conf
    slurmctld -i -D >"$C/slurmctld.out" 2>&1 &
    ctld=$!
    slurmd -D >"$C/slurmd.out" 2>&1 &
    sd=$!
    pids="$pids $ctld $sd"
    end=$(($(date +%s) + 45))
    while [ "$(date +%s)" -lt $end ] && kill -0 $ctld 2>/dev/null && kill -0 $sd 2>/dev/null; do
        timeout 12 sinfo -h -o %T 2>/dev/null | grep -q idle && { up=1; break; }
        sleep 0.2
    done
    [ $up = 1 ] && break
    echo "note: try $try: the test cluster on ports $P-$((P + 1)) did not come up:"
    cluster_logs | sed 's/^/    /'
    kill $ctld $sd 2>/dev/null
    wait $ctld $sd 2>/dev/null
    rm -rf "$C/state" "$C/spool" && mkdir -p "$C/state" "$C/spool"
done
[ $up = 1 ] || { echo "FAIL: the test cluster did not come up in 4 tries (logs above)"; exit 1; }
echo "ok   single-node cluster up ($H, slurmctld port $P, $(nproc) CPUs)"

submit() { # submit ARGS...: prints "JOBID JOBDIR"; a job takes seconds, a stuck cluster must not hang the test
    timeout 120 sh launch/slurm/submit.sh --bild "$BILD" --small "$SM" --large "$LG" --tokenizer "$TOK" --out "$tmp/jobs" \
        --sbatch --overcommit "$@"
}

# 1. a job over the 20 prompts: the in-process text and tokens
N=48
"$BILD" generate -S "$SM" -L "$LG" -z "$TOK" --prompts "$DATA/prompts20.txt" -n $N -q >"$tmp/inproc.jsonl" 2>"$tmp/err" ||
    fail "in process: $(cat "$tmp/err")"
out=$(submit --prompts "$DATA/prompts20.txt" --wait -- -n $N -q 2>"$tmp/submit.err")
rc=$?
set -- $out
J=${2:-}
if [ $rc -ne 0 ] || [ -z "$J" ]; then
    fail "job 1: submit.sh exit $rc: $(cat "$tmp/submit.err") $(cat "$J/job.log" "$J/coordinator.log" 2>/dev/null)"
else
    /usr/bin/python3 - "$tmp/inproc.jsonl" "$J/results.jsonl" <<'PY' && echo "ok   job $1: 20 prompts, the in-process text and tokens" || fail "job $1: results differ"
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 20, (len(a), len(b))
for x, y in zip(a, b):
    assert x["tokens"] == y["tokens"] and x["text"] == y["text"], (x["text"], y["text"])
PY
    grep -q "stopped by a signal" "$J/large.log" && grep -q "stopped by a signal" "$J/small.log" &&
        [ "$(cat "$J/exit_status")" = 0 ] && echo "ok   job $1: exit status 0, both workers stopped by SIGTERM" ||
        fail "job $1: exit status $(cat "$J/exit_status" 2>/dev/null), logs: $(tail -n 2 "$J/large.log" "$J/small.log")"
fi

# 2. a long job cancelled once the workers are ready and a result is out
set -- $(submit --prompts "$DATA/prompts20.txt" -- -n 240 --max-small 1 --fallback 0.99 -q 2>"$tmp/submit.err")
ID=${1:-} J=${2:-}
[ -n "$J" ] || { fail "job 2: not submitted: $(cat "$tmp/submit.err")"; exit 1; }
end=$(($(date +%s) + 120))
until [ -s "$J/results.jsonl" ]; do
    [ "$(date +%s)" -lt $end ] || { fail "job $ID: no result after 120 s: $(cat "$J/job.log")"; break; }
    sleep 0.1
done
lines=$(wc -l <"$J/results.jsonl")
scancel "$ID"
end=$(($(date +%s) + 60))
while timeout 12 squeue -h -j "$ID" 2>/dev/null | grep -q .; do
    [ "$(date +%s)" -lt $end ] || { fail "job $ID still in the queue 60 s after scancel"; break; }
    sleep 0.1
done
state=$(scontrol show job "$ID" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
left=$(pgrep -f -- "$J" | tr '\n' ' ')
[ "$state" = CANCELLED ] && echo "ok   job $ID: cancelled after $lines of 20 results: JobState=$state" ||
    fail "job $ID: JobState=$state, want CANCELLED"
[ -z "$left" ] && echo "ok   job $ID: nothing left running" || fail "job $ID: processes left running: $left: $(ps -o pid,args -p $left)"
[ "$(cat "$J/exit_status" 2>/dev/null)" = 143 ] && echo "ok   job $ID: exit status 143 recorded ($(tail -n 1 "$J/job.log"))" ||
    fail "job $ID: exit status $(cat "$J/exit_status" 2>/dev/null), want 143: $(cat "$J/job.log")"
echo "test_slurm: $fails failed"
[ $fails -eq 0 ]
