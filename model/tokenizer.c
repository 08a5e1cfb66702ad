/* tokenizer.c - loads llama2.c's tokenizer.bin, encodes text with
 * SentencePiece-style BPE (byte fallback), decodes ids, and sanitizes the
 * decoded byte stream into valid UTF-8.
 *
 * Mirrors SentencePiece's BPE encoder (bpe_model.cc) as the Llama-2
 * tokenizer uses it: dummy-prefix space, one symbol per UTF-8 code point,
 * greedy merging of the adjacent pair whose merged text is the
 * highest-scoring piece (leftmost on ties), then byte fallback for symbols
 * that are not pieces. Merges are looked up by the TEXT the two symbols
 * cover, as SentencePiece does, so "<0xXX>", <unk>, BOS and EOS never take
 * part in merges (they are not in the lookup table).
 *
 * Left out on purpose: SentencePiece normalization (NFKC, whitespace
 * collapsing) and the unigram model; the llama2.c vocabularies use neither.
 */
#include "model/tokenizer_impl.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TOK_UNK = 0, TOK_BOS = 1, TOK_EOS = 2, TOK_BYTE0 = 3 };

/* Largest max_token_length we accept: real vocabularies stay under a few
 * hundred bytes; anything bigger is a corrupt or foreign file. */
