/* transformer.c - Llama-family forward pass written against kernels/ops.h.
 *
 * Per layer, for a block x (T, dim):
 *   xb = rmsnorm(x) ; q, k, v = xb Wq^T, xb Wk^T, xb Wv^T  (k, v written
 *   straight into the cache rows pos..pos+T) ; rope(q), rope(k) ;
 *   x += attention(q, K[0:pos+T], V[0:pos+T]) Wo^T ;
 *   x += swiglu(rmsnorm(x)) W2^T
 * then logits = rmsnorm(x) Wcls^T. Mirrors the Llama architecture as in
 * llama2.c's model definition and Hugging Face's LlamaForCausalLM /
 * MistralForCausalLM / Qwen2ForCausalLM; from the config come the RoPE
 * convention (interleaved pairs or rotate-half), theta and llama3 frequency
 * scaling, head_dim (which may differ from dim / n_heads), q/k/v biases
 * (Qwen2) and the tied or separate head.
 *
 * Biases are added with the existing matmul op: out (+)= ones(T, 1) b^T,
 * i.e. a matmul with d = 1 whose weight is the bias viewed as (n, 1); 1 * b
 * is exact, so this equals adding b.
 *
 * The code never touches tensor memory: every op goes through the backend,
 * so a GPU backend runs the same function unchanged.
 */
#include "model/transformer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/check.h"
#include "kernels/half.h"

struct transformer {
    backend_t *be;
    model_config_t cfg;
    int max_block;
    int cached; /* positions held in the KV cache */
    /* weights wrapped for the backend; per-layer arrays of n_layers */
    tensor_t tok_emb, rms_final, wcls;
    tensor_t *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3;
    tensor_t *bq, *bk, *bv; /* (n) each, only when cfg.qkv_bias */
    tensor_t ones;          /* (B, 1) of 1.0: the input of the bias "matmul" */
    /* KV cache: per layer (seq_len, n_kv_heads * head_dim); the one in use:
     * the transformer's own (own_kc, own_vc) or a kv_cache_t (active) */
    tensor_t *kc, *vc;
    tensor_t *own_kc, *own_vc;
    int own_cached;     /* the own cache's length while another is in use */
    kv_cache_t *active; /* NULL: the own cache */
    /* transformer_run_multi's scratch, allocated on first use: this pass's
     * keys and values (max_block, kvd) before the copy into each cache, the
     * tokens of all sequences, and 0, 1, ... as embed's row indices */
    tensor_t ks, vs;
    int *multi_tokens, *row_ids, *keep_ids; /* keep_ids: the rows whose logits a pass keeps */
    /* activations for a block of up to max_block tokens */
    tensor_t x;      /* (B, dim) residual stream */
    tensor_t xb;     /* (B, dim) normalised input of a sub-layer */
    tensor_t q;      /* (B, n_heads * head_dim) */
    tensor_t att;    /* (B, n_heads * head_dim) attention output */
    tensor_t hb;     /* (B, hidden_dim) */
    tensor_t logits; /* (B, vocab) */
    tensor_t rope_cs; /* (seq_len, head_dim/2, 2): cos and sin of each pair's angle */
    float *logits_host; /* NULL when the backend's logits are host memory */
    int logits_rows;    /* rows the last forward produced */
    int dummy;          /* weights are random ones made on the backend */
    uint64_t dummy_seed;
    int n_owned;        /* weight tensors the backend allocated (uploads, dummies) */
    tensor_t **owned;
    /* A draft vocabulary (transformer_set_head): the classifier computes only
     * rows head_ids[0..head_k) (ascending ids) of wcls, gathered into head_w,
     * so logits rows are head_k wide on the backend. 0 = the full vocabulary. */
    const void *wcls_host; /* the host classifier rows the head is gathered from */
    int head_k;
    int *head_ids;      /* (head_k) vocabulary id of each head row, ascending */
    int *head_inv;      /* (vocab) head row of each id, -1 outside the head */
    tensor_t head_w;    /* (head_k, dim) in the weights' dtype */
    float *head_rows;   /* (max_block, head_k) host copy of the head logits */
    float *logits_full; /* (max_block, vocab) logits widened to the vocabulary, -inf outside the head */
    /* Exact greedy decoding through a bf16 screen of the classifier (see
     * screen_argmax): a LOGITS_LAST pass leaves its classifier pending
     * (cls_pending, its input in xb row 0) until someone reads the logits;
     * an argmax alone is answered from the screen. */
    int scr_able;      /* the screen applies here (screen_able); built by transformer_prepare_greedy */
    int scr_on;        /* built and self-checked (screen_build) */
    int cls_pending;   /* rows of the last run whose f32 classifier has not run yet (their input: xb rows 0..) */
    int scr_fma;       /* the backend's products: one FMA chain per output (1), or multiply then add (0) */
    void *scr_q;       /* the classifier in int8 with a scale per row (backend_t.i8_pack) */
    void *scr_qq;      /* the same for integer products (backend_t.i8q_pack): blocks of SCR_INT_MIN+ rows */
    float *scr_h;      /* (vocab) N_r >= ||w_r||, ||v_r||, rounded up (screen_argmax) */
    float *scr_sf2;    /* (max_block) each row's second bound scale (integer products: x's own error) */
    float *scr_xs;     /* (max_block) each row's scale s_x (integer products) */
    uint8_t *scr_u;    /* (max_block, dim rounded up to 4) x quantised: round(x / s_x) + 64 */
    float *scr_norm;   /* (vocab) P_r = E_r + 2 g N_r, rounded up (screen_argmax) */
    double scr_g;      /* gamma of the backend's chains (screen_build) */
    double scr_smax;   /* the largest scale s_r */
    int *scr_cand;     /* (SCR_MAX_CAND) candidate rows of one step */
    float *scr_cf;     /* (SCR_MAX_CAND) their exact logits */
    float scr_nmax;    /* the largest scr_norm */
    float scr_hmax;    /* the largest scr_h */
    float *scr_sf;     /* (max_block) each row's bound scale (screen_argmax) */
    double *scr_e;     /* (max_block) each row's absolute term (screen_argmax) */
    float *scr_st;     /* (max_block, 3) the scan's row statistics (backend_t.screen_scan) */
    float *scr_hi;     /* (max_block, ceil(vocab / SCAN_CHUNK)) the scan's chunk maxima */
    long long scr_steps, scr_full, scr_cands; /* argmaxes screened, answered by the full classifier, candidates */
};

static int screen_able(const transformer_t *tf);

/* A KV cache of its own (transformer_cache_new). */
struct kv_cache {
    int n_layers;
    tensor_t *kc, *vc; /* (n_layers) each */
    int cached;        /* its length while another cache is in use */
};

/* Gives the backend weight tensor t: the host weights themselves where the
 * backend can read them (CPU: no copy), else a copy in its memory (GPU:
 * uploaded once here); with dummy weights, random ones made on the backend.
 * Owned tensors are listed for transformer_destroy. Norm weights get
 * values around 1, biases and matrices small ones. */
