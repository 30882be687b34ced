/*
 * threads_idle: K threads that all park on one condition variable, for measuring what an
 * idle guest thread costs the host (`cargo xtask bench-sched`).
 *
 * Usage: threads_idle [K [HOLD_MS]]   K threads (default 100) with 16 KiB stacks; once all
 * of them are waiting, prints "idle K" and flushes, keeps them parked for HOLD_MS
 * milliseconds (default 0) while the main thread sleeps, then wakes and joins them and
 * prints "joined K". The measuring side reads the emulator's resident memory during the
 * hold. Output does not depend on timing; exits 1 if a check failed.
 *
 * guest-cflags: -pthread
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static long waiting, released;

static void *idle(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    waiting++;
    pthread_cond_broadcast(&changed);
    while (!released)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv)
{
    long k = argc > 1 ? strtol(argv[1], NULL, 10) : 100;
    long hold_ms = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
    if (k < 0 || k > 100000 || hold_ms < 0 || hold_ms > 600000) {
        fprintf(stderr, "usage: threads_idle [K (0..100000) [HOLD_MS (0..600000)]]\n");
        return 2;
    }
    pthread_t *t = calloc(k ? k : 1, sizeof *t);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 16384);
    for (long i = 0; i < k; i++) {
        if (pthread_create(&t[i], &attr, idle, NULL) != 0) {
            printf("pthread_create %ld failed\n", i);
            return 1;
        }
    }
    pthread_mutex_lock(&lock);
    while (waiting < k)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    printf("idle %ld\n", k);
    fflush(stdout);
    struct timespec ts = {hold_ms / 1000, (hold_ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
    pthread_mutex_lock(&lock);
    released = 1;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    for (long i = 0; i < k; i++)
        pthread_join(t[i], NULL);
    printf("joined %ld\n", k);
    return 0;
}
