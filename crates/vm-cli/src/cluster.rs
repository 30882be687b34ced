//! The distributed-execution commands of `vmx`: `coordinator`, `worker`, `submit`,
//! `status`, `cancel`, `cluster` (a local cluster in one command) and the hidden `bench-client` that
//! `cargo xtask bench-cluster` drives.

use crate::guest::GuestArgs;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vm_executors::distributed::auth::ClusterToken;
use vm_executors::distributed::protocol::{
    TaskId, TaskInfo, TaskLimits, TaskPayload, TaskSpec, TaskStatus, TaskType, DEFAULT_OUTPUT_CAP,
    MAX_OUTPUT_CAP,
};
use vm_executors::distributed::worker::{Worker, WorkerConfig};
use vm_executors::distributed::{
    ClusterClient, DistributedArchitectureConfig, FaultToleranceConfig, LoadBalancingStrategy,
    VmCoordinator,
};
use vm_executors::ExecutorType;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long client commands keep retrying to connect (with back-off and jitter).
const CONNECT_RETRY_FOR: Duration = Duration::from_secs(30);

/// Connects to the coordinator, retrying connection failures.
async fn connect(addr: &str, token: &ClusterToken) -> Result<ClusterClient> {
    ClusterClient::connect_retrying(addr, token, CONNECT_TIMEOUT, CONNECT_RETRY_FOR)
        .await
        .with_context(|| format!("cannot reach the coordinator at {addr}"))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn token(path: &Path) -> Result<ClusterToken> {
    Ok(ClusterToken::from_file(path)?)
}

/// `vmx coordinator`.
#[derive(clap::Args)]
pub struct CoordinatorArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Directory of the durable task store (redb).
    #[arg(long, required_unless_present = "store", conflicts_with = "store")]
    data_dir: Option<PathBuf>,
    /// Keep the tasks in PostgreSQL instead: `postgres://USER[:PASSWORD]@HOST:PORT/DB`.
    /// The schema is created and migrated by vmx.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// With --store: create or migrate the database's schema, then exit.
    #[arg(long, requires = "store")]
    migrate_only: bool,
    /// File holding the cluster token (at least 16 bytes).
    #[arg(long, required_unless_present_any = ["check_store", "migrate_only"])]
    token_file: Option<PathBuf>,
    /// Also write the bound address to this file once listening.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// Placement: round-robin, least-loaded, cpu-aware or memory-aware.
    #[arg(long, default_value = "least-loaded")]
    strategy: LoadBalancingStrategy,
    /// Heartbeat period asked of workers, in milliseconds.
    #[arg(long, default_value_t = 250)]
    heartbeat_ms: u64,
    /// Silence after which a worker is suspect, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    suspect_ms: u64,
    /// Silence after which a worker is dead and its tasks re-dispatched, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    dead_ms: u64,
    /// Retries of a task after its first attempt.
    #[arg(long, default_value_t = 3)]
    max_retries: u32,
    /// Time a connection has to authenticate, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    handshake_timeout_ms: u64,
    /// Time after which a dead worker leaves `vmx status`, in milliseconds.
    #[arg(long, default_value_t = 600_000)]
    forget_dead_ms: u64,
    /// Largest output cap (bytes per stream) a task may ask for.
    #[arg(long, default_value_t = MAX_OUTPUT_CAP)]
    max_output_cap: u32,
    /// Most connections authenticating at once (beyond: the oldest is closed).
    #[arg(long, default_value_t = 1024)]
    max_unauthenticated: usize,
    /// Most connections authenticating at once from one address (beyond: its oldest is
    /// closed).
    #[arg(long, default_value_t = 128)]
    max_unauthenticated_per_source: usize,
    /// Most tasks waiting; submissions beyond are refused (backpressure). With --store
    /// the limit is on the database's unfinished tasks, as this coordinator last read them
    /// (every half second) plus what it accepted since.
    #[arg(long, default_value_t = 1 << 20)]
    max_queued: usize,
    /// Do not wait for the disk on commits (faster, loses recent tasks on power loss).
    #[arg(long)]
    no_fsync: bool,
    /// Start an empty task store even if --data-dir held one (the old database is kept
    /// beside it, renamed). Without it a damaged or missing store is refused.
    #[arg(long)]
    init: bool,
    /// Open and check the task store (redb), print what it holds and exit (0: intact).
    #[arg(long, conflicts_with = "init", requires = "data_dir")]
    check_store: bool,
}

