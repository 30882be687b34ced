//! `vmx run --strace`: the trace matches `qemu-riscv64 -strace`.
//!
//! For single-threaded static guests the sequence of system-call names (including qemu's
//! `Unknown syscall N`) must be identical; the arguments of `openat`, `write`, `mmap`,
//! `munmap`, `mprotect`, `brk`, `newfstatat`, `readlinkat`, `lseek`, `fcntl` and `clone` must print
//! exactly as qemu prints them once guest stack addresses (which differ between the two) are
//! masked. Without qemu the test says so and passes, unless `VMX_REQUIRE_QEMU` is set.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn qemu_available() -> bool {
    vm_test_support::tools::required("qemu-riscv64", "VMX_REQUIRE_QEMU", "strace")
}

/// The trace of `program args` under qemu (its stderr; the guest writes nothing there).
fn qemu_trace(program: &str, args: &[&str]) -> String {
    let out = Command::new("qemu-riscv64")
        .arg("-strace")
        .arg(program)
        .args(args)
        .current_dir(root())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("qemu runs");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The trace of `program args` under `vmx run --strace-file` with `engine`.
fn vmx_trace(program: &str, args: &[&str], engine: &str, extra: &[&str]) -> String {
    let (trace, status) = vmx_trace_status(program, args, engine, extra);
    assert!(status.code().is_some(), "vmx died by a signal");
    trace
}

/// [`vmx_trace`] and vmx's exit status (which may be a signal, as the guest's).
fn vmx_trace_status(
    program: &str,
    args: &[&str],
    engine: &str,
    extra: &[&str],
) -> (String, std::process::ExitStatus) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trace");
    let status = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .args(["run", "--engine", engine])
        .args(extra)
        .arg("--strace-file")
        .arg(&file)
        .arg(program)
        .args(args)
        .current_dir(root())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("vmx runs");
    (std::fs::read_to_string(&file).unwrap(), status)
}

