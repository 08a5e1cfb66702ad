/* server.c - see server.h. */
#include "large_worker/server.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/accept.h"
#include "proto/serve.h"

/* One session's state. */
typedef struct {
    serve_session_t b; /* its KV cache and sampler (proto/serve.h) */
    verifier_t *verifier; /* replaced by SESSION */
} large_session_t;

void *large_server_session_new(void *ctx, char *err, int errlen) {
    large_server_t *s = ctx;
    large_session_t *x = serve_session_alloc(s->tf, sizeof *x, err, errlen);
    if (x && !(x->verifier = verifier_new(s->tf, NULL, 0))) {
        large_server_session_free(ctx, x);
        snprintf(err, (size_t)errlen, "out of memory for a session");
        return NULL;
    }
    return x;
}

void large_server_session_free(void *ctx, void *st) {
    large_server_t *s = ctx;
    large_session_t *x = st;
    if (!x) return;
    verifier_destroy(&x->verifier);
    serve_session_release(s->tf, x);
}

static int session(large_server_t *s, large_session_t *x, const session_req_t *q, proto_buf_t *out, uint32_t id,
                   char *err, int errlen) {
    sampler_t *smp = NULL;
    verifier_t *v = NULL;
    if ((q->temperature > 0 && !(smp = sampler_new(s->vocab, q->temperature, q->top_p, 0, q->seed))) ||
        !(v = verifier_new(s->tf, smp, q->temperature))) {
        sampler_destroy(&smp);
        snprintf(err, (size_t)errlen, "out of memory setting up sampling");
        return -1;
    }
    verifier_destroy(&x->verifier);
    sampler_destroy(&x->b.smp);
    x->verifier = v, x->b.smp = smp;
    return proto_encode_simple(out, id, MSG_PONG);
}

int large_server_handle(void *ctx, void *st, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen) {
    large_server_t *s = ctx;
    large_session_t *x = st;
    if (req->type == MSG_SESSION) return session(s, x, &req->session, out, req->id, err, errlen);
    if (req->type != MSG_VERIFY_REQ) {
        if (req->type == MSG_SOURCE)
            snprintf(err, (size_t)errlen, "this worker's model is decoder-only: it takes a prompt, not a source");
        else
            snprintf(err, (size_t)errlen, "the large worker serves verify requests, not message type %d", req->type);
        return -1;
    }
    const verify_req_t *q = &req->verify_req;
    plane_t *pl = s->plane ? *s->plane : NULL;
    if (q->accept_here && (!pl || q->plane_rows < q->n_out - 1)) {
        snprintf(err, (size_t)errlen, pl ? "verify: %d distributions for a chunk of %d positions"
                                         : "verify: the distributions should come over the data plane, but none is open",
                 q->plane_rows, q->n_out);
        return -1;
    }
    verify_res_t res;
    transformer_use_cache(s->tf, x->b.kv);
    if (verifier_verify(x->verifier, q, &res, err, errlen) != 0) return -1;
    res.accept_done = 0;
    if (q->accept_here) { /* the small model's distributions arrive while (or after) the pass ran */
        if (!s->q && !(s->q = malloc(sizeof(float) * (size_t)s->vocab * (BILD_MAX_DRAFT + 1)))) {
            snprintf(err, (size_t)errlen, "out of memory");
            return -1;
        }
        char why[512];
        if (q->plane_rows && plane_recv(pl, s->q, q->plane_rows, s->vocab, s->timeout_ms, why, sizeof why)) {
            snprintf(err, (size_t)errlen, "verify: %s", why);
            return -1;
        }
        unsigned long long rng = q->rng;
        int m, z;
        if (accept_chunk(q->tokens + (q->T - q->n_out), q->n_out, res.probs, s->q, s->vocab, q->bonus, &rng, &m, &z)) {
            snprintf(err, (size_t)errlen, "verify: the large model's distribution is empty");
            return -1;
        }
        res.accept_done = 1, res.accept_m = m, res.accept_z = z, res.rng = rng;
        res.probs = NULL; /* the verdict replaces the distributions */
    }
    if (proto_encode_verify_res(out, req->id, &res, s->vocab) != 0) {
        snprintf(err, (size_t)errlen, "out of memory encoding the reply");
        return -1;
    }
    return 0;
}

int large_server_can_batch(void *ctx, const proto_msg_t *req) {
    large_server_t *s = ctx;
    /* a block of draft tokens, or a prompt with its first tokens, its acceptance done by the coordinator */
    return req->type == MSG_VERIFY_REQ && !req->verify_req.accept_here &&
           req->verify_req.T <= transformer_max_block(s->tf) / 2;
}

void large_server_run_batch(void *ctx, int n, void *const *st, const proto_msg_t *const *req, proto_buf_t **out,
                            int *rc, char (*err)[512]) {
    large_server_t *s = ctx;
    kv_cache_t *kv[64];
    const int *toks[64];
    int T[64], pos[64], n_out[64], row0[64], idx[64], k = 0, rows = 0, kept = 0;
    for (int i = 0; i < n; i++) {
        const large_session_t *x = st[i];
        const verify_req_t *q = &req[i]->verify_req;
        rc[i] = verifier_check(x->verifier, q, err[i], 512) ? -1 : 1;
        if (rc[i] < 0 || k == 64 || rows + q->T > transformer_max_block(s->tf)) continue;
        kv[k] = x->b.kv, toks[k] = q->tokens, T[k] = q->T, pos[k] = q->pos, n_out[k] = q->n_out, idx[k] = i;
        row0[k] = kept; /* the logits rows are the kept ones: each block's last n_out */
        rows += q->T, kept += q->n_out, k++;
    }
    /* what does not run together (one left, too many rows, an invalid block) stays rc 1: served alone */
    if (k < 2 || transformer_run_multi(s->tf, k, kv, toks, T, pos, n_out) != 0) return;
    s->batches++, s->batched += k;
    for (int j = 0; j < k; j++) {
        int i = idx[j];
        large_session_t *x = st[i];
        verify_res_t res;
        verifier_finish(x->verifier, &req[i]->verify_req, row0[j], &res);
        res.accept_done = 0;
        rc[i] = 0;
        if (proto_encode_verify_res(out[i], req[i]->id, &res, s->vocab) != 0) {
            snprintf(err[i], 512, "out of memory encoding the reply");
            rc[i] = -1;
        }
    }
}

void large_server_free(large_server_t *s) {
    free(s->q);
    s->q = NULL;
}
