//! Identity, limits and system information: `getpid` and friends, `uname`, `getrlimit`,
//! `setrlimit`, `prlimit64`, `getrusage`, `sysinfo`, `umask`, `prctl`, `getrandom`,
//! `sched_getaffinity`.
//!
//! Values are the host's wherever qemu-riscv64 passes the host's through (user and group ids,
//! parent pid, `uname` except the machine, `sysinfo`, `getrusage`, CPU affinity, resource
//! limits), with these exceptions:
//! - `RLIMIT_STACK`'s soft limit is the configured stack size and `RLIMIT_NOFILE` is capped at
//!   the descriptor table's size ([`MAX_FDS`]);
//! - `setrlimit`/`prlimit64` record the new limits (reported back afterwards) but never change
//!   the host's and enforce nothing;
//! - the `prctl` name starts as the executable's base name (the kernel's `comm`), not
//!   "qemu-riscv64";
//! - `umask` is kept per guest; the host's umask still applies on top when files are
//!   created (it is normally the same, 022).

use super::{err, state, Call, Errno, Out, SysResult};
use crate::process::MAX_FDS;

/// `getpid()`.
pub(super) fn getpid(c: &mut Call<'_>) -> SysResult {
    Ok(c.process.pid as i64 as u64)
}

/// `getuid()`.
pub(super) fn getuid(_c: &mut Call<'_>) -> SysResult {
    // SAFETY: no preconditions.
    Ok(unsafe { libc::getuid() } as u64)
}

/// `geteuid()`.
pub(super) fn geteuid(_c: &mut Call<'_>) -> SysResult {
    // SAFETY: no preconditions.
    Ok(unsafe { libc::geteuid() } as u64)
}

/// `getgid()`.
pub(super) fn getgid(_c: &mut Call<'_>) -> SysResult {
    // SAFETY: no preconditions.
    Ok(unsafe { libc::getgid() } as u64)
}

/// `getegid()`.
pub(super) fn getegid(_c: &mut Call<'_>) -> SysResult {
    // SAFETY: no preconditions.
    Ok(unsafe { libc::getegid() } as u64)
}

/// `gettid()`.
pub(super) fn gettid(c: &mut Call<'_>) -> SysResult {
    Ok(c.thread.tid as i64 as u64)
}

/// Size of one `struct utsname` field.
const UTS_LEN: usize = 65;

/// `uname(buf)`: the host's, with machine `riscv64` (qemu reports the host's release too).
pub(super) fn uname(c: &mut Call<'_>) -> SysResult {
    let mut u = std::mem::MaybeUninit::<libc::utsname>::zeroed();
    // SAFETY: `u` is writable storage for one `struct utsname`.
    if unsafe { libc::uname(u.as_mut_ptr()) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: uname succeeded; the structure holds only `c_char` arrays, valid for any bits.
    let u = unsafe { u.assume_init() };
    let field = |f: &[libc::c_char]| -> Vec<u8> {
        let bytes: Vec<u8> = f.iter().map(|&ch| ch as u8).collect();
        let n = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len()).min(UTS_LEN - 1);
        bytes[..n].to_vec()
    };
    let fields = [
        b"Linux".to_vec(),
        field(&u.nodename),
        field(&u.release),
        field(&u.version),
        b"riscv64".to_vec(),
        field(&u.domainname),
    ];
    let mut o = Out::<{ 6 * UTS_LEN }>::new();
    for (i, f) in fields.iter().enumerate() {
        o.bytes(i * UTS_LEN, &f[..f.len().min(UTS_LEN - 1)]);
    }
    c.process.mem.write_bytes(c.args[0], &o.0)?;
    Ok(0)
}

const RLIM_NLIMITS: u32 = 16;
const RLIMIT_STACK: u32 = 3;
const RLIMIT_NOFILE: u32 = 7;

/// The limit `res` as the guest sees it: `[soft, hard]`.
// The field types of libc's structures differ between host architectures.
#[allow(clippy::unnecessary_cast)]
fn get_limit(c: &Call<'_>, res: u32) -> Result<[u64; 2], Errno> {
    if let Some(v) = state::peek(c.process, |s| s.rlimits.iter().find(|e| e.0 == res).map(|e| e.1))
    {
        return Ok(v);
    }
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `r` is a live local `struct rlimit`.
    if unsafe { libc::getrlimit(res as _, &mut r) } < 0 {
        return Err(Errno::last());
    }
    let (cur, max) = (r.rlim_cur as u64, r.rlim_max as u64);
    Ok(match res {
        RLIMIT_STACK => [c.process.config.stack_size.min(max), max],
        RLIMIT_NOFILE => [cur.min(MAX_FDS as u64), max.min(MAX_FDS as u64)],
        _ => [cur, max],
    })
}

