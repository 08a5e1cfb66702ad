/* tokenizer_hf.c - loads a Hugging Face tokenizer.json (BPE models) into a
 * tokenizer_t, and encodes/decodes with it.
 *
 * Mirrors the `tokenizers` library's pipeline for the two BPE families in
 * use by Llama-type models:
 *   byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM): pre-tokenizer ByteLevel
 *     (optionally with the GPT-2 regex) and/or Split(Regex, Isolated) and
 *     Digits; every byte is mapped to GPT-2's printable byte alphabet before
 *     BPE, and mapped back when decoding;
 *   SentencePiece-style BPE (Llama-2, TinyLlama, Mistral): normalizer
 *     Prepend(U+2581) + Replace(' ', U+2581) or pre-tokenizer Metaspace,
 *     byte_fallback to "<0xXX>" pieces; decoding turns U+2581 back into a
 *     space, byte pieces into bytes, and drops the leading space after BOS.
 * Steps of tokenizer_encode: (1) added tokens are split out of the raw text
 * (at each position the longest one that starts there; lstrip/rstrip absorb
 * the whitespace beside it); (2) each other segment is normalized (NFC by
 * ICU, Prepend, Replace) and pre-tokenized; (3) each piece is one token if ignore_merges and it is in
 * the vocabulary, otherwise one symbol per character (unknown characters:
 * byte fallback, else unk) and then the adjacent pair with the lowest merge
 * rank is merged (leftmost on ties) until no pair is a merge; (4) the
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
 * types other than BPE (Unigram, WordPiece, WordLevel), BPE dropout,
 * continuing_subword_prefix / end_of_word_suffix, normalizers other than
 * NFC (ICU; Qwen2) / Prepend / Replace(String) / Sequence (NFKC, NFD,
 * Lowercase, ...),
 * pre-tokenizers other than ByteLevel / Split(Isolated) / Metaspace / Digits
 * / Sequence, post-processors other than TemplateProcessing / ByteLevel /
 * Sequence, added tokens with single_word. Added tokens marked normalized are
 * matched on the raw text like the others (the same thing for the files in
 * use, whose normalizers do not touch their contents); lstrip/rstrip absorb
 * ASCII whitespace only (`tokenizers` also takes Unicode spaces). The decoder field is
 * not interpreted: decoding follows the family.
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
enum { NORM_PREPEND, NORM_REPLACE, NORM_NFC };
enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };

/* The GPT-2 pre-tokenizer regex (ByteLevel with use_regex). */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    int kind;
    char *a, *b; /* PREPEND: a; REPLACE: a -> b */
    size_t alen, blen;
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
    }
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
    norm_op_t op = {0};
    if (strcmp(ty, "NFC") == 0) {
#ifdef BILD_NO_ICU
        FAIL("tokenizer %s: %s: NFC normalization needs ICU, and this bild was built without it (make ICU=1)",
             c->path, field);
#else
        UErrorCode st = U_ZERO_ERROR;
        unorm2_getNFCInstance(&st);
        if (U_FAILURE(st)) FAIL("tokenizer %s: %s: NFC: ICU has no NFC data (%s)", c->path, field, u_errorName(st));
#endif
        op.kind = NORM_NFC;
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
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(n, "content");
        if (!cJSON_IsString(s) || !s->valuestring[0] || !cJSON_IsString(content))
            FAIL("tokenizer %s: %s: only Replace with a non-empty String pattern and a content string is "
                 "supported", c->path, field);
        op.kind = NORM_REPLACE;
        op.a = strdup(s->valuestring);
        op.alen = strlen(s->valuestring);
        op.b = strdup(content->valuestring);
        op.blen = strlen(content->valuestring);
    } else {
        FAIL("tokenizer %s: %s: normalizer type \"%s\" is not supported (NFC, Prepend, Replace, Sequence)",
             c->path, field, ty);
    }
    norm_op_t *nn = realloc(h->norm, sizeof *nn * (size_t)(h->n_norm + 1));
    if (!nn || !op.a || (op.kind == NORM_REPLACE && !op.b)) {
        free(op.a);
        free(op.b);
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
             "Digits, Sequence)", c->path, field, ty);
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

