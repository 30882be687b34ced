/*
 * threads_atomics: C11 atomics shared between threads.
 *
 * Usage: threads_atomics [T [N]]   T threads (default 4, 2..16), N iterations
 * per thread (default 20000; the smaller sections use N/4 or N/10).
 *
 *  - fetch_add on 32- and 64-bit counters (the 64-bit one adds 0x100000001, so
 *    a lost carry or a 32-bit AMO shows), fetch_sub, fetch_or/fetch_and on
 *    per-thread bits, fetch_xor, exchange (sum of everything swapped out plus
 *    the final value = sum of everything swapped in), a CAS-loop maximum;
 *  - 8- and 16-bit atomics (libatomic: LR/SC loops on the containing word):
 *    each thread increments its own byte/halfword while all threads increment
 *    a shared one in the same 64-bit word, so a masked update that clobbers a
 *    neighbour shows; a byte CAS loop adding 3;
 *  - a Treiber stack: concurrent pushes of all nodes, then concurrent pops
 *    until empty (count and checksum; nodes are never re-pushed, so no ABA);
 *  - a test-and-set spinlock on atomic_flag guarding two plain variables whose
 *    sum must stay constant (waiters yield after 64 failed attempts);
 *  - release/acquire message passing: plain data stores published by a
 *    store-release of an index, checked after the load-acquire;
 *  - store buffering (Dekker): x = 1; r0 = y  ||  y = 1; r1 = x with seq_cst
 *    accesses, and again with relaxed accesses and a seq_cst fence between
 *    store and load: r0 == r1 == 0 is forbidden and must never be seen;
 *  - Peterson's mutual exclusion with seq_cst atomics guarding a plain counter.
 *
 * Waits spin on an atomic and call sched_yield after 64 attempts, so the
 * program also runs well with one CPU.  Only totals and "forbidden outcomes:
 * 0" are printed (never how often each allowed outcome occurred); exits 1 if
 * any check failed.
 *
 * guest-cflags: -pthread -latomic
 */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;
static void check(const char *what, uint64_t got, uint64_t want)
{
    int ok = got == want;
    failures += !ok;
    printf("%-40s 0x%016" PRIx64 "%s\n", what, got, ok ? " ok" : " FAIL");
    if (!ok)
        printf("%-40s expected 0x%016" PRIx64 "\n", "", want);
}

static long T = 4, N = 20000;

#define SPIN_UNTIL(cond)                                                       \
    do {                                                                       \
        for (unsigned spin_ = 0; !(cond); spin_++)                             \
            if (spin_ >= 64)                                                   \
                sched_yield();                                                 \
    } while (0)

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    return x ^ (x >> 33);
}

