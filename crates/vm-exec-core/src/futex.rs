//! Blocking system calls without blocking a host thread: [`Waiter`]s and the per-process
//! [`FutexTable`].
//!
//! When a process is hosted by a scheduler ([`crate::process::Process::is_scheduled`]), a
//! system call that must wait (`futex` wait, `nanosleep`, ...) does not block the host thread:
//! the syscall layer creates a [`Waiter`], the engine stops with
//! [`crate::exec::StopReason::Blocked`], and the scheduler parks the guest thread on the waiter
//! ([`Waiter::on_ready`]) and arms a timer for its deadline. Whoever ends the wait (a futex
//! wake, the timer, process exit) completes the waiter, which hands the thread back to the
//! scheduler; before the thread runs again, [`Waiter::complete`] writes the system call's
//! result to `a0`.
//!
//! Invariants:
//! - A waiter ends exactly once: the first of wake, timeout and cancel wins (an atomic
//!   transition out of the waiting state); the others do nothing.
//! - The continuation given to [`Waiter::on_ready`] runs exactly once, after the waiter ended,
//!   whether it was installed before or after that (no lost wake-up): it is installed and
//!   taken under one lock, and the state is checked under that lock.
//! - A futex wait checks the guest word and enqueues itself under the table's lock, and a wake
//!   dequeues under the same lock, so a wake that follows a guest's change of the word always
//!   finds every waiter that saw the old value (the futex contract).
//! - Waiters that ended by timeout or cancellation may stay queued until the next wait or wake
//!   on the same address sweeps them; they are never woken twice and never counted by a wake.
//! - Sleeps and readiness waits are registered in the table too (under a key no futex word
//!   has), so that process exit cancels them like futex waits.
//! - Every table operation costs O(1) amortized per waiter: ended waiters are swept from the
//!   front of a queue as it is used and by a whole-queue sweep only when the queue has doubled
//!   since the last one, and a wake of `n` takes from the front, so 100,000 waiters on one
//!   word cost linear, not quadratic, time.
//! - Interruption: a signal that must interrupt a parked call ends its wait with
//!   [`Waiter::interrupt`] (the call returns `-EINTR`), the same transition as cancellation.

use crate::cpu::{reg, GuestThread};
use crate::memory::{AddressSpace, MemFault};
use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// A futex bitset that matches every waiter (`FUTEX_BITSET_MATCH_ANY`).
pub const MATCH_ANY: u32 = u32::MAX;

const WAITING: u8 = 0;
const WOKEN: u8 = 1;
const TIMED_OUT: u8 = 2;
const CANCELLED: u8 = 3;
const INTERRUPTED: u8 = 4;

/// What a blocked guest thread waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKind {
    /// A futex wake on this guest address (or the deadline: `-ETIMEDOUT`).
    Futex {
        /// The futex word's guest address.
        addr: u64,
    },
    /// Only the deadline (`nanosleep`, `clock_nanosleep`): the call then returns 0.
    Sleep,
    /// One of the host descriptors in [`Waiter::watched`] becoming ready (a `read` of an
    /// empty pipe, `poll`, `epoll_wait`, `select`, a blocking socket call), or the deadline.
    /// Either way the call is made again: completing the wait puts the thread back on its
    /// `ecall` with its original first argument, and records the deadline in
    /// [`GuestThread::resume_deadline`] so that the restarted call waits no longer than the
    /// first one was to.
    Ready {
        /// The guest's `a0` for the restarted call.
        restart_a0: u64,
    },
    /// Only a signal (or the process's end): `pause`, `rt_sigsuspend`. Never restarted.
    Pause,
    /// A wake on an event key of the process's table (not a guest word: a child's exit for
    /// `wait4`, see [`crate::sandbox::CHILD_KEY`]); the call is then made again, like a
    /// readiness wait.
    Event {
        /// The table key woken.
        key: u64,
        /// The guest's `a0` for the restarted call.
        restart_a0: u64,
    },
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEnd {
    /// Woken (futex wake).
    Woken,
    /// The deadline passed.
    TimedOut,
    /// The process is ending (or the wait was abandoned): the thread will not run again.
    Cancelled,
    /// A signal interrupted it: the call returns `EINTR` (or is restarted, see
    /// [`crate::signals::unpark`]).
    Interrupted,
}

