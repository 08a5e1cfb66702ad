/* test_kernels.c - every operator of the CPU backend against kernels/ref on
 * random data of odd shapes, for each instruction set this CPU supports and
 * for 1, 2 and 3 threads.
 *
 * Tolerance: |cpu - ref| <= atol + rtol*|ref| with rtol = 1e-5 and atol =
 * 2e-6 * sqrt(d) * scale: the CPU kernels accumulate in float in another
 * order than the double references, so the error of a length-d dot product
 * of O(1) terms grows like sqrt(d) float roundings (about 6e-8 each).
 *
 * Half weights (bf16, f16): the test rounds random f32 weights to the half
 * format once, and both the backend and the reference read those same half
 * values (the reference widens them exactly, kernels/half.h). The widened
 * weights are exact f32 numbers, so the comparison is again f32 against
 * double accumulation of the same products, with the same tolerance; a
 * kernel that widened wrongly (a lost shift, a swapped half) is off by O(1).
 * Half buffers are placed at an odd 2-byte offset from any 4-byte boundary
 * to check that half weights need only their natural alignment. The
 * conversions themselves are checked against the hardware's (F16C, and
 * AVX-512 BF16 where present) on every f16 value and on random floats. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <immintrin.h>

#include "kernels/cpu/cpu.h"
#include "kernels/half.h"
#include "kernels/ref/ref.h"
#include "tests/test.h"

static uint64_t rng = 88172645463325252ULL;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) / 8388608.0 - 1.0);
}
static void fill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
}

static tensor_t T_(backend_t *be, float *p, int64_t n) { return be->wrap_host(be, p, DTYPE_F32, n); }

static const char *dtype_name(dtype_t t) { return t == DTYPE_F32 ? "f32" : t == DTYPE_BF16 ? "bf16" : "f16"; }

/* A weight array of n random values in [-scale, scale) stored as dtype t:
 * *base is the allocation to free; the returned pointer is 2 bytes past a
 * 4-byte boundary for half types (natural alignment only). */
static void *weights(dtype_t t, size_t n, float scale, void **base) {
    float *f = malloc(sizeof(float) * (n ? n : 1));
    fill(f, n, scale);
    if (t == DTYPE_F32) return *base = f;
    uint16_t *h = malloc(sizeof(uint16_t) * (n + 1));
    f32_to_dtype(h + 1, f, t, n);
    free(f);
    *base = h;
    return h + 1;
}

/* 1: the matmul and swiglu tests give the backend its packed weights
 * (be->pack: the layout the model's matrices are in), 0: row-major ones */
static int packed;

/* An (n, d) weight matrix as the backend reads it: wrapped, or packed. */
static tensor_t wmat(backend_t *be, void *w, dtype_t t, int n, int d) {
    tensor_t r = be->wrap_host(be, w, t, (int64_t)n * d);
    if (packed) EXPECT(backend_pack(be, &r, n, d, 0) == 1 && r.packed);
    return r;
}
static void wfree(backend_t *be, tensor_t *t) {
    if (t->packed) be->free(be, t);
}

static int compare(const char *what, const float *got, const float *ref, size_t n, double atol,
                   double rtol) {
    double worst = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= atol + rtol * fabs(ref[i]))) {
            if (!bad) fprintf(stderr, "  %s[%zu]: %.9g vs ref %.9g\n", what, i, got[i], ref[i]);
            bad++;
        }
        if (e > worst || e != e) worst = e;
    }
    if (bad) fprintf(stderr, "  %s: %zu of %zu outside tolerance (max err %.3g)\n", what, bad, n, worst);
    EXPECT(bad == 0);
    return bad == 0;
}

