/* serve.h - a worker's request loop: receive, decode (untrusted), handle,
 * reply, until SHUTDOWN or a stop signal. A message that does not decode
 * gets an ERROR reply and is logged; the loop keeps serving. */
#ifndef BILD_SERVE_H
#define BILD_SERVE_H

#include <signal.h>

#include "proto/plane.h"
#include "proto/proto.h"
#include "proto/transport.h"

/* Handles one decoded request of a type other than HELLO/PING/SHUTDOWN and
 * writes the reply into *out. Returns 0, or -1 with a message in err (an
 * ERROR reply is then sent). */
typedef int (*serve_fn)(void *ctx, const proto_msg_t *req, proto_buf_t *out, char *err, int errlen);

typedef struct {
    const char *name;        /* for log lines: "small worker" */
    hello_reply_t hello;     /* what HELLO is answered with */
    int vocab;               /* expected distribution row length */
    serve_fn handle;
    void *ctx;
    volatile sig_atomic_t *stop; /* set by a signal handler: leave the loop */
    void (*idle)(void *idle_ctx);  /* called before each reply goes out (the compute threads may sleep); may be NULL */
    void *idle_ctx;
    /* data plane (proto/plane.h): set up by PLANE_REQ, closed by the next
     * HELLO (a new coordinator) and when the loop ends */
    const char *device;      /* "cpu", "cuda:N" */
    void *zctx;              /* for a host plane's socket */
    plane_t **plane;         /* where the open plane lives (the handlers read it); NULL: no data plane */
} serve_t;

/* Serves on a bound server. Returns 0 after SHUTDOWN or a stop signal,
 * -1 on a socket failure. Logs one line per refused message on stderr. */
int serve_loop(transport_server_t *srv, const serve_t *sv);

#endif
