/* bleu.c - corpus BLEU, a transcription of sacreBLEU 2.x's default BLEU
 * (see bleu.h for the parts and eval/README.md for what was checked).
 *
 * The 13a tokenizer is sacreBLEU's Tokenizer13a: plain replacements of
 * "<skipped>" -> "", "-\n" -> "", "\n" -> " ", "&quot;" -> '"', "&amp;" ->
 * '&', "&lt;" -> '<', "&gt;" -> '>' (each over the whole string, in that
 * order, as str.replace does), a space either side, then TokenizerRegexp's
 * four substitutions, each a left-to-right pass of non-overlapping matches
 * as re.sub makes them:
 *   1. ([\{-\~\[-\` -\&\(-\+\:-\@\/])  ->  " \1 "   (ASCII punctuation but ' , - . and digits)
 *   2. ([^0-9])([\.,])                  ->  "\1 \2 " (period/comma not after a digit)
 *   3. ([\.,])([^0-9])                  ->  " \1 \2" (period/comma not before a digit)
 *   4. ([0-9])(-)                       ->  "\1 \2 " (dash after a digit)
 * and finally ' '.join(line.strip().split()). Every pattern character is
 * ASCII, so the passes run on bytes: a UTF-8 character's bytes other than
 * the last are never followed by an ASCII byte and never match, which
 * gives the same result as Python's matching on characters.
 *
 * Left out on purpose: the other sacreBLEU tokenizers (zh, intl, char,
 * ja-mecab, spm), chrF/TER, bootstrap resampling, and reading hypotheses
 * with tabs as several systems (bild bleu reads one system).
 */
#include "eval/bleu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BILD_NO_ICU
#include <unicode/ustring.h>
#endif

/* ---- a growing byte buffer ---- */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} buf_t;

