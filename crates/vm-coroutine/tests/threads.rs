//! Guest threads on the scheduler: futex ping-pong stress (no lost wake-ups), many
//! multi-threaded processes at once, fairness between threads that never make a system call,
//! kills and exits while threads are parked, and the per-thread statistics.
//!
//! The guests are the threaded programs of `guests/` (their sources say what each checks, and
//! each exits non-zero when a check fails); `vm-cli`'s differential test compares the same
//! programs with qemu-riscv64 byte for byte.
#![cfg(not(loom))]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vm_coroutine::{Coroutine, EngineFactory, GuestExit, Scheduler, SchedulerConfig};
use vm_exec_core::elf::Program;
use vm_exec_core::process::{CaptureBuffer, ProcessConfig, Stdio};

/// A bound no correct run comes near; a lost wake-up hangs until it.
const BOUND: Duration = Duration::from_secs(120);

/// The guests run on the interpreter (the scheduler itself names no engine).
fn interp() -> EngineFactory {
    Arc::new(|| Box::new(vm_exec_interp::Interpreter::new()))
}

fn guest(name: &str) -> Arc<Program> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../guests/bin").join(name);
    Arc::new(Program::parse(std::fs::read(path).expect("guest binary")).expect("guest parses"))
}

fn config(name: &str, args: &[&str]) -> (Arc<ProcessConfig>, CaptureBuffer) {
    let out = CaptureBuffer::with_limit(1 << 20);
    let mut argv = vec![format!("guests/bin/{name}").into_bytes()];
    argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
    let c = ProcessConfig {
        args: argv,
        stdin: Stdio::Null,
        stdout: Stdio::Capture(out.clone()),
        stderr: Stdio::Capture(out.clone()),
        ..Default::default()
    };
    (Arc::new(c), out)
}

fn scheduler(vcpus: usize, time_slice: u64) -> Scheduler {
    let s = Scheduler::with_config(SchedulerConfig { vcpus, time_slice, ..Default::default() });
    s.start().unwrap();
    s
}

/// Runs one process to its end and returns its exit and output.
fn run(s: &Scheduler, name: &str, args: &[&str]) -> (GuestExit, String) {
    let (c, out) = config(name, args);
    let id = s.submit_coroutine(Coroutine::new(guest(name), c, interp())).unwrap();
    let r = s.wait(id, Some(BOUND)).unwrap_or_else(|| panic!("{name} {args:?}: no result"));
    (r.exit, String::from_utf8_lossy(&out.contents()).into_owned())
}

#[test]
fn futex_ping_pong_between_many_pairs_loses_no_wake_up() {
    for vcpus in [1, 2, 4] {
        let s = scheduler(vcpus, 10_000);
        let t0 = Instant::now();
        let (exit, out) = run(&s, "futex_pingpong", &["8", "300"]);
        assert_eq!(exit, GuestExit::Exited(0), "N={vcpus}:\n{out}");
        assert!(t0.elapsed() < BOUND);
        let stats = s.get_stats();
        assert!(stats.blocks > 0, "the pairs parked on their futexes");
        assert_eq!(stats.parked, 0, "nobody left parked");
        assert!(stats.threads_created >= 16);
    }
}

#[test]
fn many_multithreaded_processes_share_the_vcpus() {
    let s = scheduler(4, 20_000);
    let t0 = Instant::now();
    let mut runs = Vec::new();
    for i in 0..12 {
        let (name, args): (&str, &[&str]) = match i % 3 {
            0 => ("threads_prodcons", &["2", "2", "500", "4"]),
            1 => ("threads_mutex", &["4", "300"]),
            _ => ("threads_barrier", &["4", "30"]),
        };
        let (c, out) = config(name, args);
        runs.push((
            s.submit_coroutine(Coroutine::new(guest(name), c, interp())).unwrap(),
            out,
            name,
        ));
    }
    assert!(s.wait_all(Some(BOUND)), "all processes end");
    for (id, out, name) in runs {
        let r = s.wait(id, None).unwrap();
        assert_eq!(
            r.exit,
            GuestExit::Exited(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.contents())
        );
    }
    let stats = s.get_stats();
    assert_eq!((stats.spawned, stats.exited, stats.live, stats.parked), (12, 12, 0, 0));
    assert!(stats.threads_created >= 12 * 2);
    assert!(t0.elapsed() < BOUND);
}

