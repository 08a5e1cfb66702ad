/* cpu.c - the CPU backend: implements kernels/ops.h with a persistent thread
 * pool and SIMD inner kernels chosen at run time (simd.h).
 *
 * Work split: matrix products are split by output rows (each thread streams
 * its own slice of the weights once, for all T tokens of the block);
 * attention is split by (token, head) pairs; the cheap element-wise ops
 * (embedding copy, RMSNorm, RoPE) run on the calling thread, where a
 * dispatch would cost more than the work.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/dummy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/check.h"
#include "kernels/hostmem.h"
#include "kernels/half.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/threadpool.h"

static int n_panels(int rows) { return (rows + PANEL - 1) / PANEL; }

#define ATT_CHUNK 256 /* positions scored at once; softmax is merged across chunks */

enum { PROF_MATMUL, PROF_ATT, PROF_ELEM, PROF_STATS, PROF_N };

typedef struct {
    threadpool_t *pool;
    const simd_kernels_t *k;
    float *scratch;      /* (T, hid) second half of SwiGLU; grown on demand */
    size_t scratch_n;
    int prof;            /* cpu_profile_start: time the operators */
    double prof_s[PROF_N];
    long handoffs;
} cpu_t;

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_PAUSE() _mm_pause()
#else
#define CPU_PAUSE() ((void)0)
#endif

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
/* profiling brackets around an operator's body (c: the cpu_t) */
#define PROF_BEGIN(c) double prof_t0_ = (c)->prof ? mono_s() : 0
#define PROF_END(c, kind) \
    do { \
        if ((c)->prof) (c)->prof_s[kind] += mono_s() - prof_t0_; \
    } while (0)
/* threadpool_run, counting hand-offs while profiling */
static void pool_run(cpu_t *c, threadpool_fn fn, void *arg, int n_chunks) {
    if (c->prof && n_chunks > 1 && threadpool_size(c->pool) > 1) c->handoffs++;
    threadpool_run(c->pool, fn, arg, n_chunks);
}

static const float *F(tensor_t t) {
    CHECK(t.device == DEVICE_CPU && t.dtype == DTYPE_F32 && t.data);
    return (const float *)t.data;
}
static float *FW(tensor_t t) { return (float *)F(t); }

/* A weight tensor: f32, bf16 or f16 in host memory (see ops.h). */
static const void *WT(tensor_t t) {
    CHECK(t.device == DEVICE_CPU && t.data &&
          (t.dtype == DTYPE_F32 || t.dtype == DTYPE_BF16 || t.dtype == DTYPE_F16));
    return t.data;
}

static tensor_t cpu_alloc(backend_t *be, int64_t n) {
    tensor_t t = {NULL, DTYPE_F32, DEVICE_CPU, n, 0};
    size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
    t.data = aligned_alloc(64, bytes);
    if (t.data) memset(t.data, 0, bytes);
    return t;
}

static void cpu_free(backend_t *be, tensor_t *t) {
    if (t->data) free(t->data);
    t->data = NULL;
}

static tensor_t cpu_wrap_host(backend_t *be, void *host, dtype_t dtype, int64_t n) {
    return (tensor_t){host, dtype, DEVICE_CPU, n, 0};
}

static tensor_t cpu_upload(backend_t *be, const void *host, dtype_t dtype, int64_t n) {
    tensor_t t = {NULL, dtype, DEVICE_CPU, n, 0};
    size_t bytes = (size_t)(n > 0 ? n : 1) * dtype_size(dtype);
    if ((t.data = hostmem_alloc(bytes))) memcpy(t.data, host, (size_t)n * dtype_size(dtype));
    return t;
}

static tensor_t cpu_random(backend_t *be, dtype_t dtype, int64_t n, uint64_t seed, float lo, float hi) {
    tensor_t t = {NULL, dtype, DEVICE_CPU, n, 0};
    size_t bytes = (size_t)(n > 0 ? n : 1) * dtype_size(dtype);
    if (!(t.data = hostmem_alloc(bytes))) return t; /* weights: large ones in huge pages */
    float buf[256];
    for (int64_t i = 0; i < n; i += 256) {
        int64_t m = n - i < 256 ? n - i : 256;
        for (int64_t j = 0; j < m; j++) buf[j] = dummy_uniform(seed, (uint64_t)(i + j), lo, hi);
        f32_to_dtype((char *)t.data + (size_t)i * dtype_size(dtype), buf, dtype, (size_t)m);
    }
    return t;
}

