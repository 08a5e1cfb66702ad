/* test_t5.c - T5 / mT5 encoder-decoders (model/t5.c) against goldens from the
 * independent PyTorch reference (tools/ref/t5_ref.py, written from the
 * transformers T5 definition, computing in float64;
 * tools/ref/make_goldens_t5.sh wrote tests/data/t5/). For each tiny random
 * model (T5 v1.0: relu, tied, scaled output; T5 v1.1: gated-gelu, untied;
 * mT5-shaped: gated-gelu, untied, d_kv x heads != d_model, more decoder
 * than encoder layers, a short max_distance so the logarithmic buckets are
 * hit; each in f32, f16 and bf16):
 * - encoder output and decoder logits within 1e-4 (max abs);
 * - a decoder block equals its single steps bit for bit, and a truncated
 *   cache re-run gives the same rows;
 * - greedy decoding of 64 tokens (past any EOS) gives the reference's tokens;
 * - t5_bucket against values worked out by hand from the HF formula;
 * - broken config.json files and a missing weights file are refused with
 *   the file and field named;
 * - a sharded copy (model.safetensors.index.json) gives the same results,
 *   and broken indexes are refused. */
#include <cjson/cJSON.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/cpu/cpu.h"
#include "model/t5.h"
#include "tests/test.h"
#include "tests/test_json.h"

#define T5DIR "tests/data/t5"
#define TOL 1e-4

static char tmp_root[64];

/* ints of a JSON array into out (at most max); returns the count or -1 */
static int ints(const cJSON *a, int *out, int max) {
    int n = 0;
    if (!cJSON_IsArray(a)) return -1;
    for (const cJSON *e = a->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || n == max) return -1;
        out[n++] = (int)e->valuedouble;
    }
    return n;
}

