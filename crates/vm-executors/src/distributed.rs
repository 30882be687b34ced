//! Distributed execution: a coordinator with a durable task store, worker nodes that run
//! guest programs on their local coroutine scheduler, and clients, over an authenticated
//! protocol. This module re-exports `vm_distributed`; see it for the invariants.

pub use vm_distributed::{
    architecture, auth, client, connection, coordinator, fault_tolerance,
    initialize_distributed_environment, protocol, registry, scheduler, store, worker,
    ClusterClient, ClusterStatus, DistributedArchitectureConfig, Error, FaultToleranceConfig,
    FaultToleranceManager, LoadBalancingStrategy, TaskScheduler, VmCoordinator, VmMessage,
};
