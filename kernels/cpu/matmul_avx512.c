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
#include <math.h>

#include "kernels/cpu/simd.h"

static inline __m512 ld(const float *p, int j, int dv, __mmask16 m) {
    return j < dv ? _mm512_loadu_ps(p + j) : _mm512_maskz_loadu_ps(m, p + j);
}

static inline void put(float *o, float v, int accumulate) { *o = accumulate ? *o + v : v; }

/* [sum(a), sum(b), sum(c), sum(d)]: four horizontal sums sharing their
 * shuffles (about 13 instructions instead of 4 separate reductions of ~8).
 * Every path below reduces a row's accumulator with this function, so a
 * row's result does not depend on how many tokens were tiled with it. */
static inline __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    /* per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] and the same for c, d */
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    /* per lane: [a, b, c, d] partial sums of that lane's four elements */
    __m512 s = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))));
    /* add the four 128-bit lanes */
    s = _mm512_add_ps(s, _mm512_shuffle_f32x4(s, s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm512_add_ps(s, _mm512_shuffle_f32x4(s, s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castps512_ps128(s);
}

static inline void put4(float *o, __m128 v, int accumulate) {
    _mm_storeu_ps(o, accumulate ? _mm_add_ps(_mm_loadu_ps(o), v) : v);
}

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
            if (t == 0 && r + 8 + 4 <= r1) {
                /* first token tile of this row group: the weights come from
                 * L3 or DRAM; prefetch the group after next (rows r+8..r+11,
                 * contiguous when ldw == d) a line per row per step */
                const char *nx = (const char *)(w + (size_t)(r + 8) * ldw);
                size_t rowb = (size_t)ldw * sizeof(float);
                for (; j < dv; j += 16) {
                    _mm_prefetch(nx + (size_t)j * 4, _MM_HINT_T0);
                    _mm_prefetch(nx + rowb + (size_t)j * 4, _MM_HINT_T0);
                    _mm_prefetch(nx + 2 * rowb + (size_t)j * 4, _MM_HINT_T0);
                    _mm_prefetch(nx + 3 * rowb + (size_t)j * 4, _MM_HINT_T0);
                    STEP(FULL);
                }
            } else
                for (; j < dv; j += 16) STEP(FULL);
            if (j < d) STEP(TAIL);
#undef STEP
#undef FULL
#undef TAIL
            float *o0 = out + (size_t)t * ldo + r;
            put4(o0, hsum4(a00, a10, a20, a30), accumulate);
            put4(o0 + ldo, hsum4(a01, a11, a21, a31), accumulate);
            put4(o0 + 2 * (size_t)ldo, hsum4(a02, a12, a22, a32), accumulate);
            put4(o0 + 3 * (size_t)ldo, hsum4(a03, a13, a23, a33), accumulate);
        }
        for (; t < T; t++) {
            const float *xt = x + (size_t)t * ldx;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            int j = 0;
            /* first pass over these rows: prefetch the group after next, as above */
            const char *nx = t == 0 && r + 12 <= r1 ? (const char *)(w + (size_t)(r + 8) * ldw) : NULL;
            size_t rowb = (size_t)ldw * sizeof(float);
            for (; j < dv; j += 16) {
                if (nx) {
                    _mm_prefetch(nx + (size_t)j * 4, _MM_HINT_T0);
                    _mm_prefetch(nx + rowb + (size_t)j * 4, _MM_HINT_T0);
                    _mm_prefetch(nx + 2 * rowb + (size_t)j * 4, _MM_HINT_T0);
                    _mm_prefetch(nx + 3 * rowb + (size_t)j * 4, _MM_HINT_T0);
                }
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
            put4(out + (size_t)t * ldo + r, hsum4(a0, a1, a2, a3), accumulate);
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

/* exp(x): x = k ln2 + r with |r| <= ln2/2, exp(r) by its Taylor polynomial
 * to degree 7 (truncation error < 3e-8 relative), then scaled by 2^k with
 * scalef, which flushes to 0 below the float range and gives +inf above it.
 * Inputs are clamped to [-104, 88.7]. */
static inline __m512 exp_neg(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504f), ln2_hi = _mm512_set1_ps(0.693145752f),
                 ln2_lo = _mm512_set1_ps(1.42860677e-06f);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.7f));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, ln2_hi, x);
    r = _mm512_fnmadd_ps(k, ln2_lo, r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

static void max_sumexp_avx512(const float *x, int n, float *max, float *sum) {
    __m512 mv = _mm512_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 16 <= n; j += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + j));
    __mmask16 tail = (__mmask16)((1u << (n - j)) - 1);
    if (j < n) mv = _mm512_mask_max_ps(mv, tail, mv, _mm512_maskz_loadu_ps(tail, x + j));
    float m = _mm512_reduce_max_ps(mv);
    __m512 mb = _mm512_set1_ps(m), s0 = _mm512_setzero_ps(), s1 = s0;
    for (j = 0; j + 32 <= n; j += 32) {
        s0 = _mm512_add_ps(s0, exp_neg(_mm512_sub_ps(_mm512_loadu_ps(x + j), mb)));
        s1 = _mm512_add_ps(s1, exp_neg(_mm512_sub_ps(_mm512_loadu_ps(x + j + 16), mb)));
    }
    for (; j < n; j += 16) {
        __mmask16 mk = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        s0 = _mm512_add_ps(s0, _mm512_maskz_mov_ps(mk, exp_neg(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + j), mb))));
    }
    *max = m, *sum = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static float exp_sub_sum_avx512(float *x, int n, float m) {
    __m512 mb = _mm512_set1_ps(m), s = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) {
        __mmask16 mk = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 e = _mm512_maskz_mov_ps(mk, exp_neg(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + j), mb)));
        _mm512_mask_storeu_ps(x + j, mk, e);
        s = _mm512_add_ps(s, e);
    }
    return _mm512_reduce_add_ps(s);
}

static void silu_mul_avx512(float *a, const float *g, int n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int j = 0; j < n; j += 16) {
        __mmask16 mk = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 av = _mm512_maskz_loadu_ps(mk, a + j), gv = _mm512_maskz_loadu_ps(mk, g + j);
        __m512 den = _mm512_add_ps(one, exp_neg(_mm512_sub_ps(_mm512_setzero_ps(), av)));
        _mm512_mask_storeu_ps(a + j, mk, _mm512_mul_ps(_mm512_div_ps(av, den), gv));
    }
}

const simd_kernels_t simd_avx512 = {"avx512", matmul_rows_avx512, axpy_avx512, max_sumexp_avx512,
                                    exp_sub_sum_avx512, silu_mul_avx512};
