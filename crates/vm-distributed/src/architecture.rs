//! The shape of a deployment: [`DistributedArchitectureConfig`] and
//! [`initialize_distributed_environment`], which starts a coordinator from it.
//!
//! A cluster is one coordinator and any number of worker nodes. The coordinator owns the
//! durable task store and decides placement ([`LoadBalancingStrategy`]) and recovery
//! ([`FaultToleranceConfig`]); workers run guests on their local coroutine scheduler. Nodes
//! and clients authenticate with a shared cluster token.

use crate::auth::ClusterToken;
use crate::coordinator::VmCoordinator;
use crate::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::fault_tolerance::FaultToleranceConfig;
pub use crate::scheduler::LoadBalancingStrategy;

/// How a coordinator runs.
#[derive(Clone, Debug)]
pub struct DistributedArchitectureConfig {
    /// Address to listen on (port 0: any free port, see [`VmCoordinator::local_addr`]).
    pub listen: SocketAddr,
    /// Directory of the task store (redb), unless `store_url` names a database.
    pub data_dir: PathBuf,
    /// A PostgreSQL database for the task store (`postgres://USER@HOST:PORT/DB`) instead
    /// of `data_dir`.
    pub store_url: Option<String>,
    /// The cluster token; `None` generates one ([`VmCoordinator::token`]).
    pub token: Option<ClusterToken>,
    /// Flush every commit to disk before acknowledging (on by default).
    pub durable: bool,
    /// Start an empty task store even if `data_dir` held one (the old database file is kept
    /// beside it, renamed). Without it a damaged or missing store is refused.
    pub init_store: bool,
    /// How tasks are placed.
    pub strategy: LoadBalancingStrategy,
    /// Failure detection and recovery.
    pub fault_tolerance: FaultToleranceConfig,
    /// Most time a connection may take to authenticate (and a worker to register).
    pub handshake_timeout: Duration,
    /// Most connections authenticating at once; beyond it, the oldest is closed to make room.
    pub max_unauthenticated: usize,
    /// Most connections authenticating at once from one source address; beyond it, that
    /// source's oldest is closed to make room.
    pub max_unauthenticated_per_source: usize,
    /// Largest output cap (bytes per stream) a task may ask for; larger requests are refused.
    pub max_output_cap: u32,
    /// Most queued tasks; submissions beyond are refused (backpressure).
    pub max_queued: usize,
}

impl Default for DistributedArchitectureConfig {
    fn default() -> Self {
        DistributedArchitectureConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: PathBuf::from("vmx-data"),
            store_url: None,
            token: None,
            durable: true,
            init_store: false,
            strategy: LoadBalancingStrategy::default(),
            fault_tolerance: FaultToleranceConfig::default(),
            handshake_timeout: Duration::from_secs(2),
            max_unauthenticated: 1024,
            max_unauthenticated_per_source: 128,
            max_output_cap: crate::protocol::MAX_OUTPUT_CAP,
            max_queued: 1 << 20,
        }
    }
}

/// Starts a coordinator as configured (in the current tokio runtime).
pub async fn initialize_distributed_environment(
    config: DistributedArchitectureConfig,
) -> Result<VmCoordinator, Error> {
    VmCoordinator::start(config).await
}
