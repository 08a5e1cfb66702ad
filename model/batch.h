/* batch.h - the forward pass for B independent sequences in lockstep:
 * one decoding step advances every sequence by one token, and each weight
 * matrix is read once per step for all B rows (the matmul ops take the B
 * rows as their T tokens), which is what makes generating a corpus with a
 * large model B times cheaper per token than B separate decoding loops.
 *
 * Every sequence has its own keys and values, but all of them sit at the
 * same position: a step feeds row b's token at position pos for every b.
 * Sequences with prompts of different lengths still run in lockstep: the
 * caller feeds the prompt's token where a row is still inside its prompt
 * and a sampled one where it is past it (align-data does this), so the
 * rows differ in content, never in position.
 *
 * Each sequence has its own KV cache, contiguous as transformer.c's (row b:
 * max_len positions of n_kv_heads * head_dim). The projections and the
 * feed-forward run on all rows at once; attention runs per row (its cost
 * is in reading that row's own cache, which batching cannot share), and
 * the step's keys and values are copied into the caches (batch.c says why
 * they are not written there directly).
 *
 * The ops per row are the ones transformer.c runs for a single-token step
 * (the same kernels; the CPU matmul computes each row with the same
 * summation order whatever the number of rows), so a batched step's logits
 * equal transformer_forward's for each sequence alone (tests/test_batch.c).
 *
 * Left out on purpose: rows at different positions, and prompt blocks
 * (a prompt is fed one token per step with the rest of the batch).
 */
#ifndef BILD_BATCH_H
#define BILD_BATCH_H

#include "kernels/ops.h"
#include "model/model.h"

typedef struct batch batch_t;

/* Wraps the weights for backend be (borrowed; must outlive the batch) and
 * allocates activations for max_rows rows and KV caches for max_rows
 * sequences of max_len positions (1 <= max_len <= cfg->seq_len). Random
 * (--dummy-weights) models are refused. Returns NULL with a message in err
 * on failure. Caller owns; release with batch_destroy. */
batch_t *batch_new(backend_t *be, const model_config_t *cfg, const model_weights_t *w, int max_rows, int max_len,
                   char *err, size_t errlen);
/* Accepts NULL; sets *pb = NULL. */
void batch_destroy(batch_t **pb);

/* One step: tokens[b] (b < n) at position pos of sequence b. pos == 0
 * starts n new sequences (the old ones are forgotten); otherwise n must be
 * the row count of the current run and pos <= its cached length (pos
 * below it cuts every sequence back to pos first). Returns a host pointer
 * to the logits, (n, vocab), borrowed until the next call; or NULL for an
 * invalid request (n outside [1, max_rows], pos outside [0, max_len), a
 * token outside the vocabulary, n or pos not fitting the run), in which
 * case nothing changes. */
const float *batch_step(batch_t *bt, const int *tokens, int n, int pos);

/* Per-row statistics (backend_t.row_stats) of the last step's logits, rows
 * [0, n): argmax, max probability, -log p(next[b]). Any output may be NULL. */
void batch_logits_stats(batch_t *bt, const int *next, int *argmax, float *max_p, float *nll);

/* Positions cached by every sequence of the current run (0 before the first step). */
int batch_cached(const batch_t *bt);
/* Rows of the current run. */
int batch_rows(const batch_t *bt);
int batch_max_rows(const batch_t *bt);
const model_config_t *batch_config(const batch_t *bt);

#endif
