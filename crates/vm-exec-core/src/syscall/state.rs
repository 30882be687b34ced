//! Per-process ABI state that [`Process`] has no field for: the file-creation mask, the
//! `prctl` name, `setrlimit` overrides, pending (blocked) signals and alternate signal stacks.
//!
//! It lives in a host-global side table keyed by the identity of a live process: the host
//! address of its guest memory (unique among live address spaces) together with its
//! configuration `Arc` (checked through a `Weak`, so entries of dropped configurations are
//! pruned). [`forget`] drops a process's entry when it exits through a system call.
//! Invariant: an entry is only ever created lazily, with the values a fresh process has, so
//! a process that never touches this state costs nothing.
//!
//! Limitation (see the module report): a process that ends some other way (a fault) leaves
//! its entry until its configuration is dropped; a later process created from the *same*
//! configuration `Arc` that happens to get the *same* host reservation would inherit it.
//! A field on `Process` would remove this.

use crate::process::{Process, ProcessConfig};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// The per-process state.
#[derive(Clone, Debug)]
pub(crate) struct ProcState {
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

impl ProcState {
    fn fresh(p: &Process) -> ProcState {
        let name = if p.config.exe_path.as_os_str().is_empty() {
            p.config.args.first().cloned().unwrap_or_default()
        } else {
            use std::os::unix::ffi::OsStrExt;
            p.config.exe_path.as_os_str().as_bytes().to_vec()
        };
        let base = name.rsplit(|&b| b == b'/').next().unwrap_or(&[]);
        let mut comm = [0u8; 16];
        let n = base.len().min(15);
        comm[..n].copy_from_slice(&base[..n]);
        ProcState {
            umask: host_umask(),
            comm,
            rlimits: Vec::new(),
            pending: 0,
            altstacks: Vec::new(),
        }
    }
}

struct Entry {
    base: usize,
    config: Weak<ProcessConfig>,
    state: ProcState,
}

static TABLE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn key(p: &Process) -> usize {
    p.mem.host_base() as usize
}

/// Runs `f` on `p`'s state, creating it if needed.
pub(crate) fn with<R>(p: &Process, f: impl FnOnce(&mut ProcState) -> R) -> R {
    let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    t.retain(|e| e.config.strong_count() > 0);
    let base = key(p);
    let cfg = Arc::as_ptr(&p.config);
    let i = match t.iter().position(|e| e.base == base && std::ptr::eq(e.config.as_ptr(), cfg)) {
        Some(i) => i,
        None => {
            t.push(Entry { base, config: Arc::downgrade(&p.config), state: ProcState::fresh(p) });
            t.len() - 1
        }
    };
    f(&mut t[i].state)
}

/// Reads `p`'s state without creating an entry (a fresh state if it has none).
pub(crate) fn peek<R>(p: &Process, f: impl FnOnce(&ProcState) -> R) -> R {
    let t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let base = key(p);
    let cfg = Arc::as_ptr(&p.config);
    match t.iter().find(|e| e.base == base && std::ptr::eq(e.config.as_ptr(), cfg)) {
        Some(e) => f(&e.state),
        None => {
            drop(t);
            f(&ProcState::fresh(p))
        }
    }
}

/// Drops `p`'s state (the process is ending).
pub(crate) fn forget(p: &Process) {
    let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let base = key(p);
    let cfg = Arc::as_ptr(&p.config);
    t.retain(|e| {
        !(e.base == base && std::ptr::eq(e.config.as_ptr(), cfg)) && e.config.strong_count() > 0
    });
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
