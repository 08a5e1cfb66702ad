/* test_transport.c - CURVE key files (proto/transport.c): keygen output read
 * back, keys whose Z85 text starts with '#' or holds '=', comments and blank
 * lines in allow lists, a public key that does not match its secret key,
 * malformed lines; and a CURVE server and clients in one process over
 * ipc:// (inproc:// skips the security handshake): the allowed key gets
 * through, another key is refused with TRANSPORT_E_AUTH. */
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "proto/transport.h"
#include "tests/test.h"

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    EXPECT(f != NULL);
    if (f) fputs(text, f), fclose(f);
}

int main(void) {
    char dir[] = "/tmp/bild-test-transport-XXXXXX", path[256], path2[256], err[512], text[1024];
    EXPECT(mkdtemp(dir) != NULL);
    transport_keypair_t a, b, hash_key = {0}, eq_key = {0};
    EXPECT(transport_keygen(&a) == 0 && transport_keygen(&b) == 0);
    EXPECT(strlen(a.pub) == TRANSPORT_KEY_TEXT && strcmp(a.pub, b.pub));
    /* find key pairs whose public key holds '#' and one that starts with '='
     * (Z85 has both; a key never starts with '#', which is why a line
     * starting with '#' can be a comment) */
    for (int i = 0; i < 200000 && (!hash_key.pub[0] || !eq_key.pub[0]); i++) {
        transport_keypair_t k;
        transport_keygen(&k);
        if (strchr(k.pub, '#') && strchr(k.pub, '=') && !hash_key.pub[0]) hash_key = k;
        if (k.pub[0] == '=' && !eq_key.pub[0]) eq_key = k;
    }
    EXPECT(strchr(hash_key.pub, '#') && eq_key.pub[0] == '=');

    /* keygen files read back; refuse to overwrite */
    snprintf(path, sizeof path, "%s/hash", dir);
    EXPECT(transport_write_keys(path, &hash_key, err, sizeof err) == 0);
    EXPECT(transport_write_keys(path, &hash_key, err, sizeof err) == -1 && strstr(err, "overwrite"));
    transport_keypair_t r;
    snprintf(path2, sizeof path2, "%s/hash.key", dir);
    EXPECT(transport_load_keypair(path2, &r, err, sizeof err) == 0);
    EXPECT(!strcmp(r.pub, hash_key.pub) && !strcmp(r.sec, hash_key.sec));
    char (*keys)[TRANSPORT_KEY_TEXT + 1] = NULL;
    snprintf(path2, sizeof path2, "%s/hash.pub", dir);
    EXPECT_EQ_INT(transport_load_public_keys(path2, &keys, err, sizeof err), 1);
    EXPECT(keys && !strcmp(keys[0], hash_key.pub));
    free(keys);
    /* the key pair file is also a public key file: its secret line is skipped */
    snprintf(path2, sizeof path2, "%s/hash.key", dir);
    EXPECT_EQ_INT(transport_load_public_keys(path2, &keys, err, sizeof err), 1);
    EXPECT(keys && !strcmp(keys[0], hash_key.pub));
    free(keys);

    /* an allow list: comments, blank lines, indentation, "public = " lines, a '#' key and a '=' key */
    snprintf(path, sizeof path, "%s/allow", dir);
    snprintf(text, sizeof text, "# coordinators\n\n%s\n   %s  \npublic = %s\n# %s\n", hash_key.pub, eq_key.pub, a.pub,
             b.pub);
    write_file(path, text);
    int n = transport_load_public_keys(path, &keys, err, sizeof err);
    EXPECT_EQ_INT(n, 3);
    EXPECT(n == 3 && !strcmp(keys[0], hash_key.pub) && !strcmp(keys[1], eq_key.pub) && !strcmp(keys[2], a.pub));
    free(keys);

    /* malformed files */
    write_file(path, "not a key\n");
    EXPECT(transport_load_public_keys(path, &keys, err, sizeof err) == -1 && strstr(err, "line 1"));
    write_file(path, "# nothing\n");
    EXPECT(transport_load_public_keys(path, &keys, err, sizeof err) == -1 && strstr(err, "no public key"));
    snprintf(text, sizeof text, "public = %s\nsecret = %s\n", a.pub, b.sec); /* mismatched pair */
    write_file(path, text);
    EXPECT(transport_load_keypair(path, &r, err, sizeof err) == -1 && strstr(err, "does not belong"));
    snprintf(text, sizeof text, "public = %s\n", a.pub);
    write_file(path, text);
    EXPECT(transport_load_keypair(path, &r, err, sizeof err) == -1 && strstr(err, "not a key pair"));
    EXPECT(transport_load_keypair("/nonexistent/k.key", &r, err, sizeof err) == -1 && strstr(err, "/nonexistent"));

    /* CURVE end to end over ipc://: the allowed client gets an answer, a
     * client with another key is refused */
    void *ctx = zmq_ctx_new();
    char allowed[1][TRANSPORT_KEY_TEXT + 1], ep[300];
    strcpy(allowed[0], b.pub);
    snprintf(ep, sizeof ep, "ipc://%s/curve.sock", dir);
    int refused = 0;
    transport_server_opts_t so = {.endpoint = ep, .curve = &a,
                                  .allowed = (const char(*)[TRANSPORT_KEY_TEXT + 1])allowed, .n_allowed = 1,
                                  .name = "test"};
    transport_server_t *srv = transport_server_new(ctx, &so, &refused, err, sizeof err);
    EXPECT(srv != NULL);
    for (int who = 0; who < 2 && srv; who++) {
        const transport_keypair_t *client = who == 0 ? &b : &eq_key; /* b allowed, eq_key not */
        transport_client_t *c = transport_client_new(ctx, ep, 50, 200, client, a.pub, err, sizeof err);
        EXPECT(c != NULL);
        if (!c) continue;
        proto_buf_t q = {0};
        proto_encode_simple(&q, 1, MSG_PING);
        EXPECT(transport_send(c, &q, err, sizeof err) == 0);
        int got = 0, rc = TRANSPORT_E_TIMEOUT;
        void *reply = NULL;
        size_t rn = 0;
        /* one thread plays both sides: the server answers ZAP and requests,
         * the client polls with a short time limit, for up to 5 s */
        for (int i = 0; i < 70 && rc == TRANSPORT_E_TIMEOUT; i++) {
            transport_req_t *sr = NULL;
            if (transport_server_wait(srv, 20) == 1 && transport_server_recv(srv, &sr) == 1) {
                size_t qn;
                EXPECT(transport_req_data(sr, &qn) != NULL && qn == q.size);
                EXPECT(transport_server_reply(srv, &sr, q.data, q.size) == 0 && sr == NULL);
                got = 1;
            }
            rc = transport_recv(c, &reply, &rn, err, sizeof err);
        }
        if (who == 0) EXPECT(rc == 0 && got && rn == q.size);
        else {
            EXPECT(rc == TRANSPORT_E_AUTH && !got && strstr(err, "refused this coordinator's CURVE key"));
            if (rc != TRANSPORT_E_AUTH) fprintf(stderr, "rc %d: %s\n", rc, err);
        }
        free(reply);
        proto_buf_free(&q);
        transport_client_destroy(&c);
    }
    transport_server_destroy(&srv);
    zmq_ctx_term(ctx);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    EXPECT(system(cmd) == 0);
    return TEST_DONE("test_transport");
}