/* cpu_pack: panels (simd.h) of a row-major matrix, a range of panels per chunk */
typedef struct {
    const char *src;
    char *dst;
    dtype_t dt;
    int n, d;
} pack_task_t;

static void pack_worker(void *arg, int i, int nchunks) {
    const pack_task_t *pk = arg;
    const int np = n_panels(pk->n), d = pk->d, es = (int)dtype_size(pk->dt);
    const size_t pb = panel_bytes(pk->dt, d);
    for (int p = (int)((long)np * i / nchunks); p < (int)((long)np * (i + 1) / nchunks); p++) {
        char *dp = pk->dst + (size_t)p * pb;
        if ((p + 1) * PANEL > pk->n || (pk->dt == DTYPE_BF16 && d % 2)) memset(dp, 0, pb); /* padding */
        for (int j = 0; j < PANEL && p * PANEL + j < pk->n; j++) {
            const char *row = pk->src + ((size_t)p * PANEL + j) * d * es;
            if (pk->dt == DTYPE_F32)
                for (int k = 0; k < d; k++) ((float *)dp)[(size_t)k * PANEL + j] = ((const float *)row)[k];
            else if (pk->dt == DTYPE_BF16)
                for (int k = 0; k < d; k++)
                    ((uint16_t *)dp)[(size_t)(k / 2) * 2 * PANEL + 2 * j + (k & 1)] = ((const uint16_t *)row)[k];
            else
                for (int k = 0; k < d; k++) ((uint16_t *)dp)[(size_t)k * PANEL + j] = ((const uint16_t *)row)[k];
        }
    }
}

static tensor_t cpu_pack(backend_t *be, tensor_t w, int n, int d) {
    cpu_t *c = be->impl;
    CHECK(WT(w) && !w.packed && n > 0 && d > 0 && w.ne == (int64_t)n * d);
    tensor_t t = {NULL, w.dtype, DEVICE_CPU, w.ne, 1};
    if (!(t.data = hostmem_alloc((size_t)n_panels(n) * panel_bytes(w.dtype, d)))) return t;
    pack_task_t pk = {w.data, t.data, w.dtype, n, d};
    int np = n_panels(n);
    threadpool_run(c->pool, pack_worker, &pk, np < 64 ? 1 : 4 * threadpool_size(c->pool));
    return t;
}

static void cpu_to_host(backend_t *be, float *dst, tensor_t src, int64_t off, int64_t n) {
    CHECK(off >= 0 && off + n <= src.ne);
    memcpy(dst, F(src) + off, (size_t)n * sizeof(float));
}

static void cpu_from_host(backend_t *be, tensor_t dst, int64_t off, const float *src, int64_t n) {
    CHECK(off >= 0 && off + n <= dst.ne);
    memcpy(FW(dst) + off, src, (size_t)n * sizeof(float));
}

static void cpu_embed(backend_t *be, tensor_t out, tensor_t table, const int *tokens, int T, int d) {
    cpu_t *c = be->impl;
    PROF_BEGIN(c);
    float *o = FW(out);
    const char *tb = WT(table);
    size_t rowb = (size_t)d * dtype_size(table.dtype);
    CHECK(out.ne >= (int64_t)T * d);
    for (int t = 0; t < T; t++) {
        CHECK((int64_t)(tokens[t] + 1) * d <= table.ne && tokens[t] >= 0);
        dtype_to_f32(o + (size_t)t * d, tb + (size_t)tokens[t] * rowb, table.dtype, (size_t)d); /* widens half rows */
    }
    PROF_END(c, PROF_ELEM);
}

static void cpu_rmsnorm(backend_t *be, tensor_t out, tensor_t x, tensor_t w, int T, int d, float eps) {
    cpu_t *c = be->impl;
    PROF_BEGIN(c);
    const float *xp = F(x);
    const void *wv = WT(w);
    float *op = FW(out);
    CHECK(w.ne >= d);
    for (int t = 0; t < T; t++) {
        const float *xt = xp + (size_t)t * d;
        float ss = 0;
        for (int j = 0; j < d; j++) ss += xt[j] * xt[j];
        float inv = 1.0f / sqrtf(ss / d + eps);
        if (w.dtype == DTYPE_F32)
            for (int j = 0; j < d; j++) op[(size_t)t * d + j] = xt[j] * inv * ((const float *)wv)[j];
        else
            for (int j = 0; j < d; j++) op[(size_t)t * d + j] = xt[j] * inv * dtype_get(wv, w.dtype, (size_t)j);
    }
    PROF_END(c, PROF_ELEM);
}

