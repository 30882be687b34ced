//! Go programs of our own (`guests/go/*`: goroutines with timers and contexts, file I/O,
//! `net/http` on loopback with `--net`, unix sockets, a call-free hot loop with `runtime.GC()`,
//! `os/exec` and `os/signal`),
//! cross-built at test time with the Go toolchain
//! (`GOOS=linux GOARCH=riscv64 CGO_ENABLED=0 go build`; binaries are never committed), run
//! under `qemu-riscv64` and under `vmx run` with every engine and 1, 2 and 4 vCPUs: stdout,
//! stderr and exit status must be identical.
//!
//! The binaries go to `target/tmp/go-guests`, Go's build cache to `~/.cache/vmx/go-build`
//! (unless `GOCACHE` is set), so only the first build on a machine compiles the standard
//! library for riscv64. Without `go` or `qemu-riscv64` the test says so and passes, unless
//! `VMX_REQUIRE_QEMU=1` (CI), where a missing tool is a failure.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const ENGINES: &[&str] = &["interp", "jit", "hybrid"];
const VCPUS: &[usize] = &[1, 2, 4];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn required() -> bool {
    std::env::var("VMX_REQUIRE_QEMU").is_ok_and(|v| v == "1")
}

fn have(tool: &str) -> bool {
    vm_test_support::tools::installed(tool, if tool == "go" { "version" } else { "--version" })
}

/// Whether the tools are there; panics in CI when they are not.
fn tools() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let missing: Vec<&str> = ["go", "qemu-riscv64"].into_iter().filter(|t| !have(t)).collect();
        if missing.is_empty() {
            return true;
        }
        assert!(!required(), "VMX_REQUIRE_QEMU=1 but {missing:?} not installed");
        eprintln!("SKIPPED: Go guests need {missing:?} (apt-get install golang-go qemu-user)");
        false
    })
}

/// Builds `guests/go/NAME` for riscv64 and returns the binary.
fn build(name: &str) -> PathBuf {
    let root = repo_root();
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-guests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(name);
    let mut cmd = vm_test_support::tools::go_build(&root, name, &out);
    let o = cmd.output().expect("run go build");
    assert!(o.status.success(), "go build {name}: {}", String::from_utf8_lossy(&o.stderr));
    out
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    stdout: String,
    stderr: String,
    status: String,
}

fn run(prefix: &[String], bin: &Path, args: &[String]) -> Outcome {
    let mut cmd = Command::new(&prefix[0]);
    cmd.args(&prefix[1..]).arg(bin).args(args).env_clear().stdin(Stdio::null());
    let out = cmd.output().expect("spawn");
    let status = match (out.status.code(), out.status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown".into(),
    };
    Outcome {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status,
    }
}

/// Runs Go program `name` with `args` under qemu and every engine and vCPU count of vmx
/// (with `vmx_flags` added) and compares.
fn differential(name: &str, args: &[String], vmx_flags: &[String]) {
    if !tools() {
        return;
    }
    let bin = build(name);
    let want = run(&["qemu-riscv64".to_string()], &bin, args);
    assert!(want.status == "exit 0", "{name} under qemu-riscv64: {want:?}");
    let vmx = env!("CARGO_BIN_EXE_vmx").to_string();
    for engine in ENGINES {
        for vcpus in VCPUS {
            let mut prefix = vec![vmx.clone(), "run".into(), "--engine".into(), engine.to_string()];
            prefix.extend(["--vcpus".to_string(), vcpus.to_string()]);
            prefix.extend(vmx_flags.iter().cloned());
            let got = run(&prefix, &bin, args);
            assert_eq!(got, want, "{name} {args:?} with --engine {engine} --vcpus {vcpus}");
        }
    }
}

#[test]
fn go_goroutines_timers_sleep_and_context() {
    differential("timers", &[], &[]);
}

#[test]
fn go_file_io_from_goroutines() {
    let dir = tempdir("fileio");
    let d = dir.to_string_lossy().into_owned();
    differential("fileio", std::slice::from_ref(&d), &["--dir".into(), d.clone()]);
    std::fs::remove_dir_all(&dir).ok();
}

/// `os/exec` (the program runs itself: pipes, environment, exit status, a missing program,
/// 20 children killed by a SIGTERM sent right after `Start`, which races with their
/// `execve`) and `os/signal` (`signal.Notify` of a signal sent to itself, one from its child
/// and SIGCHLD; `signal.Ignore`). Its directory is granted so that it can execute itself.
#[test]
fn go_os_exec_and_os_signal() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-guests");
    let d = dir.to_string_lossy().into_owned();
    differential("procsig", &[], &["--dir".into(), d]);
}

/// A fresh, empty directory under the target directory.
fn tempdir(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("go-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.canonicalize().unwrap()
}

#[test]
fn go_net_http_on_loopback_with_net() {
    differential("nethttp", &[], &["--net".into()]);
}

#[test]
fn go_unix_sockets_by_path_and_abstract_name() {
    let dir = tempdir("unixsock");
    let d = dir.to_string_lossy().into_owned();
    differential("unixsock", std::slice::from_ref(&d), &["--dir".into(), d.clone()]);
    std::fs::remove_dir_all(&dir).ok();
}

/// Without `--net` no socket reaches the network: the server cannot even listen.
#[test]
fn go_net_http_without_net_is_refused() {
    if !tools() {
        return;
    }
    let bin = build("nethttp");
    let vmx = env!("CARGO_BIN_EXE_vmx").to_string();
    let got = run(&[vmx, "run".into()], &bin, &[]);
    assert_eq!(got.status, "exit 1", "{got:?}");
    assert_eq!(
        got.stdout, "listen: listen tcp 127.0.0.1:0: socket: permission denied\n",
        "{got:?}"
    );
}

/// A call-free hot loop in goroutines while the main goroutine runs `runtime.GC()`: the
/// collector stops them only through asynchronous preemption (`tgkill(SIGURG)` delivered to
/// the runtime's handler on the spinning thread). Without signal delivery it hangs.
#[test]
fn go_call_free_hot_loop_with_gc_does_not_hang() {
    differential("hotloop", &[], &[]);
}
