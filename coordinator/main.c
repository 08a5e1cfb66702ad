/* main.c - `bild generate`: the coordinator's command line. It opens the
 * two models in this process (small_worker/drafter.c, large_worker/
 * verifier.c) or connects to worker processes (remote.c), runs the BiLD
 * policy (policy.c) through the session driver (session.c) on one prompt,
 * or serves many (--prompts, --requests; --parallel), and prints the text
 * and the statistics. The same driver runs the baselines (--mode large,
 * small, spec).
 */
#include <cjson/cJSON.h>
#include <zmq.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "coordinator/inproc.h"
#include "coordinator/policy.h"
#include "coordinator/remote.h"
#include "coordinator/session.h"
#include "coordinator/t5_pair.h"
#include "large_worker/verifier.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "proto/plane.h"
#include "proto/transport.h"
#include "small_worker/drafter.h"

/* --exact's fallback threshold and draft length: the fastest exact-text
 * setting bench/bild measured (docs/algorithm.md, "Direct resumption") */
#define EXACT_FALLBACK 0.3
#define EXACT_MAX_SMALL 5
#define STR_(x) #x
#define STR(x) STR_(x) /* the value of a macro as a string, for the help text */

static const char *GEN_HELP =
    "usage: bild generate (--small PATH | --small-endpoint EP) (--large PATH | --large-endpoint EP)\n"
    "                     (--prompt TEXT | --prompt-file FILE | --prompts FILE | --requests FILE) [options]\n"
    "\n"
    "Big Little Decoder: the small model writes tokens while it is confident;\n"
    "when it is not (fallback) the large model checks the small model's recent\n"
    "tokens in one pass and corrects the first bad one (rollback). Baselines run\n"
    "through the same driver. The text (prompt echoed first) goes to stdout,\n"
    "statistics to stderr. Algorithm: docs/algorithm.md.\n"
    "\n"
    "  -S, --small PATH        small model (llama2.c checkpoint or Hugging Face folder)\n"
    "  -L, --large PATH        large model of the same vocabulary\n"
    "  -z, --tokenizer PATH    tokenizer for both (default: next to the large model;\n"
    "                          the small model's own, if it has one, must match)\n"
    "  -p, --prompt TEXT       prompt text\n"
    "  -f, --prompt-file FILE  read the prompt from FILE\n"
    "      --source TEXT       for T5 / mT5 pairs (Hugging Face folders whose config.json\n"
    "                          says t5 or mt5, or workers serving them): the text to\n"
    "                          translate or summarise (not echoed); each model encodes\n"
    "                          it once, then the decoders run the policy (greedy, CPU)\n"
    "      --source-file FILE  the source from FILE; with --prompts each line is a\n"
    "                          source, with --requests the \"source\" field\n"
    "  -n, --max-tokens N      tokens to generate at most (default 256); a sequence ends\n"
    "                          one position short of the models' context (stop \"context\")\n"
    "      --mode M            bild (default), large (large model alone), small\n"
    "                          (small model alone), spec (speculative decoding)\n"
    "      --fallback A        fallback threshold on the small model's max\n"
    "                          probability, in [0, 1] (default 0.6); in spec mode an\n"
    "                          optional confidence stop (default 0 = off)\n"
    "      --rollback B        rollback threshold, -log p_large in nats (default 5)\n"
    "      --max-small N       most small tokens in a row (default 10)\n"
    "      --gamma G           spec mode: draft length (default 5)\n"
    "      --direct            after a rollback the small model resumes at once from\n"
    "                          the large model's correction (no extra large step)\n"
    "      --exact             the large model's greedy text exactly, as fast as BiLD\n"
    "                          gets it here: rollback 0.5 (below ln 2, so every token\n"
    "                          the large model would not have chosen is rolled back),\n"
    "                          --direct, fallback " STR(EXACT_FALLBACK) " and max-small " STR(EXACT_MAX_SMALL) " unless\n"
    "                          given (greedy only; docs/algorithm.md, \"Direct resumption\")\n"
    "      --draft-vocab FILE  the small model's draft vocabulary: ranked token ids,\n"
    "                          its output layer computes only those (docs/engine.md);\n"
    "                          default draft_vocab.txt beside the small model if there\n"
    "                          is one; 'none': the full vocabulary. The large model\n"
    "                          always verifies over the full vocabulary\n"
    "      --draft-top K       use the first K ids of the draft vocabulary (default all)\n"
    "      --faithful          reproduce the official BiLD loop exactly (first\n"
    "                          position above the threshold only; unchecked tail)\n"
    "  -t, --temperature T     0 = greedy (default 0)\n"
    "      --top-p P           nucleus mass in (0, 1] (default 1 = off)\n"
    "  -s, --seed S            RNG seed (default: from the clock, printed)\n"
    "  -j, --threads N         CPU threads (default: all online cores)\n"
    "  -d, --device DEV        where the models in this process run: cpu (default),\n"
    "                          cuda (GPU 0) or cuda:N (needs make CUDA=1)\n"
    "      --small-device DEV, --large-device DEV\n"
    "                          the small / the large model's device (default --device)\n"
    "      --dummy-weights     --small and --large name Hugging Face folders (or their\n"
    "                          config.json) and the weights are random (seed 1): speed\n"
    "                          at real shapes without the weights; needs --tokenizer or\n"
    "                          a tokenizer.json in a folder\n"
    "      --dummy-dtype T     the random matrices' type: bf16 (default), f16 or f32\n"
    "      --json              print one JSON object instead of streaming text\n"
    "  -q, --quiet             no statistics on stderr\n"
    "      --prompts FILE      serve many requests: one prompt per line ('-': stdin);\n"
    "                          one JSON result line per request on stdout\n"
    "      --requests FILE     the same with JSON lines: {\"prompt\": ..., \"id\": ...,\n"
    "                          \"max_tokens\", \"fallback\", \"rollback\", \"max_small\"}\n"
    "                          ('-': stdin); a failed request gives {\"id\", \"error\"}\n"
    "                          and serving goes on (workers are reconnected)\n"
    "      --parallel N        serve up to N requests at once (default 1), each over\n"
    "                          connections of its own to the same workers, which run\n"
    "                          the waiting requests together; result lines in the\n"
    "                          order requests finish (greedy; in-process models are\n"
    "                          served by worker threads in this process)\n"
    "\n"
    "Workers in other processes (see bild small-worker --help):\n"
    "      --small-endpoint EP use a running small worker at EP (ipc:// or tcp://)\n"
    "      --large-endpoint EP use a running large worker at EP\n"
    "      --overlap           while the large worker verifies, the small worker drafts\n"
    "                          on from its own guess (same text; kept when right;\n"
    "                          greedy only)\n"
    "      --data-plane KIND   how spec sampling's distributions reach the large\n"
    "                          worker: auto (default: nccl between two GPUs, host on\n"
    "                          one GPU, messages for CPU workers), messages (through\n"
    "                          this process), host (worker to worker over ipc://, one\n"
    "                          host), nccl (worker to worker, two GPUs; make CUDA=1)\n"
    "      --timeout MS        longest wait for one reply (default 30000)\n"
    "      --heartbeat MS      connection heartbeat; a worker silent for 3 beats is\n"
    "                          reported lost (default 1000)\n"
    "      --curve-key FILE    this coordinator's CURVE key pair (bild keygen)\n"
    "      --small-server-key FILE, --large-server-key FILE\n"
    "                          the workers' public keys (their .pub files)\n"
    "\n"
    "  -h, --help              this help\n"
    "\n"
    "exit status: 0 ok, 1 runtime failure (or, serving, any failed request; or a\n"
    "device that cannot be used), 2 bad command line, 3 unreadable or invalid\n"
    "input file (including a small/large vocabulary mismatch), 4 prompt longer\n"
    "than a model's context, 5 a remote worker could not be reached, refused the\n"
    "handshake, or failed.\n";

/* Everything one generation needs, set up once: the tokenizer, the links to
 * both workers (in process or remote), and the defaults of each request. */
