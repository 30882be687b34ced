//! Event loops: `epoll_create1`, `epoll_ctl`, `epoll_pwait`, `epoll_pwait2`, `eventfd2`,
//! `timerfd_create`/`settime`/`gettime`, `ppoll` and `pselect6`.
//!
//! Every eventfd and timerfd is the host kernel's own object, owned by the guest's
//! descriptor table; sockets and the standard streams (when they are the host's) are host
//! descriptors too. Pipes are kept in memory ([`crate::pipe`]) unless something converted
//! them to host pipes. An epoll instance ([`crate::pipe::MemEpoll`]) is a host epoll
//! instance for host descriptors plus the in-memory pipe ends it watches, whose level, edge
//! and one-shot rules it applies itself; `ppoll`/`pselect6` ask in-memory pipes directly.
//! A wait on in-memory pipes registers its waiter with each pipe, whose next event wakes it
//! (no host call), besides watching the host descriptors involved. Descriptors that live in memory (captured output, in-memory input,
//! `/dev/null`) are always ready for `ppoll`/`pselect6` and refused by `epoll_ctl` (`EPERM`,
//! as for a file that cannot be polled).
//!
//! Waiting: every call first checks readiness without blocking (host `poll`/`epoll_wait`
//! with a zero timeout). When nothing is ready and the call may wait, a process a scheduler
//! hosts parks the thread on a readiness wait ([`crate::futex::WaitKind::Ready`]) for the
//! host descriptors involved and the call's deadline; the wait's end makes the call again,
//! with the original deadline ([`Call::resume`]), so the thread holds no vCPU while it waits.
//! A process without a scheduler blocks its host thread in `ppoll` instead and checks again.
//!
//! Invariants:
//! - A call never waits past its deadline, and a restarted call never extends it.
//! - The guest's `struct epoll_event` is 16 bytes (`u32 events`, 4 bytes of padding, `u64
//!   data`: riscv64 does not pack it, x86-64 does); `data` is the guest's, stored in the host
//!   instance unchanged.
//! - The signal mask passed to `epoll_pwait`, `epoll_pwait2`, `ppoll` and `pselect6` is the
//!   thread's mask for the duration of the call, as on Linux: a call that returns at once
//!   (something ready, a timeout, an error) puts the original back before returning, so a
//!   signal it unblocked stays pending; a call that parks keeps it while parked, and a
//!   signal it unblocked ends the wait with `EINTR` and is delivered under it, its handler's
//!   frame saving the original mask (restored by `rt_sigreturn`); a wait that ends otherwise
//!   restores the original before the call is made again ([`crate::signals::unpark`]).

use super::fs::{pipe_end, target, Target};
use super::{err, read_array, read_timespec, write_pair, Call, Errno, SysResult};
use crate::exec::StopReason;
use crate::pipe::{CtlOp, MemEpoll, PipeEnd};
use crate::process::{FileDesc, FileKind, MAX_FDS};
use crate::signals;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POLLIN: i16 = 0x1;
const POLLPRI: i16 = 0x2;
const POLLOUT: i16 = 0x4;
const POLLERR: i16 = 0x8;
const POLLHUP: i16 = 0x10;
const POLLNVAL: i16 = 0x20;
const POLLRDNORM: i16 = 0x40;
const POLLRDBAND: i16 = 0x80;
const POLLWRNORM: i16 = 0x100;
const POLLWRBAND: i16 = 0x200;

/// `O_CLOEXEC` (also `EPOLL_CLOEXEC`, `EFD_CLOEXEC`, `TFD_CLOEXEC`).
const CLOEXEC: u64 = 0o2000000;
/// `O_NONBLOCK` (also `EFD_NONBLOCK`, `TFD_NONBLOCK`).
const NONBLOCK: u64 = 0o4000;

/// How long a call may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Deadline {
    /// Not at all (a zero timeout, or a restarted call whose deadline passed).
    Now,
    /// Until this instant.
    At(Instant),
    /// Until something is ready.
    Never,
}

