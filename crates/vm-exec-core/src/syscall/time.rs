//! Clocks and sleeping: `clock_gettime`, `clock_getres`, `gettimeofday`, `nanosleep`,
//! `clock_nanosleep`, `sched_yield`. Values are the host's, as under qemu (CPU-time clocks
//! measure the host thread or process that runs the guest). In a process a scheduler hosts,
//! sleeps park the guest thread until a deadline (a [`crate::futex::Waiter`]) and
//! `sched_yield` hands its vCPU to others; otherwise they block or yield the host thread.

// The field types of libc's `timespec`/`timeval` differ between host architectures.
#![allow(clippy::unnecessary_cast)]

use super::{err, read_timespec, write_pair, Call, Errno, SysResult};
use crate::exec::StopReason;
use std::time::{Duration, Instant};

/// Clock ids the guest may use (`CLOCK_REALTIME` .. `CLOCK_TAI`, without the removed
/// `CLOCK_SGI_CYCLE`). Negative ids (per-process CPU clocks of other processes) are refused.
fn check_clock(id: i32) -> Result<libc::clockid_t, Errno> {
    match id {
        0..=9 | 11 => Ok(id as libc::clockid_t),
        _ => err(libc::EINVAL),
    }
}

/// `clock_gettime(clockid, tp)`.
pub(super) fn clock_gettime(c: &mut Call<'_>) -> SysResult {
    let id = check_clock(c.int(0))?;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live local timespec.
    if unsafe { libc::clock_gettime(id, &mut ts) } < 0 {
        return Err(Errno::last());
    }
    write_pair(&c.process.mem, c.args[1], ts.tv_sec as i64, ts.tv_nsec as i64)?;
    Ok(0)
}

/// `clock_getres(clockid, res)` (`res` may be NULL).
pub(super) fn clock_getres(c: &mut Call<'_>) -> SysResult {
    let id = check_clock(c.int(0))?;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live local timespec.
    if unsafe { libc::clock_getres(id, &mut ts) } < 0 {
        return Err(Errno::last());
    }
    if c.args[1] != 0 {
        write_pair(&c.process.mem, c.args[1], ts.tv_sec as i64, ts.tv_nsec as i64)?;
    }
    Ok(0)
}

/// `gettimeofday(tv, tz)` (either may be NULL; the time zone is the host kernel's, normally
/// zero).
pub(super) fn gettimeofday(c: &mut Call<'_>) -> SysResult {
    let (tv_addr, tz_addr) = (c.args[0], c.args[1]);
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    // `struct timezone` is two ints.
    let mut tz = [0i32; 2];
    // SAFETY: both pointers refer to live locals of the sizes the kernel writes.
    if unsafe {
        libc::syscall(libc::SYS_gettimeofday, &mut tv as *mut libc::timeval, tz.as_mut_ptr())
    } < 0
    {
        return Err(Errno::last());
    }
    let mem = &c.process.mem;
    if tv_addr != 0 {
        write_pair(mem, tv_addr, tv.tv_sec as i64, tv.tv_usec as i64)?;
    }
    if tz_addr != 0 {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&tz[0].to_le_bytes());
        b[4..].copy_from_slice(&tz[1].to_le_bytes());
        mem.write_bytes(tz_addr, &b)?;
    }
    Ok(0)
}

/// Sleeps on the host: relative `(sec, nsec)`, or until that absolute time of `clock` when
/// `absolute`. Host signals that interrupt the sleep are absorbed.
fn host_sleep(clock: libc::clockid_t, absolute: bool, sec: i64, nsec: i64) -> Result<(), Errno> {
    let mut req = libc::timespec { tv_sec: sec as _, tv_nsec: nsec as _ };
    loop {
        let mut rem = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        let flags = if absolute { libc::TIMER_ABSTIME } else { 0 };
        // SAFETY: `req` and `rem` are live local timespecs.
        let r = unsafe { libc::clock_nanosleep(clock, flags, &req, &mut rem) };
        match r {
            0 => return Ok(()),
            libc::EINTR => {
                if !absolute {
                    req = rem;
                }
            }
            e => return err(e),
        }
    }
}

/// The host instant at which a sleep of `(sec, nsec)` (relative, or an absolute time of
/// `clock`) ends.
pub(super) fn deadline(clock: libc::clockid_t, absolute: bool, sec: i64, nsec: i64) -> Instant {
    let now = Instant::now();
    let span = |s: i64, ns: i64| Duration::new(s.max(0) as u64, ns.clamp(0, 999_999_999) as u32);
    if !absolute {
        return now.checked_add(span(sec, nsec)).unwrap_or(now + Duration::from_secs(1 << 40));
    }
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live local timespec.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return now;
    }
    let target = (sec as i128) * 1_000_000_000 + nsec as i128;
    let current = (ts.tv_sec as i128) * 1_000_000_000 + ts.tv_nsec as i128;
    let left = (target - current).clamp(0, u64::MAX as i128 / 2) as u64;
    now.checked_add(Duration::from_nanos(left)).unwrap_or(now + Duration::from_secs(1 << 40))
}

