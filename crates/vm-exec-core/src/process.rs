//! A guest process: its address space, its file descriptors, and what the Linux ABI keeps
//! per process.
//!
//! Invariants:
//! - A process owns its [`AddressSpace`]; the [`Program`] it was loaded from is shared.
//! - File descriptors 0, 1 and 2 start as the configured standard streams. Host files are
//!   opened only below a directory the configuration grants (`allowed_dirs`, canonical paths);
//!   everything else is refused with `EACCES`.
//! - Output sent to a capture buffer is bounded by the buffer's limit; the excess is counted,
//!   not stored.
//! - A process is shared by all its guest threads, which may run on several host threads at
//!   once: everything mutable sits behind a lock or is atomic, and engines and system calls
//!   take `&Process`. Locks are held only for the duration of one table operation, never
//!   across a host call that can block.
//! - A process is single-threaded until a scheduler hosts it ([`Process::set_scheduled`]):
//!   only then does `clone` create threads and do blocking calls park instead of blocking
//!   the host thread (see [`crate::futex`]).

use crate::elf::Program;
use crate::futex::FutexTable;
use crate::memory::AddressSpace;
use crate::sandbox::Sandbox;
use crate::signals::SigState;
use crate::sync::IgnorePoison;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Default size of a guest address space: 4 GiB.
pub const DEFAULT_MEMORY_SIZE: u64 = 4 << 30;
/// Default guest stack size: 8 MiB, like Linux's default `RLIMIT_STACK`.
pub const DEFAULT_STACK_SIZE: u64 = 8 << 20;

/// In-memory output of a guest stream, shared with whoever reads it.
#[derive(Clone, Debug, Default)]
pub struct CaptureBuffer {
    inner: Arc<Mutex<CaptureInner>>,
}

#[derive(Debug, Default)]
struct CaptureInner {
    data: Vec<u8>,
    limit: usize,
    dropped: u64,
}

impl CaptureBuffer {
    /// A buffer that keeps at most `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        CaptureBuffer {
            inner: Arc::new(Mutex::new(CaptureInner { data: Vec::new(), limit, dropped: 0 })),
        }
    }

    /// Appends bytes, keeping at most the limit.
    pub fn append(&self, bytes: &[u8]) {
        let mut g = self.inner.lock().ignore_poison();
        let room = g.limit.saturating_sub(g.data.len());
        let take = room.min(bytes.len());
        g.data.extend_from_slice(&bytes[..take]);
        g.dropped += (bytes.len() - take) as u64;
    }

    /// A copy of what was captured so far.
    pub fn contents(&self) -> Vec<u8> {
        self.inner.lock().ignore_poison().data.clone()
    }

    /// How many handles share the buffer: readers like the caller, plus every guest
    /// descriptor writing to it. Once the guest's process is gone, only the readers remain,
    /// so nothing more can be appended.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// How many bytes were dropped because the limit was reached.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().ignore_poison().dropped
    }
}

/// What a guest file descriptor refers to.
#[derive(Debug)]
pub enum FileKind {
    /// A host file descriptor; closed on drop when `owned`.
    Host {
        /// The host descriptor.
        fd: RawFd,
        /// Whether this table owns (and closes) it.
        owned: bool,
    },
    /// Output collected in memory.
    Capture(CaptureBuffer),
    /// Input served from memory.
    Bytes {
        /// The bytes.
        data: Arc<[u8]>,
        /// Read position.
        pos: usize,
    },
    /// Reads end of file; writes are discarded.
    Null,
    /// The virtual directory `/proc/self/fd`: listing it reads the table's open descriptors
    /// at the time of each `getdents64`, from position `pos` (0 is `.`, 1 is `..`, `2 + n`
    /// is descriptor `n`), as Linux's proc does.
    FdDir {
        /// The next position to list.
        pos: u64,
    },
    /// One end of a pipe kept in memory (see [`crate::pipe`]); the `Arc` is the open file
    /// description, shared by `dup` and `fork`.
    Pipe(Arc<crate::pipe::PipeEnd>),
    /// An epoll instance that may watch in-memory pipes (see [`crate::pipe::MemEpoll`]).
    Epoll(Arc<crate::pipe::MemEpoll>),
}

