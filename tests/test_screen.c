/* test_screen.c - greedy decoding's int8 screen of the classifier
 * (model/transformer.c, screen_argmax): the argmax it answers must be the
 * full f32 classifier's, lowest id on ties, bit for bit the same token.
 *
 * For every instruction set this CPU has and 1-2 threads, two models:
 * - stories15M (real weights), greedy from three prompts;
 * - tests/data/tiny_gqa.bin with its classifier edited: rows 3 and 5 the
 *   same long vector (an exact tie whenever they lead) and row 7 that
 *   vector with one element one ulp larger (a near tie), and rows 9 and 11
 *   built so that bf16 copies could rank them the other way round than
 *   the f32 rows (an int8 copy, coarser, does so too; only the screen's
 *   error bound keeps both in the running),
 *   inputs walking through pseudo-random tokens.
 * At each step, against a transformer built with BILD_SCREEN=0 fed the same
 * tokens: the screened argmax (transformer_logits_stats asking only for
 * it) equals the lowest-id argmax of the reference's logits; the logits
 * transformer_logits then gives (the full classifier, run late) equal the
 * reference's bit for bit; and a step asking for the max probability too
 * gets the reference's bits; every fifth step a block of 5 tokens (all
 * rows, as a verification pass) gets each row's argmax the same way. Also: the screen is on for f32 weights on the
 * CPU and off with BILD_SCREEN=0; it decided all but 2% of the rows
 * itself (a block's integer screen can leave more than 1024 candidates); on the edited model it checked more than one
 * candidate row per step on average and the tie went to the lower id. */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cpu/cpu.h"
#include "model/transformer.h"
#include "tests/test.h"

static int lowest_argmax(const float *x, int V) {
    int a = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[a]) a = i;
    return a;
}

