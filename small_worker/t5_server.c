/* t5_server.c - see t5_server.h. */
#include "small_worker/t5_server.h"

#include <stdio.h>
#include <stdlib.h>

#include "small_worker/t5_drafter.h"

typedef struct {
    t5_serve_session_t b;
    t5_drafter_t *d; /* on b.s */
} session_t;

void *small_t5_session_new(void *ctx, char *err, int errlen) {
    session_t *x = calloc(1, sizeof *x);
    if (!x) snprintf(err, (size_t)errlen, "out of memory for a session");
    return x;
}

void small_t5_session_free(void *ctx, void *st) {
    session_t *x = st;
    if (!x) return;
    t5_drafter_destroy(&x->d);
    t5_serve_session_clear(&x->b);
    free(x);
}

int small_t5_handle(void *ctx, void *st, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen) {
    t5_serve_t *c = ctx;
    session_t *x = st;
    const t5_config_t *cf = t5_config(c->m);
    int fresh;
    switch (req->type) {
    case MSG_SOURCE:
        if (t5_serve_source(c, &x->b, &req->source, &fresh, err, errlen)) return -1;
        if (fresh) t5_drafter_destroy(&x->d);
        if (!x->d && !(x->d = t5_drafter_new(x->b.s, cf->eos, cf->eos))) {
            x->b.ready = 0;
            return snprintf(err, (size_t)errlen, "out of memory for a session"), -1;
        }
        return proto_encode_simple(out, req->id, MSG_PONG);
    case MSG_SESSION: return t5_serve_session(req, out, err, errlen);
    case MSG_DRAFT_REQ: break;
    default:
        return snprintf(err, (size_t)errlen, "the small worker serves draft requests, not message type %d",
                        req->type), -1;
    }
    if (!x->b.ready)
        return snprintf(err, (size_t)errlen, "draft before SOURCE: an encoder-decoder needs the request's source "
                        "first"), -1;
    draft_res_t res;
    small_link_t l = t5_drafter_link(x->d);
    if (l.draft(l.self, &req->draft_req, &res, err, errlen)) return -1;
    if (proto_encode_draft_res(out, req->id, &res, cf->vocab_size))
        return snprintf(err, (size_t)errlen, "out of memory encoding the reply"), -1;
    return 0;
}
