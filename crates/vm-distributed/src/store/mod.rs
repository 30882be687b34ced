//! The coordinator's durable task store: tasks, their state, their results and program
//! images, behind one trait ([`TaskStore`]) with two implementations:
//!
//! | module | backend |
//! |---|---|
//! | [`redb`] | [`RedbStore`]: an embedded redb file in a data directory (the default) |
//! | [`postgres`] | [`PgStore`]: a PostgreSQL database (`--store postgres://...`) |
//!
//! # What every backend guarantees (the behaviour `tests/store_suite.rs` checks on each)
//! - Operations ([`StoreOp`]) are applied in the order they were queued, by one writer that
//!   takes every operation waiting (up to [`MAX_BATCH`]) into one transaction ("group
//!   commit"). An operation's callback runs only after that transaction committed, so a
//!   caller that acknowledges in the callback (a submission) never acknowledges something a
//!   crash can lose.
//! - A final record and its result are written in one transaction: after a crash a task is
//!   either still queued or final with its result. A final task never changes again.
//! - Leases: [`TaskStore::claim`] takes queued tasks whose lease is absent or expired,
//!   numbering each claim's attempt (one more than the task's last); [`TaskStore::renew`]
//!   extends a lease only for its owner and attempt; [`TaskStore::finish`] records an
//!   outcome only for the task's current attempt and only once (a late or duplicate result
//!   of an older attempt is refused: attempt-number fencing); [`TaskStore::cancel`] ends a
//!   task that is not final. These are what several coordinators sharing one database
//!   coordinate through.
//! - Reopening a store gives back every task, result, image and lease committed.
//! - Every stored value is sealed with a checksum over its table, key and value, checked
//!   when read: a damaged value is an error, never served.

pub mod postgres;
pub mod redb;

use crate::protocol::{
    CoordinatorInfo, ImageHash, TaskCounts, TaskExit, TaskId, TaskResult, TaskSpec, TaskStatus,
    TaskType,
};
use crate::Error;
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};

pub use self::postgres::PgStore;
pub use self::redb::{OpenOptions, RedbStore, COMMIT_MARK, DB_FILE, MANIFEST};

/// Most operations in one write transaction.
pub const MAX_BATCH: usize = 16384;

/// A task as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Its id.
    pub id: TaskId,
    /// Its type.
    pub task_type: TaskType,
    /// What it runs.
    pub spec: TaskSpec,
    /// When it was accepted (Unix time, milliseconds).
    pub submitted_at_ms: u64,
    /// Attempts that failed (node death, worker error) before now.
    pub failed_attempts: u32,
    /// Attempts started before now (as of the record's last write).
    pub attempts: u32,
    /// Why each of them failed.
    pub reasons: Vec<String>,
    /// `Queued` until final, then `Completed`, `Failed` or `Cancelled` (never `Running`:
    /// what runs where does not survive a coordinator restart, the work is dispatched
    /// again).
    pub status: TaskStatus,
}

/// A lease on a task: who runs its current attempt, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The coordinator holding it.
    pub owner: String,
    /// The attempt it covers (1 for the first).
    pub attempt: u32,
    /// When it expires (Unix time, milliseconds).
    pub until_ms: u64,
}

/// A task taken by [`TaskStore::claim`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The task, with `attempts` counting this claim.
    pub record: TaskRecord,
    /// The attempt this claim runs.
    pub attempt: u32,
}