static void buf_reserve(buf_t *b, size_t extra) {
    if (b->oom || b->n + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            b->oom = 1;
            return;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p, b->cap = cap;
}

static void buf_put(buf_t *b, const char *s, size_t n) {
    buf_reserve(b, n);
    if (b->oom) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void buf_putc(buf_t *b, char c) { buf_put(b, &c, 1); }

/* ---- whitespace as Python sees it ---- */

size_t eval_space_len(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0) return 0;
    unsigned char c = u[0];
    /* \t \n \v \f \r, the four information separators \x1c..\x1f, space */
    if (c == 0x20 || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
    if (c == 0xc2 && n >= 2 && (u[1] == 0x85 || u[1] == 0xa0)) return 2;       /* U+0085 NEL, U+00A0 NBSP */
    if (n < 3) return 0;
    if (c == 0xe1 && u[1] == 0x9a && u[2] == 0x80) return 3;                   /* U+1680 */
    if (c == 0xe2 && u[1] == 0x80 && ((u[2] >= 0x80 && u[2] <= 0x8a) ||        /* U+2000..U+200A */
                                      u[2] == 0xa8 || u[2] == 0xa9 ||          /* U+2028, U+2029 */
                                      u[2] == 0xaf))                           /* U+202F */
        return 3;
    if (c == 0xe2 && u[1] == 0x81 && u[2] == 0x9f) return 3;                   /* U+205F */
    if (c == 0xe3 && u[1] == 0x80 && u[2] == 0x80) return 3;                   /* U+3000 */
    return 0;
}

/* The length of s[0..n) without trailing whitespace (str.rstrip()). */
static size_t rstrip_len(const char *s, size_t n) {
    size_t end = 0;
    for (size_t i = 0; i < n;) {
        size_t k = eval_space_len(s + i, n - i);
        if (k) i += k;
        else end = ++i; /* a continuation byte is never whitespace, so bytewise is fine */
    }
    return end;
}

/* ---- lowercasing (Python's str.lower(): full Unicode case mapping) ---- */

static int lower_utf8(const char *s, size_t n, buf_t *out, char *err, size_t errlen) {
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0x80) i++;
    if (i == n) { /* ASCII: the common case, no ICU */
        buf_reserve(out, n);
        if (out->oom) return -1;
        for (i = 0; i < n; i++) out->p[out->n++] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
        out->p[out->n] = 0;
        return 0;
    }
#ifdef BILD_NO_ICU
    snprintf(err, errlen, "lowercasing non-ASCII text needs ICU, and this bild was built without it (make ICU=1)");
    return -1;
#else
    if (n > INT32_MAX / 4) {
        snprintf(err, errlen, "segment too long to lowercase (%zu bytes)", n);
        return -1;
    }
    UErrorCode st = U_ZERO_ERROR;
    int32_t ulen = 0;
    u_strFromUTF8(NULL, 0, &ulen, s, (int32_t)n, &st);
    if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st)) {
        snprintf(err, errlen, "cannot lowercase: not valid UTF-8");
        return -1;
    }
    /* full lowercase mapping grows a string at most threefold (SpecialCasing) */
    int32_t cap = 3 * ulen + 1;
    UChar *u = malloc(sizeof(UChar) * (size_t)(ulen + 1)), *v = malloc(sizeof(UChar) * (size_t)cap);
    int rc = -1;
    if (!u || !v) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    st = U_ZERO_ERROR;
    u_strFromUTF8(u, ulen + 1, NULL, s, (int32_t)n, &st);
    int32_t vlen = U_FAILURE(st) ? 0 : u_strToLower(v, cap, u, ulen, "", &st);
    int32_t blen = 0;
    if (!U_FAILURE(st)) {
        u_strToUTF8(NULL, 0, &blen, v, vlen, &st);
        if (st == U_BUFFER_OVERFLOW_ERROR) st = U_ZERO_ERROR;
    }
    if (U_FAILURE(st)) {
        snprintf(err, errlen, "cannot lowercase: %s", u_errorName(st));
        goto done;
    }
    buf_reserve(out, (size_t)blen);
    if (out->oom) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    u_strToUTF8(out->p + out->n, blen + 1, NULL, v, vlen, &st);
    out->n += (size_t)blen;
    out->p[out->n] = 0;
    rc = 0;
done:
    free(u);
    free(v);
    return rc;
#endif
}

/* ---- the 13a tokenizer ---- */

/* dst = s with every non-overlapping `from` replaced by `to`, left to right */
static void replace_all(buf_t *dst, const char *s, size_t n, const char *from, const char *to) {
    size_t fl = strlen(from), tl = strlen(to);
    dst->n = 0;
    buf_reserve(dst, n);
    for (size_t i = 0; i < n;) {
        if (i + fl <= n && !memcmp(s + i, from, fl)) {
            buf_put(dst, to, tl);
            i += fl;
        } else buf_putc(dst, s[i++]);
    }
}

