//! Sockets: `socket`, `socketpair`, `bind`, `listen`, `accept`/`accept4`, `connect`,
//! `getsockname`, `getpeername`, `sendto`, `recvfrom`, `sendmsg`, `recvmsg`, `setsockopt`,
//! `getsockopt`, `shutdown`.
//!
//! Every guest socket is a host socket owned by the guest's descriptor table, so `read`,
//! `write`, `close`, `fcntl`, `ppoll` and epoll work on it as on any host descriptor.
//!
//! Sandbox:
//! - `AF_UNIX` sockets are always available. A path-bound address is resolved like `open`
//!   (below a granted directory, else `EACCES`); abstract names live in a namespace of this
//!   vmx process (the host name is prefixed with `vmx<host pid in hex>/`, which leaves guests abstract names of up to
//!   about 98 bytes instead of 107, removed again in every
//!   address returned), so a guest reaches no host program's abstract socket.
//! - `AF_INET`/`AF_INET6` sockets go through the host's network stack only when
//!   [`crate::process::ProcessConfig::network`] is set (`vmx run --net`); otherwise creating
//!   one fails with `EACCES`, so nothing reaches the network. Other families are
//!   `EAFNOSUPPORT`.
//!
//! Layouts: `sockaddr_*`, `msghdr`, `cmsghdr` and the socket option values and numbers of
//! riscv64 are those of the 64-bit hosts (asm-generic), so addresses and options pass
//! through; only descriptors in `SCM_RIGHTS` messages (guest numbers ↔ host numbers) and
//! unix socket names are translated.
//!
//! Blocking: in a process a scheduler hosts, a blocking `accept`, `recv*` or `send*` on a
//! socket that is not ready parks the thread on a readiness wait and is made again once it
//! is (see [`super::event`]); `connect` is made directly (loopback and unix connections
//! complete at once). Host calls are made with `MSG_NOSIGNAL`; a broken connection raises
//! the guest's `SIGPIPE` as Linux would.

use super::event::{install, poll_now};
use super::fs::{in_buf, is_nonblocking, out_buf, read_iovecs, retry, target, Target};
use super::{accessible_prefix, err, path, signal, Call, Errno, SysResult};
use crate::exec::StopReason;
use crate::memory::{AccessKind, PERM_READ, PERM_WRITE};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

const AF_UNSPEC: u16 = 0;
const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const SOCK_NONBLOCK: u64 = 0o4000;
const SOCK_CLOEXEC: u64 = 0o2000000;
const MSG_DONTWAIT: i32 = 0x40;
const MSG_NOSIGNAL: i32 = 0x4000;
const MSG_CMSG_CLOEXEC: i32 = 0x4000_0000;
const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
/// `sizeof(struct sockaddr_storage)`.
const SOCKADDR_MAX: usize = 128;
/// Largest option value or control buffer handled.
const OPT_MAX: usize = 64 << 10;

/// The host descriptor of guest socket `fd` (`EBADF`; `ENOTSOCK` for anything else, checked
/// first as Linux does, before the call's other arguments).
fn sock(c: &Call<'_>, fd: i64) -> Result<RawFd, Errno> {
    match target(c.process, fd)? {
        Target::Host(h) => {
            let mut ty = 0i32;
            let mut len = 4 as libc::socklen_t;
            // SAFETY: `ty` and `len` are live locals of the sizes given.
            let r = unsafe {
                libc::getsockopt(
                    h,
                    libc::SOL_SOCKET,
                    libc::SO_TYPE,
                    (&mut ty as *mut i32).cast(),
                    &mut len,
                )
            };
            if r < 0 && Errno::last().0 == libc::ENOTSOCK {
                return err(libc::ENOTSOCK);
            }
            Ok(h)
        }
        _ => err(libc::ENOTSOCK),
    }
}

/// The prefix that puts a guest's abstract unix names in this vmx process's namespace.
fn abstract_prefix() -> Vec<u8> {
    format!("vmx{:x}/", std::process::id()).into_bytes()
}

/// What a unix socket path is resolved for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// `bind`: the name is created.
    Bind,
    /// `connect`, `sendto`: the name must exist.
    Reach,
}

