//! Throughput of K instances of one guest program on N vCPUs against the same K instances run
//! one by one on one thread, in the same run; and host memory per idle guest process.
//!
//! ```text
//! cargo run -p vm-coroutine --release --example batch_bench -- \
//!     [--program guests/bin/hello] [--instances 1000] [--vcpus 2] [--runs 5] [--idle 1000] \
//!     [--slice 100000] \
//!     [-- GUEST_ARGS...]
//! ```
//!
//! Run it from the repository root (hello's argv[0] is the path given). Each of `--runs`
//! rounds runs the sequential baseline, then the batch on 1 vCPU, then on N vCPUs; medians
//! are printed. The memory part builds `--idle` processes and reads `VmRSS` from
//! `/proc/self/status` before and after.

use std::sync::Arc;
use std::time::Duration;
use vm_coroutine::{run_batch, run_sequential, BatchConfig, BatchSummary, Coroutine, OutputMode};
use vm_exec_core::elf::Program;
use vm_exec_core::process::{ProcessConfig, Stdio};

struct Args {
    program: String,
    instances: usize,
    vcpus: usize,
    runs: usize,
    idle: usize,
    slice: u64,
    guest_args: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        program: "guests/bin/hello".into(),
        instances: 1000,
        vcpus: 2,
        runs: 5,
        idle: 1000,
        slice: vm_coroutine::scheduler::DEFAULT_TIME_SLICE,
        guest_args: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--" {
            a.guest_args = it.by_ref().collect();
            break;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || value.parse::<usize>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--program" => a.program = value.clone(),
            "--instances" => a.instances = num()?,
            "--vcpus" => a.vcpus = num()?,
            "--runs" => a.runs = num()?.max(1),
            "--idle" => a.idle = num()?,
            "--slice" => a.slice = num()?.max(1) as u64,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time of this process so far (all threads, user and system), in seconds.
fn cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn check(s: &BatchSummary, what: &str) {
    if s.failed != 0 {
        eprintln!("{what}: {} of {} instances failed", s.failed, s.instances);
        std::process::exit(1);
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("batch_bench: {e}");
            std::process::exit(2);
        }
    };
    let bytes = std::fs::read(&args.program).unwrap_or_else(|e| {
        eprintln!("batch_bench: {}: {e} (run from the repository root)", args.program);
        std::process::exit(2);
    });
    let program = Arc::new(Program::parse(bytes).expect("a valid RV64 ELF"));
    let process = ProcessConfig {
        args: std::iter::once(&args.program)
            .chain(&args.guest_args)
            .map(|a| a.clone().into_bytes())
            .collect(),
        stdin: Stdio::Null,
        ..Default::default()
    };
    let config = |vcpus| BatchConfig {
        instances: args.instances,
        vcpus,
        output: OutputMode::Discard,
        time_slice: args.slice,
        process: process.clone(),
        ..BatchConfig::new(interp())
    };

    println!(
        "{} x {} on {} vCPU(s), {} runs (medians)",
        args.instances, args.program, args.vcpus, args.runs
    );
    let (mut seq, mut one, mut many) = (Vec::new(), Vec::new(), Vec::new());
    let mut cpu = [Vec::new(), Vec::new(), Vec::new()];
    let mut last = None;
    for _ in 0..args.runs {
        let c0 = cpu_secs();
        let s = run_sequential(program.clone(), &config(1));
        check(&s, "sequential");
        seq.push(s.wall_time.as_secs_f64());
        let c1 = cpu_secs();
        let b1 = run_batch(program.clone(), &config(1)).expect("vCPU threads start");
        check(&b1, "batch N=1");
        one.push(b1.wall_time.as_secs_f64());
        let c2 = cpu_secs();
        let bn = run_batch(program.clone(), &config(args.vcpus)).expect("vCPU threads start");
        check(&bn, "batch");
        many.push(bn.wall_time.as_secs_f64());
        let c3 = cpu_secs();
        cpu[0].push(c1 - c0);
        cpu[1].push(c2 - c1);
        cpu[2].push(c3 - c2);
        last = Some((s, bn));
    }
    let [cpu_seq, cpu_one, cpu_many] = cpu.map(median);
    let (s, bn) = last.expect("at least one run");
    let per_instance = s.total_instructions / args.instances.max(1) as u64;
    let (ts, t1, tn) = (median(seq), median(one), median(many));
    let k = args.instances as f64;
    let mips = |t: f64| s.total_instructions as f64 / t / 1e6;
    println!("guest instructions per instance: {per_instance}");
    let line = |what: &str, t: f64, cpu: f64| {
        println!(
            "{what:<22} {:8.1} ms wall {:8.1} ms CPU {:8.0} instances/s {:7.1} MIPS  {:.2}x",
            t * 1e3,
            cpu * 1e3,
            k / t,
            mips(t),
            ts / t
        )
    };
    line("sequential, 1 thread", ts, cpu_seq);
    line("scheduler, 1 vCPU", t1, cpu_one);
    line(&format!("scheduler, {} vCPUs", args.vcpus), tn, cpu_many);
    print!("last batch:\n{bn}");

    if args.idle > 0 {
        memory_per_idle_process(&program, &process, args.idle);
    }
}

/// The engine of every instance: the interpreter.
fn interp() -> vm_coroutine::EngineFactory {
    Arc::new(|| Box::new(vm_exec_interp::Interpreter::new()))
}

/// RSS per process: created (lazy), loaded (never run), and suspended mid-run.
fn memory_per_idle_process(program: &Arc<Program>, process: &ProcessConfig, n: usize) {
    let config =
        Arc::new(ProcessConfig { stdout: Stdio::Null, stderr: Stdio::Null, ..process.clone() });
    std::thread::sleep(Duration::from_millis(100));
    let base = vm_rss_kib();
    let mut all: Vec<Coroutine> =
        (0..n).map(|_| Coroutine::new(program.clone(), config.clone(), interp())).collect();
    let created = vm_rss_kib();
    for c in &mut all {
        c.load().expect("loads");
    }
    let loaded = vm_rss_kib();
    let mut finished = 0;
    for c in &mut all {
        // Half of hello's 8,020 instructions: glibc start-up done in part, then suspended.
        if matches!(c.run_slice(4_000).stop, vm_coroutine::SliceEnd::Finished(_)) {
            finished += 1;
        }
    }
    let suspended = vm_rss_kib();
    let per = |kib: u64| kib as f64 / n as f64;
    println!("host memory per guest process ({n} processes, VmRSS deltas):");
    println!("  created, not loaded:  {:8.1} KiB", per(created.saturating_sub(base)));
    println!("  loaded, never run:    {:8.1} KiB", per(loaded.saturating_sub(base)));
    println!(
        "  suspended after 4,000 instructions: {:8.1} KiB ({finished} finished early)",
        per(suspended.saturating_sub(base))
    );
    drop(all);
}