/* max |got - want| over a (rows, cols) JSON array of arrays; -1 on a shape mismatch */
static double max_diff(const cJSON *want, const float *got, int rows, int cols) {
    double m = 0;
    int r = 0;
    if (!cJSON_IsArray(want)) return -1;
    for (const cJSON *row = want->child; row; row = row->next, r++) {
        if (r == rows || cJSON_GetArraySize(row) != cols) return -1;
        int c = 0;
        for (const cJSON *e = row->child; e; e = e->next, c++) {
            double d = fabs(e->valuedouble - got[(size_t)r * cols + c]);
            if (!(d <= m)) m = d;
        }
    }
    return r == rows ? m : -1;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* name: a variant in tests/data/t5, or a path (with a '/') to a copy of one */
static void check_variant(const char *name, const char *isa, int threads) {
    char dir[256], path[320], err[512];
    snprintf(dir, sizeof dir, strchr(name, '/') ? "%s" : T5DIR "/%s", name);
    snprintf(path, sizeof path, "%s/golden.json", dir);
    cJSON *g = test_read_json(path);
    t5_model_t *m = t5_open(dir, err, sizeof err);
    if (!g || !m) {
        fprintf(stderr, "%s: %s\n", name, !g ? "golden.json missing or corrupt" : err);
        test_failures++;
        cJSON_Delete(g), t5_close(m);
        return;
    }
    const t5_config_t *c = t5_config(m);
    int src[256], dec[256], gsrc[256], want[256];
    int ns = ints(cJSON_GetObjectItem(g, "src"), src, 256), nd = ints(cJSON_GetObjectItem(g, "dec"), dec, 256);
    int ngs = ints(cJSON_GetObjectItem(g, "greedy_src"), gsrc, 256);
    int nw = ints(cJSON_GetObjectItem(g, "greedy"), want, 256);
    EXPECT(ns > 0 && nd > 1 && ngs > 0 && nw > 0);
    if (ns <= 0 || nd <= 1 || ngs <= 0 || nw <= 0) goto out;
    const int V = c->vocab_size, d = c->d_model, maxd = 80;
    backend_t *be = backend_cpu_new_isa(threads, isa);
    t5_state_t *s = be ? t5_state_new(m, be, 256, maxd) : NULL;
    float *enc = malloc(sizeof(float) * ns * d), *blk = malloc(sizeof(float) * nd * V),
          *stp = malloc(sizeof(float) * nd * V);
    EXPECT(s && enc && blk && stp);
    if (!s || !enc || !blk || !stp) goto out2;

    /* encoder output, decoder logits as one block */
    EXPECT(t5_encode(s, src, ns, enc) == 0);
    double e_enc = max_diff(cJSON_GetObjectItem(g, "encoder_out"), enc, ns, d);
    EXPECT(t5_decode(s, dec, nd, blk) == 0);
    double e_log = max_diff(cJSON_GetObjectItem(g, "logits"), blk, nd, V);
    EXPECT(e_enc >= 0 && e_enc <= TOL);
    EXPECT(e_log >= 0 && e_log <= TOL);
    /* the same tokens one step at a time, then from a truncated cache */
    t5_truncate(s, 0);
    for (int t = 0; t < nd; t++) EXPECT(t5_decode(s, dec + t, 1, stp + (size_t)t * V) == 0);
    int same = !memcmp(blk, stp, sizeof(float) * nd * V);
    EXPECT(same);
    t5_truncate(s, 2);
    EXPECT(t5_decode(s, dec + 2, nd - 2, stp + 2 * (size_t)V) == 0);
    int same_tr = !memcmp(blk, stp, sizeof(float) * nd * V);
    EXPECT(same_tr);
    EXPECT(t5_decode(s, dec, maxd, stp) == -1); /* past the cache: refused, nothing run */
    EXPECT_EQ_INT(t5_pos(s), nd);

    /* greedy from decoder_start, all 64 steps (the goldens run past EOS too) */
    float *row = malloc(sizeof(float) * V);
    int got[256], ng = 0, tok = c->decoder_start;
    EXPECT(t5_encode(s, gsrc, ngs, NULL) == 0);
    while (row && ng < nw) {
        if (t5_decode(s, &tok, 1, row) != 0) break;
        got[ng++] = tok = argmax(row, V);
    }
    int gsame = ng == nw && !memcmp(got, want, sizeof(int) * nw);
    EXPECT(gsame);
    free(row);
    fprintf(stderr, "%-10s %-6s %d thr %s: encoder max|err| %.2e, logits %.2e (%d x %d); block == steps %s, after truncate %s; "
            "greedy %d/%d tokens %s\n", name, isa, threads, c->arch, e_enc, e_log, nd, V, same ? "yes" : "NO",
            same_tr ? "yes" : "NO", ng, nw, gsame ? "equal" : "DIFFER");
out2:
    free(enc), free(blk), free(stp);
    t5_state_free(s);
    if (be) be->destroy(be);
out:
    t5_close(m);
    cJSON_Delete(g);
}

/* Hand-worked from transformers' _relative_position_bucket (rel = key - query):
 * bidirectional, 32 buckets, max_distance 128: half = 16, max_exact = 8;
 * rel <= 0 uses buckets 0-15, rel > 0 adds 16; |rel| < 8 is its own bucket;
 * else 8 + floor(ln(|rel| / 8) / ln(128 / 8) * 8), at most 15:
 *   |rel| 8 -> 8, 12 -> 8 + floor(0.4055 / 2.7726 * 8 = 1.17) = 9,
 *   20 -> 8 + floor(0.9163 / 2.7726 * 8 = 2.64) = 10, 127 -> 8 + floor(7.97) = 15, 500 -> 15.
 * causal, 32 buckets, max_distance 128: future keys (rel > 0) are bucket 0;
 * max_exact 16; |rel| < 16 its own; else 16 + floor(ln(|rel| / 16) / ln(8) * 16):
 *   16 -> 16, 40 -> 16 + floor(0.9163 / 2.0794 * 16 = 7.05) = 23, 127 -> 16 + floor(15.94) = 31, 1000 -> 31. */
static void check_buckets(void) {
    static const int bi[][2] = {{0, 0},  {-1, 1},  {1, 17},  {-7, 7},   {7, 23},   {-8, 8},  {8, 24},
                                {-12, 9}, {12, 25}, {-20, 10}, {20, 26}, {-127, 15}, {500, 31}};
    static const int ca[][2] = {{0, 0}, {3, 0}, {-1, 1}, {-15, 15}, {-16, 16}, {-40, 23}, {-127, 31}, {-1000, 31}};
    for (size_t i = 0; i < sizeof bi / sizeof *bi; i++) EXPECT_EQ_INT(t5_bucket(bi[i][0], 1, 32, 128), bi[i][1]);
    for (size_t i = 0; i < sizeof ca / sizeof *ca; i++) EXPECT_EQ_INT(t5_bucket(ca[i][0], 0, 32, 128), ca[i][1]);
}

/* copy of a variant whose config.json has `from` replaced by `to` */
static void expect_config_refused(const char *variant, const char *from, const char *to, const char *want) {
    char src[320], dir[128], cmd[1024], err[512];
    snprintf(dir, sizeof dir, "%s/case", tmp_root);
    snprintf(src, sizeof src, T5DIR "/%s", variant);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s' && sed -i 's/%s/%s/' '%s/config.json'", dir, src, dir,
             from, to, dir);
    EXPECT(system(cmd) == 0);
    t5_model_t *m = t5_open(dir, err, sizeof err);
    int ok = !m && strstr(err, "config.json") && strstr(err, want);
    if (!ok) fprintf(stderr, "refusal of %s -> %s: got '%s', want '%s'\n", from, to, m ? "(opened)" : err, want);
    EXPECT(ok);
    t5_close(m);
}

