//! Pipes kept in vmx's memory, and the epoll instances that watch them.
//!
//! Every process of a sandbox lives in one host process, so a pipe whose ends are all held
//! by guests needs no host object: `pipe2` makes a [`Pipe`] (a page ring as Linux keeps it,
//! and lists of parked waiters), each end one [`PipeEnd`] (one open file description:
//! `dup`, `fork` and `SCM_RIGHTS`-free inheritance share the `Arc`). `read`, `write`,
//! `readv`, `writev`, `poll`, `select`, epoll, `fstat`, `fcntl` and `ioctl(FIONREAD)` are
//! served here without host calls, and a writer wakes a parked reader's [`Waiter`] itself.
//!
//! Anything else that needs a host descriptor (`splice`, `sendfile`, `SCM_RIGHTS`, `mmap`,
//! `F_SETPIPE_SZ`, reopening `/proc/self/fd/N`, a nested epoll, ...) *converts* the pipe
//! ([`PipeEnd::host_fd`]): a host pipe is made, the buffered bytes are moved into it and from
//! then on both ends are that host pipe's descriptors (owned here, closed when the end's last
//! guest reference goes), so every other path keeps working on host descriptors unchanged.
//!
//! Linux's behaviour is kept: 16 page slots of 4096 bytes, a write's sub-page remainder is
//! merged into the last page when it fits (so the capacity seen by small writes is Linux's),
//! writes of at most `PIPE_BUF` bytes are atomic, a read returns what is there (never waits
//! once it has data), end of file once the write end is closed, `EPIPE` (the caller raises
//! `SIGPIPE`) once the read end is, `EAGAIN` for a non-blocking end, `POLLHUP`/`POLLERR` as
//! `pipe_poll`. Every write is a new event for edge-triggered epoll (Linux 5.14 and later),
//! a read is one for the write end only when the pipe was full.
//!
//! Invariants:
//! - All of a pipe's state is under one lock; a waiter is registered under it after the
//!   state was found not ready, and every change that can make it ready takes the waiter
//!   lists under it and wakes them after it is released: no wake-up is lost.
//! - Once converted, the pipe never holds data in memory again, and every operation here
//!   answers [`Io::Host`] so that the caller uses the host descriptor.
//! - Lock order: a [`MemEpoll`]'s lock, then a pipe's lock, then a futex table's.

use crate::futex::Waiter;
use crate::memory::AddressSpace;
use crate::sync::IgnorePoison;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Bytes per page slot.
const PAGE: usize = 4096;
/// Page slots of a pipe (Linux's default capacity is 16 pages).
const SLOTS: usize = 16;
/// The pipe's capacity in bytes, what `F_GETPIPE_SZ` reports.
pub const CAPACITY: usize = PAGE * SLOTS;

/// `EPOLLIN` / `POLLIN`.
pub const EV_IN: u32 = 0x1;
/// `EPOLLOUT` / `POLLOUT`.
pub const EV_OUT: u32 = 0x4;
/// `EPOLLERR` / `POLLERR`.
pub const EV_ERR: u32 = 0x8;
/// `EPOLLHUP` / `POLLHUP`.
pub const EV_HUP: u32 = 0x10;
/// `EPOLLRDNORM` / `POLLRDNORM`.
pub const EV_RDNORM: u32 = 0x40;
/// `EPOLLWRNORM` / `POLLWRNORM`.
pub const EV_WRNORM: u32 = 0x100;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One page of buffered bytes (`data[start..]` is unread).
struct Page {
    data: Vec<u8>,
    start: usize,
}

/// The pipe's state (see the module docs).
struct State {
    pages: VecDeque<Page>,
    /// Unread bytes.
    bytes: usize,
    /// Open read and write descriptions (0 or 1 each: `pipe2` makes one of each).
    readers: usize,
    writers: usize,
    /// Edge counters: bumped by every event of the read end (a write, the last writer's
    /// close) and of the write end (a read of a full pipe, the last reader's close).
    rgen: u64,
    wgen: u64,
    /// Parked readers (and pollers of the read end), parked writers (and of the write end).
    rwait: Vec<Arc<Waiter>>,
    wwait: Vec<Arc<Waiter>>,
    /// `O_NONBLOCK` and `O_APPEND` of the read and write descriptions (`F_SETFL`).
    flags: [u64; 2],
    /// The host pipe once converted: read end, write end (`None` once closed).
    host: Option<[Option<OwnedFd>; 2]>,
    /// An emptied page kept for the next write.
    spare: Option<Vec<u8>>,
}

