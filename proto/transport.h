/* transport.h - ZeroMQ plumbing for the control plane.
 *
 * Workers own a server: a ROUTER socket bound to ipc:// or tcp:// (loopback
 * unless told otherwise), optionally with CURVE encryption and an allow list
 * of client keys checked by a ZAP handler that the serve loop polls, and a
 * monitor that logs coordinators connecting and going away.
 *
 * The coordinator owns one client per worker: a REQ socket with a time
 * limit per reply, ZMTP heartbeats (so a worker that dies or is stopped is
 * noticed within a few seconds even while a long request is outstanding),
 * and a monitor that turns connection events into errors: connection lost,
 * CURVE handshake refused.
 *
 * One client talks to one worker; a worker serves many clients, each
 * connection a session of its own (serve.h), the ROUTER telling their
 * requests apart.
 */
#ifndef BILD_TRANSPORT_H
#define BILD_TRANSPORT_H

#include <stddef.h>

#include "proto/proto.h"

#define TRANSPORT_KEY_TEXT 40 /* Z85 text of a 32-byte CURVE key */
#define TRANSPORT_HEARTBEAT_MS 1000 /* default ping interval; the peer is dropped after 3 silent intervals */

typedef struct {
    char pub[TRANSPORT_KEY_TEXT + 1];
    char sec[TRANSPORT_KEY_TEXT + 1];
} transport_keypair_t;

/* Failure kinds of a client exchange (0 is success). */
typedef enum {
    TRANSPORT_E_TIMEOUT = -1, /* no reply within the time limit */
    TRANSPORT_E_LOST = -2,    /* the connection dropped: peer killed, or silent past the heartbeat timeout */
    TRANSPORT_E_AUTH = -3,    /* the security handshake failed (CURVE key refused or missing) */
    TRANSPORT_E_OTHER = -4,   /* socket error, out of memory */
} transport_err_t;

/* 1 if endpoint is ipc://, inproc://, or tcp:// on a loopback address
 * (127.x.x.x, localhost, [::1]). */
int transport_is_local(const char *endpoint);

/* A fresh CURVE key pair. Returns 0, or -1 if libzmq lacks CURVE. */
int transport_keygen(transport_keypair_t *kp);
/* Writes PREFIX.key (the pair, mode 0600) and PREFIX.pub (the public key).
 * Returns 0, or -1 with a message in err. */
int transport_write_keys(const char *prefix, const transport_keypair_t *kp, char *err, size_t errlen);
/* Reads a key pair file ("public = Z85" and "secret = Z85" lines). */
int transport_load_keypair(const char *path, transport_keypair_t *kp, char *err, size_t errlen);
/* Reads public keys: every line that is a bare 40-character Z85 key or a
 * "public = KEY" line ('#' starts a comment). Returns how many (>= 1) with a
 * malloc'd array in *keys (caller frees), or -1 with a message in err. */
int transport_load_public_keys(const char *path, char (**keys)[TRANSPORT_KEY_TEXT + 1], char *err, size_t errlen);

/* ---- worker side ---- */

typedef struct transport_server transport_server_t;

typedef struct {
    const char *endpoint;
    int allow_remote;                /* permit a non-loopback tcp:// address */
    const transport_keypair_t *curve; /* the worker's key pair; NULL: no CURVE */
    const char (*allowed)[TRANSPORT_KEY_TEXT + 1]; /* CURVE: client public keys let in (copied) */
    int n_allowed;
    int heartbeat_ms;                /* 0: TRANSPORT_HEARTBEAT_MS */
    const char *name;                /* for log lines: "small worker" */
} transport_server_opts_t;

/* Binds. NULL with a message in err on failure; *refused is set to 1 when
 * the address was refused as non-local (a usage error, not a runtime one). */
transport_server_t *transport_server_new(void *zctx, const transport_server_opts_t *o, int *refused, char *err,
                                         size_t errlen);
void transport_server_destroy(transport_server_t **ps);
/* A worker's socket is a ROUTER: it may hold requests of many coordinators
 * at once (one per REQ connection) and answers each through its envelope. */
typedef struct transport_req transport_req_t;
/* Takes one waiting request, without waiting. Returns 1 with *req (give it
 * back with transport_server_reply or transport_req_free), 0 if none is
 * waiting (or one with a malformed envelope was dropped), -1 on a socket
 * failure. */
int transport_server_recv(transport_server_t *s, transport_req_t **req);
const void *transport_req_data(const transport_req_t *r, size_t *n);
/* The connection a request came on (its file descriptor, -1 if unknown),
 * and the connections closed since the last call (up to max into fds; the
 * count): a worker ends the sessions of a coordinator that went away. */
int transport_req_fd(const transport_req_t *r);
int transport_server_gone(transport_server_t *s, int *fds, int max);
/* Sends data (n bytes) as the reply to *r and frees it. 0, or -1. */
int transport_server_reply(transport_server_t *s, transport_req_t **r, const void *data, size_t n);
void transport_req_free(transport_req_t **r);
/* Waits up to timeout_ms for a request, answering ZAP requests and logging
 * connection events on the way. Returns 1 if a request can be read from
 * the socket, 0 on timeout or an interrupting signal, -1 on a socket failure. */
int transport_server_wait(transport_server_t *s, int timeout_ms);

/* ---- coordinator side ---- */

typedef struct transport_client transport_client_t;

/* Connects (the connection is made in the background; the first exchange
 * waits for it). curve: the coordinator's key pair and the worker's public
 * key, or NULL/NULL for no CURVE. NULL with a message in err on failure. */
transport_client_t *transport_client_new(void *zctx, const char *endpoint, int timeout_ms, int heartbeat_ms,
                                         const transport_keypair_t *curve, const char *server_key, char *err,
                                         size_t errlen);
void transport_client_destroy(transport_client_t **pc);

/* One request/reply, or its two halves (send now, receive later: the
 * coordinator overlaps a verification with drafting). The reply is a
 * malloc'd copy the caller frees, its length in *n. Return 0, or a
 * transport_err_t with a message in err. */
int transport_send(transport_client_t *c, const proto_buf_t *req, char *err, size_t errlen);
int transport_recv(transport_client_t *c, void **reply, size_t *n, char *err, size_t errlen);
int transport_exchange(transport_client_t *c, const proto_buf_t *req, void **reply, size_t *n, char *err,
                       size_t errlen);
/* 1 if the connection was seen to drop since the client was made (a
 * restarted worker needs a fresh client and handshake). Reads pending events. */
int transport_client_lost(transport_client_t *c);

#endif
