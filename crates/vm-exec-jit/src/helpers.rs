//! Functions that translated code calls for the work it does not do inline: memory accesses
//! that leave the fast path, floating-point operations, CSRs and atomics.
//!
//! Every helper takes the [`JitContext`] pointer (`r15`) as its first argument and follows
//! the System V calling convention (`extern "C"` on x86-64 Linux). Their semantics are the
//! interpreter's, operation for operation (`vm-exec-interp/src/run.rs` and `float.rs`).
//!
//! Invariants:
//! - A helper is only called by translated code while the dispatcher is inside
//!   `Executor::run`, so `ctx` is valid and exclusive, and `ctx.mem` points to the live
//!   `AddressSpace` of the process being run (see [`crate::context`]).
//! - Helpers never unwind: nothing they call panics on guest input (the address space and
//!   `vm_exec_core::fp` report errors as values).
//! - A helper that performs a store reports [`STORE_INVALIDATED`] when the store queued a code
//!   invalidation; translated code then leaves for the dispatcher right after the
//!   instruction, so no stale translation runs after its bytes changed.
//! - Integer destination registers 0 and 32 (the interpreter's sink, as `decode_block`
//!   produces it) are never written.

use crate::context::JitContext;
use vm_exec_core::cpu::CpuState;
use vm_exec_core::csr::{csr_access, CsrOp};
use vm_exec_core::exec::signal;
use vm_exec_core::fp::{self, box_f32, unbox_f32};
use vm_exec_core::inst::{Inst, Op};
use vm_exec_core::memory::{AddressSpace, MemFault};

/// Status: the operation completed.
pub(crate) const STATUS_OK: u64 = 0;
/// Status: the operation raised the signal recorded in the context (nothing was written).
pub(crate) const STATUS_SIGNAL: u64 = 1;
/// Status: the operation completed, and a store to a page holding translated code queued an
/// invalidation.
pub(crate) const STORE_INVALIDATED: u64 = 2;

/// Load kinds for [`load_slow`]: how the loaded bytes are extended.
pub(crate) mod load_kind {
    /// `lb`: one byte, sign-extended.
    pub const LB: u64 = 0;
    /// `lh`: two bytes, sign-extended.
    pub const LH: u64 = 1;
    /// `lw`: four bytes, sign-extended.
    pub const LW: u64 = 2;
    /// `ld` and `fld`: eight bytes.
    pub const LD: u64 = 3;
    /// `lbu`: one byte, zero-extended.
    pub const LBU: u64 = 4;
    /// `lhu`: two bytes, zero-extended.
    pub const LHU: u64 = 5;
    /// `lwu` and `flw`: four bytes, zero-extended.
    pub const LWU: u64 = 6;
}

/// Two values returned in `rax` and `rdx`.
#[repr(C)]
pub(crate) struct Pair {
    /// `rax`: the loaded value.
    pub value: u64,
    /// `rdx`: [`STATUS_OK`] or [`STATUS_SIGNAL`].
    pub status: u64,
}

/// Records a memory fault as the pending signal.
fn segv(ctx: &mut JitContext, f: MemFault) {
    raise(ctx, signal::SIGSEGV, Some(f.addr));
}

fn raise(ctx: &mut JitContext, signo: i32, addr: Option<u64>) {
    ctx.sig_signo = signo;
    ctx.sig_addr = addr.unwrap_or(0);
    ctx.sig_has_addr = addr.is_some() as u64;
}

/// Splits the context into the address space and the context itself.
///
/// # Safety
/// `ctx` must be the live context of a running engine (module invariant), so both pointers
/// are valid and not otherwise borrowed while the helper runs.
unsafe fn parts<'a>(ctx: *mut JitContext) -> (&'a mut JitContext, &'a mut AddressSpace) {
    // SAFETY: guaranteed by the caller: `ctx` is valid and exclusive, and `ctx.mem` points to
    // the bound address space, a different object than the context.
    unsafe {
        let c = &mut *ctx;
        let m = &mut *(c.mem as *mut AddressSpace);
        (c, m)
    }
}

