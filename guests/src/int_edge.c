/*
 * int_edge: integer corner cases of RV64IM.
 *
 * Division/remainder by zero and signed overflow (INT64_MIN / -1 and the
 * 32-bit "w" forms), high multiplies (mulh/mulhu/mulhsu, both via inline asm
 * and via __int128), shift amounts that exceed the register width (only the
 * low 6 / 5 bits count), and sign extension of 32-bit results.
 *
 * Operations whose C semantics would be undefined are done with inline asm so
 * the result is what the hardware instruction defines.  Every value is also
 * checked against the ISA-specified expectation; the program prints every
 * result and exits with 1 if any check failed.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

static int failures;

static void check(const char *name, uint64_t got, uint64_t want)
{
    int ok = got == want;
    if (!ok)
        failures++;
    printf("%-28s = 0x%016" PRIx64 " %s\n", name, got, ok ? "ok" : "FAIL");
    if (!ok)
        printf("%-28s   expected 0x%016" PRIx64 "\n", "", want);
}

#define RR(op, a, b)                                                          \
    ({                                                                        \
        uint64_t r_;                                                          \
        __asm__ volatile(op " %0, %1, %2" : "=r"(r_) : "r"(a), "r"(b));       \
        r_;                                                                   \
    })

/* volatile sources so nothing is folded at compile time */
static volatile int64_t v_min64 = INT64_MIN;
static volatile int64_t v_m1 = -1;
static volatile int64_t v_zero = 0;
static volatile int64_t v_seven = 7;
static volatile int64_t v_m7 = -7;
static volatile int64_t v_two = 2;
static volatile uint64_t v_umax = UINT64_MAX;
static volatile int32_t v_min32 = INT32_MIN;
static volatile uint64_t v_pattern = 0x8000000180000001ull;
static volatile uint64_t v_big = 0x123456789abcdef0ull;

static void division(void)
{
    printf("-- division --\n");
    int64_t a = v_seven, b = v_two, m = v_m7, z = v_zero, mn = v_min64, n1 = v_m1;
    uint64_t um = v_umax;

    check("div 7/2", RR("div", a, b), 3);
    check("div -7/2", RR("div", m, b), (uint64_t)-3);
    check("rem -7%2", RR("rem", m, b), (uint64_t)-1);
    check("rem 7%-7", RR("rem", a, m), 0);
    check("divu -7/2", RR("divu", m, b), (uint64_t)-7 / 2);
    check("remu -7%2", RR("remu", m, b), 1);
    /* by zero: quotient all ones, remainder = dividend */
    check("div 7/0", RR("div", a, z), UINT64_MAX);
    check("divu 7/0", RR("divu", a, z), UINT64_MAX);
    check("rem 7%0", RR("rem", a, z), 7);
    check("remu -7%0", RR("remu", m, z), (uint64_t)-7);
    check("div min/0", RR("div", mn, z), UINT64_MAX);
    /* overflow: quotient = dividend, remainder 0 */
    check("div min/-1", RR("div", mn, n1), (uint64_t)INT64_MIN);
    check("rem min%-1", RR("rem", mn, n1), 0);
    check("divu min/-1", RR("divu", mn, n1), 0);
    check("remu min%-1", RR("remu", mn, n1), (uint64_t)INT64_MIN);
    check("divu max/1", RR("divu", um, (uint64_t)1), UINT64_MAX);

    /* 32-bit forms: operate on low 32 bits, sign-extend the 32-bit result */
    int64_t mn32 = v_min32; /* 0xffffffff80000000 */
    uint64_t junk_hi = 0xdeadbeef00000007ull; /* low word 7 */
    check("divw 7/2 (junk hi)", RR("divw", junk_hi, b), 3);
    check("divw min32/-1", RR("divw", mn32, n1), (uint64_t)(int64_t)INT32_MIN);
    check("remw min32%-1", RR("remw", mn32, n1), 0);
    check("divw 7/0", RR("divw", a, z), UINT64_MAX);
    check("divuw 7/0", RR("divuw", a, z), UINT64_MAX);
    check("remw -7%0", RR("remw", m, z), (uint64_t)-7);
    check("remuw -7%0", RR("remuw", m, z), (uint64_t)-7); /* 0xfffffff9 sext */
    check("divuw -7/2", RR("divuw", m, b), 0x7ffffffc);
    check("remuw -7%2", RR("remuw", m, b), 1);
    check("divuw min32/1", RR("divuw", mn32, (uint64_t)1), 0xffffffff80000000ull);
    /* divisor whose low word is zero but high word non-zero counts as zero */
    check("divw 7/(1<<32)", RR("divw", a, (uint64_t)1 << 32), UINT64_MAX);
    check("remw 7%(1<<32)", RR("remw", a, (uint64_t)1 << 32), 7);

    /* the C operators on well-defined inputs */
    volatile int64_t q = v_m7 / v_two, r = v_m7 % v_two;
    volatile int32_t q32 = (int32_t)v_m7 / (int32_t)v_two;
    check("C -7/2", (uint64_t)q, (uint64_t)-3);
    check("C -7%2", (uint64_t)r, (uint64_t)-1);
    check("C (int)-7/2", (uint64_t)(int64_t)q32, (uint64_t)-3);
    check("C umax/3", v_umax / 3, 0x5555555555555555ull);
    check("C umax%10", v_umax % 10, 5);
}

