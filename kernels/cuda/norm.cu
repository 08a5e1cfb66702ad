/* norm.cu - the row-wise and element-wise ops: the embedding lookup,
 * RMSNorm (held back when the next matmul can compute it itself; see
 * matmul.cu), RoPE (two in a row at the same positions, q then k on
 * separate regions, are held back and run as one launch), the held-back
 * ops' flush (cu_flush), row_stats (argmax, max probability and NLL per row of logits:
 * the one op besides to_host that waits for the GPU) and the random tensors
 * of --dummy-weights. Token ids from the host travel inside the kernel's
 * arguments, TOK_CHUNK at a time, so no host buffer is read after a call
 * returns. */
#include <math.h>
#include <stdint.h>

#include <type_traits>

#include "kernels/cuda/cuda_impl.h"
#include "kernels/dummy.h"

#define TOK_CHUNK 64

typedef struct {
    int v[TOK_CHUNK];
} ids_t; /* host ids passed by value in kernel arguments */

/* ---- kernels --------------------------------------------------------------- */

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

/* ---- the held-back ops ----------------------------------------------------- */

/* Runs the held-back ops. Every entry point calls it first, except the ops
 * that may absorb them (matmul, swiglu, rope), which call it when they do not. */
void cu_flush(cu_t *c) {
    if (c->pn.on) {
        c->pn.on = 0;
        launch_rmsnorm(c, c->pn.out, c->pn.x, tensor_t{(void *)c->pn.w, DTYPE_F32, DEVICE_CUDA, c->pn.d, 0}, c->pn.T, c->pn.d,
                       c->pn.eps);
    }
    if (c->pr.on) {
        c->pr.on = 0;
        rope_parts_t rp = {{c->pr.x, NULL}, {c->pr.stride, 0}, {c->pr.nh, 0}};
        launch_rope(c, rp, c->pr.T, c->pr.hd, c->pr.pos0, c->pr.cs, c->pr.halves);
    }
}

/* ---- the ops --------------------------------------------------------------- */

void launch_rmsnorm(cu_t *c, float *out, const float *x, tensor_t w, int T, int d, float eps) {
    prof_mark(c, "rmsnorm");
    int nt = d >= 1024 ? 1024 : d >= 256 ? 256 : 64;
    if (w.dtype == DTYPE_F32) rmsnorm_kernel<<<T, nt, 0, c->stream>>>(out, x, (const float *)w.data, d, eps);
    else if (w.dtype == DTYPE_BF16) rmsnorm_kernel<<<T, nt, 0, c->stream>>>(out, x, (const __nv_bfloat16 *)w.data, d, eps);
    else rmsnorm_kernel<<<T, nt, 0, c->stream>>>(out, x, (const __half *)w.data, d, eps);
    LAUNCHED();
}

tensor_t cu_random(backend_t *be, dtype_t dtype, int64_t n, uint64_t seed, float lo, float hi) {
    cu_t *c = CU_(be);
    cu_flush(c);
    tensor_t t = {NULL, dtype, DEVICE_CUDA, n, 0};
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

void cu_embed(backend_t *be, tensor_t out, tensor_t table, const int *tokens, int T, int d) {
    cu_t *c = CU_(be);
    cu_flush(c);
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

void cu_rmsnorm(backend_t *be, tensor_t out, tensor_t x, tensor_t w, int T, int d, float eps) {
    cu_t *c = CU_(be);
    check_own(out), check_own(x), check_own(w);
    REQUIRE((int64_t)T * d <= out.ne && (int64_t)T * d <= x.ne && d <= w.ne);
    cu_flush(c);
    if (c->fuse && w.dtype == DTYPE_F32 && out.data != x.data) { /* held for the next matmul */
        c->pn.on = 1, c->pn.T = T, c->pn.d = d, c->pn.out = (float *)out.data, c->pn.x = (const float *)x.data;
        c->pn.w = (const float *)w.data, c->pn.eps = eps;
        return;
    }
    launch_rmsnorm(c, (float *)out.data, (const float *)x.data, w, T, d, eps);
}

void cu_row_stats(backend_t *be, tensor_t x, int64_t off, int T, int V, const int *next, int *argmax, float *max_p,
                  float *nll) {
    cu_t *c = CU_(be);
    cu_flush(c);
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

void launch_rope(cu_t *c, rope_parts_t rp, int T, int hd, int pos0, const float *cs, int halves) {
    prof_mark(c, "rope");
    int64_t total = (int64_t)T * (rp.nh[0] + rp.nh[1]) * (hd / 2);
    rope_kernel<<<(unsigned)((total + 255) / 256), 256, 0, c->stream>>>(rp, T, hd, pos0, cs, halves);
    LAUNCHED();
}

void cu_rope(backend_t *be, tensor_t x, int64_t off, int row_stride, int T, int n_heads, int hd, int pos0,
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
    cu_flush(c);
    if (c->fuse) {
        c->pr.on = 1, c->pr.T = T, c->pr.hd = hd, c->pr.pos0 = pos0, c->pr.halves = halves;
        c->pr.stride = row_stride, c->pr.nh = n_heads, c->pr.x = xp, c->pr.cs = (const float *)cs.data;
        return;
    }
    rope_parts_t rp = {{xp, NULL}, {row_stride, 0}, {n_heads, 0}};
    launch_rope(c, rp, T, hd, pos0, (const float *)cs.data, halves);
}
