//! `cargo xtask rootfs DIR [PACKAGE...]`: a riscv64 root file system from Debian's packages.
//!
//! A user without a RISC-V machine gets a root for `vmx run --root DIR` (or
//! `qemu-riscv64 -L DIR`) in one command. Packages come from Debian trixie's riscv64 archive
//! through a PRIVATE apt configuration: its own `sources.list`, lists, empty `dpkg` status and
//! package cache under the cache directory (`$VMX_CACHE_DIR`, else `$XDG_CACHE_HOME/vmx`,
//! else `~/.cache/vmx`), never the host's sources or state. The mirror is the one the host's
//! apt sources name for Debian (`$VMX_DEBIAN_MIRROR` overrides it); the archive signature is
//! checked against `/usr/share/keyrings/debian-archive-keyring.gpg`.
//!
//! Steps: `apt-get update` (when the lists are missing or older than a day, or with
//! `--refresh`), `apt-get install --download-only` against the empty status file, which
//! resolves `Depends`/`Pre-Depends` recursively and downloads into the cache (kept between
//! runs), `dpkg-deb -x` of every resolved package into a fresh `DIR.partial`, the usr-merge
//! links (`bin -> usr/bin`, `lib -> usr/lib`, ...), Debian's base accounts in `etc/passwd`
//! and `etc/group`, then a rename to `DIR`. Maintainer scripts
//! are not run (no alternatives, no generated configuration), as under `qemu-riscv64 -L`.
//!
//! Invariants: an existing `DIR` is replaced only when it is empty or was made by this command
//! (it holds the [`STAMP`] file); a root whose stamp lists the same packages is reused as is.
//!
//! Other xtask commands call [`ensure_root`].

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// The Debian suite the roots are built from.
pub const SUITE: &str = "trixie";
/// The file in a finished root that records what it was built from.
pub const STAMP: &str = ".vmx-rootfs";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Directories that Debian's usr-merge turns into links to their `usr/` counterpart.
const MERGED: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

const USAGE: &str =
    "usage: cargo xtask rootfs [--refresh] DIR [PACKAGE...]  (default package: libc6)";

/// `cargo xtask rootfs`.
pub fn run(args: &[String]) -> Result<()> {
    let mut refresh = false;
    let mut dir = None;
    let mut packages = Vec::new();
    for a in args {
        match a.as_str() {
            "--refresh" => refresh = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            s if s.starts_with('-') => bail!("unknown option `{s}`\n{USAGE}"),
            s if dir.is_none() => dir = Some(PathBuf::from(s)),
            s => packages.push(s.to_string()),
        }
    }
    let Some(dir) = dir else { bail!("no root directory given\n{USAGE}") };
    if packages.is_empty() {
        packages.push("libc6".into());
    }
    let pkgs: Vec<&str> = packages.iter().map(String::as_str).collect();
    if refresh {
        ensure_root_with(&dir, &pkgs, true)?;
    } else {
        ensure_root(&dir, &pkgs)?;
    }
    eprintln!(
        "xtask rootfs: {} is ready (Debian {SUITE} riscv64: {})",
        dir.display(),
        pkgs.join(" ")
    );
    Ok(())
}

/// The cache directory shared by the vmx tooling (`$VMX_CACHE_DIR`, `$XDG_CACHE_HOME/vmx`
/// or `~/.cache/vmx`).
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VMX_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("vmx");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/vmx")
}

/// Makes sure `dir` is a root holding `packages` (and their dependencies), building it when
/// it is missing or was built from another package list.
pub fn ensure_root(dir: &Path, packages: &[&str]) -> Result<()> {
    ensure_root_with(dir, packages, false)
}

fn stamp_text(packages: &[&str]) -> String {
    let mut p: Vec<&str> = packages.to_vec();
    p.sort_unstable();
    p.dedup();
    format!("debian {SUITE} riscv64\npackages: {}\n", p.join(" "))
}

