/* matmul_avx512.c - AVX-512 inner kernels (compiled with -mavx512f etc.).
 *
 * Two matrix products: matmul_panels (at the end of this file) on weight
 * matrices the backend packed into 16-row panels, which is what a model's
 * matrices are by default (kernels/cpu/simd.h, docs/engine.md "Packed
 * weights"); matmul_rows on row-major ones: attention's keys, biases, and
 * every matrix under BILD_PACK=0.
 *
 * matmul_rows tiles 4 weight rows x 4 tokens: 16 accumulators stay in
 * registers while the reduction dimension is walked 16 floats at a time, so
 * a weight row is loaded from memory once per 4 tokens (and from L1 after
 * that). With T = 1 it degenerates to 4 rows x 1 token, a pure streaming
 * matrix-vector product. (A 2 rows x 8 tokens tile for blocks of 8, which
 * helped on an Intel Xeon whose L3 held the model, ran 8 tokens 1.3-1.4x
 * slower than two passes of 4 x 4 on the AMD EPYC below, and is gone.)
 * The four rows of a tile come from the four quarters of the rows asked
 * for, so the weights stream as four long sequential runs (matmul_rows_dt).
 * The tail of d (d % 16) uses masked loads, so any d works without padding.
 *
 * Weights may be f32, bf16 or f16 (activations and sums stay f32): half
 * weights are widened in registers right after the load, so a step reads
 * half the bytes and the arithmetic is the f32 kernel's (bf16 two steps at
 * a time, see BF16_PAIR_X: about 16% more weights/s than widening 16 at a
 * time, on a 768 x 288 matrix in L2; for blocks of 4 or more tokens x is
 * split into even and odd elements once per call, see split_x). AVX-512
 * BF16 dot products (vdpbf16ps) are not used: they need bf16 activations,
 * which would change the numerics, and at T = 1 the kernel is bound by
 * memory, not FMAs.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/simd.h"

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

/* 16 weights from element j of row p, widened to f32. The dtype is a
 * constant in every caller (matmul_rows_avx512 instantiates the kernel once
 * per dtype through always_inline), so the branches fold away.
 * bf16 -> f32 is a zero-extension to 32 bits and a shift left by 16 (the
 * bf16 bits are the top half of the f32); f16 -> f32 is vcvtph2ps. Both are
 * exact. Tails use 16-bit masked loads, so nothing past the row is read. */
static inline __attribute__((always_inline)) __m512 wload(const char *p, int j, dtype_t wt) {
    if (wt == DTYPE_BF16)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p + (size_t)j * 2))), 16));
    if (wt == DTYPE_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + (size_t)j * 2)));
    return _mm512_loadu_ps((const float *)p + j);
}

static inline __attribute__((always_inline)) __m512 wload_tail(const char *p, int j, dtype_t wt, __mmask16 m) {
    if (wt == DTYPE_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p + (size_t)j * 2)), 16));
    if (wt == DTYPE_F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p + (size_t)j * 2));
    return _mm512_maskz_loadu_ps(m, (const float *)p + j);
}

/* bf16 in pairs of steps: 32 weights (one 64-byte load) widen with one
 * shift (the even elements 0, 2, .., 30 land in lanes 0..15) and one AND
 * (the odd elements), two single-uop instructions on either vector port,
 * instead of a zero-extension (port 5) and a shift per 16 weights. The
 * activations are split the same way with two permutes, which the 4-row
 * tile shares across its rows. Each accumulator then adds the even product
 * and the odd product of a lane in turn; every path below (token tiles and
 * single tokens) does exactly this, so a row's result still does not
 * depend on how the tokens were tiled. */
#define BF16_PAIR_X(p, e, o)                                                                          \
    do {                                                                                              \
        if (XS) { /* x was split beforehand (split_x): the same two vectors, loaded */                \
            e = _mm512_loadu_ps((p) + j), o = _mm512_loadu_ps((p) + j + 16);                          \
        } else {                                                                                      \
            __m512 lo_ = _mm512_loadu_ps((p) + j), hi_ = _mm512_loadu_ps((p) + j + 16);               \
            e = _mm512_permutex2var_ps(lo_, idx_even, hi_), o = _mm512_permutex2var_ps(lo_, idx_odd, hi_); \
        }                                                                                             \
    } while (0)
#define BF16_PAIR_W(p, e, o)                                                                          \
    do {                                                                                              \
        __m512i v_ = _mm512_loadu_si512((p) + (size_t)j * 2);                                         \
        e = _mm512_castsi512_ps(_mm512_slli_epi32(v_, 16));                                           \
        o = _mm512_castsi512_ps(_mm512_and_si512(v_, hi16));                                          \
    } while (0)
#define BF16_FMA2(a, we, wo, xe, xo) (a = _mm512_fmadd_ps(wo, xo, _mm512_fmadd_ps(we, xe, a)))

/* Loads at element j of the reduction in the tiles below (m: the tail mask) */
#define XFULL(p) _mm512_loadu_ps((p) + j)
#define XTAIL(p) _mm512_maskz_loadu_ps(m, (p) + j)
#define WFULL(p) wload((p), j, wt)
#define WTAIL(p) wload_tail((p), j, wt, m)

/* One weight row times one token: the accumulator (before its horizontal
 * sum) of w[0..d) . x[0..d), with exactly the FMA sequence of one row of the
 * tiles in matmul_rows_dt: bf16 in pair steps first (BF16_PAIR_X/W, x split
 * when XS), then 16 at a time, then the masked tail. */
