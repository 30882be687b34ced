//! File-descriptor I/O: the read and write families, `lseek`, `close`, `dup`/`dup3`,
//! `fcntl`, `ioctl`, `pipe2`, `getdents64`, `ftruncate` and `fsync` (`ppoll` is in `event`).
//!
//! What each [`FileKind`] behaves like:
//! - `Host`: the host descriptor itself; every call is forwarded (flags translated).
//! - `Capture`: the write end of a pipe whose reader keeps everything (writes append; reads,
//!   seeks and terminal ioctls fail like on a pipe's write end).
//! - `Bytes`: the read end of a pipe whose writer wrote the bytes and closed it.
//! - `Null`: `/dev/null` opened read-write.
//! - `Pipe`: an end of a pipe in vmx's memory ([`crate::pipe`]): `read`, `write`, `readv`,
//!   `writev`, `lseek`/`pread`/`pwrite` (`ESPIPE`), `fcntl` (`dup`, flags, `F_GETPIPE_SZ`) and
//!   `ioctl` are served in memory ([`pipe_end`] first); every other call gets a host pipe
//!   through [`target`], which converts it.
//! - `Epoll`: an epoll instance (see `event`); [`target`] hands out its host instance.
//!
//! Invariant: a host call that takes a buffer gets a pointer into a slice of guest memory
//! that [`crate::memory::AddressSpace`] checked, trimmed to the prefix the guest may access,
//! so a host call never touches memory the guest could not.
//!
//! In a process a scheduler hosts, `read`/`readv` of a host descriptor with nothing to read
//! park the thread on a readiness wait and are made again once it is readable, so an empty
//! pipe or a terminal never holds a vCPU.

use super::{accessible_prefix, err, le8, signal, Call, Errno, SysResult, MAX_RW_COUNT};
use crate::exec::StopReason;
use crate::futex::Waiter;
use crate::memory::{AccessKind, AddressSpace, PERM_READ, PERM_WRITE};
use crate::pipe::{Io, PipeEnd};
use crate::process::{CaptureBuffer, FileDesc, FileKind, Process, MAX_FDS};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Guest (asm-generic) `O_*` flag values.
pub(super) mod oflag {
    /// Access mode mask.
    pub const O_ACCMODE: u64 = 3;
    /// Write only.
    pub const O_WRONLY: u64 = 1;
    /// Read and write.
    pub const O_RDWR: u64 = 2;
    /// Create if missing.
    pub const O_CREAT: u64 = 0o100;
    /// With `O_CREAT`: fail if it exists.
    pub const O_EXCL: u64 = 0o200;
    /// Do not become the controlling terminal.
    pub const O_NOCTTY: u64 = 0o400;
    /// Truncate.
    pub const O_TRUNC: u64 = 0o1000;
    /// Append.
    pub const O_APPEND: u64 = 0o2000;
    /// Non-blocking.
    pub const O_NONBLOCK: u64 = 0o4000;
    /// Synchronous data writes.
    pub const O_DSYNC: u64 = 0o10000;
    /// Signal-driven I/O.
    pub const FASYNC: u64 = 0o20000;
    /// Direct I/O.
    pub const O_DIRECT: u64 = 0o40000;
    /// Must be a directory.
    pub const O_DIRECTORY: u64 = 0o200000;
    /// Do not follow a final symlink.
    pub const O_NOFOLLOW: u64 = 0o400000;
    /// Do not update the access time.
    pub const O_NOATIME: u64 = 0o1000000;
    /// Close on exec.
    pub const O_CLOEXEC: u64 = 0o2000000;
    /// The bit `O_SYNC` adds to `O_DSYNC`.
    pub const O_SYNC_BIT: u64 = 0o4000000;
    /// Path-only descriptor.
    pub const O_PATH: u64 = 0o10000000;
    /// The bit `O_TMPFILE` adds to `O_DIRECTORY`.
    pub const O_TMPFILE_BIT: u64 = 0o20000000;
}

/// Guest flag bit ↔ host flag bit (besides the access mode, which is the same everywhere).
/// `O_LARGEFILE` is absent on purpose: 64-bit hosts force it on every file, and qemu-riscv64
/// on such a host never reports it back in `F_GETFL` (its host value in libc is 0), so the
/// guest's bit is dropped going in and never set coming out.
const OFLAG_MAP: &[(u64, i32)] = &[
    (oflag::O_CREAT, libc::O_CREAT),
    (oflag::O_EXCL, libc::O_EXCL),
    (oflag::O_NOCTTY, libc::O_NOCTTY),
    (oflag::O_TRUNC, libc::O_TRUNC),
    (oflag::O_APPEND, libc::O_APPEND),
    (oflag::O_NONBLOCK, libc::O_NONBLOCK),
    (oflag::O_DSYNC, libc::O_DSYNC),
    (oflag::FASYNC, libc::O_ASYNC),
    (oflag::O_DIRECT, libc::O_DIRECT),
    (oflag::O_DIRECTORY, libc::O_DIRECTORY),
    (oflag::O_NOFOLLOW, libc::O_NOFOLLOW),
    (oflag::O_NOATIME, libc::O_NOATIME),
    (oflag::O_CLOEXEC, libc::O_CLOEXEC),
    (oflag::O_SYNC_BIT, libc::O_SYNC & !libc::O_DSYNC),
    (oflag::O_PATH, libc::O_PATH),
    (oflag::O_TMPFILE_BIT, libc::O_TMPFILE & !libc::O_DIRECTORY),
];

/// Translates guest `O_*` flags to the host's (unknown bits are dropped, as Linux ignores
/// them).
pub(super) fn oflags_to_host(g: u64) -> i32 {
    let mut h = (g & oflag::O_ACCMODE) as i32;
    for &(gb, hb) in OFLAG_MAP {
        if g & gb != 0 {
            h |= hb;
        }
    }
    h
}

/// Translates host `O_*` flags (from `F_GETFL`) to the guest's.
pub(super) fn oflags_from_host(h: i32) -> u64 {
    let mut g = (h & libc::O_ACCMODE) as u64;
    for &(gb, hb) in OFLAG_MAP {
        if hb != 0 && h & hb == hb {
            g |= gb;
        }
    }
    g
}

/// What a descriptor refers to, detached from the table so the table can be borrowed again.
pub(super) enum Target {
    /// A host descriptor.
    Host(RawFd),
    /// A capture buffer.
    Capture(CaptureBuffer),
    /// In-memory input (operate on the table entry).
    Bytes,
    /// `/dev/null`.
    Null,
    /// The virtual directory `/proc/self/fd` (operate on the table entry).
    FdDir,
}

