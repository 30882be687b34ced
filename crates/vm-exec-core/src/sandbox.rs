//! The processes of one sandbox: a root guest process and everything it forks.
//!
//! A [`Sandbox`] is shared (`Arc`) by every process descended from one root. It hands out
//! process and thread ids (unique inside the sandbox), keeps the process table (parent,
//! process group, session, and the wait status of a child that ended and was not yet
//! waited for), counts processes and threads against the sandbox's caps, and lets `kill`
//! reach any process of the sandbox.
//!
//! Invariants:
//! - Every live process of the sandbox has one entry, keyed by its pid; the entry keeps a
//!   weak reference to the current [`Process`] (an `execve` replaces it, same pid).
//! - A process that ends becomes a zombie (its wait status recorded) if its parent is still
//!   alive in the table, else its entry is removed. A parent that ends orphans its children:
//!   their parent becomes 0 and their zombies are dropped.
//! - Waiting for a child and a child's exit are ordered by the table lock: a parent that
//!   found no zombie registers its waiter on its own [`crate::futex::FutexTable`] under
//!   [`CHILD_KEY`] before it releases the lock, and an exit records the status under the
//!   lock before it wakes that key, so no exit is missed.
//! - When the root process ends, the whole sandbox ends: every other process is killed
//!   (there is no init to adopt orphans, and a host caller waits only for the root).
//! - The caps are enforced at `fork` and `clone` (EAGAIN past them), so a fork or thread
//!   bomb ends with an error in the guest.

use crate::elf::{ElfError, Program};
use crate::futex::MATCH_ANY;
use crate::process::Process;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// The futex-table key on which a process waits for its children (no aligned futex word
/// has this address).
pub const CHILD_KEY: u64 = u64::MAX - 2;

/// Default cap on the processes of one sandbox.
pub const DEFAULT_MAX_PROCESSES: usize = 512;
/// Default cap on the threads of one sandbox (all processes together).
pub const DEFAULT_MAX_THREADS: usize = 4096;

/// One process in the table.
#[derive(Debug)]
struct Entry {
    process: Weak<Process>,
    ppid: i32,
    pgid: i32,
    sid: i32,
    /// The wait status once it ended (a zombie).
    status: Option<i32>,
}

/// What a wait found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFound {
    /// A child ended: its pid and wait status (it is reaped unless `WNOWAIT`).
    Zombie(i32, i32),
    /// Matching children exist, none has ended.
    Running,
    /// No child matches (`ECHILD`).
    NoChild,
}

/// Which children a wait is for (`wait4`'s `pid` argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitTarget {
    /// Any child.
    Any,
    /// The child with this pid.
    Pid(i32),
    /// Any child in this process group.
    Group(i32),
}

/// The processes of one sandbox. See the module docs.
#[derive(Debug)]
pub struct Sandbox {
    next_id: AtomicI32,
    root: i32,
    table: Mutex<HashMap<i32, Entry>>,
    threads: AtomicUsize,
    max_processes: usize,
    max_threads: usize,
    /// Programs `execve` loaded, by host path, with the file's size and modification time.
    programs: Mutex<HashMap<std::path::PathBuf, CachedProgram>>,
}

/// A program image kept for later `execve`s of the same file.
#[derive(Debug)]
struct CachedProgram {
    len: u64,
    modified: Option<std::time::SystemTime>,
    program: Arc<Program>,
}

/// Most distinct programs a sandbox keeps parsed.
const MAX_CACHED_PROGRAMS: usize = 64;

impl Sandbox {
    /// A sandbox whose root process has id `root_pid`.
    pub fn new(root_pid: i32) -> Arc<Sandbox> {
        Self::with_limits(root_pid, DEFAULT_MAX_PROCESSES, DEFAULT_MAX_THREADS)
    }

    /// A sandbox with the given caps.
    pub fn with_limits(root_pid: i32, max_processes: usize, max_threads: usize) -> Arc<Sandbox> {
        Arc::new(Sandbox {
            next_id: AtomicI32::new(root_pid.saturating_add(1)),
            root: root_pid,
            table: Mutex::new(HashMap::new()),
            threads: AtomicUsize::new(1),
            max_processes: max_processes.max(1),
            max_threads: max_threads.max(1),
            programs: Mutex::new(HashMap::new()),
        })
    }

    fn table(&self) -> MutexGuard<'_, HashMap<i32, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The root process's id.
    pub fn root(&self) -> i32 {
        self.root
    }

