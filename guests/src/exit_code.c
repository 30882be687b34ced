/*
 * exit_code: returns 42 from main after writing to both stdout and stderr.
 *
 * stdout (a pipe under the test harness, so fully buffered) gets several
 * lines, a line without a trailing newline, and a line written by an atexit
 * handler; stderr (unbuffered) gets lines in between.  All of it must arrive:
 * returning from main runs atexit handlers and then flushes stdio.  The
 * relative order of the two streams is only observable if the harness merges
 * them, in which case all stderr lines come first (they are written
 * immediately) and stdout arrives at exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void at_exit_1(void) { printf("atexit handler 1 (registered first, runs last)\n"); }
static void at_exit_2(void) { printf("atexit handler 2\n"); fprintf(stderr, "stderr from atexit\n"); }

int main(void)
{
    atexit(at_exit_1);
    atexit(at_exit_2);
    printf("stdout line 1\n");
    fprintf(stderr, "stderr line 1\n");
    printf("stdout line 2\n");
    static const char raw[] = "raw write to fd 1 (unbuffered, appears before buffered stdout)\n";
    if (write(1, raw, sizeof raw - 1) != (ssize_t)(sizeof raw - 1))
        return 1;
    fprintf(stderr, "stderr line 2\n");
    for (int i = 0; i < 3; i++)
        printf("stdout loop %d\n", i);
    printf("no trailing newline");
    return 42;
}
