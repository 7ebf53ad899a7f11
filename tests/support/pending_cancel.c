/*
 * A thread with a cancel pending (deferred, so it acts only at a cancellation
 * point) calls socket(2). What the library does inside it must not be a
 * cancellation point: socket() returns the new descriptor to the thread, which records it and
 * is cancelled at its own pthread_testcancel(3). Prints "cancelled=1 fd_returned=1"
 * when all went well.
 *
 * accept(2) is left out: it is a cancellation point of its own, so glibc acts on a
 * pending cancel before the real call takes a connection; only a cancel arriving
 * between the real call's return and the library's line would show the harm, a
 * race no test can hit on purpose. The same raw write serves both calls.
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
