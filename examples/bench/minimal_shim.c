/*
 * The minimal C shim the load-cost target is measured against (issue 20): what any
 * LD_PRELOAD keepalive shim must at least do when a process starts. It resolves
 * socket and accept4 with dlsym(RTLD_NEXT) and parses four variables with getenv and
 * atoi in its constructor; its socket() turns keepalive on. No validation, no accept,
 * no errno care: a floor for the cost of loading, not a product (reference_shim.c is
 * the careful one).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>

static int (*real_socket)(int, int, int);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int idle, intvl, cnt, user_timeout;

static int number(const char *name)
{
    const char *value = getenv(name);
    return value ? atoi(value) : 0;
}

__attribute__((constructor)) static void init(void)
{
    real_socket = dlsym(RTLD_NEXT, "socket");
    real_accept4 = dlsym(RTLD_NEXT, "accept4");
    idle = number("KEEPIDLE");
    intvl = number("KEEPINTVL");
    cnt = number("KEEPCNT");
    user_timeout = number("TCP_USER_TIMEOUT");
}

int socket(int domain, int type, int protocol)
{
    int fd = real_socket(domain, type, protocol);
    int on = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    return fd;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    return real_accept4(fd, addr, len, flags);
}
