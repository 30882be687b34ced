//! The M:N scheduler: coroutines (guest threads, grouped in guest processes) on N vCPU
//! threads, GMP style.
//!
//! # Queues
//! Every [`VCPU`] has a local FIFO run queue (a `crossbeam_deque::Worker`) and a next-to-run
//! slot (LIFO: the last coroutine put there runs next). The scheduler has one global FIFO
//! queue (a `crossbeam_deque::Injector`). [`Scheduler::next_coroutine`] looks, in order, at:
//! 1. every `global_queue_interval`-th (61st) call on that vCPU: the global queue first, so
//!    coroutines submitted from outside cannot be starved by full local queues;
//! 2. the next-to-run slot (at most [`MAX_NEXT_STREAK`] times in a row when the local queue
//!    has work, so two coroutines that keep re-submitting each other cannot starve it);
//! 3. the local queue;
//! 4. the global queue, taking a batch of up to `len / N + 1` (at most 32) into the local queue;
//! 5. the other vCPUs' local queues, starting from a random victim, stealing half of one
//!    (`Stealer::steal_batch_and_pop`). The next-to-run slot is never stolen.
//!
//! # Preemption and fairness
//! A coroutine runs for at most `time_slice` guest instructions per slice (the engine's fuel).
//! When the slice is spent, it goes to the back of the local queue of the vCPU that ran it,
//! never to the next-to-run slot, so a guest that never makes a system call shares its vCPU
//! with every other coroutine queued there, and idle vCPUs steal from that queue.
//!
//! # Blocking, yielding and new threads
//! A guest thread that blocks in a system call (futex wait, sleep, read of an empty pipe) is
//! parked: the vCPU puts it on the call's [`Waiter`] and moves on; a deadline goes to the
//! timer thread (the `timer` module), a wait for a readable host descriptor to the poller
//! thread (`readiness`). Whoever ends the wait (a futex wake on any vCPU, the timer, the
//! poller, process exit) hands the thread back: into the local queue of the vCPU that woke
//! it, or into the global queue when that is not a vCPU of this scheduler, and a parked vCPU
//! is woken. A thread that calls
//! `sched_yield` goes to the back of its vCPU's local queue. A thread created by `clone` goes
//! into the local queue of the vCPU that ran `clone` (idle vCPUs may steal it), and its parent
//! goes on with the rest of its slice.
//!
//! # Idle vCPUs
//! A vCPU thread that finds nothing retries a bounded number of times (`spin_rounds`, each a
//! `yield_now`) and then parks in the parking lot (see the `park` module docs for the
//! protocol and why no wake-up is lost). Whoever publishes work wakes a parked vCPU: a
//! submission to the global or a local queue wakes one, a submission to a next-to-run slot
//! wakes that slot's vCPU, a vCPU that takes work while more is queued wakes one more (so
//! wake-ups cascade while there is work to steal), and a vCPU that puts a preempted coroutine
//! back behind others wakes one.
//!
//! # Invariants
//! - A coroutine admitted to a scheduler (by a submit, or by [`Scheduler::run_slice`]) is in
//!   exactly one place until it finishes: a queue, a next-to-run slot, a running slice, or the
//!   hands of a caller that took it with [`Scheduler::next_coroutine`]. It finishes exactly
//!   once, and its [`CoroutineResult`] is then kept until [`Scheduler::take_results`] (or a
//!   consuming call) takes it. A taken coroutine that is dropped counts as killed.
//! - Kill requests are checked whenever a coroutine is taken from a queue and after every
//!   slice, so a killed coroutine runs at most the rest of its current slice.
//! - Results, kills and the `live`/`spawned`/`exited` counts are per process (keyed by the
//!   main thread's id); all threads of a process share one kill flag, and a kill also cancels
//!   the waits of its parked threads so they come back and finish.
//! - A guest `read` of a host pipe or terminal with nothing to read is parked too: the
//!   readiness poller (the `readiness` module) wakes it when there is data, and the call is
//!   made again.

use crate::coroutine::{
    Coroutine, CoroutineId, CoroutineResult, CoroutineState, SliceEnd, ThreadGroup,
};
use crate::park::{ParkingLot, Wake};
use crate::readiness::Readiness;
use crate::timer::Timer;
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vm_exec_core::cpu::GuestThread;
use vm_exec_core::elf::Program;
use vm_exec_core::exec::Executor;
use vm_exec_core::exec::{GuestExit, RunResult};
use vm_exec_core::futex::Waiter;
use vm_exec_core::process::{Process, ProcessConfig};

/// Default fuel of one slice, in guest instructions.
pub const DEFAULT_TIME_SLICE: u64 = 100_000;
/// Default period (in `next_coroutine` calls per vCPU) of looking at the global queue first.
pub const DEFAULT_GLOBAL_QUEUE_INTERVAL: u32 = 61;
/// Most consecutive takes from the next-to-run slot while the local queue has work.
pub const MAX_NEXT_STREAK: u32 = 3;
/// Most vCPUs a scheduler has.
pub const MAX_VCPUS: usize = 1024;

