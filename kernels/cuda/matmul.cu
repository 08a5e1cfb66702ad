/* matmul.cu - matmul and swiglu on the GPU (the weight stream is the cost
 * of decoding):
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
 * An rmsnorm held back (cu_flush) whose output is the matmul's input is
 * computed inside the matmul: by our kernel (fused into its x loads) or by
 * the split of the cuBLAS path. */
#include <stdint.h>

#include <type_traits>

#include "kernels/cuda/cuda_impl.h"

/* ---- weights, 16 bytes at a time ------------------------------------------- */

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

/* ---- the split and combine kernels of the cuBLAS path ---------------------- */

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

/* ---- helpers of the ops below ---------------------------------------------- */

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

/* the held-back rmsnorm writes x: a matmul of x at T, d can compute it itself */
static int norm_pending_for(cu_t *c, const tensor_t &x, int T, int d) {
    return c->pn.on && c->pn.out == (float *)x.data && c->pn.T == T && c->pn.d == d && T <= 4;
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

/* ---- the cuBLAS paths and the ops ------------------------------------------ */

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
        cu_flush(c);
}

void cu_matmul(backend_t *be, tensor_t x, int T, int d, const matmul_job_t *jobs, int n_jobs, int accumulate) {
    cu_t *c = CU_(be);
    check_own(x);
    REQUIRE((int64_t)T * d <= x.ne);
    for (int j = 0; j < n_jobs; j++) {
        const matmul_job_t *jb = &jobs[j];
        check_own(jb->w), check_own(jb->out);
        REQUIRE((int64_t)jb->n * d <= jb->w.ne && jb->out_off + (int64_t)T * jb->n <= jb->out.ne);
    }
    int fuse = use_gemv(c, T) && norm_pending_for(c, x, T, d);
    if (!fuse && use_gemv(c, T)) cu_flush(c);
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
        if (!absorb) cu_flush(c);
        blas_half_jobs(c, (const float *)x.data, T, d, w, n, out, n_jobs, accumulate, 0, absorb);
        return;
    }
    cu_flush(c);
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

void cu_swiglu(backend_t *be, tensor_t out, tensor_t x, tensor_t w1, tensor_t w3, int T, int d, int hid) {
    cu_t *c = CU_(be);
    check_own(out), check_own(x), check_own(w1), check_own(w3);
    REQUIRE((int64_t)T * hid <= out.ne && (int64_t)T * d <= x.ne && (int64_t)hid * d <= w1.ne && (int64_t)hid * d <= w3.ne);
    if (use_gemv(c, T) && w1.dtype == w3.dtype) {
        gemv_args_t a = {};
        a.w[0] = w1.data, a.out[0] = (float *)out.data, a.n[0] = hid, a.nj = 1, a.w3 = w3.data;
        a.x = (const float *)x.data, a.T = T, a.d = d;
        if (norm_pending_for(c, x, T, d)) absorb_norm(c, &a, w1.dtype);
        else cu_flush(c);
        gemv<2>(c, a, w1.dtype);
        return;
    }
    if (w1.dtype == w3.dtype && w1.dtype != DTYPE_F32) {
        tensor_t w[2] = {w1, w3};
        int n[2] = {hid, hid};
        float *o[2] = {(float *)out.data, NULL};
        int absorb = c->pn.on && c->pn.out == (float *)x.data && c->pn.T == T && c->pn.d == d;
        if (!absorb) cu_flush(c);
        blas_half_jobs(c, (const float *)x.data, T, d, w, n, o, 2, 0, 1, absorb);
        return;
    }
    cu_flush(c);
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
