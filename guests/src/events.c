/*
 * events: every event-loop mechanism, single- and multi-threaded.
 *
 * Usage: events [ROUNDS [FILE]]   ROUNDS = epoll ping-pong round trips (default
 * 2000), FILE = a regular file (default guests/data/input.txt)
 *
 *  - epoll on a pipe: level-triggered (reported again until drained),
 *    edge-triggered (reported once per new write), EPOLLONESHOT (once, then
 *    re-armed with EPOLL_CTL_MOD), EPOLLOUT on the write end, EPOLLHUP when the
 *    writer closes, the user data coming back, a zero and a short timeout,
 *    EPOLL_CTL_DEL and the errors of epoll_ctl (EEXIST, ENOENT, EBADF, EINVAL,
 *    EPERM for a regular file, EFAULT) and epoll_wait (EINVAL);
 *  - eventfd: counter semantics, EFD_SEMAPHORE, EFD_NONBLOCK (EAGAIN), short
 *    reads (EINVAL), a blocking read woken by another thread;
 *  - timerfd: one-shot and periodic timers, timerfd_gettime, expirations read
 *    as a count (at least one), a non-blocking read before expiry (EAGAIN),
 *    a disarmed timer, TFD_TIMER_ABSTIME, bad clocks and flags;
 *  - ppoll and pselect6 on pipes, eventfds and timerfds: readiness, timeouts,
 *    POLLNVAL for a closed descriptor, EBADF from select;
 *  - two threads playing ping-pong through two pipes with epoll_wait(-1), and
 *    a thread parked in epoll_wait that another thread wakes after a sleep.
 *
 * Times are never printed. Exits 1 if any check failed.
 *
 * guest-cflags: -pthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, what)                                                      \
    do {                                                                       \
        if (cond) {                                                            \
            printf("ok   %s\n", what);                                         \
        } else {                                                               \
            printf("FAIL %s (errno %d)\n", what, errno);                       \
            failures++;                                                        \
        }                                                                      \
    } while (0)

static int wait_n(int ep, int timeout, struct epoll_event *ev, int max)
{
    int n;
    do {
        n = epoll_wait(ep, ev, max, timeout);
    } while (n < 0 && errno == EINTR);
    return n;
}

static const char *regular_file = "guests/data/input.txt";

static void test_epoll_pipe(void)
{
    int p[2];
    struct epoll_event ev, out[4];
    char buf[64];
    pipe2(p, O_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0, "epoll_create1");
    CHECK(fcntl(ep, F_GETFD) == FD_CLOEXEC, "epoll_create1 EPOLL_CLOEXEC");
    CHECK(epoll_create1(1) < 0 && errno == EINVAL, "epoll_create1 bad flags: EINVAL");

    ev.events = EPOLLIN;
    ev.data.u64 = 0x1122334455667788ULL;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0, "ctl add level-triggered");
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) < 0 && errno == EEXIST, "ctl add twice: EEXIST");
    CHECK(wait_n(ep, 0, out, 4) == 0, "empty pipe: nothing ready");
    CHECK(wait_n(ep, 20, out, 4) == 0, "20 ms timeout: nothing ready");
    write(p[1], "ab", 2);
    int n = wait_n(ep, -1, out, 4);
    CHECK(n == 1 && out[0].events == EPOLLIN && out[0].data.u64 == 0x1122334455667788ULL,
          "level: readable with its data");
    CHECK(wait_n(ep, 0, out, 4) == 1, "level: reported again while not drained");
    read(p[0], buf, 1);
    CHECK(wait_n(ep, 0, out, 4) == 1, "level: still one byte");
    read(p[0], buf, 1);
    CHECK(wait_n(ep, 0, out, 4) == 0, "level: drained");

    ev.events = EPOLLIN | EPOLLET;
    ev.data.fd = p[0];
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0, "ctl mod to edge-triggered");
    write(p[1], "x", 1);
    CHECK(wait_n(ep, 0, out, 4) == 1 && out[0].data.fd == p[0], "edge: reported");
    CHECK(wait_n(ep, 0, out, 4) == 0, "edge: not again without a new write");
    write(p[1], "y", 1);
    CHECK(wait_n(ep, 0, out, 4) == 1, "edge: a new write reports again");
    while (read(p[0], buf, sizeof buf) > 0) {
    }

    ev.events = EPOLLIN | EPOLLONESHOT;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0, "ctl mod to one-shot");
    write(p[1], "z", 1);
    CHECK(wait_n(ep, 0, out, 4) == 1, "one-shot: reported");
    CHECK(wait_n(ep, 0, out, 4) == 0, "one-shot: disabled after that");
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0, "one-shot: re-armed");
    CHECK(wait_n(ep, 0, out, 4) == 1, "one-shot: reported again after re-arming");
    read(p[0], buf, sizeof buf);

    ev.events = EPOLLOUT;
    ev.data.u32 = 7;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &ev) == 0, "ctl add write end");
    n = wait_n(ep, 0, out, 4);
    CHECK(n == 1 && out[0].events == EPOLLOUT && out[0].data.u32 == 7, "write end writable");
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL) == 0, "ctl del");
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL) < 0 && errno == ENOENT, "ctl del again: ENOENT");

    ev.events = EPOLLIN;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0, "back to level-triggered");
    close(p[1]);
    n = wait_n(ep, 0, out, 4);
    CHECK(n == 1 && (out[0].events & EPOLLHUP), "writer closed: EPOLLHUP");

    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, 999, &ev) < 0 && errno == EBADF, "ctl bad fd: EBADF");
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev) < 0 && errno == EINVAL, "ctl add itself: EINVAL");
    CHECK(epoll_ctl(p[0], EPOLL_CTL_ADD, ep, &ev) < 0 && errno == EINVAL, "ctl on a non-epoll fd: EINVAL");
    CHECK(epoll_ctl(ep, 42, p[0], &ev) < 0 && errno == EINVAL, "ctl bad op: EINVAL");
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], (void *)8) < 0 && errno == EFAULT, "ctl bad pointer: EFAULT");
    int f = open(regular_file, O_RDONLY);
    CHECK(f >= 0, "open a regular file");
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, f, &ev) < 0 && errno == EPERM, "ctl regular file: EPERM");
    close(f);
    CHECK(epoll_wait(ep, out, 0, 0) < 0 && errno == EINVAL, "wait maxevents 0: EINVAL");
    CHECK(epoll_wait(p[0], out, 4, 0) < 0 && errno == EINVAL, "wait on a non-epoll fd: EINVAL");
    CHECK(epoll_wait(ep, (void *)16, 4, 0) < 0 && errno == EFAULT, "wait bad buffer: EFAULT");
    close(p[0]);
    close(ep);
}

static void test_eventfd(void)
{
    uint64_t v = 0;
    int e = eventfd(3, EFD_NONBLOCK);
    CHECK(e >= 0, "eventfd");
    CHECK(read(e, &v, 8) == 8 && v == 3, "eventfd: initial value read");
    CHECK(read(e, &v, 8) < 0 && errno == EAGAIN, "eventfd: empty, non-blocking: EAGAIN");
    v = 5;
    write(e, &v, 8);
    v = 6;
    write(e, &v, 8);
    CHECK(read(e, &v, 8) == 8 && v == 11, "eventfd: writes add up");
    CHECK(read(e, &v, 4) < 0 && errno == EINVAL, "eventfd: short read: EINVAL");
    v = UINT64_MAX;
    CHECK(write(e, &v, 8) < 0 && errno == EINVAL, "eventfd: writing 2^64-1: EINVAL");
    close(e);
    e = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC);
    CHECK(read(e, &v, 8) == 8 && v == 1, "semaphore: reads 1");
    CHECK(read(e, &v, 8) == 8 && v == 1, "semaphore: reads 1 again");
    CHECK(read(e, &v, 8) < 0 && errno == EAGAIN, "semaphore: then empty");
    CHECK(fcntl(e, F_GETFD) == FD_CLOEXEC, "eventfd EFD_CLOEXEC");
    close(e);
    CHECK(eventfd(0, 0x40000000) < 0 && errno == EINVAL, "eventfd bad flags: EINVAL");
}

static void test_timerfd(void)
{
    struct itimerspec its, cur;
    uint64_t n = 0;
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    CHECK(t >= 0, "timerfd_create");
    CHECK(read(t, &n, 8) < 0 && errno == EAGAIN, "unarmed timer: EAGAIN");
    memset(&its, 0, sizeof its);
    its.it_value.tv_nsec = 5 * 1000 * 1000;
    its.it_interval.tv_nsec = 5 * 1000 * 1000;
    CHECK(timerfd_settime(t, 0, &its, NULL) == 0, "timerfd_settime periodic 5 ms");
    CHECK(timerfd_gettime(t, &cur) == 0 && cur.it_interval.tv_nsec == 5000000 &&
              cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec <= 5000000,
          "timerfd_gettime");
    struct pollfd pf = {t, POLLIN, 0};
    CHECK(poll(&pf, 1, 1000) == 1 && pf.revents == POLLIN, "poll: timer expired");
    CHECK(read(t, &n, 8) == 8 && n >= 1, "read: at least one expiration");
    struct timespec ts = {0, 12 * 1000 * 1000};
    nanosleep(&ts, NULL);
    CHECK(read(t, &n, 8) == 8 && n >= 2, "read after 12 ms: at least two expirations");
    memset(&its, 0, sizeof its);
    struct itimerspec old;
    CHECK(timerfd_settime(t, 0, &its, &old) == 0 && old.it_interval.tv_nsec == 5000000,
          "disarm returns the old setting");
    CHECK(timerfd_gettime(t, &cur) == 0 && cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0,
          "disarmed");
    close(t);

    /* A blocking one-shot timer with an absolute deadline. */
    t = timerfd_create(CLOCK_MONOTONIC, 0);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    memset(&its, 0, sizeof its);
    its.it_value = now;
    its.it_value.tv_nsec += 10 * 1000 * 1000;
    if (its.it_value.tv_nsec >= 1000000000) {
        its.it_value.tv_sec++;
        its.it_value.tv_nsec -= 1000000000;
    }
    CHECK(timerfd_settime(t, TFD_TIMER_ABSTIME, &its, NULL) == 0, "absolute one-shot");
    CHECK(read(t, &n, 8) == 8 && n == 1, "blocking read: one expiration");
    struct timespec after;
    clock_gettime(CLOCK_MONOTONIC, &after);
    CHECK(after.tv_sec > its.it_value.tv_sec ||
              (after.tv_sec == its.it_value.tv_sec && after.tv_nsec >= its.it_value.tv_nsec),
          "not before its deadline");
    its.it_value.tv_nsec = 2000000000L;
    CHECK(timerfd_settime(t, 0, &its, NULL) < 0 && errno == EINVAL, "tv_nsec out of range: EINVAL");
    CHECK(timerfd_settime(t, 0, (void *)8, NULL) < 0 && errno == EFAULT, "bad pointer: EFAULT");
    close(t);
    CHECK(timerfd_create(12345, 0) < 0 && errno == EINVAL, "bad clock: EINVAL");
    CHECK(timerfd_create(CLOCK_MONOTONIC, 1) < 0 && errno == EINVAL, "bad flags: EINVAL");
    int p[2];
    pipe(p);
    CHECK(timerfd_gettime(p[0], &cur) < 0 && errno == EINVAL, "gettime on a pipe: EINVAL");
    close(p[0]);
    close(p[1]);
}