static inline __attribute__((always_inline)) __m512 row_dot(const char *wr, const float *xt, dtype_t wt, int XS,
                                                             int d) {
    const int dv = d & ~15;
    const __mmask16 m = (__mmask16)((1u << (d - dv)) - 1);
    const __m512i idx_even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
                  idx_odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
                  hi16 = _mm512_set1_epi32((int)0xffff0000u);
    __m512 a = _mm512_setzero_ps();
    int j = 0;
    if (wt == DTYPE_BF16)
        for (; j + 32 <= d; j += 32) {
            __m512 xe, xo, we, wo;
            BF16_PAIR_X(xt, xe, xo);
            BF16_PAIR_W(wr, we, wo);
            BF16_FMA2(a, we, wo, xe, xo);
        }
    for (; j < dv; j += 16) a = _mm512_fmadd_ps(wload(wr, j, wt), _mm512_loadu_ps(xt + j), a);
    if (j < d) a = _mm512_fmadd_ps(wload_tail(wr, j, wt, m), _mm512_maskz_loadu_ps(m, xt + j), a);
    return a;
}

/* The four sums of a tile (hsum4) into rows r, r + q, r + 2q, r + 3q of o. */
static inline void put4q(float *o, int q, __m128 v, int accumulate) {
    float s[4];
    _mm_storeu_ps(s, v);
    for (int k = 0; k < 4; k++) put(&o[(size_t)k * q], s[k], accumulate);
}

/* Software prefetch for blocks of PF_MIN_T or more tokens: PF_AHEAD bytes
 * ahead in each of the four row streams, into L2, never past the end of the
 * stream's quarter (see matmul_rows_dt). */
#define PF_AHEAD 24576
#define PF_MIN_T 3
#define PF_HINT _MM_HINT_T1

/* The kernel for one weight dtype wt (a compile-time constant at each call).
 * Weights are addressed in bytes: row i starts at w + i * ldw * es.
 *
 * Which rows a tile takes: the rows [r0, r1) are cut into four quarters of
 * q rows, and a tile takes row i of each quarter (r0 + i, r0 + q + i, ...),
 * i = 0 .. q-1; the (r1 - r0) % 4 rows after them go one at a time. So the
 * weights stream from memory as four long sequential runs, which the
 * hardware prefetcher follows. Four adjacent rows (the obvious tile) are
 * four runs of one row each, restarted every tile: where the weights come
 * from DRAM that defeated the prefetcher (AMD EPYC, Zen 4, 32 MiB L3: a
 * 32000 x 288 f32 product ran at 8-11 GB/s, against 24-25 GB/s, the
 * machine's read bandwidth, with quarters; a 4-token block took 4.5 ms
 * that way and 1.5 ms with quarters, the same as one token). Which rows
 * share a tile changes no row's sums.
 *
 * Tokens go in groups: 4 x 6 tiles (24 accumulators, f32 and f16 weights)
 * where 5 or more tokens are left, except exactly 8 (two 4 x 4 tiles), then
 * 4 x 4 tiles; a last group of 2 or 3 (or 5) tokens runs its tile with the
 * last token repeated (stored once), a last single token goes alone. A
 * block's first group streams the rows from memory; the others find them
 * in L1.
 *
 * Prefetch: a block's tile does 4 to 6 FMAs per weight loaded, so it runs
 * close to the FMA ports' limit while the weights stream in, and the
 * hardware prefetcher alone let memory and arithmetic take turns (on the
 * Zen 4 below a 32000 x 288 f32 product of 6 tokens took 1.8-2.0 ms, about
 * the 0.8 ms of one token plus the 1.1 ms of its FMAs from L2). So the first
 * group of each tile of a block also prefetches every line PF_AHEAD bytes
 * further along each row stream (which runs on into the next rows) into L2:
 * best of 5, T = 6 1.33 ms, T = 4 0.98 ms against 1.09 ms, T = 8 1.71
 * against 1.95 ms. T1 beat T0 (into L1: 1.47 ms for T = 6); 18-36 KiB
 * ahead were alike; one token gains nothing (it is bound by the loads
 * themselves) and does not prefetch. It changes no arithmetic.
 * A prefetch stops PF_AHEAD bytes before the end of its quarter: past it
 * lie the next quarter, already streaming, or another chunk's rows. With a
 * thread's chunk of a 288-row matrix only ~10 KiB per quarter, unbounded
 * prefetches read more than the tile did (Intel Xeon, 480 MiB L3, stories15M
 * in L3, 2 threads: a block of 8 tokens 1.62 -> 1.54 ms; bench/results/
 * intel-blocks.txt). */
