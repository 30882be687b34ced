/*
 * float: RV64 F/D semantics and the libm/libc paths that sit on top of them.
 *
 *  1. arithmetic under every rounding mode, both the dynamic mode set with
 *     fesetround() and static rounding modes encoded in the instruction
 *     (including rmm, which C cannot select);
 *  2. NaN-boxing of single-precision values held in 64-bit FP registers;
 *  3. accrued exception flags (fflags) after inexact / overflow / underflow /
 *     invalid / divide-by-zero operations, read via fetestexcept and frflags;
 *  4. float <-> integer conversions including out-of-range values and NaN,
 *     checked against a reference written in plain C;
 *  5. fmin/fmax with NaNs and signed zeros, comparisons, fclass, sign injection;
 *  6. fused multiply-add (fma(), fmsub, fnmadd, fnmsub);
 *  7. printf of many doubles with %f %e %g %a;
 *  8. lround/llround/round/rint/nearbyint/floor/ceil/trunc/lrint;
 *  9. strtod/strtof of tricky strings, also under a directed rounding mode.
 *
 * Results are printed as exact bit patterns so any difference shows.  Checks
 * with an ISA-defined answer print "FAIL" on mismatch and make the exit status 1.
 */
#include <errno.h>
#include <fenv.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static uint64_t dbits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }
static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static double bdbl(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }
static float bflt(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* fflags: NV DZ OF UF NX = bits 4..0 */
static const char *flagstr(unsigned fl)
{
    static char buf[6][20];
    static int slot;
    char *b = buf[slot++ % 6];
    snprintf(b, 20, "%s%s%s%s%s%s", fl & 16 ? "NV " : "", fl & 8 ? "DZ " : "",
             fl & 4 ? "OF " : "", fl & 2 ? "UF " : "", fl & 1 ? "NX " : "",
             fl ? "" : "-");
    return b;
}

static void check_u64(const char *name, uint64_t got, uint64_t want)
{
    if (got != want) {
        failures++;
        printf("FAIL %s: got 0x%016" PRIx64 " want 0x%016" PRIx64 "\n", name, got, want);
    }
}

static void pd(const char *name, double d)
{
    printf("  %-34s %016" PRIx64 " %-24a %.17g\n", name, dbits(d), d, d);
}

static void pf(const char *name, float f)
{
    printf("  %-34s %08" PRIx32 " %-24a %.9g\n", name, fbits(f), (double)f, (double)f);
}

/*
 * Run one FP instruction with fflags cleared before and read after, all in a
 * single asm block so the compiler cannot move anything in between.  The
 * instruction text uses %0 for the result, %2.. for the inputs; %1 is the
 * flags.  A variable `unsigned fl` must be in scope.
 */
#define FLAGGED(rtype, rcons, text, ...)                                       \
    ({                                                                         \
        rtype r_;                                                              \
        __asm__ volatile("csrw fflags, zero\n\t" text "\n\tfrflags %1"         \
                         : "=&" rcons(r_), "=&r"(fl)                           \
                         : __VA_ARGS__);                                       \
        r_;                                                                    \
    })
#define FD(text, ...) FLAGGED(double, "f", text, __VA_ARGS__)
#define FS(text, ...) FLAGGED(float, "f", text, __VA_ARGS__)
#define FX(text, ...) FLAGGED(uint64_t, "r", text, __VA_ARGS__)

static volatile double v_one = 1.0, v_three = 3.0, v_two = 2.0, v_ten = 10.0;
static volatile double v_tenth = 0.1, v_zero = 0.0, v_mzero = -0.0;
static volatile double v_dmax = DBL_MAX, v_dmin = DBL_MIN;
static volatile float v_onef = 1.0f, v_threef = 3.0f, v_tenthf = 0.1f;

static const int modes[4] = {FE_TONEAREST, FE_DOWNWARD, FE_UPWARD, FE_TOWARDZERO};
static const char *mode_names[4] = {"nearest", "downward", "upward", "towardzero"};

/* ---------- 1. rounding modes ---------- */
static void rounding_modes(void)
{
    printf("== 1. rounding modes (fesetround) ==\n");
    double res[4][8];
    for (int m = 0; m < 4; m++) {
        if (fesetround(modes[m]) != 0) {
            printf("fesetround failed\n");
            failures++;
        }
        unsigned frm;
        __asm__ volatile("frrm %0" : "=r"(frm));
        printf("-- %s (frm=%u, fegetround matches: %d)\n", mode_names[m], frm,
               fegetround() == modes[m]);
        volatile double r;
        volatile float rf;
        volatile int32_t i32 = 16777217;
        volatile int64_t i64 = (1ll << 53) + 1;
        volatile uint64_t u64 = UINT64_MAX;
        r = v_one / v_three;              res[m][0] = r; pd("1/3", r);
        r = -v_one / v_three;             res[m][1] = r; pd("-1/3", r);
        r = v_one + ldexp(v_one, -60);    res[m][2] = r; pd("1+2^-60", r);
        r = v_tenth * v_three;            res[m][3] = r; pd("0.1*3", r);
        r = sqrt(v_two);                  res[m][4] = r; pd("sqrt(2)", r);
        r = fma(v_tenth, v_ten, -v_one);  res[m][5] = r; pd("fma(0.1,10,-1)", r);
        r = v_dmax * v_two;               res[m][6] = r; pd("DBL_MAX*2", r);
        r = -v_dmax - v_dmax;             res[m][7] = r; pd("-DBL_MAX-DBL_MAX", r);
        r = v_one - v_one;                pd("1-1 (sign of zero)", r);
        r = v_mzero + v_zero;             pd("-0 + +0", r);
        rf = v_onef / v_threef;           pf("1f/3f", rf);
        rf = sqrtf(v_tenthf);             pf("sqrtf(0.1f)", rf);
        rf = (float)v_tenth;              pf("(float)0.1", rf);
        rf = (float)i32;                  pf("(float)16777217", rf);
        r = (double)i64;                  pd("(double)(2^53+1)", r);
        r = (double)u64;                  pd("(double)UINT64_MAX", r);
        rf = (float)u64;                  pf("(float)UINT64_MAX", rf);
        printf("  %-34s %ld %ld %ld %ld\n", "lrint(2.5,-2.5,3.5,-0.5)", lrint(2.5 * v_one),
               lrint(-2.5 * v_one), lrint(3.5 * v_one), lrint(-0.5 * v_one));
        printf("  %-34s %.1f %.1f %.2f %.0f %.3e\n", "printf 0.25 -0.25 1.005 0.5 2/3",
               0.25 * v_one, -0.25 * v_one, 1.005 * v_one, 0.5 * v_one, 2 / v_three);
    }
    fesetround(FE_TONEAREST);
    /* relational sanity: down <= nearest <= up, nearest is one of them,
     * toward-zero equals down for positives and up for negatives */
    for (int i = 0; i < 8; i++) {
        char name[32];
        snprintf(name, sizeof name, "order[%d]", i);
        int ok = res[1][i] <= res[0][i] && res[0][i] <= res[2][i] &&
                 (res[0][i] == res[1][i] || res[0][i] == res[2][i]);
        double tz = res[0][i] > 0 ? res[1][i] : res[2][i];
        ok = ok && res[3][i] == tz;
        check_u64(name, ok, 1);
    }
    check_u64("1/3 up-down is 1ulp", dbits(res[2][0]) - dbits(res[1][0]), 1);
    check_u64("1+2^-60 up", dbits(res[2][2]), dbits(1.0) + 1);
    check_u64("1+2^-60 near", dbits(res[0][2]), dbits(1.0));
    check_u64("DBL_MAX*2 nearest", dbits(res[0][6]), dbits(INFINITY));
    check_u64("DBL_MAX*2 down", dbits(res[1][6]), dbits(DBL_MAX));
    check_u64("DBL_MAX*2 tz", dbits(res[3][6]), dbits(DBL_MAX));
    check_u64("-2DBL_MAX up", dbits(res[2][7]), dbits(-DBL_MAX));
    check_u64("-2DBL_MAX down", dbits(res[1][7]), dbits(-INFINITY));
}

/* ---------- 1b. static rounding modes ---------- */
static void static_rm_one(const char *rmname, int which)
{
    double one = v_one, three = v_three, two = v_two, third = v_one / v_three;
    double tie = ldexp(one, -53); /* 1 + 2^-53 is exactly halfway */
    float onef = v_onef, threef = v_threef;
    unsigned fl;
    double r;
    float rf;
    uint64_t x;
#define LD(what, expr)                                                         \
    do { r = expr; printf("  %-4s %-12s %016" PRIx64 " %-24a %s\n", rmname, what, dbits(r), r, flagstr(fl)); } while (0)
#define LS(what, expr)                                                         \
    do { rf = expr; printf("  %-4s %-12s %08" PRIx32 " %-24a %s\n", rmname, what, fbits(rf), (double)rf, flagstr(fl)); } while (0)
#define LX(what, expr)                                                         \
    do { x = expr; printf("  %-4s %-12s %016" PRIx64 " %-24" PRId64 " %s\n", rmname, what, x, (int64_t)x, flagstr(fl)); } while (0)
#define ONE_RM(RM)                                                                              \
    LD("1/3", FD("fdiv.d %0, %2, %3, " RM, "f"(one), "f"(three)));                              \
    LD("-1/3", FD("fdiv.d %0, %2, %3, " RM, "f"(-one), "f"(three)));                            \
    LD("1+2^-53", FD("fadd.d %0, %2, %3, " RM, "f"(one), "f"(tie)));                            \
    LD("-1-2^-53", FD("fsub.d %0, %2, %3, " RM, "f"(-one), "f"(tie)));                          \
    LD("1+3*2^-53", FD("fadd.d %0, %2, %3, " RM, "f"(one), "f"(3 * tie)));                      \
    LD("sqrt 2", FD("fsqrt.d %0, %2, " RM, "f"(two)));                                          \
    LD("3*(1/3)", FD("fmul.d %0, %2, %3, " RM, "f"(three), "f"(third)));                        \
    LD("fma 3,1/3,-1", FD("fmadd.d %0, %2, %3, %4, " RM, "f"(three), "f"(third), "f"(-one)));   \
    LD("1-1", FD("fsub.d %0, %2, %3, " RM, "f"(one), "f"(one)));                                \
    LD("max*2", FD("fmul.d %0, %2, %3, " RM, "f"((double)v_dmax), "f"(two)));                   \
    LD("-max*2", FD("fmul.d %0, %2, %3, " RM, "f"(-(double)v_dmax), "f"(two)));                 \
    LD("min*min", FD("fmul.d %0, %2, %3, " RM, "f"((double)v_dmin), "f"((double)v_dmin)));      \
    LD("-min*min", FD("fmul.d %0, %2, %3, " RM, "f"(-(double)v_dmin), "f"((double)v_dmin)));    \
    LD("min*(1-2^-53)", FD("fmul.d %0, %2, %3, " RM, "f"((double)v_dmin), "f"(one - tie)));     \
    LS("1f/3f", FS("fdiv.s %0, %2, %3, " RM, "f"(onef), "f"(threef)));                          \
    LS("d->s 0.1", FS("fcvt.s.d %0, %2, " RM, "f"(0.1 * one)));                                 \
    LS("d->s 1e39", FS("fcvt.s.d %0, %2, " RM, "f"(1e39 * one)));                               \
    LS("d->s 1e-46", FS("fcvt.s.d %0, %2, " RM, "f"(1e-46 * one)));                             \
    LX("w.d 2.5", FX("fcvt.w.d %0, %2, " RM, "f"(2.5 * one)));                                  \
    LX("w.d -2.5", FX("fcvt.w.d %0, %2, " RM, "f"(-2.5 * one)));                                \
    LX("w.d 2^31-.5", FX("fcvt.w.d %0, %2, " RM, "f"(2147483647.5 * one)));                     \
    LX("l.d -0.5", FX("fcvt.l.d %0, %2, " RM, "f"(-0.5 * one)));                                \
    LX("lu.d 0.5", FX("fcvt.lu.d %0, %2, " RM, "f"(0.5 * one)));                                \
    LX("wu.d -0.5", FX("fcvt.wu.d %0, %2, " RM, "f"(-0.5 * one)));                              \
    LX("w.s 1.5f", FX("fcvt.w.s %0, %2, " RM, "f"(1.5f * onef)));                               \
    LX("lu.s -0.7f", FX("fcvt.lu.s %0, %2, " RM, "f"(-0.7f * onef)));                           \
    LS("s.w 2^24+1", FS("fcvt.s.w %0, %2, " RM, "r"((int64_t)16777217)));                       \
    LS("s.l -2^24-3", FS("fcvt.s.l %0, %2, " RM, "r"((int64_t)-16777219)));                     \
    LD("d.lu max", FD("fcvt.d.lu %0, %2, " RM, "r"(UINT64_MAX)));                               \
    LD("d.l -2^53-1", FD("fcvt.d.l %0, %2, " RM, "r"(-(1ll << 53) - 1)))
    switch (which) {
    case 0: ONE_RM("rne"); break;
    case 1: ONE_RM("rtz"); break;
    case 2: ONE_RM("rdn"); break;
    case 3: ONE_RM("rup"); break;
    case 4: ONE_RM("rmm"); break;
    case 5: ONE_RM("dyn"); break;
    }
#undef ONE_RM
}

static void static_rm(void)
{
    printf("== 1b. static rounding modes in the instruction ==\n");
    static const char *names[5] = {"rne", "rtz", "rdn", "rup", "rmm"};
    for (int i = 0; i < 5; i++)
        static_rm_one(names[i], i);
    /* rm=dyn uses frm; set it to rmm (4) directly, which fesetround cannot */
    __asm__ volatile("fsrmi 4");
    static_rm_one("dyn4", 5);
    fesetround(FE_UPWARD);
    static_rm_one("dyn3", 5);
    fesetround(FE_TONEAREST);
    unsigned fcsr;
    __asm__ volatile("fscsr zero\n\tfrcsr %0" : "=r"(fcsr));
    printf("  fcsr after fscsr 0: %#x\n", fcsr);
    __asm__ volatile("fsrmi %0, 2\n\tfsflagsi 0x1f\n\tfrcsr %0" : "=r"(fcsr));
    printf("  fcsr after frm=2 flags=0x1f: %#x\n", fcsr);
    __asm__ volatile("fscsr %0, %1" : "=r"(fcsr) : "r"(0xffu));
    printf("  old fcsr returned by fscsr: %#x, fetestexcept(ALL)=%#x fegetround()=%#x\n",
           fcsr, fetestexcept(FE_ALL_EXCEPT), fegetround());
    __asm__ volatile("frcsr %0" : "=r"(fcsr));
    printf("  fcsr after writing 0xff: %#x\n", fcsr);
    fesetround(FE_TONEAREST);
    feclearexcept(FE_ALL_EXCEPT);
    __asm__ volatile("frcsr %0" : "=r"(fcsr));
    printf("  fcsr after fesetround/feclearexcept: %#x\n", fcsr);
    check_u64("fcsr reset", fcsr, 0);
}

/* ---------- 2. NaN boxing ---------- */
static void nan_boxing(void)
{
    printf("== 2. NaN boxing ==\n");
    uint64_t r;
    unsigned fl;
    /* flw boxes: the 64-bit register holds 0xffffffff_<bits> */
    float f = 1.5f * v_onef;
    __asm__ volatile("fmv.x.d %0, %1" : "=r"(r) : "f"(f));
    printf("  float 1.5 in f-reg as 64 bits:    %016" PRIx64 "\n", r);
    check_u64("boxed 1.5f", r, 0xffffffff3fc00000ull);
    /* fmv.w.x boxes too */
    __asm__ volatile("fmv.w.x ft0, %1\n\tfmv.x.d %0, ft0" : "=r"(r) : "r"(0x40490fdbull) : "ft0");
    check_u64("fmv.w.x boxes", r, 0xffffffff40490fdbull);
    /* an improperly boxed value is treated as the canonical NaN by arithmetic */
    const uint64_t bad[] = {0x000000003fc00000ull, 0x7fffffff3fc00000ull,
                            0xfffffffe3fc00000ull, 0x3ff8000000000000ull /* double 1.5 */};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t add, cvt, cls, mvxw, sgnj, stored;
        uint32_t mem = 0;
        __asm__ volatile("csrw fflags, zero\n\t"
                         "fmv.d.x ft0, %2\n\t"
                         "fadd.s ft1, ft0, ft0\n\t"
                         "fmv.x.d %0, ft1\n\t"
                         "frflags %1"
                         : "=&r"(add), "=&r"(fl) : "r"(bad[i]) : "ft0", "ft1");
        printf("  bad box %016" PRIx64 ": fadd.s x,x = %016" PRIx64 " %s\n", bad[i], add, flagstr(fl));
        __asm__ volatile("fmv.d.x ft0, %1\n\tfcvt.d.s ft1, ft0\n\tfmv.x.d %0, ft1"
                         : "=r"(cvt) : "r"(bad[i]) : "ft0", "ft1");
        __asm__ volatile("fmv.d.x ft0, %1\n\tfclass.s %0, ft0" : "=r"(cls) : "r"(bad[i]) : "ft0");
        __asm__ volatile("fmv.d.x ft0, %1\n\tfmv.x.w %0, ft0" : "=r"(mvxw) : "r"(bad[i]) : "ft0");
        __asm__ volatile("fmv.d.x ft0, %1\n\tfsgnjn.s ft1, ft0, ft0\n\tfmv.x.d %0, ft1"
                         : "=r"(sgnj) : "r"(bad[i]) : "ft0", "ft1");
        __asm__ volatile("fmv.d.x ft0, %1\n\tfsw ft0, 0(%2)\n\tlwu %0, 0(%2)"
                         : "=&r"(stored) : "r"(bad[i]), "r"(&mem) : "ft0", "memory");
        printf("    fcvt.d.s=%016" PRIx64 " fclass.s=%#" PRIx64 " fmv.x.w=%016" PRIx64
               " fsgnjn.s=%016" PRIx64 " fsw=%08" PRIx64 "\n", cvt, cls, mvxw, sgnj, stored);
        check_u64("unboxed add", add, 0xffffffff7fc00000ull);
        check_u64("unboxed fcvt.d.s", cvt, 0x7ff8000000000000ull);
        check_u64("unboxed fclass", cls, 0x200);
        check_u64("fmv.x.w low bits", mvxw, (uint64_t)(int64_t)(int32_t)(uint32_t)bad[i]);
        check_u64("unboxed fsgnjn", sgnj, 0xffffffffffc00000ull);
        check_u64("fsw low bits", stored, (uint32_t)bad[i]);
    }
    /* properly boxed: the same ops give real results */
    uint64_t good = 0xffffffffbfc00000ull, add, cls;
    __asm__ volatile("fmv.d.x ft0, %1\n\tfadd.s ft1, ft0, ft0\n\tfmv.x.d %0, ft1"
                     : "=r"(add) : "r"(good) : "ft0", "ft1");
    __asm__ volatile("fmv.d.x ft0, %1\n\tfclass.s %0, ft0" : "=r"(cls) : "r"(good) : "ft0");
    printf("  good box %016" PRIx64 ": fadd.s = %016" PRIx64 " fclass=%#" PRIx64 "\n", good, add, cls);
    check_u64("boxed add", add, 0xffffffffc0400000ull);
    check_u64("boxed fclass", cls, 0x2);
    /* mixing: a double computation then a float one in the same register */
    volatile double d = 1.0 / v_three;
    volatile float s = (float)d * 3.0f;
    volatile double back = (double)s + d;
    pd("mix (float)(1/3)*3f + 1/3", back);
    /* fmv.x.w sign-extends bit 31 */
    __asm__ volatile("fmv.w.x ft0, %1\n\tfmv.x.w %0, ft0" : "=r"(r) : "r"(0x80000001ull) : "ft0");
    check_u64("fmv.x.w sext", r, 0xffffffff80000001ull);
    /* single-precision canonical NaN from arithmetic (x86 would give negative) */
    volatile float z = 0.0f;
    volatile float qn = z / z;
    volatile double dz = 0.0;
    volatile double dqn = dz / dz;
    printf("  0f/0f = %08" PRIx32 " (%f)  0.0/0.0 = %016" PRIx64 " (%f)\n", fbits(qn), (double)qn,
           dbits(dqn), dqn);
    check_u64("0f/0f canonical", fbits(qn), 0x7fc00000);
    check_u64("0/0 canonical", dbits(dqn), 0x7ff8000000000000ull);
    /* float NaN payload is not propagated; widening gives canonical NaN */
    volatile float payload = bflt(0x7fc12345);
    volatile double widened = payload;
    volatile double snan_src = bdbl(0xfff0000000000123ull); /* signaling, negative */
    volatile float narrowed = (float)snan_src;
    printf("  (double)nanf(payload) = %016" PRIx64 "  (float)-sNaN = %08" PRIx32 "\n",
           dbits(widened), fbits(narrowed));
    check_u64("widen payload", dbits(widened), 0x7ff8000000000000ull);
    check_u64("narrow sNaN", fbits(narrowed), 0x7fc00000);
}