/// A lease operation, applied in the writer's transaction like any other operation; its
/// outcome is known once that transaction committed.
#[derive(Clone, Debug)]
pub enum LeaseOp {
    /// Take up to `max` queued tasks without a live lease, in id order.
    Claim {
        /// Who claims.
        owner: String,
        /// The time to compare leases with (Unix ms).
        now_ms: u64,
        /// How long the new leases last.
        lease_ms: u64,
        /// Most tasks to take.
        max: usize,
    },
    /// Extend `owner`'s lease on `task`'s `attempt`.
    Renew {
        /// The task.
        task: TaskId,
        /// The lease's owner.
        owner: String,
        /// The lease's attempt.
        attempt: u32,
        /// Now (Unix ms).
        now_ms: u64,
        /// The new lease lasts this long from now.
        lease_ms: u64,
    },
    /// Record `record` (final) and its result if `attempt` is the task's current one and
    /// the task is not final yet.
    Finish {
        /// The task's final record.
        record: Box<TaskRecord>,
        /// The attempt that produced it.
        attempt: u32,
        /// Its result.
        result: Option<TaskResult>,
    },
    /// Insert a new queued task whose id the database assigns (shared stores only); the
    /// record's `id` is ignored. Without `lease` a `NOTIFY` tells the coordinators sharing
    /// the store; with it, the task is claimed at once by its owner (attempt 1), in the same
    /// transaction.
    Insert {
        /// The task (status `Queued`, no attempts).
        record: Box<TaskRecord>,
        /// Who claims it at once, and until when (Unix ms).
        lease: Option<(String, u64)>,
    },
    /// A coordinator's heartbeat (shared stores only): records `info` as alive until
    /// `now_ms + waiting_ms` and extends every lease `info.id` holds to `now_ms + lease_ms`,
    /// except those of `waiting` (tasks it holds that have not started), extended only to
    /// `now_ms + waiting_ms`: if the coordinator dies, work it had not started is claimable
    /// elsewhere sooner (and it shows as dead sooner). Outcome: [`LeaseOutcome::Held`], the
    /// leases it still holds.
    Beat {
        /// The coordinator.
        info: CoordinatorInfo,
        /// Now (Unix ms).
        now_ms: u64,
        /// How long its leases on running tasks last from now.
        lease_ms: u64,
        /// Tasks it holds that have not started.
        waiting: Vec<TaskId>,
        /// How long their leases, and its heartbeat, last from now.
        waiting_ms: u64,
    },
    /// Take over the leases of tasks a worker reports running (shared stores only): each
    /// `(task, attempt)` whose attempt is the task's current one and which is not final gets
    /// `owner`'s lease. Outcome: [`LeaseOutcome::Claimed`] with those taken over.
    Adopt {
        /// The new owner.
        owner: String,
        /// The tasks and the attempts the worker runs.
        tasks: Vec<(TaskId, u32)>,
        /// Now (Unix ms).
        now_ms: u64,
        /// How long the leases last.
        lease_ms: u64,
    },
    /// Record a result a worker reported, if `result.attempt` is the task's current attempt
    /// and the task is not final; its final status is [`status_of_result`]'s. Outcome:
    /// [`LeaseOutcome::Finished`].
    FinishReported {
        /// The task.
        task: TaskId,
        /// Its result.
        result: Box<TaskResult>,
    },
    /// Give a task back after a failed attempt (shared stores only): if `attempt` is still
    /// current, the lease `owner`'s and the task not final, store `record` (queued, its failures counted) and
    /// make it claimable from `retry_at_ms` on. Outcome: [`LeaseOutcome::Released`].
    Release {
        /// The task's record (status `Queued`).
        record: Box<TaskRecord>,
        /// Who gives it back (nothing happens unless its lease is theirs).
        owner: String,
        /// The attempt that failed.
        attempt: u32,
        /// When it may be claimed again (Unix ms).
        retry_at_ms: u64,
    },
    /// End a task that is not final (status `Cancelled`).
    Cancel {
        /// The task.
        task: TaskId,
        /// Who asked.
        by: String,
        /// When (Unix ms).
        at_ms: u64,
    },
}

/// The outcome of a [`LeaseOp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The tasks claimed.
    Claimed(Vec<Claim>),
    /// Whether the lease was renewed (it was the owner's, for that attempt, not final).
    Renewed(bool),
    /// Whether the outcome was recorded (`false`: stale attempt, or already final).
    Finished(bool),
    /// Whether the task was cancelled (`false`: unknown or already final).
    Cancelled(bool),
    /// The id the database gave an inserted task.
    Inserted(TaskId),
    /// The `(task, attempt)` leases a coordinator holds after its heartbeat.
    Held(Vec<(TaskId, u32)>),
    /// Whether the task was given back (`false`: stale attempt, or final).
    Released(bool),
}

