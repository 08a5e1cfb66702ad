/* transport.c - see transport.h. Connection events come from libzmq's
 * socket monitor (a PAIR socket on an inproc address per monitored socket);
 * the ZAP handler is a REP socket on inproc://zeromq.zap.01 that the worker
 * polls beside its request socket, so no extra thread is needed. */
#include "proto/transport.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

typedef char key_text_t[TRANSPORT_KEY_TEXT + 1];

int transport_is_local(const char *ep) {
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9)) return 1;
    if (strncmp(ep, "tcp://", 6)) return 0;
    const char *h = ep + 6;
    return !strncmp(h, "127.", 4) || !strncmp(h, "localhost:", 10) || !strncmp(h, "[::1]:", 6);
}

/* ---- keys ---- */

int transport_keygen(transport_keypair_t *kp) {
    memset(kp, 0, sizeof(*kp));
    return zmq_has("curve") && zmq_curve_keypair(kp->pub, kp->sec) == 0 ? 0 : -1;
}

int transport_write_keys(const char *prefix, const transport_keypair_t *kp, char *err, size_t errlen) {
    char path[4096];
    const char *which[2] = {"key", "pub"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s.%s", prefix, which[i]);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, i == 0 ? 0600 : 0644);
        if (fd < 0) {
            snprintf(err, errlen, "cannot create %s: %s%s", path, strerror(errno),
                     errno == EEXIST ? " (refusing to overwrite a key; remove it first)" : "");
            return -1;
        }
        FILE *f = fdopen(fd, "w");
        int bad = !f;
        if (f && i == 0)
            bad = fprintf(f, "# bild CURVE key pair: keep this file secret; give %s.pub to peers\npublic = %s\n"
                             "secret = %s\n", prefix, kp->pub, kp->sec) < 0;
        else if (f)
            bad = fprintf(f, "%s\n", kp->pub) < 0;
        if (f ? fclose(f) != 0 || bad : (close(fd), 1)) {
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* 1 if s[0, 40) is Z85 text of a 32-byte key followed by the end of the word. */
static int is_key(const char *s) {
    uint8_t bin[32];
    size_t n = 0;
    while (s[n] && !isspace((unsigned char)s[n])) n++;
    if (n != TRANSPORT_KEY_TEXT) return 0;
    char tmp[TRANSPORT_KEY_TEXT + 1];
    memcpy(tmp, s, TRANSPORT_KEY_TEXT), tmp[TRANSPORT_KEY_TEXT] = 0;
    return zmq_z85_decode(bin, tmp) != NULL;
}

/* Calls fn(ud, name, key) for each "name = KEY" line (name "" for a bare
 * key). Returns the number of keys, or -1 with a message on a bad line. */
static int scan_keys(const char *path, void (*fn)(void *, const char *, const char *), void *ud, char *err,
                     size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open key file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[512];
    int n = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = line, *name = "";
        while (isspace((unsigned char)*s)) s++;
        /* Z85 keys may hold '=' and '#': a bare key is recognised first */
        if (!is_key(s)) {
            if (!*s || *s == '#') continue;
            char *w = s;
            while (isalpha((unsigned char)*w)) w++;
            char *e = w;
            while (*w == ' ' || *w == '\t') w++;
            if (e > s && *w == '=') {
                *e = 0, name = s, s = w + 1;
                while (*s == ' ' || *s == '\t') s++;
            }
        }
        if (!is_key(s)) {
            snprintf(err, errlen, "%s line %d: not a CURVE key (expected 40 Z85 characters, as bild keygen writes)",
                     path, lineno);
            fclose(f);
            return -1;
        }
        s[TRANSPORT_KEY_TEXT] = 0;
        fn(ud, name, s);
        n++;
    }
    fclose(f);
    return n;
}

static void take_pair(void *ud, const char *name, const char *key) {
    transport_keypair_t *kp = ud;
    if (!strcmp(name, "public")) snprintf(kp->pub, sizeof kp->pub, "%s", key);
    if (!strcmp(name, "secret")) snprintf(kp->sec, sizeof kp->sec, "%s", key);
}

int transport_load_keypair(const char *path, transport_keypair_t *kp, char *err, size_t errlen) {
    memset(kp, 0, sizeof(*kp));
    if (scan_keys(path, take_pair, kp, err, errlen) < 0) return -1;
    if (!kp->pub[0] || !kp->sec[0]) {
        snprintf(err, errlen, "%s: not a key pair file (needs 'public = ' and 'secret = ' lines; make one with "
                              "bild keygen)", path);
        return -1;
    }
    char derived[TRANSPORT_KEY_TEXT + 1];
    if (zmq_curve_public(derived, kp->sec) != 0 || strcmp(derived, kp->pub)) {
        snprintf(err, errlen, "%s: the public key does not belong to the secret key", path);
        return -1;
    }
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077))
        fprintf(stderr, "bild: warning: key file %s is readable by other users (chmod 600 it)\n", path);
    return 0;
}

