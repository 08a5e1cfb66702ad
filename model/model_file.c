/* model_file.c - the model_file_t object (model_file.h) that the loaders
 * (llama2c.c, hf.c) fill: closing it, its accessors, and the sizes that
 * follow from a configuration.
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "kernels/hostmem.h"
#include "model/model_file.h"

size_t model_n_params(const model_config_t *c) {
    size_t d = c->dim, q = (size_t)c->n_heads * c->head_dim, kv = (size_t)c->n_kv_heads * c->head_dim;
    size_t layer = 2 * d + d * q + 2 * d * kv + q * d + 3 * d * c->hidden_dim + (c->qkv_bias ? q + 2 * kv : 0);
    return (size_t)c->vocab_size * d * (c->shared_classifier ? 1 : 2) + c->n_layers * layer + d;
}

size_t model_step_bytes(const model_config_t *c) {
    size_t n = model_n_params(c);
    if (!c->shared_classifier) n -= (size_t)(c->vocab_size - 1) * c->dim; /* one embedding row */
    return n * 4;
}

void model_close(model_file_t **pm) {
    if (!pm || !*pm) return;
    model_file_t *m = *pm;
    for (int i = 0; i < m->n_maps; i++)
        if (m->maps[i]) munmap(m->maps[i], m->map_sizes[i]);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->maps);
    free(m->map_sizes);
    free(m->owned);
    free(m->layer_ptrs);
    free(m->path);
    free(m);
    *pm = NULL;
}

void model_limit_context(model_file_t *m, int n) {
    int trained = m->cfg.trained_seq_len;
    m->cfg.seq_len = n > 0 && n < trained ? n : trained;
}

const model_config_t *model_config(const model_file_t *m) { return &m->cfg; }
const model_weights_t *model_weights(const model_file_t *m) { return &m->w; }
const char *model_path(const model_file_t *m) { return m->path; }

/* The k-th weight pointer of m: the embedding and the classifier, the
 * per-layer matrices (N_MATRICES in all), then the norms and biases; NULL for
 * an absent array (bq, bk, bv). */
static const void **weight_slot(model_file_t *m, int k) {
    model_weights_t *w = &m->w;
    int L = m->cfg.n_layers;
    const void **arr[12] = {w->wq, w->wk, w->wv, w->wo, w->w1, w->w2, w->w3,
                            w->rms_att, w->rms_ffn, w->bq, w->bk, w->bv};
    if (k < 2) return k ? &w->wcls : &w->tok_emb;
    k -= 2;
    if (k < 12 * L) return arr[k / L] ? &arr[k / L][k % L] : NULL;
    return &w->rms_final;
}
#define N_MATRICES(m) (2 + 7 * (m)->cfg.n_layers)
#define N_SLOTS(m) (3 + 12 * (m)->cfg.n_layers)

static int in_map(const void *p, const char *base, size_t size) {
    return p && (const char *)p >= base && (const char *)p < base + size;
}

/* Bytes to put before map i's copy so that most of its matrices start on a
 * 64-byte boundary: llama2.c's 28-byte header leaves every tensor 28 bytes
 * past one, and then each 64-byte vector load of a weight row touches two
 * cache lines (on an Intel Xeon a 288 x 288 f32 product from L2 took 4.4 us
 * against 2.5 us aligned, bench/results/intel-blocks.txt). */
static size_t align_shift(model_file_t *m, int i) {
    int count[64] = {0}, best = 0;
    for (int k = 0; k < N_MATRICES(m); k++) {
        const void **s = weight_slot(m, k);
        if (s && in_map(*s, m->maps[i], m->map_sizes[i])) count[(uintptr_t)*s & 63]++;
    }
    for (int r = 1; r < 64; r++)
        if (count[r] > count[best]) best = r;
    return (size_t)(64 - best) & 63;
}

long model_hugepages(model_file_t *m, const char **why) {
    if (why) *why = "";
    if (m->huge_done) return m->huge_bytes;
    if (!hostmem_hugepages_on(why)) return 0;
    m->huge_done = 1;
    long total = 0;
    for (int i = 0; i < m->n_maps; i++) {
        if (!m->maps[i]) continue;
        size_t shift = align_shift(m, i), len;
        long n;
        if (!shift) n = hostmem_to_hugepages(m->maps[i], m->map_sizes[i]);
        else { /* a copy at a new address: every pointer into the map moves with it */
            char *old = m->maps[i], *nb = hostmem_copy_huge(old, m->map_sizes[i], shift, &len, &n);
            if (!nb) n = -1;
            else {
                for (int k = 0; k < N_SLOTS(m); k++) {
                    const void **s = weight_slot(m, k);
                    if (s && in_map(*s, old, m->map_sizes[i])) *s = nb + shift + ((const char *)*s - old);
                }
                munmap(old, m->map_sizes[i]);
                m->maps[i] = nb, m->map_sizes[i] = len;
            }
        }
        if (n < 0) {
            if (why) *why = "copying the weights into huge pages failed (out of memory?); they stay as mapped";
            return m->huge_bytes = -1;
        }
        total += n;
    }
    return m->huge_bytes = total;
}
