//! Execution engines behind one interface, and running guests in the background.
//!
//! - [`InterpreterExecutor`], [`JitExecutor`] and [`HybridExecutor`] own one guest process
//!   and run it with their engine (a [`GuestRunner`] picks the engine at run time), either
//!   in bounded steps ([`InterpreterExecutor::execute_block`], [`InterpreterExecutor::execute_batch`])
//!   or to the end ([`InterpreterExecutor::run_to_completion`]).
//! - [`AsyncExecutionContext`] runs guests on background threads; each run gives an
//!   [`ExecutionHandle`] that is a `Future` and can also be waited on synchronously.
//!
//! Invariant: a step never runs more instructions than the fuel it is given, and the guest
//! resumes exactly where the previous step stopped.

use crate::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use vm_exec_core::cpu::GuestThread;
use vm_exec_core::elf::Program;
use vm_exec_core::exec::{Executor, GuestExit, StopReason};
use vm_exec_core::loader;
use vm_exec_core::process::{Process, ProcessConfig};
use vm_exec_core::sync::IgnorePoison;
use vm_exec_interp::Interpreter;

pub use vm_exec_core::exec::ExecutionStats;

/// Which engine runs a guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExecutorType {
    /// The interpreter over pre-decoded blocks: no translation cost, slowest on long runs.
    Interpreter,
    /// The x86-64 block translator: every block is translated the first time it runs.
    Jit,
    /// Interprets cold code and translates blocks once they are hot: the default, and the
    /// only place the project's default engine is decided (the scheduler and the distributed
    /// layer take an engine factory and name no engine).
    #[default]
    Hybrid,
}

impl ExecutorType {
    /// Every engine, in the order the CLI lists them.
    pub const ALL: [ExecutorType; 3] =
        [ExecutorType::Interpreter, ExecutorType::Jit, ExecutorType::Hybrid];

    /// The engine's short name, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            ExecutorType::Interpreter => "interp",
            ExecutorType::Jit => "jit",
            ExecutorType::Hybrid => "hybrid",
        }
    }

    /// A function that makes fresh engines of this type (for the scheduler and batches).
    pub fn factory(self) -> vm_coroutine::EngineFactory {
        Arc::new(move || self.create())
    }

    /// A factory like [`Self::factory`] whose translating engines also count every block
    /// entry for `ExecutionStats::total_executions` (a little slower; `vmx run --stats`).
    pub fn counting_factory(self) -> vm_coroutine::EngineFactory {
        Arc::new(move || {
            let cfg = vm_exec_jit::JitConfig { count_blocks: true, ..Default::default() };
            match self {
                ExecutorType::Interpreter => self.create(),
                ExecutorType::Jit => Box::new(vm_exec_jit::JitExecutor::with_config(cfg)),
                ExecutorType::Hybrid => Box::new(
                    vm_exec_jit::HybridExecutor::try_with_config(
                        cfg,
                        vm_exec_jit::DEFAULT_HOT_THRESHOLD,
                    )
                    .unwrap_or_else(|e| panic!("{e}")),
                ),
            }
        })
    }

    /// A fresh engine of this type.
    pub fn create(self) -> Box<dyn Executor> {
        match self {
            ExecutorType::Interpreter => Box::new(Interpreter::new()),
            ExecutorType::Jit => Box::new(vm_exec_jit::JitEngine::new()),
            ExecutorType::Hybrid => Box::new(vm_exec_jit::HybridEngine::new()),
        }
    }
}

impl std::fmt::Display for ExecutorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ExecutorType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExecutorType::ALL
            .into_iter()
            .find(|e| e.name() == s || (s == "interpreter" && *e == ExecutorType::Interpreter))
            .ok_or_else(|| format!("unknown engine '{s}' (available: interp, jit, hybrid)"))
    }
}

/// What a finished guest run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionResult {
    /// How the guest ended.
    pub exit: GuestExit,
    /// Instructions the guest retired.
    pub instructions: u64,
    /// Wall-clock time of the run (loading excluded).
    pub wall_time: Duration,
    /// The engine's counters for this guest.
    pub stats: ExecutionStats,
}

