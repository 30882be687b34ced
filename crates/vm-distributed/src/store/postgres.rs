//! The PostgreSQL backend of the [`TaskStore`] (`--store postgres://USER@HOST:PORT/DB`).
//!
//! # Schema
//! Created and migrated by vmx itself: [`MIGRATIONS`] are applied in order, each in its own
//! transaction under an advisory lock (so coordinators starting together migrate once),
//! and recorded in `vmx_schema`. A database whose schema is newer than this vmx knows is
//! refused. Tables:
//! - `vmx_tasks`: id, the sealed [`TaskRecord`], whether it is final, its attempt count;
//! - `vmx_leases`: task id, owner, attempt, expiry (ms);
//! - `vmx_results`: task id, the sealed [`TaskResult`];
//! - `vmx_images`: content-addressed program images (SHA-256 -> sealed bytes);
//! - `vmx_task_ids`: the sequence task ids are drawn from (several coordinators insert);
//! - `vmx_tasks.state`: the status's name in plain text, for counts (`queued`, `completed`,
//!   `failed`, `cancelled`; rows of schema 1 are filled in when a store opens);
//! - `vmx_coordinators`: one heartbeat row per coordinator (id, address, pid, start, last
//!   beat, expiry), rows silent for an hour deleted.
//!
//! # Invariants (besides those of every [`TaskStore`])
//! - One writer thread with its own connection applies operations in order, every
//!   operation waiting in one transaction (group commit); callbacks run after `COMMIT`
//!   returned. With `durable: false` the connection uses `synchronous_commit = off`.
//! - Reads go through a second connection on a reader thread, so no PostgreSQL call runs
//!   on an async runtime's thread.
//! - Claims lock the rows they take with `FOR UPDATE SKIP LOCKED`: coordinators sharing a
//!   database never claim the same task at once, and never wait on each other's claims.
//! - A transaction that queued tasks (inserted, or gave one back) sends `NOTIFY vmx_tasks`
//!   (delivered at commit); [`TaskStore::subscribe`] listens on a third connection,
//!   re-established when lost (and calls its callback then, for work queued meanwhile).
//! - Any number of coordinators share a database: ids come from `vmx_task_ids`, and every
//!   change to a task's attempt (claim, finish, adopt, release) first locks its row, so the
//!   attempt fence (`attempts` in the stored record) is checked and changed atomically.
//!   A lease whose owner renews it through a `Beat` racing a claim of the expired lease can
//!   lose it: the `Beat`'s answer then lacks it, and the owner drops the task.
//! - A lost connection fails the operations of the batch in flight (their callbacks get the
//!   error, nothing is acknowledged) and is re-established for the next batch.

use super::{
    damaged, seal, seal_value, status_of_result, unseal, unseal_value, Claim, Final, Lease,
    LeaseOp, LeaseOutcome, OnCommit, Recovered, StoreOp, StoreStats, TaskRecord, TaskStore,
    MAX_BATCH,
};
use crate::protocol::{CoordinatorInfo, ImageHash, TaskCounts, TaskId, TaskResult, TaskStatus};
use crate::Error;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The schema migrations, in order: version `i + 1` is `MIGRATIONS[i]`.
pub const MIGRATIONS: &[&str] = &[
    // 1: tasks, leases, results, images.
    "CREATE TABLE vmx_tasks (
        id BIGINT PRIMARY KEY,
        record BYTEA NOT NULL,
        final BOOLEAN NOT NULL,
        attempts INTEGER NOT NULL
    );
    CREATE INDEX vmx_tasks_pending ON vmx_tasks (id) WHERE NOT final;
    CREATE TABLE vmx_leases (
        task BIGINT PRIMARY KEY REFERENCES vmx_tasks (id),
        owner TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        until_ms BIGINT NOT NULL
    );
    CREATE TABLE vmx_results (
        task BIGINT PRIMARY KEY REFERENCES vmx_tasks (id),
        result BYTEA NOT NULL
    );
    CREATE TABLE vmx_images (
        hash BYTEA PRIMARY KEY,
        bytes BYTEA NOT NULL
    );",
    // 2: several coordinators: ids from a sequence, a plain status column for counts
    // (filled for older rows when a store opens), coordinator heartbeats.
    "CREATE SEQUENCE vmx_task_ids;
    SELECT setval('vmx_task_ids', COALESCE((SELECT MAX(id) FROM vmx_tasks), 0) + 1, false);
    ALTER TABLE vmx_tasks ADD COLUMN state TEXT;
    CREATE INDEX vmx_leases_owner ON vmx_leases (owner);
    CREATE TABLE vmx_coordinators (
        id TEXT PRIMARY KEY,
        addr TEXT NOT NULL,
        pid BIGINT NOT NULL,
        started_ms BIGINT NOT NULL,
        seen_ms BIGINT NOT NULL,
        until_ms BIGINT NOT NULL
    );",
];

/// Key of the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x0076_6d78_5f6d_6967; // "vmx_mig"

/// How to open a PostgreSQL store.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Wait for the commit to be flushed (PostgreSQL's `synchronous_commit`) before
    /// callbacks run.
    pub durable: bool,
    /// Most time to wait for a connection.
    pub connect_timeout: Duration,
    /// Apply missing migrations (otherwise a schema older than this vmx is refused).
    pub migrate: bool,
    /// Read every task back at open ([`Recovered::tasks`]); coordinators sharing the
    /// database claim tasks as they go instead.
    pub load_tasks: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            durable: true,
            connect_timeout: Duration::from_secs(5),
            migrate: true,
            load_tasks: true,
        }
    }
}

