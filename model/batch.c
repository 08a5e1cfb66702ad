/* batch.c - B sequences in lockstep on the ops.h backend (see batch.h).
 *
 * Per layer, for the step's n rows x (n, dim), all at position pos:
 *   xb = rmsnorm(x) ; q, k, v = xb Wq^T, xb Wk^T, xb Wv^T  (n rows each) ;
 *   rope(q), rope(k) as one row of n * heads heads at pos ;
 *   row b's k and v copied into its cache at pos ;
 *   att[b] = attention(q[b], row b's cache), one call per row ;
 *   x += att Wo^T ; x += swiglu(rmsnorm(x)) W2^T
 * then logits = rmsnorm(x) Wcls^T for all n rows. This is transformer.c's
 * forward_block with T = 1 per sequence, the n sequences stacked where it
 * stacks the T tokens of a block; only the matrix products see all n rows.
 *
 * Why the k/v copy: a sequence's cache must be contiguous (position after
 * position, kvd apart) for attention to stream it; with the n rows of a
 * step written side by side by the projection straight into a
 * position-major cache, a row's keys would lie n * kvd apart, and reading
 * them (one page per position at stories15M's widths and n = 32) made
 * attention four times slower than the whole rest of the step. The ops
 * have no copy; embed (a row gather: out[0] = table[ids[0]]) with T = 1 is
 * one. Tensor views at an element offset are made by pointer arithmetic on
 * the backend's data pointer, as transformer.c does for its last row.
 */
#include "model/batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/check.h"
#include "model/transformer.h"

struct batch {
    backend_t *be;
    model_config_t cfg;
    int max_rows, max_len;
    int rows;   /* rows of the current run */
    int cached; /* positions every sequence of the run holds */
    /* weights wrapped for the backend; per-layer arrays of n_layers */
    tensor_t tok_emb, rms_final, wcls;
    tensor_t *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3;
    tensor_t *bq, *bk, *bv; /* (n) each, only when cfg.qkv_bias */
    tensor_t ones;          /* (max_rows, 1) of 1.0: the input of the bias "matmul" */
    /* KV caches: per layer (max_rows, max_len, kvd): sequence b from element b * max_len * kvd */
    tensor_t *kc, *vc;
    tensor_t ks, vs;  /* (R, kvd) this step's keys and values, before the copy into the caches */
    /* activations for max_rows rows */
    tensor_t x;       /* (R, dim) residual stream */
    tensor_t xb;      /* (R, dim) normalised input of a sub-layer */
    tensor_t q;       /* (R, n_heads * head_dim) */
    tensor_t att;     /* (R, n_heads * head_dim) attention output */
    tensor_t hb;      /* (R, hidden_dim) */
    tensor_t logits;  /* (R, vocab) */
    tensor_t rope_cs; /* (max_len, head_dim/2, 2) */
    float *logits_host; /* NULL when the backend's logits are host memory */
    int *row_ids;       /* (R) 0, 1, ..., R-1: embed's row indices for the copies */
    int n_owned;        /* weight tensors the backend copied (uploads) */
    tensor_t **owned;
};

/* The backend's view of host weights: the memory itself where it can read
 * it (CPU), else an uploaded copy that batch_destroy frees. */
static int wrap(batch_t *bt, tensor_t *t, const void *p, dtype_t dt, int64_t n) {
    backend_t *be = bt->be;
    *t = be->wrap_host(be, (void *)p, dt, n);
    if (t->data) return 1;
    *t = be->upload(be, p, dt, n);
    if (!t->data) return 0;
    bt->owned[bt->n_owned++] = t;
    return 1;
}

/* The (n, d) matrix *t in the backend's own layout (backend_pack), listed
 * as owned. 0 if the memory could not be had. */
static int pack(batch_t *bt, tensor_t *t, int n, int d) {
    int owned = 0;
    for (int i = 0; i < bt->n_owned && !owned; i++) owned = bt->owned[i] == t;
    int r = backend_pack(bt->be, t, n, d, owned);
    if (r == 1 && !owned) bt->owned[bt->n_owned++] = t;
    return r >= 0;
}

