//! Guest programs for the scheduler tests: the real `hello` and a few hand-assembled ones.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use vm_exec_core::elf::Program;
use vm_exec_core::elf_writer::simple_executable;
use vm_exec_core::encode::*;
use vm_exec_core::process::{CaptureBuffer, ProcessConfig, Stdio};

/// Engines for the tests: the interpreter (the scheduler itself names no engine).
pub fn interp() -> vm_coroutine::EngineFactory {
    Arc::new(|| Box::new(vm_exec_interp::Interpreter::new()))
}

fn program(words: &[u32]) -> Arc<Program> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    Arc::new(Program::parse(simple_executable(&bytes, &[])).expect("valid test program"))
}

/// Exits at once with `code` (3 instructions).
pub fn exit_program(code: i32) -> Arc<Program> {
    program(&[addi(A0, 0, code), addi(A7, 0, 94), ECALL])
}

/// Loops `4096 * k` times (2 instructions each), then exits with `code`.
pub fn loop_program(k: u32, code: i32) -> Arc<Program> {
    program(&[
        lui(T0, k),
        addi(T0, T0, -1),
        bne(T0, 0, -4),
        addi(A0, 0, code),
        addi(A7, 0, 94),
        ECALL,
    ])
}

/// Jumps to itself forever, never making a system call.
pub fn spin_program() -> Arc<Program> {
    program(&[jal(0, 0)])
}

/// Loads from an unmapped address: SIGSEGV.
pub fn segv_program() -> Arc<Program> {
    program(&[lui(A1, 0x7000), lw(A0, A1, 8)])
}

/// A small address space for the hand-assembled programs.
pub fn tiny_config() -> Arc<ProcessConfig> {
    Arc::new(ProcessConfig {
        memory_size: 16 << 20,
        stack_size: 256 << 10,
        stdin: Stdio::Null,
        stdout: Stdio::Null,
        stderr: Stdio::Null,
        ..Default::default()
    })
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `guests/bin/hello`, parsed.
pub fn hello() -> Arc<Program> {
    let bytes = std::fs::read(repo().join("guests/bin/hello")).expect("guests/bin/hello");
    Arc::new(Program::parse(bytes).expect("hello parses"))
}

/// What `hello` prints when its argv[0] is `guests/bin/hello`.
pub fn hello_expected() -> Vec<u8> {
    std::fs::read(repo().join("guests/expected/hello.stdout")).expect("hello.stdout")
}

/// A configuration for `hello` (argv[0] `guests/bin/hello`) whose stdout is captured.
pub fn hello_config() -> (Arc<ProcessConfig>, CaptureBuffer) {
    let out = CaptureBuffer::with_limit(1 << 16);
    let config = ProcessConfig {
        args: vec![b"guests/bin/hello".to_vec()],
        stdin: Stdio::Null,
        stdout: Stdio::Capture(out.clone()),
        stderr: Stdio::Null,
        random_seed: Some(1),
        ..Default::default()
    };
    (Arc::new(config), out)
}
