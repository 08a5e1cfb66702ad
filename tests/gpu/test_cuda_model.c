/* test_cuda_model.c - whole forward passes of real models on a device (the
 * CUDA backend by default) against the same model on the CPU backend.
 *
 *   build/gpu/test_cuda_model [--device cuda:0] MODEL [MODEL...]
 *
 * MODEL is a llama2.c checkpoint (models/stories15M/stories15M.bin) or a
 * Hugging Face directory. A bf16 one is made from stories15M with
 *   /usr/bin/python3 tools/llama2c_to_hf.py --dtype bf16 \
 *       models/stories15M/stories15M.bin OUTDIR
 * (the tokenizer is taken from next to the checkpoint; --tokenizer FILE
 * names another).
 *
 * For each model, with the same 24 tokens (bos first, then fixed ids):
 * - block:    all 24 at once, LOGITS_ALL;
 * - decode:   one token at a time from position 0, LOGITS_LAST;
 * - rollback: 10 tokens, then 8 other tokens from position 5 on the device,
 *             against the CPU running those 13 tokens fresh (a stale cache
 *             row on the device shows up here);
 * - stats:    the block again through transformer_run and
 *             transformer_logits_stats on the device: argmax equals the
 *             argmax of the device's own logits, nll is near the CPU's.
 *
 * Tolerances, per logit:
 * - f32 model: |dev - cpu| <= 1e-3. Both sides compute in f32 and differ
 *   only in summation order (reductions over dim and hidden_dim in every
 *   layer, the classifier over dim for each of the vocabulary's rows, the
 *   softmax in attention); such noise is ~1e-5 on stories15M's logits
 *   (magnitude ~10-20), while a real bug moves them by 0.1 or more.
 * - bf16/f16 model: |dev - cpu| <= 5e-3 * (max - min of the CPU row).
 *   Prompt blocks (T > 16) take cuBLAS on an activation split into two
 *   half parts, which drops its bits below ~2^-17 relative in every matmul
 *   of every layer; the error scales with the logits' spread.
 * - argmax: rows whose argmax differs are counted; a row counts against the
 *   model only when the CPU's top-2 margin there is > 1e-3 (a near tie may
 *   flip under any order of summation); more than one such row fails.
 * - stats nll: within the logit tolerance times 2 (log-sum-exp moves at
 *   most by the largest logit error, the target logit by as much).
 * Exit 0 when all pass, 1 on a failure, 2 on bad arguments or a model that
 * does not open, 77 (skip) when the device cannot be created. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "model/model.h"
#include "model/transformer.h"

#define NTOK 24
#define ROLL_KEEP 5  /* rollback: keep positions [0, 5) */
#define ROLL_FIRST 10
#define ROLL_NEW 8
#define MARGIN 1e-3

typedef struct {
    double max_abs, max_rel; /* max |dev - cpu|, and max over rows of that / row range */
    int rows, argmax_diff, argmax_hard, bad;
} cmp_t;

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) fprintf(stderr, "test_cuda_model: out of host memory (%zu bytes)\n", n), exit(1);
    return p;
}

static int argmax_row(const float *x, int V, float *margin) {
    int a = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[a]) a = i;
    float second = -INFINITY;
    for (int i = 0; i < V; i++)
        if (i != a && x[i] > second) second = x[i];
    if (margin) *margin = x[a] - second;
    return a;
}

/* Allowed |dev - cpu| for one logit of a row whose CPU range is range. */
static double logit_tol(dtype_t dt, double range) { return dt == DTYPE_F32 ? 1e-3 : 5e-3 * range; }

/* Compares n rows of V logits (dev against the CPU's ref) into c. */
static void compare_rows(cmp_t *c, const float *dev, const float *ref, int n, int V, dtype_t dt) {
    for (int t = 0; t < n; t++) {
        const float *d = dev + (size_t)t * V, *r = ref + (size_t)t * V;
        float lo = r[0], hi = r[0];
        for (int i = 1; i < V; i++) lo = r[i] < lo ? r[i] : lo, hi = r[i] > hi ? r[i] : hi;
        double range = (double)hi - lo, e = 0, tol = logit_tol(dt, range);
        for (int i = 0; i < V; i++) {
            double ei = fabs((double)d[i] - r[i]);
            if (!(ei <= e)) e = ei; /* NaN sticks */
        }
        if (!(e <= tol)) c->bad++;
        if (!(e <= c->max_abs)) c->max_abs = e;
        double rel = range > 0 ? e / range : e;
        if (!(rel <= c->max_rel)) c->max_rel = rel;
        float m;
        int ar = argmax_row(r, V, &m);
        if (argmax_row(d, V, NULL) != ar) c->argmax_diff++, c->argmax_hard += m > MARGIN;
        c->rows++;
    }
}