/// How a scheduler runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Number of vCPUs (clamped to `1..=MAX_VCPUS`).
    pub vcpus: usize,
    /// Guest instructions per slice (at least 1).
    pub time_slice: u64,
    /// Every this many `next_coroutine` calls, a vCPU looks at the global queue first (at
    /// least 1).
    pub global_queue_interval: u32,
    /// Times an idle vCPU thread retries (yielding in between) before it parks.
    pub spin_rounds: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            vcpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            time_slice: DEFAULT_TIME_SLICE,
            global_queue_interval: DEFAULT_GLOBAL_QUEUE_INTERVAL,
            spin_rounds: 4,
        }
    }
}

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// A vCPU thread could not be started.
    #[error("cannot start a vCPU thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Why a coroutine was not accepted; the coroutine comes back.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// There is no vCPU with that index.
    #[error("no vCPU {vcpu}")]
    NoSuchVcpu {
        /// The index asked for.
        vcpu: usize,
        /// The coroutine, returned.
        coroutine: Coroutine,
    },
    /// The coroutine is admitted to another scheduler.
    #[error("coroutine {} belongs to another scheduler", .0.id())]
    Foreign(Coroutine),
}

impl SubmitError {
    /// The coroutine that was not accepted.
    pub fn into_coroutine(self) -> Coroutine {
        match self {
            SubmitError::NoSuchVcpu { coroutine, .. } | SubmitError::Foreign(coroutine) => {
                coroutine
            }
        }
    }
}

/// What one slice did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SliceOutcome {
    /// The slice was spent; the coroutine is back in the vCPU's local queue.
    Preempted(CoroutineId),
    /// The guest thread called `sched_yield`; it is at the back of the vCPU's local queue.
    Yielded(CoroutineId),
    /// The guest thread blocked in a system call; it is parked until the wait ends.
    Blocked(CoroutineId),
    /// The guest thread ended; its process goes on.
    ThreadExited(CoroutineId),
    /// The process ended (the result is under its main thread's id).
    Finished(CoroutineResult),
}

/// What a vCPU is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VCPUState {
    /// No thread drives it, and no caller is running a slice on it.
    Idle,
    /// Its thread looks for work.
    Searching,
    /// It runs a slice.
    Running,
    /// Its thread sleeps in the parking lot.
    Parked,
    /// Its thread has ended (the scheduler shut down).
    Stopped,
}

impl VCPUState {
    fn from_u8(v: u8) -> VCPUState {
        match v {
            1 => VCPUState::Searching,
            2 => VCPUState::Running,
            3 => VCPUState::Parked,
            4 => VCPUState::Stopped,
            _ => VCPUState::Idle,
        }
    }
    fn as_u8(self) -> u8 {
        match self {
            VCPUState::Idle => 0,
            VCPUState::Searching => 1,
            VCPUState::Running => 2,
            VCPUState::Parked => 3,
            VCPUState::Stopped => 4,
        }
    }
}

/// Counters of one vCPU.
#[derive(Clone, Debug, PartialEq)]
pub struct VCPUStats {
    /// The vCPU's index.
    pub id: usize,
    /// What it is doing now.
    pub state: VCPUState,
    /// Slices it ran.
    pub slices: u64,
    /// Guest instructions retired in its slices.
    pub instructions: u64,
    /// Successful steal operations (each takes a batch from another vCPU's queue).
    pub steals: u64,
    /// Coroutines it obtained by stealing (sum of the batch sizes).
    pub stolen: u64,
    /// Times it started a slice of a coroutine other than the one it ran last.
    pub context_switches: u64,
    /// Coroutines that ended on it.
    pub finished: u64,
    /// Times its thread parked.
    pub parks: u64,
    /// Guest `sched_yield` calls in its slices.
    pub yields: u64,
    /// Guest threads that blocked (were parked on a wait) in its slices.
    pub blocks: u64,
    /// Time its thread spent parked.
    pub idle_time: Duration,
    /// Coroutines waiting in its local queue and next-to-run slot.
    pub queue_length: usize,
}

/// Counters of a whole scheduler.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerStats {
    /// Per vCPU.
    pub vcpus: Vec<VCPUStats>,
    /// Processes admitted (main coroutines).
    pub spawned: u64,
    /// Processes that ended (killed ones included).
    pub exited: u64,
    /// Processes that ended by being killed.
    pub killed: u64,
    /// Processes admitted and not ended.
    pub live: usize,
    /// Guest threads created by `clone` (besides each process's main thread).
    pub threads_created: u64,
    /// Guest threads parked in a blocking system call right now.
    pub parked: u64,
    /// Waits ended by the timer (sleeps, futex timeouts).
    pub timeouts: u64,
    /// Sum of the vCPUs' guest `sched_yield` calls.
    pub yields: u64,
    /// Sum of the vCPUs' blocked guest threads.
    pub blocks: u64,
    /// Sum of the vCPUs' context switches.
    pub context_switches: u64,
    /// Sum of the vCPUs' slices.
    pub slices: u64,
    /// Guest instructions retired on all vCPUs.
    pub instructions: u64,
    /// Sum of the vCPUs' steal operations.
    pub steals: u64,
    /// Coroutines waiting in the global queue.
    pub global_queue_length: usize,
    /// How unevenly work was spread: the busiest vCPU's instructions over the mean, minus 1
    /// (0 when perfectly even or when nothing ran; N - 1 when one of N vCPUs did everything).
    pub load_imbalance: f64,
}

/// Per-process flags shared between the process's coroutines and their scheduler.
struct Control {
    kill: AtomicBool,
    /// 0: ready; `1 + i`: running on vCPU `i` (the last of its threads to start a slice).
    state: AtomicUsize,
    /// The process's threads, to cancel their waits on a kill.
    group: Weak<ThreadGroup>,
}

/// A coroutine's admission to a scheduler (shared by all threads of a process).
#[derive(Clone)]
pub(crate) struct Link {
    shared: Weak<Shared>,
    control: Arc<Control>,
}

