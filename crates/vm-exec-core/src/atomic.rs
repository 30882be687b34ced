//! The A extension: LR/SC and AMOs, with one definition for every engine.
//!
//! Invariants: the address must be naturally aligned (else SIGBUS, as Linux reports a
//! misaligned atomic); an AMO needs write permission even though it also reads (it is a
//! store); a failed access is SIGSEGV at the faulting address.
//!
//! Guest threads of one process run on several host threads at once, so every AMO is a host
//! atomic read-modify-write on the guest's bytes (a guarded `lock cmpxchg` loop, see
//! [`AddressSpace::atomic_update`]; sequentially consistent, which covers every `aq`/`rl`
//! combination). LR records the address and the value it loaded; SC is a host
//! compare-and-swap against that value, so it fails if another thread changed the word in
//! between (it can succeed after an A-B-A change, which RISC-V permits: an SC may also fail
//! spuriously, and guest code retries on either).

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
    mem: &AddressSpace,
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
    let sext = |v: u32| v as i32 as i64 as u64;
    match op {
        LrW | LrD => {
            let v = if word {
                mem.read_u32(addr).map(sext).map_err(segv)?
            } else {
                mem.read_u64(addr).map_err(segv)?
            };
            cpu.reservation = Some(addr);
            cpu.reservation_value = v;
            return Ok(v);
        }
        ScW | ScD => {
            if cpu.reservation.take() != Some(addr) {
                return Ok(1);
            }
            let expected = cpu.reservation_value;
            let (expected, new) =
                if word { (expected & 0xffff_ffff, src & 0xffff_ffff) } else { (expected, src) };
            let swapped = mem
                .atomic_cas(addr, !word, expected, new)
                .map_err(segv)?
                .ok_or(AtomicFault { signo: signal::SIGBUS, addr })?;
            return Ok(u64::from(!swapped));
        }
        _ => {}
    }
    let bus = AtomicFault { signo: signal::SIGBUS, addr };
    if word {
        let b = src as u32;
        let old = mem
            .atomic_update(addr, false, |x| {
                let x = x as u32;
                Some(u64::from(match op {
                    AmoswapW => b,
                    AmoaddW => x.wrapping_add(b),
                    AmoxorW => x ^ b,
                    AmoandW => x & b,
                    AmoorW => x | b,
                    AmominuW => x.min(b),
                    AmomaxuW => x.max(b),
                    AmominW => (x as i32).min(b as i32) as u32,
                    _ => (x as i32).max(b as i32) as u32,
                }))
            })
            .map_err(segv)?
            .ok_or(bus)?;
        Ok(sext(old as u32))
    } else {
        let b = src;
        mem.atomic_update(addr, true, |x| {
            Some(match op {
                AmoswapD => b,
                AmoaddD => x.wrapping_add(b),
                AmoxorD => x ^ b,
                AmoandD => x & b,
                AmoorD => x | b,
                AmominuD => x.min(b),
                AmomaxuD => x.max(b),
                AmominD => (x as i64).min(b as i64) as u64,
                _ => (x as i64).max(b as i64) as u64,
            })
        })
        .map_err(segv)?
        .ok_or(bus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{PERM_READ, PERM_WRITE};

    fn setup() -> (CpuState, AddressSpace) {
        let m = AddressSpace::new(1 << 20).unwrap();
        m.map_fixed(0x1000, 0x1000, PERM_READ | PERM_WRITE).unwrap();
        m.map_fixed(0x2000, 0x1000, PERM_READ).unwrap();
        (CpuState::default(), m)
    }

    #[test]
    fn amos_return_the_old_value_sign_extended_and_store_the_new() {
        let (mut c, m) = setup();
        m.write_u32(0x1000, 0xffff_fffe).unwrap();
        assert_eq!(execute(Op::AmoaddW, 0x1000, 3, &mut c, &m), Ok(0xffff_ffff_ffff_fffe));
        assert_eq!(m.read_u32(0x1000).unwrap(), 1);
        assert_eq!(execute(Op::AmominW, 0x1000, (-5i64) as u64, &mut c, &m), Ok(1));
        assert_eq!(m.read_u32(0x1000).unwrap(), (-5i32) as u32);
        assert_eq!(execute(Op::AmomaxuD, 0x1008, 7, &mut c, &m), Ok(0));
        assert_eq!(m.read_u64(0x1008).unwrap(), 7);
    }

    #[test]
    fn sc_succeeds_only_on_the_reserved_address_once() {
        let (mut c, m) = setup();
        assert_eq!(execute(Op::LrD, 0x1010, 0, &mut c, &m), Ok(0));
        assert_eq!(execute(Op::ScD, 0x1018, 9, &mut c, &m), Ok(1));
        assert_eq!(execute(Op::LrD, 0x1010, 0, &mut c, &m), Ok(0));
        assert_eq!(execute(Op::ScD, 0x1010, 9, &mut c, &m), Ok(0));
        assert_eq!(execute(Op::ScD, 0x1010, 9, &mut c, &m), Ok(1));
        assert_eq!(m.read_u64(0x1010).unwrap(), 9);
        // Another thread's store between LR and SC makes the SC fail.
        assert_eq!(execute(Op::LrW, 0x1020, 0, &mut c, &m), Ok(0));
        m.write_u32(0x1020, 5).unwrap();
        assert_eq!(execute(Op::ScW, 0x1020, 7, &mut c, &m), Ok(1));
        assert_eq!(m.read_u32(0x1020).unwrap(), 5);
    }

    #[test]
    fn amos_from_many_host_threads_are_atomic() {
        let m = std::sync::Arc::new(setup().1);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    let mut c = CpuState::default();
                    for _ in 0..10_000 {
                        execute(Op::AmoaddW, 0x1000, 1, &mut c, &m).unwrap();
                        // An LR/SC increment loop, as compilers emit for narrow atomics.
                        loop {
                            let v = execute(Op::LrD, 0x1008, 0, &mut c, &m).unwrap();
                            if execute(Op::ScD, 0x1008, v + 1, &mut c, &m).unwrap() == 0 {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.read_u32(0x1000).unwrap(), 40_000);
        assert_eq!(m.read_u64(0x1008).unwrap(), 40_000);
    }

    #[test]
    fn misaligned_and_forbidden_accesses_are_signals() {
        let (mut c, m) = setup();
        let bus = AtomicFault { signo: signal::SIGBUS, addr: 0x1002 };
        assert_eq!(execute(Op::AmoswapW, 0x1002, 0, &mut c, &m), Err(bus));
        let segv = AtomicFault { signo: signal::SIGSEGV, addr: 0x2000 };
        assert_eq!(execute(Op::AmoaddD, 0x2000, 0, &mut c, &m), Err(segv), "read-only page");
        assert_eq!(execute(Op::LrW, 0x2000, 0, &mut c, &m), Ok(0), "LR only reads");
        assert_eq!(execute(Op::Add, 0x1000, 0, &mut c, &m).unwrap_err().signo, signal::SIGILL);
    }
}
