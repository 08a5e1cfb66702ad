/* t5_drafter.c - see t5_drafter.h. The same steps as drafter.c: the
 * fallback test before the stop test, as in the official loop. */
#include "small_worker/t5_drafter.h"

#include <stdio.h>
#include <stdlib.h>

struct t5_drafter {
    t5_state_t *s;
    int stop_a, stop_b, V;
    float *logits; /* (BILD_MAX_DRAFT, vocab) */
};

t5_drafter_t *t5_drafter_new(t5_state_t *s, int stop_a, int stop_b) {
    t5_drafter_t *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->s = s, d->stop_a = stop_a, d->stop_b = stop_b, d->V = t5_state_config(s)->vocab_size;
    if (!(d->logits = malloc(sizeof(float) * (size_t)d->V * BILD_MAX_DRAFT))) t5_drafter_destroy(&d);
    return d;
}

void t5_drafter_destroy(t5_drafter_t **pd) {
    if (!pd || !*pd) return;
    free((*pd)->logits);
    free(*pd);
    *pd = NULL;
}

static int t5_draft(void *self, const draft_req_t *req, draft_res_t *res, char *err, int errlen) {
    t5_drafter_t *d = self;
    res->n = 0, res->passes = 0, res->end = DRAFT_LIMIT, res->stop_token = -1, res->end_max_p = 0, res->guess = -1;
    res->probs = NULL, res->cached = 0;
    if (req->want_probs) return snprintf(err, (size_t)errlen, "draft: the T5 drafter does not sample yet"), -1;
    if (req->k < 1 || req->k > BILD_MAX_DRAFT || req->n_feed < 1 || req->n_feed > BILD_MAX_DRAFT || req->keep < 0 ||
        req->keep > t5_pos(d->s))
        return snprintf(err, (size_t)errlen, "bad draft request (k %d, %d tokens to feed at %d)", req->k,
                        req->n_feed, req->keep), -1;
    t5_truncate(d->s, req->keep);
    const float *row = NULL;
    if (t5_decode(d->s, req->feed, req->n_feed, d->logits) == 0) row = d->logits + (size_t)(req->n_feed - 1) * d->V;
    for (res->passes = 1; row; res->passes++) {
        int tok;
        float mp;
        t5_row_stats(d->s, row, 1, NULL, &tok, &mp, NULL);
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
        /* the decoder's context is full: what was drafted ends as a fallback */
        if (t5_decode(d->s, &tok, 1, d->logits)) {
            res->end = DRAFT_FALLBACK, res->end_max_p = 0;
            break;
        }
        row = d->logits; /* the one row of that step */
    }
    if (!row)
        return snprintf(err, (size_t)errlen, "draft: cannot run %d tokens at decoder position %d", req->n_feed,
                        req->keep), -1;
    res->cached = t5_pos(d->s);
    return 0;
}

small_link_t t5_drafter_link(t5_drafter_t *d) { return (small_link_t){d, t5_draft}; }
