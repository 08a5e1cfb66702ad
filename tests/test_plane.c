/* test_plane.c - the data plane's host-side logic: which plane two workers
 * get (every combination of CPU/GPU, same/different GPU and host, NCCL or
 * not, and each requested kind), and the host plane's transfers between two
 * sockets: order, sizes, a wrong header, values that are not probabilities,
 * a peer that sends nothing (timeout), a closed peer. The NCCL kind needs
 * two GPUs (tests/gpu/run.sh on such a machine); here it is only selected. */
#include <string.h>
#include <zmq.h>

#include "proto/plane.h"
#include "tests/test.h"

static plane_res_t dev(const char *device, const char *uuid, const char *host, int nccl) {
    plane_res_t r = {0};
    snprintf(r.device, sizeof r.device, "%s", device);
    snprintf(r.uuid, sizeof r.uuid, "%s", uuid);
    snprintf(r.host, sizeof r.host, "%s", host);
    r.nccl = nccl;
    return r;
}

static int pick(int want, plane_res_t s, plane_res_t l) {
    int kind = -9;
    char why[512];
    if (plane_select(want, &s, &l, &kind, why, sizeof why)) return -1;
    EXPECT(why[0] != 0);
    return kind;
}

static void test_select(void) {
    plane_res_t cpu = dev("cpu", "", "a/1", 0), cpu_n = dev("cpu", "", "a/1", 1);
    plane_res_t g0 = dev("cuda:0", "GPU-0", "a/1", 1), g1 = dev("cuda:1", "GPU-1", "a/1", 1);
    plane_res_t g0b = dev("cuda:0", "GPU-9", "b/2", 1), g1_nonccl = dev("cuda:1", "GPU-1", "a/1", 0);
    plane_res_t g0_again = dev("cuda:0", "GPU-0", "a/1", 1);
    /* automatic */
    EXPECT_EQ_INT(pick(PLANE_AUTO, cpu, cpu), PLANE_MESSAGES);
    EXPECT_EQ_INT(pick(PLANE_AUTO, cpu_n, cpu_n), PLANE_MESSAGES); /* NCCL built but no GPU */
    EXPECT_EQ_INT(pick(PLANE_AUTO, cpu, g0), PLANE_MESSAGES);
    EXPECT_EQ_INT(pick(PLANE_AUTO, g0, g1), PLANE_NCCL);
    EXPECT_EQ_INT(pick(PLANE_AUTO, g0, g0b), PLANE_NCCL);           /* two hosts: NCCL's network transport */
    EXPECT_EQ_INT(pick(PLANE_AUTO, g0, g0_again), PLANE_HOST);      /* one GPU: NCCL refuses two ranks */
    EXPECT_EQ_INT(pick(PLANE_AUTO, g0, g1_nonccl), PLANE_HOST);     /* no NCCL on one side, one host */
    plane_res_t g1_far_nonccl = dev("cuda:1", "GPU-1", "b/2", 0);
    EXPECT_EQ_INT(pick(PLANE_AUTO, g0, g1_far_nonccl), PLANE_MESSAGES);
    /* asked for */
    EXPECT_EQ_INT(pick(PLANE_MESSAGES, g0, g1), PLANE_MESSAGES);
    EXPECT_EQ_INT(pick(PLANE_HOST, cpu, cpu), PLANE_HOST);
    EXPECT_EQ_INT(pick(PLANE_HOST, g0, g1), PLANE_HOST);
    EXPECT_EQ_INT(pick(PLANE_HOST, g0, g0b), -1); /* across hosts */
    EXPECT_EQ_INT(pick(PLANE_NCCL, g0, g1), PLANE_NCCL);
    EXPECT_EQ_INT(pick(PLANE_NCCL, cpu_n, cpu_n), -1);
    EXPECT_EQ_INT(pick(PLANE_NCCL, g0, g0_again), -1);
    EXPECT_EQ_INT(pick(PLANE_NCCL, g0, g1_nonccl), -1);
    /* the refusal names the devices */
    int kind;
    char why[512];
    EXPECT(plane_select(PLANE_NCCL, &g0, &g0_again, &kind, why, sizeof why) == -1 && strstr(why, "the same GPU") &&
           strstr(why, "cuda:0"));
    EXPECT(plane_select(PLANE_HOST, &g0, &g0b, &kind, why, sizeof why) == -1 && strstr(why, "one host"));
    /* names */
    EXPECT_EQ_INT(plane_kind_parse("auto"), PLANE_AUTO);
    EXPECT_EQ_INT(plane_kind_parse("nccl"), PLANE_NCCL);
    EXPECT_EQ_INT(plane_kind_parse("host"), PLANE_HOST);
    EXPECT_EQ_INT(plane_kind_parse("messages"), PLANE_MESSAGES);
    EXPECT(plane_kind_parse("tcp") < PLANE_AUTO);
    /* this process: a CPU, a host identity */
    plane_res_t me;
    plane_local_info("cpu", &me);
    EXPECT(!strcmp(me.device, "cpu") && me.uuid[0] == 0 && strchr(me.host, '/'));
}

