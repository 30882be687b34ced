/*
 * pipes: what programs rely on from pipe(2), beyond plain reads and writes.
 *
 * Usage: pipes
 *
 *  - end of file once every writer is closed (after the buffered data), EPIPE
 *    with SIGPIPE (caught, then ignored) once every reader is;
 *  - non-blocking ends: EAGAIN on an empty read and on a full pipe, the
 *    capacity seen by 1-, 100- and 4096-byte writes (Linux's page merging),
 *    a partial non-blocking write, F_GETPIPE_SZ, FIONREAD, F_GETFL/F_SETFL,
 *    FIONBIO, fstat (S_IFIFO), lseek/pread (ESPIPE), a read of the write end;
 *  - readv/writev, dup/dup2/F_DUPFD (one description: O_NONBLOCK shared),
 *    poll POLLHUP/POLLERR, select, /proc/self/fd links;
 *  - PIPE_BUF atomicity: two threads and two processes writing 4096-byte
 *    blocks into one pipe, each block read back whole;
 *  - a 300000-byte blocking write against a slow reader (the data intact),
 *    and one interrupted by a signal once the pipe is full (returns 65536);
 *  - epoll level, edge (once per write) and one-shot on a pipe, EPOLLOUT after
 *    a full pipe is read, EPOLLHUP/EPOLLERR;
 *  - fork: parent and child share both ends; end of file only when the
 *    child's copy of the write end is closed too;
 *  - F_SETPIPE_SZ on a pipe holding data keeps the data and its epoll watch,
 *    and wakes a reader parked on it;
 *  - a pipe end passed with SCM_RIGHTS over a unix socket;
 *  - one epoll set with a pipe and an eventfd, waited on by a parked thread;
 *  - members added to an epoll set (a socket, then a pipe) while a thread is
 *    parked in epoll_wait on it wake that thread when they become ready (the
 *    set starts with one pipe, as Go's netpoller does).
 *
 * Exits 1 if any check failed.
 *
 * guest-cflags: -pthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
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
        fflush(stdout);                                                        \
    } while (0)

static volatile sig_atomic_t sigpipes, usr1s;
static void on_sigpipe(int s) { (void)s; sigpipes++; }
static void on_usr1(int s) { (void)s; usr1s++; }

static long fill(int fd, size_t chunk)
{
    char buf[8192];
    memset(buf, 'f', sizeof buf);
    long total = 0;
    for (;;) {
        ssize_t n = write(fd, buf, chunk);
        if (n < 0)
            return errno == EAGAIN ? total : -1;
        total += n;
    }
}

static void test_eof_epipe(void)
{
    int p[2];
    char buf[16];
    CHECK(pipe(p) == 0, "pipe");
    CHECK(write(p[1], "hello", 5) == 5, "write 5");
    close(p[1]);
    CHECK(read(p[0], buf, sizeof buf) == 5 && memcmp(buf, "hello", 5) == 0,
          "buffered data read after the writer closed");
    CHECK(read(p[0], buf, sizeof buf) == 0, "then end of file");
    CHECK(read(p[0], buf, sizeof buf) == 0, "end of file again");
    close(p[0]);

    CHECK(pipe(p) == 0, "pipe");
    close(p[0]);
    signal(SIGPIPE, on_sigpipe);
    CHECK(write(p[1], "", 0) == 0 && sigpipes == 0, "no reader, empty write: 0, no signal");
    errno = 0;
    CHECK(write(p[1], "x", 1) == -1 && errno == EPIPE, "no reader: EPIPE");
    CHECK(sigpipes == 1, "and one SIGPIPE");
    struct iovec iov = {.iov_base = "yz", .iov_len = 2};
    CHECK(writev(p[1], &iov, 1) == -1 && errno == EPIPE && sigpipes == 2,
          "writev: EPIPE and SIGPIPE");
    signal(SIGPIPE, SIG_IGN);
    CHECK(write(p[1], "x", 1) == -1 && errno == EPIPE, "SIGPIPE ignored: EPIPE");
    close(p[1]);
    signal(SIGPIPE, SIG_DFL);
}

static void test_nonblock(void)
{
    int p[2];
    char buf[16];
    CHECK(pipe2(p, O_NONBLOCK) == 0, "pipe2 O_NONBLOCK");
    CHECK(read(p[0], buf, 1) == -1 && errno == EAGAIN, "empty: EAGAIN");
    CHECK(fcntl(p[0], F_GETFL) == (O_RDONLY | O_NONBLOCK), "F_GETFL read end");
    CHECK(fcntl(p[1], F_GETFL) == (O_WRONLY | O_NONBLOCK), "F_GETFL write end");
    CHECK(fcntl(p[1], F_GETPIPE_SZ) == 65536, "F_GETPIPE_SZ 65536");
    long cap = fill(p[1], 1);
    printf("capacity with 1-byte writes: %ld\n", cap);
    CHECK(write(p[1], "x", 1) == -1 && errno == EAGAIN, "full: EAGAIN");
    int n = -1;
    CHECK(ioctl(p[0], FIONREAD, &n) == 0 && n == cap, "FIONREAD counts it all");
    close(p[0]);
    close(p[1]);

    size_t sizes[] = {100, 4096, 5000, 3000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        pipe2(p, O_NONBLOCK);
        printf("capacity with %zu-byte writes: %ld\n", sizes[i], fill(p[1], sizes[i]));
        close(p[0]);
        close(p[1]);
    }

    /* A partial non-blocking write of more than PIPE_BUF. */
    static char big[70000];
    pipe2(p, O_NONBLOCK);
    CHECK(write(p[1], big, 10) == 10, "10 bytes in");
    ssize_t w = write(p[1], big, sizeof big);
    printf("non-blocking 70000-byte write wrote %zd\n", w);
    close(p[0]);
    close(p[1]);

    /* F_SETFL and FIONBIO switch blocking mode; dup shares it. */
    pipe(p);
    int d = dup(p[0]);
    CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0, "F_SETFL O_NONBLOCK");
    CHECK(read(d, buf, 1) == -1 && errno == EAGAIN, "the dup is non-blocking too");
    int off = 0;
    CHECK(ioctl(d, FIONBIO, &off) == 0 && fcntl(p[0], F_GETFL) == O_RDONLY,
          "FIONBIO off, seen through the other descriptor");
    int d2 = fcntl(p[1], F_DUPFD_CLOEXEC, 20);
    CHECK(d2 >= 20 && fcntl(d2, F_GETFD) == FD_CLOEXEC, "F_DUPFD_CLOEXEC");
    CHECK(dup2(p[1], 30) == 30 && write(30, "ab", 2) == 2, "dup2, write through it");
    CHECK(read(p[0], buf, 2) == 2, "read it");
    CHECK(read(p[1], buf, 1) == -1 && errno == EBADF, "read of the write end: EBADF");
    CHECK(write(p[0], "a", 1) == -1 && errno == EBADF, "write of the read end: EBADF");
    CHECK(lseek(p[0], 0, SEEK_CUR) == -1 && errno == ESPIPE, "lseek: ESPIPE");
    CHECK(pread(p[0], buf, 1, 0) == -1 && errno == ESPIPE, "pread: ESPIPE");
    struct stat st;
    CHECK(fstat(p[0], &st) == 0 && S_ISFIFO(st.st_mode) && st.st_size == 0, "fstat: a FIFO");
    struct stat st1;
    CHECK(fstat(p[1], &st1) == 0 && st1.st_ino == st.st_ino, "both ends: one inode");
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[0]);
    ssize_t ln = readlink(path, link, sizeof link - 1);
    CHECK(ln > 6 && memcmp(link, "pipe:[", 6) == 0, "/proc/self/fd link: pipe:[...]");
    close(d);
    close(d2);
    close(30);
    close(p[0]);
    close(p[1]);
}

