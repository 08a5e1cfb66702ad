/* test_proto.c - the control-plane messages: every type round-trips through
 * msgpack unchanged; malformed input (another version, an unknown type,
 * trailing bytes, every truncation, values out of range, NaN, a
 * distribution of the wrong size) is refused with an error code; and
 * 300,000 random corruptions of valid messages never crash the decoder
 * (run under AddressSanitizer in CI) and never yield a message that breaks
 * the documented limits. */
#include <string.h>

#include "proto/proto.h"
#include "tests/test.h"

#define V 50

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static proto_buf_t enc[32];
static int n_enc = 0;

static void keep(proto_buf_t *b) { enc[n_enc++] = *b, *b = (proto_buf_t){0}; }

int main(void) {
    proto_buf_t b = {0};
    proto_msg_t m;
    float probs[3 * V];
    for (int i = 0; i < 3 * V; i++) probs[i] = (float)(i % V) / (V * V);

    /* round trips */
    EXPECT(proto_encode_hello(&b, 7, ROLE_LARGE) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_OK && m.type == MSG_HELLO && m.id == 7 && m.role == ROLE_LARGE);
    proto_msg_free(&m), keep(&b);

    hello_reply_t h = {.role = ROLE_SMALL, .vocab_size = 32000, .seq_len = 256, .vocab_fingerprint = 0xfedcba9876543210ULL,
                       .caps = 5, .start_id = 0, .eos_id = 1};
    strcpy(h.model, "stories15M-small");
    EXPECT(proto_encode_hello_reply(&b, 8, &h) == 0);
    EXPECT(proto_decode(b.data, b.size, 0, &m) == PROTO_OK && m.type == MSG_HELLO_REPLY && m.hello.role == ROLE_SMALL &&
           !strcmp(m.hello.model, "stories15M-small") && m.hello.vocab_size == 32000 && m.hello.seq_len == 256 &&
           m.hello.vocab_fingerprint == 0xfedcba9876543210ULL && m.hello.caps == 5 && m.hello.start_id == 0 &&
           m.hello.eos_id == 1);
    proto_msg_free(&m), keep(&b);
    h.start_id = 32000; /* not a token of the vocabulary */
    EXPECT(proto_encode_hello_reply(&b, 8, &h) == 0 && proto_decode(b.data, b.size, 0, &m) == PROTO_E_FORMAT);
    proto_msg_free(&m), keep(&b);

    /* SOURCE: an encoder-decoder's source ids and decoder length */
    int srcids[4] = {7, 30, V - 1, 1};
    source_req_t sq = {.ids = srcids, .n = 4, .max_dec = 258};
    EXPECT(proto_encode_source(&b, 20, &sq) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_OK && m.type == MSG_SOURCE && m.id == 20 && m.source.n == 4 &&
           !memcmp(m.source.ids, srcids, sizeof srcids) && m.source.max_dec == 258);
    proto_msg_free(&m), keep(&b);
    srcids[1] = V; /* outside the vocabulary */
    EXPECT(proto_encode_source(&b, 21, &sq) == 0 && proto_decode(b.data, b.size, V, &m) == PROTO_E_RANGE);
    proto_msg_free(&m), keep(&b);
    srcids[1] = 30, sq.max_dec = 0;
    EXPECT(proto_encode_source(&b, 22, &sq) == 0 && proto_decode(b.data, b.size, V, &m) == PROTO_E_RANGE);
    proto_msg_free(&m), keep(&b);
    sq.max_dec = 10, sq.n = 0;
    EXPECT(proto_encode_source(&b, 23, &sq) == 0 && proto_decode(b.data, b.size, V, &m) == PROTO_E_RANGE);
    proto_msg_free(&m), keep(&b);

    int feed[5] = {1, 4, 9, 16, 25};
    draft_req_t dq = {.keep = 3, .feed = feed, .n_feed = 5, .k = 10, .alpha_fb = 0.6f, .want_probs = 1};
    EXPECT(proto_encode_draft_req(&b, 9, &dq) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_OK && m.type == MSG_DRAFT_REQ && m.draft_req.keep == 3 &&
           m.draft_req.n_feed == 5 && !memcmp(m.draft_req.feed, feed, sizeof feed) && m.draft_req.k == 10 &&
           m.draft_req.alpha_fb == 0.6f && m.draft_req.want_probs == 1);
    proto_msg_free(&m);
    EXPECT(proto_decode(b.data, b.size, 20, &m) == PROTO_E_RANGE); /* token 25 outside a vocabulary of 20 */
    keep(&b);

    draft_res_t dr = {.n = 2, .tokens = {5, 6}, .max_p = {0.9f, 0.7f}, .end = DRAFT_STOP, .stop_token = 2,
                      .end_max_p = 0.8f, .passes = 3, .cached = 12, .probs = probs};
    EXPECT(proto_encode_draft_res(&b, 10, &dr, V) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_OK && m.type == MSG_DRAFT_RES && m.draft_res.n == 2 &&
           m.draft_res.tokens[1] == 6 && m.draft_res.max_p[0] == 0.9f && m.draft_res.end == DRAFT_STOP &&
           m.draft_res.stop_token == 2 && m.draft_res.passes == 3 && m.draft_res.cached == 12 && m.draft_res.probs &&
           !memcmp(m.draft_res.probs, probs, sizeof(float) * 3 * V));
    proto_msg_free(&m);
    EXPECT(proto_decode(b.data, b.size, V + 1, &m) == PROTO_E_RANGE); /* distribution rows of the wrong length */
    EXPECT(proto_decode(b.data, b.size, 0, &m) != PROTO_OK);          /* none expected */
    keep(&b);

    int toks[4] = {7, 8, 9, 10};
    verify_req_t vq = {.pos = 17, .tokens = toks, .T = 4, .n_out = 3};
    EXPECT(proto_encode_verify_req(&b, 11, &vq) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_OK && m.verify_req.pos == 17 && m.verify_req.T == 4 &&
           m.verify_req.n_out == 3 && m.verify_req.tokens[3] == 10 && !m.verify_req.want_probs);
    proto_msg_free(&m), keep(&b);
    vq.n_out = 5; /* more outputs than tokens */
    EXPECT(proto_encode_verify_req(&b, 11, &vq) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_E_RANGE);
    proto_buf_free(&b);

    verify_res_t vr = {.n_out = 3, .argmax = {1, 2, 3}, .sampled = {1, 4, 3}, .nll = {0.5f, 2.5f, 0}};
    EXPECT(proto_encode_verify_res(&b, 12, &vr, V) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_OK && m.verify_res.n_out == 3 && m.verify_res.sampled[1] == 4 &&
           m.verify_res.nll[1] == 2.5f && !m.verify_res.probs);
    proto_msg_free(&m), keep(&b);
    vr.nll[0] = NAN;
    EXPECT(proto_encode_verify_res(&b, 12, &vr, V) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_E_RANGE);
    proto_buf_free(&b);

    EXPECT(proto_encode_error(&b, 13, -3, "bad draft request") == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_OK && m.type == MSG_ERROR && m.err_code == -3 &&
           !strcmp(m.err_text, "bad draft request"));
    proto_msg_free(&m), keep(&b);
    EXPECT(proto_encode_simple(&b, 14, MSG_PING) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_OK && m.type == MSG_PING && m.id == 14);
    proto_msg_free(&m), keep(&b);

    /* the data-plane fields: trailing, only when used */
    draft_req_t dp = {.keep = 1, .feed = feed, .n_feed = 1, .k = 4, .alpha_fb = 0, .want_probs = 1, .plane_send = 1};
    EXPECT(proto_encode_draft_req(&b, 15, &dp) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_OK && m.draft_req.plane_send == 1 && m.draft_req.want_probs);
    proto_msg_free(&m), keep(&b);
    dp.want_probs = 0; /* distributions over the plane that were never asked for */
    EXPECT(proto_encode_draft_req(&b, 15, &dp) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_E_RANGE);
    proto_buf_free(&b);
    verify_req_t va = {.pos = 3, .tokens = toks, .T = 4, .n_out = 3, .want_probs = 1, .accept_here = 1,
                       .plane_rows = 2, .bonus = 1, .rng = 0xfedcba9876543210ULL};
    EXPECT(proto_encode_verify_req(&b, 16, &va) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_OK && m.verify_req.accept_here && m.verify_req.plane_rows == 2 &&
           m.verify_req.bonus == 1 && m.verify_req.rng == 0xfedcba9876543210ULL);
    proto_msg_free(&m), keep(&b);
    va.plane_rows = 4; /* more rows than positions */
    EXPECT(proto_encode_verify_req(&b, 16, &va) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_E_RANGE);
    proto_buf_free(&b);
    verify_res_t vd = {.n_out = 3, .argmax = {1, 2, 3}, .sampled = {1, 4, 3}, .nll = {0.5f, 2.5f, 0},
                       .accept_done = 1, .accept_m = 2, .accept_z = 9, .rng = 77};
    EXPECT(proto_encode_verify_res(&b, 17, &vd, V) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_OK && m.verify_res.accept_done && m.verify_res.accept_m == 2 &&
           m.verify_res.accept_z == 9 && m.verify_res.rng == 77);
    proto_msg_free(&m), keep(&b);
    vd.accept_m = 3; /* a rejection past the chunk */
    EXPECT(proto_encode_verify_res(&b, 17, &vd, V) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_E_RANGE);
    vd.accept_m = 1, vd.accept_z = V; /* a token outside the vocabulary */
    EXPECT(proto_encode_verify_res(&b, 17, &vd, V) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_E_RANGE);
    proto_buf_free(&b);
    session_req_t se = {.temperature = 0.8f, .top_p = 1, .seed = 1ULL << 63};
    EXPECT(proto_encode_session(&b, 18, &se) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_OK && m.type == MSG_SESSION && m.session.temperature == 0.8f &&
           m.session.seed == 1ULL << 63);
    proto_msg_free(&m), keep(&b);
    se.top_p = 1.5f;
    EXPECT(proto_encode_session(&b, 18, &se) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_E_RANGE);
    proto_buf_free(&b);
    plane_req_t pq = {.op = PLANE_OP_OPEN, .kind = 2, .rank = 1, .has_id = 1};
    for (int i = 0; i < PROTO_PLANE_ID; i++) pq.id[i] = (unsigned char)(i * 7);
    EXPECT(proto_encode_plane_req(&b, 19, &pq) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_OK && m.plane_req.op == PLANE_OP_OPEN && m.plane_req.rank == 1 &&
           m.plane_req.has_id && !memcmp(m.plane_req.id, pq.id, PROTO_PLANE_ID));
    proto_msg_free(&m), keep(&b);
    pq.rank = 2; /* two ranks only */
    EXPECT(proto_encode_plane_req(&b, 19, &pq) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_E_RANGE);
    proto_buf_free(&b);
    plane_res_t pr = {.device = "cuda:1", .uuid = "GPU-1234", .host = "h/boot", .nccl = 1, .endpoint = "ipc:///x"};
    EXPECT(proto_encode_plane_res(&b, 20, &pr) == 0);
    EXPECT(proto_decode(b.data, b.size, V, &m) == PROTO_OK && !strcmp(m.plane_res.device, "cuda:1") &&
           !strcmp(m.plane_res.uuid, "GPU-1234") && m.plane_res.nccl == 1 && !m.plane_res.has_id &&
           !strcmp(m.plane_res.endpoint, "ipc:///x"));
    proto_msg_free(&m), keep(&b);

    /* another version, an unknown type, trailing bytes, every truncation */
    unsigned char raw[4096];
    memcpy(raw, enc[0].data, enc[0].size);
    raw[1] = PROTO_VERSION + 1; /* [fixarray, version ...]: the next version */
    EXPECT(proto_decode(raw, enc[0].size, V, &m) == PROTO_E_VERSION && m.version == PROTO_VERSION + 1);
    /* the session id: carried by every message of a buffer, echoed by a decode */
    {
        proto_buf_t s = {.session_id = 0xfedcba9876543210ULL};
        EXPECT(proto_encode_simple(&s, 5, MSG_BYE) == 0 && s.session_id == 0xfedcba9876543210ULL);
        EXPECT(proto_decode(s.data, s.size, V, &m) == PROTO_OK && m.type == MSG_BYE && m.id == 5 &&
               m.session_id == 0xfedcba9876543210ULL);
        proto_msg_free(&m);
        EXPECT(proto_encode_session(&s, 6, &(session_req_t){.temperature = 1, .top_p = 1, .seed = 3}) == 0);
        EXPECT(proto_decode(s.data, s.size, V, &m) == PROTO_OK && m.session_id == 0xfedcba9876543210ULL &&
               m.session.seed == 3);
        proto_msg_free(&m);
        proto_buf_free(&s);
        /* version 1 framing (no session id): refused as another version, not misread */
        unsigned char v1[] = {0x93, 0x01, MSG_PING, 0x07};
        EXPECT(proto_decode(v1, sizeof v1, V, &m) == PROTO_E_VERSION && m.version == 1);
        /* this version without the session id, or with a negative one: malformed */
        unsigned char nos[] = {0x93, PROTO_VERSION, MSG_PING, 0x07};
        EXPECT(proto_decode(nos, sizeof nos, V, &m) == PROTO_E_FORMAT);
        unsigned char neg[] = {0x94, PROTO_VERSION, MSG_PING, 0x07, 0xff};
        EXPECT(proto_decode(neg, sizeof neg, V, &m) == PROTO_E_FORMAT);
    }
    memcpy(raw, enc[n_enc - 1].data, enc[n_enc - 1].size);
    raw[2] = 99; /* type 99 */
    EXPECT(proto_decode(raw, enc[n_enc - 1].size, V, &m) == PROTO_E_TYPE);
    memcpy(raw, enc[0].data, enc[0].size);
    raw[enc[0].size] = 0xc0; /* a trailing nil */
    EXPECT(proto_decode(raw, enc[0].size + 1, V, &m) == PROTO_E_FORMAT);
    int truncations = 0;
    for (int e = 0; e < n_enc; e++)
        for (size_t cut = 0; cut < enc[e].size; cut++, truncations++) EXPECT(proto_decode(enc[e].data, cut, V, &m) != PROTO_OK);
    EXPECT(proto_decode("\x93\x01\x08", 3, V, &m) == PROTO_E_FORMAT); /* PING-shaped but no id */
    EXPECT(proto_decode("garbage", 7, V, &m) == PROTO_E_FORMAT);
    /* five bytes declaring an array of 2^32 - 1 elements: refused before any allocation */
    EXPECT(proto_decode("\xdd\xff\xff\xff\xff", 5, V, &m) == PROTO_E_FORMAT);
    EXPECT(proto_decode("\x94\x01\x08\x00\xdc\xff\xff", 7, V, &m) == PROTO_E_FORMAT);

    /* corruption: flip, overwrite, insert and delete bytes of valid messages */
    int decoded_ok = 0;
    static unsigned char buf[4096];
    for (int it = 0; it < 300000; it++) {
        const proto_buf_t *src = &enc[rnd() % n_enc];
        size_t n = src->size;
        memcpy(buf, src->data, n);
        for (int k = 1 + (int)(rnd() % 4); k > 0; k--) {
            size_t at = rnd() % n;
            switch (rnd() % 4) {
            case 0: buf[at] ^= (unsigned char)(1u << (rnd() % 8)); break;
            case 1: buf[at] = (unsigned char)rnd(); break;
            case 2:
                if (n + 1 < sizeof buf) memmove(buf + at + 1, buf + at, n - at), buf[at] = (unsigned char)rnd(), n++;
                break;
            default:
                if (n > 1) memmove(buf + at, buf + at + 1, n - at - 1), n--;
            }
        }
        if (proto_decode(buf, n, V, &m) == PROTO_OK) {
            decoded_ok++;
            /* whatever decodes keeps to the limits */
            if (m.type == MSG_DRAFT_RES) EXPECT(m.draft_res.n >= 0 && m.draft_res.n <= BILD_MAX_DRAFT);
            if (m.type == MSG_VERIFY_RES) EXPECT(m.verify_res.n_out >= 0 && m.verify_res.n_out <= BILD_MAX_DRAFT);
            if (m.type == MSG_DRAFT_REQ) EXPECT(m.draft_req.n_feed >= 1 && m.draft_req.feed[0] >= 0 && m.draft_req.feed[0] < V);
            proto_msg_free(&m);
        }
    }
    fprintf(stderr, "%d truncations refused; 300000 corruptions decoded without fault (%d still valid)\n", truncations,
            decoded_ok);
    /* fingerprints tell vocabularies apart, including by where pieces split */
    uint64_t a = proto_fingerprint_add(proto_fingerprint_add(PROTO_FP_INIT, "ab", 2), "c", 1);
    uint64_t c = proto_fingerprint_add(proto_fingerprint_add(PROTO_FP_INIT, "a", 1), "bc", 2);
    EXPECT(a != c);
    for (int e = 0; e < n_enc; e++) proto_buf_free(&enc[e]);
    return TEST_DONE("test_proto");
}
