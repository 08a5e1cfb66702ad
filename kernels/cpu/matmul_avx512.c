/* matmul_avx512.c - AVX-512 inner kernels (compiled with -mavx512f etc.).
 *
 * matmul_rows tiles 4 weight rows x 4 tokens: 16 accumulators stay in
 * registers while the reduction dimension is walked 16 floats at a time, so
 * a weight row is loaded from memory once per 4 tokens (and from L1 after
 * that). With T = 1 it degenerates to 4 rows x 1 token, a pure streaming
 * matrix-vector product. The tail of d (d % 16) uses masked loads, so any d
 * works without padding.
 */
#include <immintrin.h>

#include "kernels/cpu/simd.h"

static inline __m512 ld(const float *p, int j, int dv, __mmask16 m) {
    return j < dv ? _mm512_loadu_ps(p + j) : _mm512_maskz_loadu_ps(m, p + j);
}

static inline void put(float *o, float v, int accumulate) { *o = accumulate ? *o + v : v; }

static void matmul_rows_avx512(float *out, int ldo, const float *x, int ldx, const float *w, int ldw,
                               int T, int d, int r0, int r1, int accumulate) {
    const int dv = d & ~15;
    const __mmask16 m = (__mmask16)((1u << (d - dv)) - 1);
    const int dend = d - dv ? dv + 16 : dv; /* one masked step covers the tail */
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
        const float *w0 = w + (size_t)r * ldw, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
        int t = 0;
        for (; t + 4 <= T; t += 4) {
            const float *x0 = x + (size_t)t * ldx, *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
            /* 16 named accumulators: a<row><token>. Arrays of vectors tend to
             * be spilled to the stack by the compiler; named ones stay in zmm. */
            __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00,
                   a12 = a00, a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00,
                   a32 = a00, a33 = a00;
#define STEP(LOAD)                                                                                   \
    do {                                                                                             \
        __m512 v0 = LOAD(x0), v1 = LOAD(x1), v2 = LOAD(x2), v3 = LOAD(x3), wv;                       \
        wv = LOAD(w0);                                                                               \
        a00 = _mm512_fmadd_ps(wv, v0, a00), a01 = _mm512_fmadd_ps(wv, v1, a01);                      \
        a02 = _mm512_fmadd_ps(wv, v2, a02), a03 = _mm512_fmadd_ps(wv, v3, a03);                      \
        wv = LOAD(w1);                                                                               \
        a10 = _mm512_fmadd_ps(wv, v0, a10), a11 = _mm512_fmadd_ps(wv, v1, a11);                      \
        a12 = _mm512_fmadd_ps(wv, v2, a12), a13 = _mm512_fmadd_ps(wv, v3, a13);                      \
        wv = LOAD(w2);                                                                               \
        a20 = _mm512_fmadd_ps(wv, v0, a20), a21 = _mm512_fmadd_ps(wv, v1, a21);                      \
        a22 = _mm512_fmadd_ps(wv, v2, a22), a23 = _mm512_fmadd_ps(wv, v3, a23);                      \
        wv = LOAD(w3);                                                                               \
        a30 = _mm512_fmadd_ps(wv, v0, a30), a31 = _mm512_fmadd_ps(wv, v1, a31);                      \
        a32 = _mm512_fmadd_ps(wv, v2, a32), a33 = _mm512_fmadd_ps(wv, v3, a33);                      \
    } while (0)
#define FULL(p) _mm512_loadu_ps((p) + j)
#define TAIL(p) _mm512_maskz_loadu_ps(m, (p) + j)
            int j = 0;
            for (; j < dv; j += 16) STEP(FULL);
            if (j < d) STEP(TAIL);
#undef STEP
#undef FULL
#undef TAIL
            float *o0 = out + (size_t)t * ldo + r, *o1 = o0 + ldo, *o2 = o1 + ldo, *o3 = o2 + ldo;
            put(o0 + 0, _mm512_reduce_add_ps(a00), accumulate), put(o1 + 0, _mm512_reduce_add_ps(a01), accumulate);
            put(o2 + 0, _mm512_reduce_add_ps(a02), accumulate), put(o3 + 0, _mm512_reduce_add_ps(a03), accumulate);
            put(o0 + 1, _mm512_reduce_add_ps(a10), accumulate), put(o1 + 1, _mm512_reduce_add_ps(a11), accumulate);
            put(o2 + 1, _mm512_reduce_add_ps(a12), accumulate), put(o3 + 1, _mm512_reduce_add_ps(a13), accumulate);
            put(o0 + 2, _mm512_reduce_add_ps(a20), accumulate), put(o1 + 2, _mm512_reduce_add_ps(a21), accumulate);
            put(o2 + 2, _mm512_reduce_add_ps(a22), accumulate), put(o3 + 2, _mm512_reduce_add_ps(a23), accumulate);
            put(o0 + 3, _mm512_reduce_add_ps(a30), accumulate), put(o1 + 3, _mm512_reduce_add_ps(a31), accumulate);
            put(o2 + 3, _mm512_reduce_add_ps(a32), accumulate), put(o3 + 3, _mm512_reduce_add_ps(a33), accumulate);
        }
        for (; t < T; t++) {
            const float *xt = x + (size_t)t * ldx;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            int j = 0;
            for (; j < dv; j += 16) {
                __m512 xv = _mm512_loadu_ps(xt + j);
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + j), xv, a0);
                a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w1 + j), xv, a1);
                a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w2 + j), xv, a2);
                a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w3 + j), xv, a3);
            }
            if (j < d) {
                __m512 xv = _mm512_maskz_loadu_ps(m, xt + j);
                a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w0 + j), xv, a0);
                a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w1 + j), xv, a1);
                a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w2 + j), xv, a2);
                a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w3 + j), xv, a3);
            }
            float *o = out + (size_t)t * ldo + r;
            put(o + 0, _mm512_reduce_add_ps(a0), accumulate);
            put(o + 1, _mm512_reduce_add_ps(a1), accumulate);
            put(o + 2, _mm512_reduce_add_ps(a2), accumulate);
            put(o + 3, _mm512_reduce_add_ps(a3), accumulate);
        }
    }
    for (; r < r1; r++) { /* leftover rows (n % 4), one at a time */
        const float *wr = w + (size_t)r * ldw;
        for (int t = 0; t < T; t++) {
            const float *xt = x + (size_t)t * ldx;
            __m512 a0 = _mm512_setzero_ps();
            for (int j = 0; j < dend; j += 16) a0 = _mm512_fmadd_ps(ld(wr, j, dv, m), ld(xt, j, dv, m), a0);
            put(&out[(size_t)t * ldo + r], _mm512_reduce_add_ps(a0), accumulate);
        }
    }
}

static void axpy_avx512(float *y, float a, const float *x, int n) {
    __m512 av = _mm512_set1_ps(a);
    int j = 0;
    for (; j + 16 <= n; j += 16)
        _mm512_storeu_ps(y + j, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + j), _mm512_loadu_ps(y + j)));
    if (j < n) {
        __mmask16 m = (__mmask16)((1u << (n - j)) - 1);
        _mm512_mask_storeu_ps(y + j, m,
                              _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + j), _mm512_maskz_loadu_ps(m, y + j)));
    }
}

const simd_kernels_t simd_avx512 = {"avx512", matmul_rows_avx512, axpy_avx512};
