/* gpu.c - decoding speed against the memory-bandwidth floor on any backend
 * (--device cpu, cuda:N), for real models and for model shapes without their
 * weights (a folder holding only a config.json: random weights made on the
 * device, hf_open_dummy).
 *
 * For each model:
 *   1. decode: a prompt of --ctx tokens (default 32), then --rounds single-
 *      token steps as greedy decoding runs them (transformer_run, then the
 *      argmax from transformer_logits_stats, fed back): tokens/s and ms/step;
 *   2. the bandwidth floor: bytes one step must read = every weight matrix
 *      once in its dtype (one embedding row, unless the embedding is also
 *      the classifier), the f32 norm weights and biases, and the f32 KV
 *      cache up to the average position of the timed steps; bw_frac =
 *      (bytes/step / seconds/step) / the device's bandwidth (measured with
 *      backend_cuda_measure_bandwidth on a GPU; on the CPU only if --bw
 *      GBPS is given, else n/a);
 *   3. verification blocks: transformer_run with LOGITS_ALL (plus the row
 *      statistics a verifier asks for) over T = 1, 8 and 16 tokens at the
 *      same position, the cache cut back after each: the cost of T = 8 and
 *      T = 16 relative to T = 1 (BiLD's c and the block cost in one).
 *
 * Output: a table on stderr and one JSON line per model on stdout:
 *   {"model","device","dtype","params","tok_s","ms_step","bytes_step",
 *    "bw_frac" (null when unknown),"verify8_ratio","verify16_ratio", ...}
 *
 * usage: bench/gpu [--device DEV] [--rounds N] [--ctx N] [--threads N] [--bw GBPS]
 *                  [--dtype bf16|f16|f32] [--gemm auto|custom|cublas] MODEL_OR_CONFIGDIR...
 * Not a test: it prints numbers and asserts nothing. tests/gpu/configs/
 * holds the shapes of Llama-2-7B, Llama-3.2-1B and a tiny model.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#ifdef BILD_CUDA
#include "kernels/cuda/cuda.h"
#endif
#include "model/generate.h"
#include "model/model.h"
#include "model/transformer.h"

static const char *HELP =
    "usage: bench/gpu [options] MODEL_OR_CONFIGDIR...\n"
    "\n"
    "Decode speed against the memory-bandwidth floor, and the cost of a\n"
    "verification block (T = 8, 16) relative to one step. A folder with a\n"
    "config.json but no weights (or the config.json itself) runs with random\n"
    "weights; anything else opens as a model (llama2.c .bin, Hugging Face\n"
    "folder). Table on stderr, one JSON line per model on stdout.\n"
    "\n"
    "  --device DEV     cpu (default), cuda or cuda:N (make CUDA=1)\n"
    "  --rounds N       timed decode steps (default 64)\n"
    "  --ctx N          prompt length: the position the timed steps start at\n"
    "                   (default 32); the KV cache is cut to what the run needs\n"
    "  --threads N      CPU threads (default: all online cores)\n"
    "  --bw GBPS        the device's bandwidth in GB/s for bw_frac (default:\n"
    "                   measured on a GPU, n/a on the CPU)\n"
    "  --dtype T        matrices of random-weight models: bf16 (default), f16, f32\n"
    "  --gemm MODE      CUDA matmuls: auto (default), custom, cublas\n"
    "  --graphs         CUDA: run each decoding step as one CUDA graph (recorded\n"
    "                   and updated each step) instead of launching its kernels\n"
    "                   one by one (for comparison; off by default)\n"
    "  --profile        CUDA: after the timing, where 16 steps' GPU time goes, by kernel\n"
    "  --kernels        first time the matmul op alone at Llama-2-7B's shapes\n"
    "                   (T = 1..16, each path) and a tiny op's launch cost\n"
    "  -h, --help       this help\n";

/* Bytes of weights one decoding step reads in the model's own dtype:
 * every matrix once, one embedding row unless the embedding is also the
 * classifier, and the f32 norm weights and biases. */
