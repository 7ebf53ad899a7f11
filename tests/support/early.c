/*
 * A library whose constructor runs before libkeepalive's (list it after
 * libkeepalive in LD_PRELOAD: ld.so initialises the later entry first) and does
 * what the environment asks:
 *
 *   EARLY_LONG=NAME=TAIL  setenv(NAME, 131072 zeros then TAIL): a value longer
 *                         than any execve(2) can pass on 4 KiB pages.
 *   EARLY_FORK_MS=N       starts a thread that forks after N ms; the child sets
 *                         KEEPIDLE=99, creates a TCP socket, prints
 *                         "@ forked idle=SECONDS" and exits.
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ZEROS 131072

static void *fork_later(void *arg)
{
    long ms = (long)arg;
    struct timespec delay = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&delay, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int idle = -1, fd;
        socklen_t len = sizeof idle;
        setenv("KEEPIDLE", "99", 1);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &len);
        printf("@ forked idle=%d\n", idle);
        fflush(stdout);
        _exit(0);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return NULL;
}

__attribute__((constructor)) static void early(void)
{
    const char *long_value = getenv("EARLY_LONG");
    const char *fork_ms = getenv("EARLY_FORK_MS");
    if (long_value) {
        const char *eq = strchr(long_value, '=');
        size_t tail = strlen(eq + 1);
        char *name = strndup(long_value, (size_t)(eq - long_value));
        char *value = malloc(ZEROS + tail + 1);
        memset(value, '0', ZEROS);
        memcpy(value + ZEROS, eq + 1, tail + 1);
        setenv(name, value, 1);
    }
    if (fork_ms) {
        pthread_t thread;
        pthread_create(&thread, NULL, fork_later, (void *)atol(fork_ms));
        pthread_detach(thread);
    }
}