impl Link {
    /// Reports a coroutine dropped while admitted (already marked killed).
    pub(crate) fn abandoned(self, result: CoroutineResult) {
        if let Some(shared) = self.shared.upgrade() {
            shared.record(result);
        }
    }

    fn kill_requested(&self) -> bool {
        self.control.kill.load(Ordering::Acquire)
    }
}

#[derive(Default)]
struct Registry {
    live: HashMap<CoroutineId, Arc<Control>>,
    results: BTreeMap<CoroutineId, CoroutineResult>,
}

/// The part of a vCPU only its driver touches (behind a mutex that is uncontended unless
/// a caller drives the vCPU from several threads at once).
struct LocalQueue {
    worker: Worker<Coroutine>,
    next: Option<Coroutine>,
    tick: u32,
    next_streak: u32,
    rng: u64,
}

#[derive(Default)]
struct Counters {
    slices: AtomicU64,
    instructions: AtomicU64,
    steals: AtomicU64,
    stolen: AtomicU64,
    context_switches: AtomicU64,
    finished: AtomicU64,
    parks: AtomicU64,
    idle_nanos: AtomicU64,
    yields: AtomicU64,
    blocks: AtomicU64,
}

/// A virtual CPU: a local run queue, a next-to-run slot and counters. A scheduler thread
/// drives each vCPU once the scheduler is started; before that, callers may drive it with
/// [`Scheduler::next_coroutine`] and [`Scheduler::run_slice`].
pub struct VCPU {
    id: usize,
    local: Mutex<LocalQueue>,
    stealer: Stealer<Coroutine>,
    next_full: AtomicBool,
    state: AtomicU8,
    /// Id of the coroutine of its last slice (0: none).
    last_run: AtomicU64,
    counters: Counters,
}

impl std::fmt::Debug for VCPU {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VCPU")
            .field("id", &self.id)
            .field("state", &self.state())
            .field("queue_length", &self.queue_length())
            .finish_non_exhaustive()
    }
}

