//! Bad input never panics the host: malformed, truncated, foreign and mutated ELF files give
//! a clear message and a non-zero exit; mutated-but-loadable files run as guests whose
//! faults end them like signals would.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use vm_executors::{CaptureBuffer, InterpreterExecutor, ProcessConfig, Program, Stdio};

fn vmx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmx")).args(args).output().expect("vmx runs")
}

fn hello() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guests/bin/hello")).unwrap()
}

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vmx-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn assert_clean_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr: {err}");
    assert!(err.starts_with("vmx: "), "one clear line: {err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn malformed_files_get_a_clear_error() {
    let elf = hello();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "not an ELF file"),
        ("text", b"#!/bin/sh\necho hi\n".to_vec(), "not an ELF file"),
        ("truncated-header", elf[..40].to_vec(), "truncated"),
        ("truncated-segments", elf[..2000].to_vec(), "truncated"),
        (
            "x86",
            {
                let mut e = elf.clone();
                e[18] = 62;
                e
            },
            "wrong architecture",
        ),
        (
            "elf32",
            {
                let mut e = elf.clone();
                e[4] = 1;
                e
            },
            "wrong architecture",
        ),
        (
            "big-endian",
            {
                let mut e = elf.clone();
                e[5] = 2;
                e
            },
            "wrong architecture",
        ),
        (
            "relocatable",
            {
                let mut e = elf.clone();
                e[16] = 1;
                e
            },
            "unsupported ELF type",
        ),
    ];
    for (name, bytes, needle) in cases {
        let p = temp_file(name, &bytes);
        assert_clean_error(&vmx(&["run", p.to_str().unwrap()]), needle);
    }
    assert_clean_error(&vmx(&["run", "/nonexistent/program"]), "cannot read");
}

#[test]
fn dynamically_linked_programs_without_their_interpreter_are_refused_with_advice() {
    // Turn the first PT_LOAD-or-other header into PT_INTERP pointing at some bytes.
    let mut elf = hello();
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    elf[phoff..phoff + 4].copy_from_slice(&3u32.to_le_bytes());
    let p = temp_file("dynamic", &elf);
    assert_clean_error(&vmx(&["run", p.to_str().unwrap()]), "not found on the host (no --root");
    let empty = temp_file("empty-root-marker", b"").with_file_name("empty-root");
    std::fs::create_dir_all(&empty).unwrap();
    let out = vmx(&["run", "--root", empty.to_str().unwrap(), p.to_str().unwrap()]);
    assert_clean_error(&out, "not found in the root");
    assert_clean_error(
        &vmx(&["run", "--root", "/nonexistent/root", p.to_str().unwrap()]),
        "--root /nonexistent/root: no such directory",
    );
}

/// Every single-byte and multi-byte mutation of the headers, and random ones anywhere:
/// parse, load and run (with a small budget) never panic.
#[test]
fn mutated_elf_files_never_panic() {
    let base = hello();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut ran = 0;
    for n in 0..600 {
        let mut f = base.clone();
        let mutations = 1 + next() % 4;
        for _ in 0..mutations {
            let r = next();
            // Mostly the ELF and program headers, sometimes anywhere.
            let i = if n % 3 == 0 { (r % f.len() as u64) as usize } else { (r % 0x200) as usize };
            f[i] = (r >> 40) as u8;
        }
        if n % 50 == 0 {
            f.truncate((next() % f.len() as u64) as usize);
        }
        let Ok(program) = Program::parse(f) else { continue };
        let out = CaptureBuffer::with_limit(1 << 16);
        let config = ProcessConfig {
            stdout: Stdio::Capture(out.clone()),
            stderr: Stdio::Capture(out),
            stdin: Stdio::Null,
            memory_size: 256 << 20,
            ..Default::default()
        };
        let mut ex = InterpreterExecutor::new();
        if ex.load(Arc::new(program), config).is_err() {
            continue;
        }
        // A bounded run: whatever the mutated code does, the host stays up.
        let _ = ex.execute_batch(20, 50_000);
        ran += 1;
    }
    assert!(ran > 50, "most header mutations still load and run: {ran}");
}
