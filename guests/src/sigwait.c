/*
 * sigwait: waiting for signals instead of taking them in handlers.
 *
 *  1. rt_sigtimedwait: a pending signal is taken at once (si_code, si_pid); a zero and a
 *     short timeout end with EAGAIN; a signal sent by another thread (kill) or another
 *     process while the caller waits is taken; queued real-time signals come back in
 *     order with their values; a blocked SIGCHLD (ignored by default) is kept and taken;
 *     another, handled signal ends the wait with EINTR; bad arguments fail.
 *  2. signalfd (SFD_NONBLOCK, SFD_CLOEXEC): EAGAIN and not readable with nothing pending;
 *     readable in poll, select and epoll once a signal of its mask is pending; reads return
 *     signalfd_siginfo records and consume the signals (two at once in a big buffer);
 *     the mask of an existing signalfd is changed; a blocking read waits for a signal sent
 *     by another thread; a signal taken by sigtimedwait is no longer readable; a forked
 *     child's copy reports the child's signals and the parent's its own; bad arguments
 *     fail.
 *  3. The temporary mask of ppoll, pselect6 and epoll_pwait: a handled signal the call's
 *     mask unblocks, sent by another thread while the call waits, ends it with EINTR and
 *     runs its handler; the caller's own mask is back afterwards; a ready descriptor
 *     returns at once and leaves a signal pending that only the temporary mask unblocked.
 *
 * Every signal sent by another thread is sent after that thread saw the waiter announce
 * itself, and a signal that arrives before the wait starts gives the same result (it is
 * pending when the wait begins), so the output does not depend on timing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t handled;
static void on_sig(int sig) { (void)sig; handled++; }

struct later {
    int sig;
    int to_thread;
    pthread_t target;
};

/* Sends a signal a little later, from another thread. */
static void *send_later(void *arg)
{
    struct later *l = arg;
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    if (l->to_thread)
        pthread_kill(l->target, l->sig);
    else
        kill(getpid(), l->sig);
    return NULL;
}

static pthread_t later(struct later *l, int sig, int to_thread)
{
    pthread_t t;
    l->sig = sig;
    l->to_thread = to_thread;
    l->target = pthread_self();
    pthread_create(&t, NULL, send_later, l);
    return t;
}

static void block(int how, int a, int b)
{
    sigset_t s;
    sigemptyset(&s);
    if (a)
        sigaddset(&s, a);
    if (b)
        sigaddset(&s, b);
    sigprocmask(how, &s, NULL);
}

static int is_blocked(int sig)
{
    sigset_t s;
    sigprocmask(SIG_BLOCK, NULL, &s);
    return sigismember(&s, sig);
}

static int is_pending(int sig)
{
    sigset_t s;
    sigpending(&s);
    return sigismember(&s, sig);
}

static void timedwait_cases(void)
{
    sigset_t set;
    siginfo_t si;
    struct timespec zero = {0, 0}, short_ = {0, 20 * 1000 * 1000}, long_ = {20, 0};
    pthread_t t;
    struct later l;

    block(SIG_BLOCK, SIGUSR1, SIGUSR2);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    raise(SIGUSR1);
    int r = sigtimedwait(&set, &si, &zero);
    /* (Not si_code of a tgkill'ed signal: qemu reports 0 where Linux has SI_TKILL.) */
    printf("pending: %d own pid %d\n", r, si.si_pid == getpid());
    r = sigtimedwait(&set, &si, &zero);
    printf("zero timeout: %d %s\n", r, strerror(errno));
    r = sigtimedwait(&set, &si, &short_);
    printf("short timeout: %d %s\n", r, strerror(errno));

    /* From another thread, to the process (kill), then to this thread (pthread_kill). */
    sigaddset(&set, SIGUSR2);
    t = later(&l, SIGUSR2, 0);
    r = sigtimedwait(&set, &si, &long_);
    pthread_join(t, NULL);
    printf("from a thread (kill): %d code %d\n", r, si.si_code);
    t = later(&l, SIGUSR1, 1);
    r = sigwaitinfo(&set, &si);
    pthread_join(t, NULL);
    printf("from a thread (pthread_kill): %d\n", r);

    /* From another process. */
    pid_t child = fork();
    if (child == 0) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        kill(getppid(), SIGUSR2);
        _exit(0);
    }
    r = sigwaitinfo(&set, &si);
    printf("from a child: %d code %d its pid %d\n", r, si.si_code, si.si_pid == child);
    waitpid(child, NULL, 0);

    /* Queued real-time signals, in order, with their values. */
    int rt = SIGRTMIN + 2;
    block(SIG_BLOCK, rt, 0);
    for (int i = 1; i <= 3; i++)
        sigqueue(getpid(), rt, (union sigval){.sival_int = i * 10});
    sigemptyset(&set);
    sigaddset(&set, rt);
    for (int i = 0; i < 3; i++) {
        r = sigtimedwait(&set, &si, &zero);
        printf("rt %d: code %d value %d\n", r - SIGRTMIN, si.si_code, si.si_value.sival_int);
    }

    /* A blocked SIGCHLD is kept although its default action ignores it. */
    block(SIG_BLOCK, SIGCHLD, 0);
    child = fork();
    if (child == 0)
        _exit(5);
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    r = sigtimedwait(&set, &si, &long_);
    printf("SIGCHLD: %d code %d status %d its pid %d\n", r, si.si_code, si.si_status,
           si.si_pid == child);
    waitpid(child, NULL, 0);
    block(SIG_UNBLOCK, SIGCHLD, 0);

    /* Another signal, handled and not blocked, ends the wait. */
    signal(SIGALRM, on_sig);
    handled = 0;
    t = later(&l, SIGALRM, 1);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    r = sigtimedwait(&set, &si, &long_);
    pthread_join(t, NULL);
    printf("other signal: %d %s handled %d\n", r, strerror(errno), handled);

    /* Bad arguments. */
    long e = syscall(SYS_rt_sigtimedwait, &set, NULL, &zero, 4);
    printf("sigsetsize 4: %ld %s\n", e, strerror(errno));
    struct timespec bad = {0, 1000 * 1000 * 1000};
    e = syscall(SYS_rt_sigtimedwait, &set, NULL, &bad, 8);
    printf("bad timeout: %ld %s\n", e, strerror(errno));
    e = syscall(SYS_rt_sigtimedwait, (void *)8, NULL, &zero, 8);
    printf("bad set: %ld %s\n", e, strerror(errno));
    fflush(stdout);
}

