/* threadpool.c - see threadpool.h.
 *
 * Protocol: the caller publishes (fn, arg) and bumps `generation`; workers
 * that see a new generation run their share and increment `done`; the caller
 * runs share 0 and spins until done == n - 1. A worker that has waited
 * longer than SPIN_NS without a new generation sleeps: it increments
 * `sleepers` and re-checks the generation under the mutex before waiting,
 * and the caller, after bumping the generation, broadcasts if sleepers > 0.
 * Both sides use sequentially consistent atomics for that pair of accesses,
 * so either the worker sees the new generation or the caller sees the
 * sleeper (no lost wake-up).
 */
#include "kernels/cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
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
    threadpool_fn fn;
    void *arg;
    atomic_uint generation;
    atomic_int done;
    atomic_int sleepers;
    atomic_int quit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct {
    threadpool_t *tp;
    int ith;
} worker_arg_t;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *worker_main(void *p) {
    worker_arg_t wa = *(worker_arg_t *)p;
    free(p);
    threadpool_t *tp = wa.tp;
    unsigned seen = 0; /* generation starts at 0; a job may be posted before we get here */
    for (;;) {
        long long t0 = now_ns();
        unsigned g;
        for (int k = 0;; k++) {
            g = atomic_load_explicit(&tp->generation, memory_order_acquire);
            if (g != seen || atomic_load_explicit(&tp->quit, memory_order_relaxed)) break;
            CPU_RELAX();
            if ((k & 1023) == 1023) sched_yield(); /* let a thread that shares our core run */
            if ((k & 255) == 255 && now_ns() - t0 > SPIN_NS) {
                pthread_mutex_lock(&tp->mu);
                atomic_fetch_add(&tp->sleepers, 1);
                while (atomic_load(&tp->generation) == seen && !atomic_load(&tp->quit))
                    pthread_cond_wait(&tp->cv, &tp->mu);
                atomic_fetch_sub(&tp->sleepers, 1);
                pthread_mutex_unlock(&tp->mu);
                t0 = now_ns();
            }
        }
        if (atomic_load(&tp->quit)) return NULL;
        seen = g;
        tp->fn(tp->arg, wa.ith, tp->n);
        atomic_fetch_add_explicit(&tp->done, 1, memory_order_release);
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
        if (wa) *wa = (worker_arg_t){tp, i};
        if (!wa || pthread_create(&tp->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            tp->n = i; /* join only the workers that started */
            threadpool_destroy(&tp);
            return NULL;
        }
    }
    return tp;
}

void threadpool_run(threadpool_t *tp, threadpool_fn fn, void *arg) {
    if (tp->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    atomic_store_explicit(&tp->done, 0, memory_order_relaxed);
    atomic_fetch_add(&tp->generation, 1); /* seq_cst: publishes fn/arg, pairs with sleepers */
    if (atomic_load(&tp->sleepers) > 0) {
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->cv);
        pthread_mutex_unlock(&tp->mu);
    }
    fn(arg, 0, tp->n);
    for (int k = 1; atomic_load_explicit(&tp->done, memory_order_acquire) != tp->n - 1; k++) {
        CPU_RELAX();
        /* A worker may be descheduled (more runnable threads than cores):
         * yielding now and then lets it run instead of burning our slice. */
        if ((k & 1023) == 0) sched_yield();
    }
}

int threadpool_size(const threadpool_t *tp) { return tp->n; }

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