static void check_refusals(void) {
    expect_config_refused("t5v11_f32", "\"gated-gelu\"", "\"gated-silu\"", "feed_forward_proj \"gated-silu\"");
    expect_config_refused("t5_f32", "\"d_model\"", "\"d_modelx\"", "d_model is missing");
    expect_config_refused("t5_f32", "T5ForConditionalGeneration", "LlamaForCausalLM", "architectures");
    expect_config_refused("t5_f32", "\"num_heads\": [0-9]*", "\"num_heads\": 0", "num_heads");
    /* the config asks for wider matrices than the file holds */
    char dir[128], cmd[512], err[512];
    snprintf(dir, sizeof dir, "%s/case", tmp_root);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r " T5DIR "/t5_f32 '%s' && sed -i 's/\"d_ff\": [0-9]*/\"d_ff\": 100/' "
             "'%s/config.json'", dir, dir, dir);
    EXPECT(system(cmd) == 0);
    t5_model_t *m = t5_open(dir, err, sizeof err);
    EXPECT(!m && strstr(err, "model.safetensors") && strstr(err, "DenseReluDense.wi.weight"));
    t5_close(m);
    snprintf(cmd, sizeof cmd, "rm '%s/model.safetensors'", dir);
    EXPECT(system(cmd) == 0);
    m = t5_open(dir, err, sizeof err);
    EXPECT(!m && strstr(err, "model.safetensors: missing, and no model.safetensors.index.json either"));
    t5_close(m);
    fprintf(stderr, "refusals: last message '%s'\n", err);
}

/* A sharded checkpoint (model.safetensors.index.json and 3 shards, written
 * by tools/ref/shard_safetensors.py) gives the unsharded goldens; an index
 * naming a missing shard, or a shard that lacks a tensor it is said to
 * hold, is refused. */
static void check_sharded(void) {
    char dir[128], cmd[512], err[512];
    snprintf(dir, sizeof dir, "%s/sharded", tmp_root);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/ref/shard_safetensors.py " T5DIR "/t5v11_f32 '%s' --shards 3",
             dir);
    EXPECT(system(cmd) == 0);
    check_variant(dir, "scalar", 1);
    check_variant(dir, cpu_isa_supported("avx512") ? "avx512" : "avx2", 2);
    snprintf(cmd, sizeof cmd, "sed -i '0,/\"shared.weight\": \"model-00001/s//\"shared.weight\": \"model-00002/' "
             "'%s/model.safetensors.index.json'", dir);
    EXPECT(system(cmd) == 0);
    t5_model_t *m = t5_open(dir, err, sizeof err);
    EXPECT(!m && strstr(err, "model.safetensors.index.json: weight_map puts 'shared.weight' in "
                             "'model-00002-of-00003.safetensors', but that shard has no such tensor"));
    t5_close(m);
    fprintf(stderr, "sharded: %s\n", err);
    snprintf(cmd, sizeof cmd, "rm '%s/model-00003-of-00003.safetensors'", dir);
    EXPECT(system(cmd) == 0);
    m = t5_open(dir, err, sizeof err);
    EXPECT(!m && strstr(err, "weight_map: shard 'model-00003-of-00003.safetensors' cannot be opened"));
    t5_close(m);
    fprintf(stderr, "sharded: %s\n", err);
}

int main(void) {
    const char *kinds[] = {"t5", "t5v11", "mt5"}, *dts[] = {"f32", "f16", "bf16"};
    const char *isas[] = {"scalar", "avx2", "avx512"};
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < 3; t++)
            for (int i = 0; i < 3; i++)
                if (cpu_isa_supported(isas[i]))
                    for (int nt = 1; nt <= 2; nt++) {
                        char name[32];
                        snprintf(name, sizeof name, "%s_%s", kinds[k], dts[t]);
                        check_variant(name, isas[i], nt);
                    }
    check_buckets();
    snprintf(tmp_root, sizeof tmp_root, "/tmp/bild_test_t5.XXXXXX");
    if (!mkdtemp(tmp_root)) return perror("mkdtemp"), 1;
    check_refusals();
    check_sharded();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    return TEST_DONE("test_t5");
}