/// Reads a guest socket address and turns it into the host's.
fn addr_in(c: &Call<'_>, addr: u64, len: u64, purpose: Use) -> Result<Vec<u8>, Errno> {
    let len = len as u32 as usize;
    if len > SOCKADDR_MAX {
        return err(libc::EINVAL);
    }
    let mut b = vec![0u8; len];
    c.process.mem.read_bytes(addr, &mut b)?;
    if len < 2 {
        return Ok(b);
    }
    let family = u16::from_le_bytes([b[0], b[1]]);
    if family != AF_UNIX || len == 2 {
        return Ok(b);
    }
    let mut out = AF_UNIX.to_le_bytes().to_vec();
    if b[2] == 0 {
        out.push(0);
        out.extend(abstract_prefix());
        out.extend_from_slice(&b[3..]);
        if out.len() > 110 {
            return err(libc::EINVAL);
        }
        return Ok(out);
    }
    let raw: Vec<u8> = b[2..].iter().copied().take_while(|&x| x != 0).collect();
    let r = match purpose {
        Use::Bind => path::resolve(c.process, path::AT_FDCWD, &raw, false, true)?,
        Use::Reach => path::resolve(c.process, path::AT_FDCWD, &raw, true, false)?,
    };
    let host = r.path.as_os_str().as_bytes();
    if host.len() > 107 {
        return err(libc::ENAMETOOLONG);
    }
    if host != raw.as_slice() {
        super::state::with(c.process, |s| {
            s.unix_names.retain(|(h, _)| h.as_slice() != host);
            if s.unix_names.len() >= 1024 {
                s.unix_names.remove(0);
            }
            s.unix_names.push((host.to_vec(), raw.clone()));
        });
    }
    out.extend_from_slice(host);
    out.push(0);
    Ok(out)
}

/// Turns a host socket address back into the guest's: abstract names lose their prefix,
/// paths the guest named get its spelling back.
fn addr_from_host(c: &Call<'_>, mut b: Vec<u8>) -> Vec<u8> {
    if b.len() > 2 && u16::from_le_bytes([b[0], b[1]]) == AF_UNIX {
        if b[2] == 0 {
            let p = abstract_prefix();
            if b[3..].starts_with(&p) {
                b.drain(3..3 + p.len());
            }
        } else {
            let end = b[2..].iter().position(|&x| x == 0).map_or(b.len(), |i| i + 2);
            let host = &b[2..end];
            let guest = super::state::peek(c.process, |s| {
                s.unix_names
                    .iter()
                    .rev()
                    .find(|(h, _)| h.as_slice() == host)
                    .map(|(_, g)| g.clone())
            });
            if let Some(g) = guest {
                let mut out = AF_UNIX.to_le_bytes().to_vec();
                out.extend(g);
                out.push(0);
                return out;
            }
        }
    }
    b
}

/// Writes a socket address to the guest: at most `*lenp` bytes to `addr`, and the full
/// length to `*lenp`.
fn addr_out(c: &Call<'_>, addr: u64, lenp: u64, host: Vec<u8>) -> Result<(), Errno> {
    if addr == 0 || lenp == 0 {
        return Ok(());
    }
    let mem = &c.process.mem;
    let room = mem.read_u32(lenp).map_err(Errno::from)? as i32;
    if room < 0 {
        return err(libc::EINVAL);
    }
    let b = addr_from_host(c, host);
    let n = b.len().min(room as usize);
    mem.write_bytes(addr, &b[..n])?;
    mem.write_u32(lenp, b.len() as u32).map_err(Errno::from)?;
    Ok(())
}

/// Checks a guest address length before a call (`EINVAL` if negative).
fn check_lenp(c: &Call<'_>, addr: u64, lenp: u64) -> Result<(), Errno> {
    if addr != 0 && lenp != 0 && (c.process.mem.read_u32(lenp).map_err(Errno::from)? as i32) < 0 {
        return err(libc::EINVAL);
    }
    Ok(())
}

/// In a scheduled process: parks a blocking call on socket `h` until `events`, unless it is
/// ready, non-blocking, or `flags` has `MSG_DONTWAIT`. Returns whether it parked.
fn park_unless_ready(c: &mut Call<'_>, h: RawFd, events: i16, flags: i32) -> bool {
    if !c.process.is_scheduled() || flags & MSG_DONTWAIT != 0 {
        return false;
    }
    if poll_now(h, events) != 0 || is_nonblocking(h) {
        return false;
    }
    park(c, h, events);
    true
}

