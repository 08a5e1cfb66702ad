/* commands.h - the entry point of each `bild COMMAND`, where cli/bild.c
 * finds them. Each takes the arguments after the command's name and returns
 * the process exit status (cli/cli.h). A command lives with what it runs:
 *
 *   run           cli/run.c            one model, text to stdout
 *   generate      coordinator/main.c   the coordinator: BiLD, its baselines, serving
 *   small-worker  small_worker/main.c  the small model's worker process
 *   large-worker  large_worker/main.c  the large model's worker process
 *   keygen        cli/keygen.c         CURVE key pairs
 *   align-data    align/align.c        a calibration corpus from the large model
 *   align-eval    align/align.c        how well a small model agrees with a large one
 *   bleu          eval/bleu_cli.c      corpus BLEU (sacreBLEU's), test-set segments from .sgm/.xml
 */
#ifndef BILD_COMMANDS_H
#define BILD_COMMANDS_H

int cmd_run(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_small_worker(int argc, char **argv);
int cmd_large_worker(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_align_data(int argc, char **argv);
int cmd_align_eval(int argc, char **argv);
int cmd_bleu(int argc, char **argv);

#endif
