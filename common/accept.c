/* accept.c - see accept.h. */
#include "common/accept.h"

#include <stddef.h>

double accept_uniform(unsigned long long *rng) {
    unsigned long long x = *rng;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    *rng = x;
    return (double)((x * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
}

int accept_draw(unsigned long long *rng, const float *w, const float *minus, int V) {
    double total = 0;
    for (int i = 0; i < V; i++) {
        double x = minus ? (double)w[i] - minus[i] : w[i];
        total += x > 0 ? x : 0;
    }
    if (!(total > 0)) return -1;
    double u = accept_uniform(rng) * total, c = 0;
    int last = -1;
    for (int i = 0; i < V; i++) {
        double x = minus ? (double)w[i] - minus[i] : w[i];
        if (x <= 0) continue;
        last = i;
        if ((c += x) > u) return i;
    }
    return last;
}

int accept_chunk(const int *chunk, int T, const float *pl, const float *ps, int V, int bonus,
                 unsigned long long *rng, int *m_rej, int *z) {
    *m_rej = 0, *z = -1;
    for (int m = 1; m < T; m++) {
        int y = chunk[m];
        const float *l = pl + (size_t)(m - 1) * V, *s = ps + (size_t)(m - 1) * V;
        if (accept_uniform(rng) * s[y] < l[y]) continue;
        *m_rej = m; /* rejected: resample from norm(max(0, p_L - p_S)) */
        if ((*z = accept_draw(rng, l, s, V)) < 0) *z = accept_draw(rng, l, NULL, V);
        return 0;
    }
    if (bonus && (*z = accept_draw(rng, pl + (size_t)(T - 1) * V, NULL, V)) < 0) return -1;
    return 0;
}
