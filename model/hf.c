/* hf.c - loader for Hugging Face model directories: config.json plus
 * model.safetensors or a sharded model.safetensors.index.json, for
 * LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM (q/k/v biases).
 *
 * Mirrors the configuration classes and checkpoint layout of transformers'
 * models/{llama,mistral,qwen2}: tensors "model.embed_tokens.weight",
 * "model.layers.<l>.{input_layernorm, self_attn.{q,k,v,o}_proj,
 * post_attention_layernorm, mlp.{gate,up,down}_proj}", "model.norm.weight",
 * "lm_head.weight" (absent when tie_word_embeddings). Hugging Face stores q
 * and k for the rotate-half RoPE convention, so the config says ROPE_HALVES.
 *
 * Every field of config.json the forward pass depends on is range-checked;
 * every tensor's dtype (F32, F16, BF16) and shape is checked against it, and
 * a tensor the engine would not use (an o_proj bias, an extra layer) is
 * refused rather than silently ignored. Each refusal is one line naming the
 * directory, the file and the field.
 *
 * Weights: f32 tensors are used in place in the mapping (copied only when
 * misaligned); f16 and bf16 tensors are widened to f32 at load for now
 * (see matrix_dtype(), the one place that decides). Norm weights and
 * biases are always f32.
 *
 * Left out on purpose: rope_scaling types other than llama3 (linear,
 * dynamic, yarn, longrope: refused), sliding-window attention (the context
 * is capped at the window instead, which is exact within it), Llama's
 * attention_bias / mlp_bias, activations other than silu.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#include "kernels/hostmem.h"
#include "model/config_json.h"
#include "model/model_file.h"
#include "model/safetensors.h"
#include "model/st_dir.h"

#define HF_MAX_CONFIG (16u << 20)

typedef enum { ARCH_LLAMA, ARCH_MISTRAL, ARCH_QWEN2 } arch_t;

typedef struct {
    model_file_t *m;
    const char *dir;
    char *err;
    size_t errlen;
    int failed;
    arch_t arch;
    const char *arch_name;
    st_dir_t sd; /* the weights: model.safetensors or its shards */
} hf_t;

