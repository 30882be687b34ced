//! The GMP-style coroutine scheduler: guest threads and guest processes as coroutines on N
//! vCPU worker threads (M:N), with local run queues, a global queue, work stealing,
//! preemption by instruction budget, parking of guest threads that block (futex, sleep) and
//! of idle vCPUs; plus batch runs of many instances of one program. See `vm_coroutine` for
//! the details and invariants.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vm_executors::coroutine::{Coroutine, Scheduler};
//! use vm_executors::{ExecutorType, ProcessConfig, Program};
//!
//! let program = Arc::new(Program::parse(std::fs::read("guests/bin/threads_mutex")?)?);
//! let scheduler = Scheduler::new(4); // 4 vCPU worker threads
//! scheduler.start()?;
//! let guest = Coroutine::new(
//!     program,
//!     Arc::new(ProcessConfig::default()),
//!     ExecutorType::default().factory(), // the project's default engine
//! );
//! let id = scheduler.submit_coroutine(guest)?;
//! let result = scheduler.wait(id, None).expect("submitted");
//! println!("{} after {} instructions", result.exit, result.instructions);
//! println!("load imbalance {:.2}", scheduler.get_stats().load_imbalance);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use vm_coroutine::{
    batch, run_batch, run_sequential, scheduler, BatchConfig, BatchSummary, Coroutine,
    CoroutineExit, CoroutineId, CoroutineResult, CoroutineState, EngineFactory, GuestExit,
    InstanceResult, OutputMode, RunResult, Scheduler, SchedulerConfig, SchedulerError,
    SchedulerStats, SliceEnd, SliceOutcome, StopReason, SubmitError, VCPUState, VCPUStats, VCPU,
};