static void multiply(void)
{
    printf("-- multiply --\n");
    int64_t mn = v_min64, n1 = v_m1;
    uint64_t um = v_umax, big = v_big;

    check("mul min*-1", RR("mul", mn, n1), (uint64_t)INT64_MIN);
    check("mulh min*-1", RR("mulh", mn, n1), 0);
    check("mulh min*min", RR("mulh", mn, mn), 0x4000000000000000ull);
    check("mulhu max*max", RR("mulhu", um, um), 0xfffffffffffffffeull);
    check("mulhsu -1*max", RR("mulhsu", n1, um), UINT64_MAX);
    check("mulhsu min*max", RR("mulhsu", mn, um), 0x8000000000000000ull);
    check("mulhsu 7*max", RR("mulhsu", (uint64_t)v_seven, um), 6);
    check("mulw 2^31*2 (sext)", RR("mulw", (uint64_t)0x80000000u, (uint64_t)v_two), 0);
    check("mulw 0x7fffffff*2", RR("mulw", (uint64_t)0x7fffffff, (uint64_t)v_two),
          0xfffffffffffffffeull);

    /* the same via __int128 so the compiler emits mulh* itself */
    __int128 s = (__int128)(int64_t)big * (int64_t)v_m7;
    unsigned __int128 u = (unsigned __int128)big * v_umax;
    __int128 su = (__int128)(int64_t)v_m7 * (unsigned __int128)big;
    check("i128 big*-7 lo", (uint64_t)s, (uint64_t)((int64_t)0x123456789abcdef0ll * -7));
    check("i128 big*-7 hi", (uint64_t)(s >> 64), RR("mulh", big, (uint64_t)v_m7));
    check("u128 big*max hi", (uint64_t)(u >> 64), 0x123456789abcdeefull);
    check("u128 big*max lo", (uint64_t)u, (uint64_t)-(int64_t)0x123456789abcdef0ll);
    check("su128 -7*big hi", (uint64_t)(su >> 64), RR("mulhsu", (uint64_t)v_m7, big));
    check("mulh -7*big", RR("mulh", (uint64_t)v_m7, big), UINT64_MAX);
    check("mulhu big*big", RR("mulhu", big, big), 0x014b66dc33f6acdcull);
}

static void shifts(void)
{
    printf("-- shifts --\n");
    uint64_t p = v_pattern;
    check("sll p,1", RR("sll", p, (uint64_t)1), 0x0000000300000002ull);
    check("sll p,65 (=1)", RR("sll", p, (uint64_t)65), 0x0000000300000002ull);
    check("srl p,64 (=0)", RR("srl", p, (uint64_t)64), p);
    check("srl p,63", RR("srl", p, (uint64_t)63), 1);
    check("sra p,63", RR("sra", p, (uint64_t)63), UINT64_MAX);
    check("sra p,-1 (=63)", RR("sra", p, (uint64_t)-1), UINT64_MAX);
    check("sra p,4", RR("sra", p, (uint64_t)4), 0xf800000018000000ull);
    check("sllw p,1", RR("sllw", p, (uint64_t)1), 2);
    check("sllw p,31", RR("sllw", p, (uint64_t)31), 0xffffffff80000000ull);
    check("sllw p,33 (=1)", RR("sllw", p, (uint64_t)33), 2);
    check("srlw p,0", RR("srlw", p, (uint64_t)0), 0xffffffff80000001ull);
    check("srlw p,1", RR("srlw", p, (uint64_t)1), 0x40000000);
    check("srlw p,32 (=0)", RR("srlw", p, (uint64_t)32), 0xffffffff80000001ull);
    check("sraw p,1", RR("sraw", p, (uint64_t)1), 0xffffffffc0000000ull);
    check("sraw p,31", RR("sraw", p, (uint64_t)31), UINT64_MAX);
    uint64_t r;
    __asm__ volatile("slliw %0, %1, 31" : "=r"(r) : "r"(p));
    check("slliw p,31", r, 0xffffffff80000000ull);
    __asm__ volatile("srliw %0, %1, 31" : "=r"(r) : "r"(p));
    check("srliw p,31", r, 1);
    __asm__ volatile("sraiw %0, %1, 0" : "=r"(r) : "r"((uint64_t)0x00000000fffffffeull));
    check("sraiw x,0 (sext.w)", r, 0xfffffffffffffffeull);
    __asm__ volatile("srai %0, %1, 63" : "=r"(r) : "r"(p));
    check("srai p,63", r, UINT64_MAX);
    __asm__ volatile("srli %0, %1, 63" : "=r"(r) : "r"(p));
    check("srli p,63", r, 1);

    /* C shifts with variable (in-range) amounts */
    volatile int sh = 13;
    check("C u64 << 13", v_big << sh, 0x8acf13579bde0000ull);
    check("C i64 >> 13", (uint64_t)((int64_t)v_pattern >> sh), 0xfffc0000000c0000ull);
    check("C u32 >> 13", (uint32_t)v_pattern >> sh, 0x40000);
    check("C i32 >> 13", (uint64_t)(int64_t)((int32_t)v_pattern >> sh), 0xfffffffffffc0000ull);
}

