//! External tools the tests compare against or drive (`qemu-riscv64`, `gdb-multiarch`, `go`):
//! whether they are installed, and the one rule for when they are not. A developer without
//! the tool sees the test say plainly that it was skipped; CI sets the test's `VMX_REQUIRE_*`
//! variable, which turns a missing tool into a failure, so nothing is skipped there.

use std::process::{Command, Stdio};

/// Whether `program` is installed: `program arg` (a version query) starts and exits 0.
pub fn installed(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `program` is installed (`program --version` succeeds). When it is not: panics if
/// the environment variable `require` is set, else prints that `what` was skipped.
pub fn required(program: &str, require: &str, what: &str) -> bool {
    let ok = installed(program, "--version");
    if !ok {
        assert!(
            std::env::var_os(require).is_none(),
            "{require} is set but {program} is not installed"
        );
        eprintln!("{what}: {program} not installed; skipped");
    }
    ok
}

/// The `go build` that makes the Go guest `guests/go/NAME` a static riscv64 Linux program at
/// `out` (`GOOS=linux GOARCH=riscv64 CGO_ENABLED=0`, module mode, reproducible paths), with
/// the build cache under `~/.cache/vmx/go-build` unless `GOCACHE` says otherwise. The one
/// recipe the Go tests and `cargo xtask bench-real` build with.
pub fn go_build(root: &std::path::Path, name: &str, out: &std::path::Path) -> Command {
    let mut cmd = Command::new("go");
    cmd.current_dir(root.join("guests/go"))
        .args(["build", "-trimpath", "-o"])
        .arg(out)
        .arg(format!("./{name}"))
        .env("GOOS", "linux")
        .env("GOARCH", "riscv64")
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=mod")
        .env("GO111MODULE", "on");
    if std::env::var_os("GOCACHE").is_none() {
        if let Some(home) = std::env::var_os("HOME") {
            cmd.env("GOCACHE", std::path::Path::new(&home).join(".cache/vmx/go-build"));
        }
    }
    cmd
}
