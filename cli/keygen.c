/* keygen.c - `bild keygen PREFIX`: a CURVE key pair for encrypted,
 * authenticated connections between the coordinator and the workers
 * (proto/transport.h; launch/multi-host.md).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "proto/transport.h"

static const char *KEYGEN_HELP =
    "usage: bild keygen PREFIX\n"
    "\n"
    "Makes a CURVE key pair: PREFIX.key (public and secret key; mode 0600, keep\n"
    "it on the machine that uses it) and PREFIX.pub (the public key, to give to\n"
    "peers). Refuses to overwrite existing files. Workers take --curve-key\n"
    "PREFIX.key and --curve-allow with the coordinators' .pub keys; the\n"
    "coordinator takes --curve-key and each worker's .pub. See\n"
    "launch/multi-host.md.\n";

int cmd_keygen(int argc, char **argv) {
    if (argc == 1 && (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"))) return fputs(KEYGEN_HELP, stdout), EXIT_OK;
    if (argc != 1 || argv[0][0] == '-') return cli_usage_error("keygen", "give one PREFIX for the two key files");
    transport_keypair_t kp;
    char err[1024];
    if (transport_keygen(&kp) != 0) {
        fprintf(stderr, "bild keygen: this libzmq was built without CURVE support\n");
        return EXIT_RUNTIME;
    }
    if (transport_write_keys(argv[0], &kp, err, sizeof err) != 0) {
        fprintf(stderr, "bild keygen: %s\n", err);
        return EXIT_INPUT;
    }
    fprintf(stderr, "bild keygen: wrote %s.key (secret) and %s.pub (public key %s)\n", argv[0], argv[0], kp.pub);
    return EXIT_OK;
}