/// A pipe in memory. See the module docs.
pub struct Pipe {
    id: u64,
    /// Set (under the lock, never cleared) when the pipe is converted: lets
    /// [`PipeEnd::is_host`] answer without the lock.
    converted: AtomicBool,
    st: Mutex<State>,
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe").field("id", &self.id).finish_non_exhaustive()
    }
}

/// One end of a [`Pipe`]: one open file description.
#[derive(Debug)]
pub struct PipeEnd {
    pipe: Arc<Pipe>,
    write: bool,
}

/// What a read or write did.
#[derive(Debug)]
pub enum Io {
    /// Done: this many bytes (0 at end of file).
    Done(u64),
    /// Failed with this errno (`EAGAIN`, `EPIPE`).
    Errno(i32),
    /// Must wait: this waiter (from the caller's constructor) is registered with the pipe.
    Wait(Arc<Waiter>),
    /// The pipe was converted: use this host descriptor.
    Host(RawFd),
}

/// `O_NONBLOCK` in the guest's (and the host's) flag encoding.
pub const O_NONBLOCK: u64 = 0o4000;

/// A read position in a list of byte slices.
struct Cursor<'a> {
    src: &'a [&'a [u8]],
    i: usize,
    off: usize,
}

impl Cursor<'_> {
    /// Appends the next `n` bytes (fewer at the end) to `out`.
    fn take(&mut self, out: &mut Vec<u8>, mut n: usize) {
        while n > 0 && self.i < self.src.len() {
            let s = &self.src[self.i][self.off..];
            let k = s.len().min(n);
            out.extend_from_slice(&s[..k]);
            self.off += k;
            n -= k;
            if self.off == self.src[self.i].len() {
                self.i += 1;
                self.off = 0;
            }
        }
    }

    /// Moves past the next `n` bytes.
    fn skip(&mut self, mut n: usize) {
        while n > 0 && self.i < self.src.len() {
            let k = (self.src[self.i].len() - self.off).min(n);
            self.off += k;
            n -= k;
            if self.off == self.src[self.i].len() {
                self.i += 1;
                self.off = 0;
            }
        }
    }
}

fn take_waiters(v: &mut Vec<Arc<Waiter>>) -> Vec<Arc<Waiter>> {
    std::mem::take(v)
}

fn wake_all(ws: Vec<Arc<Waiter>>) {
    for w in ws {
        w.wake();
    }
}

impl State {
    fn full(&self) -> bool {
        self.pages.len() >= SLOTS
    }

    /// `pipe_poll`'s mask for the read end (`write` false) or the write end.
    fn mask(&self, write: bool) -> u32 {
        let mut m = 0;
        if write {
            if !self.full() {
                m |= EV_OUT | EV_WRNORM;
            }
            if self.readers == 0 {
                m |= EV_ERR;
            }
        } else {
            if self.bytes > 0 {
                m |= EV_IN | EV_RDNORM;
            }
            if self.writers == 0 {
                m |= EV_HUP;
            }
        }
        m
    }

    fn new_page(&mut self) -> Vec<u8> {
        match self.spare.take() {
            Some(mut p) => {
                p.clear();
                p
            }
            None => Vec::with_capacity(PAGE),
        }
    }
}

