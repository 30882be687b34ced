//! The coordinator: accepts authenticated workers and clients, keeps every task durably,
//! places tasks on workers and recovers from failures.
//!
//! # Structure
//! One *core* task owns all mutable state (tasks, queue, node registry, placement, waiters)
//! and handles events one at a time, so no state is shared between threads. Each
//! connection has a reader task that turns frames into events and a writer task
//! ([`crate::connection`]); the task store has its own writer thread, whose commit callbacks
//! come back to the core as events.
//!
//! # Invariants
//! - A submission is acknowledged only after its task record committed; the task may already
//!   run before that (a crash before the commit loses a task nobody was told about).
//! - Every task has at most one final outcome, decided by the
//!   [`FaultToleranceManager`](crate::FaultToleranceManager); it is written with its result in one transaction, and waiters
//!   are answered only after that commit. Until then the task counts as running in the
//!   status counts, so that what `cluster_status` reports as finished survives a crash.
//! - After a restart every task in the store is known again: final ones with their results,
//!   the others queued for dispatch (or adopted by a reconnecting worker that reports them
//!   running).
//! - A node has at most its `max_concurrent` tasks; a slot is freed only when the node
//!   reports the task ended or is declared dead, so cancelling never overbooks a node.
//! - Frames from a connection are checked for kind: a worker connection may only send worker
//!   messages, a client connection only client requests; anything else closes it.
//!
//! # Files
//! - `core.rs`: the state machine (tasks, queue, placement, recovery);
//! - `server.rs`: the TCP server (handshakes, per-connection readers);
//! - `gate.rs`: the handshake gate (bounds on unauthenticated connections, eviction);
//! - this file: [`VmCoordinator`], the handle that starts both and answers in-process calls.

mod core;
mod gate;
mod server;
mod shared;

use self::core::{Core, Event, Responder};
use self::server::{accept_loop, ServerCtx};
use crate::architecture::DistributedArchitectureConfig;
use crate::auth::ClusterToken;
use crate::connection::AbortOnDrop;
use crate::protocol::{
    CoordinatorInfo, ImageHash, TaskCounts, TaskId, TaskInfo, TaskPayload, TaskType, VmMessage,
};
use crate::registry::VmInfo;
use crate::store::{open_store, OpenOptions, StoreLocation};
use crate::Error;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use vm_exec_core::elf::Program;

/// Checks that `bytes` is a program this project can run; returns its hash.
fn validate_image(bytes: &[u8]) -> Result<ImageHash, String> {
    if bytes.len() > crate::protocol::MAX_IMAGE_BYTES {
        return Err(format!(
            "a program of {} bytes exceeds the maximum of {} bytes",
            bytes.len(),
            crate::protocol::MAX_IMAGE_BYTES
        ));
    }
    Program::parse(bytes.to_vec()).map_err(|e| format!("not a runnable program: {e}"))?;
    Ok(ImageHash::of(bytes))
}

/// Nodes and task counts, as [`VmCoordinator::cluster_status`] reports them.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterStatus {
    /// Every node known.
    pub nodes: Vec<VmInfo>,
    /// Tasks by status.
    pub tasks: TaskCounts,
    /// The coordinators sharing the task store, as their heartbeat rows say (empty with a
    /// redb store).
    pub coordinators: Vec<CoordinatorInfo>,
}