typedef struct {
    key_text_t *keys;
    int n, cap, oom;
} key_list_t;

static void take_public(void *ud, const char *name, const char *key) {
    key_list_t *l = ud;
    if (*name && strcmp(name, "public")) return; /* a secret line is not a public key */
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        key_text_t *k = realloc(l->keys, sizeof(key_text_t) * (size_t)cap);
        if (!k) {
            l->oom = 1;
            return;
        }
        l->keys = k, l->cap = cap;
    }
    snprintf(l->keys[l->n++], sizeof(key_text_t), "%s", key);
}

int transport_load_public_keys(const char *path, char (**keys)[TRANSPORT_KEY_TEXT + 1], char *err, size_t errlen) {
    key_list_t l = {0};
    *keys = NULL;
    *err = 0;
    if (scan_keys(path, take_public, &l, err, errlen) < 0 || l.oom || l.n == 0) {
        if (l.oom) snprintf(err, errlen, "out of memory reading %s", path);
        else if (l.n == 0 && !*err) snprintf(err, errlen, "%s holds no public key", path);
        free(l.keys);
        return -1;
    }
    *keys = l.keys;
    return l.n;
}

/* ---- monitors ---- */

/* Starts monitoring sock; returns the PAIR socket that receives its events. */
static void *monitor_open(void *zctx, void *sock, int events) {
    static int counter; /* only makes addresses unique; races are harmless with the pointer in the name */
    char addr[96];
    snprintf(addr, sizeof addr, "inproc://bild-monitor-%p-%d", sock, counter++);
    if (zmq_socket_monitor(sock, addr, events) != 0) return NULL;
    void *m = zmq_socket(zctx, ZMQ_PAIR);
    int linger = 0;
    if (m) zmq_setsockopt(m, ZMQ_LINGER, &linger, sizeof linger);
    if (m && zmq_connect(m, addr) != 0) zmq_close(m), m = NULL;
    return m;
}

/* Reads one pending event without blocking: returns its id, 0 if none.
 * The peer's address goes to addr. */
static int monitor_read_value(void *m, char *addr, size_t addrlen, uint32_t *value) {
    zmq_msg_t a, b;
    zmq_msg_init(&a);
    if (zmq_msg_recv(&a, m, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&a);
        return 0;
    }
    uint16_t ev = 0;
    if (zmq_msg_size(&a) >= 2) memcpy(&ev, zmq_msg_data(&a), 2);
    if (value && zmq_msg_size(&a) >= 6) memcpy(value, (char *)zmq_msg_data(&a) + 2, 4);
    int more = zmq_msg_more(&a);
    zmq_msg_close(&a);
    if (addr) *addr = 0;
    if (more) {
        zmq_msg_init(&b);
        if (zmq_msg_recv(&b, m, 0) >= 0 && addr) {
            size_t n = zmq_msg_size(&b) < addrlen - 1 ? zmq_msg_size(&b) : addrlen - 1;
            memcpy(addr, zmq_msg_data(&b), n), addr[n] = 0;
        }
        zmq_msg_close(&b);
    }
    return ev;
}

static int monitor_read(void *m, char *addr, size_t addrlen) { return monitor_read_value(m, addr, addrlen, NULL); }

