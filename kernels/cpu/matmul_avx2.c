/* matmul_avx2.c - AVX2 + FMA inner kernels (compiled with -mavx2 -mfma).
 *
 * Weights are read in address order (row_tile: one row after the other,
 * up to 4 tokens per pass over a row, two accumulators per token). The tail
 * of d (d % 8) uses masked loads. The softmax and SiLU
 * exponentials use the same polynomial as AVX-512, on 8 floats. Half
 * weights (bf16, f16) are widened to f32 in registers after the load; f16
 * needs F16C (compiled with -mf16c, and cpu_isa_supported("avx2") requires
 * it).
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

/* One weight row times nt tokens (1 <= nt <= 4; a missing token repeats
 * the last one, computed but not stored), the row read once: rows are
 * walked one after the other, so the weights stream from memory in address
 * order, which the hardware prefetcher follows (four interleaved short row
 * streams defeated it on an AMD EPYC with a 32 MiB L3: a 32000 x 288 f32
 * product ran at 11 GB/s that way, see matmul_avx512.c). Each (row, token)
 * sum has two accumulators, for the even and the odd 8-float chunks of the
 * row (one chain of dependent FMAs would cap a row at 32 bytes per FMA
 * latency), added once at the end; a tail chunk goes to its chunk's parity.
 * Every path uses this one function, so a token's result does not depend on
 * the block it came in. */
static inline __attribute__((always_inline)) void row_tile(float *out, int ldo, const float *x, int ldx,
                                                           const char *wr, dtype_t wt, int d, int r, int nt,
                                                           int accumulate) {
    const int dv = d & ~7, rem = d - dv;
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const float *x0 = x, *x1 = nt > 1 ? x0 + ldx : x0, *x2 = nt > 2 ? x1 + ldx : x1, *x3 = nt > 3 ? x2 + ldx : x2;
    __m256 e0 = _mm256_setzero_ps(), e1 = e0, e2 = e0, e3 = e0, o0 = e0, o1 = e0, o2 = e0, o3 = e0;
#define W(jj) wload(wr, (jj), dv, rem, m, wt)
#define X(p, jj) ld((p), (jj), dv, m)
#define CHUNK(a0, a1, a2, a3, jj)                                                                     \
    do {                                                                                              \
        __m256 wv = W(jj);                                                                            \
        a0 = _mm256_fmadd_ps(wv, X(x0, jj), a0);                                                      \
        if (nt > 1) a1 = _mm256_fmadd_ps(wv, X(x1, jj), a1);                                          \
        if (nt > 2) a2 = _mm256_fmadd_ps(wv, X(x2, jj), a2);                                          \
        if (nt > 3) a3 = _mm256_fmadd_ps(wv, X(x3, jj), a3);                                          \
    } while (0)
    int j = 0;
    for (; j + 16 <= dv; j += 16) {
        CHUNK(e0, e1, e2, e3, j);
        CHUNK(o0, o1, o2, o3, j + 8);
    }
    if (j < dv) { /* a last full chunk, of even index */
        CHUNK(e0, e1, e2, e3, j);
        j += 8;
    }
    if (rem) {                                    /* the tail chunk, to its parity */
        if ((j / 8) & 1)
            CHUNK(o0, o1, o2, o3, j);
        else
            CHUNK(e0, e1, e2, e3, j);
    }
#undef CHUNK
#undef W
#undef X
    put(&out[r], hsum(_mm256_add_ps(e0, o0)), accumulate);
    if (nt > 1) put(&out[(size_t)ldo + r], hsum(_mm256_add_ps(e1, o1)), accumulate);
    if (nt > 2) put(&out[2 * (size_t)ldo + r], hsum(_mm256_add_ps(e2, o2)), accumulate);
    if (nt > 3) put(&out[3 * (size_t)ldo + r], hsum(_mm256_add_ps(e3, o3)), accumulate);
}

/* The kernel for one weight dtype wt (a constant at each call); row i of
 * the weights starts at byte i * ldw * (element size). Rows one after the
 * other; a row's tokens 4 at a time (the row stays in L1 for the next 4). */
