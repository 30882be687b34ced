//! Engine behaviour on small hand-assembled programs: results, exact instruction counts,
//! fuel and resumption, faults, x0, self-modifying code and cache flushing.

use std::sync::Arc;
use vm_exec_core::cpu::GuestThread;
use vm_exec_core::elf::Program;
use vm_exec_core::elf_writer::{simple_executable, write_executable, SegmentSpec};
use vm_exec_core::encode::*;
use vm_exec_core::exec::{signal, Executor, StopReason};
use vm_exec_core::loader;
use vm_exec_core::process::{Process, ProcessConfig};
use vm_exec_interp::Interpreter;

// A minimal encoder for the instructions these tests use.

fn exit_with_a0() -> Vec<u32> {
    vec![addi(A7, 0, 94), ECALL]
}

fn bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn load(elf: Vec<u8>) -> (Process, GuestThread) {
    let program = Arc::new(Program::parse(elf).expect("valid test program"));
    let config = ProcessConfig { memory_size: 64 << 20, ..Default::default() };
    loader::load(program, Arc::new(config), 1).expect("loads")
}

/// Sums 1..=n in a loop and exits with the sum (mod 256): 3 + 3n + 2 instructions.
fn sum_program(n: i32) -> Vec<u8> {
    let mut w = vec![
        addi(A0, 0, 0),
        addi(T0, 0, n),
        addi(T1, 0, 0),
        // loop:
        addi(T1, T1, 1),
        add(A0, A0, T1),
        bne(T1, T0, -8),
    ];
    w.extend(exit_with_a0());
    simple_executable(&bytes(&w), &[])
}

#[test]
fn runs_a_loop_and_counts_every_instruction() {
    let (p, mut t) = load(sum_program(100));
    let mut e = Interpreter::new();
    let r = e.run(&mut t, &p, u64::MAX);
    assert_eq!(r.stop, StopReason::ProcessExit(5050 & 0xff));
    assert_eq!(r.retired, 3 + 3 * 100 + 2);
    let s = e.stats();
    assert_eq!(s.instructions, r.retired);
    assert_eq!(s.syscalls, 1);
    assert_eq!((s.cache_misses, s.cache_hits), (3, 98), "the loop block is decoded once: {s:?}");
}

#[test]
fn fuel_stops_exactly_and_resumes_to_the_same_state() {
    let straight = {
        let (p, mut t) = load(sum_program(37));
        let r = Interpreter::new().run(&mut t, &p, u64::MAX);
        (r.stop, r.retired, t.cpu.clone())
    };
    for slice in 1..=20u64 {
        let (p, mut t) = load(sum_program(37));
        let mut e = Interpreter::new();
        let mut total = 0;
        let stop = loop {
            let r = e.run(&mut t, &p, slice);
            assert!(r.retired <= slice);
            total += r.retired;
            if r.stop != StopReason::FuelExhausted {
                break r.stop;
            }
            assert_eq!(r.retired, slice, "a slice that did not end the guest uses all its fuel");
        };
        assert_eq!((stop, total, t.cpu.clone()), straight, "slice {slice}");
    }
    // Zero fuel runs nothing.
    let (p, mut t) = load(sum_program(3));
    let pc = t.cpu.pc;
    let r = Interpreter::new().run(&mut t, &p, 0);
    assert_eq!((r.stop, r.retired, t.cpu.pc), (StopReason::FuelExhausted, 0, pc));
}

#[test]
fn writes_to_x0_are_discarded() {
    let mut w = vec![addi(0, 0, 5), add(0, 0, 0), lui(0, 7), jal(0, 4), add(A0, 0, 0)];
    w.extend(exit_with_a0());
    let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
    let r = Interpreter::new().run(&mut t, &p, u64::MAX);
    assert_eq!(r.stop, StopReason::ProcessExit(0));
    assert_eq!(t.cpu.x[0], 0);
}

