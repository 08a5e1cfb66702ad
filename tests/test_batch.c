/* test_batch.c - the lockstep batch (model/batch.c) against the engine's
 * own single-sequence forward pass (model/transformer.c, itself checked
 * against PyTorch in test_model.c).
 *
 * For B = 1, 3 and 8 rows over 40 steps (fewer where the context is
 * shorter; 12 for stories15M), each row with its own prompt of a different length (forced
 * tokens, then tokens sampled from the batched logits with a per-row seed),
 * every row's logits at every step must equal those of transformer_forward
 * run on that row alone, one token at a time. Tolerance: atol 1e-6 +
 * rtol 1e-5 (the bar). The kernels compute a row with the same
 * summation order whatever the number of rows (the CPU's packed matrices
 * sum every output as one chain over the reduction, whatever the tile), so
 * the logits are expected bit-identical; the report says how many were.
 * Models: the three random tiny llama2.c checkpoints (every instruction
 * set, 1 and 2 threads), five Hugging Face test models (rotate-half RoPE,
 * llama3 scaling, head_dim != dim / n_heads, q/k/v biases, f16 and bf16
 * weights), stories260K and stories15M.
 * Also: a second run on the same batch (pos 0 restarts), recomputing after
 * a rollback, and the refusal of invalid requests.
 */
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "model/batch.h"
#include "model/sampler.h"
#include "model/transformer.h"
#include "tests/test.h"

#define STEPS 40

typedef struct {
    double max_rel; /* worst |a - b| / tolerance */
    long n, exact;
} cmp_t;

/* Counts bit-identical values and checks |a - b| <= 1e-6 + 1e-5 |b|. */
static int compare(const float *a, const float *ref, int n, cmp_t *c) {
    int ok = 1;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]), lim = 1e-6 + 1e-5 * fabs(ref[i]);
        if (!(d <= lim)) ok = 0;
        if (d / lim > c->max_rel) c->max_rel = d / lim;
        c->exact += a[i] == ref[i];
    }
    c->n += n;
    return ok;
}

/* B rows through the batch in lockstep, then each row alone through tf. */
static void check_rows(batch_t *bt, transformer_t *tf, int B, int steps, uint64_t seed, cmp_t *c) {
    const model_config_t *cfg = batch_config(bt);
    int V = cfg->vocab_size, bos = cfg->bos_id >= 0 ? cfg->bos_id : 1;
    int *tok = malloc(sizeof(int) * (size_t)B * steps), *plen = malloc(sizeof(int) * B), *cur = malloc(sizeof(int) * B);
    float *logits = malloc(sizeof(float) * (size_t)B * steps * V);
    sampler_t **smp = calloc((size_t)B, sizeof(sampler_t *));
    for (int b = 0; b < B; b++) {
        plen[b] = 1 + (b * 3 + (int)seed) % 7; /* 1..7 forced tokens, BOS first */
        tok[(size_t)b * steps] = bos;
        for (int t = 1; t < plen[b]; t++) tok[(size_t)b * steps + t] = (int)((seed * 31 + b * 17 + t * 7) % V);
        smp[b] = sampler_new(V, 1.0f, 1.0f, 0, seed * 1000 + b);
    }
    for (int p = 0; p < steps; p++) {
        for (int b = 0; b < B; b++) cur[b] = tok[(size_t)b * steps + p];
        const float *lg = batch_step(bt, cur, B, p);
        EXPECT(lg != NULL);
        if (!lg) break;
        for (int b = 0; b < B; b++) {
            memcpy(logits + ((size_t)b * steps + p) * V, lg + (size_t)b * V, sizeof(float) * V);
            if (p + 1 < steps && p + 1 >= plen[b]) tok[(size_t)b * steps + p + 1] = sampler_sample(smp[b], lg + (size_t)b * V);
        }
    }
    EXPECT_EQ_INT(batch_cached(bt), steps);
    EXPECT_EQ_INT(batch_rows(bt), B);
    /* each row alone: one token per call, from position 0 */
    for (int b = 0; b < B; b++)
        for (int p = 0; p < steps; p++) {
            const float *ref = transformer_forward(tf, &tok[(size_t)b * steps + p], 1, p, LOGITS_LAST);
            EXPECT(ref != NULL);
            if (ref && !compare(logits + ((size_t)b * steps + p) * V, ref, V, c)) {
                fprintf(stderr, "  row %d of %d, step %d: logits differ\n", b, B, p);
                EXPECT(0);
                b = B; /* one message per case is enough */
                break;
            }
        }
    /* rollback: recompute the last 5 steps after cutting back; the same logits */
    int back = steps - 5;
    for (int p = back; p < steps; p++) {
        for (int b = 0; b < B; b++) cur[b] = tok[(size_t)b * steps + p];
        const float *lg = batch_step(bt, cur, B, p);
        EXPECT(lg != NULL);
        for (int b = 0; lg && b < B; b++)
            EXPECT(memcmp(lg + (size_t)b * V, logits + ((size_t)b * steps + p) * V, sizeof(float) * V) == 0);
    }
    /* row statistics of the last step agree with the host logits (max p
     * within 1e-4 relative: the backend sums exp in float over the whole
     * vocabulary, logits_stats in double) */
    int am[8];
    float mp[8];
    batch_logits_stats(bt, NULL, am, mp, NULL);
    for (int b = 0; b < B && b < 8; b++) {
        const float *row = logits + ((size_t)b * steps + steps - 1) * V;
        float want_p;
        logits_stats(row, V, -1, &want_p, NULL);
        EXPECT_EQ_INT(am[b], argmax_f32(row, V));
        EXPECT_NEAR(mp[b], want_p, 1e-6, 1e-4);
    }
    for (int b = 0; b < B; b++) sampler_destroy(&smp[b]);
    free(smp), free(tok), free(plen), free(cur), free(logits);
}

