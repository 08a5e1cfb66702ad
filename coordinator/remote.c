/* remote.c - see remote.h. Each call is one request/reply exchange; a reply
 * that does not decode, carries another request id or type, or reports an
 * error fails the call with a message naming the worker and its address. */
#include "coordinator/remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

struct remote {
    transport_client_t *cl;
    char endpoint[256];
    const char *who; /* "small worker" / "large worker" */
    worker_role_t role;
    int vocab;
    uint32_t next_id;
    uint64_t session; /* this connection's session on the worker (random, never 0) */
    int open;         /* the worker has the session (HELLO answered): BYE ends it */
    int broken;       /* a call failed: the worker's state is unknown */
    int in_flight;    /* verify_start sent a request whose reply is not read yet */
    msg_type_t want;  /* ... and the reply type it expects */
    proto_msg_t last; /* the last reply: draft/verify results borrow its buffers */
    remote_stats_t st;
};

/* Receives and decodes the reply to the request sent last, expecting type want. */
static int finish_call(remote_t *r, msg_type_t want, char *err, int errlen) {
    void *data;
    size_t n;
    char why[512];
    r->in_flight = 0;
    proto_msg_free(&r->last);
    if (transport_recv(r->cl, &data, &n, why, sizeof why) != 0) {
        snprintf(err, (size_t)errlen, "%s at %s: %s", r->who, r->endpoint, why);
        r->broken = 1;
        return -1;
    }
    r->st.round_trips++, r->st.bytes_received += (long)n;
    proto_err_t e = proto_decode(data, n, r->vocab, &r->last);
    free(data);
    if (e == PROTO_E_VERSION)
        snprintf(err, (size_t)errlen, "%s at %s speaks protocol version %d, this coordinator version %d: run the "
                                      "same bild release on every host", r->who, r->endpoint, r->last.version,
                 PROTO_VERSION);
    else if (e != PROTO_OK)
        snprintf(err, (size_t)errlen, "%s at %s: bad reply: %s", r->who, r->endpoint, proto_err_name(e));
    else if (r->last.type == MSG_ERROR)
        snprintf(err, (size_t)errlen, "%s at %s: %s", r->who, r->endpoint, r->last.err_text);
    else if (r->last.type != want || r->last.id != r->next_id - 1)
        snprintf(err, (size_t)errlen, "%s at %s: unexpected reply (type %d, id %u)", r->who, r->endpoint,
                 r->last.type, r->last.id);
    else
        return 0;
    r->broken = 1;
    return -1;
}

static int start_call(remote_t *r, proto_buf_t *b, msg_type_t want, char *err, int errlen) {
    char why[512];
    if (r->broken) {
        snprintf(err, (size_t)errlen, "%s at %s: the connection failed earlier; reconnect", r->who, r->endpoint);
        return -1;
    }
    if (transport_send(r->cl, b, why, sizeof why) != 0) {
        snprintf(err, (size_t)errlen, "%s at %s: %s", r->who, r->endpoint, why);
        r->broken = 1;
        return -1;
    }
    r->st.bytes_sent += (long)b->size;
    r->in_flight = 1, r->want = want;
    return 0;
}

static int call(remote_t *r, proto_buf_t *b, msg_type_t want, char *err, int errlen) {
    return start_call(r, b, want, err, errlen) ? -1 : finish_call(r, want, err, errlen);
}

remote_t *remote_connect(void *zctx, const char *endpoint, worker_role_t role, int vocab, uint64_t fingerprint,
                         const remote_opts_t *o, hello_reply_t *hello, char *err, size_t errlen) {
    remote_t *r = calloc(1, sizeof(*r));
    char why[1024];
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(r->endpoint, sizeof r->endpoint, "%s", endpoint);
    r->who = role == ROLE_SMALL ? "small worker" : "large worker";
    r->role = role, r->vocab = vocab, r->next_id = 1;
    if (getrandom(&r->session, sizeof r->session, 0) != (ssize_t)sizeof r->session) /* no entropy source: pid and clock */
        r->session = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)r;
    if (!r->session) r->session = 1;
    if (!(r->cl = transport_client_new(zctx, endpoint, o->timeout_ms, o->heartbeat_ms, o->curve, o->server_key, why,
                                       sizeof why))) {
        snprintf(err, errlen, "%s at %s: %s", r->who, endpoint, why);
        free(r);
        return NULL;
    }
    proto_buf_t b = {.session_id = r->session};
    int rc = proto_encode_hello(&b, r->next_id++, role) == 0 ? call(r, &b, MSG_HELLO_REPLY, why, sizeof why) : -1;
    proto_buf_free(&b);
    if (rc != 0) {
        snprintf(err, errlen, "handshake failed: %s", why);
        remote_destroy(&r);
        return NULL;
    }
    r->open = 1;
    const hello_reply_t *h = &r->last.hello;
    if (vocab <= 0) r->vocab = h->vocab_size; /* the caller checks the vocabulary itself */
    else if (h->vocab_size != vocab || h->vocab_fingerprint != fingerprint) {
        snprintf(err, errlen, "%s at %s has another vocabulary (%d tokens, fingerprint %016llx; this "
                              "coordinator: %d, %016llx)", r->who, endpoint, h->vocab_size,
                 (unsigned long long)h->vocab_fingerprint, vocab, (unsigned long long)fingerprint);
        remote_destroy(&r);
        return NULL;
    }
    if (hello) *hello = *h;
    return r;
}

