/* test_kvcache.c - KV caches of their own (transformer_cache_new /
 * transformer_use_cache), what a worker's sessions stand on.
 *
 * Two sequences run interleaved on one transformer, each on its own cache,
 * with a rollback in one of them and a switch back to the transformer's own
 * cache in between; every logits row must equal, bit for bit, the same
 * sequence run alone on a transformer of its own. Also: a new cache is
 * empty, each cache keeps its length across switches, truncation touches
 * only the cache in use, and freeing the cache in use falls back to the
 * transformer's own. On the tiny random models and stories260K. */
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "model/transformer.h"
#include "tests/test.h"

/* logits of toks[0..n) run one block per step at pos 0.. on a fresh transformer */
static float *alone(backend_t *be, model_file_t *m, const int *toks, int n, int rollback_at, const int *toks2, int n2) {
    char err[256];
    const model_config_t *c = model_config(m);
    transformer_t *tf = transformer_new(be, c, model_weights(m), 8, err, sizeof err);
    float *out = malloc(sizeof(float) * (size_t)(n + n2) * c->vocab_size);
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * c->vocab_size, transformer_forward(tf, toks + i, 1, i, LOGITS_LAST),
               sizeof(float) * c->vocab_size);
    /* then toks2 as one block from rollback_at (a rollback when < n) */
    if (n2) {
        const float *lg = transformer_forward(tf, toks2, n2, rollback_at, LOGITS_ALL);
        memcpy(out + (size_t)n * c->vocab_size, lg, sizeof(float) * (size_t)n2 * c->vocab_size);
    }
    transformer_destroy(&tf);
    return out;
}

static void check(const char *ckpt, int threads) {
    char err[256];
    model_file_t *m = model_open(ckpt, err, sizeof err);
    EXPECT(m != NULL);
    if (!m) return;
    const model_config_t *c = model_config(m);
    int V = c->vocab_size;
    backend_t *be = backend_cpu_new(threads);
    int a[6] = {1, 5 % V, 17 % V, 3, 42 % V, 7}, b[5] = {1, 99 % V, 11, 2, 64 % V};
    int a2[3] = {8 % V, 9 % V, 10 % V}, o[4] = {1, 2, 3, 4};
    float *ra = alone(be, m, a, 6, 3, a2, 3); /* A: 6 steps, then a rollback to 3 and a block of 3 */
    float *rb = alone(be, m, b, 5, 5, NULL, 0);
    float *ro = alone(be, m, o, 4, 4, NULL, 0);
    transformer_t *tf = transformer_new(be, c, model_weights(m), 8, err, sizeof err);
    kv_cache_t *ka = transformer_cache_new(tf, err, sizeof err), *kb = transformer_cache_new(tf, err, sizeof err);
    EXPECT(tf && ka && kb);
    int bad = 0, ia = 0, ib = 0, io = 0;
    /* the own cache first holds two positions of o */
    for (; io < 2; io++) bad += memcmp(transformer_forward(tf, o + io, 1, io, LOGITS_LAST), ro + (size_t)io * V, 4 * V) != 0;
    for (int step = 0; step < 11; step++) {
        if (step % 2 == 0 && ia < 6) {
            transformer_use_cache(tf, ka);
            EXPECT_EQ_INT(transformer_cached(tf), ia);
            bad += memcmp(transformer_forward(tf, a + ia, 1, ia, LOGITS_LAST), ra + (size_t)ia * V, 4 * V) != 0;
            ia++;
        } else if (ib < 5) {
            transformer_use_cache(tf, kb);
            EXPECT_EQ_INT(transformer_cached(tf), ib);
            bad += memcmp(transformer_forward(tf, b + ib, 1, ib, LOGITS_LAST), rb + (size_t)ib * V, 4 * V) != 0;
            ib++;
        }
        if (step == 5) { /* back on the own cache for a step */
            transformer_use_cache(tf, NULL);
            EXPECT_EQ_INT(transformer_cached(tf), io);
            bad += memcmp(transformer_forward(tf, o + io, 1, io, LOGITS_LAST), ro + (size_t)io * V, 4 * V) != 0;
            io++;
        }
    }
    EXPECT_EQ_INT(ia, 6);
    EXPECT_EQ_INT(ib, 5);
    /* A rolls back to 3 and verifies a block; B's cache is untouched by it */
    transformer_use_cache(tf, ka);
    const float *lg = transformer_forward(tf, a2, 3, 3, LOGITS_ALL);
    EXPECT(lg != NULL);
    if (lg) bad += memcmp(lg, ra + (size_t)6 * V, sizeof(float) * 3 * V) != 0;
    EXPECT_EQ_INT(transformer_cached(tf), 6);
    transformer_truncate(tf, 2);
    EXPECT_EQ_INT(transformer_cached(tf), 2);
    transformer_use_cache(tf, kb);
    EXPECT_EQ_INT(transformer_cached(tf), 5);
    EXPECT_EQ_INT(bad, 0);
    /* a new cache is empty; freeing the cache in use goes back to the own one */
    kv_cache_t *kc = transformer_cache_new(tf, err, sizeof err);
    transformer_use_cache(tf, kc);
    EXPECT_EQ_INT(transformer_cached(tf), 0);
    EXPECT(transformer_forward(tf, o, 1, 1, LOGITS_LAST) == NULL); /* position 1 of an empty cache: refused */
    transformer_cache_free(tf, &kc);
    EXPECT(kc == NULL);
    EXPECT_EQ_INT(transformer_cached(tf), io);
    EXPECT(transformer_cache_bytes(tf) == (size_t)2 * c->n_layers * c->seq_len * c->n_kv_heads * c->head_dim * 4);
    transformer_cache_free(tf, &ka);
    transformer_cache_free(tf, &kb);
    transformer_destroy(&tf);
    free(ra), free(rb), free(ro);
    backend_destroy(&be);
    model_close(&m);
    printf("  %s, %d threads: interleaved caches match separate runs\n", ckpt, threads);
}

int main(void) {
    char p[512];
    check("tests/data/tiny_gqa.bin", 1);
    check("tests/data/tiny_shared.bin", 2);
    check(test_model(p, sizeof p, "stories260K/stories260K.bin"), 2);
    return TEST_DONE("test_kvcache");
}
