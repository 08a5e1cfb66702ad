/* server.h - the large worker's request handler: VERIFY_REQ -> verifier ->
 * VERIFY_RES (for proto/serve.c's loop). */
#ifndef BILD_LARGE_SERVER_H
#define BILD_LARGE_SERVER_H

#include "large_worker/verifier.h"
#include "proto/proto.h"

typedef struct {
    verifier_t *verifier;
    int vocab;
} large_server_t;

/* serve_fn for a large_server_t context. */
int large_server_handle(void *ctx, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen);

#endif