/* ---------- 3. exception flags ---------- */
static unsigned fe_to_bits(int fe)
{
    return (fe & FE_INVALID ? 16 : 0) | (fe & FE_DIVBYZERO ? 8 : 0) | (fe & FE_OVERFLOW ? 4 : 0) |
           (fe & FE_UNDERFLOW ? 2 : 0) | (fe & FE_INEXACT ? 1 : 0);
}

static void exception_flags(void)
{
    printf("== 3. exception flags ==\n");
    struct {
        const char *name;
        double a, b;
        int op; /* 0 add 1 mul 2 div 3 sqrt(a) 4 sub */
        unsigned want;
    } t[] = {
        {"1/3", 1, 3, 2, 1},
        {"1/2", 1, 2, 2, 0},
        {"max*2", DBL_MAX, 2, 1, 4 | 1},
        {"min*min", DBL_MIN, DBL_MIN, 1, 2 | 1},
        {"min/2 (exact subnormal)", DBL_MIN, 2, 2, 0},
        {"min/3 (inexact subnormal)", DBL_MIN, 3, 2, 2 | 1},
        {"true_min/2", 4.9406564584124654e-324, 2, 2, 2 | 1},
        {"min*(1-2^-53) rounds to min", DBL_MIN, 1 - 0x1p-53, 1, 2 | 1},
        {"0/0", 0, 0, 2, 16},
        {"1/0", 1, 0, 2, 8},
        {"-1/0", -1, 0, 2, 8},
        {"inf/0", INFINITY, 0, 2, 0},
        {"inf-inf", INFINITY, INFINITY, 4, 16},
        {"inf*0", INFINITY, 0, 1, 16},
        {"inf/inf", INFINITY, INFINITY, 2, 16},
        {"sqrt(-1)", -1, 0, 3, 16},
        {"sqrt(-0)", -0.0, 0, 3, 0},
        {"sqrt(2)", 2, 0, 3, 1},
        {"qnan+1", NAN, 1, 0, 0},
        {"snan+1", 0, 1, 0, 16}, /* a patched below */
        {"1e308+1e308", 1e308, 1e308, 0, 4 | 1},
        {"1+2^-53", 1, 0x1p-53, 0, 1},
    };
    t[19].a = bdbl(0x7ff0000000000001ull);
    for (unsigned i = 0; i < sizeof t / sizeof t[0]; i++) {
        volatile double a = t[i].a, b = t[i].b, r = 0;
        feclearexcept(FE_ALL_EXCEPT);
        switch (t[i].op) {
        case 0: r = a + b; break;
        case 1: r = a * b; break;
        case 2: r = a / b; break;
        case 3: r = __builtin_sqrt(a); break;
        case 4: r = a - b; break;
        }
        unsigned got = fe_to_bits(fetestexcept(FE_ALL_EXCEPT));
        unsigned raw;
        __asm__ volatile("frflags %0" : "=r"(raw));
        printf("  %-30s %016" PRIx64 " fetestexcept=%-15s frflags=%s\n", t[i].name, dbits(r),
               flagstr(got), flagstr(raw));
        check_u64(t[i].name, got, t[i].want);
        check_u64("frflags == fetestexcept", raw, got);
    }
    /* comparisons: feq quiet, flt/fle signaling on qNaN */
    unsigned fl;
    double qn = NAN * v_one, sn = bdbl(0x7ff4000000000000ull), one = v_one;
    struct { const char *n; uint64_t r; unsigned f; unsigned wr, wf; } c[12];
    int k = 0;
#define CMP(name, text, a, b, wr, wf)                                          \
    do { uint64_t r_ = FX(text, "f"(a), "f"(b)); c[k++] = (typeof(c[0])){name, r_, fl, wr, wf}; } while (0)
    CMP("feq qnan,1", "feq.d %0, %2, %3", qn, one, 0, 0);
    CMP("feq snan,1", "feq.d %0, %2, %3", sn, one, 0, 16);
    CMP("flt qnan,1", "flt.d %0, %2, %3", qn, one, 0, 16);
    CMP("fle 1,qnan", "fle.d %0, %2, %3", one, qn, 0, 16);
    CMP("feq -0,+0", "feq.d %0, %2, %3", -0.0 * one, 0.0 * one, 1, 0);
    CMP("flt -0,+0", "flt.d %0, %2, %3", -0.0 * one, 0.0 * one, 0, 0);
    CMP("fle -0,+0", "fle.d %0, %2, %3", -0.0 * one, 0.0 * one, 1, 0);
    CMP("flt -inf,max", "flt.d %0, %2, %3", -INFINITY * one, (double)v_dmax, 1, 0);
    for (int i = 0; i < k; i++) {
        printf("  %-30s %" PRIu64 " %s\n", c[i].n, c[i].r, flagstr(c[i].f));
        check_u64(c[i].n, c[i].r, c[i].wr);
        check_u64(c[i].n, c[i].f, c[i].wf);
    }
    /* flags accumulate until cleared */
    feclearexcept(FE_ALL_EXCEPT);
    volatile double x = v_one / v_three;
    x = v_dmax * v_two;
    x = v_one / v_zero;
    (void)x;
    printf("  accumulated: %s\n", flagstr(fe_to_bits(fetestexcept(FE_ALL_EXCEPT))));
    feclearexcept(FE_OVERFLOW);
    printf("  after clearing OF: %s\n", flagstr(fe_to_bits(fetestexcept(FE_ALL_EXCEPT))));
    feraiseexcept(FE_INVALID | FE_UNDERFLOW);
    printf("  after feraiseexcept(NV|UF): %s\n", flagstr(fe_to_bits(fetestexcept(FE_ALL_EXCEPT))));
    fenv_t env;
    feholdexcept(&env);
    printf("  after feholdexcept: %s\n", flagstr(fe_to_bits(fetestexcept(FE_ALL_EXCEPT))));
    x = v_one / v_three;
    feupdateenv(&env);
    printf("  after feupdateenv: %s\n", flagstr(fe_to_bits(fetestexcept(FE_ALL_EXCEPT))));
    feclearexcept(FE_ALL_EXCEPT);
}

