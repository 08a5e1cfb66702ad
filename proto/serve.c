/* serve.c - see serve.h. */
#include "proto/serve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

/* ---- sessions ---- */

typedef struct {
    uint64_t id;
    void *st;    /* the handlers' state */
    double last; /* when it was last used (monotonic seconds) */
    int fd;      /* the connection its last request came on */
} sess_t;

#define PLANE_TAKEOVER_S 5.0 /* a data plane whose session has been quiet this long may be taken over */
#define GONE_RING 256 /* recently ended sessions remembered, to say why a late request is refused */

typedef struct {
    const serve_t *sv;
    sess_t *s;
    int n;
    struct {
        uint64_t id;
        char why[96];
    } gone[GONE_RING];
    int n_gone;
    uint64_t plane_owner; /* the session whose data plane is open (0: none) */
    char batch_err[64][512]; /* run_batch's messages, one per request of a batch */
} sessions_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static sess_t *sess_find(sessions_t *t, uint64_t id) {
    for (int i = 0; i < t->n; i++)
        if (t->s[i].id == id) return &t->s[i];
    return NULL;
}

/* Ends session i, remembering why; closes the data plane if it was its own. */
static void sess_end(sessions_t *t, int i, const char *why, int log) {
    const serve_t *sv = t->sv;
    sess_t *x = &t->s[i];
    if (log) fprintf(stderr, "bild %s: session %016llx %s\n", sv->name, (unsigned long long)x->id, why);
    int g = t->n_gone++ % GONE_RING;
    t->gone[g].id = x->id;
    snprintf(t->gone[g].why, sizeof t->gone[g].why, "%s", why);
    if (t->plane_owner == x->id) {
        if (sv->plane) plane_close(sv->plane);
        t->plane_owner = 0;
    }
    sv->session_free(sv->ctx, x->st);
    *x = t->s[--t->n];
}

/* Why session id is not here: ended (and how), or never opened. */
static void sess_missing(const sessions_t *t, uint64_t id, char *err, int errlen) {
    int n = t->n_gone < GONE_RING ? t->n_gone : GONE_RING;
    for (int k = 0; k < n; k++) {
        int g = (t->n_gone - 1 - k) % GONE_RING;
        if (t->gone[g].id == id) {
            snprintf(err, (size_t)errlen, "session %016llx %s: its state is gone; start the request again",
                     (unsigned long long)id, t->gone[g].why);
            return;
        }
    }
    snprintf(err, (size_t)errlen, "session %016llx is not open on this worker (a coordinator says HELLO first)",
             (unsigned long long)id);
}

/* HELLO: a new session (evicting the least recently used one when full), or
 * the same one started afresh. */
static int sess_open(sessions_t *t, uint64_t id, int fd, char *err, int errlen) {
    const serve_t *sv = t->sv;
    sess_t *x = sess_find(t, id);
    if (x) sess_end(t, (int)(x - t->s), "restarted by a new HELLO", 0);
    if (t->n == sv->max_sessions) {
        int lru = 0;
        for (int i = 1; i < t->n; i++)
            if (t->s[i].last < t->s[lru].last) lru = i;
        char why[96];
        snprintf(why, sizeof why, "was evicted: least recently used of %d sessions (--max-sessions)", sv->max_sessions);
        sess_end(t, lru, why, 1);
    }
    void *st = sv->session_new(sv->ctx, err, errlen);
    if (!st) return -1;
    t->s[t->n++] = (sess_t){id, st, now_s(), fd};
    return 0;
}

/* The connection fd closed: its sessions end (a coordinator killed without BYE). */
static void sess_gone(sessions_t *t, int fd) {
    for (int i = t->n - 1; i >= 0; i--)
        if (fd >= 0 && t->s[i].fd == fd) sess_end(t, i, "ended: its coordinator went away (the connection closed)", 1);
}

static void sess_evict_idle(sessions_t *t) {
    if (t->sv->idle_s <= 0) return;
    double now = now_s();
    char why[96];
    snprintf(why, sizeof why, "was evicted: idle for %.0f s (--session-idle)", t->sv->idle_s);
    for (int i = t->n - 1; i >= 0; i--)
        if (now - t->s[i].last > t->sv->idle_s) sess_end(t, i, why, 1);
}

