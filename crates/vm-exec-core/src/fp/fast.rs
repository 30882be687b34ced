//! Fast paths for round-to-nearest-even that never touch MXCSR.
//!
//! Reloading MXCSR costs far more than the arithmetic itself, and RNE is the rounding mode of
//! nearly all guest floating-point code. Each function here computes the RNE result with
//! ordinary Rust (or pure, MXCSR-free FMA3) arithmetic, which runs in the default environment,
//! and derives the exception flags exactly from an *exactness test*, under conditions that
//! rule out every other flag:
//!
//! - all operands finite and the result finite: no NV, no DZ, no OF (RNE overflows to ∞);
//! - the result's magnitude above the smallest normal, or the result exact: no UF (an inexact
//!   result above the smallest normal is not tiny after rounding, and UF needs inexactness).
//!
//! NX is then set exactly when the result is inexact. When the conditions do not hold (NaN or
//! infinite operands, overflow, division by zero, inexact results near the underflow
//! threshold), the function returns `None` and the caller takes the general MXCSR path. Nothing
//! here writes `flags` before deciding to return `Some`.
//!
//! Exactness tests:
//!
//! - add/sub: the error of the sum from Knuth's branch-free TwoSum (exact barring overflow,
//!   which shows as a non-finite error);
//! - binary64 mul/div/sqrt: integer arithmetic on the significands (a product of two 53-bit
//!   significands is exact in `u128`): `RN(a*b) = p` is exact iff `a*b = p`, `RN(a/b) = q`
//!   iff `q*b = a`, `RN(sqrt(a)) = s` iff `s*s = a`;
//! - binary32 mul/div/sqrt/fma and f64→f32: binary64 arithmetic, in which binary32 products
//!   are exact;
//! - binary64 fma `r = RN(a*b + c)`: with TwoProduct `a*b = ph + pl` and TwoSum
//!   `r - c = v + vl` (both exact, and both representations have their high part equal to the
//!   rounded value of the exact sum), `r` is exact iff `ph == v && pl == vl`.

#[cfg(target_arch = "x86_64")]
use core::arch::asm;

use super::FFLAG_NX;

const F64_MIN_NORMAL: f64 = f64::MIN_POSITIVE;
const F32_MIN_NORMAL: f32 = f32::MIN_POSITIVE;

/// Whether `x` is finite and above the smallest normal in magnitude (so not tiny after
/// rounding). False for NaN.
#[inline(always)]
fn big_finite_f64(x: f64) -> bool {
    x.is_finite() && x.abs() > F64_MIN_NORMAL
}

/// Whether `x` is finite and above the smallest normal in magnitude. False for NaN.
#[inline(always)]
fn big_finite_f32(x: f32) -> bool {
    x.is_finite() && x.abs() > F32_MIN_NORMAL
}

/// Sets NX when `inexact`, and returns `r`.
#[inline(always)]
fn done<T>(r: T, inexact: bool, flags: &mut u8) -> Option<T> {
    if inexact {
        *flags |= FFLAG_NX;
    }
    Some(r)
}

/// TwoSum error of `s = RN(x + y)`: `x + y - s` exactly, or a non-finite value if an
/// intermediate overflowed.
#[inline(always)]
fn two_sum_err_f64(x: f64, y: f64, s: f64) -> f64 {
    let bb = s - x;
    (x - (s - bb)) + (y - bb)
}

#[inline(always)]
fn two_sum_err_f32(x: f32, y: f32, s: f32) -> f32 {
    let bb = s - x;
    (x - (s - bb)) + (y - bb)
}

/// `|x| = m * 2^e` for finite binary64 bits `x`.
#[inline(always)]
fn decompose(x: u64) -> (u64, i32) {
    let biased = ((x >> 52) & 0x7ff) as i32;
    let frac = x & ((1 << 52) - 1);
    if biased == 0 {
        (frac, -1074)
    } else {
        (frac | (1 << 52), biased - 1075)
    }
}

/// Whether `m1 * m2 * 2^(e1 + e2) == m3 * 2^e3` exactly (significands below 2^53).
#[inline(always)]
fn product_equals((m1, e1): (u64, i32), (m2, e2): (u64, i32), (m3, e3): (u64, i32)) -> bool {
    let p = u128::from(m1) * u128::from(m2); // below 2^106
    let k = e3 - e1 - e2; // the values are equal iff p == m3 * 2^k
    if k >= 0 {
        let k = k as u32;
        k < 128 && p >> k == u128::from(m3) && (p >> k) << k == p
    } else {
        let k = k.unsigned_abs();
        k < 64 && (m3 >> k) << k == m3 && p == u128::from(m3 >> k)
    }
}

