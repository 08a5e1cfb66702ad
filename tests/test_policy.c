/* test_policy.c - the BiLD policy state machine against scripted fake
 * workers: exact-output properties over many random model pairs, the
 * statistics identities, the stop-token and length edge cases of both modes,
 * and refusal of impossible worker results.
 *
 * The fake models are deterministic functions of the whole prefix (a hash),
 * over a vocabulary of 12 with stop token 2: the large model's "argmax" is
 * hash(prefix) % V and -log p of any other token is a hash-derived distance
 * in [0, 8) nats; the small model agrees with the large one with a chosen
 * probability and has a hash-derived confidence. The fake workers keep their
 * own copy of what they have "cached" and check that the policy never asks
 * them to skip positions. */
#include <string.h>

#include "coordinator/policy.h"
#include "coordinator/session.h"
#include "tests/test.h"

#define V 12
#define STOP 2

static unsigned hash_seq(const int *s, int n, unsigned salt) {
    unsigned h = 2166136261u ^ salt;
    for (int i = 0; i < n; i++) h = (h ^ (unsigned)s[i]) * 16777619u;
    h ^= h >> 13, h *= 0x5bd1e995u, h ^= h >> 15;
    return h;
}

typedef struct {
    int seq[512];
    int len;          /* positions "cached" */
    unsigned salt;
    int agree_pct;    /* small: how often it copies the large model */
    int stop_pct;     /* how often a position's large token is the stop token */
    int violations;   /* requests that skipped positions */
} fake_t;

static int large_tok(const int *s, int n, unsigned salt, int stop_pct) {
    unsigned h = hash_seq(s, n, salt);
    if ((int)(h % 100) < stop_pct) return STOP;
    int t = 3 + (int)((h >> 8) % (V - 3));
    return t;
}

static float large_nll(const int *s, int n, int y, unsigned salt, int stop_pct) {
    if (y == large_tok(s, n, salt, stop_pct)) return 0.05f;
    unsigned h = hash_seq(s, n, salt ^ (unsigned)y * 7919u);
    return 0.1f + (float)(h % 7900) / 1000.0f; /* [0.1, 8) */
}

static int small_fake_draft(void *self, const draft_req_t *q, draft_res_t *r, char *err, int errlen) {
    fake_t *f = self;
    if (q->keep > f->len) f->violations++;
    f->len = q->keep;
    memcpy(f->seq + f->len, q->feed, sizeof(int) * q->n_feed);
    f->len += q->n_feed;
    r->n = 0, r->passes = 1, r->end = DRAFT_LIMIT, r->guess = -1;
    for (;;) {
        unsigned h = hash_seq(f->seq, f->len, f->salt ^ 0xabcdu);
        int tok = (int)(h % 100) < f->agree_pct ? large_tok(f->seq, f->len, 1u, f->stop_pct)
                                                 : 3 + (int)((h >> 8) % (V - 3));
        float mp = (float)((h >> 16) % 1000) / 1000.0f;
        if (mp < q->alpha_fb) {
            r->end = DRAFT_FALLBACK, r->guess = tok;
            break;
        }
        if (tok == STOP) {
            r->end = DRAFT_STOP, r->stop_token = tok;
            break;
        }
        r->tokens[r->n] = tok, r->max_p[r->n++] = mp;
        if (r->n == q->k) break;
        f->seq[f->len++] = tok; /* one pass ingests the token */
        r->passes++;
    }
    r->cached = f->len;
    return 0;
}

static int large_fake_verify(void *self, const verify_req_t *q, verify_res_t *r, char *err, int errlen) {
    fake_t *f = self;
    if (q->pos > f->len) f->violations++;
    f->len = q->pos;
    memcpy(f->seq + f->len, q->tokens, sizeof(int) * q->T);
    f->len += q->T;
    r->n_out = q->n_out;
    for (int j = 0; j < q->n_out; j++) {
        int upto = q->pos + q->T - q->n_out + j + 1; /* prefix ending at this position */
        r->argmax[j] = r->sampled[j] = large_tok(f->seq, upto, f->salt, f->stop_pct);
        r->nll[j] = j + 1 < q->n_out ? large_nll(f->seq, upto, f->seq[upto], f->salt, f->stop_pct) : 0;
    }
    return 0;
}

