/*
 * fault_kinds MODE: one guest fault of the kind MODE names, at a known address.
 *
 * Page A = 0x7000000 is read-write, page B = 0x7001000 read-only, page C = 0x7002000
 * unmapped (all with MAP_FIXED, so the fault address is the same under every runner):
 *   load     8-byte load from C              store    8-byte store to C
 *   rostore  4-byte store to B               amo      amoadd.w on C
 *   amoro    amoadd.d on B                   fld      fld from C
 *   fsd      fsd to B                        lbu      byte load from C + 5
 *   straddle misaligned 8-byte load at C - 4 (runs from B into C)
 *   straddlest misaligned 8-byte store at C - 4 (B is read-only, so it faults at C - 4)
 *   straddlewr misaligned 4-byte store at A + 0xffe into read-only B (faults at B)
 * Each prints its mode, then faults: the process dies of SIGSEGV (exit status 139).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define A ((uintptr_t)0x7000000)
#define B (A + 0x1000)
#define C (A + 0x2000)

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "load";
    if (mmap((void *)A, 0x3000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
             -1, 0) == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset((void *)A, 0x11, 0x2000);
    mprotect((void *)B, 0x1000, PROT_READ);
    munmap((void *)C, 0x1000);
    printf("mode %s\n", mode);
    fflush(stdout);
    uint64_t v = 0;
    double d = 0;
    if (!strcmp(mode, "load"))
        v = *(volatile uint64_t *)C;
    else if (!strcmp(mode, "store"))
        *(volatile uint64_t *)C = 1;
    else if (!strcmp(mode, "rostore"))
        *(volatile uint32_t *)(B + 8) = 1;
    else if (!strcmp(mode, "amo"))
        v = __atomic_fetch_add((uint32_t *)(C + 16), 1, __ATOMIC_SEQ_CST);
    else if (!strcmp(mode, "amoro"))
        v = __atomic_fetch_add((uint64_t *)(B + 24), 1, __ATOMIC_SEQ_CST);
    else if (!strcmp(mode, "fld"))
        d = *(volatile double *)(C + 32);
    else if (!strcmp(mode, "fsd"))
        *(volatile double *)(B + 40) = 1.5;
    else if (!strcmp(mode, "lbu"))
        v = *(volatile uint8_t *)(C + 5);
    else if (!strcmp(mode, "straddle")) {
        uint64_t x;
        __asm__ volatile("ld %0, 0(%1)" : "=r"(x) : "r"(C - 4) : "memory");
        v = x;
    } else if (!strcmp(mode, "straddlest")) {
        __asm__ volatile("sd %0, 0(%1)" ::"r"(v), "r"(C - 4) : "memory");
    } else if (!strcmp(mode, "straddlewr")) {
        __asm__ volatile("sw %0, 0(%1)" ::"r"(v), "r"(A + 0xffe) : "memory");
    }
    printf("no fault (must not be printed) %llu %f\n", (unsigned long long)v, d);
    return 0;
}
