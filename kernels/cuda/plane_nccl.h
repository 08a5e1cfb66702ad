/* plane_nccl.h - the NCCL half of the data plane (proto/plane.c): a 2-rank
 * communicator between the two workers' GPUs, with its own CUDA stream.
 * NCCL itself is loaded with dlopen on first use: a machine without it runs
 * everything else and reports the data plane as unavailable.
 * Host buffers in and out: the bytes are staged through pinned and device
 * memory here (the distributions are made on the host today). Every CUDA
 * and NCCL call is checked; waits poll with a time limit and abort the
 * communicator when the peer does not answer. Built with make CUDA=1. */
#ifndef BILD_PLANE_NCCL_H
#define BILD_PLANE_NCCL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if NCCL (libnccl.so.2, loaded at run time) can be used here; else 0
 * with the reason in why. */
int bild_nccl_available(char *why, size_t n);
/* 16 characters of the GPU's UUID as "GPU-xxxxxxxx-..." into out; 0 or -1. */
int bild_cuda_uuid(int gpu, char *out, size_t n);
/* ncclGetUniqueId into id (128 bytes). */
int bild_nccl_id(unsigned char *id, char *err, size_t errlen);
/* Joins the 2-rank communicator of id as rank on GPU gpu; waits at most
 * BILD_NCCL_INIT_MS (20 s, inside the coordinator's reply timeout) for the peer. */
void *bild_nccl_open(const unsigned char *id, int rank, int gpu, char *err, size_t errlen);
/* Sends head (hbytes) then body (bbytes) to the peer; returns once they are
 * copied to pinned memory and enqueued (the previous send is waited for
 * first). */
int bild_nccl_send(void *h, const void *head, size_t hbytes, const void *body, size_t bbytes, char *err,
                   size_t errlen);
/* Receives bytes from the peer into buf, waiting at most timeout_ms. */
int bild_nccl_recv(void *h, void *buf, size_t bytes, int timeout_ms, char *err, size_t errlen);
void bild_nccl_close(void *h);

#define BILD_NCCL_INIT_MS 20000

#ifdef __cplusplus
}
#endif

#endif
