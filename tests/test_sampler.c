/* test_sampler.c - model/sampler.c: greedy, seeding, the sampled
 * distribution (plain, top-k, top-p) against probabilities computed here
 * directly in double, and logits_stats / softmax_f32 against direct sums.
 *
 * Statistical checks use a fixed seed, so they are deterministic; their
 * bound (4 standard errors per token) would fail by chance with probability
 * about 6e-5 per token for a fresh seed, so a failure means a wrong
 * distribution, not bad luck.
 */
#include "model/sampler.h"
#include "tests/test.h"

#include <string.h>

/* A private generator for test data, independent of the one under test. */
static double test_rand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) * (1.0 / 9007199254740992.0);
}

/* p = softmax(logits / temp) in double. */
static void ref_softmax(const float *logits, int n, double temp, double *p) {
    double mx = logits[0];
    for (int i = 1; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += p[i] = exp((logits[i] - mx) / temp);
    for (int i = 0; i < n; i++) p[i] /= sum;
}

typedef struct {
    double p;
    int id;
} ref_ranked_t;

static int ref_ranked_cmp(const void *a, const void *b) {
    const ref_ranked_t *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

/* Applies top-k then top-p to p (by a full sort, probability descending and
 * id ascending on ties) and renormalises; tokens cut get 0. */
static void ref_truncate(double *p, int n, int top_k, double top_p) {
    ref_ranked_t *r = malloc(sizeof(ref_ranked_t) * (size_t)n);
    int *order = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) r[i] = (ref_ranked_t){p[i], i};
    qsort(r, (size_t)n, sizeof *r, ref_ranked_cmp);
    for (int i = 0; i < n; i++) order[i] = r[i].id;
    free(r);
    int keep = top_k > 0 && top_k < n ? top_k : n;
    double mass = 0.0;
    for (int j = 0; j < keep; j++) mass += p[order[j]];
    if (top_p < 1.0) {
        double cum = 0.0;
        for (int j = 0; j < keep; j++) {
            cum += p[order[j]];
            if (cum >= top_p * mass) {
                keep = j + 1;
                break;
            }
        }
    }
    double kept = 0.0;
    for (int j = 0; j < keep; j++) kept += p[order[j]];
    for (int j = keep; j < n; j++) p[order[j]] = 0.0;
    for (int j = 0; j < keep; j++) p[order[j]] /= kept;
    free(order);
}

/* Draws `draws` tokens and checks every frequency against the expected
 * probability within 4 standard errors; a token of probability 0 must never
 * appear. */
static void check_distribution(const float *logits, int n, float temp, float top_p, int top_k,
                               uint64_t seed, int draws, const char *what) {
    double *p = malloc(sizeof(double) * (size_t)n);
    long *count = calloc((size_t)n, sizeof(long));
    ref_softmax(logits, n, temp, p);
    ref_truncate(p, n, top_k, top_p);
    sampler_t *s = sampler_new(n, temp, top_p, top_k, seed);
    EXPECT(s != NULL);
    if (!s) {
        free(p);
        free(count);
        return;
    }
    int bad_token = 0;
    for (int d = 0; d < draws; d++) {
        int tok = sampler_sample(s, logits);
        if (tok < 0 || tok >= n) bad_token = 1;
        else count[tok]++;
    }
    EXPECT(!bad_token);
    for (int i = 0; i < n; i++) {
        double f = (double)count[i] / draws;
        double se = sqrt(p[i] * (1.0 - p[i]) / draws);
        int ok = p[i] == 0.0 ? count[i] == 0 : fabs(f - p[i]) <= 4.0 * se;
        if (!ok) {
            fprintf(stderr, "  %s: token %d frequency %.5f, expected %.5f (se %.5f)\n", what, i, f,
                    p[i], se);
            test_failures++;
        }
    }
    sampler_destroy(&s);
    free(p);
    free(count);
}

static void test_new_refuses(void) {
    sampler_t *s;
    EXPECT(sampler_new(10, -0.1f, 1.0f, 0, 1) == NULL);
    EXPECT(sampler_new(10, NAN, 1.0f, 0, 1) == NULL);
    EXPECT(sampler_new(10, INFINITY, 1.0f, 0, 1) == NULL);
    EXPECT(sampler_new(10, 1.0f, 0.0f, 0, 1) == NULL);
    EXPECT(sampler_new(10, 1.0f, -0.5f, 0, 1) == NULL);
    EXPECT(sampler_new(10, 1.0f, 1.0001f, 0, 1) == NULL);
    EXPECT(sampler_new(10, 1.0f, NAN, 0, 1) == NULL);
    EXPECT(sampler_new(10, 1.0f, 1.0f, -1, 1) == NULL);
    EXPECT(sampler_new(0, 1.0f, 1.0f, 0, 1) == NULL);
    EXPECT(sampler_new(-5, 1.0f, 1.0f, 0, 1) == NULL);
    /* The edges of the valid ranges are accepted. */
    s = sampler_new(10, 0.0f, 1.0f, 0, 0);
    EXPECT(s != NULL);
    sampler_destroy(&s);
    EXPECT(s == NULL);
    sampler_destroy(&s);
    sampler_destroy(NULL);
    s = sampler_new(10, 2.0f, 1e-6f, 10, 0);
    EXPECT(s != NULL);
    sampler_destroy(&s);
}

static void test_greedy(void) {
    const float x[] = {1.0f, 3.0f, -2.0f, 3.0f, 2.5f};
    EXPECT_EQ_INT(argmax_f32(x, 5), 1);
    EXPECT_EQ_INT(argmax_f32(x, 1), 0);
    const float neg[] = {-INFINITY, -5.0f, -5.0f};
    EXPECT_EQ_INT(argmax_f32(neg, 3), 1);
    /* temperature 0 ignores top-k, top-p and the RNG. */
    sampler_t *s = sampler_new(5, 0.0f, 0.3f, 2, 42);
    for (int i = 0; i < 100; i++) EXPECT_EQ_INT(sampler_sample(s, x), 1);
    sampler_destroy(&s);

    uint64_t r = 7;
    enum { V = 32000 };
    float *l = malloc(sizeof(float) * V);
    for (int i = 0; i < V; i++) l[i] = (float)(test_rand(&r) * 20.0 - 10.0);
    l[31999] = 10.5f;
    l[20000] = 10.5f;
    s = sampler_new(V, 0.0f, 1.0f, 0, 1);
    EXPECT_EQ_INT(sampler_sample(s, l), 20000);
    sampler_destroy(&s);
    free(l);
}

static void test_rng(void) {
    /* Same seed, same stream; seed 0 works; different seeds differ. */
    sampler_t *a = sampler_new(4, 1.0f, 1.0f, 0, 0);
    sampler_t *b = sampler_new(4, 1.0f, 1.0f, 0, 0);
    sampler_t *c = sampler_new(4, 1.0f, 1.0f, 0, 1);
    int same_ab = 1, same_ac = 1, in_range = 1, on_grid = 1, all_zero = 1;
    double sum = 0.0, sum2 = 0.0;
    const int N = 100000;
    for (int i = 0; i < N; i++) {
        float u = sampler_uniform(a), v = sampler_uniform(b), w = sampler_uniform(c);
        same_ab &= u == v;
        same_ac &= u == w;
        in_range &= u >= 0.0f && u < 1.0f && w >= 0.0f && w < 1.0f;
        float scaled = u * 16777216.0f; /* 24 random bits: an integer */
        on_grid &= scaled == floorf(scaled);
        all_zero &= u == 0.0f;
        sum += u;
        sum2 += (double)u * u;
    }
    EXPECT(same_ab);
    EXPECT(!same_ac);
    EXPECT(in_range);
    EXPECT(on_grid);
    EXPECT(!all_zero);
    /* Mean 1/2 and variance 1/12, each within 5 standard errors. */
    double mean = sum / N, var = sum2 / N - mean * mean;
    EXPECT_NEAR(mean, 0.5, 5.0 * sqrt(1.0 / 12.0 / N), 0.0);
    EXPECT_NEAR(var, 1.0 / 12.0, 5.0 * sqrt(1.0 / 180.0 / N), 0.0);
    sampler_destroy(&a);
    sampler_destroy(&b);
    sampler_destroy(&c);
}

static void test_determinism(void) {
    enum { V = 32000, STEPS = 300 };
    uint64_t r = 99;
    float *l = malloc(sizeof(float) * V);
    float *copy = malloc(sizeof(float) * V);
    const struct {
        float temp, top_p;
        int top_k;
    } cfg[] = {{1.0f, 1.0f, 0}, {0.8f, 0.9f, 0}, {1.0f, 1.0f, 40}, {1.2f, 0.95f, 200}};
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
        sampler_t *a = sampler_new(V, cfg[c].temp, cfg[c].top_p, cfg[c].top_k, 1234);
        sampler_t *b = sampler_new(V, cfg[c].temp, cfg[c].top_p, cfg[c].top_k, 1234);
        sampler_t *d = sampler_new(V, cfg[c].temp, cfg[c].top_p, cfg[c].top_k, 1235);
        int same = 1, differ = 0, untouched = 1;
        for (int step = 0; step < STEPS; step++) {
            for (int i = 0; i < V; i++) l[i] = (float)(test_rand(&r) * 8.0 - 4.0);
            memcpy(copy, l, sizeof(float) * V);
            int x = sampler_sample(a, l), y = sampler_sample(b, l), z = sampler_sample(d, l);
            same &= x == y;
            differ |= x != z;
            untouched &= memcmp(copy, l, sizeof(float) * V) == 0;
        }
        EXPECT(same);
        EXPECT(differ);
        EXPECT(untouched);
        sampler_destroy(&a);
        sampler_destroy(&b);
        sampler_destroy(&d);
    }
    free(l);
    free(copy);
}