typedef struct {
    const char *cmd;
    int json, quiet, overlap;
    policy_params_t base;  /* defaults; a request line may override some */
    tokenizer_t *tok;
    int V;
    uint64_t fp;
    int small_ctx, large_ctx; /* context lengths (0: that model is not used) */
    drafter_t *dr;
    verifier_t *vf;
    void *zctx;
    const char *small_ep, *large_ep;
    const char *small_key, *large_key; /* CURVE: the workers' public keys */
    remote_opts_t ro;
    remote_t *rs, *rl;
    hello_reply_t hs, hl;
    long trips_done, bytes_done; /* from links closed after a failure */
    /* remote workers: how they sample (sent with SESSION) and the data plane */
    float temperature, top_p;
    uint64_t seed_s, seed_l;
    int plane_want;  /* --data-plane: PLANE_AUTO or a kind */
    int plane_kind;  /* the one set up (PLANE_MESSAGES: none) */
    char plane_why[600];
    int setup_done;  /* gen_setup_remote ran on the current links */
    int inproc;      /* --parallel with in-process models: their workers are threads here (inproc.h) */
    int encdec;      /* T5 / mT5: each request's text is the source; the decoders start from start_id */
    int start_id;
    t5_pair_t *t5;   /* ... the models in this process (else both are remote workers) */
} gen_t;

/* Sets up what remote workers need beyond the handshake, after (re)connects:
 * their sampling settings, and for speculative sampling with both workers
 * remote the data plane (proto/plane.h) over which the small model's
 * distributions go straight to the large worker. */
static int gen_setup_remote(gen_t *g, char *err, size_t errlen) {
    char why[900];
    if (g->temperature > 0) {
        session_req_t q = {g->temperature, g->top_p, g->seed_s};
        if (g->rs && remote_session(g->rs, &q, why, sizeof why)) goto fail;
        q.seed = g->seed_l;
        if (g->rl && remote_session(g->rl, &q, why, sizeof why)) goto fail;
    }
    g->plane_kind = PLANE_MESSAGES;
    if (!g->base.sampling || !g->rs || !g->rl || g->plane_want == PLANE_MESSAGES) {
        snprintf(g->plane_why, sizeof g->plane_why, "%s",
                 !g->base.sampling ? "greedy: nothing large to move" : !g->rs || !g->rl ? "a model in process"
                                                                                         : "asked for");
        return 0;
    }
    plane_req_t pq = {.op = PLANE_OP_QUERY};
    plane_res_t as, al;
    if (remote_plane(g->rs, &pq, &as, why, sizeof why) || remote_plane(g->rl, &pq, &al, why, sizeof why)) goto fail;
    int kind;
    if (plane_select(g->plane_want, &as, &al, &kind, g->plane_why, sizeof g->plane_why)) {
        snprintf(err, errlen, "%s", g->plane_why);
        return -1;
    }
    plane_res_t r;
    if (kind == PLANE_HOST) { /* the large worker binds, the small one connects */
        pq = (plane_req_t){.op = PLANE_OP_OPEN, .kind = PLANE_HOST, .rank = 0};
        if (remote_plane(g->rl, &pq, &r, why, sizeof why)) goto fail;
        pq.rank = 1;
        snprintf(pq.endpoint, sizeof pq.endpoint, "%s", r.endpoint);
        if (remote_plane(g->rs, &pq, &r, why, sizeof why)) goto fail;
    } else if (kind == PLANE_NCCL) { /* the large worker makes the id; both join at once */
        pq = (plane_req_t){.op = PLANE_OP_ID, .kind = PLANE_NCCL};
        if (remote_plane(g->rl, &pq, &r, why, sizeof why)) goto fail;
        if (!r.has_id) {
            snprintf(err, errlen, "large worker at %s: no NCCL unique id in its reply", g->large_ep);
            return -1;
        }
        pq = (plane_req_t){.op = PLANE_OP_OPEN, .kind = PLANE_NCCL, .rank = 0, .has_id = 1};
        memcpy(pq.id, r.id, sizeof pq.id);
        if (remote_plane_start(g->rl, &pq, why, sizeof why)) goto fail;
        pq.rank = 1;
        int e1 = remote_plane_start(g->rs, &pq, why, sizeof why);
        char why2[900];
        int e2 = remote_plane_finish(g->rl, &r, why2, sizeof why2);
        if (e1 || (!e1 && remote_plane_finish(g->rs, &r, why, sizeof why))) goto fail;
        if (e2) {
            snprintf(err, errlen, "data plane: %s", why2);
            return -1;
        }
    }
    g->plane_kind = kind;
    if (!g->quiet)
        fprintf(stderr, "bild %s: data plane %s (%s): small on %s, large on %s\n", g->cmd, plane_kind_name(kind),
                g->plane_why, as.device, al.device);
    return 0;
fail:
    snprintf(err, errlen, "%s", why);
    return -1;
}

/* (Re)connects the remote links that are missing or broken, with a fresh
 * handshake and the vocabulary check; when one link broke, both start new
 * sessions (the other's may have been evicted too, and a failed request
 * leaves its state half done). Returns 0, or -1 with a message. */
static int gen_connect(gen_t *g, char *err, size_t errlen) {
    int fresh = 0;
    remote_t **rr[2] = {&g->rs, &g->rl};
    const char *eps[2] = {g->small_ep, g->large_ep};
    hello_reply_t *hh[2] = {&g->hs, &g->hl};
    int any_broken = (g->rs && remote_broken(g->rs)) || (g->rl && remote_broken(g->rl));
    for (int i = 0; i < 2; i++) {
        if (!eps[i]) continue;
        if (*rr[i] && !any_broken) continue;
        if (*rr[i]) {
            g->trips_done += remote_stats(*rr[i])->round_trips;
            g->bytes_done += remote_stats(*rr[i])->bytes_sent + remote_stats(*rr[i])->bytes_received;
            remote_destroy(rr[i]);
        }
        remote_opts_t ro = g->ro; /* CURVE for the workers whose public key was given */
        ro.server_key = i ? g->large_key : g->small_key;
        if (!ro.server_key) ro.curve = NULL;
        /* vocab 0 before the tokenizer is known: the caller checks the hello */
        if (!(*rr[i] = remote_connect(g->zctx, eps[i], i ? ROLE_LARGE : ROLE_SMALL, g->tok ? g->V : 0, g->fp, &ro,
                                      hh[i], err, errlen)))
            return -1;
        fresh = 1;
    }
    if (fresh) g->setup_done = 0;
    /* after the tokenizer is known (the first request), and after every reconnect */
    if (!g->setup_done && g->tok && (g->rs || g->rl)) {
        if (gen_setup_remote(g, err, errlen)) {
            if (g->rs) remote_destroy(&g->rs); /* start afresh next time */
            if (g->rl) remote_destroy(&g->rl);
            return -1;
        }
        g->setup_done = 1;
    }
    return 0;
}

static void gen_remote_totals(const gen_t *g, long *trips, long *bytes) {
    *trips = g->trips_done, *bytes = g->bytes_done;
    const remote_t *rem[2] = {g->rs, g->rl};
    for (int i = 0; i < 2; i++)
        if (rem[i]) {
            *trips += remote_stats(rem[i])->round_trips;
            *bytes += remote_stats(rem[i])->bytes_sent + remote_stats(rem[i])->bytes_received;
        }
}

/* Result kinds of one request. */
enum { GEN_OK = 0, GEN_BAD_REQUEST = 1, GEN_WORKER = 2, GEN_FIT = 3, GEN_FAIL = 4 };

/* Runs one request. line_mode: print one JSON line (with id if given)
 * instead of the streamed text or the --json object. Returns a GEN_ code;
 * on failure err holds a one-line message (not yet printed). */
