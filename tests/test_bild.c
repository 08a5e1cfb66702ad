/* test_bild.c - BiLD in one process with the real model pair (stories15M as
 * the large model, stories15M-small as the small one), greedy:
 *
 *  1. on 20 TinyStories prompts x 128 new tokens, the large model alone
 *     through the policy equals plain single-model generation (model/
 *     generate.c, an independent loop); BiLD's default mode with a tiny
 *     rollback threshold equals it too (every disagreement is rolled back),
 *     and so does greedy speculative decoding;
 *  2. faithful mode reproduces, token for token and count for count, the
 *     independent Python reference of the official loop (tools/ref/
 *     bild_ref.py -> tests/data/bild_faithful.json) on 20 prompts x
 *     alpha_fb {0.3, 0.5, 0.7, 0.9} x alpha_rb {1, 2, 3, 5} (runs the
 *     reference marks fragile, a comparison within 1e-4 of a threshold or a
 *     near-tie, are skipped and counted);
 *  3. the statistics identities hold on every run;
 *  4. sampling mode is reproducible for a seed;
 *  5. speculative decoding with rejection sampling is exact: over many seeds
 *     the first generated token follows the large model's distribution
 *     (chi-square test at significance 0.001), while a sample from the small
 *     model's own distribution fails the same test (so the test can fail).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "coordinator/policy.h"
#include "coordinator/session.h"
#include "kernels/cpu/cpu.h"
#include "large_worker/verifier.h"
#include "model/generate.h"
#include "small_worker/drafter.h"
#include "tests/test.h"

typedef struct {
    backend_t *be;
    model_file_t *ms, *ml;
    tokenizer_t *tok;
    transformer_t *tfs, *tfl;
    drafter_t *dr;
    verifier_t *vf;
} pair_t;

static int pair_open(pair_t *p) {
    char a[512], b[512], err[512];
    test_model(a, sizeof a, "stories15M/stories15M.bin");
    test_model(b, sizeof b, "stories15M-small/small.bin");
    if (!(p->ml = model_open(a, err, sizeof err)) || !(p->ms = model_open(b, err, sizeof err))) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    test_model(a, sizeof a, "stories15M/tokenizer.bin");
    p->tok = tokenizer_load_llama2c(a, 32000, err, sizeof err);
    p->be = backend_cpu_new(2);
    p->tfl = transformer_new(p->be, model_config(p->ml), model_weights(p->ml), BILD_MAX_DRAFT, err, sizeof err);
    p->tfs = transformer_new(p->be, model_config(p->ms), model_weights(p->ms), BILD_MAX_DRAFT, err, sizeof err);
    p->dr = drafter_new(p->tfs, NULL, 0, 2, 1);
    p->vf = verifier_new(p->tfl, NULL, 0);
    return p->tok && p->be && p->tfl && p->tfs && p->dr && p->vf ? 0 : -1;
}

static void pair_close(pair_t *p) {
    drafter_destroy(&p->dr);
    verifier_destroy(&p->vf);
    transformer_destroy(&p->tfs);
    transformer_destroy(&p->tfl);
    backend_destroy(&p->be);
    tokenizer_destroy(&p->tok);
    model_close(&p->ms);
    model_close(&p->ml);
}

/* Runs one generation; returns the policy (caller destroys). */
static policy_t *bild_run(pair_t *pr, policy_params_t pp, const int *prompt, int np, sampler_t *ss, sampler_t *sl) {
    char err[256];
    pp.vocab_size = 32000, pp.stop_a = 2, pp.stop_b = 1;
    policy_t *p = policy_new(&pp, prompt, np, err, sizeof err);
    EXPECT(p != NULL);
    drafter_t *dr = ss ? drafter_new(pr->tfs, ss, 1.0f, 2, 1) : pr->dr;
    verifier_t *vf = sl ? verifier_new(pr->tfl, sl, 1.0f) : pr->vf;
    small_link_t s = drafter_link(dr);
    large_link_t l = verifier_link(vf);
    session_times_t tm;
    int rc = session_run(p, &s, &l, 0, &tm, err, sizeof err);
    if (rc) fprintf(stderr, "session: %s\n", err);
    EXPECT(rc == 0);
    if (ss) drafter_destroy(&dr);
    if (sl) verifier_destroy(&vf);
    return p;
}