static void test_distributions(void) {
    const float five[] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f};
    check_distribution(five, 5, 1.0f, 1.0f, 0, 11, 20000, "T=1");
    check_distribution(five, 5, 0.5f, 1.0f, 0, 12, 20000, "T=0.5");
    check_distribution(five, 5, 2.0f, 1.0f, 0, 13, 20000, "T=2");
    check_distribution(five, 5, 1.0f, 1.0f, 5, 14, 20000, "top_k=V");
    check_distribution(five, 5, 1.0f, 1.0f, 3, 15, 20000, "top_k=3");
    check_distribution(five, 5, 1.0f, 0.8f, 0, 16, 20000, "top_p=0.8");
    check_distribution(five, 5, 1.0f, 0.9f, 2, 17, 20000, "top_k=2,top_p=0.9");
    check_distribution(five, 5, 1.0f, 1e-6f, 0, 18, 2000, "top_p=1e-6");

    /* p = [0.45, 0.3, 0.15, 0.1]: top_p 0.5 keeps exactly the first two
     * (0.45 < 0.5 <= 0.75), renormalised to 0.6 / 0.4; in any order. */
    const float q[] = {logf(0.45f), logf(0.3f), logf(0.15f), logf(0.1f)};
    check_distribution(q, 4, 1.0f, 0.5f, 0, 19, 20000, "top_p=0.5");
    const float q_perm[] = {logf(0.1f), logf(0.3f), logf(0.15f), logf(0.45f)};
    check_distribution(q_perm, 4, 1.0f, 0.5f, 0, 20, 20000, "top_p=0.5 permuted");
    sampler_t *s = sampler_new(4, 1.0f, 0.5f, 0, 21);
    int only_two = 1;
    for (int i = 0; i < 20000; i++) {
        int t = sampler_sample(s, q);
        only_two &= t == 0 || t == 1;
    }
    EXPECT(only_two);
    sampler_destroy(&s);

    /* Equal logits: top-k keeps the lowest ids. */
    const float flat[] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    check_distribution(flat, 6, 1.0f, 1.0f, 2, 22, 20000, "flat top_k=2");
    check_distribution(flat, 6, 1.0f, 0.5f, 0, 23, 20000, "flat top_p=0.5");
}