/// A running coordinator. See the module docs.
pub struct VmCoordinator {
    core: mpsc::UnboundedSender<Event>,
    addr: SocketAddr,
    token: ClusterToken,
    _accept: AbortOnDrop,
    core_task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for VmCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmCoordinator").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl VmCoordinator {
    /// Opens the store in `config.data_dir` (recovering what it holds), binds
    /// `config.listen` and starts serving, in the current tokio runtime.
    pub async fn start(config: DistributedArchitectureConfig) -> Result<VmCoordinator, Error> {
        let token = match &config.token {
            Some(t) => t.clone(),
            None => ClusterToken::generate()?,
        };
        let location = match &config.store_url {
            Some(url) => StoreLocation::Postgres(url.clone()),
            None => StoreLocation::Dir(config.data_dir.clone()),
        };
        let options = OpenOptions { durable: config.durable, init: config.init_store };
        let (store, recovered) =
            tokio::task::spawn_blocking(move || open_store(&location, options))
                .await
                .map_err(|e| Error::Store(e.to_string()))??;
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let core = Core::new(&config, store, recovered, tx.clone(), addr);
        let core_task = tokio::spawn(core.run(rx));
        let ctx = Arc::new(ServerCtx {
            token: token.clone(),
            core: tx.clone(),
            handshake_timeout: config.handshake_timeout,
            gate: Arc::new(gate::HandshakeGate::new(
                config.max_unauthenticated,
                config.max_unauthenticated_per_source,
            )),
            next_conn: AtomicU64::new(1),
        });
        let accept = tokio::spawn(accept_loop(listener, ctx));
        tracing::info!("coordinator listening on {addr} ({} strategy)", config.strategy);
        Ok(VmCoordinator {
            core: tx,
            addr,
            token,
            _accept: AbortOnDrop(accept.abort_handle()),
            core_task: Some(core_task),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The cluster token (generated when the configuration had none).
    pub fn token(&self) -> &ClusterToken {
        &self.token
    }

    async fn ask(&self, make: impl FnOnce(Responder) -> Event) -> Result<VmMessage, Error> {
        let (tx, rx) = oneshot::channel();
        self.core.send(make(Responder::Local(tx))).map_err(|_| Error::Closed)?;
        match rx.await.map_err(|_| Error::Closed)? {
            VmMessage::Failure { message, .. } => Err(Error::Rejected(message)),
            m => Ok(m),
        }
    }

    /// Submits a task; returns its id once it is stored durably.
    pub async fn submit_task(
        &self,
        task_type: TaskType,
        payload: TaskPayload,
    ) -> Result<TaskId, Error> {
        let spec = payload.spec();
        let bytes = payload.program;
        let (bytes, checked) = tokio::task::spawn_blocking(move || {
            let r = validate_image(&bytes);
            (bytes, r)
        })
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?;
        let hash = checked.map_err(Error::InvalidImage)?;
        let bytes = Arc::new(bytes);
        self.ask(|reply| Event::PutImage { hash, bytes, reply }).await?;
        match self.ask(|reply| Event::Submit { task_type, spec, reply }).await? {
            VmMessage::Submitted { task, .. } => Ok(task),
            m => Err(Error::Unexpected(m.kind())),
        }
    }

    /// A task's status, with its result once final.
    pub async fn get_task_status(&self, id: &TaskId) -> Result<TaskInfo, Error> {
        let task = *id;
        match self.ask(|reply| Event::Status { task, reply }).await? {
            VmMessage::Status { info: Some(info), .. } => Ok(info),
            VmMessage::Status { info: None, .. } => Err(Error::UnknownTask(task)),
            m => Err(Error::Unexpected(m.kind())),
        }
    }

    /// Waits until a task is final and durable; returns it with its result.
    pub async fn wait_task(&self, id: &TaskId) -> Result<TaskInfo, Error> {
        let task = *id;
        match self.ask(|reply| Event::Wait { task, reply }).await? {
            VmMessage::Status { info: Some(info), .. } => Ok(info),
            VmMessage::Status { info: None, .. } => Err(Error::UnknownTask(task)),
            m => Err(Error::Unexpected(m.kind())),
        }
    }

    /// Cancels a queued or running task on behalf of `by`; returns its final status.
    pub async fn cancel_task(&self, id: &TaskId, by: &str) -> Result<TaskInfo, Error> {
        let (task, by) = (*id, by.to_string());
        match self.ask(|reply| Event::Cancel { task, by, reply }).await? {
            VmMessage::Status { info: Some(info), .. } => Ok(info),
            VmMessage::Status { info: None, .. } => Err(Error::UnknownTask(task)),
            m => Err(Error::Unexpected(m.kind())),
        }
    }

    /// The nodes and task counts.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        match self.ask(|reply| Event::Cluster { reply }).await? {
            VmMessage::ClusterStatus { nodes, tasks, coordinators, .. } => {
                Ok(ClusterStatus { nodes, tasks, coordinators })
            }
            m => Err(Error::Unexpected(m.kind())),
        }
    }

    /// Stops accepting connections and stops the core (the store finishes its pending
    /// commits).
    pub async fn shutdown(mut self) {
        let _ = self.core.send(Event::Shutdown);
        if let Some(t) = self.core_task.take() {
            let _ = t.await;
        }
    }
}
