/* test_tokenizer.c - model/tokenizer.c against the real llama2.c vocabularies.
 *
 * - Loading: both shared tokenizers load; a wrong vocabulary size, a
 *   truncated copy, trailing bytes, a corrupt header and a missing file are
 *   refused with a message naming the file.
 * - Encoding: ids known from the SentencePiece Llama-2 tokenizer itself
 *   (independent of this code), a naive reference BPE written here in a
 *   different way (linear scan for the best pair, merging piece strings, a
 *   sorted table) on real text, round trips, byte fallback, the cap contract.
 * - The UTF-8 stream sanitizer: split characters, invalid input, flush.
 *
 * Needs models/ (make models; BILD_MODELS overrides) and tests/data; fails
 * without them.
 */
#include "model/tokenizer.h"
#include "tests/test.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define MAXTOK 65536

/* ---- helpers -------------------------------------------------------------- */

static char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    *size = n;
    return buf;
}

/* Writes bytes to a fresh temporary file; the path goes to path (>= 32). */
static int write_temp(char *path, const void *data, size_t n) {
    strcpy(path, "/tmp/bild_test_tok_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    close(fd);
    return 0;
}

/* Concatenates the decoding of ids[1..n) (ids[0] is BOS). Returns length. */
static size_t decode_all(const tokenizer_t *t, const int *ids, int n, char *out) {
    size_t w = 0;
    for (int i = 1; i < n; i++) {
        size_t len;
        const char *p = tokenizer_decode(t, ids[i - 1], ids[i], &len);
        memcpy(out + w, p, len);
        w += len;
    }
    out[w] = '\0';
    return w;
}

static int refuse(const char *path, int vocab, const char *must_contain) {
    char err[512] = "";
    tokenizer_t *t = tokenizer_load_llama2c(path, vocab, err, sizeof err);
    int ok = t == NULL && err[0] != '\0' && strstr(err, path) != NULL &&
             (!must_contain || strstr(err, must_contain) != NULL) && !strchr(err, '\n');
    if (!ok) fprintf(stderr, "  load(%s, %d) -> %p, err \"%s\"\n", path, vocab, (void *)t, err);
    else printf("  refused as expected: %s\n", err);
    tokenizer_destroy(&t);
    return ok;
}

/* Writes data to a temporary file and checks that loading it is refused. */
static int refuse_bytes(const void *data, size_t n, int vocab, const char *must_contain) {
    char path[64];
    if (write_temp(path, data, n) != 0) {
        fprintf(stderr, "  cannot write a temporary file in /tmp\n");
        return 0;
    }
    int ok = refuse(path, vocab, must_contain);
    unlink(path);
    return ok;
}

/* ---- naive reference BPE -------------------------------------------------- */

/* The specification in its most direct form: a list of ids, each step scans
 * every adjacent pair, concatenates their piece strings and looks the result
 * up in a sorted table; the best score wins, the leftmost on ties. */
typedef struct {
    const char *s;
    int id;
} ref_entry_t;

typedef struct {
    const tokenizer_t *t;
    ref_entry_t *table;
    int n;
} ref_bpe_t;

static int ref_cmp(const void *a, const void *b) {
    const ref_entry_t *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    return c ? c : x->id - y->id;
}

static int is_byte_piece(const char *s) {
    return strlen(s) == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>';
}

static void ref_init(ref_bpe_t *r, const tokenizer_t *t) {
    int v = tokenizer_vocab_size(t);
    r->t = t;
    r->table = malloc(sizeof(ref_entry_t) * (size_t)v);
    r->n = 0;
    for (int id = 3; id < v; id++) {
        const char *s = tokenizer_piece(t, id);
        if (s[0] == '\0' || is_byte_piece(s)) continue;
        r->table[r->n++] = (ref_entry_t){s, id};
    }
    qsort(r->table, (size_t)r->n, sizeof *r->table, ref_cmp);
}

static int ref_lookup(const ref_bpe_t *r, const char *s) {
    int lo = 0, hi = r->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (strcmp(r->table[mid].s, s) < 0) lo = mid + 1;
        else hi = mid;
    }
    /* The lowest id among equal strings comes first (ref_cmp breaks ties by id). */
    return lo < r->n && strcmp(r->table[lo].s, s) == 0 ? r->table[lo].id : -1;
}

