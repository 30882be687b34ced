//! `cargo xtask fuzz [--cases N] [--seed S]`: a long run of the randomized differential test
//! (generated RV64GC programs under the interpreter, the JIT with and without chaining, with
//! fuel slices, and the hybrid; registers, fcsr and memory must agree). CI runs a short
//! version through `cargo test`; this is the soak.

use anyhow::{bail, Context, Result};
use std::process::Command;

/// Runs the soak.
pub fn run(args: &[String]) -> Result<()> {
    let mut cases = "200000".to_string();
    let mut seed = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cases" => cases = it.next().context("--cases needs a number")?.clone(),
            "--seed" => seed = Some(it.next().context("--seed needs a number")?.clone()),
            other => bail!("unknown fuzz argument `{other}`"),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["test", "--release", "-p", "vm-exec-jit", "--test", "random", "--", "--nocapture"])
        .env("VMX_RANDOM_CASES", &cases)
        .current_dir(crate::repo_root());
    if let Some(s) = &seed {
        cmd.env("VMX_RANDOM_SEED", s);
    }
    eprintln!(
        "xtask fuzz: {cases} generated programs, seed {}",
        seed.as_deref().unwrap_or("default")
    );
    if !cmd.status()?.success() {
        bail!("the randomized differential test failed (rerun with the seed it printed)");
    }
    Ok(())
}
