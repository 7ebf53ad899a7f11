/*
 * Creates one TCP socket and prints the keepalive settings the kernel holds for it:
 *   keepalive=1 idle=60
 * Built with glibc, musl-gcc, -static and -m32 by tests/command.rs, to see from
 * outside which builds the preloaded library reaches.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>

int main(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int on = -1, idle = -1;
    socklen_t len = sizeof(int);
    if (fd < 0)
        return 3;
    if (getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &len) != 0)
        return 4;
    len = sizeof(int);
    if (getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &len) != 0)
        return 5;
    printf("keepalive=%d idle=%d\n", on, idle);
    return 0;
}
