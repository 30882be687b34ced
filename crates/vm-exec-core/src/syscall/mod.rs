//! The Linux system-call layer of a RISC-V (RV64, asm-generic ABI) guest.
//!
//! Engines call [`dispatch`] on `ecall`, after writing the complete register state into
//! `thread.cpu` and setting `thread.cpu.pc` to the instruction after the `ecall`. The number is
//! in `a7`, the arguments in `a0..a5`; the result (or `-errno`) is written to `a0`, and the
//! returned [`StopReason`] (if any) is how the engine stops: handlers say it directly
//! (`Call::stop`), in the type the engine returns, so nothing is translated on the way.
//!
//! Organisation: one table (`SYSCALLS` below, number → name → handler) that [`dispatch`] and
//! [`name_of`] both use; one module per idea:
//! - `fileops`: renames, links, modes, owners, times, `truncate`, `statfs`, `sendfile`,
//!   `fadvise64`;
//! - `fs`: file-descriptor I/O (read/write families, `lseek`, `ioctl`, `fcntl`, `dup`, pipes);
//! - `event`: event loops (`epoll_*`, `eventfd2`, `timerfd_*`, `ppoll`, `pselect6`) and the
//!   readiness waits that blocking calls park on;
//! - `net`: sockets (`AF_UNIX` always, `AF_INET`/`AF_INET6` with `ProcessConfig::network`);
//! - `path`: path resolution under the sandbox's allowed directories and the path-based calls
//!   (`openat`, `readlinkat`, `faccessat`, `getcwd`, ...);
//! - `stat`: `struct stat` / `struct statx` in the guest's layout;
//! - `mm`: `brk`, `mmap`, `munmap`, `mprotect`, `mremap`, `madvise`;
//! - `time`: clocks and sleeping;
//! - `signal`: `rt_sigaction`, `rt_sigprocmask`, `kill` and friends (signals are recorded,
//!   default actions are taken, handlers are never run);
//! - `thread`: `exit`, `futex`, `clone`/`clone3` (threads) and the per-thread bookkeeping;
//! - `info`: identity, limits and system information (`uname`, `getrlimit`, `sysinfo`, ...);
//! - `vfs`: the virtual `/dev` and `/proc`;
//! - `xattr`: reading extended attributes (`getxattr`, `listxattr` and their variants);
//! - `state`: per-process ABI state that [`Process`] has no field for (umask, name, limits,
//!   pending signals, alternate signal stacks).
//!
//! Invariants:
//! - No guest input ever panics the host: bad pointers give `-EFAULT`, bad descriptors
//!   `-EBADF`, malformed arguments `-EINVAL`, unknown numbers `-ENOSYS` (logged once per
//!   number with `tracing::warn!`).
//! - Guest memory is only touched through [`crate::memory::AddressSpace`]'s checked accessors;
//!   host calls that take a buffer get a pointer into a slice that those accessors returned.
//! - Host files are reached only through `path`'s resolution, which admits canonical paths
//!   below `ProcessConfig::allowed_dirs` and nothing else.
//! - Exit statuses carried by [`StopReason::ThreadExited`] and [`StopReason::Finished`] are
//!   already reduced to their low 8 bits, the value a parent would see through `wait`; a
//!   signal a call raises is reported at the `ecall`'s address.

mod event;
mod fileops;
mod fs;
mod info;
mod mm;
mod net;
mod path;
mod procs;
mod signal;
mod stat;
mod state;
pub mod strace;
mod thread;
mod time;
mod vfs;
mod xattr;

pub(crate) use fs::forget_host_fd;
pub(crate) use mm::add_file_map;
pub use path::resolve_in_root;

#[cfg(test)]
mod tests;