/* ---------- 4. conversions ---------- */
/* reference: round x to integer by mode (0 rne 1 rtz 2 rdn 3 rup 4 rmm) */
static double ref_round(double x, int rm)
{
    if (!isfinite(x) || fabs(x) >= 0x1p52)
        return x;
    double fl = floor(x), frac = x - fl;
    switch (rm) {
    case 0: return frac > 0.5 ? fl + 1 : frac < 0.5 ? fl : (fmod(fl, 2) == 0 ? fl : fl + 1);
    case 1: return x < 0 ? (frac > 0 ? fl + 1 : fl) : fl;
    case 2: return fl;
    case 3: return frac > 0 ? fl + 1 : fl;
    default: return frac > 0.5 ? fl + 1 : frac < 0.5 ? fl : (x < 0 ? fl : fl + 1);
    }
}

/* kind: 0 w, 1 wu, 2 l, 3 lu; returns value as the 64-bit register sees it */
static uint64_t ref_cvt(double x, int rm, int kind, unsigned *flags)
{
    static const double lo[4] = {-0x1p31, 0, -0x1p63, 0};
    static const double hi[4] = {0x1p31, 0x1p32, 0x1p63, 0x1p64}; /* exclusive */
    static const uint64_t maxv[4] = {0x7fffffff, 0xffffffffffffffffull, INT64_MAX, UINT64_MAX};
    static const uint64_t minv[4] = {0xffffffff80000000ull, 0, (uint64_t)INT64_MIN, 0};
    if (isnan(x)) {
        *flags = 16;
        return maxv[kind];
    }
    double r = ref_round(x, rm);
    if (r >= hi[kind]) {
        *flags = 16;
        return maxv[kind];
    }
    if (r < lo[kind]) {
        *flags = 16;
        return minv[kind];
    }
    *flags = r != x ? 1 : 0;
    switch (kind) {
    case 0: return (uint64_t)(int64_t)(int32_t)(int64_t)r;
    case 1: return (uint64_t)(int64_t)(int32_t)(uint32_t)(uint64_t)r;
    case 2: return (uint64_t)(int64_t)r;
    default: return (uint64_t)r;
    }
}

