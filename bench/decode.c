/* decode.c - batch-1 decoding speed against the memory-bandwidth floor, and
 * the cost of a block forward (BiLD's verification pass) relative to one
 * step. Everything is measured in the same run, on this machine:
 *
 *   1. memory bandwidth: streaming reads of a buffer far larger than the
 *      last-level cache (DRAM), and of a buffer the size of the model's
 *      weights (which may stay cache-resident between steps), 1 and 2 threads;
 *   2. decode tokens/s with 1 and 2 threads (greedy, feeding back the argmax),
 *      and the fraction of the floor = bandwidth / weight bytes per step;
 *   3. time of a forward over T = 1, 2, 4, 8, 16 tokens (all logits, as a
 *      verification pass) relative to T = 1, at context position 64.
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

/* Decode tokens/s: steps single-token forwards after BOS, best of 3 runs. */
static double decode_tps(const model_file_t *m, int threads, int steps) {
    char err[256];
    backend_t *be = backend_cpu_new(threads);
    transformer_t *tf = transformer_new(be, model_config(m), model_weights(m), 16, err, sizeof err);
    if (!tf) {
        fprintf(stderr, "decode: %s\n", err);
        exit(1);
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

/* Median time of a T-token verification block at position pos. */
static double block_time(transformer_t *tf, const int *toks, int T, int pos, int reps) {
    double ts[64];
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        transformer_forward(tf, toks + pos, T, pos, LOGITS_ALL);
        ts[r] = now_s() - t0;
    }
    for (int i = 1; i < reps; i++) /* insertion sort for the median */
        for (int j = i; j > 0 && ts[j] < ts[j - 1]; j--) {
            double x = ts[j];
            ts[j] = ts[j - 1], ts[j - 1] = x;
        }
    return ts[reps / 2];
}

int main(int argc, char **argv) {
    const char *path = "models/stories15M/stories15M.bin";
    int steps = 200, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: decode [--model PATH] [--steps N] [--json]\n");
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
    if (steps < 1 || steps > c->seq_len) steps = c->seq_len;
    size_t wbytes = model_step_bytes(c);

    /* 1. bandwidth: 1 GiB (beyond any cache) and a model-sized buffer */
    size_t big = (size_t)1 << 28, small = wbytes / sizeof(float);
    float *buf = aligned_alloc(64, big * sizeof(float));
    for (size_t i = 0; i < big; i++) buf[i] = (float)(i & 1023);
    double bw_dram[3], bw_model[3];
    for (int nt = 1; nt <= 2; nt++) {
        bw_dram[nt] = bandwidth(buf, big, nt, 5);
        bw_model[nt] = bandwidth(buf, small, nt, 50);
    }
    free(buf);

    /* 2. decode */
    double tps[3];
    for (int nt = 1; nt <= 2; nt++) tps[nt] = decode_tps(m, nt, steps);

    /* 3. block forward cost relative to one step, 2 threads and 1 thread */
    int Ts[] = {1, 2, 4, 8, 16}, pos = 64;
    double bt[3][5];
    int *toks = malloc(sizeof(int) * (pos + 16));
    for (int i = 0; i < pos + 16; i++) toks[i] = i == 0 ? c->bos_id : 3 + (i * 7919) % (c->vocab_size - 3);
    for (int nt = 1; nt <= 2; nt++) {
        backend_t *be = backend_cpu_new(nt);
        transformer_t *tf = transformer_new(be, c, model_weights(m), 16, err, sizeof err);
        transformer_forward(tf, toks, pos, 0, LOGITS_LAST);
        for (int k = 0; k < 5; k++) bt[nt][k] = block_time(tf, toks, Ts[k], pos, 31);
        transformer_destroy(&tf);
        backend_destroy(&be);
    }

    backend_t *probe = backend_cpu_new(1);
    printf("bench/decode: %s, %.1fM params, %.1f MB of f32 weights read per step; cpu/%s\n", path,
           model_n_params(c) / 1e6, wbytes / 1e6, probe->isa);
    backend_destroy(&probe);
    printf("\nmemory read bandwidth (GB/s)      1 thread   2 threads\n");
    printf("  1 GiB buffer (DRAM)             %8.1f   %9.1f\n", bw_dram[1], bw_dram[2]);
    printf("  %5.1f MB buffer (model-sized)   %8.1f   %9.1f\n", wbytes / 1e6, bw_model[1], bw_model[2]);
    printf("\ndecode, batch 1, %d steps         1 thread   2 threads\n", steps);
    printf("  tokens/s                        %8.1f   %9.1f\n", tps[1], tps[2]);
    printf("  floor tokens/s (DRAM bw)        %8.1f   %9.1f\n", bw_dram[1] * 1e9 / wbytes, bw_dram[2] * 1e9 / wbytes);
    printf("  fraction of DRAM floor          %8.2f   %9.2f\n", tps[1] / (bw_dram[1] * 1e9 / wbytes),
           tps[2] / (bw_dram[2] * 1e9 / wbytes));
    printf("  fraction of model-sized floor   %8.2f   %9.2f\n", tps[1] / (bw_model[1] * 1e9 / wbytes),
           tps[2] / (bw_model[2] * 1e9 / wbytes));
    printf("\nblock forward at position %d, time relative to T = 1 (all logits)\n", pos);
    printf("  T        ");
    for (int k = 0; k < 5; k++) printf("%7d", Ts[k]);
    for (int nt = 1; nt <= 2; nt++) {
        printf("\n  %d thread%s", nt, nt > 1 ? "s" : " ");
        for (int k = 0; k < 5; k++) printf("%7.2f", bt[nt][k] / bt[nt][0]);
    }
    printf("\n  (T = 1 takes %.3f ms with 1 thread, %.3f ms with 2)\n", bt[1][0] * 1e3, bt[2][0] * 1e3);
    printf("\npeers, quoted from ../shared/DESIGN.md (measured elsewhere on this kind of machine, not in this run):\n"
           "  llama2.c run.c -Ofast -fopenmp and llama.cpp f32, stories15M: about 600 tok/s with 2 threads,\n"
           "  360-410 with 1; llama.cpp's 8-token block costs about 2x a single step.\n");
    if (json) {
        printf("{\"model\":\"%s\",\"weight_bytes\":%zu,\"bw_dram_gbs\":[%.2f,%.2f],\"bw_model_gbs\":[%.2f,%.2f],"
               "\"decode_tps\":[%.1f,%.1f],\"block_rel_2t\":[%.3f,%.3f,%.3f,%.3f,%.3f]}\n",
               path, wbytes, bw_dram[1], bw_dram[2], bw_model[1], bw_model[2], tps[1], tps[2], bt[2][0] / bt[2][0],
               bt[2][1] / bt[2][0], bt[2][2] / bt[2][0], bt[2][3] / bt[2][0], bt[2][4] / bt[2][0]);
    }
    free(toks);
    model_close(&m);
    return 0;
}
