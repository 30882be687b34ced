//! A coroutine: one guest process (its address space, its single guest thread and the engine
//! that runs it) that runs in slices of fuel and can be suspended between any two of them.
//!
//! Invariants:
//! - A coroutine is one guest process with exactly one guest thread. Guest threads that share
//!   an address space across vCPUs are not supported (that needs guest memory shared between
//!   vCPUs, a redesign of the core planned for later); a guest whose only thread calls `exit`
//!   ends, like a process whose last thread exits.
//! - The process is built lazily, on the first slice or on [`Coroutine::load`], so creating
//!   many coroutines is cheap and loading happens on the vCPU that first runs it. A load error
//!   finishes the coroutine with [`CoroutineExit::LoadFailed`].
//! - A slice never runs more instructions than the fuel it is given, and the next slice resumes
//!   exactly where the previous one stopped (the engine's guarantee, see
//!   [`vm_exec_core::exec`]).
//! - Once finished, a coroutine keeps its outcome and counters and has released its process
//!   (guest memory and files) and its engine; running it again only returns the outcome.
//! - An engine panic (a bug, never guest behaviour) is caught by the scheduler and finishes the
//!   coroutine with [`CoroutineExit::EnginePanicked`]; the vCPU goes on.

use crate::scheduler::Link;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vm_exec_core::cpu::GuestThread;
use vm_exec_core::elf::Program;
use vm_exec_core::exec::{signal, ExecutionStats, Executor, GuestExit, GuestSignal, StopReason};
use vm_exec_core::loader::{self, LoadError};
use vm_exec_core::process::{Process, ProcessConfig};
use vm_exec_interp::Interpreter;

/// Makes a fresh engine for one process; called when a lazily built coroutine is loaded.
pub type EngineFactory = Arc<dyn Fn() -> Box<dyn Executor> + Send + Sync>;

/// Identifies a coroutine; unique in the host process (ids come from one global counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CoroutineId(pub u64);

impl std::fmt::Display for CoroutineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "co{}", self.0)
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl CoroutineId {
    fn fresh() -> CoroutineId {
        CoroutineId(NEXT_ID.fetch_add(1, Ordering::Relaxed))
    }

    /// The process id the guest sees: 1000 plus the id, wrapped below Linux's largest pid.
    fn guest_pid(self) -> i32 {
        const PID_MAX: u64 = 4_194_304;
        (1000 + self.0 % (PID_MAX - 1000)) as i32
    }
}

/// How a coroutine ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoroutineExit {
    /// The guest called `exit_group` (or its thread called `exit`) with this status.
    Exited(i32),
    /// A fatal signal (a fault, `abort`, ...) ended the guest.
    Signaled(GuestSignal),
    /// The coroutine was killed ([`crate::Scheduler::kill`], [`Coroutine::kill`], or dropped
    /// while admitted to a scheduler).
    Killed,
    /// The process could not be built (the message of the [`LoadError`]).
    LoadFailed(String),
    /// The engine panicked while running the guest (a host bug); the message of the panic.
    EnginePanicked(String),
}

impl CoroutineExit {
    /// The status a shell shows: the low 8 bits of the exit code, 128 + signal for a signal,
    /// 137 (SIGKILL) when killed, 127 when the program could not be loaded, 70 (`EX_SOFTWARE`)
    /// when the engine panicked.
    pub fn shell_status(&self) -> i32 {
        match self {
            CoroutineExit::Exited(code) => code & 0xff,
            CoroutineExit::Signaled(s) => 128 + s.signo,
            CoroutineExit::Killed => 128 + signal::SIGKILL,
            CoroutineExit::LoadFailed(_) => 127,
            CoroutineExit::EnginePanicked(_) => 70,
        }
    }

    /// Whether the guest exited with status 0.
    pub fn is_success(&self) -> bool {
        matches!(self, CoroutineExit::Exited(code) if code & 0xff == 0)
    }

    /// The guest's own exit, when it ended by itself.
    pub fn guest_exit(&self) -> Option<GuestExit> {
        match self {
            CoroutineExit::Exited(c) => Some(GuestExit::Exited(*c)),
            CoroutineExit::Signaled(s) => Some(GuestExit::Signaled(s.clone())),
            _ => None,
        }
    }
}

impl From<GuestExit> for CoroutineExit {
    fn from(e: GuestExit) -> Self {
        match e {
            GuestExit::Exited(c) => CoroutineExit::Exited(c),
            GuestExit::Signaled(s) => CoroutineExit::Signaled(s),
        }
    }
}

