/* remote.h - worker links over ZeroMQ: the same small_link_t / large_link_t
 * the in-process workers provide, carried as msgpack requests (proto/). The
 * connection starts with a handshake that checks the worker's protocol
 * version, role and vocabulary (size and fingerprint) against the
 * coordinator's. A failed call (worker gone, stopped, refused, or a reply
 * that does not decode) leaves the link unusable: make a new one, which
 * shakes hands afresh (a restarted worker is accepted that way). */
#ifndef BILD_REMOTE_H
#define BILD_REMOTE_H

#include <stdint.h>

#include "common/worker.h"
#include "proto/proto.h"
#include "proto/transport.h"

typedef struct remote remote_t;

typedef struct {
    long round_trips;
    long bytes_sent, bytes_received;
} remote_stats_t;

typedef struct {
    int timeout_ms;                   /* longest wait for one reply */
    int heartbeat_ms;                 /* 0: TRANSPORT_HEARTBEAT_MS */
    const transport_keypair_t *curve; /* the coordinator's key pair; NULL: no CURVE */
    const char *server_key;           /* CURVE: the worker's public key (Z85) */
} remote_opts_t;

/* Connects to a worker and shakes hands. vocab and fingerprint are the
 * coordinator's (from its tokenizer); vocab 0 skips that check (the caller
 * then compares the returned hello itself). NULL with a one-line message in
 * err (naming the worker and its endpoint) on failure: no answer in time,
 * another protocol version, wrong role, another vocabulary, CURVE refused.
 * The worker's hello is copied to *hello if not NULL. */
remote_t *remote_connect(void *zctx, const char *endpoint, worker_role_t role, int vocab, uint64_t fingerprint,
                         const remote_opts_t *o, hello_reply_t *hello, char *err, size_t errlen);
/* Asks the worker to exit (best effort), then closes. Accepts NULL. */
void remote_shutdown(remote_t **pr);
/* Ends this connection's session on the worker (BYE, after reading a
 * verification still in flight; skipped when the connection failed), then
 * closes. Accepts NULL. */
void remote_destroy(remote_t **pr);

/* SESSION: the worker samples with these settings from now on. 0 or -1. */
int remote_session(remote_t *r, const session_req_t *q, char *err, int errlen);
/* SOURCE: an encoder-decoder worker encodes ids[0..n) for the session's
 * next request, with room for max_dec decoder tokens. */
int remote_source(remote_t *r, const int *ids, int n, int max_dec, char *err, int errlen);
/* One data-plane set-up step (proto/plane.h); start/finish let the caller
 * send to both workers before waiting (an NCCL open blocks until both join). */
int remote_plane(remote_t *r, const plane_req_t *q, plane_res_t *res, char *err, int errlen);
int remote_plane_start(remote_t *r, const plane_req_t *q, char *err, int errlen);
int remote_plane_finish(remote_t *r, plane_res_t *res, char *err, int errlen);

small_link_t remote_small_link(remote_t *r);
large_link_t remote_large_link(remote_t *r);
const remote_stats_t *remote_stats(const remote_t *r);
const char *remote_endpoint(const remote_t *r);
/* 1 if the connection was seen to drop (or a call failed): reconnect. */
int remote_broken(remote_t *r);

#endif
