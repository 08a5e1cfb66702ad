/* bild.c - BiLD against the large model alone, on the 20 TinyStories prompts,
 * all configurations interleaved prompt by prompt in one run (so drift of
 * the machine hits them alike). Greedy.
 *
 * Reports per configuration: speedup over the large model alone (total
 * time), fraction of tokens from the small model, fallbacks and rollbacks
 * per 100 tokens, quality against the large model's own greedy text (exact
 * match of the whole output, token ROUGE-L F1) and the large model's mean
 * negative log-likelihood of the output (teacher-forced), the paper's
 * predicted speedup n / (N_L + c N_S), a cost-model prediction that also
 * charges each large pass for its block length, and the systems efficiency
 * = measured speedup / cost-model prediction.
 *
 * The costs are measured here first: a small step, and a large pass over
 * T = 1..16 tokens (fitted as a + b T).
 *
 * --small may be given up to 4 times: every small model runs every BiLD
 * configuration in the same interleaved loop, against the one large-alone
 * baseline, and gets its own table (e.g. the provisional small model beside
 * the aligned one, as the paper's Table 1 sets unaligned beside aligned).
 *
 * A --small PATH uses the draft vocabulary beside it (draft_vocab.txt, all of
 * its ids) as bild generate does; PATH:K its first K ids; PATH:0 the full
 * vocabulary (e.g. --small S:0 --small S:2048 to set them side by side).
 *
 * --only SUBSTRING runs only the configurations whose name contains it
 * (besides the large model alone), e.g. --only "rb 0.5"; several
 * substrings separated by '|' select the configurations with any of them.
 *
 * --tsv FILE also writes every row as tab-separated values (small model,
 * kind, configuration, speedup, ROUGE-L, NLL, exact count), the oracle as
 * kind "oracle" (speedup predicted, quality the large model's), for
 * bench/pareto.sh's plot.
 *
 * usage: bench/bild [--large PATH] [--small PATH]... [--tokenizer PATH] [-n N] [--threads N] [--only S] [--tsv F]
 * Not a test: it prints numbers and asserts nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "coordinator/policy.h"
#include "coordinator/session.h"
#include "kernels/cpu/cpu.h"
#include "large_worker/verifier.h"
#include "model/generate.h"
#include "small_worker/drafter.h"

#define NP 20
#define MAX_SMALL 4

typedef struct {
    const char *name;
    policy_params_t pp;
    double time_s;
    long n, small, fallbacks, rollbacks, NL, NS, Lpos, Spos, exact;
    double rouge, nll;
    double model_L, model_S; /* predicted time from the measured pass costs: large passes, small steps */
    double large_s, small_s;  /* measured time inside the large and the small worker's calls */
} config_t;

/* Token-level ROUGE-L F1 (longest common subsequence). */
static double rouge_l(const int *a, int na, const int *b, int nb) {
    if (!na || !nb) return na == nb;
    int *prev = calloc((size_t)nb + 1, sizeof(int)), *cur = calloc((size_t)nb + 1, sizeof(int));
    for (int i = 1; i <= na; i++) {
        for (int j = 1; j <= nb; j++)
            cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : (cur[j - 1] > prev[j] ? cur[j - 1] : prev[j]);
        int *t = prev;
        prev = cur, cur = t;
    }
    double lcs = prev[nb], p = lcs / na, r = lcs / nb;
    free(prev), free(cur);
    return p + r > 0 ? 2 * p * r / (p + r) : 0;
}

/* Mean -log p_L of out given prompt, teacher-forced in blocks. */
static double mean_nll(transformer_t *tf, const int *prompt, int np, const int *out, int n) {
    int seq[512], L = np + n;
    memcpy(seq, prompt, sizeof(int) * np);
    memcpy(seq + np, out, sizeof(int) * n);
    double sum = 0;
    int B = transformer_max_block(tf);
    transformer_truncate(tf, 0);
    if (np > 1) transformer_forward(tf, seq, np - 1, 0, LOGITS_LAST);
    for (int pos = np - 1; pos < L - 1;) { /* logits at pos predict seq[pos + 1] */
        int T = L - 1 - pos < B ? L - 1 - pos : B;
        float nll[64];
        transformer_forward(tf, seq + pos, T, pos, LOGITS_ALL);
        transformer_logits_stats(tf, T, seq + pos + 1, NULL, NULL, nll);
        for (int t = 0; t < T; t++) sum += nll[t];
        pos += T;
    }
    return n ? sum / n : 0;
}

