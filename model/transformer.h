/* transformer.h - the Llama-family forward pass on a backend, with a KV
 * cache that can be cut back to any length.
 *
 * One call runs a block of T tokens at positions [pos, pos + T) with causal
 * masking: T = 1 is a decoding step, a large T is prompt processing, and a
 * block of draft tokens is BiLD's verification pass. The cache then holds
 * positions [0, pos + T). Running at pos < current length first truncates
 * the cache to pos (rollback); pos > length is an error.
 *
 * All buffers are allocated at creation from the configuration and
 * max_block; nothing is allocated per call.
 */
#ifndef BILD_TRANSFORMER_H
#define BILD_TRANSFORMER_H

#include "kernels/ops.h"
#include "model/model.h"

typedef struct transformer transformer_t;
typedef struct kv_cache kv_cache_t;

/* Wraps the weights for backend be (borrowed; must outlive the transformer)
 * and allocates activations for blocks of up to max_block tokens (0: 64) and a
 * KV cache of cfg->seq_len positions. Returns NULL with a message in err on
 * failure. Caller owns. */
transformer_t *transformer_new(backend_t *be, const model_config_t *cfg, const model_weights_t *w,
                               int max_block, char *err, size_t errlen);
void transformer_destroy(transformer_t **ptf);

typedef enum {
    LOGITS_LAST = 0, /* only the last position's logits (prompt processing) */
    LOGITS_ALL = 1,  /* all T rows (verification); needs T <= max_block */
} logits_mode_t;

/* Runs tokens[0..T) at positions [pos, pos+T). Blocks longer than max_block
 * are processed in pieces (only with LOGITS_LAST).
 * Returns a host pointer to the logits, (T, vocab) for LOGITS_ALL or
 * (1, vocab) for LOGITS_LAST, borrowed until the next call; or NULL if the
 * request is invalid (pos > cached length, pos + T > seq_len, T < 1, a
 * token outside the vocabulary, LOGITS_ALL with T > max_block), in which
 * case the cache is unchanged. */
const float *transformer_forward(transformer_t *tf, const int *tokens, int T, int pos, logits_mode_t mode);

/* transformer_forward without bringing the logits to the host: they stay
 * on the backend for transformer_logits_stats (a GPU's greedy path moves a
 * few numbers per row instead of the vocabulary). 0, or -1 for an invalid
 * request as above. */
int transformer_run(transformer_t *tf, const int *tokens, int T, int pos, logits_mode_t mode);
/* Host copy of the logits of the last transformer_run, as transformer_forward returns them. */
const float *transformer_logits(transformer_t *tf);

/* Per-row statistics (see backend_t.row_stats) of the logits the last
 * transformer_forward produced: rows [0, n_rows) of its result. Computed on
 * the backend; only the small outputs reach the host. */
void transformer_logits_stats(transformer_t *tf, int n_rows, const int *next, int *argmax, float *max_p,
                              float *nll);

/* Greedy decoding's shortcut (see transformer.c, screen_argmax): on the
 * CPU, with an f32 classifier, after transformer_prepare_greedy (which
 * makes a bf16 copy of the classifier: 50 ms and 18 MB for stories15M), a
 * LOGITS_LAST run leaves the classifier until its logits are read, and
 * transformer_logits_stats asking only for the argmax of that row (and -log
 * p of no next token) gets it from the copy plus an exact check of the few
 * rows within the copy's error bound: the same token as the full
 * classifier, reading half its bytes. transformer_screening says whether it
 * is on (BILD_SCREEN=0 keeps it off); the stats count the argmaxes
 * screened, those the screen left to the full classifier, and the candidate
 * rows checked exactly. */
int transformer_screening(const transformer_t *tf);
void transformer_screen_stats(const transformer_t *tf, long long *steps, long long *full, long long *cands);
void transformer_prepare_greedy(transformer_t *tf);

/* KV caches of their own, one per sequence (a worker's sessions): the
 * transformer's weights and activations are shared, and each sequence keeps
 * its positions in its own cache. transformer_use_cache(tf, kv) makes kv the
 * cache every later call reads, writes, counts (transformer_cached) and
 * truncates; NULL goes back to the transformer's own. Each cache remembers
 * its length while another is in use. A new cache is empty. */
kv_cache_t *transformer_cache_new(transformer_t *tf, char *err, size_t errlen);
void transformer_cache_free(transformer_t *tf, kv_cache_t **kv); /* if in use, the own cache is used next */
void transformer_use_cache(transformer_t *tf, kv_cache_t *kv);
size_t transformer_cache_bytes(const transformer_t *tf); /* the size of one cache */

/* Several sequences in one pass: sequence i runs tokens[i][0..T[i]) at
 * positions [pos[i], pos[i] + T[i]) on its own cache kv[i] (NULL: the
 * transformer's own), each cache once. The matrix products see all rows
 * together, so each weight matrix is read once for all the sequences;
 * attention runs per sequence over its own cache. The logits of the last
 * n_out[i] rows of sequence i are kept (n_out NULL: all T[i], as
 * LOGITS_ALL), sequence i's rows after sequence i - 1's, for
 * transformer_logits and transformer_logits_stats_at; rows not kept skip
 * the classifier (a prompt verified with its last token). Each row's logits
 * equal bit for bit what transformer_run gives for that sequence alone.
 * The rows together must fit in max_block. Afterwards the transformer's own
 * cache is the one in use. 0, or -1 for an invalid request (as
 * transformer_run's, per sequence, or n_out[i] outside 1..T[i]; nothing
 * changed then). */
int transformer_run_multi(transformer_t *tf, int n, kv_cache_t *const *kv, const int *const *tokens, const int *T,
                          const int *pos, const int *n_out);
/* transformer_logits_stats for rows [row0, row0 + n_rows) of the last pass. */
void transformer_logits_stats_at(transformer_t *tf, int row0, int n_rows, const int *next, int *argmax, float *max_p,
                                 float *nll);

/* Number of cached positions. */
int transformer_cached(const transformer_t *tf);
/* Forgets positions >= len (len <= cached length; larger values are ignored). */
void transformer_truncate(transformer_t *tf, int len);
const model_config_t *transformer_config(const transformer_t *tf);
/* The RoPE table the forward pass uses, for positions [0, n_pos): cs
 * (n_pos, head_dim/2, 2) gets cos and sin of each pair's angle (theta and
 * llama3 scaling from c), computed in double. Shared with model/batch.c so
 * that both compute bit-identical rotations. */
void transformer_rope_table(const model_config_t *c, int n_pos, float *cs);
int transformer_max_block(const transformer_t *tf);

/* A draft vocabulary (frequency-ranked speculative drafting, FR-Spec, Zhao
 * et al. 2025): the classifier computes only the rows of the k token ids in
 * ids (any order; each once, each < vocab), so a small model's step skips
 * most of its output layer. Logits are then a softmax over those k tokens
 * only: transformer_logits returns rows over the whole vocabulary with
 * -inf (probability 0) at every other id, and transformer_logits_stats
 * gives vocabulary ids, the max probability over the k tokens, and an
 * infinite -log p for a next id outside them. k = 0 (or ids NULL) restores
 * the full classifier. The rows are copied (k x dim, the weights' dtype).
 * 0, or -1 with a message in err (a bad id, out of memory, dummy weights). */
int transformer_set_head(transformer_t *tf, const int *ids, int k, char *err, size_t errlen);
/* Size of the draft vocabulary (0: the full one). */
int transformer_head_size(const transformer_t *tf);

#endif
