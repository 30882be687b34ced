/*
 * stdin_wait: a read of stdin that has to wait must not stop the other threads.
 *
 * Usage: stdin_wait   A second thread prints "tick 0".."tick 4" (flushed, 20 ms apart)
 * while the main thread reads stdin; once both are done, main prints what it read. With
 * stdin a file the read returns at once; with an empty pipe it waits for the writer, and
 * the ticks must still appear meanwhile (crates/vm-cli/tests/stdin_wait.rs checks that on
 * one vCPU). Output does not depend on timing.
 *
 * guest-cflags: -pthread
 */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static void *ticker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5; i++) {
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
        printf("tick %d\n", i);
        fflush(stdout);
    }
    return NULL;
}

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, ticker, NULL) != 0) {
        printf("pthread_create failed\n");
        return 1;
    }
    char buf[256];
    ssize_t n = read(0, buf, sizeof buf - 1);
    pthread_join(t, NULL);
    if (n < 0) {
        printf("read failed\n");
        return 1;
    }
    buf[n] = 0;
    printf("got %zd bytes: %s", n, buf);
    if (n == 0 || buf[n - 1] != '\n')
        printf("\n");
    return 0;
}