static inline __attribute__((always_inline)) void matmul_rows_dt(float *out, int ldo, const float *x, int ldx,
                                                                  const float *xu, int ldxu, const char *w, dtype_t wt,
                                                                  int XS, int ldw, int T, int d, int r0, int r1,
                                                                  int accumulate) {
    const int dv = d & ~15;
    const __mmask16 m = (__mmask16)((1u << (d - dv)) - 1);
    const size_t es = wt == DTYPE_F32 ? 4 : 2, rowb = (size_t)ldw * es;
    const int q = (r1 - r0) / 4; /* rows per quarter */
    const __m512i idx_even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
                  idx_odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
                  hi16 = _mm512_set1_epi32((int)0xffff0000u);
    const size_t qb = (size_t)q * rowb; /* bytes from a row to its partner in the next quarter */
    for (int i = 0; i < q; i++) {
        const int r = r0 + i;
        const char *w0 = w + (size_t)r * rowb, *w1 = w0 + qb, *w2 = w1 + qb, *w3 = w2 + qb;
        const size_t pfl = (size_t)(q - i) * rowb; /* bytes left in each quarter from row i on */
        /* one prefetch per 64 bytes of weights at byte jb of the rows, in the first group of a block */
#define PFW(jb)                                                                                      \
    do {                                                                                             \
        if (pfa && ((jb) & 63) == 0 && (jb) + PF_AHEAD < pfl) {                                      \
            const size_t o_ = (size_t)(jb) + PF_AHEAD;                                               \
            _mm_prefetch(w0 + o_, PF_HINT), _mm_prefetch(w1 + o_, PF_HINT);                          \
            _mm_prefetch(w2 + o_, PF_HINT), _mm_prefetch(w3 + o_, PF_HINT);                          \
        }                                                                                            \
    } while (0)
        int t = 0;
        for (int nt; T - t >= 2; t += nt) {
            const int pfa = T >= PF_MIN_T && t == 0;
            if (wt != DTYPE_BF16 && T - t >= 5 && T - t != 8) { /* a 4 x 6 tile */
                nt = T - t < 6 ? T - t : 6;
                const float *y0 = x + (size_t)t * ldx, *y1 = y0 + ldx, *y2 = y1 + ldx, *y3 = y2 + ldx,
                            *y4 = y3 + ldx, *y5 = nt > 5 ? y4 + ldx : y4;
                /* b<row><token>, named for the same reason as below */
                __m512 b00 = _mm512_setzero_ps(), b01 = b00, b02 = b00, b03 = b00, b04 = b00, b05 = b00,
                       b10 = b00, b11 = b00, b12 = b00, b13 = b00, b14 = b00, b15 = b00, b20 = b00, b21 = b00,
                       b22 = b00, b23 = b00, b24 = b00, b25 = b00, b30 = b00, b31 = b00, b32 = b00, b33 = b00,
                       b34 = b00, b35 = b00;
#define ROW6(R, LW)                                                                                  \
    do {                                                                                             \
        __m512 wv = LW(w##R);                                                                        \
        b##R##0 = _mm512_fmadd_ps(wv, v0, b##R##0), b##R##1 = _mm512_fmadd_ps(wv, v1, b##R##1);       \
        b##R##2 = _mm512_fmadd_ps(wv, v2, b##R##2), b##R##3 = _mm512_fmadd_ps(wv, v3, b##R##3);       \
        b##R##4 = _mm512_fmadd_ps(wv, v4, b##R##4), b##R##5 = _mm512_fmadd_ps(wv, v5, b##R##5);       \
    } while (0)
#define STEP6(LX, LW)                                                                                \
    do {                                                                                             \
        __m512 v0 = LX(y0), v1 = LX(y1), v2 = LX(y2), v3 = LX(y3), v4 = LX(y4), v5 = LX(y5);           \
        ROW6(0, LW);                                                                                 \
        ROW6(1, LW);                                                                                 \
        ROW6(2, LW);                                                                                 \
        ROW6(3, LW);                                                                                 \
    } while (0)
                int j = 0;
                for (; j < dv; j += 16) {
                    PFW((size_t)j * es);
                    STEP6(XFULL, WFULL);
                }
                if (j < d) STEP6(XTAIL, WTAIL);
#undef STEP6
#undef ROW6
                float *o0 = out + (size_t)t * ldo + r;
                put4q(o0, q, hsum4(b00, b10, b20, b30), accumulate);
                put4q(o0 + ldo, q, hsum4(b01, b11, b21, b31), accumulate);
                put4q(o0 + 2 * (size_t)ldo, q, hsum4(b02, b12, b22, b32), accumulate);
                put4q(o0 + 3 * (size_t)ldo, q, hsum4(b03, b13, b23, b33), accumulate);
                put4q(o0 + 4 * (size_t)ldo, q, hsum4(b04, b14, b24, b34), accumulate);
                if (nt > 5) put4q(o0 + 5 * (size_t)ldo, q, hsum4(b05, b15, b25, b35), accumulate);
                continue;
            }
            /* a 4 x 4 tile; 2 or 3 tokens repeat the last (cheaper than one
             * pass over the rows per token: T = 3 took 1.15x as long as 4) */
            nt = T - t < 4 ? T - t : 4;
            const float *x0 = x + (size_t)t * ldx, *x1 = x0 + ldx, *x2 = nt > 2 ? x1 + ldx : x1,
                        *x3 = nt > 3 ? x2 + ldx : x2;
            /* 16 named accumulators: a<row><token>. Arrays of vectors tend to
             * be spilled to the stack by the compiler; named ones stay in zmm. */
            __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00,
                   a12 = a00, a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00,
                   a32 = a00, a33 = a00;
#define STEP(LX, LW)                                                                                 \
    do {                                                                                             \
        __m512 v0 = LX(x0), v1 = LX(x1), v2 = LX(x2), v3 = LX(x3), wv;                               \
        wv = LW(w0);                                                                                 \
        a00 = _mm512_fmadd_ps(wv, v0, a00), a01 = _mm512_fmadd_ps(wv, v1, a01);                      \
        a02 = _mm512_fmadd_ps(wv, v2, a02), a03 = _mm512_fmadd_ps(wv, v3, a03);                      \
        wv = LW(w1);                                                                                 \
        a10 = _mm512_fmadd_ps(wv, v0, a10), a11 = _mm512_fmadd_ps(wv, v1, a11);                      \
        a12 = _mm512_fmadd_ps(wv, v2, a12), a13 = _mm512_fmadd_ps(wv, v3, a13);                      \
        wv = LW(w2);                                                                                 \
        a20 = _mm512_fmadd_ps(wv, v0, a20), a21 = _mm512_fmadd_ps(wv, v1, a21);                      \
        a22 = _mm512_fmadd_ps(wv, v2, a22), a23 = _mm512_fmadd_ps(wv, v3, a23);                      \
        wv = LW(w3);                                                                                 \
        a30 = _mm512_fmadd_ps(wv, v0, a30), a31 = _mm512_fmadd_ps(wv, v1, a31);                      \
        a32 = _mm512_fmadd_ps(wv, v2, a32), a33 = _mm512_fmadd_ps(wv, v3, a33);                      \
    } while (0)
            int j = 0;
            if (wt == DTYPE_BF16) { /* pairs of steps first (see BF16_PAIR_X) */
                for (; j + 32 <= d; j += 32) {
                    PFW((size_t)j * 2);
                    __m512 e0, o0, e1, o1, e2, o2, e3, o3, we, wo;
                    BF16_PAIR_X(x0, e0, o0);
                    BF16_PAIR_X(x1, e1, o1);
                    BF16_PAIR_X(x2, e2, o2);
                    BF16_PAIR_X(x3, e3, o3);
                    BF16_PAIR_W(w0, we, wo);
                    BF16_FMA2(a00, we, wo, e0, o0), BF16_FMA2(a01, we, wo, e1, o1);
                    BF16_FMA2(a02, we, wo, e2, o2), BF16_FMA2(a03, we, wo, e3, o3);
                    BF16_PAIR_W(w1, we, wo);
                    BF16_FMA2(a10, we, wo, e0, o0), BF16_FMA2(a11, we, wo, e1, o1);
                    BF16_FMA2(a12, we, wo, e2, o2), BF16_FMA2(a13, we, wo, e3, o3);
                    BF16_PAIR_W(w2, we, wo);
                    BF16_FMA2(a20, we, wo, e0, o0), BF16_FMA2(a21, we, wo, e1, o1);
                    BF16_FMA2(a22, we, wo, e2, o2), BF16_FMA2(a23, we, wo, e3, o3);
                    BF16_PAIR_W(w3, we, wo);
                    BF16_FMA2(a30, we, wo, e0, o0), BF16_FMA2(a31, we, wo, e1, o1);
                    BF16_FMA2(a32, we, wo, e2, o2), BF16_FMA2(a33, we, wo, e3, o3);
                }
            }
            for (; j < dv; j += 16) {
                PFW((size_t)j * es);
                STEP(XFULL, WFULL);
            }
            if (j < d) STEP(XTAIL, WTAIL);
#undef STEP
            float *o0 = out + (size_t)t * ldo + r;
            put4q(o0, q, hsum4(a00, a10, a20, a30), accumulate);
            put4q(o0 + ldo, q, hsum4(a01, a11, a21, a31), accumulate);
            if (nt > 2) put4q(o0 + 2 * (size_t)ldo, q, hsum4(a02, a12, a22, a32), accumulate);
            if (nt > 3) put4q(o0 + 3 * (size_t)ldo, q, hsum4(a03, a13, a23, a33), accumulate);
        }
        for (; t < T; t++) { /* a single token: alone (T = 1) or the last of a block */
            const float *xt = x + (size_t)t * ldx;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            int j = 0;
            if (wt == DTYPE_BF16) /* pairs of steps first, exactly as in the token tile */
                for (; j + 32 <= d; j += 32) {
                    __m512 xe, xo, we, wo;
                    BF16_PAIR_X(xt, xe, xo);
                    BF16_PAIR_W(w0, we, wo);
                    BF16_FMA2(a0, we, wo, xe, xo);
                    BF16_PAIR_W(w1, we, wo);
                    BF16_FMA2(a1, we, wo, xe, xo);
                    BF16_PAIR_W(w2, we, wo);
                    BF16_FMA2(a2, we, wo, xe, xo);
                    BF16_PAIR_W(w3, we, wo);
                    BF16_FMA2(a3, we, wo, xe, xo);
                }
            for (; j < dv; j += 16) {
                __m512 xv = _mm512_loadu_ps(xt + j);
                a0 = _mm512_fmadd_ps(wload(w0, j, wt), xv, a0);
                a1 = _mm512_fmadd_ps(wload(w1, j, wt), xv, a1);
                a2 = _mm512_fmadd_ps(wload(w2, j, wt), xv, a2);
                a3 = _mm512_fmadd_ps(wload(w3, j, wt), xv, a3);
            }
            if (j < d) {
                __m512 xv = _mm512_maskz_loadu_ps(m, xt + j);
                a0 = _mm512_fmadd_ps(wload_tail(w0, j, wt, m), xv, a0);
                a1 = _mm512_fmadd_ps(wload_tail(w1, j, wt, m), xv, a1);
                a2 = _mm512_fmadd_ps(wload_tail(w2, j, wt, m), xv, a2);
                a3 = _mm512_fmadd_ps(wload_tail(w3, j, wt, m), xv, a3);
            }
            put4q(out + (size_t)t * ldo + r, q, hsum4(a0, a1, a2, a3), accumulate);
        }
#undef PFW
    }
    for (int r = r0 + 4 * q; r < r1; r++) { /* the (r1 - r0) % 4 rows after the quarters, from the unsplit x */
        /* row_dot and hsum4 as in the tiles: a row's result does not depend
         * on where it sits in the matrix (a draft vocabulary's rows,
         * transformer_set_head, equal the full classifier's bit for bit) */
        const char *wr = w + (size_t)r * rowb;
        for (int t = 0; t < T; t++) {
            __m512 a = row_dot(wr, xu + (size_t)t * ldxu, wt, 0, d);
            float v[4];
            _mm_storeu_ps(v, hsum4(a, a, a, a));
            put(&out[(size_t)t * ldo + r], v[0], accumulate);
        }
    }
}

#undef XFULL
#undef XTAIL
#undef WFULL
#undef WTAIL

/* x (T, d) with each 32-element chunk of the bf16 pair loop stored as its
 * even elements then its odd ones (what BF16_PAIR_X's permutes make), the
 * rest of each row as it is: xs (T, d). */
static void split_x(float *xs, const float *x, int ldx, int T, int d) {
    const __m512i idx_even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
                  idx_odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * ldx;
        float *st = xs + (size_t)t * d;
        int j = 0;
        for (; j + 32 <= d; j += 32) {
            __m512 lo = _mm512_loadu_ps(xt + j), hi = _mm512_loadu_ps(xt + j + 16);
            _mm512_storeu_ps(st + j, _mm512_permutex2var_ps(lo, idx_even, hi));
            _mm512_storeu_ps(st + j + 16, _mm512_permutex2var_ps(lo, idx_odd, hi));
        }
        for (; j < d; j++) st[j] = xt[j];
    }
}

