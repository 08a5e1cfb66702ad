/* test_kvcache.c - KV caches of their own (transformer_cache_new /
 * transformer_use_cache), what a worker's sessions stand on.
 *
 * Two sequences run interleaved on one transformer, each on its own cache,
 * with a rollback in one of them and a switch back to the transformer's own
 * cache in between; every logits row must equal, bit for bit, the same
 * sequence run alone on a transformer of its own. Also: a new cache is
 * empty, each cache keeps its length across switches, truncation touches
 * only the cache in use, and freeing the cache in use falls back to the
 * transformer's own. On the tiny random models and stories260K.
 *
 * transformer_run_multi: three sequences (two caches of their own and the
 * transformer's own) at different positions and block lengths in one pass;
 * every logits row, the argmax and -log p of transformer_logits_stats_at,
 * and each cache's contents afterwards (checked by a following step) must
 * equal the sequences run one at a time, bit for bit; invalid requests
 * (past a cache's length, the same cache twice, too many rows) change
 * nothing. Every instruction set, 1 and 2 threads, including a model with
 * q/k/v biases (Qwen2). */
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

static void check_multi(const char *path, const char *isa, int threads) {
    char err[256];
    model_file_t *m = model_open(path, err, sizeof err);
    EXPECT(m != NULL);
    if (!m) return;
    const model_config_t *c = model_config(m);
    int V = c->vocab_size;
    backend_t *be = backend_cpu_new_isa(threads, isa);
    /* prefixes of 5, 3 and 0 positions, then blocks of 4, 1 and 6 */
    int pre[3][5] = {{1, 3 % V, 5 % V, 7 % V, 9 % V}, {1, 4 % V, 6 % V}, {0}};
    int npre[3] = {5, 3, 0}, blk[3][6] = {{11 % V, 12 % V, 13 % V, 14 % V}, {21 % V}, {1, 31 % V, 32 % V, 33 % V, 34 % V, 35 % V}};
    int T[3] = {4, 1, 6}, pos[3] = {5, 3, 0}, next_tok[3] = {40 % V, 41 % V, 42 % V};
    /* one at a time: each on a transformer of its own */
    float *want = malloc(sizeof(float) * 11 * V), *after = malloc(sizeof(float) * 3 * V);
    int wargmax[11];
    float wnll[11];
    for (int i = 0, r = 0; i < 3; r += T[i], i++) {
        transformer_t *one = transformer_new(be, c, model_weights(m), 8, err, sizeof err);
        if (npre[i]) transformer_forward(one, pre[i], npre[i], 0, LOGITS_LAST);
        memcpy(want + (size_t)r * V, transformer_forward(one, blk[i], T[i], pos[i], LOGITS_ALL), sizeof(float) * T[i] * V);
        int nx[6];
        for (int t = 0; t < T[i]; t++) nx[t] = t + 1 < T[i] ? blk[i][t + 1] : -1;
        transformer_logits_stats(one, T[i], nx, wargmax + r, NULL, wnll + r);
        memcpy(after + (size_t)i * V, transformer_forward(one, &next_tok[i], 1, pos[i] + T[i], LOGITS_LAST), sizeof(float) * V);
        transformer_destroy(&one);
    }
    transformer_t *tf = transformer_new(be, c, model_weights(m), 16, err, sizeof err);
    kv_cache_t *kv[3] = {transformer_cache_new(tf, err, sizeof err), transformer_cache_new(tf, err, sizeof err), NULL};
    for (int i = 0; i < 3; i++) {
        transformer_use_cache(tf, kv[i]);
        if (npre[i]) transformer_forward(tf, pre[i], npre[i], 0, LOGITS_LAST);
    }
    transformer_use_cache(tf, kv[1]);
    const int *toks[3] = {blk[0], blk[1], blk[2]};
    /* refusals first: nothing may change */
    int badpos[3] = {6, 3, 0}, T9[3] = {4, 1, 12};
    kv_cache_t *twice[3] = {kv[0], kv[0], NULL};
    int blk12[12] = {0};
    const int *toks12[3] = {blk[0], blk[1], blk12};
    EXPECT(transformer_run_multi(tf, 3, kv, toks, T, badpos, NULL) == -1);     /* past sequence 0's 5 positions */
    EXPECT(transformer_run_multi(tf, 3, twice, toks, T, pos, NULL) == -1);     /* one cache twice */
    EXPECT(transformer_run_multi(tf, 3, kv, toks12, T9, pos, NULL) == -1);     /* 17 rows > max_block 16 */
    EXPECT_EQ_INT(transformer_cached(tf), 3);                            /* kv[1] still in use, unchanged */
        int nbad[3] = {4, 0, 6}, nbig[3] = {4, 2, 6};
    EXPECT(transformer_run_multi(tf, 3, kv, toks, T, pos, nbad) == -1);  /* no row kept */
    EXPECT(transformer_run_multi(tf, 3, kv, toks, T, pos, nbig) == -1);  /* more rows kept than run */
    EXPECT(transformer_run_multi(tf, 3, kv, toks, T, pos, NULL) == 0);
    const float *lg = transformer_logits(tf);
    int bad = memcmp(lg, want, sizeof(float) * 11 * V) != 0;
    for (int i = 0, r = 0; i < 3; r += T[i], i++) {
        int nx[6], am[6];
        float nl[6];
        for (int t = 0; t < T[i]; t++) nx[t] = t + 1 < T[i] ? blk[i][t + 1] : -1;
        transformer_logits_stats_at(tf, r, T[i], nx, am, NULL, nl);
        bad += memcmp(am, wargmax + r, sizeof(int) * T[i]) != 0 || memcmp(nl, wnll + r, sizeof(float) * T[i]) != 0;
    }
    /* the caches hold the blocks: the next step of each matches */
    for (int i = 0; i < 3; i++) {
        transformer_use_cache(tf, kv[i]);
        EXPECT_EQ_INT(transformer_cached(tf), pos[i] + T[i]);
        bad += memcmp(transformer_forward(tf, &next_tok[i], 1, pos[i] + T[i], LOGITS_LAST), after + (size_t)i * V,
                      sizeof(float) * V) != 0;
    }
    EXPECT_EQ_INT(bad, 0);
    transformer_cache_free(tf, &kv[0]);
    transformer_cache_free(tf, &kv[1]);
    transformer_destroy(&tf);
    /* only the last rows' logits kept (n_out): sequence 0's prefix runs in the same pass as its block
     * (9 rows, its 4 last kept), sequence 1's block after its cached prefix (1 of 1), sequence 2's
     * block (the last 2 of 6); the kept rows equal the separate runs' */
    tf = transformer_new(be, c, model_weights(m), 16, err, sizeof err);
    kv[0] = transformer_cache_new(tf, err, sizeof err), kv[1] = transformer_cache_new(tf, err, sizeof err);
    transformer_use_cache(tf, kv[1]);
    transformer_forward(tf, pre[1], npre[1], 0, LOGITS_LAST);
    int s0[9], T2[3] = {9, 1, 6}, pos2[3] = {0, 3, 0}, keep[3] = {4, 1, 2};
    memcpy(s0, pre[0], sizeof(int) * 5), memcpy(s0 + 5, blk[0], sizeof(int) * 4);
    const int *toks2[3] = {s0, blk[1], blk[2]};
    bad = transformer_run_multi(tf, 3, kv, toks2, T2, pos2, keep) != 0;
    lg = transformer_logits(tf);
    bad += memcmp(lg, want, sizeof(float) * 5 * V) != 0;                          /* rows 0-3, then 4 */
    bad += memcmp(lg + (size_t)5 * V, want + (size_t)9 * V, sizeof(float) * 2 * V) != 0; /* rows 9-10 */
    int nx2[2] = {blk[2][5], -1}, am2[2];
    float nl2[2];
    transformer_logits_stats_at(tf, 5, 2, nx2, am2, NULL, nl2);
    bad += am2[0] != wargmax[9] || am2[1] != wargmax[10] || memcmp(nl2, wnll + 9, sizeof(float) * 2) != 0;
    for (int i = 0; i < 3; i++) {
        transformer_use_cache(tf, kv[i]);
        bad += transformer_cached(tf) != pos2[i] + T2[i];
        bad += memcmp(transformer_forward(tf, &next_tok[i], 1, pos[i] + T[i], LOGITS_LAST), after + (size_t)i * V,
                      sizeof(float) * V) != 0;
    }
    EXPECT_EQ_INT(bad, 0);
    transformer_cache_free(tf, &kv[0]);
    transformer_cache_free(tf, &kv[1]);
    transformer_destroy(&tf);
    free(want), free(after);
    backend_destroy(&be);
    model_close(&m);
    printf("  %s, %s, %d threads: three sequences in one pass match separate runs\n", path, isa, threads);
}

int main(void) {
    char p[512];
    const char *isas[] = {"scalar", "avx2", "avx512"};
    const char *multi[] = {"tests/data/tiny_gqa.bin", "tests/data/tiny_shared.bin", "tests/data/hf/qwen2_f32",
                           "tests/data/hf/mistral_bf16"};
    for (int k = 0; k < 3; k++)
        if (cpu_isa_supported(isas[k]))
            for (int i = 0; i < 4; i++)
                for (int nt = 1; nt <= 2; nt++) check_multi(multi[i], isas[k], nt);
    check_multi(test_model(p, sizeof p, "stories260K/stories260K.bin"), "avx2", 2);
    check("tests/data/tiny_gqa.bin", 1);
    check("tests/data/tiny_shared.bin", 2);
    check(test_model(p, sizeof p, "stories260K/stories260K.bin"), 2);
    return TEST_DONE("test_kvcache");
}
