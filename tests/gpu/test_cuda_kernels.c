/* test_cuda_kernels.c - every operator of a backend (the CUDA one by
 * default) against kernels/ref on random data of odd and aligned shapes.
 *
 *   build/gpu/test_cuda_kernels [--device cuda:0]
 *
 * The test goes through the backend_t table only: weights are uploaded (a
 * GPU backend cannot wrap host memory), activations are alloc'd and filled
 * with from_host and read back with to_host. So it runs unchanged with
 * --device cpu, which is how the harness itself is validated on machines
 * without a GPU. Exit 0 when every check passes, 1 when one fails, 77 (skip)
 * when the device cannot be created.
 *
 * Poisoning: before every op the output is filled with NaN where the op must
 * write and with a sentinel (12345) where it must not (gaps around out_off,
 * padding between rope rows); accumulating matmuls start from random values
 * that the reference includes. An element the op forgot stays NaN and one
 * it wrongly wrote no longer equals the sentinel. KV cache rows past the
 * last position are NaN too: attention must not read them (0 * NaN = NaN).
 *
 * Tolerance, |got - ref| <= atol + rtol*|ref| (tol_dot below):
 * - f32 weights, and half weights in blocks of T <= GEMV_MAX_T rows:
 *   rtol 1e-5, atol 4e-6 * sqrt(d) * scale. The backend accumulates in f32
 *   in some order (warp trees, cuBLAS split-K) and the reference in double,
 *   so a length-d dot product of terms up to `scale` drifts like sqrt(d) f32
 *   roundings; twice tests/test_kernels.c's 2e-6 for the GPU's reduction
 *   orders. Still ~1e3 below what one wrongly widened weight or TF32 (10-bit
 *   mantissa) products would cost. Half weights are rounded once on the host
 *   and both sides read the same half values, so they are exact f32 numbers.
 * - half weights in blocks of T > GEMV_MAX_T (prompts; or any T when
 *   BILD_CUDA_GEMM=cublas / the forced-cuBLAS pass): the CUDA backend runs
 *   a half cuBLAS GEMM on x split as hi + lo, both half; the part of x below
 *   the two halves' precision (~2^-17 relative for bf16) is lost, so rtol
 *   1e-4 and atol 1e-4 * sqrt(d) * scale.
 * - embed and random: exact (widening is exact). rmsnorm: 1e-6 + 1e-5 rel.
 *   rope: 2e-6 + 1e-5 rel (cos/sin table in f32). attention: 2e-5 + 1e-5
 *   rel (fast exp, online softmax). row_stats: argmax exact (lowest id on
 *   ties), max_p 1e-6 + (1e-5 + 2e-7 sqrt(V)) rel, nll (1e-5 + 2e-7 sqrt(V))
 *   + 1e-5 rel: the softmax sums V terms in f32.
 * Adjust the numbers in the tol_* functions, nowhere else.
 *
 * Left out: speed (bench/), and block invariance of the GPU matmul (the
 * CUDA backend does not promise bitwise equality across its two paths). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/dummy.h"
#include "kernels/half.h"
#include "kernels/ops.h"
#include "kernels/ref/ref.h"
#include "kernels/cuda/cuda.h"

/* Blocks of up to this many rows take the CUDA backend's f32-exact custom
 * kernels (kernels/cuda/matmul.cu, GEMV_MAX_T); longer ones may take cuBLAS. */
#define GEMV_MAX_T BILD_CUDA_GEMV_MAX_T
#define SENTINEL 12345.0f

static uint64_t rng = 88172645463325252ULL;
static float frand(void) { /* uniform in [-1, 1), as tests/test_kernels.c */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) / 8388608.0 - 1.0);
}
static void fill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
}
static void fill_value(float *p, size_t n, float v) {
    for (size_t i = 0; i < n; i++) p[i] = v;
}

static const char *dtype_name(dtype_t t) { return t == DTYPE_F32 ? "f32" : t == DTYPE_BF16 ? "bf16" : "f16"; }
static const dtype_t DTYPES[3] = {DTYPE_F32, DTYPE_BF16, DTYPE_F16};

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) fprintf(stderr, "test_cuda_kernels: out of host memory (%zu bytes)\n", n), exit(1);
    return p;
}

/* ---- tolerances ---- */

typedef struct {
    double atol, rtol;
} tol_t;

/* 1: the CUDA backend runs every matmul through cuBLAS (BILD_CUDA_GEMM=cublas,
 * or the forced pass in main), so half weights get the split tolerance at any T. */
static int all_cublas = 0;

/* A dot product of length d whose terms are at most `scale`, with weights of
 * dtype wt, in a block of T rows (see the header). */