/// Parks the thread until `h` reports `events`; the call is then made again.
fn park(c: &mut Call<'_>, h: RawFd, events: i16) {
    c.stop = Some(StopReason::Blocked(c.process.futexes.ready(vec![(h, events)], None, c.args[0])));
}

/// Whether a send or receive on `h` would block the calling thread: a scheduled process, a
/// blocking socket, no `MSG_DONTWAIT`. Such a call is made on the host with `MSG_DONTWAIT`
/// and parks on `EAGAIN` (so a full or empty buffer never holds a vCPU; a stream send then
/// returns what fitted, as a blocking send interrupted by a signal would).
fn would_block(c: &Call<'_>, h: RawFd, flags: i32) -> bool {
    c.process.is_scheduled() && flags & MSG_DONTWAIT == 0 && !is_nonblocking(h)
}

/// Whether the family may be used by this guest (`EACCES` for the network without `--net`,
/// `EAFNOSUPPORT` for families vmx does not offer).
fn check_family(c: &Call<'_>, domain: i32) -> Result<(), Errno> {
    match domain as u16 {
        AF_UNIX => Ok(()),
        AF_INET | AF_INET6 if c.process.config.network => Ok(()),
        AF_INET | AF_INET6 => {
            if super::first_time("no-net") {
                tracing::warn!("guest network socket refused (EACCES); vmx run --net allows it");
            }
            err(libc::EACCES)
        }
        _ => err(libc::EAFNOSUPPORT),
    }
}

/// Splits a `type` argument into the base type and the guest's cloexec flag, checking flags.
fn split_type(ty: u64) -> Result<(i32, bool), Errno> {
    let ty = ty as u32 as u64;
    let flags = ty & !0xf;
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return err(libc::EINVAL);
    }
    let mut host = (ty & 0xf) as i32 | libc::SOCK_CLOEXEC;
    if flags & SOCK_NONBLOCK != 0 {
        host |= libc::SOCK_NONBLOCK;
    }
    Ok((host, flags & SOCK_CLOEXEC != 0))
}

/// `socket(domain, type, protocol)`.
pub(super) fn socket(c: &mut Call<'_>) -> SysResult {
    check_family(c, c.int(0))?;
    let (ty, cloexec) = split_type(c.args[1])?;
    // SAFETY: socket takes no pointers.
    let h = unsafe { libc::socket(c.int(0), ty, c.int(2)) };
    if h < 0 {
        return Err(Errno::last());
    }
    install(c, h, cloexec)
}

/// `socketpair(domain, type, protocol, sv)`.
pub(super) fn socketpair(c: &mut Call<'_>) -> SysResult {
    check_family(c, c.int(0))?;
    let (ty, cloexec) = split_type(c.args[1])?;
    let mut sv = [0i32; 2];
    // SAFETY: `sv` is a live local array of two ints.
    if unsafe { libc::socketpair(c.int(0), ty, c.int(2), sv.as_mut_ptr()) } < 0 {
        return Err(Errno::last());
    }
    let a = match install(c, sv[0], cloexec) {
        Ok(a) => a,
        Err(e) => {
            // SAFETY: `sv[1]` was just created and is owned by nobody else.
            unsafe { libc::close(sv[1]) };
            return Err(e);
        }
    };
    let b = match install(c, sv[1], cloexec) {
        Ok(b) => b,
        Err(e) => {
            c.process.files().close(a as i64);
            return Err(e);
        }
    };
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(a as i32).to_le_bytes());
    out[4..].copy_from_slice(&(b as i32).to_le_bytes());
    if c.process.mem.write_bytes(c.args[3], &out).is_err() {
        c.process.files().close(a as i64);
        c.process.files().close(b as i64);
        return err(libc::EFAULT);
    }
    Ok(0)
}

/// `bind(fd, addr, addrlen)`.
pub(super) fn bind(c: &mut Call<'_>) -> SysResult {
    let h = sock(c, c.fd(0))?;
    let a = addr_in(c, c.args[1], c.args[2], Use::Bind)?;
    // SAFETY: `a` is a live buffer of `a.len()` bytes holding a socket address.
    retry(|| unsafe { libc::bind(h, a.as_ptr().cast(), a.len() as u32) as isize })
}