static int wrap_as(transformer_t *tf, tensor_t *t, const void *p, dtype_t dt, int64_t n, int norm) {
    backend_t *be = tf->be;
    if (tf->dummy) {
        float a = norm ? 0.9f : -0.02f, b = norm ? 1.1f : 0.02f;
        *t = be->random(be, dt, n, tf->dummy_seed + 0x1000193ULL * (uint64_t)tf->n_owned, a, b);
    } else {
        *t = be->wrap_host(be, (void *)p, dt, n);
        if (t->data) return 1;
        *t = be->upload(be, p, dt, n);
    }
    if (!t->data) return 0;
    tf->owned[tf->n_owned++] = t;
    return 1;
}
static int wrap(transformer_t *tf, tensor_t *t, const void *p, dtype_t dt, int64_t n) {
    return wrap_as(tf, t, p, dt, n, 0);
}
static int wrap_norm(transformer_t *tf, tensor_t *t, const void *p, int64_t n) {
    return wrap_as(tf, t, p, DTYPE_F32, n, 1);
}

/* The (n, d) matrix *t in the backend's own layout (backend_pack), listed
 * as owned. 0 if the memory could not be had. */
static int pack(transformer_t *tf, tensor_t *t, int n, int d) {
    int owned = 0;
    for (int i = 0; i < tf->n_owned && !owned; i++) owned = tf->owned[i] == t;
    int r = backend_pack(tf->be, t, n, d, owned);
    if (r == 1 && !owned) tf->owned[tf->n_owned++] = t;
    return r >= 0;
}

/* Angular frequency of RoPE pair i (of head_dim/2): theta^(-2i/head_dim),
 * then llama3 scaling when configured (transformers'
 * _compute_llama3_parameters): long wavelengths are slowed by `factor`,
 * short ones kept, and the band between interpolated. In double. */
static double rope_inv_freq(const model_config_t *c, int i) {
    double inv = pow((double)c->rope_theta, -2.0 * i / c->head_dim);
    if (c->rope_scaling != ROPE_SCALING_LLAMA3) return inv;
    double factor = c->rope_factor, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    double orig = c->rope_orig_ctx, wavelen = 2 * M_PI / inv;
    if (wavelen < orig / hi) return inv;          /* high frequency: unchanged */
    if (wavelen > orig / lo) return inv / factor; /* low frequency: scaled */
    double smooth = (orig / wavelen - lo) / (hi - lo);
    return (1 - smooth) * inv / factor + smooth * inv;
}

void transformer_rope_table(const model_config_t *c, int n_pos, float *cs) {
    int half = c->head_dim / 2;
    for (int p = 0; p < n_pos; p++)
        for (int i = 0; i < half; i++) {
            double ang = p * rope_inv_freq(c, i);
            cs[(size_t)p * c->head_dim + 2 * i] = (float)cos(ang);
            cs[(size_t)p * c->head_dim + 2 * i + 1] = (float)sin(ang);
        }
}

transformer_t *transformer_new(backend_t *be, const model_config_t *cfg, const model_weights_t *w,
                               int max_block, char *err, size_t errlen) {
    /* Matrices may be f32, bf16 or f16 (w->dtype; the kernels widen half in
     * registers); norm weights and biases are f32. */
    transformer_t *tf = calloc(1, sizeof(*tf));
    if (!tf) goto oom;
    tf->be = be;
    tf->cfg = *cfg;
    tf->max_block = max_block > 0 ? max_block : 64;
    if (tf->max_block > cfg->seq_len) tf->max_block = cfg->seq_len;
    const model_config_t *c = cfg;
    int L = c->n_layers, B = tf->max_block;
    int64_t d = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim,
            hid = c->hidden_dim, V = c->vocab_size;
    tensor_t *arr = calloc((size_t)L * 14, sizeof(tensor_t));
    if (!arr) goto oom;
    tf->dummy = w->dummy, tf->dummy_seed = w->seed;
    if (!(tf->owned = calloc((size_t)L * 14 + 3, sizeof(tensor_t *)))) {
        free(arr);
        goto oom;
    }
    tf->rms_att = arr, tf->wq = arr + L, tf->wk = arr + 2 * L, tf->wv = arr + 3 * L, tf->wo = arr + 4 * L;
    tf->rms_ffn = arr + 5 * L, tf->w1 = arr + 6 * L, tf->w2 = arr + 7 * L, tf->w3 = arr + 8 * L;
    tf->kc = tf->own_kc = arr + 9 * L, tf->vc = tf->own_vc = arr + 10 * L;
    tf->bq = arr + 11 * L, tf->bk = arr + 12 * L, tf->bv = arr + 13 * L;
    /* matrices in the weights' dtype; norm weights and biases always f32 */
    dtype_t md = w->dtype, f = DTYPE_F32;
    tf->wcls_host = c->shared_classifier ? w->tok_emb : w->wcls;
    int ok = wrap(tf, &tf->tok_emb, w->tok_emb, md, V * d) && wrap_norm(tf, &tf->rms_final, w->rms_final, d) &&
             (c->shared_classifier ? (tf->wcls = tf->tok_emb, 1) : wrap(tf, &tf->wcls, w->wcls, md, V * d));
    /* dummy weights have no per-layer arrays at all */
#define WL(a) (w->a ? w->a[l] : NULL)
    for (int l = 0; l < L && ok; l++)
        ok = wrap_norm(tf, &tf->rms_att[l], WL(rms_att), d) && wrap(tf, &tf->wq[l], WL(wq), md, qd * d) &&
             wrap(tf, &tf->wk[l], WL(wk), md, kvd * d) && wrap(tf, &tf->wv[l], WL(wv), md, kvd * d) &&
             wrap(tf, &tf->wo[l], WL(wo), md, d * qd) && wrap_norm(tf, &tf->rms_ffn[l], WL(rms_ffn), d) &&
             wrap(tf, &tf->w1[l], WL(w1), md, hid * d) && wrap(tf, &tf->w2[l], WL(w2), md, d * hid) &&
             wrap(tf, &tf->w3[l], WL(w3), md, hid * d) &&
             (!c->qkv_bias || (wrap(tf, &tf->bq[l], WL(bq), f, qd) && wrap(tf, &tf->bk[l], WL(bk), f, kvd) &&
                               wrap(tf, &tf->bv[l], WL(bv), f, kvd)));
#undef WL
    /* the matrices in the backend's own layout; the embedding rows stay as they are */
    ok = ok && pack(tf, &tf->wcls, V, d);
    for (int l = 0; l < L && ok; l++)
        ok = pack(tf, &tf->wq[l], qd, d) && pack(tf, &tf->wk[l], kvd, d) && pack(tf, &tf->wv[l], kvd, d) &&
             pack(tf, &tf->wo[l], d, qd) && pack(tf, &tf->w1[l], hid, d) && pack(tf, &tf->w2[l], d, hid) &&
             pack(tf, &tf->w3[l], hid, d);
    if (!ok) {
        snprintf(err, errlen, "%s: not enough memory for the weights (%.2f GB)", be->name,
                 (double)model_n_params(c) * dtype_size(md) / 1e9);
        transformer_destroy(&tf);
        return NULL;
    }
    for (int l = 0; l < L; l++) {
        tf->kc[l] = be->alloc(be, (int64_t)c->seq_len * kvd);
        tf->vc[l] = be->alloc(be, (int64_t)c->seq_len * kvd);
        if (!tf->kc[l].data || !tf->vc[l].data) goto oom;
    }
    tf->x = be->alloc(be, B * d), tf->xb = be->alloc(be, B * d), tf->q = be->alloc(be, B * qd);
    tf->att = be->alloc(be, B * qd), tf->hb = be->alloc(be, B * hid), tf->logits = be->alloc(be, B * V);
    if (!tf->x.data || !tf->xb.data || !tf->q.data || !tf->att.data || !tf->hb.data || !tf->logits.data) goto oom;
    if (c->qkv_bias) {
        float *one = malloc(sizeof(float) * (size_t)B);
        tf->ones = be->alloc(be, B);
        if (!one || !tf->ones.data) {
            free(one);
            goto oom;
        }
        for (int i = 0; i < B; i++) one[i] = 1.0f;
        be->from_host(be, tf->ones, 0, one, B);
        free(one);
    }
    /* RoPE angles: pair i of a head turns by pos * theta^(-2i/head_dim)
     * (scaled for llama3) in both conventions (they differ in which
     * dimensions form the pair). Computed once here in double, instead of
     * per layer and per call. */
    tf->rope_cs = be->alloc(be, (int64_t)c->seq_len * c->head_dim);
    float *cs = malloc(sizeof(float) * (size_t)c->seq_len * c->head_dim);
    if (!tf->rope_cs.data || !cs) {
        free(cs);
        goto oom;
    }
    transformer_rope_table(c, c->seq_len, cs);
    be->from_host(be, tf->rope_cs, 0, cs, (int64_t)c->seq_len * c->head_dim);
    free(cs);
    if (be->device != DEVICE_CPU && !(tf->logits_host = malloc(sizeof(float) * (size_t)(B * V)))) goto oom;
    tf->scr_able = screen_able(tf);
    return tf;
oom:
    snprintf(err, errlen, "out of memory allocating activations and KV cache");
    transformer_destroy(&tf);
    return NULL;
}