/* The nucleus boundary to 1e-5: top_p just below p0 + p1 keeps tokens 0
 * and 1 only, just above it keeps 2 as well. This needs the sampler's
 * weights right to well under 1e-5 relative, which the frequency checks
 * cannot see. */
static void test_top_p_boundary(void) {
    const float l[] = {0.0f, -0.3f, -1.7f, -2.2f, -4.9f};
    double p[5];
    ref_softmax(l, 5, 1.0, p);
    const double edge = p[0] + p[1];
    for (int side = 0; side < 2; side++) {
        float top_p = (float)(edge * (side ? 1.0 + 1e-5 : 1.0 - 1e-5));
        sampler_t *s = sampler_new(5, 1.0f, top_p, 0, 31 + side);
        int seen[5] = {0};
        for (int i = 0; i < 5000; i++) {
            int t = sampler_sample(s, l);
            if (t >= 0 && t < 5) seen[t]++;
        }
        EXPECT(seen[0] > 0 && seen[1] > 0);
        EXPECT_EQ_INT(seen[2] > 0, side);
        EXPECT_EQ_INT(seen[3] + seen[4], 0);
        sampler_destroy(&s);
    }
}

/* On a real-sized vocabulary: every token drawn is in the truncated set the
 * reference computes by a full sort, and a few hundred draws reach more than
 * one token. */