static tol_t tol_dot(dtype_t wt, int T, int d, double scale) {
    if (wt != DTYPE_F32 && (T > GEMV_MAX_T || all_cublas)) return (tol_t){1e-4 * sqrt(d) * scale, 1e-4};
    return (tol_t){4e-6 * sqrt(d) * scale, 1e-5};
}
static tol_t tol_exact(void) { return (tol_t){0, 0}; }
static tol_t tol_rmsnorm(void) { return (tol_t){1e-6, 1e-5}; }
static tol_t tol_rope(void) { return (tol_t){2e-6, 1e-5}; }
static tol_t tol_attention(void) { return (tol_t){2e-5, 1e-5}; }
/* a softmax over V logits sums V exp terms in f32: its relative error grows
 * like sqrt(V) roundings of 6e-8 (the CPU backend is 1.5e-5 off at V=128256) */
static tol_t tol_max_p(int V) { return (tol_t){1e-6, 1e-5 + 2e-7 * sqrt(V)}; }
static tol_t tol_nll(int V) { return (tol_t){1e-5 + 2e-7 * sqrt(V), 1e-5}; }

/* ---- check groups: one line each, with the worst error ---- */

typedef struct {
    char name[96];
    int checks, failed;
    double worst, worst_frac; /* max |got - ref|, and max of it / allowed */
} group_t;

static group_t grp;
static int total_checks = 0, total_failed = 0;

static void group_begin(const char *name) {
    memset(&grp, 0, sizeof grp);
    snprintf(grp.name, sizeof grp.name, "%s", name);
}
static void group_end(void) {
    printf("%-40s %5d checks %3d failed  max err %.3g (%.3g of tolerance)%s\n", grp.name, grp.checks, grp.failed,
           grp.worst, grp.worst_frac, grp.failed ? "  FAIL" : "");
    fflush(stdout);
    total_checks += grp.checks, total_failed += grp.failed;
}
/* One check: a pass or fail counted in the current group. */
static void check_bool(const char *what, int ok) {
    grp.checks++;
    if (!ok) grp.failed++, fprintf(stderr, "  FAILED: %s\n", what);
}

/* One check over n elements: all of got within tol of ref. NaN never passes. */
static int check(const char *what, const float *got, const float *ref, size_t n, tol_t tol) {
    size_t bad = 0;
    double worst = 0, frac = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]), allow = tol.atol + tol.rtol * fabs(ref[i]);
        int ok = e <= allow;
        if (!ok) {
            if (bad < 3) fprintf(stderr, "  %s[%zu]: %.9g vs ref %.9g\n", what, i, got[i], ref[i]);
            bad++;
            e = e == e ? e : INFINITY;
        }
        if (e > worst) worst = e;
        if (allow > 0 && e / allow > frac) frac = e / allow;
        if (allow == 0 && e > 0) frac = INFINITY;
    }
    if (bad) fprintf(stderr, "  %s: %zu of %zu outside tolerance (max err %.3g)\n", what, bad, n, worst);
    if (worst > grp.worst) grp.worst = worst;
    if (frac > grp.worst_frac) grp.worst_frac = frac;
    grp.checks++;
    grp.failed += bad != 0;
    return bad == 0;
}

/* ---- device tensors ---- */

static tensor_t must(tensor_t t, const char *what, int64_t n) {
    if (!t.data) fprintf(stderr, "test_cuda_kernels: cannot get %s of %lld elements on the device\n", what,
                         (long long)n), exit(1);
    return t;
}
/* A new device f32 tensor holding host[0..n). */
static tensor_t dev_f32(backend_t *be, const float *host, int64_t n) {
    tensor_t t = must(be->alloc(be, n), "an f32 tensor", n);
    be->from_host(be, t, 0, host, n);
    return t;
}
static tensor_t dev_w(backend_t *be, const void *host, dtype_t wt, int64_t n) {
    return must(be->upload(be, host, wt, n), "uploaded weights", n);
}
static float *read_back(backend_t *be, tensor_t t, int64_t n) {
    float *p = xmalloc(sizeof(float) * (size_t)n);
    be->to_host(be, p, t, 0, n);
    return p;
}

/* n random weights in [-scale, scale) as dtype t (rounded once: the
 * backend and the reference read the same values). Caller frees. */
static void *weights(dtype_t t, size_t n, float scale) {
    float *f = xmalloc(sizeof(float) * n);
    fill(f, n, scale);
    if (t == DTYPE_F32) return f;
    uint16_t *h = xmalloc(sizeof(uint16_t) * n);
    f32_to_dtype(h, f, t, n);
    free(f);
    return h;
}

/* ---- matmul ---- */

/* Two jobs sharing x: W1 (n, d) of dtype t1 at out_off 3 (an odd offset) and
 * W2 (7, d) of dtype t2 right after it, in one out tensor with 3 elements of
 * gap before and 2 after. */
