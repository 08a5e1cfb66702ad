/* test_tokenizer_unigram.c - model/tokenizer_hf.c with Unigram tokenizer.json
 * files (T5 / mT5 layout) against goldens from the Hugging Face `tokenizers`
 * library itself (tools/ref/make_unigram_goldens.sh, which runs it through
 * the npm package @anush008/tokenizers).
 *
 * - tests/data/t5tok/golden_<variant>.json: every case (the first 300
 *   segments of each WMT14 / IWSLT17 file for the T5 tokenizer, fewer for
 *   the variants, and edge cases: whitespace, NFKC-folded characters,
 *   combining marks, emoji, CJK, "</s>" in the text, long words, invalid
 *   UTF-8) encodes, with the template's EOS, to the reference's ids, also
 *   when the output is too small, and decodes (special tokens skipped) to the
 *   reference's text. Variants: tokenizer.json (vocab 512, SentencePiece's
 *   nmt_nfkc charsmap, WhitespaceSplit + Metaspace), the same with the
 *   legacy Metaspace(add_prefix_space) pre-tokenizer, with Metaspace
 *   prepend_scheme first and no normalizer, bf_1000.json (byte_fallback,
 *   no charsmap) alone and with NFKC + Strip, and tie.json (hand-made scores
 *   that tie, for the Viterbi tie-break and fused unknowns).
 * - A hand-built double-array charsmap (from the format's definition, not
 *   from SentencePiece) maps what it should.
 * - Refusals naming the file and field: bad base64, truncated charsmap, trie
 *   offsets outside the blob, values outside the normalized strings, scores
 *   that are not numbers, unk_id out of range, duplicate and empty pieces,
 *   unknown normalizer, ByteLevel with Unigram.
 *
 * Needs only the committed files (no node, SentencePiece or ../shared).
 */
#include "model/tokenizer.h"
#include "tests/test.h"
#include "tests/test_json.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>

#define DIR "tests/data/t5tok/"
#define MAXTOK 8192

/* DIR<file> with the top-level fields of patch (may be NULL / null) replaced. */
static tokenizer_t *load_variant(const char *file, const cJSON *patch, char *err, size_t errlen) {
    char path[256];
    snprintf(path, sizeof path, DIR "%s", file);
    if (!patch || cJSON_IsNull(patch)) return tokenizer_load_hf(path, err, errlen);
    cJSON *root = test_read_json(path);
    if (!root) {
        snprintf(err, errlen, "cannot read %s", path);
        return NULL;
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, patch) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, p->string);
        cJSON_AddItemToObject(root, p->string, cJSON_Duplicate(p, 1));
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    tokenizer_t *t = text ? tokenizer_load_hf_mem(text, strlen(text), path, err, errlen) : NULL;
    free(text);
    return t;
}

/* Decodes ids the way generation prints them: special tokens give nothing
 * and are not passed on as prev; prev starts at BOS (-1 for T5: none); the
 * bytes go through the UTF-8 stream, which turns a byte-fallback piece that
 * is no whole character into U+FFFD (the reference's ByteFallback decoder
 * does the same, one U+FFFD per byte token, where the stream gives one per
 * maximal invalid subpart: the goldens hold single bytes only). out holds
 * cap bytes; returns the length, or cap when it did not fit. */
static size_t decode_all(const tokenizer_t *t, const int *ids, int n, char *out, size_t cap) {
    utf8_stream_t st = {0};
    size_t w = 0;
    int prev = tokenizer_bos(t);
    for (int i = 0; i < n; i++) {
        if (tokenizer_is_special(t, ids[i])) continue;
        size_t len;
        const char *p = tokenizer_decode(t, prev, ids[i], &len);
        if (w + 3 * len + 16 >= cap) return cap;
        w += utf8_stream_feed(&st, p, len, out + w);
        prev = ids[i];
    }
    w += utf8_stream_flush(&st, out + w);
    out[w] = '\0';
    return w;
}

