//! The GMP-style coroutine scheduler: many guest processes as coroutines on N vCPU worker
//! threads, with local run queues, a global queue, work stealing, preemption by instruction
//! budget and parking of idle vCPUs; plus batch runs of many instances of one program.
//!
//! Not yet here: several guest threads inside one process (they need guest memory shared
//! across vCPUs), and parking a coroutine on a blocking system call (a host-blocking call
//! such as `nanosleep` holds its vCPU). See `vm_coroutine` for the details and invariants.

pub use vm_coroutine::{
    batch, run_batch, run_sequential, scheduler, BatchConfig, BatchSummary, Coroutine,
    CoroutineExit, CoroutineId, CoroutineResult, CoroutineState, EngineFactory, InstanceResult,
    OutputMode, Scheduler, SchedulerConfig, SchedulerError, SchedulerStats, SliceOutcome,
    SubmitError, VCPUState, VCPUStats, VCPU,
};