/// A loaded guest: its process and its (single) thread.
struct LoadedGuest {
    process: Process,
    thread: GuestThread,
    exit: Option<GuestExit>,
    instructions: u64,
    run_time: Duration,
}

/// Fuel per step when running to completion; large enough that the per-step cost vanishes.
const COMPLETION_SLICE: u64 = 1 << 26;

/// Runs one guest at a time on engine `E`. [`InterpreterExecutor`] is this with the
/// interpreter; `GuestRunner` (with the default `E`) picks its engine at run time.
///
/// The guest is a single-threaded process run on the calling thread: its blocking calls block
/// that thread, and `clone` fails with `EAGAIN` (`pthread_create` reports "resource
/// temporarily unavailable"). Multi-threaded guests run on the scheduler (the
/// [`crate::coroutine`] module, or `vmx run`).
pub struct GuestRunner<E: Executor = Box<dyn Executor>> {
    engine: E,
    guest: Option<LoadedGuest>,
}

/// A guest runner that uses the interpreter.
pub type InterpreterExecutor = GuestRunner<Interpreter>;
/// A guest runner that uses the JIT.
pub type JitExecutor = GuestRunner<vm_exec_jit::JitEngine>;
/// A guest runner that uses the hybrid engine (interpreter for cold code, JIT for hot).
pub type HybridExecutor = GuestRunner<vm_exec_jit::HybridEngine>;

impl<E: Executor + Default> Default for GuestRunner<E> {
    fn default() -> Self {
        GuestRunner { engine: E::default(), guest: None }
    }
}

impl<E: Executor + Default> GuestRunner<E> {
    /// A runner with a fresh engine and no guest loaded.
    pub fn new() -> Self {
        Self::default()
    }
}

impl GuestRunner {
    /// A runner on the engine chosen at run time.
    pub fn with_engine(kind: ExecutorType) -> Self {
        GuestRunner { engine: kind.create(), guest: None }
    }
}

impl<E: Executor> GuestRunner<E> {
    /// A runner on the given engine instance.
    pub fn from_engine(engine: E) -> Self {
        GuestRunner { engine, guest: None }
    }

    /// Loads `program` as a new process (the guest sees pid 1000), replacing any guest
    /// loaded before.
    pub fn load(&mut self, program: Arc<Program>, config: ProcessConfig) -> Result<(), Error> {
        let (process, thread) = loader::load(program, Arc::new(config), 1000)?;
        self.guest = Some(LoadedGuest {
            process,
            thread,
            exit: None,
            instructions: 0,
            run_time: Duration::ZERO,
        });
        Ok(())
    }

    /// Runs the loaded guest for at most `fuel` instructions. Returns `Some(exit)` once the
    /// guest has ended, `None` if it can continue.
    pub fn execute_block(&mut self, fuel: u64) -> Result<Option<GuestExit>, Error> {
        let guest = self.guest.as_mut().ok_or(Error::NotLoaded)?;
        if guest.exit.is_some() {
            return Err(Error::Finished);
        }
        let t0 = Instant::now();
        let r = self.engine.run(&mut guest.thread, &guest.process, fuel);
        guest.run_time += t0.elapsed();
        guest.instructions += r.retired;
        guest.exit = match r.stop {
            StopReason::Preempted | StopReason::Yielded => None,
            // Only a scheduled process parks or spawns; a runner's process is not scheduled,
            // so these are defensive.
            StopReason::Blocked(w) => {
                w.wait_blocking();
                w.complete(&mut guest.thread);
                None
            }
            StopReason::Spawned(t) => {
                tracing::error!(tid = t.tid, "a thread was spawned in an unscheduled process");
                None
            }
            StopReason::Forked(_) | StopReason::Exec(_) => {
                tracing::error!("a process was forked or exec'd in an unscheduled process");
                None
            }
            // With one thread, its exit ends the process.
            StopReason::ThreadExited(code) => Some(GuestExit::Exited(code)),
            StopReason::Finished(exit) => Some(exit),
        };
        Ok(guest.exit.clone())
    }