/* Fills t and t->hf from the parsed document. */
static int build(const ctx_t *c, tokenizer_t *t, const cJSON *root) {
    struct tok_hf *h = t->hf;
    if (!cJSON_IsObject(root)) FAIL("tokenizer %s: the document is not a JSON object", c->path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) FAIL("tokenizer %s: no \"model\" object", c->path);
    const char *mty = type_of(model);
    if (!mty && cJSON_GetObjectItemCaseSensitive(model, "merges")) mty = "BPE";
    if (!mty || strcmp(mty, "BPE") != 0)
        FAIL("tokenizer %s: model.type \"%s\" is not supported (only BPE)", c->path, mty ? mty : "?");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        FAIL("tokenizer %s: model.dropout %g is not supported (encoding would be random)", c->path,
             dropout->valuedouble);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, affixes[k]);
        if (cJSON_IsString(v) && v->valuestring[0])
            FAIL("tokenizer %s: model.%s \"%s\" is not supported", c->path, affixes[k], v->valuestring);
    }
    h->byte_fallback = get_bool(model, "byte_fallback", 0);
    h->ignore_merges = get_bool(model, "ignore_merges", 0);
    h->fuse_unk = get_bool(model, "fuse_unk", 0);

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) FAIL("tokenizer %s: model.vocab is not an object", c->path);
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        FAIL("tokenizer %s: added_tokens is not an array", c->path);

    /* Vocabulary size: the largest id + 1 over model.vocab and added_tokens. */
    int n_vocab = 0, max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int id = get_id(e);
        if (id < 0)
            FAIL("tokenizer %s: model.vocab[\"%s\"] is not an id in [0, %d)", c->path, e->string, HF_MAX_ID);
        if (id > max_id) max_id = id;
        n_vocab++;
    }
    if (n_vocab == 0) FAIL("tokenizer %s: model.vocab is empty", c->path);
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
    cJSON_ArrayForEach(e, vocab) {
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
    cJSON_ArrayForEach(e, vocab) {
        int id = get_id(e);
        size_t n = (size_t)t->lens[id];
        if (vocab_lookup(t, t->text + t->offsets[id], n) >= 0) continue;
        uint32_t i = hash_bytes(t->text + t->offsets[id], n) & h->vocab_mask;
        while (h->vocab_tab[i] >= 0) i = (i + 1) & h->vocab_mask;
        h->vocab_tab[i] = id;
    }

    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    h->unk_id = -1;
    if (cJSON_IsString(unk)) {
        h->unk_id = vocab_lookup(t, unk->valuestring, strlen(unk->valuestring));
        if (h->unk_id < 0)
            FAIL("tokenizer %s: model.unk_token \"%s\" is not in model.vocab", c->path, unk->valuestring);
    }

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

    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (add_norm(c, h, norm, "normalizer") != 0) return -1;
    if (add_pre(c, h, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pre_tokenizer") != 0) return -1;
    if (add_post(c, h, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), V) != 0) return -1;

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
     * space of the text is dropped; the text starts after BOS. */
    if (h->family == FAM_SP && prev >= 0 && prev == t->bos && n > 0 && p[0] == ' ') {
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

/* Unicode NFC of s[0..*n) (ICU). Returns s itself when it is already NFC
 * (always for ASCII) or not valid UTF-8 (which `tokenizers` never sees: it
 * takes Rust strings; such text is left as it is), else a buffer owned by
 * e with the new length in *n. NULL when out of memory. */
static const char *nfc(enc_t *e, const char *s, size_t *n) {
#ifdef BILD_NO_ICU
    return s; /* unreachable: such tokenizers are refused at load */
#else
    size_t i = 0;
    while (i < *n && (unsigned char)s[i] < 0x80) i++;
    if (i == *n) return s;
    UErrorCode st = U_ZERO_ERROR;
    const UNormalizer2 *nf = unorm2_getNFCInstance(&st);
    int32_t ulen = 0;
    u_strFromUTF8(NULL, 0, &ulen, s, (int32_t)*n, &st);
    if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st)) return s; /* invalid UTF-8 */
    UChar *u = (UChar *)own(e, sizeof(UChar) * (size_t)(ulen + 1));
    if (!u) return NULL;
    st = U_ZERO_ERROR;
    u_strFromUTF8(u, ulen + 1, NULL, s, (int32_t)*n, &st);
    if (U_FAILURE(st) || unorm2_isNormalized(nf, u, ulen, &st) || U_FAILURE(st)) return s;
    /* NFC of UTF-16 text is at most 3 times as long (Unicode's stated bound). */
    int32_t cap = 3 * ulen + 1;
    UChar *v = (UChar *)own(e, sizeof(UChar) * (size_t)cap);
    if (!v) return NULL;
    int32_t vlen = unorm2_normalize(nf, u, ulen, v, cap, &st);
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

/* Normalizes, pre-tokenizes and encodes one segment between added tokens. */
static void encode_segment(const tokenizer_t *t, enc_t *e, const char *s, size_t n, int first) {
    const struct tok_hf *h = t->hf;
    if (n == 0) return;
    for (int k = 0; k < h->n_norm && !e->oom; k++) {
        const norm_op_t *op = &h->norm[k];
        if (op->kind == NORM_NFC) {
            s = nfc(e, s, &n);
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
    for (int i = 0; i < e->na && !e->oom; i++) bpe_piece(t, e, e->a[i].p, e->a[i].n);
}

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static int tok_hf_encode(const tokenizer_t *t, const char *text, int add_bos, int *out, int cap) {
    const struct tok_hf *h = t->hf;
    enc_t e = {.out = out, .cap = cap};
    if (add_bos)
        for (int i = 0; i < h->n_prefix; i++) emit(&e, h->prefix[i]);
    size_t tl = text ? strlen(text) : 0;
    if (tl > INT_MAX / 8) return -1;
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
    if (e.md) pcre2_match_data_free(e.md);
    return e.oom ? -1 : e.count;
}