static int cmp_ok(const cmp_t *c) { return c->bad == 0 && c->argmax_hard <= 1 && c->rows > 0; }

static void cmp_print(const char *what, const cmp_t *c) {
    printf("  %-8s %2d rows  max|err| %.3g  max|err|/range %.3g  argmax differs %d (%d with margin > %g)%s\n", what,
           c->rows, c->max_abs, c->max_rel, c->argmax_diff, c->argmax_hard, MARGIN, cmp_ok(c) ? "" : "  FAIL");
}

/* Runs tokens [0, T) at pos on tf and copies the logits (rows as mode says) into out. 0 on success. */
static int run_copy(transformer_t *tf, const int *tokens, int T, int pos, logits_mode_t mode, float *out, int V) {
    const float *lg = transformer_forward(tf, tokens, T, pos, mode);
    if (!lg) return -1;
    memcpy(out, lg, sizeof(float) * (size_t)(mode == LOGITS_ALL ? T : 1) * V);
    return 0;
}

/* One model on both backends. Returns 0 pass, 1 fail, 2 cannot open. */
static int test_model(const char *path, backend_t *cpu, backend_t *dev) {
    char err[512];
    model_file_t *m = model_open(path, err, sizeof err);
    if (!m) {
        fprintf(stderr, "test_cuda_model: %s\n", err);
        return 2;
    }
    model_limit_context(m, 64); /* small KV caches: the test uses 24 positions */
    const model_config_t *cfg = model_config(m);
    dtype_t dt = model_weights(m)->dtype;
    int V = cfg->vocab_size, fail = 0;
    if (cfg->seq_len < NTOK || V < 2) {
        fprintf(stderr, "test_cuda_model: %s: needs seq_len >= %d and vocab >= 2 (has %d, %d)\n", path, NTOK,
                cfg->seq_len, V);
        model_close(&m);
        return 2;
    }
    transformer_t *tc = transformer_new(cpu, cfg, model_weights(m), 32, err, sizeof err);
    if (!tc) fprintf(stderr, "test_cuda_model: %s on cpu: %s\n", path, err);
    transformer_t *td = tc ? transformer_new(dev, cfg, model_weights(m), 32, err, sizeof err) : NULL;
    if (tc && !td) fprintf(stderr, "test_cuda_model: %s on %s: %s\n", path, dev->name, err);
    if (!td) {
        transformer_destroy(&tc);
        model_close(&m);
        return 1;
    }

    /* bos, then ids spread over the vocabulary (past the usual special ids 0-2) */
    int toks[NTOK], roll[ROLL_KEEP + ROLL_NEW];
    for (int i = 0; i < NTOK; i++)
        toks[i] = i == 0 && cfg->bos_id >= 0 ? cfg->bos_id
                  : V > 3                    ? 3 + (int)(((unsigned)i * 2654435761u >> 8) % (unsigned)(V - 3))
                                             : i % V;
    memcpy(roll, toks, sizeof(int) * ROLL_KEEP);
    for (int i = 0; i < ROLL_NEW; i++) roll[ROLL_KEEP + i] = (toks[(i * 5 + 7) % NTOK] + 1 + i) % V;

    size_t n = (size_t)NTOK * V;
    float *rc = xmalloc(sizeof(float) * n), *rd = xmalloc(sizeof(float) * n);
    cmp_t block = {0}, decode = {0}, rollback = {0};

    /* block */
    if (run_copy(tc, toks, NTOK, 0, LOGITS_ALL, rc, V) || run_copy(td, toks, NTOK, 0, LOGITS_ALL, rd, V)) {
        fprintf(stderr, "  block: transformer_forward refused the request\n");
        fail = 1;
    } else compare_rows(&block, rd, rc, NTOK, V, dt);
    float *blk_cpu = xmalloc(sizeof(float) * n);
    memcpy(blk_cpu, rc, sizeof(float) * n);

    /* decode from position 0: running at pos 0 truncates the cache */
    for (int t = 0; t < NTOK; t++) {
        if (run_copy(tc, &toks[t], 1, t, LOGITS_LAST, rc + (size_t)t * V, V) ||
            run_copy(td, &toks[t], 1, t, LOGITS_LAST, rd + (size_t)t * V, V)) {
            fprintf(stderr, "  decode: transformer_forward refused position %d\n", t);
            fail = 1;
            break;
        }
    }
    if (!fail) compare_rows(&decode, rd, rc, NTOK, V, dt);

    /* rollback on the device against a fresh run on the CPU */
    int n_all = ROLL_KEEP + ROLL_NEW;
    if (run_copy(td, toks, ROLL_FIRST, 0, LOGITS_ALL, rd, V) ||
        run_copy(td, roll + ROLL_KEEP, ROLL_NEW, ROLL_KEEP, LOGITS_ALL, rd, V) ||
        run_copy(tc, roll, n_all, 0, LOGITS_ALL, rc, V)) {
        fprintf(stderr, "  rollback: transformer_forward refused the request\n");
        fail = 1;
    } else compare_rows(&rollback, rd, rc + (size_t)ROLL_KEEP * V, ROLL_NEW, V, dt);

    /* row statistics on the device after transformer_run */
    int next[NTOK], am[NTOK], stats_bad = 0;
    float mp[NTOK], nll[NTOK];
    double nll_err = 0;
    for (int t = 0; t < NTOK; t++) next[t] = t + 1 < NTOK ? toks[t + 1] : -1, am[t] = -1, nll[t] = NAN;
    if (transformer_run(td, toks, NTOK, 0, LOGITS_ALL)) {
        fprintf(stderr, "  stats: transformer_run refused the request\n");
        stats_bad = 1;
    } else {
        transformer_logits_stats(td, NTOK, next, am, mp, nll);
        const float *lg = transformer_logits(td); /* the device's own logits, as a host copy */
        for (int t = 0; t < NTOK; t++) {
            const float *d = lg + (size_t)t * V, *r = blk_cpu + (size_t)t * V;
            if (argmax_row(d, V, NULL) != am[t]) stats_bad++; /* exact: the same numbers */
            float lo = r[0], hi = r[0];
            double s = 0, mx = r[argmax_row(r, V, NULL)];
            for (int i = 0; i < V; i++) lo = r[i] < lo ? r[i] : lo, hi = r[i] > hi ? r[i] : hi;
            for (int i = 0; i < V; i++) s += exp((double)r[i] - mx);
            double want = next[t] >= 0 ? log(s) + mx - r[next[t]] : 0, e = fabs(nll[t] - want);
            if (!(e <= 2 * logit_tol(dt, (double)hi - lo))) stats_bad++;
            if (!(e <= nll_err)) nll_err = e;
        }
    }

    fail |= !cmp_ok(&block) || !cmp_ok(&decode) || !cmp_ok(&rollback) || stats_bad;
    printf("%s (%s, %s, V=%d): %s\n", path, dt == DTYPE_F32 ? "f32" : dt == DTYPE_BF16 ? "bf16" : "f16", dev->name,
           V, fail ? "FAIL" : "ok");
    cmp_print("block", &block);
    cmp_print("decode", &decode);
    cmp_print("rollback", &rollback);
    printf("  stats    %2d rows  max|nll err| %.3g, %d mismatches%s\n", NTOK, nll_err, stats_bad,
           stats_bad ? "  FAIL" : "");
    fflush(stdout);

    free(rc), free(rd), free(blk_cpu);
    transformer_destroy(&td);
    transformer_destroy(&tc);
    model_close(&m);
    return fail;
}

