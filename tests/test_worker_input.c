/* test_worker_input.c - a live small worker (build/bild small-worker, a real
 * process) fed bad messages over ZeroMQ must answer each with an ERROR
 * (nonzero code) and keep serving: truncations of a valid request, oversized
 * messages and containers claiming 2^31 elements, fields of the wrong
 * msgpack type, another protocol version, unknown and misdirected message
 * types, draft requests with values out of range, a verify request. After
 * every case a PING must get a PONG and a valid draft request a DRAFT_RES;
 * at the end the worker must still run and leave with status 0 on SHUTDOWN.
 *
 * The worker is killed by pid on every exit path (atexit, signal handlers,
 * PR_SET_PDEATHSIG); alarm(60) bounds the whole test. Fails without the
 * models in models/ (make models; BILD_MODELS overrides). Run from the repository root;
 * BUILD selects the build folder (build/san: the sanitized worker).
 */
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "proto/proto.h"
#include "tests/test.h"

#define VOCAB 32000 /* stories15M's */
#define TIME_LIMIT_S 60
#define START_WAIT_S 20
#define RCV_TIMEOUT_MS 5000

static volatile pid_t child = -1;
static char tmpdir[200], sockpath[260], endpoint[300];
static void *zctx, *sock;
static const char *cur_case = "start-up";
static uint32_t next_id = 1000;

/* ---- the worker process ---- */

static void cleanup_files(void) {
    if (sockpath[0]) unlink(sockpath);
    if (tmpdir[0]) rmdir(tmpdir);
}

static void kill_child(void) {
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        child = -1;
    }
    cleanup_files();
}

