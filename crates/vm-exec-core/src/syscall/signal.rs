//! Signals: `rt_sigaction`, `rt_sigprocmask`, `rt_sigpending`, `sigaltstack`, `kill`,
//! `tkill`, `tgkill`, `rt_sigqueueinfo`, `rt_tgsigqueueinfo`, `rt_sigreturn`,
//! `rt_sigsuspend`, `rt_sigtimedwait`.
//!
//! Dispositions are kept in `Process::sigactions[signo]` as `[handler, flags, 0, mask]`
//! (riscv64's `struct sigaction`: `sa_handler` 0, `sa_flags` 8, `sa_mask` 16; 24 bytes,
//! `sigsetsize` must be 8). Sending posts the signal ([`crate::signals`]); it is delivered at
//! the end of the system call (a signal a thread sends itself runs its handler before the
//! call returns to the code after the `ecall`, as on Linux) or at the target's next delivery
//! point. `kill` reaches every process of the sandbox (a pid, 0 for the caller's group, -1
//! for all, `-pgid`); `tkill`/`tgkill` any thread of the caller's process, or the main
//! thread of another process of the sandbox.
//!
//! `rt_sigtimedwait` takes a pending signal of its set, or parks the thread (no vCPU held)
//! with the set unblocked until one arrives (the call is then made again and takes it), the
//! timeout passes (`EAGAIN`), or another signal it does not block arrives (`EINTR`, its
//! handler runs; never restarted, as on Linux).
//!
//! `signalfd4` makes (or, given an existing one, changes the mask of) a signalfd: a host pipe
//! whose read end is the guest's descriptor, readable exactly while a signal of its mask is
//! pending ([`signals::SignalFd`]), so it works in `poll`, `select` and `epoll` like any host
//! descriptor. `read` returns `signalfd_siginfo` records (128 bytes each) and consumes the
//! signals; with nothing pending it parks (or is `EAGAIN` under `SFD_NONBLOCK`). Known
//! differences from Linux: a read also takes a signal pending for another thread of the
//! process (Linux reports only the reader's and the process's); `readv` of a signalfd is
//! `EINVAL`. A forked child's copy of a signalfd reports the child's signals, as on Linux,
//! through a pipe of its own ([`signals::fork_signalfds`]); its file status flags are then
//! no longer shared with the parent's copy.

use super::event::Deadline;
use super::{err, read_timespec, read_u64, state, Call, Errno, SysResult};
use crate::exec::StopReason;
use crate::process::Process;
use crate::signals::{self, bit, SigInfo, NSIG, SI_QUEUE, SI_TKILL, SI_USER, UNBLOCKABLE};
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// Sends signal `sig` (1..=64) to the calling thread (a broken pipe's `SIGPIPE`, `raise`).
pub(super) fn raise(c: &mut Call<'_>, sig: i32) {
    if !(1..=NSIG).contains(&sig) {
        return;
    }
    let info = SigInfo::from_sender(sig, SI_TKILL, c.process.pid);
    signals::post_thread(c.process, c.thread.tid, info);
}

fn check_sig(sig: i32) -> Result<(), Errno> {
    if (0..=NSIG).contains(&sig) {
        Ok(())
    } else {
        err(libc::EINVAL)
    }
}

/// Sends `info` (signal 0: only checks) to process `p`.
fn to_process(c: &mut Call<'_>, p: &Process, info: SigInfo) {
    if info.signo == 0 {
        return;
    }
    if std::ptr::eq(p, c.process) {
        // To itself: the calling thread takes it unless it blocks it.
        if c.thread.signal_mask & bit(info.signo) == 0 && !signals::ignored(p, info.signo) {
            signals::post_thread(p, c.thread.tid, info);
            return;
        }
    }
    signals::post_process(p, info);
}

/// `kill(pid, sig)`.
pub(super) fn kill(c: &mut Call<'_>) -> SysResult {
    let (pid, sig) = (c.int(0), c.int(1));
    check_sig(sig)?;
    let info = SigInfo::from_sender(sig, SI_USER, c.process.pid);
    send(c, pid, info)
}

