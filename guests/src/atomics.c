/*
 * atomics: the A extension, single-threaded.
 *
 *  - C11 <stdatomic.h> and __atomic builtins on 8/16/32/64-bit objects
 *    (fetch_add/sub/and/or/xor, exchange, min/max via CAS loops); 32/64-bit
 *    ops become AMOs, compare_exchange becomes an LR/SC loop, and the 8/16-bit
 *    ones go through libatomic (masked LR/SC on the containing word);
 *  - inline asm lr.w/sc.w and lr.d/sc.d: success, failure without a
 *    reservation, failure on a different address, sign extension of lr.w;
 *  - every AMO (swap/add/and/or/xor/min/max/minu/maxu, .w and .d) on values
 *    with the sign bit set, checking both the returned old value (sign-extended
 *    for .w) and the memory afterwards.
 *
 * Prints every result; exits 1 if any check failed.
 *
 * guest-cflags: -latomic
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

static int failures;

static void check(const char *name, uint64_t got, uint64_t want)
{
    int ok = got == want;
    if (!ok)
        failures++;
    printf("%-34s = 0x%016" PRIx64 " %s\n", name, got, ok ? "ok" : "FAIL");
    if (!ok)
        printf("%-34s   expected 0x%016" PRIx64 "\n", "", want);
}

static void c11(void)
{
    printf("-- C11 / __atomic builtins --\n");
    _Atomic int32_t a32 = 0x7ffffff0;
    _Atomic int64_t a64 = INT64_MAX - 5;
    _Atomic uint8_t a8 = 250;
    _Atomic uint16_t a16 = 0xfff0;

    check("fetch_add32 old", (uint64_t)(int64_t)atomic_fetch_add(&a32, 0x20), 0x7ffffff0);
    check("fetch_add32 wrapped", (uint64_t)(int64_t)atomic_load(&a32), 0xffffffff80000010ull);
    check("fetch_sub32 old", (uint64_t)(int64_t)atomic_fetch_sub(&a32, 0x11), 0xffffffff80000010ull);
    check("fetch_sub32 new", (uint64_t)(int64_t)atomic_load(&a32), 0x7fffffff);
    check("fetch_and32", (uint64_t)(int64_t)atomic_fetch_and(&a32, (int32_t)0xf0f0f0f0), 0x7fffffff);
    check("  ->", (uint64_t)(int64_t)a32, 0x70f0f0f0);
    check("fetch_or32", (uint64_t)(int64_t)atomic_fetch_or(&a32, (int32_t)0x80000001), 0x70f0f0f0);
    check("  ->", (uint64_t)(int64_t)a32, 0xfffffffff0f0f0f1ull);
    check("fetch_xor32", (uint64_t)(int64_t)atomic_fetch_xor(&a32, -1), 0xfffffffff0f0f0f1ull);
    check("  ->", (uint64_t)(int64_t)a32, 0x0f0f0f0e);
    check("exchange32", (uint64_t)(int64_t)atomic_exchange(&a32, INT32_MIN), 0x0f0f0f0e);
    check("  ->", (uint64_t)(int64_t)a32, 0xffffffff80000000ull);

    check("fetch_add64 old", (uint64_t)atomic_fetch_add(&a64, 10), INT64_MAX - 5);
    check("fetch_add64 wrapped", (uint64_t)atomic_load(&a64), (uint64_t)INT64_MIN + 4);
    check("fetch_sub64", (uint64_t)atomic_fetch_sub(&a64, 5), (uint64_t)INT64_MIN + 4);
    check("  ->", (uint64_t)a64, (uint64_t)INT64_MAX);
    check("fetch_and64", (uint64_t)atomic_fetch_and(&a64, 0x0123456789abcdefll), INT64_MAX);
    check("fetch_or64", (uint64_t)atomic_fetch_or(&a64, INT64_MIN), 0x0123456789abcdefull);
    check("fetch_xor64", (uint64_t)atomic_fetch_xor(&a64, -1), 0x8123456789abcdefull);
    check("  ->", (uint64_t)a64, 0x7edcba9876543210ull);

    check("fetch_add8", atomic_fetch_add(&a8, 10), 250);
    check("  -> (wrap)", a8, 4);
    check("fetch_or16", atomic_fetch_or(&a16, 0x000f), 0xfff0);
    check("fetch_add16", atomic_fetch_add(&a16, 2), 0xffff);
    check("  -> (wrap)", a16, 1);
    uint8_t e8 = 4;
    check("cas8 success", atomic_compare_exchange_strong(&a8, &e8, 0x80), 1);
    e8 = 4;
    check("cas8 fail", atomic_compare_exchange_strong(&a8, &e8, 0x81), 0);
    check("  expected updated", e8, 0x80);

    /* compare_exchange: strong and weak loops (LR/SC) */
    int64_t exp64 = 0;
    check("cas64 fail", atomic_compare_exchange_strong(&a64, &exp64, 1), 0);
    check("  expected updated", (uint64_t)exp64, 0x7edcba9876543210ull);
    check("cas64 success", atomic_compare_exchange_strong(&a64, &exp64, -1), 1);
    check("  ->", (uint64_t)a64, UINT64_MAX);
    /* min/max/multiply via weak CAS loops */
    _Atomic int64_t mx = -100;
    const int64_t vals[] = {-5, 7, INT64_MIN, 3, INT64_MAX - 1, -7};
    int spins = 0;
    for (unsigned i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        int64_t cur = atomic_load_explicit(&mx, memory_order_relaxed);
        while (cur < vals[i] &&
               !atomic_compare_exchange_weak_explicit(&mx, &cur, vals[i], memory_order_acq_rel,
                                                      memory_order_relaxed))
            spins++;
    }
    check("cas-loop max64", (uint64_t)mx, INT64_MAX - 1);
    _Atomic uint32_t prod = 1;
    for (uint32_t i = 1; i <= 13; i++) {
        uint32_t cur = atomic_load(&prod);
        while (!atomic_compare_exchange_weak(&prod, &cur, cur * i))
            spins++;
    }
    check("cas-loop 13! mod 2^32", prod, 1932053504u);
    printf("(weak CAS spurious failures: %s)\n", spins == 0 ? "none" : "some");

    /* __atomic builtins with explicit orders, incl. add_fetch forms */
    int32_t w = -1;
    check("__atomic_add_fetch32", (uint64_t)(int64_t)__atomic_add_fetch(&w, 1, __ATOMIC_SEQ_CST), 0);
    check("__atomic_sub_fetch32", (uint64_t)(int64_t)__atomic_sub_fetch(&w, 1, __ATOMIC_RELAXED),
          UINT64_MAX);
    check("__atomic_nand_fetch32", (uint64_t)(int64_t)__atomic_nand_fetch(&w, 0x0ff0, __ATOMIC_ACQUIRE),
          0xfffffffffffff00full);
    uint64_t d = 0x8000000000000000ull;
    check("__atomic_exchange_n64", __atomic_exchange_n(&d, 5, __ATOMIC_RELEASE), 0x8000000000000000ull);
    check("__atomic_fetch_nand64", __atomic_fetch_nand(&d, 4, __ATOMIC_ACQ_REL), 5);
    check("  ->", d, 0xfffffffffffffffbull);
    check("__atomic_test_and_set", __atomic_test_and_set(&(char){0}, __ATOMIC_SEQ_CST), 0);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    atomic_signal_fence(memory_order_seq_cst);
    check("is_lock_free 8", atomic_is_lock_free(&a64), 1);
}

