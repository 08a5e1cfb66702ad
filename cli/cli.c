/* cli.c - see cli.h. */
#include "cli/cli.h"

#include "kernels/cpu/cpu.h"
#include "kernels/hostmem.h"
#include "proto/proto.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "bild %s: %s (see bild %s --help)\n", cmd, msg, cmd);
    return 2;
}

static int set_value(const char *cmd, const opt_t *o, const char *name, const char *v) {
    char *end;
    errno = 0;
    switch (o->kind) {
    case OPT_STR:
        *(const char **)o->dst = v;
        return 0;
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno) return cli_usage_error(cmd, "%s: '%s' is not an integer", name, v), -1;
        if (x < o->lo || x > o->hi)
            return cli_usage_error(cmd, "%s: %ld is out of range %.0f..%.0f", name, x, o->lo, o->hi), -1;
        *(int *)o->dst = (int)x;
        return 0;
    }
    case OPT_FLOAT: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x)) return cli_usage_error(cmd, "%s: '%s' is not a number", name, v), -1;
        if (x < o->lo || x > o->hi || (o->lo_open && x == o->lo))
            return cli_usage_error(cmd, "%s: %g is out of range %s%g, %g]", name, x, o->lo_open ? "(" : "[", o->lo,
                                   o->hi), -1;
        *(float *)o->dst = (float)x;
        return 0;
    }
    case OPT_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || errno || v[0] == '-')
            return cli_usage_error(cmd, "%s: '%s' is not a non-negative integer", name, v), -1;
        *(uint64_t *)o->dst = x;
        return 0;
    }
    default:
        return -1;
    }
}

int cli_parse(const char *cmd, int argc, char **argv, const opt_t *opts, int n_opts, const char *help) {
    for (int i = 0; i < argc; i++) {
        char name[64];
        const char *arg = argv[i], *val = NULL, *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        if (eq && (size_t)(eq - arg) < sizeof name) { /* --opt=value */
            memcpy(name, arg, (size_t)(eq - arg));
            name[eq - arg] = 0;
            val = eq + 1, arg = name;
        }
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) return fputs(help, stdout), 1;
        const opt_t *o = NULL;
        for (int k = 0; k < n_opts && !o; k++)
            if ((opts[k].s && !strcmp(arg, opts[k].s)) || (opts[k].l && !strcmp(arg, opts[k].l))) o = &opts[k];
        if (!o) {
            if (arg[0] == '-' && arg[1]) return cli_usage_error(cmd, "unknown option '%s'", arg), -1;
            return cli_usage_error(cmd, "unexpected argument '%s'", arg), -1;
        }
        if (o->seen) *o->seen = 1;
        if (o->kind == OPT_FLAG) {
            if (val) return cli_usage_error(cmd, "%s takes no value", arg), -1;
            *(int *)o->dst = 1;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc) return cli_usage_error(cmd, "%s needs a value", arg), -1;
            val = argv[++i];
        }
        if (set_value(cmd, o, arg, val)) return -1;
    }
    return 0;
}

char *cli_read_text_file(const char *path, const char *what, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s '%s': cannot open: %s", what, path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += r;
        if (n + 1 == cap) {
            char *nb = cap > ((size_t)1 << 31) ? NULL : realloc(buf, cap * 2);
            if (!nb) free(buf);
            buf = nb, cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        snprintf(err, errlen, "%s '%s': %s", what, path, bad ? "read error (is it a directory?)" : "too large");
        return NULL;
    }
    buf[n] = 0;
    if (strlen(buf) != n) {
        free(buf);
        snprintf(err, errlen, "%s '%s': contains a NUL byte; expected text", what, path);
        return NULL;
    }
    if (len) *len = n;
    return buf;
}

