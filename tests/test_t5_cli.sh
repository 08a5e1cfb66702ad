#!/bin/sh
# test_t5_cli.sh - `bild generate` on a T5 pair, end to end: the large model
# tests/data/t5/t5v11_f32 with the Unigram tokenizer tests/data/t5tok/
# tokenizer.json beside it, the small one its noisy copy tests/data/t5bild/
# small. Against tests/data/t5bild/cli.json (tools/ref/bild_t5_ref.py cli:
# source ids from the Hugging Face tokenizers library, the faithful BiLD loop
# and greedy decoding on the PyTorch T5 reference):
#   --source TEXT --faithful gives the reference's tokens and counters;
#   --mode large, --exact and greedy --mode spec give the large model's
#   greedy tokens;
#   --prompts (one source per line) and --requests ("source") the same;
#   the pair as two worker processes over ipc:// and tcp:// the same (and
#   --exact --overlap the large model's greedy text);
# and the T5 refusals, each with its exit code and a one-line message.
set -u
. tests/cli_lib.sh
G=$DATA/t5bild/cli.json
L=$tmp/large
S=$DATA/t5bild/small
mkdir -p "$L"
cp "$DATA/t5/t5v11_f32/config.json" "$DATA/t5/t5v11_f32/model.safetensors" "$DATA/t5tok/tokenizer.json" "$L/"

# check NAME JSON_FILE SOURCE_INDEX WHAT [RUN_INDEX]: the JSON result lines
# against the golden (WHAT: greedy, faithful)
check() {
    /usr/bin/python3 - "$G" "$2" "$3" "$4" "${5:-0}" <<'PY' || fail "$1"
import json, sys
g, out, si, what, ri = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
src = g["sources"][si]
lines = [json.loads(l) for l in open(out) if l.strip()]
assert lines, "no result"
for j in lines:
    assert j["source_tokens"] == len(src["source_ids"]), (j["source_tokens"], len(src["source_ids"]))
    if what == "greedy":
        assert j["tokens"] == src["large_greedy"], (j["tokens"], src["large_greedy"])
    else:
        r = src["faithful"][ri]
        s = j["stats"]
        got = [j["tokens"], s["large_passes"], s["small_passes"], s["fallbacks"], s["rollbacks"], s["rolled_back"],
               s["small_tokens"], s["large_tokens"], j["stop"]]
        want = [r["tokens"], r["n_large_passes"], r["n_small_passes"], r["fallbacks"], r["rollbacks"],
                r["rolled_back"], r["small_tokens"], r["large_tokens"], r["stop"]]
        assert got == want, (got[1:], want[1:])
PY
}

n=$(/usr/bin/python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['sources']))" "$G")
i=0
while [ $i -lt "$n" ]; do
    text=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['sources'][int(sys.argv[2])]['text'])" "$G" $i)
    "$BILD" generate -S "$S" -L "$L" --source "$text" -n 40 --mode large --json -q -j 1 >"$tmp/o" 2>"$tmp/e" ||
        fail "source $i --mode large: $(cat "$tmp/e")"
    check "source $i: --mode large is not the reference's greedy text" "$tmp/o" $i greedy
    "$BILD" generate -S "$S" -L "$L" --source "$text" -n 40 --exact --json -q >"$tmp/o" 2>"$tmp/e" ||
        fail "source $i --exact: $(cat "$tmp/e")"
    check "source $i: --exact is not the large model's greedy text" "$tmp/o" $i greedy
    "$BILD" generate -S "$S" -L "$L" --source "$text" -n 40 --mode spec --gamma 4 --json -q >"$tmp/o" 2>"$tmp/e" ||
        fail "source $i --mode spec: $(cat "$tmp/e")"
    check "source $i: greedy speculative decoding is not the large model's greedy text" "$tmp/o" $i greedy
    r=0
    for fr in "0.5 2.0" "0.9 1.0" "0.7 3.0"; do
        set -- $fr
        "$BILD" generate -S "$S" -L "$L" --source "$text" -n 40 --faithful --fallback "$1" --rollback "$2" \
            --max-small 10 --json -q >"$tmp/o" 2>"$tmp/e" || fail "source $i faithful $fr: $(cat "$tmp/e")"
        check "source $i: --faithful --fallback $1 --rollback $2 differs from the reference" "$tmp/o" $i faithful $r
        r=$((r + 1))
    done
    echo "ok   source $i: greedy, --exact, greedy spec and 3 faithful settings as the reference"
    i=$((i + 1))
done

