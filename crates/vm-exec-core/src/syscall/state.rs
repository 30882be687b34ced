//! Access to the per-process ABI state ([`AbiState`], a field of [`Process`]): the
//! file-creation mask, the `prctl` name, `setrlimit` overrides, pending (blocked) signals and
//! alternate signal stacks.

use crate::process::{AbiState, Process};

/// Runs `f` on `p`'s ABI state.
pub(crate) fn with<R>(p: &Process, f: impl FnOnce(&mut AbiState) -> R) -> R {
    f(&mut p.abi())
}

/// Reads `p`'s ABI state.
pub(crate) fn peek<R>(p: &Process, f: impl FnOnce(&AbiState) -> R) -> R {
    f(&p.abi())
}
