/* tokenizer.h - tokenizers: llama2.c's tokenizer.bin (BPE, below) and Hugging
 * Face tokenizer.json (tokenizer_load_hf: BPE models, and Unigram models as
 * T5 / mT5 use them; model/tokenizer_hf.c describes the pipelines). Every
 * function below works on all kinds.
 *
 * File format (little-endian), as written by llama2.c's tokenizer export:
 *   int32 max_token_length
 *   vocab_size times: float32 score, int32 len, len bytes of the piece
 * The vocabulary size is not stored in the file: it comes from the model, and
 * a file with fewer or more entries than the model's vocabulary is refused.
 *
 * Encoding mirrors SentencePiece BPE with byte fallback: a dummy-prefix space
 * is added to non-empty text, the text is split into UTF-8 code points, each
 * looked up as a piece (a code point with no piece becomes its bytes, token
 * id byte + 3, i.e. the "<0xXX>" pieces), then the adjacent pair whose merged
 * piece has the highest score is merged (the leftmost pair on equal scores),
 * repeatedly, until no merge applies. Pieces are matched against the text
 * they cover, as SentencePiece does, so <unk>, BOS, EOS and the "<0xXX>"
 * pieces are never produced from text that happens to spell them. A
 * vocabulary without the 256 byte pieces at ids 3..258 encodes an unknown
 * code point as <unk> (id 0) instead.
 *
 * Left out on purpose for tokenizer.bin: SentencePiece's unigram model and
 * normalization rules (the llama2.c vocabularies don't use them; Unigram
 * tokenizer.json files have them).
 */
#ifndef BILD_TOKENIZER_H
#define BILD_TOKENIZER_H

#include <stddef.h>

typedef struct tokenizer tokenizer_t;

/* Loads a tokenizer.bin that must hold exactly vocab_size pieces (>= 3).
 * Checked: the file is readable, 0 < max_token_length <= 65536, each piece
 * length is in [0, max_token_length] and inside the file, each score is
 * finite, and the file ends right after the last piece.
 * Returns NULL on failure with a one-line reason (naming the file) in err
 * (err may be NULL). Caller owns the result. */
tokenizer_t *tokenizer_load_llama2c(const char *path, int vocab_size, char *err, size_t errlen);

/* Loads a Hugging Face tokenizer.json (path, or a directory holding one)
 * with a BPE model: byte-level (GPT-2 / Llama-3 / Qwen2 style) or
 * SentencePiece-style with byte fallback (Llama-2 / TinyLlama / Mistral);
 * or with a Unigram model (T5 / mT5: normalizer Precompiled, i.e.
 * SentencePiece's charsmap, Replace, Strip, NFKC; pre-tokenizer
 * WhitespaceSplit + Metaspace; template [$A, </s>], so BOS -1 and EOS
 * </s>). The vocabulary size is the largest id in model.vocab and
 * added_tokens + 1.
 * BOS: the first special token the post_processor's template puts before
 * $A, else -1; EOS: the first special added token among </s>,
 * <|end_of_text|>, <|endoftext|>, <|im_end|>, else -1 (override both with
 * tokenizer_set_bos_eos from config.json). Other model types (WordPiece,
 * WordLevel), unsupported normalizers, pre-tokenizers or post-processors,
 * malformed JSON, merges naming unknown pieces, and for Unigram: scores
 * that are not numbers, duplicate or empty pieces, unk_id missing or out
 * of range, a charsmap that is not base64, truncated, or whose trie points
 * outside it, are refused.
 * Returns NULL on failure with a one-line reason (naming the file and the
 * field) in err (err may be NULL). Caller owns the result. */
tokenizer_t *tokenizer_load_hf(const char *path, char *err, size_t errlen);

/* The same from a tokenizer.json held in memory (size bytes, no NUL needed);
 * name stands for the file in messages (NULL: "(memory)"). */
tokenizer_t *tokenizer_load_hf_mem(const char *json, size_t size, const char *name, char *err, size_t errlen);

/* Sets BOS and EOS (e.g. from config.json's bos_token_id / eos_token_id);
 * an id outside the vocabulary means "none" (-1). For tokenizer.json
 * tokenizers tokenizer_encode's add_bos still adds the post-processor's
 * template tokens, which are what the model was trained with. */
void tokenizer_set_bos_eos(tokenizer_t *t, int bos, int eos);

