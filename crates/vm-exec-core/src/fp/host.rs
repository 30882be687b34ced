//! x86-64 host backend: each operation is one SSE2/FMA3 instruction executed under the
//! guest rounding mode, with the exception flags read back, inside a single `asm!` block.
//!
//! Every block has the shape
//!
//! ```text
//! ldmxcsr [mode]      ; guest rounding mode, all exceptions masked, flags clear, no FTZ/DAZ
//! <op>                ; the one instruction
//! stmxcsr [status]    ; read back the sticky exception flags
//! ldmxcsr [default]   ; 0x1F80: RNE, all masked, flags clear: the environment LLVM assumes
//! ```
//!
//! so no Rust code (which LLVM compiles assuming the default floating-point environment, and
//! may reorder or constant-fold) ever runs under a non-default MXCSR.

use core::arch::asm;
use core::ptr::{addr_of, addr_of_mut};

use super::{RoundingMode, FFLAG_DZ, FFLAG_NV, FFLAG_NX, FFLAG_OF, FFLAG_UF};

/// The default MXCSR: round to nearest even, all exceptions masked, flags clear, FTZ and DAZ
/// off. Restored at the end of every asm block.
pub(super) const MXCSR_DEFAULT: u32 = 0x1F80;

static MXCSR_DEFAULT_CELL: u32 = MXCSR_DEFAULT;

/// MXCSR images indexed by [`RoundingMode`] (bits 13-14: 00 nearest, 01 down, 10 up, 11 toward
/// zero). RMM has no x86 encoding: it runs in RNE, which yields exactly RMM's flags, and the
/// caller repairs the value of the (inexact) results that may differ.
static MXCSR_FOR_MODE: [u32; 5] = [
    MXCSR_DEFAULT,          // Rne
    MXCSR_DEFAULT | 0x6000, // Rtz
    MXCSR_DEFAULT | 0x2000, // Rdn
    MXCSR_DEFAULT | 0x4000, // Rup
    MXCSR_DEFAULT,          // Rmm (see above)
];

/// MXCSR exception-flag bits (IE, DE, ZE, OE, UE, PE) to RISC-V fflags. DE (denormal operand)
/// has no RISC-V counterpart and is dropped.
static MXCSR_TO_FFLAGS: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        let mut f = 0;
        if i & 0x01 != 0 {
            f |= FFLAG_NV;
        }
        if i & 0x04 != 0 {
            f |= FFLAG_DZ;
        }
        if i & 0x08 != 0 {
            f |= FFLAG_OF;
        }
        if i & 0x10 != 0 {
            f |= FFLAG_UF;
        }
        if i & 0x20 != 0 {
            f |= FFLAG_NX;
        }
        t[i] = f;
        i += 1;
    }
    t
};

/// Pointer to the MXCSR image that runs an instruction in `rm` (RNE for RMM).
#[inline(always)]
pub(super) fn csr(rm: RoundingMode) -> *const u32 {
    &MXCSR_FOR_MODE[rm as usize]
}

/// RISC-V fflags of an MXCSR value stored right after an instruction.
#[inline(always)]
pub(super) fn fflags(mxcsr: u32) -> u8 {
    MXCSR_TO_FFLAGS[(mxcsr & 0x3F) as usize]
}

/// Whether the host has FMA3, detected once and cached.
#[inline]
pub(super) fn has_fma() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering};
    static FMA: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 absent, 2 present
    match FMA.load(Ordering::Relaxed) {
        2 => true,
        1 => false,
        _ => {
            let present = std::is_x86_feature_detected!("fma");
            FMA.store(if present { 2 } else { 1 }, Ordering::Relaxed);
            present
        }
    }
}

/// Defines `fn $name(a, b, csr) -> (result, mxcsr_after)` for a two-operand SSE instruction
/// `$insn dst, src` computing `dst = dst op src`.
macro_rules! binop {
    ($name:ident, $t:ty, $insn:literal) => {
        #[inline(always)]
        pub(super) fn $name(a: $t, b: $t, csr: *const u32) -> ($t, u32) {
            let mut x = a;
            let mut st: u32 = 0;
            // SAFETY: `csr` points to one of the `MXCSR_FOR_MODE` images (a valid MXCSR value:
            // reserved bits clear, so ldmxcsr cannot fault); `st` is a live local written
            // through its address; `MXCSR_DEFAULT_CELL` is a static. The instruction is SSE/SSE2,
            // baseline on x86-64. The block restores MXCSR to 0x1F80 before it ends, touches no
            // stack and no RFLAGS, and only clobbers its declared xmm operand.
            unsafe {
                asm!(
                    "ldmxcsr [{csr}]",
                    concat!($insn, " {x}, {y}"),
                    "stmxcsr [{st}]",
                    "ldmxcsr [{def}]",
                    x = inout(xmm_reg) x,
                    y = in(xmm_reg) b,
                    csr = in(reg) csr,
                    st = in(reg) addr_of_mut!(st),
                    def = in(reg) addr_of!(MXCSR_DEFAULT_CELL),
                    options(nostack, preserves_flags),
                );
            }
            (x, st)
        }
    };
}

