//! A damaged task store is refused, never served: a real `vmx coordinator` on a store that
//! held 30 finished tasks, then damaged (truncated, garbage appended, emptied, deleted, bytes
//! flipped), must exit non-zero with one line on stderr (no panic, no backtrace) instead of
//! starting; `--init` starts an empty store and keeps the old file; an intact copy serves
//! every result.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use vm_executors::distributed::auth::ClusterToken;
use vm_executors::distributed::protocol::{TaskExit, TaskId, TaskLimits, TaskSpec, TaskType};
use vm_executors::distributed::ClusterClient;

const TOKEN: &str = "test-token-0123456789abcdef";
const TASKS: u64 = 30;
static SERIAL: Mutex<()> = Mutex::new(());

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

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn token() -> ClusterToken {
    ClusterToken::new(TOKEN.as_bytes()).unwrap()
}

fn vmx(args: &[&str], stderr: &Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_vmx"))
            .args(args)
            .current_dir(root())
            .env_remove("VMX_LOG")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// Starts a coordinator on `data`; returns it and its address once it listens, or its
/// exit status if it exited first.
fn coordinator(dir: &Path, data: &Path, extra: &[&str]) -> Result<(Proc, String), i32> {
    let addr_file = dir.join("addr");
    let _ = std::fs::remove_file(&addr_file);
    let token = dir.join("token");
    let mut args = vec![
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
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
            return Ok((p, a));
        }
        if let Some(st) = p.0.try_wait().unwrap() {
            return Err(st.code().unwrap_or(-1));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the coordinator neither started nor exited"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
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

fn expected_stdout_fragment(i: u64) -> String {
    format!("argv[1] (len {}) = \"{i}\"", i.to_string().len())
}

/// A data directory holding `TASKS` finished tasks (made once, by a coordinator and a
/// worker, then the coordinator killed with SIGKILL), copied for every test.
fn pristine() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), TOKEN).unwrap();
        let data = dir.path().join("data");
        let (coord, addr) = coordinator(dir.path(), &data, &[]).expect("a fresh store starts");
        let _worker = vmx(
            &[
                "worker",
                "--join",
                &addr,
                "--token-file",
                dir.path().join("token").to_str().unwrap(),
                "--vcpus",
                "1",
            ],
            &dir.path().join("worker.err"),
        );
        rt().block_on(async {
            let client = connect(&addr).await;
            let image = client
                .put_image(std::fs::read(root().join("guests/bin/args_env")).unwrap())
                .await
                .unwrap();
            let mut ids = Vec::new();
            for i in 0..TASKS {
                let spec = TaskSpec {
                    image,
                    args: vec![b"args_env".to_vec(), i.to_string().into_bytes()],
                    env: vec![],
                    stdin: vec![],
                    limits: TaskLimits { memory_bytes: 64 << 20, ..Default::default() },
                };
                ids.push(client.submit(TaskType::CpuIntensive, spec).await.unwrap());
            }
            for id in ids {
                let info = client.wait(id).await.unwrap().unwrap();
                assert!(info.status.is_final(), "{info:?}");
            }
        });
        drop(coord);
        dir
    })
    .path()
}

/// A copy of the pristine store in a new directory.
fn copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = pristine();
    std::fs::copy(src.join("token"), dir.path().join("token")).unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    for e in std::fs::read_dir(src.join("data")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join("data").join(e.file_name())).unwrap();
    }
    dir
}

fn db(dir: &Path) -> PathBuf {
    dir.join("data/tasks.redb")
}

/// The coordinator refuses the store in `dir`: a non-zero exit and one line on stderr
/// naming the store, without a panic or a backtrace.
fn assert_refused(dir: &Path, what: &str) -> String {
    match coordinator(dir, &dir.join("data"), &[]) {
        Ok((_p, addr)) => panic!("{what}: the coordinator started on {addr} from a damaged store"),
        Err(code) => assert_ne!(code, 0, "{what}"),
    }
    let err = std::fs::read_to_string(dir.join("coordinator.err")).unwrap();
    assert_one_clean_line(&err, what);
    err
}

fn assert_one_clean_line(err: &str, what: &str) {
    let lower = err.to_lowercase();
    assert!(!lower.contains("panic") && !lower.contains("backtrace"), "{what}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: not one line: {err}");
    assert!(err.starts_with("vmx: ") && err.contains("tasks.redb"), "{what}: {err}");
}

#[test]
fn an_intact_store_serves_every_result_after_a_kill_9() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = copy();
    let (_p, addr) = coordinator(dir.path(), &dir.path().join("data"), &[]).unwrap();
    rt().block_on(async {
        let client = connect(&addr).await;
        for i in 0..TASKS {
            let info = client.status(TaskId(i + 1)).await.unwrap().unwrap();
            let r = info.result.expect("a result");
            assert_eq!(r.exit, TaskExit::Exited(i as i32));
            let out = String::from_utf8_lossy(&r.stdout);
            assert!(out.contains(&expected_stdout_fragment(i)), "{out}");
        }
    });
}