/* Splits n panels into nth slices [*p0, *p1) of whole panels. */
static void panel_slice(int n, int ith, int nth, int *p0, int *p1) {
    int per = (n + nth - 1) / nth;
    *p0 = ith * per < n ? ith * per : n;
    *p1 = *p0 + per < n ? *p0 + per : n;
}

/* Rows [p0 * PANEL, p1 * PANEL) of an (n, d) matrix w, for T tokens: the
 * panel kernel on packed weights, the row kernel on row-major ones. */
static void product(const simd_kernels_t *k, float *out, int ldo, const float *x, tensor_t w, int T, int d, int p0,
                    int p1, int n, int accumulate) {
    if (p0 >= p1) return;
    if (w.packed)
        k->matmul_panels(out, ldo, x, d, w.data, w.dtype, d, T, p0, p1, n, accumulate);
    else
        k->matmul_rows(out, ldo, x, d, WT(w), w.dtype, d, T, d, p0 * PANEL, p1 * PANEL < n ? p1 * PANEL : n,
                       accumulate);
}

/* Below this many multiply-adds a job runs on the calling thread: waking
 * the pool costs a few microseconds, more than the work (the small model's
 * 64-wide layers are 4K-12K multiply-adds). */
#define INLINE_WORK 32768

/* Below this many multiply-adds a job gets one chunk per thread: each
 * thread then reads the same weights job after job (threadpool.h), and a
 * small model's, split over two cores, stay in their L2s; finer chunks let
 * the first thread done steal the other's, which then come from L3
 * (stories15M-aligned's step, Intel Xeon, 2 threads: 58 against 74 us). */
#define FINE_WORK (1L << 20)

/* Chunks for n panels of `work` multiply-adds in all: one per thread for
 * jobs below FINE_WORK, else about four per thread (so a descheduled
 * thread's share can be taken over in pieces), never less than a panel
 * each; one (inline) for small jobs. */
static int row_chunks(const cpu_t *c, int n, long work) {
    int want = (work < FINE_WORK ? 1 : 4) * threadpool_size(c->pool), most = n;
    if (threadpool_size(c->pool) == 1 || work < INLINE_WORK) return 1;
    return want < most ? want : most;
}

typedef struct {
    const simd_kernels_t *k;
    const float *x;
    int T, d, total, accumulate;
    const matmul_job_t *jobs;
    int n_jobs;
} matmul_task_t;

static void matmul_worker(void *p, int ith, int nth) {
    const matmul_task_t *mt = p;
    int p0, p1;
    panel_slice(mt->total, ith, nth, &p0, &p1);
    /* The jobs' panels are concatenated: job j owns [base, base + its panels). */
    for (int j = 0, base = 0; j < mt->n_jobs && base < p1; base += n_panels(mt->jobs[j].n), j++) {
        const matmul_job_t *jb = &mt->jobs[j];
        int lo = p0 > base ? p0 - base : 0, hi = p1 - base < n_panels(jb->n) ? p1 - base : n_panels(jb->n);
        product(mt->k, FW(jb->out) + jb->out_off, jb->n, mt->x, jb->w, mt->T, mt->d, lo, hi, jb->n, mt->accumulate);
    }
}

static void cpu_matmul(backend_t *be, tensor_t x, int T, int d, const matmul_job_t *jobs, int n_jobs,
                       int accumulate) {
    cpu_t *c = be->impl;
    matmul_task_t mt = {c->k, F(x), T, d, 0, accumulate, jobs, n_jobs};
    CHECK(x.ne >= (int64_t)T * d);
    long rows = 0;
    for (int j = 0; j < n_jobs; j++) {
        CHECK(jobs[j].w.ne == (int64_t)jobs[j].n * d);
        CHECK(jobs[j].out_off + (int64_t)T * jobs[j].n <= jobs[j].out.ne);
        CHECK(WT(jobs[j].w) && (!jobs[j].w.packed || c->k->matmul_panels));
        mt.total += n_panels(jobs[j].n), rows += jobs[j].n;
    }
    PROF_BEGIN(c);
    pool_run(c, matmul_worker, &mt, row_chunks(c, mt.total, rows * d * T));
    PROF_END(c, PROF_MATMUL);
}

