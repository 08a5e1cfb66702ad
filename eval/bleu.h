/* bleu.h - corpus BLEU as sacreBLEU 2.x defines its default `BLEU` metric
 * (sacrebleu/metrics/bleu.py, sacrebleu/tokenizers/tokenizer_13a.py and
 * tokenizer_re.py): the mteval-v13a tokenizer (or none), optional
 * lowercasing, n-grams up to order 4 clipped by the largest count in any
 * reference, corpus-level sums, the "closest" reference length, the
 * brevity penalty, and the smoothing methods exp (the default), none, floor
 * and add-k. The numbers are computed in the same order as sacreBLEU's
 * Python, so that a score agrees with it to the last bits.
 *
 * Text is UTF-8. Whitespace means what Python's str.split() and str.strip()
 * take for it (eval_space_len), since sacreBLEU splits tokens with them: an
 * NBSP or U+3000 separates tokens too.
 */
#ifndef BILD_EVAL_BLEU_H
#define BILD_EVAL_BLEU_H

#include <stddef.h>
#include <stdint.h>

#define BLEU_MAX_ORDER 4 /* sacreBLEU's MAX_NGRAM_ORDER */

typedef enum { BLEU_TOK_13A, BLEU_TOK_NONE } bleu_tokenize_t;
typedef enum { BLEU_SMOOTH_EXP, BLEU_SMOOTH_NONE, BLEU_SMOOTH_FLOOR, BLEU_SMOOTH_ADD_K } bleu_smooth_t;

/* The metric's settings; {0} is sacreBLEU's default (13a, case-sensitive,
 * exp smoothing, no effective order). */
typedef struct {
    bleu_tokenize_t tokenize;
    int lowercase;           /* Python's str.lower() on hypotheses and references (needs ICU for non-ASCII) */
    bleu_smooth_t smooth;
    int smooth_value_set;    /* else floor takes 0.1 and add-k 1, sacreBLEU's SMOOTH_DEFAULTS */
    double smooth_value;
    int effective_order;     /* average only the orders that have n-grams (sacreBLEU's sentence-BLEU mode) */
} bleu_opts_t;

/* Sufficient statistics: sums over segments. */
typedef struct {
    int64_t hyp_len, ref_len;            /* tokens; ref_len sums each segment's closest reference length */
    int64_t correct[BLEU_MAX_ORDER];     /* clipped n-gram matches, order n at [n - 1] */
    int64_t total[BLEU_MAX_ORDER];       /* hypothesis n-grams */
} bleu_stats_t;

typedef struct {
    double score;                        /* 0..100 */
    double precisions[BLEU_MAX_ORDER];   /* percent, after smoothing; all 0 when nothing matched */
    double bp, ratio;                    /* brevity penalty; hyp_len / ref_len (0 when ref_len is 0) */
    bleu_stats_t stats;                  /* the counts it came from, unsmoothed */
} bleu_score_t;

/* The byte length of the whitespace character at s[0..n) (one of the 29
 * code points for which Python's str.isspace() is true), or 0. */
size_t eval_space_len(const char *s, size_t n);

/* sacreBLEU's _preprocess_segment: lowercase (if o->lowercase), strip
 * trailing whitespace, then tokenize (13a: see bleu.c; none: as is).
 * Returns the result, NUL-terminated, with its length in *out_len (may be
 * NULL); caller frees. NULL with a message when out of memory or when
 * lowercasing cannot be done (non-ASCII text in a build without ICU,
 * invalid UTF-8). */
char *bleu_preprocess(const bleu_opts_t *o, const char *s, size_t n, size_t *out_len, char *err, size_t errlen);

/* Adds one segment to st: the hypothesis against refs[0..n_refs). As in
 * sacreBLEU's API, a reference that is "" (exactly empty) is left out of
 * this segment, and a segment whose references are all empty is an error.
 * Returns 0, or -1 with a message (st is then unchanged). */
int bleu_add_segment(const bleu_opts_t *o, const char *hyp, const char *const *refs, int n_refs, bleu_stats_t *st,
                     char *err, size_t errlen);

/* sacreBLEU's BLEU.compute_bleu: the score from the sums. Pure. */
void bleu_compute(const bleu_stats_t *st, const bleu_opts_t *o, bleu_score_t *out);

/* Corpus BLEU of hyps[0..n) against refs[r][0..n) for r < n_refs (as
 * sacreBLEU's corpus_score). Returns 0, or -1 with a message naming the
 * segment (0-based index + 1). */
int bleu_corpus(const bleu_opts_t *o, const char *const *hyps, size_t n, const char *const *const *refs, int n_refs,
                bleu_score_t *out, char *err, size_t errlen);

/* sacreBLEU's score line with two decimals, e.g. "BLEU = 27.30
 * 60.1/33.8/20.7/13.0 (BP = 1.000 ratio = 1.012 hyp_len = 1234 ref_len =
 * 1219)". Returns snprintf's count. */
int bleu_format(const bleu_score_t *s, char *buf, size_t n);

/* The sacreBLEU-style signature of the settings, without the version:
 * "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp". Returns snprintf's count. */
int bleu_signature(const bleu_opts_t *o, int n_refs, char *buf, size_t n);

/* Names <-> values: "13a", "none"; "exp", "none", "floor", "add-k".
 * The parsers return 0, or -1 for an unknown name. */
const char *bleu_tokenize_name(bleu_tokenize_t t);
const char *bleu_smooth_name(bleu_smooth_t s);
int bleu_parse_tokenize(const char *name, bleu_tokenize_t *out);
int bleu_parse_smooth(const char *name, bleu_smooth_t *out);

#endif
