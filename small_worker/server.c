/* server.c - see server.h. */
#include "small_worker/server.h"

#include <stdio.h>
#include <stdlib.h>

#include "proto/serve.h"

/* One session's state. */
typedef struct {
    serve_session_t b;  /* its KV cache and sampler (proto/serve.h) */
    drafter_t *drafter; /* replaced by SESSION */
} small_session_t;

void *small_server_session_new(void *ctx, char *err, int errlen) {
    small_server_t *s = ctx;
    small_session_t *x = serve_session_alloc(s->tf, sizeof *x, err, errlen);
    if (x && !(x->drafter = drafter_new(s->tf, NULL, 0, s->stop_a, s->stop_b))) {
        small_server_session_free(ctx, x);
        snprintf(err, (size_t)errlen, "out of memory for a session");
        return NULL;
    }
    return x;
}

void small_server_session_free(void *ctx, void *st) {
    small_server_t *s = ctx;
    small_session_t *x = st;
    if (!x) return;
    drafter_destroy(&x->drafter);
    serve_session_release(s->tf, x);
}

static int session(small_server_t *s, small_session_t *x, const session_req_t *q, proto_buf_t *out, uint32_t id,
                   char *err, int errlen) {
    sampler_t *smp = NULL;
    drafter_t *d = NULL;
    if ((q->temperature > 0 && !(smp = sampler_new(s->vocab, q->temperature, q->top_p, 0, q->seed))) ||
        !(d = drafter_new(s->tf, smp, q->temperature, s->stop_a, s->stop_b))) {
        sampler_destroy(&smp);
        snprintf(err, (size_t)errlen, "out of memory setting up sampling");
        return -1;
    }
    drafter_destroy(&x->drafter);
    sampler_destroy(&x->b.smp);
    x->drafter = d, x->b.smp = smp;
    return proto_encode_simple(out, id, MSG_PONG);
}

int small_server_handle(void *ctx, void *st, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen) {
    small_server_t *s = ctx;
    small_session_t *x = st;
    if (req->type == MSG_SESSION) return session(s, x, &req->session, out, req->id, err, errlen);
    if (req->type != MSG_DRAFT_REQ) {
        if (req->type == MSG_SOURCE)
            snprintf(err, (size_t)errlen, "this worker's model is decoder-only: it takes a prompt, not a source");
        else
            snprintf(err, (size_t)errlen, "the small worker serves draft requests, not message type %d", req->type);
        return -1;
    }
    const draft_req_t *q = &req->draft_req;
    plane_t *pl = s->plane ? *s->plane : NULL;
    if (q->plane_send && !pl) {
        snprintf(err, (size_t)errlen, "draft: the distributions should go over the data plane, but none is open");
        return -1;
    }
    draft_res_t res;
    transformer_use_cache(s->tf, x->b.kv);
    if (drafter_draft(x->drafter, q, &res, err, errlen) != 0) return -1;
    if (q->plane_send) { /* the distributions go to the large worker, not back in the reply */
        int rows = res.n + (res.end == DRAFT_STOP);
        char why[512];
        if (rows && plane_send(pl, res.probs, rows, s->vocab, why, sizeof why)) {
            snprintf(err, (size_t)errlen, "draft: %s", why);
            return -1;
        }
        res.probs = NULL;
    }
    if (proto_encode_draft_res(out, req->id, &res, s->vocab) != 0) {
        snprintf(err, (size_t)errlen, "out of memory encoding the reply");
        return -1;
    }
    return 0;
}

int small_server_can_batch(void *ctx, const proto_msg_t *req) {
    small_server_t *s = ctx;
    /* a draft that feeds a few tokens (not a whole prompt) */
    return req->type == MSG_DRAFT_REQ && req->draft_req.n_feed <= transformer_max_block(s->tf) / 4;
}

void small_server_run_batch(void *ctx, int n, void *const *st, const proto_msg_t *const *req, proto_buf_t **out,
                            int *rc, char (*err)[512]) {
    small_server_t *s = ctx;
    int seq_len = transformer_config(s->tf)->seq_len, max_rows = transformer_max_block(s->tf);
    kv_cache_t *kv[64];
    const int *toks[64];
    int T[64], pos[64], row[64], idx[64], next[64], k = 0, rows = 0;
    draft_res_t res[64];
    for (int i = 0; i < n; i++) {
        small_session_t *x = st[i];
        const draft_req_t *q = &req[i]->draft_req;
        rc[i] = drafter_begin(x->drafter, q, &res[i], err[i], 512) ? -1 : 1;
        if (rc[i] < 0 || k == 64 || rows + q->n_feed > max_rows) continue;
        kv[k] = x->b.kv, toks[k] = q->feed, T[k] = q->n_feed, pos[k] = q->keep, idx[k] = i;
        rows += q->n_feed, row[k] = rows - 1, k++;
    }
    /* what does not run together stays rc 1: served alone */
    if (k < 2 || transformer_run_multi(s->tf, k, kv, toks, T, pos, NULL) != 0) return;
    s->batches++, s->batched += k;
    for (int j = 0; j < k; j++) rc[idx[j]] = 0, res[idx[j]].passes = 1, pos[j] += T[j];
    /* then single steps in lockstep, each session until its draft ends (kv[j] NULL) */
    for (;;) {
        int m = 0, who[64];
        for (int j = 0; j < k; j++) {
            if (!kv[j]) continue;
            int i = idx[j];
            small_session_t *x = st[i];
            int tok = drafter_step(x->drafter, &req[i]->draft_req, row[j], &res[i]);
            if (tok >= 0 && pos[j] >= seq_len) { /* the context is full: what was drafted, as a fallback */
                res[i].end = DRAFT_FALLBACK, res[i].end_max_p = 0;
                tok = -1;
            }
            if (tok < 0) {
                res[i].cached = pos[j];
                kv[j] = NULL;
                continue;
            }
            next[j] = tok;
            who[m++] = j;
        }
        if (!m) break;
        kv_cache_t *kv2[64];
        const int *toks2[64];
        int T2[64], pos2[64];
        for (int a = 0; a < m; a++) kv2[a] = kv[who[a]], toks2[a] = &next[who[a]], T2[a] = 1, pos2[a] = pos[who[a]];
        if (transformer_run_multi(s->tf, m, kv2, toks2, T2, pos2, NULL) != 0) { /* cannot happen: checked above */
            for (int a = 0; a < m; a++) {
                int i = idx[who[a]];
                snprintf(err[i], 512, "draft: a batched step failed");
                rc[i] = -1, kv[who[a]] = NULL;
            }
            break;
        }
        for (int a = 0; a < m; a++) row[who[a]] = a, pos[who[a]]++, res[idx[who[a]]].passes++;
    }
    for (int j = 0; j < k; j++) {
        int i = idx[j];
        if (!rc[i] && proto_encode_draft_res(out[i], req[i]->id, &res[i], s->vocab) != 0) {
            snprintf(err[i], 512, "out of memory encoding the reply");
            rc[i] = -1;
        }
    }
}