static void check_model(const char *path, const char *isa, int threads, int max_steps) {
    char err[512];
    model_file_t *m = model_open(path, err, sizeof err);
    if (!m) fprintf(stderr, "%s\n", err);
    EXPECT(m != NULL);
    if (!m) return;
    const model_config_t *c = model_config(m);
    backend_t *be = backend_cpu_new_isa(threads, isa);
    EXPECT(be != NULL);
    int steps = c->seq_len < max_steps ? c->seq_len : max_steps;
    batch_t *bt = batch_new(be, c, model_weights(m), 8, steps, err, sizeof err);
    transformer_t *tf = transformer_new(be, c, model_weights(m), 8, err, sizeof err);
    EXPECT(bt != NULL && tf != NULL);
    if (!bt || !tf) {
        fprintf(stderr, "%s\n", err);
        goto done;
    }
    cmp_t cmp = {0};
    const int Bs[] = {1, 3, 8};
    for (int i = 0; i < 3; i++) check_rows(bt, tf, Bs[i], steps, 11 + i, &cmp);
    check_rows(bt, tf, 3, steps, 11, &cmp); /* again after a larger run: pos 0 restarts */
    fprintf(stderr, "%-44s %-6s threads=%d  %ld logits, %.4f%% bit-identical, worst |err| / tolerance %.3f\n", path,
            be->isa, threads, cmp.n, 100.0 * cmp.exact / (cmp.n ? cmp.n : 1), cmp.max_rel);

    /* invalid requests: refused, nothing changes */
    int toks[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, cached = batch_cached(bt), rows = batch_rows(bt);
    EXPECT(batch_step(bt, toks, 9, 0) == NULL);              /* more rows than allocated */
    EXPECT(batch_step(bt, toks, 0, 0) == NULL);              /* no rows */
    EXPECT(batch_step(bt, toks, rows, cached + 1) == NULL);  /* a gap */
    EXPECT(batch_step(bt, toks, rows + 1, cached) == NULL);  /* another row count mid-run */
    EXPECT(batch_step(bt, toks, rows, steps) == NULL);       /* past max_len */
    toks[1] = c->vocab_size;
    EXPECT(batch_step(bt, toks, rows, cached) == NULL);      /* a token outside the vocabulary */
    EXPECT_EQ_INT(batch_cached(bt), cached);
    EXPECT_EQ_INT(batch_rows(bt), rows);
    EXPECT(batch_new(be, c, model_weights(m), 4, c->seq_len + 1, err, sizeof err) == NULL);
done:
    batch_destroy(&bt);
    EXPECT(bt == NULL);
    transformer_destroy(&tf);
    backend_destroy(&be);
    model_close(&m);
}

int main(void) {
    char a[1024];
    const char *tiny[] = {"tiny_gqa", "tiny_shared", "tiny_mqa"};
    const char *isas[] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "tests/data/%s.bin", tiny[i]);
        for (int k = 0; k < 3; k++)
            if (cpu_isa_supported(isas[k]))
                for (int nt = 1; nt <= 2; nt++) check_model(a, isas[k], nt, STEPS);
    }
    test_model(a, sizeof a, "stories260K/stories260K.bin");
    check_model(a, NULL, 2, STEPS);
    check_model(a, "scalar", 1, STEPS);
    /* Hugging Face models: rotate-half RoPE with llama3 scaling, head_dim
     * apart from dim / n_heads, q/k/v biases, and f16/bf16 weights */
    const char *hf[] = {"llama3_rope_bf16", "mistral_f16", "mistral_bf16", "qwen2_f32", "qwen2_bf16"};
    for (int i = 0; i < 5; i++) {
        snprintf(a, sizeof a, "tests/data/hf/%s", hf[i]);
        check_model(a, NULL, 2, STEPS);
    }
    /* real widths: the matmuls are split over threads in chunks that depend
     * on the row count */
    test_model(a, sizeof a, "stories15M/stories15M.bin");
    check_model(a, NULL, 2, 12);
    return TEST_DONE("test_batch");
}
