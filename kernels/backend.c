/* backend.c - backend_new: the --device option's names to a backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda.h"
#include "kernels/ops.h"

backend_t *backend_new(const char *device, int n_threads, char *err, size_t errlen) {
    if (!device || !strcmp(device, "cpu")) {
        backend_t *be = backend_cpu_new(n_threads);
        if (!be) snprintf(err, errlen, "cannot start the CPU backend with %d threads", n_threads);
        return be;
    }
    if (strncmp(device, "cuda", 4) != 0 || (device[4] && device[4] != ':')) {
        snprintf(err, errlen, "unknown device '%s' (use cpu, cuda or cuda:N)", device);
        return NULL;
    }
    int dev = 0;
    if (device[4] == ':') {
        char *end;
        long v = strtol(device + 5, &end, 10);
        if (end == device + 5 || *end || v < 0 || v > 255) {
            snprintf(err, errlen, "bad device '%s': after cuda: comes a GPU number (cuda:0)", device);
            return NULL;
        }
        dev = (int)v;
    }
#ifdef BILD_CUDA
    return backend_cuda_new(dev, err, errlen);
#else
    snprintf(err, errlen, "device %s: this bild was built without CUDA; rebuild with make CUDA=1 "
             "(needs the CUDA toolkit in /usr/local/cuda or CUDA_HOME), or use --device cpu", device);
    (void)dev;
    return NULL;
#endif
}

int backend_pack(backend_t *be, tensor_t *t, int n, int d, int owned) {
    if (!be->pack) return 0;
    tensor_t p = be->pack(be, *t, n, d);
    if (!p.data) return -1;
    if (owned) be->free(be, t);
    *t = p;
    return 1;
}
