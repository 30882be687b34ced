/* sigdisp: prints the signals this process started with ignored (SIG_IGN), one line.
 * A program inherits ignored dispositions across execve (nohup ignores SIGHUP); the runner
 * must pass on what its own starter ignored, as qemu-riscv64 does. */
#include <signal.h>
#include <stdio.h>

int main(void) {
    struct sigaction sa;
    printf("ignored:");
    for (int sig = 1; sig <= 64; sig++) {
        if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
            printf(" %d", sig);
    }
    printf("\n");
    return 0;
}
