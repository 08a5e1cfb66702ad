/* cuda.h - the CUDA backend (kernels/cuda/: backend.cu, matmul.cu,
 * attention.cu, norm.cu; see cuda_impl.h. Built with make CUDA=1).
 *
 * Device memory for weights (uploaded once), activations and KV caches; one
 * CUDA stream and one cuBLAS handle per backend; every op is enqueued on
 * that stream, and only the calls that return data to the host (to_host,
 * row_stats) wait for it. */
#ifndef BILD_CUDA_H
#define BILD_CUDA_H

#include <stddef.h>

#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates a backend on GPU dev. Returns NULL with a one-line message in err
 * when there is no such GPU, no driver, or not enough memory. */
backend_t *backend_cuda_new(int dev, char *err, size_t errlen);

/* Waits until every op enqueued so far has finished (benchmarks). */
void backend_cuda_sync(backend_t *be);

/* Bytes per second the GPU copies device to device, measured with a large
 * cudaMemcpy (read + write counted): the bandwidth floor's denominator. */
double backend_cuda_measure_bandwidth(backend_t *be);

/* How the large matmuls run: 0 automatic (our kernel for blocks of up to
 * BILD_CUDA_GEMV_MAX_T rows, cuBLAS above), 1 our kernel up to
 * BILD_CUDA_GEMV_LIMIT rows, 2 always cuBLAS. From
 * BILD_CUDA_GEMM=auto|custom|cublas. */
#define BILD_CUDA_GEMV_MAX_T 3

/* 1: single-token steps run as one CUDA graph, re-recorded each step and
 * updated in place. Off by default (BILD_CUDA_GRAPH=1 turns it on): on an
 * H200 it measured no faster than launching the kernels (docs/gpu.md). */
void backend_cuda_set_graphs(backend_t *be, int on);
#define BILD_CUDA_GEMV_LIMIT 16
void backend_cuda_set_gemm(backend_t *be, int mode);

/* Profiling (benchmarks): on = 1 puts an event before every kernel from now
 * on; backend_cuda_profile_report then waits and sums the GPU time from each
 * event to the next (the kernel and the gap after it) by kernel name: up to
 * max names into names, ms and count; returns how many, and starts a new
 * sum. on = 0 stops. */
void backend_cuda_profile(backend_t *be, int on);
int backend_cuda_profile_report(backend_t *be, const char **names, double *ms, int *count, int max);

#ifdef __cplusplus
}
#endif

#endif
