//! The GMP-style coroutine scheduler: guest threads and guest processes as coroutines on N
//! vCPU worker threads (M:N), with local run queues, a global queue, work stealing,
//! preemption by instruction budget, parking of guest threads that block (futex, sleep) and
//! of idle vCPUs; plus batch runs of many instances of one program. See `vm_coroutine` for
//! the details and invariants.

pub use vm_coroutine::{
    batch, run_batch, run_sequential, scheduler, BatchConfig, BatchSummary, Coroutine,
    CoroutineExit, CoroutineId, CoroutineResult, CoroutineState, EngineFactory, InstanceResult,
    OutputMode, Scheduler, SchedulerConfig, SchedulerError, SchedulerStats, SliceEnd, SliceOutcome,
    SubmitError, VCPUState, VCPUStats, VCPU,
};