impl CoordinatorArgs {
    fn config(&self) -> Result<DistributedArchitectureConfig> {
        Ok(DistributedArchitectureConfig {
            listen: self.listen,
            data_dir: self.data_dir.clone().unwrap_or_default(),
            store_url: self.store.clone(),
            token: match &self.token_file {
                Some(f) => Some(token(f)?),
                None => bail!("--token-file is required"),
            },
            durable: !self.no_fsync,
            init_store: self.init,
            strategy: self.strategy,
            fault_tolerance: FaultToleranceConfig {
                max_retries: self.max_retries,
                heartbeat_interval: Duration::from_millis(self.heartbeat_ms.max(1)),
                suspect_after: Duration::from_millis(self.suspect_ms),
                dead_after: Duration::from_millis(self.dead_ms),
                forget_dead_after: Duration::from_millis(self.forget_dead_ms),
                ..Default::default()
            },
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            max_unauthenticated: self.max_unauthenticated,
            max_unauthenticated_per_source: self.max_unauthenticated_per_source,
            max_output_cap: self.max_output_cap,
            max_queued: self.max_queued,
        })
    }
}

/// Raises the soft limit on open files to the hard limit: every connection is a descriptor.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn announce(addr: SocketAddr, addr_file: Option<&Path>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "vmx coordinator listening on {addr}")?;
    out.flush()?;
    if let Some(f) = addr_file {
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, addr.to_string())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, f).with_context(|| format!("cannot write {}", f.display()))?;
    }
    Ok(())
}

