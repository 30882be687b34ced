/*
 * threads_prodcons: bounded-buffer producers and consumers.
 *
 * Usage: threads_prodcons [P [C [N [B]]]]   P producers (default 3), C
 * consumers (default 3), both at most 32; N items per producer (default
 * 5000); B buffer slots (default 8).
 *
 * A ring buffer guarded by one mutex and two condvars ("not full", "not
 * empty").  Producer p puts the items p*N + 0 .. p*N + N-1 in order; after
 * joining the producers the main thread puts one end marker per consumer.
 * Every consumer keeps a count, a sum, a sum of hashes and a per-producer
 * "last item seen" (the buffer is FIFO, so each consumer must see each
 * producer's items in increasing order).  The main thread combines the
 * consumers' totals, which do not depend on who consumed what, and also checks
 * that every item was consumed exactly once (a bitmap) and that the buffer
 * never held more than B or fewer than 0 items.
 *
 * Printed by the main thread after the joins; exits 1 if any check failed.
 *
 * guest-cflags: -pthread
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;
static void check(const char *what, uint64_t got, uint64_t want)
{
    int ok = got == want;
    failures += !ok;
    printf("%-36s %" PRIu64 "%s\n", what, got, ok ? " ok" : " FAIL");
    if (!ok)
        printf("%-36s expected %" PRIu64 "\n", "", want);
}

static long P = 3, C = 3, N = 5000, B = 8;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER;
static long *buf;
static long head, tail, fill, max_fill, bad_fill;
static unsigned char *seen; /* per item: times consumed */

#define END (-1L)

static uint64_t hash(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void put(long item)
{
    pthread_mutex_lock(&lock);
    while (fill == B)
        pthread_cond_wait(&not_full, &lock);
    buf[tail] = item;
    tail = (tail + 1) % B;
    fill++;
    if (fill > max_fill)
        max_fill = fill;
    if (fill > B)
        bad_fill++;
    pthread_cond_signal(&not_empty);
    pthread_mutex_unlock(&lock);
}

static long get(void)
{
    pthread_mutex_lock(&lock);
    while (fill == 0)
        pthread_cond_wait(&not_empty, &lock);
    long item = buf[head];
    head = (head + 1) % B;
    fill--;
    if (fill < 0)
        bad_fill++;
    if (item != END)
        seen[item]++; /* under the lock */
    pthread_cond_signal(&not_full);
    pthread_mutex_unlock(&lock);
    return item;
}

static void *producer(void *arg)
{
    long p = (long)(intptr_t)arg;
    for (long i = 0; i < N; i++)
        put(p * N + i);
    return NULL;
}

struct totals {
    uint64_t count, sum, hashsum, out_of_order;
    long last[32];
};

static void *consumer(void *arg)
{
    struct totals *t = arg;
    for (long p = 0; p < P; p++)
        t->last[p] = -1;
    for (;;) {
        long item = get();
        if (item == END)
            break;
        long p = item / N;
        if (item <= t->last[p])
            t->out_of_order++;
        t->last[p] = item;
        t->count++;
        t->sum += (uint64_t)item;
        t->hashsum += hash((uint64_t)item);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        P = atol(argv[1]);
    if (argc > 2)
        C = atol(argv[2]);
    if (argc > 3)
        N = atol(argv[3]);
    if (argc > 4)
        B = atol(argv[4]);
    if (P < 1 || P > 32 || C < 1 || C > 32 || N < 0 || B < 1) {
        fprintf(stderr, "usage: threads_prodcons [P (1..32) [C (1..32) [N [B (>=1)]]]]\n");
        return 2;
    }
    printf("threads_prodcons: P=%ld C=%ld N=%ld B=%ld\n", P, C, N, B);
    buf = calloc((size_t)B, sizeof *buf);
    seen = calloc((size_t)(P * N + 1), 1);
    pthread_t prod[32], cons[32];
    struct totals tot[32] = {{0, 0, 0, 0, {0}}};
    for (long c = 0; c < C; c++)
        pthread_create(&cons[c], NULL, consumer, &tot[c]);
    for (long p = 0; p < P; p++)
        pthread_create(&prod[p], NULL, producer, (void *)(intptr_t)p);
    for (long p = 0; p < P; p++)
        pthread_join(prod[p], NULL);
    for (long c = 0; c < C; c++)
        put(END);
    struct totals all = {0, 0, 0, 0, {0}};
    for (long c = 0; c < C; c++) {
        pthread_join(cons[c], NULL);
        all.count += tot[c].count;
        all.sum += tot[c].sum;
        all.hashsum += tot[c].hashsum;
        all.out_of_order += tot[c].out_of_order;
    }
    uint64_t total = (uint64_t)(P * N), want_hash = 0, not_once = 0;
    for (uint64_t i = 0; i < total; i++) {
        want_hash += hash(i);
        not_once += seen[i] != 1;
    }
    check("items consumed", all.count, total);
    check("sum of items", all.sum, total ? total * (total - 1) / 2 : 0);
    printf("%-36s %016" PRIx64 "%s\n", "sum of item hashes", all.hashsum,
           all.hashsum == want_hash ? " ok" : " FAIL");
    failures += all.hashsum != want_hash;
    check("items not consumed exactly once", not_once, 0);
    check("per-producer order violations", all.out_of_order, 0);
    check("buffer over/underflows", (uint64_t)bad_fill, 0);
    check("buffer empty at the end", (uint64_t)fill, 0);
    check("most items buffered <= B", (uint64_t)(max_fill <= B), 1);
    printf("threads_prodcons: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
