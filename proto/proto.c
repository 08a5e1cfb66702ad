/* proto.c - msgpack encoding and checked decoding of the control-plane
 * messages (see proto.h and docs/protocol.md). */
#include "proto/proto.h"

#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

/* ---- encoding ---- */

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} enc_t;

static void enc_begin(enc_t *e, uint64_t session, uint32_t id, msg_type_t type, int n_fields) {
    msgpack_sbuffer_init(&e->sb);
    msgpack_packer_init(&e->pk, &e->sb, msgpack_sbuffer_write);
    msgpack_pack_array(&e->pk, (size_t)(4 + n_fields));
    msgpack_pack_int(&e->pk, PROTO_VERSION);
    msgpack_pack_int(&e->pk, type);
    msgpack_pack_uint32(&e->pk, id);
    msgpack_pack_uint64(&e->pk, session);
}

static int enc_end(enc_t *e, proto_buf_t *b) {
    uint64_t session_id = b->session_id;
    proto_buf_free(b);
    b->session_id = session_id;
    if (!e->sb.data) return -1;
    b->data = e->sb.data, b->size = e->sb.size, b->alloc = e->sb.alloc;
    return 0;
}

void proto_buf_free(proto_buf_t *b) {
    free(b->data);
    *b = (proto_buf_t){0};
}

static void pack_ints(msgpack_packer *pk, const int *v, int n) {
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) msgpack_pack_int(pk, v[i]);
}

static void pack_floats(msgpack_packer *pk, const float *v, int n) {
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) msgpack_pack_float(pk, v[i]);
}

static void pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    if (n > PROTO_MAX_TEXT) n = PROTO_MAX_TEXT;
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* Distributions travel as one bin of little-endian f32 (rows x vocab), or nil. */
static void pack_probs(msgpack_packer *pk, const float *p, int rows, int vocab) {
    if (!p || rows <= 0 || vocab <= 0) {
        msgpack_pack_nil(pk);
        return;
    }
    size_t bytes = (size_t)rows * vocab * sizeof(float);
    msgpack_pack_bin(pk, bytes);
    msgpack_pack_bin_body(pk, p, bytes);
}

int proto_encode_hello(proto_buf_t *b, uint32_t id, worker_role_t expect) {
    enc_t e;
    enc_begin(&e, b->session_id, id, MSG_HELLO, 1);
    msgpack_pack_int(&e.pk, expect);
    return enc_end(&e, b);
}

int proto_encode_hello_reply(proto_buf_t *b, uint32_t id, const hello_reply_t *h) {
    enc_t e;
    enc_begin(&e, b->session_id, id, MSG_HELLO_REPLY, 8);
    msgpack_pack_int(&e.pk, h->role);
    pack_str(&e.pk, h->model);
    msgpack_pack_int(&e.pk, h->vocab_size);
    msgpack_pack_uint64(&e.pk, h->vocab_fingerprint);
    msgpack_pack_int(&e.pk, h->seq_len);
    msgpack_pack_uint32(&e.pk, h->caps);
    msgpack_pack_int(&e.pk, h->start_id);
    msgpack_pack_int(&e.pk, h->eos_id);
    return enc_end(&e, b);
}

int proto_encode_source(proto_buf_t *b, uint32_t id, const source_req_t *r) {
    enc_t e;
    enc_begin(&e, b->session_id, id, MSG_SOURCE, 2);
    pack_ints(&e.pk, r->ids, r->n);
    msgpack_pack_int(&e.pk, r->max_dec);
    return enc_end(&e, b);
}

int proto_encode_draft_req(proto_buf_t *b, uint32_t id, const draft_req_t *r) {
    enc_t e;
    /* plane_send travels as a sixth field only when set: a worker that
     * predates the data plane still understands every other request */
    enc_begin(&e, b->session_id, id, MSG_DRAFT_REQ, r->plane_send ? 6 : 5);
    msgpack_pack_int(&e.pk, r->keep);
    pack_ints(&e.pk, r->feed, r->n_feed);
    msgpack_pack_int(&e.pk, r->k);
    msgpack_pack_float(&e.pk, r->alpha_fb);
    msgpack_pack_int(&e.pk, r->want_probs);
    if (r->plane_send) msgpack_pack_int(&e.pk, 1);
    return enc_end(&e, b);
}

