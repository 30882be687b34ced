//! The wire protocol: identifiers, task and node descriptions, the messages nodes exchange
//! ([`VmMessage`]) and the frame codec.
//!
//! # Wire format
//! A connection starts with the authenticated handshake of [`crate::auth`] (messages of type
//! [`Handshake`], at most [`HANDSHAKE_FRAME_BYTES`] each). After it, every message is one or
//! more frames: a 4-byte big-endian header whose low 31 bits are the frame's length and whose
//! top bit ([`MORE_FRAMES`]) says that another frame of the same message follows, then that
//! many bytes. The concatenated frames are a [`VmMessage`] encoded with bincode 2 (serde,
//! standard configuration). A message of at most [`MAX_FRAME_BYTES`] is one frame; larger
//! ones (program images, stdin, outputs) travel as frames of [`MAX_FRAME_BYTES`].
//!
//! # Invariants
//! - No frame is longer than [`MAX_FRAME_BYTES`], and a message is refused as soon as its
//!   frames add up to more than the receiver's maximum (at most [`MAX_MESSAGE_BYTES`]),
//!   before the offending frame's bytes are read; the connection is then closed. The
//!   receiver allocates only what arrived, never what a header claims.
//! - Decoding runs under a bincode limit of [`MAX_MESSAGE_BYTES`], so a short message that
//!   claims a huge collection cannot make the receiver allocate it; a payload with trailing
//!   bytes is refused.
//! - Sizes users choose are bounded so that every message fits: images
//!   ([`MAX_IMAGE_BYTES`]), stdin ([`MAX_STDIN_BYTES`]), arguments and environment
//!   ([`MAX_ARGS_BYTES`]) and the output cap ([`MAX_OUTPUT_CAP`], per stream).
//! - Every decoding failure is an [`Error`], never a panic: a malformed frame closes that one
//!   connection.
//!
//! Why this file is long: it is the whole wire vocabulary (every type that crosses a
//! connection, with its limits) and the frame codec, kept together so the format can be
//! reviewed in one place; about 120 lines are its tests (framing, limits, hostile input).

use crate::registry::VmInfo;
use crate::Error;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use vm_exec_core::exec::{GuestExit, GuestSignal};

/// Version of this protocol; both ends of a connection must speak the same one.
pub const PROTOCOL_VERSION: u16 = 3;
/// The first bytes of every handshake.
pub const MAGIC: [u8; 4] = *b"VMXD";
/// Largest frame; larger messages are split into frames of this size.
pub const MAX_FRAME_BYTES: usize = 16 << 20;
/// Header bit of a frame that another frame of the same message follows.
pub const MORE_FRAMES: u32 = 1 << 31;
/// Largest program image.
pub const MAX_IMAGE_BYTES: usize = 1 << 30;
/// Largest stdin of a task.
pub const MAX_STDIN_BYTES: usize = 1 << 30;
/// Most bytes of `argv` and `envp` together.
pub const MAX_ARGS_BYTES: usize = 16 << 20;
/// Largest output cap a task may ask for (per stream); a coordinator may set a lower
/// cluster-wide maximum.
pub const MAX_OUTPUT_CAP: u32 = 1 << 30;
/// Largest message (a result with two full outputs, a task with full stdin, arguments and
/// environment, plus slack for the rest).
pub const MAX_MESSAGE_BYTES: usize = 2 * (MAX_OUTPUT_CAP as usize) + MAX_ARGS_BYTES + (1 << 20);
/// Largest frame accepted before authentication has succeeded.
pub const HANDSHAKE_FRAME_BYTES: usize = 512;

/// The bincode configuration of every payload, with the decode limit.
fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
}

/// Identifies a task in a cluster; assigned by the coordinator, never reused by one data
/// directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId(pub u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task-{}", self.0)
    }
}

impl std::str::FromStr for TaskId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let digits = s.strip_prefix("task-").unwrap_or(s);
        digits.parse().map(TaskId).map_err(|_| Error::Invalid(format!("not a task id: `{s}`")))
    }
}

/// Identifies a worker node; chosen at random by the worker when it starts and kept across
/// reconnections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node-{:08x}", self.0 & 0xffff_ffff)
    }
}

/// The SHA-256 of a program image: images are content-addressed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ImageHash(pub [u8; 32]);

