/* serve.h - a worker's request loop: receive, decode (untrusted), handle,
 * reply, until SHUTDOWN or a stop signal. A message that does not decode
 * gets an ERROR reply and is logged; the loop keeps serving.
 *
 * Sessions: every coordinator connection has its own session (the session
 * id in each message), and the handlers keep state per session (a KV
 * cache, a sampling stream), so many coordinators can share one worker and
 * each gets exactly what it would get alone. HELLO opens a session (or
 * starts it afresh), BYE ends it. At most max_sessions are kept: a HELLO
 * beyond that evicts the least recently used one, and a session idle for
 * idle_s is evicted too; a later request of an evicted or unknown session
 * gets an ERROR saying so, never an answer from another session's state.
 * The data plane belongs to the session that opened it.
 *
 * Batches: the socket is a ROUTER, so the requests of several coordinators
 * can wait at once; the loop takes all of them, and those the handlers can
 * run together (one per session: the large worker's verifications) go to
 * run_batch as one forward pass over the sessions' caches. */
#ifndef BILD_SERVE_H
#define BILD_SERVE_H

#include <signal.h>

#include "model/sampler.h"
#include "model/transformer.h"
#include "proto/plane.h"
#include "proto/proto.h"
#include "proto/transport.h"

/* Handles one decoded request of a type other than HELLO/PING/SHUTDOWN/BYE
 * for the session whose state is st, and writes the reply into *out.
 * Returns 0, or -1 with a message in err (an ERROR reply is then sent). */
typedef int (*serve_fn)(void *ctx, void *st, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen);
/* Optional batching: can_batch says whether a request may run together with
 * other sessions' requests; run_batch handles n >= 2 of them (of distinct
 * sessions, st[i] the state of req[i]'s) at once, each reply into *out[i],
 * rc[i] 0, -1 with a message in err[i] (an ERROR reply is then sent), or 1:
 * not taken into the batch (the loop then serves it alone with handle). */
typedef int (*serve_can_batch_fn)(void *ctx, const proto_msg_t *req);
typedef void (*serve_batch_fn)(void *ctx, int n, void *const *st, const proto_msg_t *const *req, proto_buf_t **out,
                               int *rc, char (*err)[512]);
/* A new session's state, or NULL with a message in err. */
typedef void *(*serve_new_fn)(void *ctx, char *err, int errlen);
typedef void (*serve_free_fn)(void *ctx, void *st);

typedef struct {
    const char *name;        /* for log lines: "small worker" */
    hello_reply_t hello;     /* what HELLO is answered with */
    int vocab;               /* expected distribution row length */
    serve_fn handle;
    serve_can_batch_fn can_batch; /* with run_batch, or both NULL */
    serve_batch_fn run_batch;
    serve_new_fn session_new;
    serve_free_fn session_free;
    void *ctx;
    int max_sessions;        /* sessions kept at once (>= 1) */
    double idle_s;           /* a session idle this long is evicted (0: never) */
    volatile sig_atomic_t *stop; /* set by a signal handler: leave the loop */
    void (*idle)(void *idle_ctx);  /* called before each reply goes out (the compute threads may sleep); may be NULL */
    void *idle_ctx;
    /* data plane (proto/plane.h): set up by PLANE_REQ of one session, closed
     * when that session says HELLO again or ends, and when the loop ends */
    const char *device;      /* "cpu", "cuda:N" */
    void *zctx;              /* for a host plane's socket */
    plane_t **plane;         /* where the open plane lives (the handlers read it); NULL: no data plane */
} serve_t;

/* What every worker session's state starts with: its own KV cache on the
 * one shared model, and its sampling stream (NULL: greedy). */
typedef struct {
    kv_cache_t *kv;
    sampler_t *smp;
} serve_session_t;

/* A zeroed session state of size bytes (a struct whose first member is a
 * serve_session_t) with a new KV cache of tf. NULL with a message in err. */
void *serve_session_alloc(transformer_t *tf, size_t size, char *err, int errlen);
/* Frees what serve_session_alloc made and the sampler, once the caller has
 * freed its own members. NULL is fine. */
void serve_session_release(transformer_t *tf, void *st);

/* Serves on a bound server. Returns 0 after SHUTDOWN or a stop signal,
 * -1 on a socket failure. Logs one line per refused message on stderr. */
int serve_loop(transport_server_t *srv, const serve_t *sv);

#endif
