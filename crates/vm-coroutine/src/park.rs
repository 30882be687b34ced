//! The parking lot where idle vCPUs sleep, and the protocol that wakes them without losing a
//! wake-up.
//!
//! One [`ParkingLot`] serves all vCPUs of a scheduler. A vCPU that found no work calls
//! [`ParkingLot::park`] with a `has_work` check; whoever makes work available (pushes to a
//! queue or a next-to-run slot) calls [`ParkingLot::notify_one`] or
//! [`ParkingLot::notify_vcpu`] afterwards.
//!
//! # Protocol
//! - Parking, all under the lot's mutex: register as a sleeper (push the vCPU on the idle
//!   list, then `sleepers.fetch_add(1, AcqRel)`), call `has_work()`; if it sees work,
//!   unregister and return at once; otherwise wait on the vCPU's own condition variable until
//!   its `notified` token is set or the lot shuts down, then consume the token.
//! - Notifying one: after publishing the work, read `sleepers` with a read-modify-write
//!   (`fetch_add(0, AcqRel)`). If it is zero, return (the fast path: no lock, no syscall).
//!   Otherwise take the mutex, pop a sleeper from the idle list, decrement `sleepers`, set its
//!   token and signal its condition variable.
//! - Notifying a given vCPU (for its next-to-run slot, which only it may take): after
//!   publishing, take the mutex; if the vCPU is on the idle list, remove it and wake it as
//!   above; if not, it is awake and will see the slot in its `has_work` check.
//!
//! # Why no wake-up is lost
//! Take a vCPU `V` that registers and a producer `P` that publishes work `w` and then does its
//! read-modify-write on `sleepers`. Read-modify-writes of one atomic are totally ordered. If
//! `P`'s comes after `V`'s increment, `P` reads a non-zero count, takes the mutex and wakes a
//! registered sleeper (possibly another one; every woken vCPU searches every queue, so any of
//! them finds `w`); when it takes the mutex after `V` checked and unregistered, `V` saw some
//! work and keeps searching instead of sleeping. If `P`'s comes first, `V`'s increment reads
//! from it (acquire after release), so `w` happens-before `V`'s `has_work()` call, which
//! therefore sees `w` and `V` does not sleep. A notification for a given vCPU is ordered with
//! that vCPU's register-and-check by the mutex itself.
//!
//! # Invariants
//! - `sleepers` equals the length of the idle list whenever the mutex is free.
//! - A vCPU is on the idle list only while it is inside `park` between registering and being
//!   woken; its `notified` token is set only by the notifier that took it off the list.
//! - After [`ParkingLot::shutdown`], `park` returns [`Wake::Shutdown`] at once and every sleeper
//!   is woken.
//!
//! The loom models at the end of this file check these claims on tiny sizes; run them with
//! `RUSTFLAGS="--cfg loom" cargo test -p vm-coroutine --release loom`.

use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::{Condvar, Mutex, MutexGuard};
use vm_exec_core::sync::IgnorePoison;

/// Why [`ParkingLot::park`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The `has_work` check saw work after registering; the vCPU never slept.
    WorkSeen,
    /// A notifier woke this vCPU.
    Notified,
    /// The lot is shut down.
    Shutdown,
}

struct LotState {
    /// vCPUs registered as sleeping, most recent last.
    idle: Vec<usize>,
    /// Per vCPU: a notifier took it off the idle list and it has not consumed that yet.
    notified: Vec<bool>,
    shutdown: bool,
}

/// Idle vCPUs and the means to wake them. See the module docs for the protocol.
pub(crate) struct ParkingLot {
    state: Mutex<LotState>,
    /// Number of vCPUs on the idle list (read without the mutex by notifiers).
    sleepers: AtomicUsize,
    wakers: Box<[Condvar]>,
}