static void on_signal(int sig) {
    if (child > 0) kill(child, SIGKILL);
    static const char alrm[] = "test_worker_input: FAILED: time limit (60 s) reached; worker killed\n";
    static const char other[] = "test_worker_input: FAILED: stopped by a signal; worker killed\n";
    if (sig == SIGALRM) (void)!write(2, alrm, sizeof alrm - 1);
    else (void)!write(2, other, sizeof other - 1);
    if (sockpath[0]) unlink(sockpath);
    if (tmpdir[0]) rmdir(tmpdir);
    _exit(1);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static pid_t start_worker(const char *bild, const char *model, const char *tok) {
    pid_t parent = getpid();
    pid_t p = fork();
    if (p != 0) return p;
    /* the child: die with the test, whatever way it ends */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int dn = open("/dev/null", O_WRONLY);
    if (dn >= 0) dup2(dn, 1);
    char *argv[] = {(char *)bild, "small-worker", "-m", (char *)model, "-z", (char *)tok, "-b", endpoint, "-j", "1", NULL};
    execv(bild, argv);
    fprintf(stderr, "test_worker_input: cannot run %s: %s\n", bild, strerror(errno));
    _exit(127);
}

/* 1 while the worker runs; reaps it (and reports how it ended) otherwise. */
static int worker_alive(void) {
    int st;
    if (child <= 0) return 0;
    pid_t r = waitpid(child, &st, WNOHANG);
    if (r == 0) return 1;
    if (r == child) {
        if (WIFEXITED(st)) fprintf(stderr, "  the worker exited with status %d\n", WEXITSTATUS(st));
        else if (WIFSIGNALED(st)) fprintf(stderr, "  the worker was killed by signal %d\n", WTERMSIG(st));
        child = -1;
    }
    return 0;
}

/* ---- the client ---- */

/* EXPECT with the case named on failure. */
#define CHECK(cond)                                                                          \
    do {                                                                                     \
        int ok_ = !!(cond);                                                                  \
        if (!ok_) fprintf(stderr, "[case: %s] check failed: %s\n", cur_case, #cond);         \
        EXPECT(ok_);                                                                         \
    } while (0)

static void *new_req(int timeout_ms) {
    void *s = zmq_socket(zctx, ZMQ_REQ);
    int linger = 0;
    if (!s) return NULL;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    if (zmq_connect(s, endpoint) != 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* Sends data[0, n) and waits for one reply (a malloc'd copy in *reply).
 * Returns its size, or -1 when none came; the REQ socket is then replaced
 * (a REQ socket cannot send again before it has a reply). */
static long exchange(const void *data, size_t n, void **reply, int timeout_ms) {
    *reply = NULL;
    if (!sock && !(sock = new_req(timeout_ms))) return -1;
    if (zmq_send(sock, data, n, 0) == (int)n) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, sock, 0) >= 0) {
            size_t sz = zmq_msg_size(&msg);
            *reply = malloc(sz ? sz : 1);
            if (*reply) memcpy(*reply, zmq_msg_data(&msg), sz);
            zmq_msg_close(&msg);
            return *reply ? (long)sz : -1;
        }
        zmq_msg_close(&msg);
    }
    fprintf(stderr, "[case: %s] no reply within %d ms: %s\n", cur_case, timeout_ms, zmq_strerror(zmq_errno()));
    zmq_close(sock);
    sock = new_req(timeout_ms);
    return -1;
}

/* Exchanges and decodes the reply (vocab: what a DRAFT_RES may carry).
 * Returns 0 with *m filled, -1 (counted as a failure) otherwise. */
static int ask(const void *data, size_t n, proto_msg_t *m) {
    void *r;
    memset(m, 0, sizeof *m);
    CHECK(child > 0); /* the worker was not seen to end (worker_alive reaps it) */
    if (child <= 0) return -1;
    long rn = exchange(data, n, &r, RCV_TIMEOUT_MS);
    CHECK(rn >= 0); /* a reply arrived */
    if (rn < 0) {
        worker_alive(); /* reaps and reports a dead worker, so later cases do not wait */
        return -1;
    }
    proto_err_t e = proto_decode(r, (size_t)rn, VOCAB, m);
    free(r);
    if (e != PROTO_OK) fprintf(stderr, "[case: %s] the reply does not decode: %s\n", cur_case, proto_err_name(e));
    CHECK(e == PROTO_OK);
    return e == PROTO_OK ? 0 : -1;
}

static int ask_buf(const proto_buf_t *b, proto_msg_t *m) { return ask(b->data, b->size, m); }

/* The worker still serves: PING -> PONG, HELLO -> HELLO_REPLY (the test's
 * session 0, opened afresh: a bad message may have made libzmq drop the
 * connection, which ends the session), and a valid draft -> DRAFT_RES. */
static void check_serving(void) {
    proto_buf_t b = {0};
    proto_msg_t m;
    uint32_t id = next_id++;
    proto_encode_hello(&b, id, ROLE_SMALL);
    if (ask_buf(&b, &m) == 0) {
        CHECK(m.type == MSG_HELLO_REPLY);
        proto_msg_free(&m);
    }
    id = next_id++;
    proto_encode_simple(&b, id, MSG_PING);
    if (ask_buf(&b, &m) == 0) {
        CHECK(m.type == MSG_PONG);
        CHECK(m.id == id);
        proto_msg_free(&m);
    }
    int feed[1] = {1}; /* BOS */
    draft_req_t dq = {.keep = 0, .feed = feed, .n_feed = 1, .k = 4, .alpha_fb = 0, .want_probs = 0};
    id = next_id++;
    proto_encode_draft_req(&b, id, &dq);
    if (ask_buf(&b, &m) == 0) {
        CHECK(m.type == MSG_DRAFT_RES);
        if (m.type == MSG_DRAFT_RES) {
            CHECK(m.id == id);
            CHECK(m.draft_res.n >= 1 && m.draft_res.n <= 4);
        } else if (m.type == MSG_ERROR)
            fprintf(stderr, "[case: %s] the valid draft got ERROR %d: %s\n", cur_case, m.err_code, m.err_text);
        proto_msg_free(&m);
    }
    proto_buf_free(&b);
}

static int n_cases = 0;

/* One bad message: it must get an ERROR with a nonzero code, and the worker
 * must keep serving. */
static void bad(const char *name, const void *data, size_t n) {
    proto_msg_t m;
    cur_case = name;
    n_cases++;
    if (ask(data, n, &m) == 0) {
        CHECK(m.type == MSG_ERROR);
        CHECK(m.type != MSG_ERROR || m.err_code != 0);
        if (m.type == MSG_ERROR) fprintf(stderr, "ok   %-50s ERROR %d: %s\n", name, m.err_code, m.err_text);
        else fprintf(stderr, "[case: %s] got message type %d instead of ERROR\n", name, m.type);
        proto_msg_free(&m);
    }
    check_serving();
    CHECK(worker_alive());
}

static void bad_buf(const char *name, proto_buf_t *b) {
    bad(name, b->data, b->size);
    proto_buf_free(b);
}

/* A request that must get an ERROR whose text contains want. */
static void bad_text(const char *name, proto_buf_t *b, const char *want) {
    proto_msg_t m;
    cur_case = name;
    n_cases++;
    if (ask_buf(b, &m) == 0) {
        CHECK(m.type == MSG_ERROR && strstr(m.err_text, want) != NULL);
        if (m.type == MSG_ERROR) fprintf(stderr, "ok   %-50s ERROR %d: %s\n", name, m.err_code, m.err_text);
        proto_msg_free(&m);
    }
    proto_buf_free(b);
    check_serving();
    CHECK(worker_alive());
}

/* A request that must get a reply of type want. */
static void good(const char *name, proto_buf_t *b, msg_type_t want) {
    proto_msg_t m;
    cur_case = name;
    if (ask_buf(b, &m) == 0) {
        CHECK(m.type == want && m.session_id == b->session_id);
        fprintf(stderr, "ok   %-50s type %d\n", name, m.type);
        proto_msg_free(&m);
    }
    proto_buf_free(b);
}

/* ---- hand-made msgpack ---- */

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} mp_t;

static msgpack_packer *mp_begin(mp_t *e) {
    msgpack_sbuffer_init(&e->sb);
    msgpack_packer_init(&e->pk, &e->sb, msgpack_sbuffer_write);
    return &e->pk;
}

static void mp_bad(const char *name, mp_t *e) {
    bad(name, e->sb.data, e->sb.size);
    msgpack_sbuffer_destroy(&e->sb);
}

/* [version, type, id, session 0 (the test's session)] */
static msgpack_packer *mp_head(mp_t *e, int n_fields, int version, int type) {
    msgpack_packer *pk = mp_begin(e);
    msgpack_pack_array(pk, (size_t)(4 + n_fields));
    msgpack_pack_int(pk, version);
    msgpack_pack_int(pk, type);
    msgpack_pack_uint32(pk, next_id++);
    msgpack_pack_uint64(pk, 0);
    return pk;
}

static void pack_cstr(msgpack_packer *pk, const char *s) {
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* A DRAFT_REQ [keep, feed, k, alpha_fb, want_probs] from the default valid
 * one, with field `which` (0..4) replaced by what put() packs. */
static void draft_with(const char *name, int which, void (*put)(msgpack_packer *)) {
    mp_t e;
    msgpack_packer *pk = mp_head(&e, 5, PROTO_VERSION, MSG_DRAFT_REQ);
    for (int i = 0; i < 5; i++) {
        if (i == which) {
            put(pk);
            continue;
        }
        switch (i) {
        case 0: msgpack_pack_int(pk, 0); break;
        case 1: msgpack_pack_array(pk, 1), msgpack_pack_int(pk, 1); break;
        case 2: msgpack_pack_int(pk, 4); break;
        case 3: msgpack_pack_float(pk, 0); break;
        case 4: msgpack_pack_int(pk, 0); break;
        }
    }
    mp_bad(name, &e);
}

static void put_str_1(msgpack_packer *pk) { pack_cstr(pk, "1"); }
static void put_float_half(msgpack_packer *pk) { msgpack_pack_double(pk, 0.5); }
static void put_nil(msgpack_packer *pk) { msgpack_pack_nil(pk); }
static void put_true(msgpack_packer *pk) { msgpack_pack_true(pk); }
static void put_map(msgpack_packer *pk) {
    msgpack_pack_map(pk, 1);
    msgpack_pack_int(pk, 0), msgpack_pack_int(pk, 1);
}
static void put_feed_floats(msgpack_packer *pk) {
    msgpack_pack_array(pk, 2);
    msgpack_pack_double(pk, 1.0), msgpack_pack_double(pk, 2.5);
}
static void put_feed_strs(msgpack_packer *pk) {
    msgpack_pack_array(pk, 1);
    pack_cstr(pk, "Once");
}
static void put_feed_nested(msgpack_packer *pk) {
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 1), msgpack_pack_int(pk, 1);
}
static void put_feed_bin(msgpack_packer *pk) {
    static const int one = 1;
    msgpack_pack_bin(pk, sizeof one);
    msgpack_pack_bin_body(pk, &one, sizeof one);
}
static void put_alpha_nan(msgpack_packer *pk) { msgpack_pack_double(pk, NAN); }
static void put_alpha_inf(msgpack_packer *pk) { msgpack_pack_double(pk, INFINITY); }
static void put_huge_uint(msgpack_packer *pk) { msgpack_pack_uint64(pk, UINT64_MAX); }
static void put_min_int(msgpack_packer *pk) { msgpack_pack_int64(pk, INT64_MIN); }

/* A valid-looking draft request with out-of-range values. */
static void draft_values(const char *name, int keep, const int *feed, int n_feed, int k, float alpha, int want) {
    proto_buf_t b = {0};
    draft_req_t dq = {.keep = keep, .feed = feed, .n_feed = n_feed, .k = k, .alpha_fb = alpha, .want_probs = want};
    proto_encode_draft_req(&b, next_id++, &dq);
    bad_buf(name, &b);
}

static void draft_feed_value(const char *name, int64_t token) {
    mp_t e;
    msgpack_packer *pk = mp_head(&e, 5, PROTO_VERSION, MSG_DRAFT_REQ);
    msgpack_pack_int(pk, 0);
    msgpack_pack_array(pk, 2), msgpack_pack_int(pk, 1), msgpack_pack_int64(pk, token);
    msgpack_pack_int(pk, 4), msgpack_pack_float(pk, 0), msgpack_pack_int(pk, 0);
    mp_bad(name, &e);
}

/* A DRAFT_REQ whose feed holds n tokens (1 each) in an array32. */
static unsigned char *draft_big_feed(uint32_t n, size_t *size) {
    static const unsigned char head[] = {0x98, 0x01, 0x03, 0x07, 0x00, 0xdd};
    static const unsigned char tail[] = {0x04, 0x00, 0x00};
    *size = sizeof head + 4 + n + sizeof tail;
    unsigned char *p = malloc(*size), *q = p;
    if (!p) return NULL;
    memcpy(q, head, sizeof head), q += sizeof head;
    *q++ = (unsigned char)(n >> 24), *q++ = (unsigned char)(n >> 16), *q++ = (unsigned char)(n >> 8), *q++ = (unsigned char)n;
    memset(q, 0x01, n), q += n;
    memcpy(q, tail, sizeof tail);
    return p;
}

int main(void) {
    char bild[512], model[512], tok[512];
    const char *build = getenv("BUILD");
    snprintf(bild, sizeof bild, "%s/bild", build && *build ? build : "build");
    test_model(model, sizeof model, "stories15M-small/small.bin");
    test_model(tok, sizeof tok, "stories15M/tokenizer.bin");
    if (access(model, R_OK) != 0 || access(tok, R_OK) != 0) {
        fprintf(stderr, "test_worker_input: FAILED: needs %s and its tokenizer %s (make models)\n", model, tok);
        return 1;
    }
    if (access(bild, X_OK) != 0) {
        fprintf(stderr, "test_worker_input: FAILED: %s not built (make)\n", bild);
        return 1;
    }
    const char *td = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/bild-wi-XXXXXX", td && *td && strlen(td) < 60 ? td : "/tmp");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "test_worker_input: cannot make a temp folder %s: %s\n", tmpdir, strerror(errno));
        return 1;
    }
    snprintf(sockpath, sizeof sockpath, "%s/w.sock", tmpdir);
    snprintf(endpoint, sizeof endpoint, "ipc://%s", sockpath);

    atexit(kill_child);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    alarm(TIME_LIMIT_S);

    /* fork before ZeroMQ starts its threads */
    child = start_worker(bild, model, tok);
    if (child < 0) {
        fprintf(stderr, "test_worker_input: fork: %s\n", strerror(errno));
        return 1;
    }
    zctx = zmq_ctx_new();

    /* 1. wait until it answers a HELLO (the model loads first), on a session
     * of its own: each probe's connection closes, and the worker may notice
     * that only after the test's connection has asked for session 0 */
    proto_buf_t b = {.session_id = 0x9e0be};
    proto_msg_t m;
    int up = 0, seq_len = 0;
    double t0 = now_s();
    proto_encode_hello(&b, next_id++, ROLE_SMALL);
    while (!up && now_s() - t0 < START_WAIT_S && worker_alive()) {
        void *s = new_req(250);
        if (s && zmq_send(s, b.data, b.size, 0) == (int)b.size) {
            zmq_msg_t msg;
            zmq_msg_init(&msg);
            if (zmq_msg_recv(&msg, s, 0) >= 0) {
                if (proto_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), VOCAB, &m) == PROTO_OK) {
                    CHECK(m.type == MSG_HELLO_REPLY);
                    CHECK(m.hello.role == ROLE_SMALL && m.hello.vocab_size == VOCAB);
                    seq_len = m.hello.seq_len;
                    proto_msg_free(&m);
                }
                up = 1;
            }
            zmq_msg_close(&msg);
        }
        if (s) zmq_close(s);
    }
    proto_buf_free(&b);
    if (!up) {
        fprintf(stderr, "test_worker_input: FAILED: the worker did not answer a HELLO within %d s\n", START_WAIT_S);
        return 1;
    }
    fprintf(stderr, "worker up after %.1f s\n", now_s() - t0);
    sock = new_req(RCV_TIMEOUT_MS);
    cur_case = "baseline";
    check_serving();

    /* (a) every truncation of a valid DRAFT_REQ (the empty message too) */
    {
        int feed[1] = {1};
        draft_req_t dq = {.keep = 0, .feed = feed, .n_feed = 1, .k = 4, .alpha_fb = 0, .want_probs = 0};
        proto_buf_t v = {0};
        proto_encode_draft_req(&v, 77, &dq);
        static char names[64][80];
        for (size_t len = 0; len < v.size && len < 64; len++) {
            snprintf(names[len], sizeof names[len], "(a) DRAFT_REQ cut to %zu of %zu bytes", len, v.size);
            bad(names[len], v.data, len);
        }
        /* and one byte too many */
        unsigned char *x = malloc(v.size + 1);
        memcpy(x, v.data, v.size), x[v.size] = 0xc0;
        bad("(a) DRAFT_REQ + a trailing nil", x, v.size + 1);
        free(x);
        proto_buf_free(&v);
    }

    /* (b) oversized */
    {
        size_t big = 8u << 20;
        unsigned char *p = malloc(big);
        memset(p, 0xc1, big); /* 0xc1: never used in msgpack */
        bad("(b) 8 MiB of 0xc1 bytes", p, big);
        for (size_t i = 0; i < big; i++) p[i] = (unsigned char)(i * 2654435761u >> 13);
        bad("(b) 8 MiB of pseudo-random bytes", p, big);
        /* a DRAFT_REQ whose feed field is an 8 MiB string */
        static const unsigned char head[] = {0x98, 0x01, 0x03, 0x07, 0x00, 0xdb};
        size_t sl = big - sizeof head - 4 - 3;
        memcpy(p, head, sizeof head);
        p[6] = (unsigned char)(sl >> 24), p[7] = (unsigned char)(sl >> 16), p[8] = (unsigned char)(sl >> 8), p[9] = (unsigned char)sl;
        memset(p + 10, 'x', sl);
        p[big - 3] = 0x04, p[big - 2] = 0x00, p[big - 1] = 0x00;
        bad("(b) DRAFT_REQ with an 8 MiB string as feed", p, big);
        free(p);
        size_t n;
        unsigned char *q = draft_big_feed(PROTO_MAX_FEED + 1, &n);
        bad("(b) DRAFT_REQ feeding PROTO_MAX_FEED + 1 tokens", q, n);
        free(q);
        q = draft_big_feed(PROTO_MAX_FEED, &n); /* decodes; longer than the context */
        bad("(b) DRAFT_REQ feeding PROTO_MAX_FEED tokens", q, n);
        free(q);
        static const unsigned char arr31[] = {0x98, 0x01, 0x03, 0x07, 0x00, 0xdd, 0x80, 0x00, 0x00, 0x00, 0x01};
        bad("(b) DRAFT_REQ whose feed claims 2^31 elements", arr31, sizeof arr31);
        static const unsigned char top31[] = {0xdd, 0x80, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00};
        bad("(b) a top-level array claiming 2^31 elements", top31, sizeof top31);
        static const unsigned char top32[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
        bad("(b) a top-level array claiming 2^32-1 elements", top32, sizeof top32);
        static const unsigned char map31[] = {0x93, 0x01, 0x08, 0xdf, 0x80, 0x00, 0x00, 0x00};
        bad("(b) an id that is a map claiming 2^31 pairs", map31, sizeof map31);
        static const unsigned char str32[] = {0x94, 0x01, 0x07, 0x00, 0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
        bad("(b) a string claiming 4 GiB", str32, sizeof str32);
        /* nesting deeper than msgpack-c's parser stack */
        unsigned char deep[4096];
        memset(deep, 0x91, sizeof deep - 1), deep[sizeof deep - 1] = 0x01;
        bad("(b) 4095 nested arrays", deep, sizeof deep);
    }

    /* (c) fields of the wrong msgpack type */
    {
        mp_t e;
        msgpack_packer *pk = mp_begin(&e);
        msgpack_pack_array(pk, 3), pack_cstr(pk, "1"), msgpack_pack_int(pk, MSG_PING), msgpack_pack_int(pk, 5);
        mp_bad("(c) PING with the version a string", &e);
        pk = mp_begin(&e);
        msgpack_pack_array(pk, 3), msgpack_pack_int(pk, 1), msgpack_pack_double(pk, 8.0), msgpack_pack_int(pk, 5);
        mp_bad("(c) PING with the type a float", &e);
        pk = mp_begin(&e);
        msgpack_pack_array(pk, 3), msgpack_pack_int(pk, 1), msgpack_pack_int(pk, MSG_PING), pack_cstr(pk, "5");
        mp_bad("(c) PING with the id a string", &e);
        pk = mp_begin(&e);
        msgpack_pack_array(pk, 3), msgpack_pack_int(pk, 1), msgpack_pack_int(pk, MSG_PING), msgpack_pack_int(pk, -5);
        mp_bad("(c) PING with a negative id", &e);
        pk = mp_begin(&e);
        msgpack_pack_array(pk, 3), msgpack_pack_int(pk, 1), msgpack_pack_int(pk, MSG_PING), msgpack_pack_uint64(pk, 1ull << 32);
        mp_bad("(c) PING with an id of 2^32", &e);
        pk = mp_begin(&e);
        msgpack_pack_array(pk, 4), msgpack_pack_int(pk, 1), msgpack_pack_int(pk, MSG_PING), msgpack_pack_int(pk, 5),
            msgpack_pack_nil(pk);
        mp_bad("(c) PING with a field too many", &e);
        pk = mp_begin(&e);
        msgpack_pack_map(pk, 1), msgpack_pack_int(pk, 1), msgpack_pack_int(pk, MSG_PING);
        mp_bad("(c) a map instead of an array", &e);
        pk = mp_begin(&e);
        msgpack_pack_int(pk, MSG_PING);
        mp_bad("(c) a bare integer", &e);
        pk = mp_begin(&e);
        msgpack_pack_array(pk, 2), msgpack_pack_int(pk, 1), msgpack_pack_int(pk, MSG_PING);
        mp_bad("(c) an array of 2 (no id)", &e);
        pk = mp_begin(&e);
        msgpack_pack_array(pk, 0);
        mp_bad("(c) an empty array", &e);

        draft_with("(c) DRAFT_REQ keep a string", 0, put_str_1);
        draft_with("(c) DRAFT_REQ keep a float", 0, put_float_half);
        draft_with("(c) DRAFT_REQ keep nil", 0, put_nil);
        draft_with("(c) DRAFT_REQ keep 2^64-1", 0, put_huge_uint);
        draft_with("(c) DRAFT_REQ keep INT64_MIN", 0, put_min_int);
        draft_with("(c) DRAFT_REQ feed a map", 1, put_map);
        draft_with("(c) DRAFT_REQ feed a bin", 1, put_feed_bin);
        draft_with("(c) DRAFT_REQ feed nil", 1, put_nil);
        draft_with("(c) DRAFT_REQ feed of floats", 1, put_feed_floats);
        draft_with("(c) DRAFT_REQ feed of strings", 1, put_feed_strs);
        draft_with("(c) DRAFT_REQ feed of arrays", 1, put_feed_nested);
        draft_with("(c) DRAFT_REQ k a string", 2, put_str_1);
        draft_with("(c) DRAFT_REQ k a float", 2, put_float_half);
        draft_with("(c) DRAFT_REQ k true", 2, put_true);
        draft_with("(c) DRAFT_REQ alpha_fb a string", 3, put_str_1);
        draft_with("(c) DRAFT_REQ alpha_fb nil", 3, put_nil);
        draft_with("(c) DRAFT_REQ alpha_fb NaN", 3, put_alpha_nan);
        draft_with("(c) DRAFT_REQ alpha_fb +inf", 3, put_alpha_inf);
        draft_with("(c) DRAFT_REQ want_probs true", 4, put_true);
        draft_with("(c) DRAFT_REQ want_probs a float", 4, put_float_half);
    }

    /* (d) another protocol version */
    {
        mp_t e;
        mp_head(&e, 0, PROTO_VERSION + 1, MSG_PING);
        mp_bad("(d) PING of version PROTO_VERSION + 1", &e);
        mp_head(&e, 0, 0, MSG_PING);
        mp_bad("(d) PING of version 0", &e);
        proto_buf_t v = {0};
        int feed[1] = {1};
        draft_req_t dq = {.keep = 0, .feed = feed, .n_feed = 1, .k = 4, .alpha_fb = 0, .want_probs = 0};
        proto_encode_draft_req(&v, next_id++, &dq);
        /* [version, ...]: the version is the positive fixint after the array header */
        if (v.size > 1 && (unsigned char)v.data[1] == PROTO_VERSION) v.data[1] = (char)(PROTO_VERSION + 1);
        bad_buf("(d) a valid DRAFT_REQ of version PROTO_VERSION + 1", &v);
    }

    /* (e) unknown message types, and types a worker does not serve */
    {
        mp_t e;
        mp_head(&e, 0, PROTO_VERSION, 99);
        mp_bad("(e) type 99", &e);
        mp_head(&e, 0, PROTO_VERSION, 0);
        mp_bad("(e) type 0", &e);
        mp_head(&e, 0, PROTO_VERSION, MSG_SHUTDOWN + 1);
        mp_bad("(e) type MSG_SHUTDOWN + 1", &e);
        mp_head(&e, 0, PROTO_VERSION, 1 << 30);
        mp_bad("(e) type 2^30", &e);
        proto_buf_t v = {0};
        proto_encode_hello(&v, next_id++, ROLE_LARGE);
        bad_buf("(e) HELLO expecting a large worker", &v);
        proto_encode_simple(&v, next_id++, MSG_PONG);
        bad_buf("(e) PONG", &v);
        hello_reply_t h = {.role = ROLE_SMALL, .vocab_size = VOCAB, .seq_len = 256, .vocab_fingerprint = 1};
        snprintf(h.model, sizeof h.model, "x");
        proto_encode_hello_reply(&v, next_id++, &h);
        bad_buf("(e) HELLO_REPLY", &v);
        proto_encode_error(&v, next_id++, -4, "an error from the coordinator");
        bad_buf("(e) ERROR", &v);
        draft_res_t dr = {.n = 1, .tokens = {5}, .max_p = {0.5f}, .end = DRAFT_LIMIT, .stop_token = -1, .passes = 1,
                          .cached = 2};
        proto_encode_draft_res(&v, next_id++, &dr, VOCAB);
        bad_buf("(e) DRAFT_RES", &v);
        verify_res_t vr = {.n_out = 1, .argmax = {3}, .sampled = {3}, .nll = {0}};
        proto_encode_verify_res(&v, next_id++, &vr, VOCAB);
        bad_buf("(e) VERIFY_RES", &v);
    }

    /* (f) DRAFT_REQ values out of range */
    {
        int one[1] = {1};
        draft_values("(f) DRAFT_REQ k = 0", 0, one, 1, 0, 0, 0);
        draft_values("(f) DRAFT_REQ k = 1000", 0, one, 1, 1000, 0, 0);
        draft_values("(f) DRAFT_REQ k = -1", 0, one, 1, -1, 0, 0);
        draft_values("(f) DRAFT_REQ keep = -1", -1, one, 1, 4, 0, 0);
        draft_values("(f) DRAFT_REQ keep = INT32_MIN", INT32_MIN, one, 1, 4, 0, 0);
        draft_values("(f) DRAFT_REQ keep = 2^24 + 1", (1 << 24) + 1, one, 1, 4, 0, 0);
        draft_values("(f) DRAFT_REQ keep = 1000 (beyond the cache)", 1000, one, 1, 4, 0, 0);
        int *longfeed = calloc((size_t)seq_len + 1, sizeof(int));
        for (int i = 0; i <= seq_len; i++) longfeed[i] = 1 + i % 500;
        draft_values("(f) DRAFT_REQ feeding seq_len + 1 tokens", 0, longfeed, seq_len + 1, 4, 0, 0);
        draft_values("(f) DRAFT_REQ keep 1 + feeding seq_len tokens", 1, longfeed, seq_len, 4, 0, 0);
        free(longfeed);
        draft_values("(f) DRAFT_REQ empty feed", 0, one, 0, 4, 0, 0);
        draft_values("(f) DRAFT_REQ alpha_fb = 1.5", 0, one, 1, 4, 1.5f, 0);
        draft_values("(f) DRAFT_REQ alpha_fb = -0.1", 0, one, 1, 4, -0.1f, 0);
        draft_values("(f) DRAFT_REQ want_probs = 2", 0, one, 1, 4, 0, 2);
        draft_values("(f) DRAFT_REQ want_probs = 1 (greedy worker)", 0, one, 1, 4, 0, 1);
        draft_feed_value("(f) DRAFT_REQ feed token = vocab", VOCAB);
        draft_feed_value("(f) DRAFT_REQ feed token = -1", -1);
        draft_feed_value("(f) DRAFT_REQ feed token = 2^31", (int64_t)1 << 31);
        draft_feed_value("(f) DRAFT_REQ feed token = PROTO_MAX_VOCAB", PROTO_MAX_VOCAB);
    }

    /* (g) a verify request to the small worker */
    {
        int toks[3] = {1, 2, 3};
        verify_req_t vq = {.pos = 0, .tokens = toks, .T = 3, .n_out = 2, .want_probs = 0};
        proto_buf_t v = {0};
        proto_encode_verify_req(&v, next_id++, &vq);
        bad_buf("(g) VERIFY_REQ to the small worker", &v);
        /* an encoder-decoder's SOURCE to a decoder-only worker */
        int src[3] = {5, 6, 2};
        source_req_t sq = {.ids = src, .n = 3, .max_dec = 16};
        proto_buf_t w = {0};
        proto_encode_source(&w, next_id++, &sq);
        bad_text("(g) SOURCE to a decoder-only worker", &w, "decoder-only");
    }

    /* (i) sessions: requests naming a session never opened, or one that has
     * ended, are refused saying so; the test's own session keeps working */
    {
        int one[1] = {1};
        draft_req_t dq = {.keep = 0, .feed = one, .n_feed = 1, .k = 4, .alpha_fb = 0, .want_probs = 0};
        proto_buf_t v = {.session_id = 0x1234};
        proto_encode_draft_req(&v, next_id++, &dq);
        bad_text("(i) DRAFT_REQ of a session never opened", &v, "is not open on this worker");
        v.session_id = 0x1234;
        proto_encode_hello(&v, next_id++, ROLE_SMALL);
        good("(i) HELLO of a second session", &v, MSG_HELLO_REPLY);
        v.session_id = 0x1234;
        proto_encode_draft_req(&v, next_id++, &dq);
        good("(i) DRAFT_REQ of the second session", &v, MSG_DRAFT_RES);
        v.session_id = 0x1234;
        proto_encode_simple(&v, next_id++, MSG_BYE);
        good("(i) BYE of the second session", &v, MSG_PONG);
        v.session_id = 0x1234;
        proto_encode_draft_req(&v, next_id++, &dq);
        bad_text("(i) DRAFT_REQ of a session that said BYE", &v, "ended by its coordinator");
        v.session_id = 0x1234;
        session_req_t sq = {.temperature = 1, .top_p = 1, .seed = 1};
        proto_encode_session(&v, next_id++, &sq);
        bad_text("(i) SESSION of a session that said BYE", &v, "ended by its coordinator");
        /* another connection naming this test's session (0): refused, and the session goes on */
        cur_case = "(i) DRAFT_REQ of session 0 from another connection";
        n_cases++;
        void *other = new_req(RCV_TIMEOUT_MS);
        v.session_id = 0;
        proto_encode_draft_req(&v, next_id++, &dq);
        zmq_msg_t rep;
        zmq_msg_init(&rep);
        proto_msg_t m2;
        int got = other && zmq_send(other, v.data, v.size, 0) == (int)v.size && zmq_msg_recv(&rep, other, 0) >= 0 &&
                  proto_decode(zmq_msg_data(&rep), zmq_msg_size(&rep), VOCAB, &m2) == PROTO_OK;
        CHECK(got);
        if (got) {
            CHECK(m2.type == MSG_ERROR && strstr(m2.err_text, "belongs to another connection"));
            fprintf(stderr, "ok   %-50s ERROR %d: %s\n", cur_case, m2.err_code, m2.err_text);
            proto_msg_free(&m2);
        }
        zmq_msg_close(&rep);
        if (other) zmq_close(other);
        proto_buf_free(&v);
        check_serving();
        CHECK(worker_alive());
    }

    /* (h) last, as they may kill a sanitized worker: valid messages with an
     * empty string field. msgpack-c gives such a string a NULL pointer when
     * no field with a length or value trailer came before it in the
     * message, hence the small id (a fixint). */
    {
        proto_buf_t v = {0};
        proto_encode_error(&v, 9, -4, "");
        bad_buf("(h) ERROR with an empty text", &v);
        hello_reply_t h = {.role = ROLE_SMALL, .vocab_size = VOCAB, .seq_len = 256, .vocab_fingerprint = 1};
        proto_encode_hello_reply(&v, 10, &h);
        bad_buf("(h) HELLO_REPLY with an empty model name", &v);
    }

    /* the end: still running, and it leaves cleanly on SHUTDOWN */
    cur_case = "end";
    check_serving();
    CHECK(worker_alive());
    fprintf(stderr, "%d bad messages sent\n", n_cases);
    cur_case = "shutdown";
    proto_encode_simple(&b, next_id++, MSG_SHUTDOWN);
    if (ask_buf(&b, &m) == 0) {
        CHECK(m.type == MSG_PONG);
        proto_msg_free(&m);
    }
    proto_buf_free(&b);
    int st = 0, gone = 0;
    t0 = now_s();
    while (child > 0 && now_s() - t0 < 5) {
        pid_t r = waitpid(child, &st, WNOHANG);
        if (r == child) {
            gone = 1, child = -1;
            break;
        }
        usleep(20000);
    }
    CHECK(gone);
    if (gone) {
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            fprintf(stderr, "  the worker ended with wait status 0x%x\n", st);
    }
    if (sock) zmq_close(sock);
    zmq_ctx_term(zctx);
    return TEST_DONE("test_worker_input");
}
