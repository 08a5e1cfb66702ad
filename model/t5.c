/* t5.c - T5 / mT5 encoder-decoders (see t5.h).
 *
 * Mirrors transformers' models/t5 (modeling_t5.py):
 * - T5LayerNorm: x / sqrt(mean(x^2) + eps) * w, no mean, no bias;
 * - attention without the 1/sqrt(d_kv) scale; a relative position bias
 *   (relative_attention_bias: [buckets, heads]) in layer 0 of each stack,
 *   shared by all its layers, bidirectional in the encoder, causal in the
 *   decoder; cross-attention over the encoder output has none;
 * - feed-forward "relu" (wi, wo) or "gated-gelu" (gelu_new(wi_0 h) * wi_1 h,
 *   then wo), pre-norm residual blocks, final layer norms;
 * - output: tied, (h * d_model^-0.5) shared^T; untied, lm_head.
 * Tensor names: shared.weight, {encoder,decoder}.block.<i>.layer.<j>...,
 * {encoder,decoder}.final_layer_norm.weight, lm_head.weight (untied); the
 * optional copies encoder/decoder.embed_tokens.weight (and a tied
 * lm_head.weight) must equal shared.weight.
 *
 * Weights widened to f32; the matrix products run on a CPU backend's
 * kernels (threads, SIMD), norms and attention in plain C. Every operator
 * works row by row, so a row of a decoder block is computed exactly as a
 * single step would compute it.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/half.h"
#include "model/config_json.h"
#include "model/safetensors.h"
#include "model/st_dir.h"
#include "model/t5.h"

#define T5_MAX_CONFIG (1u << 20)

/* A weight matrix in the file's dtype: f32, or f16 / bf16 kept half (the
 * kernels widen them in registers, so a decoder step reads half the bytes). */
typedef struct {
    const void *p;
    dtype_t dt;
} mat_t;

typedef struct {
    mat_t q, k, v, o; /* (inner, d) each; o: (d, inner) */
} attn_w_t;

typedef struct {
    float *ln_sa, *ln_ca, *ln_ff; /* (d); ln_ca decoder only */
    attn_w_t sa, ca;              /* ca decoder only */
    mat_t wi, wi1, wo;            /* relu: wi (ff, d); gated: wi = wi_0, wi1 = wi_1; wo (d, ff) */
} layer_w_t;

struct t5_model {
    t5_config_t c;
    mat_t shared, lm_head;        /* (vocab, d); lm_head = shared when tied */
    float *enc_bias, *dec_bias;   /* (buckets, heads) */
    float *enc_ln, *dec_ln;       /* final norms (d) */
    layer_w_t *enc, *dec;
    void **owned;
    int n_owned;
};

struct t5_state {
    const t5_model_t *m;
    backend_t *be; /* a CPU backend: its kernels run the matrix products */
    int max_src, max_dec, n_src, pos;
    float *ck, *cv; /* cross keys/values: (dec layers, max_src, inner) */
    float *sk, *sv; /* self cache: (dec layers, max_dec, inner) */
    float *enc;     /* encoder output (max_src, d) */
    /* scratch, up to max(max_src, max_dec) rows: x (d), h (max(d, inner)),
     * q, k, v, att (inner), ff, ff1 (d_ff), sc (attention scores) */
    float *x, *h, *q, *k, *v, *att, *ff, *ff1, *sc;
    int *bk; /* per key: its relative position bias row */
};

/* ---- loading ------------------------------------------------------------- */

typedef struct {
    const char *dir;
    char *err;
    size_t errlen;
    int failed;
    st_dir_t sd; /* model.safetensors or its shards */
    t5_model_t *m;
    uint64_t dummy; /* nonzero: no weights file, random tensors from this seed (t5_open_dummy) */
    dtype_t dummy_dt; /* and the random matrices' dtype */
} loader_t;

