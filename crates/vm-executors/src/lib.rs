//! vm-executors runs unmodified, statically linked RV64GC Linux programs.
//!
//! This crate is the public face of the project:
//! - [`async_executor`]: three execution engines (interpreter, JIT, hybrid) behind one
//!   interface, and a context that runs guests in the background;
//! - [`coroutine`]: the M:N scheduler that runs many guest processes on N vCPU threads;
//! - [`distributed`]: a coordinator, worker nodes and clients that run guest programs as
//!   tasks across processes and machines, durably and with fault tolerance.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vm_executors::{InterpreterExecutor, Program, ProcessConfig};
//!
//! let bytes = std::fs::read("guests/bin/hello")?;
//! let program = Arc::new(Program::parse(bytes)?);
//! let mut executor = InterpreterExecutor::new();
//! executor.load(program, ProcessConfig::default())?;
//! let result = executor.run_to_completion()?;
//! println!("exit status {}", result.exit.shell_status());
//! println!("{} block executions", executor.get_stats().total_executions);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod async_executor;
pub mod coroutine;
pub mod distributed;

pub use async_executor::{
    AsyncExecutionContext, ExecutionHandle, ExecutionResult, ExecutionStats, ExecutorType,
    GuestRunner, HybridExecutor, InterpreterExecutor, JitExecutor,
};
pub use coroutine::{
    Coroutine, CoroutineId, CoroutineState, Scheduler, SchedulerStats, VCPUState, VCPUStats, VCPU,
};
pub use distributed::architecture::{FaultToleranceConfig, LoadBalancingStrategy};
pub use distributed::fault_tolerance::FaultToleranceManager;
pub use distributed::protocol::{TaskId, TaskInfo, TaskStatus, TaskType, VmCapabilities};
pub use distributed::registry::VmInfo;
pub use distributed::scheduler::TaskScheduler;
pub use distributed::{
    initialize_distributed_environment, DistributedArchitectureConfig, VmCoordinator, VmMessage,
};
pub use vm_exec_core::elf::{ElfError, Program};
pub use vm_exec_core::exec::{GuestExit, GuestSignal};
pub use vm_exec_core::loader::{find_interpreter, LoadError};
pub use vm_exec_core::process::{CaptureBuffer, ProcessConfig, Stdio};
pub use vm_exec_core::syscall::strace::StraceSink;

/// Errors of the facade.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The ELF file was rejected.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// An executor was asked to run before a program was loaded.
    #[error("no program loaded")]
    NotLoaded,
    /// The guest already finished.
    #[error("the guest has already exited")]
    Finished,
    /// A background execution could not report its result.
    #[error("background execution ended without a result")]
    Lost,
}