/// A PostgreSQL error as one line: the server's message when it sent one.
fn pg_err(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                let more = inner.to_string();
                if !s.contains(&more) {
                    s = format!("{s}: {more}");
                }
                src = inner.source();
            }
            s
        }
    }
}

fn store_err(e: postgres::Error) -> Error {
    Error::Store(pg_err(&e))
}

/// Where a URL points, without its password (for messages).
fn shown(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("?");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}")
}

fn parse(url: &str, options: &PgOptions) -> Result<postgres::Config, Error> {
    let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
        Error::Store(format!("not a PostgreSQL URL (postgres://USER@HOST:PORT/DB): {}", pg_err(&e)))
    })?;
    config.connect_timeout(options.connect_timeout);
    config.application_name("vmx");
    Ok(config)
}

fn connect(config: &postgres::Config) -> Result<Client, Error> {
    config
        .connect(NoTls)
        .map_err(|e| Error::Store(format!("cannot connect to {}: {}", shown(config), pg_err(&e))))
}

/// The schema version of the database (0: none).
fn schema_version(client: &mut Client) -> Result<i32, Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('vmx_schema') IS NOT NULL", &[])
        .map_err(store_err)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM vmx_schema", &[])
        .map_err(store_err)?;
    Ok(row.get(0))
}

/// Brings the schema to the latest version (or checks it is, without `migrate`).
fn migrate(client: &mut Client, config: &postgres::Config, migrate: bool) -> Result<(), Error> {
    let latest = MIGRATIONS.len() as i32;
    let where_ = shown(config);
    let newer = |v: i32| {
        Error::Store(format!(
            "the database at {where_} has schema version {v}, newer than this vmx knows ({latest}): upgrade vmx"
        ))
    };
    let current = schema_version(client)?;
    if current > latest {
        return Err(newer(current));
    }
    if current == latest {
        return Ok(());
    }
    if !migrate {
        return Err(Error::Store(format!(
            "the database at {where_} has schema version {current}, this vmx needs {latest}: run vmx coordinator --store URL --migrate-only"
        )));
    }
    let mut tx = client.transaction().map_err(store_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(|e| {
        Error::Store(format!("cannot migrate the schema at {where_}: {}", pg_err(&e)))
    })?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS vmx_schema (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            by_vmx TEXT NOT NULL
        )",
    )
    .map_err(|e| {
        use postgres::error::SqlState;
        let hint = match e.code() {
            Some(c)
                if *c == SqlState::INSUFFICIENT_PRIVILEGE
                    || *c == SqlState::INVALID_SCHEMA_NAME =>
            {
                " (the role needs the CREATE privilege on a schema in its search_path)"
            }
            _ => "",
        };
        Error::Store(format!("cannot create the schema at {where_}: {}{hint}", pg_err(&e)))
    })?;
    let current: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM vmx_schema", &[])
        .map_err(store_err)?
        .get(0);
    if current > latest {
        return Err(newer(current));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql).map_err(|e| {
            Error::Store(format!("migration {version} failed at {where_}: {}", pg_err(&e)))
        })?;
        tx.execute(
            "INSERT INTO vmx_schema (version, by_vmx) VALUES ($1, $2)",
            &[&version, &env!("CARGO_PKG_VERSION")],
        )
        .map_err(store_err)?;
        tracing::info!("schema of {where_} migrated to version {version}");
    }
    tx.commit().map_err(store_err)
}

/// The `state` column's value for a status.
fn state_of(status: &TaskStatus) -> &'static str {
    match status {
        TaskStatus::Queued | TaskStatus::Running { .. } => "queued",
        TaskStatus::Completed { .. } => "completed",
        TaskStatus::Failed { .. } => "failed",
        TaskStatus::Cancelled { .. } => "cancelled",
    }
}

/// Fills the `state` column of rows written before schema version 2.
fn fill_states(client: &mut Client) -> Result<(), Error> {
    let rows = client
        .query("SELECT id, record FROM vmx_tasks WHERE state IS NULL", &[])
        .map_err(store_err)?;
    for row in rows {
        let id: i64 = row.get(0);
        let rec: TaskRecord = unseal_value("tasks", id as u64, row.get(1))?;
        client
            .execute(
                "UPDATE vmx_tasks SET state = $2 WHERE id = $1",
                &[&id, &state_of(&rec.status)],
            )
            .map_err(store_err)?;
    }
    Ok(())
}

/// Reads every image (and, with `tasks`, every task), checking every seal.
fn recover(client: &mut Client, tasks: bool) -> Result<Recovered, Error> {
    let mut recovered = Recovered::default();
    let sql = if tasks {
        "SELECT id, record FROM vmx_tasks ORDER BY id"
    } else {
        "SELECT 0::BIGINT, ''::BYTEA WHERE false"
    };
    for row in client.query(sql, &[]).map_err(store_err)? {
        let id: i64 = row.get(0);
        let bytes: &[u8] = row.get(1);
        let rec: TaskRecord = unseal_value("tasks", id as u64, bytes)?;
        if rec.id.0 != id as u64 {
            return Err(damaged(format!("the record under task {id} is task {}", rec.id.0)));
        }
        recovered.tasks.push(rec);
    }
    for row in client.query("SELECT hash, bytes FROM vmx_images", &[]).map_err(store_err)? {
        let key: &[u8] = row.get(0);
        let key: [u8; 32] =
            key.try_into().map_err(|_| damaged("an image key is malformed".into()))?;
        let bytes = unseal("images", &key, row.get(1))?;
        if ImageHash::of(bytes).0 != key {
            return Err(damaged(format!("image {} does not match its hash", ImageHash(key))));
        }
        recovered.images.push((ImageHash(key), bytes.to_vec()));
    }
    Ok(recovered)
}

