#!/bin/sh
# test_t5_tasks.sh - bench/t5_tasks.sh end to end on the tiny T5 test pair
# (tests/data/t5/t5v11_f32 with the Unigram tokenizer, its noisy copy
# tests/data/t5bild/small): every setting runs, the table has a row for
# each, --exact's outputs are the large model's word for word (so its BLEU
# is the large model's), BLEU agrees with bild bleu run by hand, and a
# non-empty --out folder is refused. On WMT14 when ../shared/data is there.
set -u
. tests/cli_lib.sh
L=$tmp/large
mkdir -p "$L"
cp "$DATA/t5/t5v11_f32/config.json" "$DATA/t5/t5v11_f32/model.safetensors" "$DATA/t5tok/tokenizer.json" "$L/"
printf 'Das ist ein Test.\nIch habe heute keine Zeit.\nDie Katze schläft auf dem Sofa, nicht im Garten.\n' >"$tmp/src.txt"
printf 'This is a test.\nI have no time today.\nThe cat sleeps on the sofa, not in the garden.\n' >"$tmp/ref.txt"
run() { BILD=$BILD sh bench/t5_tasks.sh --small "$DATA/t5bild/small" --large "$L" --max-tokens 16 --threads 1 "$@"; }
run --src "$tmp/src.txt" --ref "$tmp/ref.txt" --settings "0.5:2 0.9:5" --out "$tmp/o1" >"$tmp/table" 2>"$tmp/err" ||
    fail "t5_tasks: $(tail -n 3 "$tmp/err")"
/usr/bin/python3 - "$tmp/o1" <<'PY' || fail "t5_tasks: table or outputs wrong"
import os, sys
d = sys.argv[1]
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(d, "table.tsv"))][1:]
assert [r[1] for r in rows] == ["large", "small", "exact", "0.5:2", "0.9:5"], rows
t = {r[1]: r for r in rows}
assert t["large"][3] == "1.00", t["large"]
assert all(int(r[5]) > 0 and float(r[8]) > 0 for r in rows), rows
hyp = lambda s: open(os.path.join(d, "custom.%s.hyp" % s)).read()  # noqa: E731
assert hyp("exact") == hyp("large") and t["exact"][2] == t["large"][2], (hyp("exact"), hyp("large"))
assert len(hyp("large").splitlines()) == 3
PY
want=$("$BILD" bleu -q --hyp "$tmp/o1/custom.0.9:5.hyp" "$tmp/ref.txt" --json |
       /usr/bin/python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["score"])')
got=$(awk -F '\t' '$2 == "0.9:5" { print $3 }' "$tmp/o1/table.tsv")
[ "$want" = "$got" ] || fail "t5_tasks: BLEU $got in the table, bild bleu says $want"
grep -q "BLEU means something only with trained weights" "$tmp/table" || fail "t5_tasks: no note on random weights"
echo "ok   t5_tasks: 5 settings, --exact = large word for word, BLEU as bild bleu"
run --src "$tmp/src.txt" --ref "$tmp/ref.txt" --out "$tmp/o1" >/dev/null 2>"$tmp/err" && fail "t5_tasks reused a full --out"
grep -q "exists and is not empty" "$tmp/err" || fail "t5_tasks: refusal message: $(cat "$tmp/err")"
echo "ok   t5_tasks: a non-empty --out is refused: $(cat "$tmp/err")"
head -n 2 "$tmp/ref.txt" >"$tmp/ref2.txt"
run --src "$tmp/src.txt" --ref "$tmp/ref2.txt" --out "$tmp/o2" >/dev/null 2>"$tmp/err" && fail "t5_tasks: line counts"
grep -q "segment counts differ" "$tmp/err" || fail "t5_tasks: count message: $(cat "$tmp/err")"
S=${BILD_SHARED:-../shared}
if [ -r "$S/data/wmt14-deen/newstest2014-deen-src.de.sgm" ]; then
    run --task wmt14 -n 2 --settings "" --data "$S/data" --out "$tmp/o3" >/dev/null 2>"$tmp/err" ||
        fail "t5_tasks on WMT14: $(tail -n 3 "$tmp/err")"
    [ "$(wc -l <"$tmp/o3/wmt14.src")" -eq 2 ] || fail "t5_tasks on WMT14: not 2 segments"
    echo "ok   t5_tasks on WMT14 (2 segments)"
else
    echo "SKIP t5_tasks on WMT14: no $S/data (the shared test sets)"
fi
[ $fails -eq 0 ] || { echo "test_t5_tasks: $fails failed"; exit 1; }
echo "test_t5_tasks: ok"
