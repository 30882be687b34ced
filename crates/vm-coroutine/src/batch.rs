//! Running K independent instances of one program as K processes on N vCPUs.
//!
//! Invariants:
//! - All instances share the parsed [`Program`] (one `Arc`); each gets its own process: its
//!   own address space, file table and, when captured, its own output buffers.
//! - Instances are coroutines created lazily: a process is built by the vCPU that first runs
//!   it, so creating K instances costs no guest memory and loading runs in parallel.
//! - Captured output is bounded per stream and instance (`OutputMode::Capture { limit }`);
//!   bytes past the limit are counted, not kept. With [`OutputMode::Discard`] guest output
//!   goes nowhere.
//! - An instance that cannot be loaded, faults or exits non-zero counts as failed; it never
//!   stops the batch.
//! - At most `concurrency` instances are admitted to the scheduler at once (default
//!   [`default_concurrency`], derived from the host's available memory); the next is admitted
//!   when one ends, so K instances of a guest never need K guests' memory at the same time.

use crate::coroutine::{Coroutine, CoroutineId, EngineFactory};
use crate::scheduler::{Scheduler, SchedulerConfig, SchedulerError, SchedulerStats};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vm_exec_core::elf::Program;
use vm_exec_core::exec::GuestExit;
use vm_exec_core::process::{CaptureBuffer, ProcessConfig, Stdio};

/// What happens to the instances' standard output and error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// Discarded.
    Discard,
    /// Kept in memory, at most `limit` bytes per stream and instance.
    Capture {
        /// Bytes kept per stream and instance.
        limit: usize,
    },
}

/// How to run a batch.
#[derive(Clone)]
pub struct BatchConfig {
    /// Number of instances (K).
    pub instances: usize,
    /// Number of vCPUs (N); ignored by [`run_sequential`].
    pub vcpus: usize,
    /// Guest instructions per slice.
    pub time_slice: u64,
    /// Where guest output goes.
    pub output: OutputMode,
    /// Template of every instance's process: arguments, environment, memory size, stdin. Its
    /// stdout and stderr are replaced according to `output`.
    pub process: ProcessConfig,
    /// Makes each instance's engines.
    pub engine: EngineFactory,
    /// Most instances admitted at once; `None` for [`default_concurrency`].
    pub concurrency: Option<usize>,
}

/// Host memory assumed for one instance beyond its guest memory (engine, caches, tables).
const INSTANCE_OVERHEAD: u64 = 2 << 20;
/// Guest memory assumed resident per instance at most: address spaces are reservations, and
/// a guest's pages exist only once touched.
const RESIDENT_CAP: u64 = 64 << 20;

/// How many instances of a guest with `memory_size` bytes of address space may run at once:
/// the host's available memory (`MemAvailable`, or 1 GiB if unknown) divided by what one
/// instance may need (its memory size up to 64 MiB, plus 2 MiB), at least 4, at most 100,000.
pub fn default_concurrency(memory_size: u64) -> usize {
    let avail = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(1 << 30, |kb| kb.saturating_mul(1024));
    let per = memory_size.min(RESIDENT_CAP) + INSTANCE_OVERHEAD;
    ((avail / per) as usize).clamp(4, 100_000)
}

impl std::fmt::Debug for BatchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchConfig")
            .field("instances", &self.instances)
            .field("vcpus", &self.vcpus)
            .field("time_slice", &self.time_slice)
            .field("output", &self.output)
            .field("process", &self.process)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl BatchConfig {
    /// One instance on as many vCPUs as host CPUs, the default slice, output discarded, stdin
    /// empty, on engines made by `engine`.
    pub fn new(engine: EngineFactory) -> Self {
        BatchConfig {
            instances: 1,
            vcpus: SchedulerConfig::default().vcpus,
            time_slice: crate::scheduler::DEFAULT_TIME_SLICE,
            output: OutputMode::Discard,
            process: ProcessConfig { stdin: Stdio::Null, ..Default::default() },
            engine,
            concurrency: None,
        }
    }
}

