/* ops.h - the backend-neutral operator API of the engine.
 *
 * The model code (model/transformer.c) computes a forward pass only through
 * this table of function pointers; it never dereferences tensor memory. A
 * backend owns its memory (host RAM for the CPU backend, device memory for a
 * later CUDA backend) and its threads. Tensors are plain views that record
 * which device their bytes live on, so a backend can refuse a tensor that is
 * not its own (a programmer error, CHECKed).
 *
 * Conventions shared by every op:
 * - Row-major storage. A weight matrix W of shape (n, d) holds n rows of d
 *   elements; "x W^T" maps a (T, d) activation to (T, n), as in llama2.c and
 *   PyTorch's nn.Linear.
 * - T is the number of token positions processed together (a block).
 * - Activations, KV caches and outputs are f32 (tensors from alloc).
 * - Weights may be f32, bf16 or f16 (DTYPE_F32/BF16/F16), each tensor on
 *   its own: the W of every matmul job, swiglu's W1 and W3, embed's table
 *   and rmsnorm's w. Half weights stay half in memory (wrap_host them as
 *   they are; a decode step reads half the bytes) and are widened to f32
 *   exactly inside the kernel; products and sums are formed in f32 as for
 *   f32 weights, so the result equals the f32 computation on the widened
 *   weights up to summation order. Any other dtype, or a half tensor where
 *   an activation is expected, is a programmer error (CHECK).
 *
 * Left out on purpose: a graph/scheduler. Ops run eagerly in call order;
 * fusion is expressed by the few fused ops below (QKV projection as one
 * multi-matmul, gate/up + SwiGLU, residual accumulation in matmul).
 */
#ifndef BILD_OPS_H
#define BILD_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DEVICE_CPU = 0, DEVICE_CUDA = 1 } device_t;
#define SCAN_CHUNK 64 /* rows per chunk of backend_t.screen_scan */
typedef enum { DTYPE_F32 = 0, DTYPE_F16 = 1, DTYPE_BF16 = 2 } dtype_t;

/* A view of memory owned elsewhere (an mmapped file, a backend buffer). */
typedef struct {
    void *data;      /* device pointer; only the owning backend reads it */
    dtype_t dtype;
    device_t device;
    int64_t ne;      /* number of elements */
    int packed;      /* 1: a weight matrix rearranged by its backend's pack (below); 0: row-major */
} tensor_t;

/* How RoPE pairs the dimensions of a head.
 * ROPE_INTERLEAVED: pairs (2i, 2i+1), as llama2.c checkpoints expect.
 * ROPE_HALVES:      pairs (i, i + hd/2), as Hugging Face Llama checkpoints expect. */
typedef enum { ROPE_INTERLEAVED = 0, ROPE_HALVES = 1 } rope_style_t;

/* One (weight, output) pair of a multi-matmul that shares its input. */
typedef struct {
    tensor_t w;      /* (n, d) */
    tensor_t out;    /* (T, n) written at element offset out_off, row stride n */
    int64_t out_off; /* element offset into out (lets K/V land inside a KV cache) */
    int n;
} matmul_job_t;

typedef struct backend backend_t;

struct backend {
    const char *name;        /* "cpu", "cuda:0" */
    device_t device;
    int n_threads;
    const char *isa;         /* kernel flavour picked at run time: "avx512", "avx2", "scalar";
                              * for CUDA the GPU's name and compute capability */