static void *fail(loader_t *L, const char *file, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void *fail(loader_t *L, const char *file, const char *fmt, ...) {
    if (L->failed) return NULL;
    va_list ap;
    va_start(ap, fmt);
    cfgjson_vfail(L->err, L->errlen, L->dir, file, fmt, ap);
    va_end(ap);
    L->failed = 1;
    return NULL;
}

static int cfg_int(loader_t *L, const cJSON *o, const char *key, int required, int def, int lo, int hi, int *out) {
    char why[200];
    if (cfgjson_int(o, key, required, def, lo, hi, out, why, sizeof why)) return 1;
    return fail(L, "config.json", "%s", why), 0;
}

static int parse_config(loader_t *L, t5_config_t *c) {
    size_t n = 0;
    int missing;
    char why[200];
    char *text = cfgjson_read(L->dir, "config.json", T5_MAX_CONFIG, &n, &missing, why, sizeof why);
    if (!text) return fail(L, "config.json", "%s", why), 0;
    cJSON *o = cJSON_ParseWithLength(text, n);
    free(text);
    if (!o || !cJSON_IsObject(o)) return cJSON_Delete(o), fail(L, "config.json", "not a JSON object"), 0;
    const cJSON *arch = cfgjson_field(o, "architectures"), *a0 = cJSON_IsArray(arch) ? arch->child : NULL;
    if (!a0 || !cJSON_IsString(a0) || (strcmp(a0->valuestring, "T5ForConditionalGeneration") &&
                                       strcmp(a0->valuestring, "MT5ForConditionalGeneration"))) {
        cJSON_Delete(o);
        return fail(L, "config.json", "architectures: want [\"T5ForConditionalGeneration\"] or "
                    "[\"MT5ForConditionalGeneration\"]"), 0;
    }
    snprintf(c->arch, sizeof c->arch, "%s", a0->valuestring);
    int ok = cfg_int(L, o, "vocab_size", 1, 0, 2, 1 << 20, &c->vocab_size) &&
             cfg_int(L, o, "d_model", 1, 0, 2, 1 << 16, &c->d_model) &&
             cfg_int(L, o, "d_kv", 1, 0, 1, 1 << 12, &c->d_kv) &&
             cfg_int(L, o, "num_heads", 1, 0, 1, 1 << 10, &c->n_heads) &&
             cfg_int(L, o, "d_ff", 1, 0, 1, 1 << 18, &c->d_ff) &&
             cfg_int(L, o, "num_layers", 1, 0, 1, 1 << 10, &c->n_enc_layers) &&
             cfg_int(L, o, "num_decoder_layers", 0, c->n_enc_layers, 1, 1 << 10, &c->n_dec_layers) &&
             cfg_int(L, o, "relative_attention_num_buckets", 0, 32, 2, 1 << 12, &c->n_buckets) &&
             cfg_int(L, o, "relative_attention_max_distance", 0, 128, 1, 1 << 20, &c->max_distance) &&
             cfg_int(L, o, "pad_token_id", 0, 0, 0, c->vocab_size - 1, &c->pad) &&
             cfg_int(L, o, "eos_token_id", 0, 1, 0, c->vocab_size - 1, &c->eos) &&
             cfg_int(L, o, "decoder_start_token_id", 0, c->pad, 0, c->vocab_size - 1, &c->decoder_start);
    if (ok && c->n_buckets / 2 / 2 < 1)
        ok = !!fail(L, "config.json", "relative_attention_num_buckets %d is too small (at least 4)", c->n_buckets);
    if (ok && (long)c->n_heads * c->d_kv > 1 << 18)
        ok = !!fail(L, "config.json", "num_heads x d_kv is larger than 262144");
    const cJSON *eps = cfgjson_field(o, "layer_norm_epsilon");
    c->eps = 1e-6f;
    if (ok && eps) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0 && eps->valuedouble < 1))
            ok = !!fail(L, "config.json", "layer_norm_epsilon is not a number in (0, 1)");
        else c->eps = (float)eps->valuedouble;
    }
    /* transformers' defaults: T5Config relu and tied, MT5Config gated-gelu and untied */
    const int mt5 = !strcmp(c->arch, "MT5ForConditionalGeneration");
    const cJSON *ffp = cfgjson_field(o, "feed_forward_proj");
    const char *ff = !ffp ? (mt5 ? "gated-gelu" : "relu") : cJSON_IsString(ffp) ? ffp->valuestring : "";
    if (ok && !strcmp(ff, "relu")) c->gated = 0;
    else if (ok && !strcmp(ff, "gated-gelu")) c->gated = 1;
    else if (ok) ok = !!fail(L, "config.json", "feed_forward_proj \"%.40s\" is not supported (\"relu\" or \"gated-gelu\")", ff);
    /* dense_act_fn overrides the activation feed_forward_proj implies: only the same one is accepted */
    const cJSON *act = cfgjson_field(o, "dense_act_fn");
    if (ok && act && (!cJSON_IsString(act) || strcmp(act->valuestring, c->gated ? "gelu_new" : "relu")))
        ok = !!fail(L, "config.json", "dense_act_fn is not \"%s\", the activation of feed_forward_proj \"%s\"",
                    c->gated ? "gelu_new" : "relu", ff);
    const cJSON *tie = cfgjson_field(o, "tie_word_embeddings");
    c->tied = !mt5;
    if (ok && tie) {
        if (!cJSON_IsBool(tie)) ok = !!fail(L, "config.json", "tie_word_embeddings is not true or false");
        else c->tied = cJSON_IsTrue(tie);
    }
    const cJSON *ln = cfgjson_field(o, "is_encoder_decoder");
    if (ok && ln && !cJSON_IsTrue(ln)) ok = !!fail(L, "config.json", "is_encoder_decoder is false: not supported");
    cJSON_Delete(o);
    return ok;
}

