/* simd.h - the per-ISA inner kernels of the CPU backend (internal header).
 *
 * Each instruction set (AVX-512, AVX2+FMA, plain C) provides the same small
 * table; cpu.c picks one at run time with __builtin_cpu_supports and builds
 * every operator (threading, tiling over rows) on top of it. Files named
 * *_avx512.c / *_avx2.c are compiled with matching -m flags (see Makefile),
 * and nothing in them runs unless the CPU has those instructions.
 */
#ifndef BILD_CPU_SIMD_H
#define BILD_CPU_SIMD_H

#include <stddef.h>

#include "kernels/ops.h"

/* Packed weights: a matrix of n rows x d as ceil(n / PANEL) panels of PANEL
 * consecutive rows, each panel stored column by column, so that element k
 * of all its rows is one contiguous run (one 64-byte line of f32):
 *   f32, f16: element (row p*PANEL + j, k) at panel p, [k][j]
 *   bf16:     at panel p, [k/2][j][k%2] (pairs of k, a 64-byte line per pair;
 *             an odd d is padded with a zero element)
 * Rows past n in the last panel are zero. A product walks k and adds
 * w[.][k] * x[k] into one accumulator per (row, token): no horizontal sums,
 * and the sum of every output is the plain sequence over k of fused
 * multiply-adds (rounded once each, or a multiply and an add for scalar),
 * whatever the number of tokens. See cpu.c, cpu_pack. */
#define PANEL 16
static inline size_t panel_bytes(dtype_t wt, int d) {
    return wt == DTYPE_F32 ? (size_t)d * PANEL * 4 : wt == DTYPE_BF16 ? (size_t)((d + 1) / 2) * PANEL * 4
                                                                      : (size_t)d * PANEL * 2;
}

/* CALL(c) with c the compile-time constant equal to n in 1..8 (8 for more),
 * so that a kernel's loops unrolled over c specialise on a run-time count */
#define SIMD_CONST_1_TO_8(n, CALL)                                                                                    \
    do {                                                                                                              \
        switch (n) {                                                                                                  \
        case 1: CALL(1); break;                                                                                       \
        case 2: CALL(2); break;                                                                                       \
        case 3: CALL(3); break;                                                                                       \
        case 4: CALL(4); break;                                                                                       \
        case 5: CALL(5); break;                                                                                       \
        case 6: CALL(6); break;                                                                                       \
        case 7: CALL(7); break;                                                                                       \
        default: CALL(8); break;                                                                                      \
        }                                                                                                             \
    } while (0)

typedef struct {
    const char *name;
    /* out[t*ldo + i] (+)= sum_j x[t*ldx + j] * w[i*ldw + j]
     * for rows i in [r0, r1) and tokens t in [0, T).
     * out (T, ldo), x (T, ldx), w (rows, ldw); d = reduction length.
     * w holds elements of type wt (F32, BF16 or F16; ldw counts elements);
     * half weights are widened to f32 exactly and the products and sums are
     * formed in f32 as for f32 weights. */
    void (*matmul_rows)(float *out, int ldo, const float *x, int ldx, const void *w, dtype_t wt, int ldw,
                        int T, int d, int r0, int r1, int accumulate);
    /* The same product on packed weights (PANEL above): out[t*ldo + i] (+)=
     * sum_k x[t*ldx + k] * W[i][k] for the rows i of panels [p0, p1) below
     * n, tokens t < T. wp: the whole packed matrix. */
    void (*matmul_panels)(float *out, int ldo, const float *x, int ldx, const void *wp, dtype_t wt, int d, int T,
                          int p0, int p1, int n, int accumulate);
    /* y[j] += a[s] * v[s*ldv + j] for j < n, over s = 0 .. m-1 in that
     * order (for each element, m multiply-adds in sequence) */
    void (*axpy_rows)(float *y, const float *a, const float *v, int ldv, int m, int n);
    /* max of x[0..n) and the sum of exp(x[j] - max) (relative error of
     * each exp term below 1e-6; -inf terms contribute 0) */
    void (*max_sumexp)(const float *x, int n, float *max, float *sum);
    /* x[j] = exp(x[j] - m) for j < n (x[j] <= m); returns the sum */
    float (*exp_sub_sum)(float *x, int n, float m);
    /* a[j] = silu(a[j]) * g[j] = a[j] / (1 + exp(-a[j])) * g[j] for j < n */
    void (*silu_mul)(float *a, const float *g, int n);
    /* backend_t.i8_matmul over panels [p0, p1) of an int8 matrix of n rows
     * packed by cpu.c (I8_PANEL_BYTES per panel and k: element (p*PANEL + j,
     * k) at panel p, [k][j]) with scales sc (a multiple of PANEL long) */
    void (*matmul_i8)(float *out, int ldo, const float *x, int ldx, const int8_t *wp, const float *sc, int d, int T,
                      int p0, int p1, int n);
    /* backend_t.i8q_matmul over panels [p0, p1) of an int8 matrix packed by
     * cpu.c (a panel: for each group of 4 k, 16 rows x 4 bytes), with scales
     * sc and cs[r] = half sum_k q[r][k] (both a multiple of PANEL long), d4
     * groups of 4 k */
    void (*matmul_i8q)(float *out, int ldo, const uint8_t *u, int ldu, const int8_t *wp, const float *sc,
                       const int32_t *cs, const float *xs, int d4, int T, int p0, int p1, int n);
    /* one row of backend_t.screen_scan: a (V), the bounds fl(fl(s * n[r]) + fl(s2 * n2[r])),
     * st[3] and hi (ceil(V / SCAN_CHUNK)) */
    void (*screen_scan)(const float *a, int V, const float *n, float s, const float *n2, float s2, float st[3],
                        float *hi);
} simd_kernels_t;

/* libm versions, shared by the flavours without a vector exp */
float exp_sub_sum_generic(float *x, int n, float m);
void silu_mul_generic(float *a, const float *g, int n);
/* screen_scan in plain C: the scalar flavour, and every flavour's rows past
 * its last whole chunk (from row r0 = c0 * SCAN_CHUNK, chunk c0 on) */
void screen_scan_tail(const float *a, int r0, int V, const float *n, float s, const float *n2, float s2, float st[3],
                      float *hi);

/* matmul_i8q with VNNI (vpdpbusd: bytes of u up to 255), where the CPU has it */
void matmul_i8q_avx512_vnni(float *out, int ldo, const uint8_t *u, int ldu, const int8_t *wp, const float *sc,
                            const int32_t *cs, const float *xs, int d4, int T, int p0, int p1, int n);

extern const simd_kernels_t simd_scalar;
extern const simd_kernels_t simd_avx2;
extern const simd_kernels_t simd_avx512;

#endif