/// Runs a coordinator until SIGINT or SIGTERM.
pub fn coordinator(args: CoordinatorArgs) -> Result<ExitCode> {
    if let Some(url) = &args.store {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!(
                "--store takes a postgres://USER@HOST:PORT/DB URL (for a directory use --data-dir)"
            );
        }
    }
    if let (true, Some(dir)) = (args.check_store, &args.data_dir) {
        return check_store(dir);
    }
    if let (true, Some(url)) = (args.migrate_only, &args.store) {
        use vm_executors::distributed::store::postgres::{PgOptions, PgStore};
        let version = PgStore::migrate_only(url, PgOptions::default())?;
        println!("schema at version {version}");
        return Ok(ExitCode::SUCCESS);
    }
    let config = args.config()?;
    raise_fd_limit();
    runtime()?.block_on(async {
        let c = VmCoordinator::start(config)
            .await
            .with_context(|| format!("cannot start a coordinator on {}", args.listen))?;
        announce(c.local_addr(), args.addr_file.as_deref())?;
        wait_for_signal().await?;
        c.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `vmx coordinator --check-store`: opens the store (which checks every record) and says
/// what it holds.
fn check_store(dir: &Path) -> Result<ExitCode> {
    use vm_executors::distributed::store::{OpenOptions, RedbStore, DB_FILE, MANIFEST};
    if !dir.join(MANIFEST).exists() && !dir.join(DB_FILE).exists() {
        bail!("{} holds no task store", dir.display());
    }
    let (store, recovered) = RedbStore::open_with(dir, OpenOptions { durable: true, init: false })?;
    let done = recovered.tasks.iter().filter(|t| t.status.is_final()).count();
    drop(store);
    println!(
        "{}: intact, {} tasks ({} final), {} images",
        dir.display(),
        recovered.tasks.len(),
        done,
        recovered.images.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `vmx worker`.
#[derive(clap::Args)]
pub struct WorkerArgs {
    /// The coordinator's address; several separated by commas (coordinators sharing one
    /// database): the worker moves to the next when one goes away.
    #[arg(long, value_name = "ADDR[,ADDR...]")]
    join: String,
    /// File holding the cluster token.
    #[arg(long)]
    token_file: PathBuf,
    /// vCPU threads running guests.
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    vcpus: usize,
    /// Most tasks at once (default: 4 per vCPU).
    #[arg(long)]
    slots: Option<usize>,
    /// Guest memory offered, in MiB (default: the host's physical memory).
    #[arg(long, value_name = "MIB")]
    memory: Option<u64>,
    /// Name shown by `vmx status`.
    #[arg(long)]
    name: Option<String>,
    /// Execution engine: interp, jit or hybrid.
    #[arg(long, default_value_t = ExecutorType::default())]
    engine: ExecutorType,
}

/// Runs a worker until SIGINT or SIGTERM (or an authentication failure).
pub fn worker(args: WorkerArgs) -> Result<ExitCode> {
    if args.vcpus == 0 {
        bail!("--vcpus must be at least 1");
    }
    let mut config = WorkerConfig::new(
        args.join.clone(),
        token(&args.token_file)?,
        args.engine.factory(),
        args.engine.name(),
    );
    config.vcpus = args.vcpus;
    config.max_concurrent = args.slots.unwrap_or(args.vcpus * 4).max(1);
    if let Some(m) = args.memory {
        config.memory_bytes = m.checked_mul(1 << 20).context("--memory is too large")?;
    }
    config.name = args.name;
    runtime()?.block_on(async {
        let w = Worker::spawn(config)?;
        let node = w.node();
        eprintln!("vmx worker {node} joining {}", args.join);
        tokio::select! {
            r = w.join() => {
                r.with_context(|| format!("worker {node}"))?;
            }
            r = wait_for_signal() => r?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `vmx submit`.
#[derive(clap::Args)]
pub struct SubmitArgs {
    /// The coordinator's address; several separated by commas (coordinators sharing one
    /// database) are tried in turn.
    #[arg(long, value_name = "ADDR[,ADDR...]")]
    coordinator: String,
    /// File holding the cluster token.
    #[arg(long)]
    token_file: PathBuf,
    /// Kind of work: cpu, memory or io.
    #[arg(long = "type", default_value = "cpu")]
    task_type: TaskType,
    /// Wait for the result, print the guest's stdout and stderr, exit with its status.
    #[arg(long)]
    wait: bool,
    /// Guest address-space size in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    memory: u64,
    /// Most wall-clock time from submission to result, in milliseconds.
    #[arg(long, value_name = "MS")]
    deadline: Option<u64>,
    /// Most guest instructions; the task ends with status 152 when they run out.
    #[arg(long)]
    fuel: Option<u64>,
    /// Bytes kept of each of stdout and stderr (the coordinator may refuse more than its
    /// cluster-wide maximum).
    #[arg(long, default_value_t = DEFAULT_OUTPUT_CAP)]
    output_cap: u32,
    /// File whose contents are the guest's stdin (default: empty).
    #[arg(long)]
    stdin: Option<PathBuf>,
    /// Environment entry NAME=value for the guest (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<OsString>,
    /// The program and its arguments.
    #[command(flatten)]
    guest: GuestArgs,
}

/// Submits a task; with `--wait`, prints its output and exits with its status.
pub fn submit(args: SubmitArgs) -> Result<ExitCode> {
    let program = args.guest.read()?;
    let stdin = match &args.stdin {
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => Vec::new(),
    };
    let argv = args.guest.argv();
    let payload = TaskPayload {
        program,
        args: argv,
        env: args.env.iter().map(|e| e.as_bytes().to_vec()).collect(),
        stdin,
        limits: TaskLimits {
            fuel: args.fuel,
            memory_bytes: crate::guest::memory_bytes(args.memory)?,
            deadline_ms: args.deadline,
            output_cap: args.output_cap,
        },
    };
    let token = token(&args.token_file)?;
    runtime()?.block_on(async {
        let client = connect(&args.coordinator, &token).await?;
        let id = client.submit_payload(args.task_type, payload).await.context("submitting")?;
        if !args.wait {
            println!("{id}");
            return Ok(ExitCode::SUCCESS);
        }
        let info = wait_reconnecting(client, &args.coordinator, &token, id).await?;
        print_outcome(&info)
    })
}

/// Waits for `id`, reconnecting (for up to a minute) if the coordinator goes away: the task
/// is durable once acknowledged.
async fn wait_reconnecting(
    mut client: ClusterClient,
    addr: &str,
    token: &ClusterToken,
    id: TaskId,
) -> Result<TaskInfo> {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        match client.wait(id).await {
            Ok(Some(info)) => return Ok(info),
            Ok(None) => bail!("the coordinator does not know {id}"),
            Err(e) if Instant::now() > give_up => return Err(e).context("waiting for the result"),
            Err(_) => {}
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            match ClusterClient::connect_retrying(addr, token, CONNECT_TIMEOUT, CONNECT_TIMEOUT)
                .await
            {
                Ok(c) => {
                    client = c;
                    break;
                }
                Err(e) if Instant::now() > give_up => {
                    return Err(e).context("reconnecting to the coordinator")
                }
                Err(_) => {}
            }
        }
    }
}

fn print_outcome(info: &TaskInfo) -> Result<ExitCode> {
    if let Some(r) = &info.result {
        std::io::stdout().write_all(&r.stdout)?;
        std::io::stdout().flush()?;
        std::io::stderr().write_all(&r.stderr)?;
        if r.output_dropped > 0 {
            eprintln!("vmx: {} bytes of output past the cap were dropped", r.output_dropped);
        }
    }
    match &info.status {
        TaskStatus::Completed { exit_status } => Ok(ExitCode::from(*exit_status as u8)),
        TaskStatus::Failed { reasons } => {
            eprintln!("vmx: {} failed: {}", info.id, reasons.join("; "));
            let code = info.result.as_ref().map_or(125, |r| r.exit.shell_status());
            Ok(ExitCode::from(code as u8))
        }
        TaskStatus::Cancelled { by, at_ms } => {
            eprintln!("vmx: {} was cancelled by {by} at {}", info.id, utc(*at_ms));
            Ok(ExitCode::from(CANCELLED_STATUS))
        }
        other => bail!("{} is not final ({})", info.id, other.name()),
    }
}

/// `vmx status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// The coordinator's address; several separated by commas (coordinators sharing one
    /// database) are tried in turn.
    #[arg(long, value_name = "ADDR[,ADDR...]")]
    coordinator: String,
    /// File holding the cluster token.
    #[arg(long)]
    token_file: PathBuf,
    /// Show this task instead of the cluster.
    task: Option<TaskId>,
}

/// Prints the nodes and task counts, or one task.
pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let token = token(&args.token_file)?;
    runtime()?.block_on(async {
        let client = connect(&args.coordinator, &token).await?;
        if let Some(id) = args.task {
            let Some(info) = client.status(id).await? else {
                bail!("the coordinator does not know {id}");
            };
            print!("{id}: {}", info.status.name());
            match &info.status {
                TaskStatus::Running { node, attempt } if node.0 == 0 => {
                    print!(" via another coordinator (attempt {attempt})")
                }
                TaskStatus::Running { node, attempt } => print!(" on {node} (attempt {attempt})"),
                TaskStatus::Completed { exit_status } => {
                    print!(", exit status {exit_status}");
                    if let Some(r) = &info.result {
                        print!(" ({})", r.exit);
                    }
                }
                TaskStatus::Failed { reasons } => print!(": {}", reasons.join("; ")),
                TaskStatus::Cancelled { by, at_ms } => {
                    print!(" by {by} at {}", utc(*at_ms))
                }
                TaskStatus::Queued => {}
            }
            print!(", type {}, {} attempt(s)", info.task_type, info.attempts);
            if let Some(r) = &info.result {
                print!(", ran on {}, {} instructions, {} us", r.node, r.instructions, r.run_time_us);
            }
            println!();
            return Ok(ExitCode::SUCCESS);
        }
        let s = client.cluster_status().await?;
        println!("nodes: {}", s.nodes.len());
        for n in &s.nodes {
            let c = &n.capabilities;
            println!(
                "  {}  {:<7}  running {}/{}  vcpus {}  memory {} MiB  load {:.2}  finished {}  engine {}  name {}  addr {}  seen {} ms ago",
                n.id,
                n.state.name(),
                n.running,
                c.max_concurrent,
                c.vcpus,
                c.memory_bytes >> 20,
                n.load.cpu_load,
                n.load.finished,
                c.engine,
                n.name,
                n.addr,
                n.last_seen_ms,
            );
        }
        if !s.coordinators.is_empty() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let alive = s.coordinators.iter().filter(|c| c.until_ms > now).count();
            println!("coordinators: {} ({alive} alive)", s.coordinators.len());
            for c in &s.coordinators {
                println!(
                    "  {:<21}  {:<5}  pid {}  started {}  last heartbeat {} ms ago",
                    c.addr,
                    if c.until_ms > now { "alive" } else { "dead" },
                    c.pid,
                    utc(c.started_ms),
                    now.saturating_sub(c.seen_ms),
                );
            }
        }
        let t = &s.tasks;
        println!(
            "tasks: {} total, {} queued, {} running, {} completed, {} failed, {} cancelled",
            t.total(),
            t.queued,
            t.running,
            t.completed,
            t.failed,
            t.cancelled
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Exit status of `vmx submit --wait` for a cancelled task (as for a guest killed by
/// SIGKILL).
const CANCELLED_STATUS: u8 = 137;

/// A Unix time in milliseconds as `YYYY-MM-DD HH:MM:SS.mmm UTC`.
fn utc(ms: u64) -> String {
    let (days, rem) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{milli:03} UTC")
}

/// `vmx cancel`.
#[derive(clap::Args)]
pub struct CancelArgs {
    /// The coordinator's address; several separated by commas (coordinators sharing one
    /// database) are tried in turn.
    #[arg(long, value_name = "ADDR[,ADDR...]")]
    coordinator: String,
    /// File holding the cluster token.
    #[arg(long)]
    token_file: PathBuf,
    /// The tasks to cancel.
    #[arg(required = true)]
    tasks: Vec<TaskId>,
}

/// Who this client is, for the coordinator's record of a cancellation: `user@host`.
fn whoami() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME"));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}@{}", user.as_deref().unwrap_or("unknown"), host.trim())
}

/// Cancels tasks; prints one line per task. Exits 0 when every task was cancelled, 1 when
/// some was unknown or already final.
pub fn cancel(args: CancelArgs) -> Result<ExitCode> {
    let token = token(&args.token_file)?;
    runtime()?.block_on(async {
        let client = connect(&args.coordinator, &token).await?;
        let by = whoami();
        let mut all = true;
        for &id in &args.tasks {
            match client.cancel(id, &by).await {
                Ok(Some(info)) => println!("{id}: {}", info.status.name()),
                Ok(None) => {
                    all = false;
                    eprintln!("vmx: the coordinator does not know {id}");
                }
                Err(vm_executors::distributed::Error::Rejected(m)) => {
                    all = false;
                    eprintln!("vmx: {m}");
                }
                Err(e) => return Err(e).with_context(|| format!("cancelling {id}")),
            }
        }
        Ok(if all { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}

/// `vmx cluster`.
#[derive(clap::Args)]
pub struct ClusterArgs {
    /// Number of worker processes.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// vCPUs of each worker.
    #[arg(long, default_value_t = 1)]
    vcpus: usize,
    /// Address of the coordinator.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Directory for the task store and the generated token.
    #[arg(long, default_value = ".vmx-cluster")]
    data_dir: PathBuf,
    /// Token file to use (default: DATA_DIR/token, generated if missing).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Placement: round-robin, least-loaded, cpu-aware or memory-aware.
    #[arg(long, default_value = "least-loaded")]
    strategy: LoadBalancingStrategy,
}

/// Kills the worker processes when the cluster command ends.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts a coordinator in this process and `--workers` worker processes on loopback, until
/// SIGINT or SIGTERM.
pub fn cluster(args: ClusterArgs) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let token_file = match &args.token_file {
        Some(f) => f.clone(),
        None => {
            let f = args.data_dir.join("token");
            if !f.exists() {
                let t = ClusterToken::generate()?;
                std::fs::write(&f, t.as_bytes())
                    .with_context(|| format!("cannot write {}", f.display()))?;
            }
            f
        }
    };
    let config = DistributedArchitectureConfig {
        listen: args.listen,
        data_dir: args.data_dir.join("store"),
        token: Some(token(&token_file)?),
        strategy: args.strategy,
        ..Default::default()
    };
    let exe = std::env::current_exe().context("cannot find the vmx executable")?;
    runtime()?.block_on(async {
        let c = VmCoordinator::start(config)
            .await
            .with_context(|| format!("cannot start a coordinator on {}", args.listen))?;
        let addr = c.local_addr();
        let mut children = Children(Vec::new());
        for i in 0..args.workers {
            let mut cmd = std::process::Command::new(&exe);
            cmd.arg("worker")
                .arg("--join")
                .arg(addr.to_string())
                .arg("--token-file")
                .arg(&token_file)
                .arg("--vcpus")
                .arg(args.vcpus.to_string())
                .arg("--name")
                .arg(format!("worker-{}", i + 1))
                .stdout(std::process::Stdio::null());
            // SAFETY: prctl is async-signal-safe; between fork and exec the child only asks
            // the kernel to send it SIGTERM when this process dies, so no worker outlives it.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            children.0.push(cmd.spawn().context("cannot start a worker process")?);
        }
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "vmx cluster: coordinator on {addr}, {} worker(s), data in {}",
            args.workers,
            args.data_dir.display()
        )?;
        writeln!(out, "vmx cluster: token file {}", token_file.display())?;
        writeln!(
            out,
            "try: vmx submit --coordinator {addr} --token-file {} --wait guests/bin/hello",
            token_file.display()
        )?;
        writeln!(
            out,
            "     vmx status --coordinator {addr} --token-file {}",
            token_file.display()
        )?;
        out.flush()?;
        drop(out);
        wait_for_signal().await?;
        drop(children);
        c.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `vmx bench-client` (hidden): the load generator of `cargo xtask bench-cluster`.
#[derive(clap::Args)]
pub struct BenchClientArgs {
    /// The coordinator's address; several separated by commas (coordinators sharing one
    /// database) are tried in turn.
    #[arg(long, value_name = "ADDR[,ADDR...]")]
    coordinator: String,
    /// File holding the cluster token.
    #[arg(long)]
    token_file: PathBuf,
    /// Tasks to push through.
    #[arg(long, default_value_t = 10000)]
    tasks: usize,
    /// Most tasks submitted and not finished at once.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Guest address-space size in MiB.
    #[arg(long, default_value_t = 64)]
    memory: u64,
    /// Instead of throughput: start this many long tasks, kill -9 the worker running most of
    /// them, and time until they all run elsewhere.
    #[arg(long)]
    failover: Option<usize>,
    /// The program and its arguments.
    #[command(flatten)]
    guest: GuestArgs,
}

/// Runs the load generator and prints `key=value` lines.
pub fn bench_client(args: BenchClientArgs) -> Result<ExitCode> {
    let program = args.guest.read()?;
    let argv = args.guest.argv();
    let token = token(&args.token_file)?;
    runtime()?.block_on(async {
        // One connection per coordinator listed; throughput runs submit through each in turn.
        let mut clients = Vec::new();
        for addr in args.coordinator.split(',') {
            clients.push(Arc::new(ClusterClient::connect(addr, &token, CONNECT_TIMEOUT).await?));
        }
        let client = clients[0].clone();
        let mut image = client.put_image(program.clone()).await?;
        for c in &clients[1..] {
            image = c.put_image(program.clone()).await?;
        }
        let spec = TaskSpec {
            image,
            args: argv,
            env: Vec::new(),
            stdin: Vec::new(),
            limits: TaskLimits { memory_bytes: args.memory << 20, ..Default::default() },
        };
        match args.failover {
            Some(n) => failover(&client, spec, n).await,
            None => throughput(clients, spec, args.tasks, args.window).await,
        }
    })
}

async fn throughput(
    clients: Vec<Arc<ClusterClient>>,
    spec: TaskSpec,
    tasks: usize,
    window: usize,
) -> Result<ExitCode> {
    let permits = Arc::new(tokio::sync::Semaphore::new(window.max(1)));
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let permit = permits.clone().acquire_owned().await?;
        let (client, spec) = (clients[i % clients.len()].clone(), spec.clone());
        handles.push(tokio::spawn(async move {
            let start = Instant::now();
            let id = client.submit(TaskType::CpuIntensive, spec).await?;
            let info = client.wait(id).await?.context("unknown task")?;
            drop(permit);
            let ok = matches!(info.status, TaskStatus::Completed { .. });
            anyhow::Ok((start.elapsed(), ok))
        }));
    }
    let mut lat = Vec::with_capacity(tasks);
    let mut failed = 0;
    for h in handles {
        let (d, ok) = h.await??;
        lat.push(d);
        failed += usize::from(!ok);
    }
    let wall = t0.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    println!("tasks={tasks}");
    println!("window={window}");
    println!("failed={failed}");
    println!("wall_s={:.3}", wall.as_secs_f64());
    println!("tasks_per_s={:.0}", tasks as f64 / wall.as_secs_f64());
    println!("latency_median_ms={:.2}", pct(0.5));
    println!("latency_p99_ms={:.2}", pct(0.99));
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn failover(client: &ClusterClient, spec: TaskSpec, n: usize) -> Result<ExitCode> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(client.submit(TaskType::CpuIntensive, spec.clone()).await?);
    }
    // Wait until every task runs.
    let placed = loop {
        let mut placed = Vec::new();
        for id in &ids {
            if let Some(TaskInfo { status: TaskStatus::Running { node, .. }, .. }) =
                client.status(*id).await?
            {
                placed.push((*id, node));
            }
        }
        if placed.len() == n {
            break placed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let nodes = client.cluster_status().await?.nodes;
    let victim = nodes
        .iter()
        .max_by_key(|v| placed.iter().filter(|(_, n)| *n == v.id).count())
        .context("no nodes")?;
    let moved: Vec<TaskId> =
        placed.iter().filter(|(_, n)| *n == victim.id).map(|(id, _)| *id).collect();
    let pid = i32::try_from(victim.pid).context("pid")?;
    let t0 = Instant::now();
    // SAFETY: sends SIGKILL to the worker process the coordinator reported (same host).
    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        bail!("cannot kill worker pid {pid}");
    }
    loop {
        let mut all = true;
        for id in &moved {
            match client.status(*id).await?.map(|i| i.status) {
                Some(TaskStatus::Running { node, .. }) if node != victim.id => {}
                Some(TaskStatus::Completed { .. }) => {}
                _ => all = false,
            }
        }
        if all {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("tasks did not move within a minute");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!("moved_tasks={}", moved.len());
    println!("failover_ms={:.1}", t0.elapsed().as_secs_f64() * 1e3);
    Ok(ExitCode::SUCCESS)
}
