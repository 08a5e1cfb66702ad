/* generate.h - plain autoregressive generation with one model: the engine
 * behind `bild run`, and the "large model alone" baseline of BiLD.
 */
#ifndef BILD_GENERATE_H
#define BILD_GENERATE_H

#include <stddef.h>

#include "model/sampler.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

typedef enum { STOP_EOS = 0, STOP_LENGTH = 1, STOP_CONTEXT = 2 } stop_reason_t;

typedef struct {
    int n_prompt;        /* prompt tokens, BOS included */
    int n_gen;           /* tokens generated */
    int n_steps;         /* single-token forward passes after the prompt */
    double prompt_s;     /* time of the prompt pass */
    double decode_s;     /* time of the single-token steps and their sampling */
    stop_reason_t stop;
} gen_stats_t;

/* Called with each generated token and its decoded bytes (not yet UTF-8
 * sanitised; see utf8_stream_t). */
typedef void (*gen_emit_fn)(void *ud, int token, const char *bytes, size_t n);

/* Runs prompt[0..n_prompt) through tf from position 0, then samples up to
 * max_new tokens, stopping at EOS or BOS (llama2.c vocabularies end a story
 * with BOS), or when the context is full. The last sampled token is not run
 * through the model. out (max_new ints, may be NULL) receives the tokens.
 * Returns 0, or -1 if the prompt does not fit (n_prompt < 1 or > seq_len). */
int generate(transformer_t *tf, const tokenizer_t *tok, sampler_t *smp, const int *prompt, int n_prompt,
             int max_new, int *out, gen_emit_fn emit, void *ud, gen_stats_t *st);

const char *stop_reason_name(stop_reason_t r);

/* Monotonic wall clock in seconds. */
double now_s(void);

#endif