/// Where the outcome of a [`LeaseOp`] goes, after its commit (an error if it failed).
pub type LeaseReply = Box<dyn FnOnce(Result<LeaseOutcome, String>) + Send>;

/// The final status a result gives a task that failed `prior` times before: `Failed` for a
/// deadline or a program that could not be loaded, `Completed` otherwise.
pub fn status_of_result(prior: &[String], result: &TaskResult) -> TaskStatus {
    let node = result.node;
    let failed = |why: String| {
        let mut reasons = prior.to_vec();
        reasons.push(why);
        TaskStatus::Failed { reasons }
    };
    match &result.exit {
        TaskExit::DeadlineExceeded => failed(format!("deadline exceeded while running on {node}")),
        TaskExit::LoadFailed(m) => failed(format!("load error on {node}: {m}")),
        e => TaskStatus::Completed { exit_status: e.shell_status() },
    }
}

/// One change to the store.
pub enum StoreOp {
    /// Store an image (a no-op if present).
    PutImage(ImageHash, Arc<Vec<u8>>),
    /// Insert or replace a task record.
    PutTask(TaskRecord),
    /// Replace a task record with its final form and store its result, atomically.
    Finish(TaskRecord, Option<TaskResult>),
    /// A lease operation; its outcome goes to the reply channel after the commit.
    Lease(LeaseOp, LeaseReply),
    /// Nothing: its callback runs once everything queued before it committed.
    Barrier,
}

impl std::fmt::Debug for StoreOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreOp::PutImage(h, b) => write!(f, "PutImage({h}, {} bytes)", b.len()),
            StoreOp::PutTask(r) => write!(f, "PutTask({:?})", r.id),
            StoreOp::Finish(r, _) => write!(f, "Finish({:?})", r.id),
            StoreOp::Lease(op, _) => write!(f, "Lease({op:?})"),
            StoreOp::Barrier => write!(f, "Barrier"),
        }
    }
}

/// Called once the operation's transaction committed (or failed to).
pub type OnCommit = Box<dyn FnOnce(Result<(), String>) + Send>;

/// What a store held when it was opened.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every task record, in id order.
    pub tasks: Vec<TaskRecord>,
    /// Every image.
    pub images: Vec<(ImageHash, Vec<u8>)>,
}

/// Counters of the writer.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Write transactions committed.
    pub commits: AtomicU64,
    /// Operations applied.
    pub ops: AtomicU64,
}

/// A final task's record and result.
pub type Final = (TaskRecord, Option<TaskResult>);

/// A durable task store. See the module docs for what every implementation guarantees.
pub trait TaskStore: Send + Sync + std::fmt::Debug {
    /// Queues `op`; `on_commit` runs once it is durable (or failed).
    fn apply(&self, op: StoreOp, on_commit: Option<OnCommit>);

    /// Reads a task's record.
    fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, Error>;

    /// Reads a task's result.
    fn result(&self, id: TaskId) -> Result<Option<TaskResult>, Error>;

    /// Reads a task's lease.
    fn lease(&self, id: TaskId) -> Result<Option<Lease>, Error>;

    /// The writer's counters.
    fn stats(&self) -> &StoreStats;

    /// Whether several coordinators may share this store (ids from the store, claims,
    /// heartbeats: the [`LeaseOp`]s marked "shared stores only" work). `false` for redb.
    fn shared(&self) -> bool {
        false
    }

    /// Calls `wake` whenever another writer queued work (shared stores; `LISTEN/NOTIFY`
    /// for PostgreSQL). Spurious calls are allowed; missed ones too (callers also poll).
    fn subscribe(&self, wake: Box<dyn Fn() + Send + Sync>) {
        drop(wake);
    }