impl ImageHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> ImageHash {
        ImageHash(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for ImageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageHash({self})")
    }
}

/// What kind of work a task is: recorded with the task, shown by status queries, and counted
/// per node. Placement is decided by the [`crate::scheduler::LoadBalancingStrategy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskType {
    /// Mostly computation.
    CpuIntensive,
    /// Mostly memory.
    MemoryIntensive,
    /// Mostly input and output.
    IoIntensive,
}

impl TaskType {
    /// The short name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TaskType::CpuIntensive => "cpu",
            TaskType::MemoryIntensive => "memory",
            TaskType::IoIntensive => "io",
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TaskType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "cpu" => Ok(TaskType::CpuIntensive),
            "memory" | "mem" => Ok(TaskType::MemoryIntensive),
            "io" => Ok(TaskType::IoIntensive),
            _ => Err(Error::Invalid(format!("unknown task type `{s}` (cpu, memory or io)"))),
        }
    }
}

/// Default guest address-space size of a task.
pub const DEFAULT_TASK_MEMORY: u64 = 256 << 20;
/// Default number of bytes kept of each of a task's output streams.
pub const DEFAULT_OUTPUT_CAP: u32 = 16 << 20;

/// Limits of one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLimits {
    /// Most guest instructions the task may retire; a guest that reaches it ends with
    /// [`TaskExit::InstructionLimit`].
    pub fuel: Option<u64>,
    /// Size of the guest's address space, in bytes.
    pub memory_bytes: u64,
    /// Most wall-clock time from submission to result, in milliseconds. A task past its
    /// deadline is killed (if running) and fails.
    pub deadline_ms: Option<u64>,
    /// Bytes kept of each of stdout and stderr; the rest is counted, not kept.
    pub output_cap: u32,
}

impl Default for TaskLimits {
    fn default() -> Self {
        TaskLimits {
            fuel: None,
            memory_bytes: DEFAULT_TASK_MEMORY,
            deadline_ms: None,
            output_cap: DEFAULT_OUTPUT_CAP,
        }
    }
}

/// A task as submitted through the in-process API: a guest program with its arguments,
/// environment, stdin and limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPayload {
    /// The statically linked RV64GC ELF image.
    #[serde(with = "serde_bytes")]
    pub program: Vec<u8>,
    /// `argv`, including `argv[0]`.
    pub args: Vec<Vec<u8>>,
    /// `envp` entries (`NAME=value`).
    pub env: Vec<Vec<u8>>,
    /// Everything the guest reads from stdin.
    #[serde(with = "serde_bytes")]
    pub stdin: Vec<u8>,
    /// Its limits.
    pub limits: TaskLimits,
}

impl TaskPayload {
    /// A payload running `program` with `argv = [name, args...]` and default limits.
    pub fn new(program: Vec<u8>, name: &str, args: &[&str]) -> TaskPayload {
        let mut argv = vec![name.as_bytes().to_vec()];
        argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
        TaskPayload {
            program,
            args: argv,
            env: Vec::new(),
            stdin: Vec::new(),
            limits: TaskLimits::default(),
        }
    }

    /// The image-free description of the task, referring to the program by its hash.
    pub fn spec(&self) -> TaskSpec {
        TaskSpec {
            image: ImageHash::of(&self.program),
            args: self.args.clone(),
            env: self.env.clone(),
            stdin: self.stdin.clone(),
            limits: self.limits.clone(),
        }
    }
}

/// A task as stored and dispatched: the program by its content hash, plus everything else of
/// the payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The program image.
    pub image: ImageHash,
    /// `argv`, including `argv[0]`.
    pub args: Vec<Vec<u8>>,
    /// `envp` entries.
    pub env: Vec<Vec<u8>>,
    /// stdin contents.
    #[serde(with = "serde_bytes")]
    pub stdin: Vec<u8>,
    /// Its limits.
    pub limits: TaskLimits,
}

/// How a task's guest ended: the wire form of [`GuestExit`] (the core type has no serde; the
/// variants keep their order, which is what bincode encodes). Its status comes from the core
/// type, so it is defined once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskExit {
    /// The guest exited with this status.
    Exited(i32),
    /// A fatal signal ended the guest.
    Signaled {
        /// The signal number.
        signo: i32,
    },
    /// The guest was killed (cancelled, or the worker shut down).
    Killed,
    /// The guest was killed because its deadline passed.
    DeadlineExceeded,
    /// The program could not be loaded (the loader's message).
    LoadFailed(String),
    /// The guest retired the most instructions its limits allow and was stopped.
    InstructionLimit {
        /// The limit.
        limit: u64,
    },
}

