/*
 * signals: signal delivery in a single-threaded guest.
 *
 *  1. sigaction with SA_SIGINFO + raise(): si_signo / si_code (SI_TKILL);
 *  2. a blocked signal stays pending (sigpending) and is delivered on unblock;
 *  3. SIGSEGV from a write to a read-only page (SEGV_ACCERR) and a read from
 *     an unmapped page (SEGV_MAPERR), si_addr checked, recovered with
 *     siglongjmp;
 *  4. SIGILL from an all-zero instruction (ILL_ILLOPC, si_addr = pc); the
 *     handler skips the instruction by advancing the pc in the ucontext, and
 *     the integer and FP temporaries set before the trap must survive the
 *     handler (which clobbers them);
 *  5. SIG_IGN, sigaltstack (the handler's locals lie on the alternate stack),
 *     a handler that raises a second signal, SA_RESETHAND, SA_NODEFER;
 *  6. setitimer(ITIMER_REAL, 5 ms) + sigsuspend -> SIGALRM.
 * Prints what happened; exits 1 if anything was unexpected.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>

static int failures;
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            failures++;                                                        \
            printf("FAIL line %d: %s\n", __LINE__, #cond);                     \
        }                                                                      \
    } while (0)

static volatile sig_atomic_t last_sig, last_code, count_usr1, count_usr2, count_alrm;
static void *volatile last_addr;

static void info_handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    last_sig = si->si_signo == sig ? sig : -1;
    last_code = si->si_code;
    if (sig == SIGUSR1)
        count_usr1++;
    if (sig == SIGUSR2)
        count_usr2++;
}

static sigjmp_buf segv_jmp;
static void segv_handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    last_sig = sig;
    last_code = si->si_code;
    last_addr = si->si_addr;
    siglongjmp(segv_jmp, 1);
}

static volatile double clobber_sink;
static void ill_handler(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    last_sig = sig;
    last_code = si->si_code;
    last_addr = si->si_addr;
    /* clobber caller-saved integer and FP registers with real work */
    double acc = 1.0;
    for (int i = 1; i < 50; i++)
        acc = acc * 1.0001 + (double)i / 7.0;
    clobber_sink = acc;
    /* skip the 2-byte illegal instruction */
    uc->uc_mcontext.__gregs[REG_PC] += 2;
}

static volatile uintptr_t alt_lo, alt_hi;
static volatile int on_alt;
static void alt_handler(int sig)
{
    volatile char here;
    (void)sig;
    on_alt = (uintptr_t)&here >= alt_lo && (uintptr_t)&here < alt_hi;
}

static volatile int nested_outer, nested_inner;
static void inner_handler(int sig) { (void)sig; nested_inner = nested_outer + 1; }
static void outer_handler(int sig)
{
    (void)sig;
    nested_outer = 1;
    raise(SIGUSR2); /* delivered immediately: different signal, not blocked */
    nested_outer = 2;
}

static void alrm_handler(int sig) { (void)sig; count_alrm++; }

static volatile int resethand_count;
static void resethand_handler(int sig) { (void)sig; resethand_count++; }

