/* align.h - the alignment tooling behind `bild align-data` and `bild
 * align-eval` (docs/align.md):
 *
 *   align-data  writes a calibration corpus with the large model: rows of
 *               sampled tokens and, at every position, the large model's
 *               top-K next tokens with their log-probabilities, in the
 *               bild-align-corpus format that tools/align/train_small.py
 *               reads. Generation is batched (model/batch.h).
 *   align-eval  teacher-forced comparison of a small and a large model on a
 *               text: greedy agreement, the small model's confidence and
 *               how often it is right when confident, both perplexities,
 *               and the measured per-token cost ratio c.
 *
 * The commands' entry points are cmd_align_data and cmd_align_eval
 * (cli/commands.h); they return the exit codes of cli/cli.h (0 ok,
 * 1 runtime, 2 usage, 3 input, 4 fit). The helpers below are the pieces of
 * the two commands that have a contract of their own (the corpus format's
 * numbers).
 */
#ifndef BILD_ALIGN_H
#define BILD_ALIGN_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

/* FNV-1a 64 of n bytes, continuing from h (start with ALIGN_FNV_INIT). */
#define ALIGN_FNV_INIT 0xcbf29ce484222325ULL
uint64_t align_fnv1a64(uint64_t h, const void *p, size_t n);

/* The corpus manifest's model fingerprint: FNV-1a 64 over dim, hidden_dim,
 * n_layers, n_heads, n_kv_heads, vocab_size as int32 little-endian, then the
 * token-embedding matrix's bytes as stored (vocab x dim of w->dtype). */
uint64_t align_model_fnv(const model_config_t *c, const model_weights_t *w);

/* The k most probable ids of logits[0..n) (k <= n), best first; equal
 * logits in id order (a NaN logit ranks as -inf). ids gets k ids. */
void align_topk(const float *logits, int n, int k, int *ids);

#endif