/* The small model teacher-forced on prompt + out: am[g], mp[g] = its greedy
 * token and max probability at the position that predicts out[g]. */
static void teacher_forced(transformer_t *tf, const int *prompt, int np, const int *out, int n, int *am, float *mp) {
    int seq[512], L = np + n, B = transformer_max_block(tf);
    memcpy(seq, prompt, sizeof(int) * np);
    memcpy(seq + np, out, sizeof(int) * n);
    transformer_truncate(tf, 0);
    if (np > 1) transformer_forward(tf, seq, np - 1, 0, LOGITS_LAST);
    for (int pos = np - 1; pos < L - 1;) {
        int T = L - 1 - pos < B ? L - 1 - pos : B;
        transformer_forward(tf, seq + pos, T, pos, LOGITS_ALL);
        transformer_logits_stats(tf, T, NULL, am + pos - (np - 1), mp + pos - (np - 1), NULL);
        pos += T;
    }
}

/* What any fallback policy could reach with this small model, and how well
 * its confidence points at its mistakes, from its greedy predictions along
 * the large model's own greedy text (exact output). */
#define NFB 5
static const float fb_grid[NFB] = {0.3f, 0.5f, 0.6f, 0.7f, 0.8f};
typedef struct {
    long n, wrong;                      /* positions; small greedy token != large's */
    long below[NFB], wrong_above[NFB];  /* max p < fb (a fallback); mistakes at max p >= fb (missed) */
    double model_s;                     /* oracle: a large pass exactly at each mistake */
} oracle_t;

static void oracle_add(oracle_t *o, const int *am, const float *mp, const int *out, int n, const double *tL,
                       double a, double b, double t_small) {
    int last = -1; /* generated index of the last large-model token (-1: the prompt) */
    for (int g = 0; g < n; g++) {
        int bad = am[g] != out[g];
        o->n++, o->wrong += bad;
        for (int f = 0; f < NFB; f++) o->below[f] += mp[g] < fb_grid[f], o->wrong_above[f] += bad && mp[g] >= fb_grid[f];
        if (bad) { /* one large pass over the tokens since its last one, ending in its token out[g] */
            int T = g - last;
            o->model_s += T <= 24 ? tL[T] : a + b * T;
            last = g;
        }
    }
    o->model_s += n * t_small; /* the small model steps once per position */
}

static double median(double *x, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && x[j] < x[j - 1]; j--) {
            double t = x[j];
            x[j] = x[j - 1], x[j - 1] = t;
        }
    return x[n / 2];
}

/* One small model: its weights, engine, drafter and measured step cost. */
typedef struct {
    const char *path;
    model_file_t *m;
    transformer_t *tf;
    drafter_t *dr;
    small_link_t link;
    double t_small;
    double c_best; /* best small step / best large step, interleaved */
} small_t;

/* exact text: rollback 0.5 < ln 2, and the small model resumes right after a rollback (--direct) */
#define DIRECT_CFG(fb, ms) {.name = "BiLD fb " #fb " rb 0.5 ms " #ms " direct", .pp = {.mode = POLICY_BILD, .direct = 1, .alpha_fb = fb##f, .alpha_rb = 0.5f, .max_small = ms}}
#define BILD_CFG(fb, rb) {.name = "BiLD fb " #fb " rb " #rb, .pp = {.mode = POLICY_BILD, .alpha_fb = fb##f, .alpha_rb = rb, .max_small = 10}}
/* a grid over the two thresholds: fallback (lower: the small model goes on
 * longer) and rollback (lower: closer to the large model's own text; below
 * ln 2 = 0.69 nats every kept token has p_L > 1/2, so it is the large
 * model's greedy choice and BiLD's text is the large model's) */