#[test]
fn a_truncated_store_is_refused() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let len = std::fs::metadata(db(pristine())).unwrap().len();
    for keep in [len - 1, len - 4096, len / 2, 4096, 100] {
        let dir = copy();
        std::fs::OpenOptions::new()
            .write(true)
            .open(db(dir.path()))
            .unwrap()
            .set_len(keep)
            .unwrap();
        let err = assert_refused(dir.path(), &format!("truncated to {keep} of {len} bytes"));
        assert!(err.contains("damaged"), "{err}");
    }
}

#[test]
fn a_store_with_garbage_appended_is_refused() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for n in [1usize, 4096, 1 << 20] {
        let dir = copy();
        let mut f = std::fs::OpenOptions::new().append(true).open(db(dir.path())).unwrap();
        f.write_all(&(0..n).map(|i| (i * 131 + 7) as u8).collect::<Vec<_>>()).unwrap();
        drop(f);
        let err = assert_refused(dir.path(), &format!("{n} bytes appended"));
        assert!(err.contains("damaged"), "{err}");
    }
}

#[test]
fn an_empty_or_deleted_store_is_refused_and_init_starts_anew() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = copy();
    std::fs::File::create(db(dir.path())).unwrap();
    let err = assert_refused(dir.path(), "zero-length");
    assert!(err.contains("empty") && err.contains("--init"), "{err}");
    std::fs::remove_file(db(dir.path())).unwrap();
    let err = assert_refused(dir.path(), "deleted");
    assert!(err.contains("missing") && err.contains("--init"), "{err}");
    // --init: an empty store; whatever database was there is kept aside.
    let dir = copy();
    std::fs::OpenOptions::new().write(true).open(db(dir.path())).unwrap().set_len(4096).unwrap();
    let (_p, addr) = coordinator(dir.path(), &dir.path().join("data"), &["--init"]).unwrap();
    rt().block_on(async {
        let client = connect(&addr).await;
        assert_eq!(client.cluster_status().await.unwrap().tasks.total(), 0);
    });
    let kept = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("before-init"))
        .count();
    assert_eq!(kept, 1, "the damaged database is kept aside");
}

/// Offsets of every occurrence of `needle` in `hay`.
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect()
}

/// Runs `vmx coordinator --check-store` on the store in `dir`: `Ok` if it says the store
/// is intact with every task final, `Err` if it refused it with one clean line.
fn check_store(dir: &Path, what: &str) -> Result<(), ()> {
    let out = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .args([
            "coordinator",
            "--data-dir",
            dir.join("data").to_str().unwrap(),
            "--token-file",
            dir.join("token").to_str().unwrap(),
            "--check-store",
        ])
        .env_remove("VMX_LOG")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        // Every record and result carries a checksum checked when the store opens: a store
        // that opens holds what was written.
        assert!(err.is_empty(), "{what}: {err}");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(&format!("intact, {TASKS} tasks ({TASKS} final)")), "{what}: {said}");
        Ok(())
    } else {
        assert_one_clean_line(&err, what);
        Err(())
    }
}

/// Flips one bit at `off` in a copy of the pristine store.
fn flipped(bytes: &[u8], off: usize, bit: u32) -> tempfile::TempDir {
    let dir = copy();
    let mut damaged = bytes.to_vec();
    damaged[off] ^= 1 << bit;
    std::fs::write(db(dir.path()), &damaged).unwrap();
    dir
}

#[test]
fn a_flipped_byte_in_results_and_records_is_refused_or_harmless() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = std::fs::read(db(pristine())).unwrap();
    // Bytes of results' stdout and of task records' argv. Copy-on-write leaves older
    // copies in free pages: a flip there changes nothing, one in a live copy is refused.
    let (mut refused, mut harmless) = (0, 0);
    for needle in [&b"argv[1] (len"[..], &b"args_env"[..]] {
        let all = find_all(&bytes, needle);
        // At most 20 of each, spread over the file.
        for off in all.iter().copied().step_by(all.len().div_ceil(20)) {
            let dir = flipped(&bytes, off + 2, 2);
            match check_store(dir.path(), &format!("flip at {off}")) {
                Ok(()) => harmless += 1,
                Err(()) => refused += 1,
            }
        }
    }
    eprintln!("flips in results and records: {refused} refused, {harmless} in free pages");
    assert!(refused >= 10, "{refused} refused");
    // The real coordinator refuses such a store too.
    for off in find_all(&bytes, b"argv[1] (len") {
        let dir = flipped(&bytes, off + 2, 2);
        if check_store(dir.path(), "again").is_err() {
            let err = assert_refused(dir.path(), &format!("flip at {off}"));
            assert!(err.contains("damaged"), "{err}");
            return;
        }
    }
    panic!("no flip in a result was refused");
}

#[test]
fn random_byte_flips_are_refused_or_harmless() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = std::fs::read(db(pristine())).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (mut refused, mut harmless) = (0, 0);
    for _ in 0..24 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let off = (seed % bytes.len() as u64) as usize;
        let dir = flipped(&bytes, off, (seed >> 61) as u32);
        match check_store(dir.path(), &format!("flip at {off}")) {
            Ok(()) => harmless += 1,
            Err(()) => refused += 1,
        }
    }
    eprintln!("24 random flips: {refused} refused, {harmless} in unused space");
    assert!(refused > 0, "no flip was noticed");
}