/* Two jobs sharing x, with weights of dtypes t1 and t2 (each job's W has its own). */
static void test_matmul(backend_t *be, int T, int n, int d, int acc, dtype_t t1, dtype_t t2) {
    float *x = malloc(sizeof(float) * T * d);
    void *wb, *w2b, *w = weights(t1, (size_t)n * d, 1, &wb), *w2 = weights(t2, (size_t)7 * d, 1, &w2b);
    float *o = malloc(sizeof(float) * T * (n + 7)), *r = malloc(sizeof(float) * T * (n + 7));
    fill(x, (size_t)T * d, 1);
    fill(o, (size_t)T * (n + 7), 1);
    memcpy(r, o, sizeof(float) * T * (n + 7));
    /* the second job writes after the first's block */
    matmul_job_t jobs[2] = {{wmat(be, w, t1, n, d), T_(be, o, (int64_t)T * (n + 7)), 0, n},
                            {wmat(be, w2, t2, 7, d), T_(be, o, (int64_t)T * (n + 7)), (int64_t)T * n, 7}};
    be->matmul(be, T_(be, x, (int64_t)T * d), T, d, jobs, 2, acc);
    wfree(be, &jobs[0].w), wfree(be, &jobs[1].w);
    matmul_ref(r, n, x, d, w, t1, d, T, n, d, acc);
    matmul_ref(r + (size_t)T * n, 7, x, d, w2, t2, d, T, 7, d, acc);
    char what[128];
    snprintf(what, sizeof what, "matmul %s%s %s+%s T=%d n=%d d=%d acc=%d", be->isa, packed ? " packed" : "",
             dtype_name(t1), dtype_name(t2), T, n, d, acc);
    compare(what, o, r, (size_t)T * (n + 7), 2e-6 * sqrt(d) * 2, 1e-5);
    free(x), free(wb), free(w2b), free(o), free(r);
}

/* A token's result must not depend on the block it is computed in (BiLD
 * verifies a block of drafts against what single steps would give): T
 * tokens at once equal, bit for bit, each token alone. */
static void test_matmul_block_invariance(backend_t *be, int T, int n, int d, dtype_t wt) {
    float *x = malloc(sizeof(float) * T * d), *o = malloc(sizeof(float) * T * n), *o1 = malloc(sizeof(float) * n);
    void *wb, *w = weights(wt, (size_t)n * d, 1, &wb);
    fill(x, (size_t)T * d, 1);
    tensor_t wt_ = wmat(be, w, wt, n, d);
    matmul_job_t job = {wt_, T_(be, o, (int64_t)T * n), 0, n};
    be->matmul(be, T_(be, x, (int64_t)T * d), T, d, &job, 1, 0);
    size_t diff = 0;
    for (int t = 0; t < T; t++) {
        matmul_job_t j1 = {wt_, T_(be, o1, n), 0, n};
        be->matmul(be, T_(be, x + (size_t)t * d, d), 1, d, &j1, 1, 0);
        diff += memcmp(o1, o + (size_t)t * n, sizeof(float) * n) != 0;
    }
    if (diff) fprintf(stderr, "  matmul %s%s %s T=%d n=%d d=%d: block rows differ from single steps\n", be->isa,
                      packed ? " packed" : "", dtype_name(wt), T, n, d);
    EXPECT(diff == 0);
    wfree(be, &wt_);
    free(x), free(o), free(o1), free(wb);
}

static void test_swiglu(backend_t *be, int T, int d, int hid, dtype_t wt) {
    float *x = malloc(sizeof(float) * T * d), *o = malloc(sizeof(float) * T * hid),
          *r = malloc(sizeof(float) * T * hid);
    void *b1, *b3, *w1 = weights(wt, (size_t)hid * d, 0.3f, &b1), *w3 = weights(wt, (size_t)hid * d, 0.3f, &b3);
    fill(x, (size_t)T * d, 1);
    tensor_t t1 = wmat(be, w1, wt, hid, d), t3 = wmat(be, w3, wt, hid, d);
    be->swiglu(be, T_(be, o, (int64_t)T * hid), T_(be, x, (int64_t)T * d), t1, t3, T, d, hid);
    wfree(be, &t1), wfree(be, &t3);
    swiglu_ref(r, x, w1, w3, wt, T, d, hid);
    char what[96];
    snprintf(what, sizeof what, "swiglu %s%s %s T=%d d=%d hid=%d", be->isa, packed ? " packed" : "", dtype_name(wt),
             T, d, hid);
    compare(what, o, r, (size_t)T * hid, 2e-6 * sqrt(d), 1e-5);
    free(x), free(b1), free(b3), free(o), free(r);
}

static void test_rmsnorm(backend_t *be, int T, int d, dtype_t wt) {
    float *x = malloc(sizeof(float) * T * d), *wf = malloc(sizeof(float) * d), *o = malloc(sizeof(float) * T * d),
          *r = malloc(sizeof(float) * T * d);
    void *wb, *w = weights(wt, d, 1, &wb);
    fill(x, (size_t)T * d, 3);
    dtype_to_f32(wf, w, wt, d); /* the reference takes f32 gains: the same values, widened */
    tensor_t wt_ = be->wrap_host(be, w, wt, d);
    be->rmsnorm(be, T_(be, o, (int64_t)T * d), T_(be, x, (int64_t)T * d), wt_, T, d, 1e-5f);
    rmsnorm_ref(r, x, wf, T, d, 1e-5f);
    compare(wt == DTYPE_F32 ? "rmsnorm" : "rmsnorm half gains", o, r, (size_t)T * d, 1e-6, 1e-5);
    /* in place (out == x) is allowed */
    be->rmsnorm(be, T_(be, x, (int64_t)T * d), T_(be, x, (int64_t)T * d), wt_, T, d, 1e-5f);
    compare("rmsnorm in place", x, r, (size_t)T * d, 1e-6, 1e-5);
    free(x), free(wf), free(wb), free(o), free(r);
}

