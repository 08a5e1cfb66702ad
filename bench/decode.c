/* decode.c - batch-1 decoding speed against the memory-bandwidth floor, and
 * the cost of a block forward (BiLD's verification pass) relative to one
 * step. Everything is measured in the same run, on this machine:
 *
 *   1. memory bandwidth: streaming reads of a buffer far larger than the
 *      last-level cache (DRAM), and of a buffer the size of the model's
 *      weights (which may stay cache-resident between steps), 1 and 2 threads;
 *   2. decode tokens/s with 1 and 2 threads (greedy, feeding back the argmax),
 *      and the fraction of the floor = bandwidth / weight bytes per step;
 *   3. time of a forward over T = 1, 2, 3, 4, 8, 12, 16 tokens (all logits,
 *      as a verification pass) relative to T = 1, at context position 64,
 *      the lengths interleaved run by run (best of 61);
 *   4. half-precision weights: the model's matrices converted in memory to
 *      bf16 and f16 (round to nearest even) at start-up, then
 *      a. the matrix products of one decode step alone (every layer's
 *         Q/K/V multi-matmul, Wo, SwiGLU W1/W3, W2, and the classifier, in
 *         the transformer's order, T = 1) with f32, bf16 and f16 weights:
 *         steps/s, GB/s of weights, and the fraction of the floor (the
 *         read bandwidth of a buffer as large as those weights);
 *      b. full decode tokens/s with bf16 weights, when model/transformer.c
 *         accepts half matrices (it prints why not otherwise).
 *
 * usage: bench/decode [--model PATH] [--steps N] [--json]
 * Not a test: it prints numbers and asserts nothing.
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/threadpool.h"
#include "kernels/half.h"
#include "kernels/hostmem.h"
#include "model/generate.h"
#include "model/sampler.h"
#include "model/transformer.h"

typedef struct {
    const float *buf;
    size_t n;
    double sums[64];
} bw_task_t;

__attribute__((target("avx2"))) static double sum_avx2(const float *p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    double s = 0;
    for (int k = 0; k < 8; k++) s += t[k];
    for (; i < n; i++) s += p[i];
    return s;
}

static double sum_scalar(const float *p, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += p[i];
    return s;
}

static void bw_worker(void *arg, int ith, int nth) {
    bw_task_t *t = arg;
    size_t per = t->n / nth, lo = per * ith, hi = ith == nth - 1 ? t->n : lo + per;
    t->sums[ith] = cpu_isa_supported("avx2") ? sum_avx2(t->buf + lo, hi - lo) : sum_scalar(t->buf + lo, hi - lo);
}

/* Best-of-reps read bandwidth in GB/s over n floats with nth threads. */
static double bandwidth(const float *buf, size_t n, int nth, int reps) {
    threadpool_t *tp = threadpool_new(nth);
    bw_task_t t = {.buf = buf, .n = n};
    double best = 0;
    threadpool_run(tp, bw_worker, &t, nth); /* warm up */
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        threadpool_run(tp, bw_worker, &t, nth);
        double gbs = n * sizeof(float) / (now_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    threadpool_destroy(&tp);
    return best;
}

/* Decode tokens/s: steps single-token forwards after BOS, best of 3 runs,
 * with the weights w (the model's own, or a converted copy). Returns 0 with
 * the reason in why when the transformer refuses the weights. */
static double decode_tps(const model_file_t *m, const model_weights_t *w, int threads, int steps, char *why,
                         size_t whylen) {
    char err[256];
    backend_t *be = backend_cpu_new(threads);
    transformer_t *tf = transformer_new(be, model_config(m), w, 16, err, sizeof err);
    if (!tf) {
        snprintf(why, whylen, "%s", err);
        backend_destroy(&be);
        return 0;
    }
    int V = model_config(m)->vocab_size;
    double best = 0;
    for (int run = 0; run < 3; run++) {
        int tok = model_config(m)->bos_id;
        double t0 = now_s();
        for (int pos = 0; pos < steps; pos++) tok = argmax_f32(transformer_forward(tf, &tok, 1, pos, LOGITS_LAST), V);
        double tps = steps / (now_s() - t0);
        if (tps > best) best = tps;
    }
    transformer_destroy(&tf);
    backend_destroy(&be);
    return best;
}

/* Where a decode step's time goes: `steps` steps from BOS with the CPU
 * backend's profile on (cpu_profile_start), per kind of operator, plus the
 * measured cost of one thread hand-off. Fills split[0..4] (matrix products,
 * attention, norms/embedding/RoPE, softmax statistics, everything else: the
 * argmax and the model code between operators) in seconds per step,
 * *handoffs per step and *handoff_us. */
static void decode_split(const model_file_t *m, int threads, int steps, double *split, double *handoffs,
                         double *handoff_us) {
    char err[256];
    backend_t *be = backend_cpu_new(threads);
    transformer_t *tf = transformer_new(be, model_config(m), model_weights(m), 16, err, sizeof err);
    memset(split, 0, sizeof(double) * 5);
    *handoffs = *handoff_us = 0;
    if (!tf) {
        backend_destroy(&be);
        return;
    }
    int V = model_config(m)->vocab_size;
    double best = 1e30;
    for (int run = 0; run < 3; run++) { /* the run with the shortest total */
        int tok = model_config(m)->bos_id;
        cpu_profile_t pr;
        cpu_profile_start(be);
        double t0 = now_s();
        for (int pos = 0; pos < steps; pos++) tok = argmax_f32(transformer_forward(tf, &tok, 1, pos, LOGITS_LAST), V);
        double total = now_s() - t0;
        cpu_profile_stop(be, &pr);
        if (total >= best) continue;
        best = total;
        split[0] = pr.matmul_s / steps, split[1] = pr.attention_s / steps, split[2] = pr.elementwise_s / steps;
        split[3] = pr.stats_s / steps;
        split[4] = total / steps - split[0] - split[1] - split[2] - split[3];
        *handoffs = (double)pr.handoffs / steps;
    }
    *handoff_us = cpu_handoff_us(be, 2000);
    transformer_destroy(&tf);
    backend_destroy(&be);
}

/* The weight matrices of one model in one dtype: 7 per layer (wq wk wv wo
 * w1 w2 w3), then the classifier, as host pointers. For f32 they point into
 * the mapped checkpoint; for half types into one converted copy. */
enum { M_WQ, M_WK, M_WV, M_WO, M_W1, M_W2, M_W3, M_PER_LAYER };
typedef struct {
    dtype_t dt;
    int L;
    const void **m; /* (L * M_PER_LAYER + 1) */
    int64_t *ne;    /* elements of each */
    void *copy;     /* owned converted copy, NULL for f32 */
    size_t bytes;   /* bytes of all matrices (what one step reads) */
} mats_t;

static mats_t mats_new(const model_config_t *c, const model_weights_t *w, dtype_t dt) {
    int L = c->n_layers, n = L * M_PER_LAYER + 1;
    int64_t d = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim,
            hid = c->hidden_dim;
    mats_t M = {dt, L, calloc(n, sizeof(void *)), calloc(n, sizeof(int64_t)), NULL, 0};
    const void **src = calloc(n, sizeof(void *));
    if (!M.m || !M.ne || !src) exit(1);
    for (int l = 0; l < L; l++) {
        const void *p[M_PER_LAYER] = {w->wq[l], w->wk[l], w->wv[l], w->wo[l], w->w1[l], w->w2[l], w->w3[l]};
        int64_t ne[M_PER_LAYER] = {qd * d, kvd * d, kvd * d, d * qd, hid * d, d * hid, hid * d};
        for (int k = 0; k < M_PER_LAYER; k++) src[l * M_PER_LAYER + k] = p[k], M.ne[l * M_PER_LAYER + k] = ne[k];
    }
    src[n - 1] = w->wcls, M.ne[n - 1] = (int64_t)c->vocab_size * d;
    size_t total = 0; /* elements, each matrix rounded up to 64 bytes */
    for (int i = 0; i < n; i++) total += ((size_t)M.ne[i] + 31) & ~(size_t)31, M.bytes += M.ne[i] * dtype_size(dt);
    if (dt != DTYPE_F32 && !(M.copy = hostmem_alloc(total * 2))) exit(1); /* huge pages, as the model's own */
    for (int i = 0, off = 0; i < n; i++) {
        if (dt == DTYPE_F32) {
            M.m[i] = src[i];
            continue;
        }
        uint16_t *h = (uint16_t *)M.copy + off;
        f32_to_dtype(h, src[i], dt, (size_t)M.ne[i]);
        M.m[i] = h, off += (int)(((size_t)M.ne[i] + 31) & ~(size_t)31);
    }
    free(src);
    return M;
}

static void mats_free(mats_t *M) { free(M->m), free(M->ne), free(M->copy); }

/* The matrix products of one T = 1 decode step, in the transformer's order
 * (attention, RoPE and norms left out), for each of the nm weight sets M[k]:
 * `steps` steps per timing, the sets interleaved run by run (so that a
 * noisy neighbour hurts them alike), best of `runs`. sec[k] = seconds per step.
 * Interleaved with them, *full = seconds per whole f32 decode step of the
 * transformer (positions 0..steps-1, greedy on token 1), so that the rest
 * of a step (attention, norms, RoPE, logits statistics) can be estimated as
 * *full - sec[f32] under the same conditions. */
static void matmul_step_times(const model_file_t *mf, const mats_t *M, int nm, int threads, int steps, int runs,
                              double *sec, double *full) {
    const model_config_t *c = model_config(mf);
    backend_t *be = backend_cpu_new(threads);
    char err[256];
    transformer_t *tf = transformer_new(be, c, model_weights(mf), 16, err, sizeof err);
    if (!tf) {
        fprintf(stderr, "decode: %s\n", err);
        exit(1);
    }
    *full = 1e30;
    int d = c->dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, hid = c->hidden_dim,
        V = c->vocab_size;
    tensor_t x = be->alloc(be, d), xb = be->alloc(be, d), q = be->alloc(be, qd), k = be->alloc(be, kvd),
             v = be->alloc(be, kvd), hb = be->alloc(be, hid), lg = be->alloc(be, V);
    float *init = malloc(sizeof(float) * (size_t)(qd > d ? qd : d));
    for (int i = 0; i < (qd > d ? qd : d); i++) init[i] = (float)((i * 7919) % 200 - 100) / 1000.0f;
    be->from_host(be, xb, 0, init, d);
    free(init);
    int nw = M->L * M_PER_LAYER + 1;
    tensor_t *Wall = malloc(sizeof(tensor_t) * (size_t)(nw * nm));
    for (int mk = 0; mk < nm; mk++) {
        for (int i = 0; i < nw; i++) Wall[mk * nw + i] = be->wrap_host(be, (void *)M[mk].m[i], M[mk].dt, M[mk].ne[i]);
        sec[mk] = 1e30;
    }
    for (int run = 0; run <= runs; run++) { /* run 0 warms the caches and the pool */
        double tf0 = now_s();
        for (int pos = 0, tok = 1; pos < steps; pos++) /* pos 0 cuts the cache back */
            tok = argmax_f32(transformer_forward(tf, &tok, 1, pos, LOGITS_LAST), c->vocab_size);
        double tfull = (now_s() - tf0) / steps;
        if (run > 0 && tfull < *full) *full = tfull;
        for (int mk = 0; mk < nm; mk++) {
            const tensor_t *W = Wall + mk * nw;
            double t0 = now_s();
            for (int s = 0; s < steps; s++) {
                for (int l = 0; l < M[mk].L; l++) {
                    const tensor_t *w = W + l * M_PER_LAYER;
                    matmul_job_t qkv[3] = {{w[M_WQ], q, 0, qd}, {w[M_WK], k, 0, kvd}, {w[M_WV], v, 0, kvd}};
                    be->matmul(be, xb, 1, d, qkv, 3, 0);
                    matmul_job_t o = {w[M_WO], x, 0, d};
                    be->matmul(be, q, 1, qd, &o, 1, 1);
                    be->swiglu(be, hb, xb, w[M_W1], w[M_W3], 1, d, hid);
                    matmul_job_t down = {w[M_W2], x, 0, d};
                    be->matmul(be, hb, 1, hid, &down, 1, 1);
                }
                matmul_job_t cls = {W[nw - 1], lg, 0, V};
                be->matmul(be, xb, 1, d, &cls, 1, 0);
            }
            double t = (now_s() - t0) / steps;
            if (run > 0 && t < sec[mk]) sec[mk] = t;
        }
    }
    free(Wall);
    transformer_destroy(&tf);
    be->free(be, &x), be->free(be, &xb), be->free(be, &q), be->free(be, &k), be->free(be, &v);
    be->free(be, &hb), be->free(be, &lg);
    backend_destroy(&be);
}

/* Decode tokens/s with two sets of weights, runs alternating between them
 * (best of 5 each, `steps` steps from BOS), so that a busy neighbour hurts
 * both alike. Returns 0 with the reason in why if the transformer refuses
 * the second set (the first is the model's own). */
static int decode_tps_pair(const model_file_t *m, const model_weights_t *wb, int threads, int steps, double *tps,
                           char *why, size_t whylen) {
    const model_config_t *c = model_config(m);
    backend_t *be = backend_cpu_new(threads);
    transformer_t *tf[2] = {transformer_new(be, c, model_weights(m), 16, why, whylen),
                            transformer_new(be, c, wb, 16, why, whylen)};
    int ok = tf[0] && tf[1];
    tps[0] = tps[1] = 0;
    for (int run = 0; ok && run < 5; run++)
        for (int k = 0; k < 2; k++) {
            int tok = c->bos_id;
            double t0 = now_s();
            for (int pos = 0; pos < steps; pos++)
                tok = argmax_f32(transformer_forward(tf[k], &tok, 1, pos, LOGITS_LAST), c->vocab_size);
            double r = steps / (now_s() - t0);
            if (r > tps[k]) tps[k] = r;
        }
    transformer_destroy(&tf[0]), transformer_destroy(&tf[1]);
    backend_destroy(&be);
    return ok;
}

/* Median time of a T-token verification block at position pos. */
/* Times of a forward over each of the nT block lengths Ts (all logits, at
 * position pos), the lengths interleaved run by run so that a change in the
 * machine's speed hits them alike; the best of reps runs each. */
static void block_times(transformer_t *tf, const int *toks, const int *Ts, int nT, int pos, int reps, double *best) {
    for (int k = 0; k < nT; k++) best[k] = 1e30;
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < nT; k++) {
            double t0 = now_s();
            transformer_forward(tf, toks + pos, Ts[k], pos, LOGITS_ALL);
            double t = now_s() - t0;
            if (t < best[k]) best[k] = t;
        }
}