static uint64_t do_cvt_d(double x, int rm, int kind, unsigned *flags)
{
    unsigned fl = 0;
    uint64_t r = 0;
#define CV(KIND, RM) FX("fcvt." KIND ".d %0, %2, " RM, "f"(x))
#define CVK(RM)                                                                \
    switch (kind) {                                                            \
    case 0: r = CV("w", RM); break;                                            \
    case 1: r = CV("wu", RM); break;                                           \
    case 2: r = CV("l", RM); break;                                            \
    default: r = CV("lu", RM); break;                                          \
    }
    switch (rm) {
    case 0: CVK("rne"); break;
    case 1: CVK("rtz"); break;
    case 2: CVK("rdn"); break;
    case 3: CVK("rup"); break;
    default: CVK("rmm"); break;
    }
    *flags = fl;
    return r;
}

static uint64_t do_cvt_s(float x, int rm, int kind, unsigned *flags)
{
    unsigned fl = 0;
    uint64_t r = 0;
#undef CV
#define CV(KIND, RM) FX("fcvt." KIND ".s %0, %2, " RM, "f"(x))
    switch (rm) {
    case 0: CVK("rne"); break;
    case 1: CVK("rtz"); break;
    case 2: CVK("rdn"); break;
    case 3: CVK("rup"); break;
    default: CVK("rmm"); break;
    }
    *flags = fl;
    return r;
}

