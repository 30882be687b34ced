/*
 * sockets: unix and loopback sockets.
 *
 * Usage: sockets DIR [net]   DIR = a directory to bind a unix socket in;
 *                            net = also test TCP and UDP on 127.0.0.1
 *
 *  - socketpair (stream): data both ways, shutdown(SHUT_WR) -> end of file,
 *    SO_TYPE, SO_ERROR, a blocking read woken by another thread;
 *  - socketpair (datagram): message boundaries, MSG_TRUNC, MSG_PEEK;
 *  - a blocking write and a writev of 4 MiB each (far more than the socket
 *    holds) while another thread reads it all: the writer waits for the reader,
 *    never the other way;
 *  - SCM_RIGHTS: a pipe's read end passed over a unix socket and read from;
 *  - a path-bound stream server: blocking accept4 in one thread while another
 *    connects; getsockname/getpeername give the bound path; EADDRINUSE; a
 *    connect to a missing path (ENOENT);
 *  - an abstract-name datagram socket: sendto/recvfrom with the sender's name;
 *  - errors: ENOTSOCK, EBADF, EINVAL, EAFNOSUPPORT, EFAULT;
 *  - with "net": TCP listen on port 0, connect, send/recv, a non-blocking
 *    accept (EAGAIN) and epoll for it, SO_REUSEADDR, TCP_NODELAY, UDP echo,
 *    ECONNREFUSED.
 *
 * Port numbers are never printed. Exits 1 if any check failed.
 *
 * guest-cflags: -pthread
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
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

static void sleep_ms(int ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

static int late_fd;
static void *late_writer(void *arg)
{
    (void)arg;
    sleep_ms(20);
    write(late_fd, "late", 4);
    return NULL;
}

static int big_fd;
static long big_read;
static void *big_reader(void *arg)
{
    (void)arg;
    static char b[65536];
    ssize_t n;
    while ((n = read(big_fd, b, sizeof b)) > 0)
        big_read += n;
    return NULL;
}

static void test_big_write(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair for a big write");
    big_fd = sv[1];
    pthread_t t;
    pthread_create(&t, NULL, big_reader, NULL);
    size_t len = 4 << 20;
    char *p = calloc(1, len);
    ssize_t w = write(sv[0], p, len);
    CHECK(w == (ssize_t)len, "a 4 MiB blocking write completes while a thread reads");
    struct iovec iov[2] = {{p, len / 2}, {p + len / 2, len / 2}};
    w = writev(sv[0], iov, 2);
    CHECK(w == (ssize_t)len, "a 4 MiB blocking writev completes while a thread reads");
    close(sv[0]);
    pthread_join(t, NULL);
    CHECK(big_read == 2 * (long)len, "the reader got every byte");
    close(sv[1]);
    free(p);
}

static void test_pairs(void)
{
    int sv[2];
    char buf[64];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair stream");
    CHECK(fcntl(sv[0], F_GETFD) == FD_CLOEXEC, "SOCK_CLOEXEC");
    CHECK(write(sv[0], "ping", 4) == 4 && read(sv[1], buf, sizeof buf) == 4 && !memcmp(buf, "ping", 4),
          "stream: one way");
    CHECK(send(sv[1], "pong", 4, 0) == 4 && recv(sv[0], buf, sizeof buf, 0) == 4, "stream: other way");
    int type = 0;
    socklen_t len = sizeof type;
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM &&
              len == sizeof type,
          "SO_TYPE");
    int e = -1;
    len = sizeof e;
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e == 0, "SO_ERROR");
    late_fd = sv[0];
    pthread_t t;
    pthread_create(&t, NULL, late_writer, NULL);
    CHECK(read(sv[1], buf, sizeof buf) == 4 && !memcmp(buf, "late", 4), "blocking read woken by a thread");
    pthread_join(t, NULL);
    CHECK(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT) < 0 && errno == EAGAIN, "MSG_DONTWAIT: EAGAIN");
    CHECK(shutdown(sv[0], SHUT_WR) == 0, "shutdown SHUT_WR");
    CHECK(read(sv[1], buf, sizeof buf) == 0, "end of file after shutdown");
    CHECK(shutdown(sv[0], 7) < 0 && errno == EINVAL, "shutdown bad how: EINVAL");
    close(sv[0]);
    close(sv[1]);

    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0, "socketpair datagram");
    send(sv[0], "one", 3, 0);
    send(sv[0], "second", 6, 0);
    CHECK(recv(sv[1], buf, sizeof buf, MSG_PEEK) == 3, "datagram: MSG_PEEK");
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 3, "datagram: first message whole");
    CHECK(recv(sv[1], buf, 2, MSG_TRUNC) == 6, "datagram: MSG_TRUNC gives the real length");
    close(sv[0]);
    close(sv[1]);
}

static void test_scm_rights(void)
{
    int sv[2], p[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pipe(p);
    write(p[1], "through the socket", 18);
    close(p[1]);
    char data = 'x';
    struct iovec iov = {&data, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = u.buf;
    m.msg_controllen = sizeof u.buf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &p[0], sizeof(int));
    CHECK(sendmsg(sv[0], &m, 0) == 1, "sendmsg with SCM_RIGHTS");
    close(p[0]);

    char got = 0;
    struct iovec riov = {&got, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } r;
    memset(&r, 0, sizeof r);
    struct msghdr rm = {0};
    rm.msg_iov = &riov;
    rm.msg_iovlen = 1;
    rm.msg_control = r.buf;
    rm.msg_controllen = sizeof r.buf;
    CHECK(recvmsg(sv[1], &rm, MSG_CMSG_CLOEXEC) == 1 && got == 'x', "recvmsg");
    struct cmsghdr *rc = CMSG_FIRSTHDR(&rm);
    CHECK(rc && rc->cmsg_level == SOL_SOCKET && rc->cmsg_type == SCM_RIGHTS &&
              rc->cmsg_len == CMSG_LEN(sizeof(int)),
          "received an SCM_RIGHTS message");
    int fd = -1;
    if (rc) memcpy(&fd, CMSG_DATA(rc), sizeof fd);
    char buf[64] = {0};
    CHECK(fd >= 0 && read(fd, buf, sizeof buf) == 18 && !strcmp(buf, "through the socket"),
          "the passed descriptor reads the pipe");
    CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC, "MSG_CMSG_CLOEXEC");
    close(fd);

    /* sendmsg with a bad descriptor in SCM_RIGHTS */
    int bad = 999;
    memcpy(CMSG_DATA(cm), &bad, sizeof(int));
    CHECK(sendmsg(sv[0], &m, 0) < 0 && errno == EBADF, "SCM_RIGHTS with a closed fd: EBADF");
    close(sv[0]);
    close(sv[1]);
}