static void test_rope(backend_t *be, int T, int nh, int hd, int pos0, rope_style_t st) {
    int stride = nh * hd + 5; /* rows with padding: rope must honour row_stride and offset */
    size_t n = (size_t)T * stride + 3;
    float *x = malloc(sizeof(float) * n), *r = malloc(sizeof(float) * n);
    fill(x, n, 1);
    memcpy(r, x, sizeof(float) * n);
    /* the angle table the model builds: (positions, hd/2, 2) cos, sin */
    int P = pos0 + T;
    float *cs = malloc(sizeof(float) * P * hd);
    for (int p = 0; p < P; p++)
        for (int i = 0; i < hd / 2; i++) {
            double ang = p * pow(10000.0, -2.0 * i / hd);
            cs[p * hd + 2 * i] = (float)cos(ang), cs[p * hd + 2 * i + 1] = (float)sin(ang);
        }
    be->rope(be, T_(be, x, (int64_t)n), 3, stride, T, nh, hd, pos0, T_(be, cs, (int64_t)P * hd), st);
    free(cs);
    rope_ref(r + 3, stride, T, nh, hd, pos0, 10000.0f, st);
    /* angles reach pos*1 rad; float cos/sin of a double angle are exact to ~1 ulp */
    compare(st == ROPE_INTERLEAVED ? "rope interleaved" : "rope halves", x, r, n, 2e-6, 1e-5);
    free(x), free(r);
}

static void test_attention(backend_t *be, int T, int pos0, int nh, int nkv, int hd) {
    int S = pos0 + T, kvd = nkv * hd;
    float *q = malloc(sizeof(float) * T * nh * hd), *k = malloc(sizeof(float) * S * kvd),
          *v = malloc(sizeof(float) * S * kvd), *o = malloc(sizeof(float) * T * nh * hd),
          *r = malloc(sizeof(float) * T * nh * hd);
    fill(q, (size_t)T * nh * hd, 2), fill(k, (size_t)S * kvd, 2), fill(v, (size_t)S * kvd, 1);
    be->attention(be, T_(be, o, (int64_t)T * nh * hd), T_(be, q, (int64_t)T * nh * hd),
                  T_(be, k, (int64_t)S * kvd), T_(be, v, (int64_t)S * kvd), T, pos0, nh, nkv, hd);
    attention_ref(r, q, k, v, T, pos0, nh, nkv, hd);
    char what[96];
    snprintf(what, sizeof what, "attention %s T=%d pos0=%d nh=%d nkv=%d hd=%d", be->isa, T, pos0, nh, nkv, hd);
    compare(what, o, r, (size_t)T * nh * hd, 1e-5, 1e-5);
    free(q), free(k), free(v), free(o), free(r);
}

/* A block's attention equals, bit for bit, each of its tokens alone at its
 * position (the tokens of a block share keys and values, not arithmetic). */
static void test_attention_block_invariance(backend_t *be, int T, int pos0, int nh, int nkv, int hd) {
    int S = pos0 + T, kvd = nkv * hd, qd = nh * hd;
    float *q = malloc(sizeof(float) * T * qd), *k = malloc(sizeof(float) * S * kvd),
          *v = malloc(sizeof(float) * S * kvd), *o = malloc(sizeof(float) * T * qd), *o1 = malloc(sizeof(float) * qd);
    fill(q, (size_t)T * qd, 2), fill(k, (size_t)S * kvd, 2), fill(v, (size_t)S * kvd, 1);
    tensor_t kt = T_(be, k, (int64_t)S * kvd), vt = T_(be, v, (int64_t)S * kvd);
    be->attention(be, T_(be, o, (int64_t)T * qd), T_(be, q, (int64_t)T * qd), kt, vt, T, pos0, nh, nkv, hd);
    int diff = 0;
    for (int t = 0; t < T; t++) {
        be->attention(be, T_(be, o1, qd), T_(be, q + (size_t)t * qd, qd), kt, vt, 1, pos0 + t, nh, nkv, hd);
        diff += memcmp(o1, o + (size_t)t * qd, sizeof(float) * qd) != 0;
    }
    if (diff) fprintf(stderr, "  attention %s T=%d pos0=%d: %d tokens differ from single steps\n", be->isa, T, pos0, diff);
    EXPECT(diff == 0);
    free(q), free(k), free(v), free(o), free(o1);
}

