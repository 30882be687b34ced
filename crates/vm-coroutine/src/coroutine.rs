//! A coroutine: one guest thread, which runs in slices of fuel and can be suspended between
//! any two of them. The threads of one guest process share a thread group: the process (its
//! address space and files, `Arc<Process>`), a pool of idle engines, and the process's
//! counters and exit.
//!
//! Invariants:
//! - A coroutine made by [`Coroutine::new`] (and its siblings) is the main thread of a new
//!   process; its id is the process's id for the scheduler ([`CoroutineResult`] is per
//!   process). Other threads appear when the guest calls `clone`: [`Coroutine::run_slice`]
//!   returns them as [`SliceEnd::Spawned`].
//! - The process is built lazily, on the first slice or on [`Coroutine::load`], so creating
//!   many coroutines is cheap and loading happens on the vCPU that first runs it. A load error
//!   finishes the coroutine with [`GuestExit::LoadFailed`].
//! - A process is marked scheduled ([`Process::set_scheduled`]) only when its main coroutine is
//!   admitted to a scheduler (at admission if the process is already built, else when it
//!   loads): only then can its threads yield, block and spawn.
//!   Run on its own, a coroutine is a single-threaded process whose blocking calls block the
//!   host thread.
//! - An engine serves one thread at a time: a slice takes an idle engine from the group's
//!   pool (making one if none is idle) and puts it back after, so a process holds at most as
//!   many engines as it has threads running at once.
//! - The process ends once: by `exit_group`, by a fatal signal, by its last thread's `exit`,
//!   by a kill, or when its instruction limit is reached. Ending it cancels every parked
//!   thread's wait; each remaining thread finishes at its next slice without running guest
//!   code, and the system-call layer refuses to perform calls for a process that is exiting.
//! - A slice never runs more instructions than the fuel it is given, and the next slice resumes
//!   exactly where the previous one stopped (the engine's guarantee, see
//!   [`vm_exec_core::exec`]).
//! - Once its thread has ended, a coroutine holds no guest state; the process (guest memory,
//!   files, engines) is freed when the last coroutine of its group is dropped. The process's
//!   outcome and counters stay readable through any of its coroutines; running a finished one
//!   again only returns the outcome.
//! - An engine panic (a bug, never guest behaviour) is caught by the scheduler and finishes the
//!   coroutine with [`GuestExit::EnginePanicked`]; the vCPU goes on.

use crate::scheduler::Link;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use vm_exec_core::cpu::GuestThread;
use vm_exec_core::elf::Program;
use vm_exec_core::exec::{
    signal, ExecutionStats, Executor, GuestExit, GuestSignal, NewProcess, RunResult, StopReason,
};
use vm_exec_core::futex::{WaitEnd, Waiter};
use vm_exec_core::loader::{self, LoadError};
use vm_exec_core::process::{Process, ProcessConfig};
use vm_exec_core::sandbox;
use vm_exec_core::signals;
use vm_exec_core::sync::IgnorePoison;

/// Makes a fresh engine for one thread of a process; called when a thread runs and none of
/// its process's engines is idle. This crate names no engine: whoever makes a coroutine
/// chooses (the facade's `ExecutorType::factory` keeps the project's default).
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

/// How a coroutine's process ended: the core's one terminal exit type under its older name
/// here (the same type, not a copy).
pub type CoroutineExit = GuestExit;

/// Where a coroutine is in its life, as a scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoroutineState {
    /// Waiting in a run queue (or held by a caller that took it with
    /// [`crate::Scheduler::next_coroutine`] and has not run it yet), or parked in a blocking
    /// system call.
    Ready,
    /// Running a slice on this vCPU.
    Running {
        /// The vCPU's index.
        vcpu: usize,
    },
    /// Ended; it will not run again.
    Finished(GuestExit),
}

/// What a finished process leaves behind (reported under its main coroutine's id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoroutineResult {
    /// Which coroutine (the process's main thread).
    pub id: CoroutineId,
    /// The process id its guest saw.
    pub pid: i32,
    /// How it ended.
    pub exit: GuestExit,
    /// Guest instructions its threads retired.
    pub instructions: u64,
    /// Slices its threads ran (one per engine call).
    pub slices: u64,
    /// Host time spent running its threads' slices (loading included).
    pub run_time: Duration,
    /// Counters of the engines that ran its threads.
    pub engine: ExecutionStats,
}

