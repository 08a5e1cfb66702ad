/* transport.c - see transport.h. */
#include "proto/transport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

int transport_is_local(const char *ep) {
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9)) return 1;
    if (strncmp(ep, "tcp://", 6)) return 0;
    const char *h = ep + 6;
    return !strncmp(h, "127.", 4) || !strncmp(h, "localhost:", 10) || !strncmp(h, "[::1]:", 6);
}

void *transport_bind(void *zctx, const char *endpoint, int allow_remote, char *err, size_t errlen) {
    if (!allow_remote && !transport_is_local(endpoint)) {
        snprintf(err, errlen, "refusing to bind %s: not a loopback or ipc:// address (pass --allow-remote to "
                              "listen on the network)", endpoint);
        return NULL;
    }
    void *s = zmq_socket(zctx, ZMQ_REP);
    int linger = 0;
    if (!s) {
        snprintf(err, errlen, "cannot create a socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(s, endpoint) != 0) {
        snprintf(err, errlen, "cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

void *transport_connect(void *zctx, const char *endpoint, int timeout_ms, char *err, size_t errlen) {
    void *s = zmq_socket(zctx, ZMQ_REQ);
    int linger = 0, on = 1;
    if (!s) {
        snprintf(err, errlen, "cannot create a socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    /* after a timed-out request the socket may send again, and replies are
     * matched to their request */
    zmq_setsockopt(s, ZMQ_REQ_RELAXED, &on, sizeof on);
    zmq_setsockopt(s, ZMQ_REQ_CORRELATE, &on, sizeof on);
    if (zmq_connect(s, endpoint) != 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

int transport_exchange(void *sock, const proto_buf_t *req, void **reply, size_t *n, char *err, size_t errlen) {
    *reply = NULL, *n = 0;
    if (zmq_send(sock, req->data, req->size, 0) < 0) {
        snprintf(err, errlen, "send failed: %s", errno == EAGAIN ? "timed out" : zmq_strerror(zmq_errno()));
        return -1;
    }
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, sock, 0) < 0) {
        snprintf(err, errlen, "no reply: %s", errno == EAGAIN ? "timed out (is the worker running?)"
                                                             : zmq_strerror(zmq_errno()));
        zmq_msg_close(&msg);
        return -1;
    }
    *n = zmq_msg_size(&msg);
    *reply = malloc(*n ? *n : 1);
    if (*reply) memcpy(*reply, zmq_msg_data(&msg), *n);
    zmq_msg_close(&msg);
    if (!*reply) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

void transport_close(void **psock) {
    if (psock && *psock) zmq_close(*psock);
    if (psock) *psock = NULL;
}