type Continuation = Box<dyn FnOnce() + Send>;

/// One blocked system call of one guest thread. See the module docs.
pub struct Waiter {
    state: AtomicU8,
    kind: WaitKind,
    bitset: u32,
    deadline: Option<Instant>,
    /// Host descriptors and `poll` events a [`WaitKind::Ready`] wait watches.
    watch: Box<[(RawFd, i16)]>,
    /// Bytes a parked pipe write already wrote (see [`Waiter::partial`]).
    partial: u64,
    then: Mutex<Option<Continuation>>,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("kind", &self.kind)
            .field("deadline", &self.deadline)
            .field("end", &self.end())
            .finish_non_exhaustive()
    }
}

/// Waiters are compared by identity.
impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
impl Eq for Waiter {}

impl Waiter {
    fn new(kind: WaitKind, bitset: u32, deadline: Option<Instant>) -> Arc<Waiter> {
        Arc::new(Waiter {
            state: AtomicU8::new(WAITING),
            kind,
            bitset,
            deadline,
            watch: Box::new([]),
            partial: 0,
            then: Mutex::new(None),
        })
    }

    /// A wait that only a deadline ends (a sleep).
    pub fn sleep(deadline: Instant) -> Arc<Waiter> {
        Waiter::new(WaitKind::Sleep, 0, Some(deadline))
    }

    /// A wait for host descriptor `host_fd` to become readable, after which the system call
    /// is made again with `a0 = restart_a0`.
    pub fn readable(host_fd: RawFd, restart_a0: u64) -> Arc<Waiter> {
        Waiter::ready(vec![(host_fd, libc::POLLIN)], None, restart_a0)
    }

    /// A wait for any of `watch` (host descriptor, `poll` events) to become ready or for
    /// `deadline`, after which the system call is made again with `a0 = restart_a0`. With
    /// nothing to watch and no deadline it lasts until cancelled or interrupted.
    pub fn ready(
        watch: Vec<(RawFd, i16)>,
        deadline: Option<Instant>,
        restart_a0: u64,
    ) -> Arc<Waiter> {
        Arc::new(Waiter {
            state: AtomicU8::new(WAITING),
            kind: WaitKind::Ready { restart_a0 },
            bitset: 0,
            deadline,
            watch: watch.into_boxed_slice(),
            partial: 0,
            then: Mutex::new(None),
        })
    }

    /// A readiness wait (no descriptors, no deadline) of a blocking pipe write that already
    /// wrote `partial` bytes: woken, the call is made again and goes on after them
    /// ([`GuestThread::resume_partial`]); interrupted, it returns `partial` (as Linux returns
    /// a partial write's count) and is not restarted.
    pub fn write_progress(partial: u64, restart_a0: u64) -> Arc<Waiter> {
        Arc::new(Waiter {
            state: AtomicU8::new(WAITING),
            kind: WaitKind::Ready { restart_a0 },
            bitset: 0,
            deadline: None,
            watch: Box::new([]),
            partial,
            then: Mutex::new(None),
        })
    }

    /// A wait for host descriptor `host_fd` (a pipe or socket) to become writable, of a
    /// blocking write that already wrote `partial` bytes: woken, the call is made again and
    /// goes on after them; interrupted with `partial > 0`, it returns `partial`.
    pub fn writable(host_fd: RawFd, partial: u64, restart_a0: u64) -> Arc<Waiter> {
        Arc::new(Waiter {
            state: AtomicU8::new(WAITING),
            kind: WaitKind::Ready { restart_a0 },
            bitset: 0,
            deadline: None,
            watch: Box::new([(host_fd, libc::POLLOUT)]),
            partial,
            then: Mutex::new(None),
        })
    }

    /// Bytes a parked pipe write already wrote (0 for every other wait).
    pub fn partial(&self) -> u64 {
        self.partial
    }

    /// The host descriptors (and `poll` events) whose readiness ends the wait; empty unless
    /// it is a [`WaitKind::Ready`] wait.
    pub fn watched(&self) -> &[(RawFd, i16)] {
        &self.watch
    }

    /// What it waits for.
    pub fn kind(&self) -> WaitKind {
        self.kind
    }

