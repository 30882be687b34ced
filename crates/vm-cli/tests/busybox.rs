//! Debian's riscv64 `busybox-static` running the shell scripts in `guests/busybox/` (pipes,
//! subshells, command substitution, redirects, `trap`, `kill`, background jobs, `timeout`, `xargs`,
//! `tar -z`) under `vmx run` with every engine, against live `qemu-riscv64`: identical stdout,
//! stderr and status.
//!
//! The root comes from `cargo xtask rootfs DIR busybox-static` (CI's `.ci/run` makes it and
//! sets `VMX_BUSYBOX_ROOT=DIR`). Without it the test says so and passes, unless
//! `VMX_REQUIRE_BUSYBOX=1` (CI) makes that a failure. Each script runs in a fresh work
//! directory with `PATH` set to a directory of applet links to the root's busybox.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

const APPLETS: &[&str] = &[
    "sh", "tr", "wc", "sort", "uniq", "cat", "xargs", "echo", "seq", "tail", "head", "tar", "gzip",
    "sleep", "true", "false", "ls", "mkdir", "rm", "grep", "sed", "printf", "timeout",
];

/// `name` found on this process's `PATH` (the children get a `PATH` of applets only).
fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
        .unwrap_or_else(|| panic!("{name} is not installed"))
}

fn run(cmd: &mut Command) -> (Vec<u8>, Vec<u8>, Option<i32>) {
    let out = cmd.output().expect("spawn");
    (out.stdout, out.stderr, out.status.code())
}

#[test]
fn busybox_scripts_match_qemu() {
    let Some(bb_root) = std::env::var_os("VMX_BUSYBOX_ROOT").map(PathBuf::from) else {
        assert!(
            std::env::var_os("VMX_REQUIRE_BUSYBOX").is_none(),
            "VMX_REQUIRE_BUSYBOX is set but VMX_BUSYBOX_ROOT is not"
        );
        eprintln!(
            "NOTE: VMX_BUSYBOX_ROOT is not set: busybox scripts skipped (make a root with \
             `cargo xtask rootfs DIR busybox-static` and set VMX_BUSYBOX_ROOT=DIR)"
        );
        return;
    };
    let busybox = bb_root.join("usr/bin/busybox").canonicalize().expect("busybox in the root");
    let root = repo_root();
    let scripts = root.join("guests/busybox");
    let work_base = std::env::temp_dir().join(format!("vmx-busybox-test-{}", std::process::id()));
    let applets = work_base.join("applets");
    std::fs::create_dir_all(&applets).unwrap();
    for a in APPLETS {
        let _ = std::os::unix::fs::symlink(&busybox, applets.join(a));
    }
    let mut names: Vec<_> = std::fs::read_dir(&scripts)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "guests/busybox has the scripts");
    let qemu = which("qemu-riscv64");
    let mut failures = Vec::new();
    for script in &names {
        let fresh = |tag: &str| {
            let d =
                work_base.join(format!("{}-{tag}", script.file_stem().unwrap().to_string_lossy()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            d.canonicalize().unwrap()
        };
        let base = |runner: &Path, dir: &Path| {
            let mut c = Command::new(runner);
            c.env_clear().env("PATH", &applets).current_dir(dir);
            c
        };
        let qdir = fresh("qemu");
        let reference = run(base(&qemu, &qdir).arg(&busybox).arg("sh").arg(script));
        for engine in ["interp", "jit", "hybrid"] {
            let dir = fresh(engine);
            let mut c = base(Path::new(env!("CARGO_BIN_EXE_vmx")), &dir);
            c.args(["run", "--engine", engine, "--dir"])
                .arg(&dir)
                .arg("--dir")
                .arg(&bb_root)
                .arg("--dir")
                .arg(&scripts)
                .arg("--dir")
                .arg(&applets)
                .arg(&busybox)
                .arg("sh")
                .arg(script);
            let got = run(&mut c);
            if got != reference {
                failures.push(format!(
                    "{} under {engine}:\n--- qemu ({:?}) ---\n{}{}\n--- vmx ({:?}) ---\n{}{}",
                    script.display(),
                    reference.2,
                    String::from_utf8_lossy(&reference.0),
                    String::from_utf8_lossy(&reference.1),
                    got.2,
                    String::from_utf8_lossy(&got.0),
                    String::from_utf8_lossy(&got.1)
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work_base);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