impl TaskExit {
    /// The wire form of a guest's exit, or `None` for an exit that is no task result (an
    /// engine panic is a failed attempt, reported as an error).
    pub fn from_exit(exit: GuestExit) -> Option<TaskExit> {
        Some(match exit {
            GuestExit::Exited(c) => TaskExit::Exited(c),
            GuestExit::Signaled(s) => TaskExit::Signaled { signo: s.signo },
            GuestExit::Killed => TaskExit::Killed,
            GuestExit::DeadlineExceeded => TaskExit::DeadlineExceeded,
            GuestExit::LoadFailed(m) => TaskExit::LoadFailed(m),
            GuestExit::InstructionLimit(limit) => TaskExit::InstructionLimit { limit },
            GuestExit::EnginePanicked(_) => return None,
        })
    }

    /// The core exit this stands for (a signal's pc and address are not sent: 0 and none).
    pub fn to_exit(&self) -> GuestExit {
        match self {
            TaskExit::Exited(c) => GuestExit::Exited(*c),
            TaskExit::Signaled { signo } => {
                GuestExit::Signaled(GuestSignal { signo: *signo, pc: 0, addr: None })
            }
            TaskExit::Killed => GuestExit::Killed,
            TaskExit::DeadlineExceeded => GuestExit::DeadlineExceeded,
            TaskExit::LoadFailed(m) => GuestExit::LoadFailed(m.clone()),
            TaskExit::InstructionLimit { limit } => GuestExit::InstructionLimit(*limit),
        }
    }

    /// The status a shell would show: [`GuestExit::shell_status`] of the same exit.
    pub fn shell_status(&self) -> i32 {
        self.to_exit().shell_status()
    }
}

impl fmt::Display for TaskExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskExit::Signaled { signo } => write!(f, "terminated by signal {signo}"),
            TaskExit::InstructionLimit { limit } => write!(f, "stopped after {limit} instructions"),
            other => other.to_exit().fmt(f),
        }
    }
}

/// What a finished run of a task left: exit, captured output (capped) and statistics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    /// How the guest ended.
    pub exit: TaskExit,
    /// Captured stdout (at most the task's output cap).
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
    /// Captured stderr (at most the task's output cap).
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
    /// Output bytes past the cap, both streams together.
    pub output_dropped: u64,
    /// Guest instructions retired.
    pub instructions: u64,
    /// Host time spent running the guest, in microseconds.
    pub run_time_us: u64,
    /// The node that ran it.
    pub node: NodeId,
    /// Which attempt produced it (1 for the first).
    pub attempt: u32,
}

/// Where a task is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskStatus {
    /// Accepted and waiting for a node with room (or for its retry back-off).
    Queued,
    /// Sent to a node.
    Running {
        /// The node.
        node: NodeId,
        /// The attempt (1 for the first).
        attempt: u32,
    },
    /// Finished with a result (whatever the guest's exit status).
    Completed {
        /// The result's shell status.
        exit_status: i32,
    },
    /// Given up: retries exhausted, deadline passed, or the program could not be loaded.
    Failed {
        /// Why, one reason per failed attempt or check.
        reasons: Vec<String>,
    },
    /// Ended by a cancel request (`vmx cancel`) before it finished.
    Cancelled {
        /// Who asked (as the client named itself, and the address it connected from).
        by: String,
        /// When (Unix time, milliseconds).
        at_ms: u64,
    },
}

impl TaskStatus {
    /// Whether the task has its one final outcome.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            TaskStatus::Completed { .. } | TaskStatus::Failed { .. } | TaskStatus::Cancelled { .. }
        )
    }

    /// A one-word name.
    pub fn name(&self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running { .. } => "running",
            TaskStatus::Completed { .. } => "completed",
            TaskStatus::Failed { .. } => "failed",
            TaskStatus::Cancelled { .. } => "cancelled",
        }
    }
}

