//! The coroutine scheduler of vm-executors: guest processes as coroutines, multiplexed M:N
//! onto vCPU threads in the GMP style of Go's runtime and tokio's multi-threaded scheduler.
//!
//! - [`Coroutine`] ([`coroutine`] module): one guest thread, run in slices of fuel (guest
//!   instructions) and suspended between slices; the threads of a guest process share its
//!   address space, files and a pool of engines.
//! - [`Scheduler`] ([`scheduler`] module): N [`VCPU`]s, each with a local run queue and a
//!   next-to-run slot, one global queue, stealing half of a random victim's queue, the global
//!   queue looked at first every 61st pick, preemption by instruction budget, and idle vCPUs
//!   parked until work arrives (the `park` module documents the wake-up protocol).
//! - [`batch`]: K instances of one program on N vCPUs, with a throughput summary.
//!
//! Guest threads that block (futex waits, sleeps, reads of an empty pipe or a terminal) are
//! parked without holding a vCPU; a timer thread ends waits at their deadline and a poller
//! thread wakes readers when their descriptor is readable.
//!
//! The parking protocol has loom model tests, kept out of the normal test run:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p vm-coroutine --release loom
//! ```
//!
//! (add `CARGO_TARGET_DIR=target/loom` to keep those artifacts apart from the normal release
//! build, which the changed `RUSTFLAGS` would otherwise rebuild; about a minute of model
//! checking.)

pub mod batch;
pub mod coroutine;
mod park;
mod readiness;
pub mod scheduler;
mod sync;
mod timer;

pub use batch::{
    default_concurrency, run_batch, run_sequential, BatchConfig, BatchSummary, InstanceResult,
    OutputMode,
};
pub use coroutine::{
    Coroutine, CoroutineExit, CoroutineId, CoroutineResult, CoroutineState, EngineFactory, SliceEnd,
};
pub use scheduler::{
    Scheduler, SchedulerConfig, SchedulerError, SchedulerStats, SliceOutcome, SubmitError,
    VCPUState, VCPUStats, VCPU,
};
pub use vm_exec_core::exec::{GuestExit, GuestSignal, RunResult, StopReason};