void transformer_destroy(transformer_t **ptf) {
    if (!ptf || !*ptf) return;
    transformer_t *tf = *ptf;
    backend_t *be = tf->be;
    for (int i = 0; i < tf->n_owned; i++) be->free(be, tf->owned[i]);
    free(tf->owned);
    if (tf->rms_att) {
        for (int l = 0; l < tf->cfg.n_layers; l++) be->free(be, &tf->own_kc[l]), be->free(be, &tf->own_vc[l]);
        free(tf->rms_att); /* the per-layer arrays share one allocation */
    }
    be->free(be, &tf->x), be->free(be, &tf->xb), be->free(be, &tf->q);
    be->free(be, &tf->att), be->free(be, &tf->hb), be->free(be, &tf->logits), be->free(be, &tf->rope_cs);
    be->free(be, &tf->ones);
    be->free(be, &tf->ks), be->free(be, &tf->vs);
    free(tf->multi_tokens), free(tf->row_ids), free(tf->keep_ids);
    free(tf->logits_host);
    be->free(be, &tf->head_w);
    free(tf->head_ids), free(tf->head_inv), free(tf->head_rows), free(tf->logits_full);
    free(tf->scr_q), free(tf->scr_qq), free(tf->scr_h), free(tf->scr_cf), free(tf->scr_sf2), free(tf->scr_xs), free(tf->scr_u);
    free(tf->scr_norm), free(tf->scr_cand), free(tf->scr_sf), free(tf->scr_e), free(tf->scr_st), free(tf->scr_hi);
    free(tf);
    *ptf = NULL;
}

/* ---- Exact greedy decoding through an int8 screen of the classifier ----
 *
 * A decoding step that wants only the argmax of its logits (greedy
 * decoding: bild run, generate --mode large) reads the classifier, most of
 * a small model's weights (stories15M: 9.2M of its 15.2M parameters), for
 * one number. The screen reads an int8 copy instead (a quarter of the
 * bytes) and still returns exactly the argmax of the f32 logits the full
 * classifier would give, bit for bit the same token:
 *
 * F_r, the f32 logit of row r, is the backend's chain over k of w_rk x_k
 * (one rounding per FMA; two per step where it multiplies then adds), so
 * |F_r - w_r.x| <= g S_r with g = gamma_n = n u / (1 - n u), u = 2^-24,
 * n = d (FMA) or 2d, and S_r = sum_k |w_rk x_k| <= ||w_r|| ||x||. The copy
 * holds q_rk = round(w_rk / s_r), s_r = max_k |w_rk| / 127, so that
 * v_r = s_r q_r and |w_r.x - v_r.x| <= E_r ||x||, E_r = ||w_r - v_r||
 * (measured at build). The screen's A_r = fl(s_r C_r), C_r the same chain
 * over q_rk x_k: |s_r C_r - v_r.x| <= g ||v_r|| ||x||, and the last product
 * is off by u |A_r| at most (the slack below takes it). With N_r >=
 * ||w_r||, ||v_r||: |A_r - F_r| <= (E_r + 2 g N_r) ||x|| + u |A_r|. Blocks
 * of SCR_INT_MIN+ rows quantise x too, x^ = s_x p with p_k integers below
 * backend_t.i8q_half, and take exact integer sums D_r = q_r.p, so A_r =
 * fl(fl(s_r s_x) D_r) is within 3u |A_r| of v_r.x^, and |v_r.x - v_r.x^|
 * <= N_r ||x - x^||: the bound gains N_r ||x - x^||. With m_r that
 * bound (inflated for its own rounding, plus a tiny absolute term for
 * underflow), every row with A_r + m_r < L = max_j (A_j - m_j) has F_r <
 * F_j* for the j* attaining L, so it is not the argmax, ties included. The
 * remaining candidates (a few) get their exact F_r from the f32 rows by
 * the backend's own chain, and the lowest id with the largest F_r wins, as
 * in row_stats. transformer_prepare_greedy checks the chain against the
 * backend's matmul bit for bit on 64 rows before it turns the screen on; a step
 * with a non-finite value or more than SCR_MAX_CAND candidates runs the
 * full classifier instead. BILD_SCREEN=0 turns it off. */
#define SCR_MAX_CAND 1024
#define SCR_INT_MIN 3 /* blocks of this many rows or more take integer products (screen_argmax) */

