/* sampler.c - temperature / top-k / top-p sampling with a seeded xorshift64*
 * RNG, and the log-sum-exp statistics BiLD's fallback and rollback tests use.
 *
 * Cost per token for a vocabulary V, with no sort anywhere: one pass for the
 * weights; top-k keeps a bounded min-heap (V log k); top-p first drops the
 * candidates that provably cannot be in the nucleus (nucleus_cutoff), then
 * finds the nucleus among the rest by a quickselect on mass (expected linear
 * time) and draws from it unordered. Nothing is allocated per token. The
 * ranking is a total order (weight descending, then id ascending), so equal
 * logits always give the same tokens.
 *
 * Left out on purpose: repetition penalties, min-p, typical sampling.
 */
#include "model/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/check.h"

struct sampler {
    int vocab_size;
    float temperature;
    float top_p;
    int top_k;
    uint64_t rng;  /* xorshift64* state, never 0 */
    float *w;      /* (vocab_size) unnormalised probabilities of the last call */
    int *cand;     /* (vocab_size) candidate ids */
};

/* splitmix64 finaliser: spreads any seed (0 included) over the 64 bits. */
static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

sampler_t *sampler_new(int vocab_size, float temperature, float top_p, int top_k, uint64_t seed) {
    /* The negated comparisons also refuse NaN. */
    if (vocab_size <= 0 || !(temperature >= 0.0f) || !isfinite(temperature) ||
        !(top_p > 0.0f && top_p <= 1.0f) || top_k < 0)
        return NULL;
    sampler_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->w = malloc(sizeof(float) * (size_t)vocab_size);
    s->cand = malloc(sizeof(int) * (size_t)vocab_size);
    if (!s->w || !s->cand) {
        sampler_destroy(&s);
        return NULL;
    }
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->top_p = top_p;
    s->top_k = top_k;
    s->rng = splitmix64(seed);
    if (s->rng == 0) s->rng = 0x9E3779B97F4A7C15ull; /* xorshift's one fixed point */
    return s;
}

void sampler_destroy(sampler_t **ps) {
    if (!ps || !*ps) return;
    free((*ps)->w);
    free((*ps)->cand);
    free(*ps);
    *ps = NULL;
}

float sampler_uniform(sampler_t *s) {
    /* The top 24 bits (the best ones of xorshift64*) fill a float's
     * mantissa exactly, so the result is < 1. */
    return (float)(rng_next(&s->rng) >> 40) * (1.0f / 16777216.0f);
}

int argmax_f32(const float *x, int n) {
    CHECK(n > 0);
    /* Eight running maxima keep the loop free of a serial dependency (and
     * let the compiler vectorize it); a second scan finds the first index
     * holding the maximum, which gives the lowest index on ties. */
    float m8[8];
    int i = 0;
    for (int j = 0; j < 8; j++) m8[j] = x[0];
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) m8[j] = x[i + j] > m8[j] ? x[i + j] : m8[j];
    float m = m8[0];
    for (int j = 1; j < 8; j++) m = m8[j] > m ? m8[j] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    for (i = 0; i < n; i++)
        if (x[i] == m) return i;
    return 0; /* only when every value is NaN */
}

/* e^x for x <= 0, in plain IEEE float operations: the same bits on every
 * machine (unlike libm's expf, which may differ between C libraries), so a
 * seed draws the same tokens everywhere, as long as the compiler does not
 * fuse a*b+c into FMAs (GCC with -std=c11 does not; neither does any
 * compiler without -mfma or -march=native); and branch-free, so the loop over
 * the vocabulary vectorizes. x = n ln2 + r with |r| <= ln2/2 (ln2 split in
 * two so that n ln2 is exact), e^r by its degree-7 Taylor polynomial, times
 * 2^n built in the exponent bits: within 1e-7 relative of e^x (measured
 * over every 64th float in [-87, 0]). Below -87 (where e^x < 2e-38), -inf
 * included, the result is exactly 0, so a masked token is never drawn; NaN
 * also gives 0. The range test works on the bits (for a negative float, a
 * larger unsigned pattern is a more negative value) because integer masks
 * vectorize at -O2 where a float select would not. */
