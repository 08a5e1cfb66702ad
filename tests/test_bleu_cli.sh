#!/bin/sh
# test_bleu_cli.sh - `bild bleu` end to end: sacreBLEU's README example
# (its published score, 48.530827), stdin and --hyp, several references,
# --json (parsed with Python's json when /usr/bin/python3 is there),
# --extract on the committed .sgm/.xml snippets, and one case per kind of
# bad command line or input (exit code and a one-line message). When
# ../shared/data exists (SHARED overrides ../shared), also the segment
# counts of the WMT14 (3003) and IWSLT17 (1138) test files; that part says
# SKIP when it is absent, and the rest still runs.
# Needs no models. Run from the repository root; BUILD selects the build folder.
set -u
CLI_LIB_NO_MODELS=1
. tests/cli_lib.sh
DATA=tests/data/bleu
SHARED=${SHARED:-../shared}
[ -x "$BILD" ] || { echo "FAIL: $BILD missing (make)"; exit 1; }
expect_stdin=$tmp/stdin
: >"$tmp/stdin"

# sacreBLEU's README example (test/test_bleu.py: 48.530827 with the defaults, 49.1919566 with tokenize none)
printf '%s\n' 'The dog bit the man.' 'It was not unexpected.' 'The man bit him first.' >"$tmp/ref1"
printf '%s\n' 'The dog had bit the man.' 'No one was surprised.' 'The man had bitten the dog.' >"$tmp/ref2"
printf '%s\n' 'The dog bit the man.' "It wasn't surprising." 'The man had just bitten him.' >"$tmp/hyp"
WANT='BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)'

# 1. The score line, from stdin and from --hyp
out=$("$BILD" bleu "$tmp/ref1" "$tmp/ref2" <"$tmp/hyp" 2>"$tmp/err")
[ $? -eq 0 ] && [ "$out" = "$WANT" ] && echo "ok   two references, stdin: $out" || fail "score line: '$out' $(cat "$tmp/err")"
grep -qF "3 segments, nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp" "$tmp/err" \
    && echo "ok   signature on stderr" || fail "signature: $(cat "$tmp/err")"
out2=$("$BILD" bleu -q --hyp "$tmp/hyp" "$tmp/ref1" "$tmp/ref2" 2>"$tmp/err")
[ "$out2" = "$WANT" ] && [ ! -s "$tmp/err" ] && echo "ok   --hyp, -q" || fail "--hyp: '$out2' $(cat "$tmp/err")"
out=$("$BILD" bleu -q --tokenize none -i "$tmp/hyp" -- "$tmp/ref1" "$tmp/ref2")
case "$out" in "BLEU = 49.19 "*) echo "ok   --tokenize none: $out" ;; *) fail "--tokenize none: $out" ;; esac
out=$("$BILD" bleu -q "$tmp/hyp" <"$tmp/hyp")
case "$out" in "BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 "*) echo "ok   identity scores 100" ;;
    *) fail "identity: $out" ;; esac
tr 'A-Z' 'a-z' <"$tmp/hyp" >"$tmp/hyp_lc"
a=$("$BILD" bleu -q "$tmp/ref1" "$tmp/ref2" <"$tmp/hyp_lc"); b=$("$BILD" bleu -q --lowercase "$tmp/ref1" "$tmp/ref2" <"$tmp/hyp_lc")
[ "$a" != "$b" ] && [ "${b%% *}" = "BLEU" ] && echo "ok   --lowercase changes the score of lowercased output ($a -> ${b#BLEU = })" \
    || fail "--lowercase: '$a' / '$b'"
out=$("$BILD" bleu -q --smooth floor --smooth-value 0.5 "$tmp/ref1" <"$tmp/hyp") && echo "ok   --smooth floor --smooth-value 0.5: $out" \
    || fail "--smooth floor"
# a hypothesis file without a final newline reads the same
printf '%s\n%s\n%s' 'The dog bit the man.' "It wasn't surprising." 'The man had just bitten him.' >"$tmp/hyp_nonl"
[ "$("$BILD" bleu -q "$tmp/ref1" "$tmp/ref2" <"$tmp/hyp_nonl")" = "$WANT" ] && echo "ok   no final newline" || fail "no final newline"

