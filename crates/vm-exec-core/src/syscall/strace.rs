//! `--strace`: one line per system call in `qemu-riscv64 -strace`'s format.
//!
//! [`dispatch`](super::dispatch) calls `enter` before a handler runs and `leave` after
//! it, when the process's [`ProcessConfig::strace`](crate::process::ProcessConfig::strace)
//! holds a [`StraceSink`]. The text follows qemu 7.2's `linux-user/strace.c` and
//! `strace.list` (checked against the installed qemu with a probe that makes every system
//! call): `PID name(args)` is written before the call, so the guest's own output to the same
//! stream lands between it and ` = result`, exactly as under qemu; `exit` and `exit_group`
//! end their line themselves; numbers qemu does not know print `Unknown syscall N`.
//! A signal taken by a handler or a fatal default action prints qemu's
//! `--- SIGxxx {si_signo=..., si_code=..., ...} ---` line ([`crate::signals`] calls
//! `signal_taken`), with the guest's pids.
//!
//! Why this file is long: it is one table of formats, mirroring qemu's `strace.list` and
//! `strace.c` (a printer per call family, flag tables, result printers); splitting it by
//! call family would scatter the one place to compare against qemu's text.
//!
//! Invariants:
//! - Formatting reads guest memory only through checked accessors; an unreadable string or
//!   structure prints as a pointer, as qemu does. Nothing here can fault the guest or panic.
//! - A call that blocks ([`StopReason::Blocked`]) prints its result when the waiter is
//!   completed (`after_wait`, called from [`Waiter::complete`]); a readiness wait that
//!   restarts its call prints neither a second entry nor an intermediate result.
//! - Each piece is written with one `write_all` on the sink under its lock, so lines of
//!   different threads interleave only at the points qemu's would.

use crate::exec::{GuestExit, StopReason};
use crate::futex::Waiter;
use crate::memory::AddressSpace;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Where `--strace` lines go: a host stream shared by every thread and process of a run.
pub struct StraceSink {
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for StraceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StraceSink")
    }
}

impl StraceSink {
    /// A sink writing to `out` (each piece is flushed at once).
    pub fn new(out: impl Write + Send + 'static) -> Arc<StraceSink> {
        Arc::new(StraceSink { out: Mutex::new(Box::new(out)) })
    }

    /// A sink writing to the host's standard error, like `qemu-riscv64 -strace`.
    pub fn stderr() -> Arc<StraceSink> {
        StraceSink::new(std::io::stderr())
    }

    /// Writes `bytes` and flushes; write errors are ignored (tracing never stops a guest).
    pub fn emit(&self, bytes: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }
}

/// qemu 7.2 handles `riscv_flush_icache` without tracing it: neither entry nor result.
const RISCV_FLUSH_ICACHE: u64 = 259;

/// A blocked call whose result is printed when its waiter completes.
struct Pending {
    sink: Arc<StraceSink>,
    pid: i32,
    tid: i32,
    /// Keeps the waiter alive, so its address identifies it until it completes.
    _waiter: Arc<Waiter>,
}

/// True once any process traced a blocking call: keeps [`after_wait`] free for everyone else.
static ANY_PENDING: AtomicBool = AtomicBool::new(false);
/// Blocked traced calls, by waiter address.
static PENDING: Mutex<Option<HashMap<usize, Pending>>> = Mutex::new(None);
/// Threads (pid, tid) whose next call restarts a traced call whose entry is printed.
static RESTARTING: Mutex<Option<HashSet<(i32, i32)>>> = Mutex::new(None);

/// Prints `PID name(args)` for the call about to run (nothing when it restarts a call whose
/// entry was already printed).
pub(crate) fn enter(
    sink: &StraceSink,
    mem: &AddressSpace,
    pid: i32,
    tid: i32,
    nr: u64,
    args: &[u64; 6],
) {
    if nr == RISCV_FLUSH_ICACHE {
        return;
    }
    if ANY_PENDING.load(Ordering::Relaxed) {
        let mut r = RESTARTING.lock().unwrap_or_else(|e| e.into_inner());
        if r.as_mut().is_some_and(|set| set.remove(&(pid, tid))) {
            return;
        }
    }
    let mut out = format!("{pid} ").into_bytes();
    format_call(&mut out, mem, nr, args);
    sink.emit(&out);
}

/// Prints the result of the call that just ran (`a0` holds it), or arranges for it to be
/// printed when a blocked call completes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn leave(
    sink: &Arc<StraceSink>,
    mem: &AddressSpace,
    pid: i32,
    tid: i32,
    nr: u64,
    args: &[u64; 6],
    a0: u64,
    stop: &Option<StopReason>,
) {
    match stop {
        // qemu prints nothing after these: the thread or process is gone (`exit` and
        // `exit_group` end their own line).
        Some(StopReason::ThreadExited(_)) | Some(StopReason::Finished(GuestExit::Exited(_))) => {
            if !matches!(nr, 93 | 94) {
                sink.emit(b"\n");
            }
        }
        Some(StopReason::Blocked(w)) => {
            ANY_PENDING.store(true, Ordering::Relaxed);
            let key = Arc::as_ptr(w) as usize;
            let p = Pending { sink: sink.clone(), pid, tid, _waiter: w.clone() };
            PENDING
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(HashMap::new)
                .insert(key, p);
        }
        _ => {
            if lookup(nr).is_some() && nr != RISCV_FLUSH_ICACHE {
                let mut out = Vec::new();
                format_result(&mut out, Some(mem), nr, args, a0);
                sink.emit(&out);
            }
        }
    }
}

/// Called by [`Waiter::complete`] after it wrote the result: prints the result of a traced
/// call that blocked on `waiter`, or, when the call restarts, remembers not to print its
/// entry again. `restarted` says the thread goes back to its `ecall`.
pub(crate) fn after_wait(waiter: &Waiter, a0: u64, restarted: bool) {
    if !ANY_PENDING.load(Ordering::Relaxed) {
        return;
    }
    let key = waiter as *const Waiter as usize;
    let p = match PENDING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .and_then(|m| m.remove(&key))
    {
        Some(p) => p,
        None => return,
    };
    if restarted {
        RESTARTING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert((p.pid, p.tid));
        return;
    }
    let mut out = Vec::new();
    format_plain_result(&mut out, a0);
    p.sink.emit(&out);
}

/// qemu's name for system call `nr` (RISC-V numbering), `None` for numbers its `-strace`
/// does not know (it prints `Unknown syscall N`).
pub fn qemu_name(nr: u64) -> Option<&'static str> {
    lookup(nr)
}

