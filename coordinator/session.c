/* session.c - the session driver (see session.h). */
#include "coordinator/session.h"

#include <stdio.h>

#include "model/generate.h"

int session_run(policy_t *p, const small_link_t *small, const large_link_t *large, session_times_t *tm,
                char *err, int errlen) {
    char why[256];
    draft_req_t dq;
    verify_req_t vq;
    draft_res_t dr;
    verify_res_t vr;
    *tm = (session_times_t){0};
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
            if (small->draft(small->self, &dq, &dr, why, sizeof why) != 0) {
                snprintf(err, (size_t)errlen, "small worker: %s", why);
                return -1;
            }
            tm->small_s += now_s() - t0;
            if (policy_on_draft(p, &dr, why, sizeof why) != 0) {
                snprintf(err, (size_t)errlen, "small worker: %s", why);
                return -1;
            }
        } else {
            if (large->verify(large->self, &vq, &vr, why, sizeof why) != 0) {
                snprintf(err, (size_t)errlen, "large worker: %s", why);
                return -1;
            }
            tm->large_s += now_s() - t0;
            if (policy_on_verify(p, &vr, why, sizeof why) != 0) {
                snprintf(err, (size_t)errlen, "large worker: %s", why);
                return -1;
            }
        }
    }
    tm->total_s = now_s() - start;
    return 0;
}