static void test_vectors_poll_select(void)
{
    int p[2];
    pipe(p);
    struct iovec out[3] = {{"ab", 2}, {"", 0}, {"cdef", 4}};
    CHECK(writev(p[1], out, 3) == 6, "writev 6");
    char a[3], b[10];
    struct iovec in[2] = {{a, 3}, {b, sizeof b}};
    CHECK(readv(p[0], in, 2) == 6 && memcmp(a, "abc", 3) == 0 && memcmp(b, "def", 3) == 0,
          "readv across two buffers");

    struct pollfd pf[2] = {{p[0], POLLIN, 0}, {p[1], POLLOUT, 0}};
    CHECK(poll(pf, 2, 0) == 1 && pf[0].revents == 0 && pf[1].revents == POLLOUT,
          "poll: empty, writable");
    write(p[1], "z", 1);
    CHECK(poll(pf, 2, 0) == 2 && pf[0].revents == POLLIN, "poll: readable");
    fd_set r, w;
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_SET(p[0], &r);
    FD_SET(p[1], &w);
    struct timeval tv = {0, 0};
    CHECK(select(p[1] + 1, &r, &w, NULL, &tv) == 2, "select: both");
    close(p[1]);
    pf[0].events = POLLIN;
    CHECK(poll(pf, 1, 0) == 1 && pf[0].revents == (POLLIN | POLLHUP), "POLLIN|POLLHUP");
    read(p[0], a, 1);
    CHECK(poll(pf, 1, -1) == 1 && pf[0].revents == POLLHUP, "drained: POLLHUP");
    close(p[0]);

    pipe(p);
    close(p[0]);
    pf[0] = (struct pollfd){p[1], POLLOUT, 0};
    CHECK(poll(pf, 1, 0) == 1 && pf[0].revents == (POLLOUT | POLLERR), "no reader: POLLERR");
    close(p[1]);
}