static int hexval(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

/* Returns the number of cases checked; counts mismatches in *bad. */
static int test_golden(const char *variant, int *bad) {
    char path[256], err[512] = "";
    snprintf(path, sizeof path, DIR "golden_%s.json", variant);
    cJSON *g = test_read_json(path);
    EXPECT(g != NULL);
    if (!g) {
        fprintf(stderr, "  cannot read %s\n", path);
        return 0;
    }
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(g, "tokenizer");
    tokenizer_t *t = cJSON_IsString(file)
                         ? load_variant(file->valuestring, cJSON_GetObjectItemCaseSensitive(g, "patch"), err, sizeof err)
                         : NULL;
    if (!t) fprintf(stderr, "  %s: %s\n", variant, err);
    EXPECT(t != NULL);
    int *ids = malloc(sizeof(int) * MAXTOK), n_cases = 0, n_bad = 0;
    char *dec = malloc(1 << 16), *hex = malloc(1 << 12);
    const cJSON *c;
    const cJSON *cases = t ? cJSON_GetObjectItemCaseSensitive(g, "cases") : NULL;
    cJSON_ArrayForEach(c, cases) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(c, "text");
        const cJSON *hx = cJSON_GetObjectItemCaseSensitive(c, "hex");
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, "ids");
        const cJSON *wdec = cJSON_GetObjectItemCaseSensitive(c, "decoded");
        const char *s;
        if (cJSON_IsString(hx)) { /* invalid UTF-8, given as bytes */
            size_t k = 0;
            for (const char *q = hx->valuestring; q[0] && q[1] && k < (1 << 12) - 1; q += 2)
                hex[k++] = (char)(hexval(q[0]) << 4 | hexval(q[1]));
            hex[k] = '\0';
            s = hex;
        } else {
            s = cJSON_IsString(text) ? text->valuestring : "";
        }
        n_cases++;
        int n = tokenizer_encode(t, s, 1, ids, MAXTOK);
        int ok = n == cJSON_GetArraySize(want) && n <= MAXTOK;
        for (int i = 0; ok && i < n; i++) ok = ids[i] == cJSON_GetArrayItem(want, i)->valueint;
        /* The count does not depend on the room given. */
        ok = ok && tokenizer_encode(t, s, 1, NULL, 0) == n && tokenizer_encode(t, s, 1, ids + n, n / 2) == n;
        const char *wd = cJSON_IsString(wdec) ? wdec->valuestring : s;
        int dec_ok = ok && decode_all(t, ids, n, dec, 1 << 16) == strlen(wd) && strcmp(dec, wd) == 0;
        if (!ok || !dec_ok) {
            if (n_bad < 5) {
                fprintf(stderr, "  %s: %s \"%.80s\": got %d ids:", variant, ok ? "decode" : "encode", s, n);
                for (int i = 0; i < n && i < 24; i++) fprintf(stderr, " %d", ids[i]);
                fprintf(stderr, "\n    want %d:", cJSON_GetArraySize(want));
                for (int i = 0; i < cJSON_GetArraySize(want) && i < 24; i++)
                    fprintf(stderr, " %d", cJSON_GetArrayItem(want, i)->valueint);
                if (ok) fprintf(stderr, "\n    decoded \"%.80s\" want \"%.80s\"", dec, wd);
                fprintf(stderr, "\n");
            }
            n_bad++;
        }
    }
    EXPECT(n_cases > 0);
    EXPECT_EQ_INT(n_bad, 0);
    printf("  golden_%s: %d cases, %d differ\n", variant, n_cases, n_bad);
    *bad += n_bad;
    free(ids);
    free(dec);
    free(hex);
    tokenizer_destroy(&t);
    cJSON_Delete(g);
    return n_cases;
}

