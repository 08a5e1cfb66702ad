/* server.c - see server.h. */
#include "large_worker/server.h"

#include <stdio.h>
#include <stdlib.h>

#include "coordinator/accept.h"

static int session(large_server_t *s, const session_req_t *q, proto_buf_t *out, uint32_t id, char *err, int errlen) {
    sampler_t *smp = NULL;
    verifier_t *v = NULL;
    if ((q->temperature > 0 && !(smp = sampler_new(s->vocab, q->temperature, q->top_p, 0, q->seed))) ||
        !(v = verifier_new(s->tf, smp, q->temperature))) {
        sampler_destroy(&smp);
        snprintf(err, (size_t)errlen, "out of memory setting up sampling");
        return -1;
    }
    verifier_destroy(&s->verifier);
    sampler_destroy(&s->smp);
    s->verifier = v, s->smp = smp;
    return proto_encode_simple(out, id, MSG_PONG);
}

int large_server_handle(void *ctx, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen) {
    large_server_t *s = ctx;
    if (req->type == MSG_SESSION) return session(s, &req->session, out, req->id, err, errlen);
    if (req->type != MSG_VERIFY_REQ) {
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
    if (verifier_verify(s->verifier, q, &res, err, errlen) != 0) return -1;
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

void large_server_free(large_server_t *s) {
    verifier_destroy(&s->verifier);
    sampler_destroy(&s->smp);
    free(s->q);
    s->q = NULL;
}