/* Embedding rows are widened, not computed: exact equality. */
static void test_embed(backend_t *be, dtype_t wt) {
    int V = 11, d = 13, toks[5] = {0, 10, 3, 3, 7};
    float *o = malloc(sizeof(float) * 5 * d), *r = malloc(sizeof(float) * 5 * d);
    void *tb, *tab = weights(wt, (size_t)V * d, 1, &tb);
    be->embed(be, T_(be, o, 5LL * d), be->wrap_host(be, tab, wt, (int64_t)V * d), toks, 5, d);
    embed_ref(r, tab, wt, toks, 5, d);
    EXPECT(r[0] == dtype_get(tab, wt, 0) && r[d] == dtype_get(tab, wt, (size_t)10 * d)); /* rows 0 and 10 */
    char what[64];
    snprintf(what, sizeof what, "embed %s", dtype_name(wt));
    compare(what, o, r, (size_t)5 * d, 0, 0);
    free(tb), free(o), free(r);
}

/* Round to nearest even by a slow, independent route: the two half
 * neighbours of x (by truncation and one ulp up) compared in double. */
static uint16_t round_ref(float x, dtype_t t) {
    uint16_t lo = t == DTYPE_BF16 ? (uint16_t)(half_f32_bits(x) >> 16) : 0;
    if (t == DTYPE_F16) { /* truncate towards zero: largest |h| <= |x| by search */
        uint16_t s = signbit(x) ? 0x8000 : 0, a = 0, b = 0x7c00;
        while (a < b) { /* find the last magnitude whose value <= |x| */
            uint16_t mid = (uint16_t)((a + b + 1) / 2);
            if (f16_to_f32(mid) <= fabsf(x)) a = mid;
            else b = (uint16_t)(mid - 1);
        }
        lo = (uint16_t)(s | a);
    }
    uint16_t hi = (uint16_t)(lo + 1);
    double v = x, dl = fabs(v - dtype_get(&lo, t, 0)), dh = fabs(dtype_get(&hi, t, 0) - v);
    if (t == DTYPE_F16 && (lo & 0x7fff) == 0x7bff && v != dtype_get(&lo, t, 0)) /* above 65504 */
        dh = fabs(65536.0 - fabs(v)); /* the next step would be 65536: inf past the midpoint 65520 */
    return dl < dh ? lo : dh < dl ? hi : (lo & 1) ? hi : lo;
}

__attribute__((target("f16c"))) static uint16_t hw_f16(float x) { return (uint16_t)_cvtss_sh(x, 0); }
__attribute__((target("f16c"))) static float hw_f16_wide(uint16_t h) { return _cvtsh_ss(h); }
/* vcvtneps2bf16 (round to nearest even; it treats subnormal inputs as 0) */
__attribute__((target("avx512bf16,avx512f,avx2"))) static uint16_t hw_bf16(float x) {
    return (uint16_t)_mm256_extract_epi16((__m256i)_mm512_cvtneps_pbh(_mm512_set1_ps(x)), 0);
}

/* f32 <-> bf16/f16 conversions (kernels/half.h) on every f16 value and on
 * random and edge-case floats, against an independent rounding and (where
 * the CPU has F16C) the hardware. */