int cli_draft_vocab(transformer_t *tf, const char *model_path, const char *spec, int top, char *used, size_t usedlen,
                    char *err, size_t errlen) {
    char path[4096];
    struct stat st;
    if (used && usedlen) used[0] = 0;
    if (spec && !strcmp(spec, "none")) return 0;
    if (spec)
        snprintf(path, sizeof path, "%s", spec);
    else { /* the model's folder, or the folder of its file */
        if (!model_path) return 0;
        if (stat(model_path, &st) == 0 && S_ISDIR(st.st_mode))
            snprintf(path, sizeof path, "%s/draft_vocab.txt", model_path);
        else {
            const char *slash = strrchr(model_path, '/');
            int dl = slash ? (int)(slash - model_path) : 1;
            snprintf(path, sizeof path, "%.*s/draft_vocab.txt", dl, slash ? model_path : ".");
        }
        if (stat(path, &st) != 0) return 0;
    }
    size_t n;
    char *text = cli_read_text_file(path, "draft vocabulary", &n, err, errlen);
    if (!text) return -1;
    int V = transformer_config(tf)->vocab_size, k = 0, cap = 0, line = 1, *ids = NULL, rc = -1;
    for (char *p = text; *p;) {
        if (*p == '#') { /* a comment to the end of the line */
            while (*p && *p != '\n') p++;
            continue;
        }
        if (*p == '\n') line++;
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            p++;
            continue;
        }
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v >= V || (*end && !strchr(" \t\r\n#", *end))) {
            snprintf(err, errlen, "draft vocabulary '%s', line %d: expected token ids in 0..%d", path, line, V - 1);
            goto done;
        }
        p = end;
        if (top > 0 && k == top) continue; /* the rest is checked, not used */
        if (k == cap) {
            int *ni = realloc(ids, sizeof(int) * (size_t)(cap = cap ? 2 * cap : 4096));
            if (!ni) {
                snprintf(err, errlen, "draft vocabulary '%s': out of memory", path);
                goto done;
            }
            ids = ni;
        }
        ids[k++] = (int)v;
    }
    if (k == 0) {
        snprintf(err, errlen, "draft vocabulary '%s': no token ids in it", path);
        goto done;
    }
    if (top > k) {
        snprintf(err, errlen, "draft vocabulary '%s' ranks %d ids; --draft-top %d asks for more", path, k, top);
        goto done;
    }
    char e2[512];
    if (transformer_set_head(tf, ids, k, e2, sizeof e2)) {
        snprintf(err, errlen, "draft vocabulary '%s': %s", path, e2);
        goto done;
    }
    if (used && usedlen) snprintf(used, usedlen, "%s", path);
    rc = k;
done:
    free(ids);
    free(text);
    return rc;
}

char *cli_read_prompt_file(const char *path, char *err, size_t errlen) {
    size_t n;
    char *buf = cli_read_text_file(path, "prompt file", &n, err, errlen);
    if (buf && n && buf[n - 1] == '\n') buf[--n] = 0;
    if (buf && n && buf[n - 1] == '\r') buf[--n] = 0;
    return buf;
}

int cli_check_device(const char *dev, char *err, size_t errlen) {
    if (!strcmp(dev, "cpu") || !strcmp(dev, "cuda")) return 0;
    if (!strncmp(dev, "cuda:", 5)) {
        char *end;
        errno = 0;
        long v = strtol(dev + 5, &end, 10);
        if (end != dev + 5 && !*end && !errno && v >= 0 && v <= 255 && dev[5] != '-' && dev[5] != '+') return 0;
        snprintf(err, errlen, "bad device '%s': after cuda: comes a GPU number (cuda:0)", dev);
        return -1;
    }
    snprintf(err, errlen, "unknown device '%s' (use cpu, cuda or cuda:N)", dev);
    return -1;
}

int cli_parse_dtype(const char *s, dtype_t *out) {
    if (!strcmp(s, "f32")) *out = DTYPE_F32;
    else if (!strcmp(s, "bf16")) *out = DTYPE_BF16;
    else if (!strcmp(s, "f16")) *out = DTYPE_F16;
    else return -1;
    return 0;
}

const char *cli_backend_desc(const backend_t *be, char *buf, size_t n) {
    if (be->device == DEVICE_CPU) {
        /* the kernel flavour and why: forced by BILD_ISA, or the widest the CPU has */
        const char *forced = getenv("BILD_ISA");
        snprintf(buf, n, "%s/%s, %d threads (%s)", be->name, be->isa, be->n_threads,
                 forced && strcmp(forced, "auto") ? "kernels set by BILD_ISA"
                 : !strcmp(be->isa, "avx512")     ? "the CPU has AVX-512; BILD_ISA=avx2 forces AVX2"
                 : !strcmp(be->isa, "avx2")       ? "the CPU has AVX2 and FMA, no AVX-512"
                                                  : "the CPU has no AVX2/FMA");
    }
    else snprintf(buf, n, "%s (%s)", be->name, be->isa);
    return buf;
}

