/* A program built against musl (musl-gcc): two TCP listeners, a client connected to
 * each, the connections accepted with accept4, and a UDP socket. The first listener
 * comes from socket() and gets the program's own keepalive options before accepting:
 * its connection must keep what it inherits. The second is made with a raw system
 * call, as a listener inherited from a parent that was never preloaded would be: its
 * connection shows what the preloaded accept4 did. Prints what the kernel holds for
 * each socket as "@ label key=value..." lines. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/syscall.h>
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

/* A listener on a free loopback port; its address in *address. */
static int listen_on(int fd, struct sockaddr_in *address)
{
    socklen_t len = sizeof *address;
    *address = (struct sockaddr_in){.sin_family = AF_INET};
    address->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return fd >= 0 && bind(fd, (struct sockaddr *)address, sizeof *address) == 0 &&
                   listen(fd, 1) == 0 &&
                   getsockname(fd, (struct sockaddr *)address, &len) == 0
               ? fd
               : -1;
}

/* A client connected to address, and its connection accepted with accept4. */
static int connect_and_accept(int listener, struct sockaddr_in *address, int *client)
{
    *client = socket(AF_INET, SOCK_STREAM, 0);
    if (*client < 0 || connect(*client, (struct sockaddr *)address, sizeof *address))
        return -1;
    return accept4(listener, NULL, NULL, SOCK_CLOEXEC);
}

int main(void)
{
    struct sockaddr_in own_address, raw_address;
    int off = 0, idle = 999;
    int listener = listen_on(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), &own_address);
    int raw = listen_on(syscall(SYS_socket, AF_INET, SOCK_STREAM, 0), &raw_address);
    if (listener < 0 || raw < 0) {
        perror("listener");
        return 1;
    }
    if (setsockopt(listener, SOL_SOCKET, SO_KEEPALIVE, &off, sizeof off) ||
        setsockopt(listener, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle)) {
        perror("setsockopt");
        return 1;
    }
    int client, raw_client;
    int inherited = connect_and_accept(listener, &own_address, &client);
    int accepted = connect_and_accept(raw, &raw_address, &raw_client);
    if (inherited < 0 || accepted < 0) {
        perror("connect or accept4");
        return 1;
    }
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    if (udp < 0) {
        perror("udp");
        return 1;
    }
    report("listener", listener);
    report("client", client);
    report("inherited", inherited);
    report("accepted", accepted);
    report("udp", udp);
    return 0;
}