/* bf16 weights and a block of 4 or more tokens: x is split once per call
 * (split_x) instead of by two permutes per token per 32 weights in every
 * row tile. The permutes run on the vector ports the FMAs need; with them a
 * block of 8 cost about 3 single-token steps of stories15M in bf16. The
 * products and their order are the same either way. A call is one thread's
 * chunk of rows, so each thread splits x for itself: T d permutes against
 * at least 4 T d FMAs of the chunk (in practice dozens of rows). */
#define SPLIT_STACK 16384 /* floats: 64 KiB on the stack, larger blocks on the heap */

static void matmul_rows_avx512(float *out, int ldo, const float *x, int ldx, const void *w, dtype_t wt, int ldw,
                               int T, int d, int r0, int r1, int accumulate) {
    if (wt == DTYPE_BF16 && T >= 4 && d >= 32) {
        float stack[SPLIT_STACK], *xs = (size_t)T * d <= SPLIT_STACK ? stack : malloc(sizeof(float) * (size_t)T * d);
        if (xs) {
            split_x(xs, x, ldx, T, d);
            matmul_rows_dt(out, ldo, xs, d, x, ldx, w, DTYPE_BF16, 1, ldw, T, d, r0, r1, accumulate);
            if (xs != stack) free(xs);
            return;
        }
    }
    if (wt == DTYPE_BF16)
        matmul_rows_dt(out, ldo, x, ldx, x, ldx, w, DTYPE_BF16, 0, ldw, T, d, r0, r1, accumulate);
    else if (wt == DTYPE_F16)
        matmul_rows_dt(out, ldo, x, ldx, x, ldx, w, DTYPE_F16, 0, ldw, T, d, r0, r1, accumulate);
    else
        matmul_rows_dt(out, ldo, x, ldx, x, ldx, w, DTYPE_F32, 0, ldw, T, d, r0, r1, accumulate);
}

