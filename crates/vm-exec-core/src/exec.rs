//! The interface between execution engines and whoever drives them.
//!
//! An [`Executor`] runs one guest thread of one process for at most a given number of
//! instructions (its fuel) and says why it stopped. It handles every system call that can
//! complete at once itself (through [`crate::syscall`]); it returns on exit, on a fatal
//! signal, or when the fuel is spent. Invariants:
//! - When `run` returns, `thread.cpu` is the exact architectural state after the last retired
//!   instruction, so a later `run` continues exactly where this one stopped, with any engine.
//! - `RunResult::retired` counts every instruction that completed, including an `ecall` whose
//!   system call ended the thread, and never exceeds the fuel given.
//! - An engine never panics on guest behaviour: illegal instructions and bad memory accesses
//!   become [`StopReason::Finished`] with [`GuestExit::Signaled`].
//! - An engine instance belongs to one process. It may run any thread of that process, one
//!   call at a time; threads that run at the same time on different host threads use
//!   different engine instances, which share the process (`&Process`) and learn of each
//!   other's code invalidations through the address space's invalidation log.
//! - Stops that a scheduler acts on ([`StopReason::Yielded`], [`StopReason::Blocked`],
//!   [`StopReason::Spawned`]) happen only for a process marked as scheduled; `thread.cpu.pc` is
//!   then past the `ecall`.

use crate::cpu::GuestThread;
use crate::futex::Waiter;
use crate::process::Process;
use std::sync::Arc;
use std::time::Duration;

/// Signal numbers the engines raise (Linux numbering).
pub mod signal {
    /// Illegal instruction.
    pub const SIGILL: i32 = 4;
    /// Breakpoint trap (`ebreak`).
    pub const SIGTRAP: i32 = 5;
    /// Abort (`abort()` raises it).
    pub const SIGABRT: i32 = 6;
    /// Bus error (misaligned atomic).
    pub const SIGBUS: i32 = 7;
    /// Killed.
    pub const SIGKILL: i32 = 9;
    /// Segmentation fault.
    pub const SIGSEGV: i32 = 11;

    /// The name `strsignal` gives a signal, as the kernel and qemu print it.
    pub fn describe(signo: i32) -> &'static str {
        match signo {
            1 => "Hangup",
            2 => "Interrupt",
            3 => "Quit",
            4 => "Illegal instruction",
            5 => "Trace/breakpoint trap",
            6 => "Aborted",
            7 => "Bus error",
            8 => "Floating point exception",
            9 => "Killed",
            10 => "User defined signal 1",
            11 => "Segmentation fault",
            12 => "User defined signal 2",
            13 => "Broken pipe",
            14 => "Alarm clock",
            15 => "Terminated",
            _ => "Unknown signal",
        }
    }
}

/// A fatal signal that ends the guest process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestSignal {
    /// Linux signal number.
    pub signo: i32,
    /// Guest pc of the instruction that raised it (for faults), or of the `ecall` that sent it.
    pub pc: u64,
    /// Faulting data address, for memory faults.
    pub addr: Option<u64>,
}

impl std::fmt::Display for GuestSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "signal {} ({}) at pc {:#x}", self.signo, signal::describe(self.signo), self.pc)?;
        if let Some(a) = self.addr {
            write!(f, ", address {a:#x}")?;
        }
        Ok(())
    }
}

/// Why a slice of guest execution ended: one [`Executor::run`] call, or one slice of a
/// coroutine (which instantiates `T`, the form a newly created thread takes, with its own
/// coroutine type). The one "why did this stop" type from the system-call layer up to the
/// scheduler; [`RunResult`] pairs it with the instructions the slice retired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason<T = Box<GuestThread>> {
    /// The fuel is spent; the thread can be resumed.
    Preempted,
    /// The thread called `sched_yield` (only when a scheduler hosts the process): it can run
    /// again at once, after others had their turn.
    Yielded,
    /// The thread blocked in a system call (only when a scheduler hosts the process): it may
    /// run again once the waiter has ended and [`crate::futex::Waiter::complete`] has written
    /// the call's result.
    Blocked(Arc<Waiter>),
    /// The thread created a new thread with `clone` (only when a scheduler hosts the process):
    /// the new thread is ready to run; the calling thread can be resumed.
    Spawned(T),
    /// The thread called `exit` with this status (low 8 bits); its process goes on unless it
    /// was the last thread (a coroutine then reports [`StopReason::Finished`]).
    ThreadExited(i32),
    /// The process ended. An engine reports [`GuestExit::Exited`] (`exit_group`) and
    /// [`GuestExit::Signaled`] (a fatal signal); the layers above add the other ways.
    Finished(GuestExit),
    /// The thread forked a new process (`fork`, `vfork`, `clone` without `CLONE_VM`; only
    /// when a scheduler hosts the process): the child is ready to run as a new process of
    /// the same scheduler; the calling thread can be resumed. The coroutine layer turns it
    /// into [`StopReason::Spawned`] of the child process's main coroutine.
    Forked(Box<NewProcess>),
    /// The thread replaced its process's image (`execve`; only when a scheduler hosts the
    /// process): the process goes on as `process`, with this thread as its only thread; the
    /// old image's other threads end. The coroutine layer handles it itself.
    Exec(Box<NewProcess>),
}