struct writer {
    int fd;
    char letter;
    int blocks;
};

static void *write_blocks(void *arg)
{
    struct writer *w = arg;
    char buf[4096];
    memset(buf, w->letter, sizeof buf);
    for (int i = 0; i < w->blocks; i++)
        if (write(w->fd, buf, sizeof buf) != sizeof buf)
            return (void *)1;
    return NULL;
}

/* Reads 4096-byte blocks until end of file; counts blocks per letter and mixed ones. */
static void read_blocks(int fd, int *na, int *nb, int *mixed)
{
    static char buf[4096];
    *na = *nb = *mixed = 0;
    for (;;) {
        size_t got = 0;
        while (got < sizeof buf) {
            ssize_t n = read(fd, buf + got, sizeof buf - got);
            if (n <= 0)
                break;
            got += n;
        }
        if (got == 0)
            return;
        int a = 0, b = 0;
        for (size_t i = 0; i < got; i++) {
            a += buf[i] == 'a';
            b += buf[i] == 'b';
        }
        if (got == sizeof buf && a == (int)got)
            (*na)++;
        else if (got == sizeof buf && b == (int)got)
            (*nb)++;
        else
            (*mixed)++;
    }
}

static void test_atomicity(void)
{
    int p[2], na, nb, mixed;
    pipe(p);
    struct writer wa = {p[1], 'a', 300}, wb = {p[1], 'b', 300};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, write_blocks, &wa);
    pthread_create(&tb, NULL, write_blocks, &wb);
    void *ra, *rb;
    int done = 0;
    /* Close our write end only once both writers are done: read in a child. */
    pid_t child = fork();
    if (child == 0) {
        close(p[1]);
        read_blocks(p[0], &na, &nb, &mixed);
        printf("threads: %d a-blocks, %d b-blocks, %d mixed\n", na, nb, mixed);
        fflush(stdout);
        _exit(0);
    }
    close(p[0]);
    pthread_join(ta, &ra);
    pthread_join(tb, &rb);
    close(p[1]);
    int status;
    waitpid(child, &status, 0);
    done = ra == NULL && rb == NULL && WIFEXITED(status);
    CHECK(done, "two threads' 4096-byte writes");

    pipe(p);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            close(p[0]);
            struct writer w = {p[1], k ? 'b' : 'a', 300};
            _exit(write_blocks(&w) != NULL);
        }
    }
    close(p[1]);
    read_blocks(p[0], &na, &nb, &mixed);
    printf("processes: %d a-blocks, %d b-blocks, %d mixed\n", na, nb, mixed);
    close(p[0]);
    int s0, s1;
    waitpid(kids[0], &s0, 0);
    waitpid(kids[1], &s1, 0);
    CHECK(WIFEXITED(s0) && WEXITSTATUS(s0) == 0 && WIFEXITED(s1) && WEXITSTATUS(s1) == 0,
          "two processes' 4096-byte writes");
}

