/*
 * What listener_settings.c and listener_ways.c both do: read and write int socket
 * options, and open a listener on a free loopback port. Kept in one place so both
 * programs set up and report their listeners the same way. Included after
 * <arpa/inet.h>, <string.h> and <sys/socket.h>.
 */
#ifndef SOCKOPT_UTIL_H
#define SOCKOPT_UTIL_H

/* An int option's value, or -1 when it cannot be read. */
static int get(int fd, int level, int name)
{
    int value = -1;
    socklen_t len = sizeof value;
    getsockopt(fd, level, name, &value, &len);
    return value;
}

static void set(int fd, int level, int name, int value)
{
    setsockopt(fd, level, name, &value, sizeof value);
}

/* Binds listener to a free loopback port and listens; *addr is then its address.
 * Non-zero on failure. */
static int listen_loopback(int listener, struct sockaddr_in *addr)
{
    socklen_t len = sizeof *addr;
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return bind(listener, (struct sockaddr *)addr, sizeof *addr) || listen(listener, 1) ||
           getsockname(listener, (struct sockaddr *)addr, &len);
}

#endif