    /// When it times out, if ever.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// How it ended; `None` while still waiting.
    pub fn end(&self) -> Option<WaitEnd> {
        match self.state.load(Ordering::Acquire) {
            WOKEN => Some(WaitEnd::Woken),
            TIMED_OUT => Some(WaitEnd::TimedOut),
            CANCELLED => Some(WaitEnd::Cancelled),
            INTERRUPTED => Some(WaitEnd::Interrupted),
            _ => None,
        }
    }

    /// Whether it is still waiting.
    pub fn is_waiting(&self) -> bool {
        self.state.load(Ordering::Acquire) == WAITING
    }

    fn lock_then(&self) -> MutexGuard<'_, Option<Continuation>> {
        self.then.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the wait with `to` if it is still waiting, and runs the continuation if one is
    /// installed. Returns whether this call ended it.
    fn finish(&self, to: u8) -> bool {
        if self.state.compare_exchange(WAITING, to, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return false;
        }
        let then = self.lock_then().take();
        if let Some(f) = then {
            f();
        }
        true
    }

    /// Ends the wait because what it waits for happened (a readiness poller calls this).
    /// Returns whether this call ended it.
    pub fn wake(&self) -> bool {
        self.finish(WOKEN)
    }

    /// Ends the wait as timed out (the scheduler's timer calls this at the deadline). Returns
    /// whether this call ended it.
    pub fn expire(&self) -> bool {
        self.finish(TIMED_OUT)
    }

    /// Ends the wait as cancelled (the process is going away). Returns whether this call
    /// ended it.
    pub fn cancel(&self) -> bool {
        self.finish(CANCELLED)
    }

    /// Ends the wait because a signal arrived for the thread: the call returns `-EINTR`
    /// unless it is restarted. Returns whether this call ended it.
    pub fn interrupt(&self) -> bool {
        self.finish(INTERRUPTED)
    }

    /// Runs `f` once the wait has ended: now if it already has, else when it ends.
    pub fn on_ready(&self, f: Box<dyn FnOnce() + Send>) {
        let mut slot = self.lock_then();
        if self.is_waiting() {
            *slot = Some(f);
            return;
        }
        drop(slot);
        f();
    }

    /// The system call's result, once ended: 0 when woken or for a sleep, `-ETIMEDOUT` for a
    /// futex wait that timed out, `-EINTR` when cancelled. (A readiness wait restarts its
    /// call instead; see [`Waiter::complete`].)
    pub fn result(&self) -> u64 {
        let errno = match (self.end(), self.kind) {
            (Some(WaitEnd::Woken), _) | (Some(WaitEnd::TimedOut), WaitKind::Sleep) => 0,
            (Some(WaitEnd::TimedOut), _) => libc::ETIMEDOUT,
            (Some(WaitEnd::Cancelled | WaitEnd::Interrupted), _) | (None, _) => libc::EINTR,
        };
        (-(errno as i64)) as u64
    }

    /// The last step of the system call, before the thread runs again: writes the result to
    /// `a0`; for a readiness wait that was woken or timed out, puts the thread back on its
    /// `ecall` (4 bytes before the pc) with its original `a0` and its deadline in
    /// [`GuestThread::resume_deadline`], so the call is made again and waits no longer.
    pub fn complete(&self, thread: &mut GuestThread) {
        let restarted = match (self.kind, self.end()) {
            (WaitKind::Ready { restart_a0 }, Some(WaitEnd::Woken | WaitEnd::TimedOut)) => {
                thread.cpu.x[reg::A0] = restart_a0;
                thread.cpu.pc = thread.cpu.pc.wrapping_sub(4);
                thread.resume_deadline = self.deadline;
                thread.resume_partial = self.partial;
                true
            }
            (WaitKind::Ready { .. }, _) if self.partial > 0 => {
                thread.cpu.x[reg::A0] = self.partial;
                false
            }
            (WaitKind::Event { restart_a0, .. }, Some(WaitEnd::Woken)) => {
                thread.cpu.x[reg::A0] = restart_a0;
                thread.cpu.pc = thread.cpu.pc.wrapping_sub(4);
                true
            }
            _ => {
                thread.cpu.x[reg::A0] = self.result();
                false
            }
        };
        crate::syscall::strace::after_wait(self, thread.cpu.x[reg::A0], restarted);
    }

