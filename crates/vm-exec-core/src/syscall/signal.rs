//! Signals: `rt_sigaction`, `rt_sigprocmask`, `rt_sigpending`, `sigaltstack`, `kill`,
//! `tkill`, `tgkill`.
//!
//! Signal delivery to guest handlers is not implemented. What is modelled:
//! - dispositions are recorded in `Process::sigactions[signo]` as
//!   `[handler, flags, restorer, mask]` (riscv64 has no `sa_restorer`, so the third word is
//!   always 0), and read back in the kernel's riscv64 `struct sigaction` layout
//!   (`sa_handler` 0, `sa_flags` 8, `sa_mask` 16; 24 bytes, `sigsetsize` must be 8);
//! - the blocked mask lives in `GuestThread::signal_mask` (SIGKILL and SIGSTOP can never be
//!   blocked);
//! - a signal a process sends itself (or a `SIGPIPE` from a broken pipe) takes effect at
//!   once unless blocked, in which case it stays pending until `rt_sigprocmask` unblocks it.
//!   Taking effect means: with the default disposition, a terminating signal ends the process
//!   ([`super::Call::raise`]); ignored, stopping (logged) and caught signals do nothing
//!   (caught ones are logged once: their handler is not run). So `abort()` — which raises
//!   SIGABRT, and after a handler returns resets it to the default and raises again — always
//!   ends with `Signal(6)`.
//! - signals to other processes or threads fail with `ESRCH`: the guest is alone.

use super::{err, read_u64, state, Call, Errno, SysResult};

const SIG_DFL: u64 = 0;
const SIG_IGN: u64 = 1;
const SIGKILL: i32 = 9;
const SIGSTOP: i32 = 19;
/// Highest signal number.
const NSIG: i32 = 64;

const fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// Signals that can be neither blocked nor caught.
const UNBLOCKABLE: u64 = bit(SIGKILL) | bit(SIGSTOP);

/// What a signal does with the default disposition.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DefaultAction {
    Terminate,
    Ignore,
    Stop,
}

fn default_action(sig: i32) -> DefaultAction {
    match sig {
        // SIGCHLD, SIGCONT, SIGURG, SIGWINCH
        17 | 18 | 23 | 28 => DefaultAction::Ignore,
        // SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU
        19..=22 => DefaultAction::Stop,
        _ => DefaultAction::Terminate,
    }
}

fn handler_of(c: &Call<'_>, sig: i32) -> u64 {
    if bit(sig) & UNBLOCKABLE != 0 {
        return SIG_DFL;
    }
    c.process.sigactions().get(sig as usize).map_or(SIG_DFL, |a| a[0])
}

/// True if `sig` would be discarded on arrival (ignored, explicitly or by default).
fn ignored(c: &Call<'_>, sig: i32) -> bool {
    match handler_of(c, sig) {
        SIG_IGN => true,
        SIG_DFL => default_action(sig) == DefaultAction::Ignore,
        _ => false,
    }
}

/// Sends signal `sig` (1..=64) to the calling thread.
pub(super) fn raise(c: &mut Call<'_>, sig: i32) {
    if !(1..=NSIG).contains(&sig) {
        return;
    }
    if c.thread.signal_mask & bit(sig) & !UNBLOCKABLE != 0 {
        // Blocked signals are kept even if ignored: the disposition may change before they
        // are unblocked.
        state::with(c.process, |s| s.pending |= bit(sig));
        return;
    }
    deliver(c, sig);
}

/// Takes the action for an unblocked signal.
fn deliver(c: &mut Call<'_>, sig: i32) {
    match handler_of(c, sig) {
        SIG_IGN => {}
        SIG_DFL => match default_action(sig) {
            DefaultAction::Terminate => {
                c.raise(sig);
            }
            DefaultAction::Ignore => {}
            DefaultAction::Stop => {
                if super::first_time("signal-stop") {
                    tracing::warn!(sig, "stop signal ignored: stopping a guest is not supported");
                }
            }
        },
        handler => {
            if super::first_time("signal-handler") {
                tracing::warn!(sig, handler, "signal handlers are not run; signal dropped");
            } else {
                tracing::debug!(sig, "signal with a handler dropped");
            }
        }
    }
}