/// Sends `info` to the processes `pid` names (as `kill`).
fn send(c: &mut Call<'_>, pid: i32, info: SigInfo) -> SysResult {
    let sb = c.process.sandbox.clone();
    let targets: Vec<Arc<Process>> = match pid {
        p if p > 0 => {
            if p == c.process.pid {
                to_process(c, c.process, info);
                return Ok(0);
            }
            sb.process(p).into_iter().collect()
        }
        0 => sb.members(Some(sb.pgid(c.process.pid).unwrap_or(c.process.pid))),
        -1 => sb.members(None),
        i32::MIN => return err(libc::ESRCH),
        g => sb.members(Some(-g)),
    };
    let mut me = false;
    let mut any = false;
    for t in &targets {
        any = true;
        if t.pid == c.process.pid {
            me = true;
            continue;
        }
        to_process(c, t, info);
    }
    if pid <= 0 && !any && sb.process(c.process.pid).is_none() {
        // Not in the table (a process run without a scheduler): only itself.
        me = pid == 0 || pid == -1;
        any = me;
    }
    if me {
        to_process(c, c.process, info);
    }
    if any {
        Ok(0)
    } else {
        err(libc::ESRCH)
    }
}

/// Sends `info` to thread `tid` (of process `tgid` when given).
fn to_thread(c: &mut Call<'_>, tgid: Option<i32>, tid: i32, info: SigInfo) -> SysResult {
    if tid <= 0 || tgid.is_some_and(|g| g <= 0) {
        return err(libc::EINVAL);
    }
    if tgid.is_none_or(|g| g == c.process.pid) && c.process.sig().threads.contains_key(&tid) {
        if info.signo != 0 {
            signals::post_thread(c.process, tid, info);
        }
        return Ok(0);
    }
    // Another process's thread: its main thread (ids are unique in the sandbox).
    let owner = tgid.unwrap_or(tid);
    match c.process.sandbox.process(owner) {
        Some(p) if p.sig().threads.contains_key(&tid) => {
            if info.signo != 0 && !signals::post_thread(&p, tid, info) {
                return err(libc::ESRCH);
            }
            Ok(0)
        }
        _ => err(libc::ESRCH),
    }
}

/// `tkill(tid, sig)`.
pub(super) fn tkill(c: &mut Call<'_>) -> SysResult {
    let (tid, sig) = (c.int(0), c.int(1));
    check_sig(sig)?;
    let info = SigInfo::from_sender(sig, SI_TKILL, c.process.pid);
    to_thread(c, None, tid, info)
}

/// `tgkill(tgid, tid, sig)`.
pub(super) fn tgkill(c: &mut Call<'_>) -> SysResult {
    let (tgid, tid, sig) = (c.int(0), c.int(1), c.int(2));
    check_sig(sig)?;
    let info = SigInfo::from_sender(sig, SI_TKILL, c.process.pid);
    to_thread(c, Some(tgid), tid, info)
}

/// Reads a `siginfo_t` for `rt_sigqueueinfo` (a sender may not pretend to be the kernel).
fn queued_info(c: &Call<'_>, sig: i32, addr: u64) -> Result<SigInfo, Errno> {
    let mut b = [0u8; 128];
    c.process.mem.read_bytes(addr, &mut b)?;
    let code = i32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if code >= 0 || code == SI_TKILL {
        return err(libc::EPERM);
    }
    let mut info = SigInfo::from_sender(sig, code, c.process.pid);
    info.status = i32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    if code != SI_QUEUE {
        info.code = code;
    }
    Ok(info)
}

/// `rt_sigqueueinfo(pid, sig, info)`.
pub(super) fn rt_sigqueueinfo(c: &mut Call<'_>) -> SysResult {
    let (pid, sig) = (c.int(0), c.int(1));
    check_sig(sig)?;
    let info = queued_info(c, sig, c.args[2])?;
    if pid <= 0 {
        return err(libc::ESRCH);
    }
    send(c, pid, info)
}

/// `rt_tgsigqueueinfo(tgid, tid, sig, info)`.
pub(super) fn rt_tgsigqueueinfo(c: &mut Call<'_>) -> SysResult {
    let (tgid, tid, sig) = (c.int(0), c.int(1), c.int(2));
    check_sig(sig)?;
    let info = queued_info(c, sig, c.args[3])?;
    to_thread(c, Some(tgid), tid, info)
}

