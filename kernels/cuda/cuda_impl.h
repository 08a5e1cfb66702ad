/* cuda_impl.h - what the files of the CUDA backend share (internal header;
 * kernels/cuda/cuda.h is the public one).
 *
 * The backend is split by op family. nvcc compiles each file on its own,
 * without relocatable device code, so a kernel lives in the file whose host
 * code launches it:
 *   backend.cu    the backend object: memory and copies, graphs, profiling,
 *                 backend_cuda_new (the ops table)
 *   matmul.cu     matmul and swiglu: our kernel for short blocks, the
 *                 tensor-core GEMM, the cuBLAS paths
 *   attention.cu  attention over the KV cache
 *   norm.cu       norms and element-wise ops: embedding, RMSNorm, RoPE,
 *                 row_stats, random tensors, and the held-back ops
 *                 (cu_flush: an RMSNorm or a RoPE kept to be fused into the
 *                 next op)
 * Calls go one way: backend.cu calls the op files, matmul.cu and
 * attention.cu call norm.cu (cu_flush), norm.cu none of them
 * (tests/test_layers.sh checks that no files call each other around a
 * circle).
 * This header holds the per-backend state (cu_t), the error checks, the
 * device helpers of several files (element access, warp and block sums) and
 * the functions one file calls in another.
 *
 * Errors: every CUDA and cuBLAS call is checked and so is every launch
 * (cudaGetLastError). A failure after start-up (a lost device, an illegal
 * address) ends the process with the call, file and line: the worker's
 * coordinator then reports the worker gone, as for any crash. */
#ifndef BILD_CUDA_IMPL_H
#define BILD_CUDA_IMPL_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/cuda.h"

/* Prints the failed call and ends the process (exit status 70). */
static inline void cuda_die(const char *what, const char *msg, const char *file, int line) {
    fprintf(stderr, "bild: CUDA error: %s: %s (%s:%d)\n", what, msg, file, line);
    exit(70);
}

