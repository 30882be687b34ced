//! Software reference implementation on top of `rustc_apfloat`.
//!
//! Used for round-to-nearest-max-magnitude values (x86 has no such rounding mode), as the FMA
//! fallback on hosts without FMA3, as the whole backend on non-x86-64 hosts, and by the tests as
//! the reference the host backend is cross-checked against. Every function here has the full
//! RISC-V semantics on its own: canonical NaNs, RISC-V NaN/invalid rules and fflags.
//!
//! # Underflow
//!
//! RISC-V (like x86 and SoftFloat's RISC-V specialization) detects tininess *after rounding*:
//! UF is raised when the result is inexact and rounding the exact result to the target precision
//! **with an unbounded exponent range** gives a magnitude below the smallest normal. apfloat
//! raises UNDERFLOW when the result rounded to the actual format (subnormal precision) is
//! subnormal or zero and inexact. The two agree everywhere except when the delivered result is
//! exactly ±smallest normal: exact values just below it round up to it in the format, yet can
//! still be tiny with an unbounded exponent (apfloat then reports no UNDERFLOW, RISC-V does).
//! [`fix_tininess`] settles that one case by redoing the operation on operands scaled by 2^64
//! (exact), where the result is far from the subnormal range and its rounding is the
//! unbounded-exponent rounding. The scaled operands are the addends of a sum, the dividend of a
//! quotient, and the smaller multiplicand and the addend of a (fused) product: an inexact result
//! next to the smallest normal forces those to be far below the overflow threshold, so scaling
//! them is exact.
//!
//! # Overflow
//!
//! IEEE 754 (and x86, SoftFloat, RISC-V) signal OF whenever the result rounded with an unbounded
//! exponent exceeds the largest finite number, including in the modes that then deliver that
//! largest finite number. apfloat reports only INEXACT in that case. [`fix_overflow`] redoes
//! such an operation in a format with a wider exponent range, rounding toward zero, to see
//! whether the exact result reaches 2^(emax+1).

use rustc_apfloat::ieee::{Double, Quad, Single};
use rustc_apfloat::{ExpInt, Float, FloatConvert, Round, Status, StatusAnd};

use super::{Fmt, RoundingMode, F32, F64, FFLAG_DZ, FFLAG_NV, FFLAG_NX, FFLAG_OF, FFLAG_UF};

/// An apfloat format together with its bit layout.
pub(super) trait SoftFloat: Float + FloatConvert<Self::Wide> {
    /// The bit layout of the format.
    const FMT: Fmt;
    /// A format with the same precision or more and a much wider exponent range, in which
    /// every result of the format's operations on finite operands is finite.
    type Wide: Float;
}

impl SoftFloat for Single {
    const FMT: Fmt = F32;
    type Wide = Double;
}

impl SoftFloat for Double {
    const FMT: Fmt = F64;
    type Wide = Quad;
}

/// `x` in the wider format (exact).
#[inline]
fn widen<F: SoftFloat>(x: F) -> F::Wide {
    x.convert(&mut false).value
}

/// Scale (a power of two) applied to operands to decide tininess; see the module docs.
const TINY_SCALE: ExpInt = 64;

/// apfloat's rounding for a RISC-V rounding mode.
#[inline]
pub(super) fn round(rm: RoundingMode) -> Round {
    match rm {
        RoundingMode::Rne => Round::NearestTiesToEven,
        RoundingMode::Rtz => Round::TowardZero,
        RoundingMode::Rdn => Round::TowardNegative,
        RoundingMode::Rup => Round::TowardPositive,
        RoundingMode::Rmm => Round::NearestTiesToAway,
    }
}

/// RISC-V fflags of an apfloat status.
#[inline]
pub(super) fn status_flags(s: Status) -> u8 {
    let mut f = 0;
    if s.contains(Status::INVALID_OP) {
        f |= FFLAG_NV;
    }
    if s.contains(Status::DIV_BY_ZERO) {
        f |= FFLAG_DZ;
    }
    if s.contains(Status::OVERFLOW) {
        f |= FFLAG_OF;
    }
    if s.contains(Status::UNDERFLOW) {
        f |= FFLAG_UF;
    }
    if s.contains(Status::INEXACT) {
        f |= FFLAG_NX;
    }
    f
}

