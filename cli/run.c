/* run.c - `bild run`: generates text with one model (a llama2.c checkpoint,
 * a Hugging Face folder, or a folder's shape with random weights), streaming
 * it to stdout as llama2.c does; --json prints one object instead.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

static const char *RUN_HELP =
    "usage: bild run --model PATH (--prompt TEXT | --prompt-file FILE) [options]\n"
    "       bild run --dummy-weights --model CONFIG_DIR [--prompt TEXT] [options]\n"
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
    "  -d, --device DEV        where the model runs: cpu (default), cuda (GPU 0) or\n"
    "                          cuda:N (needs a build with make CUDA=1)\n"
    "      --dummy-weights     benchmark a model's shape without its weights: --model\n"
    "                          names a Hugging Face folder (or its config.json) and the\n"
    "                          weights are random (seed 1), made on the device. The\n"
    "                          tokenizer is --tokenizer, else tokenizer.json in that\n"
    "                          folder, else none: then no prompt text is taken (the\n"
    "                          prompt is BOS alone) and the generated token ids are\n"
    "                          printed, space-separated (with --json: \"tokens\")\n"
    "      --dummy-dtype T     the random matrices' type: bf16 (default), f16 or f32\n"
    "      --json              print one JSON object instead of streaming text\n"
    "  -q, --quiet             no statistics on stderr\n"
    "  -h, --help              this help\n"
    "\n"
    "Greedy decoding (-t 0) on the CPU takes each step's argmax from an int8 copy of\n"
    "an f32 classifier, checking exactly every row within the copy's error bound:\n"
    "the same tokens as the full classifier, a quarter of its bytes read\n"
    "(docs/engine.md).\n"
    "Environment: BILD_SCREEN=0 turns that off; BILD_ISA=avx2|scalar forces an\n"
    "instruction set; BILD_HUGEPAGES=0 keeps the weights in ordinary pages.\n"
    "\n"
    "exit status: 0 ok, 1 runtime failure (including a device that cannot be used),\n"
    "2 bad command line, 3 unreadable or invalid input file, 4 prompt longer than\n"
    "the model's context.\n";

/* generate() for a model without a tokenizer (--dummy-weights): the same
 * loop over token ids, with no text. Same stops, same statistics. */
static int generate_ids(transformer_t *tf, sampler_t *smp, const int *prompt, int n_prompt, int max_new, int *out,
                        gen_stats_t *st) {
    const model_config_t *c = transformer_config(tf);
    *st = (gen_stats_t){.n_prompt = n_prompt, .stop = STOP_LENGTH};
    double t0 = now_s();
    int greedy = sampler_is_greedy(smp), pos = n_prompt;
    if (transformer_run(tf, prompt, n_prompt, 0, LOGITS_LAST)) return -1;
    st->prompt_s = now_s() - t0;
    t0 = now_s();
    while (st->n_gen < max_new) {
        int next;
        if (greedy) transformer_logits_stats(tf, 1, NULL, &next, NULL, NULL);
        else next = sampler_sample(smp, transformer_logits(tf));
        if (next == c->eos_id || next == c->bos_id) {
            st->stop = STOP_EOS;
            break;
        }
        out[st->n_gen++] = next;
        if (st->n_gen == max_new) break;
        if (pos >= c->seq_len) {
            st->stop = STOP_CONTEXT;
            break;
        }
        if (transformer_run(tf, &next, 1, pos++, LOGITS_LAST)) return -1;
        st->n_steps++;
    }
    st->decode_s = now_s() - t0;
    return 0;
}

/* generate() callback: each token's bytes go to the sink as they come */
static void emit_token(void *ud, int token, const char *bytes, size_t n) { sink_bytes(ud, bytes, n); }

