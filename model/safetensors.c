/* safetensors.c - the checked safetensors parser (see safetensors.h). Follows
 * the format description of huggingface/safetensors (README "Format").
 * Holes between tensors in the data section are tolerated (the format asks
 * writers not to leave any, but nothing is read from them). */
#include "model/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int elem_size(const char *dt) {
    static const struct { const char *name; int size; } tab[] = {
        {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I64", 8}, {"U64", 8}, {"I32", 4}, {"U32", 4},
        {"I16", 2}, {"U16", 2}, {"I8", 1}, {"U8", 1}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(dt, tab[i].name)) return tab[i].size;
    return 0;
}

/* A non-negative integer JSON number no larger than max (exactly representable). */
static int get_u64(const cJSON *j, uint64_t max, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d) || (uint64_t)d > max) return 0;
    *v = (uint64_t)d;
    return 1;
}

static int by_offset(const void *a, const void *b) {
    const st_tensor_t *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data ? 1 : 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const st_tensor_t *)a)->name, ((const st_tensor_t *)b)->name);
}

void st_free(st_file_t *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    f->t = NULL, f->n = 0;
}

const st_tensor_t *st_find(const st_file_t *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); goto fail; } while (0)

int st_parse(const void *buf, size_t size, st_file_t *out, char *err, size_t errlen) {
    const unsigned char *b = buf;
    cJSON *root = NULL;
    st_tensor_t *sorted = NULL;
    out->t = NULL, out->n = 0;
    if (size < 8) FAIL("only %zu bytes: too short for safetensors (8-byte header length)", size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
    if (hlen > size - 8)
        FAIL("header length %llu is longer than the file (%zu bytes after the length)", (unsigned long long)hlen,
             size - 8);
    if (hlen < 2 || hlen > ST_MAX_HEADER) FAIL("header length %llu is out of range (2..%u)",
                                               (unsigned long long)hlen, ST_MAX_HEADER);
    const unsigned char *data = b + 8 + hlen;
    size_t data_size = size - 8 - hlen;
    root = cJSON_ParseWithLength((const char *)b + 8, (size_t)hlen);
    if (!root) FAIL("header is not valid JSON");
    if (!cJSON_IsObject(root)) FAIL("header is not a JSON object");
    int n = cJSON_GetArraySize(root);
    out->t = calloc(n > 0 ? (size_t)n : 1, sizeof(st_tensor_t));
    if (!out->t) FAIL("out of memory");
    for (const cJSON *e = root->child; e; e = e->next) {
        const char *name = e->string ? e->string : "";
        if (!strcmp(name, "__metadata__")) {
            if (!cJSON_IsObject(e)) FAIL("__metadata__ is not an object");
            continue;
        }
        if (!cJSON_IsObject(e)) FAIL("tensor '%.200s' is not an object", name);
        st_tensor_t *t = &out->t[out->n];
        if (!(t->name = strdup(name))) FAIL("out of memory");
        out->n++;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsString(dt) || strlen(dt->valuestring) >= sizeof t->dtype)
            FAIL("tensor '%.200s': dtype missing or not a dtype name", name);
        if (!(t->elem_size = elem_size(dt->valuestring)))
            FAIL("tensor '%.200s': dtype '%s' is unknown", name, dt->valuestring);
        strcpy(t->dtype, dt->valuestring);
        if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > ST_MAX_DIMS)
            FAIL("tensor '%.200s': shape missing or more than %d dimensions", name, ST_MAX_DIMS);
        t->n_elem = 1;
        for (const cJSON *d = sh->child; d; d = d->next) {
            uint64_t v;
            /* bounding every dimension and the product by 2^40 keeps n_elem *
             * elem_size far from overflow */
            if (!get_u64(d, (uint64_t)1 << 40, &v)) FAIL("tensor '%.200s': shape has a bad dimension", name);
            t->shape[t->ndim++] = (int64_t)v;
            if (v && (uint64_t)t->n_elem > ((uint64_t)1 << 40) / v)
                FAIL("tensor '%.200s': shape has too many elements", name);
            t->n_elem *= (int64_t)v;
        }
        uint64_t lo, hi;
        if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || !get_u64(of->child, UINT64_MAX, &lo) ||
            !get_u64(of->child->next, UINT64_MAX, &hi))
            FAIL("tensor '%.200s': data_offsets missing or not two non-negative integers", name);
        if (lo > hi || hi > data_size)
            FAIL("tensor '%.200s': data_offsets [%llu, %llu] out of range (data section of %zu bytes)", name,
                 (unsigned long long)lo, (unsigned long long)hi, data_size);
        if (hi - lo != (uint64_t)t->n_elem * (uint64_t)t->elem_size)
            FAIL("tensor '%.200s': data_offsets span %llu bytes but shape and dtype %s need %llu", name,
                 (unsigned long long)(hi - lo), t->dtype, (unsigned long long)t->n_elem * t->elem_size);
        t->data = data + lo, t->nbytes = (size_t)(hi - lo);
    }
    if (out->n > 1) {
        if (!(sorted = malloc(sizeof(st_tensor_t) * (size_t)out->n))) FAIL("out of memory");
        memcpy(sorted, out->t, sizeof(st_tensor_t) * (size_t)out->n);
        qsort(sorted, (size_t)out->n, sizeof *sorted, by_name);
        for (int i = 1; i < out->n; i++)
            if (!strcmp(sorted[i].name, sorted[i - 1].name))
                FAIL("tensor '%.200s' appears twice in the header", sorted[i].name);
        qsort(sorted, (size_t)out->n, sizeof *sorted, by_offset);
        /* empty tensors take no bytes and overlap nothing */
        const st_tensor_t *prev = NULL;
        for (int i = 0; i < out->n; i++) {
            if (!sorted[i].nbytes) continue;
            if (prev && sorted[i].data < prev->data + prev->nbytes)
                FAIL("tensors '%.120s' and '%.120s' overlap (data_offsets)", prev->name, sorted[i].name);
            prev = &sorted[i];
        }
    }
    free(sorted);
    cJSON_Delete(root);
    return 0;
fail:
    free(sorted);
    cJSON_Delete(root);
    st_free(out);
    return -1;
}
