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
 * Plain loops, weights widened to f32: the reference implementation in C
 * for the tiny test models; the optimised kernels come later. Every row of
 * a decoder block is computed as a single step would compute it.
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
#include "model/t5.h"

#define T5_MAX_CONFIG (1u << 20)

typedef struct {
    float *q, *k, *v, *o; /* (inner, d) each; o: (d, inner) */
} attn_w_t;

typedef struct {
    float *ln_sa, *ln_ca, *ln_ff; /* (d); ln_ca decoder only */
    attn_w_t sa, ca;              /* ca decoder only */
    float *wi, *wi1, *wo;         /* relu: wi (ff, d); gated: wi = wi_0, wi1 = wi_1; wo (d, ff) */
} layer_w_t;

struct t5_model {
    t5_config_t c;
    float *shared, *lm_head;      /* (vocab, d); lm_head = shared when tied */
    float *enc_bias, *dec_bias;   /* (buckets, heads) */
    float *enc_ln, *dec_ln;       /* final norms (d) */
    layer_w_t *enc, *dec;
    float **owned;
    int n_owned;
};

struct t5_state {
    const t5_model_t *m;
    int max_src, max_dec, n_src, pos;
    float *ck, *cv; /* cross keys/values: (dec layers, max_src, inner) */
    float *sk, *sv; /* self cache: (dec layers, max_dec, inner) */
    float *x, *h, *q, *att, *ff, *ff1, *sc; /* scratch for one row */
    float *ex, *eq, *ek, *ev;               /* encoder scratch (max_src rows) */
};

/* ---- loading ------------------------------------------------------------- */

typedef struct {
    const char *dir;
    char *err;
    size_t errlen;
    int failed;
    st_file_t st;
    unsigned char *used;
    t5_model_t *m;
} loader_t;