impl VCPU {
    fn new(id: usize) -> VCPU {
        let worker = Worker::new_fifo();
        VCPU {
            id,
            stealer: worker.stealer(),
            local: Mutex::new(LocalQueue {
                worker,
                next: None,
                tick: 0,
                next_streak: 0,
                rng: 0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            }),
            next_full: AtomicBool::new(false),
            state: AtomicU8::new(VCPUState::Idle.as_u8()),
            last_run: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LocalQueue> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its index.
    pub fn id(&self) -> usize {
        self.id
    }

    /// What it is doing now.
    pub fn state(&self) -> VCPUState {
        VCPUState::from_u8(self.state.load(Ordering::Relaxed))
    }

    fn set_state(&self, s: VCPUState) -> VCPUState {
        VCPUState::from_u8(self.state.swap(s.as_u8(), Ordering::Relaxed))
    }

    /// Coroutines waiting in its local queue and next-to-run slot.
    pub fn queue_length(&self) -> usize {
        self.stealer.len() + usize::from(self.next_full.load(Ordering::Relaxed))
    }

    /// Its counters.
    pub fn stats(&self) -> VCPUStats {
        let c = &self.counters;
        VCPUStats {
            id: self.id,
            state: self.state(),
            slices: c.slices.load(Ordering::Relaxed),
            instructions: c.instructions.load(Ordering::Relaxed),
            steals: c.steals.load(Ordering::Relaxed),
            stolen: c.stolen.load(Ordering::Relaxed),
            context_switches: c.context_switches.load(Ordering::Relaxed),
            finished: c.finished.load(Ordering::Relaxed),
            parks: c.parks.load(Ordering::Relaxed),
            yields: c.yields.load(Ordering::Relaxed),
            blocks: c.blocks.load(Ordering::Relaxed),
            idle_time: Duration::from_nanos(c.idle_nanos.load(Ordering::Relaxed)),
            queue_length: self.queue_length(),
        }
    }
}

struct Shared {
    config: SchedulerConfig,
    vcpus: Box<[VCPU]>,
    injector: Injector<Coroutine>,
    lot: ParkingLot,
    registry: Mutex<Registry>,
    finished: Condvar,
    spawned: AtomicU64,
    exited: AtomicU64,
    killed: AtomicU64,
    threads_created: AtomicU64,
    /// Guest threads parked on a waiter right now.
    parked: AtomicU64,
    timer: Arc<Timer>,
    readiness: Arc<Readiness>,
    /// Tells vCPU threads to leave.
    stopping: AtomicBool,
}

thread_local! {
    /// The scheduler (its `Shared`'s address) and vCPU whose slice this host thread runs, if
    /// any: a guest thread woken from inside a slice goes to that vCPU's local queue.
    static CURRENT: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// A coroutine after admission.
enum Admitted {
    Runnable(Coroutine),
    Finished(CoroutineResult),
}

/// Retries a steal until it is not `Retry` (bounded; contention is transient).
fn steal_retrying<T>(mut f: impl FnMut() -> Steal<T>) -> Option<T> {
    for _ in 0..64 {
        match f() {
            Steal::Success(t) => return Some(t),
            Steal::Empty => return None,
            Steal::Retry => std::hint::spin_loop(),
        }
    }
    None
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits `c` (if not admitted yet). Errors if it belongs to another scheduler.
    fn admit(self: &Arc<Self>, c: &mut Coroutine) -> Result<(), ()> {
        if let Some(link) = c.link() {
            return if std::ptr::eq(link.shared.as_ptr(), Arc::as_ptr(self)) {
                Ok(())
            } else {
                Err(())
            };
        }
        let control = Arc::new(Control {
            kill: AtomicBool::new(false),
            state: AtomicUsize::new(0),
            group: Arc::downgrade(c.group()),
        });
        self.registry().live.insert(c.process_id(), control.clone());
        self.spawned.fetch_add(1, Ordering::Relaxed);
        c.set_link(Link { shared: Arc::downgrade(self), control });
        // A process built before admission (`from_process`) is scheduled from now on; one
        // built later is marked when it loads.
        if let Some(p) = c.process() {
            p.set_scheduled(true);
        }
        Ok(())
    }

    /// Records a process's result; only the first report of a process counts.
    fn record(&self, result: CoroutineResult) {
        let mut reg = self.registry();
        if reg.live.remove(&result.id).is_none() {
            return;
        }
        self.exited.fetch_add(1, Ordering::Relaxed);
        if result.exit == GuestExit::Killed {
            self.killed.fetch_add(1, Ordering::Relaxed);
        }
        reg.results.insert(result.id, result);
        drop(reg);
        self.finished.notify_all();
    }

    /// Ends `c`'s process (as killed if it has not ended), drops `c` and records the result.
    fn complete(&self, vcpu: Option<usize>, mut c: Coroutine) -> CoroutineResult {
        c.kill(); // no-op if its process ended by itself
        let link = c.take_link();
        let result = c.result().unwrap_or_else(|| CoroutineResult {
            id: c.process_id(),
            pid: c.pid(),
            exit: GuestExit::Killed,
            instructions: c.instructions(),
            slices: c.slices(),
            run_time: c.run_time(),
            engine: c.engine_stats(),
        });
        drop(c);
        if let Some(v) = vcpu.and_then(|v| self.vcpus.get(v)) {
            v.counters.finished.fetch_add(1, Ordering::Relaxed);
        }
        if link.is_some() {
            self.record(result.clone());
        }
        result
    }

    /// Drops a guest thread that ended while its process goes on.
    fn retire_thread(&self, vcpu: usize, mut c: Coroutine) {
        c.take_link();
        drop(c);
        if let Some(v) = self.vcpus.get(vcpu) {
            v.counters.finished.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Puts a guest thread created on vCPU `i` into its local queue.
    fn adopt(&self, i: usize, parent: &Coroutine, mut child: Coroutine) {
        self.threads_created.fetch_add(1, Ordering::Relaxed);
        match parent.link() {
            Some(link) => child.set_link(link.clone()),
            None => {
                // Only admitted coroutines run here; an unlinked child could not be tracked,
                // so it is dropped (which kills its process).
                tracing::error!("thread {} spawned by an unadmitted coroutine", child.id());
                return;
            }
        }
        self.vcpus[i].lock().worker.push(child);
        self.lot.notify_one();
    }

    /// Parks a blocked guest thread on its waiter; it comes back through [`Shared::wake`].
    fn park_thread(self: &Arc<Self>, c: Coroutine, w: Arc<Waiter>) {
        self.parked.fetch_add(1, Ordering::Relaxed);
        if let Some(at) = w.deadline() {
            self.timer.arm(at, w.clone());
        }
        if !w.watched().is_empty() {
            self.readiness.watch(w.clone());
        }
        let shared = Arc::downgrade(self);
        w.on_ready(Box::new(move || {
            // Without a scheduler to go back to (it was shut down), the coroutine is dropped,
            // which kills its process.
            if let Some(s) = shared.upgrade() {
                s.parked.fetch_sub(1, Ordering::Relaxed);
                s.wake(c);
            }
        }));
    }

    /// Makes a woken guest thread runnable: into the local queue of the vCPU this host thread
    /// runs a slice for, else into the global queue.
    fn wake(&self, c: Coroutine) {
        let (sched, vcpu) = CURRENT.with(Cell::get);
        match self.vcpus.get(vcpu).filter(|_| sched == self as *const Shared as usize) {
            Some(v) => v.lock().worker.push(c),
            None => self.injector.push(c),
        }
        self.lot.notify_one();
    }

    fn has_work(&self, vcpu: usize) -> bool {
        self.vcpus.get(vcpu).is_some_and(|v| v.next_full.load(Ordering::Acquire))
            || !self.injector.is_empty()
            || self.vcpus.iter().any(|v| !v.stealer.is_empty())
    }

    /// Finds the next coroutine for `vcpu` (see the module docs for the order), without
    /// looking at kill requests.
    fn find(&self, i: usize) -> Option<Coroutine> {
        let v = self.vcpus.get(i)?;
        let mut local = v.lock();
        local.tick = local.tick.wrapping_add(1);
        let interval = self.config.global_queue_interval.max(1);
        let mut found = None;
        if local.tick % interval == 0 {
            found = steal_retrying(|| self.injector.steal());
        }
        if found.is_none() && local.next.is_some() {
            if local.next_streak < MAX_NEXT_STREAK || local.worker.is_empty() {
                local.next_streak += 1;
                found = local.next.take();
                v.next_full.store(false, Ordering::Release);
            } else {
                local.next_streak = 0;
            }
        } else {
            local.next_streak = 0;
        }
        if found.is_none() {
            found = local.worker.pop();
        }
        if found.is_none() {
            let limit = (self.injector.len() / self.vcpus.len() + 1).min(32);
            found = steal_retrying(|| {
                self.injector.steal_batch_with_limit_and_pop(&local.worker, limit)
            });
        }
        if found.is_none() && self.vcpus.len() > 1 {
            found = self.steal(i, &mut local);
        }
        let more = found.is_some() && (!local.worker.is_empty() || !self.injector.is_empty());
        drop(local);
        if more {
            self.lot.notify_one();
        }
        found
    }

    /// Steals half of a random other vCPU's local queue into `local`, returning one.
    fn steal(&self, i: usize, local: &mut LocalQueue) -> Option<Coroutine> {
        let n = self.vcpus.len();
        // xorshift64
        local.rng ^= local.rng << 13;
        local.rng ^= local.rng >> 7;
        local.rng ^= local.rng << 17;
        let start = (local.rng % n as u64) as usize;
        for k in 0..n {
            let j = (start + k) % n;
            if j == i {
                continue;
            }
            let victim = &self.vcpus[j].stealer;
            if let Some(c) = steal_retrying(|| victim.steal_batch_and_pop(&local.worker)) {
                let c_ = &self.vcpus[i].counters;
                c_.steals.fetch_add(1, Ordering::Relaxed);
                c_.stolen.fetch_add(1 + local.worker.len() as u64, Ordering::Relaxed);
                return Some(c);
            }
        }
        None
    }

    fn next_coroutine(&self, i: usize) -> Option<Coroutine> {
        loop {
            let c = self.find(i)?;
            if c.link().is_some_and(Link::kill_requested) {
                self.complete(Some(i), c);
                continue;
            }
            return Some(c);
        }
    }

    fn run_slice(self: &Arc<Self>, i: usize, mut c: Coroutine) -> SliceOutcome {
        let v = &self.vcpus[i];
        let control = c.link().map(|l| l.control.clone());
        if control.as_ref().is_some_and(|c| c.kill.load(Ordering::Acquire)) {
            return SliceOutcome::Finished(self.complete(Some(i), c));
        }
        if let Some(ctl) = &control {
            ctl.state.store(1 + i, Ordering::Relaxed);
        }
        let id = c.id();
        if v.last_run.swap(id.0, Ordering::Relaxed) != id.0 {
            v.counters.context_switches.fetch_add(1, Ordering::Relaxed);
        }
        let prev = v.set_state(VCPUState::Running);
        let outer = CURRENT.with(|cur| cur.replace((Arc::as_ptr(self) as usize, i)));
        let mut left = self.config.time_slice.max(1);
        let mut retired = 0;
        let end = loop {
            let r = match std::panic::catch_unwind(AssertUnwindSafe(|| c.run_slice(left))) {
                Ok(r) => r,
                Err(payload) => {
                    let msg = panic_message(&*payload);
                    tracing::error!(coroutine = %id, vcpu = i, "engine panicked: {msg}");
                    c.finish(GuestExit::EnginePanicked(msg.clone()));
                    RunResult {
                        stop: SliceEnd::Finished(GuestExit::EnginePanicked(msg)),
                        retired: 0,
                    }
                }
            };
            retired += r.retired;
            left = left.saturating_sub(r.retired);
            match r.stop {
                // The parent goes on with the rest of its slice.
                SliceEnd::Spawned(child) => {
                    self.adopt(i, &c, child);
                    if left == 0 {
                        break SliceEnd::Preempted;
                    }
                }
                other => break other,
            }
        };
        CURRENT.with(|cur| cur.set(outer));
        v.set_state(prev);
        v.counters.slices.fetch_add(1, Ordering::Relaxed);
        v.counters.instructions.fetch_add(retired, Ordering::Relaxed);
        if let Some(ctl) = &control {
            ctl.state.store(0, Ordering::Relaxed);
        }
        let killed = control.as_ref().is_some_and(|c| c.kill.load(Ordering::Acquire));
        if killed {
            return SliceOutcome::Finished(self.complete(Some(i), c));
        }
        let yielded = match end {
            SliceEnd::Finished(_) => return SliceOutcome::Finished(self.complete(Some(i), c)),
            SliceEnd::ThreadExited(_) => {
                self.retire_thread(i, c);
                return SliceOutcome::ThreadExited(id);
            }
            SliceEnd::Blocked(w) => {
                v.counters.blocks.fetch_add(1, Ordering::Relaxed);
                self.park_thread(c, w);
                return SliceOutcome::Blocked(id);
            }
            SliceEnd::Yielded => {
                v.counters.yields.fetch_add(1, Ordering::Relaxed);
                true
            }
            SliceEnd::Preempted | SliceEnd::Spawned(_) => false,
        };
        let local = v.lock();
        local.worker.push(c);
        let waiting = local.worker.len();
        drop(local);
        // Others wait behind it: an idle vCPU may steal them. And a caller that drives this
        // vCPU while its thread is parked (`prev` is not `Searching`) must not leave the
        // coroutine in a queue nobody is awake to look at.
        if waiting > 1 || prev != VCPUState::Searching {
            self.lot.notify_one();
        }
        if yielded {
            SliceOutcome::Yielded(id)
        } else {
            SliceOutcome::Preempted(id)
        }
    }

    /// The loop of vCPU thread `i`.
    fn vcpu_main(self: &Arc<Self>, i: usize) {
        let v = &self.vcpus[i];
        let _span = tracing::debug_span!("vcpu", id = i).entered();
        v.set_state(VCPUState::Searching);
        'outer: while !self.stopping.load(Ordering::Acquire) {
            if let Some(c) = self.next_coroutine(i) {
                self.run_slice(i, c);
                continue;
            }
            for _ in 0..self.config.spin_rounds {
                std::thread::yield_now();
                if self.stopping.load(Ordering::Acquire) {
                    break 'outer;
                }
                if let Some(c) = self.next_coroutine(i) {
                    self.run_slice(i, c);
                    continue 'outer;
                }
            }
            v.set_state(VCPUState::Parked);
            v.counters.parks.fetch_add(1, Ordering::Relaxed);
            let t0 = Instant::now();
            let wake = self.lot.park(i, || self.has_work(i));
            v.counters.idle_nanos.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            v.set_state(VCPUState::Searching);
            if wake == Wake::Shutdown {
                break;
            }
        }
        v.set_state(VCPUState::Stopped);
        tracing::debug!("vCPU {i} stopped");
    }
}

/// A GMP-style scheduler of guest processes over N vCPUs. See the module docs.
///
/// Two ways to drive it:
/// - [`Scheduler::start`] (or [`Scheduler::run_to_completion`]) runs one thread per vCPU;
/// - a caller drives vCPU `i` itself with [`Scheduler::next_coroutine`] and
///   [`Scheduler::run_slice`] (or [`Scheduler::run_once`]).
///
/// ```no_run
/// use std::sync::Arc;
/// use vm_coroutine::Scheduler;
/// use vm_exec_core::elf::Program;
/// use vm_exec_core::process::ProcessConfig;
///
/// let program = Arc::new(Program::parse(std::fs::read("guests/bin/hello")?)?);
/// let config = Arc::new(ProcessConfig::default());
/// let scheduler = Scheduler::new(4);
/// for _ in 0..10 {
///     scheduler.submit_coroutine(scheduler.create_coroutine(program.clone(), config.clone()))?;
/// }
/// for result in scheduler.run_to_completion()? {
///     println!("{}: {}", result.id, result.exit);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Scheduler {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("config", &self.shared.config)
            .field("live", &self.live_coroutines())
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler with `n_vcpus` vCPUs (clamped to `1..=MAX_VCPUS`) and default settings.
    /// No thread runs until [`Scheduler::start`].
    pub fn new(n_vcpus: usize) -> Scheduler {
        Self::with_config(SchedulerConfig { vcpus: n_vcpus, ..Default::default() })
    }

    /// A scheduler with the given settings (out-of-range values are clamped).
    pub fn with_config(mut config: SchedulerConfig) -> Scheduler {
        config.vcpus = config.vcpus.clamp(1, MAX_VCPUS);
        config.time_slice = config.time_slice.max(1);
        config.global_queue_interval = config.global_queue_interval.max(1);
        let n = config.vcpus;
        Scheduler {
            shared: Arc::new(Shared {
                vcpus: (0..n).map(VCPU::new).collect(),
                injector: Injector::new(),
                lot: ParkingLot::new(n),
                registry: Mutex::new(Registry::default()),
                finished: Condvar::new(),
                spawned: AtomicU64::new(0),
                exited: AtomicU64::new(0),
                killed: AtomicU64::new(0),
                threads_created: AtomicU64::new(0),
                parked: AtomicU64::new(0),
                timer: Arc::new(Timer::default()),
                readiness: Arc::new(Readiness::default()),
                stopping: AtomicBool::new(false),
                config,
            }),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.shared.config
    }

    /// Number of vCPUs.
    pub fn num_vcpus(&self) -> usize {
        self.shared.vcpus.len()
    }

    /// The vCPUs.
    pub fn vcpus(&self) -> &[VCPU] {
        &self.shared.vcpus
    }

    /// vCPU `i`, if it exists.
    pub fn vcpu(&self, i: usize) -> Option<&VCPU> {
        self.shared.vcpus.get(i)
    }

    /// A coroutine that runs `program` as a new process built from `config` on the
    /// interpreter, built lazily by the vCPU that first runs it. Not yet submitted.
    pub fn create_coroutine(&self, program: Arc<Program>, config: Arc<ProcessConfig>) -> Coroutine {
        Coroutine::new(program, config)
    }

    /// A coroutine around an already built process, its main thread and its engine. Not yet
    /// submitted.
    pub fn create_coroutine_from(
        &self,
        process: Process,
        thread: GuestThread,
        engine: Box<dyn Executor>,
    ) -> Coroutine {
        Coroutine::from_process(process, thread, engine)
    }

    /// Admits `c`; one that has already ended is recorded at once.
    fn admit(&self, mut c: Coroutine) -> Result<Admitted, SubmitError> {
        if self.shared.admit(&mut c).is_err() {
            return Err(SubmitError::Foreign(c));
        }
        if c.is_finished() {
            return Ok(Admitted::Finished(self.shared.complete(None, c)));
        }
        Ok(Admitted::Runnable(c))
    }

    /// Puts `c` in the global queue and wakes a parked vCPU. A coroutine that has already
    /// ended is recorded at once.
    pub fn submit_coroutine(&self, c: Coroutine) -> Result<CoroutineId, SubmitError> {
        let id = c.id();
        if let Admitted::Runnable(c) = self.admit(c)? {
            self.shared.injector.push(c);
            self.shared.lot.notify_one();
        }
        Ok(id)
    }

    /// Puts `c` at the back of vCPU `vcpu`'s local queue (other vCPUs may steal it) and wakes
    /// a parked vCPU.
    pub fn submit_local(&self, vcpu: usize, c: Coroutine) -> Result<CoroutineId, SubmitError> {
        let Some(v) = self.shared.vcpus.get(vcpu) else {
            return Err(SubmitError::NoSuchVcpu { vcpu, coroutine: c });
        };
        let id = c.id();
        if let Admitted::Runnable(c) = self.admit(c)? {
            v.lock().worker.push(c);
            self.shared.lot.notify_one();
        }
        Ok(id)
    }

    /// Puts `c` in vCPU `vcpu`'s next-to-run slot: it runs next on that vCPU and is never
    /// stolen. A coroutine already in the slot moves to the back of the local queue.
    pub fn submit_next(&self, vcpu: usize, c: Coroutine) -> Result<CoroutineId, SubmitError> {
        let Some(v) = self.shared.vcpus.get(vcpu) else {
            return Err(SubmitError::NoSuchVcpu { vcpu, coroutine: c });
        };
        let id = c.id();
        if let Admitted::Runnable(c) = self.admit(c)? {
            let mut local = v.lock();
            let displaced = local.next.replace(c);
            v.next_full.store(true, Ordering::Release);
            if let Some(d) = &displaced {
                tracing::trace!(vcpu, displaced = %d.id(), "next-to-run slot displaced");
            }
            let displaced = displaced.map(|d| local.worker.push(d)).is_some();
            drop(local);
            self.shared.lot.notify_vcpu(vcpu);
            if displaced {
                self.shared.lot.notify_one();
            }
        }
        Ok(id)
    }

    /// Takes the next runnable coroutine for vCPU `vcpu` (see the module docs for the order),
    /// or `None` if there is none anywhere (or no such vCPU). Coroutines with a pending kill
    /// request are finished instead of returned. Hand the coroutine back with
    /// [`Scheduler::run_slice`], [`Scheduler::submit_local`] or another submit; dropping it
    /// finishes it as killed.
    pub fn next_coroutine(&self, vcpu: usize) -> Option<Coroutine> {
        self.shared.next_coroutine(vcpu)
    }

    /// Runs one slice of `c` on vCPU `vcpu`'s account: afterwards the coroutine is at the back
    /// of that vCPU's local queue, or finished and recorded. Admits `c` if needed.
    pub fn run_slice(&self, vcpu: usize, c: Coroutine) -> Result<SliceOutcome, SubmitError> {
        if vcpu >= self.num_vcpus() {
            return Err(SubmitError::NoSuchVcpu { vcpu, coroutine: c });
        }
        Ok(match self.admit(c)? {
            Admitted::Runnable(c) => self.shared.run_slice(vcpu, c),
            Admitted::Finished(result) => SliceOutcome::Finished(result),
        })
    }

    /// Takes the next coroutine for vCPU `vcpu` and runs one slice of it. `None` if there was
    /// nothing to run.
    pub fn run_once(&self, vcpu: usize) -> Option<SliceOutcome> {
        let c = self.shared.next_coroutine(vcpu)?;
        Some(self.shared.run_slice(vcpu, c))
    }

    /// Asks coroutine `id` to end. It ends as [`GuestExit::Killed`] when it is next taken
    /// from a queue or at the end of its current slice. False if no live coroutine has that
    /// id.
    pub fn kill(&self, id: CoroutineId) -> bool {
        let reg = self.shared.registry();
        match reg.live.get(&id) {
            Some(ctl) => {
                ctl.kill.store(true, Ordering::Release);
                let group = ctl.group.upgrade();
                drop(reg);
                // Parked threads come back to see the kill.
                if let Some(g) = group {
                    g.cancel_waits();
                }
                // Idle vCPUs may be parked while the coroutine waits in a queue only a
                // running vCPU looks at; waking one makes the kill prompt.
                self.shared.lot.notify_one();
                true
            }
            None => false,
        }
    }

    /// Asks every live coroutine to end (see [`Scheduler::kill`]). Returns how many.
    pub fn kill_all(&self) -> usize {
        let reg = self.shared.registry();
        let mut groups = Vec::new();
        for ctl in reg.live.values() {
            ctl.kill.store(true, Ordering::Release);
            groups.extend(ctl.group.upgrade());
        }
        let n = reg.live.len();
        drop(reg);
        for g in groups {
            g.cancel_waits();
        }
        self.shared.lot.notify_one();
        n
    }

    /// Where coroutine `id` is: `None` if this scheduler never admitted it or its result was
    /// taken.
    pub fn coroutine_state(&self, id: CoroutineId) -> Option<CoroutineState> {
        let reg = self.shared.registry();
        if let Some(ctl) = reg.live.get(&id) {
            return Some(match ctl.state.load(Ordering::Relaxed) {
                0 => CoroutineState::Ready,
                s => CoroutineState::Running { vcpu: s - 1 },
            });
        }
        reg.results.get(&id).map(|r| CoroutineState::Finished(r.exit.clone()))
    }

    /// Number of admitted coroutines that have not ended.
    pub fn live_coroutines(&self) -> usize {
        self.shared.registry().live.len()
    }

    /// Waits until coroutine `id` ends (at most `timeout`, if given) and returns its result
    /// (the result stays recorded). `None` on time-out or for an id this scheduler does not
    /// know.
    pub fn wait(&self, id: CoroutineId, timeout: Option<Duration>) -> Option<CoroutineResult> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut reg = self.shared.registry();
        loop {
            if let Some(r) = reg.results.get(&id) {
                return Some(r.clone());
            }
            if !reg.live.contains_key(&id) {
                return None;
            }
            reg = self.wait_step(reg, deadline)?;
        }
    }

    /// Waits until fewer than `n` admitted coroutines are live (at most `timeout`, if given).
    /// True if fewer are. (`vmx batch --concurrency` admits a new instance each time.)
    pub fn wait_live_below(&self, n: usize, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut reg = self.shared.registry();
        while reg.live.len() >= n.max(1) {
            match self.wait_step(reg, deadline) {
                Some(g) => reg = g,
                None => return false,
            }
        }
        true
    }

    /// Waits until no admitted coroutine is live (at most `timeout`, if given). True if none
    /// is.
    pub fn wait_all(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut reg = self.shared.registry();
        while !reg.live.is_empty() {
            match self.wait_step(reg, deadline) {
                Some(g) => reg = g,
                None => return false,
            }
        }
        true
    }

    fn wait_step<'a>(
        &self,
        reg: MutexGuard<'a, Registry>,
        deadline: Option<Instant>,
    ) -> Option<MutexGuard<'a, Registry>> {
        let cv = &self.shared.finished;
        match deadline {
            None => Some(cv.wait(reg).unwrap_or_else(|e| e.into_inner())),
            Some(d) => {
                let left = d.checked_duration_since(Instant::now())?;
                Some(cv.wait_timeout(reg, left).unwrap_or_else(|e| e.into_inner()).0)
            }
        }
    }

    /// Takes the results recorded so far, in id order.
    pub fn take_results(&self) -> Vec<CoroutineResult> {
        std::mem::take(&mut self.shared.registry().results).into_values().collect()
    }

    /// Starts one thread per vCPU (named `vmx-vcpu-N`); a no-op if they run already.
    pub fn start(&self) -> Result<(), SchedulerError> {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        if !threads.is_empty() {
            return Ok(());
        }
        for i in 0..self.num_vcpus() {
            let shared = self.shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("vmx-vcpu-{i}"))
                .spawn(move || shared.vcpu_main(i))
                .map_err(SchedulerError::Spawn)?;
            threads.push(h);
        }
        Ok(())
    }

