//! What `vmx run` passes from the process that started it to the guest, beyond argv, the
//! environment and the standard streams: ignored signal dispositions. A program started with
//! a signal ignored (`nohup` ignores `SIGHUP`, a shell's background job `SIGINT`) keeps it
//! ignored across `execve`, and qemu-riscv64 passes its own on to its guest; `vmx run` must
//! too, on every engine. Compared with qemu when it is installed (required under
//! `VMX_REQUIRE_QEMU`).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Runs `program args` with `ignored` set to `SIG_IGN` (and every other catchable signal at
/// its default) in the child before it executes.
fn run_with_ignored(program: &str, args: &[&str], ignored: &'static [i32]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(repo_root()).stdin(Stdio::null());
    // SAFETY: between fork and exec the closure only calls `signal`, which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for sig in 1..=31 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP && sig != libc::SIGPIPE {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            for &sig in ignored {
                libc::signal(sig, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    cmd.output().expect("start the runner")
}

fn qemu_available() -> bool {
    vm_test_support::tools::required("qemu-riscv64", "VMX_REQUIRE_QEMU", "inherited (against qemu)")
}

#[test]
fn ignored_signals_reach_the_guest_as_under_qemu() {
    let cases: [(&'static [i32], &str); 3] = [
        (&[], "ignored:\n"),
        (&[libc::SIGHUP], "ignored: 1\n"),
        (&[libc::SIGINT, libc::SIGQUIT, libc::SIGUSR1, libc::SIGTERM], "ignored: 2 3 10 15\n"),
    ];
    let qemu = qemu_available();
    for (ignored, expected) in cases {
        if qemu {
            let out = run_with_ignored("qemu-riscv64", &["guests/bin/sigdisp"], ignored);
            assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "qemu, {ignored:?}");
        }
        for engine in ["interp", "jit", "hybrid"] {
            let out = run_with_ignored(
                env!("CARGO_BIN_EXE_vmx"),
                &["run", "--engine", engine, "guests/bin/sigdisp"],
                ignored,
            );
            assert!(
                out.status.success(),
                "{engine}: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{engine}, {ignored:?}");
        }
    }
}