int cmd_run(int argc, char **argv) {
    const char *model = NULL, *tokpath = NULL, *prompt = NULL, *prompt_file = NULL, *device = "cpu",
               *dtype_s = "bf16";
    int max_new = 256, top_k = 0, threads = 0, json = 0, quiet = 0, seed_given = 0;
    cli_dummy_t dummy = {0};
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
        {"-d", "--device", OPT_STR, &device, 0, 0, 0, NULL},
        {NULL, "--dummy-weights", OPT_FLAG, &dummy.on, 0, 0, 0, NULL},
        {NULL, "--dummy-dtype", OPT_STR, &dtype_s, 0, 0, 0, NULL},
        {NULL, "--json", OPT_FLAG, &json, 0, 0, 0, NULL},
        {"-q", "--quiet", OPT_FLAG, &quiet, 0, 0, 0, NULL},
    };
    int pr = cli_parse("run", argc, argv, opts, (int)(sizeof opts / sizeof *opts), RUN_HELP);
    if (pr) return pr > 0 ? EXIT_OK : EXIT_USAGE;
    if (!model) return cli_usage_error("run", "--model is required");
    if (prompt && prompt_file) return cli_usage_error("run", "give exactly one of --prompt and --prompt-file");
    if (!prompt && !prompt_file && !dummy.on)
        return cli_usage_error("run", "give exactly one of --prompt and --prompt-file");
    if (cli_check_device_opts("run", &device, 1, dtype_s, &dummy)) return EXIT_USAGE;

    char err[1024];
    int rc = EXIT_INPUT, n_ids = 0, *ids = NULL, *out = NULL;
    cli_loaded_t L = {0};
    backend_t *be = NULL;
    transformer_t *tf = NULL;
    sampler_t *smp = NULL;
    sink_t sink = {.stream = !json};
    /* the device first: a GPU that cannot be used is reported before any file is read */
    if (!(be = cli_open_backend("run", device, threads))) {
        rc = EXIT_RUNTIME;
        goto done;
    }
    if (cli_load_model("run", model, tokpath, dummy.on, &dummy, device, &L)) goto done;
    const model_config_t *c = model_config(L.m);
    if (!L.tok) { /* --dummy-weights without a tokenizer: token ids only, from BOS */
        if ((prompt && *prompt) || prompt_file) {
            rc = cli_usage_error("run", "--dummy-weights: %s has no tokenizer.json, so prompt text cannot be "
                                        "encoded; pass --tokenizer PATH or drop the prompt (BOS alone)", model);
            goto done;
        }
        if (!(ids = malloc(sizeof *ids))) {
            fprintf(stderr, "bild run: out of memory\n");
            rc = EXIT_RUNTIME;
            goto done;
        }
        ids[0] = c->bos_id >= 0 ? c->bos_id : 0, n_ids = 1;
    } else if (!(ids = cli_encode_prompt("run", L.tok, prompt ? prompt : "", prompt_file, &n_ids, &rc))) goto done;
    if (!cli_prompt_fits("run", n_ids, c, "")) {
        rc = EXIT_FIT;
        goto done;
    }
    rc = EXIT_RUNTIME;
    if (!seed_given) seed = cli_clock_seed();
    if (!(tf = transformer_new(be, c, model_weights(L.m), 64, err, sizeof err))) {
        fprintf(stderr, "bild run: %s\n", err);
        goto done;
    }
    if (!(smp = sampler_new(c->vocab_size, temperature, top_p, top_k, seed)) ||
        !(out = malloc(sizeof(int) * (size_t)(max_new ? max_new : 1)))) {
        fprintf(stderr, "bild run: out of memory\n");
        goto done;
    }
    if (sampler_is_greedy(smp)) transformer_prepare_greedy(tf); /* the classifier's screen, with the loading */
    if (!quiet) {
        char where[256], pages[160];
        cli_pages_desc(&L, device, pages, sizeof pages);
        fprintf(stderr, "bild: %s: %.1fM params, dim %d, %d layers, %d/%d heads, vocab %d, context %d; "
                        "%s%s%s%s; seed %llu\n",
                model, model_n_params(c) / 1e6, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
                c->seq_len, cli_backend_desc(be, where, sizeof where), *pages ? ", " : "", pages,
                dummy.on ? "; random weights" : "", (unsigned long long)seed);
    }
    if (!json && L.tok) sink_tokens(&sink, L.tok, ids[0], ids + 1, n_ids - 1); /* echo the prompt, as llama2.c does */
    gen_stats_t st;
    if ((L.tok ? generate(tf, L.tok, smp, ids, n_ids, max_new, out, emit_token, &sink, &st)
               : generate_ids(tf, smp, ids, n_ids, max_new, out, &st)) != 0) {
        fprintf(stderr, "bild run: generation failed (internal error)\n");
        goto done;
    }
    if (!L.tok && !json) /* no text: the ids, space-separated */
        for (int i = 0; i < st.n_gen; i++) {
            char num[16];
            int k = snprintf(num, sizeof num, i ? " %d" : "%d", out[i]);
            sink_bytes(&sink, num, (size_t)k);
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
        cJSON *pids = cJSON_AddArrayToObject(j, "prompt_ids");
        for (int i = 0; i < n_ids; i++) cJSON_AddItemToArray(pids, cJSON_CreateNumber(ids[i]));
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
    long long sc_steps, sc_full, sc_cands;
    transformer_screen_stats(tf, &sc_steps, &sc_full, &sc_cands);
    if (!quiet && sc_steps)
        fprintf(stderr, "bild: greedy argmax from an int8 copy of the classifier, checked exactly: %lld steps, "
                        "%.1f candidate rows a step, %lld left to the full classifier (BILD_SCREEN=0: off)\n",
                sc_steps, (double)sc_cands / (sc_steps - sc_full > 0 ? sc_steps - sc_full : 1), sc_full);
    rc = EXIT_OK;
done:
    sink_free(&sink);
    free(out);
    free(ids);
    sampler_destroy(&smp);
    transformer_destroy(&tf);
    backend_destroy(&be);
    cli_loaded_free(&L);
    return rc;
}