/// A read the reader thread answers: given the reader's connection (or why there is none).
type Read = Box<dyn FnOnce(Result<&mut Client, Error>) + Send>;

/// The PostgreSQL store. See the module docs.
pub struct PgStore {
    tx: Option<mpsc::Sender<(StoreOp, Option<OnCommit>)>>,
    reads: Option<Mutex<mpsc::Sender<Read>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stats: Arc<StoreStats>,
    shown: String,
    config: postgres::Config,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("db", &self.shown).field("stats", &self.stats).finish()
    }
}

impl PgStore {
    /// Connects to `url`, migrates (or checks) the schema and reads back what the database
    /// holds (see [`PgOptions::load_tasks`]). Blocking: call it outside an async runtime's
    /// threads (or in `spawn_blocking`).
    pub fn open(url: &str, options: PgOptions) -> Result<(PgStore, Recovered), Error> {
        let config = parse(url, &options)?;
        let shown = shown(&config);
        let (config2, options2) = (config.clone(), options.clone());
        // The postgres client runs its own runtime: keep it off the caller's thread.
        let (write_conn, read_conn, recovered) = on_thread(move || {
            let mut write_conn = connect(&config2)?;
            migrate(&mut write_conn, &config2, options2.migrate)?;
            fill_states(&mut write_conn)?;
            if !options2.durable {
                write_conn.batch_execute("SET synchronous_commit = off").map_err(store_err)?;
            }
            let recovered = recover(&mut write_conn, options2.load_tasks)?;
            let read_conn = connect(&config2)?;
            Ok((write_conn, read_conn, recovered))
        })?;
        let stats = Arc::new(StoreStats::default());
        let (tx, rx) = mpsc::channel::<(StoreOp, Option<OnCommit>)>();
        let writer = {
            let stats = stats.clone();
            let config = config.clone();
            let durable = options.durable;
            let mut write_conn = WriterConn { client: Some(write_conn), stmts: HashMap::new() };
            std::thread::Builder::new()
                .name("vmx-pg-writer".into())
                .spawn(move || {
                    while let Ok(first) = rx.recv() {
                        let mut batch = vec![first];
                        while batch.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(op) => batch.push(op),
                                Err(_) => break,
                            }
                        }
                        write_batch(&mut write_conn, &config, durable, batch, &stats);
                    }
                })
                .map_err(|e| Error::Store(format!("cannot start the store writer: {e}")))?
        };
        let (rtx, rrx) = mpsc::channel::<Read>();
        let reader = {
            let config = config.clone();
            let mut conn = Some(read_conn);
            std::thread::Builder::new()
                .name("vmx-pg-reader".into())
                .spawn(move || {
                    while let Ok(read) = rrx.recv() {
                        if conn.as_ref().is_none_or(|c| c.is_closed()) {
                            conn = connect(&config).ok();
                        }
                        match conn.as_mut() {
                            Some(c) => read(Ok(c)),
                            None => read(Err(Error::Store(format!(
                                "cannot reach the database at {}",
                                shown_of(&config)
                            )))),
                        }
                    }
                })
                .map_err(|e| Error::Store(format!("cannot start the store reader: {e}")))?
        };
        Ok((
            PgStore {
                tx: Some(tx),
                reads: Some(Mutex::new(rtx)),
                threads: Mutex::new(vec![writer, reader]),
                stats,
                shown,
                config,
                closed: Arc::new(AtomicBool::new(false)),
            },
            recovered,
        ))
    }

    /// Connects to `url` and brings its schema to this vmx's version; returns the version.
    pub fn migrate_only(url: &str, options: PgOptions) -> Result<i32, Error> {
        let config = parse(url, &options)?;
        on_thread(move || {
            let mut client = connect(&config)?;
            migrate(&mut client, &config, true)?;
            schema_version(&mut client)
        })
    }

    /// Runs `f` on the reader's connection; once more on a new connection if the first
    /// attempt failed because the connection was lost (reads are idempotent).
    fn read<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Client) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = mpsc::channel();
        let config = self.config.clone();
        let read: Read = Box::new(move |c| {
            let r = c.and_then(|c| match f(c) {
                Err(_) if c.is_closed() => match connect(&config) {
                    Ok(mut fresh) => {
                        let r = f(&mut fresh);
                        *c = fresh;
                        r
                    }
                    Err(e) => Err(e),
                },
                r => r,
            });
            let _ = tx.send(r);
        });
        let reads = self.reads.as_ref().ok_or(Error::Closed)?;
        reads.lock().map_err(|_| Error::Closed)?.send(read).map_err(|_| Error::Closed)?;
        rx.recv().map_err(|_| Error::Closed)?
    }
}

/// Runs `f` on a thread of its own and waits for it.
fn on_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    std::thread::Builder::new()
        .name("vmx-pg-open".into())
        .spawn(f)
        .map_err(|e| Error::Store(format!("cannot start a thread: {e}")))?
        .join()
        .map_err(|_| Error::Store("the PostgreSQL connection thread panicked".into()))?
}

fn shown_of(config: &postgres::Config) -> String {
    shown(config)
}

