/* cuda.cu - the CUDA backend: every op of kernels/ops.h on one GPU.
 *
 * Memory: weights are uploaded once in their file dtype (f32, bf16 or f16);
 * activations, the KV cache and logits are f32 device buffers. Nothing is
 * allocated per token: scratch buffers grow at first use and stay.
 *
 * Ordering: one CUDA stream per backend (one per worker process) and a
 * cuBLAS handle bound to it. Ops are enqueued without waiting; only the
 * calls that hand data to the host (to_host, row_stats) synchronise. Host
 * arrays the ops take (token ids, next ids) travel inside the kernel's
 * arguments, 64 at a time, so no host buffer is read after the call returns.
 *
 * Matmuls (the weight stream is the cost of decoding):
 * - Blocks of T <= BILD_CUDA_GEMV_MAX_T rows (a decoding step): our own
 *   kernel. A warp owns R output rows and walks them with 16-byte
 *   loads of the weights, widening half to f32 in registers, against f32
 *   activations read through the read-only cache; each weight element is
 *   read once for all T rows. Sums are f32, as on the CPU, so a GPU step
 *   and a CPU step differ only by summation order.
 * - Longer blocks (verification blocks, prompts): cuBLAS, whose skinny
 *   GEMMs read the weights once for all rows at tensor-core speed (ours
 *   does T times the FMAs on CUDA cores: measured 3.2x a step at T = 8). f32 weights: SGEMM (no TF32). Half
 *   weights: cublasGemmEx takes both operands in one type, so the f32
 *   activation is split as x = hi + lo with hi = half(x), lo = half(x - hi)
 *   (together 16 significant bits for bf16, 22 for f16), multiplied as one
 *   GEMM of 2T columns with f32 accumulation, and the halves added. The
 *   error is ~2^-16 relative to |x| per term, near f32 quality instead of
 *   the ~2^-8 of a plain bf16 activation.
 * BILD_CUDA_GEMM=custom|cublas|auto (or backend_cuda_set_gemm) forces a
 * path, for benchmarks.
 *
 * Errors: every CUDA and cuBLAS call is checked and so is every launch
 * (cudaGetLastError). A failure after start-up (a lost device, an illegal
 * address) ends the process with the call, file and line: the worker's
 * coordinator then reports the worker gone, as for any crash. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "kernels/cuda/cuda.h"
#include "kernels/dummy.h"

#define TOK_CHUNK 64

static void cuda_die(const char *what, const char *msg, const char *file, int line) {
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
    /* ops held back so the next op can absorb them (flush runs them):
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
static void prof_mark(cu_t *c, const char *what) {
    struct prof *p = c->prof;
    if (!p || p->n >= PROF_MAX || c->capturing) return;
    CU(cudaEventRecord(p->ev[p->n], c->stream));
    p->name[p->n++] = what;
}

typedef struct {
    int v[TOK_CHUNK];
} ids_t; /* host ids passed by value in kernel arguments */

/* ---- element access -------------------------------------------------------- */

__device__ __forceinline__ float ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const __nv_bfloat16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float ld(const __half *p, int64_t i) { return __half2float(p[i]); }

/* 16 bytes of weights widened: 4 floats or 8 halves */
template <typename W> struct vec_of;
template <> struct vec_of<float> { enum { N = 4 }; };
template <> struct vec_of<__nv_bfloat16> { enum { N = 8 }; };
template <> struct vec_of<__half> { enum { N = 8 }; };

__device__ __forceinline__ void widen(const uint4 &u, float *f, const float *) {
    f[0] = __uint_as_float(u.x), f[1] = __uint_as_float(u.y), f[2] = __uint_as_float(u.z), f[3] = __uint_as_float(u.w);
}
__device__ __forceinline__ void widen(const uint4 &u, float *f, const __nv_bfloat16 *) {
    /* bf16 is the top half of an f32: a shift widens it exactly */
    uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) f[2 * i] = __uint_as_float(w[i] << 16), f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
}
__device__ __forceinline__ void widen(const uint4 &u, float *f, const __half *) {
    uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        __half2 h = *reinterpret_cast<__half2 *>(&w[i]);
        float2 g = __half22float2(h);
        f[2 * i] = g.x, f[2 * i + 1] = g.y;
    }
}

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
__device__ float block_sum(float v) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) part[w] = v;
    __syncthreads();
    v = lane < nw ? part[lane] : 0.0f;
    return warp_sum(v);
}

/* ---- the matmul kernel for short blocks -------------------------------------
 * For each job j of up to GEMV_JOBS sharing the input x (T, d), T <= TT:
 * out_j[t, row] (op)= sum_k x[t, k] W_j[row, k]. One launch covers every job
 * (the Q, K and V projections are one launch): block b belongs to the job
 * whose range of blocks holds it. A warp owns R consecutive rows. MODE 0:
 * store; 1: accumulate; 2: SwiGLU (one job; w3 is W3 and out = silu(x W^T) *
 * (x W3^T)). VEC: 16-byte loads (d a multiple of the vector length, rows and
 * x 16-byte aligned), else scalar loads. */
#define GEMV_JOBS 3
typedef struct {
    const void *w[GEMV_JOBS];
    float *out[GEMV_JOBS];
    int n[GEMV_JOBS];
    int blk_end[GEMV_JOBS]; /* cumulative block counts */
    int nj;
    const void *w3;
    const float *x;
    int T, d;
    /* NORM kernels: x is rmsnorm(nsrc) * nw, computed here (the rmsnorm op
     * before this matmul, fused); block 0 also stores it in x's place */
    const float *nw;
    float *nout;
    float eps;
} gemv_args_t;

/* acc[m][r][t] += sum over the VN elements at column k of chunk u[m][r][q] * x[t][k..] */
template <typename W, int TT, int R, int NW, int VN, int UU, bool NORM>
__device__ __forceinline__ void gemv_chunk(float (&acc)[NW][R][TT], const uint4 (&u)[NW][R][UU], int q,
                                           const float *__restrict__ x, int T, int d, int k, const W *tag,
                                           float (&ss)[TT], const float *__restrict__ nw) {
    float wf[NW][R][VN];
#pragma unroll
    for (int m = 0; m < NW; m++)
#pragma unroll
        for (int r = 0; r < R; r++) widen(u[m][r][q], wf[m][r], tag);
#pragma unroll
    for (int t = 0; t < TT; t++) {
        if (t < T) {
            float xf[VN];
            const float4 *xp = reinterpret_cast<const float4 *>(x + (int64_t)t * d + k);
#pragma unroll
            for (int e = 0; e < VN / 4; e++) {
                float4 v = __ldg(xp + e);
                xf[4 * e] = v.x, xf[4 * e + 1] = v.y, xf[4 * e + 2] = v.z, xf[4 * e + 3] = v.w;
                if (NORM) { /* sum x^2 as we go; the dot products use x * w, scaled by 1/rms at the end */
                    float4 g = __ldg(reinterpret_cast<const float4 *>(nw + k) + e);
                    ss[t] = fmaf(v.x, v.x, fmaf(v.y, v.y, fmaf(v.z, v.z, fmaf(v.w, v.w, ss[t]))));
                    xf[4 * e] *= g.x, xf[4 * e + 1] *= g.y, xf[4 * e + 2] *= g.z, xf[4 * e + 3] *= g.w;
                }
            }
#pragma unroll
            for (int m = 0; m < NW; m++)
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int e = 0; e < VN; e++) acc[m][r][t] = fmaf(wf[m][r][e], xf[e], acc[m][r][t]);
        }
    }
}

template <typename W, int TT, int R, int MODE, bool VEC, bool NORM>
__global__ void __launch_bounds__(128) gemv_kernel(const gemv_args_t a) {
    /* which job: unrolled selects keep the argument block out of local memory */
    int b = blockIdx.x, lb = b, n = a.n[0];
    const void *wj = a.w[0];
    float *oj = a.out[0];
#pragma unroll
    for (int i = 1; i < GEMV_JOBS; i++)
        if (i < a.nj && b >= a.blk_end[i - 1]) lb = b - a.blk_end[i - 1], n = a.n[i], wj = a.w[i], oj = a.out[i];
    int lane = threadIdx.x & 31, row0 = (lb * (blockDim.x >> 5) + (threadIdx.x >> 5)) * R, d = a.d, T = a.T;
    bool live = row0 < n; /* a warp past the last row only helps with the norm */
    const W *__restrict__ w = (const W *)wj;
    const W *__restrict__ w3 = (const W *)a.w3;
    const float *__restrict__ x = a.x;
    float *__restrict__ out = oj;
    const int NW = MODE == 2 ? 2 : 1;
    const int VN = VEC ? vec_of<W>::N : 1, STEP = 32 * VN, U = 4;
    int nrows = n - row0 < R ? n - row0 : R;
    /* U chunks of 16 bytes per row and lane are loaded before any is used,
     * so each lane keeps U * R * NW loads in flight (the weight stream is
     * latency-bound otherwise); weights bypass L1 (read once), activations
     * stay there (read by every warp). The first batch is asked for before
     * the fused norm's reduction, which then hides under its latency. */
    const W *rp[NW][R];
    uint4 u[NW][R][U];
    int k = lane * VN;
    bool first = VEC && live && k + (U - 1) * STEP < d;
    if (VEC && live) {
#pragma unroll
        for (int m = 0; m < NW; m++)
#pragma unroll
            for (int r = 0; r < R; r++) rp[m][r] = (m ? w3 : w) + (int64_t)(r < nrows ? row0 + r : row0) * d;
    }
    if (first) {
#pragma unroll
        for (int m = 0; m < NW; m++)
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int q = 0; q < U; q++) u[m][r][q] = __ldcs(reinterpret_cast<const uint4 *>(rp[m][r] + k + q * STEP));
    }
    /* fused rmsnorm: each warp sums x^2 over the whole row as it streams
     * (every lane walks all of d), so it has 1/rms at the end without a
     * block reduction or a barrier; warps without rows of their own still
     * do that in block 0, which also writes the norm's output */
    float ss[TT];
