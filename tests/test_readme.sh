#!/bin/sh
# test_readme.sh - every command in README.md's code blocks, run as written,
# in order, in one shell (as a user pasting them would), from the repository
# root; then each command's output is checked, not just its exit status.
#
# The commands are read from README.md itself: a command this test has no
# check for fails ("not covered"), and so does a check whose command is no
# longer in the README. Not run here: `make demo` and `make test` (the
# set-up commands; .ci/run's fresh-machine stage runs both on a clean clone),
# and with another build (BUILD=build/san, the sanitizer build) build/bild in
# a command means $BUILD/bild;
# and the GPU lines, which need a GPU (tests/gpu/run.sh runs them there);
# on a machine without one this test checks that each refuses with a clear
# message instead.
set -u
. tests/cli_lib.sh
[ -x "$BILD" ] || { echo "FAIL: $BILD not built"; exit 1; }
export BILD
/usr/bin/python3 - "$tmp" "$BILD" <<'PY'
import json, os, re, subprocess, sys

work, BILD = sys.argv[1], sys.argv[2]
LIMIT = int(os.environ.get("TEST_TIMEOUT", "300")) - 40
fails = 0


def fail(msg):
    global fails
    fails += 1
    print("FAIL: " + msg)


# ---- the commands, as README.md writes them ---------------------------------
cmds = []
lines = open("README.md").read().split("\n")
i = 0
prev_blank = True
in_block = False
while i < len(lines):
    line = lines[i]
    if line.startswith("    ") and (in_block or prev_blank):
        in_block = True
        text = line[4:]
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1].rstrip() + " " + lines[i].strip()
        if text.strip() and not text.lstrip().startswith("#"):
            cmds.append(text.rstrip())
    elif line.strip():
        in_block = False
    prev_blank = not line.strip()
    i += 1

SETUP = {"make demo", "make test"}
GPU = ("build/cuda/bild", "launch/multi-gpu.sh", "sh tests/gpu/run.sh")


def bare(c):
    """the command without its trailing comment"""
    return re.sub(r"\s+#.*$", "", c) if not c.startswith("echo ") else c


def this_build(c):
    """the command as run here: build/bild is the build under test"""
    return c.replace("build/bild ", BILD + " ") if BILD != "build/bild" else c


gpu_here = subprocess.run("command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1",
                          shell=True).returncode == 0

# ---- one script that runs them in order -------------------------------------
script = ["cd " + os.getcwd()]
run = []  # (index, command) of the commands whose output is checked
for k, c in enumerate(cmds):
    b = bare(c)
    if b in SETUP:
        continue
    if b.startswith(GPU) and not gpu_here:
        continue
    if re.match(r"[A-Z]+=", b):
        script.append(c)  # variable assignments: S=... L=..., T=$(mktemp -d)
        continue
    o, e, r = ("%s/%d.%s" % (work, k, x) for x in ("out", "err", "rc"))
    bg = re.fullmatch(r"(.*\S)\s*&\s*([A-Z]+=\$!)?", b)
    if bg:  # a worker in the background: its pid goes to the README's variable
        script.append("%s >%s 2>%s & %s" % (this_build(bg.group(1)), o, e, bg.group(2) or ""))
    else:
        script.append("{ %s\n} >%s 2>%s </dev/null; echo $? >%s" % (this_build(c), o, e, r))
    run.append((k, c))
script.append('echo "$T" >%s/T' % work)
sh = subprocess.run(["sh", "-c", "\n".join(script)], timeout=LIMIT)
T = open(work + "/T").read().strip()


def res(k):
    def rd(x):
        try:
            return open("%s/%d.%s" % (work, k, x), errors="replace").read()
        except OSError:
            return None
    rc = rd("rc")
    return rd("out") or "", rd("err") or "", int(rc) if rc and rc.strip() else None


def jtext(out):
    return json.loads(out)["text"]


