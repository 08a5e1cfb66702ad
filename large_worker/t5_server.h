/* t5_server.h - the large worker's request handlers (proto/serve.h) for a
 * T5 / mT5 model: SOURCE encodes a request's source in the session's own
 * state (proto/t5_serve.h), then VERIFY_REQ verifies on it exactly as in
 * process (t5_verifier.h). Greedy only. The context is a t5_serve_t. */
#ifndef BILD_LARGE_T5_SERVER_H
#define BILD_LARGE_T5_SERVER_H

#include "proto/t5_serve.h"

int large_t5_handle(void *ctx, void *st, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen);
void *large_t5_session_new(void *ctx, char *err, int errlen);
void large_t5_session_free(void *ctx, void *st);

#endif