/// What one instance did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceResult {
    /// Its index, `0..instances`.
    pub index: usize,
    /// How it ended.
    pub exit: GuestExit,
    /// Guest instructions it retired.
    pub instructions: u64,
    /// Host time spent in its slices (loading included).
    pub run_time: Duration,
    /// Its captured standard output (`None` when discarded).
    pub stdout: Option<Vec<u8>>,
    /// Its captured standard error (`None` when discarded).
    pub stderr: Option<Vec<u8>>,
    /// Output bytes past the capture limit, both streams together.
    pub output_dropped: u64,
}

/// What a batch did.
#[derive(Clone, Debug)]
pub struct BatchSummary {
    /// Instances run.
    pub instances: usize,
    /// vCPUs used (1 for a sequential run).
    pub vcpus: usize,
    /// Instances that exited with status 0.
    pub ok: usize,
    /// The others.
    pub failed: usize,
    /// Guest instructions retired by all instances.
    pub total_instructions: u64,
    /// Wall-clock time from creating the first instance to the end of the last.
    pub wall_time: Duration,
    /// `total_instructions` per second of wall time.
    pub instructions_per_sec: f64,
    /// Instances per second of wall time.
    pub instances_per_sec: f64,
    /// The scheduler's counters (`None` for a sequential run).
    pub stats: Option<SchedulerStats>,
    /// Per instance, in index order.
    pub results: Vec<InstanceResult>,
}

impl std::fmt::Display for BatchSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "instances: {} on {} vCPU(s): {} ok, {} failed",
            self.instances, self.vcpus, self.ok, self.failed
        )?;
        writeln!(
            f,
            "wall time: {:.3} s, {} instructions, {:.1} MIPS, {:.1} instances/s",
            self.wall_time.as_secs_f64(),
            self.total_instructions,
            self.instructions_per_sec / 1e6,
            self.instances_per_sec
        )?;
        if let Some(s) = &self.stats {
            writeln!(
                f,
                "scheduler: {} slices, {} context switches, {} steals, load imbalance {:.3}",
                s.slices, s.context_switches, s.steals, s.load_imbalance
            )?;
            for v in &s.vcpus {
                writeln!(
                    f,
                    "  vCPU {}: {} slices, {} instructions, {} steals ({} stolen), {} parks, idle {:.3} s",
                    v.id,
                    v.slices,
                    v.instructions,
                    v.steals,
                    v.stolen,
                    v.parks,
                    v.idle_time.as_secs_f64()
                )?;
            }
        }
        Ok(())
    }
}

/// One instance before it runs: its coroutine and its output buffers.
struct Prepared {
    coroutine: Coroutine,
    stdout: Option<CaptureBuffer>,
    stderr: Option<CaptureBuffer>,
}

fn coroutine(program: &Arc<Program>, pc: Arc<ProcessConfig>, config: &BatchConfig) -> Coroutine {
    Coroutine::new(program.clone(), pc, config.engine.clone())
}

fn prepare(program: &Arc<Program>, config: &BatchConfig) -> Vec<Prepared> {
    let shared_config = Arc::new(ProcessConfig {
        stdout: Stdio::Null,
        stderr: Stdio::Null,
        ..config.process.clone()
    });
    (0..config.instances)
        .map(|_| match config.output {
            OutputMode::Discard => Prepared {
                coroutine: coroutine(program, shared_config.clone(), config),
                stdout: None,
                stderr: None,
            },
            OutputMode::Capture { limit } => {
                let (out, err) =
                    (CaptureBuffer::with_limit(limit), CaptureBuffer::with_limit(limit));
                let pc = ProcessConfig {
                    stdout: Stdio::Capture(out.clone()),
                    stderr: Stdio::Capture(err.clone()),
                    ..config.process.clone()
                };
                Prepared {
                    coroutine: coroutine(program, Arc::new(pc), config),
                    stdout: Some(out),
                    stderr: Some(err),
                }
            }
        })
        .collect()
}

fn instance_result(
    index: usize,
    exit: GuestExit,
    instructions: u64,
    run_time: Duration,
    stdout: Option<CaptureBuffer>,
    stderr: Option<CaptureBuffer>,
) -> InstanceResult {
    let dropped = stdout.as_ref().map_or(0, CaptureBuffer::dropped)
        + stderr.as_ref().map_or(0, CaptureBuffer::dropped);
    InstanceResult {
        index,
        exit,
        instructions,
        run_time,
        stdout: stdout.map(|b| b.contents()),
        stderr: stderr.map(|b| b.contents()),
        output_dropped: dropped,
    }
}

