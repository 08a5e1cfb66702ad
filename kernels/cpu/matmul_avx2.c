/* matmul_avx2.c - AVX2 + FMA inner kernels (compiled with -mavx2 -mfma).
 *
 * Same scheme as matmul_avx512.c with 8-float vectors: the panel product
 * for packed matrices (at the end of this file), and for row-major ones
 * (matmul_rows) tiles of 4 rows x 3
 * tokens (12 accumulators + 4 operands: the 16 ymm registers), then 4 x 2
 * and 4 x 1, the four rows from the four quarters of the row range. The
 * tail of d (d % 8) uses masked loads. The softmax and SiLU
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

/* Software prefetch for blocks of PF_MIN_T or more tokens, as in
 * matmul_avx512.c (there from 3 tokens; here a lone 4 x 3 tile ran slower
 * with it: T = 3 1.27x a step against 1.13x) */
#define PF_AHEAD 24576
#define PF_MIN_T 4
#define PF_HINT _MM_HINT_T1

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
 * the weights starts at byte i * ldw * (element size). A tile's four rows
 * are row i of each quarter of [r0, r1) (r0 + i, r0 + q + i, ...), so the
 * weights stream as four long sequential runs that the hardware prefetcher
 * follows; four adjacent rows, four runs of one row restarted every tile,
 * defeated it from DRAM (see matmul_avx512.c). The (r1 - r0) % 4 rows after
 * the quarters go one at a time with the same per-row FMA order. */
