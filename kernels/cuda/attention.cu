/* attention.cu - attention over the KV cache. One block per (query head,
 * query row) with the row's scores in shared memory, so the context a GPU
 * can serve is what a block's shared memory holds (cu_attention_init). */
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/cuda_impl.h"

/* ---- kernels --------------------------------------------------------------- */


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

/* ---- the ops --------------------------------------------------------------- */

/* Lets attention_kernel use all the shared memory a block may opt in to
 * (c->max_smem; backend_cuda_new calls it). */
void cu_attention_init(cu_t *c, const cudaDeviceProp &p) {
    cudaFuncAttributes fa;
    CU(cudaFuncGetAttributes(&fa, attention_kernel));
    c->max_smem = (int)(p.sharedMemPerBlockOptin - fa.sharedSizeBytes); /* dynamic beside its static arrays */
    CU(cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, c->max_smem));
}



void cu_attention(backend_t *be, tensor_t out, tensor_t q, tensor_t kc, tensor_t vc, int T, int pos0, int n_heads,
                  int n_kv, int hd) {
    cu_t *c = CU_(be);
    cu_flush(c);
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