/* The T5 file's shape: what the model and the generation loop rely on. */
static void test_t5_layout(void) {
    char err[512] = "";
    tokenizer_t *t = tokenizer_load_hf(DIR, err, sizeof err); /* a directory holding tokenizer.json */
    EXPECT(t != NULL);
    if (!t) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    EXPECT_EQ_INT(tokenizer_vocab_size(t), 512);
    EXPECT_EQ_INT(tokenizer_bos(t), -1);
    EXPECT_EQ_INT(tokenizer_eos(t), 1);
    EXPECT(strcmp(tokenizer_piece(t, 0), "<pad>") == 0 && strcmp(tokenizer_piece(t, 1), "</s>") == 0 &&
           strcmp(tokenizer_piece(t, 2), "<unk>") == 0);
    for (int id = 0; id < 3; id++) {
        EXPECT(tokenizer_is_special(t, id));
        size_t len = 99;
        tokenizer_decode(t, -1, id, &len);
        EXPECT_EQ_INT(len, 0);
    }
    int ids[8];
    EXPECT_EQ_INT(tokenizer_encode(t, "", 1, ids, 8), 1); /* EOS alone */
    EXPECT_EQ_INT(ids[0], 1);
    EXPECT_EQ_INT(tokenizer_encode(t, "", 0, ids, 8), 0);
    EXPECT_EQ_INT(tokenizer_encode(t, "a", 0, ids, 8), 1); /* no template without add_bos */
    /* The first piece's U+2581 is dropped at the start (prev -1), kept later. */
    size_t l1, l2;
    const char *p1 = tokenizer_decode(t, -1, ids[0], &l1);
    const char *p2 = tokenizer_decode(t, 5, ids[0], &l2);
    EXPECT(l1 == 1 && p1[0] == 'a');
    EXPECT(l2 == 2 && memcmp(p2, " a", 2) == 0);
    tokenizer_destroy(&t);
}

/* ---- hand-built charsmaps and refusals ---------------------------------------- */

static void b64(const unsigned char *in, size_t n, char *out) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t w = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[w++] = A[v >> 18 & 63];
        out[w++] = A[v >> 12 & 63];
        out[w++] = i + 1 < n ? A[v >> 6 & 63] : '=';
        out[w++] = i + 2 < n ? A[v & 63] : '=';
    }
    out[w] = '\0';
}

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* A charsmap with one key, "a" -> the normalized string at value, laid out
 * by the Darts-clone rules: 512 units; the root's children start at 256;
 * "a" (0x61) is unit 256 ^ 0x61 = 353, with a leaf, its own children at
 * 353 ^ 97 = 256, where the value unit (bit 31 set) sits. norm holds the
 * normalized strings (norm_len bytes, NULs included). */
static void make_charsmap(uint32_t value, const char *norm, size_t norm_len, char *out_b64) {
    size_t n = 4 + 512 * 4 + norm_len;
    unsigned char *blob = calloc(n, 1);
    put32(blob, 512 * 4);
    put32(blob + 4 + 4 * 0, 256u << 10);                      /* root: offset 256 */
    put32(blob + 4 + 4 * 353, 97u << 10 | 1u << 8 | 0x61);    /* 'a', has a leaf, offset 97 */
    put32(blob + 4 + 4 * 256, 0x80000000u | value);          /* the value unit */
    memcpy(blob + 4 + 512 * 4, norm, norm_len);
    b64(blob, n, out_b64);
    free(blob);
}

#define UNI_MODEL "\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0.0],[\"A\",-1.0],[\"a\",-2.0]," \
                  "[\"b\",-2.0],[\"\\u00e9\",-2.0]]}"
#define NAME "/tmp/unigram-refusals/tokenizer.json"

static tokenizer_t *load_text(const char *json, char *err, size_t errlen) {
    return tokenizer_load_hf_mem(json, strlen(json), NAME, err, errlen);
}