/// `connect(fd, addr, addrlen)`.
pub(super) fn connect(c: &mut Call<'_>) -> SysResult {
    let h = sock(c, c.fd(0))?;
    let a = addr_in(c, c.args[1], c.args[2], Use::Reach)?;
    if a.len() >= 2 && u16::from_le_bytes([a[0], a[1]]) != AF_UNIX {
        let fam = u16::from_le_bytes([a[0], a[1]]);
        if fam != AF_UNSPEC && !c.process.config.network {
            return err(libc::EACCES);
        }
    }
    // SAFETY: `a` is a live buffer of `a.len()` bytes holding a socket address.
    let r = unsafe { libc::connect(h, a.as_ptr().cast(), a.len() as u32) };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(0)
}

/// `listen(fd, backlog)`.
pub(super) fn listen(c: &mut Call<'_>) -> SysResult {
    let h = sock(c, c.fd(0))?;
    // SAFETY: listen takes no pointers.
    retry(|| unsafe { libc::listen(h, c.int(1)) as isize })
}

/// `shutdown(fd, how)`.
pub(super) fn shutdown(c: &mut Call<'_>) -> SysResult {
    let h = sock(c, c.fd(0))?;
    // SAFETY: shutdown takes no pointers.
    retry(|| unsafe { libc::shutdown(h, c.int(1)) as isize })
}

/// `accept4(fd, addr, addrlen, flags)`.
pub(super) fn accept4(c: &mut Call<'_>) -> SysResult {
    let (fd, addr, lenp, flags) = (c.fd(0), c.args[1], c.args[2], c.args[3] as u32 as u64);
    let h = sock(c, fd)?;
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return err(libc::EINVAL);
    }
    check_lenp(c, addr, lenp)?;
    if park_unless_ready(c, h, libc::POLLIN, 0) {
        return Ok(0);
    }
    let mut host_flags = libc::SOCK_CLOEXEC;
    if flags & SOCK_NONBLOCK != 0 {
        host_flags |= libc::SOCK_NONBLOCK;
    }
    let mut buf = [0u8; SOCKADDR_MAX];
    let mut len = SOCKADDR_MAX as libc::socklen_t;
    // SAFETY: `buf` and `len` are live locals describing a sockaddr_storage-sized buffer.
    let n = retry(|| unsafe {
        libc::accept4(h, buf.as_mut_ptr().cast(), &mut len, host_flags) as isize
    })?;
    let guest = install(c, n as RawFd, flags & SOCK_CLOEXEC != 0)?;
    let host = buf[..(len as usize).min(SOCKADDR_MAX)].to_vec();
    if let Err(e) = addr_out(c, addr, lenp, host) {
        c.process.files().close(guest as i64);
        return Err(e);
    }
    Ok(guest)
}

/// `accept(fd, addr, addrlen)`.
pub(super) fn accept(c: &mut Call<'_>) -> SysResult {
    c.args[3] = 0;
    accept4(c)
}

/// `getsockname` and `getpeername`.
fn name_of(c: &mut Call<'_>, peer: bool) -> SysResult {
    let h = sock(c, c.fd(0))?;
    check_lenp(c, c.args[1], c.args[2])?;
    if c.args[2] == 0 {
        return err(libc::EFAULT);
    }
    let mut buf = [0u8; SOCKADDR_MAX];
    let mut len = SOCKADDR_MAX as libc::socklen_t;
    // SAFETY: `buf` and `len` are live locals describing a sockaddr_storage-sized buffer.
    let r = unsafe {
        if peer {
            libc::getpeername(h, buf.as_mut_ptr().cast(), &mut len)
        } else {
            libc::getsockname(h, buf.as_mut_ptr().cast(), &mut len)
        }
    };
    if r < 0 {
        return Err(Errno::last());
    }
    if c.args[1] == 0 {
        return err(libc::EFAULT);
    }
    addr_out(c, c.args[1], c.args[2], buf[..(len as usize).min(SOCKADDR_MAX)].to_vec())?;
    Ok(0)
}

/// `getsockname(fd, addr, addrlen)`.
pub(super) fn getsockname(c: &mut Call<'_>) -> SysResult {
    name_of(c, false)
}

/// `getpeername(fd, addr, addrlen)`.
pub(super) fn getpeername(c: &mut Call<'_>) -> SysResult {
    name_of(c, true)
}

/// Raises `SIGPIPE` for a send that found the connection broken, unless `MSG_NOSIGNAL`.
fn sigpipe(c: &mut Call<'_>, r: &SysResult, flags: i32) {
    if *r == Err(Errno(libc::EPIPE)) && flags & MSG_NOSIGNAL == 0 {
        signal::raise(c, libc::SIGPIPE);
    }
}

