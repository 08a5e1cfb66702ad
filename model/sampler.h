/* sampler.h - next-token selection from logits, and the per-position
 * statistics BiLD's policy needs.
 *
 * Sampling order: temperature scaling, softmax, then top-k (keep the k most
 * probable), then top-p (keep the smallest most-probable set whose mass is
 * >= p), renormalise, draw with a seeded RNG. temperature == 0 is greedy
 * (argmax, lowest id on ties). The RNG is xorshift64* (seeded through
 * splitmix64, so any seed works, 0 included) and the weights are computed
 * without libm, so a seed gives the same tokens on every machine.
 * Tokens with -inf logits are never drawn; NaN logits weigh 0.
 */
#ifndef BILD_SAMPLER_H
#define BILD_SAMPLER_H

#include <stdint.h>

typedef struct sampler sampler_t;

/* temperature >= 0; top_p in (0, 1] (1 disables); top_k >= 0 (0 disables).
 * Returns NULL on bad arguments or allocation failure. Caller owns. */
sampler_t *sampler_new(int vocab_size, float temperature, float top_p, int top_k, uint64_t seed);
void sampler_destroy(sampler_t **ps);

/* Picks the next token from logits (vocab_size floats). logits is not
 * modified. No sort and no allocation: O(V) plus O(V log k) for top-k.
 * An infinite or NaN maximum logit gives the argmax. */
int sampler_sample(sampler_t *s, const float *logits);

/* 1 when the sampler always picks the argmax (temperature 0). */
int sampler_is_greedy(const sampler_t *s);

/* A uniform float in [0, 1) from the sampler's RNG (for callers such as
 * speculative decoding's accept test that must share the stream). */
float sampler_uniform(sampler_t *s);

/* Index of the largest value; the lowest index on ties. NaN values are
 * skipped, except that a NaN at index 0 gives 0. n > 0 (CHECKed). */
int argmax_f32(const float *x, int n);

/* From raw logits (temperature 1): the largest probability max_i p_i, and
 * -log p(token) in nats (token may be -1 to skip it; *nll is then 0).
 * Computed with log-sum-exp in double, so it is exact to float precision.
 * token must be in [-1, n) and n > 0 (CHECKed); either output may be NULL. */
void logits_stats(const float *logits, int n, int token, float *max_prob, float *nll);

/* In place: x = softmax(x / temperature) over n values (temperature > 0). */
void softmax_f32(float *x, int n, float temperature);

#endif
