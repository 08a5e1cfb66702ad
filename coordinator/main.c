/* main.c - the `bild` command line: parses arguments and wires the engine
 * together. Subcommands:
 *   bild run   generate text with one model (llama2.c checkpoint)
 * The logic lives in the library (model/, kernels/); this file only checks
 * arguments, opens files, prints, and maps failures to exit codes.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cpu/cpu.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

#define BILD_VERSION "0.1.0"

/* Exit codes; documented in --help. */
enum {
    EXIT_OK = 0,
    EXIT_RUNTIME = 1, /* failure while running (out of memory, write error) */
    EXIT_USAGE = 2,   /* bad command line */
    EXIT_INPUT = 3,   /* a file could not be read or is not valid */
    EXIT_FIT = 4,     /* the request does not fit the model (prompt longer than the context) */
};

static const char *RUN_HELP =
    "usage: bild run --model PATH (--prompt TEXT | --prompt-file FILE) [options]\n"
    "\n"
    "Generates text with one model and streams it to stdout (the prompt is\n"
    "echoed first, as llama2.c does). Timings go to stderr.\n"
    "\n"
    "  -m, --model PATH        llama2.c checkpoint (.bin)\n"
    "  -z, --tokenizer PATH    tokenizer.bin (default: tokenizer.bin or tok<vocab>.bin\n"
    "                          next to the model)\n"
    "  -p, --prompt TEXT       prompt text; \"\" starts from BOS alone\n"
    "  -f, --prompt-file FILE  read the prompt from FILE (one trailing newline is dropped)\n"
    "  -n, --max-tokens N      tokens to generate at most (default 256; also stops at\n"
    "                          end of text or when the context is full)\n"
    "  -t, --temperature T     0 = greedy (default 1.0)\n"
    "      --top-p P           nucleus sampling mass in (0, 1] (default 0.9; 1 = off)\n"
    "      --top-k K           keep the K most likely tokens (default 0 = off)\n"
    "  -s, --seed S            RNG seed (default: from the clock, printed on stderr)\n"
    "  -j, --threads N         CPU threads (default: all online cores)\n"
    "      --json              print one JSON object instead of streaming text\n"
    "  -q, --quiet             no statistics on stderr\n"
    "  -h, --help              this help\n"
    "\n"
    "exit status: 0 ok, 1 runtime failure, 2 bad command line, 3 unreadable or\n"
    "invalid input file, 4 prompt longer than the model's context.\n";

static const char *MAIN_HELP =
    "usage: bild COMMAND [options]\n"
    "\n"
    "bild runs language models on the CPU, and (in later versions) the Big Little\n"
    "Decoder: a small model drafts, a large one checks.\n"
    "\n"
    "commands:\n"
    "  run        generate text with one model (bild run --help)\n"
    "\n"
    "  bild --version   print the version\n";

typedef struct {
    const char *model, *tokenizer, *prompt, *prompt_file;
    int max_new, top_k, threads, json, quiet, seed_given;
    float temperature, top_p;
    uint64_t seed;
} run_args_t;

/* Reports a command-line error on one line and returns EXIT_USAGE. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "bild run: %s (see bild run --help)\n", msg);
    return EXIT_USAGE;
}

static int parse_long(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno) return usage_error("%s: '%s' is not an integer", opt, s), -1;
    if (v < lo || v > hi) return usage_error("%s: %ld is out of range %ld..%ld", opt, v, lo, hi), -1;
    *out = v;
    return 0;
}

static int parse_float(const char *opt, const char *s, double lo, double hi, int lo_open, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v)) return usage_error("%s: '%s' is not a number", opt, s), -1;
    if (v < lo || v > hi || (lo_open && v == lo))
        return usage_error("%s: %g is out of range %s%g, %g]", opt, v, lo_open ? "(" : "[", lo, hi), -1;
    *out = (float)v;
    return 0;
}

/* Parses `bild run` arguments. Returns -1 on a usage error (already
 * reported), 1 if --help was printed, 0 otherwise. */
