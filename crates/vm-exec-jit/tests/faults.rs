//! Guest faults at every kind of access give the same signal, pc and fault address on every
//! engine, and the pc qemu-riscv64 reports (recorded in `guests/expected/fault_kinds.qemu-pc`
//! by `guests/tools/record_fault_pcs.sh`); the fault address is fixed by the program
//! (`guests/src/fault_kinds.c`). In translated code these accesses fault on the host (every
//! guest page has its real host protection) and reach the guest through the fault handler.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use vm_exec_core::elf::Program;
use vm_exec_core::exec::{signal, Executor, GuestExit, GuestSignal, StopReason};
use vm_exec_core::loader;
use vm_exec_core::process::{CaptureBuffer, ProcessConfig, Stdio};
use vm_exec_interp::Interpreter;
use vm_exec_jit::{HybridExecutor, JitConfig, JitExecutor};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn run(mode: &str, engine: &mut dyn Executor) -> (GuestSignal, Vec<u8>) {
    let root = repo_root();
    let bytes = std::fs::read(root.join("guests/bin/fault_kinds")).expect("guest binary");
    let program = Arc::new(Program::parse(bytes).expect("guest parses"));
    let stdout = CaptureBuffer::with_limit(1 << 20);
    let config = ProcessConfig {
        args: vec![b"fault_kinds".to_vec(), mode.as_bytes().to_vec()],
        stdout: Stdio::Capture(stdout.clone()),
        random_seed: Some(1),
        ..Default::default()
    };
    let (process, mut thread) = loader::load(program, Arc::new(config), 1).expect("loads");
    loop {
        match engine.run(&mut thread, &process, 1 << 24).stop {
            StopReason::Preempted => continue,
            StopReason::Finished(GuestExit::Signaled(s)) => return (s, stdout.contents()),
            other => panic!("{mode}: expected a fault, got {other:?}"),
        }
    }
}

#[test]
fn every_access_kind_faults_like_qemu_on_every_engine() {
    let root = repo_root();
    let pcs = std::fs::read_to_string(root.join("guests/expected/fault_kinds.qemu-pc")).unwrap();
    const A: u64 = 0x700_0000;
    const B: u64 = A + 0x1000;
    const C: u64 = A + 0x2000;
    let addr_of = |mode: &str| match mode {
        "load" | "store" | "straddle" => C,
        "rostore" => B + 8,
        "amo" => C + 16,
        "amoro" => B + 24,
        "fld" => C + 32,
        "fsd" => B + 40,
        "lbu" => C + 5,
        "straddlest" => C - 4,
        "straddlewr" => B,
        other => panic!("unknown mode {other}"),
    };
    type Make = fn() -> Box<dyn Executor>;
    let engines: [(&str, Make); 4] = [
        ("interp", || Box::new(Interpreter::new())),
        ("jit", || Box::new(JitExecutor::new())),
        ("jit-nochain", || {
            Box::new(JitExecutor::with_config(JitConfig { chaining: false, ..Default::default() }))
        }),
        ("hybrid", || Box::new(HybridExecutor::with_threshold(1))),
    ];
    let mut n = 0;
    for line in pcs.lines() {
        let (mode, pc) = line.split_once(' ').unwrap();
        let pc = u64::from_str_radix(pc.trim_start_matches("0x"), 16).unwrap();
        let want = GuestSignal { signo: signal::SIGSEGV, pc, addr: Some(addr_of(mode)) };
        for (name, make) in &engines {
            let (got, out) = run(mode, make().as_mut());
            assert_eq!(got, want, "{mode} on {name}");
            assert_eq!(out, format!("mode {mode}\n").into_bytes(), "{mode} on {name}");
        }
        n += 1;
    }
    assert_eq!(n, 11, "every mode has a recorded qemu pc");
}