impl std::fmt::Display for CoroutineExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoroutineExit::Exited(c) => write!(f, "exited with status {}", c & 0xff),
            CoroutineExit::Signaled(s) => write!(f, "terminated by {s}"),
            CoroutineExit::Killed => write!(f, "killed"),
            CoroutineExit::LoadFailed(m) => write!(f, "could not be loaded: {m}"),
            CoroutineExit::EnginePanicked(m) => write!(f, "engine panicked: {m}"),
        }
    }
}

/// Where a coroutine is in its life, as a scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoroutineState {
    /// Waiting in a run queue (or held by a caller that took it with
    /// [`crate::Scheduler::next_coroutine`] and has not run it yet).
    Ready,
    /// Running a slice on this vCPU.
    Running {
        /// The vCPU's index.
        vcpu: usize,
    },
    /// Ended; it will not run again.
    Finished(CoroutineExit),
}

/// What a finished coroutine leaves behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoroutineResult {
    /// Which coroutine.
    pub id: CoroutineId,
    /// The process id its guest saw.
    pub pid: i32,
    /// How it ended.
    pub exit: CoroutineExit,
    /// Guest instructions it retired.
    pub instructions: u64,
    /// Slices it ran (one per engine call).
    pub slices: u64,
    /// Host time spent running its slices (loading included).
    pub run_time: Duration,
}

/// The process before it is built, and after.
// The variants differ in size, but the whole `Inner` is boxed once; boxing the process again
// would add an indirection to every slice for nothing.
#[allow(clippy::large_enum_variant)]
enum Body {
    Unloaded { program: Arc<Program>, config: Arc<ProcessConfig> },
    Loaded { process: Process, thread: GuestThread },
    Released,
}

struct Inner {
    id: CoroutineId,
    pid: i32,
    body: Body,
    engine: Option<Box<dyn Executor>>,
    /// Makes the engine at load time when `engine` is `None` (the interpreter if absent).
    factory: Option<EngineFactory>,
    /// Engine counters kept after the engine is released.
    final_stats: Option<ExecutionStats>,
    exit: Option<CoroutineExit>,
    instructions: u64,
    slices: u64,
    run_time: Duration,
    /// Set while the coroutine is admitted to a scheduler.
    link: Option<Link>,
}

/// One guest process that runs in slices. See the module docs.
///
/// The value is one pointer wide; the process lives behind it.
pub struct Coroutine {
    inner: Box<Inner>,
}

impl std::fmt::Debug for Coroutine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coroutine")
            .field("id", &self.inner.id)
            .field("pid", &self.inner.pid)
            .field("loaded", &self.is_loaded())
            .field("exit", &self.inner.exit)
            .field("instructions", &self.inner.instructions)
            .field("slices", &self.inner.slices)
            .finish_non_exhaustive()
    }
}

impl Coroutine {
    fn from_inner(
        body: Body,
        pid: Option<i32>,
        engine: Option<Box<dyn Executor>>,
        factory: Option<EngineFactory>,
    ) -> Self {
        let id = CoroutineId::fresh();
        Coroutine {
            inner: Box::new(Inner {
                id,
                pid: pid.unwrap_or_else(|| id.guest_pid()),
                body,
                engine,
                factory,
                final_stats: None,
                exit: None,
                instructions: 0,
                slices: 0,
                run_time: Duration::ZERO,
                link: None,
            }),
        }
    }

    /// A coroutine that will run `program` as a new process built from `config`, on the
    /// interpreter. Nothing is allocated for the guest until it first runs (or
    /// [`Coroutine::load`] is called).
    pub fn new(program: Arc<Program>, config: Arc<ProcessConfig>) -> Coroutine {
        Self::from_inner(Body::Unloaded { program, config }, None, None, None)
    }

    /// Like [`Coroutine::new`], on the given engine (a fresh one: an engine instance serves
    /// one process).
    pub fn with_engine(
        program: Arc<Program>,
        config: Arc<ProcessConfig>,
        engine: Box<dyn Executor>,
    ) -> Coroutine {
        Self::from_inner(Body::Unloaded { program, config }, None, Some(engine), None)
    }

    /// Like [`Coroutine::new`], with an engine made by `factory` when the process is built
    /// (so that an idle, unloaded coroutine holds no engine either).
    pub fn with_engine_factory(
        program: Arc<Program>,
        config: Arc<ProcessConfig>,
        factory: EngineFactory,
    ) -> Coroutine {
        Self::from_inner(Body::Unloaded { program, config }, None, None, Some(factory))
    }

    /// A coroutine around a process that is already built (for example with
    /// [`vm_exec_core::loader::load`]), its main thread, and the engine that will run it.
    pub fn from_process(
        process: Process,
        thread: GuestThread,
        engine: Box<dyn Executor>,
    ) -> Coroutine {
        let pid = process.pid;
        Self::from_inner(Body::Loaded { process, thread }, Some(pid), Some(engine), None)
    }

