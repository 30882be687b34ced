/*
 * threads_spin: threads that never make a system call (needs preemption).
 *
 * Usage: threads_spin [ROUNDS [WORK]]   ROUNDS spin ping-pong round trips
 * (default 10), WORK hash iterations done by the worker (default 200000).
 *
 *  - the main thread spins on an atomic flag (plain loads in a loop: no
 *    syscall, no sched_yield) that a second thread sets only after WORK hash
 *    iterations; with a single CPU only preemption lets the worker run;
 *  - two threads alternate ROUNDS times through a turn variable, again
 *    spinning without any syscall, so every handoff needs the spinning
 *    thread to be preempted when there is one CPU;
 *  - two threads loop forever without syscalls; the main thread waits (by
 *    spinning) until both have started, does some work, prints and calls
 *    exit(0): exit_group must end the process, status 0, with the spinners
 *    still running.
 *
 * Output does not depend on timing; exits 1 if a check failed.
 *
 * guest-cflags: -pthread
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static long ROUNDS = 10, WORK = 200000;
static int failures;

static uint64_t hash_rounds(uint64_t x, long n)
{
    for (long i = 0; i < n; i++)
        x = (x ^ (x >> 29)) * 0xbf58476d1ce4e5b9ull + (uint64_t)i;
    return x;
}

/* ---------------------------------------------------------- spin wait */

static atomic_int flag;
static uint64_t worker_result;

static void *worker(void *p)
{
    (void)p;
    worker_result = hash_rounds(1, WORK);
    atomic_store_explicit(&flag, 1, memory_order_release);
    return NULL;
}

/* ---------------------------------------------------- spin ping-pong */

static atomic_long turn; /* even: thread 0 plays, odd: thread 1 */
static long plays[2];

static void *player(void *p)
{
    long id = (long)(intptr_t)p;
    for (long r = 0; r < ROUNDS; r++) {
        long want = 2 * r + id;
        while (atomic_load_explicit(&turn, memory_order_acquire) != want)
            ; /* no syscall, no yield */
        plays[id]++;
        atomic_store_explicit(&turn, want + 1, memory_order_release);
    }
    return NULL;
}

/* ---------------------------------------------------- forever spinners */

static atomic_long spins[2];

static void *forever(void *p)
{
    long id = (long)(intptr_t)p;
    for (;;)
        atomic_fetch_add_explicit(&spins[id], 1, memory_order_relaxed);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        ROUNDS = atol(argv[1]);
    if (argc > 2)
        WORK = atol(argv[2]);
    if (ROUNDS < 0 || WORK < 0) {
        fprintf(stderr, "usage: threads_spin [ROUNDS [WORK]]\n");
        return 2;
    }
    printf("threads_spin: ROUNDS=%ld WORK=%ld\n", ROUNDS, WORK);

    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    while (!atomic_load_explicit(&flag, memory_order_acquire))
        ; /* spin: no syscall, no yield */
    uint64_t want = hash_rounds(1, WORK);
    printf("spin wait: flag seen, worker result %016" PRIx64 " %s\n", worker_result,
           worker_result == want ? "ok" : "FAIL");
    failures += worker_result != want;
    pthread_join(t, NULL);

    pthread_t pl[2];
    for (long i = 1; i >= 0; i--)
        pthread_create(&pl[i], NULL, player, (void *)(intptr_t)i);
    for (int i = 0; i < 2; i++)
        pthread_join(pl[i], NULL);
    int ok = plays[0] == ROUNDS && plays[1] == ROUNDS && atomic_load(&turn) == 2 * ROUNDS;
    printf("spin ping-pong: %ld + %ld plays, turn %ld %s\n", plays[0], plays[1],
           (long)atomic_load(&turn), ok ? "ok" : "FAIL");
    failures += !ok;

    pthread_t sp[2];
    for (long i = 0; i < 2; i++)
        pthread_create(&sp[i], NULL, forever, (void *)(intptr_t)i);
    while (atomic_load_explicit(&spins[0], memory_order_relaxed) == 0 ||
           atomic_load_explicit(&spins[1], memory_order_relaxed) == 0)
        ; /* spin until both spinners have run */
    uint64_t r = hash_rounds(2, WORK);
    printf("forever spinners running: yes; main work %016" PRIx64 "\n", r);
    printf("threads_spin: %d failure(s); exit(%d) with 2 threads still spinning\n", failures,
           failures ? 1 : 0);
    exit(failures ? 1 : 0);
}
