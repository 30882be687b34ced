/*
 * threads_exit: how threads end, clear-child-tid, thread-local storage.
 *
 * Usage: threads_exit [MODE]
 *
 *   (no MODE) exits 0 after:
 *    - pthread_exit(value) called from a nested function of a thread: join
 *      returns the value and the cleanup handlers ran in LIFO order; a thread
 *      that returns a value; pthread_tryjoin_np gives EBUSY while the thread
 *      is still blocked and 0 after it finished;
 *    - pthread_key_create destructors run once per exiting thread that set a
 *      non-NULL value (not for threads that did not);
 *    - __thread variables (.tdata with initializers and .tbss): the main
 *      thread changes its copies before creating T threads; every thread must
 *      see the initializers, gets distinct addresses, writes its own values,
 *      waits at a barrier until all have written, and must still read its own;
 *    - a raw clone() (CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|
 *      PARENT_SETTID|CHILD_CLEARTID, own stack, no TLS) whose child writes a
 *      global and returns (SYS_exit): the parent sees the tid stored by
 *      PARENT_SETTID and waits with FUTEX_WAIT until the kernel clears the
 *      child tid; set_tid_address returns the caller's tid.
 *   main-exit: the main thread prints, registers an atexit handler and calls
 *      pthread_exit.  Thread 1 joins the main thread (possible only once the
 *      main thread's tid was cleared), thread 2 joins thread 1, thread 3 joins
 *      thread 2; each prints a line.  When the last one returns the process
 *      exits with status 0 and the atexit handler runs.
 *   exit3: thread B blocks in pthread_cond_wait, thread A in pthread_join(B),
 *      the main thread in pthread_join(C), and thread C calls exit(3) once B
 *      is known to wait: status 3, atexit handler runs in thread C.
 *
 * Output order is fixed by joins and locks, never by timing.  Exits 1 if a
 * check failed.
 *
 * guest-cflags: -pthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int failures;
static void check(const char *what, long got, long want)
{
    int ok = got == want;
    failures += !ok;
    printf("%-48s %ld%s\n", what, got, ok ? " ok" : " FAIL");
    if (!ok)
        printf("%-48s expected %ld\n", "", want);
}

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

/* ------------------------------------------------------ pthread_exit */

struct exit_log {
    char order[8];
    int n;
};

struct tagged {
    struct exit_log *log;
    char tag;
};

static void cleanup_tag(void *p)
{
    struct tagged *t = p;
    t->log->order[t->log->n++] = t->tag;
}

static void nested_exit(int depth)
{
    if (depth < 0)
        return;
    if (depth == 0)
        pthread_exit((void *)(uintptr_t)0x1234);
    nested_exit(depth - 1);
    printf("not reached\n");
}

static void *exiting_thread(void *p)
{
    struct exit_log *log = p;
    struct tagged a = {log, 'A'}, b = {log, 'B'}, c = {log, 'C'};
    pthread_cleanup_push(cleanup_tag, &a);
    pthread_cleanup_push(cleanup_tag, &b);
    pthread_cleanup_push(cleanup_tag, &c);
    pthread_cleanup_pop(1); /* runs C now */
    nested_exit(5);         /* then B and A on exit */
    pthread_cleanup_pop(0);
    pthread_cleanup_pop(0);
    return NULL;
}

static void *returning_thread(void *p) { return (void *)((uintptr_t)p * 3); }

static sem_t go;
static void *blocked_thread(void *p)
{
    (void)p;
    sem_wait(&go);
    return (void *)(uintptr_t)99;
}

/* ---------------------------------------------------- thread-specific */

static pthread_key_t key;
static atomic_int dtor_calls, dtor_bad;
static void dtor(void *v)
{
    atomic_fetch_add(&dtor_calls, 1);
    if ((uintptr_t)v < 1000 || (uintptr_t)v >= 1000 + 64)
        atomic_fetch_add(&dtor_bad, 1);
}

/* ----------------------------------------------------------------- TLS */

static __thread int tls_int = 42;
static __thread char tls_str[16] = "tls-init";
static __thread uint64_t tls_arr[4] = {1, 2, 3, 0x0123456789abcdefull};
static __thread long tls_zero;
static __thread char tls_big[4096];

enum { T = 6 };
static pthread_barrier_t tls_bar;
static uintptr_t tls_addr[T + 1];

struct tls_result {
    int saw_init, kept_own;
};

static int tls_initial(void)
{
    int ok = tls_int == 42 && strcmp(tls_str, "tls-init") == 0 && tls_arr[0] == 1 &&
             tls_arr[3] == 0x0123456789abcdefull && tls_zero == 0;
    for (int i = 0; i < 4096; i++)
        ok &= tls_big[i] == 0;
    return ok;
}

