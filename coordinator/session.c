/* session.c - the session driver (see session.h). */
#include "coordinator/session.h"

#include <stdio.h>
#include <string.h>

#include "model/generate.h"

#define SPEC_MAX_FEED 64 /* a speculative draft feeds the guess, and rarely more */

static int same_request(const draft_req_t *a, const draft_req_t *b) {
    return a->keep == b->keep && a->n_feed == b->n_feed && a->k == b->k && a->alpha_fb == b->alpha_fb &&
           a->want_probs == b->want_probs && !memcmp(a->feed, b->feed, sizeof(int) * (size_t)a->n_feed);
}

int session_run(policy_t *p, const small_link_t *small, const large_link_t *large, int overlap,
                session_times_t *tm, char *err, int errlen) {
    char why[1024];
    draft_req_t dq, sq;
    verify_req_t vq;
    draft_res_t dr, sr;
    verify_res_t vr;
    int spec_feed[SPEC_MAX_FEED], have_spec = 0, last_guess = -1;
    *tm = (session_times_t){0};
    overlap = overlap && large->verify_start && large->verify_finish;
    double start = now_s();
    for (;;) {
        policy_act_t a = policy_next(p, &dq, &vq);
        if (a == ACT_DONE) break;
        if (a == ACT_ERROR) {
            snprintf(err, (size_t)errlen, "the policy is in an error state");
            return -1;
        }
        double t0 = now_s();
        if (a == ACT_DRAFT) {
            if (have_spec && same_request(&dq, &sq)) { /* drafted while the large worker verified */
                dr = sr;
                tm->spec_kept++;
            } else if (small->draft(small->self, &dq, &dr, why, sizeof why) != 0) {
                snprintf(err, (size_t)errlen, "%s", why);
                return -1;
            }
            have_spec = 0;
            tm->small_s += now_s() - t0;
            last_guess = dr.end == DRAFT_FALLBACK ? dr.guess : -1;
            if (policy_on_draft(p, &dr, why, sizeof why) != 0) {
                snprintf(err, (size_t)errlen, "small worker: %s", why);
                return -1;
            }
            continue;
        }
        have_spec = 0;
        if (overlap && last_guess >= 0 && policy_speculate(p, last_guess, &sq) && sq.n_feed <= SPEC_MAX_FEED) {
            memcpy(spec_feed, sq.feed, sizeof(int) * (size_t)sq.n_feed);
            sq.feed = spec_feed;
            if (large->verify_start(large->self, &vq, why, sizeof why) != 0) {
                snprintf(err, (size_t)errlen, "%s", why);
                return -1;
            }
            double t1 = now_s();
            if (small->draft(small->self, &sq, &sr, why, sizeof why) != 0) {
                snprintf(err, (size_t)errlen, "%s", why);
                return -1;
            }
            tm->small_s += now_s() - t1;
            tm->spec_drafts++;
            have_spec = 1;
            if (large->verify_finish(large->self, &vr, why, sizeof why) != 0) {
                snprintf(err, (size_t)errlen, "%s", why);
                return -1;
            }
        } else if (large->verify(large->self, &vq, &vr, why, sizeof why) != 0) {
            snprintf(err, (size_t)errlen, "%s", why);
            return -1;
        }
        last_guess = -1;
        tm->large_s += now_s() - t0;
        if (policy_on_verify(p, &vr, why, sizeof why) != 0) {
            snprintf(err, (size_t)errlen, "large worker: %s", why);
            return -1;
        }
    }
    tm->total_s = now_s() - start;
    return 0;
}
