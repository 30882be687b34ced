/*
 * futex_pingpong: raw futex(2) wait/wake, the "no lost wake-ups" stress test.
 *
 * Usage: futex_pingpong [P [R]]   P pairs of threads (default 2, at most 32),
 * R round trips per pair (default 2000).
 *
 *  - P pairs ping-pong R times each through their own int: thread A waits
 *    (FUTEX_WAIT_PRIVATE) while the word is 1, sets it to 1 and wakes
 *    (FUTEX_WAKE_PRIVATE); thread B the other way round.  A lost wake-up
 *    hangs the program.  Half of the pairs use the non-private FUTEX_WAIT /
 *    FUTEX_WAKE.  Totals of rounds are printed;
 *  - FUTEX_WAIT whose expected value differs from the word: -1/EAGAIN;
 *  - FUTEX_WAIT with a relative 10 ms timeout and nobody waking: ETIMEDOUT;
 *  - FUTEX_WAIT_BITSET with an absolute CLOCK_MONOTONIC deadline, and with
 *    FUTEX_CLOCK_REALTIME and a CLOCK_REALTIME deadline: ETIMEDOUT
 *    (glibc's timed waits use these);
 *  - FUTEX_WAIT with tv_nsec = 1e9: EINVAL;
 *  - FUTEX_WAKE on a word nobody waits on returns 0;
 *  - a waiter blocked in FUTEX_WAIT_BITSET with mask 1 is not woken by
 *    FUTEX_WAKE_BITSET with mask 2 (returns 0; the waiter times out), and one
 *    with mask 3 is woken by mask 2 (returns 1 once it is known to be asleep);
 *  - W = 8 threads wait on one word; the main thread sets it and wakes
 *    INT_MAX (plus a couple more wakes): all must return, and the wake counts
 *    never exceed the number of waiters.
 *
 * Prints totals only; exits 1 if any check failed.
 *
 * guest-cflags: -pthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int failures;
static void check(const char *what, long got, long want)
{
    int ok = got == want;
    failures += !ok;
    printf("%-46s %ld%s\n", what, got, ok ? " ok" : " FAIL");
    if (!ok)
        printf("%-46s expected %ld\n", "", want);
}

static long futex(atomic_int *uaddr, int op, int val, const struct timespec *ts, int val3)
{
    return syscall(SYS_futex, uaddr, op, val, ts, NULL, val3);
}

static long P = 2, R = 2000;

/* ---------------------------------------------------------- ping-pong */

struct pair {
    atomic_int word; /* 0: A's turn, 1: B's turn */
    int private_;
    long rounds[2];
};

struct side {
    struct pair *p;
    int who; /* 0 = A, 1 = B */
};

static void *player(void *arg)
{
    struct side *s = arg;
    struct pair *p = s->p;
    int mine = s->who, theirs = 1 - s->who;
    int wait_op = p->private_ ? FUTEX_WAIT_PRIVATE : FUTEX_WAIT;
    int wake_op = p->private_ ? FUTEX_WAKE_PRIVATE : FUTEX_WAKE;
    for (long r = 0; r < R; r++) {
        while (atomic_load(&p->word) != mine)
            futex(&p->word, wait_op, theirs, NULL, 0);
        p->rounds[s->who]++;
        atomic_store(&p->word, theirs);
        futex(&p->word, wake_op, 1, NULL, 0);
    }
    return NULL;
}

/* ------------------------------------------------------------ bitsets */

static atomic_int bs_word, bs_started;
static long bs_rc, bs_errno;

static void *bitset_waiter(void *arg)
{
    int mask = (int)(intptr_t)arg;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    struct timespec dl = now;
    dl.tv_nsec += 100000000; /* 100 ms */
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    atomic_store(&bs_started, 1);
    bs_rc = futex(&bs_word, FUTEX_WAIT_BITSET_PRIVATE, 0, mask == 3 ? NULL : &dl, mask);
    bs_errno = bs_rc ? errno : 0;
    return NULL;
}

/* --------------------------------------------------------- many waiters */

static atomic_int gate;
static atomic_int returned;

