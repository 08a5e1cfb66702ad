/* st_dir.c - see st_dir.h. */
#include "model/st_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/hostmem.h"
#include "model/config_json.h"

#define ST_DIR_MAX_INDEX (64u << 20)

static int st_fail(st_dir_t *d, const char *file, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int st_fail(st_dir_t *d, const char *file, const char *fmt, ...) {
    snprintf(d->fail_file, sizeof d->fail_file, "%s", file);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->why, sizeof d->why, fmt, ap);
    va_end(ap);
    return -1;
}

static int add_file(st_dir_t *d, const char *name) {
    for (int i = 0; i < d->n; i++)
        if (!strcmp(d->name[i], name)) return 0;
    if (d->n >= ST_DIR_MAX_FILES) return st_fail(d, d->index_name, "more than %d shards", ST_DIR_MAX_FILES);
    if (!*name || strchr(name, '/') || !strcmp(name, "..") || !strcmp(name, "."))
        return st_fail(d, d->index_name, "weight_map names '%.100s', not a file in the directory", name);
    char **nn = realloc(d->name, sizeof(char *) * (size_t)(d->n + 1));
    if (!nn) return st_fail(d, name, "out of memory");
    d->name = nn;
    if (!(d->name[d->n] = strdup(name))) return st_fail(d, name, "out of memory");
    d->n++;
    return 0;
}

static int map_files(st_dir_t *d) {
    d->map = calloc((size_t)d->n, sizeof(void *));
    d->size = calloc((size_t)d->n, sizeof(size_t));
    d->st = calloc((size_t)d->n, sizeof(st_file_t));
    d->used = calloc((size_t)d->n, sizeof(unsigned char *));
    if (!d->map || !d->size || !d->st || !d->used) return st_fail(d, "model", "out of memory");
    for (int i = 0; i < d->n; i++) {
        const char *name = d->name[i];
        char path[4096], msg[300];
        if (snprintf(path, sizeof path, "%s/%s", d->dir, name) >= (int)sizeof path)
            return st_fail(d, name, "path too long");
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            if (d->index_name)
                return st_fail(d, d->index_name, "weight_map: shard '%.100s' cannot be opened: %s", name,
                               strerror(errno));
            return st_fail(d, name, "cannot open: %s", strerror(errno));
        }
        struct stat sb;
        if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            close(fd);
            return st_fail(d, name, "not a regular file");
        }
        size_t size = (size_t)sb.st_size;
        void *map = size ? hostmem_map_file(fd, size) : NULL; /* 2 MiB aligned: see model_hugepages */
        close(fd);
        if (size && map == MAP_FAILED) return st_fail(d, name, "cannot map: %s", strerror(errno));
        d->map[i] = map, d->size[i] = size;
        if (st_parse(map, size, &d->st[i], msg, sizeof msg) != 0) return st_fail(d, name, "%s", msg);
        if (!(d->used[i] = calloc((size_t)d->st[i].n + 1, 1))) return st_fail(d, name, "out of memory");
    }
    return 0;
}

int st_dir_open(st_dir_t *d, const char *dir) {
    *d = (st_dir_t){.dir = dir};
    char path[4096], why[200];
    struct stat sb;
    if (snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path)
        return st_fail(d, "model.safetensors", "path too long");
    if (stat(path, &sb) == 0) return add_file(d, "model.safetensors") ? -1 : map_files(d);
    d->index_name = "model.safetensors.index.json";
    size_t n;
    int missing;
    char *text = cfgjson_read(dir, d->index_name, ST_DIR_MAX_INDEX, &n, &missing, why, sizeof why);
    if (!text) {
        if (missing) {
            d->index_name = NULL;
            return st_fail(d, "model.safetensors", "missing, and no model.safetensors.index.json either");
        }
        return st_fail(d, d->index_name, "%s", why);
    }
    d->index = cJSON_ParseWithLength(text, n);
    free(text);
    const cJSON *wm = d->index ? cJSON_GetObjectItemCaseSensitive(d->index, "weight_map") : NULL;
    if (!cJSON_IsObject(wm) || !wm->child) return st_fail(d, d->index_name, "weight_map missing or empty");
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return st_fail(d, d->index_name, "weight_map['%.100s'] is not a file name", e->string);
        if (add_file(d, e->valuestring)) return -1;
    }
    return map_files(d);
}

const st_tensor_t *st_dir_find(st_dir_t *d, const char *name, int *file) {
    const char *want = NULL;
    if (d->index) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(d->index, "weight_map"), name);
        if (!e) return NULL;
        want = e->valuestring;
    }
    for (int i = 0; i < d->n; i++) {
        if (want && strcmp(want, d->name[i])) continue;
        const st_tensor_t *t = st_find(&d->st[i], name);
        if (!t) continue;
        *file = i;
        d->used[i][t - d->st[i].t] = 1;
        return t;
    }
    if (want)
        st_fail(d, d->index_name, "weight_map puts '%.100s' in '%.100s', but that shard has no such tensor", name,
                want);
    return NULL;
}

void st_dir_close(st_dir_t *d, int keep_maps) {
    for (int i = 0; i < d->n; i++) {
        if (d->st) st_free(&d->st[i]);
        if (d->used) free(d->used[i]);
        if (!keep_maps && d->map && d->map[i]) munmap(d->map[i], d->size[i]);
        free(d->name[i]);
    }
    if (!keep_maps) free(d->map), free(d->size);
    free(d->st), free(d->used), free(d->name);
    cJSON_Delete(d->index);
    d->n = 0, d->name = NULL, d->map = NULL, d->size = NULL, d->st = NULL, d->used = NULL, d->index = NULL;
}
