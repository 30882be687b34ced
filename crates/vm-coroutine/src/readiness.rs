//! The scheduler's readiness poller: ends waits for host descriptors to become ready (a guest
//! `read` of an empty pipe or a terminal, `poll`, `epoll_wait`, `select`, a blocking socket
//! call), so that such a call holds no vCPU.
//!
//! Invariants:
//! - One host thread per scheduler, started on the first wait and stopped by
//!   [`Readiness::stop`]. It sleeps in `poll(2)` on every watched descriptor plus the read end
//!   of a wake-up pipe, which [`Readiness::watch`] writes to so that a new descriptor is
//!   watched at once.
//! - Handing a wait to the thread costs a lock, a write to the wake-up pipe and a rebuild of
//!   the thread's `poll(2)` set, and the thread then wakes for every write to the descriptor,
//!   even when a guest's own write already woke the waiter (`FutexTable::poke_ready`). So a
//!   vCPU thread does not hand a new wait over at once: it *defers* it ([`Readiness::defer`]),
//!   and the deferred waits go to the thread ([`Readiness::flush`]) when a vCPU runs out of
//!   work (before it parks) or, at the end of a slice, once the oldest of them has waited
//!   [`DEFER`] ([`Readiness::flush_old`]). A guest-to-guest wake (a sibling thread's write to
//!   the pipe) thus never involves the poller thread while the vCPUs are busy; a wait for a
//!   host source (a terminal, a socket to the outside) is watched at most [`DEFER`] plus one
//!   slice late. Only vCPU threads defer (each of them flushes before parking, so a deferred
//!   wait is never left behind by sleeping vCPUs); other callers hand waits over at once.
//! - A waiter is woken once any of its descriptors ([`Waiter::watched`]) reports one of its
//!   events, hung up, in error or closed (the restarted call then sees the data, end of file
//!   or the error). Waiters that ended
//!   otherwise (their process was killed or exited) are dropped at the next sweep, at most
//!   [`SWEEP`] later.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vm_exec_core::futex::Waiter;
use vm_exec_core::sync::IgnorePoison;

/// Longest time between sweeps of ended waiters.
const SWEEP: Duration = Duration::from_millis(100);

/// How long a deferred wait may stay away from the poller thread while vCPUs are busy.
pub(crate) const DEFER: Duration = Duration::from_micros(100);

#[derive(Default)]
struct State {
    watched: Vec<(RawFd, i16, Arc<Waiter>)>,
    stopping: bool,
    thread: Option<JoinHandle<()>>,
    /// The wake-up pipe: (read end, write end), made with the thread.
    pipe: Option<(RawFd, RawFd)>,
}

/// Waits not yet handed to the poller thread, each with the time it was deferred.
#[derive(Default)]
struct Deferred {
    waiters: Vec<(Instant, Arc<Waiter>)>,
    /// Set by [`Readiness::stop`]: later waits are cancelled, not deferred.
    stopped: bool,
}

/// Host descriptors that parked guest threads wait on.
#[derive(Default)]
pub(crate) struct Readiness {
    state: Mutex<State>,
    deferred: Mutex<Deferred>,
    /// Whether `deferred` may hold waits (read without its lock at every slice end).
    any_deferred: AtomicBool,
}

