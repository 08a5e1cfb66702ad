/* test_t5_bild.c - BiLD on a T5 encoder-decoder pair, in process: the policy
 * (coordinator/policy.c) and session driver, unchanged, with the T5 draft
 * and verify calls (small_worker/t5_drafter.c, large_worker/t5_verifier.c).
 * Large: tests/data/t5/t5v11_f32 (gated-gelu, untied); small: a noisy copy
 * of it (tests/data/t5bild/small, tools/ref/bild_t5_ref.py noisy), so that
 * fallbacks and rollbacks both happen.
 *  1. faithful mode reproduces, token for token and count for count, the
 *     independent reference (bild_ref.py's faithful loop on t5_ref.py
 *     oracles: tests/data/t5bild/faithful.json) on 5 sources x 12 threshold
 *     pairs, max_small 10, 40 tokens;
 *  2. the default mode with rollback 0.5 (< ln 2) gives exactly the large
 *     model's greedy text (the reference's) on every source. */
#include <cjson/cJSON.h>
#include <string.h>

#include "coordinator/policy.h"
#include "coordinator/session.h"
#include "kernels/cpu/cpu.h"
#include "large_worker/t5_verifier.h"
#include "model/t5.h"
#include "small_worker/t5_drafter.h"
#include "tests/test.h"
#include "tests/test_json.h"

static int get_int(const cJSON *o, const char *k) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(j) ? j->valueint : -999;
}

static int ints(const cJSON *a, int *out, int max) {
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) if (n < max) out[n++] = e->valueint;
    return n;
}

typedef struct {
    t5_state_t *ss, *sl;
    t5_drafter_t *dr;
    t5_verifier_t *vf;
    int start, eos, V;
} pair_t;

/* Runs one generation on source src; returns the policy (caller destroys). */
static policy_t *run(pair_t *pr, policy_params_t pp, const int *src, int ns) {
    char err[256];
    pp.vocab_size = pr->V, pp.stop_a = pp.stop_b = pr->eos;
    policy_t *p = policy_new(&pp, &pr->start, 1, err, sizeof err);
    EXPECT(p != NULL);
    if (!p) return NULL;
    EXPECT(t5_encode(pr->ss, src, ns, NULL) == 0 && t5_encode(pr->sl, src, ns, NULL) == 0);
    small_link_t s = t5_drafter_link(pr->dr);
    large_link_t l = t5_verifier_link(pr->vf);
    session_times_t tm;
    int rc = session_run(p, &s, &l, 0, &tm, err, sizeof err);
    if (rc) fprintf(stderr, "session: %s\n", err);
    EXPECT(rc == 0);
    return p;
}