static int parse_run_args(int argc, char **argv, run_args_t *a) {
    *a = (run_args_t){.max_new = 256, .temperature = 1.0f, .top_p = 0.9f};
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *val = NULL;
        char name[64];
        /* --opt=value form */
        const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        if (eq && (size_t)(eq - arg) < sizeof name) {
            memcpy(name, arg, (size_t)(eq - arg));
            name[eq - arg] = 0;
            val = eq + 1;
            arg = name;
        }
#define IS(s, l) (!strcmp(arg, s) || !strcmp(arg, l))
        int flag = IS("-h", "--help") || IS("--json", "--json") || IS("-q", "--quiet");
        if (flag) {
            if (val) return usage_error("%s takes no value", arg), -1;
            if (IS("-h", "--help")) return fputs(RUN_HELP, stdout), 1;
            if (IS("--json", "--json")) a->json = 1;
            else a->quiet = 1;
            continue;
        }
        static const char *with_value[] = {"-m", "--model", "-z", "--tokenizer", "-p", "--prompt", "-f",
                                           "--prompt-file", "-n", "--max-tokens", "-t", "--temperature",
                                           "--top-p", "--top-k", "-s", "--seed", "-j", "--threads"};
        int known = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) known |= !strcmp(arg, with_value[k]);
        if (!known) {
            if (arg[0] == '-' && arg[1]) return usage_error("unknown option '%s'", arg), -1;
            return usage_error("unexpected argument '%s'", arg), -1;
        }
        if (!val) {
            if (i + 1 >= argc) {
                return usage_error("%s needs a value", arg), -1;
            }
            val = argv[++i];
        }
        long lv;
        if (IS("-m", "--model")) a->model = val;
        else if (IS("-z", "--tokenizer")) a->tokenizer = val;
        else if (IS("-p", "--prompt")) a->prompt = val;
        else if (IS("-f", "--prompt-file")) a->prompt_file = val;
        else if (IS("-n", "--max-tokens")) {
            if (parse_long(arg, val, 0, INT_MAX, &lv)) return -1;
            a->max_new = (int)lv;
        } else if (IS("-t", "--temperature")) {
            if (parse_float(arg, val, 0, 100, 0, &a->temperature)) return -1;
        } else if (IS("--top-p", "--top-p")) {
            if (parse_float(arg, val, 0, 1, 1, &a->top_p)) return -1;
        } else if (IS("--top-k", "--top-k")) {
            if (parse_long(arg, val, 0, INT_MAX, &lv)) return -1;
            a->top_k = (int)lv;
        } else if (IS("-s", "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(val, &end, 10);
            if (!*val || *end || errno || val[0] == '-')
                return usage_error("%s: '%s' is not a non-negative integer", arg, val), -1;
            a->seed = s, a->seed_given = 1;
        } else if (IS("-j", "--threads")) {
            if (parse_long(arg, val, 1, 1024, &lv)) return -1;
            a->threads = (int)lv;
        }
#undef IS
    }
    if (!a->model) return usage_error("--model is required"), -1;
    if (!a->prompt == !a->prompt_file)
        return usage_error("give exactly one of --prompt and --prompt-file"), -1;
    return 0;
}

