/* test_model.c - the forward pass against golden logits from the independent
 * PyTorch reference (tools/ref/llama2c_ref.py), and the block/step and
 * truncation identities the BiLD policy relies on.
 *
 * Tolerances: golden logits within max abs error 1e-4 (the bar; the
 * reference is float32 torch, and a float64 run of it differs from the
 * float32 goldens by 2.2e-5 at most). Block vs single steps and truncate +
 * recompute: 1e-5 (the same kernels and summation order per row, so in
 * practice the results are identical). */
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "model/transformer.h"
#include "tests/test.h"

typedef struct {
    int T, V;
    int *tokens;
    float *logits;
} golden_t;

static int golden_load(const char *path, golden_t *g) {
    FILE *f = fopen(path, "rb");
    char magic[4];
    int32_t hdr[3];
    if (!f) return fprintf(stderr, "cannot open %s\n", path), 0;
    int ok = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "BLDG", 4) && fread(hdr, 4, 3, f) == 3 && hdr[0] == 1;
    if (ok) {
        g->T = hdr[1], g->V = hdr[2];
        g->tokens = malloc(sizeof(int) * g->T);
        g->logits = malloc(sizeof(float) * (size_t)g->T * g->V);
        ok = fread(g->tokens, 4, g->T, f) == (size_t)g->T &&
             fread(g->logits, 4, (size_t)g->T * g->V, f) == (size_t)g->T * g->V;
    }
    fclose(f);
    return ok;
}

static double max_err(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= m)) m = e; /* NaN propagates as failure */
    }
    return m;
}

static void check_model(const char *ckpt, const char *gold, const char *isa, int threads) {
    char err[512];
    golden_t g;
    if (!golden_load(gold, &g)) {
        fprintf(stderr, "bad golden %s\n", gold);
        EXPECT(0);
        return;
    }
    model_file_t *m = model_open(ckpt, err, sizeof err);
    if (!m) fprintf(stderr, "%s\n", err);
    EXPECT(m != NULL);
    if (!m) return;
    EXPECT_EQ_INT(model_config(m)->vocab_size, g.V);
    backend_t *be = backend_cpu_new_isa(threads, isa);
    transformer_t *tf = transformer_new(be, model_config(m), model_weights(m), 32, err, sizeof err);
    EXPECT(tf != NULL);
    int T = g.T, V = g.V;
    size_t n = (size_t)T * V;
    float *block = malloc(sizeof(float) * n), *steps = malloc(sizeof(float) * n);

    const float *lg = transformer_forward(tf, g.tokens, T, 0, LOGITS_ALL);
    EXPECT(lg != NULL);
    memcpy(block, lg, sizeof(float) * n);
    double e_gold = max_err(block, g.logits, n);
    EXPECT(e_gold <= 1e-4);
    EXPECT_EQ_INT(transformer_cached(tf), T);

    for (int t = 0; t < T; t++) { /* the same sequence one token at a time */
        lg = transformer_forward(tf, &g.tokens[t], 1, t, LOGITS_LAST);
        EXPECT(lg != NULL);
        memcpy(steps + (size_t)t * V, lg, sizeof(float) * V);
    }
    double e_steps = max_err(steps, block, n), e_steps_gold = max_err(steps, g.logits, n);
    EXPECT(e_steps <= 1e-5);
    EXPECT(e_steps_gold <= 1e-4);

    /* rollback: cut to L, feed other tokens past L, cut to L again, recompute:
     * must equal never having gone past L */
    int L = 13, junk[8] = {5, 6, 7, 8, 9, 10, 11, 12};
    transformer_truncate(tf, L);
    EXPECT_EQ_INT(transformer_cached(tf), L);
    EXPECT(transformer_forward(tf, junk, 8, L, LOGITS_ALL) != NULL);
    transformer_truncate(tf, L);
    lg = transformer_forward(tf, g.tokens + L, T - L, L, LOGITS_ALL);
    double e_trunc = lg ? max_err(lg, block + (size_t)L * V, (size_t)(T - L) * V) : 1e9;
    EXPECT(e_trunc <= 1e-5);
    /* running at pos < cached truncates implicitly */
    EXPECT(transformer_forward(tf, junk, 3, 20, LOGITS_ALL) != NULL);
    lg = transformer_forward(tf, g.tokens + 20, T - 20, 20, LOGITS_ALL);
    double e_trunc2 = lg ? max_err(lg, block + (size_t)20 * V, (size_t)(T - 20) * V) : 1e9;
    EXPECT(e_trunc2 <= 1e-5);
    /* LOGITS_LAST of a block equals the last row of LOGITS_ALL */
    lg = transformer_forward(tf, g.tokens, T, 0, LOGITS_LAST);
    EXPECT(lg && max_err(lg, block + (size_t)(T - 1) * V, V) <= 1e-5);

    fprintf(stderr, "%-40s %-6s threads=%d  max|err| vs torch: block %.2e steps %.2e; block vs steps %.2e; "
            "truncate %.2e %.2e\n", ckpt, be->isa, threads, e_gold, e_steps_gold, e_steps, e_trunc, e_trunc2);

    /* invalid requests are refused and leave the cache as it was */
    int cached = transformer_cached(tf), bad = V;
    EXPECT(transformer_forward(tf, g.tokens, 1, cached + 1, LOGITS_LAST) == NULL); /* gap */
    EXPECT(transformer_forward(tf, &bad, 1, cached, LOGITS_LAST) == NULL);          /* token id */
    EXPECT(transformer_forward(tf, g.tokens, 0, 0, LOGITS_LAST) == NULL);           /* T = 0 */
    EXPECT(transformer_forward(tf, g.tokens, 1, model_config(m)->seq_len, LOGITS_LAST) == NULL);
    EXPECT_EQ_INT(transformer_cached(tf), cached);

    free(block), free(steps), free(g.tokens), free(g.logits);
    transformer_destroy(&tf);
    EXPECT(tf == NULL);
    backend_destroy(&be);
    model_close(&m);
}

int main(void) {
    char a[1024], b[1024];
    const char *tiny[] = {"tiny_gqa", "tiny_shared", "tiny_mqa"};
    const char *isas[] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "tests/data/%s.bin", tiny[i]);
        snprintf(b, sizeof b, "tests/data/%s.logits", tiny[i]);
        for (int k = 0; k < 3; k++)
            if (cpu_isa_supported(isas[k]))
                for (int nt = 1; nt <= 2; nt++) check_model(a, b, isas[k], nt);
    }
    test_model(a, sizeof a, "stories260K/stories260K.bin");
    check_model(a, "tests/data/stories260K.logits", NULL, 2);
    check_model(a, "tests/data/stories260K.logits", "scalar", 1);
    test_model(a, sizeof a, "stories15M/stories15M.bin");
    check_model(a, "tests/data/stories15M.logits", NULL, 2);
    return TEST_DONE("test_model");
}
