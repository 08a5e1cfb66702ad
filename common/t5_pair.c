/* t5_pair.c - see t5_pair.h. The states are made for the first request and
 * made again only when a request needs more room than they hold. */
#include "common/t5_pair.h"

#include <stdio.h>
#include <stdlib.h>

#include "large_worker/t5_verifier.h"
#include "model/generate.h"
#include "small_worker/t5_drafter.h"

struct t5_pair {
    backend_t *be;
    const t5_model_t *m[2]; /* small, large (NULL: not used) */
    t5_model_t *own[2];     /* the ones this pair opened */
    t5_state_t *s[2];
    int max_src, max_dec; /* what the states hold */
    t5_drafter_t *dr;
    t5_verifier_t *vf;
};

t5_pair_t *t5_pair_open(const char *small_dir, const char *large_dir, const cli_dummy_t *dummy, backend_t *be,
                        char *err, size_t errlen) {
    t5_pair_t *p = calloc(1, sizeof *p);
    if (!p) return snprintf(err, errlen, "out of memory"), NULL;
    p->be = be;
    const char *dirs[2] = {small_dir, large_dir};
    for (int i = 0; i < 2; i++) {
        if (dirs[i] && !(p->own[i] = dummy->on ? t5_open_dummy(dirs[i], dummy->dtype, CLI_DUMMY_SEED, err, errlen)
                                               : t5_open(dirs[i], err, errlen))) {
            t5_pair_close(&p);
            return NULL;
        }
        p->m[i] = p->own[i];
    }
    if (p->m[0] && p->m[1]) {
        const t5_config_t *a = t5_config(p->m[0]), *b = t5_config(p->m[1]);
        if (a->vocab_size != b->vocab_size) {
            snprintf(err, errlen, "vocabularies differ: the small model has %d tokens, the large one %d; BiLD needs "
                                  "one shared vocabulary", a->vocab_size, b->vocab_size);
            t5_pair_close(&p);
            return NULL;
        }
        if (a->decoder_start != b->decoder_start || a->eos != b->eos || a->pad != b->pad) {
            snprintf(err, errlen, "the models disagree on decoder_start_token_id, eos_token_id or pad_token_id "
                                  "(small %d/%d/%d, large %d/%d/%d)", a->decoder_start, a->eos, a->pad,
                     b->decoder_start, b->eos, b->pad);
            t5_pair_close(&p);
            return NULL;
        }
    }
    return p;
}

t5_pair_t *t5_pair_new(const t5_model_t *small, const t5_model_t *large, backend_t *be) {
    t5_pair_t *p = calloc(1, sizeof *p);
    if (p) p->be = be, p->m[0] = small, p->m[1] = large;
    return p;
}

static void free_states(t5_pair_t *p) {
    t5_drafter_destroy(&p->dr);
    t5_verifier_destroy(&p->vf);
    for (int i = 0; i < 2; i++) t5_state_free(p->s[i]), p->s[i] = NULL;
    p->max_src = p->max_dec = 0;
}

void t5_pair_close(t5_pair_t **pp) {
    if (!pp || !*pp) return;
    t5_pair_t *p = *pp;
    free_states(p);
    t5_close(p->own[0]), t5_close(p->own[1]);
    free(p);
    *pp = NULL;
}

const t5_config_t *t5_pair_config(const t5_pair_t *p) { return t5_config(p->m[1] ? p->m[1] : p->m[0]); }

int t5_pair_begin(t5_pair_t *p, const int *src, int n_src, int max_dec, small_link_t *sl, large_link_t *ll,
                  double *encode_s, char *err, size_t errlen) {
    *sl = (small_link_t){0}, *ll = (large_link_t){0}, *encode_s = 0;
    if (n_src < 1 || max_dec < 1 || max_dec > T5_PAIR_MAX_DEC)
        return snprintf(err, errlen, "a source of %d tokens and %d decoder tokens cannot be run", n_src, max_dec), -1;
    if (n_src > p->max_src || max_dec > p->max_dec) { /* room for this request and the ones before */
        int ms = n_src > p->max_src ? n_src : p->max_src, md = max_dec > p->max_dec ? max_dec : p->max_dec;
        free_states(p);
        for (int i = 0; i < 2; i++)
            if (p->m[i] && !(p->s[i] = t5_state_new(p->m[i], p->be, ms, md))) {
                free_states(p);
                return snprintf(err, errlen, "out of memory for a source of %d tokens and %d decoder tokens", ms,
                                md), -1;
            }
        const t5_config_t *c = t5_pair_config(p);
        if ((p->s[0] && !(p->dr = t5_drafter_new(p->s[0], c->eos, c->eos))) ||
            (p->s[1] && !(p->vf = t5_verifier_new(p->s[1])))) {
            free_states(p);
            return snprintf(err, errlen, "out of memory"), -1;
        }
        p->max_src = ms, p->max_dec = md;
    }
    double t0 = now_s();
    for (int i = 0; i < 2; i++)
        if (p->s[i] && t5_encode(p->s[i], src, n_src, NULL))
            return snprintf(err, errlen, "the %s model cannot encode %d tokens", i ? "large" : "small", n_src), -1;
    *encode_s = now_s() - t0;
    if (p->dr) *sl = t5_drafter_link(p->dr);
    if (p->vf) *ll = t5_verifier_link(p->vf);
    return 0;
}
