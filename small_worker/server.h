/* server.h - the small worker's request handler (for proto/serve.c's loop):
 * DRAFT_REQ -> drafter -> DRAFT_RES, SESSION (how to sample), with the
 * distributions sent over the data plane when the request says so. Each
 * session has its own KV cache, drafter and sampler on the one shared
 * model (transformer_use_cache before every request). */
#ifndef BILD_SMALL_SERVER_H
#define BILD_SMALL_SERVER_H

#include "proto/plane.h"
#include "proto/proto.h"
#include "small_worker/drafter.h"

typedef struct {
    int vocab;
    transformer_t *tf;  /* borrowed */
    int stop_a, stop_b;
    plane_t **plane;    /* the serve loop's data plane (NULL until set up) */
} small_server_t;

/* serve_fn, serve_new_fn and serve_free_fn for a small_server_t context. */
int small_server_handle(void *ctx, void *st, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen);
void *small_server_session_new(void *ctx, char *err, int errlen);
void small_server_session_free(void *ctx, void *st);

#endif
