//! IEEE-754 semantics of the RISC-V F and D extensions, bit-exact with Berkeley SoftFloat's
//! RISC-V specialization (and therefore with `qemu-riscv64`): results *and* accrued exception
//! flags.
//!
//! Every operation is a free function on raw bits (`u64` for binary64, `u32` for binary32) that
//! ORs the exceptions it raises into `flags` (the guest's `fflags`, see [`FFLAG_NX`] and
//! friends) and never clears anything there. Rounding-mode operands are already resolved (see
//! [`resolve_rounding_mode`]); an instruction whose mode does not resolve is illegal and never
//! gets here.
//!
//! # Invariants
//!
//! - **Canonical NaN.** Every NaN produced by an arithmetic operation or a conversion is the
//!   canonical NaN ([`CANONICAL_NAN_F64`], [`CANONICAL_NAN_F32`]); NaN payloads are never
//!   propagated. Only the sign-injection operations (and moves, loads and stores, which are not
//!   here) pass NaN bits through unchanged. `min`/`max` return a non-NaN operand unchanged.
//! - **NaN boxing.** An f32 lives in a 64-bit register with its upper 32 bits all ones
//!   ([`box_f32`]); a register that is not properly boxed reads as the canonical f32 NaN
//!   ([`unbox_f32`]). The `_f32` functions here take and return the unboxed `u32`; the caller
//!   unboxes the operands and boxes the result.
//! - **Invalid operation.** NV is raised for signaling-NaN operands of every arithmetic
//!   operation and conversion, for the IEEE invalid cases (∞−∞, 0·∞, 0/0, ∞/∞, √negative), for
//!   a fused multiply-add whose multiplicands are ∞ and 0 *even when the addend is a quiet NaN*,
//!   for `lt`/`le` with any NaN, for `eq`/`min`/`max` with a signaling NaN, and for float→integer
//!   conversions of NaN, ∞ or out-of-range values (which then saturate, NaN to the largest
//!   positive value, and raise no NX).
//! - **Tininess** is detected after rounding (as on x86 and in SoftFloat's RISC-V
//!   specialization): UF is raised when the result is inexact and, rounded with an unbounded
//!   exponent range, smaller in magnitude than the smallest normal number.
//! - **Host floating-point environment.** On x86-64 the arithmetic runs on the host's SSE and
//!   FMA3 units: one `asm!` block per operation loads MXCSR with the guest rounding mode (all
//!   exceptions masked, flags clear, no flush-to-zero), executes the single instruction, stores
//!   MXCSR to read the flags back, and restores MXCSR to its default `0x1F80` before the block
//!   ends. Ordinary Rust code, which LLVM compiles assuming the default environment, therefore
//!   never runs under a guest rounding mode, and **MXCSR is `0x1F80` after every operation**
//!   (the RNE fast paths below never write MXCSR at all; like any Rust floating-point code they
//!   may leave sticky status bits set, which nothing reads).
//! - **RNE fast paths.** Reloading MXCSR costs far more than the arithmetic, so in RNE (the mode
//!   of nearly all guest code) add, sub, mul, div, sqrt, the FMAs and f64→f32 first try a path
//!   that computes the result with ordinary Rust arithmetic in the default environment and
//!   derives the flags from an exact exactness test (see `fast.rs`); it declines, falling back
//!   to the MXCSR path, whenever anything but NX could arise.
//! - **RMM** (round to nearest, ties to max magnitude) has no x86 encoding. Such an operation
//!   runs on the host in RNE, whose flags are exactly RMM's (the two modes differ only on exact
//!   ties, which are inexact in both and never straddle the overflow or tininess thresholds
//!   differently), and when the host reports an inexact result the value is recomputed exactly
//!   with `rustc_apfloat`. Square root needs no repair: a square root is never exactly halfway
//!   between two floats, so `sqrt` rounds identically in RMM and RNE.
//! - Hosts without FMA3 (and non-x86-64 hosts) use the `rustc_apfloat` reference
//!   implementation instead, with the same results and flags.
//!
//! Why this file is long: it is the public surface of the F/D semantics, one short function
//! per operation and format (arithmetic, fused multiply-add, sign injection, min/max,
//! compares, classification, every integer/float conversion), each choosing the host path or
//! the reference; the mechanisms are already split (`host`, `fast`, `soft`, `exec`). Splitting
//! the operations by kind would scatter the shared rounding and flag repairs they call.

use rustc_apfloat::ieee::{Double, Single};

mod exec;
pub use exec::{execute, Illegal};
mod fast;
#[cfg(target_arch = "x86_64")]
mod host;
mod soft;
#[cfg(test)]
mod tests;

use soft::Arith;

