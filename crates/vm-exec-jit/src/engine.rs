//! The dispatcher shared by [`crate::JitEngine`] and [`crate::HybridEngine`]: look up the
//! block at the pc, run it translated or interpreted, act on how it ended.
//!
//! Invariants (in addition to those of `vm_exec_core::exec`):
//! - Code invalidations logged by the address space (by any thread of the process, through
//!   any engine) are applied to the code cache before every block lookup, and translated code
//!   leaves for the dispatcher right after anything that can log one (stores to code pages,
//!   atomics, `ecall`, `fence.i`), so chained code never runs a stale translation.
//! - A block runs translated only when the remaining fuel covers all of it; otherwise (and
//!   for cold blocks of the hybrid tier) the interpreter runs exactly `min(len, fuel)` of its
//!   instructions, one block per call, which keeps `run(fuel = N)` exact.
//! - The interpreter keeps its own block cache and its own position in the invalidation log,
//!   so each cache sees every invalidation, whichever engine or thread caused it.
//! - Bound to a different address space than on the previous call (its [`AddressSpace::id`]
//!   differs), the engine drops all its code first.

use crate::cache::{CodeBufferError, CodeCache};
use crate::context::*;
use crate::translate::Options;
use vm_exec_core::cpu::GuestThread;
use vm_exec_core::exec::{
    signal, ExecutionStats, Executor, GuestExit, GuestSignal, RunResult, StopReason,
};
use vm_exec_core::memory::{AddressSpace, Invalidations};
use vm_exec_core::process::Process;
use vm_exec_core::syscall;
use vm_exec_interp::block::SharedBlocks;
use vm_exec_interp::{Interpreter, Tiering};

/// Configuration of the translating engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitConfig {
    /// Most bytes of translated code held at once; the cache flushes itself when a new
    /// translation might not fit.
    pub cache_limit_bytes: usize,
    /// Patch direct exits into jumps to their translated successors, and resolve `jalr`
    /// through the jump table, instead of returning to the dispatcher after every block.
    pub chaining: bool,
    /// Count every entry into a translated block (chained ones included) for
    /// `ExecutionStats::total_executions`. Off by default: the counter is a memory
    /// read-modify-write on every block entry, a loop-carried dependency of every
    /// translated loop; `vmx run --stats` turns it on.
    pub count_blocks: bool,
}

impl Default for JitConfig {
    fn default() -> Self {
        JitConfig { cache_limit_bytes: 64 << 20, chaining: true, count_blocks: false }
    }
}

/// How much work each tier did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Instructions retired by the interpreter (cold blocks, and partial blocks at the end of
    /// a fuel budget).
    pub interpreted_instructions: u64,
    /// Instructions retired by translated code.
    pub translated_instructions: u64,
    /// Blocks translated (promoted to the translated tier).
    pub blocks_translated: u64,
    /// Direct exits chained to their successors.
    pub chained_exits: u64,
    /// Whole-cache flushes.
    pub cache_flushes: u64,
}

/// The engine state behind both executors.
pub(crate) struct Engine {
    cache: CodeCache,
    ctx: Box<JitContext>,
    /// A block is translated on the visit that makes its count exceed this.
    threshold: u32,
    interp: Interpreter,
    /// [`AddressSpace::id`] of the space the cached code came from.
    space: u64,
    /// Instructions retired and system calls handled by this engine's own dispatcher.
    instructions: u64,
    syscalls: u64,
    tier: TierStats,
}

impl Engine {
    pub(crate) fn new(cfg: JitConfig, threshold: u32) -> Result<Self, CodeBufferError> {
        Ok(Engine {
            // The JIT translates at once and wants its buffer now; the hybrid engine makes it
            // only when a block gets hot.
            cache: CodeCache::new(
                cfg.cache_limit_bytes,
                Options { chaining: cfg.chaining, count_blocks: cfg.count_blocks },
                threshold == 0,
            )?,
            ctx: Box::default(),
            threshold,
            interp: Interpreter::new(),
            space: 0,
            instructions: 0,
            syscalls: 0,
            tier: TierStats::default(),
        })
    }

    pub(crate) fn tier_stats(&self) -> TierStats {
        TierStats {
            blocks_translated: self.cache.counters.translated,
            chained_exits: self.cache.counters.chains,
            cache_flushes: self.cache.counters.flushes,
            ..self.tier
        }
    }

    pub(crate) fn cached_blocks(&self) -> usize {
        self.cache.len()
    }

    pub(crate) fn code_bytes(&self) -> usize {
        self.cache.code_bytes()
    }

    pub(crate) fn stats(&self) -> ExecutionStats {
        let i = self.interp.stats();
        let c = &self.cache.counters;
        ExecutionStats {
            instructions: self.instructions,
            total_executions: self.ctx.block_execs + i.total_executions,
            blocks_compiled: c.translated,
            cache_hits: c.hits,
            cache_misses: c.misses,
            invalidations: c.invalidations,
            compile_time: c.compile_time + i.compile_time,
            syscalls: self.syscalls + i.syscalls,
        }
    }