int main(void) {
    char err[512];
    t5_model_t *ml = t5_open("tests/data/t5/t5v11_f32", err, sizeof err), *ms = NULL;
    if (ml) ms = t5_open("tests/data/t5bild/small", err, sizeof err);
    cJSON *gold = test_read_json("tests/data/t5bild/faithful.json");
    if (!ml || !ms || !gold) {
        fprintf(stderr, "%s\n", !gold ? "tests/data/t5bild/faithful.json missing or corrupt" : err);
        return 1;
    }
    backend_t *be = backend_cpu_new(2);
    pair_t pr = {t5_state_new(ms, be, 64, 64), t5_state_new(ml, be, 64, 64), NULL, NULL,
                 t5_config(ml)->decoder_start, t5_config(ml)->eos, t5_config(ml)->vocab_size};
    pr.dr = t5_drafter_new(pr.ss, pr.eos, pr.eos);
    pr.vf = t5_verifier_new(pr.sl);
    EXPECT(be && pr.ss && pr.sl && pr.dr && pr.vf);
    if (!be || !pr.ss || !pr.sl || !pr.dr || !pr.vf) return 1;

    const cJSON *sources = cJSON_GetObjectItemCaseSensitive(gold, "sources"), *r;
    int checked = 0, matched = 0, fragile = 0, fb = 0, rb = 0;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(gold, "runs")) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "fragile"))) {
            fragile++;
            continue;
        }
        int src[64], ns = ints(cJSON_GetArrayItem(sources, get_int(r, "source_index")), src, 64);
        policy_params_t pp = {.mode = POLICY_BILD, .faithful = 1,
                              .alpha_fb = (float)cJSON_GetObjectItemCaseSensitive(r, "alpha_fb")->valuedouble,
                              .alpha_rb = (float)cJSON_GetObjectItemCaseSensitive(r, "alpha_rb")->valuedouble,
                              .max_small = get_int(r, "max_small"), .max_new = get_int(r, "n")};
        policy_t *p = run(&pr, pp, src, ns);
        if (!p) continue;
        int n, want[128], nw = ints(cJSON_GetObjectItemCaseSensitive(r, "tokens"), want, 128);
        const int *out = policy_output(p, &n);
        const policy_stats_t *s = policy_stats(p);
        int ok = n == nw && !memcmp(out, want, sizeof(int) * (size_t)n) &&
                 s->large_passes == get_int(r, "n_large_passes") && s->small_passes == get_int(r, "n_small_passes") &&
                 s->fallbacks == get_int(r, "fallbacks") && s->rollbacks == get_int(r, "rollbacks") &&
                 s->rolled_back == get_int(r, "rolled_back") && s->small_tokens == get_int(r, "small_tokens") &&
                 s->large_tokens == get_int(r, "large_tokens");
        if (!ok)
            fprintf(stderr, "faithful source %d fb %.1f rb %.0f: C %d tokens, N_L %d, N_S %d, fb %d, rb %d (%d) vs "
                    "reference %d tokens, N_L %d, N_S %d, fb %d, rb %d (%d)\n", get_int(r, "source_index"),
                    pp.alpha_fb, pp.alpha_rb, n, s->large_passes, s->small_passes, s->fallbacks, s->rollbacks,
                    s->rolled_back, nw, get_int(r, "n_large_passes"), get_int(r, "n_small_passes"),
                    get_int(r, "fallbacks"), get_int(r, "rollbacks"), get_int(r, "rolled_back"));
        EXPECT(ok);
        matched += ok, checked++, fb += s->fallbacks, rb += s->rollbacks;
        policy_destroy(&p);
    }
    fprintf(stderr, "faithful mode on a T5 pair: %d of %d reference runs identical (tokens and counts; %d fallbacks, "
            "%d rollbacks in all); %d fragile runs skipped\n", matched, checked, fb, rb, fragile);
    EXPECT(checked >= 50 && fb > 0 && rb > 0);

    /* 2. default mode, rollback 0.5: the large model's greedy text */
    int si = 0, exact = 0, nsrc = 0;
    const cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(gold, "large_greedy")) {
        int src[64], ns = ints(cJSON_GetArrayItem(sources, si++), src, 64);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g, "fragile"))) continue;
        int want[128], nw = ints(cJSON_GetObjectItemCaseSensitive(g, "tokens"), want, 128), n;
        policy_params_t pp = {.mode = POLICY_BILD, .direct = 1, .alpha_fb = 0.3f, .alpha_rb = 0.5f, .max_small = 4,
                              .max_new = 40};
        policy_t *p = run(&pr, pp, src, ns);
        if (!p) continue;
        const int *out = policy_output(p, &n);
        int ok = n == nw && !memcmp(out, want, sizeof(int) * (size_t)n);
        if (!ok) fprintf(stderr, "exact setting, source %d: %d tokens, want the large model's %d\n", si - 1, n, nw);
        EXPECT(ok);
        exact += ok, nsrc++;
        policy_destroy(&p);
    }
    fprintf(stderr, "default mode, rollback 0.5: %d of %d sources give the large model's greedy text\n", exact, nsrc);
    EXPECT(nsrc >= 4);

    t5_drafter_destroy(&pr.dr);
    t5_verifier_destroy(&pr.vf);
    t5_state_free(pr.ss), t5_state_free(pr.sl);
    be->destroy(be);
    t5_close(ms), t5_close(ml);
    cJSON_Delete(gold);
    return TEST_DONE("test_t5_bild");
}