/* Scores of the merged pieces come from tokenizer.bin; we read them back
 * here through the file, not through the tokenizer under test. */
static float *ref_scores(const char *path, int vocab) {
    size_t n;
    char *buf = read_file(path, &n);
    if (!buf) return NULL;
    float *s = malloc(sizeof(float) * (size_t)vocab);
    size_t pos = 4;
    for (int i = 0; i < vocab; i++) {
        int32_t len;
        memcpy(&s[i], buf + pos, 4);
        memcpy(&len, buf + pos + 4, 4);
        pos += 8 + (size_t)len;
    }
    free(buf);
    return s;
}

/* Valid UTF-8 input only. Returns the number of ids (BOS first). */
static int ref_encode(const ref_bpe_t *r, const float *scores, const char *text, int *ids) {
    int n = 0;
    ids[n++] = 1;
    if (!text[0]) return n;
    char tmp[4096];
    size_t tl = strlen(text);
    char *buf = malloc(tl + 2);
    buf[0] = ' ';
    memcpy(buf + 1, text, tl + 1);
    for (size_t i = 0; buf[i];) {
        unsigned char c = (unsigned char)buf[i];
        size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        memcpy(tmp, buf + i, l);
        tmp[l] = '\0';
        int id = ref_lookup(r, tmp);
        if (id >= 0) {
            ids[n++] = id;
        } else {
            for (size_t k = 0; k < l; k++) ids[n++] = 3 + (unsigned char)buf[i + k];
        }
        i += l;
    }
    free(buf);
    int seq = n - 1;
    int *s = ids + 1;
    for (;;) {
        float best = -INFINITY;
        int at = -1, best_id = -1;
        for (int i = 0; i + 1 < seq; i++) {
            snprintf(tmp, sizeof tmp, "%s%s", tokenizer_piece(r->t, s[i]),
                     tokenizer_piece(r->t, s[i + 1]));
            int id = ref_lookup(r, tmp);
            if (id >= 0 && scores[id] > best) {
                best = scores[id];
                at = i;
                best_id = id;
            }
        }
        if (at < 0) break;
        s[at] = best_id;
        memmove(s + at + 1, s + at + 2, sizeof(int) * (size_t)(seq - at - 2));
        seq--;
    }
    return seq + 1;
}

/* ---- loading -------------------------------------------------------------- */

static void test_load(const char *tok15m_path, const char *tok512_path) {
    char err[512] = "";
    tokenizer_t *t = tokenizer_load_llama2c(tok15m_path, 32000, err, sizeof err);
    EXPECT(t != NULL);
    if (!t) fprintf(stderr, "  %s\n", err);
    if (t) {
        EXPECT_EQ_INT(tokenizer_vocab_size(t), 32000);
        EXPECT_EQ_INT(tokenizer_bos(t), 1);
        EXPECT_EQ_INT(tokenizer_eos(t), 2);
        EXPECT(strcmp(tokenizer_piece(t, 0), "<unk>") == 0);
        EXPECT(strcmp(tokenizer_piece(t, 3), "<0x00>") == 0);
        EXPECT(strcmp(tokenizer_piece(t, 258), "<0xFF>") == 0);
        EXPECT(strcmp(tokenizer_piece(t, 15043), " Hello") == 0);
        EXPECT(strcmp(tokenizer_piece(t, -1), "") == 0);
        EXPECT(strcmp(tokenizer_piece(t, 32000), "") == 0);
    }
    tokenizer_destroy(&t);
    EXPECT(t == NULL);
    tokenizer_destroy(&t); /* accepts NULL */
    tokenizer_destroy(NULL);

    t = tokenizer_load_llama2c(tok512_path, 512, err, sizeof err);
    EXPECT(t != NULL);
    if (t) {
        EXPECT_EQ_INT(tokenizer_vocab_size(t), 512);
        EXPECT(strcmp(tokenizer_piece(t, 3 + 0x41), "<0x41>") == 0);
    }
    tokenizer_destroy(&t);
}

