/* matmul_scalar.c - portable C inner kernels, for CPUs without AVX2.
 * Four independent partial sums per dot product let the compiler overlap
 * the additions; otherwise the plain loops of kernels/ref in float. Half
 * weights are widened element by element with kernels/half.h. */
#include <math.h>

#include "kernels/cpu/simd.h"
#include "kernels/half.h"

/* Weight element j of row wr widened to f32; wt is a constant at each call. */
static inline float wget(const char *wr, int j, dtype_t wt) { return dtype_get(wr, wt, (size_t)j); }

static inline __attribute__((always_inline)) void matmul_rows_dt(float *out, int ldo, const float *x, int ldx,
                                                                  const char *w, dtype_t wt, int ldw, int T, int d,
                                                                  int r0, int r1, int accumulate) {
    const size_t rowb = (size_t)ldw * dtype_size(wt);
    for (int r = r0; r < r1; r++) {
        const char *wr = w + (size_t)r * rowb;
        for (int t = 0; t < T; t++) {
            const float *xt = x + (size_t)t * ldx;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int j = 0;
            for (; j + 4 <= d; j += 4) {
                s0 += wget(wr, j, wt) * xt[j];
                s1 += wget(wr, j + 1, wt) * xt[j + 1];
                s2 += wget(wr, j + 2, wt) * xt[j + 2];
                s3 += wget(wr, j + 3, wt) * xt[j + 3];
            }
            for (; j < d; j++) s0 += wget(wr, j, wt) * xt[j];
            float *o = &out[(size_t)t * ldo + r];
            float v = (s0 + s1) + (s2 + s3);
            *o = accumulate ? *o + v : v;
        }
    }
}

static void matmul_rows_scalar(float *out, int ldo, const float *x, int ldx, const void *w, dtype_t wt, int ldw,
                               int T, int d, int r0, int r1, int accumulate) {
    if (wt == DTYPE_BF16)
        matmul_rows_dt(out, ldo, x, ldx, w, DTYPE_BF16, ldw, T, d, r0, r1, accumulate);
    else if (wt == DTYPE_F16)
        matmul_rows_dt(out, ldo, x, ldx, w, DTYPE_F16, ldw, T, d, r0, r1, accumulate);
    else
        matmul_rows_dt(out, ldo, x, ldx, w, DTYPE_F32, ldw, T, d, r0, r1, accumulate);
}

/* Packed weights (simd.h): each output is one running sum over k. */
static inline __attribute__((always_inline)) void matmul_panels_dt(float *out, int ldo, const float *x, int ldx,
                                                                    const char *wp, dtype_t wt, int d, int T, int p0,
                                                                    int p1, int n, int accumulate) {
    const size_t pb = panel_bytes(wt, d);
    for (int p = p0; p < p1; p++) {
        const char *w = wp + (size_t)p * pb;
        const int nr = n - p * PANEL < PANEL ? n - p * PANEL : PANEL;
        for (int t = 0; t < T; t++) {
            const float *xt = x + (size_t)t * ldx;
            float acc[PANEL] = {0};
            for (int k = 0; k < d; k++) {
                const size_t e = wt == DTYPE_BF16 ? (size_t)(k / 2) * 2 * PANEL + (k & 1) : (size_t)k * PANEL;
                const int js = wt == DTYPE_BF16 ? 2 : 1;
                for (int j = 0; j < PANEL; j++) acc[j] += wget(w, (int)(e + (size_t)j * js), wt) * xt[k];
            }
            float *o = out + (size_t)t * ldo + (size_t)p * PANEL;
            for (int j = 0; j < nr; j++) o[j] = accumulate ? o[j] + acc[j] : acc[j];
        }
    }
}