static void test_matmul(backend_t *be, int T, int n, int d, int acc, dtype_t t1, dtype_t t2) {
    size_t lead = 3, n1 = (size_t)T * n, n2 = (size_t)T * 7, tot = lead + n1 + n2 + 2;
    float *x = xmalloc(sizeof(float) * T * d), *init = xmalloc(sizeof(float) * tot), *r = xmalloc(sizeof(float) * tot);
    void *w1 = weights(t1, (size_t)n * d, 1), *w2 = weights(t2, (size_t)7 * d, 1);
    fill(x, (size_t)T * d, 1);
    if (acc) fill(init, tot, 1);
    else {
        fill_value(init, tot, SENTINEL);
        fill_value(init + lead, n1 + n2, NAN);
    }
    memcpy(r, init, sizeof(float) * tot);
    tensor_t xt = dev_f32(be, x, (int64_t)T * d), ot = dev_f32(be, init, (int64_t)tot);
    tensor_t wt1 = dev_w(be, w1, t1, (int64_t)n * d), wt2 = dev_w(be, w2, t2, 7LL * d);
    matmul_job_t jobs[2] = {{wt1, ot, (int64_t)lead, n}, {wt2, ot, (int64_t)(lead + n1), 7}};
    be->matmul(be, xt, T, d, jobs, 2, acc);
    float *o = read_back(be, ot, (int64_t)tot);
    matmul_ref(r + lead, n, x, d, w1, t1, d, T, n, d, acc);
    matmul_ref(r + lead + n1, 7, x, d, w2, t2, d, T, 7, d, acc);
    char what[128];
    snprintf(what, sizeof what, "matmul %s+%s T=%d n=%d d=%d acc=%d", dtype_name(t1), dtype_name(t2), T, n, d, acc);
    /* each job's region with its own dtype's tolerance; the gaps exactly */
    check(what, o, r, lead, tol_exact());
    check(what, o + lead, r + lead, n1, tol_dot(t1, T, d, 1));
    check(what, o + lead + n1, r + lead + n1, n2 + 2, tol_dot(t2, T, d, 1));
    be->free(be, &xt), be->free(be, &ot), be->free(be, &wt1), be->free(be, &wt2);
    free(x), free(init), free(r), free(o), free(w1), free(w2);
}

/* The attention block's projection: Q into its own tensor, K and V straight
 * into KV caches at position pos (out_off = pos * kvd), as the transformer
 * does. Cache rows other than [pos, pos+T) keep their sentinel. */
static void test_matmul_qkv(backend_t *be, int T, int pos, int d, int nq, int kvd, dtype_t wt) {
    int S = pos + T + 3;
    size_t nc = (size_t)S * kvd;
    float *x = xmalloc(sizeof(float) * T * d), *qi = xmalloc(sizeof(float) * T * nq), *ci = xmalloc(sizeof(float) * nc);
    float *rq = xmalloc(sizeof(float) * T * nq), *rc = xmalloc(sizeof(float) * nc);
    void *wq = weights(wt, (size_t)nq * d, 1), *wk = weights(wt, (size_t)kvd * d, 1), *wv = weights(wt, (size_t)kvd * d, 1);
    fill(x, (size_t)T * d, 1);
    fill_value(qi, (size_t)T * nq, NAN);
    fill_value(ci, nc, SENTINEL);
    fill_value(ci + (size_t)pos * kvd, (size_t)T * kvd, NAN);
    tensor_t xt = dev_f32(be, x, (int64_t)T * d), qt = dev_f32(be, qi, (int64_t)T * nq);
    tensor_t kt = dev_f32(be, ci, (int64_t)nc), vt = dev_f32(be, ci, (int64_t)nc);
    tensor_t w[3] = {dev_w(be, wq, wt, (int64_t)nq * d), dev_w(be, wk, wt, (int64_t)kvd * d),
                     dev_w(be, wv, wt, (int64_t)kvd * d)};
    int64_t off = (int64_t)pos * kvd;
    matmul_job_t jobs[3] = {{w[0], qt, 0, nq}, {w[1], kt, off, kvd}, {w[2], vt, off, kvd}};
    be->matmul(be, xt, T, d, jobs, 3, 0);
    char what[128];
    snprintf(what, sizeof what, "matmul qkv %s T=%d pos=%d d=%d", dtype_name(wt), T, pos, d);
    tol_t tol = tol_dot(wt, T, d, 1);
    float *o = read_back(be, qt, (int64_t)T * nq);
    matmul_ref(rq, nq, x, d, wq, wt, d, T, nq, d, 0);
    check(what, o, rq, (size_t)T * nq, tol);
    free(o);
    for (int c = 0; c < 2; c++) {
        memcpy(rc, ci, sizeof(float) * nc);
        matmul_ref(rc + off, kvd, x, d, c ? wv : wk, wt, d, T, kvd, d, 0);
        o = read_back(be, c ? vt : kt, (int64_t)nc);
        check(what, o, rc, (size_t)off, tol_exact());
        check(what, o + off, rc + off, (size_t)T * kvd, tol);
        check(what, o + off + (size_t)T * kvd, rc + off + (size_t)T * kvd, nc - off - (size_t)T * kvd, tol_exact());
        free(o);
    }
    be->free(be, &xt), be->free(be, &qt), be->free(be, &kt), be->free(be, &vt);
    for (int i = 0; i < 3; i++) be->free(be, &w[i]);
    free(x), free(qi), free(ci), free(rq), free(rc), free(wq), free(wk), free(wv);
}

