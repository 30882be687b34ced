//! Threads and their life cycle: `exit`, `exit_group`, `set_tid_address`, the robust-futex
//! list, `futex`, `clone`/`clone3`, `rseq`, `membarrier` (forwarded to the host, like qemu).
//!
//! Threads exist only in a process a scheduler hosts ([`Process::is_scheduled`]):
//! - `clone`/`clone3` with the flags of a thread (`CLONE_VM | CLONE_THREAD | CLONE_SIGHAND`,
//!   as glibc's `pthread_create` passes) build the new [`GuestThread`] (its stack, `tp` with
//!   `CLONE_SETTLS`, the parent/child tid words, `clear_child_tid`) and hand it to the
//!   scheduler ([`StopReason::Spawned`]). Without a scheduler they fail with `EAGAIN`, so
//!   `pthread_create` reports "resource temporarily unavailable". A `clone` without `CLONE_VM`
//!   or with `CLONE_VFORK` (`fork`, `vfork`, `posix_spawn`, `system`) forks a new process
//!   (see `procs`).
//! - `futex` waits park the thread on a [`crate::futex::Waiter`] ([`StopReason::Blocked`]);
//!   wakes, requeues and `FUTEX_WAKE_OP` act on the process's [`crate::futex::FutexTable`].
//! - `exit` zeroes the thread's `clear_child_tid` word and wakes one waiter on it (how
//!   `pthread_join` learns of the exit).
//!
//! Without a scheduler a process has one thread, which fixes the futex choices: a wake wakes
//! nobody; a wait whose value differs is `EAGAIN`; a wait whose value matches can only end by
//! its timeout, so with a timeout it sleeps that long on the host and returns `ETIMEDOUT`, and
//! without one (a deadlock that would hang forever under Linux) it returns `EINTR`, a
//! spurious wake-up every futex user must tolerate, and logs a warning once.
//!
//! `set_robust_list`/`get_robust_list` and `rseq` are `ENOSYS`, exactly as qemu-riscv64
//! answers them (glibc copes). Priority-inheritance futex operations are `ENOSYS`.

use super::{err, first_time, read_timespec, Call, Errno, SysResult};
use crate::cpu::{reg, GuestThread};
use crate::exec::{GuestExit, StopReason};
use crate::futex::{WaitError, MATCH_ANY};
use crate::process::Process;

/// `exit(status)`: ends the calling thread; its `clear_child_tid` word is zeroed and one
/// futex waiter on it woken, as Linux does.
pub(super) fn exit(c: &mut Call<'_>) -> SysResult {
    crate::signals::forget_thread(c.process, c.thread.tid);
    let addr = c.thread.clear_child_tid;
    if addr != 0 {
        // A bad address is ignored, as by the kernel.
        if c.process.mem.write_u32(addr, 0).is_ok() {
            c.process.futexes.wake(addr, 1, MATCH_ANY);
        }
    }
    c.stop = Some(StopReason::ThreadExited(c.int(0) & 0xff));
    Ok(0)
}