    fn bind(&mut self, process: &Process) {
        let mem = &process.mem;
        if mem.id() != self.space {
            // A fresh engine has nothing to drop (and a flush would replace its code buffer
            // for nothing).
            if self.space != 0 {
                self.cache.flush();
            }
            self.cache.share(process.program.image_cache(SharedBlocks::default));
            self.space = mem.id();
            self.ctx.seen_generation = mem.code_generation();
        }
        let ctx = &mut *self.ctx;
        ctx.mem_base = mem.host_base() as u64;
        ctx.mem_size = mem.size();
        ctx.jtab = self.cache.jtab_addr();
        ctx.mem = mem as *const AddressSpace as usize;
    }

    /// Applies the invalidations logged since the last call to the code cache.
    #[cold]
    fn sync(&mut self, mem: &AddressSpace) {
        let (stale, now) = mem.invalidations_since(self.ctx.seen_generation);
        self.ctx.seen_generation = now;
        match stale {
            Invalidations::Pages(pages) => self.cache.invalidate_pages(&pages),
            Invalidations::All => self.cache.flush(),
        }
    }

    pub(crate) fn run(
        &mut self,
        thread: &mut GuestThread,
        process: &Process,
        fuel: u64,
    ) -> RunResult {
        self.bind(process);
        self.ctx.cpu = thread.cpu.clone();
        let chaining = self.cache.chaining();
        let mut retired = 0u64;
        // The exit site (or jump-table miss) that led to the block about to run.
        let mut link: Option<u32> = None;
        let mut indirect = false;
        // The interpreter stopped before a hot block: translate the block at the pc.
        let mut hot = false;
        // The next interpreted block must run even though it is hot (its translation failed).
        let mut force = false;
        let stop = loop {
            if process.mem.code_generation() != self.ctx.seen_generation {
                self.sync(&process.mem);
            }
            if retired >= fuel {
                break StopReason::Preempted;
            }
            let remaining = fuel - retired;
            let pc = self.ctx.cpu.pc;
            // The JIT translates every block it meets; the hybrid only those the interpreter
            // found hot, and otherwise runs what is already translated.
            let found = if self.threshold == 0 || std::mem::take(&mut hot) {
                let id = self.cache.lookup(&process.mem, pc);
                let id = self.cache.translate(&process.mem, id);
                force |= self.cache.get(id).entry.is_none();
                Some(id)
            } else {
                self.cache.find(pc)
            };
            let translated = found.and_then(|id| self.cache.get(id).entry.map(|e| (id, e)));
            let runnable = translated.filter(|&(id, _)| self.cache.get(id).len() <= remaining);
            let Some((id, entry)) = runnable else {
                link = None;
                indirect = false;
                // A translated block with too little fuel left runs partly on the interpreter.
                let tiering = Tiering {
                    threshold: self.threshold,
                    force_first: std::mem::take(&mut force) || translated.is_some(),
                    instret_base: self.instructions + retired,
                };
                let (r, stopped_hot) = self.interpret(thread, process, remaining, tiering);
                retired += r.retired;
                match r.stop {
                    StopReason::Preempted => {
                        hot = stopped_hot;
                        continue;
                    }
                    other => break other,
                }
            };
            if let Some(site) = link.take() {
                self.cache.chain(site, id);
            }
            if std::mem::take(&mut indirect) {
                self.cache.add_indirect(id);
            }
            let start = remaining.min(i64::MAX as u64) as i64;
            let ctx = &mut *self.ctx;
            ctx.fuel = start;
            ctx.fuel_entry = start;
            ctx.instret_base = self.instructions + retired;
            // SAFETY: `bind` set the context up for `process.mem`, which stays borrowed
            // (exclusively, through `process`) for the whole call; `entry` belongs to a live
            // translation of this cache.
            let exit = unsafe { self.cache.enter(ctx, entry) };
            let done = (start - ctx.fuel) as u64;
            retired += done;
            self.tier.translated_instructions += done;
            match exit {
                EXIT_FUEL | EXIT_NEXT => {}
                EXIT_BRANCH => {
                    if chaining {
                        link = Some(ctx.exit_site);
                    }
                }
                EXIT_INDIRECT => indirect = chaining,
                EXIT_FENCE_I => process.mem.invalidate_all_code(),
                EXIT_ECALL => {
                    self.syscalls += 1;
                    thread.cpu.clone_from(&ctx.cpu);
                    let outcome = syscall::dispatch(thread, process);
                    self.ctx.cpu.clone_from(&thread.cpu);
                    if let Some(stop) = outcome {
                        break stop;
                    }
                }
                EXIT_SIGNAL => {
                    let addr = (ctx.sig_has_addr != 0).then_some(ctx.sig_addr);
                    break StopReason::Finished(GuestExit::Signaled(GuestSignal {
                        signo: ctx.sig_signo,
                        pc: ctx.cpu.pc,
                        addr,
                    }));
                }
                other => {
                    // Translated code only produces the codes above.
                    tracing::error!(exit = other, "unknown exit code from translated code");
                    break StopReason::Finished(GuestExit::Signaled(GuestSignal {
                        signo: signal::SIGILL,
                        pc: ctx.cpu.pc,
                        addr: None,
                    }));
                }
            }
        };
        self.ctx.cpu.x[0] = 0;
        thread.cpu.clone_from(&self.ctx.cpu);
        self.instructions += retired;
        RunResult { stop, retired }
    }

