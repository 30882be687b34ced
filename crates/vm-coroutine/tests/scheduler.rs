//! The scheduler on vCPU threads and driven by hand: completion, fairness under preemption,
//! killing, work stealing, wake-ups, queue order, and error paths.
#![cfg(not(loom))]

mod common;

use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vm_coroutine::{
    Coroutine, CoroutineState, GuestExit, Scheduler, SchedulerConfig, SliceOutcome, SubmitError,
    VCPUState,
};
use vm_exec_core::exec::signal;
use vm_exec_core::loader;
use vm_exec_core::process::ProcessConfig;

const LONG: Duration = Duration::from_secs(60);

fn config(vcpus: usize, time_slice: u64) -> SchedulerConfig {
    SchedulerConfig { vcpus, time_slice, ..Default::default() }
}

#[test]
fn two_hundred_hellos_exit_zero_with_the_right_output_on_1_2_and_4_vcpus() {
    let program = hello();
    let expected = hello_expected();
    for n in [1, 2, 4] {
        let scheduler = Scheduler::new(n);
        let mut outputs = Vec::new();
        for _ in 0..200 {
            let (config, out) = hello_config();
            let id = scheduler
                .submit_coroutine(scheduler.create_coroutine(program.clone(), config, interp()))
                .unwrap();
            outputs.push((id, out));
        }
        let stats_before = scheduler.get_stats();
        assert_eq!((stats_before.spawned, stats_before.live), (200, 200));
        scheduler.start().unwrap();
        assert!(scheduler.wait_all(Some(LONG)), "N={n}: not all hellos finished");
        let stats = scheduler.get_stats();
        let results = scheduler.shutdown();
        assert_eq!(results.len(), 200);
        for r in &results {
            assert_eq!(r.exit, GuestExit::Exited(0), "N={n}: {r:?}");
            assert!(r.instructions > 0);
        }
        for (id, out) in outputs {
            assert_eq!(out.contents(), expected, "N={n}: stdout of {id}");
        }
        assert_eq!((stats.spawned, stats.exited, stats.killed, stats.live), (200, 200, 0, 0));
        assert_eq!(stats.vcpus.len(), n);
        assert_eq!(stats.vcpus.iter().map(|v| v.finished).sum::<u64>(), 200);
        assert_eq!(stats.instructions, results.iter().map(|r| r.instructions).sum::<u64>());
        assert!(stats.load_imbalance >= 0.0 && stats.load_imbalance <= (n - 1) as f64 + 1e-9);
    }
}

/// With one vCPU and a guest that never makes a system call submitted first, the other guests
/// still finish (preemption by instruction budget); then the spinner is killed.
#[test]
fn a_spinning_guest_does_not_starve_others_and_can_be_killed() {
    for (n, spinners) in [(1, 1), (2, 3)] {
        let scheduler = Scheduler::with_config(config(n, 10_000));
        let spin_ids: Vec<_> = (0..spinners)
            .map(|_| {
                let c = scheduler.create_coroutine(spin_program(), tiny_config(), interp());
                scheduler.submit_coroutine(c).unwrap()
            })
            .collect();
        scheduler.start().unwrap();
        // Let the spinners get going before the others arrive.
        std::thread::sleep(Duration::from_millis(20));
        let mut normal = Vec::new();
        for i in 0..20 {
            let c = if i % 2 == 0 {
                let (config, _) = hello_config();
                scheduler.create_coroutine(hello(), config, interp())
            } else {
                scheduler.create_coroutine(loop_program(16, 0), tiny_config(), interp())
            };
            normal.push(scheduler.submit_coroutine(c).unwrap());
        }
        for id in &normal {
            let r = scheduler.wait(*id, Some(LONG)).expect("a normal guest was starved");
            assert_eq!(r.exit, GuestExit::Exited(0));
        }
        for id in &spin_ids {
            assert!(
                matches!(
                    scheduler.coroutine_state(*id),
                    Some(CoroutineState::Ready | CoroutineState::Running { .. })
                ),
                "the spinner is still alive"
            );
            assert!(scheduler.kill(*id));
        }
        for id in &spin_ids {
            let r = scheduler.wait(*id, Some(LONG)).expect("killed spinner ends");
            assert_eq!(r.exit, GuestExit::Killed);
            assert_eq!(r.exit.shell_status(), 137);
            assert!(r.instructions >= 10_000 && r.slices >= 2, "{r:?}");
            assert!(!scheduler.kill(*id), "already dead");
        }
        let stats = scheduler.get_stats();
        assert_eq!(stats.killed, spinners as u64);
        assert!(stats.context_switches > 20, "{stats:?}");
        let results = scheduler.run_to_completion().unwrap();
        assert_eq!(results.len(), spinners + 20);
    }
}