/// The listener thread of [`TaskStore::subscribe`]: `LISTEN vmx_tasks` on a connection of
/// its own (re-established when lost), calling `wake` for every notification, until
/// `closed`.
fn listen(config: postgres::Config, closed: Arc<AtomicBool>, wake: Box<dyn Fn() + Send + Sync>) {
    use postgres::fallible_iterator::FallibleIterator;
    let mut warned = false;
    while !closed.load(Ordering::Acquire) {
        let mut client = match connect(&config)
            .and_then(|mut c| c.batch_execute("LISTEN vmx_tasks").map(|()| c).map_err(store_err))
        {
            Ok(c) => c,
            Err(e) => {
                if !warned {
                    tracing::warn!("task store: cannot listen for new work: {e}");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
        };
        if warned {
            tracing::info!("task store: listening for new work again");
            warned = false;
        }
        // Work queued while nobody listened.
        wake();
        while !closed.load(Ordering::Acquire) {
            // A fresh iterator per wait: one whose time-out expired returns at once forever.
            let next = client.notifications().timeout_iter(Duration::from_millis(250)).next();
            match next {
                Ok(Some(_)) => {
                    // One wake for every notification already here.
                    while let Ok(Some(_)) = client.notifications().iter().next() {}
                    wake();
                }
                Ok(None) if client.is_closed() => {
                    tracing::warn!("task store: the notification connection ended");
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("task store: the notification connection ended: {}", pg_err(&e));
                    break;
                }
            }
        }
    }
}

/// The writer's connection and the statements prepared on it.
#[derive(Default)]
struct WriterConn {
    client: Option<Client>,
    stmts: HashMap<&'static str, Statement>,
}

/// Applies a batch in one transaction (reconnecting first if the connection was lost),
/// then runs its callbacks and answers its lease operations.
fn write_batch(
    conn: &mut WriterConn,
    config: &postgres::Config,
    durable: bool,
    batch: Vec<(StoreOp, Option<OnCommit>)>,
    stats: &StoreStats,
) {
    if conn.client.as_ref().is_none_or(|c| c.is_closed()) {
        conn.stmts.clear();
        conn.client = match connect(config) {
            Ok(mut c) => {
                if !durable {
                    let _ = c.batch_execute("SET synchronous_commit = off");
                }
                tracing::info!("task store: connected to {}", shown(config));
                Some(c)
            }
            Err(e) => {
                tracing::error!("task store: {e}");
                None
            }
        };
    }
    let mut outcomes = Vec::new();
    let outcome = match conn.client.as_mut() {
        None => Err(format!("cannot reach the database at {}", shown(config))),
        Some(c) => commit_batch(c, &mut conn.stmts, &batch, &mut outcomes)
            .map_err(|e| format!("the database at {} did not commit: {e}", shown(config))),
    };
    if let Err(e) = &outcome {
        tracing::error!("task store commit of {} operations failed: {e}", batch.len());
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

/// A statement's parameters.
type Params<'p> = [&'p (dyn ToSql + Sync)];

/// The writer's transaction: each statement is prepared once per connection, then only
/// bound and executed (one round trip).
struct Tx<'a> {
    tx: postgres::Transaction<'a>,
    stmts: &'a mut HashMap<&'static str, Statement>,
}

impl Tx<'_> {
    fn stmt(&mut self, sql: &'static str) -> Result<Statement, Error> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql).map_err(store_err)?;
        self.stmts.insert(sql, s.clone());
        Ok(s)
    }

    fn execute(&mut self, sql: &'static str, params: &Params<'_>) -> Result<u64, Error> {
        let s = self.stmt(sql)?;
        self.tx.execute(&s, params).map_err(store_err)
    }

    fn query(&mut self, sql: &'static str, params: &Params<'_>) -> Result<Vec<Row>, Error> {
        let s = self.stmt(sql)?;
        self.tx.query(&s, params).map_err(store_err)
    }

    fn query_opt(&mut self, sql: &'static str, params: &Params<'_>) -> Result<Option<Row>, Error> {
        let s = self.stmt(sql)?;
        self.tx.query_opt(&s, params).map_err(store_err)
    }
}

fn put_task(tx: &mut Tx<'_>, rec: &TaskRecord) -> Result<(), Error> {
    let id = rec.id.0 as i64;
    let sealed = seal_value("tasks", rec.id.0, rec)?;
    let final_ = rec.status.is_final();
    tx.execute(
        "INSERT INTO vmx_tasks (id, record, final, attempts, state) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET record = $2, final = $3, attempts = $4, state = $5",
        &[&id, &sealed, &final_, &(rec.attempts as i32), &state_of(&rec.status)],
    )?;
    if final_ {
        tx.execute("DELETE FROM vmx_leases WHERE task = $1", &[&id])?;
    }
    Ok(())
}

fn put_result(tx: &mut Tx<'_>, id: TaskId, r: &TaskResult) -> Result<(), Error> {
    let sealed = seal_value("results", id.0, r)?;
    tx.execute(
        "INSERT INTO vmx_results (task, result) VALUES ($1, $2)
         ON CONFLICT (task) DO UPDATE SET result = $2",
        &[&(id.0 as i64), &sealed],
    )?;
    Ok(())
}

fn put_lease(
    tx: &mut Tx<'_>,
    id: TaskId,
    owner: &str,
    attempt: u32,
    until_ms: u64,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO vmx_leases (task, owner, attempt, until_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (task) DO UPDATE SET owner = $2, attempt = $3, until_ms = $4",
        &[&(id.0 as i64), &owner, &(attempt as i32), &(until_ms as i64)],
    )?;
    Ok(())
}

/// A task's record, locked for this transaction.
fn locked_task(tx: &mut Tx<'_>, id: TaskId) -> Result<Option<TaskRecord>, Error> {
    let row =
        tx.query_opt("SELECT record FROM vmx_tasks WHERE id = $1 FOR UPDATE", &[&(id.0 as i64)])?;
    row.map(|r| unseal_value("tasks", id.0, r.get::<_, &[u8]>(0))).transpose()
}

/// The task's record, locked, if `attempt` is its current attempt and it is not final: the
/// fence every result, adoption and release passes.
fn live_attempt(tx: &mut Tx<'_>, id: TaskId, attempt: u32) -> Result<Option<TaskRecord>, Error> {
    Ok(locked_task(tx, id)?.filter(|t| !t.status.is_final() && t.attempts == attempt))
}

/// Inserts new queued tasks in one statement, with ids drawn from the sequence; those with
/// a lease get attempt 1 and their lease in a second statement.
fn insert_all(
    tx: &mut Tx<'_>,
    records: &[(&TaskRecord, Option<&(String, u64)>)],
) -> Result<Vec<TaskId>, Error> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = tx
        .query(
            "SELECT nextval('vmx_task_ids') FROM generate_series(1, $1::BIGINT)",
            &[&(records.len() as i64)],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut sealed = Vec::with_capacity(records.len());
    let mut attempts = Vec::with_capacity(records.len());
    let (mut l_ids, mut l_owners, mut l_until) = (Vec::new(), Vec::new(), Vec::new());
    for ((rec, lease), &id) in records.iter().zip(&ids) {
        let mut rec = (*rec).clone();
        rec.id = TaskId(id as u64);
        rec.status = TaskStatus::Queued;
        if let Some((owner, until_ms)) = lease {
            rec.attempts = 1;
            l_ids.push(id);
            l_owners.push(owner.as_str());
            l_until.push(*until_ms as i64);
        }
        attempts.push(rec.attempts as i32);
        sealed.push(seal_value("tasks", rec.id.0, &rec)?);
    }
    tx.execute(
        "INSERT INTO vmx_tasks (id, record, final, attempts, state)
         SELECT u.id, u.record, false, u.attempts, 'queued'
         FROM unnest($1::BIGINT[], $2::BYTEA[], $3::INT[]) AS u(id, record, attempts)",
        &[&ids, &sealed, &attempts],
    )?;
    if !l_ids.is_empty() {
        tx.execute(
            "INSERT INTO vmx_leases (task, owner, attempt, until_ms)
             SELECT u.task, u.owner, 1, u.until_ms
             FROM unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[]) AS u(task, owner, until_ms)",
            &[&l_ids, &l_owners, &l_until],
        )?;
    }
    Ok(ids.into_iter().map(|id| TaskId(id as u64)).collect())
}

