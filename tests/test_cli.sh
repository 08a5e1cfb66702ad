#!/bin/sh
# test_cli.sh - `bild run` end to end: the llama2.c golden text, --json, and
# one case per kind of bad input (each must exit non-zero with the right
# code and a one-line message that names the file or argument).
# Run from the repository root; BUILD selects the build folder.
set -u
. tests/cli_lib.sh

T32K=$TOK

# 1. Golden: greedy, 200 steps as llama2.c counts them (BOS at position 0,
#    then 200 sampled tokens, the last never fed back), byte for byte.
"$BILD" run -m "$M260" -z "$T512" -p "" -n 200 -t 0 -j 2 >"$tmp/gold" 2>"$tmp/err" || fail "golden run: $(cat "$tmp/err")"
if cmp -s "$tmp/gold" "$DATA/golden/llama2c-stories260K-t0-n200.txt"; then echo "ok   golden stories260K t0 n200"
else fail "golden text differs:"; diff "$tmp/gold" "$DATA/golden/llama2c-stories260K-t0-n200.txt" | head -5; fi
# the default tokenizer lookup (tok512.bin beside the model) gives the same text
"$BILD" run -m "$M260" -p "" -n 200 -t 0 -q >"$tmp/gold2" 2>&1 && cmp -s "$tmp/gold2" "$tmp/gold" \
    && echo "ok   default tokenizer lookup" || fail "default tokenizer lookup"

# 2. --json: one valid JSON object whose text is the golden text without the newline
"$BILD" run -m "$M260" -p "" -n 200 -t 0 -q --json >"$tmp/json" 2>"$tmp/err" || fail "json run"
if command -v python3 >/dev/null; then
    python3 - "$tmp/json" "$tmp/gold" <<'PY' && echo "ok   --json" || fail "--json output"
import json, sys
j = json.load(open(sys.argv[1]))
gold = open(sys.argv[2], encoding="utf-8").read()
assert j["text"] + "\n" == gold, (j["text"][:80], gold[:80])
assert j["generated_tokens"] == len(j["tokens"]) == 200 and j["stop"] == "length", j
assert j["prompt_tokens"] == 1
PY
fi

# 3. Seeded sampling is reproducible, and different seeds differ.
a=$("$BILD" run -m "$M260" -p "Once" -n 40 -s 7 -q 2>&1); b=$("$BILD" run -m "$M260" -p "Once" -n 40 -s 7 -q -j 1 2>&1)
c=$("$BILD" run -m "$M260" -p "Once" -n 40 -s 8 -q 2>&1)
[ "$a" = "$b" ] && [ "$a" != "$c" ] && echo "ok   seeded sampling" || fail "seeded sampling: '$a' / '$b' / '$c'"

# 4. Output is valid UTF-8 even when a token splits a character (byte fallback).
"$BILD" run -m "$M260" -p "日本 café" -n 30 -t 0.9 -s 1 -q >"$tmp/u8" 2>&1 || fail "utf8 run"
iconv -f UTF-8 -t UTF-8 "$tmp/u8" >/dev/null 2>&1 && head -c 12 "$tmp/u8" | grep -q "日本 café" \
    && echo "ok   UTF-8 output" || fail "UTF-8 output not valid: $(od -c "$tmp/u8" | head -3)"

