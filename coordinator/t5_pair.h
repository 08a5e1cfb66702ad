/* t5_pair.h - a T5 / mT5 pair (or one of the two alone) in bild generate's
 * process: for each request it fits the models' states to it, encodes the
 * source in each (proto/t5_serve.h, as a worker process does for its one
 * model) and hands out the draft and verify calls
 * (small_worker/t5_drafter.h, large_worker/t5_verifier.h). The policy then
 * runs on the decoders exactly as on decoder-only models, the
 * decoder_start token playing the prompt's part. */
#ifndef BILD_COORDINATOR_T5_PAIR_H
#define BILD_COORDINATOR_T5_PAIR_H

#include <stddef.h>

#include "cli/cli.h"
#include "common/worker.h"
#include "model/t5.h"
#include "proto/t5_serve.h"

typedef struct t5_pair t5_pair_t;

/* small_dir / large_dir: Hugging Face folders (either may be NULL, not
 * both); dummy->on: random weights of dummy->dtype from each folder's
 * config.json (CLI_DUMMY_SEED). be: the CPU backend both run on
 * (borrowed). Checks that the two agree on the vocabulary size and the
 * decoder_start, eos and pad ids. NULL with a one-line message naming the
 * model on failure. */
t5_pair_t *t5_pair_open(const char *small_dir, const char *large_dir, const cli_dummy_t *dummy, backend_t *be,
                        char *err, size_t errlen);
void t5_pair_close(t5_pair_t **p);
/* The config of the large model (the small one's if there is no large). */
const t5_config_t *t5_pair_config(const t5_pair_t *p);

/* Starts a request: states for a source of n_src tokens (src ends with EOS,
 * as the tokenizer's template writes it) and up to max_dec (<= T5_MAX_DEC)
 * decoder tokens, the source encoded by each model; *sl and *ll are the
 * calls for the session driver (zeroed for a model that is not there).
 * *encode_s: the seconds both encoders took. 0, or -1 with a message. */
int t5_pair_begin(t5_pair_t *p, const int *src, int n_src, int max_dec, small_link_t *sl, large_link_t *ll,
                  double *encode_s, char *err, size_t errlen);

#endif
