//! Processes: `fork` (from `clone`/`clone3` without `CLONE_VM`, and `vfork`), `execve`,
//! `execveat`, `wait4`, `waitid`, process groups and sessions (`setpgid`, `getpgid`,
//! `getsid`, `setsid`), `getgroups`.
//!
//! A forked process is a new [`Process`] of the same [`crate::sandbox::Sandbox`]: a copy of
//! the parent's memory ([`crate::memory::AddressSpace::duplicate`]) and descriptors, handed
//! to the scheduler as [`StopReason::Forked`]. `execve` loads the new image into a fresh
//! process that takes over the pid, the descriptors (without the close-on-exec ones) and the
//! ABI state ([`Process::inherit_from`]), handed over as [`StopReason::Exec`]. Both need
//! a scheduler (`vmx run`, `vmx batch`, the worker); without one they fail with `EAGAIN`
//! (fork) or `ENOSYS` (exec), logged once.
//!
//! `execve` resolves the program like `openat` (inside the sandbox's grants) and, as Linux:
//! a directory or a file without execute permission is `EACCES`, a file that is neither a
//! RISC-V ELF nor a `#!` script is `ENOEXEC` (a host x86-64 binary included), a script's
//! interpreter is resolved the same way (at most 4 levels, else `ELOOP`).
//!
//! `vfork` (and `CLONE_VFORK`) is a fork whose child runs on a copy: the parent is not
//! suspended until the child execs, and the child's writes to memory are not seen by the
//! parent (programs that follow the `vfork` contract cannot tell, except by ordering).

use super::path::{read_path, resolve, AT_EMPTY_PATH, AT_FDCWD};
use super::{err, first_time, read_u64, Call, Errno, SysResult};
use crate::cpu::{reg, GuestThread};
use crate::exec::NewProcess;
use crate::exec::StopReason;
use crate::process::{Process, ProcessConfig};
use crate::sandbox::{WaitFound, WaitTarget, CHILD_KEY};
use crate::signals;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

const CLONE_SETTLS: u64 = 0x80000;
const CLONE_PARENT_SETTID: u64 = 0x100000;
const CLONE_CHILD_CLEARTID: u64 = 0x200000;
const CLONE_CHILD_SETTID: u64 = 0x1000000;

/// The clone arguments a fork uses.
pub(super) struct ForkArgs {
    pub flags: u64,
    pub stack: u64,
    pub parent_tid: u64,
    pub child_tid: u64,
    pub tls: u64,
}

/// Forks the calling process (see the module docs); returns the child's pid.
pub(super) fn fork(c: &mut Call<'_>, a: ForkArgs) -> SysResult {
    let p = c.process;
    if !p.is_scheduled() {
        if first_time("fork-unscheduled") {
            tracing::warn!("fork: guest processes need a scheduler (vmx run); returning -EAGAIN");
        }
        return err(libc::EAGAIN);
    }
    if !p.sandbox.can_fork() || !p.sandbox.reserve_thread() {
        return err(libc::EAGAIN);
    }
    let pid = p.sandbox.allocate_id();
    let child = match p.fork(pid) {
        Ok(child) => child,
        Err(e) => {
            p.sandbox.release_thread();
            tracing::debug!(error = %e, "fork failed");
            return err(libc::ENOMEM);
        }
    };
    let mut t = GuestThread {
        cpu: c.thread.cpu.clone(),
        tid: pid,
        clear_child_tid: 0,
        signal_mask: c.thread.signal_mask,
        resume_deadline: None,
        resume_partial: 0,
    };
    t.cpu.x[reg::A0] = 0;
    t.cpu.reservation = None;
    // The child's thread keeps the caller's blocked mask; senders must see it from the start
    // (a signal the child sends itself before changing its mask stays pending).
    crate::signals::set_mask(&child, &mut t, c.thread.signal_mask);
    if a.stack != 0 {
        t.cpu.x[reg::SP] = a.stack;
    }
    if a.flags & CLONE_SETTLS != 0 {
        t.cpu.x[reg::TP] = a.tls;
    }
    if a.flags & CLONE_PARENT_SETTID != 0 {
        if let Err(e) = p.mem.write_u32(a.parent_tid, pid as u32) {
            p.sandbox.release_thread();
            return Err(e.into());
        }
        let _ = child.mem.write_u32(a.parent_tid, pid as u32);
    }
    if a.flags & CLONE_CHILD_SETTID != 0 {
        let _ = child.mem.write_u32(a.child_tid, pid as u32);
    }
    if a.flags & CLONE_CHILD_CLEARTID != 0 {
        t.clear_child_tid = a.child_tid;
    }
    let child = Arc::new(child);
    p.sandbox.register_child(p.pid, &child);
    c.stop = Some(StopReason::Forked(Box::new(NewProcess { process: child, thread: t })));
    Ok(pid as u64)
}

