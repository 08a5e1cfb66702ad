/* test_hf.c - Hugging Face model directories (model/hf.c): logits of tiny
 * random Llama / Mistral / Qwen2 models against goldens from the
 * independent PyTorch reference (tools/ref/hf_ref.py, written from the
 * transformers modeling definitions; tools/ref/make_goldens_hf.sh), the
 * block/step identity, the parsed configuration, and refusal of broken
 * directories written at test time.
 *
 * Tolerances: max abs error 1e-4 against the goldens for every variant,
 * f32, bf16 and f16 alike. The reference widens half weights to f32 exactly
 * as the loader does and then computes in f32, so half and f32 variants
 * differ from their goldens only by f32 summation order (the reference's
 * own float32-vs-float64 distance is at most 1.1e-5 on these models); the
 * half checks test the loader's conversion, not half arithmetic. Block vs
 * single steps: 1e-5 (same kernels, in practice identical). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/cpu/cpu.h"
#include "model/transformer.h"
#include "tests/test.h"

#define HF "tests/data/hf"

static double max_err(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= m)) m = e; /* NaN propagates as failure */
    }
    return m;
}

static int golden_load(const char *path, int *T, int *V, int **tokens, float **logits) {
    FILE *f = fopen(path, "rb");
    char magic[4];
    int32_t hdr[3];
    if (!f) return fprintf(stderr, "cannot open %s\n", path), 0;
    int ok = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "BLDG", 4) && fread(hdr, 4, 3, f) == 3 && hdr[0] == 1;
    if (ok) {
        *T = hdr[1], *V = hdr[2];
        *tokens = malloc(sizeof(int) * *T);
        *logits = malloc(sizeof(float) * (size_t)*T * *V);
        ok = fread(*tokens, 4, *T, f) == (size_t)*T && fread(*logits, 4, (size_t)*T * *V, f) == (size_t)*T * *V;
    }
    fclose(f);
    return ok;
}

static void check_variant(const char *name, const char *isa, int threads) {
    char dir[256], gold[256], err[512];
    snprintf(dir, sizeof dir, HF "/%s", name);
    snprintf(gold, sizeof gold, HF "/%s.logits", name);
    int T, V, *tokens = NULL;
    float *logits = NULL;
    if (!golden_load(gold, &T, &V, &tokens, &logits)) {
        EXPECT(0);
        return;
    }
    model_file_t *m = model_open(dir, err, sizeof err);
    if (!m) fprintf(stderr, "%s\n", err);
    EXPECT(m != NULL);
    if (!m) return;
    EXPECT_EQ_INT(model_config(m)->vocab_size, V);
    backend_t *be = backend_cpu_new_isa(threads, isa);
    transformer_t *tf = transformer_new(be, model_config(m), model_weights(m), 32, err, sizeof err);
    if (!tf) fprintf(stderr, "%s\n", err);
    EXPECT(tf != NULL);
    size_t n = (size_t)T * V;
    float *block = malloc(sizeof(float) * n), *steps = malloc(sizeof(float) * n);
    const float *lg = tf ? transformer_forward(tf, tokens, T, 0, LOGITS_ALL) : NULL;
    EXPECT(lg != NULL);
    if (lg) memcpy(block, lg, sizeof(float) * n);
    double e_gold = lg ? max_err(block, logits, n) : 1e9;
    EXPECT(e_gold <= 1e-4);
    int steps_ok = tf != NULL;
    for (int t = 0; t < T && steps_ok; t++) {
        lg = transformer_forward(tf, &tokens[t], 1, t, LOGITS_LAST);
        if (!(steps_ok = lg != NULL)) break;
        memcpy(steps + (size_t)t * V, lg, sizeof(float) * V);
    }
    EXPECT(steps_ok);
    double e_steps = steps_ok ? max_err(steps, block, n) : 1e9;
    EXPECT(e_steps <= 1e-5);
    fprintf(stderr, "%-18s %-6s threads=%d  max|err| vs torch %.2e; block vs steps %.2e\n", name, be->isa, threads,
            e_gold, e_steps);
    free(block), free(steps), free(tokens), free(logits);
    transformer_destroy(&tf);
    backend_destroy(&be);
    model_close(&m);
}

