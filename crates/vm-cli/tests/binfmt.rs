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
