/* config_json.h - reading a model folder's small JSON files (config.json,
 * a shard index) and checked integer fields: what the Hugging Face loaders
 * (hf.c, t5.c) share. Each failure is a message for the caller to prefix
 * with the folder and file. */
#ifndef BILD_CONFIG_JSON_H
#define BILD_CONFIG_JSON_H

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stddef.h>

/* The loaders' one-line refusal: "model 'DIR': FILE: message" into err. */
void cfgjson_vfail(char *err, size_t errlen, const char *dir, const char *file, const char *fmt, va_list ap);

/* The whole file dir/name (at most max bytes) as a NUL-terminated string the
 * caller frees, its length in *size. NULL with a message in why; *missing
 * is set to 1 when the file does not exist. */
char *cfgjson_read(const char *dir, const char *name, size_t max, size_t *size, int *missing, char *why,
                   size_t whylen);
/* key of object o, or NULL when absent or null */
const cJSON *cfgjson_field(const cJSON *o, const char *key);
/* An integer field in [lo, hi] into *out; def when absent unless required.
 * 0 with "KEY is missing" or "KEY is not an integer in LO..HI" in why. */
int cfgjson_int(const cJSON *o, const char *key, int required, int def, int lo, int hi, int *out, char *why,
                size_t whylen);

#endif
