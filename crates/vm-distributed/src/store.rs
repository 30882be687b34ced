//! The coordinator's durable task store: tasks, their state, their results and program
//! images in an embedded transactional database (`redb`), written with group commit.
//!
//! # Tables
//! - `tasks`: task id -> [`TaskRecord`] (spec, type, submission time, failed attempts and
//!   their reasons, and the status: queued, completed or failed);
//! - `results`: task id -> [`TaskResult`];
//! - `images`: image hash -> ELF bytes;
//! - `meta`: row counts of the three tables and the number of the last commit.
//!
//! Beside the database: the manifest [`MANIFEST`] (its presence says the directory holds a
//! store) and the commit mark [`COMMIT_MARK`].
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
//! - Every stored value is sealed with a checksum over its table, key and value; the store
//!   is read and checked completely when it opens ([`TaskStore::open_with`]) and a damaged
//!   one is refused with one line, never served: values that fail their checksum, keys that
//!   do not match their value, fewer rows than `meta` counts, a database older than the
//!   commit mark or of another length than it recorded, a missing or empty database where
//!   the manifest says there was one.

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
/// Row counts of the other tables as of the last commit (`tasks`, `results`, `images`).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

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
    db: Option<Arc<Database>>,
    dir: std::path::PathBuf,
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

/// Name of the manifest beside the database: its presence says the directory holds a store.
pub const MANIFEST: &str = "vmx-store";
/// Name of the database file.
pub const DB_FILE: &str = "tasks.redb";
/// Version of the record format (sealed values, `meta` counts) the manifest announces.
const FORMAT: u64 = 1;
/// Name of the thread that opens and checks a store (its panics are caught and silenced).
const CHECK_THREAD: &str = "vmx-store-check";

/// Bytes of the checksum in front of every stored value.
const SUM_LEN: usize = 8;

/// The checksum of a value stored in `table` under `key`: the first bytes of SHA-256 over
/// the table name, the key and the value, so a value moved to another key is caught too.
fn checksum(table: &str, key: &[u8], value: &[u8]) -> [u8; SUM_LEN] {
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
fn seal(table: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SUM_LEN + value.len());
    out.extend_from_slice(&checksum(table, key, value));
    out.extend_from_slice(value);
    out
}

/// The value inside `stored`, if its checksum matches.
fn unseal<'a>(table: &str, key: &[u8], stored: &'a [u8]) -> Result<&'a [u8], Error> {
    if stored.len() < SUM_LEN {
        return Err(damaged(format!("a {table} entry is {} bytes long", stored.len())));
    }
    let (sum, value) = stored.split_at(SUM_LEN);
    if sum != checksum(table, key, value) {
        return Err(damaged(format!("checksum mismatch in a {table} entry")));
    }
    Ok(value)
}

fn damaged(what: String) -> Error {
    Error::Store(format!("damaged: {what}"))
}

/// The advice every refusal to open ends with.
const ADVICE: &str = "restore the data directory from a backup (see README, \"Backing up the task store\"), or start an empty store with --init";

/// Name of the commit mark beside the database: the number of the last commit and the
/// database's length after it, written after every commit (see `CommitMark`).
pub const COMMIT_MARK: &str = "vmx-store.commit";

/// The commit mark: 24 bytes (last commit number, database length after it, checksum)
/// rewritten in place after every commit. It is not flushed per commit: after a power loss
/// it may name an older commit than the database holds, never a newer one. So a database
/// whose last commit is older than the mark lost commits (a damaged header or page made it
/// fall back to an older one), and one whose last commit is the mark's but whose length
/// differs was truncated or extended.
struct CommitMark {
    file: std::fs::File,
    db_path: std::path::PathBuf,
}

impl CommitMark {
    fn encode(seq: u64, len: u64) -> [u8; 24] {
        let mut out = [0; 24];
        out[..8].copy_from_slice(&seq.to_le_bytes());
        out[8..16].copy_from_slice(&len.to_le_bytes());
        let sum = checksum("commit", &[], &out[..16]);
        out[16..].copy_from_slice(&sum);
        out
    }

