/* main.c - the `bild` command line: parses arguments and wires the engine
 * together. Subcommands:
 *   bild run        generate text with one model (llama2.c checkpoint)
 *   bild generate   BiLD with a small and a large model, or a baseline
 * The logic lives in the library (model/, kernels/); this file only checks
 * arguments, opens files, prints, and maps failures to exit codes.
 */
#include <cjson/cJSON.h>
#include <zmq.h>
#include <errno.h>
#include <signal.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "coordinator/cli.h"
#include "coordinator/policy.h"
#include "coordinator/remote.h"
#include "coordinator/session.h"
#include "kernels/cpu/cpu.h"
#include "large_worker/server.h"
#include "large_worker/verifier.h"
#include "proto/serve.h"
#include "proto/transport.h"
#include "small_worker/drafter.h"
#include "small_worker/server.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

#define BILD_VERSION "0.1.0"

/* Exit codes; documented in --help. */
enum {
    EXIT_OK = 0,
    EXIT_RUNTIME = 1, /* failure while running (out of memory, write error) */
    EXIT_USAGE = 2,   /* bad command line */
    EXIT_INPUT = 3,   /* a file could not be read or is not valid */
    EXIT_FIT = 4,     /* the request does not fit the model (prompt longer than the context) */
};

static const char *RUN_HELP =
    "usage: bild run --model PATH (--prompt TEXT | --prompt-file FILE) [options]\n"
    "\n"
    "Generates text with one model and streams it to stdout (the prompt is\n"
    "echoed first, as llama2.c does). Timings go to stderr.\n"
    "\n"
    "  -m, --model PATH        llama2.c checkpoint (.bin)\n"
    "  -z, --tokenizer PATH    tokenizer.bin (default: tokenizer.bin or tok<vocab>.bin\n"
    "                          next to the model)\n"
    "  -p, --prompt TEXT       prompt text; \"\" starts from BOS alone\n"
    "  -f, --prompt-file FILE  read the prompt from FILE (one trailing newline is dropped)\n"
    "  -n, --max-tokens N      tokens to generate at most (default 256; also stops at\n"
    "                          end of text or when the context is full)\n"
    "  -t, --temperature T     0 = greedy (default 1.0)\n"
    "      --top-p P           nucleus sampling mass in (0, 1] (default 0.9; 1 = off)\n"
    "      --top-k K           keep the K most likely tokens (default 0 = off)\n"
    "  -s, --seed S            RNG seed (default: from the clock, printed on stderr)\n"
    "  -j, --threads N         CPU threads (default: all online cores)\n"
    "      --json              print one JSON object instead of streaming text\n"
    "  -q, --quiet             no statistics on stderr\n"
    "  -h, --help              this help\n"
    "\n"
    "exit status: 0 ok, 1 runtime failure, 2 bad command line, 3 unreadable or\n"
    "invalid input file, 4 prompt longer than the model's context.\n";

static const char *GEN_HELP =
    "usage: bild generate --small PATH --large PATH (--prompt TEXT | --prompt-file FILE) [options]\n"
    "\n"
    "Big Little Decoder: the small model writes tokens while it is confident;\n"
    "when it is not (fallback) the large model checks the small model's recent\n"
    "tokens in one pass and corrects the first bad one (rollback). Baselines run\n"
    "through the same driver. The text (prompt echoed first) goes to stdout,\n"
    "statistics to stderr. Algorithm: docs/algorithm.md.\n"
    "\n"
    "  -S, --small PATH        small model (llama2.c checkpoint)\n"
    "  -L, --large PATH        large model of the same vocabulary\n"
    "  -z, --tokenizer PATH    tokenizer for both (default: next to the large model;\n"
    "                          the small model's own, if it has one, must match)\n"
    "  -p, --prompt TEXT       prompt text\n"
    "  -f, --prompt-file FILE  read the prompt from FILE\n"
    "  -n, --max-tokens N      tokens to generate at most (default 256)\n"
    "      --mode M            bild (default), large (large model alone), small\n"
    "                          (small model alone), spec (speculative decoding)\n"
    "      --fallback A        fallback threshold on the small model's max\n"
    "                          probability, in [0, 1] (default 0.6); in spec mode an\n"
    "                          optional confidence stop (default 0 = off)\n"
    "      --rollback B        rollback threshold, -log p_large in nats (default 5)\n"
    "      --max-small N       most small tokens in a row (default 10)\n"
    "      --gamma G           spec mode: draft length (default 5)\n"
    "      --small-endpoint EP use a running small worker (bild small-worker) at EP\n"
    "      --large-endpoint EP use a running large worker at EP (greedy only)\n"
    "      --timeout MS        give up on a worker that does not answer (default 30000)\n"
    "      --faithful          reproduce the official BiLD loop exactly (first\n"
    "                          position above the threshold only; unchecked tail)\n"
    "  -t, --temperature T     0 = greedy (default 0)\n"
    "      --top-p P           nucleus mass in (0, 1] (default 1 = off)\n"
    "  -s, --seed S            RNG seed (default: from the clock, printed)\n"
    "  -j, --threads N         CPU threads (default: all online cores)\n"
    "      --json              print one JSON object instead of streaming text\n"
    "  -q, --quiet             no statistics on stderr\n"
    "  -h, --help              this help\n"
    "\n"
    "exit status: 0 ok, 1 runtime failure, 2 bad command line, 3 unreadable or\n"
    "invalid input file (including a small/large vocabulary mismatch), 4 prompt\n"
    "longer than a model's context.\n";