/// Everything known about a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Its id.
    pub id: TaskId,
    /// Its type.
    pub task_type: TaskType,
    /// Its status.
    pub status: TaskStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// When the coordinator accepted it (Unix time, milliseconds).
    pub submitted_at_ms: u64,
    /// Its result, once completed (or the partial result of a run killed at the deadline).
    pub result: Option<TaskResult>,
}

/// A coordinator sharing the task store, as its heartbeat row records it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorInfo {
    /// Its identity (listen address, pid and a random suffix; new at every start).
    pub id: String,
    /// The address it listens on.
    pub addr: String,
    /// Its process id.
    pub pid: u32,
    /// When it started (Unix time, milliseconds).
    pub started_ms: u64,
    /// Its last heartbeat (Unix time, milliseconds).
    pub seen_ms: u64,
    /// When its heartbeat and leases expire unless renewed (Unix time, milliseconds).
    pub until_ms: u64,
}

/// Task counts by status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCounts {
    /// Waiting for a node.
    pub queued: u64,
    /// On a node.
    pub running: u64,
    /// Finished with a result.
    pub completed: u64,
    /// Given up.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl TaskCounts {
    /// All tasks.
    pub fn total(&self) -> u64 {
        self.queued + self.running + self.completed + self.failed + self.cancelled
    }
}

/// What a worker node offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmCapabilities {
    /// vCPU threads of its coroutine scheduler.
    pub vcpus: u32,
    /// Most tasks it runs at once (the coordinator never sends more).
    pub max_concurrent: u32,
    /// Guest memory it offers, in bytes (the sum of its running tasks' limits stays below).
    pub memory_bytes: u64,
    /// The execution engine it runs guests on.
    pub engine: String,
    /// The guest ISA.
    pub isa: String,
}

/// A worker's load, as its heartbeats report it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// Tasks running on it.
    pub running: u32,
    /// The host's 1-minute load average divided by its CPU count.
    pub cpu_load: f32,
    /// Tasks it has finished since it started.
    pub finished: u64,
}

/// Which side of a connection a peer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A worker node.
    Worker,
    /// A client (submits tasks, asks for status).
    Client,
}

/// The messages of the authenticated handshake (see [`crate::auth`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handshake {
    /// Client to server: who it is and its challenge.
    Hello {
        /// [`MAGIC`].
        magic: [u8; 4],
        /// Its [`PROTOCOL_VERSION`].
        version: u16,
        /// Worker or client.
        role: Role,
        /// Its random challenge.
        nonce: [u8; 32],
    },
    /// Server to client: the server's challenge and its answer to the client's.
    Challenge {
        /// The server's [`PROTOCOL_VERSION`].
        version: u16,
        /// Its random challenge.
        nonce: [u8; 32],
        /// HMAC proving the server holds the token.
        proof: [u8; 32],
    },
    /// Client to server: its answer to the server's challenge.
    Proof {
        /// HMAC proving the client holds the token.
        proof: [u8; 32],
    },
    /// Server to client: authenticated.
    Welcome,
    /// Either way: refused, and why; the connection is closed.
    Refused(String),
}

