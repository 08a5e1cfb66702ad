/* cli.h - command-line plumbing shared by the bild subcommands: the exit
 * codes, a table-driven option parser with one-line errors, opening a model
 * with its tokenizer and a backend as the commands do, prompt and tokenizer
 * file helpers, and a UTF-8-safe text sink. */
#ifndef BILD_CLI_H
#define BILD_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

/* Exit codes; documented in --help. */
enum {
    EXIT_OK = 0,
    EXIT_RUNTIME = 1, /* failure while running (out of memory, write error) */
    EXIT_USAGE = 2,   /* bad command line */
    EXIT_INPUT = 3,   /* a file could not be read or is not valid */
    EXIT_FIT = 4,     /* the request does not fit the model (prompt longer than the context) */
    EXIT_WORKER = 5,  /* a remote worker could not be reached, refused the handshake, or failed */
};

typedef enum { OPT_FLAG, OPT_STR, OPT_INT, OPT_FLOAT, OPT_U64 } opt_kind_t;

typedef struct {
    const char *s, *l;  /* short ("-n") and long ("--max-tokens") names; either may be NULL */
    opt_kind_t kind;
    void *dst;          /* int* (FLAG, INT), const char** (STR), float* (FLOAT), uint64_t* (U64) */
    double lo, hi;      /* inclusive range for INT and FLOAT */
    int lo_open;        /* FLOAT: lo itself is excluded */
    int *seen;          /* set to 1 when given (may be NULL) */
} opt_t;

/* Parses argv[0..argc) against opts. Prints help and returns 1 for -h/--help;
 * prints "bild CMD: <what is wrong> (see bild CMD --help)" and returns -1 on
 * a bad command line; returns 0 otherwise. */
int cli_parse(const char *cmd, int argc, char **argv, const opt_t *opts, int n_opts, const char *help);

/* Prints "bild CMD: <message> (see bild CMD --help)"; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checks the spelling of a --device value: "cpu", "cuda" or "cuda:N"
 * (N in 0..255), as backend_new reads it. Whether the build has CUDA or the
 * machine a GPU is backend_new's business. Returns 0, or -1 with a message. */
int cli_check_device(const char *dev, char *err, size_t errlen);

/* A --dummy-dtype value: "f32", "bf16" or "f16". Returns 0, or -1. */
int cli_parse_dtype(const char *s, dtype_t *out);

/* Describes a backend for the statistics lines: "cpu/avx2, 8 threads" on
 * the CPU, "cuda:0 (GPU name and compute capability)" elsewhere. Returns buf. */
const char *cli_backend_desc(const backend_t *be, char *buf, size_t n);

/* The directory a --dummy-weights --model names: the directory itself, or
 * the folder of a path ending in config.json. Returns 0 with it in out, or -1
 * with a message when path is neither. */
int cli_dummy_dir(const char *path, char *out, size_t n, char *err, size_t errlen);

/* Reads a whole text file (no NUL bytes; at most 2 GiB) and its length
 * into *len (may be NULL). NULL with a message naming `what` and the file on
 * failure. Caller frees. */
char *cli_read_text_file(const char *path, const char *what, size_t *len, char *err, size_t errlen);

/* Reads a text prompt file (one trailing newline dropped). NULL with a
 * message naming the file on failure. Caller frees. */
char *cli_read_prompt_file(const char *path, char *err, size_t errlen);

/* The tokenizer of a model: DIR/tokenizer.json for a Hugging Face directory,
 * else tokenizer.bin, then tok<vocab>.bin next to the file. Returns 0 with
 * the path in out, or -1 with the paths tried in tried. */
int cli_default_tokenizer(const char *model, int vocab, char *out, size_t n, char *tried, size_t tn);

/* Loads a tokenizer: a .json path as a Hugging Face tokenizer.json (at most
 * vocab pieces; bos/eos >= 0 override its own, as config.json says), any
 * other as a llama2.c tokenizer.bin of exactly vocab pieces. NULL with a
 * one-line message on failure. */
tokenizer_t *cli_load_tokenizer(const char *path, int vocab, int bos, int eos, char *err, size_t errlen);

/* The vocabulary fingerprint the workers' handshake carries: FNV-1a over
 * every piece's decoded bytes (proto_fingerprint_add). */
