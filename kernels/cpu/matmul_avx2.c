/* matmul_avx2.c - AVX2 + FMA inner kernels (compiled with -mavx2 -mfma).
 *
 * Same scheme as matmul_avx512.c with 8-float vectors and a 4 rows x 2 tokens
 * tile (8 accumulators + 6 operands fit the 16 ymm registers). The tail of d
 * (d % 8) uses masked loads. Half weights (bf16, f16) are widened to f32 in
 * registers after the load; f16 needs F16C (compiled with -mf16c, and
 * cpu_isa_supported("avx2") requires it).
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/simd.h"

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 ld(const float *p, int j, int dv, __m256i m) {
    return j < dv ? _mm256_loadu_ps(p + j) : _mm256_maskload_ps(p + j, m);
}

/* 8 weights from element j of row p, widened to f32 (exact): bf16 by a
 * zero-extension and a shift left by 16, f16 by vcvtph2ps (F16C). AVX2 has
 * no 16-bit masked load, so a half tail (j >= dv) is copied into a zeroed
 * buffer first. wt is a constant in every caller (always_inline). */
static inline __attribute__((always_inline)) __m256 wload(const char *p, int j, int dv, int rem, __m256i m,
                                                          dtype_t wt) {
    if (wt == DTYPE_F32) return ld((const float *)p, j, dv, m);
    __m128i h;
    if (j < dv)
        h = _mm_loadu_si128((const __m128i *)(p + (size_t)j * 2));
    else {
        uint16_t b[8] = {0};
        memcpy(b, p + (size_t)j * 2, (size_t)rem * 2);
        h = _mm_loadu_si128((const __m128i *)b);
    }
    if (wt == DTYPE_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

static inline void put(float *o, float v, int accumulate) { *o = accumulate ? *o + v : v; }

/* The kernel for one weight dtype wt (a constant at each call); row i of
 * the weights starts at byte i * ldw * (element size). */
static inline __attribute__((always_inline)) void matmul_rows_dt(float *out, int ldo, const float *x, int ldx,
                                                                  const char *w, dtype_t wt, int ldw, int T, int d,
                                                                  int r0, int r1, int accumulate) {
    const int dv = d & ~7, rem = d - dv;
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const int dend = rem ? dv + 8 : dv;
    const size_t rowb = (size_t)ldw * (wt == DTYPE_F32 ? 4 : 2);
#define W(p) wload((p), j, dv, rem, m, wt)
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
        const char *w0 = w + (size_t)r * rowb, *w1 = w0 + rowb, *w2 = w1 + rowb, *w3 = w2 + rowb;
        int t = 0;
        for (; t + 2 <= T; t += 2) {
            const float *x0 = x + (size_t)t * ldx, *x1 = x0 + ldx;
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
                   a30 = a00, a31 = a00;
            for (int j = 0; j < dend; j += 8) {
                __m256 xa = ld(x0, j, dv, m), xb = ld(x1, j, dv, m), wv;
                wv = W(w0); a00 = _mm256_fmadd_ps(wv, xa, a00); a01 = _mm256_fmadd_ps(wv, xb, a01);
                wv = W(w1); a10 = _mm256_fmadd_ps(wv, xa, a10); a11 = _mm256_fmadd_ps(wv, xb, a11);
                wv = W(w2); a20 = _mm256_fmadd_ps(wv, xa, a20); a21 = _mm256_fmadd_ps(wv, xb, a21);
                wv = W(w3); a30 = _mm256_fmadd_ps(wv, xa, a30); a31 = _mm256_fmadd_ps(wv, xb, a31);
            }
            float *o0 = out + (size_t)t * ldo + r, *o1 = o0 + ldo;
            put(o0 + 0, hsum(a00), accumulate); put(o1 + 0, hsum(a01), accumulate);
            put(o0 + 1, hsum(a10), accumulate); put(o1 + 1, hsum(a11), accumulate);
            put(o0 + 2, hsum(a20), accumulate); put(o1 + 2, hsum(a21), accumulate);
            put(o0 + 3, hsum(a30), accumulate); put(o1 + 3, hsum(a31), accumulate);
        }
        for (; t < T; t++) {
            const float *xt = x + (size_t)t * ldx;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int j = 0; j < dend; j += 8) {
                __m256 xv = ld(xt, j, dv, m);
                a0 = _mm256_fmadd_ps(W(w0), xv, a0);
                a1 = _mm256_fmadd_ps(W(w1), xv, a1);
                a2 = _mm256_fmadd_ps(W(w2), xv, a2);
                a3 = _mm256_fmadd_ps(W(w3), xv, a3);
            }
            float *o = out + (size_t)t * ldo + r;
            put(o + 0, hsum(a0), accumulate);
            put(o + 1, hsum(a1), accumulate);
            put(o + 2, hsum(a2), accumulate);
            put(o + 3, hsum(a3), accumulate);
        }
    }
    for (; r < r1; r++) {
        const char *wr = w + (size_t)r * rowb;
        for (int t = 0; t < T; t++) {
            const float *xt = x + (size_t)t * ldx;
            __m256 a0 = _mm256_setzero_ps();
            for (int j = 0; j < dend; j += 8) a0 = _mm256_fmadd_ps(W(wr), ld(xt, j, dv, m), a0);
            put(&out[(size_t)t * ldo + r], hsum(a0), accumulate);
        }
    }
#undef W
}

static void matmul_rows_avx2(float *out, int ldo, const float *x, int ldx, const void *w, dtype_t wt, int ldw,
                             int T, int d, int r0, int r1, int accumulate) {
    if (wt == DTYPE_BF16)
        matmul_rows_dt(out, ldo, x, ldx, w, DTYPE_BF16, ldw, T, d, r0, r1, accumulate);
    else if (wt == DTYPE_F16)
        matmul_rows_dt(out, ldo, x, ldx, w, DTYPE_F16, ldw, T, d, r0, r1, accumulate);
    else
        matmul_rows_dt(out, ldo, x, ldx, w, DTYPE_F32, ldw, T, d, r0, r1, accumulate);
}

static void axpy_avx2(float *y, float a, const float *x, int n) {
    __m256 av = _mm256_set1_ps(a);
    int j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(y + j, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j)));
    for (; j < n; j++) y[j] += a * x[j];
}

static void max_sumexp_avx2(const float *x, int n, float *max, float *sum) {
    __m256 mv = _mm256_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 8 <= n; j += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + j));
    float t[8], m = -INFINITY;
    _mm256_storeu_ps(t, mv);
    for (int k = 0; k < 8; k++) m = t[k] > m ? t[k] : m;
    for (; j < n; j++) m = x[j] > m ? x[j] : m;
    double s = 0; /* exp in libm: AVX2 machines are not the fast path here */
    for (j = 0; j < n; j++) s += expf(x[j] - m);
    *max = m, *sum = (float)s;
}


const simd_kernels_t simd_avx2 = {"avx2", matmul_rows_avx2, axpy_avx2, max_sumexp_avx2, exp_sub_sum_generic,
                                      silu_mul_generic};
