/* t5_serve.c - see t5_serve.h. */
#include "proto/t5_serve.h"

#include <stdio.h>

#include "model/generate.h"

int t5_serve_source(t5_serve_t *c, t5_serve_session_t *x, const source_req_t *q, int *fresh, char *err,
                    int errlen) {
    *fresh = 0;
    x->ready = 0;
    if (q->max_dec > T5_MAX_DEC)
        return snprintf(err, (size_t)errlen, "source: %d decoder tokens asked for, at most %d", q->max_dec, T5_MAX_DEC),
               -1;
    if (q->n > T5_MAX_SRC)
        return snprintf(err, (size_t)errlen, "source: %d tokens, at most %d", q->n, T5_MAX_SRC), -1;
    if (!x->s || q->n > x->max_src || q->max_dec > x->max_dec) { /* room for this request and the ones before */
        int ms = q->n > x->max_src ? q->n : x->max_src, md = q->max_dec > x->max_dec ? q->max_dec : x->max_dec;
        t5_state_free(x->s);
        x->max_src = x->max_dec = 0;
        if (!(x->s = t5_state_new(c->m, c->be, ms, md)))
            return snprintf(err, (size_t)errlen, "source: out of memory for %d source and %d decoder tokens", ms,
                            md), -1;
        x->max_src = ms, x->max_dec = md, *fresh = 1;
    }
    double t0 = now_s();
    if (t5_encode(x->s, q->ids, q->n, NULL))
        return snprintf(err, (size_t)errlen, "source: cannot encode %d tokens", q->n), -1;
    c->sources++, c->encode_s += now_s() - t0;
    x->ready = 1;
    return 0;
}

int t5_serve_session(const proto_msg_t *req, proto_buf_t *out, char *err, int errlen) {
    if (req->session.temperature > 0)
        return snprintf(err, (size_t)errlen, "this worker's T5 / mT5 model decodes greedily only (temperature %g "
                        "asked for)", req->session.temperature), -1;
    return proto_encode_simple(out, req->id, MSG_PONG);
}

void t5_serve_session_clear(t5_serve_session_t *x) {
    t5_state_free(x->s);
    *x = (t5_serve_session_t){0};
}