static const config_t configs[] = {
    BILD_CFG(0.2, 0.5), BILD_CFG(0.3, 0.5), BILD_CFG(0.5, 0.5), BILD_CFG(0.6, 0.5), BILD_CFG(0.7, 0.5),
    DIRECT_CFG(0.2, 10), DIRECT_CFG(0.3, 10), DIRECT_CFG(0.4, 10), DIRECT_CFG(0.5, 10),
    DIRECT_CFG(0.2, 3), DIRECT_CFG(0.3, 3), DIRECT_CFG(0.4, 3),
    DIRECT_CFG(0.2, 4), DIRECT_CFG(0.25, 4), DIRECT_CFG(0.3, 4), DIRECT_CFG(0.35, 4), DIRECT_CFG(0.4, 4), DIRECT_CFG(0.5, 4),
    DIRECT_CFG(0.2, 5), DIRECT_CFG(0.3, 5), DIRECT_CFG(0.4, 5),
    DIRECT_CFG(0.2, 6), DIRECT_CFG(0.3, 6), DIRECT_CFG(0.4, 6), DIRECT_CFG(0.5, 6),
    DIRECT_CFG(0.3, 8), DIRECT_CFG(0.4, 8),
    BILD_CFG(0.2, 1), BILD_CFG(0.2, 2), BILD_CFG(0.2, 3),
    BILD_CFG(0.3, 1), BILD_CFG(0.3, 2), BILD_CFG(0.3, 3),
    BILD_CFG(0.4, 1), BILD_CFG(0.4, 2), BILD_CFG(0.4, 3),
    BILD_CFG(0.5, 1), BILD_CFG(0.5, 2), BILD_CFG(0.5, 3),
    BILD_CFG(0.6, 5), BILD_CFG(0.8, 5),
    {.name = "BiLD fb 0.6 rb 5 faithful", .pp = {.mode = POLICY_BILD, .faithful = 1, .alpha_fb = 0.6f, .alpha_rb = 5, .max_small = 10}},
    {.name = "spec gamma 3 (greedy)", .pp = {.mode = POLICY_SPEC, .max_small = 3}},
    {.name = "spec gamma 4 (greedy)", .pp = {.mode = POLICY_SPEC, .max_small = 4}},
    {.name = "spec gamma 6 (greedy)", .pp = {.mode = POLICY_SPEC, .max_small = 6}},
    {.name = "spec gamma 8 (greedy)", .pp = {.mode = POLICY_SPEC, .max_small = 8}},
    {.name = "small alone", .pp = {.mode = POLICY_SMALL}},
};
#define NCONF ((int)(sizeof configs / sizeof *configs))

/* name contains one of the '|'-separated substrings of pat */
static int name_matches(const char *name, const char *pat) {
    for (const char *p = pat;;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        for (const char *q = name; *q; q++)
            if (n && !strncmp(q, p, n)) return 1;
        if (!bar) return 0;
        p = bar + 1;
    }
}

