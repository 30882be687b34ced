//! Real programs from Debian's riscv64 packages, run from a guest root: every case runs under
//! `qemu-riscv64 -L ROOT` and under `vmx run --root ROOT` on its engines, and stdout, stderr
//! and the exit status must be identical. Then the sandbox around the root and the grants,
//! and bad roots and interpreters.
//!
//! The root comes from `VMX_TEST_ROOT`, built by `.ci/run` with
//! `cargo xtask rootfs DIR python3 perl lua5.4 sqlite3 gawk sed grep coreutils xz-utils jq bc
//! busybox-static`. Without it the tests say so and pass, unless `VMX_REQUIRE_ROOTFS=1`
//! (set in CI), where a missing root or qemu fails them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> Option<PathBuf> {
    let required = std::env::var("VMX_REQUIRE_ROOTFS").is_ok_and(|v| v == "1");
    match std::env::var_os("VMX_TEST_ROOT").map(PathBuf::from) {
        Some(r) if r.join("usr/bin/python3").exists() => Some(r),
        other => {
            assert!(
                !required,
                "VMX_REQUIRE_ROOTFS=1 but VMX_TEST_ROOT ({other:?}) holds no Debian root \
                 (cargo xtask rootfs DIR python3 perl ...)"
            );
            eprintln!("SKIPPED: no VMX_TEST_ROOT (build one with `cargo xtask rootfs DIR ...`)");
            None
        }
    }
}

fn have_qemu() -> bool {
    let ok = Command::new("qemu-riscv64").arg("--version").output().is_ok();
    let required = std::env::var("VMX_REQUIRE_QEMU").is_ok_and(|v| v == "1")
        || std::env::var("VMX_REQUIRE_ROOTFS").is_ok_and(|v| v == "1");
    assert!(ok || !required, "qemu-riscv64 is required but not installed");
    if !ok {
        eprintln!("SKIPPED: qemu-riscv64 is not installed");
    }
    ok
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmx-rootfs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `argv` with a fixed environment and `stdin`; returns its output.
fn run(argv: &[String], stdin: &[u8], cwd: &Path) -> Output {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear();
    if argv[0] == "qemu-riscv64" && argv[1] == "-L" {
        // A guest's execve of a riscv64 program starts a new qemu through binfmt_misc, which
        // knows the root only from the environment (vmx keeps it in the sandbox itself).
        cmd.env("QEMU_LD_PREFIX", &argv[2]);
    }
    let mut child = cmd
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// One real-program case: `prog` is a program below `ROOT/usr/bin`; `{W}` in an argument is
/// the runner's own scratch directory, where this test's scripts (`tests/rootfs/*`) are
/// copied first.
struct Case {
    name: &'static str,
    prog: &'static str,
    args: &'static [&'static str],
    stdin: Vec<u8>,
    engines: &'static [&'static str],
    /// Files made in the scratch directory first (name, contents), dated 2001-09-09.
    files: &'static [(&'static str, &'static str)],
}

const ALL: &[&str] = &["interp", "jit", "hybrid"];
/// Long interpreted workloads: the JIT engine translates every block of them before it runs
/// it, so it takes a few seconds more per case; it runs the shorter cases.
const NOT_JIT: &[&str] = &["interp", "hybrid"];

fn text_input(lines: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut x = 12345u64;
    for i in 0..lines {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        s.push_str(&format!("{} line-{} {}\n", (x >> 40) % 1000, i % 97, (x >> 20) % 13));
    }
    s.into_bytes()
}