static void lrsc(void)
{
    printf("-- LR/SC --\n");
    static int64_t dw = 0x8000000000000001ll;
    static int32_t sw[2] = {(int32_t)0x80000001, 0};
    uint64_t old, fail, fail2;

    __asm__ volatile("lr.w %0, (%2)\n\t"
                     "sc.w %1, %3, (%2)"
                     : "=&r"(old), "=&r"(fail)
                     : "r"(&sw[0]), "r"(0x12345678)
                     : "memory");
    check("lr.w sign-extends", old, 0xffffffff80000001ull);
    check("sc.w success (0)", fail, 0);
    check("  memory", (uint64_t)(uint32_t)sw[0], 0x12345678);

    /* a second sc without a new lr has no reservation */
    __asm__ volatile("lr.w %0, (%3)\n\t"
                     "sc.w %1, %4, (%3)\n\t"
                     "sc.w %2, %5, (%3)"
                     : "=&r"(old), "=&r"(fail), "=&r"(fail2)
                     : "r"(&sw[0]), "r"(1), "r"(2)
                     : "memory");
    check("lr.w", old, 0x12345678);
    check("sc.w #1 success", fail, 0);
    check("sc.w #2 no reservation (nonzero)", fail2 != 0, 1);
    check("  memory", (uint64_t)(uint32_t)sw[0], 1);

    /* sc to an address other than the reserved one fails */
    __asm__ volatile("lr.w %0, (%2)\n\t"
                     "sc.w %1, %4, (%3)"
                     : "=&r"(old), "=&r"(fail)
                     : "r"(&sw[0]), "r"(&sw[1]), "r"(77)
                     : "memory");
    check("sc.w other address fails", fail != 0, 1);
    check("  other word untouched", (uint64_t)sw[1], 0);

    __asm__ volatile("lr.d.aq %0, (%2)\n\t"
                     "sc.d.rl %1, %3, (%2)"
                     : "=&r"(old), "=&r"(fail)
                     : "r"(&dw), "r"(-2ll)
                     : "memory");
    check("lr.d", old, 0x8000000000000001ull);
    check("sc.d success", fail, 0);
    check("  memory", (uint64_t)dw, 0xfffffffffffffffeull);

    /* hand-written LR/SC increment loop */
    for (int i = 0; i < 1000; i++) {
        uint64_t tmp, f;
        __asm__ volatile("1: lr.d.aqrl %0, (%2)\n\t"
                         "addi %0, %0, 3\n\t"
                         "sc.d.aqrl %1, %0, (%2)\n\t"
                         "bnez %1, 1b"
                         : "=&r"(tmp), "=&r"(f)
                         : "r"(&dw)
                         : "memory");
    }
    check("lr/sc loop +3000", (uint64_t)dw, 0xfffffffffffffffeull + 3000);

    /* hand-written 32-bit CAS */
    int32_t expected = 1, desired = -5;
    uint64_t prev;
    __asm__ volatile("1: lr.w %0, (%1)\n\t"
                     "bne %0, %2, 2f\n\t"
                     "sc.w t0, %3, (%1)\n\t"
                     "bnez t0, 1b\n"
                     "2:"
                     : "=&r"(prev)
                     : "r"(&sw[0]), "r"((int64_t)expected), "r"((int64_t)desired)
                     : "t0", "memory");
    check("asm cas32 prev", prev, 1);
    check("  memory", (uint64_t)(int64_t)sw[0], (uint64_t)-5);
}

