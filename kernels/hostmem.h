/* hostmem.h - host memory for weights: file mappings aligned to 2 MiB and
 * copies of them in transparent huge pages.
 *
 * Why: a decode step streams every weight once. With 4 KiB pages a 61 MB
 * model spans 15,000 pages, so the reads miss the TLB and the hardware
 * prefetchers stop at every page boundary. In 2 MiB pages the same reads ran
 * 12-28% faster (stories15M f32 decode, AMD EPYC Zen 4, 32 MiB L3; docs/engine.md,
 * "Weights in huge pages"). Page-cache pages of a mapped file are 4 KiB, so
 * the weights a CPU backend reads are copied into anonymous memory that the
 * kernel backs with huge pages (madvise MADV_HUGEPAGE), and that copy is
 * moved over the file mapping (mremap), so every pointer into the weights
 * stays valid.
 *
 * Off with BILD_HUGEPAGES=0, and where the kernel's transparent huge pages
 * are "never". The cost: the copy at load (about 0.1 s per GB here) and
 * private memory instead of shared page cache (two processes on one model
 * hold two copies).
 */
#ifndef BILD_HOSTMEM_H
#define BILD_HOSTMEM_H

#include <stddef.h>

#define HOSTMEM_HUGE ((size_t)2 << 20)

/* 1 if weights should go to huge pages here: BILD_HUGEPAGES is not "0" and
 * /sys/kernel/mm/transparent_hugepage/enabled does not say [never]. When it
 * returns 0 and why is not NULL, *why says why (a static string). Decided
 * once per process. */
int hostmem_hugepages_on(const char **why);

/* A read-only private mapping of size bytes of fd, its start aligned to
 * 2 MiB, pages faulted in (MAP_POPULATE). MAP_FAILED on failure (errno set).
 * Unmap with munmap(p, size). */
void *hostmem_map_file(int fd, size_t size);

/* Moves the size bytes at p (a read-only mapping whose start is 2 MiB aligned,
 * as hostmem_map_file makes) into anonymous memory backed by huge pages, at
 * the same address, read-only. Returns the bytes now in huge pages (from
 * /proc/self/smaps: the kernel may grant fewer than asked), 0 if nothing was
 * moved (off, or p not aligned), -1 if the copy failed (p keeps the old
 * mapping). munmap(p, size) still releases it. */
long hostmem_to_hugepages(void *p, size_t size);

/* Copies the size bytes at p into new anonymous memory advised into huge
 * pages, read-only, with byte 0 of p at (the result + shift): a shift can
 * put the tensors of a file whose header length is not a multiple of 64
 * (llama2.c's is 28 bytes) on cache-line boundaries. The result is 2 MiB
 * aligned; *len is the mapping's length (munmap(result, *len) releases it),
 * *huge the bytes in huge pages, as hostmem_to_hugepages counts them.
 * NULL if the memory could not be had. p is left as it was. */
void *hostmem_copy_huge(const void *p, size_t size, size_t shift, size_t *len, long *huge);

/* n bytes, 64-byte aligned; blocks of 4 MiB or more are 2 MiB aligned and
 * advised into huge pages (hostmem_hugepages_on). Release with free(). */
void *hostmem_alloc(size_t n);

#endif
