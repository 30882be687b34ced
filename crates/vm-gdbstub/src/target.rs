//! The debugged guest: one process whose threads run one at a time on one engine, so that
//! every instruction can be observed.
//!
//! Invariants:
//! - A thread runs only inside [`Debuggee::resume`] (and `run_to_end`); between calls every
//!   thread's `cpu` is its exact architectural state (the engines guarantee it at `run`'s
//!   return), so registers can be read and written freely.
//! - With no breakpoint and no watchpoint, threads run in slices of [`SLICE`] instructions;
//!   with any, one instruction per `run(fuel = 1)`, checking breakpoints before and
//!   watchpoints after each instruction, which works identically on every engine.
//! - A thread blocked in a system call is parked on its waiter and resumed (its result
//!   written by `Waiter::complete`) once the wait ends; deadlines and readable host
//!   descriptors are checked by this runner, futex wakes come from other guest threads.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vm_exec_core::cpu::GuestThread;
use vm_exec_core::exec::{Executor, GuestExit, GuestSignal, StopReason};
use vm_exec_core::futex::Waiter;
use vm_exec_core::process::Process;

/// Instructions a thread runs before the next one gets its turn.
pub const SLICE: u64 = 20_000;

/// One guest thread.
pub struct DebugThread {
    /// Its registers and ids.
    pub thread: GuestThread,
    /// The wait it is parked on, if it is blocked in a system call.
    pub blocked: Option<Arc<Waiter>>,
}

/// Why the guest stopped (for the stop reply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Stopped with a signal (5 = SIGTRAP after a step or at a breakpoint, 2 = interrupted).
    Signal {
        /// Linux signal number.
        signo: i32,
        /// The thread that stopped.
        tid: i32,
        /// A write watchpoint at this address triggered.
        watch: Option<u64>,
    },
    /// A fatal signal is about to end the process (reported once; resuming ends it).
    Fatal {
        /// The signal.
        signal: GuestSignal,
        /// The thread that raised it.
        tid: i32,
    },
    /// The process exited with this status.
    Exited(i32),
}

/// What resumes the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Run every thread.
    Continue,
    /// Run one instruction of this thread (others stay stopped, unless the instruction is a
    /// system call that blocks: then all run until it returns).
    Step(i32),
}

/// A write watchpoint: the bytes it watches and their last seen value.
struct Watch {
    addr: u64,
    len: u64,
    last: Option<Vec<u8>>,
}

/// The debugged process.
pub struct Debuggee {
    /// The process (scheduled: threads and blocking waits are this runner's to handle).
    pub process: Process,
    /// Its live threads, in creation order.
    pub threads: Vec<DebugThread>,
    engine: Box<dyn Executor>,
    breakpoints: BTreeSet<u64>,
    watches: Vec<Watch>,
    next: usize,
    /// How the process ended, once it has.
    pub exit: Option<GuestExit>,
    pending_fatal: Option<GuestSignal>,
}

impl Debuggee {
    /// A debuggee for a freshly loaded process and its main thread.
    pub fn new(process: Process, main: GuestThread, engine: Box<dyn Executor>) -> Debuggee {
        process.set_scheduled(true);
        Debuggee {
            process,
            threads: vec![DebugThread { thread: main, blocked: None }],
            engine,
            breakpoints: BTreeSet::new(),
            watches: Vec::new(),
            next: 0,
            exit: None,
            pending_fatal: None,
        }
    }

    /// The thread with id `tid`.
    pub fn thread(&self, tid: i32) -> Option<&DebugThread> {
        self.threads.iter().find(|t| t.thread.tid == tid)
    }

    /// The thread with id `tid`, mutably.
    pub fn thread_mut(&mut self, tid: i32) -> Option<&mut DebugThread> {
        self.threads.iter_mut().find(|t| t.thread.tid == tid)
    }

    /// Inserts a software breakpoint (any address: one that is never executed never fires).
    pub fn add_breakpoint(&mut self, addr: u64) {
        self.breakpoints.insert(addr);
    }

    /// Removes a software breakpoint.
    pub fn remove_breakpoint(&mut self, addr: u64) {
        self.breakpoints.remove(&addr);
    }

    /// Inserts a write watchpoint on `len` bytes at `addr` (at most 4096 bytes).
    pub fn add_watch(&mut self, addr: u64, len: u64) -> bool {
        if len == 0 || len > 4096 {
            return false;
        }
        let last = self.read_watch(addr, len);
        self.watches.push(Watch { addr, len, last });
        true
    }

    /// Removes a write watchpoint.
    pub fn remove_watch(&mut self, addr: u64, len: u64) {
        self.watches.retain(|w| !(w.addr == addr && w.len == len));
    }

    /// Forgets every breakpoint and watchpoint (detach).
    pub fn clear_points(&mut self) {
        self.breakpoints.clear();
        self.watches.clear();
    }