impl FileKind {
    /// The same open file for another process's table (see [`FdTable::fork_copy`]).
    pub fn fork_copy(&self) -> std::io::Result<FileKind> {
        Ok(match self {
            FileKind::Host { fd, owned: false } => FileKind::Host { fd: *fd, owned: false },
            FileKind::Host { fd, owned: true } => {
                // SAFETY: `fd` is open (owned by this table); F_DUPFD_CLOEXEC makes a new
                // host descriptor that the copy owns.
                let n = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3) };
                if n < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                FileKind::Host { fd: n, owned: true }
            }
            FileKind::Capture(b) => FileKind::Capture(b.clone()),
            FileKind::Bytes { data, pos } => FileKind::Bytes { data: data.clone(), pos: *pos },
            FileKind::Null => FileKind::Null,
            FileKind::FdDir { pos } => FileKind::FdDir { pos: *pos },
            FileKind::Pipe(p) => FileKind::Pipe(p.clone()),
            FileKind::Epoll(e) => FileKind::Epoll(e.clone()),
        })
    }
}

impl Drop for FileKind {
    fn drop(&mut self) {
        if let FileKind::Host { fd, owned: true } = *self {
            crate::syscall::forget_host_fd(fd);
            // SAFETY: the table owns `fd` exclusively (it was returned by a host open/dup made
            // for this entry) and drops it exactly once.
            unsafe { libc::close(fd) };
        }
    }
}

/// One open guest file descriptor.
#[derive(Debug)]
pub struct FileDesc {
    /// What it refers to.
    pub kind: FileKind,
    /// `FD_CLOEXEC` (recorded; there is no exec).
    pub cloexec: bool,
}

/// The guest's file-descriptor table.
#[derive(Debug, Default)]
pub struct FdTable {
    slots: Vec<Option<FileDesc>>,
}

/// Most file descriptors a guest may hold open at once (`RLIMIT_NOFILE`).
pub const MAX_FDS: usize = 1024;

impl FdTable {
    /// The host descriptors of every open guest descriptor that is one.
    pub fn host_fds(&self) -> Vec<RawFd> {
        self.slots
            .iter()
            .flatten()
            .filter_map(|d| match d.kind {
                FileKind::Host { fd, .. } => Some(fd),
                _ => None,
            })
            .collect()
    }

    /// The descriptor `fd`, if open.
    pub fn get(&mut self, fd: i64) -> Option<&mut FileDesc> {
        usize::try_from(fd).ok().and_then(|i| self.slots.get_mut(i)).and_then(|s| s.as_mut())
    }

    /// Installs `desc` at the lowest free number `>= min`; `None` if the table is full.
    pub fn insert_from(&mut self, min: usize, desc: FileDesc) -> Option<i64> {
        let i = (min..MAX_FDS).find(|&i| self.slots.get(i).is_none_or(|s| s.is_none()))?;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i] = Some(desc);
        Some(i as i64)
    }

    /// Installs `desc` at exactly `fd`, closing what was there.
    pub fn insert_at(&mut self, fd: usize, desc: FileDesc) -> bool {
        if fd >= MAX_FDS {
            return false;
        }
        if self.slots.len() <= fd {
            self.slots.resize_with(fd + 1, || None);
        }
        self.slots[fd] = Some(desc);
        true
    }

    /// A copy of the table for a forked process: host descriptors the table owns are
    /// duplicated on the host (so each process closes its own), captures and in-memory
    /// streams are shared.
    pub fn fork_copy(&self) -> std::io::Result<FdTable> {
        let mut slots = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            slots.push(match s {
                None => None,
                Some(d) => Some(FileDesc { kind: d.kind.fork_copy()?, cloexec: d.cloexec }),
            });
        }
        Ok(FdTable { slots })
    }

    /// Closes every descriptor marked close-on-exec.
    pub fn close_on_exec(&mut self) {
        for s in self.slots.iter_mut() {
            if s.as_ref().is_some_and(|d| d.cloexec) {
                *s = None;
            }
        }
    }

    /// Closes every open descriptor in `first..=last` (`close_range`), or with `cloexec_only`
    /// marks them close-on-exec instead (`CLOSE_RANGE_CLOEXEC`).
    pub fn close_range(&mut self, first: u64, last: u64, cloexec_only: bool) {
        let end =
            usize::try_from(last).unwrap_or(usize::MAX).min(self.slots.len().saturating_sub(1));
        let Ok(start) = usize::try_from(first) else { return };
        for s in self.slots.iter_mut().take(end.saturating_add(1)).skip(start) {
            match s {
                Some(d) if cloexec_only => d.cloexec = true,
                _ => *s = None,
            }
        }
    }

    /// The open descriptors numbered `from` or more, in order.
    pub fn open_from(&self, from: usize) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().enumerate().skip(from).filter(|(_, s)| s.is_some()).map(|(i, _)| i)
    }

    /// Closes `fd`; false if it was not open.
    pub fn close(&mut self, fd: i64) -> bool {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .and_then(|s| s.take())
            .is_some()
    }
}

