//! The redb backend of the [`TaskStore`]: one embedded database file in a data directory,
//! written with group commit.
//!
//! # Tables
//! - `tasks`: task id -> [`TaskRecord`];
//! - `results`: task id -> [`TaskResult`];
//! - `images`: image hash -> ELF bytes;
//! - `queue`: the ids of the tasks that are not final;
//! - `leases`: task id -> [`Lease`];
//! - `meta`: row counts of `tasks`, `results` and `images`, and the number of the last
//!   commit.
//!
//! Beside the database: the manifest [`MANIFEST`] (its presence says the directory holds a
//! store) and the commit mark [`COMMIT_MARK`].
//!
//! # Invariants (besides those of every [`TaskStore`])
//! - Commits are made with [`redb::Durability::Immediate`] when the store is durable.
//! - The store is read and checked completely when it opens ([`RedbStore::open_with`]) and
//!   a damaged one is refused with one line, never served: values that fail their checksum,
//!   keys that do not match their value, fewer rows than `meta` counts, a queue that is not
//!   the set of non-final tasks, a database older than the commit mark or of another length
//!   than it recorded, a missing or empty database where the manifest says there was one.

use super::{
    checksum, damaged, seal, seal_value, unseal, unseal_value, Claim, Lease, LeaseOp, LeaseOutcome,
    OnCommit, Recovered, StoreOp, StoreStats, TaskRecord, TaskStore, MAX_BATCH,
};
use crate::protocol::{ImageHash, TaskId, TaskResult, TaskStatus};
use crate::Error;
use redb::{Database, Durability, ReadableTable, Table, TableDefinition};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

const TASKS: TableDefinition<u64, &[u8]> = TableDefinition::new("tasks");
const RESULTS: TableDefinition<u64, &[u8]> = TableDefinition::new("results");
const IMAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("images");
const QUEUE: TableDefinition<u64, ()> = TableDefinition::new("queue");
const LEASES: TableDefinition<u64, &[u8]> = TableDefinition::new("leases");
/// Row counts of the other tables as of the last commit (`tasks`, `results`, `images`).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The redb store. See the module docs.
pub struct RedbStore {
    db: Option<Arc<Database>>,
    dir: std::path::PathBuf,
    tx: Option<mpsc::Sender<(StoreOp, Option<OnCommit>)>>,
    writer: Option<JoinHandle<()>>,
    stats: Arc<StoreStats>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("stats", &self.stats).finish_non_exhaustive()
    }
}

fn db_err(e: impl Into<redb::Error>) -> Error {
    Error::Store(e.into().to_string())
}

/// Name of the manifest beside the database: its presence says the directory holds a store.
pub const MANIFEST: &str = "vmx-store";
/// Name of the database file.
pub const DB_FILE: &str = "tasks.redb";
/// Version of the record format (sealed values, `meta` counts) the manifest announces.
const FORMAT: u64 = 1;
/// Name of the thread that opens and checks a store (its panics are caught and silenced).
const CHECK_THREAD: &str = "vmx-store-check";

/// The advice every refusal to open ends with.
const ADVICE: &str = "restore the data directory from a backup (see README, \"Backing up the task store\"), or start an empty store with --init";

/// Name of the commit mark beside the database: the number of the last commit and the
/// database's length after it, written after every commit.
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
    let text = format!(
        "vmx task store\nformat {FORMAT}\ndatabase {DB_FILE}\ncreated_ms {}\n",
        super::now_ms()
    );
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
        let rec: TaskRecord = unseal_value("tasks", id, v.value())?;
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
        let _: TaskResult = unseal_value("results", id, v.value())?;
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
    let queue = r.open_table(QUEUE).map_err(db_err)?;
    let mut queued = HashSet::new();
    for row in queue.iter().map_err(db_err)? {
        queued.insert(row.map_err(db_err)?.0.value());
    }
    let pending: HashSet<u64> =
        recovered.tasks.iter().filter(|t| !t.status.is_final()).map(|t| t.id.0).collect();
    if queued != pending {
        return Err(damaged(format!(
            "{} tasks in the queue, {} tasks not final",
            queued.len(),
            pending.len()
        )));
    }
    let leases = r.open_table(LEASES).map_err(db_err)?;
    for row in leases.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let id = k.value();
        let _: Lease = unseal_value("leases", id, v.value())?;
        if !queued.contains(&id) {
            return Err(damaged(format!("a lease on task {id}, which is not queued")));
        }
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

impl RedbStore {
    /// Opens (or creates) the store in `dir` and reads back everything it holds. With
    /// `durable`, every commit is flushed to disk before its callbacks run.
    pub fn open(dir: &Path, durable: bool) -> Result<(RedbStore, Recovered), Error> {
        RedbStore::open_with(dir, OpenOptions { durable, init: false })
    }