#define AMO(insn, ptr, val)                                                    \
    ({                                                                         \
        uint64_t o_;                                                           \
        __asm__ volatile(insn " %0, %2, (%1)" : "=&r"(o_) : "r"(ptr), "r"(val) : "memory"); \
        o_;                                                                    \
    })

static void amos(void)
{
    printf("-- AMOs --\n");
    static int32_t w;
    static int64_t d;
    uint64_t o;

    /* 32-bit: operands are the low 32 bits, old value returned sign-extended */
    w = (int32_t)0x80000000;
    o = AMO("amoswap.w", &w, 0x00000000ffffffffull);
    check("amoswap.w old", o, 0xffffffff80000000ull);
    check("  mem", (uint64_t)(uint32_t)w, 0xffffffff);
    o = AMO("amoadd.w", &w, 0x1234567800000002ull);
    check("amoadd.w old", o, UINT64_MAX);
    check("  mem", (uint64_t)(uint32_t)w, 1);
    w = -5;
    o = AMO("amomin.w", &w, 3);
    check("amomin.w old", o, (uint64_t)-5);
    check("  mem (signed min)", (uint64_t)(int64_t)w, (uint64_t)-5);
    o = AMO("amominu.w", &w, 3);
    check("amominu.w old", o, (uint64_t)-5);
    check("  mem (unsigned min)", (uint64_t)(int64_t)w, 3);
    o = AMO("amomax.w", &w, 0xffffffff80000000ull);
    check("amomax.w old", o, 3);
    check("  mem (signed max)", (uint64_t)(int64_t)w, 3);
    o = AMO("amomaxu.w", &w, 0x0000000080000000ull); /* upper bits ignored */
    check("amomaxu.w old", o, 3);
    check("  mem (unsigned max)", (uint64_t)(uint32_t)w, 0x80000000);
    o = AMO("amomin.w", &w, 0x7fffffff);
    check("amomin.w old", o, 0xffffffff80000000ull);
    check("  mem", (uint64_t)(uint32_t)w, 0x80000000);
    o = AMO("amoand.w.aq", &w, 0xffffffffc0000001ull);
    check("amoand.w", o, 0xffffffff80000000ull);
    o = AMO("amoor.w.rl", &w, 0x7f);
    check("amoor.w", o, 0xffffffff80000000ull);
    o = AMO("amoxor.w.aqrl", &w, 0xffffffffull);
    check("amoxor.w", o, 0xffffffff8000007full);
    check("  mem", (uint64_t)(uint32_t)w, 0x7fffff80);

    d = INT64_MIN;
    o = AMO("amomaxu.d", &d, 0x7fffffffffffffffull);
    check("amomaxu.d old", o, 0x8000000000000000ull);
    check("  mem", (uint64_t)d, 0x8000000000000000ull);
    o = AMO("amomax.d", &d, 0x7fffffffffffffffull);
    check("amomax.d old", o, 0x8000000000000000ull);
    check("  mem", (uint64_t)d, 0x7fffffffffffffffull);
    o = AMO("amomin.d", &d, (uint64_t)-1);
    check("amomin.d", o, 0x7fffffffffffffffull);
    check("  mem", (uint64_t)d, UINT64_MAX);
    o = AMO("amominu.d", &d, 0x8000000000000000ull);
    check("amominu.d", o, UINT64_MAX);
    check("  mem", (uint64_t)d, 0x8000000000000000ull);
    o = AMO("amoadd.d", &d, 0x8000000000000000ull);
    check("amoadd.d", o, 0x8000000000000000ull);
    check("  mem (wrap)", (uint64_t)d, 0);
    o = AMO("amoswap.d.aqrl", &d, 0xdeadbeefcafef00dull);
    check("amoswap.d", o, 0);
    o = AMO("amoand.d", &d, 0xffff0000ffff0000ull);
    o = AMO("amoor.d", &d, 0x1);
    check("amoor.d", o, 0xdead0000cafe0000ull);
    o = AMO("amoxor.d", &d, UINT64_MAX);
    check("amoxor.d", o, 0xdead0000cafe0001ull);
    check("  mem", (uint64_t)d, 0x2152ffff3501fffeull);

    /* rd = x0 form (result discarded) */
    __asm__ volatile("amoadd.d zero, %1, (%0)" : : "r"(&d), "r"(2ll) : "memory");
    check("amoadd.d rd=zero", (uint64_t)d, 0x2152ffff35020000ull);
    /* rd == rs2 */
    uint64_t v = 7;
    __asm__ volatile("amoswap.d %0, %0, (%1)" : "+r"(v) : "r"(&d) : "memory");
    check("amoswap rd==rs2 old", v, 0x2152ffff35020000ull);
    check("  mem", (uint64_t)d, 7);
}

int main(void)
{
    c11();
    lrsc();
    amos();
    printf("atomics: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
