//! Distributed execution with real processes on 127.0.0.1: a `vmx coordinator`, `vmx worker`
//! processes, and a client (the library's `ClusterClient`, or `vmx submit`).
//!
//! The tests run one at a time (they share two cores and time-outs), each with its own
//! temporary directory and OS-assigned port; every child process is killed when its guard
//! drops, also when a test fails.
//!
//! Why this file is long: its harness (process guards, `Cluster`, the serial lock, program
//! builders: about 240 lines) serves ten scenarios that must never overlap on two cores;
//! split into several test binaries, each would need that harness as a shared module. Each
//! test is a self-contained scenario, so the file reads top to bottom.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vm_executors::distributed::auth::ClusterToken;
use vm_executors::distributed::protocol::{
    NodeId, TaskExit, TaskId, TaskInfo, TaskLimits, TaskSpec, TaskStatus, TaskType,
};
use vm_executors::distributed::registry::NodeState;
use vm_executors::distributed::{ClusterClient, ClusterStatus};

static SERIAL: Mutex<()> = Mutex::new(());

const TOKEN: &str = "test-token-0123456789abcdef";

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// A child process, killed (SIGKILL) when dropped.
struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    addr: String,
    coordinator: Proc,
    workers: Vec<Proc>,
    coordinator_args: Vec<String>,
}

fn spawn(dir: &Path, name: &str, args: &[String]) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .args(args)
        .current_dir(root())
        .env("VMX_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Proc { child, name: name.into() }
}

