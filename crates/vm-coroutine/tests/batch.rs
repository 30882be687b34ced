//! K instances of one program on N vCPUs, against the same instances run one by one.
#![cfg(not(loom))]

mod common;

use common::*;
use vm_coroutine::{run_batch, run_sequential, BatchConfig, GuestExit, OutputMode};
use vm_exec_core::process::{ProcessConfig, Stdio};

fn hello_batch(instances: usize, vcpus: usize, output: OutputMode) -> BatchConfig {
    BatchConfig {
        instances,
        vcpus,
        output,
        process: ProcessConfig {
            args: vec![b"guests/bin/hello".to_vec()],
            stdin: Stdio::Null,
            random_seed: Some(7),
            ..Default::default()
        },
        ..BatchConfig::new(interp())
    }
}

#[test]
fn a_captured_batch_matches_the_sequential_run() {
    let config = hello_batch(40, 2, OutputMode::Capture { limit: 4096 });
    let batch = run_batch(hello(), &config).unwrap();
    let seq = run_sequential(hello(), &config);
    let expected = hello_expected();
    for s in [&batch, &seq] {
        assert_eq!((s.instances, s.ok, s.failed), (40, 40, 0), "{s}");
        assert!(s.instructions_per_sec > 0.0 && s.instances_per_sec > 0.0);
        for (i, r) in s.results.iter().enumerate() {
            assert_eq!(r.index, i);
            assert_eq!(r.exit, GuestExit::Exited(0));
            assert_eq!(r.stdout.as_deref(), Some(&expected[..]));
            assert_eq!(r.stderr.as_deref(), Some(&b""[..]));
            assert_eq!(r.output_dropped, 0);
        }
    }
    // Slicing does not change what a guest does: the same instruction count per instance.
    assert_eq!(batch.total_instructions, seq.total_instructions);
    let stats = batch.stats.as_ref().unwrap();
    assert_eq!((stats.spawned, stats.exited), (40, 40));
    assert_eq!(batch.vcpus, 2);
    assert!(seq.stats.is_none());
    assert!(batch.to_string().contains("40 ok, 0 failed"));
}

#[test]
fn discarded_output_bounded_capture_and_failures() {
    let discarded = run_batch(hello(), &hello_batch(10, 2, OutputMode::Discard)).unwrap();
    assert_eq!(discarded.ok, 10);
    assert!(discarded.results.iter().all(|r| r.stdout.is_none() && r.stderr.is_none()));

    let bounded = run_batch(hello(), &hello_batch(3, 1, OutputMode::Capture { limit: 5 })).unwrap();
    for r in &bounded.results {
        assert_eq!(r.stdout.as_deref(), Some(&b"Hello"[..]));
        assert_eq!(r.output_dropped, hello_expected().len() as u64 - 5);
    }

    let config = BatchConfig {
        instances: 6,
        vcpus: 3,
        process: (*tiny_config()).clone(),
        ..BatchConfig::new(interp())
    };
    let failing = run_batch(exit_program(3), &config).unwrap();
    assert_eq!((failing.ok, failing.failed), (0, 6));
    assert!(failing.results.iter().all(|r| r.exit == GuestExit::Exited(3)));
    assert_eq!(failing.total_instructions, 6 * 3);

    let empty = run_batch(hello(), &hello_batch(0, 2, OutputMode::Discard)).unwrap();
    assert_eq!((empty.instances, empty.ok, empty.failed), (0, 0, 0));
}

#[test]
fn a_batch_can_use_another_engine() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let made = Arc::new(AtomicUsize::new(0));
    let counter = made.clone();
    let config = BatchConfig {
        instances: 5,
        vcpus: 2,
        process: (*tiny_config()).clone(),
        engine: Arc::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            Box::new(vm_exec_interp::Interpreter::new())
        }),
        ..BatchConfig::new(interp())
    };
    let s = run_batch(loop_program(1, 0), &config).unwrap();
    assert_eq!(s.ok, 5);
    assert_eq!(made.load(Ordering::Relaxed), 5, "one engine per instance, made at load time");
}

/// `concurrency: Some(1)` runs the instances one at a time: eight instances of a guest whose
/// sleeper thread sleeps at least 6 x 5 ms take at least 8 x 30 ms (a lower bound, which no
/// slow machine can break); the default admits them together.
#[test]
fn concurrency_bounds_the_instances_running_at_once() {
    let program = std::sync::Arc::new(
        vm_exec_core::elf::Program::parse(
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../guests/bin/threads_sleep"))
                .unwrap(),
        )
        .unwrap(),
    );
    let config = |concurrency| BatchConfig {
        instances: 8,
        vcpus: 2,
        process: ProcessConfig {
            args: vec![b"threads_sleep".to_vec(), b"5".to_vec()],
            stdin: Stdio::Null,
            ..Default::default()
        },
        concurrency,
        ..BatchConfig::new(interp())
    };
    let one = run_batch(program.clone(), &config(Some(1))).unwrap();
    assert_eq!(one.ok, 8, "{:?}", one.results.iter().map(|r| &r.exit).collect::<Vec<_>>());
    assert!(one.wall_time >= std::time::Duration::from_millis(8 * 30), "{:?}", one.wall_time);
    let all = run_batch(program, &config(None)).unwrap();
    assert_eq!(all.ok, 8);
    assert!(vm_coroutine::batch::default_concurrency(8 << 20) >= 4);
}