    /// Its id.
    pub fn id(&self) -> CoroutineId {
        self.inner.id
    }

    /// The process id its guest sees.
    pub fn pid(&self) -> i32 {
        self.inner.pid
    }

    /// Whether its process is built and not yet released.
    pub fn is_loaded(&self) -> bool {
        matches!(self.inner.body, Body::Loaded { .. })
    }

    /// How it ended, once it has.
    pub fn exit(&self) -> Option<&CoroutineExit> {
        self.inner.exit.as_ref()
    }

    /// Whether it has ended.
    pub fn is_finished(&self) -> bool {
        self.inner.exit.is_some()
    }

    /// Guest instructions retired so far.
    pub fn instructions(&self) -> u64 {
        self.inner.instructions
    }

    /// Slices run so far.
    pub fn slices(&self) -> u64 {
        self.inner.slices
    }

    /// Host time spent in its slices so far.
    pub fn run_time(&self) -> Duration {
        self.inner.run_time
    }

    /// Its guest thread's state (registers, pc), while the process is built.
    pub fn thread(&self) -> Option<&GuestThread> {
        match &self.inner.body {
            Body::Loaded { thread, .. } => Some(thread),
            _ => None,
        }
    }

    /// Its process, while built.
    pub fn process(&self) -> Option<&Process> {
        match &self.inner.body {
            Body::Loaded { process, .. } => Some(process),
            _ => None,
        }
    }

    /// The counters of its engine (kept after the coroutine finished).
    pub fn engine_stats(&self) -> ExecutionStats {
        match (&self.inner.engine, &self.inner.final_stats) {
            (Some(e), _) => e.stats(),
            (None, Some(s)) => s.clone(),
            (None, None) => ExecutionStats::default(),
        }
    }

    /// The result, once finished.
    pub fn result(&self) -> Option<CoroutineResult> {
        let exit = self.inner.exit.clone()?;
        Some(CoroutineResult {
            id: self.inner.id,
            pid: self.inner.pid,
            exit,
            instructions: self.inner.instructions,
            slices: self.inner.slices,
            run_time: self.inner.run_time,
        })
    }

    /// Builds the process now if it is not built yet. On failure the coroutine is finished
    /// with [`CoroutineExit::LoadFailed`] and the error is returned.
    pub fn load(&mut self) -> Result<(), LoadError> {
        let inner = &mut *self.inner;
        let Body::Unloaded { program, config } = &inner.body else {
            return Ok(());
        };
        let t0 = Instant::now();
        let loaded = loader::load(program.clone(), config.clone(), inner.pid);
        inner.run_time += t0.elapsed();
        match loaded {
            Ok((process, thread)) => {
                inner.body = Body::Loaded { process, thread };
                if inner.engine.is_none() {
                    inner.engine = Some(match inner.factory.take() {
                        Some(make) => make(),
                        None => Box::new(Interpreter::new()),
                    });
                }
                Ok(())
            }
            Err(e) => {
                tracing::debug!(id = %inner.id, error = %e, "coroutine failed to load");
                self.finish(CoroutineExit::LoadFailed(e.to_string()));
                Err(e)
            }
        }
    }

    /// Runs at most `fuel` guest instructions. Returns the exit once the coroutine has ended
    /// (at once if it already had), `None` if it can run again.
    pub fn run_slice(&mut self, fuel: u64) -> Option<CoroutineExit> {
        if let Some(exit) = &self.inner.exit {
            return Some(exit.clone());
        }
        if self.load().is_err() {
            return self.inner.exit.clone();
        }
        let inner = &mut *self.inner;
        let (Body::Loaded { process, thread }, Some(engine)) = (&mut inner.body, &mut inner.engine)
        else {
            // `load` succeeded, so the body is built and an engine is present.
            return None;
        };
        let t0 = Instant::now();
        let r = engine.run(thread, process, fuel);
        inner.run_time += t0.elapsed();
        inner.instructions += r.retired;
        inner.slices += 1;
        let exit = match r.stop {
            StopReason::FuelExhausted => return None,
            // The only thread exiting ends the process.
            StopReason::ThreadExit(code) | StopReason::ProcessExit(code) => {
                CoroutineExit::Exited(code)
            }
            StopReason::Signal(s) => CoroutineExit::Signaled(s),
        };
        self.finish(exit.clone());
        Some(exit)
    }

    /// Runs slices of `slice` instructions until the coroutine ends.
    pub fn run_to_end(&mut self, slice: u64) -> CoroutineExit {
        let slice = slice.max(1);
        loop {
            if let Some(exit) = self.run_slice(slice) {
                return exit;
            }
        }
    }