static void show_record(const char *what, int fd)
{
    struct signalfd_siginfo fi[2];
    ssize_t n = read(fd, fi, sizeof fi);
    if (n < 0) {
        printf("%s: read %s\n", what, strerror(errno));
        return;
    }
    printf("%s: read %zd:", what, n);
    for (ssize_t i = 0; i < n / (ssize_t)sizeof fi[0]; i++)
        printf(" [signo %u code %d own pid %d uid ok %d int %d]", fi[i].ssi_signo,
               fi[i].ssi_code, fi[i].ssi_pid == (unsigned)getpid(),
               fi[i].ssi_uid == getuid(), fi[i].ssi_int);
    printf("\n");
}

static int readable(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, 0);
    return r == 1 && (p.revents & POLLIN);
}

static void signalfd_cases(void)
{
    sigset_t set;
    struct signalfd_siginfo fi;
    block(SIG_BLOCK, SIGUSR1, SIGUSR2);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    printf("signalfd: %d cloexec %d\n", fd >= 0, (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    ssize_t n = read(fd, &fi, sizeof fi);
    printf("nothing pending: %zd %s readable %d\n", n, strerror(errno), readable(fd));

    kill(getpid(), SIGUSR1);
    printf("after kill: readable %d pending %d\n", readable(fd), is_pending(SIGUSR1));
    show_record("kill", fd);
    printf("after read: readable %d pending %d\n", readable(fd), is_pending(SIGUSR1));

    /* A signal outside the mask does not make it readable, until the mask is changed. */
    raise(SIGUSR2);
    printf("SIGUSR2 outside the mask: readable %d\n", readable(fd));
    sigaddset(&set, SIGUSR2);
    printf("mask changed: %d\n", signalfd(fd, &set, 0) == fd);
    printf("now: readable %d\n", readable(fd));
    show_record("raise", fd);

    /* Two at once. */
    raise(SIGUSR1);
    sigqueue(getpid(), SIGUSR2, (union sigval){.sival_int = 7});
    show_record("two", fd);

    /* epoll, with the signal from another thread. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 42}, out;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    struct later l;
    pthread_t t = later(&l, SIGUSR1, 0);
    int r = epoll_wait(ep, &out, 1, 20000);
    pthread_join(t, NULL);
    printf("epoll: %d data %llu\n", r, (unsigned long long)out.data.u64);
    show_record("epoll", fd);
    r = epoll_wait(ep, &out, 1, 0);
    printf("epoll after read: %d\n", r);
    close(ep);

    /* select. */
    kill(getpid(), SIGUSR2);
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(fd, &rd);
    struct timeval tv = {20, 0};
    r = select(fd + 1, &rd, NULL, NULL, &tv);
    printf("select: %d set %d\n", r, FD_ISSET(fd, &rd) != 0);
    show_record("select", fd);

    /* Taken by sigtimedwait instead: no longer readable. */
    raise(SIGUSR1);
    struct timespec zero = {0, 0};
    printf("sigtimedwait first: readable %d then %d", readable(fd),
           sigtimedwait(&set, NULL, &zero));
    printf(" readable %d\n", readable(fd));

    /* A blocking signalfd waits for a signal from another thread. */
    int bfd = signalfd(-1, &set, 0);
    t = later(&l, SIGUSR2, 1);
    show_record("blocking", bfd);
    pthread_join(t, NULL);

    /* A forked child's copy reports the child's signals (pending signals are not
     * inherited), and the parent's copy still reports the parent's. */
    raise(SIGUSR2);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        int before = readable(fd);
        kill(getpid(), SIGUSR1);
        int after = readable(fd);
        n = read(fd, &fi, sizeof fi);
        printf("forked child: readable %d then %d, read %zd signo %u own pid %d\n", before,
               after, n, fi.ssi_signo, fi.ssi_pid == (unsigned)getpid());
        fflush(stdout);
        _exit(0);
    }
    waitpid(child, NULL, 0);
    printf("parent after the fork: readable %d\n", readable(fd));
    show_record("parent's own", fd);

    /* Bad arguments. */
    char small[64];
    raise(SIGUSR1);
    n = read(fd, small, sizeof small);
    printf("small buffer: %zd %s\n", n, strerror(errno));
    sigtimedwait(&set, NULL, &zero);
    errno = 0;
    printf("bad flags: %d %s\n", signalfd(-1, &set, 1), strerror(errno));
    /* (Not a sizemask other than 8: qemu accepts it, Linux and vmx refuse it.) */
    printf("bad mask: %ld %s\n", syscall(SYS_signalfd4, -1, (void *)8, 8, 0), strerror(errno));
    int p[2];
    pipe(p);
    printf("not a signalfd: %d %s\n", signalfd(p[0], &set, 0), strerror(errno));
    printf("closed fd: %d %s\n", signalfd(999, &set, 0), strerror(errno));
    close(p[0]);
    close(p[1]);
    close(bfd);
    close(fd);
    fflush(stdout);
}

static void masked_wait_cases(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigaction(SIGUSR1, &sa, NULL);
    block(SIG_BLOCK, SIGUSR1, 0);
    sigset_t none;
    sigemptyset(&none);
    int p[2];
    pipe(p);
    struct later l;
    pthread_t t;

    handled = 0;
    t = later(&l, SIGUSR1, 1);
    struct pollfd pf = {p[0], POLLIN, 0};
    struct timespec ts = {20, 0};
    int r = ppoll(&pf, 1, &ts, &none);
    int e = errno;
    pthread_join(t, NULL);
    printf("ppoll: %d %s handled %d blocked after %d\n", r, strerror(e), handled,
           is_blocked(SIGUSR1));

    handled = 0;
    t = later(&l, SIGUSR1, 1);
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(p[0], &rd);
    r = pselect(p[0] + 1, &rd, NULL, NULL, &ts, &none);
    e = errno;
    pthread_join(t, NULL);
    printf("pselect: %d %s handled %d blocked after %d\n", r, strerror(e), handled,
           is_blocked(SIGUSR1));

    handled = 0;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN}, out;
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    t = later(&l, SIGUSR1, 1);
    r = epoll_pwait(ep, &out, 1, 20000, &none);
    e = errno;
    pthread_join(t, NULL);
    printf("epoll_pwait: %d %s handled %d blocked after %d\n", r, strerror(e), handled,
           is_blocked(SIGUSR1));

    /* Something ready: the call returns it, the signal stays pending and blocked. */
    handled = 0;
    write(p[1], "x", 1);
    t = later(&l, SIGUSR1, 1);
    pthread_join(t, NULL);
    r = ppoll(&pf, 1, &ts, &none);
    printf("ppoll ready: %d handled %d pending %d\n", r, handled, is_pending(SIGUSR1));
    r = epoll_pwait(ep, &out, 1, 20000, &none);
    printf("epoll_pwait ready: %d handled %d pending %d\n", r, handled, is_pending(SIGUSR1));
    block(SIG_UNBLOCK, SIGUSR1, 0);
    printf("unblocked: handled %d\n", handled);

    /* A bad mask size. */
    r = syscall(SYS_ppoll, &pf, 1, &ts, &none, 4);
    printf("ppoll sigsetsize 4: %d %s\n", r, strerror(errno));
    r = syscall(SYS_epoll_pwait, ep, &out, 1, 0, (void *)8, 8);
    printf("epoll_pwait bad mask: %d %s\n", r, strerror(errno));
    close(ep);
    close(p[0]);
    close(p[1]);
    fflush(stdout);
}

int main(void)
{
    timedwait_cases();
    signalfd_cases();
    masked_wait_cases();
    return 0;
}