/* Keeps p (allocated by the loader) with the model, which frees it. */
static void *own(loader_t *L, void *p, const char *name) {
    t5_model_t *m = L->m;
    void **o = realloc(m->owned, sizeof *o * (size_t)(m->n_owned + 1));
    if (o) m->owned = o;
    if (!p || !o) return free(p), fail(L, "model.safetensors", "out of memory for '%.120s'", name);
    return m->owned[m->n_owned++] = p;
}

/* --dummy-weights: random values, the same for the same seed and name
 * (xorshift64* from seed ^ FNV-1a(name)): matrices uniform in
 * +-1/sqrt(cols) in the dummy dtype, norm weights 1. Only for speed at
 * real shapes. cols 0: a vector (f32). */
static void *random_tensor(loader_t *L, const char *name, int64_t rows, int64_t cols) {
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    dtype_t dt = cols ? L->dummy_dt : DTYPE_F32;
    void *p = own(L, malloc(dtype_size(dt) * n), name);
    float buf[1024];
    if (!p) return NULL;
    uint64_t x = 14695981039346656037ull;
    for (const char *c = name; *c; c++) x = (x ^ (unsigned char)*c) * 1099511628211ull;
    x ^= L->dummy;
    const float scale = cols ? 2.0f / sqrtf((float)cols) : 0;
    for (size_t i = 0; i < n; i += 1024) {
        size_t k = n - i < 1024 ? n - i : 1024;
        for (size_t j = 0; j < k; j++) {
            x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
            buf[j] = cols ? ((float)((x * 2685821657736338717ull) >> 40) / 16777216.0f - 0.5f) * scale : 1.0f;
        }
        f32_to_dtype((char *)p + i * dtype_size(dt), buf, dt, k);
    }
    return p;
}

/* Tensor name, checked: a dtype the engine reads and the shape the config
 * gives (cols 0: a vector of rows). NULL if it is missing (the loader
 * fails unless optional) or wrong (it fails). */
static const st_tensor_t *find(loader_t *L, const char *name, int64_t rows, int64_t cols, int optional) {
    if (L->failed) return NULL;
    int fi;
    const st_tensor_t *t = st_dir_find(&L->sd, name, &fi);
    if (!t && L->sd.why[0]) return fail(L, L->sd.fail_file, "%s", L->sd.why);
    if (!t)
        return optional ? NULL : fail(L, L->sd.index_name ? L->sd.index_name : "model.safetensors",
                                      "tensor '%.120s' is missing", name);
    const char *file = L->sd.name[fi];
    if (strcmp(t->dtype, "F32") && strcmp(t->dtype, "BF16") && strcmp(t->dtype, "F16"))
        return fail(L, file, "tensor '%.120s' has dtype %s (F32, F16 or BF16)", name, t->dtype);
    int ok = cols ? t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols : t->ndim == 1 && t->shape[0] == rows;
    if (!ok)
        return fail(L, file, "tensor '%.120s' is not (%lld%s%lld%s): the config says so", name,
                    (long long)rows, cols ? ", " : "", (long long)cols, cols ? "" : ",");
    return t;
}

/* A matrix (rows, cols) in its file dtype, copied out of the mapping
 * (cols 0: a vector; random f32 with --dummy-weights). */
