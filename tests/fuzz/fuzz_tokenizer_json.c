/* fuzz_tokenizer_json.c - libFuzzer target on the tokenizer.json loader and
 * encoder (model/tokenizer_hf.c), which read untrusted files and text.
 *
 * Two ways in, chosen by the first byte:
 *   '{'  : the input is a tokenizer.json. If it loads, a fixed set of texts
 *          is encoded with it; every id must be inside the vocabulary, the
 *          count must not depend on the output capacity, and every id must
 *          decode (no crash, length bounded).
 *   else : the input (after the first byte) is text, encoded with the
 *          byte-level and the SentencePiece-style test tokenizers
 *          (tests/data/tok_bytelevel.json, tok_sp.json, loaded once;
 *          run from the repository root), and with the NFC seed
 *          (tests/fuzz/tokenizer_seeds/bytelevel_nfc.json: ids in range only). With the byte-level one the text
 *          must decode back byte-exact unless it contains an added token
 *          (both families) or, for the SentencePiece one, U+2581 (which
 *          stands for a space there).
 * Any violation traps.
 *
 * Build and run (from the repository root):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -I. -fsanitize=fuzzer,address,undefined \
 *       -fno-sanitize-recover=all tests/fuzz/fuzz_tokenizer_json.c model/tokenizer.c \
 *       model/tokenizer_hf.c -o build/fuzz/fuzz_tokenizer_json -lcjson -lpcre2-8 -licuuc -lm
 *   build/fuzz/fuzz_tokenizer_json -runs=1000000 -max_len=6000 tests/fuzz/tokenizer_seeds
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer.h"

#define CHECK(c)                                                                 \
    do {                                                                         \
        if (!(c)) __builtin_trap();                                              \
    } while (0)

static tokenizer_t *bl, *sp, *nfc;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char err[512];
    bl = tokenizer_load_hf("tests/data/tok_bytelevel.json", err, sizeof err);
    if (!bl) fprintf(stderr, "%s\n", err);
    sp = tokenizer_load_hf("tests/data/tok_sp.json", err, sizeof err);
    if (!sp) fprintf(stderr, "%s\n", err);
    nfc = tokenizer_load_hf("tests/fuzz/tokenizer_seeds/bytelevel_nfc.json", err, sizeof err);
    if (!nfc) fprintf(stderr, "%s\n", err);
    if (!bl || !sp || !nfc) abort();
    return 0;
}

/* Encodes text, checks the ids, decodes them; returns the decoded length
 * written to out (cap bytes), or -1 if it did not fit. */
static long encode_check(const tokenizer_t *t, const char *text, char *out, size_t cap) {
    int n = tokenizer_encode(t, text, 1, NULL, 0);
    CHECK(n >= 0);
    int *ids = malloc(sizeof(int) * (size_t)(n + 1));
    CHECK(ids != NULL);
    CHECK(tokenizer_encode(t, text, 1, ids, n) == n);
    int V = tokenizer_vocab_size(t);
    size_t w = 0;
    int prev = tokenizer_bos(t), ok = 1;
    for (int i = 0; i < n; i++) {
        CHECK(ids[i] >= 0 && ids[i] < V);
        if (tokenizer_is_special(t, ids[i])) continue;
        size_t len;
        const char *p = tokenizer_decode(t, prev, ids[i], &len);
        CHECK(len <= 65536);
        if (w + len <= cap) memcpy(out + w, p, len);
        else ok = 0;
        w += len;
        prev = ids[i];
    }
    free(ids);
    return ok ? (long)w : -1;
}

static int has_added(const char *s) {
    static const char *const added[] = {"<|", "[NOTE]", "<s>", "</s>", "<unk>"};
    for (size_t k = 0; k < sizeof added / sizeof *added; k++)
        if (strstr(s, added[k])) return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    if (data[0] == '{') {
        char err[512];
        tokenizer_t *t = tokenizer_load_hf_mem((const char *)data, size, "fuzz", err, sizeof err);
        if (!t) {
            CHECK(err[0] != '\0' && strstr(err, "fuzz") != NULL);
            return 0;
        }
        static const char *const texts[] = {"Hello wörld 123 <s> </s>", "  x\n\ny  ", "ab", "\xFF\xC3 🙂 日本", ""};
        char out[4096];
        for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) encode_check(t, texts[k], out, sizeof out);
        tokenizer_destroy(&t);
        return 0;
    }
    char *text = malloc(size);
    CHECK(text != NULL);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    size_t tl = strlen(text);
    size_t cap = 8 * size + 64;
    char *out = malloc(cap);
    CHECK(out != NULL);
    long w = encode_check(bl, text, out, cap);
    if (!has_added(text)) CHECK(w == (long)tl && memcmp(out, text, tl) == 0);
    w = encode_check(sp, text, out, cap);
    /* U+2581 typed in the text decodes as a space (as in SentencePiece). */
    if (!has_added(text) && !strstr(text, "\xE2\x96\x81")) CHECK(w == (long)tl && memcmp(out, text, tl) == 0);
    encode_check(nfc, text, out, cap); /* NFC need not give the text back */
    free(out);
    free(text);
    return 0;
}