/// Slow path of every load: checks and performs it through the address space.
///
/// # Safety
/// Called only from translated code (module invariant on `ctx`).
pub(crate) unsafe extern "C" fn load_slow(ctx: *mut JitContext, addr: u64, kind: u64) -> Pair {
    // SAFETY: called from translated code, so `ctx` is the live context.
    let (ctx, mem) = unsafe { parts(ctx) };
    let r = match kind {
        load_kind::LB => mem.read_u8(addr).map(|v| v as i8 as i64 as u64),
        load_kind::LH => mem.read_u16(addr).map(|v| v as i16 as i64 as u64),
        load_kind::LW => mem.read_u32(addr).map(|v| v as i32 as i64 as u64),
        load_kind::LBU => mem.read_u8(addr).map(|v| v as u64),
        load_kind::LHU => mem.read_u16(addr).map(|v| v as u64),
        load_kind::LWU => mem.read_u32(addr).map(|v| v as u64),
        _ => mem.read_u64(addr),
    };
    match r {
        Ok(value) => Pair { value, status: STATUS_OK },
        Err(f) => {
            segv(ctx, f);
            Pair { value: 0, status: STATUS_SIGNAL }
        }
    }
}

/// Slow path of every store of `size` (1, 2, 4 or 8) bytes.
///
/// # Safety
/// Called only from translated code (module invariant on `ctx`).
pub(crate) unsafe extern "C" fn store_slow(
    ctx: *mut JitContext,
    addr: u64,
    value: u64,
    size: u64,
) -> u64 {
    // SAFETY: called from translated code, so `ctx` is the live context.
    let (ctx, mem) = unsafe { parts(ctx) };
    let r = match size {
        1 => mem.write_u8(addr, value as u8),
        2 => mem.write_u16(addr, value as u16),
        4 => mem.write_u32(addr, value as u32),
        _ => mem.write_u64(addr, value),
    };
    match r {
        Ok(()) if mem.has_pending_invalidations() => STORE_INVALIDATED,
        Ok(()) => STATUS_OK,
        Err(f) => {
            segv(ctx, f);
            STATUS_SIGNAL
        }
    }
}

/// Executes a floating-point instruction other than a load or store (`inst` points to its
/// decoded form, owned by the code cache for as long as the translation exists).
///
/// # Safety
/// Called only from translated code (module invariant on `ctx`), with `inst` valid.
pub(crate) unsafe extern "C" fn fp_op(ctx: *mut JitContext, inst: *const Inst) -> u64 {
    // SAFETY: called from translated code; `inst` points into the owning block's
    // instruction slice, which outlives its translation.
    let (ctx, inst) = unsafe { (&mut *ctx, &*inst) };
    if exec_float(inst, &mut ctx.cpu) {
        STATUS_OK
    } else {
        raise(ctx, signal::SIGILL, None);
        STATUS_SIGNAL
    }
}

/// Executes a `csrr*` instruction. `back` is the number of instructions of the current block
/// from this one to the block's end (inclusive), which together with the spilled fuel gives
/// the exact `instret` value (see `crate::translate`).
///
/// # Safety
/// Called only from translated code (module invariant on `ctx`), with `inst` valid and the
/// fuel register spilled to `ctx.fuel`.
pub(crate) unsafe extern "C" fn csr_op(ctx: *mut JitContext, inst: *const Inst, back: u64) -> u64 {
    // SAFETY: as for `fp_op`.
    let (ctx, i) = unsafe { (&mut *ctx, &*inst) };
    let r1 = ctx.cpu.x[(i.rs1 & 31) as usize];
    let (op, src, writes) = match i.op {
        Op::Csrrw => (CsrOp::Write, r1, true),
        Op::Csrrs => (CsrOp::Set, r1, i.rs1 != 0),
        Op::Csrrc => (CsrOp::Clear, r1, i.rs1 != 0),
        Op::Csrrwi => (CsrOp::Write, i.rs1 as u64, true),
        Op::Csrrsi => (CsrOp::Set, i.rs1 as u64, i.rs1 != 0),
        _ => (CsrOp::Clear, i.rs1 as u64, i.rs1 != 0),
    };
    let done_in_entry = (ctx.fuel_entry.wrapping_sub(ctx.fuel) as u64).wrapping_sub(back);
    let instret = ctx.instret_base.wrapping_add(done_in_entry);
    match csr_access(&mut ctx.cpu, (i.imm as u32) & 0xfff, op, src, writes, instret) {
        Some(old) => {
            set_x(&mut ctx.cpu, i.rd, old);
            STATUS_OK
        }
        None => {
            raise(ctx, signal::SIGILL, None);
            STATUS_SIGNAL
        }
    }
}