fn summarize(
    results: Vec<InstanceResult>,
    vcpus: usize,
    wall_time: Duration,
    stats: Option<SchedulerStats>,
) -> BatchSummary {
    let ok = results.iter().filter(|r| r.exit.is_success()).count();
    let total_instructions = results.iter().map(|r| r.instructions).sum::<u64>();
    let secs = wall_time.as_secs_f64().max(1e-9);
    BatchSummary {
        instances: results.len(),
        vcpus,
        ok,
        failed: results.len() - ok,
        total_instructions,
        wall_time,
        instructions_per_sec: total_instructions as f64 / secs,
        instances_per_sec: results.len() as f64 / secs,
        stats,
        results,
    }
}

/// Runs `config.instances` instances of `program` on a scheduler with `config.vcpus` vCPUs,
/// at most `config.concurrency` at once, and waits for all of them.
pub fn run_batch(
    program: Arc<Program>,
    config: &BatchConfig,
) -> Result<BatchSummary, SchedulerError> {
    let t0 = Instant::now();
    let scheduler = Scheduler::with_config(SchedulerConfig {
        vcpus: config.vcpus,
        time_slice: config.time_slice,
        ..Default::default()
    });
    let vcpus = scheduler.num_vcpus();
    let mut outputs: HashMap<CoroutineId, (usize, Option<CaptureBuffer>, Option<CaptureBuffer>)> =
        HashMap::with_capacity(config.instances);
    scheduler.start()?;
    let limit = config
        .concurrency
        .unwrap_or_else(|| default_concurrency(config.process.memory_size))
        .max(1);
    for (index, p) in prepare(&program, config).into_iter().enumerate() {
        scheduler.wait_live_below(limit, None);
        outputs.insert(p.coroutine.id(), (index, p.stdout, p.stderr));
        // A fresh coroutine is never foreign, so submitting cannot fail.
        if let Err(e) = scheduler.submit_coroutine(p.coroutine) {
            tracing::error!("batch instance {index} refused: {e}");
        }
    }
    scheduler.wait_all(None);
    let wall_time = t0.elapsed();
    let stats = scheduler.get_stats();
    let mut results: Vec<InstanceResult> = scheduler
        .shutdown()
        .into_iter()
        .filter_map(|r| {
            let (index, out, err) = outputs.remove(&r.id)?;
            Some(instance_result(index, r.exit, r.instructions, r.run_time, out, err))
        })
        .collect();
    results.sort_by_key(|r| r.index);
    Ok(summarize(results, vcpus, wall_time, Some(stats)))
}

/// Fuel per slice in [`run_sequential`]: large enough that slicing costs nothing.
const SEQUENTIAL_SLICE: u64 = 1 << 26;

/// Runs the same instances one after the other, each to its end before the next starts, on a
/// scheduler with one vCPU and slices of 2^26 instructions: the baseline [`run_batch`] is
/// compared with. (A scheduler, rather than a plain loop, so that multi-threaded guests run
/// too.)
pub fn run_sequential(program: Arc<Program>, config: &BatchConfig) -> BatchSummary {
    let t0 = Instant::now();
    let scheduler = Scheduler::with_config(SchedulerConfig {
        vcpus: 1,
        time_slice: SEQUENTIAL_SLICE,
        ..Default::default()
    });
    if let Err(e) = scheduler.start() {
        tracing::error!("cannot start the sequential runner: {e}");
    }
    let results = prepare(&program, config)
        .into_iter()
        .enumerate()
        .map(|(index, p)| {
            let exit = match scheduler.submit_coroutine(p.coroutine) {
                Ok(id) => scheduler.wait(id, None),
                Err(e) => {
                    tracing::error!("batch instance {index} refused: {e}");
                    None
                }
            };
            match exit {
                Some(r) => {
                    instance_result(index, r.exit, r.instructions, r.run_time, p.stdout, p.stderr)
                }
                None => {
                    instance_result(index, GuestExit::Killed, 0, Duration::ZERO, p.stdout, p.stderr)
                }
            }
        })
        .collect();
    scheduler.shutdown();
    summarize(results, 1, t0.elapsed(), None)
}