static mat_t matrix(loader_t *L, const char *name, int64_t rows, int64_t cols, int optional) {
    if (L->dummy)
        return (mat_t){L->failed || optional ? NULL : random_tensor(L, name, rows, cols),
                       cols ? L->dummy_dt : DTYPE_F32};
    const st_tensor_t *t = find(L, name, rows, cols, optional);
    void *p = t ? own(L, malloc(t->nbytes), name) : NULL;
    if (p) memcpy(p, t->data, t->nbytes);
    return (mat_t){p, t ? st_dir_dtype(t) : DTYPE_F32};
}

/* A vector (norm weights, position biases) or a small matrix as f32, owned
 * by the model. */
static float *tensor(loader_t *L, const char *name, int64_t rows, int64_t cols, int optional) {
    mat_t r = matrix(L, name, rows, cols, optional);
    if (!r.p || r.dt == DTYPE_F32) return (float *)r.p;
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    float *p = own(L, malloc(sizeof(float) * n), name);
    if (p) dtype_to_f32(p, r.p, r.dt, n);
    return p;
}

static void load_attn(loader_t *L, attn_w_t *a, const char *pre, int d, int inner) {
    char n[200];
    snprintf(n, sizeof n, "%s.q.weight", pre), a->q = matrix(L, n, inner, d, 0);
    snprintf(n, sizeof n, "%s.k.weight", pre), a->k = matrix(L, n, inner, d, 0);
    snprintf(n, sizeof n, "%s.v.weight", pre), a->v = matrix(L, n, inner, d, 0);
    snprintf(n, sizeof n, "%s.o.weight", pre), a->o = matrix(L, n, d, inner, 0);
}

static void load_ff(loader_t *L, layer_w_t *w, const char *pre, const t5_config_t *c) {
    char n[200];
    if (c->gated) {
        snprintf(n, sizeof n, "%s.DenseReluDense.wi_0.weight", pre), w->wi = matrix(L, n, c->d_ff, c->d_model, 0);
        snprintf(n, sizeof n, "%s.DenseReluDense.wi_1.weight", pre), w->wi1 = matrix(L, n, c->d_ff, c->d_model, 0);
    } else {
        snprintf(n, sizeof n, "%s.DenseReluDense.wi.weight", pre), w->wi = matrix(L, n, c->d_ff, c->d_model, 0);
    }
    snprintf(n, sizeof n, "%s.DenseReluDense.wo.weight", pre), w->wo = matrix(L, n, c->d_model, c->d_ff, 0);
    snprintf(n, sizeof n, "%s.layer_norm.weight", pre), w->ln_ff = tensor(L, n, c->d_model, 0, 0);
}

/* An optional copy of shared.weight: if present it must be the same. */
static void same_as_shared(loader_t *L, const char *name, const t5_config_t *c) {
    const st_tensor_t *t = L->dummy ? NULL : find(L, name, c->vocab_size, c->d_model, 1);
    if (!t) return;
    const mat_t *sh = &L->m->shared;
    const dtype_t dt = st_dir_dtype(t);
    int same = dt == sh->dt ? !memcmp(t->data, sh->p, t->nbytes) : 1;
    for (size_t i = 0; dt != sh->dt && same && i < (size_t)t->n_elem; i++) { /* another dtype: the same values? */
        unsigned char e[4]; /* the mapping need not be aligned for the element type */
        memcpy(e, (const unsigned char *)t->data + i * dtype_size(dt), dtype_size(dt));
        same = dtype_get(e, dt, 0) == dtype_get(sh->p, sh->dt, i);
    }
    if (!same)
        fail(L, L->sd.index_name ? L->sd.index_name : "model.safetensors", "tensor '%s' differs from shared.weight: "
             "untied embeddings are not supported", name);
}