static void *hf_fail(hf_t *h, const char *file, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Records the first failure: "model 'DIR': FILE: message". */
static void *hf_fail(hf_t *h, const char *file, const char *fmt, ...) {
    if (h->failed) return NULL;
    va_list ap;
    va_start(ap, fmt);
    cfgjson_vfail(h->err, h->errlen, h->dir, file, fmt, ap);
    va_end(ap);
    h->failed = 1;
    return NULL;
}

/* Reads config.json as a NUL-terminated string. Caller frees. */
static char *read_config(hf_t *h) {
    char why[200];
    size_t n;
    int missing;
    char *buf = cfgjson_read(h->dir, "config.json", HF_MAX_CONFIG, &n, &missing, why, sizeof why);
    if (!buf) hf_fail(h, "config.json", "%s", why);
    return buf;
}

/* ---- config.json ------------------------------------------------------- */

#define field cfgjson_field

/* An integer field in [lo, hi]; def is used when absent unless required. */
static int cfg_int(hf_t *h, const cJSON *o, const char *key, int required, int def, int lo, int hi, int *out) {
    char why[200];
    if (cfgjson_int(o, key, required, def, lo, hi, out, why, sizeof why)) return 1;
    return hf_fail(h, "config.json", "%s", why), 0;
}

static int cfg_float(hf_t *h, const cJSON *o, const char *key, double def, double lo, double hi, float *out) {
    const cJSON *j = field(o, key);
    if (!j) {
        *out = (float)def;
        return 1;
    }
    if (!cJSON_IsNumber(j) || !(j->valuedouble > lo && j->valuedouble <= hi))
        return hf_fail(h, "config.json", "%s is not a number in (%g, %g]", key, lo, hi), 0;
    *out = (float)j->valuedouble;
    return 1;
}

/* bos_token_id / eos_token_id: an integer, a list of integers, or absent (-1). */
static int cfg_ids(hf_t *h, const cJSON *o, const char *key, int vocab, int *ids, int max, int *n) {
    const cJSON *j = field(o, key);
    *n = 0;
    if (!j) return 1;
    const cJSON *one = cJSON_IsArray(j) ? j->child : j;
    for (; one; one = cJSON_IsArray(j) ? one->next : NULL) {
        if (!cJSON_IsNumber(one) || one->valuedouble != floor(one->valuedouble) || one->valuedouble < 0 ||
            one->valuedouble >= vocab)
            return hf_fail(h, "config.json", "%s is not a token id (or list of them) below vocab_size %d", key,
                           vocab), 0;
        if (*n < max) ids[(*n)++] = (int)one->valuedouble;
    }
    return 1;
}

static int parse_config(hf_t *h, model_config_t *c) {
    char *text = read_config(h);
    if (!text) return 0;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return hf_fail(h, "config.json", "not a JSON object"), 0;
    }
    int ok = 0;
    /* architecture: architectures[0], else model_type */
    static const struct { const char *arch, *type; arch_t id; } known[] = {
        {"LlamaForCausalLM", "llama", ARCH_LLAMA},
        {"MistralForCausalLM", "mistral", ARCH_MISTRAL},
        {"Qwen2ForCausalLM", "qwen2", ARCH_QWEN2},
    };
    const cJSON *archs = field(root, "architectures"), *mt = field(root, "model_type");
    const char *name = NULL, *key = "architectures";
    if (cJSON_IsArray(archs) && cJSON_GetArraySize(archs) == 1 && cJSON_IsString(archs->child))
        name = archs->child->valuestring;
    else if (archs)
        return hf_fail(h, "config.json", "architectures is not a list of one name"), cJSON_Delete(root), 0;
    else if (cJSON_IsString(mt))
        name = mt->valuestring, key = "model_type";
    if (!name) {
        hf_fail(h, "config.json", "architectures (and model_type) missing");
        goto out;
    }
    int found = -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, archs ? known[i].arch : known[i].type)) found = i;
    if (found < 0) {
        hf_fail(h, "config.json", "%s: unsupported architecture '%.100s' (supported: LlamaForCausalLM, "
                "MistralForCausalLM, Qwen2ForCausalLM)", key, name);
        goto out;
    }
    h->arch = known[found].id, h->arch_name = known[found].arch;

    int hidden_default = 0, head_dim = 0, max_pos = 0, defmax = h->arch == ARCH_LLAMA ? 2048
                                                                : h->arch == ARCH_MISTRAL ? 4096 * 32
                                                                                          : 32768;
    if (!cfg_int(h, root, "hidden_size", 1, 0, 1, 1 << 16, &c->dim) ||
        !cfg_int(h, root, "intermediate_size", 1, 0, 1, 1 << 18, &c->hidden_dim) ||
        !cfg_int(h, root, "num_hidden_layers", 1, 0, 1, 1024, &c->n_layers) ||
        !cfg_int(h, root, "num_attention_heads", 1, 0, 1, 1024, &c->n_heads) ||
        !cfg_int(h, root, "num_key_value_heads", 0, c->n_heads, 1, 1024, &c->n_kv_heads) ||
        !cfg_int(h, root, "vocab_size", 1, 0, 1, 1 << 22, &c->vocab_size) ||
        !cfg_int(h, root, "max_position_embeddings", 0, defmax, 1, 1 << 24, &max_pos))
        goto out;
    hidden_default = c->dim % c->n_heads ? 0 : c->dim / c->n_heads;
    if (!cfg_int(h, root, "head_dim", hidden_default == 0, hidden_default, 2, 1 << 12, &head_dim)) goto out;
    c->head_dim = head_dim;
    if (head_dim % 2) {
        hf_fail(h, "config.json", "head_dim %d is odd; RoPE needs pairs", head_dim);
        goto out;
    }
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads) {
        hf_fail(h, "config.json", "num_attention_heads %d is not a multiple of num_key_value_heads %d", c->n_heads,
                c->n_kv_heads);
        goto out;
    }
    if (!cfg_float(h, root, "rms_norm_eps", 1e-6, 0, 1, &c->norm_eps)) goto out;

    /* rope_theta, at the top level or (transformers >= 5) in rope_parameters */
    const cJSON *rp = field(root, "rope_parameters");
    const cJSON *rs = field(root, "rope_scaling");
    if (rp && !cJSON_IsObject(rp)) {
        hf_fail(h, "config.json", "rope_parameters is not an object");
        goto out;
    }
    if (!cfg_float(h, field(root, "rope_theta") || !rp ? root : rp, "rope_theta", 10000.0, 0, 1e12, &c->rope_theta))
        goto out;
    if (!rs && rp) rs = rp;
    c->rope_style = ROPE_HALVES;
    c->rope_scaling = ROPE_SCALING_NONE;
    if (rs) {
        const char *sk = "rope_scaling";
        if (!cJSON_IsObject(rs)) {
            hf_fail(h, "config.json", "%s is not an object", sk);
            goto out;
        }
        const cJSON *ty = field(rs, "rope_type");
        if (!ty) ty = field(rs, "type");
        const char *tn = cJSON_IsString(ty) ? ty->valuestring : NULL;
        if (!tn && rs != rp) {
            hf_fail(h, "config.json", "rope_scaling.rope_type is missing");
            goto out;
        }
        if (tn && !strcmp(tn, "llama3")) {
            c->rope_scaling = ROPE_SCALING_LLAMA3;
            float orig = 0;
            if (!field(rs, "factor") || !field(rs, "low_freq_factor") || !field(rs, "high_freq_factor") ||
                !field(rs, "original_max_position_embeddings")) {
                hf_fail(h, "config.json", "rope_scaling (llama3) needs factor, low_freq_factor, high_freq_factor "
                        "and original_max_position_embeddings");
                goto out;
            }
            if (!cfg_float(h, rs, "factor", 1, 0, 1e6, &c->rope_factor) ||
                !cfg_float(h, rs, "low_freq_factor", 1, 0, 1e6, &c->rope_low_freq_factor) ||
                !cfg_float(h, rs, "high_freq_factor", 1, 0, 1e6, &c->rope_high_freq_factor) ||
                !cfg_float(h, rs, "original_max_position_embeddings", 1, 0, 1 << 24, &orig))
                goto out;
            c->rope_orig_ctx = (int)orig;
            if (!(c->rope_high_freq_factor > c->rope_low_freq_factor)) {
                hf_fail(h, "config.json", "rope_scaling: high_freq_factor must exceed low_freq_factor");
                goto out;
            }
        } else if (tn && strcmp(tn, "default")) {
            hf_fail(h, "config.json", "rope_scaling type '%.60s' is not supported (only llama3)", tn);
            goto out;
        }
    }

    const cJSON *tie = field(root, "tie_word_embeddings");
    if (tie && !cJSON_IsBool(tie)) {
        hf_fail(h, "config.json", "tie_word_embeddings is not true or false");
        goto out;
    }
    c->shared_classifier = tie && cJSON_IsTrue(tie); /* all three classes default to untied */
    const cJSON *act = field(root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu"))) {
        hf_fail(h, "config.json", "hidden_act must be \"silu\"");
        goto out;
    }
    const char *biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        const cJSON *b = field(root, biases[i]);
        if (b && !cJSON_IsFalse(b)) {
            hf_fail(h, "config.json", "%s = true is not supported", biases[i]);
            goto out;
        }
    }
    c->qkv_bias = h->arch == ARCH_QWEN2;

    int bos[1], nb;
    if (!cfg_ids(h, root, "bos_token_id", c->vocab_size, bos, 1, &nb) ||
        !cfg_ids(h, root, "eos_token_id", c->vocab_size, c->eos_ids, MODEL_MAX_EOS, &c->n_eos))
        goto out;
    c->bos_id = nb ? bos[0] : -1;
    c->eos_id = c->n_eos ? c->eos_ids[0] : -1;

    /* sliding-window attention equals full attention up to the window: cap the context there */
    const cJSON *sw = field(root, "sliding_window"), *use_sw = field(root, "use_sliding_window");
    int window = 0;
    if (sw && (h->arch == ARCH_MISTRAL || (h->arch == ARCH_QWEN2 && cJSON_IsTrue(use_sw))) &&
        !cfg_int(h, root, "sliding_window", 1, 0, 1, 1 << 24, &window))
        goto out;
    c->trained_seq_len = window && window < max_pos ? window : max_pos;
    c->seq_len = c->trained_seq_len < MODEL_HF_DEFAULT_CTX ? c->trained_seq_len : MODEL_HF_DEFAULT_CTX;
    ok = 1;