impl Deadline {
    /// The deadline of a call with `timeout` (`None`: forever), or of the wait it restarts.
    pub(super) fn of(c: &Call<'_>, timeout: Option<Duration>) -> Deadline {
        if let Some(at) = c.resume {
            return if at <= Instant::now() { Deadline::Now } else { Deadline::At(at) };
        }
        match timeout {
            None => Deadline::Never,
            Some(d) if d.is_zero() => Deadline::Now,
            Some(d) => Instant::now().checked_add(d).map_or(Deadline::Never, Deadline::At),
        }
    }

    /// A restarted call whose wait ended at its deadline, or one that must not wait.
    pub(super) fn expired(self) -> bool {
        match self {
            Deadline::Now => true,
            Deadline::At(at) => at <= Instant::now(),
            Deadline::Never => false,
        }
    }

    /// Time left, `None` for forever.
    pub(super) fn left(self) -> Option<Duration> {
        match self {
            Deadline::Now => Some(Duration::ZERO),
            Deadline::At(at) => Some(at.saturating_duration_since(Instant::now())),
            Deadline::Never => None,
        }
    }
}

/// What a call that found nothing ready does next.
pub(super) enum Waited {
    /// The thread is parked (the outcome is set): return any value, `a0` is rewritten.
    Parked,
    /// The host thread waited (no scheduler): check again.
    Again,
}

/// Waits for one of `watch` (host descriptors) or of the in-memory pipe ends `mem` (with
/// the `poll` events asked of each) to be ready, or for `deadline` (which has not passed). `Waited::Again` at once when a pipe end
/// turned ready (or was converted) meanwhile. Without a scheduler, the process has one
/// thread, which alone could change its pipes: the host thread waits for `watch` only.
fn wait_ready_mem(
    c: &mut Call<'_>,
    watch: Vec<(RawFd, i16)>,
    mem: &[(Arc<PipeEnd>, u32)],
    deadline: Deadline,
) -> Result<Waited, Errno> {
    if mem.is_empty() || !c.process.is_scheduled() {
        return wait_ready(c, watch, deadline);
    }
    let at = match deadline {
        Deadline::At(at) => Some(at),
        _ => None,
    };
    let w = c.process.futexes.ready(watch, at, c.args[0]);
    for (e, events) in mem {
        if e.watch(&w, |mask, _| mask & events != 0) {
            w.cancel();
            return Ok(Waited::Again);
        }
    }
    c.stop = Some(StopReason::Blocked(w));
    Ok(Waited::Parked)
}

/// Waits for one of `watch` to be ready or for `deadline` (which has not passed): parks the
/// thread when a scheduler hosts the process, else blocks the host thread in `ppoll`.
pub(super) fn wait_ready(
    c: &mut Call<'_>,
    watch: Vec<(RawFd, i16)>,
    deadline: Deadline,
) -> Result<Waited, Errno> {
    if c.process.is_scheduled() {
        let at = match deadline {
            Deadline::At(at) => Some(at),
            _ => None,
        };
        c.stop = Some(StopReason::Blocked(c.process.futexes.ready(watch, at, c.args[0])));
        return Ok(Waited::Parked);
    }
    if watch.is_empty() && deadline == Deadline::Never {
        if super::first_time("wait-forever") {
            tracing::warn!("a wait with nothing to wait for and no other thread; returning -EINTR");
        }
        return err(libc::EINTR);
    }
    let mut pfds: Vec<libc::pollfd> =
        watch.iter().map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 }).collect();
    let ts = deadline.left().map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as _,
        tv_nsec: d.subsec_nanos() as _,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `pfds` is a live vector of `pfds.len()` pollfd structures and `ts_ptr` is null
    // or points to a live timespec; no signal mask is passed.
    let r = unsafe { libc::ppoll(pfds.as_mut_ptr(), pfds.len() as _, ts_ptr, std::ptr::null()) };
    if r < 0 && Errno::last().0 != libc::EINTR {
        return Err(Errno::last());
    }
    Ok(Waited::Again)
}

/// Polls one host descriptor without waiting; returns its `revents`.
pub(super) fn poll_now(h: RawFd, events: i16) -> i16 {
    let mut p = libc::pollfd { fd: h, events, revents: 0 };
    // SAFETY: one valid `pollfd`, a zero timeout.
    if unsafe { libc::poll(&mut p, 1, 0) } <= 0 {
        return 0;
    }
    p.revents
}