int proto_encode_draft_res(proto_buf_t *b, uint32_t id, const draft_res_t *r, int vocab) {
    enc_t e;
    enc_begin(&e, b->session_id, id, MSG_DRAFT_RES, 9);
    pack_ints(&e.pk, r->tokens, r->n);
    pack_floats(&e.pk, r->max_p, r->n);
    msgpack_pack_int(&e.pk, r->end);
    msgpack_pack_int(&e.pk, r->stop_token);
    msgpack_pack_float(&e.pk, r->end_max_p);
    msgpack_pack_int(&e.pk, r->passes);
    msgpack_pack_int(&e.pk, r->cached);
    msgpack_pack_int(&e.pk, r->guess);
    pack_probs(&e.pk, r->probs, r->n + (r->end == DRAFT_STOP), vocab);
    return enc_end(&e, b);
}

int proto_encode_verify_req(proto_buf_t *b, uint32_t id, const verify_req_t *r) {
    enc_t e;
    enc_begin(&e, b->session_id, id, MSG_VERIFY_REQ, r->accept_here ? 7 : 4); /* the acceptance fields only when used */
    msgpack_pack_int(&e.pk, r->pos);
    pack_ints(&e.pk, r->tokens, r->T);
    msgpack_pack_int(&e.pk, r->n_out);
    msgpack_pack_int(&e.pk, r->want_probs);
    if (r->accept_here) {
        msgpack_pack_int(&e.pk, r->plane_rows);
        msgpack_pack_int(&e.pk, r->bonus);
        msgpack_pack_uint64(&e.pk, r->rng);
    }
    return enc_end(&e, b);
}

int proto_encode_verify_res(proto_buf_t *b, uint32_t id, const verify_res_t *r, int vocab) {
    enc_t e;
    enc_begin(&e, b->session_id, id, MSG_VERIFY_RES, r->accept_done ? 7 : 4);
    pack_ints(&e.pk, r->argmax, r->n_out);
    pack_ints(&e.pk, r->sampled, r->n_out);
    pack_floats(&e.pk, r->nll, r->n_out);
    pack_probs(&e.pk, r->probs, r->n_out, vocab);
    if (r->accept_done) {
        msgpack_pack_int(&e.pk, r->accept_m);
        msgpack_pack_int(&e.pk, r->accept_z);
        msgpack_pack_uint64(&e.pk, r->rng);
    }
    return enc_end(&e, b);
}

int proto_encode_error(proto_buf_t *b, uint32_t id, int code, const char *text) {
    enc_t e;
    enc_begin(&e, b->session_id, id, MSG_ERROR, 2);
    msgpack_pack_int(&e.pk, code);
    pack_str(&e.pk, text ? text : "");
    return enc_end(&e, b);
}

int proto_encode_simple(proto_buf_t *b, uint32_t id, msg_type_t type) {
    enc_t e;
    enc_begin(&e, b->session_id, id, type, 0);
    return enc_end(&e, b);
}

int proto_encode_session(proto_buf_t *b, uint32_t id, const session_req_t *r) {
    enc_t e;
    enc_begin(&e, b->session_id, id, MSG_SESSION, 3);
    msgpack_pack_float(&e.pk, r->temperature);
    msgpack_pack_float(&e.pk, r->top_p);
    msgpack_pack_uint64(&e.pk, r->seed);
    return enc_end(&e, b);
}

static void pack_id(msgpack_packer *pk, int has, const unsigned char *id) {
    if (!has) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_bin(pk, PROTO_PLANE_ID);
    msgpack_pack_bin_body(pk, id, PROTO_PLANE_ID);
}

int proto_encode_plane_req(proto_buf_t *b, uint32_t id, const plane_req_t *r) {
    enc_t e;
    enc_begin(&e, b->session_id, id, MSG_PLANE_REQ, 5);
    msgpack_pack_int(&e.pk, r->op);
    msgpack_pack_int(&e.pk, r->kind);
    msgpack_pack_int(&e.pk, r->rank);
    pack_str(&e.pk, r->endpoint);
    pack_id(&e.pk, r->has_id, r->id);
    return enc_end(&e, b);
}