static void set_heartbeat(void *s, int ivl) {
    int tmo = 3 * ivl, ttl = 3 * ivl;
    zmq_setsockopt(s, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(s, ZMQ_HEARTBEAT_TIMEOUT, &tmo, sizeof tmo);
    zmq_setsockopt(s, ZMQ_HEARTBEAT_TTL, &ttl, sizeof ttl);
}

/* ---- worker side ---- */

#define GONE_MAX 64 /* closed connections remembered until transport_server_gone reads them */

struct transport_server {
    void *sock, *zap, *mon;
    key_text_t *allowed;
    int n_allowed;
    char name[64];
    int gone[GONE_MAX], n_gone; /* file descriptors of connections closed since the last transport_server_gone */
};

/* 1 if a process accepts connections on the unix socket at path. */
static int ipc_in_use(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) return 0; /* libzmq reports the bad path */
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    int used = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return used;
}

transport_server_t *transport_server_new(void *zctx, const transport_server_opts_t *o, int *refused, char *err,
                                         size_t errlen) {
    *refused = 0;
    if (!o->allow_remote && !transport_is_local(o->endpoint)) {
        snprintf(err, errlen, "refusing to bind %s: not a loopback or ipc:// address (pass --allow-remote to "
                              "listen on the network, with CURVE keys)", o->endpoint);
        *refused = 1;
        return NULL;
    }
    if (!strncmp(o->endpoint, "ipc://", 6) && ipc_in_use(o->endpoint + 6)) {
        /* libzmq would unlink the path and bind anew, silently taking the
         * socket from the worker that has it */
        snprintf(err, errlen, "cannot bind %s: another process is listening there (stop it, or pick another path)",
                 o->endpoint);
        return NULL;
    }
    transport_server_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(s->name, sizeof s->name, "%s", o->name ? o->name : "worker");
    int linger = 0, on = 1;
    if (o->curve) {
        if (!zmq_has("curve")) {
            snprintf(err, errlen, "this libzmq was built without CURVE support");
            goto fail;
        }
        /* the ZAP handler must exist before the socket binds */
        if (!(s->allowed = malloc(sizeof(key_text_t) * (size_t)(o->n_allowed ? o->n_allowed : 1)))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        memcpy(s->allowed, o->allowed, sizeof(key_text_t) * (size_t)o->n_allowed);
        s->n_allowed = o->n_allowed;
        if (!(s->zap = zmq_socket(zctx, ZMQ_REP)) || zmq_bind(s->zap, "inproc://zeromq.zap.01") != 0) {
            snprintf(err, errlen, "cannot start the CURVE authenticator: %s", zmq_strerror(zmq_errno()));
            goto fail;
        }
        zmq_setsockopt(s->zap, ZMQ_LINGER, &linger, sizeof linger);
    }
    if (!(s->sock = zmq_socket(zctx, ZMQ_ROUTER))) {
        snprintf(err, errlen, "cannot create a socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger);
    set_heartbeat(s->sock, o->heartbeat_ms > 0 ? o->heartbeat_ms : TRANSPORT_HEARTBEAT_MS);
    if (o->curve) {
        zmq_setsockopt(s->sock, ZMQ_CURVE_SERVER, &on, sizeof on);
        zmq_setsockopt(s->sock, ZMQ_CURVE_SECRETKEY, o->curve->sec, TRANSPORT_KEY_TEXT);
        zmq_setsockopt(s->sock, ZMQ_ZAP_DOMAIN, "bild", 4);
    }
    s->mon = monitor_open(zctx, s->sock, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |
                                             ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                             ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    if (zmq_bind(s->sock, o->endpoint) != 0) {
        snprintf(err, errlen, "cannot bind %s: %s", o->endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    return s;
fail:
    transport_server_destroy(&s);
    return NULL;
}

void transport_server_destroy(transport_server_t **ps) {
    if (!ps || !*ps) return;
    transport_server_t *s = *ps;
    if (s->sock) zmq_close(s->sock);
    if (s->mon) zmq_close(s->mon);
    if (s->zap) zmq_close(s->zap);
    free(s->allowed);
    free(s);
    *ps = NULL;
}

#define ENVELOPE_MAX 8 /* routing id, REQ's correlation id, the empty delimiter: 3 from a REQ client */

struct transport_req {
    zmq_msg_t env[ENVELOPE_MAX];
    int n_env;
    zmq_msg_t body;
    int fd; /* the connection it came on */
};

int transport_server_gone(transport_server_t *s, int *fds, int max) {
    int n = s->n_gone < max ? s->n_gone : max;
    memcpy(fds, s->gone, sizeof(int) * (size_t)n);
    s->n_gone = 0;
    return n;
}

int transport_req_fd(const transport_req_t *r) { return r->fd; }

int transport_server_recv(transport_server_t *s, transport_req_t **out) {
    *out = NULL;
    transport_req_t *r = calloc(1, sizeof *r);
    if (!r) return -1;
    int n = 0, more = 1, dropped = 0, flags = ZMQ_DONTWAIT;
    zmq_msg_t m;
    while (more) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->sock, flags) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&m);
            for (int i = 0; i < n; i++) zmq_msg_close(&r->env[i]);
            free(r);
            return n == 0 && (e == EAGAIN || e == EINTR) ? 0 : -1;
        }
        flags = 0; /* the rest of a multipart message is there already */
        more = zmq_msg_more(&m);
        if (!more) break;
        if (n < ENVELOPE_MAX) r->env[n++] = m;
        else zmq_msg_close(&m), dropped = 1;
    }
    r->n_env = n;
    r->body = m;
    r->fd = zmq_msg_get(&r->body, ZMQ_SRCFD);
    if (dropped || n == 0) { /* not from a REQ socket: nothing to route a reply by */
        fprintf(stderr, "bild %s: dropped a message with a malformed envelope (%d frames)\n", s->name, n);
        transport_req_free(&r);
        return 0;
    }
    *out = r;
    return 1;
}

const void *transport_req_data(const transport_req_t *r, size_t *n) {
    *n = zmq_msg_size((zmq_msg_t *)&r->body);
    return zmq_msg_data((zmq_msg_t *)&r->body);
}

int transport_server_reply(transport_server_t *s, transport_req_t **pr, const void *data, size_t n) {
    transport_req_t *r = *pr;
    int rc = 0;
    for (int i = 0; i < r->n_env && rc == 0; i++)
        if (zmq_send(s->sock, zmq_msg_data(&r->env[i]), zmq_msg_size(&r->env[i]), ZMQ_SNDMORE) < 0) rc = -1;
    if (rc == 0 && zmq_send(s->sock, data, n, 0) < 0) rc = -1;
    transport_req_free(pr);
    return rc;
}

void transport_req_free(transport_req_t **pr) {
    if (!pr || !*pr) return;
    for (int i = 0; i < (*pr)->n_env; i++) zmq_msg_close(&(*pr)->env[i]);
    zmq_msg_close(&(*pr)->body);
    free(*pr);
    *pr = NULL;
}

/* Answers one ZAP request: CURVE clients whose key is on the allow list get
 * 200, everyone else 400. Frames: version, request id, domain, address,
 * identity, mechanism, credentials... */
static void zap_answer(transport_server_t *s) {
    zmq_msg_t fr[8];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t tmp;
        zmq_msg_t *m = n < 8 ? &fr[n] : &tmp;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, s->zap, 0) < 0) {
            zmq_msg_close(m);
            break;
        }
        more = zmq_msg_more(m);
        if (n < 8) n++;
        else zmq_msg_close(m);
    }
    int ok = 0;
    char client[TRANSPORT_KEY_TEXT + 1] = "", addr[64] = "";
    if (n >= 7 && zmq_msg_size(&fr[5]) == 5 && !memcmp(zmq_msg_data(&fr[5]), "CURVE", 5) &&
        zmq_msg_size(&fr[6]) == 32) {
        zmq_z85_encode(client, zmq_msg_data(&fr[6]), 32);
        for (int i = 0; i < s->n_allowed && !ok; i++) ok = !strcmp(client, s->allowed[i]);
        size_t an = zmq_msg_size(&fr[3]) < sizeof addr - 1 ? zmq_msg_size(&fr[3]) : sizeof addr - 1;
        memcpy(addr, zmq_msg_data(&fr[3]), an), addr[an] = 0;
    }
    if (!ok)
        fprintf(stderr, "bild %s: refused a connection from %s: client key %s is not on the allow list\n", s->name,
                addr[0] ? addr : "?", client[0] ? client : "(none)");
    const char *status = ok ? "200" : "400", *text = ok ? "OK" : "key not allowed";
    if (n >= 2) {
        zmq_send(s->zap, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(s->zap, zmq_msg_data(&fr[1]), zmq_msg_size(&fr[1]), ZMQ_SNDMORE);
        zmq_send(s->zap, status, 3, ZMQ_SNDMORE);
        zmq_send(s->zap, text, strlen(text), ZMQ_SNDMORE);
        zmq_send(s->zap, "", 0, ZMQ_SNDMORE); /* user id */
        zmq_send(s->zap, "", 0, 0);           /* metadata */
    }
    for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
}

