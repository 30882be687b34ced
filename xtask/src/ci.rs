//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.
//!
//! 1. `cargo fmt --check`;
//! 2. `cargo clippy --workspace --all-targets -- -D warnings`;
//! 3. `cargo test --workspace` (the differential tests run qemu-riscv64 when installed);
//! 4. `cargo doc --workspace --no-deps` with warnings as errors;
//! 5. the loom model tests of the scheduler's parking protocol (`--cfg loom`, own target
//!    directory so the flag does not rebuild everything else);
//! 6. when the RISC-V cross compiler is installed, `cargo xtask guests build --check`
//!    (the committed guest binaries are exactly what their sources build to).

use anyhow::{bail, Context, Result};
use std::process::Command;

fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask ci: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(crate::repo_root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs the CI suite.
pub fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("`cargo xtask ci` takes no arguments (got `{a}`)");
    }
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])?;
    cargo(&["test", "--workspace"], &[])?;
    cargo(&["doc", "--workspace", "--no-deps"], &[("RUSTDOCFLAGS", "-D warnings")])?;
    cargo(
        &["test", "-p", "vm-coroutine", "--release", "loom"],
        &[("RUSTFLAGS", "--cfg loom"), ("CARGO_TARGET_DIR", "target/loom")],
    )?;
    let have_cross = Command::new("riscv64-linux-gnu-gcc").arg("--version").output().is_ok();
    if have_cross {
        crate::guests::run(&["build".into(), "--check".into()])?;
    } else {
        eprintln!(
            "xtask ci: SKIPPED the guest rebuild check: riscv64-linux-gnu-gcc is not installed \
             (apt-get install -y gcc-riscv64-linux-gnu libc6-dev-riscv64-cross)"
        );
    }
    eprintln!("xtask ci: all checks passed");
    Ok(())
}