/// Where a standard stream of the guest goes.
#[derive(Clone, Debug, Default)]
pub enum Stdio {
    /// The host process's own stream.
    #[default]
    Inherit,
    /// Collected in memory (output streams).
    Capture(CaptureBuffer),
    /// Served from memory (stdin).
    Bytes(Arc<[u8]>),
    /// Nothing: end of file, or discarded output.
    Null,
}

/// How to build a process.
#[derive(Clone, Debug)]
pub struct ProcessConfig {
    /// `argv`, including `argv[0]`.
    pub args: Vec<Vec<u8>>,
    /// `envp` entries (`NAME=value`).
    pub env: Vec<Vec<u8>>,
    /// Host path reported for `/proc/self/exe`.
    pub exe_path: PathBuf,
    /// Host directories the guest may open files under (canonicalized by the caller or by
    /// [`ProcessConfig::allow_dir`]).
    pub allowed_dirs: Vec<PathBuf>,
    /// Size of the guest address space.
    pub memory_size: u64,
    /// Size of the main thread's stack.
    pub stack_size: u64,
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
    /// Seed for `AT_RANDOM` and `getrandom`; `None` uses the host's randomness.
    pub random_seed: Option<u64>,
    /// The guest root (`vmx run --root DIR`, canonical): absolute guest paths resolve to
    /// `root/path` when that exists (symbolic links inside it resolving inside it, as under a
    /// chroot), else to the host path. The root is readable; writing in it needs a grant.
    pub root: Option<PathBuf>,
    /// The dynamic loader of a dynamically linked program (its `PT_INTERP`, found with
    /// [`crate::loader::find_interpreter`]); the loader maps it at its own base.
    pub interpreter: Option<Arc<Program>>,
    /// Whether the guest may use the host's network (`AF_INET`/`AF_INET6` sockets, `vmx run
    /// --net`); without it `socket(AF_INET, ...)` fails with `EACCES`. `AF_UNIX` sockets are
    /// always available.
    pub network: bool,
    /// Where to trace every system call in `qemu-riscv64 -strace`'s format (`vmx run
    /// --strace`); `None` traces nothing.
    pub strace: Option<Arc<crate::syscall::strace::StraceSink>>,
    /// Signals the guest starts with ignored (`SIG_IGN`), as a set of
    /// [`crate::signals::bit`]s: what a process inherits across `execve` from the one that
    /// started it (`nohup` ignores `SIGHUP`, a shell's background job `SIGINT` and
    /// `SIGQUIT`). `vmx run` passes the host dispositions it inherited, as qemu-riscv64 does.
    /// `SIGKILL` and `SIGSTOP` cannot be ignored and are left out.
    pub ignored_signals: u64,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            args: vec![b"program".to_vec()],
            env: Vec::new(),
            exe_path: PathBuf::new(),
            allowed_dirs: Vec::new(),
            memory_size: DEFAULT_MEMORY_SIZE,
            stack_size: DEFAULT_STACK_SIZE,
            stdin: Stdio::Inherit,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            random_seed: None,
            root: None,
            interpreter: None,
            network: false,
            strace: None,
            ignored_signals: 0,
        }
    }
}