static inline __attribute__((always_inline)) void matmul_rows_dt(float *out, int ldo, const float *x, int ldx,
                                                                  const char *w, dtype_t wt, int ldw, int T, int d,
                                                                  int r0, int r1, int accumulate) {
    const int dv = d & ~7, rem = d - dv;
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const size_t es = wt == DTYPE_F32 ? 4 : 2, rowb = (size_t)ldw * es;
#define W(p) wload((p), j, dv, rem, m, wt)
#define X(p) ld((p), j, dv, m)
/* The reduction loop of a tile, STEP being the tile's step macro: the full
 * 8-float steps without a branch, then the masked tail step on its own.
 * The same FMAs in the same order as one loop with a test per load, which
 * ran blocks at about half this speed. With pfa (the first group of a block
 * of PF_MIN_T or more tokens) each 64 bytes of the four rows also prefetch
 * the line PF_AHEAD bytes further on, as in matmul_avx512.c. */
#define WALK(STEP)                                                                                  \
    do {                                                                                            \
        int j = 0;                                                                                  \
        if (pfa)                                                                                    \
            for (; j < dv; j += 8) {                                                                \
                const size_t jb_ = (size_t)j * es;                                                  \
                if ((jb_ & 63) == 0) {                                                              \
                    _mm_prefetch(w0 + jb_ + PF_AHEAD, PF_HINT), _mm_prefetch(w1 + jb_ + PF_AHEAD, PF_HINT); \
                    _mm_prefetch(w2 + jb_ + PF_AHEAD, PF_HINT), _mm_prefetch(w3 + jb_ + PF_AHEAD, PF_HINT); \
                }                                                                                   \
                STEP();                                                                             \
            }                                                                                       \
        for (; j < dv; j += 8) STEP();                                                              \
        if (rem) STEP();                                                                            \
    } while (0)
    const int q = (r1 - r0) / 4; /* rows per quarter */
    const size_t qb = (size_t)q * rowb;
    for (int i = 0; i < q; i++) {
        const int r = r0 + i;
        const char *w0 = w + (size_t)r * rowb, *w1 = w0 + qb, *w2 = w1 + qb, *w3 = w2 + qb;
        int t = 0;
        /* 4 rows x 3 tokens (12 accumulators, 3 x vectors and a weight vector:
         * all 16 registers) while 3 or more tokens remain, then a pair, then one
         * (T = 4 as 3 + 1 took 0.75-0.80x the old time, as 2 + 2 0.89x) */
        for (; T - t >= 3; t += 3) {
            const int pfa = T >= PF_MIN_T && t == 0;
            const float *x0 = x + (size_t)t * ldx, *x1 = x0 + ldx, *x2 = x1 + ldx;
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00, a20 = a00,
                   a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;
#define STEP3()                                                                                     \
    do {                                                                                            \
        __m256 xa = X(x0), xb = X(x1), xc = X(x2), wv;                                              \
        wv = W(w0), a00 = _mm256_fmadd_ps(wv, xa, a00), a01 = _mm256_fmadd_ps(wv, xb, a01);         \
        a02 = _mm256_fmadd_ps(wv, xc, a02);                                                         \
        wv = W(w1), a10 = _mm256_fmadd_ps(wv, xa, a10), a11 = _mm256_fmadd_ps(wv, xb, a11);         \
        a12 = _mm256_fmadd_ps(wv, xc, a12);                                                         \
        wv = W(w2), a20 = _mm256_fmadd_ps(wv, xa, a20), a21 = _mm256_fmadd_ps(wv, xb, a21);         \
        a22 = _mm256_fmadd_ps(wv, xc, a22);                                                         \
        wv = W(w3), a30 = _mm256_fmadd_ps(wv, xa, a30), a31 = _mm256_fmadd_ps(wv, xb, a31);         \
        a32 = _mm256_fmadd_ps(wv, xc, a32);                                                         \
    } while (0)
            WALK(STEP3);
#undef STEP3
            float *o0 = out + (size_t)t * ldo + r, *o1 = o0 + ldo, *o2 = o1 + ldo;
            put(o0, hsum(a00), accumulate), put(o1, hsum(a01), accumulate), put(o2, hsum(a02), accumulate);
            put(o0 + q, hsum(a10), accumulate), put(o1 + q, hsum(a11), accumulate), put(o2 + q, hsum(a12), accumulate);
            put(o0 + 2 * q, hsum(a20), accumulate), put(o1 + 2 * q, hsum(a21), accumulate);
            put(o2 + 2 * q, hsum(a22), accumulate);
            put(o0 + 3 * q, hsum(a30), accumulate), put(o1 + 3 * q, hsum(a31), accumulate);
            put(o2 + 3 * q, hsum(a32), accumulate);
        }
        for (; t + 2 <= T; t += 2) {
            const int pfa = 0; /* a pair starts a block only when T = 2, below PF_MIN_T */
            const float *x0 = x + (size_t)t * ldx, *x1 = x0 + ldx;
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
                   a30 = a00, a31 = a00;
#define STEP2()                                                                                     \
    do {                                                                                            \
        __m256 xa = X(x0), xb = X(x1), wv;                                                          \
        wv = W(w0), a00 = _mm256_fmadd_ps(wv, xa, a00), a01 = _mm256_fmadd_ps(wv, xb, a01);         \
        wv = W(w1), a10 = _mm256_fmadd_ps(wv, xa, a10), a11 = _mm256_fmadd_ps(wv, xb, a11);         \
        wv = W(w2), a20 = _mm256_fmadd_ps(wv, xa, a20), a21 = _mm256_fmadd_ps(wv, xb, a21);         \
        wv = W(w3), a30 = _mm256_fmadd_ps(wv, xa, a30), a31 = _mm256_fmadd_ps(wv, xb, a31);         \
    } while (0)
            WALK(STEP2);
#undef STEP2
            float *o0 = out + (size_t)t * ldo + r, *o1 = o0 + ldo;
            put(o0, hsum(a00), accumulate); put(o1, hsum(a01), accumulate);
            put(o0 + q, hsum(a10), accumulate); put(o1 + q, hsum(a11), accumulate);
            put(o0 + 2 * q, hsum(a20), accumulate); put(o1 + 2 * q, hsum(a21), accumulate);
            put(o0 + 3 * q, hsum(a30), accumulate); put(o1 + 3 * q, hsum(a31), accumulate);
        }
        for (; t < T; t++) {
            const int pfa = 0; /* one token is bound by its loads: no prefetch */
            const float *xt = x + (size_t)t * ldx;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
#define STEP1()                                                                                     \
    do {                                                                                            \
        __m256 xv = X(xt);                                                                          \
        a0 = _mm256_fmadd_ps(W(w0), xv, a0), a1 = _mm256_fmadd_ps(W(w1), xv, a1);                  \
        a2 = _mm256_fmadd_ps(W(w2), xv, a2), a3 = _mm256_fmadd_ps(W(w3), xv, a3);                  \
    } while (0)
            WALK(STEP1);
#undef STEP1
            float *o = out + (size_t)t * ldo + r;
            put(o, hsum(a0), accumulate);
            put(o + q, hsum(a1), accumulate);
            put(o + 2 * q, hsum(a2), accumulate);
            put(o + 3 * q, hsum(a3), accumulate);
        }
    }
    for (int r = r0 + 4 * q; r < r1; r++) {
        const char *wr = w + (size_t)r * rowb;
        for (int t = 0; t < T; t++) {
            const float *xt = x + (size_t)t * ldx;
            __m256 a0 = _mm256_setzero_ps();
            int j = 0;
            for (; j < dv; j += 8) a0 = _mm256_fmadd_ps(W(wr), X(xt), a0);
            if (rem) a0 = _mm256_fmadd_ps(W(wr), X(xt), a0);
            put(&out[(size_t)t * ldo + r], hsum(a0), accumulate);
        }
    }
#undef W
#undef X
#undef WALK
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

/* y += the sum over s < m, in order, of a[s] * v[s*ldv .. +n): up to 8
 * vectors of y stay in registers across all m rows, one fused multiply-add
 * per element and row; the last partial vector is masked. */
static inline __attribute__((always_inline)) void axpy_rows_blk(float *y, const float *a, const float *v, int ldv,
                                                                 int m, const int NR, int left) {
    const __m256i mk = tail_mask(left); /* lanes of the last vector below n */
    __m256 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) acc[r] = r == NR - 1 ? _mm256_maskload_ps(y + 8 * r, mk) : _mm256_loadu_ps(y + 8 * r);
    for (int s = 0; s < m; s++) {
        const __m256 as = _mm256_broadcast_ss(a + s);
        const float *vs = v + (size_t)s * ldv;
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++)
            acc[r] = _mm256_fmadd_ps(as, r == NR - 1 ? _mm256_maskload_ps(vs + 8 * r, mk) : _mm256_loadu_ps(vs + 8 * r),
                                     acc[r]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
        if (r == NR - 1) _mm256_maskstore_ps(y + 8 * r, mk, acc[r]);
        else _mm256_storeu_ps(y + 8 * r, acc[r]);
}

static void axpy_rows_avx2(float *y, const float *a, const float *v, int ldv, int m, int n) {
    for (int j = 0; j < n; j += 64) {
        const int left = n - j < 64 ? n - j : 64, nr = (left + 7) / 8, last = left - 8 * (nr - 1);
#define AXR_(c) axpy_rows_blk(y + j, a, v + j, ldv, m, c, last)
        SIMD_CONST_1_TO_8(nr, AXR_);
#undef AXR_
    }
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

/* ---- Packed weights (simd.h, PANEL): tiles of NP panels x NT tokens ----
 * As matmul_avx512.c's, with a panel as two 8-float halves: 2 x NP x NT <= 12
 * accumulators of the 16 registers (NP = 4 for one token, 2 for two, else
 * 1). Tokens go in groups of 6 and the rest (7 as 4 + 3, 8 as 6 + 2).
 * Where more than one group runs, the groups take the panels PBLK2 at a
 * time, so the later groups find them in L1, and 2 is the 2-token tile's
 * width. Blocks of 8 relative to one step (Intel Xeon, 2 threads,
 * bench/blocks.sh): 4 + 4 on single panels 1.63, 6 + 2 by pairs of panels
 * 1.53, 3 + 3 + 2 with 3-token tiles of 2 panels 1.87.
 * Prefetch: a tile of one or two panels reads one or two sequential
 * streams, and the hardware prefetcher alone did not keep them ahead of the
 * FMAs: from L3 (Intel Xeon, 480 MiB L3, 1 thread, stories15M's matrices)
 * 3 to 6 tokens took 2.5-3.0 ms against 2.1 for one token. Each tile
 * prefetches every line PF2_AHEAD bytes ahead in each of its streams into
 * L1; then 3 to 6 tokens took 2.1-2.2 ms (2 KiB ahead: 2.2-2.35, 8 KiB: as
 * 4 KiB), and one token's four streams gained too (2 threads, one step
 * 1.09 ms against 1.12 without; bench/blocks.sh). */
#define PNP2(nt) ((nt) == 1 ? 4 : (nt) == 2 ? 2 : 1)
#define PBLK2 2
#define PF2_AHEAD 4096

/* the two halves of a panel at element k (f32 or f16 layout), widened */
static inline __attribute__((always_inline)) void pwload2(const char *w, int k, dtype_t wt, __m256 *lo, __m256 *hi) {
    if (wt == DTYPE_F16) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(w + (size_t)k * 32));
        *lo = _mm256_cvtph_ps(_mm256_castsi256_si128(v)), *hi = _mm256_cvtph_ps(_mm256_extracti128_si256(v, 1));
    } else {
        *lo = _mm256_loadu_ps((const float *)w + (size_t)k * PANEL);
        *hi = _mm256_loadu_ps((const float *)w + (size_t)k * PANEL + 8);
    }
}

