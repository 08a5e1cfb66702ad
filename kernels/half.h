/* half.h - conversions between f32 and the two 16-bit float formats that
 * weights may be stored in (DTYPE_BF16, DTYPE_F16; see kernels/ops.h).
 *
 * Scalar and portable: the reference kernels, the scalar CPU flavour, the
 * tests and loaders/benchmarks that convert weights use them; the SIMD
 * kernels widen with vector instructions that give identical results
 * (widening is exact in both formats). Narrowing rounds to nearest, ties to
 * even, as PyTorch's .to(torch.bfloat16) / .half() do; NaN stays NaN.
 */
#ifndef BILD_HALF_H
#define BILD_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/ops.h"

static inline uint32_t half_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float half_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* bf16 is the top half of an f32: widening is a shift. */
static inline float bf16_to_f32(uint16_t h) { return half_bits_f32((uint32_t)h << 16); }

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u = half_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1); /* round to nearest, ties to even (overflow goes to inf) */
    return (uint16_t)(u >> 16);
}

/* IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f) return half_bits_f32(sign | 0x7f800000u | (m << 13)); /* inf, NaN */
    if (e == 0) { /* zero or subnormal: m * 2^-24, exact in f32 */
        float v = (float)m * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return half_bits_f32(sign | ((e + 112) << 23) | (m << 13)); /* rebias 15 -> 127 */
}

static inline uint16_t f32_to_f16(float f) {
    uint32_t u = half_f32_bits(f), sign = (u >> 16) & 0x8000, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) { /* below 2^-14: subnormal half, units of 2^-24 */
        /* a / 2^-24 rounded to nearest even; adding 0.5 (as f32) does the
         * rounding in the FPU: 2^-24 * k for k < 1024 */
        float v = half_bits_f32(a) * 16777216.0f; /* exact: scales by 2^24 */
        uint32_t k = (uint32_t)v;
        float fr = v - (float)k;
        if (fr > 0.5f || (fr == 0.5f && (k & 1))) k++;
        return (uint16_t)(sign | k); /* k == 1024 carries into the smallest normal */
    }
    /* normal: drop 13 mantissa bits with round to nearest even, rebias */
    a += 0xfffu + ((a >> 13) & 1);
    return (uint16_t)(sign | ((a - 0x38000000u) >> 13));
}

/* Size in bytes of one element of a weight dtype. */

/* Element i of a weight array of dtype t, widened to f32 (exact). */
static inline float dtype_get(const void *p, dtype_t t, size_t i) {
    if (t == DTYPE_BF16) return bf16_to_f32(((const uint16_t *)p)[i]);
    if (t == DTYPE_F16) return f16_to_f32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

/* Widens n elements of dtype t to f32 (dst must not overlap src). */
static inline void dtype_to_f32(float *dst, const void *src, dtype_t t, size_t n) {
    if (t == DTYPE_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = dtype_get(src, t, i);
}

/* Narrows n f32 values to bf16 or f16 (round to nearest even). */
static inline void f32_to_dtype(void *dst, const float *src, dtype_t t, size_t n) {
    uint16_t *h = dst;
    if (t == DTYPE_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) h[i] = t == DTYPE_BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
}

#endif