int cli_dummy_dir(const char *path, char *out, size_t n, char *err, size_t errlen) {
    struct stat st;
    size_t len = strlen(path);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(out, n, "%s", path);
        return 0;
    }
    if (len >= 11 && !strcmp(path + len - 11, "config.json") && (len == 11 || path[len - 12] == '/')) {
        if (len == 11) snprintf(out, n, ".");
        else snprintf(out, n, "%.*s", (int)(len - 12 ? len - 12 : 1), path);
        return 0;
    }
    snprintf(err, errlen, "--dummy-weights: %s is not a directory; --model names the folder of a Hugging Face "
                          "config.json (or that config.json)", path);
    return -1;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int cli_default_tokenizer(const char *model, int vocab, char *out, size_t n, char *tried, size_t tn) {
    struct stat st;
    if (stat(model, &st) == 0 && S_ISDIR(st.st_mode)) { /* a Hugging Face directory */
        size_t len = strlen(model);
        snprintf(out, n, "%s%stokenizer.json", model, len && model[len - 1] == '/' ? "" : "/");
        snprintf(tried, tn, "%s", out);
        return file_exists(out) ? 0 : -1;
    }
    const char *slash = strrchr(model, '/');
    int dirlen = slash ? (int)(slash - model + 1) : 0;
    snprintf(out, n, "%.*stokenizer.bin", dirlen, model);
    snprintf(tried, tn, "%s", out);
    if (file_exists(out)) return 0;
    snprintf(out, n, "%.*stok%d.bin", dirlen, model, vocab);
    size_t used = strlen(tried);
    snprintf(tried + used, tn - used, ", %s", out);
    return file_exists(out) ? 0 : -1;
}

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

void sink_bytes(sink_t *s, const char *b, size_t n) {
    char buf[3 * 64 + 8];
    while (n) { /* slices of 64 keep within buf's 3n + 8 bound */
        size_t k = n < 64 ? n : 64;
        sink_put(s, buf, utf8_stream_feed(&s->u8, b, k, buf));
        b += k, n -= k;
    }
}

void sink_finish(sink_t *s) {
    char tail[8];
    sink_put(s, tail, utf8_stream_flush(&s->u8, tail));
}

void sink_free(sink_t *s) {
    free(s->text);
    s->text = NULL;
}

void sink_tokens(sink_t *s, const tokenizer_t *tok, int prev, const int *tokens, int n) {
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = tokenizer_decode(tok, i ? tokens[i - 1] : prev, tokens[i], &len);
        sink_bytes(s, p, len);
    }
}

uint64_t cli_vocab_fingerprint(const tokenizer_t *tok) {
    uint64_t fp = PROTO_FP_INIT;
    for (int id = 0; id < tokenizer_vocab_size(tok); id++) {
        /* control tokens count as one marker whatever their text
         * (tokenizer_is_control); one vocabulary, one fingerprint */
        if (tokenizer_is_control(tok, id)) {
            fp = proto_fingerprint_add(fp, "\xff<control>", 10);
            continue;
        }
        size_t n;
        const char *p = tokenizer_decode(tok, 0, id, &n);
        fp = proto_fingerprint_add(fp, p, n);
    }
    return fp;
}

tokenizer_t *cli_load_tokenizer(const char *path, int vocab, int bos, int eos, char *err, size_t errlen) {
    size_t n = strlen(path);
    if (n < 5 || strcmp(path + n - 5, ".json")) return tokenizer_load_llama2c(path, vocab, err, errlen);
    tokenizer_t *t = tokenizer_load_hf(path, err, errlen);
    if (!t) return NULL;
    if (tokenizer_vocab_size(t) > vocab) {
        snprintf(err, errlen, "tokenizer %s has %d pieces, more than the model's vocabulary of %d: it belongs to "
                              "another model", path, tokenizer_vocab_size(t), vocab);
        tokenizer_destroy(&t);
        return NULL;
    }
    if (bos >= 0 || eos >= 0) /* config.json's ids win over the tokenizer's guess */
        tokenizer_set_bos_eos(t, bos >= 0 ? bos : tokenizer_bos(t), eos >= 0 ? eos : tokenizer_eos(t));
    return t;
}

void cli_loaded_free(cli_loaded_t *l) {
    tokenizer_destroy(&l->tok);
    model_close(&l->m);
}

static int on_cpu(const char *device) { return !device || !strncmp(device, "cpu", 3); }

