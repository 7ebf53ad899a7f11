/*
 * A library whose constructor runs before libkeepalive's (list it after libkeepalive
 * in LD_PRELOAD: ld.so initialises the later entry first): it sets errno to 4242,
 * creates a TCP socket — the library's first call, which reads the configuration and
 * may warn — and prints "early=N ok=K" with errno after that successful call.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>

__attribute__((constructor)) static void early(void)
{
    int fd;
    errno = 4242;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    printf("early=%d ok=%d\n", errno, fd >= 0);
    fflush(stdout);
}