/// Every message after the handshake.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum VmMessage {
    // ---- worker -> coordinator ----
    /// A worker introduces itself (first message of a worker connection).
    Register {
        /// Its id.
        node: NodeId,
        /// Its name (host name and pid unless given).
        name: String,
        /// Its operating-system process id.
        pid: u32,
        /// What it offers.
        capabilities: VmCapabilities,
        /// Images it has cached already.
        images: Vec<ImageHash>,
        /// Tasks it is running now (after a reconnection), as `(task, attempt)`.
        running: Vec<(TaskId, u32)>,
    },
    /// Periodic liveness signal with load.
    Heartbeat(NodeLoad),
    /// A run of a task ended.
    TaskDone {
        /// Which task.
        task: TaskId,
        /// The result (its `attempt` says which run).
        result: TaskResult,
    },
    /// A run of a task could not be carried out (not a guest outcome: an engine panic, a
    /// missing image); the coordinator may retry it elsewhere.
    TaskError {
        /// Which task.
        task: TaskId,
        /// Which attempt.
        attempt: u32,
        /// Why.
        reason: String,
    },
    /// The worker lacks an image it was asked to run.
    NeedImage(ImageHash),

    // ---- coordinator -> worker ----
    /// Registration accepted.
    Registered {
        /// Heartbeat period the coordinator expects, in milliseconds.
        heartbeat_ms: u64,
    },
    /// A program image, sent once per worker before the first task that needs it.
    Image {
        /// Its hash.
        hash: ImageHash,
        /// The ELF bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Run a task.
    RunTask {
        /// Which task.
        task: TaskId,
        /// Which attempt (1 for the first).
        attempt: u32,
        /// What to run.
        spec: TaskSpec,
        /// Wall-clock time left before its deadline, in milliseconds.
        timeout_ms: Option<u64>,
    },
    /// Stop running a task (its result is no longer wanted).
    Cancel {
        /// Which task.
        task: TaskId,
    },

    // ---- client -> coordinator (each with a request id echoed in the reply) ----
    /// Store a program image.
    PutImage {
        /// Request id.
        req: u64,
        /// The ELF bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Submit a task whose image was stored before.
    Submit {
        /// Request id.
        req: u64,
        /// Its type.
        task_type: TaskType,
        /// What to run.
        spec: TaskSpec,
    },
    /// Ask for a task's status (and result, once final).
    GetStatus {
        /// Request id.
        req: u64,
        /// Which task.
        task: TaskId,
    },
    /// Ask to be told when a task is final.
    Wait {
        /// Request id.
        req: u64,
        /// Which task.
        task: TaskId,
    },
    /// Ask for the nodes and task counts.
    GetClusterStatus {
        /// Request id.
        req: u64,
    },
    /// Ask whether the coordinator has an image (answered with [`VmMessage::ImageStored`] or
    /// a [`VmMessage::Failure`]), so that an image is uploaded once.
    HasImage {
        /// Request id.
        req: u64,
        /// The image's hash.
        hash: ImageHash,
    },
    /// End a queued or running task (answered with its final [`VmMessage::Status`]).
    CancelTask {
        /// Request id.
        req: u64,
        /// Which task.
        task: TaskId,
        /// Who asks (shown by status queries, with the connection's address).
        by: String,
    },

    // ---- coordinator -> client ----
    /// Reply to [`VmMessage::PutImage`]: stored (durably).
    ImageStored {
        /// Request id.
        req: u64,
        /// The image's hash.
        hash: ImageHash,
    },
    /// Reply to [`VmMessage::Submit`]: accepted and stored durably.
    Submitted {
        /// Request id.
        req: u64,
        /// The new task's id.
        task: TaskId,
    },
    /// Reply to [`VmMessage::GetStatus`] and [`VmMessage::Wait`].
    Status {
        /// Request id.
        req: u64,
        /// The task, or `None` if the coordinator does not know it.
        info: Option<TaskInfo>,
    },
    /// Reply to [`VmMessage::GetClusterStatus`].
    ClusterStatus {
        /// Request id.
        req: u64,
        /// Every node the coordinator knows of (dead ones included until forgotten).
        nodes: Vec<VmInfo>,
        /// Tasks by status.
        tasks: TaskCounts,
        /// The coordinators sharing the task store (empty with a store of one coordinator).
        coordinators: Vec<CoordinatorInfo>,
    },
    /// A request failed.
    Failure {
        /// Request id (0 when the failure is about the connection).
        req: u64,
        /// Why.
        message: String,
    },
}

impl VmMessage {
    /// The variant's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            VmMessage::Register { .. } => "Register",
            VmMessage::Heartbeat(_) => "Heartbeat",
            VmMessage::TaskDone { .. } => "TaskDone",
            VmMessage::TaskError { .. } => "TaskError",
            VmMessage::NeedImage(_) => "NeedImage",
            VmMessage::Registered { .. } => "Registered",
            VmMessage::Image { .. } => "Image",
            VmMessage::RunTask { .. } => "RunTask",
            VmMessage::Cancel { .. } => "Cancel",
            VmMessage::PutImage { .. } => "PutImage",
            VmMessage::Submit { .. } => "Submit",
            VmMessage::GetStatus { .. } => "GetStatus",
            VmMessage::Wait { .. } => "Wait",
            VmMessage::GetClusterStatus { .. } => "GetClusterStatus",
            VmMessage::HasImage { .. } => "HasImage",
            VmMessage::CancelTask { .. } => "CancelTask",
            VmMessage::ImageStored { .. } => "ImageStored",
            VmMessage::Submitted { .. } => "Submitted",
            VmMessage::Status { .. } => "Status",
            VmMessage::ClusterStatus { .. } => "ClusterStatus",
            VmMessage::Failure { .. } => "Failure",
        }
    }
}

