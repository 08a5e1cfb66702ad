/* server.c - see server.h. */
#include "large_worker/server.h"

#include <stdio.h>

int large_server_handle(void *ctx, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen) {
    large_server_t *s = ctx;
    if (req->type != MSG_VERIFY_REQ) {
        snprintf(err, (size_t)errlen, "the large worker serves verify requests, not message type %d", req->type);
        return -1;
    }
    verify_res_t res;
    if (verifier_verify(s->verifier, &req->verify_req, &res, err, errlen) != 0) return -1;
    if (proto_encode_verify_res(out, req->id, &res, s->vocab) != 0) {
        snprintf(err, (size_t)errlen, "out of memory encoding the reply");
        return -1;
    }
    return 0;
}
