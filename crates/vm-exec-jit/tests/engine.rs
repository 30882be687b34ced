//! Engine behaviour on small hand-assembled programs: results, exact instruction counts,
//! fuel and resumption, faults, x0, self-modifying code and cache flushing: the contract of
//! every engine, written once and run for every engine configuration (`engines()`: the
//! interpreter, the JIT with and without chaining, the hybrid engine at several hot
//! thresholds). It lives in this crate because this crate has every engine; the programs
//! come from `vm-test-support`.

use vm_exec_core::elf_writer::simple_executable;
use vm_exec_core::encode::*;
use vm_exec_core::exec::ExecutionStats;
use vm_exec_core::exec::{signal, Executor, GuestExit, StopReason};
use vm_exec_interp::Interpreter;
use vm_exec_jit::{HybridEngine, JitConfig, JitEngine, DEFAULT_HOT_THRESHOLD};
use vm_test_support::programs::*;

type MakeEngine = fn() -> Box<dyn Executor>;

/// The translator configuration of these tests: block entries counted for the statistics.
const COUNTING: JitConfig =
    JitConfig { cache_limit_bytes: 64 << 20, chaining: true, count_blocks: true };

/// Every engine configuration under test, by name.
fn engines() -> Vec<(&'static str, MakeEngine)> {
    vec![
        ("interp", || Box::new(Interpreter::new())),
        ("jit", || Box::new(JitEngine::with_config(COUNTING))),
        ("jit-nochain", || {
            Box::new(JitEngine::with_config(JitConfig { chaining: false, ..COUNTING }))
        }),
        ("hybrid", || {
            Box::new(HybridEngine::try_with_config(COUNTING, DEFAULT_HOT_THRESHOLD).unwrap())
        }),
        ("hybrid-t0", || Box::new(HybridEngine::try_with_config(COUNTING, 0).unwrap())),
        ("hybrid-t2", || Box::new(HybridEngine::try_with_config(COUNTING, 2).unwrap())),
    ]
}

fn tiny_cache_engines() -> Vec<(&'static str, Box<dyn Executor>)> {
    let tiny = JitConfig { cache_limit_bytes: 1, ..JitConfig::default() };
    vec![
        ("jit", Box::new(JitEngine::with_config(tiny))),
        ("jit-nochain", Box::new(JitEngine::with_config(JitConfig { chaining: false, ..tiny }))),
        ("hybrid-t1", Box::new(vm_exec_jit::HybridEngine::try_with_config(tiny, 1).unwrap())),
        ("interp", Box::new(Interpreter::with_cache_limit(2))),
    ]
}

#[test]
fn runs_a_loop_and_counts_every_instruction() {
    for (name, make) in engines() {
        let (p, mut t) = load(sum_program(100));
        let mut e = make();
        let r = e.run(&mut t, &p, u64::MAX);
        assert_eq!(r.stop, StopReason::Finished(GuestExit::Exited(5050 & 0xff)), "{name}");
        assert_eq!(r.retired, 3 + 3 * 100 + 2, "{name}");
        let s: ExecutionStats = e.stats();
        assert_eq!(s.instructions, r.retired, "{name}");
        assert_eq!(s.syscalls, 1, "{name}");
        assert_eq!(s.total_executions, 1 + 99 + 1, "{name}: every block entry is counted: {s:?}");
        if name.starts_with("jit") {
            assert_eq!(s.blocks_compiled, 3, "{name}: the loop block is translated once: {s:?}");
        }
        if name == "jit" {
            assert_eq!(s.cache_misses, 3, "{name}: {s:?}");
            assert!(
                s.cache_hits <= 2,
                "{name}: the loop is chained to itself, not dispatched: {s:?}"
            );
        }
        if name == "interp" || name == "jit-nochain" {
            assert_eq!(
                (s.cache_misses, s.cache_hits),
                (3, 98),
                "{name}: the loop block is decoded once, every block exit is dispatched: {s:?}"
            );
        }
    }
}

