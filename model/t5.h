/* t5.h - T5 and mT5 encoder-decoders from Hugging Face directories
 * (T5ForConditionalGeneration, MT5ForConditionalGeneration), on the CPU.
 *
 * A first slice of the paper's own models (issue 20): the loader and a
 * forward pass (encoder, decoder steps and blocks with a self-attention
 * cache and the encoder's keys and values cached per source), checked
 * against tools/ref/t5_ref.py. Matrix products run on the CPU backend's
 * kernels. bild generate runs pairs in process (coordinator/t5_pair.h)
 * and as worker processes (proto/t5_serve.h). */
#ifndef BILD_T5_H
#define BILD_T5_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"

typedef struct {
    char arch[48];      /* "T5ForConditionalGeneration" or "MT5ForConditionalGeneration" */
    int vocab_size;
    int d_model, d_kv, n_heads, d_ff; /* inner attention width: n_heads * d_kv */
    int n_enc_layers, n_dec_layers;
    int n_buckets, max_distance;      /* relative position buckets */
    float eps;                        /* layer_norm_epsilon */
    int gated;                        /* feed_forward_proj: 0 "relu" (T5 v1.0), 1 "gated-gelu" (v1.1, mT5) */
    int tied;                         /* tie_word_embeddings: output = (h * d_model^-0.5) shared^T */
    int decoder_start, eos, pad;      /* token ids */
} t5_config_t;

typedef struct t5_model t5_model_t;
typedef struct t5_state t5_state_t;

/* Opens DIR (config.json, model.safetensors or a sharded index; f32, f16
 * or bf16: matrices keep the file's dtype, norms and biases are widened to
 * f32). NULL with a one-line message naming the
 * directory, file and field on any problem. */
t5_model_t *t5_open(const char *dir, char *err, size_t errlen);
/* --dummy-weights: DIR's config.json with random weights, matrices in
 * dtype (the same for the same seed): speed at a real model's shapes
 * without its weights. */
t5_model_t *t5_open_dummy(const char *dir, dtype_t dtype, uint64_t seed, char *err, size_t errlen);
/* 1 if DIR's config.json names a T5 or mT5 model (model_type "t5" or
 * "mt5", or a T5 architecture): bild generate's way to tell the pairs apart. */
int t5_probe(const char *dir);
void t5_close(t5_model_t *m);
const t5_config_t *t5_config(const t5_model_t *m);

/* Per-request state: encoder output, cross-attention keys and values, the
 * decoder's self-attention cache for up to max_dec tokens. be: a CPU
 * backend (backend_cpu_new), whose kernels and threads run the matrix
 * products; the rest (norms, attention) is plain C on the calling thread. */
t5_state_t *t5_state_new(const t5_model_t *m, backend_t *be, int max_src, int max_dec);
void t5_state_free(t5_state_t *s);
/* Encodes src[0..n) (the caller appends EOS as T5 expects); resets the
 * decoder. enc_out (n, d_model), if not NULL, receives the final normalised
 * encoder output. 0, or -1 if n is not in 1..max_src. */
int t5_encode(t5_state_t *s, const int *src, int n, float *enc_out);
/* Runs T decoder tokens at positions pos..pos+T-1 (pos = tokens run so
 * far); logits (T, vocab). Each row is computed exactly as a single step
 * would: a block equals its steps bit for bit. 0, or -1 if the cache would
 * overflow or nothing was encoded. */
int t5_decode(t5_state_t *s, const int *tokens, int T, float *logits);
/* Drops decoder positions from pos on (a rollback). */
void t5_truncate(t5_state_t *s, int pos);
int t5_pos(const t5_state_t *s);
const t5_config_t *t5_state_config(const t5_state_t *s);
/* The backend's row statistics (kernels/ops.h row_stats) of T logits rows
 * t5_decode wrote: argmax, max probability, -log p(next[t]); any output may
 * be NULL. */
void t5_row_stats(t5_state_t *s, const float *logits, int T, const int *next, int *argmax, float *max_p,
                  float *nll);
int t5_state_max_dec(const t5_state_t *s);

/* The Hugging Face relative position bucket of (key position - query
 * position): bidirectional in the encoder, causal in the decoder. */
int t5_bucket(int rel, int bidirectional, int n_buckets, int max_distance);

#endif
