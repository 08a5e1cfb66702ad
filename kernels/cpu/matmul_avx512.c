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
            __m512 a[4][4];
            for (int i = 0; i < 4; i++)
                for (int k = 0; k < 4; k++) a[i][k] = _mm512_setzero_ps();
            for (int j = 0; j < dend; j += 16) {
                __m512 wv[4] = {ld(w0, j, dv, m), ld(w1, j, dv, m), ld(w2, j, dv, m), ld(w3, j, dv, m)};
                __m512 xv[4] = {ld(x0, j, dv, m), ld(x1, j, dv, m), ld(x2, j, dv, m), ld(x3, j, dv, m)};
                for (int i = 0; i < 4; i++)
                    for (int k = 0; k < 4; k++) a[i][k] = _mm512_fmadd_ps(wv[i], xv[k], a[i][k]);
            }
            for (int k = 0; k < 4; k++)
                for (int i = 0; i < 4; i++)
                    put(&out[(size_t)(t + k) * ldo + r + i], _mm512_reduce_add_ps(a[i][k]), accumulate);
        }
        for (; t < T; t++) {
            const float *xt = x + (size_t)t * ldx;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int j = 0; j < dend; j += 16) {
                __m512 xv = ld(xt, j, dv, m);
                a0 = _mm512_fmadd_ps(ld(w0, j, dv, m), xv, a0);
                a1 = _mm512_fmadd_ps(ld(w1, j, dv, m), xv, a1);
                a2 = _mm512_fmadd_ps(ld(w2, j, dv, m), xv, a2);
                a3 = _mm512_fmadd_ps(ld(w3, j, dv, m), xv, a3);
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
