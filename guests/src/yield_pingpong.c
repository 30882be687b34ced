/*
 * yield_pingpong: two threads alternating through sched_yield (benchmark).
 *
 * Usage: yield_pingpong [N]   N round trips (default 1000; e.g. 100000 as a
 * context-switch benchmark).
 *
 * Thread 0 may move when the shared atomic turn counter is even, thread 1
 * when it is odd; each increments it after its move and calls sched_yield()
 * between checks while it is not its turn (no futex, no sleeping).  So every
 * move hands the CPU to the other thread, and with one CPU the scheduler must
 * actually switch threads on sched_yield.  The main thread joins both and
 * prints the number of round trips and moves.  Exits 1 if a count is wrong.
 *
 * guest-cflags: -pthread
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static long N = 1000;
static atomic_long turn;
static long moves[2];

static void *player(void *p)
{
    long id = (long)(intptr_t)p;
    for (long r = 0; r < N; r++) {
        long want = 2 * r + id;
        while (atomic_load_explicit(&turn, memory_order_acquire) != want)
            sched_yield();
        moves[id]++;
        atomic_store_explicit(&turn, want + 1, memory_order_release);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        N = atol(argv[1]);
    if (N < 0) {
        fprintf(stderr, "usage: yield_pingpong [N]\n");
        return 2;
    }
    pthread_t t[2];
    for (long i = 1; i >= 0; i--)
        pthread_create(&t[i], NULL, player, (void *)(intptr_t)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    int ok = moves[0] == N && moves[1] == N && atomic_load(&turn) == 2 * N;
    printf("yield_pingpong: %ld round trips, %ld + %ld moves %s\n", N, moves[0], moves[1],
           ok ? "ok" : "FAIL");
    return ok ? 0 : 1;
}