/// `sendto(fd, buf, len, flags, addr, addrlen)`.
pub(super) fn sendto(c: &mut Call<'_>) -> SysResult {
    let (fd, buf, len, flags) = (c.fd(0), c.args[1], c.args[2], c.int(3));
    let h = sock(c, fd)?;
    let a = if c.args[4] != 0 { Some(addr_in(c, c.args[4], c.args[5], Use::Reach)?) } else { None };
    let blocking = would_block(c, h, flags);
    let hflags = flags | MSG_NOSIGNAL | if blocking { MSG_DONTWAIT } else { 0 };
    let len = len.min(super::MAX_RW_COUNT);
    let r = {
        let src = in_buf(&c.process.mem, buf, len)?;
        let (ap, al) = a.as_ref().map_or((std::ptr::null(), 0), |a| (a.as_ptr(), a.len() as u32));
        // SAFETY: `src` is a checked slice of guest memory the host only reads; `ap` is null
        // or a live buffer of `al` bytes.
        retry(|| unsafe { libc::sendto(h, src.as_ptr().cast(), src.len(), hflags, ap.cast(), al) })
    };
    if blocking && r == Err(Errno(libc::EAGAIN)) {
        park(c, h, libc::POLLOUT);
        return Ok(0);
    }
    sigpipe(c, &r, flags);
    r
}

/// `recvfrom(fd, buf, len, flags, addr, addrlen)`.
pub(super) fn recvfrom(c: &mut Call<'_>) -> SysResult {
    let (fd, buf, len, flags, addr, lenp) =
        (c.fd(0), c.args[1], c.args[2], c.int(3), c.args[4], c.args[5]);
    let h = sock(c, fd)?;
    check_lenp(c, addr, lenp)?;
    let blocking = would_block(c, h, flags);
    let hflags = (flags & !MSG_CMSG_CLOEXEC) | if blocking { MSG_DONTWAIT } else { 0 };
    let len = len.min(super::MAX_RW_COUNT);
    let mut name = [0u8; SOCKADDR_MAX];
    let mut nlen = SOCKADDR_MAX as libc::socklen_t;
    let r = {
        let dst = out_buf(&c.process.mem, buf, len)?;
        // SAFETY: `dst` is a checked, exclusively borrowed slice of guest memory; `name` and
        // `nlen` are live locals.
        retry(|| unsafe {
            libc::recvfrom(
                h,
                dst.as_mut_ptr().cast(),
                dst.len(),
                hflags,
                name.as_mut_ptr().cast(),
                &mut nlen,
            )
        })
    };
    if blocking && r == Err(Errno(libc::EAGAIN)) {
        park(c, h, libc::POLLIN);
        return Ok(0);
    }
    let n = r?;
    if addr != 0 {
        addr_out(c, addr, lenp, name[..(nlen as usize).min(SOCKADDR_MAX)].to_vec())?;
    }
    Ok(n)
}

/// `setsockopt(fd, level, optname, optval, optlen)`: passed through.
pub(super) fn setsockopt(c: &mut Call<'_>) -> SysResult {
    let h = sock(c, c.fd(0))?;
    let len = c.args[4] as u32 as usize;
    if len > OPT_MAX {
        return err(libc::EINVAL);
    }
    let mut v = vec![0u8; len];
    c.process.mem.read_bytes(c.args[3], &mut v)?;
    let (level, name) = (c.int(1), c.int(2));
    // SAFETY: `v` is a live buffer of `len` bytes.
    retry(|| unsafe { libc::setsockopt(h, level, name, v.as_ptr().cast(), len as u32) as isize })
}

/// `getsockopt(fd, level, optname, optval, optlen)`: passed through.
pub(super) fn getsockopt(c: &mut Call<'_>) -> SysResult {
    let h = sock(c, c.fd(0))?;
    let (val, lenp) = (c.args[3], c.args[4]);
    let mem = &c.process.mem;
    let room = mem.read_u32(lenp).map_err(Errno::from)? as i32;
    if room < 0 {
        return err(libc::EINVAL);
    }
    let mut v = vec![0u8; (room as usize).min(OPT_MAX)];
    let mut len = v.len() as libc::socklen_t;
    let (level, name) = (c.int(1), c.int(2));
    // SAFETY: `v` and `len` are live locals describing a buffer of `len` bytes.
    retry(|| unsafe {
        libc::getsockopt(h, level, name, v.as_mut_ptr().cast(), &mut len) as isize
    })?;
    let n = (len as usize).min(v.len());
    mem.write_bytes(val, &v[..n])?;
    mem.write_u32(lenp, len).map_err(Errno::from)?;
    Ok(0)
}

