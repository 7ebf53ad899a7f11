/*
 * Prints errno as main finds it, then errno after a successful socket(): both must be
 * what they are without the library. Output on stdout: "main=N after_socket=M".
 */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
    int at_main = errno, fd;
    errno = 4242;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    printf("main=%d after_socket=%d ok=%d\n", at_main, errno, fd >= 0);
    return 0;
}
