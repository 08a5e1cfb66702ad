/* remote.c - see remote.h. Each call is one request/reply exchange; a reply
 * that does not decode, carries another request id or type, or reports an
 * error fails the call with a message naming the worker. */
#include "coordinator/remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/transport.h"

struct remote {
    void *sock;
    char endpoint[256];
    worker_role_t role;
    int vocab;
    uint32_t next_id;
    proto_msg_t last; /* the last reply: draft/verify results borrow its buffers */
    remote_stats_t st;
};

/* Sends b, receives and decodes the reply into r->last, expecting type want. */
static int call(remote_t *r, proto_buf_t *b, msg_type_t want, char *err, int errlen) {
    void *data;
    size_t n;
    char why[256];
    proto_msg_free(&r->last);
    if (transport_exchange(r->sock, b, &data, &n, why, sizeof why) != 0) {
        snprintf(err, (size_t)errlen, "%s: %s", r->endpoint, why);
        return -1;
    }
    r->st.round_trips++, r->st.bytes_sent += (long)b->size, r->st.bytes_received += (long)n;
    proto_err_t e = proto_decode(data, n, r->vocab, &r->last);
    free(data);
    if (e != PROTO_OK) {
        snprintf(err, (size_t)errlen, "%s: bad reply: %s", r->endpoint, proto_err_name(e));
        return -1;
    }
    if (r->last.type == MSG_ERROR) {
        snprintf(err, (size_t)errlen, "%s: %s", r->endpoint, r->last.err_text);
        return -1;
    }
    if (r->last.type != want || r->last.id != r->next_id - 1) {
        snprintf(err, (size_t)errlen, "%s: unexpected reply (type %d, id %u)", r->endpoint, r->last.type, r->last.id);
        return -1;
    }
    return 0;
}

remote_t *remote_connect(void *zctx, const char *endpoint, worker_role_t role, int vocab, uint64_t fingerprint,
                         int timeout_ms, hello_reply_t *hello, char *err, size_t errlen) {
    remote_t *r = calloc(1, sizeof(*r));
    char why[512];
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(r->endpoint, sizeof r->endpoint, "%s", endpoint);
    r->role = role, r->vocab = vocab, r->next_id = 1;
    if (!(r->sock = transport_connect(zctx, endpoint, timeout_ms, why, sizeof why))) {
        snprintf(err, errlen, "%s", why);
        free(r);
        return NULL;
    }
    proto_buf_t b = {0};
    const char *who = role == ROLE_SMALL ? "small" : "large";
    int rc = proto_encode_hello(&b, r->next_id++, role) == 0 ? call(r, &b, MSG_HELLO_REPLY, why, sizeof why) : -1;
    proto_buf_free(&b);
    if (rc != 0) {
        snprintf(err, errlen, "%s worker at %s did not complete the handshake: %s", who, endpoint, why);
        remote_destroy(&r);
        return NULL;
    }
    const hello_reply_t *h = &r->last.hello;
    if (vocab <= 0) r->vocab = h->vocab_size; /* the caller checks the vocabulary itself */
    else if (h->vocab_size != vocab || h->vocab_fingerprint != fingerprint) {
        snprintf(err, errlen, "%s worker at %s has another vocabulary (%d tokens, fingerprint %016llx; this "
                              "coordinator: %d, %016llx)", who, endpoint, h->vocab_size,
                 (unsigned long long)h->vocab_fingerprint, vocab, (unsigned long long)fingerprint);
        remote_destroy(&r);
        return NULL;
    }
    if (hello) *hello = *h;
    return r;
}

static int remote_draft(void *self, const draft_req_t *req, draft_res_t *res, char *err, int errlen) {
    remote_t *r = self;
    proto_buf_t b = {0};
    int rc = proto_encode_draft_req(&b, r->next_id++, req) == 0 ? call(r, &b, MSG_DRAFT_RES, err, errlen) : -1;
    proto_buf_free(&b);
    if (rc == 0) *res = r->last.draft_res; /* probs borrow r->last until the next call */
    return rc;
}

static int remote_verify(void *self, const verify_req_t *req, verify_res_t *res, char *err, int errlen) {
    remote_t *r = self;
    proto_buf_t b = {0};
    int rc = proto_encode_verify_req(&b, r->next_id++, req) == 0 ? call(r, &b, MSG_VERIFY_RES, err, errlen) : -1;
    proto_buf_free(&b);
    if (rc == 0) *res = r->last.verify_res;
    return rc;
}

small_link_t remote_small_link(remote_t *r) { return (small_link_t){r, remote_draft}; }
large_link_t remote_large_link(remote_t *r) { return (large_link_t){r, remote_verify}; }
const remote_stats_t *remote_stats(const remote_t *r) { return &r->st; }

void remote_shutdown(remote_t **pr) {
    if (!pr || !*pr) return;
    proto_buf_t b = {0};
    char why[256];
    if (proto_encode_simple(&b, (*pr)->next_id++, MSG_SHUTDOWN) == 0) call(*pr, &b, MSG_PONG, why, sizeof why);
    proto_buf_free(&b);
    remote_destroy(pr);
}

void remote_destroy(remote_t **pr) {
    if (!pr || !*pr) return;
    proto_msg_free(&(*pr)->last);
    transport_close(&(*pr)->sock);
    free(*pr);
    *pr = NULL;
}
