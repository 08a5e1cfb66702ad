/* t5_server.c - see t5_server.h. */
#include "common/t5_server.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/t5_pair.h"

typedef struct {
    t5_pair_t *p;
    small_link_t sl;
    large_link_t ll;
    int ready; /* a source was encoded */
} t5_session_t;

void *t5_server_session_new(void *ctx, char *err, int errlen) {
    t5_server_t *s = ctx;
    t5_session_t *x = calloc(1, sizeof *x);
    if (x && !(x->p = t5_pair_new(s->role == ROLE_SMALL ? s->m : NULL, s->role == ROLE_LARGE ? s->m : NULL, s->be)))
        free(x), x = NULL;
    if (!x) snprintf(err, (size_t)errlen, "out of memory for a session");
    return x;
}

void t5_server_session_free(void *ctx, void *st) {
    t5_session_t *x = st;
    if (!x) return;
    t5_pair_close(&x->p);
    free(x);
}

int t5_server_handle(void *ctx, void *st, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen) {
    t5_server_t *s = ctx;
    t5_session_t *x = st;
    const int V = t5_config(s->m)->vocab_size;
    switch (req->type) {
    case MSG_SOURCE: {
        const source_req_t *q = &req->source;
        double enc_s;
        char why[300];
        x->ready = 0;
        if (q->max_dec > T5_PAIR_MAX_DEC)
            return snprintf(err, (size_t)errlen, "source: %d decoder tokens asked for, at most %d", q->max_dec,
                            T5_PAIR_MAX_DEC), -1;
        if (t5_pair_begin(x->p, q->ids, q->n, q->max_dec, &x->sl, &x->ll, &enc_s, why, sizeof why))
            return snprintf(err, (size_t)errlen, "source: %s", why), -1;
        x->ready = 1, s->sources++, s->encode_s += enc_s;
        return proto_encode_simple(out, req->id, MSG_PONG);
    }
    case MSG_SESSION:
        if (req->session.temperature > 0)
            return snprintf(err, (size_t)errlen, "this worker's T5 / mT5 model decodes greedily only (temperature "
                            "%g asked for)", req->session.temperature), -1;
        return proto_encode_simple(out, req->id, MSG_PONG);
    case MSG_DRAFT_REQ:
    case MSG_VERIFY_REQ: {
        const int draft = req->type == MSG_DRAFT_REQ;
        if (draft != (s->role == ROLE_SMALL))
            return snprintf(err, (size_t)errlen, "the %s worker serves %s requests", draft ? "large" : "small",
                            draft ? "verify" : "draft"), -1;
        if (!x->ready)
            return snprintf(err, (size_t)errlen, "%s before SOURCE: an encoder-decoder needs the request's source "
                            "first", draft ? "draft" : "verify"), -1;
        if (draft) {
            draft_res_t res;
            if (x->sl.draft(x->sl.self, &req->draft_req, &res, err, errlen)) return -1;
            if (proto_encode_draft_res(out, req->id, &res, V)) goto nomem;
        } else {
            verify_res_t res;
            if (x->ll.verify(x->ll.self, &req->verify_req, &res, err, errlen)) return -1;
            if (proto_encode_verify_res(out, req->id, &res, V)) goto nomem;
        }
        return 0;
    }
    default:
        return snprintf(err, (size_t)errlen, "the %s worker (T5) does not serve message type %d",
                        s->role == ROLE_SMALL ? "small" : "large", req->type), -1;
    }
nomem:
    snprintf(err, (size_t)errlen, "out of memory encoding the reply");
    return -1;
}
