/* plane_nccl.cu - see plane_nccl.h. */
#include "kernels/cuda/plane_nccl.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* NCCL is loaded at run time (dlopen), so that the binary runs where NCCL is
 * not installed: there the data plane falls back and says why. */
static struct {
    int tried, ok;
    char why[256];
    ncclResult_t (*GetUniqueId)(ncclUniqueId *);
    ncclResult_t (*CommInitRankConfig)(ncclComm_t *, int, ncclUniqueId, int, ncclConfig_t *);
    ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t *);
    const char *(*GetErrorString)(ncclResult_t);
    ncclResult_t (*Send)(const void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*Recv)(void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*CommFinalize)(ncclComm_t);
    ncclResult_t (*CommDestroy)(ncclComm_t);
    ncclResult_t (*CommAbort)(ncclComm_t);
} N;
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;

static int load_nccl(void) {
    pthread_mutex_lock(&load_lock);
    if (!N.tried) {
        N.tried = 1;
        void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
        if (!h) h = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
        if (!h) snprintf(N.why, sizeof N.why, "NCCL is not installed here (libnccl.so.2: %s)", dlerror());
        else {
#define SYM(f) (N.f = (decltype(N.f))dlsym(h, "nccl" #f)) != NULL
            N.ok = SYM(GetUniqueId) && SYM(CommInitRankConfig) && SYM(CommGetAsyncError) && SYM(GetErrorString) &&
                   SYM(Send) && SYM(Recv) && SYM(CommFinalize) && SYM(CommDestroy) && SYM(CommAbort);
#undef SYM
            if (!N.ok) snprintf(N.why, sizeof N.why, "libnccl.so.2 lacks NCCL 2.18+ functions (need ncclCommFinalize)");
        }
    }
    pthread_mutex_unlock(&load_lock);
    return N.ok;
}

int bild_nccl_available(char *why, size_t n) {
    if (load_nccl()) return 1;
    if (why) snprintf(why, n, "%s", N.why);
    return 0;
}

struct nccl_plane {
    int gpu, rank;
    ncclComm_t comm;
    cudaStream_t stream;
    cudaEvent_t sent;      /* the last send's completion */
    int send_pending;
    unsigned char *pin;    /* pinned staging, cap bytes */
    unsigned char *dev;    /* device staging, cap bytes */
    size_t cap;
};

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

#define CU(call)                                                                                        \
    do {                                                                                                \
        cudaError_t e_ = (call);                                                                        \
        if (e_ != cudaSuccess) {                                                                        \
            snprintf(err, errlen, "data plane: %s: %s (%s)", #call, cudaGetErrorName(e_),               \
                     cudaGetErrorString(e_));                                                           \
            goto fail;                                                                                  \
        }                                                                                               \
    } while (0)

/* Non-blocking communicator: a call may answer ncclInProgress; poll until done. */
static int nccl_wait(ncclComm_t comm, ncclResult_t r, const char *what, double limit_ms, char *err, size_t errlen) {
    double t0 = now_ms();
    while (r == ncclInProgress) {
        if (now_ms() - t0 > limit_ms) {
            snprintf(err, errlen, "data plane: %s: the other worker did not answer within %.0f ms", what, limit_ms);
            return -1;
        }
        if (N.CommGetAsyncError(comm, &r) != ncclSuccess) break;
    }
    if (r != ncclSuccess) {
        snprintf(err, errlen, "data plane: %s: %s", what, N.GetErrorString(r));
        return -1;
    }
    return 0;
}

#define NC(call, what, limit)                                                                           \
    do {                                                                                                \
        if (nccl_wait(p->comm, (call), what, limit, err, errlen)) goto fail;                            \
    } while (0)

/* Waits for ev (or the stream when ev is NULL) at most limit_ms, watching NCCL for errors. */
static int wait_gpu(struct nccl_plane *p, cudaEvent_t ev, double limit_ms, const char *what, char *err,
                    size_t errlen) {
    double t0 = now_ms();
    for (;;) {
        cudaError_t e = ev ? cudaEventQuery(ev) : cudaStreamQuery(p->stream);
        if (e == cudaSuccess) return 0;
        if (e != cudaErrorNotReady) {
            snprintf(err, errlen, "data plane: %s: %s", what, cudaGetErrorString(e));
            return -1;
        }
        ncclResult_t a;
        if (N.CommGetAsyncError(p->comm, &a) != ncclSuccess || (a != ncclSuccess && a != ncclInProgress)) {
            snprintf(err, errlen, "data plane: %s: %s", what, N.GetErrorString(a));
            return -1;
        }
        if (now_ms() - t0 > limit_ms) {
            snprintf(err, errlen, "data plane: %s: the other worker did not answer within %.0f ms", what, limit_ms);
            return -1;
        }
    }
}