static const char *sock_path;
/* "net" or "local": with the process id, keeps concurrent runs of the two cases apart (under
 * vmx every sandbox's first process has the same id). */
static const char *run_tag = "local";
static void *connector(void *arg)
{
    (void)arg;
    sleep_ms(20);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, sock_path);
    if (connect(c, (struct sockaddr *)&a, sizeof a) != 0) {
        printf("connect failed: %d\n", errno);
        return NULL;
    }
    struct sockaddr_un peer;
    socklen_t len = sizeof peer;
    getpeername(c, (struct sockaddr *)&peer, &len);
    write(c, "hello server", 12);
    char buf[32] = {0};
    read(c, buf, sizeof buf - 1);
    /* Printed only after the server answered, so the output order is fixed. */
    printf("client: peer is the bound path: %s\n", strcmp(peer.sun_path, sock_path) ? "no" : "yes");
    printf("client got: %s\n", buf);
    close(c);
    return NULL;
}

static void test_path_server(const char *dir)
{
    char path[200];
    /* The process id and tag keep concurrent runs apart; it is never printed. */
    snprintf(path, sizeof path, "%s/vmx-test-%d-%s.sock", dir, (int)getpid(), run_tag);
    unlink(path);
    sock_path = path;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, path);
    CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0, "bind to a path");
    int s2 = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(s2, (struct sockaddr *)&a, sizeof a) < 0 && errno == EADDRINUSE, "bind again: EADDRINUSE");
    close(s2);
    CHECK(listen(s, 4) == 0, "listen");
    struct sockaddr_un me;
    socklen_t len = sizeof me;
    CHECK(getsockname(s, (struct sockaddr *)&me, &len) == 0 && !strcmp(me.sun_path, path) &&
              len == offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1,
          "getsockname gives the bound path");
    pthread_t t;
    pthread_create(&t, NULL, connector, NULL);
    struct sockaddr_un from;
    len = sizeof from;
    int c = accept4(s, (struct sockaddr *)&from, &len, SOCK_CLOEXEC);
    CHECK(c >= 0 && len == sizeof(sa_family_t), "blocking accept4: an unnamed client");
    char buf[32] = {0};
    CHECK(read(c, buf, sizeof buf - 1) == 12, "server read");
    printf("server got: %s\n", buf);
    write(c, "hello client", 12);
    pthread_join(t, NULL);
    close(c);
    close(s);
    unlink(path);
    int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(connect(c2, (struct sockaddr *)&a, sizeof a) < 0 && errno == ENOENT, "connect to a missing path: ENOENT");
    close(c2);
}