static void usage(void) {
    fprintf(stderr, "usage: test_cuda_model [--device cuda:0|cpu] MODEL [MODEL...]\n"
                    "  MODEL: a llama2.c .bin checkpoint or a Hugging Face directory\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *device = "cuda:0";
    int first = 1;
    if (argc > 2 && !strcmp(argv[1], "--device")) device = argv[2], first = 3;
    if (first >= argc) usage();
    for (int i = first; i < argc; i++)
        if (argv[i][0] == '-') usage();
    char err[512];
    backend_t *dev = backend_new(device, 0, err, sizeof err);
    if (!dev) {
        printf("test_cuda_model: SKIP: cannot create device %s: %s\n", device, err);
        return 77;
    }
    backend_t *cpu = backend_new("cpu", 0, err, sizeof err);
    if (!cpu) {
        fprintf(stderr, "test_cuda_model: %s\n", err);
        return 1;
    }
    int failed = 0, unopened = 0;
    for (int i = first; i < argc; i++) {
        int r = test_model(argv[i], cpu, dev);
        failed += r == 1, unopened += r == 2;
    }
    backend_destroy(&cpu);
    backend_destroy(&dev);
    printf("test_cuda_model: %d models, %d failed, %d could not be opened\n", argc - first, failed, unopened);
    return failed ? 1 : unopened ? 2 : 0;
}
