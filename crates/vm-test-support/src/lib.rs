//! Test support shared by the crates of vm-executors (`publish = false`, as wasmtime's
//! `crates/test-util`): written once, used by every test that needs it.
//!
//! - [`manifest`]: the parser of `guests/cases.txt` (also `cargo xtask guests`'s).
//! - [`guests`]: the guest-vs-qemu harness's [`guests::Outcome`] and stored ground truth.
//! - [`programs`]: hand-assembled guest programs for the engine tests, so every engine is
//!   checked on the very same programs.
//! - [`pg`]: a throw-away PostgreSQL server for the store tests.
//! - [`tools`]: whether an external tool (qemu, gdb, go) is installed, and the skip rule.
//!
//! Invariant: this crate names no engine (it depends on `vm-exec-core` only), so any crate
//! may take it as a dev-dependency without the dependency graph changing direction; the
//! list of engine configurations lives with the tests that have the engines.

pub mod guests;
pub mod manifest;
pub mod pg;
pub mod programs;
pub mod tools;

/// The repository's root directory (where `guests/` is), from this crate's location,
/// canonicalized.
pub fn repo_root() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}