/// Installs a new host descriptor in the guest's table (lowest free number), closing it if
/// the table is full.
pub(super) fn install(c: &Call<'_>, host: RawFd, cloexec: bool) -> SysResult {
    let desc = FileDesc { kind: FileKind::Host { fd: host, owned: true }, cloexec };
    c.process.files().insert_from(0, desc).map(|n| n as u64).ok_or(Errno(libc::EMFILE))
}

/// The host descriptor behind guest `fd`: `EBADF` if not open, `other` if it is not a host
/// descriptor.
fn host_fd(c: &Call<'_>, fd: i64, other: i32) -> Result<RawFd, Errno> {
    match target(c.process, fd)? {
        Target::Host(h) => Ok(h),
        _ => err(other),
    }
}

/// A relative timeout in a guest `struct timespec` at `addr`, `None` for a NULL pointer.
fn timeout_arg(c: &Call<'_>, addr: u64) -> Result<Option<Duration>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    let (s, ns) = read_timespec(&c.process.mem, addr)?;
    Ok(Some(Duration::new(s as u64, ns as u32)))
}

/// Writes the time left before `deadline` back to the guest's timeout, as Linux does for
/// `ppoll` and `pselect6` (nothing for a NULL or zero timeout).
fn write_back_left(c: &Call<'_>, addr: u64, deadline: Deadline) -> Result<(), Errno> {
    if addr == 0 {
        return Ok(());
    }
    if let Deadline::At(at) = deadline {
        let left = at.saturating_duration_since(Instant::now());
        write_pair(&c.process.mem, addr, left.as_secs() as i64, left.subsec_nanos() as i64)?;
    } else if deadline == Deadline::Now && c.resume.is_some() {
        write_pair(&c.process.mem, addr, 0, 0)?;
    }
    Ok(())
}

/// Reads a call's temporary signal mask (`None` for a NULL pointer; `EINVAL` for a size
/// other than 8, `EFAULT` for an unreadable set).
fn read_sigset(c: &Call<'_>, addr: u64, size: u64) -> Result<Option<u64>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    if size != 8 {
        return err(libc::EINVAL);
    }
    Ok(Some(super::read_u64(&c.process.mem, addr)?))
}