    /// Task counts by status, as stored (shared stores): `running` counts tasks with a live
    /// lease at `now_ms`.
    fn counts(&self, now_ms: u64) -> Result<TaskCounts, Error> {
        let _ = now_ms;
        Err(Error::Store("task counts are kept in memory by this store's coordinator".into()))
    }

    /// How many tasks are not final (shared stores; the queue limit of coordinators
    /// sharing the store is on this).
    fn unfinished(&self) -> Result<u64, Error> {
        Err(Error::Store(
            "unfinished tasks are counted in memory by this store's coordinator".into(),
        ))
    }

    /// The coordinators that sent a heartbeat in the last hour (shared stores).
    fn coordinators(&self) -> Result<Vec<CoordinatorInfo>, Error> {
        Ok(Vec::new())
    }

    /// A program image.
    fn image(&self, hash: ImageHash) -> Result<Option<Vec<u8>>, Error> {
        let _ = hash;
        Ok(None)
    }

    /// Those of `ids` the store knows, each with its record and result if it is final
    /// (`None`: not final yet). Unknown ids are left out.
    fn finals(&self, ids: &[TaskId]) -> Result<Vec<(TaskId, Option<Final>)>, Error> {
        let mut out = Vec::new();
        for &id in ids {
            match self.task(id)? {
                Some(rec) if rec.status.is_final() => {
                    let result = self.result(id)?;
                    out.push((id, Some((rec, result))));
                }
                Some(_) => out.push((id, None)),
                None => {}
            }
        }
        Ok(out)
    }

    /// Waits until everything queued before this call is committed.
    fn sync(&self) {
        let (tx, rx) = mpsc::channel();
        self.apply(
            StoreOp::Barrier,
            Some(Box::new(move |_| {
                let _ = tx.send(());
            })),
        );
        let _ = rx.recv();
    }

    /// Applies a lease operation and waits for its committed outcome.
    fn lease_op(&self, op: LeaseOp) -> Result<LeaseOutcome, Error> {
        let (tx, rx) = mpsc::channel();
        self.apply(
            StoreOp::Lease(
                op,
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            ),
            None,
        );
        match rx.recv() {
            Ok(r) => r.map_err(Error::Store),
            Err(_) => Err(Error::Store("the store is closed".into())),
        }
    }

    /// Takes up to `max` queued tasks without a live lease (see [`LeaseOp::Claim`]).
    fn claim(
        &self,
        owner: &str,
        now_ms: u64,
        lease_ms: u64,
        max: usize,
    ) -> Result<Vec<Claim>, Error> {
        match self.lease_op(LeaseOp::Claim { owner: owner.into(), now_ms, lease_ms, max })? {
            LeaseOutcome::Claimed(c) => Ok(c),
            o => Err(Error::Store(format!("unexpected outcome {o:?}"))),
        }
    }

    /// Extends a lease (see [`LeaseOp::Renew`]).
    fn renew(
        &self,
        task: TaskId,
        owner: &str,
        attempt: u32,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<bool, Error> {
        let op = LeaseOp::Renew { task, owner: owner.into(), attempt, now_ms, lease_ms };
        match self.lease_op(op)? {
            LeaseOutcome::Renewed(b) => Ok(b),
            o => Err(Error::Store(format!("unexpected outcome {o:?}"))),
        }
    }

    /// Records a final outcome, fenced by attempt (see [`LeaseOp::Finish`]).
    fn finish(
        &self,
        record: TaskRecord,
        attempt: u32,
        result: Option<TaskResult>,
    ) -> Result<bool, Error> {
        match self.lease_op(LeaseOp::Finish { record: Box::new(record), attempt, result })? {
            LeaseOutcome::Finished(b) => Ok(b),
            o => Err(Error::Store(format!("unexpected outcome {o:?}"))),
        }
    }

    /// Inserts a queued task, its id assigned by the store (see [`LeaseOp::Insert`]).
    fn insert(&self, record: TaskRecord) -> Result<TaskId, Error> {
        match self.lease_op(LeaseOp::Insert { record: Box::new(record), lease: None })? {
            LeaseOutcome::Inserted(id) => Ok(id),
            o => Err(Error::Store(format!("unexpected outcome {o:?}"))),
        }
    }

    /// Cancels a task that is not final (see [`LeaseOp::Cancel`]).
    fn cancel(&self, task: TaskId, by: &str, at_ms: u64) -> Result<bool, Error> {
        match self.lease_op(LeaseOp::Cancel { task, by: by.into(), at_ms })? {
            LeaseOutcome::Cancelled(b) => Ok(b),
            o => Err(Error::Store(format!("unexpected outcome {o:?}"))),
        }
    }
}

/// Where a coordinator keeps its tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// A redb file in this directory.
    Dir(std::path::PathBuf),
    /// A PostgreSQL database (a `postgres://` URL).
    Postgres(String),
}

