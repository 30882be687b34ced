/*
 * procs: fork, vfork, execve, wait4/waitpid/waitid statuses, pipes between
 * processes, inherited and close-on-exec descriptors, process groups and
 * sessions.
 *
 * Never prints a pid (they differ between runs); only relations between them.
 * Run from the repository root: it execs guests/bin/hello, itself
 * (argv[0]) and the scripts in guests/data/.
 *
 * "procs child-fd N": the exec'd helper mode; reports whether fd N is open.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void show(const char *what, int st)
{
    if (WIFEXITED(st))
        printf("%s: exited %d\n", what, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        printf("%s: signaled %d core=%d\n", what, WTERMSIG(st), WCOREDUMP(st) ? 1 : 0);
    else
        printf("%s: other %#x\n", what, st);
    fflush(stdout);
}

static int run_child(const char *what, void (*body)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        body();
        _exit(0);
    }
    int st = -1;
    pid_t got = waitpid(pid, &st, 0);
    if (got != pid)
        printf("%s: waitpid returned other pid (%s)\n", what, got < 0 ? strerror(errno) : "?");
    show(what, st);
    return st;
}

static void exit3(void) { _exit(3); }
static void exit255(void) { exit(255); }
static void exit256(void) { exit(256); }
static void do_abort(void) { abort(); }
static void do_segv(void) { *(volatile int *)16 = 1; }
static void kill_self_term(void) { kill(getpid(), SIGTERM); pause(); }
static void return_normally(void) { printf("child prints and returns\n"); fflush(stdout); }

static void exec_hello(void)
{
    char *argv[] = {"hello-from-exec", "a", "b", NULL};
    char *envp[] = {"VMX_TEST_VAR=from-exec", NULL};
    execve("guests/bin/hello", argv, envp);
    printf("execve failed: %s\n", strerror(errno));
    fflush(stdout);
    _exit(99);
}

static void exec_script(void)
{
    char *argv[] = {"guests/data/script_args", "x", "y z", NULL};
    char *envp[] = {NULL};
    execve("guests/data/script_args", argv, envp);
    printf("script execve failed: %s\n", strerror(errno));
    fflush(stdout);
    _exit(99);
}

static void try_exec(const char *path)
{
    char *argv[] = {(char *)path, NULL};
    char *envp[] = {NULL};
    errno = 0;
    int r = execve(path, argv, envp);
    printf("execve(%s) = %d, %s\n", path, r, strerror(errno));
}

static int child_fd_mode(int fd)
{
    struct stat sb;
    int open_ = fstat(fd, &sb) == 0;
    printf("exec'd child: fd %d is %s\n", fd, open_ ? "open" : "closed");
    if (open_) {
        const char *msg = "written through an inherited fd\n";
        if (write(fd, msg, strlen(msg)) < 0)
            printf("write failed: %s\n", strerror(errno));
    }
    return 7;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "child-fd") == 0)
        return child_fd_mode(atoi(argv[2]));
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);

    /* exit statuses and signals */
    run_child("exit 0", return_normally);
    run_child("exit 3", exit3);
    run_child("exit 255", exit255);
    run_child("exit 256", exit256);
    run_child("abort", do_abort);
    run_child("segv", do_segv);
    run_child("sigterm", kill_self_term);

    /* fork returns 0 in the child; getppid is the parent */
    fflush(stdout);
    pid_t me = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        printf("child: getppid is parent: %d, getpid differs: %d\n", getppid() == me,
               getpid() != me);
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    show("relations", st);

    /* memory is copied: the child's writes are not seen */
    static int shared_value = 1;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        shared_value = 2;
        _exit(shared_value);
    }
    waitpid(pid, &st, 0);
    printf("child saw 2 (status %d), parent still %d\n", WEXITSTATUS(st), shared_value);

    /* pipe: child writes, parent reads to EOF */
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        close(fds[0]);
        for (int i = 0; i < 100; i++) {
            char line[64];
            int n = snprintf(line, sizeof line, "line %d from child\n", i);
            if (write(fds[1], line, n) != n)
                _exit(2);
        }
        _exit(0);
    }
    close(fds[1]);
    char buf[8192];
    size_t total = 0, lines = 0;
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) {
        total += n;
        for (ssize_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    }
    close(fds[0]);
    waitpid(pid, &st, 0);
    printf("pipe: %zu bytes, %zu lines, read end %zd\n", total, lines, n);
    show("pipe writer", st);

    /* WNOHANG while the child waits on a pipe; then release it */
    if (pipe(fds) != 0)
        return 1;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        close(fds[1]);
        char c;
        ssize_t r = read(fds[0], &c, 1);
        _exit(r == 1 ? c : 100);
    }
    close(fds[0]);
    printf("WNOHANG while running: %d\n", waitpid(pid, &st, WNOHANG));
    if (write(fds[1], "\x2a", 1) != 1)
        return 1;
    close(fds[1]);
    waitpid(pid, &st, 0);
    show("released child", st);

    /* several children, reaped with wait() in any order */
    for (int i = 0; i < 5; i++) {
        fflush(stdout);
        if (fork() == 0)
            _exit(10 + i);
    }
    int sum = 0, count = 0;
    while ((pid = wait(&st)) > 0) {
        sum += WEXITSTATUS(st);
        count++;
    }
    printf("wait(): %d children, status sum %d, then %s\n", count, sum, strerror(errno));

    /* waitid */
    fflush(stdout);
    pid = fork();
    if (pid == 0)
        _exit(42);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_PID, pid, &si, WEXITED);
    printf("waitid: r=%d signo=%d code=%d status=%d pid matches=%d\n", r, si.si_signo,
           si.si_code, si.si_status, si.si_pid == pid);
    fflush(stdout);
    pid = fork();
    if (pid == 0)
        abort();
    memset(&si, 0, sizeof si);
    r = waitid(P_ALL, 0, &si, WEXITED);
    printf("waitid killed: r=%d code=%d status=%d\n", r, si.si_code, si.si_status);
    errno = 0;
    printf("waitpid with no child: %d %s\n", waitpid(-1, &st, 0), strerror(errno));
    errno = 0;
    printf("waitpid bad options: %d %s\n", waitpid(-1, &st, 0x1000), strerror(errno));

    /* process groups and sessions */
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        printf("child pgid is parent's: %d\n", getpgid(0) == getpgid(getppid()));
        printf("setpgid(0,0): %d, now own group: %d\n", setpgid(0, 0), getpgid(0) == getpid());
        pid_t s = setsid();
        printf("setsid in group leader: %d %s\n", s, s < 0 ? strerror(errno) : "");
        fflush(stdout);
        if (fork() == 0) {
            pid_t s2 = setsid();
            printf("grandchild setsid ok: %d, sid==pid: %d, pgrp==pid: %d\n", s2 == getpid(),
                   getsid(0) == getpid(), getpgrp() == getpid());
            fflush(stdout);
            _exit(0);
        }
        wait(NULL);
        _exit(0);
    }
    waitpid(pid, &st, 0);
    show("groups", st);
    errno = 0;
    printf("getpgid(unknown): %d %s\n", getpgid(999999), strerror(errno));
    int ng = getgroups(0, NULL);
    printf("getgroups count >= 0: %d\n", ng >= 0);

    /* exec */
    run_child("exec hello", exec_hello);
    run_child("exec script", exec_script);
    try_exec("guests/data/does-not-exist");
    try_exec("guests/data");
    try_exec("guests/data/input.txt");
    try_exec("guests/data/not_elf");

    /* inherited fds across exec; O_CLOEXEC ones closed */
    int keep[2], gone[2];
    if (pipe(keep) != 0 || pipe2(gone, O_CLOEXEC) != 0)
        return 1;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        char fdarg[16];
        snprintf(fdarg, sizeof fdarg, "%d", keep[1]);
        char *a1[] = {argv[0], "child-fd", fdarg, NULL};
        pid_t inner = fork();
        if (inner == 0) {
            execv(argv[0], a1);
            _exit(98);
        }
        int st2;
        waitpid(inner, &st2, 0);
        show("exec'd with inherited fd", st2);
        snprintf(fdarg, sizeof fdarg, "%d", gone[1]);
        execv(argv[0], a1);
        _exit(98);
    }
    close(keep[1]);
    close(gone[1]);
    waitpid(pid, &st, 0);
    show("exec'd with cloexec fd", st);
    n = read(keep[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("parent read from inherited fd: %s", buf);

    /* vfork: the child runs, then execs or exits */
    fflush(stdout);
    pid = vfork();
    if (pid == 0) {
        char *a[] = {"hello", NULL};
        execv("guests/bin/hello", a);
        _exit(97);
    }
    waitpid(pid, &st, 0);
    show("vfork+exec", st);
    pid = vfork();
    if (pid == 0)
        _exit(5);
    waitpid(pid, &st, 0);
    show("vfork+_exit", st);

    printf("done\n");
    return 0;
}