int proto_encode_plane_res(proto_buf_t *b, uint32_t id, const plane_res_t *r) {
    enc_t e;
    enc_begin(&e, b->session_id, id, MSG_PLANE_RES, 6);
    pack_str(&e.pk, r->device);
    pack_str(&e.pk, r->uuid);
    pack_str(&e.pk, r->host);
    msgpack_pack_int(&e.pk, r->nccl);
    pack_str(&e.pk, r->endpoint);
    pack_id(&e.pk, r->has_id, r->id);
    return enc_end(&e, b);
}

/* ---- decoding: every access checked ---- */

static int get_i64(const msgpack_object *o, int64_t lo, int64_t hi, int64_t *out) {
    int64_t v;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX) return -1;
        v = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        v = o->via.i64;
    else
        return -1;
    if (v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int get_int(const msgpack_object *o, int lo, int hi, int *out) {
    int64_t v;
    if (get_i64(o, lo, hi, &v)) return -1;
    *out = (int)v;
    return 0;
}

static int get_float(const msgpack_object *o, double lo, double hi, float *out) {
    double v;
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64) v = o->via.f64;
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) v = (double)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) v = (double)o->via.i64;
    else return -1;
    if (!(v >= lo && v <= hi)) return -1; /* also refuses NaN */
    *out = (float)v;
    return 0;
}

/* An array of n ints, each in [lo, hi], n <= max. */
static int get_ints(const msgpack_object *o, int max, int lo, int hi, int *out, int *n) {
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > (uint32_t)max) return -1;
    for (uint32_t i = 0; i < o->via.array.size; i++)
        if (get_int(&o->via.array.ptr[i], lo, hi, &out[i])) return -1;
    *n = (int)o->via.array.size;
    return 0;
}

static int get_floats(const msgpack_object *o, int n, double lo, double hi, float *out) {
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != (uint32_t)n) return -1;
    for (int i = 0; i < n; i++)
        if (get_float(&o->via.array.ptr[i], lo, hi, &out[i])) return -1;
    return 0;
}

static int get_str(const msgpack_object *o, char *out) {
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size > PROTO_MAX_TEXT) return -1;
    if (o->via.str.size) memcpy(out, o->via.str.ptr, o->via.str.size); /* an empty string may have no pointer */
    out[o->via.str.size] = 0;
    return 0;
}

/* nil, or a bin of exactly rows x vocab f32 whose values are probabilities. */
static proto_err_t get_probs(const msgpack_object *o, int rows, int vocab, proto_msg_t *m, const float **out) {
    *out = NULL;
    if (o->type == MSGPACK_OBJECT_NIL) return PROTO_OK;
    if (o->type != MSGPACK_OBJECT_BIN || vocab <= 0 || rows <= 0) return PROTO_E_FORMAT;
    size_t want = (size_t)rows * vocab * sizeof(float);
    if (o->via.bin.size != want) return PROTO_E_RANGE;
    if (!(m->probs_buf = malloc(want))) return PROTO_E_NOMEM;
    memcpy(m->probs_buf, o->via.bin.ptr, want);
    for (size_t i = 0; i < want / sizeof(float); i++)
        if (!(m->probs_buf[i] >= 0.0f && m->probs_buf[i] <= 1.0f)) return PROTO_E_RANGE;
    *out = m->probs_buf;
    return PROTO_OK;
}

/* nil, or a bin of exactly PROTO_PLANE_ID bytes */
static int get_id(const msgpack_object *o, int *has, unsigned char *id) {
    *has = 0;
    if (o->type == MSGPACK_OBJECT_NIL) return 0;
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != PROTO_PLANE_ID) return -1;
    memcpy(id, o->via.bin.ptr, PROTO_PLANE_ID);
    *has = 1;
    return 0;
}

