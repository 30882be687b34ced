//! `vmx coordinator --store postgres://...` with real processes and a real server (started
//! by the test, see `vm_test_support::pg`; skipped with a printed reason
//! without PostgreSQL, never in CI where `VMX_REQUIRE_POSTGRES` is set): tasks survive a
//! coordinator's `kill -9`, submissions fail clearly while the database is down and work
//! again after it returns, and bad input (a wrong URL, a database without permissions, a
//! schema from a newer vmx) is refused with one line; the queue limit (backpressure)
//! holds on the database's unfinished tasks, across coordinators.

use vm_test_support::pg;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use vm_executors::distributed::auth::ClusterToken;
use vm_executors::distributed::protocol::{TaskExit, TaskId, TaskLimits, TaskSpec, TaskType};
use vm_executors::distributed::ClusterClient;

const TOKEN: &str = "test-token-0123456789abcdef";

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

/// A coordinator on `url`; returns it with its address.
fn coordinator(dir: &Path, url: &str) -> (Proc, String) {
    coordinator_with(dir, url, &[])
}

/// A coordinator on `url` with `extra` arguments; returns it with its address.
fn coordinator_with(dir: &Path, url: &str, extra: &[&str]) -> (Proc, String) {
    let addr_file = dir.join("addr");
    let _ = std::fs::remove_file(&addr_file);
    let token = dir.join("token");
    let mut args = vec![
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
    args.extend_from_slice(extra);
    let mut p = vmx(&args, &dir.join("coordinator.err"));
    let t0 = Instant::now();
    loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file) {
            return (p, a);
        }
        if let Some(st) = p.0.try_wait().unwrap() {
            panic!(
                "the coordinator exited ({st}): {}",
                std::fs::read_to_string(dir.join("coordinator.err")).unwrap_or_default()
            );
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the coordinator did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn connect(addr: &str) -> ClusterClient {
    let token = ClusterToken::new(TOKEN.as_bytes()).unwrap();
    let t0 = Instant::now();
    loop {
        match ClusterClient::connect(addr, &token, Duration::from_secs(5)).await {
            Ok(c) => return c,
            Err(e) if t0.elapsed() > Duration::from_secs(20) => panic!("cannot connect: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn spec(image: vm_executors::distributed::protocol::ImageHash, i: u64) -> TaskSpec {
    TaskSpec {
        image,
        args: vec![b"args_env".to_vec(), i.to_string().into_bytes()],
        env: vec![],
        stdin: vec![],
        limits: TaskLimits { memory_bytes: 64 << 20, ..Default::default() },
    }
}

fn check_result(info: &vm_executors::distributed::protocol::TaskInfo, i: u64) {
    let r = info.result.as_ref().unwrap_or_else(|| panic!("no result: {info:?}"));
    assert_eq!(r.exit, TaskExit::Exited(i as i32));
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains(&format!("argv[1] (len {}) = \"{i}\"", i.to_string().len())), "{out}");
}

/// One line on stderr, no panic, exit status 125.
fn assert_refused(out: &Output, what: &str, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{what}: {err}");
    assert!(!err.to_lowercase().contains("panic"), "{what}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: not one line: {err}");
    assert!(err.contains(needle), "{what}: {err}");
}

#[test]
fn a_postgres_store_keeps_every_task_across_a_kill_9_and_a_database_outage() {
    let Some(server) = pg::PgServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let url = server.new_db("cluster");
    let out = vmx_output(&["coordinator", "--store", &url, "--migrate-only"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "schema at version 2");
    let (coord, addr) = coordinator(dir.path(), &url);
    let token = dir.path().join("token");
    let worker_args = |addr: &str| {
        vec![
            "worker".to_string(),
            "--join".into(),
            addr.into(),
            "--token-file".into(),
            token.to_str().unwrap().into(),
            "--vcpus".into(),
            "1".into(),
        ]
    };
    let wargs = worker_args(&addr);
    let wargs: Vec<&str> = wargs.iter().map(|s| s.as_str()).collect();
    let _worker = vmx(&wargs, &dir.path().join("worker.err"));
    let rt = rt();
    let n = 40;
    rt.block_on(async {
        let client = connect(&addr).await;
        let image = client
            .put_image(std::fs::read(root().join("guests/bin/args_env")).unwrap())
            .await
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(client.submit(TaskType::CpuIntensive, spec(image, i)).await.unwrap());
        }
        for (i, id) in ids.iter().enumerate() {
            check_result(&client.wait(*id).await.unwrap().unwrap(), i as u64);
        }
    });
    assert_eq!(server.sql("cluster", "SELECT count(*) FROM vmx_results").trim(), n.to_string());
    // kill -9, then a new coordinator on the same database serves every result.
    drop(coord);
    let (coord, addr) = coordinator(dir.path(), &url);
    rt.block_on(async {
        let client = connect(&addr).await;
        let s = client.cluster_status().await.unwrap();
        assert_eq!((s.tasks.total(), s.tasks.completed), (n, n), "{:?}", s.tasks);
        for i in 0..n {
            check_result(&client.status(TaskId(i + 1)).await.unwrap().unwrap(), i);
        }
    });
    // The database goes away: a submission fails with a clear error, never a false success.
    server.stop();
    let submit = |what: &str| {
        vmx_output(&[
            "submit",
            "--coordinator",
            &addr,
            "--token-file",
            token.to_str().unwrap(),
            "guests/bin/args_env",
            what,
        ])
    };
    let out = submit("7");
    assert!(!out.status.success(), "a submission succeeded without its database");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot store"), "{err}");
    // It returns: the coordinator reconnects and accepts work again.
    server.start_again();
    let t0 = Instant::now();
    loop {
        let out = submit("8");
        if out.status.success() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no submission after the database returned: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(coord);
}

#[test]
fn bad_stores_are_refused_with_one_line() {
    let Some(server) = pg::PgServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let token = dir.path().join("token");
    let start = |url: &str| {
        vmx_output(&[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--store",
            url,
            "--token-file",
            token.to_str().unwrap(),
        ])
    };
    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = start(&format!("postgres://postgres@127.0.0.1:{closed}/x"));
    assert_refused(&out, "wrong port", "cannot connect to postgres://postgres@127.0.0.1");
    // Not a URL of PostgreSQL.
    assert_refused(&start("mysql://x@y/z"), "wrong scheme", "--store takes a postgres://");
    assert_refused(&start("postgres://x@127.0.0.1:notaport/z"), "bad URL", "not a PostgreSQL URL");
    // A database that does not exist.
    let out = start(&server.url_as("postgres", "nosuchdb"));
    assert_refused(&out, "no database", "nosuchdb");
    // A role that may not create tables.
    server.new_db("locked");
    server.sql("postgres", "CREATE ROLE weak LOGIN");
    server.sql("locked", "REVOKE ALL ON SCHEMA public FROM PUBLIC");
    let out = start(&server.url_as("weak", "locked"));
    assert_refused(&out, "no permission", "the role needs the CREATE privilege");
    // A schema from a newer vmx.
    let url = server.new_db("newer");
    let out = vmx_output(&["coordinator", "--store", &url, "--migrate-only"]);
    assert!(out.status.success());
    server.sql("newer", "INSERT INTO vmx_schema (version, by_vmx) VALUES (99, 'future')");
    assert_refused(&start(&url), "newer schema", "schema version 99, newer than this vmx");
}

/// `--max-queued` with PostgreSQL: with no worker nothing runs, so after 3 submissions the
/// 4th is refused with a clear message; a second coordinator on the same database refuses
/// too once it has counted the database's unfinished tasks (it reads them every half
/// second), and what was accepted stays in the database.
#[test]
fn the_queue_limit_holds_on_the_database() {
    let Some(server) = pg::PgServer::start() else { return };
    let url = server.new_db("queue_limit");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [&da, &db] {
        std::fs::write(d.path().join("token"), TOKEN).unwrap();
    }
    let (_a, addr_a) = coordinator_with(da.path(), &url, &["--max-queued", "3"]);
    let (_b, addr_b) = coordinator_with(db.path(), &url, &["--max-queued", "3"]);
    rt().block_on(async {
        let a = connect(&addr_a).await;
        let image =
            a.put_image(std::fs::read(root().join("guests/bin/args_env")).unwrap()).await.unwrap();
        for i in 0..3 {
            a.submit(TaskType::CpuIntensive, spec(image, i)).await.unwrap();
        }
        let e = a.submit(TaskType::CpuIntensive, spec(image, 3)).await.unwrap_err().to_string();
        assert!(e.contains("the queue is full (3 tasks unfinished in the database)"), "{e}");
        // B counts the database's tasks every half second: after two seconds it knows of
        // A's 3 and refuses before its own submissions alone would reach the limit.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let b = connect(&addr_b).await;
        let b_image =
            b.put_image(std::fs::read(root().join("guests/bin/args_env")).unwrap()).await.unwrap();
        let t0 = Instant::now();
        let mut accepted = 0;
        let e = loop {
            match b.submit(TaskType::CpuIntensive, spec(b_image, 10)).await {
                Ok(_) => accepted += 1,
                Err(e) => break e.to_string(),
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "B never refused");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(e.contains("the queue is full"), "{e}");
        assert!(accepted < 3, "B accepted {accepted}: it did not count A's tasks");
        let counts = a.cluster_status().await.unwrap().tasks;
        assert_eq!(counts.queued, 3 + accepted, "{counts:?}");
        assert_eq!(counts.completed + counts.failed + counts.cancelled, 0, "{counts:?}");
    });
}
