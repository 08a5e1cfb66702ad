/* config_json.c - see config_json.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config_json.h"

void cfgjson_vfail(char *err, size_t errlen, const char *dir, const char *file, const char *fmt, va_list ap) {
    char msg[400];
    vsnprintf(msg, sizeof msg, fmt, ap);
    snprintf(err, errlen, "model '%s': %s: %s", dir, file, msg);
}

char *cfgjson_read(const char *dir, const char *name, size_t max, size_t *size, int *missing, char *why,
                   size_t whylen) {
    char path[4096];
    *missing = 0;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        snprintf(why, whylen, "path too long");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        *missing = errno == ENOENT;
        snprintf(why, whylen, "cannot open: %s", strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || (unsigned long)n > max || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        snprintf(why, whylen, "unreadable or larger than %zu bytes", max);
        return NULL;
    }
    if (!(buf = malloc((size_t)n + 1)) || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        snprintf(why, whylen, "cannot read");
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    *size = (size_t)n;
    return buf;
}

const cJSON *cfgjson_field(const cJSON *o, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    return j && !cJSON_IsNull(j) ? j : NULL;
}

int cfgjson_int(const cJSON *o, const char *key, int required, int def, int lo, int hi, int *out, char *why,
                size_t whylen) {
    const cJSON *j = cfgjson_field(o, key);
    if (!j) {
        if (required) return snprintf(why, whylen, "%s is missing", key), 0;
        *out = def;
        return 1;
    }
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < lo || j->valuedouble > hi)
        return snprintf(why, whylen, "%s is not an integer in %d..%d", key, lo, hi), 0;
    *out = (int)j->valuedouble;
    return 1;
}