static void conversions(void)
{
    printf("== 4. float <-> int conversions ==\n");
    const double in[] = {0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, -1.0, 0.9999999999999999,
                         2147483647.0, 2147483647.4, 2147483647.5, 2147483648.0, -2147483648.0,
                         -2147483648.5, -2147483649.0, 4294967295.0, 4294967295.5,
                         4294967296.0, 3e9, -3e9, 9.2233720368547748e18, 9.2233720368547758e18,
                         -9.2233720368547758e18, -9.2233720368547779e18, 1.8446744073709550e19,
                         1.8446744073709552e19, 1e20, -1e20, INFINITY, -INFINITY, NAN, -NAN,
                         4.9406564584124654e-324, -4.9406564584124654e-324};
    static const char *kn[4] = {"w", "wu", "l", "lu"};
    static const char *rn[5] = {"rne", "rtz", "rdn", "rup", "rmm"};
    int mism = 0;
    for (unsigned i = 0; i < sizeof in / sizeof in[0]; i++) {
        double x = in[i] * v_one;
        printf("  %-24.17g", x);
        for (int kind = 0; kind < 4; kind++) {
            unsigned f;
            uint64_t r = do_cvt_d(x, 1, kind, &f);
            printf(" %s:%" PRIx64 "/%s", kn[kind], r, flagstr(f));
        }
        printf("\n");
        for (int kind = 0; kind < 4; kind++)
            for (int rm = 0; rm < 5; rm++) {
                unsigned f, wf;
                uint64_t r = do_cvt_d(x, rm, kind, &f);
                uint64_t w = ref_cvt(x, rm, kind, &wf);
                if (r != w || f != wf) {
                    mism++;
                    printf("FAIL fcvt.%s.d %s %.17g: got %" PRIx64 "/%s want %" PRIx64 "/%s\n",
                           kn[kind], rn[rm], x, r, flagstr(f), w, flagstr(wf));
                }
                /* the same from single precision when exactly representable */
                float xf = (float)in[i];
                if ((double)xf == in[i] || isnan(in[i])) {
                    r = do_cvt_s(xf * v_onef, rm, kind, &f);
                    w = ref_cvt(xf, rm, kind, &wf);
                    if (r != w || f != wf) {
                        mism++;
                        printf("FAIL fcvt.%s.s %s %.9g: got %" PRIx64 "/%s want %" PRIx64 "/%s\n",
                               kn[kind], rn[rm], (double)xf, r, flagstr(f), w, flagstr(wf));
                    }
                }
            }
    }
    printf("  fcvt reference mismatches: %d\n", mism);
    failures += mism;

    /* integer -> FP, and narrowing/widening between formats */
    volatile int64_t imax = INT64_MAX, imin = INT64_MIN;
    volatile uint64_t umax = UINT64_MAX;
    volatile int32_t i32 = -123456789;
    volatile uint32_t u32 = 4000000000u;
    pd("(double)INT64_MAX", (double)imax);
    pd("(double)INT64_MIN", (double)imin);
    pd("(double)UINT64_MAX", (double)umax);
    pf("(float)INT64_MAX", (float)imax);
    pf("(float)-123456789", (float)i32);
    pd("(double)4000000000u", (double)u32);
    pf("(float)4000000000u", (float)u32);
    unsigned fl;
    double d = FD("fcvt.d.wu %0, %2", "r"(0xdeadbeef00000005ull));
    pd("fcvt.d.wu ignores high bits", d);
    check_u64("fcvt.d.wu", dbits(d), dbits(5.0));
    d = FD("fcvt.d.w %0, %2", "r"(0x00000000ffffffffull));
    pd("fcvt.d.w 0xffffffff = -1", d);
    check_u64("fcvt.d.w", dbits(d), dbits(-1.0));
    volatile double big = 1e300, tiny = 1e-300, dn = bdbl(0x7ff8000000abcdefull);
    volatile float fbig = (float)big, ftiny = (float)tiny, fnan = (float)dn;
    pf("(float)1e300", fbig);
    pf("(float)1e-300", ftiny);
    pf("(float)nan-with-payload", fnan);
    volatile float fsub = bflt(0x00000001);
    pd("(double)float true min", (double)fsub);
    pd("(double)0.1f", (double)v_tenthf);

    /* C conversions (well defined ones) that compile to fcvt rtz */
    volatile double neg = -7.9, pos = 7.9;
    printf("  (int)-7.9=%d (int)7.9=%d (unsigned)7.9=%u (long)-1e18=%ld (ulong)1.8e19=%lu\n",
           (int)neg, (int)pos, (unsigned)pos, (long)(-1e18 * v_one),
           (unsigned long)(1.8e19 * v_one));
}