/// Appends the frames holding `msg` to `buf` (one frame unless it is larger than
/// [`MAX_FRAME_BYTES`]).
pub fn encode_frame<T: Serialize>(msg: &T, buf: &mut Vec<u8>) -> Result<(), Error> {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    if let Err(e) = bincode::serde::encode_into_std_write(msg, buf, bincode_config()) {
        buf.truncate(start);
        return Err(Error::Encode(e.to_string()));
    }
    let len = buf.len() - start - 4;
    if len > MAX_MESSAGE_BYTES {
        buf.truncate(start);
        return Err(Error::FrameTooLarge { len: len as u64, max: MAX_MESSAGE_BYTES });
    }
    if len <= MAX_FRAME_BYTES {
        buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        return Ok(());
    }
    // Split: move the payload out and write it back frame by frame.
    let payload = buf.split_off(start + 4);
    buf.truncate(start);
    buf.reserve(payload.len() + 4 * payload.len().div_ceil(MAX_FRAME_BYTES));
    let mut chunks = payload.chunks(MAX_FRAME_BYTES).peekable();
    while let Some(chunk) = chunks.next() {
        let more = if chunks.peek().is_some() { MORE_FRAMES } else { 0 };
        buf.extend_from_slice(&(chunk.len() as u32 | more).to_be_bytes());
        buf.extend_from_slice(chunk);
    }
    Ok(())
}

/// Decodes one payload; the whole payload must be one value.
pub fn decode_payload<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, Error> {
    let (value, used) = bincode::serde::decode_from_slice(payload, bincode_config())
        .map_err(|e| Error::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(Error::Decode(format!("{} trailing bytes", payload.len() - used)));
    }
    Ok(value)
}

/// Reads one message's payload (all its frames) of at most `max` bytes. `Ok(None)` on a clean
/// end of stream before a message starts.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, Error> {
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = reader.read(&mut header[got..]).await?;
            if n == 0 {
                if got == 0 && payload.is_empty() {
                    return Ok(None);
                }
                return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            got += n;
        }
        let header = u32::from_be_bytes(header);
        let len = (header & !MORE_FRAMES) as usize;
        let total = payload.len() as u64 + len as u64;
        if len > MAX_FRAME_BYTES || total > max as u64 {
            return Err(Error::FrameTooLarge { len: total, max });
        }
        let at = payload.len();
        payload.resize(at + len, 0);
        reader.read_exact(&mut payload[at..]).await?;
        if header & MORE_FRAMES == 0 {
            return Ok(Some(payload));
        }
    }
}

/// Reads and decodes one message; a clean end of stream is [`Error::Closed`].
pub async fn read_message<T, R>(reader: &mut R, max: usize) -> Result<T, Error>
where
    T: serde::de::DeserializeOwned,
    R: AsyncRead + Unpin,
{
    match read_frame(reader, max).await? {
        Some(payload) => decode_payload(&payload),
        None => Err(Error::Closed),
    }
}