/* The two-halves verify call, as a remote link makes it: start copies the
 * request (the caller's token buffer may change before finish). */
typedef struct {
    fake_t *f;
    verify_req_t q;
    int tokens[512], pending;
} async_fake_t;

static int large_fake_start(void *self, const verify_req_t *q, char *err, int errlen) {
    async_fake_t *a = self;
    if (a->pending) return -1;
    a->q = *q;
    memcpy(a->tokens, q->tokens, sizeof(int) * (size_t)q->T);
    a->q.tokens = a->tokens, a->pending = 1;
    return 0;
}

static int large_fake_finish(void *self, verify_res_t *r, char *err, int errlen) {
    async_fake_t *a = self;
    if (!a->pending) return -1;
    a->pending = 0;
    return large_fake_verify(a->f, &a->q, r, err, errlen);
}

static int large_fake_sync(void *self, const verify_req_t *q, verify_res_t *r, char *err, int errlen) {
    async_fake_t *a = self;
    return large_fake_verify(a->f, q, r, err, errlen);
}

/* The large model's greedy continuation, computed directly. */
static int large_greedy(const int *prompt, int np, int n, int stop_pct, int *out) {
    int s[512], len = np, k = 0;
    memcpy(s, prompt, sizeof(int) * np);
    while (k < n) {
        int t = large_tok(s, len, 1u, stop_pct);
        if (t == STOP) break;
        s[len++] = out[k++] = t;
    }
    return k;
}

static session_times_t last_tm; /* of the last run */

static policy_t *run_ov(policy_params_t pp, const int *prompt, int np, int agree, int stop_pct, fake_t *fs, fake_t *fl,
                        int overlap) {
    char err[256];
    *fs = (fake_t){.salt = 1u, .agree_pct = agree, .stop_pct = stop_pct};
    *fl = (fake_t){.salt = 1u, .stop_pct = stop_pct};
    policy_t *p = policy_new(&pp, prompt, np, err, sizeof err);
    EXPECT(p != NULL);
    small_link_t sl = {fs, small_fake_draft};
    async_fake_t af = {.f = fl};
    large_link_t ll = overlap ? (large_link_t){&af, large_fake_sync, large_fake_start, large_fake_finish}
                              : (large_link_t){fl, large_fake_verify, NULL, NULL};
    session_times_t tm;
    int rc = session_run(p, &sl, &ll, overlap, &tm, err, sizeof err);
    last_tm = tm;
    if (rc) fprintf(stderr, "session: %s\n", err);
    EXPECT(rc == 0);
    EXPECT_EQ_INT(fs->violations + fl->violations, 0);
    return p;
}

static policy_t *run(policy_params_t pp, const int *prompt, int np, int agree, int stop_pct, fake_t *fs, fake_t *fl) {
    return run_ov(pp, prompt, np, agree, stop_pct, fs, fl, 0);
}

static void check_identities(const policy_t *p, const policy_params_t *pp) {
    const policy_stats_t *s = policy_stats(p);
    int n;
    const int *out = policy_output(p, &n);
    const char *src = policy_sources(p);
    int ns = 0;
    for (int i = 0; i < n; i++) {
        ns += src[i] == 'S';
        EXPECT(out[i] != STOP && out[i] >= 0 && out[i] < V);
    }
    EXPECT_EQ_INT(s->n_gen, n);
    EXPECT_EQ_INT(s->small_tokens + s->large_tokens, n);
    EXPECT_EQ_INT(s->small_tokens, ns);
    EXPECT(n <= pp->max_new);
    EXPECT_EQ_INT(s->large_passes, s->verify_calls);
    EXPECT(s->small_passes >= s->draft_calls);
    if (pp->mode != POLICY_SMALL) {
        EXPECT_EQ_INT(s->drafted, s->accepted + s->rolled_back);
        EXPECT_EQ_INT(s->small_tokens, s->accepted + s->unchecked);
    }
    if (pp->mode == POLICY_BILD && !pp->faithful) EXPECT_EQ_INT(s->unchecked, 0);
    if (policy_stop_reason(p) == STOP_AT_LENGTH) EXPECT_EQ_INT(n, pp->max_new);
}

