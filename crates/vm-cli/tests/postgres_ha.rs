//! Several coordinators on one PostgreSQL database, with real processes and a real server
//! (started by the test, see `vm_test_support::pg`; skipped with a printed reason without
//! PostgreSQL, never in CI where `VMX_REQUIRE_POSTGRES` is set):
//! - two coordinators, three workers, 500 tasks submitted through both; the coordinator
//!   holding the most leases is killed with SIGKILL mid-run: every task completes exactly
//!   once with its own output, and `vmx status` through the survivor (reached through an
//!   address list whose first entry is dead) shows 500 completed and one coordinator alive;
//! - the database restarted (`pg_ctl restart`) while tasks are submitted through both
//!   coordinators: every acknowledged submission completes, submissions during the outage
//!   fail with a clear error, and the coordinators work again afterwards.
//!
//! The two tests run one after the other (a lock), to keep a 2-core machine's load sane.

use vm_test_support::pg;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vm_executors::distributed::auth::ClusterToken;
use vm_executors::distributed::protocol::{
    ImageHash, TaskExit, TaskId, TaskInfo, TaskLimits, TaskSpec, TaskStatus, TaskType,
};
use vm_executors::distributed::ClusterClient;

const TOKEN: &str = "test-token-0123456789abcdef";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn vmx(args: &[&str], stderr: &Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_vmx"))
            .args(args)
            .current_dir(root())
            .env("RUST_BACKTRACE", "1")
            .env("VMX_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn vmx_output(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmx"))
        .args(args)
        .current_dir(root())
        .env_remove("VMX_LOG")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap()
}

