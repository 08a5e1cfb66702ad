/* tokenizer_impl.h - private to model/tokenizer.c and model/tokenizer_hf.c:
 * the tokenizer struct both loaders fill, and the Hugging Face entry points
 * that tokenizer.c dispatches to. Not for other modules: use tokenizer.h.
 */
#ifndef BILD_TOKENIZER_IMPL_H
#define BILD_TOKENIZER_IMPL_H

#include "model/tokenizer.h"

#include <stdint.h>

struct tok_hf; /* tokenizer_hf.c: the tokenizer.json pipeline */

struct tokenizer {
    int vocab_size;
    int max_token_length;
    int bos, eos;           /* -1 when the vocabulary has none */
    int byte_fallback;      /* llama2.c: pieces 3..258 are "<0x00>".."<0xFF>" */
    float *scores;          /* (vocab_size) merge priority, higher first; NULL for HF */
    int *offsets;           /* (vocab_size) start of piece i in text */
    int *lens;              /* (vocab_size) length of piece i in bytes */
    short *byte_of;         /* (vocab_size) b for a "<0xXX>" piece, else -1 */
    char *text;             /* every piece, each followed by a NUL */
    int *table;             /* (table_mask + 1) open addressing: id or -1 */
    uint32_t table_mask;
    unsigned char bytes[256]; /* bytes[b] == b; decode of "<0xXX>" points here */
    struct tok_hf *hf;      /* non-NULL: loaded from a tokenizer.json */
};

/* tokenizer_hf.c; tokenizer.c calls these when t->hf is set. */
void tok_hf_free(struct tok_hf *h);
int tok_hf_encode(const tokenizer_t *t, const char *text, int add_bos, int *out, int cap);
const char *tok_hf_decode(const tokenizer_t *t, int prev, int id, size_t *len);

/* FNV-1a over a piece's bytes (both loaders' piece lookup tables): pieces
 * are short, so a simple byte hash is plenty. */
static inline uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

#endif