/// Runs `f` with `mask` (if any) as the thread's signal mask, as described in the module
/// docs: restored when the call returns at once, kept (the original saved) when it parks.
fn with_sigmask(
    c: &mut Call<'_>,
    mask: Option<u64>,
    f: impl FnOnce(&mut Call<'_>) -> SysResult,
) -> SysResult {
    let Some(m) = mask else { return f(c) };
    let orig = c.thread.signal_mask;
    signals::set_mask(c.process, c.thread, m);
    let r = f(c);
    if matches!(c.stop, Some(StopReason::Blocked(_))) {
        signals::save_mask(c.process, c.thread, orig);
    } else {
        signals::set_mask(c.process, c.thread, orig);
    }
    r
}

// ---------------------------------------------------------------------------------------
// epoll

const EPOLL_CTL_ADD: i32 = 1;
const EPOLL_CTL_DEL: i32 = 2;
const EPOLL_CTL_MOD: i32 = 3;
/// Size of the guest's `struct epoll_event`.
const EVENT_SIZE: u64 = 16;
/// Most events one host `epoll_wait` returns to the guest at once.
const MAX_EVENTS_AT_ONCE: usize = 1024;

/// `epoll_create1(flags)`: a [`MemEpoll`] around a new host instance.
pub(super) fn epoll_create1(c: &mut Call<'_>) -> SysResult {
    let flags = c.args[0] as u32 as u64;
    if flags & !CLOEXEC != 0 {
        return err(libc::EINVAL);
    }
    // SAFETY: epoll_create1 takes no pointers.
    let h = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if h < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `h` is a fresh descriptor nothing else owns.
    let ep = MemEpoll::new(unsafe { OwnedFd::from_raw_fd(h) });
    let desc = FileDesc { kind: FileKind::Epoll(Arc::new(ep)), cloexec: flags & CLOEXEC != 0 };
    c.process.files().insert_from(0, desc).map(|n| n as u64).ok_or(Errno(libc::EMFILE))
}

/// The epoll instance behind guest `fd`, if it is a [`MemEpoll`].
fn mem_epoll(c: &Call<'_>, fd: i64) -> Option<Arc<MemEpoll>> {
    match c.process.files().get(fd).map(|d| &d.kind) {
        Some(FileKind::Epoll(e)) => Some(e.clone()),
        _ => None,
    }
}

/// `epoll_ctl(epfd, op, fd, event)`.
pub(super) fn epoll_ctl(c: &mut Call<'_>) -> SysResult {
    let (epfd, op, fd, ev) = (c.fd(0), c.int(1), c.fd(2), c.args[3]);
    let mut host_ev = libc::epoll_event { events: 0, u64: 0 };
    if op != EPOLL_CTL_DEL {
        let b = read_array::<16>(&c.process.mem, ev)?;
        host_ev.events = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        host_ev.u64 = u64::from_le_bytes(super::le8(&b[8..]));
    }
    let ep = mem_epoll(c, epfd);
    if ep.is_none() {
        host_fd(c, epfd, libc::EINVAL)?;
    }
    if let (Some(ep), Some(end)) = (&ep, pipe_end(c.process, fd)) {
        let op = match op {
            EPOLL_CTL_ADD => Some(CtlOp::Add),
            EPOLL_CTL_DEL => Some(CtlOp::Del),
            EPOLL_CTL_MOD => Some(CtlOp::Mod),
            _ => return err(libc::EINVAL),
        };
        if let Some(op) = op {
            if let Some(r) = ep.ctl(op, fd as i32, &end, host_ev.events, host_ev.u64) {
                return r.map(|()| 0).map_err(Errno);
            }
        }
    }
    let eh = match &ep {
        Some(ep) => ep.host(),
        None => host_fd(c, epfd, libc::EINVAL)?,
    };
    let th = host_fd(c, fd, libc::EPERM)?;
    if !matches!(op, EPOLL_CTL_ADD | EPOLL_CTL_DEL | EPOLL_CTL_MOD) {
        return err(libc::EINVAL);
    }
    if epfd == fd {
        return err(libc::EINVAL);
    }
    // SAFETY: `host_ev` is a live local epoll_event; the descriptors are the table's.
    if unsafe { libc::epoll_ctl(eh, op, th, &mut host_ev) } < 0 {
        return Err(Errno::last());
    }
    if let Some(ep) = &ep {
        if op != EPOLL_CTL_MOD {
            ep.count_host(op == EPOLL_CTL_ADD);
        }
    }
    Ok(0)
}

/// The common part of `epoll_pwait` and `epoll_pwait2`.
fn epoll_wait_common(c: &mut Call<'_>, timeout: Option<Duration>) -> SysResult {
    let (epfd, events, max) = (c.fd(0), c.args[1], c.int(2));
    if max <= 0 || max as u64 > (i32::MAX as u64) / EVENT_SIZE {
        return err(libc::EINVAL);
    }
    if events.checked_add(max as u64 * EVENT_SIZE).is_none_or(|e| e > c.process.mem.size()) {
        return err(libc::EFAULT);
    }
    let ep = mem_epoll(c, epfd);
    let eh = match &ep {
        Some(ep) => ep.host(),
        None => host_fd(c, epfd, libc::EINVAL)?,
    };
    let deadline = Deadline::of(c, timeout);
    let n = (max as usize).min(MAX_EVENTS_AT_ONCE);
    if let Some(ep) = ep {
        return mem_epoll_wait(c, &ep, events, n, deadline);
    }
    let mut buf = vec![libc::epoll_event { events: 0, u64: 0 }; n];
    loop {
        // SAFETY: `buf` is a live vector of `n` epoll_event structures; zero timeout.
        let r = unsafe { libc::epoll_wait(eh, buf.as_mut_ptr(), n as i32, 0) };
        if r < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if r > 0 {
            let mem = &c.process.mem;
            for (i, e) in buf[..r as usize].iter().enumerate() {
                let at = events + i as u64 * EVENT_SIZE;
                let (ev, data) = (e.events, e.u64);
                mem.write_u32(at, ev).map_err(Errno::from)?;
                mem.write_bytes(at + 8, &data.to_le_bytes())?;
            }
            return Ok(r as u64);
        }
        if deadline.expired() {
            return Ok(0);
        }
        match wait_ready(c, vec![(eh, POLLIN)], deadline)? {
            Waited::Parked => return Ok(0),
            Waited::Again => {}
        }
    }
}

/// `epoll_wait` on a [`MemEpoll`]: its ready in-memory members first, then its host
/// instance (only when host descriptors were added); parks on both when nothing is ready.
fn mem_epoll_wait(
    c: &mut Call<'_>,
    ep: &MemEpoll,
    events: u64,
    max: usize,
    deadline: Deadline,
) -> SysResult {
    loop {
        let scan = ep.scan(max);
        let mut got = scan.events;
        if got.len() < max && scan.host_members {
            let mut buf = vec![libc::epoll_event { events: 0, u64: 0 }; max - got.len()];
            // SAFETY: `buf` is a live vector of `buf.len()` epoll_event structures; zero
            // timeout.
            let r = unsafe { libc::epoll_wait(ep.host(), buf.as_mut_ptr(), buf.len() as i32, 0) };
            if r < 0 && Errno::last().0 != libc::EINTR {
                if got.is_empty() {
                    return Err(Errno::last());
                }
            } else if r > 0 {
                got.extend(buf[..r as usize].iter().map(|e| (e.events, e.u64)));
            }
        }
        if !got.is_empty() {
            let mem = &c.process.mem;
            for (i, &(ev, data)) in got.iter().enumerate() {
                let at = events + i as u64 * EVENT_SIZE;
                mem.write_u32(at, ev).map_err(Errno::from)?;
                mem.write_bytes(at + 8, &data.to_le_bytes())?;
            }
            return Ok(got.len() as u64);
        }
        if deadline.expired() {
            return Ok(0);
        }
        let watch = if scan.host_members { vec![(ep.host(), POLLIN)] } else { Vec::new() };
        if !c.process.is_scheduled() || !scan.mem_members {
            match wait_ready(c, watch, deadline)? {
                Waited::Parked => return Ok(0),
                Waited::Again => continue,
            }
        }
        let at = match deadline {
            Deadline::At(at) => Some(at),
            _ => None,
        };
        let w = c.process.futexes.ready(watch, at, c.args[0]);
        if ep.watch(&w, scan.host_members) {
            w.cancel();
            continue;
        }
        c.stop = Some(StopReason::Blocked(w));
        return Ok(0);
    }
}

/// `epoll_pwait(epfd, events, maxevents, timeout_ms, sigmask, sigsetsize)`.
pub(super) fn epoll_pwait(c: &mut Call<'_>) -> SysResult {
    let mask = read_sigset(c, c.args[4], c.args[5])?;
    let ms = c.int(3);
    let timeout = (ms >= 0).then(|| Duration::from_millis(ms as u64));
    with_sigmask(c, mask, |c| epoll_wait_common(c, timeout))
}

/// `epoll_pwait2(epfd, events, maxevents, timeout, sigmask, sigsetsize)`: the timeout is a
/// `struct timespec` (NULL: forever).
pub(super) fn epoll_pwait2(c: &mut Call<'_>) -> SysResult {
    let mask = read_sigset(c, c.args[4], c.args[5])?;
    let timeout = timeout_arg(c, c.args[3])?;
    with_sigmask(c, mask, |c| epoll_wait_common(c, timeout))
}

// ---------------------------------------------------------------------------------------
// eventfd, timerfd

/// `eventfd2(initval, flags)`.
pub(super) fn eventfd2(c: &mut Call<'_>) -> SysResult {
    let (init, flags) = (c.args[0] as u32, c.args[1] as u32 as u64);
    const EFD_SEMAPHORE: u64 = 1;
    if flags & !(EFD_SEMAPHORE | CLOEXEC | NONBLOCK) != 0 {
        return err(libc::EINVAL);
    }
    let mut host = libc::EFD_CLOEXEC;
    if flags & EFD_SEMAPHORE != 0 {
        host |= libc::EFD_SEMAPHORE;
    }
    if flags & NONBLOCK != 0 {
        host |= libc::EFD_NONBLOCK;
    }
    // SAFETY: eventfd takes no pointers.
    let h = unsafe { libc::eventfd(init, host) };
    if h < 0 {
        return Err(Errno::last());
    }
    install(c, h, flags & CLOEXEC != 0)
}

/// `timerfd_create(clockid, flags)`.
pub(super) fn timerfd_create(c: &mut Call<'_>) -> SysResult {
    let (clock, flags) = (c.int(0), c.args[1] as u32 as u64);
    if flags & !(CLOEXEC | NONBLOCK) != 0 {
        return err(libc::EINVAL);
    }
    let mut host = libc::TFD_CLOEXEC;
    if flags & NONBLOCK != 0 {
        host |= libc::TFD_NONBLOCK;
    }
    // SAFETY: timerfd_create takes no pointers.
    let h = unsafe { libc::timerfd_create(clock, host) };
    if h < 0 {
        return Err(Errno::last());
    }
    install(c, h, flags & CLOEXEC != 0)
}

/// A guest `struct itimerspec` (four 64-bit words, the same layout as the host's).
fn read_itimerspec(c: &Call<'_>, addr: u64) -> Result<libc::itimerspec, Errno> {
    let b = read_array::<32>(&c.process.mem, addr)?;
    let w = |i: usize| i64::from_le_bytes(super::le8(&b[i * 8..]));
    Ok(libc::itimerspec {
        it_interval: libc::timespec { tv_sec: w(0) as _, tv_nsec: w(1) as _ },
        it_value: libc::timespec { tv_sec: w(2) as _, tv_nsec: w(3) as _ },
    })
}

/// Writes a guest `struct itimerspec`.
#[allow(clippy::unnecessary_cast)]
fn write_itimerspec(c: &Call<'_>, addr: u64, t: &libc::itimerspec) -> Result<(), Errno> {
    let mut o = super::Out::<32>::new();
    o.u64(0, t.it_interval.tv_sec as i64 as u64);
    o.u64(8, t.it_interval.tv_nsec as i64 as u64);
    o.u64(16, t.it_value.tv_sec as i64 as u64);
    o.u64(24, t.it_value.tv_nsec as i64 as u64);
    c.process.mem.write_bytes(addr, &o.0)?;
    Ok(())
}

/// `timerfd_settime(fd, flags, new_value, old_value)`.
pub(super) fn timerfd_settime(c: &mut Call<'_>) -> SysResult {
    let (fd, flags, new, old) = (c.fd(0), c.int(1), c.args[2], c.args[3]);
    let new = read_itimerspec(c, new)?;
    let h = host_fd(c, fd, libc::EINVAL)?;
    let mut prev = libc::itimerspec {
        it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
        it_value: libc::timespec { tv_sec: 0, tv_nsec: 0 },
    };
    // SAFETY: `new` and `prev` are live local itimerspec structures.
    if unsafe { libc::timerfd_settime(h, flags, &new, &mut prev) } < 0 {
        return Err(Errno::last());
    }
    if old != 0 {
        write_itimerspec(c, old, &prev)?;
    }
    Ok(0)
}

/// `timerfd_gettime(fd, curr_value)`.
pub(super) fn timerfd_gettime(c: &mut Call<'_>) -> SysResult {
    let h = host_fd(c, c.fd(0), libc::EINVAL)?;
    let mut cur = libc::itimerspec {
        it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
        it_value: libc::timespec { tv_sec: 0, tv_nsec: 0 },
    };
    // SAFETY: `cur` is a live local itimerspec.
    if unsafe { libc::timerfd_gettime(h, &mut cur) } < 0 {
        return Err(Errno::last());
    }
    write_itimerspec(c, c.args[1], &cur)?;
    Ok(0)
}

// ---------------------------------------------------------------------------------------
// ppoll, pselect6

/// In-memory pipe ends a wait watches, each with the `poll` events asked of it.
type MemWatch = Vec<(Arc<PipeEnd>, u32)>;

/// One polled entry: what it asks and what it got.
struct PollEntry {
    fd: i32,
    events: i16,
    revents: i16,
}

/// Fills every entry's `revents` without waiting; returns how many are ready and the host
/// descriptors to watch if none is. Memory descriptors answer at once; host descriptors go
/// through one host `poll` with a zero timeout.
fn poll_entries(c: &Call<'_>, entries: &mut [PollEntry]) -> (u64, Vec<(RawFd, i16)>, MemWatch) {
    let mut host: Vec<(usize, libc::pollfd)> = Vec::new();
    let mut mem: MemWatch = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        if e.fd >= 0 {
            if let Some(end) = pipe_end(c.process, e.fd as i64) {
                if let Some((mask, _)) = end.poll() {
                    e.revents = e.events & mask as i16;
                    mem.push((end, e.events as u16 as u32));
                    continue;
                }
            }
        }
        e.revents = if e.fd < 0 {
            0
        } else {
            match target(c.process, e.fd as i64) {
                Err(_) => POLLNVAL,
                Ok(Target::Host(h)) => {
                    host.push((i, libc::pollfd { fd: h, events: e.events, revents: 0 }));
                    0
                }
                Ok(Target::Capture(_)) => e.events & (POLLOUT | POLLWRNORM),
                Ok(Target::Null) => e.events & (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM),
                // A directory polls as readable and writable, as on Linux.
                Ok(Target::FdDir) => e.events & (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM),
                Ok(Target::Bytes) => {
                    let left = match c.process.files().get(e.fd as i64).map(|d| &d.kind) {
                        Some(FileKind::Bytes { data, pos }) => data.len().saturating_sub(*pos),
                        _ => 0,
                    };
                    let r = e.events & (POLLIN | POLLRDNORM);
                    if left == 0 {
                        r | POLLHUP
                    } else {
                        r
                    }
                }
            }
        };
    }
    if !host.is_empty() {
        let mut pfds: Vec<libc::pollfd> = host.iter().map(|(_, p)| *p).collect();
        // SAFETY: `pfds` is a live vector of `pfds.len()` pollfd structures; zero timeout.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as _, 0) };
        if r > 0 {
            for ((i, _), p) in host.iter().zip(&pfds) {
                entries[*i].revents = p.revents;
            }
        }
    }
    let ready = entries.iter().filter(|e| e.revents != 0).count() as u64;
    let watch = host.iter().map(|(_, p)| (p.fd, p.events)).collect();
    (ready, watch, mem)
}