    /// A fresh id for a thread or process (unique in the sandbox; wraps below Linux's
    /// `PID_MAX`).
    pub fn allocate_id(&self) -> i32 {
        const PID_MAX: i32 = 4_194_304;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if id >= PID_MAX {
            self.next_id.store(self.root.saturating_add(1), Ordering::Relaxed);
        }
        id
    }

    /// The parsed program for the file at `path` whose contents are `bytes`: the one parsed
    /// before if the file has not changed (so processes that exec the same program share
    /// its image pages and decoded blocks), else parsed now.
    pub fn program(
        &self,
        path: &std::path::Path,
        bytes: Vec<u8>,
    ) -> Result<Arc<Program>, ElfError> {
        let meta = std::fs::metadata(path).ok();
        let len = bytes.len() as u64;
        let modified = meta.and_then(|m| m.modified().ok());
        let mut cache = self.programs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(path) {
            if c.len == len && c.modified == modified && modified.is_some() {
                return Ok(c.program.clone());
            }
        }
        let program = Arc::new(Program::parse(bytes)?);
        if cache.len() >= MAX_CACHED_PROGRAMS {
            cache.clear();
        }
        cache.insert(path.to_path_buf(), CachedProgram { len, modified, program: program.clone() });
        Ok(program)
    }

    /// Records the root process (its own session and group leader).
    pub fn register_root(&self, p: &Arc<Process>) {
        self.table().insert(
            p.pid,
            Entry { process: Arc::downgrade(p), ppid: 0, pgid: p.pid, sid: p.pid, status: None },
        );
    }