/* The configuration fields each variant is meant to exercise. */
static void check_configs(void) {
    char err[512];
    model_file_t *m = model_open(HF "/llama3_rope_bf16", err, sizeof err);
    EXPECT(m != NULL);
    if (m) {
        const model_config_t *c = model_config(m);
        EXPECT_EQ_INT(c->rope_scaling, ROPE_SCALING_LLAMA3);
        EXPECT_EQ_INT(c->rope_orig_ctx, 64);
        EXPECT_NEAR(c->rope_factor, 8, 0, 0);
        EXPECT_NEAR(c->rope_theta, 500000, 0, 0);
        EXPECT_EQ_INT(c->rope_style, ROPE_HALVES);
        EXPECT_EQ_INT(c->bos_id, 250);
        EXPECT_EQ_INT(c->n_eos, 2);
        EXPECT_EQ_INT(c->eos_ids[0], 251);
        EXPECT_EQ_INT(c->eos_ids[1], 253);
        EXPECT_EQ_INT(c->eos_id, 251);
        EXPECT_EQ_INT(c->n_kv_heads, 1);
        EXPECT_EQ_INT(c->shared_classifier, 0);
        /* widened at load (f32) or, once matrix_dtype() in model/hf.c says so, kept bf16 */
        EXPECT(model_weights(m)->dtype == DTYPE_F32 || model_weights(m)->dtype == DTYPE_BF16);
        model_close(&m);
    }
    m = model_open(HF "/mistral_f16", err, sizeof err); /* sharded */
    EXPECT(m != NULL);
    if (m) {
        const model_config_t *c = model_config(m);
        EXPECT_EQ_INT(c->head_dim, 12);
        EXPECT_EQ_INT(c->dim, 32);
        EXPECT_EQ_INT(c->n_heads, 4);
        EXPECT_EQ_INT(c->trained_seq_len, 256); /* sliding_window caps max_position_embeddings 1024 */
        EXPECT_EQ_INT(c->seq_len, 256);
        model_limit_context(m, 40);
        EXPECT_EQ_INT(c->seq_len, 40);
        model_limit_context(m, 100000);
        EXPECT_EQ_INT(c->seq_len, 256);
        model_limit_context(m, 0);
        EXPECT_EQ_INT(c->seq_len, 256);
        /* embedding row 29 starts with f16 subnormals and signed zeros
         * (tools/ref/make_tiny_hf.py): 6e-8, -6e-8, 3e-6, -4.5e-5 round to
         * 1, -1, 50, -755 units of 2^-24 */
        const model_weights_t *w = model_weights(m);
        if (w->dtype == DTYPE_F32) {
            const float *row = (const float *)w->tok_emb + 29 * c->dim;
            EXPECT(row[0] == ldexpf(1, -24) && row[1] == -ldexpf(1, -24));
            EXPECT(row[2] == ldexpf(50, -24) && row[3] == -ldexpf(755, -24));
            EXPECT(row[4] == 0 && !signbit(row[4]) && row[5] == 0 && signbit(row[5]));
        }
        model_close(&m);
    }
    m = model_open(HF "/qwen2_f32", err, sizeof err);
    EXPECT(m != NULL);
    if (m) {
        const model_config_t *c = model_config(m);
        const model_weights_t *w = model_weights(m);
        EXPECT_EQ_INT(c->qkv_bias, 1);
        EXPECT_EQ_INT(c->shared_classifier, 1);
        EXPECT(w->wcls == w->tok_emb);
        EXPECT(w->bq && w->bk && w->bv && w->bq[1]);
        EXPECT_EQ_INT(c->bos_id, -1); /* "bos_token_id": null */
        EXPECT_EQ_INT(c->eos_id, 299);
        EXPECT_NEAR(c->norm_eps, 1e-6f, 0, 0);
        EXPECT_EQ_INT(c->seq_len, 256);
        model_close(&m);
    }
    m = model_open(HF "/llama_gqa_f32", err, sizeof err);
    EXPECT(m != NULL);
    if (m) {
        EXPECT(model_weights(m)->bq == NULL);
        EXPECT_EQ_INT(model_config(m)->qkv_bias, 0);
        model_close(&m);
    }
}

/* ---- broken directories ---------------------------------------------------- */

static char tmp_root[64];
static int case_no;

static void *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) free(b), b = NULL;
    fclose(f);
    if (b) b[len] = 0, *n = (size_t)len;
    return b;
}