static inline __attribute__((always_inline)) void ptile2(float *out, int ldo, const float *x, int ldx, const char *w,
                                                          size_t pb, dtype_t wt, int d, const int NP, const int NT,
                                                          int nlast, int accumulate) {
    __m256 a[8][6];
#pragma GCC unroll 8
    for (int v = 0; v < 2 * NP; v++)
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) a[v][t] = _mm256_setzero_ps();
    if (wt == DTYPE_BF16) {
        const __m256i hi16 = _mm256_set1_epi32((int)0xffff0000u);
        for (int k = 0; k < d; k += 2) {
            __m256 wv[8];
#pragma GCC unroll 8
            for (int p = 0; p < NP; p++) _mm_prefetch(w + p * pb + (size_t)k * 32 + PF2_AHEAD, _MM_HINT_T0);
#pragma GCC unroll 8
            for (int v = 0; v < 2 * NP; v++)
                wv[v] = _mm256_castsi256_ps(_mm256_slli_epi32(
                    _mm256_loadu_si256((const __m256i *)(w + (v / 2) * pb + (size_t)k * 32 + (v % 2) * 32)), 16));
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const __m256 b = _mm256_broadcast_ss(x + (size_t)t * ldx + k);
#pragma GCC unroll 8
                for (int v = 0; v < 2 * NP; v++) a[v][t] = _mm256_fmadd_ps(wv[v], b, a[v][t]);
            }
            if (k + 1 == d) break;
#pragma GCC unroll 8
            for (int v = 0; v < 2 * NP; v++)
                wv[v] = _mm256_castsi256_ps(_mm256_and_si256(
                    _mm256_loadu_si256((const __m256i *)(w + (v / 2) * pb + (size_t)k * 32 + (v % 2) * 32)), hi16));
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const __m256 b = _mm256_broadcast_ss(x + (size_t)t * ldx + k + 1);
#pragma GCC unroll 8
                for (int v = 0; v < 2 * NP; v++) a[v][t] = _mm256_fmadd_ps(wv[v], b, a[v][t]);
            }
        }
    } else {
        for (int k = 0; k < d; k++) {
            __m256 wv[8];
#pragma GCC unroll 8
            for (int p = 0; p < NP; p++)
                _mm_prefetch(w + p * pb + (size_t)k * (wt == DTYPE_F32 ? 64 : 32) + PF2_AHEAD, _MM_HINT_T0);
#pragma GCC unroll 8
            for (int p = 0; p < NP; p++) pwload2(w + p * pb, k, wt, &wv[2 * p], &wv[2 * p + 1]);
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const __m256 b = _mm256_broadcast_ss(x + (size_t)t * ldx + k);
#pragma GCC unroll 8
                for (int v = 0; v < 2 * NP; v++) a[v][t] = _mm256_fmadd_ps(wv[v], b, a[v][t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int v = 0; v < 2 * NP; v++) {
        const int left = v / 2 == NP - 1 ? nlast - (v % 2) * 8 : 8; /* rows of this half below n */
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            float *o = out + (size_t)t * ldo + (size_t)v * 8;
            __m256 r = a[v][t];
            if (left >= 8) {
                if (accumulate) r = _mm256_add_ps(_mm256_loadu_ps(o), r);
                _mm256_storeu_ps(o, r);
            } else if (left > 0) {
                const __m256i mk = tail_mask(left);
                if (accumulate) r = _mm256_add_ps(_mm256_maskload_ps(o, mk), r);
                _mm256_maskstore_ps(o, mk, r);
            }
        }
    }
}

static inline __attribute__((always_inline)) void ptiles2(float *out, int ldo, const float *x, int ldx,
                                                           const char *wp, size_t pb, dtype_t wt, int d, const int NT,
                                                           int pa, int pe, int t0, int n, int accumulate) {
#define PT_(np)                                                                                                    \
    ptile2(out + (size_t)t0 * ldo + (size_t)p * PANEL, ldo, x + (size_t)t0 * ldx, ldx, wp + (size_t)p * pb, pb, wt, \
           d, np, NT, n - (p + np - 1) * PANEL < PANEL ? n - (p + np - 1) * PANEL : PANEL, accumulate)
    int p = pa;
    for (; p + PNP2(NT) <= pe; p += PNP2(NT)) PT_(PNP2(NT));
    for (; p + 2 <= pe; p += 2) PT_(2);
    for (; p < pe; p++) PT_(1);
#undef PT_
}

static inline __attribute__((always_inline)) void matmul_panels_dt(float *out, int ldo, const float *x, int ldx,
                                                                    const char *wp, dtype_t wt, int d, int T, int p0,
                                                                    int p1, int n, int accumulate) {
    const size_t pb = panel_bytes(wt, d);
    const int blk = T <= 6 ? p1 - p0 : PBLK2;
    for (int pa = p0; pa < p1; pa += blk) {
        const int pe = pa + blk < p1 ? pa + blk : p1;
        for (int t0 = 0, nt; t0 < T; t0 += nt) {
            const int left = T - t0;
            nt = left <= 6 ? left : left == 7 ? 4 : 6;
            switch (nt) {
            case 1: ptiles2(out, ldo, x, ldx, wp, pb, wt, d, 1, pa, pe, t0, n, accumulate); break;
            case 2: ptiles2(out, ldo, x, ldx, wp, pb, wt, d, 2, pa, pe, t0, n, accumulate); break;
            case 3: ptiles2(out, ldo, x, ldx, wp, pb, wt, d, 3, pa, pe, t0, n, accumulate); break;
            case 4: ptiles2(out, ldo, x, ldx, wp, pb, wt, d, 4, pa, pe, t0, n, accumulate); break;
            case 5: ptiles2(out, ldo, x, ldx, wp, pb, wt, d, 5, pa, pe, t0, n, accumulate); break;
            default: ptiles2(out, ldo, x, ldx, wp, pb, wt, d, 6, pa, pe, t0, n, accumulate); break;
            }
        }
    }
}

static void matmul_panels_avx2(float *out, int ldo, const float *x, int ldx, const void *wp, dtype_t wt, int d, int T,
                               int p0, int p1, int n, int accumulate) {
    if (wt == DTYPE_BF16)
        matmul_panels_dt(out, ldo, x, ldx, wp, DTYPE_BF16, d, T, p0, p1, n, accumulate);
    else if (wt == DTYPE_F16)
        matmul_panels_dt(out, ldo, x, ldx, wp, DTYPE_F16, d, T, p0, p1, n, accumulate);
    else
        matmul_panels_dt(out, ldo, x, ldx, wp, DTYPE_F32, d, T, p0, p1, n, accumulate);
}

/* ---- int8 panels (backend_t.i8_matmul): as matmul_avx512.c's, a panel as two 8-row halves; tiles of 2 panels
 * for one token, else 1 panel x NT <= 5 tokens ---- */
static inline __attribute__((always_inline)) void i8tile2(float *out, int ldo, const float *x, int ldx,
                                                           const int8_t *w, const float *sc, int d, const int NP,
                                                           const int NT, int nlast) {
    __m256 a[4][5];
#pragma GCC unroll 4
    for (int v = 0; v < 2 * NP; v++)
#pragma GCC unroll 5
        for (int t = 0; t < NT; t++) a[v][t] = _mm256_setzero_ps();
    for (int k = 0; k < d; k++) {
        __m256 wv[4];
#pragma GCC unroll 4
        for (int v = 0; v < 2 * NP; v++)
            wv[v] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                _mm_loadl_epi64((const __m128i *)(w + ((size_t)(v / 2) * d + k) * PANEL + (v % 2) * 8))));
#pragma GCC unroll 5
        for (int t = 0; t < NT; t++) {
            const __m256 b = _mm256_broadcast_ss(x + (size_t)t * ldx + k);
#pragma GCC unroll 4
            for (int v = 0; v < 2 * NP; v++) a[v][t] = _mm256_fmadd_ps(wv[v], b, a[v][t]);
        }
    }
