/* st_dir.h - a Hugging Face model folder's weights: model.safetensors, or
 * the shards a model.safetensors.index.json names, mapped and parsed
 * (model/safetensors.h), with the index's placement of each tensor checked.
 * What the loaders of decoder-only models (hf.c) and of T5 (t5.c) share.
 */
#ifndef BILD_ST_DIR_H
#define BILD_ST_DIR_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <string.h>

#include "kernels/ops.h"
#include "model/safetensors.h"

#define ST_DIR_MAX_FILES 1024

typedef struct {
    const char *dir;
    int n;                  /* files */
    char **name;            /* each file's name in dir */
    void **map;             /* its read-only mapping (hostmem_map_file; NULL when empty) */
    size_t *size;
    st_file_t *st;          /* its parsed header */
    unsigned char **used;   /* per tensor: st_dir_find returned it */
    const char *index_name; /* "model.safetensors.index.json" when sharded, else NULL */
    cJSON *index;
    char fail_file[256];    /* after a failure: the file it concerns */
    char why[600];          /* and what is wrong ("" when nothing is) */
} st_dir_t;

/* Opens dir/model.safetensors, else every shard that
 * dir/model.safetensors.index.json's weight_map names. 0, or -1 with
 * d->fail_file and d->why set. Call st_dir_close in both cases. */
int st_dir_open(st_dir_t *d, const char *dir);
/* The tensor called name (from the shard the weight_map puts it in, when
 * sharded), marked used; its file's index in *file. NULL when missing;
 * d->why is set if the index names a shard that lacks it. */
const st_tensor_t *st_dir_find(st_dir_t *d, const char *name, int *file);
/* Frees everything; the mappings too unless keep_maps (the caller took
 * d->map and d->size, and unmaps them with munmap). */
void st_dir_close(st_dir_t *d, int keep_maps);

/* The engine's dtype of a tensor the loaders accepted (F32, F16 or BF16). */
static inline dtype_t st_dir_dtype(const st_tensor_t *t) {
    return !strcmp(t->dtype, "F32") ? DTYPE_F32 : !strcmp(t->dtype, "F16") ? DTYPE_F16 : DTYPE_BF16;
}

#endif