impl Readiness {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().ignore_poison()
    }

    fn lock_deferred(&self) -> MutexGuard<'_, Deferred> {
        self.deferred.lock().ignore_poison()
    }

    /// Wakes `waiter` once one of its watched descriptors is ready.
    pub(crate) fn watch(self: &Arc<Self>, waiter: Arc<Waiter>) {
        self.watch_all(vec![waiter]);
    }

    /// Keeps `waiter` back from the poller thread for now (see the module docs): a vCPU thread
    /// must call [`Readiness::flush`] before it parks and [`Readiness::flush_old`] after its
    /// slices.
    pub(crate) fn defer(self: &Arc<Self>, waiter: Arc<Waiter>) {
        let mut d = self.lock_deferred();
        if d.stopped {
            drop(d);
            waiter.cancel();
            return;
        }
        d.waiters.push((Instant::now(), waiter));
        self.any_deferred.store(true, Ordering::Release);
    }

    /// Hands every deferred wait still waiting to the poller thread.
    pub(crate) fn flush(self: &Arc<Self>) {
        if !self.any_deferred.load(Ordering::Acquire) {
            return;
        }
        let taken = {
            let mut d = self.lock_deferred();
            self.any_deferred.store(false, Ordering::Release);
            std::mem::take(&mut d.waiters)
        };
        let live: Vec<Arc<Waiter>> =
            taken.into_iter().filter(|(_, w)| w.is_waiting()).map(|(_, w)| w).collect();
        if !live.is_empty() {
            self.watch_all(live);
        }
    }

    /// Drops deferred waits that ended, and hands the others to the poller thread once the
    /// oldest of them has waited [`DEFER`].
    pub(crate) fn flush_old(self: &Arc<Self>) {
        if !self.any_deferred.load(Ordering::Acquire) {
            return;
        }
        let old = {
            let mut d = self.lock_deferred();
            d.waiters.retain(|(_, w)| w.is_waiting());
            if d.waiters.is_empty() {
                self.any_deferred.store(false, Ordering::Release);
            }
            d.waiters.first().is_some_and(|(at, _)| at.elapsed() >= DEFER)
        };
        if old {
            self.flush();
        }
    }

    /// Watches every waiter of `waiters` (one lock, one wake-up of the thread).
    fn watch_all(self: &Arc<Self>, waiters: Vec<Arc<Waiter>>) {
        let mut st = self.lock();
        if st.stopping {
            drop(st);
            for w in waiters {
                w.cancel();
            }
            return;
        }
        for waiter in waiters {
            for &(fd, events) in waiter.watched() {
                st.watched.push((fd, events, waiter.clone()));
            }
        }
        if st.thread.is_none() {
            let mut fds = [0; 2];
            // SAFETY: `fds` is a live array of two descriptors for pipe2 to fill.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
                tracing::error!("cannot create the readiness poller's pipe");
                return;
            }
            st.pipe = Some((fds[0], fds[1]));
            let me = self.clone();
            match std::thread::Builder::new().name("vmx-poller".into()).spawn(move || me.main()) {
                Ok(h) => st.thread = Some(h),
                Err(e) => tracing::error!("cannot start the readiness poller: {e}"),
            }
        } else if let Some((_, w)) = st.pipe {
            poke(w);
        }
    }

    fn main(&self) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut waiters: Vec<Arc<Waiter>> = Vec::new();
        loop {
            let wake_fd = {
                let mut st = self.lock();
                if st.stopping {
                    return;
                }
                st.watched.retain(|(_, _, w)| w.is_waiting());
                fds.clear();
                waiters.clear();
                let Some((r, _)) = st.pipe else { return };
                fds.push(libc::pollfd { fd: r, events: libc::POLLIN, revents: 0 });
                for (fd, events, w) in &st.watched {
                    fds.push(libc::pollfd { fd: *fd, events: *events, revents: 0 });
                    waiters.push(w.clone());
                }
                r
            };
            // SAFETY: `fds` is a live array of `fds.len()` pollfd structures.
            let n = unsafe {
                libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, SWEEP.as_millis() as i32)
            };
            if n <= 0 {
                continue;
            }
            if fds[0].revents != 0 {
                drain(wake_fd);
            }
            // Waking a waiter twice (two of its descriptors ready) does nothing the second
            // time; ended waiters leave the list at the next round.
            for (p, w) in fds[1..].iter().zip(&waiters) {
                if p.revents != 0 {
                    w.wake();
                }
            }
            waiters.clear();
        }
    }

    /// Stops the thread and cancels every wait still watched or deferred.
    pub(crate) fn stop(&self) {
        let deferred = {
            let mut d = self.lock_deferred();
            d.stopped = true;
            self.any_deferred.store(false, Ordering::Release);
            std::mem::take(&mut d.waiters)
        };
        for (_, w) in deferred {
            w.cancel();
        }
        let (handle, pipe, watched) = {
            let mut st = self.lock();
            st.stopping = true;
            if let Some((_, w)) = st.pipe {
                poke(w);
            }
            (st.thread.take(), st.pipe.take(), std::mem::take(&mut st.watched))
        };
        if let Some(h) = handle {
            if h.join().is_err() {
                tracing::error!("the readiness poller panicked");
            }
        }
        if let Some((r, w)) = pipe {
            // SAFETY: both ends were created by `watch` for this poller alone and are closed
            // once, after its thread has ended.
            unsafe {
                libc::close(r);
                libc::close(w);
            }
        }
        for (_, _, w) in watched {
            w.cancel();
        }
    }
}

