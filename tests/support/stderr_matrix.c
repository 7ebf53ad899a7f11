/*
 * The harness of tests/stderr_matrix.rs: one cell of the matrix per run.
 *
 *   stderr_matrix cell REPORT KIND STATE LIBRARY|- DIR
 *       Makes fd 2 of KIND, runs this program again as the probe (with LD_PRELOAD set
 *       to LIBRARY, or without it for "-", and a refused value: the library has a
 *       line to write at load), waits for it at most HANG_MS, and reads back whatever
 *       reached fd 2's other end. The signal STATE is set here, before execve, which
 *       keeps the mask, ignored signals and pending signals.
 *   stderr_matrix probe
 *       The program under test: observes itself at main, calls
 *       socket(AF_INET, SOCK_STREAM, 0), and observes itself again.
 *
 * Everything is reported as key=value lines appended to REPORT, which the probe
 * gets as fd REPORT_FD: its fds 0-2 are what is under test. The probe writes nothing
 * anywhere else, so any byte on its fd 2 is the library's.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* Where the probe finds the report: high enough never to be one of the fds under
 * test, or one the probe's socket() could get. */
#define REPORT_FD 100
/* Any cell still running after this long waited on stderr: the library must never. */
#define HANG_MS 10000
/* RLIMIT_FSIZE of the file-fsize kind, and the size that file already has. The
 * report file stays far below the limit, so only fd 2 is past it. */
#define FSIZE_LIMIT 65536
#define FSIZE_FILLED (FSIZE_LIMIT + 4096)
/* The errno the probe sets before socket(): no call sets it, so any change shows. */
#define ERRNO_SENTINEL 1234
/* Written by the session leader to the terminal after the probe has ended: the
 * terminal keeps order, so everything the probe wrote is read before it. */
#define MARKER "@@stderr-matrix-end@@"
#define LINE_PREFIX "libkeepalive:"

extern char **environ;

/* The signals a line's write can raise: SIGPIPE (pipes), SIGXFSZ (files past
 * RLIMIT_FSIZE), SIGTTOU (terminals, background with tostop). */
static const int SIGNALS[3] = {SIGPIPE, SIGXFSZ, SIGTTOU};

static int report_fd = -1;

/* One key=value line, with one write(2), so lines of the processes sharing the
 * report never interleave. */
static void say(const char *format, ...)
{
    char line[1024];
    va_list args;
    va_start(args, format);
    int len = vsnprintf(line, sizeof line - 1, format, args);
    va_end(args);
    if (len < 0)
        return;
    if (len > (int)sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    if (write(report_fd, line, len) != len)
        _exit(120);
}

static void fail(const char *what)
{
    say("error=%s: %s", what, strerror(errno));
    _exit(121);
}

/* ---- signal states --------------------------------------------------------------- */

/* Every signal of SIGNALS back to its default action, and nothing blocked. */
static void reset_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        fail("sigprocmask");
    for (int i = 0; i < 3; i++)
        if (signal(SIGNALS[i], SIG_DFL) == SIG_ERR)
            fail("signal");
}

/* Puts SIGNALS into STATE: "default", "blocked-process" (blocked, one pending for
 * the process: kill), "blocked-thread" (blocked, one pending for this thread:
 * tgkill) or "ignored". A handler is no state at load: execve resets it. */
static void apply_state(const char *state)
{
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < 3; i++)
        sigaddset(&set, SIGNALS[i]);
    if (!strcmp(state, "default"))
        return;
    if (!strcmp(state, "blocked-process") || !strcmp(state, "blocked-thread")) {
        int thread = !strcmp(state, "blocked-thread");
        if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
            fail("sigprocmask");
        for (int i = 0; i < 3; i++) {
            int rc = thread ? syscall(SYS_tgkill, getpid(), gettid(), SIGNALS[i])
                            : kill(getpid(), SIGNALS[i]);
            if (rc != 0)
                fail("kill");
        }
        return;
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    sigemptyset(&action.sa_mask);
    if (strcmp(state, "ignored")) {
        errno = EINVAL;
        fail(state);
    }
    action.sa_handler = SIG_IGN;
    for (int i = 0; i < 3; i++)
        if (sigaction(SIGNALS[i], &action, NULL) != 0)
            fail("sigaction");
}

