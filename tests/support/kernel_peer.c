/*
 * TCP connections made the ways preloading cannot see, for tests/kernel.rs; built
 * with -static, so the library is never loaded into it. Each mode prints one line
 * per connection with the keepalive settings the kernel holds for it:
 *   @ LABEL keepalive=1 idle=60 interval=10 count=6 user_timeout=0
 *
 *   pair          a listener, a client connected to it, the accepted connection
 *   pair6         the same over IPv6 (::1)
 *   rule          for each way a program sets keepalive options itself (none, an
 *                 explicit SO_KEEPALIVE=0, TCP_KEEPIDLE 333, TCP_USER_TIMEOUT 5000,
 *                 keepalive on with TCP_KEEPIDLE 333), a client set up that way
 *                 before connect ("client-WAY") and a connection accepted on a
 *                 listener set up that way before listen ("accepted-WAY"); the
 *                 sockets are made with socket(3), so preloading sees them too
 *   setsockopts   a matrix of setsockopt(2) calls (keepalive options and others, on
 *                 TCP, UDP and AF_UNIX sockets, lengths from 0 to 70000) with what
 *                 each returned, its errno and the value read back: "@ opt ..." lines
 *   uring         the accept made by io_uring (IORING_OP_ACCEPT), raw system calls
 *   mptcp         an MPTCP listener and client (IPPROTO_MPTCP), each with an explicit
 *                 SO_KEEPALIVE=0 set before listen and connect, and a plain TCP
 *                 client (SO_KEEPALIVE=0 too) accepted on the same listener; then
 *                 what ss(8) shows of their TCP sockets: the MPTCP connection's
 *                 subflows and the plain one's two ends ("@ mptcp-unavailable ERRNO"
 *                 when the kernel makes no MPTCP socket)
 *   hold PORT     listens on PORT on every address, says "@ listening", holds
 *                 every connection it accepts and never sends anything
 *   client ADDR PORT
 *                 connects, reports, then blocks in read(2) and reports how it ended
 *                 and when (CLOCK_MONOTONIC, ms): "@ result errno=110 at_ms=..."
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int option(int fd, int level, int name)
{
    int value = -1;
    socklen_t len = sizeof value;
    if (getsockopt(fd, level, name, &value, &len) != 0)
        return -1;
    return value;
}

static void report(const char *label, int fd)
{
    printf("@ %s keepalive=%d idle=%d interval=%d count=%d user_timeout=%d\n", label,
           option(fd, SOL_SOCKET, SO_KEEPALIVE), option(fd, IPPROTO_TCP, TCP_KEEPIDLE),
           option(fd, IPPROTO_TCP, TCP_KEEPINTVL), option(fd, IPPROTO_TCP, TCP_KEEPCNT),
           option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
    fflush(stdout);
}

static void die(const char *what)
{
    perror(what);
    exit(3);
}

/* What a program sets on a socket itself, by name (see `rule` above). */
static void set_up(int fd, const char *way)
{
    int off = 0, on = 1, idle = 333, user_timeout = 5000, failed = 0;
    if (!strcmp(way, "off"))
        failed = setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &off, sizeof off);
    else if (!strcmp(way, "idle"))
        failed = setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    else if (!strcmp(way, "user_timeout"))
        failed = setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout,
                            sizeof user_timeout);
    else if (!strcmp(way, "on_idle"))
        failed = setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) ||
                 setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    if (failed)
        die("setsockopt");
}

/* A listener on a free loopback port, set up `way` first. */
static int listener(struct sockaddr_in *addr, const char *way)
{
    socklen_t len = sizeof *addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        die("socket");
    set_up(fd, way);
    if (bind(fd, (struct sockaddr *)addr, sizeof *addr) != 0 || listen(fd, 4) != 0 ||
        getsockname(fd, (struct sockaddr *)addr, &len) != 0)
        die("listen");
    return fd;
}

/* One line per call: the option, the length, what setsockopt returned, errno, and the
 * first int the option reads back (or the getsockopt errno). */