static void matmul_panels_scalar(float *out, int ldo, const float *x, int ldx, const void *wp, dtype_t wt, int d,
                                 int T, int p0, int p1, int n, int accumulate) {
    if (wt == DTYPE_BF16)
        matmul_panels_dt(out, ldo, x, ldx, wp, DTYPE_BF16, d, T, p0, p1, n, accumulate);
    else if (wt == DTYPE_F16)
        matmul_panels_dt(out, ldo, x, ldx, wp, DTYPE_F16, d, T, p0, p1, n, accumulate);
    else
        matmul_panels_dt(out, ldo, x, ldx, wp, DTYPE_F32, d, T, p0, p1, n, accumulate);
}

static void axpy_rows_scalar(float *y, const float *a, const float *v, int ldv, int m, int n) {
    for (int s = 0; s < m; s++)
        for (int j = 0; j < n; j++) y[j] += a[s] * v[(size_t)s * ldv + j];
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

static void matmul_i8_scalar(float *out, int ldo, const float *x, int ldx, const int8_t *wp, const float *sc, int d,
                             int T, int p0, int p1, int n) {
    for (int p = p0; p < p1; p++) {
        const int8_t *w = wp + (size_t)p * d * PANEL;
        for (int j = 0; j < PANEL && p * PANEL + j < n; j++)
            for (int t = 0; t < T; t++) {
                const float *xt = x + (size_t)t * ldx;
                float a = 0.0f;
                for (int k = 0; k < d; k++) a += (float)w[(size_t)k * PANEL + j] * xt[k]; /* multiply, then add */
                out[(size_t)t * ldo + p * PANEL + j] = sc[p * PANEL + j] * a;
            }
    }
}

static void matmul_i8q_scalar(float *out, int ldo, const uint8_t *u, int ldu, const int8_t *wp, const float *sc,
                              const int32_t *cs, const float *xs, int d4, int T, int p0, int p1, int n) {
    for (int p = p0; p < p1; p++) {
        const int8_t *w = wp + (size_t)p * d4 * PANEL * 4;
        for (int j = 0; j < PANEL && p * PANEL + j < n; j++)
            for (int t = 0; t < T; t++) {
                const uint8_t *ut = u + (size_t)t * ldu;
                int32_t a = 0;
                for (int k4 = 0; k4 < d4; k4++)
                    for (int i = 0; i < 4; i++) a += (int32_t)ut[4 * k4 + i] * w[((size_t)k4 * PANEL + j) * 4 + i];
                const int r = p * PANEL + j;
                out[(size_t)t * ldo + r] = (sc[r] * xs[t]) * (float)(a - cs[r]);
            }
    }
}

void screen_scan_tail(const float *a, int r0, int V, const float *n, float s, const float *n2, float s2, float st[3],
                      float *hi) {
    for (int r = r0; r < V; r += SCAN_CHUNK) {
        float h = -INFINITY;
        for (int i = r; i < V && i < r + SCAN_CHUNK; i++) {
            const float m1 = s * n[i], m2 = s2 * n2[i], m = m1 + m2, lo = a[i] - m, up = a[i] + m, aa = fabsf(a[i]);
            st[2] += a[i] - a[i]; /* NaN if a[i] is infinite or NaN */
            st[0] = lo > st[0] ? lo : st[0], st[1] = aa > st[1] ? aa : st[1], h = up > h ? up : h;
        }
        hi[r / SCAN_CHUNK] = h;
    }
}

static void screen_scan_scalar(const float *a, int V, const float *n, float s, const float *n2, float s2, float st[3],
                               float *hi) {
    st[0] = -INFINITY, st[1] = 0, st[2] = 0;
    screen_scan_tail(a, 0, V, n, s, n2, s2, st, hi);
}

const simd_kernels_t simd_scalar = {"scalar", matmul_rows_scalar, matmul_panels_scalar, axpy_rows_scalar, max_sumexp_scalar, exp_sub_sum_generic,
                                      silu_mul_generic, matmul_i8_scalar, matmul_i8q_scalar, screen_scan_scalar};