static char bigbuf[300000];

static void *big_writer(void *arg)
{
    int fd = *(int *)arg;
    for (size_t i = 0; i < sizeof bigbuf; i++)
        bigbuf[i] = (char)(i * 7 + i / 251);
    return (void *)(long)write(fd, bigbuf, sizeof bigbuf);
}

static void *interrupted_writer(void *arg)
{
    int fd = *(int *)arg;
    return (void *)(long)write(fd, bigbuf, 100000);
}

static void test_big_writes(void)
{
    int p[2];
    pipe(p);
    pthread_t t;
    pthread_create(&t, NULL, big_writer, &p[1]);
    static char in[300000];
    size_t got = 0;
    char chunk[1000];
    while (got < sizeof in) {
        ssize_t n = read(p[0], chunk, sizeof chunk);
        if (n <= 0)
            break;
        memcpy(in + got, chunk, n);
        got += n;
    }
    void *r;
    pthread_join(t, &r);
    CHECK((long)r == 300000, "blocking 300000-byte write returns 300000");
    CHECK(got == sizeof in && memcmp(in, bigbuf, sizeof in) == 0, "all of it read back intact");
    close(p[0]);
    close(p[1]);

    /* A blocking write interrupted once the pipe is full returns what it wrote. */
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    pipe(p);
    pthread_create(&t, NULL, interrupted_writer, &p[1]);
    int n = 0;
    while (ioctl(p[0], FIONREAD, &n) == 0 && n < 65536)
        sched_yield();
    pthread_kill(t, SIGUSR1);
    pthread_join(t, &r);
    printf("interrupted 100000-byte write returned %ld (handler ran %d)\n", (long)r,
           (int)usr1s);
    close(p[0]);
    close(p[1]);
}

static void test_epoll(void)
{
    int p[2];
    pipe2(p, O_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = 0x1122334455667788ull};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    struct epoll_event out[4];
    CHECK(epoll_wait(ep, out, 4, 0) == 0, "ET: nothing yet");
    write(p[1], "a", 1);
    CHECK(epoll_wait(ep, out, 4, 0) == 1 && out[0].data.u64 == 0x1122334455667788ull,
          "ET: reported after a write, data back");
    CHECK(epoll_wait(ep, out, 4, 0) == 0, "ET: not again without a new write");
    write(p[1], "b", 1);
    CHECK(epoll_wait(ep, out, 4, 0) == 1, "ET: again after another write");
    ev.events = EPOLLIN | EPOLLONESHOT;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0, "MOD to one-shot");
    CHECK(epoll_wait(ep, out, 4, 0) == 1, "one-shot: reported");
    write(p[1], "c", 1);
    CHECK(epoll_wait(ep, out, 4, 0) == 0, "one-shot: disarmed");
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0 && epoll_wait(ep, out, 4, 0) == 1,
          "one-shot: re-armed by MOD");
    ev.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev);
    CHECK(epoll_wait(ep, out, 4, 0) == 1 && epoll_wait(ep, out, 4, 0) == 1,
          "level: reported while readable");
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == -1 && errno == EEXIST, "ADD twice: EEXIST");

    /* EPOLLOUT edge after a full pipe is read from. */
    ev.events = EPOLLOUT | EPOLLET;
    ev.data.u64 = 2;
    epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &ev);
    char buf[70000];
    read(p[0], buf, sizeof buf);
    fill(p[1], 4096);
    int n = epoll_wait(ep, out, 4, 0);
    int outs = 0;
    for (int i = 0; i < n; i++)
        outs += out[i].data.u64 == 2;
    CHECK(outs == 0, "full pipe: no EPOLLOUT");
    read(p[0], buf, 4096);
    n = epoll_wait(ep, out, 4, 0);
    outs = 0;
    for (int i = 0; i < n; i++)
        outs += out[i].data.u64 == 2 && out[i].events == EPOLLOUT;
    CHECK(outs == 1, "a read of a full pipe: EPOLLOUT");
    close(p[0]);
    n = epoll_wait(ep, out, 4, 0);
    CHECK(n == 1 && out[0].data.u64 == 2 && (out[0].events & EPOLLERR),
          "reader closed: EPOLLERR (the closed read end left the set)");
    close(p[1]);
    CHECK(epoll_wait(ep, out, 4, 0) == 0, "both closed: empty set");

    /* EPOLLHUP once the writer closes; a closed-but-dup'd end stays in the set. */
    pipe(p);
    ev.events = EPOLLIN;
    ev.data.u64 = 3;
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    int d = dup(p[0]);
    close(p[0]);
    close(p[1]);
    CHECK(epoll_wait(ep, out, 4, 0) == 1 && out[0].events == EPOLLHUP && out[0].data.u64 == 3,
          "writer closed: EPOLLHUP through the dup");
    close(d);
    close(ep);
}

