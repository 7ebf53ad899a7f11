/*
 * A second preloaded library for the tests, standing in for the other shims and
 * constructors a real process may carry. Each behaviour is off unless its variable
 * is set:
 *
 *   (always)                  socket() is interposed too and forwarded unchanged, as
 *                             another shim in the same process would do.
 *   TEST_RACE_THREADS=N       this library's constructor, which ld.so runs before
 *                             libkeepalive's when listed after it in LD_PRELOAD,
 *                             starts N threads that each create 1000 TCP sockets while
 *                             libkeepalive has not initialised yet, and prints
 *                             "@ race ok=... bad=..." (ok: SO_KEEPALIVE on and
 *                             TCP_KEEPIDLE equal to $KEEPIDLE).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int socket(int domain, int type, int protocol)
{
    int (*next)(int, int, int) = dlsym(RTLD_NEXT, "socket");
    return next(domain, type, protocol);
}

static int expected_idle;

static void *create_sockets(void *result)
{
    int ok = 0;
    for (int i = 0; i < 1000; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int on = 0, idle = 0;
        socklen_t len = sizeof on;
        getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &len);
        len = sizeof idle;
        getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &len);
        ok += fd >= 0 && on == 1 && idle == expected_idle;
        close(fd);
    }
    *(int *)result = ok;
    return NULL;
}

__attribute__((constructor)) static void race(void)
{
    const char *threads = getenv("TEST_RACE_THREADS");
    const char *idle = getenv("KEEPIDLE");
    if (!threads || !idle)
        return;
    int n = atoi(threads);
    expected_idle = atoi(idle);
    pthread_t tid[64];
    int ok[64] = {0};
    int total = 0;
    if (n > 64)
        n = 64;
    for (int i = 0; i < n; i++)
        pthread_create(&tid[i], NULL, create_sockets, &ok[i]);
    for (int i = 0; i < n; i++) {
        pthread_join(tid[i], NULL);
        total += ok[i];
    }
    printf("@ race ok=%d bad=%d\n", total, n * 1000 - total);
    fflush(stdout);
}