/// `exit_group(status)`: ends the process (its other threads stop at their next system call
/// or slice).
pub(super) fn exit_group(c: &mut Call<'_>) -> SysResult {
    c.process.begin_exit();
    c.stop = Some(StopReason::Finished(GuestExit::Exited(c.int(0) & 0xff)));
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

const CLONE_VM: u64 = 0x100;
const CLONE_FS: u64 = 0x200;
const CLONE_FILES: u64 = 0x400;
const CLONE_SIGHAND: u64 = 0x800;
const CLONE_PIDFD: u64 = 0x1000;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_PARENT: u64 = 0x8000;
const CLONE_THREAD: u64 = 0x10000;
const CLONE_SYSVSEM: u64 = 0x40000;
const CLONE_SETTLS: u64 = 0x80000;
const CLONE_PARENT_SETTID: u64 = 0x100000;
const CLONE_CHILD_CLEARTID: u64 = 0x200000;
const CLONE_DETACHED: u64 = 0x400000;
const CLONE_CHILD_SETTID: u64 = 0x1000000;
/// Flags a thread-creating clone may carry besides the required ones.
const THREAD_OPTIONAL: u64 = CLONE_FS
    | CLONE_FILES
    | CLONE_SYSVSEM
    | CLONE_SETTLS
    | CLONE_PARENT_SETTID
    | CLONE_CHILD_CLEARTID
    | CLONE_DETACHED
    | CLONE_CHILD_SETTID
    | CLONE_PARENT;
const THREAD_REQUIRED: u64 = CLONE_VM | CLONE_THREAD | CLONE_SIGHAND;

/// The arguments of a clone, from `clone` or `clone3`.
struct CloneArgs {
    flags: u64,
    stack: u64,
    parent_tid: u64,
    child_tid: u64,
    tls: u64,
}

/// `clone(flags, newsp, parent_tid, tls, child_tid)` (RISC-V uses the `CLONE_BACKWARDS`
/// argument order).
pub(super) fn clone(c: &mut Call<'_>) -> SysResult {
    let a = CloneArgs {
        flags: c.args[0] & !0xff, // the low byte is the exit signal
        stack: c.args[1],
        parent_tid: c.args[2],
        tls: c.args[3],
        child_tid: c.args[4],
    };
    spawn(c, a)
}

/// `clone3(args, size)`: `struct clone_args` (at least the 64-byte first version).
pub(super) fn clone3(c: &mut Call<'_>) -> SysResult {
    let (addr, size) = (c.args[0], c.args[1]);
    if !(64..=4096).contains(&size) {
        return err(libc::EINVAL);
    }
    let mut raw = [0u8; 88];
    let n = (size as usize).min(raw.len());
    c.process.mem.read_bytes(addr, &mut raw[..n])?;
    let word = |i: usize| u64::from_le_bytes(super::le8(&raw[i * 8..i * 8 + 8]));
    // flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
    // set_tid_size, cgroup
    if word(8) != 0 || word(9) != 0 || (n > 80 && word(10) != 0) {
        return err(libc::EINVAL);
    }
    let (stack, stack_size) = (word(5), word(6));
    let a = CloneArgs {
        flags: word(0),
        stack: if stack == 0 { 0 } else { stack.wrapping_add(stack_size) },
        parent_tid: word(3),
        child_tid: word(2),
        tls: word(7),
    };
    spawn(c, a)
}

fn spawn(c: &mut Call<'_>, a: CloneArgs) -> SysResult {
    let flags = a.flags;
    if flags & CLONE_PIDFD != 0 {
        if first_time("clone-pidfd") {
            tracing::warn!(flags, "clone with CLONE_PIDFD is not supported; returning -ENOSYS");
        }
        return err(libc::ENOSYS);
    }
    if flags & CLONE_VM == 0 || flags & CLONE_VFORK != 0 {
        if flags & (CLONE_THREAD | CLONE_SIGHAND) != 0 && flags & CLONE_VM == 0 {
            return err(libc::EINVAL);
        }
        let f = super::procs::ForkArgs {
            flags,
            stack: a.stack,
            parent_tid: a.parent_tid,
            child_tid: a.child_tid,
            tls: a.tls,
        };
        return super::procs::fork(c, f);
    }
    if flags & THREAD_REQUIRED != THREAD_REQUIRED
        || flags & !(THREAD_REQUIRED | THREAD_OPTIONAL) != 0
    {
        return err(libc::EINVAL);
    }
    if !c.process.is_scheduled() {
        if first_time("clone-unscheduled") {
            tracing::warn!("clone: guest threads need a scheduler (vmx run, or the coroutine module); returning -EAGAIN");
        }
        return err(libc::EAGAIN);
    }
    let child = new_thread(c.process, c.thread, &a)?;
    let tid = child.tid;
    c.stop = Some(StopReason::Spawned(Box::new(child)));
    Ok(tid as u64)
}

/// Builds the new thread: a copy of the caller's registers with `a0 = 0`, the new stack and
/// TLS, and the tid words written as the flags ask.
fn new_thread(p: &Process, parent: &GuestThread, a: &CloneArgs) -> Result<GuestThread, Errno> {
    if !p.sandbox.reserve_thread() {
        return Err(Errno(libc::EAGAIN));
    }
    let tid = p.allocate_tid();
    p.sig()
        .threads
        .insert(tid, crate::signals::ThreadSig { mask: parent.signal_mask, ..Default::default() });
    let mut t = GuestThread {
        cpu: parent.cpu.clone(),
        tid,
        clear_child_tid: 0,
        signal_mask: parent.signal_mask,
        resume_deadline: None,
        resume_partial: 0,
    };
    t.cpu.x[reg::A0] = 0;
    t.cpu.reservation = None;
    if a.stack != 0 {
        t.cpu.x[reg::SP] = a.stack;
    }
    if a.flags & CLONE_SETTLS != 0 {
        t.cpu.x[reg::TP] = a.tls;
    }
    if a.flags & CLONE_PARENT_SETTID != 0 {
        p.mem.write_u32(a.parent_tid, tid as u32)?;
    }
    if a.flags & CLONE_CHILD_SETTID != 0 {
        p.mem.write_u32(a.child_tid, tid as u32)?;
    }
    if a.flags & CLONE_CHILD_CLEARTID != 0 {
        t.clear_child_tid = a.child_tid;
    }
    Ok(t)
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

/// The arguments of one `futex` call, checked as the kernel checks them first.
struct FutexArgs {
    uaddr: u64,
    op: i32,
    /// `op` without the private and clock flags.
    cmd: i32,
    val: u32,
    /// The timeout pointer, or `val2` (a count) for the requeue and wake-op commands.
    utime: u64,
    uaddr2: u64,
    val3: u32,
}

impl FutexArgs {
    fn of(c: &Call<'_>) -> Result<FutexArgs, Errno> {
        let op = c.int(1);
        let a = FutexArgs {
            uaddr: c.args[0],
            op,
            cmd: op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME),
            val: c.args[2] as u32,
            utime: c.args[3],
            uaddr2: c.args[4],
            val3: c.args[5] as u32,
        };
        if a.uaddr & 3 != 0 {
            return err(libc::EINVAL);
        }
        if op & FUTEX_CLOCK_REALTIME != 0 && !matches!(a.cmd, FUTEX_WAIT | FUTEX_WAIT_BITSET) {
            return err(libc::ENOSYS);
        }
        Ok(a)
    }
}

/// `futex(uaddr, op, val, timeout/val2, uaddr2, val3)` (see the module documentation).
pub(super) fn futex(c: &mut Call<'_>) -> SysResult {
    let a = FutexArgs::of(c)?;
    // A shared (non-private) wake looks the word up in the page tables, as Linux does: an
    // unmapped word is EFAULT. A private wake never touches memory (qemu-riscv64 agrees).
    if matches!(a.cmd, FUTEX_WAKE | FUTEX_WAKE_BITSET)
        && a.op & FUTEX_PRIVATE_FLAG == 0
        && c.process.mem.read_u32(a.uaddr).is_err()
    {
        return err(libc::EFAULT);
    }
    if c.process.is_scheduled() {
        futex_scheduled(c, a)
    } else {
        futex_alone(c, a)
    }
}

/// `futex` in a process without a scheduler (one thread; see the module documentation).
fn futex_alone(c: &mut Call<'_>, a: FutexArgs) -> SysResult {
    let FutexArgs { uaddr, op, cmd, val, utime, uaddr2, val3 } = a;
    let mem = &c.process.mem;
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
            let (opcode, _, oparg, _) = decode_wake_op(val3);
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

/// `futex` in a process a scheduler hosts: waits park, wakes wake.
fn futex_scheduled(c: &mut Call<'_>, a: FutexArgs) -> SysResult {
    let FutexArgs { uaddr, op, cmd, val, utime, uaddr2, val3 } = a;
    // `val2` (a count) shares the timeout argument's slot.
    let val2 = utime as u32 as usize;
    let p = c.process;
    match cmd {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            let bitset = if cmd == FUTEX_WAIT { MATCH_ANY } else { val3 };
            if bitset == 0 {
                return err(libc::EINVAL);
            }
            let deadline = if utime != 0 {
                let (s, ns) = read_timespec(&p.mem, utime)?;
                // FUTEX_WAIT's timeout is relative; FUTEX_WAIT_BITSET's is absolute on
                // CLOCK_MONOTONIC or, with FUTEX_CLOCK_REALTIME, CLOCK_REALTIME.
                let clock = if op & FUTEX_CLOCK_REALTIME != 0 {
                    libc::CLOCK_REALTIME
                } else {
                    libc::CLOCK_MONOTONIC
                };
                Some(super::time::deadline(clock, cmd == FUTEX_WAIT_BITSET, s, ns))
            } else {
                None
            };
            match p.futexes.wait(&p.mem, uaddr, val, bitset, deadline) {
                Ok(w) => {
                    c.stop = Some(StopReason::Blocked(w));
                    Ok(0)
                }
                Err(WaitError::ValueChanged) => err(libc::EAGAIN),
                Err(WaitError::Fault(_)) => err(libc::EFAULT),
            }
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET => {
            let bitset = if cmd == FUTEX_WAKE { MATCH_ANY } else { val3 };
            if bitset == 0 {
                return err(libc::EINVAL);
            }
            Ok(p.futexes.wake(uaddr, val as usize, bitset) as u64)
        }
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            if uaddr2 & 3 != 0 {
                return err(libc::EINVAL);
            }
            if cmd == FUTEX_CMP_REQUEUE && p.mem.read_u32(uaddr)? != val3 {
                return err(libc::EAGAIN);
            }
            let (woken, moved) = p.futexes.requeue(uaddr, val as usize, uaddr2, val2);
            Ok(if cmd == FUTEX_CMP_REQUEUE { woken + moved } else { woken } as u64)
        }
        FUTEX_WAKE_OP => {
            if uaddr2 & 3 != 0 {
                return err(libc::EINVAL);
            }
            let (opcode, cmp, oparg, cmparg) = decode_wake_op(val3);
            let update = |old: u32| match opcode {
                0 => Some(oparg),
                1 => Some(old.wrapping_add(oparg)),
                2 => Some(old | oparg),
                3 => Some(old & !oparg),
                4 => Some(old ^ oparg),
                _ => None,
            };
            if opcode > 4 || cmp > 5 {
                return err(libc::ENOSYS);
            }
            let Some(old) =
                p.mem.atomic_update(uaddr2, false, |old| update(old as u32).map(u64::from))?
            else {
                return err(libc::EINVAL);
            };
            let old = old as u32;
            let mut woken = p.futexes.wake(uaddr, val as usize, MATCH_ANY);
            let (o, a) = (old as i32, cmparg as i32);
            let hit = match cmp {
                0 => o == a,
                1 => o != a,
                2 => o < a,
                3 => o <= a,
                4 => o > a,
                _ => o >= a,
            };
            if hit {
                woken += p.futexes.wake(uaddr2, val2, MATCH_ANY);
            }
            Ok(woken as u64)
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

/// Splits `FUTEX_WAKE_OP`'s encoded operation: `(op, cmp, oparg, cmparg)`.
fn decode_wake_op(encoded: u32) -> (u32, u32, u32, u32) {
    let opcode = (encoded >> 28) & 7;
    let shift = encoded >> 31 != 0;
    let cmp = (encoded >> 24) & 15;
    let mut oparg = (((encoded << 8) as i32) >> 20) as u32;
    if shift {
        oparg = 1u32.checked_shl(oparg).unwrap_or(0);
    }
    let cmparg = (((encoded << 20) as i32) >> 20) as u32;
    (opcode, cmp, oparg, cmparg)
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
