/*
 * Blocks SIGNAL (argv[1]: a number), creates a TCP socket — with KEEPALIVE_DEBUG=1 the
 * library writes a line during the call — and prints whether SIGNAL is pending after
 * it: "ok=1 pending=P". Run under strace injecting SIGNAL into the library's write,
 * the signal is the program's, sent while the line was being written, and must still
 * be pending: the library takes back only a signal its own write's error proves it
 * raised.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
    int signal = argc > 1 ? atoi(argv[1]) : SIGPIPE, fd;
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, signal);
    sigprocmask(SIG_BLOCK, &set, NULL);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sigpending(&pending);
    printf("ok=%d pending=%d\n", fd >= 0, sigismember(&pending, signal));
    return 0;
}