    /// Blocks the calling host thread until the wait ends, expiring it at its deadline. For
    /// callers that drive a guest thread without a scheduler; a wait with no deadline that
    /// nobody ends blocks forever, as it would under Linux.
    pub fn wait_blocking(&self) {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = pair.clone();
        self.on_ready(Box::new(move || {
            *signal.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
            signal.1.notify_all();
        }));
        let mut done = pair.0.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            match self.deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => {
                        done = pair.1.wait_timeout(done, left).unwrap_or_else(|e| e.into_inner()).0;
                    }
                    _ => {
                        drop(done);
                        self.expire();
                        done = pair.0.lock().unwrap_or_else(|e| e.into_inner());
                    }
                },
                None => done = pair.1.wait(done).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// Queue key of sleeping waiters (no guest address is `u64::MAX`: futex words are aligned).
const SLEEP_KEY: u64 = u64::MAX;
/// Queue key of readiness waits (unaligned too).
const READY_KEY: u64 = u64::MAX - 1;

/// The futex wait queues of one process, keyed by guest address. Private and shared futexes
/// use the same table: processes share no memory, so a shared futex is only ever reached
/// through the same address space.
#[derive(Debug, Default)]
pub struct FutexTable {
    queues: Mutex<HashMap<u64, Queue>>,
    /// Whether readiness waits may be queued (set when one is registered, cleared by
    /// [`FutexTable::poke_ready`] when it finds none), so that pokes cost one load otherwise.
    maybe_ready: AtomicBool,
    /// Set by [`FutexTable::cancel_all`] (the process is ending), under the queue lock: a
    /// wait registered afterwards is cancelled at once, so a thread that was between system
    /// call entry and parking when its process was killed does not park for ever.
    closed: AtomicBool,
}

/// The waiters of one address, oldest first, possibly with ended ones among them.
#[derive(Debug, Default)]
struct Queue {
    waiters: VecDeque<Arc<Waiter>>,
    /// Length at which the next whole-queue sweep of ended waiters happens (twice the live
    /// length after the previous sweep), keeping sweeps O(1) amortized per push.
    sweep_at: usize,
}

/// Smallest queue that is ever swept whole.
const MIN_SWEEP: usize = 64;

impl Queue {
    /// Appends `w`, dropping ended waiters at the front and, when the queue has doubled since
    /// the last sweep, everywhere.
    fn push(&mut self, w: Arc<Waiter>) {
        while self.waiters.front().is_some_and(|w| !w.is_waiting()) {
            self.waiters.pop_front();
        }
        if self.waiters.len() >= self.sweep_at.max(MIN_SWEEP) {
            self.waiters.retain(|w| w.is_waiting());
            self.sweep_at = 2 * self.waiters.len();
        }
        self.waiters.push_back(w);
    }
}

/// Why a futex wait did not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitError {
    /// The word does not hold the expected value (`EAGAIN`).
    ValueChanged,
    /// The word is not readable (`EFAULT`).
    Fault(MemFault),
}

impl FutexTable {
    fn queues(&self) -> MutexGuard<'_, HashMap<u64, Queue>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `FUTEX_WAIT`: if the 32-bit word at `addr` holds `expected`, enqueues and returns a
    /// waiter that a wake with an overlapping `bitset` ends.
    pub fn wait(
        &self,
        mem: &AddressSpace,
        addr: u64,
        expected: u32,
        bitset: u32,
        deadline: Option<Instant>,
    ) -> Result<Arc<Waiter>, WaitError> {
        let mut queues = self.queues();
        let now = mem.read_u32(addr).map_err(WaitError::Fault)?;
        if now != expected {
            return Err(WaitError::ValueChanged);
        }
        let w = Waiter::new(WaitKind::Futex { addr }, bitset, deadline);
        self.enqueue(&mut queues, addr, w.clone());
        Ok(w)
    }

    /// Registers a sleep until `deadline`, so that [`FutexTable::cancel_all`] ends it too.
    pub fn sleep(&self, deadline: Instant) -> Arc<Waiter> {
        self.register(Waiter::sleep(deadline))
    }

    /// Registers a wait for a host descriptor to become readable (see [`Waiter::readable`]),
    /// so that [`FutexTable::cancel_all`] ends it too.
    pub fn readable(&self, host_fd: RawFd, restart_a0: u64) -> Arc<Waiter> {
        self.register(Waiter::readable(host_fd, restart_a0))
    }