/// `ppoll(fds, nfds, timeout, sigmask, sigsetsize)`.
pub(super) fn ppoll(c: &mut Call<'_>) -> SysResult {
    let (nfds, tmo) = (c.args[1] as u32 as u64, c.args[2]);
    if nfds > MAX_FDS as u64 {
        return err(libc::EINVAL);
    }
    let timeout = timeout_arg(c, tmo)?;
    let mask = read_sigset(c, c.args[3], c.args[4])?;
    with_sigmask(c, mask, |c| ppoll_masked(c, timeout))
}

/// `ppoll` once its arguments are checked and its mask applied.
fn ppoll_masked(c: &mut Call<'_>, timeout: Option<Duration>) -> SysResult {
    let (addr, nfds, tmo) = (c.args[0], c.args[1] as u32 as u64, c.args[2]);
    let mut raw = vec![0u8; nfds as usize * 8];
    c.process.mem.read_bytes(addr, &mut raw)?;
    let mut entries: Vec<PollEntry> = raw
        .chunks_exact(8)
        .map(|e| PollEntry {
            fd: i32::from_le_bytes([e[0], e[1], e[2], e[3]]),
            events: i16::from_le_bytes([e[4], e[5]]),
            revents: 0,
        })
        .collect();
    // Linux always reports these, asked or not.
    let always = POLLERR | POLLHUP | POLLNVAL;
    for e in &mut entries {
        e.events |= always;
    }
    let deadline = Deadline::of(c, timeout);
    loop {
        let (ready, watch, mem) = poll_entries(c, &mut entries);
        if ready > 0 || deadline.expired() {
            for (e, out) in entries.iter().zip(raw.chunks_exact_mut(8)) {
                out[6..8].copy_from_slice(&e.revents.to_le_bytes());
            }
            c.process.mem.write_bytes(addr, &raw)?;
            write_back_left(c, tmo, deadline)?;
            return Ok(ready);
        }
        match wait_ready_mem(c, watch, &mem, deadline)? {
            Waited::Parked => return Ok(0),
            Waited::Again => {}
        }
    }
}