#[inline]
fn ap<F: SoftFloat>(bits: u64) -> F {
    F::from_bits(u128::from(bits))
}

/// Bits and fflags of an apfloat result: NaN results become the canonical NaN.
#[inline]
fn finish<F: SoftFloat>(r: StatusAnd<F>) -> (u64, u8) {
    let bits = if r.value.is_nan() { F::FMT.canon() } else { r.value.to_bits() as u64 };
    (bits, status_flags(r.status))
}

/// The result of an operation with a NaN operand: the canonical NaN, with NV if `invalid`.
#[inline]
fn nan_result(f: Fmt, invalid: bool) -> (u64, u8) {
    (f.canon(), if invalid { FFLAG_NV } else { 0 })
}

/// Raises UNDERFLOW in the one case where apfloat's tininess rule misses RISC-V's (see the
/// module docs). `scaled` recomputes the operation on operands scaled so that its exact result
/// is `2^TINY_SCALE` times the original one.
fn fix_tininess<F: SoftFloat>(mut r: StatusAnd<F>, scaled: impl FnOnce() -> F) -> StatusAnd<F> {
    let min_normal = F::FMT.min_normal();
    if r.status.contains(Status::INEXACT) && F::FMT.abs(r.value.to_bits() as u64) == min_normal {
        let limit = min_normal + ((TINY_SCALE as u64) << F::FMT.mant_bits); // 2^TINY_SCALE * min
        if F::FMT.abs(scaled().to_bits() as u64) < limit {
            r.status |= Status::UNDERFLOW;
        }
    }
    r
}

/// Raises OVERFLOW in the case apfloat omits (see the module docs). `wide_rtz` recomputes the
/// operation in the wider format, rounding toward zero.
fn fix_overflow<F: SoftFloat>(
    mut r: StatusAnd<F>,
    wide_rtz: impl FnOnce() -> F::Wide,
) -> StatusAnd<F> {
    let f = F::FMT;
    let largest = f.exp_mask() - 1;
    if r.status.contains(Status::INEXACT)
        && !r.status.contains(Status::OVERFLOW)
        && f.abs(r.value.to_bits() as u64) == largest
    {
        // 2^(emax + 1), exactly representable in the wide format.
        let limit = F::Wide::from_u128(1).value.scalbn(f.bias() as ExpInt + 1);
        if wide_rtz().abs() >= limit {
            r.status |= Status::OVERFLOW;
        }
    }
    r
}

/// `x op y` in any apfloat format.
#[inline]
fn arith_r<G: Float>(op: Arith, x: G, y: G, r: Round) -> StatusAnd<G> {
    match op {
        Arith::Add => x.add_r(y, r),
        Arith::Sub => x.sub_r(y, r),
        Arith::Mul => x.mul_r(y, r),
        Arith::Div => x.div_r(y, r),
    }
}

/// The operand of smaller magnitude, scaled up by `2^TINY_SCALE`, and the other one.
fn scale_smaller<F: SoftFloat>(a: F, b: F) -> (F, F) {
    if a.ilogb() <= b.ilogb() {
        (a.scalbn(TINY_SCALE), b)
    } else {
        (a, b.scalbn(TINY_SCALE))
    }
}

/// The four two-operand arithmetic operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

/// `a op b` rounded with `rm`.
pub(super) fn arith<F: SoftFloat>(op: Arith, a: u64, b: u64, rm: RoundingMode) -> (u64, u8) {
    let f = F::FMT;
    if f.is_nan(a) || f.is_nan(b) {
        return nan_result(f, f.is_snan(a) || f.is_snan(b));
    }
    let (x, y): (F, F) = (ap(a), ap(b));
    let r = round(rm);
    let res = fix_tininess(arith_r(op, x, y, r), || {
        let (x, y) = match op {
            Arith::Add | Arith::Sub => (x.scalbn(TINY_SCALE), y.scalbn(TINY_SCALE)),
            Arith::Mul => scale_smaller(x, y),
            Arith::Div => (x.scalbn(TINY_SCALE), y),
        };
        arith_r(op, x, y, r).value
    });
    let res = fix_overflow(res, || arith_r(op, widen(x), widen(y), Round::TowardZero).value);
    finish(res)
}