static void test_poll_select(void)
{
    int p[2];
    pipe(p);
    int e = eventfd(0, 0);
    struct pollfd pf[3] = {{p[0], POLLIN, 0}, {p[1], POLLOUT, 0}, {e, POLLIN, 0}};
    CHECK(poll(pf, 3, 0) == 1 && pf[1].revents == POLLOUT && pf[0].revents == 0, "poll: only the write end");
    struct timespec ts = {0, 15 * 1000 * 1000};
    CHECK(ppoll(pf, 1, &ts, NULL) == 0, "ppoll: 15 ms timeout");
    uint64_t one = 1;
    write(e, &one, 8);
    write(p[1], "q", 1);
    ts.tv_sec = 5;
    ts.tv_nsec = 0;
    CHECK(ppoll(pf, 3, &ts, NULL) == 3, "ppoll: three ready");
    struct pollfd bad = {12345, POLLIN, 0};
    CHECK(poll(&bad, 1, 0) == 1 && bad.revents == POLLNVAL, "poll: closed descriptor POLLNVAL");
    struct pollfd neg = {-1, POLLIN, 7};
    CHECK(poll(&neg, 1, 0) == 0 && neg.revents == 0, "poll: negative fd ignored");

    fd_set r, w;
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_SET(p[0], &r);
    FD_SET(e, &r);
    FD_SET(p[1], &w);
    int maxfd = (p[0] > e ? p[0] : e);
    if (p[1] > maxfd) maxfd = p[1];
    struct timeval tv = {1, 0};
    CHECK(select(maxfd + 1, &r, &w, NULL, &tv) == 3 && FD_ISSET(p[0], &r) && FD_ISSET(e, &r) &&
              FD_ISSET(p[1], &w),
          "select: three ready");
    char c;
    read(p[0], &c, 1);
    read(e, &one, 8);
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    FD_SET(e, &r);
    tv.tv_sec = 0;
    tv.tv_usec = 10000;
    CHECK(select(maxfd + 1, &r, NULL, NULL, &tv) == 0 && !FD_ISSET(p[0], &r) && !FD_ISSET(e, &r),
          "select: timeout clears the sets");
    /* A closed descriptor below 64: Linux checks only descriptors inside the
       process's descriptor table, whose size depends on what the process
       inherited, so a high number would be ignored on some hosts. */
    int closed = dup(0);
    close(closed);
    FD_ZERO(&r);
    FD_SET(closed, &r);
    tv.tv_usec = 0;
    CHECK(closed >= 0 && closed < 64 && select(closed + 1, &r, NULL, NULL, &tv) < 0 && errno == EBADF,
          "select: closed fd EBADF");
    CHECK(select(-1, NULL, NULL, NULL, &tv) < 0 && errno == EINVAL, "select: negative nfds EINVAL");
    struct timespec pts = {0, 5 * 1000 * 1000};
    CHECK(pselect(0, NULL, NULL, NULL, &pts, NULL) == 0, "pselect: a plain 5 ms sleep");
    close(p[0]);
    close(p[1]);
    close(e);
}

