/* t5_drafter.h - the small worker's draft call (common/worker.h) on a T5 /
 * mT5 decoder (model/t5.h): the decoder sequence plays the prompt's part
 * (decoder_start first), the source is encoded once per request with
 * t5_encode before the first call. Greedy only for now. */
#ifndef BILD_T5_DRAFTER_H
#define BILD_T5_DRAFTER_H

#include "common/worker.h"
#include "model/t5.h"

typedef struct t5_drafter t5_drafter_t;

/* s: an encoded state (borrowed); drafting stops at stop_a or stop_b */
t5_drafter_t *t5_drafter_new(t5_state_t *s, int stop_a, int stop_b);
void t5_drafter_destroy(t5_drafter_t **d);
small_link_t t5_drafter_link(t5_drafter_t *d);

#endif