int transport_server_wait(transport_server_t *s, int timeout_ms) {
    zmq_pollitem_t it[3] = {{s->sock, 0, ZMQ_POLLIN, 0}, {s->mon, 0, ZMQ_POLLIN, 0}, {s->zap, 0, ZMQ_POLLIN, 0}};
    int n = s->zap ? 3 : s->mon ? 2 : 1;
    if (zmq_poll(it, n, timeout_ms) < 0) return zmq_errno() == EINTR ? 0 : -1;
    if (n >= 3 && (it[2].revents & ZMQ_POLLIN)) zap_answer(s);
    if (n >= 2 && (it[1].revents & ZMQ_POLLIN)) {
        char addr[256];
        int ev;
        uint32_t fd = 0;
        while ((ev = monitor_read_value(s->mon, addr, sizeof addr, &fd)) != 0) {
            if (ev == ZMQ_EVENT_ACCEPTED) fprintf(stderr, "bild %s: coordinator connected on %s\n", s->name, addr);
            else if (ev == ZMQ_EVENT_DISCONNECTED) {
                fprintf(stderr, "bild %s: coordinator on %s went away (closed, killed, or silent past the heartbeat "
                                "timeout)\n", s->name, addr);
                if (s->n_gone < GONE_MAX) s->gone[s->n_gone++] = (int)fd;
            } else
                fprintf(stderr, "bild %s: a connection on %s failed the security handshake\n", s->name, addr);
        }
    }
    return (it[0].revents & ZMQ_POLLIN) ? 1 : 0;
}