/* ---- the probe ------------------------------------------------------------------- */

/* Reports which of fds 0..REPORT_FD-1 are open and the file status flags of fds
 * 0-2 (O_NONBLOCK and O_APPEND belong to the program, and to every process sharing
 * the file description), then the signal sets the kernel shows in /proc/self/status:
 * SigPnd (this thread's pending), ShdPnd (the process's), SigBlk, SigIgn, SigCgt.
 * The fds come first: with fd 2 closed, the open of /proc takes fd 2 for a moment. */
static void observe(const char *when)
{
    char fds[512] = "";
    size_t used = 0;
    for (int fd = 0; fd < REPORT_FD; fd++)
        if (fcntl(fd, F_GETFD) >= 0 && used < sizeof fds - 8)
            used += snprintf(fds + used, sizeof fds - used, "%s%d", used ? "," : "", fd);
    say("%s.fds=%s", when, used ? fds : "none");
    say("%s.flags=%x,%x,%x", when, fcntl(0, F_GETFL), fcntl(1, F_GETFL), fcntl(2, F_GETFL));

    char status[8192];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail("open /proc/self/status");
    ssize_t len = 0, got;
    while ((got = read(fd, status + len, sizeof status - 1 - len)) > 0)
        len += got;
    close(fd);
    status[len] = 0;
    static const char *const keys[] = {"SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        char label[16];
        snprintf(label, sizeof label, "\n%s:", keys[i]);
        const char *at = strstr(status, label);
        if (!at) {
            say("%s.%s=missing", when, keys[i]);
            continue;
        }
        at += strlen(label);
        at += strspn(at, " \t");
        say("%s.%s=%.*s", when, keys[i], (int)strcspn(at, "\n"), at);
    }
}

static int probe(int errno_at_main)
{
    report_fd = REPORT_FD;
    say("main.errno=%d", errno_at_main);
    observe("main");
    errno = ERRNO_SENTINEL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int errno_after = errno;
    say("after.socket=%s", fd >= 0 ? "ok" : "failed");
    say("after.errno=%d", errno_after);
    observe("after");
    say("probe.done=1");
    return 0;
}

/* ---- running the probe ----------------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

/* Waits for `pid` at most HANG_MS and reports how it ended: exited, killed by a
 * signal, stopped (then killed), or still running (then killed). */
static void wait_bounded(pid_t pid)
{
    int status;
    for (long waited = 0;; waited += 5) {
        pid_t done = waitpid(pid, &status, WNOHANG | WUNTRACED);
        if (done < 0)
            fail("waitpid");
        if (done == pid) {
            if (WIFSTOPPED(status)) {
                say("status=stopped by %d", WSTOPSIG(status));
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
            } else if (WIFSIGNALED(status)) {
                say("status=killed by %d", WTERMSIG(status));
            } else {
                say("status=exit %d", WEXITSTATUS(status));
            }
            return;
        }
        if (waited >= HANG_MS) {
            say("status=still running after %d ms", HANG_MS);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return;
        }
        sleep_ms(5);
    }
}

struct cell {
    const char *self, *kind, *state, *library;
    int fd[3]; /* what the probe gets as fds 0-2; -1: closed */
    int fsize; /* set RLIMIT_FSIZE */
};

/* In the forked child: fds 0-2, the report on REPORT_FD and nothing else, the
 * signal state for "load", the environment; then execve of the probe. */
