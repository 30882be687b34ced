//! Runs a guest ELF under a chosen engine and reports instructions, time and engine counters.
//!
//! ```text
//! cargo run --release -p vm-exec-jit --example run -- [--engine interp|jit|jit-nochain|hybrid]
//!     [--repeat N] [--quiet] PROGRAM [ARGS...]
//! ```
//!
//! The guest sees only the arguments (no environment); its output goes to this process's
//! stdout and stderr unless `--quiet`. With `--repeat N` the program is loaded and run N
//! times and the median time is reported.

use std::sync::Arc;
use std::time::{Duration, Instant};
use vm_exec_core::elf::Program;
use vm_exec_core::exec::{Executor, StopReason};
use vm_exec_core::loader;
use vm_exec_core::process::{ProcessConfig, Stdio};
use vm_exec_interp::Interpreter;
use vm_exec_jit::{HybridEngine, JitConfig, JitEngine};

fn engine(name: &str) -> Option<Box<dyn Executor>> {
    Some(match name {
        "interp" => Box::new(Interpreter::new()),
        "jit" => Box::new(JitEngine::new()),
        "jit-nochain" => {
            Box::new(JitEngine::with_config(JitConfig { chaining: false, ..JitConfig::default() }))
        }
        "hybrid" => Box::new(HybridEngine::new()),
        _ => return None,
    })
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let mut engine_name = "jit".to_string();
    let mut repeat = 1;
    let mut quiet = false;
    while let Some(a) = args.peek() {
        match a.as_str() {
            "--engine" => {
                args.next();
                engine_name = args.next().unwrap_or_default();
            }
            "--repeat" => {
                args.next();
                repeat = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
            }
            "--quiet" => {
                args.next();
                quiet = true;
            }
            _ => break,
        }
    }
    let guest_args: Vec<String> = args.collect();
    let Some(path) = guest_args.first() else {
        eprintln!("usage: run [--engine interp|jit|jit-nochain|hybrid] [--repeat N] [--quiet] PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        eprintln!("cannot read {path}: {e}");
        std::process::exit(2)
    });
    let program = Arc::new(Program::parse(bytes).unwrap_or_else(|e| {
        eprintln!("cannot parse {path}: {e}");
        std::process::exit(2)
    }));
    let mut times = Vec::new();
    for _ in 0..repeat {
        let Some(mut e) = engine(&engine_name) else {
            eprintln!("unknown engine {engine_name}");
            std::process::exit(2);
        };
        let config = ProcessConfig {
            args: guest_args.iter().map(|a| a.clone().into_bytes()).collect(),
            stdout: if quiet { Stdio::Null } else { Stdio::Inherit },
            stderr: if quiet { Stdio::Null } else { Stdio::Inherit },
            random_seed: Some(1),
            ..Default::default()
        };
        let (process, mut thread) = loader::load(program.clone(), Arc::new(config), 1000)
            .unwrap_or_else(|e| {
                eprintln!("cannot load {path}: {e}");
                std::process::exit(2)
            });
        let t0 = Instant::now();
        let mut instructions = 0;
        let stop = loop {
            let r = e.run(&mut thread, &process, 1 << 26);
            instructions += r.retired;
            if r.stop != StopReason::Preempted {
                break r.stop;
            }
        };
        let dt = t0.elapsed();
        times.push(dt);
        eprintln!(
            "run: {engine_name}: {stop:?}, {instructions} instructions, {:.3} s, {:.0} MIPS, {:?}",
            dt.as_secs_f64(),
            instructions as f64 / dt.as_secs_f64() / 1e6,
            e.stats()
        );
    }
    times.sort();
    let median: Duration = times[times.len() / 2];
    eprintln!("run: {engine_name}: median of {repeat}: {:.3} s", median.as_secs_f64());
}