#[test]
fn work_is_stolen_when_everything_is_submitted_to_one_vcpu() {
    for n in [2, 4] {
        let scheduler = Scheduler::with_config(config(n, 20_000));
        for _ in 0..48 {
            // 4096 * 24 iterations of 2 instructions: about 10 slices each.
            let c = scheduler.create_coroutine(loop_program(24, 0), tiny_config(), interp());
            scheduler.submit_local(0, c).unwrap();
        }
        assert_eq!(scheduler.vcpu(0).unwrap().queue_length(), 48);
        scheduler.start().unwrap();
        assert!(scheduler.wait_all(Some(LONG)));
        let stats = scheduler.get_stats();
        let results = scheduler.shutdown();
        assert!(results.iter().all(|r| r.exit == GuestExit::Exited(0)));
        let thieves: u64 = stats.vcpus[1..].iter().map(|v| v.steals).sum();
        assert!(thieves > 0, "N={n}: no vCPU stole from vCPU 0: {stats:#?}");
        assert!(stats.vcpus[1..].iter().map(|v| v.stolen).sum::<u64>() >= thieves);
        assert!(stats.vcpus[1..].iter().any(|v| v.finished > 0));
        assert!(stats.vcpus.iter().all(|v| v.state != VCPUState::Idle), "threads drive them");
    }
}

