/*
 * sigprocs: signals between processes and around blocking calls.
 *
 *  1. SIGCHLD handler with si_code/si_status for an exiting child;
 *  2. kill() of a child blocked in pause(): default action (SIGTERM) and a
 *     child that catches SIGUSR1 in pause() (EINTR) and exits with a status;
 *  3. a read of an empty pipe interrupted by alarm(): EINTR without
 *     SA_RESTART, restarted (and completed by a later write) with SA_RESTART;
 *  4. sigsuspend woken by a child's kill(getppid(), SIGUSR2);
 *  5. a storm of 100,000 signals sent to itself (handler counts every one,
 *     as the standard signal is blocked while its handler runs and never
 *     pending twice);
 *  6. getitimer after setitimer; alarm(0) returns the seconds left;
 *  7. a child whose handler returns into garbage dies with SIGSEGV;
 *  8. kill(0, sig) to the process group (of a child in its own group),
 *     kill(-1, 0) succeeds, bad pids and signal numbers fail.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

static volatile sig_atomic_t chld_code, chld_status, chld_count, usr1, usr2, alrm, storm;

static void on_chld(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    chld_code = si->si_code;
    chld_status = si->si_status;
    chld_count++;
}

static void on_usr1(int sig) { (void)sig; usr1++; }
static void on_usr2(int sig) { (void)sig; usr2++; }
static void on_alrm(int sig) { (void)sig; alrm++; }
static void on_storm(int sig) { (void)sig; storm++; }
static void bad_return(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    (void)si;
    /* Return into garbage: the interrupted pc becomes an unmapped address. */
    ucontext_t *uc = ucv;
    uc->uc_mcontext.__gregs[REG_PC] = 0x10;
}

static void show(const char *what, int st)
{
    if (WIFEXITED(st))
        printf("%s: exited %d\n", what, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        printf("%s: signaled %d\n", what, WTERMSIG(st));
    fflush(stdout);
}

static void handle(int sig, void (*h)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int st;

    /* 1 */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_chld;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(7);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    /* The handler may run just before or just after waitpid returns. */
    for (int i = 0; i < 1000 && chld_count == 0; i++)
        usleep(1000);
    printf("1. SIGCHLD count=%d code=%d (CLD_EXITED=%d) status=%d\n", (int)chld_count,
           (int)chld_code, CLD_EXITED, (int)chld_status);
    show("   child", st);
    signal(SIGCHLD, SIG_DFL);

    /* 2 */
    pid = fork();
    if (pid == 0) {
        pause();
        _exit(1);
    }
    usleep(20000);
    kill(pid, SIGTERM);
    waitpid(pid, &st, 0);
    show("2. pause + SIGTERM", st);
    handle(SIGUSR2, on_usr2, 0); /* before the child can send it */
    pid = fork();
    if (pid == 0) {
        handle(SIGUSR1, on_usr1, 0);
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGUSR1);
        sigprocmask(SIG_BLOCK, &block, &old);
        kill(getppid(), SIGUSR2); /* ready */
        int r = sigsuspend(&old);
        _exit(r == -1 && errno == EINTR && usr1 == 1 ? 42 : 1);
    }
    sigset_t none;
    sigemptyset(&none);
    while (!usr2)
        sigsuspend(&none);
    kill(pid, SIGUSR1);
    waitpid(pid, &st, 0);
    show("   sigsuspend in child + SIGUSR1", st);
    printf("4. sigsuspend woken by the child's SIGUSR2: %d\n", (int)usr2);

    /* 3 */
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    handle(SIGALRM, on_alrm, 0);
    struct itimerval it = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &it, NULL);
    char c;
    errno = 0;
    ssize_t n = read(fds[0], &c, 1);
    printf("3. read interrupted: n=%zd errno=%s alrm=%d\n", n, strerror(errno), (int)alrm);
    handle(SIGALRM, on_alrm, SA_RESTART);
    pid = fork();
    if (pid == 0) {
        usleep(100000);
        if (write(fds[1], "x", 1) != 1)
            _exit(2);
        _exit(0);
    }
    setitimer(ITIMER_REAL, &it, NULL);
    n = read(fds[0], &c, 1);
    printf("   with SA_RESTART: n=%zd c=%c alrm=%d\n", n, n == 1 ? c : '?', (int)alrm);
    waitpid(pid, &st, 0);

    /* 5 */
    handle(SIGUSR1, on_storm, 0);
    for (int i = 0; i < 100000; i++)
        raise(SIGUSR1);
    printf("5. storm: %d handled\n", (int)storm);

    /* 6 */
    struct itimerval big = {{0, 0}, {100, 0}}, cur;
    setitimer(ITIMER_REAL, &big, NULL);
    getitimer(ITIMER_REAL, &cur);
    printf("6. getitimer: value in (99,100]s: %d interval=%ld\n",
           cur.it_value.tv_sec >= 99 && cur.it_value.tv_sec <= 100, (long)cur.it_interval.tv_sec);
    printf("   alarm(0) returns %u\n", alarm(0));
    errno = 0;
    printf("   setitimer(bad which): %d %s\n", setitimer(77, &big, NULL), strerror(errno));

    /* 7 */
    pid = fork();
    if (pid == 0) {
        struct sigaction bad;
        memset(&bad, 0, sizeof bad);
        bad.sa_sigaction = bad_return;
        bad.sa_flags = SA_SIGINFO;
        sigaction(SIGUSR2, &bad, NULL);
        raise(SIGUSR2);
        _exit(3);
    }
    waitpid(pid, &st, 0);
    show("7. handler into garbage", st);

    /* 8 */
    pid = fork();
    if (pid == 0) {
        /* In a group of its own, so kill(0) reaches nobody else. */
        setpgid(0, 0);
        handle(SIGUSR1, on_usr1, 0);
        usr1 = 0;
        int r = kill(0, SIGUSR1);
        printf("8. kill(0, SIGUSR1)=%d handled=%d\n", r, (int)usr1);
        _exit(0);
    }
    waitpid(pid, &st, 0);
    printf("   kill(-1, 0)=%d\n", kill(-1, 0));
    errno = 0;
    printf("   kill(bad pid): %d %s\n", kill(99999, SIGUSR1), strerror(errno));
    errno = 0;
    printf("   kill(bad sig): %d %s\n", kill(getpid(), 99), strerror(errno));
    return 0;
}
