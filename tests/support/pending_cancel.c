/*
 * A thread with a cancel pending (deferred, so it acts only at a cancellation
 * point) calls socket(2). The library's debug line must not be a cancellation
 * point: socket() returns the new descriptor to the thread, which records it and
 * is cancelled at its own pthread_testcancel(3). Prints "cancelled=1 fd_returned=1"
 * when all went well.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <sys/socket.h>
#include <netinet/in.h>

static sem_t cancel_sent;
static volatile int returned = -2;

static void *create_with_cancel_pending(void *arg)
{
    int old;
    (void)arg;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    sem_wait(&cancel_sent);
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
    returned = socket(AF_INET, SOCK_STREAM, 0);
    pthread_testcancel();
    return NULL;
}

int main(void)
{
    pthread_t thread;
    void *result;
    sem_init(&cancel_sent, 0, 0);
    if (pthread_create(&thread, NULL, create_with_cancel_pending, NULL) != 0)
        return 2;
    pthread_cancel(thread);
    sem_post(&cancel_sent);
    pthread_join(thread, &result);
    printf("cancelled=%d fd_returned=%d\n", result == PTHREAD_CANCELED, returned >= 0);
    return 0;
}