    /* Memory. alloc returns a zeroed tensor of n f32 elements, or one with
     * data == NULL on failure. free accepts a NULL-data tensor. */
    tensor_t (*alloc)(backend_t *be, int64_t n);
    void (*free)(backend_t *be, tensor_t *t);
    /* Wraps host memory the backend can read directly (mmapped weights).
     * n counts elements of dtype (4 bytes for F32, 2 for BF16 and F16;
     * half data needs only 2-byte alignment). The memory is borrowed, not
     * copied or converted. Returns a tensor with data == NULL if the
     * backend cannot (a GPU backend uploads instead). */
    tensor_t (*wrap_host)(backend_t *be, void *host, dtype_t dtype, int64_t n);
    /* Optional (NULL: matrices stay row-major). A copy of the (n, d) weight
     * matrix w (row-major, any weight dtype) in the layout this backend's
     * matmul and swiglu read fastest (packed = 1; the CPU's panels:
     * kernels/cpu/simd.h), in new memory it owns (release with free). Only
     * matmul's W and swiglu's W1/W3 may be packed tensors. data == NULL if
     * the memory could not be had; w is untouched either way. */
    tensor_t (*pack)(backend_t *be, tensor_t w, int n, int d);
    /* Copies n elements of dtype from host memory into new memory the
     * backend owns (a GPU backend's weights: uploaded once at load). Release
     * with free. Returns a tensor with data == NULL on failure. */
    tensor_t (*upload)(backend_t *be, const void *host, dtype_t dtype, int64_t n);
    /* New backend-owned memory of n elements of dtype, filled with uniform
     * random values in [lo, hi) from seed (the same values on every backend
     * for the same arguments: a counter-based hash of seed and index, see
     * kernels/dummy.h). For benchmarking real model shapes without their
     * weights (--dummy-weights). data == NULL on failure. */
    tensor_t (*random)(backend_t *be, dtype_t dtype, int64_t n, uint64_t seed, float lo, float hi);
    /* Copies n f32 elements from element offset off of src to host memory. */
    void (*to_host)(backend_t *be, float *dst, tensor_t src, int64_t off, int64_t n);
    /* Copies n f32 elements from host memory to element offset off of dst. */
    void (*from_host)(backend_t *be, tensor_t dst, int64_t off, const float *src, int64_t n);

    /* out[t, :] = table[tokens[t], :] for t < T.  out (T, d) f32, table (V, d)
     * f32, bf16 or f16 (rows widened to f32). tokens are host ints, already
     * range-checked by the caller. */
    void (*embed)(backend_t *be, tensor_t out, tensor_t table, const int *tokens, int T, int d);

    /* out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w.  out, x (T, d); w (d), any weight dtype.
     * out may equal x. */
    void (*rmsnorm)(backend_t *be, tensor_t out, tensor_t x, tensor_t w, int T, int d, float eps);

    /* For each job j: out_j[t, :] (+)= x[t, :] W_j^T.  x (T, d); W_j (n_j, d),
     * each job's W in its own weight dtype (f32, bf16 or f16); x, out f32.
     * accumulate != 0 adds to out (residual connection), else overwrites. */
    void (*matmul)(backend_t *be, tensor_t x, int T, int d, const matmul_job_t *jobs, int n_jobs,
                   int accumulate);

    /* out = silu(x W1^T) * (x W3^T).  x (T, d); W1, W3 (hid, d), each f32,
     * bf16 or f16; out (T, hid). */
    void (*swiglu)(backend_t *be, tensor_t out, tensor_t x, tensor_t w1, tensor_t w3, int T, int d,
                   int hid);

    /* Rotates heads in place. x holds T rows of row_stride elements starting
     * at element offset off; each row holds n_heads heads of hd elements.
     * Row t is at position pos0 + t. cs (seq_len, hd/2, 2) holds cos and sin
     * of every pair's angle at every position (the model computes it once,
     * with its frequencies and scaling). */
    void (*rope)(backend_t *be, tensor_t x, int64_t off, int row_stride, int T, int n_heads, int hd,
                 int pos0, tensor_t cs, rope_style_t style);

    /* Causal grouped-query attention for T queries at positions pos0..pos0+T-1.
     * q (T, n_heads*hd); kc, vc (S, n_kv*hd) hold keys/values for positions
     * 0..pos0+T-1; out (T, n_heads*hd). Query head h reads kv head
     * h / (n_heads / n_kv). Scores are scaled by 1/sqrt(hd). */
    void (*attention)(backend_t *be, tensor_t out, tensor_t q, tensor_t kc, tensor_t vc, int T,
                      int pos0, int n_heads, int n_kv, int hd);

    /* Per-row statistics of logits, for BiLD's policy, computed where the
     * logits live so only a few numbers per row reach the host.
     * x (T, V) at element offset off. For each row t: argmax[t] (lowest id on
     * ties), max_p[t] = max softmax probability, and nll[t] = -log softmax(x_t)
     * [next[t]] in nats (0 when next is NULL or next[t] < 0). Any output
     * pointer may be NULL. Outputs are host arrays of T. */
    void (*row_stats)(backend_t *be, tensor_t x, int64_t off, int T, int V, const int *next, int *argmax,
                      float *max_p, float *nll);