/// Opens the store at `location` (blocking), checking it; returns it with what it holds.
pub fn open_store(
    location: &StoreLocation,
    options: OpenOptions,
) -> Result<(Arc<dyn TaskStore>, Recovered), Error> {
    match location {
        StoreLocation::Dir(dir) => {
            let (s, r) = RedbStore::open_with(dir, options)?;
            Ok((Arc::new(s), r))
        }
        StoreLocation::Postgres(url) => {
            // Coordinators sharing the database claim tasks as they go: none are loaded.
            let pg = postgres::PgOptions {
                durable: options.durable,
                load_tasks: false,
                ..Default::default()
            };
            let (s, r) = PgStore::open(url, pg)?;
            Ok((Arc::new(s), r))
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    bincode::serde::encode_to_vec(v, bincode::config::standard())
        .map_err(|e| Error::Encode(e.to_string()))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| Error::Decode(e.to_string()))
}

/// Bytes of the checksum in front of every stored value.
const SUM_LEN: usize = 8;

/// The checksum of a value stored in `table` under `key`: the first bytes of SHA-256 over
/// the table name, the key and the value, so a value moved to another key is caught too.
pub(crate) fn checksum(table: &str, key: &[u8], value: &[u8]) -> [u8; SUM_LEN] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((table.len() as u32).to_le_bytes());
    h.update(table.as_bytes());
    h.update((key.len() as u32).to_le_bytes());
    h.update(key);
    h.update(value);
    let d = h.finalize();
    let mut out = [0; SUM_LEN];
    out.copy_from_slice(&d[..SUM_LEN]);
    out
}

/// `value` with its checksum in front.
pub(crate) fn seal(table: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SUM_LEN + value.len());
    out.extend_from_slice(&checksum(table, key, value));
    out.extend_from_slice(value);
    out
}

/// The value inside `stored`, if its checksum matches.
pub(crate) fn unseal<'a>(table: &str, key: &[u8], stored: &'a [u8]) -> Result<&'a [u8], Error> {
    if stored.len() < SUM_LEN {
        return Err(damaged(format!("a {table} entry is {} bytes long", stored.len())));
    }
    let (sum, value) = stored.split_at(SUM_LEN);
    if sum != checksum(table, key, value) {
        return Err(damaged(format!("checksum mismatch in a {table} entry")));
    }
    Ok(value)
}

/// Encodes `v` and seals it for `table` under the task id `id`.
pub(crate) fn seal_value<T: Serialize>(table: &str, id: u64, v: &T) -> Result<Vec<u8>, Error> {
    Ok(seal(table, &id.to_le_bytes(), &encode(v)?))
}

/// Unseals and decodes a value of `table` stored under the task id `id`.
pub(crate) fn unseal_value<T: serde::de::DeserializeOwned>(
    table: &str,
    id: u64,
    stored: &[u8],
) -> Result<T, Error> {
    decode(unseal(table, &id.to_le_bytes(), stored)?)
        .map_err(|e| damaged(format!("{table} entry of task {id}: {e}")))
}

pub(crate) fn damaged(what: String) -> Error {
    Error::Store(format!("damaged: {what}"))
}