/// Executes an LR/SC or AMO instruction.
///
/// # Safety
/// Called only from translated code (module invariant on `ctx`), with `inst` valid.
pub(crate) unsafe extern "C" fn amo_op(ctx: *mut JitContext, inst: *const Inst) -> u64 {
    // SAFETY: as for `fp_op` and `parts`.
    let ((ctx, mem), i) = unsafe { (parts(ctx), &*inst) };
    let addr = ctx.cpu.x[(i.rs1 & 31) as usize];
    let src = ctx.cpu.x[(i.rs2 & 31) as usize];
    match atomic(i.op, addr, src, &mut ctx.cpu, mem) {
        Ok(v) => {
            set_x(&mut ctx.cpu, i.rd, v);
            if mem.has_pending_invalidations() {
                STORE_INVALIDATED
            } else {
                STATUS_OK
            }
        }
        Err((signo, a)) => {
            raise(ctx, signo, Some(a));
            STATUS_SIGNAL
        }
    }
}

/// Writes integer register `rd` unless it is x0 or the interpreter's sink (32).
fn set_x(cpu: &mut CpuState, rd: u8, v: u64) {
    if rd != 0 && rd < 32 {
        cpu.x[rd as usize] = v;
    }
}

/// LR/SC and AMOs, exactly as the interpreter performs them: the guest thread is the only
/// one touching this address space while it runs, so a plain read-modify-write is atomic for
/// it; misaligned addresses raise SIGBUS as Linux does.
fn atomic(
    op: Op,
    addr: u64,
    src: u64,
    cpu: &mut CpuState,
    mem: &mut AddressSpace,
) -> Result<u64, (i32, u64)> {
    use Op::*;
    let word = matches!(
        op,
        LrW | ScW
            | AmoswapW
            | AmoaddW
            | AmoxorW
            | AmoandW
            | AmoorW
            | AmominW
            | AmomaxW
            | AmominuW
            | AmomaxuW
    );
    let size = if word { 4 } else { 8 };
    if addr % size != 0 {
        return Err((signal::SIGBUS, addr));
    }
    let segv = |f: MemFault| (signal::SIGSEGV, f.addr);
    let load = |mem: &AddressSpace| -> Result<u64, (i32, u64)> {
        if word {
            mem.read_u32(addr).map(|v| v as i32 as i64 as u64).map_err(segv)
        } else {
            mem.read_u64(addr).map_err(segv)
        }
    };
    match op {
        LrW | LrD => {
            let v = load(mem)?;
            cpu.reservation = Some(addr);
            return Ok(v);
        }
        ScW | ScD => {
            if cpu.reservation.take() != Some(addr) {
                return Ok(1);
            }
            let r = if word { mem.write_u32(addr, src as u32) } else { mem.write_u64(addr, src) };
            r.map_err(segv)?;
            return Ok(0);
        }
        _ => {}
    }
    // An AMO needs write permission even to read (it is a store on RISC-V).
    mem.slice_mut(addr, size).map_err(segv)?;
    let old = load(mem)?;
    let new = if word {
        let (a, b) = (old as u32, src as u32);
        (match op {
            AmoswapW => b,
            AmoaddW => a.wrapping_add(b),
            AmoxorW => a ^ b,
            AmoandW => a & b,
            AmoorW => a | b,
            AmominW => (a as i32).min(b as i32) as u32,
            AmomaxW => (a as i32).max(b as i32) as u32,
            AmominuW => a.min(b),
            _ => a.max(b),
        }) as u64
    } else {
        let (a, b) = (old, src);
        match op {
            AmoswapD => b,
            AmoaddD => a.wrapping_add(b),
            AmoxorD => a ^ b,
            AmoandD => a & b,
            AmoorD => a | b,
            AmominD => (a as i64).min(b as i64) as u64,
            AmomaxD => (a as i64).max(b as i64) as u64,
            AmominuD => a.min(b),
            _ => a.max(b),
        }
    };
    let r = if word { mem.write_u32(addr, new as u32) } else { mem.write_u64(addr, new) };
    r.map_err(segv)?;
    Ok(old)
}

