/* backend.cu - the CUDA backend object: the table of kernels/ops.h that
 * backend_cuda_new fills (the ops themselves are in matmul.cu, attention.cu
 * and norm.cu; see cuda_impl.h), device memory and copies to and from the
 * host, CUDA graphs and profiling.
 *
 * Memory: weights are uploaded once in their file dtype (f32, bf16 or f16);
 * activations, the KV cache and logits are f32 device buffers. Nothing is
 * allocated per token: scratch buffers grow at first use and stay.
 *
 * Ordering: one CUDA stream per backend (one per worker process) and a
 * cuBLAS handle bound to it. Ops are enqueued without waiting; only the
 * calls that hand data to the host (to_host, row_stats) synchronise. Host
 * arrays the ops take (token ids, next ids) travel inside the kernel's
 * arguments, 64 at a time, so no host buffer is read after the call returns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_impl.h"




/* ---- memory and copies ----------------------------------------------------- */

static tensor_t cu_alloc(backend_t *be, int64_t n) {
    cu_t *c = CU_(be);
    cu_flush(c);
    tensor_t t = {NULL, DTYPE_F32, DEVICE_CUDA, n, 0};
    size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(float);
    if (cudaMalloc(&t.data, bytes) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky-free error state of a failed malloc */
        t.data = NULL;
        return t;
    }
    CU(cudaMemsetAsync(t.data, 0, bytes, c->stream));
    CU(cudaStreamSynchronize(c->stream));
    return t;
}

static void cu_free(backend_t *be, tensor_t *t) {
    cu_flush(CU_(be));
    if (t->data) {
        CU(cudaStreamSynchronize(CU_(be)->stream));
        CU(cudaFree(t->data));
    }
    t->data = NULL;
}

static tensor_t cu_wrap_host(backend_t *be, void *host, dtype_t dtype, int64_t n) {
    return tensor_t{NULL, dtype, DEVICE_CUDA, n, 0}; /* cannot: the caller uploads */
}

static tensor_t cu_upload(backend_t *be, const void *host, dtype_t dtype, int64_t n) {
    cu_flush(CU_(be));
    tensor_t t = {NULL, dtype, DEVICE_CUDA, n, 0};
    size_t bytes = (size_t)(n > 0 ? n : 1) * dtype_size(dtype);
    if (cudaMalloc(&t.data, bytes) != cudaSuccess) {
        cudaGetLastError();
        t.data = NULL;
        return t;
    }
    /* on our stream and waited for: a plain cudaMemcpy from pageable memory
     * may return before the data lands, and the non-blocking stream would
     * not wait for it */
    CU(cudaMemcpyAsync(t.data, host, (size_t)n * dtype_size(dtype), cudaMemcpyHostToDevice, CU_(be)->stream));
    CU(cudaStreamSynchronize(CU_(be)->stream));
    return t;
}

static void cu_to_host(backend_t *be, float *dst, tensor_t src, int64_t off, int64_t n) {
    cu_t *c = CU_(be);
    cu_flush(c);
    check_own(src);
    REQUIRE(off >= 0 && off + n <= src.ne);
    CU(cudaMemcpyAsync(dst, (const float *)src.data + off, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost, c->stream));
    CU(cudaStreamSynchronize(c->stream));
}

static void cu_from_host(backend_t *be, tensor_t dst, int64_t off, const float *src, int64_t n) {
    cu_t *c = CU_(be);
    cu_flush(c);
    check_own(dst);
    REQUIRE(off >= 0 && off + n <= dst.ne);
    CU(cudaMemcpyAsync((float *)dst.data + off, src, (size_t)n * sizeof(float), cudaMemcpyHostToDevice, c->stream));
    CU(cudaStreamSynchronize(c->stream));
}

/* ---- graphs, profiling, the backend ---------------------------------------- */

/* A step is recorded with stream capture and run as a graph. The next
 * step's recording differs only in kernel arguments (position, token), so
 * cudaGraphExecUpdate patches the instantiated graph instead of building a
 * new one; if it cannot, the graph is instantiated again. */
