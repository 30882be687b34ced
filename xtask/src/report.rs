//! What every `cargo xtask bench*` command shares: building the release `vmx` it measures,
//! checking for the peer (`qemu-riscv64`), medians, the machine's description, and writing
//! its generated section of `docs/benchmarks.md`.
//!
//! Invariant: a generated section sits between its command's start and end markers and is
//! replaced as a whole; the rest of the file (hand-written analysis, other sections) is kept.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Builds `vmx` in release mode and returns its path.
pub fn build_release_vmx(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(&cargo)
        .args(["build", "--release", "-p", "vm-cli"])
        .current_dir(root)
        .status()
        .context("running cargo build --release")?;
    if !st.success() {
        bail!("release build of vmx failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR").map_or(root.join("target"), PathBuf::from);
    Ok(target.join("release/vmx"))
}

/// Runs `argv` followed by `args` from `root` with stdin closed; returns the wall time and
/// stdout, and fails on a non-zero exit status.
pub fn time_run(argv: &[String], args: &[String], root: &Path) -> Result<(Duration, Vec<u8>)> {
    let t0 = Instant::now();
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", argv.join(" ")))?;
    let dt = t0.elapsed();
    if !out.status.success() {
        bail!("{} {} failed: {}", argv.join(" "), args.join(" "), out.status);
    }
    Ok((dt, out.stdout))
}

/// CPU time (user + system) used so far by this process's waited-for children, from
/// `/proc/self/stat` (in clock ticks of 10 ms); zero where that cannot be read.
pub fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // cutime and cstime are fields 16 and 17.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    let ticks = f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Fails unless `qemu-riscv64`, the peer every ratio is taken against, is installed.
pub fn require_qemu() -> Result<()> {
    if Command::new("qemu-riscv64").arg("--version").output().is_err() {
        bail!("qemu-riscv64 is not installed (apt-get install qemu-user): it is the peer every figure is compared with");
    }
    Ok(())
}

/// The median (the upper one for an even count); `v` must not be empty.
pub fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// The host CPU's model name.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Replaces the section of `docs/benchmarks.md` between `start` and `end` (markers included
/// in `section`) with `section`; without markers yet, appends it under `heading`.
pub fn write_section(
    root: &Path,
    start: &str,
    end: &str,
    heading: &str,
    section: &str,
) -> Result<()> {
    let path = root.join("docs/benchmarks.md");
    let doc = std::fs::read_to_string(&path).context("reading docs/benchmarks.md")?;
    let section = section.trim_end();
    let new = match (doc.find(start), doc.find(end)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &doc[..a], section, &doc[b + end.len()..]),
        _ => format!("{}\n\n## {heading}\n\n{section}\n", doc.trim_end()),
    };
    std::fs::write(&path, new).context("writing docs/benchmarks.md")
}
