/* t5_server.c - see t5_server.h. */
#include "large_worker/t5_server.h"

#include <stdio.h>
#include <stdlib.h>

#include "large_worker/t5_verifier.h"

typedef struct {
    t5_serve_session_t b;
    t5_verifier_t *v; /* on b.s */
} session_t;

void *large_t5_session_new(void *ctx, char *err, int errlen) {
    session_t *x = calloc(1, sizeof *x);
    if (!x) snprintf(err, (size_t)errlen, "out of memory for a session");
    return x;
}

void large_t5_session_free(void *ctx, void *st) {
    session_t *x = st;
    if (!x) return;
    t5_verifier_destroy(&x->v);
    t5_serve_session_clear(&x->b);
    free(x);
}

int large_t5_handle(void *ctx, void *st, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen) {
    t5_serve_t *c = ctx;
    session_t *x = st;
    int fresh;
    switch (req->type) {
    case MSG_SOURCE:
        if (t5_serve_source(c, &x->b, &req->source, &fresh, err, errlen)) return -1;
        if (fresh) t5_verifier_destroy(&x->v);
        if (!x->v && !(x->v = t5_verifier_new(x->b.s))) {
            x->b.ready = 0;
            return snprintf(err, (size_t)errlen, "out of memory for a session"), -1;
        }
        return proto_encode_simple(out, req->id, MSG_PONG);
    case MSG_SESSION: return t5_serve_session(req, out, err, errlen);
    case MSG_VERIFY_REQ: break;
    default:
        return snprintf(err, (size_t)errlen, "the large worker serves verify requests, not message type %d",
                        req->type), -1;
    }
    if (!x->b.ready)
        return snprintf(err, (size_t)errlen, "verify before SOURCE: an encoder-decoder needs the request's source "
                        "first"), -1;
    verify_res_t res;
    large_link_t l = t5_verifier_link(x->v);
    if (l.verify(l.self, &req->verify_req, &res, err, errlen)) return -1;
    if (proto_encode_verify_res(out, req->id, &res, t5_config(c->m)->vocab_size))
        return snprintf(err, (size_t)errlen, "out of memory encoding the reply"), -1;
    return 0;
}
