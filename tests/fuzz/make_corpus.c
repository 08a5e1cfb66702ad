/* make_corpus.c - writes the seed corpus of the decoder fuzzer
 * (tests/fuzz/fuzz_proto.c): one valid encoding of every message type into
 * the folder given as argv[1], one file each. Distributions are for a
 * vocabulary of 7, one of the sizes the fuzz target decodes with.
 *
 *     build/fuzz/make_corpus build/fuzz/corpus
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "proto/proto.h"

#define V 7

static int fails = 0;

static void put(const char *dir, const char *name, int rc, proto_buf_t *b) {
    char path[4096];
    proto_msg_t m;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    /* a seed that does not decode would be a poor seed: check each one */
    if (rc != 0 || !b->data || proto_decode(b->data, b->size, V, &m) != PROTO_OK) {
        fprintf(stderr, "make_corpus: %s: encoding failed or does not decode\n", name);
        fails++;
        proto_buf_free(b);
        return;
    }
    proto_msg_free(&m);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->data, 1, b->size, f) != b->size || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: cannot write %s: %s\n", path, strerror(errno));
        fails++;
    }
    proto_buf_free(b);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "make_corpus: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    proto_buf_t b = {0};
    float probs[3 * V];
    for (int i = 0; i < 3 * V; i++) probs[i] = (float)(i % V + 1) / 28.0f; /* rows of 1/28 .. 7/28, sum 1 */

    put(dir, "hello", proto_encode_hello(&b, 1, ROLE_SMALL), &b);
    hello_reply_t h = {.role = ROLE_LARGE, .vocab_size = 32000, .seq_len = 256,
                       .vocab_fingerprint = 0x0123456789abcdefULL, .caps = 0, .start_id = -1, .eos_id = 2};
    snprintf(h.model, sizeof h.model, "models/stories15M/stories15M.bin");
    put(dir, "hello_reply", proto_encode_hello_reply(&b, 2, &h), &b);

    int feed[4] = {1, 3, 5, 6};
    draft_req_t dq = {.keep = 2, .feed = feed, .n_feed = 4, .k = 4, .alpha_fb = 0.4f, .want_probs = 1};
    put(dir, "draft_req", proto_encode_draft_req(&b, 3, &dq), &b);

    draft_res_t dr = {.n = 2, .tokens = {4, 5}, .max_p = {0.9f, 0.55f}, .end = DRAFT_FALLBACK, .stop_token = -1,
                      .end_max_p = 0.3f, .passes = 3, .cached = 9, .probs = NULL};
    put(dir, "draft_res", proto_encode_draft_res(&b, 4, &dr, V), &b);
    dr.end = DRAFT_STOP, dr.stop_token = 2, dr.end_max_p = 0.8f, dr.probs = probs; /* rows n + 1 */
    put(dir, "draft_res_probs", proto_encode_draft_res(&b, 5, &dr, V), &b);

    int toks[5] = {1, 2, 3, 4, 5};
    verify_req_t vq = {.pos = 3, .tokens = toks, .T = 5, .n_out = 3, .want_probs = 0};
    put(dir, "verify_req", proto_encode_verify_req(&b, 6, &vq), &b);

    verify_res_t vr = {.n_out = 3, .argmax = {1, 2, 6}, .sampled = {1, 3, 6}, .nll = {0.25f, 1.5f, 0}, .probs = NULL};
    put(dir, "verify_res", proto_encode_verify_res(&b, 7, &vr, V), &b);
    vr.probs = probs;
    put(dir, "verify_res_probs", proto_encode_verify_res(&b, 8, &vr, V), &b);

    put(dir, "error", proto_encode_error(&b, 9, PROTO_E_RANGE, "field out of range"), &b);
    put(dir, "ping", proto_encode_simple(&b, 10, MSG_PING), &b);
    put(dir, "pong", proto_encode_simple(&b, 11, MSG_PONG), &b);
    put(dir, "shutdown", proto_encode_simple(&b, 12, MSG_SHUTDOWN), &b);
    b.session_id = 0x8badf00ddeadbeefULL; /* a session id of full width */
    put(dir, "bye", proto_encode_simple(&b, 15, MSG_BYE), &b);
    b.session_id = 0;
    dq.plane_send = 1;
    put(dir, "draft_req_plane", proto_encode_draft_req(&b, 13, &dq), &b);
    vq.want_probs = 1, vq.accept_here = 1, vq.plane_rows = 2, vq.bonus = 1, vq.rng = 0x123456789abcdefULL;
    put(dir, "verify_req_accept", proto_encode_verify_req(&b, 14, &vq), &b);
    vr.probs = NULL, vr.accept_done = 1, vr.accept_m = 1, vr.accept_z = 5, vr.rng = 99;
    put(dir, "verify_res_accept", proto_encode_verify_res(&b, 15, &vr, V), &b);
    session_req_t se = {.temperature = 0.8f, .top_p = 0.9f, .seed = 7};
    put(dir, "session", proto_encode_session(&b, 16, &se), &b);
    plane_req_t pq = {.op = PLANE_OP_OPEN, .kind = 1, .rank = 1, .endpoint = "ipc:///tmp/bild-plane-x/plane"};
    put(dir, "plane_req", proto_encode_plane_req(&b, 17, &pq), &b);
    pq.kind = 2, pq.has_id = 1, pq.endpoint[0] = 0;
    for (int i = 0; i < PROTO_PLANE_ID; i++) pq.id[i] = (unsigned char)i;
    put(dir, "plane_req_id", proto_encode_plane_req(&b, 18, &pq), &b);
    plane_res_t pr = {.device = "cuda:1", .uuid = "GPU-00112233-4455-6677-8899-aabbccddeeff", .host = "node7/boot",
                      .nccl = 1, .endpoint = ""};
    put(dir, "plane_res", proto_encode_plane_res(&b, 19, &pr), &b);
    int src[5] = {3, 6, 0, 5, 1};
    source_req_t sq = {.ids = src, .n = 5, .max_dec = 258};
    put(dir, "source", proto_encode_source(&b, 20, &sq), &b);
    h.caps = PROTO_CAP_ENCDEC, h.start_id = 0, h.eos_id = 1;
    put(dir, "hello_reply_encdec", proto_encode_hello_reply(&b, 21, &h), &b);
    if (fails) return 1;
    printf("make_corpus: 21 seeds in %s\n", dir);
    return 0;
}
