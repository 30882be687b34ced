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
//! - `vmx_images`: content-addressed program images (SHA-256 -> sealed bytes).
//!
//! # Invariants (besides those of every [`TaskStore`])
//! - One writer thread with its own connection applies operations in order, every
//!   operation waiting in one transaction (group commit); callbacks run after `COMMIT`
//!   returned. With `durable: false` the connection uses `synchronous_commit = off`.
//! - Reads go through a second connection on a reader thread, so no PostgreSQL call runs
//!   on an async runtime's thread.
//! - Claims lock the rows they take with `FOR UPDATE SKIP LOCKED`: coordinators sharing a
//!   database never claim the same task at once, and never wait on each other's claims.
//! - A transaction that queued tasks sends `NOTIFY vmx_tasks` (delivered at commit).
//! - The writer's session holds an advisory lock: one coordinator per database for now
//!   (task ids are assigned by the coordinator). A second one is refused with one line.
//! - A lost connection fails the operations of the batch in flight (their callbacks get the
//!   error, nothing is acknowledged) and is re-established for the next batch.

use super::{
    damaged, seal, seal_value, unseal, unseal_value, Claim, Lease, LeaseOp, LeaseOutcome, OnCommit,
    Recovered, StoreOp, StoreStats, TaskRecord, TaskStore, MAX_BATCH,
};
use crate::protocol::{ImageHash, TaskId, TaskResult, TaskStatus};
use crate::Error;
use postgres::{Client, NoTls};
use std::sync::atomic::Ordering;
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
];

/// Key of the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x0076_6d78_5f6d_6967; // "vmx_mig"

/// Key of the advisory lock the writer's session holds: one coordinator per database (task
/// ids are assigned by the coordinator, so two would collide).
const COORDINATOR_LOCK: i64 = 0x0076_6d78_5f63_6f6f; // "vmx_coo"