typedef struct {
    const simd_kernels_t *k;
    float *out, *gate;
    const float *x;
    tensor_t w1, w3;
    int T, d, hid;
} swiglu_task_t;

static void swiglu_worker(void *p, int ith, int nth) {
    const swiglu_task_t *s = p;
    int p0, p1;
    panel_slice(n_panels(s->hid), ith, nth, &p0, &p1);
    if (p0 >= p1) return;
    int r0 = p0 * PANEL, r1 = p1 * PANEL < s->hid ? p1 * PANEL : s->hid;
    product(s->k, s->out, s->hid, s->x, s->w1, s->T, s->d, p0, p1, s->hid, 0);
    product(s->k, s->gate, s->hid, s->x, s->w3, s->T, s->d, p0, p1, s->hid, 0);
    for (int t = 0; t < s->T; t++)
        s->k->silu_mul(s->out + (size_t)t * s->hid + r0, s->gate + (size_t)t * s->hid + r0, r1 - r0);
}

static void cpu_swiglu(backend_t *be, tensor_t out, tensor_t x, tensor_t w1, tensor_t w3, int T, int d,
                       int hid) {
    cpu_t *c = be->impl;
    size_t need = (size_t)T * hid;
    if (need > c->scratch_n) { /* grows to the largest block once, then stays */
        free(c->scratch);
        c->scratch = aligned_alloc(64, (need * sizeof(float) + 63) & ~(size_t)63);
        CHECK(c->scratch != NULL);
        c->scratch_n = need;
    }
    CHECK(w1.ne == (int64_t)hid * d && w3.ne == (int64_t)hid * d && out.ne >= (int64_t)need);
    CHECK(WT(w1) && WT(w3));
    swiglu_task_t s = {c->k, FW(out), c->scratch, F(x), w1, w3, T, d, hid};
    PROF_BEGIN(c);
    pool_run(c, swiglu_worker, &s, row_chunks(c, n_panels(hid), 2L * hid * d * T));
    PROF_END(c, PROF_MATMUL);
}

static void cpu_rope(backend_t *be, tensor_t x, int64_t off, int row_stride, int T, int n_heads, int hd,
                     int pos0, tensor_t cs, rope_style_t style) {
    cpu_t *cc = be->impl;
    PROF_BEGIN(cc);
    CHECK(hd % 2 == 0);
    CHECK(off + (int64_t)(T - 1) * row_stride + (int64_t)n_heads * hd <= x.ne);
    CHECK((int64_t)(pos0 + T) * hd <= cs.ne);
    float *xp = FW(x) + off;
    const float *tab = F(cs);
    int half = hd / 2;
    for (int t = 0; t < T; t++) {
        const float *c = tab + (size_t)(pos0 + t) * hd; /* (hd/2, 2): cos, sin of pair i */
        for (int h = 0; h < n_heads; h++) {
            float *v = xp + (size_t)t * row_stride + (size_t)h * hd;
            if (style == ROPE_INTERLEAVED)
                for (int i = 0; i < half; i++) {
                    float x0 = v[2 * i], x1 = v[2 * i + 1];
                    v[2 * i] = x0 * c[2 * i] - x1 * c[2 * i + 1];
                    v[2 * i + 1] = x0 * c[2 * i + 1] + x1 * c[2 * i];
                }
            else
                for (int i = 0; i < half; i++) {
                    float x0 = v[i], x1 = v[i + half];
                    v[i] = x0 * c[2 * i] - x1 * c[2 * i + 1];
                    v[i + half] = x0 * c[2 * i + 1] + x1 * c[2 * i];
                }
        }
    }
    PROF_END(cc, PROF_ELEM);
}

typedef struct {
    const simd_kernels_t *k;
    float *out;
    const float *q, *kc, *vc;
    int T, pos0, nh, nkv, hd;
} att_task_t;

