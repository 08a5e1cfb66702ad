/* drafter.h - the small model's side of BiLD, in process: catch up on the
 * tokens it has not seen, then draft until k tokens, a fallback (max
 * probability below alpha_fb) or a proposed stop token. Implements
 * small_link_t (common/worker.h); the small_worker process will serve the
 * same calls over the network. */
#ifndef BILD_DRAFTER_H
#define BILD_DRAFTER_H

#include "common/worker.h"
#include "model/sampler.h"
#include "model/transformer.h"

typedef struct drafter drafter_t;

/* tf and smp are borrowed (smp NULL = greedy). temperature is the one smp
 * uses; with smp, requests may ask for the full distributions (rejection
 * sampling), drawn from softmax(logits / temperature). NULL on allocation
 * failure. */
drafter_t *drafter_new(transformer_t *tf, sampler_t *smp, float temperature, int stop_a, int stop_b);
void drafter_destroy(drafter_t **pd);
int drafter_draft(void *self, const draft_req_t *req, draft_res_t *res, char *err, int errlen);
/* drafter_draft in steps, for passes the caller runs itself (the small
 * worker drafts for several sessions in lockstep, transformer_run_multi):
 * begin checks the request (0, or -1 with a message) and clears res; after
 * each pass, step reads the logits row `row` of it (the request's last
 * position), decides as drafter_draft does, and returns the token to run
 * next at the following position, or -1 when the draft is over. The caller
 * counts res->passes and sets res->cached. */
int drafter_begin(const drafter_t *d, const draft_req_t *req, draft_res_t *res, char *err, int errlen);
int drafter_step(drafter_t *d, const draft_req_t *req, int row, draft_res_t *res);
small_link_t drafter_link(drafter_t *d);

#endif