/// fflags bit: inexact.
pub const FFLAG_NX: u8 = 0x01;
/// fflags bit: underflow.
pub const FFLAG_UF: u8 = 0x02;
/// fflags bit: overflow.
pub const FFLAG_OF: u8 = 0x04;
/// fflags bit: divide by zero.
pub const FFLAG_DZ: u8 = 0x08;
/// fflags bit: invalid operation.
pub const FFLAG_NV: u8 = 0x10;

/// The canonical binary64 NaN (positive, quiet, zero payload).
pub const CANONICAL_NAN_F64: u64 = 0x7ff8_0000_0000_0000;
/// The canonical binary32 NaN (positive, quiet, zero payload).
pub const CANONICAL_NAN_F32: u32 = 0x7fc0_0000;

/// A static RISC-V rounding mode (the `rm` field values 0..=4, and the `frm` CSR).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoundingMode {
    /// Round to nearest, ties to even.
    Rne = 0,
    /// Round towards zero.
    Rtz = 1,
    /// Round down (towards −∞).
    Rdn = 2,
    /// Round up (towards +∞).
    Rup = 3,
    /// Round to nearest, ties to max magnitude.
    Rmm = 4,
}

impl RoundingMode {
    /// The mode encoded by `bits` (0..=4), or `None` for a reserved or dynamic encoding.
    #[inline]
    pub const fn from_bits(bits: u8) -> Option<RoundingMode> {
        match bits {
            0 => Some(RoundingMode::Rne),
            1 => Some(RoundingMode::Rtz),
            2 => Some(RoundingMode::Rdn),
            3 => Some(RoundingMode::Rup),
            4 => Some(RoundingMode::Rmm),
            _ => None,
        }
    }
}

/// The rounding mode an instruction uses: its `rm` field, or `frm` when the field is 7
/// (dynamic). `None` (reserved field value 5 or 6, or dynamic with `frm` 5..=7) means the
/// instruction is illegal.
#[inline]
pub const fn resolve_rounding_mode(inst_rm: u8, frm: u8) -> Option<RoundingMode> {
    RoundingMode::from_bits(if inst_rm == 7 { frm } else { inst_rm })
}

/// NaN-boxes an f32 into a 64-bit floating-point register (upper 32 bits all ones).
#[inline]
pub const fn box_f32(v: u32) -> u64 {
    0xffff_ffff_0000_0000 | v as u64
}

/// The f32 held in a 64-bit floating-point register: its low half if it is properly
/// NaN-boxed, the canonical NaN otherwise.
#[inline]
pub const fn unbox_f32(reg: u64) -> u32 {
    if reg >> 32 == 0xffff_ffff {
        reg as u32
    } else {
        CANONICAL_NAN_F32
    }
}

/// Bit layout of a binary interchange format, the bits held in the low end of a `u64`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fmt {
    /// Number of stored fraction bits (52 or 23).
    pub(crate) mant_bits: u32,
    /// Number of exponent bits (11 or 8).
    pub(crate) exp_bits: u32,
}

/// binary32.
pub(crate) const F32: Fmt = Fmt { mant_bits: 23, exp_bits: 8 };
/// binary64.
pub(crate) const F64: Fmt = Fmt { mant_bits: 52, exp_bits: 11 };

impl Fmt {
    #[inline(always)]
    const fn sign(self) -> u64 {
        1 << (self.mant_bits + self.exp_bits)
    }
    #[inline(always)]
    const fn exp_mask(self) -> u64 {
        ((1 << self.exp_bits) - 1) << self.mant_bits
    }
    #[inline(always)]
    const fn frac_mask(self) -> u64 {
        (1 << self.mant_bits) - 1
    }
    #[inline(always)]
    const fn quiet(self) -> u64 {
        1 << (self.mant_bits - 1)
    }
    #[inline(always)]
    const fn canon(self) -> u64 {
        self.exp_mask() | self.quiet()
    }
    #[inline(always)]
    const fn min_normal(self) -> u64 {
        1 << self.mant_bits
    }
    #[inline(always)]
    const fn bias(self) -> u64 {
        (1 << (self.exp_bits - 1)) - 1
    }
    /// The exponent of the least significant bit of a subnormal (-1074, -149).
    #[cfg(any(test, not(target_arch = "x86_64")))]
    #[inline(always)]
    const fn min_exp_int(self) -> i32 {
        1 - self.bias() as i32 - self.mant_bits as i32
    }
    #[inline(always)]
    const fn abs(self, x: u64) -> u64 {
        x & (self.sign() - 1)
    }
    #[inline(always)]
    const fn is_nan(self, x: u64) -> bool {
        self.abs(x) > self.exp_mask()
    }
    #[inline(always)]
    const fn is_snan(self, x: u64) -> bool {
        self.is_nan(x) && x & self.quiet() == 0
    }
    #[inline(always)]
    const fn is_inf_times_zero(self, a: u64, b: u64) -> bool {
        let (a, b) = (self.abs(a), self.abs(b));
        (a == self.exp_mask() && b == 0) || (a == 0 && b == self.exp_mask())
    }
}