impl Pipe {
    fn st(&self) -> MutexGuard<'_, State> {
        self.st.lock().ignore_poison()
    }

    /// See [`PipeEnd::poll`]; `write` picks the end.
    fn poll(&self, write: bool) -> Option<(u32, u64)> {
        let st = self.st();
        if st.host.is_some() {
            return None;
        }
        Some((st.mask(write), if write { st.wgen } else { st.rgen }))
    }

    /// See [`PipeEnd::watch`]; `write` picks the end.
    fn watch(&self, write: bool, w: &Arc<Waiter>, ready: impl FnOnce(u32, u64) -> bool) -> bool {
        let mut st = self.st();
        if st.host.is_some() {
            return true;
        }
        let gen = if write { st.wgen } else { st.rgen };
        if ready(st.mask(write), gen) {
            return true;
        }
        let list = if write { &mut st.wwait } else { &mut st.rwait };
        list.retain(|w| w.is_waiting());
        list.push(w.clone());
        false
    }
}

impl PipeEnd {
    /// A new pipe: its read end and its write end, `O_NONBLOCK` on both when `nonblock`.
    pub fn pair(nonblock: bool) -> (Arc<PipeEnd>, Arc<PipeEnd>) {
        let fl = if nonblock { O_NONBLOCK } else { 0 };
        let pipe = Arc::new(Pipe {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            converted: AtomicBool::new(false),
            st: Mutex::new(State {
                pages: VecDeque::new(),
                bytes: 0,
                readers: 1,
                writers: 1,
                rgen: 0,
                wgen: 0,
                rwait: Vec::new(),
                wwait: Vec::new(),
                flags: [fl, fl],
                host: None,
                spare: None,
            }),
        });
        (
            Arc::new(PipeEnd { pipe: pipe.clone(), write: false }),
            Arc::new(PipeEnd { pipe, write: true }),
        )
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.pipe.st.lock().ignore_poison()
    }

    fn side(&self) -> usize {
        self.write as usize
    }

    /// Whether this is the write end.
    pub fn is_write(&self) -> bool {
        self.write
    }

    /// The pipe's number (what `fstat` reports as the inode and `/proc/self/fd` shows).
    pub fn id(&self) -> u64 {
        self.pipe.id
    }

    /// Whether the pipe has been converted to a host pipe.
    pub fn is_host(&self) -> bool {
        self.pipe.converted.load(Ordering::Acquire)
    }

    /// The description's `O_NONBLOCK | O_APPEND` flags; `None` once converted.
    pub fn flags(&self) -> Option<u64> {
        let st = self.st();
        st.host.is_none().then(|| st.flags[self.side()])
    }

    /// Sets the description's `O_NONBLOCK | O_APPEND` flags; false once converted (the
    /// caller sets them on the host descriptor).
    pub fn set_flags(&self, fl: u64) -> bool {
        let mut st = self.st();
        if st.host.is_some() {
            return false;
        }
        let side = self.side();
        st.flags[side] = fl;
        true
    }

    /// Unread bytes (`FIONREAD`); `None` once converted.
    pub fn unread(&self) -> Option<usize> {
        let st = self.st();
        st.host.is_none().then_some(st.bytes)
    }

    /// The `poll` mask of this end now and its edge counter; `None` once converted.
    pub fn poll(&self) -> Option<(u32, u64)> {
        self.pipe.poll(self.write)
    }

    /// Registers `w` to be woken by this end's next event unless `ready` (given the mask and
    /// edge counter now) says it is ready already or the pipe was converted: then returns
    /// true and registers nothing.
    pub fn watch(&self, w: &Arc<Waiter>, ready: impl FnOnce(u32, u64) -> bool) -> bool {
        self.pipe.watch(self.write, w, ready)
    }

