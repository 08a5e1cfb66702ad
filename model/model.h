/* model.h - what the engine knows about a model: its configuration and a
 * host view of its weights, independent of the file format they came from.
 *
 * model_open() recognises the format (a llama2.c checkpoint file, or a
 * Hugging Face directory: model/hf.c) and maps the weights read-only; the
 * transformer then wraps them for its backend.
 */
#ifndef BILD_MODEL_H
#define BILD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"

#define MODEL_MAX_EOS 8

typedef enum { ROPE_SCALING_NONE = 0, ROPE_SCALING_LLAMA3 = 1 } rope_scaling_t;

typedef struct {
    int dim;          /* residual stream width */
    int hidden_dim;   /* SwiGLU inner width */
    int n_layers;
    int n_heads;      /* query heads */
    int n_kv_heads;   /* key/value heads (grouped-query attention when < n_heads) */
    int head_dim;
    int vocab_size;
    int seq_len;      /* context length used: the KV cache holds this many positions */
    int shared_classifier; /* 1: the output head is the token embedding */
    float norm_eps;
    float rope_theta;
    rope_style_t rope_style;
    int bos_id, eos_id;    /* -1 when the model has none; eos_id is eos_ids[0] */
    int n_eos;             /* end-of-sequence ids (Hugging Face configs may list several) */
    int eos_ids[MODEL_MAX_EOS];
    int qkv_bias;          /* 1: q, k and v projections have biases (Qwen2) */
    /* RoPE frequency scaling, applied to the frequency table (llama3 only) */
    rope_scaling_t rope_scaling;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_ctx;     /* original_max_position_embeddings */
    int trained_seq_len;   /* max_position_embeddings; seq_len may be capped below it */
} model_config_t;

/* Host pointers into the mapped file; per-layer arrays hold n_layers entries.
 * Shapes: tok_emb (vocab, dim); rms_att, rms_ffn (dim); wq (n_heads*head_dim, dim);
 * wk, wv (n_kv_heads*head_dim, dim); wo (dim, n_heads*head_dim);
 * w1, w3 (hidden_dim, dim); w2 (dim, hidden_dim); rms_final (dim);
 * wcls (vocab, dim), equal to tok_emb when shared;
 * bq (n_heads*head_dim), bk, bv (n_kv_heads*head_dim) only when cfg.qkv_bias
 * (else the arrays are NULL).
 * dtype is the type of the matrices (tok_emb, wq, wk, wv, wo, w1, w2, w3,
 * wcls); the norm weights and the biases are always f32.
 * dummy = 1: no weights at all (every pointer NULL); the transformer asks its
 * backend for random ones from seed (benchmarks at real model shapes). */
typedef struct {
    dtype_t dtype;
    int dummy;
    uint64_t seed;
    const void *tok_emb, *rms_final, *wcls;
    const void **rms_att, **wq, **wk, **wv, **wo, **rms_ffn, **w1, **w2, **w3;
    const void **bq, **bk, **bv;
} model_weights_t;

typedef struct model_file model_file_t;

/* Opens a model: a llama2.c checkpoint file, or a Hugging Face directory
 * (config.json with model.safetensors or model.safetensors.index.json).
 * Returns NULL on failure with a one-line message in err that names the
 * path, the file and the field and says what is wrong. Caller owns the
 * result; the weights stay mapped (or, for widened half weights, allocated)
 * until model_close. */
model_file_t *model_open(const char *path, char *err, size_t errlen);
void model_close(model_file_t **pm);

const model_config_t *model_config(const model_file_t *m);
const model_weights_t *model_weights(const model_file_t *m);
/* Bytes of weights one decoding step reads (every matrix once; one row of
 * the embedding unless it doubles as the classifier). */
size_t model_step_bytes(const model_config_t *c);
/* Number of parameters. */
size_t model_n_params(const model_config_t *c);
const char *model_path(const model_file_t *m);
/* Caps the context (cfg.seq_len, hence the KV cache a transformer allocates)
 * at n positions, never above what the model was trained for; n <= 0
 * restores the trained length. Call before transformer_new. Hugging Face
 * models open capped at MODEL_HF_DEFAULT_CTX. */
void model_limit_context(model_file_t *m, int n);

/* Moves the mapped weight files into transparent huge pages (kernels/hostmem.h),
 * for a model the CPU backend reads: at the same addresses where the
 * matrices already start on 64-byte boundaries, else (llama2.c's 28-byte
 * header) into a copy placed so that they do, with model_weights' pointers
 * moved to it. So call it before anything keeps a weight pointer
 * (transformer_new). Returns the bytes now in huge pages (0 when
 * BILD_HUGEPAGES=0 or the kernel's THP are off: then *why says why), or -1 if
 * a copy failed (the weights stay as mapped; *why says so). Idempotent. */
long model_hugepages(model_file_t *m, const char **why);
#define MODEL_HF_DEFAULT_CTX 4096

/* A model with config.json's shape (dir holds config.json; no weights are
 * read) whose matrices are dtype and whose weights the transformer fills with
 * random numbers from seed on its backend: --dummy-weights. */
model_file_t *hf_open_dummy(const char *dir, dtype_t dtype, uint64_t seed, char *err, size_t errlen);

/* Loader for llama2.c checkpoints (model/llama2c.c); model_open dispatches to it. */
model_file_t *llama2c_open(const char *path, char *err, size_t errlen);
/* Loader for Hugging Face directories (model/hf.c); model_open dispatches to
 * it when path is a directory. */
model_file_t *hf_open(const char *dir, char *err, size_t errlen);

#endif