use crate::cpu::{reg, GuestThread};
use crate::exec::StopReason;
use crate::memory::{AddressSpace, MapError, MemFault, PAGE_SIZE};
use crate::process::Process;
use crate::sync::IgnorePoison;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// A positive Linux errno value. Handlers return `Err(Errno(..))`; [`dispatch`] stores
/// `-errno` in `a0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Errno(pub i32);

// The host's errno numbering is passed to the guest unchanged, which is right on hosts that use
// the asm-generic numbering (x86-64, AArch64, RISC-V). Refuse to build anywhere else.
const _: () = assert!(
    libc::EAGAIN == 11
        && libc::ENOSYS == 38
        && libc::ELOOP == 40
        && libc::ENOTSUP == 95
        && libc::ETIMEDOUT == 110
        && libc::EDEADLK == 35
);

impl From<MemFault> for Errno {
    fn from(_: MemFault) -> Self {
        Errno(libc::EFAULT)
    }
}

impl From<MapError> for Errno {
    fn from(e: MapError) -> Self {
        Errno(e.errno() as i32)
    }
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Self {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl Errno {
    /// The errno of the host call that just failed.
    pub(crate) fn last() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    }
}

/// What a handler returns: the value for `a0`, or an errno.
pub(crate) type SysResult = Result<u64, Errno>;

/// Shorthand for an error result.
pub(crate) fn err<T>(e: i32) -> Result<T, Errno> {
    Err(Errno(e))
}

/// One system call being handled.
pub(crate) struct Call<'a> {
    /// The calling thread (registers already saved, pc past the `ecall`).
    pub thread: &'a mut GuestThread,
    /// Its process (shared with its other threads).
    pub process: &'a Process,
    /// `a0..a5`.
    pub args: [u64; 6],
    /// How the engine stops after the call (`None`: the thread goes on); handlers that end,
    /// park or fork the thread set it.
    pub stop: Option<StopReason>,
    /// When this call is a readiness wait made again after its wait ended: that wait's
    /// deadline (see [`crate::futex::WaitKind::Ready`]).
    pub resume: Option<std::time::Instant>,
    /// When this call is a pipe write made again after its wait ended: the bytes it wrote
    /// before (see [`crate::futex::Waiter::write_progress`]).
    pub partial: u64,
}

impl Call<'_> {
    /// Argument `i` as the kernel's `int` (low 32 bits, sign-extended).
    pub fn int(&self, i: usize) -> i32 {
        self.args[i] as u32 as i32
    }

    /// Argument `i` as a file descriptor (an `int`), widened for [`crate::process::FdTable`].
    pub fn fd(&self, i: usize) -> i64 {
        self.int(i) as i64
    }
}

