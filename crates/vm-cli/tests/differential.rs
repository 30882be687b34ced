//! Differential test: every case of `guests/cases.txt` must give exactly the same stdout,
//! stderr and exit status (exit code or killing signal) under `vmx run` with every engine as
//! under `qemu-riscv64`.
//!
//! The reference is qemu run live when it is installed. Without qemu the stored ground truth
//! in `guests/expected/` (recorded from qemu by `cargo xtask guests truth`) is used and the
//! test says that qemu was skipped; with `VMX_REQUIRE_QEMU=1` (as CI sets) a missing qemu is
//! a failure instead. Both sides run the same way: from the repository root, with only the
//! case's environment, an 8 MiB stack limit and no core dumps.
//!
//! Cases tagged `exec` run other RISC-V programs with `execve`; under qemu that needs
//! qemu-riscv64 registered with binfmt_misc (`.ci/run` does it). Without it they are compared
//! with the stored ground truth, with a loud warning.
//!
//! Cases tagged `net` run with `vmx run --net` (loopback sockets).
//!
//! Cases tagged `threads` (multi-threaded guests) run under every engine with 1, 2, 4 and 8
//! vCPUs, each `VMX_THREAD_REPEATS` times (default 2), to shake out races.

use vm_test_support::guests::{stdin_path, Outcome};
use vm_test_support::{manifest, repo_root};

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Every engine `vmx run --engine` accepts.
const ENGINES: &[&str] = &["interp", "jit", "hybrid"];
/// vCPU counts a multi-threaded case runs under.
const THREAD_VCPUS: &[usize] = &[1, 2, 4, 8];

fn thread_repeats() -> usize {
    std::env::var("VMX_THREAD_REPEATS").ok().and_then(|v| v.parse().ok()).unwrap_or(2)
}

/// Runs `runner_prefix... guests/BINARY ARGS` the way the ground truth was recorded.
fn run_case(root: &Path, case: &manifest::Case, runner: &[String]) -> Outcome {
    let mut cmd = Command::new("sh");
    cmd.current_dir(root)
        .arg("-c")
        .arg("ulimit -c 0 && ulimit -s 8192 && exec env -i \"$@\"")
        .arg("sh");
    for (k, v) in &case.env {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.args(runner);
    cmd.arg(case.argv0()).args(&case.args);
    let stdin = match stdin_path(root, case) {
        Some(f) => Stdio::from(std::fs::File::open(f).unwrap()),
        None => Stdio::null(),
    };
    let out = cmd.stdin(stdin).output().expect("spawn sh");
    let status = match (out.status.code(), out.status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown".into(),
    };
    Outcome { stdout: out.stdout, stderr: out.stderr, status }
}

fn qemu_available() -> bool {
    vm_test_support::tools::installed("qemu-riscv64", "--version")
}

/// Whether the host runs RISC-V executables through qemu (binfmt_misc), which a guest
/// `execve` under the reference needs.
fn binfmt_riscv64() -> bool {
    std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-riscv64")
        .is_ok_and(|s| s.lines().next() == Some("enabled"))
}

#[test]
fn every_guest_matches_qemu() {
    let root = repo_root();
    let cases = manifest::load(&root.join("guests/cases.txt")).expect("cases.txt parses");
    assert!(cases.len() >= 20, "the manifest lists the guest programs");
    let live_qemu = qemu_available();
    if !live_qemu {
        assert!(
            std::env::var_os("VMX_REQUIRE_QEMU").is_none(),
            "VMX_REQUIRE_QEMU is set but qemu-riscv64 is not installed (apt-get install qemu-user)"
        );
        eprintln!(
            "NOTE: qemu-riscv64 is not installed: comparing with the stored qemu ground truth in \
             guests/expected/ instead of running qemu (apt-get install qemu-user to run it live)"
        );
    }
    let binfmt = binfmt_riscv64();
    if live_qemu && !binfmt {
        eprintln!(
            "WARNING: qemu-riscv64 is not registered with binfmt_misc, so a guest execve cannot \
             run under the reference: cases tagged `exec` are compared with the stored ground \
             truth in guests/expected/ instead (.ci/run registers it)"
        );
    }
    let vmx = env!("CARGO_BIN_EXE_vmx").to_string();
    let queue = Mutex::new(cases.iter().collect::<VecDeque<_>>());
    let failures = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some(case) = queue.lock().unwrap().pop_front() else { break };
                let stored = Outcome::stored(&root, case);
                let reference = if live_qemu && (binfmt || !case.has_tag("exec")) {
                    let q = run_case(&root, case, &["qemu-riscv64".to_string()]);
                    if q != stored {
                        failures.lock().unwrap().push(format!(
                            "{}: live qemu differs from guests/expected (regenerate with \
                             `cargo xtask guests truth`)\n{}",
                            case.name,
                            q.describe()
                        ));
                    }
                    q
                } else {
                    stored
                };
                // (vCPUs, repetitions): the default vCPU count once, or every count of
                // THREAD_VCPUS several times for multi-threaded guests.
                let runs: Vec<(Option<usize>, usize)> = if case.has_tag("threads") {
                    THREAD_VCPUS.iter().map(|&n| (Some(n), thread_repeats())).collect()
                } else {
                    vec![(None, 1)]
                };
                for engine in ENGINES {
                    for &(vcpus, repeats) in &runs {
                        let mut runner =
                            vec![vmx.clone(), "run".into(), "--engine".into(), engine.to_string()];
                        if let Some(n) = vcpus {
                            runner.push(format!("--vcpus={n}"));
                        }
                        for d in &case.dirs {
                            runner.push("--dir".into());
                            runner.push(format!("guests/{d}"));
                        }
                        if case.has_tag("net") {
                            runner.push("--net".into());
                        }
                        for rep in 0..repeats {
                            let ours = run_case(&root, case, &runner);
                            if ours != reference {
                                failures.lock().unwrap().push(format!(
                                    "{} (line {}): vmx --engine {engine} {} (run {}) differs from qemu\n=== vmx: {}\n=== qemu: {}",
                                    case.name,
                                    case.line,
                                    vcpus.map_or(String::new(), |n| format!("--vcpus {n}")),
                                    rep + 1,
                                    ours.describe(),
                                    reference.describe()
                                ));
                            }
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "{} cases identical to qemu-riscv64{}",
        cases.len(),
        if live_qemu { "" } else { " (stored)" }
    );
}