binop!(add_sd, f64, "addsd");
binop!(sub_sd, f64, "subsd");
binop!(mul_sd, f64, "mulsd");
binop!(div_sd, f64, "divsd");
binop!(add_ss, f32, "addss");
binop!(sub_ss, f32, "subss");
binop!(mul_ss, f32, "mulss");
binop!(div_ss, f32, "divss");

/// Defines `fn $name(a, csr) -> (result, mxcsr_after)` for a one-operand SSE instruction
/// `$insn dst, src` (square root, precision conversion).
macro_rules! unop {
    ($name:ident, $t:ty, $r:ty, $insn:literal) => {
        #[inline(always)]
        pub(super) fn $name(a: $t, csr: *const u32) -> ($r, u32) {
            let x: $r;
            let mut st: u32 = 0;
            // SAFETY: as in `binop!`: valid MXCSR images and live pointers, a baseline SSE2
            // instruction, MXCSR restored to 0x1F80 before the block ends, no stack or RFLAGS use.
            unsafe {
                asm!(
                    "ldmxcsr [{csr}]",
                    concat!($insn, " {x}, {y}"),
                    "stmxcsr [{st}]",
                    "ldmxcsr [{def}]",
                    x = out(xmm_reg) x,
                    y = in(xmm_reg) a,
                    csr = in(reg) csr,
                    st = in(reg) addr_of_mut!(st),
                    def = in(reg) addr_of!(MXCSR_DEFAULT_CELL),
                    options(nostack, preserves_flags),
                );
            }
            (x, st)
        }
    };
}

unop!(sqrt_sd, f64, f64, "sqrtsd");
unop!(sqrt_ss, f32, f32, "sqrtss");
unop!(cvt_sd2ss, f64, f32, "cvtsd2ss");

/// Defines `unsafe fn $name(a, b, c, csr) -> (result, mxcsr_after)` for a scalar FMA3
/// instruction in its 213 form (`a = ±(a*b) ± c`, one rounding).
macro_rules! fmaop {
    ($name:ident, $t:ty, $insn:literal) => {
        /// # Safety
        ///
        /// The host must support FMA3 ([`has_fma`]).
        #[inline(always)]
        pub(super) unsafe fn $name(a: $t, b: $t, c: $t, csr: *const u32) -> ($t, u32) {
            let mut x = a;
            let mut st: u32 = 0;
            // SAFETY: the caller guarantees FMA3 is available (so the VEX instruction cannot
            // fault); otherwise as in `binop!`: valid MXCSR images and live pointers, MXCSR
            // restored to 0x1F80 before the block ends, no stack or RFLAGS use. The VEX form
            // zeroes bits 128.. of the destination, which is a declared operand.
            unsafe {
                asm!(
                    "ldmxcsr [{csr}]",
                    concat!($insn, " {x}, {y}, {z}"),
                    "stmxcsr [{st}]",
                    "ldmxcsr [{def}]",
                    x = inout(xmm_reg) x,
                    y = in(xmm_reg) b,
                    z = in(xmm_reg) c,
                    csr = in(reg) csr,
                    st = in(reg) addr_of_mut!(st),
                    def = in(reg) addr_of!(MXCSR_DEFAULT_CELL),
                    options(nostack, preserves_flags),
                );
            }
            (x, st)
        }
    };
}

// RISC-V fmadd = a*b+c, fmsub = a*b-c, fnmsub = -(a*b)+c, fnmadd = -(a*b)-c. x86 names the
// last two the other way round: vfnmadd is -(a*b)+c and vfnmsub is -(a*b)-c.
fmaop!(fmadd_sd, f64, "vfmadd213sd");
fmaop!(fmsub_sd, f64, "vfmsub213sd");
fmaop!(fnmsub_sd, f64, "vfnmadd213sd");
fmaop!(fnmadd_sd, f64, "vfnmsub213sd");
fmaop!(fmadd_ss, f32, "vfmadd213ss");
fmaop!(fmsub_ss, f32, "vfmsub213ss");
fmaop!(fnmsub_ss, f32, "vfnmadd213ss");
fmaop!(fnmadd_ss, f32, "vfnmsub213ss");

/// The current MXCSR (tests check that every operation leaves it at [`MXCSR_DEFAULT`]).
#[cfg(test)]
pub(super) fn read_mxcsr() -> u32 {
    let mut st: u32 = 0;
    // SAFETY: stmxcsr only writes the 4-byte local whose address it is given.
    unsafe {
        asm!("stmxcsr [{st}]", st = in(reg) addr_of_mut!(st), options(nostack, preserves_flags));
    }
    st
}