/* 1 if id is a special token (tokenizer.json: an added token marked
 * special; tokenizer.bin: BOS or EOS). Special tokens decode to no bytes. */
int tokenizer_is_special(const tokenizer_t *t, int id);

/* 1 if id is a control token: special, or the piece "<unk>". tokenizer.bin
 * spells <unk>, <s> and </s> out while tokenizer.json marks them special and
 * decodes them to nothing; vocabulary comparisons count every control token
 * as one marker, whatever its text, so the two files of one vocabulary agree. */
int tokenizer_is_control(const tokenizer_t *t, int id);

/* Accepts NULL; sets *pt = NULL. */
void tokenizer_destroy(tokenizer_t **pt);

int tokenizer_vocab_size(const tokenizer_t *t);
int tokenizer_bos(const tokenizer_t *t); /* 1 for llama2.c vocabularies; -1 if none */
int tokenizer_eos(const tokenizer_t *t); /* 2 for llama2.c vocabularies; -1 if none */

/* Encodes UTF-8 text (NUL-terminated; invalid UTF-8 bytes are byte-fallback
 * encoded; Unigram tokenizer.json: they become U+FFFD first, one per maximal
 * invalid subpart), prepending BOS if add_bos. Empty text gives BOS alone (no dummy
 * space). tokenizer.json: add_bos adds the post-processor template's tokens
 * before (and, if the template has any, after) the text, which may be none
 * (Qwen2); added tokens in the text are matched first.
 * Writes at most cap ids to out (out may be NULL when cap is 0).
 * Returns the number of ids the full encoding has (which may exceed cap:
 * the caller then knows the text does not fit), or -1 on allocation failure
 * or for text longer than INT_MAX / 8 bytes. O(n log n) in the text length;
 * allocates scratch memory per call. */
int tokenizer_encode(const tokenizer_t *t, const char *text, int add_bos, int *out, int cap);

/* The bytes token id stands for when it follows token prev: "<0xXX>" pieces
 * become the single raw byte, and the leading space of the piece right after
 * BOS is dropped (SentencePiece's dummy prefix). BOS, EOS and ids out of
 * range stand for no bytes (*len = 0); <unk> gives its piece. tokenizer.json:
 * byte-level pieces map back through GPT-2's byte alphabet, SentencePiece
 * ones turn U+2581 into ' ' and drop the leading space after BOS (a caller
 * that skips special tokens passes the last token it printed, or BOS at the
 * start, as prev; Unigram: also at prev < 0, the start when there is no
 * BOS, as for T5); special added tokens (BOS, EOS, <unk>, ...) give no
 * bytes, other added tokens their content. Returns a
 * pointer borrowed from the tokenizer (not NUL-terminated for byte pieces)
 * and its length in *len. */
const char *tokenizer_decode(const tokenizer_t *t, int prev, int id, size_t *len);

/* The raw piece string of id, as stored in the file (NUL-terminated; "" for
 * an id out of range; tokenizer.json: the model.vocab string, e.g. "Ġthe" or
 * "▁the", or an added token's content). Borrowed. */
const char *tokenizer_piece(const tokenizer_t *t, int id);

/* -1 if a and b are the same vocabulary (same size, BOS and EOS, and every
 * id decoding to the same bytes, or a control token in both); otherwise the
 * first id where they differ (the smaller size if one is a prefix of the
 * other). */
int tokenizer_first_difference(const tokenizer_t *a, const tokenizer_t *b);

/* Streaming UTF-8 sanitizer: token pieces may split a multi-byte character
 * (byte-fallback tokens), so bytes are held until a character is complete.
 * Invalid sequences (stray continuation bytes, overlongs, surrogates, code
 * points above U+10FFFF, truncated characters) are replaced with U+FFFD
 * (EF BF BD), one per maximal invalid subpart as Unicode recommends, so the
 * output is always valid UTF-8. Zero-initialise before the first feed. */
typedef struct {
    unsigned char pend[4];
    int n;    /* bytes pending */
    int need; /* total length of the pending sequence */
} utf8_stream_t;

/* Feeds n bytes; writes valid UTF-8 to out, which must hold 3*n + 8 bytes.
 * Returns the number of bytes written. */
size_t utf8_stream_feed(utf8_stream_t *s, const char *in, size_t n, char *out);

/* Ends the stream: an incomplete pending sequence becomes U+FFFD. out must
 * hold 8 bytes. Returns bytes written. */
size_t utf8_stream_flush(utf8_stream_t *s, char *out);

#endif