/// A guest `struct msghdr` (56 bytes).
struct MsgHdr {
    name: u64,
    namelen: u32,
    iov: u64,
    iovlen: u64,
    control: u64,
    controllen: u64,
}

fn read_msghdr(c: &Call<'_>, addr: u64) -> Result<MsgHdr, Errno> {
    let b = super::read_array::<56>(&c.process.mem, addr)?;
    let w = |o: usize| u64::from_le_bytes(super::le8(&b[o..o + 8]));
    Ok(MsgHdr {
        name: w(0),
        namelen: w(8) as u32,
        iov: w(16),
        iovlen: w(24),
        control: w(32),
        controllen: w(40),
    })
}

/// Host iovecs over guest memory: the accessible prefix of the guest's vector.
fn host_iovecs(c: &Call<'_>, m: &MsgHdr, need: u8) -> Result<Vec<libc::iovec>, Errno> {
    if m.iovlen > 1024 {
        return err(libc::EMSGSIZE);
    }
    let iovs = read_iovecs(&c.process.mem, m.iov, m.iovlen as i32)?;
    let mem = &c.process.mem;
    let mut host = Vec::with_capacity(iovs.len());
    for (base, len) in iovs {
        if len == 0 {
            continue;
        }
        let n = accessible_prefix(mem, base, len, need);
        if n == 0 {
            if host.is_empty() {
                return err(libc::EFAULT);
            }
            break;
        }
        let ptr = if need == PERM_WRITE {
            mem.slice_mut(base, n)?.as_mut_ptr()
        } else {
            mem.slice(base, n, PERM_READ, AccessKind::Read)?.as_ptr() as *mut u8
        };
        host.push(libc::iovec { iov_base: ptr.cast(), iov_len: n as usize });
        if n < len {
            break;
        }
    }
    Ok(host)
}

/// Walks the control messages in `buf`: `(offset of data, data length, level, type)`.
fn cmsgs(buf: &[u8]) -> Vec<(usize, usize, i32, i32)> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + 16 <= buf.len() {
        let len = u64::from_le_bytes(super::le8(&buf[off..off + 8])) as usize;
        if len < 16 || len > buf.len() - off {
            break;
        }
        let level = i32::from_le_bytes([buf[off + 8], buf[off + 9], buf[off + 10], buf[off + 11]]);
        let ty = i32::from_le_bytes([buf[off + 12], buf[off + 13], buf[off + 14], buf[off + 15]]);
        out.push((off + 16, len - 16, level, ty));
        off += (len + 7) & !7;
    }
    out
}

/// `sendmsg(fd, msg, flags)`.
pub(super) fn sendmsg(c: &mut Call<'_>) -> SysResult {
    let (fd, msg, flags) = (c.fd(0), c.args[1], c.int(2));
    let h = sock(c, fd)?;
    let m = read_msghdr(c, msg)?;
    let name = if m.name != 0 && m.namelen != 0 {
        Some(addr_in(c, m.name, m.namelen as u64, Use::Reach)?)
    } else {
        None
    };
    let mut control = Vec::new();
    if m.control != 0 && m.controllen != 0 {
        if m.controllen as usize > OPT_MAX {
            return err(libc::ENOBUFS);
        }
        control = vec![0u8; m.controllen as usize];
        c.process.mem.read_bytes(m.control, &mut control)?;
        for (off, len, level, ty) in cmsgs(&control) {
            if level == SOL_SOCKET && ty == SCM_RIGHTS {
                for i in 0..len / 4 {
                    let at = off + i * 4;
                    let g = i32::from_le_bytes([
                        control[at],
                        control[at + 1],
                        control[at + 2],
                        control[at + 3],
                    ]);
                    let host = match target(c.process, g as i64) {
                        Ok(Target::Host(hf)) => hf,
                        _ => return err(libc::EBADF),
                    };
                    control[at..at + 4].copy_from_slice(&host.to_le_bytes());
                }
            }
        }
    }
    let blocking = would_block(c, h, flags);
    let hflags = flags | MSG_NOSIGNAL | if blocking { MSG_DONTWAIT } else { 0 };
    let r = {
        let mut iov = host_iovecs(c, &m, PERM_READ)?;
        // SAFETY: an all-zero msghdr is valid; every pointer set below is live for the call.
        let mut hm: libc::msghdr = unsafe { std::mem::zeroed() };
        if let Some(n) = &name {
            hm.msg_name = n.as_ptr() as *mut libc::c_void;
            hm.msg_namelen = n.len() as u32;
        }
        hm.msg_iov = iov.as_mut_ptr();
        hm.msg_iovlen = iov.len() as _;
        if !control.is_empty() {
            hm.msg_control = control.as_mut_ptr().cast();
            hm.msg_controllen = control.len() as _;
        }
        // SAFETY: `hm` points at live buffers: the name, the control copy, and iovecs into
        // checked guest memory that the host only reads.
        retry(|| unsafe { libc::sendmsg(h, &hm, hflags) })
    };
    if blocking && r == Err(Errno(libc::EAGAIN)) {
        park(c, h, libc::POLLOUT);
        return Ok(0);
    }
    sigpipe(c, &r, flags);
    r
}