static int refuse(const char *json, const char *must_contain) {
    char err[512] = "";
    tokenizer_t *t = load_text(json, err, sizeof err);
    int ok = t == NULL && strstr(err, NAME) && strstr(err, must_contain) && !strchr(err, '\n');
    if (!ok) fprintf(stderr, "  load -> %p, err \"%s\" (wanted \"%s\")\n", (void *)t, err, must_contain);
    else printf("  refused as expected: %s\n", err);
    tokenizer_destroy(&t);
    return ok;
}

static void test_charsmap(void) {
    static char cm[4096], json[8192];
    /* "a" -> "A": encodes as the piece "A" (id 1), "b" stays "b". */
    make_charsmap(0, "A\0", 2, cm);
    snprintf(json, sizeof json, "{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"%s\"}," UNI_MODEL "}",
             cm);
    char err[512] = "";
    tokenizer_t *t = load_text(json, err, sizeof err);
    EXPECT(t != NULL);
    if (!t) fprintf(stderr, "  %s\n", err);
    int ids[16];
    if (t) {
        EXPECT_EQ_INT(tokenizer_encode(t, "ab", 0, ids, 16), 2);
        EXPECT(ids[0] == 1 && ids[1] == 3);
        /* "a" + U+0301 is one grapheme cluster whose start has a key: the
         * whole cluster becomes "A" (tokenizers' rule), the accent is gone. */
        EXPECT_EQ_INT(tokenizer_encode(t, "a\xCC\x81" "b", 0, ids, 16), 2);
        EXPECT(ids[0] == 1 && ids[1] == 3);
        /* Unknown characters: one fused <unk> per run. */
        EXPECT_EQ_INT(tokenizer_encode(t, "xyz\xC3\xA9zz", 0, ids, 16), 3);
        EXPECT(ids[0] == 0 && ids[1] == 4 && ids[2] == 0);
        tokenizer_destroy(&t);
    }
    /* The value at the end of the strings is the empty string: "a" vanishes. */
    make_charsmap(2, "A\0", 2, cm);
    snprintf(json, sizeof json, "{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"%s\"}," UNI_MODEL "}",
             cm);
    t = load_text(json, err, sizeof err);
    EXPECT(t != NULL);
    if (t) {
        EXPECT_EQ_INT(tokenizer_encode(t, "aba", 0, ids, 16), 1);
        EXPECT_EQ_INT(ids[0], 3);
        tokenizer_destroy(&t);
    }
    /* Refusals. */
    make_charsmap(3, "A\0", 2, cm);
    snprintf(json, sizeof json, "{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"%s\"}," UNI_MODEL "}",
             cm);
    EXPECT(refuse(json, "normalizer.precompiled_charsmap: a trie value"));
    make_charsmap(1, "\xC3\xA9\0", 3, cm); /* points into the middle of a character */
    snprintf(json, sizeof json, "{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"%s\"}," UNI_MODEL "}",
             cm);
    EXPECT(refuse(json, "normalizer.precompiled_charsmap: a trie value"));
    make_charsmap(0, "A\xFF\0", 3, cm);
    snprintf(json, sizeof json, "{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"%s\"}," UNI_MODEL "}",
             cm);
    EXPECT(refuse(json, "not valid UTF-8"));
    /* One unit: the root's children would lie outside the blob. */
    EXPECT(refuse("{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"BAAAAAAAAAA=\"}," UNI_MODEL "}",
                  "normalizer.precompiled_charsmap: a trie offset points outside"));
    /* Trie size 16, 4 bytes of it present. */
    EXPECT(refuse("{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"EAAAAAECAwQ=\"}," UNI_MODEL "}",
                  "normalizer.precompiled_charsmap is truncated"));
    EXPECT(refuse("{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"AAAAAA==\"}," UNI_MODEL "}",
                  "normalizer.precompiled_charsmap has an empty trie"));
    EXPECT(refuse("{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"AB\"}," UNI_MODEL "}",
                  "normalizer.precompiled_charsmap is not valid base64"));
    EXPECT(refuse("{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"AAA$AAAA\"}," UNI_MODEL "}",
                  "normalizer.precompiled_charsmap is not valid base64"));
    EXPECT(refuse("{\"normalizer\":{\"type\":\"Precompiled\"}," UNI_MODEL "}", "no \"precompiled_charsmap\""));
    /* A second element of a Sequence is named too. */
    EXPECT(refuse("{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Strip\"},{\"type\":\"Lowercase\"}]},"
                  UNI_MODEL "}", "normalizer: normalizer type \"Lowercase\""));
}