/// How one slice of a coroutine ended: the engines' [`StopReason`], with a new thread already
/// made into a coroutine ([`StopReason::Spawned`]), and, for the process's end, the ways the
/// host ends it too ([`StopReason::Finished`]). [`Coroutine::run_slice`] returns it with the
/// instructions the slice retired ([`RunResult`]).
pub type SliceEnd = StopReason<Coroutine>;

/// `SIGXCPU`: a process stopped at its instruction limit reads as killed by it.
const SIGXCPU: i32 = 24;

/// The wait status a parent sees for a process that ended with `exit`.
fn wait_status(exit: &GuestExit) -> i32 {
    match exit {
        GuestExit::Exited(c) => sandbox::exit_status(*c),
        GuestExit::Signaled(s) => sandbox::signal_status(s.signo, false),
        GuestExit::Killed | GuestExit::DeadlineExceeded => {
            sandbox::signal_status(signal::SIGKILL, false)
        }
        GuestExit::LoadFailed(_) => sandbox::exit_status(127),
        GuestExit::EnginePanicked(_) => sandbox::signal_status(signal::SIGABRT, false),
        GuestExit::InstructionLimit(_) => sandbox::signal_status(SIGXCPU, false),
    }
}

/// The thread before its process is built, and after.
// The variants differ in size, but the whole `Inner` is boxed once; boxing the thread again
// would add an indirection to every slice for nothing.
#[allow(clippy::large_enum_variant)]
enum Body {
    Unloaded { program: Arc<Program>, config: Arc<ProcessConfig> },
    Loaded { thread: GuestThread, process: Arc<Process> },
    Released,
}

/// What the threads of one process share.
pub(crate) struct ThreadGroup {
    /// The main thread's id: the process's id for the scheduler.
    main: CoroutineId,
    pid: i32,
    /// The process's current image (`execve` replaces it).
    process: Mutex<Option<Arc<Process>>>,
    /// Whether the process was forked by another guest process (the scheduler keeps no
    /// result for it: its parent learns of its end through `wait`).
    forked: bool,
    /// Idle engines of this process.
    engines: Mutex<Vec<Box<dyn Executor>>>,
    /// Makes an engine when none is idle.
    factory: EngineFactory,
    /// Threads created and not yet ended (the main thread counts once loaded).
    live_threads: AtomicUsize,
    exit: OnceLock<GuestExit>,
    instructions: AtomicU64,
    slices: AtomicU64,
    run_nanos: AtomicU64,
    /// Most instructions the process may retire (`u64::MAX`: no limit).
    limit: AtomicU64,
    /// Counters of engines dropped when the process ended.
    final_stats: Mutex<Option<ExecutionStats>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().ignore_poison()
}

impl ThreadGroup {
    fn new(main: CoroutineId, pid: i32, factory: EngineFactory) -> Arc<ThreadGroup> {
        Self::build(main, pid, factory, false)
    }

    fn build(
        main: CoroutineId,
        pid: i32,
        factory: EngineFactory,
        forked: bool,
    ) -> Arc<ThreadGroup> {
        Arc::new(ThreadGroup {
            main,
            pid,
            process: Mutex::new(None),
            forked,
            engines: Mutex::new(Vec::new()),
            factory,
            live_threads: AtomicUsize::new(0),
            exit: OnceLock::new(),
            instructions: AtomicU64::new(0),
            slices: AtomicU64::new(0),
            run_nanos: AtomicU64::new(0),
            limit: AtomicU64::new(u64::MAX),
            final_stats: Mutex::new(None),
        })
    }

    fn take_engine(&self) -> Box<dyn Executor> {
        if let Some(e) = lock(&self.engines).pop() {
            return e;
        }
        (self.factory)()
    }

    /// The process's current image.
    fn current(&self) -> Option<Arc<Process>> {
        lock(&self.process).clone()
    }

