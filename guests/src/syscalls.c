/*
 * syscalls: a tour of the Linux system calls a user-mode emulator must provide.
 *
 * Usage: syscalls FILE   (FILE is read-only input, e.g. guests/data/input.txt)
 *
 * Only host-independent facts are printed: uname's sysname and machine (not
 * release/version/nodename), "pid > 0" rather than the pid, "increased" rather
 * than times, the number of random bytes rather than the bytes.
 * Covers: uname, getpid/gettid, clock_gettime, nanosleep, getrandom, write,
 * writev, openat/read/pread/lseek/fstat/close, error returns (ENOENT, EBADF),
 * pipe/dup/fcntl, sched_yield, mmap/munmap/mprotect/mremap, brk via sbrk,
 * sysconf page size, riscv_flush_icache (259), and an unknown syscall (999)
 * that must fail with ENOSYS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static int failures;
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            failures++;                                                        \
            printf("FAIL line %d: %s\n", __LINE__, #cond);                     \
        }                                                                      \
    } while (0)

static int64_t ns(const struct timespec *t) { return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec; }

static uint64_t fnv(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void identity(void)
{
    printf("== identity ==\n");
    struct utsname u;
    int rc = uname(&u);
    printf("uname rc=%d sysname=%s machine=%s\n", rc, u.sysname, u.machine);
    pid_t pid = getpid();
    pid_t tid = (pid_t)syscall(SYS_gettid);
    printf("getpid>0: %s  gettid==getpid: %s  getppid>=0: %s\n", pid > 0 ? "yes" : "no",
           tid == pid ? "yes" : "no", getppid() >= 0 ? "yes" : "no");
    CHECK(pid > 0 && tid == pid);
    long pg = sysconf(_SC_PAGESIZE);
    printf("page size %ld\n", pg);
    CHECK(pg == 4096);
}

static void time_calls(void)
{
    printf("== time ==\n");
    struct timespec a, b, r;
    clock_gettime(CLOCK_MONOTONIC, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("monotonic non-decreasing: %s\n", ns(&b) >= ns(&a) ? "yes" : "no");
    CHECK(ns(&b) >= ns(&a));
    struct timespec req = {0, 1000000}, rem = {0, 0};
    int rc = nanosleep(&req, &rem);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("nanosleep(1ms) rc=%d, elapsed >= 1ms: %s\n", rc, ns(&b) - ns(&a) >= 1000000 ? "yes" : "no");
    CHECK(rc == 0 && ns(&b) - ns(&a) >= 1000000);
    clock_gettime(CLOCK_REALTIME, &r);
    printf("realtime after 2020: %s\n", r.tv_sec > 1577836800 ? "yes" : "no");
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    printf("process cputime readable: %s\n", a.tv_sec >= 0 ? "yes" : "no");
    time_t t = time(NULL);
    printf("time() after 2020: %s\n", t > 1577836800 ? "yes" : "no");
    printf("sched_yield rc=%d\n", sched_yield());
}

static void random_io(void)
{
    printf("== getrandom / write / writev ==\n");
    unsigned char rnd[16];
    ssize_t n = getrandom(rnd, sizeof rnd, 0);
    printf("getrandom returned %zd\n", n);
    CHECK(n == 16);
    fflush(stdout);
    static const char msg[] = "write(2) to stdout\n";
    n = write(1, msg, sizeof msg - 1);
    struct iovec iov[3] = {{"writev: ", 8}, {"three ", 6}, {"pieces\n", 7}};
    ssize_t m = writev(1, iov, 3);
    printf("write returned %zd, writev returned %zd\n", n, m);
    CHECK(n == (ssize_t)sizeof msg - 1 && m == 21);
    errno = 0;
    n = write(99, "x", 1);
    printf("write to bad fd: %zd errno=%s\n", n, errno == EBADF ? "EBADF" : strerror(errno));
}

static void files(const char *path)
{
    printf("== files (%s) ==\n", path ? path : "no file given");
    if (!path)
        return;
    int fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    printf("openat rc>=0: %s\n", fd >= 0 ? "yes" : "no");
    if (fd < 0) {
        printf("open failed: %s\n", strerror(errno));
        failures++;
        return;
    }
    struct stat st;
    int rc = fstat(fd, &st);
    printf("fstat rc=%d size=%lld regular=%d\n", rc, (long long)st.st_size, S_ISREG(st.st_mode));
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, 1000); /* small reads on purpose */
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    printf("read %zu bytes, fnv1a=%016" PRIx64 "\n", got, fnv(buf, got));
    CHECK((off_t)got == st.st_size);
    ssize_t eof = read(fd, buf, 10);
    printf("read at EOF returns %zd\n", eof);
    off_t pos = lseek(fd, 0, SEEK_CUR);
    off_t end = lseek(fd, 0, SEEK_END);
    off_t back = lseek(fd, -10, SEEK_END);
    off_t set = lseek(fd, 5, SEEK_SET);
    printf("lseek cur=%lld end=%lld end-10=%lld set5=%lld\n", (long long)pos, (long long)end,
           (long long)back, (long long)set);
    char small[16] = {0};
    ssize_t n = read(fd, small, 8);
    printf("read 8 after seek: %zd \"", n);
    for (ssize_t i = 0; i < n; i++)
        putchar(small[i] >= 32 && small[i] < 127 ? small[i] : '.');
    printf("\"\n");
    memset(small, 0, sizeof small);
    n = pread(fd, small, 9, 0);
    off_t after = lseek(fd, 0, SEEK_CUR);
    printf("pread 9 at 0: %zd \"", n);
    for (ssize_t i = 0; i < n; i++)
        putchar(small[i] >= 32 && small[i] < 127 ? small[i] : '.');
    printf("\" (offset after: %lld)\n", (long long)after);
    errno = 0;
    off_t bad = lseek(fd, -100, SEEK_SET);
    printf("lseek negative: %lld errno=%s\n", (long long)bad, errno == EINVAL ? "EINVAL" : strerror(errno));
    int flags = fcntl(fd, F_GETFD);
    printf("FD_CLOEXEC set: %d, O_ACCMODE==O_RDONLY: %d\n", (flags & FD_CLOEXEC) != 0,
           (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY);
    int d = dup(fd);
    off_t dpos = lseek(d, 0, SEEK_CUR);
    printf("dup shares offset: %s\n", dpos == lseek(fd, 0, SEEK_CUR) ? "yes" : "no");
    printf("close dup rc=%d, close rc=%d\n", close(d), close(fd));
    errno = 0;
    rc = close(fd);
    printf("close again rc=%d errno=%s\n", rc, errno == EBADF ? "EBADF" : strerror(errno));
    /* a missing file next to the given one (inside the same granted directory) */
    char missing[512];
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    snprintf(missing, sizeof missing, "%.*sdoes-not-exist.txt", dirlen, path);
    errno = 0;
    fd = open(missing, O_RDONLY);
    printf("open missing file: %d errno=%s\n", fd, errno == ENOENT ? "ENOENT" : strerror(errno));
    /* stdio on the same file */
    FILE *f = fopen(path, "r");
    char line[128] = "";
    int lines = 0;
    while (f && fgets(line, sizeof line, f))
        lines++;
    printf("fopen/fgets lines=%d last=%s", lines, line);
    if (f)
        fclose(f);
    free(buf);
}