def greedy_large(prompt, n=None):
    a = [BILD, "run", "-m", "models/stories15M/stories15M.bin", "-p", prompt, "-t", "0", "-q"]
    if n:
        a += ["-n", str(n)]
    return subprocess.run(a, capture_output=True, text=True).stdout


# ---- what each command must do ----------------------------------------------
def starts(prefix):
    def f(out, err):
        assert out.startswith(prefix) and len(out) > len(prefix) + 20, "stdout %r" % out[:80]
    return f


def story_with_stats(prefix):
    def f(out, err):
        starts(prefix)(out, err)
        assert "tok/s" in err or "tokens/s" in err, "no statistics on stderr: %r" % err[-200:]
    return f


def run_json(out, err):
    j = json.loads(out)  # the text after the prompt: the same greedy text as without --json
    want = greedy_large("Lily had a cat").rstrip("\n")
    assert len(j["text"]) > 20 and "Lily had a cat" + j["text"] == want, "%r vs %r" % (j["text"][:60], want[:60])


def convert(out, err):
    d = os.path.join(T, "stories15M-bf16")
    cfg = json.load(open(os.path.join(d, "config.json")))
    assert cfg.get("torch_dtype") == "bfloat16", cfg
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".safetensors"))
    assert 0.45 < size / os.path.getsize("models/stories15M/stories15M.bin") < 0.55, "%d bytes of bf16 weights" % size


def bf16_run(out, err):
    # bf16 weights: the same opening as the f32 model's greedy story
    f32 = greedy_large("Once upon a time")
    assert out.startswith("Once upon a time") and out.split()[:8] == f32.split()[:8], \
        "bf16 %r vs f32 %r" % (out[:60], f32[:60])


def gen_bild(out, err):
    assert out.startswith("Once upon a time") and len(out) > 40, out[:80]
    assert "fallback" in err and "rollback" in err, "no BiLD statistics on stderr: %r" % err[-300:]


def gen_exact(out, err):
    want = subprocess.run([BILD, "generate", "-S", "tools/align/stories15M-aligned", "-L",
                           "models/stories15M/stories15M.bin", "-p", "Once upon a time", "--mode", "large", "-q"],
                          capture_output=True, text=True).stdout
    assert out == want and len(out) > 100, "--exact %r differs from the large model's %r" % (out[:80], want[:80])


def gen_spec(out, err):
    j = json.loads(out)
    assert len(j["text"]) > 20 and len(j["tokens"]) > 10, j["text"][:60]
    assert j.get("mode") == "spec", j.get("mode")


def gen_help(out, err):
    assert out.startswith("usage: bild generate") and "--exact" in out and "--fallback" in out, out[:200]


def align_data(out, err):
    m = json.load(open(os.path.join(T, "corpus", "manifest.json")))
    assert m["rows"] == 32 and m["row_len"] == 256 and m["tokens"] == 8192, m
    assert os.path.getsize(os.path.join(T, "corpus", m["files"]["tokens"])) == 4 * 8192


def align_eval(out, err):
    t = out + err
    assert re.search(r"agree", t), t[-300:]
    p = re.search(r"(\d+(\.\d+)?)%", t)
    assert p and float(p.group(1)) > 50, "agreement: %r" % t[-300:]


def local_sh(out, err):
    want = subprocess.run([BILD, "generate", "-S", "tools/align/stories15M-aligned", "-L",
                           "models/stories15M/stories15M.bin", "-p", "Once upon a time", "-n", "200", "-q"],
                          capture_output=True, text=True).stdout
    assert out == want, "three processes %r vs in process %r" % (out[:80], want[:80])


def by_hand(out, err):
    local_sh_want = subprocess.run([BILD, "generate", "-S", "tools/align/stories15M-aligned", "-L",
                                    "models/stories15M/stories15M.bin", "-p", "Once upon a time", "-q"],
                                   capture_output=True, text=True).stdout
    assert out == local_sh_want, "workers by hand %r vs in process %r" % (out[:80], local_sh_want[:80])


