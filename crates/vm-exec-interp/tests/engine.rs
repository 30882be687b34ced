//! Engine behaviour on small hand-assembled programs: results, exact instruction counts,
//! fuel and resumption, faults, x0, self-modifying code and cache flushing.

use vm_exec_core::elf_writer::simple_executable;
use vm_exec_core::encode::*;
use vm_exec_core::exec::{signal, Executor, GuestExit, StopReason};
use vm_exec_interp::Interpreter;

mod programs;
use programs::*;

#[test]
fn runs_a_loop_and_counts_every_instruction() {
    let (p, mut t) = load(sum_program(100));
    let mut e = Interpreter::new();
    let r = e.run(&mut t, &p, u64::MAX);
    assert_eq!(r.stop, StopReason::Finished(GuestExit::Exited(5050 & 0xff)));
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
            if r.stop != StopReason::Preempted {
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
    assert_eq!((r.stop, r.retired, t.cpu.pc), (StopReason::Preempted, 0, pc));
}

#[test]
fn writes_to_x0_are_discarded() {
    let mut w = vec![addi(0, 0, 5), add(0, 0, 0), lui(0, 7), jal(0, 4), add(A0, 0, 0)];
    w.extend(exit_with_a0());
    let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
    let r = Interpreter::new().run(&mut t, &p, u64::MAX);
    assert_eq!(r.stop, StopReason::Finished(GuestExit::Exited(0)));
    assert_eq!(t.cpu.x[0], 0);
}

#[test]
fn bad_accesses_and_illegal_instructions_are_guest_signals() {
    // Load from an unmapped address.
    let w = vec![lui(A1, 0x7000), lw(A0, A1, 8)];
    let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
    let r = Interpreter::new().run(&mut t, &p, u64::MAX);
    match r.stop {
        StopReason::Finished(GuestExit::Signaled(s)) => {
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
        matches!(r.stop, StopReason::Finished(GuestExit::Signaled(ref s)) if s.signo == signal::SIGSEGV && s.addr == Some(0x10000))
    );
    // An illegal instruction after two good ones: SIGILL at its pc, two retired.
    let w = vec![addi(A0, 0, 1), addi(A0, A0, 1), 0xffff_ffff];
    let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
    let r = Interpreter::new().run(&mut t, &p, u64::MAX);
    assert!(
        matches!(r.stop, StopReason::Finished(GuestExit::Signaled(ref s)) if s.signo == signal::SIGILL && s.pc == 0x10008)
    );
    assert_eq!(r.retired, 2);
    assert_eq!(t.cpu.x[A0 as usize], 2);
    // Running past the code into the zero-filled rest of its page: 0x0000 is illegal.
    let w = vec![addi(A0, 0, 1)];
    let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
    let r = Interpreter::new().run(&mut t, &p, u64::MAX);
    assert!(
        matches!(r.stop, StopReason::Finished(GuestExit::Signaled(ref s)) if s.signo == signal::SIGILL && s.pc == 0x10004),
        "{r:?}"
    );
    // Jumping to unmapped memory: the fetch faults at the target.
    let w = vec![lui(A1, 0x7000), i(0x67, 0, 0, A1, 0)];
    let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
    let r = Interpreter::new().run(&mut t, &p, u64::MAX);
    assert!(
        matches!(r.stop, StopReason::Finished(GuestExit::Signaled(ref s)) if s.signo == signal::SIGSEGV && s.pc == 0x700_0000),
        "{r:?}"
    );
    assert_eq!(r.retired, 2);
}

#[test]
fn self_modifying_code_runs_the_new_instructions() {
    for fence in [false, true] {
        let (p, mut t) = load(self_modifying(fence));
        let mut e = Interpreter::new();
        let r = e.run(&mut t, &p, u64::MAX);
        // First call returns 1, second returns the patched 41: exit 1 + 41.
        assert_eq!(r.stop, StopReason::Finished(GuestExit::Exited(42)), "fence.i: {fence}");
        assert!(e.stats().invalidations >= 1);
    }
}

#[test]
fn a_tiny_cache_flushes_and_still_runs_correctly() {
    let (p, mut t) = load(sum_program(200));
    let mut e = Interpreter::with_cache_limit(2);
    let r = e.run(&mut t, &p, u64::MAX);
    assert_eq!(r.stop, StopReason::Finished(GuestExit::Exited(20100 & 0xff)));
    assert!(e.stats().invalidations > 0, "{:?}", e.stats());
}
