#!/bin/sh
# test_align_train.sh - tools/align/train_small.py on a synthetic corpus in
# bild align-data's format (tools/align/synth_corpus.py: a Markov-chain
# "large model" over stories260K's 512-piece tokenizer, 300 rows of 64
# tokens, top-8 files). A dim-32 model trains for 30 steps: the loss must
# fall; a run stopped at step 13 and resumed must end with the same bytes as
# the uninterrupted one; the export must run in bild, give bild's greedy
# tokens, and match tools/ref/llama2c_ref.py's logits on model.bin within
# 1e-4; bad corpora, tokenizers and configs must be refused with one line
# naming the file or flag. Needs /usr/bin/python3 with torch (make deps installs
# python3-torch; the test fails without it).
set -u
. tests/cli_lib.sh
PY=/usr/bin/python3
$PY -c 'import torch, numpy' 2>/dev/null \
    || { echo "FAIL: /usr/bin/python3 cannot import torch and numpy (make deps installs python3-torch)"; exit 1; }
TOK5=$T512
[ -x "$BILD" ] || { echo "FAIL: $BILD not built"; exit 1; }
TS="$PY tools/align/train_small.py"
C=$tmp/corpus
$PY tools/align/synth_corpus.py "$C" --tokenizer "$TOK5" --rows 300 --row-len 64 --topk 8 --seed 3 \
    2>"$tmp/err" || { echo "FAIL: synth_corpus: $(cat "$tmp/err")"; exit 1; }
ARGS="--corpus $C --tokenizer $TOK5 --dim 32 --n-layers 2 --n-heads 4 --n-kv-heads 2 --steps 30 --batch 16
      --micro-batch 8 --log-every 5 --eval-every 10 --ckpt-every 10 --threads 1 --seed 7"

# refuse NAME CODE PATTERN -- ARGS: train_small.py ARGS must exit CODE with
# exactly one stderr line containing PATTERN
refuse() {
    name=$1 code=$2 pat=$3
    shift 4
    $TS "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -ne "$code" ]; then fail "$name: exit $rc, want $code: $(cat "$tmp/err")"
    elif [ "$(wc -l <"$tmp/err")" -ne 1 ]; then fail "$name: want one stderr line: $(cat "$tmp/err")"
    elif ! grep -qF -- "$pat" "$tmp/err"; then fail "$name: message lacks '$pat': $(cat "$tmp/err")"
    else echo "ok   $name: $(cat "$tmp/err")"
    fi
}

# 1. an uninterrupted run, exported with the HF directory
$TS $ARGS --out "$tmp/a" 2>"$tmp/a.log" || fail "training run: $(tail -n 5 "$tmp/a.log")"
for f in ckpt.pt log.jsonl model.bin tokenizer.bin manifest.json hf/config.json hf/model.safetensors hf/tokenizer.json; do
    [ -s "$tmp/a/$f" ] || fail "export: $f missing"
done
grep -q "verify: logits over" "$tmp/a.log" && echo "ok   hf/: $(grep "verify: logits over" "$tmp/a.log" | sed 's/.*verify: //')" \
    || fail "hf/: no verify line in the log"
$PY - "$tmp/a" "$C" "$TOK5" <<'EOF' || fail "loss, manifest"
import json, sys
out, corpus, tok = sys.argv[1:]
sys.path.insert(0, "tools/align")
import synth_corpus
log = [json.loads(l) for l in open(out + "/log.jsonl")]
tr = [r for r in log if r["kind"] == "train"]
ev = [r for r in log if r["kind"] == "eval"]
print(f"ok   loss: train {tr[0]['loss']:.3f} (step {tr[0]['step']}) -> {tr[-1]['loss']:.3f} (step {tr[-1]['step']}), "
      f"val {ev[0]['val_loss']:.3f} -> {ev[-1]['val_loss']:.3f}, agreement {ev[-1]['val_agree']:.3f}")
