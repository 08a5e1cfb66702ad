/* session.h - runs one generation: asks the policy what to do, carries each
 * request to the small or large worker link, feeds the result back, and
 * times the workers. Knows nothing of where the workers run. */
#ifndef BILD_SESSION_H
#define BILD_SESSION_H

#include "coordinator/policy.h"
#include "coordinator/worker.h"

typedef struct {
    double small_s;  /* time inside small-worker calls */
    double large_s;  /* time inside large-worker calls */
    double total_s;  /* the whole generation */
} session_times_t;

/* Runs p to completion. Returns 0, or -1 with a message naming the worker
 * in err (a worker call failed or returned a result the policy refused). */
int session_run(policy_t *p, const small_link_t *small, const large_link_t *large, session_times_t *tm,
                char *err, int errlen);

#endif
