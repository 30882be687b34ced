//! `cargo xtask guests`: build the RISC-V guest programs and their ground truth.
//!
//! * `cargo xtask guests [build] [--check] [NAME...]` compiles every
//!   `guests/src/*.c`, `guests/src/*.S` into `guests/bin/<name>` and every
//!   `guests/src/bench/*.c` into `guests/bin/bench/<name>` with
//!   `riscv64-linux-gnu-gcc -O2 -static` (override the compiler with
//!   `$GUEST_CC`).  A source may ask for extra flags with a line containing
//!   `guest-cflags: FLAGS` (for example `-latomic`, `-ffp-contract=off`,
//!   `-nostdlib -nostartfiles`).  The build is reproducible: sources are
//!   compiled from the repository root with relative paths and
//!   `-ffile-prefix-map`, so the same compiler always produces the same bytes.
//!   `--check` builds into `target/xtask/guests-check/` and compares with the
//!   committed binaries instead of replacing them.
//! * `cargo xtask guests truth [--check] [--tag TAG] [CASE...]` runs the cases of
//!   `guests/cases.txt` under `qemu-riscv64` (override with `$QEMU_RISCV64`)
//!   exactly the way the emulator is meant to be run (repository root as the
//!   working directory, `env -i` plus the case's variables, `argv[0]` =
//!   `guests/BINARY`, RLIMIT_CORE 0, RLIMIT_STACK 8 MiB) and stores stdout,
//!   stderr and the exit status in `guests/expected/`.
//! * `cargo xtask guests list` prints the parsed manifest.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::repo_root;
use vm_test_support::manifest::{self, Case};

/// Environment variable overriding the cross compiler.
const CC_ENV: &str = "GUEST_CC";
const DEFAULT_CC: &str = "riscv64-linux-gnu-gcc";
/// Environment variable overriding the reference emulator.
const QEMU_ENV: &str = "QEMU_RISCV64";
const DEFAULT_QEMU: &str = "qemu-riscv64";
const INSTALL_HINT: &str = "install the cross toolchain with:\n    \
     apt-get install -y gcc-riscv64-linux-gnu libc6-dev-riscv64-cross\n\
     (or point $GUEST_CC at another riscv64 Linux gcc with a static glibc)";

/// Flags used for every guest.
const COMMON_FLAGS: &[&str] = &["-O2", "-static", "-Wall", "-Wextra"];
/// Libraries appended after the source unless it is built with `-nostdlib`.
const LIBS: &[&str] = &["-lm"];
/// Marker that introduces per-source extra flags.
const CFLAGS_MARKER: &str = "guest-cflags:";
/// Warn when guests/bin grows beyond this many bytes.
const SIZE_BUDGET: u64 = 15 * 1024 * 1024;
/// Per-case limit for `truth`.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Entry point for `cargo xtask guests ...`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("build") => build(&args[1..]),
        Some("truth") => truth(&args[1..]),
        Some("list") => list(),
        _ => build(args),
    }
}

// ---------------------------------------------------------------------------
// build

/// One guest program to compile.
#[derive(Debug, Clone)]
pub(crate) struct GuestSource {
    /// Source path relative to the repository root (`guests/src/hello.c`).
    pub src: PathBuf,
    /// Output path relative to `guests/bin` (`hello`, `bench/sha256`).
    pub out: PathBuf,
    /// Extra flags from the `guest-cflags:` marker.
    pub extra_flags: Vec<String>,
}

impl GuestSource {
    /// The name used on the command line (`hello`, `bench/sha256`).
    pub fn name(&self) -> String {
        self.out.to_string_lossy().into_owned()
    }
}

