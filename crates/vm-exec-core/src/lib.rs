//! Core of vm-executors: everything about a RISC-V guest that is independent of how its
//! instructions are executed.
//!
//! - [`inst`] and [`decode`]: the RV64GC instruction set, decoded once into [`inst::Inst`].
//! - [`fp`]: IEEE-754 semantics of the F and D extensions exactly as RISC-V defines them,
//!   and [`fp::execute`], the FP instruction dispatch every engine shares.
//! - [`atomic`]: LR/SC and AMO semantics, shared by every engine.
//! - [`csr`]: the user-mode CSRs.
//! - [`memory`]: the sandboxed guest address space (one host reservation, per-page permissions).
//! - [`elf`] and [`loader`]: parsing a static RV64 ELF into a [`elf::Program`] and building the
//!   initial process image and stack; [`elf_writer`] writes minimal executables for tests.
//! - [`cpu`]: the architectural state of one guest thread.
//! - [`syscall`]: the Linux system-call table.
//! - [`futex`]: futex wait queues and the [`futex::Waiter`]s through which blocking system
//!   calls park a guest thread instead of blocking a host thread.
//! - [`process`]: a guest process (address space, file descriptors, brk/mmap state).
//! - [`signals`]: pending signals, delivery to handlers (the RISC-V signal frame),
//!   `rt_sigreturn`.
//! - [`sandbox`]: the processes of one sandbox (a root and what it forks): ids, the process
//!   table with parents, groups, sessions and zombies, caps.
//! - [`exec`]: the [`exec::Executor`] trait every engine implements, and its vocabulary.
//! - [`sync`]: [`sync::IgnorePoison`], how every lock is taken.
#![warn(missing_docs)]

pub mod atomic;
pub mod cpu;
pub mod csr;
pub mod decode;
pub mod elf;
pub mod elf_writer;
pub mod encode;
pub mod exec;
pub mod fp;
pub mod futex;
pub mod inst;
pub mod loader;
pub mod memory;
pub mod pipe;
pub mod process;
pub mod sandbox;
pub mod signals;
pub mod sync;
pub mod syscall;