# 2. --json
"$BILD" bleu --json -q "$tmp/ref1" "$tmp/ref2" <"$tmp/hyp" >"$tmp/json" || fail "--json run"
[ "$(wc -l <"$tmp/json")" -eq 1 ] && echo "ok   --json: one line" || fail "--json lines: $(cat "$tmp/json")"
if [ -x /usr/bin/python3 ]; then
    /usr/bin/python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert abs(j["score"] - 48.530827) < 1e-8, j["score"]
assert j["counts"] == [14, 7, 5, 3] and j["totals"] == [17, 14, 11, 8], j
assert j["hyp_len"] == 17 and j["ref_len"] == 18 and j["segments"] == 3 and j["nrefs"] == 2, j
assert abs(j["bp"] - 0.9428731438548749) < 1e-12 and abs(j["ratio"] - 17 / 18) < 1e-15, j
assert len(j["precisions"]) == 4 and j["verbose_score"] == sys.argv[2], j
assert j["signature"] == "nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp", j
' "$tmp/json" "$WANT" && echo "ok   --json fields (python json)" || fail "--json content: $(cat "$tmp/json")"
else
    echo "note: /usr/bin/python3 absent, --json content not parsed"
fi

# 3. --extract
"$BILD" bleu --extract "$DATA/ok.xml" >"$tmp/x" 2>"$tmp/err" || fail "--extract ok.xml: $(cat "$tmp/err")"
[ "$(wc -l <"$tmp/x")" -eq 5 ] && [ "$(sed -n 2p "$tmp/x")" = "You may know him as the reporter for The Times." ] \
    && [ "$(sed -n 3p "$tmp/x")" = 'Tom &amp; Jerry said &quot;hi&quot;.' ] \
    && echo "ok   --extract ok.xml: 5 segments, whitespace cleaned, entities kept (as sacreBLEU)" || fail "--extract ok.xml: $(cat "$tmp/x")"
"$BILD" bleu --extract "$DATA/ok.xml" --unescape >"$tmp/x" 2>"$tmp/err"
[ "$(sed -n 3p "$tmp/x")" = 'Tom & Jerry said "hi".' ] && echo "ok   --extract --unescape" || fail "--unescape: $(cat "$tmp/x")"
"$BILD" bleu --extract "$DATA/ok.sgm" >"$tmp/x" 2>"$tmp/err"
[ "$(wc -l <"$tmp/x")" -eq 7 ] && [ "$(sed -n 5p "$tmp/x")" = "" ] && echo "ok   --extract ok.sgm: 7 segments (one empty)" \
    || fail "--extract ok.sgm: $(cat "$tmp/x")"
expect "--extract: unterminated <seg>" 3 "$DATA/bad_unterminated.sgm:4:" -- bleu --extract "$DATA/bad_unterminated.sgm"
expect "--extract: no segments" 3 "no segments" -- bleu --extract "$DATA/bad_noseg.xml"
expect "--extract: invalid UTF-8" 3 "$DATA/bad_utf8.sgm:3: not valid UTF-8" -- bleu --extract "$DATA/bad_utf8.sgm"
expect "--extract: bad character reference" 3 "$DATA/bad_charref.sgm:3:" -- bleu --extract "$DATA/bad_charref.sgm" --unescape
expect "--extract: missing file" 3 "$tmp/none.sgm: cannot open" -- bleu --extract "$tmp/none.sgm"

