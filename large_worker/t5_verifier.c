/* t5_verifier.c - see t5_verifier.h: one decoder pass over the block, then
 * for each of the last n_out rows the argmax and -log p of the next given
 * token, as verifier.c reports them. */
#include "large_worker/t5_verifier.h"

#include <stdio.h>
#include <stdlib.h>

struct t5_verifier {
    t5_state_t *s;
    int V, max_T;
    float *logits; /* (max_T, vocab) */
};

t5_verifier_t *t5_verifier_new(t5_state_t *s) {
    t5_verifier_t *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->s = s, v->V = t5_state_config(s)->vocab_size, v->max_T = t5_state_max_dec(s) < BILD_MAX_DRAFT ? t5_state_max_dec(s) : BILD_MAX_DRAFT;
    if (!(v->logits = malloc(sizeof(float) * (size_t)v->V * v->max_T))) t5_verifier_destroy(&v);
    return v;
}

void t5_verifier_destroy(t5_verifier_t **pv) {
    if (!pv || !*pv) return;
    free((*pv)->logits);
    free(*pv);
    *pv = NULL;
}

static int t5_verify(void *self, const verify_req_t *req, verify_res_t *res, char *err, int errlen) {
    t5_verifier_t *v = self;
    const int T = req->T, n = req->n_out, pre = T - n, V = v->V;
    res->probs = NULL, res->accept_done = 0;
    if (req->want_probs || req->accept_here)
        return snprintf(err, (size_t)errlen, "verify: the T5 verifier does not sample yet"), -1;
    if (T < 1 || n < 1 || n > T || n > BILD_MAX_DRAFT || T > v->max_T || req->pos < 0 || req->pos > t5_pos(v->s))
        return snprintf(err, (size_t)errlen, "bad verify request (T %d, n_out %d at %d)", T, n, req->pos), -1;
    t5_truncate(v->s, req->pos);
    if (t5_decode(v->s, req->tokens, T, v->logits))
        return snprintf(err, (size_t)errlen, "verify: cannot run %d tokens at decoder position %d", T, req->pos), -1;
    int next[BILD_MAX_DRAFT];
    for (int j = 0; j < n; j++) next[j] = j + 1 < n ? req->tokens[pre + j + 1] : -1;
    t5_row_stats(v->s, v->logits + (size_t)pre * V, n, next, res->argmax, NULL, res->nll);
    for (int j = 0; j < n; j++) res->sampled[j] = res->argmax[j];
    res->n_out = n;
    return 0;
}

large_link_t t5_verifier_link(t5_verifier_t *v) { return (large_link_t){v, t5_verify, NULL, NULL}; }
