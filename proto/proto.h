/* proto.h - the control-plane messages between the coordinator and the
 * workers, encoded with msgpack-c; transport.h carries them over ZeroMQ and
 * serve.h is the workers' loop (docs/protocol.md).
 *
 * Every message is one msgpack array:
 *     [version, type, request id, session id, fields...]
 * with the fields positional and typed. The session id (uint64, chosen at
 * random by each coordinator connection) names the state a worker keeps for
 * that coordinator (its KV cache, sampling stream, data plane); replies
 * carry the session of their request. Decoding checks the version, the
 * type, every field's msgpack type, every length against the limits below
 * and every value's range, and returns an error code instead of asserting:
 * bytes from the network are untrusted.
 */
#ifndef BILD_PROTO_H
#define BILD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/worker.h"

#ifndef PROTO_VERSION /* tests build a peer of another version with -DPROTO_VERSION=2 */
#define PROTO_VERSION 3 /* 2: the session id in every message; MSG_BYE. 3: MSG_SOURCE, the hello reply's
                           start and stop ids (encoder-decoders) */
#endif
#define PROTO_MAX_FEED (1 << 20)   /* most tokens one draft request may feed */
#define PROTO_MAX_VOCAB (1 << 22)  /* most vocabulary entries a distribution may have */
#define PROTO_MAX_TEXT 1024        /* longest string field */

typedef enum {
    MSG_HELLO = 1,       /* coordinator -> worker: who are you? */
    MSG_HELLO_REPLY = 2, /* worker -> coordinator: role, model, vocabulary fingerprint */
    MSG_DRAFT_REQ = 3,
    MSG_DRAFT_RES = 4,
    MSG_VERIFY_REQ = 5,
    MSG_VERIFY_RES = 6,
    MSG_ERROR = 7,       /* either way: a request failed */
    MSG_PING = 8,
    MSG_PONG = 9,
    MSG_SHUTDOWN = 10,
    MSG_SESSION = 11,    /* coordinator -> worker: sampling settings (answered with PONG) */
    MSG_PLANE_REQ = 12,  /* coordinator -> worker: data-plane set-up step (proto/plane.h) */
    MSG_PLANE_RES = 13,  /* worker -> coordinator: its device, and what the step produced */
    MSG_BYE = 14,        /* coordinator -> worker: end my session (answered with PONG) */
    MSG_SOURCE = 15,     /* coordinator -> worker: an encoder-decoder's source for the next request (PONG) */
} msg_type_t;

typedef enum { ROLE_SMALL = 1, ROLE_LARGE = 2 } worker_role_t;

/* Decoding results. */
typedef enum {
    PROTO_OK = 0,
    PROTO_E_FORMAT = -1,  /* not a msgpack array of the expected shape */
    PROTO_E_VERSION = -2, /* another protocol version */
    PROTO_E_TYPE = -3,    /* unknown message type */
    PROTO_E_RANGE = -4,   /* a length or value out of range */
    PROTO_E_NOMEM = -5,
} proto_err_t;

/* hello_reply_t.caps: the model is an encoder-decoder (T5, mT5): each
 * request starts with a SOURCE, and the decoder starts from start_id */
#define PROTO_CAP_ENCDEC 1u

typedef struct {
    worker_role_t role;
    char model[PROTO_MAX_TEXT + 1];
    int vocab_size, seq_len; /* seq_len: the longest sequence (an encoder-decoder's: decoder tokens) */
    uint64_t vocab_fingerprint;
    uint32_t caps;       /* PROTO_CAP_ bits */
    int start_id, eos_id; /* the decoder's first token and the stop token (config.json's); -1: none */
} hello_reply_t;

/* MSG_SOURCE: the source ids (ending with EOS) an encoder-decoder worker
 * encodes for the session's next request, and the most decoder tokens the
 * request will run (its cache is sized for them). ids points into the
 * message's feed_buf. */
typedef struct {
    const int *ids;
    int n, max_dec;
} source_req_t;

/* MSG_SESSION: how the worker samples from now on (temperature 0: greedy).
 * Its random stream starts afresh from seed. */
typedef struct {
    float temperature, top_p;
    uint64_t seed;
} session_req_t;

#define PROTO_PLANE_ID 128 /* bytes of an NCCL unique id */

typedef enum { PLANE_OP_QUERY = 1, PLANE_OP_ID = 2, PLANE_OP_OPEN = 3, PLANE_OP_CLOSE = 4 } plane_op_t;

/* MSG_PLANE_REQ: QUERY (which device?), ID (large: make an NCCL unique id),
 * OPEN (join a plane of kind as rank, at endpoint or with id), CLOSE. */