fn lookup(nr: u64) -> Option<&'static str> {
    Some(match nr {
        0 => "io_setup",
        1 => "io_destroy",
        2 => "io_submit",
        3 => "io_cancel",
        4 => "io_getevents",
        5 => "setxattr",
        6 => "lsetxattr",
        7 => "fsetxattr",
        8 => "getxattr",
        9 => "lgetxattr",
        10 => "fgetxattr",
        11 => "listxattr",
        12 => "llistxattr",
        13 => "flistxattr",
        14 => "removexattr",
        15 => "lremovexattr",
        16 => "fremovexattr",
        17 => "getcwd",
        18 => "lookup_dcookie",
        19 => "eventfd2",
        20 => "epoll_create1",
        21 => "epoll_ctl",
        22 => "epoll_pwait",
        23 => "dup",
        24 => "dup3",
        25 => "fcntl",
        26 => "inotify_init1",
        27 => "inotify_add_watch",
        28 => "inotify_rm_watch",
        29 => "ioctl",
        30 => "ioprio_set",
        31 => "ioprio_get",
        32 => "flock",
        33 => "mknodat",
        34 => "mkdirat",
        35 => "unlinkat",
        36 => "symlinkat",
        37 => "linkat",
        39 => "umount2",
        40 => "mount",
        41 => "pivot_root",
        42 => "nfsservctl",
        43 => "statfs",
        44 => "fstatfs",
        45 => "truncate",
        46 => "ftruncate",
        47 => "fallocate",
        48 => "faccessat",
        49 => "chdir",
        50 => "fchdir",
        51 => "chroot",
        52 => "fchmod",
        53 => "fchmodat",
        54 => "fchownat",
        55 => "fchown",
        56 => "openat",
        57 => "close",
        58 => "vhangup",
        59 => "pipe2",
        60 => "quotactl",
        61 => "getdents64",
        62 => "lseek",
        63 => "read",
        64 => "write",
        65 => "readv",
        66 => "writev",
        67 => "pread64",
        68 => "pwrite64",
        69 => "preadv",
        70 => "pwritev",
        71 => "sendfile",
        72 => "pselect6",
        73 => "ppoll",
        74 => "signalfd4",
        75 => "vmsplice",
        76 => "splice",
        77 => "tee",
        78 => "readlinkat",
        79 => "newfstatat",
        80 => "fstat",
        81 => "sync",
        82 => "fsync",
        83 => "fdatasync",
        84 => "sync_file_range",
        85 => "timerfd_create",
        86 => "timerfd_settime",
        87 => "timerfd_gettime",
        88 => "utimensat",
        89 => "acct",
        90 => "capget",
        91 => "capset",
        92 => "personality",
        93 => "exit",
        94 => "exit_group",
        95 => "waitid",
        96 => "set_tid_address",
        97 => "unshare",
        98 => "futex",
        99 => "set_robust_list",
        100 => "get_robust_list",
        101 => "nanosleep",
        102 => "getitimer",
        103 => "setitimer",
        104 => "kexec_load",
        105 => "init_module",
        106 => "delete_module",
        107 => "timer_create",
        108 => "timer_gettime",
        109 => "timer_getoverrun",
        110 => "timer_settime",
        111 => "timer_delete",
        112 => "clock_settime",
        113 => "clock_gettime",
        114 => "clock_getres",
        115 => "clock_nanosleep",
        116 => "syslog",
        117 => "ptrace",
        118 => "sched_setparam",
        119 => "sched_setscheduler",
        120 => "sched_getscheduler",
        121 => "sched_getparam",
        122 => "sched_setaffinity",
        123 => "sched_getaffinity",
        124 => "sched_yield",
        125 => "sched_get_priority_max",
        126 => "sched_get_priority_min",
        127 => "sched_rr_get_interval",
        128 => "restart_syscall",
        129 => "kill",
        130 => "tkill",
        131 => "tgkill",
        132 => "sigaltstack",
        133 => "rt_sigsuspend",
        134 => "rt_sigaction",
        135 => "rt_sigprocmask",
        136 => "rt_sigpending",
        137 => "rt_sigtimedwait",
        138 => "rt_sigqueueinfo",
        139 => "rt_sigreturn",
        140 => "setpriority",
        141 => "getpriority",
        142 => "reboot",
        143 => "setregid",
        144 => "setgid",
        145 => "setreuid",
        146 => "setuid",
        147 => "setresuid",
        148 => "getresuid",
        149 => "setresgid",
        150 => "getresgid",
        151 => "setfsuid",
        152 => "setfsgid",
        153 => "times",
        154 => "setpgid",
        155 => "getpgid",
        156 => "getsid",
        157 => "setsid",
        158 => "getgroups",
        159 => "setgroups",
        160 => "uname",
        161 => "sethostname",
        162 => "setdomainname",
        163 => "getrlimit",
        164 => "setrlimit",
        165 => "getrusage",
        166 => "umask",
        167 => "prctl",
        168 => "getcpu",
        169 => "gettimeofday",
        170 => "settimeofday",
        171 => "adjtimex",
        172 => "getpid",
        173 => "getppid",
        174 => "getuid",
        175 => "geteuid",
        176 => "getgid",
        177 => "getegid",
        178 => "gettid",
        179 => "sysinfo",
        180 => "mq_open",
        181 => "mq_unlink",
        182 => "mq_timedsend",
        183 => "mq_timedreceive",
        184 => "mq_notify",
        185 => "mq_getsetattr",
        186 => "msgget",
        187 => "msgctl",
        188 => "msgrcv",
        189 => "msgsnd",
        190 => "semget",
        191 => "semctl",
        192 => "semtimedop",
        193 => "semop",
        194 => "shmget",
        195 => "shmctl",
        196 => "shmat",
        197 => "shmdt",
        198 => "socket",
        199 => "socketpair",
        200 => "bind",
        201 => "listen",
        202 => "accept",
        203 => "connect",
        204 => "getsockname",
        205 => "getpeername",
        206 => "sendto",
        207 => "recvfrom",
        208 => "setsockopt",
        209 => "getsockopt",
        210 => "shutdown",
        211 => "sendmsg",
        212 => "recvmsg",
        213 => "readahead",
        214 => "brk",
        215 => "munmap",
        216 => "mremap",
        217 => "add_key",
        218 => "request_key",
        219 => "keyctl",
        220 => "clone",
        221 => "execve",
        222 => "mmap",
        223 => "fadvise64",
        224 => "swapon",
        225 => "swapoff",
        226 => "mprotect",
        227 => "msync",
        228 => "mlock",
        229 => "munlock",
        230 => "mlockall",
        231 => "munlockall",
        232 => "mincore",
        233 => "madvise",
        234 => "remap_file_pages",
        235 => "mbind",
        236 => "get_mempolicy",
        237 => "set_mempolicy",
        238 => "migrate_pages",
        239 => "move_pages",
        240 => "rt_tgsigqueueinfo",
        241 => "perf_event_open",
        242 => "accept4",
        243 => "recvmmsg",
        260 => "wait4",
        261 => "prlimit64",
        262 => "fanotify_init",
        263 => "fanotify_mark",
        264 => "name_to_handle_at",
        266 => "clock_adjtime",
        267 => "syncfs",
        268 => "setns",
        269 => "sendmmsg",
        270 => "process_vm_readv",
        271 => "process_vm_writev",
        272 => "kcmp",
        273 => "finit_module",
        275 => "sched_getattr",
        276 => "renameat2",
        277 => "seccomp",
        278 => "getrandom",
        279 => "memfd_create",
        280 => "bpf",
        281 => "execveat",
        282 => "userfaultfd",
        283 => "membarrier",
        284 => "mlock2",
        285 => "copy_file_range",
        291 => "statx",
        424 => "pidfd_send_signal",
        434 => "pidfd_open",
        436 => "close_range",
        438 => "pidfd_getfd",
        439 => "faccessat2",
        _ => return None,
    })
}