impl Cluster {
    /// A coordinator (with `extra` arguments) on a free port.
    fn start(extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), TOKEN).unwrap();
        let coordinator_args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (coordinator, addr) = Self::coordinator(dir.path(), "127.0.0.1:0", &coordinator_args);
        Cluster { dir, addr, coordinator, workers: Vec::new(), coordinator_args }
    }

    fn coordinator(dir: &Path, listen: &str, extra: &[String]) -> (Proc, String) {
        let addr_file = dir.join("addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut args: Vec<String> = [
            "coordinator",
            "--listen",
            listen,
            "--data-dir",
            dir.join("data").to_str().unwrap(),
            "--token-file",
            dir.join("token").to_str().unwrap(),
            "--addr-file",
            addr_file.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().cloned());
        let p = spawn(dir, "coordinator", &args);
        let t0 = Instant::now();
        loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                return (p, a);
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "the coordinator did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the coordinator with SIGKILL and starts it again on the same address and data.
    fn restart_coordinator(&mut self) {
        self.coordinator.kill9();
        let t0 = Instant::now();
        loop {
            let (p, addr) =
                Self::coordinator(self.dir.path(), &self.addr.clone(), &self.coordinator_args);
            if addr == self.addr {
                self.coordinator = p;
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(20));
        }
    }

    fn add_worker(&mut self, extra: &[&str]) {
        let name = format!("worker{}", self.workers.len() + 1);
        let mut args: Vec<String> = [
            "worker",
            "--join",
            &self.addr,
            "--token-file",
            self.dir.path().join("token").to_str().unwrap(),
            "--name",
            &name,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let p = spawn(self.dir.path(), &name, &args);
        self.workers.push(p);
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let mut s = format!("--- coordinator:\n{}", self.log(&self.coordinator.name));
        for w in &self.workers {
            s += &format!("--- {}:\n{}", w.name, self.log(&w.name));
        }
        s
    }
}

fn token() -> ClusterToken {
    ClusterToken::new(TOKEN.as_bytes()).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn connect(addr: &str) -> ClusterClient {
    let t0 = Instant::now();
    loop {
        match ClusterClient::connect(addr, &token(), Duration::from_secs(5)).await {
            Ok(c) => return c,
            Err(e) if t0.elapsed() > Duration::from_secs(20) => panic!("cannot connect: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn wait_for(
    client: &ClusterClient,
    what: &str,
    mut ok: impl FnMut(&ClusterStatus) -> bool,
) -> ClusterStatus {
    let t0 = Instant::now();
    loop {
        let s = client.cluster_status().await.unwrap();
        if ok(&s) {
            return s;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "timed out waiting for {what}: {s:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn alive(s: &ClusterStatus) -> usize {
    s.nodes.iter().filter(|n| n.state == NodeState::Alive).count()
}

fn spec(image: vm_executors::distributed::protocol::ImageHash, args: &[&str]) -> TaskSpec {
    TaskSpec {
        image,
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env: vec![b"VMX_TEST_VAR=dist".to_vec()],
        stdin: Vec::new(),
        limits: TaskLimits { memory_bytes: 64 << 20, ..Default::default() },
    }
}

fn program(name: &str) -> Vec<u8> {
    std::fs::read(root().join("guests/bin").join(name)).unwrap()
}

/// Submits `n` args_env tasks, task `i` exiting with `i % 256` and reading stdin `"i\n"`.
async fn submit_args_env(client: &ClusterClient, n: usize) -> Vec<(TaskId, usize)> {
    let image = client.put_image(program("args_env")).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let mut s = spec(image, &["args_env", &(i % 256).to_string()]);
        s.stdin = format!("{i}\n").into_bytes();
        ids.push((client.submit(TaskType::CpuIntensive, s).await.unwrap(), i));
    }
    ids
}

/// Checks an args_env task's result against its index.
fn check_args_env(info: &TaskInfo, i: usize) {
    let code = (i % 256) as i32;
    assert_eq!(info.status, TaskStatus::Completed { exit_status: code }, "{info:?}");
    let r = info.result.as_ref().expect("a completed task has its result");
    assert_eq!(r.exit, TaskExit::Exited(code));
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(
        out.contains(&format!("argv[1] (len {}) = \"{code}\"", code.to_string().len())),
        "{out}"
    );
    assert!(out.contains("getenv(VMX_TEST_VAR) = \"dist\""), "{out}");
    assert!(out.contains(&format!("stdin: {} bytes, 1 newlines", format!("{i}\n").len())), "{out}");
    assert!(r.instructions > 0);
}

#[test]
fn a_coordinator_and_three_workers_run_500_tasks_with_every_result_correct() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::start(&[]);
    for _ in 0..3 {
        c.add_worker(&["--vcpus", "1", "--slots", "8"]);
    }
    rt().block_on(async {
        let client = connect(&c.addr).await;
        wait_for(&client, "3 workers", |s| alive(s) == 3).await;
        let ids = submit_args_env(&client, 500).await;
        let mut nodes = HashSet::new();
        let mut seen = HashSet::new();
        for (id, i) in &ids {
            assert!(seen.insert(*id), "task ids are unique");
            let info = client.wait(*id).await.unwrap().unwrap();
            check_args_env(&info, *i);
            assert_eq!(info.attempts, 1);
            nodes.insert(info.result.unwrap().node);
        }
        assert_eq!(nodes.len(), 3, "every worker ran tasks");
        let s = client.cluster_status().await.unwrap();
        assert_eq!((s.tasks.total(), s.tasks.completed), (500, 500), "{:?}", s.tasks);
    });
    // And through the command line: `vmx submit --wait` prints the output, exits with the
    // guest's status.
    let out = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .args(["submit", "--coordinator", &c.addr, "--token-file"])
        .arg(c.dir.path().join("token"))
        .args(["--wait", "guests/bin/args_env", "7"])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("exiting with 7"));
    // A fuel limit stops a guest after that many instructions (status 128 + SIGXCPU).
    let out = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .args(["submit", "--coordinator", &c.addr, "--token-file"])
        .arg(c.dir.path().join("token"))
        .args(["--wait", "--fuel", "1000", "guests/bin/hello"])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(152), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .args(["status", "--coordinator", &c.addr, "--token-file"])
        .arg(c.dir.path().join("token"))
        .current_dir(root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("nodes: 3"), "{text}");
    assert!(
        text.contains("tasks: 502 total, 0 queued, 0 running, 502 completed, 0 failed"),
        "{text}"
    );
}

/// Tasks of about a tenth of a second each (sieve, one repetition), so that a kill lands
/// while many run.
async fn submit_sieves(client: &ClusterClient, n: usize) -> Vec<TaskId> {
    let image = client
        .put_image(std::fs::read(root().join("guests/bin/bench/sieve")).unwrap())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(
            client.submit(TaskType::CpuIntensive, spec(image, &["sieve", "1"])).await.unwrap(),
        );
    }
    ids
}

fn check_sieve(info: &TaskInfo) {
    assert_eq!(info.status, TaskStatus::Completed { exit_status: 0 }, "{info:?}");
    let out = String::from_utf8_lossy(&info.result.as_ref().unwrap().stdout).into_owned();
    assert!(out.contains("primes=283146 largest=3999971 checksum=0000007ec6d3bbe5"), "{out}");
}

#[test]
fn a_worker_killed_mid_run_loses_no_task_and_none_runs_twice_in_the_results() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c =
        Cluster::start(&["--heartbeat-ms", "100", "--suspect-ms", "300", "--dead-ms", "600"]);
    for _ in 0..3 {
        c.add_worker(&["--vcpus", "1", "--slots", "4"]);
    }
    rt().block_on(async {
        let client = connect(&c.addr).await;
        wait_for(&client, "3 workers", |s| alive(s) == 3).await;
        let ids = submit_sieves(&client, 60).await;
        // Kill, mid-run, a worker that has tasks running.
        let s = wait_for(&client, "progress", |s| s.tasks.completed >= 10).await;
        let victim = s.nodes.iter().find(|n| n.running > 0).expect("a busy node").clone();
        let w = c.workers.iter_mut().find(|w| w.pid() == victim.pid).expect("its process");
        w.kill9();
        let mut moved = 0;
        for id in &ids {
            let info = client.wait(*id).await.unwrap().unwrap();
            check_sieve(&info);
            if info.attempts > 1 {
                moved += 1;
                assert_ne!(info.result.unwrap().node, victim.id, "a dead node cannot report");
            }
        }
        assert!(moved > 0, "the killed worker's tasks ran again elsewhere");
        let s = client.cluster_status().await.unwrap();
        assert_eq!((s.tasks.total(), s.tasks.completed), (60, 60), "{:?}", s.tasks);
        let dead = s.nodes.iter().find(|n| n.id == victim.id).unwrap();
        assert_eq!(dead.state, NodeState::Dead, "{}", c.logs());
    });
}

#[test]
fn a_coordinator_killed_mid_run_and_restarted_loses_no_task() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::start(&[]);
    for _ in 0..2 {
        c.add_worker(&["--vcpus", "1", "--slots", "4"]);
    }
    let rt = rt();
    let ids = rt.block_on(async {
        let client = connect(&c.addr).await;
        wait_for(&client, "2 workers", |s| alive(s) == 2).await;
        let ids = submit_sieves(&client, 40).await;
        let s = wait_for(&client, "progress", |s| s.tasks.completed >= 5).await;
        assert!(s.tasks.completed < 40, "the kill must land mid-run: {:?}", s.tasks);
        ids
    });
    c.restart_coordinator();
    rt.block_on(async {
        let client = connect(&c.addr).await;
        let s = client.cluster_status().await.unwrap();
        assert_eq!(s.tasks.total(), 40, "every accepted task is known after the restart");
        assert!(s.tasks.completed >= 5, "finished results survived: {:?}", s.tasks);
        wait_for(&client, "workers to reconnect", |s| alive(s) == 2).await;
        for id in &ids {
            check_sieve(&client.wait(*id).await.unwrap().unwrap());
        }
        let s = client.cluster_status().await.unwrap();
        assert_eq!((s.tasks.total(), s.tasks.completed), (40, 40), "{:?}", s.tasks);
        assert!(client.status(TaskId(41)).await.unwrap().is_none(), "no task appeared twice");
    });
    // A second restart with everything final: results are served from the store.
    c.restart_coordinator();
    rt.block_on(async {
        let client = connect(&c.addr).await;
        for id in &ids {
            check_sieve(&client.status(*id).await.unwrap().unwrap());
        }
    });
}

/// Whether the coordinator closed `s` (reads end of stream or an error) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let t0 = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
        if t0.elapsed() > within {
            return false;
        }
    }
}