/// Applies consecutive `Finish` and `FinishReported` operations (`group`: their indices in
/// `batch`) with a few statements: their rows locked in id order, each fenced in turn (a
/// second result for a task in the same group sees it final), then every write at once.
fn finish_group(
    tx: &mut Tx<'_>,
    batch: &[(StoreOp, Option<OnCommit>)],
    group: &[usize],
    outcomes: &mut [Option<LeaseOutcome>],
) -> Result<(), Error> {
    let mut ids: Vec<i64> = group
        .iter()
        .filter_map(|&i| match &batch[i].0 {
            StoreOp::Lease(LeaseOp::Finish { record, .. }, _) => Some(record.id.0 as i64),
            StoreOp::Lease(LeaseOp::FinishReported { task, .. }, _) => Some(task.0 as i64),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut current: HashMap<u64, TaskRecord> = HashMap::new();
    for row in tx.query(
        "SELECT id, record FROM vmx_tasks WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&ids],
    )? {
        let id = row.get::<_, i64>(0) as u64;
        current.insert(id, unseal_value("tasks", id, row.get(1))?);
    }
    let live = |c: &HashMap<u64, TaskRecord>, id: TaskId, attempt: u32| {
        c.get(&id.0).is_some_and(|t| !t.status.is_final() && t.attempts == attempt)
    };
    let (mut w_ids, mut w_recs, mut w_attempts, mut w_states) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut r_ids, mut r_vals) = (Vec::new(), Vec::new());
    for &i in group {
        let StoreOp::Lease(op, _) = &batch[i].0 else { continue };
        let (rec, result) = match op {
            LeaseOp::Finish { record, attempt, result } => {
                if !record.status.is_final() || !live(&current, record.id, *attempt) {
                    outcomes[i] = Some(LeaseOutcome::Finished(false));
                    continue;
                }
                ((**record).clone(), result.as_ref())
            }
            LeaseOp::FinishReported { task, result } => {
                if !live(&current, *task, result.attempt) {
                    outcomes[i] = Some(LeaseOutcome::Finished(false));
                    continue;
                }
                let Some(mut rec) = current.get(&task.0).cloned() else { continue };
                rec.status = status_of_result(&rec.reasons, result);
                (rec, Some(&**result))
            }
            _ => continue,
        };
        w_ids.push(rec.id.0 as i64);
        w_recs.push(seal_value("tasks", rec.id.0, &rec)?);
        w_attempts.push(rec.attempts as i32);
        w_states.push(state_of(&rec.status));
        if let Some(r) = result {
            r_ids.push(rec.id.0 as i64);
            r_vals.push(seal_value("results", rec.id.0, r)?);
        }
        current.insert(rec.id.0, rec);
        outcomes[i] = Some(LeaseOutcome::Finished(true));
    }
    if w_ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "UPDATE vmx_tasks t SET record = u.record, final = true, attempts = u.attempts,
           state = u.state
         FROM unnest($1::BIGINT[], $2::BYTEA[], $3::INT[], $4::TEXT[])
           AS u(id, record, attempts, state)
         WHERE t.id = u.id",
        &[&w_ids, &w_recs, &w_attempts, &w_states],
    )?;
    tx.execute("DELETE FROM vmx_leases WHERE task = ANY($1)", &[&w_ids])?;
    if !r_ids.is_empty() {
        tx.execute(
            "INSERT INTO vmx_results (task, result)
             SELECT * FROM unnest($1::BIGINT[], $2::BYTEA[])
             ON CONFLICT (task) DO UPDATE SET result = EXCLUDED.result",
            &[&r_ids, &r_vals],
        )?;
    }
    Ok(())
}