# serving: every source as a line of --prompts, and as {"source"} in --requests
/usr/bin/python3 - "$G" "$tmp/prompts.txt" "$tmp/req.jsonl" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
open(sys.argv[2], "w").write("".join(s["text"].replace("\n", " ") + "\n" for s in g["sources"] if "\n" not in s["text"]))
open(sys.argv[3], "w").write("".join(json.dumps({"id": i, "source": s["text"]}) + "\n" for i, s in enumerate(g["sources"])))
PY
"$BILD" generate -S "$S" -L "$L" --requests "$tmp/req.jsonl" -n 40 --exact -q >"$tmp/o" 2>"$tmp/e" ||
    fail "--requests: $(cat "$tmp/e")"
/usr/bin/python3 - "$G" "$tmp/o" <<'PY' || fail "--requests results differ from the reference's greedy text"
import json, sys
g = json.load(open(sys.argv[1]))
got = {j["id"]: j["tokens"] for j in map(json.loads, open(sys.argv[2]))}
assert got == {i: s["large_greedy"] for i, s in enumerate(g["sources"])}, got
PY
"$BILD" generate -S "$S" -L "$L" --prompts "$tmp/prompts.txt" -n 40 --mode large -q >"$tmp/o" 2>"$tmp/e" ||
    fail "--prompts: $(cat "$tmp/e")"
[ "$(wc -l <"$tmp/o")" -eq "$(wc -l <"$tmp/prompts.txt")" ] || fail "--prompts: $(wc -l <"$tmp/o") result lines"
echo "ok   --requests with \"source\" and --prompts give the reference's greedy texts"

# the same pair as two worker processes (ipc:// and tcp://): the reference's tokens and counters
for ep in ipc tcp; do
    if [ $ep = ipc ]; then es=ipc://$tmp/s.sock el=ipc://$tmp/l.sock
    else ps=$((20000 + $$ % 6000 * 2)); es=tcp://127.0.0.1:$ps el=tcp://127.0.0.1:$((ps + 1)); fi
    "$BILD" small-worker -m "$S" -z "$L/tokenizer.json" -b "$es" -j 1 >/dev/null 2>"$tmp/sw.log" &
    sw=$!
    "$BILD" large-worker -m "$L" -b "$el" -j 1 >/dev/null 2>"$tmp/lw.log" &
    lw=$!
    pids="$pids $sw $lw"
    i=0
    while ! grep -q "listening on" "$tmp/sw.log" 2>/dev/null || ! grep -q "listening on" "$tmp/lw.log" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 200 ] && { fail "$ep: T5 workers did not start: $(cat "$tmp/sw.log" "$tmp/lw.log")"; break; }
        sleep 0.1
    done
    grep -q "encoder-decoder" "$tmp/lw.log" || fail "$ep: the large worker does not say it serves an encoder-decoder"
    W="--small-endpoint $es --large-endpoint $el -z $L/tokenizer.json"
    i=0
    while [ $i -lt "$n" ]; do
        text=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['sources'][int(sys.argv[2])]['text'])" "$G" $i)
        r=0
        for fr in "0.5 2.0" "0.9 1.0" "0.7 3.0"; do
            set -- $fr
            # shellcheck disable=SC2086
            "$BILD" generate $W --source "$text" -n 40 --faithful --fallback "$1" --rollback "$2" --max-small 10 \
                --json -q >"$tmp/o" 2>"$tmp/e" || fail "$ep source $i faithful $fr: $(cat "$tmp/e")"
            check "$ep source $i: workers, --faithful $fr differ from the reference" "$tmp/o" $i faithful $r
            r=$((r + 1))
        done
        # shellcheck disable=SC2086
        "$BILD" generate $W --source "$text" -n 40 --exact --overlap --json -q >"$tmp/o" 2>"$tmp/e" ||
            fail "$ep source $i --exact --overlap: $(cat "$tmp/e")"
        check "$ep source $i: workers, --exact --overlap is not the large model's greedy text" "$tmp/o" $i greedy
        i=$((i + 1))
    done
    # shellcheck disable=SC2086
    "$BILD" generate $W --requests "$tmp/req.jsonl" -n 40 --exact -q >"$tmp/o" 2>"$tmp/e" ||
        fail "$ep --requests: $(cat "$tmp/e")"
    /usr/bin/python3 - "$G" "$tmp/o" <<'PY' || fail "$ep: --requests through the workers differ from the reference"
