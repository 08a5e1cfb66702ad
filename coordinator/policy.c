/* policy.c - the BiLD policy state machine (see policy.h and
 * docs/algorithm.md, whose numbered steps the states follow).
 *
 * States: PROMPT (the large model's prompt pass gives the first token),
 * SMALL (a draft block), LARGE (verify the chunk since the large model's last
 * own token), EXTRA (the one extra large step after a rollback), DONE.
 * seq holds the prompt and the output; src[i] says who produced seq[i].
 * L_pos is the position of the large model's own last token, the first
 * element of the next chunk; the large cache is valid below it.
 */
#include "coordinator/policy.h"

#include "common/accept.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ST_PROMPT, ST_SMALL, ST_LARGE, ST_EXTRA, ST_DONE, ST_ERROR };

struct policy {
    policy_params_t pp;
    int *seq;   /* prompt + output, plus one slot for a proposed stop token */
    char *src;  /* 'P' prompt, 'S' small, 'L' large */
    int len, n_prompt, cap;
    int state;
    int L_pos;      /* position of the large model's own last token */
    int L_cached;   /* positions the large cache holds */
    int checked;    /* positions [0, checked) have been seen by the large model */
    int S_cached;   /* positions the small cache holds */
    int vstop;      /* default mode: a proposed stop token to verify at seq[len], or -1 */
    int final_check; /* default mode: the length limit was reached with unchecked small tokens */
    int pending_k;  /* k of the outstanding draft */
    int pending_T;  /* positions reported by the outstanding verify */
    int pending_pass_T; /* positions it runs */
    policy_stop_t stop;
    policy_stats_t st;
    float *dprobs;  /* SPEC sampling: the small model's distributions of the outstanding draft */
    int dprobs_rows;
    unsigned long long rng;
};

void policy_set_accept_remote(policy_t *p, int on) { p->pp.accept_remote = on && p->pp.sampling; }

const char *policy_mode_name(policy_mode_t m) {
    return m == POLICY_BILD ? "bild" : m == POLICY_LARGE ? "large" : m == POLICY_SMALL ? "small" : "spec";
}

int policy_mode_parse(const char *s) {
    for (int m = 0; m <= POLICY_SPEC; m++)
        if (!strcmp(s, policy_mode_name(m))) return m;
    return -1;
}

policy_t *policy_new(const policy_params_t *pp, const int *prompt, int n_prompt, char *err, int errlen) {
    policy_params_t q = *pp;
    const char *why = NULL;
    if (q.mode < POLICY_BILD || q.mode > POLICY_SPEC) why = "unknown mode";
    else if (!(q.alpha_fb >= 0 && q.alpha_fb <= 1)) why = "fallback threshold must be in [0, 1]";
    else if (q.mode == POLICY_BILD && !(q.alpha_rb > 0 && isfinite(q.alpha_rb)))
        why = "rollback threshold must be a positive number of nats";
    else if (q.mode == POLICY_BILD && (q.max_small < 0 || q.max_small > BILD_MAX_DRAFT - 2))
        why = "max-small must be in 0..62";
    else if (q.mode == POLICY_SPEC && (q.max_small < 1 || q.max_small > BILD_MAX_DRAFT - 2))
        why = "gamma must be in 1..62";
    else if (q.max_new < 1) why = "the token limit must be at least 1";
    else if (q.direct && (q.mode != POLICY_BILD || q.faithful))
        why = "direct resumption is a setting of the default BiLD mode (not faithful, not the baselines)";
    else if (n_prompt < 1) why = "the prompt must hold at least BOS";
    else if (q.vocab_size < 3) why = "vocabulary too small";
    if (why) {
        snprintf(err, (size_t)errlen, "%s", why);
        return NULL;
    }
    if (q.mode == POLICY_LARGE) q.mode = POLICY_BILD, q.max_small = 0, q.faithful = 1;
    if (q.mode != POLICY_SPEC) q.sampling = 0;
    policy_t *p = calloc(1, sizeof(*p));
    if (p) {
        p->cap = n_prompt + q.max_new + 1;
        p->seq = malloc(sizeof(int) * (size_t)p->cap);
        p->src = calloc((size_t)p->cap + 1, 1);
        if (q.sampling) p->dprobs = malloc(sizeof(float) * (size_t)q.vocab_size * (BILD_MAX_DRAFT + 1));
    }
    if (!p || !p->seq || !p->src || (q.sampling && !p->dprobs)) {
        policy_destroy(&p);
        snprintf(err, (size_t)errlen, "out of memory");
        return NULL;
    }
    p->pp = q;
    memcpy(p->seq, prompt, sizeof(int) * (size_t)n_prompt);
    memset(p->src, 'P', (size_t)n_prompt);
    p->len = p->n_prompt = n_prompt;
    /* BiLD's first token comes from the large model; speculative decoding
     * drafts from the prompt on (the chunk then starts at the prompt's last
     * token, which the large model has not cached yet). */
    p->state = q.mode == POLICY_SMALL || q.mode == POLICY_SPEC ? ST_SMALL : ST_PROMPT;
    p->L_pos = n_prompt - 1;
    unsigned long long z = q.seed + 0x9E3779B97F4A7C15ULL; /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL, z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    p->rng = (z ^ (z >> 31)) | 1;
    p->vstop = -1;
    p->stop = STOP_NONE;
    return p;
}