    /* Optional (the CPU; NULL elsewhere): the int8 copy of a matrix that the
     * classifier's screen reads (model/transformer.c, screen_argmax).
     * i8_pack takes q (n, d) row-major and a scale per row and returns the
     * backend's own copy (host memory, released with free()), or NULL.
     * i8_matmul: out[t*n + r] = fl(scale[r] * c_tr) for the T rows of x
     * (T, d), with c_tr the f32 sum over k of q[r][k] * x[t][k], each term
     * added by one fused multiply-add (two roundings, multiply then add, in
     * the scalar flavour). */
    void *(*i8_pack)(backend_t *be, const int8_t *q, const float *scale, int n, int d);
    void (*i8_matmul)(backend_t *be, const void *qp, int n, int d, const float *x, int T, float *out);
    /* The same int8 matrix for integer products (blocks of tokens, where
     * widening int8 to f32 costs more than the products): i8q_pack as
     * i8_pack; i8q_matmul: out[t*n + r] = fl(fl(scale[r] * xs[t]) *
     * float(D_tr)), D_tr = sum_k (u[t][k] - i8q_half) q[r][k] computed exactly in
     * integers (float(D) exact while |D| < 2^24), for T rows u (T, ldu) of
     * bytes in [1, 2 i8q_half - 1], ldu = d rounded up to a multiple of 4,
     * the padding i8q_half. The caller puts x_k / s_x rounded, at most
     * i8q_half - 1 in magnitude, plus i8q_half: 64 where pairs of products
     * are summed in 16 bits (vpmaddubsw), 128 with VNNI. */
    void *(*i8q_pack)(backend_t *be, const int8_t *q, const float *scale, int n, int d);
    void (*i8q_matmul)(backend_t *be, const void *qp, int n, int d, const uint8_t *u, const float *xs, int T,
                       float *out);
    int i8q_half;

    /* Optional (the CPU; NULL elsewhere): the scan of the classifier's
     * screen (model/transformer.c, screen_argmax) over T host rows of V
     * floats (row t at a + t*V) with the bounds m_tr = fl(fl(s[t] * n[r]) +
     * fl(s2[t] * n2[r])):
     * st[3t] = max_r fl(a_tr - m_tr), st[3t+1] = max_r |a_tr|, st[3t+2] is
     * not 0 (NaN) when some a_tr is not finite, and hi[t*nc + c] = max over
     * the rows r of chunk c (SCAN_CHUNK rows; nc = ceil(V / SCAN_CHUNK)) of
     * fl(a_tr + m_tr), so that no row of a chunk whose hi is below a value
     * reaches it. Every fl() is one product or one sum, rounded on its own
     * (no fused multiply-add), as the caller's own test of a row. */
    void (*screen_scan)(backend_t *be, const float *a, int T, int V, const float *n, const float *s, const float *n2,
                        const float *s2, float *st, float *hi);

    /* Optional (NULL on the CPU): the ops between graph_begin and graph_end
     * are recorded instead of run, then run as one unit (a CUDA graph: one
     * submission instead of one launch per op). The transformer brackets
     * each single-token step with them. Between the two calls no op may
     * read results on the host (to_host, row_stats) and nothing may be
     * allocated. */
    void (*graph_begin)(backend_t *be);
    void (*graph_end)(backend_t *be);

    /* A hint that no work will come for a while (a worker process between
     * requests): helper threads stop spinning and sleep. May be NULL. */
    void (*idle)(backend_t *be);

    void (*destroy)(backend_t *be);
    void *impl;              /* backend-private state */
};

/* Creates the CPU backend with n_threads threads (0 = one per online core).
 * Returns NULL on failure. Caller owns; release with backend_destroy. */
backend_t *backend_cpu_new(int n_threads);

/* Creates the backend a --device option names: "cpu" (n_threads as above),
 * "cuda" (device 0) or "cuda:N". Returns NULL with a one-line message in err
 * that says what to do when the name is not understood, this build has no
 * CUDA (make CUDA=1), or the GPU cannot be used (no device, no driver).
 * Implemented in kernels/backend.c. */
backend_t *backend_new(const char *device, int n_threads, char *err, size_t errlen);

/* Element size of a dtype in bytes. */
static inline size_t dtype_size(dtype_t t) { return t == DTYPE_F32 ? 4 : 2; }

/* Destroys a backend; accepts NULL and sets *pbe = NULL. */
void backend_destroy(backend_t **pbe);

/* Replaces the (n, d) weight matrix *t by be->pack's copy of it where the
 * backend has that op. The row-major original is freed if `owned` (the
 * caller had it from upload or random), else left to its owner (a mapped
 * file). Returns 1 if *t is now a packed tensor the caller owns, 0 if it is
 * unchanged (no pack op), -1 if the memory could not be had (*t unchanged). */
int backend_pack(backend_t *be, tensor_t *t, int n, int d, int owned);

#ifdef __cplusplus
}
#endif

#endif