    /// Reads the mark in `dir`: `None` if there is none.
    fn read(dir: &Path) -> Result<Option<(u64, u64)>, Error> {
        let path = dir.join(COMMIT_MARK);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Store(format!("cannot read {}: {e}", path.display()))),
        };
        let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
        if bytes.len() != 24 || bytes[16..] != checksum("commit", &[], &bytes[..16]) {
            return Err(Error::Store(format!("{} is damaged; {ADVICE}", path.display())));
        }
        Ok(Some((word(0), word(8))))
    }

    /// Opens (creating) the mark in `dir` and records `seq` with the database's current
    /// length, flushed to disk.
    fn create(dir: &Path, seq: u64) -> Result<CommitMark, Error> {
        let path = dir.join(COMMIT_MARK);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::Store(format!("cannot open {}: {e}", path.display())))?;
        let mark = CommitMark { file, db_path: dir.join(DB_FILE) };
        mark.record(seq)
            .and_then(|()| mark.file.sync_all())
            .map_err(|e| Error::Store(format!("cannot write {}: {e}", path.display())))?;
        Ok(mark)
    }

    /// Records that commit `seq` is the last one, with the database's current length.
    fn record(&self, seq: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let len = std::fs::metadata(&self.db_path)?.len();
        self.file.write_all_at(&CommitMark::encode(seq, len), 0)
    }
}

/// How to open a store.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// Flush every commit to disk before its callbacks run.
    pub durable: bool,
    /// Start an empty store even where one was (the old database file is kept, renamed).
    pub init: bool,
}

/// Writes the manifest (atomically: a temporary file renamed, then the directory synced).
fn write_manifest(dir: &Path) -> Result<(), Error> {
    let io = |e: std::io::Error| {
        Error::Store(format!("cannot write {}: {e}", dir.join(MANIFEST).display()))
    };
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    let text =
        format!("vmx task store\nformat {FORMAT}\ndatabase {DB_FILE}\ncreated_ms {}\n", now_ms());
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, dir.join(MANIFEST)).map_err(io)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// Reads the manifest's format, if there is a manifest.
fn read_manifest(dir: &Path) -> Result<Option<u64>, Error> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Store(format!("cannot read {}: {e}", path.display()))),
    };
    let text = String::from_utf8_lossy(&text);
    let mut lines = text.lines();
    let format = (lines.next() == Some("vmx task store"))
        .then(|| lines.next()?.strip_prefix("format ")?.trim().parse::<u64>().ok())
        .flatten();
    match format {
        Some(f) if f == FORMAT => Ok(Some(f)),
        Some(f) => Err(Error::Store(format!(
            "{} says format {f}, this vmx reads format {FORMAT} (a newer vmx wrote it?)",
            path.display()
        ))),
        None => Err(Error::Store(format!(
            "{} is damaged (not a vmx store manifest); {ADVICE}",
            path.display()
        ))),
    }
}

/// Runs `f` on its own thread, turning a panic into an error (the panic's message is kept,
/// the default hook's message and backtrace are not printed).
fn catching<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(CHECK_THREAD) {
                return;
            }
            previous(info)
        }));
    });
    let handle = std::thread::Builder::new()
        .name(CHECK_THREAD.into())
        .spawn(f)
        .map_err(|e| Error::Store(format!("cannot start a thread: {e}")))?;
    match handle.join() {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Err(damaged(format!(
                "the database could not be read ({})",
                msg.lines().next().unwrap_or("")
            )))
        }
    }
}

/// Reads and checks everything in `db`: every value's checksum, every key against its
/// value, every image against its hash, and the row counts against those recorded with
/// the last commit (rows lost to damage are noticed).
fn check_and_recover(db: &Database) -> Result<(Recovered, u64), Error> {
    let mut recovered = Recovered::default();
    let r = db.begin_read().map_err(db_err)?;
    let meta = r.open_table(META).map_err(db_err)?;
    let counted = |name: &str| -> Result<u64, Error> {
        Ok(meta.get(name).map_err(db_err)?.map_or(0, |v| v.value()))
    };
    let (want_tasks, want_results, want_images) =
        (counted("tasks")?, counted("results")?, counted("images")?);
    let tasks = r.open_table(TASKS).map_err(db_err)?;
    for row in tasks.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let id = k.value();
        let rec: TaskRecord = decode(unseal("tasks", &id.to_le_bytes(), v.value())?)
            .map_err(|e| damaged(format!("task {id}: {e}")))?;
        if rec.id.0 != id {
            return Err(damaged(format!("the record under task {id} is task {}", rec.id.0)));
        }
        recovered.tasks.push(rec);
    }
    let results = r.open_table(RESULTS).map_err(db_err)?;
    let mut n_results = 0u64;
    for row in results.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let id = k.value();
        let _: TaskResult = decode(unseal("results", &id.to_le_bytes(), v.value())?)
            .map_err(|e| damaged(format!("result of task {id}: {e}")))?;
        n_results += 1;
    }
    let images = r.open_table(IMAGES).map_err(db_err)?;
    for row in images.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let key: [u8; 32] =
            k.value().try_into().map_err(|_| damaged("an image key is malformed".into()))?;
        let bytes = unseal("images", &key, v.value())?;
        if ImageHash::of(bytes).0 != key {
            return Err(damaged(format!("image {} does not match its hash", ImageHash(key))));
        }
        recovered.images.push((ImageHash(key), bytes.to_vec()));
    }
    let got = (recovered.tasks.len() as u64, n_results, recovered.images.len() as u64);
    if got != (want_tasks, want_results, want_images) {
        return Err(damaged(format!(
            "{} tasks, {} results and {} images readable, {want_tasks}, {want_results} and {want_images} committed",
            got.0, got.1, got.2
        )));
    }
    Ok((recovered, counted("commits")?))
}