static void *fail(loader_t *L, const char *file, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void *fail(loader_t *L, const char *file, const char *fmt, ...) {
    if (L->failed) return NULL;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(L->err, L->errlen, "model '%s': %s: %s", L->dir, file, msg);
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

/* Tensor name as f32 (rows, cols; cols 0: a vector of rows), owned by the
 * model; NULL (and the loader fails) if missing or of another shape. */
static float *tensor(loader_t *L, const char *name, int64_t rows, int64_t cols, int optional) {
    if (L->failed) return NULL;
    const st_tensor_t *t = st_find(&L->st, name);
    if (!t) return optional ? NULL : fail(L, "model.safetensors", "tensor '%.120s' is missing", name);
    L->used[t - L->st.t] = 1;
    int f32 = !strcmp(t->dtype, "F32"), bf16 = !strcmp(t->dtype, "BF16");
    if (!f32 && !bf16 && strcmp(t->dtype, "F16"))
        return fail(L, "model.safetensors", "tensor '%.120s' has dtype %s (F32, F16 or BF16)", name, t->dtype);
    int ok = cols ? t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols : t->ndim == 1 && t->shape[0] == rows;
    if (!ok)
        return fail(L, "model.safetensors", "tensor '%.120s' is not (%lld%s%lld%s): the config says so", name,
                    (long long)rows, cols ? ", " : "", (long long)cols, cols ? "" : ",");
    t5_model_t *m = L->m;
    float *p = malloc(sizeof(float) * (size_t)t->n_elem), **o = realloc(m->owned, sizeof *o * (size_t)(m->n_owned + 1));
    if (o) m->owned = o;
    if (!p || !o) return free(p), fail(L, "model.safetensors", "out of memory for '%.120s'", name);
    m->owned[m->n_owned++] = p;
    const unsigned char *s = t->data;
    if (f32) memcpy(p, s, t->nbytes);
    else
        for (int64_t i = 0; i < t->n_elem; i++) {
            uint16_t v = (uint16_t)(s[2 * i] | s[2 * i + 1] << 8); /* little-endian */
            p[i] = bf16 ? bf16_to_f32(v) : f16_to_f32(v);
        }
    return p;
}

static void load_attn(loader_t *L, attn_w_t *a, const char *pre, int d, int inner) {
    char n[200];
    snprintf(n, sizeof n, "%s.q.weight", pre), a->q = tensor(L, n, inner, d, 0);
    snprintf(n, sizeof n, "%s.k.weight", pre), a->k = tensor(L, n, inner, d, 0);
    snprintf(n, sizeof n, "%s.v.weight", pre), a->v = tensor(L, n, inner, d, 0);
    snprintf(n, sizeof n, "%s.o.weight", pre), a->o = tensor(L, n, d, inner, 0);
}

static void load_ff(loader_t *L, layer_w_t *w, const char *pre, const t5_config_t *c) {
    char n[200];
    if (c->gated) {
        snprintf(n, sizeof n, "%s.DenseReluDense.wi_0.weight", pre), w->wi = tensor(L, n, c->d_ff, c->d_model, 0);
        snprintf(n, sizeof n, "%s.DenseReluDense.wi_1.weight", pre), w->wi1 = tensor(L, n, c->d_ff, c->d_model, 0);
    } else {
        snprintf(n, sizeof n, "%s.DenseReluDense.wi.weight", pre), w->wi = tensor(L, n, c->d_ff, c->d_model, 0);
    }
    snprintf(n, sizeof n, "%s.DenseReluDense.wo.weight", pre), w->wo = tensor(L, n, c->d_model, c->d_ff, 0);
    snprintf(n, sizeof n, "%s.layer_norm.weight", pre), w->ln_ff = tensor(L, n, c->d_model, 0, 0);
}

/* An optional copy of shared.weight: if present it must be the same. */
static void same_as_shared(loader_t *L, const char *name, const t5_config_t *c) {
    const float *p = tensor(L, name, c->vocab_size, c->d_model, 1);
    if (p && memcmp(p, L->m->shared, sizeof(float) * (size_t)c->vocab_size * c->d_model))
        fail(L, "model.safetensors", "tensor '%s' differs from shared.weight: untied embeddings are not supported",
             name);
}

static int load_weights(loader_t *L) {
    t5_model_t *m = L->m;
    const t5_config_t *c = &m->c;
    const int d = c->d_model, inner = c->n_heads * c->d_kv;
    char n[200];
    m->shared = tensor(L, "shared.weight", c->vocab_size, d, 0);
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
        m->lm_head = tensor(L, "lm_head.weight", c->vocab_size, d, 0);
    }
    /* old checkpoints hold a cross-attention bias that transformers ignores on load */
    tensor(L, "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight", c->n_buckets, c->n_heads, 1);
    for (int i = 0; !L->failed && i < L->st.n; i++)
        if (!L->used[i])
            fail(L, "model.safetensors", "tensor '%.120s' is not part of a %s with this config", L->st.t[i].name,
                 c->arch);
    return !L->failed;
}

t5_model_t *t5_open(const char *dir, char *err, size_t errlen) {
    loader_t L = {.dir = dir, .err = err, .errlen = errlen};
    t5_model_t *m = calloc(1, sizeof *m);
    if (!m) return snprintf(err, errlen, "out of memory"), NULL;
    L.m = m;
    char path[4096];
    void *map = MAP_FAILED;
    size_t size = 0;
    int fd = -1;
    if (!parse_config(&L, &m->c)) goto out;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat sb;
    if ((fd = open(path, O_RDONLY)) < 0 || fstat(fd, &sb) != 0) {
        fail(&L, "model.safetensors", "cannot open: %s%s", strerror(errno),
             errno == ENOENT ? " (sharded T5 checkpoints are not supported yet)" : "");
        goto out;
    }
    size = (size_t)sb.st_size;
    if (size == 0 || (map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
        fail(&L, "model.safetensors", "cannot map (%zu bytes)", size);
        goto out;
    }
    char msg[300];
    if (st_parse(map, size, &L.st, msg, sizeof msg) != 0) {
        fail(&L, "model.safetensors", "%s", msg);
        goto out;
    }
    if (!(L.used = calloc((size_t)L.st.n + 1, 1))) {
        fail(&L, "model.safetensors", "out of memory");
        goto out;
    }
    load_weights(&L);
out:
    free(L.used);
    st_free(&L.st);
    if (map != MAP_FAILED) munmap(map, size);
    if (fd >= 0) close(fd);
    if (L.failed) {
        t5_close(m);
        return NULL;
    }
    return m;
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

static void matvec(float *y, const float *w, const float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        const float *wr = w + (size_t)r * cols;
        float s = 0;
        for (int i = 0; i < cols; i++) s += wr[i] * x[i];
        y[r] = s;
    }
}

static void norm(float *out, const float *x, const float *w, int d, float eps) {
    float ss = 0;
    for (int i = 0; i < d; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / d + eps);
    for (int i = 0; i < d; i++) out[i] = x[i] * r * w[i];
}

/* out (inner) = softmax over n keys of (q . k_j + bias(h, j)) v_j, per head;
 * bias NULL: none. sc: n floats of scratch. */
static void attend(float *out, const float *q, const float *k, const float *v, int n, const t5_config_t *c,
                   const float *btab, int qpos, int bidirectional, float *sc) {
    const int H = c->n_heads, dk = c->d_kv, inner = H * dk;
    for (int h = 0; h < H; h++) {
        const float *qh = q + h * dk;
        float mx = -INFINITY;
        for (int j = 0; j < n; j++) {
            const float *kj = k + (size_t)j * inner + h * dk;
            float s = 0;
            for (int i = 0; i < dk; i++) s += qh[i] * kj[i];
            if (btab) s += btab[t5_bucket(j - qpos, bidirectional, c->n_buckets, c->max_distance) * H + h];
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

/* x += FFN(norm(x)) */
static void feed_forward(t5_state_t *s, float *x, const layer_w_t *w) {
    const t5_config_t *c = &s->m->c;
    norm(s->h, x, w->ln_ff, c->d_model, c->eps);
    matvec(s->ff, w->wi, s->h, c->d_ff, c->d_model);
    if (c->gated) {
        matvec(s->ff1, w->wi1, s->h, c->d_ff, c->d_model);
        for (int i = 0; i < c->d_ff; i++) s->ff[i] = gelu_new(s->ff[i]) * s->ff1[i];
    } else {
        for (int i = 0; i < c->d_ff; i++) s->ff[i] = s->ff[i] > 0 ? s->ff[i] : 0;
    }
    matvec(s->h, w->wo, s->ff, c->d_model, c->d_ff);
    for (int i = 0; i < c->d_model; i++) x[i] += s->h[i];
}

t5_state_t *t5_state_new(const t5_model_t *m, int max_src, int max_dec) {
    const t5_config_t *c = &m->c;
    if (max_src < 1 || max_dec < 1) return NULL;
    t5_state_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m, s->max_src = max_src, s->max_dec = max_dec;
    const size_t d = (size_t)c->d_model, inner = (size_t)c->n_heads * c->d_kv, L = (size_t)c->n_dec_layers;
    const size_t big = d > inner ? d : inner, wide = (size_t)c->d_ff > big ? (size_t)c->d_ff : big;
    const size_t nsc = (size_t)(max_src > max_dec ? max_src : max_dec);
    s->ck = malloc(sizeof(float) * L * max_src * inner), s->cv = malloc(sizeof(float) * L * max_src * inner);
    s->sk = malloc(sizeof(float) * L * max_dec * inner), s->sv = malloc(sizeof(float) * L * max_dec * inner);
    s->x = malloc(sizeof(float) * big), s->h = malloc(sizeof(float) * big), s->q = malloc(sizeof(float) * inner);
    s->att = malloc(sizeof(float) * inner), s->ff = malloc(sizeof(float) * wide);
    s->ff1 = malloc(sizeof(float) * wide), s->sc = malloc(sizeof(float) * nsc);
    s->ex = malloc(sizeof(float) * max_src * d), s->eq = malloc(sizeof(float) * max_src * inner);
    s->ek = malloc(sizeof(float) * max_src * inner), s->ev = malloc(sizeof(float) * max_src * inner);
    if (!s->ck || !s->cv || !s->sk || !s->sv || !s->x || !s->h || !s->q || !s->att || !s->ff || !s->ff1 || !s->sc ||
        !s->ex || !s->eq || !s->ek || !s->ev) {
        t5_state_free(s);
        return NULL;
    }
    return s;
}

void t5_state_free(t5_state_t *s) {
    if (!s) return;
    free(s->ck), free(s->cv), free(s->sk), free(s->sv), free(s->x), free(s->h), free(s->q), free(s->att);
    free(s->ff), free(s->ff1), free(s->sc), free(s->ex), free(s->eq), free(s->ek), free(s->ev), free(s);
}

int t5_encode(t5_state_t *s, const int *src, int n, float *enc_out) {
    const t5_model_t *m = s->m;
    const t5_config_t *c = &m->c;
    if (n < 1 || n > s->max_src) return -1;
    for (int t = 0; t < n; t++)
        if (src[t] < 0 || src[t] >= c->vocab_size) return -1;
    const int d = c->d_model, inner = c->n_heads * c->d_kv;
    for (int t = 0; t < n; t++) memcpy(s->ex + (size_t)t * d, m->shared + (size_t)src[t] * d, sizeof(float) * d);
    for (int l = 0; l < c->n_enc_layers; l++) {
        const layer_w_t *w = &m->enc[l];
        for (int t = 0; t < n; t++) {
            norm(s->h, s->ex + (size_t)t * d, w->ln_sa, d, c->eps);
            matvec(s->eq + (size_t)t * inner, w->sa.q, s->h, inner, d);
            matvec(s->ek + (size_t)t * inner, w->sa.k, s->h, inner, d);
            matvec(s->ev + (size_t)t * inner, w->sa.v, s->h, inner, d);
        }
        for (int t = 0; t < n; t++) {
            float *x = s->ex + (size_t)t * d;
            attend(s->att, s->eq + (size_t)t * inner, s->ek, s->ev, n, c, m->enc_bias, t, 1, s->sc);
            matvec(s->h, w->sa.o, s->att, d, inner);
            for (int i = 0; i < d; i++) x[i] += s->h[i];
            feed_forward(s, x, w);
        }
    }
    for (int t = 0; t < n; t++) {
        float *x = s->ex + (size_t)t * d;
        norm(s->h, x, m->enc_ln, d, c->eps);
        memcpy(x, s->h, sizeof(float) * d);
        if (enc_out) memcpy(enc_out + (size_t)t * d, x, sizeof(float) * d);
    }
    for (int l = 0; l < c->n_dec_layers; l++)
        for (int t = 0; t < n; t++) {
            const size_t o = ((size_t)l * s->max_src + t) * inner;
            matvec(s->ck + o, m->dec[l].ca.k, s->ex + (size_t)t * d, inner, d);
            matvec(s->cv + o, m->dec[l].ca.v, s->ex + (size_t)t * d, inner, d);
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
    const int d = c->d_model, inner = c->n_heads * c->d_kv;
    /* token by token: row t sees exactly what a single step at its position
     * would (its own keys and values, then those before it) */
    for (int t = 0; t < T; t++) {
        const int p = s->pos + t;
        float *x = s->x;
        memcpy(x, m->shared + (size_t)tokens[t] * d, sizeof(float) * d);
        for (int l = 0; l < c->n_dec_layers; l++) {
            const layer_w_t *w = &m->dec[l];
            float *K = s->sk + (size_t)l * s->max_dec * inner, *V = s->sv + (size_t)l * s->max_dec * inner;
            norm(s->h, x, w->ln_sa, d, c->eps);
            matvec(s->q, w->sa.q, s->h, inner, d);
            matvec(K + (size_t)p * inner, w->sa.k, s->h, inner, d);
            matvec(V + (size_t)p * inner, w->sa.v, s->h, inner, d);
            attend(s->att, s->q, K, V, p + 1, c, m->dec_bias, p, 0, s->sc);
            matvec(s->h, w->sa.o, s->att, d, inner);
            for (int i = 0; i < d; i++) x[i] += s->h[i];
            norm(s->h, x, w->ln_ca, d, c->eps);
            matvec(s->q, w->ca.q, s->h, inner, d);
            const size_t co = (size_t)l * s->max_src * inner;
            attend(s->att, s->q, s->ck + co, s->cv + co, s->n_src, c, NULL, 0, 0, s->sc);
            matvec(s->h, w->ca.o, s->att, d, inner);
            for (int i = 0; i < d; i++) x[i] += s->h[i];
            feed_forward(s, x, w);
        }
        norm(s->h, x, m->dec_ln, d, c->eps);
        if (c->tied) {
            const float scale = (float)pow((double)d, -0.5); /* HF: h * d_model ** -0.5, a double rounded to f32 */
            for (int i = 0; i < d; i++) s->h[i] *= scale;
        }
        matvec(logits + (size_t)t * c->vocab_size, m->lm_head, s->h, c->vocab_size, d);
    }
    s->pos += T;
    return 0;
}

void t5_truncate(t5_state_t *s, int pos) {
    if (pos >= 0 && pos < s->pos) s->pos = pos;
}

int t5_pos(const t5_state_t *s) { return s->pos; }