#[test]
fn fuel_stops_exactly_and_resumes_to_the_same_state() {
    let straight = {
        let (p, mut t) = load(sum_program(37));
        let r = Interpreter::new().run(&mut t, &p, u64::MAX);
        (r.stop, r.retired, t.cpu.clone())
    };
    for (name, make) in engines() {
        for slice in 1..=20u64 {
            let (p, mut t) = load(sum_program(37));
            let mut e = make();
            let mut total = 0;
            let stop = loop {
                let r = e.run(&mut t, &p, slice);
                assert!(r.retired <= slice);
                total += r.retired;
                if r.stop != StopReason::Preempted {
                    break r.stop;
                }
                assert_eq!(
                    r.retired, slice,
                    "a slice that did not end the guest uses all its fuel"
                );
            };
            assert_eq!((stop, total, t.cpu.clone()), straight, "{name}: slice {slice}");
            assert_eq!(e.stats().instructions, total, "{name}: slice {slice}");
        }
        // Zero fuel runs nothing.
        let (p, mut t) = load(sum_program(3));
        let pc = t.cpu.pc;
        let r = make().run(&mut t, &p, 0);
        assert_eq!((r.stop, r.retired, t.cpu.pc), (StopReason::Preempted, 0, pc), "{name}");
    }
}

#[test]
fn writes_to_x0_are_discarded() {
    for (name, make) in engines() {
        let mut w = vec![addi(0, 0, 5), add(0, 0, 0), lui(0, 7), jal(0, 4), add(A0, 0, 0)];
        w.extend(exit_with_a0());
        let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
        let r = make().run(&mut t, &p, u64::MAX);
        assert_eq!(r.stop, StopReason::Finished(GuestExit::Exited(0)), "{name}");
        assert_eq!(t.cpu.x[0], 0, "{name}");
    }
}

