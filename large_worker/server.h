/* server.h - the large worker's request handler (for proto/serve.c's loop):
 * VERIFY_REQ -> verifier -> VERIFY_RES, SESSION (how to sample); when the
 * request says so, the small model's distributions come over the data plane
 * and the acceptance runs here (common/accept.h), so only the verdict
 * goes back. Each session has its own KV cache, verifier and sampler on the
 * one shared model (transformer_use_cache before every request). */
#ifndef BILD_LARGE_SERVER_H
#define BILD_LARGE_SERVER_H

#include "large_worker/verifier.h"
#include "proto/plane.h"
#include "proto/proto.h"

typedef struct {
    int vocab;
    transformer_t *tf;    /* borrowed */
    plane_t **plane;      /* the serve loop's data plane (NULL until set up) */
    float *q;             /* (BILD_MAX_DRAFT + 1, vocab): the small model's distributions, allocated on first use */
    int timeout_ms;       /* longest wait for them */
    long batches, batched; /* verifications run together: passes, and requests in them */
} large_server_t;

/* serve_fn, serve_new_fn and serve_free_fn for a large_server_t context. */
int large_server_handle(void *ctx, void *st, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen);
void *large_server_session_new(void *ctx, char *err, int errlen);
/* serve_can_batch_fn and serve_batch_fn: blocks of draft tokens (and
 * prompts before them) from several sessions verified in one pass
 * (transformer_run_multi, logits only for the rows verified), each reply
 * what that session alone would get. */
int large_server_can_batch(void *ctx, const proto_msg_t *req);
void large_server_run_batch(void *ctx, int n, void *const *st, const proto_msg_t *const *req, proto_buf_t **out,
                            int *rc, char (*err)[512]);
void large_server_session_free(void *ctx, void *st);
void large_server_free(large_server_t *s);

#endif