/// All guest sources, sorted by output name.
pub(crate) fn guest_sources(root: &Path) -> anyhow::Result<Vec<GuestSource>> {
    let mut out = Vec::new();
    for (dir, prefix, exts) in
        [("guests/src", "", &["c", "S"][..]), ("guests/src/bench", "bench/", &["c"][..])]
    {
        let abs = root.join(dir);
        let entries =
            std::fs::read_dir(&abs).with_context(|| format!("listing {}", abs.display()))?;
        for entry in entries {
            let path = entry?.path();
            let (Some(stem), Some(ext)) = (path.file_stem(), path.extension()) else {
                continue;
            };
            if !path.is_file() || !exts.iter().any(|e| ext == *e) {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            out.push(GuestSource {
                src: Path::new(dir).join(path.file_name().expect("has a name")),
                out: PathBuf::from(format!("{prefix}{}", stem.to_string_lossy())),
                extra_flags: extra_flags(&text),
            });
        }
    }
    out.sort_by(|a, b| a.out.cmp(&b.out));
    for pair in out.windows(2) {
        if pair[0].out == pair[1].out {
            bail!(
                "{} and {} would both build guests/bin/{}",
                pair[0].src.display(),
                pair[1].src.display(),
                pair[0].name()
            );
        }
    }
    Ok(out)
}

/// Flags named by `guest-cflags:` lines (comment decoration like `*/` is dropped).
pub(crate) fn extra_flags(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|l| l.split_once(CFLAGS_MARKER).map(|(_, rest)| rest))
        .flat_map(|rest| rest.split_whitespace())
        .take_while(|w| *w != "*/")
        .map(str::to_string)
        .collect()
}

fn compiler() -> String {
    std::env::var(CC_ENV).unwrap_or_else(|_| DEFAULT_CC.to_string())
}

fn check_compiler(cc: &str) -> anyhow::Result<String> {
    match Command::new(cc).arg("--version").output() {
        Ok(out) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string())
        }
        Ok(out) => bail!(
            "`{cc} --version` failed ({}): {}\n{INSTALL_HINT}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("cross compiler `{cc}` not found\n{INSTALL_HINT}")
        }
        Err(e) => Err(e).with_context(|| format!("running `{cc} --version`")),
    }
}

fn build(args: &[String]) -> anyhow::Result<()> {
    let mut check = false;
    let mut names = Vec::new();
    for a in args {
        match a.as_str() {
            "--check" => check = true,
            s if s.starts_with('-') => bail!("unknown option `{s}` for `guests build`"),
            s => names.push(s.to_string()),
        }
    }
    let root = repo_root();
    let cc = compiler();
    let version = check_compiler(&cc)?;
    let mut sources = guest_sources(&root)?;
    if !names.is_empty() {
        for n in &names {
            if !sources.iter().any(|s| &s.name() == n) {
                bail!("no guest named `{n}` (see guests/src)");
            }
        }
        sources.retain(|s| names.contains(&s.name()));
    }
    let (out_dir, obj_dir) = if check {
        (root.join("target/xtask/guests-check"), root.join("target/xtask/guests-check-obj"))
    } else {
        // guests/build-tmp is git-ignored.
        (root.join("guests/bin"), root.join("guests/build-tmp"))
    };
    for d in [out_dir.join("bench"), obj_dir.clone()] {
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }
    eprintln!(
        "building {} guest(s) with {cc} ({version}) into {}",
        sources.len(),
        out_dir.strip_prefix(&root).unwrap_or(&out_dir).display()
    );

    let errors = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(src) = sources.get(i) else { break };
                if let Err(e) = compile(&root, &cc, src, &out_dir, &obj_dir) {
                    errors.lock().expect("poisoned").push(format!("{e:#}"));
                }
            });
        }
    });
    let errors = errors.into_inner().expect("poisoned");
    let _ = std::fs::remove_dir(&obj_dir); // only succeeds when empty
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{e}\n");
        }
        bail!("{} guest(s) failed to build", errors.len());
    }

    if check {
        let mut differ = Vec::new();
        for s in &sources {
            let built = std::fs::read(out_dir.join(&s.out))?;
            let committed_path = root.join("guests/bin").join(&s.out);
            match std::fs::read(&committed_path) {
                Ok(committed) if committed == built => {}
                Ok(_) => differ.push(format!("{} (contents differ)", s.name())),
                Err(_) => differ.push(format!("{} (missing in guests/bin)", s.name())),
            }
        }
        if !differ.is_empty() {
            bail!(
                "guests/bin is out of date or the build is not reproducible with this compiler:\n  {}\n\
                 run `cargo xtask guests` to rebuild",
                differ.join("\n  ")
            );
        }
        eprintln!("guests/bin matches a fresh build ({} binaries)", sources.len());
    } else {
        let total = dir_size(&root.join("guests/bin"))?;
        eprintln!("guests/bin: {:.1} MiB", total as f64 / (1024.0 * 1024.0));
        if total > SIZE_BUDGET {
            eprintln!("warning: guests/bin exceeds {} MiB; consider stripping", SIZE_BUDGET >> 20);
        }
    }
    Ok(())
}

