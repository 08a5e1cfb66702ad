/* threadpool.c - see threadpool.h.
 *
 * Protocol. One 64-bit atomic word `claim` holds (generation << 32 |
 * n_chunks << 16) and publishes each job; each thread t has a word `own[t]`
 * holding (generation << 32 | end << 16 | next): the chunks [next, end) of
 * its share that nobody has taken yet. To post a job the caller stores fn
 * and arg, resets `done`, stores every share (thread t: the t-th of n equal
 * runs of chunks), then stores claim. A thread takes chunk `next` of its own
 * share by a compare-and-swap of (g, end, next) -> (g, end, next + 1), and,
 * once its share is empty, steals the last chunk of another's by (g, end,
 * next) -> (g, end - 1, next); it runs the chunk and increments `done`; the
 * caller returns when done == n. The generation in every word means that a
 * thread still working on an old job cannot take a chunk of a new one. A
 * thread reads fn/arg after loading a word of generation g and before its
 * CAS: if the CAS succeeds, a chunk of job g was real and not yet run, so job
 * g was not complete, so the caller had not yet written job g + 1's fn/arg.
 * A thread that finds nothing left waits for the generation to change.
 *
 * Owned shares make each thread run the same chunks job after job, so the
 * weights it read last time may still be in its core's L2 (a small model's
 * matrices split over two cores fit there); stealing keeps the dynamic
 * behaviour for a descheduled thread.
 *
 * Sleeping: after SPIN_NS without a new generation a worker increments
 * `sleepers` and re-checks the generation under the mutex before waiting;
 * the caller, after posting, broadcasts if sleepers > 0. Both use sequentially
 * consistent atomics for that pair of accesses, so either the worker sees the
 * new job or the caller sees the sleeper (no lost wake-up).
 */
#include "kernels/cpu/threadpool.h"

#include "kernels/check.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_NS 2000000LL /* 2 ms of spinning before a worker sleeps */