    /// Ends the coroutine now with [`CoroutineExit::Killed`] (a no-op if it already ended).
    pub fn kill(&mut self) {
        self.finish(CoroutineExit::Killed);
    }

    /// Records the exit (unless one is recorded) and releases the process and the engine.
    pub(crate) fn finish(&mut self, exit: CoroutineExit) {
        let inner = &mut *self.inner;
        if inner.exit.is_none() {
            inner.exit = Some(exit);
        }
        inner.body = Body::Released;
        if let Some(engine) = inner.engine.take() {
            inner.final_stats = Some(engine.stats());
        }
    }

    pub(crate) fn link(&self) -> Option<&Link> {
        self.inner.link.as_ref()
    }

    pub(crate) fn set_link(&mut self, link: Link) {
        self.inner.link = Some(link);
    }

    pub(crate) fn take_link(&mut self) -> Option<Link> {
        self.inner.link.take()
    }
}

impl Drop for Coroutine {
    /// A coroutine dropped while admitted to a scheduler (taken with `next_coroutine` and never
    /// handed back) is reported to it as killed, so that nobody waits for it forever.
    fn drop(&mut self) {
        if let Some(link) = self.inner.link.take() {
            self.kill();
            if let Some(result) = self.result() {
                link.abandoned(result);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use vm_exec_core::elf_writer::simple_executable;

    /// `li a0, 0; li a7, 94; ecall` after `n` extra `addi a0, a0, 1`: exits with `n`.
    fn counting(n: usize) -> Arc<Program> {
        let mut words = vec![0x0000_0513u32]; // addi a0, x0, 0
        words.extend(std::iter::repeat_n(0x0015_0513u32, n)); // addi a0, a0, 1
        words.extend([0x05e0_0893, 0x0000_0073]); // addi a7, x0, 94; ecall
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        Arc::new(Program::parse(simple_executable(&bytes, &[])).unwrap())
    }

    fn small() -> Arc<ProcessConfig> {
        Arc::new(ProcessConfig {
            memory_size: 16 << 20,
            stack_size: 64 << 10,
            ..Default::default()
        })
    }

    #[test]
    fn slices_resume_where_they_stopped_and_the_process_is_released_at_the_end() {
        let mut c = Coroutine::new(counting(10), small());
        assert!(!c.is_loaded() && c.thread().is_none());
        assert_eq!(c.run_slice(4), None);
        assert!(c.is_loaded());
        assert_eq!((c.instructions(), c.slices()), (4, 1));
        assert_eq!(c.thread().map(|t| t.cpu.x[10]), Some(3));
        assert_eq!(c.run_to_end(5), CoroutineExit::Exited(10));
        assert_eq!(c.instructions(), 13);
        assert!(!c.is_loaded() && c.process().is_none());
        assert_eq!(c.engine_stats().instructions, 13);
        assert_eq!(c.run_slice(100), Some(CoroutineExit::Exited(10)), "finished stays finished");
        let r = c.result().unwrap();
        assert_eq!((r.id, r.instructions, r.slices), (c.id(), 13, 3));
        assert!(r.pid >= 1000);
    }

    #[test]
    fn kill_and_load_failure() {
        let mut c = Coroutine::new(counting(1000), small());
        c.run_slice(10);
        c.kill();
        assert_eq!(c.exit(), Some(&CoroutineExit::Killed));
        assert_eq!(c.run_slice(10), Some(CoroutineExit::Killed));
        assert_eq!(c.instructions(), 10);

        let tiny = Arc::new(ProcessConfig { memory_size: 4096, ..Default::default() });
        let mut c = Coroutine::new(counting(1), tiny);
        assert!(c.load().is_err());
        assert!(matches!(c.exit(), Some(CoroutineExit::LoadFailed(_))));
        assert!(c.load().is_ok(), "nothing left to load");
    }

    #[test]
    fn exits_and_statuses() {
        assert!(CoroutineExit::Exited(256).is_success());
        assert!(!CoroutineExit::Exited(1).is_success());
        assert_eq!(CoroutineExit::Exited(-1).shell_status(), 255);
        assert_eq!(CoroutineExit::Killed.to_string(), "killed");
        assert_eq!(
            CoroutineExit::from(GuestExit::Exited(3)).guest_exit(),
            Some(GuestExit::Exited(3))
        );
        assert_eq!(CoroutineExit::Killed.guest_exit(), None);
        assert_ne!(CoroutineId::fresh(), CoroutineId::fresh());
        assert_eq!(CoroutineId(5).to_string(), "co5");
    }
}