/* One query head at up to ATT_GROUP consecutive positions t0 .. t0+nt-1:
 * scores over the causal prefix in chunks of ATT_CHUNK positions, merged
 * with a running max (online softmax), so no buffer proportional to the
 * context length is needed. The tokens of a group share each chunk's keys
 * and values: the scores of all of them are one matmul_rows of nt tokens
 * (a row's score does not depend on how many tokens share the call), and
 * each token's weighted sum of the chunk's value rows is one axpy_rows
 * (its output in registers; the rows in L1 after the first token). Every
 * token still sees exactly its own sequence of operations (its chunks, its
 * maxima, its exp-sums over its own positions, its value rows summed in
 * position order), so a block's attention equals single steps' bit for bit. */
#define ATT_GROUP 8
static void att_group(const att_task_t *a, int t0, int nt, int h) {
    int kvd = a->nkv * a->hd, g = h / (a->nh / a->nkv), qs = a->nh * a->hd;
    int n_all = a->pos0 + t0 + nt; /* positions the group's last token sees */
    float sc[ATT_GROUP][ATT_CHUNK], scale = 1.0f / sqrtf((float)a->hd), mx[ATT_GROUP], sum[ATT_GROUP];
    int mt[ATT_GROUP];
    for (int i = 0; i < nt; i++) {
        mx[i] = -INFINITY, sum[i] = 0;
        memset(a->out + (size_t)(t0 + i) * qs + (size_t)h * a->hd, 0, sizeof(float) * a->hd);
    }
    for (int s0 = 0; s0 < n_all; s0 += ATT_CHUNK) {
        int m = n_all - s0 < ATT_CHUNK ? n_all - s0 : ATT_CHUNK;
        /* scores = K[s0:s0+m, g] . q for the nt queries: (m x hd) times nt vectors */
        a->k->matmul_rows(sc[0], ATT_CHUNK, a->q + (size_t)t0 * qs + (size_t)h * a->hd, qs,
                          a->kc + (size_t)s0 * kvd + (size_t)g * a->hd, DTYPE_F32, kvd, nt, a->hd, 0, m, 0);
        for (int i = 0; i < nt; i++) {
            int n = a->pos0 + t0 + i + 1; /* token i sees positions < n */
            mt[i] = n - s0 < 0 ? 0 : n - s0 < m ? n - s0 : m;
            if (!mt[i]) continue;
            float *si = sc[i], *oh = a->out + (size_t)(t0 + i) * qs + (size_t)h * a->hd, cmx = mx[i];
            for (int s = 0; s < mt[i]; s++) {
                si[s] *= scale;
                if (si[s] > cmx) cmx = si[s];
            }
            if (cmx > mx[i]) { /* rescale what was accumulated under the old max */
                float f = expf(mx[i] - cmx);
                sum[i] *= f;
                for (int j = 0; j < a->hd; j++) oh[j] *= f;
                mx[i] = cmx;
            }
            sum[i] += a->k->exp_sub_sum(si, mt[i], mx[i]);
        }
        for (int i = 0; i < nt; i++)
            if (mt[i])
                a->k->axpy_rows(a->out + (size_t)(t0 + i) * qs + (size_t)h * a->hd, sc[i],
                                a->vc + (size_t)s0 * kvd + (size_t)g * a->hd, kvd, mt[i], a->hd);
    }
    for (int i = 0; i < nt; i++) {
        float *oh = a->out + (size_t)(t0 + i) * qs + (size_t)h * a->hd;
        for (int j = 0; j < a->hd; j++) oh[j] /= sum[i];
    }
}

static int att_groups(int T) { return (T + ATT_GROUP - 1) / ATT_GROUP; }

static void att_worker(void *p, int i, int n) {
    const att_task_t *a = p; /* chunk i: a contiguous range of (token group, head) pairs */
    int total = att_groups(a->T) * a->nh, lo = (int)((long)total * i / n), hi = (int)((long)total * (i + 1) / n);
    for (int k = lo; k < hi; k++) {
        int t0 = k / a->nh * ATT_GROUP;
        att_group(a, t0, a->T - t0 < ATT_GROUP ? a->T - t0 : ATT_GROUP, k % a->nh);
    }
}