/* --blocks: part 3 alone, for working on the block kernels */
static int block_table(model_file_t *m, const model_config_t *c) {
    int Ts[] = {1, 2, 3, 4, 5, 6, 8, 12, 16}, pos = 64; /* 5, 6: a draft of 4-5 and its last token */
    enum { NT = sizeof Ts / sizeof Ts[0] };
    double bt[3][NT], split[3][NT][4];
    char err[512];
    int *toks = malloc(sizeof(int) * (pos + 16));
    for (int i = 0; i < pos + 16; i++) toks[i] = i == 0 ? c->bos_id : 3 + (i * 7919) % (c->vocab_size - 3);
    backend_t *probe = backend_cpu_new(1);
    printf("block forward at position %d, time relative to T = 1 (all logits; lengths interleaved, best of 61); cpu/%s\n",
           pos, probe->isa);
    backend_destroy(&probe);
    printf("  T        ");
    for (int k = 0; k < NT; k++) printf("%7d", Ts[k]);
    for (int nt = 1; nt <= 2; nt++) {
        backend_t *be = backend_cpu_new(nt);
        transformer_t *tf = transformer_new(be, c, model_weights(m), 16, err, sizeof err);
        if (!tf) {
            fprintf(stderr, "decode: %s\n", err);
            return 1;
        }
        transformer_forward(tf, toks, pos, 0, LOGITS_LAST);
        block_times(tf, toks, Ts, NT, pos, 61, bt[nt]);
        printf("\n  %d thread%s", nt, nt > 1 ? "s" : " ");
        for (int k = 0; k < NT; k++) printf("%7.2f", bt[nt][k] / bt[nt][0]);
        /* where a block goes: the best of 21 runs per length, by kind of operator (ms) */
        for (int k = 0; k < NT; k++) {
            double best = 1e30, sp[4] = {0, 0, 0, 0};
            for (int r = 0; r < 21; r++) {
                cpu_profile_t pr;
                cpu_profile_start(be);
                double t0 = now_s();
                transformer_forward(tf, toks + pos, Ts[k], pos, LOGITS_ALL);
                double t = now_s() - t0;
                cpu_profile_stop(be, &pr);
                if (t < best) best = t, sp[0] = pr.matmul_s, sp[1] = pr.attention_s, sp[2] = pr.elementwise_s + pr.stats_s;
            }
            split[nt][k][0] = sp[0], split[nt][k][1] = sp[1], split[nt][k][2] = sp[2];
            split[nt][k][3] = best - sp[0] - sp[1] - sp[2];
        }
        transformer_destroy(&tf);
        backend_destroy(&be);
    }
    printf("\n  (T = 1 takes %.3f ms with 1 thread, %.3f ms with 2)\n", bt[1][0] * 1e3, bt[2][0] * 1e3);
    const char *nm[4] = {"matrix products", "attention", "norms, RoPE, stats", "the rest"};
    for (int nt = 1; nt <= 2; nt++) {
        printf("where a block goes, %d thread%s (ms; best of 21 profiled runs)\n", nt, nt > 1 ? "s" : "");
        for (int i = 0; i < 4; i++) {
            printf("  %-18s", nm[i]);
            for (int k = 0; k < NT; k++) printf("%7.3f", split[nt][k][i] * 1e3);
            printf("\n");
        }
    }
    free(toks);
    return 0;
}