/// Looks up guest descriptor `fd` (`EBADF` if it is not open).
///
/// An in-memory pipe is converted to a host pipe here and an epoll instance hands its host
/// instance out ([`crate::pipe`]): every caller of `target` works on host descriptors, and
/// only the paths that serve pipes in memory look for them first ([`pipe_end`]).
pub(super) fn target(p: &Process, fd: i64) -> Result<Target, Errno> {
    let mut files = p.files();
    match files.get(fd).map(|d| &d.kind) {
        Some(FileKind::Pipe(e)) => {
            let e = e.clone();
            drop(files);
            return Ok(Target::Host(e.host_fd()?));
        }
        Some(FileKind::Epoll(e)) => return Ok(Target::Host(e.expose())),
        _ => {}
    }
    match files.get(fd).map(|d| &d.kind) {
        None => err(libc::EBADF),
        Some(FileKind::Host { fd, .. }) => Ok(Target::Host(*fd)),
        Some(FileKind::Capture(b)) => Ok(Target::Capture(b.clone())),
        Some(FileKind::Bytes { .. }) => Ok(Target::Bytes),
        Some(FileKind::Null) => Ok(Target::Null),
        Some(FileKind::FdDir { .. }) => Ok(Target::FdDir),
        Some(FileKind::Pipe(_) | FileKind::Epoll(_)) => err(libc::EBADF),
    }
}

/// The pipe end behind guest `fd` if it is a pipe made in memory (it may have been
/// converted since: its operations then answer [`Io::Host`]).
pub(super) fn pipe_end(p: &Process, fd: i64) -> Option<Arc<PipeEnd>> {
    match p.files().get(fd).map(|d| &d.kind) {
        Some(FileKind::Pipe(e)) => Some(e.clone()),
        _ => None,
    }
}

/// The in-memory pipe end behind guest `fd`, if it is one that was not converted.
fn mem_pipe(p: &Process, fd: i64) -> Option<Arc<PipeEnd>> {
    pipe_end(p, fd).filter(|e| !e.is_host())
}

/// A readiness waiter with nothing to watch: registered with the process's table when a
/// scheduler hosts it (so that exit cancels it), a free one otherwise.
fn bare_waiter(c: &Call<'_>) -> Arc<Waiter> {
    if c.process.is_scheduled() {
        c.process.futexes.ready(Vec::new(), None, c.args[0])
    } else {
        Waiter::ready(Vec::new(), None, c.args[0])
    }
}

/// Serves a read of in-memory pipe end `e` into the guest buffers `iovs`: parks the thread
/// (or, without a scheduler, blocks the host thread) while the pipe is empty. `None` if the
/// pipe was converted: the caller reads the host descriptor.
fn pipe_read(c: &mut Call<'_>, e: &PipeEnd, iovs: &[(u64, u64)]) -> Option<SysResult> {
    let mem = &c.process.mem;
    let mut dst = Vec::with_capacity(iovs.len());
    let mut requested = 0u64;
    for &(base, len) in iovs {
        requested += len;
        if len == 0 {
            continue;
        }
        let n = accessible_prefix(mem, base, len, PERM_WRITE);
        if n > 0 {
            dst.push((base, n as usize));
        }
        if n < len {
            break;
        }
    }
    if dst.is_empty() && requested != 0 {
        return Some(err(libc::EFAULT));
    }
    loop {
        match e.read(&c.process.mem, &dst, || bare_waiter(c)) {
            Io::Done(n) => return Some(Ok(n)),
            Io::Errno(n) => return Some(Err(Errno(n))),
            Io::Host(_) => return None,
            Io::Wait(w) if c.process.is_scheduled() => {
                c.stop = Some(StopReason::Blocked(w));
                return Some(Ok(0));
            }
            Io::Wait(w) => w.wait_blocking(),
        }
    }
}

/// Serves a write of the guest buffers `src` to in-memory pipe end `e`: a blocking write
/// parks (or blocks the host thread) while the pipe is full, remembering what it wrote
/// ([`crate::futex::Waiter::write_progress`]); a broken pipe raises `SIGPIPE`. `None` if the
/// pipe was converted before anything was written: the caller writes the host descriptor.
fn pipe_write(c: &mut Call<'_>, e: &PipeEnd, src: &[&[u8]]) -> Option<SysResult> {
    let mut skip = c.partial;
    let a0 = c.args[0];
    loop {
        let scheduled = c.process.is_scheduled();
        let futexes = &c.process.futexes;
        let r = e.write(src, skip, |done| {
            if scheduled {
                futexes.write_progress(skip + done, a0)
            } else {
                Waiter::write_progress(skip + done, a0)
            }
        });
        match r {
            Io::Done(n) => return Some(Ok(skip + n)),
            Io::Errno(n) => {
                if n == libc::EPIPE {
                    signal::raise(c, libc::SIGPIPE);
                }
                return Some(if skip > 0 { Ok(skip) } else { Err(Errno(n)) });
            }
            // Converted while this write was parked: what was written is the count (a short
            // write; the rest would be written twice otherwise).
            Io::Host(_) if skip > 0 => return Some(Ok(skip)),
            Io::Host(_) => return None,
            Io::Wait(w) if scheduled => {
                c.stop = Some(StopReason::Blocked(w));
                return Some(Ok(0));
            }
            Io::Wait(w) => {
                skip = w.partial();
                w.wait_blocking();
            }
        }
    }
}

/// Runs a host call that may be interrupted by a host signal, retrying on `EINTR`.
pub(super) fn retry(mut f: impl FnMut() -> isize) -> Result<u64, Errno> {
    loop {
        let n = f();
        if n >= 0 {
            return Ok(n as u64);
        }
        let e = Errno::last();
        if e.0 != libc::EINTR {
            return Err(e);
        }
    }
}

/// The guest-writable prefix of `[buf, buf + len)` as a slice (`EFAULT` if it is empty while
/// `len` is not).
pub(super) fn out_buf(mem: &AddressSpace, buf: u64, len: u64) -> Result<&mut [u8], Errno> {
    let n = accessible_prefix(mem, buf, len, PERM_WRITE);
    if n == 0 && len != 0 {
        return err(libc::EFAULT);
    }
    Ok(mem.slice_mut(buf, n)?)
}

/// The guest-readable prefix of `[buf, buf + len)` as a slice (`EFAULT` if it is empty while
/// `len` is not).
pub(super) fn in_buf(mem: &AddressSpace, buf: u64, len: u64) -> Result<&[u8], Errno> {
    let n = accessible_prefix(mem, buf, len, PERM_READ);
    if n == 0 && len != 0 {
        return err(libc::EFAULT);
    }
    Ok(mem.slice(buf, n, PERM_READ, AccessKind::Read)?)
}

/// Reads from a host descriptor into guest memory, at `off` if given.
fn host_read(mem: &AddressSpace, h: RawFd, buf: u64, len: u64, off: Option<i64>) -> SysResult {
    let dst = out_buf(mem, buf, len)?;
    retry(|| match off {
        // SAFETY: `dst` is a live, exclusively borrowed slice of host-mapped guest memory;
        // the host writes at most `dst.len()` bytes into it.
        None => unsafe { libc::read(h, dst.as_mut_ptr().cast(), dst.len()) },
        // SAFETY: as above.
        Some(o) => unsafe { libc::pread(h, dst.as_mut_ptr().cast(), dst.len(), o) },
    })
}

