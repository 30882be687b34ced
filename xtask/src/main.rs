//! Project automation for vm-executors, run as `cargo xtask <command>`.
//!
//! This file is only a dispatcher: each command lives in its own module.
//!
//! | command  | module          | what it does                                        |
//! |----------|-----------------|-----------------------------------------------------|
//! | `guests` | [`guests`]      | build guest programs, generate/verify ground truth  |
//! | `ci`     | [`ci`]          | the full check suite run by CI                      |
//! | `bench`  | [`mod@bench`]   | benchmarks: emulator vs. qemu vs. native            |
//! | `bench-ipg` | [`bench_ipg`] | host instructions per guest instruction (callgrind) |
//! | `bench-real` | [`bench_real`] | busybox and Go programs vs qemu-riscv64 |
//! | `bench-cluster` | [`bench_cluster`] | distributed tasks/s, latency, failover time  |
//! | `bench-sched` | [`bench_sched`] | scheduler: yield vs tokio, 10k threads vs qemu, memory |
//! | `bench-procs` | [`bench_procs`] | fork/exec/wait, signals, busybox pipelines vs qemu |
//! | `bench-events` | [`bench_events`] | event loops: epoll ping-pong between threads vs qemu |
//! | `fuzz`   | [`fuzz`]        | long randomized JIT-vs-interpreter soak             |
//! | `rootfs` | [`debian`]      | a riscv64 root from Debian trixie's packages        |
//! | `bench-rootfs` | [`bench_rootfs`] | Debian programs from a root vs qemu -L      |
//!
//! [`report`] holds what the `bench*` commands share.
//!
//! To add a command: create `src/<name>.rs` with a `pub fn run(args: &[String]) ->
//! anyhow::Result<()>`, declare the module below, and add an arm to
//! [`dispatch`] plus a line to [`USAGE`].

use std::path::PathBuf;
use std::process::ExitCode;

mod guests;

mod bench;
mod bench_cluster;
mod bench_events;
mod bench_ipg;
mod bench_procs;
mod bench_real;
mod bench_rootfs;
mod bench_sched;
mod ci;
mod debian;
mod fuzz;
mod report;

const USAGE: &str = "\
usage: cargo xtask <command> [args...]

commands:
  guests [build] [--check] [NAME...]
                      rebuild guest programs from guests/src into guests/bin
                      (--check: build into a temporary directory and compare
                      with the committed binaries instead of replacing them)
  guests truth [--check] [--tag TAG] [CASE...]
                      run the cases of guests/cases.txt under qemu-riscv64 and
                      write the ground truth into guests/expected/
                      (--check: compare with the stored ground truth instead)
  guests list         print the cases of guests/cases.txt as parsed
  ci                  fmt, clippy -D warnings, all tests, docs -D warnings,
                      and the guest rebuild check when the cross compiler exists
  bench [--runs N] [--quick] [--engines interp,jit,hybrid] [BENCH...]
                      run the compute suite under qemu-riscv64, every vmx engine
                      and natively; write the ratios to docs/benchmarks.md
  bench-ipg           host instructions per guest instruction (callgrind) for the
                      integer kernels under qemu, every engine and natively
  bench-real [--runs N]
                      busybox sha256sum/gzip -9/sort (Debian busybox-static,
                      fetched into the vmx cache) under qemu and vmx jit/hybrid
  bench-cluster [--tasks N] [--runs N] [--quick]
                      tiny guest tasks through a coordinator and 2 workers on
                      loopback: tasks/s, latency, failover; to docs/benchmarks.md
  bench-sched [--runs N]
  bench-procs [--runs N] [--busybox-root DIR]
                      guest sched_yield round trip vs tokio, spawn/join 10,000
                      guest threads vs qemu-riscv64, memory per idle guest
                      thread, batch vs sequential; to docs/benchmarks.md
  bench-events [--runs N]
                      epoll ping-pong over pipes between two guest threads vs
                      qemu-riscv64; to docs/benchmarks.md
  fuzz [--cases N] [--seed S]
                      soak the randomized JIT-vs-interpreter differential test
                      (default 200000 programs; CI runs 10000)
  rootfs [--refresh] DIR [PACKAGE...]
                      build a riscv64 root in DIR from Debian trixie's packages
                      and their dependencies (private apt configuration; .debs
                      cached in ~/.cache/vmx); default package: libc6
  bench-rootfs [--runs N] [--startup-runs N] [--engines interp,jit,hybrid]
                      Debian riscv64 programs from a root (python3 start-up,
                      /usr/bin/true, Python loop, Lua fib(30), SQLite inserts,
                      xz -9 of 20 MB) under qemu-riscv64 -L and every vmx
                      engine; to docs/benchmarks.md
  help                this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> anyhow::Result<()> {
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        anyhow::bail!("no command given");
    };
    match cmd.as_str() {
        "guests" => guests::run(rest),
        "ci" => ci::run(rest),
        "bench" => bench::run(rest),
        "bench-ipg" => bench_ipg::run(rest),
        "bench-real" => bench_real::run(rest),
        "bench-cluster" => bench_cluster::run(rest),
        "bench-sched" => bench_sched::run(rest),
        "bench-procs" => bench_procs::run(rest),
        "bench-events" => bench_events::run(rest),
        "fuzz" => fuzz::run(rest),
        "rootfs" => debian::run(rest),
        "bench-rootfs" => bench_rootfs::run(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("{USAGE}");
            anyhow::bail!("unknown command `{other}`")
        }
    }
}

/// The repository root (the parent of the `xtask` crate directory).
pub(crate) fn repo_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(PathBuf::from).unwrap_or(manifest_dir)
}