    fn read_watch(&self, addr: u64, len: u64) -> Option<Vec<u8>> {
        let mut b = vec![0u8; len as usize];
        self.process.mem.read_bytes(addr, &mut b).ok().map(|_| b)
    }

    fn tracing(&self) -> bool {
        !self.breakpoints.is_empty() || !self.watches.is_empty()
    }

    /// Resumes the guest until it stops. `interrupted` is polled between slices (and while
    /// every thread waits); when it returns true the guest stops with SIGINT.
    pub fn resume(&mut self, how: Resume, interrupted: &mut dyn FnMut(Duration) -> bool) -> Stop {
        if let Some(code) = self.exit.as_ref().map(|e| e.shell_status()) {
            return Stop::Exited(code);
        }
        if let Some(sig) = self.pending_fatal.take() {
            // Resuming after a fatal signal was reported: the process dies of it.
            self.exit = Some(GuestExit::Signaled(sig));
            self.process.begin_exit();
            return Stop::Exited(-1);
        }
        let mut stepping = match how {
            Resume::Step(tid) => {
                let Some(i) = self.threads.iter().position(|t| t.thread.tid == tid) else {
                    return self.stop_signal(5, tid, None);
                };
                if self.threads[i].blocked.is_none() {
                    match self.run_thread(i, 1) {
                        Some(stop) => return stop,
                        None => {
                            if self.threads.get(i).is_some_and(|t| t.blocked.is_none()) {
                                return self.stop_signal(5, tid, None);
                            }
                        }
                    }
                }
                // It blocked in a system call: everyone runs until it returns.
                Some(tid)
            }
            Resume::Continue => None,
        };
        // The thread that was stopped at a breakpoint must not stop there again at once.
        let mut skip_bp: Option<(i32, u64)> =
            self.threads.get(self.next).map(|t| (t.thread.tid, t.thread.cpu.pc));
        if stepping.is_some() {
            skip_bp = None;
        }
        let mut since_poll = 0u64;
        loop {
            self.wake_ready(Duration::ZERO);
            if let Some(tid) = stepping {
                if self.thread(tid).is_some_and(|t| t.blocked.is_none()) {
                    return self.stop_signal(5, tid, None);
                }
                if self.thread(tid).is_none() {
                    stepping = None;
                }
            }
            if since_poll >= SLICE {
                since_poll = 0;
                if interrupted(Duration::ZERO) {
                    let tid = self.current_tid();
                    return self.stop_signal(2, tid, None);
                }
            }
            let Some(i) = self.pick() else {
                if self.threads.is_empty() {
                    return Stop::Exited(self.exit.as_ref().map_or(0, |e| e.shell_status()));
                }
                // Everyone waits: sleep until a deadline, a readable descriptor or gdb.
                let wait = self.next_deadline().unwrap_or(Duration::from_millis(20));
                self.wake_ready(wait.min(Duration::from_millis(10)));
                if interrupted(wait.min(Duration::from_millis(10))) {
                    let tid = self.current_tid();
                    return self.stop_signal(2, tid, None);
                }
                continue;
            };
            self.next = i;
            let tid = self.threads[i].thread.tid;
            if !self.tracing() {
                since_poll += SLICE;
                if let Some(stop) = self.run_thread(i, SLICE) {
                    return stop;
                }
                self.next = i + 1;
                continue;
            }
            for _ in 0..SLICE {
                since_poll += 1;
                let pc = self.threads[i].thread.cpu.pc;
                let skip = skip_bp.take() == Some((tid, pc));
                if !skip && self.breakpoints.contains(&pc) {
                    return self.stop_signal(5, tid, None);
                }
                if let Some(stop) = self.run_thread(i, 1) {
                    return stop;
                }
                if let Some(addr) = self.check_watches() {
                    return self.stop_signal(5, tid, Some(addr));
                }
                // The thread ended, blocked, or yielded: next thread.
                if self.threads.get(i).is_none_or(|t| t.thread.tid != tid || t.blocked.is_some()) {
                    break;
                }
            }
            self.next = i + 1;
        }
    }

    fn current_tid(&self) -> i32 {
        self.threads.get(self.next).or(self.threads.first()).map_or(0, |t| t.thread.tid)
    }

    fn stop_signal(&mut self, signo: i32, tid: i32, watch: Option<u64>) -> Stop {
        if let Some(i) = self.threads.iter().position(|t| t.thread.tid == tid) {
            self.next = i;
        }
        Stop::Signal { signo, tid, watch }
    }

    /// Picks the next runnable thread, round robin from `self.next`.
    fn pick(&self) -> Option<usize> {
        let n = self.threads.len();
        (0..n).map(|k| (self.next + k) % n.max(1)).find(|&i| self.threads[i].blocked.is_none())
    }

