//! Code cache and fuel behaviour of the translating engines: stopping after every possible N
//! and resuming gives the straight-through result; chaining on and off agree (and chaining
//! really happens); a tiny cache flushes and still runs correctly; a store into a hot,
//! chained loop takes effect; `instret` reads agree with the interpreter.

use vm_exec_core::cpu::{CpuState, GuestThread};
use vm_exec_core::elf_writer::{write_executable, SegmentSpec};
use vm_exec_core::encode::*;
use vm_exec_core::exec::{Executor, GuestExit, StopReason};
use vm_exec_core::process::Process;
use vm_exec_interp::Interpreter;
use vm_exec_jit::{HybridEngine, JitConfig, JitEngine};

use vm_test_support::programs::{bytes, load};

const DATA: u64 = 0x20_0000;

fn ld(rd: u32, rs1: u32, imm: i32) -> u32 {
    i(0x03, 3, rd, rs1, imm)
}
fn sd(rs2: u32, rs1: u32, imm: i32) -> u32 {
    let imm = imm as u32;
    (imm >> 5 & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | 3 << 12 | (imm & 0x1f) << 7 | 0x23
}

/// A loop of `n` rounds; each round hops through `hops` blocks, calls a function through
/// `jal`/`jalr` (so returns go through the jump table) and updates a counter in memory.
/// Exits with the memory counter plus a0.
fn busy_program(n: i32, hops: i32) -> Vec<u8> {
    let mut w = vec![addi(A0, 0, 0), addi(T0, 0, n), addi(T1, 0, 0), lui(A1, (DATA >> 12) as u32)];
    let top = w.len() as i32;
    for h in 0..hops {
        w.push(addi(A0, A0, h));
        w.push(jal(0, 4));
    }
    let call_at = w.len() as i32;
    w.push(0); // jal ra, func (patched below)
    w.push(ld(T2, A1, 8));
    w.push(add(T2, T2, T1));
    w.push(sd(T2, A1, 8));
    w.push(addi(T1, T1, 1));
    let here = w.len() as i32;
    w.push(bne(T1, T0, (top - here) * 4));
    w.push(ld(T2, A1, 8));
    w.push(add(A0, A0, T2));
    w.push(addi(A7, 0, 94));
    w.push(ECALL);
    let func = w.len() as i32;
    w[call_at as usize] = jal(1, (func - call_at) * 4);
    w.push(addi(A2, A2, 3));
    w.push(jalr(0, 1, 0));
    write_executable(
        0x10000,
        &[
            SegmentSpec { addr: 0x10000, bytes: &bytes(&w), zero_tail: 0, flags: 5 },
            SegmentSpec { addr: DATA, bytes: &[0; 64], zero_tail: 0, flags: 6 },
        ],
    )
}

#[derive(Debug, PartialEq)]
struct End {
    stop: StopReason,
    retired: u64,
    cpu: CpuState,
    counter: u64,
}

fn finish(e: &mut dyn Executor, p: Process, mut t: GuestThread, first: u64) -> End {
    let r = e.run(&mut t, &p, first);
    assert!(r.retired <= first);
    let mut retired = r.retired;
    let stop = if r.stop == StopReason::Preempted {
        assert_eq!(r.retired, first, "{}: stopped early without a reason", e.name());
        let r2 = e.run(&mut t, &p, u64::MAX);
        retired += r2.retired;
        r2.stop
    } else {
        r.stop
    };
    let counter = p.mem.read_u64(DATA + 8).unwrap_or(0);
    End { stop, retired, cpu: t.cpu, counter }
}

type MakeEngine = fn() -> Box<dyn Executor>;

fn engines() -> Vec<(&'static str, MakeEngine)> {
    vec![
        ("jit", || Box::new(JitEngine::new())),
        ("jit-nochain", || {
            Box::new(JitEngine::with_config(JitConfig { chaining: false, ..JitConfig::default() }))
        }),
        ("hybrid-t0", || Box::new(HybridEngine::with_threshold(0))),
        ("hybrid-t1", || Box::new(HybridEngine::with_threshold(1))),
        ("hybrid", || Box::new(HybridEngine::new())),
    ]
}

#[test]
fn stopping_after_every_n_and_resuming_gives_the_straight_result() {
    let elf = busy_program(6, 5);
    let want = {
        let (p, t) = load(elf.clone());
        finish(&mut Interpreter::new(), p, t, u64::MAX)
    };
    assert!(matches!(want.stop, StopReason::Finished(GuestExit::Exited(_))));
    for (name, make) in engines() {
        for n in 0..=want.retired + 1 {
            let (p, t) = load(elf.clone());
            let got = finish(make().as_mut(), p, t, n);
            assert_eq!(got, want, "{name}: split after {n}");
        }
    }
}

#[test]
fn chaining_on_and_off_agree_and_chaining_bypasses_the_dispatcher() {
    let elf = busy_program(200, 8);
    let counting = JitConfig { count_blocks: true, ..JitConfig::default() };
    let mut on = JitEngine::with_config(counting);
    let mut off = JitEngine::with_config(JitConfig { chaining: false, ..counting });
    let (p, t) = load(elf.clone());
    let a = finish(&mut on, p, t, u64::MAX);
    let (p, t) = load(elf.clone());
    let b = finish(&mut off, p, t, u64::MAX);
    assert_eq!(a, b);
    let (p, t) = load(elf.clone());
    assert_eq!(a, finish(&mut Interpreter::new(), p, t, u64::MAX));
    let (son, soff) = (on.stats(), off.stats());
    assert_eq!(son.total_executions, soff.total_executions, "chained entries are counted too");
    assert!(on.tier_stats().chained_exits > 0);
    assert_eq!(off.tier_stats().chained_exits, 0);
    // Without chaining every block entry is a dispatcher lookup; with it almost none are.
    assert!(soff.cache_hits + soff.cache_misses >= soff.total_executions - 1, "{soff:?}");
    assert!((son.cache_hits + son.cache_misses) * 20 < soff.cache_hits, "{son:?} vs {soff:?}");
}

#[test]
fn a_tiny_cache_flushes_repeatedly_and_stays_correct() {
    let elf = busy_program(50, 60);
    let (p, t) = load(elf.clone());
    let want = finish(&mut Interpreter::new(), p, t, u64::MAX);
    for chaining in [true, false] {
        let mut e = JitEngine::with_config(JitConfig {
            cache_limit_bytes: 4096,
            chaining,
            count_blocks: false,
        });
        let (p, t) = load(elf.clone());
        assert_eq!(finish(&mut e, p, t, u64::MAX), want, "chaining {chaining}");
        assert!(e.tier_stats().cache_flushes > 2, "{:?}", e.tier_stats());
        assert!(e.code_bytes() <= 4096);
    }
}

/// A hot loop (one chained block) that, on its 100th round, stores a new instruction over
/// its own `addi a0, a0, 1` (making it `addi a0, a0, 7`) without `fence.i`. The store is the
/// last instruction before the loop branch, so every engine picks up the new instruction
/// from the next round on: 100 * 1 + 100 * 7.
fn patching_loop() -> Vec<u8> {
    let patched = addi(A0, A0, 7);
    let lo = ((patched & 0xfff) as i32) << 20 >> 20;
    let hi = patched.wrapping_sub(lo as u32) >> 12;
    let mut w = vec![
        addi(A0, 0, 0),
        addi(T0, 0, 200),
        addi(T1, 0, 0),
        lui(T2, hi & 0xfffff),
        addi(T2, T2, lo),
        lui(A1, 0x10),
        addi(A2, 0, 100),
    ];
    let top = w.len() as i32;
    w.push(addi(A0, A0, 1)); // patched
    w.push(addi(T1, T1, 1));
    // if t1 == 100: store the patch (skipped otherwise)
    w.push(bne(T1, A2, 8));
    w.push(sw(T2, A1, top * 4));
    let here = w.len() as i32;
    w.push(bne(T1, T0, (top - here) * 4));
    w.push(addi(A7, 0, 94));
    w.push(ECALL);
    write_executable(
        0x10000,
        &[SegmentSpec { addr: 0x10000, bytes: &bytes(&w), zero_tail: 0, flags: 7 }],
    )
}

#[test]
fn a_store_into_a_hot_chained_loop_takes_effect() {
    let elf = patching_loop();
    let (p, t) = load(elf.clone());
    let want = finish(&mut Interpreter::new(), p, t, u64::MAX);
    assert_eq!(want.stop, StopReason::Finished(GuestExit::Exited((100 + 700) & 0xff)));
    for (name, make) in engines() {
        let mut e = make();
        let (p, t) = load(elf.clone());
        assert_eq!(finish(e.as_mut(), p, t, u64::MAX), want, "{name}");
        if name.starts_with("jit") {
            assert!(e.stats().invalidations >= 1, "{name}");
        }
    }
}

#[test]
fn instret_reads_agree_with_the_interpreter() {
    // a0 = instret; loop 10 rounds; a1 = instret; cycle into a2; exit with a1 - a0.
    let rdinstret = |rd: u32| 0xc02 << 20 | 2 << 12 | rd << 7 | 0x73;
    let rdcycle = |rd: u32| 0xc00 << 20 | 2 << 12 | rd << 7 | 0x73;
    let w = vec![
        addi(T0, 0, 10),
        rdinstret(A0),
        addi(T0, T0, -1),
        bne(T0, 0, -4),
        rdinstret(A1),
        rdcycle(A2),
        r(0x33, 0, 0x20, A0, A1, A0), // sub a0, a1, a0
        addi(A7, 0, 94),
        ECALL,
    ];
    let elf = write_executable(
        0x10000,
        &[SegmentSpec { addr: 0x10000, bytes: &bytes(&w), zero_tail: 0, flags: 5 }],
    );
    let (p, t) = load(elf.clone());
    let want = finish(&mut Interpreter::new(), p, t, u64::MAX);
    assert_eq!(want.stop, StopReason::Finished(GuestExit::Exited(21)));
    for (name, make) in engines() {
        let (p, t) = load(elf.clone());
        assert_eq!(finish(make().as_mut(), p, t, u64::MAX), want, "{name}");
    }
}