/// A process made by `fork` or `execve` and its first thread.
#[derive(Clone, Debug)]
pub struct NewProcess {
    /// The process.
    pub process: Arc<Process>,
    /// Its thread, ready to run.
    pub thread: GuestThread,
}

/// Compared by identity of the process and value of the thread.
impl PartialEq for NewProcess {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.process, &other.process) && self.thread == other.thread
    }
}
impl Eq for NewProcess {}

/// What one call of `Executor::run` (or one coroutine slice) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunResult<T = Box<GuestThread>> {
    /// Why it stopped.
    pub stop: StopReason<T>,
    /// Instructions retired during this call.
    pub retired: u64,
}

/// Counters an engine keeps over its lifetime.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutionStats {
    /// Instructions retired.
    pub instructions: u64,
    /// Block executions: entries into a pre-decoded or translated block.
    pub total_executions: u64,
    /// Blocks decoded or translated.
    pub blocks_compiled: u64,
    /// Block lookups served from the cache.
    pub cache_hits: u64,
    /// Block lookups that had to decode or translate.
    pub cache_misses: u64,
    /// Blocks dropped because their code was modified or flushed.
    pub invalidations: u64,
    /// Time spent decoding or translating blocks.
    pub compile_time: Duration,
    /// System calls handled.
    pub syscalls: u64,
}

impl ExecutionStats {
    /// Adds another set of counters to this one.
    pub fn merge(&mut self, o: &ExecutionStats) {
        self.instructions += o.instructions;
        self.total_executions += o.total_executions;
        self.blocks_compiled += o.blocks_compiled;
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
        self.invalidations += o.invalidations;
        self.compile_time += o.compile_time;
        self.syscalls += o.syscalls;
    }
}

/// `SIGXCPU`: the status of a process stopped at its instruction limit is 128 + this.
const SIGXCPU: i32 = 24;

/// How a guest process ended: the one terminal exit type of the project. Engines produce
/// [`GuestExit::Exited`] and [`GuestExit::Signaled`]; the scheduler adds the ways a host ends
/// a guest; the distributed layer's wire type maps onto it for its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestExit {
    /// It called `exit_group` (or its last thread called `exit`) with this status.
    Exited(i32),
    /// A fatal signal (a fault, `abort`, ...) ended it.
    Signaled(GuestSignal),
    /// The host killed it (a scheduler's or coroutine's `kill`, cancellation, shutdown).
    Killed,
    /// The host killed it because its deadline passed.
    DeadlineExceeded,
    /// The process could not be built (the loader's message).
    LoadFailed(String),
    /// The engine panicked while running the guest (a host bug); the message of the panic.
    EnginePanicked(String),
    /// The process retired the most instructions it was allowed (the limit).
    InstructionLimit(u64),
}

impl GuestExit {
    /// The status a shell shows: the low 8 bits of the exit code, 128 + signal for a signal,
    /// 137 (SIGKILL) when killed, 124 (like `timeout(1)`) past the deadline, 127 when the
    /// program could not be loaded, 70 (`EX_SOFTWARE`) when the engine panicked, 152
    /// (`SIGXCPU`, like a CPU-time limit) at the instruction limit.
    pub fn shell_status(&self) -> i32 {
        match self {
            GuestExit::Exited(code) => code & 0xff,
            GuestExit::Signaled(s) => 128 + s.signo,
            GuestExit::Killed => 128 + signal::SIGKILL,
            GuestExit::DeadlineExceeded => 124,
            GuestExit::LoadFailed(_) => 127,
            GuestExit::EnginePanicked(_) => 70,
            GuestExit::InstructionLimit(_) => 128 + SIGXCPU,
        }
    }

    /// Whether the guest exited with status 0.
    pub fn is_success(&self) -> bool {
        matches!(self, GuestExit::Exited(code) if code & 0xff == 0)
    }

    /// Whether the guest ended by itself ([`GuestExit::Exited`] or [`GuestExit::Signaled`]),
    /// not by a decision of the host.
    pub fn is_guest_exit(&self) -> bool {
        matches!(self, GuestExit::Exited(_) | GuestExit::Signaled(_))
    }
}

impl std::fmt::Display for GuestExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestExit::Exited(c) => write!(f, "exited with status {}", c & 0xff),
            GuestExit::Signaled(s) => write!(f, "terminated by {s}"),
            GuestExit::Killed => write!(f, "killed"),
            GuestExit::DeadlineExceeded => write!(f, "killed at its deadline"),
            GuestExit::LoadFailed(m) => write!(f, "could not be loaded: {m}"),
            GuestExit::EnginePanicked(m) => write!(f, "engine panicked: {m}"),
            GuestExit::InstructionLimit(n) => {
                write!(f, "stopped at its limit of {n} instructions")
            }
        }
    }
}

/// An execution engine.
pub trait Executor: Send {
    /// Short engine name (`"interp"`, `"jit"`, ...).
    fn name(&self) -> &'static str;

    /// Runs `thread` of `process` for at most `fuel` instructions.
    fn run(&mut self, thread: &mut GuestThread, process: &Process, fuel: u64) -> RunResult;

    /// Counters since the engine was created.
    fn stats(&self) -> ExecutionStats;
}

impl<E: Executor + ?Sized> Executor for Box<E> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn run(&mut self, thread: &mut GuestThread, process: &Process, fuel: u64) -> RunResult {
        (**self).run(thread, process, fuel)
    }
    fn stats(&self) -> ExecutionStats {
        (**self).stats()
    }
}