/* Writes tiny_gqa.bin with the edited classifier to path; 0 on success */
static int write_edited(const char *path) {
    FILE *f = fopen("tests/data/tiny_gqa.bin", "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n);
    int ok = b && fread(b, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    int h[7];
    if (ok) memcpy(h, b, sizeof h);
    /* separate classifier (vocab < 0): its V x dim floats end the file */
    ok = ok && h[5] < 0;
    if (ok) {
        int d = h[0], V = -h[5];
        float *w = (float *)(b + n) - (size_t)V * d;
        for (int k = 0; k < d; k++) w[3 * d + k] = w[5 * d + k] = w[7 * d + k] = 6.0f * w[10 * d + k];
        w[7 * d] = nextafterf(w[7 * d], INFINITY);
        /* rows 9 and 11 whose bf16 copies can order them the wrong way: from b, a long
         * vector of bf16 values, row 9 adds 0.49 of a bf16 step (rounds back to b) on
         * even elements, row 11 0.51 (rounds up a step) on odd ones; so the copies
         * differ by the odd elements alone, the f32 rows by both */
        for (int k = 0; k < d; k++) {
            float b0 = 6.0f * w[12 * d + k], bv, u;
            uint32_t bits;
            memcpy(&bits, &b0, 4);
            bits &= 0xffff0000u, memcpy(&bv, &bits, 4);
            bits += 0x10000u, memcpy(&u, &bits, 4);
            u -= bv; /* one bf16 step away from 0, signed */
            w[9 * d + k] = k % 2 ? bv : bv + 0.49f * u;
            w[11 * d + k] = k % 2 ? bv + 0.51f * u : bv;
        }
        FILE *o = fopen(path, "wb");
        ok = o && fwrite(b, 1, (size_t)n, o) == (size_t)n;
        if (o) ok = fclose(o) == 0 && ok;
    }
    free(b);
    return ok ? 0 : -1;
}

/* steps steps per sequence, over prompts; walk: next token pseudo-random (else greedy) */
static void check(const char *ckpt, const char *isa, int threads, int walk, int steps) {
    char err[512];
    model_file_t *m = model_open(ckpt, err, sizeof err);
    EXPECT(m != NULL);
    if (!m) return;
    const model_config_t *c = model_config(m);
    int V = c->vocab_size;
    backend_t *be = backend_cpu_new_isa(threads, isa), *be0 = backend_cpu_new_isa(threads, isa);
    EXPECT(be != NULL && be0 != NULL);
    unsetenv("BILD_SCREEN");
    transformer_t *tf = transformer_new(be, c, model_weights(m), 16, err, sizeof err);
    setenv("BILD_SCREEN", "0", 1);
    transformer_t *t0 = transformer_new(be0, c, model_weights(m), 16, err, sizeof err);
    unsetenv("BILD_SCREEN");
    EXPECT(tf != NULL && t0 != NULL);
    if (!tf || !t0) return;
    EXPECT_EQ_INT(transformer_screening(tf), 0); /* built by transformer_prepare_greedy */
    transformer_prepare_greedy(tf), transformer_prepare_greedy(t0);
    const int prompts[3][4] = {{1, 9038, 2501, 263}, {1, 3118, 1058, 263}, {1, 450, 11203, 471}}; /* stories15M ids */
    int bad_arg = 0, bad_logits = 0, bad_p = 0, n = 0, n_p = 0, n_blk = 0, ties = 0;
    unsigned long long rng = 0x9E3779B97F4A7C15ULL;
    float *ref = malloc(sizeof(float) * (size_t)V);
    for (int s = 0; s < 3; s++) {
        int toks[4];
        for (int i = 0; i < 4; i++) toks[i] = prompts[s][i] % V;
        int pos = 0, T = 4, *cur = toks, next = 0;
        for (int step = 0; step < steps && pos + T <= c->seq_len; step++) {
            const float *l0 = transformer_forward(t0, cur, T, pos, LOGITS_LAST);
            EXPECT(l0 != NULL && transformer_run(tf, cur, T, pos, LOGITS_LAST) == 0);
            if (!l0) break;
            memcpy(ref, l0, sizeof(float) * (size_t)V);
            int want = lowest_argmax(ref, V), got = -1;
            if (step % 7 == 3) { /* the max probability too: the full classifier's numbers */
                float p = 0, p0 = 0;
                int a0 = -1;
                transformer_logits_stats(tf, 1, NULL, &got, &p, NULL);
                transformer_logits_stats(t0, 1, NULL, &a0, &p0, NULL);
                bad_p += memcmp(&p, &p0, sizeof p) != 0;
                n_p++;
            } else if (step % 7 == 5) { /* -log p of no next token (a verifier's last row): 0, screened */
                int none = -1;
                float nll = 1;
                transformer_logits_stats(tf, 1, &none, &got, NULL, &nll);
                bad_p += nll != 0.0f;
            } else
                transformer_logits_stats(tf, 1, NULL, &got, NULL, NULL);
            bad_arg += got != want;
            ties += want == 3 && ref[5] == ref[3];
            bad_logits += memcmp(transformer_logits(tf), ref, sizeof(float) * (size_t)V) != 0;
            n++;
            pos += T;
            if (step % 5 == 4 && pos + 5 <= c->seq_len) { /* a block of 5, all rows (a verification pass) */
                int blk[5];
                for (int i = 0; i < 5; i++) blk[i] = (int)((want + 31 * i + step) % V);
                const float *lb = transformer_forward(t0, blk, 5, pos, LOGITS_ALL);
                EXPECT(lb != NULL && transformer_run(tf, blk, 5, pos, LOGITS_ALL) == 0);
                if (!lb) break;
                int am[5];
                transformer_logits_stats(tf, 5, NULL, am, NULL, NULL);
                for (int i = 0; i < 5; i++) bad_arg += am[i] != lowest_argmax(lb + (size_t)i * V, V);
                bad_logits += memcmp(transformer_logits(tf), lb, sizeof(float) * 5 * (size_t)V) != 0;
                n_blk++;
                pos += 5;
            }
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            next = walk ? (int)((rng >> 33) % (unsigned)V) : want;
            cur = &next, T = 1;
        }
    }
    long long sc_steps, sc_full, sc_cands;
    transformer_screen_stats(tf, &sc_steps, &sc_full, &sc_cands);
    EXPECT_EQ_INT(transformer_screening(tf), 1);
    EXPECT_EQ_INT(transformer_screening(t0), 0);
    EXPECT_EQ_INT(bad_arg, 0);
    EXPECT_EQ_INT(bad_logits, 0);
    EXPECT_EQ_INT(bad_p, 0);
    EXPECT(sc_full * 50 <= sc_steps); /* the screen decided nearly every row itself (blocks quantise x too) */
    EXPECT(sc_steps > 0 && sc_steps <= n - n_p + 5 * n_blk); /* not the steps that asked for max p */
    EXPECT(n_blk > 0);
    if (walk) { /* the edited rows lead often: several candidates, and some exact ties went to row 3 */
        EXPECT(sc_cands > sc_steps);
        EXPECT(ties > 0);
    }
    fprintf(stderr, "%-30s %-6s threads=%d: %d steps and %d blocks of 5, %lld rows screened, %.2f candidates a row, "
            "%d exact ties: ok\n", ckpt, be->isa, threads, n, n_blk, sc_steps, sc_steps ? (double)sc_cands / sc_steps : 0,
            ties);
    free(ref);
    transformer_destroy(&tf), transformer_destroy(&t0);
    backend_destroy(&be), backend_destroy(&be0);
    model_close(&m);
}

int main(void) {
    char path[] = "/tmp/test_screen_XXXXXX";
    int fd = mkstemp(path);
    EXPECT(fd >= 0);
    if (fd < 0) return TEST_DONE("test_screen");
    close(fd);
    EXPECT_EQ_INT(write_edited(path), 0);
    const char *isas[] = {"scalar", "avx2", "avx512"};
    for (int k = 0; k < 3; k++)
        if (cpu_isa_supported(isas[k]))
            for (int nt = 1; nt <= 2; nt++) {
                check(path, isas[k], nt, 1, 60);
                check("models/stories15M/stories15M.bin", isas[k], nt, 0, 60);
            }
    unlink(path);
    return TEST_DONE("test_screen");
}