/// Writes guest memory to a host descriptor, at `off` if given. A broken pipe also sends
/// the guest `SIGPIPE`, as the kernel does.
fn host_write(c: &mut Call<'_>, h: RawFd, buf: u64, len: u64, off: Option<i64>) -> SysResult {
    if off.is_none() && c.process.is_scheduled() {
        let src = in_buf(&c.process.mem, buf, len)?;
        if let Some(r) = host_write_parking(c, h, &[src]) {
            return r;
        }
    }
    let r = {
        let src = in_buf(&c.process.mem, buf, len)?;
        retry(|| match off {
            // SAFETY: `src` is a live slice of host-mapped guest memory of `src.len()` bytes,
            // which the host only reads.
            None => unsafe { libc::write(h, src.as_ptr().cast(), src.len()) },
            // SAFETY: as above.
            Some(o) => unsafe { libc::pwrite(h, src.as_ptr().cast(), src.len(), o) },
        })
    };
    if r == Err(Errno(libc::EPIPE)) {
        signal::raise(c, libc::SIGPIPE);
    }
    r
}

/// In a process a scheduler hosts, a write to a host pipe or socket never blocks the vCPU:
/// it writes what fits now (`pwritev2` with `RWF_NOWAIT`, which pipes and sockets honour) and,
/// on a blocking descriptor, parks until the descriptor is writable and goes on after the
/// bytes already written ([`crate::futex::Waiter::writable`]). Without it a guest writing
/// more than a socket or pipe holds to a reader in the same sandbox held its vCPU until the
/// reader drained it, and the reader might need that vCPU. `None` when the write is not
/// one of these (a regular file, a terminal, a kernel without `RWF_NOWAIT` for the
/// descriptor): the caller makes the plain host write.
fn host_write_parking(c: &mut Call<'_>, h: RawFd, parts: &[&[u8]]) -> Option<SysResult> {
    if without_nowait_writes(h) {
        return None;
    }
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = (c.partial as usize).min(total);
    loop {
        // The iovecs of what is left after `done` bytes.
        let mut skip = done;
        let iov: Vec<libc::iovec> = parts
            .iter()
            .filter_map(|p| {
                if skip >= p.len() {
                    skip -= p.len();
                    return None;
                }
                let rest = &p[skip..];
                skip = 0;
                Some(libc::iovec {
                    iov_base: rest.as_ptr() as *mut libc::c_void,
                    iov_len: rest.len(),
                })
            })
            .collect();
        if iov.is_empty() {
            return Some(Ok(done as u64));
        }
        // SAFETY: every iovec points into `parts`, live slices of host-mapped guest memory
        // that the host only reads; offset -1 writes at the current position.
        let n = unsafe { libc::pwritev2(h, iov.as_ptr(), iov.len() as i32, -1, libc::RWF_NOWAIT) };
        if n >= 0 {
            done += n as usize;
            if done >= total || n == 0 {
                return Some(Ok(done as u64));
            }
            continue;
        }
        let e = Errno::last();
        match e.0 {
            libc::EINTR => continue,
            libc::EAGAIN if !is_nonblocking(h) && is_pipe_or_socket(h) => {
                let w = c.process.futexes.writable(h, done as u64, c.args[0]);
                c.stop = Some(StopReason::Blocked(w));
                return Some(Ok(0));
            }
            _ if done > 0 => return Some(Ok(done as u64)),
            libc::EAGAIN if is_nonblocking(h) => return Some(Err(e)),
            libc::EOPNOTSUPP => {
                note_without_nowait_writes(h);
                return None;
            }
            libc::EAGAIN | libc::EINVAL => return None,
            libc::EPIPE => {
                signal::raise(c, libc::SIGPIPE);
                return Some(Err(e));
            }
            _ => return Some(Err(e)),
        }
    }
}

/// Host descriptors below 4096 whose `RWF_NOWAIT` writes failed with `EOPNOTSUPP` (regular
/// files on most file systems, terminals: never pipes or sockets), one bit each, so that
/// their writes skip straight to the plain host write instead of paying a failing call each
/// time. Host descriptors are unique in the host process while open; the bit is cleared
/// when vmx closes the descriptor ([`forget_host_fd`]).
static WITHOUT_NOWAIT_WRITES: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

fn without_nowait_writes(h: RawFd) -> bool {
    let h = h as usize;
    h < 4096 && WITHOUT_NOWAIT_WRITES[h / 64].load(Ordering::Relaxed) & (1 << (h % 64)) != 0
}

fn note_without_nowait_writes(h: RawFd) {
    let h = h as usize;
    if h < 4096 {
        WITHOUT_NOWAIT_WRITES[h / 64].fetch_or(1 << (h % 64), Ordering::Relaxed);
    }
}

/// Forgets what was learnt about host descriptor `h` (it is being closed, and its number
/// may come back for another file).
pub(crate) fn forget_host_fd(h: RawFd) {
    let h = h as usize;
    if h < 4096 {
        WITHOUT_NOWAIT_WRITES[h / 64].fetch_and(!(1 << (h % 64)), Ordering::Relaxed);
    }
}

/// Whether host descriptor `h` is a pipe or a socket.
fn is_pipe_or_socket(h: RawFd) -> bool {
    // SAFETY: `st` is a local stat buffer fstat fills; `h` is only read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(h, &mut st) } != 0 {
        return false;
    }
    matches!(st.st_mode & libc::S_IFMT, libc::S_IFIFO | libc::S_IFSOCK)
}

/// Serves a read from an in-memory (`Bytes`) descriptor.
fn bytes_read(p: &Process, fd: i64, buf: u64, len: u64) -> SysResult {
    let mem = &p.mem;
    let mut files = p.files();
    let Some(FileDesc { kind: FileKind::Bytes { data, pos }, .. }) = files.get(fd) else {
        return err(libc::EBADF);
    };
    let avail = data.len().saturating_sub(*pos) as u64;
    let want = len.min(avail);
    if want == 0 {
        return Ok(0);
    }
    let n = accessible_prefix(mem, buf, want, PERM_WRITE);
    if n == 0 {
        return err(libc::EFAULT);
    }
    let start = *pos;
    let end = start + n as usize;
    mem.write_bytes(buf, &data[start..end])?;
    *pos = end;
    Ok(n)
}

