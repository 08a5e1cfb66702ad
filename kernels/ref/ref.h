/* ref.h - plain C reference versions of every operator in kernels/ops.h.
 *
 * Straightforward loops in the textbook order, double accumulation where a
 * sum is formed, no threads and no SIMD. They are slow on purpose: tests
 * compare the fast CPU kernels (kernels/cpu) against them on random data.
 * Shapes are given in the comments; all arrays are row-major f32, except
 * that weights (w, w1, w3, table) may be f32, bf16 or f16 as wt says: they
 * are widened to f32 (exactly; kernels/half.h) and used as before.
 */
#ifndef BILD_REF_H
#define BILD_REF_H

#include "kernels/ops.h"

/* out (T, n) (+)= x (T, d) . w (n, d)^T; rows of out, x, w are ldo, ldx, ldw elements apart. */
void matmul_ref(float *out, int ldo, const float *x, int ldx, const void *w, dtype_t wt, int ldw, int T,
                int n, int d, int accumulate);

/* out (T, d) = rmsnorm(x (T, d)) * w (d) */
void rmsnorm_ref(float *out, const float *x, const float *w, int T, int d, float eps);

/* out (T, hid) = silu(x w1^T) * (x w3^T); x (T, d), w1 w3 (hid, d) */
void swiglu_ref(float *out, const float *x, const void *w1, const void *w3, dtype_t wt, int T, int d, int hid);

/* x: T rows of row_stride floats, each n_heads heads of hd; rotated in place. */
void rope_ref(float *x, int row_stride, int T, int n_heads, int hd, int pos0, float theta,
              rope_style_t style);

/* out, q (T, nh*hd); kc, vc (pos0+T, nkv*hd); causal. */
void attention_ref(float *out, const float *q, const float *kc, const float *vc, int T, int pos0,
                   int nh, int nkv, int hd);

/* out (T, d) = table[tokens[t]] */
void embed_ref(float *out, const void *table, dtype_t wt, const int *tokens, int T, int d);

/* Per row of x (T, V): argmax (lowest id on ties), max softmax probability,
 * -log softmax[next[t]] (0 if next is NULL or next[t] < 0); in double. */
void row_stats_ref(const float *x, int T, int V, const int *next, int *argmax, float *max_p, float *nll);

#endif
