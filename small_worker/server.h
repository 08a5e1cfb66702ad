/* server.h - the small worker's request handler: DRAFT_REQ -> drafter ->
 * DRAFT_RES (for proto/serve.c's loop). */
#ifndef BILD_SMALL_SERVER_H
#define BILD_SMALL_SERVER_H

#include "proto/proto.h"
#include "small_worker/drafter.h"

typedef struct {
    drafter_t *drafter;
    int vocab;
} small_server_t;

/* serve_fn for a small_server_t context. */
int small_server_handle(void *ctx, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen);

#endif