static void tls_set(int id)
{
    tls_int = 100 + id;
    snprintf(tls_str, sizeof tls_str, "thread-%d", id);
    tls_arr[3] = (uint64_t)id * 0x1111;
    tls_zero = -id;
    memset(tls_big, id + 1, sizeof tls_big);
}

static int tls_is(int id)
{
    char want[16];
    snprintf(want, sizeof want, "thread-%d", id);
    int ok = tls_int == 100 + id && strcmp(tls_str, want) == 0 &&
             tls_arr[3] == (uint64_t)id * 0x1111 && tls_zero == -id;
    for (int i = 0; i < 4096; i++)
        ok &= tls_big[i] == (char)(id + 1);
    return ok;
}

static void *tls_thread(void *p)
{
    int id = (int)(intptr_t)p;
    struct tls_result *r = calloc(1, sizeof *r);
    r->saw_init = tls_initial();
    tls_addr[id] = (uintptr_t)&tls_int;
    tls_set(id);
    pthread_setspecific(key, (void *)(uintptr_t)(1000 + id));
    pthread_barrier_wait(&tls_bar);
    sched_yield();
    pthread_barrier_wait(&tls_bar);
    r->kept_own = tls_is(id);
    return r;
}

/* ----------------------------------------------------------- raw clone */

static atomic_int clone_ran;
static int clone_child(void *arg)
{
    /* no TLS of its own: no errno, no stdio, no locks */
    atomic_store((atomic_int *)arg, 7);
    return 0;
}

static void raw_clone(void)
{
    enum { STACK = 64 * 1024 };
    char *stack = malloc(STACK);
    pid_t ptid = 0;
    atomic_int ctid;
    int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
                CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
    atomic_store(&ctid, -1);
    int tid = clone(clone_child, stack + STACK, flags, &clone_ran, &ptid, NULL, &ctid);
    check("raw clone: returned a tid > 0", tid > 0, 1);
    check("raw clone: PARENT_SETTID stored the tid", ptid == tid, 1);
    /* the kernel clears ctid and does a FUTEX_WAKE on it when the child exits */
    int v;
    while ((v = atomic_load(&ctid)) != 0)
        syscall(SYS_futex, &ctid, FUTEX_WAIT, v, NULL, NULL, 0);
    check("raw clone: CHILD_CLEARTID cleared the word", atomic_load(&ctid), 0);
    check("raw clone: child ran", atomic_load(&clone_ran), 7);
    free(stack);
}

/* ----------------------------------------------------------- main-exit */

static pthread_t main_thread, chain[4];
static sem_t chain_ready;

static void atexit_handler(void) { printf("atexit handler ran\n"); }

static void *chain_thread(void *p)
{
    int id = (int)(intptr_t)p;
    sem_wait(&chain_ready); /* chain[] is complete */
    void *ret = (void *)1;
    int rc = pthread_join(id == 1 ? main_thread : chain[id - 1], &ret);
    if (id == 1)
        printf("thread 1: joined the main thread: rc %d, value %s\n", rc,
               ret == (void *)(uintptr_t)0x51 ? "0x51" : "wrong");
    else
        printf("thread %d: joined thread %d: rc %d, value %ld\n", id, id - 1, rc,
               (long)(uintptr_t)ret);
    fflush(stdout);
    return (void *)(uintptr_t)(id * 10);
}

static int main_exit(void)
{
    printf("main: creating 3 threads, then pthread_exit\n");
    atexit(atexit_handler);
    main_thread = pthread_self();
    sem_init(&chain_ready, 0, 0);
    for (int i = 1; i <= 3; i++)
        pthread_create(&chain[i], NULL, chain_thread, (void *)(intptr_t)i);
    for (int i = 1; i <= 3; i++)
        sem_post(&chain_ready);
    fflush(stdout);
    pthread_exit((void *)(uintptr_t)0x51);
}

/* --------------------------------------------------------------- exit3 */

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t b_cv = PTHREAD_COND_INITIALIZER, c_cv = PTHREAD_COND_INITIALIZER;
static int b_waiting;
static pthread_t tb, ta, tc;

static void atexit_in_c(void)
{
    printf("atexit handler ran in thread C: %s\n", pthread_equal(pthread_self(), tc) ? "yes" : "no");
}

static void *thread_b(void *p)
{
    (void)p;
    pthread_mutex_lock(&m);
    b_waiting = 1;
    pthread_cond_signal(&c_cv);
    for (;;)
        pthread_cond_wait(&b_cv, &m); /* never signalled */
    return NULL;
}

static void *thread_a(void *p)
{
    (void)p;
    pthread_join(tb, NULL); /* never returns */
    return NULL;
}