fn ensure_root_with(dir: &Path, packages: &[&str], refresh: bool) -> Result<()> {
    let stamp = stamp_text(packages);
    if !refresh && std::fs::read_to_string(dir.join(STAMP)).is_ok_and(|s| s == stamp) {
        return Ok(());
    }
    if dir.exists() && !replaceable(dir)? {
        bail!(
            "{} exists and was not made by `cargo xtask rootfs` (no {STAMP} in it): \
             refusing to replace it",
            dir.display()
        );
    }
    let apt = Apt::new()?;
    apt.update(refresh)?;
    let debs = match apt.download(packages) {
        Ok(d) => d,
        // Stale lists name versions the mirror has dropped: refresh once and retry.
        Err(e) if !refresh => {
            eprintln!("xtask rootfs: download failed ({e:#}); refreshing the package lists");
            apt.update(true)?;
            apt.download(packages)?
        }
        Err(e) => return Err(e),
    };
    let partial = partial_path(dir);
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    for deb in &debs {
        let st = Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(&partial)
            .status()
            .context("running dpkg-deb (apt-get install dpkg)")?;
        if !st.success() {
            bail!("dpkg-deb -x {} failed ({st})", deb.display());
        }
    }
    usr_merge(&partial)?;
    base_accounts(&partial)?;
    std::fs::write(partial.join(STAMP), &stamp)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(&partial, dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    eprintln!("xtask rootfs: extracted {} packages into {}", debs.len(), dir.display());
    Ok(())
}

fn partial_path(dir: &Path) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// Whether an existing `dir` may be replaced: it is empty or holds our stamp.
fn replaceable(dir: &Path) -> Result<bool> {
    if dir.join(STAMP).is_file() {
        return Ok(true);
    }
    let mut rd = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    Ok(rd.next().is_none())
}

/// Turns `root/bin`, `root/lib`, ... into links to `usr/bin`, `usr/lib`, ... as on a
/// usr-merged Debian system, moving any files a package put in the top-level directory.
fn usr_merge(root: &Path) -> Result<()> {
    for name in MERGED {
        let top = root.join(name);
        let usr = root.join("usr").join(name);
        let meta = std::fs::symlink_metadata(&top).ok();
        if meta.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        if meta.as_ref().is_some_and(|m| m.is_dir()) {
            merge_dir(&top, &usr)?;
            std::fs::remove_dir_all(&top)?;
        } else if meta.is_some() || !usr.is_dir() {
            continue;
        }
        std::os::unix::fs::symlink(Path::new("usr").join(name), &top)
            .with_context(|| format!("linking {}", top.display()))?;
    }
    Ok(())
}

/// Writes `etc/passwd` and `etc/group` with Debian's base accounts (what `base-passwd`'s
/// maintainer script would install), unless a package shipped them, so that programs map
/// user and group ids to names from the root rather than from the host.
fn base_accounts(root: &Path) -> Result<()> {
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc)?;
    let files = [
        (
            "passwd",
            "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
             bin:x:2:2:bin:/bin:/usr/sbin/nologin\nsys:x:3:3:sys:/dev:/usr/sbin/nologin\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        ),
        ("group", "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nnogroup:x:65534:\n"),
    ];
    for (name, text) in files {
        let path = etc.join(name);
        if !path.exists() {
            std::fs::write(&path, text)?;
        }
    }
    Ok(())
}

/// Moves every entry of `from` into `to` (recursively for directories present in both);
/// an entry already in `to` wins.
fn merge_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        let ft = e.file_type()?;
        match std::fs::symlink_metadata(&dst) {
            Err(_) => std::fs::rename(e.path(), &dst)
                .with_context(|| format!("moving {} to {}", e.path().display(), dst.display()))?,
            Ok(m) if m.is_dir() && ft.is_dir() => merge_dir(&e.path(), &dst)?,
            Ok(_) => {}
        }
    }
    Ok(())
}