static void matmul_groups(backend_t *be, const char *tag) {
    static const int Ts[] = {1, 2, 3, 5, 8, 16, 17, 33};
    static const int ds[] = {1, 7, 64, 288, 768};
    static const int ns[] = {1, 5, 32, 288, 1000};
    char name[96];
    for (int k = 0; k < 3; k++) {
        dtype_t wt = DTYPES[k];
        /* the second job mixes in another dtype: each job has its own */
        dtype_t t2 = wt == DTYPE_F32 ? DTYPE_BF16 : wt == DTYPE_BF16 ? DTYPE_F16 : DTYPE_F32;
        snprintf(name, sizeof name, "matmul %s (+%s job)%s", dtype_name(wt), dtype_name(t2), tag);
        group_begin(name);
        for (size_t a = 0; a < sizeof Ts / sizeof *Ts; a++)
            for (size_t b = 0; b < sizeof ds / sizeof *ds; b++)
                for (size_t c = 0; c < sizeof ns / sizeof *ns; c++)
                    for (int acc = 0; acc < 2; acc++) test_matmul(be, Ts[a], ns[c], ds[b], acc, wt, t2);
        group_end();
        snprintf(name, sizeof name, "matmul qkv->kv cache %s%s", dtype_name(wt), tag);
        group_begin(name);
        test_matmul_qkv(be, 1, 0, 288, 288, 96, wt), test_matmul_qkv(be, 1, 37, 288, 288, 96, wt);
        test_matmul_qkv(be, 8, 5, 64, 64, 16, wt), test_matmul_qkv(be, 17, 100, 288, 288, 288, wt);
        test_matmul_qkv(be, 33, 0, 768, 768, 256, wt);
        group_end();
    }
}

/* ---- swiglu ---- */

static void test_swiglu(backend_t *be, int T, int d, int hid, dtype_t wt) {
    float *x = xmalloc(sizeof(float) * T * d), *init = xmalloc(sizeof(float) * T * hid),
          *r = xmalloc(sizeof(float) * T * hid);
    void *w1 = weights(wt, (size_t)hid * d, 0.3f), *w3 = weights(wt, (size_t)hid * d, 0.3f);
    fill(x, (size_t)T * d, 1);
    fill_value(init, (size_t)T * hid, NAN);
    tensor_t xt = dev_f32(be, x, (int64_t)T * d), ot = dev_f32(be, init, (int64_t)T * hid);
    tensor_t t1 = dev_w(be, w1, wt, (int64_t)hid * d), t3 = dev_w(be, w3, wt, (int64_t)hid * d);
    be->swiglu(be, ot, xt, t1, t3, T, d, hid);
    float *o = read_back(be, ot, (int64_t)T * hid);
    swiglu_ref(r, x, w1, w3, wt, T, d, hid);
    char what[96];
    snprintf(what, sizeof what, "swiglu %s T=%d d=%d hid=%d", dtype_name(wt), T, d, hid);
    /* gate and up each carry the dot-product error; silu'(a) <= 1.1 and
     * |b| stays O(1) here, so twice one product's tolerance covers both */
    tol_t tol = tol_dot(wt, T, d, 0.3);
    tol.atol *= 2;
    check(what, o, r, (size_t)T * hid, tol);
    be->free(be, &xt), be->free(be, &ot), be->free(be, &t1), be->free(be, &t3);
    free(x), free(init), free(r), free(o), free(w1), free(w3);
}

static void swiglu_groups(backend_t *be, const char *tag) {
    static const int Ts[] = {1, 8, 17};
    static const int shapes[][2] = {{60, 97}, {33, 130}, {288, 768}, {768, 288}};
    char name[96];
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "swiglu %s%s", dtype_name(DTYPES[k]), tag);
        group_begin(name);
        for (size_t a = 0; a < sizeof Ts / sizeof *Ts; a++)
            for (size_t b = 0; b < sizeof shapes / sizeof *shapes; b++)
                test_swiglu(be, Ts[a], shapes[b][0], shapes[b][1], DTYPES[k]);
        group_end();
    }
}

/* ---- rmsnorm, embed ---- */

