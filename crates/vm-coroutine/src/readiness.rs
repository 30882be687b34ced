//! The scheduler's readiness poller: ends waits for host descriptors to become ready (a guest
//! `read` of an empty pipe or a terminal, `poll`, `epoll_wait`, `select`, a blocking socket
//! call), so that such a call holds no vCPU.
//!
//! Invariants:
//! - One host thread per scheduler, started on the first wait and stopped by
//!   [`Readiness::stop`]. It sleeps in `poll(2)` on every watched descriptor plus the read end
//!   of a wake-up pipe, which [`Readiness::watch`] writes to so that a new descriptor is
//!   watched at once.
//! - A waiter is woken once any of its descriptors ([`Waiter::watched`]) reports one of its
//!   events, hung up, in error or closed (the restarted call then sees the data, end of file
//!   or the error). Waiters that ended
//!   otherwise (their process was killed or exited) are dropped at the next sweep, at most
//!   [`SWEEP`] later.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use vm_exec_core::futex::Waiter;
use vm_exec_core::sync::IgnorePoison;

/// Longest time between sweeps of ended waiters.
const SWEEP: Duration = Duration::from_millis(100);

#[derive(Default)]
struct State {
    watched: Vec<(RawFd, i16, Arc<Waiter>)>,
    stopping: bool,
    thread: Option<JoinHandle<()>>,
    /// The wake-up pipe: (read end, write end), made with the thread.
    pipe: Option<(RawFd, RawFd)>,
}

/// Host descriptors that parked guest threads wait on.
#[derive(Default)]
pub(crate) struct Readiness {
    state: Mutex<State>,
}

impl Readiness {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().ignore_poison()
    }

    /// Wakes `waiter` once one of its watched descriptors is ready.
    pub(crate) fn watch(self: &Arc<Self>, waiter: Arc<Waiter>) {
        let mut st = self.lock();
        if st.stopping {
            drop(st);
            waiter.cancel();
            return;
        }
        for &(fd, events) in waiter.watched() {
            st.watched.push((fd, events, waiter.clone()));
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

    /// Stops the thread and cancels every wait still watched.
    pub(crate) fn stop(&self) {
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
    use std::time::Instant;

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
}