static void test_conversions(void) {
    int has_f16c = cpu_isa_supported("avx2"); /* our avx2 flavour requires F16C */
    __builtin_cpu_init();
    int has_bf16 = __builtin_cpu_supports("avx512bf16");
    if (!has_bf16) fprintf(stderr, "note: no AVX-512 BF16: bf16 rounding checked against the slow reference only\n");
    size_t bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        if (f != f) bad += (h & 0x7c00) != 0x7c00 || !(h & 0x3ff); /* NaN only from NaN */
        else {
            bad += f32_to_f16(f) != h; /* widening is exact, so narrowing returns h */
            if (has_f16c) bad += hw_f16_wide((uint16_t)h) != f;
        }
        float b = bf16_to_f32((uint16_t)h);
        if (b == b) bad += f32_to_bf16(b) != h;
    }
    EXPECT_EQ_INT(bad, 0);
    float edge[] = {0.0f, -0.0f, 1.0f, 65504.0f, 65519.99f, 65520.0f, 1e9f, 6.1035156e-05f, 6.0975552e-05f,
                    2.9802322e-08f, 2.98023259e-08f, 5.96e-08f, 1e-30f, 3.3895314e38f, 3.4028235e38f};
    size_t bad16 = 0, badb = 0, badhw = 0, badhwb = 0;
    for (int i = 0; i < 200000 + (int)(sizeof edge / sizeof *edge); i++) {
        float x;
        if (i < (int)(sizeof edge / sizeof *edge)) x = edge[i];
        else { /* random bit patterns in the normal range, and in f16's range */
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            uint32_t u = (uint32_t)(rng >> 32);
            if (i & 1) u = (u & 0x80000000u) | (0x33000000u + (u & 0x7fffffffu) % 0x14800000u); /* ~2^-25..2^16 */
            x = half_bits_f32(u);
            if (x != x || isinf(x)) continue;
        }
        for (int s = 0; s < 2; s++, x = -x) {
            uint16_t h = f32_to_f16(x), hb = f32_to_bf16(x);
            if (fabsf(x) < 65520.0f) bad16 += h != round_ref(x, DTYPE_F16);
            else bad16 += (h & 0x7fff) != 0x7c00;
            if (fabsf(x) <= 3.3895314e38f) badb += hb != round_ref(x, DTYPE_BF16);
            if (has_f16c) badhw += h != hw_f16(x);
            if (has_bf16 && (x == 0 || fabsf(x) >= 1.17549435e-38f)) badhwb += hb != hw_bf16(x);
        }
    }
    EXPECT_EQ_INT(bad16, 0);
    EXPECT_EQ_INT(badb, 0);
    EXPECT_EQ_INT(badhw, 0);
    EXPECT_EQ_INT(badhwb, 0);
    EXPECT(f32_to_bf16(half_bits_f32(0x7fc00001u)) != 0x7f80); /* NaN stays NaN */
    EXPECT((f32_to_bf16(half_bits_f32(0x7f800001u)) & 0x7fff) > 0x7f80);
    EXPECT((f32_to_f16(half_bits_f32(0x7f800001u)) & 0x7fff) > 0x7c00);
}

static void test_row_stats(backend_t *be, int T, int V, float scale) {
    float *x = malloc(sizeof(float) * T * V), mp[20], nl[20], rmp[20], rnl[20];
    int next[20], am[20], ram[20];
    fill(x, (size_t)T * V, scale);
    for (int t = 0; t < T; t++) next[t] = t == 1 ? -1 : (t * 7919) % V;
    x[V / 2] = x[V / 3] = 5 * scale; /* a tie in row 0: the lowest id wins */
    be->row_stats(be, T_(be, x, (int64_t)T * V), 0, T, V, next, am, mp, nl);
    row_stats_ref(x, T, V, next, ram, rmp, rnl);
    char what[96];
    snprintf(what, sizeof what, "row_stats %s T=%d V=%d scale=%g", be->isa, T, V, scale);
    for (int t = 0; t < T; t++) EXPECT_EQ_INT(am[t], ram[t]);
    EXPECT_EQ_INT(am[0], V / 3);
    /* exp terms are exact to ~1e-7 relative, so the sums, max_p and
     * log(sum) are too: 1e-5 relative/absolute leaves a wide margin */
    compare(what, mp, rmp, T, 1e-6, 1e-5);
    compare(what, nl, rnl, T, 1e-5, 1e-5);
    free(x);
}

/* screen_scan against the definition (ops.h), one row at a time in plain
 * float: every value is a max of the same rounded numbers, so equal bit for
 * bit; st[2] only says whether some value is not finite */