out:
    cJSON_Delete(root);
    return ok;
}

/* ---- safetensors shards ------------------------------------------------ */

/* Opens the weights; the model owns their mappings from then on. */
static int open_weights(hf_t *h) {
    int rc = st_dir_open(&h->sd, h->dir);
    model_file_t *m = h->m;
    m->maps = h->sd.map, m->map_sizes = h->sd.size, m->n_maps = h->sd.map ? h->sd.n : 0; /* unmapped by model_close */
    h->sd.map = NULL, h->sd.size = NULL;
    if (rc) hf_fail(h, h->sd.fail_file, "%s", h->sd.why);
    return rc == 0;
}

/* Finds a tensor; with an index, it must sit in the shard the weight_map names. */
static const st_tensor_t *find(hf_t *h, const char *name, int *shard) {
    const st_tensor_t *t = st_dir_find(&h->sd, name, shard);
    if (!t && h->sd.why[0]) hf_fail(h, h->sd.fail_file, "%s", h->sd.why);
    return t;
}

/* ---- weights ------------------------------------------------------------ */

/* The dtype a matrix (embedding, projection, head) is handed to the engine
 * in, given the dtype the file stores it in: the file's own. Half-precision
 * matrices stay half in memory, used in place in the mapping (no copy); the
 * CPU kernels widen them in registers (docs/engine.md: the memory traffic
 * of a decode step halves). Matrices of mixed file dtypes are widened to
 * f32 (one dtype per model_weights_t). */
