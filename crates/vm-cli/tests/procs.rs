//! Processes under `vmx run` that the differential test cannot run under qemu: a fork bomb
//! (qemu would fork real host processes up to the host's limits) must end with `EAGAIN` in
//! the guest at the sandbox's process cap, on every engine, and leave the host unharmed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[test]
fn a_fork_bomb_ends_with_eagain_in_the_guest() {
    let root = repo_root();
    for engine in ["interp", "jit", "hybrid"] {
        let out = Command::new(env!("CARGO_BIN_EXE_vmx"))
            .current_dir(&root)
            .args(["run", "--engine", engine, "--vcpus", "2", "guests/bin/forkbomb"])
            .output()
            .expect("run vmx");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout,
            "fork failed after >=100 children: Resource temporarily unavailable\nreaped all: 1\n",
            "{engine}: stderr {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{engine}: {:?}", out.status);
    }
}
