/* t5_pair.c - see t5_pair.h. Each model's state is made for the first
 * request and made again only when a request needs more room than it holds
 * (t5_serve_source). */
#include "coordinator/t5_pair.h"

#include <stdio.h>
#include <stdlib.h>

#include "large_worker/t5_verifier.h"
#include "small_worker/t5_drafter.h"

struct t5_pair {
    t5_model_t *m[2];           /* small, large (NULL: not used) */
    t5_serve_t c[2];            /* each model's context ... */
    t5_serve_session_t x[2];    /* ... and state */
    t5_drafter_t *dr;           /* on x[0].s */
    t5_verifier_t *vf;          /* on x[1].s */
};

t5_pair_t *t5_pair_open(const char *small_dir, const char *large_dir, const cli_dummy_t *dummy, backend_t *be,
                        char *err, size_t errlen) {
    t5_pair_t *p = calloc(1, sizeof *p);
    if (!p) return snprintf(err, errlen, "out of memory"), NULL;
    const char *dirs[2] = {small_dir, large_dir};
    for (int i = 0; i < 2; i++) {
        if (dirs[i] && !(p->m[i] = dummy->on ? t5_open_dummy(dirs[i], dummy->dtype, CLI_DUMMY_SEED, err, errlen)
                                             : t5_open(dirs[i], err, errlen))) {
            t5_pair_close(&p);
            return NULL;
        }
        p->c[i] = (t5_serve_t){.m = p->m[i], .be = be};
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

void t5_pair_close(t5_pair_t **pp) {
    if (!pp || !*pp) return;
    t5_pair_t *p = *pp;
    t5_drafter_destroy(&p->dr);
    t5_verifier_destroy(&p->vf);
    for (int i = 0; i < 2; i++) t5_serve_session_clear(&p->x[i]), t5_close(p->m[i]);
    free(p);
    *pp = NULL;
}

const t5_config_t *t5_pair_config(const t5_pair_t *p) { return t5_config(p->m[1] ? p->m[1] : p->m[0]); }

int t5_pair_begin(t5_pair_t *p, const int *src, int n_src, int max_dec, small_link_t *sl, large_link_t *ll,
                  double *encode_s, char *err, size_t errlen) {
    *sl = (small_link_t){0}, *ll = (large_link_t){0}, *encode_s = 0;
    const source_req_t q = {src, n_src, max_dec};
    const t5_config_t *c = t5_pair_config(p);
    char why[300];
    for (int i = 0; i < 2; i++) {
        if (!p->m[i]) continue;
        int fresh;
        double e0 = p->c[i].encode_s;
        if (t5_serve_source(&p->c[i], &p->x[i], &q, &fresh, why, sizeof why))
            return snprintf(err, errlen, "the %s model: %s", i ? "large" : "small", why), -1;
        *encode_s += p->c[i].encode_s - e0;
        if (fresh && i == 0) t5_drafter_destroy(&p->dr);
        if (fresh && i == 1) t5_verifier_destroy(&p->vf);
    }
    if ((p->m[0] && !p->dr && !(p->dr = t5_drafter_new(p->x[0].s, c->eos, c->eos))) ||
        (p->m[1] && !p->vf && !(p->vf = t5_verifier_new(p->x[1].s))))
        return snprintf(err, errlen, "out of memory"), -1;
    if (p->dr) *sl = t5_drafter_link(p->dr);
    if (p->vf) *ll = t5_verifier_link(p->vf);
    return 0;
}