static void pipes(void)
{
    printf("== pipe / dup2 ==\n");
    int p[2];
    int rc = pipe2(p, O_CLOEXEC);
    const char *s = "through the pipe";
    ssize_t w = write(p[1], s, strlen(s));
    char buf[64] = {0};
    ssize_t r = read(p[0], buf, sizeof buf - 1);
    printf("pipe2 rc=%d wrote %zd read %zd \"%s\"\n", rc, w, r, buf);
    int fd = dup2(p[1], 20);
    printf("dup2 -> %d\n", fd);
    write(20, "x", 1);
    close(20);
    close(p[1]);
    r = read(p[0], buf, sizeof buf);
    ssize_t r2 = read(p[0], buf, sizeof buf);
    printf("after closing writers: read %zd then %zd (EOF)\n", r, r2);
    close(p[0]);
}

static void memory(void)
{
    printf("== mmap / mprotect / mremap / munmap ==\n");
    size_t len = 16 * 4096;
    unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    int zero = 1;
    for (size_t i = 0; i < len; i++)
        zero &= m[i] == 0;
    printf("anonymous mmap zero-filled: %s\n", zero ? "yes" : "no");
    CHECK(zero);
    for (size_t i = 0; i < len; i++)
        m[i] = (unsigned char)(i * 13 + 7);
    printf("mprotect read-only rc=%d\n", mprotect(m, len, PROT_READ));
    uint64_t h1 = fnv(m, len);
    printf("mprotect read-write rc=%d\n", mprotect(m, len, PROT_READ | PROT_WRITE));
    unsigned char *g = mremap(m, len, 4 * len, MREMAP_MAYMOVE);
    CHECK(g != MAP_FAILED);
    uint64_t h2 = fnv(g, len);
    int tail_zero = 1;
    for (size_t i = len; i < 4 * len; i++)
        tail_zero &= g[i] == 0;
    printf("mremap grow keeps contents: %s, new tail zero: %s\n", h1 == h2 ? "yes" : "no",
           tail_zero ? "yes" : "no");
    CHECK(h1 == h2 && tail_zero);
    g[4 * len - 1] = 0x77;
    uint64_t h3 = fnv(g, len / 2);
    unsigned char *s = mremap(g, 4 * len, len / 2, 0);
    printf("mremap shrink in place: %s, contents kept: %s\n", s == g ? "yes" : "no",
           s != MAP_FAILED && fnv(s, len / 2) == h3 ? "yes" : "no");
    /* punch a hole with munmap, then map it again with MAP_FIXED */
    unsigned char *h = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(h, 0xaa, 3 * 4096);
    printf("munmap middle page rc=%d\n", munmap(h + 4096, 4096));
    unsigned char *f = mmap(h + 4096, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    printf("MAP_FIXED refill at hole: %s, refilled page zero: %s, neighbours kept: %s\n",
           f == h + 4096 ? "yes" : "no", f[0] == 0 && f[4095] == 0 ? "yes" : "no",
           h[4095] == 0xaa && h[2 * 4096] == 0xaa ? "yes" : "no");
    printf("munmap rc=%d %d\n", munmap(h, 3 * 4096), munmap(s, len / 2));
    errno = 0;
    void *bad = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, -1, 0); /* no MAP_ANONYMOUS, bad fd */
    printf("mmap with fd -1 and no MAP_ANONYMOUS fails: %s errno=%s\n", bad == MAP_FAILED ? "yes" : "no",
           errno == EBADF ? "EBADF" : strerror(errno));
    /* file-backed mapping is in the files section's territory; keep to anonymous here */

    printf("== brk ==\n");
    char *b0 = sbrk(0);
    char *b1 = sbrk(256 * 1024);
    char *b2 = sbrk(0);
    printf("sbrk(256K) moved break by %ld\n", (long)(b2 - b0));
    CHECK(b1 == b0 && b2 - b0 == 256 * 1024);
    memset(b1, 0x3c, 256 * 1024);
    long sum = 0;
    for (int i = 0; i < 256 * 1024; i += 1024)
        sum += b1[i];
    printf("brk area writable, sum=%ld\n", sum);
    sbrk(-128 * 1024);
    printf("after shrinking: break moved by %ld\n", (long)((char *)sbrk(0) - b0));
}

static void odd_syscalls(void)
{
    printf("== unusual syscalls ==\n");
    static char code[64];
    long rc = syscall(259 /* riscv_flush_icache */, code, code + sizeof code, 0L);
    printf("riscv_flush_icache rc=%ld\n", rc);
    errno = 0;
    rc = syscall(999);
    int e = errno;
    printf("syscall(999) = %ld errno=%d (%s)\n", rc, e, e == ENOSYS ? "ENOSYS" : "?");
    CHECK(rc == -1 && e == ENOSYS);
    errno = 0;
    rc = syscall(SYS_close, -1);
    printf("close(-1) = %ld errno=%d\n", rc, errno);
}

int main(int argc, char **argv)
{
    identity();
    time_calls();
    random_io();
    files(argc > 1 ? argv[1] : NULL);
    pipes();
    memory();
    odd_syscalls();
    printf("syscalls: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