    /// Opens the store in `dir`, checking it: a store that is damaged (the database
    /// truncated, emptied, deleted, extended with garbage, or any stored value altered) is
    /// refused with one line saying what is wrong; nothing is served from it. A directory
    /// without a manifest gets a new store; one whose manifest says it held a store never
    /// comes up empty unless `options.init` asks for it.
    pub fn open_with(dir: &Path, options: OpenOptions) -> Result<(RedbStore, Recovered), Error> {
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
                let aside = dir.join(format!("{DB_FILE}.before-init-{}", super::now_ms()));
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
                w.open_table(QUEUE).map_err(db_err)?;
                w.open_table(LEASES).map_err(db_err)?;
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
            RedbStore {
                db: Some(db),
                tx: Some(tx),
                writer: Some(writer),
                stats,
                dir: dir.to_path_buf(),
            },
            recovered,
        ))
    }

    fn db(&self) -> Result<&Database, Error> {
        self.db.as_deref().ok_or(Error::Closed)
    }

    fn read<T: serde::de::DeserializeOwned>(
        &self,
        table: TableDefinition<u64, &[u8]>,
        id: TaskId,
    ) -> Result<Option<T>, Error> {
        let r = self.db()?.begin_read().map_err(db_err)?;
        let t = r.open_table(table).map_err(db_err)?;
        let v = t.get(id.0).map_err(db_err)?;
        v.map(|v| unseal_value(redb::TableHandle::name(&table), id.0, v.value())).transpose()
    }
}

impl TaskStore for RedbStore {
    fn apply(&self, op: StoreOp, on_commit: Option<OnCommit>) {
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::SendError((op, cb))) = tx.send((op, on_commit)) {
            if let StoreOp::Lease(_, reply) = op {
                reply(Err("the store is closed".into()));
            }
            if let Some(cb) = cb {
                cb(Err("the store is closed".into()));
            }
        }
    }

    fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        self.read(TASKS, id)
    }

    fn result(&self, id: TaskId) -> Result<Option<TaskResult>, Error> {
        self.read(RESULTS, id)
    }

    fn lease(&self, id: TaskId) -> Result<Option<Lease>, Error> {
        self.read(LEASES, id)
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }
}

impl Drop for RedbStore {
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
        let mut outcomes = Vec::new();
        let outcome =
            commit_batch(db, &batch, durable, seq + 1, &mut outcomes).map_err(|e| e.to_string());
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
        let mut outcomes = outcomes.into_iter();
        for (op, cb) in batch {
            if let StoreOp::Lease(_, reply) = op {
                let r = match &outcome {
                    Ok(()) => outcomes.next().ok_or_else(|| "no outcome".to_string()),
                    Err(e) => Err(e.clone()),
                };
                reply(r);
            }
            if let Some(cb) = cb {
                cb(outcome.clone());
            }
        }
    }
}

/// The tables a write transaction changes.
struct Tables<'t> {
    tasks: Table<'t, u64, &'static [u8]>,
    results: Table<'t, u64, &'static [u8]>,
    images: Table<'t, &'static [u8], &'static [u8]>,
    queue: Table<'t, u64, ()>,
    leases: Table<'t, u64, &'static [u8]>,
    /// Rows added to `tasks`, `results` and `images`.
    added: [u64; 3],
}

