/* server.h - the small worker's request handler: DRAFT_REQ -> drafter ->
 * DRAFT_RES, SESSION (how to sample), with the distributions sent over the
 * data plane when the request says so (for proto/serve.c's loop). */
#ifndef BILD_SMALL_SERVER_H
#define BILD_SMALL_SERVER_H

#include "proto/plane.h"
#include "proto/proto.h"
#include "small_worker/drafter.h"

typedef struct {
    drafter_t *drafter; /* owned: replaced by SESSION */
    int vocab;
    transformer_t *tf;  /* borrowed */
    sampler_t *smp;     /* owned; NULL: greedy */
    int stop_a, stop_b;
    plane_t **plane;    /* the serve loop's data plane (NULL until set up) */
} small_server_t;

/* serve_fn for a small_server_t context. */
int small_server_handle(void *ctx, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen);
void small_server_free(small_server_t *s);

#endif