static void write_all(const char *dir, const char *name, const void *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

/* Copies the files of src (names listed) into a fresh case directory. */
static void new_case(char *dir, size_t n, const char *src, const char *const *files) {
    snprintf(dir, n, "%s/case%02d", tmp_root, case_no++);
    if (mkdir(dir, 0700) != 0) {
        perror(dir);
        exit(1);
    }
    for (int i = 0; files[i]; i++) {
        char path[512];
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s", src, files[i]);
        void *b = read_all(path, &len);
        if (!b) {
            fprintf(stderr, "cannot read %s\n", path);
            exit(1);
        }
        write_all(dir, files[i], b, len);
        free(b);
    }
}

static const char *const llama_files[] = {"config.json", "model.safetensors", NULL};

/* A llama_gqa_f32 copy whose safetensors header was edited by edit() (on the
 * parsed header; the data section is kept as it was). */
static void case_header(char *dir, size_t n, void (*edit)(cJSON *hdr, size_t data_size)) {
    new_case(dir, n, HF "/llama_gqa_f32", llama_files);
    char path[512];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unsigned char *b = read_all(path, &len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
    cJSON *hdr = cJSON_ParseWithLength((const char *)b + 8, hl);
    if (!hdr) exit(1);
    edit(hdr, len - 8 - hl);
    char *js = cJSON_PrintUnformatted(hdr);
    size_t jl = strlen(js);
    unsigned char *o = malloc(8 + jl + (len - 8 - hl));
    for (int i = 0; i < 8; i++) o[i] = (unsigned char)((uint64_t)jl >> (8 * i));
    memcpy(o + 8, js, jl);
    memcpy(o + 8 + jl, b + 8 + hl, len - 8 - hl);
    write_all(dir, "model.safetensors", o, 8 + jl + (len - 8 - hl));
    free(o), free(js), free(b);
    cJSON_Delete(hdr);
}

/* A llama_gqa_f32 copy whose config.json was edited. */
static void case_config(char *dir, size_t n, void (*edit)(cJSON *cfg)) {
    new_case(dir, n, HF "/llama_gqa_f32", llama_files);
    char path[512];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *b = read_all(path, &len);
    cJSON *cfg = cJSON_Parse(b);
    if (!cfg) exit(1);
    edit(cfg);
    char *js = cJSON_Print(cfg);
    write_all(dir, "config.json", js, strlen(js));
    free(js), free(b);
    cJSON_Delete(cfg);
}

#define Q "model.layers.0.self_attn.q_proj.weight"
#define O "model.layers.0.self_attn.o_proj.weight"

static cJSON *offs(cJSON *h, const char *t) {
    return cJSON_GetObjectItem(cJSON_GetObjectItem(h, t), "data_offsets");
}
static void e_out_of_range(cJSON *h, size_t ds) {
    cJSON *o = offs(h, O);
    double lo = cJSON_GetArrayItem(o, 0)->valuedouble, hi = cJSON_GetArrayItem(o, 1)->valuedouble;
    cJSON_ReplaceItemInArray(o, 0, cJSON_CreateNumber(lo + (double)ds));
    cJSON_ReplaceItemInArray(o, 1, cJSON_CreateNumber(hi + (double)ds));
}
static void e_overlap(cJSON *h, size_t ds) {
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(h, O), "data_offsets", cJSON_Duplicate(offs(h, Q), 1));
}
static void e_partial_overlap(cJSON *h, size_t ds) { /* O shifted 4 bytes into its predecessor */
    cJSON *o = offs(h, O);
    double lo = cJSON_GetArrayItem(o, 0)->valuedouble, hi = cJSON_GetArrayItem(o, 1)->valuedouble;
    cJSON_ReplaceItemInArray(o, 0, cJSON_CreateNumber(lo - 4));
    cJSON_ReplaceItemInArray(o, 1, cJSON_CreateNumber(hi - 4));
}
static void e_dtype(cJSON *h, size_t ds) {
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(h, Q), "dtype", cJSON_CreateString("I32"));
}
static void e_dtype_size(cJSON *h, size_t ds) {
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(h, Q), "dtype", cJSON_CreateString("BF16"));
}
static void e_shape(cJSON *h, size_t ds) {
    int s[2] = {16, 64};
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(h, Q), "shape", cJSON_CreateIntArray(s, 2));
}
static void e_missing(cJSON *h, size_t ds) { cJSON_DeleteItemFromObject(h, O); }
static void e_extra(cJSON *h, size_t ds) {
    cJSON *t = cJSON_Duplicate(cJSON_GetObjectItem(h, "model.norm.weight"), 1);
    cJSON_AddItemToObject(h, "model.layers.0.self_attn.o_proj.bias", t); /* aliases norm's bytes: overlap */
    cJSON_ReplaceItemInObject(t, "data_offsets", cJSON_CreateIntArray((int[]){0, 0}, 2));
    cJSON_ReplaceItemInObject(t, "shape", cJSON_CreateIntArray((int[]){0}, 1));
}
static void e_not_json(cJSON *h, size_t ds) { cJSON_AddItemToObject(h, "x", cJSON_CreateRaw("{")); }
static void e_bad_offsets(cJSON *h, size_t ds) {
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(h, Q), "data_offsets", cJSON_CreateString("0-4096"));
}