int main(void)
{
    struct sigaction sa;

    /* 1 */
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = info_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    int rc = raise(SIGUSR1);
    printf("1. raise rc=%d handler saw sig=%d code=%d (SI_TKILL=%d) count=%d\n", rc, (int)last_sig,
           (int)last_code, SI_TKILL, (int)count_usr1);
    CHECK(last_sig == SIGUSR1 && last_code == SI_TKILL && count_usr1 == 1);
    kill(getpid(), SIGUSR1);
    printf("   kill(getpid()) code=%d (SI_USER=%d) count=%d\n", (int)last_code, SI_USER, (int)count_usr1);

    /* 2 */
    sigset_t set, pend, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, &old);
    raise(SIGUSR2);
    sigpending(&pend);
    printf("2. blocked: delivered=%d pending=%d\n", (int)count_usr2, sigismember(&pend, SIGUSR2));
    CHECK(count_usr2 == 0 && sigismember(&pend, SIGUSR2));
    sigprocmask(SIG_SETMASK, &old, NULL);
    sigpending(&pend);
    printf("   unblocked: delivered=%d pending=%d\n", (int)count_usr2, sigismember(&pend, SIGUSR2));
    CHECK(count_usr2 == 1);

    /* 3 */
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    char *ro = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(ro, 4096, PROT_READ);
    munmap(ro + 4096, 4096);
    volatile int stage = 0;
    if (sigsetjmp(segv_jmp, 1) == 0) {
        stage = 1;
        ((volatile char *)ro)[123] = 1;
        stage = 99;
    }
    printf("3. write to read-only page: sig=%d code=%d (SEGV_ACCERR=%d) addr ok=%d stage=%d\n", (int)last_sig,
           (int)last_code, SEGV_ACCERR, last_addr == ro + 123, stage);
    CHECK(last_sig == SIGSEGV && last_code == SEGV_ACCERR && last_addr == ro + 123 && stage == 1);
    if (sigsetjmp(segv_jmp, 1) == 0) {
        stage = 2;
        (void)((volatile char *)ro)[4096 + 8];
        stage = 99;
    }
    printf("   read from unmapped page: sig=%d code=%d (SEGV_MAPERR=%d) addr ok=%d stage=%d\n", (int)last_sig,
           (int)last_code, SEGV_MAPERR, last_addr == ro + 4096 + 8, stage);
    CHECK(last_sig == SIGSEGV && last_code == SEGV_MAPERR && stage == 2);
    sigprocmask(SIG_SETMASK, NULL, &set);
    printf("   SIGSEGV unblocked again after siglongjmp: %d\n", !sigismember(&set, SIGSEGV));

    /* 4 */
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = ill_handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGILL, &sa, NULL);
    uint64_t regs[7];
    double fregs[4];
    uintptr_t trap_pc;
    __asm__ volatile("li t0, 0x1111\n\t"
                     "li t1, -2222\n\t"
                     "li t2, 0x3333\n\t"
                     "li t3, 0x4444\n\t"
                     "li t4, 0x5555\n\t"
                     "li t5, 0x6666\n\t"
                     "li t6, 0x7777\n\t"
                     "fcvt.d.l ft0, t0\n\t"
                     "fcvt.d.l ft1, t1\n\t"
                     "fcvt.d.l ft2, t2\n\t"
                     "fcvt.d.l ft3, t3\n\t"
                     ".option push\n\t"
                     ".option norvc\n\t" /* keep auipc+addi at exactly 8 bytes */
                     "auipc %0, 0\n\t"
                     "addi %0, %0, 8\n\t" /* address of the illegal instruction */
                     ".2byte 0\n\t"
                     ".option pop\n\t"
                     "sd t0, 0(%1)\n\t"
                     "sd t1, 8(%1)\n\t"
                     "sd t2, 16(%1)\n\t"
                     "sd t3, 24(%1)\n\t"
                     "sd t4, 32(%1)\n\t"
                     "sd t5, 40(%1)\n\t"
                     "sd t6, 48(%1)\n\t"
                     "fsd ft0, 0(%2)\n\t"
                     "fsd ft1, 8(%2)\n\t"
                     "fsd ft2, 16(%2)\n\t"
                     "fsd ft3, 24(%2)\n\t"
                     : "=&r"(trap_pc)
                     : "r"(regs), "r"(fregs)
                     : "t0", "t1", "t2", "t3", "t4", "t5", "t6", "ft0", "ft1", "ft2", "ft3", "memory");
    printf("4. SIGILL: sig=%d code=%d (ILL_ILLOPC=%d) si_addr==pc: %d\n", (int)last_sig, (int)last_code,
           ILL_ILLOPC, (uintptr_t)last_addr == trap_pc);
    CHECK(last_sig == SIGILL && last_code == ILL_ILLOPC && (uintptr_t)last_addr == trap_pc);
    printf("   registers after handler: %" PRIx64 " %" PRId64 " %" PRIx64 " %" PRIx64 " %" PRIx64 " %" PRIx64
           " %" PRIx64 " | %g %g %g %g\n",
           regs[0], (int64_t)regs[1], regs[2], regs[3], regs[4], regs[5], regs[6], fregs[0], fregs[1], fregs[2],
           fregs[3]);
    CHECK(regs[0] == 0x1111 && (int64_t)regs[1] == -2222 && regs[6] == 0x7777 && fregs[3] == 0x4444);

    /* 5 */
    signal(SIGTERM, SIG_IGN);
    kill(getpid(), SIGTERM);
    printf("5. SIGTERM ignored, still running\n");
    static char altstack[64 * 1024];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    alt_lo = (uintptr_t)altstack;
    alt_hi = alt_lo + sizeof altstack;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = alt_handler;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    printf("   handler ran on the alternate stack: %d\n", on_alt);
    CHECK(on_alt == 1);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = outer_handler;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = inner_handler;
    sigaction(SIGUSR2, &sa, NULL);
    raise(SIGUSR1);
    printf("   nested: outer=%d inner=%d\n", nested_outer, nested_inner);
    CHECK(nested_outer == 2 && nested_inner == 2);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = resethand_handler;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigaction(SIGUSR2, &sa, NULL);
    raise(SIGUSR2);
    struct sigaction now;
    sigaction(SIGUSR2, NULL, &now);
    printf("   SA_RESETHAND: ran %d time(s), disposition now SIG_DFL: %d\n", resethand_count,
           now.sa_handler == SIG_DFL);
    CHECK(resethand_count == 1 && now.sa_handler == SIG_DFL);

    /* 6 */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = alrm_handler;
    sigaction(SIGALRM, &sa, NULL);
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    sigprocmask(SIG_BLOCK, &set, &old);
    struct itimerval it = {{0, 0}, {0, 5000}};
    setitimer(ITIMER_REAL, &it, NULL);
    sigset_t wait_mask = old;
    sigdelset(&wait_mask, SIGALRM);
    while (count_alrm == 0)
        sigsuspend(&wait_mask);
    sigprocmask(SIG_SETMASK, &old, NULL);
    printf("6. SIGALRM from setitimer delivered during sigsuspend: %d\n", (int)count_alrm);
    CHECK(count_alrm == 1);

    printf("signals: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
