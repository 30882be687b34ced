//! The vm-executors JIT: RV64GC guest blocks translated to x86-64 with `dynasm-rs`, a
//! bounded code cache with block chaining, and a hybrid engine that interprets cold code and
//! translates hot blocks.
//!
//! Map of the crate:
//! - `context`: the context block translated code works on, the pinned host registers and
//!   the exit codes;
//! - `translate`: one decoded block ([`vm_exec_interp::block::decode_block`], so blocks have
//!   exactly the interpreter's shape) to x86-64 code, with `a0`..`a5` kept in host
//!   registers across blocks, block-local caching of two more guest registers, and inline SSE
//!   fast paths for the hot double-precision operations;
//! - `helpers`: `extern "C"` functions translated code calls (memory slow paths, floating
//!   point, CSRs, atomics), with the interpreter's semantics;
//! - `cache`: the code cache (executable buffer, pc map, invalidation by page, chaining and
//!   unchaining, the `jalr` jump table, flushing);
//! - `engine`: the dispatcher and the two public engines, [`JitEngine`] and
//!   [`HybridEngine`].
//!
//! Invariants: both engines satisfy the contract of [`vm_exec_core::exec`] (exact fuel,
//! exact retired counts, state written back on return, guest faults as signals, never a
//! panic on guest input); translated code reaches guest memory only through the bounds and
//! permission check it inlines or through the address space's checked accessors.
//!
//! Only x86-64 hosts are supported; the crate does not build elsewhere.
#![warn(missing_docs)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("vm-exec-jit translates to x86-64 and only builds on x86-64 hosts");

mod cache;
mod context;
mod engine;
mod helpers;
mod translate;

pub use cache::CodeBufferError;
pub use engine::{HybridEngine, JitConfig, JitEngine, TierStats, DEFAULT_HOT_THRESHOLD};

/// The older name of [`JitEngine`], kept while branches written against it merge (the
/// facade's `JitExecutor` is the runner around the engine, a different thing).
#[doc(hidden)]
pub type JitExecutor = JitEngine;
/// The older name of [`HybridEngine`] (see [`JitExecutor`]).
#[doc(hidden)]
pub type HybridExecutor = HybridEngine;
