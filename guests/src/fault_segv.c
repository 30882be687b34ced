/*
 * fault_segv: a store to address 0x10 raises SIGSEGV.
 *
 * stdout is flushed first, so "before fault" must appear; nothing after it
 * may.  Under qemu-riscv64 the guest dies with SIGSEGV and qemu re-raises the
 * signal on itself, so a shell sees exit status 139 (128 + 11); qemu also
 * prints "qemu: uncaught target signal 11 (Segmentation fault) - core dumped"
 * on stderr.
 */
#include <stdint.h>
#include <stdio.h>

int main(void)
{
    printf("before fault\n");
    fflush(stdout);
    fprintf(stderr, "stderr before fault\n");
    volatile uintptr_t addr = 0x10; /* volatile: keep the compiler from seeing NULL+16 */
    *(volatile uint32_t *)addr = 0xdeadbeef;
    printf("after fault (must not be printed)\n");
    return 0;
}
