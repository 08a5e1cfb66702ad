/* plane.h - the data plane: the small model's distributions going straight
 * to the large worker (speculative sampling needs them there), instead of
 * through the coordinator inside the control messages.
 *
 * Kinds:
 *   messages  no plane: everything travels in the control messages (the
 *             coordinator relays the distributions); always possible.
 *   host      a ZeroMQ PAIR socket between the two workers over ipc:// in a
 *             private directory (same host): one copy, no relay. The
 *             fallback for two workers on one GPU, which NCCL refuses.
 *   nccl      a 2-rank NCCL communicator (workers on two GPUs; the unique id
 *             travels over the control plane): ncclSend/ncclRecv on a
 *             dedicated stream (kernels/cuda/plane_nccl.h; make CUDA=1).
 *
 * Set-up, driven by the coordinator over the control plane (MSG_PLANE_REQ):
 * QUERY both workers (device, GPU UUID, host, NCCL available), choose with
 * plane_select, then host: OPEN the large worker (rank 0; it binds and
 * answers its endpoint), then OPEN the small one (rank 1) with it; nccl: ID
 * on the large worker, then OPEN on both at once (each blocks in
 * ncclCommInitRank until the other joins).
 *
 * Traffic: one transfer per speculative draft, small -> large, a 16-byte
 * header (magic, sequence number, rows, vocab) then rows x vocab f32. The
 * receiver checks the header against what its verify request says and every
 * value (a probability), and gives up after a timeout: the peer is
 * untrusted and may be gone.
 */
#ifndef BILD_PLANE_H
#define BILD_PLANE_H

#include <stddef.h>

#include "proto/proto.h"

/* Longest wait of a large worker for the small model's distributions. */
#define BILD_PLANE_TIMEOUT_MS 30000

typedef enum { PLANE_AUTO = -1, PLANE_MESSAGES = 0, PLANE_HOST = 1, PLANE_NCCL = 2 } plane_kind_t;

const char *plane_kind_name(int kind);
/* "auto", "messages", "host", "nccl" -> the kind; -2 if none of them. */
int plane_kind_parse(const char *s);

/* Chooses the plane for two workers described by their QUERY answers.
 * requested: PLANE_AUTO or a kind. Automatic: nccl for two different GPUs
 * that both have NCCL, host for two workers on one GPU (NCCL cannot put two
 * ranks on one device), messages otherwise (CPU workers: the relay through
 * the coordinator is the reference path). A requested kind that cannot work
 * (host across hosts, nccl without two GPUs or without NCCL) returns -1
 * with the reason in why; else 0 with *kind and a one-line reason. */
int plane_select(int requested, const plane_res_t *small, const plane_res_t *large, int *kind, char *why,
                 size_t whylen);

/* This process's answer to QUERY: device as given ("cpu", "cuda:N"), the
 * GPU's UUID, the host (hostname and boot id), NCCL compiled in. */
void plane_local_info(const char *device, plane_res_t *out);

typedef struct plane plane_t;

/* host kind. Rank 0 binds a fresh ipc:// endpoint (written to endpoint, a
 * directory only this user can enter); rank 1 connects to it. */
plane_t *plane_host_bind(void *zctx, char *endpoint, size_t n, char *err, size_t errlen);
plane_t *plane_host_connect(void *zctx, const char *endpoint, char *err, size_t errlen);
/* nccl kind: a unique id (rank 0 makes it), then both ranks open with it on
 * their GPU. Without NCCL in the build: -1 / NULL with a message. */
int plane_nccl_id(unsigned char id[PROTO_PLANE_ID], char *err, size_t errlen);
plane_t *plane_nccl_open(const unsigned char id[PROTO_PLANE_ID], int rank, int gpu, char *err, size_t errlen);

int plane_kind(const plane_t *p);
/* Sends rows x vocab probabilities to the peer (returns once they are
 * queued; the buffer may be reused at once). 0, or -1 with a message. */
int plane_send(plane_t *p, const float *rows, int n_rows, int vocab, char *err, size_t errlen);
/* Receives the peer's next transfer into rows, which must hold n_rows x
 * vocab; waits at most timeout_ms. -1 with a message if nothing came, the
 * header does not match, or a value is not a probability: the plane is
 * then broken (every later call fails). */
int plane_recv(plane_t *p, float *rows, int n_rows, int vocab, int timeout_ms, char *err, size_t errlen);
void plane_close(plane_t **pp);

#endif