/* Pattern 1's class: { | } ~  [ \ ] ^ _ `  space ! " # $ % &  ( ) * +  : ; < = > ? @  / */
static int is_13a_punct(unsigned char c) {
    return (c >= 0x7b && c <= 0x7e) || (c >= 0x5b && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
           (c >= 0x28 && c <= 0x2b) || (c >= 0x3a && c <= 0x40) || c == 0x2f;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_pc(char c) { return c == '.' || c == ','; }

static void tokenize_13a(const char *s, size_t n, buf_t *out) {
    static const char *const REPL[][2] = {
        {"<skipped>", ""}, {"-\n", ""}, {"\n", " "}, {"&quot;", "\""}, {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"},
    };
    buf_t a = {0}, b = {0};
    buf_put(&a, s, n);
    for (size_t r = 0; r < sizeof REPL / sizeof *REPL; r++) {
        replace_all(&b, a.p ? a.p : "", a.n, REPL[r][0], REPL[r][1]);
        buf_t t = a;
        a = b, b = t;
    }
    /* " {} ".format(line), then pattern 1 */
    b.n = 0;
    buf_putc(&b, ' ');
    for (size_t i = 0; i < a.n; i++) {
        if (is_13a_punct((unsigned char)a.p[i])) {
            char t[3] = {' ', a.p[i], ' '};
            buf_put(&b, t, 3);
        } else buf_putc(&b, a.p[i]);
    }
    buf_putc(&b, ' ');
    /* pattern 2: b -> a */
    a.n = 0;
    for (size_t i = 0; i < b.n;) {
        if (i + 1 < b.n && !is_digit(b.p[i]) && is_pc(b.p[i + 1])) {
            char t[4] = {b.p[i], ' ', b.p[i + 1], ' '};
            buf_put(&a, t, 4);
            i += 2;
        } else buf_putc(&a, b.p[i++]);
    }
    /* pattern 3: a -> b */
    b.n = 0;
    for (size_t i = 0; i < a.n;) {
        if (i + 1 < a.n && is_pc(a.p[i]) && !is_digit(a.p[i + 1])) {
            char t[4] = {' ', a.p[i], ' ', a.p[i + 1]};
            buf_put(&b, t, 4);
            i += 2;
        } else buf_putc(&b, a.p[i++]);
    }
    /* pattern 4: b -> a */
    a.n = 0;
    for (size_t i = 0; i < b.n;) {
        if (i + 1 < b.n && is_digit(b.p[i]) && b.p[i + 1] == '-') {
            char t[4] = {b.p[i], ' ', '-', ' '};
            buf_put(&a, t, 4);
            i += 2;
        } else buf_putc(&a, b.p[i++]);
    }
    /* ' '.join(line.strip().split()) */
    out->n = 0;
    for (size_t i = 0; i < a.n;) {
        size_t k = eval_space_len(a.p + i, a.n - i);
        if (k) {
            i += k;
            continue;
        }
        if (out->n) buf_putc(out, ' ');
        size_t j = i;
        while (j < a.n && !eval_space_len(a.p + j, a.n - j)) j++;
        buf_put(out, a.p + i, j - i);
        i = j;
    }
    buf_reserve(out, 0);
    if (a.oom || b.oom) out->oom = 1;
    free(a.p);
    free(b.p);
}

char *bleu_preprocess(const bleu_opts_t *o, const char *s, size_t n, size_t *out_len, char *err, size_t errlen) {
    buf_t low = {0}, out = {0};
    if (o->lowercase) {
        if (lower_utf8(s, n, &low, err, errlen)) {
            if (low.oom) snprintf(err, errlen, "out of memory");
            free(low.p);
            return NULL;
        }
        s = low.p ? low.p : "", n = low.n;
    }
    n = rstrip_len(s, n);
    if (o->tokenize == BLEU_TOK_13A) tokenize_13a(s, n, &out);
    else buf_put(&out, s, n);
    buf_reserve(&out, 0);
    if (!out.oom) out.p[out.n] = 0;
    free(low.p);
    if (out.oom) {
        free(out.p);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (out_len) *out_len = out.n;
    return out.p;
}

/* ---- n-gram statistics of one segment ---- */

typedef struct {
    const char *p;
    size_t len;
    uint64_t h; /* FNV-1a of the token's bytes */
} tok_t;

/* Splits s[0..n) on whitespace (str.split()). NULL only when out of memory;
 * *nt = 0 for no tokens (then a non-NULL 1-element array). */
static tok_t *split_tokens(const char *s, size_t n, size_t *nt) {
    size_t cap = 16, k = 0;
    tok_t *t = malloc(sizeof *t * cap);
    for (size_t i = 0; t && i < n;) {
        size_t w = eval_space_len(s + i, n - i);
        if (w) {
            i += w;
            continue;
        }
        size_t j = i;
        uint64_t h = 1469598103934665603ull;
        while (j < n && !eval_space_len(s + j, n - j)) h = (h ^ (unsigned char)s[j++]) * 1099511628211ull;
        if (k == cap) {
            tok_t *nt2 = cap > SIZE_MAX / 2 / sizeof *t ? NULL : realloc(t, sizeof *t * cap * 2);
            if (!nt2) {
                free(t);
                return NULL;
            }
            t = nt2, cap *= 2;
        }
        t[k++] = (tok_t){s + i, j - i, h};
        i = j;
    }
    *nt = k;
    return t;
}

static uint64_t ngram_hash(const tok_t *t, int order) {
    uint64_t h = 0x9e3779b97f4a7c15ull * (uint64_t)order;
    for (int i = 0; i < order; i++) {
        h ^= t[i].h + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
        h *= 0xff51afd7ed558ccdull;
    }
    return h ^ (h >> 33);
}

static int ngram_eq(const tok_t *a, const tok_t *b, int order) {
    for (int i = 0; i < order; i++)
        if (a[i].len != b[i].len || a[i].h != b[i].h || memcmp(a[i].p, b[i].p, a[i].len)) return 0;
    return 1;
}

typedef struct {
    size_t start;              /* first token in the hypothesis */
    int order;
    uint64_t h;
    int64_t hyp_count, ref_max, cur;
} ngram_t;

typedef struct {
    ngram_t *e;
    size_t n;
    size_t *slot; /* index + 1 into e; 0 empty */
    size_t mask;
    const tok_t *hyp;
} ngram_table_t;

/* The entry of the n-gram t[0..order), or NULL. With `add`, inserts it
 * (from the hypothesis, at token `start`). */
static ngram_t *ngram_find(ngram_table_t *tb, const tok_t *t, int order, int add, size_t start) {
    uint64_t h = ngram_hash(t, order);
    for (size_t i = (size_t)h & tb->mask;; i = (i + 1) & tb->mask) {
        size_t s = tb->slot[i];
        if (!s) {
            if (!add) return NULL;
            tb->e[tb->n] = (ngram_t){start, order, h, 0, 0, 0};
            tb->slot[i] = ++tb->n;
            return &tb->e[tb->n - 1];
        }
        ngram_t *g = &tb->e[s - 1];
        if (g->h == h && g->order == order && ngram_eq(tb->hyp + g->start, t, order)) return g;
    }
}

int bleu_add_segment(const bleu_opts_t *o, const char *hyp, const char *const *refs, int n_refs, bleu_stats_t *st,
                     char *err, size_t errlen) {
    int rc = -1, any_ref = 0;
    char *hs = NULL, *rs = NULL;
    tok_t *ht = NULL, *rt = NULL;
    size_t nh = 0, nr = 0, hl;
    ngram_table_t tb = {0};
    ngram_t **touched = NULL;
    int64_t closest = -1;
    bleu_stats_t add = {0};

    if (!(hs = bleu_preprocess(o, hyp, strlen(hyp), &hl, err, errlen))) goto done;
    if (!(ht = split_tokens(hs, hl, &nh))) goto oom;
    /* the table holds the hypothesis n-grams only: a reference n-gram that
     * the hypothesis lacks can never count */
    size_t max_e = 0;
    for (int k = 1; k <= BLEU_MAX_ORDER; k++) max_e += nh >= (size_t)k ? nh - (size_t)k + 1 : 0;
    size_t cap = 16;
    while (cap < 2 * max_e + 2) cap *= 2;
    tb.e = malloc(sizeof *tb.e * (max_e ? max_e : 1));
    tb.slot = calloc(cap, sizeof *tb.slot);
    touched = malloc(sizeof *touched * (max_e ? max_e : 1));
    if (!tb.e || !tb.slot || !touched) goto oom;
    tb.mask = cap - 1, tb.hyp = ht;
    for (int k = 1; k <= BLEU_MAX_ORDER; k++)
        for (size_t i = 0; i + (size_t)k <= nh; i++) ngram_find(&tb, ht + i, k, 1, i)->hyp_count++;

    for (int r = 0; r < n_refs; r++) {
        if (!refs[r][0]) continue; /* sacreBLEU drops "" references (a variable number per segment) */
        any_ref = 1;
        size_t rl;
        free(rs), free(rt);
        rs = NULL, rt = NULL;
        if (!(rs = bleu_preprocess(o, refs[r], strlen(refs[r]), &rl, err, errlen))) goto done;
        if (!(rt = split_tokens(rs, rl, &nr))) goto oom;
        /* closest reference length; the shorter one on a tie */
        int64_t len = (int64_t)nr, d = len - (int64_t)nh, bd = closest - (int64_t)nh;
        d = d < 0 ? -d : d, bd = bd < 0 ? -bd : bd;
        if (closest < 0 || d < bd || (d == bd && len < closest)) closest = len;
        size_t n_t = 0;
        for (int k = 1; k <= BLEU_MAX_ORDER; k++)
            for (size_t i = 0; i + (size_t)k <= nr; i++) {
                ngram_t *g = ngram_find(&tb, rt + i, k, 0, 0);
                if (g && g->cur++ == 0) touched[n_t++] = g;
            }
        /* several references: an n-gram's clip count is its largest count in any one */
        for (size_t i = 0; i < n_t; i++) {
            if (touched[i]->cur > touched[i]->ref_max) touched[i]->ref_max = touched[i]->cur;
            touched[i]->cur = 0;
        }
    }
    if (!any_ref) {
        snprintf(err, errlen, "empty reference (every reference of this segment is \"\")");
        goto done;
    }
    for (size_t i = 0; i < tb.n; i++) {
        const ngram_t *g = &tb.e[i];
        add.total[g->order - 1] += g->hyp_count;
        add.correct[g->order - 1] += g->hyp_count < g->ref_max ? g->hyp_count : g->ref_max;
    }
    st->hyp_len += (int64_t)nh;
    st->ref_len += closest;
    for (int k = 0; k < BLEU_MAX_ORDER; k++) st->correct[k] += add.correct[k], st->total[k] += add.total[k];
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "out of memory");
done:
    free(hs), free(rs), free(ht), free(rt), free(tb.e), free(tb.slot), free(touched);
    return rc;
}

/* ---- the score ---- */

/* sacreBLEU's my_log: log, with log(0) floored to -9999999999 */
static double floored_log(double x) { return x == 0.0 ? -9999999999.0 : log(x); }

void bleu_compute(const bleu_stats_t *st, const bleu_opts_t *o, bleu_score_t *out) {
    memset(out, 0, sizeof *out);
    out->stats = *st;
    double k = o->smooth_value_set ? o->smooth_value : o->smooth == BLEU_SMOOTH_FLOOR ? 0.1 : 1.0;
    int64_t sys = st->hyp_len, ref = st->ref_len;
    out->ratio = ref ? (double)sys / (double)ref : 0.0;
    if (sys < ref) out->bp = sys > 0 ? exp(1.0 - (double)ref / (double)sys) : 0.0;
    else out->bp = 1.0;
    int any = 0;
    for (int n = 0; n < BLEU_MAX_ORDER; n++) any |= st->correct[n] != 0;
    if (!any) return; /* score 0 and precisions 0, sacreBLEU's early stop */
    double smooth_mteval = 1.0;
    int eff_order = BLEU_MAX_ORDER;
    for (int n = 1; n <= BLEU_MAX_ORDER; n++) {
        double correct = (double)st->correct[n - 1], total = (double)st->total[n - 1];
        if (o->smooth == BLEU_SMOOTH_ADD_K && n > 1) correct += k, total += k;
        if (total == 0.0) break;
        if (o->effective_order) eff_order = n;
        if (correct == 0.0) {
            if (o->smooth == BLEU_SMOOTH_EXP) {
                smooth_mteval *= 2.0;
                out->precisions[n - 1] = 100.0 / (smooth_mteval * total);
            } else if (o->smooth == BLEU_SMOOTH_FLOOR) out->precisions[n - 1] = 100.0 * k / total;
        } else out->precisions[n - 1] = 100.0 * correct / total;
    }
    double sum = 0.0; /* summed in order, as Python's sum() does */
    for (int n = 0; n < eff_order; n++) sum += floored_log(out->precisions[n]);
    out->score = out->bp * exp(sum / eff_order);
}

int bleu_corpus(const bleu_opts_t *o, const char *const *hyps, size_t n, const char *const *const *refs, int n_refs,
                bleu_score_t *out, char *err, size_t errlen) {
    bleu_stats_t st = {0};
    const char **seg = malloc(sizeof *seg * (size_t)(n_refs > 0 ? n_refs : 1));
    if (!seg) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char e[512];
    for (size_t i = 0; i < n; i++) {
        for (int r = 0; r < n_refs; r++) seg[r] = refs[r][i];
        if (bleu_add_segment(o, hyps[i], seg, n_refs, &st, e, sizeof e)) {
            snprintf(err, errlen, "segment %zu: %s", i + 1, e);
            free(seg);
            return -1;
        }
    }
    free(seg);
    bleu_compute(&st, o, out);
    return 0;
}

int bleu_format(const bleu_score_t *s, char *buf, size_t n) {
    return snprintf(buf, n, "BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld ref_len = %lld)",
                    s->score, s->precisions[0], s->precisions[1], s->precisions[2], s->precisions[3], s->bp,
                    s->ratio, (long long)s->stats.hyp_len, (long long)s->stats.ref_len);
}

int bleu_signature(const bleu_opts_t *o, int n_refs, char *buf, size_t n) {
    char smooth[64];
    if (o->smooth == BLEU_SMOOTH_FLOOR || o->smooth == BLEU_SMOOTH_ADD_K)
        snprintf(smooth, sizeof smooth, "%s[%.2f]", bleu_smooth_name(o->smooth),
                 o->smooth_value_set ? o->smooth_value : o->smooth == BLEU_SMOOTH_FLOOR ? 0.1 : 1.0);
    else snprintf(smooth, sizeof smooth, "%s", bleu_smooth_name(o->smooth));
    return snprintf(buf, n, "nrefs:%d|case:%s|eff:%s|tok:%s|smooth:%s", n_refs, o->lowercase ? "lc" : "mixed",
                    o->effective_order ? "yes" : "no", bleu_tokenize_name(o->tokenize), smooth);
}

const char *bleu_tokenize_name(bleu_tokenize_t t) { return t == BLEU_TOK_13A ? "13a" : "none"; }

const char *bleu_smooth_name(bleu_smooth_t s) {
    switch (s) {
    case BLEU_SMOOTH_EXP: return "exp";
    case BLEU_SMOOTH_NONE: return "none";
    case BLEU_SMOOTH_FLOOR: return "floor";
    case BLEU_SMOOTH_ADD_K: return "add-k";
    }
    return "?";
}

int bleu_parse_tokenize(const char *name, bleu_tokenize_t *out) {
    if (!strcmp(name, "13a")) *out = BLEU_TOK_13A;
    else if (!strcmp(name, "none")) *out = BLEU_TOK_NONE;
    else return -1;
    return 0;
}

int bleu_parse_smooth(const char *name, bleu_smooth_t *out) {
    if (!strcmp(name, "exp")) *out = BLEU_SMOOTH_EXP;
    else if (!strcmp(name, "none")) *out = BLEU_SMOOTH_NONE;
    else if (!strcmp(name, "floor")) *out = BLEU_SMOOTH_FLOOR;
    else if (!strcmp(name, "add-k")) *out = BLEU_SMOOTH_ADD_K;
    else return -1;
    return 0;
}