/// The body of `prlimit64` for the calling process.
fn prlimit(c: &mut Call<'_>, res: u32, new: u64, old: u64) -> SysResult {
    if res >= RLIM_NLIMITS {
        return err(libc::EINVAL);
    }
    let new = if new != 0 {
        let b = super::read_array::<16>(&c.process.mem, new)?;
        let cur = u64::from_le_bytes(super::le8(&b[..8]));
        let max = u64::from_le_bytes(super::le8(&b[8..]));
        if cur > max {
            return err(libc::EINVAL);
        }
        Some([cur, max])
    } else {
        None
    };
    let cur = get_limit(c, res)?;
    if let Some(n) = new {
        // SAFETY: geteuid has no preconditions.
        if n[1] > cur[1] && unsafe { libc::geteuid() } != 0 {
            return err(libc::EPERM);
        }
    }
    if old != 0 {
        super::write_pair(&c.process.mem, old, cur[0] as i64, cur[1] as i64)?;
    }
    if let Some(n) = new {
        state::with(c.process, |s| match s.rlimits.iter_mut().find(|e| e.0 == res) {
            Some(e) => e.1 = n,
            None => s.rlimits.push((res, n)),
        });
    }
    Ok(0)
}

/// `prlimit64(pid, resource, new_limit, old_limit)`: only the caller itself (`pid` 0 or its
/// own pid).
pub(super) fn prlimit64(c: &mut Call<'_>) -> SysResult {
    let pid = c.int(0);
    if pid != 0 && pid != c.process.pid {
        return err(libc::ESRCH);
    }
    prlimit(c, c.args[1] as u32, c.args[2], c.args[3])
}

/// `getrlimit(resource, rlim)`.
pub(super) fn getrlimit(c: &mut Call<'_>) -> SysResult {
    if c.args[1] == 0 {
        return err(libc::EFAULT);
    }
    prlimit(c, c.args[0] as u32, 0, c.args[1])
}

/// `setrlimit(resource, rlim)`.
pub(super) fn setrlimit(c: &mut Call<'_>) -> SysResult {
    if c.args[1] == 0 {
        return err(libc::EFAULT);
    }
    prlimit(c, c.args[0] as u32, c.args[1], 0)
}

