/* plane.c - see plane.h. */
#include "proto/plane.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "common/worker.h"
#ifdef BILD_CUDA
#include "kernels/cuda/plane_nccl.h"
#endif

#define PLANE_MAGIC 0x4e4c5042u /* "BPLN" */

struct plane {
    int kind;
    void *sock;           /* host */
    char dir[256];        /* host, rank 0: the private directory holding the socket */
    void *nccl;           /* nccl */
    uint32_t sent, recvd; /* sequence numbers */
    int broken;
    unsigned char *buf;   /* header + payload staging */
    size_t cap;
};

const char *plane_kind_name(int kind) {
    return kind == PLANE_HOST ? "host" : kind == PLANE_NCCL ? "nccl" : kind == PLANE_AUTO ? "auto" : "messages";
}

int plane_kind_parse(const char *s) {
    for (int k = PLANE_AUTO; k <= PLANE_NCCL; k++)
        if (!strcmp(s, plane_kind_name(k))) return k;
    return -2;
}

static int is_gpu(const plane_res_t *w) { return !strncmp(w->device, "cuda", 4) && w->uuid[0]; }

int plane_select(int requested, const plane_res_t *s, const plane_res_t *l, int *kind, char *why, size_t whylen) {
    int same_host = s->host[0] && !strcmp(s->host, l->host);
    int gpus = is_gpu(s) && is_gpu(l), same_gpu = gpus && same_host && !strcmp(s->uuid, l->uuid);
    int nccl_ok = gpus && !same_gpu && s->nccl && l->nccl;
    switch (requested) {
    case PLANE_MESSAGES:
        *kind = PLANE_MESSAGES;
        snprintf(why, whylen, "asked for");
        return 0;
    case PLANE_HOST:
        if (!same_host) {
            snprintf(why, whylen, "--data-plane host needs both workers on one host (small on %s, large on %s)",
                     s->host, l->host);
            return -1;
        }
        *kind = PLANE_HOST;
        snprintf(why, whylen, "asked for");
        return 0;
    case PLANE_NCCL:
        if (!nccl_ok) {
            snprintf(why, whylen, "--data-plane nccl needs the workers on two different GPUs, both built with NCCL "
                                  "(make CUDA=1): small on %s%s%s, large on %s%s%s",
                     s->device, s->nccl ? "" : " without NCCL", same_gpu ? " (the same GPU)" : "", l->device,
                     l->nccl ? "" : " without NCCL", same_gpu ? " (the same GPU)" : "");
            return -1;
        }
        *kind = PLANE_NCCL;
        snprintf(why, whylen, "asked for");
        return 0;
    }
    if (nccl_ok) *kind = PLANE_NCCL, snprintf(why, whylen, "two GPUs (%s, %s)", s->device, l->device);
    else if (same_gpu)
        *kind = PLANE_HOST, snprintf(why, whylen, "both workers on one GPU (%s): NCCL cannot put two ranks there",
                                     s->uuid);
    else if (gpus && same_host)
        *kind = PLANE_HOST, snprintf(why, whylen, "two GPUs without NCCL on one host");
    else
        *kind = PLANE_MESSAGES,
        snprintf(why, whylen, "%s", gpus ? "two GPUs on two hosts without NCCL" : "a worker on the CPU");
    return 0;
}

void plane_local_info(const char *device, plane_res_t *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->device, sizeof out->device, "%s", device ? device : "cpu");
    char host[256] = "", boot[64] = "";
    gethostname(host, sizeof host - 1);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(boot, sizeof boot, f)) boot[0] = 0;
        fclose(f);
        boot[strcspn(boot, "\n")] = 0;
    }
    snprintf(out->host, sizeof out->host, "%s/%s", host, boot);
#ifdef BILD_CUDA
    out->nccl = bild_nccl_available(NULL, 0);
    int gpu = 0;
    if (!strncmp(out->device, "cuda", 4) && (out->device[4] == 0 || sscanf(out->device + 4, ":%d", &gpu) == 1))
        bild_cuda_uuid(gpu, out->uuid, sizeof out->uuid);
#endif
}

static plane_t *plane_alloc(int kind) {
    plane_t *p = calloc(1, sizeof *p);
    if (p) p->kind = kind;
    return p;
}