/// `±(a*b) ± c` with one rounding: `neg_prod` negates the product, `neg_add` the addend.
pub(super) fn fma<F: SoftFloat>(
    a: u64,
    b: u64,
    c: u64,
    neg_prod: bool,
    neg_add: bool,
    rm: RoundingMode,
) -> (u64, u8) {
    let f = F::FMT;
    if f.is_nan(a) || f.is_nan(b) || f.is_nan(c) {
        let invalid = f.is_snan(a) || f.is_snan(b) || f.is_snan(c) || f.is_inf_times_zero(a, b);
        return nan_result(f, invalid);
    }
    let x: F = ap(if neg_prod { a ^ f.sign() } else { a });
    let y: F = ap(b);
    let z: F = ap(if neg_add { c ^ f.sign() } else { c });
    let r = round(rm);
    let res = fix_tininess(x.mul_add_r(y, z, r), || {
        let (x, y) = scale_smaller(x, y);
        x.mul_add_r(y, z.scalbn(TINY_SCALE), r).value
    });
    let res = fix_overflow(res, || widen(x).mul_add_r(widen(y), widen(z), Round::TowardZero).value);
    finish(res)
}

/// `sqrt(a)` rounded with `rm`, computed exactly with integer arithmetic (apfloat has no square
/// root). The result is never subnormal, never overflows and is never exactly halfway between
/// two floats, so only NV and NX can arise.
#[cfg(any(test, not(target_arch = "x86_64")))]
pub(super) fn sqrt<F: SoftFloat>(a: u64, rm: RoundingMode) -> (u64, u8) {
    let f = F::FMT;
    if f.is_nan(a) {
        return nan_result(f, f.is_snan(a));
    }
    if f.abs(a) == 0 {
        return (a, 0); // sqrt(±0) = ±0
    }
    if a & f.sign() != 0 {
        return nan_result(f, true);
    }
    if a == f.exp_mask() {
        return (a, 0); // sqrt(+inf) = +inf
    }
    // a = m * 2^e with m an integer.
    let biased = (a >> f.mant_bits) as i32;
    let (mut m, mut e) = if biased == 0 {
        (u128::from(a), f.min_exp_int())
    } else {
        (u128::from((a & f.frac_mask()) | (1 << f.mant_bits)), biased + f.min_exp_int() - 1)
    };
    if e & 1 != 0 {
        m <<= 1;
        e -= 1;
    }
    // Shift m left by an even amount so that its root has at least p + 2 bits.
    let p = f.mant_bits + 1;
    let want = 2 * p + 5;
    let have = 128 - m.leading_zeros();
    let shift = (want.saturating_sub(have) + 1) & !1;
    let n = m << shift;
    let root = n.isqrt();
    // Round to odd: the sticky bit makes the final rounding correct in every mode.
    let sticky = u128::from(root * root != n);
    let odd = (root << 1) | sticky;
    let exp = e / 2 - (shift as i32) / 2 - 1;
    let r = round(rm);
    let StatusAnd { status, value } = F::from_u128_r(odd, r);
    // Exact: the result is a normal number.
    let value = value.scalbn_r(exp, r);
    finish(status.and(value))
}

/// `a` (an f64) converted to f32 rounded with `rm`.
pub(super) fn f64_to_f32(a: u64, rm: RoundingMode) -> (u64, u8) {
    if F64.is_nan(a) {
        return nan_result(F32, F64.is_snan(a));
    }
    let r = round(rm);
    let x: Double = ap(a);
    let conv = |x: Double| -> StatusAnd<Single> { FloatConvert::convert_r(x, r, &mut false) };
    let res = fix_tininess(conv(x), || conv(x.scalbn(TINY_SCALE)).value);
    // The input is the exact value, and binary64 is Single's wide format.
    let res = fix_overflow(res, || x);
    finish(res)
}
