//! A client of a coordinator: stores images, submits tasks, asks for status and waits for
//! results over one authenticated connection.
//!
//! # Invariants
//! - Requests carry ids; any number may be outstanding at once (pipelining), and each reply is
//!   matched to its request by id, whatever the order replies come in.
//! - When the connection ends, every outstanding request fails with [`Error::Closed`]; a
//!   submission acknowledged before that is durable on the coordinator, so waiting for it
//!   again after reconnecting is safe.
//! - Images, stdin and arguments over the protocol's limits are refused here, with one line,
//!   before anything is sent; anything within them travels (in frames of
//!   [`crate::protocol::MAX_FRAME_BYTES`]) however large.
//! - [`ClusterClient::connect_retrying`] retries failures to connect (refused, reset, timed
//!   out) with exponential back-off and jitter; a failed authentication is not retried.

use crate::auth::{client_handshake, ClusterToken};
use crate::connection::spawn_writer;
use crate::connection::AbortOnDrop;
use crate::coordinator::ClusterStatus;
use crate::protocol::{
    read_message, ImageHash, Role, TaskId, TaskInfo, TaskPayload, TaskSpec, TaskType, VmMessage,
    MAX_ARGS_BYTES, MAX_IMAGE_BYTES, MAX_MESSAGE_BYTES, MAX_STDIN_BYTES,
};
use crate::Error;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use vm_exec_core::sync::IgnorePoison;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<VmMessage>>>>;

/// A connection to a coordinator. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct ClusterClient {
    out: mpsc::UnboundedSender<VmMessage>,
    pending: Pending,
    next: AtomicU64,
    _reader: AbortOnDrop,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient").finish_non_exhaustive()
    }
}

fn reply_id(m: &VmMessage) -> Option<u64> {
    match m {
        VmMessage::ImageStored { req, .. }
        | VmMessage::Submitted { req, .. }
        | VmMessage::Status { req, .. }
        | VmMessage::ClusterStatus { req, .. }
        | VmMessage::Failure { req, .. } => Some(*req),
        _ => None,
    }
}