impl ProcessConfig {
    /// Grants the guest access to files below `dir` (which must exist).
    pub fn allow_dir(&mut self, dir: impl Into<PathBuf>) -> std::io::Result<()> {
        self.allowed_dirs.push(std::fs::canonicalize(dir.into())?);
        Ok(())
    }
}

/// A running guest process.
pub struct Process {
    /// Guest memory.
    pub mem: AddressSpace,
    /// The image it runs.
    pub program: Arc<Program>,
    /// Open files.
    files: Mutex<FdTable>,
    /// Process id the guest sees (also the main thread's id).
    pub pid: i32,
    /// The configuration it was built from.
    pub config: Arc<ProcessConfig>,
    /// The `rt_sigaction` of each signal (index = signal number; handler, flags, restorer,
    /// mask), as [`crate::signals`] delivers them.
    sigactions: Mutex<Vec<[u64; 4]>>,
    /// State of the deterministic random stream (when seeded).
    random_state: Mutex<u64>,
    /// Per-process Linux ABI state (umask, name, limits, pending signals).
    abi: Mutex<AbiState>,
    /// Futex wait queues and sleeping threads.
    pub futexes: FutexTable,
    /// The next thread id to hand out.
    next_tid: AtomicI32,
    /// Whether a scheduler hosts the process (threads and parking allowed).
    scheduled: AtomicBool,
    /// Set once the process is ending (`exit_group`, a fatal signal, a kill).
    exiting: AtomicBool,
    /// The processes this one shares ids, a process table and caps with.
    pub sandbox: Arc<Sandbox>,
    /// A fatal signal sent from outside the process (another process's `kill`, or the end
    /// of the sandbox's root); its threads end at their next slice. 0: none.
    fatal: AtomicI32,
    /// Pending signals of the process and its threads (see [`crate::signals`]).
    sig: Mutex<SigState>,
    /// Set while any signal is pending (a cheap check at every delivery point).
    sig_hint: AtomicBool,
    /// Set once the process has made a `signalfd` (reads of host descriptors then check
    /// whether they read one).
    has_signalfds: AtomicBool,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("mem", &self.mem)
            .field("scheduled", &self.is_scheduled())
            .finish_non_exhaustive()
    }
}

/// The signal actions a new image starts with: every signal at `SIG_DFL` except those in
/// `ignored` (a set of [`crate::signals::bit`]s), which are `SIG_IGN`; `SIGKILL` and
/// `SIGSTOP` are never ignored.
fn initial_sigactions(ignored: u64) -> Vec<[u64; 4]> {
    use crate::signals::{bit, SIG_IGN, UNBLOCKABLE};
    let ignored = ignored & !UNBLOCKABLE;
    let mut actions = vec![[0; 4]; 65];
    for (sig, action) in (1..).zip(actions.iter_mut().skip(1)) {
        if ignored & bit(sig) != 0 {
            action[0] = SIG_IGN;
        }
    }
    actions
}

/// Locks `m`, recovering the data if a panicking thread poisoned it (the guarded tables stay
/// consistent between operations).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().ignore_poison()
}

impl Process {
    /// Builds a process around an address space the loader has filled, with standard streams
    /// installed as fds 0..=2.
    pub fn new(
        mem: AddressSpace,
        program: Arc<Program>,
        config: Arc<ProcessConfig>,
        pid: i32,
    ) -> Self {
        let mut files = FdTable::default();
        let streams = [&config.stdin, &config.stdout, &config.stderr];
        for (fd, stdio) in streams.into_iter().enumerate() {
            let kind = match stdio {
                Stdio::Inherit => FileKind::Host { fd: fd as RawFd, owned: false },
                Stdio::Capture(buf) => FileKind::Capture(buf.clone()),
                Stdio::Bytes(data) => FileKind::Bytes { data: data.clone(), pos: 0 },
                Stdio::Null => FileKind::Null,
            };
            files.insert_at(fd, FileDesc { kind, cloexec: false });
        }
        let random_state = config.random_seed.unwrap_or(0) ^ 0x9e37_79b9_7f4a_7c15;
        let abi = AbiState::new(&config);
        let sigactions = initial_sigactions(config.ignored_signals);
        Process {
            mem,
            program,
            files: Mutex::new(files),
            pid,
            config,
            sigactions: Mutex::new(sigactions),
            random_state: Mutex::new(random_state),
            abi: Mutex::new(abi),
            futexes: FutexTable::default(),
            next_tid: AtomicI32::new(pid.saturating_add(1)),
            scheduled: AtomicBool::new(false),
            exiting: AtomicBool::new(false),
            sandbox: Sandbox::new(pid),
            fatal: AtomicI32::new(0),
            sig: Mutex::new(SigState::with_thread(pid)),
            sig_hint: AtomicBool::new(false),
            has_signalfds: AtomicBool::new(false),
        }
    }