/* Does this request use the data plane? */
static int uses_plane(const proto_msg_t *m) {
    return (m->type == MSG_DRAFT_REQ && m->draft_req.plane_send) || (m->type == MSG_VERIFY_REQ && m->verify_req.accept_here);
}

/* One PLANE_REQ step (see plane.h for the sequence). */
static void plane_step(const serve_t *sv, sessions_t *t, const proto_msg_t *m, proto_buf_t *out) {
    const plane_req_t *q = &m->plane_req;
    plane_res_t r;
    char err[1536];
    plane_local_info(sv->device, &r);
    if (!sv->plane) {
        proto_encode_error(out, m->id, PROTO_E_TYPE, "this worker has no data plane");
        return;
    }
    if (t->plane_owner && t->plane_owner != m->session_id && (q->op == PLANE_OP_OPEN || q->op == PLANE_OP_CLOSE)) {
        /* another session's plane: taken over only if that session is gone or has been quiet a while (a
         * coordinator killed without BYE); its later requests over the plane are then refused */
        const sess_t *o = sess_find(t, t->plane_owner);
        if (o && now_s() - o->last < PLANE_TAKEOVER_S) {
            snprintf(err, sizeof err, "the data plane is in use by another coordinator's session (%016llx); run "
                                      "without --data-plane, or give this coordinator workers of its own",
                     (unsigned long long)t->plane_owner);
            goto fail;
        }
        t->plane_owner = 0;
    }
    switch (q->op) {
    case PLANE_OP_QUERY: break;
    case PLANE_OP_ID:
        if (plane_nccl_id(r.id, err, sizeof err)) goto fail;
        r.has_id = 1;
        break;
    case PLANE_OP_OPEN:
        plane_close(sv->plane);
        if (q->kind == PLANE_HOST) {
            *sv->plane = q->rank == 0 ? plane_host_bind(sv->zctx, r.endpoint, sizeof r.endpoint, err, sizeof err)
                                      : plane_host_connect(sv->zctx, q->endpoint, err, sizeof err);
        } else if (q->kind == PLANE_NCCL) {
            int gpu = 0;
            if (strncmp(r.device, "cuda", 4) || (r.device[4] && sscanf(r.device + 4, ":%d", &gpu) != 1)) {
                snprintf(err, sizeof err, "an NCCL data plane needs a worker on a GPU; this one is on %s", r.device);
                goto fail;
            }
            if (!q->has_id) {
                snprintf(err, sizeof err, "an NCCL data plane needs the unique id");
                goto fail;
            }
            *sv->plane = plane_nccl_open(q->id, q->rank, gpu, err, sizeof err);
        } else
            break; /* messages: no plane */
        if (!*sv->plane) goto fail;
        t->plane_owner = m->session_id;
        fprintf(stderr, "bild %s: data plane %s open (rank %d%s%s)\n", sv->name, plane_kind_name(q->kind), q->rank,
                r.endpoint[0] ? ", " : "", r.endpoint);
        break;
    case PLANE_OP_CLOSE:
        plane_close(sv->plane);
        t->plane_owner = 0;
        break;
    }
    proto_encode_plane_res(out, m->id, &r);
    return;
fail:
    fprintf(stderr, "bild %s: data plane: %s\n", sv->name, err);
    proto_encode_error(out, m->id, -100, err);
}

/* Handles one message (e: how its decoding went) into out. Returns 1 for
 * SHUTDOWN (the loop ends after the reply). */
