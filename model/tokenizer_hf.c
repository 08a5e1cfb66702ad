/* tokenizer_hf.c - loads a Hugging Face tokenizer.json (BPE and Unigram
 * models) into a tokenizer_t, and encodes/decodes with it.
 *
 * Mirrors the `tokenizers` library's pipeline for the two BPE families in
 * use by Llama-type models, and for SentencePiece Unigram models (T5, mT5):
 *   byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM): pre-tokenizer ByteLevel
 *     (optionally with the GPT-2 regex) and/or Split(Regex, Isolated) and
 *     Digits; every byte is mapped to GPT-2's printable byte alphabet before
 *     BPE, and mapped back when decoding;
 *   SentencePiece-style BPE (Llama-2, TinyLlama, Mistral): normalizer
 *     Prepend(U+2581) + Replace(' ', U+2581) or pre-tokenizer Metaspace,
 *     byte_fallback to "<0xXX>" pieces; decoding turns U+2581 back into a
 *     space, byte pieces into bytes, and drops the leading space after BOS;
 *   Unigram (T5 / mT5, as transformers converts their SentencePiece models):
 *     normalizer Precompiled (SentencePiece's precompiled_charsmap, a
 *     Darts-clone double-array trie applied per grapheme cluster the way
 *     `tokenizers` does, which is not quite SentencePiece's longest match;
 *     see precompiled_run), Replace(Regex " {2,}"), Strip, NFKC (ICU);
 *     pre-tokenizers WhitespaceSplit and Metaspace; the pieces are found by
 *     `tokenizers`' Viterbi search (unigram_piece: same tie-break, unknown
 *     characters scored min - 10 and fused, byte_fallback); ill-formed UTF-8
 *     becomes U+FFFD first; decoding as the SentencePiece BPE family, the
 *     leading space dropped at the start (prev < 0) too, T5 having no BOS.
 *     Checked against the `tokenizers` library (tests/test_tokenizer_unigram.c).
 * Steps of tokenizer_encode: (1) added tokens are split out of the raw text
 * (at each position the longest one that starts there; lstrip/rstrip absorb
 * the whitespace beside it); (2) each other segment is normalized (NFC by
 * ICU, Prepend, Replace, ...) and pre-tokenized; (3) each piece is one token if ignore_merges and it is in
 * the vocabulary, otherwise one symbol per character (unknown characters:
 * byte fallback, else unk) and then the adjacent pair with the lowest merge
 * rank is merged (leftmost on ties) until no pair is a merge (Unigram:
 * the Viterbi search instead); (4) the
 * TemplateProcessing post-processor's tokens around $A are added when
 * add_bos is set. Regexes run on PCRE2 (UTF + UCP, invalid UTF-8 allowed: it
 * is never matched and ends up in the gaps, which Isolated keeps).
 *
 * BOS is the first special token of the post-processor's "single" template
 * before $A (-1 if there is none: Qwen2); EOS is the first added special
 * token among </s>, <|end_of_text|>, <|endoftext|>, <|im_end|> (-1 if none).
 * Callers with a config.json should override both with tokenizer_set_bos_eos.
 *
 * Left out on purpose, refused at load with the file and field named: model
 * types other than BPE and Unigram (WordPiece, WordLevel), BPE dropout,
 * Unigram without unk_id (`tokenizers` then fails on unknown characters),
 * Unigram with ByteLevel, continuing_subword_prefix / end_of_word_suffix,
 * normalizers other than NFC (ICU; Qwen2) / Prepend / Replace(String or
 * Regex) / Sequence, and for Unigram also Precompiled / NFKC / Strip (NFD,
 * Lowercase, ...), pre-tokenizers other than ByteLevel / Split(Isolated) /
 * Metaspace / WhitespaceSplit / Digits / Sequence, post-processors other than TemplateProcessing / ByteLevel /
 * Sequence, added tokens with single_word. Added tokens marked normalized are
 * matched on the raw text like the others (the same thing for the files in
 * use, whose normalizers do not touch their contents); lstrip/rstrip absorb
 * ASCII whitespace only (`tokenizers` also takes Unicode spaces). The decoder field is
 * not interpreted: decoding follows the family (a "<0xXX>" piece decodes to
 * its raw byte; `tokenizers`' ByteFallback decoder makes U+FFFD of byte
 * pieces that are no whole character, as utf8_stream_feed does). Unicode
 * data comes from ICU (Debian's ICU 72, Unicode 15), `tokenizers` from its
 * own crates: characters added in later Unicode versions may differ.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/tokenizer_impl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifndef BILD_NO_ICU
#include <unicode/unorm2.h>
#endif
#include <unicode/ustring.h>

/* Ids above this are refused: real vocabularies stay under a million. */
#define HF_MAX_ID (1 << 24)

enum { FAM_SP = 0, FAM_BYTELEVEL = 1 };
enum { NORM_PREPEND, NORM_REPLACE, NORM_REPLACE_RE, NORM_NFC, NORM_NFKC, NORM_STRIP, NORM_PRECOMPILED };
enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE, PRE_WSSPLIT };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };

/* The GPT-2 pre-tokenizer regex (ByteLevel with use_regex). */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    int kind;
    char *a, *b;     /* PREPEND: a; REPLACE: a -> b; REPLACE_RE: re -> b; PRECOMPILED: a = the
                      * normalized strings (NUL-separated, alen bytes) */
    size_t alen, blen;
    pcre2_code *re;  /* REPLACE_RE */
    uint32_t *units; /* PRECOMPILED: (n_units) the double-array trie */
    size_t n_units;
    int left, right; /* STRIP: which ends */
} norm_op_t;

typedef struct {
    int kind;
    pcre2_code *re;       /* SPLIT; BYTELEVEL with use_regex */
    int add_prefix_space; /* BYTELEVEL */
    char repl[8];         /* METASPACE replacement character (UTF-8) */
    size_t repl_len;
    int prepend, split;   /* METASPACE */
} pre_op_t;

typedef struct {
    int id, len, special, lstrip, rstrip;
    char *s;
} added_t;

typedef struct {
    uint64_t key; /* (left id + 1) << 32 | (right id + 1); 0 = empty slot */
    int rank, id;
} merge_slot_t;

struct tok_hf {
    int family;
    int unigram;    /* model.type Unigram (else BPE) */
    double *score;  /* Unigram: (n_pieces) log-probability of model.vocab[id] */
    int n_pieces;   /* Unigram: model.vocab entries, ids 0 .. n_pieces-1 */
    double unk_score; /* Unigram: the lowest score - 10, the score of an unknown character */
    norm_op_t *norm;
    int n_norm;
    pre_op_t *pre;
    int n_pre;
    added_t *added; /* sorted by first byte */
    int n_added;
    int added_from[257]; /* added[added_from[c] .. added_from[c+1]) start with byte c */
    int *vocab_tab;      /* (vocab_mask + 1) model.vocab piece -> id, -1 empty */
    uint32_t vocab_mask;
    merge_slot_t *merges; /* (merge_mask + 1) */
    uint32_t merge_mask;
    int byte_fallback, ignore_merges, unk_id, fuse_unk;
    int byte_id[256];       /* SP: id of "<0xXX>", -1 if absent */
    char bl_char[256][2];   /* byte-level: UTF-8 of the alphabet character of byte b */
    unsigned char bl_len[256];
    int *prefix, n_prefix, *suffix, n_suffix; /* post-processor tokens around $A */
    char *dec_text;         /* decoded bytes of every id */
    int *dec_off, *dec_len; /* (vocab_size) */
    unsigned char *special; /* (vocab_size) 1 for special added tokens */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint32_t hash_u64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k;
}

/* Length of the valid UTF-8 character at s[0..n), or 0 if invalid there. */
static int utf8_len(const unsigned char *s, size_t n) {
    unsigned char b = s[0];
    int len = b < 0x80 ? 1 : (b >= 0xC2 && b <= 0xDF) ? 2 : (b >= 0xE0 && b <= 0xEF) ? 3
            : (b >= 0xF0 && b <= 0xF4) ? 4 : 0;
    if (len == 0 || (size_t)len > n) return 0;
    if (len >= 2) {
        unsigned char c = s[1];
        int ok = b == 0xE0 ? c >= 0xA0 && c <= 0xBF : b == 0xED ? c >= 0x80 && c <= 0x9F
               : b == 0xF0 ? c >= 0x90 && c <= 0xBF : b == 0xF4 ? c >= 0x80 && c <= 0x8F
               : c >= 0x80 && c <= 0xBF;
        if (!ok) return 0;
    }
    for (int k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xBF) return 0;
    return len;
}

/* Writes code point c as UTF-8; returns the length. */
static int utf8_put(unsigned c, char *o) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | c >> 6); o[1] = (char)(0x80 | (c & 63)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | c >> 12); o[1] = (char)(0x80 | (c >> 6 & 63)); o[2] = (char)(0x80 | (c & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | c >> 18); o[1] = (char)(0x80 | (c >> 12 & 63));
    o[2] = (char)(0x80 | (c >> 6 & 63)); o[3] = (char)(0x80 | (c & 63));
    return 4;
}

/* Code point of the valid UTF-8 character at s (length len). */
static unsigned utf8_cp(const unsigned char *s, int len) {
    if (len == 1) return s[0];
    unsigned c = s[0] & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (int k = 1; k < len; k++) c = c << 6 | (s[k] & 63);
    return c;
}

/* Rust's char::is_whitespace (Unicode White_Space), which `tokenizers`'
 * WhitespaceSplit and Strip use. */
static int uni_space(unsigned c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves,
 * the other 68 bytes, in order, for U+0100 upwards. Fills cp[256]. */
static void gpt2_byte_chars(unsigned cp[256]) {
    unsigned next = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp[b] = printable ? (unsigned)b : next++;
    }
}

/* ---- vocabulary and merges lookups ------------------------------------------ */

static int vocab_lookup(const tokenizer_t *t, const char *s, size_t n) {
    const struct tok_hf *h = t->hf;
    uint32_t i = hash_bytes(s, n) & h->vocab_mask;
    for (;;) {
        int id = h->vocab_tab[i];
        if (id < 0) return -1;
        if ((size_t)t->lens[id] == n && memcmp(t->text + t->offsets[id], s, n) == 0) return id;
        i = (i + 1) & h->vocab_mask;
    }
}

static const merge_slot_t *merge_lookup(const struct tok_hf *h, int a, int b) {
    uint64_t key = (uint64_t)(a + 1) << 32 | (uint64_t)(b + 1);
    uint32_t i = hash_u64(key) & h->merge_mask;
    for (;;) {
        const merge_slot_t *m = &h->merges[i];
        if (m->key == 0) return NULL;
        if (m->key == key) return m;
        i = (i + 1) & h->merge_mask;
    }
}

