/* llama2c.c - loader for llama2.c checkpoints ("version 0" export).
 *
 * Layout (little-endian): seven int32 (dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size, seq_len), then f32 tensors in this order:
 * token_embedding (V, dim), rms_att (L, dim), wq (L, dim, dim),
 * wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim), rms_ffn (L, dim),
 * w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim),
 * two legacy RoPE tables (seq_len, head_dim/2) each that are skipped, and
 * wcls (V, dim) only when vocab_size is negative (an unshared classifier).
 * head_dim = dim / n_heads, kv_dim = n_kv_heads * head_dim.
 *
 * Every header field is range-checked and the file size must equal exactly
 * what the header implies, so a truncated file, a file of another format or
 * a corrupted header is refused before anything is read past the header.
 * Left out: llama2.c's later "version 1/2" exports (magic "ak42"), refused
 * with a hint.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/hostmem.h"
#include "model/model_file.h"

static model_file_t *fail(model_file_t *m, char *err, size_t errlen, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static model_file_t *fail(model_file_t *m, char *err, size_t errlen, const char *path, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "model '%s': %s", path, msg);
    model_close(&m);
    return NULL;
}

model_file_t *llama2c_open(const char *path, char *err, size_t errlen) {
    model_file_t *m = calloc(1, sizeof(*m));
    if (!m || !(m->path = strdup(path))) return fail(m, err, errlen, path, "out of memory");
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(m, err, errlen, path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(m, err, errlen, path, "not a regular file");
    }
    size_t size = (size_t)st.st_size;
    if (size < 28) {
        close(fd);
        return fail(m, err, errlen, path, "only %zu bytes: too short for a llama2.c checkpoint (28-byte header)", size);
    }
    m->maps = calloc(1, sizeof(void *));
    m->map_sizes = calloc(1, sizeof(size_t));
    if (!m->maps || !m->map_sizes) {
        close(fd);
        return fail(m, err, errlen, path, "out of memory");
    }
    /* MAP_POPULATE: the pages are faulted in here, at load, not one 4 KiB
     * fault at a time during the first forward pass (on a 438 MB model that
     * first pass otherwise took several steps' time) */
    void *map = hostmem_map_file(fd, size); /* 2 MiB aligned: see model_hugepages */
    close(fd);
    if (map == MAP_FAILED) return fail(m, err, errlen, path, "cannot map: %s", strerror(errno));
    m->maps[0] = map, m->map_sizes[0] = size, m->n_maps = 1;
    int32_t h[7];
    memcpy(h, map, sizeof h);
    if (h[0] == 0x616b3432)
        return fail(m, err, errlen, path, "llama2.c version-1/2 export (magic \"ak42\") is not supported; "
                    "export with legacy_export (version 0)");
    const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    const int32_t lim[7] = {1 << 16, 1 << 18, 1024, 1024, 1024, 1 << 22, 1 << 22};
    for (int i = 0; i < 7; i++) {
        int32_t v = i == 5 && h[i] < 0 && h[i] != INT32_MIN ? -h[i] : h[i];
        if (v <= 0 || v > lim[i])
            return fail(m, err, errlen, path, "header field %s = %d is out of range (1..%d): not a llama2.c checkpoint?",
                        names[i], h[i], lim[i]);
    }
    model_config_t *c = &m->cfg;
    *c = (model_config_t){.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3],
                          .n_kv_heads = h[4], .vocab_size = h[5] < 0 ? -h[5] : h[5], .seq_len = h[6],
                          .shared_classifier = h[5] > 0, .norm_eps = 1e-5f, .rope_theta = 10000.0f,
                          .rope_style = ROPE_INTERLEAVED, .bos_id = 1, .eos_id = 2,
                          .n_eos = 1, .eos_ids = {2}, .trained_seq_len = h[6]};
    if (c->dim % c->n_heads)
        return fail(m, err, errlen, path, "dim %d is not a multiple of n_heads %d", c->dim, c->n_heads);
    c->head_dim = c->dim / c->n_heads;
    if (c->head_dim % 2)
        return fail(m, err, errlen, path, "head size %d (dim / n_heads) is odd; RoPE needs pairs", c->head_dim);
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
        return fail(m, err, errlen, path, "n_heads %d is not a multiple of n_kv_heads %d", c->n_heads, c->n_kv_heads);
    if (c->vocab_size < 3)
        return fail(m, err, errlen, path, "vocab_size %d is too small (BOS and EOS are ids 1 and 2)", c->vocab_size);

    /* expected size: header + parameters + the two legacy RoPE tables */
    size_t rope_tables = (size_t)c->seq_len * c->head_dim; /* 2 x (seq_len, head_dim/2) */
    size_t want = 28 + (model_n_params(c) + rope_tables) * 4;
    if (size != want)
        return fail(m, err, errlen, path,
                    "%zu bytes, but its header (dim %d, hidden %d, layers %d, heads %d, kv heads %d, vocab %d%s, "
                    "seq_len %d) implies %zu: the file is %s",
                    size, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
                    c->shared_classifier ? "" : " unshared", c->seq_len, want,
                    size < want ? "truncated or the header is wrong" : "longer than expected (wrong header?)");

    int L = c->n_layers;
    m->layer_ptrs = calloc((size_t)L * 9, sizeof(void *));
    if (!m->layer_ptrs) return fail(m, err, errlen, path, "out of memory");
    model_weights_t *w = &m->w;
    w->dtype = DTYPE_F32;
    const void **lp = m->layer_ptrs;
    w->rms_att = lp, w->wq = lp + L, w->wk = lp + 2 * L, w->wv = lp + 3 * L, w->wo = lp + 4 * L;
    w->rms_ffn = lp + 5 * L, w->w1 = lp + 6 * L, w->w2 = lp + 7 * L, w->w3 = lp + 8 * L;

    const float *p = (const float *)((const char *)map + 28);
    size_t d = c->dim, q = (size_t)c->n_heads * c->head_dim, kv = (size_t)c->n_kv_heads * c->head_dim,
           hid = c->hidden_dim;
    w->tok_emb = p, p += (size_t)c->vocab_size * d;
    /* each per-layer block is stored as one (L, ...) array */
#define LAYERS(field, per)                                     \
    for (int l = 0; l < L; l++) w->field[l] = p + (size_t)l * (per); \
    p += (size_t)L * (per);
    LAYERS(rms_att, d)
    LAYERS(wq, q * d)
    LAYERS(wk, kv * d)
    LAYERS(wv, kv * d)
    LAYERS(wo, d * q)
    LAYERS(rms_ffn, d)
    LAYERS(w1, hid * d)
    LAYERS(w2, d * hid)
    LAYERS(w3, hid * d)
#undef LAYERS
    w->rms_final = p, p += d;
    p += rope_tables;
    w->wcls = c->shared_classifier ? w->tok_emb : (const void *)p;
    return m;
}
