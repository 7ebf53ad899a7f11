/*
 * pthread_cancel(3) of a thread blocked in accept(2): glibc unwinds the thread
 * through every frame on its stack, the library's accept wrapper included, and
 * runs its cleanup handlers. A frame that cannot be unwound would abort the whole
 * process. Prints "cancelled cleanup=1" when all went well.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static int listener;
static volatile int cleaned_up;

static void cleanup(void *arg)
{
    (void)arg;
    cleaned_up = 1;
}

static void *accept_forever(void *arg)
{
    (void)arg;
    pthread_cleanup_push(cleanup, NULL);
    accept(listener, NULL, NULL);
    pthread_cleanup_pop(0);
    return NULL;
}

int main(void)
{
    struct sockaddr_in address = {.sin_family = AF_INET};
    pthread_t thread;
    void *result;
    listener = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 1))
        return 2;
    pthread_create(&thread, NULL, accept_forever, NULL);
    usleep(100000);
    pthread_cancel(thread);
    pthread_join(thread, &result);
    printf("%s cleanup=%d\n", result == PTHREAD_CANCELED ? "cancelled" : "returned", cleaned_up);
    return 0;
}
