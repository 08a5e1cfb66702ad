/* fuzz_proto.c - libFuzzer target on the message decoder (proto_decode).
 *
 * Every input is decoded with the three vocabulary sizes a peer may expect
 * (0: no distribution allowed, 7: a tiny one, 32000: stories15M's). The
 * decoder must never crash, leak or read out of bounds (AddressSanitizer,
 * UndefinedBehaviorSanitizer), and a message it accepts must survive a round
 * trip: re-encoded with its type's encoder and decoded again, it gives the
 * same type, id and fields; otherwise the target traps. The accepted message
 * must also respect the documented limits.
 *
 * Build and run: `make fuzz` (build/fuzz/fuzz_proto, seed corpus in
 * build/fuzz/corpus from tests/fuzz/make_corpus.c), then
 *     build/fuzz/fuzz_proto -runs=1000000 build/fuzz/corpus
 * tests/test_fuzz.sh runs a short fixed number of executions.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/proto.h"

#define CHECK(c)                                                                 \
    do {                                                                         \
        if (!(c)) __builtin_trap();                                              \
    } while (0)

/* Bitwise equality of float arrays (NaN is refused by the decoder, and the
 * encoders write f32 exactly as decoded, so -0.0 must stay -0.0 too). */
static int same_floats(const float *a, const float *b, size_t n) { return n == 0 || !memcmp(a, b, n * sizeof(float)); }

/* The limits proto.h promises for an accepted message. */
static void check_limits(const proto_msg_t *m, int vocab) {
    int V = vocab > 0 ? vocab : PROTO_MAX_VOCAB;
    switch (m->type) {
    case MSG_HELLO: CHECK(m->role == ROLE_SMALL || m->role == ROLE_LARGE); break;
    case MSG_HELLO_REPLY:
        CHECK(m->hello.role == ROLE_SMALL || m->hello.role == ROLE_LARGE);
        CHECK(m->hello.vocab_size >= 1 && m->hello.vocab_size <= PROTO_MAX_VOCAB);
        CHECK(strlen(m->hello.model) <= PROTO_MAX_TEXT);
        CHECK(m->hello.start_id >= -1 && m->hello.start_id < m->hello.vocab_size);
        CHECK(m->hello.eos_id >= -1 && m->hello.eos_id < m->hello.vocab_size);
        break;
    case MSG_DRAFT_REQ: {
        const draft_req_t *r = &m->draft_req;
        CHECK(r->n_feed >= 1 && r->n_feed <= PROTO_MAX_FEED && r->feed);
        CHECK(r->k >= 1 && r->k <= BILD_MAX_DRAFT && r->keep >= 0);
        CHECK(r->alpha_fb >= 0 && r->alpha_fb <= 1 && (r->want_probs == 0 || r->want_probs == 1));
        for (int i = 0; i < r->n_feed; i++) CHECK(r->feed[i] >= 0 && r->feed[i] < V);
        break;
    }
    case MSG_DRAFT_RES: {
        const draft_res_t *r = &m->draft_res;
        CHECK(r->n >= 0 && r->n <= BILD_MAX_DRAFT);
        CHECK(r->end == DRAFT_LIMIT || r->end == DRAFT_FALLBACK || r->end == DRAFT_STOP);
        for (int i = 0; i < r->n; i++) CHECK(r->tokens[i] >= 0 && r->tokens[i] < V && r->max_p[i] >= 0 && r->max_p[i] <= 1);
        CHECK(!r->probs || vocab > 0);
        break;
    }
    case MSG_VERIFY_REQ: {
        const verify_req_t *r = &m->verify_req;
        CHECK(r->T >= 1 && r->T <= PROTO_MAX_FEED && r->tokens);
        CHECK(r->n_out >= 1 && r->n_out <= BILD_MAX_DRAFT && r->n_out <= r->T);
        for (int i = 0; i < r->T; i++) CHECK(r->tokens[i] >= 0 && r->tokens[i] < V);
        CHECK(!r->accept_here || (r->want_probs && r->plane_rows >= 0 && r->plane_rows <= r->n_out));
        break;
    }
    case MSG_VERIFY_RES: {
        const verify_res_t *r = &m->verify_res;
        CHECK(r->n_out >= 0 && r->n_out <= BILD_MAX_DRAFT);
        CHECK(!r->accept_done || (r->accept_m >= 0 && r->accept_m < r->n_out && r->accept_z >= -1 && r->accept_z < V));
        for (int i = 0; i < r->n_out; i++) CHECK(r->argmax[i] >= 0 && r->argmax[i] < V && r->sampled[i] >= 0 && r->sampled[i] < V);
        CHECK(!r->probs || vocab > 0);
        break;
    }
    case MSG_ERROR: CHECK(strlen(m->err_text) <= PROTO_MAX_TEXT); break;
    case MSG_SESSION:
        CHECK(m->session.temperature >= 0 && m->session.temperature <= 100);
        CHECK(m->session.top_p >= 0 && m->session.top_p <= 1);
        break;
    case MSG_SOURCE:
        CHECK(m->source.n >= 1 && m->source.n <= PROTO_MAX_FEED && m->source.ids && m->source.max_dec >= 1);
        for (int i = 0; i < m->source.n; i++) CHECK(m->source.ids[i] >= 0 && m->source.ids[i] < V);
        break;
    case MSG_PLANE_REQ:
        CHECK(m->plane_req.op >= PLANE_OP_QUERY && m->plane_req.op <= PLANE_OP_CLOSE);
        CHECK(m->plane_req.kind >= 0 && m->plane_req.kind <= 2 && m->plane_req.rank >= 0 && m->plane_req.rank <= 1);
        CHECK(strlen(m->plane_req.endpoint) <= PROTO_MAX_TEXT);
        break;
    case MSG_PLANE_RES:
        CHECK(strlen(m->plane_res.device) <= PROTO_MAX_TEXT && strlen(m->plane_res.endpoint) <= PROTO_MAX_TEXT);
        CHECK(m->plane_res.nccl == 0 || m->plane_res.nccl == 1);
        break;
    case MSG_PING:
    case MSG_PONG:
    case MSG_SHUTDOWN:
    case MSG_BYE: break;
    default: __builtin_trap(); /* an accepted message of an unknown type */
    }
}