#[test]
fn a_thread_that_never_makes_a_system_call_cannot_starve_the_others_on_one_vcpu() {
    // threads_spin: main spins on a flag another thread sets, and two threads loop forever
    // while main exits; only preemption by instruction budget lets it finish on one vCPU.
    let s = scheduler(1, 5_000);
    let (exit, out) = run(&s, "threads_spin", &[]);
    assert_eq!(exit, GuestExit::Exited(0), "{out}");
    assert!(s.get_stats().slices > 10, "the spinning threads were preempted");
}

#[test]
fn killing_a_process_with_parked_threads_frees_them() {
    let s = scheduler(2, 10_000);
    // Sleeps of 300 ms, six in a row, while other threads compute and wait (threads_sleep's
    // argument is the length of each sleep in milliseconds, at most 300).
    let (c, _out) = config("threads_sleep", &["300"]);
    let id = s.submit_coroutine(Coroutine::new(guest("threads_sleep"), c, interp())).unwrap();
    let t0 = Instant::now();
    while s.get_stats().parked == 0 {
        assert!(s.wait(id, Some(Duration::ZERO)).is_none(), "the guest ended before sleeping");
        assert!(t0.elapsed() < BOUND, "the guest never went to sleep");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(s.kill(id));
    let r = s.wait(id, Some(Duration::from_secs(10))).expect("a kill ends the process");
    assert_eq!(r.exit, GuestExit::Killed);
    let t1 = Instant::now();
    while s.get_stats().parked != 0 {
        assert!(t1.elapsed() < Duration::from_secs(10), "parked threads came back");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(s.get_stats().live, 0);
}

#[test]
fn dropping_a_scheduler_with_parked_threads_frees_their_process() {
    // Every thread parked: four on a condition variable, main in a 60 s sleep. Nothing is
    // queued, so only cancelling the waits can free the process.
    let s = scheduler(1, 10_000);
    let (c, out) = config("threads_idle", &["4", "60000"]);
    let id = s.submit_coroutine(Coroutine::new(guest("threads_idle"), c, interp())).unwrap();
    let t0 = Instant::now();
    while s.get_stats().parked < 5 {
        assert!(s.wait(id, Some(Duration::ZERO)).is_none(), "the guest ended before parking");
        assert!(t0.elapsed() < BOUND, "the guest's threads never all parked");
        std::thread::sleep(Duration::from_millis(2));
    }
    // The capture buffer is shared with the process: once the process is freed, only this
    // test holds it.
    drop(s);
    let t1 = Instant::now();
    while out.handles() > 1 {
        assert!(t1.elapsed() < Duration::from_secs(10), "the process outlived its scheduler");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn exit_while_other_threads_are_blocked_ends_the_process_with_its_status() {
    let s = scheduler(2, 10_000);
    let (exit, out) = run(&s, "threads_exit", &["exit3"]);
    assert_eq!(exit, GuestExit::Exited(3), "{out}");
    let (exit, out) = run(&s, "threads_exit", &["main-exit"]);
    assert_eq!(exit, GuestExit::Exited(0), "the last thread's exit ends the process\n{out}");
    assert_eq!(s.get_stats().parked, 0);
}

#[test]
fn thousands_of_short_lived_threads() {
    let s = scheduler(2, 50_000);
    let (exit, out) = run(&s, "threads_many", &["3000"]);
    assert_eq!(exit, GuestExit::Exited(0), "{out}");
    assert!(s.get_stats().threads_created >= 3000);
}

#[test]
fn an_instruction_limit_stops_every_thread_of_a_process() {
    let s = scheduler(2, 1_000);
    let (c, _out) = config("threads_spin", &[]);
    let co = Coroutine::new(guest("threads_spin"), c, interp());
    co.set_instruction_limit(Some(200_000));
    let id = s.submit_coroutine(co).unwrap();
    let r = s.wait(id, Some(BOUND)).unwrap();
    assert_eq!(r.exit, GuestExit::InstructionLimit(200_000));
    assert!(
        r.instructions <= 200_000 + 2 * 1_000,
        "threads on other vCPUs overrun by at most a slice"
    );
}
