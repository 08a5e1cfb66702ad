/* model_file.c - the model_file_t object (model_file.h) that the loaders
 * (llama2c.c, hf.c) fill: closing it, its accessors, and the sizes that
 * follow from a configuration.
 */
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

long model_hugepages(model_file_t *m, const char **why) {
    if (why) *why = "";
    if (m->huge_done) return m->huge_bytes;
    if (!hostmem_hugepages_on(why)) return 0;
    m->huge_done = 1;
    long total = 0;
    for (int i = 0; i < m->n_maps; i++) {
        if (!m->maps[i]) continue;
        long n = hostmem_to_hugepages(m->maps[i], m->map_sizes[i]);
        if (n < 0) {
            if (why) *why = "copying the weights into huge pages failed (out of memory?); they stay as mapped";
            return m->huge_bytes = -1;
        }
        total += n;
    }
    return m->huge_bytes = total;
}
