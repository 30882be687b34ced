/*
 * setjmp: non-local jumps.
 *
 *  - longjmp out of a deep call chain back to main, with the value carried;
 *  - longjmp(env, 0) arriving as 1;
 *  - nested setjmp buffers (inner handler re-throws to the outer one);
 *  - a small exception-like try/throw stack used in a loop;
 *  - volatile locals and callee-saved registers (integer and FP) survive;
 *  - sigsetjmp/siglongjmp with savemask=1 restoring the signal mask.
 * Prints the sequence of events; exits 1 if anything is out of order.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>

static int failures;
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            failures++;                                                        \
            printf("FAIL line %d: %s\n", __LINE__, #cond);                     \
        }                                                                      \
    } while (0)

static jmp_buf top;
static int trace_depth;

__attribute__((noinline)) static void dive(int n, int val)
{
    volatile char pad[64];
    pad[n % 64] = (char)n;
    trace_depth = n;
    if (n < 0)
        return;
    if (n == 0)
        longjmp(top, val);
    dive(n - 1, val);
    pad[0]++; /* not reached */
}

/* try/throw stack */
static jmp_buf *handlers[16];
static int nhandlers;

__attribute__((noinline)) static void throw_(int code)
{
    if (nhandlers == 0) {
        printf("uncaught %d\n", code);
        failures++;
        return;
    }
    longjmp(*handlers[--nhandlers], code);
}

__attribute__((noinline)) static int risky(int i)
{
    if (i % 3 == 0)
        throw_(100 + i);
    if (i % 5 == 0) {
        jmp_buf inner;
        int code = setjmp(inner);
        if (code == 0) {
            handlers[nhandlers++] = &inner;
            throw_(200 + i); /* caught by the inner handler */
        }
        printf("  inner caught %d, rethrowing %d\n", code, code + 1000);
        throw_(code + 1000); /* goes to the outer handler */
    }
    return i * i;
}

__attribute__((noinline)) static double fp_work(double x)
{
    return x * 1.5 + 0.25;
}

int main(void)
{
    /* 1. deep longjmp with value */
    volatile int stage = 0;
    int r = setjmp(top);
    if (r == 0) {
        stage = 1;
        dive(1000, 42);
        CHECK(!"dive returned");
    }
    printf("returned from setjmp with %d after depth reached %d, stage=%d\n", r, trace_depth, stage);
    CHECK(r == 42 && trace_depth == 0 && stage == 1);

    /* 2. longjmp(env, 0) delivers 1 */
    static volatile int count;
    count = 0;
    r = setjmp(top);
    count++;
    if (count == 1)
        longjmp(top, 0);
    printf("longjmp(env,0) -> setjmp returned %d (count=%d)\n", r, count);
    CHECK(r == 1 && count == 2);

    /* 3. try/throw in a loop, nested handlers */
    volatile int caught = 0, normal = 0;
    volatile long sum = 0;
    for (volatile int i = 1; i <= 15; i++) {
        jmp_buf h;
        volatile int vi = i;
        int code = setjmp(h);
        if (code == 0) {
            handlers[nhandlers++] = &h;
            sum += risky(vi);
            nhandlers--;
            normal++;
        } else {
            printf("  iteration %d caught %d\n", vi, code);
            caught++;
            sum += code;
        }
    }
    printf("normal=%d caught=%d sum=%ld handlers left=%d\n", normal, caught, sum, nhandlers);
    CHECK(normal == 8 && caught == 7 && nhandlers == 0);
    CHECK(sum == (1 + 4 + 16 + 49 + 64 + 121 + 169 + 196) +
                     (103 + 106 + 109 + 112 + 115) + (1205 + 1210));

    /* 4. callee-saved state across a longjmp */
    volatile double fv = 2.0;
    volatile long lv = 5;
    r = setjmp(top);
    if (r < 10) {
        fv = fp_work(fv);
        lv = lv * 3;
        longjmp(top, r + 1);
    }
    printf("after 10 jumps: fv=%.17g lv=%ld r=%d\n", fv, lv, r);
    CHECK(r == 10 && lv == 295245);

    /* 5. sigsetjmp/siglongjmp restores the signal mask */
    sigjmp_buf sj;
    sigset_t block, cur;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    if (sigsetjmp(sj, 1) == 0) {
        sigprocmask(SIG_BLOCK, &block, NULL);
        sigprocmask(SIG_SETMASK, NULL, &cur);
        printf("in sigsetjmp body: SIGUSR1 blocked=%d\n", sigismember(&cur, SIGUSR1));
        siglongjmp(sj, 7);
    }
    sigprocmask(SIG_SETMASK, NULL, &cur);
    printf("after siglongjmp: SIGUSR1 blocked=%d\n", sigismember(&cur, SIGUSR1));
    CHECK(!sigismember(&cur, SIGUSR1));

    printf("setjmp: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
