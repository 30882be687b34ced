//! The guest-vs-qemu harness's shared vocabulary: what a guest case run shows ([`Outcome`]),
//! the ground truth recorded from `qemu-riscv64` in `guests/expected/` ([`Outcome::stored`]),
//! and where a case's files are. Used by the in-process case runner
//! (`vm-exec-jit/tests/guests.rs`) and the `vmx` differential test
//! (`vm-cli/tests/differential.rs`).

use crate::manifest::Case;
use std::path::{Path, PathBuf};

/// What a run of a guest case shows: its output streams and how it ended, as
/// `exit CODE` or `signal NUMBER` (the form of `guests/expected/NAME.status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Everything the guest wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything the guest wrote to stderr.
    pub stderr: Vec<u8>,
    /// `exit CODE` or `signal NUMBER`.
    pub status: String,
}

impl Outcome {
    /// The ground truth recorded for `case` (`cargo xtask guests truth`) under `root`.
    /// Panics with the case's name when a file is missing: a case without truth is a
    /// broken checkout.
    pub fn stored(root: &Path, case: &Case) -> Outcome {
        let base = root.join("guests/expected").join(&case.name);
        let read = |ext: &str| {
            std::fs::read(base.with_extension(ext))
                .unwrap_or_else(|e| panic!("ground truth for {}: {e}", case.name))
        };
        Outcome {
            stdout: read("stdout"),
            stderr: read("stderr"),
            status: String::from_utf8_lossy(&read("status")).trim().to_string(),
        }
    }

    /// The outcome for a failure message: status, then both streams.
    pub fn describe(&self) -> String {
        format!(
            "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }
}

/// The file whose bytes are `case`'s stdin, if it has one.
pub fn stdin_path(root: &Path, case: &Case) -> Option<PathBuf> {
    case.stdin.as_ref().map(|f| root.join("guests").join(f))
}