fn cases() -> Vec<Case> {
    let sql = "create table t(a integer, b text);\n\
               with recursive c(x) as (select 1 union all select x + 1 from c where x < 20000)\n\
               insert into t select x, printf('row%05d', x * 7 % 20000) from c;\n\
               create index tb on t(b);\n\
               select count(*), sum(a), min(b), max(b) from t where a % 3 = 0;\n\
               select b from t order by b desc limit 3;\n";
    let lua = "local function fib(n) if n < 2 then return n end return fib(n-1) + fib(n-2) end\n\
               local t = {} for i = 1, 2000 do t[i] = (i * 7919) % 2003 end\n\
               table.sort(t) print(fib(22), t[1], t[2000], #t)\n\
               print(string.format('%.6f', math.sqrt(2)), ('abc'):rep(3):upper())\n\
               for w in string.gmatch('one two three', '%a+') do io.write(w, ';') end print()\n";
    vec![
        Case {
            name: "python-ops",
            prog: "python3",
            args: &["{W}/ops.py", "{W}"],
            stdin: vec![],
            engines: NOT_JIT,
            files: &[],
        },
        Case {
            name: "python-subprocess",
            prog: "python3",
            args: &["{W}/spawn.py"],
            stdin: vec![],
            engines: NOT_JIT,
            files: &[],
        },
        Case {
            name: "dash-files",
            prog: "dash",
            args: &["{W}/files.sh", "{W}"],
            stdin: vec![],
            engines: ALL,
            files: &[],
        },
        Case {
            name: "perl",
            prog: "perl",
            args: &[
                "-le",
                "my %h; $h{$_ % 7}++ for 1..5000; print join ',', map {\"$_=$h{$_}\"} sort keys %h; \
                 printf \"%.6f\\n\", atan2(1,1)*4; print scalar reverse 'stressed'; \
                 print join ' ', map { sprintf '%x', $_ ** 3 } 1..8",
            ],
            stdin: vec![],
            engines: ALL,
            files: &[],
        },
        Case { name: "lua", prog: "lua5.4", args: &["-"], stdin: lua.into(), engines: ALL, files: &[] },
        Case { name: "sqlite", prog: "sqlite3", args: &[], stdin: sql.into(), engines: ALL, files: &[] },
        Case {
            name: "ls-l",
            prog: "ls",
            args: &["-l", "--time-style=+%Y-%m-%d", "."],
            stdin: vec![],
            engines: ALL,
            files: &[("a.txt", "alpha\n"), ("b.dat", "0123456789"), ("c", "")],
        },
        Case { name: "sort", prog: "sort", args: &["-n", "-k3"], stdin: text_input(3000), engines: ALL, files: &[] },
        Case {
            name: "sha256sum",
            prog: "sha256sum",
            args: &["/usr/bin/true", "-"],
            stdin: text_input(2000),
            engines: ALL,
            files: &[],
        },
        Case { name: "xz", prog: "xz", args: &["-6", "-c"], stdin: text_input(20000), engines: ALL, files: &[] },
        Case {
            name: "gawk",
            prog: "gawk",
            args: &["{ s[$2] += $1 } END { n = asorti(s, k); for (i = 1; i <= 5; i++) print k[i], s[k[i]]; print n }"],
            stdin: text_input(3000),
            engines: ALL,
            files: &[],
        },
        Case {
            name: "sed-grep",
            prog: "sed",
            args: &["-n", "-E", "s/^([0-9]+) line-(4[0-9]) ([0-9]+)$/\\2:\\1:\\3/p"],
            stdin: text_input(2000),
            engines: ALL,
            files: &[],
        },
        Case {
            name: "grep",
            prog: "grep",
            args: &["-c", "-E", "^[0-9]*7 line-1[0-9] "],
            stdin: text_input(3000),
            engines: ALL,
            files: &[],
        },
        Case {
            name: "jq",
            prog: "jq",
            args: &["-c", "[.[] | select(.v % 3 == 0) | .v * 2] | add, length"],
            stdin: format!(
                "[{}]",
                (0..300).map(|i| format!("{{\"v\":{i}}}")).collect::<Vec<_>>().join(",")
            )
            .into_bytes(),
            engines: ALL,
            files: &[],
        },
        Case {
            name: "bc",
            prog: "bc",
            args: &["-l"],
            stdin: b"scale=40; 4*a(1)\n2^100\nsqrt(2)\n".to_vec(),
            engines: ALL,
            files: &[],
        },
    ]
}

fn make_files(w: &Path, files: &[(&str, &str)]) {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rootfs");
    for e in std::fs::read_dir(scripts).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), w.join(e.file_name())).unwrap();
    }
    for (name, text) in files {
        let p = w.join(name);
        std::fs::write(&p, text).unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        std::fs::File::options().write(true).open(&p).unwrap().set_modified(t).unwrap();
    }
}

fn expand(args: &[&str], w: &Path) -> Vec<String> {
    args.iter().map(|a| a.replace("{W}", w.to_str().unwrap())).collect()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).chars().take(3000).collect::<String>(),
        String::from_utf8_lossy(&o.stderr).chars().take(3000).collect::<String>()
    )
}