static void check_identities(const policy_t *p, const policy_params_t *pp) {
    const policy_stats_t *s = policy_stats(p);
    int n;
    policy_output(p, &n);
    EXPECT_EQ_INT(s->small_tokens + s->large_tokens, n);
    EXPECT_EQ_INT(s->large_passes, s->verify_calls);
    EXPECT_EQ_INT(s->drafted, s->accepted + s->rolled_back);
    EXPECT_EQ_INT(s->small_tokens, s->accepted + s->unchecked);
    if (!pp->faithful) EXPECT_EQ_INT(s->unchecked, 0);
    EXPECT(n <= pp->max_new);
}

static int same(const int *a, int na, const int *b, int nb) {
    return na == nb && memcmp(a, b, sizeof(int) * (size_t)na) == 0;
}

static cJSON *load_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = 0;
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    return j;
}

static int get_int(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valueint : -999;
}

int main(void) {
    pair_t pr = {0};
    if (pair_open(&pr)) {
        EXPECT(0);
        return TEST_DONE("test_bild");
    }
    /* prompts */
    int prompts[20][64], np[20];
    FILE *f = fopen("tests/data/prompts20.txt", "r");
    EXPECT(f != NULL);
    char line[1024];
    for (int i = 0; f && i < 20 && fgets(line, sizeof line, f); i++) {
        line[strcspn(line, "\n")] = 0;
        np[i] = tokenizer_encode(pr.tok, line, 1, prompts[i], 64);
        EXPECT(np[i] > 1 && np[i] <= 64);
    }
    if (f) fclose(f);

    /* 1. exactness on 20 prompts x 128 tokens */
    const int N = 128;
    int ref[128];
    sampler_t *greedy = sampler_new(32000, 0, 1, 0, 1);
    int n_exact = 0;
    for (int i = 0; i < 20; i++) {
        gen_stats_t gs;
        generate(pr.tfl, pr.tok, greedy, prompts[i], np[i], N, ref, NULL, NULL, &gs);
        int nref = gs.n_gen, n;
        policy_params_t large = {.mode = POLICY_LARGE, .max_new = N};
        policy_t *p = bild_run(&pr, large, prompts[i], np[i], NULL, NULL);
        const int *out = policy_output(p, &n);
        EXPECT(same(out, n, ref, nref));
        EXPECT_EQ_INT(policy_stats(p)->large_passes, nref + (nref < N));
        policy_destroy(&p);
        for (int fb = 0; fb < 2; fb++) {
            policy_params_t bild = {.mode = POLICY_BILD, .alpha_fb = fb ? 0.9f : 0.3f, .alpha_rb = 1e-4f,
                                    .max_small = 10, .max_new = N};
            p = bild_run(&pr, bild, prompts[i], np[i], NULL, NULL);
            out = policy_output(p, &n);
            int ok = same(out, n, ref, nref);
            if (!ok) fprintf(stderr, "prompt %d: BiLD (fb %.1f, rb 1e-4) differs from the large model\n", i, bild.alpha_fb);
            EXPECT(ok);
            n_exact += ok;
            check_identities(p, &bild);
            policy_destroy(&p);
        }
        policy_params_t spec = {.mode = POLICY_SPEC, .max_small = 4, .max_new = N};
        p = bild_run(&pr, spec, prompts[i], np[i], NULL, NULL);
        out = policy_output(p, &n);
        EXPECT(same(out, n, ref, nref));
        check_identities(p, &spec);
        policy_destroy(&p);
        /* real thresholds: only the identities */
        policy_params_t real = {.mode = POLICY_BILD, .alpha_fb = 0.6f, .alpha_rb = 3, .max_small = 10, .max_new = N};
        p = bild_run(&pr, real, prompts[i], np[i], NULL, NULL);
        check_identities(p, &real);
        policy_destroy(&p);
    }
    fprintf(stderr, "default mode with alpha_rb 1e-4 equals the large model's greedy text on %d of 40 runs\n", n_exact);

    /* 2. faithful mode vs the Python reference of the official loop */
    cJSON *gold = load_json("tests/data/bild_faithful.json");
    EXPECT(gold != NULL);
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(gold, "runs"), *r;
    const cJSON *ptoks = cJSON_GetObjectItemCaseSensitive(gold, "prompt_tokens");
    int checked = 0, fragile = 0, matched = 0;
    cJSON_ArrayForEach(r, runs) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "fragile"))) {
            fragile++;
            continue;
        }
        int pi = get_int(r, "prompt_index");
        const cJSON *pt = cJSON_GetArrayItem(ptoks, pi), *t;
        int prompt[64], n_p = 0;
        cJSON_ArrayForEach(t, pt) if (n_p < 64) prompt[n_p++] = t->valueint;
        EXPECT(pi >= 0 && pi < 20 && same(prompt, n_p, prompts[pi], np[pi])); /* same tokenization */
        policy_params_t pp = {.mode = POLICY_BILD, .faithful = 1,
                              .alpha_fb = (float)cJSON_GetObjectItemCaseSensitive(r, "alpha_fb")->valuedouble,
                              .alpha_rb = (float)cJSON_GetObjectItemCaseSensitive(r, "alpha_rb")->valuedouble,
                              .max_small = get_int(r, "max_small"), .max_new = get_int(r, "n")};
        policy_t *p = bild_run(&pr, pp, prompt, n_p, NULL, NULL);
        int n, want[256], nw = 0;
        const int *out = policy_output(p, &n);
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(r, "tokens")) if (nw < 256) want[nw++] = t->valueint;
        const policy_stats_t *s = policy_stats(p);
        int ok = same(out, n, want, nw) && s->large_passes == get_int(r, "n_large_passes") &&
                 s->small_passes == get_int(r, "n_small_passes") && s->fallbacks == get_int(r, "fallbacks") &&
                 s->rollbacks == get_int(r, "rollbacks") && s->rolled_back == get_int(r, "rolled_back") &&
                 s->small_tokens == get_int(r, "small_tokens") && s->large_tokens == get_int(r, "large_tokens");
        if (!ok)
            fprintf(stderr, "faithful prompt %d fb %.1f rb %.0f: C %d tokens, N_L %d, N_S %d, fb %d, rb %d (%d) vs "
                            "reference %d tokens, N_L %d, N_S %d, fb %d, rb %d (%d)\n", pi, pp.alpha_fb, pp.alpha_rb, n,
                    s->large_passes, s->small_passes, s->fallbacks, s->rollbacks, s->rolled_back, nw,
                    get_int(r, "n_large_passes"), get_int(r, "n_small_passes"), get_int(r, "fallbacks"),
                    get_int(r, "rollbacks"), get_int(r, "rolled_back"));
        EXPECT(ok);
        matched += ok;
        checked++;
        check_identities(p, &pp);
        policy_destroy(&p);
    }
    cJSON_Delete(gold);
    fprintf(stderr, "faithful mode: %d of %d reference runs identical (tokens and counts); %d fragile runs skipped\n",
            matched, checked, fragile);
    EXPECT(checked >= 300);

    /* 4. sampling: a seed reproduces its text, another seed differs */
    {
        policy_params_t pp = {.mode = POLICY_BILD, .alpha_fb = 0.5f, .alpha_rb = 3, .max_small = 10, .max_new = 60};
        int outs[3][64], ns[3];
        for (int k = 0; k < 3; k++) {
            uint64_t seed = k == 2 ? 99 : 7;
            sampler_t *ss = sampler_new(32000, 1.0f, 0.95f, 0, seed), *sl = sampler_new(32000, 1.0f, 0.95f, 0, seed + 1);
            policy_t *p = bild_run(&pr, pp, prompts[0], np[0], ss, sl);
            const int *o = policy_output(p, &ns[k]);
            memcpy(outs[k], o, sizeof(int) * (size_t)ns[k]);
            check_identities(p, &pp);
            policy_destroy(&p);
            sampler_destroy(&ss);
            sampler_destroy(&sl);
        }
        EXPECT(same(outs[0], ns[0], outs[1], ns[1]));
        EXPECT(!same(outs[0], ns[0], outs[2], ns[2]));
    }
    /* 5. rejection sampling: chi-square of the first token against p_L */
    {
        const char *text = "Once upon a time, there was a";
        int pt[32], n_p = tokenizer_encode(pr.tok, text, 1, pt, 32), V = 32000, NS = 3000;
        float *pl = malloc(sizeof(float) * V), *ps = malloc(sizeof(float) * V);
        memcpy(pl, transformer_forward(pr.tfl, pt, n_p, 0, LOGITS_LAST), sizeof(float) * V);
        memcpy(ps, transformer_forward(pr.tfs, pt, n_p, 0, LOGITS_LAST), sizeof(float) * V);
        softmax_f32(pl, V, 1.0f), softmax_f32(ps, V, 1.0f);
        int *count = calloc((size_t)V, sizeof(int)), *count_s = calloc((size_t)V, sizeof(int)), accepted = 0;
        policy_params_t pp = {.mode = POLICY_SPEC, .max_small = 4, .max_new = 1, .sampling = 1};
        for (int k = 0; k < NS; k++) {
            pp.seed = 1000 + (unsigned)k;
            sampler_t *ss = sampler_new(V, 1.0f, 1.0f, 0, 7 * (uint64_t)k + 1), *sl = sampler_new(V, 1.0f, 1.0f, 0, 3);
            policy_t *p = bild_run(&pr, pp, pt, n_p, ss, sl);
            int n;
            const int *o = policy_output(p, &n);
            if (n == 1) count[o[0]]++;
            else count[2]++; /* a stop token: counted as EOS */
            accepted += policy_stats(p)->accepted;
            policy_destroy(&p);
            sampler_destroy(&ss);
            sampler_destroy(&sl);
        }
        sampler_t *draw = sampler_new(V, 1.0f, 1.0f, 0, 42);
        for (int k = 0; k < NS; k++) { /* the control: samples of p_S */
            float u = sampler_uniform(draw), c = 0;
            int t = 0;
            while (t < V - 1 && (c += ps[t]) <= u) t++;
            count_s[t]++;
        }
        sampler_destroy(&draw);
        /* categories: tokens expected at least 5 times, the rest pooled */
        double chi = 0, chi_s = 0, e_other = 0, o_other = 0, os_other = 0;
        int cats = 0;
        for (int t = 0; t < V; t++) {
            double e = (double)NS * pl[t];
            if (e >= 5) {
                chi += (count[t] - e) * (count[t] - e) / e;
                chi_s += (count_s[t] - e) * (count_s[t] - e) / e;
                cats++;
            } else
                e_other += e, o_other += count[t], os_other += count_s[t];
        }
        if (e_other >= 5) {
            chi += (o_other - e_other) * (o_other - e_other) / e_other;
            chi_s += (os_other - e_other) * (os_other - e_other) / e_other;
            cats++;
        }
        int df = cats - 1;
        /* Wilson-Hilferty: the chi-square quantile at 1 - 0.001 (z = 3.0902) */
        double h = 2.0 / (9.0 * df), crit = df * pow(1 - h + 3.0902 * sqrt(h), 3);
        fprintf(stderr, "rejection sampling: %d draws, %d categories, chi2 %.1f (critical %.1f at 0.001, df %d), "
                        "%.0f%% of first drafts accepted; control (samples of p_S): chi2 %.1f\n",
                NS, cats, chi, crit, df, 100.0 * accepted / NS, chi_s);
        EXPECT(df >= 5);
        EXPECT(chi < crit);
        EXPECT(chi_s > crit);
        EXPECT(accepted > NS / 10 && accepted < NS - NS / 10); /* both paths taken */
        free(pl), free(ps), free(count), free(count_s);
    }
    sampler_destroy(&greedy);
    pair_close(&pr);
    return TEST_DONE("test_bild");
}