static void setsockopts(void)
{
    static char big[70000];
    struct {
        int level, name;
    } options[] = {
        {SOL_SOCKET, SO_KEEPALIVE},    {IPPROTO_TCP, TCP_KEEPIDLE},
        {IPPROTO_TCP, TCP_KEEPINTVL},  {IPPROTO_TCP, TCP_KEEPCNT},
        {IPPROTO_TCP, TCP_USER_TIMEOUT}, {SOL_SOCKET, SO_RCVBUF},
        {IPPROTO_IP, IP_OPTIONS},      {IPPROTO_TCP, TCP_CONGESTION},
        {SOL_SOCKET, SO_BINDTODEVICE}, {IPPROTO_IP, IP_MSFILTER},
    };
    int types[][2] = {{AF_INET, SOCK_STREAM}, {AF_INET6, SOCK_STREAM},
                      {AF_INET, SOCK_DGRAM},  {AF_UNIX, SOCK_STREAM}};
    int lengths[] = {0, 1, 3, 4, 8, 4097, 70000};
    memcpy(big, "\x05\0\0\0lo\0", 7);
    for (size_t t = 0; t < sizeof types / sizeof *types; t++)
        for (size_t o = 0; o < sizeof options / sizeof *options; o++)
            for (size_t l = 0; l < sizeof lengths / sizeof *lengths; l++) {
                int fd = socket(types[t][0], types[t][1], 0);
                if (fd < 0)
                    die("socket");
                errno = 0;
                int rc = setsockopt(fd, options[o].level, options[o].name, big,
                                    (socklen_t)lengths[l]);
                int error = rc ? errno : 0;
                int back = -1;
                socklen_t len = sizeof back;
                int got = getsockopt(fd, options[o].level, options[o].name, &back, &len);
                printf("@ opt family=%d type=%d level=%d name=%d len=%d rc=%d errno=%d "
                       "back=%d\n",
                       types[t][0], types[t][1], options[o].level, options[o].name,
                       lengths[l], rc, error, got ? -errno : back);
                close(fd);
            }
    fflush(stdout);
}

static void rule(void)
{
    const char *ways[] = {"none", "off", "idle", "user_timeout", "on_idle"};
    for (size_t i = 0; i < sizeof ways / sizeof *ways; i++) {
        struct sockaddr_in addr;
        char label[64];
        int l = listener(&addr, ways[i]);
        int client = socket(AF_INET, SOCK_STREAM, 0);
        if (client < 0)
            die("socket");
        set_up(client, ways[i]);
        if (connect(client, (struct sockaddr *)&addr, sizeof addr) != 0)
            die("connect");
        int accepted = accept(l, 0, 0);
        if (accepted < 0)
            die("accept");
        snprintf(label, sizeof label, "client-%s", ways[i]);
        report(label, client);
        snprintf(label, sizeof label, "accepted-%s", ways[i]);
        report(label, accepted);
    }
}

/* `pair` over IPv6: a listener on ::1, a client, the accepted connection. */
static void pair6(void)
{
    struct sockaddr_in6 addr;
    socklen_t len = sizeof addr;
    int l = socket(AF_INET6, SOCK_STREAM, 0), client = socket(AF_INET6, SOCK_STREAM, 0);
    memset(&addr, 0, sizeof addr);
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_loopback;
    if (l < 0 || client < 0 || bind(l, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(l, 4) != 0 || getsockname(l, (struct sockaddr *)&addr, &len) != 0)
        die("listen6");
    if (connect(client, (struct sockaddr *)&addr, sizeof addr) != 0)
        die("connect6");
    int accepted = accept(l, 0, 0);
    if (accepted < 0)
        die("accept6");
    report("client", client);
    report("accepted", accepted);
}

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

/* `mptcp`: the TCP sockets of an MPTCP connection and of a plain TCP connection
 * accepted on the same MPTCP listener, whose sockets the program set SO_KEEPALIVE=0
 * on, as ss(8) shows them (their keepalive timer, if any). */
static void mptcp(void)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    char command[160];
    int l = socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP);
    int client = socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP);
    if (l < 0 || client < 0) {
        printf("@ mptcp-unavailable errno=%d\n", errno);
        return;
    }
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    set_up(l, "off");
    set_up(client, "off");
    if (bind(l, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(l, 4) != 0 ||
        getsockname(l, (struct sockaddr *)&addr, &len) != 0)
        die("listen");
    if (connect(client, (struct sockaddr *)&addr, sizeof addr) != 0)
        die("connect");
    int accepted = accept(l, 0, 0);
    if (accepted < 0)
        die("accept");
    report("client", client);
    report("accepted", accepted);
    int plain = socket(AF_INET, SOCK_STREAM, 0);
    if (plain < 0)
        die("socket");
    set_up(plain, "off");
    if (connect(plain, (struct sockaddr *)&addr, sizeof addr) != 0)
        die("connect");
    int fallen_back = accept(l, 0, 0);
    if (fallen_back < 0)
        die("accept");
    report("plain-client", plain);
    report("plain-accepted", fallen_back);
    snprintf(command, sizeof command,
             "ss -tnoiH state established '( sport = :%d or dport = :%d )'",
             ntohs(addr.sin_port), ntohs(addr.sin_port));
    fflush(stdout);
    if (system(command) != 0)
        die("ss");
}

