/* worker.c - the start-up both worker processes share (see worker.h): the
 * command line, the device, the model, the socket, signals, then the serve
 * loop (proto/serve.c) with the handlers the worker's own main.c gives.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cli/cli.h"
#include "cli/worker.h"
#include "model/t5.h"
#include "proto/t5_serve.h"
#include "proto/transport.h"

static const char *WORKER_HELP =
    "usage: bild small-worker|large-worker --model PATH --bind ENDPOINT [options]\n"
    "\n"
    "Serves one model to a coordinator (bild generate --small-endpoint /\n"
    "--large-endpoint) over ZeroMQ: the small worker drafts, the large worker\n"
    "verifies. Prints 'listening on ENDPOINT' on stderr when ready; exits on\n"
    "SIGINT, SIGTERM or a shutdown message. Many coordinators may share it:\n"
    "each connection is a session with its own KV cache and sampling stream,\n"
    "and the requests waiting at the same moment run together in one pass,\n"
    "each getting exactly what it would get alone. A session ends when its\n"
    "coordinator closes or its connection drops; one idle too long, or the\n"
    "least recently used when a new one needs its place, is evicted, and a\n"
    "later request of it gets an error saying so.\n"
    "\n"
    "  -m, --model PATH        llama2.c checkpoint or Hugging Face folder (a T5 / mT5\n"
    "                          one too: the coordinator sends each request's source,\n"
    "                          greedy decoding, CPU, no batching across sessions)\n"
    "  -z, --tokenizer PATH    its tokenizer (default: beside the model); its\n"
    "                          fingerprint is checked by the coordinator\n"
    "  -b, --bind ENDPOINT     ipc:///path or tcp://127.0.0.1:PORT\n"
    "      --allow-remote      allow a non-loopback tcp:// address (use CURVE)\n"
    "      --curve-key FILE    this worker's CURVE key pair (bild keygen): encrypt\n"
    "                          and authenticate every connection\n"
    "      --curve-allow FILE  public keys of the coordinators let in, one per line\n"
    "                          (required with --curve-key)\n"
    "      --heartbeat MS      connection heartbeat (default 1000)\n"
    "      --max-sessions N    sessions kept at once, one KV cache each (default 16);\n"
    "                          a new one beyond that evicts the least recently used\n"
    "      --session-idle S    evict a session idle for S seconds (default 600; 0 never)\n"
    "      --no-batch          serve each session's request in passes of its own\n"
    "                          (default: the requests of the sessions waiting at the\n"
    "                          same moment run together, each weight matrix read once\n"
    "                          per pass for all; the same results)\n"
    "      --draft-vocab FILE  small worker: the draft vocabulary (ranked token ids;\n"
    "                          default draft_vocab.txt beside the model if there is\n"
    "                          one; 'none': the full vocabulary; bild generate --help)\n"
    "      --draft-top K       small worker: use the first K ids of it (default all)\n"
    "  -j, --threads N         CPU threads (default: all online cores)\n"
    "  -d, --device DEV        where the model runs: cpu (default), cuda (GPU 0) or\n"
    "                          cuda:N (needs make CUDA=1); a device that cannot be used\n"
    "                          ends the worker at start-up with exit status 1\n"
    "      --dummy-weights     --model names a Hugging Face folder (or its config.json);\n"
    "                          the weights are random (seed 1), made on the device: serve\n"
    "                          a model's shape without its weights. Needs --tokenizer (or\n"
    "                          tokenizer.json in the folder): the coordinator checks it\n"
    "      --dummy-dtype T     the random matrices' type: bf16 (default), f16 or f32\n"
    "  -h, --help              this help\n"
    "\n"
    "exit status: 0 ok, 1 runtime failure (including a device that cannot be used),\n"
    "2 bad command line, 3 unreadable or invalid input file.\n";

static void backend_idle_hint(void *be) {
    if (((backend_t *)be)->idle) ((backend_t *)be)->idle(be);
}

/* Set by SIGINT/SIGTERM; the serve loop polls it. */
static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) { g_stop = sig; }