/// Flag tables: (value, name), in qemu's order.
type Flags = &'static [(u64, &'static str)];

const ACCESS_FLAGS: Flags = &[(0, "F_OK"), (4, "R_OK"), (2, "W_OK"), (1, "X_OK")];
const AT_FILE_FLAGS: Flags = &[(0x200, "AT_EACCESS"), (0x100, "AT_SYMLINK_NOFOLLOW")];
const UNLINKAT_FLAGS: Flags = &[(0x200, "AT_REMOVEDIR")];
const OPEN_ACCESS_FLAGS: Flags = &[(0, "O_RDONLY"), (1, "O_WRONLY"), (2, "O_RDWR")];
const OPEN_FLAGS: Flags = &[
    (0x400, "O_APPEND"),
    (0x40, "O_CREAT"),
    (0x10000, "O_DIRECTORY"),
    (0x80, "O_EXCL"),
    (0x8000, "O_LARGEFILE"),
    (0x100, "O_NOCTTY"),
    (0x20000, "O_NOFOLLOW"),
    (0x800, "O_NONBLOCK"),
    (0x1000, "O_DSYNC"),
    (0x100000, "__O_SYNC"),
    (0x200, "O_TRUNC"),
    (0x4000, "O_DIRECT"),
    (0x40000, "O_NOATIME"),
    (0x80000, "O_CLOEXEC"),
    (0x200000, "O_PATH"),
    (0x410000, "O_TMPFILE"),
    (0x400000, "__O_TMPFILE"),
];
const MODE_FLAGS: Flags = &[
    (0o140000, "S_IFSOCK"),
    (0o120000, "S_IFLNK"),
    (0o100000, "S_IFREG"),
    (0o60000, "S_IFBLK"),
    (0o40000, "S_IFDIR"),
    (0o20000, "S_IFCHR"),
    (0o10000, "S_IFIFO"),
];
const MOUNT_FLAGS: Flags = &[
    (4096, "MS_BIND"),
    (128, "MS_DIRSYNC"),
    (64, "MS_MANDLOCK"),
    (8192, "MS_MOVE"),
    (1024, "MS_NOATIME"),
    (4, "MS_NODEV"),
    (2048, "MS_NODIRATIME"),
    (8, "MS_NOEXEC"),
    (2, "MS_NOSUID"),
    (1, "MS_RDONLY"),
    (1 << 21, "MS_RELATIME"),
    (32, "MS_REMOUNT"),
    (16, "MS_SYNCHRONOUS"),
];
const UMOUNT2_FLAGS: Flags = &[(1, "MNT_FORCE"), (2, "MNT_DETACH"), (4, "MNT_EXPIRE")];
const PROT_FLAGS: Flags = &[
    (0, "PROT_NONE"),
    (4, "PROT_EXEC"),
    (1, "PROT_READ"),
    (2, "PROT_WRITE"),
    (8, "PROT_SEM"),
    (0x0100_0000, "PROT_GROWSDOWN"),
    (0x0200_0000, "PROT_GROWSUP"),
];
const MMAP_FLAGS: Flags = &[
    (0x01, "MAP_SHARED"),
    (0x02, "MAP_PRIVATE"),
    (0x20, "MAP_ANONYMOUS"),
    (0x0800, "MAP_DENYWRITE"),
    (0x10, "MAP_FIXED"),
    (0x0100, "MAP_GROWSDOWN"),
    (0x1000, "MAP_EXECUTABLE"),
    (0x2000, "MAP_LOCKED"),
    (0x10000, "MAP_NONBLOCK"),
    (0x4000, "MAP_NORESERVE"),
    (0x8000, "MAP_POPULATE"),
];
const CLONE_FLAGS: Flags = &[
    (0x100, "CLONE_VM"),
    (0x200, "CLONE_FS"),
    (0x400, "CLONE_FILES"),
    (0x800, "CLONE_SIGHAND"),
    (0x2000, "CLONE_PTRACE"),
    (0x4000, "CLONE_VFORK"),
    (0x8000, "CLONE_PARENT"),
    (0x10000, "CLONE_THREAD"),
    (0x20000, "CLONE_NEWNS"),
    (0x40000, "CLONE_SYSVSEM"),
    (0x80000, "CLONE_SETTLS"),
    (0x100000, "CLONE_PARENT_SETTID"),
    (0x200000, "CLONE_CHILD_CLEARTID"),
    (0x400000, "CLONE_DETACHED"),
    (0x800000, "CLONE_UNTRACED"),
    (0x1000000, "CLONE_CHILD_SETTID"),
    (0x4000000, "CLONE_NEWUTS"),
    (0x8000000, "CLONE_NEWIPC"),
    (0x10000000, "CLONE_NEWUSER"),
    (0x20000000, "CLONE_NEWPID"),
    (0x40000000, "CLONE_NEWNET"),
    (0x80000000, "CLONE_IO"),
];
const STATX_FLAGS: Flags = &[
    (0x1000, "AT_EMPTY_PATH"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0, "AT_STATX_SYNC_AS_STAT"),
    (0x2000, "AT_STATX_FORCE_SYNC"),
    (0x4000, "AT_STATX_DONT_SYNC"),
];
const STATX_MASK: Flags = &[
    (0xfff, "STATX_ALL"),
    (0x7ff, "STATX_BASIC_STATS"),
    (0x1, "STATX_TYPE"),
    (0x2, "STATX_MODE"),
    (0x4, "STATX_NLINK"),
    (0x8, "STATX_UID"),
    (0x10, "STATX_GID"),
    (0x20, "STATX_ATIME"),
    (0x40, "STATX_MTIME"),
    (0x80, "STATX_CTIME"),
    (0x100, "STATX_INO"),
    (0x200, "STATX_SIZE"),
    (0x400, "STATX_BLOCKS"),
    (0x800, "STATX_BTIME"),
];
const MLOCKALL_FLAGS: Flags = &[(1, "MCL_CURRENT"), (2, "MCL_FUTURE"), (4, "MCL_ONFAULT")];
const CLOCK_IDS: &[&str] = &[
    "CLOCK_REALTIME",
    "CLOCK_MONOTONIC",
    "CLOCK_PROCESS_CPUTIME_ID",
    "CLOCK_THREAD_CPUTIME_ID",
    "CLOCK_MONOTONIC_RAW",
    "CLOCK_REALTIME_COARSE",
    "CLOCK_MONOTONIC_COARSE",
    "CLOCK_BOOTTIME",
    "CLOCK_REALTIME_ALARM",
    "CLOCK_BOOTTIME_ALARM",
    "CLOCK_SGI_CYCLE",
    "CLOCK_TAI",
];
const ITIMER_TYPES: &[&str] = &["ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF"];
const MADVISE: &[(u64, &str)] = &[
    (0, "MADV_NORMAL"),
    (1, "MADV_RANDOM"),
    (2, "MADV_SEQUENTIAL"),
    (3, "MADV_WILLNEED"),
    (4, "MADV_DONTNEED"),
    (8, "MADV_FREE"),
    (9, "MADV_REMOVE"),
    (10, "MADV_DONTFORK"),
    (11, "MADV_DOFORK"),
    (12, "MADV_MERGEABLE"),
    (13, "MADV_UNMERGEABLE"),
    (14, "MADV_HUGEPAGE"),
    (15, "MADV_NOHUGEPAGE"),
    (16, "MADV_DONTDUMP"),
    (17, "MADV_DODUMP"),
    (18, "MADV_WIPEONFORK"),
    (19, "MADV_KEEPONFORK"),
    (20, "MADV_COLD"),
    (21, "MADV_PAGEOUT"),
    (100, "MADV_HWPOISON"),
];
const IOCTLS: &[(u64, &str)] = &[
    (0x5401, "TCGETS"),
    (0x5402, "TCSETS"),
    (0x5403, "TCSETSW"),
    (0x5404, "TCSETSF"),
    (0x540F, "TIOCGPGRP"),
    (0x5410, "TIOCSPGRP"),
    (0x5413, "TIOCGWINSZ"),
    (0x5414, "TIOCSWINSZ"),
    (0x541B, "FIONREAD"),
    (0x5421, "FIONBIO"),
    (0x5451, "FIOCLEX"),
    (0x5450, "FIONCLEX"),
];