static void test_refusals(const char *tok15m_path, const char *tok512_path) {
    EXPECT(refuse(tok15m_path, 512, "more than 512 pieces"));
    EXPECT(refuse(tok15m_path, 32001, "only 32000 pieces"));
    EXPECT(refuse(tok512_path, 32000, "only 512 pieces"));
    EXPECT(refuse(tok512_path, 511, "more than 511"));
    EXPECT(refuse(tok15m_path, 0, NULL));
    EXPECT(refuse("/nonexistent/dir/tokenizer.bin", 32000, "No such file"));
    EXPECT(refuse("/tmp", 32000, "Is a directory"));
    /* A NULL err buffer must be accepted too. */
    EXPECT(tokenizer_load_llama2c("/nonexistent/tokenizer.bin", 32000, NULL, 0) == NULL);

    size_t n;
    char *buf = read_file(tok512_path, &n);
    EXPECT(buf != NULL);
    if (!buf) return;
    /* Cut in the middle of piece 300's bytes: find where piece 300 starts. */
    size_t pos = 4;
    for (int i = 0; i < 300; i++) {
        int32_t len;
        memcpy(&len, buf + pos + 4, 4);
        pos += 8 + (size_t)len;
    }
    int32_t len300;
    memcpy(&len300, buf + pos + 4, 4);
    EXPECT(len300 >= 2);
    size_t cut = pos + 8 + (size_t)len300 / 2;
    EXPECT(refuse_bytes(buf, cut, 512, "truncated in piece 300"));
    /* Cut inside the score/length header of piece 300. */
    EXPECT(refuse_bytes(buf, pos + 3, 512, "truncated"));
    /* Cut exactly after piece 299: too few pieces. */
    EXPECT(refuse_bytes(buf, pos, 512, "only 300 pieces"));
    /* Only part of the header. */
    EXPECT(refuse_bytes(buf, 2, 512, NULL));
    /* One trailing byte. */
    char *longer = malloc(n + 1);
    memcpy(longer, buf, n);
    longer[n] = 'x';
    EXPECT(refuse_bytes(longer, n + 1, 512, "more than 512 pieces"));
    free(longer);

    /* Corrupt fields. */
    char *bad = malloc(n);
    memcpy(bad, buf, n);
    int32_t v = 0;
    memcpy(bad, &v, 4); /* max_token_length 0 */
    EXPECT(refuse_bytes(bad, n, 512, "max_token_length"));
    memcpy(bad, buf, n);
    v = 1; /* max_token_length 1 < the longest piece */
    memcpy(bad, &v, 4);
    EXPECT(refuse_bytes(bad, n, 512, "length"));
    memcpy(bad, buf, n);
    v = -5; /* negative piece length */
    memcpy(bad + pos + 4, &v, 4);
    EXPECT(refuse_bytes(bad, n, 512, "piece 300"));
    memcpy(bad, buf, n);
    v = 1 << 30; /* a length far past the end of the file */
    memcpy(bad + pos + 4, &v, 4);
    EXPECT(refuse_bytes(bad, n, 512, "piece 300"));
    memcpy(bad, buf, n);
    float nan_score = NAN;
    memcpy(bad + pos, &nan_score, 4);
    EXPECT(refuse_bytes(bad, n, 512, "score"));
    free(bad);
    free(buf);
}

/* ---- encoding ------------------------------------------------------------- */

