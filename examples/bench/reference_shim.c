/*
 * The reference C shim the benchmark compares libkeepalive with: the same job done
 * the way a careful C programmer would do it in a few lines. It resolves socket,
 * accept and accept4 with dlsym(RTLD_NEXT) and reads KEEPALIVE (on, off, skip) and
 * the timers with getenv and strtol in its constructor, and sets the same options on every TCP socket created
 * or accepted, keeping errno as the real call left it (without that, a failed
 * setsockopt would change what the program sees). No validation messages, no debug
 * output, no secure-mode check: the floor a shim can reach, not a product.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>

static int (*real_socket)(int, int, int);
static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int idle, intvl, cnt, user_timeout = -1;
static int mode_off, mode_skip;

static int number(const char *name)
{
    const char *value = getenv(name);
    return value ? (int)strtol(value, NULL, 10) : -1;
}

__attribute__((constructor)) static void init(void)
{
    real_socket = dlsym(RTLD_NEXT, "socket");
    real_accept = dlsym(RTLD_NEXT, "accept");
    real_accept4 = dlsym(RTLD_NEXT, "accept4");
    const char *mode = getenv("KEEPALIVE");
    mode_off = mode && !strcasecmp(mode, "off");
    mode_skip = mode && !strcasecmp(mode, "skip");
    idle = number("KEEPIDLE");
    intvl = number("KEEPINTVL");
    cnt = number("KEEPCNT");
    user_timeout = number("TCP_USER_TIMEOUT");
}

static void configure(int fd)
{
    int saved = errno;
    int on = 1;
    if (mode_off)
        return;
    if (!mode_skip)
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    if (idle > 0)
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    if (intvl > 0)
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    if (cnt > 0)
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    if (user_timeout >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
    errno = saved;
}

int socket(int domain, int type, int protocol)
{
    int fd = real_socket(domain, type, protocol);
    int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0 && (domain == AF_INET || domain == AF_INET6) && base == SOCK_STREAM &&
        (protocol == 0 || protocol == IPPROTO_TCP))
        configure(fd);
    return fd;
}

static void accepted(int fd)
{
    int saved = errno;
    int protocol = 0;
    socklen_t len = sizeof protocol;
    if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 &&
        protocol == IPPROTO_TCP)
        configure(fd);
    errno = saved;
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    int conn = real_accept(fd, addr, len);
    accepted(conn);
    return conn;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    int conn = real_accept4(fd, addr, len, flags);
    accepted(conn);
    return conn;
}