#pragma unroll
    for (int t = 0; t < TT; t++) ss[t] = 0.0f;
    if (!live) {
        if constexpr (!NORM) return;
        else {
            if (blockIdx.x != 0) return;
            for (int kk = lane * 4; kk < d; kk += 128) /* d is a multiple of 4 here */
#pragma unroll
                for (int t = 0; t < TT; t++) {
                    if (t >= T) break;
                    float4 v = *reinterpret_cast<const float4 *>(x + (int64_t)t * d + kk);
                    ss[t] = fmaf(v.x, v.x, fmaf(v.y, v.y, fmaf(v.z, v.z, fmaf(v.w, v.w, ss[t]))));
                }
        }
    }
    float acc[NW][R][TT];
#pragma unroll
    for (int m = 0; m < NW; m++)
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < TT; t++) acc[m][r][t] = 0.0f;
    if (VEC && live) { /* (a warp without rows only summed x^2 above) */
        if (first) {
#pragma unroll
            for (int q = 0; q < U; q++)
                gemv_chunk<W, TT, R, NW, VN, U, NORM>(acc, u, q, x, T, d, k + q * STEP, w, ss, a.nw);
            k += U * STEP;
        }
        for (; k + (U - 1) * STEP < d; k += U * STEP) {
#pragma unroll
            for (int m = 0; m < NW; m++)
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int q = 0; q < U; q++) u[m][r][q] = __ldcs(reinterpret_cast<const uint4 *>(rp[m][r] + k + q * STEP));
#pragma unroll
            for (int q = 0; q < U; q++)
                gemv_chunk<W, TT, R, NW, VN, U, NORM>(acc, u, q, x, T, d, k + q * STEP, w, ss, a.nw);
        }
        for (; k < d; k += STEP) {
            uint4 u1[NW][R][1];
#pragma unroll
            for (int m = 0; m < NW; m++)
#pragma unroll
                for (int r = 0; r < R; r++) u1[m][r][0] = __ldcs(reinterpret_cast<const uint4 *>(rp[m][r] + k));
            gemv_chunk<W, TT, R, NW, VN, 1, NORM>(acc, u1, 0, x, T, d, k, w, ss, a.nw);
        }
    } else if (!VEC) {
        for (int k = lane; k < d; k += 32) {
#pragma unroll
            for (int t = 0; t < TT; t++) {
                if (t < T) {
                    float xv = x[(int64_t)t * d + k];
#pragma unroll
                    for (int m = 0; m < NW; m++)
#pragma unroll
                        for (int r = 0; r < R; r++)
                            if (r < nrows) acc[m][r][t] = fmaf(ld(m ? w3 : w, (int64_t)(row0 + r) * d + k), xv, acc[m][r][t]);
                }
            }
        }
    }
#pragma unroll
    for (int m = 0; m < NW; m++)
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < TT; t++) acc[m][r][t] = warp_sum(acc[m][r][t]);
    if (NORM) {
        float inv[TT];
#pragma unroll
        for (int t = 0; t < TT; t++) inv[t] = t < T ? 1.0f / sqrtf(warp_sum(ss[t]) / d + a.eps) : 0.0f;
#pragma unroll
        for (int m = 0; m < NW; m++)
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int t = 0; t < TT; t++) acc[m][r][t] *= inv[t];
        if (blockIdx.x == 0) { /* the rmsnorm op's own output, a quarter per warp */
            int wid = threadIdx.x >> 5, nwp = blockDim.x >> 5;
            for (int e = wid * 32 + lane; e < T * d; e += nwp * 32) {
                int t = e / d;
                float it = inv[0];
#pragma unroll
                for (int q = 1; q < TT; q++)
                    if (q == t) it = inv[q];
                a.nout[e] = x[e] * it * a.nw[e - t * d];
            }
        }
        if (!live) return;
    }
    /* lane i writes the (r, t) pairs with (r * TT + t) % 32 == i */
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < TT; t++) {
            if (((r * TT + t) & 31) != lane || r >= nrows || t >= T) continue;
            float *o = out + (int64_t)t * n + row0 + r;
            if (MODE == 2) {
                float g = acc[0][r][t];
                *o = g / (1.0f + expf(-g)) * acc[NW - 1][r][t];
            } else if (MODE == 1)
                *o += acc[0][r][t];
            else
                *o = acc[0][r][t];
        }
}

/* 16-byte loads are possible: d a multiple of the vector length, every
 * matrix and x (and a fused norm's weight) 16-byte aligned */
static bool gemv_vec_ok(const gemv_args_t &a, dtype_t dt) {
    int vn = dt == DTYPE_F32 ? 4 : 8;
    bool ok = a.d % vn == 0 && ((uintptr_t)a.x & 15) == 0 && (!a.w3 || ((uintptr_t)a.w3 & 15) == 0) &&
              (!a.nw || ((uintptr_t)a.nw & 15) == 0);
    for (int j = 0; j < a.nj; j++) ok = ok && ((uintptr_t)a.w[j] & 15) == 0;
    return ok;
}

template <typename W, int TT, int MODE>
static void gemv_launch(cu_t *c, gemv_args_t a, bool vec) {
    /* rows per warp: more rows reuse each activation load more (long blocks);
     * fewer give more warps, hence more loads in flight (single steps) */
    const int R = MODE == 2 ? (TT >= 8 ? 1 : 2) : (TT == 1 ? 2 : 4);
    const int rows_per_block = 4 * R;
    int blocks = 0;
    for (int j = 0; j < a.nj; j++) {
        blocks += (a.n[j] + rows_per_block - 1) / rows_per_block;
        a.blk_end[j] = blocks;
    }
    prof_mark(c, MODE == 2 ? (a.nw ? "swiglu+norm (ours)" : "swiglu (ours)")
                           : (a.nw ? "matmul+norm (ours)" : "matmul (ours)"));
    if (a.nw) { /* fused rmsnorm: only vector kernels of up to 4 rows exist (the caller checks) */
        REQUIRE(vec && TT <= 4);
        if constexpr (TT <= 4) gemv_kernel<W, TT, R, MODE, true, true><<<blocks, 128, 0, c->stream>>>(a);
    } else if (vec)
        gemv_kernel<W, TT, R, MODE, true, false><<<blocks, 128, 0, c->stream>>>(a);
    else
        gemv_kernel<W, TT, R, MODE, false, false><<<blocks, 128, 0, c->stream>>>(a);
    LAUNCHED();
}

template <typename W, int MODE>
static void gemv_t(cu_t *c, const gemv_args_t &a, bool vec) {
    if (a.T == 1) gemv_launch<W, 1, MODE>(c, a, vec);
    else if (a.T == 2) gemv_launch<W, 2, MODE>(c, a, vec);
    else if (a.T <= 4) gemv_launch<W, 4, MODE>(c, a, vec);
    else if (a.T <= 8) gemv_launch<W, 8, MODE>(c, a, vec);
    else gemv_launch<W, 16, MODE>(c, a, vec);
}

template <int MODE>
static void gemv(cu_t *c, const gemv_args_t &a, dtype_t dt) {
    bool vec = gemv_vec_ok(a, dt);
    if (dt == DTYPE_F32) gemv_t<float, MODE>(c, a, vec);
    else if (dt == DTYPE_BF16) gemv_t<__nv_bfloat16, MODE>(c, a, vec);
    else gemv_t<__half, MODE>(c, a, vec);
}

/* ---- small kernels ------------------------------------------------------- */

template <typename W>
__global__ void embed_kernel(float *out, const W *table, ids_t ids, int d) {
    int t = blockIdx.x;
    const W *row = table + (int64_t)ids.v[t] * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) out[(int64_t)t * d + i] = ld(row, i);
}