/// `rt_sigaction(signum, act, oldact, sigsetsize)`.
pub(super) fn rt_sigaction(c: &mut Call<'_>) -> SysResult {
    let (sig, act, oldact, setsize) = (c.int(0), c.args[1], c.args[2], c.args[3]);
    if setsize != 8 || !(1..=NSIG).contains(&sig) || (act != 0 && bit(sig) & UNBLOCKABLE != 0) {
        return err(libc::EINVAL);
    }
    let new = if act != 0 {
        let mem = &c.process.mem;
        let handler = read_u64(mem, act)?;
        let flags = read_u64(mem, act + 8)?;
        let mask = read_u64(mem, act + 16)? & !UNBLOCKABLE;
        Some([handler, flags, 0, mask])
    } else {
        None
    };
    let mut table = c.process.sigactions();
    let Some(slot) = table.get_mut(sig as usize) else {
        return err(libc::EINVAL);
    };
    let old = *slot;
    if let Some(n) = new {
        *slot = n;
        drop(table);
        // A pending signal whose new disposition ignores it is discarded.
        if signals::ignored(c.process, sig) {
            let mut s = c.process.sig();
            s.pending &= !bit(sig);
            s.infos.retain(|i| i.signo != sig);
            for t in s.threads.values_mut() {
                t.pending &= !bit(sig);
                t.infos.retain(|i| i.signo != sig);
            }
        }
    }
    if oldact != 0 {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&old[0].to_le_bytes());
        b[8..16].copy_from_slice(&old[1].to_le_bytes());
        b[16..].copy_from_slice(&old[3].to_le_bytes());
        c.process.mem.write_bytes(oldact, &b)?;
    }
    Ok(0)
}

const SIG_BLOCK: i32 = 0;
const SIG_UNBLOCK: i32 = 1;
const SIG_SETMASK: i32 = 2;

/// `rt_sigprocmask(how, set, oldset, sigsetsize)`; a pending signal it unblocks is
/// delivered when the call returns.
pub(super) fn rt_sigprocmask(c: &mut Call<'_>) -> SysResult {
    let (how, set, oldset, setsize) = (c.int(0), c.args[1], c.args[2], c.args[3]);
    if setsize != 8 {
        return err(libc::EINVAL);
    }
    let old = c.thread.signal_mask;
    let new = if set != 0 {
        let s = read_u64(&c.process.mem, set)? & !UNBLOCKABLE;
        Some(match how {
            SIG_BLOCK => old | s,
            SIG_UNBLOCK => old & !s,
            SIG_SETMASK => s,
            _ => return err(libc::EINVAL),
        })
    } else {
        None
    };
    if oldset != 0 {
        c.process.mem.write_bytes(oldset, &old.to_le_bytes())?;
    }
    if let Some(n) = new {
        signals::set_mask(c.process, c.thread, n);
    }
    Ok(0)
}

/// `rt_sigpending(set, sigsetsize)`: the signals sent while blocked and not yet delivered.
pub(super) fn rt_sigpending(c: &mut Call<'_>) -> SysResult {
    let (set, setsize) = (c.args[0], c.args[1]);
    if setsize > 8 {
        return err(libc::EINVAL);
    }
    let pending = {
        let s = c.process.sig();
        s.pending | s.threads.get(&c.thread.tid).map_or(0, |t| t.pending)
    } & c.thread.signal_mask;
    c.process.mem.write_bytes(set, &pending.to_le_bytes()[..setsize as usize])?;
    Ok(0)
}

/// `rt_sigreturn()`: returns from a handler (see [`signals::sigreturn`]).
pub(super) fn rt_sigreturn(c: &mut Call<'_>) -> SysResult {
    match signals::sigreturn(c.process, c.thread) {
        Ok(a0) => Ok(a0),
        Err(stop) => {
            c.stop = Some(stop);
            Ok(0)
        }
    }
}

/// Parks the caller until a signal interrupts it (`rt_sigsuspend`, `pause`); returns
/// `EINTR` once a handler ran. Without a scheduler the wait cannot end, so it is `EINTR`
/// at once.
fn wait_for_signal(c: &mut Call<'_>) -> SysResult {
    if !c.process.is_scheduled() {
        return err(libc::EINTR);
    }
    let w = c.process.futexes.pause();
    c.stop = Some(crate::exec::StopReason::Blocked(w));
    Ok((-(libc::EINTR as i64)) as u64)
}

/// `rt_sigsuspend(mask, sigsetsize)`: waits for a signal with `mask` blocked meanwhile; the
/// old mask comes back when the handler returns.
pub(super) fn rt_sigsuspend(c: &mut Call<'_>) -> SysResult {
    if c.args[1] != 8 {
        return err(libc::EINVAL);
    }
    let mask = read_u64(&c.process.mem, c.args[0])?;
    let old = c.thread.signal_mask;
    {
        let mut s = c.process.sig();
        s.threads.entry(c.thread.tid).or_default().saved_mask = Some(old);
    }
    signals::set_mask(c.process, c.thread, mask);
    wait_for_signal(c)
}