typedef struct {
    int op, kind, rank;
    char endpoint[PROTO_MAX_TEXT + 1];
    int has_id;
    unsigned char id[PROTO_PLANE_ID];
} plane_req_t;

/* MSG_PLANE_RES: the worker's device ("cpu", "cuda:1"), the GPU's UUID ("" on
 * a CPU), a host identity, whether it can use NCCL; and the endpoint it
 * bound (OPEN of a host plane, rank 0) or the id it made (ID). */
typedef struct {
    char device[PROTO_MAX_TEXT + 1], uuid[PROTO_MAX_TEXT + 1], host[PROTO_MAX_TEXT + 1];
    int nccl;
    char endpoint[PROTO_MAX_TEXT + 1];
    int has_id;
    unsigned char id[PROTO_PLANE_ID];
} plane_res_t;

/* One decoded message. Fields not used by its type are zero. The feed
 * tokens and distributions are owned by the message (proto_msg_free). */
typedef struct {
    msg_type_t type;
    uint32_t id;          /* request id, echoed in the reply */
    uint64_t session_id;  /* the session the message belongs to */
    worker_role_t role;   /* MSG_HELLO: the role the coordinator expects */
    hello_reply_t hello;  /* MSG_HELLO_REPLY */
    draft_req_t draft_req;   /* .feed points into feed_buf */
    draft_res_t draft_res;   /* .probs points into probs_buf */
    verify_req_t verify_req; /* .tokens points into feed_buf */
    verify_res_t verify_res; /* .probs points into probs_buf */
    session_req_t session;   /* MSG_SESSION */
    source_req_t source;     /* MSG_SOURCE: .ids points into feed_buf */
    plane_req_t plane_req;   /* MSG_PLANE_REQ */
    plane_res_t plane_res;   /* MSG_PLANE_RES */
    int err_code;            /* MSG_ERROR */
    char err_text[PROTO_MAX_TEXT + 1];
    int version;             /* PROTO_E_VERSION: the version the sender speaks */
    int *feed_buf;
    float *probs_buf;
} proto_msg_t;

/* A growable output buffer (msgpack_sbuffer underneath). Messages encoded
 * into it carry its session id: set it before encoding; the encoders keep
 * it. */
typedef struct {
    char *data;
    size_t size, alloc;
    uint64_t session_id;
} proto_buf_t;

void proto_buf_free(proto_buf_t *b);

/* Encoders: append one message to b (cleared first). Return 0, or -1 on
 * allocation failure. vocab is the row length of probs (ignored when NULL). */
int proto_encode_hello(proto_buf_t *b, uint32_t id, worker_role_t expect);
int proto_encode_hello_reply(proto_buf_t *b, uint32_t id, const hello_reply_t *h);
int proto_encode_draft_req(proto_buf_t *b, uint32_t id, const draft_req_t *r);
int proto_encode_draft_res(proto_buf_t *b, uint32_t id, const draft_res_t *r, int vocab);
int proto_encode_verify_req(proto_buf_t *b, uint32_t id, const verify_req_t *r);
int proto_encode_verify_res(proto_buf_t *b, uint32_t id, const verify_res_t *r, int vocab);
int proto_encode_error(proto_buf_t *b, uint32_t id, int code, const char *text);
int proto_encode_simple(proto_buf_t *b, uint32_t id, msg_type_t type); /* PING, PONG, SHUTDOWN, BYE */
int proto_encode_session(proto_buf_t *b, uint32_t id, const session_req_t *r);
int proto_encode_source(proto_buf_t *b, uint32_t id, const source_req_t *r);
int proto_encode_plane_req(proto_buf_t *b, uint32_t id, const plane_req_t *r);
int proto_encode_plane_res(proto_buf_t *b, uint32_t id, const plane_res_t *r);

/* Decodes one message from data[0, n). vocab is the expected row length of
 * any distribution it carries (0: none may be present). Returns PROTO_OK
 * with *m filled (free it with proto_msg_free), or an error code with *m
 * empty; never aborts on bad input. */
proto_err_t proto_decode(const void *data, size_t n, int vocab, proto_msg_t *m);
void proto_msg_free(proto_msg_t *m);

const char *proto_err_name(proto_err_t e);

/* FNV-1a fingerprint of a vocabulary given as its pieces' decoded bytes,
 * fed one piece at a time: start with PROTO_FP_INIT. */
#define PROTO_FP_INIT 1469598103934665603ULL
uint64_t proto_fingerprint_add(uint64_t fp, const void *bytes, size_t n);

#endif