/// Delivers pending signals the thread no longer blocks, lowest number first.
fn deliver_unblocked(c: &mut Call<'_>) {
    let pending = state::peek(c.process, |s| s.pending);
    let ready = pending & !c.thread.signal_mask;
    if ready == 0 {
        return;
    }
    state::with(c.process, |s| s.pending &= !ready);
    for sig in 1..=NSIG {
        if ready & bit(sig) != 0 {
            deliver(c, sig);
            if c.stop.is_some() {
                return;
            }
        }
    }
}

fn check_sig(sig: i32) -> Result<(), Errno> {
    if (0..=NSIG).contains(&sig) {
        Ok(())
    } else {
        err(libc::EINVAL)
    }
}

/// Sends `sig` to the caller (0 only checks that it exists).
fn to_self(c: &mut Call<'_>, sig: i32) -> SysResult {
    if sig != 0 {
        raise(c, sig);
    }
    Ok(0)
}

/// `kill(pid, sig)`: the process itself is `pid` = its pid or 0 (its process group).
pub(super) fn kill(c: &mut Call<'_>) -> SysResult {
    let (pid, sig) = (c.int(0), c.int(1));
    check_sig(sig)?;
    if pid == c.process.pid || pid == 0 {
        to_self(c, sig)
    } else {
        err(libc::ESRCH)
    }
}

/// `tkill(tid, sig)`.
pub(super) fn tkill(c: &mut Call<'_>) -> SysResult {
    let (tid, sig) = (c.int(0), c.int(1));
    check_sig(sig)?;
    if tid <= 0 {
        return err(libc::EINVAL);
    }
    if tid == c.thread.tid {
        to_self(c, sig)
    } else {
        err(libc::ESRCH)
    }
}

/// `tgkill(tgid, tid, sig)`.
pub(super) fn tgkill(c: &mut Call<'_>) -> SysResult {
    let (tgid, tid, sig) = (c.int(0), c.int(1), c.int(2));
    check_sig(sig)?;
    if tgid <= 0 || tid <= 0 {
        return err(libc::EINVAL);
    }
    if tgid == c.process.pid && tid == c.thread.tid {
        to_self(c, sig)
    } else {
        err(libc::ESRCH)
    }
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
        if ignored(c, sig) && state::peek(c.process, |s| s.pending & bit(sig) != 0) {
            state::with(c.process, |s| s.pending &= !bit(sig));
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

/// `rt_sigprocmask(how, set, oldset, sigsetsize)`; unblocking a pending signal delivers it.
pub(super) fn rt_sigprocmask(c: &mut Call<'_>) -> SysResult {
    let (how, set, oldset, setsize) = (c.int(0), c.args[1], c.args[2], c.args[3]);
    if setsize != 8 {
        return err(libc::EINVAL);
    }
    let old = c.thread.signal_mask;
    if set != 0 {
        let s = read_u64(&c.process.mem, set)? & !UNBLOCKABLE;
        c.thread.signal_mask = match how {
            SIG_BLOCK => old | s,
            SIG_UNBLOCK => old & !s,
            SIG_SETMASK => s,
            _ => return err(libc::EINVAL),
        };
    }
    if oldset != 0 {
        c.process.mem.write_bytes(oldset, &old.to_le_bytes())?;
    }
    deliver_unblocked(c);
    Ok(0)
}

/// `rt_sigpending(set, sigsetsize)`: the signals sent while blocked and not yet delivered.
pub(super) fn rt_sigpending(c: &mut Call<'_>) -> SysResult {
    let (set, setsize) = (c.args[0], c.args[1]);
    if setsize > 8 {
        return err(libc::EINVAL);
    }
    let pending = state::peek(c.process, |s| s.pending) & c.thread.signal_mask;
    c.process.mem.write_bytes(set, &pending.to_le_bytes()[..setsize as usize])?;
    Ok(0)
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
