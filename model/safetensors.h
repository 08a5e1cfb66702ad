/* safetensors.h - a checked parser of the safetensors format.
 *
 * Layout: u64 little-endian N, then N bytes of JSON header, then the data
 * section. The header maps tensor names to {"dtype", "shape",
 * "data_offsets": [begin, end]} (offsets relative to the data section) and
 * may hold a "__metadata__" object, which is skipped.
 *
 * Every field is checked against the buffer before anything points into it:
 * the header length against the file size, each dtype and shape, each
 * tensor's byte length against its shape, offsets inside the data section,
 * no two tensors overlapping, no name twice. The input is untrusted (it is
 * also the fuzz target tests/fuzz/fuzz_safetensors.c).
 */
#ifndef BILD_SAFETENSORS_H
#define BILD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20) /* the format's own limit on the header */

typedef struct {
    char *name;              /* owned */
    char dtype[16];          /* as in the header: "F32", "BF16", "F16", "I64", ... */
    int elem_size;           /* bytes per element */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t n_elem;
    const unsigned char *data; /* into the caller's buffer */
    size_t nbytes;
} st_tensor_t;

typedef struct {
    st_tensor_t *t; /* n tensors, in header order */
    int n;
} st_file_t;

/* Parses the safetensors file held in buf (size bytes). Returns 0 and fills
 * *out (caller frees with st_free; tensors point into buf), or -1 with a
 * one-line message in err saying which field is wrong ("header length ...",
 * "tensor 'x': data_offsets ..."); *out is then empty. */
int st_parse(const void *buf, size_t size, st_file_t *out, char *err, size_t errlen);
void st_free(st_file_t *f);
/* The tensor called name, or NULL. */
const st_tensor_t *st_find(const st_file_t *f, const char *name);

#endif
