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
//! # Driver and threads
//! The store talks to PostgreSQL with `tokio-postgres`, its connections kept in a
//! `deadpool-postgres` pool. The coordinator calls the [`TaskStore`] trait synchronously
//! (operations with callbacks, blocking reads from `spawn_blocking` threads), so the store
//! owns a small tokio runtime of its own (one worker thread, `vmx-pg`) on which every
//! PostgreSQL future runs: the writer task, the notification listener and each read. A
//! blocking read sends its future to that runtime and waits on a channel, so it works from
//! any thread that may block. Callbacks run in commit order on the writer task (no
//! thread hop between a commit and its callbacks); one that reads the store blocks in
//! place (`block_in_place`: the runtime's worker moves to another thread meanwhile).
//! Dropping the store lets the writer finish what is queued and its callbacks run, then
//! stops the runtime (on a helper thread if dropped on the runtime itself).
//!
//! # Invariants (besides those of every [`TaskStore`])
//! - One writer task, holding one pooled connection, applies operations in order, every
//!   operation waiting in one transaction (group commit); callbacks run after `COMMIT`
//!   returned. Independent statements of a transaction are sent together (pipelined) and
//!   every statement is prepared once per connection. With `durable: false` every
//!   connection starts with `synchronous_commit = off`.
//! - Reads take another connection from the pool, so they never wait behind a commit.
//! - Claims lock the rows they take with `FOR UPDATE SKIP LOCKED`: coordinators sharing a
//!   database never claim the same task at once, and never wait on each other's claims.
//! - A transaction that queued tasks (inserted, or gave one back) sends `NOTIFY vmx_tasks`
//!   (delivered at commit); [`TaskStore::subscribe`] listens on a connection of its own
//!   outside the pool (notifications arrive through its `poll_message` stream),
//!   re-established when lost (and calls its callback then, for work queued meanwhile).
//! - Any number of coordinators share a database: ids come from `vmx_task_ids`, and every
//!   change to a task's attempt (claim, finish, adopt, release) first locks its row, so the
//!   attempt fence (`attempts` in the stored record) is checked and changed atomically.
//!   A lease whose owner renews it through a `Beat` racing a claim of the expired lease can
//!   lose it: the `Beat`'s answer then lacks it, and the owner drops the task.
//! - A lost connection fails the operations of the batch in flight (their callbacks get the
//!   error, nothing is acknowledged) and is re-established for the next batch; a read that
//!   failed because its connection was lost is tried once more on a fresh one.

use super::{
    damaged, seal, seal_value, status_of_result, unseal, unseal_value, Claim, Final, Lease,
    LeaseOp, LeaseOutcome, OnCommit, Recovered, StoreOp, StoreStats, TaskRecord, TaskStore,
    MAX_BATCH,
};
use crate::protocol::{CoordinatorInfo, ImageHash, TaskCounts, TaskId, TaskResult, TaskStatus};
use crate::Error;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use futures_util::future::{try_join, try_join3};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc as ampsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, NoTls, Row, Statement};

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
fn pg_err(e: &tokio_postgres::Error) -> String {
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

fn store_err(e: tokio_postgres::Error) -> Error {
    Error::Store(pg_err(&e))
}

/// Why the pool gave no connection, as one line.
fn pool_err(e: &PoolError) -> String {
    match e {
        PoolError::Backend(e) => pg_err(e),
        PoolError::Timeout(_) => "timed out waiting for a connection".into(),
        e => e.to_string(),
    }
}

/// Where a URL points, without its password (for messages).
fn shown(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("?");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}")
}

fn parse(url: &str, options: &PgOptions) -> Result<tokio_postgres::Config, Error> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        Error::Store(format!("not a PostgreSQL URL (postgres://USER@HOST:PORT/DB): {}", pg_err(&e)))
    })?;
    config.connect_timeout(options.connect_timeout);
    config.application_name("vmx");
    if !options.durable {
        config.options("-c synchronous_commit=off");
    }
    Ok(config)
}

/// Most connections in the pool: the writer's and a few concurrent reads.
const POOL_SIZE: usize = 4;

/// The store's runtime: one worker thread runs every PostgreSQL future.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(4)
        .thread_name("vmx-pg")
        .on_thread_start(|| ON_STORE_RUNTIME.set(true))
        .enable_all()
        .build()
        .map_err(|e| Error::Store(format!("cannot start the store's runtime: {e}")))
}

/// A pool of connections to `config` (none opened yet). Must be built inside the runtime.
fn pool(config: &tokio_postgres::Config, options: &PgOptions) -> Result<Pool, Error> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .create_timeout(Some(options.connect_timeout))
        .wait_timeout(Some(options.connect_timeout.saturating_mul(4)))
        .build()
        .map_err(|e| Error::Store(format!("cannot build the connection pool: {e}")))
}