import json, sys
g = json.load(open(sys.argv[1]))
got = {j["id"]: j["tokens"] for j in map(json.loads, open(sys.argv[2]))}
assert got == {i: s["large_greedy"] for i, s in enumerate(g["sources"])}, got
PY
    echo "ok   $ep workers: faithful tokens and counters, --exact --overlap and --requests as the reference"
    # shellcheck disable=SC2086
    expect "$ep: a prompt to T5 workers" 2 "does not take --prompt or --prompt-file" -- generate $W -p x
    # shellcheck disable=SC2086
    expect "$ep: sampling on T5 workers" 2 "does not take --temperature" -- generate $W --source x -t 0.7
    expect "$ep: T5 small worker, decoder-only large model" 3 "the small worker serves a T5 / mT5 encoder-decoder" -- \
        generate --small-endpoint "$es" -L "$LG" -z "$L/tokenizer.json" -p x
    kill $sw $lw
    wait $sw $lw 2>/dev/null
    grep -q "sources encoded" "$tmp/lw.log" || fail "$ep: the large worker's summary: $(tail -n 2 "$tmp/lw.log")"
done

# the streamed text is the decoded output, without the source
"$BILD" generate -S "$S" -L "$L" --source "Hello world" -n 12 --mode large -q >"$tmp/o" 2>"$tmp/e" || fail "stream"
"$BILD" generate -S "$S" -L "$L" --source "Hello world" -n 12 --mode large -q --json >"$tmp/j" 2>"$tmp/e" || fail "json"
/usr/bin/python3 - "$tmp/o" "$tmp/j" <<'PY' || fail "streamed text differs from the --json text"
import json, sys
s = open(sys.argv[1], encoding="utf-8").read()
assert s == json.load(open(sys.argv[2]))["text"] + "\n", (s, json.load(open(sys.argv[2]))["text"])
PY
echo "ok   streamed text equals the --json text"

# --dummy-weights at t5-small's shapes (random bf16 weights), two tokens
"$BILD" generate --dummy-weights -L bench/t5/t5-small --mode large --tokenizer "$L/tokenizer.json" \
    --source "Hello world" -n 2 --json -q >"$tmp/o" 2>"$tmp/e" || fail "--dummy-weights t5-small: $(cat "$tmp/e")"
/usr/bin/python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['stats']['generated'] == 2, j" "$tmp/o" ||
    fail "--dummy-weights t5-small: not 2 tokens"
echo "ok   --dummy-weights at t5-small's shapes"

# refusals
start_worker small-worker "$SM" "ipc://$tmp/llama.sock" "$tmp/llw.log"
expect "source to a decoder-only worker" 2 "the workers serve decoder-only models" -- \
    generate --small-endpoint "ipc://$tmp/llama.sock" --mode small -z "$TOK" --source x
kill $last
expect "source for a decoder-only pair" 2 "--source and --source-file are for T5" -- \
    generate -S "$SM" -L "$LG" --source x
expect "prompt for a T5 pair" 2 "give --source TEXT or --source-file FILE" -- generate -S "$S" -L "$L" -p x
expect "T5 with sampling" 2 "does not take --temperature" -- generate -S "$S" -L "$L" --source x -t 0.8
expect "half a T5 pair as a worker" 2 "runs in this process or as two workers" -- \
    generate --small-endpoint ipc:///nonexistent -L "$L" --source x
expect "T5 with --parallel" 2 "does not take --parallel" -- \
    generate -S "$S" -L "$L" --prompts "$tmp/prompts.txt" --parallel 2
expect "mixed families" 3 "the small model is a T5 / mT5 encoder-decoder and the large one is not" -- \
    generate -S "$S" -L "$LG" --source x
/usr/bin/python3 -c "print('a ' * 5000)" >"$tmp/long.txt"
expect "a source longer than the encoder takes" 4 "T5 / mT5 pairs take sources of up to 4096 tokens" -- \
    generate -S "$S" -L "$L" --source-file "$tmp/long.txt" -n 4 -q
mkdir -p "$tmp/notok"
cp "$DATA/t5/t5v11_f32/config.json" "$DATA/t5/t5v11_f32/model.safetensors" "$tmp/notok/"
expect "no tokenizer" 3 "no tokenizer.json next to the models" -- generate -S "$S" -L "$tmp/notok" --source x
cp "$DATA/t5/t5_f32/config.json" "$DATA/t5/t5_f32/model.safetensors" "$tmp/notok/"
sed -i 's/"vocab_size": 512/"vocab_size": 500/' "$tmp/notok/config.json"
expect "vocabulary sizes differ" 3 "model '$tmp/notok': model.safetensors" -- generate -S "$S" -L "$tmp/notok" --source x
[ $fails -eq 0 ] || { echo "test_t5_cli: $fails failed"; exit 1; }
echo "test_t5_cli: ok"
