/* session.h - runs one generation: asks the policy what to do, carries each
 * request to the small or large worker link, feeds the result back, and
 * times the workers. Knows nothing of where the workers run.
 *
 * With overlap on, a verification that follows a fallback is sent with the
 * large link's two-halves call, and while the large worker computes, the
 * small worker drafts on from its own guess for the next token (see
 * policy_speculate); the draft is used when the verdict makes it the
 * policy's next request, and dropped otherwise (the next draft request
 * truncates the small cache below it). Greedy output is the same either
 * way. Links without the two-halves call run sequentially. */
#ifndef BILD_SESSION_H
#define BILD_SESSION_H

#include "coordinator/policy.h"
#include "common/worker.h"

typedef struct {
    double small_s;  /* time inside small-worker calls */
    double large_s;  /* time inside large-worker calls (with overlap: from send to reply) */
    double total_s;  /* the whole generation */
    int spec_drafts; /* overlap: drafts made during a verification */
    int spec_kept;   /* ... of which the policy used */
} session_times_t;

/* Runs p to completion. Returns 0, or -1 with a message naming the worker
 * in err (a worker call failed or returned a result the policy refused). */
int session_run(policy_t *p, const small_link_t *small, const large_link_t *large, int overlap,
                session_times_t *tm, char *err, int errlen);

#endif