#pragma GCC unroll 4
    for (int v = 0; v < 2 * NP; v++) {
        const int left = v / 2 == NP - 1 ? nlast - (v % 2) * 8 : 8;
        const __m256 s = _mm256_loadu_ps(sc + v * 8);
#pragma GCC unroll 5
        for (int t = 0; t < NT; t++) {
            float *o = out + (size_t)t * ldo + (size_t)v * 8;
            if (left >= 8) _mm256_storeu_ps(o, _mm256_mul_ps(s, a[v][t]));
            else if (left > 0) _mm256_maskstore_ps(o, tail_mask(left), _mm256_mul_ps(s, a[v][t]));
        }
    }
}

static void matmul_i8_avx2(float *out, int ldo, const float *x, int ldx, const int8_t *wp, const float *sc, int d,
                           int T, int p0, int p1, int n) {
    const size_t pb = (size_t)d * PANEL;
    const int npt = T == 1 ? 2 : 1; /* one token: two panels (four chains); more: one panel x up to 5 tokens */
    for (int p = p0; p < p1;) {
        const int np = p1 - p >= npt ? npt : 1, last = n - (p + np - 1) * PANEL < PANEL ? n - (p + np - 1) * PANEL : PANEL;
        for (int t0 = 0, nt; t0 < T; t0 += nt) {
            const int left = T - t0;
            nt = left <= 5 ? left : left <= 8 ? 4 : 5;
            float *o = out + (size_t)t0 * ldo + (size_t)p * PANEL;
            const float *xt = x + (size_t)t0 * ldx;
            const int8_t *w = wp + p * pb;
            const float *s = sc + p * PANEL;
            if (np == 2) i8tile2(o, ldo, xt, ldx, w, s, d, 2, 1, last);
            else if (nt == 1) i8tile2(o, ldo, xt, ldx, w, s, d, 1, 1, last);
            else if (nt == 2) i8tile2(o, ldo, xt, ldx, w, s, d, 1, 2, last);
            else if (nt == 3) i8tile2(o, ldo, xt, ldx, w, s, d, 1, 3, last);
            else if (nt == 4) i8tile2(o, ldo, xt, ldx, w, s, d, 1, 4, last);
            else i8tile2(o, ldo, xt, ldx, w, s, d, 1, 5, last);
        }
        p += np;
    }
}