static dtype_t matrix_dtype(dtype_t file_dt) { return file_dt; }

static void *own(hf_t *h, size_t bytes) {
    model_file_t *m = h->m;
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **o = realloc(m->owned, sizeof(void *) * (size_t)cap);
        if (!o) return NULL;
        m->owned = o, m->cap_owned = cap;
    }
    void *p = hostmem_alloc(bytes); /* large buffers in huge pages, as mapped weights (model_hugepages) */
    if (p) m->owned[m->n_owned++] = p;
    return p;
}

/* Returns the data of tensor t in dtype want (f32 or the file's own dtype),
 * in place when possible, else a converted copy the model owns. */
static const void *convert(hf_t *h, const char *file, const st_tensor_t *t, dtype_t want) {
    dtype_t have = st_dir_dtype(t);
    size_t align = want == DTYPE_F32 ? 4 : 2;
    if (have == want && (uintptr_t)t->data % align == 0) return t->data;
    size_t esz = want == DTYPE_F32 ? 4 : 2;
    void *p = own(h, (size_t)t->n_elem * esz);
    if (!p) return hf_fail(h, file, "out of memory for tensor '%.100s'", t->name);
    if (have == want) {
        memcpy(p, t->data, t->nbytes);
        return p;
    }
    float *o = p;
    const unsigned char *s = t->data;
    for (int64_t i = 0; i < t->n_elem; i++) {
        uint16_t v = (uint16_t)(s[2 * i] | s[2 * i + 1] << 8); /* little-endian */
        o[i] = have == DTYPE_BF16 ? bf16_to_f32(v) : f16_to_f32(v);
    }
    return p;
}