#[test]
fn intruders_and_garbage_are_refused_and_the_coordinator_keeps_serving() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::start(&["--handshake-timeout-ms", "500"]);
    c.add_worker(&["--vcpus", "1"]);
    std::fs::write(c.dir.path().join("bad"), "not-the-token-0123456789").unwrap();
    // A worker with the wrong token is refused and ends with vmx's error status.
    let bad_worker = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .args(["worker", "--join", &c.addr, "--token-file"])
        .arg(c.dir.path().join("bad"))
        .output()
        .unwrap();
    assert_eq!(bad_worker.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&bad_worker.stderr).contains("token"));
    // A slow-loris connection: one byte, then silence.
    let mut slow = TcpStream::connect(&c.addr).unwrap();
    slow.write_all(&[0]).unwrap();
    let t_slow = Instant::now();
    // Garbage of every kind, before authentication.
    let attacks: Vec<Vec<u8>> = vec![
        (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect(),
        vec![0, 0, 0, 40, 1, 2, 3],         // truncated frame
        vec![0xff, 0xff, 0xff, 0xff, 0],    // oversized length prefix
        vec![0, 0, 0, 3, 0xde, 0xad, 0xbe], // a frame that does not decode
    ];
    for a in &attacks {
        let mut s = TcpStream::connect(&c.addr).unwrap();
        let _ = s.write_all(a);
        let _ = s.shutdown(std::net::Shutdown::Write);
        assert!(
            closed_within(&mut s, Duration::from_secs(3)),
            "garbage {:?}",
            &a[..a.len().min(8)]
        );
    }
    rt().block_on(async {
        // A client with the wrong token is refused.
        let bad = ClusterToken::new(b"not-the-token-0123456789").unwrap();
        assert!(ClusterClient::connect(&c.addr, &bad, Duration::from_secs(5)).await.is_err());
        // An authenticated peer that sends a malformed frame loses only its own connection.
        use vm_executors::distributed::auth::client_handshake;
        use vm_executors::distributed::protocol::Role;
        let mut rogue = tokio::net::TcpStream::connect(&c.addr).await.unwrap();
        client_handshake(&mut rogue, &token(), Role::Client).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        rogue.write_all(&[0, 0, 0, 5, 200, 200, 200, 200, 200]).await.unwrap();
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(3), rogue.read(&mut b)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "the rogue connection is closed: {n:?}");
        // An authenticated client that sends a worker-only message is cut off as well.
        let mut rogue = tokio::net::TcpStream::connect(&c.addr).await.unwrap();
        client_handshake(&mut rogue, &token(), Role::Client).await.unwrap();
        let mut frame = Vec::new();
        vm_executors::distributed::protocol::encode_frame(
            &vm_executors::VmMessage::NeedImage(vm_executors::distributed::protocol::ImageHash(
                [0; 32],
            )),
            &mut frame,
        )
        .unwrap();
        rogue.write_all(&frame).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(3), rogue.read(&mut b)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "unexpected kinds close it: {n:?}");
        // Meanwhile the legitimate client and worker are served.
        let client = connect(&c.addr).await;
        let s = wait_for(&client, "the good worker", |s| alive(s) == 1).await;
        assert_eq!(s.nodes.len(), 1, "the bad worker never registered");
        let ids = submit_args_env(&client, 5).await;
        for (id, i) in ids {
            check_args_env(&client.wait(id).await.unwrap().unwrap(), i);
        }
    });
    assert!(closed_within(&mut slow, Duration::from_secs(5)), "slow-loris still open");
    assert!(t_slow.elapsed() < Duration::from_secs(6));
    assert!(c.log("coordinator").contains("handshake timed out"), "{}", c.logs());
    assert!(c.log("coordinator").contains("connection closed"), "{}", c.logs());
}

