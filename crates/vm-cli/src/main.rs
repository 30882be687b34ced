//! `vmx`: the command-line front end of vm-executors.
//!
//! `vmx batch --vcpus N --instances K [--engine E] [--concurrency C] PROGRAM [ARGS...]` runs K
//! independent instances as guest processes on N vCPU threads, at most C at once (default
//! derived from memory), and prints a summary.
//!
//! `vmx run [--engine interp|jit|hybrid] [--vcpus N] [--stats] [--dir HOST_DIR]... [--net]
//! PROGRAM [ARGS...]` runs a statically linked RV64GC Linux program; its threads run M:N on N vCPU
//! threads of the coroutine scheduler. Standard streams and the environment pass through;
//! vmx's exit status is the guest's. On a guest's fatal signal vmx ends itself with the same
//! signal, as `qemu-riscv64` does, so a shell reports 128 + N and prints the signal's name;
//! like qemu it adds nothing to the guest's stderr unless `--stats` asks for a report (which
//! then names the signal, pc and faulting address).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use vm_executors::coroutine::{Coroutine, GuestExit, Scheduler, SchedulerConfig};
use vm_executors::{ExecutorType, ProcessConfig, StraceSink};

mod binfmt;
mod cluster;
mod guest;

use guest::GuestArgs;

#[derive(Parser)]
#[command(name = "vmx", version, about = "Run RISC-V (RV64GC) Linux programs fast")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a statically linked RV64GC Linux program.
    Run(RunArgs),
    /// Run many independent instances of a program as guest processes on N vCPU threads,
    /// then print a summary.
    Batch(BatchArgs),
    /// Register vmx with binfmt_misc for riscv64 programs, remove it, or show it.
    #[command(subcommand)]
    Binfmt(binfmt::BinfmtCommand),
    /// Run a coordinator of distributed execution.
    Coordinator(cluster::CoordinatorArgs),
    /// Run a worker node that joins a coordinator.
    Worker(cluster::WorkerArgs),
    /// Submit a guest program as a task to a coordinator.
    Submit(cluster::SubmitArgs),
    /// Show a coordinator's nodes and tasks, or one task.
    Status(cluster::StatusArgs),
    /// Cancel queued or running tasks.
    Cancel(cluster::CancelArgs),
    /// Start a local cluster: a coordinator and worker processes on loopback.
    Cluster(cluster::ClusterArgs),
    /// Load generator of `cargo xtask bench-cluster`.
    #[command(hide = true)]
    BenchClient(cluster::BenchClientArgs),
}

