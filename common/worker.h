/* worker.h - what the coordinator asks of the two workers, independent of
 * where they run. The in-process workers (small_worker/drafter.c,
 * large_worker/verifier.c) implement it on top of the engine; the remote
 * links (coordinator/remote.c) implement the same calls over ZeroMQ.
 *
 * Both calls are one round trip each: a draft block is one request however
 * many tokens it produces, and a verification is one pass over a block.
 */
#ifndef BILD_WORKER_H
#define BILD_WORKER_H

#define BILD_MAX_DRAFT 64 /* most tokens one draft or verify call handles */

typedef enum {
    DRAFT_LIMIT = 0,    /* drafted the k tokens asked for */
    DRAFT_FALLBACK = 1, /* the next step's max probability fell below alpha_fb */
    DRAFT_STOP = 2,     /* the next token would be a stop token (EOS/BOS) */
} draft_end_t;

/* Small model: make the cache hold exactly seq[0, keep) + feed[0, n_feed)
 * (truncating to keep first), run feed as one pass, then draft up to k
 * tokens, one pass each, stopping early at a fallback or a stop token. */
typedef struct {
    int keep;
    const int *feed; /* borrowed for the call */
    int n_feed;      /* >= 1 */
    int k;           /* 1..BILD_MAX_DRAFT */
    float alpha_fb;  /* 0 never falls back */
    int want_probs;  /* sample from softmax(logits / T) in full and return it (rejection sampling) */
    int plane_send;  /* want_probs: send the distributions to the large worker over the data plane
                        (proto/plane.h) instead of returning them */
} draft_req_t;

typedef struct {
    int n;                        /* tokens drafted */
    int tokens[BILD_MAX_DRAFT];
    float max_p[BILD_MAX_DRAFT];  /* max probability at each drafted step */
    draft_end_t end;
    int stop_token;               /* DRAFT_STOP: the proposed stop token */
    float end_max_p;              /* DRAFT_FALLBACK/STOP: max probability at that step */
    int passes;                   /* forward passes run (the fallback step's included) */
    int cached;                   /* positions the small cache holds afterwards */
    int guess;                    /* DRAFT_FALLBACK: the token the small model would have produced at
                                     the fallback step (what --overlap drafts on from); -1 otherwise */
    /* want_probs: the distribution each token (and a proposed stop token) was
     * drawn from, (n + (end == DRAFT_STOP), vocab); borrowed until the next call */
    const float *probs;
} draft_res_t;

/* Large model: truncate the cache to pos, run tokens[0, T) at positions
 * [pos, pos + T) as one pass, and for the last n_out positions j (j = T -
 * n_out .. T - 1) report the argmax, the token sampled there (= argmax when
 * greedy), and -log p(tokens[j + 1]) (the next given token; 0 for j = T - 1). */
typedef struct {
    int pos;
    const int *tokens; /* borrowed for the call */
    int T;             /* >= 1; the n_out last ones <= BILD_MAX_DRAFT */
    int n_out;         /* 1..T */
    int want_probs;    /* also return softmax(logits / T) at the n_out positions */
    /* Rejection sampling done here rather than by the caller (the small
     * model's distributions came over the data plane): accept_here = 1,
     * plane_rows of them to receive first (0..n_out), bonus = 1 to draw a
     * bonus token when every draft token is accepted, rng the caller's
     * random stream (common/accept.h). */
    int accept_here;
    int plane_rows;
    int bonus;
    unsigned long long rng;
    /* Greedy decisions that need the large model's argmax alone (set by the
     * policy for speculative decoding and for BiLD with a rollback
     * threshold below ln 2, where a draft token is rolled back exactly when
     * it differs from the argmax): nll may then hold a lower bound, ln 2
     * where the argmax differs from the next token (its probability is at
     * most 1/2) and 0 elsewhere, and the argmaxes may come through the
     * classifier's screen (where it is on: BILD_SCREEN=0 gives the full
     * statistics). In process only: never sent to a worker. */
    int argmax_only;
} verify_req_t;

typedef struct {
    int n_out;
    int argmax[BILD_MAX_DRAFT];
    int sampled[BILD_MAX_DRAFT];
    float nll[BILD_MAX_DRAFT];
    const float *probs; /* want_probs: (n_out, vocab), borrowed until the next call */
    /* accept_here: the verdict (accept_m 0 all accepted, else the first
     * rejected position; accept_z the resampled or bonus token, -1 none) and
     * the random stream after it */
    int accept_done;
    int accept_m, accept_z;
    unsigned long long rng;
} verify_res_t;

/* A worker: a call returns 0, or a negative code with a message in err. */
typedef struct {
    void *self;
    int (*draft)(void *self, const draft_req_t *req, draft_res_t *res, char *err, int errlen);
} small_link_t;

typedef struct {
    void *self;
    int (*verify)(void *self, const verify_req_t *req, verify_res_t *res, char *err, int errlen);
    /* Optional (NULL when the link cannot): the same call in two halves, so
     * that the caller can work while the worker computes (--overlap). The
     * request is copied by start; finish must follow before any other call. */
    int (*verify_start)(void *self, const verify_req_t *req, char *err, int errlen);
    int (*verify_finish)(void *self, verify_res_t *res, char *err, int errlen);
} large_link_t;

#endif