/// `pselect6(nfds, readfds, writefds, exceptfds, timeout, sigmask)`.
pub(super) fn pselect6(c: &mut Call<'_>) -> SysResult {
    let n = c.int(0);
    if n < 0 {
        return err(libc::EINVAL);
    }
    let n = (n as usize).min(MAX_FDS);
    let timeout = timeout_arg(c, c.args[4])?;
    let mut mask = None;
    if c.args[5] != 0 {
        // `{ const sigset_t *ss; size_t ss_len; }`
        let b = read_array::<16>(&c.process.mem, c.args[5])?;
        let ss = u64::from_le_bytes(super::le8(&b[..8]));
        mask = read_sigset(c, ss, u64::from_le_bytes(super::le8(&b[8..])))?;
    }
    with_sigmask(c, mask, |c| pselect6_masked(c, n, timeout))
}

/// `pselect6` once its arguments are checked and its mask applied.
fn pselect6_masked(c: &mut Call<'_>, n: usize, timeout: Option<Duration>) -> SysResult {
    let sets = [c.args[1], c.args[2], c.args[3]];
    let tmo = c.args[4];
    let words = n.div_ceil(64);
    let mut bits = [vec![0u64; words], vec![0u64; words], vec![0u64; words]];
    for (set, out) in sets.iter().zip(bits.iter_mut()) {
        if *set != 0 && words > 0 {
            let mut raw = vec![0u8; words * 8];
            c.process.mem.read_bytes(*set, &mut raw)?;
            for (w, chunk) in out.iter_mut().zip(raw.chunks_exact(8)) {
                *w = u64::from_le_bytes(super::le8(chunk));
            }
        }
    }
    // Bits past `n` are not looked at.
    if n % 64 != 0 {
        for b in bits.iter_mut() {
            if let Some(last) = b.last_mut() {
                *last &= (1u64 << (n % 64)) - 1;
            }
        }
    }
    let mut entries = Vec::new();
    for fd in 0..n {
        let (w, b) = (fd / 64, 1u64 << (fd % 64));
        let mut events = 0i16;
        if bits[0][w] & b != 0 {
            events |= POLLIN | POLLRDNORM | POLLRDBAND | POLLHUP | POLLERR;
        }
        if bits[1][w] & b != 0 {
            events |= POLLOUT | POLLWRNORM | POLLWRBAND | POLLERR;
        }
        if bits[2][w] & b != 0 {
            events |= POLLPRI;
        }
        if events != 0 {
            if c.process.files().get(fd as i64).is_none() {
                return err(libc::EBADF);
            }
            entries.push(PollEntry { fd: fd as i32, events, revents: 0 });
        }
    }
    let deadline = Deadline::of(c, timeout);
    loop {
        let (_, watch, mem) = poll_entries(c, &mut entries);
        let mut out = [vec![0u64; words], vec![0u64; words], vec![0u64; words]];
        let mut count = 0u64;
        for e in &entries {
            let fd = e.fd as usize;
            let (w, b) = (fd / 64, 1u64 << (fd % 64));
            let checks = [
                POLLIN | POLLRDNORM | POLLRDBAND | POLLHUP | POLLERR,
                POLLOUT | POLLWRNORM | POLLWRBAND | POLLERR,
                POLLPRI,
            ];
            for k in 0..3 {
                if bits[k][w] & b != 0 && e.revents & checks[k] != 0 {
                    out[k][w] |= b;
                    count += 1;
                }
            }
        }
        if count > 0 || deadline.expired() {
            for (set, o) in sets.iter().zip(&out) {
                if *set != 0 && words > 0 {
                    let raw: Vec<u8> = o.iter().flat_map(|w| w.to_le_bytes()).collect();
                    c.process.mem.write_bytes(*set, &raw)?;
                }
            }
            write_back_left(c, tmo, deadline)?;
            return Ok(count);
        }
        match wait_ready_mem(c, watch, &mem, deadline)? {
            Waited::Parked => return Ok(0),
            Waited::Again => {}
        }
    }
}