static int load_weights(loader_t *L) {
    t5_model_t *m = L->m;
    const t5_config_t *c = &m->c;
    const int d = c->d_model, inner = c->n_heads * c->d_kv;
    char n[200];
    m->shared = matrix(L, "shared.weight", c->vocab_size, d, 0);
    m->enc = calloc((size_t)c->n_enc_layers, sizeof *m->enc);
    m->dec = calloc((size_t)c->n_dec_layers, sizeof *m->dec);
    if (!m->enc || !m->dec) return !!fail(L, "model.safetensors", "out of memory");
    m->enc_bias = tensor(L, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", c->n_buckets,
                         c->n_heads, 0);
    m->dec_bias = tensor(L, "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", c->n_buckets,
                         c->n_heads, 0);
    for (int l = 0; l < c->n_enc_layers; l++) {
        layer_w_t *w = &m->enc[l];
        snprintf(n, sizeof n, "encoder.block.%d.layer.0.SelfAttention", l), load_attn(L, &w->sa, n, d, inner);
        snprintf(n, sizeof n, "encoder.block.%d.layer.0.layer_norm.weight", l), w->ln_sa = tensor(L, n, d, 0, 0);
        snprintf(n, sizeof n, "encoder.block.%d.layer.1", l), load_ff(L, w, n, c);
    }
    for (int l = 0; l < c->n_dec_layers; l++) {
        layer_w_t *w = &m->dec[l];
        snprintf(n, sizeof n, "decoder.block.%d.layer.0.SelfAttention", l), load_attn(L, &w->sa, n, d, inner);
        snprintf(n, sizeof n, "decoder.block.%d.layer.0.layer_norm.weight", l), w->ln_sa = tensor(L, n, d, 0, 0);
        snprintf(n, sizeof n, "decoder.block.%d.layer.1.EncDecAttention", l), load_attn(L, &w->ca, n, d, inner);
        snprintf(n, sizeof n, "decoder.block.%d.layer.1.layer_norm.weight", l), w->ln_ca = tensor(L, n, d, 0, 0);
        snprintf(n, sizeof n, "decoder.block.%d.layer.2", l), load_ff(L, w, n, c);
    }
    m->enc_ln = tensor(L, "encoder.final_layer_norm.weight", d, 0, 0);
    m->dec_ln = tensor(L, "decoder.final_layer_norm.weight", d, 0, 0);
    if (L->failed) return 0;
    same_as_shared(L, "encoder.embed_tokens.weight", c);
    same_as_shared(L, "decoder.embed_tokens.weight", c);
    if (c->tied) {
        same_as_shared(L, "lm_head.weight", c);
        m->lm_head = m->shared;
    } else {
        m->lm_head = matrix(L, "lm_head.weight", c->vocab_size, d, 0);
    }
    /* old checkpoints hold a cross-attention bias that transformers ignores on load */
    tensor(L, "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight", c->n_buckets, c->n_heads, 1);
    for (int f = 0; f < L->sd.n; f++)
        for (int i = 0; !L->failed && i < L->sd.st[f].n; i++)
            if (!L->sd.used[f][i])
                fail(L, L->sd.name[f], "tensor '%.120s' is not part of a %s with this config", L->sd.st[f].t[i].name,
                     c->arch);
    return !L->failed;
}

t5_model_t *t5_open(const char *dir, char *err, size_t errlen) {
    loader_t L = {.dir = dir, .err = err, .errlen = errlen};
    if (!(L.m = calloc(1, sizeof *L.m))) return snprintf(err, errlen, "out of memory"), NULL;
    if (parse_config(&L, &L.m->c)) {
        if (st_dir_open(&L.sd, dir)) fail(&L, L.sd.fail_file, "%s", L.sd.why);
        else load_weights(&L);
        st_dir_close(&L.sd, 0); /* the weights were copied (widened to f32) */
    }
    if (L.failed) {
        t5_close(L.m);
        return NULL;
    }
    return L.m;
}

t5_model_t *t5_open_dummy(const char *dir, dtype_t dtype, uint64_t seed, char *err, size_t errlen) {
    loader_t L = {.dir = dir, .err = err, .errlen = errlen, .dummy = seed ? seed : 1, .dummy_dt = dtype};
    if (!(L.m = calloc(1, sizeof *L.m))) return snprintf(err, errlen, "out of memory"), NULL;
    if (!parse_config(&L, &L.m->c) || !load_weights(&L)) {
        t5_close(L.m);
        return NULL;
    }
    return L.m;
}