void policy_destroy(policy_t **pp) {
    if (!pp || !*pp) return;
    free((*pp)->seq);
    free((*pp)->src);
    free((*pp)->dprobs);
    free(*pp);
    *pp = NULL;
}

static int gen(const policy_t *p) { return p->len - p->n_prompt; }
static int is_stop(const policy_t *p, int t) { return t == p->pp.stop_a || t == p->pp.stop_b; }

static void finish(policy_t *p, policy_stop_t why) {
    p->state = ST_DONE;
    p->stop = why;
    policy_stats_t *s = &p->st;
    s->n_gen = gen(p);
    s->small_tokens = s->large_tokens = 0;
    for (int i = p->n_prompt; i < p->len; i++) {
        if (p->src[i] == 'S') s->small_tokens++;
        else s->large_tokens++;
    }
    /* small tokens after the large model's last pass were never checked */
    s->unchecked = 0;
    for (int i = p->checked; i < p->len; i++) s->unchecked += p->src[i] == 'S';
    if (p->pp.mode == POLICY_SMALL) s->unchecked = 0;
}

/* Appends a large-model token. Returns 1 if generation ended. */
static int append_large(policy_t *p, int tok) {
    if (is_stop(p, tok)) return finish(p, STOP_AT_EOS), 1;
    p->seq[p->len] = tok;
    p->src[p->len++] = 'L';
    if (gen(p) >= p->pp.max_new) return finish(p, STOP_AT_LENGTH), 1;
    return 0;
}

/* Whether a verification's decisions need the large model's argmax alone
 * (verify_req_t.argmax_only): greedy speculative decoding (a draft token
 * stays exactly when it is the argmax), and greedy BiLD outside the
 * faithful loop with alpha_rb below ln 2 (a rollback needs the argmax to
 * differ, and then -log p of the draft token is at least ln 2; 0.69 keeps
 * clear of float rounding at ln 2). */
static int argmax_only(const policy_t *p) {
    return !p->pp.sampling && (p->pp.mode == POLICY_SPEC || (p->pp.mode == POLICY_BILD && !p->pp.faithful &&
                                                             p->pp.alpha_rb < 0.69f));
}