static void test_rmsnorm(backend_t *be, int T, int d, dtype_t wt) {
    size_t n = (size_t)T * d;
    float *x = xmalloc(sizeof(float) * n), *wf = xmalloc(sizeof(float) * d), *init = xmalloc(sizeof(float) * n),
          *r = xmalloc(sizeof(float) * n);
    void *w = weights(wt, d, 1);
    fill(x, n, 3);
    fill_value(init, n, NAN);
    dtype_to_f32(wf, w, wt, d); /* the reference takes f32 gains: the same values, widened */
    tensor_t xt = dev_f32(be, x, (int64_t)n), ot = dev_f32(be, init, (int64_t)n), wtt = dev_w(be, w, wt, d);
    be->rmsnorm(be, ot, xt, wtt, T, d, 1e-5f);
    rmsnorm_ref(r, x, wf, T, d, 1e-5f);
    char what[96];
    snprintf(what, sizeof what, "rmsnorm %s T=%d d=%d", dtype_name(wt), T, d);
    float *o = read_back(be, ot, (int64_t)n);
    check(what, o, r, n, tol_rmsnorm());
    free(o);
    be->rmsnorm(be, xt, xt, wtt, T, d, 1e-5f); /* in place (out == x) is allowed */
    snprintf(what, sizeof what, "rmsnorm in place %s T=%d d=%d", dtype_name(wt), T, d);
    o = read_back(be, xt, (int64_t)n);
    check(what, o, r, n, tol_rmsnorm());
    be->free(be, &xt), be->free(be, &ot), be->free(be, &wtt);
    free(x), free(wf), free(init), free(r), free(o), free(w);
}

/* Embedding rows are widened, not computed: exact equality. */
static void test_embed(backend_t *be, int V, int d, int T, dtype_t wt) {
    int *toks = xmalloc(sizeof(int) * T);
    for (int t = 0; t < T; t++) toks[t] = t == 0 ? 0 : t == 1 ? V - 1 : (int)((unsigned)(t * 7919 + 3) % (unsigned)V);
    size_t n = (size_t)T * d;
    float *init = xmalloc(sizeof(float) * n), *r = xmalloc(sizeof(float) * n);
    void *tab = weights(wt, (size_t)V * d, 1);
    fill_value(init, n, NAN);
    tensor_t ot = dev_f32(be, init, (int64_t)n), tt = dev_w(be, tab, wt, (int64_t)V * d);
    be->embed(be, ot, tt, toks, T, d);
    embed_ref(r, tab, wt, toks, T, d);
    float *o = read_back(be, ot, (int64_t)n);
    char what[96];
    snprintf(what, sizeof what, "embed %s V=%d d=%d T=%d", dtype_name(wt), V, d, T);
    check(what, o, r, n, tol_exact());
    be->free(be, &ot), be->free(be, &tt);
    free(toks), free(init), free(r), free(o), free(tab);
}

/* ---- rope ---- */

static void test_rope(backend_t *be, int T, int nh, int hd, int pos0, rope_style_t st) {
    int stride = nh * hd + 5; /* rows with padding: rope must honour row_stride and offset */
    size_t n = (size_t)T * stride + 3 + 4;
    float *x = xmalloc(sizeof(float) * n), *r = xmalloc(sizeof(float) * n);
    fill(x, n, 1);
    for (int t = 0; t < T; t++) fill_value(x + 3 + (size_t)t * stride + (size_t)nh * hd, 5, SENTINEL);
    memcpy(r, x, sizeof(float) * n);
    int P = pos0 + T; /* the angle table the model builds: (positions, hd/2, 2) cos, sin */
    float *cs = xmalloc(sizeof(float) * P * hd);
    for (int p = 0; p < P; p++)
        for (int i = 0; i < hd / 2; i++) {
            double ang = p * pow(10000.0, -2.0 * i / hd);
            cs[(size_t)p * hd + 2 * i] = (float)cos(ang), cs[(size_t)p * hd + 2 * i + 1] = (float)sin(ang);
        }
    tensor_t xt = dev_f32(be, x, (int64_t)n), ct = dev_f32(be, cs, (int64_t)P * hd);
    be->rope(be, xt, 3, stride, T, nh, hd, pos0, ct, st);
    rope_ref(r + 3, stride, T, nh, hd, pos0, 10000.0f, st);
    float *o = read_back(be, xt, (int64_t)n);
    char what[96];
    snprintf(what, sizeof what, "rope %s T=%d nh=%d hd=%d pos0=%d", st == ROPE_INTERLEAVED ? "interleaved" : "halves",
             T, nh, hd, pos0);
    check(what, o, r, n, tol_rope());
    be->free(be, &xt), be->free(be, &ct);
    free(x), free(r), free(cs), free(o);
}

/* ---- attention ---- */