#[test]
fn bad_accesses_and_illegal_instructions_are_guest_signals() {
    // Load from an unmapped address.
    let w = vec![lui(A1, 0x7000), lw(A0, A1, 8)];
    let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
    let r = Interpreter::new().run(&mut t, &p, u64::MAX);
    match r.stop {
        StopReason::Signal(s) => {
            assert_eq!(s.signo, signal::SIGSEGV);
            assert_eq!(s.addr, Some(0x700_0008));
            assert_eq!(s.pc, 0x10004);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.retired, 1);
    // Store into the code segment (read+execute only).
    let w = vec![lui(A1, 0x10), sw(A0, A1, 0)];
    let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
    let r = Interpreter::new().run(&mut t, &p, u64::MAX);
    assert!(
        matches!(r.stop, StopReason::Signal(ref s) if s.signo == signal::SIGSEGV && s.addr == Some(0x10000))
    );
    // An illegal instruction after two good ones: SIGILL at its pc, two retired.
    let w = vec![addi(A0, 0, 1), addi(A0, A0, 1), 0xffff_ffff];
    let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
    let r = Interpreter::new().run(&mut t, &p, u64::MAX);
    assert!(
        matches!(r.stop, StopReason::Signal(ref s) if s.signo == signal::SIGILL && s.pc == 0x10008)
    );
    assert_eq!(r.retired, 2);
    assert_eq!(t.cpu.x[A0 as usize], 2);
    // Running past the code into the zero-filled rest of its page: 0x0000 is illegal.
    let w = vec![addi(A0, 0, 1)];
    let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
    let r = Interpreter::new().run(&mut t, &p, u64::MAX);
    assert!(
        matches!(r.stop, StopReason::Signal(ref s) if s.signo == signal::SIGILL && s.pc == 0x10004),
        "{r:?}"
    );
    // Jumping to unmapped memory: the fetch faults at the target.
    let w = vec![lui(A1, 0x7000), i(0x67, 0, 0, A1, 0)];
    let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
    let r = Interpreter::new().run(&mut t, &p, u64::MAX);
    assert!(
        matches!(r.stop, StopReason::Signal(ref s) if s.signo == signal::SIGSEGV && s.pc == 0x700_0000),
        "{r:?}"
    );
    assert_eq!(r.retired, 2);
}

/// A program in a writable+executable segment that patches the immediate of an instruction
/// it has already executed, then runs it again.
fn self_modifying(with_fence: bool) -> Vec<u8> {
    // 0x10000: a2 = 0
    // 0x10004: jal ra, target        (call)
    // 0x10008: a2 += a0
    // 0x1000c: load the patched word into t0, store it at target
    // ...
    // target: addi a0, zero, 1 ; jalr ra
    let target_off = 0x40u32;
    let patched = addi(A0, 0, 41);
    let mut w = vec![
        addi(A2, 0, 0),
        jal(1, target_off as i32 - 4),
        add(A2, A2, A0),
        lui(T0, patched >> 12 & 0xfffff),
        addi(T0, T0, (patched & 0xfff) as i32),
        lui(A1, 0x10),
        sw(T0, A1, target_off as i32),
    ];
    if with_fence {
        w.push(FENCE_I);
    }
    // The `lui`+`addi` pair above needs the sign adjustment of addi; fix it up exactly.
    let lo = ((patched & 0xfff) as i32) << 20 >> 20;
    let hi = patched.wrapping_sub(lo as u32) >> 12;
    w[3] = lui(T0, hi & 0xfffff);
    w[4] = addi(T0, T0, lo);
    let call_again = w.len() as i32 * 4;
    w.push(jal(1, target_off as i32 - call_again));
    w.push(add(A0, A2, A0));
    w.extend(exit_with_a0());
    while w.len() * 4 < target_off as usize {
        w.push(addi(0, 0, 0));
    }
    w.push(addi(A0, 0, 1));
    w.push(i(0x67, 0, 0, 1, 0)); // jalr x0, 0(ra)
    write_executable(
        0x10000,
        &[SegmentSpec { addr: 0x10000, bytes: &bytes(&w), zero_tail: 0, flags: 7 }],
    )
}

#[test]
fn self_modifying_code_runs_the_new_instructions() {
    for fence in [false, true] {
        let (p, mut t) = load(self_modifying(fence));
        let mut e = Interpreter::new();
        let r = e.run(&mut t, &p, u64::MAX);
        // First call returns 1, second returns the patched 41: exit 1 + 41.
        assert_eq!(r.stop, StopReason::ProcessExit(42), "fence.i: {fence}");
        assert!(e.stats().invalidations >= 1);
    }
}

#[test]
fn a_tiny_cache_flushes_and_still_runs_correctly() {
    let (p, mut t) = load(sum_program(200));
    let mut e = Interpreter::with_cache_limit(2);
    let r = e.run(&mut t, &p, u64::MAX);
    assert_eq!(r.stop, StopReason::ProcessExit(20100 & 0xff));
    assert!(e.stats().invalidations > 0, "{:?}", e.stats());
}