/* ---- int8 panels for integer products (backend_t.i8q_matmul), as matmul_avx512.c's with a panel's 64-byte line
 * as two 8-row halves: vpmaddubsw then vpmaddwd by ones; tiles of one panel x NT <= 5 tokens ---- */
static inline __attribute__((always_inline)) void i8qtile2(float *out, int ldo, const uint8_t *u, int ldu,
                                                            const int8_t *w, const float *sc, const int32_t *cs,
                                                            const float *xs, int d4, const int NT, int nlast) {
    __m256i a[2][5];
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 5
    for (int t = 0; t < NT; t++) a[0][t] = a[1][t] = _mm256_setzero_si256();
    for (int k4 = 0; k4 < d4; k4++) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + (size_t)k4 * PANEL * 4));
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + (size_t)k4 * PANEL * 4 + 32));
#pragma GCC unroll 5
        for (int t = 0; t < NT; t++) {
            int32_t b4;
            memcpy(&b4, u + (size_t)t * ldu + 4 * k4, 4);
            const __m256i b = _mm256_set1_epi32(b4);
            a[0][t] = _mm256_add_epi32(a[0][t], _mm256_madd_epi16(_mm256_maddubs_epi16(b, w0), ones));
            a[1][t] = _mm256_add_epi32(a[1][t], _mm256_madd_epi16(_mm256_maddubs_epi16(b, w1), ones));
        }
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const int left = nlast - h * 8;
        const __m256 s = _mm256_loadu_ps(sc + h * 8);
        const __m256i c = _mm256_loadu_si256((const __m256i *)(cs + h * 8));