/* F_r: row r of the f32 classifier times x, in the backend's order */
static float exact_logit(const transformer_t *tf, int r, const float *x) {
    const int d = tf->cfg.dim;
    const float *w = (const float *)tf->wcls_host + (size_t)r * d;
    float a = 0.0f;
    if (tf->scr_fma)
        for (int k = 0; k < d; k++) a = fmaf(w[k], x[k], a);
    else
        for (int k = 0; k < d; k++) {
            volatile float p = w[k] * x[k]; /* rounded on its own, as the scalar kernel's product */
            a = a + p;
        }
    return a;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* exact_logit for the FMA backends, four rows at a time (four independent
 * chains, each still one fused multiply-add per k in order): the blocks'
 * integer screen leaves tens of candidates a row */
__attribute__((target("fma"))) static void exact_logits_fma(const float *wc, int d, const int *rows, int n,
                                                            const float *x, float *out) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *w0 = wc + (size_t)rows[i] * d, *w1 = wc + (size_t)rows[i + 1] * d;
        const float *w2 = wc + (size_t)rows[i + 2] * d, *w3 = wc + (size_t)rows[i + 3] * d;
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (int k = 0; k < d; k++) {
            a0 = __builtin_fmaf(w0[k], x[k], a0), a1 = __builtin_fmaf(w1[k], x[k], a1);
            a2 = __builtin_fmaf(w2[k], x[k], a2), a3 = __builtin_fmaf(w3[k], x[k], a3);
        }
        out[i] = a0, out[i + 1] = a1, out[i + 2] = a2, out[i + 3] = a3;
    }
    for (; i < n; i++) {
        const float *w0 = wc + (size_t)rows[i] * d;
        float a0 = 0;
        for (int k = 0; k < d; k++) a0 = __builtin_fmaf(w0[k], x[k], a0);
        out[i] = a0;
    }
}
#endif

/* exact_logit of rows[0..n) into out */
static void exact_logits(const transformer_t *tf, const int *rows, int n, const float *x, float *out) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (tf->scr_fma) {
        exact_logits_fma(tf->wcls_host, tf->cfg.dim, rows, n, x, out);
        return;
    }
#endif
    for (int i = 0; i < n; i++) out[i] = exact_logit(tf, rows[i], x);
}

/* The argmaxes of the n pending rows (xb rows 0..n-1) into out: 0, or -1
 * where the screen cannot decide one of them (the caller runs the full
 * classifier); tf->logits then holds the screen's values, and the rows
 * stay pending. */
static int screen_argmax(transformer_t *tf, int n, int *out) {
    backend_t *be = tf->be;
    const int d = tf->cfg.dim, V = tf->cfg.vocab_size, nch = (V + SCAN_CHUNK - 1) / SCAN_CHUNK, ldu = (d + 3) / 4 * 4;
    const int integer = n >= SCR_INT_MIN && tf->scr_qq; /* blocks: integer products, x quantised too */
    double *e = tf->scr_e;
    for (int t = 0; t < n; t++) {
        const float *x = (const float *)tf->xb.data + (size_t)t * d;
        double nx = 0, x1 = 0, xm = 0;
        for (int k = 0; k < d; k++) nx += (double)x[k] * x[k], x1 += fabs(x[k]), xm = fabs(x[k]) > xm ? fabs(x[k]) : xm;
        tf->scr_steps++;
        if (!isfinite(nx) || !isfinite(x1)) return tf->scr_full++, -1;
        /* m_r = s ||w_r|| + e (s's double arithmetic: relative error ~d 2^-53, inside the 1e-9). The passes over
         * the vocabulary run in float, where they vectorise: M_r = fl(sf N_r) >= s N_r (sf is s raised by 2^-20,
         * more than its own and the product's rounding), each float sum or difference is off by at most 2^-24 of
         * |A_r| + M_r, and the slack D = 2^-20 (max |A| + max M) + 2e covers two such errors, the <= 3u |A| of
         * each side's last products and e twice: a row is dropped only if fl(A_r + M_r) < L - D, with L = max
         * fl(A_j - M_j), which implies A_r + m_r < A_j - m_j. e: underflow in the chains and the last products. */
        const double s = sqrt(nx) * (1 + 1e-9);
        e[t] = (2.0 * d * (1 + tf->scr_smax) + 4) * 0x1p-149;
        tf->scr_sf[t] = (float)(s * (1 + 0x1p-20));
        tf->scr_sf2[t] = 0;
        if (integer) { /* x_k ~ s_x q_k, |q_k| < half: the screen's A_r is then off by N_r ||x - x^|| more */
            const int half = be->i8q_half;
            const float sx = (float)xm / (float)(half - 1);
            uint8_t *u = tf->scr_u + (size_t)t * ldu;
            double dx = 0;
            for (int k = 0; k < d; k++) {
                long q = sx > 0 ? lrintf(x[k] / sx) : 0;
                q = q > half - 1 ? half - 1 : q < 1 - half ? 1 - half : q;
                u[k] = (uint8_t)(q + half);
                const double err = (double)x[k] - (double)sx * (double)q; /* exact in double */
                dx += err * err;
            }
            for (int k = d; k < ldu; k++) u[k] = (uint8_t)half;
            tf->scr_xs[t] = sx;
            tf->scr_sf2[t] = (float)(sqrt(dx) * (1 + 1e-9) * (1 + 0x1p-20));
        }
    }
    if (integer)
        be->i8q_matmul(be, tf->scr_qq, V, d, tf->scr_u, tf->scr_xs, n, tf->logits.data);
    else
        be->i8_matmul(be, tf->scr_q, V, d, tf->xb.data, n, tf->logits.data);
    /* the first pass (the backend's, vectorised): L, max |A|, a sum that is NaN if some A_r is not finite, and
     * each chunk's largest fl(A_r + M_r), so that the second pass looks only where a candidate can be */
    be->screen_scan(be, tf->logits.data, n, V, tf->scr_norm, tf->scr_sf, tf->scr_h, tf->scr_sf2, tf->scr_st, tf->scr_hi);
    for (int t = 0; t < n; t++) {
        const float *a = (const float *)tf->logits.data + (size_t)t * V, *x = (const float *)tf->xb.data + (size_t)t * d;
        const float sf = tf->scr_sf[t], sf2 = tf->scr_sf2[t], *nr = tf->scr_norm, *hr = tf->scr_h;
        const float *hi = tf->scr_hi + (size_t)t * nch;
        const float L = tf->scr_st[3 * t], amax = tf->scr_st[3 * t + 1], bad = tf->scr_st[3 * t + 2];
        const float mmax = sf * tf->scr_nmax + tf->scr_sf2[t] * tf->scr_hmax; /* >= max_r M_r: rounding is monotone */
        if (bad != 0 || !isfinite(L) || !isfinite(amax + mmax)) return tf->scr_full++, -1;
        const double D = 0x1p-20 * ((double)amax + mmax) + 2 * e[t];
        const float th = nextafterf((float)((double)L - D), -INFINITY); /* rounded down */
        int nc = 0;
        for (int c = 0; c < nch; c++) {
            if (hi[c] < th) continue; /* no row of the chunk reaches th (the same fl(A_r + M_r) as below) */
            for (int r = c * SCAN_CHUNK; r < V && r < (c + 1) * SCAN_CHUNK; r++)
                if (a[r] + (sf * nr[r] + sf2 * hr[r]) >= th) {
                    if (nc == SCR_MAX_CAND) return tf->scr_full++, -1;
                    tf->scr_cand[nc++] = r;
                }
        }
        tf->scr_cands += nc;
        int best = -1;
        float bf = 0;
        exact_logits(tf, tf->scr_cand, nc, x, tf->scr_cf);
        for (int i = 0; i < nc; i++) { /* ascending ids: a later one wins only if strictly larger */
            const float f = tf->scr_cf[i];
            if (isnan(f)) return tf->scr_full++, -1;
            if (best < 0 || f > bf) best = tf->scr_cand[i], bf = f;
        }
        out[t] = best;
    }
    return 0;
}

