/* test_head.c - the draft vocabulary (transformer_set_head, FR-Spec): a
 * small model's classifier restricted to some token ids.
 *
 * Checked on the tiny random models of tests/data (shared and separate
 * classifiers), for every instruction set and 1-2 threads, single steps and
 * blocks:
 * - the head's logits equal the full classifier's logits at those ids bit
 *   for bit (the same rows through the same kernel, whatever their place);
 * - transformer_logits widens them to the vocabulary with -inf elsewhere;
 * - transformer_logits_stats gives vocabulary ids (lowest id on ties), the
 *   max probability of the softmax over the head alone (computed here in
 *   double from the full logits), and -log p of a next id (infinite outside
 *   the head);
 * - bad id lists are refused; k = 0 restores the full classifier. */
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "model/transformer.h"
#include "tests/test.h"

static void check(const char *ckpt, const char *isa, int threads) {
    char err[512];
    model_file_t *m = model_open(ckpt, err, sizeof err);
    EXPECT(m != NULL);
    if (!m) return;
    const model_config_t *c = model_config(m);
    int V = c->vocab_size;
    backend_t *be = backend_cpu_new_isa(threads, isa);
    EXPECT(be != NULL);
    if (!be) return model_close(&m);
    transformer_t *tf = transformer_new(be, c, model_weights(m), 16, err, sizeof err);
    EXPECT(tf != NULL);
    /* a head of odd size (not a multiple of the 4-row tiles), ids in no order */
    int K = V / 3 + 3, *ids = malloc(sizeof(int) * K), *in = calloc(V, sizeof(int));
    for (int i = 0; i < K; i++) ids[i] = (int)(((long)i * 7919 + 13) % V); /* 7919 prime: distinct when V < 7919 */
    for (int i = 0; i < K; i++) in[ids[i]] = 1;
    int toks[9] = {1, 5 % V, 17 % V, 3, 42 % V, 7, 99 % V, 11, 2};
    const int T = 9;
    float *full = malloc(sizeof(float) * (size_t)T * V), *one = malloc(sizeof(float) * V);
    const float *lg = transformer_forward(tf, toks, T, 0, LOGITS_ALL);
    EXPECT(lg != NULL);
    memcpy(full, lg, sizeof(float) * (size_t)T * V);
    memcpy(one, lg + (size_t)(T - 1) * V, sizeof(float) * V);

    EXPECT_EQ_INT(transformer_set_head(tf, ids, K, err, sizeof err), 0);
    EXPECT_EQ_INT(transformer_head_size(tf), K);
    /* the block (all rows) and the last step alone, each against the full logits */
    for (int pass = 0; pass < 2; pass++) {
        int rows = pass ? 1 : T;
        lg = pass ? transformer_forward(tf, toks + T - 1, 1, T - 1, LOGITS_LAST)
                  : transformer_forward(tf, toks, T, 0, LOGITS_ALL);
        EXPECT(lg != NULL);
        int bad = 0;
        for (int t = 0; t < rows; t++) {
            const float *ref = pass ? one : full + (size_t)t * V, *row = lg + (size_t)t * V;
            for (int i = 0; i < V; i++)
                if (in[i] ? memcmp(&row[i], &ref[i], sizeof(float)) != 0 : !(isinf(row[i]) && row[i] < 0)) bad++;
        }
        EXPECT_EQ_INT(bad, 0);
        int am[9], next[9];
        float mp[9], nll[9];
        for (int t = 0; t < rows; t++) next[t] = (t * 5 + 1) % V; /* some inside the head, some not */
        transformer_logits_stats(tf, rows, next, am, mp, nll);
        for (int t = 0; t < rows; t++) {
            const float *ref = pass ? one : full + (size_t)t * V;
            int best = -1;
            double mx = -INFINITY, sum = 0;
            for (int i = 0; i < V; i++)
                if (in[i] && ref[i] > mx) mx = ref[i], best = i;
            for (int i = 0; i < V; i++)
                if (in[i]) sum += exp((double)ref[i] - mx);
            EXPECT_EQ_INT(am[t], best);
            EXPECT_NEAR(mp[t], 1 / sum, 1e-6, 1e-5);
            if (in[next[t]])
                EXPECT_NEAR(nll[t], mx + log(sum) - ref[next[t]], 1e-5, 1e-5);
            else
                EXPECT(isinf(nll[t]) && nll[t] > 0);
        }
    }
    /* refused: an id twice, an id outside the vocabulary; the head stays as it was */
    int dup[3] = {4, 9, 4}, out[2] = {0, V};
    EXPECT(transformer_set_head(tf, dup, 3, err, sizeof err) < 0 && strstr(err, "twice"));
    EXPECT(transformer_set_head(tf, out, 2, err, sizeof err) < 0 && strstr(err, "outside"));
    EXPECT(transformer_set_head(tf, ids, V + 1, err, sizeof err) < 0);
    /* back to the full classifier */
    EXPECT_EQ_INT(transformer_set_head(tf, NULL, 0, err, sizeof err), 0);
    EXPECT_EQ_INT(transformer_head_size(tf), 0);
    lg = transformer_forward(tf, toks, T, 0, LOGITS_ALL);
    EXPECT(lg && memcmp(lg, full, sizeof(float) * (size_t)T * V) == 0);
    fprintf(stderr, "%-28s %-6s threads=%d  head of %d/%d ids: ok\n", ckpt, be->isa, threads, K, V);
    free(ids), free(in), free(full), free(one);
    transformer_destroy(&tf);
    backend_destroy(&be);
    model_close(&m);
}

int main(void) {
    const char *models[] = {"tests/data/tiny_shared.bin", "tests/data/tiny_gqa.bin"};
    const char *isas[] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 3; k++)
            if (cpu_isa_supported(isas[k]))
                for (int nt = 1; nt <= 2; nt++) check(models[i], isas[k], nt);
    return TEST_DONE("test_head");
}