static double step_weight_bytes(const model_config_t *c, dtype_t md) {
    double d = c->dim, q = (double)c->n_heads * c->head_dim, kv = (double)c->n_kv_heads * c->head_dim;
    double hid = c->hidden_dim, V = c->vocab_size, es = (double)dtype_size(md);
    double mats = c->n_layers * (d * q + 2 * d * kv + q * d + 3 * d * hid);
    mats += c->shared_classifier ? V * d : V * d + d; /* classifier (+ one embedding row) */
    double f32 = c->n_layers * (2 * d + (c->qkv_bias ? q + 2 * kv : 0)) + d;
    return mats * es + f32 * 4;
}

/* Bytes of f32 KV cache one step at position pos reads (keys and values of
 * positions 0..pos, every layer). */
static double step_kv_bytes(const model_config_t *c, double pos) {
    return 2.0 * c->n_layers * c->n_kv_heads * c->head_dim * (pos + 1) * 4;
}

static int is_file(const char *dir, const char *name) {
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Opens path: a folder with config.json and no weights (or a config.json
 * path) as random weights of dtype, else model_open. *dummy says which. */
static model_file_t *open_any(const char *path, dtype_t dt, int *dummy, char *err, size_t errlen) {
    struct stat st;
    char dir[4096];
    size_t n = strlen(path);
    *dummy = 0;
    if (n >= 11 && !strcmp(path + n - 11, "config.json") && (n == 11 || path[n - 12] == '/')) {
        snprintf(dir, sizeof dir, "%.*s", n > 12 ? (int)(n - 12) : 1, n > 11 ? path : ".");
        *dummy = 1;
    } else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode) && is_file(path, "config.json") &&
               !is_file(path, "model.safetensors") && !is_file(path, "model.safetensors.index.json")) {
        snprintf(dir, sizeof dir, "%s", path);
        *dummy = 1;
    }
    return *dummy ? hf_open_dummy(dir, dt, 1, err, errlen) : model_open(path, err, errlen);
}

static void sync_be(backend_t *be) {
#ifdef BILD_CUDA
    if (be->device == DEVICE_CUDA) backend_cuda_sync(be);
#else
    (void)be;
#endif
}

static const char *dtype_name(dtype_t t) { return t == DTYPE_F32 ? "f32" : t == DTYPE_BF16 ? "bf16" : "f16"; }

typedef struct {
    double tok_s, ms_step, bytes_step, v8, v16;
} result_t;

/* Best-of-reps time of one verification pass of T tokens at position pos. */
static double verify_time(transformer_t *tf, backend_t *be, int pos, int T, int reps, int V) {
    int blk[16], next[16], am[16];
    float mp[16], nll[16];
    for (int i = 0; i < T; i++) blk[i] = next[i] = (i * 131 + 17) % V;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) { /* the first is a warm-up */
        transformer_truncate(tf, pos);
        sync_be(be);
        double t0 = now_s();
        if (transformer_run(tf, blk, T, pos, LOGITS_ALL)) return -1;
        transformer_logits_stats(tf, T, next, am, mp, nll);
        sync_be(be);
        double t = now_s() - t0;
        if (r && t < best) best = t;
    }
    transformer_truncate(tf, pos);
    return best;
}

/* Runs the three measurements on one model. 0, or -1 with a message. */
static int profile;