    /// The signal state (locked).
    pub fn sig(&self) -> MutexGuard<'_, SigState> {
        lock(&self.sig)
    }

    /// Notes that a signal is pending.
    pub fn signal_hint(&self) {
        self.sig_hint.store(true, Ordering::Release);
    }

    /// Notes that the process has (or may have) a `signalfd`.
    pub fn note_signalfd(&self) {
        self.has_signalfds.store(true, Ordering::Release);
    }

    /// Whether the process ever made a `signalfd` (a cheap check before looking one up).
    pub fn may_have_signalfds(&self) -> bool {
        self.has_signalfds.load(Ordering::Acquire)
    }

    /// Notes that no signal is pending.
    pub fn clear_signal_hint(&self) {
        self.sig_hint.store(false, Ordering::Release);
    }

    /// Whether a signal may be pending.
    pub fn has_signals(&self) -> bool {
        self.sig_hint.load(Ordering::Acquire)
    }

    /// A copy of this process for `fork`: a copy of its memory, its file descriptors
    /// (host descriptors duplicated), signal actions and ABI state, with id `pid`, in the
    /// same sandbox.
    pub fn fork(&self, pid: i32) -> std::io::Result<Process> {
        let mem = self.mem.duplicate()?;
        let files = self.files().fork_copy()?;
        let child = Process {
            mem,
            program: self.program.clone(),
            files: Mutex::new(files),
            pid,
            config: self.config.clone(),
            sigactions: Mutex::new(self.sigactions().clone()),
            random_state: Mutex::new(*lock(&self.random_state) ^ pid as u64),
            abi: Mutex::new({
                let mut abi = self.abi().clone();
                abi.itimer_deadline = None;
                abi.itimer_interval = std::time::Duration::ZERO;
                abi
            }),
            futexes: FutexTable::default(),
            next_tid: AtomicI32::new(0),
            scheduled: AtomicBool::new(self.is_scheduled()),
            exiting: AtomicBool::new(false),
            sandbox: self.sandbox.clone(),
            fatal: AtomicI32::new(0),
            sig: Mutex::new(SigState::with_thread(pid)),
            sig_hint: AtomicBool::new(false),
            has_signalfds: AtomicBool::new(false),
        };
        crate::signals::fork_signalfds(self, &child)?;
        Ok(child)
    }

    /// Makes `self` (a freshly loaded image) the continuation of `old` after `execve`: same
    /// pid and sandbox, `old`'s descriptors without the close-on-exec ones, its ABI state
    /// and its ignored signals (caught ones reset to the default, as Linux does).
    pub fn inherit_from(mut self, old: &Process) -> Process {
        self.pid = old.pid;
        self.sandbox = old.sandbox.clone();
        let mut files = std::mem::take(&mut *old.files());
        files.close_on_exec();
        self.files = Mutex::new(files);
        let mut abi = old.abi().clone();
        abi.altstacks.clear();
        abi.sigtramp = 0;
        self.abi = Mutex::new(abi);
        let old_actions = old.sigactions();
        let mut actions = vec![[0u64; 4]; old_actions.len()];
        for (new, old) in actions.iter_mut().zip(old_actions.iter()) {
            if old[0] == 1 {
                new[0] = 1; // SIG_IGN stays
            }
        }
        drop(old_actions);
        self.sigactions = Mutex::new(actions);
        self.scheduled = AtomicBool::new(old.is_scheduled());
        self
    }

    /// Ends the process from outside (another process's `kill` with a fatal default
    /// action, or the end of its sandbox): its threads stop at their next slice and its
    /// parked threads are woken to go away.
    pub fn kill_with(&self, signo: i32) {
        self.mark_fatal(signo);
        self.futexes.cancel_all();
    }

    /// Records a fatal signal sent from outside (the first one wins) without waking the
    /// parked threads: the first half of [`Process::kill_with`], for callers that hold the
    /// signal lock (an `execve` reads the flag under that lock to carry it to the new image).
    pub fn mark_fatal(&self, signo: i32) {
        let _ = self.fatal.compare_exchange(0, signo, Ordering::AcqRel, Ordering::Acquire);
    }

    /// [`Process::kill_with`] `SIGKILL`.
    pub fn kill_from_host(&self) {
        self.kill_with(crate::exec::signal::SIGKILL);
    }

    /// The fatal signal sent from outside, if any (see [`Process::kill_with`]).
    pub fn fatal_signal(&self) -> Option<i32> {
        match self.fatal.load(Ordering::Acquire) {
            0 => None,
            s => Some(s),
        }
    }

    /// A child of this process changed state: wake its `wait` calls.
    pub fn child_changed(&self) {
        Sandbox::wake_waiters(self);
    }

    /// The file-descriptor table (locked).
    pub fn files(&self) -> MutexGuard<'_, FdTable> {
        lock(&self.files)
    }

    /// The recorded signal actions (locked).
    pub fn sigactions(&self) -> MutexGuard<'_, Vec<[u64; 4]>> {
        lock(&self.sigactions)
    }

    /// The per-process ABI state (locked).
    pub fn abi(&self) -> MutexGuard<'_, AbiState> {
        lock(&self.abi)
    }

    /// Whether a scheduler hosts the process: `clone` makes threads, and blocking calls park
    /// the calling thread instead of blocking its host thread.
    pub fn is_scheduled(&self) -> bool {
        self.scheduled.load(Ordering::Relaxed)
    }

    /// Marks the process as hosted by a scheduler (see [`Process::is_scheduled`]).
    pub fn set_scheduled(&self, on: bool) {
        self.scheduled.store(on, Ordering::Relaxed);
    }

    /// Marks the process as ending: from now on its threads' system calls end the calling
    /// thread instead of running (a thread racing with `exit_group` prints nothing after it).
    pub fn begin_exit(&self) {
        self.exiting.store(true, Ordering::Release);
    }

    /// Whether the process is ending (see [`Process::begin_exit`]).
    pub fn is_exiting(&self) -> bool {
        self.exiting.load(Ordering::Acquire)
    }

    /// A fresh thread id (ids follow the process id; the main thread's id is the pid).
    pub fn allocate_tid(&self) -> i32 {
        let _ = &self.next_tid;
        self.sandbox.allocate_id()
    }

    /// Fills `out` with random bytes: the seeded stream if configured, else the host's.
    pub fn fill_random(&self, out: &mut [u8]) {
        let mut state = lock(&self.random_state);
        if self.config.random_seed.is_some() {
            for b in out.iter_mut() {
                // splitmix64
                *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = *state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                *b = (z ^ (z >> 31)) as u8;
            }
            return;
        }
        let mut filled = 0;
        while filled < out.len() {
            // SAFETY: the pointer and length describe the unfilled tail of `out`.
            let n = unsafe {
                libc::getrandom(out[filled..].as_mut_ptr().cast(), out.len() - filled, 0)
            };
            if n <= 0 {
                // The host has no randomness to give (should not happen on Linux >= 3.17);
                // fall back to the seeded stream rather than leave zeros.
                let seed = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1);
                *state ^= seed;
                for b in out[filled..].iter_mut() {
                    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    *b = (*state >> 33) as u8;
                }
                return;
            }
            filled += n as usize;
        }
    }
}