static void *thread_c(void *p)
{
    (void)p;
    pthread_mutex_lock(&m);
    while (!b_waiting)
        pthread_cond_wait(&c_cv, &m);
    pthread_mutex_unlock(&m);
    nanosleep(&(struct timespec){0, 5000000}, NULL); /* let A reach its join */
    printf("thread C: B waits on a condvar, A and main in pthread_join; exit(3)\n");
    exit(3);
}

static int exit3(void)
{
    printf("main: starting B (condvar), A (joins B), C (exits)\n");
    atexit(atexit_in_c);
    pthread_create(&tb, NULL, thread_b, NULL);
    pthread_create(&ta, NULL, thread_a, NULL);
    fflush(stdout);
    pthread_create(&tc, NULL, thread_c, NULL);
    pthread_join(tc, NULL); /* never returns */
    printf("not reached\n");
    return 1;
}

/* ------------------------------------------------------------- default */

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "main-exit") == 0)
        return main_exit();
    if (argc > 1 && strcmp(argv[1], "exit3") == 0)
        return exit3();
    if (argc > 1) {
        fprintf(stderr, "usage: threads_exit [main-exit|exit3]\n");
        return 2;
    }

    printf("-- pthread_exit and return values --\n");
    struct exit_log log = {{0}, 0};
    pthread_t t;
    void *ret = NULL;
    pthread_create(&t, NULL, exiting_thread, &log);
    check("join rc", pthread_join(t, &ret), 0);
    check("pthread_exit value from depth 5", (long)(uintptr_t)ret, 0x1234);
    printf("%-48s %.*s%s\n", "cleanup handler order", log.n, log.order,
           log.n == 3 && memcmp(log.order, "CBA", 3) == 0 ? " ok" : " FAIL");
    failures += !(log.n == 3 && memcmp(log.order, "CBA", 3) == 0);
    pthread_create(&t, NULL, returning_thread, (void *)(uintptr_t)14);
    pthread_join(t, &ret);
    check("value returned from the start routine", (long)(uintptr_t)ret, 42);
    sem_init(&go, 0, 0);
    pthread_create(&t, NULL, blocked_thread, NULL);
    check("tryjoin while blocked (EBUSY)", pthread_tryjoin_np(t, &ret), EBUSY);
    sem_post(&go);
    int rc;
    while ((rc = pthread_tryjoin_np(t, &ret)) == EBUSY)
        sched_yield();
    check("tryjoin after it finished", rc, 0);
    check("  value", (long)(uintptr_t)ret, 99);
    pthread_create(&t, NULL, returning_thread, (void *)(uintptr_t)1);
    check("pthread_detach of a running/finished thread", pthread_detach(t), 0);

    printf("-- thread-local storage and keys --\n");
    check("main: TLS initializers", tls_initial(), 1);
    tls_set(T);
    tls_addr[T] = (uintptr_t)&tls_int;
    pthread_key_create(&key, dtor);
    pthread_setspecific(key, (void *)(uintptr_t)5); /* main's: no destructor call */
    pthread_barrier_init(&tls_bar, NULL, T);
    pthread_t th[T];
    for (int i = 0; i < T; i++)
        pthread_create(&th[i], NULL, tls_thread, (void *)(intptr_t)i);
    int saw_init = 0, kept = 0;
    for (int i = 0; i < T; i++) {
        void *p;
        pthread_join(th[i], &p);
        struct tls_result *r = p;
        saw_init += r->saw_init;
        kept += r->kept_own;
        free(r);
    }
    int distinct = 0;
    for (int i = 0; i <= T; i++) {
        int dup = 0;
        for (int j = 0; j < i; j++)
            dup |= tls_addr[j] == tls_addr[i];
        distinct += !dup;
    }
    check("threads that saw the TLS initializers", saw_init, T);
    check("threads that kept their own TLS values", kept, T);
    check("distinct &tls_int (threads + main)", distinct, T + 1);
    check("main kept its TLS values", tls_is(T), 1);
    /* a thread that never set the key: no destructor call */
    pthread_create(&t, NULL, returning_thread, NULL);
    pthread_join(t, NULL);
    check("key destructor calls", atomic_load(&dtor_calls), T);
    check("key destructor wrong values", atomic_load(&dtor_bad), 0);
    check("main's key value", (long)(uintptr_t)pthread_getspecific(key), 5);

    printf("-- raw clone, clear-child-tid, set_tid_address --\n");
    raw_clone();
    static int dummy_tid_word;
    long r = syscall(SYS_set_tid_address, &dummy_tid_word);
    check("set_tid_address returns the caller's tid", r == gettid_(), 1);

    printf("threads_exit: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
