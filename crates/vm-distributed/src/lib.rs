//! Distributed execution of guest programs: a coordinator, worker nodes and clients on
//! tokio, over an authenticated, versioned, length-delimited protocol.
//!
//! | module | owns |
//! |---|---|
//! | [`protocol`] | ids, task and node descriptions, [`VmMessage`], frame codec with size and decode limits |
//! | [`auth`] | the cluster token and the HMAC-SHA256 challenge-response handshake |
//! | [`connection`] | the batching writer task of a connection |
//! | [`store`] | the coordinator's durable task store: the [`store::TaskStore`] trait, its redb and PostgreSQL backends |
//! | [`registry`] | [`registry::NodeRegistry`]: registration, heartbeats, suspect, dead and forgotten nodes |
//! | [`scheduler`] | [`TaskScheduler`] and the [`LoadBalancingStrategy`]s |
//! | [`fault_tolerance`] | retries, back-off, re-dispatch, deadlines, one result per task |
//! | [`coordinator`] | [`VmCoordinator`]: the server that ties these together (`core` state machine, `server` TCP side) |
//! | [`worker`] | a worker node: runs tasks on a local coroutine scheduler |
//! | [`client`] | [`ClusterClient`]: submit, status, wait |
//! | [`architecture`] | [`DistributedArchitectureConfig`], [`initialize_distributed_environment`] |
//!
//! Invariants that hold across modules: nothing read from the network can panic the
//! process (a bad frame closes its connection); nothing but the handshake is read before a
//! peer proved it holds the token; every accepted task is durable before it is acknowledged
//! and has exactly one recorded outcome.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vm_distributed::Error> {
//! use vm_distributed::{initialize_distributed_environment, DistributedArchitectureConfig};
//! use vm_distributed::protocol::{TaskPayload, TaskType};
//!
//! let coordinator = initialize_distributed_environment(DistributedArchitectureConfig::default()).await?;
//! let program = std::fs::read("guests/bin/hello")?;
//! let id = coordinator.submit_task(TaskType::CpuIntensive, TaskPayload::new(program, "hello", &[])).await?;
//! let status = coordinator.get_task_status(&id).await?;
//! println!("{id}: {}", status.status.name());
//! # Ok(()) }
//! ```

pub mod architecture;
pub mod auth;
pub mod client;
pub mod connection;
pub mod coordinator;
pub mod fault_tolerance;
pub mod protocol;
pub mod registry;
pub mod scheduler;
pub mod store;
pub mod worker;

pub use architecture::{initialize_distributed_environment, DistributedArchitectureConfig};
pub use client::ClusterClient;
pub use coordinator::{ClusterStatus, VmCoordinator};
pub use fault_tolerance::{FaultToleranceConfig, FaultToleranceManager};
pub use protocol::VmMessage;
pub use scheduler::{LoadBalancingStrategy, TaskScheduler};

use protocol::TaskId;

/// Errors of distributed execution.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket or file operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A frame's length prefix exceeds the limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A message could not be encoded.
    #[error("cannot encode a message: {0}")]
    Encode(String),
    /// A payload is malformed.
    #[error("malformed message: {0}")]
    Decode(String),
    /// The handshake broke the protocol.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The peer could not prove it holds the cluster token.
    #[error("authentication failed (wrong cluster token?)")]
    AuthFailed,
    /// The peers speak different protocol versions.
    #[error("protocol version mismatch: ours {ours}, theirs {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u16,
        /// The peer's.
        theirs: u16,
    },
    /// The peer refused the connection.
    #[error("refused by the peer: {0}")]
    Refused(String),
    /// Something took too long.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The connection (or the coordinator) closed.
    #[error("connection closed")]
    Closed,
    /// A message that has no place at this point of the protocol.
    #[error("unexpected {0} message")]
    Unexpected(&'static str),
    /// The task store failed.
    #[error("task store: {0}")]
    Store(String),
    /// A value is out of range or malformed.
    #[error("{0}")]
    Invalid(String),
    /// A program image is not a runnable ELF.
    #[error("invalid program image: {0}")]
    InvalidImage(String),
    /// The coordinator does not know this task.
    #[error("unknown task {0}")]
    UnknownTask(TaskId),
    /// The coordinator refused a request.
    #[error("refused: {0}")]
    Rejected(String),
}
