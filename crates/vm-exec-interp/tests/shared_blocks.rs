//! Decoded blocks shared between the processes of one program image: a second process reuses
//! the first one's decoding, and never a block whose bytes its own memory no longer holds.

use std::sync::Arc;
use vm_exec_core::elf::Program;
use vm_exec_core::elf_writer::simple_executable;
use vm_exec_core::encode::*;
use vm_exec_core::exec::{Executor, GuestExit, StopReason};
use vm_exec_core::loader;
use vm_exec_core::memory::{PERM_EXEC, PERM_READ, PERM_WRITE};
use vm_exec_core::process::ProcessConfig;
use vm_exec_interp::block::SharedBlocks;
use vm_exec_interp::Interpreter;

/// `a0 = 5` then a loop of 100 iterations, then exit with a0.
fn program() -> Arc<Program> {
    let words = [
        addi(A0, 0, 5),
        addi(T0, 0, 100),
        addi(T0, T0, -1),
        bne(T0, 0, -4),
        addi(A7, 0, 94),
        ECALL,
    ];
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    Arc::new(Program::parse(simple_executable(&bytes, &[])).unwrap())
}

/// Runs one process of `program` on a fresh interpreter; returns its exit status and the
/// number of blocks it took from the image's shared ones.
fn run(program: &Arc<Program>, patch_first: Option<u32>) -> (i32, u64) {
    let config = Arc::new(ProcessConfig { memory_size: 16 << 20, ..Default::default() });
    let (process, mut thread) = loader::load(program.clone(), config, 1).unwrap();
    if let Some(word) = patch_first {
        // The process rewrites its own copy of the first instruction before it runs.
        let pc = thread.cpu.pc;
        let page = pc & !0xfff;
        process.mem.protect(page, 0x1000, PERM_READ | PERM_WRITE | PERM_EXEC).unwrap();
        process.mem.write_u32(pc, word).unwrap();
    }
    let mut engine = Interpreter::new();
    let r = engine.run(&mut thread, &process, u64::MAX);
    let StopReason::Finished(GuestExit::Exited(code)) = r.stop else { panic!("{:?}", r.stop) };
    (code, engine.shared_hits())
}

#[test]
fn a_second_process_reuses_the_first_ones_blocks_unless_its_bytes_differ() {
    let p = program();
    let (code, shared) = run(&p, None);
    assert_eq!((code, shared), (5, 0), "the first process decodes everything itself");
    let image = p.image_cache(SharedBlocks::default);
    assert!(image.len() >= 3, "its blocks were offered to the image: {}", image.len());
    let (code, shared) = run(&p, None);
    assert_eq!(code, 5);
    assert!(shared >= 3, "the second process decoded nothing it could share: {shared}");
    // A process whose first instruction differs must run its own code, not the shared block.
    let (code, shared) = run(&p, Some(addi(A0, 0, 7)));
    assert_eq!(code, 7, "a shared block was used although the bytes differ");
    assert!(shared >= 2, "the unchanged blocks are still shared");
    // A different image shares nothing with this one.
    let other = program();
    assert_eq!(run(&other, None), (5, 0));
}