static int encode(proto_buf_t *b, const proto_msg_t *m, int vocab) {
    switch (m->type) {
    case MSG_HELLO: return proto_encode_hello(b, m->id, m->role);
    case MSG_HELLO_REPLY: return proto_encode_hello_reply(b, m->id, &m->hello);
    case MSG_DRAFT_REQ: return proto_encode_draft_req(b, m->id, &m->draft_req);
    case MSG_DRAFT_RES: return proto_encode_draft_res(b, m->id, &m->draft_res, vocab);
    case MSG_VERIFY_REQ: return proto_encode_verify_req(b, m->id, &m->verify_req);
    case MSG_VERIFY_RES: return proto_encode_verify_res(b, m->id, &m->verify_res, vocab);
    case MSG_ERROR: return proto_encode_error(b, m->id, m->err_code, m->err_text);
    case MSG_SESSION: return proto_encode_session(b, m->id, &m->session);
    case MSG_SOURCE: return proto_encode_source(b, m->id, &m->source);
    case MSG_PLANE_REQ: return proto_encode_plane_req(b, m->id, &m->plane_req);
    case MSG_PLANE_RES: return proto_encode_plane_res(b, m->id, &m->plane_res);
    case MSG_PING:
    case MSG_PONG:
    case MSG_SHUTDOWN:
    case MSG_BYE: return proto_encode_simple(b, m->id, m->type);
    }
    __builtin_trap();
}

