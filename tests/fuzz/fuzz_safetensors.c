/* fuzz_safetensors.c - libFuzzer target on the safetensors header parser
 * (model/safetensors.c, st_parse), which reads untrusted model files.
 *
 * Two ways in, chosen by the first byte, so the fuzzer need not guess an
 * 8-byte length that matches the input to reach the JSON checks:
 *   '{'  : the input is the JSON header; the target builds the file as
 *          u64 length + header + a data section of DATA bytes;
 *   else : the input is the whole file, length prefix included.
 * The parser must never crash, leak or read out of bounds (ASan, UBSan), and
 * what it accepts must keep its promises, else the target traps: every
 * tensor lies inside the data section, its byte length is n_elem times the
 * element size, n_elem is the product of the shape, no two non-empty
 * tensors overlap, and no name appears twice.
 *
 * Build and run: `make fuzz`, then
 *     build/fuzz/fuzz_safetensors -runs=1000000 tests/fuzz/safetensors_seeds
 * tests/test_fuzz_safetensors.sh runs a short fixed number of executions.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

#define CHECK(c)                                                                 \
    do {                                                                         \
        if (!(c)) __builtin_trap();                                              \
    } while (0)

#define DATA 4096

static void check_file(const unsigned char *buf, size_t size) {
    st_file_t f;
    char err[512];
    if (st_parse(buf, size, &f, err, sizeof err) != 0) {
        CHECK(err[0] && f.n == 0 && f.t == NULL);
        return;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    const unsigned char *data = buf + 8 + hlen, *end = buf + size;
    for (int i = 0; i < f.n; i++) {
        const st_tensor_t *t = &f.t[i];
        int64_t n = 1;
        for (int k = 0; k < t->ndim; k++) n *= t->shape[k];
        CHECK(n == t->n_elem && t->elem_size > 0);
        CHECK(t->nbytes == (size_t)t->n_elem * (size_t)t->elem_size);
        CHECK(t->data >= data && t->data <= end && t->nbytes <= (size_t)(end - t->data));
        CHECK(st_find(&f, t->name) == t); /* unique names: the first match is this one */
        for (int j = 0; j < i; j++) {
            const st_tensor_t *u = &f.t[j];
            if (t->nbytes && u->nbytes) CHECK(t->data + t->nbytes <= u->data || u->data + u->nbytes <= t->data);
        }
    }
    st_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    if (n && d[0] == '{') {
        unsigned char *buf = calloc(8 + n + DATA, 1);
        if (!buf) return 0;
        for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
        memcpy(buf + 8, d, n);
        check_file(buf, 8 + n + DATA);
        free(buf);
    } else {
        /* a private copy, so a read past the input is caught exactly */
        unsigned char *buf = malloc(n ? n : 1);
        if (!buf) return 0;
        memcpy(buf, d, n);
        check_file(buf, n);
        free(buf);
    }
    return 0;
}