static int remote_draft(void *self, const draft_req_t *req, draft_res_t *res, char *err, int errlen) {
    remote_t *r = self;
    proto_buf_t b = {.session_id = r->session};
    int rc = proto_encode_draft_req(&b, r->next_id++, req) == 0 ? call(r, &b, MSG_DRAFT_RES, err, errlen) : -1;
    proto_buf_free(&b);
    if (rc == 0) *res = r->last.draft_res; /* probs borrow r->last until the next call */
    return rc;
}

static int remote_verify_start(void *self, const verify_req_t *req, char *err, int errlen) {
    remote_t *r = self;
    proto_buf_t b = {.session_id = r->session};
    int rc = proto_encode_verify_req(&b, r->next_id++, req) == 0 ? start_call(r, &b, MSG_VERIFY_RES, err, errlen)
                                                                  : -1;
    proto_buf_free(&b);
    return rc;
}

static int remote_verify_finish(void *self, verify_res_t *res, char *err, int errlen) {
    remote_t *r = self;
    if (!r->in_flight) {
        snprintf(err, (size_t)errlen, "%s at %s: no verification in flight", r->who, r->endpoint);
        return -1;
    }
    int rc = finish_call(r, r->want, err, errlen);
    if (rc == 0) *res = r->last.verify_res;
    return rc;
}

static int remote_verify(void *self, const verify_req_t *req, verify_res_t *res, char *err, int errlen) {
    return remote_verify_start(self, req, err, errlen) ? -1 : remote_verify_finish(self, res, err, errlen);
}

int remote_source(remote_t *r, const int *ids, int n, int max_dec, char *err, int errlen) {
    proto_buf_t b = {.session_id = r->session};
    source_req_t q = {ids, n, max_dec};
    int rc = proto_encode_source(&b, r->next_id++, &q) == 0 ? call(r, &b, MSG_PONG, err, errlen) : -1;
    proto_buf_free(&b);
    return rc;
}

int remote_session(remote_t *r, const session_req_t *q, char *err, int errlen) {
    proto_buf_t b = {.session_id = r->session};
    int rc = proto_encode_session(&b, r->next_id++, q) == 0 ? call(r, &b, MSG_PONG, err, errlen) : -1;
    proto_buf_free(&b);
    return rc;
}

int remote_plane_start(remote_t *r, const plane_req_t *q, char *err, int errlen) {
    proto_buf_t b = {.session_id = r->session};
    int rc = proto_encode_plane_req(&b, r->next_id++, q) == 0 ? start_call(r, &b, MSG_PLANE_RES, err, errlen) : -1;
    proto_buf_free(&b);
    return rc;
}

int remote_plane_finish(remote_t *r, plane_res_t *res, char *err, int errlen) {
    if (finish_call(r, MSG_PLANE_RES, err, errlen)) return -1;
    *res = r->last.plane_res;
    return 0;
}

int remote_plane(remote_t *r, const plane_req_t *q, plane_res_t *res, char *err, int errlen) {
    return remote_plane_start(r, q, err, errlen) ? -1 : remote_plane_finish(r, res, err, errlen);
}

small_link_t remote_small_link(remote_t *r) { return (small_link_t){r, remote_draft}; }
large_link_t remote_large_link(remote_t *r) {
    return (large_link_t){r, remote_verify, remote_verify_start, remote_verify_finish};
}
const remote_stats_t *remote_stats(const remote_t *r) { return &r->st; }
const char *remote_endpoint(const remote_t *r) { return r->endpoint; }
int remote_broken(remote_t *r) { return r->broken || transport_client_lost(r->cl); }

void remote_shutdown(remote_t **pr) {
    if (!pr || !*pr) return;
    proto_buf_t b = {.session_id = (*pr)->session};
    char why[512];
    if (!(*pr)->broken && proto_encode_simple(&b, (*pr)->next_id++, MSG_SHUTDOWN) == 0)
        call(*pr, &b, MSG_PONG, why, sizeof why);
    proto_buf_free(&b);
    (*pr)->open = 0; /* the worker is gone: no BYE */
    remote_destroy(pr);
}

void remote_destroy(remote_t **pr) {
    if (!pr || !*pr) return;
    remote_t *r = *pr;
    if (r->open && !remote_broken(r)) { /* free the session's state on the worker now */
        proto_buf_t b = {.session_id = r->session};
        char why[512];
        if (r->in_flight) finish_call(r, r->want, why, sizeof why); /* a verification the caller gave up on */
        if (!r->broken && proto_encode_simple(&b, r->next_id++, MSG_BYE) == 0) call(r, &b, MSG_PONG, why, sizeof why);
        proto_buf_free(&b);
    }
    proto_msg_free(&(*pr)->last);
    transport_client_destroy(&(*pr)->cl);
    free(*pr);
    *pr = NULL;
}