/// Flags that only matter when linking (kept out of the compile step, where
/// gcc would warn that they are unused).
fn is_link_only(flag: &str) -> bool {
    flag.starts_with("-l")
        || flag.starts_with("-Wl,")
        || matches!(flag, "-nostdlib" | "-nostartfiles" | "-nodefaultlibs" | "-static")
}

/// Compile to an object with a fixed name, then link.  The two steps keep the
/// output reproducible: a one-step `gcc -o out src.S` would name a temporary
/// object (`/tmp/ccXXXXXX.o`) in the symbol table.
fn compile(
    root: &Path,
    cc: &str,
    src: &GuestSource,
    out_dir: &Path,
    obj_dir: &Path,
) -> anyhow::Result<()> {
    let final_path = out_dir.join(&src.out);
    let file_name =
        final_path.file_name().expect("output has a name").to_string_lossy().into_owned();
    let tmp_path = final_path.with_file_name(format!(".{file_name}.tmp"));
    let obj_path = obj_dir.join(src.name().replace('/', "__") + ".o");
    let obj_rel = obj_path.strip_prefix(root).unwrap_or(&obj_path);
    let nostdlib = src.extra_flags.iter().any(|f| f == "-nostdlib");

    let mut compile_cmd = Command::new(cc);
    compile_cmd
        .current_dir(root)
        .env("LC_ALL", "C")
        .args(COMMON_FLAGS.iter().filter(|f| !is_link_only(f)))
        .arg(format!("-ffile-prefix-map={}=.", root.display()))
        .args(src.extra_flags.iter().filter(|f| !is_link_only(f)))
        .arg("-c")
        .arg("-o")
        .arg(obj_rel)
        .arg(&src.src);
    let mut link_cmd = Command::new(cc);
    link_cmd
        .current_dir(root)
        .env("LC_ALL", "C")
        .args(COMMON_FLAGS)
        .args(src.extra_flags.iter().filter(|f| !f.starts_with("-l")))
        .arg("-o")
        .arg(&tmp_path)
        .arg(obj_rel)
        // libraries go after the object that needs them
        .args(src.extra_flags.iter().filter(|f| f.starts_with("-l")));
    if !nostdlib {
        link_cmd.args(LIBS);
    }
    for (step, mut cmd) in [("compiling", compile_cmd), ("linking", link_cmd)] {
        let output =
            cmd.output().with_context(|| format!("running {cc} for {}", src.src.display()))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let _ = std::fs::remove_file(&tmp_path);
            let hint = if stderr.contains("crt1.o") || stderr.contains(".h: No such file") {
                format!("\n{INSTALL_HINT}")
            } else {
                String::new()
            };
            bail!(
                "{step} {} failed ({}):\n{cmd:?}\n{stderr}{hint}",
                src.src.display(),
                output.status
            );
        }
        if !stderr.trim().is_empty() {
            eprintln!("{}: warnings while {step}:\n{stderr}", src.src.display());
        }
    }
    let _ = std::fs::remove_file(&obj_path);
    std::fs::rename(&tmp_path, &final_path)
        .with_context(|| format!("moving {} into place", final_path.display()))?;
    eprintln!("  built {}", src.name());
    Ok(())
}

fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += dir_size(&entry.path())?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

// ---------------------------------------------------------------------------
// list

fn list() -> anyhow::Result<()> {
    let root = repo_root();
    for c in manifest::load(&root.join("guests/cases.txt"))? {
        println!(
            "{:<24} argv={:?} stdin={} env={:?} dirs={:?} tags={:?}",
            c.name,
            std::iter::once(c.argv0()).chain(c.args.iter().cloned()).collect::<Vec<_>>(),
            c.stdin.as_deref().unwrap_or("(empty)"),
            c.env,
            c.dirs,
            c.tags
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// truth

/// What one run of a guest produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// `exit N` or `signal N`, as stored in `<case>.status`.
    pub status: String,
}

/// `exit N` for a normal exit, `signal N` when killed by a signal.
pub(crate) fn status_string(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        (None, None) => format!("unknown {status:?}"),
    }
}

fn truth(args: &[String]) -> anyhow::Result<()> {
    let mut check = false;
    let mut names = Vec::new();
    let mut tags = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--check" => check = true,
            "--tag" => tags.push(it.next().context("--tag needs a value")?.clone()),
            s if s.starts_with('-') => bail!("unknown option `{s}` for `guests truth`"),
            s => names.push(s.to_string()),
        }
    }
    let root = repo_root();
    let qemu = std::env::var(QEMU_ENV).unwrap_or_else(|_| DEFAULT_QEMU.to_string());
    match Command::new(&qemu).arg("--version").output() {
        Ok(o) if o.status.success() => eprintln!(
            "reference: {}",
            String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("")
        ),
        _ => bail!(
            "`{qemu} --version` failed: install qemu-user (apt-get install -y qemu-user) \
             or set ${QEMU_ENV}"
        ),
    }
    let mut cases = manifest::load(&root.join("guests/cases.txt"))?;
    if !names.is_empty() {
        for n in &names {
            if !cases.iter().any(|c| &c.name == n) {
                bail!("no case named `{n}` in guests/cases.txt");
            }
        }
        cases.retain(|c| names.contains(&c.name));
    }
    if !tags.is_empty() {
        cases.retain(|c| tags.iter().any(|t| c.has_tag(t)));
    }
    let filtered = !names.is_empty() || !tags.is_empty();
    let expected_dir = root.join("guests/expected");
    std::fs::create_dir_all(&expected_dir)?;

    let mut mismatches = Vec::new();
    for case in &cases {
        let started = Instant::now();
        let got = run_under_qemu(&root, &qemu, case)?;
        let secs = started.elapsed().as_secs_f64();
        let base = expected_dir.join(&case.name);
        if check {
            let want = Outcome {
                stdout: std::fs::read(base.with_extension("stdout")).unwrap_or_default(),
                stderr: std::fs::read(base.with_extension("stderr")).unwrap_or_default(),
                status: std::fs::read_to_string(base.with_extension("status"))
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            };
            let verdict = describe_difference(&want, &got);
            eprintln!(
                "{:<28} {:<10} {:>6.2}s {}",
                case.name,
                got.status,
                secs,
                verdict.as_deref().unwrap_or("ok")
            );
            if let Some(v) = verdict {
                mismatches.push(format!("{}: {v}", case.name));
            }
        } else {
            std::fs::write(base.with_extension("stdout"), &got.stdout)?;
            std::fs::write(base.with_extension("stderr"), &got.stderr)?;
            std::fs::write(base.with_extension("status"), format!("{}\n", got.status))?;
            eprintln!(
                "{:<28} {:<10} {:>6.2}s stdout {} B, stderr {} B",
                case.name,
                got.status,
                secs,
                got.stdout.len(),
                got.stderr.len()
            );
        }
    }
    if !check && !filtered {
        remove_stale(&expected_dir, &cases)?;
    }
    if !mismatches.is_empty() {
        bail!(
            "{} case(s) differ from guests/expected:\n  {}",
            mismatches.len(),
            mismatches.join("\n  ")
        );
    }
    Ok(())
}