#pragma GCC unroll 5
        for (int t = 0; t < NT; t++) {
            float *o = out + (size_t)t * ldo + h * 8;
            const __m256 r = _mm256_mul_ps(_mm256_mul_ps(s, _mm256_set1_ps(xs[t])),
                                           _mm256_cvtepi32_ps(_mm256_sub_epi32(a[h][t], c)));
            if (left >= 8) _mm256_storeu_ps(o, r);
            else if (left > 0) _mm256_maskstore_ps(o, tail_mask(left), r);
        }
    }
}

static void matmul_i8q_avx2(float *out, int ldo, const uint8_t *u, int ldu, const int8_t *wp, const float *sc,
                            const int32_t *cs, const float *xs, int d4, int T, int p0, int p1, int n) {
    const size_t pb = (size_t)d4 * PANEL * 4;
    for (int p = p0; p < p1; p++) {
        const int last = n - p * PANEL < PANEL ? n - p * PANEL : PANEL;
        for (int t0 = 0, nt; t0 < T; t0 += nt) {
            const int left = T - t0;
            nt = left <= 5 ? left : left <= 8 ? 4 : 5;
            float *o = out + (size_t)t0 * ldo + (size_t)p * PANEL;
            const uint8_t *ut = u + (size_t)t0 * ldu;
            const int8_t *w = wp + p * pb;
            const float *s = sc + p * PANEL, *x = xs + t0;
            const int32_t *c = cs + p * PANEL;
            switch (nt) {
            case 1: i8qtile2(o, ldo, ut, ldu, w, s, c, x, d4, 1, last); break;
            case 2: i8qtile2(o, ldo, ut, ldu, w, s, c, x, d4, 2, last); break;
            case 3: i8qtile2(o, ldo, ut, ldu, w, s, c, x, d4, 3, last); break;
            case 4: i8qtile2(o, ldo, ut, ldu, w, s, c, x, d4, 4, last); break;
            default: i8qtile2(o, ldo, ut, ldu, w, s, c, x, d4, 5, last); break;
            }
        }
    }
}

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