/// Longest `argv` plus `envp`, in bytes (Linux's `ARG_MAX` default with an 8 MiB stack).
const MAX_ARGS_BYTES: usize = 2 << 20;
/// Most `#!` levels (Linux allows 4 interpreters in a row).
const MAX_SCRIPT_DEPTH: usize = 4;
/// Largest program file `execve` reads.
const MAX_PROGRAM_SIZE: u64 = 256 << 20;

/// Reads a NULL-terminated array of string pointers.
fn read_strings(p: &Process, mut addr: u64, total: &mut usize) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    if addr == 0 {
        return Ok(out);
    }
    loop {
        let ptr = read_u64(&p.mem, addr)?;
        if ptr == 0 {
            return Ok(out);
        }
        let s = super::read_cstr(&p.mem, ptr, MAX_ARGS_BYTES)?;
        *total += s.len() + 1 + 8;
        if *total > MAX_ARGS_BYTES {
            return err(libc::E2BIG);
        }
        out.push(s);
        addr = addr.checked_add(8).ok_or(Errno(libc::EFAULT))?;
    }
}

/// `execve(path, argv, envp)`.
pub(super) fn execve(c: &mut Call<'_>) -> SysResult {
    let raw = read_path(c.process, c.args[0])?;
    exec_common(c, AT_FDCWD, raw, c.args[1], c.args[2], 0)
}