/// A coordinator on `url` whose files go in `dir/name.*`; returns it with its address.
fn coordinator(dir: &Path, name: &str, url: &str) -> (Proc, String) {
    let addr_file = dir.join(format!("{name}.addr"));
    let token = dir.join("token");
    let err = dir.join(format!("{name}.err"));
    let args = [
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--store",
        url,
        "--token-file",
        token.to_str().unwrap(),
        "--addr-file",
        addr_file.to_str().unwrap(),
    ];
    let mut p = vmx(&args, &err);
    let t0 = Instant::now();
    loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file) {
            return (p, a);
        }
        if let Some(st) = p.0.try_wait().unwrap() {
            panic!("{name} exited ({st}): {}", std::fs::read_to_string(&err).unwrap_or_default());
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{name} did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn worker(dir: &Path, name: &str, join: &str) -> Proc {
    let token = dir.join("token");
    let args = [
        "worker",
        "--join",
        join,
        "--token-file",
        token.to_str().unwrap(),
        "--vcpus",
        "1",
        // Two slots each: the run lasts long enough to be killed in the middle.
        "--slots",
        "2",
        "--name",
        name,
    ];
    vmx(&args, &dir.join(format!("{name}.err")))
}

async fn connect(addr: &str) -> ClusterClient {
    let token = ClusterToken::new(TOKEN.as_bytes()).unwrap();
    ClusterClient::connect_retrying(addr, &token, Duration::from_secs(5), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn spec(image: ImageHash, i: u64) -> TaskSpec {
    TaskSpec {
        image,
        args: vec![b"args_env".to_vec(), i.to_string().into_bytes()],
        env: vec![],
        stdin: vec![],
        limits: TaskLimits { memory_bytes: 64 << 20, ..Default::default() },
    }
}

/// The task ran `args_env i` (its exit status is `i` mod 256, its stdout names `i`).
fn check_result(info: &TaskInfo, i: u64) {
    assert!(matches!(info.status, TaskStatus::Completed { .. }), "{info:?}");
    let r = info.result.as_ref().unwrap_or_else(|| panic!("no result: {info:?}"));
    assert_eq!(r.exit, TaskExit::Exited((i % 256) as i32), "{info:?}");
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains(&format!("argv[1] (len {}) = \"{i}\"", i.to_string().len())), "{out}");
}

/// Waits for every task of `tasks` (`(i, id)`) through `addrs` (a list), all at once over
/// one connection (a new one if it ends), and checks each result.
async fn wait_all(addrs: &str, tasks: &[(u64, TaskId)]) {
    let t0 = Instant::now();
    let mut left: Vec<(u64, TaskId)> = tasks.to_vec();
    while !left.is_empty() {
        let client = std::sync::Arc::new(connect(addrs).await);
        let waits: Vec<_> = left
            .iter()
            .map(|&(i, id)| {
                let c = client.clone();
                tokio::spawn(async move { (i, id, c.wait(id).await) })
            })
            .collect();
        let mut again = Vec::new();
        for w in waits {
            let (i, id, r) = w.await.unwrap();
            match r {
                Ok(Some(info)) => check_result(&info, i),
                Ok(None) => panic!("{id} is unknown"),
                Err(e) => {
                    assert!(t0.elapsed() < Duration::from_secs(120), "waiting for {id}: {e}");
                    again.push((i, id));
                }
            }
        }
        left = again;
    }
}

fn args_env() -> Vec<u8> {
    std::fs::read(root().join("guests/bin/args_env")).unwrap()
}

#[test]
fn two_coordinators_lose_nothing_when_the_busier_one_is_killed() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(server) = pg::PgServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    let url = server.new_db("ha");
    let (a, addr_a) = coordinator(dir, "a", &url);
    let (b, addr_b) = coordinator(dir, "b", &url);
    let n = 500u64;
    let rt = rt();
    let start = Instant::now();
    // Submit through both before any worker exists: every task is queued in the database.
    let ids: Vec<TaskId> = rt.block_on(async {
        let (ca, cb) = (connect(&addr_a).await, connect(&addr_b).await);
        let image = ca.put_image(args_env()).await.unwrap();
        assert_eq!(cb.put_image(args_env()).await.unwrap(), image);
        let mut ids = Vec::new();
        for i in 0..n {
            let c = if i % 2 == 0 { &ca } else { &cb };
            ids.push(c.submit(TaskType::CpuIntensive, spec(image, i)).await.unwrap());
        }
        ids
    });
    eprintln!("{:?}: 500 submitted", start.elapsed());
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), n as usize, "the database gave every task its own id");
    // Two workers prefer A, one prefers B: A claims more.
    let ab = format!("{addr_a},{addr_b}");
    let ba = format!("{addr_b},{addr_a}");
    let _w1 = worker(dir, "w1", &ab);
    let _w2 = worker(dir, "w2", &ab);
    let _w3 = worker(dir, "w3", &ba);
    // Mid-run: some tasks done, others leased. Kill the coordinator holding the most
    // leases. Both read in one query, so the run cannot end between the two.
    let t0 = Instant::now();
    let busiest = loop {
        let row = server.sql(
            "ha",
            "SELECT (SELECT count(*) FROM vmx_results),
               (SELECT c.addr || '|' || count(*) FROM vmx_leases l
                JOIN vmx_coordinators c ON c.id = l.owner
                GROUP BY c.addr ORDER BY count(*) DESC, c.addr LIMIT 1)",
        );
        let (done, busiest) = row.trim().split_once('|').unwrap();
        let done: u64 = done.parse().unwrap();
        assert!(done < n, "every task finished before the kill");
        if done >= 20 && !busiest.is_empty() {
            break busiest.to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no progress: {done} done");
        std::thread::sleep(Duration::from_millis(5));
    };
    let (victim, held) = busiest.trim().split_once('|').unwrap();
    let held: u64 = held.parse().unwrap();
    assert!(held > 0);
    let (survivor, survivor_addr, killed) = if victim == addr_a {
        drop(a);
        (b, addr_b.clone(), addr_a.clone())
    } else {
        assert_eq!(victim, addr_b);
        drop(b);
        (a, addr_a.clone(), addr_b.clone())
    };
    eprintln!("{:?}: killed {killed} holding {held} leases", start.elapsed());
    // Every task completes, through the survivor, with its own output.
    let tasks: Vec<(u64, TaskId)> = ids.iter().enumerate().map(|(i, id)| (i as u64, *id)).collect();
    rt.block_on(wait_all(&survivor_addr, &tasks));
    eprintln!("{:?}: all completed", start.elapsed());
    // Exactly once: one result per task, every task completed.
    assert_eq!(server.sql("ha", "SELECT count(*) FROM vmx_results").trim(), n.to_string());
    assert_eq!(
        server.sql("ha", "SELECT state, count(*) FROM vmx_tasks GROUP BY state").trim(),
        format!("completed|{n}")
    );
    // `vmx status` through a list whose first coordinator is dead.
    // The dead one's heartbeat row expires within a few seconds of its death.
    let token = dir.join("token");
    let list = format!("{killed},{survivor_addr}");
    let t0 = Instant::now();
    let text = loop {
        let out = vmx_output(&[
            "status",
            "--coordinator",
            &list,
            "--token-file",
            token.to_str().unwrap(),
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        if text.contains("(1 alive)") || t0.elapsed() > Duration::from_secs(30) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        text.contains(&format!("tasks: {n} total, 0 queued, 0 running, {n} completed")),
        "{text}"
    );
    assert!(text.contains("coordinators: 2 (1 alive)"), "{text}");
    assert!(text.contains(&format!("{survivor_addr:<21}  alive")), "{text}");
    assert!(text.contains(&format!("{killed:<21}  dead")), "{text}");
    // A submission through the same list fails over to the survivor too.
    let out = vmx_output(&[
        "submit",
        "--coordinator",
        &list,
        "--token-file",
        token.to_str().unwrap(),
        "--wait",
        "guests/bin/args_env",
        "7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("argv[1] (len 1) = \"7\""));
    drop(survivor);
}

#[test]
fn the_database_restarts_under_load_and_no_accepted_task_is_lost() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(server) = pg::PgServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    let url = server.new_db("restart");
    let (_a, addr_a) = coordinator(dir, "a", &url);
    let (_b, addr_b) = coordinator(dir, "b", &url);
    let _w1 = worker(dir, "w1", &format!("{addr_a},{addr_b}"));
    let _w2 = worker(dir, "w2", &format!("{addr_b},{addr_a}"));
    let rt = rt();
    let go = AtomicBool::new(false);
    let restarted = AtomicBool::new(false);
    let (accepted, refused) = std::thread::scope(|scope| {
        // Restarts the database once 100 submissions went through.
        scope.spawn(|| {
            while !go.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
            server.restart();
            restarted.store(true, Ordering::Release);
        });
        rt.block_on(async {
            let (ca, cb) = (connect(&addr_a).await, connect(&addr_b).await);
            let image = ca.put_image(args_env()).await.unwrap();
            cb.put_image(args_env()).await.unwrap();
            let (mut accepted, mut refused) = (Vec::new(), Vec::new());
            let mut after_restart = 0;
            let t0 = Instant::now();
            for i in 0u64.. {
                let c = if i % 2 == 0 { &ca } else { &cb };
                match c.submit(TaskType::CpuIntensive, spec(image, i)).await {
                    Ok(id) => {
                        accepted.push((i, id));
                        if restarted.load(Ordering::Acquire) {
                            after_restart += 1;
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        assert!(msg.contains("cannot store the task"), "unclear refusal: {msg}");
                        refused.push(i);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                if accepted.len() == 100 {
                    go.store(true, Ordering::Release);
                }
                if after_restart >= 100 {
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(120),
                    "no submissions after the restart"
                );
            }
            (accepted, refused)
        })
    });
    // Every acknowledged submission is durable and completes with its own output.
    rt.block_on(wait_all(&format!("{addr_a},{addr_b}"), &accepted));
    let stored: usize = server
        .sql("restart", "SELECT count(*) FROM vmx_tasks WHERE state = 'completed'")
        .trim()
        .parse()
        .unwrap();
    // A refused submission may still have committed (the connection died before the
    // commit's answer): more may be stored, never fewer.
    assert!(stored >= accepted.len(), "{stored} stored, {} acknowledged", accepted.len());
    eprintln!("{} acknowledged, {} refused during the restart", accepted.len(), refused.len());
}