/// Submissions arriving just as vCPUs go idle: every one must be picked up. A lost wake-up
/// leaves a coroutine queued while all vCPUs sleep, and `wait` times out.
#[test]
fn no_wake_up_is_lost_when_submitting_while_vcpus_park() {
    for n in [1, 2, 4] {
        let scheduler = Scheduler::with_config(SchedulerConfig {
            vcpus: n,
            spin_rounds: 1,
            ..Default::default()
        });
        scheduler.start().unwrap();
        let program = exit_program(7);
        let cfg = tiny_config();
        let t0 = Instant::now();
        for round in 0..300u32 {
            let ids: Vec<_> = (0..1 + round % 3)
                .map(|_| {
                    let c = scheduler.create_coroutine(program.clone(), cfg.clone(), interp());
                    match round % 3 {
                        0 => scheduler.submit_coroutine(c),
                        1 => scheduler.submit_local(round as usize % n, c),
                        _ => scheduler.submit_next(round as usize % n, c),
                    }
                    .unwrap()
                })
                .collect();
            for id in ids {
                let r = scheduler
                    .wait(id, Some(Duration::from_secs(10)))
                    .unwrap_or_else(|| panic!("N={n} round {round}: lost wake-up"));
                assert_eq!(r.exit, GuestExit::Exited(7));
            }
            // Vary the gap so submissions meet vCPUs searching, spinning and parked.
            match round % 4 {
                0 => {}
                1 => std::thread::yield_now(),
                2 => std::thread::sleep(Duration::from_micros(50)),
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(30));
        let stats = scheduler.get_stats();
        assert!(stats.vcpus.iter().map(|v| v.parks).sum::<u64>() > 0, "vCPUs never parked");
        assert_eq!(scheduler.shutdown().len(), 600);
    }
}

#[test]
fn callers_can_drive_vcpus_themselves() {
    let scheduler = Scheduler::with_config(config(2, 1_000));
    let mut ids = Vec::new();
    for k in 1..=3 {
        let c = scheduler.create_coroutine(loop_program(k, k as i32), tiny_config(), interp());
        ids.push(scheduler.submit_coroutine(c).unwrap());
    }
    assert_eq!(scheduler.get_stats().global_queue_length, 3);
    let mut finished = Vec::new();
    let mut turns = 0;
    while finished.len() < 3 {
        turns += 1;
        assert!(turns < 100_000);
        let vcpu = turns % 2;
        let Some(c) = scheduler.next_coroutine(vcpu) else { continue };
        assert_eq!(scheduler.coroutine_state(c.id()), Some(CoroutineState::Ready));
        match scheduler.run_slice(vcpu, c).unwrap() {
            SliceOutcome::Preempted(id) => assert!(ids.contains(&id)),
            SliceOutcome::Finished(r) => finished.push(r),
            other => panic!("single-threaded guests only run or finish: {other:?}"),
        }
    }
    assert!(scheduler.next_coroutine(0).is_none());
    assert!(scheduler.run_once(1).is_none());
    for r in &finished {
        let k = ids.iter().position(|id| *id == r.id).unwrap() as u64 + 1;
        assert_eq!(r.exit, GuestExit::Exited(k as i32));
        assert_eq!(r.instructions, 1 + 2 * 4096 * k + 3);
        assert_eq!(r.slices, r.instructions.div_ceil(1_000));
        assert_eq!(scheduler.coroutine_state(r.id), Some(CoroutineState::Finished(r.exit.clone())));
    }
    let stats = scheduler.get_stats();
    assert_eq!(stats.slices, finished.iter().map(|r| r.slices).sum::<u64>());
    assert!(stats.vcpus.iter().all(|v| v.state == VCPUState::Idle && v.slices > 0));
    assert_eq!(scheduler.take_results().len(), 3);
    assert!(scheduler.take_results().is_empty());
    assert_eq!(scheduler.coroutine_state(ids[0]), None, "taken results are forgotten");
}

#[test]
fn the_global_queue_is_looked_at_every_61st_pick() {
    let scheduler = Scheduler::with_config(config(1, 100));
    for _ in 0..2 {
        scheduler
            .submit_local(0, scheduler.create_coroutine(spin_program(), tiny_config(), interp()))
            .unwrap();
    }
    let outsider = scheduler
        .submit_coroutine(scheduler.create_coroutine(exit_program(0), tiny_config(), interp()))
        .unwrap();
    let mut picks = 0;
    loop {
        picks += 1;
        match scheduler.run_once(0).unwrap() {
            SliceOutcome::Finished(r) => {
                assert_eq!(r.id, outsider);
                break;
            }
            SliceOutcome::Preempted(_) => assert!(picks < 61, "global queue starved"),
            other => panic!("single-threaded guests only run or finish: {other:?}"),
        }
    }
    assert_eq!(picks, 61, "the local queue is never empty, so only the 61st pick looks globally");
    assert_eq!(scheduler.kill_all(), 2);
    assert!(
        scheduler.next_coroutine(0).is_none(),
        "killed coroutines are finished, not handed out"
    );
    assert_eq!(scheduler.get_stats().killed, 2);
}

#[test]
fn the_next_to_run_slot_goes_first_without_starving_the_local_queue() {
    let scheduler = Scheduler::with_config(config(1, 100));
    let make = || scheduler.create_coroutine(spin_program(), tiny_config(), interp());
    let a = scheduler.submit_local(0, make()).unwrap();
    let b = scheduler.submit_next(0, make()).unwrap();
    assert_eq!(scheduler.vcpu(0).unwrap().queue_length(), 2);
    let c = scheduler.next_coroutine(0).unwrap();
    assert_eq!(c.id(), b, "the next-to-run slot first");
    // Put it back in the slot, displacing nothing; then displace it with a newcomer.
    scheduler.submit_next(0, c).unwrap();
    let d = scheduler.submit_next(0, make()).unwrap();
    let order: Vec<_> = (0..3)
        .map(|_| {
            let c = scheduler.next_coroutine(0).unwrap();
            let id = c.id();
            scheduler.submit_local(0, c).unwrap();
            id
        })
        .collect();
    assert_eq!(order, vec![d, a, b], "a displaced coroutine goes to the back of the local queue");

    // A coroutine that keeps re-entering the slot runs at most MAX_NEXT_STREAK times in a row
    // while the local queue waits.
    let mut streak = 0;
    let mut other_ran = false;
    for _ in 0..10 {
        let c = scheduler.next_coroutine(0).unwrap();
        if c.id() == d {
            streak += 1;
        } else {
            other_ran = true;
            scheduler.submit_local(0, c).unwrap();
            break;
        }
        scheduler.submit_next(0, c).unwrap();
    }
    assert!(other_ran && streak <= vm_coroutine::scheduler::MAX_NEXT_STREAK as usize + 1);
    assert_eq!(scheduler.shutdown().len(), 3);
}

#[test]
fn killing_a_queued_coroutine_and_dropping_a_taken_one() {
    let scheduler = Scheduler::new(1);
    let spinner = scheduler
        .submit_coroutine(scheduler.create_coroutine(spin_program(), tiny_config(), interp()))
        .unwrap();
    assert!(scheduler.kill(spinner));
    assert!(scheduler.next_coroutine(0).is_none());
    let r = scheduler.wait(spinner, Some(Duration::ZERO)).unwrap();
    assert_eq!((r.exit, r.instructions), (GuestExit::Killed, 0));

    let other = scheduler
        .submit_coroutine(scheduler.create_coroutine(spin_program(), tiny_config(), interp()))
        .unwrap();
    let taken = scheduler.next_coroutine(0).unwrap();
    assert_eq!(scheduler.live_coroutines(), 1);
    drop(taken);
    assert!(scheduler.wait_all(Some(Duration::ZERO)), "a dropped coroutine is not waited for");
    assert_eq!(scheduler.wait(other, None).unwrap().exit, GuestExit::Killed);

    // A kill while the caller holds the coroutine ends it at its next slice.
    let third = scheduler
        .submit_coroutine(scheduler.create_coroutine(spin_program(), tiny_config(), interp()))
        .unwrap();
    let held = scheduler.next_coroutine(0).unwrap();
    assert!(scheduler.kill(third));
    match scheduler.run_slice(0, held).unwrap() {
        SliceOutcome::Finished(r) => assert_eq!((r.exit, r.slices), (GuestExit::Killed, 0)),
        other => panic!("{other:?}"),
    }
    let results = scheduler.run_to_completion().unwrap();
    assert_eq!(results.len(), 3);
}

#[test]
fn faults_load_failures_and_exit_codes_are_outcomes() {
    let scheduler = Scheduler::new(2);
    let segv = scheduler
        .submit_coroutine(scheduler.create_coroutine(segv_program(), tiny_config(), interp()))
        .unwrap();
    let too_small = Arc::new(ProcessConfig { memory_size: 1 << 16, ..(*tiny_config()).clone() });
    let unloadable = scheduler
        .submit_coroutine(scheduler.create_coroutine(exit_program(0), too_small, interp()))
        .unwrap();
    let three = scheduler
        .submit_coroutine(scheduler.create_coroutine(exit_program(3), tiny_config(), interp()))
        .unwrap();
    let results = scheduler.run_to_completion().unwrap();
    let get = |id| results.iter().find(|r| r.id == id).unwrap().exit.clone();
    match get(segv) {
        GuestExit::Signaled(s) => assert_eq!(s.signo, signal::SIGSEGV),
        e => panic!("{e:?}"),
    }
    assert!(matches!(get(unloadable), GuestExit::LoadFailed(_)));
    assert_eq!(get(unloadable).shell_status(), 127);
    assert_eq!(get(three), GuestExit::Exited(3));
    assert_eq!(get(segv).shell_status(), 139);
}

#[test]
fn submit_errors_give_the_coroutine_back() {
    let a = Scheduler::new(1);
    let b = Scheduler::new(1);
    let c = a.create_coroutine(exit_program(0), tiny_config(), interp());
    let id = c.id();
    match a.submit_local(5, c) {
        Err(SubmitError::NoSuchVcpu { vcpu: 5, coroutine }) => {
            a.submit_coroutine(coroutine).unwrap()
        }
        other => panic!("{other:?}"),
    };
    let taken = a.next_coroutine(0).unwrap();
    let back = match b.submit_coroutine(taken) {
        Err(e @ SubmitError::Foreign(_)) => e.into_coroutine(),
        other => panic!("{other:?}"),
    };
    assert_eq!(back.id(), id);
    assert!(
        matches!(a.run_slice(0, back).unwrap(), SliceOutcome::Finished(r) if r.exit == GuestExit::Exited(0))
    );
    assert!(a.next_coroutine(3).is_none());
}

#[test]
fn prebuilt_processes_and_finished_coroutines_can_be_submitted() {
    let (process, thread) = loader::load(loop_program(1, 9), tiny_config(), 4242).expect("loads");
    let scheduler = Scheduler::new(2);
    let c = scheduler.create_coroutine_from(process, thread, interp());
    assert!(c.is_loaded());
    assert_eq!(c.pid(), 4242);
    let prebuilt = scheduler.submit_coroutine(c).unwrap();

    let mut done = Coroutine::new(exit_program(5), tiny_config(), interp());
    assert_eq!(done.run_to_end(10), GuestExit::Exited(5));
    assert!(!done.is_loaded(), "a finished coroutine releases its process");
    assert!(done.engine_stats().instructions == 3);
    let finished = scheduler.submit_coroutine(done).unwrap();
    assert_eq!(scheduler.wait(finished, Some(Duration::ZERO)).unwrap().exit, GuestExit::Exited(5));

    let results = scheduler.run_to_completion().unwrap();
    let r = results.iter().find(|r| r.id == prebuilt).unwrap();
    assert_eq!((r.exit.clone(), r.pid), (GuestExit::Exited(9), 4242));
}

/// A caller runs a slice on a vCPU whose thread is parked: the preempted coroutine goes to
/// that vCPU's queue, and a vCPU thread must be woken to finish it.
#[test]
fn a_caller_slice_on_a_parked_vcpu_wakes_a_thread() {
    let scheduler = Scheduler::with_config(config(2, 1_000));
    scheduler.start().unwrap();
    let t0 = Instant::now();
    while !scheduler.vcpus().iter().all(|v| v.state() == VCPUState::Parked) {
        assert!(t0.elapsed() < LONG, "vCPU threads never parked");
        std::thread::sleep(Duration::from_millis(1));
    }
    let c = scheduler.create_coroutine(loop_program(2, 4), tiny_config(), interp());
    let id = match scheduler.run_slice(1, c).unwrap() {
        SliceOutcome::Preempted(id) => id,
        other => panic!("{other:?}"),
    };
    let r = scheduler.wait(id, Some(Duration::from_secs(10))).expect("nobody woke up");
    assert_eq!(r.exit, GuestExit::Exited(4));
    assert!(scheduler.get_stats().vcpus.iter().map(|v| v.parks).sum::<u64>() >= 2);
}

/// An engine that panics on its second slice.
struct Faulty {
    inner: vm_exec_interp::Interpreter,
    calls: u32,
}

impl vm_exec_core::exec::Executor for Faulty {
    fn name(&self) -> &'static str {
        "faulty"
    }
    fn run(
        &mut self,
        thread: &mut vm_exec_core::cpu::GuestThread,
        process: &vm_exec_core::process::Process,
        fuel: u64,
    ) -> vm_exec_core::exec::RunResult {
        self.calls += 1;
        assert!(self.calls < 2, "engine bug on purpose");
        self.inner.run(thread, process, fuel)
    }
    fn stats(&self) -> vm_exec_core::exec::ExecutionStats {
        self.inner.stats()
    }
}

#[test]
fn an_engine_panic_ends_its_coroutine_not_the_vcpu() {
    let scheduler = Scheduler::with_config(config(1, 1_000));
    let faulty = Coroutine::new(
        loop_program(4, 0),
        tiny_config(),
        Arc::new(|| Box::new(Faulty { inner: vm_exec_interp::Interpreter::new(), calls: 0 })),
    );
    let faulty = scheduler.submit_coroutine(faulty).unwrap();
    let fine = scheduler
        .submit_coroutine(Coroutine::new(loop_program(4, 0), tiny_config(), interp()))
        .unwrap();
    let results = scheduler.run_to_completion().unwrap();
    let get = |id| results.iter().find(|r| r.id == id).unwrap().clone();
    assert!(
        matches!(get(faulty).exit, GuestExit::EnginePanicked(ref m) if m.contains("on purpose"))
    );
    assert_eq!(get(faulty).exit.shell_status(), 70);
    assert_eq!(get(fine).exit, GuestExit::Exited(0));
}