/// The mirror the host's apt sources use for the main Debian archive.
fn host_mirror() -> String {
    if let Ok(m) = std::env::var("VMX_DEBIAN_MIRROR") {
        return m.trim_end_matches('/').to_string();
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sources" || x == "list"))
            .collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            // deb822 `URIs: a b` or one-line `deb [opts] URI suite comp...`.
            let words: Vec<&str> = if let Some(rest) = line.strip_prefix("URIs:") {
                rest.split_whitespace().collect()
            } else if line.starts_with("deb ") {
                line.split_whitespace().filter(|w| w.contains("://")).collect()
            } else {
                continue;
            };
            if let Some(u) = words.iter().find(|u| u.trim_end_matches('/').ends_with("/debian")) {
                return u.trim_end_matches('/').to_string();
            }
        }
    }
    DEFAULT_MIRROR.to_string()
}

/// The private apt configuration.
struct Apt {
    base: PathBuf,
    opts: Vec<String>,
}

impl Apt {
    fn new() -> Result<Apt> {
        if !Path::new(KEYRING).is_file() {
            bail!("{KEYRING} is missing (apt-get install debian-archive-keyring)");
        }
        let base = cache_dir().join(format!("debian/{SUITE}-riscv64"));
        for d in ["lists/partial", "archives/partial", "cache", "empty.d"] {
            std::fs::create_dir_all(base.join(d))
                .with_context(|| format!("creating {}", base.join(d).display()))?;
        }
        let mirror = host_mirror();
        std::fs::write(
            base.join("sources.list"),
            format!("deb [arch=riscv64 signed-by={KEYRING}] {mirror} {SUITE} main\n"),
        )?;
        std::fs::write(base.join("status"), "")?;
        let p = |s: &str| base.join(s).display().to_string();
        let opts = [
            format!("Dir::Etc::sourcelist={}", p("sources.list")),
            format!("Dir::Etc::sourceparts={}", p("empty.d")),
            format!("Dir::Etc::preferences={}", p("empty.d/none")),
            format!("Dir::Etc::preferencesparts={}", p("empty.d")),
            format!("Dir::State={}", p("")),
            format!("Dir::State::Lists={}", p("lists")),
            format!("Dir::State::status={}", p("status")),
            format!("Dir::Cache={}", p("cache")),
            format!("Dir::Cache::archives={}", p("archives")),
            "APT::Architecture=riscv64".into(),
            "APT::Architectures::=riscv64".into(),
            "APT::Install-Recommends=false".into(),
            "APT::Sandbox::User=root".into(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false".into(),
            "Debug::NoLocking=true".into(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect();
        Ok(Apt { base, opts })
    }

    fn apt_get(&self, args: &[&str]) -> Command {
        let mut c = Command::new("apt-get");
        c.args(&self.opts).args(["-q", "-y"]).args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    /// `apt-get update` when the lists are missing, more than a day old, or `force`.
    fn update(&self, force: bool) -> Result<()> {
        let lists = self.base.join("lists");
        let newest = std::fs::read_dir(&lists)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("_Packages"))
            .filter_map(|e| e.metadata().ok()?.modified().ok())
            .max();
        let fresh = newest.is_some_and(|t| {
            SystemTime::now().duration_since(t).is_ok_and(|age| age < LISTS_MAX_AGE)
        });
        if fresh && !force {
            return Ok(());
        }
        eprintln!("xtask rootfs: apt-get update (Debian {SUITE} riscv64, private configuration)");
        let out = self.apt_get(&["update"]).stdout(Stdio::null()).output()?;
        // apt-get update exits 0 on some fetch failures; a warning/error line says so.
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success()
            || err.lines().any(|l| l.starts_with("E:") || l.starts_with("W: Failed"))
        {
            bail!("apt-get update failed ({}):\n{err}", out.status);
        }
        Ok(())
    }

    /// Resolves `packages` and their dependencies, downloads them into the cache, and returns
    /// the paths of their `.deb` files in installation order.
    fn download(&self, packages: &[&str]) -> Result<Vec<PathBuf>> {
        let mut args = vec!["install", "-s"];
        args.extend_from_slice(packages);
        let out = self.apt_get(&args).output().context("running apt-get (is apt installed?)")?;
        if !out.status.success() {
            bail!(
                "resolving {} failed:\n{}",
                packages.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let plan = String::from_utf8_lossy(&out.stdout);
        let mut debs = Vec::new();
        for line in plan.lines() {
            let Some(rest) = line.strip_prefix("Inst ") else { continue };
            debs.push(self.base.join("archives").join(deb_file_name(rest)?));
        }
        if debs.is_empty() {
            bail!("apt-get resolved nothing for {}", packages.join(" "));
        }
        if debs.iter().any(|d| !d.is_file()) {
            let mut args = vec!["install", "--download-only"];
            args.extend_from_slice(packages);
            let st = self.apt_get(&args).stdout(Stdio::null()).status()?;
            if !st.success() {
                bail!("apt-get install --download-only {} failed ({st})", packages.join(" "));
            }
        }
        if let Some(missing) = debs.iter().find(|d| !d.is_file()) {
            bail!("apt-get did not download {}", missing.display());
        }
        Ok(debs)
    }
}

/// The archive file name apt gives a package from its `Inst` line of `apt-get -s install`:
/// `name (version release [arch])...` becomes `name_version_arch.deb` (the epoch's `:` is
/// written `%3a`).
fn deb_file_name(inst: &str) -> Result<String> {
    let bad = || anyhow::anyhow!("unexpected apt-get plan line `Inst {inst}`");
    let (name, rest) = inst.split_once(" (").ok_or_else(bad)?;
    let version = rest.split_whitespace().next().ok_or_else(bad)?;
    let inner = &rest[..rest.find(')').ok_or_else(bad)?];
    let arch = inner.rsplit_once('[').and_then(|(_, a)| a.strip_suffix(']')).ok_or_else(bad)?;
    let name = name.split(':').next().unwrap_or(name);
    Ok(format!("{name}_{}_{arch}.deb", version.replace(':', "%3a")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb_names_from_plan_lines() {
        assert_eq!(
            deb_file_name("libc6 (2.41-12+deb13u5 Debian:13.8/stable [riscv64]) []").unwrap(),
            "libc6_2.41-12+deb13u5_riscv64.deb"
        );
        assert_eq!(
            deb_file_name("gawk (1:5.2.1-2+b2 Debian:13.8/stable [riscv64])").unwrap(),
            "gawk_1%3a5.2.1-2+b2_riscv64.deb"
        );
        assert_eq!(
            deb_file_name("tzdata (2026f-0+deb13u1 Debian:13.8/stable [all])").unwrap(),
            "tzdata_2026f-0+deb13u1_all.deb"
        );
        assert!(deb_file_name("garbage").is_err());
    }

    #[test]
    fn usr_merge_links_and_moves() {
        let t = std::env::temp_dir().join(format!("vmx-usr-merge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        std::fs::create_dir_all(t.join("usr/lib/x")).unwrap();
        std::fs::create_dir_all(t.join("usr/bin")).unwrap();
        std::fs::create_dir_all(t.join("lib/x")).unwrap();
        std::fs::write(t.join("lib/x/a"), "a").unwrap();
        std::fs::write(t.join("lib/b"), "b").unwrap();
        usr_merge(&t).unwrap();
        assert_eq!(std::fs::read_link(t.join("lib")).unwrap(), Path::new("usr/lib"));
        assert_eq!(std::fs::read_link(t.join("bin")).unwrap(), Path::new("usr/bin"));
        assert!(!t.join("sbin").exists());
        assert_eq!(std::fs::read_to_string(t.join("usr/lib/x/a")).unwrap(), "a");
        assert_eq!(std::fs::read_to_string(t.join("lib/b")).unwrap(), "b");
        std::fs::remove_dir_all(&t).unwrap();
    }
}
