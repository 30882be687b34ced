/*
 * threads_mutex: pthread mutexes under contention.
 *
 * Usage: threads_mutex [T [M]]   T threads (default 4, at most 64), M
 * increments per thread (default 20000).
 *
 *  - T threads increment a plain `long` M times each under a static
 *    PTHREAD_MUTEX_INITIALIZER mutex, and a second counter under a dynamically
 *    initialised one, taking both in a fixed order: both totals must be T*M;
 *  - a PTHREAD_MUTEX_RECURSIVE mutex taken three levels deep by every thread
 *    (plus trylock on it while held by the caller, which must succeed);
 *  - pthread_mutex_trylock: EBUSY while another thread holds the mutex, 0 once
 *    it is released; then T threads increment a counter with a
 *    trylock-or-sched_yield loop (exact total, every failed attempt EBUSY);
 *  - PTHREAD_MUTEX_ERRORCHECK: relock by the owner gives EDEADLK, unlock by a
 *    thread that does not own it gives EPERM, unlock of an unlocked one EPERM.
 *
 * Output is printed by the main thread after the joins and does not depend on
 * the interleaving.  Exits 1 if any check failed.
 *
 * guest-cflags: -pthread
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;
static void check(const char *what, long got, long want)
{
    int ok = got == want;
    failures += !ok;
    printf("%-44s %ld%s\n", what, got, ok ? " ok" : " FAIL");
    if (!ok)
        printf("%-44s expected %ld\n", "", want);
}

static long T = 4, M = 20000;

static pthread_mutex_t static_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t dyn_lock;
static pthread_mutex_t rec_lock;
static pthread_mutex_t try_lock;
static long counter_a, counter_b, counter_rec, counter_try;
static long rec_trylock_failures;

struct result {
    long try_busy;  /* failed trylock attempts that returned EBUSY */
    long try_other; /* failed trylock attempts with any other code */
};

static void *worker(void *arg)
{
    struct result *r = arg;
    for (long i = 0; i < M; i++) {
        pthread_mutex_lock(&static_lock);
        pthread_mutex_lock(&dyn_lock);
        counter_a++;
        counter_b += 2;
        pthread_mutex_unlock(&dyn_lock);
        pthread_mutex_unlock(&static_lock);
    }
    for (long i = 0; i < M / 4; i++) {
        pthread_mutex_lock(&rec_lock);
        pthread_mutex_lock(&rec_lock);
        if (pthread_mutex_trylock(&rec_lock) != 0)
            rec_trylock_failures++; /* under the lock: safe */
        counter_rec++;
        pthread_mutex_unlock(&rec_lock);
        counter_rec++;
        pthread_mutex_unlock(&rec_lock);
        pthread_mutex_unlock(&rec_lock);
    }
    for (long i = 0; i < M / 4; i++) {
        for (;;) {
            int rc = pthread_mutex_trylock(&try_lock);
            if (rc == 0)
                break;
            if (rc == EBUSY)
                r->try_busy++;
            else
                r->try_other++;
            sched_yield();
        }
        counter_try++;
        pthread_mutex_unlock(&try_lock);
    }
    return NULL;
}

/* --- trylock against a holder in another thread --- */
static pthread_mutex_t held;
static int try_while_held = -1, try_after_release = -1;

static void *try_held(void *arg)
{
    (void)arg;
    try_while_held = pthread_mutex_trylock(&held);
    return NULL;
}

static void *try_released(void *arg)
{
    (void)arg;
    try_after_release = pthread_mutex_trylock(&held);
    if (try_after_release == 0)
        pthread_mutex_unlock(&held);
    return NULL;
}

/* --- error-checking mutex --- */
static pthread_mutex_t ec_lock;
static int ec_foreign_unlock = -1;

static void *foreign_unlock(void *arg)
{
    (void)arg;
    ec_foreign_unlock = pthread_mutex_unlock(&ec_lock);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        T = atol(argv[1]);
    if (argc > 2)
        M = atol(argv[2]);
    if (T < 1 || T > 64 || M < 0) {
        fprintf(stderr, "usage: threads_mutex [T (1..64) [M]]\n");
        return 2;
    }
    printf("threads_mutex: T=%ld M=%ld\n", T, M);

    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutex_init(&dyn_lock, &attr);
    pthread_mutex_init(&try_lock, NULL);
    pthread_mutex_init(&held, NULL);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&rec_lock, &attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&ec_lock, &attr);
    pthread_mutexattr_destroy(&attr);

    pthread_t th[64];
    struct result res[64] = {{0, 0}};
    for (long i = 0; i < T; i++)
        if (pthread_create(&th[i], NULL, worker, &res[i]) != 0) {
            printf("pthread_create failed\n");
            return 1;
        }
    long other = 0;
    for (long i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        other += res[i].try_other;
    }
    check("counter under static mutex", counter_a, T * M);
    check("counter under dynamic mutex", counter_b, 2 * T * M);
    check("counter under recursive mutex", counter_rec, 2 * T * (M / 4));
    check("recursive trylock by owner failures", rec_trylock_failures, 0);
    check("counter under trylock loop", counter_try, T * (M / 4));
    check("failed trylocks with a code other than EBUSY", other, 0);

    /* trylock from another thread while main holds the mutex */
    pthread_t t;
    pthread_mutex_lock(&held);
    pthread_create(&t, NULL, try_held, NULL);
    pthread_join(t, NULL);
    pthread_mutex_unlock(&held);
    pthread_create(&t, NULL, try_released, NULL);
    pthread_join(t, NULL);
    check("trylock while another thread holds (EBUSY)", try_while_held, EBUSY);
    check("trylock after release", try_after_release, 0);
    check("main trylock after the thread unlocked", pthread_mutex_trylock(&held), 0);
    pthread_mutex_unlock(&held);

    /* error-checking mutex */
    check("errorcheck: lock", pthread_mutex_lock(&ec_lock), 0);
    check("errorcheck: relock by owner (EDEADLK)", pthread_mutex_lock(&ec_lock), EDEADLK);
    check("errorcheck: trylock by owner (EBUSY)", pthread_mutex_trylock(&ec_lock), EBUSY);
    pthread_create(&t, NULL, foreign_unlock, NULL);
    pthread_join(t, NULL);
    check("errorcheck: unlock by other thread (EPERM)", ec_foreign_unlock, EPERM);
    check("errorcheck: unlock by owner", pthread_mutex_unlock(&ec_lock), 0);
    check("errorcheck: unlock when unlocked (EPERM)", pthread_mutex_unlock(&ec_lock), EPERM);

    check("destroy dynamic mutex", pthread_mutex_destroy(&dyn_lock), 0);
    check("destroy recursive mutex", pthread_mutex_destroy(&rec_lock), 0);
    printf("threads_mutex: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
