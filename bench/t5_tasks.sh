#!/bin/sh
# t5_tasks.sh - the BiLD paper's translation tasks (Table 1) on a T5 / mT5
# pair: WMT14 de-en (newstest2014) and IWSLT17 de-en (tst2017) from
# ../shared/data, German sources translated into English; per setting the
# corpus BLEU against the references (bild bleu, sacreBLEU's definition) and
# the speedup over the large model alone, on the same segments in the same
# run. Speed is each request's own generation time as bild generate reports
# it (the encoders included), summed over the segments.
#
# usage: sh bench/t5_tasks.sh --small DIR --large DIR [options]
#   --small DIR, --large DIR  Hugging Face T5 / mT5 folders (a tokenizer.json
#                       beside the large one, or --tokenizer)
#   --tokenizer FILE    the pair's tokenizer.json
#   --dummy-weights     DIRs hold config.json only: random bf16 weights, for
#                       speed at the real shapes (bench/t5/*); BLEU then means nothing
#   --task T            wmt14, iwslt17 or both (default both)
#   -n N                the first N segments of each test set (default 50)
#   --max-tokens N      output tokens per segment at most (default 64)
#   --prefix TEXT       put before every source, e.g. "translate German to
#                       English: " for the original T5 checkpoints (default none)
#   --settings LIST     BiLD settings besides the baselines, as
#                       "FALLBACK:ROLLBACK ..." (default "0.5:2 0.7:3 0.9:5"); the
#                       baselines are large alone, small alone and --exact
#   --threads N         CPU threads (default: all)
#   --out DIR           where the sources, references, outputs and the table
#                       go (default: a new temporary folder); an existing
#                       non-empty DIR is refused, so two runs never mix
#   --data DIR          the test sets (default ../shared/data; BILD_SHARED/data)
#   --src FILE --ref FILE  any other test set instead of --task: .sgm, .xml
#                       or plain text, one segment per line
# Prints the table on stdout (also DIR/table.tsv); progress on stderr.
set -eu
BILD=${BILD:-${BUILD:-build}/bild}
small="" large="" tok="" dummy="" task=both n=50 maxt=64 prefix="" settings="0.5:2 0.7:3 0.9:5" threads=""
out="" data=${BILD_SHARED:-../shared}/data src="" ref=""
die() { echo "t5_tasks: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
    --small) small=$2; shift 2 ;;
    --large) large=$2; shift 2 ;;
    --tokenizer) tok=$2; shift 2 ;;
    --dummy-weights) dummy=1; shift ;;
    --task) task=$2; shift 2 ;;
    -n) n=$2; shift 2 ;;
    --max-tokens) maxt=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --settings) settings=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --src) src=$2; shift 2 ;;
    --ref) ref=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
[ -n "$small" ] && [ -n "$large" ] || die "--small and --large are required (see --help)"
[ -x "$BILD" ] || die "$BILD not found: run make (or set BILD)"
case $n in ''|*[!0-9]*|0) die "-n: a positive number of segments, got '$n'" ;; esac
case $maxt in ''|*[!0-9]*|0) die "--max-tokens: a positive number, got '$maxt'" ;; esac
for s in $settings; do
    case $s in *:*) ;; *) die "--settings: '$s' is not FALLBACK:ROLLBACK" ;; esac
done
if [ -n "$src$ref" ]; then
    [ -n "$src" ] && [ -n "$ref" ] || die "--src and --ref go together"
    task=custom
fi
case $task in
wmt14) tasks=wmt14 ;; iwslt17) tasks=iwslt17 ;; both) tasks="wmt14 iwslt17" ;; custom) tasks=custom ;;
*) die "--task: wmt14, iwslt17 or both, got '$task'" ;;
esac
if [ -z "$out" ]; then out=$(mktemp -d /tmp/t5_tasks.XXXXXX)
elif [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then die "--out $out exists and is not empty: give a new folder"
fi
mkdir -p "$out"
# the lock: a second run given the same new folder at the same moment stops here
mkdir "$out/.lock" 2>/dev/null || die "--out $out is in use by another run"
trap 'rmdir "$out/.lock" 2>/dev/null' EXIT
common="-S $small -L $large -n $maxt -q"
[ -n "$tok" ] && common="$common --tokenizer $tok"
[ -n "$dummy" ] && common="$common --dummy-weights --dummy-dtype bf16"
[ -n "$threads" ] && common="$common -j $threads"

# segments of a test file, plain text in, one per line out (sources: entities decoded)
segments() { # FILE UNESCAPE OUT
    case $1 in
    *.sgm|*.xml) if [ "$2" = 1 ]; then "$BILD" bleu --extract "$1" --unescape; else "$BILD" bleu --extract "$1"; fi ;;
    *) cat "$1" ;;
    esac | head -n "$n" >"$3"
}

