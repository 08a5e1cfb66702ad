/* threadpool.h - a persistent pool of worker threads for the CPU backend.
 *
 * threadpool_run(fn) runs fn(arg, i, n) once on each of the n threads (the
 * caller is thread 0) and returns when all are done. Threads are created
 * once; between jobs they spin briefly (a forward pass issues dozens of jobs
 * per token, and a futex wake-up would cost more than a small job), then
 * sleep on a condition variable so an idle engine uses no CPU.
 */
#ifndef BILD_THREADPOOL_H
#define BILD_THREADPOOL_H

typedef void (*threadpool_fn)(void *arg, int ith, int nth);
typedef struct threadpool threadpool_t;

/* n >= 1 threads in all, including the caller. NULL on failure. Caller owns. */
threadpool_t *threadpool_new(int n);
/* Runs fn on every thread and waits. Not reentrant: one caller at a time. */
void threadpool_run(threadpool_t *tp, threadpool_fn fn, void *arg);
int threadpool_size(const threadpool_t *tp);
/* Joins the workers; accepts NULL and sets *ptp = NULL. */
void threadpool_destroy(threadpool_t **ptp);

#endif
