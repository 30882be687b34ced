//! A worker node: connects to the coordinator, registers, sends heartbeats, and runs the
//! tasks it is sent on one local coroutine scheduler.
//!
//! # Invariants
//! - One [`vm_coroutine::Scheduler`] with `vcpus` vCPU threads runs every task of the node;
//!   a task is one coroutine (one guest process) with captured, capped output.
//! - A program image is parsed once per content hash and cached for the life of the worker;
//!   an image whose bytes do not hash to its name is refused.
//! - Every task accepted from the coordinator produces exactly one report, `TaskDone` or
//!   `TaskError`, even when it was cancelled or killed at its deadline, so the coordinator
//!   can free its slot. Reports made while the coordinator is unreachable are kept and sent
//!   after the next registration.
//! - The worker reconnects with exponential back-off (with jitter) whenever the connection
//!   ends; only an authentication failure ends it, since retrying cannot fix a wrong token.
//!   With several coordinator addresses it moves to the next one whenever a connection
//!   ends or fails (a log line says so), backing off only after a whole round failed; it
//!   registers there with the tasks it runs, and reports their results there.
//! - A malformed or unexpected message closes the connection (and the worker reconnects); it
//!   never stops the worker.

use crate::auth::{client_handshake, ClusterToken};
use crate::connection::{spawn_writer, AbortOnDrop};
use crate::protocol::{
    read_message, ImageHash, NodeId, NodeLoad, Role, TaskExit, TaskId, TaskResult, TaskSpec,
    VmCapabilities, VmMessage, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES,
};
use crate::Error;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use vm_coroutine::{Coroutine, CoroutineId, EngineFactory, GuestExit, Scheduler, SchedulerConfig};
use vm_exec_core::elf::Program;
use vm_exec_core::process::{CaptureBuffer, ProcessConfig, Stdio};
use vm_exec_core::sync::IgnorePoison;

/// How a worker runs.
#[derive(Clone)]
pub struct WorkerConfig {
    /// The coordinator's address (`host:port`), or several separated by commas
    /// (coordinators sharing one database): tried in turn, the next one when a connection
    /// ends or fails.
    pub coordinator: String,
    /// The cluster token.
    pub token: ClusterToken,
    /// vCPU threads of the local scheduler.
    pub vcpus: usize,
    /// Most tasks run at once.
    pub max_concurrent: usize,
    /// Guest memory offered, in bytes.
    pub memory_bytes: u64,
    /// Name shown by status queries (default: host name and pid).
    pub name: Option<String>,
    /// Makes each guest's engines (this crate names no engine: the caller chooses).
    pub engine: EngineFactory,
    /// Name of that engine, for status queries.
    pub engine_name: String,
    /// First reconnection delay; doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest reconnection delay.
    pub reconnect_max: Duration,
    /// Most time a connection attempt and handshake may take.
    pub handshake_timeout: Duration,
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("coordinator", &self.coordinator)
            .field("vcpus", &self.vcpus)
            .field("max_concurrent", &self.max_concurrent)
            .field("memory_bytes", &self.memory_bytes)
            .field("name", &self.name)
            .field("engine_name", &self.engine_name)
            .finish_non_exhaustive()
    }
}

