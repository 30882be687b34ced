//! Instruction-level dispatch of the F and D extensions (everything but loads and stores)
//! onto the operations of this module, shared by every engine.
//!
//! Invariants: single-precision operands are unboxed with [`unbox_f32`] (an improperly boxed
//! value reads as the canonical NaN) and results are boxed with [`box_f32`]; every
//! instruction that has a rounding-mode field resolves it first, and an invalid mode makes the
//! instruction illegal before any state changes.

use super::*;
use crate::cpu::CpuState;
use crate::inst::{Inst, Op};

/// The instruction is illegal (reserved rounding mode, or not a floating-point operation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Illegal;

/// Executes floating-point instruction `i` (anything but loads and stores) on `cpu`. `xa` is
/// the value of integer register `rs1` (for moves and conversions from integers). Returns
/// the integer result for instructions that write an integer register (the caller writes
/// it to `rd`), `None` for those that write an FP register (already written), or
/// [`Illegal`] with nothing changed.
#[inline(never)]
pub fn execute(i: &Inst, xa: u64, cpu: &mut CpuState) -> Result<Option<u64>, Illegal> {
    use Op::*;
    let frd = (i.rd & 31) as usize;
    let fa = cpu.f[(i.rs1 & 31) as usize];
    let fb = cpu.f[(i.rs2 & 31) as usize];
    let fc = cpu.f[(i.rs3 & 31) as usize];
    let (sa, sb, sc) = (unbox_f32(fa), unbox_f32(fb), unbox_f32(fc));
    let rm = || resolve_rounding_mode(i.rm, cpu.frm).ok_or(Illegal);
    let mut flags = 0u8;
    let fl = &mut flags;
    enum Dest {
        F(u64),
        X(u64),
    }
    let out = match i.op {
        // Double precision.
        FaddD => Dest::F(add_f64(fa, fb, rm()?, fl)),
        FsubD => Dest::F(sub_f64(fa, fb, rm()?, fl)),
        FmulD => Dest::F(mul_f64(fa, fb, rm()?, fl)),
        FdivD => Dest::F(div_f64(fa, fb, rm()?, fl)),
        FsqrtD => Dest::F(sqrt_f64(fa, rm()?, fl)),
        FmaddD => Dest::F(fmadd_f64(fa, fb, fc, rm()?, fl)),
        FmsubD => Dest::F(fmsub_f64(fa, fb, fc, rm()?, fl)),
        FnmsubD => Dest::F(fnmsub_f64(fa, fb, fc, rm()?, fl)),
        FnmaddD => Dest::F(fnmadd_f64(fa, fb, fc, rm()?, fl)),
        FsgnjD => Dest::F(sgnj_f64(fa, fb)),
        FsgnjnD => Dest::F(sgnjn_f64(fa, fb)),
        FsgnjxD => Dest::F(sgnjx_f64(fa, fb)),
        FminD => Dest::F(min_f64(fa, fb, fl)),
        FmaxD => Dest::F(max_f64(fa, fb, fl)),
        FeqD => Dest::X(eq_f64(fa, fb, fl) as u64),
        FltD => Dest::X(lt_f64(fa, fb, fl) as u64),
        FleD => Dest::X(le_f64(fa, fb, fl) as u64),
        FclassD => Dest::X(classify_f64(fa)),
        FmvXD => Dest::X(fa),
        FmvDX => Dest::F(xa),
        FcvtWD => Dest::X(f64_to_i32(fa, rm()?, fl)),
        FcvtWuD => Dest::X(f64_to_u32(fa, rm()?, fl)),
        FcvtLD => Dest::X(f64_to_i64(fa, rm()?, fl)),
        FcvtLuD => Dest::X(f64_to_u64(fa, rm()?, fl)),
        FcvtDW => {
            rm()?;
            Dest::F(i32_to_f64(xa as i32))
        }
        FcvtDWu => {
            rm()?;
            Dest::F(u32_to_f64(xa as u32))
        }
        FcvtDL => Dest::F(i64_to_f64(xa as i64, rm()?, fl)),
        FcvtDLu => Dest::F(u64_to_f64(xa, rm()?, fl)),
        FcvtSD => Dest::F(box_f32(f64_to_f32(fa, rm()?, fl))),
        FcvtDS => {
            rm()?;
            Dest::F(f32_to_f64(sa, fl))
        }
        // Single precision.
        FaddS => Dest::F(box_f32(add_f32(sa, sb, rm()?, fl))),
        FsubS => Dest::F(box_f32(sub_f32(sa, sb, rm()?, fl))),
        FmulS => Dest::F(box_f32(mul_f32(sa, sb, rm()?, fl))),
        FdivS => Dest::F(box_f32(div_f32(sa, sb, rm()?, fl))),
        FsqrtS => Dest::F(box_f32(sqrt_f32(sa, rm()?, fl))),
        FmaddS => Dest::F(box_f32(fmadd_f32(sa, sb, sc, rm()?, fl))),
        FmsubS => Dest::F(box_f32(fmsub_f32(sa, sb, sc, rm()?, fl))),
        FnmsubS => Dest::F(box_f32(fnmsub_f32(sa, sb, sc, rm()?, fl))),
        FnmaddS => Dest::F(box_f32(fnmadd_f32(sa, sb, sc, rm()?, fl))),
        FsgnjS => Dest::F(box_f32(sgnj_f32(sa, sb))),
        FsgnjnS => Dest::F(box_f32(sgnjn_f32(sa, sb))),
        FsgnjxS => Dest::F(box_f32(sgnjx_f32(sa, sb))),
        FminS => Dest::F(box_f32(min_f32(sa, sb, fl))),
        FmaxS => Dest::F(box_f32(max_f32(sa, sb, fl))),
        FeqS => Dest::X(eq_f32(sa, sb, fl) as u64),
        FltS => Dest::X(lt_f32(sa, sb, fl) as u64),
        FleS => Dest::X(le_f32(sa, sb, fl) as u64),
        FclassS => Dest::X(classify_f32(sa)),
        // fmv.x.w moves the raw low 32 bits, sign-extended, without unboxing.
        FmvXW => Dest::X(fa as u32 as i32 as i64 as u64),
        FmvWX => Dest::F(box_f32(xa as u32)),
        FcvtWS => Dest::X(f32_to_i32(sa, rm()?, fl)),
        FcvtWuS => Dest::X(f32_to_u32(sa, rm()?, fl)),
        FcvtLS => Dest::X(f32_to_i64(sa, rm()?, fl)),
        FcvtLuS => Dest::X(f32_to_u64(sa, rm()?, fl)),
        FcvtSW => Dest::F(box_f32(i32_to_f32(xa as i32, rm()?, fl))),
        FcvtSWu => Dest::F(box_f32(u32_to_f32(xa as u32, rm()?, fl))),
        FcvtSL => Dest::F(box_f32(i64_to_f32(xa as i64, rm()?, fl))),
        FcvtSLu => Dest::F(box_f32(u64_to_f32(xa, rm()?, fl))),
        _ => return Err(Illegal),
    };
    cpu.fflags |= flags;
    match out {
        Dest::F(v) => {
            cpu.f[frd] = v;
            Ok(None)
        }
        Dest::X(v) => Ok(Some(v)),
    }
}
