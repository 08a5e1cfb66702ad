/* t5_verifier.h - the large worker's verify call (common/worker.h) on a T5 /
 * mT5 decoder (model/t5.h), the source encoded before the first call.
 * Greedy only for now. */
#ifndef BILD_T5_VERIFIER_H
#define BILD_T5_VERIFIER_H

#include "common/worker.h"
#include "model/t5.h"

typedef struct t5_verifier t5_verifier_t;

t5_verifier_t *t5_verifier_new(t5_state_t *s);
void t5_verifier_destroy(t5_verifier_t **v);
large_link_t t5_verifier_link(t5_verifier_t *v);

#endif