/* Runs the pending rows' classifier (f32, all of it) into the logits */
static void cls_materialize(transformer_t *tf) {
    int n = tf->cls_pending;
    if (!n) return;
    tf->cls_pending = 0;
    matmul_job_t cls = {tf->wcls, tf->logits, 0, tf->cfg.vocab_size};
    tf->be->matmul(tf->be, tf->xb, n, tf->cfg.dim, &cls, 1, 0);
}

/* Whether the screen applies: the CPU backend, an f32 classifier in its
 * panels, not BILD_SCREEN=0 */
static int screen_able(const transformer_t *tf) {
    const char *env = getenv("BILD_SCREEN");
    return !(env && strcmp(env, "0") == 0) && tf->be->device == DEVICE_CPU && !tf->dummy && tf->wcls_host &&
           tf->wcls.dtype == DTYPE_F32 && tf->wcls.packed && tf->be->pack;
}

/* Builds the screen (transformer_prepare_greedy: a model that does not
 * decode greedily pays no memory for it, half its classifier's) and turns
 * it on if the exact chain matches the backend's matmul on sample rows;
 * otherwise, or without the memory, leaves it off for good. xb row 0 is
 * kept. */
static void screen_build(transformer_t *tf) {
    backend_t *be = tf->be;
    const int d = tf->cfg.dim, V = tf->cfg.vocab_size;
    tf->scr_able = 0; /* one try */
    const float *w = tf->wcls_host;
    int8_t *q = malloc((size_t)V * d);
    float *scale = malloc(sizeof(float) * (size_t)V);
    float *keep = malloc(sizeof(float) * (size_t)d);
    tf->scr_norm = malloc(sizeof(float) * (size_t)V);
    tf->scr_cand = malloc(sizeof(int) * SCR_MAX_CAND);
    tf->scr_cf = malloc(sizeof(float) * SCR_MAX_CAND);
    tf->scr_sf = malloc(sizeof(float) * (size_t)tf->max_block);
    tf->scr_sf2 = malloc(sizeof(float) * (size_t)tf->max_block);
    tf->scr_xs = malloc(sizeof(float) * (size_t)tf->max_block);
    tf->scr_u = malloc((size_t)tf->max_block * (size_t)((d + 3) / 4 * 4));
    tf->scr_h = malloc(sizeof(float) * (size_t)V);
    tf->scr_e = malloc(sizeof(double) * (size_t)tf->max_block);
    tf->scr_st = malloc(sizeof(float) * 3 * (size_t)tf->max_block);
    tf->scr_hi = malloc(sizeof(float) * (size_t)tf->max_block * (size_t)((V + SCAN_CHUNK - 1) / SCAN_CHUNK));
    int ok = q && scale && keep && tf->scr_norm && tf->scr_cand && tf->scr_sf && tf->scr_e && tf->scr_st &&
             tf->scr_hi && tf->scr_cf && tf->scr_sf2 && tf->scr_xs && tf->scr_u && tf->scr_h && be->screen_scan && be->i8_pack &&
             be->i8_matmul;
    tf->scr_nmax = 0, tf->scr_smax = 0, tf->scr_hmax = 0;
    tf->scr_fma = strcmp(be->isa, "scalar") != 0;
    const double u = 0x1p-24, nc = tf->scr_fma ? d : 2.0 * d;
    tf->scr_g = nc * u / (1 - nc * u) * (1 + 1e-6);
    for (int r = 0; r < V && ok; r++) {
        const float *wr = w + (size_t)r * d;
        float mx = 0;
        for (int k = 0; k < d && ok; k++) ok = isfinite(wr[k]), mx = fabsf(wr[k]) > mx ? fabsf(wr[k]) : mx;
        const float sr = mx / 127.0f; /* the bound needs finite weights; |w / s_r| <= 127 up to rounding */
        double n2 = 0, v2 = 0, e2 = 0;
        for (int k = 0; k < d && ok; k++) {
            long qi = sr > 0 ? lrintf(wr[k] / sr) : 0;
            qi = qi > 127 ? 127 : qi < -127 ? -127 : qi;
            q[(size_t)r * d + k] = (int8_t)qi;
            const double v = (double)sr * (double)qi, err = (double)wr[k] - v; /* both exact in double */
            n2 += (double)wr[k] * wr[k], v2 += v * v, e2 += err * err;
        }
        scale[r] = sr, tf->scr_smax = sr > tf->scr_smax ? sr : tf->scr_smax;
        const double nr = sqrt(n2 > v2 ? n2 : v2) * (1 + 1e-9), pr = (sqrt(e2) + 2 * tf->scr_g * nr) * (1 + 1e-9);
        tf->scr_norm[r] = nextafterf((float)pr, INFINITY); /* rounded up */
        tf->scr_nmax = tf->scr_norm[r] > tf->scr_nmax ? tf->scr_norm[r] : tf->scr_nmax;
        tf->scr_h[r] = nextafterf((float)nr, INFINITY); /* rounded up */
        tf->scr_hmax = tf->scr_h[r] > tf->scr_hmax ? tf->scr_h[r] : tf->scr_hmax;
    }
    if (ok) ok = (tf->scr_q = be->i8_pack(be, q, scale, V, d)) != NULL;
    if (ok && be->i8q_pack && !(tf->scr_qq = be->i8q_pack(be, q, scale, V, d))) ok = 0, free(tf->scr_q), tf->scr_q = NULL;
    free(q), free(scale);
    if (!ok) {
        free(keep), free(tf->scr_norm), free(tf->scr_cand), free(tf->scr_sf), free(tf->scr_e), free(tf->scr_st),
            free(tf->scr_hi);
        tf->scr_norm = NULL, tf->scr_cand = NULL, tf->scr_sf = tf->scr_st = tf->scr_hi = NULL, tf->scr_e = NULL;
        return;
    }
    /* the check: a sample input through the backend's f32 classifier and through exact_logit */
    float *x = tf->xb.data;
    memcpy(keep, x, sizeof(float) * (size_t)d);
    for (int k = 0; k < d; k++) x[k] = (float)sin(0.7 * k + 0.3) * (1.0f + (k % 7) * 0.25f);
    matmul_job_t cls = {tf->wcls, tf->logits, 0, V};
    be->matmul(be, tf->xb, 1, d, &cls, 1, 0);
    const float *f = tf->logits.data;
    ok = 1;
    for (int i = 0; i < 64 && ok; i++) {
        int r = (int)((long long)i * (V - 1) / 63);
        float e = exact_logit(tf, r, x);
        ok = memcmp(&e, &f[r], sizeof e) == 0;
    }
    int full = 0;
    if (ok) {
        be->row_stats(be, tf->logits, 0, 1, V, NULL, &full, NULL, NULL);
        int got = -1;
        ok = screen_argmax(tf, 1, &got) == 0 && got == full;
    }
    memcpy(x, keep, sizeof(float) * (size_t)d);
    free(keep);
    tf->scr_steps = tf->scr_full = tf->scr_cands = 0;
    if (!ok) {
        free(tf->scr_q), free(tf->scr_qq);
        tf->scr_q = tf->scr_qq = NULL;
        return;
    }
    tf->scr_on = 1;
}