/// In a process a scheduler hosts, a read of a host descriptor that has nothing to read (an
/// empty pipe, a terminal) parks the thread until it has, then makes the call again, instead
/// of blocking the vCPU. Returns true when the call was turned into such a wait.
fn park_until_readable(c: &mut Call<'_>, h: RawFd) -> bool {
    if !c.process.is_scheduled() {
        return false;
    }
    let mut p = libc::pollfd { fd: h, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid `pollfd`, a zero timeout: the call only reports readiness.
    if unsafe { libc::poll(&mut p, 1, 0) } != 0 {
        return false; // readable, at end of file, or an error the read itself will report
    }
    if is_nonblocking(h) {
        return false; // the read itself answers EAGAIN
    }
    c.stop = Some(StopReason::Blocked(c.process.futexes.readable(h, c.args[0])));
    true
}

/// Whether host descriptor `h` is in non-blocking mode (its calls answer `EAGAIN`).
pub(super) fn is_nonblocking(h: RawFd) -> bool {
    // SAFETY: F_GETFL takes no argument.
    let fl = unsafe { libc::fcntl(h, libc::F_GETFL) };
    fl >= 0 && fl & libc::O_NONBLOCK != 0
}

/// In a process a scheduler hosts, first tries the read without waiting (`preadv2` with
/// `RWF_NOWAIT`, which pipes, sockets and eventfds honour): when there is data this saves
/// the readiness check of [`park_until_readable`], one host call per read. `None` when the
/// read would wait or the descriptor cannot be asked that way: the caller then goes the
/// usual way (check, park or read). Any other outcome is the read's own.
fn try_read_nowait(c: &Call<'_>, h: RawFd, buf: u64, len: u64) -> Option<SysResult> {
    if !c.process.is_scheduled() || len == 0 {
        return None;
    }
    // A bad buffer is reported by the usual way, after any wait, as Linux does.
    let dst = out_buf(&c.process.mem, buf, len).ok()?;
    let iov = libc::iovec { iov_base: dst.as_mut_ptr().cast(), iov_len: dst.len() };
    // SAFETY: `iov` describes a live, exclusively borrowed slice of host-mapped guest memory
    // of `iov_len` bytes, into which the host writes at most that many bytes; offset -1 reads
    // at (and advances) the file position, as `read` does.
    let r = retry(|| unsafe { libc::preadv2(h, &iov, 1, -1, libc::RWF_NOWAIT) } as isize);
    match r {
        // EAGAIN: nothing to read now (or, for a regular file, not cached); EOPNOTSUPP: the
        // descriptor takes no RWF_NOWAIT; EINVAL, ESPIPE: an older kernel or an odd file.
        Err(Errno(libc::EAGAIN | libc::EOPNOTSUPP | libc::EINVAL | libc::ESPIPE)) => None,
        other => Some(other),
    }
}

/// `read(fd, buf, count)`.
pub(super) fn read(c: &mut Call<'_>) -> SysResult {
    let (fd, buf, len) = (c.fd(0), c.args[1], c.args[2].min(MAX_RW_COUNT));
    if let Some(e) = pipe_end(c.process, fd) {
        if e.is_write() {
            return err(libc::EBADF);
        }
        if let Some(r) = pipe_read(c, &e, &[(buf, len)]) {
            return r;
        }
    }
    let t = target(c.process, fd)?;
    if let Target::Host(h) = t {
        if c.process.may_have_signalfds() {
            if let Some(id) = signal::signalfd_of(c.process, h) {
                return signal::signalfd_read(c, h, id);
            }
        }
        if let Some(r) = try_read_nowait(c, h, buf, len) {
            return r;
        }
    }
    match t {
        Target::Host(h) if park_until_readable(c, h) => Ok(0),
        Target::Host(h) => host_read(&c.process.mem, h, buf, len, None),
        Target::Bytes => bytes_read(c.process, fd, buf, len),
        Target::Null => Ok(0),
        Target::Capture(_) => err(libc::EBADF),
        Target::FdDir => err(libc::EISDIR),
    }
}

/// `write(fd, buf, count)`.
pub(super) fn write(c: &mut Call<'_>) -> SysResult {
    let (fd, buf, len) = (c.fd(0), c.args[1], c.args[2].min(MAX_RW_COUNT));
    if let Some(e) = pipe_end(c.process, fd) {
        if !e.is_write() {
            return err(libc::EBADF);
        }
        let src = in_buf(&c.process.mem, buf, len)?;
        if let Some(r) = pipe_write(c, &e, &[src]) {
            return r;
        }
    }
    match target(c.process, fd)? {
        Target::Host(h) => host_write(c, h, buf, len, None),
        Target::Capture(b) => {
            let src = in_buf(&c.process.mem, buf, len)?;
            b.append(src);
            Ok(src.len() as u64)
        }
        Target::Null => Ok(len),
        Target::Bytes | Target::FdDir => err(libc::EBADF),
    }
}

/// `pread64(fd, buf, count, offset)`.
pub(super) fn pread64(c: &mut Call<'_>) -> SysResult {
    let (fd, buf, len, off) = (c.fd(0), c.args[1], c.args[2].min(MAX_RW_COUNT), c.args[3] as i64);
    if mem_pipe(c.process, fd).is_some() {
        return err(if off < 0 { libc::EINVAL } else { libc::ESPIPE });
    }
    let t = target(c.process, fd)?;
    if off < 0 {
        return err(libc::EINVAL);
    }
    match t {
        Target::Host(h) => host_read(&c.process.mem, h, buf, len, Some(off)),
        Target::Null => Ok(0),
        Target::Bytes => err(libc::ESPIPE),
        Target::Capture(_) => err(libc::EBADF),
        Target::FdDir => err(libc::EISDIR),
    }
}

/// `pwrite64(fd, buf, count, offset)`.
pub(super) fn pwrite64(c: &mut Call<'_>) -> SysResult {
    let (fd, buf, len, off) = (c.fd(0), c.args[1], c.args[2].min(MAX_RW_COUNT), c.args[3] as i64);
    if mem_pipe(c.process, fd).is_some() {
        return err(if off < 0 { libc::EINVAL } else { libc::ESPIPE });
    }
    let t = target(c.process, fd)?;
    if off < 0 {
        return err(libc::EINVAL);
    }
    match t {
        Target::Host(h) => host_write(c, h, buf, len, Some(off)),
        Target::Null => Ok(len),
        Target::Capture(_) => err(libc::ESPIPE),
        Target::Bytes | Target::FdDir => err(libc::EBADF),
    }
}

/// Reads a guest `struct iovec` array: `(base, len)` pairs, validated like the kernel.
pub(super) fn read_iovecs(
    mem: &AddressSpace,
    iov: u64,
    cnt: i32,
) -> Result<Vec<(u64, u64)>, Errno> {
    if !(0..=1024).contains(&cnt) {
        return err(libc::EINVAL);
    }
    let cnt = cnt as usize;
    let mut raw = vec![0u8; cnt * 16];
    mem.read_bytes(iov, &mut raw)?;
    let mut out = Vec::with_capacity(cnt);
    let mut total = 0u64;
    for e in raw.chunks_exact(16) {
        let base = u64::from_le_bytes(le8(&e[..8]));
        let len = u64::from_le_bytes(le8(&e[8..]));
        if len > i64::MAX as u64 {
            return err(libc::EINVAL);
        }
        // The kernel truncates the total to MAX_RW_COUNT.
        let len = len.min(MAX_RW_COUNT - total);
        total += len;
        out.push((base, len));
    }
    Ok(out)
}

/// `readv(fd, iov, iovcnt)`.
pub(super) fn readv(c: &mut Call<'_>) -> SysResult {
    let fd = c.fd(0);
    if let Some(e) = pipe_end(c.process, fd) {
        if e.is_write() {
            return err(libc::EBADF);
        }
        let iovs = read_iovecs(&c.process.mem, c.args[1], c.int(2))?;
        if let Some(r) = pipe_read(c, &e, &iovs) {
            return r;
        }
    }
    let t = target(c.process, fd)?;
    if matches!(t, Target::Capture(_)) {
        return err(libc::EBADF);
    }
    if let Target::Host(h) = t {
        if signal::signalfd_of(c.process, h).is_some() {
            return err(libc::EINVAL); // not served (see syscall::signal)
        }
    }
    let iovs = read_iovecs(&c.process.mem, c.args[1], c.int(2))?;
    match t {
        Target::Host(h) if park_until_readable(c, h) => Ok(0),
        Target::Host(h) => {
            let mem = &c.process.mem;
            let mut host = Vec::with_capacity(iovs.len());
            for &(base, len) in &iovs {
                if len == 0 {
                    continue;
                }
                let n = accessible_prefix(mem, base, len, PERM_WRITE);
                if n > 0 {
                    let s = mem.slice_mut(base, n)?;
                    host.push(libc::iovec { iov_base: s.as_mut_ptr().cast(), iov_len: s.len() });
                }
                if n < len {
                    break;
                }
            }
            if host.is_empty() {
                return if iovs.iter().all(|&(_, l)| l == 0) { Ok(0) } else { err(libc::EFAULT) };
            }
            // SAFETY: every iovec points into guest memory that `slice_mut` checked as
            // writable and host-mapped; `mem` stays exclusively borrowed (so nothing is
            // unmapped) until the call returns.
            retry(|| unsafe { libc::readv(h, host.as_ptr(), host.len() as i32) })
        }
        _ => {
            let mut total = 0u64;
            for (base, len) in iovs {
                let r = match t {
                    Target::Bytes => bytes_read(c.process, fd, base, len),
                    _ => Ok(0),
                };
                match r {
                    Ok(n) => {
                        total += n;
                        if n < len {
                            break;
                        }
                    }
                    Err(e) if total == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            Ok(total)
        }
    }
}

/// The readable prefix of the guest buffers `iovs` (base, length), as slices, and the bytes
/// asked for in all.
fn readable_parts<'m>(
    mem: &'m AddressSpace,
    iovs: &[(u64, u64)],
) -> Result<(Vec<&'m [u8]>, u64), Errno> {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(iovs.len());
    for &(base, len) in iovs {
        if len == 0 {
            continue;
        }
        let n = accessible_prefix(mem, base, len, PERM_READ);
        if n > 0 {
            parts.push(mem.slice(base, n, PERM_READ, AccessKind::Read)?);
        }
        if n < len {
            break;
        }
    }
    Ok((parts, iovs.iter().map(|&(_, l)| l).sum()))
}

/// `writev(fd, iov, iovcnt)`.
pub(super) fn writev(c: &mut Call<'_>) -> SysResult {
    let fd = c.fd(0);
    if let Some(e) = pipe_end(c.process, fd) {
        if !e.is_write() {
            return err(libc::EBADF);
        }
        let iovs = read_iovecs(&c.process.mem, c.args[1], c.int(2))?;
        let (parts, requested) = readable_parts(&c.process.mem, &iovs)?;
        if parts.is_empty() && requested != 0 {
            return err(libc::EFAULT);
        }
        if let Some(r) = pipe_write(c, &e, &parts) {
            return r;
        }
    }
    let t = target(c.process, fd)?;
    if matches!(t, Target::Bytes | Target::FdDir) {
        return err(libc::EBADF);
    }
    let iovs = read_iovecs(&c.process.mem, c.args[1], c.int(2))?;
    let (parts, requested) = readable_parts(&c.process.mem, &iovs)?;
    if parts.is_empty() && requested != 0 && !matches!(t, Target::Null) {
        return err(libc::EFAULT);
    }
    match t {
        Target::Host(h) => {
            if parts.is_empty() {
                return Ok(0);
            }
            if c.process.is_scheduled() {
                if let Some(r) = host_write_parking(c, h, &parts) {
                    return r;
                }
            }
            let host: Vec<libc::iovec> = parts
                .iter()
                .map(|s| libc::iovec {
                    iov_base: s.as_ptr() as *mut libc::c_void,
                    iov_len: s.len(),
                })
                .collect();
            // SAFETY: every iovec points into guest memory that `slice` checked as readable and
            // host-mapped; the host only reads it, and `mem` stays borrowed for the call.
            let r = retry(|| unsafe { libc::writev(h, host.as_ptr(), host.len() as i32) });
            if r == Err(Errno(libc::EPIPE)) {
                signal::raise(c, libc::SIGPIPE);
            }
            r
        }
        Target::Capture(b) => {
            let mut n = 0u64;
            for s in &parts {
                b.append(s);
                n += s.len() as u64;
            }
            Ok(n)
        }
        _ => Ok(requested),
    }
}

/// `lseek(fd, offset, whence)`.
pub(super) fn lseek(c: &mut Call<'_>) -> SysResult {
    if mem_pipe(c.process, c.fd(0)).is_some() {
        return err(libc::ESPIPE);
    }
    match target(c.process, c.fd(0))? {
        Target::Host(h) => {
            // SAFETY: lseek takes no pointers.
            let r = unsafe { libc::lseek(h, c.args[1] as i64, c.int(2)) };
            if r < 0 {
                return Err(Errno::last());
            }
            Ok(r as u64)
        }
        Target::Null => {
            if (0..=4).contains(&c.int(2)) {
                Ok(0)
            } else {
                err(libc::EINVAL)
            }
        }
        Target::Capture(_) | Target::Bytes => err(libc::ESPIPE),
        Target::FdDir => {
            let (off, whence) = (c.args[1] as i64, c.int(2));
            let mut files = c.process.files();
            let Some(FileDesc { kind: FileKind::FdDir { pos }, .. }) = files.get(c.fd(0)) else {
                return err(libc::EBADF);
            };
            let new = match whence {
                libc::SEEK_SET => off,
                libc::SEEK_CUR => (*pos as i64).checked_add(off).ok_or(Errno(libc::EINVAL))?,
                _ => return err(libc::EINVAL),
            };
            if new < 0 {
                return err(libc::EINVAL);
            }
            *pos = new as u64;
            Ok(new as u64)
        }
    }
}

/// `close(fd)`.
pub(super) fn close(c: &mut Call<'_>) -> SysResult {
    if c.process.files().close(c.fd(0)) {
        Ok(0)
    } else {
        err(libc::EBADF)
    }
}

/// `close_range(first, last, flags)`: `CLOSE_RANGE_CLOEXEC` marks instead of closing;
/// `CLOSE_RANGE_UNSHARE` changes nothing here (a process's table is never shared).
pub(super) fn close_range(c: &mut Call<'_>) -> SysResult {
    const CLOSE_RANGE_UNSHARE: u64 = 2;
    const CLOSE_RANGE_CLOEXEC: u64 = 4;
    let (first, last, flags) = (c.args[0] as u32 as u64, c.args[1] as u32 as u64, c.args[2]);
    if flags & !(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) != 0 || first > last {
        return err(libc::EINVAL);
    }
    c.process.files().close_range(first, last, flags & CLOSE_RANGE_CLOEXEC != 0);
    Ok(0)
}

/// A new description of what `fd` refers to: a host `dup` for host descriptors, a shared
/// handle for capture buffers, and a copy (same data, same position, but not shared from then
/// on) for in-memory input.
fn dup_desc(p: &Process, fd: i64) -> Result<FileDesc, Errno> {
    let kind = match p.files().get(fd).map(|d| &d.kind) {
        None => return err(libc::EBADF),
        Some(FileKind::Host { fd, .. }) => {
            // SAFETY: F_DUPFD_CLOEXEC takes an integer argument and creates a new descriptor,
            // which this table then owns.
            let n = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 0) };
            if n < 0 {
                return Err(Errno::last());
            }
            FileKind::Host { fd: n, owned: true }
        }
        Some(FileKind::Capture(b)) => FileKind::Capture(b.clone()),
        Some(FileKind::Bytes { data, pos }) => FileKind::Bytes { data: data.clone(), pos: *pos },
        Some(FileKind::Null) => FileKind::Null,
        Some(FileKind::FdDir { pos }) => FileKind::FdDir { pos: *pos },
        Some(FileKind::Pipe(e)) => FileKind::Pipe(e.clone()),
        Some(FileKind::Epoll(e)) => FileKind::Epoll(e.clone()),
    };
    Ok(FileDesc { kind, cloexec: false })
}