static void test_fork_sharing(void)
{
    int p[2], q[2];
    pipe(p);
    pipe(q);
    pid_t c = fork();
    if (c == 0) {
        char buf[64];
        close(q[0]);
        ssize_t n = read(p[0], buf, sizeof buf);
        /* Keep p[1] open a while: the parent's read must not see EOF yet. */
        write(q[1], buf, n);
        char x;
        read(p[0], &x, 1);
        close(p[1]);
        _exit(0);
    }
    close(q[1]);
    write(p[1], "from parent", 11);
    char buf[64];
    ssize_t n = read(q[0], buf, sizeof buf);
    CHECK(n == 11 && memcmp(buf, "from parent", 11) == 0, "child read and echoed");
    write(p[1], "!", 1);
    close(p[1]);
    int status;
    waitpid(c, &status, 0);
    CHECK(read(p[0], buf, 1) == 0, "EOF once every process closed the write end");
    CHECK(read(q[0], buf, 1) == 0, "EOF on the child's pipe after its exit");
    close(p[0]);
    close(q[0]);
}

static void test_resize_keeps_data(void)
{
    int p[2];
    pipe(p);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 9};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    write(p[1], "keep me", 7);
    CHECK(fcntl(p[1], F_SETPIPE_SZ, 1 << 20) >= (1 << 20), "F_SETPIPE_SZ 1 MiB");
    CHECK(fcntl(p[0], F_GETPIPE_SZ) >= (1 << 20), "F_GETPIPE_SZ after it");
    struct epoll_event out;
    CHECK(epoll_wait(ep, &out, 1, 0) == 1 && out.data.u64 == 9, "still watched by epoll");
    char buf[16];
    CHECK(read(p[0], buf, sizeof buf) == 7 && memcmp(buf, "keep me", 7) == 0,
          "the data is still there");
    close(p[1]);
    CHECK(read(p[0], buf, sizeof buf) == 0, "then end of file");
    close(p[0]);
    close(ep);
}


static void *read_one(void *arg)
{
    int fd = *(int *)arg;
    char buf[16];
    return (void *)(long)read(fd, buf, sizeof buf);
}

static void test_convert_with_reader(void)
{
    int p[2];
    pipe(p);
    pthread_t t;
    pthread_create(&t, NULL, read_one, &p[0]);
    CHECK(fcntl(p[0], F_SETPIPE_SZ, 8192) >= 8192, "F_SETPIPE_SZ while a reader may wait");
    CHECK(write(p[1], "wake", 4) == 4, "write after it");
    void *r;
    pthread_join(t, &r);
    CHECK((long)r == 4, "the reader got the 4 bytes");
    close(p[0]);
    close(p[1]);
}

static void test_scm_rights(void)
{
    int sv[2], p[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    pipe(p);
    write(p[1], "before", 6);
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {"x", 1};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &p[0], sizeof(int));
    CHECK(sendmsg(sv[0], &m, 0) == 1, "sendmsg with the read end");
    close(p[0]);
    char c;
    struct iovec riov = {&c, 1};
    struct msghdr rm = {0};
    char rbuf[CMSG_SPACE(sizeof(int))];
    rm.msg_iov = &riov;
    rm.msg_iovlen = 1;
    rm.msg_control = rbuf;
    rm.msg_controllen = sizeof rbuf;
    CHECK(recvmsg(sv[1], &rm, 0) == 1, "recvmsg");
    struct cmsghdr *rc = CMSG_FIRSTHDR(&rm);
    int got = -1;
    if (rc && rc->cmsg_type == SCM_RIGHTS)
        memcpy(&got, CMSG_DATA(rc), sizeof(int));
    CHECK(got >= 0, "a descriptor came back");
    write(p[1], " after", 6);
    close(p[1]);
    char buf[32];
    size_t n = 0;
    ssize_t k;
    while ((k = read(got, buf + n, sizeof buf - n)) > 0)
        n += k;
    CHECK(n == 12 && memcmp(buf, "before after", 12) == 0, "read through it, then EOF");
    close(got);
    close(sv[0]);
    close(sv[1]);
}

