/* server.c - see server.h. */
#include "small_worker/server.h"

#include <stdio.h>

static int session(small_server_t *s, const session_req_t *q, proto_buf_t *out, uint32_t id, char *err, int errlen) {
    sampler_t *smp = NULL;
    drafter_t *d = NULL;
    if ((q->temperature > 0 && !(smp = sampler_new(s->vocab, q->temperature, q->top_p, 0, q->seed))) ||
        !(d = drafter_new(s->tf, smp, q->temperature, s->stop_a, s->stop_b))) {
        sampler_destroy(&smp);
        snprintf(err, (size_t)errlen, "out of memory setting up sampling");
        return -1;
    }
    drafter_destroy(&s->drafter);
    sampler_destroy(&s->smp);
    s->drafter = d, s->smp = smp;
    return proto_encode_simple(out, id, MSG_PONG);
}

int small_server_handle(void *ctx, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen) {
    small_server_t *s = ctx;
    if (req->type == MSG_SESSION) return session(s, &req->session, out, req->id, err, errlen);
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
    if (drafter_draft(s->drafter, q, &res, err, errlen) != 0) return -1;
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

void small_server_free(small_server_t *s) {
    drafter_destroy(&s->drafter);
    sampler_destroy(&s->smp);
}