static void test_screen_scan(backend_t *be, int T, int V, int poison) {
    const int nc = (V + SCAN_CHUNK - 1) / SCAN_CHUNK;
    float *a = malloc(sizeof(float) * T * V), *n = malloc(sizeof(float) * V), *n2 = malloc(sizeof(float) * V);
    float s[4], s2[4], st[12], *hi = malloc(sizeof(float) * T * nc);
    fill(a, (size_t)T * V, 20), fill(n, V, 3), fill(n2, V, 50);
    for (int r = 0; r < V; r++) n[r] = fabsf(n[r]), n2[r] = fabsf(n2[r]);
    for (int t = 0; t < T; t++) s[t] = 0.01f * (t + 1), s2[t] = t % 2 ? 0.0f : 0.003f * (t + 1);
    if (poison) a[(size_t)(T - 1) * V + V - 1 - poison % V] = poison % 2 ? NAN : -INFINITY;
    be->screen_scan(be, a, T, V, n, s, n2, s2, st, hi);
    for (int t = 0; t < T; t++) {
        const float *r = a + (size_t)t * V;
        float lo = -INFINITY, am = 0;
        int bad = 0;
        for (int c = 0; c < nc; c++) {
            float h = -INFINITY;
            for (int i = c * SCAN_CHUNK; i < V && i < (c + 1) * SCAN_CHUNK; i++) {
                const float m1 = s[t] * n[i], m2 = s2[t] * n2[i], m = m1 + m2, l = r[i] - m, u = r[i] + m;
                bad |= !isfinite(r[i]);
                lo = l > lo ? l : lo, am = fabsf(r[i]) > am ? fabsf(r[i]) : am, h = u > h ? u : h;
            }
            if (!bad) EXPECT(memcmp(&h, &hi[(size_t)t * nc + c], sizeof h) == 0);
        }
        EXPECT_EQ_INT(bad, st[3 * t + 2] != 0);
        if (!bad) EXPECT(memcmp(&lo, &st[3 * t], sizeof lo) == 0 && memcmp(&am, &st[3 * t + 1], sizeof am) == 0);
    }
    free(a), free(n), free(n2), free(hi);
}

/* i8_matmul against its definition (ops.h): out = fl(scale * c), c the chain
 * over k of q x in order, by fused multiply-adds (multiply then add for
 * scalar): equal bit for bit; partial last panels, tile tails, T up to 9 */
static void test_i8_matmul(backend_t *be, int n, int d, int T) {
    int8_t *q = malloc((size_t)n * d);
    float *sc = malloc(sizeof(float) * n), *x = malloc(sizeof(float) * T * d);
    float *out = malloc(sizeof(float) * T * n), *ref = malloc(sizeof(float) * T * n);
    for (int i = 0; i < n * d; i++) q[i] = (int8_t)(int)(frand() * 127);
    q[0] = 127, q[n * d - 1] = -127;
    fill(sc, n, 0.01f), fill(x, (size_t)T * d, 3);
    for (int r = 0; r < n; r++) sc[r] = fabsf(sc[r]);
    void *qp = be->i8_pack(be, q, sc, n, d);
    EXPECT(qp != NULL);
    if (!qp) return;
    be->i8_matmul(be, qp, n, d, x, T, out);
    const int fma = strcmp(be->isa, "scalar") != 0;
    for (int t = 0; t < T; t++)
        for (int r = 0; r < n; r++) {
            float a = 0;
            for (int k = 0; k < d; k++) {
                const float w = q[(size_t)r * d + k], v = x[(size_t)t * d + k];
                if (fma) a = fmaf(w, v, a);
                else {
                    volatile float p = w * v;
                    a = a + p;
                }
            }
            ref[(size_t)t * n + r] = sc[r] * a;
        }
    int bad = 0;
    for (int i = 0; i < T * n; i++) bad += memcmp(&out[i], &ref[i], sizeof(float)) != 0;
    if (bad) fprintf(stderr, "i8_matmul %s n=%d d=%d T=%d: %d of %d outputs differ\n", be->isa, n, d, T, bad, T * n);
    EXPECT_EQ_INT(bad, 0);
    free(qp), free(q), free(sc), free(x), free(out), free(ref);
}

/* i8q_matmul against its definition (ops.h): exact integer sums, then
 * fl(fl(scale * xs) * D), bit for bit; u at its extremes 1 and 2 half - 1
 * too (half: 128 with VNNI, else 64) */
