//! Floating-point instructions (other than loads and stores), on top of
//! [`vm_exec_core::fp`], which holds the exact RISC-V semantics.
//!
//! Invariants: single-precision operands are unboxed with `unbox_f32` (an improperly boxed
//! value reads as the canonical NaN) and results are boxed with `box_f32`; every instruction
//! that has a rounding-mode field resolves it first, and an invalid mode makes the
//! instruction illegal before any state changes.

use vm_exec_core::cpu::CpuState;
use vm_exec_core::fp::{self, box_f32, unbox_f32};
use vm_exec_core::inst::{Inst, Op};

/// The instruction is illegal (reserved rounding mode, or not a floating-point op).
pub(crate) struct Illegal;

/// Executes floating-point instruction `i`.
#[inline(never)]
pub(crate) fn exec(i: &Inst, x: &mut [u64; 64], cpu: &mut CpuState) -> Result<(), Illegal> {
    use Op::*;
    let rd = (i.rd & 63) as usize;
    let frd = (i.rd & 31) as usize;
    let fa = cpu.f[(i.rs1 & 31) as usize];
    let fb = cpu.f[(i.rs2 & 31) as usize];
    let fc = cpu.f[(i.rs3 & 31) as usize];
    let xa = x[(i.rs1 & 63) as usize];
    let (sa, sb, sc) = (unbox_f32(fa), unbox_f32(fb), unbox_f32(fc));
    let rm = || fp::resolve_rounding_mode(i.rm, cpu.frm).ok_or(Illegal);
    let mut flags = 0u8;
    let fl = &mut flags;
    enum Dest {
        F(u64),
        X(u64),
    }
    let out = match i.op {
        // Double precision.
        FaddD => Dest::F(fp::add_f64(fa, fb, rm()?, fl)),
        FsubD => Dest::F(fp::sub_f64(fa, fb, rm()?, fl)),
        FmulD => Dest::F(fp::mul_f64(fa, fb, rm()?, fl)),
        FdivD => Dest::F(fp::div_f64(fa, fb, rm()?, fl)),
        FsqrtD => Dest::F(fp::sqrt_f64(fa, rm()?, fl)),
        FmaddD => Dest::F(fp::fmadd_f64(fa, fb, fc, rm()?, fl)),
        FmsubD => Dest::F(fp::fmsub_f64(fa, fb, fc, rm()?, fl)),
        FnmsubD => Dest::F(fp::fnmsub_f64(fa, fb, fc, rm()?, fl)),
        FnmaddD => Dest::F(fp::fnmadd_f64(fa, fb, fc, rm()?, fl)),
        FsgnjD => Dest::F(fp::sgnj_f64(fa, fb)),
        FsgnjnD => Dest::F(fp::sgnjn_f64(fa, fb)),
        FsgnjxD => Dest::F(fp::sgnjx_f64(fa, fb)),
        FminD => Dest::F(fp::min_f64(fa, fb, fl)),
        FmaxD => Dest::F(fp::max_f64(fa, fb, fl)),
        FeqD => Dest::X(fp::eq_f64(fa, fb, fl) as u64),
        FltD => Dest::X(fp::lt_f64(fa, fb, fl) as u64),
        FleD => Dest::X(fp::le_f64(fa, fb, fl) as u64),
        FclassD => Dest::X(fp::classify_f64(fa)),
        FmvXD => Dest::X(fa),
        FmvDX => Dest::F(xa),
        FcvtWD => Dest::X(fp::f64_to_i32(fa, rm()?, fl)),
        FcvtWuD => Dest::X(fp::f64_to_u32(fa, rm()?, fl)),
        FcvtLD => Dest::X(fp::f64_to_i64(fa, rm()?, fl)),
        FcvtLuD => Dest::X(fp::f64_to_u64(fa, rm()?, fl)),
        FcvtDW => {
            rm()?;
            Dest::F(fp::i32_to_f64(xa as i32))
        }
        FcvtDWu => {
            rm()?;
            Dest::F(fp::u32_to_f64(xa as u32))
        }
        FcvtDL => Dest::F(fp::i64_to_f64(xa as i64, rm()?, fl)),
        FcvtDLu => Dest::F(fp::u64_to_f64(xa, rm()?, fl)),
        FcvtSD => Dest::F(box_f32(fp::f64_to_f32(fa, rm()?, fl))),
        FcvtDS => {
            rm()?;
            Dest::F(fp::f32_to_f64(sa, fl))
        }
        // Single precision.
        FaddS => Dest::F(box_f32(fp::add_f32(sa, sb, rm()?, fl))),
        FsubS => Dest::F(box_f32(fp::sub_f32(sa, sb, rm()?, fl))),
        FmulS => Dest::F(box_f32(fp::mul_f32(sa, sb, rm()?, fl))),
        FdivS => Dest::F(box_f32(fp::div_f32(sa, sb, rm()?, fl))),
        FsqrtS => Dest::F(box_f32(fp::sqrt_f32(sa, rm()?, fl))),
        FmaddS => Dest::F(box_f32(fp::fmadd_f32(sa, sb, sc, rm()?, fl))),
        FmsubS => Dest::F(box_f32(fp::fmsub_f32(sa, sb, sc, rm()?, fl))),
        FnmsubS => Dest::F(box_f32(fp::fnmsub_f32(sa, sb, sc, rm()?, fl))),
        FnmaddS => Dest::F(box_f32(fp::fnmadd_f32(sa, sb, sc, rm()?, fl))),
        FsgnjS => Dest::F(box_f32(fp::sgnj_f32(sa, sb))),
        FsgnjnS => Dest::F(box_f32(fp::sgnjn_f32(sa, sb))),
        FsgnjxS => Dest::F(box_f32(fp::sgnjx_f32(sa, sb))),
        FminS => Dest::F(box_f32(fp::min_f32(sa, sb, fl))),
        FmaxS => Dest::F(box_f32(fp::max_f32(sa, sb, fl))),
        FeqS => Dest::X(fp::eq_f32(sa, sb, fl) as u64),
        FltS => Dest::X(fp::lt_f32(sa, sb, fl) as u64),
        FleS => Dest::X(fp::le_f32(sa, sb, fl) as u64),
        FclassS => Dest::X(fp::classify_f32(sa)),
        // fmv.x.w moves the raw low 32 bits, sign-extended, without unboxing.
        FmvXW => Dest::X(fa as u32 as i32 as i64 as u64),
        FmvWX => Dest::F(box_f32(xa as u32)),
        FcvtWS => Dest::X(fp::f32_to_i32(sa, rm()?, fl)),
        FcvtWuS => Dest::X(fp::f32_to_u32(sa, rm()?, fl)),
        FcvtLS => Dest::X(fp::f32_to_i64(sa, rm()?, fl)),
        FcvtLuS => Dest::X(fp::f32_to_u64(sa, rm()?, fl)),
        FcvtSW => Dest::F(box_f32(fp::i32_to_f32(xa as i32, rm()?, fl))),
        FcvtSWu => Dest::F(box_f32(fp::u32_to_f32(xa as u32, rm()?, fl))),
        FcvtSL => Dest::F(box_f32(fp::i64_to_f32(xa as i64, rm()?, fl))),
        FcvtSLu => Dest::F(box_f32(fp::u64_to_f32(xa, rm()?, fl))),
        _ => return Err(Illegal),
    };
    cpu.fflags |= flags;
    match out {
        Dest::F(v) => cpu.f[frd] = v,
        Dest::X(v) => x[rd] = v,
    }
    Ok(())
}