static int bench_model(backend_t *be, model_file_t *m, int ctx, int rounds, result_t *r, char *err, size_t errlen) {
    int need = ctx + rounds + 2 + 16;
    model_limit_context(m, need);
    const model_config_t *c = model_config(m);
    if (c->seq_len < need) {
        snprintf(err, errlen, "the model's context is %d positions; --ctx %d and --rounds %d need %d", c->seq_len, ctx,
                 rounds, need);
        return -1;
    }
    transformer_t *tf = transformer_new(be, c, model_weights(m), 16, err, errlen);
    if (!tf) return -1;
    int V = c->vocab_size, *prompt = malloc(sizeof(int) * (size_t)ctx), tok;
    if (!prompt) {
        transformer_destroy(&tf);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    prompt[0] = c->bos_id >= 0 && c->bos_id < V ? c->bos_id : 0;
    for (int i = 1; i < ctx; i++) prompt[i] = (int)((i * 7919u + 3) % (unsigned)V);
    int rc = -1;
    if (transformer_run(tf, prompt, ctx, 0, LOGITS_LAST)) goto bad;
    transformer_logits_stats(tf, 1, NULL, &tok, NULL, NULL);
    for (int w = 0; w < 2; w++) { /* warm-up steps, then back to ctx */
        if (transformer_run(tf, &tok, 1, ctx + w, LOGITS_LAST)) goto bad;
        transformer_logits_stats(tf, 1, NULL, &tok, NULL, NULL);
    }
    transformer_truncate(tf, ctx);
    sync_be(be);
    double t0 = now_s();
    for (int i = 0; i < rounds; i++) {
        if (transformer_run(tf, &tok, 1, ctx + i, LOGITS_LAST)) goto bad;
        transformer_logits_stats(tf, 1, NULL, &tok, NULL, NULL); /* greedy: waits for the step */
    }
    sync_be(be);
    double s = (now_s() - t0) / rounds;
    r->tok_s = 1 / s, r->ms_step = s * 1e3;
    r->bytes_step = step_weight_bytes(c, model_weights(m)->dtype) + step_kv_bytes(c, ctx + (rounds - 1) / 2.0);
    int reps = rounds / 4 < 3 ? 3 : rounds / 4 > 20 ? 20 : rounds / 4;
    double t1 = verify_time(tf, be, ctx, 1, reps, V), t8 = verify_time(tf, be, ctx, 8, reps, V),
           t16 = verify_time(tf, be, ctx, 16, reps, V);
    if (t1 <= 0 || t8 < 0 || t16 < 0) goto bad;
    r->v8 = t8 / t1, r->v16 = t16 / t1;
#ifdef BILD_CUDA
    if (profile && be->device == DEVICE_CUDA) { /* where a decoding step's GPU time goes */
        transformer_truncate(tf, ctx);
        backend_cuda_profile(be, 1);
        int steps = rounds < 16 ? rounds : 16;
        for (int i = 0; i < steps; i++) {
            if (transformer_run(tf, &tok, 1, ctx + i, LOGITS_LAST)) goto bad;
            transformer_logits_stats(tf, 1, NULL, &tok, NULL, NULL);
        }
        const char *names[32];
        double ms[32], total = 0;
        int cnt[32], k = backend_cuda_profile_report(be, names, ms, cnt, 32);
        backend_cuda_profile(be, 0);
        for (int i = 0; i < k; i++) total += ms[i];
        fprintf(stderr, "  GPU time per step by kernel (from its start to the next kernel's), %d steps:\n", steps);
        for (int i = 0; i < k; i++)
            fprintf(stderr, "    %-40s %8.3f ms %5.1f%%  %5.1f launches\n", names[i], ms[i] / steps, 100 * ms[i] / total,
                    (double)cnt[i] / steps);
    }
#endif
    rc = 0;
bad:
    if (rc) snprintf(err, errlen, "a forward pass refused its input (internal error)");
    free(prompt);
    transformer_destroy(&tf);
    return rc;
}

/* --kernels: the matmul op alone at Llama-2-7B's shapes (random bf16
 * weights), T = 1 and 8, each path, in microseconds and GB/s of weights
 * streamed; and the cost of one tiny op (launch overhead). Best of reps. */
static void bench_kernels(backend_t *be, dtype_t dt) {
    static const struct { const char *name; int n, d, jobs; } sh[] = {
        {"qkv 3x(4096,4096)", 4096, 4096, 3}, {"wo (4096,4096)", 4096, 4096, 1}, {"w2 (4096,11008)", 4096, 11008, 1},
        {"swiglu 2x(11008,4096)", 11008, 4096, -1}, {"wcls (32000,4096)", 32000, 4096, 1}};
    tensor_t x = be->alloc(be, 16 * 11008), out = be->alloc(be, 16 * 32000 * 3);
    fprintf(stderr, "%-24s %4s %-7s %10s %9s\n", "matmul", "T", "path", "us", "GB/s");
    for (size_t k = 0; k < sizeof sh / sizeof *sh; k++) {
        int nj = sh[k].jobs < 0 ? 2 : sh[k].jobs;
        tensor_t w[3];
        for (int j = 0; j < nj; j++) w[j] = be->random(be, dt, (int64_t)sh[k].n * sh[k].d, 7 + j, -0.02f, 0.02f);
        double bytes = (double)nj * sh[k].n * sh[k].d * (dt == DTYPE_F32 ? 4 : 2);
        static const int Ts[] = {1, 2, 4, 8, 16};
        for (int ti = 0; ti < 5; ti++)
            for (int path = 1; path <= 2; path++) {
                int T = Ts[ti];
#ifdef BILD_CUDA
                if (be->device == DEVICE_CUDA) backend_cuda_set_gemm(be, path);
                else if (path == 2) continue;
#else
                if (path == 2) continue;
#endif
                double best = 1e30;
                for (int rep = 0; rep < 30; rep++) {
                    sync_be(be);
                    double t0 = now_s();
                    if (sh[k].jobs < 0) be->swiglu(be, out, x, w[0], w[1], T, sh[k].d, sh[k].n);
                    else {
                        matmul_job_t jb[3];
                        for (int j = 0; j < nj; j++) jb[j] = (matmul_job_t){w[j], out, (int64_t)j * 16 * sh[k].n, sh[k].n};
                        be->matmul(be, x, T, sh[k].d, jb, nj, 0);
                    }
                    sync_be(be);
                    double t = now_s() - t0;
                    if (rep >= 3 && t < best) best = t;
                }
                const char *pn = be->device == DEVICE_CPU ? "cpu" : path == 1 ? "custom" : "cublas";
                fprintf(stderr, "%-24s %4d %-7s %10.1f %9.0f\n", sh[k].name, T, pn, best * 1e6, bytes / best / 1e9);
                printf("{\"kernel\":\"%s\",\"T\":%d,\"path\":\"%s\",\"us\":%.2f,\"gbs\":%.1f}\n", sh[k].name, T, pn,
                       best * 1e6, bytes / best / 1e9);
            }
        for (int j = 0; j < nj; j++) be->free(be, &w[j]);
    }
#ifdef BILD_CUDA
    if (be->device == DEVICE_CUDA) backend_cuda_set_gemm(be, 0);
#endif
    /* launch overhead: 2000 rmsnorms of one row of 64, enqueued back to back */
    tensor_t nw = be->random(be, DTYPE_F32, 64, 3, 0.9f, 1.1f);
    sync_be(be);
    double t0 = now_s();
    for (int i = 0; i < 2000; i++) be->rmsnorm(be, out, x, nw, 1, 64, 1e-5f);
    double enq = now_s() - t0;
    sync_be(be);
    double all = now_s() - t0;
    fprintf(stderr, "tiny op (rmsnorm 1x64) x2000: %.2f us each to enqueue, %.2f us each to finish\n", enq / 2000 * 1e6,
            all / 2000 * 1e6);
    printf("{\"kernel\":\"tiny op\",\"enqueue_us\":%.2f,\"finish_us\":%.2f}\n", enq / 2000 * 1e6, all / 2000 * 1e6);
    be->free(be, &nw), be->free(be, &x), be->free(be, &out);
}

static int int_arg(const char *name, const char *v, int lo, int hi, int *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < lo || x > hi) {
        fprintf(stderr, "bench/gpu: %s needs an integer in %d..%d (see --help)\n", name, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int main(int argc, char **argv) {
    const char *device = "cpu", *gemm = NULL, *dts = "bf16";
    int rounds = 64, ctx = 32, threads = 0, n_models = 0, kernels = 0, graphs = 0;
    double bw_given = 0;
    const char **models = calloc((size_t)argc, sizeof *models);
    if (!models) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return fputs(HELP, stdout), 0;
        if (!strcmp(a, "--device") && v) device = v, i++;
        else if (!strcmp(a, "--rounds")) {
            if (int_arg(a, v, 1, 1 << 20, &rounds)) return 2;
            i++;
        } else if (!strcmp(a, "--ctx")) {
            if (int_arg(a, v, 1, 1 << 24, &ctx)) return 2;
            i++;
        } else if (!strcmp(a, "--threads")) {
            if (int_arg(a, v, 1, 1024, &threads)) return 2;
            i++;
        } else if (!strcmp(a, "--bw") && v) {
            char *end;
            bw_given = strtod(v, &end);
            if (!*v || *end || !(bw_given > 0)) {
                fprintf(stderr, "bench/gpu: --bw needs a bandwidth in GB/s above 0 (see --help)\n");
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--gemm") && v) gemm = v, i++;
        else if (!strcmp(a, "--dtype") && v) dts = v, i++;
        else if (!strcmp(a, "--kernels")) kernels = 1;
        else if (!strcmp(a, "--graphs")) graphs = 1;
        else if (!strcmp(a, "--profile")) profile = 1;
        else if (a[0] == '-') {
            fprintf(stderr, "bench/gpu: unknown option or missing value '%s' (see --help)\n", a);
            return 2;
        } else models[n_models++] = a;
    }
    (void)graphs; /* used with CUDA only */
    dtype_t dt = !strcmp(dts, "f32") ? DTYPE_F32 : !strcmp(dts, "f16") ? DTYPE_F16 : DTYPE_BF16;
    if (strcmp(dts, "f32") && strcmp(dts, "f16") && strcmp(dts, "bf16")) {
        fprintf(stderr, "bench/gpu: --dtype: unknown type '%s' (bf16, f16 or f32)\n", dts);
        return 2;
    }
    int gemm_mode = -1;
    if (gemm) {
        gemm_mode = !strcmp(gemm, "auto") ? 0 : !strcmp(gemm, "custom") ? 1 : !strcmp(gemm, "cublas") ? 2 : -1;
        if (gemm_mode < 0) {
            fprintf(stderr, "bench/gpu: --gemm: unknown mode '%s' (auto, custom or cublas)\n", gemm);
            return 2;
        }
    }
    if (kernels) {
        char e2[1024];
        backend_t *kb = backend_new(device, threads, e2, sizeof e2);
        if (!kb) {
            fprintf(stderr, "bench/gpu: %s\n", e2);
            return 1;
        }
        bench_kernels(kb, dt);
        backend_destroy(&kb);
        if (!n_models) return 0;
    }
    if (!n_models) {
        fprintf(stderr, "bench/gpu: give at least one model or config folder (see --help)\n");
        return 2;
    }
    char err[1024];
    backend_t *be = backend_new(device, threads, err, sizeof err);
    if (!be) {
        fprintf(stderr, "bench/gpu: %s\n", err);
        return 1;
    }
    double bw = bw_given * 1e9; /* bytes/s; 0: unknown */
#ifdef BILD_CUDA
    if (be->device == DEVICE_CUDA) {
        if (gemm_mode >= 0) backend_cuda_set_gemm(be, gemm_mode);
        if (graphs) backend_cuda_set_graphs(be, 1);
        if (!bw_given) bw = backend_cuda_measure_bandwidth(be);
    }
#endif
    if (gemm_mode >= 0 && be->device != DEVICE_CUDA) {
        fprintf(stderr, "bench/gpu: --gemm applies to a CUDA device%s\n",
#ifdef BILD_CUDA
                ""
#else
                " (this build has no CUDA: make CUDA=1)"
#endif
        );
        backend_destroy(&be);
        return 2;
    }
    char where[256], bws[64] = "n/a";
    if (be->device == DEVICE_CPU) snprintf(where, sizeof where, "%s/%s, %d threads", be->name, be->isa, be->n_threads);
    else snprintf(where, sizeof where, "%s (%s)", be->name, be->isa);
    if (bw > 0) snprintf(bws, sizeof bws, "%.0f GB/s (%s)", bw / 1e9, bw_given ? "given" : "measured");
    fprintf(stderr, "bench/gpu: %s; bandwidth %s; prompt %d tokens, %d decode steps\n", where, bws, ctx, rounds);
    fprintf(stderr, "%-36s %-5s %9s %9s %9s %9s %8s %7s %7s\n", "model", "dtype", "params", "tok/s", "ms/step",
            "MB/step", "floor%", "T8/T1", "T16/T1");
    int failed = 0;
    for (int k = 0; k < n_models; k++) {
        int dummy;
        model_file_t *m = open_any(models[k], dt, &dummy, err, sizeof err);
        result_t r = {0};
        if (!m || bench_model(be, m, ctx, rounds, &r, err, sizeof err)) {
            fprintf(stderr, "bench/gpu: %s: %s\n", models[k], err);
            model_close(&m);
            failed++;
            continue;
        }
        const model_config_t *c = model_config(m);
        double frac = bw > 0 ? r.bytes_step * r.tok_s / bw : -1;
        char fs[16] = "n/a";
        if (frac >= 0) snprintf(fs, sizeof fs, "%.1f", 100 * frac);
        fprintf(stderr, "%-36s %-5s %8.1fM %9.1f %9.3f %9.1f %8s %7.2f %7.2f%s\n", models[k],
                dtype_name(model_weights(m)->dtype), model_n_params(c) / 1e6, r.tok_s, r.ms_step, r.bytes_step / 1e6,
                fs, r.v8, r.v16, dummy ? "  (random weights)" : "");
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", models[k]);
        cJSON_AddStringToObject(j, "device", be->name);
        cJSON_AddStringToObject(j, "device_desc", be->isa);
        cJSON_AddStringToObject(j, "dtype", dtype_name(model_weights(m)->dtype));
        cJSON_AddBoolToObject(j, "dummy_weights", dummy);
        cJSON_AddNumberToObject(j, "params", (double)model_n_params(c));
        cJSON_AddNumberToObject(j, "ctx", ctx);
        cJSON_AddNumberToObject(j, "rounds", rounds);
        if (be->device == DEVICE_CPU) cJSON_AddNumberToObject(j, "threads", be->n_threads);
        cJSON_AddNumberToObject(j, "tok_s", r.tok_s);
        cJSON_AddNumberToObject(j, "ms_step", r.ms_step);
        cJSON_AddNumberToObject(j, "bytes_step", r.bytes_step);
        if (bw > 0) cJSON_AddNumberToObject(j, "bw_gbs", bw / 1e9);
        else cJSON_AddNullToObject(j, "bw_gbs");
        if (frac >= 0) cJSON_AddNumberToObject(j, "bw_frac", frac);
        else cJSON_AddNullToObject(j, "bw_frac");
        cJSON_AddNumberToObject(j, "verify8_ratio", r.v8);
        cJSON_AddNumberToObject(j, "verify16_ratio", r.v16);
        char *s = cJSON_PrintUnformatted(j);
        if (s) printf("%s\n", s);
        fflush(stdout);
        free(s);
        cJSON_Delete(j);
        model_close(&m);
    }
    backend_destroy(&be);
    free(models);
    return failed ? 1 : 0;
}
