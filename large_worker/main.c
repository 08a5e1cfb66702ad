/* main.c - `bild large-worker`: the large model's worker process. The
 * shared start-up (command line, device, model, socket) is cli/worker.c;
 * this file gives it the large model's handlers (server.c): verification,
 * batched across sessions, and the acceptance of spec sampling when the
 * small model's distributions come over the data plane.
 */
#include <stdio.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/worker.h"
#include "large_worker/server.h"
#include "large_worker/t5_server.h"

static large_server_t ls; /* one per process */

static int large_setup(const worker_setup_t *ws, void **ctx) {
    ls = (large_server_t){.vocab = ws->cfg->vocab_size, .tf = ws->tf, .plane = ws->plane,
                          .timeout_ms = BILD_PLANE_TIMEOUT_MS};
    *ctx = &ls;
    return EXIT_OK;
}

static void large_finish(const char *cmd) {
    if (ls.batches)
        fprintf(stderr, "bild %s: %ld verifications of several sessions ran together in %ld passes\n", cmd, ls.batched,
                ls.batches);
    large_server_free(&ls);
}

int cmd_large_worker(int argc, char **argv) {
    static const worker_kind_t kind = {
        .cmd = "large-worker", .name = "large worker", .role = ROLE_LARGE,
        .handle = large_server_handle, .can_batch = large_server_can_batch, .run_batch = large_server_run_batch,
        .session_new = large_server_session_new, .session_free = large_server_session_free,
        .t5_handle = large_t5_handle, .t5_session_new = large_t5_session_new, .t5_session_free = large_t5_session_free,
        .setup = large_setup, .finish = large_finish};
    return worker_main(argc, argv, &kind);
}
