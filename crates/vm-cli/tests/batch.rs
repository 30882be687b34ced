//! `vmx batch`: many instances of a program on the coroutine scheduler.

use std::process::Command;

fn vmx(args: &[&str]) -> (i32, String) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out =
        Command::new(env!("CARGO_BIN_EXE_vmx")).args(args).current_dir(root).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_batch_of_hello_runs_every_instance_on_every_engine() {
    for engine in ["interp", "jit", "hybrid"] {
        let (code, out) = vmx(&[
            "batch",
            "--vcpus",
            "2",
            "--instances",
            "40",
            "--engine",
            engine,
            "guests/bin/hello",
        ]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("instances: 40 on 2 vCPU(s): 40 ok, 0 failed"), "{out}");
    }
}

#[test]
fn failing_instances_are_counted_and_fail_the_batch() {
    let (code, out) = vmx(&["batch", "--vcpus", "2", "--instances", "5", "guests/bin/fault_segv"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("0 ok, 5 failed"), "{out}");
}

#[test]
fn sequential_mode_is_the_baseline() {
    let (code, out) = vmx(&["batch", "--sequential", "--instances", "3", "guests/bin/hello"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 ok, 0 failed"), "{out}");
}

#[test]
fn thousands_of_processes_run_to_completion() {
    let (code, out) = vmx(&[
        "batch",
        "--vcpus",
        "2",
        "--instances",
        "3000",
        "--engine",
        "interp",
        "guests/bin/hello",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("instances: 3000 on 2 vCPU(s): 3000 ok, 0 failed"), "{out}");
}

#[test]
fn a_batch_of_multithreaded_processes() {
    // 200 processes of 4 worker threads each (plus their main threads) at once.
    let (code, out) = vmx(&[
        "batch",
        "--vcpus",
        "2",
        "--instances",
        "200",
        "--capture",
        "4096",
        "guests/bin/threads_mutex",
        "4",
        "100",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("instances: 200 on 2 vCPU(s): 200 ok, 0 failed"), "{out}");
}
