/* bild.c - the `bild` executable: names the commands and hands each its
 * arguments. Every command's code lives with what it runs (cli/commands.h
 * says where); this file only dispatches.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"

#define BILD_VERSION "0.1.0"

static const char *MAIN_HELP =
    "usage: bild COMMAND [options]\n"
    "\n"
    "bild runs language models on the CPU (or a GPU: --device cuda:N, with make\n"
    "CUDA=1), and the Big Little Decoder: a small model drafts, a large one checks.\n"
    "\n"
    "commands:\n"
    "  run        generate text with one model (bild run --help)\n"
    "  generate   BiLD with a small and a large model (bild generate --help)\n"
    "  small-worker, large-worker\n"
    "             serve a model to a coordinator over ZeroMQ (bild small-worker --help)\n"
    "  keygen     make a CURVE key pair for encrypted, authenticated connections\n"
    "  align-data write a calibration corpus with the large model (bild align-data --help)\n"
    "  align-eval compare a small and a large model on a text (bild align-eval --help)\n"
    "  bleu       corpus BLEU as sacreBLEU computes it; test-set segments from\n"
    "             WMT .sgm / IWSLT .xml files (bild bleu --help)\n"
    "\n"
    "  bild --version   print the version\n";

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} COMMANDS[] = {
    {"run", cmd_run},
    {"generate", cmd_generate},
    {"small-worker", cmd_small_worker},
    {"large-worker", cmd_large_worker},
    {"keygen", cmd_keygen},
    {"align-data", cmd_align_data},
    {"align-eval", cmd_align_eval},
    {"bleu", cmd_bleu},
};

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(MAIN_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) return puts("bild " BILD_VERSION) < 0 ? EXIT_RUNTIME : EXIT_OK;
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 2, argv + 2);
    fprintf(stderr, "bild: unknown command '%s' (see bild --help)\n", argv[1]);
    return EXIT_USAGE;
}