assert tr[-1]["loss"] < tr[0]["loss"] - 0.2 and ev[-1]["val_loss"] < ev[0]["val_loss"], "loss did not fall"
m, cm = json.load(open(out + "/manifest.json")), json.load(open(corpus + "/manifest.json"))
c = m["corpus"]
assert c["vocab_fingerprint"] == cm["vocab_fingerprint"] and c["model_fnv1a64"] == cm["model"]["fnv1a64"]
assert c["tokenizer_fnv1a64"] == cm["tokenizer"]["fnv1a64"] == synth_corpus.fnv1a64(out + "/tokenizer.bin")
assert m["steps"] == 30 and m["tokens_seen"] == 30 * 16 * 64 and m["stopped"] == "completed", m
assert m["architecture"]["vocab_size"] == 512 and m["architecture"]["seq_len"] == 64
assert m["final_val_loss"] is not None and m["val_agreement"] is not None and "train_small.py" in m["commands"][0]
print("ok   manifest: fingerprints, steps, tokens, losses")
EOF

# 2. stopped at step 13, resumed: the same final weights
$TS $ARGS --no-hf --out "$tmp/b" --stop-at-step 13 2>"$tmp/b.log" || fail "stopped run: $(tail -n 3 "$tmp/b.log")"
grep -q '"stopped": "stop_at_step"' "$tmp/b/manifest.json" || fail "stopped run: manifest does not say so"
$TS $ARGS --no-hf --out "$tmp/b" --resume 2>>"$tmp/b.log" || fail "resumed run: $(tail -n 3 "$tmp/b.log")"
cmp -s "$tmp/a/model.bin" "$tmp/b/model.bin" && echo "ok   resume: stopped at 13 and resumed = uninterrupted (model.bin byte-identical)" \
    || fail "resume: model.bin differs from the uninterrupted run's"
refuse "resume with another --lr" 2 "--resume needs the same arguments: --lr" -- $ARGS --out "$tmp/b" --resume --lr 0.01
refuse "existing checkpoint" 2 "exists: pass --resume" -- $ARGS --out "$tmp/b"

# 3. the export in bild and against the reference
"$BILD" run -m "$tmp/a/model.bin" -z "$tmp/a/tokenizer.bin" -p "Once upon a time" -n 20 >"$tmp/run.out" 2>"$tmp/run.err" \
    && [ -s "$tmp/run.out" ] && echo "ok   bild run: $(tail -n 1 "$tmp/run.err")" || fail "bild run: $(cat "$tmp/run.err")"
"$BILD" run -m "$tmp/a/model.bin" -z "$tmp/a/tokenizer.bin" -p "Once upon a time" -n 20 -t 0 --json -q \
    >"$tmp/run.json" 2>"$tmp/run.err" || fail "bild run --json: $(cat "$tmp/run.err")"
$PY - "$tmp/a" "$tmp/run.json" <<'EOF' || fail "logits or greedy tokens differ"
import json, sys
import numpy as np
import torch
sys.path.insert(0, "tools/align")
sys.path.insert(0, "tools/ref")
import llama2c_ref
import train_small
out, run = sys.argv[1:]
st = torch.load(out + "/ckpt.pt", weights_only=False)
model = train_small.Llama(st["arch"])
model.load_state_dict(st["model"])
toks = [1] + np.random.default_rng(5).integers(3, 512, size=15).tolist()
cfg, w = llama2c_ref.load_checkpoint(out + "/model.bin")
ref = llama2c_ref.forward(cfg, w, toks)
with torch.no_grad():
    mine = model(torch.tensor([toks]))[0]
d = float((mine - ref).abs().max())
print(f"ok   logits: torch model vs llama2c_ref.py on model.bin, 16 tokens: max |diff| {d:.3g}")
assert d < 1e-4, d
r = json.load(open(run))
seq = list(r["prompt_ids"])
with torch.no_grad():
    for _ in range(len(r["tokens"])):
        seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
mine = seq[len(r["prompt_ids"]):]
assert r["tokens"] and mine == r["tokens"], (mine, r["tokens"])
print(f"ok   greedy: bild's {len(r['tokens'])} tokens = the torch model's")
EOF

# 3b. --init: a run started from run 1's exported hf/ folder holds run 1's weights
# (one step at lr 1e-12 changes them by ~1e-12); another shape is refused by name
$TS $ARGS --no-hf --out "$tmp/i" --init "$tmp/a/hf" --steps 1 --lr 1e-12 --warmup 1 2>"$tmp/i.log" \
    || fail "--init run: $(tail -n 3 "$tmp/i.log")"
