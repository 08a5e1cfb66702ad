/* cpu.h - CPU backend constructor with an explicit kernel flavour (tests and
 * benchmarks use it to compare instruction sets on one machine). */
#ifndef BILD_CPU_H
#define BILD_CPU_H

#include "kernels/ops.h"

/* isa: "avx512", "avx2", "scalar", or NULL/"auto" for the best the CPU
 * supports. Returns NULL if the CPU lacks the requested instructions, the
 * name is unknown, or allocation fails. The environment variable BILD_ISA
 * overrides an "auto" choice. */
backend_t *backend_cpu_new_isa(int n_threads, const char *isa);

/* 1 if CPU backends pack weight matrices into panels (be->pack set; the
 * default), 0 where BILD_PACK=0 keeps them row-major as mapped. A model
 * whose matrices will be packed need not be copied into huge pages first:
 * the packed copies are (hostmem_alloc). */
int cpu_packs_weights(void);

/* 1 if this CPU can run the named flavour. */
int cpu_isa_supported(const char *isa);

/* Where a CPU backend's time goes (bench/decode): wall time on the calling
 * thread per kind of operator, and how many operators were handed to the
 * thread pool. Off by default (then it costs nothing); between
 * cpu_profile_start and cpu_profile_stop each operator reads the clock
 * twice. be must be a CPU backend. */
typedef struct {
    double matmul_s;      /* matmul and swiglu (the matrix products) */
    double attention_s;   /* attention over the KV cache */
    double elementwise_s; /* embedding, RMSNorm, RoPE */
    double stats_s;       /* row_stats (softmax statistics, argmax) */
    long handoffs;        /* operators split across the pool's threads */
} cpu_profile_t;
void cpu_profile_start(backend_t *be);
void cpu_profile_stop(backend_t *be, cpu_profile_t *out);
/* The cost of one hand-off: the mean wall time, in microseconds, of an
 * operator that gives every thread an empty chunk (post, wake, claim, wait
 * for all), over `reps` of them. */
double cpu_handoff_us(backend_t *be, int reps);

#endif