static inline __attribute__((always_inline)) void matmul_rows_dt(float *out, int ldo, const float *x, int ldx,
                                                                  const char *w, dtype_t wt, int ldw, int T, int d,
                                                                  int r0, int r1, int accumulate) {
    const size_t rowb = (size_t)ldw * (wt == DTYPE_F32 ? 4 : 2);
    for (int r = r0; r < r1; r++) {
        const char *wr = w + (size_t)r * rowb;
        for (int t = 0; t < T; t += 4) {
            int nt = T - t < 4 ? T - t : 4;
            float *o = out + (size_t)t * ldo;
            const float *xt = x + (size_t)t * ldx;
            /* nt a constant in each call, so row_tile's token tests fold away */
            if (nt == 1) row_tile(o, ldo, xt, ldx, wr, wt, d, r, 1, accumulate);
            else if (nt == 2) row_tile(o, ldo, xt, ldx, wr, wt, d, r, 2, accumulate);
            else if (nt == 3) row_tile(o, ldo, xt, ldx, wr, wt, d, r, 3, accumulate);
            else row_tile(o, ldo, xt, ldx, wr, wt, d, r, 4, accumulate);
        }
    }
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

/* exp(x) as in matmul_avx512.c (x = k ln2 + r, degree-7 Taylor polynomial
 * of r, relative error < 3e-8 before rounding), with 2^k built in the
 * exponent bits: k is clamped to [-127, 128], so results below 2^-126 are 0
 * and above the float range +inf. Inputs are clamped to [-104, 88.7]. */
static inline __m256 exp8(__m256 x) {
    const __m256 log2e = _mm256_set1_ps(1.44269504f), ln2_hi = _mm256_set1_ps(0.693145752f),
                 ln2_lo = _mm256_set1_ps(1.42860677e-06f);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0f)), _mm256_set1_ps(88.7f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, ln2_hi, x);
    r = _mm256_fnmadd_ps(k, ln2_lo, r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i ki = _mm256_cvtps_epi32(k);
    ki = _mm256_min_epi32(_mm256_max_epi32(ki, _mm256_set1_epi32(-127)), _mm256_set1_epi32(128));
    return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ki, _mm256_set1_epi32(127)), 23)));
}

/* lanes j < n - j0 of a tail: all ones, else 0 */
static inline __m256i tail_mask(int left) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static void max_sumexp_avx2(const float *x, int n, float *max, float *sum) {
    __m256 mv = _mm256_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 8 <= n; j += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + j));
    float t[8], m = -INFINITY;
    _mm256_storeu_ps(t, mv);
    for (int k = 0; k < 8; k++) m = t[k] > m ? t[k] : m;
    for (; j < n; j++) m = x[j] > m ? x[j] : m;
    __m256 mb = _mm256_set1_ps(m), s0 = _mm256_setzero_ps(), s1 = s0;
    for (j = 0; j + 16 <= n; j += 16) {
        s0 = _mm256_add_ps(s0, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), mb)));
        s1 = _mm256_add_ps(s1, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), mb)));
    }
    for (; j < n; j += 8) {
        __m256i mk = tail_mask(n - j);
        __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(x + j, mk), mb));
        s0 = _mm256_add_ps(s0, _mm256_and_ps(e, _mm256_castsi256_ps(mk)));
    }
    *max = m, *sum = hsum(_mm256_add_ps(s0, s1));
}

static float exp_sub_sum_avx2(float *x, int n, float m) {
    __m256 mb = _mm256_set1_ps(m), s = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) {
        __m256i mk = tail_mask(n - j);
        __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + j, mk), mb)), _mm256_castsi256_ps(mk));
        _mm256_maskstore_ps(x + j, mk, e);
        s = _mm256_add_ps(s, e);
    }
    return hsum(s);
}

static void silu_mul_avx2(float *a, const float *g, int n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int j = 0; j < n; j += 8) {
        __m256i mk = tail_mask(n - j);
        __m256 av = _mm256_maskload_ps(a + j, mk), gv = _mm256_maskload_ps(g + j, mk);
        __m256 den = _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), av)));
        _mm256_maskstore_ps(a + j, mk, _mm256_mul_ps(_mm256_div_ps(av, den), gv));
    }
}

const simd_kernels_t simd_avx2 = {"avx2", matmul_rows_avx2, axpy_avx2, max_sumexp_avx2, exp_sub_sum_avx2,
                                  silu_mul_avx2};