// ---------------------------------------------------------------------------------------------
// Arithmetic
// ---------------------------------------------------------------------------------------------

/// Finishes a host result: ORs its flags in, canonicalizes a NaN, and for RMM recomputes an
/// inexact value with `rmm` (the RNE flags are RMM's; see the module docs).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn host_finish(
    f: Fmt,
    r: u64,
    mxcsr: u32,
    rm: RoundingMode,
    flags: &mut u8,
    rmm: impl FnOnce() -> u64,
) -> u64 {
    let ff = host::fflags(mxcsr);
    *flags |= ff;
    if f.is_nan(r) {
        f.canon()
    } else if rm == RoundingMode::Rmm && ff & FFLAG_NX != 0 {
        rmm()
    } else {
        r
    }
}

/// Finishes a result of the software backend.
#[inline(always)]
fn soft_finish((r, ff): (u64, u8), flags: &mut u8) -> u64 {
    *flags |= ff;
    r
}

#[cfg(target_arch = "x86_64")]
#[cold]
#[inline(never)]
fn rmm_arith_f64(op: Arith, a: u64, b: u64) -> u64 {
    soft::arith::<Double>(op, a, b, RoundingMode::Rmm).0
}

#[cfg(target_arch = "x86_64")]
#[cold]
#[inline(never)]
fn rmm_arith_f32(op: Arith, a: u64, b: u64) -> u64 {
    soft::arith::<Single>(op, a, b, RoundingMode::Rmm).0
}