impl TaskStore {
    /// Opens (or creates) the store in `dir` and reads back everything it holds. With
    /// `durable`, every commit is flushed to disk before its callbacks run.
    pub fn open(dir: &Path, durable: bool) -> Result<(TaskStore, Recovered), Error> {
        TaskStore::open_with(dir, OpenOptions { durable, init: false })
    }

    /// Opens the store in `dir`, checking it: a store that is damaged (the database
    /// truncated, emptied, deleted, extended with garbage, or any stored value altered) is
    /// refused with one line saying what is wrong; nothing is served from it. A directory
    /// without a manifest gets a new store; one whose manifest says it held a store never
    /// comes up empty unless `options.init` asks for it.
    pub fn open_with(dir: &Path, options: OpenOptions) -> Result<(TaskStore, Recovered), Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Store(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(DB_FILE);
        let shown = path.display().to_string();
        let len = match std::fs::metadata(&path) {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::Store(format!("cannot read {shown}: {e}"))),
        };
        let fresh = if options.init {
            if len.is_some() {
                let aside = dir.join(format!("{DB_FILE}.before-init-{}", now_ms()));
                std::fs::rename(&path, &aside)
                    .map_err(|e| Error::Store(format!("cannot move {shown} aside: {e}")))?;
                tracing::warn!("--init: the previous database is kept as {}", aside.display());
            }
            true
        } else {
            let manifest = read_manifest(dir)?;
            match (manifest, len) {
                (None, None) => true,
                (Some(_), None) => {
                    return Err(Error::Store(format!(
                        "{shown} is missing, but {} says this directory holds a task store; {ADVICE}",
                        dir.join(MANIFEST).display()
                    )))
                }
                (_, Some(0)) => {
                    return Err(Error::Store(format!("{shown} is empty (0 bytes); {ADVICE}")))
                }
                (None, Some(_)) => {
                    return Err(Error::Store(format!(
                        "{shown} has no manifest ({MANIFEST}) beside it: written by an older vmx or not a vmx store; move it away, or start an empty store with --init"
                    )))
                }
                (Some(_), Some(_)) => false,
            }
        };
        let mark = if fresh { None } else { CommitMark::read(dir)? };
        if !fresh && mark.is_none() {
            return Err(Error::Store(format!(
                "{} is missing beside {shown}; {ADVICE}",
                dir.join(COMMIT_MARK).display()
            )));
        }
        let len_before = len.unwrap_or(0);
        let (db, recovered, seq) = catching(move || {
            let db = if fresh {
                let db = Database::create(&path).map_err(db_err)?;
                let w = db.begin_write().map_err(db_err)?;
                w.open_table(TASKS).map_err(db_err)?;
                w.open_table(RESULTS).map_err(db_err)?;
                w.open_table(IMAGES).map_err(db_err)?;
                w.open_table(META).map_err(db_err)?;
                w.commit().map_err(db_err)?;
                db
            } else {
                Database::open(&path).map_err(|e| damaged(format!("{shown}: {}", redb::Error::from(e))))?
            };
            let (recovered, seq) = check_and_recover(&db)?;
            if let Some((mark_seq, mark_len)) = mark {
                if seq < mark_seq {
                    return Err(damaged(format!(
                        "its last readable commit is number {seq}, but commit {mark_seq} was made (it fell back to an older commit)"
                    )));
                }
                if seq == mark_seq && len_before != mark_len {
                    return Err(damaged(format!(
                        "it is {len_before} bytes long, {mark_len} after its last commit (truncated or extended)"
                    )));
                }
                if seq > mark_seq {
                    tracing::info!("the commit mark was behind the database (commit {mark_seq} < {seq}): a power loss");
                }
            }
            Ok((db, recovered, seq))
        })
        .map_err(|e| match e {
            Error::Store(m) if m.starts_with("damaged") && !m.contains(ADVICE) => {
                Error::Store(format!("{} is {m}; {ADVICE}", dir.join(DB_FILE).display()))
            }
            e => e,
        })?;
        let durable = options.durable;
        let mark = CommitMark::create(dir, seq)?;
        if fresh {
            write_manifest(dir)?;
        }
        let db = Arc::new(db);
        let stats = Arc::new(StoreStats::default());
        let (tx, rx) = mpsc::channel();
        let writer = {
            let db = db.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("vmx-store".into())
                .spawn(move || writer_main(&db, &rx, durable, &stats, &mark, seq))
                .map_err(|e| Error::Store(format!("cannot start the store writer: {e}")))?
        };
        Ok((
            TaskStore {
                db: Some(db),
                tx: Some(tx),
                writer: Some(writer),
                stats,
                dir: dir.to_path_buf(),
            },
            recovered,
        ))
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
        let r = self.db()?.begin_read().map_err(db_err)?;
        let t = r.open_table(RESULTS).map_err(db_err)?;
        match t.get(id.0).map_err(db_err)? {
            Some(v) => Ok(Some(decode(unseal("results", &id.0.to_le_bytes(), v.value())?)?)),
            None => Ok(None),
        }
    }

    /// Reads a task's record.
    pub fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        let r = self.db()?.begin_read().map_err(db_err)?;
        let t = r.open_table(TASKS).map_err(db_err)?;
        match t.get(id.0).map_err(db_err)? {
            Some(v) => Ok(Some(decode(unseal("tasks", &id.0.to_le_bytes(), v.value())?)?)),
            None => Ok(None),
        }
    }

    fn db(&self) -> Result<&Database, Error> {
        self.db.as_deref().ok_or(Error::Closed)
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
        // Closing the database may write to it (its allocator state), changing its length:
        // the mark records the length it has once closed.
        if let Some(db) = self.db.take() {
            let seq = Arc::try_unwrap(db).ok().and_then(|db| {
                let seq =
                    db.begin_read().ok()?.open_table(META).ok()?.get("commits").ok()??.value();
                drop(db);
                Some(seq)
            });
            if let Some(seq) = seq {
                if let Err(e) = CommitMark::create(&self.dir, seq) {
                    tracing::error!("{e}");
                }
            }
        }
    }
}