static void test_attention(backend_t *be, int T, int pos0, int nh, int nkv, int hd) {
    int S = pos0 + T, cap = S + 5, kvd = nkv * hd; /* cache rows >= S are NaN: never to be read */
    size_t nq = (size_t)T * nh * hd;
    float *q = xmalloc(sizeof(float) * nq), *k = xmalloc(sizeof(float) * cap * kvd),
          *v = xmalloc(sizeof(float) * cap * kvd), *init = xmalloc(sizeof(float) * nq), *r = xmalloc(sizeof(float) * nq);
    fill(q, nq, 2), fill(k, (size_t)S * kvd, 2), fill(v, (size_t)S * kvd, 1);
    fill_value(k + (size_t)S * kvd, (size_t)5 * kvd, NAN), fill_value(v + (size_t)S * kvd, (size_t)5 * kvd, NAN);
    fill_value(init, nq, NAN);
    tensor_t qt = dev_f32(be, q, (int64_t)nq), kt = dev_f32(be, k, (int64_t)cap * kvd),
             vt = dev_f32(be, v, (int64_t)cap * kvd), ot = dev_f32(be, init, (int64_t)nq);
    be->attention(be, ot, qt, kt, vt, T, pos0, nh, nkv, hd);
    attention_ref(r, q, k, v, T, pos0, nh, nkv, hd);
    float *o = read_back(be, ot, (int64_t)nq);
    char what[96];
    snprintf(what, sizeof what, "attention T=%d pos0=%d nh=%d nkv=%d hd=%d", T, pos0, nh, nkv, hd);
    check(what, o, r, nq, tol_attention());
    be->free(be, &qt), be->free(be, &kt), be->free(be, &vt), be->free(be, &ot);
    free(q), free(k), free(v), free(init), free(r), free(o);
}

/* ---- row_stats ---- */

#define RS_MAX_T 24
static void test_row_stats(backend_t *be, int T, int V, float scale) {
    int64_t off = 5; /* rows start at an odd element offset */
    size_t n = (size_t)T * V + (size_t)off + 2;
    float *x = xmalloc(sizeof(float) * n), mp[RS_MAX_T], nl[RS_MAX_T], rmp[RS_MAX_T], rnl[RS_MAX_T];
    int next[RS_MAX_T], am[RS_MAX_T], ram[RS_MAX_T];
    fill_value(x, n, 1e4f); /* outside the rows: huge, so reading it shows up */
    float *rows = x + off;
    fill(rows, (size_t)T * V, scale);
    for (int t = 0; t < T; t++) next[t] = t == 1 ? -1 : (t * 7919) % V;
    rows[V / 2] = rows[V / 3] = 5 * scale; /* a tie in row 0: the lowest id wins */
    if (T > 2) rows[2 * (size_t)V + V - 1] = rows[2 * (size_t)V] = 6 * scale; /* a tie at both ends of row 2 */
    for (int t = 0; t < T; t++) am[t] = -7, mp[t] = nl[t] = NAN; /* unwritten outputs stay wrong */
    tensor_t xt = dev_f32(be, x, (int64_t)n);
    be->row_stats(be, xt, off, T, V, next, am, mp, nl);
    row_stats_ref(rows, T, V, next, ram, rmp, rnl);
    char what[96];
    snprintf(what, sizeof what, "row_stats T=%d V=%d scale=%g", T, V, scale);
    int same = 1;
    for (int t = 0; t < T; t++) same &= am[t] == ram[t];
    check_bool(what, same && am[0] == V / 3 && (T <= 2 || am[2] == 0));
    check(what, mp, rmp, (size_t)T, tol_max_p(V));
    check(what, nl, rnl, (size_t)T, tol_nll(V));
    /* next NULL: nll is 0; NULL outputs are skipped */
    for (int t = 0; t < T; t++) am[t] = -7, nl[t] = NAN;
    be->row_stats(be, xt, off, T, V, NULL, am, NULL, nl);
    int ok = 1;
    for (int t = 0; t < T; t++) ok &= am[t] == ram[t] && nl[t] == 0;
    snprintf(what, sizeof what, "row_stats T=%d V=%d next=NULL max_p=NULL", T, V);
    check_bool(what, ok);
    be->free(be, &xt);
    free(x);
}

/* ---- random ---- */

/* backend be's random tensor read back as f32: f32 directly, half through
 * embed (which widens exactly) as a (n/d, d) table. Caller frees. */
static float *random_read(backend_t *be, dtype_t wt, int64_t n, int d, uint64_t seed) {
    tensor_t t = must(be->random(be, wt, n, seed, -0.5f, 1.5f), "a random tensor", n);
    float *o = xmalloc(sizeof(float) * (size_t)n);
    if (wt == DTYPE_F32) be->to_host(be, o, t, 0, n);
    else {
        int V = (int)(n / d);
        int *toks = xmalloc(sizeof(int) * V);
        for (int i = 0; i < V; i++) toks[i] = i;
        tensor_t ot = must(be->alloc(be, n), "an f32 tensor", n);
        be->embed(be, ot, t, toks, V, d);
        be->to_host(be, o, ot, 0, n);
        be->free(be, &ot);
        free(toks);
    }
    be->free(be, &t);
    return o;
}