    /// Starts the vCPU threads if needed, waits until every admitted coroutine has ended, stops
    /// the threads and returns every result not taken yet, in id order. A guest that never
    /// ends keeps it waiting (kill it from another thread, or use [`Scheduler::wait_all`] with
    /// a time-out and then [`Scheduler::kill_all`]), and so does a coroutine the caller still
    /// holds (from [`Scheduler::next_coroutine`]): hand it back or drop it first.
    pub fn run_to_completion(self) -> Result<Vec<CoroutineResult>, SchedulerError> {
        self.start()?;
        self.wait_all(None);
        Ok(self.shutdown())
    }

    fn stop_threads(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.timer.stop();
        self.shared.readiness.stop();
        self.shared.lot.shutdown();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for h in threads {
            if h.join().is_err() {
                tracing::error!("a vCPU thread panicked");
            }
        }
    }

    /// Stops the vCPU threads (each finishes its current slice), kills every coroutine still
    /// queued, and returns every result not taken yet, in id order.
    pub fn shutdown(self) -> Vec<CoroutineResult> {
        self.stop_threads();
        // Parked threads come back into the queues, to be completed below.
        self.kill_all();
        let shared = &self.shared;
        for v in shared.vcpus.iter() {
            let mut queued = Vec::new();
            {
                let mut local = v.lock();
                queued.extend(local.next.take());
                v.next_full.store(false, Ordering::Release);
                while let Some(c) = local.worker.pop() {
                    queued.push(c);
                }
            }
            for c in queued {
                shared.complete(None, c);
            }
        }
        while let Some(c) = steal_retrying(|| shared.injector.steal()) {
            shared.complete(None, c);
        }
        self.take_results()
    }

