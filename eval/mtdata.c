/* mtdata.c - segments of WMT .sgm and IWSLT .xml test sets, and plain-text
 * line files, read the way sacreBLEU 2.x reads them (mtdata.h says what was
 * found in sacreBLEU's dataset loader and what is refused on top of it).
 */
#include "eval/mtdata.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval/bleu.h"

void mtdata_lines_free(mtdata_lines_t *l) {
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    l->s = NULL, l->n = 0;
}

/* Appends a copy of s[0..n) (or takes `own` when non-NULL). -1 when out of memory. */
static int lines_push(mtdata_lines_t *l, size_t *cap, const char *s, size_t n, char *own) {
    if (l->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        char **ns = nc > SIZE_MAX / sizeof *ns ? NULL : realloc(l->s, sizeof *ns * nc);
        if (!ns) return free(own), -1;
        l->s = ns, *cap = nc;
    }
    char *c = own;
    if (!c) {
        if (!(c = malloc(n + 1))) return -1;
        memcpy(c, s, n);
        c[n] = 0;
    }
    l->s[l->n++] = c;
    return 0;
}

/* The length of a valid UTF-8 sequence at s[0..n) (strict, as Python's
 * codec: no overlongs, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t k = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!k || n < k) return 0;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (c == 0xe0 && s[1] < 0xa0) return 0; /* overlong */
    if (c == 0xed && s[1] > 0x9f) return 0; /* surrogate */
    if (c == 0xf0 && s[1] < 0x90) return 0; /* overlong */
    if (c == 0xf4 && s[1] > 0x8f) return 0; /* above U+10FFFF */
    return k;
}

char *mtdata_read_stream(FILE *f, const char *name, size_t *len, char *err, size_t errlen) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += r;
        if (n + 1 == cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) free(buf);
            buf = nb, cap *= 2;
        }
    }
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory reading it", name);
        return NULL;
    }
    if (ferror(f)) {
        free(buf);
        snprintf(err, errlen, "%s: read error (%s; is it a directory?)", name, strerror(errno));
        return NULL;
    }
    buf[n] = 0;
    size_t line = 1;
    for (size_t i = 0; i < n;) {
        const unsigned char *u = (const unsigned char *)buf + i;
        if (!u[0]) {
            free(buf);
            snprintf(err, errlen, "%s:%zu: contains a NUL byte; expected UTF-8 text", name, line);
            return NULL;
        }
        size_t k = utf8_len(u, n - i);
        if (!k) {
            snprintf(err, errlen, "%s:%zu: not valid UTF-8 (byte 0x%02x at offset %zu)", name, line, u[0], i);
            free(buf);
            return NULL;
        }
        if (u[0] == '\n') line++;
        i += k;
    }
    if (len) *len = n;
    return buf;
}

int mtdata_split_lines(const char *text, size_t len, mtdata_lines_t *out) {
    size_t cap = 0;
    *out = (mtdata_lines_t){0};
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len, keep = 0;
        /* str.rstrip(): keep up to the last non-whitespace character */
        for (size_t j = i; j < end;) {
            size_t w = eval_space_len(text + j, end - j);
            if (w) j += w;
            else keep = ++j - i;
        }
        if (lines_push(out, &cap, text + i, keep, NULL)) return mtdata_lines_free(out), -1;
        i = end + 1;
    }
    return 0;
}

/* Decodes the XML entities of s[0..n) into *o (allocated): the five named
 * ones and &#N; / &#xN;. Anything else that starts with '&' stays as it is
 * (WMT files have bare "&"). -1 with a message for a character reference
 * that is not a character (0, a surrogate, above U+10FFFF). */
static int unescape(const char *s, size_t n, char **o, size_t *on, char *what, size_t wlen) {
    static const char *const NAMED[][2] = {{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""},
                                           {"&apos;", "'"}};
    char *d = malloc(n + 1); /* never longer: &#N; is at least 4 bytes, its character at most 4 */
    size_t k = 0;
    if (!d) return snprintf(what, wlen, "out of memory"), -1;
    for (size_t i = 0; i < n;) {
        if (s[i] != '&') {
            d[k++] = s[i++];
            continue;
        }
        size_t e, m = 0;
        for (e = 0; e < sizeof NAMED / sizeof *NAMED; e++)
            if (i + (m = strlen(NAMED[e][0])) <= n && !memcmp(s + i, NAMED[e][0], m)) break;
        if (e < sizeof NAMED / sizeof *NAMED) {
            d[k++] = NAMED[e][1][0];
            i += m;
            continue;
        }
        if (i + 1 < n && s[i + 1] == '#') {
            int hex = i + 2 < n && (s[i + 2] == 'x' || s[i + 2] == 'X');
            size_t j = i + 2 + (size_t)hex, j0 = j;
            uint32_t cp = 0;
            int big = 0;
            for (; j < n; j++) {
                char c = s[j];
                int v = c >= '0' && c <= '9' ? c - '0'
                        : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                      : -1;
                if (v < 0) break;
                if (cp > 0x10ffff) big = 1;
                else cp = cp * (hex ? 16 : 10) + (uint32_t)v;
            }
            if (j > j0 && j < n && s[j] == ';') {
                if (big || cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
                    free(d);
                    return snprintf(what, wlen, "character reference '%.*s' is not a Unicode character",
                                    (int)(j + 1 - i), s + i), -1;
                }
                if (cp < 0x80) d[k++] = (char)cp;
                else if (cp < 0x800) d[k++] = (char)(0xc0 | cp >> 6), d[k++] = (char)(0x80 | (cp & 0x3f));
                else if (cp < 0x10000)
                    d[k++] = (char)(0xe0 | cp >> 12), d[k++] = (char)(0x80 | ((cp >> 6) & 0x3f)),
                    d[k++] = (char)(0x80 | (cp & 0x3f));
                else
                    d[k++] = (char)(0xf0 | cp >> 18), d[k++] = (char)(0x80 | ((cp >> 12) & 0x3f)),
                    d[k++] = (char)(0x80 | ((cp >> 6) & 0x3f)), d[k++] = (char)(0x80 | (cp & 0x3f));
                i = j + 1;
                continue;
            }
        }
        d[k++] = s[i++];
    }
    d[k] = 0;
    *o = d, *on = k;
    return 0;
}

