//! Threads and their life cycle: `exit`, `exit_group`, `set_tid_address`, the robust-futex
//! list, `futex`, `clone`/`clone3`, `rseq`, `membarrier` (forwarded to the host, like qemu).
//!
//! Processes are single-threaded for now (threads need the coroutine scheduler of a later
//! milestone), which fixes these choices:
//! - `clone` and `clone3` fail with `ENOSYS` (logged once). glibc's `pthread_create` then
//!   returns `ENOSYS`; `fork`/`system`/`posix_spawn` fail.
//! - `futex`: a wake wakes nobody (returns 0); a wait whose value differs is `EAGAIN`; a wait
//!   whose value matches can only end by its timeout, so with a timeout it sleeps that long and
//!   returns `ETIMEDOUT`, and without one (a deadlock that would hang forever under Linux) it
//!   returns `EINTR` — a spurious wake-up that every futex user must tolerate — and logs a
//!   warning once; a guest that retries then spins until its fuel runs out instead of blocking
//!   a host thread forever. Priority-inheritance operations are `ENOSYS`.
//! - `set_robust_list`/`get_robust_list` are `ENOSYS`, exactly as qemu-riscv64 7.2 answers
//!   them (glibc copes: robust mutexes become unsupported).
//! - `rseq` is `ENOSYS`, like qemu; glibc then keeps the registration off.

use super::{err, first_time, read_timespec, Call, SysResult, SyscallOutcome};

/// `exit(status)`: ends the calling thread; its `clear_child_tid` word is zeroed (and would be
/// futex-woken) as Linux does.
pub(super) fn exit(c: &mut Call<'_>) -> SysResult {
    let addr = c.thread.clear_child_tid;
    if addr != 0 {
        // A bad address is ignored, as by the kernel.
        let _ = c.process.mem.write_u32(addr, 0);
    }
    c.outcome = SyscallOutcome::ThreadExit(c.int(0) & 0xff);
    Ok(0)
}

/// `exit_group(status)`: ends the process.
pub(super) fn exit_group(c: &mut Call<'_>) -> SysResult {
    c.outcome = SyscallOutcome::ProcessExit(c.int(0) & 0xff);
    Ok(0)
}

/// `set_tid_address(tidptr)`: records `clear_child_tid`, returns the thread id.
pub(super) fn set_tid_address(c: &mut Call<'_>) -> SysResult {
    c.thread.clear_child_tid = c.args[0];
    Ok(c.thread.tid as u64)
}

/// `set_robust_list(head, len)`: `ENOSYS`, as under qemu-riscv64.
pub(super) fn set_robust_list(_c: &mut Call<'_>) -> SysResult {
    err(libc::ENOSYS)
}

/// `get_robust_list(pid, head_ptr, len_ptr)`: `ENOSYS`, as under qemu-riscv64.
pub(super) fn get_robust_list(_c: &mut Call<'_>) -> SysResult {
    err(libc::ENOSYS)
}

/// `rseq(rseq, len, flags, sig)`: `ENOSYS`, as under qemu-riscv64.
pub(super) fn rseq(_c: &mut Call<'_>) -> SysResult {
    err(libc::ENOSYS)
}

/// `clone(...)` and `clone3(...)`: `ENOSYS` until the scheduler exists.
pub(super) fn clone(c: &mut Call<'_>) -> SysResult {
    if first_time("clone") {
        tracing::warn!(
            flags = c.args[0],
            "clone/clone3: guest threads and processes need the coroutine scheduler (a later milestone); returning -ENOSYS"
        );
    }
    err(libc::ENOSYS)
}

const FUTEX_WAIT: i32 = 0;
const FUTEX_WAKE: i32 = 1;
const FUTEX_FD: i32 = 2;
const FUTEX_REQUEUE: i32 = 3;
const FUTEX_CMP_REQUEUE: i32 = 4;
const FUTEX_WAKE_OP: i32 = 5;
const FUTEX_WAIT_BITSET: i32 = 9;
const FUTEX_WAKE_BITSET: i32 = 10;
const FUTEX_PRIVATE_FLAG: i32 = 128;
const FUTEX_CLOCK_REALTIME: i32 = 256;