static void sign_extension(void)
{
    printf("-- sign extension --\n");
    uint64_t r;
    check("addw 0x7fffffff+1", RR("addw", (uint64_t)0x7fffffff, (uint64_t)1),
          0xffffffff80000000ull);
    check("subw 0-1", RR("subw", (uint64_t)v_zero, (uint64_t)1), UINT64_MAX);
    check("subw hi junk", RR("subw", (uint64_t)0xabcdef0000000005ull, (uint64_t)3), 2);
    __asm__ volatile("addiw %0, %1, 1" : "=r"(r) : "r"((uint64_t)0xffffffff7fffffffull));
    check("addiw 0x..7fffffff+1", r, 0xffffffff80000000ull);
    __asm__ volatile("addiw %0, %1, 0" : "=r"(r) : "r"((uint64_t)0x12345678deadbeefull));
    check("sext.w deadbeef", r, 0xffffffffdeadbeefull);
    __asm__ volatile("lui %0, 0x80000" : "=r"(r));
    check("lui 0x80000", r, 0xffffffff80000000ull);
    __asm__ volatile("lui %0, 0xfffff" : "=r"(r));
    check("lui 0xfffff", r, 0xfffffffffffff000ull);
    __asm__ volatile("li %0, -2048" : "=r"(r));
    check("li -2048", r, 0xfffffffffffff800ull);
    __asm__ volatile("slti %0, %1, -1" : "=r"(r) : "r"((uint64_t)INT64_MIN));
    check("slti min<-1", r, 1);
    __asm__ volatile("sltiu %0, %1, -1" : "=r"(r) : "r"((uint64_t)5));
    check("sltiu 5<umax", r, 1);
    check("slt min<0", RR("slt", (uint64_t)v_min64, (uint64_t)v_zero), 1);
    check("sltu min<0", RR("sltu", (uint64_t)v_min64, (uint64_t)v_zero), 0);

    volatile uint8_t b = 0x80;
    volatile uint16_t h = 0x8001;
    volatile uint32_t w = 0x80000001u;
    check("(int8_t)0x80", (uint64_t)(int64_t)(int8_t)b, 0xffffffffffffff80ull);
    check("(int16_t)0x8001", (uint64_t)(int64_t)(int16_t)h, 0xffffffffffff8001ull);
    check("(int32_t)0x80000001", (uint64_t)(int64_t)(int32_t)w, 0xffffffff80000001ull);
    check("(uint32_t) zext", (uint64_t)w, 0x80000001ull);

    /* loads: lb/lh/lw sign extend, lbu/lhu/lwu zero extend */
    static volatile uint64_t mem = 0x8182838485868788ull;
    volatile uint64_t *mp = &mem;
    __asm__ volatile("lb %0, 0(%1)" : "=r"(r) : "r"(mp));
    check("lb", r, 0xffffffffffffff88ull);
    __asm__ volatile("lbu %0, 0(%1)" : "=r"(r) : "r"(mp));
    check("lbu", r, 0x88);
    __asm__ volatile("lh %0, 0(%1)" : "=r"(r) : "r"(mp));
    check("lh", r, 0xffffffffffff8788ull);
    __asm__ volatile("lhu %0, 0(%1)" : "=r"(r) : "r"(mp));
    check("lhu", r, 0x8788);
    __asm__ volatile("lw %0, 4(%1)" : "=r"(r) : "r"(mp));
    check("lw +4", r, 0xffffffff81828384ull);
    __asm__ volatile("lwu %0, 4(%1)" : "=r"(r) : "r"(mp));
    check("lwu +4", r, 0x81828384ull);

    /* int overflow wrap via unsigned arithmetic */
    volatile uint32_t a32 = 0xffffffffu;
    check("u32 wrap", (uint64_t)(uint32_t)(a32 + 1u), 0);
    volatile int64_t i = INT64_MAX;
    check("u64 wrap", (uint64_t)i + 1u, 0x8000000000000000ull);
}

int main(void)
{
    division();
    multiply();
    shifts();
    sign_extension();
    printf("int_edge: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