template <typename W>
__global__ void rmsnorm_kernel(float *out, const float *x, const W *w, int d, float eps) {
    const float *xr = x + (int64_t)blockIdx.x * d;
    float ss = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss);
    float inv = 1.0f / sqrtf(ss / d + eps);
    float *o = out + (int64_t)blockIdx.x * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) o[i] = xr[i] * inv * ld(w, i);
}

typedef struct {
    float *x[2];
    int stride[2], nh[2];
} rope_parts_t; /* one launch rotates up to two tensors (q and k) at the same positions */

__global__ void rope_kernel(rope_parts_t rp, int T, int hd, int pos0, const float *cs, int halves) {
    int half = hd / 2;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, total0 = (int64_t)T * rp.nh[0] * half;
    int part = i >= total0;
    if (part) i -= total0;
    int nh = rp.nh[part], row_stride = rp.stride[part];
    float *x = rp.x[part];
    if (i >= (int64_t)T * nh * half) return;
    int p = (int)(i % half), h = (int)(i / half % nh), t = (int)(i / half / nh);
    const float *c = cs + (int64_t)(pos0 + t) * hd + 2 * p;
    float *v = x + (int64_t)t * row_stride + (int64_t)h * hd;
    int a = halves ? p : 2 * p, b = halves ? p + half : 2 * p + 1;
    float x0 = v[a], x1 = v[b];
    v[a] = x0 * c[0] - x1 * c[1];
    v[b] = x0 * c[1] + x1 * c[0];
}

/* One block of ATT_THREADS per (query head, query row); the row sees the
 * n = pos0 + t + 1 positions up to its own. Scores: a group of 8 lanes per
 * position (32 positions per pass of the block), each lane a strided part
 * of the head, summed with three shuffles; kept in shared memory. Softmax
 * with block reductions. Output: the block is split into P = threads / hd
 * parts, each summing every P-th position for every dimension (coalesced
 * over hd), then the parts are added. Sequential work per thread is about
 * n / 32 positions, not n, which a decoding step's latency needs. */
#define ATT_THREADS 256
__global__ void __launch_bounds__(ATT_THREADS) attention_kernel(float *out, const float *q, const float *kc,
                                                                const float *vc, int pos0, int nh, int nkv, int hd) {
    extern __shared__ float sm[];
    int h = blockIdx.x, t = blockIdx.y, kvh = h / (nh / nkv), n = pos0 + t + 1;
    int qd = nh * hd, kvd = nkv * hd, P = ATT_THREADS / hd > 0 ? ATT_THREADS / hd : 1;
    float *qs = sm, *part = sm + hd, *sc = part + P * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) qs[i] = q[(int64_t)t * qd + (int64_t)h * hd + i];
    __syncthreads();
    float scale = rsqrtf((float)hd);
    int g = threadIdx.x >> 3, gl = threadIdx.x & 7, ng = blockDim.x >> 3;
    const float *kbase = kc + (int64_t)kvh * hd;
    for (int j0 = 0; j0 < n; j0 += ng) {
        int j = j0 + g;
        float s = 0;
        if (j < n) {
            const float *k = kbase + (int64_t)j * kvd;
            if ((hd & 31) == 0 && ((uintptr_t)k & 15) == 0) { /* 16-byte loads, all issued at once */
                float4 kv[4];
                int nv = hd / 32; /* float4s per lane: 2 for hd 64, 4 for hd 128 */
#pragma unroll
                for (int v = 0; v < 4; v++)
                    if (v < nv) kv[v] = *reinterpret_cast<const float4 *>(k + 4 * (gl + 8 * v));
#pragma unroll
                for (int v = 0; v < 4; v++)
                    if (v < nv) {
                        const float *qq = qs + 4 * (gl + 8 * v);
                        s += qq[0] * kv[v].x + qq[1] * kv[v].y + qq[2] * kv[v].z + qq[3] * kv[v].w;
                    }
                for (int i = 4 * (gl + 32); i < hd; i += 32) /* hd above 128 */
                    s += qs[i] * k[i] + qs[i + 1] * k[i + 1] + qs[i + 2] * k[i + 2] + qs[i + 3] * k[i + 3];
            } else {
#pragma unroll 4
                for (int i = gl; i < hd; i += 8) s += qs[i] * k[i];
            }
        }
        s += __shfl_xor_sync(0xffffffffu, s, 4);
        s += __shfl_xor_sync(0xffffffffu, s, 2);
        s += __shfl_xor_sync(0xffffffffu, s, 1);
        if (j < n && gl == 0) sc[j] = s * scale;
    }
    __syncthreads();
    __shared__ float red[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, sc[j]);
    mx = warp_max(mx);
    if (lane == 0) red[wid] = mx;
    __syncthreads();
    mx = lane < nw ? red[lane] : -INFINITY;
    mx = warp_max(mx);
    float sum = 0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        float e = expf(sc[j] - mx);
        sc[j] = e;
        sum += e;
    }
    sum = block_sum(sum); /* its barriers also publish sc */
    float inv = 1.0f / sum;
    const float *vbase = vc + (int64_t)kvh * hd;
    for (int e = threadIdx.x; e < P * hd; e += blockDim.x) {
        int i = e % hd, p = e / hd;
        float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int j = p;
        for (; j + 7 * P < n; j += 8 * P) { /* eight independent loads in flight */
            float v[8];
#pragma unroll
            for (int q = 0; q < 8; q++) v[q] = vbase[(int64_t)(j + q * P) * kvd + i];
#pragma unroll
            for (int q = 0; q < 8; q++) a[q] += sc[j + q * P] * v[q];
        }
        for (; j < n; j += P) a[0] += sc[j] * vbase[(int64_t)j * kvd + i];
        part[e] = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    }
    __syncthreads();
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float a = 0;
        for (int p = 0; p < P; p++) a += part[p * hd + i];
        out[(int64_t)t * qd + (int64_t)h * hd + i] = a * inv;
    }
}

/* Per row: argmax (lowest index on ties; NaN skipped), 1 / sum exp(x - max),
 * and max + log(sum) - x[next]. One block of 1024 threads per row. */
__global__ void row_stats_kernel(const float *x, int V, ids_t next, float *stats, int cap) {
    int r = blockIdx.x;
    const float *row = x + (int64_t)r * V;
    float best = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float v = row[i];
        if (v > best || (v == best && i < bi)) best = v, bi = i;
    }
    __shared__ float sv[32];
    __shared__ int si[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > best || (ov == best && oi < bi)) best = ov, bi = oi;
    }
    if (lane == 0) sv[wid] = best, si[wid] = bi;
    __syncthreads();
    best = lane < nw ? sv[lane] : -INFINITY;
    bi = lane < nw ? si[lane] : 0x7fffffff;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > best || (ov == best && oi < bi)) best = ov, bi = oi;
    }
    float s = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) s += expf(row[i] - best);
    s = block_sum(s);
    if (threadIdx.x == 0) {
        if (bi == 0x7fffffff) bi = 0; /* all NaN or -inf */
        stats[r] = (float)bi;
        stats[cap + r] = 1.0f / s;
        int nx = next.v[r];
        stats[2 * cap + r] = nx >= 0 ? best + logf(s) - row[nx] : 0.0f;
    }
}

template <typename W>
__global__ void random_kernel(W *out, int64_t n, uint64_t seed, float lo, float hi) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = dummy_uniform(seed, (uint64_t)i, lo, hi);
        if constexpr (sizeof(W) == 4) out[i] = v;
        else if constexpr (std::is_same<W, __nv_bfloat16>::value) out[i] = __float2bfloat16_rn(v);
        else out[i] = __float2half_rn(v);
    }
}

/* hi = half(x), lo = half(x - hi), stacked: rows 0..T-1 hi, T..2T-1 lo */
template <typename H>
__global__ void split_kernel(H *out, const float *x, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = x[i];
        H h, l;
        if constexpr (std::is_same<H, __nv_bfloat16>::value) {
            h = __float2bfloat16_rn(v);
            l = __float2bfloat16_rn(v - __bfloat162float(h));
        } else {
            h = __float2half_rn(v);
            l = __float2half_rn(v - __half2float(h));
        }
        out[i] = h, out[n + i] = l;
    }
}

/* split_kernel with the held-back rmsnorm done first: one block per row
 * finds 1/rms, writes the norm's output nout = (x * inv) * w (as the rmsnorm
 * kernel does) and splits those values */
template <typename H>
__global__ void split_norm_kernel(H *out, float *nout, const float *x, const float *nw, int d, float eps, int64_t n) {
    int t = blockIdx.x;
    const float *xr = x + (int64_t)t * d;
    float ss = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss);
    float inv = 1.0f / sqrtf(ss / d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float v = xr[i] * inv * nw[i];
        int64_t e = (int64_t)t * d + i;
        nout[e] = v;
        H h, l;
        if constexpr (std::is_same<H, __nv_bfloat16>::value) {
            h = __float2bfloat16_rn(v);
            l = __float2bfloat16_rn(v - __bfloat162float(h));
        } else {
            h = __float2half_rn(v);
            l = __float2half_rn(v - __half2float(h));
        }
        out[e] = h, out[n + e] = l;
    }
}

