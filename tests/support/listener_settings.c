/*
 * A C server that configures its own listener, as the reproduction did:
 * keepalive on with 5/2/3 s and TCP_USER_TIMEOUT 9000 ms (or, with argument "off",
 * SO_KEEPALIVE=0 and the same timers), then accepts one loopback connection with
 * accept4 and prints what the connection carries:
 * "keepalive=K idle=I intvl=N cnt=C user_timeout=U".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockopt_util.h"

int main(int argc, char **argv)
{
    struct sockaddr_in addr;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int client, conn;
    if (listen_loopback(listener, &addr))
        return 2;
    set(listener, SOL_SOCKET, SO_KEEPALIVE, !(argc > 1 && !strcmp(argv[1], "off")));
    set(listener, IPPROTO_TCP, TCP_KEEPIDLE, 5);
    set(listener, IPPROTO_TCP, TCP_KEEPINTVL, 2);
    set(listener, IPPROTO_TCP, TCP_KEEPCNT, 3);
    set(listener, IPPROTO_TCP, TCP_USER_TIMEOUT, 9000);
    client = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(client, (struct sockaddr *)&addr, sizeof addr))
        return 3;
    conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0)
        return 4;
    printf("keepalive=%d idle=%d intvl=%d cnt=%d user_timeout=%d\n",
           get(conn, SOL_SOCKET, SO_KEEPALIVE), get(conn, IPPROTO_TCP, TCP_KEEPIDLE),
           get(conn, IPPROTO_TCP, TCP_KEEPINTVL), get(conn, IPPROTO_TCP, TCP_KEEPCNT),
           get(conn, IPPROTO_TCP, TCP_USER_TIMEOUT));
    return 0;
}