int main(int argc, char **argv) {
    const char *lp = "models/stories15M/stories15M.bin", *tp = NULL;
    const char *sp[MAX_SMALL] = {"tools/align/stories15M-aligned"};
    const char *only = NULL, *tsv_path = NULL;
    int N = 128, threads = 0, ns = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--large") && i + 1 < argc) lp = argv[++i];
        else if (!strcmp(argv[i], "--small") && i + 1 < argc && ns < MAX_SMALL) sp[ns++] = argv[++i];
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tp = argv[++i];
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) N = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--tsv") && i + 1 < argc) tsv_path = argv[++i];
        else {
            fprintf(stderr, "usage: bild [--large PATH] [--small PATH (up to %d times)] [--tokenizer PATH] [-n N] "
                            "[--threads N] [--only SUBSTRING] [--tsv FILE]\n", MAX_SMALL);
            return 2;
        }
    }
    if (!ns) ns = 1;
    if (N < 1 || N > 200) N = 128;
    char err[512], tokbuf[1024];
    model_file_t *ml = model_open(lp, err, sizeof err);
    if (ml && !cpu_packs_weights()) model_hugepages(ml, NULL); /* as bild's CPU commands hold weights */
    small_t sm[MAX_SMALL] = {{0}};
    char spath[MAX_SMALL][1024];
    int stop_k[MAX_SMALL]; /* -1: the whole default draft vocabulary; 0: none; K: its first K */
    for (int k = 0; ml && k < ns; k++) {
        const char *colon = strrchr(sp[k], ':');
        int plen = colon ? (int)(colon - sp[k]) : (int)strlen(sp[k]);
        snprintf(spath[k], sizeof spath[k], "%.*s", plen, sp[k]);
        stop_k[k] = colon ? atoi(colon + 1) : -1;
        sm[k].path = sp[k];
        if (!(sm[k].m = model_open(spath[k], err, sizeof err))) break;
        if (!cpu_packs_weights()) model_hugepages(sm[k].m, NULL);
    }
    if (!ml || !sm[ns - 1].m) {
        fprintf(stderr, "bench/bild: %s (run `make models` first)\n", err);
        return 1;
    }
    if (!tp) {
        const char *slash = strrchr(lp, '/');
        snprintf(tokbuf, sizeof tokbuf, "%.*stokenizer.bin", slash ? (int)(slash - lp + 1) : 0, lp);
        tp = tokbuf;
    }
    tokenizer_t *tok = tokenizer_load_llama2c(tp, model_config(ml)->vocab_size, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "bench/bild: %s\n", err);
        return 1;
    }
    backend_t *be = backend_cpu_new(threads);
    transformer_t *tfl = transformer_new(be, model_config(ml), model_weights(ml), BILD_MAX_DRAFT, err, sizeof err);
    if (!tfl) {
        fprintf(stderr, "bench/bild: %s: %s\n", lp, err);
        return 1;
    }
    /* greedy: the large model alone takes its argmaxes through the classifier's int8 screen, as bild run does
     * (its fastest way; BILD_SCREEN=0 for the full classifier); BiLD's prompt passes too */
    transformer_prepare_greedy(tfl);
    for (int k = 0; k < ns; k++) {
        if (model_config(sm[k].m)->vocab_size != model_config(ml)->vocab_size) {
            fprintf(stderr, "bench/bild: %s: vocabulary of %d tokens, the large model has %d\n", sm[k].path,
                    model_config(sm[k].m)->vocab_size, model_config(ml)->vocab_size);
            return 1;
        }
        sm[k].tf = transformer_new(be, model_config(sm[k].m), model_weights(sm[k].m), BILD_MAX_DRAFT, err, sizeof err);
        if (!sm[k].tf) {
            fprintf(stderr, "bench/bild: %s: %s\n", sm[k].path, err);
            return 1;
        }
        char used[1024];
        int hk = cli_draft_vocab(sm[k].tf, spath[k], stop_k[k] == 0 ? "none" : NULL, stop_k[k] > 0 ? stop_k[k] : 0,
                                 used, sizeof used, err, sizeof err);
        if (hk < 0) {
            fprintf(stderr, "bench/bild: %s\n", err);
            return 1;
        }
        if (hk) printf("small model %s drafts over %d tokens (%s)\n", sm[k].path, hk, used);
        sm[k].dr = drafter_new(sm[k].tf, NULL, 0, 2, 1);
        sm[k].link = drafter_link(sm[k].dr);
    }
    verifier_t *vf = verifier_new(tfl, NULL, 0);
    large_link_t ll = verifier_link(vf);

    int prompts[NP][64], np[NP];
    FILE *f = fopen("tests/data/prompts20.txt", "r");
    char line[1024];
    for (int i = 0; i < NP; i++) {
        if (!f || !fgets(line, sizeof line, f)) {
            fprintf(stderr, "bench/bild: cannot read tests/data/prompts20.txt\n");
            return 1;
        }
        line[strcspn(line, "\n")] = 0;
        np[i] = tokenizer_encode(tok, line, 1, prompts[i], 64);
    }
    fclose(f);

    /* costs: a small step; a large pass over T tokens, at position 64 */
    int toks[96];
    for (int i = 0; i < 96; i++) toks[i] = i ? 3 + (i * 7919) % 31000 : 1;
    double ts[41], tl[31];
    for (int k = 0; k < ns; k++) {
        transformer_forward(sm[k].tf, toks, 64, 0, LOGITS_LAST);
        for (int r = 0; r < 41; r++) {
            double t0 = now_s();
            transformer_forward(sm[k].tf, toks + 64, 1, 64, LOGITS_LAST);
            int am;
            float mp;
            transformer_logits_stats(sm[k].tf, 1, NULL, &am, &mp, NULL); /* as a draft step does */
            ts[r] = now_s() - t0;
        }
        sm[k].t_small = median(ts, 41);
    }
    transformer_forward(tfl, toks, 64, 0, LOGITS_LAST);
    double tL[25] = {0};
    for (int T = 1; T <= 24; T++) {
        for (int r = 0; r < 31; r++) {
            double t0 = now_s();
            transformer_forward(tfl, toks + 64, T, 64, LOGITS_ALL);
            int am[24];
            float nll[24];
            transformer_logits_stats(tfl, T, NULL, am, NULL, nll);
            tl[r] = now_s() - t0;
        }
        tL[T] = median(tl, 31);
    }
    /* the large model alone's step: T = 1 and the argmax alone, through the classifier's screen */
    for (int r = 0; r < 31; r++) {
        double t0 = now_s();
        transformer_run(tfl, toks + 64, 1, 64, LOGITS_LAST);
        int am;
        transformer_logits_stats(tfl, 1, NULL, &am, NULL, NULL);
        tl[r] = now_s() - t0;
    }
    const double tG = median(tl, 31);
    /* c once more, robust to the machine's drift: small steps and large
     * T = 1 passes alternating, the best of 101 each (the medians above
     * feed the cost model, which wants typical times) */
    for (int k = 0; k < ns; k++) {
        double bs = 1e30, bl = 1e30;
        for (int r = 0; r < 101; r++) {
            int am;
            float mp;
            double t0 = now_s();
            transformer_forward(sm[k].tf, toks + 64, 1, 64, LOGITS_LAST);
            transformer_logits_stats(sm[k].tf, 1, NULL, &am, &mp, NULL);
            double t1 = now_s();
            transformer_forward(tfl, toks + 64, 1, 64, LOGITS_ALL);
            transformer_logits_stats(tfl, 1, NULL, &am, &mp, NULL);
            double t2 = now_s();
            if (t1 - t0 < bs) bs = t1 - t0;
            if (t2 - t1 < bl) bl = t2 - t1;
        }
        sm[k].c_best = bs / bl;
    }
    /* least squares a + b T over T = 1..24, for blocks longer than 24 */
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int T = 1; T <= 24; T++) sx += T, sy += tL[T], sxx += (double)T * T, sxy += T * tL[T];
    double b = (24 * sxy - sx * sy) / (24 * sxx - sx * sx), a = (sy - b * sx) / 24;

    /* --only: the configurations whose name contains it */
    config_t sel[NCONF];
    int nconf = 0;
    for (int c = 0; c < NCONF; c++)
        if (!only || name_matches(configs[c].name, only)) sel[nconf++] = configs[c];
    /* cf[0]: the large model alone (shared); then nconf configurations per small model */
    static config_t cf[1 + MAX_SMALL * NCONF];
    cf[0] = (config_t){.name = "large alone", .pp = {.mode = POLICY_LARGE}};
    for (int k = 0; k < ns; k++)
        for (int c = 0; c < nconf; c++) cf[1 + k * nconf + c] = sel[c];
    int NC = 1 + ns * nconf;
    static int large_out[NP][256];
    int large_n[NP];
    oracle_t orc[MAX_SMALL] = {{0}};
    double alone_model_s = 0; /* the large model alone, one T = 1 pass per token */
    for (int i = 0; i < NP; i++)
        for (int c = 0; c < NC; c++) {
            int k = c ? (c - 1) / nconf : 0; /* the small model (unused by large alone) */
            policy_params_t pp = cf[c].pp;
            pp.max_new = N, pp.vocab_size = model_config(ml)->vocab_size;
            pp.stop_a = model_config(ml)->eos_id, pp.stop_b = model_config(ml)->bos_id;
            policy_t *p = policy_new(&pp, prompts[i], np[i], err, sizeof err);
            session_times_t tm;
            if (!p || session_run(p, &sm[k].link, &ll, 0, &tm, err, sizeof err)) {
                fprintf(stderr, "bench/bild: %s\n", err);
                return 1;
            }
            int n;
            const int *out = policy_output(p, &n);
            const policy_stats_t *s = policy_stats(p);
            if (c == 0) {
                memcpy(large_out[i], out, sizeof(int) * (size_t)(large_n[i] = n));
                alone_model_s += n * tG;
                for (int j = 0; j < ns; j++) {
                    int am[256];
                    float mp[256];
                    teacher_forced(sm[j].tf, prompts[i], np[i], out, n, am, mp);
                    oracle_add(&orc[j], am, mp, out, n, tL, a, b, sm[j].t_small);
                }
            }
            config_t *q = &cf[c];
            q->time_s += tm.total_s, q->n += n, q->small += s->small_tokens, q->fallbacks += s->fallbacks;
            q->rollbacks += s->rollbacks, q->NL += s->large_passes, q->NS += s->small_passes;
            q->Lpos += s->large_positions, q->Spos += s->small_positions;
            for (int T = 1; T <= BILD_MAX_DRAFT; T++) /* measured cost of each pass length (alone: greedy steps) */
                q->model_L += s->large_pass_len[T] * (c == 0 && T == 1 ? tG : T <= 24 ? tL[T] : a + b * T);
            q->model_S += s->small_passes * sm[k].t_small;
            q->large_s += tm.large_s, q->small_s += tm.small_s;
            q->exact += n == large_n[i] && !memcmp(out, large_out[i], sizeof(int) * (size_t)n);
            q->rouge += rouge_l(out, n, large_out[i], large_n[i]);
            q->nll += mean_nll(tfl, prompts[i], np[i], out, n);
            policy_destroy(&p);
        }

    printf("bench/bild: large %s; cpu/%s, %d threads; %d prompts x %d new tokens, greedy; all configurations of all "
           "%d small model(s) interleaved prompt by prompt\n",
           lp, be->isa, be->n_threads, NP, N, ns);
    printf("\ncosts: large pass over T tokens (ms):");
    for (int T = 1; T <= 16; T *= 2) printf("  T=%d %.3f", T, tL[T] * 1e3);
    printf("\n  fit a + b T over T <= 24 (used beyond): a = %.3f ms, b = %.3f ms\n", a * 1e3, b * 1e3);
    printf("  the large model alone's greedy step (T = 1, the argmax through the classifier's screen): %.3f ms\n",
           tG * 1e3);
    double base = cf[0].time_s;
    FILE *tsv = tsv_path ? fopen(tsv_path, "w") : NULL;
    if (tsv_path && !tsv) fprintf(stderr, "bench/bild: cannot write %s\n", tsv_path);
    if (tsv) fprintf(tsv, "small\tkind\tconfig\tspeedup\trougeL\tnll\texact\n");
    for (int k = 0; k < ns; k++) {
        double cst = sm[k].t_small / tL[1];
        printf("\nsmall model %s: step %.3f ms, c = small step / large step = %.3f (medians), %.3f (best of 101, "
               "interleaved)\n", sm[k].path, sm[k].t_small * 1e3, cst, sm[k].c_best);
        printf("%-26s %7s %7s %6s %6s %6s %6s %7s %7s %8s %8s %6s\n", "config", "speedup", "small%", "fb/100",
               "rb/100", "exact", "rougeL", "nll_L", "paper", "costmdl", "effic.", "tok/s");
        for (int j = 0; j <= nconf; j++) {
            config_t *q = j ? &cf[1 + k * nconf + j - 1] : &cf[0];
            int alone = q->pp.mode == POLICY_SMALL; /* no paper prediction */
            double speed = base / q->time_s * q->n / cf[0].n; /* per token, so early stops do not count as speed */
            double paper = !alone && q->NL + cst * q->NS > 0 ? q->n / (q->NL + cst * q->NS) : 0;
            /* cost model: each large pass charged the measured time of its
             * length; each small pass one small step (catch-up passes are short) */
            double costmdl = (cf[0].model_L + cf[0].model_S) / cf[0].n / ((q->model_L + q->model_S) / q->n);
            printf("%-26s %7.2f %7.1f %6.1f %6.1f %3ld/%-2d %6.3f %7.3f %7.2f %8.2f %8.2f %6.0f\n", q->name, speed,
                   100.0 * q->small / q->n, 100.0 * q->fallbacks / q->n, 100.0 * q->rollbacks / q->n, q->exact, NP,
                   q->rouge / NP, q->nll / NP, paper, costmdl, speed / costmdl, q->n / q->time_s);
            if (tsv) {
                const char *kind = !j ? "large" : q->pp.mode == POLICY_SPEC ? "spec" : alone ? "small"
                                 : q->pp.alpha_rb < 0.6931f && !q->pp.faithful ? "bild-exact" : "bild";
                fprintf(tsv, "%s\t%s\t%s\t%.4f\t%.4f\t%.4f\t%ld\n", sm[k].path, kind, q->name, speed, q->rouge / NP,
                        q->nll / NP, q->exact);
            }
        }
        printf("where the time goes, ms per 100 tokens: measured (cost model); rest = the policy, the drafter's and\n"
               "the verifier's work outside the forward passes, and the calls themselves\n");
        printf("%-26s %16s %16s %8s %8s\n", "config", "large calls", "small calls", "rest", "total");
        for (int j = 0; j <= nconf; j++) {
            config_t *q = j ? &cf[1 + k * nconf + j - 1] : &cf[0];
            double u = 1e5 / q->n;
            printf("%-26s %7.1f (%6.1f) %7.1f (%6.1f) %8.1f %8.1f\n", q->name, q->large_s * u, q->model_L * u,
                   q->small_s * u, q->model_S * u, (q->time_s - q->large_s - q->small_s) * u, q->time_s * u);
        }
        oracle_t *o = &orc[k];
        double e = (double)o->wrong / o->n;
        printf("oracle (a large pass exactly where the small model's greedy token differs from the large model's, so\n"
               "  the text is the large model's): agreement %.1f%%, %.1f mistakes/100; predicted speedup %.2f "
               "(paper-style %.2f)\n",
               100 * (1 - e), 100 * e, alone_model_s / o->model_s, 1 / (e + cst));
        if (tsv)
            fprintf(tsv, "%s\toracle\toracle (predicted)\t%.4f\t%.4f\t%.4f\t%d\n", sm[k].path, alone_model_s / o->model_s,
                    1.0, cf[0].nll / NP, NP);
        printf("  fallback threshold         ");
        for (int x = 0; x < NFB; x++) printf("  %5.1f", fb_grid[x]);
        printf("\n  fallbacks/100 (max p < fb)  ");
        for (int x = 0; x < NFB; x++) printf("  %5.1f", 100.0 * o->below[x] / o->n);
        printf("\n  mistakes not caught (/100) ");
        for (int x = 0; x < NFB; x++) printf("  %5.1f", 100.0 * o->wrong_above[x] / o->n);
        printf("\n");
    }
    printf("\nspeedup = (tokens/s) / (tokens/s of the large model alone), all runs interleaved in this process.\n"
           "paper = n / (N_L + c N_S) (every pass one step); costmdl = predicted speedup from the measured cost of\n"
           "each pass (large: by its block length; small: one step), relative to the same prediction for the large\n"
           "model alone; effic. = speedup / costmdl (systems efficiency). exact = outputs identical to the large model's.\n"
           "oracle: the small model teacher-forced along the large model's greedy text; predicted speedup by the same\n"
           "cost model (a pass over the tokens since the last large token at each mistake, a small step per token);\n"
           "the bound for any policy that keeps the text exact. Mistakes not caught: greedy tokens that differ from\n"
           "the large model's at max p >= fb (a fallback policy must find them by rollback, at the next large pass).\n");
    if (tsv) fclose(tsv);
    verifier_destroy(&vf);
    for (int k = 0; k < ns; k++) {
        drafter_destroy(&sm[k].dr);
        transformer_destroy(&sm[k].tf);
        model_close(&sm[k].m);
    }
    transformer_destroy(&tfl);
    backend_destroy(&be);
    tokenizer_destroy(&tok);
    model_close(&ml);
    return 0;
}