    /// Reads into guest memory `dst` (`(address, length)` buffers, in order, checked
    /// writable by the caller). `wait` makes the waiter to park on when the pipe is empty.
    pub fn read(
        &self,
        mem: &AddressSpace,
        dst: &[(u64, usize)],
        wait: impl FnOnce() -> Arc<Waiter>,
    ) -> Io {
        let total: usize = dst.iter().map(|d| d.1).sum();
        let mut st = self.st();
        if let Some(h) = &st.host {
            return Io::Host(h[0].as_ref().map_or(-1, |f| f.as_raw_fd()));
        }
        if total == 0 {
            return Io::Done(0);
        }
        if st.bytes == 0 {
            if st.writers == 0 {
                return Io::Done(0);
            }
            if st.flags[0] & O_NONBLOCK != 0 {
                return Io::Errno(libc::EAGAIN);
            }
            let w = wait();
            st.rwait.retain(|w| w.is_waiting());
            st.rwait.push(w.clone());
            return Io::Wait(w);
        }
        let was_full = st.full();
        let mut done = 0usize;
        let (mut di, mut doff) = (0usize, 0usize);
        let mut fault = false;
        while di < dst.len() && st.bytes > 0 {
            let (addr, len) = dst[di];
            let Some(page) = st.pages.front_mut() else { break };
            let avail = &page.data[page.start..];
            let n = avail.len().min(len - doff);
            if n > 0 {
                if mem.write_bytes(addr + doff as u64, &avail[..n]).is_err() {
                    fault = true;
                    break;
                }
                page.start += n;
            }
            let emptied = page.start == page.data.len();
            st.bytes -= n;
            done += n;
            doff += n;
            if doff == len {
                di += 1;
                doff = 0;
            }
            if emptied {
                if let Some(p) = st.pages.pop_front() {
                    st.spare = Some(p.data);
                }
            }
        }
        let woken = if was_full && !st.full() {
            st.wgen = st.wgen.wrapping_add(1);
            take_waiters(&mut st.wwait)
        } else {
            Vec::new()
        };
        drop(st);
        wake_all(woken);
        if fault && done == 0 {
            return Io::Errno(libc::EFAULT);
        }
        Io::Done(done as u64)
    }

    /// Writes `src` (the guest's buffers, in order) after skipping its first `skip` bytes (the
    /// part a parked write already wrote). `wait(written)` makes the waiter to park on when
    /// the pipe is full, given what this call wrote so far. `Io::Errno(EPIPE)`: the caller
    /// raises `SIGPIPE`.
    pub fn write(&self, src: &[&[u8]], skip: u64, wait: impl FnOnce(u64) -> Arc<Waiter>) -> Io {
        let mut st = self.st();
        if let Some(h) = &st.host {
            return Io::Host(h[1].as_ref().map_or(-1, |f| f.as_raw_fd()));
        }
        // The source as one stream of bytes, from `skip` on. Nothing to write is no write,
        // even with no reader left (Linux checks the length first).
        let all: usize = src.iter().map(|s| s.len()).sum();
        let total = all.saturating_sub(skip as usize);
        if total == 0 {
            return Io::Done(0);
        }
        if st.readers == 0 {
            return Io::Errno(libc::EPIPE);
        }
        let mut cur = Cursor { src, i: 0, off: 0 };
        cur.skip(skip as usize);
        let nonblock = st.flags[1] & O_NONBLOCK != 0;
        let mut left = total;
        let mut done = 0usize;
        // A sub-page remainder goes into the last page when it fits there (Linux's merge).
        let chars = total & (PAGE - 1);
        if chars != 0 && st.bytes > 0 {
            if let Some(last) = st.pages.back_mut() {
                if last.data.len() + chars <= PAGE {
                    cur.take(&mut last.data, chars);
                    left -= chars;
                    done += chars;
                }
            }
        }
        while left > 0 && !st.full() {
            let mut page = st.new_page();
            let n = left.min(PAGE);
            cur.take(&mut page, n);
            st.pages.push_back(Page { data: page, start: 0 });
            left -= n;
            done += n;
        }
        st.bytes += done;
        let woken = if done > 0 {
            st.rgen = st.rgen.wrapping_add(1);
            take_waiters(&mut st.rwait)
        } else {
            Vec::new()
        };
        let r = if left == 0 {
            Io::Done(done as u64)
        } else if nonblock {
            if done > 0 {
                Io::Done(done as u64)
            } else {
                Io::Errno(libc::EAGAIN)
            }
        } else {
            let w = wait(done as u64);
            st.wwait.retain(|w| w.is_waiting());
            st.wwait.push(w.clone());
            Io::Wait(w)
        };
        drop(st);
        wake_all(woken);
        r
    }

