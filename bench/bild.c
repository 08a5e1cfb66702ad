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
 * usage: bench/bild [--large PATH] [--small PATH] [--tokenizer PATH] [-n N] [--threads N]
 * Not a test: it prints numbers and asserts nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/policy.h"
#include "coordinator/session.h"
#include "kernels/cpu/cpu.h"
#include "large_worker/verifier.h"
#include "model/generate.h"
#include "small_worker/drafter.h"

#define NP 20

typedef struct {
    const char *name;
    policy_params_t pp;
    double time_s;
    long n, small, fallbacks, rollbacks, NL, NS, Lpos, Spos, exact;
    double rouge, nll;
    double model_s; /* predicted time from the measured pass costs */
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

static double median(double *x, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && x[j] < x[j - 1]; j--) {
            double t = x[j];
            x[j] = x[j - 1], x[j - 1] = t;
        }
    return x[n / 2];
}

int main(int argc, char **argv) {
    const char *lp = "models/stories15M/stories15M.bin", *sp = "../shared/models/stories15M-small/small.bin",
               *tp = NULL;
    int N = 128, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--large") && i + 1 < argc) lp = argv[++i];
        else if (!strcmp(argv[i], "--small") && i + 1 < argc) sp = argv[++i];
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tp = argv[++i];
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) N = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bild [--large PATH] [--small PATH] [--tokenizer PATH] [-n N] [--threads N]\n");
            return 2;
        }
    }
    if (N < 1 || N > 200) N = 128;
    char err[512], tokbuf[1024];
    model_file_t *ml = model_open(lp, err, sizeof err), *ms = ml ? model_open(sp, err, sizeof err) : NULL;
    if (!ml || !ms) {
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
    transformer_t *tfs = transformer_new(be, model_config(ms), model_weights(ms), BILD_MAX_DRAFT, err, sizeof err);
    drafter_t *dr = drafter_new(tfs, NULL, 0, 2, 1);
    verifier_t *vf = verifier_new(tfl, NULL, 0);
    small_link_t sl = drafter_link(dr);
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
    transformer_forward(tfs, toks, 64, 0, LOGITS_LAST);
    for (int r = 0; r < 41; r++) {
        double t0 = now_s();
        transformer_forward(tfs, toks + 64, 1, 64, LOGITS_LAST);
        int am;
        float mp;
        transformer_logits_stats(tfs, 1, NULL, &am, &mp, NULL); /* as a draft step does */
        ts[r] = now_s() - t0;
    }
    double t_small = median(ts, 41);
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
    /* least squares a + b T over T = 1..24, for blocks longer than 24 */
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int T = 1; T <= 24; T++) sx += T, sy += tL[T], sxx += (double)T * T, sxy += T * tL[T];
    double b = (24 * sxy - sx * sy) / (24 * sxx - sx * sx), a = (sy - b * sx) / 24;

    config_t cf[] = {
        {.name = "large alone", .pp = {.mode = POLICY_LARGE}},
        {.name = "BiLD fb 0.3 rb 2", .pp = {.mode = POLICY_BILD, .alpha_fb = 0.3f, .alpha_rb = 2, .max_small = 10}},
        {.name = "BiLD fb 0.5 rb 3", .pp = {.mode = POLICY_BILD, .alpha_fb = 0.5f, .alpha_rb = 3, .max_small = 10}},
        {.name = "BiLD fb 0.6 rb 5", .pp = {.mode = POLICY_BILD, .alpha_fb = 0.6f, .alpha_rb = 5, .max_small = 10}},
        {.name = "BiLD fb 0.8 rb 5", .pp = {.mode = POLICY_BILD, .alpha_fb = 0.8f, .alpha_rb = 5, .max_small = 10}},
        {.name = "BiLD fb 0.6 rb 5 faithful", .pp = {.mode = POLICY_BILD, .faithful = 1, .alpha_fb = 0.6f, .alpha_rb = 5, .max_small = 10}},
        {.name = "spec gamma 4 (greedy)", .pp = {.mode = POLICY_SPEC, .max_small = 4}},
        {.name = "small alone", .pp = {.mode = POLICY_SMALL}},
    };
    int NC = (int)(sizeof cf / sizeof *cf);
    static int large_out[NP][256];
    int large_n[NP];
    for (int i = 0; i < NP; i++)
        for (int c = 0; c < NC; c++) {
            policy_params_t pp = cf[c].pp;
            pp.max_new = N, pp.vocab_size = 32000, pp.stop_a = 2, pp.stop_b = 1;
            policy_t *p = policy_new(&pp, prompts[i], np[i], err, sizeof err);
            session_times_t tm;
            if (!p || session_run(p, &sl, &ll, 0, &tm, err, sizeof err)) {
                fprintf(stderr, "bench/bild: %s\n", err);
                return 1;
            }
            int n;
            const int *out = policy_output(p, &n);
            const policy_stats_t *s = policy_stats(p);
            if (c == 0) memcpy(large_out[i], out, sizeof(int) * (size_t)(large_n[i] = n));
            config_t *k = &cf[c];
            k->time_s += tm.total_s, k->n += n, k->small += s->small_tokens, k->fallbacks += s->fallbacks;
            k->rollbacks += s->rollbacks, k->NL += s->large_passes, k->NS += s->small_passes;
            k->Lpos += s->large_positions, k->Spos += s->small_positions;
            for (int T = 1; T <= BILD_MAX_DRAFT; T++) /* measured cost of each pass length */
                k->model_s += s->large_pass_len[T] * (T <= 24 ? tL[T] : a + b * T);
            k->model_s += s->small_passes * t_small;
            k->exact += n == large_n[i] && !memcmp(out, large_out[i], sizeof(int) * (size_t)n);
            k->rouge += rouge_l(out, n, large_out[i], large_n[i]);
            k->nll += mean_nll(tfl, prompts[i], np[i], out, n);
            policy_destroy(&p);
        }

    printf("bench/bild: large %s, small %s; cpu/%s, %d threads; %d prompts x %d new tokens, greedy\n", lp, sp,
           be->isa, be->n_threads, NP, N);
    printf("\ncosts: small step %.3f ms; large pass over T tokens (ms):", t_small * 1e3);
    for (int T = 1; T <= 16; T *= 2) printf("  T=%d %.3f", T, tL[T] * 1e3);
    printf("\n  fit a + b T over T <= 24 (used beyond): a = %.3f ms, b = %.3f ms; c = small step / large step = %.3f\n\n",
           a * 1e3, b * 1e3, t_small / tL[1]);
    printf("%-26s %7s %7s %6s %6s %6s %6s %7s %7s %8s %8s %6s\n", "config", "speedup", "small%", "fb/100", "rb/100",
           "exact", "rougeL", "nll_L", "paper", "costmdl", "effic.", "tok/s");
    double base = cf[0].time_s;
    for (int c = 0; c < NC; c++) {
        config_t *k = &cf[c];
        double speed = base / k->time_s * k->n / cf[0].n; /* per token, so early stops do not count as speed */
        double cst = t_small / tL[1];
        double paper = k->NL + cst * k->NS > 0 ? k->n / (k->NL + cst * k->NS) : 0;
        /* cost model: each large pass charged the measured time of its
         * length; each small pass one small step (catch-up passes are short) */
        double costmdl = cf[0].model_s / cf[0].n / (k->model_s / k->n);
        printf("%-26s %7.2f %7.1f %6.1f %6.1f %3ld/%-2d %6.3f %7.3f %7.2f %8.2f %8.2f %6.0f\n", k->name, speed,
               100.0 * k->small / k->n, 100.0 * k->fallbacks / k->n, 100.0 * k->rollbacks / k->n, k->exact, NP,
               k->rouge / NP, k->nll / NP, c == NC - 1 ? 0 : paper, costmdl, speed / costmdl, k->n / k->time_s);
    }
    printf("\nspeedup = (tokens/s) / (tokens/s of the large model alone), all runs interleaved in this process.\n"
           "paper = n / (N_L + c N_S) (every pass one step); costmdl = predicted speedup from the measured cost of\n"
           "each pass (large: by its block length; small: one step), relative to the same prediction for the large\n"
           "model alone; effic. = speedup / costmdl (systems efficiency). exact = outputs identical to the large model's.\n");
    drafter_destroy(&dr);
    verifier_destroy(&vf);
    transformer_destroy(&tfs);
    transformer_destroy(&tfl);
    backend_destroy(&be);
    tokenizer_destroy(&tok);
    model_close(&ms);
    model_close(&ml);
    return 0;
}