static void exec_probe(const struct cell *cell)
{
    /* Out of the way first, so that placing one never overwrites another. */
    int moved[3];
    for (int i = 0; i < 3; i++) {
        moved[i] = cell->fd[i] < 0 ? -1 : fcntl(cell->fd[i], F_DUPFD_CLOEXEC, REPORT_FD + 1);
        if (cell->fd[i] >= 0 && moved[i] < 0)
            fail("F_DUPFD");
    }
    if (dup2(report_fd, REPORT_FD) < 0 || fcntl(REPORT_FD, F_SETFD, 0) != 0)
        fail("dup2 report");
    report_fd = REPORT_FD;
    for (int i = 0; i < 3; i++) {
        if (moved[i] < 0)
            close(i);
        else if (dup2(moved[i], i) < 0)
            fail("dup2");
    }
    if (close_range(3, REPORT_FD - 1, 0) != 0 || close_range(REPORT_FD + 1, ~0U, 0) != 0)
        fail("close_range");
    reset_signals();
    apply_state(cell->state);
    if (cell->fsize) {
        struct rlimit limit;
        getrlimit(RLIMIT_FSIZE, &limit);
        limit.rlim_cur = FSIZE_LIMIT;
        if (setrlimit(RLIMIT_FSIZE, &limit) != 0)
            fail("setrlimit");
    }
    static const char *const variables[] = {
        "LD_PRELOAD", "KEEPALIVE", "KEEPIDLE", "KEEPINTVL", "KEEPCNT", "TCP_USER_TIMEOUT",
    };
    for (size_t i = 0; i < sizeof variables / sizeof *variables; i++)
        unsetenv(variables[i]);
    if (strcmp(cell->library, "-"))
        setenv("LD_PRELOAD", cell->library, 1);
    setenv("KEEPIDLE", "30s", 1); /* a bad value: a warning from the constructor */
    char *argv[] = {(char *)cell->self, "probe", NULL};
    execve(cell->self, argv, environ);
    fail("execve");
}

/* Reports the library's lines among `data`, read from `where`, under `key`: how
 * many, and the first, escaped. */
static void report_lines(const char *key, const char *where, const char *data, size_t len)
{
    int lines = 0;
    const char *first = NULL;
    size_t prefix = strlen(LINE_PREFIX);
    for (const char *at = data; (at = memmem(at, len - (at - data), LINE_PREFIX, prefix)); at++) {
        if (!first)
            first = at;
        lines++;
    }
    say("%s.where=%s", key, where);
    say("%s.count=%d", key, lines);
    if (first) {
        char text[600];
        size_t n = 0;
        for (const char *c = first; c < data + len && *c != '\n' && n < sizeof text - 5; c++) {
            if (*c >= ' ' && *c <= '~')
                text[n++] = *c;
            else
                n += snprintf(text + n, sizeof text - n, "\\x%02x", (unsigned char)*c);
        }
        text[n] = 0;
        say("%s.first=%s", key, text);
    }
}

/* Everything `fd` holds, up to `cap`, without waiting: called once every writer is
 * gone, so what is there is all there will be. */
static size_t drain(int fd, char *buf, size_t cap)
{
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    size_t len = 0;
    ssize_t got;
    while (len < cap && (got = read(fd, buf + len, cap - len)) > 0)
        len += got;
    return len;
}

static char data[1 << 20];

static int open_or_fail(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC, 0600);
    if (fd < 0)
        fail(path);
    return fd;
}

/* A connected AF_UNIX stream pair through a listener bound to a name, as journald's
 * /run/systemd/journal/stdout: *client is the connecting end, *server the accepted
 * one, which carries the listener's name. */
static void named_unix_pair(int *client, int *server)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "/tmp/stderr-matrix.%d.sock", getpid());
    unlink(addr.sun_path);
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    *client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0 || *client < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(listener, 1) != 0 || connect(*client, (struct sockaddr *)&addr, sizeof addr) != 0)
        fail("AF_UNIX listener");
    *server = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (*server < 0)
        fail("accept4");
    close(listener);
    unlink(addr.sun_path);
}

/* A TCP connection on loopback: *client and the accepted *server. */
static void tcp_pair(int *client, int *server)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    *client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0 || *client < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(listener, 1) != 0 || getsockname(listener, (struct sockaddr *)&addr, &len) != 0 ||
        connect(*client, (struct sockaddr *)&addr, sizeof addr) != 0)
        fail("TCP listener");
    *server = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (*server < 0)
        fail("accept4");
    close(listener);
}