def kill_workers(out, err):
    assert not err.strip(), err


def prompts20(out, err):
    rows = [json.loads(x) for x in out.splitlines()]
    assert len(rows) == 20, "%d result lines, want 20" % len(rows)
    assert all(0 < r["stats"]["generated"] <= 64 and r["text"] for r in rows), out[:200]


def requests(out, err):
    rows = [json.loads(x) for x in out.splitlines()]
    assert len(rows) == 1 and rows[0]["id"] == 7 and len(rows[0]["text"]) > 20, out[:200]
    assert 0 < len(rows[0]["tokens"]) <= 50, len(rows[0]["tokens"])


def t5_exact(out, err):
    want = subprocess.run([BILD, "generate", "-S", "tests/data/t5bild/small", "-L", "tests/data/t5/t5v11_f32", "-z",
                           "tests/data/t5tok/tokenizer.json", "--source", "Das ist ein kleiner Test.", "--mode", "large",
                           "-q"], capture_output=True, text=True).stdout
    assert out == want and "fallbacks" in err, "--exact %r differs from the large model's %r" % (out[:80], want[:80])


def t5_dummy(out, err):
    assert "random weights" in err and "4 tokens (0 small, 4 large)" in err, err[-300:]


def t5_files(out, err):
    assert open(os.path.join(T, "de.txt")).read().count("\n") == 2 == open(os.path.join(T, "en.txt")).read().count("\n")


def t5_tasks(out, err):
    rows = [l.split("\t") for l in open(os.path.join(T, "t5tasks", "table.tsv")).read().splitlines()[1:]]
    t = {r[1]: r for r in rows}
    assert {"large", "small", "exact"} <= set(t) and t["exact"][2] == t["large"][2], rows
    assert "BLEU means something only with trained weights" in out, out[-300:]


def t5_bleu(out, err):
    assert out.startswith("BLEU = "), out[:100]


CHECKS = [
    (r"build/bild run -m models/stories15M/stories15M.bin -p \"Once upon a time\" -n 200", story_with_stats("Once upon a time")),
    (r"build/bild run -m models/stories15M/stories15M.bin -p \"Lily had a cat\" -t 0 --json", run_json),
    (r"/usr/bin/python3 tools/llama2c_to_hf.py .* \$T/stories15M-bf16 --dtype bf16", convert),
    (r"build/bild run -m \$T/stories15M-bf16 -p \"Once upon a time\" -t 0", bf16_run),
    (r"build/bild generate -S \$S -L \$L -p \"Once upon a time\" --fallback 0.6 --rollback 3", gen_bild),
    (r"build/bild generate -S \$S -L \$L -p \"Once upon a time\" --exact", gen_exact),
    (r"build/bild generate -S \$S -L \$L -p \"Once upon a time\" --mode spec --gamma 4 -t 1 --json", gen_spec),
    (r"build/bild generate --help", gen_help),
    (r"build/bild align-data --large \$L --tokens 8192 --out \$T/corpus --batch 32", align_data),
    (r"build/bild align-eval --small \$S --large \$L --text tests/data/tinystories/validation_100.txt", align_eval),
    (r"launch/local.sh --small \$S --large \$L -- -p \"Once upon a time\" -n 200", local_sh),
    (r"build/bild large-worker -m \$L -b ipc://\$T/large.sock & LARGE=\$!", None),
    (r"build/bild small-worker -m \$S -z models/stories15M/tokenizer.bin -b ipc://\$T/small.sock & SMALL=\$!", None),
    (r"build/bild generate --small-endpoint ipc://\$T/small.sock --large-endpoint ipc://\$T/large.sock "
     r"-z models/stories15M/tokenizer.bin -p \"Once upon a time\" --overlap", by_hand),
    (r"kill \$LARGE \$SMALL", kill_workers),
    (r"build/bild generate -S \$S -L \$L --prompts tests/data/prompts20.txt -n 64", prompts20),
    (r"echo '\{\"id\": 7, .*\}' \| build/bild generate -S \$S -L \$L --requests -", requests),
    (r"build/bild generate -S \$TS -L \$TL -z \$TK --source \"Das ist ein kleiner Test.\" --exact", t5_exact),
    (r"build/bild generate --dummy-weights -L bench/t5/t5-large -z \$TK --source \"Das ist ein Test.\" -n 4 "
     r"--mode large", t5_dummy),
    (r"printf '.*' >\$T/de.txt; printf '.*' >\$T/en.txt", t5_files),
    (r"sh bench/t5_tasks.sh --small \$TS --large \$TL --tokenizer \$TK --src \$T/de.txt --ref \$T/en.txt "
     r"--out \$T/t5tasks", t5_tasks),
    (r"build/bild bleu --hyp \$T/t5tasks/custom.large.hyp \$T/en.txt", t5_bleu),
    (r"build/cuda/bild generate -S \$S -L \$L --device cuda:0 -p \"Once upon a time\"", "gpu"),
    (r"launch/multi-gpu.sh --small \$S --large \$L -- -p \"Once upon a time\"", "gpu"),
    (r"sh tests/gpu/run.sh", "gpu"),
    (r"make demo", "setup"),
    (r"make test", "setup"),
]