static void screen_scan_avx2(const float *a, int V, const float *n, float s, const float *n2, float s2, float st[3],
                             float *hi) {
    const __m256 sv = _mm256_set1_ps(s), sv2 = _mm256_set1_ps(s2), sign = _mm256_set1_ps(-0.0f);
    __m256 lo = _mm256_set1_ps(-INFINITY), am = _mm256_setzero_ps(), bad = am;
    int r = 0;
    for (; r + SCAN_CHUNK <= V; r += SCAN_CHUNK) {
        __m256 h = _mm256_set1_ps(-INFINITY);
        for (int i = r; i < r + SCAN_CHUNK; i += 8) {
            const __m256 av = _mm256_loadu_ps(a + i), m = _mm256_add_ps(_mm256_mul_ps(sv, _mm256_loadu_ps(n + i)),
                                                                          _mm256_mul_ps(sv2, _mm256_loadu_ps(n2 + i)));
            lo = _mm256_max_ps(lo, _mm256_sub_ps(av, m)), h = _mm256_max_ps(h, _mm256_add_ps(av, m));
            am = _mm256_max_ps(am, _mm256_andnot_ps(sign, av)), bad = _mm256_add_ps(bad, _mm256_sub_ps(av, av));
        }
        hi[r / SCAN_CHUNK] = hmax8(h);
    }
    float b8[8];
    _mm256_storeu_ps(b8, bad);
    st[0] = hmax8(lo), st[1] = hmax8(am), st[2] = 0;
    for (int i = 0; i < 8; i++) st[2] += b8[i];
    screen_scan_tail(a, r, V, n, s, n2, s2, st, hi);
}

const simd_kernels_t simd_avx2 = {"avx2", matmul_rows_avx2, matmul_panels_avx2, axpy_rows_avx2, max_sumexp_avx2, exp_sub_sum_avx2,
                                  silu_mul_avx2, matmul_i8_avx2, matmul_i8q_avx2, screen_scan_avx2};