/// `dup(fd)`.
pub(super) fn dup(c: &mut Call<'_>) -> SysResult {
    let d = dup_desc(c.process, c.fd(0))?;
    c.process.files().insert_from(0, d).map(|n| n as u64).ok_or(Errno(libc::EMFILE))
}

/// `dup3(oldfd, newfd, flags)`.
pub(super) fn dup3(c: &mut Call<'_>) -> SysResult {
    let (old, new, flags) = (c.fd(0), c.fd(1), c.args[2] as u32 as u64);
    if flags & !oflag::O_CLOEXEC != 0 || old == new {
        return err(libc::EINVAL);
    }
    if !(0..MAX_FDS as i64).contains(&new) {
        return err(libc::EBADF);
    }
    let mut d = dup_desc(c.process, old)?;
    d.cloexec = flags & oflag::O_CLOEXEC != 0;
    if c.process.files().insert_at(new as usize, d) {
        Ok(new as u64)
    } else {
        err(libc::EBADF)
    }
}

const F_DUPFD: i32 = 0;
const F_GETFD: i32 = 1;
const F_SETFD: i32 = 2;
const F_GETFL: i32 = 3;
const F_SETFL: i32 = 4;
const F_GETLK: i32 = 5;
const F_SETLK: i32 = 6;
const F_SETLKW: i32 = 7;
const F_OFD_GETLK: i32 = 36;
const F_OFD_SETLK: i32 = 37;
const F_OFD_SETLKW: i32 = 38;
const F_DUPFD_CLOEXEC: i32 = 1030;
const F_SETPIPE_SZ: i32 = 1031;
const F_GETPIPE_SZ: i32 = 1032;