/// A system-call handler.
type Handler = fn(&mut Call<'_>) -> SysResult;

/// One entry of the system-call table.
struct Syscall {
    nr: u16,
    name: &'static str,
    handler: Handler,
}

const fn sc(nr: u16, name: &'static str, handler: Handler) -> Syscall {
    Syscall { nr, name, handler }
}

/// The system-call table: every call this layer knows, by RISC-V (asm-generic) number.
/// Numbers were checked against `<asm/unistd.h>` of the riscv64 toolchain.
const SYSCALLS: &[Syscall] = &[
    sc(8, "getxattr", xattr::getxattr),
    sc(9, "lgetxattr", xattr::lgetxattr),
    sc(10, "fgetxattr", xattr::fgetxattr),
    sc(11, "listxattr", xattr::listxattr),
    sc(12, "llistxattr", xattr::llistxattr),
    sc(13, "flistxattr", xattr::flistxattr),
    sc(17, "getcwd", path::getcwd),
    sc(19, "eventfd2", event::eventfd2),
    sc(20, "epoll_create1", event::epoll_create1),
    sc(21, "epoll_ctl", event::epoll_ctl),
    sc(22, "epoll_pwait", event::epoll_pwait),
    sc(23, "dup", fs::dup),
    sc(24, "dup3", fs::dup3),
    sc(25, "fcntl", fs::fcntl),
    sc(29, "ioctl", fs::ioctl),
    sc(34, "mkdirat", path::mkdirat),
    sc(35, "unlinkat", path::unlinkat),
    sc(36, "symlinkat", fileops::symlinkat),
    sc(37, "linkat", fileops::linkat),
    sc(43, "statfs", fileops::statfs),
    sc(44, "fstatfs", fileops::fstatfs),
    sc(45, "truncate", fileops::truncate),
    sc(46, "ftruncate", fs::ftruncate),
    sc(48, "faccessat", path::faccessat),
    sc(49, "chdir", path::chdir),
    sc(50, "fchdir", path::fchdir),
    sc(52, "fchmod", fileops::fchmod),
    sc(53, "fchmodat", fileops::fchmodat),
    sc(54, "fchownat", fileops::fchownat),
    sc(55, "fchown", fileops::fchown),
    sc(56, "openat", path::openat),
    sc(57, "close", fs::close),
    sc(59, "pipe2", fs::pipe2),
    sc(61, "getdents64", fs::getdents64),
    sc(62, "lseek", fs::lseek),
    sc(63, "read", fs::read),
    sc(64, "write", fs::write),
    sc(65, "readv", fs::readv),
    sc(66, "writev", fs::writev),
    sc(67, "pread64", fs::pread64),
    sc(68, "pwrite64", fs::pwrite64),
    sc(71, "sendfile", fileops::sendfile),
    sc(72, "pselect6", event::pselect6),
    sc(73, "ppoll", event::ppoll),
    sc(74, "signalfd4", signal::signalfd4),
    sc(78, "readlinkat", path::readlinkat),
    sc(79, "newfstatat", stat::newfstatat),
    sc(80, "fstat", stat::fstat),
    sc(82, "fsync", fs::fsync),
    sc(83, "fdatasync", fs::fsync),
    sc(85, "timerfd_create", event::timerfd_create),
    sc(86, "timerfd_settime", event::timerfd_settime),
    sc(87, "timerfd_gettime", event::timerfd_gettime),
    sc(88, "utimensat", fileops::utimensat),
    sc(93, "exit", thread::exit),
    sc(94, "exit_group", thread::exit_group),
    sc(95, "waitid", procs::waitid),
    sc(96, "set_tid_address", thread::set_tid_address),
    sc(98, "futex", thread::futex),
    sc(99, "set_robust_list", thread::set_robust_list),
    sc(100, "get_robust_list", thread::get_robust_list),
    sc(101, "nanosleep", time::nanosleep),
    sc(102, "getitimer", time::getitimer),
    sc(103, "setitimer", time::setitimer),
    sc(113, "clock_gettime", time::clock_gettime),
    sc(114, "clock_getres", time::clock_getres),
    sc(115, "clock_nanosleep", time::clock_nanosleep),
    sc(123, "sched_getaffinity", info::sched_getaffinity),
    sc(124, "sched_yield", time::sched_yield),
    sc(129, "kill", signal::kill),
    sc(130, "tkill", signal::tkill),
    sc(131, "tgkill", signal::tgkill),
    sc(132, "sigaltstack", signal::sigaltstack),
    sc(133, "rt_sigsuspend", signal::rt_sigsuspend),
    sc(134, "rt_sigaction", signal::rt_sigaction),
    sc(135, "rt_sigprocmask", signal::rt_sigprocmask),
    sc(136, "rt_sigpending", signal::rt_sigpending),
    sc(137, "rt_sigtimedwait", signal::rt_sigtimedwait),
    sc(138, "rt_sigqueueinfo", signal::rt_sigqueueinfo),
    sc(139, "rt_sigreturn", signal::rt_sigreturn),
    sc(154, "setpgid", procs::setpgid),
    sc(155, "getpgid", procs::getpgid),
    sc(156, "getsid", procs::getsid),
    sc(157, "setsid", procs::setsid),
    sc(158, "getgroups", procs::getgroups),
    sc(160, "uname", info::uname),
    sc(163, "getrlimit", info::getrlimit),
    sc(164, "setrlimit", info::setrlimit),
    sc(165, "getrusage", info::getrusage),
    sc(166, "umask", info::umask),
    sc(167, "prctl", info::prctl),
    sc(169, "gettimeofday", time::gettimeofday),
    sc(172, "getpid", info::getpid),
    sc(173, "getppid", procs::getppid),
    sc(174, "getuid", info::getuid),
    sc(175, "geteuid", info::geteuid),
    sc(176, "getgid", info::getgid),
    sc(177, "getegid", info::getegid),
    sc(178, "gettid", info::gettid),
    sc(179, "sysinfo", info::sysinfo),
    sc(198, "socket", net::socket),
    sc(199, "socketpair", net::socketpair),
    sc(200, "bind", net::bind),
    sc(201, "listen", net::listen),
    sc(202, "accept", net::accept),
    sc(203, "connect", net::connect),
    sc(204, "getsockname", net::getsockname),
    sc(205, "getpeername", net::getpeername),
    sc(206, "sendto", net::sendto),
    sc(207, "recvfrom", net::recvfrom),
    sc(208, "setsockopt", net::setsockopt),
    sc(209, "getsockopt", net::getsockopt),
    sc(210, "shutdown", net::shutdown),
    sc(211, "sendmsg", net::sendmsg),
    sc(212, "recvmsg", net::recvmsg),
    sc(214, "brk", mm::brk),
    sc(215, "munmap", mm::munmap),
    sc(216, "mremap", mm::mremap),
    sc(220, "clone", thread::clone),
    sc(221, "execve", procs::execve),
    sc(222, "mmap", mm::mmap),
    sc(223, "fadvise64", fileops::fadvise64),
    sc(226, "mprotect", mm::mprotect),
    sc(233, "madvise", mm::madvise),
    sc(240, "rt_tgsigqueueinfo", signal::rt_tgsigqueueinfo),
    sc(242, "accept4", net::accept4),
    sc(259, "riscv_flush_icache", mm::riscv_flush_icache),
    sc(260, "wait4", procs::wait4),
    sc(261, "prlimit64", info::prlimit64),
    sc(276, "renameat2", fileops::renameat2),
    sc(278, "getrandom", info::getrandom),
    sc(281, "execveat", procs::execveat),
    sc(283, "membarrier", thread::membarrier),
    sc(291, "statx", stat::statx),
    sc(293, "rseq", thread::rseq),
    sc(435, "clone3", thread::clone3),
    sc(436, "close_range", fs::close_range),
    sc(439, "faccessat2", path::faccessat2),
    sc(441, "epoll_pwait2", event::epoll_pwait2),
];

/// Size of the direct lookup table (one past the highest number in [`SYSCALLS`], rounded).
const INDEX_SIZE: usize = 512;

/// `INDEX[nr]` is the position of `nr` in [`SYSCALLS`], or `u16::MAX`.
static INDEX: [u16; INDEX_SIZE] = {
    let mut t = [u16::MAX; INDEX_SIZE];
    let mut i = 0;
    while i < SYSCALLS.len() {
        let nr = SYSCALLS[i].nr as usize;
        assert!(nr < INDEX_SIZE && t[nr] == u16::MAX, "syscall table: bad or duplicate number");
        t[nr] = i as u16;
        i += 1;
    }
    t
};

fn lookup(nr: u64) -> Option<&'static Syscall> {
    let i = *INDEX.get(usize::try_from(nr).ok()?)?;
    SYSCALLS.get(i as usize)
}

