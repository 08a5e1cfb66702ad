/* inproc.c - worker serve loops in threads of the coordinator (see inproc.h). */
#include "coordinator/inproc.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "large_worker/server.h"
#include "proto/serve.h"
#include "proto/transport.h"
#include "small_worker/server.h"

struct inproc_worker {
    pthread_mutex_t *mu;
    /* the handlers being wrapped, and their context */
    serve_fn handle;
    serve_can_batch_fn can_batch;
    serve_batch_fn run_batch;
    serve_new_fn session_new;
    serve_free_fn session_free;
    void *ctx;
    small_server_t ss;
    large_server_t ls;
    plane_t *plane;  /* never opened: in one process the distributions need no plane */
    volatile sig_atomic_t stop;
    transport_server_t *srv;
    serve_t sv;
    pthread_t th;
    int started;
};

/* The wrappers: the real handler under the shared mutex. */
static int w_handle(void *ctx, void *st, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen) {
    inproc_worker_t *w = ctx;
    pthread_mutex_lock(w->mu);
    int rc = w->handle(w->ctx, st, req, out, err, errlen);
    pthread_mutex_unlock(w->mu);
    return rc;
}

static int w_can_batch(void *ctx, const proto_msg_t *req) {
    inproc_worker_t *w = ctx;
    return w->can_batch(w->ctx, req);
}

static void w_run_batch(void *ctx, int n, void *const *st, const proto_msg_t *const *req, proto_buf_t **out, int *rc,
                        char (*err)[512]) {
    inproc_worker_t *w = ctx;
    pthread_mutex_lock(w->mu);
    w->run_batch(w->ctx, n, st, req, out, rc, err);
    pthread_mutex_unlock(w->mu);
}

static void *w_session_new(void *ctx, char *err, int errlen) {
    inproc_worker_t *w = ctx;
    pthread_mutex_lock(w->mu);
    void *st = w->session_new(w->ctx, err, errlen);
    pthread_mutex_unlock(w->mu);
    return st;
}

static void w_session_free(void *ctx, void *st) {
    inproc_worker_t *w = ctx;
    pthread_mutex_lock(w->mu);
    w->session_free(w->ctx, st);
    pthread_mutex_unlock(w->mu);
}

static void *serve_main(void *arg) {
    inproc_worker_t *w = arg;
    if (serve_loop(w->srv, &w->sv) != 0) fprintf(stderr, "bild generate: the in-process %s stopped\n", w->sv.name);
    return NULL;
}

inproc_worker_t *inproc_worker_start(const inproc_opts_t *o, char *ep, size_t eplen, char *err, int errlen) {
    inproc_worker_t *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, (size_t)errlen, "out of memory");
        return NULL;
    }
    const model_config_t *c = transformer_config(o->tf);
    int small = o->role == ROLE_SMALL;
    w->mu = o->mu;
    if (small) {
        w->ss = (small_server_t){.vocab = c->vocab_size, .tf = o->tf, .stop_a = c->eos_id, .stop_b = c->bos_id,
                                 .plane = &w->plane};
        w->ctx = &w->ss;
        w->handle = small_server_handle, w->can_batch = small_server_can_batch;
        w->run_batch = small_server_run_batch, w->session_new = small_server_session_new;
        w->session_free = small_server_session_free;
    } else {
        w->ls = (large_server_t){.vocab = c->vocab_size, .tf = o->tf, .plane = &w->plane,
                                 .timeout_ms = BILD_PLANE_TIMEOUT_MS};
        w->ctx = &w->ls;
        w->handle = large_server_handle, w->can_batch = large_server_can_batch;
        w->run_batch = large_server_run_batch, w->session_new = large_server_session_new;
        w->session_free = large_server_session_free;
    }
    const char *name = small ? "small worker (in process)" : "large worker (in process)";
    snprintf(ep, eplen, "inproc://bild-%s-%p", small ? "small" : "large", (void *)w);
    transport_server_opts_t so = {.endpoint = ep, .name = name};
    int refused = 0;
    char why[512];
    if (!(w->srv = transport_server_new(o->zctx, &so, &refused, why, sizeof why))) {
        snprintf(err, (size_t)errlen, "in-process %s: %s", small ? "small worker" : "large worker", why);
        inproc_worker_stop(&w);
        return NULL;
    }
    w->sv = (serve_t){.name = name,
                      .hello = {.role = o->role, .vocab_size = c->vocab_size, .seq_len = c->seq_len,
                                .start_id = -1, .eos_id = c->eos_id,
                                .vocab_fingerprint = o->fingerprint},
                      .vocab = c->vocab_size,
                      .handle = w_handle,
                      .can_batch = w_can_batch,
                      .run_batch = w_run_batch,
                      .session_new = w_session_new,
                      .session_free = w_session_free,
                      .ctx = w,
                      .max_sessions = o->max_sessions,
                      .idle_s = 0,
                      .stop = &w->stop,
                      .device = o->device,
                      .zctx = o->zctx,
                      .plane = &w->plane};
    snprintf(w->sv.hello.model, sizeof w->sv.hello.model, "%s", o->model);
    if (pthread_create(&w->th, NULL, serve_main, w) != 0) {
        snprintf(err, (size_t)errlen, "cannot start a thread for the in-process %s", small ? "small worker" : "large worker");
        inproc_worker_stop(&w);
        return NULL;
    }
    w->started = 1;
    return w;
}

void inproc_worker_batches(const inproc_worker_t *w, long *batches, long *batched) {
    int small = w->ctx == &w->ss;
    *batches = small ? w->ss.batches : w->ls.batches;
    *batched = small ? w->ss.batched : w->ls.batched;
}

void inproc_worker_stop(inproc_worker_t **pw) {
    inproc_worker_t *w = pw ? *pw : NULL;
    if (!w) return;
    if (w->started) {
        w->stop = 1;
        pthread_join(w->th, NULL);
    }
    transport_server_destroy(&w->srv);
    if (w->ctx == &w->ls) large_server_free(&w->ls);
    free(w);
    *pw = NULL;
}
