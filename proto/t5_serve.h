/* t5_serve.h - what the two workers' handlers for a T5 / mT5 model share
 * (small_worker/t5_server.c drafts, large_worker/t5_server.c verifies):
 * their context, and each session's encoder-decoder state, which SOURCE
 * fits to the request and fills with the source's encoding. SESSION takes
 * greedy decoding only. Nothing is batched across sessions yet. */
#ifndef BILD_T5_SERVE_H
#define BILD_T5_SERVE_H

#include "model/t5.h"
#include "proto/proto.h"

/* The most decoder tokens a request may ask for (T5's positions are
 * relative: this bounds the self-attention cache, not the model). */
#define T5_MAX_DEC 4096
/* The longest source: the encoder's attention is quadratic in it and the
 * cross-attention cache linear, so a request may not ask for more. */
#define T5_MAX_SRC 4096

/* The handlers' context: one model shared by every session. */
typedef struct {
    const t5_model_t *m; /* borrowed */
    backend_t *be;       /* the CPU backend it runs on (borrowed) */
    long sources;        /* SOURCE messages served */
    double encode_s;     /* and the time their encoders took */
} t5_serve_t;

/* One session's state. */
typedef struct {
    t5_state_t *s; /* NULL until the first SOURCE */
    int max_src, max_dec;
    int ready;     /* the current request's source is encoded */
} t5_serve_session_t;

/* SOURCE q into x: a new state when x's is too small (*fresh is then 1:
 * the caller remakes what it built on x->s), then the encoding. 0, or -1
 * with a message in err. The reply (PONG) is the caller's. */
int t5_serve_source(t5_serve_t *c, t5_serve_session_t *x, const source_req_t *q, int *fresh, char *err,
                    int errlen);
/* SESSION: greedy only. 0 with the PONG in out, or -1 with a message. */
int t5_serve_session(const proto_msg_t *req, proto_buf_t *out, char *err, int errlen);
void t5_serve_session_clear(t5_serve_session_t *x);

#endif