static void c_arch(cJSON *c) {
    cJSON_ReplaceItemInObject(c, "architectures", cJSON_CreateStringArray((const char *[]){"GPT2LMHeadModel"}, 1));
}
static void c_rope(cJSON *c) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "rope_type", "yarn");
    cJSON_AddNumberToObject(r, "factor", 4);
    cJSON_AddItemToObject(c, "rope_scaling", r);
}
static void c_rope_incomplete(cJSON *c) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "rope_type", "llama3");
    cJSON_AddNumberToObject(r, "factor", 8);
    cJSON_AddItemToObject(c, "rope_scaling", r);
}
static void c_no_hidden(cJSON *c) { cJSON_DeleteItemFromObject(c, "hidden_size"); }
static void c_heads(cJSON *c) { cJSON_ReplaceItemInObject(c, "num_key_value_heads", cJSON_CreateNumber(3)); }
static void c_layers(cJSON *c) { cJSON_ReplaceItemInObject(c, "num_hidden_layers", cJSON_CreateNumber(3)); }
static void c_fewer_layers(cJSON *c) { cJSON_ReplaceItemInObject(c, "num_hidden_layers", cJSON_CreateNumber(1)); }
static void c_vocab(cJSON *c) { cJSON_ReplaceItemInObject(c, "vocab_size", cJSON_CreateNumber(255)); }
static void c_eos(cJSON *c) { cJSON_ReplaceItemInObject(c, "eos_token_id", cJSON_CreateString("2")); }
static void c_eps(cJSON *c) { cJSON_ReplaceItemInObject(c, "rms_norm_eps", cJSON_CreateNumber(-1)); }
static void c_act(cJSON *c) { cJSON_ReplaceItemInObject(c, "hidden_act", cJSON_CreateString("gelu")); }
static void c_tied(cJSON *c) { cJSON_ReplaceItemInObject(c, "tie_word_embeddings", cJSON_CreateTrue()); }
static void c_head_dim(cJSON *c) { cJSON_AddNumberToObject(c, "head_dim", 7); }
static void c_float_dim(cJSON *c) { cJSON_ReplaceItemInObject(c, "hidden_size", cJSON_CreateNumber(32.5)); }

/* model_open must fail with one line naming the file and containing `field`. */
static void expect_refused(const char *dir, const char *file, const char *field) {
    char err[512] = "";
    model_file_t *m = model_open(dir, err, sizeof err);
    int ok = m == NULL && err[0] && !strchr(err, '\n') && strstr(err, file) && strstr(err, field);
    if (!ok) fprintf(stderr, "case %s: expected a refusal naming '%s' and '%s', got %s: %s\n", dir, file, field,
                     m ? "a model" : "NULL", err);
    else
        fprintf(stderr, "refused as expected: %s\n", err);
    EXPECT(ok);
    model_close(&m);
}