/* Dataset._clean: strip, and every run of whitespace to one space. Returns a copy. */
static char *clean(const char *s, size_t n) {
    char *d = malloc(n + 1);
    size_t k = 0;
    if (!d) return NULL;
    for (size_t i = 0; i < n;) {
        size_t w = eval_space_len(s + i, n - i);
        if (w) {
            while (i < n && (w = eval_space_len(s + i, n - i))) i += w;
            if (k && i < n) d[k++] = ' ';
            continue;
        }
        d[k++] = s[i++];
    }
    d[k] = 0;
    return d;
}

static const char *find(const char *s, size_t n, const char *pat) { return memmem(s, n, pat, strlen(pat)); }

int mtdata_extract(const char *name, const char *buf, size_t len, int flags, mtdata_lines_t *out, char *err,
                   size_t errlen) {
    size_t cap = 0, line = 0, doc_line = 0;
    int in_doc = 0;
    *out = (mtdata_lines_t){0};
#define BAD(...)                                                                                                      \
    do {                                                                                                              \
        int o_ = snprintf(err, errlen, "%s:%zu: ", name, line);                                                       \
        if (o_ >= 0 && (size_t)o_ < errlen) snprintf(err + o_, errlen - (size_t)o_, __VA_ARGS__);                     \
        mtdata_lines_free(out);                                                                                       \
        return -1;                                                                                                    \
    } while (0)
    for (size_t i = 0; i < len;) {
        const char *s = buf + i, *nl = memchr(s, '\n', len - i);
        size_t n = nl ? (size_t)(nl - s) : len - i;
        i += n + 1, line++;
        if (memchr(s, 0, n)) BAD("contains a NUL byte");
        if (n >= 4 && !memcmp(s, "<doc", 4) && (n == 4 || s[4] == ' ' || s[4] == '>')) {
            if (in_doc) BAD("<doc> inside the <doc> opened at line %zu", doc_line);
            in_doc = 1, doc_line = line;
            continue;
        }
        if (n >= 6 && !memcmp(s, "</doc>", 6)) {
            if (!in_doc) BAD("</doc> without an open <doc>");
            in_doc = 0;
            continue;
        }
        if (n < 5 || memcmp(s, "<seg ", 5)) {
            /* sacreBLEU reads only lines that begin with "<seg ": a segment elsewhere would be dropped silently */
            if (find(s, n, "<seg ") || find(s, n, "<seg>"))
                BAD("a <seg> that does not begin its line (sacreBLEU would skip it)");
            continue;
        }
        if (!in_doc) BAD("<seg> outside a <doc> element");
        const char *gt = memchr(s, '>', n), *close = NULL;
        /* the last "</seg>" after the tag's '>' (the regex's greedy (.*)) */
        for (const char *p = gt; p && (p = find(p, (size_t)(s + n - p), "</seg>")); p += 6) close = p;
        if (!gt || !close) BAD("<seg> without its </seg> on the same line");
        const char *body = gt + 1;
        size_t bn = (size_t)(close - body);
        if (find(body, bn, "</seg>") || find(body, bn, "<seg ") || find(body, bn, "<seg>"))
            BAD("more than one segment on the line");
        for (const char *p = close + 6; p < s + n;) {
            size_t w = eval_space_len(p, (size_t)(s + n - p));
            if (!w) BAD("text after </seg> (sacreBLEU would append it to the segment)");
            p += w;
        }
        char *txt = NULL, *un = NULL;
        size_t un_n = 0;
        if (flags & MTDATA_UNESCAPE) {
            char what[256];
            if (unescape(body, bn, &un, &un_n, what, sizeof what)) BAD("%s", what);
            txt = clean(un, un_n);
            free(un);
        } else txt = clean(body, bn);
        if (!txt || lines_push(out, &cap, NULL, 0, txt)) BAD("out of memory");
    }
    if (in_doc) {
        line = doc_line;
        BAD("<doc> not closed");
    }
    if (!out->n) {
        snprintf(err, errlen, "%s: no segments (no line begins with \"<seg \"); expected a WMT .sgm or IWSLT .xml file",
                 name);
        return -1;
    }
#undef BAD
    return 0;
}

int mtdata_extract_file(const char *path, int flags, mtdata_lines_t *out, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    *out = (mtdata_lines_t){0};
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    size_t len;
    char *buf = mtdata_read_stream(f, path, &len, err, errlen);
    fclose(f);
    if (!buf) return -1;
    int rc = mtdata_extract(path, buf, len, flags, out, err, errlen);
    free(buf);
    return rc;
}