    fn is_current(&self, p: &Arc<Process>) -> bool {
        lock(&self.process).as_ref().is_some_and(|c| Arc::ptr_eq(c, p))
    }

    /// Sets the process (once built, or after `execve`).
    fn set_process(&self, p: Arc<Process>) {
        *lock(&self.process) = Some(p);
    }

    /// Returns an engine that ran a thread of `p` to the pool (or retires it when the
    /// process ended or `p` is no longer its image).
    fn put_engine(&self, e: Box<dyn Executor>, p: &Arc<Process>) {
        if self.exit.get().is_some() || !self.is_current(p) {
            self.retire_engine(e);
        } else {
            lock(&self.engines).push(e);
        }
    }

    /// Keeps an engine's counters and drops it.
    fn retire_engine(&self, e: Box<dyn Executor>) {
        let mut fs = lock(&self.final_stats);
        fs.get_or_insert_with(ExecutionStats::default).merge(&e.stats());
    }

    /// Ends the process with `exit` unless it has ended already. Returns whether this call
    /// ended it.
    pub(crate) fn end(&self, exit: GuestExit) -> bool {
        let status = wait_status(&exit);
        if self.exit.set(exit).is_err() {
            return false;
        }
        if let Some(p) = self.current() {
            p.begin_exit();
            p.futexes.cancel_all();
            p.sandbox.exited(&p, status);
        }
        let idle: Vec<_> = std::mem::take(&mut *lock(&self.engines));
        for e in idle {
            self.retire_engine(e);
        }
        true
    }

    /// Cancels every parked thread's wait (they come back and see the kill or the exit).
    pub(crate) fn cancel_waits(&self) {
        if let Some(p) = self.current() {
            p.futexes.cancel_all();
        }
    }

    fn stats(&self) -> ExecutionStats {
        let mut s = lock(&self.final_stats).clone().unwrap_or_default();
        for e in lock(&self.engines).iter() {
            s.merge(&e.stats());
        }
        s
    }

    pub(crate) fn result(&self) -> Option<CoroutineResult> {
        Some(CoroutineResult {
            id: self.main,
            pid: self.pid,
            exit: self.exit.get()?.clone(),
            instructions: self.instructions.load(Ordering::Relaxed),
            slices: self.slices.load(Ordering::Relaxed),
            run_time: Duration::from_nanos(self.run_nanos.load(Ordering::Relaxed)),
            engine: self.stats(),
        })
    }
}

struct Inner {
    id: CoroutineId,
    body: Body,
    group: Arc<ThreadGroup>,
    /// The wait this thread is parked on; completed before its next slice.
    blocked: Option<Arc<Waiter>>,
    /// Set once this thread has ended.
    done: bool,
    /// Set while the coroutine is admitted to a scheduler.
    link: Option<Link>,
}

/// One guest thread that runs in slices. See the module docs.
///
/// The value is one pointer wide; the thread lives behind it.
pub struct Coroutine {
    inner: Box<Inner>,
}

impl std::fmt::Debug for Coroutine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coroutine")
            .field("id", &self.inner.id)
            .field("pid", &self.inner.group.pid)
            .field("main", &self.is_main())
            .field("loaded", &self.is_loaded())
            .field("exit", &self.inner.group.exit.get())
            .finish_non_exhaustive()
    }
}

impl Coroutine {
    fn main_thread(body: Body, pid: Option<i32>, factory: EngineFactory) -> Self {
        let id = CoroutineId::fresh();
        let group = ThreadGroup::new(id, pid.unwrap_or_else(|| id.guest_pid()), factory);
        Coroutine {
            inner: Box::new(Inner { id, body, group, blocked: None, done: false, link: None }),
        }
    }

    /// A coroutine that will run `program` as a new process built from `config`, on engines
    /// made by `engine` when the process's threads need them (one per thread running at that
    /// moment; so an idle, unloaded coroutine holds no engine). Nothing is allocated for the
    /// guest until it first runs (or [`Coroutine::load`] is called).
    pub fn new(
        program: Arc<Program>,
        config: Arc<ProcessConfig>,
        engine: EngineFactory,
    ) -> Coroutine {
        Self::main_thread(Body::Unloaded { program, config }, None, engine)
    }