/* y += the sum over s < m, in order, of a[s] * v[s*ldv .. +n): up to 8
 * vectors of y stay in registers across all m rows, one fused multiply-add
 * per element and row; the last partial vector is masked. */
static inline __attribute__((always_inline)) void axpy_rows_blk(float *y, const float *a, const float *v, int ldv,
                                                                 int m, const int NR, int left) {
    const __mmask16 mk = (__mmask16)((1u << left) - 1); /* lanes of the last vector below n */
    __m512 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) acc[r] = _mm512_maskz_loadu_ps(r == NR - 1 ? mk : 0xffff, y + 16 * r);
    for (int s = 0; s < m; s++) {
        const __m512 as = _mm512_set1_ps(a[s]);
        const float *vs = v + (size_t)s * ldv;
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++)
            acc[r] = _mm512_fmadd_ps(as, _mm512_maskz_loadu_ps(r == NR - 1 ? mk : 0xffff, vs + 16 * r), acc[r]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) _mm512_mask_storeu_ps(y + 16 * r, r == NR - 1 ? mk : 0xffff, acc[r]);
}

static void axpy_rows_avx512(float *y, const float *a, const float *v, int ldv, int m, int n) {
    for (int j = 0; j < n; j += 128) {
        const int left = n - j < 128 ? n - j : 128, nr = (left + 15) / 16, last = left - 16 * (nr - 1);
#define AXR_(c) axpy_rows_blk(y + j, a, v + j, ldv, m, c, last)
        SIMD_CONST_1_TO_8(nr, AXR_);
#undef AXR_
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

/* ---- Packed weights (simd.h, PANEL): tiles of NP panels x NT tokens ----
 *
 * One accumulator per (row, token) and a 16-row panel per vector: for each
 * element k of the reduction the tile loads one line of each of its NP
 * panels and multiply-adds it with x[t][k], broadcast, for its NT tokens.
 * No horizontal sums and no scattered stores (each accumulator is 16
 * consecutive outputs), so a block of tokens runs close to the FMA ports'
 * limit, and every output's sum is the same chain of FMAs over k whatever
 * NP and NT are: blocks equal single steps bit for bit.
 * NP x NT <= 28 accumulators: NP = 4 up to 6 tokens, 3 for 7 and 8, 2 for
 * 9 to PTALL (14). Each line of weights streamed from L3 feeds NT
 * multiply-adds, so a pass of more than 8 tokens takes them in 2-panel
 * tiles of up to 14 (the 32000 x 288 classifier from L3, one thread: 12
 * tokens 1.77 -> 1.36 ms, 18 tokens 2.45 -> 1.93 ms against 3-panel tiles
 * of 8; 1-panel tiles of up to 24 tokens ran at 65-70 GFMA/s even from L2,
 * 2 x 16 spills). More tokens go in groups of PTALL, each group over the
 * same 24 panels in turn, so that the later groups find them in L2.
 * Prefetch: a tile of 3 or more tokens consumes its panels' lines slowly
 * enough that the hardware prefetcher let memory and arithmetic take turns;
 * such tiles prefetch each line PPF_AHEAD bytes ahead in each of their
 * panels. Streaming a 75 MB matrix (d = 288) from L3 on the Intel Xeon
 * (480 MiB L3), one thread, 8 tokens went from 28-38 to 48-52 GFMA/s
 * (4 KiB ahead: 48, 8 KiB: 45); a block of 8 at 2 threads from 1.26 to
 * 1.20 steps, and the large worker of 8 coordinators (bench/sessions.sh)
 * spent 2.8 s instead of 3.6 on the same requests. Prefetching the next
 * block's panels into L2 during the later groups, or during every group
 * (spread over all their tiles), helped some pass sizes and slowed others
 * (a 36 MB matrix: 24 tokens 72 -> 78 GFMA/s, 12 and 20 tokens 60 -> 53),
 * and gave nothing more in the large worker. */
#ifndef __SANITIZE_ADDRESS__
#define PTALL 14
#else /* GCC's AddressSanitizer keeps the 2 x 9-14 tiles' accumulators in memory and checks each access: tests
       * that run such passes took 2-5x as long (past their time limit); 8 tokens at most keeps them in registers */
#define PTALL 8
#endif
#define PACC 28 /* accumulators of the largest tile, 2 x 14 */
#ifndef PBLK
#define PBLK 24 /* panels a group of tokens takes in turn when there are several (12, 48, 96: no faster) */
#endif
#define PNP(nt) ((nt) <= 6 ? 4 : (nt) <= 8 ? 3 : 2)
#define PPF_MIN_T 3
#define PPF_AHEAD 2048

/* 16 weights of a panel at element k (f32 or f16 layout), widened */
static inline __attribute__((always_inline)) __m512 pwload(const char *w, int k, dtype_t wt) {
    if (wt == DTYPE_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + (size_t)k * 32)));
    return _mm512_loadu_ps((const float *)w + (size_t)k * PANEL);
}