impl ParkingLot {
    /// A lot for `n` vCPUs, numbered `0..n`.
    pub(crate) fn new(n: usize) -> ParkingLot {
        ParkingLot {
            state: Mutex::new(LotState {
                idle: Vec::with_capacity(n),
                notified: vec![false; n],
                shutdown: false,
            }),
            sleepers: AtomicUsize::new(0),
            wakers: (0..n).map(|_| Condvar::new()).collect(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LotState> {
        self.state.lock().ignore_poison()
    }

    /// Puts vCPU `vcpu` to sleep until work is announced, unless `has_work` (called under the
    /// lot's mutex after registering, so it must not take the lot's mutex itself) sees work.
    /// An out-of-range `vcpu` returns [`Wake::WorkSeen`] without sleeping.
    pub(crate) fn park(&self, vcpu: usize, has_work: impl FnOnce() -> bool) -> Wake {
        let mut g = self.lock();
        let Some(waker) = self.wakers.get(vcpu) else {
            return Wake::WorkSeen;
        };
        if g.shutdown {
            return Wake::Shutdown;
        }
        if std::mem::take(&mut g.notified[vcpu]) {
            return Wake::Notified;
        }
        g.idle.push(vcpu);
        self.sleepers.fetch_add(1, Ordering::AcqRel);
        if has_work() {
            Self::unregister(&mut g, &self.sleepers, vcpu);
            return Wake::WorkSeen;
        }
        loop {
            if std::mem::take(&mut g.notified[vcpu]) {
                return Wake::Notified;
            }
            if g.shutdown {
                Self::unregister(&mut g, &self.sleepers, vcpu);
                return Wake::Shutdown;
            }
            g = waker.wait(g).ignore_poison();
        }
    }

    fn unregister(g: &mut LotState, sleepers: &AtomicUsize, vcpu: usize) {
        if let Some(pos) = g.idle.iter().position(|&v| v == vcpu) {
            g.idle.swap_remove(pos);
            sleepers.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Wakes one sleeping vCPU, if any. Call it after publishing work.
    pub(crate) fn notify_one(&self) -> bool {
        // A read-modify-write, not a load: see "Why no wake-up is lost" in the module docs.
        if self.sleepers.fetch_add(0, Ordering::AcqRel) == 0 {
            return false;
        }
        let mut g = self.lock();
        match g.idle.pop() {
            Some(v) => {
                self.sleepers.fetch_sub(1, Ordering::AcqRel);
                g.notified[v] = true;
                drop(g);
                self.wakers[v].notify_one();
                true
            }
            None => false,
        }
    }

    /// Wakes vCPU `vcpu` if it sleeps. Call it after publishing work only `vcpu` may take.
    pub(crate) fn notify_vcpu(&self, vcpu: usize) -> bool {
        let mut g = self.lock();
        let Some(pos) = g.idle.iter().position(|&v| v == vcpu) else {
            return false;
        };
        g.idle.swap_remove(pos);
        self.sleepers.fetch_sub(1, Ordering::AcqRel);
        g.notified[vcpu] = true;
        drop(g);
        self.wakers[vcpu].notify_one();
        true
    }

    /// Wakes every sleeper and makes every later `park` return at once.
    pub(crate) fn shutdown(&self) {
        let mut g = self.lock();
        g.shutdown = true;
        drop(g);
        for w in self.wakers.iter() {
            w.notify_all();
        }
    }

    /// Number of vCPUs asleep or about to sleep.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn sleepers(&self) -> usize {
        self.sleepers.load(Ordering::Acquire)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn park_returns_at_once_when_work_is_visible() {
        let lot = ParkingLot::new(2);
        assert_eq!(lot.park(0, || true), Wake::WorkSeen);
        assert_eq!(lot.sleepers(), 0);
        assert_eq!(lot.park(7, || false), Wake::WorkSeen, "unknown vCPU never sleeps");
    }

    #[test]
    fn notify_wakes_a_sleeper_and_shutdown_wakes_all() {
        let lot = Arc::new(ParkingLot::new(3));
        let work = Arc::new(AtomicBool::new(false));
        let sleeper = {
            let (lot, work) = (lot.clone(), work.clone());
            std::thread::spawn(move || lot.park(1, || work.load(Ordering::Acquire)))
        };
        while lot.sleepers() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        work.store(true, Ordering::Release);
        assert!(lot.notify_one());
        assert_eq!(sleeper.join().unwrap(), Wake::Notified);
        assert!(!lot.notify_one(), "nobody left to wake");

        let sleepers: Vec<_> = (0..3)
            .map(|i| {
                let lot = lot.clone();
                std::thread::spawn(move || lot.park(i, || false))
            })
            .collect();
        while lot.sleepers() < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(lot.notify_vcpu(2));
        assert!(!lot.notify_vcpu(2), "already woken");
        lot.shutdown();
        let wakes: Vec<Wake> = sleepers.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(wakes[2], Wake::Notified);
        assert_eq!(&wakes[..2], &[Wake::Shutdown, Wake::Shutdown]);
        assert_eq!(lot.park(0, || false), Wake::Shutdown);
        assert_eq!(lot.sleepers(), 0);
    }
}

/// Loom models of the protocol: every interleaving (up to the preemption bound) of vCPUs that
/// search, register and sleep against producers that publish and notify. A lost wake-up shows
/// as a deadlock, which loom reports as a failure.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;
    use loom::thread;

    /// A run queue reduced to a counter of items, plus a count of items run.
    struct Work {
        queued: AtomicUsize,
        done: AtomicUsize,
        total: usize,
    }

    impl Work {
        fn try_take(&self) -> bool {
            let mut n = self.queued.load(Ordering::Acquire);
            while n > 0 {
                match self.queued.compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return true,
                    Err(m) => n = m,
                }
            }
            false
        }
    }

    /// The vCPU loop: run what there is, park when there is nothing; the vCPU that runs the
    /// last item shuts the lot down so the others can leave.
    fn vcpu(lot: &ParkingLot, work: &Work, id: usize) {
        loop {
            if work.try_take() {
                if work.done.fetch_add(1, Ordering::AcqRel) + 1 == work.total {
                    lot.shutdown();
                    return;
                }
                continue;
            }
            if lot.park(id, || work.queued.load(Ordering::Acquire) > 0) == Wake::Shutdown {
                return;
            }
        }
    }

    fn model(vcpus: usize, producers: usize, preemption_bound: usize) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(preemption_bound);
        builder.check(move || {
            let lot = Arc::new(ParkingLot::new(vcpus));
            let work = Arc::new(Work {
                queued: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
                total: producers,
            });
            let mut handles = Vec::new();
            for id in 0..vcpus {
                let (lot, work) = (lot.clone(), work.clone());
                handles.push(thread::spawn(move || vcpu(&lot, &work, id)));
            }
            for _ in 0..producers {
                let (lot, work) = (lot.clone(), work.clone());
                handles.push(thread::spawn(move || {
                    work.queued.fetch_add(1, Ordering::Release);
                    lot.notify_one();
                }));
            }
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(work.done.load(Ordering::Acquire), producers);
            assert_eq!(work.queued.load(Ordering::Acquire), 0);
        });
    }

    #[test]
    fn loom_one_vcpu_one_producer() {
        model(1, 1, 3);
    }

    #[test]
    fn loom_two_vcpus_one_producer() {
        model(2, 1, 3);
    }

    #[test]
    fn loom_two_vcpus_two_producers() {
        model(2, 2, 2);
    }

    /// Work only vCPU 0 may take (its next-to-run slot), announced with `notify_vcpu`, while
    /// vCPU 1 also parks: vCPU 0 must run it. As in the scheduler, the slot is a mutex-guarded
    /// value with an atomic "full" flag beside it, both written under the slot's mutex, and the
    /// flag is what `has_work` reads.
    #[test]
    fn loom_notify_a_given_vcpu() {
        struct Slot {
            value: loom::sync::Mutex<Option<u32>>,
            full: loom::sync::atomic::AtomicBool,
        }
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let lot = Arc::new(ParkingLot::new(2));
            let slot = Arc::new(Slot {
                value: loom::sync::Mutex::new(None),
                full: loom::sync::atomic::AtomicBool::new(false),
            });
            let owner = {
                let (lot, slot) = (lot.clone(), slot.clone());
                thread::spawn(move || loop {
                    let taken = {
                        let mut v = slot.value.lock().unwrap();
                        let taken = v.take();
                        slot.full.store(false, Ordering::Release);
                        taken
                    };
                    if let Some(item) = taken {
                        lot.shutdown();
                        return Some(item);
                    }
                    if lot.park(0, || slot.full.load(Ordering::Acquire)) == Wake::Shutdown {
                        return None;
                    }
                })
            };
            let other = {
                let lot = lot.clone();
                thread::spawn(move || while lot.park(1, || false) != Wake::Shutdown {})
            };
            {
                let mut v = slot.value.lock().unwrap();
                *v = Some(42);
                slot.full.store(true, Ordering::Release);
            }
            lot.notify_vcpu(0);
            assert_eq!(owner.join().unwrap(), Some(42));
            other.join().unwrap();
        });
    }
}