#[test]
fn bad_accesses_and_illegal_instructions_are_guest_signals() {
    for (name, make) in engines() {
        // Load from an unmapped address.
        let w = vec![lui(A1, 0x7000), lw(A0, A1, 8)];
        let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
        let r = make().run(&mut t, &p, u64::MAX);
        match r.stop {
            StopReason::Finished(GuestExit::Signaled(s)) => {
                assert_eq!(s.signo, signal::SIGSEGV, "{name}");
                assert_eq!(s.addr, Some(0x700_0008), "{name}");
                assert_eq!(s.pc, 0x10004, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(r.retired, 1, "{name}");
        assert_eq!(t.cpu.pc, 0x10004, "{name}");
        // Store into the code segment (read+execute only).
        let w = vec![lui(A1, 0x10), sw(A0, A1, 0)];
        let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
        let r = make().run(&mut t, &p, u64::MAX);
        assert!(
            matches!(r.stop, StopReason::Finished(GuestExit::Signaled(ref s)) if s.signo == signal::SIGSEGV && s.addr == Some(0x10000)),
            "{name}: {r:?}"
        );
        // An illegal instruction after two good ones: SIGILL at its pc, two retired.
        let w = vec![addi(A0, 0, 1), addi(A0, A0, 1), 0xffff_ffff];
        let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
        let r = make().run(&mut t, &p, u64::MAX);
        assert!(
            matches!(r.stop, StopReason::Finished(GuestExit::Signaled(ref s)) if s.signo == signal::SIGILL && s.pc == 0x10008),
            "{name}: {r:?}"
        );
        assert_eq!(r.retired, 2, "{name}");
        assert_eq!(t.cpu.x[A0 as usize], 2, "{name}");
        // Running past the code into the zero-filled rest of its page: 0x0000 is illegal.
        let w = vec![addi(A0, 0, 1)];
        let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
        let r = make().run(&mut t, &p, u64::MAX);
        assert!(
            matches!(r.stop, StopReason::Finished(GuestExit::Signaled(ref s)) if s.signo == signal::SIGILL && s.pc == 0x10004),
            "{name}: {r:?}"
        );
        // Jumping to unmapped memory: the fetch faults at the target.
        let w = vec![lui(A1, 0x7000), i(0x67, 0, 0, A1, 0)];
        let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
        let r = make().run(&mut t, &p, u64::MAX);
        assert!(
            matches!(r.stop, StopReason::Finished(GuestExit::Signaled(ref s)) if s.signo == signal::SIGSEGV && s.pc == 0x700_0000),
            "{name}: {r:?}"
        );
        assert_eq!(r.retired, 2, "{name}");
    }
}

#[test]
fn displacements_that_leave_the_space_fault_at_the_exact_address() {
    // The translator checks only the base register against the end of the space and lets
    // the guard regions catch the displacement: a base inside the space with a displacement
    // below address 0 or past the end must still be the guest's SIGSEGV at the full address,
    // with the destination register untouched. Bases in a global (a1), a block-local (t0,
    // used often in its block) and an uncached register (t1, set in an earlier block).
    let size: u32 = 64 << 20; // `load`'s memory size
    let cases: Vec<(Vec<u32>, u64)> = vec![
        (vec![addi(A1, 0, 4), lw(A0, A1, -8)], (-4i64) as u64),
        (vec![lui(A1, size >> 12), addi(A1, A1, -8), lw(A0, A1, 2000)], size as u64 - 8 + 2000),
        (vec![lui(A1, size >> 12), addi(A1, A1, -8), sw(A0, A1, 2044)], size as u64 - 8 + 2044),
        (vec![addi(T0, 0, 16), addi(T0, T0, -8), lw(A0, T0, -9)], (-1i64) as u64),
        (vec![addi(T1, 0, 2), jal(0, 4), lw(A0, T1, -2047)], (-2045i64) as u64),
        (vec![lui(T1, size >> 12), jal(0, 4), sw(A0, T1, 2047)], size as u64 + 2047),
    ];
    for (name, make) in engines() {
        for (body, addr) in &cases {
            let mut w = vec![addi(A0, 0, 7)];
            w.extend_from_slice(body);
            let pc = 0x10000 + 4 * (w.len() as u64 - 1);
            let (p, mut t) = load(simple_executable(&bytes(&w), &[]));
            let r = make().run(&mut t, &p, u64::MAX);
            match r.stop {
                StopReason::Finished(GuestExit::Signaled(s)) => {
                    assert_eq!(s.signo, signal::SIGSEGV, "{name} {addr:#x}");
                    assert_eq!(s.addr, Some(*addr), "{name} {addr:#x}");
                    assert_eq!(s.pc, pc, "{name} {addr:#x}");
                }
                other => panic!("{name} {addr:#x}: {other:?}"),
            }
            assert_eq!(r.retired, w.len() as u64 - 1, "{name} {addr:#x}");
            assert_eq!(t.cpu.x[A0 as usize], 7, "{name} {addr:#x}");
        }
    }
}

#[test]
fn self_modifying_code_runs_the_new_instructions() {
    for (name, make) in engines() {
        for fence in [false, true] {
            let (p, mut t) = load(self_modifying(fence));
            let mut e = make();
            let r = e.run(&mut t, &p, u64::MAX);
            // First call returns 1, second returns the patched 41: exit 1 + 41.
            assert_eq!(
                r.stop,
                StopReason::Finished(GuestExit::Exited(42)),
                "{name}: fence.i: {fence}"
            );
            if name.starts_with("jit") || name == "interp" {
                assert!(e.stats().invalidations >= 1, "{name}");
            }
        }
    }
}

#[test]
fn a_tiny_cache_flushes_and_still_runs_correctly() {
    let (n, hops) = (50, 40);
    let want = (n * (hops * (hops - 1) / 2)) & 0xff;
    let insts = 3 + n as u64 * (2 * hops as u64 + 2) + 2;
    for (name, mut e) in tiny_cache_engines() {
        let (p, mut t) = load(hopping_program(n, hops));
        let r = e.run(&mut t, &p, u64::MAX);
        assert_eq!(r.stop, StopReason::Finished(GuestExit::Exited(want)), "{name}");
        assert_eq!(r.retired, insts, "{name}");
        assert!(e.stats().invalidations > 0, "{name}: {:?}", e.stats());
    }
    // The interpreter's block cache with room for two blocks, on a loop.
    let (p, mut t) = load(sum_program(200));
    let mut e = Interpreter::with_cache_limit(2);
    let r = e.run(&mut t, &p, u64::MAX);
    assert_eq!(r.stop, StopReason::Finished(GuestExit::Exited(20100 & 0xff)));
    assert!(e.stats().invalidations > 0, "{:?}", e.stats());
    // The same with an ample cache: nothing is dropped.
    let (p, mut t) = load(hopping_program(n, hops));
    let mut e = JitEngine::new();
    let r = e.run(&mut t, &p, u64::MAX);
    assert_eq!((r.stop, r.retired), (StopReason::Finished(GuestExit::Exited(want)), insts));
    assert_eq!(e.stats().invalidations, 0);
}

#[test]
fn engines_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<JitEngine>();
    assert_send::<HybridEngine>();
    assert_send::<Interpreter>();
}