void transformer_prepare_greedy(transformer_t *tf) {
    if (tf->scr_able) screen_build(tf);
}

void transformer_screen_stats(const transformer_t *tf, long long *steps, long long *full, long long *cands) {
    *steps = tf->scr_steps, *full = tf->scr_full, *cands = tf->scr_cands;
}
int transformer_screening(const transformer_t *tf) { return tf->scr_on; }

/* One block of T <= max_block tokens at pos; want_logits: 0 none, 1 last row, 2 all rows. */
static void forward_block(transformer_t *tf, const int *tokens, int T, int pos, int want_logits) {
    backend_t *be = tf->be;
    const model_config_t *c = &tf->cfg;
    int d = c->dim, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    be->embed(be, tf->x, tf->tok_emb, tokens, T, d);
    for (int l = 0; l < c->n_layers; l++) {
        be->rmsnorm(be, tf->xb, tf->x, tf->rms_att[l], T, d, c->norm_eps);
        /* q into the scratch buffer; k and v straight into cache rows pos.. */
        matmul_job_t qkv[3] = {{tf->wq[l], tf->q, 0, qd},
                               {tf->wk[l], tf->kc[l], (int64_t)pos * kvd, kvd},
                               {tf->wv[l], tf->vc[l], (int64_t)pos * kvd, kvd}};
        be->matmul(be, tf->xb, T, d, qkv, 3, 0);
        if (c->qkv_bias) { /* q, k, v += ones(T, 1) b^T, before RoPE as in Qwen2 */
            matmul_job_t bias[3] = {{tf->bq[l], tf->q, 0, qd},
                                    {tf->bk[l], tf->kc[l], (int64_t)pos * kvd, kvd},
                                    {tf->bv[l], tf->vc[l], (int64_t)pos * kvd, kvd}};
            be->matmul(be, tf->ones, T, 1, bias, 3, 1);
        }
        be->rope(be, tf->q, 0, qd, T, c->n_heads, hd, pos, tf->rope_cs, c->rope_style);
        be->rope(be, tf->kc[l], (int64_t)pos * kvd, kvd, T, c->n_kv_heads, hd, pos, tf->rope_cs, c->rope_style);
        be->attention(be, tf->att, tf->q, tf->kc[l], tf->vc[l], T, pos, c->n_heads, c->n_kv_heads, hd);
        matmul_job_t o = {tf->wo[l], tf->x, 0, d};
        be->matmul(be, tf->att, T, qd, &o, 1, 1); /* x += att Wo^T */
        be->rmsnorm(be, tf->xb, tf->x, tf->rms_ffn[l], T, d, c->norm_eps);
        be->swiglu(be, tf->hb, tf->xb, tf->w1[l], tf->w3[l], T, d, c->hidden_dim);
        matmul_job_t down = {tf->w2[l], tf->x, 0, d};
        be->matmul(be, tf->hb, T, c->hidden_dim, &down, 1, 1); /* x += hb W2^T */
    }
    if (!want_logits) return;
    /* LOGITS_LAST: normalise and classify only the last row (an offset view) */
    int first = want_logits == 1 ? T - 1 : 0, n = T - first;
    tensor_t xl = tf->x, xbl = tf->xb;
    if (first) {
        /* rmsnorm works row by row, so shift by viewing from row `first` */
        xl.data = (float *)xl.data + (size_t)first * d, xl.ne -= (int64_t)first * d;
    }
    be->rmsnorm(be, xbl, xl, tf->rms_final, n, d, c->norm_eps);
    if (tf->scr_on && !tf->head_k) { /* until someone reads the logits */
        tf->cls_pending = n;
        return;
    }
    matmul_job_t cls = {tf->head_k ? tf->head_w : tf->wcls, tf->logits, 0, tf->head_k ? tf->head_k : c->vocab_size};
    be->matmul(be, xbl, n, d, &cls, 1, 0);
}

int transformer_run(transformer_t *tf, const int *tokens, int T, int pos, logits_mode_t mode) {
    const model_config_t *c = &tf->cfg;
    if (T < 1 || pos < 0 || pos > tf->cached || pos + T > c->seq_len) return -1;
    if (mode == LOGITS_ALL && T > tf->max_block) return -1;
    for (int t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size) return -1;
    tf->cached = pos; /* rollback: positions >= pos are overwritten */
    tf->cls_pending = 0;
    for (int done = 0; done < T;) {
        int n = T - done < tf->max_block ? T - done : tf->max_block;
        int last = done + n == T;
        /* a decoding step runs as one recorded graph where the backend has them */
        int graph = n == 1 && tf->be->graph_begin;
        if (graph) tf->be->graph_begin(tf->be);
        forward_block(tf, tokens + done, n, pos + done, last ? (mode == LOGITS_ALL ? 2 : 1) : 0);
        if (graph) tf->be->graph_end(tf->be);
        done += n;
        tf->cached = pos + done;
    }
    tf->logits_rows = mode == LOGITS_ALL ? T : 1;
    return 0;
}

const float *transformer_logits(transformer_t *tf) {
    cls_materialize(tf);
    if (tf->head_k) { /* widen the head's rows to the vocabulary: -inf (probability 0) elsewhere */
        int K = tf->head_k, V = tf->cfg.vocab_size;
        tf->be->to_host(tf->be, tf->head_rows, tf->logits, 0, (int64_t)tf->logits_rows * K);
        for (int t = 0; t < tf->logits_rows; t++) {
            float *row = tf->logits_full + (size_t)t * V;
            for (int i = 0; i < V; i++) row[i] = -INFINITY;
            for (int k = 0; k < K; k++) row[tf->head_ids[k]] = tf->head_rows[(size_t)t * K + k];
        }
        return tf->logits_full;
    }
    if (!tf->logits_host) return tf->logits.data;
    tf->be->to_host(tf->be, tf->logits_host, tf->logits, 0, (int64_t)tf->logits_rows * tf->cfg.vocab_size);
    return tf->logits_host;
}

const float *transformer_forward(transformer_t *tf, const int *tokens, int T, int pos, logits_mode_t mode) {
    return transformer_run(tf, tokens, T, pos, mode) ? NULL : transformer_logits(tf);
}

static tensor_t view(tensor_t t, int64_t off, int64_t n) {
    CHECK(off >= 0 && off + n <= t.ne);
    t.data = (float *)t.data + off, t.ne = n;
    return t;
}

/* forward_block for n sequences at once (see transformer_run_multi): the
 * matrix products over all rows; per sequence, RoPE at its positions, its
 * keys and values copied from the scratch rows into its cache (embed as a
 * row gather, as model/batch.c does), and attention over its cache. */