int t5_probe(const char *dir) {
    size_t n;
    int missing;
    char why[200];
    char *text = cfgjson_read(dir, "config.json", T5_MAX_CONFIG, &n, &missing, why, sizeof why);
    cJSON *o = text ? cJSON_ParseWithLength(text, n) : NULL;
    free(text);
    const cJSON *mt = cfgjson_field(o, "model_type"), *arch = cfgjson_field(o, "architectures");
    const cJSON *a0 = cJSON_IsArray(arch) ? arch->child : NULL;
    int yes = (cJSON_IsString(mt) && (!strcmp(mt->valuestring, "t5") || !strcmp(mt->valuestring, "mt5"))) ||
              (cJSON_IsString(a0) && (!strcmp(a0->valuestring, "T5ForConditionalGeneration") ||
                                      !strcmp(a0->valuestring, "MT5ForConditionalGeneration")));
    cJSON_Delete(o);
    return yes;
}

void t5_close(t5_model_t *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned), free(m->enc), free(m->dec), free(m);
}

const t5_config_t *t5_config(const t5_model_t *m) { return &m->c; }

/* ---- forward --------------------------------------------------------------- */

int t5_bucket(int rel, int bidirectional, int n_buckets, int max_distance) {
    int bucket = 0;
    if (bidirectional) {
        n_buckets /= 2;
        if (rel > 0) bucket += n_buckets;
        rel = rel < 0 ? -rel : rel;
    } else {
        rel = rel < 0 ? -rel : 0;
    }
    int max_exact = n_buckets / 2;
    if (rel < max_exact) return bucket + rel;
    /* as torch computes it: float32 log of (rel / max_exact), divided by a
     * double constant and scaled in float32, truncated toward zero */
    float v = logf((float)rel / (float)max_exact) / (float)log((double)max_distance / max_exact) *
              (float)(n_buckets - max_exact);
    int large = max_exact + (int)v;
    return bucket + (large < n_buckets - 1 ? large : n_buckets - 1);
}

/* out (T, n) (+)= x (T, d) w^T on the backend's kernels; out_off: element
 * offset into out (a cache row) */
/* Row tok of the embedding, widened to f32. */
static void embed(const t5_model_t *m, int tok, float *out) {
    const size_t d = (size_t)m->c.d_model, es = dtype_size(m->shared.dt);
    dtype_to_f32(out, (const char *)m->shared.p + (size_t)tok * d * es, m->shared.dt, d);
}

static void mm(t5_state_t *s, float *out, int64_t out_off, const float *x, int T, int d, mat_t w, int n,
               int accumulate) {
    backend_t *be = s->be;
    matmul_job_t j = {be->wrap_host(be, (void *)w.p, w.dt, (int64_t)n * d),
                      be->wrap_host(be, out, DTYPE_F32, out_off + (int64_t)T * n), out_off, n};
    be->matmul(be, be->wrap_host(be, (void *)x, DTYPE_F32, (int64_t)T * d), T, d, &j, 1, accumulate);
}

/* out[t] = T5LayerNorm(x[t]) for T rows of d */
static void norm_rows(float *out, const float *x, const float *w, int T, int d, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * d;
        float ss = 0;
        for (int i = 0; i < d; i++) ss += xt[i] * xt[i];
        float r = 1.0f / sqrtf(ss / d + eps);
        for (int i = 0; i < d; i++) out[(size_t)t * d + i] = xt[i] * r * w[i];
    }
}

/* out (inner) = softmax over n keys of (q . k_j + bias(h, j)) v_j, per head;
 * btab NULL: no bias. sc: n floats, bk: n ints of scratch. */
static void attend(float *out, const float *q, const float *k, const float *v, int n, const t5_config_t *c,
                   const float *btab, int qpos, int bidirectional, float *sc, int *bk) {
    const int H = c->n_heads, dk = c->d_kv, inner = H * dk;
    if (btab) /* each key's bias row, once for all heads */
        for (int j = 0; j < n; j++) bk[j] = t5_bucket(j - qpos, bidirectional, c->n_buckets, c->max_distance) * H;
    for (int h = 0; h < H; h++) {
        const float *qh = q + h * dk;
        float mx = -INFINITY;
        for (int j = 0; j < n; j++) {
            const float *kj = k + (size_t)j * inner + h * dk;
            float s = 0;
            for (int i = 0; i < dk; i++) s += qh[i] * kj[i];
            if (btab) s += btab[bk[j] + h];
            sc[j] = s;
            if (s > mx) mx = s;
        }
        float sum = 0;
        for (int j = 0; j < n; j++) sum += sc[j] = expf(sc[j] - mx);
        float *oh = out + h * dk;
        for (int i = 0; i < dk; i++) oh[i] = 0;
        for (int j = 0; j < n; j++) {
            const float *vj = v + (size_t)j * inner + h * dk, p = sc[j] / sum;
            for (int i = 0; i < dk; i++) oh[i] += p * vj[i];
        }
    }
}

