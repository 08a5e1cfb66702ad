/* test_threadpool.c - the thread pool runs every chunk of every job exactly
 * once, with the job's own function and argument, across many back-to-back
 * jobs whose chunk counts change from job to job (the case where a thread
 * still looking at the last job meets the next one), for 2 to 5 threads (on
 * this 2-core machine, more threads than cores: descheduled workers). */
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cpu/threadpool.h"
#include "tests/test.h"

typedef struct {
    unsigned magic;
    int n;
    atomic_int hits[64];
    atomic_int bad;
} job_t;

static void fn_a(void *p, int i, int n) {
    job_t *j = p;
    if (j->magic != 0xA11CEu || n != j->n || i < 0 || i >= n) atomic_fetch_add(&j->bad, 1);
    else atomic_fetch_add(&j->hits[i], 1);
}

static void fn_b(void *p, int i, int n) {
    job_t *j = p;
    if (j->magic != 0xB0Bu || n != j->n || i < 0 || i >= n) atomic_fetch_add(&j->bad, 1);
    else atomic_fetch_add(&j->hits[i], 1);
}

int main(void) {
    alarm(120); /* a lost wake-up or a miscounted job hangs: fail by alarm instead */
    unsigned rng = 12345;
    long jobs = 0;
    for (int nt = 2; nt <= 5; nt++) {
        threadpool_t *tp = threadpool_new(nt);
        EXPECT(tp && threadpool_size(tp) == nt);
        job_t a[2], b[2]; /* alternate structures so a stale argument shows */
        for (int k = 0; k < 60000; k++) {
            rng = rng * 1103515245u + 12345u;
            int n = 1 + (int)((rng >> 16) % 64);
            job_t *j = (k & 1) ? &b[(k >> 1) & 1] : &a[(k >> 1) & 1];
            memset(j, 0, sizeof *j);
            j->magic = (k & 1) ? 0xB0Bu : 0xA11CEu;
            j->n = n;
            threadpool_run(tp, (k & 1) ? fn_b : fn_a, j, n);
            int ok = atomic_load(&j->bad) == 0;
            for (int i = 0; i < n; i++) ok &= atomic_load(&j->hits[i]) == 1;
            for (int i = n; i < 64; i++) ok &= atomic_load(&j->hits[i]) == 0;
            if (!ok) {
                fprintf(stderr, "threads %d, job %d (%d chunks): a chunk ran twice, not at all, or with the wrong "
                                "function/argument\n", nt, k, n);
                EXPECT(0);
                break;
            }
            jobs++;
        }
        threadpool_destroy(&tp);
        EXPECT(tp == NULL);
    }
    fprintf(stderr, "%ld jobs checked\n", jobs);
    return TEST_DONE("test_threadpool");
}