/* ---------- 5. min/max, sign injection, classify ---------- */
static void minmax(void)
{
    printf("== 5. fmin/fmax, sign injection, fclass ==\n");
    double qn = NAN * v_one, sn = bdbl(0x7ff4000000000000ull), one = v_one;
    double pz = 0.0 * v_one, nz = -0.0 * v_one;
    unsigned fl;
    struct { const char *n; double r; unsigned f; uint64_t w; unsigned wf; } t[16];
    int k = 0;
#define MM(name, text, a, b, want, wf)                                         \
    do { double r_ = FD(text, "f"(a), "f"(b)); t[k++] = (typeof(t[0])){name, r_, fl, want, wf}; } while (0)
    MM("fmin qnan,1", "fmin.d %0, %2, %3", qn, one, dbits(1.0), 0);
    MM("fmax 1,qnan", "fmax.d %0, %2, %3", one, qn, dbits(1.0), 0);
    MM("fmin snan,1", "fmin.d %0, %2, %3", sn, one, dbits(1.0), 16);
    MM("fmax qnan,qnan", "fmax.d %0, %2, %3", qn, qn, 0x7ff8000000000000ull, 0);
    MM("fmin snan,qnan", "fmin.d %0, %2, %3", sn, qn, 0x7ff8000000000000ull, 16);
    MM("fmin -0,+0", "fmin.d %0, %2, %3", nz, pz, dbits(-0.0), 0);
    MM("fmin +0,-0", "fmin.d %0, %2, %3", pz, nz, dbits(-0.0), 0);
    MM("fmax -0,+0", "fmax.d %0, %2, %3", nz, pz, dbits(0.0), 0);
    MM("fmax +0,-0", "fmax.d %0, %2, %3", pz, nz, dbits(0.0), 0);
    MM("fsgnj 1,-nan", "fsgnj.d %0, %2, %3", one, -qn, dbits(-1.0), 0);
    MM("fsgnjn 1,1", "fsgnjn.d %0, %2, %3", one, one, dbits(-1.0), 0);
    MM("fsgnjx -1,-0", "fsgnjx.d %0, %2, %3", -one, nz, dbits(1.0), 0);
    MM("fsgnj snan,-1 (no canon.)", "fsgnj.d %0, %2, %3", sn, -one, 0xfff4000000000000ull, 0);
    for (int i = 0; i < k; i++) {
        printf("  %-30s %016" PRIx64 " %s\n", t[i].n, dbits(t[i].r), flagstr(t[i].f));
        check_u64(t[i].n, dbits(t[i].r), t[i].w);
        check_u64(t[i].n, t[i].f, t[i].wf);
    }
    /* single precision */
    float qf = (float)NAN * v_onef, of = v_onef;
    float rmin = FS("fmin.s %0, %2, %3", "f"(qf), "f"(of));
    float rmax = FS("fmax.s %0, %2, %3", "f"(qf), "f"(qf));
    printf("  fmin.s nan,1 = %08" PRIx32 "  fmax.s nan,nan = %08" PRIx32 "\n", fbits(rmin), fbits(rmax));
    check_u64("fmin.s", fbits(rmin), fbits(1.0f));
    check_u64("fmax.s", fbits(rmax), 0x7fc00000);
    /* the C library functions */
    printf("  C fmin(nan,2)=%g fmax(-0,0)=%g fmin(-0,0)=%g fminf(3,nan)=%g fmax(-inf,nan)=%g\n",
           fmin(qn, 2.0), fmax(nz, pz), fmin(nz, pz), (double)fminf(3.0f, qf), fmax(-INFINITY, qn));
    printf("  copysign(3,-0)=%g fabs(-nan) bits=%016" PRIx64 " signbit(-0)=%d\n",
           copysign(3.0, nz), dbits(fabs(-qn)), signbit(nz) != 0);

    /* fclass */
    const double cls_in[] = {-INFINITY, -1.0, -4.9406564584124654e-324, -0.0, 0.0,
                             4.9406564584124654e-324, 1.0, INFINITY};
    printf("  fclass.d:");
    for (unsigned i = 0; i < sizeof cls_in / sizeof cls_in[0]; i++) {
        uint64_t c = FX("fclass.d %0, %2", "f"(cls_in[i] * v_one));
        printf(" %#" PRIx64, c);
        check_u64("fclass", c, 1u << i);
    }
    uint64_t c1 = FX("fclass.d %0, %2", "f"(sn)), c2 = FX("fclass.d %0, %2", "f"(qn));
    printf(" snan:%#" PRIx64 " qnan:%#" PRIx64 "\n", c1, c2);
    check_u64("fclass snan", c1, 0x100);
    check_u64("fclass qnan", c2, 0x200);
    float fsn = bflt(0x7f800001);
    uint64_t c3 = FX("fclass.s %0, %2", "f"(fsn)), c4 = FX("fclass.s %0, %2", "f"(bflt(0x80000001)));
    printf("  fclass.s snan:%#" PRIx64 " -subnormal:%#" PRIx64 "\n", c3, c4);
    check_u64("fclass.s snan", c3, 0x100);
    check_u64("fclass.s -sub", c4, 0x4);
    printf("  isnan/isinf/isnormal/fpclassify: %d %d %d %d %d\n", isnan(qn) != 0,
           isinf(-INFINITY * v_one) != 0, isnormal(v_dmin) != 0,
           fpclassify(4.9406564584124654e-324 * v_one) == FP_SUBNORMAL, fpclassify(nz) == FP_ZERO);
}

