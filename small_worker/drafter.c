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

int drafter_draft(void *self, const draft_req_t *req, draft_res_t *res, char *err, int errlen) {
    drafter_t *d = self;
    res->n = 0, res->passes = 0, res->end = DRAFT_LIMIT, res->stop_token = -1, res->end_max_p = 0, res->guess = -1;
    res->probs = NULL;
    if (req->want_probs && !d->probs) {
        snprintf(err, (size_t)errlen, "draft: distributions asked for, but this drafter does not sample");
        return -1;
    }
    if (req->k < 1 || req->k > BILD_MAX_DRAFT || req->n_feed < 1 || req->keep < 0) {
        snprintf(err, (size_t)errlen, "bad draft request (k %d, %d tokens to feed)", req->k, req->n_feed);
        return -1;
    }
    int pos = req->keep;
    /* the logits come to the host only when sampling; greedy drafting uses the stats */
    const float *logits = NULL;
    int need_logits = d->smp || req->want_probs;
    if (transformer_run(d->tf, req->feed, req->n_feed, pos, LOGITS_LAST)) {
        snprintf(err, (size_t)errlen, "draft: cannot run %d tokens at position %d (cache holds %d, context %d)",
                 req->n_feed, pos, transformer_cached(d->tf), transformer_config(d->tf)->seq_len);
        return -1;
    }
    pos += req->n_feed;
    res->passes = 1;
    for (;;) {
        int am;
        float mp;
        transformer_logits_stats(d->tf, 1, NULL, &am, &mp, NULL);
        int tok, V = transformer_config(d->tf)->vocab_size;
        if (need_logits) logits = transformer_logits(d->tf);
        if (req->want_probs) { /* sample from the full tempered distribution, and keep it */
            float *row = d->probs + (size_t)res->n * V;
            memcpy(row, logits, sizeof(float) * (size_t)V);
            softmax_f32(row, V, d->temperature);
            tok = draw(d->smp, row, V);
            res->probs = d->probs;
        } else
            tok = d->smp ? sampler_sample(d->smp, logits) : am;
        if (mp < req->alpha_fb) {
            res->end = DRAFT_FALLBACK, res->end_max_p = mp, res->guess = tok;
            break;
        }
        if (tok == d->stop_a || tok == d->stop_b) {
            res->end = DRAFT_STOP, res->stop_token = tok, res->end_max_p = mp;
            break;
        }
        res->tokens[res->n] = tok, res->max_p[res->n++] = mp;
        if (res->n == req->k) break;
        if (transformer_run(d->tf, &tok, 1, pos++, LOGITS_LAST)) {
            /* the context is full: report what was drafted as a fallback */
            res->end = DRAFT_FALLBACK, res->end_max_p = 0;
            break;
        }
        res->passes++;
    }
    res->cached = transformer_cached(d->tf);
    return 0;
}

small_link_t drafter_link(drafter_t *d) { return (small_link_t){d, drafter_draft}; }