policy_act_t policy_next(policy_t *p, draft_req_t *dreq, verify_req_t *vreq) {
    switch (p->state) {
    case ST_PROMPT:
        *vreq = (verify_req_t){.pos = 0, .tokens = p->seq, .T = p->n_prompt, .n_out = 1};
        p->pending_T = p->pending_pass_T = p->n_prompt;
        return ACT_VERIFY;
    case ST_SMALL: {
        int k = p->pp.mode == POLICY_SMALL ? BILD_MAX_DRAFT : p->pp.max_small;
        if (k > p->pp.max_new - gen(p)) k = p->pp.max_new - gen(p);
        if (k > 0) {
            /* feed everything the small model has not cached; at least the last token */
            int keep = p->S_cached < p->len - 1 ? p->S_cached : p->len - 1;
            float fb = p->pp.mode == POLICY_SMALL ? 0.0f : p->pp.alpha_fb;
            *dreq = (draft_req_t){.keep = keep, .feed = p->seq + keep, .n_feed = p->len - keep, .k = k, .alpha_fb = fb,
                                  .want_probs = p->pp.sampling, .plane_send = p->pp.sampling && p->pp.accept_remote};
            p->pending_k = k;
            return ACT_DRAFT;
        }
        p->state = ST_LARGE; /* max_small == 0: the large model takes every step */
    }
    /* fall through */
    case ST_LARGE: {
        int n = p->len - p->L_pos, pos = p->L_cached < p->L_pos ? p->L_cached : p->L_pos;
        if (p->vstop >= 0) p->seq[p->len] = p->vstop, n++; /* the proposed stop token is checked too */
        /* positions before L_pos that the large model has not cached run in the same pass */
        *vreq = (verify_req_t){.pos = pos, .tokens = p->seq + pos, .T = p->L_pos - pos + n, .n_out = n,
                               .want_probs = p->pp.sampling, .argmax_only = argmax_only(p)};
        if (p->pp.sampling && p->pp.accept_remote) /* the large worker decides, with our random stream */
            vreq->accept_here = 1, vreq->plane_rows = p->dprobs_rows, vreq->rng = p->rng,
            vreq->bonus = !(p->vstop >= 0 || p->final_check);
        p->pending_T = n, p->pending_pass_T = vreq->T;
        return ACT_VERIFY;
    }
    case ST_EXTRA:
        *vreq = (verify_req_t){.pos = p->len - 1, .tokens = p->seq + p->len - 1, .T = 1, .n_out = 1};
        p->pending_T = p->pending_pass_T = 1;
        return ACT_VERIFY;
    case ST_DONE:
        return ACT_DONE;
    default:
        return ACT_ERROR;
    }
}

int policy_speculate(policy_t *p, int g, draft_req_t *dreq) {
    if (p->state != ST_LARGE || p->pp.mode != POLICY_BILD || p->pp.max_small < 1 || p->pp.sampling ||
        p->vstop >= 0 || p->final_check || g < 0 || g >= p->pp.vocab_size || is_stop(p, g))
        return 0;
    int gen_after = gen(p) + 1, len_after = p->len + 1;
    if (gen_after >= p->pp.max_new) return 0; /* g would end the generation */
    int k = p->pp.max_small;
    if (k > p->pp.max_new - gen_after) k = p->pp.max_new - gen_after;
    /* as policy_next in ST_SMALL would ask after append_large(g); seq[len] is
     * free scratch until then (the slot after the output is never read) */
    p->seq[p->len] = g;
    int keep = p->S_cached < len_after - 1 ? p->S_cached : len_after - 1;
    *dreq = (draft_req_t){.keep = keep, .feed = p->seq + keep, .n_feed = len_after - keep, .k = k,
                          .alpha_fb = p->pp.alpha_fb, .want_probs = 0};
    return 1;
}

static int refuse(policy_t *p, char *err, int errlen, const char *why) {
    snprintf(err, (size_t)errlen, "%s", why);
    p->state = ST_ERROR;
    return -1;
}