    fn check_watches(&mut self) -> Option<u64> {
        let mut hit = None;
        for k in 0..self.watches.len() {
            let (addr, len) = (self.watches[k].addr, self.watches[k].len);
            let now = self.read_watch(addr, len);
            if now != self.watches[k].last {
                self.watches[k].last = now;
                hit.get_or_insert(addr);
            }
        }
        hit
    }

    /// Runs thread `i` for `fuel` instructions and acts on why it stopped; returns a stop
    /// for gdb when the process ended or a fatal signal came.
    fn run_thread(&mut self, i: usize, fuel: u64) -> Option<Stop> {
        let r = {
            let t = &mut self.threads[i];
            self.engine.run(&mut t.thread, &self.process, fuel)
        };
        match r.stop {
            StopReason::Preempted | StopReason::Yielded => None,
            StopReason::Blocked(w) => {
                self.threads[i].blocked = Some(w);
                None
            }
            StopReason::Spawned(t) => {
                self.threads.push(DebugThread { thread: *t, blocked: None });
                None
            }
            StopReason::ThreadExited(code) => {
                self.threads.remove(i);
                if self.threads.is_empty() {
                    self.exit = Some(GuestExit::Exited(code));
                    return Some(Stop::Exited(code & 0xff));
                }
                if self.next >= self.threads.len() {
                    self.next = 0;
                }
                None
            }
            StopReason::Finished(GuestExit::Exited(code)) => {
                self.process.begin_exit();
                self.process.futexes.cancel_all();
                self.threads.clear();
                self.exit = Some(GuestExit::Exited(code));
                Some(Stop::Exited(code & 0xff))
            }
            StopReason::Finished(GuestExit::Signaled(sig)) => {
                let tid = self.threads[i].thread.tid;
                self.next = i;
                self.pending_fatal = Some(sig.clone());
                Some(Stop::Fatal { signal: sig, tid })
            }
            // The debuggee is one process on one engine: a fork's child or an exec'd image
            // would need engines and a scheduler of their own. Said, not simulated.
            StopReason::Forked(_) | StopReason::Exec(_) => {
                self.process.begin_exit();
                self.process.futexes.cancel_all();
                self.threads.clear();
                let e = GuestExit::LoadFailed(
                    "fork and execve are not supported under --gdb (run without --gdb)".into(),
                );
                let code = e.shell_status();
                self.exit = Some(e);
                Some(Stop::Exited(code))
            }
            // Engines report only the two above; anything else ends the process as it says.
            StopReason::Finished(other) => {
                self.process.begin_exit();
                self.process.futexes.cancel_all();
                self.threads.clear();
                let code = other.shell_status();
                self.exit = Some(other);
                Some(Stop::Exited(code))
            }
        }
    }

    /// Completes the waits that ended (woken by another thread, past their deadline, or a
    /// readable descriptor), waiting at most `timeout` for a descriptor.
    fn wake_ready(&mut self, timeout: Duration) {
        let now = Instant::now();
        let mut fds = Vec::new();
        for t in &self.threads {
            if let Some(w) = &t.blocked {
                if w.deadline().is_some_and(|d| d <= now) {
                    w.expire();
                }
                if w.is_waiting() {
                    for &(fd, events) in w.watched() {
                        fds.push(libc::pollfd { fd, events, revents: 0 });
                    }
                }
            }
        }
        if !fds.is_empty() {
            let ms = timeout.as_millis().min(1000) as i32;
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if n > 0 {
                for f in fds.iter().filter(|f| f.revents != 0) {
                    for t in &self.threads {
                        if let Some(w) = &t.blocked {
                            if w.watched().iter().any(|&(fd, _)| fd == f.fd) {
                                w.wake();
                            }
                        }
                    }
                }
            }
        }
        for t in &mut self.threads {
            if t.blocked.as_ref().is_some_and(|w| !w.is_waiting()) {
                if let Some(w) = t.blocked.take() {
                    w.complete(&mut t.thread);
                }
            }
        }
    }

    /// Time until the nearest deadline of a blocked thread.
    fn next_deadline(&self) -> Option<Duration> {
        let now = Instant::now();
        self.threads
            .iter()
            .filter_map(|t| t.blocked.as_ref()?.deadline())
            .min()
            .map(|d| d.saturating_duration_since(now))
    }

    /// Runs the guest to its end with no debugger attached (after a detach).
    pub fn run_to_end(&mut self) -> GuestExit {
        self.clear_points();
        loop {
            match self.resume(Resume::Continue, &mut |d| {
                std::thread::sleep(d);
                false
            }) {
                Stop::Exited(_) => {
                    return self.exit.clone().unwrap_or(GuestExit::Exited(0));
                }
                Stop::Fatal { .. } | Stop::Signal { .. } => continue,
            }
        }
    }
}