/* Ping-pong: each side waits in epoll_wait(-1) for its pipe, reads a counter
 * and writes it + 1 to the other side. */
struct side {
    int in, out, rounds, last;
};

static void *pong(void *arg)
{
    struct side *s = arg;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s->in}, out;
    epoll_ctl(ep, EPOLL_CTL_ADD, s->in, &ev);
    for (int i = 0; i < s->rounds; i++) {
        if (wait_n(ep, -1, &out, 1) != 1) {
            s->last = -1;
            break;
        }
        int v;
        if (read(s->in, &v, sizeof v) != sizeof v) {
            s->last = -2;
            break;
        }
        s->last = v;
        v++;
        write(s->out, &v, sizeof v);
    }
    close(ep);
    return NULL;
}

static int waker_fd;
static void *late_waker(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    uint64_t one = 1;
    write(waker_fd, &one, 8);
    return NULL;
}

static void test_threads(int rounds)
{
    int a[2], b[2];
    pipe(a);
    pipe(b);
    struct side s = {b[0], a[1], rounds, 0};
    pthread_t t;
    pthread_create(&t, NULL, pong, &s);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = a[0]}, out;
    epoll_ctl(ep, EPOLL_CTL_ADD, a[0], &ev);
    int v = 0, ok = 1;
    write(b[1], &v, sizeof v);
    for (int i = 0; i < rounds; i++) {
        if (wait_n(ep, -1, &out, 1) != 1 || read(a[0], &v, sizeof v) != sizeof v || v != 2 * i + 1) {
            ok = 0;
            break;
        }
        v++;
        if (i + 1 < rounds) write(b[1], &v, sizeof v);
    }
    pthread_join(t, NULL);
    printf("ping-pong: %d rounds, last value %d\n", rounds, s.last);
    CHECK(ok && s.last == 2 * rounds - 2, "ping-pong through epoll between two threads");
    close(ep);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);

    waker_fd = eventfd(0, 0);
    ep = epoll_create1(0);
    ev.events = EPOLLIN;
    ev.data.u32 = 99;
    epoll_ctl(ep, EPOLL_CTL_ADD, waker_fd, &ev);
    pthread_create(&t, NULL, late_waker, NULL);
    int n = wait_n(ep, 5000, &out, 1);
    CHECK(n == 1 && out.data.u32 == 99, "epoll_wait parked until another thread writes");
    pthread_join(t, NULL);
    uint64_t got = 0;
    pthread_create(&t, NULL, late_waker, NULL);
    read(waker_fd, &got, 8); /* the first write */
    got = 0;
    CHECK(read(waker_fd, &got, 8) == 8 && got == 1, "blocking eventfd read woken by another thread");
    pthread_join(t, NULL);
    close(ep);
    close(waker_fd);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 2000;
    if (argc > 2) regular_file = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_epoll_pipe();
    test_eventfd();
    test_timerfd();
    test_poll_select();
    test_threads(rounds);
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures != 0;
}
