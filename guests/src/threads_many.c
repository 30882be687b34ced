/*
 * threads_many: thousands of short-lived threads; also the spawn/join
 * benchmark.
 *
 * Usage: threads_many [COUNT [LIVE]]   COUNT joinable threads (default 2000;
 * 10000 for the benchmark), created in waves of at most LIVE live threads
 * (default 64, at most 256).
 *
 *  - waves: create up to LIVE threads, join them all, repeat until COUNT
 *    threads have run.  Thread k computes a small sum depending on k and
 *    returns it through pthread_join's value; the main thread checks every
 *    value and that every thread saw its own argument;
 *  - every fourth thread of a wave is created with an attribute: an explicit
 *    64 KiB stack (pthread_attr_setstacksize; the thread checks that a local
 *    variable lies inside the stack pthread_getattr_np reports) or a guard
 *    size of 0;
 *  - COUNT/10 detached threads (pthread_attr_setdetachstate, plus some that
 *    call pthread_detach on themselves), also in waves of at most LIVE: each
 *    adds to an atomic counter, and the last one of a wave wakes the main
 *    thread through a mutex + condvar before the next wave starts;
 *  - every thread's gettid() must differ from the main thread's and from the
 *    tids of the other live threads in its wave.
 *
 * Threads with default attributes get glibc's default stack, RLIMIT_STACK
 * (8 MiB under the test harness) plus a guard page, so LIVE = 64 keeps up to
 * about 512 MiB of stack mappings alive at once.
 *
 * Prints totals only; exits 1 if any check failed.
 *
 * guest-cflags: -pthread
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static int failures;
static void check(const char *what, uint64_t got, uint64_t want)
{
    int ok = got == want;
    failures += !ok;
    printf("%-40s %" PRIu64 "%s\n", what, got, ok ? " ok" : " FAIL");
    if (!ok)
        printf("%-40s expected %" PRIu64 "\n", "", want);
}

static uint64_t work(uint64_t k)
{
    uint64_t s = k;
    for (uint64_t i = 0; i < 64; i++)
        s = s * 6364136223846793005ull + i + k;
    return s;
}

struct targ {
    uint64_t k;
    pid_t tid;
    int stack_ok; /* -1: not checked */
};

static void *joinable(void *p)
{
    struct targ *a = p;
    a->tid = (pid_t)syscall(SYS_gettid);
    if (a->stack_ok == 0) {
        pthread_attr_t attr;
        void *lo;
        size_t size;
        int local;
        if (pthread_getattr_np(pthread_self(), &attr) == 0 &&
            pthread_attr_getstack(&attr, &lo, &size) == 0) {
            uintptr_t x = (uintptr_t)&local;
            a->stack_ok = x >= (uintptr_t)lo && x < (uintptr_t)lo + size && size >= 65536;
            pthread_attr_destroy(&attr);
        }
    }
    return (void *)(uintptr_t)work(a->k);
}

static atomic_long detached_done;
static long detached_target; /* counter value that completes the current wave */
static pthread_mutex_t dlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t dcond = PTHREAD_COND_INITIALIZER;
static atomic_ulong detached_sum;

static void *detached(void *p)
{
    uint64_t k = (uint64_t)(uintptr_t)p;
    if (k % 2)
        pthread_detach(pthread_self());
    atomic_fetch_add(&detached_sum, work(k));
    pthread_mutex_lock(&dlock);
    if (atomic_fetch_add(&detached_done, 1) + 1 == detached_target)
        pthread_cond_signal(&dcond);
    pthread_mutex_unlock(&dlock);
    return NULL;
}

