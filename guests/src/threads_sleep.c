/*
 * threads_sleep: sleeping and timed waits while other threads run.
 *
 * Usage: threads_sleep [MS]   MS = length of each sleep in milliseconds
 * (default 20).
 *
 *  - a sleeper thread does 3 x nanosleep(MS), usleep(MS), clock_nanosleep
 *    (CLOCK_MONOTONIC, relative, MS) and clock_nanosleep(TIMER_ABSTIME, now +
 *    MS), checking each return value and that at least the requested time
 *    passed on CLOCK_MONOTONIC, while two compute threads each run a fixed
 *    number of hash rounds (their results are printed; they must not depend
 *    on the sleeper);
 *  - pthread_cond_timedwait (CLOCK_REALTIME and a CLOCK_MONOTONIC condattr)
 *    with nobody signalling: ETIMEDOUT, with the mutex held again afterwards;
 *    a deadline in the past: ETIMEDOUT at once; tv_nsec = 1e9: EINVAL;
 *  - sem_timedwait on a zero semaphore: -1/ETIMEDOUT; sem_trywait: EAGAIN;
 *    then posts from another thread wake sem_wait (count checked);
 *  - pthread_mutex_timedlock on a mutex held by another thread: ETIMEDOUT;
 *  - pthread_timedjoin_np on a thread blocked in sem_wait: ETIMEDOUT, then
 *    it is released and joins with its return value;
 *  - two threads calling sched_yield 2000 times each (both finish, return 0).
 *
 * Times are never printed, only "elapsed >= requested: yes".  Exits 1 if any
 * check failed.
 *
 * guest-cflags: -pthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

static long MS = 20;

static int64_t now_ns(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static struct timespec deadline(clockid_t c, int64_t from_now_ns)
{
    int64_t t = now_ns(c) + from_now_ns;
    struct timespec ts = {t / 1000000000, t % 1000000000};
    return ts;
}

/* ------------------------------------------------ sleeper and computers */

struct sleep_result {
    int rc[6];
    int long_enough[6];
};
static const char *sleep_names[6] = {"nanosleep #1", "nanosleep #2", "nanosleep #3",
                                     "usleep", "clock_nanosleep relative",
                                     "clock_nanosleep TIMER_ABSTIME"};

static void *sleeper(void *p)
{
    struct sleep_result *r = p;
    int64_t want = MS * 1000000;
    for (int i = 0; i < 6; i++) {
        int64_t t0 = now_ns(CLOCK_MONOTONIC);
        struct timespec req = {want / 1000000000, want % 1000000000};
        if (i < 3) {
            r->rc[i] = nanosleep(&req, NULL);
        } else if (i == 3) {
            r->rc[i] = usleep((useconds_t)(MS * 1000));
        } else if (i == 4) {
            r->rc[i] = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);
        } else {
            struct timespec abs = deadline(CLOCK_MONOTONIC, want);
            r->rc[i] = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL);
            r->long_enough[i] = now_ns(CLOCK_MONOTONIC) >=
                                (int64_t)abs.tv_sec * 1000000000 + abs.tv_nsec;
            continue;
        }
        r->long_enough[i] = now_ns(CLOCK_MONOTONIC) - t0 >= want;
    }
    return NULL;
}

static void *compute(void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    for (long i = 0; i < 300000; i++)
        x = (x ^ (x >> 29)) * 0xbf58476d1ce4e5b9ull + (uint64_t)i;
    return (void *)(uintptr_t)x;
}

/* ------------------------------------------------------------ semaphore */

static sem_t sem;
static void *poster(void *p)
{
    long n = (long)(intptr_t)p;
    for (long i = 0; i < n; i++) {
        sem_post(&sem);
        if (i % 8 == 0)
            sched_yield();
    }
    return NULL;
}

/* ------------------------------------------------------------ timedlock */

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static sem_t held_now, release_now;
static void *holder(void *p)
{
    (void)p;
    pthread_mutex_lock(&held);
    sem_post(&held_now);
    sem_wait(&release_now);
    pthread_mutex_unlock(&held);
    return NULL;
}

static sem_t finish_now;
static void *late_finisher(void *p)
{
    (void)p;
    sem_wait(&finish_now); /* posted only after the timed join timed out */
    return (void *)(uintptr_t)77;
}

/* --------------------------------------------------------------- yield */