/* Reads a whole file as a NUL-terminated string (caller frees). */
static char *read_text_file(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "prompt file '%s': cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += r;
        if (n + 1 == cap) {
            char *nb = cap > ((size_t)1 << 30) ? NULL : realloc(buf, cap * 2);
            if (!nb) free(buf);
            buf = nb, cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        snprintf(err, errlen, "prompt file '%s': %s", path, bad ? "read error (is it a directory?)" : "too large");
        return NULL;
    }
    buf[n] = 0;
    if (n && buf[n - 1] == '\n') buf[--n] = 0;
    if (n && buf[n - 1] == '\r') buf[--n] = 0;
    if (strlen(buf) != n) {
        free(buf);
        snprintf(err, errlen, "prompt file '%s': contains a NUL byte; expected text", path);
        return NULL;
    }
    return buf;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The tokenizer next to the model: tokenizer.bin, then tok<vocab>.bin. */
static int default_tokenizer(const char *model, int vocab, char *out, size_t n, char *tried, size_t tn) {
    const char *slash = strrchr(model, '/');
    int dirlen = slash ? (int)(slash - model + 1) : 0;
    snprintf(out, n, "%.*stokenizer.bin", dirlen, model);
    snprintf(tried, tn, "%s", out);
    if (file_exists(out)) return 0;
    snprintf(out, n, "%.*stok%d.bin", dirlen, model, vocab);
    snprintf(tried + strlen(tried), tn - strlen(tried), ", %s", out);
    return file_exists(out) ? 0 : -1;
}

typedef struct {
    utf8_stream_t u8;
    int stream;      /* write to stdout as tokens come */
    char *text;      /* accumulated sanitised completion (for --json) */
    size_t len, cap;
    int write_error;
} sink_t;

static void sink_put(sink_t *s, const char *b, size_t n) {
    if (!n) return;
    if (s->stream) {
        if (fwrite(b, 1, n, stdout) != n || fflush(stdout) != 0) s->write_error = 1;
        return;
    }
    if (s->len + n + 1 > s->cap) {
        size_t nc = (s->len + n + 1) * 2;
        char *t = realloc(s->text, nc);
        if (!t) {
            s->write_error = 1;
            return;
        }
        s->text = t, s->cap = nc;
    }
    memcpy(s->text + s->len, b, n);
    s->len += n;
    s->text[s->len] = 0;
}

static void sink_bytes(sink_t *s, const char *b, size_t n) {
    char buf[3 * 64 + 8];
    while (n) { /* sanitise in slices so buf's 3n + 8 bound holds */
        size_t k = n < 64 ? n : 64;
        sink_put(s, buf, utf8_stream_feed(&s->u8, b, k, buf));
        b += k, n -= k;
    }
}

static void emit_token(void *ud, int token, const char *bytes, size_t n) { sink_bytes(ud, bytes, n); }

static int cmd_run(int argc, char **argv) {
    run_args_t a;
    int pr = parse_run_args(argc, argv, &a);
    if (pr) return pr > 0 ? EXIT_OK : EXIT_USAGE;

    char err[1024], tokpath[4096], tried[8192 + 8];
    int rc = EXIT_INPUT;
    model_file_t *m = NULL;
    tokenizer_t *tok = NULL;
    backend_t *be = NULL;
    transformer_t *tf = NULL;
    sampler_t *smp = NULL;
    char *prompt_buf = NULL;
    int *ids = NULL, *out = NULL;
    sink_t sink = {.stream = !a.json};

    if (!(m = model_open(a.model, err, sizeof err))) {
        fprintf(stderr, "bild run: %s\n", err);
        goto done;
    }
    const model_config_t *c = model_config(m);
    if (a.tokenizer) snprintf(tokpath, sizeof tokpath, "%s", a.tokenizer);
    else if (default_tokenizer(a.model, c->vocab_size, tokpath, sizeof tokpath, tried, sizeof tried)) {
        fprintf(stderr, "bild run: no --tokenizer given and none found next to the model (tried %s); "
                        "pass --tokenizer PATH\n", tried);
        goto done;
    }
    if (!(tok = tokenizer_load_llama2c(tokpath, c->vocab_size, err, sizeof err))) {
        fprintf(stderr, "bild run: %s\n", err);
        goto done;
    }
    const char *text = a.prompt;
    if (a.prompt_file) {
        if (!(prompt_buf = read_text_file(a.prompt_file, err, sizeof err))) {
            fprintf(stderr, "bild run: %s\n", err);
            goto done;
        }
        text = prompt_buf;
    }
    rc = EXIT_RUNTIME;
    int n_ids = tokenizer_encode(tok, text, 1, NULL, 0);
    if (n_ids < 0 || !(ids = malloc(sizeof(int) * (size_t)n_ids))) {
        fprintf(stderr, "bild run: out of memory encoding the prompt\n");
        goto done;
    }
    tokenizer_encode(tok, text, 1, ids, n_ids);
    if (n_ids > c->seq_len) {
        fprintf(stderr, "bild run: the prompt is %d tokens but the model's context is %d tokens (seq_len); "
                        "shorten the prompt\n", n_ids, c->seq_len);
        rc = EXIT_FIT;
        goto done;
    }
    if (!a.seed_given) a.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (!(be = backend_cpu_new(a.threads))) {
        fprintf(stderr, "bild run: cannot start the CPU backend with %d threads\n", a.threads);
        goto done;
    }
    if (!(tf = transformer_new(be, c, model_weights(m), 64, err, sizeof err))) {
        fprintf(stderr, "bild run: %s\n", err);
        goto done;
    }
    if (!(smp = sampler_new(c->vocab_size, a.temperature, a.top_p, a.top_k, a.seed)) ||
        !(out = malloc(sizeof(int) * (size_t)(a.max_new ? a.max_new : 1)))) {
        fprintf(stderr, "bild run: out of memory\n");
        goto done;
    }
    if (!a.quiet)
        fprintf(stderr, "bild: %s: %.1fM params, dim %d, %d layers, %d/%d heads, vocab %d, context %d; "
                        "cpu/%s, %d threads; seed %llu\n",
                a.model, model_n_params(c) / 1e6, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
                c->seq_len, be->isa, be->n_threads, (unsigned long long)a.seed);
    /* echo the prompt (every token after BOS), as llama2.c does */
    if (!a.json)
        for (int i = 1; i < n_ids; i++) {
            size_t n;
            const char *p = tokenizer_decode(tok, ids[i - 1], ids[i], &n);
            sink_bytes(&sink, p, n);
        }
    gen_stats_t st;
    if (generate(tf, tok, smp, ids, n_ids, a.max_new, out, emit_token, &sink, &st) != 0) {
        fprintf(stderr, "bild run: generation failed (internal error)\n");
        goto done;
    }
    char tail[8];
    sink_put(&sink, tail, utf8_stream_flush(&sink.u8, tail));
    if (!a.json) sink_put(&sink, "\n", 1);
    else {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", a.model);
        cJSON_AddStringToObject(j, "text", sink.text ? sink.text : "");
        cJSON *toks = cJSON_AddArrayToObject(j, "tokens");
        for (int i = 0; i < st.n_gen; i++) cJSON_AddItemToArray(toks, cJSON_CreateNumber(out[i]));
        cJSON_AddNumberToObject(j, "prompt_tokens", st.n_prompt);
        cJSON_AddNumberToObject(j, "generated_tokens", st.n_gen);
        cJSON_AddStringToObject(j, "stop", stop_reason_name(st.stop));
        cJSON_AddNumberToObject(j, "seed", (double)a.seed);
        cJSON_AddNumberToObject(j, "prompt_s", st.prompt_s);
        cJSON_AddNumberToObject(j, "decode_s", st.decode_s);
        cJSON_AddNumberToObject(j, "prompt_tok_per_s", st.prompt_s > 0 ? st.n_prompt / st.prompt_s : 0);
        cJSON_AddNumberToObject(j, "decode_tok_per_s", st.decode_s > 0 ? st.n_steps / st.decode_s : 0);
        char *s = cJSON_PrintUnformatted(j);
        if (!s || printf("%s\n", s) < 0 || fflush(stdout)) sink.write_error = 1;
        free(s);
        cJSON_Delete(j);
    }
    if (sink.write_error) {
        fprintf(stderr, "bild run: cannot write the output: %s\n", strerror(errno));
        goto done;
    }
    if (!a.quiet)
        fprintf(stderr, "bild: prompt %d tokens in %.1f ms (%.0f tok/s); generated %d tokens, %d decode steps "
                        "in %.1f ms (%.1f tok/s); stop: %s\n",
                st.n_prompt, st.prompt_s * 1e3, st.prompt_s > 0 ? st.n_prompt / st.prompt_s : 0, st.n_gen,
                st.n_steps, st.decode_s * 1e3, st.decode_s > 0 ? st.n_steps / st.decode_s : 0,
                stop_reason_name(st.stop));
    rc = EXIT_OK;
done:
    free(sink.text);
    free(out);
    free(ids);
    free(prompt_buf);
    sampler_destroy(&smp);
    transformer_destroy(&tf);
    backend_destroy(&be);
    tokenizer_destroy(&tok);
    model_close(&m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(MAIN_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) return puts("bild " BILD_VERSION) < 0 ? EXIT_RUNTIME : EXIT_OK;
    if (!strcmp(argv[1], "run")) return cmd_run(argc - 2, argv + 2);
    fprintf(stderr, "bild: unknown command '%s' (see bild --help)\n", argv[1]);
    return EXIT_USAGE;
}