/* The halves of up to three split GEMMs added into their outputs in one
 * launch: out_j[t, i] (+)= prod_j[t, i] + prod_j[T + t, i]. */
typedef struct {
    float *out[3];
    const float *prod[3];
    int n[3], nj, accumulate;
} combine_args_t;

__global__ void combine_multi_kernel(combine_args_t a, int T) {
    int64_t e0 = (int64_t)T * a.n[0], e1 = e0 + (int64_t)T * a.n[1], total = e1 + (a.nj > 2 ? (int64_t)T * a.n[2] : 0);
    if (a.nj < 2) total = e0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int j = i < e0 ? 0 : i < e1 ? 1 : 2;
        int64_t li = i - (j == 0 ? 0 : j == 1 ? e0 : e1), tn = (int64_t)T * a.n[j];
        float v = a.prod[j][li] + a.prod[j][tn + li];
        float *o = a.out[j] + li;
        *o = a.accumulate ? *o + v : v;
    }
}

/* SwiGLU from the split GEMMs of the gate and the up projection: out = silu(g) * u */
__global__ void combine_swiglu_kernel(float *out, const float *pg, const float *pu, int64_t tn) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < tn; i += (int64_t)gridDim.x * blockDim.x) {
        float g = pg[i] + pg[tn + i], u = pu[i] + pu[tn + i];
        out[i] = g / (1.0f + expf(-g)) * u;
    }
}

/* v = a[t, i] + a[T + t, i] (the two halves of a split GEMM); mode 0:
 * out = v, 1: out += v, 2: out = silu(gate) * v (SwiGLU's up projection). */
__global__ void combine_kernel(float *out, int ldo, const float *a, int T, int n, int mode, const float *gate) {
    int64_t total = (int64_t)T * n;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int t = (int)(i / n), j = (int)(i % n);
        float v = a[i] + a[total + i];
        float *o = out + (int64_t)t * ldo + j;
        if (mode == 2) {
            float g = gate[i];
            *o = g / (1.0f + expf(-g)) * v;
        } else
            *o = mode == 1 ? *o + v : v;
    }
}

__global__ void silu_mul_kernel(float *out, const float *g, const float *u, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = g[i];
        out[i] = v / (1.0f + expf(-v)) * u[i];
    }
}

/* ---- the backend ------------------------------------------------------------ */

static cu_t *CU_(backend_t *be) { return (cu_t *)be->impl; }

static int grid_for(int64_t n, int block) {
    int64_t g = (n + block - 1) / block;
    return (int)(g < 1 ? 1 : g > 65535 ? 65535 : g);
}

static void *scratch(cu_t *c, size_t bytes) {
    if (bytes > c->scratch_bytes) {
        CU(cudaStreamSynchronize(c->stream));
        if (c->scratch) CU(cudaFree(c->scratch));
        c->scratch = NULL;
        CU(cudaMalloc(&c->scratch, bytes));
        c->scratch_bytes = bytes;
    }
    return c->scratch;
}

static void check_own(const tensor_t &t) { REQUIRE(t.device == DEVICE_CUDA && t.data); }

static void launch_rope(cu_t *c, rope_parts_t rp, int T, int hd, int pos0, const float *cs, int halves) {
    prof_mark(c, "rope");
    int64_t total = (int64_t)T * (rp.nh[0] + rp.nh[1]) * (hd / 2);
    rope_kernel<<<(unsigned)((total + 255) / 256), 256, 0, c->stream>>>(rp, T, hd, pos0, cs, halves);
    LAUNCHED();
}

static void launch_rmsnorm(cu_t *c, float *out, const float *x, tensor_t w, int T, int d, float eps) {
    prof_mark(c, "rmsnorm");
    int nt = d >= 1024 ? 1024 : d >= 256 ? 256 : 64;
    if (w.dtype == DTYPE_F32) rmsnorm_kernel<<<T, nt, 0, c->stream>>>(out, x, (const float *)w.data, d, eps);
    else if (w.dtype == DTYPE_BF16) rmsnorm_kernel<<<T, nt, 0, c->stream>>>(out, x, (const __nv_bfloat16 *)w.data, d, eps);
    else rmsnorm_kernel<<<T, nt, 0, c->stream>>>(out, x, (const __half *)w.data, d, eps);
    LAUNCHED();
}

/* Runs the held-back ops. Every entry point calls it first, except the ops
 * that may absorb them (matmul, swiglu, rope), which call it when they do not. */
static void flush(cu_t *c) {
    if (c->pn.on) {
        c->pn.on = 0;
        launch_rmsnorm(c, c->pn.out, c->pn.x, tensor_t{(void *)c->pn.w, DTYPE_F32, DEVICE_CUDA, c->pn.d}, c->pn.T, c->pn.d,
                       c->pn.eps);
    }
    if (c->pr.on) {
        c->pr.on = 0;
        rope_parts_t rp = {{c->pr.x, NULL}, {c->pr.stride, 0}, {c->pr.nh, 0}};
        launch_rope(c, rp, c->pr.T, c->pr.hd, c->pr.pos0, c->pr.cs, c->pr.halves);
    }
}

/* the held-back rmsnorm writes x: a matmul of x at T, d can compute it itself */
static int norm_pending_for(cu_t *c, const tensor_t &x, int T, int d) {
    return c->pn.on && c->pn.out == (float *)x.data && c->pn.T == T && c->pn.d == d && T <= 4;
}

static tensor_t cu_alloc(backend_t *be, int64_t n) {
    cu_t *c = CU_(be);
    flush(c);
    tensor_t t = {NULL, DTYPE_F32, DEVICE_CUDA, n};
    size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(float);
    if (cudaMalloc(&t.data, bytes) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky-free error state of a failed malloc */
        t.data = NULL;
        return t;
    }
    CU(cudaMemsetAsync(t.data, 0, bytes, c->stream));
    CU(cudaStreamSynchronize(c->stream));
    return t;
}

static void cu_free(backend_t *be, tensor_t *t) {
    flush(CU_(be));
    if (t->data) {
        CU(cudaStreamSynchronize(CU_(be)->stream));
        CU(cudaFree(t->data));
    }
    t->data = NULL;
}

static tensor_t cu_wrap_host(backend_t *be, void *host, dtype_t dtype, int64_t n) {
    return tensor_t{NULL, dtype, DEVICE_CUDA, n}; /* cannot: the caller uploads */
}

static tensor_t cu_upload(backend_t *be, const void *host, dtype_t dtype, int64_t n) {
    flush(CU_(be));
    tensor_t t = {NULL, dtype, DEVICE_CUDA, n};
    size_t bytes = (size_t)(n > 0 ? n : 1) * dtype_size(dtype);
    if (cudaMalloc(&t.data, bytes) != cudaSuccess) {
        cudaGetLastError();
        t.data = NULL;
        return t;
    }
    /* on our stream and waited for: a plain cudaMemcpy from pageable memory
     * may return before the data lands, and the non-blocking stream would
     * not wait for it */
    CU(cudaMemcpyAsync(t.data, host, (size_t)n * dtype_size(dtype), cudaMemcpyHostToDevice, CU_(be)->stream));
    CU(cudaStreamSynchronize(CU_(be)->stream));
    return t;
}

static tensor_t cu_random(backend_t *be, dtype_t dtype, int64_t n, uint64_t seed, float lo, float hi) {
    cu_t *c = CU_(be);
    flush(c);
    tensor_t t = {NULL, dtype, DEVICE_CUDA, n};
    if (cudaMalloc(&t.data, (size_t)(n > 0 ? n : 1) * dtype_size(dtype)) != cudaSuccess) {
        cudaGetLastError();
        t.data = NULL;
        return t;
    }
    int g = grid_for(n, 256);
    if (dtype == DTYPE_F32) random_kernel<float><<<g, 256, 0, c->stream>>>((float *)t.data, n, seed, lo, hi);
    else if (dtype == DTYPE_BF16)
        random_kernel<__nv_bfloat16><<<g, 256, 0, c->stream>>>((__nv_bfloat16 *)t.data, n, seed, lo, hi);
    else random_kernel<__half><<<g, 256, 0, c->stream>>>((__half *)t.data, n, seed, lo, hi);
    LAUNCHED();
    CU(cudaStreamSynchronize(c->stream));
    return t;
}

static void cu_to_host(backend_t *be, float *dst, tensor_t src, int64_t off, int64_t n) {
    cu_t *c = CU_(be);
    flush(c);
    check_own(src);
    REQUIRE(off >= 0 && off + n <= src.ne);
    CU(cudaMemcpyAsync(dst, (const float *)src.data + off, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost, c->stream));
    CU(cudaStreamSynchronize(c->stream));
}

static void cu_from_host(backend_t *be, tensor_t dst, int64_t off, const float *src, int64_t n) {
    cu_t *c = CU_(be);
    flush(c);
    check_own(dst);
    REQUIRE(off >= 0 && off + n <= dst.ne);
    CU(cudaMemcpyAsync((float *)dst.data + off, src, (size_t)n * sizeof(float), cudaMemcpyHostToDevice, c->stream));
    CU(cudaStreamSynchronize(c->stream));
}

