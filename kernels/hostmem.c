/* hostmem.c - 2 MiB-aligned weight mappings and their move into huge pages
 * (hostmem.h). */
#include "kernels/hostmem.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* The answer is the same for the whole process: worked out once. */
static const char *hugepages_off_why(void) {
    const char *env = getenv("BILD_HUGEPAGES");
    if (env && !strcmp(env, "0")) return "BILD_HUGEPAGES=0";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return "the kernel has no transparent huge pages";
    char line[128] = "";
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (!ok || strstr(line, "[never]")) return "transparent huge pages are off (/sys/kernel/mm/transparent_hugepage/enabled)";
    return NULL;
}

int hostmem_hugepages_on(const char **why) {
    static int known;
    static const char *off;
    if (!known) off = hugepages_off_why(), known = 1;
    if (off && why) *why = off;
    return !off;
}

/* An inaccessible reservation of size bytes whose start is 2 MiB aligned:
 * map size + 2 MiB, then give back what lies before and after. */
static char *reserve_aligned(size_t size) {
    char *raw = mmap(NULL, size + HOSTMEM_HUGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *p = (char *)round_up((uintptr_t)raw, HOSTMEM_HUGE);
    if (p > raw) munmap(raw, (size_t)(p - raw));
    size_t tail = (size_t)(raw + size + HOSTMEM_HUGE - (p + size));
    if (tail) munmap(p + size, tail);
    return p;
}

void *hostmem_map_file(int fd, size_t size) {
    size_t len = round_up(size, (size_t)sysconf(_SC_PAGESIZE));
    char *p = reserve_aligned(len);
    if (!p) return MAP_FAILED;
    void *m = mmap(p, size, PROT_READ, MAP_PRIVATE | MAP_FIXED | MAP_POPULATE, fd, 0);
    if (m == MAP_FAILED) {
        int e = errno;
        munmap(p, len);
        errno = e;
    }
    return m;
}

/* AnonHugePages of the mapping that contains p, in bytes (0 if not found) */
static size_t anon_huge_bytes(const void *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 0;
    char line[512];
    int inside = 0;
    size_t kb = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (inside && sscanf(line, "AnonHugePages: %zu kB", &kb) == 1) break;
    }
    fclose(f);
    return inside ? kb * 1024 : 0;
}

/* A read-only copy of the size bytes at p, at byte shift of new anonymous
 * memory advised into huge pages before its first touch; the region is 2 MiB
 * aligned and *len long. NULL if the memory could not be had. */
static char *copy_into_huge(const void *p, size_t size, size_t shift, size_t *len) {
    *len = round_up(size + shift, (size_t)sysconf(_SC_PAGESIZE));
    char *a = reserve_aligned(*len);
    if (!a) return NULL;
    if (mmap(a, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) {
        munmap(a, *len);
        return NULL;
    }
    madvise(a, *len, MADV_HUGEPAGE);
    memcpy(a + shift, p, size);
    if (mprotect(a, *len, PROT_READ) != 0) {
        munmap(a, *len);
        return NULL;
    }
    return a;
}

long hostmem_to_hugepages(void *p, size_t size) {
    if (!size || ((uintptr_t)p & (HOSTMEM_HUGE - 1)) || !hostmem_hugepages_on(NULL)) return 0;
    size_t len;
    char *a = copy_into_huge(p, size, 0, &len);
    if (!a) return -1;
    /* both ends 2 MiB aligned: the move keeps the huge pages whole */
    if (mremap(a, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, p) == MAP_FAILED) {
        munmap(a, len);
        return -1;
    }
    size_t huge = anon_huge_bytes(p);
    return (long)(huge < size ? huge : size);
}

void *hostmem_copy_huge(const void *p, size_t size, size_t shift, size_t *len, long *huge) {
    char *a = copy_into_huge(p, size, shift, len);
    if (!a) return NULL;
    size_t h = anon_huge_bytes(a);
    *huge = (long)(h < size ? h : size);
    return a;
}

void *hostmem_alloc(size_t n) {
    if (n < 2 * HOSTMEM_HUGE || !hostmem_hugepages_on(NULL)) return aligned_alloc(64, round_up(n ? n : 1, 64));
    size_t len = round_up(n, HOSTMEM_HUGE);
    void *p = aligned_alloc(HOSTMEM_HUGE, len);
    if (p) madvise(p, len, MADV_HUGEPAGE);
    return p;
}