static void expect_ids(const tokenizer_t *t, const char *text, int add_bos, const int *want, int nwant) {
    int ids[64];
    int n = tokenizer_encode(t, text, add_bos, ids, 64);
    int same = n == nwant;
    for (int i = 0; same && i < n; i++) same = ids[i] == want[i];
    if (!same) {
        fprintf(stderr, "  encode(\"%s\") =", text);
        for (int i = 0; i < n && i < 64; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    EXPECT(same);
}

static void test_known_ids(const tokenizer_t *t) {
    /* From the SentencePiece Llama-2 tokenizer (tokenizer.model), widely
     * quoted: these do not come from this code or from tokenizer.bin. */
    const int hello[] = {1, 15043, 3186};
    expect_ids(t, "Hello world", 1, hello, 3);
    const int once[] = {1, 9038, 2501, 263, 931};
    expect_ids(t, "Once upon a time", 1, once, 5);
    expect_ids(t, "Once upon a time", 0, once + 1, 4);
    /* Llama-2 has no "\n" piece: a newline is the byte token <0x0A> = 13. */
    int ids[16];
    int n = tokenizer_encode(t, "a\nb", 1, ids, 16);
    int has13 = 0;
    for (int i = 0; i < n; i++) has13 |= ids[i] == 13;
    EXPECT(has13);
    /* Empty text: BOS only, no dummy space. */
    EXPECT_EQ_INT(tokenizer_encode(t, "", 1, ids, 16), 1);
    EXPECT_EQ_INT(ids[0], 1);
    EXPECT_EQ_INT(tokenizer_encode(t, "", 0, ids, 16), 0);
}

static void test_cap(const tokenizer_t *t) {
    int ids[8];
    for (int i = 0; i < 8; i++) ids[i] = -77;
    EXPECT_EQ_INT(tokenizer_encode(t, "Once upon a time", 1, ids, 2), 5);
    EXPECT_EQ_INT(ids[0], 1);
    EXPECT_EQ_INT(ids[1], 9038);
    for (int i = 2; i < 8; i++) EXPECT_EQ_INT(ids[i], -77);
    EXPECT_EQ_INT(tokenizer_encode(t, "Once upon a time", 1, NULL, 0), 5);
    EXPECT_EQ_INT(tokenizer_encode(t, "Once upon a time", 1, ids, 0), 5);
    EXPECT_EQ_INT(ids[0], 1);
}

static void test_decode(const tokenizer_t *t) {
    size_t len;
    const char *p = tokenizer_decode(t, 1, 15043, &len); /* " Hello" after BOS */
    EXPECT(len == 5 && memcmp(p, "Hello", 5) == 0);
    p = tokenizer_decode(t, 15043, 3186, &len);
    EXPECT(len == 6 && memcmp(p, " world", 6) == 0);
    p = tokenizer_decode(t, 15043, 13, &len);
    EXPECT(len == 1 && p[0] == '\n');
    p = tokenizer_decode(t, 1, 3, &len); /* <0x00> is one zero byte */
    EXPECT(len == 1 && p[0] == '\0');
    p = tokenizer_decode(t, 5, 3 + 0xE6, &len);
    EXPECT(len == 1 && (unsigned char)p[0] == 0xE6);
    tokenizer_decode(t, 5, 2, &len); /* EOS carries no text */
    EXPECT_EQ_INT(len, 0);
    tokenizer_decode(t, 5, 32000, &len); /* out of range: nothing, no crash */
    EXPECT_EQ_INT(len, 0);
    tokenizer_decode(t, 5, -3, &len);
    EXPECT_EQ_INT(len, 0);
}

static const char *const round_trip_texts[] = {
    "Hello world",
    "Once upon a time, there was a little girl named Lily.",
    "café",
    "naïve 日本語 🙂",
    "line one\nline two\n\ttabbed\t\tend\r\n",
    " leading space",
    "  two leading spaces and trailing  ",
    "x",
    " ",
    "\n",
    "<0x41> <unk> <s> </s> are just text here",
    "Grüße aus Köln – „Anführungszeichen“ … ½ € ∑ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "\xF4\x8F\xBF\xBF U+10FFFF and U+FFFD \xEF\xBF\xBD",
    "invalid: \xFF\xFE \xC3 \xED\xA0\x80 \xC0\xAF end", /* bytes kept as byte tokens */
};

static void test_round_trip(const tokenizer_t *t, const char *name) {
    int *ids = malloc(sizeof(int) * MAXTOK);
    char *out = malloc(4 * MAXTOK + 1);
    for (size_t k = 0; k < sizeof round_trip_texts / sizeof *round_trip_texts; k++) {
        const char *s = round_trip_texts[k];
        int n = tokenizer_encode(t, s, 1, ids, MAXTOK);
        EXPECT(n >= 2 && n <= MAXTOK);
        EXPECT_EQ_INT(ids[0], 1);
        int in_range = 1;
        for (int i = 0; i < n; i++) in_range &= ids[i] >= 0 && ids[i] < tokenizer_vocab_size(t);
        EXPECT(in_range);
        size_t len = decode_all(t, ids, n, out);
        int same = len == strlen(s) && memcmp(out, s, len) == 0;
        if (!same) fprintf(stderr, "  %s round trip of \"%s\" gave \"%s\"\n", name, s, out);
        EXPECT(same);
    }
    free(ids);
    free(out);
}

static void test_byte_fallback(const tokenizer_t *t512, const tokenizer_t *t15m) {
    int ids[16];
    /* tok512 has no piece for 日 (U+65E5, E6 97 A5): its three byte tokens. */
    int n = tokenizer_encode(t512, "日", 1, ids, 16);
    EXPECT_EQ_INT(n, 5); /* BOS, the dummy space, three bytes */
    if (n == 5) {
        EXPECT(strcmp(tokenizer_piece(t512, ids[1]), " ") == 0);
        EXPECT_EQ_INT(ids[2], 0xE6 + 3);
        EXPECT_EQ_INT(ids[3], 0x97 + 3);
        EXPECT_EQ_INT(ids[4], 0xA5 + 3);
    }
    /* The 32000 vocabulary has 日 as a piece: no byte tokens. */
    n = tokenizer_encode(t15m, "日", 1, ids, 16);
    EXPECT(n >= 2);
    for (int i = 0; i < n; i++) EXPECT(ids[i] < 3 || ids[i] > 258);
    /* Invalid UTF-8 bytes always become byte tokens, one each. */
    n = tokenizer_encode(t15m, "\xFF\x80", 0, ids, 16);
    EXPECT(n >= 2);
    if (n >= 2) {
        EXPECT_EQ_INT(ids[n - 2], 0xFF + 3);
        EXPECT_EQ_INT(ids[n - 1], 0x80 + 3);
    }
    /* "<0x41>" typed as text is not the byte token 'A'. */
    n = tokenizer_encode(t15m, "<0x41>", 0, ids, 16);
    for (int i = 0; i < n; i++) EXPECT(ids[i] != 3 + 0x41);
}

/* Segments of real text (one per line; sgm markup stripped) are encoded by
 * the tokenizer and by the naive reference; both must agree. */
static int compare_with_reference(const tokenizer_t *t, const char *tok_path, const char *text_path,
                                  int max_lines, const char *name) {
    size_t n;
    char *text = read_file(text_path, &n);
    if (!text) {
        fprintf(stderr, "  FAILED: cannot read %s\n", text_path);
        test_failures++;
        return 0;
    }
    ref_bpe_t r;
    ref_init(&r, t);
    float *scores = ref_scores(tok_path, tokenizer_vocab_size(t));
    int *a = malloc(sizeof(int) * MAXTOK), *b = malloc(sizeof(int) * MAXTOK);
    int lines = 0, tokens = 0, mismatches = 0;
    for (char *line = strtok(text, "\n"); line && lines < max_lines; line = strtok(NULL, "\n")) {
        char *seg = strstr(line, "<seg");
        if (seg) {
            seg = strchr(seg, '>');
            char *end = strstr(line, "</seg>");
            if (!seg || !end) continue;
            *end = '\0';
            line = seg + 1;
        } else if (line[0] == '<') {
            continue;
        }
        if (strlen(line) > 2000) continue;
        int na = tokenizer_encode(t, line, 1, a, MAXTOK);
        int nb = ref_encode(&r, scores, line, b);
        int same = na == nb;
        for (int i = 0; same && i < na; i++) same = a[i] == b[i];
        if (!same && mismatches++ < 3) {
            fprintf(stderr, "  %s: \"%s\"\n   got", name, line);
            for (int i = 0; i < na && i < 40; i++) fprintf(stderr, " %d", a[i]);
            fprintf(stderr, "\n   ref");
            for (int i = 0; i < nb && i < 40; i++) fprintf(stderr, " %d", b[i]);
            fprintf(stderr, "\n");
        }
        lines++;
        tokens += na;
    }
    EXPECT_EQ_INT(mismatches, 0);
    EXPECT(lines > 0);
    printf("  %s: %d lines, %d tokens, %d differ from the reference\n", name, lines, tokens,
           mismatches);
    free(a);
    free(b);
    free(scores);
    free(r.table);
    free(text);
    return lines;
}

/* Runs of one character, where the same merge applies at several places at
 * once and only the leftmost-first rule decides. */
static void compare_ties_with_reference(const tokenizer_t *t, const char *tok_path, const char *name) {
    static const char *const runs[] = {"aaaaaaa", "eeeee", "ooooo", "lll", "sssss", "=======",
                                       "...........", "!!!!!!", "1111111", "0000", "----------",
                                       "the the the", "ththth", "ananana", "    x", "\t\t\tx",
                                       "        deep", "hmmmmmmm", "zzzzz zzzzz", "abababab"};
    ref_bpe_t r;
    ref_init(&r, t);
    float *scores = ref_scores(tok_path, tokenizer_vocab_size(t));
    int a[256], b[256], mismatches = 0;
    for (size_t k = 0; k < sizeof runs / sizeof *runs; k++) {
        int na = tokenizer_encode(t, runs[k], 1, a, 256);
        int nb = ref_encode(&r, scores, runs[k], b);
        int same = na == nb;
        for (int i = 0; same && i < na; i++) same = a[i] == b[i];
        if (!same) {
            fprintf(stderr, "  %s: \"%s\" differs from the reference\n", name, runs[k]);
            mismatches++;
        }
    }
    EXPECT_EQ_INT(mismatches, 0);
    free(scores);
    free(r.table);
}

/* A long input in one call (tens of thousands of tokens) round-trips. */
static void test_long_text(const tokenizer_t *t, const char *text_path) {
    size_t n;
    char *text = read_file(text_path, &n);
    EXPECT(text != NULL);
    if (!text) return;
    int count = tokenizer_encode(t, text, 1, NULL, 0);
    EXPECT(count > 1000);
    int *ids = malloc(sizeof(int) * (size_t)count);
    char *out = malloc(4 * n + 16);
    EXPECT_EQ_INT(tokenizer_encode(t, text, 1, ids, count), count);
    size_t len = decode_all(t, ids, count, out);
    EXPECT(len == n && memcmp(out, text, n) == 0);
    printf("  %zu bytes -> %d tokens, round trip %s\n", n, count,
           len == n && memcmp(out, text, n) == 0 ? "exact" : "WRONG");
    free(ids);
    free(out);
    free(text);
}

/* ---- UTF-8 stream --------------------------------------------------------- */

/* Feeds the chunks in order, flushes, and compares with want. */
static void expect_stream(const char *const *chunks, int nchunks, const char *want, int line) {
    utf8_stream_t s = {0};
    char out[256];
    size_t w = 0;
    for (int i = 0; i < nchunks; i++) {
        size_t n = strlen(chunks[i]);
        size_t got = utf8_stream_feed(&s, chunks[i], n, out + w);
        if (got > 3 * n + 8) {
            fprintf(stderr, "test_tokenizer.c:%d: feed wrote %zu bytes for %zu\n", line, got, n);
            test_failures++;
        }
        w += got;
    }
    w += utf8_stream_flush(&s, out + w);
    if (w != strlen(want) || memcmp(out, want, w) != 0) {
        fprintf(stderr, "test_tokenizer.c:%d: FAILED utf8 stream: got", line);
        for (size_t i = 0; i < w; i++) fprintf(stderr, " %02X", (unsigned char)out[i]);
        fprintf(stderr, ", want");
        for (size_t i = 0; i < strlen(want); i++) fprintf(stderr, " %02X", (unsigned char)want[i]);
        fprintf(stderr, "\n");
        test_failures++;
    }
    EXPECT_EQ_INT(s.n, 0);
}

#define STREAM(want, ...)                                                            \
    do {                                                                             \
        const char *const _c[] = {__VA_ARGS__};                                      \
        expect_stream(_c, (int)(sizeof _c / sizeof *_c), (want), __LINE__);           \
    } while (0)

#define FFFD "\xEF\xBF\xBD"

static void test_utf8_stream(void) {
    /* Whole characters, and characters split across feeds. */
    STREAM("abc", "abc");
    STREAM("caf\xC3\xA9", "caf\xC3", "\xA9");
    STREAM("\xE6\x97\xA5", "\xE6", "\x97", "\xA5");
    STREAM("\xF0\x9F\x99\x82", "\xF0", "\x9F\x99\x82");
    STREAM("\xF0\x9F\x99\x82", "\xF0\x9F", "\x99\x82");
    STREAM("\xF0\x9F\x99\x82!", "\xF0\x9F\x99", "\x82!");
    STREAM("a\xE6\x97\xA5" "b\xF0\x9F\x99\x82", "a\xE6", "\x97\xA5" "b\xF0\x9F", "\x99", "\x82");
    /* Boundaries that are valid. */
    STREAM("\x7F\xC2\x80\xDF\xBF", "\x7F\xC2\x80\xDF\xBF");
    STREAM("\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xEF\xBF\xBF", "\xE0\xA0\x80\xED\x9F\xBF",
           "\xEE\x80\x80\xEF\xBF\xBF");
    STREAM("\xF0\x90\x80\x80\xF4\x8F\xBF\xBF", "\xF0\x90\x80\x80\xF4\x8F\xBF\xBF");
    /* Invalid bytes and sequences: one U+FFFD per maximal invalid subpart. */
    STREAM(FFFD, "\x80");                               /* stray continuation */
    STREAM("a" FFFD "b", "a\xBF" "b");
    STREAM(FFFD FFFD, "\xC0\xAF");                      /* overlong '/' */
    STREAM(FFFD FFFD, "\xC1\xBF");
    STREAM(FFFD FFFD FFFD, "\xE0\x80\xAF");             /* overlong 3-byte */
    STREAM(FFFD FFFD FFFD FFFD, "\xF0\x80\x80\xAF");    /* overlong 4-byte */
    STREAM(FFFD FFFD FFFD, "\xED\xA0\x80");             /* surrogate U+D800 */
    STREAM(FFFD FFFD FFFD, "\xED\xBF\xBF");             /* surrogate U+DFFF */
    STREAM(FFFD FFFD FFFD FFFD, "\xF4\x90\x80\x80");    /* U+110000 */
    STREAM(FFFD, "\xF5");
    STREAM(FFFD FFFD, "\xFE\xFF");
    STREAM(FFFD "A", "\xE6\x97", "A");                  /* cut short by ASCII */
    STREAM(FFFD "\xC3\xA9", "\xE6", "\xC3\xA9");        /* cut short by a new lead */
    STREAM(FFFD "\xF0\x9F\x99\x82", "\xF0\x9F\x99", "\xF0\x9F\x99\x82");
    /* Flush of an incomplete character. */
    STREAM("ab" FFFD, "ab\xE6\x97");
    STREAM(FFFD, "\xF0\x9F\x99");
    STREAM(FFFD, "\xC3");
    STREAM("", "");

    /* The worst case output bound: 3 pending bytes, then a byte that both
     * ends them (U+FFFD) and is itself invalid (U+FFFD). */
    utf8_stream_t s = {0};
    char out[64];
    EXPECT_EQ_INT(utf8_stream_feed(&s, "\xF0\x9F\x99", 3, out), 0);
    size_t w = utf8_stream_feed(&s, "\xFF", 1, out);
    EXPECT(w == 6 && memcmp(out, FFFD FFFD, 6) == 0);
    EXPECT(w <= 3 * 1 + 8);
    EXPECT_EQ_INT(utf8_stream_flush(&s, out), 0);
}

/* Decoding the ids of text through the stream gives the text back when it
 * is valid UTF-8, whatever way the characters were split into tokens. */
static void test_stream_decode(const tokenizer_t *t) {
    const char *s = "naïve 日本語 🙂 and Grüße";
    int ids[128];
    int n = tokenizer_encode(t, s, 1, ids, 128);
    EXPECT(n > 1 && n <= 128);
    utf8_stream_t st = {0};
    char out[1024];
    size_t w = 0;
    for (int i = 1; i < n; i++) {
        size_t len;
        const char *p = tokenizer_decode(t, ids[i - 1], ids[i], &len);
        w += utf8_stream_feed(&st, p, len, out + w);
    }
    w += utf8_stream_flush(&st, out + w);
    EXPECT(w == strlen(s) && memcmp(out, s, w) == 0);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep progress lines in order with stderr */
    char tok15m_path[1024], tok512_path[1024];
    test_model(tok15m_path, sizeof tok15m_path, "stories15M/tokenizer.bin");
    test_model(tok512_path, sizeof tok512_path, "stories260K/tok512.bin");
    if (access(tok15m_path, R_OK) != 0 || access(tok512_path, R_OK) != 0) {
        fprintf(stderr, "test_tokenizer: FAILED: %s or %s not readable (make models)\n", tok15m_path, tok512_path);
        return 1;
    }

    test_load(tok15m_path, tok512_path);
    test_refusals(tok15m_path, tok512_path);
    test_utf8_stream();

    char err[512];
    tokenizer_t *t15m = tokenizer_load_llama2c(tok15m_path, 32000, err, sizeof err);
    tokenizer_t *t512 = tokenizer_load_llama2c(tok512_path, 512, err, sizeof err);
    EXPECT(t15m && t512);
    if (t15m && t512) {
        test_known_ids(t15m);
        test_cap(t15m);
        test_decode(t15m);
        test_round_trip(t15m, "tokenizer.bin");
        test_round_trip(t512, "tok512.bin");
        test_byte_fallback(t512, t15m);
        test_stream_decode(t15m);
        test_stream_decode(t512);

        const char *stories = "tests/data/tinystories/validation_100.txt";
        const char *wmt_de = "tests/data/wmt14-deen/newstest2014-deen-src.de.320.sgm";
        compare_with_reference(t15m, tok15m_path, stories, 400, "tokenizer.bin / tinystories");
        compare_with_reference(t512, tok512_path, stories, 400, "tok512.bin / tinystories");
        compare_with_reference(t15m, tok15m_path, wmt_de, 300, "tokenizer.bin / wmt14 de");
        compare_with_reference(t512, tok512_path, wmt_de, 300, "tok512.bin / wmt14 de");
        compare_ties_with_reference(t15m, tok15m_path, "tokenizer.bin");
        compare_ties_with_reference(t512, tok512_path, "tok512.bin");
        test_long_text(t15m, stories);
        test_long_text(t512, stories);
    }
    tokenizer_destroy(&t15m);
    tokenizer_destroy(&t512);
    return TEST_DONE("test_tokenizer");
}
