/* align.c - `bild align-data` (a calibration corpus from the large model)
 * and `bild align-eval` (how well a small model agrees with a large one);
 * see align.h and docs/align.md.
 *
 * align-data runs B rows in lockstep through model/batch.c: every step reads
 * the weights once for all B rows. A row starts with BOS, or with a
 * prompt's tokens (which start with BOS) that are forced one per step while
 * the other rows sample; generation goes on past the end of a story
 * (whatever the model emits, BOS and EOS included) until the row holds L
 * tokens. From each step's logits come both the sampled token (model/
 * sampler.h, one sampler per row seeded from --seed and the row's index)
 * and the top-K of the raw distribution, so the top-K files cost one pass
 * over the vocabulary per position. That per-row work runs on a thread
 * pool of its own, one row per chunk, while the backend's threads sleep
 * (on the calling thread alone it held the other core idle: 20-28% fewer
 * tokens/s, docs/align.md). Files are written to temporary names
 * in DIR and renamed when complete, manifest.json last: a DIR holding a
 * manifest.json holds a whole corpus.
 *
 * align-eval runs each window of the text through both models as one
 * teacher-forced pass (transformer_forward with LOGITS_ALL, in blocks of
 * max_block) and takes per position only what the backend's row statistics
 * give: argmax, max probability and -log p of the text's next token. The
 * cost ratio c comes from timing single-token greedy decoding steps of both
 * models in alternating rounds, in the same run.
 *
 * Left out on purpose: --device (the CPU only), Hugging Face tokenizers'
 * chat templates, rows at different positions (prompts are forced in
 * lockstep, one token per step).
 */
#include "align/align.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "kernels/cpu/threadpool.h"
#include "kernels/half.h"
#include "model/batch.h"
#include "model/generate.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the corpus files are written as little-endian arrays straight from memory"
#endif

#define TOPK_MAX 1024 /* most top-K entries per position (insertion into a sorted list) */
#define PROGRESS_S 0.25 /* seconds between progress bar updates */

static const char *DATA_HELP =
    "usage: bild align-data --large PATH --tokens N --out DIR [options]\n"
    "\n"
    "Writes a calibration corpus for aligning a small model with the large one:\n"
    "rows of L tokens sampled from the large model, and at every position the\n"
    "large model's K most probable next tokens with their log-probabilities\n"
    "(format: docs/align.md; tools/align/train_small.py reads it). B rows are\n"
    "generated together, so each weight matrix is read once per step for all of\n"
    "them. A progress bar goes to stderr when it is a terminal; otherwise only a\n"
    "summary line.\n"
    "\n"
    "  -L, --large PATH        the large model (llama2.c checkpoint or Hugging Face folder)\n"
    "  -z, --tokenizer PATH    its tokenizer (default: next to the model)\n"
    "      --prompts FILE      start rows with these prompts, one per line (blank lines\n"
    "                          skipped), cycled over the rows (default: BOS alone)\n"
    "  -n, --tokens N          tokens to write at least; rounded up to whole rows\n"
    "  -o, --out DIR           the corpus folder (created; must be empty or absent)\n"
    "      --force             write into an existing non-empty DIR (replacing a corpus)\n"
    "      --row-len L         tokens per row (default 256, capped at the model's context)\n"
    "  -t, --temperature T     sampling temperature, 0 = greedy (default 1.0)\n"
    "      --top-p P           nucleus mass in (0, 1] (default 1 = off)\n"
    "  -s, --seed S            RNG seed (default: from the clock, recorded in the manifest);\n"
    "                          row r samples with a seed derived from S and r\n"
    "  -k, --topk K            top-K entries per position, 0 = no top-K files (default 16;\n"
    "                          at most 1024 and the vocabulary size)\n"
    "  -b, --batch B           rows generated together (default 32)\n"
    "  -j, --threads N         CPU threads (default: all online cores)\n"
    "      --json              print a one-line JSON summary on stdout\n"
    "  -q, --quiet             nothing on stderr but errors\n"
    "  -h, --help              this help\n"
    "\n"
    "exit status: 0 ok, 1 runtime failure (out of memory, write error, interrupted),\n"
    "2 bad command line (including an existing non-empty DIR without --force),\n"
    "3 unreadable or invalid input file, 4 a row or prompt longer than the context.\n";

static const char *EVAL_HELP =
    "usage: bild align-eval --small PATH --large PATH --text FILE [options]\n"
    "\n"
    "Teacher-forced comparison of a small and a large model on a text: at every\n"
    "position, whether the two models' greedy next tokens agree, the small model's\n"
    "max probability (the share of positions at or above each threshold, and the\n"
    "agreement there), both models' perplexity on the text's next tokens, and the\n"
    "cost ratio c = small / large time per decoding step, timed here in the same run.\n"
    "Documents are separated by <|endoftext|> (a file without it is one document);\n"
    "each is encoded with BOS and cut into windows of at most --ctx tokens that\n"
    "overlap by one, so every token after BOS is predicted once.\n"
    "\n"
    "  -S, --small PATH        the small model\n"
    "  -L, --large PATH        the large model (same vocabulary)\n"
    "  -z, --tokenizer PATH    tokenizer for both (default: next to the large model;\n"
    "                          one next to the small model must be the same vocabulary)\n"
    "      --text FILE         the text to evaluate on\n"
    "  -n, --max-tokens N      evaluate at most N positions (default 0 = all)\n"
    "      --ctx L             window length (default 256, capped at the models' context)\n"
    "      --thresholds LIST   max-probability thresholds, comma-separated\n"
    "                          (default 0.5,0.6,0.7,0.8,0.9)\n"
    "  -j, --threads N         CPU threads (default: all online cores)\n"
    "      --json              print one JSON object instead of the table\n"
    "  -q, --quiet             nothing on stderr but errors\n"
    "  -h, --help              this help\n"
    "\n"
    "exit status: 0 ok, 1 runtime failure, 2 bad command line, 3 unreadable or\n"
    "invalid input file (including a small/large vocabulary mismatch and a text\n"
    "with no words), 4 --ctx longer than a model's context.\n";

/* ---- the corpus format's numbers ---- */