/// The name of system call `nr` (RISC-V Linux numbering), if this layer implements it.
pub fn name_of(nr: u64) -> Option<&'static str> {
    lookup(nr).map(|s| s.name)
}

/// Every system call this layer implements, as `(number, name)`, in increasing number order.
pub fn implemented() -> impl Iterator<Item = (u64, &'static str)> {
    SYSCALLS.iter().map(|s| (s.nr as u64, s.name))
}

/// Handles the system call `thread` just made (number in `a7`, arguments in `a0..a5`), writes
/// its result to `a0` and says what the engine must do next. Never panics on guest input.
///
/// In a process that is ending ([`Process::is_exiting`]) no call is performed: the calling
/// thread ends, as a thread entering the kernel after another called `exit_group` would.
pub fn dispatch(thread: &mut GuestThread, process: &Process) -> Option<StopReason> {
    if process.is_exiting() {
        return Some(StopReason::ThreadExited(0));
    }
    // `ecall` has no compressed form: it is always the 4 bytes before the return address.
    let nr = thread.cpu.x[reg::A7];
    let a = &thread.cpu.x[reg::A0..reg::A0 + 6];
    let args = [a[0], a[1], a[2], a[3], a[4], a[5]];
    let trace = process.config.strace.as_ref();
    if let Some(sink) = trace {
        strace::enter(sink, &process.mem, process.pid, thread.tid, nr, &args);
    }
    let resume = thread.resume_deadline.take();
    let partial = std::mem::take(&mut thread.resume_partial);
    let mut call = Call { thread, process, args, stop: None, resume, partial };
    let result = match lookup(nr) {
        Some(s) => {
            let r = (s.handler)(&mut call);
            tracing::trace!(
                nr,
                name = s.name,
                a0 = args[0],
                a1 = args[1],
                a2 = args[2],
                a3 = args[3],
                result = ?r,
                "syscall"
            );
            r
        }
        None => {
            warn_unknown(nr, &args);
            err(libc::ENOSYS)
        }
    };
    let a0 = match result {
        Ok(v) => v,
        Err(Errno(e)) => (-(e as i64)) as u64,
    };
    call.thread.cpu.x[reg::A0] = a0;
    if let Some(sink) = trace {
        let tid = call.thread.tid;
        strace::leave(sink, &process.mem, process.pid, tid, nr, &args, a0, &call.stop);
    }
    // Writes, sends and closes may make a sibling thread's parked readiness wait ready.
    if matches!(nr, 57 | 64 | 66 | 68 | 203 | 206 | 210 | 211) && process.is_scheduled() {
        process.futexes.poke_ready();
    }
    if call.stop.is_none() {
        // Signals the call sent to this thread, or unblocked, are delivered before it
        // returns to the guest; one that kills is reported at the `ecall`.
        let after = call.thread.cpu.pc;
        let mut stop = crate::signals::deliver(process, call.thread);
        if let Some(StopReason::Finished(crate::exec::GuestExit::Signaled(s))) = &mut stop {
            if s.pc == after {
                s.pc = after.wrapping_sub(4);
            }
        }
        return stop;
    }
    call.stop
}