static void cpu_attention(backend_t *be, tensor_t out, tensor_t q, tensor_t kc, tensor_t vc, int T,
                          int pos0, int n_heads, int n_kv, int hd) {
    cpu_t *c = be->impl;
    CHECK(n_kv > 0 && n_heads % n_kv == 0);
    CHECK((int64_t)(pos0 + T) * n_kv * hd <= kc.ne && kc.ne == vc.ne);
    CHECK(q.ne >= (int64_t)T * n_heads * hd && out.ne >= (int64_t)T * n_heads * hd);
    att_task_t a = {c->k, FW(out), F(q), F(kc), F(vc), T, pos0, n_heads, n_kv, hd};
    int jobs = att_groups(T) * n_heads;
    long work = 2L * T * n_heads * (pos0 + T) * hd; /* scores and values */
    PROF_BEGIN(c);
    pool_run(c, att_worker, &a, work < INLINE_WORK ? 1 : jobs < 1024 ? jobs : 1024);
    PROF_END(c, PROF_ATT);
}

typedef struct {
    const simd_kernels_t *k;
    const float *x;
    int V;
    const int *next;
    int *argmax;
    float *max_p, *nll;
} stats_task_t;

static void stats_worker(void *p, int t, int n) {
    const stats_task_t *s = p; /* one chunk per row */
    const float *row = s->x + (size_t)t * s->V;
    float mx, sum;
    s->k->max_sumexp(row, s->V, &mx, &sum);
    if (s->argmax) {
        int a = 0;
        while (a < s->V - 1 && row[a] != mx) a++; /* first index holding the max */
        s->argmax[t] = a;
    }
    if (s->max_p) s->max_p[t] = 1.0f / sum; /* exp(max - max) / sum */
    if (s->nll) s->nll[t] = s->next && s->next[t] >= 0 ? mx + logf(sum) - row[s->next[t]] : 0.0f;
}

static void cpu_row_stats(backend_t *be, tensor_t x, int64_t off, int T, int V, const int *next, int *argmax,
                          float *max_p, float *nll) {
    cpu_t *c = be->impl;
    CHECK(off >= 0 && off + (int64_t)T * V <= x.ne);
    for (int t = 0; next && t < T; t++) CHECK(next[t] < V);
    stats_task_t s = {c->k, F(x) + off, V, next, argmax, max_p, nll};
    PROF_BEGIN(c);
    pool_run(c, stats_worker, &s, T); /* T <= a block's rows, far below the chunk limit */
    PROF_END(c, PROF_STATS);
}

/* i8_pack's copy: the scales (padded to whole panels, zeros past n), then
 * the panels (simd.h: [k][j] within a panel, rows past n zero) */
static size_t i8_scale_bytes(int n) { return ((size_t)n_panels(n) * PANEL * sizeof(float) + 63) & ~(size_t)63; }

static void *cpu_i8_pack(backend_t *be, const int8_t *q, const float *scale, int n, int d) {
    CHECK(n > 0 && d > 0);
    const int np = n_panels(n);
    char *m = hostmem_alloc(i8_scale_bytes(n) + (size_t)np * d * PANEL);
    if (!m) return NULL;
    float *sc = (float *)m;
    int8_t *w = (int8_t *)(m + i8_scale_bytes(n));
    memset(m, 0, i8_scale_bytes(n) + (size_t)np * d * PANEL);
    memcpy(sc, scale, sizeof(float) * (size_t)n);
    for (int r = 0; r < n; r++)
        for (int k = 0; k < d; k++) w[((size_t)(r / PANEL) * d + k) * PANEL + r % PANEL] = q[(size_t)r * d + k];
    return m;
}

/* i8q_pack's copy: the scales and the sums i8q_half sum_k q (each padded to whole
 * panels, zeros past n), then the panels: for each group of 4 k (d padded
 * with zeros), 16 rows x 4 bytes */
static void *cpu_i8q_pack(backend_t *be, const int8_t *q, const float *scale, int n, int d) {
    const int half = be->i8q_half;
    CHECK(n > 0 && d > 0);
    const int np = n_panels(n), d4 = (d + 3) / 4;
    const size_t sb = i8_scale_bytes(n), pb = (size_t)d4 * PANEL * 4;
    char *m = hostmem_alloc(2 * sb + (size_t)np * pb);
    if (!m) return NULL;
    memset(m, 0, 2 * sb + (size_t)np * pb);
    float *sc = (float *)m;
    int32_t *cs = (int32_t *)(m + sb);
    int8_t *w = (int8_t *)(m + 2 * sb);
    memcpy(sc, scale, sizeof(float) * (size_t)n);
    for (int r = 0; r < n; r++) {
        int32_t sum = 0;
        for (int k = 0; k < d; k++) {
            w[(size_t)(r / PANEL) * pb + ((size_t)(k / 4) * PANEL + r % PANEL) * 4 + k % 4] = q[(size_t)r * d + k];
            sum += q[(size_t)r * d + k];
        }
        cs[r] = half * sum;
    }
    return m;
}

