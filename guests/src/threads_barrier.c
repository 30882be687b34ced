/*
 * threads_barrier: pthread_barrier_t.
 *
 * Usage: threads_barrier [T [R]]   T threads (default 4, at most 64), R phases
 * (default 200).
 *
 * In phase p every thread writes its slot of a shared array (plain, non-atomic
 * stores) and a per-phase value into a second array, waits at the barrier,
 * then reads every other thread's slots and checks that they hold the values
 * written in phase p (the barrier must order memory), adds them to a private
 * sum, and waits again before the next phase overwrites them.  Exactly one
 * waiter per barrier round must get PTHREAD_BARRIER_SERIAL_THREAD; the serial
 * thread of the first wait also advances a shared phase counter, which every
 * thread checks at the start of the next phase.  Also a barrier of count 1 (never
 * blocks, always serial) and pthread_barrier_init with count 0 (EINVAL).
 *
 * Printed by the main thread after the joins; exits 1 if any check failed.
 *
 * guest-cflags: -pthread
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;
static void check(const char *what, long got, long want)
{
    int ok = got == want;
    failures += !ok;
    printf("%-40s %ld%s\n", what, got, ok ? " ok" : " FAIL");
    if (!ok)
        printf("%-40s expected %ld\n", "", want);
}

static long T = 4, R = 200;
static pthread_barrier_t bar;
static uint64_t slot[64];
static long phase_of[64];
static long phase_counter;

struct result {
    uint64_t sum;
    long stale;  /* slots that did not hold this phase's value */
    long serial; /* times this thread got PTHREAD_BARRIER_SERIAL_THREAD */
    long bad_rc; /* barrier_wait returns other than 0 / SERIAL */
    long phase_mismatch;
};

static uint64_t value(long p, long i) { return (uint64_t)(p + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)i * 0x100000001b3ull; }

static void wait_and_count(struct result *r, int advance)
{
    int rc = pthread_barrier_wait(&bar);
    if (rc == PTHREAD_BARRIER_SERIAL_THREAD) {
        r->serial++;
        if (advance)
            phase_counter++;
    } else if (rc != 0) {
        r->bad_rc++;
    }
}

static void *worker(void *arg)
{
    long id = (long)(intptr_t)arg;
    struct result *r = calloc(1, sizeof *r);
    for (long p = 0; p < R; p++) {
        if (phase_counter != p)
            r->phase_mismatch++;
        slot[id] = value(p, id);
        phase_of[id] = p;
        wait_and_count(r, 1);
        for (long j = 0; j < T; j++) {
            if (slot[j] != value(p, j) || phase_of[j] != p)
                r->stale++;
            r->sum += slot[j] >> 8;
        }
        wait_and_count(r, 0);
    }
    return r;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        T = atol(argv[1]);
    if (argc > 2)
        R = atol(argv[2]);
    if (T < 1 || T > 64 || R < 0) {
        fprintf(stderr, "usage: threads_barrier [T (1..64) [R]]\n");
        return 2;
    }
    printf("threads_barrier: T=%ld R=%ld\n", T, R);
    check("barrier_init count 0 (EINVAL)", pthread_barrier_init(&bar, NULL, 0), EINVAL);
    check("barrier_init count 1", pthread_barrier_init(&bar, NULL, 1), 0);
    long serial1 = 0;
    for (int i = 0; i < 5; i++)
        serial1 += pthread_barrier_wait(&bar) == PTHREAD_BARRIER_SERIAL_THREAD;
    check("count-1 barrier: serial returns of 5", serial1, 5);
    pthread_barrier_destroy(&bar);

    check("barrier_init count T", pthread_barrier_init(&bar, NULL, (unsigned)T), 0);
    pthread_t th[64];
    for (long i = 0; i < T; i++)
        pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    uint64_t sum = 0, want_sum = 0;
    long stale = 0, serial = 0, bad_rc = 0, mism = 0;
    for (long i = 0; i < T; i++) {
        void *p;
        pthread_join(th[i], &p);
        struct result *r = p;
        sum += r->sum;
        stale += r->stale;
        serial += r->serial;
        bad_rc += r->bad_rc;
        mism += r->phase_mismatch;
        free(r);
    }
    for (long p = 0; p < R; p++)
        for (long j = 0; j < T; j++)
            want_sum += (value(p, j) >> 8) * (uint64_t)T;
    check("stale reads after the barrier", stale, 0);
    check("phase counter mismatches", mism, 0);
    check("serial-thread returns", serial, 2 * R);
    check("other return codes", bad_rc, 0);
    check("final phase counter", phase_counter, R);
    printf("%-40s %016llx%s\n", "checksum of all reads", (unsigned long long)sum,
           sum == want_sum ? " ok" : " FAIL");
    failures += sum != want_sum;
    check("barrier_destroy", pthread_barrier_destroy(&bar), 0);
    printf("threads_barrier: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
