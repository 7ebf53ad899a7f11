/*
 * Every way a listener reaches a program, on a descriptor number that a socket made
 * through the library's socket() used before: the listener is then not what that
 * number once held, and its connections must be judged by themselves.
 *
 * Usage: listener_ways WAY [own]
 *   WAY: dup2, dup, fdupfd (onto the freed number), raw (syscall(SYS_socket) takes the
 *        freed number), scm_rights (received over a socketpair), moved (the program's
 *        own listener, made through socket(), moved with F_DUPFD).
 *   own: the listener is configured as the program would: SO_KEEPALIVE 0, idle 5 s and
 *        a user timeout of 5000 ms.
 * Prints "fd=N reused=R keepalive=K idle=I intvl=V cnt=C user_timeout=U" for the
 * connection accepted with accept4; reused=1 when the listener sits on the freed
 * number (moved: when it left it).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sockopt_util.h"

/* A TCP socket the library never sees. */
static int raw_socket(void)
{
    return (int)syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
}

/* Sends fd over a socketpair and receives it: SCM_RIGHTS gives the lowest free number. */
static int pass(int fd)
{
    int pair[2], got = -1;
    char byte = 'x', space[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {0};
    struct cmsghdr *cmsg;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair))
        return -1;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space;
    msg.msg_controllen = sizeof space;
    cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    if (sendmsg(pair[0], &msg, 0) != 1)
        return -1;
    close(fd);
    close(pair[0]);
    /* pair[0] and fd are free now; the lowest is the one the caller freed first. */
    if (recvmsg(pair[1], &msg, 0) == 1 && (cmsg = CMSG_FIRSTHDR(&msg)))
        memcpy(&got, CMSG_DATA(cmsg), sizeof(int));
    close(pair[1]);
    return got;
}

int main(int argc, char **argv)
{
    const char *way = argc > 1 ? argv[1] : "";
    int own = argc > 2 && !strcmp(argv[2], "own");
    struct sockaddr_in addr;
    int freed, listener = -1, client, conn;

    /* A TCP socket made (and configured) through the library, then closed. */
    freed = socket(AF_INET, SOCK_STREAM, 0);
    if (strcmp(way, "moved"))
        close(freed);

    if (!strcmp(way, "dup2") || !strcmp(way, "dup") || !strcmp(way, "fdupfd")) {
        /* Made above the freed number, so that the copy is what lands on it. */
        int made = raw_socket();
        int fresh = fcntl(made, F_DUPFD, freed + 10);
        close(made);
        if (!strcmp(way, "dup2"))
            listener = dup2(fresh, freed);
        else if (!strcmp(way, "dup")) {
            /* dup gives the lowest free number: the freed one. */
            listener = dup(fresh);
        } else
            listener = fcntl(fresh, F_DUPFD, freed);
        close(fresh);
    } else if (!strcmp(way, "raw")) {
        listener = raw_socket();
    } else if (!strcmp(way, "scm_rights")) {
        /* Moved above the freed number, so that the socketpair's first end takes it
         * and, once closed, leaves it to the descriptor received. */
        int made = raw_socket();
        int fresh = fcntl(made, F_DUPFD, freed + 10);
        close(made);
        listener = pass(fresh);
    } else if (!strcmp(way, "moved")) {
        listener = freed;
    } else {
        return 2;
    }
    if (listener < 0)
        return 3;

    if (listen_loopback(listener, &addr))
        return 4;
    if (own) {
        set(listener, SOL_SOCKET, SO_KEEPALIVE, 0);
        set(listener, IPPROTO_TCP, TCP_KEEPIDLE, 5);
        set(listener, IPPROTO_TCP, TCP_USER_TIMEOUT, 5000);
    }
    if (!strcmp(way, "moved")) {
        int moved = fcntl(listener, F_DUPFD, listener + 20);
        close(listener);
        listener = moved;
    }
    client = raw_socket();
    if (connect(client, (struct sockaddr *)&addr, sizeof addr))
        return 5;
    conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0)
        return 6;
    printf("fd=%d reused=%d keepalive=%d idle=%d intvl=%d cnt=%d user_timeout=%d\n", listener,
           !strcmp(way, "moved") ? listener != freed : listener == freed,
           get(conn, SOL_SOCKET, SO_KEEPALIVE), get(conn, IPPROTO_TCP, TCP_KEEPIDLE),
           get(conn, IPPROTO_TCP, TCP_KEEPINTVL), get(conn, IPPROTO_TCP, TCP_KEEPCNT),
           get(conn, IPPROTO_TCP, TCP_USER_TIMEOUT));
    return 0;
}