impl Tables<'_> {
    fn get<T: serde::de::DeserializeOwned>(
        table: &Table<'_, u64, &'static [u8]>,
        name: &str,
        id: u64,
    ) -> Result<Option<T>, Error> {
        let v = table.get(id).map_err(db_err)?;
        v.map(|v| unseal_value(name, id, v.value())).transpose()
    }

    fn task(&self, id: u64) -> Result<Option<TaskRecord>, Error> {
        Self::get(&self.tasks, "tasks", id)
    }

    fn lease(&self, id: u64) -> Result<Option<Lease>, Error> {
        Self::get(&self.leases, "leases", id)
    }

    fn put_task(&mut self, rec: &TaskRecord) -> Result<(), Error> {
        let id = rec.id.0;
        let old = self.tasks.insert(id, &seal_value("tasks", id, rec)?[..]).map_err(db_err)?;
        self.added[0] += u64::from(old.is_none());
        if rec.status.is_final() {
            self.queue.remove(id).map_err(db_err)?;
            self.leases.remove(id).map_err(db_err)?;
        } else {
            self.queue.insert(id, ()).map_err(db_err)?;
        }
        Ok(())
    }

    fn put_result(&mut self, id: u64, r: &TaskResult) -> Result<(), Error> {
        let old = self.results.insert(id, &seal_value("results", id, r)?[..]).map_err(db_err)?;
        self.added[1] += u64::from(old.is_none());
        Ok(())
    }

    fn put_lease(&mut self, id: u64, lease: &Lease) -> Result<(), Error> {
        self.leases.insert(id, &seal_value("leases", id, lease)?[..]).map_err(db_err)?;
        Ok(())
    }

    fn lease_op(&mut self, op: &LeaseOp) -> Result<LeaseOutcome, Error> {
        Ok(match op {
            LeaseOp::Claim { owner, now_ms, lease_ms, max } => {
                let mut ids = Vec::new();
                for row in self.queue.iter().map_err(db_err)? {
                    if ids.len() >= *max {
                        break;
                    }
                    let id = row.map_err(db_err)?.0.value();
                    if self.lease(id)?.is_none_or(|l| l.until_ms <= *now_ms) {
                        ids.push(id);
                    }
                }
                let mut claims = Vec::new();
                for id in ids {
                    let Some(mut record) = self.task(id)? else { continue };
                    record.attempts += 1;
                    let attempt = record.attempts;
                    self.put_task(&record)?;
                    let until_ms = now_ms.saturating_add(*lease_ms);
                    self.put_lease(id, &Lease { owner: owner.clone(), attempt, until_ms })?;
                    claims.push(Claim { record, attempt });
                }
                LeaseOutcome::Claimed(claims)
            }
            LeaseOp::Renew { task, owner, attempt, now_ms, lease_ms } => {
                match self.lease(task.0)? {
                    Some(mut l) if l.owner == *owner && l.attempt == *attempt => {
                        l.until_ms = now_ms.saturating_add(*lease_ms);
                        self.put_lease(task.0, &l)?;
                        LeaseOutcome::Renewed(true)
                    }
                    _ => LeaseOutcome::Renewed(false),
                }
            }
            LeaseOp::Finish { record, attempt, result } => {
                let id = record.id.0;
                let current = self.task(id)?;
                let live = current.is_some_and(|t| !t.status.is_final() && t.attempts == *attempt);
                if !live || !record.status.is_final() {
                    return Ok(LeaseOutcome::Finished(false));
                }
                self.put_task(record)?;
                if let Some(r) = result {
                    self.put_result(id, r)?;
                }
                LeaseOutcome::Finished(true)
            }
            LeaseOp::Cancel { task, by, at_ms } => match self.task(task.0)? {
                Some(mut t) if !t.status.is_final() => {
                    t.status = TaskStatus::Cancelled { by: by.clone(), at_ms: *at_ms };
                    self.put_task(&t)?;
                    LeaseOutcome::Cancelled(true)
                }
                _ => LeaseOutcome::Cancelled(false),
            },
            LeaseOp::Insert { .. }
            | LeaseOp::Beat { .. }
            | LeaseOp::Adopt { .. }
            | LeaseOp::FinishReported { .. }
            | LeaseOp::Release { .. } => return Err(Error::Store(
                "a redb store serves one coordinator: shared-store operations are not available"
                    .into(),
            )),
        })
    }
}

fn commit_batch(
    db: &Database,
    batch: &[(StoreOp, Option<OnCommit>)],
    durable: bool,
    seq: u64,
    outcomes: &mut Vec<LeaseOutcome>,
) -> Result<(), Error> {
    let mut w = db.begin_write().map_err(db_err)?;
    w.set_durability(if durable { Durability::Immediate } else { Durability::Eventual });
    {
        let mut t = Tables {
            tasks: w.open_table(TASKS).map_err(db_err)?,
            results: w.open_table(RESULTS).map_err(db_err)?,
            images: w.open_table(IMAGES).map_err(db_err)?,
            queue: w.open_table(QUEUE).map_err(db_err)?,
            leases: w.open_table(LEASES).map_err(db_err)?,
            added: [0; 3],
        };
        for (op, _) in batch {
            match op {
                StoreOp::Barrier => {}
                StoreOp::PutImage(hash, bytes) => {
                    if t.images.get(&hash.0[..]).map_err(db_err)?.is_none() {
                        t.images
                            .insert(&hash.0[..], &seal("images", &hash.0, bytes)[..])
                            .map_err(db_err)?;
                        t.added[2] += 1;
                    }
                }
                StoreOp::PutTask(rec) => t.put_task(rec)?,
                StoreOp::Finish(rec, result) => {
                    t.put_task(rec)?;
                    if let Some(r) = result {
                        t.put_result(rec.id.0, r)?;
                    }
                }
                StoreOp::Lease(op, _) => outcomes.push(t.lease_op(op)?),
            }
        }
        let mut meta = w.open_table(META).map_err(db_err)?;
        meta.insert("commits", seq).map_err(db_err)?;
        for (name, n) in ["tasks", "results", "images"].into_iter().zip(t.added) {
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
    use crate::protocol::{TaskSpec, TaskType};

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
            let (store, rec) = RedbStore::open(dir.path(), true).unwrap();
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
        let (store, rec) = RedbStore::open(dir.path(), true).unwrap();
        assert_eq!(rec.tasks.len(), 100);
        assert_eq!(rec.tasks[6].status, TaskStatus::Completed { exit_status: 3 });
        assert_eq!(rec.tasks[7].status, TaskStatus::Queued);
        assert_eq!(rec.images, vec![(ImageHash::of(b"x"), b"x".to_vec())]);
        assert_eq!(store.result(TaskId(7)).unwrap().unwrap(), result(3));
    }

    #[test]
    fn many_operations_share_few_commits_and_callbacks_run_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = RedbStore::open(dir.path(), true).unwrap();
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