/// Defines a public two-operand arithmetic operation for both formats.
macro_rules! arith_op {
    ($op:expr, $doc:literal, $f64_name:ident, $sd:ident, $f32_name:ident, $ss:ident) => {
        #[doc = concat!("binary64 ", $doc, ", rounded with `rm`.")]
        #[inline]
        pub fn $f64_name(a: u64, b: u64, rm: RoundingMode, flags: &mut u8) -> u64 {
            if rm == RoundingMode::Rne {
                if let Some(r) = fast::$f64_name(a, b, flags) {
                    return r;
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                let (r, st) = host::$sd(f64::from_bits(a), f64::from_bits(b), host::csr(rm));
                host_finish(F64, r.to_bits(), st, rm, flags, || rmm_arith_f64($op, a, b))
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                soft_finish(soft::arith::<Double>($op, a, b, rm), flags)
            }
        }

        #[doc = concat!("binary32 ", $doc, ", rounded with `rm`.")]
        #[inline]
        pub fn $f32_name(a: u32, b: u32, rm: RoundingMode, flags: &mut u8) -> u32 {
            if rm == RoundingMode::Rne {
                if let Some(r) = fast::$f32_name(a, b, flags) {
                    return r;
                }
            }
            let (a64, b64) = (u64::from(a), u64::from(b));
            #[cfg(target_arch = "x86_64")]
            {
                let (r, st) = host::$ss(f32::from_bits(a), f32::from_bits(b), host::csr(rm));
                let rmm = || rmm_arith_f32($op, a64, b64);
                host_finish(F32, u64::from(r.to_bits()), st, rm, flags, rmm) as u32
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                soft_finish(soft::arith::<Single>($op, a64, b64, rm), flags) as u32
            }
        }
    };
}

arith_op!(Arith::Add, "addition `a + b` (fadd)", add_f64, add_sd, add_f32, add_ss);
arith_op!(Arith::Sub, "subtraction `a - b` (fsub)", sub_f64, sub_sd, sub_f32, sub_ss);
arith_op!(Arith::Mul, "multiplication `a * b` (fmul)", mul_f64, mul_sd, mul_f32, mul_ss);
arith_op!(Arith::Div, "division `a / b` (fdiv)", div_f64, div_sd, div_f32, div_ss);

/// binary64 square root (fsqrt.d), rounded with `rm`. `sqrt(-0) = -0`; any other negative
/// operand is invalid. RMM rounds like RNE (no square root is exactly halfway).
#[inline]
pub fn sqrt_f64(a: u64, rm: RoundingMode, flags: &mut u8) -> u64 {
    if matches!(rm, RoundingMode::Rne | RoundingMode::Rmm) {
        if let Some(r) = fast::sqrt_f64(a, flags) {
            return r;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        // RMM runs as RNE, which gives the same result: see the function docs.
        let (r, st) = host::sqrt_sd(f64::from_bits(a), host::csr(rm));
        let ff = host::fflags(st);
        *flags |= ff;
        let r = r.to_bits();
        if F64.is_nan(r) {
            CANONICAL_NAN_F64
        } else {
            r
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        soft_finish(soft::sqrt::<Double>(a, rm), flags)
    }
}

/// binary32 square root (fsqrt.s), rounded with `rm`. `sqrt(-0) = -0`; any other negative
/// operand is invalid. RMM rounds like RNE (no square root is exactly halfway).
#[inline]
pub fn sqrt_f32(a: u32, rm: RoundingMode, flags: &mut u8) -> u32 {
    if matches!(rm, RoundingMode::Rne | RoundingMode::Rmm) {
        if let Some(r) = fast::sqrt_f32(a, flags) {
            return r;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        // RMM runs as RNE, which gives the same result: see the function docs.
        let (r, st) = host::sqrt_ss(f32::from_bits(a), host::csr(rm));
        let ff = host::fflags(st);
        *flags |= ff;
        let r = r.to_bits();
        if F32.is_nan(u64::from(r)) {
            CANONICAL_NAN_F32
        } else {
            r
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        soft_finish(soft::sqrt::<Single>(u64::from(a), rm), flags) as u32
    }
}

// ---------------------------------------------------------------------------------------------
// Fused multiply-add
// ---------------------------------------------------------------------------------------------

/// Finishes a host FMA result. When an operand is NaN the flags are computed here: RISC-V
/// raises NV for ∞·0 even with a quiet-NaN addend, and x86 need not.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fma_finish(
    f: Fmt,
    r: u64,
    mxcsr: u32,
    (a, b, c): (u64, u64, u64),
    rm: RoundingMode,
    flags: &mut u8,
    rmm: impl FnOnce() -> u64,
) -> u64 {
    if f.is_nan(r) && (f.is_nan(a) || f.is_nan(b) || f.is_nan(c)) {
        if f.is_snan(a) || f.is_snan(b) || f.is_snan(c) || f.is_inf_times_zero(a, b) {
            *flags |= FFLAG_NV;
        }
        return f.canon();
    }
    host_finish(f, r, mxcsr, rm, flags, rmm)
}

#[cold]
#[inline(never)]
fn soft_fma_f64(
    a: u64,
    b: u64,
    c: u64,
    neg_prod: bool,
    neg_add: bool,
    rm: RoundingMode,
) -> (u64, u8) {
    soft::fma::<Double>(a, b, c, neg_prod, neg_add, rm)
}

#[cold]
#[inline(never)]
fn soft_fma_f32(
    a: u64,
    b: u64,
    c: u64,
    neg_prod: bool,
    neg_add: bool,
    rm: RoundingMode,
) -> (u64, u8) {
    soft::fma::<Single>(a, b, c, neg_prod, neg_add, rm)
}

/// Defines a public fused multiply-add form for both formats.
macro_rules! fma_op {
    ($doc:literal, $neg_prod:literal, $neg_add:literal,
     $f64_name:ident, $sd:ident, $f32_name:ident, $ss:ident) => {
        #[doc = concat!("binary64 ", $doc, " with a single rounding, in `rm`.")]
        #[inline]
        pub fn $f64_name(a: u64, b: u64, c: u64, rm: RoundingMode, flags: &mut u8) -> u64 {
            #[cfg(target_arch = "x86_64")]
            if host::has_fma() {
                let (x, y, z) = (f64::from_bits(a), f64::from_bits(b), f64::from_bits(c));
                if rm == RoundingMode::Rne {
                    // SAFETY: FMA3 is available (checked just above).
                    let r = unsafe { fast::$sd(x, y, z) };
                    let xs = if $neg_prod { -x } else { x };
                    let zs = if $neg_add { -z } else { z };
                    // SAFETY: FMA3 is available (checked just above).
                    if let Some(r) = unsafe { fast::fma_f64_check(xs, y, zs, r, flags) } {
                        return r;
                    }
                }
                // SAFETY: FMA3 is available (checked just above).
                let (r, st) = unsafe { host::$sd(x, y, z, host::csr(rm)) };
                let rmm = || soft_fma_f64(a, b, c, $neg_prod, $neg_add, rm).0;
                return fma_finish(F64, r.to_bits(), st, (a, b, c), rm, flags, rmm);
            }
            soft_finish(soft_fma_f64(a, b, c, $neg_prod, $neg_add, rm), flags)
        }

        #[doc = concat!("binary32 ", $doc, " with a single rounding, in `rm`.")]
        #[inline]
        pub fn $f32_name(a: u32, b: u32, c: u32, rm: RoundingMode, flags: &mut u8) -> u32 {
            let (a64, b64, c64) = (u64::from(a), u64::from(b), u64::from(c));
            #[cfg(target_arch = "x86_64")]
            if host::has_fma() {
                let (x, y, z) = (f32::from_bits(a), f32::from_bits(b), f32::from_bits(c));
                if rm == RoundingMode::Rne {
                    // SAFETY: FMA3 is available (checked just above).
                    let r = unsafe { fast::$ss(x, y, z) };
                    let xs = if $neg_prod { -x } else { x };
                    let zs = if $neg_add { -z } else { z };
                    if let Some(r) = fast::fma_f32_check(xs, y, zs, r, flags) {
                        return r;
                    }
                }
                // SAFETY: FMA3 is available (checked just above).
                let (r, st) = unsafe { host::$ss(x, y, z, host::csr(rm)) };
                let rmm = || soft_fma_f32(a64, b64, c64, $neg_prod, $neg_add, rm).0;
                let r = u64::from(r.to_bits());
                return fma_finish(F32, r, st, (a64, b64, c64), rm, flags, rmm) as u32;
            }
            soft_finish(soft_fma_f32(a64, b64, c64, $neg_prod, $neg_add, rm), flags) as u32
        }
    };
}

fma_op!("`a * b + c` (fmadd)", false, false, fmadd_f64, fmadd_sd, fmadd_f32, fmadd_ss);
fma_op!("`a * b - c` (fmsub)", false, true, fmsub_f64, fmsub_sd, fmsub_f32, fmsub_ss);
fma_op!("`-(a * b) + c` (fnmsub)", true, false, fnmsub_f64, fnmsub_sd, fnmsub_f32, fnmsub_ss);
fma_op!("`-(a * b) - c` (fnmadd)", true, true, fnmadd_f64, fnmadd_sd, fnmadd_f32, fnmadd_ss);

// ---------------------------------------------------------------------------------------------
// Sign injection, min/max, comparisons, classification
// ---------------------------------------------------------------------------------------------

#[inline(always)]
fn sgnj(f: Fmt, a: u64, b: u64) -> u64 {
    f.abs(a) | (b & f.sign())
}

#[inline(always)]
fn sgnjn(f: Fmt, a: u64, b: u64) -> u64 {
    f.abs(a) | (!b & f.sign())
}

#[inline(always)]
fn sgnjx(f: Fmt, a: u64, b: u64) -> u64 {
    a ^ (b & f.sign())
}

/// Key whose signed order is the numeric order of non-NaN values with −0 < +0.
#[inline(always)]
fn total_key(f: Fmt, x: u64) -> i64 {
    let mag = f.abs(x) as i64;
    if x & f.sign() != 0 {
        -mag - 1
    } else {
        mag
    }
}

/// Key whose signed order is the numeric order of non-NaN values with −0 = +0.
#[inline(always)]
fn cmp_key(f: Fmt, x: u64) -> i64 {
    let mag = f.abs(x) as i64;
    if x & f.sign() != 0 {
        -mag
    } else {
        mag
    }
}

/// minimumNumber / maximumNumber as RISC-V F 2.2 defines them.
#[inline(always)]
fn min_max(f: Fmt, a: u64, b: u64, max: bool, flags: &mut u8) -> u64 {
    let (an, bn) = (f.is_nan(a), f.is_nan(b));
    if an || bn {
        if f.is_snan(a) || f.is_snan(b) {
            *flags |= FFLAG_NV;
        }
        return match (an, bn) {
            (true, true) => f.canon(),
            (true, false) => b,
            _ => a,
        };
    }
    if (total_key(f, a) < total_key(f, b)) != max {
        a
    } else {
        b
    }
}

#[inline(always)]
fn feq(f: Fmt, a: u64, b: u64, flags: &mut u8) -> bool {
    if f.is_nan(a) || f.is_nan(b) {
        if f.is_snan(a) || f.is_snan(b) {
            *flags |= FFLAG_NV;
        }
        return false;
    }
    a == b || f.abs(a | b) == 0
}

#[inline(always)]
fn flt(f: Fmt, a: u64, b: u64, or_equal: bool, flags: &mut u8) -> bool {
    if f.is_nan(a) || f.is_nan(b) {
        *flags |= FFLAG_NV;
        return false;
    }
    let (ka, kb) = (cmp_key(f, a), cmp_key(f, b));
    ka < kb || (or_equal && ka == kb)
}

/// The fclass mask: bit 0 −∞, 1 negative normal, 2 negative subnormal, 3 −0, 4 +0,
/// 5 positive subnormal, 6 positive normal, 7 +∞, 8 signaling NaN, 9 quiet NaN.
#[inline(always)]
fn classify(f: Fmt, x: u64) -> u64 {
    let neg = x & f.sign() != 0;
    let exp = x & f.exp_mask();
    let frac = x & f.frac_mask();
    let bit = if exp == f.exp_mask() {
        if frac == 0 {
            if neg {
                0
            } else {
                7
            }
        } else if frac & f.quiet() != 0 {
            9
        } else {
            8
        }
    } else if exp == 0 {
        match (frac == 0, neg) {
            (true, true) => 3,
            (true, false) => 4,
            (false, true) => 2,
            (false, false) => 5,
        }
    } else if neg {
        1
    } else {
        6
    };
    1 << bit
}

/// Defines the public non-arithmetic operations of one format.
macro_rules! misc_ops {
    ($t:ty, $fmt:expr, $name:literal, $sgnj:ident, $sgnjn:ident, $sgnjx:ident, $min:ident,
     $max:ident, $eq:ident, $lt:ident, $le:ident, $class:ident) => {
        #[doc = concat!($name, " sign injection (fsgnj): `a`'s magnitude with `b`'s sign.")]
        #[inline]
        pub fn $sgnj(a: $t, b: $t) -> $t {
            sgnj($fmt, a.into(), b.into()) as $t
        }

        #[doc = concat!($name, " negated sign injection (fsgnjn): `a`'s magnitude with the ")]
        #[doc = "opposite of `b`'s sign."]
        #[inline]
        pub fn $sgnjn(a: $t, b: $t) -> $t {
            sgnjn($fmt, a.into(), b.into()) as $t
        }

        #[doc = concat!($name, " xor sign injection (fsgnjx): `a` with its sign xor `b`'s.")]
        #[inline]
        pub fn $sgnjx(a: $t, b: $t) -> $t {
            sgnjx($fmt, a.into(), b.into()) as $t
        }

        #[doc = concat!($name, " minimumNumber (fmin): the other operand if just one is NaN, ")]
        #[doc = "the canonical NaN if both are, −0 < +0; NV for a signaling NaN."]
        #[inline]
        pub fn $min(a: $t, b: $t, flags: &mut u8) -> $t {
            min_max($fmt, a.into(), b.into(), false, flags) as $t
        }

        #[doc = concat!($name, " maximumNumber (fmax): the other operand if just one is NaN, ")]
        #[doc = "the canonical NaN if both are, −0 < +0; NV for a signaling NaN."]
        #[inline]
        pub fn $max(a: $t, b: $t, flags: &mut u8) -> $t {
            min_max($fmt, a.into(), b.into(), true, flags) as $t
        }

        #[doc = concat!($name, " quiet equality (feq): false with a NaN, NV only for a ")]
        #[doc = "signaling NaN; −0 = +0."]
        #[inline]
        pub fn $eq(a: $t, b: $t, flags: &mut u8) -> bool {
            feq($fmt, a.into(), b.into(), flags)
        }

        #[doc = concat!($name, " signaling less-than (flt): false and NV with any NaN.")]
        #[inline]
        pub fn $lt(a: $t, b: $t, flags: &mut u8) -> bool {
            flt($fmt, a.into(), b.into(), false, flags)
        }

        #[doc = concat!($name, " signaling less-or-equal (fle): false and NV with any NaN.")]
        #[inline]
        pub fn $le(a: $t, b: $t, flags: &mut u8) -> bool {
            flt($fmt, a.into(), b.into(), true, flags)
        }

        #[doc = concat!($name, " fclass: a mask with exactly one of bits 0..=9 set ")]
        #[doc = "(−∞, −normal, −subnormal, −0, +0, +subnormal, +normal, +∞, sNaN, qNaN)."]
        #[inline]
        pub fn $class(a: $t) -> u64 {
            classify($fmt, a.into())
        }
    };
}

misc_ops!(
    u64,
    F64,
    "binary64",
    sgnj_f64,
    sgnjn_f64,
    sgnjx_f64,
    min_f64,
    max_f64,
    eq_f64,
    lt_f64,
    le_f64,
    classify_f64
);
misc_ops!(
    u32,
    F32,
    "binary32",
    sgnj_f32,
    sgnjn_f32,
    sgnjx_f32,
    min_f32,
    max_f32,
    eq_f32,
    lt_f32,
    le_f32,
    classify_f32
);

// ---------------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------------

/// Whether to increment the magnitude `kept` (odd if `odd`) given the discarded part `rem` and
/// the value `half` of one half unit in the last kept place.
#[inline(always)]
fn round_up(rm: RoundingMode, neg: bool, odd: bool, rem: u64, half: u64) -> bool {
    match rm {
        RoundingMode::Rne => rem > half || (rem == half && odd),
        RoundingMode::Rtz => false,
        RoundingMode::Rdn => neg && rem != 0,
        RoundingMode::Rup => !neg && rem != 0,
        RoundingMode::Rmm => rem >= half,
    }
}

/// `a` (binary64) rounded with `rm` to an integer of `width` bits (32 or 64), `signed` or not,
/// saturating with NV; 32-bit results are sign-extended to 64 bits, as RISC-V writes them.
#[inline(always)]
fn f64_to_int(a: u64, rm: RoundingMode, flags: &mut u8, signed: bool, width: u32) -> u64 {
    let sext = |v: u64| if width == 32 { v as u32 as i32 as i64 as u64 } else { v };
    let max = if signed { (1u64 << (width - 1)) - 1 } else { u64::MAX >> (64 - width) };
    let min = if signed { (1u64 << (width - 1)).wrapping_neg() } else { 0 };

    let neg = a >> 63 != 0;
    let biased = (a >> 52) & 0x7ff;
    let frac = a & F64.frac_mask();
    let saturate = |flags: &mut u8| {
        *flags |= FFLAG_NV;
        if neg {
            min
        } else {
            sext(max)
        }
    };
    if biased == 0x7ff {
        if frac != 0 {
            *flags |= FFLAG_NV;
            return sext(max); // NaN
        }
        return saturate(flags); // ±∞
    }
    // Integer part and 64-bit binary fraction of |a|.
    let (int, rem) = if biased == 0 {
        if frac == 0 {
            return 0; // ±0
        }
        (0, 1) // subnormal: nonzero and far below one half
    } else {
        let e = biased as i32 - 1075; // |a| = mant * 2^e
        let mant = frac | (1 << 52);
        if e > 11 {
            return saturate(flags); // |a| >= 2^64
        } else if e < -64 {
            (0, 1) // |a| < 2^-11: nonzero and below one half
        } else {
            let x = u128::from(mant) << (64 + e);
            ((x >> 64) as u64, x as u64)
        }
    };
    let (int, carry) =
        int.overflowing_add(u64::from(round_up(rm, neg, int & 1 != 0, rem, 1 << 63)));
    if carry {
        return saturate(flags);
    }
    let result = if neg {
        if signed {
            if int > 1 << (width - 1) {
                return saturate(flags);
            }
            int.wrapping_neg()
        } else {
            if int != 0 {
                return saturate(flags);
            }
            0
        }
    } else {
        if int > max {
            return saturate(flags);
        }
        sext(int)
    };
    if rem != 0 {
        *flags |= FFLAG_NX;
    }
    result
}

/// The integer `±mag` (`neg` gives the sign) rounded with `rm` to the format `f`.
#[inline(always)]
fn int_to_float(f: Fmt, neg: bool, mag: u64, rm: RoundingMode, flags: &mut u8) -> u64 {
    if mag == 0 {
        return 0;
    }
    let sign = if neg { f.sign() } else { 0 };
    let msb = 63 - mag.leading_zeros();
    // Adding a significand with its leading bit at `mant_bits` to this increments the exponent
    // field once more; a rounding carry out of the significand propagates into it correctly.
    let exp_field = (u64::from(msb) + f.bias() - 1) << f.mant_bits;
    if msb <= f.mant_bits {
        return sign | (exp_field + (mag << (f.mant_bits - msb)));
    }
    let shift = msb - f.mant_bits;
    let kept = mag >> shift;
    let rem = mag & ((1 << shift) - 1);
    let up = round_up(rm, neg, kept & 1 != 0, rem, 1 << (shift - 1));
    if rem != 0 {
        *flags |= FFLAG_NX;
    }
    sign | (exp_field + kept + u64::from(up))
}

/// fcvt.w.d: binary64 to a signed 32-bit integer (sign-extended to 64 bits), rounded with
/// `rm`; NaN gives `0x7fff_ffff`, out-of-range values saturate; both raise NV (and not NX).
#[inline]
pub fn f64_to_i32(a: u64, rm: RoundingMode, flags: &mut u8) -> u64 {
    f64_to_int(a, rm, flags, true, 32)
}

/// fcvt.wu.d: binary64 to an unsigned 32-bit integer, rounded with `rm`; the 32-bit result is
/// sign-extended to 64 bits. NaN gives `0xffff_ffff` (so all ones), out-of-range values
/// saturate (negative ones to 0, unless they round to 0); both raise NV (and not NX).
#[inline]
pub fn f64_to_u32(a: u64, rm: RoundingMode, flags: &mut u8) -> u64 {
    f64_to_int(a, rm, flags, false, 32)
}

/// fcvt.l.d: binary64 to a signed 64-bit integer, rounded with `rm`; NaN gives `i64::MAX`,
/// out-of-range values saturate; both raise NV (and not NX).
#[inline]
pub fn f64_to_i64(a: u64, rm: RoundingMode, flags: &mut u8) -> u64 {
    f64_to_int(a, rm, flags, true, 64)
}

/// fcvt.lu.d: binary64 to an unsigned 64-bit integer, rounded with `rm`; NaN gives
/// `u64::MAX`, out-of-range values saturate (negative ones to 0, unless they round to 0); both
/// raise NV (and not NX).
#[inline]
pub fn f64_to_u64(a: u64, rm: RoundingMode, flags: &mut u8) -> u64 {
    f64_to_int(a, rm, flags, false, 64)
}

/// binary32 to binary64 bits for the float-to-integer conversions (exact; any NaN stays NaN).
#[inline(always)]
fn widen_for_int(a: u32) -> u64 {
    f64::from(f32::from_bits(a)).to_bits()
}

/// fcvt.w.s: binary32 to a signed 32-bit integer (sign-extended), as [`f64_to_i32`].
#[inline]
pub fn f32_to_i32(a: u32, rm: RoundingMode, flags: &mut u8) -> u64 {
    f64_to_int(widen_for_int(a), rm, flags, true, 32)
}

/// fcvt.wu.s: binary32 to an unsigned 32-bit integer (sign-extended), as [`f64_to_u32`].
#[inline]
pub fn f32_to_u32(a: u32, rm: RoundingMode, flags: &mut u8) -> u64 {
    f64_to_int(widen_for_int(a), rm, flags, false, 32)
}

/// fcvt.l.s: binary32 to a signed 64-bit integer, as [`f64_to_i64`].
#[inline]
pub fn f32_to_i64(a: u32, rm: RoundingMode, flags: &mut u8) -> u64 {
    f64_to_int(widen_for_int(a), rm, flags, true, 64)
}

/// fcvt.lu.s: binary32 to an unsigned 64-bit integer, as [`f64_to_u64`].
#[inline]
pub fn f32_to_u64(a: u32, rm: RoundingMode, flags: &mut u8) -> u64 {
    f64_to_int(widen_for_int(a), rm, flags, false, 64)
}

/// fcvt.d.w: a signed 32-bit integer to binary64 (always exact, no flags).
#[inline]
pub fn i32_to_f64(v: i32) -> u64 {
    f64::from(v).to_bits()
}

/// fcvt.d.wu: an unsigned 32-bit integer to binary64 (always exact, no flags).
#[inline]
pub fn u32_to_f64(v: u32) -> u64 {
    f64::from(v).to_bits()
}

/// fcvt.d.l: a signed 64-bit integer to binary64, rounded with `rm` (NX when inexact).
#[inline]
pub fn i64_to_f64(v: i64, rm: RoundingMode, flags: &mut u8) -> u64 {
    int_to_float(F64, v < 0, v.unsigned_abs(), rm, flags)
}

/// fcvt.d.lu: an unsigned 64-bit integer to binary64, rounded with `rm` (NX when inexact).
#[inline]
pub fn u64_to_f64(v: u64, rm: RoundingMode, flags: &mut u8) -> u64 {
    int_to_float(F64, false, v, rm, flags)
}

/// fcvt.s.w: a signed 32-bit integer to binary32, rounded with `rm` (NX when inexact).
#[inline]
pub fn i32_to_f32(v: i32, rm: RoundingMode, flags: &mut u8) -> u32 {
    int_to_float(F32, v < 0, u64::from(v.unsigned_abs()), rm, flags) as u32
}

/// fcvt.s.wu: an unsigned 32-bit integer to binary32, rounded with `rm` (NX when inexact).
#[inline]
pub fn u32_to_f32(v: u32, rm: RoundingMode, flags: &mut u8) -> u32 {
    int_to_float(F32, false, u64::from(v), rm, flags) as u32
}

/// fcvt.s.l: a signed 64-bit integer to binary32, rounded with `rm` (NX when inexact).
#[inline]
pub fn i64_to_f32(v: i64, rm: RoundingMode, flags: &mut u8) -> u32 {
    int_to_float(F32, v < 0, v.unsigned_abs(), rm, flags) as u32
}

/// fcvt.s.lu: an unsigned 64-bit integer to binary32, rounded with `rm` (NX when inexact).
#[inline]
pub fn u64_to_f32(v: u64, rm: RoundingMode, flags: &mut u8) -> u32 {
    int_to_float(F32, false, v, rm, flags) as u32
}

#[cfg(target_arch = "x86_64")]
#[cold]
#[inline(never)]
fn rmm_f64_to_f32(a: u64) -> u64 {
    soft::f64_to_f32(a, RoundingMode::Rmm).0
}

/// fcvt.s.d: binary64 to binary32, rounded with `rm` (may overflow, underflow, be inexact);
/// a NaN gives the canonical NaN, with NV if it was signaling.
#[inline]
pub fn f64_to_f32(a: u64, rm: RoundingMode, flags: &mut u8) -> u32 {
    if rm == RoundingMode::Rne {
        if let Some(r) = fast::f64_to_f32(a, flags) {
            return r;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        let (r, st) = host::cvt_sd2ss(f64::from_bits(a), host::csr(rm));
        host_finish(F32, u64::from(r.to_bits()), st, rm, flags, || rmm_f64_to_f32(a)) as u32
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        soft_finish(soft::f64_to_f32(a, rm), flags) as u32
    }
}

/// fcvt.d.s: binary32 to binary64 (always exact); a NaN gives the canonical NaN, with NV if it
/// was signaling.
#[inline]
pub fn f32_to_f64(a: u32, flags: &mut u8) -> u64 {
    let a64 = u64::from(a);
    if F32.is_nan(a64) {
        if F32.is_snan(a64) {
            *flags |= FFLAG_NV;
        }
        return CANONICAL_NAN_F64;
    }
    f64::from(f32::from_bits(a)).to_bits()
}