$PY - "$tmp/a/ckpt.pt" "$tmp/i/ckpt.pt" <<'EOF' || fail "--init: the weights are not run 1's"
import sys
import torch
a, b = (torch.load(p, weights_only=False)["model"] for p in sys.argv[1:])
d = max(float((a[k] - b[k]).abs().max()) for k in a)
print(f"ok   --init: weights from the hf/ folder, max |diff| to the source run {d:.3g} after one step at lr 1e-12")
assert d < 1e-6, d
EOF
refuse "--init of another shape" 3 "another vocabulary or --dim" -- $ARGS --no-hf --out "$tmp/j" --init "$tmp/a/hf" --dim 64

# 3c. --init-layers: a one-layer model from layer 1 of run 1's two holds that
# layer's weights; --head-vocab: the output layer over 200 ids trains (the
# loss falls), the manifest records it, and agreement counts a target
# outside the head as a miss
$TS $ARGS --no-hf --out "$tmp/il" --init "$tmp/a/hf" --init-layers 1 --n-layers 1 --steps 1 --lr 1e-12 \
    --warmup 1 2>"$tmp/il.log" || fail "--init-layers run: $(tail -n 3 "$tmp/il.log")"
(echo "# the first 200 ids"; seq 0 199) >"$tmp/hv.txt"
$TS $ARGS --no-hf --out "$tmp/hv" --head-vocab "$tmp/hv.txt" 2>"$tmp/hv.log" \
    || fail "--head-vocab run: $(tail -n 3 "$tmp/hv.log")"
$PY - "$tmp/a/ckpt.pt" "$tmp/il/ckpt.pt" "$tmp/hv" "$C" <<'EOF' || fail "--init-layers / --head-vocab"
import json, sys
import numpy as np
import torch
a, b = (torch.load(p, weights_only=False)["model"] for p in sys.argv[1:3])
d = max(float((a[k][1] - b[k][0]).abs().max()) for k in a if k.startswith(("w", "rms_att", "rms_ffn")))
d = max(d, float((a["tok_emb"] - b["tok_emb"]).abs().max()))
print(f"ok   --init-layers 1: layer 0 of the new model is layer 1 of the source, max |diff| {d:.3g}")
assert d < 1e-6, d
out, corpus = sys.argv[3:]
log = [json.loads(l) for l in open(out + "/log.jsonl")]
tr = [r for r in log if r["kind"] == "train"]
m = json.load(open(out + "/manifest.json"))
assert m["training"]["head_n"] == 200 and m["training"]["head_vocab"].endswith("hv.txt"), m["training"]
assert tr[-1]["loss"] < tr[0]["loss"] - 0.2, (tr[0]["loss"], tr[-1]["loss"])
# the teacher's top-1 ids of the held-out rows: those >= 200 cannot be agreed with
cm = json.load(open(corpus + "/manifest.json"))
K, L = cm["settings"]["topk"], cm["row_len"]
ti = np.fromfile(corpus + "/topk_ids.u32", np.uint32).reshape(cm["rows"], L, K)
val = ti[m["training"]["train_rows"]:m["training"]["train_rows"] + m["training"]["val_rows"], :L - 1, 0]
bound = float((val < 200).mean())
print(f"ok   --head-vocab 200 ids: loss {tr[0]['loss']:.3f} -> {tr[-1]['loss']:.3f}, agreement "
      f"{m['val_agreement']:.3f} <= {bound:.3f} (the share of teacher top-1 ids inside the head)")
assert 0 < m["val_agreement"] <= bound, (m["val_agreement"], bound)
EOF
printf '# x\n5\n7\n5\n' >"$tmp/hv2.txt"
refuse "--head-vocab repeat" 3 "hv2.txt:4: id 5 repeats" -- $ARGS --out "$tmp/x" --head-vocab "$tmp/hv2.txt"
printf '600\n' >"$tmp/hv3.txt"
refuse "--head-vocab id" 3 "hv3.txt:1: '600' is not a token id below 512" -- $ARGS --out "$tmp/x" --head-vocab "$tmp/hv3.txt"
refuse "--head-top" 2 "--head-top 300: $tmp/hv.txt lists 200 ids" -- $ARGS --out "$tmp/x" --head-vocab "$tmp/hv.txt" --head-top 300
refuse "--init-layers range" 2 "has layers 0-1" -- $ARGS --no-hf --out "$tmp/x" --init "$tmp/a/hf" --init-layers 0,2
refuse "--init-layers count" 3 "2 layers taken, the model has 1" -- $ARGS --no-hf --out "$tmp/x" --init "$tmp/a/hf" --init-layers 0,1 --n-layers 1