/* ---------- 6. fused multiply-add ---------- */
static void fused(void)
{
    printf("== 6. fused multiply-add ==\n");
    volatile double a = 0.1, b = 10.0, c = -1.0;
    pd("fma(0.1,10,-1)", fma(a, b, c));
    volatile double prod = a * b;
    pd("0.1*10-1 (separate)", prod + c);
    pd("a*b+c (gcc contracts to fmadd)", a * b + c);
    volatile double m = DBL_MAX;
    pd("fma(DBL_MAX,2,-DBL_MAX)", fma(m, 2.0, -m));
    volatile double x = 1.0 + 0x1p-30;
    pd("fma(x,x,-(x*x)) exact error", fma(x, x, -(x * x)));
    pd("fma(-0,1,+0)", fma(-0.0 * v_one, 1.0, 0.0));
    pd("fma(-0,1,-0)", fma(-0.0 * v_one, 1.0, -0.0));
    fesetround(FE_DOWNWARD);
    pd("fma(1,1,-1) downward", fma(v_one, 1.0, -v_one));
    fesetround(FE_TONEAREST);
    pf("fmaf(0.1f,10f,-1f)", fmaf(v_tenthf, 10.0f, -1.0f));
    unsigned fl;
    double one = v_one, three = v_three, inf = INFINITY * v_one, qn = NAN * v_one, z = 0.0 * v_one;
    double third = one / three;
    double r;
#define FM(name, text, A, B, C)                                                \
    do { r = FD(text, "f"(A), "f"(B), "f"(C)); printf("  %-30s %016" PRIx64 " %-24a %s\n", name, dbits(r), r, flagstr(fl)); } while (0)
    FM("fmadd 3,1/3,-1", "fmadd.d %0, %2, %3, %4", three, third, -one);
    FM("fmsub 3,1/3,1", "fmsub.d %0, %2, %3, %4", three, third, one);
    FM("fnmadd 3,1/3,-1", "fnmadd.d %0, %2, %3, %4", three, third, -one);
    FM("fnmsub 3,1/3,1", "fnmsub.d %0, %2, %3, %4", three, third, one);
    FM("fmadd inf,0,qnan (NV)", "fmadd.d %0, %2, %3, %4", inf, z, qn);
    FM("fmadd inf,0,1 (NV)", "fmadd.d %0, %2, %3, %4", inf, z, one);
    FM("fmadd inf,1,-inf (NV)", "fmadd.d %0, %2, %3, %4", inf, one, -inf);
    FM("fnmadd qnan,1,1", "fnmadd.d %0, %2, %3, %4", qn, one, one);
    FM("fnmadd 1,0,0 (-0)", "fnmadd.d %0, %2, %3, %4", one, z, z);
    FM("fnmsub 1,0,0 (+0)", "fnmsub.d %0, %2, %3, %4", one, z, z);
    FM("fmsub 1,0,0 (+0)", "fmsub.d %0, %2, %3, %4", one, z, z);
    FM("fmadd max,max,-inf", "fmadd.d %0, %2, %3, %4", (double)v_dmax, (double)v_dmax, -inf);
    FM("fmadd min,min,0 (UF)", "fmadd.d %0, %2, %3, %4", (double)v_dmin, (double)v_dmin, z);
    float f3 = v_threef, f1 = v_onef, fthird = f1 / f3;
    float rf = FS("fmadd.s %0, %2, %3, %4", "f"(f3), "f"(fthird), "f"(-f1));
    pf("fmadd.s 3,1/3,-1", rf);
    rf = FS("fnmsub.s %0, %2, %3, %4, rup", "f"(f3), "f"(fthird), "f"(f1));
    pf("fnmsub.s 3,1/3,1 rup", rf);
}

/* ---------- 7. printf ---------- */
static void printing(void)
{
    printf("== 7. printf of doubles ==\n");
    const double v[] = {0.0, -0.0, 1.0, -1.0, 0.1, 1.0 / 3.0, 2.0 / 3.0, 0.5, 1.5, 2.5,
                        -2.5, 0.125, 0.375, 1e15, 1e16, 123456789.125, 1e21, 1e22, 1e23,
                        1e300, 1e-300, 1e-5, 1e-4, 12345.6789, DBL_MAX, DBL_MIN,
                        4.9406564584124654e-324, 2.2250738585072009e-308, 3.141592653589793,
                        2.718281828459045, 9007199254740993.0, 0.30000000000000004,
                        INFINITY, -INFINITY, NAN};
    for (unsigned i = 0; i < sizeof v / sizeof v[0]; i++) {
        double d = v[i] * v_one;
        printf("  [%u] %f | %e | %g | %a | %.17g | %.0f | %.3f | %.0e | %.15e | %G | %A\n", i,
               d, d, d, d, d, d, d, d, d, d, d);
    }
    double pi = 3.141592653589793 * v_one;
    printf("  [%10.4f] [%-10.2e] [%+g] [% g] [%010.3f] [%#.0f] [%#g] [%.0g] [%.30f]\n", pi, pi,
           pi, pi, -pi, pi, pi, pi, pi);
    printf("  [%*.*f] [%-*g] [%.60e]\n", 12, 3, pi, 9, pi, 0.1 * v_one);
    printf("  [%f] [%.20f] [%.320f]\n", DBL_MAX * v_one, 0.1 * v_one, 4.9406564584124654e-324 * v_one);
    printf("  [%g] [%g] [%g] [%g] [%g]\n", 100000.0 * v_one, 1000000.0 * v_one, 0.0001 * v_one,
           0.00001 * v_one, 123456789.0 * v_one);
    printf("  [%.3a] [%.0a] [%a] [%a]\n", pi, pi, 1.0 * v_one, 4.9406564584124654e-324 * v_one);
    printf("  float promoted: %f %a %.9g\n", (double)v_tenthf, (double)v_tenthf, (double)v_tenthf);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%.40f", 1.0 / v_three);
    printf("  snprintf len %d: %s\n", n, buf);
    n = snprintf(buf, 8, "%e", 123.456 * v_one);
    printf("  truncated snprintf len %d: %s\n", n, buf);
}