static proto_err_t decode_body(const msgpack_object *f, int nf, int vocab, proto_msg_t *m) {
    int V = vocab > 0 ? vocab : PROTO_MAX_VOCAB, n, role;
    int64_t u;
    switch (m->type) {
    case MSG_HELLO:
        if (nf != 1 || get_int(&f[0], ROLE_SMALL, ROLE_LARGE, &role)) return PROTO_E_FORMAT;
        m->role = (worker_role_t)role;
        return PROTO_OK;
    case MSG_HELLO_REPLY:
        if (nf != 8 || get_int(&f[0], ROLE_SMALL, ROLE_LARGE, &role) || get_str(&f[1], m->hello.model) ||
            get_int(&f[2], 1, PROTO_MAX_VOCAB, &m->hello.vocab_size) || f[3].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            get_int(&f[4], 1, 1 << 24, &m->hello.seq_len) || get_i64(&f[5], 0, UINT32_MAX, &u) ||
            get_int(&f[6], -1, m->hello.vocab_size - 1, &m->hello.start_id) ||
            get_int(&f[7], -1, m->hello.vocab_size - 1, &m->hello.eos_id))
            return PROTO_E_FORMAT;
        m->hello.role = (worker_role_t)role;
        m->hello.vocab_fingerprint = f[3].via.u64;
        m->hello.caps = (uint32_t)u;
        return PROTO_OK;
    case MSG_DRAFT_REQ: {
        draft_req_t *r = &m->draft_req;
        if ((nf != 5 && nf != 6) || f[1].type != MSGPACK_OBJECT_ARRAY) return PROTO_E_FORMAT;
        uint32_t nfeed = f[1].via.array.size;
        if (nfeed < 1 || nfeed > PROTO_MAX_FEED) return PROTO_E_RANGE;
        if (!(m->feed_buf = malloc(sizeof(int) * nfeed))) return PROTO_E_NOMEM;
        if (get_int(&f[0], 0, 1 << 24, &r->keep) || get_ints(&f[1], PROTO_MAX_FEED, 0, V - 1, m->feed_buf, &n) ||
            get_int(&f[2], 1, BILD_MAX_DRAFT, &r->k) || get_float(&f[3], 0, 1, &r->alpha_fb) ||
            get_int(&f[4], 0, 1, &r->want_probs) || (nf == 6 && get_int(&f[5], 0, 1, &r->plane_send)))
            return PROTO_E_RANGE;
        if (r->plane_send && !r->want_probs) return PROTO_E_RANGE;
        r->feed = m->feed_buf, r->n_feed = n;
        return PROTO_OK;
    }
    case MSG_DRAFT_RES: {
        draft_res_t *r = &m->draft_res;
        int end;
        if (nf != 9 || get_ints(&f[0], BILD_MAX_DRAFT, 0, V - 1, r->tokens, &r->n) ||
            get_floats(&f[1], r->n, 0, 1, r->max_p) || get_int(&f[2], DRAFT_LIMIT, DRAFT_STOP, &end) ||
            get_int(&f[3], -1, V - 1, &r->stop_token) || get_float(&f[4], 0, 1, &r->end_max_p) ||
            get_int(&f[5], 0, BILD_MAX_DRAFT + 1, &r->passes) || get_int(&f[6], 0, 1 << 24, &r->cached) ||
            get_int(&f[7], -1, V - 1, &r->guess))
            return PROTO_E_RANGE;
        r->end = (draft_end_t)end;
        return get_probs(&f[8], r->n + (r->end == DRAFT_STOP), vocab, m, &r->probs);
    }
    case MSG_VERIFY_REQ: {
        verify_req_t *r = &m->verify_req;
        if ((nf != 4 && nf != 7) || f[1].type != MSGPACK_OBJECT_ARRAY) return PROTO_E_FORMAT;
        uint32_t nt = f[1].via.array.size;
        if (nt < 1 || nt > PROTO_MAX_FEED) return PROTO_E_RANGE;
        if (!(m->feed_buf = malloc(sizeof(int) * nt))) return PROTO_E_NOMEM;
        if (get_int(&f[0], 0, 1 << 24, &r->pos) || get_ints(&f[1], PROTO_MAX_FEED, 0, V - 1, m->feed_buf, &n) ||
            get_int(&f[2], 1, BILD_MAX_DRAFT, &r->n_out) || r->n_out > n || get_int(&f[3], 0, 1, &r->want_probs))
            return PROTO_E_RANGE;
        if (nf == 7) {
            if (get_int(&f[4], 0, r->n_out, &r->plane_rows) || get_int(&f[5], 0, 1, &r->bonus) ||
                f[6].type != MSGPACK_OBJECT_POSITIVE_INTEGER || !r->want_probs)
                return PROTO_E_RANGE;
            r->accept_here = 1, r->rng = f[6].via.u64;
        }
        r->tokens = m->feed_buf, r->T = n;
        return PROTO_OK;
    }
    case MSG_VERIFY_RES: {
        verify_res_t *r = &m->verify_res;
        int n2;
        if ((nf != 4 && nf != 7) || get_ints(&f[0], BILD_MAX_DRAFT, 0, V - 1, r->argmax, &r->n_out) ||
            get_ints(&f[1], BILD_MAX_DRAFT, 0, V - 1, r->sampled, &n2) || n2 != r->n_out ||
            get_floats(&f[2], r->n_out, 0, 1e9, r->nll))
            return PROTO_E_RANGE;
        if (nf == 7) {
            if (get_int(&f[4], 0, r->n_out - 1, &r->accept_m) || get_int(&f[5], -1, V - 1, &r->accept_z) ||
                f[6].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return PROTO_E_RANGE;
            r->accept_done = 1, r->rng = f[6].via.u64;
        }
        return get_probs(&f[3], r->n_out, vocab, m, &r->probs);
    }
    case MSG_SESSION: {
        session_req_t *r = &m->session;
        if (nf != 3 || get_float(&f[0], 0, 100, &r->temperature) || get_float(&f[1], 0, 1, &r->top_p) ||
            f[2].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return PROTO_E_RANGE;
        r->seed = f[2].via.u64;
        return PROTO_OK;
    }
    case MSG_SOURCE: {
        source_req_t *r = &m->source;
        if (nf != 2 || f[0].type != MSGPACK_OBJECT_ARRAY) return PROTO_E_FORMAT;
        uint32_t ns = f[0].via.array.size;
        if (ns < 1 || ns > PROTO_MAX_FEED) return PROTO_E_RANGE;
        if (!(m->feed_buf = malloc(sizeof(int) * ns))) return PROTO_E_NOMEM;
        if (get_ints(&f[0], PROTO_MAX_FEED, 0, V - 1, m->feed_buf, &r->n) || get_int(&f[1], 1, 1 << 24, &r->max_dec))
            return PROTO_E_RANGE;
        r->ids = m->feed_buf;
        return PROTO_OK;
    }
    case MSG_PLANE_REQ: {
        plane_req_t *r = &m->plane_req;
        if (nf != 5 || get_int(&f[0], PLANE_OP_QUERY, PLANE_OP_CLOSE, &r->op) || get_int(&f[1], 0, 2, &r->kind) ||
            get_int(&f[2], 0, 1, &r->rank) || get_str(&f[3], r->endpoint) || get_id(&f[4], &r->has_id, r->id))
            return PROTO_E_RANGE;
        return PROTO_OK;
    }
    case MSG_PLANE_RES: {
        plane_res_t *r = &m->plane_res;
        if (nf != 6 || get_str(&f[0], r->device) || get_str(&f[1], r->uuid) || get_str(&f[2], r->host) ||
            get_int(&f[3], 0, 1, &r->nccl) || get_str(&f[4], r->endpoint) || get_id(&f[5], &r->has_id, r->id))
            return PROTO_E_RANGE;
        return PROTO_OK;
    }
    case MSG_ERROR:
        if (nf != 2 || get_int(&f[0], INT32_MIN + 1, INT32_MAX, &m->err_code) || get_str(&f[1], m->err_text))
            return PROTO_E_FORMAT;
        return PROTO_OK;
    case MSG_PING:
    case MSG_PONG:
    case MSG_SHUTDOWN:
    case MSG_BYE:
        return nf == 0 ? PROTO_OK : PROTO_E_FORMAT;
    }
    return PROTO_E_TYPE;
}

static uint64_t be_uint(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v = v << 8 | p[i];
    return v;
}

/* Walks the msgpack encoding of data[0, n) without building anything and
 * checks that it is exactly one well-formed object whose containers declare
 * no more elements than there are bytes left. msgpack-c allocates a
 * container's element array from its declared count before reading the
 * elements, so without this a few bytes declaring 2^32 elements would make
 * it allocate tens of gigabytes. */
static int prescan(const unsigned char *p, size_t n) {
    size_t i = 0, pending = 1; /* objects still to read */
    while (pending) {
        if (i >= n) return -1;
        unsigned c = p[i++];
        size_t len = 0, items = 0;
        int lb = 0; /* bytes of a length field */
        pending--;
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) continue;
        if ((c & 0xf0) == 0x80) items = 2 * (c & 0x0f);
        else if ((c & 0xf0) == 0x90) items = c & 0x0f;
        else if ((c & 0xe0) == 0xa0) len = c & 0x1f;
        else
            switch (c) {
            case 0xc4: case 0xd9: lb = 1; break;                 /* bin8, str8 */
            case 0xc5: case 0xda: lb = 2; break;                 /* bin16, str16 */
            case 0xc6: case 0xdb: lb = 4; break;                 /* bin32, str32 */
            case 0xc7: lb = 1, len = 1; break;                   /* ext8: + type byte */
            case 0xc8: lb = 2, len = 1; break;
            case 0xc9: lb = 4, len = 1; break;
            case 0xca: len = 4; break;
            case 0xcb: len = 8; break;
            case 0xcc: case 0xd0: len = 1; break;
            case 0xcd: case 0xd1: len = 2; break;
            case 0xce: case 0xd2: len = 4; break;
            case 0xcf: case 0xd3: len = 8; break;
            case 0xd4: len = 2; break;                           /* fixext: type + data */
            case 0xd5: len = 3; break;
            case 0xd6: len = 5; break;
            case 0xd7: len = 9; break;
            case 0xd8: len = 17; break;
            case 0xdc: case 0xdd: case 0xde: case 0xdf: {        /* array16/32, map16/32 */
                int b = c & 1 ? 4 : 2;
                if (n - i < (size_t)b) return -1;
                items = (size_t)be_uint(p + i, b) * (c >= 0xde ? 2 : 1);
                i += (size_t)b;
                break;
            }
            default: return -1;                                  /* 0xc1: never used */
            }
        if (lb) {
            if (n - i < (size_t)lb) return -1;
            len += (size_t)be_uint(p + i, lb);
            i += (size_t)lb;
        }
        if (len > n - i) return -1;
        i += len;
        if (items > n - i || pending + items > n - i) return -1; /* each element takes a byte at least */
        pending += items;
    }
    return i == n ? 0 : -1;
}

proto_err_t proto_decode(const void *data, size_t n, int vocab, proto_msg_t *m) {
    memset(m, 0, sizeof *m);
    if (prescan(data, n)) return PROTO_E_FORMAT;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    proto_err_t rc = PROTO_E_FORMAT;
    int ver = 0;
    /* one complete object, nothing after it */
    if (msgpack_unpack_next(&u, data, n, &off) != MSGPACK_UNPACK_SUCCESS || off != n) goto out;
    const msgpack_object *o = &u.data;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 3) goto out;
    const msgpack_object *f = o->via.array.ptr;
    int type;
    int64_t id;
    if (get_int(&f[0], 0, 1 << 30, &ver) || get_int(&f[1], 0, 1 << 30, &type) || get_i64(&f[2], 0, UINT32_MAX, &id))
        goto out;
    if (ver != PROTO_VERSION) { /* before anything else of the framing: that may differ between versions */
        rc = PROTO_E_VERSION;
        goto out;
    }
    if (o->via.array.size < 4 || f[3].type != MSGPACK_OBJECT_POSITIVE_INTEGER) goto out;
    m->type = (msg_type_t)type;
    m->id = (uint32_t)id;
    m->session_id = f[3].via.u64;
    rc = decode_body(f + 4, (int)o->via.array.size - 4, vocab, m);
out:
    msgpack_unpacked_destroy(&u);
    if (rc != PROTO_OK) proto_msg_free(m);
    if (rc == PROTO_E_VERSION) m->version = ver;
    return rc;
}

void proto_msg_free(proto_msg_t *m) {
    free(m->feed_buf);
    free(m->probs_buf);
    memset(m, 0, sizeof *m);
}

const char *proto_err_name(proto_err_t e) {
    switch (e) {
    case PROTO_OK: return "ok";
    case PROTO_E_FORMAT: return "malformed message";
    case PROTO_E_VERSION: return "protocol version mismatch";
    case PROTO_E_TYPE: return "unknown message type";
    case PROTO_E_RANGE: return "field out of range";
    case PROTO_E_NOMEM: return "out of memory";
    }
    return "unknown error";
}

uint64_t proto_fingerprint_add(uint64_t fp, const void *bytes, size_t n) {
    const unsigned char *p = bytes;
    for (size_t i = 0; i < n; i++) fp = (fp ^ p[i]) * 1099511628211ULL;
    return (fp ^ 0xff) * 1099511628211ULL; /* a separator, so "ab"+"c" != "a"+"bc" */
}