static inline __attribute__((always_inline)) void ptile(float *out, int ldo, const float *x, int ldx, const char *w,
                                                         size_t pb, dtype_t wt, int d, const int NP, const int NT,
                                                         int nlast, int accumulate) {
    __m512 a[PACC]; /* a[p * NT + t]: one flat array no larger than the tiles need (a sanitizer build keeps
                     * a larger one in memory, checking every access) */
#pragma GCC unroll 16
    for (int p = 0; p < NP; p++)
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) a[p * NT + t] = _mm512_setzero_ps();
    if (wt == DTYPE_BF16) {
        /* a pair of k in one line: bf16 bits shifted up (even k) or masked (odd k) are the f32 */
        const __m512i hi16 = _mm512_set1_epi32((int)0xffff0000u);
        for (int k = 0; k < d; k += 2) {
            __m512 wv[4];
#pragma GCC unroll 16
            for (int p = 0; p < NP; p++)
                wv[p] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_loadu_si512(w + p * pb + (size_t)k * 32), 16));
            if (NT >= PPF_MIN_T)
#pragma GCC unroll 16
                for (int p = 0; p < NP; p++) _mm_prefetch(w + p * pb + (size_t)k * 32 + PPF_AHEAD, _MM_HINT_T0);
#pragma GCC unroll 16
            for (int t = 0; t < NT; t++) {
                const __m512 b = _mm512_set1_ps(x[(size_t)t * ldx + k]);
#pragma GCC unroll 16
                for (int p = 0; p < NP; p++) a[p * NT + t] = _mm512_fmadd_ps(wv[p], b, a[p * NT + t]);
            }
            if (k + 1 == d) break;
#pragma GCC unroll 16
            for (int p = 0; p < NP; p++)
                wv[p] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_loadu_si512(w + p * pb + (size_t)k * 32), hi16));
#pragma GCC unroll 16
            for (int t = 0; t < NT; t++) {
                const __m512 b = _mm512_set1_ps(x[(size_t)t * ldx + k + 1]);
#pragma GCC unroll 16
                for (int p = 0; p < NP; p++) a[p * NT + t] = _mm512_fmadd_ps(wv[p], b, a[p * NT + t]);
            }
        }
    } else {
        for (int k = 0; k < d; k++) {
            __m512 wv[4];
#pragma GCC unroll 16
            for (int p = 0; p < NP; p++) wv[p] = pwload(w + p * pb, k, wt);
            if (NT >= PPF_MIN_T)
#pragma GCC unroll 16
                for (int p = 0; p < NP; p++)
                    _mm_prefetch(w + p * pb + (size_t)k * (wt == DTYPE_F32 ? 64 : 32) + PPF_AHEAD, _MM_HINT_T0);
#pragma GCC unroll 16
            for (int t = 0; t < NT; t++) {
                const __m512 b = _mm512_set1_ps(x[(size_t)t * ldx + k]);
#pragma GCC unroll 16
                for (int p = 0; p < NP; p++) a[p * NT + t] = _mm512_fmadd_ps(wv[p], b, a[p * NT + t]);
            }
        }
    }
#pragma GCC unroll 16
    for (int p = 0; p < NP; p++) {
        const __mmask16 m = p == NP - 1 ? (__mmask16)((1u << nlast) - 1) : (__mmask16)0xffff;
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) {
            float *o = out + (size_t)t * ldo + (size_t)p * PANEL;
            __m512 v = a[p * NT + t];
            if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, o), v);
            _mm512_mask_storeu_ps(o, m, v);
        }
    }
}

/* Panels [pa, pe) for tokens [t0, t0 + NT): tiles of NP panels, then of 2 and 1 */
static inline __attribute__((always_inline)) void ptiles(float *out, int ldo, const float *x, int ldx, const char *wp,
                                                          size_t pb, dtype_t wt, int d, const int NT, int pa, int pe,
                                                          int t0, int n, int accumulate) {
#define PT_(np)                                                                                                   \
    ptile(out + (size_t)t0 * ldo + (size_t)p * PANEL, ldo, x + (size_t)t0 * ldx, ldx, wp + (size_t)p * pb, pb, wt, \
          d, np, NT, n - (p + np - 1) * PANEL < PANEL ? n - (p + np - 1) * PANEL : PANEL, accumulate)
    int p = pa;
    for (; p + PNP(NT) <= pe; p += PNP(NT)) PT_(PNP(NT));
    for (; p + 2 <= pe; p += 2) PT_(2);
    for (; p < pe; p++) PT_(1);
#undef PT_
}

/* CALL(c) with c the constant equal to n in 9..PTALL (PTALL for more) */
#define PT_CONST_9_TO_14(n, CALL)                                                                                     \
    do {                                                                                                              \
        switch (n) {                                                                                                  \
        case 9: CALL(9); break;                                                                                       \
        case 10: CALL(10); break;                                                                                     \
        case 11: CALL(11); break;                                                                                     \
        case 12: CALL(12); break;                                                                                     \
        case 13: CALL(13); break;                                                                                     \
        default: CALL(14); break;                                                                                     \
        }                                                                                                             \
    } while (0)

static inline __attribute__((always_inline)) void matmul_panels_dt(float *out, int ldo, const float *x, int ldx,
                                                                    const char *wp, dtype_t wt, int d, int T, int p0,
                                                                    int p1, int n, int accumulate) {
    const size_t pb = panel_bytes(wt, d);
    const int G = T <= 8 ? 8 : PTALL;
    const int blk = T <= G ? p1 - p0 : PBLK;
    for (int pa = p0; pa < p1; pa += blk) {
        const int pe = pa + blk < p1 ? pa + blk : p1;
        for (int t0 = 0; t0 < T; t0 += G) {
            const int c = T - t0 < G ? T - t0 : G;
#define PTS_(c) ptiles(out, ldo, x, ldx, wp, pb, wt, d, c, pa, pe, t0, n, accumulate)
            if (c <= 8)
                SIMD_CONST_1_TO_8(c, PTS_);
            else
                PT_CONST_9_TO_14(c, PTS_);
#undef PTS_
        }
    }
}