/// `rt_sigtimedwait(set, info, timeout, sigsetsize)`: takes a pending signal of `set`
/// without running its handler, waiting for one (see the module docs) up to `timeout`
/// (NULL: forever); `EAGAIN` when the timeout passes.
pub(super) fn rt_sigtimedwait(c: &mut Call<'_>) -> SysResult {
    if c.args[3] != 8 {
        return err(libc::EINVAL);
    }
    let set = read_u64(&c.process.mem, c.args[0])? & !UNBLOCKABLE;
    let timeout = match c.args[2] {
        0 => None,
        a => {
            let (s, ns) = read_timespec(&c.process.mem, a)?;
            Some(Duration::new(s as u64, ns as u32))
        }
    };
    loop {
        if let Some(info) = signals::take_from_set(c.process, c.thread, set, false) {
            if c.args[1] != 0 {
                c.process.mem.write_bytes(c.args[1], &info.to_bytes())?;
            }
            return Ok(info.signo as u64);
        }
        let deadline = Deadline::of(c, timeout);
        if deadline.expired() {
            return err(libc::EAGAIN);
        }
        if !c.process.is_scheduled() {
            // No other thread can send it; only the time can pass.
            match deadline.left() {
                Some(d) => {
                    std::thread::sleep(d);
                    c.resume = Some(std::time::Instant::now());
                    continue;
                }
                None => return err(libc::EINTR),
            }
        }
        let at = match deadline {
            Deadline::At(at) => Some(at),
            _ => None,
        };
        let w = c.process.futexes.ready(Vec::new(), at, c.args[0]);
        signals::begin_sigwait(c.process, c.thread, set);
        c.stop = Some(StopReason::Blocked(w));
        return Ok(0);
    }
}

const SFD_CLOEXEC: u64 = 0o2000000;
const SFD_NONBLOCK: u64 = 0o4000;
/// Most signalfds one process keeps registered (closed ones are dropped first).
const MAX_SIGNALFDS: usize = 256;

/// The id of the signalfd host descriptor `h` reads, if it is one of this process's.
pub(super) fn signalfd_of(p: &Process, h: RawFd) -> Option<(u64, u64)> {
    if !p.may_have_signalfds() {
        return None;
    }
    let id = signals::file_id(h).ok()?;
    p.sig().signalfds.iter().any(|f| f.id == id).then_some(id)
}

/// `signalfd4(fd, mask, sizemask, flags)`.
pub(super) fn signalfd4(c: &mut Call<'_>) -> SysResult {
    let (fd, mask_addr, size, flags) = (c.int(0), c.args[1], c.args[2], c.args[3] as u32 as u64);
    if flags & !(SFD_CLOEXEC | SFD_NONBLOCK) != 0 || size != 8 {
        return err(libc::EINVAL);
    }
    let mask = read_u64(&c.process.mem, mask_addr)? & !UNBLOCKABLE;
    if fd != -1 {
        let h = match super::fs::target(c.process, fd as i64)? {
            super::fs::Target::Host(h) => h,
            _ => return err(libc::EINVAL),
        };
        let id = signalfd_of(c.process, h).ok_or(Errno(libc::EINVAL))?;
        let mut s = c.process.sig();
        if let Some(f) = s.signalfds.iter_mut().find(|f| f.id == id) {
            f.mask = mask;
        }
        signals::sync_signalfds(&mut s);
        return Ok(fd as u64);
    }
    let (guest, host) = signals::SignalFd::create(mask, flags & SFD_NONBLOCK != 0)?;
    let full = c.process.sig().signalfds.len() >= MAX_SIGNALFDS;
    if full {
        // Drop the signalfds the guest closed.
        let open: Vec<(u64, u64)> = c
            .process
            .files()
            .host_fds()
            .into_iter()
            .filter_map(|h| signals::file_id(h).ok())
            .collect();
        let mut s = c.process.sig();
        s.signalfds.retain(|f| open.contains(&f.id));
        if s.signalfds.len() >= MAX_SIGNALFDS {
            return err(libc::EMFILE);
        }
    }
    let n = super::event::install(c, guest.into_raw_fd(), flags & SFD_CLOEXEC != 0)?;
    c.process.note_signalfd();
    let mut s = c.process.sig();
    s.signalfds.push(host);
    signals::sync_signalfds(&mut s);
    Ok(n)
}