static void cu_graph_begin(backend_t *be) {
    cu_t *c = CU_(be);
    cu_flush(c);
    if (!c->graphs || c->gemm_mode == 2) return; /* cuBLAS's workspace does not go into our graph */
    CU(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    c->capturing = 1;
}

static void cu_graph_end(backend_t *be) {
    cu_t *c = CU_(be);
    cu_flush(c);
    if (!c->capturing) return;
    c->capturing = 0;
    cudaGraph_t g;
    CU(cudaStreamEndCapture(c->stream, &g));
    if (c->exec) {
        cudaGraphExecUpdateResultInfo info;
        if (cudaGraphExecUpdate(c->exec, g, &info) != cudaSuccess) {
            cudaGetLastError();
            CU(cudaGraphExecDestroy(c->exec));
            c->exec = NULL;
        }
    }
    if (!c->exec) CU(cudaGraphInstantiate(&c->exec, g, 0));
    CU(cudaGraphDestroy(g));
    CU(cudaGraphLaunch(c->exec, c->stream));
}

extern "C" void backend_cuda_profile(backend_t *be, int on) {
    cu_t *c = CU_(be);
    cu_flush(c);
    if (on && !c->prof) {
        c->prof = (struct prof *)calloc(1, sizeof *c->prof);
        REQUIRE(c->prof);
        for (int i = 0; i <= PROF_MAX; i++) CU(cudaEventCreate(&c->prof->ev[i]));
    }
    if (on) c->prof->n = 0;
    else if (c->prof) {
        for (int i = 0; i <= PROF_MAX; i++) CU(cudaEventDestroy(c->prof->ev[i]));
        free(c->prof);
        c->prof = NULL;
    }
}

extern "C" int backend_cuda_profile_report(backend_t *be, const char **names, double *ms, int *count, int max) {
    cu_t *c = CU_(be);
    struct prof *p = c->prof;
    if (!p) return 0;
    cu_flush(c);
    CU(cudaEventRecord(p->ev[p->n], c->stream));
    CU(cudaEventSynchronize(p->ev[p->n]));
    int k = 0;
    for (int i = 0; i < p->n; i++) {
        float t;
        CU(cudaEventElapsedTime(&t, p->ev[i], p->ev[i + 1]));
        int j = 0;
        while (j < k && strcmp(names[j], p->name[i])) j++;
        if (j == k) {
            if (k == max) continue;
            names[k] = p->name[i], ms[k] = 0, count[k] = 0, k++;
        }
        ms[j] += t, count[j]++;
    }
    p->n = 0;
    return k;
}

extern "C" void backend_cuda_set_graphs(backend_t *be, int on) { CU_(be)->graphs = on; }

static void cu_idle(backend_t *be) {
    cu_flush(CU_(be));
    CU(cudaStreamSynchronize(CU_(be)->stream));
}

static void cu_destroy(backend_t *be) {
    cu_t *c = CU_(be);
    cu_flush(c);
    cudaStreamSynchronize(c->stream);
    if (c->scratch) cudaFree(c->scratch);
    if (c->gate) cudaFree(c->gate);
    if (c->d_stats) cudaFree(c->d_stats);
    if (c->h_stats) cudaFreeHost(c->h_stats);
    if (c->exec) cudaGraphExecDestroy(c->exec);
    cublasDestroy(c->blas);
    cudaStreamDestroy(c->stream);
    free(c);
    free(be);
}

extern "C" void backend_cuda_sync(backend_t *be) {
    cu_flush(CU_(be));
    CU(cudaStreamSynchronize(CU_(be)->stream));
}

extern "C" void backend_cuda_set_gemm(backend_t *be, int mode) { CU_(be)->gemm_mode = mode; }

extern "C" double backend_cuda_measure_bandwidth(backend_t *be) {
    cu_t *c = CU_(be);
    cu_flush(c);
    size_t bytes = (size_t)1 << 30;
    void *a, *b;
    CU(cudaMalloc(&a, bytes));
    CU(cudaMalloc(&b, bytes));
    CU(cudaMemsetAsync(a, 1, bytes, c->stream));
    cudaEvent_t e0, e1;
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    float best = 1e30f;
    for (int r = 0; r < 6; r++) {
        CU(cudaEventRecord(e0, c->stream));
        CU(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream));
        CU(cudaEventRecord(e1, c->stream));
        CU(cudaEventSynchronize(e1));
        float ms;
        CU(cudaEventElapsedTime(&ms, e0, e1));
        if (r > 0 && ms < best) best = ms; /* the first warms up */
    }
    CU(cudaEventDestroy(e0));
    CU(cudaEventDestroy(e1));
    CU(cudaFree(a));
    CU(cudaFree(b));
    return 2.0 * bytes / (best / 1e3); /* read + write */
}

