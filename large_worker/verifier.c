/* verifier.c - see verifier.h. Positions before the n_out reported ones run
 * in the same call with only their cache entries kept (the prompt pass asks
 * for the last position alone). */
#include "large_worker/verifier.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct verifier {
    transformer_t *tf;
    sampler_t *smp;
    float temperature;
    float *probs; /* (BILD_MAX_DRAFT, vocab) when sampling */
};

verifier_t *verifier_new(transformer_t *tf, sampler_t *smp, float temperature) {
    verifier_t *v = calloc(1, sizeof(*v));
    if (!v) return NULL;
    *v = (verifier_t){tf, smp, temperature, NULL};
    size_t V = (size_t)transformer_config(tf)->vocab_size;
    if (smp && temperature > 0 && !(v->probs = malloc(sizeof(float) * V * BILD_MAX_DRAFT))) verifier_destroy(&v);
    return v;
}

void verifier_destroy(verifier_t **pv) {
    if (!pv || !*pv) return;
    free((*pv)->probs);
    free(*pv);
    *pv = NULL;
}

int verifier_check(const verifier_t *v, const verify_req_t *req, char *err, int errlen) {
    int T = req->T, n = req->n_out;
    if (req->want_probs && !v->probs) {
        snprintf(err, (size_t)errlen, "verify: distributions asked for, but this verifier does not sample");
        return -1;
    }
    if (T < 1 || n < 1 || n > T || n > BILD_MAX_DRAFT || n > transformer_max_block(v->tf)) {
        snprintf(err, (size_t)errlen, "bad verify request (T %d, n_out %d)", T, n);
        return -1;
    }
    return 0;
}

void verifier_finish(verifier_t *v, const verify_req_t *req, int row0, verify_res_t *res) {
    int n = req->n_out, pre = req->T - n, V = transformer_config(v->tf)->vocab_size;
    /* greedy: the statistics only, the logits stay where they are */
    const float *logits = v->smp || req->want_probs ? transformer_logits(v->tf) + (size_t)row0 * V : NULL;
    int next[BILD_MAX_DRAFT];
    for (int j = 0; j < n; j++) next[j] = j + 1 < n ? req->tokens[pre + j + 1] : -1;
    /* the argmaxes alone, through the classifier's screen; nll a lower bound (verify_req_t) */
    if (req->argmax_only && !logits && transformer_screening(v->tf)) {
        transformer_logits_stats_at(v->tf, row0, n, NULL, res->argmax, NULL, NULL);
        for (int j = 0; j < n; j++) res->nll[j] = next[j] >= 0 && res->argmax[j] != next[j] ? (float)M_LN2 : 0.0f;
    } else
        transformer_logits_stats_at(v->tf, row0, n, next, res->argmax, NULL, res->nll);
    for (int j = 0; j < n; j++)
        res->sampled[j] = v->smp ? sampler_sample(v->smp, logits + (size_t)j * V) : res->argmax[j];
    res->probs = NULL;
    if (req->want_probs) {
        memcpy(v->probs, logits, sizeof(float) * (size_t)n * V);
        for (int j = 0; j < n; j++) softmax_f32(v->probs + (size_t)j * V, V, v->temperature);
        res->probs = v->probs;
    }
    res->n_out = n;
}

int verifier_verify(void *self, const verify_req_t *req, verify_res_t *res, char *err, int errlen) {
    verifier_t *v = self;
    int T = req->T, n = req->n_out, pre = T - n;
    res->probs = NULL;
    if (verifier_check(v, req, err, errlen)) return -1;
    if (n == 1) { /* a prompt and its first token: one pass (the last row's logits are the same either way) */
        if (transformer_run(v->tf, req->tokens, T, req->pos, LOGITS_LAST)) goto bad;
    } else {
        if (pre > 0 && transformer_run(v->tf, req->tokens, pre, req->pos, LOGITS_LAST)) goto bad;
        if (transformer_run(v->tf, req->tokens + pre, n, req->pos + pre, LOGITS_ALL)) goto bad;
    }
    verifier_finish(v, req, 0, res);
    return 0;
bad:
    snprintf(err, (size_t)errlen, "verify: cannot run %d tokens at position %d (cache holds %d, context %d)", T,
             req->pos, transformer_cached(v->tf), transformer_config(v->tf)->seq_len);
    return -1;
}

large_link_t verifier_link(verifier_t *v) { return (large_link_t){v, verifier_verify, NULL, NULL}; }
