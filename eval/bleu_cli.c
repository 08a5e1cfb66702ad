/* bleu_cli.c - `bild bleu`: corpus BLEU of a hypothesis file against one or
 * more reference files (eval/bleu.h: sacreBLEU 2.x's default BLEU), and
 * `bild bleu --extract` to turn a WMT .sgm or IWSLT .xml test set into one
 * segment per line (eval/mtdata.h).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "eval/bleu.h"
#include "eval/mtdata.h"

static const char *BLEU_HELP =
    "usage: bild bleu [options] REF [REF ...] < HYP\n"
    "       bild bleu [options] --hyp HYP REF [REF ...]\n"
    "       bild bleu --extract FILE.sgm|FILE.xml [--unescape]\n"
    "\n"
    "Corpus BLEU of the hypotheses HYP (stdin by default) against the reference\n"
    "files REF, computed as sacreBLEU 2.x computes its default BLEU: the 13a\n"
    "tokenizer, case-sensitive, n-grams up to 4 clipped by the references, the\n"
    "closest reference length for the brevity penalty, exp smoothing. Every file\n"
    "is UTF-8 text with one segment per line; all must have the same number of\n"
    "lines. With several REF files, each line's empty references are left out\n"
    "(a line must have at least one). Prints sacreBLEU's score line, e.g.\n"
    "  BLEU = 27.30 60.1/33.8/20.7/13.0 (BP = 1.000 ratio = 1.012 hyp_len = 1234 ref_len = 1219)\n"
    "and the settings' signature on stderr.\n"
    "\n"
    "  -i, --hyp FILE          the hypotheses (default: stdin)\n"
    "      --tokenize T        13a (default) or none\n"
    "  -lc, --lowercase        case-insensitive (Python's str.lower())\n"
    "      --smooth S          exp (default), none, floor or add-k\n"
    "      --smooth-value V    floor's value (default 0.1) or add-k's k (default 1)\n"
    "      --json              print one JSON object: score, precisions, bp, ratio,\n"
    "                          hyp_len, ref_len, counts, totals, signature, ...\n"
    "  -q, --quiet             no signature line on stderr\n"
    "      --extract FILE      print the segments of a WMT .sgm or IWSLT .xml file,\n"
    "                          one per line, as sacreBLEU's loader extracts them\n"
    "                          (XML entities are left as they are, as sacreBLEU does)\n"
    "      --unescape          with --extract: decode &amp; &lt; &gt; &quot; &apos;\n"
    "                          &#N; &#xN; (not what sacreBLEU scores against)\n"
    "  -h, --help              this help\n"
    "\n"
    "exit status: 0 ok, 1 runtime failure (out of memory, write error),\n"
    "2 bad command line, 3 unreadable or invalid input file (different line\n"
    "counts, an empty reference line, invalid UTF-8, a malformed .sgm/.xml).\n";

/* Options that take a value, for telling their values from the REF arguments. */
static int takes_value(const char *a) {
    static const char *const V[] = {"-i", "--hyp", "--tokenize", "--smooth", "--smooth-value", "--extract"};
    for (size_t i = 0; i < sizeof V / sizeof *V; i++)
        if (!strcmp(a, V[i])) return 1;
    return 0;
}

/* Reads FILE (or stdin for NULL) into lines; prints a message and returns -1 on failure. */
static int read_lines(const char *path, mtdata_lines_t *out) {
    char err[1024];
    FILE *f = path ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "bild bleu: %s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    size_t len;
    char *text = mtdata_read_stream(f, path ? path : "<stdin>", &len, err, sizeof err);
    if (path) fclose(f);
    if (!text) {
        fprintf(stderr, "bild bleu: %s\n", err);
        return -1;
    }
    int rc = mtdata_split_lines(text, len, out);
    free(text);
    if (rc) fprintf(stderr, "bild bleu: %s: out of memory\n", path ? path : "<stdin>");
    return rc;
}

static int run_extract(const char *path, int unescape) {
    char err[1024];
    mtdata_lines_t segs;
    if (mtdata_extract_file(path, unescape ? MTDATA_UNESCAPE : 0, &segs, err, sizeof err)) {
        fprintf(stderr, "bild bleu: %s\n", err);
        return EXIT_INPUT;
    }
    for (size_t i = 0; i < segs.n; i++) fprintf(stdout, "%s\n", segs.s[i]);
    mtdata_lines_free(&segs);
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "bild bleu: write error on stdout\n");
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

