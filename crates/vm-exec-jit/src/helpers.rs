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
use vm_exec_core::fp;
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
unsafe fn parts<'a>(ctx: *mut JitContext) -> (&'a mut JitContext, &'a AddressSpace) {
    // SAFETY: guaranteed by the caller: `ctx` is valid and exclusive, and `ctx.mem` points to
    // the bound address space (shared, `Sync`), a different object than the context.
    unsafe {
        let c = &mut *ctx;
        let m = &*(c.mem as *const AddressSpace);
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
        Ok(()) if mem.code_generation() != ctx.seen_generation => STORE_INVALIDATED,
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
    match vm_exec_core::atomic::execute(i.op, addr, src, &mut ctx.cpu, mem) {
        Ok(v) => {
            set_x(&mut ctx.cpu, i.rd, v);
            if mem.code_generation() != ctx.seen_generation {
                STORE_INVALIDATED
            } else {
                STATUS_OK
            }
        }
        Err(f) => {
            raise(ctx, f.signo, Some(f.addr));
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

/// Executes floating-point instruction `i` on `cpu` with the shared semantics of
/// [`vm_exec_core::fp::execute`]. Returns false if the instruction is illegal (reserved
/// rounding mode); nothing changed then.
pub(crate) fn exec_float(i: &Inst, cpu: &mut CpuState) -> bool {
    let xa = cpu.x[(i.rs1 & 31) as usize];
    match fp::execute(i, xa, cpu) {
        Ok(Some(v)) => {
            set_x(cpu, i.rd, v);
            true
        }
        Ok(None) => true,
        Err(_) => false,
    }
}