uint64_t cli_vocab_fingerprint(const tokenizer_t *tok);

/* The small model's draft vocabulary (docs/engine.md, "Draft vocabulary"):
 * spec is a file of token ids ranked by frequency (one or more per line,
 * '#' starts a comment), "none" (the full vocabulary), or NULL: the file
 * draft_vocab.txt in the model's folder (a Hugging Face directory) or beside
 * its file, when there is one. The first top ids (top <= 0: all of them)
 * become tf's head (transformer_set_head). Returns the head size (0: full
 * vocabulary) with the file used in used (may be NULL; "" when none), or -1
 * with a message naming the file. */
int cli_draft_vocab(transformer_t *tf, const char *model_path, const char *spec, int top, char *used, size_t usedlen,
                    char *err, size_t errlen);

/* A model file with its tokenizer, as the commands open them. */
typedef struct {
    model_file_t *m;
    tokenizer_t *tok;
    long huge;        /* bytes of weights in huge pages (model_hugepages), 0 none, -1 the copy failed */
    const char *huge_why; /* why none, when huge <= 0 and the model is on the CPU */
    int dummy;            /* random weights, made by the backend (hostmem_alloc: large tensors in huge pages) */
} cli_loaded_t;

void cli_loaded_free(cli_loaded_t *l);

/* --dummy-weights: on, and the type of the random matrices */
typedef struct {
    int on;
    dtype_t dtype;
} cli_dummy_t;

/* The seed of --dummy-weights: fixed, so that runs (and the workers of one
 * launch) hold the same model. */
#define CLI_DUMMY_SEED 1

/* Opens a model and its tokenizer (tokpath, or the default beside the
 * model; if `optional`, a missing default is not an error). With dummy->on,
 * path names a config.json's folder and the weights are random. A model for
 * the CPU (device NULL or "cpu") has its weights moved into huge pages
 * (model_hugepages; BILD_HUGEPAGES=0 keeps the file mapping). Prints a
 * one-line message and returns -1 on failure. */
int cli_load_model(const char *cmd, const char *path, const char *tokpath, int optional, const cli_dummy_t *dummy,
                   const char *device, cli_loaded_t *l);

/* "weights in huge pages (N MB)" or "weights in 4 KiB pages (why)" for a
 * CPU model's summary line; "" for a GPU's. */
const char *cli_pages_desc(const cli_loaded_t *l, const char *device, char *buf, size_t n);

/* Encodes the prompt (text or file) with BOS. Returns the ids (caller frees)
 * and their count, or NULL after printing a message; *rc gets the exit code. */
int *cli_encode_prompt(const char *cmd, const tokenizer_t *tok, const char *text, const char *file, int *n, int *rc);

/* 1 if a prompt of n_ids tokens fits c's context; else prints a message
 * ("the <which>model's context", which "" or a name and a space) and
 * returns 0. */
int cli_prompt_fits(const char *cmd, int n_ids, const model_config_t *c, const char *which);

/* Checks --device (devs[0]; --small-device, --large-device after it) and
 * --dummy-dtype spellings (usage errors, exit 2); sets dummy->dtype. */
int cli_check_device_opts(const char *cmd, const char *const *devs, int n_devs, const char *dtype_s,
                          cli_dummy_t *dummy);

/* backend_new with the command's one-line message on failure. */
backend_t *cli_open_backend(const char *cmd, const char *device, int threads);

/* A seed from the clock and the process id (printed by the commands). */
uint64_t cli_clock_seed(void);

/* Text output: streams to stdout, or collects (for --json). Bytes go through
 * a UTF-8 sanitiser, so what comes out is valid UTF-8. */
typedef struct {
    utf8_stream_t u8;
    int stream;
    char *text;
    size_t len, cap;
    int write_error;
} sink_t;

void sink_bytes(sink_t *s, const char *b, size_t n);
/* Flushes a pending partial character (as U+FFFD). */
void sink_finish(sink_t *s);
void sink_free(sink_t *s);
/* Decodes tokens[0..n) (prev is the token before the first) into the sink. */
void sink_tokens(sink_t *s, const tokenizer_t *tok, int prev, const int *tokens, int n);

#endif