/// Takes the coordinator lock on `client`'s session, waiting up to 3 s for a previous
/// holder's session to end (a killed coordinator's connection closes at once, its session
/// ends shortly after).
fn lock_database(client: &mut Client, config: &postgres::Config) -> Result<(), Error> {
    let t0 = std::time::Instant::now();
    loop {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&COORDINATOR_LOCK])
            .map_err(store_err)?
            .get(0);
        if got {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(3) {
            return Err(Error::Store(format!(
                "another coordinator is using the database at {} (several coordinators on one database are not supported yet)",
                shown(config)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions { durable: true, connect_timeout: Duration::from_secs(5), migrate: true }
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

/// Reads every task and image, checking every seal.
fn recover(client: &mut Client) -> Result<Recovered, Error> {
    let mut recovered = Recovered::default();
    for row in
        client.query("SELECT id, record FROM vmx_tasks ORDER BY id", &[]).map_err(store_err)?
    {
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

/// A read the reader thread answers.
enum Read {
    Task(TaskId, mpsc::Sender<Result<Option<TaskRecord>, Error>>),
    Result(TaskId, mpsc::Sender<Result<Option<TaskResult>, Error>>),
    Lease(TaskId, mpsc::Sender<Result<Option<Lease>, Error>>),
}

/// The PostgreSQL store. See the module docs.
pub struct PgStore {
    tx: Option<mpsc::Sender<(StoreOp, Option<OnCommit>)>>,
    reads: Option<Mutex<mpsc::Sender<Read>>>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<StoreStats>,
    shown: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("db", &self.shown).field("stats", &self.stats).finish()
    }
}

impl PgStore {
    /// Connects to `url`, migrates (or checks) the schema and reads back everything the
    /// database holds. Blocking: call it outside an async runtime's threads (or in
    /// `spawn_blocking`).
    pub fn open(url: &str, options: PgOptions) -> Result<(PgStore, Recovered), Error> {
        let config = parse(url, &options)?;
        let shown = shown(&config);
        let (config2, options2) = (config.clone(), options.clone());
        // The postgres client runs its own runtime: keep it off the caller's thread.
        let (mut write_conn, mut read_conn, recovered) = on_thread(move || {
            let mut write_conn = connect(&config2)?;
            migrate(&mut write_conn, &config2, options2.migrate)?;
            lock_database(&mut write_conn, &config2)?;
            if !options2.durable {
                write_conn.batch_execute("SET synchronous_commit = off").map_err(store_err)?;
            }
            let recovered = recover(&mut write_conn)?;
            let read_conn = connect(&config2)?;
            Ok((Some(write_conn), read_conn, recovered))
        })?;
        let stats = Arc::new(StoreStats::default());
        let (tx, rx) = mpsc::channel::<(StoreOp, Option<OnCommit>)>();
        let writer = {
            let stats = stats.clone();
            let config = config.clone();
            let durable = options.durable;
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
            std::thread::Builder::new()
                .name("vmx-pg-reader".into())
                .spawn(move || {
                    while let Ok(read) = rrx.recv() {
                        if read_conn.is_closed() {
                            match connect(&config) {
                                Ok(c) => read_conn = c,
                                Err(e) => {
                                    answer_err(read, e);
                                    continue;
                                }
                            }
                        }
                        serve_read(&mut read_conn, read);
                    }
                })
                .map_err(|e| Error::Store(format!("cannot start the store reader: {e}")))?
        };
        Ok((
            PgStore {
                tx: Some(tx),
                reads: Some(Mutex::new(rtx)),
                threads: vec![writer, reader],
                stats,
                shown,
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

    fn read<T>(
        &self,
        make: impl FnOnce(mpsc::Sender<Result<T, Error>>) -> Read,
    ) -> Result<T, Error> {
        let (tx, rx) = mpsc::channel();
        let reads = self.reads.as_ref().ok_or(Error::Closed)?;
        reads.lock().map_err(|_| Error::Closed)?.send(make(tx)).map_err(|_| Error::Closed)?;
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

fn answer_err(read: Read, e: Error) {
    let msg = e.to_string();
    match read {
        Read::Task(_, tx) => drop(tx.send(Err(Error::Store(msg)))),
        Read::Result(_, tx) => drop(tx.send(Err(Error::Store(msg)))),
        Read::Lease(_, tx) => drop(tx.send(Err(Error::Store(msg)))),
    }
}

fn serve_read(client: &mut Client, read: Read) {
    fn one(client: &mut Client, sql: &str, id: TaskId) -> Result<Option<Vec<u8>>, Error> {
        let row = client.query_opt(sql, &[&(id.0 as i64)]).map_err(store_err)?;
        Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
    }
    match read {
        Read::Task(id, tx) => {
            let r = one(client, "SELECT record FROM vmx_tasks WHERE id = $1", id)
                .and_then(|b| b.map(|b| unseal_value("tasks", id.0, &b)).transpose());
            let _ = tx.send(r);
        }
        Read::Result(id, tx) => {
            let r = one(client, "SELECT result FROM vmx_results WHERE task = $1", id)
                .and_then(|b| b.map(|b| unseal_value("results", id.0, &b)).transpose());
            let _ = tx.send(r);
        }
        Read::Lease(id, tx) => {
            let r = client
                .query_opt(
                    "SELECT owner, attempt, until_ms FROM vmx_leases WHERE task = $1",
                    &[&(id.0 as i64)],
                )
                .map_err(store_err)
                .map(|row| {
                    row.map(|r| Lease {
                        owner: r.get(0),
                        attempt: r.get::<_, i32>(1) as u32,
                        until_ms: r.get::<_, i64>(2) as u64,
                    })
                });
            let _ = tx.send(r);
        }
    }
}

/// Applies a batch in one transaction (reconnecting first if the connection was lost),
/// then runs its callbacks and answers its lease operations.
fn write_batch(
    conn: &mut Option<Client>,
    config: &postgres::Config,
    durable: bool,
    batch: Vec<(StoreOp, Option<OnCommit>)>,
    stats: &StoreStats,
) {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        *conn = match connect(config).and_then(|mut c| lock_database(&mut c, config).map(|()| c)) {
            Ok(mut c) => {
                if !durable {
                    let _ = c.batch_execute("SET synchronous_commit = off");
                }
                Some(c)
            }
            Err(e) => {
                tracing::error!("task store: {e}");
                None
            }
        };
    }
    let mut outcomes = Vec::new();
    let outcome = match conn.as_mut() {
        None => Err(format!("cannot reach the database at {}", shown(config))),
        Some(c) => commit_batch(c, &batch, &mut outcomes)
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
            let _ = reply.send(r);
        }
        if let Some(cb) = cb {
            cb(outcome.clone());
        }
    }
}

fn put_task(tx: &mut postgres::Transaction<'_>, rec: &TaskRecord) -> Result<(), Error> {
    let id = rec.id.0 as i64;
    let sealed = seal_value("tasks", rec.id.0, rec)?;
    let final_ = rec.status.is_final();
    tx.execute(
        "INSERT INTO vmx_tasks (id, record, final, attempts) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET record = $2, final = $3, attempts = $4",
        &[&id, &sealed, &final_, &(rec.attempts as i32)],
    )
    .map_err(store_err)?;
    if final_ {
        tx.execute("DELETE FROM vmx_leases WHERE task = $1", &[&id]).map_err(store_err)?;
    }
    Ok(())
}

fn put_result(tx: &mut postgres::Transaction<'_>, id: TaskId, r: &TaskResult) -> Result<(), Error> {
    let sealed = seal_value("results", id.0, r)?;
    tx.execute(
        "INSERT INTO vmx_results (task, result) VALUES ($1, $2)
         ON CONFLICT (task) DO UPDATE SET result = $2",
        &[&(id.0 as i64), &sealed],
    )
    .map_err(store_err)?;
    Ok(())
}

/// A task's record, locked for this transaction.
fn locked_task(
    tx: &mut postgres::Transaction<'_>,
    id: TaskId,
) -> Result<Option<TaskRecord>, Error> {
    let row = tx
        .query_opt("SELECT record FROM vmx_tasks WHERE id = $1 FOR UPDATE", &[&(id.0 as i64)])
        .map_err(store_err)?;
    row.map(|r| unseal_value("tasks", id.0, r.get::<_, &[u8]>(0))).transpose()
}

fn lease_op(tx: &mut postgres::Transaction<'_>, op: &LeaseOp) -> Result<LeaseOutcome, Error> {
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
                .map_err(store_err)?;
            let until_ms = now_ms.saturating_add(*lease_ms) as i64;
            let mut claims = Vec::new();
            for row in rows {
                let id: i64 = row.get(0);
                let mut record: TaskRecord = unseal_value("tasks", id as u64, row.get(1))?;
                record.attempts += 1;
                let attempt = record.attempts;
                put_task(tx, &record)?;
                tx.execute(
                    "INSERT INTO vmx_leases (task, owner, attempt, until_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (task) DO UPDATE SET owner = $2, attempt = $3, until_ms = $4",
                    &[&id, owner, &(attempt as i32), &until_ms],
                )
                .map_err(store_err)?;
                claims.push(Claim { record, attempt });
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
                .map_err(store_err)?;
            LeaseOutcome::Renewed(n == 1)
        }
        LeaseOp::Finish { record, attempt, result } => {
            let live = locked_task(tx, record.id)?
                .is_some_and(|t| !t.status.is_final() && t.attempts == *attempt);
            if !live || !record.status.is_final() {
                return Ok(LeaseOutcome::Finished(false));
            }
            put_task(tx, record)?;
            if let Some(r) = result {
                put_result(tx, record.id, r)?;
            }
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
    })
}

fn commit_batch(
    client: &mut Client,
    batch: &[(StoreOp, Option<OnCommit>)],
    outcomes: &mut Vec<LeaseOutcome>,
) -> Result<(), Error> {
    let mut tx = client.transaction().map_err(store_err)?;
    let mut queued = false;
    for (op, _) in batch {
        match op {
            StoreOp::Barrier => {}
            StoreOp::PutImage(hash, bytes) => {
                tx.execute(
                    "INSERT INTO vmx_images (hash, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&&hash.0[..], &seal("images", &hash.0, bytes)],
                )
                .map_err(store_err)?;
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
            StoreOp::Lease(op, _) => outcomes.push(lease_op(&mut tx, op)?),
        }
    }
    if queued {
        tx.batch_execute("NOTIFY vmx_tasks").map_err(store_err)?;
    }
    tx.commit().map_err(store_err)
}

impl TaskStore for PgStore {
    fn apply(&self, op: StoreOp, on_commit: Option<OnCommit>) {
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::SendError((op, cb))) = tx.send((op, on_commit)) {
            if let StoreOp::Lease(_, reply) = op {
                let _ = reply.send(Err("the store is closed".into()));
            }
            if let Some(cb) = cb {
                cb(Err("the store is closed".into()));
            }
        }
    }

    fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, Error> {
        self.read(|tx| Read::Task(id, tx))
    }

    fn result(&self, id: TaskId) -> Result<Option<TaskResult>, Error> {
        self.read(|tx| Read::Result(id, tx))
    }

    fn lease(&self, id: TaskId) -> Result<Option<Lease>, Error> {
        self.read(|tx| Read::Lease(id, tx))
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.tx = None;
        self.reads = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