/// Flags `F_SETFL` may change.
const SETFL_MASK: u64 =
    oflag::O_APPEND | oflag::O_NONBLOCK | oflag::O_DIRECT | oflag::O_NOATIME | oflag::FASYNC;

/// `fcntl(fd, cmd, arg)`.
pub(super) fn fcntl(c: &mut Call<'_>) -> SysResult {
    let (fd, cmd, arg) = (c.fd(0), c.int(1), c.args[2]);
    let in_memory = match c.process.files().get(fd).map(|d| &d.kind) {
        Some(FileKind::Pipe(_) | FileKind::Epoll(_)) => true,
        Some(_) => false,
        None => return err(libc::EBADF),
    };
    if in_memory {
        if let Some(e) = mem_pipe(c.process, fd) {
            const PIPE_FLAGS: u64 = oflag::O_NONBLOCK | oflag::O_APPEND;
            match cmd {
                F_GETFL => {
                    if let Some(fl) = e.flags() {
                        return Ok(fl | if e.is_write() { oflag::O_WRONLY } else { 0 });
                    }
                }
                F_SETFL if arg & SETFL_MASK & !PIPE_FLAGS == 0 && e.set_flags(arg & PIPE_FLAGS) => {
                    return Ok(0);
                }
                F_GETPIPE_SZ => return Ok(crate::pipe::CAPACITY as u64),
                _ => {}
            }
        }
    }
    // Commands on the table entry itself keep an in-memory pipe or epoll instance as it is.
    let t = match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC | F_GETFD | F_SETFD if in_memory => Target::Null,
        _ => target(c.process, fd)?,
    };
    match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            let min = arg as u32 as i32;
            if !(0..MAX_FDS as i32).contains(&min) {
                return err(libc::EINVAL);
            }
            let mut d = dup_desc(c.process, fd)?;
            d.cloexec = cmd == F_DUPFD_CLOEXEC;
            c.process
                .files()
                .insert_from(min as usize, d)
                .map(|n| n as u64)
                .ok_or(Errno(libc::EMFILE))
        }
        F_GETFD => Ok(c.process.files().get(fd).map_or(0, |d| d.cloexec as u64)),
        F_SETFD => {
            if let Some(d) = c.process.files().get(fd) {
                d.cloexec = arg & 1 != 0;
            }
            Ok(0)
        }
        F_GETFL => match t {
            Target::Host(h) => {
                // SAFETY: F_GETFL takes no argument.
                let r = unsafe { libc::fcntl(h, libc::F_GETFL) };
                if r < 0 {
                    return Err(Errno::last());
                }
                Ok(oflags_from_host(r))
            }
            Target::Capture(_) => Ok(oflag::O_WRONLY),
            Target::Bytes => Ok(0),
            Target::FdDir => Ok(oflag::O_DIRECTORY),
            Target::Null => Ok(oflag::O_RDWR),
        },
        F_SETFL => match t {
            Target::Host(h) => {
                // SAFETY: F_GETFL takes no argument.
                let cur = unsafe { libc::fcntl(h, libc::F_GETFL) };
                if cur < 0 {
                    return Err(Errno::last());
                }
                let keep = cur & !oflags_to_host(SETFL_MASK);
                let new = keep | oflags_to_host(arg & SETFL_MASK);
                // SAFETY: F_SETFL takes an integer argument.
                if unsafe { libc::fcntl(h, libc::F_SETFL, new) } < 0 {
                    return Err(Errno::last());
                }
                Ok(0)
            }
            _ => Ok(0),
        },
        F_GETLK | F_SETLK | F_SETLKW | F_OFD_GETLK | F_OFD_SETLK | F_OFD_SETLKW => {
            let Target::Host(h) = t else { return err(libc::EINVAL) };
            lock(c, h, cmd)
        }
        F_GETPIPE_SZ | F_SETPIPE_SZ => match t {
            Target::Host(h) => {
                let host_cmd =
                    if cmd == F_GETPIPE_SZ { libc::F_GETPIPE_SZ } else { libc::F_SETPIPE_SZ };
                // SAFETY: both commands take an integer argument.
                let r = unsafe { libc::fcntl(h, host_cmd, arg as u32 as i32) };
                if r < 0 {
                    return Err(Errno::last());
                }
                Ok(r as u64)
            }
            _ => err(libc::EBADF),
        },
        _ => {
            if super::first_time("fcntl-cmd") {
                tracing::warn!(cmd, "unsupported fcntl command; returning -EINVAL");
            }
            err(libc::EINVAL)
        }
    }
}