static void matmul_panels_avx512(float *out, int ldo, const float *x, int ldx, const void *wp, dtype_t wt, int d,
                                 int T, int p0, int p1, int n, int accumulate) {
    if (wt == DTYPE_BF16)
        matmul_panels_dt(out, ldo, x, ldx, wp, DTYPE_BF16, d, T, p0, p1, n, accumulate);
    else if (wt == DTYPE_F16)
        matmul_panels_dt(out, ldo, x, ldx, wp, DTYPE_F16, d, T, p0, p1, n, accumulate);
    else
        matmul_panels_dt(out, ldo, x, ldx, wp, DTYPE_F32, d, T, p0, p1, n, accumulate);
}

/* ---- int8 panels (backend_t.i8_matmul): tiles of NP <= 4 panels x NT <= 6 tokens; each k widens one 16-byte
 * line per panel to 16 floats and adds its products into one accumulator per (panel, token). Token groups take
 * each block of 4 panels in turn, so the later groups find its 18 KiB (d = 288) in L1. */
static inline __attribute__((always_inline)) void i8tile(float *out, int ldo, const float *x, int ldx,
                                                          const int8_t *w, const float *sc, int d, const int NP,
                                                          const int NT, int nlast) {
    __m512 a[4][6];
#pragma GCC unroll 4
    for (int p = 0; p < NP; p++)
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) a[p][t] = _mm512_setzero_ps();
    for (int k = 0; k < d; k++) {
        __m512 wv[4];
#pragma GCC unroll 4
        for (int p = 0; p < NP; p++)
            wv[p] = _mm512_cvtepi32_ps(
                _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(w + ((size_t)p * d + k) * PANEL))));
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) {
            const __m512 b = _mm512_set1_ps(x[(size_t)t * ldx + k]);
#pragma GCC unroll 4
            for (int p = 0; p < NP; p++) a[p][t] = _mm512_fmadd_ps(wv[p], b, a[p][t]);
        }
    }
#pragma GCC unroll 4
    for (int p = 0; p < NP; p++) {
        const int left = p == NP - 1 ? nlast : PANEL;
        const __mmask16 mk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        const __m512 s = _mm512_loadu_ps(sc + p * PANEL);
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(out + (size_t)t * ldo + p * PANEL, mk, _mm512_mul_ps(s, a[p][t]));
    }
}

static void matmul_i8_avx512(float *out, int ldo, const float *x, int ldx, const int8_t *wp, const float *sc, int d,
                             int T, int p0, int p1, int n) {
    const size_t pb = (size_t)d * PANEL;
    for (int p = p0; p < p1;) {
        const int np = p1 - p >= 4 ? 4 : 1, last = n - (p + np - 1) * PANEL < PANEL ? n - (p + np - 1) * PANEL : PANEL;
        for (int t0 = 0, nt; t0 < T; t0 += nt) { /* groups of up to 6 tokens (7 as 4 + 3, 8 as 4 + 4) */
            const int left = T - t0;
            nt = left <= 6 ? left : left <= 8 ? 4 : 6;
            float *o = out + (size_t)t0 * ldo + (size_t)p * PANEL;
            const float *xt = x + (size_t)t0 * ldx;
            const int8_t *w = wp + p * pb;
            const float *s = sc + p * PANEL;
#define I8T_(NT_) (np == 4 ? i8tile(o, ldo, xt, ldx, w, s, d, 4, NT_, last) : i8tile(o, ldo, xt, ldx, w, s, d, 1, NT_, last))
            switch (nt) {
            case 1: I8T_(1); break;
            case 2: I8T_(2); break;
            case 3: I8T_(3); break;
            case 4: I8T_(4); break;
            case 5: I8T_(5); break;
            default: I8T_(6); break;
            }
#undef I8T_
        }
        p += np;
    }
}

/* ---- int8 panels for integer products (backend_t.i8q_matmul): a panel's group of 4 k is one 64-byte line (16
 * rows x 4 bytes); each token's 4 bytes of u are broadcast, multiplied and summed in fours into 16 int32
 * accumulators (VNNI: vpdpbusd; else vpmaddubsw, whose pair sums stay below 2 x 127 x 127 < 2^15, then
 * vpmaddwd by ones); tiles of NP <= 4 panels x NT <= 6 tokens. */
#define I8Q_TILE(NAME, ATTR, DOT)                                                                                  \
    static inline __attribute__((always_inline)) ATTR void NAME(float *out, int ldo, const uint8_t *u, int ldu,     \
                                                                const int8_t *w, const float *sc, const int32_t *cs, \
                                                                const float *xs, int d4, const int NP, const int NT, \
                                                                int nlast) {                                       \
        __m512i a[4][6];                                                                                           \
        const __m512i ones = _mm512_set1_epi16(1);                                                                 \
        (void)ones;                                                                                                \
        _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++) _Pragma("GCC unroll 6") for (int t = 0; t < NT; t++) \
            a[p][t] = _mm512_setzero_si512();                                                                      \
        for (int k4 = 0; k4 < d4; k4++) {                                                                          \
            __m512i wv[4];                                                                                         \
            _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++) wv[p] =                                           \
                _mm512_loadu_si512((const void *)(w + ((size_t)p * d4 + k4) * PANEL * 4));                         \
            _Pragma("GCC unroll 6") for (int t = 0; t < NT; t++) {                                                 \
                int32_t b4;                                                                                        \
                memcpy(&b4, u + (size_t)t * ldu + 4 * k4, 4);                                                      \
                const __m512i b = _mm512_set1_epi32(b4);                                                           \
                _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++) a[p][t] = DOT(a[p][t], b, wv[p]);             \
            }                                                                                                      \
        }                                                                                                          \
        _Pragma("GCC unroll 4") for (int p = 0; p < NP; p++) {                                                     \
            const int left = p == NP - 1 ? nlast : PANEL;                                                          \
            const __mmask16 mk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);                   \
            const __m512 s = _mm512_loadu_ps(sc + p * PANEL);                                                      \
            const __m512i c = _mm512_loadu_si512((const void *)(cs + p * PANEL));                                  \
            _Pragma("GCC unroll 6") for (int t = 0; t < NT; t++) {                                                 \
                const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(a[p][t], c));                                 \
                _mm512_mask_storeu_ps(out + (size_t)t * ldo + p * PANEL, mk,                                        \
                                      _mm512_mul_ps(_mm512_mul_ps(s, _mm512_set1_ps(xs[t])), f));                  \
            }                                                                                                      \
        }                                                                                                          \
    }

