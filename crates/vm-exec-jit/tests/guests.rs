//! Differential test on the real guest programs: every case of `guests/cases.txt` runs
//! in-process under the interpreter (the reference engine), the JIT (chaining on and off) and
//! the hybrid engine, with captured output; stdout, stderr, exit status and the exact number
//! of retired instructions must agree, and the output must equal the stored `qemu-riscv64`
//! ground truth in `guests/expected/`.
//!
//! The guests open relative paths against the host's working directory, so this binary
//! changes it to the repository root; that is why it holds a single test.

use vm_test_support::guests::{stdin_path, Outcome};
use vm_test_support::{manifest, repo_root};

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use vm_exec_core::elf::Program;
use vm_exec_core::exec::{Executor, GuestExit, StopReason};
use vm_exec_core::loader;
use vm_exec_core::process::{CaptureBuffer, ProcessConfig, Stdio};
use vm_exec_interp::Interpreter;
use vm_exec_jit::{HybridEngine, JitConfig, JitEngine};

/// An in-process run: what qemu would show, plus the instructions retired (which every
/// engine must agree on).
#[derive(Debug, PartialEq, Eq)]
struct Run {
    outcome: Outcome,
    instructions: u64,
}

impl Run {
    fn describe(&self) -> String {
        format!("{} instructions, {}", self.instructions, self.outcome.describe())
    }
}

/// Runs `case` on `engine` in slices of `slice` instructions.
fn run_case(root: &Path, case: &manifest::Case, engine: &mut dyn Executor, slice: u64) -> Run {
    let bytes = std::fs::read(root.join("guests").join(&case.binary)).expect("guest binary");
    let program = Arc::new(Program::parse(bytes).expect("guest parses"));
    let stdout = CaptureBuffer::with_limit(64 << 20);
    let stderr = CaptureBuffer::with_limit(64 << 20);
    let stdin: Vec<u8> = match stdin_path(root, case) {
        Some(f) => std::fs::read(f).expect("stdin file"),
        None => Vec::new(),
    };
    let mut args = vec![case.argv0().into_bytes()];
    args.extend(case.args.iter().map(|a| a.clone().into_bytes()));
    let mut config = ProcessConfig {
        args,
        env: case.env.iter().map(|(k, v)| format!("{k}={v}").into_bytes()).collect(),
        exe_path: root.join(case.argv0()),
        stdin: Stdio::Bytes(stdin.into()),
        stdout: Stdio::Capture(stdout.clone()),
        stderr: Stdio::Capture(stderr.clone()),
        random_seed: Some(0x5eed),
        ..Default::default()
    };
    for d in &case.dirs {
        config.allow_dir(root.join("guests").join(d)).expect("case directory exists");
    }
    let (process, mut thread) = loader::load(program, Arc::new(config), 1000).expect("guest loads");
    let mut instructions = 0;
    let status = loop {
        let r = engine.run(&mut thread, &process, slice);
        assert!(r.retired <= slice);
        instructions += r.retired;
        match r.stop {
            StopReason::Preempted => continue,
            StopReason::Finished(GuestExit::Exited(c)) | StopReason::ThreadExited(c) => {
                break format!("exit {}", c & 0xff)
            }
            StopReason::Finished(GuestExit::Signaled(s)) => break format!("signal {}", s.signo),
            other => panic!("an unscheduled process stopped with {other:?}"),
        }
    };
    Run {
        outcome: Outcome { stdout: stdout.contents(), stderr: stderr.contents(), status },
        instructions,
    }
}

type MakeEngine = fn() -> Box<dyn Executor>;

#[test]
fn every_guest_matches_the_interpreter_and_qemu() {
    let root = repo_root();
    std::env::set_current_dir(&root).expect("chdir to the repository root");
    let cases = manifest::load(&root.join("guests/cases.txt")).expect("cases.txt parses");
    assert!(cases.len() >= 20, "the manifest lists the guest programs");
    // Multi-threaded guests need the scheduler, and their instruction counts depend on the
    // interleaving; `vm-cli`'s differential test and `vm-coroutine`'s thread tests run them.
    // Multi-threaded guests and guests that need signal delivery run under the scheduler
    // (the differential test), not in-process.
    let cases: Vec<_> =
        cases.into_iter().filter(|c| !c.has_tag("threads") && !c.has_tag("sched")).collect();
    // Every configuration runs every case, except that the variants (no chaining, fuel
    // slicing) skip the few cases past HEAVY instructions to keep the debug-build test time
    // reasonable; `jit` and `hybrid` run everything.
    const HEAVY: u64 = 300_000_000;
    let engines: Vec<(&str, MakeEngine, u64)> = vec![
        ("jit", || Box::new(JitEngine::new()), 1 << 26),
        (
            "jit-nochain",
            || {
                Box::new(JitEngine::with_config(JitConfig {
                    chaining: false,
                    ..JitConfig::default()
                }))
            },
            1 << 26,
        ),
        // Odd slices exercise the fuel paths (partial blocks, resumption) all along.
        ("jit-sliced", || Box::new(JitEngine::new()), 100_003),
        ("hybrid", || Box::new(HybridEngine::new()), 1 << 26),
        ("hybrid-sliced", || Box::new(HybridEngine::with_threshold(3)), 9_973),
    ];
    let queue = Mutex::new(cases.iter().collect::<VecDeque<_>>());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let Some(case) = queue.lock().unwrap().pop_front() else { break };
                let t0 = std::time::Instant::now();
                let reference = run_case(&root, case, &mut Interpreter::new(), 1 << 26);
                if std::env::var_os("VMX_TIMES").is_some() {
                    eprintln!("{:>24} {:>14} {:>8.3} s", case.name, "interp", t0.elapsed().as_secs_f64());
                }
                if reference.outcome != Outcome::stored(&root, case) {
                    failures.lock().unwrap().push(format!(
                        "{}: the interpreter differs from guests/expected\n{}",
                        case.name,
                        reference.describe()
                    ));
                }
                for (name, make, slice) in &engines {
                    if reference.instructions > HEAVY && !matches!(*name, "jit" | "hybrid") {
                        continue;
                    }
                    let t0 = std::time::Instant::now();
                    let ours = run_case(&root, case, make().as_mut(), *slice);
                    if std::env::var_os("VMX_TIMES").is_some() {
                        eprintln!("{:>24} {name:>14} {:>8.3} s", case.name, t0.elapsed().as_secs_f64());
                    }
                    if ours != reference {
                        failures.lock().unwrap().push(format!(
                            "{} (line {}): {name} differs from the interpreter\n=== {name}: {}\n=== interp: {}",
                            case.name,
                            case.line,
                            ours.describe(),
                            reference.describe()
                        ));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures over {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "{} cases identical under interp, jit and hybrid, and to the stored qemu output",
        cases.len()
    );
}
