#!/bin/sh
# submit.sh - submits BiLD as a Slurm job (launch/slurm/bild.sbatch): checks
# the inputs, makes the job folder, runs sbatch, prints the job id and the
# folder. See launch/slurm/README.md.
usage() {
    cat <<'EOF'
usage: launch/slurm/submit.sh --small PATH --large PATH (--prompts FILE | --requests FILE) [options] [-- GENERATE_ARGS...]

Runs the large worker, the small worker and the coordinator (bild generate in
serve mode) as steps of one Slurm job, over tcp:// with a fresh CURVE key set.
Results go to JOBDIR/results.jsonl (one JSON line per request), logs to
JOBDIR/{job,large,small,coordinator}.log, the job's exit status to
JOBDIR/exit_status. Paths must be readable on the compute nodes.

  --small PATH, --large PATH   the two models (llama2.c file or Hugging Face folder)
  --tokenizer PATH             their tokenizer (default: tokenizer.bin beside --large)
  --prompts FILE               one prompt per line
  --requests FILE              JSON lines (bild generate --help)
  --out DIR                    where job folders go (default ./bild-jobs)
  --gpus auto|yes|no           a GPU per worker step (default auto: when sinfo
                               lists a gpu GRES)
  --threads N                  CPU threads per worker (default: the step's CPUs)
  --bild PATH                  the bild binary (default: build/bild of this checkout)
  --wait                       wait for the job to end; exit with its status
  --sbatch ARG                 pass ARG to sbatch (repeatable: --sbatch -p --sbatch gpu)
  -- ARGS...                   extra bild generate arguments (e.g. -n 128 --exact)
  -h, --help                   this help

exit status: 0 submitted (with --wait: the job's status, see bild.sbatch),
2 bad command line, 3 a file not found, 4 sbatch failed.
EOF
}
set -u
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "submit.sh: $2" >&2; exit "$1"; }
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$(pwd)/$1" ;; esac; }
small="" large="" tok="" input="" flag="" out=./bild-jobs gpus=auto threads=0 wait=0
bild=$(cd "$here/../.." && pwd)/build/bild
sb_args="" # sbatch arguments, newline-separated
while [ $# -gt 0 ]; do
    case "$1" in
        --small) small=${2:?}; shift 2 ;;
        --large) large=${2:?}; shift 2 ;;
        --tokenizer) tok=${2:?}; shift 2 ;;
        --prompts|--requests) [ -z "$flag" ] || die 2 "give one of --prompts and --requests"; flag=$1; input=${2:?}; shift 2 ;;
        --out) out=${2:?}; shift 2 ;;
        --gpus) gpus=${2:?}; shift 2 ;;
        --threads) threads=${2:?}; shift 2 ;;
        --bild) bild=${2:?}; shift 2 ;;
        --wait) wait=1; shift ;;
        --sbatch) sb_args="$sb_args
${2:?}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) echo "submit.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
[ -n "$small" ] && [ -n "$large" ] || die 2 "--small and --large are required (see --help)"
[ -n "$flag" ] || die 2 "give --prompts FILE or --requests FILE (see --help)"
case "$gpus" in auto|yes|no) ;; *) die 2 "--gpus: auto, yes or no, not '$gpus'" ;; esac
case "$threads" in ''|*[!0-9]*) die 2 "--threads: a number, not '$threads'" ;; esac
[ -n "$tok" ] || tok=$(dirname "$large")/tokenizer.bin
for f in "$small" "$large" "$tok" "$input" "$bild"; do [ -e "$f" ] || die 3 "$f: no such file"; done
[ -x "$bild" ] || die 3 "$bild is not executable: build it with make, or give --bild"
command -v sbatch >/dev/null || die 4 "no sbatch command: is this a Slurm submit host?"
if [ "$gpus" = auto ]; then
    gpus=no
    sinfo -h -o %G 2>/dev/null | grep -q gpu && gpus=yes
fi

mkdir -p "$out" || die 3 "cannot make $out"
jobdir=$(mktemp -d "$(abspath "$out")/bild-$(date +%Y%m%d-%H%M%S)-XXXX") || die 3 "cannot make a job folder in $out"
chmod 755 "$jobdir"
: >"$jobdir/generate_args"
for a in "$@"; do printf '%s\n' "$a" >>"$jobdir/generate_args"; done

IFS='
'
set -- $(printf '%s' "$sb_args" | sed '/^$/d')
unset IFS
[ "$gpus" = yes ] && set -- "$@" --gpus-per-task=1
jobid=$(BILD=$(abspath "$bild") BILD_JOBDIR=$jobdir BILD_SMALL=$(abspath "$small") BILD_LARGE=$(abspath "$large") \
    BILD_TOKENIZER=$(abspath "$tok") BILD_INPUT_FLAG=$flag BILD_INPUT=$(abspath "$input") \
    BILD_GPUS=$([ "$gpus" = yes ] && echo 1 || echo 0) BILD_THREADS=$threads BILD_ARGS_FILE=$jobdir/generate_args \
    sbatch --parsable --export=ALL --chdir="$jobdir" --output="$jobdir/job.log" "$@" "$here/bild.sbatch") ||
    die 4 "sbatch failed (see above); the job folder $jobdir is left for inspection"
jobid=${jobid%%;*}
echo "$jobid" >"$jobdir/job_id"
echo "submit.sh: job $jobid, folder $jobdir" >&2
echo "$jobid $jobdir"
[ $wait = 1 ] || exit 0
while squeue -h -j "$jobid" 2>/dev/null | grep -q .; do sleep 1; done
[ -f "$jobdir/exit_status" ] || die 1 "job $jobid ended without an exit status (killed before it started?): see $jobdir/job.log"
st=$(cat "$jobdir/exit_status")
echo "submit.sh: job $jobid ended with status $st" >&2
exit "$st"