static int host_socket(plane_t *p, void *zctx, char *err, size_t errlen) {
    if (!(p->sock = zmq_socket(zctx, ZMQ_PAIR))) {
        snprintf(err, errlen, "data plane: cannot make a socket: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    int linger = 0;
    int64_t maxmsg = 16 + (int64_t)(BILD_MAX_DRAFT + 1) * PROTO_MAX_VOCAB * (int64_t)sizeof(float);
    zmq_setsockopt(p->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(p->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    return 0;
}

plane_t *plane_host_bind(void *zctx, char *endpoint, size_t n, char *err, size_t errlen) {
    plane_t *p = plane_alloc(PLANE_HOST);
    if (!p) return snprintf(err, errlen, "out of memory"), NULL;
    const char *tmp = getenv("TMPDIR");
    snprintf(p->dir, sizeof p->dir, "%s/bild-plane-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(p->dir)) { /* mode 0700: only this user can connect */
        snprintf(err, errlen, "data plane: cannot make a directory under %s: %s", tmp && *tmp ? tmp : "/tmp",
                 strerror(errno));
        p->dir[0] = 0;
        plane_close(&p);
        return NULL;
    }
    snprintf(endpoint, n, "ipc://%s/plane", p->dir);
    if (host_socket(p, zctx, err, errlen) || zmq_bind(p->sock, endpoint) != 0) {
        if (p->sock) snprintf(err, errlen, "data plane: cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
        plane_close(&p);
        return NULL;
    }
    return p;
}

plane_t *plane_host_connect(void *zctx, const char *endpoint, char *err, size_t errlen) {
    plane_t *p = plane_alloc(PLANE_HOST);
    if (!p) return snprintf(err, errlen, "out of memory"), NULL;
    if (strncmp(endpoint, "ipc://", 6)) { /* a host plane never leaves the host */
        snprintf(err, errlen, "data plane: refusing endpoint %s (a host plane is ipc:// only)", endpoint);
        plane_close(&p);
        return NULL;
    }
    if (host_socket(p, zctx, err, errlen) || zmq_connect(p->sock, endpoint) != 0) {
        if (p->sock) snprintf(err, errlen, "data plane: cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        plane_close(&p);
        return NULL;
    }
    return p;
}

int plane_nccl_id(unsigned char id[PROTO_PLANE_ID], char *err, size_t errlen) {
#ifdef BILD_CUDA
    return bild_nccl_id(id, err, errlen);
#else
    (void)id;
    snprintf(err, errlen, "data plane: this build has no NCCL (rebuild with make CUDA=1)");
    return -1;
#endif
}

plane_t *plane_nccl_open(const unsigned char id[PROTO_PLANE_ID], int rank, int gpu, char *err, size_t errlen) {
#ifdef BILD_CUDA
    void *h = bild_nccl_open(id, rank, gpu, err, errlen);
    if (!h) return NULL;
    plane_t *p = plane_alloc(PLANE_NCCL);
    if (!p) {
        bild_nccl_close(h);
        return snprintf(err, errlen, "out of memory"), NULL;
    }
    p->nccl = h;
    return p;
#else
    (void)id, (void)rank, (void)gpu;
    snprintf(err, errlen, "data plane: this build has no NCCL (rebuild with make CUDA=1)");
    return NULL;
#endif
}

int plane_kind(const plane_t *p) { return p ? p->kind : PLANE_MESSAGES; }

static int grow(plane_t *p, size_t n) {
    if (n <= p->cap) return 0;
    unsigned char *b = realloc(p->buf, n);
    if (!b) return -1;
    p->buf = b, p->cap = n;
    return 0;
}

static void put_u32(unsigned char *b, uint32_t v) {
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

int plane_send(plane_t *p, const float *rows, int n_rows, int vocab, char *err, size_t errlen) {
    if (p->broken) return snprintf(err, errlen, "data plane: broken by an earlier failure"), -1;
    size_t payload = (size_t)n_rows * (size_t)vocab * sizeof(float);
    if (grow(p, 16 + payload)) return snprintf(err, errlen, "out of memory"), -1;
    put_u32(p->buf, PLANE_MAGIC), put_u32(p->buf + 4, p->sent), put_u32(p->buf + 8, (uint32_t)n_rows);
    put_u32(p->buf + 12, (uint32_t)vocab);
    if (payload) memcpy(p->buf + 16, rows, payload); /* f32 as this host stores it: little-endian hosts only */
    int rc = 0;
    if (p->kind == PLANE_HOST) {
        if (zmq_send(p->sock, p->buf, 16 + payload, 0) < 0)
            rc = -1, snprintf(err, errlen, "data plane: send failed: %s", zmq_strerror(zmq_errno()));
    }
#ifdef BILD_CUDA
    else if (p->kind == PLANE_NCCL)
        rc = bild_nccl_send(p->nccl, p->buf, 16, p->buf + 16, payload, err, errlen);
#endif
    if (rc) p->broken = 1;
    else p->sent++;
    return rc;
}

static int check_header(plane_t *p, const unsigned char *h, int n_rows, int vocab, char *err, size_t errlen) {
    if (get_u32(h) != PLANE_MAGIC || get_u32(h + 4) != p->recvd || get_u32(h + 8) != (uint32_t)n_rows ||
        get_u32(h + 12) != (uint32_t)vocab) {
        snprintf(err, errlen, "data plane: transfer %u does not match (magic %08x, number %u, %u rows of %u; "
                              "expected number %u, %d rows of %d)",
                 p->recvd, get_u32(h), get_u32(h + 4), get_u32(h + 8), get_u32(h + 12), p->recvd, n_rows, vocab);
        return -1;
    }
    return 0;
}

int plane_recv(plane_t *p, float *rows, int n_rows, int vocab, int timeout_ms, char *err, size_t errlen) {
    if (p->broken) return snprintf(err, errlen, "data plane: broken by an earlier failure"), -1;
    size_t payload = (size_t)n_rows * (size_t)vocab * sizeof(float);
    int rc = -1;
    if (p->kind == PLANE_HOST) {
        zmq_pollitem_t it = {p->sock, 0, ZMQ_POLLIN, 0};
        int np;
        while ((np = zmq_poll(&it, 1, timeout_ms)) < 0 && zmq_errno() == EINTR) {}
        if (np <= 0) {
            snprintf(err, errlen, "data plane: nothing from the small worker within %d ms", timeout_ms);
            goto out;
        }
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, p->sock, 0) < 0) {
            snprintf(err, errlen, "data plane: receive failed: %s", zmq_strerror(zmq_errno()));
            zmq_msg_close(&msg);
            goto out;
        }
        const unsigned char *d = zmq_msg_data(&msg);
        size_t n = zmq_msg_size(&msg);
        if (n < 16) snprintf(err, errlen, "data plane: a %zu-byte transfer (a header is 16)", n);
        else if (!check_header(p, d, n_rows, vocab, err, errlen)) {
            if (n != 16 + payload)
                snprintf(err, errlen, "data plane: transfer of %zu bytes, expected %zu", n, 16 + payload);
            else {
                if (payload) memcpy(rows, d + 16, payload);
                rc = 0;
            }
        }
        zmq_msg_close(&msg);
    }
#ifdef BILD_CUDA
    else if (p->kind == PLANE_NCCL) {
        unsigned char h[16];
        if (!bild_nccl_recv(p->nccl, h, 16, timeout_ms, err, errlen) && !check_header(p, h, n_rows, vocab, err, errlen))
            rc = bild_nccl_recv(p->nccl, rows, payload, timeout_ms, err, errlen);
    }
#endif
    if (rc == 0)
        for (size_t i = 0; i < (size_t)n_rows * (size_t)vocab; i++)
            if (!(rows[i] >= 0.0f && rows[i] <= 1.0f)) {
                snprintf(err, errlen, "data plane: transfer %u holds %g at row %zu, not a probability", p->recvd,
                         (double)rows[i], i / (size_t)vocab);
                rc = -1;
                break;
            }
out:
    if (rc) p->broken = 1;
    else p->recvd++;
    return rc;
}

void plane_close(plane_t **pp) {
    if (!pp || !*pp) return;
    plane_t *p = *pp;
    if (p->sock) zmq_close(p->sock);
    if (p->dir[0]) {
        char path[300];
        snprintf(path, sizeof path, "%s/plane", p->dir);
        unlink(path);
        rmdir(p->dir);
    }
#ifdef BILD_CUDA
    if (p->nccl) bild_nccl_close(p->nccl);
#endif
    free(p->buf);
    free(p);
    *pp = NULL;
}