#[derive(clap::Args)]
struct BatchArgs {
    /// Number of vCPU worker threads.
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    vcpus: usize,
    /// Number of instances (guest processes) to run.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Execution engine: interp, jit or hybrid.
    #[arg(long, default_value_t = ExecutorType::default())]
    engine: ExecutorType,
    /// Instructions a guest runs before it goes back to a run queue.
    #[arg(long, default_value_t = vm_executors::coroutine::scheduler::DEFAULT_TIME_SLICE)]
    slice: u64,
    /// Keep up to this many bytes of each instance's stdout and stderr (default: discard).
    #[arg(long, value_name = "BYTES")]
    capture: Option<usize>,
    /// Run the instances one after another on one thread instead (the baseline).
    #[arg(long)]
    sequential: bool,
    /// Most instances running at once (default: derived from the host's available memory
    /// and --memory).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Guest address-space size in MiB.
    #[arg(long, default_value_t = 4096, value_name = "MIB")]
    memory: u64,
    /// The program and the arguments passed to every instance.
    #[command(flatten)]
    guest: GuestArgs,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Execution engine: interp, jit or hybrid (interprets cold code, translates hot code).
    #[arg(long, default_value_t = ExecutorType::default())]
    engine: ExecutorType,
    /// Number of vCPU worker threads the guest's threads run on.
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    vcpus: usize,
    /// Print instructions retired, blocks, time, MIPS and scheduler figures to stderr when the
    /// guest ends.
    #[arg(long)]
    stats: bool,
    /// Let the guest open files below this host directory (repeatable). Off by default.
    #[arg(long = "dir", value_name = "HOST_DIR")]
    dirs: Vec<PathBuf>,
    /// Let the guest use the host's network (AF_INET/AF_INET6 sockets). Off by default:
    /// without it such sockets fail with EACCES (AF_UNIX sockets always work).
    #[arg(long)]
    net: bool,
    /// Guest address-space size in MiB.
    #[arg(long, default_value_t = 4096, value_name = "MIB")]
    memory: u64,
    /// Guest root (like `qemu-riscv64 -L DIR`): the program's interpreter and every absolute
    /// path the guest uses resolve to DIR/path when it exists there, else to the host path
    /// (subject to --dir). The root is readable; writing in it needs a --dir grant.
    #[arg(long, value_name = "DIR", env = "VMX_ROOT")]
    root: Option<PathBuf>,
    /// Print every system call of every guest thread and process to stderr, in
    /// `qemu-riscv64 -strace`'s format.
    #[arg(long)]
    strace: bool,
    /// Serve the GDB remote protocol on 127.0.0.1:PORT (or HOST:PORT, or a Unix socket PATH)
    /// and stop before the first instruction until gdb attaches (also `VMX_GDB`).
    #[arg(long, value_name = "PORT|PATH")]
    gdb: Option<vm_gdbstub::Endpoint>,
    /// Write the `--strace` lines to FILE instead of stderr (implies `--strace`).
    #[arg(long, value_name = "FILE")]
    strace_file: Option<PathBuf>,
    /// The guest's `argv[0]` (default: PROGRAM as given); binfmt_misc's `P` flag passes it.
    #[arg(long, value_name = "ARG", hide = true)]
    argv0: Option<OsString>,
    /// The program and its arguments.
    #[command(flatten)]
    guest: GuestArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VMX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    // Started by binfmt_misc as `vmx PROGRAM ARGV0 ARGS...`?
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = match binfmt::invocation(&argv) {
        Some(run_args) => Cli::parse_from(run_args),
        None => Cli::parse(),
    };
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Binfmt(cmd) => binfmt::binfmt(cmd),
        Command::Batch(args) => batch(args),
        Command::Coordinator(args) => cluster::coordinator(args),
        Command::Worker(args) => cluster::worker(args),
        Command::Submit(args) => cluster::submit(args),
        Command::Status(args) => cluster::status(args),
        Command::Cancel(args) => cluster::cancel(args),
        Command::Cluster(args) => cluster::cluster(args),
        Command::BenchClient(args) => cluster::bench_client(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vmx: {e:#}");
            ExitCode::from(125)
        }
    }
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let root = match &args.root {
        Some(r) if !r.as_os_str().is_empty() => Some(
            std::fs::canonicalize(r)
                .ok()
                .filter(|c| c.is_dir())
                .with_context(|| format!("--root {}: no such directory", r.display()))?,
        ),
        _ => None,
    };
    let program = args.guest.parse()?;
    let interpreter = vm_executors::find_interpreter(&program, root.as_deref())
        .with_context(|| format!("cannot run {}", args.guest.program.display()))?;
    let mut argv = args.guest.argv();
    if let Some(a0) = &args.argv0 {
        argv[0] = a0.as_bytes().to_vec();
    }
    let mut config = ProcessConfig {
        args: argv,
        env: std::env::vars_os()
            .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
            .collect(),
        exe_path: args.guest.exe_path(),
        memory_size: guest::memory_bytes(args.memory)?,
        root,
        interpreter,
        network: args.net,
        ignored_signals: vm_exec_core::signals::host_ignored_signals(),
        ..Default::default()
    };
    for d in &args.dirs {
        config.allow_dir(d).with_context(|| format!("--dir {}", d.display()))?;
    }
    if let Some(path) = &args.strace_file {
        let file = std::fs::File::create(path)
            .with_context(|| format!("--strace-file {}", path.display()))?;
        config.strace = Some(StraceSink::new(file));
    } else if args.strace {
        config.strace = Some(StraceSink::stderr());
    }
    if args.vcpus == 0 {
        anyhow::bail!("--vcpus must be at least 1");
    }
    let gdb = match (&args.gdb, std::env::var("VMX_GDB")) {
        (Some(e), _) => Some(e.clone()),
        (None, Ok(v)) if !v.is_empty() => {
            Some(v.parse::<vm_gdbstub::Endpoint>().map_err(|e| anyhow::anyhow!("VMX_GDB: {e}"))?)
        }
        _ => None,
    };
    if let Some(endpoint) = &gdb {
        let (process, thread) =
            vm_exec_core::loader::load(Arc::new(program), Arc::new(config), GDB_PID)
                .with_context(|| format!("cannot load {}", args.guest.program.display()))?;
        let debuggee = vm_gdbstub::target::Debuggee::new(process, thread, args.engine.create());
        let exit = vm_gdbstub::serve(endpoint, debuggee, |_| {})?;
        return Ok(match exit {
            vm_exec_core::exec::GuestExit::Exited(code) => ExitCode::from((code & 0xff) as u8),
            vm_exec_core::exec::GuestExit::Signaled(sig) => {
                die_by_signal(sig.signo);
                ExitCode::from((128 + sig.signo) as u8)
            }
            vm_exec_core::exec::GuestExit::Killed => {
                die_by_signal(9);
                ExitCode::from(137)
            }
            other => ExitCode::from(other.shell_status() as u8),
        });
    }
    let scheduler =
        Scheduler::with_config(SchedulerConfig { vcpus: args.vcpus, ..Default::default() });
    scheduler.start().context("starting the scheduler")?;
    let t0 = std::time::Instant::now();
    let factory = if args.stats { args.engine.counting_factory() } else { args.engine.factory() };
    let guest = Coroutine::new(Arc::new(program), Arc::new(config), factory);
    let id = scheduler.submit_coroutine(guest).map_err(|e| anyhow::anyhow!("{e}"))?;
    let result = scheduler.wait(id, None).context("the guest vanished from the scheduler")?;
    let wall = t0.elapsed();
    let sched = scheduler.get_stats();
    scheduler.shutdown();
    if args.stats {
        let s = &result.engine;
        let secs = wall.as_secs_f64();
        eprintln!(
            "vmx: engine {}, {} instructions, {} block executions, {} blocks compiled ({:.1} us each; {} cache hits, {} misses, {} invalidated), {} syscalls, {:.3} s, {:.1} MIPS",
            args.engine.name(),
            result.instructions,
            s.total_executions,
            s.blocks_compiled,
            s.compile_time.as_secs_f64() * 1e6 / s.blocks_compiled.max(1) as f64,
            s.cache_hits,
            s.cache_misses,
            s.invalidations,
            s.syscalls,
            secs,
            result.instructions as f64 / secs.max(1e-9) / 1e6,
        );
        eprintln!(
            "vmx: {} vCPUs, {} threads created, {} slices, {} context switches, {} steals, {} blocks, {} yields, load imbalance {:.2}",
            sched.vcpus.len(),
            sched.threads_created,
            sched.slices,
            sched.context_switches,
            sched.steals,
            sched.blocks,
            sched.yields,
            sched.load_imbalance,
        );
    }
    match &result.exit {
        GuestExit::Exited(_) => {}
        GuestExit::Signaled(sig) => {
            if args.stats {
                eprintln!("vmx: guest ended by {sig}");
            }
            die_by_signal(sig.signo);
        }
        GuestExit::LoadFailed(msg) => {
            anyhow::bail!("cannot load {}: {msg}", args.guest.program.display())
        }
        other => anyhow::bail!("the guest {other}"),
    }
    Ok(ExitCode::from(result.exit.shell_status() as u8))
}

