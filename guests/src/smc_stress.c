/*
 * smc_stress: the cost of code invalidation, for `cargo xtask bench-smc`.
 *
 *   smc_stress fencei N    runs N `fence.i` instructions, each followed by a call
 *                          into already translated code;
 *   smc_stress rewrite N   writes N distinct snippets (`li a0,K; addi a0,a0,K; ret`)
 *                          round robin over 1,024 slots of an RWX buffer, flushes the
 *                          instruction cache and calls each one once.
 * Prints the sum of the results, so a stale snippet changes the output.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int64_t __attribute__((noinline)) work(int64_t x) { return x * 3 + 1; }

static uint32_t addi(int rd, int rs1, int imm)
{
    return ((uint32_t)(imm & 0xfff) << 20) | (rs1 << 15) | (0 << 12) | (rd << 7) | 0x13;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "rewrite";
    long n = argc > 2 ? atol(argv[2]) : 16000;
    int64_t sum = 0;
    if (strcmp(mode, "fencei") == 0) {
        for (long i = 0; i < n; i++) {
            __asm__ volatile("fence.i" ::: "memory");
            sum += work(i);
        }
    } else {
        enum { SLOTS = 1024, SLOT = 64 };
        uint8_t *buf = mmap(0, SLOTS * SLOT, PROT_READ | PROT_WRITE | PROT_EXEC,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        for (long i = 0; i < n; i++) {
            uint32_t *p = (uint32_t *)(buf + (i % SLOTS) * SLOT);
            int k = (int)(i % 2000);
            p[0] = addi(10, 0, k);  /* li a0, k */
            p[1] = addi(10, 10, k); /* addi a0, a0, k */
            p[2] = 0x00008067;      /* ret */
            __builtin___clear_cache((char *)p, (char *)(p + 3));
            sum += ((int64_t(*)(void))p)();
        }
    }
    printf("%s %ld: %" PRId64 "\n", mode, n, sum);
    return 0;
}