/// A `signalfd_siginfo` record (128 bytes) for `info`.
fn signalfd_record(info: &SigInfo) -> [u8; 128] {
    let mut b = [0u8; 128];
    b[0..4].copy_from_slice(&(info.signo as u32).to_le_bytes());
    b[8..12].copy_from_slice(&info.code.to_le_bytes());
    if info.is_fault {
        b[72..80].copy_from_slice(&info.addr.to_le_bytes());
        return b;
    }
    b[12..16].copy_from_slice(&(info.pid as u32).to_le_bytes());
    b[16..20].copy_from_slice(&info.uid.to_le_bytes());
    const SIGCHLD: i32 = 17;
    const SI_TIMER: i32 = -2;
    if info.signo == SIGCHLD && info.code > 0 {
        b[40..44].copy_from_slice(&info.status.to_le_bytes());
    } else if info.code < 0 && info.code != SI_TKILL && info.code != SI_TIMER {
        // A queued signal: its value, as `int` and as pointer.
        b[44..48].copy_from_slice(&info.status.to_le_bytes());
        b[48..56].copy_from_slice(&(info.status as u32 as u64).to_le_bytes());
    }
    b
}

/// `read` of signalfd `h` (whose id is `id`): as many records as fit and are pending; with
/// none, `EAGAIN` when non-blocking, else the thread parks until one is.
pub(super) fn signalfd_read(c: &mut Call<'_>, h: RawFd, id: (u64, u64)) -> SysResult {
    let (buf, len) = (c.args[1], c.args[2]);
    if len < 128 {
        return err(libc::EINVAL);
    }
    loop {
        let Some(mask) = c.process.sig().signalfds.iter().find(|f| f.id == id).map(|f| f.mask)
        else {
            return err(libc::EINVAL);
        };
        let mut n = 0u64;
        while n + 128 <= len {
            let Some(info) = signals::take_from_set(c.process, c.thread, mask, true) else {
                break;
            };
            if let Err(e) = c.process.mem.write_bytes(buf + n, &signalfd_record(&info)) {
                return if n == 0 { Err(e.into()) } else { Ok(n) };
            }
            n += 128;
        }
        if n > 0 {
            return Ok(n);
        }
        if super::fs::is_nonblocking(h) {
            return err(libc::EAGAIN);
        }
        if c.process.is_scheduled() {
            c.stop = Some(StopReason::Blocked(c.process.futexes.readable(h, c.args[0])));
            return Ok(0);
        }
        let mut p = libc::pollfd { fd: h, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; blocks until the level byte is there (as Linux blocks).
        unsafe { libc::poll(&mut p, 1, -1) };
    }
}

const SS_ONSTACK: u64 = 1;
const SS_DISABLE: u64 = 2;
const SS_AUTODISARM: u64 = 1 << 31;
/// riscv64's `MINSIGSTKSZ`.
const MINSIGSTKSZ: u64 = 2048;

/// `sigaltstack(ss, old_ss)`: recorded per thread (`stack_t`: `ss_sp` 0, `ss_flags` 8,
/// `ss_size` 16), never used since handlers are not run.
pub(super) fn sigaltstack(c: &mut Call<'_>) -> SysResult {
    let (ss, old_ss) = (c.args[0], c.args[1]);
    let tid = c.thread.tid;
    let cur = state::peek(c.process, |s| s.altstacks.iter().find(|e| e.0 == tid).map(|e| e.1))
        .unwrap_or([0, SS_DISABLE, 0]);
    let new = if ss != 0 {
        let mem = &c.process.mem;
        let sp = read_u64(mem, ss)?;
        let flags = read_u64(mem, ss + 8)? as u32 as u64;
        let size = read_u64(mem, ss + 16)?;
        let mode = flags & !SS_AUTODISARM;
        if mode != 0 && mode != SS_DISABLE && mode != SS_ONSTACK {
            return err(libc::EINVAL);
        }
        if mode == SS_DISABLE {
            Some([0, SS_DISABLE, 0])
        } else {
            if size < MINSIGSTKSZ {
                return err(libc::ENOMEM);
            }
            Some([sp, flags & SS_AUTODISARM, size])
        }
    } else {
        None
    };
    if old_ss != 0 {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&cur[0].to_le_bytes());
        b[8..12].copy_from_slice(&(cur[1] as u32).to_le_bytes());
        b[16..].copy_from_slice(&cur[2].to_le_bytes());
        c.process.mem.write_bytes(old_ss, &b)?;
    }
    if let Some(n) = new {
        state::with(c.process, |s| match s.altstacks.iter_mut().find(|e| e.0 == tid) {
            Some(e) => e.1 = n,
            None => s.altstacks.push((tid, n)),
        });
    }
    Ok(0)
}