batch_t *batch_new(backend_t *be, const model_config_t *cfg, const model_weights_t *w, int max_rows, int max_len,
                   char *err, size_t errlen) {
    if (w->dummy) {
        snprintf(err, errlen, "batched generation needs real weights (not --dummy-weights)");
        return NULL;
    }
    if (max_rows < 1 || max_len < 1 || max_len > cfg->seq_len) {
        snprintf(err, errlen, "batch of %d rows of %d positions: needs at least one of each and at most the "
                              "context of %d positions", max_rows, max_len, cfg->seq_len);
        return NULL;
    }
    batch_t *bt = calloc(1, sizeof(*bt));
    if (!bt) goto oom;
    bt->be = be, bt->cfg = *cfg, bt->max_rows = max_rows, bt->max_len = max_len;
    const model_config_t *c = cfg;
    int L = c->n_layers, R = max_rows;
    int64_t d = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim,
            hid = c->hidden_dim, V = c->vocab_size;
    tensor_t *arr = calloc((size_t)L * 14, sizeof(tensor_t));
    if (!arr) goto oom;
    if (!(bt->owned = calloc((size_t)L * 14 + 3, sizeof(tensor_t *)))) {
        free(arr);
        goto oom;
    }
    bt->rms_att = arr, bt->wq = arr + L, bt->wk = arr + 2 * L, bt->wv = arr + 3 * L, bt->wo = arr + 4 * L;
    bt->rms_ffn = arr + 5 * L, bt->w1 = arr + 6 * L, bt->w2 = arr + 7 * L, bt->w3 = arr + 8 * L;
    bt->kc = arr + 9 * L, bt->vc = arr + 10 * L;
    bt->bq = arr + 11 * L, bt->bk = arr + 12 * L, bt->bv = arr + 13 * L;
    /* matrices in the weights' dtype; norm weights and biases always f32 */
    dtype_t md = w->dtype, f = DTYPE_F32;
    int ok = wrap(bt, &bt->tok_emb, w->tok_emb, md, V * d) && wrap(bt, &bt->rms_final, w->rms_final, f, d) &&
             (c->shared_classifier ? (bt->wcls = bt->tok_emb, 1) : wrap(bt, &bt->wcls, w->wcls, md, V * d));
    for (int l = 0; l < L && ok; l++)
        ok = wrap(bt, &bt->rms_att[l], w->rms_att[l], f, d) && wrap(bt, &bt->wq[l], w->wq[l], md, qd * d) &&
             wrap(bt, &bt->wk[l], w->wk[l], md, kvd * d) && wrap(bt, &bt->wv[l], w->wv[l], md, kvd * d) &&
             wrap(bt, &bt->wo[l], w->wo[l], md, d * qd) && wrap(bt, &bt->rms_ffn[l], w->rms_ffn[l], f, d) &&
             wrap(bt, &bt->w1[l], w->w1[l], md, hid * d) && wrap(bt, &bt->w2[l], w->w2[l], md, d * hid) &&
             wrap(bt, &bt->w3[l], w->w3[l], md, hid * d) &&
             (!c->qkv_bias || (wrap(bt, &bt->bq[l], w->bq[l], f, qd) && wrap(bt, &bt->bk[l], w->bk[l], f, kvd) &&
                               wrap(bt, &bt->bv[l], w->bv[l], f, kvd)));
    /* the matrices in the backend's own layout, as transformer_new has them */
    ok = ok && pack(bt, &bt->wcls, V, d);
    for (int l = 0; l < L && ok; l++)
        ok = pack(bt, &bt->wq[l], qd, d) && pack(bt, &bt->wk[l], kvd, d) && pack(bt, &bt->wv[l], kvd, d) &&
             pack(bt, &bt->wo[l], d, qd) && pack(bt, &bt->w1[l], hid, d) && pack(bt, &bt->w2[l], d, hid) &&
             pack(bt, &bt->w3[l], hid, d);
    if (!ok) {
        snprintf(err, errlen, "%s: not enough memory for the weights (%.2f GB)", be->name,
                 (double)model_n_params(c) * dtype_size(md) / 1e9);
        batch_destroy(&bt);
        return NULL;
    }
    for (int l = 0; l < L; l++) {
        bt->kc[l] = be->alloc(be, (int64_t)max_len * R * kvd);
        bt->vc[l] = be->alloc(be, (int64_t)max_len * R * kvd);
        if (!bt->kc[l].data || !bt->vc[l].data) goto oom;
    }
    bt->x = be->alloc(be, R * d), bt->xb = be->alloc(be, R * d), bt->q = be->alloc(be, R * qd);
    bt->att = be->alloc(be, R * qd), bt->hb = be->alloc(be, R * hid), bt->logits = be->alloc(be, R * V);
    bt->ks = be->alloc(be, R * kvd), bt->vs = be->alloc(be, R * kvd);
    if (!bt->x.data || !bt->xb.data || !bt->q.data || !bt->att.data || !bt->hb.data || !bt->logits.data ||
        !bt->ks.data || !bt->vs.data || !(bt->row_ids = malloc(sizeof(int) * (size_t)R)))
        goto oom;
    for (int i = 0; i < R; i++) bt->row_ids[i] = i;
    if (c->qkv_bias) {
        float *one = malloc(sizeof(float) * (size_t)R);
        bt->ones = be->alloc(be, R);
        if (!one || !bt->ones.data) {
            free(one);
            goto oom;
        }
        for (int i = 0; i < R; i++) one[i] = 1.0f;
        be->from_host(be, bt->ones, 0, one, R);
        free(one);
    }
    bt->rope_cs = be->alloc(be, (int64_t)max_len * c->head_dim);
    float *cs = malloc(sizeof(float) * (size_t)max_len * c->head_dim);
    if (!bt->rope_cs.data || !cs) {
        free(cs);
        goto oom;
    }
    transformer_rope_table(c, max_len, cs);
    be->from_host(be, bt->rope_cs, 0, cs, (int64_t)max_len * c->head_dim);
    free(cs);
    if (be->device != DEVICE_CPU && !(bt->logits_host = malloc(sizeof(float) * (size_t)R * V))) goto oom;
    return bt;
oom:
    snprintf(err, errlen, "out of memory allocating activations and KV caches for %d rows of %d positions",
             max_rows, max_len);
    batch_destroy(&bt);
    return NULL;
}