static cJSON *json_array(const double *x, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(x[i]));
    return a;
}

int cmd_bleu(int argc, char **argv) {
    const char *hyp_path = NULL, *tok_s = "13a", *smooth_s = "exp", *smooth_v = NULL, *extract = NULL;
    int lowercase = 0, json = 0, quiet = 0, unescape = 0;
    const opt_t opts[] = {
        {"-i", "--hyp", OPT_STR, &hyp_path, 0, 0, 0, NULL},
        {NULL, "--tokenize", OPT_STR, &tok_s, 0, 0, 0, NULL},
        {"-lc", "--lowercase", OPT_FLAG, &lowercase, 0, 0, 0, NULL},
        {NULL, "--smooth", OPT_STR, &smooth_s, 0, 0, 0, NULL},
        {NULL, "--smooth-value", OPT_STR, &smooth_v, 0, 0, 0, NULL},
        {NULL, "--json", OPT_FLAG, &json, 0, 0, 0, NULL},
        {"-q", "--quiet", OPT_FLAG, &quiet, 0, 0, 0, NULL},
        {NULL, "--extract", OPT_STR, &extract, 0, 0, 0, NULL},
        {NULL, "--unescape", OPT_FLAG, &unescape, 0, 0, 0, NULL},
    };
    /* options go to cli_parse, the rest are reference files */
    char **ov = malloc(sizeof *ov * (size_t)(argc + 1)), **refs_p = malloc(sizeof *refs_p * (size_t)(argc + 1));
    if (!ov || !refs_p) {
        free(ov), free(refs_p);
        fprintf(stderr, "bild bleu: out of memory\n");
        return EXIT_RUNTIME;
    }
    int n_ov = 0, n_refs = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            while (++i < argc) refs_p[n_refs++] = argv[i];
            break;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            ov[n_ov++] = argv[i];
            if (takes_value(argv[i]) && i + 1 < argc) ov[n_ov++] = argv[++i];
        } else refs_p[n_refs++] = argv[i];
    }
    int pr = cli_parse("bleu", n_ov, ov, opts, (int)(sizeof opts / sizeof *opts), BLEU_HELP);
    free(ov);
    int rc = EXIT_USAGE;
    bleu_opts_t o = {0};
    mtdata_lines_t hyps = {0}, *refs = NULL;
    const char **hp = NULL, ***rp = NULL;
    if (pr) {
        rc = pr > 0 ? EXIT_OK : EXIT_USAGE;
        goto done;
    }
    if (extract) {
        if (n_refs || hyp_path) {
            cli_usage_error("bleu", "--extract takes one file and no references or --hyp");
            goto done;
        }
        rc = run_extract(extract, unescape);
        goto done;
    }
    if (unescape) {
        cli_usage_error("bleu", "--unescape goes with --extract");
        goto done;
    }
    if (!n_refs) {
        cli_usage_error("bleu", "give at least one reference file");
        goto done;
    }
    if (bleu_parse_tokenize(tok_s, &o.tokenize)) {
        cli_usage_error("bleu", "--tokenize: '%s' is not one of 13a, none", tok_s);
        goto done;
    }
    if (bleu_parse_smooth(smooth_s, &o.smooth)) {
        cli_usage_error("bleu", "--smooth: '%s' is not one of exp, none, floor, add-k", smooth_s);
        goto done;
    }
    if (smooth_v) {
        char *end;
        o.smooth_value = strtod(smooth_v, &end);
        if (end == smooth_v || *end || !isfinite(o.smooth_value) || o.smooth_value < 0) {
            cli_usage_error("bleu", "--smooth-value: '%s' is not a number >= 0", smooth_v);
            goto done;
        }
        if (o.smooth != BLEU_SMOOTH_FLOOR && o.smooth != BLEU_SMOOTH_ADD_K) {
            cli_usage_error("bleu", "--smooth-value goes with --smooth floor or add-k");
            goto done;
        }
        o.smooth_value_set = 1;
    }
    o.lowercase = lowercase;

    rc = EXIT_INPUT;
    if (!(refs = calloc((size_t)n_refs, sizeof *refs))) goto oom;
    if (read_lines(hyp_path, &hyps)) goto done;
    const char *hname = hyp_path ? hyp_path : "<stdin>";
    if (!hyps.n) {
        fprintf(stderr, "bild bleu: %s: no hypotheses (the input is empty)\n", hname);
        goto done;
    }
    for (int r = 0; r < n_refs; r++) {
        if (read_lines(refs_p[r], &refs[r])) goto done;
        if (refs[r].n != hyps.n) {
            fprintf(stderr, "bild bleu: %s has %zu lines but reference %s has %zu; they must match line for line\n",
                    hname, hyps.n, refs_p[r], refs[r].n);
            goto done;
        }
    }
    for (size_t i = 0; i < hyps.n; i++) {
        int any = 0;
        for (int r = 0; r < n_refs && !any; r++) any = refs[r].s[i][0] != 0;
        if (!any) {
            if (n_refs == 1) fprintf(stderr, "bild bleu: %s:%zu: empty reference line\n", refs_p[0], i + 1);
            else fprintf(stderr, "bild bleu: line %zu is empty in every reference file\n", i + 1);
            goto done;
        }
    }
    if (!(hp = malloc(sizeof *hp * hyps.n)) || !(rp = malloc(sizeof *rp * (size_t)n_refs))) goto oom;
    for (size_t i = 0; i < hyps.n; i++) hp[i] = hyps.s[i];
    for (int r = 0; r < n_refs; r++) rp[r] = (const char **)refs[r].s;
    bleu_score_t sc;
    char err[1024], line[512], sig[256];
    rc = EXIT_RUNTIME;
    if (bleu_corpus(&o, hp, hyps.n, (const char *const *const *)rp, n_refs, &sc, err, sizeof err)) {
        fprintf(stderr, "bild bleu: %s\n", err);
        goto done;
    }
    bleu_format(&sc, line, sizeof line);
    bleu_signature(&o, n_refs, sig, sizeof sig);
    if (!json) printf("%s\n", line);
    else {
        cJSON *j = cJSON_CreateObject();
        double counts[BLEU_MAX_ORDER], totals[BLEU_MAX_ORDER];
        for (int k = 0; k < BLEU_MAX_ORDER; k++)
            counts[k] = (double)sc.stats.correct[k], totals[k] = (double)sc.stats.total[k];
        cJSON_AddStringToObject(j, "name", "BLEU");
        cJSON_AddNumberToObject(j, "score", sc.score);
        cJSON_AddItemToObject(j, "precisions", json_array(sc.precisions, BLEU_MAX_ORDER));
        cJSON_AddNumberToObject(j, "bp", sc.bp);
        cJSON_AddNumberToObject(j, "ratio", sc.ratio);
        cJSON_AddNumberToObject(j, "hyp_len", (double)sc.stats.hyp_len);
        cJSON_AddNumberToObject(j, "ref_len", (double)sc.stats.ref_len);
        cJSON_AddItemToObject(j, "counts", json_array(counts, BLEU_MAX_ORDER));
        cJSON_AddItemToObject(j, "totals", json_array(totals, BLEU_MAX_ORDER));
        cJSON_AddNumberToObject(j, "segments", (double)hyps.n);
        cJSON_AddNumberToObject(j, "nrefs", n_refs);
        cJSON_AddStringToObject(j, "signature", sig);
        cJSON_AddStringToObject(j, "verbose_score", line);
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        if (!s) goto oom;
        printf("%s\n", s);
        free(s);
    }
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "bild bleu: write error on stdout\n");
        goto done;
    }
    if (!quiet) fprintf(stderr, "bild bleu: %zu segments, %s\n", hyps.n, sig);
    rc = EXIT_OK;
    goto done;
oom:
    fprintf(stderr, "bild bleu: out of memory\n");
    rc = EXIT_RUNTIME;
done:
    mtdata_lines_free(&hyps);
    if (refs)
        for (int r = 0; r < n_refs; r++) mtdata_lines_free(&refs[r]);
    free(refs), free(hp), free(rp), free(refs_p);
    return rc;
}
