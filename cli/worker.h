/* worker.h - the start-up both worker processes share: `bild small-worker`
 * and `bild large-worker` take the same command line, open the device, the
 * model and the socket the same way, and run the same serve loop
 * (proto/serve.h). What differs, the request handlers, comes from each
 * worker's own main.c (small_worker/main.c, large_worker/main.c) as a
 * worker_kind_t.
 */
#ifndef BILD_CLI_WORKER_H
#define BILD_CLI_WORKER_H

#include "model/model.h"
#include "model/transformer.h"
#include "proto/plane.h"
#include "proto/proto.h"
#include "proto/serve.h"

/* What a worker's setup gets, once the model is loaded on its device. */
typedef struct {
    const char *cmd;          /* "small-worker": for messages */
    const char *model;        /* --model as given */
    transformer_t *tf;        /* the model, ready to run (borrowed) */
    const model_config_t *cfg;
    plane_t **plane;          /* where the serve loop keeps the data plane */
    const char *draft_vocab;  /* --draft-vocab (NULL: the default) and --draft-top (0: all); small worker only */
    int draft_top;
    int dummy;                /* --dummy-weights */
} worker_setup_t;

typedef struct {
    const char *cmd;     /* "small-worker" */
    const char *name;    /* "small worker": log lines and the transport's */
    worker_role_t role;
    /* the request handlers (proto/serve.h) */
    serve_fn handle;
    serve_can_batch_fn can_batch; /* with run_batch: dropped by --no-batch */
    serve_batch_fn run_batch;
    serve_new_fn session_new;
    serve_free_fn session_free;
    /* the same for a T5 / mT5 model, on a t5_serve_t context (proto/t5_serve.h) */
    serve_fn t5_handle;
    serve_new_fn t5_session_new;
    serve_free_fn t5_session_free;
    /* Makes the handlers' context for the loaded model into *ctx. Returns
     * EXIT_OK, or an exit code after printing a message. */
    int (*setup)(const worker_setup_t *ws, void **ctx);
    /* After the serve loop: prints the worker's statistics, frees what its
     * handlers hold. */
    void (*finish)(const char *cmd);
} worker_kind_t;

/* The command: parses argv (after the command's name), serves until
 * SHUTDOWN or a signal. Returns the process exit status (cli/cli.h). */
int worker_main(int argc, char **argv, const worker_kind_t *kind);

#endif