/// `recvmsg(fd, msg, flags)`.
pub(super) fn recvmsg(c: &mut Call<'_>) -> SysResult {
    let (fd, msg, flags) = (c.fd(0), c.args[1], c.int(2));
    let h = sock(c, fd)?;
    let m = read_msghdr(c, msg)?;
    let blocking = would_block(c, h, flags);
    let hflags = flags | MSG_CMSG_CLOEXEC | if blocking { MSG_DONTWAIT } else { 0 };
    let mut name = [0u8; SOCKADDR_MAX];
    let mut control = vec![0u8; (m.controllen as usize).min(OPT_MAX)];
    if m.control == 0 {
        control.clear();
    }
    let (n, namelen, controllen, mflags) = {
        let mut iov = host_iovecs(c, &m, PERM_WRITE)?;
        // SAFETY: an all-zero msghdr is valid; every pointer set below is live for the call.
        let mut hm: libc::msghdr = unsafe { std::mem::zeroed() };
        if m.name != 0 {
            hm.msg_name = name.as_mut_ptr().cast();
            hm.msg_namelen = SOCKADDR_MAX as u32;
        }
        hm.msg_iov = iov.as_mut_ptr();
        hm.msg_iovlen = iov.len() as _;
        if !control.is_empty() {
            hm.msg_control = control.as_mut_ptr().cast();
            hm.msg_controllen = control.len() as _;
        }
        // SAFETY: `hm` points at live local buffers and iovecs into checked, writable guest
        // memory.
        let r = retry(|| unsafe { libc::recvmsg(h, &mut hm, hflags) as isize });
        (r, hm.msg_namelen as usize, hm.msg_controllen as usize, hm.msg_flags)
    };
    if blocking && n == Err(Errno(libc::EAGAIN)) {
        park(c, h, libc::POLLIN);
        return Ok(0);
    }
    let n = n?;
    let control_used = controllen.min(control.len());
    let cloexec = flags & MSG_CMSG_CLOEXEC != 0;
    for (off, len, level, ty) in cmsgs(&control[..control_used]) {
        if level == SOL_SOCKET && ty == SCM_RIGHTS {
            for i in 0..len / 4 {
                let at = off + i * 4;
                let hf = i32::from_le_bytes([
                    control[at],
                    control[at + 1],
                    control[at + 2],
                    control[at + 3],
                ]);
                let g = install(c, hf, cloexec).map(|g| g as i32).unwrap_or(-1);
                control[at..at + 4].copy_from_slice(&g.to_le_bytes());
            }
        }
    }
    let mem = &c.process.mem;
    if control_used > 0 {
        mem.write_bytes(m.control, &control[..control_used])?;
    }
    mem.write_bytes(msg + 40, &(control_used as u64).to_le_bytes())?;
    mem.write_u32(msg + 48, mflags as u32).map_err(Errno::from)?;
    if m.name != 0 {
        let b = addr_from_host(c, name[..namelen.min(SOCKADDR_MAX)].to_vec());
        let k = b.len().min(m.namelen as usize);
        mem.write_bytes(m.name, &b[..k])?;
        mem.write_u32(msg + 8, b.len() as u32).map_err(Errno::from)?;
    }
    Ok(n)
}