    /// The host descriptor of this end, converting the pipe first if it is still in memory
    /// (see the module docs). Parked waiters are woken to make their calls again on it.
    pub fn host_fd(&self) -> std::io::Result<RawFd> {
        let mut st = self.st();
        if st.host.is_none() {
            let mut fds = [0i32; 2];
            // SAFETY: `fds` is a local array of two ints, as pipe2 requires.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
            let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            if st.bytes > 0 {
                // SAFETY: F_SETPIPE_SZ takes an integer; a failure leaves the default size.
                unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, CAPACITY as i32) };
                for p in &st.pages {
                    let b = &p.data[p.start..];
                    // SAFETY: `b` is a live slice the host only reads.
                    let n = unsafe { libc::write(w.as_raw_fd(), b.as_ptr().cast(), b.len()) };
                    if n != b.len() as isize {
                        return Err(std::io::Error::from_raw_os_error(libc::ENOMEM));
                    }
                }
            }
            for (fd, fl) in [(&r, st.flags[0]), (&w, st.flags[1])] {
                let mut host = 0;
                if fl & O_NONBLOCK != 0 {
                    host |= libc::O_NONBLOCK;
                }
                if fl & 0o2000 != 0 {
                    host |= libc::O_APPEND;
                }
                // SAFETY: F_SETFL takes an integer argument.
                unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, host) };
            }
            st.host = Some([(st.readers > 0).then_some(r), (st.writers > 0).then_some(w)]);
            self.pipe.converted.store(true, Ordering::Release);
            st.pages.clear();
            st.bytes = 0;
            let mut woken = take_waiters(&mut st.rwait);
            woken.append(&mut st.wwait);
            drop(st);
            wake_all(woken);
            st = self.st();
        }
        let h = st.host.as_ref().and_then(|h| h[self.side()].as_ref()).map(|f| f.as_raw_fd());
        h.ok_or_else(|| std::io::Error::from_raw_os_error(libc::EBADF))
    }
}

impl Drop for PipeEnd {
    /// The description's close: the last writer's gives readers end of file, the last
    /// reader's gives writers `EPIPE`; a converted pipe's host end is closed.
    fn drop(&mut self) {
        let mut st = self.st();
        let side = self.side();
        if let Some(h) = &mut st.host {
            h[side] = None;
        }
        let woken = if self.write {
            st.writers = st.writers.saturating_sub(1);
            st.rgen = st.rgen.wrapping_add(1);
            take_waiters(&mut st.rwait)
        } else {
            st.readers = st.readers.saturating_sub(1);
            st.wgen = st.wgen.wrapping_add(1);
            take_waiters(&mut st.wwait)
        };
        drop(st);
        wake_all(woken);
    }
}

// ---------------------------------------------------------------------------------------
// epoll

/// `EPOLLET`.
pub const EPOLLET: u32 = 1 << 31;
/// `EPOLLONESHOT`.
pub const EPOLLONESHOT: u32 = 1 << 30;

/// One in-memory pipe end watched by an epoll instance.
#[derive(Debug)]
struct Member {
    /// The guest descriptor number it was added under.
    fd: i32,
    /// The end (its description: the member goes when it is closed) and its pipe, held so
    /// that a look at the member needs no upgrade of the weak reference.
    end: Weak<PipeEnd>,
    pipe: Arc<Pipe>,
    write: bool,
    events: u32,
    data: u64,
    /// The end's edge counter when last reported (edge-triggered).
    seen: u64,
    /// Armed (an `EPOLLONESHOT` member is disarmed once reported, until `EPOLL_CTL_MOD`).
    armed: bool,
}

#[derive(Debug, Default)]
struct EpState {
    members: Vec<Member>,
    /// Members added to the host instance (an upper bound: the host drops closed ones).
    host_members: usize,
    /// Whether the host instance was handed out (a nested epoll, `SCM_RIGHTS`, ...): then
    /// every member lives in it.
    exposed: bool,
    /// Waits parked on this instance ([`MemEpoll::watch`]). A member added or changed
    /// later (in memory or on the host) is not among what they watch, so `epoll_ctl` wakes
    /// them to look again, as Linux's `epoll_wait` sees members added while it sleeps.
    parked: Vec<Arc<Waiter>>,
}