# 5. Bad input files.
head -c 500000 "$M260" >"$tmp/trunc.bin"
expect "truncated checkpoint" 3 "trunc.bin" -- run -m "$tmp/trunc.bin" -z "$T512" -p x
expect "truncated checkpoint says so" 3 "truncated" -- run -m "$tmp/trunc.bin" -z "$T512" -p x
head -c 10 "$M260" >"$tmp/tiny.bin"
expect "checkpoint shorter than header" 3 "too short" -- run -m "$tmp/tiny.bin" -z "$T512" -p x
# header: dim 64 with n_heads 7 (not a divisor)
python3 -c "
import struct,sys
d=open('$M260','rb').read(); h=list(struct.unpack('7i',d[:28]))
h[3]=7; open('$tmp/heads.bin','wb').write(struct.pack('7i',*h)+d[28:])
h[3]=8; h[0]=-64; open('$tmp/negdim.bin','wb').write(struct.pack('7i',*h)+d[28:])
h[0]=64; h[4]=16; open('$tmp/kv.bin','wb').write(struct.pack('7i',*h)+d[28:])
h[4]=4; h[1]=173; open('$tmp/hidden.bin','wb').write(struct.pack('7i',*h)+d[28:])
"
expect "header: n_heads does not divide dim" 3 "n_heads" -- run -m "$tmp/heads.bin" -z "$T512" -p x
expect "header: negative dim" 3 "dim = -64" -- run -m "$tmp/negdim.bin" -z "$T512" -p x
expect "header: n_kv_heads > n_heads" 3 "n_kv_heads" -- run -m "$tmp/kv.bin" -z "$T512" -p x
expect "header: hidden_dim disagrees with size" 3 "hidden 173" -- run -m "$tmp/hidden.bin" -z "$T512" -p x
expect "tokenizer of another vocabulary" 3 "tokenizer.bin" -- run -m "$M260" -z "$T32K" -p x
expect "tokenizer mismatch says why" 3 "512" -- run -m "$M260" -z "$T32K" -p x
expect "missing model file" 3 "$tmp/nope.bin" -- run -m "$tmp/nope.bin" -p x
expect "model directory without config.json" 3 "config.json: cannot open" -- run -m "$tmp" -p x
mkdir "$tmp/hfbad" && cp tests/data/hf/llama_gqa_f32/* "$tmp/hfbad/" &&
    sed -i 's/"LlamaForCausalLM"/"GPT2LMHeadModel"/' "$tmp/hfbad/config.json"
expect "Hugging Face directory of an unknown architecture" 3 "config.json: architectures: unsupported architecture 'GPT2LMHeadModel'" -- run -m "$tmp/hfbad" -p x
expect "missing tokenizer file" 3 "$tmp/nope.tok" -- run -m "$M260" -z "$tmp/nope.tok" -p x
cp "$M260" "$tmp/lonely.bin"
expect "no tokenizer beside the model" 3 "--tokenizer" -- run -m "$tmp/lonely.bin" -p x
expect "unreadable prompt file" 3 "$tmp/nope.txt" -- run -m "$M260" -f "$tmp/nope.txt"
expect "prompt file is a directory" 3 "$tmp" -- run -m "$M260" -f "$tmp"
if [ "$(id -u)" -ne 0 ]; then
    echo x >"$tmp/noperm.txt"; chmod 000 "$tmp/noperm.txt"
    expect "prompt file without permission" 3 "Permission denied" -- run -m "$M260" -f "$tmp/noperm.txt"
fi

# 6. A prompt longer than the context (stories260K: 512 positions).
python3 -c "print('Once upon a time there was a big dog. ' * 60)" >"$tmp/long.txt"
expect "prompt longer than the context" 4 "context is 512" -- run -m "$M260" -f "$tmp/long.txt"

# 7. Bad command lines.
expect "unknown option" 2 "--frobnicate" -- run -m "$M260" -p x --frobnicate
expect "non-numeric -n" 2 "-n: 'abc'" -- run -m "$M260" -p x -n abc
expect "negative -n" 2 "-n: -5" -- run -m "$M260" -p x -n -5
expect "negative temperature" 2 "--temperature: -1" -- run -m "$M260" -p x --temperature -1
expect "top-p zero" 2 "--top-p: 0" -- run -m "$M260" -p x --top-p 0
expect "top-p above one" 2 "--top-p: 1.5" -- run -m "$M260" -p x --top-p=1.5
expect "threads zero" 2 "--threads: 0" -- run -m "$M260" -p x --threads 0
expect "bad seed" 2 "--seed: '-3'" -- run -m "$M260" -p x --seed -3
expect "missing --model" 2 "--model is required" -- run -p x
expect "both prompt forms" 2 "exactly one of --prompt" -- run -m "$M260" -p x -f "$tmp/long.txt"
expect "no prompt" 2 "exactly one of --prompt" -- run -m "$M260"
expect "option without value" 2 "--prompt needs a value" -- run -m "$M260" --prompt
expect "stray argument" 2 "unexpected argument 'oops'" -- run -m "$M260" -p x oops
expect "unknown command" 2 "frob" -- frob
"$BILD" run --help >"$tmp/help" 2>&1 && grep -q -- "--temperature" "$tmp/help" && echo "ok   run --help" || fail "run --help"

echo "test_cli: $fails failed"
[ $fails -eq 0 ]
