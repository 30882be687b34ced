//! The A extension: LR/SC and AMOs, with one definition for every engine.
//!
//! Invariants: the address must be naturally aligned (else SIGBUS, as Linux reports a
//! misaligned atomic); an AMO needs write permission even though it also reads (it is a
//! store); a failed access is SIGSEGV at the faulting address. The engines run one guest
//! thread per address space at a time, so a plain read-modify-write is atomic for the guest;
//! sharing an address space across host threads will need host atomics here.

use crate::cpu::CpuState;
use crate::exec::signal;
use crate::inst::Op;
use crate::memory::{AddressSpace, MemFault};

/// A fatal signal raised by an atomic instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtomicFault {
    /// `SIGBUS` (misaligned) or `SIGSEGV` (no access).
    pub signo: i32,
    /// The faulting address.
    pub addr: u64,
}

/// Executes the LR/SC or AMO `op` on `addr` with source operand `src`; returns the value
/// written to `rd`. Non-atomic ops are not accepted (they return SIGILL at `addr`).
pub fn execute(
    op: Op,
    addr: u64,
    src: u64,
    cpu: &mut CpuState,
    mem: &mut AddressSpace,
) -> Result<u64, AtomicFault> {
    use Op::*;
    let Some(size) = op.atomic_width() else {
        return Err(AtomicFault { signo: signal::SIGILL, addr });
    };
    let word = size == 4;
    if addr % size != 0 {
        return Err(AtomicFault { signo: signal::SIGBUS, addr });
    }
    let segv = |f: MemFault| AtomicFault { signo: signal::SIGSEGV, addr: f.addr };
    let load = |mem: &AddressSpace| -> Result<u64, AtomicFault> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{PERM_READ, PERM_WRITE};

    fn setup() -> (CpuState, AddressSpace) {
        let mut m = AddressSpace::new(1 << 20).unwrap();
        m.map_fixed(0x1000, 0x1000, PERM_READ | PERM_WRITE).unwrap();
        m.map_fixed(0x2000, 0x1000, PERM_READ).unwrap();
        (CpuState::default(), m)
    }

    #[test]
    fn amos_return_the_old_value_sign_extended_and_store_the_new() {
        let (mut c, mut m) = setup();
        m.write_u32(0x1000, 0xffff_fffe).unwrap();
        assert_eq!(execute(Op::AmoaddW, 0x1000, 3, &mut c, &mut m), Ok(0xffff_ffff_ffff_fffe));
        assert_eq!(m.read_u32(0x1000).unwrap(), 1);
        assert_eq!(execute(Op::AmominW, 0x1000, (-5i64) as u64, &mut c, &mut m), Ok(1));
        assert_eq!(m.read_u32(0x1000).unwrap(), (-5i32) as u32);
        assert_eq!(execute(Op::AmomaxuD, 0x1008, 7, &mut c, &mut m), Ok(0));
        assert_eq!(m.read_u64(0x1008).unwrap(), 7);
    }

    #[test]
    fn sc_succeeds_only_on_the_reserved_address_once() {
        let (mut c, mut m) = setup();
        assert_eq!(execute(Op::LrD, 0x1010, 0, &mut c, &mut m), Ok(0));
        assert_eq!(execute(Op::ScD, 0x1018, 9, &mut c, &mut m), Ok(1));
        assert_eq!(execute(Op::LrD, 0x1010, 0, &mut c, &mut m), Ok(0));
        assert_eq!(execute(Op::ScD, 0x1010, 9, &mut c, &mut m), Ok(0));
        assert_eq!(execute(Op::ScD, 0x1010, 9, &mut c, &mut m), Ok(1));
        assert_eq!(m.read_u64(0x1010).unwrap(), 9);
    }

    #[test]
    fn misaligned_and_forbidden_accesses_are_signals() {
        let (mut c, mut m) = setup();
        let bus = AtomicFault { signo: signal::SIGBUS, addr: 0x1002 };
        assert_eq!(execute(Op::AmoswapW, 0x1002, 0, &mut c, &mut m), Err(bus));
        let segv = AtomicFault { signo: signal::SIGSEGV, addr: 0x2000 };
        assert_eq!(execute(Op::AmoaddD, 0x2000, 0, &mut c, &mut m), Err(segv), "read-only page");
        assert_eq!(execute(Op::LrW, 0x2000, 0, &mut c, &mut m), Ok(0), "LR only reads");
        assert_eq!(execute(Op::Add, 0x1000, 0, &mut c, &mut m).unwrap_err().signo, signal::SIGILL);
    }
}