#define TOK_MAX_PIECE_LEN 65536

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint32_t rd_u32le(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int32_t rd_i32le(const unsigned char *p) {
    uint32_t u = rd_u32le(p);
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static float rd_f32le(const unsigned char *p) {
    uint32_t u = rd_u32le(p);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* b if the piece is "<0xXX>", else -1. */
static int parse_byte_piece(const char *p, int len) {
    if (len != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
    int hi = hex_digit(p[3]), lo = hex_digit(p[4]);
    if (hi < 0 || lo < 0) return -1;
    return hi * 16 + lo;
}

/* Id of the mergeable piece whose text is s[0..n), or -1. */
static int lookup(const tokenizer_t *t, const char *s, int n) {
    uint32_t i = hash_bytes(s, (size_t)n) & t->table_mask;
    for (;;) {
        int id = t->table[i];
        if (id < 0) return -1;
        if (t->lens[id] == n && memcmp(t->text + t->offsets[id], s, (size_t)n) == 0) return id;
        i = (i + 1) & t->table_mask;
    }
}

/* Reads the whole stream. Returns a malloc'ed buffer (caller frees) or NULL
 * with errno set. */
static unsigned char *read_all(FILE *f, size_t *size) {
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (n == cap) {
            unsigned char *nb = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                errno = ENOMEM;
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                int e = errno ? errno : EIO;
                free(buf);
                errno = e;
                return NULL;
            }
            break;
        }
    }
    *size = n;
    return buf;
}

/* Checks the layout of the file against vocab_size without allocating.
 * Returns 0 and the total piece bytes in *text_bytes, or -1 with err set. */
static int validate(const char *path, const unsigned char *buf, size_t size, int vocab_size,
                    int *max_len, size_t *text_bytes, char *err, size_t errlen) {
    if (size < 4) {
        set_err(err, errlen, "tokenizer %s is too short (%zu bytes) to hold its header", path, size);
        return -1;
    }
    int mtl = rd_i32le(buf);
    if (mtl <= 0 || mtl > TOK_MAX_PIECE_LEN) {
        set_err(err, errlen,
                "tokenizer %s: max_token_length %d is not in [1, %d] (not a llama2.c tokenizer.bin?)",
                path, mtl, TOK_MAX_PIECE_LEN);
        return -1;
    }
    size_t pos = 4, total = 0;
    for (int i = 0; i < vocab_size; i++) {
        if (pos == size) {
            set_err(err, errlen,
                    "tokenizer %s has only %d pieces: it does not match the model's vocabulary of %d",
                    path, i, vocab_size);
            return -1;
        }
        if (size - pos < 8) {
            set_err(err, errlen, "tokenizer %s is truncated in the header of piece %d (of %d)", path,
                    i, vocab_size);
            return -1;
        }
        float score = rd_f32le(buf + pos);
        int len = rd_i32le(buf + pos + 4);
        pos += 8;
        if (!isfinite(score)) {
            set_err(err, errlen, "tokenizer %s: piece %d has a non-finite score", path, i);
            return -1;
        }
        if (len < 0 || len > mtl) {
            set_err(err, errlen,
                    "tokenizer %s: piece %d has length %d, outside [0, max_token_length %d]", path,
                    i, len, mtl);
            return -1;
        }
        if (size - pos < (size_t)len) {
            set_err(err, errlen,
                    "tokenizer %s is truncated in piece %d (of %d): %d bytes announced, %zu left",
                    path, i, vocab_size, len, size - pos);
            return -1;
        }
        pos += (size_t)len;
        total += (size_t)len;
    }
    if (pos != size) {
        set_err(err, errlen,
                "tokenizer %s has more than %d pieces: it does not match the model's vocabulary of %d",
                path, vocab_size, vocab_size);
        return -1;
    }
    *max_len = mtl;
    *text_bytes = total;
    return 0;
}

tokenizer_t *tokenizer_load_llama2c(const char *path, int vocab_size, char *err, size_t errlen) {
    if (!path) {
        set_err(err, errlen, "tokenizer path is NULL");
        return NULL;
    }
    if (vocab_size <= TOK_EOS || vocab_size > INT_MAX / 4) {
        set_err(err, errlen,
                "tokenizer %s: a vocabulary of %d pieces is impossible (needs <unk>, BOS and EOS)",
                path, vocab_size);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, "cannot open tokenizer %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t size = 0;
    errno = 0;
    unsigned char *buf = read_all(f, &size);
    int read_errno = errno;
    fclose(f);
    if (!buf) {
        set_err(err, errlen, "cannot read tokenizer %s: %s", path, strerror(read_errno));
        return NULL;
    }
    int mtl = 0;
    size_t text_bytes = 0;
    if (validate(path, buf, size, vocab_size, &mtl, &text_bytes, err, errlen) != 0) {
        free(buf);
        return NULL;
    }
    /* text_bytes < file size and every offset fits an int (checked below). */
    if (text_bytes + (size_t)vocab_size > INT_MAX) {
        set_err(err, errlen, "tokenizer %s: pieces total %zu bytes, too many", path, text_bytes);
        free(buf);
        return NULL;
    }

    uint32_t cap = 1;
    while (cap < 2u * (uint32_t)vocab_size) cap <<= 1;
    tokenizer_t *t = calloc(1, sizeof *t);
    if (t) {
        t->scores = malloc(sizeof(float) * (size_t)vocab_size);
        t->offsets = malloc(sizeof(int) * (size_t)vocab_size);
        t->lens = malloc(sizeof(int) * (size_t)vocab_size);
        t->byte_of = malloc(sizeof(short) * (size_t)vocab_size);
        t->text = malloc(text_bytes + (size_t)vocab_size);
        t->table = malloc(sizeof(int) * (size_t)cap);
    }
    if (!t || !t->scores || !t->offsets || !t->lens || !t->byte_of || !t->text || !t->table) {
        set_err(err, errlen, "out of memory loading tokenizer %s", path);
        tokenizer_destroy(&t);
        free(buf);
        return NULL;
    }
    t->vocab_size = vocab_size;
    t->max_token_length = mtl;
    t->bos = TOK_BOS;
    t->eos = TOK_EOS;
    t->table_mask = cap - 1;
    for (int b = 0; b < 256; b++) t->bytes[b] = (unsigned char)b;
    for (uint32_t i = 0; i < cap; i++) t->table[i] = -1;

    size_t pos = 4, off = 0;
    for (int i = 0; i < vocab_size; i++) {
        t->scores[i] = rd_f32le(buf + pos);
        int len = rd_i32le(buf + pos + 4);
        pos += 8;
        memcpy(t->text + off, buf + pos, (size_t)len);
        t->text[off + (size_t)len] = '\0';
        t->offsets[i] = (int)off;
        t->lens[i] = len;
        t->byte_of[i] = (short)parse_byte_piece(t->text + off, len);
        pos += (size_t)len;
        off += (size_t)len + 1;
    }
    free(buf);

    t->byte_fallback = vocab_size >= TOK_BYTE0 + 256;
    for (int b = 0; b < 256 && t->byte_fallback; b++)
        if (t->byte_of[TOK_BYTE0 + b] != b) t->byte_fallback = 0;

    /* Only ordinary pieces can be produced by merging text: not <unk>, BOS,
     * EOS, "<0xXX>", or the empty piece. On duplicates the lowest id wins. */
    for (int id = 0; id < vocab_size; id++) {
        if (id <= TOK_EOS || t->byte_of[id] >= 0 || t->lens[id] == 0) continue;
        const char *s = t->text + t->offsets[id];
        if (lookup(t, s, t->lens[id]) >= 0) continue;
        uint32_t h = hash_bytes(s, (size_t)t->lens[id]) & t->table_mask;
        while (t->table[h] >= 0) h = (h + 1) & t->table_mask;
        t->table[h] = id;
    }
    return t;
}

void tokenizer_destroy(tokenizer_t **pt) {
    if (!pt || !*pt) return;
    tokenizer_t *t = *pt;
    if (t->fmt) t->fmt->free(t->hf);
    free(t->scores);
    free(t->offsets);
    free(t->lens);
    free(t->byte_of);
    free(t->text);
    free(t->table);
    free(t);
    *pt = NULL;
}

void tokenizer_set_bos_eos(tokenizer_t *t, int bos, int eos) {
    t->bos = bos >= 0 && bos < t->vocab_size ? bos : -1;
    t->eos = eos >= 0 && eos < t->vocab_size ? eos : -1;
}

int tokenizer_is_special(const tokenizer_t *t, int id) {
    if (id < 0 || id >= t->vocab_size) return 0;
    if (!t->fmt) return id == t->bos || id == t->eos;
    return t->fmt->is_special(t, id);
}

int tokenizer_vocab_size(const tokenizer_t *t) { return t->vocab_size; }
int tokenizer_bos(const tokenizer_t *t) { return t->bos; }
int tokenizer_eos(const tokenizer_t *t) { return t->eos; }

const char *tokenizer_piece(const tokenizer_t *t, int id) {
    if (id < 0 || id >= t->vocab_size) return "";
    return t->text + t->offsets[id];
}

const char *tokenizer_decode(const tokenizer_t *t, int prev, int id, size_t *len) {
    if (t->fmt) return t->fmt->decode(t, prev, id, len);
    if (id < 0 || id >= t->vocab_size || id == TOK_BOS || id == TOK_EOS) {
        *len = 0;
        return "";
    }
    if (t->byte_of[id] >= 0) {
        *len = 1;
        return (const char *)&t->bytes[t->byte_of[id]];
    }
    const char *p = t->text + t->offsets[id];
    size_t n = (size_t)t->lens[id];
    if (prev == TOK_BOS && n > 0 && p[0] == ' ') {
        p++;
        n--;
    }
    *len = n;
    return p;
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Length of the sequence a lead byte starts (2..4), 1 for ASCII, 0 for a byte
 * that cannot start a character (continuation, C0/C1 overlong leads, F5..FF). */
static int utf8_lead_len(unsigned char b) {
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

/* Whether c may follow lead at position 1 of a sequence. The narrowed
 * ranges reject overlongs (E0, F0), surrogates (ED) and > U+10FFFF (F4). */
static int utf8_second_ok(unsigned char lead, unsigned char c) {
    switch (lead) {
    case 0xE0: return c >= 0xA0 && c <= 0xBF;
    case 0xED: return c >= 0x80 && c <= 0x9F;
    case 0xF0: return c >= 0x90 && c <= 0xBF;
    case 0xF4: return c >= 0x80 && c <= 0x8F;
    default: return c >= 0x80 && c <= 0xBF;
    }
}

/* Length of the valid UTF-8 character at s[0..n), or 0 if invalid there. */
static int utf8_char_len(const unsigned char *s, size_t n) {
    int len = utf8_lead_len(s[0]);
    if (len == 0 || (size_t)len > n) return 0;
    if (len >= 2 && !utf8_second_ok(s[0], s[1])) return 0;
    for (int k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xBF) return 0;
    return len;
}

static size_t put_replacement(char *out) {
    out[0] = (char)0xEF;
    out[1] = (char)0xBF;
    out[2] = (char)0xBD;
    return 3;
}

size_t utf8_stream_feed(utf8_stream_t *s, const char *in, size_t n, char *out) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (s->n > 0) {
            int ok = s->n == 1 ? utf8_second_ok(s->pend[0], c) : (c >= 0x80 && c <= 0xBF);
            if (ok) {
                s->pend[s->n++] = c;
                if (s->n == s->need) {
                    memcpy(out + w, s->pend, (size_t)s->n);
                    w += (size_t)s->n;
                    s->n = s->need = 0;
                }
                continue;
            }
            /* The pending prefix is a maximal invalid subpart: one U+FFFD for
             * it, then c is looked at afresh as a possible lead byte. */
            w += put_replacement(out + w);
            s->n = s->need = 0;
        }
        int len = utf8_lead_len(c);
        if (len == 1) {
            out[w++] = (char)c;
        } else if (len == 0) {
            w += put_replacement(out + w);
        } else {
            s->pend[0] = c;
            s->n = 1;
            s->need = len;
        }
    }
    return w;
}

size_t utf8_stream_flush(utf8_stream_t *s, char *out) {
    size_t w = 0;
    if (s->n > 0) w = put_replacement(out);
    s->n = s->need = 0;
    return w;
}

/* ---- encoding ------------------------------------------------------------- */

/* A candidate merge of symbol left with its right neighbour. It is stale once
 * either symbol changed: then left's next is no longer right, or the two no
 * longer cover len bytes together. */
typedef struct {
    float score;
    int pos;   /* byte offset of left: ties go to the leftmost pair */
    int left, right, len, id;
} merge_t;

/* Max-heap order: higher score first, then lower position. */
static int merge_before(const merge_t *a, const merge_t *b) {
    if (a->score != b->score) return a->score > b->score;
    return a->pos < b->pos;
}

static void heap_push(merge_t *h, int *n, merge_t m) {
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!merge_before(&m, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
}

static merge_t heap_pop(merge_t *h, int *n) {
    merge_t top = h[0], last = h[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && merge_before(&h[c + 1], &h[c])) c++;
        if (!merge_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

typedef struct {
    const tokenizer_t *t;
    const char *buf;       /* dummy space + text */
    int *start, *len, *id; /* (nsym) */
    int *prev, *next;      /* (nsym) live list; next == -2 marks a dead symbol */
    merge_t *heap;         /* (3 * nsym) */
    int nheap;
} encoder_t;

static void try_pair(encoder_t *e, int a, int b) {
    if (a < 0 || b < 0) return;
    int n = e->len[a] + e->len[b];
    if (n > e->t->max_token_length) return;
    int id = lookup(e->t, e->buf + e->start[a], n);
    if (id < 0) return;
    merge_t m = {e->t->scores[id], e->start[a], a, b, n, id};
    heap_push(e->heap, &e->nheap, m);
}

static void emit(int *out, int cap, int *count, int id) {
    if (*count < cap && out) out[*count] = id;
    (*count)++;
}

int tokenizer_encode(const tokenizer_t *t, const char *text, int add_bos, int *out, int cap) {
    if (t->fmt) return t->fmt->encode(t, text, add_bos, out, cap);
    int count = 0;
    if (add_bos) emit(out, cap, &count, TOK_BOS);
    if (!text || text[0] == '\0') return count;

    size_t tl = strlen(text);
    if (tl > INT_MAX / 8) return -1;
    int nbuf = (int)tl + 1;
    char *buf = malloc((size_t)nbuf);
    encoder_t e = {.t = t, .buf = buf};
    e.start = malloc(sizeof(int) * 5 * (size_t)nbuf);
    e.heap = malloc(sizeof(merge_t) * 3 * (size_t)nbuf);
    if (!buf || !e.start || !e.heap) {
        free(buf);
        free(e.start);
        free(e.heap);
        return -1;
    }
    e.len = e.start + nbuf;
    e.id = e.len + nbuf;
    e.prev = e.id + nbuf;
    e.next = e.prev + nbuf;
    buf[0] = ' ';
    memcpy(buf + 1, text, tl);

    /* One symbol per valid code point; an invalid byte is a symbol of its own. */
    int nsym = 0;
    for (int i = 0; i < nbuf;) {
        int l = utf8_char_len((const unsigned char *)buf + i, (size_t)(nbuf - i));
        if (l == 0) l = 1;
        e.start[nsym] = i;
        e.len[nsym] = l;
        e.id[nsym] = lookup(t, buf + i, l);
        e.prev[nsym] = nsym - 1;
        e.next[nsym] = nsym + 1;
        nsym++;
        i += l;
    }
    e.next[nsym - 1] = -1;
    for (int a = 0; a + 1 < nsym; a++) try_pair(&e, a, a + 1);

    while (e.nheap > 0) {
        merge_t m = heap_pop(e.heap, &e.nheap);
        int a = m.left, b = m.right;
        if (e.next[a] != b || e.len[a] + e.len[b] != m.len) continue; /* stale */
        e.len[a] = m.len;
        e.id[a] = m.id;
        e.next[a] = e.next[b];
        if (e.next[b] >= 0) e.prev[e.next[b]] = a;
        e.next[b] = -2;
        try_pair(&e, e.prev[a], a);
        try_pair(&e, a, e.next[a]);
    }

    for (int s = 0; s >= 0; s = e.next[s]) {
        if (e.id[s] >= 0) {
            emit(out, cap, &count, e.id[s]);
        } else if (t->byte_fallback) {
            for (int k = 0; k < e.len[s]; k++)
                emit(out, cap, &count, TOK_BYTE0 + (unsigned char)buf[e.start[s] + k]);
        } else {
            emit(out, cap, &count, TOK_UNK);
        }
    }
    free(buf);
    free(e.start);
    free(e.heap);
    return count;
}

int tokenizer_is_control(const tokenizer_t *t, int id) {
    return tokenizer_is_special(t, id) || !strcmp(tokenizer_piece(t, id), "<unk>");
}

int tokenizer_first_difference(const tokenizer_t *a, const tokenizer_t *b) {
    int n = a->vocab_size < b->vocab_size ? a->vocab_size : b->vocab_size;
    if (tokenizer_bos(a) != tokenizer_bos(b) || tokenizer_eos(a) != tokenizer_eos(b)) return 0;
    for (int id = 0; id < n; id++) {
        int ca = tokenizer_is_control(a, id), cb = tokenizer_is_control(b, id);
        if (ca != cb) return id;
        if (ca) continue;
        size_t la, lb;
        /* compare what the pieces decode to (prev 0: no BOS space rule), so
         * "<0x0A>" and a raw newline byte piece count as the same piece */
        const char *pa = tokenizer_decode(a, 0, id, &la), *pb = tokenizer_decode(b, 0, id, &lb);
        if (la != lb || memcmp(pa, pb, la) != 0) return id;
    }
    return a->vocab_size == b->vocab_size ? -1 : n;
}