/// What the Linux ABI keeps per process beyond memory and files: the file-creation mask,
/// the `prctl` name, `setrlimit` overrides, pending (blocked) signals and alternate signal
/// stacks.
#[derive(Clone, Debug)]
pub struct AbiState {
    /// File-creation mask (`umask`).
    pub umask: u32,
    /// Thread name (`PR_SET_NAME`), NUL-padded, at most 15 bytes plus NUL.
    pub comm: [u8; 16],
    /// Limits set with `setrlimit`/`prlimit64`: `(resource, [cur, max])`.
    pub rlimits: Vec<(u32, [u64; 2])>,
    /// Signals sent to the process while blocked (bit `n - 1` for signal `n`).
    pub pending: u64,
    /// `sigaltstack` settings per thread id: `[ss_sp, ss_flags, ss_size]`.
    pub altstacks: Vec<(i32, [u64; 3])>,
    /// The working directory, as a guest path (inside the root: the path below it); starts
    /// as the host's working directory.
    pub cwd: PathBuf,
    /// The file-backed mappings (the program's and interpreter's segments, `mmap`s of
    /// files), so that `MADV_DONTNEED` brings their file's bytes back as on Linux. Sorted by
    /// start, never overlapping.
    pub file_maps: Vec<FileMapping>,
    /// Guest address of the signal-return trampoline page (0: not mapped yet).
    pub sigtramp: u64,
    /// When the `ITIMER_REAL` timer expires next.
    pub itimer_deadline: Option<std::time::Instant>,
    /// Its period (zero: one-shot).
    pub itimer_interval: std::time::Duration,
    /// Bumped at every `setitimer`, so a stale expiry is ignored.
    pub itimer_generation: u64,
    /// Unix socket paths the guest bound: `(host path, the path as the guest gave it)`, so
    /// that addresses read back show the guest's own spelling (at most 1,024, newest last).
    pub unix_names: Vec<(Vec<u8>, Vec<u8>)>,
    /// The auxiliary vector the loader gave the program (key, value pairs of little-endian
    /// words, ending with `AT_NULL`), as `/proc/self/auxv` shows it.
    pub auxv: Vec<u8>,
}