/// Wakes the waits parked on an instance (taken from its state under the lock, woken after).
fn wake_parked(parked: Vec<Arc<Waiter>>) {
    for w in parked {
        w.wake();
    }
}

/// An epoll instance: a host epoll instance for host descriptors plus the in-memory pipe
/// ends it watches, each with Linux's level, edge and one-shot semantics.
#[derive(Debug)]
pub struct MemEpoll {
    host: OwnedFd,
    st: Mutex<EpState>,
}

/// What [`MemEpoll::scan`] found.
#[derive(Debug)]
pub struct Scan {
    /// Ready in-memory members: `(events, data)`.
    pub events: Vec<(u32, u64)>,
    /// Whether in-memory members are watched.
    pub mem_members: bool,
    /// Whether host descriptors may be in the host instance.
    pub host_members: bool,
}

/// What `epoll_ctl` on a [`MemEpoll`] asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtlOp {
    /// `EPOLL_CTL_ADD`.
    Add,
    /// `EPOLL_CTL_DEL`.
    Del,
    /// `EPOLL_CTL_MOD`.
    Mod,
}

fn host_ctl(ep: RawFd, op: i32, fd: RawFd, events: u32, data: u64) -> Result<(), i32> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: `ev` is a live local epoll_event.
    if unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) } < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
    }
    Ok(())
}

impl MemEpoll {
    /// A new instance around host epoll descriptor `host` (which it owns).
    pub fn new(host: OwnedFd) -> MemEpoll {
        MemEpoll { host, st: Mutex::new(EpState::default()) }
    }

