/* matmul_scalar.c - portable C inner kernels, for CPUs without AVX2.
 * Four independent partial sums per dot product let the compiler overlap
 * the additions; otherwise the plain loops of kernels/ref in float. */
#include <math.h>

#include "kernels/cpu/simd.h"

static void matmul_rows_scalar(float *out, int ldo, const float *x, int ldx, const float *w, int ldw,
                               int T, int d, int r0, int r1, int accumulate) {
    for (int r = r0; r < r1; r++) {
        const float *wr = w + (size_t)r * ldw;
        for (int t = 0; t < T; t++) {
            const float *xt = x + (size_t)t * ldx;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int j = 0;
            for (; j + 4 <= d; j += 4) {
                s0 += wr[j] * xt[j];
                s1 += wr[j + 1] * xt[j + 1];
                s2 += wr[j + 2] * xt[j + 2];
                s3 += wr[j + 3] * xt[j + 3];
            }
            for (; j < d; j++) s0 += wr[j] * xt[j];
            float *o = &out[(size_t)t * ldo + r];
            float v = (s0 + s1) + (s2 + s3);
            *o = accumulate ? *o + v : v;
        }
    }
}

static void axpy_scalar(float *y, float a, const float *x, int n) {
    for (int j = 0; j < n; j++) y[j] += a * x[j];
}

static void max_sumexp_scalar(const float *x, int n, float *max, float *sum) {
    float m = -INFINITY;
    for (int j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
    double s = 0;
    for (int j = 0; j < n; j++) s += expf(x[j] - m);
    *max = m, *sum = (float)s;
}


float exp_sub_sum_generic(float *x, int n, float m) {
    float s = 0;
    for (int j = 0; j < n; j++) s += (x[j] = expf(x[j] - m));
    return s;
}

void silu_mul_generic(float *a, const float *g, int n) {
    for (int j = 0; j < n; j++) a[j] = a[j] / (1.0f + expf(-a[j])) * g[j];
}

const simd_kernels_t simd_scalar = {"scalar", matmul_rows_scalar, axpy_scalar, max_sumexp_scalar, exp_sub_sum_generic,
                                      silu_mul_generic};