/// qemu's `print_taken_signal`: `--- SIGxxx {si_signo=SIGxxx, si_code=..., ...} ---` for a
/// signal being taken. The union part follows qemu's guess from the code and the signal
/// (`host_to_target_siginfo_noswap`): faults print `si_addr`; `SI_USER`, `SI_TKILL` and
/// `SI_KERNEL` the sender; `SIGCHLD` the child's pid, uid and status (and the child's
/// times, which vmx does not keep: 0); other codes a queued value.
pub(crate) fn signal_taken(sink: &StraceSink, info: &crate::signals::SigInfo) {
    let name = |sig: i32| match signal_name(sig as u64) {
        Some(n) => n.to_string(),
        None => sig.to_string(),
    };
    let code = match info.code {
        0 => "SI_USER".to_string(),
        0x80 => "SI_KERNEL".to_string(),
        -1 => "SI_QUEUE".to_string(),
        -2 => "SI_TIMER".to_string(),
        -3 => "SI_MESGQ".to_string(),
        -4 => "SI_ASYNCIO".to_string(),
        -5 => "SI_SIGIO".to_string(),
        -6 => "SI_TKILL".to_string(),
        c => c.to_string(),
    };
    let signo = name(info.signo);
    let mut s = format!("--- {signo} {{si_signo={signo}, si_code={code}");
    let (pid, uid) = (info.pid as u32, info.uid);
    if info.is_fault {
        if info.addr == 0 {
            s.push_str(", si_addr=NULL");
        } else {
            s.push_str(&format!(", si_addr=0x{:016x}", info.addr));
        }
    } else if matches!(info.code, 0 | -6 | 0x80) {
        s.push_str(&format!(", si_pid={pid}, si_uid={uid}"));
    } else if info.signo == 17 {
        s.push_str(&format!(
            ", si_pid={pid}, si_uid={uid}, si_status={}, si_utime=0, si_stime=0",
            info.status
        ));
    } else if info.signo == 29 {
        s.push_str(", si_band=0, si_fd=0");
    } else {
        s.push_str(&format!(", si_pid={pid}, si_uid={uid}, si_sigval={}", info.status));
    }
    s.push_str("} ---\n");
    sink.emit(s.as_bytes());
}

/// qemu's name for a signal (`print_signal`), `None` for the ones it prints as numbers.
fn signal_name(sig: u64) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGIOT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        17 => "SIGCHLD",
        18 => "SIGCONT",
        19 => "SIGSTOP",
        20 => "SIGTSTP",
        21 => "SIGTTIN",
        22 => "SIGTTOU",
        _ => return None,
    })
}

/// Builds one piece of trace text; `last == false` appends qemu's comma.
struct Fmt<'a> {
    out: &'a mut Vec<u8>,
    mem: Option<&'a AddressSpace>,
}