used = set()
for k, c in enumerate(cmds):
    b = bare(c)
    if re.match(r"[A-Z]+=", b):
        continue
    m = [j for j, (pat, _) in enumerate(CHECKS) if re.fullmatch(pat, b)]
    if not m:
        fail("README command not covered by tests/test_readme.sh: " + c)
        continue
    used.add(m[0])
    check = CHECKS[m[0]][1]
    if check == "setup":
        print("ok   %s: run by .ci/run's fresh-machine stage" % b)
        continue
    if check == "gpu" and not gpu_here:
        # no GPU here: the CPU build must refuse the device, one clear line
        if b.startswith("build/cuda/bild"):
            r = subprocess.run(["sh", "-c", "S=tools/align/stories15M-aligned L=models/stories15M/stories15M.bin; "
                                + b.replace("build/cuda/bild", BILD, 1)], capture_output=True, text=True)
            ok = r.returncode != 0 and re.search(r"cuda|CUDA", r.stderr) and not r.stdout
        elif b.startswith("launch/multi-gpu.sh"):
            r = subprocess.run(["sh", "-c", "S=tools/align/stories15M-aligned L=models/stories15M/stories15M.bin; "
                                + b], capture_output=True, text=True, timeout=60)
            ok = r.returncode != 0 and re.search(r"GPU|cuda|CUDA", r.stderr)
        else:
            r = subprocess.run(["sh", "-c", b], capture_output=True, text=True, timeout=120)
            ok = r.returncode != 0 and re.search(r"GPU|nvidia|CUDA", r.stdout + r.stderr)
        if ok:
            print("ok   %s: no GPU here, refused clearly: %s" % (b, (r.stderr or r.stdout).strip().splitlines()[-1]))
        else:
            fail("%s without a GPU: exit %d, %r" % (b, r.returncode, (r.stdout + r.stderr)[-300:]))
        continue
    if check is None:
        continue
    out, err, rc = res(k)
    if rc is None:
        fail("%s: did not run (see the script's stderr)" % b)
        continue
    if rc != 0:
        fail("%s: exit %d: %s" % (b, rc, err.strip()[-300:]))
        continue
    try:
        check(out, err)
        print("ok   %s" % b)
    except (AssertionError, ValueError, KeyError, OSError) as e:
        fail("%s: %s" % (b, e))

for j, (pat, chk) in enumerate(CHECKS):
    if j not in used:
        fail("tests/test_readme.sh checks a command the README no longer has: " + pat)
subprocess.run(["rm", "-rf", T])
if sh.returncode != 0:
    fail("the README's commands, run as one script, exited %d" % sh.returncode)
print("%d README commands, %d failures" % (len(cmds), fails))
sys.exit(1 if fails else 0)
PY