/* Inserts or overwrites (a later duplicate merge wins, as in `tokenizers`). */
static void merge_insert(struct tok_hf *h, int a, int b, int rank, int id) {
    uint64_t key = (uint64_t)(a + 1) << 32 | (uint64_t)(b + 1);
    uint32_t i = hash_u64(key) & h->merge_mask;
    while (h->merges[i].key != 0 && h->merges[i].key != key) i = (i + 1) & h->merge_mask;
    h->merges[i] = (merge_slot_t){key, rank, id};
}

/* What tokenizer.c calls for a tokenizer loaded here (tokenizer_impl.h). */
static void tok_hf_free(struct tok_hf *h);
static int tok_hf_encode(const tokenizer_t *t, const char *text, int add_bos, int *out, int cap);
static const char *tok_hf_decode(const tokenizer_t *t, int prev, int id, size_t *len);
static int tok_hf_is_special(const tokenizer_t *t, int id);
static const tok_format_t HF_FORMAT = {.free = tok_hf_free, .encode = tok_hf_encode, .decode = tok_hf_decode,
                                       .is_special = tok_hf_is_special};

/* ---- loading ------------------------------------------------------------------ */

static void tok_hf_free(struct tok_hf *h) {
    if (!h) return;
    for (int i = 0; i < h->n_norm; i++) {
        free(h->norm[i].a);
        free(h->norm[i].b);
        pcre2_code_free(h->norm[i].re);
        free(h->norm[i].units);
    }
    free(h->score);
    free(h->norm);
    for (int i = 0; i < h->n_pre; i++) pcre2_code_free(h->pre[i].re);
    free(h->pre);
    for (int i = 0; i < h->n_added; i++) free(h->added[i].s);
    free(h->added);
    free(h->vocab_tab);
    free(h->merges);
    free(h->prefix);
    free(h->suffix);
    free(h->dec_text);
    free(h->dec_off);
    free(h->dec_len);
    free(h->special);
    free(h);
}

typedef struct {
    const char *path;
    char *err;
    size_t errlen;
} ctx_t;

#define FAIL(...)                                  \
    do {                                           \
        set_err(c->err, c->errlen, __VA_ARGS__);   \
        return -1;                                 \
    } while (0)

static const char *type_of(const cJSON *o) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

static int get_bool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

/* An integer in [0, HF_MAX_ID), or -1. */
static int get_id(const cJSON *v) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d < HF_MAX_ID) || d != floor(d)) return -1;
    return (int)d;
}

static pcre2_code *compile_re(const ctx_t *c, const char *field, const char *pat, size_t n, uint32_t extra) {
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, n,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | extra, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        set_err(c->err, c->errlen, "tokenizer %s: %s: the regex does not compile at offset %zu: %s",
                c->path, field, (size_t)eo, (const char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
    return re;
}

/* ---- SentencePiece's precompiled charsmap ------------------------------------- */

/* The blob (base64 in the Precompiled normalizer) is SentencePiece's
 * normalization rules compiled: uint32 (little-endian) trie_size, then
 * trie_size / 4 uint32 units of a Darts-clone double-array trie over the
 * bytes of the keys, then the normalized strings, each ended by a NUL; a
 * key's value is the offset of its string there. A unit packs: bit 8 "this
 * node has a value", bits 0-7 and 31 the label the parent reached it by (a
 * value unit has bit 31 set, so it never matches a byte), bits 10-31 the
 * offset to the node's children (shifted left 8 more when bit 9 is set),
 * bits 0-30 of a value unit the value. From node position p, byte c leads
 * to q = p ^ c when unit q has label c; the children of q start at
 * q ^ offset(unit q), and its value unit is that position itself. */
static uint32_t cm_label(uint32_t u) { return u & (0x80000000u | 0xFFu); }
static int cm_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static uint32_t cm_value(uint32_t u) { return u & 0x7FFFFFFFu; }
static size_t cm_offset(uint32_t u) { return (size_t)(u >> 10) << ((u & (1u << 9)) >> 6); }

/* The value of the first (shortest) key that is a prefix of k[0..len), or
 * -1: what `tokenizers`' Precompiled::transform takes (results[0] of the
 * common prefix search; SentencePiece itself takes the longest). Positions
 * are checked at load (cm_check); the bounds tests here only keep a blob
 * that slipped through from reading outside the array. */
static long cm_first(const norm_op_t *op, const unsigned char *k, size_t len) {
    const uint32_t *u = op->units;
    size_t m = op->n_units, pos = cm_offset(u[0]);
    for (size_t i = 0; i < len && k[i]; i++) {
        pos ^= k[i];
        if (pos >= m || cm_label(u[pos]) != k[i]) return -1;
        uint32_t unit = u[pos];
        pos ^= cm_offset(unit);
        if (cm_has_leaf(unit)) return pos < m ? (long)cm_value(u[pos]) : -1;
    }
    return -1;
}

/* The normalized string at value v: up to the next NUL (v <= op->alen, at a
 * character start: checked at load). Sets *n. */
static const char *cm_string(const norm_op_t *op, long v, size_t *n) {
    const char *p = op->a + v, *z = memchr(p, 0, op->alen - (size_t)v);
    *n = z ? (size_t)(z - p) : op->alen - (size_t)v;
    return p;
}

/* Walks every node reachable from the root (each position once) and checks
 * that the 256 positions its children can be at lie inside the array, and
 * that every value points into the normalized strings, at a character
 * start. Real blobs come in whole blocks of 256 units, so this holds for
 * them; `tokenizers` would panic on a blob where it does not. */
static int cm_check(const ctx_t *c, const char *field, const norm_op_t *op) {
    size_t m = op->n_units;
    unsigned char *seen = calloc(m, 1);
    size_t *stack = malloc(sizeof *stack * m);
    int ok = seen && stack;
    size_t top = 0, root = cm_offset(op->units[0]);
    if (ok && (root | 255) < m) {
        stack[top++] = root;
        seen[root] = 1;
    } else if (ok) {
        ok = -1;
    }
    while (ok == 1 && top > 0) {
        size_t p = stack[--top];
        for (unsigned ch = 1; ch < 256 && ok == 1; ch++) {
            size_t q = p ^ ch;
            uint32_t unit = op->units[q];
            if (cm_label(unit) != ch) continue;
            size_t child = q ^ cm_offset(unit);
            if ((child | 255) >= m) {
                ok = -1;
                break;
            }
            if (cm_has_leaf(unit)) {
                uint32_t v = cm_value(op->units[child]);
                if (v > op->alen || (v < op->alen && ((unsigned char)op->a[v] & 0xC0) == 0x80)) ok = -2;
            }
            if (ok == 1 && !seen[child]) {
                seen[child] = 1;
                stack[top++] = child;
            }
        }
    }
    free(seen);
    free(stack);
    if (ok == 0) FAIL("tokenizer %s: out of memory", c->path);
    if (ok == -1)
        FAIL("tokenizer %s: %s.precompiled_charsmap: a trie offset points outside the %zu units of the blob", c->path,
             field, m);
    if (ok == -2)
        FAIL("tokenizer %s: %s.precompiled_charsmap: a trie value is not the start of a normalized string "
             "(%zu bytes)", c->path, field, op->alen);
    return 0;
}

/* Standard base64 (with '=' padding, as `tokenizers` writes it) into a new
 * buffer; NULL on a bad character or length. */
static unsigned char *base64_decode(const char *s, size_t *out_len) {
    size_t n = strlen(s);
    if (n % 4) return NULL;
    unsigned char *o = malloc(n / 4 * 3 + 1);
    if (!o) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n; i += 4) {
        unsigned v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char ch = s[i + k];
            int d = ch >= 'A' && ch <= 'Z' ? ch - 'A' : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
                  : ch >= '0' && ch <= '9' ? ch - '0' + 52 : ch == '+' ? 62 : ch == '/' ? 63 : -1;
            if (ch == '=' && i + 4 == n && k >= 2 && (k == 3 || s[i + 3] == '=')) {
                pad++;
                d = 0;
            } else if (d < 0 || pad) {
                free(o);
                return NULL;
            }
            v = v << 6 | (unsigned)d;
        }
        o[w++] = (unsigned char)(v >> 16);
        if (pad < 2) o[w++] = (unsigned char)(v >> 8 & 255);
        if (pad < 1) o[w++] = (unsigned char)(v & 255);
    }
    *out_len = w;
    return o;
}