/// Starts a coordinator with `strategy` and workers with the given arguments, submits `n`
/// long tasks, and returns, per worker in start order, how many run there, and the number
/// still queued.
fn place(strategy: &str, workers: &[&[&str]], n: usize, memory_mib: u64) -> (Vec<u32>, u64) {
    let mut c = Cluster::start(&["--strategy", strategy]);
    for w in workers {
        c.add_worker(w);
    }
    rt().block_on(async {
        let client = connect(&c.addr).await;
        let s = wait_for(&client, "workers", |s| alive(s) == workers.len()).await;
        let image = client
            .put_image(std::fs::read(root().join("guests/bin/bench/sieve")).unwrap())
            .await
            .unwrap();
        for _ in 0..n {
            let mut sp = spec(image, &["sieve", "1000000"]);
            sp.limits.memory_bytes = memory_mib << 20;
            sp.limits.deadline_ms = Some(30_000);
            client.submit(TaskType::CpuIntensive, sp).await.unwrap();
        }
        let s2 = wait_for(&client, "placement", |s| {
            s.tasks.running + s.tasks.queued == n as u64 && s.tasks.running > 0
        })
        .await;
        // Give the coordinator a moment: nothing may move once placed.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s3 = client.cluster_status().await.unwrap();
        assert_eq!(s2.tasks, s3.tasks);
        let by_pid = |pid: u32| -> NodeId { s.nodes.iter().find(|n| n.pid == pid).unwrap().id };
        let counts = c
            .workers
            .iter()
            .map(|w| s3.nodes.iter().find(|n| n.id == by_pid(w.pid())).unwrap().running)
            .collect();
        (counts, s3.tasks.queued)
    })
}

