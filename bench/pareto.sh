#!/bin/sh
# pareto.sh - the speed/quality trade-off of BiLD as a picture, like the
# paper's Figure 4: bench/bild's whole threshold grid (one interleaved run),
# then two panels drawn by gnuplot: speedup over the large model alone
# against ROUGE-L to the large model's own greedy text, and against the
# large model's NLL of the output (lower is better). One colour per small
# model; BiLD settings as points (exact-text ones filled), speculative
# decoding as triangles, the large model alone at (1, its own quality) and
# each small model's oracle bound as a star.
#
# usage: bench/pareto.sh [OUT.png (default bench/results/pareto.png)] [bench/bild options...]
#   e.g. bench/pareto.sh /tmp/p.png --small tools/align/stories15M-aligned:0 --small tools/align/stories15M-aligned
# Installs Debian's gnuplot-nox when gnuplot is missing. Writes OUT.png and
# OUT.tsv (the numbers) and bench/bild's table to OUT.txt.
set -eu
OUT=${1:-bench/results/pareto.png}
[ $# -gt 0 ] && shift
BENCH=${BENCH_BILD:-build/bench/bild}
base=${OUT%.png}
if ! command -v gnuplot >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gnuplot-nox >/dev/null
fi
[ -x "$BENCH" ] || { echo "bench/pareto.sh: no $BENCH (make)" >&2; exit 2; }
[ -f models/stories15M/stories15M.bin ] || sh scripts/get-models.sh >&2
"$BENCH" --tsv "$base.tsv" "$@" | tee "$base.txt"
# one data block per (small model, kind), for gnuplot's index
/usr/bin/python3 - "$base.tsv" "$base.dat" "$base.gp" "$OUT" <<'PY'
import collections, sys
tsv, dat, gp, png = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(tsv)][1:]
smalls = list(dict.fromkeys(r[0] for r in rows if r[1] != "large"))
kinds = ["bild", "bild-exact", "spec", "oracle"]
blocks, titles = [], []
with open(dat, "w") as f:
    large = [r for r in rows if r[1] == "large"][:1]
    for r in large:
        f.write("# large\n%s %s %s\n\n\n" % (r[3], r[4], r[5]))
    blocks.append(("large", None)), titles.append("large model alone")
    for s in smalls:
        for k in kinds:
            pts = [r for r in rows if r[0] == s and r[1] == k]
            if not pts: continue
            f.write("# %s %s\n" % (s, k))
            for r in pts: f.write("%s %s %s\n" % (r[3], r[4], r[5]))
            f.write("\n\n")
            blocks.append((k, smalls.index(s)))
            name = s.split("/")[-1]
            name = name[:-2] + " (full vocabulary)" if name.endswith(":0") else name
            titles.append("%s, %s" % (name, {"bild": "BiLD", "bild-exact": "BiLD, exact text", "spec": "speculative", "oracle": "oracle bound"}[k]))
style = {"large": "pt 9 ps 2 lc rgb 'black'", "bild": "pt 6 ps 1.2", "bild-exact": "pt 7 ps 1.2", "spec": "pt 8 ps 1.5", "oracle": "pt 3 ps 2.5"}
colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
def plot(ycol):
    parts = []
    for i, ((k, si), t) in enumerate(zip(blocks, titles)):
        lc = "" if si is None else " lc rgb '%s'" % colours[si % 4]
        parts.append("'%s' index %d using 1:%d with points %s%s title '%s'" % (dat, i, ycol, style[k], lc, t.replace("'", "")))
    return "plot " + ", \\\n     ".join(parts)
with open(gp, "w") as f:
    f.write("set terminal png size 1400,640 noenhanced\n")
    f.write("set output '%s'\nset multiplot layout 1,2 title 'BiLD on this machine: speedup over the large model alone vs quality (bench/bild, one interleaved run)'\n" % png)
    f.write("set grid\nset key below font ',9' maxrows 3\nset xlabel 'speedup over the large model alone'\n")
    f.write("set ylabel 'ROUGE-L vs the large model greedy text'\nset yrange [*:1.02]\n" + plot(2) + "\n")
    f.write("set ylabel 'NLL of the output under the large model (nats/token)'\nset yrange [*:*]\n" + plot(3) + "\n")
    f.write("unset multiplot\n")
PY
gnuplot "$base.gp"
echo "bench/pareto.sh: $OUT (numbers in $base.tsv, table in $base.txt)" >&2