uint64_t align_fnv1a64(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t align_model_fnv(const model_config_t *c, const model_weights_t *w) {
    int32_t f[6] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size};
    uint64_t h = align_fnv1a64(ALIGN_FNV_INIT, f, sizeof f);
    if (w->tok_emb) h = align_fnv1a64(h, w->tok_emb, (size_t)c->vocab_size * c->dim * dtype_size(w->dtype));
    return h;
}

static inline float rank_key(float x) { return x == x ? x : -INFINITY; }

void align_topk(const float *x, int n, int k, int *ids) {
    /* ids[0..size) sorted best first; an id enters only if strictly better
     * than the worst kept one, so among equal logits the lower id (seen
     * first) stays ahead. thr caches the worst kept value once full. */
    int size = 0;
    float thr = -INFINITY;
    for (int i = 0; i < n; i++) {
        float v = rank_key(x[i]);
        if (size == k && !(v > thr)) continue;
        int j = size < k ? size++ : k - 1;
        while (j > 0 && rank_key(x[ids[j - 1]]) < v) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = i;
        if (size == k) thr = rank_key(x[ids[k - 1]]);
    }
}

/* FNV-1a 64 of a file's bytes. 0 with the hash in *h, or -1 after a message. */
static int fnv_file(const char *cmd, const char *path, uint64_t *h) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bild %s: %s: cannot open: %s\n", cmd, path, strerror(errno));
        return -1;
    }
    unsigned char buf[1 << 16];
    uint64_t v = ALIGN_FNV_INIT;
    for (size_t r; (r = fread(buf, 1, sizeof buf, f)) > 0;) v = align_fnv1a64(v, buf, r);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "bild %s: %s: read error\n", cmd, path);
        return -1;
    }
    *h = v;
    return 0;
}

/* The seed of row r's sampler: a mix of --seed and r (splitmix64), so rows
 * differ and a corpus depends only on the seed, not on --batch. */