int policy_on_draft(policy_t *p, const draft_res_t *r, char *err, int errlen) {
    if (p->state != ST_SMALL) return refuse(p, err, errlen, "draft result when none was asked for");
    if (r->n < 0 || r->n > p->pending_k || (r->end == DRAFT_LIMIT && r->n != p->pending_k) ||
        (r->end != DRAFT_LIMIT && r->end != DRAFT_FALLBACK && r->end != DRAFT_STOP) || r->passes < 1 ||
        r->passes > r->n + 1 || r->cached < 0 || r->cached > p->len + r->n)
        return refuse(p, err, errlen, "inconsistent draft result (counts out of range)");
    for (int i = 0; i < r->n; i++)
        if (r->tokens[i] < 0 || r->tokens[i] >= p->pp.vocab_size || is_stop(p, r->tokens[i]))
            return refuse(p, err, errlen, "draft result holds a token outside the vocabulary or a stop token");
    if (r->end == DRAFT_STOP && !is_stop(p, r->stop_token))
        return refuse(p, err, errlen, "draft result proposes a stop token that is not one");
    policy_stats_t *s = &p->st;
    s->draft_calls++;
    s->small_passes += r->passes;
    s->small_positions += p->len - (p->S_cached < p->len - 1 ? p->S_cached : p->len - 1) + r->passes - 1;
    p->S_cached = r->cached;
    if (p->pp.sampling) { /* keep the distributions the tokens were drawn from */
        int rows = r->n + (r->end == DRAFT_STOP);
        if (rows && !r->probs && !p->pp.accept_remote)
            return refuse(p, err, errlen, "draft result lacks the distributions asked for");
        if (rows && !p->pp.accept_remote) memcpy(p->dprobs, r->probs, sizeof(float) * (size_t)rows * p->pp.vocab_size);
        p->dprobs_rows = rows;
    }
    for (int i = 0; i < r->n; i++) p->seq[p->len] = r->tokens[i], p->src[p->len++] = 'S';
    if (r->end == DRAFT_FALLBACK) s->fallbacks++;
    if (p->pp.mode == POLICY_SMALL) {
        if (r->end == DRAFT_STOP) finish(p, STOP_AT_EOS);
        else if (gen(p) >= p->pp.max_new) finish(p, STOP_AT_LENGTH);
        else if (r->end == DRAFT_FALLBACK)
            return refuse(p, err, errlen, "draft fell back although fallback was off");
        return 0;
    }
    int unchecked = p->len - 1 > p->L_pos;
    if (r->end == DRAFT_STOP) {
        if (p->pp.faithful) return finish(p, STOP_AT_EOS), 0;
        p->vstop = r->stop_token; /* verify the tail and the stop itself first */
    } else if (gen(p) >= p->pp.max_new) {
        if (p->pp.faithful || !unchecked) return finish(p, STOP_AT_LENGTH), 0;
        p->final_check = 1;
    }
    p->state = ST_LARGE;
    return 0;
}

