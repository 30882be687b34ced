//! `vmx binfmt install | uninstall | status`: registers vmx with the kernel's `binfmt_misc`
//! as the handler of riscv64 ELF executables, so that `./riscv-program` runs under vmx.
//!
//! The entry is named `vmx-riscv64` and uses the magic and mask of qemu's
//! `/usr/lib/binfmt.d/qemu-riscv64.conf` (64-bit little-endian ELF, `e_machine` = RISC-V,
//! `ET_EXEC` or `ET_DYN`), with flags `P` (the kernel passes the original `argv[0]`, which
//! the guest then sees, as under qemu's `P`) and `F` (the kernel opens vmx once, at
//! registration, so it works inside chroots and containers). The kernel then starts
//! `vmx PROGRAM-PATH ARGV0 ARGS...`; [`invocation`] recognises that form.
//!
//! `install --root DIR` gives the registered vmx a guest root, as `vmx run --root DIR` (the
//! interpreter of dynamically linked programs and their absolute paths resolve below DIR).
//! binfmt_misc has no room for interpreter arguments, and with `F` the kernel opens vmx at
//! registration and starts it without looking at any path, so the root is kept in a small
//! file, [`CONF_DIR`]`/vmx-riscv64.conf` (`root=DIR`, and a `dir=HOST_DIR` line per
//! `--dir` grant, which, as for `vmx run`, lets those programs open host files). `/run` is a tmpfs, so the file
//! lives exactly as long as the registration (both are gone after a reboot);
//! `uninstall` and an `install` without `--root` remove it. When [`invocation`]
//! recognises the kernel's form it reads the file and adds `--root DIR` (and the `--dir`s), unless the
//! environment sets `VMX_ROOT` (which then wins, as for `vmx run`). Inside a chroot the
//! file is not visible and none is needed: the chroot's own `/lib` holds the interpreter.
//!
//! Only one handler can be active for one magic: when another enabled entry (qemu's) has
//! the same magic, `install` refuses unless `--disable-others` (which disables those
//! entries; `uninstall` does not re-enable them).

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where binfmt_misc lives.
const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";
/// Our entry's name.
pub const NAME: &str = "vmx-riscv64";
/// Where the configuration of our entry (its guest root) lives.
pub const CONF_DIR: &str = "/run/vmx";
/// qemu-riscv64.conf's magic and mask (20 bytes: ELF header up to `e_machine`).
const MAGIC: [u8; 20] = [
    0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x00, 0xf3, 0x00,
];
const MASK: [u8; 20] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xfe, 0xff, 0xff, 0xff,
];

/// `vmx binfmt` subcommands.
#[derive(clap::Subcommand)]
pub enum BinfmtCommand {
    /// Register vmx as the handler of riscv64 ELF programs (needs root).
    Install {
        /// Disable other enabled entries for the same magic (qemu-riscv64) first.
        #[arg(long)]
        disable_others: bool,
        /// Guest root for the programs the kernel hands to vmx (like `vmx run --root DIR`):
        /// dynamically linked riscv64 programs find their interpreter and libraries there.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Let those programs open files below this host directory (repeatable), like
        /// `vmx run --dir`. Off by default.
        #[arg(long = "dir", value_name = "HOST_DIR")]
        dirs: Vec<PathBuf>,
    },
    /// Remove vmx's registration.
    Uninstall,
    /// Show whether vmx (and any other handler of riscv64 programs) is registered.
    Status,
}

/// Whether `bytes` (a file's start) is a riscv64 ELF program binfmt_misc would hand to us.
pub fn matches(bytes: &[u8]) -> bool {
    bytes.len() >= MAGIC.len() && (0..MAGIC.len()).all(|i| bytes[i] & MASK[i] == MAGIC[i])
}