/// Logs an unknown system call, once per number.
fn warn_unknown(nr: u64, args: &[u64; 6]) {
    static SEEN: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());
    let first = SEEN.lock().ignore_poison().insert(nr);
    if first {
        tracing::warn!(nr, ?args, "unimplemented system call; returning -ENOSYS");
    } else {
        tracing::debug!(nr, "unimplemented system call");
    }
}

/// True the first time it is called with `key` in this host process: for "warn once" logs.
pub(crate) fn first_time(key: &'static str) -> bool {
    static SEEN: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    SEEN.lock().ignore_poison().insert(key)
}

/// Linux's cap on one read or write (`MAX_RW_COUNT`).
pub(crate) const MAX_RW_COUNT: u64 = 0x7fff_f000;

/// How many bytes from `addr` (at most `len`) the guest may access with permission `need`
/// (a `PERM_*` bit): the transfer a Linux copy to or from user memory would make before it
/// faults.
pub(crate) fn accessible_prefix(mem: &AddressSpace, addr: u64, len: u64, need: u8) -> u64 {
    let size = mem.size();
    let mut done = 0u64;
    while done < len {
        let a = match addr.checked_add(done) {
            Some(a) if a < size => a,
            _ => break,
        };
        if mem.page_perms(a) & need != need {
            break;
        }
        let page_end = (a | (PAGE_SIZE - 1)) + 1;
        done += (page_end - a).min(len - done);
    }
    done
}