/// The record-locking `fcntl` commands: the guest's `struct flock` (generic 64-bit layout:
/// `short l_type, l_whence; off_t l_start, l_len; pid_t l_pid`, 32 bytes) is forwarded.
fn lock(c: &mut Call<'_>, h: RawFd, cmd: i32) -> SysResult {
    let addr = c.args[2];
    let b = super::read_array::<32>(&c.process.mem, addr)?;
    let mut fl = libc::flock {
        l_type: i16::from_le_bytes([b[0], b[1]]),
        l_whence: i16::from_le_bytes([b[2], b[3]]),
        l_start: i64::from_le_bytes(le8(&b[8..16])),
        l_len: i64::from_le_bytes(le8(&b[16..24])),
        l_pid: i32::from_le_bytes([b[24], b[25], b[26], b[27]]),
    };
    let host_cmd = match cmd {
        F_GETLK => libc::F_GETLK,
        F_SETLK => libc::F_SETLK,
        F_SETLKW => libc::F_SETLKW,
        F_OFD_GETLK => libc::F_OFD_GETLK,
        F_OFD_SETLK => libc::F_OFD_SETLK,
        _ => libc::F_OFD_SETLKW,
    };
    // SAFETY: `fl` is a valid, exclusively borrowed `struct flock` for the duration of the call.
    let r = unsafe { libc::fcntl(h, host_cmd, &mut fl as *mut libc::flock) };
    if r < 0 {
        return Err(Errno::last());
    }
    if cmd == F_GETLK || cmd == F_OFD_GETLK {
        let mut o = super::Out::<32>::new();
        o.u16(0, fl.l_type as u16);
        o.u16(2, fl.l_whence as u16);
        o.u64(8, fl.l_start as u64);
        o.u64(16, fl.l_len as u64);
        o.u32(24, fl.l_pid as u32);
        c.process.mem.write_bytes(addr, &o.0)?;
    }
    Ok(0)
}

const FIONREAD: u32 = 0x541b;
const FIONBIO: u32 = 0x5421;
const FIONCLEX: u32 = 0x5450;
const FIOCLEX: u32 = 0x5451;

/// Size of the kernel's `struct termios` (asm-generic: four `u32` flags, `c_line`, 19 control
/// characters), the same on riscv64 and the x86-64/AArch64 hosts, as are the flag values.
const TERMIOS_SIZE: usize = 36;

/// How a forwarded `ioctl` uses its argument.
#[derive(Clone, Copy)]
enum IoArg {
    /// Reads this many bytes through the pointer.
    In(usize),
    /// Writes this many bytes through the pointer.
    Out(usize),
    /// Takes the argument as an integer.
    Value,
}

/// Terminal `ioctl`s: guest request, host request, argument use. Host descriptors forward them;
/// every other descriptor is not a terminal (`ENOTTY`), like a pipe or `/dev/null`.
const TTY_IOCTLS: &[(u32, libc::Ioctl, IoArg)] = &[
    (0x5401, libc::TCGETS, IoArg::Out(TERMIOS_SIZE)),
    (0x5402, libc::TCSETS, IoArg::In(TERMIOS_SIZE)),
    (0x5403, libc::TCSETSW, IoArg::In(TERMIOS_SIZE)),
    (0x5404, libc::TCSETSF, IoArg::In(TERMIOS_SIZE)),
    (0x5409, libc::TCSBRK, IoArg::Value),
    (0x540a, libc::TCXONC, IoArg::Value),
    (0x540b, libc::TCFLSH, IoArg::Value),
    (0x540e, libc::TIOCSCTTY, IoArg::Value),
    (0x540f, libc::TIOCGPGRP, IoArg::Out(4)),
    (0x5410, libc::TIOCSPGRP, IoArg::In(4)),
    (0x5411, libc::TIOCOUTQ, IoArg::Out(4)),
    (0x5413, libc::TIOCGWINSZ, IoArg::Out(8)),
    (0x5414, libc::TIOCSWINSZ, IoArg::In(8)),
    (0x5422, libc::TIOCNOTTY, IoArg::Value),
    (0x5425, libc::TCSBRKP, IoArg::Value),
    (0x5429, libc::TIOCGSID, IoArg::Out(4)),
];

/// `ioctl(fd, request, arg)`: terminal requests (see `TTY_IOCTLS`), `FIONREAD`, `FIONBIO`,
/// `FIOCLEX`, `FIONCLEX`. Any other request is `ENOSYS`, as qemu-riscv64 answers requests it
/// does not know.
pub(super) fn ioctl(c: &mut Call<'_>) -> SysResult {
    let (fd, req, arg) = (c.fd(0), c.args[1] as u32, c.args[2]);
    if let Some(e) = mem_pipe(c.process, fd) {
        match req {
            FIOCLEX | FIONCLEX => {
                if let Some(d) = c.process.files().get(fd) {
                    d.cloexec = req == FIOCLEX;
                }
                return Ok(0);
            }
            FIONBIO => {
                let on = u32::from_le_bytes(super::read_array::<4>(&c.process.mem, arg)?) != 0;
                if let Some(fl) = e.flags() {
                    let fl = if on { fl | oflag::O_NONBLOCK } else { fl & !oflag::O_NONBLOCK };
                    if e.set_flags(fl) {
                        return Ok(0);
                    }
                }
            }
            FIONREAD => {
                if let Some(n) = e.unread() {
                    c.process.mem.write_u32(arg, n as u32).map_err(Errno::from)?;
                    return Ok(0);
                }
            }
            // A pipe is no terminal; other requests are ENOSYS whatever the descriptor.
            _ if TTY_IOCTLS.iter().any(|t| t.0 == req) => return err(libc::ENOTTY),
            _ => {
                tracing::debug!(req, "unsupported ioctl; returning -ENOSYS");
                return err(libc::ENOSYS);
            }
        }
    }
    let t = target(c.process, fd)?;
    let (host_req, how) = match req {
        FIOCLEX | FIONCLEX => {
            if let Some(d) = c.process.files().get(fd) {
                d.cloexec = req == FIOCLEX;
            }
            return Ok(0);
        }
        FIONBIO => match t {
            Target::Host(_) => (libc::FIONBIO, IoArg::In(4)),
            _ => {
                super::read_array::<4>(&c.process.mem, arg)?;
                return Ok(0);
            }
        },
        FIONREAD => match t {
            Target::Host(_) => (libc::FIONREAD, IoArg::Out(4)),
            Target::Bytes | Target::Capture(_) => {
                let n = match c.process.files().get(fd).map(|d| &d.kind) {
                    Some(FileKind::Bytes { data, pos }) => data.len().saturating_sub(*pos),
                    _ => 0,
                };
                c.process
                    .mem
                    .write_u32(arg, n.min(i32::MAX as usize) as u32)
                    .map_err(Errno::from)?;
                return Ok(0);
            }
            Target::Null | Target::FdDir => return err(libc::ENOTTY),
        },
        _ => match TTY_IOCTLS.iter().find(|e| e.0 == req) {
            Some(&(_, h, how)) => (h, how),
            None => {
                tracing::debug!(req, "unsupported ioctl; returning -ENOSYS");
                return err(libc::ENOSYS);
            }
        },
    };
    let Target::Host(h) = t else { return err(libc::ENOTTY) };
    let mem = &c.process.mem;
    // A host buffer larger than any of the structures above.
    let mut buf = [0u8; 64];
    let r = match how {
        IoArg::Value => {
            // SAFETY: these requests take an integer argument and touch no memory.
            unsafe { libc::ioctl(h, host_req, arg as libc::c_ulong) }
        }
        IoArg::In(n) | IoArg::Out(n) => {
            if let IoArg::In(n) = how {
                mem.read_bytes(arg, &mut buf[..n])?;
            }
            // SAFETY: each request reads or writes at most `n` (<= 36) bytes through its
            // pointer argument, and `buf` is a 64-byte exclusively borrowed local.
            let r = unsafe { libc::ioctl(h, host_req, buf.as_mut_ptr()) };
            if r >= 0 {
                if let IoArg::Out(_) = how {
                    mem.write_bytes(arg, &buf[..n])?;
                }
            }
            r
        }
    };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(r as u64)
}

