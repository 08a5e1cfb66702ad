#!/bin/sh
# make_unigram_goldens.sh - the Unigram tokenizer.json files and goldens in
# tests/data/t5tok/, for tests/test_tokenizer_unigram.c.
#
# 1. Takes the <seg> texts of the WMT14 sgm and IWSLT17 xml files in
#    $SHARED/data (German and English) as training text.
# 2. Trains two SentencePiece Unigram models (python3-sentencepiece, one
#    thread) with T5's id layout (pad 0, eos 1, unk 2, no bos):
#      t5: vocab 512, normalization rule nmt_nfkc (a real precompiled charsmap)
#      bf: vocab 1000, byte_fallback, identity normalization (no charsmap)
#    and converts them with tools/ref/sp_to_tokenizer_json.py (T5 layout) to
#    tests/data/t5tok/tokenizer.json and tests/data/t5tok/bf_1000.json.
# 3. Installs the reference, the Hugging Face `tokenizers` Rust library as
#    the npm package @anush008/tokenizers (its linux-x64-gnu binary), in a
#    temporary folder, and with Node.js writes tests/data/t5tok/golden_*.json:
#    for each file (and variants given as a patch of top-level fields) the ids
#    of encode(text, add_special_tokens) and decode(ids, skip_special_tokens)
#    for the first lines of each corpus file and a list of edge cases.
#    Invalid UTF-8 cases are stored as hex bytes; the reference is given the
#    text a WHATWG TextDecoder makes of them (U+FFFD per maximal invalid
#    subpart), since it takes JavaScript (UTF-16) strings only.
#
# Golden format: {"reference", "tokenizer", "patch", "cases": [{"text" or
# "hex", "ids", "decoded" (omitted when equal to the text)}]}.
#
# Needs: /usr/bin/python3 with python3-sentencepiece and python3-protobuf,
# node and npm (the npm registry), $SHARED (default ../shared). Run from the
# repository root: sh tools/ref/make_unigram_goldens.sh
# SentencePiece training may differ between versions; the goldens always
# match the tokenizer files written in the same run.
set -eu
SHARED=${SHARED:-../shared}
PY=/usr/bin/python3
OUT=tests/data/t5tok
W=$(mktemp -d /tmp/unigram_goldens.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$OUT"

FILES="$SHARED/data/wmt14-deen/newstest2014-deen-src.de.sgm $SHARED/data/wmt14-deen/newstest2014-deen-src.en.sgm
$SHARED/data/wmt14-deen/newstest2014-deen-ref.de.sgm $SHARED/data/wmt14-deen/newstest2014-deen-ref.en.sgm
$SHARED/data/iwslt17-deen/IWSLT17.TED.tst2017.de-en.de.xml $SHARED/data/iwslt17-deen/IWSLT17.TED.tst2017.en-de.en.xml"

echo "+ segments and training text"
# shellcheck disable=SC2086
"$PY" - "$W" $FILES <<'EOF'
import html, json, os, re, sys
w, paths = sys.argv[1], sys.argv[2:]
corpus, train = {}, []
for p in paths:
    segs = []
    for line in open(p, encoding="utf-8"):
        m = re.search(r"<seg[^>]*>(.*)</seg>", line)
        if m:
            segs.append(html.unescape(m.group(1)))
    corpus[os.path.basename(p)] = segs[:300]  # kept as they are: IWSLT's have spaces around
    train += [s.strip() for s in segs]
with open(os.path.join(w, "train.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(train) + "\n")
with open(os.path.join(w, "corpus.json"), "w", encoding="utf-8") as f:
    json.dump(corpus, f, ensure_ascii=False)
EOF

echo "+ train the SentencePiece models"
(cd "$W" && "$PY" - <<'EOF'
import sentencepiece as spm
common = dict(input="train.txt", model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
              num_threads=1, minloglevel=2)
spm.SentencePieceTrainer.train(model_prefix="t5", vocab_size=512, normalization_rule_name="nmt_nfkc", **common)
spm.SentencePieceTrainer.train(model_prefix="bf", vocab_size=1000, normalization_rule_name="identity",
                               byte_fallback=True, **common)
EOF
)
"$PY" tools/ref/sp_to_tokenizer_json.py "$W/t5.model" "$OUT/tokenizer.json"
"$PY" tools/ref/sp_to_tokenizer_json.py "$W/bf.model" "$OUT/bf_1000.json"
# A hand-made vocabulary whose scores (exact binary fractions) tie on many
# segmentations, for the tie-breaking rule, and with unknown characters.
cat > "$OUT/tie.json" <<'JSON'
{"version":"1.0","added_tokens":[{"id":0,"content":"<unk>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
"normalizer":null,"pre_tokenizer":{"type":"Metaspace","replacement":"\u2581","prepend_scheme":"always","split":true},
"post_processor":null,"decoder":{"type":"Metaspace","replacement":"\u2581","prepend_scheme":"always","split":true},
"model":{"type":"Unigram","unk_id":0,"byte_fallback":false,"vocab":[["<unk>",0.0],["\u2581",-1.0],["a",-1.0],["b",-1.0],
["c",-1.0],["ab",-2.0],["bc",-2.0],["\u2581a",-2.0],["\u2581ab",-3.0],["abc",-3.0],["ca",-2.0],["\u2581b",-1.5],
["cab",-3.5],["\u00e4",-1.0],["\u00e4b",-2.0],["x\u00e4",-4.0]]}}
JSON

echo "+ npm install @anush008/tokenizers@0.6.0 (the reference)"
npm install --silent --no-audit --no-fund --prefix "$W/npm" @anush008/tokenizers@0.6.0 >/dev/null

cat > "$W/gold.js" <<'EOF'
// Writes the goldens with the reference library (see make_unigram_goldens.sh).
const fs = require("fs");
const path = require("path");
const [npmDir, outDir, corpusPath] = process.argv.slice(2);
const { Tokenizer } = require(path.join(npmDir, "node_modules/@anush008/tokenizers"));
const ver = require(path.join(npmDir, "node_modules/@anush008/tokenizers/package.json")).version;
const corpus = JSON.parse(fs.readFileSync(corpusPath, "utf8"));
const SP = "\u2581";

const edges = [
  "", " ", "   ", "\t", "\n", " \t\n\r ", "a", "Hello world", "  leading spaces", "trailing spaces   ",
  "multiple   inner    spaces", "tab\tseparated\ttext", "new\nline\r\nwindows\rmac", "mixed \t \n whitespace",
  "\u00a0no-break\u00a0spaces\u2003em\u3000ideographic", "zero\u200bwidth\u200djoiner\ufeffbom",
  "soft\u00adhyphen", "control\u0001\u0002\u001fchars\u007f", "\u0085next line",
  "\ufb01 \ufb02 \ufb03 ligatures: \ufb01nden \ufb00", "\u2460\u2461\u2462 \u2474 \u24b6", "\uff28\uff45\uff4c\uff4c\uff4f\u3000\uff37\uff4f\uff52\uff4c\uff44",
  "\u2122 \u00bd \u00b2 \u338f \u2163 \u2177 \u01c5 \u00b5 \u212b \u2126", "\u2026 \u2014 \u201equoted\u201c \u00abguillemets\u00bb",
  "e\u0301 a\u0308 o\u0302 n\u0303 Cafe\u0301", "\u00e9 \u00e4 \u00f4 \u00f1 Caf\u00e9", "A\u030a \u212b \u00c5",
  "K\u0301\u0302 q\u0323\u0307 \u1e69 s\u0323\u0307", "\ufb01\u0301 \uff25\u0301 \u2460\u0301 \u00bd\u0301",
  "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd", "\u0928\u092e\u0938\u094d\u0924\u0947 \u0915\u094d\u0937",
  "emoji \ud83d\ude00 \ud83d\udc4d\ud83c\udffd \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67 \ud83c\uddef\ud83c\uddf5 \u2764\ufe0f",
  "CJK \u6f22\u5b57 \u304b\u306a \u30ab\u30bf\u30ab\u30ca \ud55c\uad6d\uc5b4", "\u1100\u1161\u11a8 \uac00\u11a8",
  "\uff8a\uff9f \uff76\uff9e halfwidth", "\u2581 literal \u2581\u2581 lower one eighth", "\u2581leading",
  "Text with </s> inside", "</s>", "<pad><unk></s>", "a</s>b", " </s> ", "\uff1c/s\uff1e full-width",
  "<unk> is literal", "<0x41> <0xE2>", "unknown: \u00fe\u00f0 \u0416\u0437 \u03a9\u03c8 \u2603 \ud800\udc00",
  "Donaudampfschifffahrtsgesellschaftskapit\u00e4nsm\u00fctze ".repeat(3),
  "a".repeat(300), "ab ".repeat(100), "\u00e4".repeat(200), "x".repeat(2000),
  "Numbers 0123456789 3.14159 1,000,000 2014-07-21 12:30", "ALL CAPS AND lower Case",
  "punctuation!?.,;:'\"()[]{}<>@#$%^&*-_=+\\|/~`", "Gutach: Noch mehr Sicherheit f\u00fcr Fu\u00dfg\u00e4nger",
  "\ufffd replacement char",
];
const invalid = ["616263ff20646566", "c3", "e282", "eda080", "f09f98206f6b", "c0af", "61808062", "f4908080",
                 "feff", "48656c6c6fc3"];

function lossy(hex) {
  return new TextDecoder("utf-8").decode(Buffer.from(hex, "hex"));
}

async function cases(tok, texts, hexes) {
  const out = [];
  for (const t of texts) {
    const enc = await tok.encode(t, null, { addSpecialTokens: true });
    const ids = enc.getIds();
    const dec = await tok.decode(ids, true);
    const c = { text: t, ids: ids };
    if (dec !== t) c.decoded = dec;
    out.push(c);
  }
  for (const h of hexes) {
    const enc = await tok.encode(lossy(h), null, { addSpecialTokens: true });
    const ids = enc.getIds();
    out.push({ hex: h, ids: ids, decoded: await tok.decode(ids, true) });
  }
  return out;
}

function lines(n) {
  const all = [];
  for (const k of Object.keys(corpus).sort()) all.push(...corpus[k].slice(0, n));
  return all;
}

const tieTexts = ["abc", "abcabc", "ab bc", "aaa", "bcbc", "cabca", "xyz", "axbyc", "zz zz", "", "a b c", "bab",
                  "\u00e4b x\u00e4b xx\u00e4 \u00e4\u00e4", "yy\u00e4bc", "b", " b"];
const legacyMeta = { type: "Metaspace", replacement: SP, add_prefix_space: true };
const variants = [
  { name: "t5", file: "tokenizer.json", patch: null, lines: 300 },
  { name: "tie", file: "tie.json", patch: null, lines: 0, texts: tieTexts, invalid: [] },
  { name: "t5_legacy", file: "tokenizer.json", patch: { pre_tokenizer: legacyMeta, decoder: legacyMeta }, lines: 20 },
  { name: "t5_first", file: "tokenizer.json",
    patch: { normalizer: null, pre_tokenizer: { type: "Metaspace", replacement: SP, prepend_scheme: "first", split: false } },
    lines: 10 },
  { name: "bf", file: "bf_1000.json", patch: null, lines: 40 },
  { name: "bf_nfkc", file: "bf_1000.json",
    patch: { normalizer: { type: "Sequence", normalizers: [{ type: "NFKC" }, { type: "Strip", strip_left: true, strip_right: true },
                                                          { type: "Replace", pattern: { Regex: " {2,}" }, content: " " }] } },
    lines: 10 },
];

(async () => {
  for (const v of variants) {
    const doc = JSON.parse(fs.readFileSync(path.join(outDir, v.file), "utf8"));
    if (v.patch) for (const k of Object.keys(v.patch)) doc[k] = v.patch[k];
    const tok = Tokenizer.fromString(JSON.stringify(doc)); // throws if the reference refuses the file
    const all = await cases(tok, (v.texts || edges).concat(lines(v.lines)), v.invalid || invalid);
    const g = { reference: `tokenizers 0.22.2 (Rust) via @anush008/tokenizers ${ver}, node ${process.version}`,
                tokenizer: v.file, patch: v.patch, cases: all };
    fs.writeFileSync(path.join(outDir, `golden_${v.name}.json`), JSON.stringify(g) + "\n");
    console.log(`golden_${v.name}.json: ${all.length} cases`);
  }
})().catch((e) => { console.error(e); process.exit(1); });
EOF
echo "+ goldens"
node "$W/gold.js" "$W/npm" "$OUT" "$W/corpus.json"
ls -l "$OUT"