#[test]
fn real_programs_match_qemu_on_every_engine() {
    let Some(root) = root() else { return };
    if !have_qemu() {
        return;
    }
    let vmx = env!("CARGO_BIN_EXE_vmx");
    let base = scratch("suite");
    let root_s = root.to_str().unwrap().to_string();
    let mut failures = Vec::new();
    let mut runs = 0;
    for case in cases() {
        let prog = root.join("usr/bin").join(case.prog).to_str().unwrap().to_string();
        let wq = base.join(format!("{}-qemu", case.name));
        std::fs::create_dir_all(&wq).unwrap();
        make_files(&wq, case.files);
        let mut argv = vec!["qemu-riscv64".to_string(), "-L".into(), root_s.clone(), prog.clone()];
        argv.extend(expand(case.args, &wq));
        let want = run(&argv, &case.stdin, &wq);
        assert!(
            want.status.success(),
            "{}: qemu itself failed (is the root complete?)\n{}",
            case.name,
            show(&want)
        );
        for engine in case.engines {
            let w = base.join(format!("{}-{engine}", case.name));
            std::fs::create_dir_all(&w).unwrap();
            make_files(&w, case.files);
            let mut argv = vec![
                vmx.to_string(),
                "run".into(),
                "--engine".into(),
                engine.to_string(),
                "--root".into(),
                root_s.clone(),
                "--dir".into(),
                w.to_str().unwrap().into(),
                prog.clone(),
            ];
            argv.extend(expand(case.args, &w));
            let got = run(&argv, &case.stdin, &w);
            runs += 1;
            if got.stdout != want.stdout
                || got.stderr != want.stderr
                || got.status.code() != want.status.code()
            {
                failures.push(format!(
                    "== {} on {engine}\n-- qemu: {}\n-- vmx: {}",
                    case.name,
                    show(&want),
                    show(&got)
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    assert!(
        failures.is_empty(),
        "{} of {runs} runs differ from qemu:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{runs} vmx runs matched qemu-riscv64 -L");
}

/// The xz output of the `xz` case decompresses, under vmx, to the input (a round trip).
#[test]
fn xz_round_trip() {
    let Some(root) = root() else { return };
    let vmx = env!("CARGO_BIN_EXE_vmx");
    let w = scratch("xz");
    let xz = root.join("usr/bin/xz").to_str().unwrap().to_string();
    let r = root.to_str().unwrap().to_string();
    let input = text_input(30000);
    let argv = |flag: &str| -> Vec<String> {
        vec![
            vmx.into(),
            "run".into(),
            "--root".into(),
            r.clone(),
            xz.clone(),
            flag.into(),
            "-c".into(),
        ]
    };
    let packed = run(&argv("-9"), &input, &w);
    assert!(packed.status.success(), "{}", show(&packed));
    assert!(packed.stdout.len() < input.len() / 2);
    let unpacked = run(&argv("-d"), &packed.stdout, &w);
    assert!(unpacked.status.success(), "{}", show(&unpacked));
    assert!(unpacked.stdout == input, "the round trip changed the data");
    let _ = std::fs::remove_dir_all(&w);
}

/// Nothing outside the root and the grants is reachable: `..` above the root, links in the
/// root or in a grant that point outside, `/proc/self/root`, `/proc/self/cwd`; the root is
/// read-only; renames and hard links across a grant's boundary are refused.
#[test]
fn the_sandbox_holds_around_the_root_and_the_grants() {
    let Some(shared) = root() else { return };
    let vmx = env!("CARGO_BIN_EXE_vmx");
    let base = scratch("sandbox");
    // A small root of its own: busybox (static) plus links planted to point outside.
    let root = base.join("root");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(shared.join("usr/bin/busybox"), root.join("usr/bin/busybox")).unwrap();
    std::fs::write(root.join("etc/inside"), "inside the root\n").unwrap();
    let secret_dir = base.join("secret");
    std::fs::create_dir_all(&secret_dir).unwrap();
    let secret = secret_dir.join("secret.txt");
    std::fs::write(&secret, "TOP SECRET\n").unwrap();
    let secret_s = secret.to_str().unwrap().to_string();
    std::os::unix::fs::symlink(&secret, root.join("etc/abs-out")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../..", root.join("etc/up")).unwrap();
    std::os::unix::fs::symlink("/etc/inside", root.join("etc/abs-in")).unwrap();
    let grant = base.join("grant");
    std::fs::create_dir_all(&grant).unwrap();
    std::os::unix::fs::symlink(&secret, grant.join("to-secret")).unwrap();
    std::fs::write(grant.join("mine"), "mine\n").unwrap();
    let g = grant.to_str().unwrap().to_string();
    let bb = |args: &[&str]| -> Output {
        let mut argv = vec![
            vmx.to_string(),
            "run".into(),
            "--root".into(),
            root.to_str().unwrap().into(),
            "--dir".into(),
            g.clone(),
            root.join("usr/bin/busybox").to_str().unwrap().into(),
        ];
        argv.extend(args.iter().map(|s| s.to_string()));
        run(&argv, b"", &grant)
    };
    let up = format!("/../../../../..{secret_s}");
    let up_link = format!("/etc/up{secret_s}");
    let via_root = format!("/proc/self/root{secret_s}");
    let cwd_rel = format!("/proc/self/cwd/../secret/{}", "secret.txt");
    let grant_link = format!("{g}/to-secret");
    for path in [
        secret_s.as_str(),
        up.as_str(),
        "/etc/abs-out",
        up_link.as_str(),
        via_root.as_str(),
        cwd_rel.as_str(),
        grant_link.as_str(),
        "../secret/secret.txt",
    ] {
        let out = bb(&["cat", path]);
        assert!(!out.status.success(), "cat {path} succeeded: {}", show(&out));
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("SECRET"),
            "cat {path} leaked the secret"
        );
    }
    // Inside the root: absolute links resolve inside it; reading works, writing does not.
    let out = bb(&["cat", "/etc/abs-in"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "inside the root\n", "{}", show(&out));
    let out = bb(&["readlink", "/proc/self/root"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/\n");
    let out = bb(&["touch", "/etc/new-file"]);
    assert!(!out.status.success() && !root.join("etc/new-file").exists(), "{}", show(&out));
    let out = bb(&["rm", "/etc/inside"]);
    assert!(!out.status.success() && root.join("etc/inside").exists(), "{}", show(&out));
    // Renames and hard links across the grant's boundary.
    let mine = format!("{g}/mine");
    let outside = base.join("moved").to_str().unwrap().to_string();
    let out = bb(&["mv", &mine, &outside]);
    assert!(!out.status.success() && grant.join("mine").exists(), "{}", show(&out));
    assert!(!base.join("moved").exists());
    let out = bb(&["ln", "/etc/inside", &format!("{g}/hard")]);
    assert!(!out.status.success() && !grant.join("hard").exists(), "{}", show(&out));
    let out = bb(&["ln", &secret_s, &format!("{g}/hard2")]);
    assert!(!out.status.success() && !grant.join("hard2").exists(), "{}", show(&out));
    let out = bb(&["mv", "/etc/inside", &format!("{g}/stolen")]);
    assert!(!out.status.success() && root.join("etc/inside").exists(), "{}", show(&out));
    // Within the grant everything works.
    let out = bb(&["mv", &mine, &format!("{g}/renamed")]);
    assert!(out.status.success() && grant.join("renamed").exists(), "{}", show(&out));
    let _ = std::fs::remove_dir_all(&base);
}

/// Bad roots and interpreters: one clear line and exit status 125.
#[test]
fn bad_roots_and_interpreters_are_one_clear_line() {
    let Some(shared) = root() else { return };
    let vmx = env!("CARGO_BIN_EXE_vmx");
    let base = scratch("bad");
    let python = shared.join("usr/bin/python3");
    let check = |root: &Path, needle: &str| {
        let out = Command::new(vmx)
            .args(["run", "--root"])
            .arg(root)
            .arg(&python)
            .args(["-c", "pass"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("vmx: ") && err.contains(needle), "{needle:?} in {err}");
    };
    check(&base.join("missing"), "no such directory");
    let empty = base.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    check(&empty, "not found in the root");
    let ld = "usr/lib/ld-linux-riscv64-lp64d.so.1";
    let corrupt = base.join("corrupt");
    std::fs::create_dir_all(corrupt.join("usr/lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib", corrupt.join("lib")).unwrap();
    std::fs::write(corrupt.join(ld), b"\x7fELF\x02\x01\x01garbage").unwrap();
    check(&corrupt, "interpreter /lib/ld-linux-riscv64-lp64d.so.1");
    let dynamic = base.join("dynamic");
    std::fs::create_dir_all(dynamic.join("usr/lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib", dynamic.join("lib")).unwrap();
    std::fs::copy(shared.join("usr/bin/true"), dynamic.join(ld)).unwrap();
    check(&dynamic, "itself dynamically linked");
    let _ = std::fs::remove_dir_all(&base);
}

/// A huge file that is not an ELF is refused after its header, with small memory use.
#[test]
fn a_huge_non_elf_file_is_refused_with_small_rss() {
    let base = scratch("huge");
    let f = base.join("huge.bin");
    let file = std::fs::File::create(&f).unwrap();
    file.set_len(1 << 30).unwrap(); // sparse: 1 GiB of zeros
    drop(file);
    // Reaped with wait4 below, which also gives its resource usage.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .arg("run")
        .arg(&f)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `status` and `usage` are live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    assert_eq!(libc::WEXITSTATUS(status), 125);
    assert!(usage.ru_maxrss < 64 * 1024, "max RSS {} KiB", usage.ru_maxrss);
    let _ = std::fs::remove_dir_all(&base);
}