/* ---------- 8. rounding functions ---------- */
static void rounding_funcs(void)
{
    printf("== 8. round/rint/... ==\n");
    const double v[] = {0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999999999999994, 2.4999999999999996,
                        -0.0, 4503599627370495.5, 4503599627370497.0, 1e300, -7.25, INFINITY, NAN};
    for (int m = 0; m < 4; m++) {
        fesetround(modes[m]);
        printf("-- %s\n", mode_names[m]);
        for (unsigned i = 0; i < sizeof v / sizeof v[0]; i++) {
            double x = v[i] * v_one;
            feclearexcept(FE_ALL_EXCEPT);
            volatile double ri = rint(x);
            unsigned frint = fe_to_bits(fetestexcept(FE_ALL_EXCEPT));
            feclearexcept(FE_ALL_EXCEPT);
            volatile double nb = nearbyint(x);
            unsigned fnb = fe_to_bits(fetestexcept(FE_ALL_EXCEPT));
            long lr = 0, llr = 0, lri = 0;
            if (isfinite(x) && fabs(x) < 1e18) {
                lr = lround(x);
                llr = (long)llround(x);
                lri = lrint(x);
            }
            printf("  %-24.17g round=%-22.17g rint=%-22.17g(%s) nearbyint=%-22.17g(%s) floor=%g ceil=%g "
                   "trunc=%g lround=%ld llround=%ld lrint=%ld\n",
                   x, round(x), (double)ri, flagstr(frint), (double)nb, flagstr(fnb), floor(x),
                   ceil(x), trunc(x), lr, llr, lri);
        }
        printf("  roundf(2.5f)=%g rintf(2.5f)=%g nearbyintf(-3.5f)=%g lrintf(1.5f)=%ld\n",
               (double)roundf(2.5f * v_onef), (double)rintf(2.5f * v_onef),
               (double)nearbyintf(-3.5f * v_onef), lrintf(1.5f * v_onef));
    }
    fesetround(FE_TONEAREST);
    feclearexcept(FE_ALL_EXCEPT);
    check_u64("round(2.5)", dbits(round(2.5 * v_one)), dbits(3.0));
    check_u64("rint(2.5)", dbits(rint(2.5 * v_one)), dbits(2.0));
    check_u64("round(-0.5)", dbits(round(-0.5 * v_one)), dbits(-1.0));
    check_u64("rint(-0.5)", dbits(rint(-0.5 * v_one)), dbits(-0.0));
    check_u64("lround(-2.5)", (uint64_t)lround(-2.5 * v_one), (uint64_t)-3);
    printf("  fmod(5.5,2)=%g remainder(5.5,2)=%g modf(-3.75)=%g frexp(1000) exp=%d ldexp(1,-1074)=%a\n",
           fmod(5.5 * v_one, 2.0), remainder(5.5 * v_one, 2.0), modf(-3.75 * v_one, &(double){0}),
           ({ int e; frexp(1000.0 * v_one, &e); e; }), ldexp(v_one, -1074));
    printf("  libm: exp(1)=%.17g log(10)=%.17g sin(1)=%.17g cos(1)=%.17g atan2(1,-1)=%.17g pow(2,0.5)=%.17g cbrt(27)=%.17g hypot(3,4)=%.17g\n",
           exp(v_one), log(v_ten), sin(v_one), cos(v_one), atan2(v_one, -v_one), pow(v_two, 0.5),
           cbrt(27 * v_one), hypot(3 * v_one, 4 * v_one));
}

/* ---------- 9. strtod ---------- */
static void parsing(void)
{
    printf("== 9. strtod/strtof ==\n");
    const char *s[] = {"0.1", "1e-400", "1e400", "-1e400", "2.2250738585072011e-308",
                       "2.2250738585072012e-308", "9007199254740993", "9007199254740995",
                       "0x1.fffffffffffff8p1023", "0x1.fffffffffffff7ffp1023", "0x1p-1074",
                       "0x1p-1075", "0x1.8p-1075", "4.9406564584124654e-324",
                       "2.4703282292062327e-324", "2.4703282292062328e-324", "inf", "-Infinity",
                       "nan", "-nan", "nan(0x123)", "  +1.5e+3xyz", "1.7976931348623157e308",
                       "1.7976931348623158e308", "1.7976931348623159e308",
                       "123456789012345678901234567890", ".5", "5.", "-0", "1e", "0x", "1_000",
                       "0.000000000000000000000000000000000000000001e42", "1e-5",
                       "0.1000000000000000055511151231257827021181583404541015625",
                       "0.10000000000000000555111512312578270211815834045410156250001",
                       "179769313486231580793728971405301e276", "", "   ", "-.e1"};
    for (unsigned i = 0; i < sizeof s / sizeof s[0]; i++) {
        char *end;
        errno = 0;
        double d = strtod(s[i], &end);
        int e = errno;
        errno = 0;
        float f = strtof(s[i], NULL);
        int ef = errno;
        printf("  %-62s -> %016" PRIx64 " %-24a used=%-3d errno=%-6s f=%08" PRIx32 " %s\n", s[i],
               dbits(d), d, (int)(end - s[i]), e == ERANGE ? "ERANGE" : e ? "other" : "0",
               fbits(f), ef == ERANGE ? "ERANGE" : ef ? "other" : "0");
    }
    check_u64("strtod 0.1", dbits(strtod("0.1", NULL)), dbits(0.1));
    check_u64("strtod 2^53+1", dbits(strtod("9007199254740993", NULL)), dbits(9007199254740992.0));
    check_u64("strtod min sub", dbits(strtod("2.4703282292062328e-324", NULL)), 1);
    /* under a directed rounding mode */
    const char *r[] = {"0.1", "-0.1", "1e400", "2.4703282292062327e-324", "1.7976931348623159e308"};
    for (int m = 1; m < 4; m++) {
        fesetround(modes[m]);
        printf("  %s:", mode_names[m]);
        for (unsigned i = 0; i < sizeof r / sizeof r[0]; i++)
            printf(" %016" PRIx64, dbits(strtod(r[i], NULL)));
        printf("\n");
    }
    fesetround(FE_TONEAREST);
    printf("  atof(\"3.25\")=%g sscanf: ", atof("3.25"));
    double a1;
    float a2;
    int got = sscanf("6.02214076e23 -1.5e-3", "%lf %f", &a1, &a2);
    printf("%d %.17g %.9g\n", got, a1, (double)a2);
}

int main(void)
{
    rounding_modes();
    static_rm();
    nan_boxing();
    exception_flags();
    conversions();
    minmax();
    fused();
    printing();
    rounding_funcs();
    parsing();
    printf("float: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