    /// Runs up to `steps` steps of `fuel_per_step` instructions; stops early when the guest
    /// ends. Returns the exit if it ended.
    pub fn execute_batch(
        &mut self,
        steps: usize,
        fuel_per_step: u64,
    ) -> Result<Option<GuestExit>, Error> {
        for _ in 0..steps {
            if let Some(exit) = self.execute_block(fuel_per_step)? {
                return Ok(Some(exit));
            }
        }
        Ok(None)
    }

    /// Runs the loaded guest until it ends.
    pub fn run_to_completion(&mut self) -> Result<ExecutionResult, Error> {
        loop {
            if let Some(exit) = self.execute_block(COMPLETION_SLICE)? {
                let guest = self.guest.as_ref().ok_or(Error::NotLoaded)?;
                return Ok(ExecutionResult {
                    exit,
                    instructions: guest.instructions,
                    wall_time: guest.run_time,
                    stats: self.engine.stats(),
                });
            }
        }
    }

    /// The loaded guest's thread state (registers, pc), if loaded.
    pub fn thread(&self) -> Option<&GuestThread> {
        self.guest.as_ref().map(|g| &g.thread)
    }

    /// Instructions the loaded guest retired so far.
    pub fn instructions(&self) -> u64 {
        self.guest.as_ref().map_or(0, |g| g.instructions)
    }

    /// The engine's counters.
    pub fn get_stats(&self) -> ExecutionStats {
        self.engine.stats()
    }
}

/// Runs guests on background threads, one thread per guest.
#[derive(Clone, Debug, Default)]
pub struct AsyncExecutionContext {
    engine: ExecutorType,
}

/// The result once the guest finished, and the waker of whoever awaits it.
#[derive(Default)]
struct Slot {
    result: Option<Result<ExecutionResult, Error>>,
    waker: Option<Waker>,
}

struct Shared {
    state: Mutex<Slot>,
    done: Condvar,
}

/// A guest running in the background. Await it, or call [`ExecutionHandle::wait`].
pub struct ExecutionHandle {
    shared: Arc<Shared>,
}

impl AsyncExecutionContext {
    /// A context whose guests run on `engine`.
    pub fn new(engine: ExecutorType) -> Self {
        AsyncExecutionContext { engine }
    }

    /// The engine guests run on.
    pub fn engine(&self) -> ExecutorType {
        self.engine
    }

    /// Starts `program` with `config` on a new thread.
    pub fn spawn(&self, program: Arc<Program>, config: ProcessConfig) -> ExecutionHandle {
        let shared = Arc::new(Shared { state: Mutex::new(Slot::default()), done: Condvar::new() });
        let theirs = shared.clone();
        let engine = self.engine;
        let body = move || {
            let mut runner = GuestRunner::with_engine(engine);
            let result = runner.load(program, config).and_then(|_| runner.run_to_completion());
            let mut g = theirs.state.lock().ignore_poison();
            g.result = Some(result);
            if let Some(w) = g.waker.take() {
                w.wake();
            }
            theirs.done.notify_all();
        };
        if let Err(e) = std::thread::Builder::new().name("vmx-guest".into()).spawn(body) {
            let mut g = shared.state.lock().ignore_poison();
            g.result = Some(Err(Error::Load(vm_exec_core::loader::LoadError::Host(e))));
        }
        ExecutionHandle { shared }
    }
}

impl ExecutionHandle {
    /// Blocks until the guest has finished.
    pub fn wait(self) -> Result<ExecutionResult, Error> {
        let mut g = self.shared.state.lock().ignore_poison();
        loop {
            if let Some(r) = g.result.take() {
                return r;
            }
            g = self.shared.done.wait(g).ignore_poison();
        }
    }
}

impl Future for ExecutionHandle {
    type Output = Result<ExecutionResult, Error>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut g = self.shared.state.lock().ignore_poison();
        match g.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                g.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