static void cu_embed(backend_t *be, tensor_t out, tensor_t table, const int *tokens, int T, int d) {
    cu_t *c = CU_(be);
    flush(c);
    check_own(out), check_own(table);
    REQUIRE((int64_t)T * d <= out.ne);
    for (int t0 = 0; t0 < T; t0 += TOK_CHUNK) {
        int m = T - t0 < TOK_CHUNK ? T - t0 : TOK_CHUNK;
        ids_t ids;
        for (int i = 0; i < m; i++) {
            REQUIRE(tokens[t0 + i] >= 0 && (int64_t)(tokens[t0 + i] + 1) * d <= table.ne);
            ids.v[i] = tokens[t0 + i];
        }
        float *o = (float *)out.data + (int64_t)t0 * d;
        prof_mark(c, "embed");
        if (table.dtype == DTYPE_F32) embed_kernel<<<m, 256, 0, c->stream>>>(o, (const float *)table.data, ids, d);
        else if (table.dtype == DTYPE_BF16)
            embed_kernel<<<m, 256, 0, c->stream>>>(o, (const __nv_bfloat16 *)table.data, ids, d);
        else embed_kernel<<<m, 256, 0, c->stream>>>(o, (const __half *)table.data, ids, d);
        LAUNCHED();
    }
}

static void cu_rmsnorm(backend_t *be, tensor_t out, tensor_t x, tensor_t w, int T, int d, float eps) {
    cu_t *c = CU_(be);
    check_own(out), check_own(x), check_own(w);
    REQUIRE((int64_t)T * d <= out.ne && (int64_t)T * d <= x.ne && d <= w.ne);
    flush(c);
    if (c->fuse && w.dtype == DTYPE_F32 && out.data != x.data) { /* held for the next matmul */
        c->pn.on = 1, c->pn.T = T, c->pn.d = d, c->pn.out = (float *)out.data, c->pn.x = (const float *)x.data;
        c->pn.w = (const float *)w.data, c->pn.eps = eps;
        return;
    }
    launch_rmsnorm(c, (float *)out.data, (const float *)x.data, w, T, d, eps);
}

static cudaDataType_t cuda_type(dtype_t t) {
    return t == DTYPE_F32 ? CUDA_R_32F : t == DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_16F;
}


/* ---- tensor-core GEMM for verification blocks (opt-in: BILD_CUDA_MMA=1) -------
 * Measured on an H200 at the Llama-2-7B shape: a block of 8 costs 1.87x a
 * step with it, 1.46x with cuBLAS, so it is off by default; kept for the
 * work that remains (deeper pipelining, more blocks per SM).
 * prod (2T columns of n, column-major like cuBLAS's output) = W (n, d) . xs^T,
 * xs = the (2T, d) hi/lo split of the activations, for 4 <= 2T/2 <= 16: the
 * block is too thin for cuBLAS to stream the weights at full speed, and thin
 * enough that each weight element is read once by one warp and used for all
 * 2T columns. mma.sync m16n8k16 (bf16 or f16 in, f32 accumulate). A warp
 * owns RT tiles of 16 rows and one share of the k range (the KW warps of a
 * block split k and add up through shared memory). Each thread loads 16
 * bytes of a weight row (8 consecutive k) and the same 8 k of its column of
 * x: the k order inside an mma is a free choice as long as A and B agree, so
 * those 8 values feed two k16 mmas (4 each) with no shuffles. */
#define MMA_KW 8  /* warps per block, splitting k */
#define MMA_RT 2  /* 16-row tiles per warp */
#define MMA_U 4   /* chunks of 32 k loaded before their mmas */

template <typename H>
__device__ __forceinline__ void mma16816(float *acc, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
    if constexpr (std::is_same<H, __nv_bfloat16>::value)
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    else
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

template <typename H, int NT>
__global__ void __launch_bounds__(32 * MMA_KW) mma_gemm_kernel(const H *__restrict__ w, int n, int d,
                                                              const H *__restrict__ xs, int cols,
                                                              float *__restrict__ prod) {
#if __CUDA_ARCH__ >= 800
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int row0 = blockIdx.x * (16 * MMA_RT);
    float acc[MMA_RT][NT][4] = {};
    const uint4 *wr[MMA_RT][2];
    for (int r = 0; r < MMA_RT; r++)
        for (int h = 0; h < 2; h++) {
            int row = row0 + 16 * r + g + 8 * h;
            wr[r][h] = (const uint4 *)(w + (int64_t)(row < n ? row : n - 1) * d) + t;
        }
    const uint4 *xr[NT];
    bool xon[NT];
    for (int j = 0; j < NT; j++) {
        int col = 8 * j + g;
        xon[j] = col < cols;
        xr[j] = (const uint4 *)(xs + (int64_t)(xon[j] ? col : 0) * d) + t;
    }
    /* each warp takes a contiguous share of the 32-k chunks and loads MMA_U
     * chunks (all rows and columns) before their mmas: bytes in flight */
    int chunks = d >> 5, cpw = (chunks + MMA_KW - 1) / MMA_KW;
    int c0 = warp * cpw, c1 = c0 + cpw < chunks ? c0 + cpw : chunks;
    const uint4 z4 = make_uint4(0, 0, 0, 0);
    for (int cb = c0; cb < c1; cb += MMA_U) {
        uint4 a[MMA_U][MMA_RT][2], b[MMA_U][NT];
#pragma unroll
        for (int u = 0; u < MMA_U; u++) {
            int ch = cb + u;
            bool on = ch < c1;
#pragma unroll
            for (int r = 0; r < MMA_RT; r++)
#pragma unroll
                for (int h = 0; h < 2; h++) a[u][r][h] = on ? __ldg(wr[r][h] + 4 * ch) : z4;
#pragma unroll
            for (int j = 0; j < NT; j++) b[u][j] = on && xon[j] ? __ldg(xr[j] + 4 * ch) : z4;
        }
#pragma unroll
        for (int u = 0; u < MMA_U; u++)
#pragma unroll
            for (int r = 0; r < MMA_RT; r++)
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    mma16816<H>(acc[r][j], a[u][r][0].x, a[u][r][1].x, a[u][r][0].y, a[u][r][1].y, b[u][j].x,
                                b[u][j].y);
                    mma16816<H>(acc[r][j], a[u][r][0].z, a[u][r][1].z, a[u][r][0].w, a[u][r][1].w, b[u][j].z,
                                b[u][j].w);
                }
    }
    /* add the KW warps' shares: warp w's accumulators at red[w], summed by all threads */
    __shared__ float red[MMA_KW][MMA_RT * NT * 4][32];
    for (int r = 0; r < MMA_RT; r++)
        for (int j = 0; j < NT; j++)
            for (int e = 0; e < 4; e++) red[warp][(r * NT + j) * 4 + e][lane] = acc[r][j][e];
    __syncthreads();
    for (int i = threadIdx.x; i < MMA_RT * NT * 4 * 32; i += blockDim.x) {
        int slot = i >> 5, l = i & 31;
        float v = 0;
        for (int k = 0; k < MMA_KW; k++) v += red[k][slot][l];
        int e = slot & 3, rj = slot >> 2, j = rj % NT, r = rj / NT;
        int row = row0 + 16 * r + (l >> 2) + (e >= 2 ? 8 : 0), col = 8 * j + 2 * (l & 3) + (e & 1);
        if (row < n && col < cols) prod[(int64_t)col * n + row] = v;
    }
#endif
}

/* 1 if the tensor-core kernel takes this GEMM: T in 4..16, k a multiple of
 * 32, 16-byte aligned rows, a GPU of compute capability 8.0 or more. */
static int mma_ok(const cu_t *c, const void *w, int d, int T, const void *xs) {
    return c->mma && c->gemm_mode != 2 && T >= 4 && T <= 16 && d % 32 == 0 && ((uintptr_t)w & 15) == 0 &&
           ((uintptr_t)xs & 15) == 0;
}