/* Fills op from a Precompiled normalizer's precompiled_charsmap. */
static int load_charsmap(const ctx_t *c, const char *field, const cJSON *n, norm_op_t *op) {
    const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(n, "precompiled_charsmap");
    if (!cJSON_IsString(b64)) FAIL("tokenizer %s: %s: Precompiled has no \"precompiled_charsmap\" string", c->path, field);
    size_t len = 0;
    unsigned char *blob = base64_decode(b64->valuestring, &len);
    if (!blob) FAIL("tokenizer %s: %s.precompiled_charsmap is not valid base64", c->path, field);
    uint32_t trie_size = len >= 4 ? (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 |
                                        (uint32_t)blob[3] << 24 : 0;
    size_t nu = trie_size / 4;
    if (len >= 4 && nu == 0) {
        free(blob);
        FAIL("tokenizer %s: %s.precompiled_charsmap has an empty trie", c->path, field);
    }
    if (len < 4 || nu > (len - 4) / 4) {
        free(blob);
        FAIL("tokenizer %s: %s.precompiled_charsmap is truncated: %zu bytes, the trie alone takes %lu after the "
             "4-byte size", c->path, field, len, (unsigned long)trie_size);
    }
    op->units = malloc(sizeof(uint32_t) * nu);
    op->alen = len - 4 - 4 * nu;
    op->a = malloc(op->alen + 1);
    if (!op->units || !op->a) {
        free(blob);
        FAIL("tokenizer %s: out of memory", c->path);
    }
    op->n_units = nu;
    for (size_t i = 0; i < nu; i++) {
        const unsigned char *p = blob + 4 + 4 * i;
        op->units[i] = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    }
    memcpy(op->a, blob + 4 + 4 * nu, op->alen);
    op->a[op->alen] = '\0';
    free(blob);
    for (size_t i = 0; i < op->alen;) { /* `tokenizers` refuses strings that are not UTF-8 */
        int l = op->a[i] ? utf8_len((const unsigned char *)op->a + i, op->alen - i) : 1;
        if (l == 0)
            FAIL("tokenizer %s: %s.precompiled_charsmap: the normalized strings are not valid UTF-8 (byte %zu)",
                 c->path, field, i);
        i += (size_t)l;
    }
    return cm_check(c, field, op);
}

/* ---- normalizers and pre-tokenizers ------------------------------------------- */

static int add_norm(const ctx_t *c, struct tok_hf *h, const cJSON *n, const char *field) {
    if (!n || cJSON_IsNull(n)) return 0;
    const char *ty = type_of(n);
    if (!ty) FAIL("tokenizer %s: %s has no \"type\"", c->path, field);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(arr)) FAIL("tokenizer %s: %s.normalizers is not an array", c->path, field);
        const cJSON *x;
        cJSON_ArrayForEach(x, arr) if (add_norm(c, h, x, field) != 0) return -1;
        return 0;
    }
    /* Precompiled, NFKC and Strip only come with SentencePiece Unigram
     * files, and were checked against `tokenizers` there only. */
    int sp_only = strcmp(ty, "Precompiled") == 0 || strcmp(ty, "NFKC") == 0 || strcmp(ty, "Strip") == 0;
    if (sp_only && !h->unigram)
        FAIL("tokenizer %s: %s: normalizer type \"%s\" is not supported with a BPE model (NFC, Prepend, Replace, "
             "Sequence)", c->path, field, ty);
    norm_op_t op = {0};
    if (strcmp(ty, "NFC") == 0 || strcmp(ty, "NFKC") == 0) {
        int k = ty[2] == 'K';
#ifdef BILD_NO_ICU
        FAIL("tokenizer %s: %s: %s normalization needs ICU, and this bild was built without it (make ICU=1)",
             c->path, field, ty);
#else
        UErrorCode st = U_ZERO_ERROR;
        if (k) unorm2_getNFKCInstance(&st);
        else unorm2_getNFCInstance(&st);
        if (U_FAILURE(st)) FAIL("tokenizer %s: %s: %s: ICU has no %s data (%s)", c->path, field, ty, ty, u_errorName(st));
#endif
        op.kind = k ? NORM_NFKC : NORM_NFC;
        op.a = strdup("");
    } else if (strcmp(ty, "Precompiled") == 0) {
#ifdef BILD_NO_ICU
        FAIL("tokenizer %s: %s: Precompiled normalization needs ICU (grapheme clusters), and this bild was built "
             "without it (make ICU=1)", c->path, field);
#endif
        op.kind = NORM_PRECOMPILED;
        if (load_charsmap(c, field, n, &op) != 0) {
            free(op.a);
            free(op.units);
            return -1;
        }
    } else if (strcmp(ty, "Strip") == 0) {
        op.kind = NORM_STRIP;
        op.left = get_bool(n, "strip_left", 1);
        op.right = get_bool(n, "strip_right", 1);
        op.a = strdup("");
    } else if (strcmp(ty, "Prepend") == 0) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(n, "prepend");
        if (!cJSON_IsString(p)) FAIL("tokenizer %s: %s: Prepend has no \"prepend\" string", c->path, field);
        op.kind = NORM_PREPEND;
        op.a = strdup(p->valuestring);
        op.alen = strlen(p->valuestring);
    } else if (strcmp(ty, "Replace") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const cJSON *s = pat ? cJSON_GetObjectItemCaseSensitive(pat, "String") : NULL;
        const cJSON *re = pat ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(n, "content");
        if (!cJSON_IsString(content) || !((cJSON_IsString(s) && s->valuestring[0]) || cJSON_IsString(re)))
            FAIL("tokenizer %s: %s: only Replace with a non-empty String or a Regex pattern and a content string "
                 "is supported", c->path, field);
        if (cJSON_IsString(s) && s->valuestring[0]) {
            op.kind = NORM_REPLACE;
            op.a = strdup(s->valuestring);
            op.alen = strlen(s->valuestring);
        } else {
            op.kind = NORM_REPLACE_RE;
            if (!(op.re = compile_re(c, field, re->valuestring, strlen(re->valuestring), 0))) return -1;
            op.a = strdup("");
        }
        op.b = strdup(content->valuestring);
        op.blen = strlen(content->valuestring);
    } else {
        FAIL("tokenizer %s: %s: normalizer type \"%s\" is not supported (NFC, Prepend, Replace, Sequence; with a "
             "Unigram model also Precompiled, NFKC, Strip)", c->path, field, ty);
    }
    norm_op_t *nn = realloc(h->norm, sizeof *nn * (size_t)(h->n_norm + 1));
    if (!nn || !op.a || ((op.kind == NORM_REPLACE || op.kind == NORM_REPLACE_RE) && !op.b)) {
        free(op.a);
        free(op.b);
        free(op.units);
        pcre2_code_free(op.re);
        if (nn) h->norm = nn;
        FAIL("tokenizer %s: out of memory", c->path);
    }
    h->norm = nn;
    h->norm[h->n_norm++] = op;
    return 0;
}

static int push_pre(const ctx_t *c, struct tok_hf *h, pre_op_t op) {
    pre_op_t *np = realloc(h->pre, sizeof *np * (size_t)(h->n_pre + 1));
    if (!np) {
        pcre2_code_free(op.re);
        FAIL("tokenizer %s: out of memory", c->path);
    }
    h->pre = np;
    h->pre[h->n_pre++] = op;
    return 0;
}

static int add_pre(const ctx_t *c, struct tok_hf *h, const cJSON *p, const char *field) {
    if (!p || cJSON_IsNull(p)) return 0;
    const char *ty = type_of(p);
    if (!ty) FAIL("tokenizer %s: %s has no \"type\"", c->path, field);
    pre_op_t op = {0};
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(arr)) FAIL("tokenizer %s: %s.pretokenizers is not an array", c->path, field);
        const cJSON *x;
        cJSON_ArrayForEach(x, arr) if (add_pre(c, h, x, field) != 0) return -1;
        return 0;
    } else if (strcmp(ty, "Split") == 0) {
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(p, "behavior");
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") != 0)
            FAIL("tokenizer %s: %s: Split behavior \"%s\" is not supported (only Isolated)", c->path, field,
                 cJSON_IsString(beh) ? beh->valuestring : "?");
        if (get_bool(p, "invert", 0)) FAIL("tokenizer %s: %s: Split with invert is not supported", c->path, field);
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *re = pat ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
        const cJSON *s = pat ? cJSON_GetObjectItemCaseSensitive(pat, "String") : NULL;
        if (cJSON_IsString(re)) op.re = compile_re(c, field, re->valuestring, strlen(re->valuestring), 0);
        else if (cJSON_IsString(s) && s->valuestring[0])
            op.re = compile_re(c, field, s->valuestring, strlen(s->valuestring), PCRE2_LITERAL);
        else FAIL("tokenizer %s: %s: Split has no Regex or String pattern", c->path, field);
        if (!op.re) return -1;
        op.kind = PRE_SPLIT;
    } else if (strcmp(ty, "WhitespaceSplit") == 0) {
        op.kind = PRE_WSSPLIT;
    } else if (strcmp(ty, "Digits") == 0) {
        /* Rust's char::is_numeric is the general category N. */
        const char *pat = get_bool(p, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+";
        if (!(op.re = compile_re(c, field, pat, strlen(pat), 0))) return -1;
        op.kind = PRE_SPLIT;
    } else if (strcmp(ty, "ByteLevel") == 0) {
        op.kind = PRE_BYTELEVEL;
        op.add_prefix_space = get_bool(p, "add_prefix_space", 1);
        if (get_bool(p, "use_regex", 1) &&
            !(op.re = compile_re(c, field, GPT2_PATTERN, sizeof GPT2_PATTERN - 1, 0)))
            return -1;
    } else if (strcmp(ty, "Metaspace") == 0) {
        op.kind = PRE_METASPACE;
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(p, "replacement");
        const char *rs = cJSON_IsString(r) ? r->valuestring : "\xE2\x96\x81";
        size_t rl = strlen(rs);
        if (rl == 0 || rl >= sizeof op.repl || utf8_len((const unsigned char *)rs, rl) != (int)rl)
            FAIL("tokenizer %s: %s: Metaspace replacement must be one character", c->path, field);
        memcpy(op.repl, rs, rl);
        op.repl_len = rl;
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(p, "prepend_scheme");
        if (cJSON_IsString(ps)) {
            if (strcmp(ps->valuestring, "always") == 0) op.prepend = PREPEND_ALWAYS;
            else if (strcmp(ps->valuestring, "first") == 0) op.prepend = PREPEND_FIRST;
            else if (strcmp(ps->valuestring, "never") == 0) op.prepend = PREPEND_NEVER;
            else FAIL("tokenizer %s: %s: Metaspace prepend_scheme \"%s\" is unknown", c->path, field,
                      ps->valuestring);
        } else {
            op.prepend = get_bool(p, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
        }
        op.split = get_bool(p, "split", 1);
    } else {
        FAIL("tokenizer %s: %s: pre-tokenizer type \"%s\" is not supported (ByteLevel, Split, Metaspace, "
             "WhitespaceSplit, Digits, Sequence)", c->path, field, ty);
    }
    return push_pre(c, h, op);
}

static int add_ids(const ctx_t *c, int **arr, int *n, int id) {
    int *na = realloc(*arr, sizeof(int) * (size_t)(*n + 1));
    if (!na) FAIL("tokenizer %s: out of memory", c->path);
    *arr = na;
    na[(*n)++] = id;
    return 0;
}

static int add_post(const ctx_t *c, struct tok_hf *h, const cJSON *p, int vocab_size) {
    const char *field = "post_processor";
    if (!p || cJSON_IsNull(p)) return 0;
    const char *ty = type_of(p);
    if (!ty) FAIL("tokenizer %s: %s has no \"type\"", c->path, field);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(p, "processors");
        if (!cJSON_IsArray(arr)) FAIL("tokenizer %s: %s.processors is not an array", c->path, field);
        const cJSON *x;
        cJSON_ArrayForEach(x, arr) if (add_post(c, h, x, vocab_size) != 0) return -1;
        return 0;
    }
    if (strcmp(ty, "ByteLevel") == 0) return 0; /* only trims offsets */
    if (strcmp(ty, "TemplateProcessing") != 0)
        FAIL("tokenizer %s: %s: type \"%s\" is not supported (TemplateProcessing, ByteLevel, Sequence)",
             c->path, field, ty);
    if (h->n_prefix || h->n_suffix)
        FAIL("tokenizer %s: %s: more than one TemplateProcessing", c->path, field);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
    if (!cJSON_IsArray(single)) FAIL("tokenizer %s: %s.single is not an array", c->path, field);
    int seen_seq = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, single) {
        if (cJSON_GetObjectItemCaseSensitive(item, "Sequence")) {
            if (seen_seq) FAIL("tokenizer %s: %s.single has two sequences", c->path, field);
            seen_seq = 1;
            continue;
        }
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
        const cJSON *name = st ? cJSON_GetObjectItemCaseSensitive(st, "id") : NULL;
        if (!cJSON_IsString(name))
            FAIL("tokenizer %s: %s.single: an item is neither Sequence nor SpecialToken", c->path, field);
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(specials, name->valuestring);
        const cJSON *ids = sp ? cJSON_GetObjectItemCaseSensitive(sp, "ids") : NULL;
        if (!cJSON_IsArray(ids))
            FAIL("tokenizer %s: %s.special_tokens has no ids for \"%s\"", c->path, field, name->valuestring);
        const cJSON *v;
        cJSON_ArrayForEach(v, ids) {
            int id = get_id(v);
            if (id < 0 || id >= vocab_size)
                FAIL("tokenizer %s: %s.special_tokens: \"%s\" has an id outside the vocabulary", c->path,
                     field, name->valuestring);
            if (add_ids(c, seen_seq ? &h->suffix : &h->prefix, seen_seq ? &h->n_suffix : &h->n_prefix, id))
                return -1;
        }
    }
    if (!seen_seq) FAIL("tokenizer %s: %s.single has no $A sequence", c->path, field);
    return 0;
}