struct threadpool {
    int n;
    pthread_t *threads;
    uint32_t gen; /* caller-side count of posted jobs */
    _Atomic(threadpool_fn) fn;
    _Atomic(void *) arg;
    atomic_int nch; /* the job's chunk count, written with fn and arg */
    _Atomic uint64_t claim;
    struct share {
        _Atomic uint64_t w;
        char pad[56]; /* a cache line each */
    } *own;           /* (n) */
    atomic_int done;
    atomic_int sleepers;
    atomic_int quit;
    atomic_int park; /* threadpool_park: sleep without spinning out SPIN_NS */
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct {
    threadpool_t *tp;
    int id;
} worker_arg_t;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Runs chunks of job g, its own share first, then the others' from their
 * ends, until none is left. Returns g. */
static uint32_t work(threadpool_t *tp, int id, uint32_t g) {
    for (int k = 0; k < tp->n; k++) {
        const int t = (id + k) % tp->n;
        for (;;) {
            uint64_t c = atomic_load_explicit(&tp->own[t].w, memory_order_acquire);
            threadpool_fn fn = atomic_load_explicit(&tp->fn, memory_order_relaxed);
            void *arg = atomic_load_explicit(&tp->arg, memory_order_relaxed);
            const int n = atomic_load_explicit(&tp->nch, memory_order_relaxed);
            const int next = (int)(c & 0xffff), end = (int)((c >> 16) & 0xffff);
            if ((uint32_t)(c >> 32) != g || next >= end) break;
            const int i = t == id ? next : end - 1;
            const uint64_t to = t == id ? c + 1 : c - ((uint64_t)1 << 16);
            if (atomic_compare_exchange_weak_explicit(&tp->own[t].w, &c, to, memory_order_acq_rel,
                                                      memory_order_relaxed)) {
                fn(arg, i, n);
                atomic_fetch_add_explicit(&tp->done, 1, memory_order_release);
            }
        }
    }
    return g;
}

static void *worker_main(void *p) {
    threadpool_t *tp = ((worker_arg_t *)p)->tp;
    const int id = ((worker_arg_t *)p)->id;
    free(p);
    uint32_t seen = 0; /* generations start at 1; a job may be posted before we get here */
    for (;;) {
        long long t0 = now_ns();
        for (int k = 1;; k++) {
            uint32_t g = (uint32_t)(atomic_load_explicit(&tp->claim, memory_order_acquire) >> 32);
            if (g != seen || atomic_load_explicit(&tp->quit, memory_order_relaxed)) break;
            CPU_RELAX();
            if ((k & 1023) == 0) sched_yield(); /* let a thread that shares our core run */
            if ((k & 255) == 0 && (atomic_load_explicit(&tp->park, memory_order_relaxed) || now_ns() - t0 > SPIN_NS)) {
                pthread_mutex_lock(&tp->mu);
                atomic_fetch_add(&tp->sleepers, 1);
                while ((uint32_t)(atomic_load(&tp->claim) >> 32) == seen && !atomic_load(&tp->quit))
                    pthread_cond_wait(&tp->cv, &tp->mu);
                atomic_fetch_sub(&tp->sleepers, 1);
                pthread_mutex_unlock(&tp->mu);
                t0 = now_ns();
            }
        }
        if (atomic_load(&tp->quit)) return NULL;
        seen = work(tp, id, (uint32_t)(atomic_load_explicit(&tp->claim, memory_order_acquire) >> 32));
    }
}

threadpool_t *threadpool_new(int n) {
    if (n < 1) return NULL;
    threadpool_t *tp = calloc(1, sizeof(*tp));
    if (!tp) return NULL;
    tp->n = n;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    tp->threads = calloc((size_t)n, sizeof(pthread_t));
    tp->own = aligned_alloc(64, sizeof(struct share) * (size_t)n);
    if (!tp->threads || !tp->own) {
        free(tp->threads), free(tp->own), free(tp);
        return NULL;
    }
    for (int i = 0; i < n; i++) atomic_init(&tp->own[i].w, 0); /* generation 0: never posted */
    for (int i = 1; i < n; i++) {
        worker_arg_t *wa = malloc(sizeof(*wa));
        if (wa) wa->tp = tp, wa->id = i;
        if (!wa || pthread_create(&tp->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            tp->n = i; /* join only the workers that started */
            threadpool_destroy(&tp);
            return NULL;
        }
    }
    return tp;
}

void threadpool_run(threadpool_t *tp, threadpool_fn fn, void *arg, int n_chunks) {
    if (n_chunks <= 0) return;
    CHECK(n_chunks <= THREADPOOL_MAX_CHUNKS);
    if (tp->n == 1 || n_chunks == 1) {
        for (int i = 0; i < n_chunks; i++) fn(arg, i, n_chunks);
        return;
    }
    atomic_store_explicit(&tp->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&tp->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&tp->done, 0, memory_order_relaxed);
    atomic_store_explicit(&tp->park, 0, memory_order_relaxed);
    atomic_store_explicit(&tp->nch, n_chunks, memory_order_relaxed);
    const uint64_t g = ++tp->gen;
    for (int t = 0; t < tp->n; t++) { /* thread t's share: chunks [t n / N, (t + 1) n / N) */
        const uint64_t a = (uint64_t)n_chunks * t / tp->n, b = (uint64_t)n_chunks * (t + 1) / tp->n;
        atomic_store_explicit(&tp->own[t].w, g << 32 | b << 16 | a, memory_order_relaxed);
    }
    /* seq_cst: publishes the job */
    atomic_store(&tp->claim, g << 32 | (uint64_t)n_chunks << 16);
    if (atomic_load(&tp->sleepers) > 0) {
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->cv);
        pthread_mutex_unlock(&tp->mu);
    }
    work(tp, 0, (uint32_t)g);
    for (int k = 1; atomic_load_explicit(&tp->done, memory_order_acquire) != n_chunks; k++) {
        CPU_RELAX(); /* a worker is finishing a chunk it claimed */
        if ((k & 1023) == 0) sched_yield();
    }
}

int threadpool_size(const threadpool_t *tp) { return tp->n; }

void threadpool_park(threadpool_t *tp) { atomic_store_explicit(&tp->park, 1, memory_order_relaxed); }

void threadpool_destroy(threadpool_t **ptp) {
    if (!ptp || !*ptp) return;
    threadpool_t *tp = *ptp;
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->quit, 1);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 1; i < tp->n; i++) pthread_join(tp->threads[i], NULL);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->cv);
    free(tp->threads);
    free(tp->own);
    free(tp);
    *ptp = NULL;
}
