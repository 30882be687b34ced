/*
 * abort: abort() raises SIGABRT.
 *
 * Output written before the abort is flushed explicitly ("before abort");
 * output left in the stdio buffer is lost, exactly as on a real system (glibc's
 * abort does not flush streams), so "buffered, lost" must NOT appear.  Under
 * qemu-riscv64 the shell sees exit status 134 (128 + 6) and qemu prints
 * "qemu: uncaught target signal 6 (Aborted) - core dumped" on stderr.
 */
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    printf("before abort\n");
    fflush(stdout);
    fprintf(stderr, "stderr before abort\n");
    printf("buffered, lost\n"); /* stdout is a pipe in tests: fully buffered */
    abort();
}