static int handle_one(sessions_t *t, proto_msg_t *m, proto_err_t e, int fd, proto_buf_t *out) {
    const serve_t *sv = t->sv;
    char err[512];
    if (e != PROTO_OK) {
        char why[128];
        if (e == PROTO_E_VERSION)
            snprintf(why, sizeof why, "protocol version %d is not spoken here: this worker speaks version %d",
                     m->version, PROTO_VERSION);
        else
            snprintf(why, sizeof why, "%s", proto_err_name(e));
        fprintf(stderr, "bild %s: refused a message: %s\n", sv->name, why);
        out->session_id = 0;
        proto_encode_error(out, 0, e, why);
        return 0;
    }
    out->session_id = m->session_id;
    sess_t *x = sess_find(t, m->session_id);
    if (x && x->fd >= 0 && fd >= 0 && x->fd != fd && m->type != MSG_PING && m->type != MSG_SHUTDOWN) {
        /* a session is its coordinator's connection's: another connection naming it is refused */
        snprintf(err, sizeof err, "session %016llx belongs to another connection", (unsigned long long)m->session_id);
        fprintf(stderr, "bild %s: request %u refused: %s\n", sv->name, m->id, err);
        proto_encode_error(out, m->id, -100, err);
        return 0;
    }
    switch (m->type) {
    case MSG_HELLO:
        if (m->role != sv->hello.role)
            proto_encode_error(out, m->id, PROTO_E_RANGE, "wrong role: this worker holds the other model");
        else if (sess_open(t, m->session_id, fd, err, (int)sizeof err) != 0) {
            fprintf(stderr, "bild %s: cannot open a session: %s\n", sv->name, err);
            proto_encode_error(out, m->id, -100, err);
        } else
            proto_encode_hello_reply(out, m->id, &sv->hello);
        return 0;
    case MSG_PING: proto_encode_simple(out, m->id, MSG_PONG); return 0;
    case MSG_SHUTDOWN: proto_encode_simple(out, m->id, MSG_PONG); return 1;
    case MSG_BYE:
        if ((x = sess_find(t, m->session_id))) sess_end(t, (int)(x - t->s), "ended by its coordinator (BYE)", 0);
        proto_encode_simple(out, m->id, MSG_PONG);
        return 0;
    default: break;
    }
    if (!(x = sess_find(t, m->session_id))) {
        sess_missing(t, m->session_id, err, (int)sizeof err);
        fprintf(stderr, "bild %s: request %u refused: %s\n", sv->name, m->id, err);
        proto_encode_error(out, m->id, -100, err);
        return 0;
    }
    x->last = now_s(), x->fd = fd;
    if (m->type == MSG_PLANE_REQ) {
        plane_step(sv, t, m, out);
        return 0;
    }
    if (uses_plane(m) && t->plane_owner != m->session_id) {
        snprintf(err, sizeof err, "this session has no data plane open on this worker%s",
                 t->plane_owner ? " (another coordinator's session has it)" : "");
        proto_encode_error(out, m->id, -100, err);
        return 0;
    }
    if (sv->handle(sv->ctx, x->st, m, out, err, (int)sizeof err) != 0) {
        fprintf(stderr, "bild %s: request %u failed: %s\n", sv->name, m->id, err);
        proto_encode_error(out, m->id, -100, err);
    }
    return 0;
}

#define BATCH_MAX 64 /* requests taken from the socket at once (sessions_t.batch_err holds as many) */

/* One request taken from the socket, and its reply. */
typedef struct {
    transport_req_t *rq;
    proto_msg_t msg;
    proto_err_t de;
    proto_buf_t out;
    int in_batch;
} slot_t;

/* The batch: the slots marked in_batch go to run_batch together; those it
 * does not take (rc 1) are served alone. */
static void run_batch(sessions_t *t, slot_t *sl, int n, int nb) {
    const serve_t *sv = t->sv;
    void *st[BATCH_MAX];
    const proto_msg_t *req[BATCH_MAX];
    proto_buf_t *out[BATCH_MAX];
    int rc[BATCH_MAX], k = 0;
    char(*err)[512] = t->batch_err;
    for (int i = 0; i < n; i++) {
        if (!sl[i].in_batch) continue;
        sess_t *x = sess_find(t, sl[i].msg.session_id);
        x->last = now_s();
        sl[i].out.session_id = sl[i].msg.session_id;
        st[k] = x->st, req[k] = &sl[i].msg, out[k] = &sl[i].out, k++;
    }
    sv->run_batch(sv->ctx, nb, st, req, out, rc, err);
    for (int j = 0; j < nb; j++) {
        if (rc[j] > 0) rc[j] = sv->handle(sv->ctx, st[j], req[j], out[j], err[j], (int)sizeof err[j]);
        if (rc[j]) {
            fprintf(stderr, "bild %s: request %u failed: %s\n", sv->name, req[j]->id, err[j]);
            proto_encode_error(out[j], req[j]->id, -100, err[j]);
        }
    }
}