/// `getrusage(who, usage)`: the host's numbers for the host process or thread running the
/// guest (144-byte `struct rusage`: two `timeval`s and fourteen longs).
// The field types of libc's structures differ between host architectures.
#[allow(clippy::unnecessary_cast)]
pub(super) fn getrusage(c: &mut Call<'_>) -> SysResult {
    let who = match c.int(0) {
        0 => libc::RUSAGE_SELF,
        -1 => libc::RUSAGE_CHILDREN,
        1 => libc::RUSAGE_THREAD,
        _ => return err(libc::EINVAL),
    };
    let mut r = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `r` is writable storage for one `struct rusage`.
    if unsafe { libc::getrusage(who, r.as_mut_ptr()) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: getrusage succeeded; every field is a plain integer.
    let r = unsafe { r.assume_init() };
    let mut o = Out::<144>::new();
    o.u64(0, r.ru_utime.tv_sec as u64);
    o.u64(8, r.ru_utime.tv_usec as u64);
    o.u64(16, r.ru_stime.tv_sec as u64);
    o.u64(24, r.ru_stime.tv_usec as u64);
    let longs = [
        r.ru_maxrss,
        r.ru_ixrss,
        r.ru_idrss,
        r.ru_isrss,
        r.ru_minflt,
        r.ru_majflt,
        r.ru_nswap,
        r.ru_inblock,
        r.ru_oublock,
        r.ru_msgsnd,
        r.ru_msgrcv,
        r.ru_nsignals,
        r.ru_nvcsw,
        r.ru_nivcsw,
    ];
    for (i, v) in longs.iter().enumerate() {
        o.u64(32 + 8 * i, *v as u64);
    }
    c.process.mem.write_bytes(c.args[1], &o.0)?;
    Ok(0)
}

/// `sysinfo(info)`: the host's (112-byte `struct sysinfo`).
// The field types of libc's structures differ between host architectures.
#[allow(clippy::unnecessary_cast)]
pub(super) fn sysinfo(c: &mut Call<'_>) -> SysResult {
    let mut s = std::mem::MaybeUninit::<libc::sysinfo>::zeroed();
    // SAFETY: `s` is writable storage for one `struct sysinfo`.
    if unsafe { libc::sysinfo(s.as_mut_ptr()) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: sysinfo succeeded; every field is a plain integer.
    let s = unsafe { s.assume_init() };
    let mut o = Out::<112>::new();
    o.u64(0, s.uptime as u64);
    for (i, l) in s.loads.iter().enumerate() {
        o.u64(8 + 8 * i, *l as u64);
    }
    o.u64(32, s.totalram as u64);
    o.u64(40, s.freeram as u64);
    o.u64(48, s.sharedram as u64);
    o.u64(56, s.bufferram as u64);
    o.u64(64, s.totalswap as u64);
    o.u64(72, s.freeswap as u64);
    o.u16(80, s.procs);
    o.u64(88, s.totalhigh as u64);
    o.u64(96, s.freehigh as u64);
    o.u32(104, s.mem_unit);
    c.process.mem.write_bytes(c.args[0], &o.0)?;
    Ok(0)
}

/// `umask(mask)`: returns the previous mask.
pub(super) fn umask(c: &mut Call<'_>) -> SysResult {
    let new = c.args[0] as u32 & 0o777;
    Ok(state::with(c.process, |s| std::mem::replace(&mut s.umask, new)) as u64)
}

const PR_SET_NAME: i32 = 15;
const PR_GET_NAME: i32 = 16;

/// `prctl(option, ...)`: `PR_SET_NAME` and `PR_GET_NAME`; everything else is `EINVAL`.
pub(super) fn prctl(c: &mut Call<'_>) -> SysResult {
    match c.int(0) {
        PR_SET_NAME => {
            let name = super::read_cstr(&c.process.mem, c.args[1], 15)?;
            let mut comm = [0u8; 16];
            comm[..name.len()].copy_from_slice(&name);
            state::with(c.process, |s| s.comm = comm);
            Ok(0)
        }
        PR_GET_NAME => {
            let comm = state::peek(c.process, |s| s.comm);
            c.process.mem.write_bytes(c.args[1], &comm)?;
            Ok(0)
        }
        option => {
            if super::first_time("prctl") {
                tracing::warn!(option, "unsupported prctl option; returning -EINVAL");
            }
            err(libc::EINVAL)
        }
    }
}

const GRND_NONBLOCK: u64 = 1;
const GRND_RANDOM: u64 = 2;
const GRND_INSECURE: u64 = 4;

/// `getrandom(buf, buflen, flags)`: from [`crate::process::Process::fill_random`] (seeded and
/// deterministic when the configuration has a seed).
pub(super) fn getrandom(c: &mut Call<'_>) -> SysResult {
    let (buf, len, flags) = (c.args[0], c.args[1].min(i32::MAX as u64), c.args[2] as u32 as u64);
    if flags & !(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) != 0
        || flags & (GRND_RANDOM | GRND_INSECURE) == GRND_RANDOM | GRND_INSECURE
    {
        return err(libc::EINVAL);
    }
    let n = super::accessible_prefix(&c.process.mem, buf, len, crate::memory::PERM_WRITE);
    if n == 0 && len != 0 {
        return err(libc::EFAULT);
    }
    let mut chunk = [0u8; 4096];
    let mut done = 0u64;
    while done < n {
        let k = (n - done).min(chunk.len() as u64) as usize;
        c.process.fill_random(&mut chunk[..k]);
        c.process.mem.write_bytes(buf + done, &chunk[..k])?;
        done += k as u64;
    }
    Ok(n)
}

/// `sched_getaffinity(pid, len, mask)`: the host's CPU set, as under qemu. Returns the number
/// of bytes written.
pub(super) fn sched_getaffinity(c: &mut Call<'_>) -> SysResult {
    let (pid, len, addr) = (c.int(0), c.args[1] as u32 as usize, c.args[2]);
    if pid != 0 && pid != c.process.pid && pid != c.thread.tid {
        return err(libc::ESRCH);
    }
    if len % 8 != 0 {
        return err(libc::EINVAL);
    }
    let mut buf = vec![0u8; len.min(8192)];
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, a live local buffer.
    let r = unsafe { libc::syscall(libc::SYS_sched_getaffinity, 0, buf.len(), buf.as_mut_ptr()) };
    if r < 0 {
        return Err(Errno::last());
    }
    let n = (r as usize).min(buf.len());
    c.process.mem.write_bytes(addr, &buf[..n])?;
    Ok(n as u64)
}