static uint64_t row_seed(uint64_t seed, uint64_t r) {
    uint64_t x = seed ^ (r * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* A float option as it was most likely typed (0.8, not 0.800000011920929). */
static double tidy(float f) {
    char s[32];
    snprintf(s, sizeof s, "%.7g", f);
    return strtod(s, NULL);
}

static const char *dtype_name(dtype_t t) { return t == DTYPE_F16 ? "f16" : t == DTYPE_BF16 ? "bf16" : "f32"; }

/* ---- shared set-up ---- */

/* A model and, unless optional and none is found, its tokenizer. */
typedef struct {
    model_file_t *m;
    tokenizer_t *tok;
    char tok_path[4096];
} opened_t;

static void opened_free(opened_t *o) {
    tokenizer_destroy(&o->tok);
    model_close(&o->m);
}

/* Opens path and its tokenizer (tokpath, else the default beside the
 * model; with `optional`, a missing default is no error and leaves tok
 * NULL). Prints a one-line message and returns -1 on failure. */
static int open_model(const char *cmd, const char *path, const char *tokpath, int optional, opened_t *o) {
    char err[1024], tried[8200];
    *o = (opened_t){0};
    if (!(o->m = model_open(path, err, sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        return -1;
    }
    const model_config_t *c = model_config(o->m);
    if (tokpath) snprintf(o->tok_path, sizeof o->tok_path, "%s", tokpath);
    else if (cli_default_tokenizer(path, c->vocab_size, o->tok_path, sizeof o->tok_path, tried, sizeof tried)) {
        if (optional) return 0;
        fprintf(stderr, "bild %s: no --tokenizer given and none found next to %s (tried %s); pass --tokenizer PATH\n",
                cmd, path, tried);
        opened_free(o);
        return -1;
    }
    if (!(o->tok = cli_load_tokenizer(o->tok_path, c->vocab_size, c->bos_id, c->eos_id, err, sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        opened_free(o);
        return -1;
    }
    return 0;
}

/* Reads a whole text file (NUL bytes refused). NULL with a message naming
 * the file and `what` it is. Caller frees. */
static char *read_text(const char *cmd, const char *what, const char *path, size_t *len) {
    char err[1024];
    char *buf = cli_read_text_file(path, what, len, err, sizeof err);
    if (!buf) fprintf(stderr, "bild %s: %s\n", cmd, err);
    return buf;
}

static int is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\f' || ch == '\v'; }

/* Trims s in place; returns the first non-space character. */
static char *trim(char *s) {
    while (is_space(*s)) s++;
    size_t n = strlen(s);
    while (n && is_space(s[n - 1])) s[--n] = 0;
    return s;
}

static volatile sig_atomic_t g_interrupted = 0;
static void on_interrupt(int sig) { g_interrupted = sig; }

/* ---- align-data ---- */

typedef struct {
    const char *dir;
    char path[3][4096], tmp[3][4096]; /* tokens, topk_ids, topk_logp */
    FILE *f[3];
    int n_files;
} out_files_t;

static const char *const FILE_NAMES[3] = {"tokens.u32", "topk_ids.u32", "topk_logp.f16"};

static void out_abort(out_files_t *o) {
    for (int i = 0; i < o->n_files; i++) {
        if (o->f[i]) fclose(o->f[i]);
        o->f[i] = NULL;
        unlink(o->tmp[i]);
    }
}

/* Flushes, syncs and closes the temporary files; 0 or -1 (errno set). */
static int out_close(out_files_t *o) {
    int rc = 0;
    for (int i = 0; i < o->n_files; i++) {
        if (fflush(o->f[i]) || fsync(fileno(o->f[i]))) rc = -1;
        if (fclose(o->f[i])) rc = -1;
        o->f[i] = NULL;
    }
    return rc;
}

/* Progress on a terminal: rows finished, share of tokens, tokens/s, ETA. */
static void progress_draw(long long done, long long total, long long rows_done, long long rows, double secs) {
    double frac = total ? (double)done / total : 1, rate = secs > 0 ? done / secs : 0;
    double eta = rate > 0 ? (total - done) / rate : 0;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\rbild align-data: [%s] %5.1f%%  rows %lld/%lld  %.0f tok/s  ETA %d:%02d:%02d ", bar,
            100 * frac, rows_done, rows, rate, (int)(eta / 3600), (int)fmod(eta / 60, 60), (int)fmod(eta, 60));
    fflush(stderr);
}

/* The prompts of --prompts: one per non-blank line, each encoded with BOS.
 * Returns the count (>= 1) or -1 after a message; *rc the exit code. */
static int load_prompts(const char *path, const tokenizer_t *tok, int row_len, int ***ids, int **lens, int *rc) {
    size_t len;
    *rc = EXIT_INPUT;
    char *text = read_text("align-data", "prompts file", path, &len);
    if (!text) return -1;
    int n = 0, cap = 0;
    *ids = NULL, *lens = NULL;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t ll = strlen(line);
        if (ll && line[ll - 1] == '\r') line[--ll] = 0;
        if (!*trim(line)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            int **ni = realloc(*ids, sizeof(int *) * cap), *nl = NULL;
            if (ni) *ids = ni;
            if (ni) nl = realloc(*lens, sizeof(int) * cap);
            if (nl) *lens = nl;
            if (!ni || !nl) goto oom;
        }
        int count = tokenizer_encode(tok, line, 1, NULL, 0);
        if (count > row_len) {
            fprintf(stderr, "bild align-data: prompts file '%s': prompt %d is %d tokens, longer than a row (%d); "
                            "shorten it or raise --row-len\n", path, n + 1, count, row_len);
            *rc = EXIT_FIT;
            goto fail;
        }
        if (count < 1 || !((*ids)[n] = malloc(sizeof(int) * (size_t)count))) goto oom;
        tokenizer_encode(tok, line, 1, (*ids)[n], count);
        (*lens)[n++] = count;
    }
    free(text);
    if (!n) {
        fprintf(stderr, "bild align-data: prompts file '%s' holds no prompt (only blank lines)\n", path);
        return -1;
    }
    return n;
oom:
    fprintf(stderr, "bild align-data: out of memory reading the prompts\n");
    *rc = EXIT_RUNTIME;
fail:
    for (int i = 0; i < n; i++) free((*ids)[i]);
    free(*ids), free(*lens), free(text);
    *ids = NULL, *lens = NULL;
    return -1;
}

/* 1 if dir holds anything besides . and .., 0 if not, -1 (errno set) if it
 * cannot be read. */
static int dir_nonempty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(d));)
        found = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return found;
}

/* One step's work per row after the forward pass: the top-K of the raw
 * logits as log-probabilities, and the next token (the prompt's, or
 * sampled). Rows are independent (each has its own sampler and output
 * slots), so they run as one chunk each on a thread pool. */
typedef struct {
    const float *logits;  /* (n, V) */
    const int *argmax;    /* (n) row statistics of the logits */
    const float *max_p;   /* (n) */
    int V, K, L, p;
    int *tok;             /* (n, L) rows */
    const int *plen;      /* (n) prompt lengths */
    sampler_t **smp;      /* (n) */
    int *scratch;         /* (n, K) top-K ids */
    uint32_t *kid;        /* (n, L, K) */
    uint16_t *klp;        /* (n, L, K) */
} post_task_t;

static void post_row(void *arg, int b, int n_rows) {
    const post_task_t *t = arg;
    const float *x = t->logits + (size_t)b * t->V;
    if (t->K) {
        /* log-softmax of the raw logits: x - log Z, with
         * log Z = max + log(sum exp(x - max)) = max - log(max p) */
        double log_z = (double)x[t->argmax[b]] - log((double)t->max_p[b]);
        int *ids = t->scratch + (size_t)b * t->K;
        size_t at = ((size_t)b * t->L + t->p) * t->K;
        align_topk(x, t->V, t->K, ids);
        for (int i = 0; i < t->K; i++) {
            t->kid[at + i] = (uint32_t)ids[i];
            t->klp[at + i] = f32_to_f16((float)((double)x[ids[i]] - log_z));
        }
    }
    int *row = t->tok + (size_t)b * t->L;
    if (t->p + 1 < t->L && t->p + 1 >= t->plen[b]) row[t->p + 1] = sampler_sample(t->smp[b], x);
}

int cmd_align_data(int argc, char **argv) {
    const char *cmd = "align-data", *large = NULL, *tokpath = NULL, *prompts_path = NULL, *out_dir = NULL;
    int n_tokens = 0, row_len = 0, topk = 16, batch = 32, threads = 0, json = 0, quiet = 0, force = 0,
        seed_given = 0, row_len_given = 0, tokens_given = 0;
    float temperature = 1.0f, top_p = 1.0f;
    uint64_t seed = 0;
    const opt_t opts[] = {
        {"-L", "--large", OPT_STR, &large, 0, 0, 0, NULL},
        {"-z", "--tokenizer", OPT_STR, &tokpath, 0, 0, 0, NULL},
        {NULL, "--prompts", OPT_STR, &prompts_path, 0, 0, 0, NULL},
        {"-n", "--tokens", OPT_INT, &n_tokens, 1, INT_MAX, 0, &tokens_given},
        {"-o", "--out", OPT_STR, &out_dir, 0, 0, 0, NULL},
        {NULL, "--force", OPT_FLAG, &force, 0, 0, 0, NULL},
        {NULL, "--row-len", OPT_INT, &row_len, 2, INT_MAX, 0, &row_len_given},
        {"-t", "--temperature", OPT_FLOAT, &temperature, 0, 100, 0, NULL},
        {NULL, "--top-p", OPT_FLOAT, &top_p, 0, 1, 1, NULL},
        {"-s", "--seed", OPT_U64, &seed, 0, 0, 0, &seed_given},
        {"-k", "--topk", OPT_INT, &topk, 0, TOPK_MAX, 0, NULL},
        {"-b", "--batch", OPT_INT, &batch, 1, 4096, 0, NULL},
        {"-j", "--threads", OPT_INT, &threads, 1, 1024, 0, NULL},
        {NULL, "--json", OPT_FLAG, &json, 0, 0, 0, NULL},
        {"-q", "--quiet", OPT_FLAG, &quiet, 0, 0, 0, NULL},
    };
    int pr = cli_parse(cmd, argc, argv, opts, (int)(sizeof opts / sizeof *opts), DATA_HELP);
    if (pr) return pr > 0 ? EXIT_OK : EXIT_USAGE;
    if (!large) return cli_usage_error(cmd, "--large is required");
    if (!tokens_given) return cli_usage_error(cmd, "--tokens is required");
    if (!out_dir || !*out_dir) return cli_usage_error(cmd, "--out is required");

    /* the output folder first: refusing it costs nothing */
    struct stat st;
    if (stat(out_dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return cli_usage_error(cmd, "--out %s exists and is not a folder", out_dir);
        int ne = dir_nonempty(out_dir);
        if (ne < 0) {
            fprintf(stderr, "bild %s: cannot use --out %s: %s\n", cmd, out_dir, strerror(errno));
            return EXIT_INPUT;
        }
        if (ne && !force)
            return cli_usage_error(cmd, "--out %s exists and is not empty; choose another folder or pass --force",
                                   out_dir);
    }

    char err[1024];
    int rc = EXIT_INPUT, n_prompts = 0, **p_ids = NULL, *p_lens = NULL, B = 0; /* B: rows per batch */
    opened_t M = {0};
    backend_t *be = NULL;
    batch_t *bt = NULL;
    threadpool_t *pool = NULL;
    sampler_t **smp = NULL;
    int *tok = NULL, *cur = NULL, *plen = NULL, *am = NULL, *ids_i = NULL;
    uint32_t *tok32 = NULL, *kid = NULL;
    uint16_t *klp = NULL;
    float *maxp = NULL;
    out_files_t of = {.dir = out_dir};
    struct sigaction sa_old[2], sa = {0};
    int handlers = 0, made_dir = 0;
    if (open_model(cmd, large, tokpath, 0, &M)) goto done;
    const model_config_t *c = model_config(M.m);
    const int V = c->vocab_size;
    if (row_len_given && row_len > c->seq_len) {
        fprintf(stderr, "bild %s: --row-len %d is longer than the model's context of %d tokens\n", cmd, row_len,
                c->seq_len);
        rc = EXIT_FIT;
        goto done;
    }
    if (!row_len_given) row_len = c->seq_len < 256 ? c->seq_len : 256;
    if (topk > V) {
        rc = cli_usage_error(cmd, "--topk %d is more than the vocabulary of %d tokens", topk, V);
        goto done;
    }
    if (c->bos_id < 0) {
        fprintf(stderr, "bild %s: %s has no BOS token; rows start with BOS\n", cmd, large);
        goto done;
    }
    if (prompts_path && (n_prompts = load_prompts(prompts_path, M.tok, row_len, &p_ids, &p_lens, &rc)) < 0) goto done;
    const int L = row_len, K = topk;
    const long long S = ((long long)n_tokens + L - 1) / L;
    B = S < batch ? (int)S : batch;
    uint64_t tok_fnv;
    if (fnv_file(cmd, M.tok_path, &tok_fnv)) goto done;
    rc = EXIT_RUNTIME;
    if (!seed_given) seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (!(be = backend_new("cpu", threads, err, sizeof err)) ||
        !(bt = batch_new(be, c, model_weights(M.m), B, L, err, sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, be ? err : "cannot start the CPU backend");
        goto done;
    }
    size_t BL = (size_t)B * L;
    smp = calloc((size_t)B, sizeof *smp);
    tok = malloc(sizeof(int) * BL), tok32 = malloc(sizeof(uint32_t) * BL);
    cur = malloc(sizeof(int) * B), plen = malloc(sizeof(int) * B);
    am = malloc(sizeof(int) * B), maxp = malloc(sizeof(float) * B);
    if (K) {
        kid = malloc(sizeof(uint32_t) * BL * K), klp = malloc(sizeof(uint16_t) * BL * K);
        ids_i = malloc(sizeof(int) * (size_t)B * K);
    }
    /* the per-row work after each step runs on as many threads as the model */
    pool = threadpool_new(be->n_threads);
    if (!pool || !smp || !tok || !tok32 || !cur || !plen || !am || !maxp || (K && (!kid || !klp || !ids_i))) {
        fprintf(stderr, "bild %s: out of memory for %d rows of %d tokens\n", cmd, B, L);
        goto done;
    }
    /* from here on an interrupt stops the loop, which cleans up */
    sa.sa_handler = on_interrupt;
    sigaction(SIGINT, &sa, &sa_old[0]);
    sigaction(SIGTERM, &sa, &sa_old[1]);
    handlers = 1;
    /* the folder and the temporary files; a manifest.json from an earlier
     * corpus goes first, so the folder never looks complete while it is not */
    if (mkdir(out_dir, 0777) == 0) made_dir = 1;
    else if (errno != EEXIST) {
        fprintf(stderr, "bild %s: cannot create --out %s: %s\n", cmd, out_dir, strerror(errno));
        rc = EXIT_INPUT;
        goto done;
    }
    char man_path[4200], man_tmp[4200];
    snprintf(man_path, sizeof man_path, "%s/manifest.json", out_dir);
    snprintf(man_tmp, sizeof man_tmp, "%s/.manifest.json.tmp", out_dir);
    if (unlink(man_path) && errno != ENOENT) {
        fprintf(stderr, "bild %s: cannot remove the old %s: %s\n", cmd, man_path, strerror(errno));
        goto done;
    }
    of.n_files = K ? 3 : 1;
    for (int i = 0; i < 3; i++) {
        snprintf(of.path[i], sizeof of.path[i], "%s/%s", out_dir, FILE_NAMES[i]);
        snprintf(of.tmp[i], sizeof of.tmp[i], "%s/.%s.tmp", out_dir, FILE_NAMES[i]);
        if (!K && i) unlink(of.path[i]); /* no top-K this time: an old corpus's would mislead */
    }
    for (int i = 0; i < of.n_files; i++)
        if (!(of.f[i] = fopen(of.tmp[i], "wb"))) {
            fprintf(stderr, "bild %s: cannot write %s: %s\n", cmd, of.tmp[i], strerror(errno));
            goto done;
        }

    int tty = !quiet && isatty(STDERR_FILENO);
    const long long total = S * L;
    double t0 = now_s(), last_draw = 0;
    long long rows_done = 0;
    for (long long r0 = 0; r0 < S; r0 += B) {
        const int n = S - r0 < B ? (int)(S - r0) : B;
        for (int b = 0; b < n; b++) {
            long long r = r0 + b;
            int *row = tok + (size_t)b * L;
            if (n_prompts) {
                int pi = (int)(r % n_prompts);
                memcpy(row, p_ids[pi], sizeof(int) * p_lens[pi]);
                plen[b] = p_lens[pi];
            } else
                row[0] = c->bos_id, plen[b] = 1;
            sampler_destroy(&smp[b]);
            if (!(smp[b] = sampler_new(V, temperature, top_p, 0, row_seed(seed, (uint64_t)r)))) {
                fprintf(stderr, "bild %s: out of memory for the samplers\n", cmd);
                goto done;
            }
        }
        for (int p = 0; p < L; p++) {
            if (g_interrupted) {
                if (tty) fputc('\n', stderr);
                fprintf(stderr, "bild %s: interrupted; nothing written to %s\n", cmd, out_dir);
                goto done;
            }
            for (int b = 0; b < n; b++) cur[b] = tok[(size_t)b * L + p];
            const float *lg = batch_step(bt, cur, n, p);
            if (!lg) {
                fprintf(stderr, "bild %s: forward pass refused (internal error)\n", cmd);
                goto done;
            }
            if (K) batch_logits_stats(bt, NULL, am, maxp, NULL); /* log Z of each row, on the backend's threads */
            /* the backend's threads sleep while the rows' work runs on the
             * pool's, and the pool's after it: two pools never spin against
             * each other for the same cores */
            if (be->idle) be->idle(be);
            post_task_t pt = {lg, am, maxp, V, K, L, p, tok, plen, smp, ids_i, kid, klp};
            threadpool_run(pool, post_row, &pt, n);
            threadpool_park(pool);
            double now = now_s();
            if (tty && now - last_draw >= PROGRESS_S) {
                progress_draw(r0 * L + (long long)n * (p + 1), total, rows_done, S, now - t0);
                last_draw = now;
            }
        }
        for (size_t i = 0; i < (size_t)n * L; i++) tok32[i] = (uint32_t)tok[i];
        size_t nk = (size_t)n * L * K;
        if (fwrite(tok32, sizeof(uint32_t), (size_t)n * L, of.f[0]) != (size_t)n * L ||
            (K && (fwrite(kid, sizeof(uint32_t), nk, of.f[1]) != nk || fwrite(klp, sizeof(uint16_t), nk, of.f[2]) != nk))) {
            if (tty) fputc('\n', stderr);
            fprintf(stderr, "bild %s: cannot write to %s: %s\n", cmd, out_dir, strerror(errno));
            goto done;
        }
        rows_done += n;
    }
    if (out_close(&of)) {
        if (tty) fputc('\n', stderr);
        fprintf(stderr, "bild %s: cannot write to %s: %s\n", cmd, out_dir, strerror(errno));
        goto done;
    }
    double wall = now_s() - t0, tok_s = wall > 0 ? total / wall : 0;
    if (tty) {
        progress_draw(total, total, S, S, wall);
        fputc('\n', stderr);
    }

    /* the manifest (the shared contract: docs/align.md) */
    char hex[3][24];
    snprintf(hex[0], sizeof hex[0], "%016llx", (unsigned long long)cli_vocab_fingerprint(M.tok));
    snprintf(hex[1], sizeof hex[1], "%016llx", (unsigned long long)tok_fnv);
    snprintf(hex[2], sizeof hex[2], "%016llx", (unsigned long long)align_model_fnv(c, model_weights(M.m)));
    char seed_s[32];
    snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)seed);
    cJSON *j = cJSON_CreateObject(), *o;
    cJSON_AddStringToObject(j, "format", "bild-align-corpus");
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddNumberToObject(j, "rows", (double)S);
    cJSON_AddNumberToObject(j, "row_len", L);
    cJSON_AddNumberToObject(j, "tokens", (double)total);
    cJSON_AddNumberToObject(j, "vocab_size", V);
    cJSON_AddNumberToObject(j, "bos_id", c->bos_id);
    cJSON_AddNumberToObject(j, "eos_id", c->eos_id);
    cJSON_AddStringToObject(j, "vocab_fingerprint", hex[0]);
    o = cJSON_AddObjectToObject(j, "tokenizer");
    cJSON_AddStringToObject(o, "path", M.tok_path);
    cJSON_AddStringToObject(o, "fnv1a64", hex[1]);
    o = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(o, "path", large);
    cJSON_AddStringToObject(o, "fnv1a64", hex[2]);
    cJSON_AddNumberToObject(o, "dim", c->dim);
    cJSON_AddNumberToObject(o, "n_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "n_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "n_kv_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(o, "hidden_dim", c->hidden_dim);
    cJSON_AddNumberToObject(o, "vocab_size", V);
    cJSON_AddStringToObject(o, "dtype", dtype_name(model_weights(M.m)->dtype));
    o = cJSON_AddObjectToObject(j, "settings");
    cJSON_AddNumberToObject(o, "temperature", tidy(temperature));
    cJSON_AddNumberToObject(o, "top_p", tidy(top_p));
    cJSON_AddRawToObject(o, "seed", seed_s); /* exact: a double would round seeds above 2^53 */
    if (prompts_path) cJSON_AddStringToObject(o, "prompts", prompts_path);
    else cJSON_AddNullToObject(o, "prompts");
    cJSON_AddNumberToObject(o, "topk", K);
    cJSON_AddNumberToObject(o, "threads", be->n_threads);
    cJSON_AddNumberToObject(o, "batch", B);
    o = cJSON_AddObjectToObject(j, "files");
    for (int i = 0; i < of.n_files; i++) cJSON_AddStringToObject(o, i == 0 ? "tokens" : i == 1 ? "topk_ids" : "topk_logp",
                                                                 FILE_NAMES[i]);
    cJSON_AddNumberToObject(j, "wall_s", round(wall * 1e3) / 1e3);
    cJSON_AddNumberToObject(j, "tok_s", round(tok_s * 10) / 10);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    FILE *mf = text ? fopen(man_tmp, "wb") : NULL;
    int ok = mf && fputs(text, mf) >= 0 && fputc('\n', mf) != EOF && !fflush(mf) && !fsync(fileno(mf));
    if (mf && fclose(mf)) ok = 0;
    free(text);
    for (int i = 0; ok && i < of.n_files; i++) ok = rename(of.tmp[i], of.path[i]) == 0;
    if (!ok || rename(man_tmp, man_path)) {
        fprintf(stderr, "bild %s: cannot write the corpus in %s: %s\n", cmd, out_dir, strerror(errno));
        unlink(man_tmp);
        goto done;
    }
    of.n_files = 0; /* renamed: nothing to clean up */
    if (!quiet)
        fprintf(stderr, "bild %s: wrote %s: %lld rows x %d tokens = %lld tokens, top-%d, in %.1f s (%.0f tok/s; "
                        "batch %d, %d threads, seed %s)\n", cmd, out_dir, S, L, total, K, wall, tok_s, B,
                be->n_threads, seed_s);
    if (json) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "out", out_dir);
        cJSON_AddNumberToObject(s, "rows", (double)S);
        cJSON_AddNumberToObject(s, "row_len", L);
        cJSON_AddNumberToObject(s, "tokens", (double)total);
        cJSON_AddNumberToObject(s, "topk", K);
        cJSON_AddNumberToObject(s, "batch", B);
        cJSON_AddNumberToObject(s, "threads", be->n_threads);
        cJSON_AddRawToObject(s, "seed", seed_s);
        cJSON_AddNumberToObject(s, "wall_s", wall);
        cJSON_AddNumberToObject(s, "tok_s", tok_s);
        char *line = cJSON_PrintUnformatted(s);
        cJSON_Delete(s);
        int bad = !line || printf("%s\n", line) < 0 || fflush(stdout);
        free(line);
        if (bad) {
            fprintf(stderr, "bild %s: cannot write the summary: %s\n", cmd, strerror(errno));
            goto done;
        }
    }
    rc = EXIT_OK;
done:
    out_abort(&of);
    if (rc != EXIT_OK && made_dir) rmdir(out_dir); /* ours and empty again */
    if (handlers) sigaction(SIGINT, &sa_old[0], NULL), sigaction(SIGTERM, &sa_old[1], NULL);
    threadpool_destroy(&pool);
    for (int b = 0; smp && b < B; b++) sampler_destroy(&smp[b]);
    free(smp), free(tok), free(tok32), free(cur), free(plen), free(am), free(maxp), free(kid), free(klp), free(ids_i);
    for (int i = 0; i < n_prompts; i++) free(p_ids[i]);
    free(p_ids), free(p_lens);
    batch_destroy(&bt);
    backend_destroy(&be);
    opened_free(&M);
    return rc;
}

