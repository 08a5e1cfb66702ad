/* t5_pair.h - a T5 / mT5 pair (or one of the two alone) for BiLD: for each
 * request it sizes the models' states, encodes the source in each and hands
 * out the draft and verify calls (small_worker/t5_drafter.h,
 * large_worker/t5_verifier.h). The policy then runs on the decoders exactly
 * as on decoder-only models, the decoder_start token playing the prompt's
 * part. `bild generate` holds one for both models in its process; a worker
 * process holds one per session for its one model (common/t5_server.h). */
#ifndef BILD_COMMON_T5_PAIR_H
#define BILD_COMMON_T5_PAIR_H

#include <stddef.h>

#include "cli/cli.h"
#include "common/worker.h"
#include "model/t5.h"

/* The longest decoder sequence a request may ask for (T5's positions are
 * relative: this bounds the self-attention cache, not the model). */
#define T5_PAIR_MAX_DEC 4096

typedef struct t5_pair t5_pair_t;

/* small_dir / large_dir: Hugging Face folders (either may be NULL, not
 * both); dummy->on: random weights of dummy->dtype from each folder's
 * config.json (CLI_DUMMY_SEED).
 * be: the CPU backend both run on (borrowed). Checks that the two agree on
 * the vocabulary size and the decoder_start, eos and pad ids. NULL with a
 * one-line message naming the model on failure. */
t5_pair_t *t5_pair_open(const char *small_dir, const char *large_dir, const cli_dummy_t *dummy, backend_t *be,
                        char *err, size_t errlen);
/* The same on models already open (borrowed: they outlive the pair); NULL
 * only when out of memory. */
t5_pair_t *t5_pair_new(const t5_model_t *small, const t5_model_t *large, backend_t *be);
void t5_pair_close(t5_pair_t **p);
/* The config of the large model (the small one's if there is no large). */
const t5_config_t *t5_pair_config(const t5_pair_t *p);

/* Starts a request: states for a source of n_src tokens (src ends with EOS,
 * as the tokenizer's template writes it) and up to max_dec decoder tokens,
 * the source encoded by each model; *sl and *ll are the calls for the
 * session driver (zeroed for a model that is not there). *encode_s: the
 * seconds both encoders took. 0, or -1 with a message. */
int t5_pair_begin(t5_pair_t *p, const int *src, int n_src, int max_dec, small_link_t *sl, large_link_t *ll,
                  double *encode_s, char *err, size_t errlen);

#endif