/// The process id a guest debugged through `--gdb` sees.
const GDB_PID: i32 = 1001;

fn batch(args: BatchArgs) -> Result<ExitCode> {
    use vm_executors::coroutine::{run_batch, run_sequential, BatchConfig, OutputMode};
    if args.vcpus == 0 {
        anyhow::bail!("--vcpus must be at least 1");
    }
    if args.concurrency == Some(0) {
        anyhow::bail!("--concurrency must be at least 1");
    }
    let program = Arc::new(args.guest.parse()?);
    let config = BatchConfig {
        instances: args.instances,
        vcpus: args.vcpus,
        time_slice: args.slice.max(1),
        output: args.capture.map_or(OutputMode::Discard, |limit| OutputMode::Capture { limit }),
        process: ProcessConfig {
            args: args.guest.argv(),
            stdin: vm_executors::Stdio::Null,
            exe_path: args.guest.exe_path(),
            memory_size: guest::memory_bytes(args.memory)?,
            ..Default::default()
        },
        engine: args.engine.factory(),
        concurrency: args.concurrency,
    };
    let summary = if args.sequential {
        run_sequential(program, &config)
    } else {
        run_batch(program, &config).context("starting the scheduler")?
    };
    print!("{summary}");
    Ok(if summary.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Ends this process with `signo`, without a core dump, so that the parent sees the same
/// wait status as for the guest under Linux or qemu. Returns only if the signal did not kill.
fn die_by_signal(signo: i32) {
    let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain libc calls with valid arguments; resetting the disposition to SIG_DFL and
    // unblocking the signal is what makes `raise` terminate the process.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(signo, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signo);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signo);
    }
}