static void *yielder(void *p)
{
    long bad = 0;
    for (int i = 0; i < 2000; i++)
        bad += sched_yield() != 0;
    (void)p;
    return (void *)(uintptr_t)(2000 + bad * 100000);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        MS = atol(argv[1]);
    if (MS < 1 || MS > 300) {
        fprintf(stderr, "usage: threads_sleep [MS (1..300)]\n");
        return 2;
    }
    printf("threads_sleep: MS=%ld\n", MS);

    /* sleeper and computers */
    struct sleep_result sr = {{0}, {0}};
    pthread_t ts, tc[2];
    pthread_create(&ts, NULL, sleeper, &sr);
    for (int i = 0; i < 2; i++)
        pthread_create(&tc[i], NULL, compute, (void *)(uintptr_t)(i + 1));
    void *v[2];
    for (int i = 0; i < 2; i++)
        pthread_join(tc[i], &v[i]);
    pthread_join(ts, NULL);
    for (int i = 0; i < 2; i++)
        printf("compute thread %d result %016" PRIx64 "\n", i, (uint64_t)(uintptr_t)v[i]);
    for (int i = 0; i < 6; i++) {
        char what[80];
        snprintf(what, sizeof what, "%s: rc", sleep_names[i]);
        check(what, sr.rc[i], 0);
        snprintf(what, sizeof what, "%s: elapsed >= requested", sleep_names[i]);
        check(what, sr.long_enough[i], 1);
    }

    /* condvar timed waits */
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c_real = PTHREAD_COND_INITIALIZER, c_mono;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c_mono, &ca);
    pthread_mutex_lock(&m);
    int64_t t0 = now_ns(CLOCK_MONOTONIC);
    struct timespec dl = deadline(CLOCK_REALTIME, MS * 1000000);
    check("cond_timedwait CLOCK_REALTIME (ETIMEDOUT)", pthread_cond_timedwait(&c_real, &m, &dl), ETIMEDOUT);
    check("  mutex held again (trylock EBUSY)", pthread_mutex_trylock(&m), EBUSY);
    check("  elapsed >= requested", now_ns(CLOCK_MONOTONIC) - t0 >= MS * 1000000 - 1000000, 1);
    dl = deadline(CLOCK_MONOTONIC, MS * 1000000);
    int64_t want_end = (int64_t)dl.tv_sec * 1000000000 + dl.tv_nsec;
    check("cond_timedwait CLOCK_MONOTONIC (ETIMEDOUT)", pthread_cond_timedwait(&c_mono, &m, &dl), ETIMEDOUT);
    check("  deadline passed", now_ns(CLOCK_MONOTONIC) >= want_end, 1);
    dl = deadline(CLOCK_MONOTONIC, -1000000000);
    check("cond_timedwait past deadline (ETIMEDOUT)", pthread_cond_timedwait(&c_mono, &m, &dl), ETIMEDOUT);
    dl.tv_nsec = 1000000000;
    check("cond_timedwait tv_nsec=1e9 (EINVAL)", pthread_cond_timedwait(&c_mono, &m, &dl), EINVAL);
    pthread_mutex_unlock(&m);

    /* semaphores */
    sem_init(&sem, 0, 0);
    dl = deadline(CLOCK_REALTIME, MS * 1000000);
    int rc = sem_timedwait(&sem, &dl);
    check("sem_timedwait on 0: rc", rc, -1);
    check("sem_timedwait on 0: errno (ETIMEDOUT)", rc ? errno : 0, ETIMEDOUT);
    rc = sem_trywait(&sem);
    check("sem_trywait on 0: errno (EAGAIN)", rc ? errno : 0, EAGAIN);
    pthread_t tp;
    pthread_create(&tp, NULL, poster, (void *)(intptr_t)500);
    long got = 0;
    for (int i = 0; i < 500; i++)
        got += sem_wait(&sem) == 0;
    pthread_join(tp, NULL);
    int val = -1;
    sem_getvalue(&sem, &val);
    check("sem_wait successes for 500 posts", got, 500);
    check("semaphore value afterwards", val, 0);

    /* mutex timedlock */
    sem_init(&held_now, 0, 0);
    sem_init(&release_now, 0, 0);
    pthread_t th;
    pthread_create(&th, NULL, holder, NULL);
    sem_wait(&held_now);
    dl = deadline(CLOCK_REALTIME, MS * 1000000);
    check("mutex_timedlock while held (ETIMEDOUT)", pthread_mutex_timedlock(&held, &dl), ETIMEDOUT);
    sem_post(&release_now);
    pthread_join(th, NULL);
    dl = deadline(CLOCK_REALTIME, MS * 1000000);
    check("mutex_timedlock after release", pthread_mutex_timedlock(&held, &dl), 0);
    pthread_mutex_unlock(&held);

    /* timed join */
    sem_init(&finish_now, 0, 0);
    pthread_create(&th, NULL, late_finisher, NULL);
    dl = deadline(CLOCK_REALTIME, MS * 1000000);
    void *ret = NULL;
    check("timedjoin_np on a blocked thread (ETIMEDOUT)", pthread_timedjoin_np(th, &ret, &dl), ETIMEDOUT);
    sem_post(&finish_now);
    check("join afterwards", pthread_join(th, &ret), 0);
    check("  return value", (long)(uintptr_t)ret, 77);

    /* sched_yield */
    pthread_t ty[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&ty[i], NULL, yielder, NULL);
    long yields = 0;
    for (int i = 0; i < 2; i++) {
        pthread_join(ty[i], &ret);
        yields += (long)(uintptr_t)ret;
    }
    check("sched_yield calls returning 0", yields, 4000);

    printf("threads_sleep: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