static void forward_multi(transformer_t *tf, int n, kv_cache_t *const *kv, const int *T, const int *pos, int R, int K) {
    backend_t *be = tf->be;
    const model_config_t *c = &tf->cfg;
    int d = c->dim, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    be->embed(be, tf->x, tf->tok_emb, tf->multi_tokens, R, d);
    for (int l = 0; l < c->n_layers; l++) {
        be->rmsnorm(be, tf->xb, tf->x, tf->rms_att[l], R, d, c->norm_eps);
        matmul_job_t qkv[3] = {{tf->wq[l], tf->q, 0, qd}, {tf->wk[l], tf->ks, 0, kvd}, {tf->wv[l], tf->vs, 0, kvd}};
        be->matmul(be, tf->xb, R, d, qkv, 3, 0);
        if (c->qkv_bias) {
            matmul_job_t bias[3] = {{tf->bq[l], tf->q, 0, qd}, {tf->bk[l], tf->ks, 0, kvd},
                                    {tf->bv[l], tf->vs, 0, kvd}};
            be->matmul(be, tf->ones, R, 1, bias, 3, 1);
        }
        for (int i = 0, r = 0; i < n; r += T[i], i++) {
            tensor_t *kc = kv[i] ? kv[i]->kc : tf->own_kc, *vc = kv[i] ? kv[i]->vc : tf->own_vc;
            be->rope(be, tf->q, (int64_t)r * qd, qd, T[i], c->n_heads, hd, pos[i], tf->rope_cs, c->rope_style);
            be->rope(be, tf->ks, (int64_t)r * kvd, kvd, T[i], c->n_kv_heads, hd, pos[i], tf->rope_cs, c->rope_style);
            be->embed(be, view(kc[l], (int64_t)pos[i] * kvd, (int64_t)T[i] * kvd), tf->ks, tf->row_ids + r, T[i], kvd);
            be->embed(be, view(vc[l], (int64_t)pos[i] * kvd, (int64_t)T[i] * kvd), tf->vs, tf->row_ids + r, T[i], kvd);
            be->attention(be, view(tf->att, (int64_t)r * qd, (int64_t)T[i] * qd),
                          view(tf->q, (int64_t)r * qd, (int64_t)T[i] * qd), kc[l], vc[l], T[i], pos[i], c->n_heads,
                          c->n_kv_heads, hd);
        }
        matmul_job_t o = {tf->wo[l], tf->x, 0, d};
        be->matmul(be, tf->att, R, qd, &o, 1, 1);
        be->rmsnorm(be, tf->xb, tf->x, tf->rms_ffn[l], R, d, c->norm_eps);
        be->swiglu(be, tf->hb, tf->xb, tf->w1[l], tf->w3[l], R, d, c->hidden_dim);
        matmul_job_t down = {tf->w2[l], tf->x, 0, d};
        be->matmul(be, tf->hb, R, c->hidden_dim, &down, 1, 1);
    }
    tensor_t xf = tf->xb;
    if (K == R) {
        be->rmsnorm(be, tf->xb, tf->x, tf->rms_final, R, d, c->norm_eps);
    } else { /* the K rows whose logits are kept, gathered, then normalised row by row as before */
        be->embed(be, tf->xb, tf->x, tf->keep_ids, K, d);
        be->rmsnorm(be, tf->x, tf->xb, tf->rms_final, K, d, c->norm_eps);
        xf = tf->x;
    }
    matmul_job_t cls = {tf->head_k ? tf->head_w : tf->wcls, tf->logits, 0, tf->head_k ? tf->head_k : c->vocab_size};
    be->matmul(be, xf, K, d, &cls, 1, 0);
}

int transformer_run_multi(transformer_t *tf, int n, kv_cache_t *const *kv, const int *const *tokens, const int *T,
                          const int *pos, const int *n_out) {
    const model_config_t *c = &tf->cfg;
    if (n < 1) return -1;
    int R = 0;
    for (int i = 0; i < n; i++) {
        int cached = kv[i] == tf->active ? tf->cached : kv[i] ? kv[i]->cached : tf->own_cached;
        if (T[i] < 1 || pos[i] < 0 || pos[i] > cached || pos[i] + T[i] > c->seq_len) return -1;
        for (int j = 0; j < i; j++)
            if (kv[j] == kv[i]) return -1; /* one block per cache */
        for (int t = 0; t < T[i]; t++)
            if (tokens[i][t] < 0 || tokens[i][t] >= c->vocab_size) return -1;
        if (n_out && (n_out[i] < 1 || n_out[i] > T[i])) return -1;
        R += T[i];
        if (R > tf->max_block) return -1;
    }
    if (!tf->ks.data) { /* the scratch rows, on first use */
        int64_t kvd = (int64_t)c->n_kv_heads * c->head_dim;
        tf->ks = tf->be->alloc(tf->be, tf->max_block * kvd), tf->vs = tf->be->alloc(tf->be, tf->max_block * kvd);
        tf->multi_tokens = malloc(sizeof(int) * (size_t)tf->max_block);
        tf->row_ids = malloc(sizeof(int) * (size_t)tf->max_block);
        tf->keep_ids = malloc(sizeof(int) * (size_t)tf->max_block);
        if (!tf->ks.data || !tf->vs.data || !tf->multi_tokens || !tf->row_ids || !tf->keep_ids) {
            tf->be->free(tf->be, &tf->ks), tf->be->free(tf->be, &tf->vs);
            free(tf->multi_tokens), free(tf->row_ids), free(tf->keep_ids);
            tf->multi_tokens = tf->row_ids = tf->keep_ids = NULL;
            return -1;
        }
        for (int r = 0; r < tf->max_block; r++) tf->row_ids[r] = r;
    }
    tf->cls_pending = 0; /* its logits are overwritten */
    int K = 0;
    for (int i = 0, r = 0; i < n; r += T[i], i++) {
        memcpy(tf->multi_tokens + r, tokens[i], sizeof(int) * (size_t)T[i]);
        for (int t = n_out ? T[i] - n_out[i] : 0; t < T[i]; t++) tf->keep_ids[K++] = r + t;
    }
    transformer_use_cache(tf, NULL); /* every cache's length is in its own record now */
    forward_multi(tf, n, kv, T, pos, R, K);
    for (int i = 0; i < n; i++) {
        if (kv[i]) kv[i]->cached = pos[i] + T[i];
        else tf->own_cached = tf->cached = pos[i] + T[i];
    }
    tf->logits_rows = K;
    return 0;
}

void transformer_logits_stats(transformer_t *tf, int n_rows, const int *next, int *argmax, float *max_p,
                              float *nll) {
    transformer_logits_stats_at(tf, 0, n_rows, next, argmax, max_p, nll);
}