static void test_abstract(void)
{
    int r = socket(AF_UNIX, SOCK_DGRAM, 0), w = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX}, b = {.sun_family = AF_UNIX};
    /* Unique per run as the path above (abstract names are shared by the host's processes). */
    char name[64], wname[64];
    int nlen = 1 + snprintf(name + 1, sizeof name - 1, "vmx-abstract-recv-%d-%s", (int)getpid(), run_tag);
    int wlen = 1 + snprintf(wname + 1, sizeof wname - 1, "vmx-abstract-send-%d-%s", (int)getpid(), run_tag);
    name[0] = wname[0] = 0;
    memcpy(a.sun_path, name, nlen);
    memcpy(b.sun_path, wname, wlen);
    socklen_t alen = offsetof(struct sockaddr_un, sun_path) + nlen;
    socklen_t blen = offsetof(struct sockaddr_un, sun_path) + wlen;
    CHECK(bind(r, (struct sockaddr *)&a, alen) == 0, "bind an abstract name");
    CHECK(bind(w, (struct sockaddr *)&b, blen) == 0, "bind a second abstract name");
    CHECK(sendto(w, "dgram", 5, 0, (struct sockaddr *)&a, alen) == 5, "sendto an abstract name");
    struct sockaddr_un from;
    socklen_t flen = sizeof from;
    char buf[16];
    CHECK(recvfrom(r, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen) == 5, "recvfrom");
    CHECK(flen == blen && !memcmp(from.sun_path, wname, wlen), "sender's abstract name");
    struct sockaddr_un me;
    socklen_t mlen = sizeof me;
    getsockname(r, (struct sockaddr *)&me, &mlen);
    CHECK(mlen == alen && !memcmp(me.sun_path, name, nlen), "getsockname abstract");
    close(r);
    close(w);
}