/// The product of two normal significands `m1, m2` in `[2^52, 2^53)`: `m1 * m2 = top * 2^s +
/// rest` with `top` in `[2^52, 2^53)` and `s` 52 or 53; returns `(top, s, rest == 0)`. The
/// common case of [`product_equals`], without variable-width 128-bit shifts.
#[inline(always)]
fn mul_sig(m1: u64, m2: u64) -> (u64, i32, bool) {
    let p = u128::from(m1) * u128::from(m2); // in [2^104, 2^106)
    let (hi, lo) = ((p >> 64) as u64, p as u64);
    let top52 = (hi << 12) | (lo >> 52);
    if hi >> 41 != 0 {
        (top52 >> 1, 53, lo & ((1 << 53) - 1) == 0) // p >= 2^105
    } else {
        (top52, 52, lo & ((1 << 52) - 1) == 0)
    }
}

/// Whether binary64 bits `x` (finite) are a normal number.
#[inline(always)]
fn is_normal(x: u64) -> bool {
    x & (0x7ff << 52) != 0
}

/// binary64 `a + b` in RNE.
#[inline(always)]
pub(super) fn add_f64(a: u64, b: u64, flags: &mut u8) -> Option<u64> {
    let (x, y) = (f64::from_bits(a), f64::from_bits(b));
    let s = x + y;
    if !s.is_finite() {
        return None;
    }
    // Both operands are finite here (an infinite or NaN operand gives a non-finite sum).
    // Tiny sums are always exact, so UF cannot arise.
    let e = two_sum_err_f64(x, y, s);
    if !e.is_finite() {
        return None;
    }
    done(s.to_bits(), e != 0.0, flags)
}

/// binary64 `a - b` in RNE.
#[inline(always)]
pub(super) fn sub_f64(a: u64, b: u64, flags: &mut u8) -> Option<u64> {
    let (x, y) = (f64::from_bits(a), -f64::from_bits(b));
    let s = x + y; // x - b, exactly as rounded
    if !s.is_finite() {
        return None;
    }
    let e = two_sum_err_f64(x, y, s);
    if !e.is_finite() {
        return None;
    }
    done(s.to_bits(), e != 0.0, flags)
}

/// binary64 `a * b` in RNE.
#[inline(always)]
pub(super) fn mul_f64(a: u64, b: u64, flags: &mut u8) -> Option<u64> {
    let p = f64::from_bits(a) * f64::from_bits(b);
    // Excludes NaN and infinite results (and so NaN/infinite operands, and overflow), zero
    // and tiny results.
    if !big_finite_f64(p) {
        return None;
    }
    // The result is normal, so it holds 53 significant bits.
    let exact = if is_normal(a) && is_normal(b) {
        mul_sig(decompose(a).0, decompose(b).0).2
    } else {
        product_equals(decompose(a), decompose(b), decompose(p.to_bits()))
    };
    done(p.to_bits(), !exact, flags)
}

/// binary64 `a / b` in RNE.
#[inline(always)]
pub(super) fn div_f64(a: u64, b: u64, flags: &mut u8) -> Option<u64> {
    let q = f64::from_bits(a) / f64::from_bits(b);
    if !big_finite_f64(q) {
        return None;
    }
    // q normal and finite: a, b finite and non-zero. Exact iff q * b == a.
    let (mq, eq) = decompose(q.to_bits());
    let exact = if is_normal(a) && is_normal(b) {
        let ((ma, ea), (mb, eb)) = (decompose(a), decompose(b));
        let (top, s, rest_zero) = mul_sig(mq, mb);
        rest_zero && top == ma && eq + eb + s == ea
    } else {
        product_equals((mq, eq), decompose(b), decompose(a))
    };
    done(q.to_bits(), !exact, flags)
}