#[test]
fn each_strategy_places_work_as_it_claims() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Least loaded: worker 1 has one slot, worker 2 four. Worker 1 never gets a second
    // task while it is full, worker 2 fills up, the rest waits in the queue.
    let (counts, queued) = place(
        "least-loaded",
        &[&["--vcpus", "1", "--slots", "1"], &["--vcpus", "1", "--slots", "4"]],
        6,
        64,
    );
    assert_eq!((counts, queued), (vec![1, 4], 1));
    // Round robin: equal turns.
    let (counts, queued) = place(
        "round-robin",
        &[&["--vcpus", "1", "--slots", "8"], &["--vcpus", "1", "--slots", "8"]],
        4,
        64,
    );
    assert_eq!((counts, queued), (vec![2, 2], 0));
    // CPU-aware: worker 2 has four vCPUs, worker 1 one; three CPU tasks all go to the idle
    // vCPUs of worker 2 (least loaded would have split them 1 + 2).
    let (counts, queued) = place(
        "cpu-aware",
        &[&["--vcpus", "1", "--slots", "8"], &["--vcpus", "4", "--slots", "8"]],
        3,
        64,
    );
    assert_eq!((counts, queued), (vec![0, 3], 0));
    // Memory-aware: worker 2 offers 2 GiB, worker 1 512 MiB; 256 MiB tasks go where the
    // most memory is left, and a worker never takes more than it offers.
    let (counts, queued) = place(
        "memory-aware",
        &[
            &["--vcpus", "1", "--slots", "8", "--memory", "512"],
            &["--vcpus", "1", "--slots", "8", "--memory", "2048"],
        ],
        3,
        256,
    );
    assert_eq!((counts, queued), (vec![0, 3], 0));
    let (counts, queued) = place(
        "memory-aware",
        &[
            &["--vcpus", "1", "--slots", "8", "--memory", "512"],
            &["--vcpus", "1", "--slots", "8", "--memory", "512"],
        ],
        5,
        256,
    );
    assert_eq!((counts, queued), (vec![2, 2], 1), "512 MiB holds two 256 MiB tasks");
}

/// Runs `vmx ARGS` against the cluster (coordinator address and token added after the
/// subcommand) and returns its output; a run longer than three minutes (a hang, the failure
/// some of these tests reproduce) is killed and fails the test.
fn vmx(c: &Cluster, sub: &str, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .arg(sub)
        .args(["--coordinator", &c.addr, "--token-file"])
        .arg(c.dir.path().join("token"))
        .args(args)
        .current_dir(root())
        .env("VMX_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`vmx {sub} {}` hung:\n{}", args.join(" "), c.logs());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// The bytes `stream gen N` writes.
fn stream_pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 131 + i / 4093) as u8).collect()
}

