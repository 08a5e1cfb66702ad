/* model.h - what the engine knows about a model: its configuration and a
 * host view of its weights, independent of the file format they came from.
 *
 * model_open() recognises the format (a llama2.c checkpoint for now; a
 * Hugging Face directory later) and maps the weights read-only; the
 * transformer then wraps them for its backend.
 */
#ifndef BILD_MODEL_H
#define BILD_MODEL_H

#include <stddef.h>

#include "kernels/ops.h"

typedef struct {
    int dim;          /* residual stream width */
    int hidden_dim;   /* SwiGLU inner width */
    int n_layers;
    int n_heads;      /* query heads */
    int n_kv_heads;   /* key/value heads (grouped-query attention when < n_heads) */
    int head_dim;
    int vocab_size;
    int seq_len;      /* context length the model was trained for */
    int shared_classifier; /* 1: the output head is the token embedding */
    float norm_eps;
    float rope_theta;
    rope_style_t rope_style;
    int bos_id, eos_id;
} model_config_t;

/* Host pointers into the mapped file; per-layer arrays hold n_layers entries.
 * Shapes: tok_emb (vocab, dim); rms_att, rms_ffn (dim); wq (n_heads*head_dim, dim);
 * wk, wv (n_kv_heads*head_dim, dim); wo (dim, n_heads*head_dim);
 * w1, w3 (hidden_dim, dim); w2 (dim, hidden_dim); rms_final (dim);
 * wcls (vocab, dim), equal to tok_emb when shared. */
typedef struct {
    dtype_t dtype;
    const void *tok_emb, *rms_final, *wcls;
    const void **rms_att, **wq, **wk, **wv, **wo, **rms_ffn, **w1, **w2, **w3;
} model_weights_t;

typedef struct model_file model_file_t;

/* Opens a model file. Returns NULL on failure with a one-line message that
 * names the path and says what is wrong in err. Caller owns the result; the
 * weights stay mapped until model_close. */
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

/* Loader for llama2.c checkpoints (model/llama2c.c); model_open dispatches to it. */
model_file_t *llama2c_open(const char *path, char *err, size_t errlen);

#endif
