//! Architectural state of one guest hart (thread).
//!
//! Invariants: `x[0]` is always zero when observed from outside an engine (engines may use
//! their own register layout while running, and write the state back before they return or
//! call into the Linux ABI). Floating-point registers hold raw bits; single-precision values
//! are NaN-boxed as RISC-V requires. `frm` is 0..=7 (the value written to the CSR, masked to 3
//! bits); `fflags` holds only the five accrued exception bits.

/// Register file, pc and floating-point CSR of one guest hart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CpuState {
    /// Integer registers x0..x31.
    pub x: [u64; 32],
    /// Floating-point registers f0..f31 (raw bits).
    pub f: [u64; 32],
    /// Program counter.
    pub pc: u64,
    /// Accrued floating-point exception flags (`fflags`, 5 bits).
    pub fflags: u8,
    /// Dynamic rounding mode (`frm`, 3 bits).
    pub frm: u8,
    /// Address reserved by the last `lr.w`/`lr.d`, if the reservation is still valid.
    pub reservation: Option<u64>,
    /// The value that `lr` loaded (sign-extended for `lr.w`): `sc` succeeds only if memory
    /// still holds it (a compare-and-swap, as qemu implements LR/SC across host threads).
    pub reservation_value: u64,
}

/// ABI names of the integer registers that the Linux ABI layer uses.
pub mod reg {
    /// Return address.
    pub const RA: usize = 1;
    /// Stack pointer.
    pub const SP: usize = 2;
    /// Thread pointer.
    pub const TP: usize = 4;
    /// First argument / return value.
    pub const A0: usize = 10;
    /// Syscall number.
    pub const A7: usize = 17;
}

impl CpuState {
    /// The `fcsr` CSR value: `frm << 5 | fflags`.
    pub fn fcsr(&self) -> u64 {
        ((self.frm as u64) << 5) | self.fflags as u64
    }

    /// Writes `fcsr` (upper bits are ignored, as in hardware).
    pub fn set_fcsr(&mut self, v: u64) {
        self.fflags = (v & 0x1f) as u8;
        self.frm = ((v >> 5) & 7) as u8;
    }
}

/// One guest thread: its hart state plus what Linux keeps per thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestThread {
    /// Registers and pc.
    pub cpu: CpuState,
    /// Thread id as the guest sees it.
    pub tid: i32,
    /// Address written with 0 (and futex-woken) when the thread exits (`set_tid_address`).
    pub clear_child_tid: u64,
    /// Blocked-signal mask (recorded; signals are not delivered).
    pub signal_mask: u64,
    /// The deadline of a readiness wait whose call is being made again (see
    /// [`crate::futex::WaitKind::Ready`]): the restarted `poll`/`epoll_wait`/`select` waits
    /// until then instead of its argument's full timeout. Taken by the next system call.
    pub resume_deadline: Option<std::time::Instant>,
    /// Bytes a blocking pipe write already wrote before it parked (see
    /// [`crate::futex::Waiter::write_progress`]): the restarted call goes on after them and
    /// counts them. Taken by the next system call.
    pub resume_partial: u64,
}