/* a: the first decoding, b: the decoding of its re-encoding. */
static void check_same(const proto_msg_t *a, const proto_msg_t *b, int vocab) {
    CHECK(a->type == b->type && a->id == b->id && a->session_id == b->session_id);
    switch (a->type) {
    case MSG_HELLO: CHECK(a->role == b->role); break;
    case MSG_HELLO_REPLY:
        /* the encoder writes the model name up to its first NUL */
        CHECK(a->hello.role == b->hello.role && !strcmp(a->hello.model, b->hello.model));
        CHECK(a->hello.vocab_size == b->hello.vocab_size && a->hello.seq_len == b->hello.seq_len);
        CHECK(a->hello.vocab_fingerprint == b->hello.vocab_fingerprint && a->hello.caps == b->hello.caps);
        CHECK(a->hello.start_id == b->hello.start_id && a->hello.eos_id == b->hello.eos_id);
        break;
    case MSG_SOURCE:
        CHECK(a->source.n == b->source.n && a->source.max_dec == b->source.max_dec);
        CHECK(!memcmp(a->source.ids, b->source.ids, sizeof(int) * (size_t)a->source.n));
        break;
    case MSG_DRAFT_REQ: {
        const draft_req_t *x = &a->draft_req, *y = &b->draft_req;
        CHECK(x->keep == y->keep && x->n_feed == y->n_feed && x->k == y->k && x->want_probs == y->want_probs);
        CHECK(x->plane_send == y->plane_send);
        CHECK(same_floats(&x->alpha_fb, &y->alpha_fb, 1));
        CHECK(!memcmp(x->feed, y->feed, sizeof(int) * (size_t)x->n_feed));
        break;
    }
    case MSG_DRAFT_RES: {
        const draft_res_t *x = &a->draft_res, *y = &b->draft_res;
        CHECK(x->n == y->n && x->end == y->end && x->stop_token == y->stop_token);
        CHECK(x->passes == y->passes && x->cached == y->cached);
        CHECK(!memcmp(x->tokens, y->tokens, sizeof(int) * (size_t)x->n));
        CHECK(same_floats(x->max_p, y->max_p, (size_t)x->n) && same_floats(&x->end_max_p, &y->end_max_p, 1));
        CHECK(!x->probs == !y->probs);
        if (x->probs) CHECK(same_floats(x->probs, y->probs, (size_t)(x->n + (x->end == DRAFT_STOP)) * (size_t)vocab));
        break;
    }
    case MSG_VERIFY_REQ: {
        const verify_req_t *x = &a->verify_req, *y = &b->verify_req;
        CHECK(x->pos == y->pos && x->T == y->T && x->n_out == y->n_out && x->want_probs == y->want_probs);
        CHECK(x->accept_here == y->accept_here && x->plane_rows == y->plane_rows && x->bonus == y->bonus &&
              x->rng == y->rng);
        CHECK(!memcmp(x->tokens, y->tokens, sizeof(int) * (size_t)x->T));
        break;
    }
    case MSG_VERIFY_RES: {
        const verify_res_t *x = &a->verify_res, *y = &b->verify_res;
        size_t n = (size_t)x->n_out;
        CHECK(x->n_out == y->n_out);
        CHECK(!memcmp(x->argmax, y->argmax, sizeof(int) * n) && !memcmp(x->sampled, y->sampled, sizeof(int) * n));
        CHECK(same_floats(x->nll, y->nll, n));
        CHECK(x->accept_done == y->accept_done && x->accept_m == y->accept_m && x->accept_z == y->accept_z &&
              x->rng == y->rng);
        CHECK(!x->probs == !y->probs);
        if (x->probs) CHECK(same_floats(x->probs, y->probs, n * (size_t)vocab));
        break;
    }
    case MSG_ERROR: CHECK(a->err_code == b->err_code && !strcmp(a->err_text, b->err_text)); break;
    case MSG_SESSION:
        CHECK(same_floats(&a->session.temperature, &b->session.temperature, 1) &&
              same_floats(&a->session.top_p, &b->session.top_p, 1) && a->session.seed == b->session.seed);
        break;
    case MSG_PLANE_REQ: {
        const plane_req_t *x = &a->plane_req, *y = &b->plane_req;
        CHECK(x->op == y->op && x->kind == y->kind && x->rank == y->rank && !strcmp(x->endpoint, y->endpoint));
        CHECK(x->has_id == y->has_id && (!x->has_id || !memcmp(x->id, y->id, PROTO_PLANE_ID)));
        break;
    }
    case MSG_PLANE_RES: {
        const plane_res_t *x = &a->plane_res, *y = &b->plane_res;
        CHECK(!strcmp(x->device, y->device) && !strcmp(x->uuid, y->uuid) && !strcmp(x->host, y->host));
        CHECK(x->nccl == y->nccl && !strcmp(x->endpoint, y->endpoint) && x->has_id == y->has_id);
        CHECK(!x->has_id || !memcmp(x->id, y->id, PROTO_PLANE_ID));
        break;
    }
    case MSG_PING:
    case MSG_PONG:
    case MSG_SHUTDOWN:
    case MSG_BYE: break;
    default: __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int vocabs[] = {0, 7, 32000};
    for (size_t v = 0; v < sizeof vocabs / sizeof *vocabs; v++) {
        int vocab = vocabs[v];
        proto_msg_t m, m2;
        proto_err_t e = proto_decode(data, size, vocab, &m);
        if (e != PROTO_OK) {
            /* a refusal is one of the documented codes and leaves *m empty */
            CHECK(e == PROTO_E_FORMAT || e == PROTO_E_VERSION || e == PROTO_E_TYPE || e == PROTO_E_RANGE ||
                  e == PROTO_E_NOMEM);
            CHECK(!m.feed_buf && !m.probs_buf);
            proto_msg_free(&m);
            continue;
        }
        check_limits(&m, vocab);
        proto_buf_t b = {.session_id = m.session_id};
        CHECK(encode(&b, &m, vocab) == 0 && b.data);
        CHECK(proto_decode(b.data, b.size, vocab, &m2) == PROTO_OK);
        check_same(&m, &m2, vocab);
        /* a third generation encodes to the very same bytes */
        proto_buf_t b2 = {.session_id = m2.session_id};
        CHECK(encode(&b2, &m2, vocab) == 0 && b2.size == b.size && !memcmp(b2.data, b.data, b.size));
        proto_buf_free(&b2);
        proto_buf_free(&b);
        proto_msg_free(&m2);
        proto_msg_free(&m);
    }
    return 0;
}