static void run_threads(void *(*fn)(void *), long n)
{
    pthread_t th[16];
    for (long i = 0; i < n; i++)
        if (pthread_create(&th[i], NULL, fn, (void *)(intptr_t)i) != 0) {
            printf("pthread_create failed\n");
            exit(1);
        }
    for (long i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

/* ------------------------------------------------------------- counters */

static atomic_int c32;
static atomic_llong c64;
static atomic_uint c32_down;
static atomic_ulong bits_or;
static atomic_ulong bits_and = ~0ul;
static atomic_ulong xor_acc;
static atomic_ulong xslot;
static atomic_ulong xchg_out_sum;
static atomic_long cas_max = -1;

static struct {
    _Alignas(8) uint8_t own[7];
    uint8_t shared;
} bytes;
static struct {
    _Alignas(8) uint16_t own[3];
    uint16_t shared;
} halves;
static uint8_t cas_byte;

static uint64_t xchg_value(long id, long i) { return ((uint64_t)id << 40) | (uint64_t)(i + 1); }
static long max_candidate(long id, long i) { return (long)(mix((uint64_t)(id * 1000003 + i)) >> 2); }

static void *counters(void *arg)
{
    long id = (long)(intptr_t)arg;
    uint64_t out = 0;
    for (long i = 0; i < N; i++) {
        atomic_fetch_add(&c32, 1);
        atomic_fetch_add_explicit(&c64, 0x100000001ll, memory_order_relaxed);
        atomic_fetch_sub(&c32_down, 3u);
        atomic_fetch_or(&bits_or, 1ul << (id * 4 + (i & 3)));
        atomic_fetch_and(&bits_and, ~(1ul << (id * 4 + (i & 3))));
        atomic_fetch_xor(&xor_acc, mix((uint64_t)id) + (uint64_t)i);
        out += atomic_exchange(&xslot, xchg_value(id, i));
        long cand = max_candidate(id, i);
        long cur = atomic_load_explicit(&cas_max, memory_order_relaxed);
        while (cand > cur && !atomic_compare_exchange_weak(&cas_max, &cur, cand))
            ;
        if (id < 7)
            __atomic_fetch_add(&bytes.own[id], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&bytes.shared, 1, __ATOMIC_SEQ_CST);
        if (id < 3)
            __atomic_fetch_add(&halves.own[id], 1, __ATOMIC_ACQ_REL);
        __atomic_fetch_add(&halves.shared, 7, __ATOMIC_SEQ_CST);
        uint8_t old = __atomic_load_n(&cas_byte, __ATOMIC_RELAXED);
        while (!__atomic_compare_exchange_n(&cas_byte, &old, (uint8_t)(old + 3), 1,
                                            __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
            ;
    }
    atomic_fetch_add(&xchg_out_sum, out);
    return NULL;
}

static void test_counters(void)
{
    printf("-- counters (%ld threads x %ld) --\n", T, N);
    atomic_store(&c32_down, (unsigned)(3 * T * N));
    run_threads(counters, T);
    uint64_t tn = (uint64_t)(T * N);
    check("fetch_add 32-bit", (uint64_t)atomic_load(&c32), tn);
    check("fetch_add 64-bit (+0x100000001)", (uint64_t)atomic_load(&c64), tn * 0x100000001ull);
    check("fetch_sub 32-bit down to 0", atomic_load(&c32_down), 0);
    uint64_t mask = 0; /* thread id sets bits id*4 .. id*4+3 (fewer if N < 4) */
    for (long id = 0; id < T; id++)
        for (long b = 0; b < 4 && b < N; b++)
            mask |= 1ull << (id * 4 + b);
    check("fetch_or per-thread bits", atomic_load(&bits_or), mask);
    check("fetch_and per-thread bits", atomic_load(&bits_and), ~mask);
    uint64_t want_xor = 0;
    for (long id = 0; id < T; id++)
        for (long i = 0; i < N; i++)
            want_xor ^= mix((uint64_t)id) + (uint64_t)i;
    check("fetch_xor", atomic_load(&xor_acc), want_xor);
    uint64_t want_in = 0;
    for (long id = 0; id < T; id++)
        for (long i = 0; i < N; i++)
            want_in += xchg_value(id, i);
    check("exchange: swapped out + final", atomic_load(&xchg_out_sum) + atomic_load(&xslot), want_in);
    long want_max = -1;
    for (long id = 0; id < T; id++)
        for (long i = 0; i < N; i++)
            if (max_candidate(id, i) > want_max)
                want_max = max_candidate(id, i);
    check("CAS-loop maximum", (uint64_t)atomic_load(&cas_max), (uint64_t)want_max);
    uint64_t own_bad = 0;
    for (long i = 0; i < 7; i++)
        own_bad += bytes.own[i] != (i < T ? (uint8_t)N : 0);
    for (long i = 0; i < 3; i++)
        own_bad += halves.own[i] != (i < T ? (uint16_t)N : 0);
    check("8/16-bit own counters wrong", own_bad, 0);
    check("8-bit shared counter", bytes.shared, (uint8_t)tn);
    check("16-bit shared counter (+7)", halves.shared, (uint16_t)(tn * 7));
    check("8-bit CAS loop (+3)", cas_byte, (uint8_t)(tn * 3));
}

/* --------------------------------------------------------- Treiber stack */

struct node {
    struct node *next;
    uint64_t value;
};
static struct node *nodes;
static _Atomic(struct node *) top;
static long per_thread_nodes;
static atomic_ulong popped_sum, popped_count;

static void *pusher(void *arg)
{
    long id = (long)(intptr_t)arg;
    for (long i = 0; i < per_thread_nodes; i++) {
        struct node *n = &nodes[id * per_thread_nodes + i];
        n->value = mix((uint64_t)(id * per_thread_nodes + i));
        struct node *old = atomic_load_explicit(&top, memory_order_relaxed);
        do
            n->next = old;
        while (!atomic_compare_exchange_weak_explicit(&top, &old, n, memory_order_release,
                                                      memory_order_relaxed));
    }
    return NULL;
}

static void *popper(void *arg)
{
    (void)arg;
    uint64_t sum = 0, count = 0;
    for (;;) {
        struct node *old = atomic_load_explicit(&top, memory_order_acquire);
        while (old && !atomic_compare_exchange_weak_explicit(&top, &old, old->next,
                                                             memory_order_acquire,
                                                             memory_order_acquire))
            ;
        if (!old)
            break;
        sum += old->value;
        count++;
    }
    atomic_fetch_add(&popped_sum, sum);
    atomic_fetch_add(&popped_count, count);
    return NULL;
}

static void test_stack(void)
{
    per_thread_nodes = N / 4;
    printf("-- Treiber stack (%ld threads x %ld nodes) --\n", T, per_thread_nodes);
    nodes = calloc((size_t)(T * per_thread_nodes + 1), sizeof *nodes);
    run_threads(pusher, T);
    uint64_t count = 0, sum = 0, want = 0;
    for (struct node *n = atomic_load(&top); n; n = n->next) {
        count++;
        sum += n->value;
    }
    for (long k = 0; k < T * per_thread_nodes; k++)
        want += mix((uint64_t)k);
    check("nodes on the stack after pushes", count, (uint64_t)(T * per_thread_nodes));
    check("checksum after pushes", sum, want);
    run_threads(popper, T);
    check("nodes popped", atomic_load(&popped_count), (uint64_t)(T * per_thread_nodes));
    check("checksum of popped nodes", atomic_load(&popped_sum), want);
    check("stack empty", atomic_load(&top) == NULL, 1);
    free(nodes);
}

/* ------------------------------------------------------------- spinlock */

static atomic_flag spin = ATOMIC_FLAG_INIT;
static long plain_a, plain_b, spin_count;
static atomic_long invariant_broken;

static void *spinner(void *arg)
{
    (void)arg;
    for (long i = 0; i < N / 4; i++) {
        SPIN_UNTIL(!atomic_flag_test_and_set_explicit(&spin, memory_order_acquire));
        if (plain_a + plain_b != 1000000)
            atomic_fetch_add(&invariant_broken, 1);
        plain_a++;
        plain_b--;
        spin_count++;
        atomic_flag_clear_explicit(&spin, memory_order_release);
    }
    return NULL;
}

static void test_spinlock(void)
{
    printf("-- atomic_flag spinlock (%ld threads x %ld) --\n", T, N / 4);
    plain_b = 1000000;
    run_threads(spinner, T);
    check("count under spinlock", (uint64_t)spin_count, (uint64_t)(T * (N / 4)));
    check("a + b invariant violations", (uint64_t)atomic_load(&invariant_broken), 0);
    check("a", (uint64_t)plain_a, (uint64_t)(T * (N / 4)));
}

/* ---------------------------------------------------- message passing */

static uint64_t *mp_data;
static atomic_long mp_ready;
static long mp_bad;

static void *mp_producer(void *arg)
{
    (void)arg;
    for (long i = 0; i < N / 4; i++) {
        mp_data[i] = mix((uint64_t)i) | 1;
        atomic_store_explicit(&mp_ready, i + 1, memory_order_release);
    }
    return NULL;
}

static void *mp_consumer(void *arg)
{
    (void)arg;
    for (long i = 0; i < N / 4; i++) {
        SPIN_UNTIL(atomic_load_explicit(&mp_ready, memory_order_acquire) > i);
        if (mp_data[i] != (mix((uint64_t)i) | 1))
            mp_bad++;
    }
    return NULL;
}

static void *mp_role(void *arg) { return (intptr_t)arg ? mp_consumer(arg) : mp_producer(arg); }

static void test_message_passing(void)
{
    printf("-- release/acquire message passing (%ld messages) --\n", N / 4);
    mp_data = calloc((size_t)(N / 4 + 1), sizeof *mp_data);
    run_threads(mp_role, 2);
    check("messages seen before their data", (uint64_t)mp_bad, 0);
    free(mp_data);
}

/* ----------------------------------------------------- store buffering */

struct spin_barrier {
    atomic_int count;
    atomic_int gen;
};

static void spin_barrier_wait(struct spin_barrier *b, int n)
{
    int gen = atomic_load(&b->gen);
    if (atomic_fetch_add(&b->count, 1) == n - 1) {
        atomic_store(&b->count, 0);
        atomic_store(&b->gen, gen + 1);
    } else {
        SPIN_UNTIL(atomic_load(&b->gen) != gen);
    }
}

static struct spin_barrier sb_bar;
static atomic_int sb_x, sb_y;
static int sb_r[2];
static long sb_forbidden[2];
static int sb_fenced; /* 0: seq_cst accesses, 1: relaxed + seq_cst fence */

static void *sb_thread(void *arg)
{
    long id = (long)(intptr_t)arg;
    atomic_int *mine = id ? &sb_y : &sb_x, *other = id ? &sb_x : &sb_y;
    for (long r = 0; r < N / 10; r++) {
        spin_barrier_wait(&sb_bar, 2);
        if (sb_fenced) {
            atomic_store_explicit(mine, 1, memory_order_relaxed);
            atomic_thread_fence(memory_order_seq_cst);
            sb_r[id] = atomic_load_explicit(other, memory_order_relaxed);
        } else {
            atomic_store(mine, 1);
            sb_r[id] = atomic_load(other);
        }
        spin_barrier_wait(&sb_bar, 2);
        if (id == 0) {
            sb_forbidden[sb_fenced] += sb_r[0] == 0 && sb_r[1] == 0;
            atomic_store(&sb_x, 0);
            atomic_store(&sb_y, 0);
        }
    }
    return NULL;
}

static void test_store_buffering(void)
{
    printf("-- store buffering (%ld rounds each) --\n", N / 10);
    sb_fenced = 0;
    run_threads(sb_thread, 2);
    sb_fenced = 1;
    run_threads(sb_thread, 2);
    check("forbidden r0=r1=0, seq_cst accesses", (uint64_t)sb_forbidden[0], 0);
    check("forbidden r0=r1=0, seq_cst fence", (uint64_t)sb_forbidden[1], 0);
}

/* ------------------------------------------------------------- Peterson */

static atomic_int pet_flag[2], pet_turn;
static long pet_counter;
static atomic_int pet_inside;
static atomic_long pet_overlap;

static void *peterson(void *arg)
{
    int id = (int)(intptr_t)arg, other = 1 - id;
    for (long i = 0; i < N / 4; i++) {
        atomic_store(&pet_flag[id], 1);
        atomic_store(&pet_turn, other);
        SPIN_UNTIL(!atomic_load(&pet_flag[other]) || atomic_load(&pet_turn) != other);
        if (atomic_fetch_add_explicit(&pet_inside, 1, memory_order_relaxed) != 0)
            atomic_fetch_add(&pet_overlap, 1);
        pet_counter++;
        atomic_fetch_sub_explicit(&pet_inside, 1, memory_order_relaxed);
        atomic_store(&pet_flag[id], 0);
    }
    return NULL;
}

static void test_peterson(void)
{
    printf("-- Peterson's lock (2 threads x %ld) --\n", N / 4);
    run_threads(peterson, 2);
    check("counter under Peterson's lock", (uint64_t)pet_counter, (uint64_t)(2 * (N / 4)));
    check("both inside at once", (uint64_t)atomic_load(&pet_overlap), 0);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        T = atol(argv[1]);
    if (argc > 2)
        N = atol(argv[2]);
    if (T < 2 || T > 16 || N < 0) {
        fprintf(stderr, "usage: threads_atomics [T (2..16) [N]]\n");
        return 2;
    }
    printf("threads_atomics: T=%ld N=%ld\n", T, N);
    test_counters();
    test_stack();
    test_spinlock();
    test_message_passing();
    test_store_buffering();
    test_peterson();
    printf("threads_atomics: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
