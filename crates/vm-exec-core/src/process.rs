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
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = g.limit.saturating_sub(g.data.len());
        let take = room.min(bytes.len());
        g.data.extend_from_slice(&bytes[..take]);
        g.dropped += (bytes.len() - take) as u64;
    }

    /// A copy of what was captured so far.
    pub fn contents(&self) -> Vec<u8> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).data.clone()
    }

    /// How many handles share the buffer: readers like the caller, plus every guest
    /// descriptor writing to it. Once the guest's process is gone, only the readers remain,
    /// so nothing more can be appended.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// How many bytes were dropped because the limit was reached.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).dropped
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
}

impl Drop for FileKind {
    fn drop(&mut self) {
        if let FileKind::Host { fd, owned: true } = *self {
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
    /// Where to trace every system call in `qemu-riscv64 -strace`'s format (`vmx run
    /// --strace`); `None` traces nothing.
    pub strace: Option<Arc<crate::syscall::strace::StraceSink>>,
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
            strace: None,
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
    /// Recorded `rt_sigaction` handlers (64 signals, 4 words each); never delivered.
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

/// Locks `m`, recovering the data if a panicking thread poisoned it (the guarded tables stay
/// consistent between operations).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        Process {
            mem,
            program,
            files: Mutex::new(files),
            pid,
            config,
            sigactions: Mutex::new(vec![[0; 4]; 65]),
            random_state: Mutex::new(random_state),
            abi: Mutex::new(abi),
            futexes: FutexTable::default(),
            next_tid: AtomicI32::new(pid.saturating_add(1)),
            scheduled: AtomicBool::new(false),
            exiting: AtomicBool::new(false),
        }
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
        self.next_tid.fetch_add(1, Ordering::Relaxed)
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
        }
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
