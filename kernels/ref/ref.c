/* ref.c - plain C reference operators (see ref.h). Mirrors the definitions
 * of the Llama architecture (RMSNorm, RoPE, causal attention, SwiGLU) as
 * written in the papers, not any fast implementation. */
#include "kernels/ref/ref.h"

#include "kernels/half.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void matmul_ref(float *out, int ldo, const float *x, int ldx, const void *w, dtype_t wt, int ldw, int T,
                int n, int d, int accumulate) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int j = 0; j < d; j++) s += (double)x[(size_t)t * ldx + j] * dtype_get(w, wt, (size_t)i * ldw + j);
            float *o = &out[(size_t)t * ldo + i];
            *o = accumulate ? (float)(*o + s) : (float)s;
        }
}

void rmsnorm_ref(float *out, const float *x, const float *w, int T, int d, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * d;
        double ss = 0;
        for (int j = 0; j < d; j++) ss += (double)xt[j] * xt[j];
        double inv = 1.0 / sqrt(ss / d + eps);
        for (int j = 0; j < d; j++) out[(size_t)t * d + j] = (float)(xt[j] * inv * w[j]);
    }
}

void swiglu_ref(float *out, const float *x, const void *w1, const void *w3, dtype_t wt, int T, int d, int hid) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < hid; i++) {
            double a = 0, b = 0;
            for (int j = 0; j < d; j++) {
                a += (double)x[(size_t)t * d + j] * dtype_get(w1, wt, (size_t)i * d + j);
                b += (double)x[(size_t)t * d + j] * dtype_get(w3, wt, (size_t)i * d + j);
            }
            out[(size_t)t * hid + i] = (float)(a / (1.0 + exp(-a)) * b);
        }
}

void rope_ref(float *x, int row_stride, int T, int n_heads, int hd, int pos0, float theta,
              rope_style_t style) {
    for (int t = 0; t < T; t++)
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)t * row_stride + (size_t)h * hd;
            for (int i = 0; i < hd / 2; i++) {
                /* pair i rotates by pos * theta^(-2i/hd) in both conventions;
                 * they differ only in which two dimensions form the pair. */
                double ang = (double)(pos0 + t) * pow((double)theta, -2.0 * i / hd);
                double c = cos(ang), s = sin(ang);
                int a = style == ROPE_INTERLEAVED ? 2 * i : i;
                int b = style == ROPE_INTERLEAVED ? 2 * i + 1 : i + hd / 2;
                double x0 = v[a], x1 = v[b];
                v[a] = (float)(x0 * c - x1 * s);
                v[b] = (float)(x0 * s + x1 * c);
            }
        }
}

void attention_ref(float *out, const float *q, const float *kc, const float *vc, int T, int pos0,
                   int nh, int nkv, int hd) {
    int kvd = nkv * hd, group = nh / nkv;
    double *sc = malloc(sizeof(double) * (size_t)(pos0 + T));
    if (!sc) abort();
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh; h++) {
            const float *qh = q + (size_t)t * nh * hd + (size_t)h * hd;
            int g = h / group, n = pos0 + t + 1; /* causal: positions 0..pos0+t */
            double mx = -INFINITY, sum = 0;
            for (int s = 0; s < n; s++) {
                double dot = 0;
                for (int j = 0; j < hd; j++) dot += (double)qh[j] * kc[(size_t)s * kvd + g * hd + j];
                sc[s] = dot / sqrt((double)hd);
                if (sc[s] > mx) mx = sc[s];
            }
            for (int s = 0; s < n; s++) sum += (sc[s] = exp(sc[s] - mx));
            for (int j = 0; j < hd; j++) {
                double acc = 0;
                for (int s = 0; s < n; s++) acc += sc[s] * vc[(size_t)s * kvd + g * hd + j];
                out[(size_t)t * nh * hd + (size_t)h * hd + j] = (float)(acc / sum);
            }
        }
    free(sc);
}

void embed_ref(float *out, const void *table, dtype_t wt, const int *tokens, int T, int d) {
    for (int t = 0; t < T; t++)
        for (int j = 0; j < d; j++) out[(size_t)t * d + j] = dtype_get(table, wt, (size_t)tokens[t] * d + j);
}

void row_stats_ref(const float *x, int T, int V, const int *next, int *argmax, float *max_p, float *nll) {
    for (int t = 0; t < T; t++) {
        const float *r = x + (size_t)t * V;
        int a = 0;
        for (int j = 1; j < V; j++)
            if (r[j] > r[a]) a = j;
        double s = 0;
        for (int j = 0; j < V; j++) s += exp((double)r[j] - r[a]);
        argmax[t] = a;
        max_p[t] = (float)(1.0 / s);
        nll[t] = next && next[t] >= 0 ? (float)(r[a] + log(s) - r[next[t]]) : 0.0f;
    }
}