    /// Reserves room for one more thread; false past the cap.
    pub fn reserve_thread(&self) -> bool {
        let n = self.threads.fetch_add(1, Ordering::Relaxed);
        if n >= self.max_threads {
            self.threads.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives back a thread reserved with [`Sandbox::reserve_thread`] (or a process's main
    /// thread).
    pub fn release_thread(&self) {
        let _ =
            self.threads.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Whether one more process fits.
    pub fn can_fork(&self) -> bool {
        let t = self.table();
        t.values().filter(|e| e.status.is_none()).count() < self.max_processes
            && t.len() < self.max_processes * 2
    }

    /// Records `child`, forked by `parent`, in the parent's group and session.
    pub fn register_child(&self, parent: i32, child: &Arc<Process>) {
        let mut t = self.table();
        let (pgid, sid) = t.get(&parent).map_or((parent, parent), |e| (e.pgid, e.sid));
        t.insert(
            child.pid,
            Entry { process: Arc::downgrade(child), ppid: parent, pgid, sid, status: None },
        );
    }

    /// Points the entry of `p.pid` at `p` (after `execve`).
    pub fn replace(&self, p: &Arc<Process>) {
        if let Some(e) = self.table().get_mut(&p.pid) {
            e.process = Arc::downgrade(p);
        }
    }

    /// The live process with this pid.
    pub fn process(&self, pid: i32) -> Option<Arc<Process>> {
        let t = self.table();
        let e = t.get(&pid)?;
        if e.status.is_some() {
            return None;
        }
        e.process.upgrade()
    }

    /// Whether `pid` is in the table (alive or a zombie).
    pub fn exists(&self, pid: i32) -> bool {
        self.table().contains_key(&pid)
    }

    /// Live processes of group `pgid` (all live processes for `None`).
    pub fn members(&self, pgid: Option<i32>) -> Vec<Arc<Process>> {
        self.table()
            .values()
            .filter(|e| e.status.is_none() && pgid.is_none_or(|g| e.pgid == g))
            .filter_map(|e| e.process.upgrade())
            .collect()
    }

    /// The parent of `pid` (0 if orphaned or unknown).
    pub fn ppid(&self, pid: i32) -> i32 {
        self.table().get(&pid).map_or(0, |e| e.ppid)
    }

    /// The process group of `pid`.
    pub fn pgid(&self, pid: i32) -> Option<i32> {
        self.table().get(&pid).map(|e| e.pgid)
    }

    /// The session of `pid`.
    pub fn sid(&self, pid: i32) -> Option<i32> {
        self.table().get(&pid).map(|e| e.sid)
    }

    /// `setpgid(pid, pgid)` as asked by `caller` (both already defaulted: nonzero). Returns
    /// an errno on failure.
    pub fn set_pgid(&self, caller: i32, pid: i32, pgid: i32) -> Result<(), i32> {
        let mut t = self.table();
        let caller_sid = t.get(&caller).map(|e| e.sid).ok_or(libc::ESRCH)?;
        let target = t.get(&pid).ok_or(libc::ESRCH)?;
        if pid != caller && target.ppid != caller {
            return Err(libc::ESRCH);
        }
        if target.sid != caller_sid {
            return Err(libc::EPERM);
        }
        if target.sid == pid {
            return Err(libc::EPERM); // a session leader cannot move
        }
        if pgid != pid && !t.values().any(|e| e.pgid == pgid && e.sid == caller_sid) {
            return Err(libc::EPERM);
        }
        if let Some(e) = t.get_mut(&pid) {
            e.pgid = pgid;
        }
        Ok(())
    }

    /// `setsid()` for `pid`: a new session and group led by it. Fails with `EPERM` for a
    /// group leader.
    pub fn set_sid(&self, pid: i32) -> Result<i32, i32> {
        let mut t = self.table();
        if t.values().any(|e| e.pgid == pid) {
            return Err(libc::EPERM);
        }
        let e = t.get_mut(&pid).ok_or(libc::ESRCH)?;
        e.pgid = pid;
        e.sid = pid;
        Ok(pid)
    }

    /// Looks for an ended child of `parent` matching `target`; reaps it unless `keep`. When
    /// children are running and `then_wait` is given, it is called under the table lock (to
    /// register the parent's waiter without missing an exit).
    pub fn find_child(
        &self,
        parent: i32,
        target: WaitTarget,
        keep: bool,
        then_wait: Option<&dyn Fn()>,
    ) -> WaitFound {
        let mut t = self.table();
        let matches = |pid: i32, e: &Entry| {
            e.ppid == parent
                && match target {
                    WaitTarget::Any => true,
                    WaitTarget::Pid(p) => pid == p,
                    WaitTarget::Group(g) => e.pgid == g,
                }
        };
        let mut any = false;
        let mut zombie = None;
        for (&pid, e) in t.iter() {
            if matches(pid, e) {
                any = true;
                if let Some(st) = e.status {
                    // The lowest pid first, for a deterministic order.
                    if zombie.is_none_or(|(z, _)| pid < z) {
                        zombie = Some((pid, st));
                    }
                }
            }
        }
        if let Some((pid, st)) = zombie {
            if !keep {
                t.remove(&pid);
            }
            return WaitFound::Zombie(pid, st);
        }
        if !any {
            return WaitFound::NoChild;
        }
        if let Some(f) = then_wait {
            f();
        }
        WaitFound::Running
    }

    /// Records that `pid` ended with wait status `status`: it becomes a zombie for its
    /// parent (woken, and sent `SIGCHLD`), its children are orphaned. When `pid` is the root,
    /// every other process of the sandbox is killed. `current` is the process object that
    /// ended (an exit of a process already replaced by `execve` is ignored).
    pub fn exited(&self, current: &Process, status: i32) {
        let pid = current.pid;
        let parent = {
            let mut t = self.table();
            let Some(e) = t.get(&pid) else { return };
            if !std::ptr::eq(e.process.as_ptr(), current) {
                return;
            }
            let ppid = e.ppid;
            let parent =
                t.get(&ppid).filter(|p| p.status.is_none()).and_then(|p| p.process.upgrade());
            if parent.is_some() {
                if let Some(e) = t.get_mut(&pid) {
                    e.status = Some(status);
                }
            } else {
                t.remove(&pid);
            }
            // Orphans: running children lose their parent, zombies go.
            t.retain(|_, e| e.ppid != pid || e.status.is_none());
            for e in t.values_mut() {
                if e.ppid == pid {
                    e.ppid = 0;
                }
            }
            parent
        };
        if let Some(p) = parent {
            // SIGCHLD: CLD_EXITED, CLD_KILLED or CLD_DUMPED, with the status.
            let (code, value) = if status & 0x7f == 0 {
                (1, (status >> 8) & 0xff)
            } else if status & 0x80 != 0 {
                (3, status & 0x7f)
            } else {
                (2, status & 0x7f)
            };
            let mut info = crate::signals::SigInfo::from_sender(17, code, pid);
            info.status = value;
            crate::signals::post_process(&p, info);
            p.child_changed();
        }
        if pid == self.root {
            for p in self.members(None) {
                if p.pid != pid {
                    p.kill_from_host();
                }
            }
        }
    }

    /// Wakes every waiter of `p` for its children.
    pub fn wake_waiters(p: &Process) {
        p.futexes.wake(CHILD_KEY, usize::MAX, MATCH_ANY);
    }
}

/// The wait status of a process that exited with `code`.
pub fn exit_status(code: i32) -> i32 {
    (code & 0xff) << 8
}

/// The wait status of a process killed by `signo` (with the core-dump bit when `core`).
pub fn signal_status(signo: i32, core: bool) -> i32 {
    (signo & 0x7f) | if core { 0x80 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf_writer::simple_executable;
    use crate::memory::AddressSpace;
    use crate::process::ProcessConfig;

    fn process(pid: i32) -> Arc<Process> {
        let program = Arc::new(Program::parse(simple_executable(&[0x73, 0, 0, 0], &[])).unwrap());
        let p = Process::new(
            AddressSpace::new(1 << 20).unwrap(),
            program,
            Arc::new(ProcessConfig::default()),
            pid,
        );
        Arc::new(p)
    }

    #[test]
    fn zombies_are_reaped_once_and_orphans_forgotten() {
        let root = process(100);
        let sb = root.sandbox.clone();
        sb.register_root(&root);
        let a = Arc::new(root.fork(sb.allocate_id()).unwrap());
        let b = Arc::new(root.fork(sb.allocate_id()).unwrap());
        sb.register_child(root.pid, &a);
        sb.register_child(root.pid, &b);
        let grandchild = Arc::new(a.fork(sb.allocate_id()).unwrap());
        sb.register_child(a.pid, &grandchild);
        assert_eq!(sb.find_child(root.pid, WaitTarget::Any, false, None), WaitFound::Running);
        assert_eq!(sb.find_child(b.pid, WaitTarget::Any, false, None), WaitFound::NoChild);
        sb.exited(&b, exit_status(3));
        assert_eq!(
            sb.find_child(root.pid, WaitTarget::Any, true, None),
            WaitFound::Zombie(b.pid, 3 << 8),
            "WNOWAIT keeps it"
        );
        assert_eq!(
            sb.find_child(root.pid, WaitTarget::Pid(b.pid), false, None),
            WaitFound::Zombie(b.pid, 3 << 8)
        );
        assert_eq!(
            sb.find_child(root.pid, WaitTarget::Pid(b.pid), false, None),
            WaitFound::NoChild
        );
        // `a` ends: its running child is orphaned (no parent to wait for it).
        sb.exited(&a, signal_status(9, false));
        assert_eq!(sb.ppid(grandchild.pid), 0);
        assert_eq!(
            sb.find_child(root.pid, WaitTarget::Any, false, None),
            WaitFound::Zombie(a.pid, 9)
        );
        // The root's end kills what is left.
        sb.exited(&root, exit_status(0));
        assert_eq!(grandchild.fatal_signal(), Some(9));
    }

    #[test]
    fn groups_and_sessions_follow_linux_rules() {
        let root = process(200);
        let sb = root.sandbox.clone();
        sb.register_root(&root);
        let c = Arc::new(root.fork(sb.allocate_id()).unwrap());
        sb.register_child(root.pid, &c);
        assert_eq!(sb.set_sid(root.pid), Err(libc::EPERM), "group leader");
        assert_eq!(sb.set_pgid(root.pid, root.pid, root.pid), Err(libc::EPERM), "session leader");
        assert_eq!(sb.set_pgid(root.pid, c.pid, c.pid), Ok(()));
        assert_eq!(sb.pgid(c.pid), Some(c.pid));
        assert_eq!(sb.set_pgid(root.pid, c.pid, 12345), Err(libc::EPERM), "no such group");
        assert_eq!(sb.set_pgid(root.pid, 999, 999), Err(libc::ESRCH));
        assert_eq!(sb.set_sid(c.pid), Err(libc::EPERM), "now a group leader");
        assert!(sb.reserve_thread());
        sb.release_thread();
    }

    #[test]
    fn the_process_cap_is_enforced() {
        let root = process(300);
        let sb2 = root.sandbox.clone();
        sb2.register_root(&root);
        assert!(sb2.can_fork());
        let mut kids = Vec::new();
        while sb2.can_fork() {
            let k = Arc::new(root.fork(sb2.allocate_id()).unwrap());
            sb2.register_child(root.pid, &k);
            kids.push(k);
            assert!(kids.len() <= DEFAULT_MAX_PROCESSES);
        }
        assert_eq!(kids.len() + 1, DEFAULT_MAX_PROCESSES);
    }
}
