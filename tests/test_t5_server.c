/* test_t5_server.c - the T5 workers' request handlers (small_worker/t5_server.c,
 * large_worker/t5_server.c, proto/t5_serve.c)
 * on decoded messages, as the serve loop hands them over: hostile and
 * misplaced requests are refused with a message (a draft before any
 * SOURCE, a verify request to the small worker, sampling, a decoder longer
 * than the limit, a message type it does not serve), and the session keeps
 * working; a served draft equals the in-process drafter's on the same
 * source; two sessions on one model keep their own state. The model:
 * tests/data/t5bild/small (a tiny random T5 v1.1). */
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "large_worker/t5_server.h"
#include "small_worker/t5_drafter.h"
#include "small_worker/t5_server.h"
#include "tests/test.h"

/* Encodes with enc, decodes as the worker would, runs the handler. Returns
 * its status; the reply (decoded) in *rep when it succeeded. */
static int serve(t5_serve_t *s, void *st, proto_buf_t *req, proto_msg_t *rep, char *err) {
    proto_msg_t m;
    int V = t5_config(s->m)->vocab_size;
    EXPECT(proto_decode(req->data, req->size, V, &m) == PROTO_OK);
    proto_buf_t out = {0};
    err[0] = 0;
    int rc = small_t5_handle(s, st, &m, &out, err, 300);
    if (rc == 0) EXPECT(proto_decode(out.data, out.size, V, rep) == PROTO_OK);
    proto_msg_free(&m);
    proto_buf_free(&out);
    proto_buf_free(req);
    return rc;
}

static void refused(t5_serve_t *s, void *st, proto_buf_t *req, const char *want) {
    proto_msg_t rep;
    char err[300];
    int rc = serve(s, st, req, &rep, err);
    EXPECT(rc != 0 && strstr(err, want));
    fprintf(stderr, "refused as expected: %s\n", err);
}

int main(void) {
    char err[300];
    t5_model_t *m = t5_open("tests/data/t5bild/small", err, sizeof err);
    if (!m) return fprintf(stderr, "%s\n", err), 1;
    backend_t *be = backend_cpu_new(1);
    t5_serve_t s = {.m = m, .be = be};
    void *a = small_t5_session_new(&s, err, sizeof err), *b = small_t5_session_new(&s, err, sizeof err);
    EXPECT(a && b);
    const int start = t5_config(m)->decoder_start;
    int src1[6] = {17, 200, 33, 91, 400, 1}, src2[4] = {9, 120, 77, 1};
    draft_req_t dq = {.keep = 0, .feed = &start, .n_feed = 1, .k = 8, .alpha_fb = 0};
    proto_buf_t q = {0};
    proto_msg_t rep;

    /* misplaced and hostile requests */
    proto_encode_draft_req(&q, 1, &dq), refused(&s, a, &q, "draft before SOURCE");
    int toks[2] = {start, 5};
    verify_req_t vq = {.pos = 0, .tokens = toks, .T = 2, .n_out = 1};
    proto_encode_verify_req(&q, 2, &vq), refused(&s, a, &q, "the small worker serves draft requests");
    session_req_t se = {.temperature = 0.7f, .top_p = 1, .seed = 1};
    proto_encode_session(&q, 3, &se), refused(&s, a, &q, "greedily only");
    source_req_t sq = {.ids = src1, .n = 6, .max_dec = T5_MAX_DEC + 1};
    proto_encode_source(&q, 4, &sq), refused(&s, a, &q, "decoder tokens asked for");
    static int big[T5_MAX_SRC + 1]; /* a source longer than the encoder takes */
    for (int i = 0; i <= T5_MAX_SRC; i++) big[i] = 5;
    source_req_t sqb = {.ids = big, .n = T5_MAX_SRC + 1, .max_dec = 16};
    proto_encode_source(&q, 4, &sqb), refused(&s, a, &q, "tokens, at most");
    proto_encode_simple(&q, 5, MSG_PING), refused(&s, a, &q, "not message type 8");
    se.temperature = 0; /* greedy: accepted */
    proto_encode_session(&q, 6, &se);
    EXPECT(serve(&s, a, &q, &rep, err) == 0 && rep.type == MSG_PONG);
    proto_msg_free(&rep);

    /* two sessions, each its own source; the drafts equal the in-process drafter's */
    sq.max_dec = 32;
    proto_encode_source(&q, 7, &sq);
    EXPECT(serve(&s, a, &q, &rep, err) == 0 && rep.type == MSG_PONG);
    proto_msg_free(&rep);
    source_req_t sq2 = {.ids = src2, .n = 4, .max_dec = 32};
    proto_encode_source(&q, 8, &sq2);
    EXPECT(serve(&s, b, &q, &rep, err) == 0 && rep.type == MSG_PONG);
    proto_msg_free(&rep);
    const int *srcs[2] = {src1, src2}, ns[2] = {6, 4};
    void *sess[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        proto_encode_draft_req(&q, 9 + k, &dq);
        EXPECT(serve(&s, sess[k], &q, &rep, err) == 0 && rep.type == MSG_DRAFT_RES);
        t5_state_t *st = t5_state_new(m, be, 8, 32);
        t5_drafter_t *d = st ? t5_drafter_new(st, t5_config(m)->eos, t5_config(m)->eos) : NULL;
        draft_res_t want;
        EXPECT(d && t5_encode(st, srcs[k], ns[k], NULL) == 0);
        small_link_t sl = t5_drafter_link(d);
        EXPECT(sl.draft(sl.self, &dq, &want, err, sizeof err) == 0);
        int same = rep.draft_res.n == want.n && rep.draft_res.end == want.end &&
                   !memcmp(rep.draft_res.tokens, want.tokens, sizeof(int) * (size_t)want.n);
        fprintf(stderr, "session %d: served draft of %d tokens (end %d) %s the in-process drafter's\n", k,
                rep.draft_res.n, rep.draft_res.end, same ? "equals" : "DIFFERS FROM");
        EXPECT(same);
        t5_drafter_destroy(&d);
        t5_state_free(st);
        proto_msg_free(&rep);
    }
    EXPECT(s.sources == 2 && s.encode_s > 0);
    small_t5_session_free(&s, a);
    small_t5_session_free(&s, b);
    /* the large worker's handler: verify only, and not before a SOURCE */
    void *c = large_t5_session_new(&s, err, sizeof err);
    EXPECT(c != NULL);
    proto_encode_verify_req(&q, 20, &vq);
    {
        proto_msg_t mm;
        char e2[300] = "";
        EXPECT(proto_decode(q.data, q.size, t5_config(m)->vocab_size, &mm) == PROTO_OK);
        proto_buf_t o = {0};
        EXPECT(large_t5_handle(&s, c, &mm, &o, e2, sizeof e2) != 0 && strstr(e2, "verify before SOURCE"));
        fprintf(stderr, "refused as expected: %s\n", e2);
        proto_msg_free(&mm), proto_buf_free(&o), proto_buf_free(&q);
    }
    large_t5_session_free(&s, c);
    be->destroy(be);
    t5_close(m);
    return TEST_DONE("test_t5_server");
}