static const char *MAIN_HELP =
    "usage: bild COMMAND [options]\n"
    "\n"
    "bild runs language models on the CPU, and the Big Little Decoder: a small\n"
    "model drafts, a large one checks.\n"
    "\n"
    "commands:\n"
    "  run        generate text with one model (bild run --help)\n"
    "  generate   BiLD with a small and a large model (bild generate --help)\n"
    "  small-worker, large-worker\n"
    "             serve a model to a coordinator over ZeroMQ (bild small-worker --help)\n"
    "\n"
    "  bild --version   print the version\n";

/* A model file with its tokenizer, as the commands open them. */
typedef struct {
    model_file_t *m;
    tokenizer_t *tok;
} loaded_t;

static void loaded_free(loaded_t *l) {
    tokenizer_destroy(&l->tok);
    model_close(&l->m);
}

/* Opens a model and its tokenizer (tokpath, or the default beside the
 * model; if `optional`, a missing default is not an error). Prints a
 * one-line message and returns -1 on failure. */
static int load_model(const char *cmd, const char *path, const char *tokpath, int optional, loaded_t *l) {
    char err[1024], found[4096], tried[8200];
    *l = (loaded_t){0};
    if (!(l->m = model_open(path, err, sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        return -1;
    }
    int V = model_config(l->m)->vocab_size;
    if (tokpath) snprintf(found, sizeof found, "%s", tokpath);
    else if (cli_default_tokenizer(path, V, found, sizeof found, tried, sizeof tried)) {
        if (optional) return 0;
        fprintf(stderr, "bild %s: no --tokenizer given and none found next to the model (tried %s); "
                        "pass --tokenizer PATH\n", cmd, tried);
        loaded_free(l);
        return -1;
    }
    if (!(l->tok = tokenizer_load_llama2c(found, V, err, sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        loaded_free(l);
        return -1;
    }
    return 0;
}

/* Encodes the prompt (text or file) with BOS. Returns the ids (caller frees)
 * and their count, or NULL after printing a message; *rc gets the exit code. */
static int *encode_prompt(const char *cmd, const tokenizer_t *tok, const char *text, const char *file, int *n,
                          int *rc) {
    char err[1024];
    char *buf = NULL;
    *rc = EXIT_INPUT;
    if (file && !(text = buf = cli_read_prompt_file(file, err, sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        return NULL;
    }
    *rc = EXIT_RUNTIME;
    int count = tokenizer_encode(tok, text, 1, NULL, 0);
    int *ids = count > 0 ? malloc(sizeof(int) * (size_t)count) : NULL;
    if (!ids) fprintf(stderr, "bild %s: out of memory encoding the prompt\n", cmd);
    else tokenizer_encode(tok, text, 1, ids, count);
    free(buf);
    *n = count;
    return ids;
}

static int prompt_fits(const char *cmd, int n_ids, const model_config_t *c, const char *which) {
    if (n_ids <= c->seq_len) return 1;
    fprintf(stderr, "bild %s: the prompt is %d tokens but the %smodel's context is %d tokens (seq_len); "
                    "shorten the prompt\n", cmd, n_ids, which, c->seq_len);
    return 0;
}

static uint64_t clock_seed(void) { return (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32); }

/* generate() callback: each token's bytes go to the sink as they come */
static void emit_token(void *ud, int token, const char *bytes, size_t n) { sink_bytes(ud, bytes, n); }

static int cmd_run(int argc, char **argv) {
    const char *model = NULL, *tokpath = NULL, *prompt = NULL, *prompt_file = NULL;
    int max_new = 256, top_k = 0, threads = 0, json = 0, quiet = 0, seed_given = 0;
    float temperature = 1.0f, top_p = 0.9f;
    uint64_t seed = 0;
    const opt_t opts[] = {
        {"-m", "--model", OPT_STR, &model, 0, 0, 0, NULL},
        {"-z", "--tokenizer", OPT_STR, &tokpath, 0, 0, 0, NULL},
        {"-p", "--prompt", OPT_STR, &prompt, 0, 0, 0, NULL},
        {"-f", "--prompt-file", OPT_STR, &prompt_file, 0, 0, 0, NULL},
        {"-n", "--max-tokens", OPT_INT, &max_new, 0, INT_MAX, 0, NULL},
        {"-t", "--temperature", OPT_FLOAT, &temperature, 0, 100, 0, NULL},
        {NULL, "--top-p", OPT_FLOAT, &top_p, 0, 1, 1, NULL},
        {NULL, "--top-k", OPT_INT, &top_k, 0, INT_MAX, 0, NULL},
        {"-s", "--seed", OPT_U64, &seed, 0, 0, 0, &seed_given},
        {"-j", "--threads", OPT_INT, &threads, 1, 1024, 0, NULL},
        {NULL, "--json", OPT_FLAG, &json, 0, 0, 0, NULL},
        {"-q", "--quiet", OPT_FLAG, &quiet, 0, 0, 0, NULL},
    };
    int pr = cli_parse("run", argc, argv, opts, (int)(sizeof opts / sizeof *opts), RUN_HELP);
    if (pr) return pr > 0 ? EXIT_OK : EXIT_USAGE;
    if (!model) return cli_usage_error("run", "--model is required");
    if (!prompt == !prompt_file) return cli_usage_error("run", "give exactly one of --prompt and --prompt-file");

    char err[1024];
    int rc = EXIT_INPUT, n_ids = 0, *ids = NULL, *out = NULL;
    loaded_t L = {0};
    backend_t *be = NULL;
    transformer_t *tf = NULL;
    sampler_t *smp = NULL;
    sink_t sink = {.stream = !json};
    if (load_model("run", model, tokpath, 0, &L)) goto done;
    const model_config_t *c = model_config(L.m);
    if (!(ids = encode_prompt("run", L.tok, prompt, prompt_file, &n_ids, &rc))) goto done;
    if (!prompt_fits("run", n_ids, c, "")) {
        rc = EXIT_FIT;
        goto done;
    }
    rc = EXIT_RUNTIME;
    if (!seed_given) seed = clock_seed();
    if (!(be = backend_cpu_new(threads))) {
        fprintf(stderr, "bild run: cannot start the CPU backend with %d threads\n", threads);
        goto done;
    }
    if (!(tf = transformer_new(be, c, model_weights(L.m), 64, err, sizeof err))) {
        fprintf(stderr, "bild run: %s\n", err);
        goto done;
    }
    if (!(smp = sampler_new(c->vocab_size, temperature, top_p, top_k, seed)) ||
        !(out = malloc(sizeof(int) * (size_t)(max_new ? max_new : 1)))) {
        fprintf(stderr, "bild run: out of memory\n");
        goto done;
    }
    if (!quiet)
        fprintf(stderr, "bild: %s: %.1fM params, dim %d, %d layers, %d/%d heads, vocab %d, context %d; "
                        "cpu/%s, %d threads; seed %llu\n",
                model, model_n_params(c) / 1e6, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
                c->seq_len, be->isa, be->n_threads, (unsigned long long)seed);
    if (!json) sink_tokens(&sink, L.tok, ids[0], ids + 1, n_ids - 1); /* echo the prompt, as llama2.c does */
    gen_stats_t st;
    if (generate(tf, L.tok, smp, ids, n_ids, max_new, out, emit_token, &sink, &st) != 0) {
        fprintf(stderr, "bild run: generation failed (internal error)\n");
        goto done;
    }
    sink_finish(&sink);
    if (!json) sink_bytes(&sink, "\n", 1);
    else {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", model);
        cJSON_AddStringToObject(j, "text", sink.text ? sink.text : "");
        cJSON *toks = cJSON_AddArrayToObject(j, "tokens");
        for (int i = 0; i < st.n_gen; i++) cJSON_AddItemToArray(toks, cJSON_CreateNumber(out[i]));
        cJSON_AddNumberToObject(j, "prompt_tokens", st.n_prompt);
        cJSON_AddNumberToObject(j, "generated_tokens", st.n_gen);
        cJSON_AddStringToObject(j, "stop", stop_reason_name(st.stop));
        cJSON_AddNumberToObject(j, "seed", (double)seed);
        cJSON_AddNumberToObject(j, "prompt_s", st.prompt_s);
        cJSON_AddNumberToObject(j, "decode_s", st.decode_s);
        cJSON_AddNumberToObject(j, "prompt_tok_per_s", st.prompt_s > 0 ? st.n_prompt / st.prompt_s : 0);
        cJSON_AddNumberToObject(j, "decode_tok_per_s", st.decode_s > 0 ? st.n_steps / st.decode_s : 0);
        char *s = cJSON_PrintUnformatted(j);
        if (!s || printf("%s\n", s) < 0 || fflush(stdout)) sink.write_error = 1;
        free(s);
        cJSON_Delete(j);
    }
    if (sink.write_error) {
        fprintf(stderr, "bild run: cannot write the output: %s\n", strerror(errno));
        goto done;
    }
    if (!quiet)
        fprintf(stderr, "bild: prompt %d tokens in %.1f ms (%.0f tok/s); generated %d tokens, %d decode steps "
                        "in %.1f ms (%.1f tok/s); stop: %s\n",
                st.n_prompt, st.prompt_s * 1e3, st.prompt_s > 0 ? st.n_prompt / st.prompt_s : 0, st.n_gen,
                st.n_steps, st.decode_s * 1e3, st.decode_s > 0 ? st.n_steps / st.decode_s : 0,
                stop_reason_name(st.stop));
    rc = EXIT_OK;
done:
    sink_free(&sink);
    free(out);
    free(ids);
    sampler_destroy(&smp);
    transformer_destroy(&tf);
    backend_destroy(&be);
    loaded_free(&L);
    return rc;
}

static int cmd_generate(int argc, char **argv) {
    const char *small_path = NULL, *large_path = NULL, *tokpath = NULL, *prompt = NULL, *prompt_file = NULL,
               *mode_s = "bild";
    int max_new = 256, max_small = 10, gamma = 5, faithful = 0, threads = 0, json = 0, quiet = 0;
    int seed_given = 0, fb_given = 0, timeout_ms = 30000;
    const char *small_ep = NULL, *large_ep = NULL;
    float alpha_fb = 0.6f, alpha_rb = 5.0f, temperature = 0.0f, top_p = 1.0f;
    uint64_t seed = 0;
    const opt_t opts[] = {
        {"-S", "--small", OPT_STR, &small_path, 0, 0, 0, NULL},
        {"-L", "--large", OPT_STR, &large_path, 0, 0, 0, NULL},
        {NULL, "--small-endpoint", OPT_STR, &small_ep, 0, 0, 0, NULL},
        {NULL, "--large-endpoint", OPT_STR, &large_ep, 0, 0, 0, NULL},
        {NULL, "--timeout", OPT_INT, &timeout_ms, 100, 3600000, 0, NULL},
        {"-z", "--tokenizer", OPT_STR, &tokpath, 0, 0, 0, NULL},
        {"-p", "--prompt", OPT_STR, &prompt, 0, 0, 0, NULL},
        {"-f", "--prompt-file", OPT_STR, &prompt_file, 0, 0, 0, NULL},
        {"-n", "--max-tokens", OPT_INT, &max_new, 1, INT_MAX, 0, NULL},
        {NULL, "--mode", OPT_STR, &mode_s, 0, 0, 0, NULL},
        {NULL, "--fallback", OPT_FLOAT, &alpha_fb, 0, 1, 0, &fb_given},
        {NULL, "--rollback", OPT_FLOAT, &alpha_rb, 0, 1e6, 1, NULL},
        {NULL, "--max-small", OPT_INT, &max_small, 0, BILD_MAX_DRAFT - 2, 0, NULL},
        {NULL, "--gamma", OPT_INT, &gamma, 1, BILD_MAX_DRAFT - 2, 0, NULL},
        {NULL, "--faithful", OPT_FLAG, &faithful, 0, 0, 0, NULL},
        {"-t", "--temperature", OPT_FLOAT, &temperature, 0, 100, 0, NULL},
        {NULL, "--top-p", OPT_FLOAT, &top_p, 0, 1, 1, NULL},
        {"-s", "--seed", OPT_U64, &seed, 0, 0, 0, &seed_given},
        {"-j", "--threads", OPT_INT, &threads, 1, 1024, 0, NULL},
        {NULL, "--json", OPT_FLAG, &json, 0, 0, 0, NULL},
        {"-q", "--quiet", OPT_FLAG, &quiet, 0, 0, 0, NULL},
    };
    const char *cmd = "generate";
    int pr = cli_parse(cmd, argc, argv, opts, (int)(sizeof opts / sizeof *opts), GEN_HELP);
    if (pr) return pr > 0 ? EXIT_OK : EXIT_USAGE;
    int mode = policy_mode_parse(mode_s);
    if (mode < 0) return cli_usage_error(cmd, "--mode: unknown mode '%s' (bild, large, small or spec)", mode_s);
    if (small_path && small_ep) return cli_usage_error(cmd, "give --small or --small-endpoint, not both");
    if (large_path && large_ep) return cli_usage_error(cmd, "give --large or --large-endpoint, not both");
    if (!small_path && !small_ep && mode != POLICY_LARGE) return cli_usage_error(cmd, "--small is required");
    if (!large_path && !large_ep && mode != POLICY_SMALL) return cli_usage_error(cmd, "--large is required");
    if ((small_ep || large_ep) && temperature > 0)
        return cli_usage_error(cmd, "remote workers decode greedily for now; drop --temperature or run in process");
    if (mode == POLICY_LARGE) small_path = small_ep = NULL; /* not used */
    if (mode == POLICY_SMALL) large_path = large_ep = NULL;
    if (!prompt == !prompt_file) return cli_usage_error(cmd, "give exactly one of --prompt and --prompt-file");
    if (faithful && mode != POLICY_BILD) return cli_usage_error(cmd, "--faithful applies to --mode bild only");
    if (mode == POLICY_SPEC && !fb_given) alpha_fb = 0;
    if (mode == POLICY_SPEC && temperature > 0 && top_p < 1)
        return cli_usage_error(cmd, "--top-p is not supported with spec sampling (rejection sampling uses the "
                                    "full tempered distributions)");

    char err[1024];
    int rc = EXIT_INPUT, n_ids = 0, *ids = NULL;
    loaded_t S = {0}, Lg = {0};
    backend_t *be = NULL;
    transformer_t *tfs = NULL, *tfl = NULL;
    sampler_t *smp_s = NULL, *smp_l = NULL;
    drafter_t *dr = NULL;
    verifier_t *vf = NULL;
    policy_t *pol = NULL;
    sink_t sink = {.stream = !json};
    void *zctx = NULL;
    remote_t *rs = NULL, *rl = NULL;
    hello_reply_t hs = {0}, hl = {0};
    tokenizer_t *own_tok = NULL;
    /* remote workers first: their handshake says which vocabulary they hold */
    if (small_ep || large_ep) {
        if (!(zctx = zmq_ctx_new())) {
            fprintf(stderr, "bild %s: cannot start ZeroMQ\n", cmd);
            goto done;
        }
        if ((small_ep && !(rs = remote_connect(zctx, small_ep, ROLE_SMALL, 0, 0, timeout_ms, &hs, err, sizeof err))) ||
            (large_ep && !(rl = remote_connect(zctx, large_ep, ROLE_LARGE, 0, 0, timeout_ms, &hl, err, sizeof err)))) {
            fprintf(stderr, "bild %s: %s\n", cmd, err);
            rc = EXIT_RUNTIME;
            goto done;
        }
    }
    /* the tokenizer: --tokenizer, else beside the large model, else beside the small one */
    if (large_path && load_model(cmd, large_path, tokpath, mode == POLICY_SMALL, &Lg)) goto done;
    if (small_path && load_model(cmd, small_path, tokpath, mode != POLICY_SMALL || Lg.tok, &S)) goto done;
    tokenizer_t *tok = Lg.tok ? Lg.tok : S.tok;
    if (!tok && tokpath && (rs || rl)) { /* both models remote: the tokenizer alone, sized by the handshake */
        if (!(tok = own_tok = tokenizer_load_llama2c(tokpath, rl ? hl.vocab_size : hs.vocab_size, err, sizeof err))) {
            fprintf(stderr, "bild %s: %s\n", cmd, err);
            goto done;
        }
    }
    if (!tok) {
        fprintf(stderr, "bild %s: no tokenizer found next to either model; pass --tokenizer PATH\n", cmd);
        goto done;
    }
    const int V = tokenizer_vocab_size(tok), eos = tokenizer_eos(tok), bos = tokenizer_bos(tok);
    uint64_t fp = cli_vocab_fingerprint(tok);
    const hello_reply_t *hel[2] = {rs ? &hs : NULL, rl ? &hl : NULL};
    const char *eps[2] = {small_ep, large_ep};
    for (int i = 0; i < 2; i++)
        if (hel[i] && (hel[i]->vocab_size != V || hel[i]->vocab_fingerprint != fp)) {
            fprintf(stderr, "bild %s: the %s worker at %s holds another vocabulary (%d tokens, fingerprint %016llx; "
                            "the tokenizer here: %d, %016llx)\n", cmd, i ? "large" : "small", eps[i], hel[i]->vocab_size,
                    (unsigned long long)hel[i]->vocab_fingerprint, V, (unsigned long long)fp);
            goto done;
        }
    if ((S.m && model_config(S.m)->vocab_size != V) || (Lg.m && model_config(Lg.m)->vocab_size != V)) {
        fprintf(stderr, "bild %s: vocabularies differ: a local model and the remote worker disagree on the size\n", cmd);
        goto done;
    }
    if (S.m && Lg.m) {
        const model_config_t *cs = model_config(S.m), *cl = model_config(Lg.m);
        if (cs->vocab_size != cl->vocab_size) {
            fprintf(stderr, "bild %s: vocabularies differ: the small model has %d tokens, the large one %d; "
                            "BiLD needs one shared vocabulary\n", cmd, cs->vocab_size, cl->vocab_size);
            goto done;
        }
        if (cs->bos_id != cl->bos_id || cs->eos_id != cl->eos_id) {
            fprintf(stderr, "bild %s: the models disagree on BOS/EOS ids\n", cmd);
            goto done;
        }
        int diff = S.tok && Lg.tok ? tokenizer_first_difference(S.tok, Lg.tok) : -1;
        if (diff >= 0) {
            fprintf(stderr, "bild %s: the small and large tokenizers differ first at id %d ('%s' vs '%s'); "
                            "BiLD needs one shared vocabulary\n", cmd, diff, tokenizer_piece(S.tok, diff),
                    tokenizer_piece(Lg.tok, diff));
            goto done;
        }
    }
    if (!(ids = encode_prompt(cmd, tok, prompt, prompt_file, &n_ids, &rc))) goto done;
    if ((Lg.m && !prompt_fits(cmd, n_ids, model_config(Lg.m), "large ")) ||
        (S.m && !prompt_fits(cmd, n_ids, model_config(S.m), "small ")) ||
        (rs && !prompt_fits(cmd, n_ids, &(model_config_t){.seq_len = hs.seq_len}, "small ")) ||
        (rl && !prompt_fits(cmd, n_ids, &(model_config_t){.seq_len = hl.seq_len}, "large "))) {
        rc = EXIT_FIT;
        goto done;
    }
    rc = EXIT_RUNTIME;
    if (!seed_given) seed = clock_seed();
    if (!(be = backend_cpu_new(threads))) {
        fprintf(stderr, "bild %s: cannot start the CPU backend with %d threads\n", cmd, threads);
        goto done;
    }
    /* both models share one backend (one thread pool): they run in turn */
    if ((Lg.m && !(tfl = transformer_new(be, model_config(Lg.m), model_weights(Lg.m), BILD_MAX_DRAFT, err, sizeof err))) ||
        (S.m && !(tfs = transformer_new(be, model_config(S.m), model_weights(S.m), BILD_MAX_DRAFT, err, sizeof err)))) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        goto done;
    }
    if (temperature > 0) { /* independent streams for the two models */
        smp_s = sampler_new(V, temperature, top_p, 0, seed);
        smp_l = sampler_new(V, temperature, top_p, 0, seed ^ 0x9E3779B97F4A7C15ULL);
        if (!smp_s || !smp_l) {
            fprintf(stderr, "bild %s: out of memory\n", cmd);
            goto done;
        }
    }
    if ((tfs && !(dr = drafter_new(tfs, smp_s, temperature, eos, bos))) ||
        (tfl && !(vf = verifier_new(tfl, smp_l, temperature)))) {
        fprintf(stderr, "bild %s: out of memory\n", cmd);
        goto done;
    }
    policy_params_t pp = {.mode = mode, .faithful = faithful, .alpha_fb = alpha_fb, .alpha_rb = alpha_rb,
                          .max_small = mode == POLICY_SPEC ? gamma : max_small, .max_new = max_new,
                          .vocab_size = V, .stop_a = eos, .stop_b = bos,
                          .sampling = mode == POLICY_SPEC && temperature > 0, .seed = seed};
    if (!(pol = policy_new(&pp, ids, n_ids, err, sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        rc = EXIT_USAGE;
        goto done;
    }
    if (!quiet)
        fprintf(stderr, "bild: mode %s%s; small %s, large %s; fallback %.2f, rollback %.2f, max-small %d; cpu/%s, "
                        "%d threads; seed %llu\n", policy_mode_name(mode), faithful ? " (faithful)" : "",
                small_path ? small_path : small_ep ? small_ep : "-", large_path ? large_path : large_ep ? large_ep : "-",
                alpha_fb, alpha_rb, pp.max_small,
                be->isa, be->n_threads, (unsigned long long)seed);
    small_link_t sl = dr ? drafter_link(dr) : rs ? remote_small_link(rs) : (small_link_t){0};
    large_link_t ll = vf ? verifier_link(vf) : rl ? remote_large_link(rl) : (large_link_t){0};
    session_times_t tm;
    if (session_run(pol, &sl, &ll, &tm, err, sizeof err) != 0) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        goto done;
    }
    int n_out;
    const int *out = policy_output(pol, &n_out);
    const policy_stats_t *st = policy_stats(pol);
    if (!json) sink_tokens(&sink, tok, ids[0], ids + 1, n_ids - 1);
    sink_tokens(&sink, tok, ids[n_ids - 1], out, n_out);
    sink_finish(&sink);
    /* c = time of a small pass / time of a large pass, measured in this run */
    double t_s = st->small_passes ? tm.small_s / st->small_passes : 0;
    double t_l = st->large_passes ? tm.large_s / st->large_passes : 0;
    double cost = t_l > 0 ? t_s / t_l : 0;
    double predicted = st->large_passes + cost * st->small_passes > 0
                           ? n_out / (st->large_passes + cost * st->small_passes) : 0;
    double accept = st->drafted ? 100.0 * st->accepted / st->drafted : 0;
    double other = tm.total_s - tm.small_s - tm.large_s;
    long trips = 0, bytes = 0;
    remote_t *rem[2] = {rs, rl};
    for (int i = 0; i < 2; i++)
        if (rem[i]) {
            trips += remote_stats(rem[i])->round_trips;
            bytes += remote_stats(rem[i])->bytes_sent + remote_stats(rem[i])->bytes_received;
        }
    /* small tokens kept per large check (the first large pass checks nothing) */
    double mean_acc = st->verify_calls > 1 ? (double)st->accepted / (st->verify_calls - 1) : 0;
    const char *stop = policy_stop_reason(pol) == STOP_AT_EOS ? "eos" : "length";
    if (!json) sink_bytes(&sink, "\n", 1);
    else {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "mode", policy_mode_name(mode));
        cJSON_AddBoolToObject(j, "faithful", faithful);
        cJSON_AddStringToObject(j, "text", sink.text ? sink.text : "");
        cJSON *toks = cJSON_AddArrayToObject(j, "tokens");
        for (int i = 0; i < n_out; i++) cJSON_AddItemToArray(toks, cJSON_CreateNumber(out[i]));
        cJSON_AddNumberToObject(j, "prompt_tokens", n_ids);
        cJSON_AddStringToObject(j, "stop", stop);
        cJSON *sj = cJSON_AddObjectToObject(j, "stats");
        cJSON_AddNumberToObject(sj, "generated", st->n_gen);
        cJSON_AddNumberToObject(sj, "small_tokens", st->small_tokens);
        cJSON_AddNumberToObject(sj, "large_tokens", st->large_tokens);
        cJSON_AddNumberToObject(sj, "large_passes", st->large_passes);
        cJSON_AddNumberToObject(sj, "small_passes", st->small_passes);
        cJSON_AddNumberToObject(sj, "fallbacks", st->fallbacks);
        cJSON_AddNumberToObject(sj, "rollbacks", st->rollbacks);
        cJSON_AddNumberToObject(sj, "rolled_back", st->rolled_back);
        cJSON_AddNumberToObject(sj, "n_drafted", st->drafted);
        cJSON_AddNumberToObject(sj, "n_accept", st->accepted);
        cJSON_AddNumberToObject(sj, "accept_pct", accept);
        cJSON_AddNumberToObject(sj, "mean_accepted", mean_acc);
        cJSON_AddNumberToObject(sj, "unchecked", st->unchecked);
        cJSON_AddNumberToObject(sj, "small_s", tm.small_s);
        cJSON_AddNumberToObject(sj, "large_s", tm.large_s);
        cJSON_AddNumberToObject(sj, "other_s", other);
        cJSON_AddNumberToObject(sj, "total_s", tm.total_s);
        cJSON_AddNumberToObject(sj, "tok_per_s", tm.total_s > 0 ? st->n_gen / tm.total_s : 0);
        cJSON_AddNumberToObject(sj, "cost_ratio", cost);
        cJSON_AddNumberToObject(sj, "predicted_speedup", predicted);
        cJSON_AddNumberToObject(sj, "round_trips", trips);
        cJSON_AddNumberToObject(sj, "bytes_moved", (double)bytes);
        cJSON_AddNumberToObject(j, "seed", (double)seed);
        /* which model produced each token, as a string of S and L */
        char *srcs = malloc((size_t)n_out + 1);
        if (srcs) {
            memcpy(srcs, policy_sources(pol), (size_t)n_out);
            srcs[n_out] = 0;
            cJSON_AddStringToObject(j, "sources", srcs);
            free(srcs);
        }
        char *s = cJSON_PrintUnformatted(j);
        if (!s || printf("%s\n", s) < 0 || fflush(stdout)) sink.write_error = 1;
        free(s);
        cJSON_Delete(j);
    }
    if (sink.write_error) {
        fprintf(stderr, "bild %s: cannot write the output: %s\n", cmd, strerror(errno));
        goto done;
    }
    if (!quiet) {
        fprintf(stderr, "bild: %d tokens (%d small, %d large) in %.1f ms, %.1f tok/s; stop: %s\n", st->n_gen,
                st->small_tokens, st->large_tokens, tm.total_s * 1e3, tm.total_s > 0 ? st->n_gen / tm.total_s : 0,
                stop);
        fprintf(stderr, "bild: passes: %d large, %d small; fallbacks %d, rollbacks %d (%d tokens rolled back), "
                        "unchecked %d\n", st->large_passes, st->small_passes, st->fallbacks, st->rollbacks,
                st->rolled_back, st->unchecked);
        fprintf(stderr, "bild: n_drafted %d, n_accept %d, accept %.1f%%, mean accepted per check %.2f\n", st->drafted,
                st->accepted, accept, mean_acc);
        fprintf(stderr, "bild: time: small %.1f ms, large %.1f ms, other %.1f ms; cost ratio c %.3f; predicted "
                        "speedup n/(N_L + c N_S) %.2f\n", tm.small_s * 1e3, tm.large_s * 1e3, other * 1e3, cost,
                predicted);
        if (rs || rl) fprintf(stderr, "bild: remote: %ld round trips, %ld bytes moved\n", trips, bytes);
    }
    rc = EXIT_OK;
done:
    sink_free(&sink);
    free(ids);
    policy_destroy(&pol);
    drafter_destroy(&dr);
    verifier_destroy(&vf);
    sampler_destroy(&smp_s);
    sampler_destroy(&smp_l);
    transformer_destroy(&tfs);
    transformer_destroy(&tfl);
    backend_destroy(&be);
    loaded_free(&S);
    loaded_free(&Lg);
    tokenizer_destroy(&own_tok);
    remote_destroy(&rs);
    remote_destroy(&rl);
    if (zctx) zmq_ctx_term(zctx);
    return rc;
}

static const char *WORKER_HELP =
    "usage: bild small-worker|large-worker --model PATH --bind ENDPOINT [options]\n"
    "\n"
    "Serves one model to a coordinator (bild generate --small-endpoint /\n"
    "--large-endpoint) over ZeroMQ: the small worker drafts, the large worker\n"
    "verifies. Prints 'listening on ENDPOINT' on stderr when ready; exits on\n"
    "SIGINT, SIGTERM or a shutdown message.\n"
    "\n"
    "  -m, --model PATH        llama2.c checkpoint\n"
    "  -z, --tokenizer PATH    its tokenizer (default: beside the model); its\n"
    "                          fingerprint is checked by the coordinator\n"
    "  -b, --bind ENDPOINT     ipc:///path or tcp://127.0.0.1:PORT\n"
    "      --allow-remote      allow a non-loopback tcp:// address\n"
    "  -j, --threads N         CPU threads (default: all online cores)\n"
    "  -h, --help              this help\n";

/* Set by SIGINT/SIGTERM; the serve loop polls it. */
static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) { g_stop = sig; }

static int cmd_worker(int argc, char **argv, worker_role_t role) {
    const char *cmd = role == ROLE_SMALL ? "small-worker" : "large-worker";
    const char *model = NULL, *tokpath = NULL, *bind_ep = NULL;
    int threads = 0, allow_remote = 0;
    const opt_t opts[] = {
        {"-m", "--model", OPT_STR, &model, 0, 0, 0, NULL},
        {"-z", "--tokenizer", OPT_STR, &tokpath, 0, 0, 0, NULL},
        {"-b", "--bind", OPT_STR, &bind_ep, 0, 0, 0, NULL},
        {NULL, "--allow-remote", OPT_FLAG, &allow_remote, 0, 0, 0, NULL},
        {"-j", "--threads", OPT_INT, &threads, 1, 1024, 0, NULL},
    };
    int pr = cli_parse(cmd, argc, argv, opts, (int)(sizeof opts / sizeof *opts), WORKER_HELP);
    if (pr) return pr > 0 ? EXIT_OK : EXIT_USAGE;
    if (!model) return cli_usage_error(cmd, "--model is required");
    if (!bind_ep) return cli_usage_error(cmd, "--bind is required");

    char err[1024];
    int rc = EXIT_INPUT;
    loaded_t L = {0};
    backend_t *be = NULL;
    transformer_t *tf = NULL;
    drafter_t *dr = NULL;
    verifier_t *vf = NULL;
    void *zctx = NULL, *sock = NULL;
    if (load_model(cmd, model, tokpath, 0, &L)) goto done;
    const model_config_t *c = model_config(L.m);
    rc = EXIT_RUNTIME;
    if (!(be = backend_cpu_new(threads)) ||
        !(tf = transformer_new(be, c, model_weights(L.m), BILD_MAX_DRAFT, err, sizeof err)) ||
        (role == ROLE_SMALL && !(dr = drafter_new(tf, NULL, 0, c->eos_id, c->bos_id))) ||
        (role == ROLE_LARGE && !(vf = verifier_new(tf, NULL, 0)))) {
        fprintf(stderr, "bild %s: cannot set up the model (out of memory?)\n", cmd);
        goto done;
    }
    if (!(zctx = zmq_ctx_new()) || !(sock = transport_bind(zctx, bind_ep, allow_remote, err, sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, zctx ? err : "cannot start ZeroMQ");
        rc = allow_remote || transport_is_local(bind_ep) ? EXIT_RUNTIME : EXIT_USAGE;
        goto done;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    small_server_t ss = {dr, c->vocab_size};
    large_server_t ls = {vf, c->vocab_size};
    serve_t sv = {.name = role == ROLE_SMALL ? "small worker" : "large worker",
                  .hello = {.role = role, .vocab_size = c->vocab_size, .seq_len = c->seq_len,
                            .vocab_fingerprint = cli_vocab_fingerprint(L.tok)},
                  .vocab = c->vocab_size,
                  .handle = role == ROLE_SMALL ? small_server_handle : large_server_handle,
                  .ctx = role == ROLE_SMALL ? (void *)&ss : (void *)&ls,
                  .stop = &g_stop};
    snprintf(sv.hello.model, sizeof sv.hello.model, "%s", model);
    fprintf(stderr, "bild %s: %s (vocab %d, context %d, cpu/%s, %d threads): listening on %s\n", cmd, model,
            c->vocab_size, c->seq_len, be->isa, be->n_threads, bind_ep);
    rc = serve_loop(sock, &sv) == 0 ? EXIT_OK : EXIT_RUNTIME;
    fprintf(stderr, "bild %s: %s\n", cmd, g_stop ? "stopped by a signal" : "shut down");
done:
    transport_close(&sock);
    if (zctx) zmq_ctx_term(zctx);
    drafter_destroy(&dr);
    verifier_destroy(&vf);
    transformer_destroy(&tf);
    backend_destroy(&be);
    loaded_free(&L);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(MAIN_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) return puts("bild " BILD_VERSION) < 0 ? EXIT_RUNTIME : EXIT_OK;
    if (!strcmp(argv[1], "run")) return cmd_run(argc - 2, argv + 2);
    if (!strcmp(argv[1], "generate")) return cmd_generate(argc - 2, argv + 2);
    if (!strcmp(argv[1], "small-worker")) return cmd_worker(argc - 2, argv + 2, ROLE_SMALL);
    if (!strcmp(argv[1], "large-worker")) return cmd_worker(argc - 2, argv + 2, ROLE_LARGE);
    fprintf(stderr, "bild: unknown command '%s' (see bild --help)\n", argv[1]);
    return EXIT_USAGE;
}