static void *gate_waiter(void *arg)
{
    (void)arg;
    while (atomic_load(&gate) == 0)
        futex(&gate, FUTEX_WAIT_PRIVATE, 0, NULL, 0);
    atomic_fetch_add(&returned, 1);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        P = atol(argv[1]);
    if (argc > 2)
        R = atol(argv[2]);
    if (P < 1 || P > 32 || R < 0) {
        fprintf(stderr, "usage: futex_pingpong [P (1..32) [R]]\n");
        return 2;
    }
    printf("futex_pingpong: P=%ld R=%ld\n", P, R);

    struct pair *pairs = calloc((size_t)P, sizeof *pairs);
    struct side sides[64];
    pthread_t th[64];
    for (long i = 0; i < P; i++) {
        pairs[i].private_ = i % 2 == 0;
        for (int w = 0; w < 2; w++) {
            sides[2 * i + w].p = &pairs[i];
            sides[2 * i + w].who = w;
        }
    }
    for (long i = 0; i < 2 * P; i++)
        pthread_create(&th[i], NULL, player, &sides[i]);
    for (long i = 0; i < 2 * P; i++)
        pthread_join(th[i], NULL);
    long total = 0, bad = 0;
    for (long i = 0; i < P; i++) {
        total += pairs[i].rounds[0] + pairs[i].rounds[1];
        bad += pairs[i].rounds[0] != R || pairs[i].rounds[1] != R || atomic_load(&pairs[i].word) != 0;
    }
    check("ping-pong half-rounds in total", total, 2 * P * R);
    check("pairs with a wrong count or final word", bad, 0);

    atomic_int w = 5;
    long rc = futex(&w, FUTEX_WAIT_PRIVATE, 4, NULL, 0);
    check("WAIT on a mismatching value: rc", rc, -1);
    check("  errno (EAGAIN)", rc ? errno : 0, EAGAIN);
    rc = futex(&w, FUTEX_WAIT, 4, NULL, 0);
    check("WAIT (shared) on a mismatching value: errno", rc ? errno : 0, EAGAIN);

    struct timespec rel = {0, 10000000};
    rc = futex(&w, FUTEX_WAIT_PRIVATE, 5, &rel, 0);
    check("WAIT with 10 ms timeout: rc", rc, -1);
    check("  errno (ETIMEDOUT)", rc ? errno : 0, ETIMEDOUT);
    rc = futex(&w, FUTEX_WAIT, 5, &rel, 0);
    check("WAIT (shared) with 10 ms timeout: errno", rc ? errno : 0, ETIMEDOUT);

    struct timespec abs;
    clock_gettime(CLOCK_MONOTONIC, &abs);
    abs.tv_nsec += 10000000;
    if (abs.tv_nsec >= 1000000000) {
        abs.tv_sec++;
        abs.tv_nsec -= 1000000000;
    }
    rc = futex(&w, FUTEX_WAIT_BITSET_PRIVATE, 5, &abs, FUTEX_BITSET_MATCH_ANY);
    check("WAIT_BITSET monotonic deadline: errno", rc ? errno : 0, ETIMEDOUT);
    clock_gettime(CLOCK_REALTIME, &abs);
    abs.tv_nsec += 10000000;
    if (abs.tv_nsec >= 1000000000) {
        abs.tv_sec++;
        abs.tv_nsec -= 1000000000;
    }
    rc = futex(&w, FUTEX_WAIT_BITSET_PRIVATE | FUTEX_CLOCK_REALTIME, 5, &abs,
               FUTEX_BITSET_MATCH_ANY);
    check("WAIT_BITSET|CLOCK_REALTIME deadline: errno", rc ? errno : 0, ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &abs);
    abs.tv_sec -= 1;
    rc = futex(&w, FUTEX_WAIT_BITSET_PRIVATE, 5, &abs, FUTEX_BITSET_MATCH_ANY);
    check("WAIT_BITSET past deadline: errno", rc ? errno : 0, ETIMEDOUT);
    struct timespec bad_ts = {0, 1000000000};
    rc = futex(&w, FUTEX_WAIT_PRIVATE, 5, &bad_ts, 0);
    check("WAIT with tv_nsec = 1e9: errno (EINVAL)", rc ? errno : 0, EINVAL);
    check("WAKE with no waiters", futex(&w, FUTEX_WAKE_PRIVATE, 1, NULL, 0), 0);
    check("WAKE (shared) with no waiters", futex(&w, FUTEX_WAKE, INT_MAX, NULL, 0), 0);

    /* bitset: mask 2 does not wake a mask-1 waiter */
    pthread_t t;
    pthread_create(&t, NULL, bitset_waiter, (void *)(intptr_t)1);
    while (!atomic_load(&bs_started))
        sched_yield();
    long woken_by_wrong_mask = 0;
    for (int i = 0; i < 5; i++) {
        woken_by_wrong_mask += futex(&bs_word, FUTEX_WAKE_BITSET_PRIVATE, INT_MAX, NULL, 2);
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
    pthread_join(t, NULL);
    check("WAKE_BITSET mask 2 vs waiter mask 1: woken", woken_by_wrong_mask, 0);
    check("  the waiter timed out: errno (ETIMEDOUT)", bs_errno, ETIMEDOUT);
    /* mask 2 wakes a mask-3 waiter (no timeout: keep waking until it is woken) */
    atomic_store(&bs_started, 0);
    pthread_create(&t, NULL, bitset_waiter, (void *)(intptr_t)3);
    while (!atomic_load(&bs_started))
        sched_yield();
    long woken = 0;
    while (woken == 0) {
        woken = futex(&bs_word, FUTEX_WAKE_BITSET_PRIVATE, INT_MAX, NULL, 2);
        if (woken == 0)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    pthread_join(t, NULL);
    check("WAKE_BITSET mask 2 vs waiter mask 3: woken", woken, 1);
    check("  the waiter returned 0", bs_rc, 0);

    /* many waiters on one word */
    enum { W = 8 };
    pthread_t gw[W];
    for (int i = 0; i < W; i++)
        pthread_create(&gw[i], NULL, gate_waiter, NULL);
    nanosleep(&(struct timespec){0, 5000000}, NULL);
    atomic_store(&gate, 1);
    long wakes = futex(&gate, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, 0);
    for (int i = 0; i < W; i++)
        pthread_join(gw[i], NULL);
    wakes += futex(&gate, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, 0);
    check("waiters returned after the gate opened", atomic_load(&returned), W);
    check("wake count <= waiters", wakes <= W && wakes >= 0, 1);
    check("WAKE after all returned", futex(&gate, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, 0), 0);

    printf("futex_pingpong: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
