/* verifier.h - the large model's side of BiLD, in process: run a block of
 * tokens in one pass and report, per position, the argmax, the sampled
 * token and -log p of the next given token. Implements large_link_t
 * (common/worker.h); the large_worker process will serve the same calls
 * over the network. */
#ifndef BILD_VERIFIER_H
#define BILD_VERIFIER_H

#include "common/worker.h"
#include "model/sampler.h"
#include "model/transformer.h"

typedef struct verifier verifier_t;

/* tf and smp are borrowed (smp NULL = greedy); temperature is the one smp
 * uses, and defines the distributions returned when a request asks for
 * them. NULL on allocation failure. */
verifier_t *verifier_new(transformer_t *tf, sampler_t *smp, float temperature);
void verifier_destroy(verifier_t **pv);
int verifier_verify(void *self, const verify_req_t *req, verify_res_t *res, char *err, int errlen);
/* verifier_verify in two parts around a pass the caller runs itself (the
 * large worker runs several sessions' blocks in one, transformer_run_multi):
 * check refuses what verify would (0, or -1 with a message); finish fills
 * res from rows row0 .. row0 + n_out of the transformer's last pass, which
 * ran the request's tokens (T == n_out: no prefix) at req->pos. */
int verifier_check(const verifier_t *v, const verify_req_t *req, char *err, int errlen);
void verifier_finish(verifier_t *v, const verify_req_t *req, int row0, verify_res_t *res);
large_link_t verifier_link(verifier_t *v);

#endif