static int connected(const struct sockaddr_in *addr)
{
    int fd = (int)syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0)
        die("connect");
    return fd;
}

/* One IORING_OP_ACCEPT on `fd`, through io_uring_setup(2) and io_uring_enter(2). */
static int uring_accept(int fd)
{
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    int ring = (int)syscall(SYS_io_uring_setup, 1, &params);
    if (ring < 0)
        die("io_uring_setup");
    size_t sq_len = params.sq_off.array + params.sq_entries * sizeof(unsigned);
    size_t cq_len = params.cq_off.cqes + params.cq_entries * sizeof(struct io_uring_cqe);
    char *sq = mmap(0, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring,
                    IORING_OFF_SQ_RING);
    char *cq = mmap(0, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring,
                    IORING_OFF_CQ_RING);
    struct io_uring_sqe *sqes =
        mmap(0, params.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED)
        die("mmap");
    unsigned *tail = (unsigned *)(sq + params.sq_off.tail);
    unsigned mask = *(unsigned *)(sq + params.sq_off.ring_mask);
    unsigned *array = (unsigned *)(sq + params.sq_off.array);
    unsigned index = *tail & mask;
    memset(&sqes[index], 0, sizeof sqes[index]);
    sqes[index].opcode = IORING_OP_ACCEPT;
    sqes[index].fd = fd;
    array[index] = index;
    __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
    if (syscall(SYS_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, 0, 0) < 0)
        die("io_uring_enter");
    unsigned *head = (unsigned *)(cq + params.cq_off.head);
    struct io_uring_cqe *cqes = (struct io_uring_cqe *)(cq + params.cq_off.cqes);
    unsigned cq_mask = *(unsigned *)(cq + params.cq_off.ring_mask);
    int res = cqes[*head & cq_mask].res;
    __atomic_store_n(head, *head + 1, __ATOMIC_RELEASE);
    if (res < 0) {
        errno = -res;
        die("IORING_OP_ACCEPT");
    }
    return res;
}

static long long monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    struct sockaddr_in addr;
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "pair")) {
        int l = listener(&addr, "none");
        int client = connected(&addr);
        int accepted = accept(l, 0, 0);
        if (accepted < 0)
            die("accept");
        report("client", client);
        report("accepted", accepted);
    } else if (!strcmp(mode, "setsockopts")) {
        setsockopts();
    } else if (!strcmp(mode, "rule")) {
        rule();
    } else if (!strcmp(mode, "pair6")) {
        pair6();
    } else if (!strcmp(mode, "mptcp")) {
        mptcp();
    } else if (!strcmp(mode, "uring")) {
        int l = listener(&addr, "none");
        int client = connected(&addr);
        report("client", client);
        report("accepted", uring_accept(l));
    } else if (!strcmp(mode, "hold") && argc == 3) {
        int on = 1;
        int l = socket(AF_INET, SOCK_STREAM, 0);
        memset(&addr, 0, sizeof addr);
        addr.sin_family = AF_INET;
        addr.sin_port = htons((unsigned short)atoi(argv[2]));
        if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
            bind(l, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(l, 16) != 0)
            die("listen");
        printf("@ listening\n");
        fflush(stdout);
        while (accept(l, 0, 0) >= 0)
            ;
        die("accept");
    } else if (!strcmp(mode, "client") && argc == 4) {
        memset(&addr, 0, sizeof addr);
        addr.sin_family = AF_INET;
        addr.sin_port = htons((unsigned short)atoi(argv[3]));
        if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1)
            die("inet_pton");
        int fd = connected(&addr);
        report("connected", fd);
        char buf[64];
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0)
            ;
        printf("@ result errno=%d at_ms=%lld\n", n == 0 ? 0 : errno, monotonic_ms());
    } else {
        fprintf(stderr, "usage: kernel_peer pair|pair6|rule|setsockopts|uring|mptcp|hold PORT|client ADDR PORT\n");
        return 2;
    }
    return 0;
}
