/* verifier.h - the large model's side of BiLD, in process: run a block of
 * tokens in one pass and report, per position, the argmax, the sampled
 * token and -log p of the next given token. Implements large_link_t
 * (coordinator/worker.h); the large_worker process will serve the same calls
 * over the network. */
#ifndef BILD_VERIFIER_H
#define BILD_VERIFIER_H

#include "coordinator/worker.h"
#include "model/sampler.h"
#include "model/transformer.h"

typedef struct verifier verifier_t;

/* tf and smp are borrowed (smp NULL = greedy); temperature is the one smp
 * uses, and defines the distributions returned when a request asks for
 * them. NULL on allocation failure. */
verifier_t *verifier_new(transformer_t *tf, sampler_t *smp, float temperature);
void verifier_destroy(verifier_t **pv);
int verifier_verify(void *self, const verify_req_t *req, verify_res_t *res, char *err, int errlen);
large_link_t verifier_link(verifier_t *v);

#endif