/// Reads `N` guest bytes (any alignment, may cross pages).
pub(crate) fn read_array<const N: usize>(mem: &AddressSpace, addr: u64) -> Result<[u8; N], Errno> {
    let mut out = [0u8; N];
    mem.read_bytes(addr, &mut out)?;
    Ok(out)
}

/// Reads a NUL-terminated guest string of at most `max` bytes. Checks the address first:
/// `AddressSpace::read_cstr` computes the end of the first page without overflow checks, so an
/// address near `u64::MAX` must never reach it.
pub(crate) fn read_cstr(mem: &AddressSpace, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
    if addr >= mem.size() {
        return err(libc::EFAULT);
    }
    Ok(mem.read_cstr(addr, max)?)
}

/// Reads a guest `u64` (any alignment).
pub(crate) fn read_u64(mem: &AddressSpace, addr: u64) -> Result<u64, Errno> {
    read_array::<8>(mem, addr).map(u64::from_le_bytes)
}

/// Reads a guest `struct timespec` and checks it like the kernel (`EINVAL` when
/// `tv_nsec` is out of range or `tv_sec` negative).
pub(crate) fn read_timespec(mem: &AddressSpace, addr: u64) -> Result<(i64, i64), Errno> {
    let b = read_array::<16>(mem, addr)?;
    let sec = i64::from_le_bytes(le8(&b[..8]));
    let nsec = i64::from_le_bytes(le8(&b[8..]));
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return err(libc::EINVAL);
    }
    Ok((sec, nsec))
}

/// Writes a guest `struct timespec` (or `timeval`: both are two 64-bit words on RV64).
pub(crate) fn write_pair(mem: &AddressSpace, addr: u64, a: i64, b: i64) -> Result<(), Errno> {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    mem.write_bytes(addr, &out)?;
    Ok(())
}

/// The first 8 bytes of `b` as an array (zero-padded if shorter).
pub(crate) fn le8(b: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    let n = b.len().min(8);
    out[..n].copy_from_slice(&b[..n]);
    out
}

/// Little-endian serialisation of a guest structure at fixed offsets.
pub(crate) struct Out<const N: usize>(pub [u8; N]);

impl<const N: usize> Out<N> {
    /// A zeroed structure.
    pub fn new() -> Self {
        Out([0; N])
    }
    /// Puts the low `width` bytes of `v` at `off` (ignored if out of range: a layout bug, not
    /// a guest error, and never a panic).
    pub fn put(&mut self, off: usize, width: usize, v: u64) {
        if let Some(dst) = self.0.get_mut(off..off + width) {
            dst.copy_from_slice(&v.to_le_bytes()[..width]);
        }
    }
    /// Puts a 64-bit value.
    pub fn u64(&mut self, off: usize, v: u64) {
        self.put(off, 8, v);
    }
    /// Puts a 32-bit value.
    pub fn u32(&mut self, off: usize, v: u32) {
        self.put(off, 4, v as u64);
    }
    /// Puts a 16-bit value.
    pub fn u16(&mut self, off: usize, v: u16) {
        self.put(off, 2, v as u64);
    }
    /// Copies `bytes` at `off`, truncated to fit.
    pub fn bytes(&mut self, off: usize, bytes: &[u8]) {
        if off < N {
            let n = bytes.len().min(N - off);
            self.0[off..off + n].copy_from_slice(&bytes[..n]);
        }
    }
}