/// `pipe2` of an in-memory pipe ([`crate::pipe`]).
fn mem_pipe2(c: &mut Call<'_>, addr: u64, flags: u64) -> SysResult {
    let cloexec = flags & oflag::O_CLOEXEC != 0;
    let (r, w) = PipeEnd::pair(flags & oflag::O_NONBLOCK != 0);
    let desc = |kind| FileDesc { kind, cloexec };
    install_pipe(c, addr, desc(FileKind::Pipe(r)), desc(FileKind::Pipe(w)))
}

/// Installs a pipe's read and write ends as the two lowest free descriptors and stores
/// their numbers at guest `addr`; on failure nothing stays installed (the ends not
/// installed are dropped, which closes what they own).
fn install_pipe(c: &mut Call<'_>, addr: u64, read: FileDesc, write: FileDesc) -> SysResult {
    let mut files = c.process.files();
    let Some(r) = files.insert_from(0, read) else {
        return err(libc::EMFILE);
    };
    let Some(w) = files.insert_from(0, write) else {
        files.close(r);
        return err(libc::EMFILE);
    };
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(r as i32).to_le_bytes());
    out[4..].copy_from_slice(&(w as i32).to_le_bytes());
    if c.process.mem.write_bytes(addr, &out).is_err() {
        files.close(r);
        files.close(w);
        return err(libc::EFAULT);
    }
    Ok(0)
}

/// `pipe2(fds, flags)`: a pipe in memory ([`crate::pipe`]); with `O_DIRECT` (packet mode,
/// not served in memory) a host pipe, both ends owned by the table.
pub(super) fn pipe2(c: &mut Call<'_>) -> SysResult {
    let (addr, flags) = (c.args[0], c.args[1] as u32 as u64);
    if flags & !(oflag::O_CLOEXEC | oflag::O_NONBLOCK | oflag::O_DIRECT) != 0 {
        return err(libc::EINVAL);
    }
    if flags & oflag::O_DIRECT == 0 {
        return mem_pipe2(c, addr, flags);
    }
    let host_flags =
        libc::O_CLOEXEC | oflags_to_host(flags & (oflag::O_NONBLOCK | oflag::O_DIRECT));
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a local array of two ints, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), host_flags) } < 0 {
        return Err(Errno::last());
    }
    let cloexec = flags & oflag::O_CLOEXEC != 0;
    let desc = |fd| FileDesc { kind: FileKind::Host { fd, owned: true }, cloexec };
    install_pipe(c, addr, desc(fds[0]), desc(fds[1]))
}

/// `getdents64(fd, dirp, count)`: forwarded for host directories (the `linux_dirent64`
/// layout is the same on every architecture); listed from the table for `/proc/self/fd`.
pub(super) fn getdents64(c: &mut Call<'_>) -> SysResult {
    let (fd, buf, len) = (c.fd(0), c.args[1], (c.args[2] as u32 as u64).min(MAX_RW_COUNT));
    let h = match target(c.process, fd)? {
        Target::Host(h) => h,
        Target::FdDir => return fd_dir_entries(c, fd, buf, len),
        _ => return err(libc::ENOTDIR),
    };
    let dst = out_buf(&c.process.mem, buf, len)?;
    retry(|| {
        // SAFETY: the kernel writes at most `dst.len()` bytes into `dst`, a live, exclusively
        // borrowed slice of host-mapped guest memory.
        unsafe { libc::syscall(libc::SYS_getdents64, h, dst.as_mut_ptr(), dst.len()) as isize }
    })
}

/// `getdents64` on `/proc/self/fd`: `.`, `..`, then one link per open descriptor, each
/// record's `d_off` the position after it (see [`FileKind::FdDir`]).
fn fd_dir_entries(c: &mut Call<'_>, fd: i64, buf: u64, len: u64) -> SysResult {
    const DT_DIR: u8 = 4;
    const DT_LNK: u8 = 10;
    let mut files = c.process.files();
    let Some(FileDesc { kind: FileKind::FdDir { pos }, .. }) = files.get(fd) else {
        return err(libc::EBADF);
    };
    let start = *pos;
    let mut names: Vec<(u64, u64, u8, Vec<u8>)> = Vec::new();
    for p in start..2 {
        names.push((p, 1 + p, DT_DIR, if p == 0 { b".".to_vec() } else { b"..".to_vec() }));
    }
    let first_fd = usize::try_from(start.saturating_sub(2)).unwrap_or(usize::MAX);
    names.extend(
        files
            .open_from(first_fd)
            .map(|n| (n as u64 + 2, 0x1000 + n as u64, DT_LNK, n.to_string().into_bytes())),
    );
    let mut out = Vec::new();
    let mut next = start;
    for (at, ino, kind, name) in names {
        let reclen = (19 + name.len() + 1).next_multiple_of(8);
        if (out.len() + reclen) as u64 > len {
            if out.is_empty() {
                return err(libc::EINVAL);
            }
            break;
        }
        next = at + 1;
        out.extend_from_slice(&ino.to_le_bytes());
        out.extend_from_slice(&(next as i64).to_le_bytes());
        out.extend_from_slice(&(reclen as u16).to_le_bytes());
        out.push(kind);
        out.extend_from_slice(&name);
        out.resize(out.len() + reclen - 19 - name.len(), 0);
    }
    c.process.mem.write_bytes(buf, &out)?;
    if let Some(FileDesc { kind: FileKind::FdDir { pos }, .. }) = files.get(fd) {
        *pos = next;
    }
    Ok(out.len() as u64)
}

/// `ftruncate(fd, length)`.
pub(super) fn ftruncate(c: &mut Call<'_>) -> SysResult {
    let Target::Host(h) = target(c.process, c.fd(0))? else { return err(libc::EINVAL) };
    // SAFETY: ftruncate takes no pointers.
    if unsafe { libc::ftruncate(h, c.args[1] as i64) } < 0 {
        return Err(Errno::last());
    }
    Ok(0)
}

/// `fsync(fd)` and `fdatasync(fd)`.
pub(super) fn fsync(c: &mut Call<'_>) -> SysResult {
    let Target::Host(h) = target(c.process, c.fd(0))? else { return err(libc::EINVAL) };
    // SAFETY: fsync takes no pointers.
    if unsafe { libc::fsync(h) } < 0 {
        return Err(Errno::last());
    }
    Ok(0)
}
