/* main.c - `bild small-worker`: the small model's worker process. The
 * shared start-up (command line, device, model, socket) is cli/worker.c;
 * this file gives it the small model's handlers (server.c): drafting, with
 * the model's output layer cut to its draft vocabulary when it has one.
 */
#include <stdio.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/worker.h"
#include "small_worker/server.h"
#include "small_worker/t5_server.h"

static small_server_t ss; /* one per process */

static int small_setup(const worker_setup_t *ws, void **ctx) {
    char err[1024], dv_used[4096] = "";
    int dv_k = 0;
    if (!ws->dummy && (dv_k = cli_draft_vocab(ws->tf, ws->model, ws->draft_vocab, ws->draft_top, dv_used,
                                              sizeof dv_used, err, sizeof err)) < 0) {
        fprintf(stderr, "bild %s: %s\n", ws->cmd, err);
        return EXIT_INPUT;
    }
    if (dv_k) fprintf(stderr, "bild %s: drafts over %d tokens (%s)\n", ws->cmd, dv_k, dv_used);
    const model_config_t *c = ws->cfg;
    ss = (small_server_t){.vocab = c->vocab_size, .tf = ws->tf, .stop_a = c->eos_id, .stop_b = c->bos_id,
                          .plane = ws->plane};
    *ctx = &ss;
    return EXIT_OK;
}

static void small_finish(const char *cmd) {
    if (ss.batches)
        fprintf(stderr, "bild %s: %ld drafts of several sessions ran together in %ld lockstep runs\n", cmd, ss.batched,
                ss.batches);
}

int cmd_small_worker(int argc, char **argv) {
    static const worker_kind_t kind = {
        .cmd = "small-worker", .name = "small worker", .role = ROLE_SMALL,
        .handle = small_server_handle, .can_batch = small_server_can_batch, .run_batch = small_server_run_batch,
        .session_new = small_server_session_new, .session_free = small_server_session_free,
        .t5_handle = small_t5_handle, .t5_session_new = small_t5_session_new, .t5_session_free = small_t5_session_free,
        .setup = small_setup, .finish = small_finish};
    return worker_main(argc, argv, &kind);
}