/// When the kernel started vmx through binfmt_misc (`vmx PATH ARGV0 ARGS...`: the first
/// argument is a riscv64 ELF file, never a subcommand), the `vmx run` arguments that run it
/// with the guest's `argv[0]` preserved.
pub fn invocation(args: &[OsString]) -> Option<Vec<OsString>> {
    let path = args.get(1)?;
    if path.as_bytes().first() == Some(&b'-') || args.len() < 3 {
        return None;
    }
    let mut head = [0u8; 20];
    let mut f = std::fs::File::open(path).ok()?;
    std::io::Read::read_exact(&mut f, &mut head).ok()?;
    if !matches(&head) {
        return None;
    }
    let mut out: Vec<OsString> = vec![args[0].clone(), "run".into()];
    let conf = conf();
    if std::env::var_os("VMX_ROOT").is_none() {
        if let Some(root) = conf.root {
            out.push("--root".into());
            out.push(root.into_os_string());
        }
    }
    for d in conf.dirs {
        out.push("--dir".into());
        out.push(d.into_os_string());
    }
    out.push("--argv0".into());
    out.push(args[2].clone());
    out.push(path.clone());
    out.extend(args[3..].iter().cloned());
    Some(out)
}

fn conf_path() -> PathBuf {
    Path::new(CONF_DIR).join(format!("{NAME}.conf"))
}

/// What `install --root/--dir` recorded for the kernel-started vmx.
#[derive(Default)]
struct Conf {
    root: Option<PathBuf>,
    dirs: Vec<PathBuf>,
}

/// The recorded configuration (empty when there is none).
fn conf() -> Conf {
    let mut c = Conf::default();
    let Ok(text) = std::fs::read(conf_path()) else { return c };
    for line in text.split(|&b| b == b'\n') {
        let path = |v: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(v));
        match line.iter().position(|&b| b == b'=') {
            Some(i) if i + 1 < line.len() => match &line[..i] {
                b"root" => c.root = Some(path(&line[i + 1..])),
                b"dir" => c.dirs.push(path(&line[i + 1..])),
                _ => {}
            },
            _ => {}
        }
    }
    c
}

/// Records `c` for the kernel-started vmx (an empty one removes the record).
fn set_conf(c: &Conf) -> Result<()> {
    let path = conf_path();
    if c.root.is_none() && c.dirs.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        };
    }
    std::fs::create_dir_all(CONF_DIR).with_context(|| format!("creating {CONF_DIR}"))?;
    let mut text = Vec::new();
    let entries = c.root.iter().map(|r| ("root=", r)).chain(c.dirs.iter().map(|d| ("dir=", d)));
    for (key, p) in entries {
        text.extend_from_slice(key.as_bytes());
        text.extend_from_slice(p.as_os_str().as_bytes());
        text.push(b'\n');
    }
    // Written whole then renamed, so a vmx the kernel starts meanwhile never sees half of it.
    let tmp = path.with_extension("conf.tmp");
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// `path` made absolute and canonical, which must be a directory whose name has no newline.
fn canonical_dir(what: &str, path: &Path) -> Result<PathBuf> {
    let c = std::fs::canonicalize(path)
        .ok()
        .filter(|c| c.is_dir())
        .with_context(|| format!("{what} {}: no such directory", path.display()))?;
    if c.as_os_str().as_bytes().contains(&b'\n') {
        bail!("{what} {}: the path contains a newline", c.display());
    }
    Ok(c)
}

/// `, root DIR, dir D...` for the status lines.
fn describe(c: &Conf) -> String {
    let mut s = String::new();
    if let Some(r) = &c.root {
        s.push_str(&format!(", root {}", r.display()));
    }
    for d in &c.dirs {
        s.push_str(&format!(", dir {}", d.display()));
    }
    s
}

