/*
 * threads_condvar: pthread condition variables.
 *
 * Usage: threads_condvar [K [W]]   K rounds of each ring (default 200), W
 * broadcast waiters (default 16, at most 256).
 *
 *  - ring with one shared condvar and pthread_cond_broadcast: N = 2, 3, 4
 *    threads pass a turn variable around K times; every thread appends its id
 *    to a log when it has the turn, so the log is 0 1 .. N-1 0 1 .. by
 *    construction (checked, and its first 2N entries printed);
 *  - the same ring with one condvar per thread and pthread_cond_signal;
 *  - broadcast: W threads wait for a gate; the main thread waits (on a second
 *    condvar) until all W are waiting, opens the gate with one broadcast and
 *    every waiter must wake (count checked);
 *  - signal one at a time: W threads each consume one token; main adds the
 *    tokens one by one with pthread_cond_signal (all consumed, sum checked);
 *  - a condvar with a CLOCK_MONOTONIC attribute used in the signal ring.
 *
 * Printed by the main thread after the joins; exits 1 if any check failed.
 *
 * guest-cflags: -pthread
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int failures;
static void check(const char *what, long got, long want)
{
    int ok = got == want;
    failures += !ok;
    printf("%-40s %ld%s\n", what, got, ok ? " ok" : " FAIL");
    if (!ok)
        printf("%-40s expected %ld\n", "", want);
}

static long K = 200, W = 16;

/* ------------------------------------------------------------------ rings */

struct ring {
    int n;
    int use_signal; /* 0: one condvar + broadcast, 1: per-thread condvar + signal */
    pthread_mutex_t lock;
    pthread_cond_t all;
    pthread_cond_t each[4];
    int turn;
    long pos;
    int *log;
};

struct ring_arg {
    struct ring *r;
    int id;
};

static void *ring_thread(void *p)
{
    struct ring_arg *a = p;
    struct ring *r = a->r;
    pthread_mutex_lock(&r->lock);
    for (long k = 0; k < K; k++) {
        while (r->turn != a->id)
            pthread_cond_wait(r->use_signal ? &r->each[a->id] : &r->all, &r->lock);
        r->log[r->pos++] = a->id;
        r->turn = (a->id + 1) % r->n;
        if (r->use_signal)
            pthread_cond_signal(&r->each[r->turn]);
        else
            pthread_cond_broadcast(&r->all);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

static void run_ring(int n, int use_signal)
{
    struct ring r;
    r.n = n;
    r.use_signal = use_signal;
    r.turn = 0;
    r.pos = 0;
    r.log = calloc((size_t)(n * K + 1), sizeof(int));
    pthread_mutex_init(&r.lock, NULL);
    pthread_cond_init(&r.all, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    for (int i = 0; i < 4; i++)
        pthread_cond_init(&r.each[i], i % 2 ? &ca : NULL);
    pthread_condattr_destroy(&ca);

    pthread_t th[4];
    struct ring_arg args[4];
    /* start them in reverse so the first one created is not the first to run */
    for (int i = n - 1; i >= 0; i--) {
        args[i].r = &r;
        args[i].id = i;
        pthread_create(&th[i], NULL, ring_thread, &args[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);

    long bad = 0;
    for (long i = 0; i < n * K; i++)
        bad += r.log[i] != (int)(i % n);
    printf("ring n=%d %-9s: log", n, use_signal ? "signal" : "broadcast");
    for (long i = 0; i < 2 * n && i < r.pos; i++)
        printf(" %d", r.log[i]);
    printf(" ...\n");
    check("  entries", r.pos, n * K);
    check("  entries out of order", bad, 0);
    free(r.log);
    pthread_mutex_destroy(&r.lock);
    pthread_cond_destroy(&r.all);
    for (int i = 0; i < 4; i++)
        pthread_cond_destroy(&r.each[i]);
}

/* -------------------------------------------------------------- broadcast */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_gate = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_arrived = PTHREAD_COND_INITIALIZER;
static int gate_open;
static long waiting, woke;

static void *gate_waiter(void *p)
{
    (void)p;
    pthread_mutex_lock(&g_lock);
    waiting++;
    pthread_cond_signal(&g_arrived);
    while (!gate_open)
        pthread_cond_wait(&g_gate, &g_lock);
    woke++;
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

/* ----------------------------------------------------------------- tokens */

static pthread_cond_t t_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t t_taken = PTHREAD_COND_INITIALIZER;
static long tokens, next_token, consumed, consumed_sum;

static void *token_consumer(void *p)
{
    (void)p;
    pthread_mutex_lock(&g_lock);
    while (tokens == 0)
        pthread_cond_wait(&t_cond, &g_lock);
    tokens--;
    consumed++;
    consumed_sum += next_token++;
    pthread_cond_signal(&t_taken);
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        K = atol(argv[1]);
    if (argc > 2)
        W = atol(argv[2]);
    if (K < 1 || W < 1 || W > 256) {
        fprintf(stderr, "usage: threads_condvar [K [W (1..256)]]\n");
        return 2;
    }
    printf("threads_condvar: K=%ld W=%ld\n", K, W);
    for (int n = 2; n <= 4; n++) {
        run_ring(n, 0);
        run_ring(n, 1);
    }

    pthread_t th[256];
    for (long i = 0; i < W; i++)
        pthread_create(&th[i], NULL, gate_waiter, NULL);
    pthread_mutex_lock(&g_lock);
    while (waiting < W)
        pthread_cond_wait(&g_arrived, &g_lock);
    long woke_before = woke;
    gate_open = 1;
    pthread_cond_broadcast(&g_gate);
    pthread_mutex_unlock(&g_lock);
    for (long i = 0; i < W; i++)
        pthread_join(th[i], NULL);
    printf("broadcast:\n");
    check("  waiters woken before the broadcast", woke_before, 0);
    check("  waiters woken by one broadcast", woke, W);

    for (long i = 0; i < W; i++)
        pthread_create(&th[i], NULL, token_consumer, NULL);
    pthread_mutex_lock(&g_lock);
    for (long i = 0; i < W; i++) {
        tokens++;
        pthread_cond_signal(&t_cond);
        while (tokens > 0) /* wait until someone took it */
            pthread_cond_wait(&t_taken, &g_lock);
    }
    pthread_mutex_unlock(&g_lock);
    for (long i = 0; i < W; i++)
        pthread_join(th[i], NULL);
    printf("signal one token at a time:\n");
    check("  tokens consumed", consumed, W);
    check("  sum of token numbers", consumed_sum, W * (W - 1) / 2);

    printf("threads_condvar: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