/* Terminal kinds. The session leader makes the pty its controlling terminal, sets or
 * clears TOSTOP, and forks the probe: in its own foreground group, or, for the
 * background, in a new group whose parent (the leader) is in another group of the
 * same session, so that the group is not orphaned and SIGTTOU really stops it. The
 * leader waits for the probe, then writes MARKER; this process reads the master
 * until MARKER, never longer than the hang limit and a margin. */
static void terminal_cell(struct cell *cell)
{
    int background = strcmp(cell->kind, "tty-foreground") != 0;
    int tostop = !strcmp(cell->kind, "tty-background-tostop");
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0)
        fail("posix_openpt");
    const char *name = ptsname(master);
    if (!name)
        fail("ptsname");
    /* Held open here, so that the terminal is not hung up before it is read. */
    int held = open_or_fail(name, O_RDWR | O_NOCTTY);
    pid_t leader = fork();
    if (leader < 0)
        fail("fork");
    if (leader == 0) {
        close(master);
        close(held);
        if (setsid() < 0)
            fail("setsid");
        int tty = open_or_fail(name, O_RDWR);
        if (ioctl(tty, TIOCSCTTY, 0) != 0)
            fail("TIOCSCTTY");
        struct termios mode;
        if (tcgetattr(tty, &mode) != 0)
            fail("tcgetattr");
        if (tostop)
            mode.c_lflag |= TOSTOP;
        else
            mode.c_lflag &= ~TOSTOP;
        if (tcsetattr(tty, TCSANOW, &mode) != 0 || tcsetpgrp(tty, getpgrp()) != 0)
            fail("tcsetattr");
        pid_t pid = fork();
        if (pid < 0)
            fail("fork");
        if (pid == 0) {
            if (background && setpgid(0, 0) != 0)
                fail("setpgid");
            say("tty.foreground=%d", tcgetpgrp(tty) == getpgrp());
            say("tty.tostop=%d", tostop);
            cell->fd[0] = cell->fd[1] = cell->fd[2] = tty;
            exec_probe(cell);
        }
        wait_bounded(pid);
        if (write(tty, MARKER "\n", strlen(MARKER) + 1) < 0)
            fail("write marker");
        _exit(0);
    }
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    size_t len = 0;
    for (long waited = 0; waited < HANG_MS + 5000; waited += 5) {
        ssize_t got = read(master, data + len, sizeof data - 1 - len);
        if (got > 0) {
            len += got;
            data[len] = 0;
            if (memmem(data, len, MARKER, strlen(MARKER)))
                break;
            continue;
        }
        sleep_ms(5);
    }
    int status;
    if (waitpid(leader, &status, 0) != leader || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        say("error=the session leader failed");
    if (!memmem(data, len, MARKER, strlen(MARKER)))
        say("error=no end marker from the terminal");
    report_lines("line", "terminal", data, len);
    close(held);
    close(master);
}