const char *cli_pages_desc(const cli_loaded_t *l, const char *device, char *buf, size_t n) {
    const char *why = "";
    if (!on_cpu(device) || !l->m) snprintf(buf, n, "%s", "");
    else if (cpu_packs_weights() && hostmem_hugepages_on(&why)) /* the backend's copies: hostmem_alloc */
        snprintf(buf, n, "weights in huge pages (matrices packed into 16-row panels)");
    else if (cpu_packs_weights())
        snprintf(buf, n, "weights in 4 KiB pages (matrices packed into 16-row panels; %s)", why);
    else if (l->dummy && hostmem_hugepages_on(&why)) /* made by the backend: hostmem_alloc */
        snprintf(buf, n, "weight tensors of 4 MiB or more in huge pages");
    else if (l->dummy) snprintf(buf, n, "weights in 4 KiB pages (%s)", why);
    else if (l->huge > 0) snprintf(buf, n, "weights in huge pages (%.1f MB)", l->huge / 1e6);
    else snprintf(buf, n, "weights in 4 KiB pages (%s)", l->huge_why && *l->huge_why ? l->huge_why
                                                            : l->huge < 0 ? "the copy failed"
                                                                          : "the kernel granted no huge pages");
    return buf;
}

int cli_load_model(const char *cmd, const char *path, const char *tokpath, int optional, const cli_dummy_t *dummy,
                   const char *device, cli_loaded_t *l) {
    char err[1024], found[4096], tried[8200], dir[4096];
    *l = (cli_loaded_t){0};
    if (dummy && dummy->on) {
        if (cli_dummy_dir(path, dir, sizeof dir, err, sizeof err) ||
            !(l->m = hf_open_dummy(dir, dummy->dtype, CLI_DUMMY_SEED, err, sizeof err))) {
            fprintf(stderr, "bild %s: %s\n", cmd, err);
            return -1;
        }
        path = dir; /* its tokenizer.json, if any */
        l->dummy = 1;
    } else if (!(l->m = model_open(path, err, sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        return -1;
    } else if (on_cpu(device) && !cpu_packs_weights()) { /* packed matrices are copies already */
        l->huge = model_hugepages(l->m, &l->huge_why);
    }
    int V = model_config(l->m)->vocab_size;
    if (tokpath) snprintf(found, sizeof found, "%s", tokpath);
    else if (cli_default_tokenizer(path, V, found, sizeof found, tried, sizeof tried)) {
        if (optional) return 0;
        fprintf(stderr, "bild %s: no --tokenizer given and none found next to the model (tried %s); "
                        "pass --tokenizer PATH\n", cmd, tried);
        cli_loaded_free(l);
        return -1;
    }
    if (!(l->tok = cli_load_tokenizer(found, V, model_config(l->m)->bos_id, model_config(l->m)->eos_id, err,
                                      sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        cli_loaded_free(l);
        return -1;
    }
    return 0;
}

int *cli_encode_prompt(const char *cmd, const tokenizer_t *tok, const char *text, const char *file, int *n, int *rc) {
    char err[1024];
    char *buf = NULL;
    *rc = EXIT_INPUT;
    if (file && !(text = buf = cli_read_prompt_file(file, err, sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        return NULL;
    }
    *rc = EXIT_RUNTIME;
    int count = tokenizer_encode(tok, text, 1, NULL, 0);
    int *ids = count > 0 ? malloc(sizeof(int) * (size_t)count) : NULL;
    if (!ids) fprintf(stderr, "bild %s: out of memory encoding the prompt\n", cmd);
    else tokenizer_encode(tok, text, 1, ids, count);
    free(buf);
    *n = count;
    return ids;
}

int cli_prompt_fits(const char *cmd, int n_ids, const model_config_t *c, const char *which) {
    if (n_ids <= c->seq_len) return 1;
    fprintf(stderr, "bild %s: the prompt is %d tokens but the %smodel's context is %d tokens (seq_len); "
                    "shorten the prompt\n", cmd, n_ids, which, c->seq_len);
    return 0;
}

int cli_check_device_opts(const char *cmd, const char *const *devs, int n_devs, const char *dtype_s,
                          cli_dummy_t *dummy) {
    static const char *names[] = {"--device", "--small-device", "--large-device"};
    char err[256];
    for (int i = 0; i < n_devs && i < 3; i++)
        if (devs[i] && cli_check_device(devs[i], err, sizeof err))
            return cli_usage_error(cmd, "%s: %s", names[i], err);
    if (cli_parse_dtype(dtype_s, &dummy->dtype))
        return cli_usage_error(cmd, "--dummy-dtype: unknown type '%s' (bf16, f16 or f32)", dtype_s);
    return 0;
}

backend_t *cli_open_backend(const char *cmd, const char *device, int threads) {
    char err[1024];
    backend_t *be = backend_new(device, threads, err, sizeof err);
    if (!be) fprintf(stderr, "bild %s: %s\n", cmd, err);
    return be;
}

uint64_t cli_clock_seed(void) { return (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32); }