int worker_main(int argc, char **argv, const worker_kind_t *kind) {
    const char *cmd = kind->cmd;
    const char *model = NULL, *tokpath = NULL, *bind_ep = NULL, *curve_key = NULL, *curve_allow = NULL,
               *device = "cpu", *dtype_s = "bf16", *draft_vocab = NULL;
    int threads = 0, allow_remote = 0, heartbeat_ms = TRANSPORT_HEARTBEAT_MS, draft_top = 0, max_sessions = 16;
    float session_idle = 600;
    int no_batch = 0;
    cli_dummy_t dummy = {0};
    const opt_t opts[] = {
        {"-m", "--model", OPT_STR, &model, 0, 0, 0, NULL},
        {"-z", "--tokenizer", OPT_STR, &tokpath, 0, 0, 0, NULL},
        {"-b", "--bind", OPT_STR, &bind_ep, 0, 0, 0, NULL},
        {NULL, "--allow-remote", OPT_FLAG, &allow_remote, 0, 0, 0, NULL},
        {NULL, "--curve-key", OPT_STR, &curve_key, 0, 0, 0, NULL},
        {NULL, "--curve-allow", OPT_STR, &curve_allow, 0, 0, 0, NULL},
        {NULL, "--heartbeat", OPT_INT, &heartbeat_ms, 50, 600000, 0, NULL},
        {NULL, "--max-sessions", OPT_INT, &max_sessions, 1, 4096, 0, NULL},
        {NULL, "--session-idle", OPT_FLOAT, &session_idle, 0, 1e7, 0, NULL},
        {NULL, "--no-batch", OPT_FLAG, &no_batch, 0, 0, 0, NULL},
        {"-j", "--threads", OPT_INT, &threads, 1, 1024, 0, NULL},
        {"-d", "--device", OPT_STR, &device, 0, 0, 0, NULL},
        {NULL, "--dummy-weights", OPT_FLAG, &dummy.on, 0, 0, 0, NULL},
        {NULL, "--dummy-dtype", OPT_STR, &dtype_s, 0, 0, 0, NULL},
        {NULL, "--draft-vocab", OPT_STR, &draft_vocab, 0, 0, 0, NULL},
        {NULL, "--draft-top", OPT_INT, &draft_top, 1, 1 << 24, 0, NULL},
    };
    int pr = cli_parse(cmd, argc, argv, opts, (int)(sizeof opts / sizeof *opts), WORKER_HELP);
    if (pr) return pr > 0 ? EXIT_OK : EXIT_USAGE;
    if (kind->role == ROLE_LARGE && (draft_vocab || draft_top))
        return cli_usage_error(cmd, "--draft-vocab and --draft-top are for the small worker (the large model verifies "
                                    "over the full vocabulary)");
    if (!model) return cli_usage_error(cmd, "--model is required");
    if (!bind_ep) return cli_usage_error(cmd, "--bind is required");
    if (!curve_key != !curve_allow) return cli_usage_error(cmd, "--curve-key and --curve-allow go together");
    if (!allow_remote && !transport_is_local(bind_ep))
        return cli_usage_error(cmd, "refusing to bind %s: not a loopback or ipc:// address (pass --allow-remote "
                                    "to listen on the network, with CURVE keys)", bind_ep);
    if (cli_check_device_opts(cmd, &device, 1, dtype_s, &dummy)) return EXIT_USAGE;

    char err[1024], dir[4096] = "";
    int rc = EXIT_INPUT, refused = 0;
    cli_loaded_t L = {0};
    backend_t *be = NULL;
    transformer_t *tf = NULL;
    t5_model_t *t5m = NULL;
    tokenizer_t *t5tok = NULL;
    t5_serve_t t5s = {0};
    /* a T5 / mT5 folder gets the worker's encoder-decoder handlers (kind->t5_handle) */
    int t5 = dummy.on ? cli_dummy_dir(model, dir, sizeof dir, err, sizeof err) == 0 && t5_probe(dir)
                      : (snprintf(dir, sizeof dir, "%s", model), t5_probe(dir));
    if (t5 && (strcmp(device, "cpu") || draft_vocab || draft_top))
        return cli_usage_error(cmd, "a T5 / mT5 model runs on the CPU with the full vocabulary for now (drop %s)",
                               strcmp(device, "cpu") ? "--device" : "--draft-vocab/--draft-top");
    void *zctx = NULL;
    transport_server_t *srv = NULL;
    transport_keypair_t kp;
    char (*allowed)[TRANSPORT_KEY_TEXT + 1] = NULL;
    int n_allowed = 0;
    if (curve_key && (transport_load_keypair(curve_key, &kp, err, sizeof err) != 0 ||
                      (n_allowed = transport_load_public_keys(curve_allow, &allowed, err, sizeof err)) < 0)) {
        fprintf(stderr, "bild %s: %s\n", cmd, err);
        goto done;
    }
    if (allow_remote && !curve_key && !transport_is_local(bind_ep))
        fprintf(stderr, "bild %s: warning: listening on the network without CURVE: anyone who can reach %s can "
                        "use this worker (see launch/multi-host.md)\n", cmd, bind_ep);
    /* the device before the model: a GPU that cannot be used ends start-up at once */
    if (!(be = cli_open_backend(cmd, device, threads))) {
        rc = EXIT_RUNTIME;
        goto done;
    }
    plane_t *plane = NULL;
    void *ctx = NULL;
    serve_t sv = {.name = kind->name,
                  .handle = kind->handle,
                  .can_batch = no_batch ? NULL : kind->can_batch,
                  .run_batch = no_batch ? NULL : kind->run_batch,
                  .session_new = kind->session_new,
                  .session_free = kind->session_free,
                  .max_sessions = max_sessions,
                  .idle_s = session_idle,
                  .stop = &g_stop,
                  .idle = backend_idle_hint,
                  .idle_ctx = be,
                  .device = device,
                  .plane = &plane};
    char what[600];
    if (t5) {
        if (!(t5m = dummy.on ? t5_open_dummy(dir, dummy.dtype, CLI_DUMMY_SEED, err, sizeof err)
                             : t5_open(dir, err, sizeof err))) {
            fprintf(stderr, "bild %s: %s\n", cmd, err);
            goto done;
        }
        const t5_config_t *c = t5_config(t5m);
        char found[4096], tried[4096];
        const char *tp = tokpath ? tokpath : cli_default_tokenizer(dir, c->vocab_size, found, sizeof found, tried,
                                                                   sizeof tried) == 0 ? found : NULL;
        if (!tp) {
            fprintf(stderr, "bild %s: no --tokenizer given and none found next to the model (tried %s); pass "
                            "--tokenizer PATH\n", cmd, tried);
            goto done;
        }
        if (!(t5tok = cli_load_tokenizer(tp, c->vocab_size, c->decoder_start, c->eos, err, sizeof err))) {
            fprintf(stderr, "bild %s: %s\n", cmd, err);
            goto done;
        }
        t5s = (t5_serve_t){.m = t5m, .be = be};
        sv.handle = kind->t5_handle, sv.session_new = kind->t5_session_new, sv.session_free = kind->t5_session_free;
        sv.can_batch = NULL, sv.run_batch = NULL, sv.plane = NULL, sv.ctx = &t5s;
        sv.hello = (hello_reply_t){.role = kind->role, .vocab_size = c->vocab_size, .seq_len = T5_MAX_DEC,
                                   .caps = PROTO_CAP_ENCDEC, .start_id = c->decoder_start, .eos_id = c->eos,
                                   .vocab_fingerprint = cli_vocab_fingerprint(t5tok)};
        sv.vocab = c->vocab_size;
        snprintf(what, sizeof what, "%s, vocab %d, encoder-decoder", c->arch, c->vocab_size);
    } else {
        if (cli_load_model(cmd, model, tokpath, 0, &dummy, device, &L)) goto done;
        const model_config_t *c = model_config(L.m);
        rc = EXIT_RUNTIME;
        if (!(tf = transformer_new(be, c, model_weights(L.m), BILD_MAX_DRAFT, err, sizeof err))) {
            fprintf(stderr, "bild %s: %s\n", cmd, err);
            goto done;
        }
        const worker_setup_t ws = {.cmd = cmd, .model = model, .tf = tf, .cfg = c, .plane = &plane,
                                   .draft_vocab = draft_vocab, .draft_top = draft_top, .dummy = dummy.on};
        if ((rc = kind->setup(&ws, &ctx)) != EXIT_OK) goto done;
        sv.ctx = ctx;
        sv.hello = (hello_reply_t){.role = kind->role, .vocab_size = c->vocab_size, .seq_len = c->seq_len,
                                   .start_id = -1, .eos_id = c->eos_id,
                                   .vocab_fingerprint = cli_vocab_fingerprint(L.tok)};
        sv.vocab = c->vocab_size;
        char pages[160];
        cli_pages_desc(&L, device, pages, sizeof pages);
        snprintf(what, sizeof what, "vocab %d, context %d%s%s; %.1f MB of KV cache a session", c->vocab_size,
                 c->seq_len, *pages ? ", " : "", pages, (double)transformer_cache_bytes(tf) / 1e6);
    }
    rc = EXIT_RUNTIME;
    const char *name = kind->name;
    transport_server_opts_t so = {.endpoint = bind_ep, .allow_remote = allow_remote, .curve = curve_key ? &kp : NULL,
                                  .allowed = (const char(*)[TRANSPORT_KEY_TEXT + 1])allowed,
                                  .n_allowed = n_allowed, .heartbeat_ms = heartbeat_ms, .name = name};
    if (!(zctx = zmq_ctx_new()) || !(srv = transport_server_new(zctx, &so, &refused, err, sizeof err))) {
        fprintf(stderr, "bild %s: %s\n", cmd, zctx ? err : "cannot start ZeroMQ");
        rc = refused ? EXIT_USAGE : EXIT_RUNTIME;
        goto done;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sv.zctx = zctx;
    snprintf(sv.hello.model, sizeof sv.hello.model, "%s", model);
    char where[256];
    fprintf(stderr, "bild %s: %s (%s; %s%s%s; up to %d sessions): listening on %s\n", cmd, model, what,
            cli_backend_desc(be, where, sizeof where), dummy.on ? ", random weights" : "", curve_key ? ", CURVE" : "",
            max_sessions, bind_ep);
    rc = serve_loop(srv, &sv) == 0 ? EXIT_OK : EXIT_RUNTIME;
    fprintf(stderr, "bild %s: %s\n", cmd, g_stop ? "stopped by a signal" : "shut down");
    if (t5) fprintf(stderr, "bild %s: %ld sources encoded in %.1f ms\n", cmd, t5s.sources, t5s.encode_s * 1e3);
    else kind->finish(cmd);
done:
    transport_server_destroy(&srv);
    if (zctx) zmq_ctx_term(zctx);
    free(allowed);
    transformer_destroy(&tf);
    tokenizer_destroy(&t5tok);
    t5_close(t5m);
    backend_destroy(&be);
    cli_loaded_free(&L);
    return rc;
}