static float gelu_new(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

/* X (T, d) += FFN(norm(X)) */
static void feed_forward(t5_state_t *s, float *X, int T, const layer_w_t *w) {
    const t5_config_t *c = &s->m->c;
    const int d = c->d_model, f = c->d_ff;
    norm_rows(s->h, X, w->ln_ff, T, d, c->eps);
    mm(s, s->ff, 0, s->h, T, d, w->wi, f, 0);
    if (c->gated) {
        mm(s, s->ff1, 0, s->h, T, d, w->wi1, f, 0);
        for (size_t i = 0; i < (size_t)T * f; i++) s->ff[i] = gelu_new(s->ff[i]) * s->ff1[i];
    } else {
        for (size_t i = 0; i < (size_t)T * f; i++) s->ff[i] = s->ff[i] > 0 ? s->ff[i] : 0;
    }
    mm(s, X, 0, s->ff, T, f, w->wo, d, 1);
}

t5_state_t *t5_state_new(const t5_model_t *m, backend_t *be, int max_src, int max_dec) {
    const t5_config_t *c = &m->c;
    if (!be || max_src < 1 || max_dec < 1) return NULL;
    t5_state_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m, s->be = be, s->max_src = max_src, s->max_dec = max_dec;
    const size_t d = (size_t)c->d_model, inner = (size_t)c->n_heads * c->d_kv, L = (size_t)c->n_dec_layers;
    const size_t rows = (size_t)(max_src > max_dec ? max_src : max_dec), wide = d > inner ? d : inner;
    s->ck = malloc(sizeof(float) * L * max_src * inner), s->cv = malloc(sizeof(float) * L * max_src * inner);
    s->sk = malloc(sizeof(float) * L * max_dec * inner), s->sv = malloc(sizeof(float) * L * max_dec * inner);
    s->x = malloc(sizeof(float) * rows * d), s->h = malloc(sizeof(float) * rows * wide);
    s->q = malloc(sizeof(float) * rows * inner), s->k = malloc(sizeof(float) * rows * inner);
    s->v = malloc(sizeof(float) * rows * inner), s->att = malloc(sizeof(float) * rows * inner);
    s->ff = malloc(sizeof(float) * rows * c->d_ff), s->ff1 = malloc(sizeof(float) * rows * c->d_ff);
    s->sc = malloc(sizeof(float) * rows), s->bk = malloc(sizeof(int) * rows);
    s->enc = malloc(sizeof(float) * max_src * d);
    if (!s->ck || !s->cv || !s->sk || !s->sv || !s->x || !s->h || !s->q || !s->k || !s->v || !s->att || !s->ff ||
        !s->ff1 || !s->sc || !s->bk || !s->enc) {
        t5_state_free(s);
        return NULL;
    }
    return s;
}

void t5_state_free(t5_state_t *s) {
    if (!s) return;
    free(s->ck), free(s->cv), free(s->sk), free(s->sv), free(s->x), free(s->h), free(s->q), free(s->k);
    free(s->v), free(s->att), free(s->ff), free(s->ff1), free(s->sc), free(s->bk), free(s->enc), free(s);
}

int t5_encode(t5_state_t *s, const int *src, int n, float *enc_out) {
    const t5_model_t *m = s->m;
    const t5_config_t *c = &m->c;
    if (n < 1 || n > s->max_src) return -1;
    for (int t = 0; t < n; t++)
        if (src[t] < 0 || src[t] >= c->vocab_size) return -1;
    const int d = c->d_model, inner = c->n_heads * c->d_kv;
    float *X = s->x;
    for (int t = 0; t < n; t++) embed(m, src[t], X + (size_t)t * d);
    for (int l = 0; l < c->n_enc_layers; l++) {
        const layer_w_t *w = &m->enc[l];
        norm_rows(s->h, X, w->ln_sa, n, d, c->eps);
        mm(s, s->q, 0, s->h, n, d, w->sa.q, inner, 0);
        mm(s, s->k, 0, s->h, n, d, w->sa.k, inner, 0);
        mm(s, s->v, 0, s->h, n, d, w->sa.v, inner, 0);
        for (int t = 0; t < n; t++)
            attend(s->att + (size_t)t * inner, s->q + (size_t)t * inner, s->k, s->v, n, c, m->enc_bias, t, 1, s->sc,
                   s->bk);
        mm(s, X, 0, s->att, n, inner, w->sa.o, d, 1);
        feed_forward(s, X, n, w);
    }
    norm_rows(s->enc, X, m->enc_ln, n, d, c->eps);
    if (enc_out) memcpy(enc_out, s->enc, sizeof(float) * n * d);
    for (int l = 0; l < c->n_dec_layers; l++) {
        const size_t o = (size_t)l * s->max_src * inner;
        mm(s, s->ck + o, 0, s->enc, n, d, m->dec[l].ca.k, inner, 0);
        mm(s, s->cv + o, 0, s->enc, n, d, m->dec[l].ca.v, inner, 0);
    }
    s->n_src = n, s->pos = 0;
    return 0;
}

int t5_decode(t5_state_t *s, const int *tokens, int T, float *logits) {
    const t5_model_t *m = s->m;
    const t5_config_t *c = &m->c;
    if (!s->n_src || T < 1 || s->pos + T > s->max_dec) return -1;
    for (int t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size) return -1;
    const int d = c->d_model, inner = c->n_heads * c->d_kv, p = s->pos;
    float *X = s->x;
    for (int t = 0; t < T; t++) embed(m, tokens[t], X + (size_t)t * d);
    /* every operator works row by row (the kernels' rows do not depend on
     * T), and row t attends to the cache up to its own position */
    for (int l = 0; l < c->n_dec_layers; l++) {
        const layer_w_t *w = &m->dec[l];
        float *K = s->sk + (size_t)l * s->max_dec * inner, *V = s->sv + (size_t)l * s->max_dec * inner;
        norm_rows(s->h, X, w->ln_sa, T, d, c->eps);
        mm(s, s->q, 0, s->h, T, d, w->sa.q, inner, 0);
        mm(s, K, (int64_t)p * inner, s->h, T, d, w->sa.k, inner, 0);
        mm(s, V, (int64_t)p * inner, s->h, T, d, w->sa.v, inner, 0);
        for (int t = 0; t < T; t++)
            attend(s->att + (size_t)t * inner, s->q + (size_t)t * inner, K, V, p + t + 1, c, m->dec_bias, p + t, 0,
                   s->sc, s->bk);
        mm(s, X, 0, s->att, T, inner, w->sa.o, d, 1);
        norm_rows(s->h, X, w->ln_ca, T, d, c->eps);
        mm(s, s->q, 0, s->h, T, d, w->ca.q, inner, 0);
        const size_t co = (size_t)l * s->max_src * inner;
        for (int t = 0; t < T; t++)
            attend(s->att + (size_t)t * inner, s->q + (size_t)t * inner, s->ck + co, s->cv + co, s->n_src, c, NULL, 0,
                   0, s->sc, s->bk);
        mm(s, X, 0, s->att, T, inner, w->ca.o, d, 1);
        feed_forward(s, X, T, w);
    }
    norm_rows(s->h, X, m->dec_ln, T, d, c->eps);
    if (c->tied) {
        const float scale = (float)pow((double)d, -0.5); /* HF: h * d_model ** -0.5, a double rounded to f32 */
        for (size_t i = 0; i < (size_t)T * d; i++) s->h[i] *= scale;
    }
    mm(s, logits, 0, s->h, T, d, m->lm_head, c->vocab_size, 0);
    s->pos += T;
    return 0;
}

void t5_truncate(t5_state_t *s, int pos) {
    if (pos >= 0 && pos < s->pos) s->pos = pos;
}

int t5_pos(const t5_state_t *s) { return s->pos; }
const t5_config_t *t5_state_config(const t5_state_t *s) { return &s->m->c; }
int t5_state_max_dec(const t5_state_t *s) { return s->max_dec; }

void t5_row_stats(t5_state_t *s, const float *logits, int T, const int *next, int *argmax, float *max_p,
                  float *nll) {
    backend_t *be = s->be;
    const int V = s->m->c.vocab_size;
    be->row_stats(be, be->wrap_host(be, (void *)logits, DTYPE_F32, (int64_t)T * V), 0, T, V, next, argmax, max_p, nll);
}