impl WorkerConfig {
    /// A configuration with defaults (as many vCPUs as host CPUs, four task slots per vCPU,
    /// the host's physical memory) whose guests run on engines made by `engine`, called
    /// `engine_name` in status queries.
    pub fn new(
        coordinator: impl Into<String>,
        token: ClusterToken,
        engine: EngineFactory,
        engine_name: impl Into<String>,
    ) -> WorkerConfig {
        let vcpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        WorkerConfig {
            coordinator: coordinator.into(),
            token,
            vcpus,
            max_concurrent: vcpus * 4,
            memory_bytes: host_memory(),
            name: None,
            engine,
            engine_name: engine_name.into(),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// The host's physical memory in bytes (4 GiB if unknown).
pub fn host_memory() -> u64 {
    // SAFETY: sysconf only reads system parameters.
    let (pages, size) =
        unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    if pages > 0 && size > 0 {
        pages as u64 * size as u64
    } else {
        4 << 30
    }
}

fn cpu_load() -> f32 {
    let avg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse::<f32>().ok()))
        .unwrap_or(0.0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f32;
    avg / cpus
}

struct Inflight {
    task: TaskId,
    attempt: u32,
    stdout: CaptureBuffer,
    stderr: CaptureBuffer,
    deadline: Option<Instant>,
    deadline_hit: bool,
}

#[derive(Default)]
struct PoolState {
    inflight: BTreeMap<CoroutineId, Inflight>,
    by_task: HashMap<TaskId, CoroutineId>,
    stop: bool,
}

/// The guests of one worker: the scheduler, the image cache, the tasks in flight, and the
/// thread that collects results.
struct GuestPool {
    node: NodeId,
    scheduler: Scheduler,
    engine: EngineFactory,
    images: Mutex<HashMap<ImageHash, Arc<Program>>>,
    state: Mutex<PoolState>,
    started: Condvar,
    finished: AtomicU64,
    reports: mpsc::UnboundedSender<VmMessage>,
}

impl GuestPool {
    fn state(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().ignore_poison()
    }

    fn has_image(&self, hash: &ImageHash) -> bool {
        self.images.lock().ignore_poison().contains_key(hash)
    }

    fn image_list(&self) -> Vec<ImageHash> {
        self.images.lock().ignore_poison().keys().copied().collect()
    }

    fn add_image(&self, hash: ImageHash, bytes: Vec<u8>) -> Result<(), String> {
        if ImageHash::of(&bytes) != hash {
            return Err(format!("image {hash}: bytes do not match the hash"));
        }
        let program = Program::parse(bytes).map_err(|e| format!("image {hash}: {e}"))?;
        self.images.lock().ignore_poison().insert(hash, Arc::new(program));
        Ok(())
    }

    /// Starts a task whose image is cached.
    fn start(
        &self,
        task: TaskId,
        attempt: u32,
        spec: TaskSpec,
        timeout_ms: Option<u64>,
    ) -> Result<(), String> {
        let program = self
            .images
            .lock()
            .ignore_poison()
            .get(&spec.image)
            .cloned()
            .ok_or_else(|| format!("image {} is not cached", spec.image))?;
        let cap = spec.limits.output_cap.min(crate::protocol::MAX_OUTPUT_CAP) as usize;
        let (stdout, stderr) = (CaptureBuffer::with_limit(cap), CaptureBuffer::with_limit(cap));
        // glibc wants an absolute /proc/self/exe; a task's program has no host path, so its
        // argv[0] is made absolute.
        let exe =
            spec.args.first().map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
        let exe = if exe.starts_with('/') { exe } else { format!("/{exe}") };
        let config = ProcessConfig {
            args: spec.args,
            env: spec.env,
            exe_path: exe.into(),
            memory_size: spec.limits.memory_bytes,
            stdin: Stdio::Bytes(spec.stdin.into()),
            stdout: Stdio::Capture(stdout.clone()),
            stderr: Stdio::Capture(stderr.clone()),
            ..Default::default()
        };
        let coroutine = Coroutine::new(program, Arc::new(config), self.engine.clone());
        coroutine.set_instruction_limit(spec.limits.fuel);
        let id = coroutine.id();
        let mut st = self.state();
        if st.by_task.contains_key(&task) {
            return Err(format!("{task} is already running here"));
        }
        st.inflight.insert(
            id,
            Inflight {
                task,
                attempt,
                stdout,
                stderr,
                deadline: timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms)),
                deadline_hit: false,
            },
        );
        st.by_task.insert(task, id);
        // Submitted under the lock, so the collector cannot see the result before the
        // bookkeeping exists.
        if let Err(e) = self.scheduler.submit_coroutine(coroutine) {
            st.inflight.remove(&id);
            st.by_task.remove(&task);
            return Err(format!("the scheduler refused {task}: {e}"));
        }
        drop(st);
        self.started.notify_one();
        Ok(())
    }