    /// Runs at most `fuel` instructions with the interpreter, until it meets a hot block
    /// (see [`Interpreter::run_tiered`]).
    fn interpret(
        &mut self,
        thread: &mut GuestThread,
        process: &Process,
        fuel: u64,
        tiering: Tiering,
    ) -> (RunResult, bool) {
        thread.cpu.clone_from(&self.ctx.cpu);
        let r = self.interp.run_tiered(thread, process, fuel, tiering);
        self.ctx.cpu.clone_from(&thread.cpu);
        self.tier.interpreted_instructions += r.0.retired;
        r
    }
}

/// The translating engine: every block is translated to x86-64 the first time it runs.
///
/// One instance serves one process at a time (its code cache describes that process's code);
/// it may run any of the process's threads. Partial blocks at the end of a fuel budget run on
/// an embedded interpreter, so fuel is exact.
pub struct JitEngine {
    engine: Engine,
}

impl JitEngine {
    /// A JIT with the default configuration.
    ///
    /// # Panics
    /// If the host refuses to map executable memory (see [`JitEngine::try_with_config`]).
    pub fn new() -> Self {
        Self::with_config(JitConfig::default())
    }

    /// A JIT with the given configuration.
    ///
    /// # Panics
    /// If the host refuses to map executable memory (see [`JitEngine::try_with_config`]).
    pub fn with_config(cfg: JitConfig) -> Self {
        match Self::try_with_config(cfg) {
            Ok(j) => j,
            Err(e) => panic!("{e}"),
        }
    }

    /// A JIT with the given configuration, or the error the host gave when asked for the
    /// executable buffer.
    pub fn try_with_config(cfg: JitConfig) -> Result<Self, CodeBufferError> {
        Ok(JitEngine { engine: Engine::new(cfg, 0)? })
    }

    /// Work done per tier (almost everything is translated; the interpreter only runs
    /// partial blocks at the end of a fuel budget).
    pub fn tier_stats(&self) -> TierStats {
        self.engine.tier_stats()
    }

    /// Number of blocks currently in the code cache.
    pub fn cached_blocks(&self) -> usize {
        self.engine.cached_blocks()
    }

    /// Bytes of translated code currently in the executable buffer.
    pub fn code_bytes(&self) -> usize {
        self.engine.code_bytes()
    }
}

impl Default for JitEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor for JitEngine {
    fn name(&self) -> &'static str {
        "jit"
    }

    fn run(&mut self, thread: &mut GuestThread, process: &Process, fuel: u64) -> RunResult {
        self.engine.run(thread, process, fuel)
    }

    /// `total_executions` counts every entry into a translated block, chained ones included
    /// (only with [`JitConfig::count_blocks`]), plus the interpreter's block executions.
    fn stats(&self) -> ExecutionStats {
        self.engine.stats()
    }
}

/// The tiering engine: interprets a block until it has run `threshold` times, then
/// translates it.
pub struct HybridEngine {
    engine: Engine,
}

/// Default number of interpreted executions before a block is translated.
pub const DEFAULT_HOT_THRESHOLD: u32 = 50;

impl HybridEngine {
    /// A hybrid engine with the default threshold and JIT configuration.
    ///
    /// # Panics
    /// If the host refuses to map executable memory (see [`HybridEngine::try_with_config`]).
    pub fn new() -> Self {
        Self::with_threshold(DEFAULT_HOT_THRESHOLD)
    }

    /// A hybrid engine that translates a block when it is about to run for the
    /// `threshold + 1`-th time (0 translates everything at once, like [`JitEngine`]).
    ///
    /// # Panics
    /// If the host refuses to map executable memory (see [`HybridEngine::try_with_config`]).
    pub fn with_threshold(threshold: u32) -> Self {
        match Self::try_with_config(JitConfig::default(), threshold) {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        }
    }

    /// A hybrid engine with the given threshold and translator configuration.
    pub fn try_with_config(cfg: JitConfig, threshold: u32) -> Result<Self, CodeBufferError> {
        Ok(HybridEngine { engine: Engine::new(cfg, threshold)? })
    }

    /// Instructions run by each tier, and blocks promoted.
    pub fn tier_stats(&self) -> TierStats {
        self.engine.tier_stats()
    }

    /// Number of blocks currently known to the engine (interpreted or translated).
    pub fn cached_blocks(&self) -> usize {
        self.engine.cached_blocks()
    }
}

impl Default for HybridEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor for HybridEngine {
    fn name(&self) -> &'static str {
        "hybrid"
    }

    fn run(&mut self, thread: &mut GuestThread, process: &Process, fuel: u64) -> RunResult {
        self.engine.run(thread, process, fuel)
    }

    /// As for [`JitEngine`]; `blocks_compiled` counts translations only (the interpreter's
    /// decoding of cold blocks is not counted there, its time is in `compile_time`).
    fn stats(&self) -> ExecutionStats {
        self.engine.stats()
    }
}