static int gen_one(gen_t *g, const char *text, const policy_params_t *pp, int line_mode, const cJSON *id,
                   char *err, size_t errlen) {
    int n_ids = tokenizer_encode(g->tok, text, 1, NULL, 0), rc = GEN_FAIL;
    int *ids = n_ids > 0 ? malloc(sizeof(int) * (size_t)n_ids) : NULL, *src = NULL, n_src = 0, start;
    policy_t *pol = NULL;
    sink_t sink = {.stream = !g->json && !line_mode};
    char why[1024];
    if (!ids) {
        snprintf(err, errlen, "out of memory encoding the %s", g->encdec ? "source" : "prompt");
        goto done;
    }
    tokenizer_encode(g->tok, text, 1, ids, n_ids);
    /* T5: the text is the source (ids, ending with EOS); the decoders start
     * from decoder_start alone, which plays the prompt's part below */
    if (g->encdec) {
        src = ids, n_src = n_ids;
        start = g->start_id;
        ids = &start, n_ids = 1;
    }
    int ctx = g->encdec ? T5_MAX_DEC
            : g->small_ctx && g->large_ctx ? (g->small_ctx < g->large_ctx ? g->small_ctx : g->large_ctx)
                                           : g->small_ctx + g->large_ctx;
    /* The sequence (prompt and output) stays below the context: a check of
     * the tail may feed one position past the last token (a proposed stop
     * token), so at most ctx - 1 tokens in all, and room for one new one. */
    if (g->encdec && n_src > T5_MAX_SRC) {
        snprintf(err, errlen, "the source is %d tokens; T5 / mT5 pairs take sources of up to %d tokens: shorten it",
                 n_src, T5_MAX_SRC);
        rc = GEN_FIT;
        goto done;
    }
    if (n_ids > ctx - 2) {
        snprintf(err, errlen, "the prompt is %d tokens but the %s model's context is %d tokens (seq_len); BiLD "
                              "takes prompts of up to %d tokens: shorten the prompt", n_ids,
                 ctx == g->large_ctx ? "large" : "small", ctx, ctx - 2);
        rc = GEN_FIT;
        goto done;
    }
    policy_params_t q = *pp;
    int ctx_capped = q.max_new > ctx - 1 - n_ids;
    if (ctx_capped) q.max_new = ctx - 1 - n_ids;
    if (!(pol = policy_new(&q, ids, n_ids, why, sizeof why))) {
        snprintf(err, errlen, "%s", why);
        rc = GEN_BAD_REQUEST;
        goto done;
    }
    if (gen_connect(g, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s", why);
        rc = GEN_WORKER;
        goto done;
    }
    policy_set_accept_remote(pol, q.sampling && g->plane_kind != PLANE_MESSAGES);
    long trips0, bytes0;
    gen_remote_totals(g, &trips0, &bytes0);
    small_link_t sl = g->dr ? drafter_link(g->dr) : g->rs ? remote_small_link(g->rs) : (small_link_t){0};
    large_link_t ll = g->vf ? verifier_link(g->vf) : g->rl ? remote_large_link(g->rl) : (large_link_t){0};
    double enc_s = 0;
    if (g->t5 && t5_pair_begin(g->t5, src, n_src, n_ids + q.max_new + 1, &sl, &ll, &enc_s, why, sizeof why)) {
        snprintf(err, errlen, "%s", why);
        goto done;
    }
    if (g->encdec && !g->t5) { /* the workers encode the source (their time: the round trip) */
        double t0 = now_s();
        remote_t *rem[2] = {g->rs, g->rl};
        for (int i = 0; i < 2; i++)
            if (rem[i] && remote_source(rem[i], src, n_src, n_ids + q.max_new + 1, why, sizeof why)) {
                snprintf(err, errlen, "%s", why);
                rc = GEN_WORKER;
                goto done;
            }
        enc_s = now_s() - t0;
    }
    session_times_t tm;
    if (session_run(pol, &sl, &ll, g->overlap, &tm, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s", why);
        rc = (g->rs && remote_broken(g->rs)) || (g->rl && remote_broken(g->rl)) ? GEN_WORKER : GEN_FAIL;
        goto done;
    }
    long trips, bytes;
    gen_remote_totals(g, &trips, &bytes);
    trips -= trips0, bytes -= bytes0;
    int n_out;
    const int *out = policy_output(pol, &n_out);
    const policy_stats_t *st = policy_stats(pol);
    if (sink.stream && !g->encdec) sink_tokens(&sink, g->tok, ids[0], ids + 1, n_ids - 1); /* echo the prompt */
    tm.total_s += enc_s; /* T5: the encoders' time is part of the request's */
    sink_tokens(&sink, g->tok, ids[n_ids - 1], out, n_out);
    sink_finish(&sink);
    /* c = time of a small pass / time of a large pass, measured in this run */
    double t_s = st->small_passes ? tm.small_s / st->small_passes : 0;
    double t_l = st->large_passes ? tm.large_s / st->large_passes : 0;
    double cost = t_l > 0 ? t_s / t_l : 0;
    double predicted = st->large_passes + cost * st->small_passes > 0
                           ? n_out / (st->large_passes + cost * st->small_passes) : 0;
    double accept = st->drafted ? 100.0 * st->accepted / st->drafted : 0;
    double other = tm.total_s - tm.small_s - tm.large_s - enc_s;
    /* small tokens kept per large check (the first large pass checks nothing) */
    double mean_acc = st->verify_calls > 1 ? (double)st->accepted / (st->verify_calls - 1) : 0;
    const char *stop = policy_stop_reason(pol) == STOP_AT_EOS ? "eos" : ctx_capped ? "context" : "length";
    if (sink.stream) sink_bytes(&sink, "\n", 1);
    else {
        cJSON *j = cJSON_CreateObject();
        if (id) cJSON_AddItemToObject(j, "id", cJSON_Duplicate(id, 1));
        cJSON_AddStringToObject(j, "mode", policy_mode_name(q.mode));
        cJSON_AddBoolToObject(j, "faithful", q.faithful);
        cJSON_AddBoolToObject(j, "direct", q.direct);
        if (g->rs && g->rl && !g->inproc) cJSON_AddStringToObject(j, "data_plane", plane_kind_name(g->plane_kind));
        cJSON_AddStringToObject(j, "text", sink.text ? sink.text : "");
        cJSON *toks = cJSON_AddArrayToObject(j, "tokens");
        for (int i = 0; i < n_out; i++) cJSON_AddItemToArray(toks, cJSON_CreateNumber(out[i]));
        if (g->encdec) cJSON_AddNumberToObject(j, "source_tokens", n_src);
        else cJSON_AddNumberToObject(j, "prompt_tokens", n_ids);
        cJSON_AddStringToObject(j, "stop", stop);
        cJSON *sj = cJSON_AddObjectToObject(j, "stats");
        cJSON_AddNumberToObject(sj, "generated", st->n_gen);
        cJSON_AddNumberToObject(sj, "small_tokens", st->small_tokens);
        cJSON_AddNumberToObject(sj, "large_tokens", st->large_tokens);
        cJSON_AddNumberToObject(sj, "large_passes", st->large_passes);
        cJSON_AddNumberToObject(sj, "small_passes", st->small_passes);
        cJSON_AddNumberToObject(sj, "draft_calls", st->draft_calls);
        cJSON_AddNumberToObject(sj, "verify_calls", st->verify_calls);
        cJSON_AddNumberToObject(sj, "fallbacks", st->fallbacks);
        cJSON_AddNumberToObject(sj, "rollbacks", st->rollbacks);
        cJSON_AddNumberToObject(sj, "rolled_back", st->rolled_back);
        cJSON_AddNumberToObject(sj, "n_drafted", st->drafted);
        cJSON_AddNumberToObject(sj, "n_accept", st->accepted);
        cJSON_AddNumberToObject(sj, "accept_pct", accept);
        cJSON_AddNumberToObject(sj, "mean_accepted", mean_acc);
        cJSON_AddNumberToObject(sj, "unchecked", st->unchecked);
        if (g->encdec) cJSON_AddNumberToObject(sj, "encode_s", enc_s);
        cJSON_AddNumberToObject(sj, "small_s", tm.small_s);
        cJSON_AddNumberToObject(sj, "large_s", tm.large_s);
        cJSON_AddNumberToObject(sj, "other_s", other);
        cJSON_AddNumberToObject(sj, "total_s", tm.total_s);
        cJSON_AddNumberToObject(sj, "tok_per_s", tm.total_s > 0 ? st->n_gen / tm.total_s : 0);
        cJSON_AddNumberToObject(sj, "cost_ratio", cost);
        cJSON_AddNumberToObject(sj, "predicted_speedup", predicted);
        cJSON_AddNumberToObject(sj, "round_trips", trips);
        cJSON_AddNumberToObject(sj, "bytes_moved", (double)bytes);
        cJSON_AddNumberToObject(sj, "overlap_drafts", tm.spec_drafts);
        cJSON_AddNumberToObject(sj, "overlap_kept", tm.spec_kept);
        cJSON_AddNumberToObject(j, "seed", (double)q.seed);
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
        snprintf(err, errlen, "cannot write the output: %s", strerror(errno));
        goto done;
    }
    if (!g->quiet && !line_mode) {
        fprintf(stderr, "bild: %d tokens (%d small, %d large) in %.1f ms, %.1f tok/s; stop: %s\n", st->n_gen,
                st->small_tokens, st->large_tokens, tm.total_s * 1e3, tm.total_s > 0 ? st->n_gen / tm.total_s : 0,
                stop);
        fprintf(stderr, "bild: passes: %d large, %d small; fallbacks %d, rollbacks %d (%d tokens rolled back), "
                        "unchecked %d\n", st->large_passes, st->small_passes, st->fallbacks, st->rollbacks,
                st->rolled_back, st->unchecked);
        fprintf(stderr, "bild: n_drafted %d, n_accept %d, accept %.1f%%, mean accepted per check %.2f\n", st->drafted,
                st->accepted, accept, mean_acc);
        if (g->encdec) fprintf(stderr, "bild: source %d tokens, encoded by %s in %.1f ms\n", n_src,
                           sl.draft && ll.verify ? "both models" : "the model", enc_s * 1e3);
        fprintf(stderr, "bild: time: small %.1f ms, large %.1f ms, other %.1f ms; cost ratio c %.3f; predicted "
                        "speedup n/(N_L + c N_S) %.2f\n", tm.small_s * 1e3, tm.large_s * 1e3, other * 1e3, cost,
                predicted);
        if (g->rs || g->rl)
            fprintf(stderr, "bild: remote: %ld round trips (%d draft calls, %d verify calls), %ld bytes moved; "
                            "%.2f round trips and %.0f bytes per token\n", trips, st->draft_calls, st->verify_calls,
                    bytes, n_out ? (double)trips / n_out : 0, n_out ? (double)bytes / n_out : 0);
        if (g->overlap)
            fprintf(stderr, "bild: overlap: %d drafts made during a verification, %d kept\n", tm.spec_drafts,
                    tm.spec_kept);
    }
    rc = GEN_OK;
done:
    sink_free(&sink);
    free(src ? src : ids);
    policy_destroy(&pol);
    return rc;
}

/* Reads one line (any length) from f; NULL at end of file. Caller frees. */
static char *read_line(FILE *f) {
    size_t cap = 0;
    char *line = NULL;
    ssize_t n = getline(&line, &cap, f);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    return line;
}

/* Reads an optional number field of a request line into *out, checking its
 * range. Returns 0, or -1 with a message. */
static int req_number(const cJSON *o, const char *name, double lo, double hi, int integer, double *out, char *err,
                      size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
        (integer && v->valuedouble != (double)(long long)v->valuedouble)) {
        snprintf(err, errlen, "\"%s\" must be %s in [%g, %g]", name, integer ? "an integer" : "a number", lo, hi);
        return -1;
    }
    *out = v->valuedouble;
    return 0;
}

/* Serves requests one at a time from f: JSON lines (jsonl) or one prompt
 * per line. One result line per request on stdout; a failed request gives
 * {"id": ..., "error": "..."} and serving goes on (remote workers are
 * reconnected with a fresh handshake before the next request). Returns the
 * number of failed requests, or -1 if the output cannot be written. */
/* One request line (request number n, line lineno of the input): its
 * result line or error line on stdout. Returns GEN_OK or another GEN_ code,
 * or -1 if the output cannot be written. */
static int serve_line(gen_t *g, const char *line, int lineno, int n, int jsonl) {
    char err[1024];
    policy_params_t q = g->base;
    cJSON *req = NULL;
    const cJSON *id = NULL;
    const char *text = line;
    int rc = GEN_BAD_REQUEST;
    err[0] = 0;
    if (jsonl) {
        double v;
        const cJSON *pr;
        if (!(req = cJSON_Parse(line)) || !cJSON_IsObject(req))
            snprintf(err, sizeof err, "line %d is not a JSON object", lineno);
        else if (id = cJSON_GetObjectItemCaseSensitive(req, "id"),
                 /* T5 pairs: "source", or "prompt" standing for it */
                 pr = g->encdec ? cJSON_GetObjectItemCaseSensitive(req, "source") : NULL,
                 pr = pr ? pr : cJSON_GetObjectItemCaseSensitive(req, "prompt"), !cJSON_IsString(pr))
            snprintf(err, sizeof err, "line %d: \"%s\" (a string) is required", lineno,
                     g->encdec ? "source" : "prompt");
        else {
            text = pr->valuestring;
            int bad = 0;
            v = q.max_new;
            bad |= req_number(req, "max_tokens", 1, 1e9, 1, &v, err, sizeof err), q.max_new = (int)v;
            v = q.alpha_fb;
            bad |= !bad && req_number(req, "fallback", 0, 1, 0, &v, err, sizeof err), q.alpha_fb = (float)v;
            v = q.alpha_rb;
            bad |= !bad && req_number(req, "rollback", 1e-9, 1e6, 0, &v, err, sizeof err), q.alpha_rb = (float)v;
            v = q.max_small;
            bad |= !bad && req_number(req, "max_small", 0, BILD_MAX_DRAFT - 2, 1, &v, err, sizeof err),
                q.max_small = (int)v;
            if (!bad) err[0] = 0;
        }
    }
    if (!err[0]) rc = gen_one(g, text, &q, 1, id, err, sizeof err);
    if (rc != GEN_OK) {
        if (!g->quiet) fprintf(stderr, "bild %s: request %d failed: %s\n", g->cmd, n, err);
        cJSON *j = cJSON_CreateObject();
        if (id) cJSON_AddItemToObject(j, "id", cJSON_Duplicate(id, 1));
        cJSON_AddStringToObject(j, "error", err);
        char *o = cJSON_PrintUnformatted(j);
        int bad = !o || printf("%s\n", o) < 0 || fflush(stdout);
        free(o);
        cJSON_Delete(j);
        if (bad) rc = -1;
    }
    cJSON_Delete(req);
    return rc;
}

/* --parallel: N threads take request lines in turn, each with connections
 * (sessions) of its own on the same workers; results in completion order. */
typedef struct {
    const gen_t *base;
    FILE *f;
    int jsonl;
    pthread_mutex_t mu;
    int n, failed, lineno, write_error;
    long trips, bytes;
} pool_t;

static void *serve_thread(void *arg) {
    pool_t *p = arg;
    gen_t g = *p->base; /* its own links, made on its first request */
    g.rs = g.rl = NULL, g.setup_done = 0, g.trips_done = g.bytes_done = 0;
    g.dr = NULL, g.vf = NULL; /* in-process models are served by their threads (inproc.h) */
    for (;;) {
        pthread_mutex_lock(&p->mu);
        char *line = NULL;
        const char *s = "";
        while (!p->write_error && (line = read_line(p->f))) {
            p->lineno++;
            for (s = line; *s == ' ' || *s == '\t'; s++) {}
            if (*s) break;
            free(line);
            line = NULL;
        }
        int n = line ? ++p->n : 0, lineno = p->lineno;
        pthread_mutex_unlock(&p->mu);
        if (!line) break;
        int rc = serve_line(&g, line, lineno, n, p->jsonl);
        free(line);
        pthread_mutex_lock(&p->mu);
        p->failed += rc != GEN_OK;
        p->write_error |= rc < 0;
        pthread_mutex_unlock(&p->mu);
    }
    long trips, bytes;
    gen_remote_totals(&g, &trips, &bytes);
    remote_destroy(&g.rs);
    remote_destroy(&g.rl);
    pthread_mutex_lock(&p->mu);
    p->trips += trips, p->bytes += bytes;
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int gen_serve(gen_t *g, FILE *f, int jsonl, int parallel) {
    char *line;
    int n = 0, failed = 0, lineno = 0;
    double t0 = now_s();
    long trips = 0, bytes = 0;
    if (parallel > 1) {
        pool_t p = {.base = g, .f = f, .jsonl = jsonl};
        pthread_t th[64];
        int started = 0;
        pthread_mutex_init(&p.mu, NULL);
        for (int i = 0; i < parallel; i++) started += pthread_create(&th[started], NULL, serve_thread, &p) == 0;
        if (!started) serve_thread(&p);
        for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
        pthread_mutex_destroy(&p.mu);
        if (p.write_error) return -1;
        n = p.n, failed = p.failed, trips = p.trips, bytes = p.bytes;
    } else {
        while ((line = read_line(f))) {
            lineno++;
            const char *s = line;
            while (*s == ' ' || *s == '\t') s++;
            if (!*s) {
                free(line);
                continue;
            }
            n++;
            int rc = serve_line(g, line, lineno, n, jsonl);
            free(line);
            if (rc < 0) return -1;
            failed += rc != GEN_OK;
        }
        gen_remote_totals(g, &trips, &bytes);
    }
    if (!g->quiet) {
        fprintf(stderr, "bild %s: served %d requests (%d failed) in %.3f s", g->cmd, n, failed, now_s() - t0);
        if (parallel > 1) fprintf(stderr, ", up to %d at once", parallel);
        if ((g->rs || g->rl || g->small_ep || g->large_ep) && !g->inproc)
            fprintf(stderr, "; %ld round trips, %ld bytes", trips, bytes);
        fputc('\n', stderr);
    }
    return failed;
}

/* The exit status of a single request's GEN_ code. */
static int gen_exit(int r) {
    return r == GEN_OK ? EXIT_OK : r == GEN_WORKER ? EXIT_WORKER : r == GEN_FIT ? EXIT_FIT
         : r == GEN_BAD_REQUEST ? EXIT_USAGE : EXIT_RUNTIME;
}

/* bild generate on a T5 / mT5 pair, in this process or as two workers
 * (g->rs, g->rl connected: their hello replies say PROTO_CAP_ENCDEC):
 * g->base holds the policy's settings but the vocabulary and stop ids,
 * which come from the models; text (one source) or req_f (serving).
 * small_path / large_path: the models to run in process (NULL: not used
 * in this mode, or remote); tok_dirs: the folders where a tokenizer.json
 * is looked for (the large one's first), whatever the mode. Returns the
 * exit status. */
static int gen_t5(gen_t *g, const char *small_path, const char *large_path, const char *const tok_dirs[2],
                  const char *tokpath, const cli_dummy_t *dummy, int threads, const char *text, FILE *req_f,
                  int jsonl) {
    const char *cmd = g->cmd;
    char err[1024], found[4096], tried[4096] = "", bd[240] = "two workers";
    int rc = EXIT_INPUT, V, start, eos;
    const char *arch = "T5 / mT5 workers";
    backend_t *be = NULL;
    const hello_reply_t *hel[2] = {g->rs ? &g->hs : NULL, g->rl ? &g->hl : NULL};
    if (small_path || large_path) {
        if (!(be = cli_open_backend(cmd, "cpu", threads))) return EXIT_RUNTIME;
        if (!(g->t5 = t5_pair_open(small_path, large_path, dummy, be, err, sizeof err))) {
            fprintf(stderr, "bild %s: %s\n", cmd, err);
            goto done;
        }
        const t5_config_t *c = t5_pair_config(g->t5);
        V = c->vocab_size, start = c->decoder_start, eos = c->eos, arch = c->arch;
        cli_backend_desc(be, bd, sizeof bd);
    } else { /* both remote: what the workers said */
        const hello_reply_t *h = hel[1] ? hel[1] : hel[0];
        V = h->vocab_size, start = h->start_id, eos = h->eos_id;
        if (hel[0] && hel[1] && (hel[0]->start_id != hel[1]->start_id || hel[0]->eos_id != hel[1]->eos_id)) {
            fprintf(stderr, "bild %s: the workers disagree on the decoder's start and stop ids (small %d/%d, large "
                            "%d/%d)\n", cmd, hel[0]->start_id, hel[0]->eos_id, hel[1]->start_id, hel[1]->eos_id);
            goto done;
        }
        if (start < 0 || eos < 0) {
            fprintf(stderr, "bild %s: the worker did not say its decoder start and stop ids\n", cmd);
            goto done;
        }
    }
    const char *tp = tokpath;
    for (int i = 0; i < 2 && !tp; i++)
        if (tok_dirs[i] && cli_default_tokenizer(tok_dirs[i], V, found, sizeof found, tried, sizeof tried) == 0)
            tp = found;
    if (!tp) {
        fprintf(stderr, "bild %s: no tokenizer.json next to the models%s; pass --tokenizer PATH\n", cmd,
                g->t5 ? "" : " (they are remote)");
        goto done;
    }
    /* decoder_start stands for BOS: the first output token's leading space is dropped after it */
    if (!(g->tok = cli_load_tokenizer(tp, V, start, eos, err, sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        goto done;
    }
    g->V = V, g->encdec = 1, g->start_id = start;
    g->fp = cli_vocab_fingerprint(g->tok);
    for (int i = 0; i < 2; i++)
        if (hel[i] && (hel[i]->vocab_size != V || hel[i]->vocab_fingerprint != g->fp)) {
            fprintf(stderr, "bild %s: the %s worker holds another vocabulary (%d tokens, fingerprint %016llx; the "
                            "tokenizer here: %d, %016llx)\n", cmd, i ? "large" : "small", hel[i]->vocab_size,
                    (unsigned long long)hel[i]->vocab_fingerprint, V, (unsigned long long)g->fp);
            goto done;
        }
    g->base.vocab_size = V, g->base.stop_a = g->base.stop_b = eos;
    policy_t *probe = policy_new(&g->base, &start, 1, err, sizeof err); /* the settings, once */
    if (!probe) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        rc = EXIT_USAGE;
        goto done;
    }
    policy_destroy(&probe);
    if (!g->quiet)
        fprintf(stderr, "bild: %s; mode %s%s%s%s; small %s, large %s; fallback %.2f, rollback %.2f, max-small %d; "
                        "%s%s\n", arch, policy_mode_name(g->base.mode), g->base.faithful ? " (faithful)" : "",
                g->base.direct ? " (direct)" : "", g->overlap ? " with overlap" : "",
                small_path ? small_path : g->small_ep ? g->small_ep : "-",
                large_path ? large_path : g->large_ep ? g->large_ep : "-", g->base.alpha_fb, g->base.alpha_rb,
                g->base.max_small, bd, dummy->on && g->t5 ? "; random weights (--dummy-weights)" : "");
    if (req_f) {
        int failed = gen_serve(g, req_f, jsonl, 1);
        if (failed < 0) fprintf(stderr, "bild %s: cannot write the output: %s\n", cmd, strerror(errno));
        rc = failed == 0 ? EXIT_OK : EXIT_RUNTIME;
        goto done;
    }
    int r = gen_one(g, text, &g->base, 0, NULL, err, sizeof err);
    if (r != GEN_OK) fprintf(stderr, "bild %s: %s\n", cmd, err);
    rc = gen_exit(r);
done:
    tokenizer_destroy(&g->tok);
    t5_pair_close(&g->t5);
    backend_destroy(&be);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    const char *small_path = NULL, *large_path = NULL, *tokpath = NULL, *prompt = NULL, *prompt_file = NULL,
               *mode_s = "bild", *requests = NULL, *prompts = NULL, *curve_key = NULL, *small_key = NULL,
               *large_key = NULL, *device = "cpu", *small_dev = NULL, *large_dev = NULL, *dtype_s = "bf16";
    cli_dummy_t dummy = {0};
    int max_new = 256, max_small = 10, gamma = 5, faithful = 0, threads = 0, json = 0, quiet = 0, overlap = 0;
    int seed_given = 0, fb_given = 0, rb_given = 0, timeout_ms = 30000, heartbeat_ms = TRANSPORT_HEARTBEAT_MS;
    int exact = 0, draft_top = 0, direct = 0, ms_given = 0, parallel = 1;
    const char *draft_vocab = NULL, *source = NULL, *source_file = NULL;
    const char *small_ep = NULL, *large_ep = NULL, *plane_s = "auto";
    float alpha_fb = 0.6f, alpha_rb = 5.0f, temperature = 0.0f, top_p = 1.0f;
    uint64_t seed = 0;
    const opt_t opts[] = {
        {"-S", "--small", OPT_STR, &small_path, 0, 0, 0, NULL},
        {"-L", "--large", OPT_STR, &large_path, 0, 0, 0, NULL},
        {NULL, "--small-endpoint", OPT_STR, &small_ep, 0, 0, 0, NULL},
        {NULL, "--large-endpoint", OPT_STR, &large_ep, 0, 0, 0, NULL},
        {NULL, "--timeout", OPT_INT, &timeout_ms, 100, 3600000, 0, NULL},
        {NULL, "--heartbeat", OPT_INT, &heartbeat_ms, 50, 600000, 0, NULL},
        {NULL, "--curve-key", OPT_STR, &curve_key, 0, 0, 0, NULL},
        {NULL, "--small-server-key", OPT_STR, &small_key, 0, 0, 0, NULL},
        {NULL, "--large-server-key", OPT_STR, &large_key, 0, 0, 0, NULL},
        {NULL, "--overlap", OPT_FLAG, &overlap, 0, 0, 0, NULL},
        {NULL, "--data-plane", OPT_STR, &plane_s, 0, 0, 0, NULL},
        {"-z", "--tokenizer", OPT_STR, &tokpath, 0, 0, 0, NULL},
        {"-p", "--prompt", OPT_STR, &prompt, 0, 0, 0, NULL},
        {"-f", "--prompt-file", OPT_STR, &prompt_file, 0, 0, 0, NULL},
        {NULL, "--source", OPT_STR, &source, 0, 0, 0, NULL},
        {NULL, "--source-file", OPT_STR, &source_file, 0, 0, 0, NULL},
        {NULL, "--prompts", OPT_STR, &prompts, 0, 0, 0, NULL},
        {NULL, "--requests", OPT_STR, &requests, 0, 0, 0, NULL},
        {NULL, "--parallel", OPT_INT, &parallel, 1, 64, 0, NULL},
        {"-n", "--max-tokens", OPT_INT, &max_new, 1, INT_MAX, 0, NULL},
        {NULL, "--mode", OPT_STR, &mode_s, 0, 0, 0, NULL},
        {NULL, "--fallback", OPT_FLOAT, &alpha_fb, 0, 1, 0, &fb_given},
        {NULL, "--rollback", OPT_FLOAT, &alpha_rb, 0, 1e6, 1, &rb_given},
        {NULL, "--exact", OPT_FLAG, &exact, 0, 0, 0, NULL},
        {NULL, "--draft-vocab", OPT_STR, &draft_vocab, 0, 0, 0, NULL},
        {NULL, "--draft-top", OPT_INT, &draft_top, 1, 1 << 24, 0, NULL},
        {NULL, "--max-small", OPT_INT, &max_small, 0, BILD_MAX_DRAFT - 2, 0, &ms_given},
        {NULL, "--direct", OPT_FLAG, &direct, 0, 0, 0, NULL},
        {NULL, "--gamma", OPT_INT, &gamma, 1, BILD_MAX_DRAFT - 2, 0, NULL},
        {NULL, "--faithful", OPT_FLAG, &faithful, 0, 0, 0, NULL},
        {"-t", "--temperature", OPT_FLOAT, &temperature, 0, 100, 0, NULL},
        {NULL, "--top-p", OPT_FLOAT, &top_p, 0, 1, 1, NULL},
        {"-s", "--seed", OPT_U64, &seed, 0, 0, 0, &seed_given},
        {"-j", "--threads", OPT_INT, &threads, 1, 1024, 0, NULL},
        {"-d", "--device", OPT_STR, &device, 0, 0, 0, NULL},
        {NULL, "--small-device", OPT_STR, &small_dev, 0, 0, 0, NULL},
        {NULL, "--large-device", OPT_STR, &large_dev, 0, 0, 0, NULL},
        {NULL, "--dummy-weights", OPT_FLAG, &dummy.on, 0, 0, 0, NULL},
        {NULL, "--dummy-dtype", OPT_STR, &dtype_s, 0, 0, 0, NULL},
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
    int plane_want = plane_kind_parse(plane_s);
    if (plane_want < PLANE_AUTO)
        return cli_usage_error(cmd, "--data-plane: unknown kind '%s' (auto, messages, host or nccl)", plane_s);
    if (overlap && temperature > 0) return cli_usage_error(cmd, "--overlap is for greedy decoding; drop --temperature");
    /* T5 / mT5 (encoder-decoders) take a source text; the rest a prompt.
     * Both models given are looked at, even one this mode does not run */
    char small_dir[4096] = "", large_dir[4096] = "", derr[1024];
    const char *mpaths[2] = {small_path, large_path};
    if (mode == POLICY_LARGE) small_path = small_ep = NULL; /* not used */
    if (mode == POLICY_SMALL) large_path = large_ep = NULL;
    char *dirs[2] = {small_dir, large_dir};
    int n_t5 = 0, n_paths = 0;
    for (int i = 0; i < 2; i++) {
        if (!mpaths[i]) continue;
        n_paths++;
        if (dummy.on && cli_dummy_dir(mpaths[i], dirs[i], sizeof small_dir, derr, sizeof derr))
            return cli_usage_error(cmd, "%s", derr);
        if (!dummy.on) snprintf(dirs[i], sizeof small_dir, "%s", mpaths[i]);
        n_t5 += t5_probe(dirs[i]);
    }
    const int t5 = n_t5 > 0;
    if (t5 && n_t5 != n_paths) {
        fprintf(stderr, "bild %s: the %s model is a T5 / mT5 encoder-decoder and the %s one is not; BiLD needs two "
                        "models of one family and vocabulary\n", cmd, t5_probe(small_dir) ? "small" : "large",
                t5_probe(small_dir) ? "large" : "small");
        return EXIT_INPUT;
    }
    const int has_src = source || source_file, has_prompt = prompt || prompt_file;
    /* what a T5 pair does not take (yet), here or as workers (checked again once they say what they hold) */
    const char *t5_no = temperature > 0 ? "--temperature (T5 pairs decode greedily for now)"
                      : parallel > 1 ? "--parallel (T5 pairs serve one request at a time for now)"
                      : overlap && !small_ep ? "--overlap (it needs worker processes)"
                      : draft_vocab || draft_top ? "--draft-vocab/--draft-top (decoder-only small models only)"
                      : strcmp(device, "cpu") || (small_dev && strcmp(small_dev, "cpu")) ||
                        (large_dev && strcmp(large_dev, "cpu")) ? "--device (T5 models run on the CPU for now)"
                      : has_prompt ? "--prompt or --prompt-file: T5 / mT5 models turn a source text into an output: "
                                     "give --source TEXT or --source-file FILE (or --prompts / --requests, one "
                                     "source per request)"
                      : NULL;
    if (t5 && (small_ep || large_ep))
        return cli_usage_error(cmd, "a T5 / mT5 pair runs in this process or as two workers (--small-endpoint and "
                                    "--large-endpoint), not half of each");
    if (!t5 && has_src && !small_ep && !large_ep)
        return cli_usage_error(cmd, "--source and --source-file are for T5 / mT5 encoder-decoders (config.json "
                                    "model_type t5 or mt5); these models take --prompt or --prompt-file");
    if (t5 && t5_no) return cli_usage_error(cmd, "a T5 / mT5 pair does not take %s", t5_no);
    if (has_src) prompt = source, prompt_file = source_file;
    if ((prompt != NULL) + (prompt_file != NULL) + (prompts != NULL) + (requests != NULL) != 1)
        return cli_usage_error(cmd, "give exactly one of --prompt (or --source), --prompt-file (or --source-file), "
                                    "--prompts and --requests");
    if (faithful && mode != POLICY_BILD) return cli_usage_error(cmd, "--faithful applies to --mode bild only");
    if (parallel > 1) {
        if (!prompts && !requests) return cli_usage_error(cmd, "--parallel is for serving (--prompts or --requests)");
        if (temperature > 0)
            return cli_usage_error(cmd, "--parallel is for greedy decoding: with --temperature each request's "
                                        "tokens would depend on which connection served it");
        if (plane_want != PLANE_AUTO && plane_want != PLANE_MESSAGES)
            return cli_usage_error(cmd, "--parallel does not go with --data-plane (one plane per worker pair)");
    }
    if (exact) { /* a named setting: see docs/algorithm.md, "Direct resumption" */
        if (mode != POLICY_BILD || faithful)
            return cli_usage_error(cmd, "--exact is a setting of the default BiLD mode (drop --mode/--faithful)");
        if (temperature > 0) return cli_usage_error(cmd, "--exact is for greedy decoding; drop --temperature");
        if (rb_given && alpha_rb >= 0.6931f)
            return cli_usage_error(cmd, "--exact needs --rollback below ln 2 = 0.693 (got %g)", alpha_rb);
        if (!rb_given) alpha_rb = 0.5f;
        if (!fb_given) alpha_fb = (float)EXACT_FALLBACK;
        if (!ms_given) max_small = EXACT_MAX_SMALL;
        direct = 1;
    }
    if (direct && (mode != POLICY_BILD || faithful))
        return cli_usage_error(cmd, "--direct is a setting of the default BiLD mode (drop --mode/--faithful)");
    const char *devs[3] = {device, small_dev, large_dev};
    if (cli_check_device_opts(cmd, devs, 3, dtype_s, &dummy)) return EXIT_USAGE;
    if (!small_dev) small_dev = device;
    if (!large_dev) large_dev = device;
    if (mode == POLICY_SPEC && !fb_given) alpha_fb = 0;
    if (mode == POLICY_SPEC && temperature > 0 && top_p < 1)
        return cli_usage_error(cmd, "--top-p is not supported with spec sampling (rejection sampling uses the "
                                    "full tempered distributions)");
    if ((small_key || large_key) && !curve_key)
        return cli_usage_error(cmd, "--small-server-key/--large-server-key need --curve-key (this coordinator's "
                                    "key pair, from bild keygen)");
    if (curve_key && !small_key && !large_key)
        return cli_usage_error(cmd, "with --curve-key, give the public key of the workers to reach over CURVE "
                                    "(--small-server-key, --large-server-key)");

    char err[1024];
    int rc = EXIT_INPUT;
    cli_loaded_t S = {0}, Lg = {0};
    backend_t *be = NULL, *be_l = NULL; /* be_l: the large model's, when its device differs */
    transformer_t *tfs = NULL, *tfl = NULL;
    sampler_t *smp_s = NULL, *smp_l = NULL;
    tokenizer_t *own_tok = NULL;
    inproc_worker_t *inw[2] = {NULL, NULL};
    char inproc_ep[2][128];
    pthread_mutex_t inproc_mu;
    int inproc_mu_made = 0;
    transport_keypair_t kp;
    char (*skey)[TRANSPORT_KEY_TEXT + 1] = NULL, (*lkey)[TRANSPORT_KEY_TEXT + 1] = NULL;
    char *prompt_buf = NULL;
    FILE *req_f = NULL;
    gen_t g = {.cmd = cmd, .json = json, .quiet = quiet, .overlap = overlap,
               .small_ep = small_ep, .large_ep = large_ep, .plane_want = plane_want};
    g.ro = (remote_opts_t){.timeout_ms = timeout_ms, .heartbeat_ms = heartbeat_ms};
    if (curve_key) {
        if (transport_load_keypair(curve_key, &kp, err, sizeof err) != 0 ||
            (small_key && transport_load_public_keys(small_key, &skey, err, sizeof err) < 0) ||
            (large_key && transport_load_public_keys(large_key, &lkey, err, sizeof err) < 0)) {
            fprintf(stderr, "bild %s: %s\n", cmd, err);
            goto done;
        }
        g.ro.curve = &kp;
    }
    if (prompt_file && !(prompt = prompt_buf = cli_read_prompt_file(prompt_file, err, sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        goto done;
    }
    const char *src = requests ? requests : prompts;
    if (src && !(req_f = strcmp(src, "-") ? fopen(src, "r") : stdin)) {
        fprintf(stderr, "bild %s: cannot open %s: %s\n", cmd, src, strerror(errno));
        goto done;
    }
    if (!seed_given) seed = cli_clock_seed();
    g.base = (policy_params_t){.mode = mode, .faithful = faithful, .direct = direct, .alpha_fb = alpha_fb,
                               .alpha_rb = alpha_rb, .max_small = mode == POLICY_SPEC ? gamma : max_small,
                               .max_new = max_new, .sampling = mode == POLICY_SPEC && temperature > 0, .seed = seed};
    if (t5) {
        const char *tok_dirs[2] = {*large_dir ? large_dir : NULL, *small_dir ? small_dir : NULL};
        rc = gen_t5(&g, small_path ? small_dir : NULL, large_path ? large_dir : NULL, tok_dirs, tokpath, &dummy, threads,
                    prompt, req_f, requests != NULL);
        goto done;
    }
    /* remote workers first: their handshake says which vocabulary they hold */
    if (small_ep || large_ep) {
        if (!(g.zctx = zmq_ctx_new())) {
            fprintf(stderr, "bild %s: cannot start ZeroMQ\n", cmd);
            rc = EXIT_RUNTIME;
            goto done;
        }
        g.small_key = skey ? skey[0] : NULL, g.large_key = lkey ? lkey[0] : NULL;
        if (gen_connect(&g, err, sizeof err) != 0) {
            fprintf(stderr, "bild %s: %s\n", cmd, err);
            rc = EXIT_WORKER;
            goto done;
        }
    }
    if (g.rs && g.rl && g.hs.vocab_size != g.hl.vocab_size) {
        fprintf(stderr, "bild %s: the large worker at %s holds another vocabulary (%d tokens) than the small worker "
                        "at %s (%d tokens); BiLD needs one shared vocabulary\n", cmd, large_ep, g.hl.vocab_size,
                small_ep, g.hs.vocab_size);
        goto done;
    }
    { /* workers holding T5 / mT5 models (their hello says so): both, and nothing in process */
        int n_rem = !!g.rs + !!g.rl;
        int n_enc = (g.rs && (g.hs.caps & PROTO_CAP_ENCDEC)) + (g.rl && (g.hl.caps & PROTO_CAP_ENCDEC));
        if (n_enc && (n_enc != n_rem || small_path || large_path)) {
            fprintf(stderr, "bild %s: the %s worker serves a T5 / mT5 encoder-decoder and the %s model is not one; "
                            "BiLD needs two models of one family\n", cmd,
                    g.rs && (g.hs.caps & PROTO_CAP_ENCDEC) ? "small" : "large",
                    g.rs && (g.hs.caps & PROTO_CAP_ENCDEC) ? "large" : "small");
            goto done;
        }
        if (!n_enc && has_src) {
            rc = cli_usage_error(cmd, "--source and --source-file are for T5 / mT5 encoder-decoders; the workers "
                                      "serve decoder-only models, which take --prompt or --prompt-file");
            goto done;
        }
        if (n_enc && t5_no) {
            rc = cli_usage_error(cmd, "the workers serve a T5 / mT5 pair, which does not take %s", t5_no);
            goto done;
        }
        if (n_enc) {
            const char *none[2] = {NULL, NULL};
            rc = gen_t5(&g, NULL, NULL, none, tokpath, &dummy, threads, prompt, req_f, requests != NULL);
            goto done;
        }
    }
    /* the tokenizer: --tokenizer, else beside the large model, else beside the small one */
    if (large_path && cli_load_model(cmd, large_path, tokpath, mode == POLICY_SMALL, &dummy, large_dev, &Lg)) goto done;
    if (small_path && cli_load_model(cmd, small_path, tokpath, mode != POLICY_SMALL || Lg.tok, &dummy, small_dev, &S)) goto done;
    g.tok = Lg.tok ? Lg.tok : S.tok;
    if (!g.tok && tokpath && (g.rs || g.rl)) { /* both models remote: the tokenizer alone, sized by the handshake */
        if (!(g.tok = own_tok = cli_load_tokenizer(tokpath, g.rl ? g.hl.vocab_size : g.hs.vocab_size, -1, -1, err,
                                                       sizeof err))) {
            fprintf(stderr, "bild %s: %s\n", cmd, err);
            goto done;
        }
    }
    if (!g.tok) {
        fprintf(stderr, "bild %s: no tokenizer found next to either model; pass --tokenizer PATH\n", cmd);
        goto done;
    }
    const int V = g.V = tokenizer_vocab_size(g.tok), eos = tokenizer_eos(g.tok), bos = tokenizer_bos(g.tok);
    g.fp = cli_vocab_fingerprint(g.tok);
    const hello_reply_t *hel[2] = {g.rs ? &g.hs : NULL, g.rl ? &g.hl : NULL};
    const char *eps[2] = {small_ep, large_ep};
    for (int i = 0; i < 2; i++)
        if (hel[i] && (hel[i]->vocab_size != V || hel[i]->vocab_fingerprint != g.fp)) {
            fprintf(stderr, "bild %s: the %s worker at %s holds another vocabulary (%d tokens, fingerprint %016llx; "
                            "the tokenizer here: %d, %016llx)\n", cmd, i ? "large" : "small", eps[i], hel[i]->vocab_size,
                    (unsigned long long)hel[i]->vocab_fingerprint, V, (unsigned long long)g.fp);
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
    g.small_ctx = S.m ? model_config(S.m)->seq_len : g.rs ? g.hs.seq_len : 0;
    g.large_ctx = Lg.m ? model_config(Lg.m)->seq_len : g.rl ? g.hl.seq_len : 0;
    rc = EXIT_RUNTIME;
    /* models on one device share one backend (one thread pool, one stream):
     * they run in turn; on two devices each has its own */
    int split = S.m && Lg.m && strcmp(small_dev, large_dev) != 0;
    if ((S.m || Lg.m) && !(be = cli_open_backend(cmd, S.m ? small_dev : large_dev, threads))) goto done;
    if (split && !(be_l = cli_open_backend(cmd, large_dev, threads))) goto done;
    backend_t *bel = be_l ? be_l : be;
    if ((Lg.m && !(tfl = transformer_new(bel, model_config(Lg.m), model_weights(Lg.m), BILD_MAX_DRAFT, err, sizeof err))) ||
        (S.m && !(tfs = transformer_new(be, model_config(S.m), model_weights(S.m), BILD_MAX_DRAFT, err, sizeof err)))) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        goto done;
    }
    char dv_used[4096] = "";
    int dv_k = 0;
    if (tfs && !dummy.on && mode != POLICY_SMALL && (dv_k = cli_draft_vocab(tfs, small_path, draft_vocab, draft_top, dv_used, sizeof dv_used, err,
                                                    sizeof err)) < 0) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        rc = EXIT_INPUT;
        goto done;
    }
    if (!quiet && dv_k) fprintf(stderr, "bild: the small model drafts over %d tokens (%s)\n", dv_k, dv_used);
    /* remote workers get the same settings and seeds (SESSION) */
    g.temperature = temperature, g.top_p = top_p, g.seed_s = seed, g.seed_l = seed ^ 0x9E3779B97F4A7C15ULL;
    if (temperature > 0) { /* independent streams for the two models */
        smp_s = sampler_new(V, temperature, top_p, 0, seed);
        smp_l = sampler_new(V, temperature, top_p, 0, seed ^ 0x9E3779B97F4A7C15ULL);
        if (!smp_s || !smp_l) {
            fprintf(stderr, "bild %s: out of memory\n", cmd);
            goto done;
        }
    }
    /* greedy: the large model's argmaxes through the classifier's screen where a pass needs no more (the
     * large model alone; speculative decoding, and BiLD with --rollback below ln 2, e.g. --exact:
     * verify_req_t.argmax_only); its int8 copy is made here, with the loading */
    if (tfl && temperature == 0) transformer_prepare_greedy(tfl);
    if ((tfs && !(g.dr = drafter_new(tfs, smp_s, temperature, eos, bos))) ||
        (tfl && !(g.vf = verifier_new(tfl, smp_l, temperature)))) {
        fprintf(stderr, "bild %s: out of memory\n", cmd);
        goto done;
    }
    g.base.vocab_size = V, g.base.stop_a = eos, g.base.stop_b = bos;
    policy_t *probe = policy_new(&g.base, &bos, 1, err, sizeof err); /* checks the parameters once, up front */
    if (!probe) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        rc = EXIT_USAGE;
        goto done;
    }
    policy_destroy(&probe);
    if (!quiet)
    {
        char where[512] = "both workers remote", ds[240], dl[240];
        if (be_l)
            snprintf(where, sizeof where, "small on %s, large on %s", cli_backend_desc(be, ds, sizeof ds),
                     cli_backend_desc(be_l, dl, sizeof dl));
        else if (be) snprintf(where, sizeof where, "%s", cli_backend_desc(be, ds, sizeof ds));
        if (Lg.m || S.m) { /* where the weights sit in memory (CPU models) */
            char pl[160], ps[160];
            size_t k = strlen(where);
            cli_pages_desc(&Lg, large_dev, pl, sizeof pl), cli_pages_desc(&S, small_dev, ps, sizeof ps);
            if (*pl) snprintf(where + k, sizeof where - k, "; large model: %s", pl), k = strlen(where);
            if (*ps) snprintf(where + k, sizeof where - k, "; small model: %s", ps);
        }
        fprintf(stderr, "bild: mode %s%s%s%s; small %s, large %s; fallback %.2f, rollback %.2f, max-small %d; %s; "
                        "seed %llu\n", policy_mode_name(mode), faithful ? " (faithful)" : "", direct ? " (direct)" : "",
                overlap ? " with overlap" : "", small_path ? small_path : small_ep ? small_ep : "-",
                large_path ? large_path : large_ep ? large_ep : "-", alpha_fb, alpha_rb, g.base.max_small, where,
                (unsigned long long)seed);
    }
    if (req_f && parallel > 1 && (tfs || tfl)) { /* in-process models: worker threads on inproc:// */
        transformer_t *tfx[2] = {tfs, tfl};
        const char *paths[2] = {small_path, large_path}, *wdev[2] = {small_dev, large_dev};
        pthread_mutex_init(&inproc_mu, NULL);
        inproc_mu_made = 1;
        if (!g.zctx && !(g.zctx = zmq_ctx_new())) {
            fprintf(stderr, "bild %s: cannot start ZeroMQ\n", cmd);
            goto done;
        }
        for (int i = 0; i < 2; i++) {
            if (!tfx[i]) continue;
            inproc_opts_t io = {.zctx = g.zctx, .role = i ? ROLE_LARGE : ROLE_SMALL, .tf = tfx[i], .fingerprint = g.fp,
                                .model = paths[i], .device = wdev[i], .max_sessions = parallel, .mu = &inproc_mu};
            if (!(inw[i] = inproc_worker_start(&io, inproc_ep[i], sizeof inproc_ep[i], err, sizeof err))) {
                fprintf(stderr, "bild %s: %s\n", cmd, err);
                goto done;
            }
        }
        if (inw[0]) g.small_ep = inproc_ep[0];
        if (inw[1]) g.large_ep = inproc_ep[1];
        g.inproc = 1;
    }
    if (req_f) {
        int failed = gen_serve(&g, req_f, requests != NULL, parallel);
        if (!quiet && (inw[0] || inw[1])) {
            long nb[2] = {0, 0}, nr[2] = {0, 0};
            for (int i = 0; i < 2; i++)
                if (inw[i]) inproc_worker_batches(inw[i], &nb[i], &nr[i]);
            fprintf(stderr, "bild %s: in-process workers: %ld drafts of several requests ran together in %ld lockstep "
                            "runs, %ld verifications in %ld batched passes\n", cmd, nr[0], nb[0], nr[1], nb[1]);
        }
        rc = failed == 0 ? EXIT_OK : EXIT_RUNTIME;
        if (failed < 0) fprintf(stderr, "bild %s: cannot write the output: %s\n", cmd, strerror(errno));
        goto done;
    }
    int r = gen_one(&g, prompt, &g.base, 0, NULL, err, sizeof err);
    if (r != GEN_OK) fprintf(stderr, "bild %s: %s\n", cmd, err);
    rc = gen_exit(r);
done:
    inproc_worker_stop(&inw[0]);
    inproc_worker_stop(&inw[1]);
    if (inproc_mu_made) pthread_mutex_destroy(&inproc_mu);
    if (req_f && req_f != stdin) fclose(req_f);
    free(prompt_buf);
    free(skey);
    free(lkey);
    drafter_destroy(&g.dr);
    verifier_destroy(&g.vf);
    sampler_destroy(&smp_s);
    sampler_destroy(&smp_l);
    transformer_destroy(&tfs);
    transformer_destroy(&tfl);
    backend_destroy(&be_l);
    backend_destroy(&be);
    cli_loaded_free(&S);
    cli_loaded_free(&Lg);
    tokenizer_destroy(&own_tok);
    remote_destroy(&g.rs);
    remote_destroy(&g.rl);
    if (g.zctx) zmq_ctx_term(g.zctx);
    return rc;
}