impl Fmt<'_> {
    fn s(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }
    fn comma(&mut self, last: bool) {
        if !last {
            self.out.push(b',');
        }
    }
    /// `print_pointer`: `NULL` or `0x` and 16 hex digits.
    fn ptr(&mut self, p: u64, last: bool) {
        if p == 0 {
            self.s("NULL");
        } else {
            self.s(&format!("0x{p:016x}"));
        }
        self.comma(last);
    }
    /// `print_raw_param("%d")`.
    fn d(&mut self, v: u64, last: bool) {
        self.s(&(v as u32 as i32).to_string());
        self.comma(last);
    }
    /// `print_raw_param("%u")`.
    fn u(&mut self, v: u64, last: bool) {
        self.s(&(v as u32).to_string());
        self.comma(last);
    }
    /// `TARGET_ABI_FMT_ld`.
    fn ld(&mut self, v: u64, last: bool) {
        self.s(&(v as i64).to_string());
        self.comma(last);
    }
    /// `%#x` of the low 32 bits.
    fn hx(&mut self, v: u64, last: bool) {
        self.s(&hash_x(v as u32));
        self.comma(last);
    }
    /// `print_string`: the guest string in quotes, or a pointer when unreadable.
    fn string(&mut self, addr: u64, last: bool) {
        match self.mem.and_then(|m| super::read_cstr(m, addr, 1 << 16).ok()) {
            Some(bytes) => {
                self.out.push(b'"');
                self.out.extend_from_slice(&bytes);
                self.out.push(b'"');
                self.comma(last);
            }
            None => self.ptr(addr, last),
        }
    }
    /// `print_flags`.
    fn flags(&mut self, table: Flags, v: u64, last: bool) {
        if v == 0 && table[0].0 == 0 {
            self.s(table[0].1);
            self.comma(last);
            return;
        }
        let mut rest = v;
        let mut n = 0;
        for &(f, name) in table {
            if f != 0 && rest & f == f {
                if n > 0 {
                    self.s("|");
                }
                self.s(name);
                rest &= !f;
                n += 1;
            }
        }
        if n == 0 {
            self.s(&hash_x(rest as u32));
        } else if rest != 0 {
            self.s("|");
            self.s(&hash_x(rest as u32));
        }
        self.comma(last);
    }
    /// `print_enums`.
    fn enums(&mut self, names: &[&str], v: u64, last: bool) {
        match usize::try_from(v).ok().and_then(|i| names.get(i)) {
            Some(n) => self.s(n),
            None => self.s(&hash_x(v as u32)),
        }
        self.comma(last);
    }
    fn at_dirfd(&mut self, v: u64, last: bool) {
        if v as u32 as i32 == -100 {
            self.s("AT_FDCWD");
            self.comma(last);
        } else {
            self.d(v, last);
        }
    }
    /// `print_file_mode`.
    fn file_mode(&mut self, mode: u64, last: bool) {
        let mut mode = mode;
        let mut sep = "";
        for &(f, name) in MODE_FLAGS {
            if f & mode == f {
                self.s(name);
                sep = "|";
                mode &= !f;
                break;
            }
        }
        mode &= !0o170000;
        if mode != 0 {
            self.s(sep);
            self.s(&hash_o(mode as u32));
        }
        self.comma(last);
    }
    /// `print_open_flags`.
    fn open_flags(&mut self, v: u64, last: bool) {
        self.flags(OPEN_ACCESS_FLAGS, v & 3, true);
        let rest = v & !3;
        if rest == 0 {
            self.comma(last);
            return;
        }
        self.s("|");
        self.flags(OPEN_FLAGS, rest, last);
    }
    fn signal(&mut self, v: u64, last: bool) {
        match signal_name(v) {
            Some(n) => {
                self.s(n);
                self.comma(last);
            }
            None => self.ld(v, last),
        }
    }
    fn read_pair(&self, addr: u64) -> Option<(i64, i64)> {
        let b = super::read_array::<16>(self.mem?, addr).ok()?;
        Some((i64::from_le_bytes(super::le8(&b[..8])), i64::from_le_bytes(super::le8(&b[8..]))))
    }
    /// `print_timespec` / `print_timeval` (`unit` is `nsec` or `usec`).
    fn time_pair(&mut self, addr: u64, unit: &str, last: bool) {
        if addr == 0 {
            self.s("NULL");
            self.comma(last);
            return;
        }
        match self.read_pair(addr) {
            Some((s, n)) => {
                self.s(&format!("{{tv_sec = {s},tv_{unit} = {n}}}"));
                self.comma(last);
            }
            None => self.ptr(addr, last),
        }
    }
    fn timezone(&mut self, addr: u64, last: bool) {
        if addr == 0 {
            self.s("NULL");
            self.comma(last);
            return;
        }
        match self.mem.and_then(|m| super::read_array::<8>(m, addr).ok()) {
            Some(b) => {
                let a = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                let c = i32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                self.s(&format!("{{{a},{c}}}"));
                self.comma(last);
            }
            None => self.ptr(addr, last),
        }
    }
    /// A qemu `strace.list` format string (`%s` is the name; `%d %u %#x %p %#o %ld`).
    fn printf(&mut self, fmt: &str, name: &str, a: &[u64; 6]) {
        let mut i = 0;
        let mut it = fmt.split('%');
        if let Some(first) = it.next() {
            self.s(first);
        }
        for piece in it {
            let (conv, rest) = ["#x", "#o", "ld", "s", "d", "u", "p"]
                .iter()
                .find_map(|c| piece.strip_prefix(c).map(|r| (*c, r)))
                .unwrap_or(("", piece));
            let v = if conv == "s" { 0 } else { a.get(i).copied().unwrap_or(0) };
            match conv {
                "s" => self.s(name),
                "d" => self.d(v, true),
                "u" => self.u(v, true),
                "ld" => self.ld(v, true),
                "#x" => self.hx(v, true),
                "#o" => self.s(&hash_o(v as u32)),
                "p" => {
                    if v == 0 {
                        self.s("(nil)")
                    } else {
                        self.s(&format!("{v:#x}"))
                    }
                }
                _ => {}
            }
            if conv != "s" && !conv.is_empty() {
                i += 1;
            }
            self.s(rest);
        }
    }
}

/// C's `%#x`: `0` for zero, else `0x` and lower-case hex.
fn hash_x(v: u32) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

/// C's `%#o`.
fn hash_o(v: u32) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("0{v:o}")
    }
}

