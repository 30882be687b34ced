//! `vmx binfmt install | uninstall | status`, inside a private user and mount namespace with
//! its own binfmt_misc instance (Linux 6.7+), so the host's registrations (qemu-riscv64,
//! which other tests and helpers use) are never touched. Where such a namespace cannot be
//! made (no `unshare`, user namespaces disabled, an older kernel), the test prints why and
//! passes, unless `VMX_REQUIRE_BINFMT` is set.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `script` with sh in a new user+mount namespace (mapped root) with a fresh
/// binfmt_misc mounted, or says why it cannot.
fn in_private_binfmt(script: &str) -> Result<std::process::Output, String> {
    let full = format!(
        "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || exit 99\n\
         [ -z \"$(ls /proc/sys/fs/binfmt_misc | grep -v -e register -e status)\" ] || exit 98\n{script}"
    );
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &full])
        .current_dir(root())
        .env("VMX", env!("CARGO_BIN_EXE_vmx"))
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    match out.status.code() {
        Some(99) => Err(format!(
            "cannot mount a private binfmt_misc (kernel older than 6.7?): {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Some(98) => Err("the new namespace still sees the host's binfmt_misc entries".into()),
        Some(1) if String::from_utf8_lossy(&out.stderr).contains("unshare failed") => {
            Err(format!("no user namespaces: {}", String::from_utf8_lossy(&out.stderr)))
        }
        _ => Ok(out),
    }
}

fn skip(reason: &str) {
    assert!(
        std::env::var_os("VMX_REQUIRE_BINFMT").is_none(),
        "VMX_REQUIRE_BINFMT is set but: {reason}"
    );
    eprintln!("binfmt: SKIPPED: {reason}");
}

#[test]
fn installed_vmx_runs_riscv_programs_directly() {
    let script = r#"
"$VMX" binfmt status; echo "status-before=$?"
"$VMX" binfmt install || exit 10
"$VMX" binfmt status; echo "status-installed=$?"
./guests/bin/hello one two; echo "hello=$?"
./guests/bin/exit_code >/dev/null 2>&1; echo "exit_code=$?"
"$VMX" binfmt uninstall || exit 11
./guests/bin/hello 2>/dev/null; echo "after-uninstall=$?"
"$VMX" binfmt status; echo "status-after=$?"
"#;
    let out = match in_private_binfmt(script) {
        Ok(o) => o,
        Err(reason) => return skip(&reason),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ctx = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{ctx}");
    assert!(stdout.contains("vmx-riscv64: not installed\nstatus-before=1\n"), "{ctx}");
    assert!(stdout.contains("vmx-riscv64: enabled (interpreter "), "{ctx}");
    assert!(stdout.contains("flags PF)\nstatus-installed=0\n"), "{ctx}");
    // argv[0] preserved (flag P), arguments passed, output as under qemu.
    assert!(
        stdout.contains(
            "Hello from RISC-V!\nargc=3\nargv[0]=./guests/bin/hello\nargv[1]=one\nargv[2]=two\nhello=0\n"
        ),
        "{ctx}"
    );
    assert!(stdout.contains("exit_code=42\n"), "{ctx}");
    // Gone after uninstall: the kernel no longer knows how to run it.
    assert!(stdout.contains("after-uninstall=126\n"), "{ctx}");
    assert!(stdout.contains("status-after=1\n"), "{ctx}");
}

#[test]
fn install_refuses_to_shadow_another_handler_and_needs_root() {
    // Another entry for the same magic (standing in for qemu-riscv64): refused unless asked.
    let script = r#"
printf ':fake-qemu:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/bin/false:' > /proc/sys/fs/binfmt_misc/register || exit 12
"$VMX" binfmt install; echo "plain=$?"
"$VMX" binfmt install --disable-others; echo "forced=$?"
head -1 /proc/sys/fs/binfmt_misc/fake-qemu
./guests/bin/hello >/dev/null; echo "hello=$?"
"#;
    let out = match in_private_binfmt(script) {
        Ok(o) => o,
        Err(reason) => return skip(&reason),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!("{stdout}\n{stderr}");
    assert!(stdout.contains("plain=125\n"), "{ctx}");
    assert!(stderr.contains("fake-qemu already handles riscv64 programs"), "{ctx}");
    assert!(stdout.contains("forced=0\ndisabled\nhello=0\n"), "{ctx}");

    // Not root: a clear error, nothing registered.
    let out = Command::new("unshare")
        .args(["--user", env!("CARGO_BIN_EXE_vmx"), "binfmt", "install"])
        .output();
    if let Ok(out) = out {
        if out.status.code() == Some(125) {
            assert!(String::from_utf8_lossy(&out.stderr).contains("must run as root"));
        }
    }
}

/// The Debian riscv64 root of the real-program suite (`VMX_TEST_ROOT`, built by
/// `cargo xtask rootfs`), or why there is none (fatal when `VMX_REQUIRE_ROOTFS=1`).
fn test_root() -> Option<PathBuf> {
    match std::env::var_os("VMX_TEST_ROOT").map(PathBuf::from) {
        Some(r) if r.join("usr/bin/sort").exists() => Some(r),
        other => {
            assert!(
                !std::env::var("VMX_REQUIRE_ROOTFS").is_ok_and(|v| v == "1"),
                "VMX_REQUIRE_ROOTFS=1 but VMX_TEST_ROOT ({other:?}) holds no Debian root"
            );
            eprintln!("binfmt: SKIPPED: no VMX_TEST_ROOT (cargo xtask rootfs DIR coreutils ...)");
            None
        }
    }
}

/// `qemu-riscv64 -L root argv...` from the repository root: (stdout, stderr, status).
fn qemu(root: &std::path::Path, argv: &[&str]) -> Option<(String, String, i32)> {
    let out = Command::new("qemu-riscv64")
        .arg("-L")
        .arg(root)
        .args(argv)
        .current_dir(self::root())
        .env_clear()
        .env("LC_ALL", "C")
        .output()
        .ok()?;
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some((s(&out.stdout), s(&out.stderr), out.status.code().unwrap_or(-1)))
}

#[test]
fn installed_with_a_root_vmx_runs_dynamic_programs_from_it() {
    let Some(rootfs) = test_root() else { return };
    let r = rootfs.to_str().expect("UTF-8 root path");
    let (sort, ls, expr) =
        (format!("{r}/usr/bin/sort"), format!("{r}/usr/bin/ls"), format!("{r}/usr/bin/expr"));
    // The kernel starts the registered vmx with this shell's environment: VMX_ROOT must not
    // decide the root here (it would win over the recorded one). /run is a private tmpfs,
    // so the host's /run/vmx is not touched either.
    let script = format!(
        r#"
unset VMX_ROOT; export LC_ALL=C
mount -t tmpfs tmpfs /run || exit 13
"$VMX" binfmt install --root '{r}/' --dir guests/data || exit 10
"$VMX" binfmt status; echo "status=$?"
cat /run/vmx/vmx-riscv64.conf
echo "== sort"; '{sort}' -r guests/data/input.txt; echo "sort=$?"
echo "== ls"; '{ls}' --bogus-option 2>&1; echo "ls=$?"
echo "== expr"; '{expr}' 6 '*' 7; echo "expr=$?"
"$VMX" binfmt install || exit 11
'{expr}' 1 + 1 2>/dev/null; echo "no-root=$?"
[ -e /run/vmx/vmx-riscv64.conf ]; echo "conf-after-plain-install=$?"
"$VMX" binfmt install --root '{r}' || exit 12
"$VMX" binfmt uninstall; [ -e /run/vmx/vmx-riscv64.conf ]; echo "conf-after-uninstall=$?"
"#
    );
    let out = match in_private_binfmt(&script) {
        Ok(o) => o,
        Err(reason) => return skip(&reason),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ctx = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{ctx}");
    let data = self::root().join("guests/data").canonicalize().unwrap();
    let data = data.display();
    // The root is canonical (no trailing slash) and shown by status.
    assert!(
        stdout.contains(&format!(
            "flags PF, root {r}, dir {data})\nstatus=0\nroot={r}\ndir={data}\n"
        )),
        "{ctx}"
    );
    // Each program's output (and, with argv[0] preserved, its name in messages) is qemu's.
    let Some(q_sort) = qemu(&rootfs, &[&sort, "-r", "guests/data/input.txt"]) else {
        return eprintln!("binfmt: qemu-riscv64 not installed; outputs not compared");
    };
    let q_ls = qemu(&rootfs, &[&ls, "--bogus-option"]).unwrap();
    let q_expr = qemu(&rootfs, &[&expr, "6", "*", "7"]).unwrap();
    assert!(q_sort.0.len() > 1000 && q_ls.1.contains("unrecognized option"), "{q_sort:?} {q_ls:?}");
    let want = format!(
        "== sort\n{}sort={}\n== ls\n{}{}ls={}\n== expr\n{}expr={}\n",
        q_sort.0, q_sort.2, q_ls.0, q_ls.1, q_ls.2, q_expr.0, q_expr.2
    );
    assert!(stdout.contains(&want), "want\n{want}\nin\n{ctx}");
    // Without a root the dynamic program's interpreter is not found (vmx says so: 125).
    assert!(stdout.contains("no-root=125\nconf-after-plain-install=1\n"), "{ctx}");
    assert!(stdout.contains("conf-after-uninstall=1\n"), "{ctx}");
}
