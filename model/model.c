/* model.c - format dispatch: a directory is a Hugging Face model (hf.c), a
 * file a llama2.c checkpoint (llama2c.c). The object both loaders fill and
 * its accessors are model_file.c, which the loaders use without coming
 * back here.
 */
#include <sys/stat.h>

#include "model/model.h"

model_file_t *model_open(const char *path, char *err, size_t errlen) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return hf_open(path, err, errlen);
    return llama2c_open(path, err, errlen);
}