    /// Registers a parked pipe write's wait (see [`Waiter::write_progress`]), so that
    /// [`FutexTable::cancel_all`] ends it too.
    pub fn write_progress(&self, partial: u64, restart_a0: u64) -> Arc<Waiter> {
        self.register(Waiter::write_progress(partial, restart_a0))
    }

    /// Registers a readiness wait (see [`Waiter::ready`]), so that
    /// [`FutexTable::cancel_all`] ends it too.
    pub fn ready(
        &self,
        watch: Vec<(RawFd, i16)>,
        deadline: Option<Instant>,
        restart_a0: u64,
    ) -> Arc<Waiter> {
        let w = Waiter::ready(watch, deadline, restart_a0);
        if w.watched().is_empty() {
            // Nothing for `poke_ready` to poll (a wait on in-memory pipes, which wake it
            // themselves): registered for `cancel_all` only.
            return self.register(w);
        }
        let mut queues = self.queues();
        self.enqueue(&mut queues, READY_KEY, w.clone());
        self.maybe_ready.store(true, Ordering::Release);
        w
    }

    /// Registers a wait for a host pipe or socket to become writable (see
    /// [`Waiter::writable`]), watched like any readiness wait, so that
    /// [`FutexTable::cancel_all`] ends it too.
    pub fn writable(&self, host_fd: RawFd, partial: u64, restart_a0: u64) -> Arc<Waiter> {
        let w = Waiter::writable(host_fd, partial, restart_a0);
        let mut queues = self.queues();
        self.enqueue(&mut queues, READY_KEY, w.clone());
        self.maybe_ready.store(true, Ordering::Release);
        w
    }

