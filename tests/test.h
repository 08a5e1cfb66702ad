/* test.h - the minimal assertion helpers every test program uses.
 *
 * A test program runs its cases, prints one line per failed check with
 * file:line and the values, and exits non-zero if anything failed. The
 * runner (tests/run.sh) counts programs, not checks.
 */
#ifndef BILD_TEST_H
#define BILD_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int test_failures = 0;

#define EXPECT(cond)                                                             \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);   \
            test_failures++;                                                     \
        }                                                                        \
    } while (0)

#define EXPECT_EQ_INT(a, b)                                                      \
    do {                                                                         \
        long long _a = (long long)(a), _b = (long long)(b);                      \
        if (_a != _b) {                                                          \
            fprintf(stderr, "%s:%d: FAILED: %s == %s (%lld vs %lld)\n", __FILE__,\
                    __LINE__, #a, #b, _a, _b);                                   \
            test_failures++;                                                     \
        }                                                                        \
    } while (0)

/* |a - b| <= atol + rtol * |b|; b is the reference. */
#define EXPECT_NEAR(a, b, atol, rtol)                                            \
    do {                                                                         \
        double _a = (a), _b = (b);                                               \
        if (!(fabs(_a - _b) <= (atol) + (rtol) * fabs(_b))) {                    \
            fprintf(stderr, "%s:%d: FAILED: %s ~ %s (%.9g vs %.9g)\n", __FILE__, \
                    __LINE__, #a, #b, _a, _b);                                   \
            test_failures++;                                                     \
        }                                                                        \
    } while (0)

/* Ends main: prints a verdict and returns the exit status. */
#define TEST_DONE(name)                                                          \
    (fprintf(stderr, "%s: %s (%d failed checks)\n", (name),                      \
             test_failures ? "FAIL" : "ok", test_failures),                      \
     test_failures ? 1 : 0)

/* Writes the path of the file REL of the models folder to buf: models/
 * (BILD_MODELS overrides), which scripts/get-models.sh (make models, run by
 * make test) fills and checks against models/SHA256SUMS. */
static inline const char *test_model(char *buf, size_t n, const char *rel) {
    const char *d = getenv("BILD_MODELS");
    snprintf(buf, n, "%s/%s", d && *d ? d : "models", rel);
    return buf;
}

#endif