/// Executes floating-point instruction `i` on `cpu` (the interpreter's `float::exec`).
/// Returns false if the instruction is illegal (reserved rounding mode); nothing changed then.
pub(crate) fn exec_float(i: &Inst, cpu: &mut CpuState) -> bool {
    use Op::*;
    let frd = (i.rd & 31) as usize;
    let fa = cpu.f[(i.rs1 & 31) as usize];
    let fb = cpu.f[(i.rs2 & 31) as usize];
    let fc = cpu.f[(i.rs3 & 31) as usize];
    let xa = cpu.x[(i.rs1 & 31) as usize];
    let (sa, sb, sc) = (unbox_f32(fa), unbox_f32(fb), unbox_f32(fc));
    let Some(rm) = fp::resolve_rounding_mode(i.rm, cpu.frm) else {
        // Only ops that round consult the mode; the others have rm == 0 (RNE), which
        // always resolves, so a failure here means the instruction is illegal.
        return false;
    };
    let mut flags = 0u8;
    let fl = &mut flags;
    enum Dest {
        F(u64),
        X(u64),
    }
    let out = match i.op {
        FaddD => Dest::F(fp::add_f64(fa, fb, rm, fl)),
        FsubD => Dest::F(fp::sub_f64(fa, fb, rm, fl)),
        FmulD => Dest::F(fp::mul_f64(fa, fb, rm, fl)),
        FdivD => Dest::F(fp::div_f64(fa, fb, rm, fl)),
        FsqrtD => Dest::F(fp::sqrt_f64(fa, rm, fl)),
        FmaddD => Dest::F(fp::fmadd_f64(fa, fb, fc, rm, fl)),
        FmsubD => Dest::F(fp::fmsub_f64(fa, fb, fc, rm, fl)),
        FnmsubD => Dest::F(fp::fnmsub_f64(fa, fb, fc, rm, fl)),
        FnmaddD => Dest::F(fp::fnmadd_f64(fa, fb, fc, rm, fl)),
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
        FcvtWD => Dest::X(fp::f64_to_i32(fa, rm, fl)),
        FcvtWuD => Dest::X(fp::f64_to_u32(fa, rm, fl)),
        FcvtLD => Dest::X(fp::f64_to_i64(fa, rm, fl)),
        FcvtLuD => Dest::X(fp::f64_to_u64(fa, rm, fl)),
        FcvtDW => Dest::F(fp::i32_to_f64(xa as i32)),
        FcvtDWu => Dest::F(fp::u32_to_f64(xa as u32)),
        FcvtDL => Dest::F(fp::i64_to_f64(xa as i64, rm, fl)),
        FcvtDLu => Dest::F(fp::u64_to_f64(xa, rm, fl)),
        FcvtSD => Dest::F(box_f32(fp::f64_to_f32(fa, rm, fl))),
        FcvtDS => Dest::F(fp::f32_to_f64(sa, fl)),
        FaddS => Dest::F(box_f32(fp::add_f32(sa, sb, rm, fl))),
        FsubS => Dest::F(box_f32(fp::sub_f32(sa, sb, rm, fl))),
        FmulS => Dest::F(box_f32(fp::mul_f32(sa, sb, rm, fl))),
        FdivS => Dest::F(box_f32(fp::div_f32(sa, sb, rm, fl))),
        FsqrtS => Dest::F(box_f32(fp::sqrt_f32(sa, rm, fl))),
        FmaddS => Dest::F(box_f32(fp::fmadd_f32(sa, sb, sc, rm, fl))),
        FmsubS => Dest::F(box_f32(fp::fmsub_f32(sa, sb, sc, rm, fl))),
        FnmsubS => Dest::F(box_f32(fp::fnmsub_f32(sa, sb, sc, rm, fl))),
        FnmaddS => Dest::F(box_f32(fp::fnmadd_f32(sa, sb, sc, rm, fl))),
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
        FcvtWS => Dest::X(fp::f32_to_i32(sa, rm, fl)),
        FcvtWuS => Dest::X(fp::f32_to_u32(sa, rm, fl)),
        FcvtLS => Dest::X(fp::f32_to_i64(sa, rm, fl)),
        FcvtLuS => Dest::X(fp::f32_to_u64(sa, rm, fl)),
        FcvtSW => Dest::F(box_f32(fp::i32_to_f32(xa as i32, rm, fl))),
        FcvtSWu => Dest::F(box_f32(fp::u32_to_f32(xa as u32, rm, fl))),
        FcvtSL => Dest::F(box_f32(fp::i64_to_f32(xa as i64, rm, fl))),
        FcvtSLu => Dest::F(box_f32(fp::u64_to_f32(xa, rm, fl))),
        _ => return false,
    };
    cpu.fflags |= flags;
    match out {
        Dest::F(v) => cpu.f[frd] = v,
        Dest::X(v) => set_x(cpu, i.rd, v),
    }
    true
}
