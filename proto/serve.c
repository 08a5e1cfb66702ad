/* serve.c - see serve.h. */
#include "proto/serve.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

/* One PLANE_REQ step (see plane.h for the sequence). */
static void plane_step(const serve_t *sv, const proto_msg_t *m, proto_buf_t *out) {
    const plane_req_t *q = &m->plane_req;
    plane_res_t r;
    char err[1536];
    plane_local_info(sv->device, &r);
    if (!sv->plane) {
        proto_encode_error(out, m->id, PROTO_E_TYPE, "this worker has no data plane");
        return;
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
        fprintf(stderr, "bild %s: data plane %s open (rank %d%s%s)\n", sv->name, plane_kind_name(q->kind), q->rank,
                r.endpoint[0] ? ", " : "", r.endpoint);
        break;
    case PLANE_OP_CLOSE: plane_close(sv->plane); break;
    }
    proto_encode_plane_res(out, m->id, &r);
    return;
fail:
    fprintf(stderr, "bild %s: data plane: %s\n", sv->name, err);
    proto_encode_error(out, m->id, -100, err);
}

static int reply(void *sock, const proto_buf_t *b) {
    return b->data && zmq_send(sock, b->data, b->size, 0) >= 0 ? 0 : -1;
}

int serve_loop(transport_server_t *srv, const serve_t *sv) {
    proto_buf_t out = {0};
    char err[512];
    int rc = 0;
    void *sock = transport_server_socket(srv);
    while (!*sv->stop) {
        int np = transport_server_wait(srv, 200); /* wake up now and then to notice a stop signal */
        if (np < 0) {
            rc = -1;
            break;
        }
        if (np == 0) continue;
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, sock, 0) < 0) {
            zmq_msg_close(&msg);
            if (zmq_errno() == EINTR) continue;
            rc = -1;
            break;
        }
        proto_msg_t m;
        proto_err_t e = proto_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), sv->vocab, &m);
        zmq_msg_close(&msg);
        int quit = 0;
        if (e != PROTO_OK) {
            char why[128];
            if (e == PROTO_E_VERSION)
                snprintf(why, sizeof why, "protocol version %d is not spoken here: this worker speaks version %d",
                         m.version, PROTO_VERSION);
            else
                snprintf(why, sizeof why, "%s", proto_err_name(e));
            fprintf(stderr, "bild %s: refused a message: %s\n", sv->name, why);
            proto_encode_error(&out, 0, e, why);
        } else {
            switch (m.type) {
            case MSG_HELLO:
                if (m.role != sv->hello.role)
                    proto_encode_error(&out, m.id, PROTO_E_RANGE, "wrong role: this worker holds the other model");
                else
                    proto_encode_hello_reply(&out, m.id, &sv->hello);
                if (sv->plane) plane_close(sv->plane); /* a new coordinator sets up its own */
                break;
            case MSG_PLANE_REQ: plane_step(sv, &m, &out); break;
            case MSG_PING: proto_encode_simple(&out, m.id, MSG_PONG); break;
            case MSG_SHUTDOWN:
                proto_encode_simple(&out, m.id, MSG_PONG);
                quit = 1;
                break;
            default:
                if (sv->handle(sv->ctx, &m, &out, err, (int)sizeof err) != 0) {
                    fprintf(stderr, "bild %s: request %u failed: %s\n", sv->name, m.id, err);
                    proto_encode_error(&out, m.id, -100, err);
                }
            }
            proto_msg_free(&m);
        }
        if (sv->idle) sv->idle(sv->idle_ctx); /* the other worker may need the cores now */
        if (reply(sock, &out) != 0) {
            fprintf(stderr, "bild %s: cannot send a reply: %s\n", sv->name, zmq_strerror(zmq_errno()));
        }
        if (quit) break;
    }
    proto_buf_free(&out);
    if (sv->plane) plane_close(sv->plane);
    return rc;
}
