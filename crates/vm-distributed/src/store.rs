//! The coordinator's durable task store: tasks, their state, their results and program
//! images in an embedded transactional database (`redb`), written with group commit.
//!
//! # Tables
//! - `tasks`: task id -> [`TaskRecord`] (spec, type, submission time, failed attempts and
//!   their reasons, and the status: queued, completed or failed);
//! - `results`: task id -> [`TaskResult`];
//! - `images`: image hash -> ELF bytes.
//!
//! # Invariants
//! - One writer thread applies operations in the order they were queued. It takes every
//!   operation waiting (up to [`MAX_BATCH`]) into one write transaction and commits it once,
//!   so durability costs one `fsync` per batch, not per task ("group commit").
//! - An operation's commit callback runs only after the transaction holding it committed
//!   (with [`redb::Durability::Immediate`] when the store is durable), so a caller that
//!   acknowledges in the callback never acknowledges something a crash can lose.
//! - A final record and its result are written in the same transaction: after a crash a
//!   task is either still queued or final with its result.

use crate::protocol::{ImageHash, TaskId, TaskResult, TaskSpec, TaskStatus, TaskType};
use crate::Error;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

const TASKS: TableDefinition<u64, &[u8]> = TableDefinition::new("tasks");
const RESULTS: TableDefinition<u64, &[u8]> = TableDefinition::new("results");
const IMAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("images");

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
    /// `Queued` until final, then `Completed`, `Failed` or `Cancelled` (never `Running`: what runs where
    /// does not survive a coordinator restart, the work is dispatched again).
    pub status: TaskStatus,
}

/// One change to the store.
#[derive(Debug)]
pub enum StoreOp {
    /// Store an image (a no-op if present).
    PutImage(ImageHash, Arc<Vec<u8>>),
    /// Insert or replace a task record.
    PutTask(TaskRecord),
    /// Replace a task record with its final form and store its result, atomically.
    Finish(TaskRecord, Option<TaskResult>),
    /// Nothing: its callback runs once everything queued before it committed.
    Barrier,
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

/// The store. See the module docs.
pub struct TaskStore {
    db: Arc<Database>,
    tx: Option<mpsc::Sender<(StoreOp, Option<OnCommit>)>>,
    writer: Option<JoinHandle<()>>,
    stats: Arc<StoreStats>,
}

impl std::fmt::Debug for TaskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskStore").field("stats", &self.stats).finish_non_exhaustive()
    }
}

fn db_err(e: impl Into<redb::Error>) -> Error {
    Error::Store(e.into().to_string())
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    bincode::serde::encode_to_vec(v, bincode::config::standard())
        .map_err(|e| Error::Encode(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| Error::Decode(e.to_string()))
}

impl TaskStore {
    /// Opens (or creates) the store in `dir` and reads back everything it holds. With
    /// `durable`, every commit is flushed to disk before its callbacks run.
    pub fn open(dir: &Path, durable: bool) -> Result<(TaskStore, Recovered), Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Store(format!("cannot create {}: {e}", dir.display())))?;
        let db = Database::create(dir.join("tasks.redb")).map_err(db_err)?;
        {
            let w = db.begin_write().map_err(db_err)?;
            w.open_table(TASKS).map_err(db_err)?;
            w.open_table(RESULTS).map_err(db_err)?;
            w.open_table(IMAGES).map_err(db_err)?;
            w.commit().map_err(db_err)?;
        }
        let mut recovered = Recovered::default();
        {
            let r = db.begin_read().map_err(db_err)?;
            let tasks = r.open_table(TASKS).map_err(db_err)?;
            for row in tasks.iter().map_err(db_err)? {
                let (_, v) = row.map_err(db_err)?;
                recovered.tasks.push(decode(v.value())?);
            }
            let images = r.open_table(IMAGES).map_err(db_err)?;
            for row in images.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                let key: [u8; 32] =
                    k.value().try_into().map_err(|_| Error::Store("malformed image key".into()))?;
                recovered.images.push((ImageHash(key), v.value().to_vec()));
            }
        }
        let db = Arc::new(db);
        let stats = Arc::new(StoreStats::default());
        let (tx, rx) = mpsc::channel();
        let writer = {
            let db = db.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("vmx-store".into())
                .spawn(move || writer_main(&db, &rx, durable, &stats))
                .map_err(|e| Error::Store(format!("cannot start the store writer: {e}")))?
        };
        Ok((TaskStore { db, tx: Some(tx), writer: Some(writer), stats }, recovered))
    }

    /// Queues `op`; `on_commit` runs once it is durable.
    pub fn apply(&self, op: StoreOp, on_commit: Option<OnCommit>) {
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::SendError((_, Some(cb)))) = tx.send((op, on_commit)) {
            cb(Err("the store is closed".into()));
        }
    }

    /// Reads a task's result.
    pub fn result(&self, id: TaskId) -> Result<Option<TaskResult>, Error> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(RESULTS).map_err(db_err)?;
        match t.get(id.0).map_err(db_err)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Reads a task's record.
    pub fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(TASKS).map_err(db_err)?;
        match t.get(id.0).map_err(db_err)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// The writer's counters.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// Waits until everything queued before this call is committed.
    pub fn sync(&self) {
        let (tx, rx) = mpsc::channel();
        self.apply(
            StoreOp::Barrier,
            Some(Box::new(move |_| {
                let _ = tx.send(());
            })),
        );
        let _ = rx.recv();
    }
}