static int cmp_added(const void *a, const void *b) {
    const added_t *x = a, *y = b;
    int cx = (unsigned char)x->s[0], cy = (unsigned char)y->s[0];
    if (cx != cy) return cx - cy;
    return x->id - y->id;
}

/* Unigram: model.vocab[id] must be ["piece", score], the piece non-empty
 * UTF-8 (serde_json refuses the lone surrogates cJSON would let through),
 * the score a finite number. */
static int unigram_entry(const ctx_t *c, const cJSON *e, int id) {
    const cJSON *p = cJSON_GetArrayItem(e, 0), *sc = cJSON_GetArrayItem(e, 1);
    if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsString(p))
        FAIL("tokenizer %s: model.vocab[%d] is not a [\"piece\", score] pair", c->path, id);
    if (!cJSON_IsNumber(sc) || !isfinite(sc->valuedouble))
        FAIL("tokenizer %s: model.vocab[%d] (\"%.200s\"): the score is not a finite number", c->path, id,
             p->valuestring);
    size_t n = strlen(p->valuestring);
    if (n == 0) FAIL("tokenizer %s: model.vocab[%d] is an empty piece", c->path, id);
    for (size_t i = 0; i < n;) {
        int l = utf8_len((const unsigned char *)p->valuestring + i, n - i);
        if (l == 0) FAIL("tokenizer %s: model.vocab[%d]: the piece is not valid UTF-8", c->path, id);
        i += (size_t)l;
    }
    return 0;
}

/* BPE: model.merges into h->merges. */
static int load_merges(const ctx_t *c, tokenizer_t *t, const cJSON *model) {
    struct tok_hf *h = t->hf;
    uint32_t cap;
    const cJSON *e;
    /* Merges: "a b" strings or ["a", "b"] pairs; rank = position. */
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges)) FAIL("tokenizer %s: model.merges is not an array", c->path);
    int n_merges = cJSON_GetArraySize(merges);
    cap = 1;
    while (cap < 2u * (uint32_t)n_merges + 2) cap <<= 1;
    h->merges = calloc(cap, sizeof *h->merges);
    if (!h->merges) FAIL("tokenizer %s: out of memory", c->path);
    h->merge_mask = cap - 1;
    int rank = 0;
    char *buf = NULL;
    size_t bufcap = 0;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        size_t al, bl;
        if (cJSON_IsString(e)) {
            const char *s = e->valuestring, *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ') || sp == s || !sp[1]) {
                free(buf);
                FAIL("tokenizer %s: model.merges[%d] \"%s\" is not two pieces separated by one space",
                     c->path, rank, s);
            }
            a = s;
            al = (size_t)(sp - s);
            b = sp + 1;
            bl = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
            al = strlen(a);
            bl = strlen(b);
        } else {
            free(buf);
            FAIL("tokenizer %s: model.merges[%d] is neither \"a b\" nor [\"a\", \"b\"]", c->path, rank);
        }
        int ia = vocab_lookup(t, a, al), ib = vocab_lookup(t, b, bl);
        if (al + bl + 1 > bufcap) {
            bufcap = 2 * (al + bl + 1);
            char *nb = realloc(buf, bufcap);
            if (!nb) {
                free(buf);
                FAIL("tokenizer %s: out of memory", c->path);
            }
            buf = nb;
        }
        memcpy(buf, a, al);
        memcpy(buf + al, b, bl);
        buf[al + bl] = '\0';
        int ic = vocab_lookup(t, buf, al + bl);
        if (ia < 0 || ib < 0 || ic < 0) {
            const char *what = ia < 0 ? a : ib < 0 ? b : buf;
            int wl = (int)(ia < 0 ? al : ib < 0 ? bl : al + bl);
            set_err(c->err, c->errlen, "tokenizer %s: model.merges[%d] names \"%.*s\", which is not in model.vocab",
                    c->path, rank, wl > 200 ? 200 : wl, what);
            free(buf);
            return -1;
        }
        merge_insert(h, ia, ib, rank, ic);
        rank++;
    }
    free(buf);
    return 0;
}