static void check_refusals(void) {
    char d[256];
    /* safetensors header longer than the file */
    new_case(d, sizeof d, HF "/llama_gqa_f32", llama_files);
    {
        char path[512];
        size_t len;
        snprintf(path, sizeof path, "%s/model.safetensors", d);
        unsigned char *b = read_all(path, &len);
        uint64_t hl = len; /* 8 bytes more than there are */
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hl >> (8 * i));
        write_all(d, "model.safetensors", b, len);
        free(b);
    }
    expect_refused(d, "model.safetensors", "header length");
    new_case(d, sizeof d, HF "/llama_gqa_f32", llama_files);
    write_all(d, "model.safetensors", "\x10\0\0", 3);
    expect_refused(d, "model.safetensors", "too short");
    case_header(d, sizeof d, e_out_of_range);
    expect_refused(d, "model.safetensors", "data_offsets");
    case_header(d, sizeof d, e_overlap);
    expect_refused(d, "model.safetensors", "overlap");
    case_header(d, sizeof d, e_partial_overlap);
    expect_refused(d, "model.safetensors", "overlap");
    case_header(d, sizeof d, e_dtype);
    expect_refused(d, "model.safetensors", "dtype I32");
    case_header(d, sizeof d, e_dtype_size);
    expect_refused(d, "model.safetensors", "data_offsets span");
    case_header(d, sizeof d, e_shape);
    expect_refused(d, "model.safetensors", "shape [16, 64]");
    case_header(d, sizeof d, e_missing);
    expect_refused(d, "model.safetensors", "'" O "' is missing");
    case_header(d, sizeof d, e_extra);
    expect_refused(d, "model.safetensors", "o_proj.bias' is not used");
    case_header(d, sizeof d, e_not_json);
    expect_refused(d, "model.safetensors", "not valid JSON");
    case_header(d, sizeof d, e_bad_offsets);
    expect_refused(d, "model.safetensors", "data_offsets");

    /* missing shard */
    const char *const mf[] = {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors", NULL};
    new_case(d, sizeof d, HF "/mistral_f16", mf);
    expect_refused(d, "model.safetensors.index.json", "model-00002-of-00002.safetensors");
    /* no weights at all */
    const char *const cf[] = {"config.json", NULL};
    new_case(d, sizeof d, HF "/llama_gqa_f32", cf);
    expect_refused(d, "model.safetensors", "missing");
    /* no config */
    const char *const wf[] = {"model.safetensors", NULL};
    new_case(d, sizeof d, HF "/llama_gqa_f32", wf);
    expect_refused(d, "config.json", "cannot open");

    case_config(d, sizeof d, c_arch);
    expect_refused(d, "config.json", "architectures: unsupported architecture 'GPT2LMHeadModel'");
    case_config(d, sizeof d, c_rope);
    expect_refused(d, "config.json", "rope_scaling type 'yarn'");
    case_config(d, sizeof d, c_rope_incomplete);
    expect_refused(d, "config.json", "low_freq_factor");
    case_config(d, sizeof d, c_no_hidden);
    expect_refused(d, "config.json", "hidden_size is missing");
    case_config(d, sizeof d, c_heads);
    expect_refused(d, "config.json", "num_key_value_heads");
    case_config(d, sizeof d, c_layers); /* config says 3 layers, file has 2 */
    expect_refused(d, "model.safetensors", "model.layers.2.");
    case_config(d, sizeof d, c_fewer_layers); /* layer 1 left over */
    expect_refused(d, "model.safetensors", "model.layers.1.");
    case_config(d, sizeof d, c_vocab);
    expect_refused(d, "model.safetensors", "embed_tokens.weight': shape [256, 32]");
    case_config(d, sizeof d, c_eos);
    expect_refused(d, "config.json", "eos_token_id");
    case_config(d, sizeof d, c_eps);
    expect_refused(d, "config.json", "rms_norm_eps");
    case_config(d, sizeof d, c_act);
    expect_refused(d, "config.json", "hidden_act");
    case_config(d, sizeof d, c_tied); /* tied, but the file has an lm_head: allowed (HF ignores it) */
    {
        char err[512];
        model_file_t *m = model_open(d, err, sizeof err);
        EXPECT(m != NULL && model_weights(m)->wcls == model_weights(m)->tok_emb);
        model_close(&m);
    }
    case_config(d, sizeof d, c_head_dim);
    expect_refused(d, "config.json", "head_dim");
    case_config(d, sizeof d, c_float_dim);
    expect_refused(d, "config.json", "hidden_size");
    new_case(d, sizeof d, HF "/llama_gqa_f32", llama_files);
    write_all(d, "config.json", "[1, 2]", 6);
    expect_refused(d, "config.json", "not a JSON object");
}

int main(void) {
    const char *variants[] = {"llama_gqa_f32", "llama_gqa_bf16", "llama3_rope_f32", "llama3_rope_bf16",
                              "mistral_f32",   "mistral_bf16",   "mistral_f16",     "qwen2_f32",
                              "qwen2_bf16"};
    const char *isas[] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 9; i++)
        for (int k = 0; k < 3; k++)
            if (cpu_isa_supported(isas[k]))
                for (int nt = 1; nt <= 2; nt++) check_variant(variants[i], isas[k], nt);
    check_configs();

    snprintf(tmp_root, sizeof tmp_root, "/tmp/bild_test_hf.XXXXXX");
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    check_refusals();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    return TEST_DONE("test_hf");
}