    fn cancel(&self, task: TaskId) {
        let id = self.state().by_task.get(&task).copied();
        if let Some(id) = id {
            self.scheduler.kill(id);
        }
    }

    fn running(&self) -> Vec<(TaskId, u32)> {
        self.state().inflight.values().map(|i| (i.task, i.attempt)).collect()
    }

    fn load(&self) -> NodeLoad {
        NodeLoad {
            running: self.state().inflight.len() as u32,
            cpu_load: cpu_load(),
            finished: self.finished.load(Ordering::Relaxed),
        }
    }

    /// The collector thread: gathers finished coroutines, reports them, enforces deadlines.
    fn collect(&self) {
        loop {
            let oldest = {
                let mut st = self.state();
                while st.inflight.is_empty() && !st.stop {
                    st =
                        self.started.wait_timeout(st, Duration::from_millis(200)).ignore_poison().0;
                }
                if st.stop {
                    return;
                }
                st.inflight.keys().next().copied()
            };
            if let Some(id) = oldest {
                self.scheduler.wait(id, Some(Duration::from_millis(2)));
            }
            let results = self.scheduler.take_results();
            let now = Instant::now();
            let mut st = self.state();
            for r in results {
                let Some(inf) = st.inflight.remove(&r.id) else { continue };
                st.by_task.remove(&inf.task);
                self.finished.fetch_add(1, Ordering::Relaxed);
                let exit = match r.exit {
                    GuestExit::Killed if inf.deadline_hit => GuestExit::DeadlineExceeded,
                    other => other,
                };
                // An engine panic is no result: the attempt failed.
                if let GuestExit::EnginePanicked(m) = &exit {
                    let _ = self.reports.send(VmMessage::TaskError {
                        task: inf.task,
                        attempt: inf.attempt,
                        reason: format!("engine panicked on {}: {m}", self.node),
                    });
                    continue;
                }
                let Some(exit) = TaskExit::from_exit(exit) else { continue };
                let result = TaskResult {
                    exit,
                    stdout: inf.stdout.contents(),
                    stderr: inf.stderr.contents(),
                    output_dropped: inf.stdout.dropped() + inf.stderr.dropped(),
                    instructions: r.instructions,
                    run_time_us: r.run_time.as_micros() as u64,
                    node: self.node,
                    attempt: inf.attempt,
                };
                let _ = self.reports.send(VmMessage::TaskDone { task: inf.task, result });
            }
            for (id, inf) in st.inflight.iter_mut() {
                if !inf.deadline_hit && inf.deadline.is_some_and(|d| now >= d) {
                    inf.deadline_hit = true;
                    self.scheduler.kill(*id);
                }
            }
        }
    }
}

/// A running worker's handle: stopping it ends its connection and its guests.
#[derive(Debug)]
pub struct Worker {
    node: NodeId,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Worker {
    /// Starts a worker in the current tokio runtime.
    pub fn spawn(config: WorkerConfig) -> Result<Worker, Error> {
        let node = NodeId(u64::from_le_bytes(
            crate::auth::random_nonce()?[..8].try_into().unwrap_or([1; 8]),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(config, node, stop.clone()));
        Ok(Worker { node, stop, task })
    }

    /// Its node id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Waits until the worker ends: only on an authentication failure or after
    /// [`Worker::stop`].
    pub async fn join(self) -> Result<(), Error> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(Error::Invalid(format!("the worker task failed: {e}"))),
        }
    }

    /// Asks the worker to stop (it kills its guests) and waits for it.
    pub async fn stop(self) -> Result<(), Error> {
        self.stop.store(true, Ordering::Release);
        self.task.abort();
        let _ = self.task.await;
        Ok(())
    }
}