int main(void) {
    int prompt[8] = {1, 5, 7, 9, 4, 3, 8, 6}, want[256];
    int runs = 0;
    /* 1. default mode, tiny alpha_rb: exactly the large model's greedy text,
     *    over many model pairs, thresholds, max_small and stop frequencies */
    for (unsigned seed = 0; seed < 60; seed++)
        for (int agree = 0; agree <= 100; agree += 25)
            for (int stop_pct = 0; stop_pct <= 3; stop_pct += 3) {
                int np = 1 + (int)(seed % 8);
                policy_params_t pp = {.mode = POLICY_BILD, .alpha_fb = (float)(seed % 10) / 10.0f, .alpha_rb = 1e-3f,
                                      .max_small = (int)(seed % 12), .max_new = 40 + (int)seed,
                                      .vocab_size = V, .stop_a = STOP, .stop_b = 1};
                prompt[0] = 1, prompt[1] = 3 + (int)(seed % 9);
                fake_t fs, fl;
                policy_t *p = run(pp, prompt, np, agree, stop_pct, &fs, &fl);
                int n, k = large_greedy(prompt, np, pp.max_new, stop_pct, want);
                const int *out = policy_output(p, &n);
                EXPECT_EQ_INT(n, k);
                EXPECT(n == k && memcmp(out, want, sizeof(int) * (size_t)n) == 0);
                check_identities(p, &pp);
                /* greedy speculative decoding and large-only give the same text */
                for (int mode = POLICY_LARGE; mode <= POLICY_SPEC; mode += 2) {
                    policy_params_t q = pp;
                    q.mode = mode, q.max_small = 1 + (int)(seed % 7), q.alpha_fb = 0;
                    policy_t *p2 = run(q, prompt, np, agree, stop_pct, &fs, &fl);
                    const int *o2 = policy_output(p2, &n);
                    EXPECT(n == k && memcmp(o2, want, sizeof(int) * (size_t)n) == 0);
                    check_identities(p2, &q);
                    if (mode == POLICY_LARGE) EXPECT_EQ_INT(policy_stats(p2)->large_passes, n + (n < q.max_new ? 1 : 0));
                    policy_destroy(&p2);
                }
                policy_destroy(&p);
                runs++;
            }
    /* 2. other thresholds and faithful mode: the identities hold */
    for (unsigned seed = 0; seed < 200; seed++) {
        policy_params_t pp = {.mode = POLICY_BILD, .faithful = (int)(seed & 1), .alpha_fb = (float)(seed % 7) / 7.0f,
                              .alpha_rb = 0.5f + (float)(seed % 5), .max_small = (int)(seed % 11), .max_new = 30 + (int)(seed % 40),
                              .vocab_size = V, .stop_a = STOP, .stop_b = 1};
        fake_t fs, fl;
        policy_t *p = run(pp, prompt, 1 + (int)(seed % 8), (int)(seed % 101), (int)(seed % 4), &fs, &fl);
        check_identities(p, &pp);
        policy_destroy(&p);
        runs++;
    }
    /* 2b. overlap: the same tokens and the same statistics as sequential,
     *     with speculative drafts both kept and dropped along the way */
    {
        int kept = 0, dropped = 0, same = 0, total = 0;
        for (unsigned seed = 0; seed < 300; seed++) {
            policy_params_t pp = {.mode = POLICY_BILD, .faithful = (int)(seed % 3 == 0),
                                  .alpha_fb = 0.2f + (float)(seed % 7) / 10.0f, .alpha_rb = 0.3f + (float)(seed % 5),
                                  .max_small = 1 + (int)(seed % 11), .max_new = 20 + (int)(seed % 50),
                                  .vocab_size = V, .stop_a = STOP, .stop_b = 1};
            fake_t fs, fl;
            int np = 1 + (int)(seed % 8), agree = (int)(seed * 37 % 101), stop_pct = (int)(seed % 4);
            policy_t *a = run_ov(pp, prompt, np, agree, stop_pct, &fs, &fl, 0);
            policy_t *b = run_ov(pp, prompt, np, agree, stop_pct, &fs, &fl, 1);
            kept += last_tm.spec_kept, dropped += last_tm.spec_drafts - last_tm.spec_kept;
            int na, nb;
            const int *oa = policy_output(a, &na), *ob = policy_output(b, &nb);
            const policy_stats_t *sa = policy_stats(a), *sb = policy_stats(b);
            int eq = na == nb && !memcmp(oa, ob, sizeof(int) * (size_t)na) &&
                     !memcmp(policy_sources(a), policy_sources(b), (size_t)na) &&
                     sa->large_passes == sb->large_passes && sa->small_passes == sb->small_passes &&
                     sa->fallbacks == sb->fallbacks && sa->rollbacks == sb->rollbacks &&
                     sa->draft_calls == sb->draft_calls && sa->drafted == sb->drafted && sa->accepted == sb->accepted &&
                     sa->small_positions == sb->small_positions && sa->large_positions == sb->large_positions;
            same += eq, total++;
            check_identities(b, &pp);
            policy_destroy(&a);
            policy_destroy(&b);
            runs++;
        }
        printf("overlap: %d/%d runs identical to sequential; %d speculative drafts kept, %d dropped\n", same, total,
               kept, dropped);
        EXPECT_EQ_INT(same, total);
        EXPECT(kept > 100);
        EXPECT(dropped > 100);
    }
    /* 3. max_small 0 is the large model alone: one large pass per token */
    {
        policy_params_t pp = {.mode = POLICY_BILD, .alpha_fb = 0.5f, .alpha_rb = 2, .max_small = 0, .max_new = 50,
                              .vocab_size = V, .stop_a = STOP, .stop_b = 1};
        fake_t fs, fl;
        policy_t *p = run(pp, prompt, 4, 80, 0, &fs, &fl);
        int n, k = large_greedy(prompt, 4, 50, 0, want);
        const int *out = policy_output(p, &n);
        EXPECT(n == k && memcmp(out, want, sizeof(int) * (size_t)n) == 0);
        EXPECT_EQ_INT(policy_stats(p)->small_passes, 0);
        EXPECT_EQ_INT(policy_stats(p)->large_passes, 50);
        policy_destroy(&p);
    }
    /* 4. refusals: bad parameters, impossible worker results */
    {
        char err[256];
        policy_params_t ok = {.mode = POLICY_BILD, .alpha_fb = 0.5f, .alpha_rb = 2, .max_small = 10, .max_new = 8,
                              .vocab_size = V, .stop_a = STOP, .stop_b = 1};
        policy_params_t bad = ok;
        bad.alpha_fb = 1.5f;
        EXPECT(policy_new(&bad, prompt, 3, err, sizeof err) == NULL && strstr(err, "fallback"));
        bad = ok, bad.alpha_rb = 0;
        EXPECT(policy_new(&bad, prompt, 3, err, sizeof err) == NULL && strstr(err, "rollback"));
        bad = ok, bad.max_small = 63;
        EXPECT(policy_new(&bad, prompt, 3, err, sizeof err) == NULL);
        bad = ok, bad.mode = (policy_mode_t)9;
        EXPECT(policy_new(&bad, prompt, 3, err, sizeof err) == NULL && strstr(err, "mode"));
        EXPECT(policy_mode_parse("bild") == POLICY_BILD && policy_mode_parse("spec") == POLICY_SPEC &&
               policy_mode_parse("fast") == -1);

        policy_t *p = policy_new(&ok, prompt, 3, err, sizeof err);
        draft_req_t dq;
        verify_req_t vq;
        EXPECT(policy_next(p, &dq, &vq) == ACT_VERIFY && vq.T == 3 && vq.n_out == 1);
        verify_res_t vr = {.n_out = 1, .argmax = {5}, .sampled = {5}, .nll = {0}};
        EXPECT(policy_on_verify(p, &vr, err, sizeof err) == 0);
        EXPECT(policy_next(p, &dq, &vq) == ACT_DRAFT && dq.keep == 0 && dq.n_feed == 4 && dq.k == 7);
        draft_res_t dr = {.n = 2, .tokens = {4, V}, .end = DRAFT_FALLBACK, .passes = 3, .cached = 6};
        EXPECT(policy_on_draft(p, &dr, err, sizeof err) == -1 && strstr(err, "vocabulary")); /* token V */
        EXPECT(policy_next(p, &dq, &vq) == ACT_ERROR);
        policy_destroy(&p);

        p = policy_new(&ok, prompt, 3, err, sizeof err);
        policy_next(p, &dq, &vq);
        policy_on_verify(p, &vr, err, sizeof err);
        policy_next(p, &dq, &vq);
        dr = (draft_res_t){.n = 9, .end = DRAFT_LIMIT, .passes = 9, .cached = 12}; /* more than k = 8 */
        EXPECT(policy_on_draft(p, &dr, err, sizeof err) == -1);
        policy_destroy(&p);

        p = policy_new(&ok, prompt, 3, err, sizeof err);
        policy_next(p, &dq, &vq);
        verify_res_t bad_vr = {.n_out = 2};
        EXPECT(policy_on_verify(p, &bad_vr, err, sizeof err) == -1); /* asked for one position */
        policy_destroy(&p);

        p = policy_new(&ok, prompt, 3, err, sizeof err);
        policy_next(p, &dq, &vq);
        dr = (draft_res_t){.n = 1, .tokens = {4}, .end = DRAFT_LIMIT, .passes = 1, .cached = 4};
        EXPECT(policy_on_draft(p, &dr, err, sizeof err) == -1); /* a draft when a verify was asked for */
        policy_destroy(&p);
    }
    /* 5. default mode checks a proposed stop token: the large model rejects it */
    {
        char err[256];
        policy_params_t pp = {.mode = POLICY_BILD, .alpha_fb = 0.5f, .alpha_rb = 1, .max_small = 10, .max_new = 20,
                              .vocab_size = V, .stop_a = STOP, .stop_b = 1};
        for (int faithful = 0; faithful < 2; faithful++) {
            pp.faithful = faithful;
            policy_t *p = policy_new(&pp, prompt, 2, err, sizeof err);
            draft_req_t dq;
            verify_req_t vq;
            verify_res_t vr = {.n_out = 1, .argmax = {5}, .sampled = {5}};
            policy_next(p, &dq, &vq);
            policy_on_verify(p, &vr, err, sizeof err); /* seq: 1 5 | 5 */
            EXPECT(policy_next(p, &dq, &vq) == ACT_DRAFT);
            draft_res_t dr = {.n = 2, .tokens = {6, 7}, .max_p = {0.9f, 0.9f}, .end = DRAFT_STOP, .stop_token = STOP,
                              .passes = 3, .cached = 5};
            EXPECT(policy_on_draft(p, &dr, err, sizeof err) == 0);
            if (faithful) { /* official loop: stop, tail unchecked */
                EXPECT(policy_next(p, &dq, &vq) == ACT_DONE);
                EXPECT_EQ_INT(policy_stats(p)->unchecked, 2);
                EXPECT(policy_stop_reason(p) == STOP_AT_EOS);
                policy_destroy(&p);
                continue;
            }
            /* default: verify [5 6 7 STOP] at position 2 */
            EXPECT(policy_next(p, &dq, &vq) == ACT_VERIFY && vq.pos == 2 && vq.T == 4 && vq.tokens[3] == STOP);
            verify_res_t v2 = {.n_out = 4, .argmax = {6, 7, 9, 4}, .sampled = {6, 7, 9, 4}, .nll = {0.1f, 0.1f, 3, 0}};
            EXPECT(policy_on_verify(p, &v2, err, sizeof err) == 0); /* the stop is replaced by 9 */
            EXPECT_EQ_INT(policy_stats(p)->rollbacks, 1);
            EXPECT_EQ_INT(policy_stats(p)->rolled_back, 0);
            EXPECT(policy_next(p, &dq, &vq) == ACT_VERIFY && vq.pos == 5 && vq.T == 1 && vq.tokens[0] == 9);
            verify_res_t v3 = {.n_out = 1, .argmax = {10}, .sampled = {10}};
            EXPECT(policy_on_verify(p, &v3, err, sizeof err) == 0); /* the extra large step */
            int n;
            const int *out = policy_output(p, &n);
            int expect[] = {5, 6, 7, 9, 10};
            EXPECT(n == 5 && memcmp(out, expect, sizeof expect) == 0);
            EXPECT(!strncmp(policy_sources(p), "LSSLL", 5));
            EXPECT(policy_next(p, &dq, &vq) == ACT_DRAFT && dq.keep == 5 && dq.n_feed == 2);
            policy_destroy(&p);
        }
    }
    fprintf(stderr, "%d randomized policy runs checked\n", runs);
    return TEST_DONE("test_policy");
}