static void test_random(backend_t *be, backend_t *cpu, dtype_t wt, int V, int d, uint64_t seed) {
    int64_t n = (int64_t)V * d;
    float *g = random_read(be, wt, n, d, seed), *c = random_read(cpu, wt, n, d, seed);
    float *want = xmalloc(sizeof(float) * (size_t)n), *wf = xmalloc(sizeof(float) * (size_t)n);
    uint16_t *h = xmalloc(sizeof(uint16_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) wf[i] = dummy_uniform(seed, (uint64_t)i, -0.5f, 1.5f);
    if (wt == DTYPE_F32) memcpy(want, wf, sizeof(float) * (size_t)n);
    else f32_to_dtype(h, wf, wt, (size_t)n), dtype_to_f32(want, h, wt, (size_t)n);
    char what[96];
    snprintf(what, sizeof what, "random %s n=%lld seed=%llu vs cpu backend", dtype_name(wt), (long long)n,
             (unsigned long long)seed);
    check_bool(what, !memcmp(g, c, sizeof(float) * (size_t)n)); /* bit for bit */
    snprintf(what, sizeof what, "random %s n=%lld seed=%llu vs kernels/dummy.h", dtype_name(wt), (long long)n,
             (unsigned long long)seed);
    check_bool(what, !memcmp(g, want, sizeof(float) * (size_t)n));
    free(g), free(c), free(want), free(wf), free(h);
}

static void usage(void) {
    fprintf(stderr, "usage: test_cuda_kernels [--device cuda:0|cpu]\n");
    exit(2);
}

/* ---- rmsnorm followed by a matmul or SwiGLU of its output ----
 * The CUDA backend may compute the norm inside the next op (and write the
 * norm's output from there). Checked against rmsnorm_ref then matmul_ref /
 * swiglu_ref, with the matmul's tolerance on the products and the norm's
 * on its output; the norm's output starts poisoned. Three jobs (Q, K, V
 * like) share the normalised input. */
static void test_norm_then(backend_t *be, int T, int d, int n, dtype_t wt, int swiglu) {
    size_t nx = (size_t)T * d;
    float *x = xmalloc(sizeof(float) * nx), *nw = xmalloc(sizeof(float) * d), *xb = xmalloc(sizeof(float) * nx);
    float *poison = xmalloc(sizeof(float) * (nx > (size_t)T * n * 3 ? nx : (size_t)T * n * 3));
    float *r = xmalloc(sizeof(float) * (size_t)T * n * 3);
    fill(x, nx, 2), fill(nw, (size_t)d, 1);
    for (int i = 0; i < d; i++) nw[i] += 1.5f; /* weights around 1.5 */
    fill_value(poison, nx > (size_t)T * n * 3 ? nx : (size_t)T * n * 3, NAN);
    void *w[3];
    for (int j = 0; j < 3; j++) w[j] = weights(wt, (size_t)n * d, 0.3f);
    tensor_t xt = dev_f32(be, x, (int64_t)nx), xbt = dev_f32(be, poison, (int64_t)nx), nwt = dev_f32(be, nw, d);
    tensor_t ot = dev_f32(be, poison, (int64_t)T * n * 3), wt_[3];
    for (int j = 0; j < 3; j++) wt_[j] = dev_w(be, w[j], wt, (int64_t)n * d);
    be->rmsnorm(be, xbt, xt, nwt, T, d, 1e-5f);
    rmsnorm_ref(xb, x, nw, T, d, 1e-5f);
    if (swiglu) {
        be->swiglu(be, ot, xbt, wt_[0], wt_[1], T, d, n);
        swiglu_ref(r, xb, w[0], w[1], wt, T, d, n);
    } else {
        matmul_job_t jobs[3];
        for (int j = 0; j < 3; j++) {
            jobs[j] = (matmul_job_t){wt_[j], ot, (int64_t)j * T * n, n};
            matmul_ref(r + (size_t)j * T * n, n, xb, d, w[j], wt, d, T, n, d, 0);
        }
        be->matmul(be, xbt, T, d, jobs, 3, 0);
    }
    size_t no = (size_t)T * n * (swiglu ? 1 : 3);
    float *o = read_back(be, ot, (int64_t)no), *ob = read_back(be, xbt, (int64_t)nx);
    char what[128];
    snprintf(what, sizeof what, "rmsnorm then %s %s T=%d d=%d n=%d", swiglu ? "swiglu" : "matmul x3", dtype_name(wt), T,
             d, n);
    /* the normalised inputs are O(1.5 * 1.7): the products' scale */
    tol_t tol = tol_dot(wt, T, d, 0.3 * 2.6);
    tol.atol *= 2, tol.rtol *= 2; /* the norm's own rounding rides on every term */
    check(what, o, r, no, tol);
    snprintf(what, sizeof what, "rmsnorm output before %s %s T=%d d=%d", swiglu ? "swiglu" : "matmul", dtype_name(wt), T, d);
    check(what, ob, xb, nx, tol_rmsnorm());
    be->free(be, &xt), be->free(be, &xbt), be->free(be, &nwt), be->free(be, &ot);
    for (int j = 0; j < 3; j++) be->free(be, &wt_[j]), free(w[j]);
    free(x), free(nw), free(xb), free(poison), free(r), free(o), free(ob);
}

static void norm_groups(backend_t *be, const char *tag) {
    static const int Ts[] = {1, 2, 3, 8}, shapes[][2] = {{64, 5}, {288, 768}, {768, 288}, {4096, 40}, {36, 17}};
    char name[96];
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "rmsnorm then matmul/swiglu %s%s", dtype_name(DTYPES[k]), tag);
        group_begin(name);
        for (size_t a = 0; a < sizeof Ts / sizeof *Ts; a++)
            for (size_t b = 0; b < sizeof shapes / sizeof *shapes; b++)
                for (int sw = 0; sw < 2; sw++) test_norm_then(be, Ts[a], shapes[b][0], shapes[b][1], DTYPES[k], sw);
        group_end();
    }
}