fn lease_op(tx: &mut Tx<'_>, op: &LeaseOp) -> Result<LeaseOutcome, Error> {
    Ok(match op {
        LeaseOp::Claim { owner, now_ms, lease_ms, max } => {
            let rows = tx.query(
                "SELECT t.id, t.record FROM vmx_tasks t
                 LEFT JOIN vmx_leases l ON l.task = t.id
                 WHERE NOT t.final AND (l.task IS NULL OR l.until_ms <= $1)
                 ORDER BY t.id LIMIT $2
                 FOR UPDATE OF t SKIP LOCKED",
                &[&(*now_ms as i64), &(*max as i64)],
            )?;
            let until_ms = now_ms.saturating_add(*lease_ms) as i64;
            let mut claims = Vec::new();
            let (mut ids, mut recs, mut attempts) = (Vec::new(), Vec::new(), Vec::new());
            for row in rows {
                let id: i64 = row.get(0);
                let mut record: TaskRecord = unseal_value("tasks", id as u64, row.get(1))?;
                record.attempts += 1;
                ids.push(id);
                recs.push(seal_value("tasks", id as u64, &record)?);
                attempts.push(record.attempts as i32);
                let attempt = record.attempts;
                claims.push(Claim { record, attempt });
            }
            if !ids.is_empty() {
                tx.execute(
                    "UPDATE vmx_tasks t SET record = u.record, attempts = u.attempts
                     FROM unnest($1::BIGINT[], $2::BYTEA[], $3::INT[]) AS u(id, record, attempts)
                     WHERE t.id = u.id",
                    &[&ids, &recs, &attempts],
                )?;
                tx.execute(
                    "INSERT INTO vmx_leases (task, owner, attempt, until_ms)
                     SELECT u.task, $3, u.attempt, $4
                     FROM unnest($1::BIGINT[], $2::INT[]) AS u(task, attempt)
                     ON CONFLICT (task) DO UPDATE SET owner = EXCLUDED.owner,
                       attempt = EXCLUDED.attempt, until_ms = EXCLUDED.until_ms",
                    &[&ids, &attempts, owner, &until_ms],
                )?;
            }
            LeaseOutcome::Claimed(claims)
        }
        LeaseOp::Renew { task, owner, attempt, now_ms, lease_ms } => {
            let n = tx.execute(
                "UPDATE vmx_leases l SET until_ms = $4 FROM vmx_tasks t
                 WHERE l.task = $1 AND l.owner = $2 AND l.attempt = $3
                   AND t.id = l.task AND NOT t.final",
                &[
                    &(task.0 as i64),
                    owner,
                    &(*attempt as i32),
                    &(now_ms.saturating_add(*lease_ms) as i64),
                ],
            )?;
            LeaseOutcome::Renewed(n == 1)
        }
        LeaseOp::Finish { record, attempt, result } => {
            let live = live_attempt(tx, record.id, *attempt)?.is_some();
            if !live || !record.status.is_final() {
                return Ok(LeaseOutcome::Finished(false));
            }
            put_task(tx, record)?;
            if let Some(r) = result {
                put_result(tx, record.id, r)?;
            }
            LeaseOutcome::Finished(true)
        }
        LeaseOp::FinishReported { task, result } => {
            let Some(mut record) = live_attempt(tx, *task, result.attempt)? else {
                return Ok(LeaseOutcome::Finished(false));
            };
            record.status = status_of_result(&record.reasons, result);
            put_task(tx, &record)?;
            put_result(tx, *task, result)?;
            LeaseOutcome::Finished(true)
        }
        LeaseOp::Cancel { task, by, at_ms } => match locked_task(tx, *task)? {
            Some(mut t) if !t.status.is_final() => {
                t.status = TaskStatus::Cancelled { by: by.clone(), at_ms: *at_ms };
                put_task(tx, &t)?;
                LeaseOutcome::Cancelled(true)
            }
            _ => LeaseOutcome::Cancelled(false),
        },
        LeaseOp::Insert { record, lease } => {
            match insert_all(tx, &[(&**record, lease.as_ref())])?.first() {
                Some(id) => LeaseOutcome::Inserted(*id),
                None => return Err(Error::Store("no task id drawn".into())),
            }
        }
        LeaseOp::Beat { info, now_ms, lease_ms } => {
            let until_ms = now_ms.saturating_add(*lease_ms) as i64;
            tx.execute(
                "INSERT INTO vmx_coordinators (id, addr, pid, started_ms, seen_ms, until_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET seen_ms = $5, until_ms = $6",
                &[
                    &info.id,
                    &info.addr,
                    &i64::from(info.pid),
                    &(info.started_ms as i64),
                    &(*now_ms as i64),
                    &until_ms,
                ],
            )?;
            // Rows of coordinators silent for an hour go.
            tx.execute(
                "DELETE FROM vmx_coordinators WHERE until_ms < $1",
                &[&(now_ms.saturating_sub(3_600_000) as i64)],
            )?;
            let rows = tx.query(
                "UPDATE vmx_leases SET until_ms = $2 WHERE owner = $1 RETURNING task, attempt",
                &[&info.id, &until_ms],
            )?;
            LeaseOutcome::Held(
                rows.iter()
                    .map(|r| (TaskId(r.get::<_, i64>(0) as u64), r.get::<_, i32>(1) as u32))
                    .collect(),
            )
        }
        LeaseOp::Adopt { owner, tasks, now_ms, lease_ms } => {
            let until_ms = now_ms.saturating_add(*lease_ms);
            let mut claims = Vec::new();
            // Rows are locked in id order, as everywhere else.
            let mut tasks = tasks.clone();
            tasks.sort_unstable();
            for (task, attempt) in tasks {
                if let Some(record) = live_attempt(tx, task, attempt)? {
                    put_lease(tx, task, owner, attempt, until_ms)?;
                    claims.push(Claim { record, attempt });
                }
            }
            LeaseOutcome::Claimed(claims)
        }
        LeaseOp::Release { record, owner, attempt, retry_at_ms } => {
            if live_attempt(tx, record.id, *attempt)?.is_none() || record.status.is_final() {
                return Ok(LeaseOutcome::Released(false));
            }
            let holder = tx
                .query_opt(
                    "SELECT owner FROM vmx_leases WHERE task = $1",
                    &[&(record.id.0 as i64)],
                )?
                .map(|r| r.get::<_, String>(0));
            if holder.as_deref() != Some(owner.as_str()) {
                // Taken over by another coordinator (its worker failed over): not ours.
                return Ok(LeaseOutcome::Released(false));
            }
            put_task(tx, record)?;
            // Nobody's lease, expiring when the task may run again.
            put_lease(tx, record.id, "", *attempt, *retry_at_ms)?;
            LeaseOutcome::Released(true)
        }
    })
}