/* prod (2T, n) f32 = W (n, d) . xs (2T, d)^T, by the tensor-core kernel or cuBLAS. */
static void half_gemm(cu_t *c, const void *w, dtype_t dt, int n, int d, const void *xs, int T, float *prod) {
    if (mma_ok(c, w, d, T, xs)) {
        int blocks = (n + 16 * MMA_RT - 1) / (16 * MMA_RT), cols = 2 * T;
        if (dt == DTYPE_BF16) {
            if (cols <= 16) mma_gemm_kernel<__nv_bfloat16, 2><<<blocks, 32 * MMA_KW, 0, c->stream>>>(
                (const __nv_bfloat16 *)w, n, d, (const __nv_bfloat16 *)xs, cols, prod);
            else mma_gemm_kernel<__nv_bfloat16, 4><<<blocks, 32 * MMA_KW, 0, c->stream>>>(
                (const __nv_bfloat16 *)w, n, d, (const __nv_bfloat16 *)xs, cols, prod);
        } else {
            if (cols <= 16) mma_gemm_kernel<__half, 2><<<blocks, 32 * MMA_KW, 0, c->stream>>>(
                (const __half *)w, n, d, (const __half *)xs, cols, prod);
            else mma_gemm_kernel<__half, 4><<<blocks, 32 * MMA_KW, 0, c->stream>>>(
                (const __half *)w, n, d, (const __half *)xs, cols, prod);
        }
        LAUNCHED();
        return;
    }
    float one = 1.0f, zero = 0.0f;
    BLAS(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, 2 * T, d, &one, w, cuda_type(dt), d, xs, cuda_type(dt), d,
                      &zero, prod, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* cuBLAS works column-major: out^T (n, T) = W (n, d) . x^T (d, T) with W
 * read transposed. f32 weights: one SGEMM straight into out. Half weights:
 * x is split once per op into hi and lo halves (2T rows of half; one split
 * serves every job of the op), each job is one GEMM of 2T columns into the
 * product scratch, and one combine kernel adds the halves into out. */
typedef struct {
    const void *xh; /* (2T, d) half: hi rows, then lo rows */
    float *prod;    /* (2T, n_max) f32 */
} split_t;

static split_t blas_split(cu_t *c, const float *x, int T, int d, dtype_t dt, int n_max) {
    prof_mark(c, "cuBLAS (split, GEMM, combine)");
    size_t xs = ((size_t)2 * T * d * 2 + 255) & ~(size_t)255, ps = (size_t)2 * T * n_max * sizeof(float);
    char *s = (char *)scratch(c, xs + ps);
    int64_t nx = (int64_t)T * d;
    if (dt == DTYPE_BF16) split_kernel<__nv_bfloat16><<<grid_for(nx, 256), 256, 0, c->stream>>>((__nv_bfloat16 *)s, x, nx);
    else split_kernel<__half><<<grid_for(nx, 256), 256, 0, c->stream>>>((__half *)s, x, nx);
    LAUNCHED();
    return split_t{s, (float *)(s + xs)};
}

/* out (T, n) at row stride ldo: mode 0 = x W^T, 1 += x W^T, 2 = silu(gate) * (x W^T)
 * with gate (T, n) at row stride n. */
static void blas_job(cu_t *c, const split_t *sp, const float *x, int T, int d, tensor_t w, int n, float *out, int ldo,
                     int mode, const float *gate) {
    float one = 1.0f;
    prof_mark(c, "cuBLAS (split, GEMM, combine)");
    if (w.dtype == DTYPE_F32) {
        float beta = mode == 1 ? 1.0f : 0.0f;
        BLAS(cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, T, d, &one, (const float *)w.data, d, x, d, &beta, out, ldo));
        if (mode == 2) {
            REQUIRE(ldo == n);
            silu_mul_kernel<<<grid_for((int64_t)T * n, 256), 256, 0, c->stream>>>(out, gate, out, (int64_t)T * n);
            LAUNCHED();
        }
        return;
    }
    half_gemm(c, w.data, w.dtype, n, d, sp->xh, T, sp->prod);
    combine_kernel<<<grid_for((int64_t)T * n, 256), 256, 0, c->stream>>>(out, ldo, sp->prod, T, n, mode, gate);
    LAUNCHED();
}

/* The half-weight cuBLAS path for n_w matrices of one half type sharing x:
 * one split (with the held-back rmsnorm if it produced x), one GEMM each
 * into its own product region, then one combine launch for all (swiglu:
 * the gate and up products into out = silu(g) * u). */
static void blas_half_jobs(cu_t *c, const float *x, int T, int d, const tensor_t *w, const int *n, float *const *out,
                           int n_w, int accumulate, int swiglu, int absorb) {
    dtype_t dt = w[0].dtype;
    size_t xs = ((size_t)2 * T * d * 2 + 255) & ~(size_t)255, ps = 0;
    for (int j = 0; j < n_w; j++) ps += (size_t)2 * T * n[j] * sizeof(float);
    char *s = (char *)scratch(c, xs + ps);
    int64_t nx = (int64_t)T * d;
    prof_mark(c, "cuBLAS (split, GEMM, combine)");
    if (absorb) {
        c->pn.on = 0;
        if (dt == DTYPE_BF16)
            split_norm_kernel<__nv_bfloat16><<<T, 256, 0, c->stream>>>((__nv_bfloat16 *)s, c->pn.out, c->pn.x, c->pn.w, d,
                                                                      c->pn.eps, nx);
        else
            split_norm_kernel<__half><<<T, 256, 0, c->stream>>>((__half *)s, c->pn.out, c->pn.x, c->pn.w, d, c->pn.eps, nx);
    } else if (dt == DTYPE_BF16)
        split_kernel<__nv_bfloat16><<<grid_for(nx, 256), 256, 0, c->stream>>>((__nv_bfloat16 *)s, x, nx);
    else
        split_kernel<__half><<<grid_for(nx, 256), 256, 0, c->stream>>>((__half *)s, x, nx);
    LAUNCHED();
    float *prod[3];
    size_t off = xs;
    for (int j = 0; j < n_w; j++) {
        prod[j] = (float *)(s + off);
        off += (size_t)2 * T * n[j] * sizeof(float);
        half_gemm(c, w[j].data, dt, n[j], d, s, T, prod[j]);
    }
    if (swiglu) {
        int64_t tn = (int64_t)T * n[0];
        combine_swiglu_kernel<<<grid_for(tn, 256), 256, 0, c->stream>>>(out[0], prod[0], prod[1], tn);
    } else {
        combine_args_t a = {};
        int64_t total = 0;
        for (int j = 0; j < n_w; j++) a.out[j] = out[j], a.prod[j] = prod[j], a.n[j] = n[j], total += (int64_t)T * n[j];
        a.nj = n_w, a.accumulate = accumulate;
        combine_multi_kernel<<<grid_for(total, 256), 256, 0, c->stream>>>(a, T);
    }
    LAUNCHED();
}

static int use_gemv(cu_t *c, int T) {
    return c->gemm_mode == 1 ? T <= BILD_CUDA_GEMV_LIMIT : c->gemm_mode == 2 ? 0 : T <= BILD_CUDA_GEMV_MAX_T;
}

/* Takes the held-back rmsnorm into a (its input and weight; the kernel
 * writes its output too) if the vector kernel applies, else runs it first. */
static void absorb_norm(cu_t *c, gemv_args_t *a, dtype_t dt) {
    gemv_args_t b = *a;
    b.x = c->pn.x, b.nw = c->pn.w, b.nout = c->pn.out, b.eps = c->pn.eps;
    if (gemv_vec_ok(b, dt)) {
        c->pn.on = 0;
        *a = b;
    } else
        flush(c);
}

static void cu_matmul(backend_t *be, tensor_t x, int T, int d, const matmul_job_t *jobs, int n_jobs, int accumulate) {
    cu_t *c = CU_(be);
    check_own(x);
    REQUIRE((int64_t)T * d <= x.ne);
    for (int j = 0; j < n_jobs; j++) {
        const matmul_job_t *jb = &jobs[j];
        check_own(jb->w), check_own(jb->out);
        REQUIRE((int64_t)jb->n * d <= jb->w.ne && jb->out_off + (int64_t)T * jb->n <= jb->out.ne);
    }
    int fuse = use_gemv(c, T) && norm_pending_for(c, x, T, d);
    if (!fuse && use_gemv(c, T)) flush(c);
    if (use_gemv(c, T)) { /* one launch for up to GEMV_JOBS jobs of one weight dtype */
        for (int j0 = 0; j0 < n_jobs;) {
            gemv_args_t a = {};
            a.x = (const float *)x.data, a.T = T, a.d = d;
            dtype_t dt = jobs[j0].w.dtype;
            while (j0 < n_jobs && a.nj < GEMV_JOBS && jobs[j0].w.dtype == dt) {
                a.w[a.nj] = jobs[j0].w.data, a.out[a.nj] = (float *)jobs[j0].out.data + jobs[j0].out_off;
                a.n[a.nj++] = jobs[j0++].n;
            }
            if (fuse) absorb_norm(c, &a, dt), fuse = 0;
            if (accumulate) gemv<1>(c, a, dt);
            else gemv<0>(c, a, dt);
        }
        return;
    }
    int same_half = n_jobs <= 3 && jobs[0].w.dtype != DTYPE_F32;
    for (int j = 1; j < n_jobs; j++) same_half = same_half && jobs[j].w.dtype == jobs[0].w.dtype;
    if (same_half) { /* a layer's Q, K, V or one projection: the short path */
        tensor_t w[3];
        int n[3];
        float *out[3];
        for (int j = 0; j < n_jobs; j++)
            w[j] = jobs[j].w, n[j] = jobs[j].n, out[j] = (float *)jobs[j].out.data + jobs[j].out_off;
        int absorb = c->pn.on && c->pn.out == (float *)x.data && c->pn.T == T && c->pn.d == d;
        if (!absorb) flush(c);
        blas_half_jobs(c, (const float *)x.data, T, d, w, n, out, n_jobs, accumulate, 0, absorb);
        return;
    }
    flush(c);
    int n_max = 0;
    for (int j = 0; j < n_jobs; j++) n_max = jobs[j].n > n_max ? jobs[j].n : n_max;
    /* one split per run of jobs of one half type (the scratch holds one;
     * stream order keeps a later split from overwriting it under a GEMM) */
    split_t sp = {};
    dtype_t split_dt = DTYPE_F32;
    for (int j = 0; j < n_jobs; j++) {
        dtype_t dt = jobs[j].w.dtype;
        if (dt != DTYPE_F32 && dt != split_dt) sp = blas_split(c, (const float *)x.data, T, d, dt, n_max), split_dt = dt;
        blas_job(c, &sp, (const float *)x.data, T, d, jobs[j].w, jobs[j].n, (float *)jobs[j].out.data + jobs[j].out_off,
                 jobs[j].n, accumulate, NULL);
    }
}

static void cu_swiglu(backend_t *be, tensor_t out, tensor_t x, tensor_t w1, tensor_t w3, int T, int d, int hid) {
    cu_t *c = CU_(be);
    check_own(out), check_own(x), check_own(w1), check_own(w3);
    REQUIRE((int64_t)T * hid <= out.ne && (int64_t)T * d <= x.ne && (int64_t)hid * d <= w1.ne && (int64_t)hid * d <= w3.ne);
    if (use_gemv(c, T) && w1.dtype == w3.dtype) {
        gemv_args_t a = {};
        a.w[0] = w1.data, a.out[0] = (float *)out.data, a.n[0] = hid, a.nj = 1, a.w3 = w3.data;
        a.x = (const float *)x.data, a.T = T, a.d = d;
        if (norm_pending_for(c, x, T, d)) absorb_norm(c, &a, w1.dtype);
        else flush(c);
        gemv<2>(c, a, w1.dtype);
        return;
    }
    if (w1.dtype == w3.dtype && w1.dtype != DTYPE_F32) {
        tensor_t w[2] = {w1, w3};
        int n[2] = {hid, hid};
        float *o[2] = {(float *)out.data, NULL};
        int absorb = c->pn.on && c->pn.out == (float *)x.data && c->pn.T == T && c->pn.d == d;
        if (!absorb) flush(c);
        blas_half_jobs(c, (const float *)x.data, T, d, w, n, o, 2, 0, 1, absorb);
        return;
    }
    flush(c);
    /* cuBLAS: the gate into its own buffer, the up projection into out, then out = silu(gate) * out */
    size_t bytes = (size_t)T * hid * sizeof(float);
    if (bytes > c->gate_bytes) {
        CU(cudaStreamSynchronize(c->stream));
        if (c->gate) CU(cudaFree(c->gate));
        c->gate = NULL;
        CU(cudaMalloc(&c->gate, bytes));
        c->gate_bytes = bytes;
    }
    split_t sp = {}, sp3 = {};
    if (w1.dtype != DTYPE_F32) sp = blas_split(c, (const float *)x.data, T, d, w1.dtype, hid);
    blas_job(c, &sp, (const float *)x.data, T, d, w1, hid, c->gate, hid, 0, NULL);
    if (w3.dtype != DTYPE_F32 && w3.dtype != w1.dtype) sp3 = blas_split(c, (const float *)x.data, T, d, w3.dtype, hid);
    else sp3 = sp;
    blas_job(c, &sp3, (const float *)x.data, T, d, w3, hid, (float *)out.data, hid, 2, c->gate);
}

static void cu_rope(backend_t *be, tensor_t x, int64_t off, int row_stride, int T, int n_heads, int hd, int pos0,
                    tensor_t cs, rope_style_t style) {
    cu_t *c = CU_(be);
    check_own(x), check_own(cs);
    REQUIRE(hd % 2 == 0);
    REQUIRE(off + (int64_t)(T - 1) * row_stride + (int64_t)n_heads * hd <= x.ne);
    REQUIRE((int64_t)(pos0 + T) * hd <= cs.ne);
    int halves = style == ROPE_HALVES;
    float *xp = (float *)x.data + off;
    if (c->pr.on && c->pr.T == T && c->pr.hd == hd && c->pr.pos0 == pos0 && c->pr.cs == (const float *)cs.data &&
        c->pr.halves == halves &&
        (xp >= c->pr.x + (int64_t)(T - 1) * c->pr.stride + (int64_t)c->pr.nh * hd ||
         c->pr.x >= xp + (int64_t)(T - 1) * row_stride + (int64_t)n_heads * hd)) {
        /* the second of a pair on another region (q, then k): one launch for both */
        c->pr.on = 0;
        rope_parts_t rp = {{c->pr.x, xp}, {c->pr.stride, row_stride}, {c->pr.nh, n_heads}};
        launch_rope(c, rp, T, hd, pos0, (const float *)cs.data, halves);
        return;
    }
    flush(c);
    if (c->fuse) {
        c->pr.on = 1, c->pr.T = T, c->pr.hd = hd, c->pr.pos0 = pos0, c->pr.halves = halves;
        c->pr.stride = row_stride, c->pr.nh = n_heads, c->pr.x = xp, c->pr.cs = (const float *)cs.data;
        return;
    }
    rope_parts_t rp = {{xp, NULL}, {row_stride, 0}, {n_heads, 0}};
    launch_rope(c, rp, T, hd, pos0, (const float *)cs.data, halves);
}

static void cu_attention(backend_t *be, tensor_t out, tensor_t q, tensor_t kc, tensor_t vc, int T, int pos0, int n_heads,
                         int n_kv, int hd) {
    cu_t *c = CU_(be);
    flush(c);
    check_own(out), check_own(q), check_own(kc), check_own(vc);
    REQUIRE(n_kv > 0 && n_heads % n_kv == 0);
    REQUIRE((int64_t)(pos0 + T) * n_kv * hd <= kc.ne && (int64_t)(pos0 + T) * n_kv * hd <= vc.ne);
    REQUIRE((int64_t)T * n_heads * hd <= out.ne && (int64_t)T * n_heads * hd <= q.ne);
    /* rounded up to 4 KiB: successive steps' graphs then differ in arguments only */
    int P = ATT_THREADS / hd > 0 ? ATT_THREADS / hd : 1;
    size_t need = (size_t)(hd + P * hd + pos0 + T) * sizeof(float), smem = (need + 4095) & ~(size_t)4095;
    if ((int)smem > c->max_smem) smem = need;
    if ((int)smem > c->max_smem)
        cuda_die("attention", "context longer than this GPU's shared memory holds (lower --ctx)", __FILE__, __LINE__);
    dim3 grid(n_heads, T);
    prof_mark(c, "attention");
    attention_kernel<<<grid, ATT_THREADS, smem, c->stream>>>((float *)out.data, (const float *)q.data, (const float *)kc.data,
                                                     (const float *)vc.data, pos0, n_heads, n_kv, hd);
    LAUNCHED();
}

static void cu_row_stats(backend_t *be, tensor_t x, int64_t off, int T, int V, const int *next, int *argmax, float *max_p,
                         float *nll) {
    cu_t *c = CU_(be);
    flush(c);
    check_own(x);
    REQUIRE(off >= 0 && off + (int64_t)T * V <= x.ne);
    if (T > c->stats_cap) {
        if (c->d_stats) {
            CU(cudaFree(c->d_stats));
            CU(cudaFreeHost(c->h_stats));
        }
        c->stats_cap = T < 64 ? 64 : T;
        CU(cudaMalloc(&c->d_stats, sizeof(float) * 3 * c->stats_cap));
        CU(cudaMallocHost(&c->h_stats, sizeof(float) * 3 * c->stats_cap));
    }
    for (int t0 = 0; t0 < T; t0 += TOK_CHUNK) {
        int m = T - t0 < TOK_CHUNK ? T - t0 : TOK_CHUNK;
        ids_t nx;
        for (int i = 0; i < m; i++) {
            nx.v[i] = next && next[t0 + i] >= 0 ? next[t0 + i] : -1;
            REQUIRE(nx.v[i] < V);
        }
        prof_mark(c, "row_stats (and the copy to the host)");
        row_stats_kernel<<<m, 1024, 0, c->stream>>>((const float *)x.data + off + (int64_t)t0 * V, V, nx,
                                                   c->d_stats + t0, c->stats_cap);
        LAUNCHED();
    }
    CU(cudaMemcpyAsync(c->h_stats, c->d_stats, sizeof(float) * 3 * c->stats_cap, cudaMemcpyDeviceToHost, c->stream));
    CU(cudaStreamSynchronize(c->stream));
    for (int t = 0; t < T; t++) {
        if (argmax) argmax[t] = (int)c->h_stats[t];
        if (max_p) max_p[t] = c->h_stats[c->stats_cap + t];
        if (nll) nll[t] = c->h_stats[2 * c->stats_cap + t];
    }
}

/* A step is recorded with stream capture and run as a graph. The next
 * step's recording differs only in kernel arguments (position, token), so
 * cudaGraphExecUpdate patches the instantiated graph instead of building a
 * new one; if it cannot, the graph is instantiated again. */
static void cu_graph_begin(backend_t *be) {
    cu_t *c = CU_(be);
    flush(c);
    if (!c->graphs || c->gemm_mode == 2) return; /* cuBLAS's workspace does not go into our graph */
    CU(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    c->capturing = 1;
}

static void cu_graph_end(backend_t *be) {
    cu_t *c = CU_(be);
    flush(c);
    if (!c->capturing) return;
    c->capturing = 0;
    cudaGraph_t g;
    CU(cudaStreamEndCapture(c->stream, &g));
    if (c->exec) {
        cudaGraphExecUpdateResultInfo info;
        if (cudaGraphExecUpdate(c->exec, g, &info) != cudaSuccess) {
            cudaGetLastError();
            CU(cudaGraphExecDestroy(c->exec));
            c->exec = NULL;
        }
    }
    if (!c->exec) CU(cudaGraphInstantiate(&c->exec, g, 0));
    CU(cudaGraphDestroy(g));
    CU(cudaGraphLaunch(c->exec, c->stream));
}

extern "C" void backend_cuda_profile(backend_t *be, int on) {
    cu_t *c = CU_(be);
    flush(c);
    if (on && !c->prof) {
        c->prof = (struct prof *)calloc(1, sizeof *c->prof);
        REQUIRE(c->prof);
        for (int i = 0; i <= PROF_MAX; i++) CU(cudaEventCreate(&c->prof->ev[i]));
    }
    if (on) c->prof->n = 0;
    else if (c->prof) {
        for (int i = 0; i <= PROF_MAX; i++) CU(cudaEventDestroy(c->prof->ev[i]));
        free(c->prof);
        c->prof = NULL;
    }
}

extern "C" int backend_cuda_profile_report(backend_t *be, const char **names, double *ms, int *count, int max) {
    cu_t *c = CU_(be);
    struct prof *p = c->prof;
    if (!p) return 0;
    flush(c);
    CU(cudaEventRecord(p->ev[p->n], c->stream));
    CU(cudaEventSynchronize(p->ev[p->n]));
    int k = 0;
    for (int i = 0; i < p->n; i++) {
        float t;
        CU(cudaEventElapsedTime(&t, p->ev[i], p->ev[i + 1]));
        int j = 0;
        while (j < k && strcmp(names[j], p->name[i])) j++;
        if (j == k) {
            if (k == max) continue;
            names[k] = p->name[i], ms[k] = 0, count[k] = 0, k++;
        }
        ms[j] += t, count[j]++;
    }
    p->n = 0;
    return k;
}

extern "C" void backend_cuda_set_graphs(backend_t *be, int on) { CU_(be)->graphs = on; }

static void cu_idle(backend_t *be) {
    flush(CU_(be));
    CU(cudaStreamSynchronize(CU_(be)->stream));
}

static void cu_destroy(backend_t *be) {
    cu_t *c = CU_(be);
    flush(c);
    cudaStreamSynchronize(c->stream);
    if (c->scratch) cudaFree(c->scratch);
    if (c->gate) cudaFree(c->gate);
    if (c->d_stats) cudaFree(c->d_stats);
    if (c->h_stats) cudaFreeHost(c->h_stats);
    if (c->exec) cudaGraphExecDestroy(c->exec);
    cublasDestroy(c->blas);
    cudaStreamDestroy(c->stream);
    free(c);
    free(be);
}

extern "C" void backend_cuda_sync(backend_t *be) {
    flush(CU_(be));
    CU(cudaStreamSynchronize(CU_(be)->stream));
}

extern "C" void backend_cuda_set_gemm(backend_t *be, int mode) { CU_(be)->gemm_mode = mode; }

extern "C" double backend_cuda_measure_bandwidth(backend_t *be) {
    cu_t *c = CU_(be);
    flush(c);
    size_t bytes = (size_t)1 << 30;
    void *a, *b;
    CU(cudaMalloc(&a, bytes));
    CU(cudaMalloc(&b, bytes));
    CU(cudaMemsetAsync(a, 1, bytes, c->stream));
    cudaEvent_t e0, e1;
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    float best = 1e30f;
    for (int r = 0; r < 6; r++) {
        CU(cudaEventRecord(e0, c->stream));
        CU(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream));
        CU(cudaEventRecord(e1, c->stream));
        CU(cudaEventSynchronize(e1));
        float ms;
        CU(cudaEventElapsedTime(&ms, e0, e1));
        if (r > 0 && ms < best) best = ms; /* the first warms up */
    }
    CU(cudaEventDestroy(e0));
    CU(cudaEventDestroy(e1));
    CU(cudaFree(a));
    CU(cudaFree(b));
    return 2.0 * bytes / (best / 1e3); /* read + write */
}

extern "C" backend_t *backend_cuda_new(int dev, char *err, size_t errlen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(err, errlen, "cuda:%d: no usable GPU here (%s: %s); use --device cpu", dev, cudaGetErrorName(e),
                 cudaGetErrorString(e));
        cudaGetLastError();
        return NULL;
    }
    if (dev >= n) {
        snprintf(err, errlen, "cuda:%d: this machine has %d GPU%s (cuda:0%s)", dev, n, n == 1 ? "" : "s",
                 n > 1 ? " .. cuda:N-1" : "");
        return NULL;
    }
    if ((e = cudaSetDevice(dev)) != cudaSuccess) {
        snprintf(err, errlen, "cuda:%d: cannot use it (%s)", dev, cudaGetErrorString(e));
        return NULL;
    }
    backend_t *be = (backend_t *)calloc(1, sizeof(*be));
    cu_t *c = (cu_t *)calloc(1, sizeof(*c));
    if (!be || !c) {
        free(be), free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->dev = dev;
    cudaDeviceProp p;
    CU(cudaGetDeviceProperties(&p, dev));
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        snprintf(err, errlen, "cuda:%d: cannot create a stream (%s)", dev, cudaGetErrorString(e));
        free(be), free(c);
        return NULL;
    }
    cublasStatus_t bs = cublasCreate(&c->blas);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, errlen, "cuda:%d: cuBLAS does not start (%s)", dev, cublasGetStatusString(bs));
        cudaStreamDestroy(c->stream);
        free(be), free(c);
        return NULL;
    }
    BLAS(cublasSetStream(c->blas, c->stream));
    BLAS(cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH)); /* no TF32: f32 stays f32 */
    cudaFuncAttributes fa;
    CU(cudaFuncGetAttributes(&fa, attention_kernel));
    c->max_smem = (int)(p.sharedMemPerBlockOptin - fa.sharedSizeBytes); /* dynamic beside its static arrays */
    CU(cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, c->max_smem));
    const char *gr = getenv("BILD_CUDA_GRAPH");
    c->graphs = gr && !strcmp(gr, "1"); /* off by default: measured no faster (docs/gpu.md) */
    const char *fu = getenv("BILD_CUDA_FUSE");
    c->fuse = !(fu && !strcmp(fu, "0"));
    const char *g = getenv("BILD_CUDA_GEMM");
    c->gemm_mode = g && !strcmp(g, "custom") ? 1 : g && !strcmp(g, "cublas") ? 2 : 0;
    /* the tensor-core kernel for 4..16-row blocks: opt-in (BILD_CUDA_MMA=1);
     * on an H200 it is correct but slower than cuBLAS so far (docs/gpu.md) */
    const char *mm = getenv("BILD_CUDA_MMA");
    c->mma = p.major >= 8 && mm && !strcmp(mm, "1");
    snprintf(c->name, sizeof c->name, "cuda:%d", dev);
    snprintf(c->isa, sizeof c->isa, "%s, sm_%d%d, %.0f GiB", p.name, p.major, p.minor,
             p.totalGlobalMem / (1024.0 * 1024 * 1024));
    *be = backend_t{};
    be->name = c->name;
    be->device = DEVICE_CUDA;
    be->n_threads = 1;
    be->isa = c->isa;
    be->alloc = cu_alloc, be->free = cu_free, be->wrap_host = cu_wrap_host, be->upload = cu_upload;
    be->random = cu_random, be->to_host = cu_to_host, be->from_host = cu_from_host;
    be->embed = cu_embed, be->rmsnorm = cu_rmsnorm, be->matmul = cu_matmul, be->swiglu = cu_swiglu;
    be->rope = cu_rope, be->attention = cu_attention, be->row_stats = cu_row_stats, be->idle = cu_idle;
    be->graph_begin = cu_graph_begin, be->graph_end = cu_graph_end;
    be->destroy = cu_destroy, be->impl = c;
    return be;
}
