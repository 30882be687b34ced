//! Locks that outlive a panic.
//!
//! A `std` lock is poisoned when a thread panics while holding it. Nothing in this project
//! leaves shared state half-updated across a panic that anyone goes on to observe (an engine
//! panic ends its guest; the vCPU goes on), so every lock is taken ignoring poison. One helper
//! says so, instead of `.unwrap_or_else(|e| e.into_inner())` at every call site.

use std::sync::{LockResult, PoisonError};

/// Takes the guard of a lock result whether or not the lock was poisoned: for
/// `Mutex::lock`, `RwLock::read`/`write`, `Condvar::wait` and `Condvar::wait_timeout`.
pub trait IgnorePoison<G> {
    /// The guard (or the condition variable's result), poisoned or not.
    fn ignore_poison(self) -> G;
}

impl<G> IgnorePoison<G> for LockResult<G> {
    #[inline]
    fn ignore_poison(self) -> G {
        self.unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::IgnorePoison;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_poisoned_lock_is_still_taken() {
        let m = Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().ignore_poison();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *m.lock().ignore_poison() += 1;
        assert_eq!(*m.lock().ignore_poison(), 2);
    }
}