int main(int argc, char **argv) {
    const char *device = "cuda:0";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else usage();
    }
    char err[512];
    backend_t *be = backend_new(device, 0, err, sizeof err);
    if (!be) {
        printf("test_cuda_kernels: SKIP: cannot create device %s: %s\n", device, err);
        return 77;
    }
    backend_t *cpu = backend_new("cpu", 1, err, sizeof err);
    if (!cpu) {
        fprintf(stderr, "test_cuda_kernels: %s\n", err);
        return 1;
    }
    const char *gemm = getenv("BILD_CUDA_GEMM");
    all_cublas = be->device == DEVICE_CUDA && gemm && !strcmp(gemm, "cublas");
    printf("test_cuda_kernels: backend %s (%s)%s\n", be->name, be->isa ? be->isa : "?",
           all_cublas ? ", BILD_CUDA_GEMM=cublas" : "");

    matmul_groups(be, "");
    swiglu_groups(be, "");
    norm_groups(be, "");
#ifdef BILD_CUDA
    /* the other matmul path: every block through cuBLAS (prompt-sized blocks
     * already took it above; this covers the short ones on it too) */
    if (be->device == DEVICE_CUDA && !all_cublas) {
        backend_cuda_set_gemm(be, 2);
        all_cublas = 1;
        matmul_groups(be, " [cublas]");
        swiglu_groups(be, " [cublas]");
        norm_groups(be, " [cublas]");
        backend_cuda_set_gemm(be, 0);
        all_cublas = 0;
    }
#endif

    char name[96];
    for (int k = 0; k < 3; k++) {
        dtype_t wt = DTYPES[k];
        snprintf(name, sizeof name, "rmsnorm %s", dtype_name(wt));
        group_begin(name);
        test_rmsnorm(be, 1, 288, wt), test_rmsnorm(be, 7, 61, wt), test_rmsnorm(be, 17, 768, wt);
        test_rmsnorm(be, 33, 1, wt), test_rmsnorm(be, 2, 4096, wt);
        group_end();
        snprintf(name, sizeof name, "embed %s", dtype_name(wt));
        group_begin(name);
        test_embed(be, 11, 13, 5, wt), test_embed(be, 1000, 288, 17, wt), test_embed(be, 32000, 64, 3, wt);
        test_embed(be, 5, 1, 8, wt);
        group_end();
    }
    for (int st = 0; st < 2; st++) {
        group_begin(st == ROPE_INTERLEAVED ? "rope interleaved" : "rope halves");
        test_rope(be, 1, 6, 48, 0, st), test_rope(be, 9, 3, 10, 250, st), test_rope(be, 4, 2, 2, 7, st);
        test_rope(be, 17, 8, 64, 1000, st), test_rope(be, 8, 4, 128, 33, st), test_rope(be, 1, 32, 128, 4000, st);
        group_end();
    }
    group_begin("attention");
    {
        static const int Ts[] = {1, 8, 16}, hds[] = {64, 128}, pos0s[] = {0, 37, 1000};
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < 2; b++)
                for (size_t c = 0; c < 3; c++) test_attention(be, Ts[a], pos0s[c], 8, 2, hds[b]);
        test_attention(be, 1, 0, 6, 6, 48), test_attention(be, 5, 11, 6, 2, 10);
        test_attention(be, 3, 300, 4, 1, 12), test_attention(be, 17, 600, 8, 4, 8);
        test_attention(be, 33, 2, 4, 4, 64), test_attention(be, 1, 2047, 32, 8, 128);
    }
    group_end();
    group_begin("row_stats");
    test_row_stats(be, 5, 32000, 10), test_row_stats(be, 3, 517, 1), test_row_stats(be, 20, 7, 30);
    test_row_stats(be, 2, 1000, 200); /* terms down to exp(-400): underflow to 0 */
    test_row_stats(be, 24, 32001, 5), test_row_stats(be, 1, 1, 1), test_row_stats(be, 17, 128256, 3);
    group_end();
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "random %s", dtype_name(DTYPES[k]));
        group_begin(name);
        test_random(be, cpu, DTYPES[k], 777, 13, 42), test_random(be, cpu, DTYPES[k], 1000, 288, 0xB11DULL);
        test_random(be, cpu, DTYPES[k], 1, 1, 7);
        group_end();
    }

    backend_destroy(&cpu);
    backend_destroy(&be);
    printf("test_cuda_kernels: %d checks, %d failed\n", total_checks, total_failed);
    return total_failed ? 1 : 0;
}