/// `futex(uaddr, op, val, timeout/val2, uaddr2, val3)` for a single-threaded process (see the
/// module documentation).
pub(super) fn futex(c: &mut Call<'_>) -> SysResult {
    let (uaddr, op, val) = (c.args[0], c.int(1), c.args[2] as u32);
    let (utime, uaddr2, val3) = (c.args[3], c.args[4], c.args[5] as u32);
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    if uaddr & 3 != 0 {
        return err(libc::EINVAL);
    }
    if op & FUTEX_CLOCK_REALTIME != 0 && !matches!(cmd, FUTEX_WAIT | FUTEX_WAIT_BITSET) {
        return err(libc::ENOSYS);
    }
    let mem = &mut c.process.mem;
    match cmd {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            if cmd == FUTEX_WAIT_BITSET && val3 == 0 {
                return err(libc::EINVAL);
            }
            let timeout = if utime != 0 { Some(read_timespec(mem, utime)?) } else { None };
            if mem.read_u32(uaddr)? != val {
                return err(libc::EAGAIN);
            }
            match timeout {
                Some((s, ns)) => {
                    // FUTEX_WAIT's timeout is relative; FUTEX_WAIT_BITSET's is absolute on
                    // CLOCK_MONOTONIC or, with FUTEX_CLOCK_REALTIME, CLOCK_REALTIME.
                    let clock = if op & FUTEX_CLOCK_REALTIME != 0 {
                        libc::CLOCK_REALTIME
                    } else {
                        libc::CLOCK_MONOTONIC
                    };
                    let absolute = cmd == FUTEX_WAIT_BITSET;
                    sleep(clock, absolute, s, ns);
                    err(libc::ETIMEDOUT)
                }
                None => {
                    if first_time("futex-deadlock") {
                        tracing::warn!(
                            uaddr,
                            val,
                            "FUTEX_WAIT with no other thread to wake it (a deadlock); returning -EINTR"
                        );
                    }
                    err(libc::EINTR)
                }
            }
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET => {
            if cmd == FUTEX_WAKE_BITSET && val3 == 0 {
                return err(libc::EINVAL);
            }
            Ok(0)
        }
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            if uaddr2 & 3 != 0 {
                return err(libc::EINVAL);
            }
            if cmd == FUTEX_CMP_REQUEUE && mem.read_u32(uaddr)? != val3 {
                return err(libc::EAGAIN);
            }
            Ok(0)
        }
        FUTEX_WAKE_OP => {
            if uaddr2 & 3 != 0 {
                return err(libc::EINVAL);
            }
            let encoded = val3;
            let opcode = (encoded >> 28) & 7;
            let shift = encoded >> 31 != 0;
            let mut oparg = (((encoded << 8) as i32) >> 20) as u32;
            if shift {
                oparg = 1u32.checked_shl(oparg).unwrap_or(0);
            }
            let old = mem.read_u32(uaddr2)?;
            let new = match opcode {
                0 => oparg,
                1 => old.wrapping_add(oparg),
                2 => old | oparg,
                3 => old & !oparg,
                4 => old ^ oparg,
                _ => return err(libc::ENOSYS),
            };
            mem.write_u32(uaddr2, new)?;
            Ok(0)
        }
        FUTEX_FD => err(libc::ENOSYS),
        _ => {
            if first_time("futex-op") {
                tracing::warn!(op, "unsupported futex operation; returning -ENOSYS");
            }
            err(libc::ENOSYS)
        }
    }
}

/// Sleeps on the host (interruptions by host signals are absorbed).
fn sleep(clock: libc::clockid_t, absolute: bool, s: i64, ns: i64) {
    let mut req = libc::timespec { tv_sec: s as _, tv_nsec: ns as _ };
    loop {
        let mut rem = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        let flags = if absolute { libc::TIMER_ABSTIME } else { 0 };
        // SAFETY: `req` and `rem` are live local timespecs.
        match unsafe { libc::clock_nanosleep(clock, flags, &req, &mut rem) } {
            libc::EINTR => {
                if !absolute {
                    req = rem;
                }
            }
            _ => return,
        }
    }
}

/// `membarrier(cmd, flags, cpu_id)`: forwarded to the host, as qemu-riscv64 does (a barrier
/// over the host threads is a superset of one over the guest's). No pointer arguments.
pub(super) fn membarrier(c: &mut Call<'_>) -> SysResult {
    let (cmd, flags, cpu) = (c.int(0), c.int(1), c.int(2));
    // SAFETY: membarrier takes only integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, cmd, flags, cpu) };
    if r < 0 {
        return Err(super::Errno::last());
    }
    Ok(r as u64)
}