struct mixed {
    int ep, n;
    struct epoll_event out[4];
};

static void *wait_mixed(void *arg)
{
    struct mixed *m = arg;
    do
        m->n = epoll_wait(m->ep, m->out, 4, -1);
    while (m->n == 0);
    return NULL;
}

static void test_mixed_epoll(void)
{
    int p[2];
    pipe(p);
    int efd = eventfd(0, EFD_NONBLOCK);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    ev.data.u64 = 2;
    epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
    struct epoll_event out[4];
    CHECK(epoll_wait(ep, out, 4, 0) == 0, "mixed set: nothing ready");
    uint64_t one = 1;
    write(efd, &one, 8);
    write(p[1], "p", 1);
    int n = epoll_wait(ep, out, 4, 0);
    uint64_t seen = 0;
    for (int i = 0; i < n; i++)
        seen |= out[i].data.u64;
    CHECK(n == 2 && seen == 3, "mixed set: both ready");
    char c;
    read(p[0], &c, 1);
    uint64_t v;
    read(efd, &v, 8);

    struct mixed m = {ep, 0, {{0}}};
    pthread_t t;
    pthread_create(&t, NULL, wait_mixed, &m);
    write(efd, &one, 8);
    pthread_join(t, NULL);
    CHECK(m.n == 1 && m.out[0].data.u64 == 2, "parked waiter woken by the eventfd");
    read(efd, &v, 8);
    pthread_create(&t, NULL, wait_mixed, &m);
    write(p[1], "q", 1);
    pthread_join(t, NULL);
    CHECK(m.n == 1 && m.out[0].data.u64 == 1, "parked waiter woken by the pipe");
    close(ep);
    close(efd);
    close(p[0]);
    close(p[1]);
}

struct late {
    int ep, n;
    struct epoll_event out[2];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *wait_late(void *arg)
{
    struct late *l = arg;
    l->n = epoll_wait(l->ep, l->out, 2, 20000);
    return NULL;
}

static void test_late_members(void)
{
    int p[2], q[2], sv[2];
    pipe(p);
    pipe(q);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    struct late l = {ep, 0, {{0}}};
    struct timespec pause_ts = {0, 50 * 1000000L};
    pthread_t t;
    pthread_create(&t, NULL, wait_late, &l);
    nanosleep(&pause_ts, NULL);
    ev.data.u64 = 3;
    double t0 = now_s();
    epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev);
    write(sv[1], "s", 1);
    pthread_join(t, NULL);
    /* (A wait that missed the new member would return when its 20 s timeout ends, after
     * a rescan, with the same result: the time tells them apart.) */
    CHECK(l.n == 1 && l.out[0].data.u64 == 3 && now_s() - t0 < 10,
          "a socket added during epoll_wait wakes it");
    char c;
    read(sv[0], &c, 1);
    pthread_create(&t, NULL, wait_late, &l);
    nanosleep(&pause_ts, NULL);
    ev.data.u64 = 2;
    t0 = now_s();
    epoll_ctl(ep, EPOLL_CTL_ADD, q[0], &ev);
    write(q[1], "q", 1);
    pthread_join(t, NULL);
    CHECK(l.n == 1 && l.out[0].data.u64 == 2 && now_s() - t0 < 10,
          "a pipe added during epoll_wait wakes it");
    close(ep);
    close(sv[0]);
    close(sv[1]);
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
}

int main(void)
{
    test_eof_epipe();
    test_nonblock();
    test_vectors_poll_select();
    test_atomicity();
    test_big_writes();
    test_epoll();
    test_fork_sharing();
    test_resize_keeps_data();
    test_convert_with_reader();
    test_scm_rights();
    test_mixed_epoll();
    test_late_members();
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures != 0;
}