/// A connection from the pool.
async fn connect(pool: &Pool, config: &tokio_postgres::Config) -> Result<Object, Error> {
    pool.get()
        .await
        .map_err(|e| Error::Store(format!("cannot connect to {}: {}", shown(config), pool_err(&e))))
}

/// The schema version of the database (0: none).
async fn schema_version(client: &Client) -> Result<i32, Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('vmx_schema') IS NOT NULL", &[])
        .await
        .map_err(store_err)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM vmx_schema", &[])
        .await
        .map_err(store_err)?;
    Ok(row.get(0))
}

/// Brings the schema to the latest version (or checks it is, without `migrate`).
async fn migrate(
    client: &mut Object,
    config: &tokio_postgres::Config,
    migrate: bool,
) -> Result<(), Error> {
    let latest = MIGRATIONS.len() as i32;
    let where_ = shown(config);
    let newer = |v: i32| {
        Error::Store(format!(
            "the database at {where_} has schema version {v}, newer than this vmx knows ({latest}): upgrade vmx"
        ))
    };
    let current = schema_version(client).await?;
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
    let tx = client.transaction().await.map_err(store_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(|e| {
        Error::Store(format!("cannot migrate the schema at {where_}: {}", pg_err(&e)))
    })?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS vmx_schema (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            by_vmx TEXT NOT NULL
        )",
    )
    .await
    .map_err(|e| {
        use tokio_postgres::error::SqlState;
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
        .await
        .map_err(store_err)?
        .get(0);
    if current > latest {
        return Err(newer(current));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql).await.map_err(|e| {
            Error::Store(format!("migration {version} failed at {where_}: {}", pg_err(&e)))
        })?;
        tx.execute(
            "INSERT INTO vmx_schema (version, by_vmx) VALUES ($1, $2)",
            &[&version, &env!("CARGO_PKG_VERSION")],
        )
        .await
        .map_err(store_err)?;
        tracing::info!("schema of {where_} migrated to version {version}");
    }
    tx.commit().await.map_err(store_err)
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
async fn fill_states(client: &Client) -> Result<(), Error> {
    let rows = client
        .query("SELECT id, record FROM vmx_tasks WHERE state IS NULL", &[])
        .await
        .map_err(store_err)?;
    for row in rows {
        let id: i64 = row.get(0);
        let rec: TaskRecord = unseal_value("tasks", id as u64, row.get(1))?;
        client
            .execute(
                "UPDATE vmx_tasks SET state = $2 WHERE id = $1",
                &[&id, &state_of(&rec.status)],
            )
            .await
            .map_err(store_err)?;
    }
    Ok(())
}

/// Reads every image (and, with `tasks`, every task), checking every seal.
async fn recover(client: &Client, tasks: bool) -> Result<Recovered, Error> {
    let mut recovered = Recovered::default();
    let sql = if tasks {
        "SELECT id, record FROM vmx_tasks ORDER BY id"
    } else {
        "SELECT 0::BIGINT, ''::BYTEA WHERE false"
    };
    for row in client.query(sql, &[]).await.map_err(store_err)? {
        let id: i64 = row.get(0);
        let bytes: &[u8] = row.get(1);
        let rec: TaskRecord = unseal_value("tasks", id as u64, bytes)?;
        if rec.id.0 != id as u64 {
            return Err(damaged(format!("the record under task {id} is task {}", rec.id.0)));
        }
        recovered.tasks.push(rec);
    }
    for row in client.query("SELECT hash, bytes FROM vmx_images", &[]).await.map_err(store_err)? {
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

/// The PostgreSQL store. See the module docs.
pub struct PgStore {
    /// The store's runtime (`None` once dropped).
    rt: Option<tokio::runtime::Runtime>,
    tx: Option<ampsc::UnboundedSender<(StoreOp, Option<OnCommit>)>>,
    /// Says when the writer applied everything queued, ran its callbacks and stopped.
    writer_done: Mutex<Option<mpsc::Receiver<()>>>,
    pool: Pool,
    stats: Arc<StoreStats>,
    shown: String,
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("db", &self.shown).field("stats", &self.stats).finish()
    }
}

/// Runs `fut` on `rt` and waits for its outcome on this thread (which must be allowed to
/// block, and must not be one of `rt`'s).
fn run_on<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = mpsc::channel();
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    let r = if ON_STORE_RUNTIME.get() {
        // A callback reading the store: the runtime's worker moves to another thread while
        // this one waits.
        tokio::task::block_in_place(|| rx.recv())
    } else {
        rx.recv()
    };
    r.map_err(|_| Error::Closed)?
}

thread_local! {
    /// Whether this thread is one of a store runtime's.
    static ON_STORE_RUNTIME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl PgStore {
    /// Connects to `url`, migrates (or checks) the schema and reads back what the database
    /// holds (see [`PgOptions::load_tasks`]). Blocking: call it from a thread that may
    /// block (outside an async runtime's threads, or in `spawn_blocking`).
    pub fn open(url: &str, options: PgOptions) -> Result<(PgStore, Recovered), Error> {
        let config = parse(url, &options)?;
        let shown = shown(&config);
        let rt = runtime()?;
        let pool = {
            let _guard = rt.enter();
            pool(&config, &options)?
        };
        let (config2, options2, pool2) = (config.clone(), options.clone(), pool.clone());
        let (write_conn, recovered) = run_on(&rt, async move {
            let mut conn = connect(&pool2, &config2).await?;
            migrate(&mut conn, &config2, options2.migrate).await?;
            fill_states(&conn).await?;
            let recovered = recover(&conn, options2.load_tasks).await?;
            Ok((conn, recovered))
        })?;
        let stats = Arc::new(StoreStats::default());
        let (tx, rx) = ampsc::unbounded_channel::<(StoreOp, Option<OnCommit>)>();
        let (done_tx, done_rx) = mpsc::channel();
        rt.spawn(writer(
            rx,
            Some(write_conn),
            pool.clone(),
            config.clone(),
            stats.clone(),
            done_tx,
        ));
        Ok((
            PgStore {
                rt: Some(rt),
                tx: Some(tx),
                writer_done: Mutex::new(Some(done_rx)),
                pool,
                stats,
                shown,
                config,
            },
            recovered,
        ))
    }

    /// Connects to `url` and brings its schema to this vmx's version; returns the version.
    pub fn migrate_only(url: &str, options: PgOptions) -> Result<i32, Error> {
        let config = parse(url, &options)?;
        let rt = runtime()?;
        let pool = {
            let _guard = rt.enter();
            pool(&config, &options)?
        };
        let r = run_on(&rt, async move {
            let mut client = connect(&pool, &config).await?;
            migrate(&mut client, &config, true).await?;
            schema_version(&client).await
        });
        rt.shutdown_background();
        r
    }

    fn rt(&self) -> Result<&tokio::runtime::Runtime, Error> {
        self.rt.as_ref().ok_or(Error::Closed)
    }

    /// Runs the read `f` on a pooled connection and waits for it; once more on a fresh
    /// connection if the first attempt failed because its connection was lost (reads are
    /// idempotent). `f`'s outer error is PostgreSQL's, its inner one the store's (a damaged
    /// value).
    fn read<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Fn(Object) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Result<T, Error>, tokio_postgres::Error>> + Send,
    {
        let (pool, config) = (self.pool.clone(), self.config.clone());
        run_on(self.rt()?, async move {
            let r = f(connect(&pool, &config).await?).await;
            match r {
                Err(e) if e.is_closed() || e.as_db_error().is_none() => {
                    f(connect(&pool, &config).await?).await.map_err(store_err)?
                }
                r => r.map_err(store_err)?,
            }
        })
    }
}

/// The listener of [`TaskStore::subscribe`]: `LISTEN vmx_tasks` on a connection of its own
/// (re-established when lost), calling `wake` for every burst of notifications. Runs until
/// the store's runtime stops.
async fn listen(config: tokio_postgres::Config, wake: Box<dyn Fn() + Send + Sync>) {
    use futures_util::StreamExt;
    let mut warned = false;
    loop {
        let (client, mut conn) = match config.connect(NoTls).await {
            Ok(c) => c,
            Err(e) => {
                if !warned {
                    tracing::warn!("task store: cannot listen for new work: {}", pg_err(&e));
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        // The connection is driven here; its notifications come through this channel.
        let (ntx, mut nrx) = ampsc::unbounded_channel::<()>();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(m) = messages.next().await {
                match m {
                    Ok(AsyncMessage::Notification(_)) => {
                        if ntx.send(()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(
                            "task store: the notification connection ended: {}",
                            pg_err(&e)
                        );
                        return;
                    }
                }
            }
            tracing::warn!("task store: the notification connection ended");
        });
        if let Err(e) = client.batch_execute("LISTEN vmx_tasks").await {
            if !warned {
                tracing::warn!("task store: cannot listen for new work: {}", pg_err(&e));
                warned = true;
            }
            driver.abort();
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        if warned {
            tracing::info!("task store: listening for new work again");
            warned = false;
        }
        // Work queued while nobody listened.
        wake();
        while nrx.recv().await.is_some() {
            // One wake for every notification already here.
            while nrx.try_recv().is_ok() {}
            wake();
        }
        drop(client);
    }
}

/// The writer task: applies batches of operations in order until the store is dropped
/// (its sender closed), then says so on `done`.
async fn writer(
    mut rx: ampsc::UnboundedReceiver<(StoreOp, Option<OnCommit>)>,
    mut conn: Option<Object>,
    pool: Pool,
    config: tokio_postgres::Config,
    stats: Arc<StoreStats>,
    done: mpsc::Sender<()>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        write_batch(&mut conn, &pool, &config, batch, &stats).await;
    }
    let _ = done.send(());
}

/// Applies a batch in one transaction (reconnecting first if the connection was lost),
/// then runs its callbacks and answers its lease operations.
async fn write_batch(
    conn: &mut Option<Object>,
    pool: &Pool,
    config: &tokio_postgres::Config,
    batch: Vec<(StoreOp, Option<OnCommit>)>,
    stats: &StoreStats,
) {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        // A closed connection is not recycled: the pool opens a new one.
        *conn = None;
        *conn = match connect(pool, config).await {
            Ok(c) => {
                tracing::info!("task store: connected to {}", shown(config));
                Some(c)
            }
            Err(e) => {
                tracing::error!("task store: {e}");
                None
            }
        };
    }
    let n = batch.len();
    let (items, dones) = split(batch);
    let mut outcomes = Vec::new();
    let outcome = match conn.as_mut() {
        None => Err(format!("cannot reach the database at {}", shown(config))),
        Some(c) => commit_batch(c, &items, &mut outcomes)
            .await
            .map_err(|e| format!("the database at {} did not commit: {e}", shown(config))),
    };
    if let Err(e) = &outcome {
        tracing::error!("task store commit of {n} operations failed: {e}");
    }
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.ops.fetch_add(n as u64, Ordering::Relaxed);
    run_callbacks(dones, outcome, outcomes);
}

/// Runs a batch's callbacks: each lease operation's reply, then its commit callback.
fn run_callbacks(dones: Vec<Done>, outcome: Result<(), String>, outcomes: Vec<LeaseOutcome>) {
    let mut outcomes = outcomes.into_iter();
    for (reply, cb) in dones {
        if let Some(reply) = reply {
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

/// An operation of a batch without its callbacks (those are `Send` but not `Sync`, so
/// they stay with the writer, outside the transaction's future).
enum Item {
    PutImage(ImageHash, Arc<Vec<u8>>),
    PutTask(TaskRecord),
    Finish(TaskRecord, Option<TaskResult>),
    Lease(LeaseOp),
    Barrier,
}

/// A batch's operations, and their callbacks (the reply of a lease operation, the commit
/// callback) in the same order.
fn split(batch: Vec<(StoreOp, Option<OnCommit>)>) -> (Vec<Item>, Vec<Done>) {
    batch
        .into_iter()
        .map(|(op, cb)| {
            let (item, reply) = match op {
                StoreOp::PutImage(h, b) => (Item::PutImage(h, b), None),
                StoreOp::PutTask(r) => (Item::PutTask(r), None),
                StoreOp::Finish(r, res) => (Item::Finish(r, res), None),
                StoreOp::Lease(op, reply) => (Item::Lease(op), Some(reply)),
                StoreOp::Barrier => (Item::Barrier, None),
            };
            (item, (reply, cb))
        })
        .unzip()
}

/// The callbacks of one operation.
type Done = (Option<super::LeaseReply>, Option<OnCommit>);

/// A statement's parameters.
type Params<'p> = [&'p (dyn ToSql + Sync)];

/// The writer's transaction: each statement is prepared once per connection (the pool's
/// statement cache), then only bound and executed. Its methods take `&self`, so
/// independent statements can be awaited together (`try_join!`) and go out pipelined.
struct Tx<'a> {
    tx: deadpool_postgres::Transaction<'a>,
}

impl Tx<'_> {
    async fn stmt(&self, sql: &'static str) -> Result<Statement, Error> {
        self.tx.prepare_cached(sql).await.map_err(store_err)
    }

    async fn execute(&self, sql: &'static str, params: &Params<'_>) -> Result<u64, Error> {
        let s = self.stmt(sql).await?;
        self.tx.execute(&s, params).await.map_err(store_err)
    }

    async fn query(&self, sql: &'static str, params: &Params<'_>) -> Result<Vec<Row>, Error> {
        let s = self.stmt(sql).await?;
        self.tx.query(&s, params).await.map_err(store_err)
    }

    async fn query_opt(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, Error> {
        let s = self.stmt(sql).await?;
        self.tx.query_opt(&s, params).await.map_err(store_err)
    }
}

async fn put_task(tx: &Tx<'_>, rec: &TaskRecord) -> Result<(), Error> {
    let id = rec.id.0 as i64;
    let sealed = seal_value("tasks", rec.id.0, rec)?;
    let final_ = rec.status.is_final();
    tx.execute(
        "INSERT INTO vmx_tasks (id, record, final, attempts, state) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET record = $2, final = $3, attempts = $4, state = $5",
        &[&id, &sealed, &final_, &(rec.attempts as i32), &state_of(&rec.status)],
    )
    .await?;
    if final_ {
        tx.execute("DELETE FROM vmx_leases WHERE task = $1", &[&id]).await?;
    }
    Ok(())
}

async fn put_result(tx: &Tx<'_>, id: TaskId, r: &TaskResult) -> Result<(), Error> {
    let sealed = seal_value("results", id.0, r)?;
    tx.execute(
        "INSERT INTO vmx_results (task, result) VALUES ($1, $2)
         ON CONFLICT (task) DO UPDATE SET result = $2",
        &[&(id.0 as i64), &sealed],
    )
    .await?;
    Ok(())
}

async fn put_lease(
    tx: &Tx<'_>,
    id: TaskId,
    owner: &str,
    attempt: u32,
    until_ms: u64,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO vmx_leases (task, owner, attempt, until_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (task) DO UPDATE SET owner = $2, attempt = $3, until_ms = $4",
        &[&(id.0 as i64), &owner, &(attempt as i32), &(until_ms as i64)],
    )
    .await?;
    Ok(())
}

/// A task's record, locked for this transaction.
async fn locked_task(tx: &Tx<'_>, id: TaskId) -> Result<Option<TaskRecord>, Error> {
    let row = tx
        .query_opt("SELECT record FROM vmx_tasks WHERE id = $1 FOR UPDATE", &[&(id.0 as i64)])
        .await?;
    row.map(|r| unseal_value("tasks", id.0, r.get::<_, &[u8]>(0))).transpose()
}

/// The task's record, locked, if `attempt` is its current attempt and it is not final: the
/// fence every result, adoption and release passes.
async fn live_attempt(tx: &Tx<'_>, id: TaskId, attempt: u32) -> Result<Option<TaskRecord>, Error> {
    Ok(locked_task(tx, id).await?.filter(|t| !t.status.is_final() && t.attempts == attempt))
}

/// Inserts new queued tasks in one statement, with ids drawn from the sequence; those with
/// a lease get attempt 1 and their lease in a second statement.
async fn insert_all(
    tx: &Tx<'_>,
    records: &[(&TaskRecord, Option<&(String, u64)>)],
) -> Result<Vec<TaskId>, Error> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = tx
        .query(
            "SELECT nextval('vmx_task_ids') FROM generate_series(1, $1::BIGINT)",
            &[&(records.len() as i64)],
        )
        .await?
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
    // The leases go out pipelined behind the tasks (the server runs them in order).
    let tasks = async {
        tx.execute(
            "INSERT INTO vmx_tasks (id, record, final, attempts, state)
         SELECT u.id, u.record, false, u.attempts, 'queued'
         FROM unnest($1::BIGINT[], $2::BYTEA[], $3::INT[]) AS u(id, record, attempts)",
            &[&ids, &sealed, &attempts],
        )
        .await
    };
    let leases = async {
        if l_ids.is_empty() {
            return Ok(0);
        }
        tx.execute(
            "INSERT INTO vmx_leases (task, owner, attempt, until_ms)
             SELECT u.task, u.owner, 1, u.until_ms
             FROM unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[]) AS u(task, owner, until_ms)",
            &[&l_ids, &l_owners, &l_until],
        )
        .await
    };
    try_join(tasks, leases).await?;
    Ok(ids.into_iter().map(|id| TaskId(id as u64)).collect())
}

/// Applies consecutive `Finish` and `FinishReported` operations (`group`: their indices in
/// `batch`) with a few statements: their rows locked in id order, each fenced in turn (a
/// second result for a task in the same group sees it final), then every write at once.
async fn finish_group(
    tx: &Tx<'_>,
    batch: &[Item],
    group: &[usize],
    outcomes: &mut [Option<LeaseOutcome>],
) -> Result<(), Error> {
    let mut ids: Vec<i64> = group
        .iter()
        .filter_map(|&i| match &batch[i] {
            Item::Lease(LeaseOp::Finish { record, .. }) => Some(record.id.0 as i64),
            Item::Lease(LeaseOp::FinishReported { task, .. }) => Some(task.0 as i64),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut current: HashMap<u64, TaskRecord> = HashMap::new();
    for row in tx
        .query(
            "SELECT id, record FROM vmx_tasks WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&ids],
        )
        .await?
    {
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
        let Item::Lease(op) = &batch[i] else { continue };
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
    // The three writes go out together (pipelined; the rows are locked already).
    let tasks = async {
        tx.execute(
            "UPDATE vmx_tasks t SET record = u.record, final = true, attempts = u.attempts,
           state = u.state
         FROM unnest($1::BIGINT[], $2::BYTEA[], $3::INT[], $4::TEXT[])
           AS u(id, record, attempts, state)
         WHERE t.id = u.id",
            &[&w_ids, &w_recs, &w_attempts, &w_states],
        )
        .await
    };
    let leases =
        async { tx.execute("DELETE FROM vmx_leases WHERE task = ANY($1)", &[&w_ids]).await };
    let results = async {
        if r_ids.is_empty() {
            return Ok(0);
        }
        tx.execute(
            "INSERT INTO vmx_results (task, result)
             SELECT * FROM unnest($1::BIGINT[], $2::BYTEA[])
             ON CONFLICT (task) DO UPDATE SET result = EXCLUDED.result",
            &[&r_ids, &r_vals],
        )
        .await
    };
    try_join3(tasks, leases, results).await?;
    Ok(())
}

async fn lease_op(tx: &Tx<'_>, op: &LeaseOp) -> Result<LeaseOutcome, Error> {
    Ok(match op {
        LeaseOp::Claim { owner, now_ms, lease_ms, max } => {
            let rows = tx
                .query(
                    "SELECT t.id, t.record FROM vmx_tasks t
                 LEFT JOIN vmx_leases l ON l.task = t.id
                 WHERE NOT t.final AND (l.task IS NULL OR l.until_ms <= $1)
                 ORDER BY t.id LIMIT $2
                 FOR UPDATE OF t SKIP LOCKED",
                    &[&(*now_ms as i64), &(*max as i64)],
                )
                .await?;
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
                let tasks = async {
                    tx.execute(
                        "UPDATE vmx_tasks t SET record = u.record, attempts = u.attempts
                     FROM unnest($1::BIGINT[], $2::BYTEA[], $3::INT[]) AS u(id, record, attempts)
                     WHERE t.id = u.id",
                        &[&ids, &recs, &attempts],
                    )
                    .await
                };
                let leases = async {
                    tx.execute(
                        "INSERT INTO vmx_leases (task, owner, attempt, until_ms)
                     SELECT u.task, $3, u.attempt, $4
                     FROM unnest($1::BIGINT[], $2::INT[]) AS u(task, attempt)
                     ON CONFLICT (task) DO UPDATE SET owner = EXCLUDED.owner,
                       attempt = EXCLUDED.attempt, until_ms = EXCLUDED.until_ms",
                        &[&ids, &attempts, owner, &until_ms],
                    )
                    .await
                };
                try_join(tasks, leases).await?;
            }
            LeaseOutcome::Claimed(claims)
        }
        LeaseOp::Renew { task, owner, attempt, now_ms, lease_ms } => {
            let n = tx
                .execute(
                    "UPDATE vmx_leases l SET until_ms = $4 FROM vmx_tasks t
                 WHERE l.task = $1 AND l.owner = $2 AND l.attempt = $3
                   AND t.id = l.task AND NOT t.final",
                    &[
                        &(task.0 as i64),
                        owner,
                        &(*attempt as i32),
                        &(now_ms.saturating_add(*lease_ms) as i64),
                    ],
                )
                .await?;
            LeaseOutcome::Renewed(n == 1)
        }
        LeaseOp::Finish { record, attempt, result } => {
            let live = live_attempt(tx, record.id, *attempt).await?.is_some();
            if !live || !record.status.is_final() {
                return Ok(LeaseOutcome::Finished(false));
            }
            put_task(tx, record).await?;
            if let Some(r) = result {
                put_result(tx, record.id, r).await?;
            }
            LeaseOutcome::Finished(true)
        }
        LeaseOp::FinishReported { task, result } => {
            let Some(mut record) = live_attempt(tx, *task, result.attempt).await? else {
                return Ok(LeaseOutcome::Finished(false));
            };
            record.status = status_of_result(&record.reasons, result);
            put_task(tx, &record).await?;
            put_result(tx, *task, result).await?;
            LeaseOutcome::Finished(true)
        }
        LeaseOp::Cancel { task, by, at_ms } => match locked_task(tx, *task).await? {
            Some(mut t) if !t.status.is_final() => {
                t.status = TaskStatus::Cancelled { by: by.clone(), at_ms: *at_ms };
                put_task(tx, &t).await?;
                LeaseOutcome::Cancelled(true)
            }
            _ => LeaseOutcome::Cancelled(false),
        },
        LeaseOp::Insert { record, lease } => {
            match insert_all(tx, &[(&**record, lease.as_ref())]).await?.first() {
                Some(id) => LeaseOutcome::Inserted(*id),
                None => return Err(Error::Store("no task id drawn".into())),
            }
        }
        LeaseOp::Beat { info, now_ms, lease_ms, waiting, waiting_ms } => {
            let until_ms = now_ms.saturating_add(*lease_ms) as i64;
            let waiting_until = now_ms.saturating_add(*waiting_ms) as i64;
            let waiting: Vec<i64> = waiting.iter().map(|t| t.0 as i64).collect();
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
                    &waiting_until,
                ],
            )
            .await?;
            // Rows of coordinators silent for an hour go.
            tx.execute(
                "DELETE FROM vmx_coordinators WHERE until_ms < $1",
                &[&(now_ms.saturating_sub(3_600_000) as i64)],
            )
            .await?;
            let rows = tx
                .query(
                    "UPDATE vmx_leases
                     SET until_ms =
                       CASE WHEN task = ANY($3::BIGINT[]) THEN $4::BIGINT ELSE $2::BIGINT END
                     WHERE owner = $1 RETURNING task, attempt",
                    &[&info.id, &until_ms, &waiting, &waiting_until],
                )
                .await?;
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
                if let Some(record) = live_attempt(tx, task, attempt).await? {
                    put_lease(tx, task, owner, attempt, until_ms).await?;
                    claims.push(Claim { record, attempt });
                }
            }
            LeaseOutcome::Claimed(claims)
        }
        LeaseOp::Release { record, owner, attempt, retry_at_ms } => {
            if live_attempt(tx, record.id, *attempt).await?.is_none() || record.status.is_final() {
                return Ok(LeaseOutcome::Released(false));
            }
            let holder = tx
                .query_opt("SELECT owner FROM vmx_leases WHERE task = $1", &[&(record.id.0 as i64)])
                .await?
                .map(|r| r.get::<_, String>(0));
            if holder.as_deref() != Some(owner.as_str()) {
                // Taken over by another coordinator (its worker failed over): not ours.
                return Ok(LeaseOutcome::Released(false));
            }
            put_task(tx, record).await?;
            // Nobody's lease, expiring when the task may run again.
            put_lease(tx, record.id, "", *attempt, *retry_at_ms).await?;
            LeaseOutcome::Released(true)
        }
    })
}

/// Applies a batch in one transaction. New tasks are inserted first, in one statement
/// (nothing else in the batch can refer to them; a claim in it may take them); the other
/// operations follow in order, runs of consecutive results as one group
/// ([`finish_group`]).
async fn commit_batch(
    client: &mut Object,
    batch: &[Item],
    outcomes: &mut Vec<LeaseOutcome>,
) -> Result<(), Error> {
    let tx = Tx { tx: client.transaction().await.map_err(store_err)? };
    let inserts: Vec<(&TaskRecord, Option<&(String, u64)>)> = batch
        .iter()
        .filter_map(|op| match op {
            Item::Lease(LeaseOp::Insert { record, lease }) => Some((&**record, lease.as_ref())),
            _ => None,
        })
        .collect();
    let released = batch.iter().any(|op| matches!(op, Item::Lease(LeaseOp::Release { .. })));
    let mut queued = inserts.iter().any(|(_, lease)| lease.is_none()) || released;
    let mut inserted = insert_all(&tx, &inserts).await?.into_iter();
    let mut out: Vec<Option<LeaseOutcome>> = (0..batch.len()).map(|_| None).collect();
    let mut group = Vec::new();
    for (i, op) in batch.iter().enumerate() {
        let is_result =
            matches!(op, Item::Lease(LeaseOp::Finish { .. } | LeaseOp::FinishReported { .. }));
        if !is_result && !group.is_empty() {
            finish_group(&tx, batch, &group, &mut out).await?;
            group.clear();
        }
        match op {
            Item::Barrier => {}
            Item::PutImage(hash, bytes) => {
                tx.execute(
                    "INSERT INTO vmx_images (hash, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&&hash.0[..], &seal("images", &hash.0, bytes)],
                )
                .await?;
            }
            Item::PutTask(rec) => {
                queued |= !rec.status.is_final();
                put_task(&tx, rec).await?;
            }
            Item::Finish(rec, result) => {
                put_task(&tx, rec).await?;
                if let Some(r) = result {
                    put_result(&tx, rec.id, r).await?;
                }
            }
            Item::Lease(LeaseOp::Insert { .. }) => {
                let id = inserted.next().ok_or_else(|| Error::Store("no task id drawn".into()))?;
                out[i] = Some(LeaseOutcome::Inserted(id));
            }
            Item::Lease(_) if is_result => group.push(i),
            Item::Lease(op) => out[i] = Some(lease_op(&tx, op).await?),
        }
    }
    if !group.is_empty() {
        finish_group(&tx, batch, &group, &mut out).await?;
    }
    outcomes.extend(out.into_iter().flatten());
    if queued {
        tx.tx.batch_execute("NOTIFY vmx_tasks").await.map_err(store_err)?;
    }
    tx.tx.commit().await.map_err(store_err)
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
        if let Err(ampsc::error::SendError((op, cb))) = tx.send((op, on_commit)) {
            if let StoreOp::Lease(_, reply) = op {
                reply(Err("the store is closed".into()));
            }
            if let Some(cb) = cb {
                cb(Err("the store is closed".into()));
            }
        }
    }

    fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        self.read(move |c| async move {
            let row = c
                .query_opt("SELECT record FROM vmx_tasks WHERE id = $1", &[&(id.0 as i64)])
                .await?;
            Ok(sealed_of("tasks", id, row.map(|r| r.get(0))))
        })
    }

    fn result(&self, id: TaskId) -> Result<Option<TaskResult>, Error> {
        self.read(move |c| async move {
            let row = c
                .query_opt("SELECT result FROM vmx_results WHERE task = $1", &[&(id.0 as i64)])
                .await?;
            Ok(sealed_of("results", id, row.map(|r| r.get(0))))
        })
    }

    fn lease(&self, id: TaskId) -> Result<Option<Lease>, Error> {
        self.read(move |c| async move {
            let row = c
                .query_opt(
                    "SELECT owner, attempt, until_ms FROM vmx_leases WHERE task = $1",
                    &[&(id.0 as i64)],
                )
                .await?;
            Ok(Ok(row.map(|r| Lease {
                owner: r.get(0),
                attempt: r.get::<_, i32>(1) as u32,
                until_ms: r.get::<_, i64>(2) as u64,
            })))
        })
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }

    fn shared(&self) -> bool {
        true
    }

    fn subscribe(&self, wake: Box<dyn Fn() + Send + Sync>) {
        match self.rt() {
            Ok(rt) => drop(rt.spawn(listen(self.config.clone(), wake))),
            Err(e) => tracing::error!("cannot start the notification listener: {e}"),
        }
    }

    fn counts(&self, now_ms: u64) -> Result<TaskCounts, Error> {
        self.read(move |c| async move {
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
                .await?;
            let n = |i: usize| r.get::<_, i64>(i) as u64;
            Ok(Ok(TaskCounts {
                queued: n(0),
                running: n(1),
                completed: n(2),
                failed: n(3),
                cancelled: n(4),
            }))
        })
    }

    fn unfinished(&self) -> Result<u64, Error> {
        self.read(|c| async move {
            let r = c.query_one("SELECT count(*) FROM vmx_tasks WHERE NOT final", &[]).await?;
            Ok(Ok(r.get::<_, i64>(0) as u64))
        })
    }

    fn coordinators(&self) -> Result<Vec<CoordinatorInfo>, Error> {
        self.read(|c| async move {
            let rows = c
                .query(
                    "SELECT id, addr, pid, started_ms, seen_ms, until_ms FROM vmx_coordinators
                     ORDER BY started_ms, id",
                    &[],
                )
                .await?;
            Ok(Ok(rows
                .iter()
                .map(|r| CoordinatorInfo {
                    id: r.get(0),
                    addr: r.get(1),
                    pid: r.get::<_, i64>(2) as u32,
                    started_ms: r.get::<_, i64>(3) as u64,
                    seen_ms: r.get::<_, i64>(4) as u64,
                    until_ms: r.get::<_, i64>(5) as u64,
                })
                .collect()))
        })
    }

    fn image(&self, hash: ImageHash) -> Result<Option<Vec<u8>>, Error> {
        self.read(move |c| async move {
            let row = c
                .query_opt("SELECT bytes FROM vmx_images WHERE hash = $1", &[&&hash.0[..]])
                .await?;
            let Some(row) = row else { return Ok(Ok(None)) };
            Ok(unseal("images", &hash.0, row.get(0)).and_then(|bytes| {
                if ImageHash::of(bytes) != hash {
                    return Err(damaged(format!("image {hash} does not match its hash")));
                }
                Ok(Some(bytes.to_vec()))
            }))
        })
    }

    fn finals(&self, ids: &[TaskId]) -> Result<Vec<(TaskId, Option<Final>)>, Error> {
        let ids: Arc<Vec<i64>> = Arc::new(ids.iter().map(|t| t.0 as i64).collect());
        self.read(move |c| {
            let ids = ids.clone();
            async move {
                let rows = c
                    .query(
                        "SELECT t.id, t.final, CASE WHEN t.final THEN t.record END, r.result
                         FROM vmx_tasks t LEFT JOIN vmx_results r ON r.task = t.id
                         WHERE t.id = ANY($1)",
                        &[&*ids],
                    )
                    .await?;
                Ok(finals_of(&rows))
            }
        })
    }
}

/// The rows of [`TaskStore::finals`]'s query, decoded.
fn finals_of(rows: &[Row]) -> Result<Vec<(TaskId, Option<Final>)>, Error> {
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
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The writer applies what is queued, then stops; then the runtime goes (without
        // blocking: this may run on an async runtime's thread).
        self.tx = None;
        let done = self.writer_done.get_mut().ok().and_then(Option::take);
        let Some(rt) = self.rt.take() else { return };
        let stop = move || {
            if let Some(done) = done {
                let _ = done.recv();
            }
            rt.shutdown_background();
        };
        if ON_STORE_RUNTIME.get() {
            // Dropped by a callback, on the writer's runtime: the writer cannot finish
            // while this waits, so a helper thread waits and stops the runtime.
            let _ = std::thread::Builder::new().name("vmx-pg-stop".into()).spawn(stop);
        } else {
            stop();
        }
    }
}