typedef struct {
    const void **dst;
    char name[160];
    int64_t rows, cols; /* cols 0: a vector */
    int matrix;         /* 1: gets matrix_dtype, else always f32 */
    const st_tensor_t *t;
    int shard;
} want_t;

static int load_weights(hf_t *h) {
    model_file_t *m = h->m;
    const model_config_t *c = &m->cfg;
    model_weights_t *w = &m->w;
    int L = c->n_layers;
    int64_t d = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim,
            hid = c->hidden_dim, V = c->vocab_size;
    if (!(m->layer_ptrs = calloc((size_t)L * 12, sizeof(void *)))) return hf_fail(h, "model", "out of memory"), 0;
    const void **lp = m->layer_ptrs;
    w->rms_att = lp, w->wq = lp + L, w->wk = lp + 2 * L, w->wv = lp + 3 * L, w->wo = lp + 4 * L;
    w->rms_ffn = lp + 5 * L, w->w1 = lp + 6 * L, w->w2 = lp + 7 * L, w->w3 = lp + 8 * L;
    if (c->qkv_bias) w->bq = lp + 9 * L, w->bk = lp + 10 * L, w->bv = lp + 11 * L;

    int n = 0, cap = 3 + L * 12;
    want_t *ws = calloc((size_t)cap, sizeof(want_t));
    if (!ws) return hf_fail(h, "model", "out of memory"), 0;
#define WANT(DST, MAT, R, C, ...) \
    (ws[n].dst = (DST), ws[n].matrix = (MAT), ws[n].rows = (R), ws[n].cols = (C), \
     snprintf(ws[n].name, sizeof ws[n].name, __VA_ARGS__), n++)
    WANT(&w->tok_emb, 1, V, d, "model.embed_tokens.weight");
    WANT(&w->rms_final, 0, d, 0, "model.norm.weight");
    if (!c->shared_classifier) WANT(&w->wcls, 1, V, d, "lm_head.weight");
    for (int l = 0; l < L; l++) {
        WANT(&w->rms_att[l], 0, d, 0, "model.layers.%d.input_layernorm.weight", l);
        WANT(&w->wq[l], 1, qd, d, "model.layers.%d.self_attn.q_proj.weight", l);
        WANT(&w->wk[l], 1, kvd, d, "model.layers.%d.self_attn.k_proj.weight", l);
        WANT(&w->wv[l], 1, kvd, d, "model.layers.%d.self_attn.v_proj.weight", l);
        WANT(&w->wo[l], 1, d, qd, "model.layers.%d.self_attn.o_proj.weight", l);
        WANT(&w->rms_ffn[l], 0, d, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        WANT(&w->w1[l], 1, hid, d, "model.layers.%d.mlp.gate_proj.weight", l);
        WANT(&w->w2[l], 1, d, hid, "model.layers.%d.mlp.down_proj.weight", l);
        WANT(&w->w3[l], 1, hid, d, "model.layers.%d.mlp.up_proj.weight", l);
        if (c->qkv_bias) {
            WANT(&w->bq[l], 0, qd, 0, "model.layers.%d.self_attn.q_proj.bias", l);
            WANT(&w->bk[l], 0, kvd, 0, "model.layers.%d.self_attn.k_proj.bias", l);
            WANT(&w->bv[l], 0, kvd, 0, "model.layers.%d.self_attn.v_proj.bias", l);
        }
    }
#undef WANT
    int ok = 0, mixed = 0;
    dtype_t mat_dt = DTYPE_F32;
    /* pass 1: find and check every tensor */
    for (int i = 0; i < n; i++) {
        want_t *x = &ws[i];
        const char *file = h->sd.index_name ? h->sd.index_name : h->sd.name[0];
        if (!(x->t = find(h, x->name, &x->shard))) {
            hf_fail(h, file, "tensor '%s' is missing (%s, config.json)", x->name, h->arch_name);
            goto out;
        }
        file = h->sd.name[x->shard];
        const st_tensor_t *t = x->t;
        if (strcmp(t->dtype, "F32") && strcmp(t->dtype, "F16") && strcmp(t->dtype, "BF16")) {
            hf_fail(h, file, "tensor '%s': dtype %s is not supported (F32, F16, BF16)", x->name, t->dtype);
            goto out;
        }
        int shape_ok = x->cols ? t->ndim == 2 && t->shape[0] == x->rows && t->shape[1] == x->cols
                               : t->ndim == 1 && t->shape[0] == x->rows;
        if (!shape_ok) {
            char got[96] = "", *p = got;
            for (int k = 0; k < t->ndim && p < got + sizeof got - 24; k++)
                p += sprintf(p, "%s%lld", k ? ", " : "", (long long)t->shape[k]);
            if (x->cols)
                hf_fail(h, file, "tensor '%s': shape [%s] does not match config.json (expected [%lld, %lld])",
                        x->name, got, (long long)x->rows, (long long)x->cols);
            else
                hf_fail(h, file, "tensor '%s': shape [%s] does not match config.json (expected [%lld])", x->name,
                        got, (long long)x->rows);
            goto out;
        }
        if (x->matrix) {
            dtype_t fd = st_dir_dtype(t);
            if (i == 0) mat_dt = fd;
            else if (fd != mat_dt) mixed = 1;
        }
    }
    /* anything left over would be silently ignored: refuse it */
    for (int s = 0; s < h->sd.n; s++)
        for (int i = 0; i < h->sd.st[s].n; i++) {
            const char *nm = h->sd.st[s].t[i].name;
            size_t len = strlen(nm);
            if (h->sd.used[s][i] || (len >= 19 && !strcmp(nm + len - 19, "rotary_emb.inv_freq"))) continue;
            if (c->shared_classifier && !strcmp(nm, "lm_head.weight")) continue; /* tied: HF ignores it */
            hf_fail(h, h->sd.name[s], "tensor '%.100s' is not used by %s with this config.json "
                    "(num_hidden_layers %d%s)", nm, h->arch_name, L, c->qkv_bias ? "" : ", no biases");
            goto out;
        }
    /* pass 2: hand out pointers, widening where needed */
    w->dtype = mixed ? DTYPE_F32 : matrix_dtype(mat_dt);
    for (int i = 0; i < n; i++) {
        const void *p = convert(h, h->sd.name[ws[i].shard], ws[i].t, ws[i].matrix ? w->dtype : DTYPE_F32);
        if (!p) goto out;
        *ws[i].dst = p;
    }
    if (c->shared_classifier) w->wcls = w->tok_emb;
    ok = 1;
out:
    free(ws);
    return ok;
}

model_file_t *hf_open(const char *dir, char *err, size_t errlen) {
    hf_t h = {.dir = dir, .err = err, .errlen = errlen};
    model_file_t *m = h.m = calloc(1, sizeof(*m));
    if (!m || !(m->path = strdup(dir))) {
        hf_fail(&h, "model", "out of memory");
        goto out;
    }
    if (!parse_config(&h, &m->cfg) || !open_weights(&h) || !load_weights(&h)) goto out;
out:
    st_dir_close(&h.sd, 1);
    if (h.failed) model_close(&m);
    return m;
}

model_file_t *hf_open_dummy(const char *dir, dtype_t dtype, uint64_t seed, char *err, size_t errlen) {
    hf_t h = {.dir = dir, .err = err, .errlen = errlen};
    model_file_t *m = h.m = calloc(1, sizeof(*m));
    if (!m || !(m->path = strdup(dir))) {
        hf_fail(&h, "model", "out of memory");
        model_close(&m);
        return NULL;
    }
    if (!parse_config(&h, &m->cfg)) {
        model_close(&m);
        return NULL;
    }
    m->w.dtype = dtype, m->w.dummy = 1, m->w.seed = seed;
    return m;
}