    /// A coroutine around a process that is already built (for example with
    /// [`vm_exec_core::loader::load`]), its main thread, and what makes its engines.
    pub fn from_process(process: Process, thread: GuestThread, engine: EngineFactory) -> Coroutine {
        let pid = process.pid;
        let process = Arc::new(process);
        process.sandbox.register_root(&process);
        let c =
            Self::main_thread(Body::Loaded { thread, process: process.clone() }, Some(pid), engine);
        let g = &c.inner.group;
        g.set_process(process);
        g.live_threads.store(1, Ordering::Relaxed);
        c
    }

    /// Its id (for the main thread, the process's id at the scheduler).
    pub fn id(&self) -> CoroutineId {
        self.inner.id
    }

    /// The id of its process's main thread.
    pub fn process_id(&self) -> CoroutineId {
        self.inner.group.main
    }

    /// Whether it is its process's main thread.
    pub fn is_main(&self) -> bool {
        self.inner.id == self.inner.group.main
    }

    /// The process id its guest sees.
    pub fn pid(&self) -> i32 {
        self.inner.group.pid
    }

    /// Whether its process is built and this thread has not ended.
    pub fn is_loaded(&self) -> bool {
        matches!(self.inner.body, Body::Loaded { .. })
    }

    /// How its process ended, once it has.
    pub fn exit(&self) -> Option<&GuestExit> {
        self.inner.group.exit.get()
    }

    /// Whether this thread has ended (its process may go on).
    pub fn is_finished(&self) -> bool {
        self.inner.done || self.inner.group.exit.get().is_some()
    }

    /// Guest instructions its process retired so far (all threads).
    pub fn instructions(&self) -> u64 {
        self.inner.group.instructions.load(Ordering::Relaxed)
    }

    /// Slices its process ran so far (all threads).
    pub fn slices(&self) -> u64 {
        self.inner.group.slices.load(Ordering::Relaxed)
    }

    /// Host time spent in its process's slices so far.
    pub fn run_time(&self) -> Duration {
        Duration::from_nanos(self.inner.group.run_nanos.load(Ordering::Relaxed))
    }

