//! The guest program and its arguments, as every command that runs or submits one takes them
//! (`run`, `batch`, `submit`, `bench-client`): one clap struct, flattened into each, and the
//! one place that turns them into `argv`, program bytes and an executable path.

use anyhow::{Context, Result};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use vm_executors::Program;

/// The program to run and its arguments (the last positional arguments of a command).
#[derive(clap::Args, Debug, Clone)]
pub struct GuestArgs {
    /// The program to run.
    pub program: PathBuf,
    /// Arguments passed to the program.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

impl GuestArgs {
    /// The guest's `argv`: the program path as given, then its arguments.
    pub fn argv(&self) -> Vec<Vec<u8>> {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(|a| a.as_os_str()))
            .map(|a| a.as_bytes().to_vec())
            .collect()
    }

    /// The program file's contents.
    pub fn read(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.program)
            .with_context(|| format!("cannot read {}", self.program.display()))
    }

    /// The program, opened (its header checked before the file is mapped) and parsed.
    pub fn parse(&self) -> Result<Program> {
        Program::open(&self.program)
            .with_context(|| format!("cannot run {}", self.program.display()))
    }

    /// The host path the guest sees as its executable (`/proc/self/exe`): the canonical path,
    /// or the path as given if it cannot be resolved.
    pub fn exe_path(&self) -> PathBuf {
        std::fs::canonicalize(&self.program).unwrap_or_else(|_| self.program.clone())
    }
}

/// `--memory` in MiB as bytes.
pub fn memory_bytes(mib: u64) -> Result<u64> {
    mib.checked_mul(1 << 20).context("--memory is too large")
}