extern "C" backend_t *backend_cuda_new(int dev, char *err, size_t errlen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(err, errlen, "cuda:%d: no usable GPU here (%s: %s); use --device cpu", dev, cudaGetErrorName(e),
                 cudaGetErrorString(e));
        cudaGetLastError();
        return NULL;
    }
    if (dev >= n) {
        snprintf(err, errlen, "cuda:%d: this machine has %d GPU%s (cuda:0%s)", dev, n, n == 1 ? "" : "s",
                 n > 1 ? " .. cuda:N-1" : "");
        return NULL;
    }
    if ((e = cudaSetDevice(dev)) != cudaSuccess) {
        snprintf(err, errlen, "cuda:%d: cannot use it (%s)", dev, cudaGetErrorString(e));
        return NULL;
    }
    backend_t *be = (backend_t *)calloc(1, sizeof(*be));
    cu_t *c = (cu_t *)calloc(1, sizeof(*c));
    if (!be || !c) {
        free(be), free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->dev = dev;
    cudaDeviceProp p;
    CU(cudaGetDeviceProperties(&p, dev));
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        snprintf(err, errlen, "cuda:%d: cannot create a stream (%s)", dev, cudaGetErrorString(e));
        free(be), free(c);
        return NULL;
    }
    cublasStatus_t bs = cublasCreate(&c->blas);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, errlen, "cuda:%d: cuBLAS does not start (%s)", dev, cublasGetStatusString(bs));
        cudaStreamDestroy(c->stream);
        free(be), free(c);
        return NULL;
    }
    BLAS(cublasSetStream(c->blas, c->stream));
    BLAS(cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH)); /* no TF32: f32 stays f32 */
    cu_attention_init(c, p);
    const char *gr = getenv("BILD_CUDA_GRAPH");
    c->graphs = gr && !strcmp(gr, "1"); /* off by default: measured no faster (docs/gpu.md) */
    const char *fu = getenv("BILD_CUDA_FUSE");
    c->fuse = !(fu && !strcmp(fu, "0"));
    const char *g = getenv("BILD_CUDA_GEMM");
    c->gemm_mode = g && !strcmp(g, "custom") ? 1 : g && !strcmp(g, "cublas") ? 2 : 0;
    /* the tensor-core kernel for 4..16-row blocks: opt-in (BILD_CUDA_MMA=1);
     * on an H200 it is correct but slower than cuBLAS so far (docs/gpu.md) */
    const char *mm = getenv("BILD_CUDA_MMA");
    c->mma = p.major >= 8 && mm && !strcmp(mm, "1");
    snprintf(c->name, sizeof c->name, "cuda:%d", dev);
    snprintf(c->isa, sizeof c->isa, "%s, sm_%d%d, %.0f GiB", p.name, p.major, p.minor,
             p.totalGlobalMem / (1024.0 * 1024 * 1024));
    *be = backend_t{};
    be->name = c->name;
    be->device = DEVICE_CUDA;
    be->n_threads = 1;
    be->isa = c->isa;
    be->alloc = cu_alloc, be->free = cu_free, be->wrap_host = cu_wrap_host, be->upload = cu_upload;
    be->random = cu_random, be->to_host = cu_to_host, be->from_host = cu_from_host;
    be->embed = cu_embed, be->rmsnorm = cu_rmsnorm, be->matmul = cu_matmul, be->swiglu = cu_swiglu;
    be->rope = cu_rope, be->attention = cu_attention, be->row_stats = cu_row_stats, be->idle = cu_idle;
    be->graph_begin = cu_graph_begin, be->graph_end = cu_graph_end;
    be->destroy = cu_destroy, be->impl = c;
    return be;
}