static void test_i8q_matmul(backend_t *be, int n, int d, int T) {
    const int ldu = (d + 3) / 4 * 4, half = be->i8q_half;
    int8_t *q = malloc((size_t)n * d);
    uint8_t *u = malloc((size_t)T * ldu);
    float *sc = malloc(sizeof(float) * n), xs[12], *out = malloc(sizeof(float) * T * n), *ref = malloc(sizeof(float) * T * n);
    for (int i = 0; i < n * d; i++) q[i] = (int8_t)(int)(frand() * 127);
    q[0] = 127, q[n * d - 1] = -127;
    for (int t = 0; t < T; t++)
        for (int k = 0; k < ldu; k++)
            u[(size_t)t * ldu + k] = k >= d ? (uint8_t)half : (uint8_t)(half + (int)(frand() * (half - 1)));
    u[0] = (uint8_t)(2 * half - 1), u[(size_t)(T - 1) * ldu + d - 1] = 1;
    fill(sc, n, 0.01f), fill(xs, T, 0.5f);
    for (int r = 0; r < n; r++) sc[r] = fabsf(sc[r]);
    void *qp = be->i8q_pack(be, q, sc, n, d);
    EXPECT(qp != NULL);
    if (!qp) return;
    be->i8q_matmul(be, qp, n, d, u, xs, T, out);
    for (int t = 0; t < T; t++)
        for (int r = 0; r < n; r++) {
            int32_t D = 0;
            for (int k = 0; k < d; k++) D += ((int32_t)u[(size_t)t * ldu + k] - half) * q[(size_t)r * d + k];
            ref[(size_t)t * n + r] = (sc[r] * xs[t]) * (float)D;
        }
    int bad = 0;
    for (int i = 0; i < T * n; i++) bad += memcmp(&out[i], &ref[i], sizeof(float)) != 0;
    if (bad) fprintf(stderr, "i8q_matmul %s n=%d d=%d T=%d: %d of %d outputs differ\n", be->isa, n, d, T, bad, T * n);
    EXPECT_EQ_INT(bad, 0);
    free(qp), free(q), free(u), free(sc), free(out), free(ref);
}

