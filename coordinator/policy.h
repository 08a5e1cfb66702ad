/* policy.h - the BiLD decision logic as a pure state machine: no I/O, no
 * threads, no clocks. The session driver (session.c) asks it what to do next
 * (draft with the small model, verify with the large one, or stop), carries
 * the request to a worker, and hands back the result. The same policy object
 * drives in-process and remote workers.
 *
 * Semantics: docs/algorithm.md (faithful mode = the official loop; default
 * mode = rollback only where the large model disagrees, and a checked tail).
 * The baselines are modes of the same machine: large alone (BiLD with
 * max_small = 0), small alone, and speculative decoding (the small model
 * drafts gamma tokens from the prompt on; greedy: keep the longest prefix the
 * large model agrees with, then the large model's token; sampling: Leviathan
 * et al.'s rejection sampling, accept y with probability min(1, p_L(y) /
 * p_S(y)), on rejection draw from norm(max(0, p_L - p_S)) over the whole
 * vocabulary, after gamma acceptances draw a bonus token from p_L).
 */
#ifndef BILD_POLICY_H
#define BILD_POLICY_H

#include "common/worker.h"

typedef enum {
    POLICY_BILD = 0,
    POLICY_LARGE = 1, /* large model alone */
    POLICY_SMALL = 2, /* small model alone */
    POLICY_SPEC = 3,  /* speculative decoding, greedy exact-match acceptance */
} policy_mode_t;

typedef struct {
    policy_mode_t mode;
    int faithful;     /* BILD: reproduce the official loop exactly */
    int direct;       /* BILD default mode: after a rollback the small model resumes at once from the large
                         model's correction, without the official loop's extra large step (docs/algorithm.md) */
    float alpha_fb;   /* BILD: fallback when max p_S < alpha_fb, in [0, 1]; SPEC: optional confidence stop */
    float alpha_rb;   /* BILD: rollback distance threshold in nats, > 0 */
    int max_small;    /* BILD: consecutive small tokens (0..BILD_MAX_DRAFT-2); SPEC: gamma (1..) */
    int max_new;      /* tokens to generate at most (>= 1) */
    int vocab_size;
    int stop_a, stop_b; /* stop tokens (EOS and BOS for llama2.c vocabularies) */
    int sampling;     /* SPEC: Leviathan rejection sampling on the workers' full distributions */
    unsigned long long seed; /* SPEC sampling: the accept/resample random stream */
    int accept_remote; /* SPEC sampling: the small model's distributions go to the large worker over the data
                          plane, and it runs the acceptance with this policy's stream (common/accept.h) */
} policy_params_t;

typedef struct {
    int n_gen;         /* tokens in the output */
    int small_tokens;  /* of those, produced by the small model */
    int large_tokens;  /* ... and by the large model */
    int large_passes;  /* N_L: large forward passes, the prompt pass included */
    int small_passes;  /* N_S: small forward passes, catch-up and fallback steps included */
    int fallbacks;     /* BILD: small steps below alpha_fb; SPEC: confidence stops */
    int rollbacks;     /* BILD: rollbacks; SPEC: drafts rejected before their end */
    int rolled_back;   /* small tokens removed by rollbacks / rejections */
    int drafted;       /* small tokens submitted to the large model for checking */
    int accepted;      /* ... of which kept */
    int unchecked;     /* small tokens never checked by the large model (faithful tail) */
    int draft_calls, verify_calls;
    long large_positions; /* positions run by all large passes together (a pass over T tokens adds T) */
    long small_positions; /* the same for small passes */
    int large_pass_len[BILD_MAX_DRAFT + 1]; /* large passes by block length (the last bucket: >= 64) */
} policy_stats_t;

typedef enum { STOP_NONE = -1, STOP_AT_EOS = 0, STOP_AT_LENGTH = 1 } policy_stop_t;

typedef enum { ACT_DRAFT = 0, ACT_VERIFY = 1, ACT_DONE = 2, ACT_ERROR = 3 } policy_act_t;

typedef struct policy policy_t;

/* Checks the parameters and copies the prompt (BOS first). Returns NULL with
 * a one-line reason in err on bad parameters or allocation failure. */
policy_t *policy_new(const policy_params_t *pp, const int *prompt, int n_prompt, char *err, int errlen);
void policy_destroy(policy_t **pp);
/* Sets pp.accept_remote (before the first step): the link set-up decides it. */
void policy_set_accept_remote(policy_t *p, int on);

/* The next step. ACT_DRAFT fills *dreq, ACT_VERIFY fills *vreq (their token
 * pointers borrow the policy's sequence until the next policy call). */
policy_act_t policy_next(policy_t *p, draft_req_t *dreq, verify_req_t *vreq);

/* Results of the step policy_next asked for. A result that cannot be right
 * (counts out of range, a token outside the vocabulary, a drafted stop
 * token) is refused: returns -1 with a reason in err, and the policy stays
 * in ACT_ERROR. Returns 0 otherwise. */
int policy_on_draft(policy_t *p, const draft_res_t *r, char *err, int errlen);
int policy_on_verify(policy_t *p, const verify_res_t *r, char *err, int errlen);

/* Overlap support (--overlap): while the large model verifies the chunk
 * that policy_next asked for, the small model can draft on from its own
 * guess g for the token after the chunk. If the verification then accepts
 * the whole chunk and its own token there is g, the policy's next request
 * is exactly the one written to *dreq here, and its result can be handed to
 * policy_on_draft unchanged. Returns 1 and fills *dreq (its feed borrows
 * the policy's sequence until the next policy call) when that case exists
 * (a default- or faithful-mode BiLD verification of a drafted chunk, greedy,
 * generation not ending at g); 0 otherwise. Changes no state that a later
 * policy_next / policy_on_verify would see. */
int policy_speculate(policy_t *p, int g, draft_req_t *dreq);

/* Generated tokens (prompt excluded) and their count; borrowed. */
const int *policy_output(const policy_t *p, int *n);
/* Which model produced each generated token: 'S' or 'L'; borrowed. */
const char *policy_sources(const policy_t *p);
const policy_stats_t *policy_stats(const policy_t *p);
policy_stop_t policy_stop_reason(const policy_t *p);

const char *policy_mode_name(policy_mode_t m);
/* Parses "bild", "large", "small" or "spec"; -1 if unknown. */
int policy_mode_parse(const char *s);

#endif
