#!/bin/sh
# test_slurm.sh - BiLD as a Slurm job (launch/slurm/) on a single-node
# cluster that the test starts in a temporary folder (munged, slurmctld -D,
# slurmd -D as root, ports from this shell's pid) and stops at the end, also
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
P=$((30000 + $$ % 15000 * 2))
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
export SLURM_CONF=$C/slurm.conf
slurmctld -i -D >"$C/slurmctld.out" 2>&1 &
pids="$pids $!"
slurmd -D >"$C/slurmd.out" 2>&1 &
pids="$pids $!"
i=0
until sinfo -h -o %T 2>/dev/null | grep -q idle; do
    [ $i -lt 300 ] || { echo "FAIL: the test cluster did not come up: $(tail -n 3 "$C/slurmctld.log" "$C/slurmd.log" 2>&1)"; exit 1; }
    sleep 0.1; i=$((i + 1))
done
echo "ok   single-node cluster up ($H, slurmctld port $P, $(nproc) CPUs)"

submit() { # submit ARGS...: prints "JOBID JOBDIR"
    sh launch/slurm/submit.sh --bild "$BILD" --small "$SM" --large "$LG" --tokenizer "$TOK" --out "$tmp/jobs" \
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
i=0
until [ -s "$J/results.jsonl" ]; do
    [ $i -lt 1200 ] || { fail "job $ID: no result after 120 s: $(cat "$J/job.log")"; break; }
    sleep 0.1; i=$((i + 1))
done
lines=$(wc -l <"$J/results.jsonl")
scancel "$ID"
i=0
while squeue -h -j "$ID" 2>/dev/null | grep -q .; do
    [ $i -lt 600 ] || { fail "job $ID still in the queue 60 s after scancel"; break; }
    sleep 0.1; i=$((i + 1))
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