int main(int argc, char **argv) {
    const char *path = "models/stories15M/stories15M.bin";
    int steps = 200, json = 0, blocks_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--blocks")) blocks_only = 1;
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: decode [--model PATH] [--steps N] [--json] [--blocks]\n"
                            "  --blocks  only the block-forward table (part 3)\n");
            return 2;
        }
    }
    char err[512];
    model_file_t *m = model_open(path, err, sizeof err);
    if (!m) {
        fprintf(stderr, "decode: %s (run `make models` first)\n", err);
        return 1;
    }
    const model_config_t *c = model_config(m);
    if (model_weights(m)->dtype != DTYPE_F32 || model_weights(m)->dummy) {
        /* its tables compare f32 against half copies made from the f32 weights */
        fprintf(stderr, "decode: %s holds %s weights; this benchmark needs an f32 model (a llama2.c checkpoint or "
                        "an f32 Hugging Face folder)\n", path, model_weights(m)->dummy ? "no" : "half-precision");
        return 1;
    }
    if (steps < 1 || steps > c->seq_len) steps = c->seq_len;
    size_t wbytes = model_step_bytes(c);
    /* the weights as bild's CPU commands hold them: matrices packed into
     * panels (backend copies in huge pages), else the mapping moved into
     * huge pages (model_hugepages) */
    int packs = cpu_packs_weights();
    if (blocks_only) {
        if (!packs) model_hugepages(m, NULL);
        return block_table(m, c);
    }
    const char *huge_why = "";
    long huge = packs ? 0 : model_hugepages(m, &huge_why);
    int in_huge = packs ? hostmem_hugepages_on(&huge_why) : huge > 0;

    /* 1. bandwidth: 1 GiB (beyond any cache) and a model-sized buffer, in
     * the pages the weights are in (huge pages unless off); the 1 GiB buffer
     * in 4 KiB pages too, for reference */
    size_t big = (size_t)1 << 28, small = wbytes / sizeof(float);
    float *buf = hostmem_alloc(big * sizeof(float)), *buf4k = aligned_alloc(64, big * sizeof(float));
    if (!buf || !buf4k) exit(1);
    for (size_t i = 0; i < big; i++) buf[i] = buf4k[i] = (float)(i & 1023);
    /* the matrices alone, in f32 and in a half type: the floors of section 4 */
    mats_t mf = mats_new(c, model_weights(m), DTYPE_F32);
    size_t mbytes[2] = {mf.bytes, mf.bytes / 2};
    double bw_dram[3], bw_model[3], bw_mats[2][3];
    double bw_4k[3];
    for (int nt = 1; nt <= 2; nt++) {
        bw_dram[nt] = bandwidth(buf, big, nt, 5);
        bw_4k[nt] = bandwidth(buf4k, big, nt, 5);
        bw_model[nt] = bandwidth(buf, small, nt, 50);
        for (int h = 0; h < 2; h++) bw_mats[h][nt] = bandwidth(buf, mbytes[h] / sizeof(float), nt, 50);
    }
    free(buf), free(buf4k);

    /* 2. decode */
    double tps[3];
    char why[256] = "";
    for (int nt = 1; nt <= 2; nt++)
        if (!(tps[nt] = decode_tps(m, model_weights(m), nt, steps, why, sizeof why))) {
            fprintf(stderr, "decode: %s\n", why);
            return 1;
        }

    /* 3. block forward cost relative to one step, 2 threads and 1 thread */
    int Ts[] = {1, 2, 3, 4, 8, 12, 16}, pos = 64; /* 3, 12: blocks that end in a partial tile */
    double bt[3][7];
    int *toks = malloc(sizeof(int) * (pos + 16));
    for (int i = 0; i < pos + 16; i++) toks[i] = i == 0 ? c->bos_id : 3 + (i * 7919) % (c->vocab_size - 3);
    for (int nt = 1; nt <= 2; nt++) {
        backend_t *be = backend_cpu_new(nt);
        transformer_t *tf = transformer_new(be, c, model_weights(m), 16, err, sizeof err);
        transformer_forward(tf, toks, pos, 0, LOGITS_LAST);
        block_times(tf, toks, Ts, 7, pos, 61, bt[nt]);
        transformer_destroy(&tf);
        backend_destroy(&be);
    }

    /* 4. half weights. a: the matrix products of a step in each dtype */
    const char *dtn[3] = {"f32", "bf16", "f16"};
    mats_t mh[3] = {mf, mats_new(c, model_weights(m), DTYPE_BF16), mats_new(c, model_weights(m), DTYPE_F16)};
    double mt[3][3], sec[3], full[3]; /* [dtype][threads] seconds per step; full f32 step */
    for (int nt = 1; nt <= 2; nt++) {
        matmul_step_times(m, mh, 3, nt, 50, 20, sec, &full[nt]); /* short runs: the best of many dodge neighbours */
        for (int k = 0; k < 3; k++) mt[k][nt] = sec[k];
    }
    /* b: a full decode with the bf16 matrices (norms stay f32) */
    model_weights_t wb = *model_weights(m);
    int L = c->n_layers;
    const void **lay = malloc(sizeof(void *) * (size_t)L * M_PER_LAYER);
    wb.dtype = DTYPE_BF16;
    wb.wq = lay, wb.wk = lay + L, wb.wv = lay + 2 * L, wb.wo = lay + 3 * L, wb.w1 = lay + 4 * L;
    wb.w2 = lay + 5 * L, wb.w3 = lay + 6 * L;
    for (int l = 0; l < L; l++) {
        const void **p = mh[1].m + l * M_PER_LAYER;
        lay[l] = p[M_WQ], lay[L + l] = p[M_WK], lay[2 * L + l] = p[M_WV], lay[3 * L + l] = p[M_WO];
        lay[4 * L + l] = p[M_W1], lay[5 * L + l] = p[M_W2], lay[6 * L + l] = p[M_W3];
    }
    wb.wcls = mh[1].m[L * M_PER_LAYER];
    /* a shared classifier is the embedding table: the bf16 copy serves both;
     * a separate embedding table is converted too */
    uint16_t *emb = NULL;
    if (c->shared_classifier) wb.tok_emb = wb.wcls;
    else {
        emb = hostmem_alloc(sizeof(uint16_t) * (size_t)c->vocab_size * c->dim);
        f32_to_dtype(emb, model_weights(m)->tok_emb, DTYPE_BF16, (size_t)c->vocab_size * c->dim);
        wb.tok_emb = emb;
    }
    double tps_b[3] = {0, 0, 0}, tps_f[3] = {0, 0, 0}, pair[2];
    char why_b[256] = "";
    for (int nt = 1; nt <= 2; nt++)
        if (decode_tps_pair(m, &wb, nt, steps, pair, why_b, sizeof why_b)) tps_f[nt] = pair[0], tps_b[nt] = pair[1];

    backend_t *probe = backend_cpu_new(1);
    printf("bench/decode: %s, %.1fM params, %.1f MB of f32 weights read per step; cpu/%s; ", path,
           model_n_params(c) / 1e6, wbytes / 1e6, probe->isa);
    if (in_huge && packs) printf("weight matrices packed into 16-row panels, in huge pages\n");
    else if (in_huge) printf("weights in huge pages (%.1f MB)\n", huge / 1e6);
    else printf("weights in 4 KiB pages (%s)\n", *huge_why ? huge_why : "none granted");
    backend_destroy(&probe);
    printf("\nmemory read bandwidth (GB/s)      1 thread   2 threads\n");
    printf("  1 GiB buffer (DRAM)             %8.1f   %9.1f   %s\n", bw_dram[1], bw_dram[2],
           in_huge ? "(huge pages, as the weights: the floor below)" : "");
    printf("  1 GiB buffer, 4 KiB pages       %8.1f   %9.1f\n", bw_4k[1], bw_4k[2]);
    printf("  %5.1f MB buffer (model-sized)   %8.1f   %9.1f\n", wbytes / 1e6, bw_model[1], bw_model[2]);
    printf("\ndecode, batch 1, %d steps         1 thread   2 threads\n", steps);
    printf("  tokens/s                        %8.1f   %9.1f\n", tps[1], tps[2]);
    printf("  floor tokens/s (DRAM bw)        %8.1f   %9.1f\n", bw_dram[1] * 1e9 / wbytes, bw_dram[2] * 1e9 / wbytes);
    printf("  fraction of DRAM floor          %8.2f   %9.2f\n", tps[1] / (bw_dram[1] * 1e9 / wbytes),
           tps[2] / (bw_dram[2] * 1e9 / wbytes));
    printf("  fraction of model-sized floor   %8.2f   %9.2f\n", tps[1] / (bw_model[1] * 1e9 / wbytes),
           tps[2] / (bw_model[2] * 1e9 / wbytes));
    {
        double sp[3][5], ho[3], hus[3];
        for (int nt = 1; nt <= 2; nt++) decode_split(m, nt, steps, sp[nt], &ho[nt], &hus[nt]);
        const char *nm[5] = {"matrix products (matmul, swiglu)", "attention", "norms, embedding, RoPE",
                             "softmax statistics", "the rest (argmax, model code)"};
        printf("\nwhere a decode step goes (%d steps from BOS, best of 3 runs; ms per step and share)\n", steps);
        printf("                                        1 thread          2 threads\n");
        for (int k = 0; k < 5; k++) {
            double t1 = sp[1][0] + sp[1][1] + sp[1][2] + sp[1][3] + sp[1][4];
            double t2 = sp[2][0] + sp[2][1] + sp[2][2] + sp[2][3] + sp[2][4];
            printf("  %-34s %7.3f %5.1f%%   %7.3f %5.1f%%\n", nm[k], sp[1][k] * 1e3, 100 * sp[1][k] / t1,
                   sp[2][k] * 1e3, 100 * sp[2][k] / t2);
        }
        printf("  thread hand-offs (2 threads): %.0f per step x %.1f us = %.3f ms (%.1f%% of a step), inside the\n"
               "  operators above (an empty operator on every thread, timed alone)\n", ho[2], hus[2], ho[2] * hus[2] * 1e-3,
               100 * ho[2] * hus[2] * 1e-6 / (sp[2][0] + sp[2][1] + sp[2][2] + sp[2][3] + sp[2][4]));
    }
    printf("\nblock forward at position %d, time relative to T = 1 (all logits; lengths interleaved, best of 61)\n", pos);
    printf("  T        ");
    for (int k = 0; k < 7; k++) printf("%7d", Ts[k]);
    for (int nt = 1; nt <= 2; nt++) {
        printf("\n  %d thread%s", nt, nt > 1 ? "s" : " ");
        for (int k = 0; k < 7; k++) printf("%7.2f", bt[nt][k] / bt[nt][0]);
    }
    printf("\n  (T = 1 takes %.3f ms with 1 thread, %.3f ms with 2)\n", bt[1][0] * 1e3, bt[2][0] * 1e3);
    printf("\nhalf-precision weights: the matrix products of one decode step (T = 1; 50 steps a run, dtypes\n"
           "interleaved, best of 20 runs)\n");
    printf("  weights  MB/step   threads   steps/s   GB/s   floor steps/s   of floor   vs f32\n");
    for (int k = 0; k < 3; k++)
        for (int nt = 1; nt <= 2; nt++) {
            double gbs = mh[k].bytes / mt[k][nt] / 1e9, bw = bw_mats[k ? 1 : 0][nt];
            printf("  %-6s   %7.1f   %7d   %7.1f  %5.1f   %13.1f   %8.2f   %6.2f\n", dtn[k], mh[k].bytes / 1e6, nt,
                   1 / mt[k][nt], gbs, bw * 1e9 / mh[k].bytes, gbs / bw, mt[0][nt] / mt[k][nt]);
        }
    printf("  floor: read bandwidth of a buffer of the same size, %.1f MB: %.1f / %.1f GB/s, %.1f MB: %.1f / %.1f GB/s"
           " (1 / 2 threads)\n",
           mbytes[0] / 1e6, bw_mats[0][1], bw_mats[0][2], mbytes[1] / 1e6, bw_mats[1][1], bw_mats[1][2]);
    if (tps_b[1] > 0) {
        printf("\ndecode, %d steps, f32 and bf16 matrices (norms f32), runs alternating\n", steps);
        printf("                                  1 thread   2 threads\n");
        printf("  tokens/s, f32                   %8.1f   %9.1f\n", tps_f[1], tps_f[2]);
        printf("  tokens/s, bf16                  %8.1f   %9.1f\n", tps_b[1], tps_b[2]);
        printf("  bf16 / f32                      %8.2f   %9.2f\n", tps_b[1] / tps_f[1], tps_b[2] / tps_f[2]);
        printf("  fraction of model-sized floor, f32   %5.2f   %9.2f\n", tps_f[1] / (bw_model[1] * 1e9 / wbytes),
               tps_f[2] / (bw_model[2] * 1e9 / wbytes));
        printf("  fraction of half-sized floor, bf16   %5.2f   %9.2f   (matrices %.1f MB at %.1f / %.1f GB/s)\n",
               tps_b[1] * mh[1].bytes / (bw_mats[1][1] * 1e9), tps_b[2] * mh[1].bytes / (bw_mats[1][2] * 1e9),
               mh[1].bytes / 1e6, bw_mats[1][1], bw_mats[1][2]);
    } else {
        /* the rest of a step (attention, norms, RoPE, dispatch) is the
         * difference between a full f32 step and its matrix products */
        printf("\ndecode with bf16 matrices: not run (transformer: %s);\n", why_b);
        printf("  estimated from the same interleaved runs (positions 0..49):  1 thread   2 threads\n");
        printf("  f32 decode step, measured, tokens/s                        %8.1f   %9.1f\n", 1 / full[1], 1 / full[2]);
        printf("  rest of the step (f32 step - f32 matmuls), ms              %8.3f   %9.3f\n",
               (full[1] - mt[0][1]) * 1e3, (full[2] - mt[0][2]) * 1e3);
        printf("  bf16 decode = 1 / (rest + bf16 matmuls), tokens/s          %8.1f   %9.1f\n",
               1 / (full[1] - mt[0][1] + mt[1][1]), 1 / (full[2] - mt[0][2] + mt[1][2]));
        printf("  bf16 / f32                                                 %8.2f   %9.2f\n",
               full[1] / (full[1] - mt[0][1] + mt[1][1]), full[2] / (full[2] - mt[0][2] + mt[1][2]));
    }
    printf("\npeers, quoted from ../shared/DESIGN.md (measured elsewhere on this kind of machine, not in this run):\n"
           "  llama2.c run.c -Ofast -fopenmp and llama.cpp f32, stories15M: about 600 tok/s with 2 threads,\n"
           "  360-410 with 1; llama.cpp's 8-token block costs about 2x a single step.\n");
    if (json) {
        printf("{\"model\":\"%s\",\"weight_bytes\":%zu,\"bw_dram_gbs\":[%.2f,%.2f],\"bw_model_gbs\":[%.2f,%.2f],"
               "\"decode_tps\":[%.1f,%.1f],\"block_T\":[1,2,3,4,8,12,16],\"block_rel_2t\":[%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f],"
               "\"matmul_steps_per_s\":{\"f32\":[%.1f,%.1f],\"bf16\":[%.1f,%.1f],\"f16\":[%.1f,%.1f]},"
               "\"bw_mats_gbs\":{\"f32\":[%.2f,%.2f],\"half\":[%.2f,%.2f]},\"decode_tps_bf16\":[%.1f,%.1f],"
               "\"decode_tps_f32_interleaved\":[%.1f,%.1f],\"decode_tps_bf16_estimate\":[%.1f,%.1f]}\n",
               path, wbytes, bw_dram[1], bw_dram[2], bw_model[1], bw_model[2], tps[1], tps[2], bt[2][0] / bt[2][0],
               bt[2][1] / bt[2][0], bt[2][2] / bt[2][0], bt[2][3] / bt[2][0], bt[2][4] / bt[2][0],
               bt[2][5] / bt[2][0], bt[2][6] / bt[2][0], 1 / mt[0][1],
               1 / mt[0][2], 1 / mt[1][1], 1 / mt[1][2], 1 / mt[2][1], 1 / mt[2][2], bw_mats[0][1], bw_mats[0][2],
               bw_mats[1][1], bw_mats[1][2], tps_b[1], tps_b[2], 1 / full[1], 1 / full[2],
               1 / (full[1] - mt[0][1] + mt[1][1]), 1 / (full[2] - mt[0][2] + mt[1][2]));
    }
    free(toks);
    for (int k = 0; k < 3; k++) mats_free(&mh[k]);
    free(lay), free(emb);
    model_close(&m);
    return 0;
}