/* ---- align-eval ---- */

#define MAX_THRESHOLDS 32
#define TIMING_ROUNDS 4
#define TIMING_STEPS 128 /* per round and model: 512 decoding steps each in all */

typedef struct {
    long long n;               /* positions evaluated */
    long long agree;           /* small argmax == large argmax */
    long long right_s, right_l;/* argmax == the text's next token */
    double nll_s, nll_l;       /* sums of -log p(next) in nats */
    long long conf[MAX_THRESHOLDS], conf_agree[MAX_THRESHOLDS];
} eval_sums_t;

/* Parses "0.5,0.6,..." into th (at most MAX_THRESHOLDS values in [0, 1]). */
static int parse_thresholds(const char *s, float *th) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !(v >= 0 && v <= 1) || n == MAX_THRESHOLDS || (*end && *end != ',')) return -1;
        th[n++] = (float)v;
        p = *end ? end + 1 : end;
        if (*end && !*p) return -1; /* a trailing comma */
    }
    return n;
}

/* Runs ids[0..w) through tf from position 0 with all logits, in blocks of
 * max_block, and takes each row's argmax, max p and -log p of the next token
 * (next[w-1] = -1: its successor is outside the window). 0 or -1. */
static int forced_pass(transformer_t *tf, const int *ids, int w, int *next, int *am, float *mp, float *nll) {
    int mb = transformer_max_block(tf);
    for (int t = 0; t < w; t++) next[t] = t + 1 < w ? ids[t + 1] : -1;
    for (int p0 = 0; p0 < w; p0 += mb) {
        int nb = w - p0 < mb ? w - p0 : mb;
        if (transformer_run(tf, ids + p0, nb, p0, LOGITS_ALL)) return -1;
        transformer_logits_stats(tf, nb, next + p0, am + p0, mp + p0, nll + p0);
    }
    return 0;
}

