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
    long batches, batched; /* drafts run together: lockstep runs, and requests in them */
} small_server_t;

/* serve_fn, serve_new_fn and serve_free_fn for a small_server_t context. */
int small_server_handle(void *ctx, void *st, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen);
void *small_server_session_new(void *ctx, char *err, int errlen);
/* serve_can_batch_fn and serve_batch_fn: the drafts of several sessions in
 * lockstep (their feeds in one pass, then one pass per step for the
 * sessions still drafting; transformer_run_multi), each reply what that
 * session alone would get. */
int small_server_can_batch(void *ctx, const proto_msg_t *req);
void small_server_run_batch(void *ctx, int n, void *const *st, const proto_msg_t *const *req, proto_buf_t **out,
                            int *rc, char (*err)[512]);
void small_server_session_free(void *ctx, void *st);

#endif
