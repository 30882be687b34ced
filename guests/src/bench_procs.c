/*
 * bench_procs: process and signal round trips for `cargo xtask bench-procs`.
 *
 *   bench_procs fork N            N x (fork; child _exit(0); parent waitpid)
 *   bench_procs exec N PROGRAM    N x (fork; child execve PROGRAM; parent waitpid)
 *   bench_procs signal N          N x (raise(SIGUSR1) -> handler -> return)
 *   bench_procs bigfork N MB      touch MB MiB of heap, then N x fork/exit/wait
 *
 * Prints one line with what it did (the timing is the caller's).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t hits;
static void on_usr1(int sig) { (void)sig; hits++; }

static int fork_wait(const char *prog)
{
    pid_t p = fork();
    if (p < 0)
        return -1;
    if (p == 0) {
        if (prog) {
            char *argv[] = {(char *)prog, NULL};
            char *envp[] = {NULL};
            execve(prog, argv, envp);
            _exit(127);
        }
        _exit(0);
    }
    int st;
    if (waitpid(p, &st, 0) != p || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    long n = atol(argv[2]);
    if (!strcmp(argv[1], "fork") || !strcmp(argv[1], "bigfork")) {
        long mb = argc > 3 ? atol(argv[3]) : 0;
        char *heap = mb ? malloc((size_t)mb << 20) : NULL;
        if (heap)
            for (long i = 0; i < (mb << 20); i += 4096)
                heap[i] = (char)i | 1;
        for (long i = 0; i < n; i++)
            if (fork_wait(NULL) != 0)
                return 1;
        printf("%s: %ld forks (%ld MiB touched)\n", argv[1], n, mb);
    } else if (!strcmp(argv[1], "exec") && argc > 3) {
        int fails = 0;
        for (long i = 0; i < n; i++)
            fails += fork_wait(argv[3]) != 0;
        printf("exec: %ld runs, %d failed\n", n, fails);
    } else if (!strcmp(argv[1], "signal")) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        sigaction(SIGUSR1, &sa, NULL);
        for (long i = 0; i < n; i++)
            raise(SIGUSR1);
        printf("signal: %d handled\n", (int)hits);
    } else {
        return 2;
    }
    return 0;
}