# 4. hard labels only (no top-K files), stopped by the time budget
$PY tools/align/synth_corpus.py "$tmp/c0" --tokenizer "$TOK5" --rows 60 --row-len 32 --topk 0 2>/dev/null
$TS --corpus "$tmp/c0" --tokenizer "$TOK5" --dim 16 --n-layers 1 --n-heads 2 --steps 50 --batch 4 --threads 1 \
    --time-budget 0.000001 --no-hf --out "$tmp/k0" 2>"$tmp/k0.log" || fail "hard-label run: $(tail -n 3 "$tmp/k0.log")"
$PY -c 'import json,sys; m=json.load(open(sys.argv[1])); assert m["stopped"]=="time_budget" and m["steps"]==1 \
    and m["val_agreement"] is None and m["training"]["distill"]==0, m' "$tmp/k0/manifest.json" \
    && echo "ok   hard labels only, time budget: stopped after step 1, exported" || fail "hard-label run manifest"
refuse "distill without top-K" 2 "the corpus has no top-K files" -- --corpus "$tmp/c0" --tokenizer "$TOK5" \
    --distill 0.5 --out "$tmp/x"

# 5. refusals
bad() { rm -rf "$tmp/bad"; cp -r "$C" "$tmp/bad"; }
bad; truncate -s -4 "$tmp/bad/tokens.u32"
refuse "truncated tokens" 3 "tokens.u32: 76796 bytes, the manifest implies 76800 (truncated)" -- $ARGS --corpus "$tmp/bad" --out "$tmp/x"
bad; truncate -s 1000 "$tmp/bad/topk_logp.f16"
refuse "truncated top-K" 3 "topk_logp.f16: 1000 bytes" -- $ARGS --corpus "$tmp/bad" --out "$tmp/x"
bad; rm "$tmp/bad/topk_ids.u32"
refuse "missing top-K ids" 3 "topk_ids.u32: missing" -- $ARGS --corpus "$tmp/bad" --out "$tmp/x"
bad; head -c 100 "$C/manifest.json" >"$tmp/bad/manifest.json"
refuse "corrupt manifest" 3 "manifest.json: corrupt JSON" -- $ARGS --corpus "$tmp/bad" --out "$tmp/x"
bad; sed 's/"version": 1/"version": 2/' "$C/manifest.json" >"$tmp/bad/manifest.json"
refuse "wrong version" 3 "version 2, this reader knows version 1" -- $ARGS --corpus "$tmp/bad" --out "$tmp/x"
bad; sed 's/"bild-align-corpus"/"something-else"/' "$C/manifest.json" >"$tmp/bad/manifest.json"
refuse "wrong format" 3 "format \"something-else\"" -- $ARGS --corpus "$tmp/bad" --out "$tmp/x"
bad; printf '\000\002\000\000' | dd of="$tmp/bad/tokens.u32" bs=1 seek=400 conv=notrunc 2>/dev/null
refuse "token id >= vocab" 3 "tokens.u32: id 512 at (1, 36) >= vocab_size 512" -- $ARGS --corpus "$tmp/bad" --out "$tmp/x"
refuse "wrong tokenizer" 3 "corpus from a different tokenizer" -- $ARGS --tokenizer "$TOK" --out "$tmp/x"
refuse "dim / heads" 2 "--dim 32 is not divisible by --n-heads 3" -- $ARGS --n-heads 3 --n-kv-heads 3 --out "$tmp/x"
refuse "odd head_dim" 2 "head_dim 9 (dim / n_heads) is odd" -- $ARGS --dim 36 --out "$tmp/x"
refuse "kv heads" 2 "--n-heads 4 is not a multiple of --n-kv-heads 3" -- $ARGS --n-kv-heads 3 --out "$tmp/x"
refuse "other vocabulary" 2 "--vocab-size 32000: the corpus vocabulary has 512 tokens" -- $ARGS --vocab-size 32000 --out "$tmp/x"
[ -e "$tmp/x" ] && fail "a refused run left $tmp/x behind"
echo "test_align_train: $fails failed"
[ $fails -eq 0 ]