/// Writes one byte to the wake-up pipe (a full pipe already wakes the poller).
fn poke(fd: RawFd) {
    let b = 1u8;
    // SAFETY: writes one byte from a live local to a descriptor this poller owns.
    unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
}

/// Empties the wake-up pipe (non-blocking).
fn drain(fd: RawFd) {
    let mut buf = [0u8; 64];
    // SAFETY: reads into a live local buffer of its length from a non-blocking descriptor
    // this poller owns.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_wakes_when_its_pipe_gets_data_and_not_before() {
        let r = Arc::new(Readiness::default());
        let mut fds = [0; 2];
        // SAFETY: `fds` is a live array of two descriptors for pipe to fill.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let w = Waiter::readable(fds[0], 0);
        r.watch(w.clone());
        std::thread::sleep(Duration::from_millis(30));
        assert!(w.is_waiting(), "nothing to read yet");
        poke(fds[1]);
        let t0 = Instant::now();
        while w.is_waiting() {
            assert!(t0.elapsed() < Duration::from_secs(10), "never woken");
            std::thread::sleep(Duration::from_millis(1));
        }
        let other = Waiter::readable(fds[0], 0);
        other.cancel();
        r.watch(other);
        let pending = Waiter::readable(fds[1], 0); // a write end never becomes readable
        r.watch(pending.clone());
        r.stop();
        assert!(!pending.is_waiting(), "stop cancels what is still watched");
        // SAFETY: closes the two descriptors this test created.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }

    #[test]
    fn a_deferred_wait_is_watched_only_once_flushed_and_stop_cancels_it() {
        let r = Arc::new(Readiness::default());
        let mut fds = [0; 2];
        // SAFETY: `fds` is a live array of two descriptors for pipe to fill.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // Ready from the start: the poller would wake it at once, were it watched.
        poke(fds[1]);
        let w = Waiter::readable(fds[0], 0);
        r.defer(w.clone());
        r.flush_old(); // younger than DEFER
        std::thread::sleep(Duration::from_millis(30));
        assert!(w.is_waiting(), "a deferred wait is not watched");
        r.flush_old(); // older than DEFER now: handed over
        let t0 = Instant::now();
        while w.is_waiting() {
            assert!(t0.elapsed() < Duration::from_secs(10), "never woken once flushed");
            std::thread::sleep(Duration::from_millis(1));
        }
        // An ended wait leaves the deferred list without reaching the poller.
        let ended = Waiter::readable(fds[0], 0);
        r.defer(ended.clone());
        ended.cancel();
        r.flush();
        assert!(r.lock_deferred().waiters.is_empty());
        let pending = Waiter::readable(fds[1], 0); // a write end never becomes readable
        r.defer(pending.clone());
        r.stop();
        assert!(!pending.is_waiting(), "stop cancels what is deferred");
        let late = Waiter::readable(fds[1], 0);
        r.defer(late.clone());
        assert!(!late.is_waiting(), "a wait deferred after stop is cancelled");
        // SAFETY: closes the two descriptors this test created.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
