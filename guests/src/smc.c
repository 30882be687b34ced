/*
 * smc: self-modifying and freshly generated code.
 *
 * An emulator that caches decoded instructions or translated blocks must notice
 * every one of these changes:
 *   1. generate `addi a0,a0,IMM; ret` in an RWX mmap, call, patch IMM,
 *      __builtin___clear_cache (riscv_flush_icache syscall), call again;
 *   2. a generated hot loop run 20000 times per call, then patched, 50 rounds;
 *   3. W^X style: write into RW, mprotect RX, call, mprotect RW, patch,
 *      mprotect RX, call;
 *   4. code that stores over one of its own later instructions, executes
 *      fence.i, then runs the patched instruction (same basic block);
 *   5. compressed (RVC) instructions patched in place;
 *   6. a 32-bit instruction straddling a page boundary whose second half
 *      (on the next page) is patched;
 *   7. munmap + mmap MAP_FIXED at the same address with different code;
 *   8. a data write into the same page as hot code (must not break anything).
 * Prints every result; exits 1 if a stale instruction was executed.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static int failures;

static void check(const char *name, int64_t got, int64_t want)
{
    int ok = got == want;
    failures += !ok;
    printf("%-44s = %" PRId64 " %s\n", name, got, ok ? "ok" : "FAIL");
    if (!ok)
        printf("%-44s   expected %" PRId64 "\n", "", want);
}

/* ---- encoders ---- */
enum { ZERO = 0, RA = 1, T0 = 5, T1 = 6, A0 = 10, A1 = 11 };
static uint32_t addi(int rd, int rs1, int imm) { return ((uint32_t)imm & 0xfff) << 20 | rs1 << 15 | rd << 7 | 0x13; }
static uint32_t sw(int rs2, int rs1, int off)
{
    return ((uint32_t)off >> 5 & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | 2 << 12 | ((uint32_t)off & 0x1f) << 7 | 0x23;
}
static uint32_t blt(int rs1, int rs2, int off)
{
    uint32_t o = (uint32_t)off;
    return (o >> 12 & 1) << 31 | (o >> 5 & 0x3f) << 25 | rs2 << 20 | rs1 << 15 | 4 << 12 |
           (o >> 1 & 0xf) << 8 | (o >> 11 & 1) << 7 | 0x63;
}
#define RET 0x00008067u
#define FENCE_I 0x0000100fu
static uint16_t c_li(int rd, int imm) { return (uint16_t)(2 << 13 | (imm >> 5 & 1) << 12 | rd << 7 | (imm & 0x1f) << 2 | 1); }
static uint16_t c_addi(int rd, int imm) { return (uint16_t)(0 << 13 | (imm >> 5 & 1) << 12 | rd << 7 | (imm & 0x1f) << 2 | 1); }
#define C_JR_RA 0x8082u

typedef int64_t (*fn1)(int64_t);
typedef int64_t (*fn2)(int64_t, int64_t);

static void put32(void *at, uint32_t insn) { memcpy(at, &insn, 4); }
static void put16(void *at, uint16_t insn) { memcpy(at, &insn, 2); }
static void flush(void *p, size_t n) { __builtin___clear_cache((char *)p, (char *)p + n); }

#define PAGE 4096

int main(void)
{
    unsigned char *rwx = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rwx == MAP_FAILED) {
        perror("mmap");
        return 2;
    }

    /* 1. patch an immediate */
    uint32_t *code = (uint32_t *)rwx;
    code[0] = addi(A0, A0, 5);
    code[1] = RET;
    flush(code, 8);
    fn1 f = (fn1)(void *)code;
    check("1. addi 5 (first version)", f(100), 105);
    put32(&code[0], addi(A0, A0, -7));
    flush(code, 8);
    check("1. addi -7 (patched)", f(100), 93);
    int64_t acc = 0;
    for (int i = 0; i < 200; i++) {
        put32(&code[0], addi(A0, A0, i));
        flush(code, 4);
        acc += f(1000);
    }
    check("1. 200 patch/call rounds", acc, 200 * 1000 + 199 * 200 / 2);

    /* 2. hot generated loop: a0 += K, a1 times */
    uint32_t *loop = (uint32_t *)(rwx + 256);
    loop[0] = addi(T0, ZERO, 0);
    loop[1] = addi(A0, A0, 1); /* K, patched */
    loop[2] = addi(T0, T0, 1);
    loop[3] = blt(T0, A1, -8);
    loop[4] = RET;
    flush(loop, 20);
    fn2 g = (fn2)(void *)loop;
    int64_t total = 0, want = 0;
    for (int k = 1; k <= 50; k++) {
        put32(&loop[1], addi(A0, A0, k * 3 - 70));
        flush(&loop[1], 4);
        total += g(0, 20000);
        want += (int64_t)(k * 3 - 70) * 20000;
    }
    check("2. hot loop patched 50 times", total, want);

    /* 3. W^X with mprotect */
    unsigned char *wx = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    put32(wx, addi(A0, A0, 11));
    put32(wx + 4, RET);
    mprotect(wx, PAGE, PROT_READ | PROT_EXEC);
    flush(wx, 8);
    check("3. RX version 1", ((fn1)(void *)wx)(1), 12);
    mprotect(wx, PAGE, PROT_READ | PROT_WRITE);
    put32(wx, addi(A0, A0, 22));
    mprotect(wx, PAGE, PROT_READ | PROT_EXEC);
    flush(wx, 8);
    check("3. RX version 2", ((fn1)(void *)wx)(1), 23);

    /* 4. code patching itself in the same block:
     *      sw a1, 8(a0)   ; a0 = address of this function
     *      fence.i
     *      addi a0, zero, 1   <- replaced by the word in a1
     *      ret
     */
    uint32_t *self = (uint32_t *)(rwx + 512);
    for (int round = 0; round < 5; round++) {
        self[0] = sw(A1, A0, 8);
        self[1] = FENCE_I;
        self[2] = addi(A0, ZERO, 1);
        self[3] = RET;
        flush(self, 16);
        fn2 h = (fn2)(void *)self;
        int64_t first = h((int64_t)(uintptr_t)self, addi(A0, ZERO, 40 + round));
        int64_t second = h((int64_t)(uintptr_t)self, addi(A0, ZERO, 50 + round));
        char name[64];
        snprintf(name, sizeof name, "4. self-patch round %d first call", round);
        check(name, first, 40 + round);
        snprintf(name, sizeof name, "4. self-patch round %d second call", round);
        check(name, second, 50 + round);
    }

    /* 5. compressed instructions */
    uint16_t *rvc = (uint16_t *)(rwx + 1024);
    rvc[0] = c_li(A0, 9);
    rvc[1] = c_addi(A0, 3);
    rvc[2] = C_JR_RA;
    flush(rvc, 6);
    fn1 c = (fn1)(void *)rvc;
    check("5. c.li 9; c.addi 3", c(0), 12);
    put16(&rvc[1], c_addi(A0, -20));
    flush(rvc, 6);
    check("5. c.addi patched to -20", c(0), -11);
    put16(&rvc[0], c_li(A0, -32));
    put16(&rvc[1], 0x0001); /* c.nop */
    flush(rvc, 6);
    check("5. c.li -32; c.nop", c(0), -32);
    /* replace the compressed pair by one 32-bit instruction */
    put32(&rvc[0], addi(A0, A0, 1000));
    flush(rvc, 6);
    check("5. two RVC -> one 32-bit addi", c(1), 1001);

    /* 6. an instruction straddling the page boundary rwx+PAGE */
    unsigned char *edge = rwx + PAGE - 2;
    /* c.nop at PAGE-4 keeps alignment; the 32-bit addi spans PAGE-2..PAGE+2 */
    put16(edge - 2, 0x0001);
    put32(edge, addi(A0, A0, 0x123));
    put32(edge + 4, RET);
    flush(edge - 2, 10);
    fn1 e = (fn1)(void *)(edge - 2);
    check("6. straddling addi 0x123", e(0), 0x123);
    /* only the upper half (imm[11:4] lives in the bytes on the next page) */
    uint32_t patched = addi(A0, A0, 0x456);
    put16(edge + 2, (uint16_t)(patched >> 16));
    flush(edge + 2, 2);
    check("6. upper half patched -> 0x456", e(0), 0x456);
    for (int i = 0; i < 100; i++)
        e(0);
    put16(edge + 2, (uint16_t)(addi(A0, A0, -1) >> 16));
    flush(edge + 2, 2);
    check("6. upper half patched again -> -1", e(0), -1);

    /* 7. unmap and map again at the same address */
    unsigned char *m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    put32(m, addi(A0, ZERO, 71));
    put32(m + 4, RET);
    flush(m, 8);
    int64_t v1 = 0;
    for (int i = 0; i < 1000; i++)
        v1 += ((fn1)(void *)m)(0);
    munmap(m, PAGE);
    unsigned char *m2 = mmap(m, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    check("7. remapped at same address", m2 == m, 1);
    put32(m2, addi(A0, ZERO, 72));
    put32(m2 + 4, RET);
    flush(m2, 8);
    check("7. old mapping x1000", v1, 71000);
    check("7. new mapping", ((fn1)(void *)m2)(0), 72);

    /* 8. data write next to hot code, same page; code must still be right */
    int64_t s = 0;
    volatile unsigned char *data = rwx + 2048;
    for (int i = 0; i < 3000; i++) {
        data[i % 64] = (unsigned char)i;
        s += f(i); /* code[0] is still addi a0,a0,199 from step 1 */
    }
    check("8. data writes in a code page", s, 3000LL * 2999 / 2 + 3000LL * 199);

    printf("smc: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