/// Appends `name(args)` for a call (or `Unknown syscall N\n`), as qemu's `print_syscall`.
pub(crate) fn format_call(out: &mut Vec<u8>, mem: &AddressSpace, nr: u64, a: &[u64; 6]) {
    let Some(name) = lookup(nr) else {
        out.extend_from_slice(format!("Unknown syscall {nr}\n").as_bytes());
        return;
    };
    let mut f = Fmt { out, mem: Some(mem) };
    let fmt: &str = match nr {
        17 => "%s(%p,%d)",
        19 => "%s(%d,%d)",
        20 | 23 | 50 | 57 | 82 | 83 | 267 => "%s(%d)",
        24 => "%s(%d,%d,%d)",
        44 => "%s(%d,%p)",
        52 => "%s(%d,%#o)",
        55 => "%s(%d,%d,%d)",
        61 => "%s(%d,%p,%d)",
        63 | 64 => "%s(%d,%#x,%d)",
        66 => "%s(%d,%p,%#x)",
        93 | 94 => "%s(%d)\n",
        95 => "%s(%#x,%d,%p,%#x)",
        110 => "%s(%d,%d,%p,%p)",
        132 => "%s(%p,%p)",
        90 | 91 => "%s(%p,%p)",
        141 => "%s(%#x,%#x)",
        160 | 171 => "%s(%p)",
        166 => "%s(%#o)",
        168 => "%s(%p,%d)",
        172..=178 | 231 => "%s()",
        201 => "%s(%d,%d)",
        203 => "%s(%d,%#x,%d)",
        212 => "%s(%d,%#x,%#x)",
        278 => "%s(%p,%u,%u)",
        434 => "%s(%d,%u)",
        436 => "%s(%u,%u,%u)",
        438 => "%s(%d,%d,%u)",
        _ => "",
    };
    if !fmt.is_empty() {
        f.printf(fmt, name, a);
        return;
    }
    f.s(name);
    f.s("(");
    match nr {
        // print_getxattr / print_fgetxattr / print_listxattr / print_flistxattr.
        8..=13 => {
            if matches!(nr, 10 | 13) {
                f.d(a[0], false);
            } else {
                f.string(a[0], false);
            }
            let value = nr <= 10;
            if value {
                f.string(a[1], false);
            }
            let (buf, size) = if value { (a[2], a[3]) } else { (a[1], a[2]) };
            f.ptr(buf, false);
            f.s(&size.to_string());
        }
        25 => fcntl(&mut f, a),
        29 => {
            f.d(a[0], false);
            match IOCTLS.iter().find(|(c, _)| *c == a[1]) {
                Some((_, n)) => {
                    f.s(n);
                    f.s(",");
                    f.ptr(a[2], true);
                }
                None => {
                    f.hx(a[1], false);
                    f.hx(a[2], true);
                }
            }
        }
        33 => {
            f.at_dirfd(a[0], false);
            f.string(a[1], false);
            let dev = a[2] & (0o20000 | 0o60000) != 0;
            f.file_mode(a[2], !dev);
            if dev {
                let (major, minor) =
                    ((a[3] >> 8) & 0xfff, (a[3] & 0xff) | ((a[3] >> 12) & 0xfff00));
                f.s(&format!("makedev({major},{minor})"));
            }
        }
        34 => {
            f.at_dirfd(a[0], false);
            f.string(a[1], false);
            f.file_mode(a[2], true);
        }
        35 => {
            f.at_dirfd(a[0], false);
            f.string(a[1], false);
            f.flags(UNLINKAT_FLAGS, a[2], true);
        }
        36 => {
            f.string(a[0], false);
            f.at_dirfd(a[1], false);
            f.string(a[2], true);
        }
        37 => {
            f.at_dirfd(a[0], false);
            f.string(a[1], false);
            f.at_dirfd(a[2], false);
            f.string(a[3], false);
            f.flags(AT_FILE_FLAGS, a[4], true);
        }
        39 => {
            f.string(a[0], false);
            f.flags(UMOUNT2_FLAGS, a[1], true);
        }
        40 => {
            f.string(a[0], false);
            f.string(a[1], false);
            f.string(a[2], false);
            f.flags(MOUNT_FLAGS, a[3], false);
            f.ptr(a[4], true);
        }
        43 => {
            f.string(a[0], false);
            f.ptr(a[1], true);
        }
        45 => {
            f.string(a[0], false);
            f.ld(a[1], true);
        }
        46 => {
            f.d(a[0], false);
            f.ld(a[1], true);
        }
        47 => {
            f.d(a[0], false);
            f.flags(&[(1, "FALLOC_FL_KEEP_SIZE"), (2, "FALLOC_FL_PUNCH_HOLE")], a[1], false);
            f.ld(a[2], false);
            f.ld(a[3], true);
        }
        48 | 439 => {
            f.at_dirfd(a[0], false);
            f.string(a[1], false);
            f.flags(ACCESS_FLAGS, a[2], false);
            f.flags(AT_FILE_FLAGS, a[3], true);
        }
        49 | 51 | 89 => f.string(a[0], true),
        53 => {
            f.at_dirfd(a[0], false);
            f.string(a[1], false);
            f.file_mode(a[2], false);
            f.flags(AT_FILE_FLAGS, a[3], true);
        }
        54 => {
            f.at_dirfd(a[0], false);
            f.string(a[1], false);
            f.d(a[2], false);
            f.d(a[3], false);
            f.flags(AT_FILE_FLAGS, a[4], true);
        }
        56 => {
            f.at_dirfd(a[0], false);
            f.string(a[1], false);
            let creat = a[2] & 0x40 != 0;
            f.open_flags(a[2], !creat);
            if creat {
                f.file_mode(a[3], true);
            }
        }
        62 => {
            f.d(a[0], false);
            f.ld(a[1], false);
            match a[2] {
                0 => f.s("SEEK_SET"),
                1 => f.s("SEEK_CUR"),
                2 => f.s("SEEK_END"),
                3 => f.s("SEEK_DATA"),
                4 => f.s("SEEK_HOLE"),
                w => f.hx(w, true),
            }
        }
        78 => {
            f.at_dirfd(a[0], false);
            f.string(a[1], false);
            f.ptr(a[2], false);
            f.u(a[3], true);
        }
        79 | 88 => {
            f.at_dirfd(a[0], false);
            f.string(a[1], false);
            f.ptr(a[2], false);
            f.flags(AT_FILE_FLAGS, a[3], true);
        }
        80 => {
            f.d(a[0], false);
            f.ptr(a[1], true);
        }
        97 => f.flags(CLONE_FLAGS, a[0], true),
        98 => {
            f.ptr(a[0], false);
            futex_op(&mut f, a[1]);
            f.s(",");
            f.d(a[2], false);
            f.ptr(a[3], false);
            f.ptr(a[4], false);
            f.d(a[5], true);
        }
        102 => {
            f.enums(ITIMER_TYPES, a[0], false);
            f.ptr(a[1], true);
        }
        103 => {
            f.enums(ITIMER_TYPES, a[0], false);
            if a[1] == 0 {
                f.s("NULL,");
            } else {
                f.s("{it_interval=");
                f.time_pair(a[1], "usec", false);
                f.s("it_value=");
                f.time_pair(a[1].wrapping_add(16), "usec", false);
                f.s("},");
            }
            f.ptr(a[2], true);
        }
        112 => {
            f.enums(CLOCK_IDS, a[0], false);
            f.time_pair(a[1], "nsec", true);
        }
        113 | 114 | 266 => {
            f.enums(CLOCK_IDS, a[0], false);
            f.ptr(a[1], true);
        }
        115 => {
            f.enums(CLOCK_IDS, a[0], false);
            f.d(a[1], false);
            f.time_pair(a[2], "nsec", false);
            f.time_pair(a[3], "nsec", true);
        }
        116 => {
            f.ld(a[0], false);
            f.ptr(a[1], false);
            f.d(a[2], true);
        }
        129 | 130 => {
            f.d(a[0], false);
            f.signal(a[1], true);
        }
        131 => {
            f.d(a[0], false);
            f.d(a[1], false);
            f.signal(a[2], true);
        }
        134 => {
            f.signal(a[0], false);
            f.ptr(a[1], false);
            f.ptr(a[2], true);
        }
        135 => {
            f.s(match a[0] {
                0 => "SIG_BLOCK",
                1 => "SIG_UNBLOCK",
                2 => "SIG_SETMASK",
                _ => "UNKNOWN",
            });
            f.s(",");
            f.ptr(a[1], false);
            f.ptr(a[2], true);
        }
        169 => {
            f.ptr(a[0], false);
            f.ptr(a[1], true);
        }
        170 => {
            f.time_pair(a[0], "usec", false);
            f.timezone(a[1], true);
        }
        198 => {
            socket_domain(&mut f, a[0]);
            f.s(",");
            socket_type(&mut f, a[1]);
            f.s(",");
            socket_protocol(&mut f, a[0], a[1], a[2]);
        }
        200 => {
            f.ld(a[0], false);
            sockaddr(&mut f, a[1], a[2], true);
        }
        202 => {
            f.d(a[0], false);
            f.ptr(a[1], false);
            if a[2] == 0 {
                f.s("NULL");
            } else {
                let n = f.mem.and_then(|m| super::read_array::<4>(m, a[2]).ok());
                f.s(&format!("[{}]", n.map_or(0, i32::from_le_bytes)));
            }
        }
        214 => f.ptr(a[0], true),
        215 | 228 | 229 => {
            f.ptr(a[0], false);
            f.d(a[1], true);
        }
        220 => {
            f.flags(CLONE_FLAGS, a[0] & 0xffff_ffff, false);
            f.s(&format!("child_stack=0x{:016x},", a[1]));
            f.s(&format!("parent_tidptr=0x{:016x},", a[2]));
            f.s(&format!("tls=0x{:016x},", a[3]));
            f.s(&format!("child_tidptr=0x{:016x}", a[4]));
        }
        221 => {
            // print_execve writes its own prologue; undo ours to stay byte-exact.
            f.out.truncate(f.out.len() - name.len() - 1);
            execve(&mut f, name, a);
            return;
        }
        222 => {
            f.ptr(a[0], false);
            f.d(a[1], false);
            f.flags(PROT_FLAGS, a[2], false);
            f.flags(MMAP_FLAGS, a[3], false);
            f.d(a[4], false);
            f.hx(a[5], true);
        }
        226 => {
            f.ptr(a[0], false);
            f.d(a[1], false);
            f.flags(PROT_FLAGS, a[2], true);
        }
        230 => f.flags(MLOCKALL_FLAGS, a[0], true),
        233 => {
            f.ptr(a[0], false);
            f.d(a[1], false);
            match MADVISE.iter().find(|(v, _)| *v == a[2] & 0xffff_ffff) {
                Some((_, n)) => f.s(n),
                None => f.hx(a[2], true),
            }
        }
        291 => {
            f.at_dirfd(a[0], false);
            f.string(a[1], false);
            f.flags(STATX_FLAGS, a[2], false);
            f.flags(STATX_MASK, a[3], false);
            f.ptr(a[4], true);
        }
        _ => {
            for (i, v) in a.iter().enumerate() {
                f.ld(*v, i == 5);
            }
        }
    }
    f.s(")");
}