int main(int argc, char **argv)
{
    long count = argc > 1 ? atol(argv[1]) : 2000;
    long live = argc > 2 ? atol(argv[2]) : 64;
    if (count < 0 || live < 1 || live > 256) {
        fprintf(stderr, "usage: threads_many [COUNT [LIVE (1..256)]]\n");
        return 2;
    }
    pid_t main_tid = (pid_t)syscall(SYS_gettid);

    pthread_attr_t small_stack, no_guard, detach_attr;
    pthread_attr_init(&small_stack);
    pthread_attr_setstacksize(&small_stack, 65536);
    pthread_attr_init(&no_guard);
    pthread_attr_setguardsize(&no_guard, 0);
    pthread_attr_init(&detach_attr);
    pthread_attr_setdetachstate(&detach_attr, PTHREAD_CREATE_DETACHED);

    pthread_t th[256];
    struct targ args[256];
    uint64_t bad_value = 0, bad_tid = 0, bad_stack = 0, create_failed = 0, joined = 0,
             checksum = 0, stacks_checked = 0, want_stacks = 0;
    for (long base = 0; base < count; base += live) {
        long n = count - base < live ? count - base : live;
        want_stacks += (uint64_t)(n + 2) / 4; /* i % 4 == 1 for i < n */
        for (long i = 0; i < n; i++) {
            args[i].k = (uint64_t)(base + i);
            args[i].tid = 0;
            args[i].stack_ok = i % 4 == 1 ? 0 : -1;
            const pthread_attr_t *attr = i % 4 == 1 ? &small_stack : i % 4 == 3 ? &no_guard : NULL;
            if (pthread_create(&th[i], attr, joinable, &args[i]) != 0) {
                create_failed++;
                th[i] = 0;
            }
        }
        for (long i = 0; i < n; i++) {
            if (!th[i])
                continue;
            void *ret;
            pthread_join(th[i], &ret);
            joined++;
            uint64_t v = (uint64_t)(uintptr_t)ret;
            bad_value += v != work(args[i].k);
            checksum += v;
            bad_tid += args[i].tid <= 0 || args[i].tid == main_tid;
            for (long j = 0; j < i; j++)
                bad_tid += args[j].tid == args[i].tid;
            if (args[i].stack_ok != -1) {
                stacks_checked++;
                bad_stack += args[i].stack_ok != 1;
            }
        }
    }
    uint64_t want = 0;
    for (long k = 0; k < count; k++)
        want += work((uint64_t)k);
    printf("threads_many: %ld joinable threads, at most %ld live\n", count, live);
    check("threads created and joined", joined, (uint64_t)count);
    check("pthread_create failures", create_failed, 0);
    check("wrong return values", bad_value, 0);
    check("duplicate or bad tids", bad_tid, 0);
    check("64 KiB stacks checked", stacks_checked, want_stacks);
    check("locals outside the reported stack", bad_stack, 0);
    printf("%-40s %016" PRIx64 "%s\n", "checksum of return values", checksum,
           checksum == want ? " ok" : " FAIL");
    failures += checksum != want;

    long detached_total = count / 10, started = 0;
    uint64_t dwant = 0;
    for (long base = 0; base < detached_total; base += live) {
        long n = detached_total - base < live ? detached_total - base : live;
        pthread_mutex_lock(&dlock);
        detached_target = LONG_MAX; /* nobody signals while the wave starts */
        pthread_mutex_unlock(&dlock);
        for (long k = base; k < base + n; k++) {
            pthread_t t;
            dwant += work((uint64_t)k + 1000000);
            if (pthread_create(&t, k % 2 ? NULL : &detach_attr, detached,
                               (void *)(uintptr_t)(k + 1000000)) == 0)
                started++;
            else
                create_failed++;
        }
        pthread_mutex_lock(&dlock);
        detached_target = started;
        while (atomic_load(&detached_done) < detached_target)
            pthread_cond_wait(&dcond, &dlock);
        pthread_mutex_unlock(&dlock);
    }
    printf("threads_many: %ld detached threads\n", detached_total);
    check("detached threads finished", (uint64_t)atomic_load(&detached_done), (uint64_t)detached_total);
    check("detached checksum ok", atomic_load(&detached_sum) == dwant, 1);
    check("pthread_create failures", create_failed, 0);
    printf("threads_many: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