int serve_loop(transport_server_t *srv, const serve_t *sv) {
    int rc = 0, quit = 0;
    sessions_t *t = calloc(1, sizeof *t);
    slot_t *sl = calloc(BATCH_MAX, sizeof *sl);
    if (!t || !sl || !(t->s = calloc((size_t)(sv->max_sessions > 0 ? sv->max_sessions : 1), sizeof(sess_t)))) {
        fprintf(stderr, "bild %s: out of memory\n", sv->name);
        rc = -1;
        goto end;
    }
    t->sv = sv;
    while (!*sv->stop && !quit) {
        sess_evict_idle(t);
        int np = transport_server_wait(srv, 200); /* wake up now and then to notice a stop signal */
        if (np < 0) {
            rc = -1;
            break;
        }
        int gone[64], ng = transport_server_gone(srv, gone, 64);
        for (int i = 0; i < ng; i++) sess_gone(t, gone[i]);
        if (np == 0) continue;
        /* every request waiting now: from different coordinators, they may run as one batch */
        int n = 0, g;
        while (n < BATCH_MAX && (g = transport_server_recv(srv, &sl[n].rq)) == 1) {
            size_t len;
            const void *data = transport_req_data(sl[n].rq, &len);
            sl[n].de = proto_decode(data, len, sv->vocab, &sl[n].msg);
            n++;
        }
        if (n == 0 && g < 0) {
            rc = -1;
            break;
        }
        int nb = 0;
        for (int i = 0; i < n; i++) {
            const proto_msg_t *m = &sl[i].msg;
            const sess_t *x;
            sl[i].in_batch = sv->run_batch && sl[i].de == PROTO_OK && sv->can_batch(sv->ctx, m) && !uses_plane(m) &&
                             (x = sess_find(t, m->session_id)) != NULL && x->fd == transport_req_fd(sl[i].rq);
            for (int j = 0; j < i && sl[i].in_batch; j++) /* one request per session */
                if (sl[j].in_batch && sl[j].msg.session_id == m->session_id) sl[i].in_batch = 0;
            nb += sl[i].in_batch;
        }
        if (nb < 2)
            for (int i = 0; i < n; i++) sl[i].in_batch = 0;
        for (int i = 0; i < n; i++)
            if (!sl[i].in_batch) quit |= handle_one(t, &sl[i].msg, sl[i].de, transport_req_fd(sl[i].rq), &sl[i].out);
        if (nb >= 2) run_batch(t, sl, n, nb);
        if (sv->idle) sv->idle(sv->idle_ctx); /* the other worker may need the cores now */
        for (int i = 0; i < n; i++) {
            if (!sl[i].out.data || transport_server_reply(srv, &sl[i].rq, sl[i].out.data, sl[i].out.size) != 0)
                fprintf(stderr, "bild %s: cannot send a reply: %s\n", sv->name, zmq_strerror(zmq_errno()));
            transport_req_free(&sl[i].rq);
            if (sl[i].de == PROTO_OK) proto_msg_free(&sl[i].msg);
            proto_buf_free(&sl[i].out);
        }
    }
end:
    if (t && t->s)
        while (t->n) sess_end(t, t->n - 1, "ended: the worker stopped", 0);
    if (t) free(t->s);
    free(t);
    free(sl);
    if (sv->plane) plane_close(sv->plane);
    return rc;
}

void *serve_session_alloc(transformer_t *tf, size_t size, char *err, int errlen) {
    serve_session_t *b = calloc(1, size);
    if (!b) {
        snprintf(err, (size_t)errlen, "out of memory for a session");
        return NULL;
    }
    if (!(b->kv = transformer_cache_new(tf, err, (size_t)errlen))) {
        free(b);
        return NULL;
    }
    return b;
}

void serve_session_release(transformer_t *tf, void *st) {
    serve_session_t *b = st;
    if (!b) return;
    transformer_cache_free(tf, &b->kv);
    sampler_destroy(&b->smp);
    free(b);
}