/* Fills t and t->hf from the parsed document. */
static int build(const ctx_t *c, tokenizer_t *t, const cJSON *root) {
    struct tok_hf *h = t->hf;
    if (!cJSON_IsObject(root)) FAIL("tokenizer %s: the document is not a JSON object", c->path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) FAIL("tokenizer %s: no \"model\" object", c->path);
    const char *mty = type_of(model);
    if (!mty && cJSON_GetObjectItemCaseSensitive(model, "merges")) mty = "BPE";
    if (!mty || (strcmp(mty, "BPE") != 0 && strcmp(mty, "Unigram") != 0))
        FAIL("tokenizer %s: model.type \"%s\" is not supported (BPE, Unigram)", c->path, mty ? mty : "?");
    h->unigram = strcmp(mty, "Unigram") == 0;
    h->byte_fallback = get_bool(model, "byte_fallback", 0);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (!h->unigram && cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        FAIL("tokenizer %s: model.dropout %g is not supported (encoding would be random)", c->path,
             dropout->valuedouble);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2 && !h->unigram; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, affixes[k]);
        if (cJSON_IsString(v) && v->valuestring[0])
            FAIL("tokenizer %s: model.%s \"%s\" is not supported", c->path, affixes[k], v->valuestring);
    }
    h->ignore_merges = get_bool(model, "ignore_merges", 0);
    h->fuse_unk = get_bool(model, "fuse_unk", 0);

    /* BPE: {"piece": id, ...}; Unigram: [["piece", score], ...] in id order. */
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!h->unigram && !cJSON_IsObject(vocab)) FAIL("tokenizer %s: model.vocab is not an object", c->path);
    if (h->unigram && !cJSON_IsArray(vocab)) FAIL("tokenizer %s: model.vocab is not an array", c->path);
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        FAIL("tokenizer %s: added_tokens is not an array", c->path);

    /* Vocabulary size: the largest id + 1 over model.vocab and added_tokens. */
    int n_vocab = 0, max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int id = h->unigram ? n_vocab : get_id(e);
        if (h->unigram && unigram_entry(c, e, id) != 0) return -1;
        if (id < 0 || id >= HF_MAX_ID)
            FAIL("tokenizer %s: model.vocab[\"%s\"] is not an id in [0, %d)", c->path, e->string, HF_MAX_ID);
        if (id > max_id) max_id = id;
        n_vocab++;
    }
    if (n_vocab == 0) FAIL("tokenizer %s: model.vocab is empty", c->path);
    if (h->unigram) {
        h->n_pieces = n_vocab;
        h->score = malloc(sizeof(double) * (size_t)n_vocab);
        if (!h->score) FAIL("tokenizer %s: out of memory", c->path);
        double lo = INFINITY;
        int id = 0;
        cJSON_ArrayForEach(e, vocab) {
            h->score[id] = cJSON_GetArrayItem(e, 1)->valuedouble;
            if (h->score[id] < lo) lo = h->score[id];
            id++;
        }
        h->unk_score = lo - 10.0; /* `tokenizers`' K_UNK_PENALTY */
    }
    int n_added = 0;
    cJSON_ArrayForEach(e, added) {
        const cJSON *cont = cJSON_GetObjectItemCaseSensitive(e, "content");
        int id = get_id(cJSON_GetObjectItemCaseSensitive(e, "id"));
        if (id < 0 || !cJSON_IsString(cont) || !cont->valuestring[0])
            FAIL("tokenizer %s: added_tokens[%d] needs an id in [0, %d) and a non-empty content", c->path,
                 n_added, HF_MAX_ID);
        if (get_bool(e, "single_word", 0))
            FAIL("tokenizer %s: added_tokens[%d] (\"%s\"): single_word is not supported", c->path, n_added,
                 cont->valuestring);
        if (id > max_id) max_id = id;
        n_added++;
    }
    int V = max_id + 1;
    /* Ids must be (nearly) dense: a huge id with nothing below it would only
     * make the per-id tables large. */
    if (V > n_vocab + n_added + 1024)
        FAIL("tokenizer %s: model.vocab / added_tokens: the largest id is %d but only %d ids are named", c->path,
             max_id, n_vocab + n_added);
    t->vocab_size = V;

    /* Pieces: the model.vocab string, or the added token's content for an id
     * only added_tokens names; gaps stay empty. */
    const char **piece = calloc((size_t)V, sizeof *piece);
    if (!piece) FAIL("tokenizer %s: out of memory", c->path);
    int uid = 0;
    cJSON_ArrayForEach(e, vocab) {
        if (h->unigram) {
            piece[uid++] = cJSON_GetArrayItem(e, 0)->valuestring;
            continue;
        }
        int id = get_id(e);
        if (piece[id]) {
            set_err(c->err, c->errlen, "tokenizer %s: model.vocab: id %d is given to both \"%s\" and \"%s\"",
                    c->path, id, piece[id], e->string);
            free(piece);
            return -1;
        }
        piece[id] = e->string;
    }
    h->added = calloc((size_t)(n_added ? n_added : 1), sizeof *h->added);
    h->special = calloc((size_t)V, 1);
    if (!h->added || !h->special) {
        free(piece);
        FAIL("tokenizer %s: out of memory", c->path);
    }
    cJSON_ArrayForEach(e, added) {
        const char *cont = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
        added_t *a = &h->added[h->n_added];
        a->id = get_id(cJSON_GetObjectItemCaseSensitive(e, "id"));
        a->s = strdup(cont);
        a->len = (int)strlen(cont);
        a->special = get_bool(e, "special", 0);
        a->lstrip = get_bool(e, "lstrip", 0);
        a->rstrip = get_bool(e, "rstrip", 0);
        if (!a->s) {
            free(piece);
            FAIL("tokenizer %s: out of memory", c->path);
        }
        h->n_added++;
        if (!piece[a->id]) piece[a->id] = a->s;
        if (a->special) h->special[a->id] = 1;
    }
    qsort(h->added, (size_t)h->n_added, sizeof *h->added, cmp_added);
    for (int b = 0, k = 0; b <= 256; b++) {
        while (k < h->n_added && (unsigned char)h->added[k].s[0] < b) k++;
        h->added_from[b] = k;
    }

    size_t text_bytes = 0;
    for (int id = 0; id < V; id++) text_bytes += (piece[id] ? strlen(piece[id]) : 0) + 1;
    uint32_t cap = 1;
    while (cap < 2u * (uint32_t)n_vocab) cap <<= 1;
    t->text = malloc(text_bytes);
    t->offsets = malloc(sizeof(int) * (size_t)V);
    t->lens = malloc(sizeof(int) * (size_t)V);
    h->vocab_tab = malloc(sizeof(int) * cap);
    if (!t->text || !t->offsets || !t->lens || !h->vocab_tab || text_bytes > INT_MAX) {
        free(piece);
        FAIL("tokenizer %s: out of memory", c->path);
    }
    size_t off = 0;
    for (int id = 0; id < V; id++) {
        size_t n = piece[id] ? strlen(piece[id]) : 0;
        memcpy(t->text + off, piece[id] ? piece[id] : "", n + 1);
        t->offsets[id] = (int)off;
        t->lens[id] = (int)n;
        if ((int)n > t->max_token_length) t->max_token_length = (int)n;
        off += n + 1;
    }
    free(piece);
    h->vocab_mask = cap - 1;
    for (uint32_t i = 0; i < cap; i++) h->vocab_tab[i] = -1;
    uid = 0;
    cJSON_ArrayForEach(e, vocab) {
        int id = h->unigram ? uid++ : get_id(e);
        size_t n = (size_t)t->lens[id];
        int dup = vocab_lookup(t, t->text + t->offsets[id], n);
        /* `tokenizers` would map such a piece to its last id but score it
         * with that id's score: no real file has one. */
        if (dup >= 0 && h->unigram)
            FAIL("tokenizer %s: model.vocab[%d]: the piece \"%.200s\" is also model.vocab[%d]", c->path, id,
                 t->text + t->offsets[id], dup);
        if (dup >= 0) continue;
        uint32_t i = hash_bytes(t->text + t->offsets[id], n) & h->vocab_mask;
        while (h->vocab_tab[i] >= 0) i = (i + 1) & h->vocab_mask;
        h->vocab_tab[i] = id;
    }

    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    h->unk_id = -1;
    if (h->unigram) {
        /* `tokenizers` accepts a null unk_id but then fails to encode any
         * character without a piece; T5 files all have one. */
        const cJSON *uk = cJSON_GetObjectItemCaseSensitive(model, "unk_id");
        h->unk_id = get_id(uk);
        if (h->unk_id < 0 || h->unk_id >= h->n_pieces)
            FAIL("tokenizer %s: model.unk_id must be the id of a model.vocab entry (0 .. %d)", c->path,
                 h->n_pieces - 1);
        h->fuse_unk = 1; /* always, in `tokenizers`' Unigram */
    } else if (cJSON_IsString(unk)) {
        h->unk_id = vocab_lookup(t, unk->valuestring, strlen(unk->valuestring));
        if (h->unk_id < 0)
            FAIL("tokenizer %s: model.unk_token \"%s\" is not in model.vocab", c->path, unk->valuestring);
    }

    if (!h->unigram && load_merges(c, t, model) != 0) return -1;

    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (add_norm(c, h, norm, "normalizer") != 0) return -1;
    if (add_pre(c, h, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pre_tokenizer") != 0) return -1;
    if (add_post(c, h, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), V) != 0) return -1;
    for (int i = 0; i < h->n_pre && h->unigram; i++)
        if (h->pre[i].kind == PRE_BYTELEVEL)
            FAIL("tokenizer %s: pre_tokenizer: ByteLevel with a Unigram model is not supported", c->path);

    unsigned byte_cp[256];
    gpt2_byte_chars(byte_cp);
    h->family = FAM_SP;
    for (int i = 0; i < h->n_pre; i++)
        if (h->pre[i].kind == PRE_BYTELEVEL) h->family = FAM_BYTELEVEL;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        h->byte_id[b] = vocab_lookup(t, name, 6);
        char u[4];
        int n = utf8_put(byte_cp[b], u);
        memcpy(h->bl_char[b], u, (size_t)n);
        h->bl_len[b] = (unsigned char)n;
    }

    /* Decoded bytes of every id. A byte-level piece maps back through the
     * byte alphabet (a character outside it is kept as UTF-8); an SP piece
     * has U+2581 (or the Metaspace replacement) turned into ' ' and "<0xXX>"
     * becomes its byte; added tokens that are not in model.vocab decode to
     * their content. */
    const char *repl = "\xE2\x96\x81";
    size_t repl_len = 3;
    for (int i = 0; i < h->n_pre; i++)
        if (h->pre[i].kind == PRE_METASPACE) {
            repl = h->pre[i].repl;
            repl_len = h->pre[i].repl_len;
        }
    h->dec_text = malloc(text_bytes);
    h->dec_off = malloc(sizeof(int) * (size_t)V);
    h->dec_len = malloc(sizeof(int) * (size_t)V);
    if (!h->dec_text || !h->dec_off || !h->dec_len) FAIL("tokenizer %s: out of memory", c->path);
    short from_char[324]; /* code point < 324 -> byte + 1, 0 if not in the alphabet */
    memset(from_char, 0, sizeof from_char);
    for (int b = 0; b < 256; b++) from_char[byte_cp[b]] = (short)(b + 1);
    off = 0;
    for (int id = 0; id < V; id++) {
        const unsigned char *p = (const unsigned char *)t->text + t->offsets[id];
        size_t n = (size_t)t->lens[id], w = 0;
        char *o = h->dec_text + off;
        int in_vocab = n > 0 && vocab_lookup(t, (const char *)p, n) == id;
        int byte = -1;
        if (in_vocab && h->family == FAM_SP && n == 6) {
            for (int b = 0; b < 256 && byte < 0; b++)
                if (h->byte_id[b] == id) byte = b;
        }
        if (!in_vocab) {
            memcpy(o, p, n);
            w = n;
        } else if (byte >= 0) {
            o[w++] = (char)byte;
        } else if (h->family == FAM_BYTELEVEL) {
            for (size_t i = 0; i < n;) {
                int l = utf8_len(p + i, n - i);
                if (l == 0) l = 1;
                unsigned cp = utf8_cp(p + i, l);
                if (cp < sizeof from_char / sizeof *from_char && from_char[cp]) o[w++] = (char)(from_char[cp] - 1);
                else {
                    memcpy(o + w, p + i, (size_t)l);
                    w += (size_t)l;
                }
                i += (size_t)l;
            }
        } else {
            for (size_t i = 0; i < n;) {
                if (n - i >= repl_len && memcmp(p + i, repl, repl_len) == 0) {
                    o[w++] = ' ';
                    i += repl_len;
                } else {
                    o[w++] = (char)p[i++];
                }
            }
        }
        h->dec_off[id] = (int)off;
        h->dec_len[id] = (int)w;
        off += w + 1; /* w <= n: the decoded text never grows */
    }

    /* BOS / EOS (see the file comment). */
    t->bos = h->n_prefix > 0 ? h->prefix[0] : -1;
    t->eos = -1;
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>"};
    for (int k = 0; k < 4 && t->eos < 0; k++)
        for (int i = 0; i < h->n_added; i++)
            if (h->added[i].special && strcmp(h->added[i].s, eos_names[k]) == 0) t->eos = h->added[i].id;
    return 0;
}

tokenizer_t *tokenizer_load_hf(const char *path, char *err, size_t errlen) {
    if (!path) {
        set_err(err, errlen, "tokenizer path is NULL");
        return NULL;
    }
    char full[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (snprintf(full, sizeof full, "%s/tokenizer.json", path) >= (int)sizeof full) {
            set_err(err, errlen, "tokenizer %s: path too long", path);
            return NULL;
        }
        path = full;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, "cannot open tokenizer %s: %s", path, strerror(errno));
        return NULL;
    }
    char *data = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size == cap) {
            cap = cap ? 2 * cap : 1 << 20;
            char *nd = realloc(data, cap);
            if (!nd) {
                free(data);
                fclose(f);
                set_err(err, errlen, "out of memory reading tokenizer %s", path);
                return NULL;
            }
            data = nd;
        }
        size_t got = fread(data + size, 1, cap - size, f);
        size += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(data);
        set_err(err, errlen, "cannot read tokenizer %s", path);
        return NULL;
    }
    tokenizer_t *t = tokenizer_load_hf_mem(data, size, path, err, errlen);
    free(data);
    return t;
}

tokenizer_t *tokenizer_load_hf_mem(const char *data, size_t size, const char *name, char *err, size_t errlen) {
    const char *path = name ? name : "(memory)";
    cJSON *root = cJSON_ParseWithLength(data, size);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long pos = at && at >= data && at <= data + size ? (long)(at - data) : -1;
        set_err(err, errlen, "tokenizer %s: malformed JSON (near byte %ld)", path, pos);
        return NULL;
    }
    tokenizer_t *t = calloc(1, sizeof *t);
    if (t) t->hf = calloc(1, sizeof *t->hf);
    if (!t || !t->hf) {
        free(t);
        cJSON_Delete(root);
        set_err(err, errlen, "out of memory loading tokenizer %s", path);
        return NULL;
    }
    t->fmt = &HF_FORMAT;
    for (int b = 0; b < 256; b++) t->bytes[b] = (unsigned char)b;
    ctx_t c = {path, err, errlen};
    int rc = build(&c, t, root);
    cJSON_Delete(root);
    if (rc != 0) {
        tokenizer_destroy(&t);
        return NULL;
    }
    return t;
}

static int tok_hf_is_special(const tokenizer_t *t, int id) { return t->hf->special[id]; }

/* ---- decoding ------------------------------------------------------------------ */

static const char *tok_hf_decode(const tokenizer_t *t, int prev, int id, size_t *len) {
    const struct tok_hf *h = t->hf;
    if (id < 0 || id >= t->vocab_size || h->special[id]) {
        *len = 0;
        return "";
    }
    const char *p = h->dec_text + h->dec_off[id];
    size_t n = (size_t)h->dec_len[id];
    /* SentencePiece's dummy prefix (decoder Strip / Metaspace): one leading
     * space of the text is dropped; the text starts after BOS (Unigram,
     * which has no BOS in T5's template: also at prev < 0, the start). */
    int first = h->unigram ? prev < 0 || prev == t->bos : prev >= 0 && prev == t->bos;
    if (h->family == FAM_SP && first && n > 0 && p[0] == ' ') {
        p++;
        n--;
    }
    *len = n;
    return p;
}