impl Drop for TaskStore {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn writer_main(
    db: &Database,
    rx: &mpsc::Receiver<(StoreOp, Option<OnCommit>)>,
    durable: bool,
    stats: &StoreStats,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let outcome = commit_batch(db, &batch, durable).map_err(|e| e.to_string());
        if let Err(e) = &outcome {
            tracing::error!("task store commit of {} operations failed: {e}", batch.len());
        }
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
        for (_, cb) in batch {
            if let Some(cb) = cb {
                cb(outcome.clone());
            }
        }
    }
}

fn commit_batch(
    db: &Database,
    batch: &[(StoreOp, Option<OnCommit>)],
    durable: bool,
) -> Result<(), Error> {
    let mut w = db.begin_write().map_err(db_err)?;
    w.set_durability(if durable { Durability::Immediate } else { Durability::Eventual });
    {
        let mut tasks = w.open_table(TASKS).map_err(db_err)?;
        let mut results = w.open_table(RESULTS).map_err(db_err)?;
        let mut images = w.open_table(IMAGES).map_err(db_err)?;
        for (op, _) in batch {
            match op {
                StoreOp::Barrier => {}
                StoreOp::PutImage(hash, bytes) => {
                    if images.get(&hash.0[..]).map_err(db_err)?.is_none() {
                        images.insert(&hash.0[..], &bytes[..]).map_err(db_err)?;
                    }
                }
                StoreOp::PutTask(rec) => {
                    tasks.insert(rec.id.0, &encode(rec)?[..]).map_err(db_err)?;
                }
                StoreOp::Finish(rec, result) => {
                    tasks.insert(rec.id.0, &encode(rec)?[..]).map_err(db_err)?;
                    if let Some(r) = result {
                        results.insert(rec.id.0, &encode(r)?[..]).map_err(db_err)?;
                    }
                }
            }
        }
    }
    w.commit().map_err(db_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{NodeId, TaskExit, TaskLimits};

    fn record(id: u64) -> TaskRecord {
        TaskRecord {
            id: TaskId(id),
            task_type: TaskType::CpuIntensive,
            spec: TaskSpec {
                image: ImageHash::of(b"x"),
                args: vec![b"p".to_vec()],
                env: vec![],
                stdin: vec![],
                limits: TaskLimits::default(),
            },
            submitted_at_ms: 1,
            failed_attempts: 0,
            attempts: 0,
            reasons: vec![],
            status: TaskStatus::Queued,
        }
    }

    fn result(status: i32) -> TaskResult {
        TaskResult {
            exit: TaskExit::Exited(status),
            stdout: b"out".to_vec(),
            stderr: vec![],
            output_dropped: 0,
            instructions: 10,
            run_time_us: 5,
            node: NodeId(1),
            attempt: 1,
        }
    }

    #[test]
    fn records_results_and_images_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, rec) = TaskStore::open(dir.path(), true).unwrap();
            assert!(rec.tasks.is_empty());
            store.apply(StoreOp::PutImage(ImageHash::of(b"x"), Arc::new(b"x".to_vec())), None);
            for i in 1..=100 {
                store.apply(StoreOp::PutTask(record(i)), None);
            }
            let mut fin = record(7);
            fin.status = TaskStatus::Completed { exit_status: 3 };
            store.apply(StoreOp::Finish(fin, Some(result(3))), None);
            store.sync();
            assert_eq!(store.result(TaskId(7)).unwrap().unwrap(), result(3));
            assert!(store.result(TaskId(8)).unwrap().is_none());
        }
        let (store, rec) = TaskStore::open(dir.path(), true).unwrap();
        assert_eq!(rec.tasks.len(), 100);
        assert_eq!(rec.tasks[6].status, TaskStatus::Completed { exit_status: 3 });
        assert_eq!(rec.tasks[7].status, TaskStatus::Queued);
        assert_eq!(rec.images, vec![(ImageHash::of(b"x"), b"x".to_vec())]);
        assert_eq!(store.result(TaskId(7)).unwrap().unwrap(), result(3));
    }

    #[test]
    fn many_operations_share_few_commits_and_callbacks_run_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = TaskStore::open(dir.path(), true).unwrap();
        let (tx, rx) = mpsc::channel();
        for i in 1..=2000 {
            let tx = tx.clone();
            store.apply(
                StoreOp::PutTask(record(i)),
                Some(Box::new(move |r| {
                    tx.send((i, r.is_ok())).unwrap();
                })),
            );
        }
        let mut seen = 0;
        for _ in 0..2000 {
            let (i, ok) = rx.recv().unwrap();
            assert!(ok);
            assert!(store.task(TaskId(i)).unwrap().is_some(), "callback before commit");
            seen += 1;
        }
        assert_eq!(seen, 2000);
        let commits = store.stats().commits.load(Ordering::Relaxed);
        assert!(commits < 2000, "group commit should batch: {commits} commits");
    }
}