static inline float exp_nonpos(float x) {
    const uint32_t lim = 0xC2AE0000u; /* -87.0f */
    uint32_t ux;
    memcpy(&ux, &x, sizeof ux);
    /* Kept: +0, and negative values not below -87. Flushed (as -87, then
     * masked to 0): the rest, which also takes positive input and NaN of
     * either sign out of the float-to-int conversion below. */
    uint32_t in_range = (uint32_t)(ux <= lim) & ((ux >> 31) | (uint32_t)(ux == 0));
    uint32_t keep = 0u - in_range; /* all ones, or 0 to flush */
    uint32_t uc = (ux & keep) | (lim & ~keep);
    float xc;
    memcpy(&xc, &uc, sizeof xc);
    /* Round to nearest through the 2^23 + 2^22 trick: exact for |t| < 2^22. */
    float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;
    float r = (xc - n * 0.693145752f) - n * 1.42860677e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits = ((uint32_t)((int32_t)n + 127) << 23) & keep; /* 2^n, n in [-126, 0] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* w = exp((logits - mx) / temperature) (as a product with inv_t); returns
 * sum(w). Fixed-size inner blocks let -O2 vectorize both loops; the sum keeps
 * eight partial sums in a fixed order, so it is still deterministic. */
static double weights(const float *restrict logits, float *restrict w, int n, float mx, float inv_t) {
    double part[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; j++) w[i + j] = exp_nonpos((logits[i + j] - mx) * inv_t);
        for (int j = 0; j < 8; j++) part[j] += w[i + j];
    }
    for (; i < n; i++) {
        w[i] = exp_nonpos((logits[i] - mx) * inv_t);
        part[0] += w[i];
    }
    return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

void softmax_f32(float *x, int n, float temperature) {
    CHECK(n > 0 && temperature > 0.0f);
    float mx = x[argmax_f32(x, n)];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf((x[i] - mx) / temperature);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void logits_stats(const float *logits, int n, int token, float *max_prob, float *nll) {
    CHECK(n > 0 && token >= -1 && token < n);
    const double mx = logits[argmax_f32(logits, n)];
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    /* log Z = mx + log(sum); sum >= 1 because the max term is exp(0). */
    double log_z = mx + log(sum);
    if (max_prob) *max_prob = (float)(1.0 / sum);
    if (nll) *nll = token < 0 ? 0.0f : (float)(log_z - (double)logits[token]);
}

/* Strict total order: weight descending, then id ascending. */
static int ranks_before(const float *w, int a, int b) {
    if (w[a] != w[b]) return w[a] > w[b];
    return a < b;
}

/* Keeps in cand[0..k) the k best ids of the whole vocabulary, as a heap
 * whose root is the worst of them. */
static void select_top_k(const float *w, int n, int k, int *cand) {
    int size = 0;
    for (int id = 0; id < n; id++) {
        if (size == k && !ranks_before(w, id, cand[0])) continue;
        int i;
        if (size < k) {
            /* Sift up: the worst element rises to the root. */
            i = size++;
            while (i > 0) {
                int p = (i - 1) / 2;
                if (!ranks_before(w, cand[p], id)) break;
                cand[i] = cand[p];
                i = p;
            }
        } else {
            /* Replace the root and sift down. */
            i = 0;
            for (;;) {
                int c = 2 * i + 1;
                if (c >= size) break;
                if (c + 1 < size && ranks_before(w, cand[c], cand[c + 1])) c++;
                if (!ranks_before(w, id, cand[c])) break;
                cand[i] = cand[c];
                i = c;
            }
        }
        cand[i] = id;
    }
}

/* A weight below which a candidate cannot be in the nucleus of the n
 * candidates of total mass M for the threshold p.
 * Sort the candidates descending, w_1 >= ... >= w_n. Candidate m >= 2 is in
 * the nucleus only if the m-1 before it hold less than p*M, so the n-m+1
 * from m on hold more than (1-p)*M; each of them is <= w_m, and there are at
 * most n-1 of them, hence w_m > (1-p)*M/(n-1). The first candidate is always
 * in, whatever its weight, so the caller must keep it explicitly. */
static double nucleus_cutoff(double mass, int n, float top_p) {
    return (1.0 - (double)top_p) * mass / (double)(n - 1);
}

/* Of the three ids, the one ranked in the middle. */
static int median3(const float *w, int a, int b, int c) {
    if (ranks_before(w, b, a)) { int t = a; a = b; b = t; }
    if (ranks_before(w, c, b)) { int t = b; b = c; c = t; }
    if (ranks_before(w, b, a)) { int t = a; a = b; b = t; }
    return b;
}

/* Moves the nucleus of a[0..n) to the front and returns its size: the
 * fewest best-ranked candidates whose weights sum to >= target. Quickselect
 * on mass: each round partitions a[lo..hi) around a pivot; if what ranks
 * before the pivot already reaches the target, the nucleus ends there,
 * otherwise it is all in and the search goes on after the pivot. Invariant:
 * a[0..lo) is in the nucleus, holds acc < target, and ranks before a[lo..).
 * The nucleus is left unordered; *kept gets its mass. */
static int select_nucleus(const float *w, int *a, int n, double target, double *kept) {
    int lo = 0, hi = n;
    double acc = 0.0;
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        int pivot = median3(w, a[lo], a[mid], a[hi - 1]);
        /* Lomuto partition: ids ranked before the pivot go to a[lo..p). */
        int p = lo;
        double before = 0.0;
        for (int j = lo; j < hi; j++) {
            if (a[j] == pivot || !ranks_before(w, a[j], pivot)) continue;
            int t = a[p]; a[p] = a[j]; a[j] = t;
            before += w[a[p]];
            p++;
        }
        for (int j = p; j < hi; j++) {
            if (a[j] == pivot) {
                a[j] = a[p];
                a[p] = pivot;
                break;
            }
        }
        if (acc + before >= target) {
            hi = p; /* non-empty: acc < target, so before > 0 */
        } else if (acc + before + w[pivot] >= target) {
            *kept = acc + before + w[pivot];
            return p + 1;
        } else {
            acc += before + w[pivot];
            lo = p + 1;
        }
    }
    if (lo < n) acc += w[a[lo]];
    *kept = acc;
    return lo < n ? lo + 1 : n; /* n: rounding kept the target out of reach */
}

int sampler_sample(sampler_t *s, const float *logits) {
    const int V = s->vocab_size;
    int best = argmax_f32(logits, V);
    if (s->temperature == 0.0f) return best;

    float *w = s->w;
    const float mx = logits[best];
    double mass = weights(logits, w, V, mx, 1.0f / s->temperature);
    /* The best weight is 1 and NaN logits weigh 0, so a mass below 1 means
     * an infinite or NaN maximum: nothing sensible to draw from. */
    if (!(mass >= 1.0) || !isfinite(mass)) return best;

    int *cand = s->cand;
    int n = V;       /* candidates: cand[0..n), or every id when all_ids */
    int all_ids = 1;
    if (s->top_k > 0 && s->top_k < V) {
        n = s->top_k;
        select_top_k(w, V, n, cand);
        all_ids = 0;
        mass = 0.0;
        for (int j = 0; j < n; j++) mass += w[cand[j]];
    }

    if (s->top_p < 1.0f && n > 1) {
        /* The largest weight is exactly exp_nonpos(0) = 1, so capping the
         * cut at 1 keeps the first candidate, which the bound does not cover. */
        const double cut = fmin(nucleus_cutoff(mass, n, s->top_p), 1.0);
        int m = 0;
        for (int j = 0; j < n; j++) {
            int id = all_ids ? j : cand[j];
            if (w[id] >= cut) cand[m++] = id;
        }
        n = select_nucleus(w, cand, m, (double)s->top_p * mass, &mass);
        all_ids = 0;
    }

    const double u = (double)sampler_uniform(s) * mass;
    double cum = 0.0;
    int last = best;
    for (int j = 0; j < n; j++) {
        int id = all_ids ? j : cand[j];
        if (w[id] <= 0.0f) continue;
        cum += w[id];
        last = id;
        if (u < cum) return id;
    }
    return last; /* u landed past the end through rounding */
}

int sampler_is_greedy(const sampler_t *s) { return s->temperature == 0.0f; }
