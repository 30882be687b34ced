//! Hand-assembled guest programs for the engine tests (`vm-exec-jit/tests/engine.rs`, which
//! runs every engine configuration, and `vm-exec-jit/tests/cache_fuel.rs`), so that every
//! engine is checked on the very same programs.

use std::sync::Arc;
use vm_exec_core::cpu::GuestThread;
use vm_exec_core::elf::Program;
use vm_exec_core::elf_writer::{simple_executable, write_executable, SegmentSpec};
use vm_exec_core::encode::*;
use vm_exec_core::loader;
use vm_exec_core::process::{Process, ProcessConfig};

/// `exit(a0)`: the two instructions that end a test program.
pub fn exit_with_a0() -> Vec<u32> {
    vec![addi(A7, 0, 94), ECALL]
}

/// Instruction words as little-endian code bytes.
pub fn bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Parses `elf` and loads it as a process with 64 MiB of guest memory and its main thread.
pub fn load(elf: Vec<u8>) -> (Process, GuestThread) {
    let program = Arc::new(Program::parse(elf).expect("valid test program"));
    let config = ProcessConfig { memory_size: 64 << 20, ..Default::default() };
    loader::load(program, Arc::new(config), 1).expect("loads")
}

/// Sums 1..=n in a loop and exits with the sum (mod 256): 3 + 3n + 2 instructions.
pub fn sum_program(n: i32) -> Vec<u8> {
    let mut w = vec![
        addi(A0, 0, 0),
        addi(T0, 0, n),
        addi(T1, 0, 0),
        // loop:
        addi(T1, T1, 1),
        add(A0, A0, T1),
        bne(T1, T0, -8),
    ];
    w.extend(exit_with_a0());
    simple_executable(&bytes(&w), &[])
}

/// A program in a writable+executable segment that patches the immediate of an instruction
/// it has already executed, then runs it again.
pub fn self_modifying(with_fence: bool) -> Vec<u8> {
    // 0x10000: a2 = 0
    // 0x10004: jal ra, target        (call)
    // 0x10008: a2 += a0
    // 0x1000c: load the patched word into t0, store it at target
    // ...
    // target: addi a0, zero, 1 ; jalr ra
    let target_off = 0x40u32;
    let patched = addi(A0, 0, 41);
    let mut w = vec![
        addi(A2, 0, 0),
        jal(1, target_off as i32 - 4),
        add(A2, A2, A0),
        lui(T0, patched >> 12 & 0xfffff),
        addi(T0, T0, (patched & 0xfff) as i32),
        lui(A1, 0x10),
        sw(T0, A1, target_off as i32),
    ];
    if with_fence {
        w.push(FENCE_I);
    }
    // The `lui`+`addi` pair above needs the sign adjustment of addi; fix it up exactly.
    let lo = ((patched & 0xfff) as i32) << 20 >> 20;
    let hi = patched.wrapping_sub(lo as u32) >> 12;
    w[3] = lui(T0, hi & 0xfffff);
    w[4] = addi(T0, T0, lo);
    let call_again = w.len() as i32 * 4;
    w.push(jal(1, target_off as i32 - call_again));
    w.push(add(A0, A2, A0));
    w.extend(exit_with_a0());
    while w.len() * 4 < target_off as usize {
        w.push(addi(0, 0, 0));
    }
    w.push(addi(A0, 0, 1));
    w.push(i(0x67, 0, 0, 1, 0)); // jalr x0, 0(ra)
    write_executable(
        0x10000,
        &[SegmentSpec { addr: 0x10000, bytes: &bytes(&w), zero_tail: 0, flags: 7 }],
    )
}

/// A loop of `n` iterations whose body hops through `hops` small blocks (each adds its index
/// to a0 and jumps to the next), then exits with a0.
pub fn hopping_program(n: i32, hops: i32) -> Vec<u8> {
    let mut w = vec![addi(A0, 0, 0), addi(T0, 0, n), addi(T1, 0, 0)];
    let loop_start = w.len() as i32;
    for h in 0..hops {
        w.push(addi(A0, A0, h));
        w.push(jal(0, 4));
    }
    w.push(addi(T1, T1, 1));
    let here = w.len() as i32;
    w.push(bne(T1, T0, (loop_start - here) * 4));
    w.extend(exit_with_a0());
    simple_executable(&bytes(&w), &[])
}