    /// Stops the process once its threads have retired `limit` instructions in total (it
    /// then ends with [`GuestExit::InstructionLimit`]); `None` removes the limit. Slices
    /// are cut short so that a single-threaded process stops exactly at the limit; threads
    /// running at the same moment on other vCPUs may each overrun it by up to one slice.
    pub fn set_instruction_limit(&self, limit: Option<u64>) {
        self.inner.group.limit.store(limit.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Its guest thread's state (registers, pc), while loaded.
    pub fn thread(&self) -> Option<&GuestThread> {
        match &self.inner.body {
            Body::Loaded { thread, .. } => Some(thread),
            _ => None,
        }
    }

    /// Its process, while this thread is loaded.
    pub fn process(&self) -> Option<&Process> {
        match &self.inner.body {
            Body::Loaded { process, .. } => Some(&**process),
            _ => None,
        }
    }

    /// The counters of its process's engines (kept after the process finished).
    pub fn engine_stats(&self) -> ExecutionStats {
        self.inner.group.stats()
    }

    /// The process's result, once it has ended.
    pub fn result(&self) -> Option<CoroutineResult> {
        self.inner.group.result()
    }

    /// Whether its process was forked by another guest process (a [`SliceEnd::Spawned`]
    /// coroutine that is a new process rather than a new thread).
    pub fn is_forked(&self) -> bool {
        self.inner.group.forked
    }

    pub(crate) fn group(&self) -> &Arc<ThreadGroup> {
        &self.inner.group
    }

    /// Builds the process now if it is not built yet. On failure the coroutine is finished
    /// with [`GuestExit::LoadFailed`] and the error is returned.
    pub fn load(&mut self) -> Result<(), LoadError> {
        let inner = &mut *self.inner;
        let Body::Unloaded { program, config } = &inner.body else {
            return Ok(());
        };
        let t0 = Instant::now();
        let loaded = loader::load(program.clone(), config.clone(), inner.group.pid);
        inner.group.run_nanos.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match loaded {
            Ok((process, thread)) => {
                process.set_scheduled(inner.link.is_some());
                let process = Arc::new(process);
                process.sandbox.register_root(&process);
                inner.group.set_process(process.clone());
                inner.group.live_threads.fetch_add(1, Ordering::Relaxed);
                inner.body = Body::Loaded { thread, process };
                Ok(())
            }
            Err(e) => {
                tracing::debug!(id = %inner.id, error = %e, "coroutine failed to load");
                inner.group.end(GuestExit::LoadFailed(e.to_string()));
                self.release();
                Err(e)
            }
        }
    }

    /// Runs at most `fuel` guest instructions of this thread and says how the slice ended
    /// and how many instructions it retired.
    pub fn run_slice(&mut self, fuel: u64) -> RunResult<Coroutine> {
        let stop = |stop| RunResult { stop, retired: 0 };
        if let Some(exit) = self.inner.group.exit.get() {
            let exit = exit.clone();
            self.release();
            return stop(SliceEnd::Finished(exit));
        }
        if self.inner.done {
            return stop(SliceEnd::ThreadExited(0));
        }
        if self.load().is_err() {
            return stop(SliceEnd::Finished(self.exit().cloned().unwrap_or(GuestExit::Killed)));
        }
        let inner = &mut *self.inner;
        let group = inner.group.clone();
        let Body::Loaded { thread, process } = &mut inner.body else {
            // `load` succeeded, so the body is built.
            return stop(SliceEnd::Preempted);
        };
        let process = process.clone();
        if !group.is_current(&process) {
            // Another thread replaced the image (`execve`): this thread of the old image
            // goes away without counting (the exec reset the count).
            inner.done = true;
            inner.body = Body::Released;
            inner.blocked = None;
            process.sandbox.release_thread();
            return stop(SliceEnd::ThreadExited(0));
        }
        if let Some(signo) = process.fatal_signal() {
            let sig = GuestSignal { signo, pc: thread.cpu.pc, addr: None };
            group.end(GuestExit::Signaled(sig));
            let exit = group.exit.get().cloned().unwrap_or(GuestExit::Killed);
            self.release();
            return stop(SliceEnd::Finished(exit));
        }
        let mut woke = false;
        if let Some(w) = inner.blocked.take() {
            if w.end() == Some(WaitEnd::Cancelled) || w.is_waiting() {
                // Woken only to go away (the process is ending or the thread was abandoned).
                let exit = group.exit.get().cloned().unwrap_or(GuestExit::Killed);
                self.release();
                return stop(SliceEnd::Finished(exit));
            }
            w.complete(thread);
            signals::unpark(&process, thread, &w);
            woke = true;
        }
        // Signals from other threads and processes are delivered at slice boundaries.
        if let Some(StopReason::Finished(exit)) = signals::deliver(&process, thread) {
            group.end(exit);
            let exit = group.exit.get().cloned().unwrap_or(GuestExit::Killed);
            self.release();
            return stop(SliceEnd::Finished(exit));
        }
        if woke {
            // A wait with a temporary mask that a signal ended, but whose handler frame did
            // not take the saved mask (nothing was delivered after all): the mask comes back.
            signals::restore_saved_mask(&process, thread);
        }
        let limit = group.limit.load(Ordering::Relaxed);
        let used = group.instructions.load(Ordering::Relaxed);
        if used >= limit {
            group.end(GuestExit::InstructionLimit(limit));
            let exit = group.exit.get().cloned().unwrap_or(GuestExit::Killed);
            self.release();
            return stop(SliceEnd::Finished(exit));
        }
        let fuel = fuel.min(limit - used);
        let mut engine = group.take_engine();
        let t0 = Instant::now();
        let r = engine.run(thread, &process, fuel);
        group.run_nanos.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        group.instructions.fetch_add(r.retired, Ordering::Relaxed);
        group.slices.fetch_add(1, Ordering::Relaxed);
        group.put_engine(engine, &process);
        let retired = r.retired;
        let goes_on = |stop| RunResult { stop, retired };
        let ended = match r.stop {
            StopReason::Preempted => return goes_on(SliceEnd::Preempted),
            StopReason::Yielded => return goes_on(SliceEnd::Yielded),
            StopReason::Blocked(w) => {
                signals::park(&process, thread, &w);
                inner.blocked = Some(w.clone());
                return goes_on(SliceEnd::Blocked(w));
            }
            StopReason::Spawned(t) => {
                group.live_threads.fetch_add(1, Ordering::Relaxed);
                let child = Coroutine {
                    inner: Box::new(Inner {
                        id: CoroutineId::fresh(),
                        body: Body::Loaded { thread: *t, process: process.clone() },
                        group: group.clone(),
                        blocked: None,
                        done: false,
                        link: None,
                    }),
                };
                return goes_on(SliceEnd::Spawned(child));
            }
            StopReason::Forked(np) => {
                // A new process: its main coroutine, in a thread group of its own.
                let id = CoroutineId::fresh();
                let NewProcess { process: child, thread: t } = *np;
                let g = ThreadGroup::build(id, child.pid, group.factory.clone(), true);
                g.set_process(child.clone());
                g.live_threads.store(1, Ordering::Relaxed);
                let child = Coroutine {
                    inner: Box::new(Inner {
                        id,
                        body: Body::Loaded { thread: t, process: child },
                        group: g,
                        blocked: None,
                        done: false,
                        link: None,
                    }),
                };
                return goes_on(SliceEnd::Spawned(child));
            }
            StopReason::Exec(np) => {
                let NewProcess { process: fresh, thread: t } = *np;
                group.set_process(fresh.clone());
                // The old image's other threads end; its engines go.
                process.begin_exit();
                process.futexes.cancel_all();
                let idle: Vec<_> = std::mem::take(&mut *lock(&group.engines));
                for e in idle {
                    group.retire_engine(e);
                }
                // The other threads' coroutines release without counting (see above).
                group.live_threads.store(1, Ordering::Release);
                inner.body = Body::Loaded { thread: t, process: fresh };
                return goes_on(SliceEnd::Preempted);
            }
            StopReason::ThreadExited(code) => {
                inner.done = true;
                inner.body = Body::Released;
                process.sandbox.release_thread();
                if group.live_threads.fetch_sub(1, Ordering::AcqRel) != 1 {
                    return goes_on(SliceEnd::ThreadExited(code));
                }
                // The last thread's exit ends the process with its status.
                GuestExit::Exited(code)
            }
            StopReason::Finished(GuestExit::Signaled(sig)) => {
                // A fault goes to the guest's handler if it has one.
                match signals::handle_fault(&process, thread, &sig) {
                    None => return goes_on(SliceEnd::Preempted),
                    Some(StopReason::Finished(exit)) => exit,
                    Some(_) => GuestExit::Signaled(sig),
                }
            }
            StopReason::Finished(exit) => exit,
        };
        group.end(ended);
        let exit = group.exit.get().cloned().unwrap_or(GuestExit::Killed);
        self.release();
        goes_on(SliceEnd::Finished(exit))
    }

    /// Runs slices of `slice` instructions until the process ends, on the calling thread. A
    /// process run this way is not scheduled, so it has one thread and never yields to
    /// anyone, blocks on a waiter or spawns.
    pub fn run_to_end(&mut self, slice: u64) -> GuestExit {
        let slice = slice.max(1);
        loop {
            match self.run_slice(slice).stop {
                SliceEnd::Preempted | SliceEnd::Yielded => {}
                SliceEnd::Blocked(w) => w.wait_blocking(),
                SliceEnd::Spawned(child) => {
                    tracing::error!(thread = %child.id(), "thread spawned outside a scheduler");
                }
                SliceEnd::Forked(_) | SliceEnd::Exec(_) => {}
                SliceEnd::ThreadExited(_) => {
                    return self.exit().cloned().unwrap_or(GuestExit::Killed);
                }
                SliceEnd::Finished(exit) => return exit,
            }
        }
    }

    /// Ends the process now with [`GuestExit::Killed`] (a no-op if it already ended) and
    /// releases this thread.
    pub fn kill(&mut self) {
        self.finish(GuestExit::Killed);
    }

    /// Ends the process with `exit` (unless it already ended) and releases this thread.
    pub(crate) fn finish(&mut self, exit: GuestExit) {
        self.inner.group.end(exit);
        self.release();
    }

    /// Drops this thread's state (the process goes when its last thread lets go of it).
    fn release(&mut self) {
        let inner = &mut *self.inner;
        if let Body::Loaded { process, .. } = &inner.body {
            if !inner.done {
                inner.done = true;
                inner.group.live_threads.fetch_sub(1, Ordering::AcqRel);
                process.sandbox.release_thread();
            }
        }
        inner.done = true;
        inner.body = Body::Released;
        inner.blocked = None;
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
    /// A main coroutine dropped while admitted to a scheduler (taken with `next_coroutine`
    /// and never handed back) is reported to it as killed, so that nobody waits for it
    /// forever. Any thread dropped while its process lives ends the process the same way: a
    /// process cannot go on with a thread missing.
    fn drop(&mut self) {
        if let Some(link) = self.inner.link.take() {
            if !self.inner.done && self.inner.group.exit.get().is_none() {
                self.kill();
            }
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

    fn interp() -> EngineFactory {
        Arc::new(|| Box::new(vm_exec_interp::Interpreter::new()))
    }

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
        let mut c = Coroutine::new(counting(10), small(), interp());
        assert!(!c.is_loaded() && c.thread().is_none());
        let r = c.run_slice(4);
        assert!(matches!(r.stop, SliceEnd::Preempted) && r.retired == 4);
        assert!(c.is_loaded());
        assert_eq!((c.instructions(), c.slices()), (4, 1));
        assert_eq!(c.thread().map(|t| t.cpu.x[10]), Some(3));
        assert_eq!(c.run_to_end(5), GuestExit::Exited(10));
        assert_eq!(c.instructions(), 13);
        assert!(!c.is_loaded() && c.process().is_none());
        assert_eq!(c.engine_stats().instructions, 13);
        assert!(
            matches!(c.run_slice(100).stop, SliceEnd::Finished(GuestExit::Exited(10))),
            "finished stays finished"
        );
        let r = c.result().unwrap();
        assert_eq!((r.id, r.instructions, r.slices), (c.id(), 13, 3));
        assert!(r.pid >= 1000);
    }

    #[test]
    fn kill_and_load_failure() {
        let mut c = Coroutine::new(counting(1000), small(), interp());
        c.run_slice(10);
        c.kill();
        assert_eq!(c.exit(), Some(&GuestExit::Killed));
        assert!(matches!(c.run_slice(10).stop, SliceEnd::Finished(GuestExit::Killed)));
        assert_eq!(c.instructions(), 10);

        let tiny = Arc::new(ProcessConfig { memory_size: 4096, ..Default::default() });
        let mut c = Coroutine::new(counting(1), tiny, interp());
        assert!(c.load().is_err());
        assert!(matches!(c.exit(), Some(GuestExit::LoadFailed(_))));
        assert!(c.load().is_ok(), "nothing left to load");
    }

    #[test]
    fn the_instruction_limit_is_exact() {
        let mut c = Coroutine::new(counting(1000), small(), interp());
        c.set_instruction_limit(Some(25));
        assert_eq!(c.run_to_end(10), GuestExit::InstructionLimit(25));
        assert_eq!(c.instructions(), 25);
        assert_eq!(GuestExit::InstructionLimit(25).shell_status(), 152);
    }

    #[test]
    fn exits_and_statuses() {
        assert!(GuestExit::Exited(256).is_success());
        assert!(!GuestExit::Exited(1).is_success());
        assert_eq!(GuestExit::Exited(-1).shell_status(), 255);
        assert_eq!(GuestExit::Killed.to_string(), "killed");
        assert!(GuestExit::Exited(3).is_guest_exit());
        assert!(!GuestExit::Killed.is_guest_exit());
        assert_ne!(CoroutineId::fresh(), CoroutineId::fresh());
        assert_eq!(CoroutineId(5).to_string(), "co5");
    }
}
