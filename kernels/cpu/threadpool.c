/* threadpool.c - see threadpool.h.
 *
 * Protocol. One 64-bit atomic word `claim` holds (generation << 32 |
 * n_chunks << 16 | next chunk). To post a job the caller stores fn and arg,
 * resets `done`, then stores claim = (g, n, 0). Every thread claims chunk i
 * by a compare-and-swap of (g, n, i) -> (g, n, i + 1) when i < n, runs it,
 * and increments `done`; the caller returns when done == n. The chunk count
 * lives in the same word as the index: a thread that judged "i < n" with a
 * count from another job than its index could claim a chunk that does not
 * exist. A thread reads fn/arg after loading claim and before its CAS: if
 * the CAS succeeds, chunk i of job g was real and not yet run, so job g was
 * not complete, so the caller had not yet written job g + 1's fn/arg. A
 * thread that finds no chunk left waits for the generation to change.
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
    _Atomic uint64_t claim;
    atomic_int done;
    atomic_int sleepers;
    atomic_int quit;
    atomic_int park; /* threadpool_park: sleep without spinning out SPIN_NS */
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct {
    threadpool_t *tp;
} worker_arg_t;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Claims and runs chunks of the current job until none is left. Returns the
 * generation it found exhausted. */
static uint32_t work(threadpool_t *tp) {
    for (;;) {
        uint64_t c = atomic_load_explicit(&tp->claim, memory_order_acquire);
        threadpool_fn fn = atomic_load_explicit(&tp->fn, memory_order_relaxed);
        void *arg = atomic_load_explicit(&tp->arg, memory_order_relaxed);
        int n = (int)((c >> 16) & 0xffff), i = (int)(c & 0xffff);
        if (i >= n) return (uint32_t)(c >> 32);
        if (atomic_compare_exchange_weak_explicit(&tp->claim, &c, c + 1, memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            fn(arg, i, n);
            atomic_fetch_add_explicit(&tp->done, 1, memory_order_release);
        }
    }
}

static void *worker_main(void *p) {
    threadpool_t *tp = ((worker_arg_t *)p)->tp;
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
        seen = work(tp);
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
    if (!tp->threads) {
        free(tp);
        return NULL;
    }
    for (int i = 1; i < n; i++) {
        worker_arg_t *wa = malloc(sizeof(*wa));
        if (wa) wa->tp = tp;
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
    /* seq_cst: publishes the job */
    atomic_store(&tp->claim, (uint64_t)++tp->gen << 32 | (uint64_t)n_chunks << 16);
    if (atomic_load(&tp->sleepers) > 0) {
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->cv);
        pthread_mutex_unlock(&tp->mu);
    }
    work(tp);
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
    free(tp);
    *ptp = NULL;
}