fn escaped(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

fn hexed(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn dir() -> PathBuf {
    PathBuf::from(BINFMT_DIR)
}

/// Makes sure binfmt_misc is mounted (mounting it if needed).
fn ensure_mounted() -> Result<()> {
    if dir().join("register").exists() {
        return Ok(());
    }
    let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
    let (src, target, fstype) = (c("binfmt_misc"), c(BINFMT_DIR), c("binfmt_misc"));
    // SAFETY: plain mount(2) with valid NUL-terminated strings and no data.
    let rc =
        unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        bail!(
            "binfmt_misc is not mounted at {BINFMT_DIR} and mounting it failed: {} \
             (try: mount -t binfmt_misc binfmt_misc {BINFMT_DIR})",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "vmx binfmt {what} must run as root (registering with binfmt_misc needs CAP_SYS_ADMIN)"
        );
    }
    Ok(())
}

/// One registered entry, as the kernel shows it.
struct Entry {
    name: String,
    enabled: bool,
    interpreter: String,
    flags: String,
    magic: String,
}

fn entries() -> Vec<Entry> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir()) else { return v };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "register" || name == "status" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else { continue };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        v.push(Entry {
            name,
            enabled: text.lines().next() == Some("enabled"),
            interpreter: field("interpreter "),
            flags: field("flags:"),
            magic: field("magic "),
        });
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {:?} to {}", text, path.display()))
}

/// Runs a `vmx binfmt` subcommand.
pub fn binfmt(cmd: BinfmtCommand) -> Result<ExitCode> {
    match cmd {
        BinfmtCommand::Install { disable_others, root, dirs } => {
            require_root("install")?;
            let conf = Conf {
                root: root.map(|r| canonical_dir("--root", &r)).transpose()?,
                dirs: dirs.iter().map(|d| canonical_dir("--dir", d)).collect::<Result<_>>()?,
            };
            ensure_mounted()?;
            let ours = hexed(&MAGIC);
            let others: Vec<Entry> = entries()
                .into_iter()
                .filter(|e| e.name != NAME && e.enabled && e.magic == ours)
                .collect();
            if !others.is_empty() {
                let names: Vec<&str> = others.iter().map(|e| e.name.as_str()).collect();
                if !disable_others {
                    bail!(
                        "{} already handles riscv64 programs (only one handler can be active \
                         for one magic): pass --disable-others, or disable it with \
                         `echo 0 > {BINFMT_DIR}/{}`",
                        names.join(", "),
                        names[0]
                    );
                }
                for e in &others {
                    write(&dir().join(&e.name), "0")?;
                }
            }
            let exe = std::env::current_exe().context("locating the vmx binary")?;
            let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
            let exe = exe.to_str().context("the vmx path is not UTF-8")?;
            if exe.contains(':') || exe.contains('\n') {
                bail!("the vmx path {exe} cannot be registered (contains ':' or a newline)");
            }
            if dir().join(NAME).exists() {
                write(&dir().join(NAME), "-1")?;
            }
            set_conf(&conf)?;
            let line = format!(":{NAME}:M::{}:{}:{exe}:PF", escaped(&MAGIC), escaped(&MASK));
            write(&dir().join("register"), &line)?;
            println!("{NAME}: installed ({exe}, flags PF{})", describe(&conf));
            Ok(ExitCode::SUCCESS)
        }
        BinfmtCommand::Uninstall => {
            require_root("uninstall")?;
            let path = dir().join(NAME);
            if !path.exists() {
                bail!("{NAME} is not installed");
            }
            write(&path, "-1")?;
            set_conf(&Conf::default())?;
            println!("{NAME}: uninstalled");
            Ok(ExitCode::SUCCESS)
        }
        BinfmtCommand::Status => {
            if !dir().join("register").exists() {
                println!("binfmt_misc is not mounted at {BINFMT_DIR}");
                return Ok(ExitCode::from(1));
            }
            let ours = hexed(&MAGIC);
            let all = entries();
            let mut found = false;
            for e in all.iter().filter(|e| e.name == NAME || e.magic == ours) {
                found |= e.name == NAME;
                let root = if e.name == NAME { describe(&conf()) } else { String::new() };
                println!(
                    "{}: {} (interpreter {}, flags {}{root})",
                    e.name,
                    if e.enabled { "enabled" } else { "disabled" },
                    e.interpreter,
                    e.flags
                );
            }
            if !found {
                println!("{NAME}: not installed");
            }
            Ok(if found { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}