/// Where a file-backed guest range takes its bytes from.
#[derive(Clone, Debug)]
pub enum MapSource {
    /// A host file the guest mapped (a duplicate of its descriptor).
    File(Arc<std::os::fd::OwnedFd>),
    /// A program image (its image file).
    Image(Arc<Program>),
}

/// A file-backed guest range: page `start` shows the source's bytes from `offset` on.
#[derive(Clone, Debug)]
pub struct FileMapping {
    /// First guest address (page aligned).
    pub start: u64,
    /// End (page aligned, exclusive).
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// The file.
    pub source: MapSource,
}

impl AbiState {
    /// The state of a fresh process built from `config`.
    pub fn new(config: &ProcessConfig) -> AbiState {
        let name = if config.exe_path.as_os_str().is_empty() {
            config.args.first().cloned().unwrap_or_default()
        } else {
            use std::os::unix::ffi::OsStrExt;
            config.exe_path.as_os_str().as_bytes().to_vec()
        };
        let base = name.rsplit(|&b| b == b'/').next().unwrap_or(&[]);
        let mut comm = [0u8; 16];
        let n = base.len().min(15);
        comm[..n].copy_from_slice(&base[..n]);
        AbiState {
            umask: host_umask(),
            comm,
            rlimits: Vec::new(),
            pending: 0,
            altstacks: Vec::new(),
            cwd: initial_cwd(config),
            file_maps: Vec::new(),
            sigtramp: 0,
            itimer_deadline: None,
            itimer_interval: std::time::Duration::ZERO,
            itimer_generation: 0,
            unix_names: Vec::new(),
            auxv: Vec::new(),
        }
    }
}

/// The guest path of the host's working directory (the part below the root when inside it).
fn initial_cwd(config: &ProcessConfig) -> PathBuf {
    let host = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    match config.root.as_ref().and_then(|r| host.strip_prefix(r).ok()) {
        Some(rest) => std::path::Path::new("/").join(rest),
        None => host,
    }
}

/// The host process's umask, read once from `/proc/self/status` (reading it with `umask(2)`
/// would briefly change it for every thread); 0o022 if unavailable.
fn host_umask() -> u32 {
    static UMASK: OnceLock<u32> = OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o022)
    })
}
