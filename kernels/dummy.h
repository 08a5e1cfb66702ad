/* dummy.h - the random numbers of --dummy-weights: element i of a tensor
 * made from seed is a pure function of (seed, i), so every backend (the CPU
 * loop, a CUDA thread per element) writes the same values without sharing
 * a generator's state. splitmix64's finaliser on seed + i times the golden
 * ratio; the top 24 bits give a uniform float in [0, 1). */
#ifndef BILD_DUMMY_H
#define BILD_DUMMY_H

#include <stdint.h>

#if defined(__CUDACC__)
#define DUMMY_FN __host__ __device__ static inline
#else
#define DUMMY_FN static inline
#endif

DUMMY_FN float dummy_uniform(uint64_t seed, uint64_t i, float lo, float hi) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return lo + (hi - lo) * (float)((z >> 40) * (1.0 / 16777216.0));
}

#endif