void transformer_logits_stats_at(transformer_t *tf, int row0, int n_rows, const int *next, int *argmax, float *max_p,
                                 float *nll) {
    CHECK(row0 >= 0 && n_rows >= 1 && row0 + n_rows <= tf->max_block);
    if (tf->cls_pending) { /* argmaxes alone (-log p of no next token is 0): from the screen */
        int none = 1;
        for (int t = 0; next && nll && t < n_rows; t++) none &= next[t] < 0;
        if (argmax && !max_p && (!nll || none) && row0 == 0 && n_rows == tf->cls_pending &&
            screen_argmax(tf, n_rows, argmax) == 0) {
            for (int t = 0; nll && t < n_rows; t++) nll[t] = 0.0f;
            return;
        }
        cls_materialize(tf);
    }
    if (!tf->head_k) {
        tf->be->row_stats(tf->be, tf->logits, (int64_t)row0 * tf->cfg.vocab_size, n_rows, tf->cfg.vocab_size, next,
                          argmax, max_p, nll);
        return;
    }
    /* rows are over the head: next ids map to head rows and argmax rows back
     * to ids (ascending ids keep "lowest id on ties"); a next id outside the
     * head has probability 0 */
    int hn[64], *pn = NULL;
    CHECK(n_rows <= 64);
    if (next) {
        for (int t = 0; t < n_rows; t++) hn[t] = next[t] >= 0 ? tf->head_inv[next[t]] : -1;
        pn = hn;
    }
    tf->be->row_stats(tf->be, tf->logits, (int64_t)row0 * tf->head_k, n_rows, tf->head_k, pn, argmax, max_p, nll);
    for (int t = 0; t < n_rows; t++) {
        if (argmax) argmax[t] = tf->head_ids[argmax[t]];
        if (nll && next && next[t] >= 0 && hn[t] < 0) nll[t] = INFINITY;
    }
}

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

int transformer_set_head(transformer_t *tf, const int *ids, int k, char *err, size_t errlen) {
    backend_t *be = tf->be;
    int V = tf->cfg.vocab_size, d = tf->cfg.dim;
    cls_materialize(tf); /* a pending row belongs to the classifier it ran with */
    be->free(be, &tf->head_w);
    free(tf->head_ids), free(tf->head_inv), free(tf->head_rows), free(tf->logits_full);
    tf->head_ids = tf->head_inv = NULL, tf->head_rows = tf->logits_full = NULL, tf->head_k = 0;
    if (k <= 0 || !ids) return 0;
    if (tf->dummy || !tf->wcls_host) {
        snprintf(err, errlen, "a draft vocabulary needs real weights (not --dummy-weights)");
        return -1;
    }
    if (k > V) {
        snprintf(err, errlen, "draft vocabulary of %d tokens is larger than the model's %d", k, V);
        return -1;
    }
    int *sorted = malloc(sizeof(int) * (size_t)k);
    int *inv = malloc(sizeof(int) * (size_t)V);
    if (!sorted || !inv) goto oom;
    memcpy(sorted, ids, sizeof(int) * (size_t)k);
    qsort(sorted, (size_t)k, sizeof(int), cmp_int);
    for (int i = 0; i < V; i++) inv[i] = -1;
    for (int i = 0; i < k; i++) {
        if (sorted[i] < 0 || sorted[i] >= V || (i && sorted[i] == sorted[i - 1])) {
            snprintf(err, errlen, "token id %d is %s", sorted[i],
                     sorted[i] < 0 || sorted[i] >= V ? "outside the vocabulary" : "listed twice");
            free(sorted), free(inv);
            return -1;
        }
        inv[sorted[i]] = i;
    }
    /* gather the head's rows of the classifier, in the weights' dtype */
    dtype_t dt = tf->wcls.dtype;
    size_t rowb = (size_t)d * dtype_size(dt);
    char *rows = malloc(rowb * (size_t)k);
    if (!rows) goto oom;
    for (int i = 0; i < k; i++) memcpy(rows + rowb * (size_t)i, (const char *)tf->wcls_host + rowb * (size_t)sorted[i], rowb);
    tf->head_w = be->upload(be, rows, dt, (int64_t)k * d);
    free(rows);
    if (tf->head_w.data && backend_pack(be, &tf->head_w, k, d, 1) < 0) /* the full classifier's layout */
        be->free(be, &tf->head_w);
    tf->head_rows = malloc(sizeof(float) * (size_t)tf->max_block * (size_t)k);
    tf->logits_full = malloc(sizeof(float) * (size_t)tf->max_block * (size_t)V);
    if (!tf->head_w.data || !tf->head_rows || !tf->logits_full) goto oom;
    tf->head_ids = sorted, tf->head_inv = inv, tf->head_k = k;
    return 0;
oom:
    free(sorted), free(inv);
    be->free(be, &tf->head_w);
    free(tf->head_rows), free(tf->logits_full);
    tf->head_rows = tf->logits_full = NULL;
    snprintf(err, errlen, "out of memory for a draft vocabulary of %d tokens", k);
    return -1;
}

int transformer_head_size(const transformer_t *tf) { return tf->head_k; }

int transformer_cached(const transformer_t *tf) { return tf->cached; }

/* ---- KV caches of their own (one per sequence: a worker's sessions) ---- */

kv_cache_t *transformer_cache_new(transformer_t *tf, char *err, size_t errlen) {
    backend_t *be = tf->be;
    const model_config_t *c = &tf->cfg;
    int L = c->n_layers;
    int64_t n = (int64_t)c->seq_len * c->n_kv_heads * c->head_dim;
    kv_cache_t *kv = calloc(1, sizeof(*kv));
    tensor_t *arr = calloc((size_t)L * 2, sizeof(tensor_t));
    if (!kv || !arr) {
        free(kv), free(arr);
        snprintf(err, errlen, "out of memory for a KV cache");
        return NULL;
    }
    kv->n_layers = L, kv->kc = arr, kv->vc = arr + L;
    for (int l = 0; l < L; l++) {
        kv->kc[l] = be->alloc(be, n), kv->vc[l] = be->alloc(be, n);
        if (!kv->kc[l].data || !kv->vc[l].data) {
            transformer_cache_free(tf, &kv);
            snprintf(err, errlen, "%s: not enough memory for a KV cache (%.1f MB)", be->name,
                     (double)transformer_cache_bytes(tf) / 1e6);
            return NULL;
        }
    }
    return kv;
}

void transformer_cache_free(transformer_t *tf, kv_cache_t **pkv) {
    if (!pkv || !*pkv) return;
    kv_cache_t *kv = *pkv;
    if (tf->active == kv) transformer_use_cache(tf, NULL);
    for (int l = 0; l < kv->n_layers; l++) tf->be->free(tf->be, &kv->kc[l]), tf->be->free(tf->be, &kv->vc[l]);
    free(kv->kc); /* kc and vc share one allocation */
    free(kv);
    *pkv = NULL;
}

void transformer_use_cache(transformer_t *tf, kv_cache_t *kv) {
    if (kv == tf->active) return;
    if (tf->active) tf->active->cached = tf->cached; /* put the length back with its cache */
    else tf->own_cached = tf->cached;
    tf->active = kv;
    tf->kc = kv ? kv->kc : tf->own_kc, tf->vc = kv ? kv->vc : tf->own_vc;
    tf->cached = kv ? kv->cached : tf->own_cached;
}

size_t transformer_cache_bytes(const transformer_t *tf) {
    const model_config_t *c = &tf->cfg;
    return (size_t)2 * c->n_layers * c->seq_len * c->n_kv_heads * c->head_dim * sizeof(float);
}

void transformer_truncate(transformer_t *tf, int len) {
    if (len >= 0 && len < tf->cached) tf->cached = len;
}

const model_config_t *transformer_config(const transformer_t *tf) { return &tf->cfg; }
int transformer_max_block(const transformer_t *tf) { return tf->max_block; }
