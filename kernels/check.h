/* check.h - CHECK(cond): the always-on assertion for programmer errors
 * (never for bad input from files, users or peers). Prints the expression
 * and its location, then aborts. */
#ifndef BILD_CHECK_H
#define BILD_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "bild: internal error: CHECK(%s) failed at %s:%d\n", #cond,   \
                    __FILE__, __LINE__);                                                  \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

#endif