fn fcntl(f: &mut Fmt<'_>, a: &[u64; 6]) {
    f.d(a[0], false);
    let named = |f: &mut Fmt<'_>, n: &str| {
        f.s(n);
    };
    match a[1] {
        0 => {
            named(f, "F_DUPFD,");
            f.ld(a[2], true)
        }
        1 => named(f, "F_GETFD"),
        2 => {
            named(f, "F_SETFD,");
            f.ld(a[2], true)
        }
        3 => named(f, "F_GETFL"),
        4 => {
            named(f, "F_SETFL,");
            f.open_flags(a[2], true)
        }
        5 | 6 | 7 | 36 | 37 | 38 => {
            named(
                f,
                match a[1] {
                    5 => "F_GETLK,",
                    6 => "F_SETLK,",
                    7 => "F_SETLKW,",
                    36 => "F_OFD_GETLK,",
                    37 => "F_OFD_SETLK,",
                    _ => "F_OFD_SETLKW,",
                },
            );
            f.ptr(a[2], true)
        }
        8 => {
            named(f, "F_SETOWN,");
            f.ld(a[2], false)
        }
        9 => named(f, "F_GETOWN"),
        10 => {
            named(f, "F_SETSIG,");
            f.ld(a[2], false)
        }
        11 => named(f, "F_GETSIG"),
        15 => {
            named(f, "F_SETOWN_EX,");
            f.ptr(a[2], true)
        }
        16 => {
            named(f, "F_GETOWN_EX,");
            f.ptr(a[2], true)
        }
        1024 => {
            named(f, "F_SETLEASE,");
            f.ld(a[2], true)
        }
        1025 => named(f, "F_GETLEASE"),
        1026 => {
            named(f, "F_NOTIFY,");
            f.ld(a[2], true)
        }
        1030 => {
            named(f, "F_DUPFD_CLOEXEC,");
            f.ld(a[2], true)
        }
        1031 => {
            named(f, "F_SETPIPE_SZ,");
            f.ld(a[2], true)
        }
        1032 => named(f, "F_GETPIPE_SZ"),
        1033 => {
            named(f, "F_ADD_SEALS,");
            f.s(&format!("0x{:x}", a[2]))
        }
        1034 => named(f, "F_GET_SEALS"),
        _ => {
            f.ld(a[1], false);
            f.ptr(a[2], true)
        }
    }
}

fn futex_op(f: &mut Fmt<'_>, op: u64) {
    let mut cmd = op as u32 as i32;
    if cmd & 128 != 0 {
        f.s("FUTEX_PRIVATE_FLAG|");
        cmd &= !128;
    }
    if cmd & 256 != 0 {
        f.s("FUTEX_CLOCK_REALTIME|");
        cmd &= !256;
    }
    const OPS: &[&str] = &[
        "FUTEX_WAIT",
        "FUTEX_WAKE",
        "FUTEX_FD",
        "FUTEX_REQUEUE",
        "FUTEX_CMP_REQUEUE",
        "FUTEX_WAKE_OP",
        "FUTEX_LOCK_PI",
        "FUTEX_UNLOCK_PI",
        "FUTEX_TRYLOCK_PI",
        "FUTEX_WAIT_BITSET",
        "FUTEX_WAKE_BITSET",
    ];
    match usize::try_from(cmd).ok().and_then(|i| OPS.get(i)) {
        Some(n) => f.s(n),
        None => f.s(&hash_x(cmd as u32)),
    }
}

fn execve(f: &mut Fmt<'_>, name: &str, a: &[u64; 6]) {
    let Some(mem) = f.mem else { return };
    let Ok(path) = super::read_cstr(mem, a[0], 1 << 16) else { return };
    f.s(name);
    f.s("(\"");
    f.out.extend_from_slice(&path);
    f.s("\",{");
    let mut p = a[1];
    for _ in 0..4096 {
        let Ok(s) = super::read_u64(mem, p) else { return };
        if s == 0 {
            break;
        }
        if let Ok(arg) = super::read_cstr(mem, s, 1 << 16) {
            f.out.push(b'"');
            f.out.extend_from_slice(&arg);
            f.s("\",");
        }
        p = p.wrapping_add(8);
    }
    f.s("NULL})");
}