static void test_errors(void)
{
    int p[2];
    pipe(p);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    CHECK(bind(p[0], (struct sockaddr *)&a, sizeof a) < 0 && errno == ENOTSOCK, "bind a pipe: ENOTSOCK");
    CHECK(listen(999, 1) < 0 && errno == EBADF, "listen bad fd: EBADF");
    CHECK(socket(12345, SOCK_STREAM, 0) < 0 && errno == EAFNOSUPPORT, "unknown family: EAFNOSUPPORT");
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(s, (struct sockaddr *)8, sizeof a) < 0 && errno == EFAULT, "bind bad pointer: EFAULT");
    CHECK(bind(s, (struct sockaddr *)&a, 500) < 0 && errno == EINVAL, "bind long length: EINVAL");
    int v = 0;
    socklen_t len = sizeof v;
    CHECK(getsockopt(s, SOL_SOCKET, SO_TYPE, &v, (socklen_t *)8) < 0 && errno == EFAULT, "getsockopt bad optlen: EFAULT");
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, (int *)8) < 0 && errno == EFAULT, "socketpair bad pointer: EFAULT");
    (void)len;
    close(s);
    close(p[0]);
    close(p[1]);
}

static int tcp_port;
static void *tcp_client(void *arg)
{
    (void)arg;
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(tcp_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sleep_ms(20);
    if (connect(c, (struct sockaddr *)&a, sizeof a) != 0) {
        printf("tcp connect failed: %d\n", errno);
        return NULL;
    }
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    send(c, "over tcp", 8, 0);
    char buf[32] = {0};
    recv(c, buf, sizeof buf - 1, 0);
    printf("tcp client got: %s\n", buf);
    close(c);
    return NULL;
}

static void test_inet(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(s >= 0, "socket AF_INET");
    int one = 1;
    CHECK(setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "SO_REUSEADDR");
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0 && listen(s, 8) == 0, "bind and listen on 127.0.0.1:0");
    socklen_t len = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &len);
    tcp_port = ntohs(a.sin_port);
    CHECK(tcp_port != 0 && a.sin_addr.s_addr == htonl(INADDR_LOOPBACK), "a port was picked");
    CHECK(accept(s, NULL, NULL) < 0 && errno == EAGAIN, "non-blocking accept: EAGAIN");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s}, out;
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    pthread_t t;
    pthread_create(&t, NULL, tcp_client, NULL);
    CHECK(epoll_wait(ep, &out, 1, 5000) == 1 && out.data.fd == s, "epoll: a connection to accept");
    struct sockaddr_in peer;
    len = sizeof peer;
    int c = accept4(s, (struct sockaddr *)&peer, &len, 0);
    CHECK(c >= 0 && peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK), "accept4 from 127.0.0.1");
    char buf[32] = {0};
    CHECK(recv(c, buf, sizeof buf - 1, 0) == 8, "tcp recv (blocking)");
    printf("tcp server got: %s\n", buf);
    send(c, "and back", 8, 0);
    pthread_join(t, NULL);
    CHECK(recv(c, buf, sizeof buf, 0) == 0, "tcp: end of file after the client closed");
    close(c);
    close(s);
    close(ep);

    int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in ua = {.sin_family = AF_INET};
    ua.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(u1, (struct sockaddr *)&ua, sizeof ua);
    len = sizeof ua;
    getsockname(u1, (struct sockaddr *)&ua, &len);
    CHECK(sendto(u2, "udp!", 4, 0, (struct sockaddr *)&ua, sizeof ua) == 4, "udp sendto");
    struct sockaddr_in from;
    len = sizeof from;
    CHECK(recvfrom(u1, buf, sizeof buf, 0, (struct sockaddr *)&from, &len) == 4 &&
              from.sin_addr.s_addr == htonl(INADDR_LOOPBACK),
          "udp recvfrom");
    close(u1);
    close(u2);

    int r = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in closed = {.sin_family = AF_INET, .sin_port = htons(tcp_port)};
    closed.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(r, (struct sockaddr *)&closed, sizeof closed) < 0 && errno == ECONNREFUSED,
          "connect to a closed port: ECONNREFUSED");
    close(r);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *dir = argc > 1 ? argv[1] : ".";
    if (argc > 2)
        run_tag = argv[2];
    test_pairs();
    test_big_write();
    test_scm_rights();
    test_path_server(dir);
    test_abstract();
    test_errors();
    if (argc > 2 && !strcmp(argv[2], "net")) test_inet();
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures != 0;
}
