//! Access to the per-process ABI state ([`AbiState`], a field of [`Process`]): the
//! file-creation mask, the `prctl` name, `setrlimit` overrides, pending (blocked) signals and
//! alternate signal stacks.

pub(crate) use crate::process::AbiState as ProcState;
use crate::process::Process;

/// Runs `f` on `p`'s ABI state.
pub(crate) fn with<R>(p: &Process, f: impl FnOnce(&mut ProcState) -> R) -> R {
    f(&mut p.abi())
}

/// Reads `p`'s ABI state.
pub(crate) fn peek<R>(p: &Process, f: impl FnOnce(&ProcState) -> R) -> R {
    f(&p.abi())
}
