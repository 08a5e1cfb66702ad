/* server.c - see server.h. */
#include "small_worker/server.h"

#include <stdio.h>

int small_server_handle(void *ctx, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen) {
    small_server_t *s = ctx;
    if (req->type != MSG_DRAFT_REQ) {
        snprintf(err, (size_t)errlen, "the small worker serves draft requests, not message type %d", req->type);
        return -1;
    }
    draft_res_t res;
    if (drafter_draft(s->drafter, &req->draft_req, &res, err, errlen) != 0) return -1;
    if (proto_encode_draft_res(out, req->id, &res, s->vocab) != 0) {
        snprintf(err, (size_t)errlen, "out of memory encoding the reply");
        return -1;
    }
    return 0;
}