/// Applies a batch in one transaction. New tasks are inserted first, in one statement
/// (nothing else in the batch can refer to them; a claim in it may take them); the other
/// operations follow in order, runs of consecutive results as one group
/// ([`finish_group`]).
fn commit_batch(
    client: &mut Client,
    stmts: &mut HashMap<&'static str, Statement>,
    batch: &[(StoreOp, Option<OnCommit>)],
    outcomes: &mut Vec<LeaseOutcome>,
) -> Result<(), Error> {
    let tx = client.transaction().map_err(store_err)?;
    let mut tx = Tx { tx, stmts };
    let inserts: Vec<(&TaskRecord, Option<&(String, u64)>)> = batch
        .iter()
        .filter_map(|(op, _)| match op {
            StoreOp::Lease(LeaseOp::Insert { record, lease }, _) => {
                Some((&**record, lease.as_ref()))
            }
            _ => None,
        })
        .collect();
    let released =
        batch.iter().any(|(op, _)| matches!(op, StoreOp::Lease(LeaseOp::Release { .. }, _)));
    let mut queued = inserts.iter().any(|(_, lease)| lease.is_none()) || released;
    let mut inserted = insert_all(&mut tx, &inserts)?.into_iter();
    let mut out: Vec<Option<LeaseOutcome>> = (0..batch.len()).map(|_| None).collect();
    let mut group = Vec::new();
    for (i, (op, _)) in batch.iter().enumerate() {
        let is_result = matches!(
            op,
            StoreOp::Lease(LeaseOp::Finish { .. } | LeaseOp::FinishReported { .. }, _)
        );
        if !is_result && !group.is_empty() {
            finish_group(&mut tx, batch, &group, &mut out)?;
            group.clear();
        }
        match op {
            StoreOp::Barrier => {}
            StoreOp::PutImage(hash, bytes) => {
                tx.execute(
                    "INSERT INTO vmx_images (hash, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&&hash.0[..], &seal("images", &hash.0, bytes)],
                )?;
            }
            StoreOp::PutTask(rec) => {
                queued |= !rec.status.is_final();
                put_task(&mut tx, rec)?;
            }
            StoreOp::Finish(rec, result) => {
                put_task(&mut tx, rec)?;
                if let Some(r) = result {
                    put_result(&mut tx, rec.id, r)?;
                }
            }
            StoreOp::Lease(LeaseOp::Insert { .. }, _) => {
                let id = inserted.next().ok_or_else(|| Error::Store("no task id drawn".into()))?;
                out[i] = Some(LeaseOutcome::Inserted(id));
            }
            StoreOp::Lease(_, _) if is_result => group.push(i),
            StoreOp::Lease(op, _) => out[i] = Some(lease_op(&mut tx, op)?),
        }
    }
    if !group.is_empty() {
        finish_group(&mut tx, batch, &group, &mut out)?;
    }
    outcomes.extend(out.into_iter().flatten());
    if queued {
        tx.tx.batch_execute("NOTIFY vmx_tasks").map_err(store_err)?;
    }
    tx.tx.commit().map_err(store_err)
}