/// Sleeps: parks the thread when a scheduler hosts the process, else sleeps on the host.
fn sleep(c: &mut Call<'_>, clock: libc::clockid_t, absolute: bool, s: i64, ns: i64) -> SysResult {
    if c.process.is_scheduled() {
        let until = deadline(clock, absolute, s, ns);
        c.stop = Some(StopReason::Blocked(c.process.futexes.sleep(until)));
        return Ok(0);
    }
    host_sleep(clock, absolute, s, ns)?;
    Ok(0)
}

/// `nanosleep(req, rem)`.
pub(super) fn nanosleep(c: &mut Call<'_>) -> SysResult {
    let (s, ns) = read_timespec(&c.process.mem, c.args[0])?;
    sleep(c, libc::CLOCK_MONOTONIC, false, s, ns)
}

/// `clock_nanosleep(clockid, flags, req, rem)`.
pub(super) fn clock_nanosleep(c: &mut Call<'_>) -> SysResult {
    let id = c.int(0);
    let flags = c.int(1);
    let clock = match id {
        // REALTIME, MONOTONIC, PROCESS_CPUTIME_ID, BOOTTIME, REALTIME_ALARM, BOOTTIME_ALARM, TAI
        0 | 1 | 2 | 7 | 8 | 9 | 11 => id as libc::clockid_t,
        _ => return err(libc::EINVAL),
    };
    let (s, ns) = read_timespec(&c.process.mem, c.args[2])?;
    sleep(c, clock, flags & libc::TIMER_ABSTIME != 0, s, ns)
}

/// `sched_yield()`: the scheduler runs others first; without one, the host thread yields.
pub(super) fn sched_yield(c: &mut Call<'_>) -> SysResult {
    if c.process.is_scheduled() {
        c.stop = Some(StopReason::Yielded);
    } else {
        std::thread::yield_now();
    }
    Ok(0)
}

/// Reads a guest `struct itimerval` (`it_interval`, `it_value`: two `timeval`s).
fn read_itimerval(c: &Call<'_>, addr: u64) -> Result<(Duration, Duration), super::Errno> {
    let mut w = [0i64; 4];
    for (i, v) in w.iter_mut().enumerate() {
        *v = super::read_u64(&c.process.mem, addr + 8 * i as u64)? as i64;
    }
    let tv = |s: i64, us: i64| -> Result<Duration, super::Errno> {
        if s < 0 || !(0..1_000_000).contains(&us) {
            return err(libc::EINVAL);
        }
        Ok(Duration::from_secs(s as u64) + Duration::from_micros(us as u64))
    };
    Ok((tv(w[0], w[1])?, tv(w[2], w[3])?))
}

fn write_itimerval(c: &Call<'_>, addr: u64, interval: Duration, value: Duration) -> SysResult {
    let mut b = [0u8; 32];
    for (i, d) in [interval, value].iter().enumerate() {
        b[16 * i..16 * i + 8].copy_from_slice(&d.as_secs().to_le_bytes());
        b[16 * i + 8..16 * i + 16].copy_from_slice(&(d.subsec_micros() as u64).to_le_bytes());
    }
    c.process.mem.write_bytes(addr, &b)?;
    Ok(0)
}

const ITIMER_REAL: i32 = 0;

/// `getitimer(which, value)`: `ITIMER_REAL` only (the others are `EINVAL` here).
pub(super) fn getitimer(c: &mut Call<'_>) -> SysResult {
    if c.int(0) != ITIMER_REAL {
        return err(libc::EINVAL);
    }
    let (left, interval) = crate::signals::itimer::get(c.process);
    write_itimerval(c, c.args[1], interval, left)
}

/// `setitimer(which, new, old)`: `ITIMER_REAL` sends `SIGALRM` at expiry (every `interval`
/// after, if set).
pub(super) fn setitimer(c: &mut Call<'_>) -> SysResult {
    if c.int(0) != ITIMER_REAL {
        return err(libc::EINVAL);
    }
    let (interval, value) = if c.args[1] != 0 {
        read_itimerval(c, c.args[1])?
    } else {
        (Duration::ZERO, Duration::ZERO)
    };
    let value = (!value.is_zero()).then_some(value);
    let (old_left, old_interval) = crate::signals::itimer::set(c.process, value, interval);
    if c.args[2] != 0 {
        write_itimerval(c, c.args[2], old_interval, old_left)?;
    }
    Ok(0)
}