typedef struct {
    const simd_kernels_t *k;
    const void *qp;
    const float *x;
    float *out;
    int n, d, T;
    const uint8_t *u;
    void (*i8q)(float *, int, const uint8_t *, int, const int8_t *, const float *, const int32_t *, const float *, int,
                int, int, int, int);
} i8_task_t;

static void i8q_worker(void *p, int ith, int nth) {
    const i8_task_t *q = p;
    int p0, p1;
    panel_slice(n_panels(q->n), ith, nth, &p0, &p1);
    const size_t sb = i8_scale_bytes(q->n);
    const int d4 = (q->d + 3) / 4;
    if (p0 < p1)
        q->i8q(q->out, q->n, q->u, 4 * d4, (const int8_t *)((const char *)q->qp + 2 * sb), q->qp,
                         (const int32_t *)((const char *)q->qp + sb), q->x, d4, q->T, p0, p1, q->n);
}

static void cpu_i8q_matmul(backend_t *be, const void *qp, int n, int d, const uint8_t *u, const float *xs, int T,
                           float *out) {
    cpu_t *c = be->impl;
    i8_task_t q = {c->k, qp, xs, out, n, d, T, u, be->i8q_half == 128 ? matmul_i8q_avx512_vnni : c->k->matmul_i8q};
    PROF_BEGIN(c);
    pool_run(c, i8q_worker, &q, row_chunks(c, n_panels(n), (long)n * d * T / 4));
    PROF_END(c, PROF_MATMUL);
}

static void i8_worker(void *p, int ith, int nth) {
    const i8_task_t *q = p;
    int p0, p1;
    panel_slice(n_panels(q->n), ith, nth, &p0, &p1);
    if (p0 < p1)
        q->k->matmul_i8(q->out, q->n, q->x, q->d, (const int8_t *)((const char *)q->qp + i8_scale_bytes(q->n)), q->qp,
                        q->d, q->T, p0, p1, q->n);
}

static void cpu_i8_matmul(backend_t *be, const void *qp, int n, int d, const float *x, int T, float *out) {
    cpu_t *c = be->impl;
    i8_task_t q = {c->k, qp, x, out, n, d, T, NULL, NULL};
    PROF_BEGIN(c);
    pool_run(c, i8_worker, &q, row_chunks(c, n_panels(n), (long)n * d * T));
    PROF_END(c, PROF_MATMUL);
}

typedef struct {
    const simd_kernels_t *k;
    const float *a, *n, *s, *n2, *s2;
    int V;
    float *st, *hi;
} scan_task_t;

static void scan_worker(void *p, int t, int n) {
    const scan_task_t *q = p; /* one chunk per row */
    const int nc = (q->V + SCAN_CHUNK - 1) / SCAN_CHUNK;
    q->k->screen_scan(q->a + (size_t)t * q->V, q->V, q->n, q->s[t], q->n2, q->s2[t], q->st + 3 * t,
                      q->hi + (size_t)t * nc);
}

static void cpu_screen_scan(backend_t *be, const float *a, int T, int V, const float *n, const float *s,
                            const float *n2, const float *s2, float *st, float *hi) {
    cpu_t *c = be->impl;
    scan_task_t q = {c->k, a, n, s, n2, s2, V, st, hi};
    PROF_BEGIN(c);
    pool_run(c, scan_worker, &q, T);
    PROF_END(c, PROF_STATS);
}

static void cpu_idle(backend_t *be) { threadpool_park(((cpu_t *)be->impl)->pool); }

static void cpu_destroy(backend_t *be) {
    cpu_t *c = be->impl;
    threadpool_destroy(&c->pool);
    free(c->scratch);
    free(c);
    free(be);
}

void cpu_profile_start(backend_t *be) {
    CHECK(be->device == DEVICE_CPU);
    cpu_t *c = be->impl;
    memset(c->prof_s, 0, sizeof c->prof_s);
    c->handoffs = 0, c->prof = 1;
}