int bild_cuda_uuid(int gpu, char *out, size_t n) {
    cudaDeviceProp pr;
    if (cudaGetDeviceProperties(&pr, gpu) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    const unsigned char *u = (const unsigned char *)pr.uuid.bytes;
    snprintf(out, n, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2],
             u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    return 0;
}

int bild_nccl_id(unsigned char *id, char *err, size_t errlen) {
    if (!load_nccl()) return snprintf(err, errlen, "data plane: %s", N.why), -1;
    ncclUniqueId u;
    ncclResult_t r = N.GetUniqueId(&u);
    if (r != ncclSuccess) {
        snprintf(err, errlen, "data plane: ncclGetUniqueId: %s", N.GetErrorString(r));
        return -1;
    }
    static_assert(sizeof u.internal == 128, "NCCL unique id size");
    memcpy(id, u.internal, sizeof u.internal);
    return 0;
}

static int grow(struct nccl_plane *p, size_t n, char *err, size_t errlen) {
    if (n <= p->cap) return 0;
    if (p->pin) cudaFreeHost(p->pin), p->pin = NULL;
    if (p->dev) cudaFree(p->dev), p->dev = NULL;
    p->cap = 0;
    CU(cudaMallocHost((void **)&p->pin, n));
    CU(cudaMalloc((void **)&p->dev, n));
    p->cap = n;
    return 0;
fail:
    return -1;
}

void *bild_nccl_open(const unsigned char *id, int rank, int gpu, char *err, size_t errlen) {
    if (!load_nccl()) return snprintf(err, errlen, "data plane: %s", N.why), (void *)NULL;
    struct nccl_plane *p = (struct nccl_plane *)calloc(1, sizeof *p);
    if (!p) return snprintf(err, errlen, "out of memory"), (void *)NULL;
    p->gpu = gpu, p->rank = rank;
    ncclUniqueId u;
    memcpy(u.internal, id, sizeof u.internal);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0; /* so that a peer that never joins costs a timeout, not a hang */
    CU(cudaSetDevice(gpu));
    CU(cudaStreamCreateWithFlags(&p->stream, cudaStreamNonBlocking));
    CU(cudaEventCreateWithFlags(&p->sent, cudaEventDisableTiming));
    {
        ncclResult_t r = N.CommInitRankConfig(&p->comm, 2, u, rank, &cfg);
        if (r != ncclSuccess && r != ncclInProgress) {
            snprintf(err, errlen, "data plane: ncclCommInitRankConfig (rank %d on cuda:%d): %s", rank, gpu,
                     N.GetErrorString(r));
            p->comm = NULL;
            goto fail;
        }
        NC(r, "joining the NCCL communicator", BILD_NCCL_INIT_MS);
    }
    if (grow(p, 1 << 20, err, errlen)) goto fail;
    return p;
fail:
    bild_nccl_close(p);
    return NULL;
}

int bild_nccl_send(void *h, const void *head, size_t hbytes, const void *body, size_t bbytes, char *err,
                   size_t errlen) {
    struct nccl_plane *p = (struct nccl_plane *)h;
    int peer = 1 - p->rank;
    /* the previous transfer must have left the staging buffers */
    if (p->send_pending && wait_gpu(p, p->sent, BILD_NCCL_INIT_MS, "previous send", err, errlen)) return -1;
    p->send_pending = 0;
    CU(cudaSetDevice(p->gpu));
    if (grow(p, hbytes + bbytes, err, errlen)) return -1;
    memcpy(p->pin, head, hbytes);
    if (bbytes) memcpy(p->pin + hbytes, body, bbytes);
    CU(cudaMemcpyAsync(p->dev, p->pin, hbytes + bbytes, cudaMemcpyHostToDevice, p->stream));
    NC(N.Send(p->dev, hbytes, ncclUint8, peer, p->comm, p->stream), "ncclSend", BILD_NCCL_INIT_MS);
    if (bbytes) NC(N.Send(p->dev + hbytes, bbytes, ncclUint8, peer, p->comm, p->stream), "ncclSend", BILD_NCCL_INIT_MS);
    CU(cudaEventRecord(p->sent, p->stream));
    CU(cudaGetLastError());
    p->send_pending = 1;
    return 0;
fail:
    return -1;
}

int bild_nccl_recv(void *h, void *buf, size_t bytes, int timeout_ms, char *err, size_t errlen) {
    struct nccl_plane *p = (struct nccl_plane *)h;
    if (!bytes) return 0;
    CU(cudaSetDevice(p->gpu));
    if (grow(p, bytes, err, errlen)) return -1;
    NC(N.Recv(p->dev, bytes, ncclUint8, 1 - p->rank, p->comm, p->stream), "ncclRecv", timeout_ms);
    CU(cudaMemcpyAsync(p->pin, p->dev, bytes, cudaMemcpyDeviceToHost, p->stream));
    if (wait_gpu(p, NULL, timeout_ms, "receiving from the small worker", err, errlen)) return -1;
    memcpy(buf, p->pin, bytes);
    return 0;
fail:
    return -1;
}

void bild_nccl_close(void *h) {
    struct nccl_plane *p = (struct nccl_plane *)h;
    if (!p) return;
    if (p->comm) {
        ncclResult_t a = ncclSuccess;
        N.CommGetAsyncError(p->comm, &a);
        /* a healthy communicator is finalized; one with an error or a peer gone is aborted */
        if (a == ncclSuccess && !(p->send_pending && cudaEventQuery(p->sent) != cudaSuccess)) {
            ncclResult_t r = N.CommFinalize(p->comm);
            double t0 = now_ms();
            while (r == ncclInProgress && now_ms() - t0 < 5000) N.CommGetAsyncError(p->comm, &r);
            if (r == ncclSuccess) N.CommDestroy(p->comm);
            else N.CommAbort(p->comm);
        } else
            N.CommAbort(p->comm);
    }
    if (p->sent) cudaEventDestroy(p->sent);
    if (p->stream) cudaStreamDestroy(p->stream);
    if (p->pin) cudaFreeHost(p->pin);
    if (p->dev) cudaFree(p->dev);
    cudaGetLastError();
    free(p);
}