fn socket_domain(f: &mut Fmt<'_>, d: u64) {
    match d as u32 as i32 {
        1 => f.s("PF_UNIX"),
        2 => f.s("PF_INET"),
        16 => f.s("PF_NETLINK"),
        17 => f.s("PF_PACKET"),
        x => f.s(&x.to_string()),
    }
}

fn socket_type(f: &mut Fmt<'_>, t: u64) {
    let t = t as u32;
    match t & 0xf {
        2 => f.s("SOCK_DGRAM"),
        1 => f.s("SOCK_STREAM"),
        3 => f.s("SOCK_RAW"),
        4 => f.s("SOCK_RDM"),
        5 => f.s("SOCK_SEQPACKET"),
        10 => f.s("SOCK_PACKET"),
        _ => {}
    }
    if t & 0o2000000 != 0 {
        f.s("|SOCK_CLOEXEC");
    }
    if t & 0o4000 != 0 {
        f.s("|SOCK_NONBLOCK");
    }
}

fn socket_protocol(f: &mut Fmt<'_>, domain: u64, ty: u64, proto: u64) {
    let (domain, ty, proto) = (domain as u32 as i32, ty as u32 as i32, proto as u32 as i32);
    if domain == 17 || (domain == 2 && ty == 10) {
        let p = (proto as u16).swap_bytes();
        if p == 3 {
            f.s("ETH_P_ALL");
        } else {
            f.s(&p.to_string());
        }
        return;
    }
    let name = match (domain, proto) {
        (16, 0) => "NETLINK_ROUTE",
        (16, 9) => "NETLINK_AUDIT",
        (16, 12) => "NETLINK_NETFILTER",
        (16, 15) => "NETLINK_KOBJECT_UEVENT",
        (16, 20) => "NETLINK_RDMA",
        (16, 21) => "NETLINK_CRYPTO",
        (16, _) => "",
        (_, 0) => "IPPROTO_IP",
        (_, 6) => "IPPROTO_TCP",
        (_, 17) => "IPPROTO_UDP",
        (_, 255) => "IPPROTO_RAW",
        _ => "",
    };
    if name.is_empty() {
        f.s(&proto.to_string());
    } else {
        f.s(name);
    }
}

/// `print_sockaddr` for the families guests use (unix and inet; others as raw bytes).
fn sockaddr(f: &mut Fmt<'_>, addr: u64, len: u64, last: bool) {
    let n = (len as u32 as usize).min(128);
    let bytes = f.mem.and_then(|m| {
        let mut b = vec![0u8; n];
        m.read_bytes(addr, &mut b).ok().map(|_| b)
    });
    match bytes {
        Some(b) if b.len() >= 2 => {
            let family = u16::from_le_bytes([b[0], b[1]]);
            match family {
                1 => {
                    f.s("{sun_family=AF_UNIX,sun_path=\"");
                    for &c in b[2..].iter().take_while(|&&c| c != 0) {
                        f.out.push(c);
                    }
                    f.s("\"}");
                }
                2 if b.len() >= 8 => {
                    let port = u16::from_be_bytes([b[2], b[3]]);
                    f.s(&format!(
                        "{{sin_family=AF_INET,sin_port=htons({port}),sin_addr=inet_addr(\"{}.{}.{}.{}\")}}",
                        b[4], b[5], b[6], b[7]
                    ));
                }
                _ => {
                    let mut data = [0u8; 14];
                    let k = b.len().saturating_sub(2).min(14);
                    data[..k].copy_from_slice(&b[2..2 + k]);
                    f.s(&format!("{{sa_family={family}, sa_data={{"));
                    for d in &data[..13] {
                        f.s(&format!("{d:02x}, "));
                    }
                    f.s(&format!("{:02x}}}}}", data[13]));
                }
            }
        }
        _ => f.s(&format!("0x{addr:016x},")),
    }
    f.s(&format!(", {}", len as i64));
    f.comma(last);
}

/// Appends ` = result` and the newline, as qemu's `print_syscall_ret` for `nr`.
pub(crate) fn format_result(
    out: &mut Vec<u8>,
    mem: Option<&AddressSpace>,
    nr: u64,
    a: &[u64; 6],
    ret: u64,
) {
    if error(out, ret) {
        out.push(b'\n');
        return;
    }
    let mut f = Fmt { out, mem };
    match nr {
        214 | 222 => f.s(&format!("0x{ret:016x}")),
        // print_syscall_ret_listxattr: the names the call returned.
        11..=13 => {
            f.ld(ret, true);
            f.s(" (list = ");
            if a[1] == 0 {
                f.s("NULL");
            } else {
                let mut list = vec![0u8; (ret as usize).min(1 << 16)];
                if f.mem.is_some_and(|m| m.read_bytes(a[1], &mut list).is_ok()) {
                    let names: Vec<&[u8]> =
                        list.strip_suffix(&[0]).unwrap_or(&list).split(|&b| b == 0).collect();
                    for (i, n) in names.iter().enumerate().filter(|_| ret > 0) {
                        if i > 0 {
                            f.s(",");
                        }
                        f.out.push(b'"');
                        f.out.extend_from_slice(n);
                        f.out.push(b'"');
                    }
                }
            }
            f.s(")");
        }
        113 | 114 => {
            f.ld(ret, true);
            f.s(" (");
            f.time_pair(a[1], "nsec", true);
            f.s(")");
        }
        169 => {
            f.ld(ret, true);
            f.s(" (");
            f.time_pair(a[0], "usec", false);
            f.timezone(a[1], true);
            f.s(")");
        }
        _ => f.ld(ret, true),
    }
    f.s("\n");
}

fn format_plain_result(out: &mut Vec<u8>, ret: u64) {
    if !error(out, ret) {
        out.extend_from_slice((ret as i64).to_string().as_bytes());
    }
    out.push(b'\n');
}

/// `print_syscall_err`: writes ` = ` and, for a negative result, `-1 errno=N (text)`.
fn error(out: &mut Vec<u8>, ret: u64) -> bool {
    out.extend_from_slice(b" = ");
    let r = ret as i64;
    if r >= 0 {
        return false;
    }
    let e = r.unsigned_abs();
    let text = match e {
        512 => "To be restarted".to_string(),
        513 => "Successful exit from sigreturn".to_string(),
        _ => strerror(e as i32),
    };
    out.extend_from_slice(format!("-1 errno={} ({text})", e as i32).as_bytes());
    true
}

/// The host C library's message for an errno, as qemu's `target_strerror` gives it.
fn strerror(e: i32) -> String {
    let s = std::io::Error::from_raw_os_error(e).to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