fn writer_main(
    db: &Database,
    rx: &mpsc::Receiver<(StoreOp, Option<OnCommit>)>,
    durable: bool,
    stats: &StoreStats,
    mark: &CommitMark,
    mut seq: u64,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let outcome = commit_batch(db, &batch, durable, seq + 1).map_err(|e| e.to_string());
        match &outcome {
            Ok(()) => {
                seq += 1;
                if let Err(e) = mark.record(seq) {
                    tracing::error!("cannot write the commit mark: {e}");
                }
            }
            Err(e) => {
                tracing::error!("task store commit of {} operations failed: {e}", batch.len())
            }
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
    seq: u64,
) -> Result<(), Error> {
    let mut w = db.begin_write().map_err(db_err)?;
    w.set_durability(if durable { Durability::Immediate } else { Durability::Eventual });
    {
        let mut tasks = w.open_table(TASKS).map_err(db_err)?;
        let mut results = w.open_table(RESULTS).map_err(db_err)?;
        let mut images = w.open_table(IMAGES).map_err(db_err)?;
        let mut meta = w.open_table(META).map_err(db_err)?;
        let mut added = [0u64; 3];
        let mut put_task = |rec: &TaskRecord| -> Result<(), Error> {
            let key = rec.id.0.to_le_bytes();
            let old =
                tasks.insert(rec.id.0, &seal("tasks", &key, &encode(rec)?)[..]).map_err(db_err)?;
            added[0] += u64::from(old.is_none());
            Ok(())
        };
        let mut new_results = 0;
        let mut new_images = 0;
        for (op, _) in batch {
            match op {
                StoreOp::Barrier => {}
                StoreOp::PutImage(hash, bytes) => {
                    if images.get(&hash.0[..]).map_err(db_err)?.is_none() {
                        images
                            .insert(&hash.0[..], &seal("images", &hash.0, bytes)[..])
                            .map_err(db_err)?;
                        new_images += 1;
                    }
                }
                StoreOp::PutTask(rec) => put_task(rec)?,
                StoreOp::Finish(rec, result) => {
                    put_task(rec)?;
                    if let Some(r) = result {
                        let key = rec.id.0.to_le_bytes();
                        let old = results
                            .insert(rec.id.0, &seal("results", &key, &encode(r)?)[..])
                            .map_err(db_err)?;
                        new_results += u64::from(old.is_none());
                    }
                }
            }
        }
        added[1] = new_results;
        added[2] = new_images;
        meta.insert("commits", seq).map_err(db_err)?;
        for (name, n) in ["tasks", "results", "images"].into_iter().zip(added) {
            if n > 0 {
                let before = meta.get(name).map_err(db_err)?.map_or(0, |v| v.value());
                meta.insert(name, before + n).map_err(db_err)?;
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