/// The calls of a trace: `name(args)` per call (`Unknown syscall N` as is), without the pid,
/// the result and `--- SIG... ---` lines. Under qemu another thread's line can start right
/// after a call's `)` (before its result): that is split off as a call of its own.
fn calls(trace: &str) -> Vec<String> {
    let mut v = Vec::new();
    for line in trace.lines() {
        let mut rest = line;
        while let Some((pid, after)) = rest.split_once(' ') {
            if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                break;
            }
            if after.starts_with("Unknown syscall") {
                v.push(after.to_string());
                break;
            }
            let Some(open) = after.find('(') else { break };
            if !after[..open]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                break;
            }
            // The matching `)`, skipping quoted strings.
            let (mut depth, mut quoted, mut end) = (0, false, after.len());
            for (i, c) in after.char_indices().skip(open) {
                match c {
                    '"' => quoted = !quoted,
                    '(' if !quoted => depth += 1,
                    ')' if !quoted => {
                        depth -= 1;
                        if depth == 0 {
                            end = i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            v.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    v
}

fn name(call: &str) -> &str {
    call.split('(').next().unwrap_or(call)
}

/// Masks guest stack and mmap addresses (qemu puts the stack near 0x40_0080_0000 and maps
/// above it, vmx uses the top of its 4 GiB space); image and brk addresses stay as printed.
fn mask_stack(call: &str) -> String {
    let mut out = String::new();
    let mut rest = call;
    while let Some(i) = rest.find("0x") {
        out.push_str(&rest[..i]);
        let hex: String =
            rest[i + 2..].chars().take_while(|c| c.is_ascii_hexdigit()).collect::<String>();
        let v = u64::from_str_radix(&hex, 16).unwrap_or(0);
        // Stack and mmap addresses (qemu: 0x40_007f_f000 and up; vmx: below 4 GiB, top
        // down), and qemu's `%#x` of a stack address (its low 32 bits, 0x7f....-0x80....).
        let stackish = v >= 0x100_0000 || (0x0070_0000..0x0081_0000).contains(&v);
        if stackish {
            out.push_str("STACK");
        } else {
            out.push_str("0x");
            out.push_str(&hex);
        }
        rest = &rest[i + 2 + hex.len()..];
    }
    out.push_str(rest);
    out
}

const CHECKED_ARGS: &[&str] = &[
    "openat",
    "write",
    "mmap",
    "munmap",
    "mprotect",
    "brk",
    "newfstatat",
    "readlinkat",
    "lseek",
    "fcntl",
    "close",
    "clone",
    "exit_group",
];

fn compare(program: &str, args: &[&str], extra: &[&str]) {
    let q = calls(&qemu_trace(program, args));
    assert!(q.len() > 5, "qemu trace of {program} too short: {q:?}");
    for engine in ["interp", "jit", "hybrid"] {
        let v = calls(&vmx_trace(program, args, engine, extra));
        let qn: Vec<&str> = q.iter().map(|c| name(c)).collect();
        let vn: Vec<&str> = v.iter().map(|c| name(c)).collect();
        assert_eq!(qn, vn, "{program} {args:?} on {engine}: system-call names differ");
        for (a, b) in q.iter().zip(&v) {
            if CHECKED_ARGS.contains(&name(a)) {
                assert_eq!(mask_stack(a), mask_stack(b), "{program} on {engine}: arguments differ");
            }
        }
    }
}

#[test]
fn static_guests_trace_the_same_calls_as_qemu() {
    if !qemu_available() {
        return;
    }
    compare("guests/bin/hello", &[], &[]);
    compare("guests/bin/args_env", &["one", "two"], &[]);
    compare("guests/bin/malloc_churn", &[], &[]);
    compare("guests/bin/syscalls", &["guests/data/input.txt"], &["--dir", "guests/data"]);
}

#[test]
fn clone_prints_its_flags_and_pointers_like_qemu() {
    if !qemu_available() {
        return;
    }
    let q = calls(&qemu_trace("guests/bin/threads_mutex", &[]));
    let v = calls(&vmx_trace("guests/bin/threads_mutex", &[], "hybrid", &["--vcpus", "1"]));
    let clones = |c: &[String]| -> Vec<String> {
        c.iter().filter(|c| name(c) == "clone").map(|c| c.to_string()).collect()
    };
    let (qc, vc) = (clones(&q), clones(&v));
    assert!(!qc.is_empty());
    assert_eq!(qc.len(), vc.len(), "clone count");
    // Thread stacks are mmap'ed: their addresses differ between qemu and vmx, so compare the
    // shape (flags and field names) with the numbers masked.
    let shape = |s: &str| {
        s.split(',')
            .map(|f| f.split_once("=0x").map_or(f.to_string(), |(k, _)| format!("{k}=ADDR")))
            .collect::<Vec<_>>()
            .join(",")
    };
    for (a, b) in qc.iter().zip(&vc) {
        assert_eq!(shape(a), shape(b));
    }
    // Every thread's exit is traced too (qemu prints `exit(0)` for each).
    let exits = |c: &[String]| c.iter().filter(|c| c.as_str() == "exit(0)").count();
    assert_eq!(exits(&q), exits(&v));
}

#[test]
fn trace_formats_follow_qemu() {
    // Independent of qemu: fixed examples of qemu 7.2's output for this repository's guests.
    let v = vmx_trace("guests/bin/hello", &[], "interp", &[]);
    let first: Vec<&str> = v.lines().take(2).collect();
    assert!(first[0].ends_with(" brk(NULL) = 0x000000000007d000"), "{v}");
    assert!(first[1].ends_with(" brk(0x000000000007db00) = 0x000000000007db00"), "{v}");
    assert!(v.contains(" set_robust_list(512224,24,-32,1,508664,512224) = -1 errno=38 (Function not implemented)\n"), "{v}");
    assert!(v.contains(" readlinkat(AT_FDCWD,\"/proc/self/exe\",0x"), "{v}");
    assert!(v.contains(" mprotect(0x0000000000071000,16384,PROT_READ) = 0\n"), "{v}");
    // The buffer's address depends on the length of the checkout's path (glibc keeps the
    // program's path on the heap), so only its form is fixed.
    assert!(v.lines().any(|l| l.contains(" write(1,0x") && l.ends_with(",51) = 51")), "{v}");
    assert!(v.ends_with(" exit_group(0)\n"), "{v}");
    let v = vmx_trace(
        "guests/bin/syscalls",
        &["guests/data/input.txt"],
        "interp",
        &["--dir", "guests/data"],
    );
    for want in [
        " openat(AT_FDCWD,\"guests/data/input.txt\",O_RDONLY) = 3\n",
        " openat(AT_FDCWD,\"guests/data/does-not-exist.txt\",O_RDONLY) = -1 errno=2 (No such file or directory)\n",
        " lseek(3,-10,SEEK_END) = 11564\n",
        " fcntl(3,F_GETFD) = 1\n",
        " mmap(NULL,65536,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0) = 0x",
        " Unknown syscall 999\n",
        " close(-1) = -1 errno=9 (Bad file descriptor)\n",
    ] {
        assert!(v.contains(want), "missing {want:?} in\n{v}");
    }
}

#[test]
fn strace_goes_to_stderr_between_the_guests_output_like_qemu() {
    let out = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .args(["run", "--strace", "guests/bin/hello"])
        .current_dir(root())
        .env_clear()
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().any(|l| l.contains(" write(1,0x") && l.ends_with(",51) = 51")), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().next(), Some("Hello from RISC-V!"));
}

/// The Debian riscv64 root of the real-program suite (`VMX_TEST_ROOT`, built by
/// `cargo xtask rootfs`), or `None` with the reason printed (fatal when
/// `VMX_REQUIRE_ROOTFS=1`).
fn test_root() -> Option<PathBuf> {
    match std::env::var_os("VMX_TEST_ROOT").map(PathBuf::from) {
        Some(r) if r.join("usr/bin/sort").exists() => Some(r),
        other => {
            assert!(
                !std::env::var("VMX_REQUIRE_ROOTFS").is_ok_and(|v| v == "1"),
                "VMX_REQUIRE_ROOTFS=1 but VMX_TEST_ROOT ({other:?}) holds no Debian root"
            );
            eprintln!("strace: SKIPPED: no VMX_TEST_ROOT (cargo xtask rootfs DIR coreutils ...)");
            None
        }
    }
}

/// The system-call names of a dynamically linked program from `rootfs`, under
/// `qemu-riscv64 -L ROOT -strace` and under `vmx run --root ROOT --strace-file` on every
/// engine, must be the same. Two differences of environment (not of vmx) are evened out:
/// - qemu writes its trace to its own stderr, which is the guest's descriptor 2: coreutils
///   close it before `exit_group`, and qemu's last lines are lost. `-D FILE` sends the trace
///   to a file instead (which takes descriptor 3 in qemu, so descriptor numbers in the
///   arguments are one higher there: only names are compared here).
/// - `qemu -L` falls back to the host's file for any path ROOT lacks: ld.so finds no
///   `ROOT/etc/ld.so.cache` and reads the host's (and finds no `/etc/ld.so.preload`). vmx
///   denies ungranted host paths (`EACCES`), so `--dir /etc` grants the same view (and
///   `--dir /usr/share/zoneinfo`, where the host's `/etc/localtime` points).
fn compare_dynamic(rootfs: &std::path::Path, program: &str, args: &[&str]) {
    let prog = rootfs.join(program);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("qemu");
    let status = Command::new("qemu-riscv64")
        .arg("-L")
        .arg(rootfs)
        .arg("-D")
        .arg(&log)
        .arg("-strace")
        .arg(&prog)
        .args(args)
        .current_dir(root())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("qemu runs");
    assert!(status.code().is_some(), "qemu died by a signal");
    let q = calls(&std::fs::read_to_string(&log).unwrap());
    assert!(q.len() > 20, "qemu trace of {program} too short: {q:?}");
    let qn: Vec<&str> = q.iter().map(|c| name(c)).collect();
    let root_arg = rootfs.to_str().unwrap();
    let mut extra = vec!["--root", root_arg, "--dir", "/etc", "--dir", "guests/data"];
    if std::path::Path::new("/usr/share/zoneinfo").is_dir() {
        extra.extend(["--dir", "/usr/share/zoneinfo"]);
    }
    let prog = prog.to_str().unwrap();
    for engine in ["interp", "jit", "hybrid"] {
        let v = calls(&vmx_trace(prog, args, engine, &extra));
        let vn: Vec<&str> = v.iter().map(|c| name(c)).collect();
        assert_eq!(qn, vn, "{program} {args:?} on {engine}: system-call names differ");
        // The interpreter and libraries come from the root, under the same guest paths, and
        // path arguments print alike (addresses masked).
        let paths = |c: &[String]| -> Vec<String> {
            c.iter()
                .filter(|c| matches!(name(c), "openat" | "statx" | "llistxattr"))
                .map(|c| mask_stack(c))
                .collect()
        };
        assert_eq!(paths(&q), paths(&v), "{program} on {engine}: path arguments differ");
    }
}

#[test]
fn dynamic_programs_from_a_root_trace_the_same_calls_as_qemu() {
    if !qemu_available() {
        return;
    }
    let Some(rootfs) = test_root() else { return };
    compare_dynamic(&rootfs, "usr/bin/echo", &["hello"]);
    compare_dynamic(&rootfs, "usr/bin/sort", &["-r", "guests/data/input.txt"]);
    compare_dynamic(&rootfs, "usr/bin/ls", &["-l", "guests/data"]);
}

/// The `--- SIGxxx {...} ---` lines of a trace (also where they land inside another line),
/// with the first traced pid (the program's own, the host's under qemu) as `SELF`, other
/// pids as `PID`, and stack and mmap addresses masked.
fn signal_lines(trace: &str) -> Vec<String> {
    let me = trace.split(' ').next().unwrap_or_default();
    let mut v = Vec::new();
    for line in trace.lines() {
        let mut rest = line;
        while let Some(i) = rest.find("--- SIG") {
            let Some(end) = rest[i..].find("} ---") else { break };
            let s = &rest[i..i + end + 5];
            let s = s.replace(&format!("si_pid={me},"), "si_pid=SELF,");
            let s = match s.find("si_pid=") {
                Some(p)
                    if !s[p..].starts_with("si_pid=SELF") && !s[p..].starts_with("si_pid=0,") =>
                {
                    let n = s[p + 7..].find(',').map_or(s.len(), |k| p + 7 + k);
                    format!("{}si_pid=PID{}", &s[..p], &s[n..])
                }
                _ => s,
            };
            v.push(mask_stack(&s));
            rest = &rest[i + end + 5..];
        }
    }
    v
}

/// A trace as the sequence of call names with the signal lines where they are.
fn calls_and_signals(trace: &str) -> Vec<String> {
    let sigs = signal_lines(trace);
    let mut sigs = sigs.into_iter();
    let mut v = Vec::new();
    for line in trace.lines() {
        if line.starts_with("--- SIG") {
            v.extend(sigs.next());
        } else {
            v.extend(calls(line).iter().map(|c| name(c).to_string()));
        }
    }
    v
}

#[test]
fn taken_signals_print_like_qemu() {
    if !qemu_available() {
        return;
    }
    // Handlers for tkill/kill/tgkill'd signals, SIGSEGV (mapped and unmapped), SIGILL,
    // masks and SIGALRM: every line at the same place as under qemu.
    let q = calls_and_signals(&qemu_trace("guests/bin/signals", &[]));
    assert!(q.iter().filter(|l| l.starts_with("--- SIG")).count() >= 10, "{q:?}");
    assert!(q.iter().any(|l| l.contains("si_code=SI_TKILL, si_pid=SELF")), "{q:?}");
    for engine in ["interp", "jit", "hybrid"] {
        let v = calls_and_signals(&vmx_trace("guests/bin/signals", &[], engine, &[]));
        assert_eq!(q, v, "signals on {engine}");
    }
    // A fatal fault is printed before the process dies of it.
    let q = signal_lines(&qemu_trace("guests/bin/fault_segv", &[]));
    assert_eq!(q.len(), 1, "{q:?}");
    for engine in ["interp", "jit", "hybrid"] {
        let (v, status) = vmx_trace_status("guests/bin/fault_segv", &[], engine, &[]);
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(11));
        assert_eq!(q, signal_lines(&v), "fault_segv on {engine}");
    }
    // Across processes (SIGCHLD with the child's status, kill between parent and child, a
    // child's fatal SIGTERM, a storm of tkill'd signals). Under qemu the processes' lines
    // interleave anywhere, also inside a signal line, and some of the children's lines can
    // be missing: every line qemu printed whole vmx prints too.
    let distinct = |t: &str| -> std::collections::BTreeSet<String> {
        signal_lines(t).into_iter().filter(|l| !l.contains('(')).collect()
    };
    let q = distinct(&qemu_trace("guests/bin/sigprocs", &[]));
    assert!(
        q.iter().any(|l| l.starts_with("--- SIGCHLD {si_signo=SIGCHLD, si_code=1, si_pid=PID")),
        "{q:?}"
    );
    for engine in ["interp", "hybrid"] {
        let v = distinct(&vmx_trace("guests/bin/sigprocs", &[], engine, &[]));
        assert!(q.is_subset(&v), "sigprocs on {engine}: qemu {q:?}\nvmx {v:?}");
        assert!(v.iter().any(|l| l.starts_with("--- SIGTERM")), "the child's fatal SIGTERM: {v:?}");
    }
}