/// binary64 `sqrt(a)` in RNE (also the RMM result: no square root is halfway).
#[inline(always)]
pub(super) fn sqrt_f64(a: u64, flags: &mut u8) -> Option<u64> {
    let x = f64::from_bits(a);
    if x == 0.0 {
        return Some(a); // sqrt(±0) = ±0
    }
    // Positive, finite, non-zero: the root is a normal number.
    if !(x > 0.0 && x.is_finite()) {
        return None;
    }
    let s = x.sqrt();
    // Exact iff s * s == a (s is normal).
    let (ms, es) = decompose(s.to_bits());
    let exact = if is_normal(a) {
        let (ma, ea) = decompose(a);
        let (top, sh, rest_zero) = mul_sig(ms, ms);
        rest_zero && top == ma && 2 * es + sh == ea
    } else {
        product_equals((ms, es), (ms, es), decompose(a))
    };
    done(s.to_bits(), !exact, flags)
}

/// `a * b - c` with one rounding (RNE), with no MXCSR change.
///
/// # Safety
///
/// The host must support FMA3.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn fms_f64(a: f64, b: f64, c: f64) -> f64 {
    let mut x = a;
    // SAFETY: the caller guarantees FMA3. A register-only instruction; it runs in the default
    // environment (MXCSR 0x1F80) that all Rust code runs in, and only sets sticky flags, as any
    // Rust floating-point operation does.
    unsafe {
        asm!(
            "vfmsub213sd {x}, {y}, {z}",
            x = inout(xmm_reg) x,
            y = in(xmm_reg) b,
            z = in(xmm_reg) c,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    x
}

/// Defines `unsafe fn $name(a, b, c) -> $t` computing `$insn` (an FMA3 213 form) in RNE with
/// no MXCSR change.
#[cfg(target_arch = "x86_64")]
macro_rules! fma_rne {
    ($name:ident, $t:ty, $insn:literal) => {
        /// The FMA form in RNE with no MXCSR change.
        ///
        /// # Safety
        ///
        /// The host must support FMA3.
        #[inline(always)]
        pub(super) unsafe fn $name(a: $t, b: $t, c: $t) -> $t {
            let mut x = a;
            // SAFETY: the caller guarantees FMA3. A register-only instruction; it runs in the
            // default environment (MXCSR 0x1F80) that all Rust code runs in, and only sets
            // sticky flags, as any Rust floating-point operation does.
            unsafe {
                asm!(
                    concat!($insn, " {x}, {y}, {z}"),
                    x = inout(xmm_reg) x,
                    y = in(xmm_reg) b,
                    z = in(xmm_reg) c,
                    options(pure, nomem, nostack, preserves_flags),
                );
            }
            x
        }
    };
}

#[cfg(target_arch = "x86_64")]
fma_rne!(fmadd_sd, f64, "vfmadd213sd");
#[cfg(target_arch = "x86_64")]
fma_rne!(fmsub_sd, f64, "vfmsub213sd");
#[cfg(target_arch = "x86_64")]
fma_rne!(fnmsub_sd, f64, "vfnmadd213sd");
#[cfg(target_arch = "x86_64")]
fma_rne!(fnmadd_sd, f64, "vfnmsub213sd");
#[cfg(target_arch = "x86_64")]
fma_rne!(fmadd_ss, f32, "vfmadd213ss");
#[cfg(target_arch = "x86_64")]
fma_rne!(fmsub_ss, f32, "vfmsub213ss");
#[cfg(target_arch = "x86_64")]
fma_rne!(fnmsub_ss, f32, "vfnmadd213ss");
#[cfg(target_arch = "x86_64")]
fma_rne!(fnmadd_ss, f32, "vfnmsub213ss");

/// Flags of a binary64 FMA result `r = RN(x*y + z)` where `x*y + z` is the exact value (the
/// RISC-V form's negations already applied to `x` and `z`).
///
/// # Safety
///
/// The host must support FMA3.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn fma_f64_check(x: f64, y: f64, z: f64, r: f64, flags: &mut u8) -> Option<u64> {
    if !r.is_finite() || !z.is_finite() {
        return None;
    }
    let ph = x * y;
    if x == 0.0 || y == 0.0 {
        // Exact zero product (x and y finite: otherwise r would not be): r = RN(±0 + z),
        // exact. z is finite.
        return Some(r.to_bits());
    }
    // TwoProduct is exact when the product's error is representable: |ph| >= 2^(emin + p + 1)
    // guarantees that (the error is a multiple of ulp(x) * ulp(y) >= 2^(emin - p + 1)).
    const PROD_MIN: f64 = f64::from_bits(55 << 52); // 2^-968
    if !(ph.abs() >= PROD_MIN && ph.is_finite()) {
        return None;
    }
    // SAFETY: the caller guarantees FMA3.
    let pl = unsafe { fms_f64(x, y, ph) };
    let v = r - z;
    let vl = two_sum_err_f64(r, -z, v);
    if !vl.is_finite() || !v.is_finite() {
        return None;
    }
    let exact = ph == v && pl == vl;
    if !(exact || big_finite_f64(r)) {
        return None; // inexact and possibly tiny
    }
    done(r.to_bits(), !exact, flags)
}

