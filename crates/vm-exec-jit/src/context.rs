//! The block of memory translated code works on, and the exit protocol between translated
//! code and the dispatcher.
//!
//! While translated code runs, host register `r15` points at a [`JitContext`]; every guest
//! register and every engine field that code touches is addressed as a fixed displacement
//! from it (the `*_OFF` constants below, computed with `offset_of!` so the layout is checked
//! by the compiler rather than assumed). The other pinned host registers are:
//!
//! | host | holds |
//! | --- | --- |
//! | `r15` | `&mut JitContext` |
//! | `r14` | host address of guest address 0 (`AddressSpace::host_base`) |
//! | `r12` | remaining fuel (instructions), signed; spilled to [`JitContext::fuel`] on exit |
//!
//! Invariants:
//! - `cpu` is the authoritative architectural state while the engine runs a thread, except
//!   that while translated code runs the host registers holding guest registers (the fixed
//!   globals `a0`..`a5` and the block's locals, see `translate`) are authoritative; every
//!   return to the dispatcher writes them back first. It is
//!   copied from `GuestThread::cpu` when `run` starts and back before `run` returns, before
//!   every system call and before the interpreter tier runs (and copied in again after).
//!   `cpu.x[0]` is never written by translated code.
//! - `mem` points to the `AddressSpace` of the process being run, and `mem_base` and
//!   `mem_size` describe that same address space; they are set at the start of every `run` and are
//!   only dereferenced while translated code runs inside that `run`.
//! - When translated code returns to the dispatcher, `cpu.pc` is the pc to continue at (or the
//!   pc of the faulting instruction for [`EXIT_SIGNAL`]), and `fuel` has been decremented by
//!   exactly the number of instructions retired since it was set.

use vm_exec_core::cpu::CpuState;

/// State shared between the dispatcher, translated code and the helper functions.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct JitContext {
    /// Guest architectural state (registers at offset 0).
    pub cpu: CpuState,
    /// Remaining fuel, as `r12` held it when translated code last exited.
    pub fuel: i64,
    /// `AddressSpace::host_base` of the bound address space.
    pub mem_base: u64,
    /// `AddressSpace::size` of the bound address space: the bound translated code checks
    /// (a memory operand of the bound check).
    pub mem_size: u64,
    /// Host address of the indirect-jump table (see `cache::JumpTable`).
    pub jtab: u64,
    /// `*const AddressSpace` of the process being run (as an integer, so the engine stays
    /// `Send`); valid only while translated code runs.
    pub mem: usize,
    /// The address space's invalidation-log generation this engine has applied; a helper
    /// that sees a newer one after a store sends translated code back to the dispatcher.
    pub seen_generation: u64,
    /// Which direct exit site left translated code (for [`EXIT_BRANCH`]).
    pub exit_site: u32,
    /// Signal number for [`EXIT_SIGNAL`].
    pub sig_signo: i32,
    /// Fault address for [`EXIT_SIGNAL`], valid when `sig_has_addr != 0`.
    pub sig_addr: u64,
    /// Whether `sig_addr` is meaningful.
    pub sig_has_addr: u64,
    /// Block entries performed by translated code (chained ones included).
    pub block_execs: u64,
    /// Instructions retired before the current entry into translated code (for `instret`).
    pub instret_base: u64,
    /// The fuel value the current entry into translated code started with.
    pub fuel_entry: i64,
}

macro_rules! off {
    ($($f:tt)+) => {
        std::mem::offset_of!(JitContext, $($f)+) as i32
    };
}

/// Offset of integer register 0.
pub(crate) const X_OFF: i32 = off!(cpu) + std::mem::offset_of!(CpuState, x) as i32;
/// Offset of floating-point register 0.
pub(crate) const F_OFF: i32 = off!(cpu) + std::mem::offset_of!(CpuState, f) as i32;
/// Offset of the pc.
pub(crate) const PC_OFF: i32 = off!(cpu) + std::mem::offset_of!(CpuState, pc) as i32;
/// Offset of `fflags` (one byte).
pub(crate) const FFLAGS_OFF: i32 = off!(cpu) + std::mem::offset_of!(CpuState, fflags) as i32;
/// Offset of `frm` (one byte).
pub(crate) const FRM_OFF: i32 = off!(cpu) + std::mem::offset_of!(CpuState, frm) as i32;
/// Offset of the fuel spill slot.
pub(crate) const FUEL_OFF: i32 = off!(fuel);
/// Offset of the host base of guest memory.
pub(crate) const MEM_BASE_OFF: i32 = off!(mem_base);
/// Offset of the guest space size.
pub(crate) const MEM_SIZE_OFF: i32 = off!(mem_size);
/// Offset of the jump table pointer.
pub(crate) const JTAB_OFF: i32 = off!(jtab);
/// Offset of the exit site id.
pub(crate) const EXIT_SITE_OFF: i32 = off!(exit_site);
/// Offset of the signal number.
pub(crate) const SIG_SIGNO_OFF: i32 = off!(sig_signo);
/// Offset of the signal's fault address.
pub(crate) const SIG_ADDR_OFF: i32 = off!(sig_addr);
/// Offset of the "fault address valid" flag.
pub(crate) const SIG_HAS_ADDR_OFF: i32 = off!(sig_has_addr);
/// Offset of the block entry counter.
pub(crate) const BLOCK_EXECS_OFF: i32 = off!(block_execs);

/// Offset of integer register `r` (0..=31).
pub(crate) const fn x_off(r: u8) -> i32 {
    X_OFF + 8 * (r as i32 & 31)
}

/// Offset of floating-point register `r` (0..=31).
pub(crate) const fn f_off(r: u8) -> i32 {
    F_OFF + 8 * (r as i32 & 31)
}

/// Not enough fuel to enter the block at `cpu.pc`; nothing of it ran.
pub(crate) const EXIT_FUEL: u32 = 0;
/// A direct exit (branch, `jal`, fall-through) that can be chained: site `exit_site`, target
/// `cpu.pc`.
pub(crate) const EXIT_BRANCH: u32 = 1;
/// An indirect jump whose target `cpu.pc` was not in the jump table.
pub(crate) const EXIT_INDIRECT: u32 = 2;
/// Continue at `cpu.pc` (after a store that invalidated translated code, or a block end
/// that is not chainable).
pub(crate) const EXIT_NEXT: u32 = 3;
/// An `ecall` retired; the system call continues at `cpu.pc`.
pub(crate) const EXIT_ECALL: u32 = 4;
/// A `fence.i` retired; flush translated code and continue at `cpu.pc`.
pub(crate) const EXIT_FENCE_I: u32 = 5;
/// A fatal signal at `cpu.pc` (`sig_*` fields).
pub(crate) const EXIT_SIGNAL: u32 = 6;
