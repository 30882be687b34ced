/*
 * forkbomb: forks children that wait in pause() until fork fails, then
 * reports the error and kills them. Never run under qemu (it would fork real
 * host processes up to the host's limits): the vmx test checks that the
 * sandbox's process cap ends it with EAGAIN in the guest.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    static pid_t kids[100000];
    int n = 0;
    for (;;) {
        pid_t p = fork();
        if (p == 0) {
            pause();
            _exit(0);
        }
        if (p < 0) {
            printf("fork failed after %s100 children: %s\n", n >= 100 ? ">=" : "<",
                   strerror(errno));
            break;
        }
        kids[n++] = p;
        if (n == 100000)
            break;
    }
    for (int i = 0; i < n; i++)
        kill(kids[i], SIGKILL);
    int reaped = 0, st;
    while (wait(&st) > 0)
        reaped += WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
    printf("reaped all: %d\n", reaped == n);
    return 0;
}
