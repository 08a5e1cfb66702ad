/* test_kernels.c - every operator of the CPU backend against kernels/ref on
 * random data of odd shapes, for each instruction set this CPU supports and
 * for 1, 2 and 3 threads.
 *
 * Tolerance: |cpu - ref| <= atol + rtol*|ref| with rtol = 1e-5 and atol =
 * 2e-6 * sqrt(d) * scale: the CPU kernels accumulate in float in another
 * order than the double references, so the error of a length-d dot product
 * of O(1) terms grows like sqrt(d) float roundings (about 6e-8 each). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
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

static void test_matmul(backend_t *be, int T, int n, int d, int acc) {
    float *x = malloc(sizeof(float) * T * d), *w = malloc(sizeof(float) * n * d);
    float *w2 = malloc(sizeof(float) * 7 * d);
    float *o = malloc(sizeof(float) * T * (n + 7)), *r = malloc(sizeof(float) * T * (n + 7));
    fill(x, (size_t)T * d, 1), fill(w, (size_t)n * d, 1), fill(w2, (size_t)7 * d, 1);
    fill(o, (size_t)T * (n + 7), 1);
    memcpy(r, o, sizeof(float) * T * (n + 7));
    /* two jobs sharing x; the second writes after the first's block */
    matmul_job_t jobs[2] = {{T_(be, w, (int64_t)n * d), T_(be, o, (int64_t)T * (n + 7)), 0, n},
                            {T_(be, w2, 7LL * d), T_(be, o, (int64_t)T * (n + 7)), (int64_t)T * n, 7}};
    be->matmul(be, T_(be, x, (int64_t)T * d), T, d, jobs, 2, acc);
    matmul_ref(r, n, x, d, w, d, T, n, d, acc);
    matmul_ref(r + (size_t)T * n, 7, x, d, w2, d, T, 7, d, acc);
    char what[96];
    snprintf(what, sizeof what, "matmul %s T=%d n=%d d=%d acc=%d", be->isa, T, n, d, acc);
    compare(what, o, r, (size_t)T * (n + 7), 2e-6 * sqrt(d) * 2, 1e-5);
    free(x), free(w), free(w2), free(o), free(r);
}

static void test_swiglu(backend_t *be, int T, int d, int hid) {
    float *x = malloc(sizeof(float) * T * d), *w1 = malloc(sizeof(float) * hid * d),
          *w3 = malloc(sizeof(float) * hid * d), *o = malloc(sizeof(float) * T * hid),
          *r = malloc(sizeof(float) * T * hid);
    fill(x, (size_t)T * d, 1), fill(w1, (size_t)hid * d, 0.3f), fill(w3, (size_t)hid * d, 0.3f);
    be->swiglu(be, T_(be, o, (int64_t)T * hid), T_(be, x, (int64_t)T * d), T_(be, w1, (int64_t)hid * d),
               T_(be, w3, (int64_t)hid * d), T, d, hid);
    swiglu_ref(r, x, w1, w3, T, d, hid);
    char what[96];
    snprintf(what, sizeof what, "swiglu %s T=%d d=%d hid=%d", be->isa, T, d, hid);
    compare(what, o, r, (size_t)T * hid, 2e-6 * sqrt(d), 1e-5);
    free(x), free(w1), free(w3), free(o), free(r);
}

static void test_rmsnorm(backend_t *be, int T, int d) {
    float *x = malloc(sizeof(float) * T * d), *w = malloc(sizeof(float) * d), *o = malloc(sizeof(float) * T * d),
          *r = malloc(sizeof(float) * T * d);
    fill(x, (size_t)T * d, 3), fill(w, d, 1);
    be->rmsnorm(be, T_(be, o, (int64_t)T * d), T_(be, x, (int64_t)T * d), T_(be, w, d), T, d, 1e-5f);
    rmsnorm_ref(r, x, w, T, d, 1e-5f);
    compare("rmsnorm", o, r, (size_t)T * d, 1e-6, 1e-5);
    /* in place (out == x) is allowed */
    be->rmsnorm(be, T_(be, x, (int64_t)T * d), T_(be, x, (int64_t)T * d), T_(be, w, d), T, d, 1e-5f);
    compare("rmsnorm in place", x, r, (size_t)T * d, 1e-6, 1e-5);
    free(x), free(w), free(o), free(r);
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

static void test_embed(backend_t *be) {
    int V = 11, d = 13, toks[5] = {0, 10, 3, 3, 7};
    float *tab = malloc(sizeof(float) * V * d), *o = malloc(sizeof(float) * 5 * d), *r = malloc(sizeof(float) * 5 * d);
    fill(tab, (size_t)V * d, 1);
    be->embed(be, T_(be, o, 5LL * d), T_(be, tab, (int64_t)V * d), toks, 5, d);
    embed_ref(r, tab, toks, 5, d);
    compare("embed", o, r, (size_t)5 * d, 0, 0);
    free(tab), free(o), free(r);
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

int main(void) {
    const char *isas[] = {"scalar", "avx2", "avx512"};
    int tested = 0;
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
            int Ts[] = {1, 2, 3, 4, 5, 8, 17};
            int shapes[][2] = {{1, 1}, {3, 5}, {4, 16}, {7, 17}, {33, 31}, {64, 288}, {103, 60}, {130, 47}};
            for (size_t a = 0; a < sizeof Ts / sizeof *Ts; a++)
                for (size_t b = 0; b < sizeof shapes / sizeof *shapes; b++)
                    for (int acc = 0; acc < 2; acc++) test_matmul(be, Ts[a], shapes[b][0], shapes[b][1], acc);
            test_swiglu(be, 1, 60, 97), test_swiglu(be, 5, 33, 130), test_swiglu(be, 16, 288, 768);
            test_rmsnorm(be, 1, 288), test_rmsnorm(be, 7, 61);
            for (int st = 0; st < 2; st++) {
                test_rope(be, 1, 6, 48, 0, st), test_rope(be, 9, 3, 10, 250, st), test_rope(be, 4, 2, 2, 7, st);
            }
            test_attention(be, 1, 0, 6, 6, 48), test_attention(be, 5, 11, 6, 2, 10);
            test_attention(be, 3, 300, 4, 1, 12); /* crosses a 256-position chunk */
            test_attention(be, 17, 600, 8, 4, 8);
            test_embed(be);
            test_row_stats(be, 5, 32000, 10), test_row_stats(be, 3, 517, 1), test_row_stats(be, 20, 7, 30);
            test_row_stats(be, 2, 1000, 200); /* terms down to exp(-400): underflow to 0 */
            backend_destroy(&be);
            EXPECT(be == NULL);
        }
    }
    EXPECT(tested >= 3);
    return TEST_DONE("test_kernels");
}