int main(void) {
    const char *isas[] = {"scalar", "avx2", "avx512"};
    int tested = 0;
    test_conversions();
    for (int i = 0; i < 3; i++) {
        if (!cpu_isa_supported(isas[i])) {
            fprintf(stderr, "note: this CPU lacks %s; its kernels are not tested here\n", isas[i]);
            continue;
        }
        for (int nt = 1; nt <= 3; nt++) {
            backend_t *be = backend_cpu_new_isa(nt, isas[i]);
            EXPECT(be != NULL);
            if (!be) continue;
            tested++;
            int Ts[] = {1, 2, 3, 4, 5, 6, 8, 12, 17};
            const dtype_t wts[4][2] = {{DTYPE_F32, DTYPE_F32}, {DTYPE_BF16, DTYPE_F32}, {DTYPE_F16, DTYPE_BF16},
                                       {DTYPE_BF16, DTYPE_BF16}};
            int shapes[][2] = {{1, 1}, {3, 5}, {4, 16}, {7, 17}, {33, 31}, {64, 288}, {103, 60}, {130, 47}};
            for (size_t a = 0; a < sizeof Ts / sizeof *Ts; a++)
                for (size_t b = 0; b < sizeof shapes / sizeof *shapes; b++)
                    for (int acc = 0; acc < 2; acc++)
                        for (int dt = 0; dt < 4; dt++) /* each job's weights in its own dtype */
                            test_matmul(be, Ts[a], shapes[b][0], shapes[b][1], acc, wts[dt][0], wts[dt][1]);
            test_matmul(be, 1, 288, 768, 1, DTYPE_BF16, DTYPE_F16); /* decode shapes: prefetch path */
            test_matmul(be, 5, 768, 288, 0, DTYPE_F16, DTYPE_BF16);
            for (packed = 0; packed < 2; packed++)
            for (int dt = 0; dt < 3; dt++) {
                dtype_t wt = (dtype_t[]){DTYPE_F32, DTYPE_BF16, DTYPE_F16}[dt];
                test_matmul_block_invariance(be, 9, 37, 77, wt), test_matmul_block_invariance(be, 8, 64, 288, wt);
                /* AVX-512 (f32, f16): 6, 12: 4 x 6 tiles; 11: 4 x 6 with 5 tokens; 16: 4 x 6 twice and
                 * 4 x 4; 8: 4 x 4 twice; 7: 4 x 6 and one token; 9, 10: 4 x 6 then 4 x 4 with 3 or 4 tokens.
                 * bf16: 4 x 4 tiles; T d > 16384: bf16's split x on the heap; 3, 7, 10: a last group of 2
                 * or 3 tokens in a 4 x 4 tile with its last token repeated. AVX2: 4 x 3, 4 x 2, 4 x 1 */
                test_matmul_block_invariance(be, 12, 21, 2100, wt), test_matmul_block_invariance(be, 16, 40, 96, wt);
                test_matmul_block_invariance(be, 3, 13, 50, wt), test_matmul_block_invariance(be, 7, 64, 288, wt);
                test_matmul_block_invariance(be, 10, 30, 100, wt), test_matmul_block_invariance(be, 6, 44, 288, wt);
                test_matmul_block_invariance(be, 11, 29, 770, wt);
                test_swiglu(be, 1, 60, 97, wt), test_swiglu(be, 5, 33, 130, wt), test_swiglu(be, 16, 288, 768, wt);
                if (packed) continue;
                test_rmsnorm(be, 1, 288, wt), test_rmsnorm(be, 7, 61, wt);
                test_embed(be, wt);
            }
            /* packed weights: every tile shape (AVX-512: 4 or 3 panels x 1-8 tokens, then 2 and 1
             * panel; AVX2: 4, 2 or 1 panel x up to 6 tokens, 7 and 8 as 4 + 3/4), a last panel of 1-15
             * rows, odd d (bf16's zero pad), several token groups (T > 8) */
            packed = 1;
            int pT[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 29};
            int pshapes[][2] = {{1, 1}, {15, 3}, {16, 16}, {17, 33}, {48, 7}, {100, 65}, {200, 288}, {401, 19}};
            for (size_t a = 0; a < sizeof pT / sizeof *pT; a++)
                for (size_t b = 0; b < sizeof pshapes / sizeof *pshapes; b++)
                    for (int dt = 0; dt < 4; dt++) {
                        test_matmul(be, pT[a], pshapes[b][0], pshapes[b][1], (int)(a + b) % 2, wts[dt][0], wts[dt][1]);
                        test_matmul_block_invariance(be, pT[a], pshapes[b][0], pshapes[b][1], wts[dt][0]);
                    }
            packed = 0;
            for (int T = 2; T <= 17; T += 5) /* 2, 7, 12 (two groups), 17; chunks of 256 positions crossed */
                test_attention_block_invariance(be, T, 3, 6, 2, 16), test_attention_block_invariance(be, T, 250, 4, 4, 12);
            for (int st = 0; st < 2; st++) {
                test_rope(be, 1, 6, 48, 0, st), test_rope(be, 9, 3, 10, 250, st), test_rope(be, 4, 2, 2, 7, st);
            }
            test_attention(be, 1, 0, 6, 6, 48), test_attention(be, 5, 11, 6, 2, 10);
            test_attention(be, 3, 300, 4, 1, 12); /* crosses a 256-position chunk */
            test_attention(be, 17, 600, 8, 4, 8);
            /* head sizes past one register block of the value sums (64 floats on AVX2, 128 on AVX-512) */
            test_attention(be, 4, 40, 2, 1, 136), test_attention(be, 2, 9, 2, 2, 200);
            test_attention_block_invariance(be, 8, 20, 2, 1, 136);
            test_row_stats(be, 5, 32000, 10), test_row_stats(be, 3, 517, 1), test_row_stats(be, 20, 7, 30);
            test_row_stats(be, 2, 1000, 200); /* terms down to exp(-400): underflow to 0 */
            for (int T = 1; T <= 9; T++) /* 4-panel and 1-panel tiles (AVX2: 2 and 1), 1-6 token groups */
                test_i8_matmul(be, 16 * 9 + 5, 37, T), test_i8_matmul(be, 3, 8, T), test_i8_matmul(be, 200, 288, T),
                test_i8q_matmul(be, 16 * 9 + 5, 37, T), test_i8q_matmul(be, 3, 8, T), test_i8q_matmul(be, 200, 288, T);
            test_i8q_matmul(be, 70, 64, 12); /* two 6-token groups; d a multiple of 4 */
            if (be->i8q_half == 128) { /* the same CPU without VNNI: vpmaddubsw, x below 64 */
                setenv("BILD_NO_VNNI", "1", 1);
                backend_t *nv = backend_cpu_new_isa(nt, isas[i]);
                unsetenv("BILD_NO_VNNI");
                EXPECT(nv != NULL && nv->i8q_half == 64);
                for (int T = 1; nv && T <= 9; T += 4) test_i8q_matmul(nv, 16 * 9 + 5, 37, T), test_i8q_matmul(nv, 200, 288, T);
                backend_destroy(&nv);
            }
            /* whole chunks and a short last one; a NaN or an infinity in a vector body or in the tail */
            test_screen_scan(be, 1, 32000, 0), test_screen_scan(be, 4, 517, 0), test_screen_scan(be, 3, 7, 0);
            test_screen_scan(be, 2, 1000, 1), test_screen_scan(be, 2, 1000, 4), test_screen_scan(be, 1, 640, 300);
            backend_destroy(&be);
            EXPECT(be == NULL);
        }
    }
    EXPECT(tested >= 3);
    return TEST_DONE("test_kernels");
}