#define DOT_BW(acc, b, w) _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(b, w), ones))
#define DOT_VNNI(acc, b, w) _mm512_dpbusd_epi32(acc, b, w)
I8Q_TILE(i8qtile, , DOT_BW)
I8Q_TILE(i8qtile_vnni, __attribute__((target("avx512vnni"))), DOT_VNNI)

#define I8Q_BODY(TILE)                                                                                             \
    const size_t pb = (size_t)d4 * PANEL * 4;                                                                      \
    for (int p = p0; p < p1;) {                                                                                    \
        const int np = p1 - p >= 4 ? 4 : 1, last = n - (p + np - 1) * PANEL < PANEL ? n - (p + np - 1) * PANEL : PANEL; \
        for (int t0 = 0, nt; t0 < T; t0 += nt) {                                                                   \
            const int left = T - t0;                                                                               \
            nt = left <= 6 ? left : left <= 8 ? 4 : 6;                                                             \
            float *o = out + (size_t)t0 * ldo + (size_t)p * PANEL;                                                 \
            const uint8_t *ut = u + (size_t)t0 * ldu;                                                              \
            const int8_t *w = wp + p * pb;                                                                         \
            const float *s = sc + p * PANEL, *x = xs + t0;                                                         \
            const int32_t *c = cs + p * PANEL;                                                                     \
            switch (nt) {                                                                                          \
            case 1: np == 4 ? TILE(o, ldo, ut, ldu, w, s, c, x, d4, 4, 1, last) : TILE(o, ldo, ut, ldu, w, s, c, x, d4, 1, 1, last); break; \
            case 2: np == 4 ? TILE(o, ldo, ut, ldu, w, s, c, x, d4, 4, 2, last) : TILE(o, ldo, ut, ldu, w, s, c, x, d4, 1, 2, last); break; \
            case 3: np == 4 ? TILE(o, ldo, ut, ldu, w, s, c, x, d4, 4, 3, last) : TILE(o, ldo, ut, ldu, w, s, c, x, d4, 1, 3, last); break; \
            case 4: np == 4 ? TILE(o, ldo, ut, ldu, w, s, c, x, d4, 4, 4, last) : TILE(o, ldo, ut, ldu, w, s, c, x, d4, 1, 4, last); break; \
            case 5: np == 4 ? TILE(o, ldo, ut, ldu, w, s, c, x, d4, 4, 5, last) : TILE(o, ldo, ut, ldu, w, s, c, x, d4, 1, 5, last); break; \
            default: np == 4 ? TILE(o, ldo, ut, ldu, w, s, c, x, d4, 4, 6, last) : TILE(o, ldo, ut, ldu, w, s, c, x, d4, 1, 6, last); break; \
            }                                                                                                      \
        }                                                                                                          \
        p += np;                                                                                                   \
    }

__attribute__((target("avx512vnni"))) void matmul_i8q_avx512_vnni(float *out, int ldo, const uint8_t *u, int ldu,
                                                                    const int8_t *wp, const float *sc, const int32_t *cs,
                                                                    const float *xs, int d4, int T, int p0, int p1,
                                                                    int n) {
    I8Q_BODY(i8qtile_vnni)
}

static void matmul_i8q_avx512(float *out, int ldo, const uint8_t *u, int ldu, const int8_t *wp, const float *sc,
                              const int32_t *cs, const float *xs, int d4, int T, int p0, int p1, int n) {
    I8Q_BODY(i8qtile)
}

static void screen_scan_avx512(const float *a, int V, const float *n, float s, const float *n2, float s2, float st[3],
                               float *hi) {
    const __m512 sv = _mm512_set1_ps(s), sv2 = _mm512_set1_ps(s2), sign = _mm512_set1_ps(-0.0f);
    __m512 lo = _mm512_set1_ps(-INFINITY), am = _mm512_setzero_ps(), bad = am;
    int r = 0;
    for (; r + SCAN_CHUNK <= V; r += SCAN_CHUNK) {
        __m512 h = _mm512_set1_ps(-INFINITY);
        for (int i = r; i < r + SCAN_CHUNK; i += 16) {
            const __m512 av = _mm512_loadu_ps(a + i), m = _mm512_add_ps(_mm512_mul_ps(sv, _mm512_loadu_ps(n + i)),
                                                                          _mm512_mul_ps(sv2, _mm512_loadu_ps(n2 + i)));
            lo = _mm512_max_ps(lo, _mm512_sub_ps(av, m)), h = _mm512_max_ps(h, _mm512_add_ps(av, m));
            am = _mm512_max_ps(am, _mm512_andnot_ps(sign, av)), bad = _mm512_add_ps(bad, _mm512_sub_ps(av, av));
        }
        hi[r / SCAN_CHUNK] = _mm512_reduce_max_ps(h);
    }
    st[0] = _mm512_reduce_max_ps(lo), st[1] = _mm512_reduce_max_ps(am), st[2] = _mm512_reduce_add_ps(bad);
    screen_scan_tail(a, r, V, n, s, n2, s2, st, hi);
}

const simd_kernels_t simd_avx512 = {"avx512", matmul_rows_avx512, matmul_panels_avx512, axpy_rows_avx512, max_sumexp_avx512,
                                    exp_sub_sum_avx512, silu_mul_avx512, matmul_i8_avx512, matmul_i8q_avx512, screen_scan_avx512};
