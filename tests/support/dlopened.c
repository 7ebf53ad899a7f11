/* Code a program loads with dlopen(3) after start-up, which then creates a socket. */
#include <sys/socket.h>

int dlopened_socket(void)
{
    return socket(AF_INET6, SOCK_STREAM, 0);
}