    fn st(&self) -> MutexGuard<'_, EpState> {
        self.st.lock().ignore_poison()
    }

    /// The host instance (for host descriptors).
    pub fn host(&self) -> RawFd {
        self.host.as_raw_fd()
    }

    /// Counts a host descriptor added (`+1`) or removed (`-1`).
    pub fn count_host(&self, add: bool) {
        let mut st = self.st();
        st.host_members = if add { st.host_members + 1 } else { st.host_members.saturating_sub(1) };
        if add {
            let parked = std::mem::take(&mut st.parked);
            drop(st);
            wake_parked(parked);
        }
    }

    /// Whether ends must go to the host instance (it was handed out).
    pub fn exposed(&self) -> bool {
        self.st().exposed
    }

    /// Moves members whose pipe was converted into the host instance, dropping closed ones.
    fn migrate(&self, st: &mut EpState, all: bool) {
        let host = self.host.as_raw_fd();
        let mut moved = 0;
        st.members.retain(|m| {
            let Some(end) = m.end.upgrade() else { return false };
            if !all && !end.is_host() {
                return true;
            }
            if let Ok(h) = end.host_fd() {
                let ev = if m.armed { m.events } else { m.events & (EPOLLONESHOT | EPOLLET) };
                if host_ctl(host, libc::EPOLL_CTL_ADD, h, ev, m.data).is_ok() {
                    moved += 1;
                }
            }
            false
        });
        st.host_members += moved;
    }

    /// Hands the host instance out: every member moves into it (converting its pipe), and
    /// later ones are added there. Returns the host descriptor.
    pub fn expose(&self) -> RawFd {
        let mut st = self.st();
        if !st.exposed {
            self.migrate(&mut st, true);
            st.exposed = true;
        }
        self.host.as_raw_fd()
    }

    /// `epoll_ctl` for in-memory pipe end `end` under guest descriptor `fd`. `None`: the end
    /// is not (or no longer) served here; the caller uses host descriptors.
    pub fn ctl(
        &self,
        op: CtlOp,
        fd: i32,
        end: &Arc<PipeEnd>,
        events: u32,
        data: u64,
    ) -> Option<Result<(), i32>> {
        let mut st = self.st();
        self.migrate(&mut st, false);
        if st.exposed {
            return None;
        }
        let pos = st
            .members
            .iter()
            .position(|m| m.fd == fd && std::ptr::eq(m.end.as_ptr(), Arc::as_ptr(end)));
        if end.is_host() && pos.is_none() {
            return None;
        }
        let seen = end.poll().map_or(0, |(_, g)| g.wrapping_sub(1));
        let r = match (op, pos) {
            (CtlOp::Add, Some(_)) => Err(libc::EEXIST),
            (CtlOp::Add, None) => {
                st.members.push(Member {
                    fd,
                    end: Arc::downgrade(end),
                    pipe: end.pipe.clone(),
                    write: end.write,
                    events,
                    data,
                    seen,
                    armed: true,
                });
                Ok(())
            }
            (CtlOp::Del | CtlOp::Mod, None) => Err(libc::ENOENT),
            (CtlOp::Del, Some(i)) => {
                st.members.remove(i);
                Ok(())
            }
            (CtlOp::Mod, Some(i)) => {
                let m = &mut st.members[i];
                m.events = events;
                m.data = data;
                m.seen = seen;
                m.armed = true;
                Ok(())
            }
        };
        if r.is_ok() && op != CtlOp::Del {
            let parked = std::mem::take(&mut st.parked);
            drop(st);
            wake_parked(parked);
        }
        Some(r)
    }

    /// One look at the instance: up to `max` ready in-memory members as `(events, data)`,
    /// with Linux's level, edge and one-shot rules (when more are ready than asked for, the
    /// level-triggered ones reported go to the back, so that members take turns), and
    /// whether it has in-memory and host members. Members whose pipe was converted move
    /// to the host instance; closed ones are dropped.
    pub fn scan(&self, max: usize) -> Scan {
        let mut st = self.st();
        let mut events = Vec::new();
        let mut reported = Vec::new();
        let mut i = 0;
        let mut stopped_early = false;
        while i < st.members.len() {
            if events.len() >= max {
                stopped_early = true;
                break;
            }
            if st.members[i].end.strong_count() == 0 {
                st.members.remove(i);
                continue;
            }
            if st.members[i].pipe.converted.load(Ordering::Acquire) {
                self.migrate(&mut st, false);
                continue;
            }
            let m = &mut st.members[i];
            i += 1;
            if !m.armed {
                continue;
            }
            let Some((mask, gen)) = m.pipe.poll(m.write) else { continue };
            let got = mask & (m.events | EV_ERR | EV_HUP);
            if got == 0 {
                continue;
            }
            if m.events & EPOLLET != 0 {
                if gen == m.seen {
                    continue;
                }
                m.seen = gen;
            }
            events.push((got, m.data));
            if m.events & EPOLLONESHOT != 0 {
                m.armed = false;
            } else if m.events & EPOLLET == 0 {
                reported.push(i - 1);
            }
        }
        if stopped_early {
            for &k in reported.iter().rev() {
                let m = st.members.remove(k);
                st.members.push(m);
            }
        }
        Scan { events, mem_members: !st.members.is_empty(), host_members: st.host_members > 0 }
    }

    /// Registers `w` with every in-memory member's pipe; true (and `w` should be dropped)
    /// if one is ready after all, or if the instance no longer has host members exactly
    /// when `host_members` (what the wait watches) says so.
    pub fn watch(&self, w: &Arc<Waiter>, host_members: bool) -> bool {
        let mut st = self.st();
        if (st.host_members > 0) != host_members {
            return true;
        }
        st.parked.retain(|p| p.is_waiting());
        st.parked.push(w.clone());
        for m in &st.members {
            if m.end.strong_count() == 0 {
                continue;
            }
            let (events, seen, armed) = (m.events, m.seen, m.armed);
            let ready = m.pipe.watch(m.write, w, |mask, gen| {
                armed
                    && mask & (events | EV_ERR | EV_HUP) != 0
                    && (events & EPOLLET == 0 || gen != seen)
            });
            if ready {
                return true;
            }
        }
        false
    }
}