async fn run(config: WorkerConfig, node: NodeId, stop: Arc<AtomicBool>) -> Result<(), Error> {
    let (reports_tx, mut reports_rx) = mpsc::unbounded_channel();
    let scheduler =
        Scheduler::with_config(SchedulerConfig { vcpus: config.vcpus, ..Default::default() });
    scheduler.start().map_err(|e| Error::Invalid(e.to_string()))?;
    let engine = config.engine.clone();
    let pool = Arc::new(GuestPool {
        node,
        scheduler,
        engine,
        images: Mutex::new(HashMap::new()),
        state: Mutex::new(PoolState::default()),
        started: Condvar::new(),
        finished: AtomicU64::new(0),
        reports: reports_tx,
    });
    let collector = {
        let pool = pool.clone();
        std::thread::Builder::new()
            .name("vmx-collector".into())
            .spawn(move || pool.collect())
            .map_err(|e| Error::Invalid(format!("cannot start the collector: {e}")))?
    };
    let guard = StopPool { pool: pool.clone(), collector: Some(collector) };
    let name = config.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let addrs: Vec<String> = config
        .coordinator
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if addrs.is_empty() {
        drop(guard);
        return Err(Error::Invalid("no coordinator address".into()));
    }
    let mut delay = config.reconnect_min;
    let (mut at, mut round_start) = (0usize, 0usize);
    while !stop.load(Ordering::Acquire) {
        let mut registered = false;
        let addr = &addrs[at];
        match session(&config, addr, &pool, &name, &mut reports_rx, &mut registered).await {
            Err(e @ (Error::AuthFailed | Error::Handshake(_) | Error::VersionMismatch { .. })) => {
                tracing::error!("worker {node}: {e}");
                drop(guard);
                return Err(e);
            }
            Err(e) => tracing::warn!("worker {node}: connection to {addr} ended: {e}"),
            Ok(()) => {}
        }
        if registered {
            delay = config.reconnect_min;
            round_start = at;
        }
        if addrs.len() > 1 {
            at = (at + 1) % addrs.len();
            tracing::warn!("worker {node}: failing over to the coordinator at {}", addrs[at]);
            if at != round_start || registered {
                // Try the next coordinator at once; back off only after a whole round.
                continue;
            }
        }
        let jitter = u64::from(crate::auth::random_nonce().map(|n| n[0]).unwrap_or(0));
        let wait = delay + delay.mul_f64(jitter as f64 / 512.0);
        tracing::info!("worker {node}: reconnecting in {wait:?}");
        tokio::time::sleep(wait).await;
        delay = (delay * 2).min(config.reconnect_max);
    }
    drop(guard);
    Ok(())
}

/// Stops the collector and kills the guests when the worker ends.
struct StopPool {
    pool: Arc<GuestPool>,
    collector: Option<std::thread::JoinHandle<()>>,
}

impl Drop for StopPool {
    fn drop(&mut self) {
        self.pool.state().stop = true;
        self.pool.started.notify_all();
        self.pool.scheduler.kill_all();
        if let Some(c) = self.collector.take() {
            let _ = c.join();
        }
    }
}

/// A task waiting for its image: id, attempt, spec, time-out.
type WaitingTask = (TaskId, u32, TaskSpec, Option<u64>);