/// Waits until no task runs on any node (every slot is free again).
async fn slots_free(client: &ClusterClient) {
    wait_for(client, "free slots", |s| s.nodes.iter().all(|n| n.running == 0)).await;
}

#[test]
fn an_output_larger_than_a_frame_completes_and_frees_the_slot() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::start(&[]);
    c.add_worker(&["--vcpus", "1", "--slots", "1"]);
    // 40 MB of output with a 50 MB cap: more than two frames.
    let n = 40_000_000;
    let out = vmx(
        &c,
        "submit",
        // The deadline turns a wedged task (the failure this test reproduces) into a failed
        // test instead of a hung one.
        &[
            "--wait",
            "--deadline",
            "120000",
            "--output-cap",
            "50000000",
            "guests/bin/stream",
            "gen",
            &n.to_string(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    assert_eq!(out.stdout.len(), n);
    assert!(out.stdout == stream_pattern(n), "the output differs from what the guest wrote");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("stream: {n} bytes")));
    rt().block_on(async {
        let client = connect(&c.addr).await;
        slots_free(&client).await;
    });
    // The only slot is free: the next task runs.
    let out = vmx(&c, "submit", &["--wait", "guests/bin/hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!out.stdout.is_empty());
    // A cap over the cluster's maximum is refused with one line.
    let out = vmx(&c, "submit", &["--output-cap", "2000000000", "guests/bin/hello"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceeds this cluster's maximum") && err.lines().count() == 1, "{err}");
}

#[test]
fn a_50_mb_program_and_a_30_mb_stdin_run_correctly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::start(&[]);
    c.add_worker(&["--vcpus", "1"]);
    // The stream guest padded to 50 MB (the bytes after its segments are never mapped).
    let mut image = program("stream");
    image.resize(50_000_000, 0xa5);
    let prog = c.dir.path().join("big-stream");
    std::fs::write(&prog, &image).unwrap();
    let input: Vec<u8> =
        (0..30_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    let stdin = c.dir.path().join("stdin.bin");
    std::fs::write(&stdin, &input).unwrap();
    let out = vmx(
        &c,
        "submit",
        &[
            "--wait",
            "--deadline",
            "120000",
            "--output-cap",
            "31000000",
            "--stdin",
            stdin.to_str().unwrap(),
            prog.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    assert!(out.stdout == input, "stdout is not the 30 MB stdin ({} bytes)", out.stdout.len());
    // The second submission of the same program does not upload it again.
    let out = vmx(&c, "submit", &["--wait", prog.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stream: 0 bytes"));
}

#[test]
fn an_impossible_task_is_refused_and_tasks_that_do_not_fit_now_block_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::start(&[]);
    c.add_worker(&["--vcpus", "1", "--slots", "4", "--memory", "1024"]);
    rt().block_on(async {
        let client = connect(&c.addr).await;
        wait_for(&client, "the worker", |s| alive(s) == 1).await;
    });
    // More memory than any worker offers: refused at once, one line, exit 125.
    let out = vmx(&c, "submit", &["--memory", "100000", "guests/bin/hello"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no worker can hold a task of 100000 MiB"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // A long 768 MiB task runs; a second one cannot fit beside it and waits...
    let long =
        ["--memory", "768", "--output-cap", "100", "guests/bin/stream", "gen", "1000000000000"];
    let a = vmx(&c, "submit", &long);
    let b = vmx(&c, "submit", &long);
    assert!(a.status.success() && b.status.success());
    // ...without holding up a small task behind it.
    let t0 = Instant::now();
    let out = vmx(&c, "submit", &["--wait", "--memory", "64", "guests/bin/hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
    let ids: Vec<String> =
        [a, b].iter().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).collect();
    let out = vmx(&c, "status", &[&ids[1]]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued"));
    let out = vmx(&c, "cancel", &[&ids[0], &ids[1]]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn idle_strangers_cannot_lock_out_token_holders() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The old default handshake time-out, so that time-outs alone do not let anyone in.
    let mut c = Cluster::start(&["--handshake-timeout-ms", "5000"]);
    c.add_worker(&["--vcpus", "1", "--slots", "8"]);
    rt().block_on(async {
        let client = connect(&c.addr).await;
        wait_for(&client, "the worker", |s| alive(s) == 1).await;
    });
    // 200 idle connections that never speak, reopened as soon as the coordinator closes one.
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));
    let attacker = {
        let (addr, stop, ready) = (c.addr.clone(), stop.clone(), ready.clone());
        std::thread::spawn(move || {
            let mut socks: Vec<TcpStream> =
                (0..200).map(|_| TcpStream::connect(&addr).unwrap()).collect();
            for s in &socks {
                s.set_nonblocking(true).unwrap();
            }
            ready.store(true, Ordering::Release);
            let mut reopened = 0usize;
            while !stop.load(Ordering::Acquire) {
                for s in socks.iter_mut() {
                    let mut b = [0u8; 64];
                    let closed = match s.read(&mut b) {
                        Ok(_) => true,
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    };
                    if closed {
                        if let Ok(n) = TcpStream::connect(&addr) {
                            n.set_nonblocking(true).unwrap();
                            *s = n;
                            reopened += 1;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            reopened
        })
    };
    while !ready.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t0 = Instant::now();
    let out = vmx(&c, "submit", &["--wait", "guests/bin/hello"]);
    let took = t0.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    assert!(took < Duration::from_secs(10), "a legitimate submit took {took:?}");
    // 300 honest clients at once, each with its own connection: all get their task in.
    rt().block_on(async {
        let image = connect(&c.addr).await.put_image(program("hello")).await.unwrap();
        let mut handles = Vec::new();
        for _ in 0..300 {
            let addr = c.addr.clone();
            handles.push(tokio::spawn(async move {
                let client = ClusterClient::connect_retrying(
                    &addr,
                    &token(),
                    Duration::from_secs(5),
                    Duration::from_secs(30),
                )
                .await?;
                client.submit(TaskType::CpuIntensive, spec(image, &["hello"])).await
            }));
        }
        let mut failed = Vec::new();
        for h in handles {
            if let Err(e) = h.await.unwrap() {
                failed.push(e.to_string());
            }
        }
        assert!(
            failed.is_empty(),
            "{} of 300 submits failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
    });
    stop.store(true, Ordering::Release);
    let reopened = attacker.join().unwrap();
    assert!(reopened > 0, "the coordinator never closed an idle connection");
}

#[test]
fn cancel_ends_a_queued_and_a_running_task() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::start(&[]);
    c.add_worker(&["--vcpus", "1", "--slots", "1"]);
    let long = ["--output-cap", "100", "guests/bin/stream", "gen", "1000000000000"];
    let running = vmx(&c, "submit", &long);
    let running = String::from_utf8_lossy(&running.stdout).trim().to_string();
    let queued = vmx(&c, "submit", &long);
    let queued = String::from_utf8_lossy(&queued.stdout).trim().to_string();
    rt().block_on(async {
        let client = connect(&c.addr).await;
        let id: TaskId = running.parse().unwrap();
        let t0 = Instant::now();
        while !matches!(
            client.status(id).await.unwrap().unwrap().status,
            TaskStatus::Running { .. }
        ) {
            assert!(t0.elapsed() < Duration::from_secs(20), "{id} never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // A waiter on the running task learns that it was cancelled.
    let waiter = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .args(["submit", "--coordinator", &c.addr, "--token-file"])
        .arg(c.dir.path().join("token"))
        .args(["--wait", "guests/bin/hello"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = vmx(&c, "cancel", &[&running, &queued]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, format!("{running}: cancelled\n{queued}: cancelled\n"));
    for id in [&running, &queued] {
        let out = vmx(&c, "status", &[id]);
        let line = String::from_utf8_lossy(&out.stdout);
        assert!(line.contains("cancelled by ") && line.contains(" UTC"), "{line}");
    }
    // Cancelling again fails with a reason; the slot is free for the hello queued behind.
    let out = vmx(&c, "cancel", &[&running]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already cancelled"));
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = vmx(&c, "status", &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 cancelled"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