static void run_cell(struct cell *cell, const char *dir)
{
    if (!strncmp(cell->kind, "tty-", 4)) {
        terminal_cell(cell);
        return;
    }

    /* stdin /dev/null; stdout a pipe read back here, where no line may arrive. */
    int devnull = open_or_fail("/dev/null", O_RDWR);
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0)
        fail("pipe2");
    cell->fd[0] = cell->fd[2] = devnull;
    cell->fd[1] = out[1];
    int back = -1;         /* where the line arrives: fd 2's other end */
    char path[4096] = "";  /* or the file fd 2 writes */
    const char *kind = cell->kind;
    int pipefd[2], pair[2], client, server;
    if (!strncmp(kind, "pipe-", 5)) {
        if (pipe2(pipefd, O_CLOEXEC) != 0)
            fail("pipe2");
        cell->fd[2] = pipefd[1];
        back = pipefd[0];
        if (!strcmp(kind, "pipe-full")) {
            /* Full to the last byte, then blocking again, as a program would have it. */
            int flags = fcntl(pipefd[1], F_GETFL);
            fcntl(pipefd[1], F_SETFL, flags | O_NONBLOCK);
            static char chunk[4096];
            memset(chunk, 'x', sizeof chunk);
            while (write(pipefd[1], chunk, sizeof chunk) > 0)
                ;
            while (write(pipefd[1], chunk, 1) > 0)
                ;
            fcntl(pipefd[1], F_SETFL, flags);
        } else if (!strcmp(kind, "pipe-dead")) {
            close(back);
            back = -1;
        }
    } else if (!strcmp(kind, "tcp")) {
        tcp_pair(&client, &server);
        cell->fd[2] = client;
        back = server;
    } else if (!strncmp(kind, "unix-accepted-", 14)) {
        /* The program's peer: the accepted end, on fd 2 and, by the kind's digits,
         * on fds 0 and 1 too. */
        named_unix_pair(&client, &server);
        for (int i = 0; i < 3; i++)
            if (strchr(kind + 14, '0' + i))
                cell->fd[i] = server;
        back = client;
    } else if (!strcmp(kind, "unix-client")) {
        named_unix_pair(&client, &server);
        cell->fd[2] = client;
        back = server;
    } else if (!strncmp(kind, "socketpair", 10)) {
        int type = !strcmp(kind, "socketpair-dgram")       ? SOCK_DGRAM
                   : !strcmp(kind, "socketpair-seqpacket") ? SOCK_SEQPACKET
                                                           : SOCK_STREAM;
        if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, pair) != 0)
            fail("socketpair");
        cell->fd[2] = pair[0];
        back = pair[1];
    } else if (!strcmp(kind, "file") || !strcmp(kind, "file-fsize")) {
        snprintf(path, sizeof path, "%s/stderr-matrix.%d", dir, getpid());
        int fd = open_or_fail(path, O_WRONLY | O_CREAT | O_TRUNC);
        if (!strcmp(kind, "file-fsize")) {
            /* Already past the limit; appended to, as `2>>file` does. */
            static char filler[FSIZE_FILLED];
            memset(filler, 'x', sizeof filler);
            if (write(fd, filler, sizeof filler) != sizeof filler)
                fail("fill");
            close(fd);
            fd = open_or_fail(path, O_WRONLY | O_APPEND);
            cell->fsize = 1;
        }
        cell->fd[2] = fd;
    } else if (!strcmp(kind, "closed")) {
        cell->fd[2] = -1;
    } else if (strcmp(kind, "devnull")) {
        errno = EINVAL;
        fail(kind);
    }

    pid_t pid = fork();
    if (pid < 0)
        fail("fork");
    if (pid == 0)
        exec_probe(cell);
    /* Only the probe holds its fds now: its exit ends every writer. */
    int mine[5] = {cell->fd[0], cell->fd[1], cell->fd[2], out[1], devnull};
    for (int i = 0; i < 5; i++) {
        int seen = mine[i] < 0 || mine[i] == back;
        for (int j = 0; j < i; j++)
            seen |= mine[j] == mine[i];
        if (!seen)
            close(mine[i]);
    }
    wait_bounded(pid);
    report_lines("stdout", "stdout", data, drain(out[0], data, sizeof data));
    if (back >= 0) {
        report_lines("line", kind, data, drain(back, data, sizeof data));
    } else if (path[0]) {
        int fd = open_or_fail(path, O_RDONLY);
        report_lines("line", kind, data, drain(fd, data, sizeof data));
        close(fd);
        unlink(path);
    } else {
        say("line.where=nowhere to read");
    }
}

int main(int argc, char **argv)
{
    int errno_at_main = errno;
    if (argc == 2 && !strcmp(argv[1], "probe"))
        return probe(errno_at_main);
    if (argc != 7 || strcmp(argv[1], "cell")) {
        fprintf(stderr, "usage: %s cell REPORT KIND STATE LIBRARY|- DIR\n", argv[0]);
        return 2;
    }
    report_fd = open(argv[2], O_WRONLY | O_APPEND | O_CLOEXEC);
    if (report_fd < 0) {
        perror(argv[2]);
        return 2;
    }
    static char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        fail("readlink /proc/self/exe");
    self[len] = 0;
    struct cell cell = {
        .self = self,
        .kind = argv[3],
        .state = argv[4],
        .library = argv[5],
    };
    run_cell(&cell, argv[6]);
    return 0;
}