int policy_on_verify(policy_t *p, const verify_res_t *r, char *err, int errlen) {
    if (p->state != ST_PROMPT && p->state != ST_LARGE && p->state != ST_EXTRA)
        return refuse(p, err, errlen, "verify result when none was asked for");
    int T = p->pending_T, want = p->state == ST_PROMPT ? 1 : T;
    if (r->n_out != want) return refuse(p, err, errlen, "verify result has the wrong number of positions");
    for (int j = 0; j < r->n_out; j++)
        if (r->argmax[j] < 0 || r->argmax[j] >= p->pp.vocab_size || r->sampled[j] < 0 ||
            r->sampled[j] >= p->pp.vocab_size || !(r->nll[j] >= -1e-3f) || isinf(r->nll[j]))
            return refuse(p, err, errlen, "verify result holds an out-of-range token or distance");
    int remote = p->pp.sampling && p->pp.accept_remote && p->state == ST_LARGE;
    if (p->pp.sampling && p->state == ST_LARGE && !remote && !r->probs)
        return refuse(p, err, errlen, "verify result lacks the distributions asked for");
    if (remote && (!r->accept_done || r->accept_m < 0 || r->accept_m >= T || r->accept_z < -1 ||
                   r->accept_z >= p->pp.vocab_size || (r->accept_m && r->accept_z < 0)))
        return refuse(p, err, errlen, "verify result lacks a consistent acceptance verdict");
    policy_stats_t *s = &p->st;
    s->verify_calls++;
    s->large_passes++;
    s->large_positions += p->pending_pass_T;
    s->large_pass_len[p->pending_pass_T < BILD_MAX_DRAFT ? p->pending_pass_T : BILD_MAX_DRAFT]++;
    p->L_cached = p->state == ST_PROMPT ? p->n_prompt : p->state == ST_EXTRA ? p->len : p->len + (p->vstop >= 0);
    if (p->state == ST_PROMPT || p->state == ST_EXTRA) {
        if (!append_large(p, r->sampled[r->n_out - 1])) p->L_pos = p->len - 1, p->state = ST_SMALL;
        return 0;
    }
    /* ST_LARGE: chunk = seq[L_pos .. L_pos + T); chunk[0] is the large model's own token.
     * Position m of the chunk (m >= 1) was proposed by the small model; its
     * distance is nll[m - 1] and the large model's token there is sampled[m - 1]. */
    const int *chunk = p->seq + p->L_pos;
    int m_rb = 0, V = p->pp.vocab_size, z_rb = -1;
    int bonus = -1;
    if (p->pp.sampling) { /* accept_chunk, here or on the large worker (the same code and stream) */
        int z;
        if (remote) m_rb = r->accept_m, z = r->accept_z, p->rng = r->rng;
        else if (accept_chunk(chunk, T, r->probs, p->dprobs, V, !(p->vstop >= 0 || p->final_check), &p->rng, &m_rb,
                              &z))
            return refuse(p, err, errlen, "verify result holds an empty distribution");
        if (m_rb) z_rb = z;
        else bonus = z;
    }
    for (int m = 1; m < T && !p->pp.sampling; m++) {
        int y = chunk[m], z = r->sampled[m - 1];
        if (p->pp.mode == POLICY_SPEC) {
            if (z != y) {
                m_rb = m;
                break;
            }
        } else if (r->nll[m - 1] > p->pp.alpha_rb) {
            if (z != y) {
                m_rb = m;
                break;
            }
            if (p->pp.faithful) break; /* the official loop looks at this first position only */
        }
    }
    int real_small = p->len - p->L_pos - 1; /* small tokens in the chunk, a proposed stop excluded */
    s->drafted += real_small;
    p->checked = p->len;
    if (m_rb) {
        int cut = p->L_pos + m_rb; /* keep seq[0, cut) */
        s->rollbacks++;
        s->rolled_back += p->len - cut;
        s->accepted += m_rb - 1;
        p->len = p->checked = cut;
        if (p->S_cached > cut) p->S_cached = cut;
        if (p->L_cached > cut) p->L_cached = cut;
        p->vstop = -1, p->final_check = 0;
        if (append_large(p, z_rb >= 0 ? z_rb : r->sampled[m_rb - 1])) return 0;
        p->L_pos = p->len - 1;
        p->state = p->pp.mode == POLICY_BILD && !p->pp.direct ? ST_EXTRA : ST_SMALL;
        return 0;
    }
    s->accepted += real_small;
    if (p->vstop >= 0 || p->final_check) /* the stop, or the tail at the length limit, is confirmed */
        return finish(p, p->vstop >= 0 ? STOP_AT_EOS : STOP_AT_LENGTH), 0;
    if (!p->pp.sampling) bonus = r->sampled[T - 1];
    else if (bonus < 0) return refuse(p, err, errlen, "verify result lacks the bonus token");
    if (!append_large(p, bonus)) p->L_pos = p->len - 1, p->state = ST_SMALL;
    return 0;
}

const int *policy_output(const policy_t *p, int *n) {
    *n = gen(p);
    return p->seq + p->n_prompt;
}

const char *policy_sources(const policy_t *p) { return p->src + p->n_prompt; }
const policy_stats_t *policy_stats(const policy_t *p) { return &p->st; }
policy_stop_t policy_stop_reason(const policy_t *p) { return p->stop; }