static void fill(float *p, int rows, int V, int salt) {
    for (int r = 0; r < rows; r++) {
        double t = 0;
        for (int i = 0; i < V; i++) t += p[r * V + i] = (float)((i * 31 + r * 7 + salt) % 13 + 1);
        for (int i = 0; i < V; i++) p[r * V + i] = (float)(p[r * V + i] / t);
    }
}

static void test_host(void) {
    enum { V = 97 };
    void *z = zmq_ctx_new();
    char ep[1100], err[1024];
    plane_t *rx = plane_host_bind(z, ep, sizeof ep, err, sizeof err);
    EXPECT(rx && !strncmp(ep, "ipc://", 6));
    if (!rx) return;
    plane_t *tx = plane_host_connect(z, ep, err, sizeof err);
    EXPECT(tx && plane_kind(tx) == PLANE_HOST);
    EXPECT(!plane_host_connect(z, "tcp://127.0.0.1:5555", err, sizeof err) && strstr(err, "ipc:// only"));
    static float a[5 * V], b[5 * V];
    /* three transfers in order, of 3, 0 and 5 rows */
    fill(a, 3, V, 1);
    EXPECT(plane_send(tx, a, 3, V, err, sizeof err) == 0);
    EXPECT(plane_send(tx, a, 0, V, err, sizeof err) == 0);
    fill(a, 5, V, 2);
    EXPECT(plane_send(tx, a, 5, V, err, sizeof err) == 0);
    fill(a, 3, V, 1);
    EXPECT(plane_recv(rx, b, 3, V, 2000, err, sizeof err) == 0 && !memcmp(a, b, sizeof(float) * 3 * V));
    EXPECT(plane_recv(rx, b, 0, V, 2000, err, sizeof err) == 0);
    fill(a, 5, V, 2);
    EXPECT(plane_recv(rx, b, 5, V, 2000, err, sizeof err) == 0 && !memcmp(a, b, sizeof(float) * 5 * V));
    /* nothing sent: a timeout, and the plane is then broken */
    EXPECT(plane_recv(rx, b, 1, V, 100, err, sizeof err) == -1 && strstr(err, "within 100 ms"));
    EXPECT(plane_recv(rx, b, 1, V, 100, err, sizeof err) == -1 && strstr(err, "broken"));
    plane_close(&rx), plane_close(&tx);
    EXPECT(!rx && !tx);

    /* a transfer of other rows than the verify request says */
    rx = plane_host_bind(z, ep, sizeof ep, err, sizeof err);
    tx = plane_host_connect(z, ep, err, sizeof err);
    fill(a, 2, V, 3);
    EXPECT(plane_send(tx, a, 2, V, err, sizeof err) == 0);
    EXPECT(plane_recv(rx, b, 3, V, 2000, err, sizeof err) == -1 && strstr(err, "does not match"));
    plane_close(&rx), plane_close(&tx);

    /* a value that is not a probability */
    rx = plane_host_bind(z, ep, sizeof ep, err, sizeof err);
    tx = plane_host_connect(z, ep, err, sizeof err);
    fill(a, 2, V, 4);
    a[V + 5] = 1.5f;
    EXPECT(plane_send(tx, a, 2, V, err, sizeof err) == 0);
    EXPECT(plane_recv(rx, b, 2, V, 2000, err, sizeof err) == -1 && strstr(err, "not a probability") &&
           strstr(err, "row 1"));
    plane_close(&rx), plane_close(&tx);

    /* raw bytes from a peer that is not a plane: short, and a foreign header */
    rx = plane_host_bind(z, ep, sizeof ep, err, sizeof err);
    void *raw = zmq_socket(z, ZMQ_PAIR);
    EXPECT(zmq_connect(raw, ep) == 0);
    EXPECT(zmq_send(raw, "hello", 5, 0) == 5);
    EXPECT(plane_recv(rx, b, 1, V, 2000, err, sizeof err) == -1 && strstr(err, "5-byte"));
    plane_close(&rx);
    rx = plane_host_bind(z, ep, sizeof ep, err, sizeof err);
    zmq_close(raw);
    raw = zmq_socket(z, ZMQ_PAIR);
    EXPECT(zmq_connect(raw, ep) == 0);
    unsigned char junk[16 + 4 * V] = {0};
    EXPECT(zmq_send(raw, junk, sizeof junk, 0) == (int)sizeof junk);
    EXPECT(plane_recv(rx, b, 1, V, 2000, err, sizeof err) == -1 && strstr(err, "magic"));
    zmq_close(raw);
    /* the private directory goes with the plane */
    char dir[1100];
    snprintf(dir, sizeof dir, "%s", ep + 6);
    *strrchr(dir, '/') = 0;
    plane_close(&rx);
    FILE *f = fopen(dir, "r");
    EXPECT(!f);
    if (f) fclose(f);
    /* no NCCL in a CPU build */
#ifndef BILD_CUDA
    unsigned char id[PROTO_PLANE_ID];
    EXPECT(plane_nccl_id(id, err, sizeof err) == -1 && strstr(err, "make CUDA=1"));
    EXPECT(!plane_nccl_open(id, 0, 0, err, sizeof err) && strstr(err, "make CUDA=1"));
#endif
    zmq_ctx_term(z);
}

int main(void) {
    test_select();
    test_host();
    return TEST_DONE("test_plane");
}
