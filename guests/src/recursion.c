/*
 * recursion: deep and wide call stacks.
 *
 *  - a non-tail recursion 100000 frames deep with a few locals per frame
 *    (32-byte frames, about 3.2 MB of stack; must fit the default 8 MiB guest stack);
 *  - recursion with 1 KiB frames 4000 deep (touches ~4 MiB of stack pages);
 *  - Ackermann A(2,3), A(3,7) (hundreds of thousands of calls, depth ~1000);
 *  - naive Fibonacci and mutual recursion through function pointers.
 * Optional argv[1]: depth for the first test (default 100000).
 * Prints results; exits 1 if any is wrong.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void check(const char *name, uint64_t got, uint64_t want)
{
    int ok = got == want;
    failures += !ok;
    printf("%-24s = %" PRIu64 " %s\n", name, got, ok ? "ok" : "FAIL");
    if (!ok)
        printf("%-24s   expected %" PRIu64 "\n", "", want);
}

__attribute__((noinline)) static uint64_t deep(uint64_t n, uint64_t acc)
{
    volatile uint64_t local[2];
    local[0] = n * 3 + 1;
    local[1] = acc ^ n;
    if (n == 0)
        return local[0] + local[1];
    uint64_t r = deep(n - 1, acc * 31 + n);
    return r + local[0] - (local[1] & 0xff);
}

static uint64_t deep_ref(uint64_t n)
{
    /* the same computation iteratively */
    uint64_t *accs = malloc((n + 1) * sizeof *accs);
    uint64_t acc = 7;
    for (uint64_t i = n;; i--) {
        accs[i] = acc;
        if (i == 0)
            break;
        acc = acc * 31 + i;
    }
    uint64_t r = 1 + (accs[0] ^ 0);
    for (uint64_t i = 1; i <= n; i++)
        r = r + (i * 3 + 1) - ((accs[i] ^ i) & 0xff);
    free(accs);
    return r;
}

__attribute__((noinline)) static uint64_t big_frames(int n)
{
    volatile unsigned char buf[1024];
    for (int i = 0; i < 1024; i += 64)
        buf[i] = (unsigned char)(n + i);
    if (n == 0)
        return buf[0];
    uint64_t r = big_frames(n - 1);
    return r + buf[64] + buf[1024 - 64];
}

__attribute__((noinline)) static uint64_t ack(uint64_t m, uint64_t n, uint64_t *calls)
{
    ++*calls;
    if (m == 0)
        return n + 1;
    if (n == 0)
        return ack(m - 1, 1, calls);
    return ack(m - 1, ack(m, n - 1, calls), calls);
}

__attribute__((noinline)) static uint64_t fib(unsigned n)
{
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

typedef int (*parity_fn)(unsigned);
static int is_even(unsigned n);
static int is_odd(unsigned n);
static volatile parity_fn even_p = is_even, odd_p = is_odd;
__attribute__((noinline)) static int is_even(unsigned n) { return n == 0 ? 1 : odd_p(n - 1); }
__attribute__((noinline)) static int is_odd(unsigned n) { return n == 0 ? 0 : even_p(n - 1); }

int main(int argc, char **argv)
{
    uint64_t depth = argc > 1 ? strtoull(argv[1], NULL, 0) : 100000;
    check("deep recursion", deep(depth, 7), deep_ref(depth));
    uint64_t bf_want = 0;
    for (int n = 1; n <= 4000; n++)
        bf_want += (unsigned char)(n + 64) + (unsigned char)(n + 1024 - 64);
    check("1KiB frames x4000", big_frames(4000), bf_want);
    uint64_t calls = 0;
    check("A(2,3)", ack(2, 3, &calls), 9);
    printf("  calls=%" PRIu64 "\n", calls);
    calls = 0;
    check("A(3,7)", ack(3, 7, &calls), 1021);
    printf("  calls=%" PRIu64 "\n", calls);
    check("fib(27)", fib(27), 196418);
    check("is_even(10001) mutual", (uint64_t)even_p(10001), 0);
    check("is_odd(20001) mutual", (uint64_t)odd_p(20001), 1);
    printf("recursion: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
