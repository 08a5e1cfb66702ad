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

/* 1 if this CPU can run the named flavour. */
int cpu_isa_supported(const char *isa);

#endif
