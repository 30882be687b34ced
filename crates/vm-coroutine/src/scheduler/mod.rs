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
//! thread (`readiness`; a vCPU loop defers that hand-over, see the `readiness` module docs). Whoever ends the wait (a futex wake on any vCPU, the timer, the
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
//!
//! # Map (one mechanism per file)
//! - `types`: defaults, [`SchedulerConfig`], errors, [`SliceOutcome`], the statistics types;
//! - `vcpu`: [`VCPU`], its local queue and counters;
//! - `shared`: the state the vCPUs share, admission, completion, new threads;
//! - `find`: where a vCPU looks for its next coroutine, and stealing;
//! - `slice`: one slice and what follows it (requeue, yield, park and wake);
//! - `worker`: the vCPU thread loop;
//! - `handle`: [`Scheduler`], the public API.

mod find;
mod handle;
mod shared;
mod slice;
mod types;
mod vcpu;
mod worker;

// The imports below serve every file of the module: each starts with `use super::*;`.
use crate::coroutine::{
    Coroutine, CoroutineId, CoroutineResult, CoroutineState, EngineFactory, SliceEnd, ThreadGroup,
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
use vm_exec_core::exec::{GuestExit, RunResult};
use vm_exec_core::futex::Waiter;
use vm_exec_core::process::{Process, ProcessConfig};
use vm_exec_core::sync::IgnorePoison;

use find::steal_retrying;
pub use handle::Scheduler;
pub(crate) use shared::Link;
use shared::*;
pub use types::*;
pub use vcpu::VCPU;
use vcpu::*;