#define CU(call)                                                                  \
    do {                                                                          \
        cudaError_t e_ = (call);                                                  \
        if (e_ != cudaSuccess) cuda_die(#call, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)
#define BLAS(call)                                                                \
    do {                                                                          \
        cublasStatus_t s_ = (call);                                               \
        if (s_ != CUBLAS_STATUS_SUCCESS) cuda_die(#call, cublasGetStatusString(s_), __FILE__, __LINE__); \
    } while (0)
#define LAUNCHED() CU(cudaGetLastError())
#define REQUIRE(cond)                                                             \
    do {                                                                          \
        if (!(cond)) cuda_die("internal check", #cond, __FILE__, __LINE__);       \
    } while (0)

typedef struct {
    int dev;
    cudaStream_t stream;
    cublasHandle_t blas;
    char name[24];
    char isa[320];
    int gemm_mode;       /* 0 auto, 1 custom, 2 cublas */
    int mma;             /* compute capability >= 8.0: the tensor-core kernel for 4..16-row blocks */
    int max_smem;        /* opt-in shared memory per block, bytes */
    void *scratch;       /* grow-only device scratch (split activations and products of a cuBLAS matmul) */
    size_t scratch_bytes;
    float *gate;         /* grow-only: SwiGLU's gate product on the cuBLAS path */
    size_t gate_bytes;
    int graphs;          /* record single-token steps as a graph */
    int capturing;
    cudaGraphExec_t exec; /* the last step's graph, updated in place by the next */
    /* ops held back so the next op can absorb them (cu_flush runs them):
     * an rmsnorm whose output the next matmul reads is computed inside that
     * matmul; two RoPEs in a row (q, then k) are one launch */
    int fuse;            /* BILD_CUDA_FUSE=0 turns this off */
    struct {
        int on, T, d;
        float *out;
        const float *x, *w;
        float eps;
    } pn;
    struct {
        int on, T, hd, pos0, halves, stride, nh;
        float *x;
        const float *cs;
    } pr;
    struct prof *prof;   /* backend_cuda_profile: an event before each kernel */
    float *d_stats;      /* (3, stats_cap): argmax, max_p, nll */
    float *h_stats;      /* pinned host copy */
    int stats_cap;
} cu_t;

#define PROF_MAX 16384
struct prof {
    int n;
    cudaEvent_t ev[PROF_MAX + 1];
    const char *name[PROF_MAX];
};

/* Marks the start of the kernels launched next, named what, while profiling. */
static inline void prof_mark(cu_t *c, const char *what) {
    struct prof *p = c->prof;
    if (!p || p->n >= PROF_MAX || c->capturing) return;
    CU(cudaEventRecord(p->ev[p->n], c->stream));
    p->name[p->n++] = what;
}

/* ---- element access, warp and block sums ----------------------------------- */

__device__ __forceinline__ float ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const __nv_bfloat16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float ld(const __half *p, int64_t i) { return __half2float(p[i]); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over a block of blockDim.x (a multiple of 32, <= 1024) threads; every thread gets it. */
__device__ inline float block_sum(float v) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) part[w] = v;
    __syncthreads();
    v = lane < nw ? part[lane] : 0.0f;
    return warp_sum(v);
}

/* ---- host helpers ---------------------------------------------------------- */

static inline cu_t *CU_(backend_t *be) { return (cu_t *)be->impl; }

static inline int grid_for(int64_t n, int block) {
    int64_t g = (n + block - 1) / block;
    return (int)(g < 1 ? 1 : g > 65535 ? 65535 : g);
}

static inline void check_own(const tensor_t &t) { REQUIRE(t.device == DEVICE_CUDA && t.data); }

/* ---- the functions one file calls in another ------------------------------- */

/* norm.cu: runs the held-back ops (an rmsnorm, a RoPE). Every entry point
 * calls it first, except the ops that may absorb them (matmul, swiglu,
 * rope), which call it when they do not. */
void cu_flush(cu_t *c);

/* norm.cu: the rmsnorm kernel (out = rmsnorm(x) * w, T rows of d) */
void launch_rmsnorm(cu_t *c, float *out, const float *x, tensor_t w, int T, int d, float eps);

typedef struct {
    float *x[2];
    int stride[2], nh[2];
} rope_parts_t; /* one launch rotates up to two tensors (q and k) at the same positions */
/* norm.cu: the RoPE kernel, one launch for the tensors of rp */
void launch_rope(cu_t *c, rope_parts_t rp, int T, int hd, int pos0, const float *cs, int halves);
/* attention.cu: lets the attention kernel use the shared memory a block may
 * opt in to and sets c->max_smem (backend_cuda_new) */
void cu_attention_init(cu_t *c, const cudaDeviceProp &p);

/* the ops of the backend_t table outside backend.cu */
tensor_t cu_random(backend_t *be, dtype_t dtype, int64_t n, uint64_t seed, float lo, float hi);
void cu_embed(backend_t *be, tensor_t out, tensor_t table, const int *tokens, int T, int d);
void cu_rmsnorm(backend_t *be, tensor_t out, tensor_t x, tensor_t w, int T, int d, float eps);
void cu_row_stats(backend_t *be, tensor_t x, int64_t off, int T, int V, const int *next, int *argmax, float *max_p,
                  float *nll);
void cu_matmul(backend_t *be, tensor_t x, int T, int d, const matmul_job_t *jobs, int n_jobs, int accumulate);
void cu_swiglu(backend_t *be, tensor_t out, tensor_t x, tensor_t w1, tensor_t w3, int T, int d, int hid);
void cu_rope(backend_t *be, tensor_t x, int64_t off, int row_stride, int T, int n_heads, int hd, int pos0,
             tensor_t cs, rope_style_t style);
void cu_attention(backend_t *be, tensor_t out, tensor_t q, tensor_t kc, tensor_t vc, int T, int pos0, int n_heads,
                  int n_kv, int hd);

#endif
