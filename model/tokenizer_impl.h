/* tokenizer_impl.h - private to model/tokenizer.c and model/tokenizer_hf.c:
 * the tokenizer struct both loaders fill, and the table through which a
 * format other than llama2.c's (tokenizer_hf.c) plugs its encoder and
 * decoder in, so that tokenizer.c never names that format's code. Not for
 * other modules: use tokenizer.h.
 */
#ifndef BILD_TOKENIZER_IMPL_H
#define BILD_TOKENIZER_IMPL_H

#include "model/tokenizer.h"

#include <stdint.h>

struct tok_hf; /* tokenizer_hf.c: the tokenizer.json pipeline (BPE and Unigram models) */

/* A tokenizer format's own code; tokenizer.c calls it when t->fmt is set. */
typedef struct {
    void (*free)(struct tok_hf *h);
    int (*encode)(const tokenizer_t *t, const char *text, int add_bos, int *out, int cap);
    const char *(*decode)(const tokenizer_t *t, int prev, int id, size_t *len);
    int (*is_special)(const tokenizer_t *t, int id); /* id in range */
} tok_format_t;

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
    const tok_format_t *fmt; /* with hf: its encoder and decoder; NULL: llama2.c's, in tokenizer.c */
};

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
