/* transport.h - ZeroMQ plumbing for the control plane: worker sockets that
 * bind (loopback unless allowed otherwise), coordinator sockets that connect
 * with time limits, and one request/reply exchange.
 *
 * Left out for now: CURVE keys, heartbeats and reconnection (issue 5).
 */
#ifndef BILD_TRANSPORT_H
#define BILD_TRANSPORT_H

#include <stddef.h>

#include "proto/proto.h"

/* 1 if endpoint is ipc://, inproc://, or tcp:// on a loopback address
 * (127.x.x.x, localhost, [::1]). */
int transport_is_local(const char *endpoint);

/* A REP socket bound to endpoint. A non-local endpoint is refused unless
 * allow_remote. NULL with a message in err on failure. */
void *transport_bind(void *zctx, const char *endpoint, int allow_remote, char *err, size_t errlen);

/* A REQ socket connected to endpoint; each exchange gives up after
 * timeout_ms. NULL with a message in err on failure. */
void *transport_connect(void *zctx, const char *endpoint, int timeout_ms, char *err, size_t errlen);

/* Sends req and receives one reply into *reply (a malloc'd copy the caller
 * frees, its length in *n). Returns 0, or -1 with a message in err (timeout:
 * the peer is gone or stuck). */
int transport_exchange(void *sock, const proto_buf_t *req, void **reply, size_t *n, char *err, size_t errlen);

void transport_close(void **psock);

#endif