/// Delete ground-truth files of cases that are no longer in the manifest.
fn remove_stale(dir: &Path, cases: &[Case]) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "stdout" | "stderr" | "status") {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if !cases.iter().any(|c| c.name == stem) {
            eprintln!("removing stale {}", path.display());
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn describe_difference(want: &Outcome, got: &Outcome) -> Option<String> {
    if want.status != got.status {
        return Some(format!("status `{}` != expected `{}`", got.status, want.status));
    }
    for (what, w, g) in
        [("stdout", &want.stdout, &got.stdout), ("stderr", &want.stderr, &got.stderr)]
    {
        if w != g {
            let wl: Vec<&[u8]> = w.split(|b| *b == b'\n').collect();
            let gl: Vec<&[u8]> = g.split(|b| *b == b'\n').collect();
            let n = wl.iter().zip(&gl).take_while(|(a, b)| a == b).count();
            return Some(format!(
                "{what} differs at line {}: got {:?}, expected {:?}",
                n + 1,
                String::from_utf8_lossy(gl.get(n).copied().unwrap_or(b"<EOF>")),
                String::from_utf8_lossy(wl.get(n).copied().unwrap_or(b"<EOF>"))
            ));
        }
    }
    None
}

/// Run one case under qemu the way the emulator is meant to be run.
pub(crate) fn run_under_qemu(root: &Path, qemu: &str, case: &Case) -> anyhow::Result<Outcome> {
    // `sh` sets the resource limits, then `env -i` leaves only the case's
    // variables; exec keeps qemu as the direct child so a fatal guest signal
    // (qemu re-raises it on itself) is visible as our child's termination signal.
    let mut cmd = Command::new("sh");
    cmd.current_dir(root)
        .env_clear()
        .arg("-c")
        .arg("ulimit -c 0 && ulimit -s 8192 && exec env -i \"$@\"")
        .arg("sh");
    for (k, v) in &case.env {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.arg(qemu).arg(case.argv0()).args(&case.args);
    run_with_input(cmd, case, root)
}

/// Spawn `cmd`, feed the case's stdin, collect output, enforce the timeout.
pub(crate) fn run_with_input(
    mut cmd: Command,
    case: &Case,
    root: &Path,
) -> anyhow::Result<Outcome> {
    let input = match &case.stdin {
        Some(p) => {
            let path = root.join("guests").join(p);
            std::fs::read(&path)
                .with_context(|| format!("{}: reading {}", case.name, path.display()))?
        }
        None => Vec::new(),
    };
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("{}: spawning {cmd:?}", case.name))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let writer = std::thread::spawn(move || {
        // The guest may exit without reading everything: ignore EPIPE.
        let _ = stdin.write_all(&input);
    });
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stderr.read_to_end(&mut buf).map(|_| buf)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > CASE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{}: timed out after {:?}", case.name, CASE_TIMEOUT);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    let stdout = out_reader.join().expect("reader panicked")?;
    let stderr = err_reader.join().expect("reader panicked")?;
    Ok(Outcome { stdout, stderr, status: status_string(status) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_marker() {
        assert_eq!(extra_flags("/*\n * guest-cflags: -latomic -x */\n"), vec!["-latomic", "-x"]);
        assert_eq!(extra_flags("// guest-cflags: -ffp-contract=off\n"), vec!["-ffp-contract=off"]);
        assert!(extra_flags("int main() {}\n").is_empty());
    }

    #[test]
    fn sources_are_found() {
        let sources = guest_sources(&repo_root()).unwrap();
        assert!(sources.iter().any(|s| s.name() == "hello"));
        assert!(sources.iter().any(|s| s.name() == "bench/sha256"));
    }
}