async fn session(
    config: &WorkerConfig,
    addr: &str,
    pool: &Arc<GuestPool>,
    name: &str,
    reports: &mut mpsc::UnboundedReceiver<VmMessage>,
    registered: &mut bool,
) -> Result<(), Error> {
    let hs = config.handshake_timeout;
    let mut stream = tokio::time::timeout(hs, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Timeout("connecting to the coordinator"))??;
    stream.set_nodelay(true)?;
    tokio::time::timeout(hs, client_handshake(&mut stream, &config.token, Role::Worker))
        .await
        .map_err(|_| Error::Timeout("the handshake"))??;
    let (mut rd, wr) = stream.into_split();
    let out = spawn_writer(wr, format!("coordinator {addr}"));
    let _ = out.send(VmMessage::Register {
        node: pool.node,
        name: name.to_string(),
        pid: std::process::id(),
        capabilities: VmCapabilities {
            vcpus: config.vcpus as u32,
            max_concurrent: config.max_concurrent as u32,
            memory_bytes: config.memory_bytes,
            engine: config.engine_name.clone(),
            isa: "rv64gc".into(),
        },
        images: pool.image_list(),
        running: pool.running(),
    });
    let heartbeat_ms = match tokio::time::timeout(hs, read_message(&mut rd, MAX_FRAME_BYTES)).await
    {
        Err(_) => return Err(Error::Timeout("registration")),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(VmMessage::Registered { heartbeat_ms })) => heartbeat_ms,
        Ok(Ok(other)) => return Err(Error::Unexpected(other.kind())),
    };
    *registered = true;
    tracing::info!("worker {}: registered with {addr}", pool.node);
    let (in_tx, mut inbox) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            match read_message::<VmMessage, _>(&mut rd, MAX_MESSAGE_BYTES).await {
                Ok(m) => {
                    if in_tx.send(m).is_err() {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    });
    let _abort_reader = AbortOnDrop(reader.abort_handle());
    let mut tick = tokio::time::interval(Duration::from_millis(heartbeat_ms.clamp(10, 60_000)));
    let mut waiting: HashMap<ImageHash, Vec<WaitingTask>> = HashMap::new();
    loop {
        tokio::select! {
            m = inbox.recv() => {
                let Some(m) = m else {
                    return match reader.await {
                        Ok(Err(e)) => Err(e),
                        _ => Err(Error::Closed),
                    };
                };
                match m {
                    VmMessage::RunTask { task, attempt, spec, timeout_ms } => {
                        if pool.has_image(&spec.image) {
                            if let Err(reason) = pool.start(task, attempt, spec, timeout_ms) {
                                let _ = out.send(VmMessage::TaskError { task, attempt, reason });
                            }
                        } else {
                            let hash = spec.image;
                            let list = waiting.entry(hash).or_default();
                            if list.is_empty() {
                                let _ = out.send(VmMessage::NeedImage(hash));
                            }
                            list.push((task, attempt, spec, timeout_ms));
                        }
                    }
                    VmMessage::Image { hash, bytes } => {
                        let pool2 = pool.clone();
                        let added = tokio::task::spawn_blocking(move || pool2.add_image(hash, bytes))
                            .await
                            .unwrap_or_else(|e| Err(e.to_string()));
                        let queued = waiting.remove(&hash).unwrap_or_default();
                        match added {
                            Ok(()) => {
                                for (task, attempt, spec, t) in queued {
                                    if let Err(reason) = pool.start(task, attempt, spec, t) {
                                        let _ = out.send(VmMessage::TaskError { task, attempt, reason });
                                    }
                                }
                            }
                            Err(reason) => {
                                tracing::error!("worker {}: {reason}", pool.node);
                                for (task, attempt, _, _) in queued {
                                    let reason = reason.clone();
                                    let _ = out.send(VmMessage::TaskError { task, attempt, reason });
                                }
                            }
                        }
                    }
                    VmMessage::Cancel { task } => pool.cancel(task),
                    other => {
                        tracing::error!(
                            "worker {}: unexpected {} from the coordinator; closing",
                            pool.node,
                            other.kind()
                        );
                        return Err(Error::Unexpected(other.kind()));
                    }
                }
            }
            r = reports.recv() => {
                // The pool holds the sender, so this never ends while the worker runs.
                if let Some(r) = r {
                    if out.send(r).is_err() {
                        return Err(Error::Closed);
                    }
                }
            }
            _ = tick.tick() => {
                if out.send(VmMessage::Heartbeat(pool.load())).is_err() {
                    return Err(Error::Closed);
                }
            }
        }
    }
}
