//! The scheduler's timer: ends waits whose deadline has passed (`nanosleep`, futex waits with
//! a timeout), so that a sleeping guest thread holds no vCPU.
//!
//! Invariants:
//! - One host thread per scheduler, started on the first deadline armed and stopped by
//!   [`Timer::stop`]; it sleeps until the earliest deadline or until a new, earlier one is
//!   armed, and holds no lock while it ends waits.
//! - A waiter is expired at or after its deadline, never before. Expiring a waiter that already
//!   ended (woken, cancelled) does nothing, so entries are never removed early: they are
//!   dropped when their deadline comes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;
use vm_exec_core::futex::Waiter;
use vm_exec_core::sync::IgnorePoison;

struct Entry {
    at: Instant,
    seq: u64,
    waiter: Arc<Waiter>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    stopping: bool,
    thread: Option<JoinHandle<()>>,
}

/// Deadlines of parked guest threads.
#[derive(Default)]
pub(crate) struct Timer {
    state: Mutex<State>,
    changed: Condvar,
    seq: AtomicU64,
    /// Waits this timer ended.
    pub(crate) fired: AtomicU64,
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().ignore_poison()
    }

    /// Expires `waiter` at `at` (or soon after).
    pub(crate) fn arm(self: &Arc<Self>, at: Instant, waiter: Arc<Waiter>) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut st = self.lock();
        if st.stopping {
            drop(st);
            waiter.expire();
            return;
        }
        let earliest = st.heap.peek().is_none_or(|Reverse(e)| at < e.at);
        st.heap.push(Reverse(Entry { at, seq, waiter }));
        if st.thread.is_none() {
            let me = self.clone();
            match std::thread::Builder::new().name("vmx-timer".into()).spawn(move || me.main()) {
                Ok(h) => st.thread = Some(h),
                Err(e) => tracing::error!("cannot start the timer thread: {e}"),
            }
        } else if earliest {
            self.changed.notify_one();
        }
    }

    fn main(&self) {
        let mut st = self.lock();
        loop {
            if st.stopping {
                return;
            }
            let now = Instant::now();
            let mut due = Vec::new();
            while st.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
                if let Some(Reverse(e)) = st.heap.pop() {
                    due.push(e.waiter);
                }
            }
            if !due.is_empty() {
                drop(st);
                for w in due {
                    if w.expire() {
                        self.fired.fetch_add(1, Ordering::Relaxed);
                    }
                }
                st = self.lock();
                continue;
            }
            st = match st.heap.peek().map(|Reverse(e)| e.at) {
                Some(at) => {
                    let left = at.saturating_duration_since(now);
                    self.changed.wait_timeout(st, left).ignore_poison().0
                }
                None => self.changed.wait(st).ignore_poison(),
            };
        }
    }

    /// Stops the thread; pending deadlines are dropped (their waits are cancelled by whoever
    /// shuts the scheduler down).
    pub(crate) fn stop(&self) {
        let handle = {
            let mut st = self.lock();
            st.stopping = true;
            st.heap.clear();
            st.thread.take()
        };
        self.changed.notify_all();
        if let Some(h) = handle {
            if h.join().is_err() {
                tracing::error!("the timer thread panicked");
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn waiters_expire_in_deadline_order_and_not_before() {
        let t = Arc::new(Timer::default());
        let now = Instant::now();
        let late = Waiter::sleep(now + Duration::from_millis(40));
        let early = Waiter::sleep(now + Duration::from_millis(10));
        t.arm(now + Duration::from_millis(40), late.clone());
        t.arm(now + Duration::from_millis(10), early.clone());
        early.wait_blocking_for_test();
        assert!(Instant::now() >= now + Duration::from_millis(10));
        assert!(late.is_waiting(), "the later deadline has not passed yet");
        late.wait_blocking_for_test();
        assert!(Instant::now() >= now + Duration::from_millis(40));
        assert_eq!(t.fired.load(Ordering::Relaxed), 2);
        t.stop();
        let after = Waiter::sleep(Instant::now() + Duration::from_secs(100));
        t.arm(Instant::now() + Duration::from_secs(100), after.clone());
        assert!(!after.is_waiting(), "a stopped timer expires at once instead of leaking");
    }

    /// Waits for a waiter's end without expiring it (unlike `Waiter::wait_blocking`).
    trait WaitForTest {
        fn wait_blocking_for_test(&self);
    }
    impl WaitForTest for Waiter {
        fn wait_blocking_for_test(&self) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.is_waiting() {
                assert!(Instant::now() < deadline, "timer never fired");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
