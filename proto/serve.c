/* serve.c - see serve.h. */
#include "proto/serve.h"

#include <errno.h>
#include <stdio.h>
#include <zmq.h>

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
                break;
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
    return rc;
}
