/* drafter.c - see drafter.h. The fallback test comes before the stop test,
 * as in the official loop: a step whose max probability is below alpha_fb
 * is a fallback whatever token it would have produced. */
#include "small_worker/drafter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct drafter {
    transformer_t *tf;
    sampler_t *smp;
    float temperature;
    int stop_a, stop_b;
    float *probs; /* (BILD_MAX_DRAFT + 1, vocab) when sampling */
};

drafter_t *drafter_new(transformer_t *tf, sampler_t *smp, float temperature, int stop_a, int stop_b) {
    drafter_t *d = calloc(1, sizeof(*d));
    if (!d) return NULL;
    *d = (drafter_t){tf, smp, temperature, stop_a, stop_b, NULL};
    size_t V = (size_t)transformer_config(tf)->vocab_size;
    if (smp && temperature > 0 && !(d->probs = malloc(sizeof(float) * V * (BILD_MAX_DRAFT + 1)))) drafter_destroy(&d);
    return d;
}

void drafter_destroy(drafter_t **pd) {
    if (!pd || !*pd) return;
    free((*pd)->probs);
    free(*pd);
    *pd = NULL;
}

/* Draws from the distribution row (inverse CDF with the sampler's uniform). */
static int draw(sampler_t *smp, const float *row, int V) {
    float u = sampler_uniform(smp), c = 0;
    int last = 0;
    for (int i = 0; i < V; i++) {
        if (row[i] > 0) last = i;
        if ((c += row[i]) > u) return i;
    }
    return last; /* rounding left u above the total: the last possible token */
}

int drafter_begin(const drafter_t *d, const draft_req_t *req, draft_res_t *res, char *err, int errlen) {
    res->n = 0, res->passes = 0, res->end = DRAFT_LIMIT, res->stop_token = -1, res->end_max_p = 0, res->guess = -1;
    res->probs = NULL, res->cached = 0;
    if (req->want_probs && !d->probs) {
        snprintf(err, (size_t)errlen, "draft: distributions asked for, but this drafter does not sample");
        return -1;
    }
    if (req->k < 1 || req->k > BILD_MAX_DRAFT || req->n_feed < 1 || req->keep < 0) {
        snprintf(err, (size_t)errlen, "bad draft request (k %d, %d tokens to feed)", req->k, req->n_feed);
        return -1;
    }
    return 0;
}

int drafter_step(drafter_t *d, const draft_req_t *req, int row, draft_res_t *res) {
    int am, tok, V = transformer_config(d->tf)->vocab_size;
    float mp;
    transformer_logits_stats_at(d->tf, row, 1, NULL, &am, &mp, NULL);
    /* the logits come to the host only when sampling; greedy drafting uses the stats */
    const float *logits = d->smp || req->want_probs ? transformer_logits(d->tf) + (size_t)row * V : NULL;
    if (req->want_probs) { /* sample from the full tempered distribution, and keep it */
        float *prow = d->probs + (size_t)res->n * V;
        memcpy(prow, logits, sizeof(float) * (size_t)V);
        softmax_f32(prow, V, d->temperature);
        tok = draw(d->smp, prow, V);
        res->probs = d->probs;
    } else
        tok = d->smp ? sampler_sample(d->smp, logits) : am;
    if (mp < req->alpha_fb) {
        res->end = DRAFT_FALLBACK, res->end_max_p = mp, res->guess = tok;
        return -1;
    }
    if (tok == d->stop_a || tok == d->stop_b) {
        res->end = DRAFT_STOP, res->stop_token = tok, res->end_max_p = mp;
        return -1;
    }
    res->tokens[res->n] = tok, res->max_p[res->n++] = mp;
    return res->n == req->k ? -1 : tok;
}

int drafter_draft(void *self, const draft_req_t *req, draft_res_t *res, char *err, int errlen) {
    drafter_t *d = self;
    if (drafter_begin(d, req, res, err, errlen)) return -1;
    int pos = req->keep;
    if (transformer_run(d->tf, req->feed, req->n_feed, pos, LOGITS_LAST)) {
        snprintf(err, (size_t)errlen, "draft: cannot run %d tokens at position %d (cache holds %d, context %d)",
                 req->n_feed, pos, transformer_cached(d->tf), transformer_config(d->tf)->seq_len);
        return -1;
    }
    pos += req->n_feed;
    res->passes = 1;
    for (int tok; (tok = drafter_step(d, req, 0, res)) >= 0; res->passes++) {
        if (transformer_run(d->tf, &tok, 1, pos++, LOGITS_LAST)) {
            /* the context is full: report what was drafted as a fallback */
            res->end = DRAFT_FALLBACK, res->end_max_p = 0;
            break;
        }
    }
    res->cached = transformer_cached(d->tf);
    return 0;
}

small_link_t drafter_link(drafter_t *d) { return (small_link_t){d, drafter_draft}; }