    /// Wakes, on the calling thread, every readiness wait of this process whose descriptors
    /// are ready now. A guest thread calls it right after a write or close that may have made
    /// a sibling's descriptor ready, so that the sibling runs again without a round trip
    /// through the scheduler's poller thread (which would wake it too, later). Costs one
    /// atomic load when no readiness wait is queued.
    pub fn poke_ready(&self) {
        if !self.maybe_ready.load(Ordering::Acquire) {
            return;
        }
        let waiting: Vec<Arc<Waiter>> = {
            let mut queues = self.queues();
            let Some(q) = queues.get_mut(&READY_KEY) else {
                self.maybe_ready.store(false, Ordering::Release);
                return;
            };
            q.waiters.retain(|w| w.is_waiting());
            if q.waiters.is_empty() {
                queues.remove(&READY_KEY);
                self.maybe_ready.store(false, Ordering::Release);
                return;
            }
            q.waiters.iter().cloned().collect()
        };
        for w in waiting {
            let mut pfds: Vec<libc::pollfd> = w
                .watched()
                .iter()
                .map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 })
                .collect();
            if pfds.is_empty() {
                continue;
            }
            // SAFETY: `pfds` is a live vector of `pfds.len()` pollfd structures; zero timeout.
            if unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 0) } > 0 {
                w.wake();
            }
        }
    }

    /// Enqueues a wait for a wake of the event `key` (see [`WaitKind::Event`]); a
    /// [`FutexTable::wake`] of `key` ends it, and [`FutexTable::cancel_all`] too.
    pub fn wait_event(&self, key: u64, restart_a0: u64) -> Arc<Waiter> {
        let w = Waiter::new(WaitKind::Event { key, restart_a0 }, MATCH_ANY, None);
        self.enqueue(&mut self.queues(), key, w.clone());
        w
    }

    /// Registers a wait that only a signal ends ([`WaitKind::Pause`]).
    pub fn pause(&self) -> Arc<Waiter> {
        self.register(Waiter::new(WaitKind::Pause, 0, None))
    }

    fn register(&self, w: Arc<Waiter>) -> Arc<Waiter> {
        self.enqueue(&mut self.queues(), SLEEP_KEY, w.clone());
        w
    }

    /// Queues `w` under `key` (the caller holds the queue lock), or cancels it at once when
    /// the table is closed.
    fn enqueue(&self, queues: &mut HashMap<u64, Queue>, key: u64, w: Arc<Waiter>) {
        if self.closed.load(Ordering::Acquire) {
            w.cancel();
        } else {
            queues.entry(key).or_default().push(w);
        }
    }

    /// Takes up to `n` waiting waiters on `addr` whose bitset overlaps `bitset`, oldest first.
    /// With `MATCH_ANY` this takes from the front only (O(taken + ended) work); a narrower
    /// bitset scans the queue.
    fn take(
        queues: &mut HashMap<u64, Queue>,
        addr: u64,
        n: usize,
        bitset: u32,
        out: &mut Vec<Arc<Waiter>>,
    ) {
        let Some(q) = queues.get_mut(&addr) else { return };
        let q = &mut q.waiters;
        let mut taken = 0;
        if bitset == MATCH_ANY {
            while taken < n {
                match q.front() {
                    None => break,
                    Some(w) if !w.is_waiting() => drop(q.pop_front()),
                    // Sleeps and readiness waits (bitset 0) are never woken by an address.
                    Some(w) if w.bitset == 0 => break,
                    Some(_) => {
                        if let Some(w) = q.pop_front() {
                            taken += 1;
                            out.push(w);
                        }
                    }
                }
            }
        } else {
            q.retain(|w| {
                if !w.is_waiting() {
                    return false;
                }
                if taken < n && w.bitset & bitset != 0 {
                    taken += 1;
                    out.push(w.clone());
                    return false;
                }
                true
            });
        }
        if q.is_empty() {
            queues.remove(&addr);
        }
    }

    /// `FUTEX_WAKE`: wakes up to `n` waiters on `addr` whose bitset overlaps `bitset`; returns
    /// how many it woke.
    pub fn wake(&self, addr: u64, n: usize, bitset: u32) -> usize {
        let mut batch = Vec::new();
        Self::take(&mut self.queues(), addr, n, bitset, &mut batch);
        // A waiter taken here can still have been ended by its timer in between; only the
        // ones this wake ended count.
        batch.into_iter().filter(|w| w.finish(WOKEN)).count()
    }

    /// `FUTEX_REQUEUE`: wakes up to `n_wake` waiters on `addr` and moves up to `n_move` of the
    /// rest to `addr2`. Returns `(woken, moved)`.
    pub fn requeue(&self, addr: u64, n_wake: usize, addr2: u64, n_move: usize) -> (usize, usize) {
        let mut woken = Vec::new();
        let mut moved = Vec::new();
        {
            let mut queues = self.queues();
            Self::take(&mut queues, addr, n_wake, MATCH_ANY, &mut woken);
            Self::take(&mut queues, addr, n_move, MATCH_ANY, &mut moved);
            if !moved.is_empty() {
                let q = queues.entry(addr2).or_default();
                for w in &moved {
                    q.push(w.clone());
                }
            }
        }
        (woken.into_iter().filter(|w| w.finish(WOKEN)).count(), moved.len())
    }

    /// Cancels every waiter of the process (it is exiting): their threads get their
    /// continuations back and must not run guest code again. The table stays closed: a wait
    /// registered later (by a thread that had not parked yet) is cancelled at once.
    pub fn cancel_all(&self) -> usize {
        let all: Vec<Arc<Waiter>> = {
            let mut queues = self.queues();
            self.closed.store(true, Ordering::Release);
            queues.drain().flat_map(|(_, q)| q.waiters).collect()
        };
        all.into_iter().filter(|w| w.cancel()).count()
    }

    /// Waiters still waiting (for statistics and tests).
    pub fn waiting(&self) -> usize {
        self.queues().values().flat_map(|q| &q.waiters).filter(|w| w.is_waiting()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{PERM_READ, PERM_WRITE};
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn mem() -> AddressSpace {
        let m = AddressSpace::new(1 << 20).unwrap();
        m.map_fixed(0x1000, 0x1000, PERM_READ | PERM_WRITE).unwrap();
        m
    }

    fn counter() -> (Arc<AtomicUsize>, impl Fn() -> Box<dyn FnOnce() + Send>) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        (n, move || {
            let m = m.clone();
            Box::new(move || {
                m.fetch_add(1, Ordering::SeqCst);
            }) as Box<dyn FnOnce() + Send>
        })
    }

    #[test]
    fn wait_checks_the_value_and_wake_runs_the_continuation_once() {
        let (m, t) = (mem(), FutexTable::default());
        assert_eq!(t.wait(&m, 0x1000, 1, MATCH_ANY, None), Err(WaitError::ValueChanged));
        assert!(matches!(t.wait(&m, 0x9000, 0, MATCH_ANY, None), Err(WaitError::Fault(_))));
        let (ran, cont) = counter();
        let w = t.wait(&m, 0x1000, 0, MATCH_ANY, None).unwrap();
        w.on_ready(cont());
        assert_eq!(t.wake(0x1004, 1, MATCH_ANY), 0, "other address");
        assert_eq!(t.wake(0x1000, 5, MATCH_ANY), 1);
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert!(!w.expire() && !w.cancel(), "ends once");
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert_eq!(w.result(), 0);
        assert_eq!(t.wake(0x1000, 5, MATCH_ANY), 0);
    }

    #[test]
    fn a_continuation_installed_after_the_wake_runs_at_once() {
        let (m, t) = (mem(), FutexTable::default());
        let w = t.wait(&m, 0x1000, 0, MATCH_ANY, None).unwrap();
        assert_eq!(t.wake(0x1000, 1, MATCH_ANY), 1);
        let (ran, cont) = counter();
        w.on_ready(cont());
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn wake_respects_count_order_and_bitsets() {
        let (m, t) = (mem(), FutexTable::default());
        let ws: Vec<_> =
            (0..4).map(|i| t.wait(&m, 0x1000, 0, 1 << i, None).unwrap()).collect::<Vec<_>>();
        assert_eq!(t.wake(0x1000, 1, 0b1100), 1);
        assert!(ws[2].end().is_some() && ws[3].is_waiting(), "oldest matching first");
        assert_eq!(t.wake(0x1000, 10, MATCH_ANY), 3);
        assert_eq!(t.waiting(), 0);
    }

    #[test]
    fn timeouts_and_cancellation_give_their_results() {
        let (m, t) = (mem(), FutexTable::default());
        let w = t.wait(&m, 0x1000, 0, MATCH_ANY, Some(Instant::now())).unwrap();
        assert!(w.expire());
        assert_eq!(w.result() as i64, -(libc::ETIMEDOUT as i64));
        assert_eq!(t.wake(0x1000, 1, MATCH_ANY), 0, "a timed-out waiter is not counted");
        let s = t.sleep(Instant::now() + Duration::from_secs(100));
        let f = t.wait(&m, 0x1000, 0, MATCH_ANY, None).unwrap();
        assert_eq!(t.cancel_all(), 2);
        assert_eq!((s.end(), f.end()), (Some(WaitEnd::Cancelled), Some(WaitEnd::Cancelled)));
        assert_eq!(f.result() as i64, -(libc::EINTR as i64));
        let s = Waiter::sleep(Instant::now());
        s.expire();
        assert_eq!(s.result(), 0, "a sleep that ran out returns 0");
    }

    #[test]
    fn a_wait_registered_after_cancel_all_is_cancelled_at_once() {
        // A thread killed between entering a blocking call and parking (the fork bomb's
        // children: `kill(SIGKILL)` lands while the child is on its way into `pause`) must not
        // park for ever: every kind of wait registered after the process ended is ended.
        let (m, t) = (mem(), FutexTable::default());
        assert_eq!(t.cancel_all(), 0);
        let waits = [
            t.pause(),
            t.wait_event(7, 0),
            t.sleep(Instant::now() + Duration::from_secs(100)),
            t.ready(vec![(0, libc::POLLIN)], None, 0),
            t.wait(&m, 0x1000, 0, MATCH_ANY, None).unwrap(),
        ];
        for w in &waits {
            assert_eq!(w.end(), Some(WaitEnd::Cancelled));
        }
        assert_eq!(t.waiting(), 0);
    }

    #[test]
    fn a_hundred_thousand_waiters_on_one_word_are_linear() {
        // Each wait and each wake of one is O(1) amortized: with the old whole-queue sweep on
        // every wait this took minutes in a debug build.
        let (m, t) = (mem(), FutexTable::default());
        let n = 100_000;
        let ws: Vec<_> = (0..n).map(|_| t.wait(&m, 0x1000, 0, MATCH_ANY, None).unwrap()).collect();
        // Every other waiter times out; they must neither be counted nor slow the rest down.
        for w in ws.iter().step_by(2) {
            w.expire();
        }
        for _ in 0..n / 2 {
            assert_eq!(t.wake(0x1000, 1, MATCH_ANY), 1);
        }
        assert_eq!(t.wake(0x1000, 1, MATCH_ANY), 0);
        assert!(ws.iter().skip(1).step_by(2).all(|w| w.end() == Some(WaitEnd::Woken)));
        // Sleeps registered one after another while older ones end stay O(1) too.
        for _ in 0..n {
            let s = t.sleep(Instant::now());
            s.expire();
        }
        assert!(t.queues().get(&SLEEP_KEY).map_or(0, |q| q.waiters.len()) < 2 * MIN_SWEEP);
    }

    #[test]
    fn interrupt_ends_a_wait_with_eintr_and_ready_waits_restart() {
        let (m, t) = (mem(), FutexTable::default());
        let w = t.wait(&m, 0x1000, 0, MATCH_ANY, None).unwrap();
        assert!(w.interrupt());
        assert_eq!(w.result() as i64, -(libc::EINTR as i64));
        let at = Instant::now();
        let r = t.ready(vec![(0, libc::POLLIN)], Some(at), 7);
        assert_eq!(r.watched(), &[(0, libc::POLLIN)]);
        assert!(r.expire());
        let mut th = GuestThread::default();
        th.cpu.pc = 0x1004;
        r.complete(&mut th);
        assert_eq!((th.cpu.pc, th.cpu.x[reg::A0], th.resume_deadline), (0x1000, 7, Some(at)));
        let r = t.ready(vec![], None, 7);
        r.interrupt();
        let mut th = GuestThread::default();
        th.cpu.pc = 0x1004;
        r.complete(&mut th);
        assert_eq!(th.cpu.pc, 0x1004, "an interrupted call is not made again");
        assert_eq!(th.cpu.x[reg::A0] as i64, -(libc::EINTR as i64));
    }

    #[test]
    fn requeue_moves_waiters() {
        let (m, t) = (mem(), FutexTable::default());
        let ws: Vec<_> = (0..3).map(|_| t.wait(&m, 0x1000, 0, MATCH_ANY, None).unwrap()).collect();
        assert_eq!(t.requeue(0x1000, 1, 0x1008, 10), (1, 2));
        assert!(ws[0].end().is_some());
        assert_eq!(t.wake(0x1000, 10, MATCH_ANY), 0);
        assert_eq!(t.wake(0x1008, 10, MATCH_ANY), 2);
    }

    #[test]
    fn blocking_wait_returns_at_the_deadline_or_on_wake() {
        let (m, t) = (mem(), Arc::new(FutexTable::default()));
        let w = t.wait(&m, 0x1000, 0, MATCH_ANY, Some(Instant::now() + Duration::from_millis(5)));
        let w = w.unwrap();
        w.wait_blocking();
        assert_eq!(w.end(), Some(WaitEnd::TimedOut));
        let w = t.wait(&m, 0x1000, 0, MATCH_ANY, None).unwrap();
        let t2 = t.clone();
        let waker = std::thread::spawn(move || {
            while t2.wake(0x1000, 1, MATCH_ANY) == 0 {
                std::thread::yield_now();
            }
        });
        w.wait_blocking();
        waker.join().unwrap();
        assert_eq!(w.end(), Some(WaitEnd::Woken));
    }

    #[test]
    fn no_lost_wakeups_between_host_threads() {
        // Two host threads ping-pong through a futex word, checking and waiting like a guest
        // would; every round must complete.
        let m = Arc::new(mem());
        let t = Arc::new(FutexTable::default());
        let rounds = 2000u32;
        let player = |me: u32, m: Arc<AddressSpace>, t: Arc<FutexTable>| {
            move || {
                for _ in 0..rounds {
                    loop {
                        let v = m.read_u32(0x1000).unwrap();
                        if v % 2 == me {
                            break;
                        }
                        if let Ok(w) = t.wait(&m, 0x1000, v, MATCH_ANY, None) {
                            w.wait_blocking();
                        }
                    }
                    m.atomic_update(0x1000, false, |x| Some(x + 1)).unwrap().unwrap();
                    t.wake(0x1000, 1, MATCH_ANY);
                }
            }
        };
        let a = std::thread::spawn(player(0, m.clone(), t.clone()));
        let b = std::thread::spawn(player(1, m.clone(), t.clone()));
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(m.read_u32(0x1000).unwrap(), 2 * rounds);
    }
}
