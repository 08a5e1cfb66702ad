/* t5_server.h - a worker's request handlers (proto/serve.h) for a T5 / mT5
 * model, in either role: every session has its own encoder output and
 * decoder caches (a common/t5_pair.h on the one shared model). SOURCE
 * encodes a request's source; then DRAFT_REQ (small worker) or VERIFY_REQ
 * (large worker) run exactly as in process. Greedy only; nothing is
 * batched across sessions yet. */
#ifndef BILD_T5_SERVER_H
#define BILD_T5_SERVER_H

#include "model/t5.h"
#include "proto/proto.h"

typedef struct {
    const t5_model_t *m; /* borrowed */
    backend_t *be;       /* the CPU backend it runs on (borrowed) */
    worker_role_t role;
    long sources;        /* SOURCE messages served */
    double encode_s;     /* and the time their encoders took */
} t5_server_t;

/* serve_fn, serve_new_fn and serve_free_fn for a t5_server_t context. */
int t5_server_handle(void *ctx, void *st, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen);
void *t5_server_session_new(void *ctx, char *err, int errlen);
void t5_server_session_free(void *ctx, void *st);

#endif
