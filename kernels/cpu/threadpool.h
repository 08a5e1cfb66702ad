/* threadpool.h - a persistent pool of worker threads for the CPU backend.
 *
 * threadpool_run(fn, arg, n_chunks) runs fn(arg, i, n_chunks) once for every
 * chunk i in [0, n_chunks), spread over the pool's threads (the caller works
 * too), and returns when all chunks are done. Threads are created once.
 *
 * Each thread owns an equal run of the chunks (thread t of N: chunks
 * [t n / N, (t + 1) n / N), the caller being thread 0), so it meets the same
 * data job after job (a small model's weights stay in its core's L2), but
 * chunks are claimed, not assigned: when the machine has more runnable
 * threads than cores and a worker is descheduled, the caller (or another
 * worker) takes its unstarted chunks instead of waiting a whole scheduler
 * slice for it. That keeps a busy machine at roughly one-thread speed rather
 * than far below it. Between jobs, workers spin briefly (a forward pass
 * issues dozens of jobs per token, and a futex wake-up would cost more than a
 * small job), yielding now and then, and then sleep on a condition variable,
 * so an idle engine uses no CPU.
 */
#ifndef BILD_THREADPOOL_H
#define BILD_THREADPOOL_H

#define THREADPOOL_MAX_CHUNKS 65535 /* most chunks one job may have */

typedef void (*threadpool_fn)(void *arg, int chunk, int n_chunks);
typedef struct threadpool threadpool_t;

/* n >= 1 threads in all, including the caller. NULL on failure. Caller owns. */
threadpool_t *threadpool_new(int n);
/* Runs every chunk and waits. Not reentrant: one caller at a time. */
void threadpool_run(threadpool_t *tp, threadpool_fn fn, void *arg, int n_chunks);
int threadpool_size(const threadpool_t *tp);
/* A hint that no job will come for a while (a worker process between
 * requests, while another process needs the cores): the helper threads
 * sleep now instead of spinning out SPIN_NS. The next run wakes them. */
void threadpool_park(threadpool_t *tp);
/* Joins the workers; accepts NULL and sets *ptp = NULL. */
void threadpool_destroy(threadpool_t **ptp);

#endif