static void test_truncation_large(void) {
    enum { V = 32000, DRAWS = 1000 };
    uint64_t r = 5;
    float *l = malloc(sizeof(float) * V);
    double *p = malloc(sizeof(double) * V);
    /* A peaked distribution, like a language model's: most mass on few ids. */
    for (int i = 0; i < V; i++) l[i] = (float)(test_rand(&r) * 6.0 - 3.0);
    for (int i = 0; i < 50; i++) l[(int)(test_rand(&r) * V)] += 8.0f;
    const struct {
        float top_p;
        int top_k;
    } cfg[] = {{1.0f, 2}, {1.0f, 40}, {0.9f, 0}, {0.5f, 0}, {0.95f, 10}, {0.999f, 0}};
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
        ref_softmax(l, V, 1.0, p);
        ref_truncate(p, V, cfg[c].top_k, cfg[c].top_p);
        int allowed = 0;
        for (int i = 0; i < V; i++) allowed += p[i] > 0.0;
        sampler_t *s = sampler_new(V, 1.0f, cfg[c].top_p, cfg[c].top_k, 77 + c);
        int outside = 0, distinct = 0;
        char *seen = calloc(V, 1);
        for (int d = 0; d < DRAWS; d++) {
            int t = sampler_sample(s, l);
            if (t < 0 || t >= V || p[t] == 0.0) outside++;
            else if (!seen[t]) {
                seen[t] = 1;
                distinct++;
            }
        }
        if (outside)
            fprintf(stderr, "  top_p %g top_k %d: %d draws outside the %d allowed tokens\n",
                    cfg[c].top_p, cfg[c].top_k, outside, allowed);
        EXPECT_EQ_INT(outside, 0);
        EXPECT(distinct > 1 || allowed == 1);
        if (cfg[c].top_k == 2) EXPECT_EQ_INT(allowed, 2);
        free(seen);
        sampler_destroy(&s);
    }
    free(l);
    free(p);
}

/* -inf logits (masked tokens) are never drawn, whatever the truncation;
 * NaN logits do not crash the sampler. */
static void test_masked(void) {
    const float l[] = {0.0f, -INFINITY, 0.5f, -INFINITY, -100.0f};
    const struct {
        float temp, top_p;
        int top_k;
    } cfg[] = {{1.0f, 1.0f, 0}, {1.0f, 0.999f, 0}, {1.0f, 1.0f, 4}, {3.0f, 1.0f, 0}};
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
        sampler_t *s = sampler_new(5, cfg[c].temp, cfg[c].top_p, cfg[c].top_k, 5 + c);
        int masked = 0, seen0 = 0, seen2 = 0;
        for (int i = 0; i < 20000; i++) {
            int t = sampler_sample(s, l);
            masked += t == 1 || t == 3 || t < 0 || t > 4;
            seen0 += t == 0;
            seen2 += t == 2;
        }
        EXPECT_EQ_INT(masked, 0);
        EXPECT(seen0 > 0 && seen2 > 0);
        sampler_destroy(&s);
    }
    const float with_nan[] = {1.0f, NAN, 2.0f, 0.5f};
    const float nan_first[] = {NAN, 1.0f, 2.0f, 0.5f};
    sampler_t *s = sampler_new(4, 1.0f, 0.9f, 0, 1);
    for (int i = 0; i < 1000; i++) {
        int t = sampler_sample(s, with_nan);
        EXPECT(t >= 0 && t < 4 && t != 1);
        t = sampler_sample(s, nan_first);
        EXPECT(t >= 0 && t < 4);
    }
    sampler_destroy(&s);
}

