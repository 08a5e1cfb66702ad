/* server.c - see server.h. */
#include "small_worker/server.h"

#include <stdio.h>
#include <stdlib.h>

/* One session's state. */
typedef struct {
    kv_cache_t *kv;
    drafter_t *drafter; /* replaced by SESSION */
    sampler_t *smp;     /* NULL: greedy */
} small_session_t;

void *small_server_session_new(void *ctx, char *err, int errlen) {
    small_server_t *s = ctx;
    small_session_t *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, (size_t)errlen, "out of memory for a session");
        return NULL;
    }
    if (!(x->kv = transformer_cache_new(s->tf, err, (size_t)errlen))) {
        free(x);
        return NULL;
    }
    if (!(x->drafter = drafter_new(s->tf, NULL, 0, s->stop_a, s->stop_b))) {
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
    transformer_cache_free(s->tf, &x->kv);
    drafter_destroy(&x->drafter);
    sampler_destroy(&x->smp);
    free(x);
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
    sampler_destroy(&x->smp);
    x->drafter = d, x->smp = smp;
    return proto_encode_simple(out, id, MSG_PONG);
}

int small_server_handle(void *ctx, void *st, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen) {
    small_server_t *s = ctx;
    small_session_t *x = st;
    if (req->type == MSG_SESSION) return session(s, x, &req->session, out, req->id, err, errlen);
    if (req->type != MSG_DRAFT_REQ) {
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
    transformer_use_cache(s->tf, x->kv);
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