/// `execveat(dirfd, path, argv, envp, flags)`.
pub(super) fn execveat(c: &mut Call<'_>) -> SysResult {
    const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
    let flags = c.args[4];
    if flags & !(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 {
        return err(libc::EINVAL);
    }
    let raw = read_path(c.process, c.args[1])?;
    if raw.is_empty() && flags & AT_EMPTY_PATH != 0 {
        // The program is the descriptor itself.
        let h = match super::fs::target(c.process, c.fd(0))? {
            super::fs::Target::Host(h) => h,
            _ => return err(libc::EACCES),
        };
        let link = std::fs::read_link(format!("/proc/self/fd/{h}")).map_err(Errno::from)?;
        let bytes = link.as_os_str().as_bytes().to_vec();
        return exec_common(c, AT_FDCWD, bytes, c.args[2], c.args[3], flags);
    }
    exec_common(c, c.int(0), raw, c.args[2], c.args[3], flags)
}

/// A program found for `execve`: its host path and bytes.
fn find_program(p: &Process, dirfd: i32, raw: &[u8], follow: bool) -> Result<PathBuf, Errno> {
    let raw = if super::path::names_own_exe(p, raw) {
        // Its own program (busybox re-runs itself this way), resolved like any path.
        p.config.exe_path.as_os_str().as_bytes().to_vec()
    } else {
        raw.to_vec()
    };
    let r = resolve(p, dirfd, &raw, follow, false)?;
    if !r.exists {
        return err(libc::ENOENT);
    }
    let meta = std::fs::metadata(&r.path).map_err(Errno::from)?;
    if meta.is_dir() || !meta.is_file() {
        return err(libc::EACCES);
    }
    let cpath = r.cstr()?;
    // SAFETY: `cpath` is a NUL-terminated path; access only reads it.
    if unsafe { libc::access(cpath.as_ptr(), libc::X_OK) } != 0 {
        return Err(Errno::last());
    }
    if meta.len() > MAX_PROGRAM_SIZE {
        return err(libc::ENOMEM);
    }
    Ok(r.path)
}

fn exec_common(
    c: &mut Call<'_>,
    dirfd: i32,
    raw: Vec<u8>,
    argv: u64,
    envp: u64,
    flags: u64,
) -> SysResult {
    let p = c.process;
    let mut total = 0;
    let mut args = read_strings(p, argv, &mut total)?;
    let env = read_strings(p, envp, &mut total)?;
    let follow = flags & 0x100 == 0;
    let mut path = find_program(p, dirfd, &raw, follow)?;
    let mut shown = raw.clone();
    let mut depth = 0;
    let program = loop {
        let bytes = std::fs::read(&path).map_err(Errno::from)?;
        if bytes.starts_with(b"#!") {
            depth += 1;
            if depth > MAX_SCRIPT_DEPTH {
                return err(libc::ELOOP);
            }
            let line_end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
            let line = &bytes[2..line_end.min(256)];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let trimmed: Vec<u8> =
                line.iter().copied().skip_while(|b| *b == b' ' || *b == b'\t').collect();
            let split = trimmed.iter().position(|b| *b == b' ' || *b == b'\t');
            let (interp, arg) = match split {
                Some(i) => {
                    let rest: Vec<u8> = trimmed[i..]
                        .iter()
                        .copied()
                        .skip_while(|b| *b == b' ' || *b == b'\t')
                        .collect();
                    let rest = rest.trim_ascii_end().to_vec();
                    (trimmed[..i].to_vec(), (!rest.is_empty()).then_some(rest))
                }
                None => (trimmed.clone(), None),
            };
            if interp.is_empty() {
                return err(libc::ENOEXEC);
            }
            let mut new_args = vec![interp.clone()];
            new_args.extend(arg);
            new_args.push(shown.clone());
            new_args.extend(args.into_iter().skip(1));
            args = new_args;
            path = find_program(p, AT_FDCWD, &interp, true)?;
            shown = interp;
            continue;
        }
        if !bytes.starts_with(b"\x7fELF") {
            return err(libc::ENOEXEC);
        }
        break p.sandbox.program(&path, bytes).map_err(|_| Errno(libc::ENOEXEC))?;
    };
    if !p.is_scheduled() {
        if first_time("exec-unscheduled") {
            tracing::warn!("execve needs a scheduler (vmx run); returning -ENOSYS");
        }
        return err(libc::ENOSYS);
    }
    let config = ProcessConfig { args, env, exe_path: path, ..(*p.config).clone() };
    let (fresh, mut thread) =
        crate::loader::load(program, Arc::new(config), p.pid).map_err(|e| {
            tracing::debug!(error = %e, "execve: load failed");
            Errno(libc::ENOEXEC)
        })?;
    thread.tid = p.pid;
    thread.signal_mask = c.thread.signal_mask;
    let fresh = Arc::new(fresh.inherit_from(p));
    p.sandbox.replace(&fresh);
    // Pending signals survive execve (a SIGTERM sent between fork and exec still kills the
    // new image), and so does a fatal signal already sent to the old image (its default
    // action was taken at once, by marking the process). Merged under the old image's signal
    // lock, which also records the successor: a sender that found the old image before the
    // swap and posts after this point forwards to the new one, so no signal is lost.
    let fatal = {
        let mut old = p.sig();
        old.exec_successor =
            Some(signals::ExecSuccessor { process: Arc::downgrade(&fresh), tid: c.thread.tid });
        let mut new = fresh.sig();
        new.pending |= std::mem::take(&mut old.pending);
        new.infos.append(&mut old.infos);
        if let Some(t) = old.threads.get_mut(&c.thread.tid) {
            let nt = new.threads.entry(fresh.pid).or_default();
            nt.pending |= std::mem::take(&mut t.pending);
            nt.infos.append(&mut t.infos);
        }
        // Signalfds stay open across execve (unless close-on-exec) and keep reporting.
        new.signalfds = std::mem::take(&mut old.signalfds);
        if !new.signalfds.is_empty() {
            fresh.note_signalfd();
        }
        signals::sync_signalfds(&mut new);
        if new.pending != 0 || new.threads.values().any(|t| t.pending != 0) {
            fresh.signal_hint();
        }
        p.fatal_signal()
    };
    if let Some(sig) = fatal {
        fresh.kill_with(sig);
    }
    c.stop = Some(StopReason::Exec(Box::new(NewProcess { process: fresh, thread })));
    Ok(0)
}

const WNOHANG: u64 = 1;
const WUNTRACED: u64 = 2;
const WEXITED: u64 = 4;
const WCONTINUED: u64 = 8;
const WNOWAIT: u64 = 0x0100_0000;
const WNOTHREAD: u64 = 0x2000_0000;
const WALL: u64 = 0x4000_0000;
const WCLONE: u64 = 0x8000_0000;

/// Finds (and reaps unless `keep`) a child for a wait, or parks the caller. `Ok(None)`:
/// nothing yet with `WNOHANG`, or the caller was parked (the call restarts when a child
/// changes).
fn wait_for(
    c: &mut Call<'_>,
    target: WaitTarget,
    nohang: bool,
    keep: bool,
) -> Result<Option<(i32, i32)>, Errno> {
    let p = c.process;
    let restart_a0 = c.args[0];
    let slot = std::cell::RefCell::new(None);
    let park = || *slot.borrow_mut() = Some(p.futexes.wait_event(CHILD_KEY, restart_a0));
    let then: &dyn Fn() = &park;
    let found =
        p.sandbox.find_child(p.pid, target, keep, (!nohang && p.is_scheduled()).then_some(then));
    let waiter = slot.into_inner();
    match found {
        WaitFound::Zombie(pid, st) => Ok(Some((pid, st))),
        WaitFound::NoChild => err(libc::ECHILD),
        WaitFound::Running if nohang => Ok(None),
        WaitFound::Running => match waiter {
            Some(w) => {
                c.stop = Some(StopReason::Blocked(w));
                Ok(None)
            }
            // Unscheduled: no child can run, so none will ever end.
            None => err(libc::ECHILD),
        },
    }
}

/// `wait4(pid, wstatus, options, rusage)`.
pub(super) fn wait4(c: &mut Call<'_>) -> SysResult {
    let (pid, status_addr, options, rusage) = (c.int(0), c.args[1], c.args[2], c.args[3]);
    if options & !(WNOHANG | WUNTRACED | WCONTINUED | WNOTHREAD | WALL | WCLONE) != 0 {
        return err(libc::EINVAL);
    }
    let target = match pid {
        -1 => WaitTarget::Any,
        0 => WaitTarget::Group(c.process.sandbox.pgid(c.process.pid).unwrap_or(c.process.pid)),
        i32::MIN => return err(libc::ESRCH),
        p if p < 0 => WaitTarget::Group(-p),
        p => WaitTarget::Pid(p),
    };
    match wait_for(c, target, options & WNOHANG != 0, false)? {
        None => Ok(0),
        Some((child, st)) => {
            if status_addr != 0 {
                c.process.mem.write_u32(status_addr, st as u32)?;
            }
            if rusage != 0 {
                c.process.mem.write_bytes(rusage, &[0u8; 144])?;
            }
            Ok(child as u64)
        }
    }
}

/// `waitid(idtype, id, infop, options, rusage)`.
pub(super) fn waitid(c: &mut Call<'_>) -> SysResult {
    const P_ALL: i32 = 0;
    const P_PID: i32 = 1;
    const P_PGID: i32 = 2;
    let (idtype, id, infop, options, rusage) =
        (c.int(0), c.int(1), c.args[2], c.args[3], c.args[4]);
    if options & !(WNOHANG | WUNTRACED | WEXITED | WCONTINUED | WNOWAIT | WNOTHREAD | WALL | WCLONE)
        != 0
        || options & (WEXITED | WUNTRACED | WCONTINUED) == 0
    {
        return err(libc::EINVAL);
    }
    let target = match idtype {
        P_ALL => WaitTarget::Any,
        P_PID if id > 0 => WaitTarget::Pid(id),
        P_PGID if id == 0 => {
            WaitTarget::Group(c.process.sandbox.pgid(c.process.pid).unwrap_or(c.process.pid))
        }
        P_PGID if id > 0 => WaitTarget::Group(id),
        _ => return err(libc::EINVAL),
    };
    if options & WEXITED == 0 {
        // Only stops and continues asked for: none ever happens here.
        if options & WNOHANG != 0 {
            if infop != 0 {
                c.process.mem.write_bytes(infop, &[0u8; 128])?;
            }
            return Ok(0);
        }
        return err(libc::ECHILD);
    }
    let found = wait_for(c, target, options & WNOHANG != 0, options & WNOWAIT != 0)?;
    let mut info = [0u8; 128];
    if let Some((pid, st)) = found {
        // siginfo_t: si_signo, si_errno, si_code, then si_pid, si_uid, si_status.
        const CLD_EXITED: i32 = 1;
        const CLD_KILLED: i32 = 2;
        const CLD_DUMPED: i32 = 3;
        let (code, value) = if st & 0x7f == 0 {
            (CLD_EXITED, (st >> 8) & 0xff)
        } else if st & 0x80 != 0 {
            (CLD_DUMPED, st & 0x7f)
        } else {
            (CLD_KILLED, st & 0x7f)
        };
        info[0..4].copy_from_slice(&17i32.to_le_bytes()); // SIGCHLD
        info[8..12].copy_from_slice(&code.to_le_bytes());
        info[16..20].copy_from_slice(&pid.to_le_bytes());
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        info[20..24].copy_from_slice(&uid.to_le_bytes());
        info[24..28].copy_from_slice(&value.to_le_bytes());
    } else if c.stop.is_some() {
        return Ok(0); // parked
    }
    if infop != 0 {
        c.process.mem.write_bytes(infop, &info)?;
    }
    if rusage != 0 {
        c.process.mem.write_bytes(rusage, &[0u8; 144])?;
    }
    Ok(0)
}

/// `setpgid(pid, pgid)`.
pub(super) fn setpgid(c: &mut Call<'_>) -> SysResult {
    let (pid, pgid) = (c.int(0), c.int(1));
    if pgid < 0 {
        return err(libc::EINVAL);
    }
    let me = c.process.pid;
    let pid = if pid == 0 { me } else { pid };
    let pgid = if pgid == 0 { pid } else { pgid };
    c.process.sandbox.set_pgid(me, pid, pgid).map_err(Errno)?;
    Ok(0)
}

/// The process `pid` names for `getpgid`/`getsid` (0: the caller).
fn known(c: &Call<'_>, pid: i32) -> Result<i32, Errno> {
    let pid = if pid == 0 { c.process.pid } else { pid };
    if pid < 0 {
        return err(libc::ESRCH);
    }
    Ok(pid)
}

/// `getpgid(pid)`.
pub(super) fn getpgid(c: &mut Call<'_>) -> SysResult {
    let pid = known(c, c.int(0))?;
    match c.process.sandbox.pgid(pid) {
        Some(g) => Ok(g as u64),
        None if pid == c.process.pid => Ok(pid as u64),
        None => err(libc::ESRCH),
    }
}

/// `getsid(pid)`.
pub(super) fn getsid(c: &mut Call<'_>) -> SysResult {
    let pid = known(c, c.int(0))?;
    match c.process.sandbox.sid(pid) {
        Some(s) => Ok(s as u64),
        None if pid == c.process.pid => Ok(pid as u64),
        None => err(libc::ESRCH),
    }
}

/// `setsid()`.
pub(super) fn setsid(c: &mut Call<'_>) -> SysResult {
    c.process.sandbox.set_sid(c.process.pid).map(|s| s as u64).map_err(Errno)
}

/// `getgroups(size, list)`: the host process's supplementary groups.
pub(super) fn getgroups(c: &mut Call<'_>) -> SysResult {
    let (size, list) = (c.int(0), c.args[1]);
    if size < 0 {
        return err(libc::EINVAL);
    }
    // SAFETY: a zero size only asks for the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n < 0 {
        return Err(Errno::last());
    }
    let mut groups = vec![0 as libc::gid_t; n as usize];
    // SAFETY: `groups` has room for `n` entries.
    let n = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    if n < 0 {
        return Err(Errno::last());
    }
    groups.truncate(n as usize);
    if size == 0 {
        return Ok(groups.len() as u64);
    }
    if (size as usize) < groups.len() {
        return err(libc::EINVAL);
    }
    let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    c.process.mem.write_bytes(list, &bytes)?;
    Ok(groups.len() as u64)
}

/// `getppid()`: the parent inside the sandbox; for the sandbox's root, the host's parent
/// (as under qemu).
pub(super) fn getppid(c: &mut Call<'_>) -> SysResult {
    match c.process.sandbox.ppid(c.process.pid) {
        0 if c.process.pid == c.process.sandbox.root() => {
            // SAFETY: getppid has no preconditions.
            Ok(unsafe { libc::getppid() } as i64 as u64)
        }
        ppid => Ok(ppid as i64 as u64),
    }
}