/// Flags of a binary32 FMA result `r = RN(x*y + z)` where `x*y + z` is the exact value (the
/// RISC-V form's negations already applied to `x` and `z`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn fma_f32_check(x: f32, y: f32, z: f32, r: f32, flags: &mut u8) -> Option<u32> {
    if !r.is_finite() {
        return None;
    }
    // Finite r: finite operands, no NaN. The product is exact in binary64, and so is TwoSum.
    let p = f64::from(x) * f64::from(y);
    let (r64, z64) = (f64::from(r), -f64::from(z));
    let v = r64 + z64;
    let vl = two_sum_err_f64(r64, z64, v);
    let exact = v == p && vl == 0.0;
    if !(exact || big_finite_f32(r)) {
        return None;
    }
    done(r.to_bits(), !exact, flags)
}

/// binary32 `a + b` in RNE.
#[inline(always)]
pub(super) fn add_f32(a: u32, b: u32, flags: &mut u8) -> Option<u32> {
    let (x, y) = (f32::from_bits(a), f32::from_bits(b));
    let s = x + y;
    if !s.is_finite() {
        return None;
    }
    let e = two_sum_err_f32(x, y, s);
    if !e.is_finite() {
        return None;
    }
    done(s.to_bits(), e != 0.0, flags)
}

/// binary32 `a - b` in RNE.
#[inline(always)]
pub(super) fn sub_f32(a: u32, b: u32, flags: &mut u8) -> Option<u32> {
    let (x, y) = (f32::from_bits(a), -f32::from_bits(b));
    let s = x + y;
    if !s.is_finite() {
        return None;
    }
    let e = two_sum_err_f32(x, y, s);
    if !e.is_finite() {
        return None;
    }
    done(s.to_bits(), e != 0.0, flags)
}

/// binary32 `a * b` in RNE.
#[inline(always)]
pub(super) fn mul_f32(a: u32, b: u32, flags: &mut u8) -> Option<u32> {
    let p = f64::from(f32::from_bits(a)) * f64::from(f32::from_bits(b)); // exact
    if !p.is_finite() {
        return None;
    }
    let r = p as f32; // RN of the exact product
    let exact = f64::from(r) == p;
    if !(exact || big_finite_f32(r)) {
        return None;
    }
    done(r.to_bits(), !exact, flags)
}

/// binary32 `a / b` in RNE.
#[inline(always)]
pub(super) fn div_f32(a: u32, b: u32, flags: &mut u8) -> Option<u32> {
    let (x, y) = (f32::from_bits(a), f32::from_bits(b));
    let q = x / y;
    // Finite non-zero divisor, finite quotient (so a finite dividend).
    if !(q.is_finite() && y != 0.0 && y.is_finite()) {
        return None;
    }
    let exact = f64::from(q) * f64::from(y) == f64::from(x); // the product is exact
    if !(exact || big_finite_f32(q)) {
        return None;
    }
    done(q.to_bits(), !exact, flags)
}

/// binary32 `sqrt(a)` in RNE (also the RMM result: no square root is halfway).
#[inline(always)]
pub(super) fn sqrt_f32(a: u32, flags: &mut u8) -> Option<u32> {
    let x = f32::from_bits(a);
    if !(x >= 0.0 && x.is_finite()) {
        return None; // NaN, negative (invalid, except -0 which passes), +inf
    }
    let s = x.sqrt();
    let exact = f64::from(s) * f64::from(s) == f64::from(x);
    // Roots of positive binary32 numbers are normal.
    done(s.to_bits(), !exact, flags)
}

/// binary64 to binary32 in RNE.
#[inline(always)]
pub(super) fn f64_to_f32(a: u64, flags: &mut u8) -> Option<u32> {
    let x = f64::from_bits(a);
    let r = x as f32;
    if f64::from(r) == x {
        return Some(r.to_bits()); // exact, including ±0 and ±∞
    }
    // Inexact (or NaN): only plain rounding to a normal, finite result is handled here.
    if !big_finite_f32(r) {
        return None;
    }
    done(r.to_bits(), true, flags)
}
