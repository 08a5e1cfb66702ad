/* inproc.h - the worker servers inside the coordinator's process, for
 * `bild generate --parallel N` with in-process models: the small and the
 * large worker's serve loops (proto/serve.c with small_worker/server.c and
 * large_worker/server.c) each run in a thread on an inproc:// endpoint, and
 * the coordinator's request threads connect to them as to worker
 * processes. So the requests waiting at the same moment run together in
 * one batched pass, each getting exactly what it would get alone.
 *
 * The two models may share one backend (one thread pool), which runs one
 * thing at a time: every handler call of both servers takes the mutex the
 * caller gives, so their passes run in turn, as in a serial run.
 */
#ifndef BILD_COORDINATOR_INPROC_H
#define BILD_COORDINATOR_INPROC_H

#include <pthread.h>
#include <stdint.h>

#include "model/transformer.h"
#include "proto/proto.h"

typedef struct inproc_worker inproc_worker_t;

typedef struct {
    void *zctx;             /* the coordinator's ZeroMQ context (inproc:// lives in one context) */
    worker_role_t role;     /* ROLE_SMALL or ROLE_LARGE */
    transformer_t *tf;      /* the loaded model (borrowed; the small one with its draft vocabulary set) */
    uint64_t fingerprint;   /* the vocabulary's, as a worker's HELLO reply gives it */
    const char *model;      /* its path, for the HELLO reply */
    const char *device;     /* "cpu", "cuda:N" */
    int max_sessions;       /* sessions kept at once: the number of request threads */
    pthread_mutex_t *mu;    /* held around every handler call (shared by both servers) */
} inproc_opts_t;

/* Binds inproc://bild-small-... (or large) and starts the serve loop in a
 * thread; the endpoint goes into ep. NULL with a message in err. */
inproc_worker_t *inproc_worker_start(const inproc_opts_t *o, char *ep, size_t eplen, char *err, int errlen);
/* Requests of several sessions run together so far: in *batches runs
 * (lockstep drafts or batched verifications), *batched requests in them. */
void inproc_worker_batches(const inproc_worker_t *w, long *batches, long *batched);
/* Stops the loop (within 0.2 s), joins the thread, frees the sessions. NULL is fine. */
void inproc_worker_stop(inproc_worker_t **w);

#endif