/* Seconds per greedy decoding step over `steps` steps from BOS, each with
 * the max probability as BiLD's small model needs it (so the full
 * classifier: an argmax alone would come from its int8 screen). */
static double time_steps(transformer_t *tf, int bos, int steps) {
    int tok = bos;
    float mp;
    double t0 = now_s();
    for (int p = 0; p < steps; p++) {
        if (transformer_run(tf, &tok, 1, p, LOGITS_LAST)) return -1;
        transformer_logits_stats(tf, 1, NULL, &tok, &mp, NULL);
    }
    return (now_s() - t0) / steps;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int cmd_align_eval(int argc, char **argv) {
    const char *cmd = "align-eval", *small = NULL, *large = NULL, *tokpath = NULL, *text_path = NULL,
               *th_s = "0.5,0.6,0.7,0.8,0.9";
    int max_tokens = 0, ctx = 256, threads = 0, json = 0, quiet = 0, ctx_given = 0;
    const opt_t opts[] = {
        {"-S", "--small", OPT_STR, &small, 0, 0, 0, NULL},
        {"-L", "--large", OPT_STR, &large, 0, 0, 0, NULL},
        {"-z", "--tokenizer", OPT_STR, &tokpath, 0, 0, 0, NULL},
        {NULL, "--text", OPT_STR, &text_path, 0, 0, 0, NULL},
        {"-n", "--max-tokens", OPT_INT, &max_tokens, 0, INT_MAX, 0, NULL},
        {NULL, "--ctx", OPT_INT, &ctx, 2, INT_MAX, 0, &ctx_given},
        {NULL, "--thresholds", OPT_STR, &th_s, 0, 0, 0, NULL},
        {"-j", "--threads", OPT_INT, &threads, 1, 1024, 0, NULL},
        {NULL, "--json", OPT_FLAG, &json, 0, 0, 0, NULL},
        {"-q", "--quiet", OPT_FLAG, &quiet, 0, 0, 0, NULL},
    };
    int pr = cli_parse(cmd, argc, argv, opts, (int)(sizeof opts / sizeof *opts), EVAL_HELP);
    if (pr) return pr > 0 ? EXIT_OK : EXIT_USAGE;
    if (!small || !large) return cli_usage_error(cmd, "--small and --large are required");
    if (!text_path) return cli_usage_error(cmd, "--text is required");
    float th[MAX_THRESHOLDS];
    int n_th = parse_thresholds(th_s, th);
    if (n_th < 1)
        return cli_usage_error(cmd, "--thresholds: '%s' is not a comma-separated list of 1 to %d numbers in [0, 1]",
                               th_s, MAX_THRESHOLDS);

    char err[1024];
    int rc = EXIT_INPUT, n_docs = 0;
    opened_t Lg = {0}, Sm = {0};
    backend_t *be = NULL;
    transformer_t *tfl = NULL, *tfs = NULL;
    char *text = NULL;
    int *ids = NULL, *next = NULL, *am_l = NULL, *am_s = NULL;
    float *mp_l = NULL, *mp_s = NULL, *nll_l = NULL, *nll_s = NULL;
    eval_sums_t sum = {0};
    size_t text_len;
    if (open_model(cmd, large, tokpath, 0, &Lg)) goto done;
    /* the small model's own tokenizer, if it has one beside it, must be the same vocabulary */
    if (open_model(cmd, small, tokpath, 1, &Sm)) goto done;
    const model_config_t *cl = model_config(Lg.m), *cs = model_config(Sm.m);
    if (cs->vocab_size != cl->vocab_size) {
        fprintf(stderr, "bild %s: vocabularies differ: the small model has %d tokens, the large one %d; "
                        "the two must share one vocabulary\n", cmd, cs->vocab_size, cl->vocab_size);
        goto done;
    }
    if (cs->bos_id != cl->bos_id || cs->eos_id != cl->eos_id) {
        fprintf(stderr, "bild %s: vocabularies differ: the models disagree on BOS/EOS ids (%d/%d vs %d/%d)\n", cmd,
                cs->bos_id, cs->eos_id, cl->bos_id, cl->eos_id);
        goto done;
    }
    uint64_t fp_l = cli_vocab_fingerprint(Lg.tok);
    if (Sm.tok && cli_vocab_fingerprint(Sm.tok) != fp_l) {
        int diff = tokenizer_first_difference(Sm.tok, Lg.tok);
        fprintf(stderr, "bild %s: vocabularies differ: the small model's tokenizer %s (fingerprint %016llx) is not "
                        "the large model's %s (%016llx); first difference at id %d\n", cmd, Sm.tok_path,
                (unsigned long long)cli_vocab_fingerprint(Sm.tok), Lg.tok_path, (unsigned long long)fp_l, diff);
        goto done;
    }
    int model_ctx = cs->seq_len < cl->seq_len ? cs->seq_len : cl->seq_len;
    if (ctx_given && ctx > model_ctx) {
        fprintf(stderr, "bild %s: --ctx %d is longer than the %s model's context of %d tokens\n", cmd, ctx,
                cs->seq_len < cl->seq_len ? "small" : "large", model_ctx);
        rc = EXIT_FIT;
        goto done;
    }
    if (ctx > model_ctx) ctx = model_ctx;
    if (!(text = read_text(cmd, "text file", text_path, &text_len))) goto done;

    rc = EXIT_RUNTIME;
    if (!(be = backend_new("cpu", threads, err, sizeof err)) ||
        !(tfl = transformer_new(be, cl, model_weights(Lg.m), 64, err, sizeof err)) ||
        !(tfs = transformer_new(be, cs, model_weights(Sm.m), 64, err, sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, be ? err : "cannot start the CPU backend");
        goto done;
    }
    next = malloc(sizeof(int) * ctx), am_l = malloc(sizeof(int) * ctx), am_s = malloc(sizeof(int) * ctx);
    mp_l = malloc(sizeof(float) * ctx), mp_s = malloc(sizeof(float) * ctx);
    nll_l = malloc(sizeof(float) * ctx), nll_s = malloc(sizeof(float) * ctx);
    if (!next || !am_l || !am_s || !mp_l || !mp_s || !nll_l || !nll_s) {
        fprintf(stderr, "bild %s: out of memory\n", cmd);
        goto done;
    }
    /* documents: the text between <|endoftext|> markers (anywhere, usually
     * on a line of their own), trimmed; empty ones skipped */
    static const char SEP[] = "<|endoftext|>";
    long long n_windows = 0;
    double t_eval = now_s();
    int limit_hit = 0;
    for (char *doc = text, *end; doc && !limit_hit; doc = end ? end + sizeof SEP - 1 : NULL) {
        if ((end = strstr(doc, SEP))) *end = 0;
        char *d = trim(doc);
        if (!*d) continue;
        int n = tokenizer_encode(Lg.tok, d, 1, NULL, 0);
        int *nids = n > 0 ? realloc(ids, sizeof(int) * (size_t)n) : NULL;
        if (!nids) {
            fprintf(stderr, "bild %s: out of memory encoding the text\n", cmd);
            goto done;
        }
        ids = nids;
        tokenizer_encode(Lg.tok, d, 1, ids, n);
        n_docs++;
        /* windows [start, start + w) overlapping by one token: every token
         * after BOS is some window's prediction exactly once */
        for (int start = 0; start + 1 < n && !limit_hit; start += ctx - 1) {
            int w = n - start < ctx ? n - start : ctx;
            if (max_tokens && sum.n + (w - 1) >= max_tokens) {
                w = (int)(max_tokens - sum.n) + 1;
                limit_hit = 1;
            }
            if (forced_pass(tfl, ids + start, w, next, am_l, mp_l, nll_l) ||
                forced_pass(tfs, ids + start, w, next, am_s, mp_s, nll_s)) {
                fprintf(stderr, "bild %s: forward pass refused (internal error)\n", cmd);
                goto done;
            }
            n_windows++;
            for (int t = 0; t + 1 < w; t++) {
                int agree = am_s[t] == am_l[t];
                sum.n++;
                sum.agree += agree;
                sum.right_s += am_s[t] == next[t];
                sum.right_l += am_l[t] == next[t];
                sum.nll_s += nll_s[t], sum.nll_l += nll_l[t];
                for (int i = 0; i < n_th; i++)
                    if (mp_s[t] >= th[i]) sum.conf[i]++, sum.conf_agree[i] += agree;
            }
        }
    }
    t_eval = now_s() - t_eval;
    if (!sum.n) {
        fprintf(stderr, "bild %s: text file '%s' has nothing to evaluate (%s)\n", cmd, text_path,
                n_docs ? "every document is a single token"
                : text_len ? "no text between the <|endoftext|> markers" : "the file is empty");
        rc = EXIT_INPUT;
        goto done;
    }

    /* c: greedy decoding steps of each model in alternating rounds after a
     * short warm-up; the median round of each */
    int steps = TIMING_STEPS < model_ctx ? TIMING_STEPS : model_ctx;
    double ts[TIMING_ROUNDS], tl[TIMING_ROUNDS];
    if (time_steps(tfs, cl->bos_id >= 0 ? cl->bos_id : 0, steps / 4 + 1) < 0 ||
        time_steps(tfl, cl->bos_id >= 0 ? cl->bos_id : 0, steps / 4 + 1) < 0)
        goto done;
    for (int r = 0; r < TIMING_ROUNDS; r++) {
        ts[r] = time_steps(tfs, cl->bos_id >= 0 ? cl->bos_id : 0, steps);
        tl[r] = time_steps(tfl, cl->bos_id >= 0 ? cl->bos_id : 0, steps);
    }
    qsort(ts, TIMING_ROUNDS, sizeof *ts, cmp_double);
    qsort(tl, TIMING_ROUNDS, sizeof *tl, cmp_double);
    double step_s = (ts[TIMING_ROUNDS / 2 - 1] + ts[TIMING_ROUNDS / 2]) / 2,
           step_l = (tl[TIMING_ROUNDS / 2 - 1] + tl[TIMING_ROUNDS / 2]) / 2, cr = step_s / step_l;

    double N = (double)sum.n, ppl_s = exp(sum.nll_s / N), ppl_l = exp(sum.nll_l / N);
    char where[256];
    cli_backend_desc(be, where, sizeof where);
    if (json) {
        cJSON *j = cJSON_CreateObject(), *o;
        cJSON_AddStringToObject(j, "small_model", small);
        cJSON_AddStringToObject(j, "large_model", large);
        cJSON_AddStringToObject(j, "tokenizer", Lg.tok_path);
        cJSON_AddStringToObject(j, "text", text_path);
        cJSON_AddNumberToObject(j, "documents", n_docs);
        cJSON_AddNumberToObject(j, "windows", (double)n_windows);
        cJSON_AddNumberToObject(j, "positions", N);
        cJSON_AddNumberToObject(j, "ctx", ctx);
        cJSON_AddNumberToObject(j, "agreement", sum.agree / N);
        o = cJSON_AddObjectToObject(j, "small");
        cJSON_AddNumberToObject(o, "perplexity", ppl_s);
        cJSON_AddNumberToObject(o, "accuracy", sum.right_s / N);
        cJSON_AddNumberToObject(o, "ms_per_step", step_s * 1e3);
        o = cJSON_AddObjectToObject(j, "large");
        cJSON_AddNumberToObject(o, "perplexity", ppl_l);
        cJSON_AddNumberToObject(o, "accuracy", sum.right_l / N);
        cJSON_AddNumberToObject(o, "ms_per_step", step_l * 1e3);
        cJSON_AddNumberToObject(j, "c", cr);
        cJSON_AddNumberToObject(j, "timing_steps", (double)steps * TIMING_ROUNDS);
        cJSON *arr = cJSON_AddArrayToObject(j, "thresholds");
        for (int i = 0; i < n_th; i++) {
            cJSON *t = cJSON_CreateObject();
            cJSON_AddNumberToObject(t, "threshold", tidy(th[i]));
            cJSON_AddNumberToObject(t, "confident", sum.conf[i] / N);
            cJSON_AddNumberToObject(t, "n_confident", (double)sum.conf[i]);
            if (sum.conf[i]) cJSON_AddNumberToObject(t, "agreement", (double)sum.conf_agree[i] / sum.conf[i]);
            else cJSON_AddNullToObject(t, "agreement");
            cJSON_AddItemToArray(arr, t);
        }
        cJSON_AddStringToObject(j, "backend", where);
        cJSON_AddNumberToObject(j, "eval_s", t_eval);
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        int bad = !s || printf("%s\n", s) < 0;
        free(s);
        if (bad) goto write_error;
    } else {
        printf("align-eval: %s (small) vs %s (large) on %s\n", small, large, text_path);
        printf("  %d documents, %lld windows of at most %d tokens, %lld positions\n", n_docs, n_windows, ctx, sum.n);
        printf("  %-28s %10s %10s\n", "", "small", "large");
        printf("  %-28s %10.3f %10.3f\n", "perplexity", ppl_s, ppl_l);
        printf("  %-28s %9.1f%% %9.1f%%\n", "next-token accuracy", 100 * sum.right_s / N, 100 * sum.right_l / N);
        printf("  %-28s %10.3f %10.3f\n", "ms per decoding step", step_s * 1e3, step_l * 1e3);
        printf("  greedy agreement (small argmax = large argmax): %.1f%%\n", 100 * sum.agree / N);
        printf("  cost ratio c = %.3f (median of %d rounds of %d steps each, %s)\n", cr, TIMING_ROUNDS, steps, where);
        printf("  %-12s %12s %24s\n", "small max p", "positions", "agreement there");
        for (int i = 0; i < n_th; i++) {
            if (sum.conf[i])
                printf("  >= %-9.2f %11.1f%% %23.1f%%\n", th[i], 100 * sum.conf[i] / N,
                       100.0 * sum.conf_agree[i] / sum.conf[i]);
            else printf("  >= %-9.2f %11.1f%% %24s\n", th[i], 0.0, "-");
        }
    }
    if (fflush(stdout)) goto write_error;
    if (!quiet)
        fprintf(stderr, "bild %s: %lld positions in %.1f s; timing %d + %d decoding steps\n", cmd, sum.n, t_eval,
                steps * TIMING_ROUNDS, steps * TIMING_ROUNDS);
    rc = EXIT_OK;
    goto done;
write_error:
    fprintf(stderr, "bild %s: cannot write the output: %s\n", cmd, strerror(errno));
    rc = EXIT_RUNTIME;
done:
    free(text), free(ids), free(next), free(am_l), free(am_s), free(mp_l), free(mp_s), free(nll_l), free(nll_s);
    transformer_destroy(&tfs);
    transformer_destroy(&tfl);
    backend_destroy(&be);
    opened_free(&Sm);
    opened_free(&Lg);
    return rc;
}
