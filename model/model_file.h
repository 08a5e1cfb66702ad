/* model_file.h - the model_file_t object the loaders (llama2c.c, hf.c) fill
 * and model_file.c closes. Private to model/: other modules see only
 * model.h.
 */
#ifndef BILD_MODEL_FILE_H
#define BILD_MODEL_FILE_H

#include "model/model.h"

struct model_file {
    char *path;
    model_config_t cfg;
    model_weights_t w;
    const void **layer_ptrs; /* backing store of the per-layer arrays in w */
    /* mapped files: llama2.c one checkpoint, Hugging Face one per shard */
    int n_maps;
    void **maps;
    size_t *map_sizes;
    int huge_done;   /* model_hugepages ran: huge_bytes is its result */
    long huge_bytes;
    /* buffers the loader allocated (widened or realigned weights) */
    int n_owned, cap_owned;
    void **owned;
};

#endif