/* ---- encoding ------------------------------------------------------------------ */

typedef struct {
    const char *p;
    size_t n;
} span_t;

/* Per-call scratch: spans, owned buffers and the BPE arrays, grown as needed. */
typedef struct {
    span_t *a, *b; /* current and next piece lists */
    int na, nb, capa, capb;
    char **owned;
    int nowned, capowned;
    pcre2_match_data *md;
    int *sid, *sprev, *snext; /* BPE symbols */
    struct hm { int rank, pos, left, right, lid, rid, id; } *heap;
    int symcap, nheap;
    double *vscore;     /* Unigram: (vcap) best path scores */
    int *vstart;        /* Unigram: (3 * vcap) best path starts, piece ids, path */
    size_t vcap;
    int *out, cap, count;
    int oom;
} enc_t;

static void emit(enc_t *e, int id) {
    if (e->count < e->cap && e->out) e->out[e->count] = id;
    e->count++;
}

static void push_span(enc_t *e, const char *p, size_t n) {
    if (n == 0) return;
    if (e->nb == e->capb) {
        int nc = e->capb ? 2 * e->capb : 64;
        span_t *ns = realloc(e->b, sizeof *ns * (size_t)nc);
        if (!ns) {
            e->oom = 1;
            return;
        }
        e->b = ns;
        e->capb = nc;
    }
    e->b[e->nb++] = (span_t){p, n};
}

static char *own(enc_t *e, size_t n) {
    if (e->nowned == e->capowned) {
        int nc = e->capowned ? 2 * e->capowned : 16;
        char **no = realloc(e->owned, sizeof *no * (size_t)nc);
        if (!no) {
            e->oom = 1;
            return NULL;
        }
        e->owned = no;
        e->capowned = nc;
    }
    char *p = malloc(n ? n : 1);
    if (!p) {
        e->oom = 1;
        return NULL;
    }
    e->owned[e->nowned++] = p;
    return p;
}

/* Split with behavior Isolated: every match and every gap is a piece. */
static void split_isolated(enc_t *e, pcre2_code *re, const char *s, size_t n) {
    if (!e->md) {
        e->md = pcre2_match_data_create(4, NULL);
        if (!e->md) {
            e->oom = 1;
            return;
        }
    }
    size_t pos = 0, gap = 0;
    while (pos < n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, 0, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) { /* resource limits: keep the rest as one piece */
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t s0 = ov[0], e0 = ov[1];
        if (s0 > gap) push_span(e, s + gap, s0 - gap);
        if (e0 > s0) {
            push_span(e, s + s0, e0 - s0);
            gap = e0;
            pos = e0;
        } else { /* empty match: step over one character */
            int l = utf8_len((const unsigned char *)s + e0, n - e0);
            pos = e0 + (size_t)(l ? l : 1);
            if (s0 > gap) gap = s0;
        }
    }
    if (gap < n) push_span(e, s + gap, n - gap);
}

static void swap_lists(enc_t *e) {
    span_t *tmp = e->a;
    int tcap = e->capa;
    e->a = e->b;
    e->capa = e->capb;
    e->na = e->nb;
    e->b = tmp;
    e->capb = tcap;
    e->nb = 0;
}

static void pre_tokenize(const struct tok_hf *h, enc_t *e, int first) {
    for (int k = 0; k < h->n_pre && !e->oom; k++) {
        const pre_op_t *op = &h->pre[k];
        e->nb = 0;
        for (int i = 0; i < e->na && !e->oom; i++) {
            const char *s = e->a[i].p;
            size_t n = e->a[i].n;
            if (op->kind == PRE_SPLIT) {
                split_isolated(e, op->re, s, n);
            } else if (op->kind == PRE_WSSPLIT) { /* runs of non-whitespace; the whitespace goes */
                size_t st = 0;
                for (size_t m = 0; m < n;) {
                    int l = utf8_len((const unsigned char *)s + m, n - m);
                    int sp = l > 0 && uni_space(utf8_cp((const unsigned char *)s + m, l));
                    if (l == 0) l = 1;
                    if (sp) {
                        push_span(e, s + st, m - st);
                        st = m + (size_t)l;
                    }
                    m += (size_t)l;
                }
                push_span(e, s + st, n - st);
            } else if (op->kind == PRE_BYTELEVEL) {
                if (op->add_prefix_space && s[0] != ' ') {
                    char *q = own(e, n + 1);
                    if (!q) return;
                    q[0] = ' ';
                    memcpy(q + 1, s, n);
                    s = q;
                    n++;
                }
                int from = e->nb;
                if (op->re) split_isolated(e, op->re, s, n);
                else push_span(e, s, n);
                /* Map every byte of the new pieces to its alphabet character. */
                for (int j = from; j < e->nb && !e->oom; j++) {
                    char *q = own(e, 2 * e->b[j].n);
                    if (!q) return;
                    size_t w = 0;
                    for (size_t m = 0; m < e->b[j].n; m++) {
                        unsigned char b = (unsigned char)e->b[j].p[m];
                        memcpy(q + w, h->bl_char[b], h->bl_len[b]);
                        w += h->bl_len[b];
                    }
                    e->b[j] = (span_t){q, w};
                }
            } else { /* METASPACE */
                size_t spaces = 0;
                for (size_t m = 0; m < n; m++) spaces += s[m] == ' ';
                char *q = own(e, n + (spaces + 1) * op->repl_len);
                if (!q) return;
                size_t w = 0;
                int pre = op->prepend == PREPEND_ALWAYS || (op->prepend == PREPEND_FIRST && first && i == 0);
                int starts = n > 0 && (s[0] == ' ' || (n >= op->repl_len && memcmp(s, op->repl, op->repl_len) == 0));
                if (pre && !starts) {
                    memcpy(q, op->repl, op->repl_len);
                    w = op->repl_len;
                }
                for (size_t m = 0; m < n; m++) {
                    if (s[m] == ' ') {
                        memcpy(q + w, op->repl, op->repl_len);
                        w += op->repl_len;
                    } else {
                        q[w++] = s[m];
                    }
                }
                if (!op->split) {
                    push_span(e, q, w);
                } else { /* a new piece starts at every replacement character */
                    size_t st = 0;
                    for (size_t m = 1; m + op->repl_len <= w; m++)
                        if (memcmp(q + m, op->repl, op->repl_len) == 0) {
                            push_span(e, q + st, m - st);
                            st = m;
                        }
                    push_span(e, q + st, w - st);
                }
            }
        }
        swap_lists(e);
    }
}

static int hm_before(const struct hm *a, const struct hm *b) {
    if (a->rank != b->rank) return a->rank < b->rank;
    return a->pos < b->pos;
}