static void test_refusals(void) {
    EXPECT(refuse("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0.0],[\"a\",\"x\"]]}}",
                  "model.vocab[1] (\"a\"): the score is not a finite number"));
    EXPECT(refuse("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0.0],[\"a\",null]]}}",
                  "model.vocab[1] (\"a\"): the score"));
    EXPECT(refuse("{\"model\":{\"type\":\"Unigram\",\"unk_id\":2,\"vocab\":[[\"<unk>\",0.0],[\"a\",-1]]}}",
                  "model.unk_id"));
    EXPECT(refuse("{\"model\":{\"type\":\"Unigram\",\"unk_id\":-1,\"vocab\":[[\"<unk>\",0.0],[\"a\",-1]]}}",
                  "model.unk_id"));
    EXPECT(refuse("{\"model\":{\"type\":\"Unigram\",\"unk_id\":null,\"vocab\":[[\"<unk>\",0.0],[\"a\",-1]]}}",
                  "model.unk_id"));
    EXPECT(refuse("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0.0],[\"a\",-1],[\"a\",-2]]}}",
                  "model.vocab[2]: the piece \"a\" is also model.vocab[1]"));
    EXPECT(refuse("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0.0],[\"\",-1]]}}",
                  "model.vocab[1] is an empty piece"));
    EXPECT(refuse("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0.0],[\"a\"]]}}",
                  "model.vocab[1] is not a [\"piece\", score] pair"));
    EXPECT(refuse("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":{\"<unk>\":0}}}",
                  "model.vocab is not an array"));
    EXPECT(refuse("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[]}}", "model.vocab is empty"));
    EXPECT(refuse("{\"normalizer\":{\"type\":\"BertNormalizer\"}," UNI_MODEL "}",
                  "normalizer: normalizer type \"BertNormalizer\""));
    EXPECT(refuse("{\"pre_tokenizer\":{\"type\":\"ByteLevel\"}," UNI_MODEL "}", "pre_tokenizer: ByteLevel"));
    EXPECT(refuse("{\"pre_tokenizer\":{\"type\":\"Punctuation\"}," UNI_MODEL "}",
                  "pre-tokenizer type \"Punctuation\""));
    EXPECT(refuse("{\"model\":{\"type\":\"WordLevel\",\"vocab\":{\"a\":0},\"unk_token\":\"a\"}}",
                  "model.type \"WordLevel\""));
    EXPECT(refuse("{\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"(\"},\"content\":\" \"}," UNI_MODEL "}",
                  "normalizer: the regex does not compile"));
    /* The charsmap normalizer is for SentencePiece (Unigram) files only. */
    EXPECT(refuse("{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"\"},\"model\":{\"type\":\"BPE\","
                  "\"vocab\":{\"a\":0},\"merges\":[]}}", "with a BPE model"));
}

int main(void) {
    static const char *const variants[] = {"t5", "t5_legacy", "t5_first", "bf", "bf_nfkc", "tie"};
    int total = 0, bad = 0;
    printf("goldens (the `tokenizers` library)\n");
    for (size_t k = 0; k < sizeof variants / sizeof *variants; k++) total += test_golden(variants[k], &bad);
    printf("  %d cases in all, %d differ\n", total, bad);
    printf("T5 layout\n");
    test_t5_layout();
    printf("hand-built charsmaps\n");
    test_charsmap();
    printf("refusals\n");
    test_refusals();
    return TEST_DONE("test_tokenizer_unigram");
}