fn sealed_of<T: serde::de::DeserializeOwned>(
    table: &str,
    id: TaskId,
    bytes: Option<Vec<u8>>,
) -> Result<Option<T>, Error> {
    bytes.map(|b| unseal_value(table, id.0, &b)).transpose()
}

impl TaskStore for PgStore {
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
        self.read(move |c| {
            let row = c
                .query_opt("SELECT record FROM vmx_tasks WHERE id = $1", &[&(id.0 as i64)])
                .map_err(store_err)?;
            sealed_of("tasks", id, row.map(|r| r.get(0)))
        })
    }

    fn result(&self, id: TaskId) -> Result<Option<TaskResult>, Error> {
        self.read(move |c| {
            let row = c
                .query_opt("SELECT result FROM vmx_results WHERE task = $1", &[&(id.0 as i64)])
                .map_err(store_err)?;
            sealed_of("results", id, row.map(|r| r.get(0)))
        })
    }

    fn lease(&self, id: TaskId) -> Result<Option<Lease>, Error> {
        self.read(move |c| {
            let row = c
                .query_opt(
                    "SELECT owner, attempt, until_ms FROM vmx_leases WHERE task = $1",
                    &[&(id.0 as i64)],
                )
                .map_err(store_err)?;
            Ok(row.map(|r| Lease {
                owner: r.get(0),
                attempt: r.get::<_, i32>(1) as u32,
                until_ms: r.get::<_, i64>(2) as u64,
            }))
        })
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }

    fn shared(&self) -> bool {
        true
    }

    fn subscribe(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let (config, closed) = (self.config.clone(), self.closed.clone());
        match std::thread::Builder::new()
            .name("vmx-pg-listen".into())
            .spawn(move || listen(config, closed, wake))
        {
            Ok(t) => {
                if let Ok(mut threads) = self.threads.lock() {
                    threads.push(t);
                }
            }
            Err(e) => tracing::error!("cannot start the notification listener: {e}"),
        }
    }

    fn counts(&self, now_ms: u64) -> Result<TaskCounts, Error> {
        self.read(move |c| {
            let r = c
                .query_one(
                    "SELECT
                       count(*) FILTER (WHERE NOT t.final
                         AND (l.task IS NULL OR l.owner = '' OR l.until_ms <= $1)),
                       count(*) FILTER (WHERE NOT t.final
                         AND l.owner <> '' AND l.until_ms > $1),
                       count(*) FILTER (WHERE t.state = 'completed'),
                       count(*) FILTER (WHERE t.state = 'failed'),
                       count(*) FILTER (WHERE t.state = 'cancelled')
                     FROM vmx_tasks t LEFT JOIN vmx_leases l ON l.task = t.id",
                    &[&(now_ms as i64)],
                )
                .map_err(store_err)?;
            let n = |i: usize| r.get::<_, i64>(i) as u64;
            Ok(TaskCounts {
                queued: n(0),
                running: n(1),
                completed: n(2),
                failed: n(3),
                cancelled: n(4),
            })
        })
    }

    fn coordinators(&self) -> Result<Vec<CoordinatorInfo>, Error> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT id, addr, pid, started_ms, seen_ms, until_ms FROM vmx_coordinators
                     ORDER BY started_ms, id",
                    &[],
                )
                .map_err(store_err)?;
            Ok(rows
                .iter()
                .map(|r| CoordinatorInfo {
                    id: r.get(0),
                    addr: r.get(1),
                    pid: r.get::<_, i64>(2) as u32,
                    started_ms: r.get::<_, i64>(3) as u64,
                    seen_ms: r.get::<_, i64>(4) as u64,
                    until_ms: r.get::<_, i64>(5) as u64,
                })
                .collect())
        })
    }

    fn image(&self, hash: ImageHash) -> Result<Option<Vec<u8>>, Error> {
        self.read(move |c| {
            let row = c
                .query_opt("SELECT bytes FROM vmx_images WHERE hash = $1", &[&&hash.0[..]])
                .map_err(store_err)?;
            let Some(row) = row else { return Ok(None) };
            let bytes = unseal("images", &hash.0, row.get(0))?;
            if ImageHash::of(bytes) != hash {
                return Err(damaged(format!("image {hash} does not match its hash")));
            }
            Ok(Some(bytes.to_vec()))
        })
    }

    fn finals(&self, ids: &[TaskId]) -> Result<Vec<(TaskId, Option<Final>)>, Error> {
        let ids: Vec<i64> = ids.iter().map(|t| t.0 as i64).collect();
        self.read(move |c| {
            let rows = c
                .query(
                    "SELECT t.id, t.final, CASE WHEN t.final THEN t.record END, r.result
                     FROM vmx_tasks t LEFT JOIN vmx_results r ON r.task = t.id
                     WHERE t.id = ANY($1)",
                    &[&ids],
                )
                .map_err(store_err)?;
            let mut out = Vec::new();
            for row in rows {
                let id = TaskId(row.get::<_, i64>(0) as u64);
                if !row.get::<_, bool>(1) {
                    out.push((id, None));
                    continue;
                }
                let rec: TaskRecord = unseal_value("tasks", id.0, row.get(2))?;
                let result = sealed_of("results", id, row.get(3))?;
                out.push((id, Some((rec, result))));
            }
            Ok(out)
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        self.tx = None;
        self.reads = None;
        let threads = self.threads.get_mut().map(std::mem::take).unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
    }
}