printf 'task\tsetting\tBLEU\tspeedup\ttok/s\ttokens\tlarge passes\tsmall passes\tseconds\n' >"$out/table.tsv"
for t in $tasks; do
    case $t in
    wmt14) s=$data/wmt14-deen/newstest2014-deen-src.de.sgm r=$data/wmt14-deen/newstest2014-deen-ref.en.sgm ;;
    iwslt17) s=$data/iwslt17-deen/IWSLT17.TED.tst2017.de-en.de.xml r=$data/iwslt17-deen/IWSLT17.TED.tst2017.en-de.en.xml ;;
    custom) s=$src r=$ref ;;
    esac
    [ -r "$s" ] && [ -r "$r" ] || die "$t: cannot read $s or $r (--data DIR, or --src/--ref)"
    segments "$s" 1 "$out/$t.src"
    segments "$r" 0 "$out/$t.ref"
    [ "$(wc -l <"$out/$t.src")" -eq "$(wc -l <"$out/$t.ref")" ] || die "$t: source and reference segment counts differ"
    awk -v p="$prefix" '{ print p $0 }' "$out/$t.src" >"$out/$t.prompts"
    echo "t5_tasks: $t: $(wc -l <"$out/$t.src") segments" >&2
    large_s=""
    for setting in large small exact $settings; do
        case $setting in
        large) args="--mode large" ;;
        small) args="--mode small" ;;
        exact) args="--exact" ;;
        *) args="--fallback ${setting%%:*} --rollback ${setting#*:}" ;;
        esac
        res=$out/$t.$setting.jsonl
        # shellcheck disable=SC2086
        "$BILD" generate $common $args --prompts "$out/$t.prompts" >"$res" 2>"$out/$t.$setting.err" ||
            die "$t $setting: bild generate failed: $(tail -n 3 "$out/$t.$setting.err")"
        line=$(/usr/bin/python3 - "$res" "$out/$t.$setting.hyp" <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bad = [r for r in rs if "error" in r]
if bad:
    sys.exit("request %s failed: %s" % (bad[0].get("id"), bad[0]["error"]))
with open(sys.argv[2], "w", encoding="utf-8") as f:
    f.write("".join(" ".join(r["text"].split()) + "\n" for r in rs))
s = lambda k: sum(r["stats"][k] for r in rs)  # noqa: E731
print("%.6f %d %d %d" % (s("total_s"), s("generated"), s("large_passes"), s("small_passes")))
PY
) || die "$t $setting: bad results in $res"
        set -- $line
        secs=$1 toks=$2 nl=$3 ns=$4
        bleu=$("$BILD" bleu -q --json --hyp "$out/$t.$setting.hyp" "$out/$t.ref" |
               /usr/bin/python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["score"])') ||
            die "$t $setting: bild bleu failed"
        [ -z "$large_s" ] && large_s=$secs
        sp=$(awk -v a="$large_s" -v b="$secs" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
        tps=$(awk -v a="$toks" -v b="$secs" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.3f\n' "$t" "$setting" "$bleu" "$sp" "$tps" "$toks" "$nl" "$ns" "$secs" \
            >>"$out/table.tsv"
        echo "t5_tasks: $t $setting: BLEU $bleu, ${sp}x the large model, $tps tok/s" >&2
    done
done
column -t -s "$(printf '\t')" "$out/table.tsv" 2>/dev/null || cat "$out/table.tsv"
echo "(speedup: the large model alone's seconds / the setting's, same segments, this run; files in $out)"
if [ -n "$dummy" ]; then echo "note: random weights (--dummy-weights): BLEU means nothing, only the speed does"
else echo "note: BLEU means something only with trained weights; on random test models it does not"
fi
