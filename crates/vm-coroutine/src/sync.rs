//! The synchronization primitives of the parking lot: `std`'s in normal builds, loom's when
//! built with `--cfg loom` so that the model tests can explore every interleaving.

#[cfg(loom)]
pub(crate) use loom::sync::{atomic, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{atomic, Condvar, Mutex, MutexGuard};