impl ClusterClient {
    /// Connects to `addr` and authenticates with `token` (at most `timeout` for both).
    pub async fn connect(
        addr: &str,
        token: &ClusterToken,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout("connecting to the coordinator"))??;
        stream.set_nodelay(true)?;
        tokio::time::timeout(timeout, client_handshake(&mut stream, token, Role::Client))
            .await
            .map_err(|_| Error::Timeout("the handshake"))??;
        let (mut rd, wr) = stream.into_split();
        let out = spawn_writer(wr, format!("coordinator {addr}"));
        let pending: Pending = Arc::default();
        let reader = {
            let pending = pending.clone();
            tokio::spawn(async move {
                loop {
                    match read_message::<VmMessage, _>(&mut rd, MAX_MESSAGE_BYTES).await {
                        Ok(m) => {
                            let Some(id) = reply_id(&m) else {
                                tracing::error!("unexpected {} from the coordinator", m.kind());
                                break;
                            };
                            let waiter = pending.lock().ignore_poison().remove(&id);
                            if let Some(w) = waiter {
                                let _ = w.send(m);
                            }
                        }
                        Err(e) => {
                            tracing::debug!("connection to the coordinator ended: {e}");
                            break;
                        }
                    }
                }
                // Dropping the senders fails every outstanding request.
                pending.lock().ignore_poison().clear();
            })
        };
        Ok(ClusterClient {
            out,
            pending,
            next: AtomicU64::new(1),
            _reader: AbortOnDrop(reader.abort_handle()),
        })
    }

    async fn request(&self, make: impl FnOnce(u64) -> VmMessage) -> Result<VmMessage, Error> {
        let req = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().ignore_poison().insert(req, tx);
        if self.out.send(make(req)).is_err() {
            self.pending.lock().ignore_poison().remove(&req);
            return Err(Error::Closed);
        }
        match rx.await.map_err(|_| Error::Closed)? {
            VmMessage::Failure { message, .. } => Err(Error::Rejected(message)),
            m => Ok(m),
        }
    }

    /// Like [`ClusterClient::connect`], but retries connection failures (not authentication
    /// failures) with exponential back-off from 20 ms to 1 s, with jitter, for up to `total`.
    /// `addr` may list several coordinators separated by commas (coordinators sharing one
    /// database): each is tried in turn (a log line names the next one), and the back-off
    /// applies after a whole round failed.
    pub async fn connect_retrying(
        addr: &str,
        token: &ClusterToken,
        timeout: Duration,
        total: Duration,
    ) -> Result<Self, Error> {
        let addrs: Vec<&str> = addr.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
        if addrs.is_empty() {
            return Err(Error::Invalid("no coordinator address".into()));
        }
        let give_up = std::time::Instant::now() + total;
        let mut delay = Duration::from_millis(20);
        loop {
            let mut last = None;
            for (i, a) in addrs.iter().enumerate() {
                match Self::connect(a, token, timeout).await {
                    Ok(c) => return Ok(c),
                    Err(
                        e @ (Error::AuthFailed | Error::VersionMismatch { .. } | Error::Invalid(_)),
                    ) => return Err(e),
                    Err(e) => {
                        if let Some(next) = addrs.get(i + 1) {
                            tracing::warn!("coordinator {a} unreachable ({e}); trying {next}");
                        }
                        last = Some(e);
                    }
                }
            }
            let e = last.unwrap_or(Error::Closed);
            let now = std::time::Instant::now();
            if now >= give_up {
                return Err(e);
            }
            let jitter = crate::auth::random_nonce().map_or(0, |n| n[0]);
            let wait = (delay + delay.mul_f64(f64::from(jitter) / 255.0))
                .min(give_up.saturating_duration_since(now));
            tracing::debug!("connecting to {addr} failed ({e}); retrying in {wait:?}");
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// Whether the coordinator has the image `hash`.
    pub async fn has_image(&self, hash: ImageHash) -> Result<bool, Error> {
        match self.request(|req| VmMessage::HasImage { req, hash }).await {
            Ok(VmMessage::ImageStored { .. }) => Ok(true),
            Ok(m) => Err(Error::Unexpected(m.kind())),
            Err(Error::Rejected(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Stores a program image on the coordinator (a no-op if it has it); returns its hash.
    pub async fn put_image(&self, bytes: Vec<u8>) -> Result<ImageHash, Error> {
        if bytes.len() > MAX_IMAGE_BYTES {
            return Err(Error::Invalid(format!(
                "the program has {} bytes; the most a cluster takes is {MAX_IMAGE_BYTES}",
                bytes.len()
            )));
        }
        match self.request(|req| VmMessage::PutImage { req, bytes }).await? {
            VmMessage::ImageStored { hash, .. } => Ok(hash),
            m => Err(Error::Unexpected(m.kind())),
        }
    }

    /// Submits a task whose image is stored; returns its id once it is durable.
    pub async fn submit(&self, task_type: TaskType, spec: TaskSpec) -> Result<TaskId, Error> {
        if spec.stdin.len() > MAX_STDIN_BYTES {
            return Err(Error::Invalid(format!(
                "stdin has {} bytes; the most a task takes is {MAX_STDIN_BYTES}",
                spec.stdin.len()
            )));
        }
        let arg_bytes: usize = spec.args.iter().chain(&spec.env).map(|a| a.len() + 1).sum();
        if arg_bytes > MAX_ARGS_BYTES {
            return Err(Error::Invalid(format!(
                "arguments and environment have {arg_bytes} bytes; the most a task takes is {MAX_ARGS_BYTES}"
            )));
        }
        match self.request(|req| VmMessage::Submit { req, task_type, spec }).await? {
            VmMessage::Submitted { task, .. } => Ok(task),
            m => Err(Error::Unexpected(m.kind())),
        }
    }

    /// Stores the payload's program and submits the task.
    pub async fn submit_payload(
        &self,
        task_type: TaskType,
        payload: TaskPayload,
    ) -> Result<TaskId, Error> {
        let spec = payload.spec();
        if !self.has_image(spec.image).await? {
            self.put_image(payload.program).await?;
        }
        self.submit(task_type, spec).await
    }

    /// A task's status (with its result once final); `None` for an unknown task.
    pub async fn status(&self, task: TaskId) -> Result<Option<TaskInfo>, Error> {
        match self.request(|req| VmMessage::GetStatus { req, task }).await? {
            VmMessage::Status { info, .. } => Ok(info),
            m => Err(Error::Unexpected(m.kind())),
        }
    }

    /// Waits until a task is final and durable; `None` for an unknown task.
    pub async fn wait(&self, task: TaskId) -> Result<Option<TaskInfo>, Error> {
        match self.request(|req| VmMessage::Wait { req, task }).await? {
            VmMessage::Status { info, .. } => Ok(info),
            m => Err(Error::Unexpected(m.kind())),
        }
    }

    /// Cancels a queued or running task; `by` names who asks (the coordinator adds the
    /// connection's address). Returns the task's final status; `None` for an unknown task.
    pub async fn cancel(&self, task: TaskId, by: &str) -> Result<Option<TaskInfo>, Error> {
        let by = by.to_string();
        match self.request(|req| VmMessage::CancelTask { req, task, by }).await? {
            VmMessage::Status { info, .. } => Ok(info),
            m => Err(Error::Unexpected(m.kind())),
        }
    }

    /// The nodes and task counts.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        match self.request(|req| VmMessage::GetClusterStatus { req }).await? {
            VmMessage::ClusterStatus { nodes, tasks, coordinators, .. } => {
                Ok(ClusterStatus { nodes, tasks, coordinators })
            }
            m => Err(Error::Unexpected(m.kind())),
        }
    }
}