# 4. Bad command lines (exit 2)
expect "no reference" 2 "give at least one reference file" -- bleu
expect "unknown option" 2 "unknown option '--frobnicate'" -- bleu --frobnicate "$tmp/ref1"
expect "bad --tokenize" 2 "--tokenize: 'intl'" -- bleu --tokenize intl "$tmp/ref1"
expect "bad --smooth" 2 "--smooth: 'bogus'" -- bleu --smooth bogus "$tmp/ref1"
expect "--smooth-value with exp" 2 "--smooth-value goes with" -- bleu --smooth-value 0.2 "$tmp/ref1"
expect "bad --smooth-value" 2 "not a number" -- bleu --smooth floor --smooth-value x "$tmp/ref1"
expect "--tokenize without a value" 2 "--tokenize needs a value" -- bleu "$tmp/ref1" --tokenize
expect "--unescape alone" 2 "--unescape goes with --extract" -- bleu --unescape "$tmp/ref1"
expect "--extract with references" 2 "--extract takes one file" -- bleu --extract "$DATA/ok.sgm" "$tmp/ref1"
"$BILD" bleu --help >"$tmp/out" 2>&1 && grep -q "usage: bild bleu" "$tmp/out" && grep -q "exit status" "$tmp/out" \
    && echo "ok   --help" || fail "--help"
"$BILD" --help | grep -q "bleu" && echo "ok   listed in bild --help" || fail "bild --help lacks bleu"

# 5. Bad input (exit 3)
cp "$tmp/hyp" "$tmp/stdin"
head -n 2 "$tmp/ref1" >"$tmp/ref_short"
expect "line-count mismatch" 3 "<stdin> has 3 lines but reference $tmp/ref_short has 2" -- bleu "$tmp/ref_short"
expect "missing reference file" 3 "$tmp/nope: cannot open" -- bleu "$tmp/nope"
expect "missing --hyp file" 3 "$tmp/nope: cannot open" -- bleu --hyp "$tmp/nope" "$tmp/ref1"
printf 'a\n\nc\n' >"$tmp/ref_empty"
expect "empty reference line" 3 "$tmp/ref_empty:2: empty reference line" -- bleu "$tmp/ref_empty"
printf 'a\n\n\n' >"$tmp/ref_empty2"
expect "line empty in every reference" 3 "line 2 is empty in every reference file" -- bleu "$tmp/ref_empty" "$tmp/ref_empty2"
printf 'a\nb\n\n' >"$tmp/ref_var"
"$BILD" bleu -q "$tmp/ref_empty" "$tmp/ref_var" <"$tmp/hyp" >/dev/null 2>&1 && echo "ok   an empty line in one of two references is left out" \
    || fail "variable references"
: >"$tmp/stdin"
expect "empty hypotheses" 3 "no hypotheses" -- bleu "$tmp/ref1"
printf 'ok\n\377bad\nx\n' >"$tmp/stdin"
expect "invalid UTF-8 hypothesis" 3 "<stdin>:2: not valid UTF-8" -- bleu "$tmp/ref1"
printf 'a\0b\nc\nd\n' >"$tmp/stdin"
expect "NUL in hypothesis" 3 "NUL" -- bleu "$tmp/ref1"
: >"$tmp/stdin"

# 6. The real test sets, when they are here
if [ -d "$SHARED/data/wmt14-deen" ] && [ -d "$SHARED/data/iwslt17-deen" ]; then
    for f in "$SHARED"/data/wmt14-deen/*.sgm; do
        n=$("$BILD" bleu --extract "$f" | wc -l)
        [ "$n" -eq 3003 ] && echo "ok   $(basename "$f"): 3003 segments" || fail "$f: $n segments, want 3003"
    done
    for f in "$SHARED"/data/iwslt17-deen/*.xml; do
        n=$("$BILD" bleu --extract "$f" | wc -l)
        [ "$n" -eq 1138 ] && echo "ok   $(basename "$f"): 1138 segments" || fail "$f: $n segments, want 1138"
    done
    "$BILD" bleu --extract "$SHARED/data/wmt14-deen/newstest2014-deen-ref.en.sgm" >"$tmp/wmt.en"
    out=$("$BILD" bleu -q "$tmp/wmt.en" <"$tmp/wmt.en")
    case "$out" in "BLEU = 100.00 "*) echo "ok   WMT14 reference against itself: $out" ;; *) fail "WMT14 self: $out" ;; esac
else
    echo "SKIP (this part only): $SHARED/data/wmt14-deen or iwslt17-deen absent, segment counts not checked"
fi

[ $fails -eq 0 ] && echo "test_bleu_cli: ok" || echo "test_bleu_cli: $fails failed"
[ $fails -eq 0 ]
