/*
 * A library whose constructor runs before libkeepalive's (list it after
 * libkeepalive in LD_PRELOAD: ld.so initialises the later entry first) and does
 * what the environment asks:
 *
 *   EARLY_LONG=NAME=TAIL  setenv(NAME, 131072 zeros then TAIL): a value longer
 *                         than any execve(2) can pass on 4 KiB pages.
 *   EARLY_FORK_ON_LINE=1  puts an AF_UNIX stream (journald's shape, where the
 *                         library writes its load-time line) on fd 2 and starts
 *                         a thread that waits for
 *                         the first bytes written there, copies them to the
 *                         original stderr and forks at once; the child sets
 *                         KEEPIDLE=99, creates a TCP socket, prints
 *                         "@ forked idle=SECONDS" and exits.
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <stddef.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define ZEROS 131072

static int line_pipe[2] = {-1, -1};
static int original_stderr = -1;

static void *fork_on_line(void *arg)
{
    char line[512];
    ssize_t n;
    (void)arg;
    n = read(line_pipe[0], line, sizeof line);
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
    if (n > 0)
        write(original_stderr, line, (size_t)n);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return NULL;
}

/* journald's shape: pair[1] is a client of a listener with a (abstract) name, pair[0]
 * the end that listener accepted. A socketpair would not do: the library writes only
 * to a stream whose peer has a name. */
static int journal_stream(int pair[2])
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    socklen_t len = offsetof(struct sockaddr_un, sun_path) + 1 +
        (socklen_t)snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1,
                            "libkeepalive-early.%d", (int)getpid());
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ok = listener >= 0 && bind(listener, (struct sockaddr *)&addr, len) == 0 &&
        listen(listener, 1) == 0 && (pair[1] = socket(AF_UNIX, SOCK_STREAM, 0)) >= 0 &&
        connect(pair[1], (struct sockaddr *)&addr, len) == 0 &&
        (pair[0] = accept(listener, NULL, NULL)) >= 0;
    if (listener >= 0)
        close(listener);
    return ok ? 0 : -1;
}

__attribute__((constructor)) static void early(void)
{
    const char *long_value = getenv("EARLY_LONG");
    const char *fork_wanted = getenv("EARLY_FORK_ON_LINE");
    if (long_value) {
        const char *eq = strchr(long_value, '=');
        size_t tail = strlen(eq + 1);
        char *name = strndup(long_value, (size_t)(eq - long_value));
        char *value = malloc(ZEROS + tail + 1);
        memset(value, '0', ZEROS);
        memcpy(value + ZEROS, eq + 1, tail + 1);
        setenv(name, value, 1);
    }
    if (fork_wanted && journal_stream(line_pipe) == 0) {
        pthread_t thread;
        original_stderr = dup(2);
        dup2(line_pipe[1], 2);
        close(line_pipe[1]);
        pthread_create(&thread, NULL, fork_on_line, NULL);
    }
}
