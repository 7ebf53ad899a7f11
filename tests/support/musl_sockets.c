/* A program built against musl (musl-gcc): a TCP listener, a client connected to it,
 * the connection accepted with accept4, and a UDP socket. Before accepting, it sets
 * its own keepalive options on the listener, so the accepted socket shows what the
 * preloaded accept4 did rather than what it inherited. Prints what the kernel holds
 * for each socket as "@ label key=value..." lines. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static int option(int fd, int level, int name)
{
    int value = 0;
    socklen_t len = sizeof value;
    return getsockopt(fd, level, name, &value, &len) == 0 ? value : -1;
}

static void report(const char *label, int fd)
{
    printf("@ %s keepalive=%d idle=%d intvl=%d cnt=%d user_timeout=%d\n", label,
           option(fd, SOL_SOCKET, SO_KEEPALIVE), option(fd, IPPROTO_TCP, TCP_KEEPIDLE),
           option(fd, IPPROTO_TCP, TCP_KEEPINTVL), option(fd, IPPROTO_TCP, TCP_KEEPCNT),
           option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
}

int main(void)
{
    struct sockaddr_in address = {.sin_family = AF_INET};
    socklen_t len = sizeof address;
    int off = 0, idle = 999;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) ||
        listen(listener, 1) || getsockname(listener, (struct sockaddr *)&address, &len)) {
        perror("listener");
        return 1;
    }
    if (setsockopt(listener, SOL_SOCKET, SO_KEEPALIVE, &off, sizeof off) ||
        setsockopt(listener, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle)) {
        perror("setsockopt");
        return 1;
    }
    int client = socket(AF_INET, SOCK_STREAM, 0);
    if (client < 0 || connect(client, (struct sockaddr *)&address, sizeof address)) {
        perror("connect");
        return 1;
    }
    int accepted = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (accepted < 0) {
        perror("accept4");
        return 1;
    }
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    if (udp < 0) {
        perror("udp");
        return 1;
    }
    report("listener", listener);
    report("client", client);
    report("accepted", accepted);
    report("udp", udp);
    return 0;
}