void cpu_profile_stop(backend_t *be, cpu_profile_t *out) {
    CHECK(be->device == DEVICE_CPU);
    cpu_t *c = be->impl;
    c->prof = 0;
    *out = (cpu_profile_t){c->prof_s[PROF_MATMUL], c->prof_s[PROF_ATT], c->prof_s[PROF_ELEM], c->prof_s[PROF_STATS],
                           c->handoffs};
}

/* A chunk that waits until every chunk of its job has started: the job
 * finishes only when each thread has taken one, so it times the whole
 * hand-off (post, wake, claim, complete) and no work. */
typedef struct {
    atomic_int arrived;
    int target;
} meet_t;

static void meet_chunk(void *arg, int i, int n) {
    meet_t *mt = arg;
    atomic_fetch_add(&mt->arrived, 1);
    while (atomic_load(&mt->arrived) < mt->target) CPU_PAUSE();
}

double cpu_handoff_us(backend_t *be, int reps) {
    CHECK(be->device == DEVICE_CPU && reps > 0);
    cpu_t *c = be->impl;
    int n = threadpool_size(c->pool);
    if (n < 2) return 0;
    double t0 = mono_s();
    for (int i = 0; i < reps; i++) {
        meet_t mt = {0, n};
        threadpool_run(c->pool, meet_chunk, &mt, n);
    }
    return (mono_s() - t0) / reps * 1e6;
}

int cpu_packs_weights(void) {
    const char *v = getenv("BILD_PACK");
    return !(v && !strcmp(v, "0"));
}

int cpu_isa_supported(const char *isa) {
    __builtin_cpu_init();
    if (!strcmp(isa, "scalar")) return 1;
    if (!strcmp(isa, "avx2")) /* F16C: f16 weights (every AVX2 CPU has it) */
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (!strcmp(isa, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    return 0;
}

backend_t *backend_cpu_new_isa(int n_threads, const char *isa) {
    const simd_kernels_t *k = NULL;
    if (!isa || !strcmp(isa, "auto")) isa = getenv("BILD_ISA");
    if (!isa || !strcmp(isa, "auto"))
        isa = cpu_isa_supported("avx512") ? "avx512" : cpu_isa_supported("avx2") ? "avx2" : "scalar";
    if (!cpu_isa_supported(isa)) return NULL;
    k = !strcmp(isa, "avx512") ? &simd_avx512 : !strcmp(isa, "avx2") ? &simd_avx2 : &simd_scalar;
    if (n_threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = nc > 0 ? (int)nc : 1;
    }
    backend_t *be = calloc(1, sizeof(*be));
    cpu_t *c = calloc(1, sizeof(*c));
    if (!be || !c || !(c->pool = threadpool_new(n_threads))) {
        free(be);
        free(c);
        return NULL;
    }
    c->k = k;
    /* integer products with VNNI: x's bytes up to 255 (BILD_NO_VNNI=1: without, as on CPUs that lack it) */
    const char *nv = getenv("BILD_NO_VNNI");
    const int vnni = k == &simd_avx512 && __builtin_cpu_supports("avx512vnni") && !(nv && strcmp(nv, "0"));
    *be = (backend_t){
        .name = "cpu", .device = DEVICE_CPU, .n_threads = n_threads, .isa = k->name,
        .alloc = cpu_alloc, .free = cpu_free, .wrap_host = cpu_wrap_host, .pack = cpu_packs_weights() ? cpu_pack : NULL, .upload = cpu_upload, .random = cpu_random, .to_host = cpu_to_host, .from_host = cpu_from_host,
        .embed = cpu_embed, .rmsnorm = cpu_rmsnorm, .matmul = cpu_matmul, .swiglu = cpu_swiglu,
        .rope = cpu_rope, .attention = cpu_attention, .row_stats = cpu_row_stats, .i8_pack = cpu_i8_pack, .i8_matmul = cpu_i8_matmul, .i8q_pack = cpu_i8q_pack, .i8q_matmul = cpu_i8q_matmul, .i8q_half = vnni ? 128 : 64, .screen_scan = cpu_screen_scan, .idle = cpu_idle, .destroy = cpu_destroy, .impl = c,
    };
    return be;
}

backend_t *backend_cpu_new(int n_threads) { return backend_cpu_new_isa(n_threads, NULL); }

void backend_destroy(backend_t **pbe) {
    if (!pbe || !*pbe) return;
    (*pbe)->destroy(*pbe);
    *pbe = NULL;
}