static void test_logits_stats(void) {
    enum { V = 32000 };
    uint64_t r = 3;
    float *l = malloc(sizeof(float) * V);
    for (int trial = 0; trial < 5; trial++) {
        for (int i = 0; i < V; i++) l[i] = (float)(test_rand(&r) * 20.0 - 10.0);
        /* Direct: the logits are small, so exp does not overflow. */
        double z = 0.0, mx = -INFINITY;
        for (int i = 0; i < V; i++) {
            z += exp((double)l[i]);
            mx = l[i] > mx ? l[i] : mx;
        }
        int tok = (int)(test_rand(&r) * V);
        float max_prob = -1.0f, nll = -1.0f;
        logits_stats(l, V, tok, &max_prob, &nll);
        EXPECT_NEAR(max_prob, exp(mx) / z, 0.0, 1e-6);
        EXPECT_NEAR(nll, -log(exp((double)l[tok]) / z), 0.0, 1e-6);
        logits_stats(l, V, -1, &max_prob, &nll);
        EXPECT_EQ_INT(nll == 0.0f, 1);
    }
    free(l);

    /* Extremes: no overflow, no NaN. log(1 + e^-2000) is 0 in double. */
    const float ext[] = {1000.0f, -1000.0f, 0.0f};
    float max_prob, nll;
    logits_stats(ext, 3, 0, &max_prob, &nll);
    EXPECT(isfinite(max_prob) && isfinite(nll));
    EXPECT_NEAR(max_prob, 1.0, 0.0, 1e-6);
    EXPECT_NEAR(nll, 0.0, 1e-6, 0.0);
    logits_stats(ext, 3, 1, &max_prob, &nll);
    EXPECT_NEAR(nll, 2000.0, 0.0, 1e-6);
    logits_stats(ext, 3, 2, &max_prob, &nll);
    EXPECT_NEAR(nll, 1000.0, 0.0, 1e-6);
    const float two[] = {1000.0f, 1000.0f};
    logits_stats(two, 2, 1, &max_prob, &nll);
    EXPECT_NEAR(max_prob, 0.5, 0.0, 1e-6);
    EXPECT_NEAR(nll, log(2.0), 0.0, 1e-6);
    const float neg[] = {-1000.0f, -1001.0f};
    logits_stats(neg, 2, 1, &max_prob, &nll);
    EXPECT_NEAR(max_prob, 1.0 / (1.0 + exp(-1.0)), 0.0, 1e-6);
    EXPECT_NEAR(nll, log(1.0 + exp(1.0)), 0.0, 1e-6);
    const float one[] = {-3.0f};
    logits_stats(one, 1, 0, &max_prob, &nll);
    EXPECT_NEAR(max_prob, 1.0, 0.0, 0.0);
    EXPECT_NEAR(nll, 0.0, 0.0, 0.0);
    logits_stats(one, 1, 0, NULL, NULL); /* both outputs optional */
}

static void test_softmax(void) {
    enum { N = 1001 };
    uint64_t r = 8;
    float x[N], orig[N];
    double p[N];
    for (int i = 0; i < N; i++) orig[i] = (float)(test_rand(&r) * 30.0 - 15.0);
    const float temps[] = {1.0f, 0.7f, 3.0f};
    for (int k = 0; k < 3; k++) {
        memcpy(x, orig, sizeof x);
        softmax_f32(x, N, temps[k]);
        ref_softmax(orig, N, temps[k], p);
        double sum = 0.0, worst = 0.0;
        for (int i = 0; i < N; i++) {
            sum += x[i];
            /* float exp and sum: a few ulps relative, plus float underflow */
            double err = fabs(x[i] - p[i]) - (1e-30 + 1e-5 * p[i]);
            worst = err > worst ? err : worst;
        }
        EXPECT(worst <= 0.0);
        EXPECT_NEAR(sum, 1.0, 1e-5, 0.0);
    }
    float big[] = {1000.0f, -1000.0f, 999.0f};
    softmax_f32(big, 3, 1.0f);
    EXPECT_NEAR(big[0], 1.0 / (1.0 + exp(-1.0)), 0.0, 1e-6);
    EXPECT_NEAR(big[1], 0.0, 1e-30, 0.0);
    EXPECT_NEAR(big[2], exp(-1.0) / (1.0 + exp(-1.0)), 0.0, 1e-6);
}

int main(void) {
    test_new_refuses();
    test_greedy();
    test_rng();
    test_determinism();
    test_distributions();
    test_truncation_large();
    test_masked();
    test_top_p_boundary();
    test_logits_stats();
    test_softmax();
    return TEST_DONE("test_sampler");
}
