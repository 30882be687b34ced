//! The vm-executors interpreter: runs RV64GC guest code from pre-decoded basic blocks.
//!
//! How it is fast: instructions are decoded once per block (see [`block`]), looked up by pc
//! through a direct-mapped table before a hash map, and executed by one `match` per
//! instruction over a register file where writes to x0 land in a sink slot, so the hot loop
//! has no decode, no x0 check and no bounds check. Fuel is checked once per block; when less
//! fuel remains than a block has instructions, only that many are executed, so a caller can
//! stop a guest after exactly N instructions and resume it later.
//!
//! Invariants: see [`vm_exec_core::exec`] for what `run` guarantees; in addition the
//! interpreter applies the address space's code invalidations (logged by any thread of the
//! process, through any engine) before every block lookup, so a block whose bytes were
//! overwritten is never entered again.

#![warn(missing_docs)]

pub mod block;
mod run;

use block::BlockCache;
use std::time::Duration;
use vm_exec_core::cpu::GuestThread;
use vm_exec_core::exec::{ExecutionStats, Executor, RunResult};
use vm_exec_core::process::Process;

/// How [`Interpreter::run_tiered`] treats hot blocks.
#[derive(Clone, Copy, Debug)]
pub struct Tiering {
    /// A block already reached this many times is hot: the run stops before it.
    pub threshold: u32,
    /// Run the first block even if it is hot (the caller could not translate it, or has too
    /// little fuel left to run its translation).
    pub force_first: bool,
    /// Instructions the engine retired before this call (the value `instret` and `cycle`
    /// read at the first instruction).
    pub instret_base: u64,
}

/// The interpreter engine. One instance serves one process (its block cache describes that
/// process's code); it may run any of the process's threads.
pub struct Interpreter {
    cache: BlockCache,
    stats: ExecutionStats,
}

impl Default for Interpreter {
    fn default() -> Self {
        Self::new()
    }
}

impl Interpreter {
    /// A fresh interpreter with an empty block cache of the default size.
    pub fn new() -> Self {
        Interpreter { cache: BlockCache::default(), stats: ExecutionStats::default() }
    }

    /// A fresh interpreter whose block cache flushes itself past `limit_insts` decoded
    /// instructions (tests use tiny limits to exercise flushing).
    pub fn with_cache_limit(limit_insts: usize) -> Self {
        Interpreter { cache: BlockCache::with_limit(limit_insts), stats: ExecutionStats::default() }
    }

    /// Number of blocks currently cached.
    pub fn cached_blocks(&self) -> usize {
        self.cache.len()
    }

    /// Runs at most `fuel` instructions like [`Executor::run`], but as the cold tier of a
    /// tiering engine: counts how often each block is reached and stops before a block that
    /// was reached `tiering.threshold` times already (except the first block when
    /// `tiering.force_first`), so the caller can translate it. Returns the result and whether
    /// it stopped for a hot block (the stop is then `Preempted`, `thread.cpu.pc` is the hot
    /// block's pc, and nothing of it ran).
    pub fn run_tiered(
        &mut self,
        thread: &mut GuestThread,
        process: &Process,
        fuel: u64,
        tiering: Tiering,
    ) -> (RunResult, bool) {
        let r = run::run(&mut self.cache, &mut self.stats, thread, process, fuel, Some(tiering));
        self.stats.instructions += r.0.retired;
        r
    }

    /// Blocks taken from the ones other processes of the same program image decoded,
    /// instead of decoding them again.
    pub fn shared_hits(&self) -> u64 {
        self.cache.counters.shared_hits
    }
}

impl Executor for Interpreter {
    fn name(&self) -> &'static str {
        "interp"
    }

    fn run(&mut self, thread: &mut GuestThread, process: &Process, fuel: u64) -> RunResult {
        let (result, _) = run::run(&mut self.cache, &mut self.stats, thread, process, fuel, None);
        self.stats.instructions += result.retired;
        result
    }

    fn stats(&self) -> ExecutionStats {
        let c = &self.cache.counters;
        ExecutionStats {
            blocks_compiled: c.misses,
            cache_hits: self.stats.cache_hits + c.hits,
            cache_misses: c.misses,
            invalidations: c.invalidations,
            compile_time: Duration::from_nanos(c.decode_nanos),
            ..self.stats.clone()
        }
    }
}
