/*
 * Makes one symbol impossible to find: interposes dlsym(3) and returns NULL for the
 * name in $TEST_HIDE_SYMBOL, forwarding every other lookup to glibc's dlsym. Listed
 * after libkeepalive in LD_PRELOAD, so that RTLD_NEXT from here still means libc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

void *dlsym(void *handle, const char *name)
{
    static void *(*real)(void *, const char *);
    const char *hidden = getenv("TEST_HIDE_SYMBOL");
    if (hidden && !strcmp(name, hidden))
        return NULL;
    if (!real)
        real = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
    if (!real) /* glibc before 2.34 kept dlsym in libdl */
        real = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
    return real(handle, name);
}
