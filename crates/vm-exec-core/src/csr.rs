//! The user-mode CSRs of RV64GC: `fflags`, `frm`, `fcsr`, and the read-only counters
//! `cycle`, `time`, `instret`.
//!
//! Invariant: an access to any other CSR, or a write to a read-only one, is an illegal
//! instruction ([`csr_access`] returns `None`); engines turn that into SIGILL.

use crate::cpu::CpuState;

/// Accrued floating-point exceptions.
pub const FFLAGS: u32 = 0x001;
/// Floating-point dynamic rounding mode.
pub const FRM: u32 = 0x002;
/// `frm` and `fflags` together.
pub const FCSR: u32 = 0x003;
/// Cycle counter (read-only).
pub const CYCLE: u32 = 0xc00;
/// Wall-clock timer (read-only).
pub const TIME: u32 = 0xc01;
/// Retired-instruction counter (read-only).
pub const INSTRET: u32 = 0xc02;

/// The read-modify-write a `csrr*` instruction performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsrOp {
    /// `csrrw`: write the source.
    Write,
    /// `csrrs`: set the source's bits.
    Set,
    /// `csrrc`: clear the source's bits.
    Clear,
}

/// Frequency of the `time` CSR as the guest sees it (ticks per second).
pub const TIMEBASE_HZ: u64 = 10_000_000;

fn host_time_ticks() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * TIMEBASE_HZ + (ts.tv_nsec as u64) / (1_000_000_000 / TIMEBASE_HZ)
}

/// Performs one CSR instruction. `writes` is false for `csrrs`/`csrrc` whose source is x0
/// (or a zero immediate), which read without writing. `instret` is the thread's retired
/// instruction count (also reported as `cycle`). Returns the old value, or `None` if the
/// access is illegal.
pub fn csr_access(
    cpu: &mut CpuState,
    csr: u32,
    op: CsrOp,
    src: u64,
    writes: bool,
    instret: u64,
) -> Option<u64> {
    let old = match csr {
        FFLAGS => cpu.fflags as u64,
        FRM => cpu.frm as u64,
        FCSR => cpu.fcsr(),
        CYCLE | INSTRET => instret,
        TIME => host_time_ticks(),
        _ => return None,
    };
    if !writes {
        return Some(old);
    }
    let new = match op {
        CsrOp::Write => src,
        CsrOp::Set => old | src,
        CsrOp::Clear => old & !src,
    };
    match csr {
        FFLAGS => cpu.fflags = (new & 0x1f) as u8,
        FRM => cpu.frm = (new & 7) as u8,
        FCSR => cpu.set_fcsr(new),
        _ => return None,
    }
    Some(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fcsr_views_agree() {
        let mut c = CpuState::default();
        assert_eq!(csr_access(&mut c, FCSR, CsrOp::Write, 0xff, true, 0), Some(0));
        assert_eq!((c.frm, c.fflags), (7, 0x1f));
        assert_eq!(csr_access(&mut c, FFLAGS, CsrOp::Clear, 0x3, true, 0), Some(0x1f));
        assert_eq!(csr_access(&mut c, FRM, CsrOp::Write, 0x2, true, 0), Some(7));
        assert_eq!(csr_access(&mut c, FCSR, CsrOp::Set, 0, false, 0), Some(0x5c));
    }

    #[test]
    fn counters_are_read_only_and_unknown_csrs_illegal() {
        let mut c = CpuState::default();
        assert_eq!(csr_access(&mut c, INSTRET, CsrOp::Set, 0, false, 42), Some(42));
        assert_eq!(csr_access(&mut c, INSTRET, CsrOp::Write, 1, true, 42), None);
        assert_eq!(csr_access(&mut c, 0x300, CsrOp::Set, 0, false, 0), None); // mstatus
        assert_eq!(csr_access(&mut c, 0x7c0, CsrOp::Set, 0, false, 0), None);
    }
}