/// Encodes and writes one message (and flushes).
pub async fn write_message<T, W>(writer: &mut W, msg: &T) -> Result<(), Error>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    encode_frame(msg, &mut buf)?;
    writer.write_all(&buf).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VmMessage {
        VmMessage::Submit {
            req: 7,
            task_type: TaskType::IoIntensive,
            spec: TaskSpec {
                image: ImageHash::of(b"elf"),
                args: vec![b"prog".to_vec(), b"x".to_vec()],
                env: vec![b"A=b".to_vec()],
                stdin: b"input".to_vec(),
                limits: TaskLimits { deadline_ms: Some(5), ..Default::default() },
            },
        }
    }

    #[tokio::test]
    async fn a_message_round_trips_through_a_frame() {
        let mut buf = Vec::new();
        encode_frame(&sample(), &mut buf).unwrap();
        encode_frame(&VmMessage::Heartbeat(NodeLoad::default()), &mut buf).unwrap();
        let mut r = &buf[..];
        let a: VmMessage = read_message(&mut r, MAX_FRAME_BYTES).await.unwrap();
        let b: VmMessage = read_message(&mut r, MAX_FRAME_BYTES).await.unwrap();
        assert_eq!(a, sample());
        assert_eq!(b, VmMessage::Heartbeat(NodeLoad::default()));
        assert!(matches!(read_message::<VmMessage, _>(&mut r, 64).await, Err(Error::Closed)));
    }

    #[tokio::test]
    async fn a_message_larger_than_a_frame_travels_in_frames() {
        let bytes: Vec<u8> = (0..(2 * MAX_FRAME_BYTES + 12345)).map(|i| (i * 7) as u8).collect();
        let msg = VmMessage::PutImage { req: 3, bytes };
        let mut buf = Vec::new();
        encode_frame(&msg, &mut buf).unwrap();
        encode_frame(&VmMessage::Cancel { task: TaskId(1) }, &mut buf).unwrap();
        // Three frames: two full ones with the "more" bit, then the rest.
        let h1 = u32::from_be_bytes(buf[..4].try_into().unwrap());
        assert_eq!(h1, MORE_FRAMES | MAX_FRAME_BYTES as u32);
        let mut r = &buf[..];
        let back: VmMessage = read_message(&mut r, MAX_MESSAGE_BYTES).await.unwrap();
        assert!(back == msg, "the large message came back different");
        let next: VmMessage = read_message(&mut r, MAX_MESSAGE_BYTES).await.unwrap();
        assert_eq!(next, VmMessage::Cancel { task: TaskId(1) });
        // A receiver with a smaller limit refuses it once the frames pass the limit.
        let mut r = &buf[..];
        let e = read_message::<VmMessage, _>(&mut r, MAX_FRAME_BYTES + 10).await.unwrap_err();
        assert!(matches!(e, Error::FrameTooLarge { .. }), "{e}");
        // A frame header claiming more than a frame is refused.
        let bad = (MORE_FRAMES | (MAX_FRAME_BYTES as u32 + 1)).to_be_bytes();
        let mut r = &bad[..];
        let e = read_frame(&mut r, MAX_MESSAGE_BYTES).await.unwrap_err();
        assert!(matches!(e, Error::FrameTooLarge { .. }), "{e}");
    }

    #[tokio::test]
    async fn an_oversized_length_prefix_is_refused_before_reading() {
        let mut bytes = u32::MAX.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[1, 2, 3]);
        let mut r = &bytes[..];
        let e = read_frame(&mut r, 1024).await.unwrap_err();
        assert!(matches!(e, Error::FrameTooLarge { .. }), "{e}");
    }

    #[tokio::test]
    async fn truncated_frames_are_errors() {
        let mut buf = Vec::new();
        encode_frame(&sample(), &mut buf).unwrap();
        for cut in [2, 4, 10, buf.len() - 1] {
            let mut r = &buf[..cut];
            assert!(read_message::<VmMessage, _>(&mut r, MAX_FRAME_BYTES).await.is_err());
        }
    }

    #[test]
    fn garbage_payloads_never_panic() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for len in 0..2000usize {
            let payload: Vec<u8> = (0..len % 97)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode_payload::<VmMessage>(&payload);
            let _ = decode_payload::<Handshake>(&payload);
        }
    }

    #[test]
    fn a_huge_claimed_collection_hits_the_decode_limit() {
        // Variant `PutImage` (index 9), req 1, then a byte string claiming 2^40 bytes.
        let mut payload = vec![9u8, 1];
        payload.push(253); // varint u64 marker
        payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let e = decode_payload::<VmMessage>(&payload).unwrap_err();
        assert!(matches!(e, Error::Decode(_)), "{e}");
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut buf = Vec::new();
        encode_frame(&VmMessage::Cancel { task: TaskId(3) }, &mut buf).unwrap();
        buf.push(0);
        assert!(decode_payload::<VmMessage>(&buf[4..]).is_err());
    }

    #[test]
    fn ids_print_and_parse() {
        assert_eq!(TaskId(42).to_string(), "task-42");
        assert_eq!("task-42".parse::<TaskId>().unwrap(), TaskId(42));
        assert_eq!("42".parse::<TaskId>().unwrap(), TaskId(42));
        assert!("x".parse::<TaskId>().is_err());
        assert_eq!("memory".parse::<TaskType>().unwrap(), TaskType::MemoryIntensive);
    }
}