static void hm_push(enc_t *e, struct hm m) {
    int i = e->nheap++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!hm_before(&m, &e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = m;
}

static struct hm hm_pop(enc_t *e) {
    struct hm top = e->heap[0], last = e->heap[--e->nheap];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= e->nheap) break;
        if (c + 1 < e->nheap && hm_before(&e->heap[c + 1], &e->heap[c])) c++;
        if (!hm_before(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (e->nheap > 0) e->heap[i] = last;
    return top;
}

static void try_pair(const struct tok_hf *h, enc_t *e, int a, int b) {
    if (a < 0 || b < 0) return;
    const merge_slot_t *m = merge_lookup(h, e->sid[a], e->sid[b]);
    if (m) hm_push(e, (struct hm){m->rank, a, a, b, e->sid[a], e->sid[b], m->id});
}

/* BPE over one pre-tokenized piece. */
static void bpe_piece(const tokenizer_t *t, enc_t *e, const char *s, size_t n) {
    const struct tok_hf *h = t->hf;
    if (h->ignore_merges) {
        int id = vocab_lookup(t, s, n);
        if (id >= 0) {
            emit(e, id);
            return;
        }
    }
    /* At most n symbols (one per byte); the heap holds at most one entry per
     * symbol plus two per merge. */
    if ((size_t)e->symcap < n) {
        int nc = (int)n;
        free(e->sid);
        free(e->heap);
        e->sid = malloc(sizeof(int) * 3 * (size_t)nc);
        e->heap = malloc(sizeof *e->heap * 3 * (size_t)nc);
        if (!e->sid || !e->heap) {
            e->oom = 1;
            e->symcap = 0;
            return;
        }
        e->symcap = nc;
    }
    e->sprev = e->sid + e->symcap;
    e->snext = e->sprev + e->symcap;
    int ns = 0, last_unk = 0;
    for (size_t i = 0; i < n;) {
        int l = utf8_len((const unsigned char *)s + i, n - i);
        if (l == 0) l = 1;
        int id = vocab_lookup(t, s + i, (size_t)l);
        if (id >= 0) {
            e->sid[ns++] = id;
            last_unk = 0;
        } else {
            int ok = h->byte_fallback;
            for (int k = 0; k < l && ok; k++) ok = h->byte_id[(unsigned char)s[i + k]] >= 0;
            if (ok) {
                for (int k = 0; k < l; k++) e->sid[ns++] = h->byte_id[(unsigned char)s[i + k]];
                last_unk = 0;
            } else if (h->unk_id >= 0) {
                if (!(h->fuse_unk && last_unk)) e->sid[ns++] = h->unk_id;
                last_unk = 1;
            } /* no unk_token: the character is dropped */
        }
        i += (size_t)l;
    }
    for (int k = 0; k < ns; k++) {
        e->sprev[k] = k - 1;
        e->snext[k] = k + 1 < ns ? k + 1 : -1;
    }
    e->nheap = 0;
    for (int k = 0; k + 1 < ns; k++) try_pair(h, e, k, k + 1);
    while (e->nheap > 0) {
        struct hm m = hm_pop(e);
        int a = m.left, b = m.right;
        /* Stale when either side changed since the pair was pushed. */
        if (e->snext[a] != b || e->sid[a] != m.lid || e->sid[b] != m.rid) continue;
        e->sid[a] = m.id;
        e->snext[a] = e->snext[b];
        if (e->snext[b] >= 0) e->sprev[e->snext[b]] = a;
        e->snext[b] = -2;
        try_pair(h, e, e->sprev[a], a);
        try_pair(h, e, a, e->snext[a]);
    }
    for (int k = ns > 0 ? 0 : -1; k >= 0; k = e->snext[k]) emit(e, e->sid[k]);
}

/* ---- Unigram (SentencePiece) encoding ------------------------------------------ */

#ifndef BILD_NO_ICU
/* Grapheme_Cluster_Break of c, with the pre-Unicode-11 emoji values folded
 * into the ones that replaced them. */
static int gcb(unsigned c) {
    int v = u_getIntPropertyValue((UChar32)c, UCHAR_GRAPHEME_CLUSTER_BREAK);
    if (v == U_GCB_E_MODIFIER) return U_GCB_EXTEND;
    if (v == U_GCB_E_BASE || v == U_GCB_E_BASE_GAZ || v == U_GCB_GLUE_AFTER_ZWJ) return U_GCB_OTHER;
    return v;
}

static int gcb_ctl(int v) { return v == U_GCB_CONTROL || v == U_GCB_CR || v == U_GCB_LF; }

/* End of the extended grapheme cluster that starts at s[i] (valid UTF-8):
 * UAX #29's rules GB3-GB13 on ICU's properties (what the unicode-segmentation
 * crate under `tokenizers` implements). Left out: GB9c (Indic conjuncts),
 * which only joins 3-byte letters and marks, so never into a cluster
 * shorter than the 6 bytes below which a cluster is treated as a whole. */
static size_t grapheme_end(const unsigned char *s, size_t n, size_t i) {
    int l = utf8_len(s + i, n - i);
    if (l == 0) return i + 1;
    unsigned c = utf8_cp(s + i, l);
    int prev = gcb(c), ri = prev == U_GCB_REGIONAL_INDICATOR;
    int pict = u_hasBinaryProperty((UChar32)c, UCHAR_EXTENDED_PICTOGRAPHIC), pict_zwj = 0;
    size_t j = i + (size_t)l;
    while (j < n) {
        l = utf8_len(s + j, n - j);
        if (l == 0) break;
        c = utf8_cp(s + j, l);
        int cur = gcb(c), ep = u_hasBinaryProperty((UChar32)c, UCHAR_EXTENDED_PICTOGRAPHIC), join;
        if (prev == U_GCB_CR && cur == U_GCB_LF) join = 1;                                   /* GB3 */
        else if (gcb_ctl(prev) || gcb_ctl(cur)) join = 0;                                     /* GB4, GB5 */
        else if (prev == U_GCB_L)                                                             /* GB6 */
            join = cur == U_GCB_L || cur == U_GCB_V || cur == U_GCB_LV || cur == U_GCB_LVT;
        else if ((prev == U_GCB_LV || prev == U_GCB_V) && (cur == U_GCB_V || cur == U_GCB_T)) join = 1; /* GB7 */
        else if ((prev == U_GCB_LVT || prev == U_GCB_T) && cur == U_GCB_T) join = 1;          /* GB8 */
        else if (cur == U_GCB_EXTEND || cur == U_GCB_ZWJ || cur == U_GCB_SPACING_MARK) join = 1; /* GB9, 9a */
        else if (prev == U_GCB_PREPEND) join = 1;                                             /* GB9b */
        else if (prev == U_GCB_ZWJ && pict_zwj && ep) join = 1;                               /* GB11 */
        else if (prev == U_GCB_REGIONAL_INDICATOR && cur == U_GCB_REGIONAL_INDICATOR) join = ri % 2 == 1; /* GB12, 13 */
        else join = 0;
        if (!join) break;
        pict_zwj = cur == U_GCB_ZWJ && pict; /* ExtPict Extend* ZWJ so far */
        pict = ep || (pict && cur == U_GCB_EXTEND);
        ri = cur == U_GCB_REGIONAL_INDICATOR ? ri + 1 : 0;
        prev = cur;
        j += (size_t)l;
    }
    return j;
}
#endif

/* `tokenizers`' Precompiled normalizer over s[0..n) (valid UTF-8): each
 * grapheme cluster shorter than 6 bytes whose start has a key in the
 * charsmap becomes the string of the shortest such key (the rest of the
 * cluster is dropped: "e" + U+0301 matches the key "e\u0301", but full-width
 * "Ｅ" + U+0301 becomes "E"); any other cluster goes character by character,
 * a character with a key becoming its string. Writes to o (NULL: counts
 * only); returns the length. */
static size_t precompiled_run(const norm_op_t *op, const char *s, size_t n, char *o) {
    size_t w = 0;
#ifndef BILD_NO_ICU
    const unsigned char *u = (const unsigned char *)s;
    for (size_t g = 0; g < n;) {
        size_t ge = grapheme_end(u, n, g), l;
        long v = ge - g < 6 ? cm_first(op, u + g, ge - g) : -1;
        if (v >= 0) {
            const char *r = cm_string(op, v, &l);
            if (o) memcpy(o + w, r, l);
            w += l;
        } else {
            for (size_t i = g; i < ge;) {
                int cl = utf8_len(u + i, ge - i);
                if (cl == 0) cl = 1;
                v = cm_first(op, u + i, (size_t)cl);
                const char *r = v >= 0 ? cm_string(op, v, &l) : s + i;
                if (v < 0) l = (size_t)cl;
                if (o) memcpy(o + w, r, l);
                w += l;
                i += (size_t)cl;
            }
        }
        g = ge;
    }
#else
    (void)op; /* unreachable: refused at load */
    (void)cm_first;
    (void)cm_string;
    if (o) memcpy(o, s, n);
    w = n;
#endif
    return w;
}

/* Best segmentation of one pre-tokenized piece s[0..n) (valid UTF-8), as
 * `tokenizers`' Unigram::encode_optimized finds it: best[j] is the highest
 * total score of pieces covering s[0..j). Start positions are taken in
 * order, and a candidate replaces the best path into its end only when its
 * score is strictly higher, so on a tie the path whose last piece starts
 * first wins. A character that is no single-character piece also gets an
 * edge scored unk_score (the lowest score - 10). On the best path, runs of
 * unk pieces are fused; each fused run, like every piece, is then looked up
 * in the vocabulary again (a fused run that is no piece: its bytes'
 * "<0xXX>" pieces with byte_fallback when all exist, else unk_id). */
static void unigram_piece(const tokenizer_t *t, enc_t *e, const char *s, size_t n) {
    const struct tok_hf *h = t->hf;
    if (n + 1 > e->vcap) {
        free(e->vscore);
        free(e->vstart);
        e->vscore = malloc(sizeof(double) * (n + 1));
        e->vstart = malloc(sizeof(int) * 3 * (n + 1));
        if (!e->vscore || !e->vstart) {
            e->oom = 1;
            e->vcap = 0;
            return;
        }
        e->vcap = n + 1;
    }
    double *best = e->vscore;
    /* from[j] < 0: no path to j yet; path: the best path's piece ends */
    int *from = e->vstart, *vid = e->vstart + e->vcap, *path = e->vstart + 2 * e->vcap;
    best[0] = 0;
    from[0] = 0;
    for (size_t j = 1; j <= n; j++) from[j] = -1;
    const unsigned char *u = (const unsigned char *)s;
    size_t maxlen = (size_t)t->max_token_length;
    for (size_t st = 0; st < n;) {
        int mb = utf8_len(u + st, n - st);
        if (mb == 0) mb = 1;
        int single = 0;
        uint32_t hv = 2166136261u; /* hash_bytes of s[st..st+len), grown one byte at a time */
        for (size_t len = 1; len <= maxlen && st + len <= n; len++) {
            hv = (hv ^ u[st + len - 1]) * 16777619u;
            int id = -1;
            for (uint32_t i = hv & h->vocab_mask;; i = (i + 1) & h->vocab_mask) {
                int k = h->vocab_tab[i];
                if (k < 0) break;
                if ((size_t)t->lens[k] == len && memcmp(t->text + t->offsets[k], s + st, len) == 0) {
                    id = k;
                    break;
                }
            }
            if (id < 0) continue;
            double cand = h->score[id] + best[st];
            size_t j = st + len;
            if (from[j] < 0 || cand > best[j]) {
                best[j] = cand;
                from[j] = (int)st;
                vid[j] = id;
            }
            if (len == (size_t)mb) single = 1;
        }
        if (!single) {
            double cand = h->unk_score + best[st];
            size_t j = st + (size_t)mb;
            if (from[j] < 0 || cand > best[j]) {
                best[j] = cand;
                from[j] = (int)st;
                vid[j] = h->unk_id;
            }
        }
        st += (size_t)mb;
    }
    /* The best path's piece ends, in order (walked back from n). */
    int np = 0;
    for (size_t j = n; j > 0; j = (size_t)from[j]) np++;
    int k = np;
    for (size_t j = n; j > 0; j = (size_t)from[j]) path[--k] = (int)j;
    size_t run = 0; /* start of the pending unk run */
    int in_run = 0;
    for (int p = 0; p <= np; p++) {
        int end = p < np ? path[p] : -1;
        int is_unk = p < np && vid[end] == h->unk_id;
        if (in_run && !is_unk) { /* flush the fused run s[run .. start of this piece) */
            size_t stop = p < np ? (size_t)from[end] : n, rl = stop - run;
            int id = vocab_lookup(t, s + run, rl);
            if (id >= 0) {
                emit(e, id);
            } else {
                int ok = h->byte_fallback;
                for (size_t b = run; b < stop && ok; b++) ok = h->byte_id[u[b]] >= 0;
                if (ok)
                    for (size_t b = run; b < stop; b++) emit(e, h->byte_id[u[b]]);
                else
                    emit(e, h->unk_id);
            }
            in_run = 0;
        }
        if (p == np) break;
        if (is_unk) {
            if (!in_run) run = (size_t)from[end];
            in_run = 1;
        } else {
            emit(e, vid[end]);
        }
    }
}

/* Length of the maximal ill-formed subpart at s[0..n) (where utf8_len gave
 * 0): a lead byte and the continuation bytes that could still have
 * completed it. Each becomes one U+FFFD, as in WHATWG's decoder and Rust's
 * String::from_utf8_lossy. */
static size_t utf8_bad_len(const unsigned char *s, size_t n) {
    unsigned char b = s[0];
    size_t len = (b >= 0xC2 && b <= 0xDF) ? 2 : (b >= 0xE0 && b <= 0xEF) ? 3 : (b >= 0xF0 && b <= 0xF4) ? 4 : 0;
    size_t k = 1;
    while (k < len && k < n) {
        unsigned char x = s[k];
        int ok = k > 1 ? x >= 0x80 && x <= 0xBF
               : b == 0xE0 ? x >= 0xA0 && x <= 0xBF : b == 0xED ? x >= 0x80 && x <= 0x9F
               : b == 0xF0 ? x >= 0x90 && x <= 0xBF : b == 0xF4 ? x >= 0x80 && x <= 0x8F : x >= 0x80 && x <= 0xBF;
        if (!ok) break;
        k++;
    }
    return k;
}

/* s with every ill-formed subpart replaced by U+FFFD (caller frees), or
 * NULL when s is valid UTF-8 or on allocation failure (*oom set). */
static char *utf8_fix(const char *s, size_t n, int *oom) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        int l = utf8_len(u + i, n - i);
        if (l == 0) break;
        i += (size_t)l;
    }
    if (i == n) return NULL;
    char *o = malloc(3 * n + 1); /* each bad byte at most one U+FFFD */
    if (!o) {
        *oom = 1;
        return NULL;
    }
    size_t w = 0;
    for (i = 0; i < n;) {
        int l = utf8_len(u + i, n - i);
        if (l > 0) {
            memcpy(o + w, s + i, (size_t)l);
            w += (size_t)l;
            i += (size_t)l;
        } else {
            memcpy(o + w, "\xEF\xBF\xBD", 3);
            w += 3;
            i += utf8_bad_len(u + i, n - i);
        }
    }
    o[w] = '\0';
    return o;
}