/* ---- coordinator side ---- */

struct transport_client {
    void *sock, *mon;
    char endpoint[256];
    int timeout_ms;
    int lost;   /* the connection dropped after it was made */
    int auth;   /* the security handshake failed: ZMQ_EVENT_HANDSHAKE_FAILED_* */
    int up;     /* connected and handshaken at least once */
};

transport_client_t *transport_client_new(void *zctx, const char *endpoint, int timeout_ms, int heartbeat_ms,
                                         const transport_keypair_t *curve, const char *server_key, char *err,
                                         size_t errlen) {
    transport_client_t *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
    c->timeout_ms = timeout_ms;
    int linger = 0, on = 1;
    if (!(c->sock = zmq_socket(zctx, ZMQ_REQ))) {
        snprintf(err, errlen, "cannot create a socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    /* after a failed request the socket may send again, and replies are matched to their request */
    zmq_setsockopt(c->sock, ZMQ_REQ_RELAXED, &on, sizeof on);
    zmq_setsockopt(c->sock, ZMQ_REQ_CORRELATE, &on, sizeof on);
    set_heartbeat(c->sock, heartbeat_ms > 0 ? heartbeat_ms : TRANSPORT_HEARTBEAT_MS);
    if (curve) {
        if (!zmq_has("curve")) {
            snprintf(err, errlen, "this libzmq was built without CURVE support");
            goto fail;
        }
        zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, server_key, TRANSPORT_KEY_TEXT);
        zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, curve->pub, TRANSPORT_KEY_TEXT);
        zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, curve->sec, TRANSPORT_KEY_TEXT);
    }
    c->mon = monitor_open(zctx, c->sock, ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED |
                                             ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                             ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    if (!c->mon) {
        snprintf(err, errlen, "cannot monitor the connection: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (zmq_connect(c->sock, endpoint) != 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    return c;
fail:
    transport_client_destroy(&c);
    return NULL;
}

void transport_client_destroy(transport_client_t **pc) {
    if (!pc || !*pc) return;
    if ((*pc)->sock) zmq_close((*pc)->sock);
    if ((*pc)->mon) zmq_close((*pc)->mon);
    free(*pc);
    *pc = NULL;
}

static void client_events(transport_client_t *c) {
    int ev;
    while ((ev = monitor_read(c->mon, NULL, 0)) != 0) {
        if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) c->up = 1;
        else if (ev == ZMQ_EVENT_DISCONNECTED) c->lost |= c->up;
        else c->auth = ev;
    }
}

int transport_client_lost(transport_client_t *c) {
    client_events(c);
    return c->lost;
}

static int client_fail(transport_client_t *c, char *err, size_t errlen) {
    if (c->auth) {
        snprintf(err, errlen, "the security handshake failed (%s)",
                 c->auth == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                     ? "the worker refused this coordinator's CURVE key: add its .pub to the worker's --curve-allow file"
                     : "CURVE on one side only, or the wrong worker public key");
        return TRANSPORT_E_AUTH;
    }
    snprintf(err, errlen, "connection lost (the worker was killed, crashed, or stopped answering heartbeats)");
    return TRANSPORT_E_LOST;
}

int transport_send(transport_client_t *c, const proto_buf_t *req, char *err, size_t errlen) {
    client_events(c);
    if (c->lost || c->auth) return client_fail(c, err, errlen);
    /* a REQ socket queues the message until a connection exists; the receive side times out */
    if (zmq_send(c->sock, req->data, req->size, ZMQ_DONTWAIT) < 0) {
        snprintf(err, errlen, "send failed: %s", zmq_strerror(zmq_errno()));
        return TRANSPORT_E_OTHER;
    }
    return 0;
}

int transport_recv(transport_client_t *c, void **reply, size_t *n, char *err, size_t errlen) {
    *reply = NULL, *n = 0;
    void *clock = zmq_stopwatch_start();
    for (;;) {
        long left = c->timeout_ms - (long)(zmq_stopwatch_intermediate(clock) / 1000);
        if (left <= 0) {
            zmq_stopwatch_stop(clock);
            snprintf(err, errlen, "no reply within %d ms (%s)", c->timeout_ms,
                     c->up ? "the worker is stuck or overloaded" : "is the worker running at that address?");
            return TRANSPORT_E_TIMEOUT;
        }
        zmq_pollitem_t it[2] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->mon, 0, ZMQ_POLLIN, 0}};
        int np = zmq_poll(it, 2, left < 100 ? left : 100);
        if (np < 0 && zmq_errno() != EINTR) {
            zmq_stopwatch_stop(clock);
            snprintf(err, errlen, "poll failed: %s", zmq_strerror(zmq_errno()));
            return TRANSPORT_E_OTHER;
        }
        if (np > 0 && (it[0].revents & ZMQ_POLLIN)) break;
        client_events(c);
        if (c->lost || c->auth) {
            zmq_stopwatch_stop(clock);
            return client_fail(c, err, errlen);
        }
    }
    zmq_stopwatch_stop(clock);
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, c->sock, ZMQ_DONTWAIT) < 0) {
        snprintf(err, errlen, "receive failed: %s", zmq_strerror(zmq_errno()));
        zmq_msg_close(&msg);
        return TRANSPORT_E_OTHER;
    }
    *n = zmq_msg_size(&msg);
    *reply = malloc(*n ? *n : 1);
    if (*reply) memcpy(*reply, zmq_msg_data(&msg), *n);
    zmq_msg_close(&msg);
    if (!*reply) {
        snprintf(err, errlen, "out of memory");
        return TRANSPORT_E_OTHER;
    }
    c->up = 1;
    return 0;
}

int transport_exchange(transport_client_t *c, const proto_buf_t *req, void **reply, size_t *n, char *err,
                       size_t errlen) {
    int rc = transport_send(c, req, err, errlen);
    return rc ? rc : transport_recv(c, reply, n, err, errlen);
}