void batch_destroy(batch_t **pb) {
    if (!pb || !*pb) return;
    batch_t *bt = *pb;
    backend_t *be = bt->be;
    for (int i = 0; i < bt->n_owned; i++) be->free(be, bt->owned[i]);
    free(bt->owned);
    if (bt->rms_att) {
        for (int l = 0; l < bt->cfg.n_layers; l++) be->free(be, &bt->kc[l]), be->free(be, &bt->vc[l]);
        free(bt->rms_att); /* the per-layer arrays share one allocation */
    }
    be->free(be, &bt->x), be->free(be, &bt->xb), be->free(be, &bt->q);
    be->free(be, &bt->att), be->free(be, &bt->hb), be->free(be, &bt->logits), be->free(be, &bt->rope_cs);
    be->free(be, &bt->ones), be->free(be, &bt->ks), be->free(be, &bt->vs);
    free(bt->logits_host);
    free(bt->row_ids);
    free(bt);
    *pb = NULL;
}

/* A view of n elements of t from element off (a pointer into the backend's memory). */
static tensor_t view(tensor_t t, int64_t off, int64_t n) {
    CHECK(off >= 0 && off + n <= t.ne);
    t.data = (float *)t.data + off, t.ne = n;
    return t;
}

const float *batch_step(batch_t *bt, const int *tokens, int n, int pos) {
    const model_config_t *c = &bt->cfg;
    if (n < 1 || n > bt->max_rows || pos < 0 || pos >= bt->max_len) return NULL;
    if (pos > 0 && (n != bt->rows || pos > bt->cached)) return NULL;
    for (int b = 0; b < n; b++)
        if (tokens[b] < 0 || tokens[b] >= c->vocab_size) return NULL;
    bt->rows = n, bt->cached = pos; /* pos < cached: positions >= pos are overwritten */
    backend_t *be = bt->be;
    int d = c->dim, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    int64_t seq = (int64_t)bt->max_len * kvd; /* one sequence's cache */
    be->embed(be, bt->x, bt->tok_emb, tokens, n, d);
    for (int l = 0; l < c->n_layers; l++) {
        be->rmsnorm(be, bt->xb, bt->x, bt->rms_att[l], n, d, c->norm_eps);
        matmul_job_t qkv[3] = {{bt->wq[l], bt->q, 0, qd}, {bt->wk[l], bt->ks, 0, kvd}, {bt->wv[l], bt->vs, 0, kvd}};
        be->matmul(be, bt->xb, n, d, qkv, 3, 0);
        if (c->qkv_bias) { /* q, k, v += ones(n, 1) b^T, before RoPE as in Qwen2 */
            matmul_job_t bias[3] = {{bt->bq[l], bt->q, 0, qd}, {bt->bk[l], bt->ks, 0, kvd},
                                    {bt->bv[l], bt->vs, 0, kvd}};
            be->matmul(be, bt->ones, n, 1, bias, 3, 1);
        }
        /* every head of the step is at pos: one row of n * heads heads each */
        be->rope(be, bt->q, 0, n * qd, 1, n * c->n_heads, hd, pos, bt->rope_cs, c->rope_style);
        be->rope(be, bt->ks, 0, n * kvd, 1, n * c->n_kv_heads, hd, pos, bt->rope_cs, c->rope_style);
        for (int b = 0; b < n; b++) {
            /* row b's key and value into its cache at pos, then its attention
             * over its own positions 0..pos, exactly as a single-token step */
            tensor_t kc = view(bt->kc[l], b * seq, seq), vc = view(bt->vc[l], b * seq, seq);
            be->embed(be, view(kc, (int64_t)pos * kvd, kvd), bt->ks, &bt->row_ids[b], 1, kvd);
            be->embed(be, view(vc, (int64_t)pos * kvd, kvd), bt->vs, &bt->row_ids[b], 1, kvd);
            be->attention(be, view(bt->att, (int64_t)b * qd, qd), view(bt->q, (int64_t)b * qd, qd), kc, vc, 1, pos,
                          c->n_heads, c->n_kv_heads, hd);
        }
        matmul_job_t o = {bt->wo[l], bt->x, 0, d};
        be->matmul(be, bt->att, n, qd, &o, 1, 1); /* x += att Wo^T */
        be->rmsnorm(be, bt->xb, bt->x, bt->rms_ffn[l], n, d, c->norm_eps);
        be->swiglu(be, bt->hb, bt->xb, bt->w1[l], bt->w3[l], n, d, c->hidden_dim);
        matmul_job_t down = {bt->w2[l], bt->x, 0, d};
        be->matmul(be, bt->hb, n, c->hidden_dim, &down, 1, 1); /* x += hb W2^T */
    }
    be->rmsnorm(be, bt->xb, bt->x, bt->rms_final, n, d, c->norm_eps);
    matmul_job_t cls = {bt->wcls, bt->logits, 0, c->vocab_size};
    be->matmul(be, bt->xb, n, d, &cls, 1, 0);
    bt->cached = pos + 1;
    if (!bt->logits_host) return bt->logits.data;
    be->to_host(be, bt->logits_host, bt->logits, 0, (int64_t)n * c->vocab_size);
    return bt->logits_host;
}

void batch_logits_stats(batch_t *bt, const int *next, int *argmax, float *max_p, float *nll) {
    CHECK(bt->rows >= 1);
    bt->be->row_stats(bt->be, bt->logits, 0, bt->rows, bt->cfg.vocab_size, next, argmax, max_p, nll);
}

int batch_cached(const batch_t *bt) { return bt->cached; }
int batch_rows(const batch_t *bt) { return bt->rows; }
int batch_max_rows(const batch_t *bt) { return bt->max_rows; }
const model_config_t *batch_config(const batch_t *bt) { return &bt->cfg; }