/* Unicode NFC (NFKC if compat) of s[0..*n) (ICU). Returns s itself when it
 * is already normalized (always for ASCII) or not valid UTF-8 (which `tokenizers` never sees: it
 * takes Rust strings; such text is left as it is), else a buffer owned by
 * e with the new length in *n. NULL when out of memory. */
static const char *nfc(enc_t *e, const char *s, size_t *n, int compat) {
#ifdef BILD_NO_ICU
    (void)e;
    (void)n;
    (void)compat;
    return s; /* unreachable: such tokenizers are refused at load */
#else
    size_t i = 0;
    while (i < *n && (unsigned char)s[i] < 0x80) i++;
    if (i == *n) return s;
    UErrorCode st = U_ZERO_ERROR;
    const UNormalizer2 *nf = compat ? unorm2_getNFKCInstance(&st) : unorm2_getNFCInstance(&st);
    int32_t ulen = 0;
    u_strFromUTF8(NULL, 0, &ulen, s, (int32_t)*n, &st);
    if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st)) return s; /* invalid UTF-8 */
    UChar *u = (UChar *)own(e, sizeof(UChar) * (size_t)(ulen + 1));
    if (!u) return NULL;
    st = U_ZERO_ERROR;
    u_strFromUTF8(u, ulen + 1, NULL, s, (int32_t)*n, &st);
    if (U_FAILURE(st) || unorm2_isNormalized(nf, u, ulen, &st) || U_FAILURE(st)) return s;
    /* NFC of UTF-16 text is at most 3 times as long (Unicode's stated
     * bound); NFKC can grow more (U+FDFA: 18 code points), then ICU says how
     * long and the call is repeated. */
    int32_t cap = 3 * ulen + 1;
    UChar *v = (UChar *)own(e, sizeof(UChar) * (size_t)cap);
    if (!v) return NULL;
    int32_t vlen = unorm2_normalize(nf, u, ulen, v, cap, &st);
    if (st == U_BUFFER_OVERFLOW_ERROR) {
        cap = vlen + 1;
        v = (UChar *)own(e, sizeof(UChar) * (size_t)cap);
        if (!v) return NULL;
        st = U_ZERO_ERROR;
        vlen = unorm2_normalize(nf, u, ulen, v, cap, &st);
    }
    if (U_FAILURE(st)) return s;
    int32_t blen = 0;
    st = U_ZERO_ERROR;
    u_strToUTF8(NULL, 0, &blen, v, vlen, &st);
    char *q = own(e, (size_t)blen + 1);
    if (!q) return NULL;
    st = U_ZERO_ERROR;
    u_strToUTF8(q, blen + 1, NULL, v, vlen, &st);
    if (U_FAILURE(st)) return s;
    *n = (size_t)blen;
    return q;
#endif
}

static int ensure_md(enc_t *e) {
    if (!e->md && !(e->md = pcre2_match_data_create(4, NULL))) e->oom = 1;
    return e->md != NULL;
}

/* Replace with a Regex pattern: every non-empty match, left to right,
 * becomes op->b. Returns s when nothing matched, else a buffer owned by e
 * (new length in *n); NULL when out of memory. */
static const char *replace_re(enc_t *e, const norm_op_t *op, const char *s, size_t *n) {
    if (!ensure_md(e)) return NULL;
    size_t total = 0, hits = 0;
    char *q = NULL;
    for (int pass = 0; pass < 2; pass++) {
        size_t pos = 0, gap = 0, w = 0;
        while (pos < *n) {
            int rc = pcre2_match(op->re, (PCRE2_SPTR)s, *n, pos, 0, e->md, NULL);
            if (rc < 0) break; /* no match (or a resource limit: the rest stays) */
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
            size_t s0 = ov[0], e0 = ov[1];
            if (e0 == s0) { /* an empty match replaces nothing */
                int l = s0 < *n ? utf8_len((const unsigned char *)s + s0, *n - s0) : 1;
                pos = s0 + (size_t)(l ? l : 1);
                continue;
            }
            if (pass == 0) {
                hits++;
                total += e0 - s0;
            } else {
                memcpy(q + w, s + gap, s0 - gap);
                w += s0 - gap;
                memcpy(q + w, op->b, op->blen);
                w += op->blen;
            }
            gap = pos = e0;
        }
        if (pass == 0) {
            if (!hits) return s;
            q = own(e, *n - total + hits * op->blen);
            if (!q) return NULL;
        } else {
            memcpy(q + w, s + gap, *n - gap);
            *n = w + (*n - gap);
        }
    }
    return q;
}

/* Normalizes, pre-tokenizes and encodes one segment between added tokens. */
static void encode_segment(const tokenizer_t *t, enc_t *e, const char *s, size_t n, int first) {
    const struct tok_hf *h = t->hf;
    if (n == 0) return;
    for (int k = 0; k < h->n_norm && !e->oom; k++) {
        const norm_op_t *op = &h->norm[k];
        if (op->kind == NORM_NFC || op->kind == NORM_NFKC) {
            s = nfc(e, s, &n, op->kind == NORM_NFKC);
            if (!s) return;
        } else if (op->kind == NORM_PRECOMPILED) {
            size_t w = precompiled_run(op, s, n, NULL);
            char *q = own(e, w);
            if (!q) return;
            precompiled_run(op, s, n, q);
            s = q;
            n = w;
        } else if (op->kind == NORM_STRIP) { /* Unicode whitespace at either end */
            const unsigned char *u = (const unsigned char *)s;
            size_t a = 0, b = n;
            while (op->left && a < b) {
                int l = utf8_len(u + a, b - a);
                if (l == 0 || !uni_space(utf8_cp(u + a, l))) break;
                a += (size_t)l;
            }
            while (op->right && b > a) {
                size_t z = b - 1;
                while (z > a && (u[z] & 0xC0) == 0x80) z--; /* start of the last character */
                int l = utf8_len(u + z, b - z);
                if (l == 0 || z + (size_t)l != b || !uni_space(utf8_cp(u + z, l))) break;
                b = z;
            }
            s += a;
            n = b - a;
        } else if (op->kind == NORM_REPLACE_RE) {
            s = replace_re(e, op, s, &n);
            if (!s) return;
        } else if (op->kind == NORM_PREPEND) {
            char *q = own(e, n + op->alen);
            if (!q) return;
            memcpy(q, op->a, op->alen);
            memcpy(q + op->alen, s, n);
            s = q;
            n += op->alen;
        } else {
            size_t hits = 0;
            for (size_t i = 0; i + op->alen <= n;)
                if (memcmp(s + i, op->a, op->alen) == 0) {
                    hits++;
                    i += op->alen;
                } else {
                    i++;
                }
            if (!hits) continue;
            char *q = own(e, n + hits * op->blen);
            if (!q) return;
            size_t w = 0;
            for (size_t i = 0; i < n;)
                if (i + op->alen <= n && memcmp(s + i, op->a, op->alen) == 0) {
                    memcpy(q + w, op->b, op->blen);
                    w += op->blen;
                    i += op->alen;
                } else {
                    q[w++] = s[i++];
                }
            s = q;
            n = w;
        }
    }
    if (e->oom || n == 0) return;
    e->nb = 0;
    push_span(e, s, n);
    swap_lists(e);
    pre_tokenize(h, e, first);
    for (int i = 0; i < e->na && !e->oom; i++) {
        if (h->unigram) unigram_piece(t, e, e->a[i].p, e->a[i].n);
        else bpe_piece(t, e, e->a[i].p, e->a[i].n);
    }
}

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static int tok_hf_encode(const tokenizer_t *t, const char *text, int add_bos, int *out, int cap) {
    const struct tok_hf *h = t->hf;
    enc_t e = {.out = out, .cap = cap};
    if (add_bos)
        for (int i = 0; i < h->n_prefix; i++) emit(&e, h->prefix[i]);
    size_t tl = text ? strlen(text) : 0;
    if (tl > INT_MAX / 8) return -1;
    /* Unigram: `tokenizers` only ever sees valid UTF-8 (Rust strings), so
     * ill-formed bytes become U+FFFD first, as a lossy decode would. */
    char *fixed = h->unigram ? utf8_fix(text, tl, &e.oom) : NULL;
    if (e.oom) return -1;
    if (fixed) {
        text = fixed;
        tl = strlen(fixed);
        if (tl > INT_MAX / 8) {
            free(fixed);
            return -1;
        }
    }
    size_t seg = 0;
    for (size_t i = 0; i < tl && !e.oom;) {
        /* The longest added token starting at i. */
        const added_t *best = NULL;
        unsigned char c0 = (unsigned char)text[i];
        for (int k = h->added_from[c0]; k < h->added_from[c0 + 1]; k++) {
            const added_t *a = &h->added[k];
            if ((size_t)a->len <= tl - i && memcmp(text + i, a->s, (size_t)a->len) == 0 &&
                (!best || a->len > best->len))
                best = a;
        }
        if (!best) {
            i++;
            continue;
        }
        size_t s0 = i, e0 = i + (size_t)best->len;
        if (best->lstrip)
            while (s0 > seg && is_ws((unsigned char)text[s0 - 1])) s0--;
        if (best->rstrip)
            while (e0 < tl && is_ws((unsigned char)text[e0])) e0++;
        for (int k = 0; k < e.nowned; k++) free(e.owned[k]);
        e.nowned = 0;
        encode_segment(t, &e, text + seg, s0 - seg, seg == 0);
        emit(&e, best->id);
        seg = i = e0;
    }
    for (int k = 0; k < e.nowned; k++) free(e.owned[k]);
    e.nowned = 0;
    if (!e.oom) encode_segment(t, &e, text + seg, tl - seg, seg == 0);
    if (add_bos)
        for (int i = 0; i < h->n_suffix; i++) emit(&e, h->suffix[i]);
    for (int k = 0; k < e.nowned; k++) free(e.owned[k]);
    free(e.owned);
    free(e.a);
    free(e.b);
    free(e.sid);
    free(e.heap);
    free(e.vscore);
    free(e.vstart);
    free(fixed);
    if (e.md) pcre2_match_data_free(e.md);
    return e.oom ? -1 : e.count;
}