    /// Counters of the scheduler and of each vCPU.
    pub fn get_stats(&self) -> SchedulerStats {
        let shared = &self.shared;
        let vcpus: Vec<VCPUStats> = shared.vcpus.iter().map(VCPU::stats).collect();
        let instructions: u64 = vcpus.iter().map(|v| v.instructions).sum();
        let max = vcpus.iter().map(|v| v.instructions).max().unwrap_or(0);
        let load_imbalance = if instructions == 0 {
            0.0
        } else {
            let mean = instructions as f64 / vcpus.len() as f64;
            max as f64 / mean - 1.0
        };
        SchedulerStats {
            spawned: shared.spawned.load(Ordering::Relaxed),
            exited: shared.exited.load(Ordering::Relaxed),
            killed: shared.killed.load(Ordering::Relaxed),
            live: self.live_coroutines(),
            threads_created: shared.threads_created.load(Ordering::Relaxed),
            parked: shared.parked.load(Ordering::Relaxed),
            timeouts: shared.timer.fired.load(Ordering::Relaxed),
            yields: vcpus.iter().map(|v| v.yields).sum(),
            blocks: vcpus.iter().map(|v| v.blocks).sum(),
            context_switches: vcpus.iter().map(|v| v.context_switches).sum(),
            slices: vcpus.iter().map(|v| v.slices).sum(),
            steals: vcpus.iter().map(|v| v.steals).sum(),
            instructions,
            global_queue_length: shared.injector.len(),
            load_imbalance,
            vcpus,
        }
    }
}

impl Drop for Scheduler {
    /// Stops the vCPU threads and cancels the waits of parked guest threads (a parked thread
    /// is owned by its wait, which its own process holds: without the cancel that cycle
    /// would keep the process alive); coroutines still queued are dropped without results.
    fn drop(&mut self) {
        self.stop_threads();
        self.kill_all();
    }
}
