//! Signal delivery: pending sets, the Linux/RISC-V signal frame, and `rt_sigreturn`.
//!
//! A signal is *posted* to a thread (`tkill`, `tgkill`, a fault, a signal a thread raises for
//! itself) or to a process (`kill`, `SIGCHLD`, `SIGALRM`); it is *delivered* at a delivery
//! point of a thread that does not block it: after each system call of that thread (in
//! [`crate::syscall::dispatch`]), at the start of each slice the scheduler runs (signals
//! from other threads and processes), and when a parked thread is woken by the signal (its
//! call then returns `EINTR`, or is restarted under `SA_RESTART` for `read`, `wait4` and
//! futex waits, as Linux does).
//!
//! Delivery takes the action: ignored signals are dropped, default actions end the process
//! (or are ignored), and a handler gets a frame laid out as Linux (and qemu) build it on
//! RISC-V: `rt_sigframe { u32 tramp[2]; siginfo_t info; ucontext_t uc }` with
//! `uc.uc_mcontext` (pc, x1..x31, f0..f31, fcsr) 16-byte aligned at offset 176 of `uc`, so
//! glibc and Go read the interrupted pc and registers where they expect them. The handler
//! runs with `a0` = signal, `a1` = `&info`, `a2` = `&uc`, on the alternate stack when
//! `SA_ONSTACK` asks and one is set, and returns through `ra` into a two-instruction
//! trampoline page (`li a7, 139; ecall`) mapped read+execute in the guest on first use.
//! `rt_sigreturn` restores the registers and mask saved in the frame.
//!
//! Invariants: `Process::sig` holds every pending signal; a thread's blocked mask is
//! mirrored there (`ThreadSig::mask`) whenever it changes, so a sender can pick a thread
//! that accepts a process-directed signal and wake it if it is parked. `hint` is nonzero
//! whenever anything is pending, so the per-system-call check is one atomic load.

use crate::cpu::{reg, GuestThread};
use crate::exec::{GuestExit, GuestSignal, StopReason};
use crate::futex::{WaitEnd, WaitKind, Waiter};
use crate::memory::{PAGE_SIZE, PERM_EXEC, PERM_READ, PERM_WRITE};
use crate::process::Process;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// Highest signal number.
pub const NSIG: i32 = 64;
/// `SIG_DFL`.
pub const SIG_DFL: u64 = 0;
/// `SIG_IGN`.
pub const SIG_IGN: u64 = 1;
/// `SA_SIGINFO`.
pub const SA_SIGINFO: u64 = 4;
/// `SA_ONSTACK`.
pub const SA_ONSTACK: u64 = 0x0800_0000;
/// `SA_RESTART`.
pub const SA_RESTART: u64 = 0x1000_0000;
/// `SA_NODEFER`.
pub const SA_NODEFER: u64 = 0x4000_0000;
/// `SA_RESETHAND`.
pub const SA_RESETHAND: u64 = 0x8000_0000;

/// `si_code` of a signal sent by `kill`.
pub const SI_USER: i32 = 0;
/// `si_code` of a signal the kernel sends (`alarm`).
pub const SI_KERNEL: i32 = 0x80;
/// `si_code` of `rt_sigqueueinfo`/`sigqueue`.
pub const SI_QUEUE: i32 = -1;
/// `si_code` of `tkill`/`tgkill`.
pub const SI_TKILL: i32 = -6;

const SIGKILL: i32 = 9;
const SIGSTOP: i32 = 19;

/// The bit of `sig` in a signal set.
pub const fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// Signals that can be neither blocked nor caught.
pub const UNBLOCKABLE: u64 = bit(SIGKILL) | bit(SIGSTOP);

/// `SIGPIPE`.
const SIGPIPE: i32 = 13;

/// The signals this host process inherited as ignored (`SIG_IGN`) from the process that
/// started it, as a set of [`bit`]s, for [`crate::process::ProcessConfig::ignored_signals`]:
/// a command-line runner passes them on to its guest, as `execve` and qemu-riscv64 do (under
/// `nohup`, `SIGHUP` stays ignored). Host and RISC-V Linux share signal numbers.
///
/// `SIGPIPE` is never reported: the Rust runtime sets it to `SIG_IGN` in every program
/// before `main`, so what the parent left cannot be told apart. Call it before the program
/// ignores any other signal itself.
pub fn host_ignored_signals() -> u64 {
    let mut set = 0;
    for sig in 1..=NSIG {
        if sig == SIGPIPE || bit(sig) & UNBLOCKABLE != 0 {
            continue;
        }
        // SAFETY: an all-zero `sigaction` is a valid value of the plain C struct.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only reads the current one into `old`, a valid,
        // exclusively borrowed struct; signals the C library reserves fail with EINVAL.
        let rc = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
        if rc == 0 && old.sa_sigaction == libc::SIG_IGN {
            set |= bit(sig);
        }
    }
    set
}

/// One pending signal's `siginfo_t` fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigInfo {
    /// Signal number.
    pub signo: i32,
    /// `si_code`.
    pub code: i32,
    /// Sender's pid (kill, SIGCHLD).
    pub pid: i32,
    /// Sender's uid.
    pub uid: u32,
    /// `si_status` (SIGCHLD) or `si_int` (sigqueue).
    pub status: i32,
    /// Fault address (SIGSEGV, SIGBUS, SIGILL, SIGTRAP).
    pub addr: u64,
    /// Whether the union holds a fault address (else pid/uid/status).
    pub is_fault: bool,
}

impl SigInfo {
    /// A signal sent by process `pid` with `code`.
    pub fn from_sender(signo: i32, code: i32, pid: i32) -> SigInfo {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        SigInfo { signo, code, pid, uid, ..Default::default() }
    }

    /// The 128-byte `siginfo_t`.
    pub fn to_bytes(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[0..4].copy_from_slice(&self.signo.to_le_bytes());
        b[8..12].copy_from_slice(&self.code.to_le_bytes());
        if self.is_fault {
            b[16..24].copy_from_slice(&self.addr.to_le_bytes());
        } else {
            b[16..20].copy_from_slice(&self.pid.to_le_bytes());
            b[20..24].copy_from_slice(&self.uid.to_le_bytes());
            b[24..28].copy_from_slice(&self.status.to_le_bytes());
        }
        b
    }
}

/// Per-thread signal state shared with senders.
#[derive(Debug, Default)]
pub struct ThreadSig {
    /// Signals sent to this thread and not yet delivered.
    pub pending: u64,
    /// Their `siginfo_t`s (real-time signals queue several).
    pub infos: Vec<SigInfo>,
    /// The thread's blocked mask (mirror of `GuestThread::signal_mask`).
    pub mask: u64,
    /// The wait the thread is parked in, if any (a signal interrupts it).
    pub waiter: Option<Arc<Waiter>>,
    /// The mask to restore when the handler returns or the wait ends (set by
    /// `rt_sigsuspend`, and by `ppoll`, `pselect6`, `epoll_pwait` and `rt_sigtimedwait` while
    /// they wait with a temporary mask).
    pub saved_mask: Option<u64>,
    /// The set an `rt_sigtimedwait` parked on waits for (its signals are unblocked for the
    /// wait, but taken by the call, not delivered).
    pub sigwait: Option<u64>,
}

impl ThreadSig {
    /// Whether the thread blocks `sig` for the purpose of discarding ignored signals: Linux
    /// keeps an ignored signal pending while it is blocked, also in the mask an
    /// `rt_sigtimedwait` replaced for its wait (`real_blocked`).
    fn blocks(&self, sig: i32) -> bool {
        let real = if self.sigwait.is_some() { self.saved_mask.unwrap_or(0) } else { 0 };
        (self.mask | real) & bit(sig) != 0
    }
}

/// The pending signals of a process and its threads.
#[derive(Debug, Default)]
pub struct SigState {
    /// Signals sent to the process and not yet delivered.
    pub pending: u64,
    /// Their `siginfo_t`s.
    pub infos: Vec<SigInfo>,
    /// Per-thread state, by thread id.
    pub threads: HashMap<i32, ThreadSig>,
    /// `--strace` printed the signal that ends the process already (so the fatal stop it
    /// becomes is not printed again as a fault).
    pub fatal_traced: bool,
    /// Set by `execve` on the old image: the process that replaced it. A sender that found
    /// the old image before the swap posts to the new one instead (see
    /// [`SigState::successor`]).
    pub exec_successor: Option<ExecSuccessor>,
    /// The process's signalfds (see [`SignalFd`]).
    pub signalfds: Vec<SignalFd>,
}

/// The host side of a guest `signalfd`: a host pipe whose read end is the guest's descriptor
/// (so `poll`, `epoll` and `select` see it like any host descriptor) and which holds one
/// byte exactly while a signal of `mask` is pending for the process or one of its threads
/// ([`sync_signalfds`] keeps that level, under the signal lock, after every change of the
/// pending sets). Reads of the guest descriptor are served by the signal layer, never from
/// the pipe.
#[derive(Debug)]
pub struct SignalFd {
    /// The pipe's `(st_dev, st_ino)`: how a guest descriptor is recognised as this signalfd
    /// (it survives `dup`).
    pub id: (u64, u64),
    /// The signals it reports.
    pub mask: u64,
    /// Our own read end (drains the level byte).
    pub read: std::os::fd::OwnedFd,
    /// The write end (non-blocking; sets the level byte).
    pub write: std::os::fd::OwnedFd,
    /// Whether the level byte is in the pipe.
    pub armed: bool,
}

impl SignalFd {
    /// Makes the host pipe of a new signalfd that reports `mask`: returns the guest's end (a
    /// new close-on-exec host descriptor, non-blocking when asked) and the record keeping
    /// our ends, not armed yet (the caller pushes it and calls [`sync_signalfds`]).
    pub fn create(mask: u64, nonblocking: bool) -> std::io::Result<(OwnedFd, SignalFd)> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a local array of two descriptors pipe2 fills.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
        let (guest, write) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let read = guest.try_clone()?;
        set_nonblocking(&write)?;
        if nonblocking {
            set_nonblocking(&guest)?;
        }
        let id = file_id(guest.as_raw_fd())?;
        Ok((guest, SignalFd { id, mask, read, write, armed: false }))
    }
}

/// Sets `O_NONBLOCK` on `fd`.
fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL take integer arguments; `fd` is open.
    let ok = unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        fl >= 0 && libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The `(st_dev, st_ino)` of host descriptor `h`: what identifies a signalfd's pipe.
pub fn file_id(h: RawFd) -> std::io::Result<(u64, u64)> {
    // SAFETY: `st` is a local stat buffer fstat fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `h` is only read.
    if unsafe { libc::fstat(h, &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.st_dev, st.st_ino))
}

/// Gives `child`, just forked from `parent` (its descriptor table a copy of the parent's),
/// signalfds of its own: every descriptor of the child that reads one of the parent's
/// signalfds is pointed (`dup3` onto the same host descriptor) at a new pipe reporting the
/// child's signals with the same mask, so reads, `poll` and `epoll` in the child see the
/// child's pending signals, as on Linux. Descriptors that shared one signalfd in the parent
/// share one in the child.
pub fn fork_signalfds(parent: &Process, child: &Process) -> std::io::Result<()> {
    if !parent.may_have_signalfds() {
        return Ok(());
    }
    let theirs: Vec<((u64, u64), u64)> =
        parent.sig().signalfds.iter().map(|f| (f.id, f.mask)).collect();
    if theirs.is_empty() {
        return Ok(());
    }
    let files = child.files();
    let mut s = child.sig();
    let mut made: HashMap<(u64, u64), OwnedFd> = HashMap::new();
    for h in files.host_fds() {
        let Ok(id) = file_id(h) else { continue };
        let Some(&(_, mask)) = theirs.iter().find(|(i, _)| *i == id) else { continue };
        let fresh = match made.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.get().as_raw_fd(),
            std::collections::hash_map::Entry::Vacant(e) => {
                // SAFETY: F_GETFL takes no argument; `h` is open (the child's table holds it).
                let fl = unsafe { libc::fcntl(h, libc::F_GETFL) };
                let nonblocking = fl >= 0 && fl & libc::O_NONBLOCK != 0;
                let (guest, host) = SignalFd::create(mask, nonblocking)?;
                s.signalfds.push(host);
                e.insert(guest).as_raw_fd()
            }
        };
        // SAFETY: `h` is a descriptor the child's table owns (a fork copy made for it);
        // dup3 makes it refer to the new pipe's read end instead, keeping the number the
        // table records and its ownership.
        if unsafe { libc::dup3(fresh, h, libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    if !s.signalfds.is_empty() {
        child.note_signalfd();
        sync_signalfds(&mut s);
    }
    Ok(())
}

/// Brings every signalfd's level byte in line with the pending sets (call with the signal
/// lock held, after changing them).
pub fn sync_signalfds(s: &mut SigState) {
    if s.signalfds.is_empty() {
        return;
    }
    let pending = s.threads.values().fold(s.pending, |a, t| a | t.pending);
    for f in &mut s.signalfds {
        let want = pending & f.mask != 0;
        if want == f.armed {
            continue;
        }
        use std::os::fd::AsRawFd;
        let mut b = [1u8];
        if want {
            // SAFETY: `write` is our open, non-blocking pipe end; one byte from a local.
            let n = unsafe { libc::write(f.write.as_raw_fd(), b.as_ptr().cast(), 1) };
            f.armed = n == 1;
        } else {
            let mut p = libc::pollfd { fd: f.read.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd, zero timeout; then a one-byte read into a local of our
            // own read end, which has a byte (so it does not block).
            unsafe {
                if libc::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLIN != 0 {
                    libc::read(f.read.as_raw_fd(), b.as_mut_ptr().cast(), 1);
                }
            }
            f.armed = false;
        }
    }
}

/// The image an `execve` replaced a process with, recorded in the old image's [`SigState`].
#[derive(Debug)]
pub struct ExecSuccessor {
    /// The new image.
    pub process: std::sync::Weak<Process>,
    /// The old image's thread that called `execve` (it becomes the new main thread).
    pub tid: i32,
}

impl SigState {
    /// The new image, if an `execve` replaced this one and it is still alive, and the old
    /// image's thread id that continues as its main thread.
    pub fn successor(&self) -> Option<(Arc<Process>, i32)> {
        let e = self.exec_successor.as_ref()?;
        Some((e.process.upgrade()?, e.tid))
    }
}

impl SigState {
    /// The state of a process whose only thread is `tid`.
    pub fn with_thread(tid: i32) -> SigState {
        let mut s = SigState::default();
        s.threads.insert(tid, ThreadSig::default());
        s
    }
}

/// What a signal does with the default disposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    /// Ends the process.
    Terminate,
    /// Nothing.
    Ignore,
    /// Stops the process (not modelled: ignored, logged).
    Stop,
}

/// The default action of `sig`.
pub fn default_action(sig: i32) -> DefaultAction {
    match sig {
        // SIGCHLD, SIGCONT, SIGURG, SIGWINCH
        17 | 18 | 23 | 28 => DefaultAction::Ignore,
        // SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU
        19..=22 => DefaultAction::Stop,
        _ => DefaultAction::Terminate,
    }
}

/// Whether `sig` arriving at `p` now would be discarded (ignored, explicitly or by default).
pub fn ignored(p: &Process, sig: i32) -> bool {
    if bit(sig) & UNBLOCKABLE != 0 {
        return false;
    }
    match p.sigactions().get(sig as usize).map_or(SIG_DFL, |a| a[0]) {
        SIG_IGN => true,
        SIG_DFL => default_action(sig) == DefaultAction::Ignore,
        _ => false,
    }
}

/// Records `thread`'s blocked mask (after it changed) so senders see it.
pub fn set_mask(p: &Process, thread: &mut GuestThread, mask: u64) {
    thread.signal_mask = mask & !UNBLOCKABLE;
    let mut s = p.sig();
    s.threads.entry(thread.tid).or_default().mask = thread.signal_mask;
}

fn push_info(infos: &mut Vec<SigInfo>, info: SigInfo, pending: &mut u64) {
    let sig = info.signo;
    // Standard signals do not queue: one pending instance each.
    if sig < 32 && *pending & bit(sig) != 0 {
        return;
    }
    if infos.len() < 4096 {
        infos.push(info);
    }
    *pending |= bit(sig);
}

/// Posts `info` to thread `tid` of `p`; false if there is no such thread. Wakes it if it is
/// parked and does not block the signal.
pub fn post_thread(p: &Process, tid: i32, info: SigInfo) -> bool {
    let ignore = ignored(p, info.signo);
    let waiter = {
        let mut s = p.sig();
        if s.exec_successor.is_some() {
            // Replaced by execve (checked under the lock the exec merges under, so nothing
            // posted here after the merge is lost): the calling thread lives on as the new
            // image's main thread; the old image's other threads are gone.
            let next = s.successor();
            drop(s);
            return match next {
                Some((next, from)) if from == tid => post_thread(&next, next.pid, info),
                _ => false,
            };
        }
        let Some(t) = s.threads.get_mut(&tid) else { return false };
        if ignore && !t.blocks(info.signo) {
            return true;
        }
        push_info(&mut t.infos, info, &mut t.pending);
        let w = (t.mask & bit(info.signo) == 0).then(|| t.waiter.clone()).flatten();
        p.signal_hint();
        sync_signalfds(&mut s);
        w
    };
    if let Some(w) = waiter {
        w.interrupt();
    }
    true
}

/// Posts `info` to process `p`: a fatal default action ends it at once; otherwise the
/// signal is pending for the process, and one parked thread that does not block it is
/// woken.
pub fn post_process(p: &Process, info: SigInfo) {
    let sig = info.signo;
    let ignore = ignored(p, sig);
    let handler = p.sigactions().get(sig as usize).map_or(SIG_DFL, |a| a[0]);
    let waiter = {
        let mut s = p.sig();
        if s.exec_successor.is_some() {
            // Replaced by execve: the new image gets it (see `post_thread`).
            let next = s.successor();
            drop(s);
            if let Some((next, _)) = next {
                post_process(&next, info);
            }
            return;
        }
        if ignore {
            // Discarded unless the main thread blocks it (Linux checks the thread group
            // leader), which keeps it pending (for `sigwait`, a signalfd).
            if !s.threads.get(&p.pid).is_some_and(|t| t.blocks(sig)) {
                return;
            }
        }
        // (A thread in `rt_sigtimedwait` counts its real mask: Linux takes no fatal shortcut
        // for a signal that thread waits for.)
        let all_block = !s.threads.is_empty() && s.threads.values().all(|t| t.blocks(sig));
        if handler == SIG_DFL && default_action(sig) == DefaultAction::Terminate && !all_block {
            s.fatal_traced = true;
            // Marked under the lock, so an execve merging this image's signals sees it.
            p.mark_fatal(sig);
            drop(s);
            trace_taken(p, &info);
            p.kill_with(sig);
            return;
        }
        let SigState { pending, infos, .. } = &mut *s;
        push_info(infos, info, pending);
        p.signal_hint();
        sync_signalfds(&mut s);
        s.threads
            .values()
            .find(|t| t.mask & bit(sig) == 0 && t.waiter.as_ref().is_some_and(|w| w.is_waiting()))
            .and_then(|t| t.waiter.clone())
    };
    if let Some(w) = waiter {
        w.interrupt();
    }
}

/// Registers the wait `thread` parks in, so a signal can interrupt it. If a signal it does
/// not block is already pending, the wait is interrupted at once.
pub fn park(p: &Process, thread: &GuestThread, w: &Arc<Waiter>) {
    let ready = {
        let mut s = p.sig();
        let proc_pending = s.pending;
        let t = s.threads.entry(thread.tid).or_default();
        t.mask = thread.signal_mask;
        t.waiter = Some(w.clone());
        (t.pending | proc_pending) & !t.mask != 0
    };
    if ready {
        w.interrupt();
    }
}

/// System calls that end with `EINTR` after a handler even under `SA_RESTART`: `epoll_pwait`,
/// `pselect6`, `ppoll`, `epoll_pwait2`.
const NEVER_RESTARTED: [u64; 4] = [22, 72, 73, 441];

/// Forgets the thread's wait (it was woken) and, if a signal interrupted it, decides the
/// call's result: restart it (`SA_RESTART` and a restartable call) or `EINTR` (already
/// written by [`Waiter::complete`]).
pub fn unpark(p: &Process, thread: &mut GuestThread, w: &Waiter) {
    let sigwait = {
        let mut s = p.sig();
        s.threads.get_mut(&thread.tid).and_then(|t| {
            t.waiter = None;
            t.sigwait.take()
        })
    };
    let interrupted = w.end() == Some(WaitEnd::Interrupted);
    if let Some(set) = sigwait {
        // `rt_sigtimedwait`: its real mask comes back. A signal of the set (or none after
        // all) makes the call again, to take it or wait on; another signal ends it with
        // EINTR (never restarted) and is delivered.
        let orig = restore_saved_mask(p, thread);
        if interrupted {
            let pending = {
                let s = p.sig();
                s.pending | s.threads.get(&thread.tid).map_or(0, |t| t.pending)
            };
            if pending & set != 0 || pending & !orig == 0 {
                if let WaitKind::Ready { restart_a0 } = w.kind() {
                    thread.cpu.x[reg::A0] = restart_a0;
                    thread.cpu.pc = thread.cpu.pc.wrapping_sub(4);
                    thread.resume_deadline = w.deadline();
                }
            }
        }
        return;
    }
    if !interrupted {
        // Woken or timed out: a temporary mask (`ppoll`, `pselect6`, `epoll_pwait`) ends
        // with the wait, before any delivery, as on Linux's successful return.
        restore_saved_mask(p, thread);
        return;
    }
    if w.partial() > 0 {
        // A pipe write interrupted after writing some: it returns that count (`complete`
        // wrote it), never restarted, as on Linux.
        return;
    }
    let restart_a0 = match w.kind() {
        // Linux never restarts poll, select and epoll waits (signal(7)), whatever the flags;
        // a blocking read, write, accept or connect is restarted.
        WaitKind::Ready { restart_a0 } if !NEVER_RESTARTED.contains(&thread.cpu.x[reg::A7]) => {
            restart_a0
        }
        WaitKind::Event { restart_a0, .. } => restart_a0,
        WaitKind::Futex { addr } => addr,
        // Sleeps and signal waits are never restarted.
        _ => return,
    };
    let Some(sig) = next_signal(p, thread) else {
        // Nothing to deliver after all: make the call again.
        thread.cpu.x[reg::A0] = restart_a0;
        thread.cpu.pc = thread.cpu.pc.wrapping_sub(4);
        return;
    };
    let flags = p.sigactions().get(sig as usize).map_or(0, |a| a[1]);
    let handler = p.sigactions().get(sig as usize).map_or(SIG_DFL, |a| a[0]);
    if handler > SIG_IGN && flags & SA_RESTART != 0 {
        thread.cpu.x[reg::A0] = restart_a0;
        thread.cpu.pc = thread.cpu.pc.wrapping_sub(4);
    }
}

/// Records `orig` as the mask to restore once the wait the thread parks in with a temporary
/// mask ends (or the handler of the signal that ends it returns).
pub fn save_mask(p: &Process, thread: &GuestThread, orig: u64) {
    p.sig().threads.entry(thread.tid).or_default().saved_mask = Some(orig);
}

/// Starts an `rt_sigtimedwait` wait for `set`: the set is unblocked for the wait (so its
/// signals wake the thread), the real mask saved.
pub fn begin_sigwait(p: &Process, thread: &mut GuestThread, set: u64) {
    let orig = thread.signal_mask;
    {
        let mut s = p.sig();
        let t = s.threads.entry(thread.tid).or_default();
        t.saved_mask = Some(orig);
        t.sigwait = Some(set);
    }
    set_mask(p, thread, orig & !set);
}

/// Puts back a mask saved by a temporary-mask wait that no handler frame took; returns the
/// thread's mask after it.
pub fn restore_saved_mask(p: &Process, thread: &mut GuestThread) -> u64 {
    let saved = {
        let mut s = p.sig();
        s.threads.get_mut(&thread.tid).and_then(|t| {
            t.sigwait = None;
            t.saved_mask.take()
        })
    };
    if let Some(m) = saved {
        set_mask(p, thread, m);
    }
    thread.signal_mask
}

/// The lowest signal deliverable to `thread` now, without taking it.
fn next_signal(p: &Process, thread: &GuestThread) -> Option<i32> {
    let s = p.sig();
    let tp = s.threads.get(&thread.tid).map_or(0, |t| t.pending);
    let ready = (tp | s.pending) & !thread.signal_mask;
    (ready != 0).then(|| ready.trailing_zeros() as i32 + 1)
}

/// Takes the lowest-numbered signal of `set` from one pending set and its queued infos
/// (a bare `SigInfo` when none was queued); the bit is cleared once no info of it is left.
fn take_lowest(pending: &mut u64, infos: &mut Vec<SigInfo>, set: u64) -> Option<SigInfo> {
    let ready = *pending & set;
    if ready == 0 {
        return None;
    }
    let sig = ready.trailing_zeros() as i32 + 1;
    let i = infos.iter().position(|x| x.signo == sig);
    let info = i.map(|i| infos.remove(i)).unwrap_or(SigInfo { signo: sig, ..Default::default() });
    if !infos.iter().any(|x| x.signo == sig) {
        *pending &= !bit(sig);
    }
    Some(info)
}

/// Takes the next deliverable signal for `thread` (thread-directed first).
fn take_signal(p: &Process, thread: &GuestThread) -> Option<SigInfo> {
    let mut s = p.sig();
    let mask = thread.signal_mask;
    let from = |pending: &mut u64, infos: &mut Vec<SigInfo>| take_lowest(pending, infos, !mask);
    let got = match s.threads.get_mut(&thread.tid) {
        Some(t) => from(&mut t.pending, &mut t.infos),
        None => None,
    };
    let got = match got {
        Some(g) => Some(g),
        None => {
            let SigState { pending, infos, .. } = &mut *s;
            from(pending, infos)
        }
    };
    if s.pending == 0 && s.threads.values().all(|t| t.pending == 0) {
        p.clear_signal_hint();
    }
    if got.is_some() {
        sync_signalfds(&mut s);
    }
    got
}

/// Takes a pending signal of `set` for `thread` (thread-directed first, then the process's,
/// then, for a signalfd read with `any_thread`, another thread's) without delivering it:
/// `rt_sigtimedwait` and signalfd reads.
pub fn take_from_set(
    p: &Process,
    thread: &GuestThread,
    set: u64,
    any_thread: bool,
) -> Option<SigInfo> {
    let mut s = p.sig();
    let from = |pending: &mut u64, infos: &mut Vec<SigInfo>| take_lowest(pending, infos, set);
    let mut got = s.threads.get_mut(&thread.tid).and_then(|t| from(&mut t.pending, &mut t.infos));
    if got.is_none() {
        let SigState { pending, infos, .. } = &mut *s;
        got = from(pending, infos);
    }
    if got.is_none() && any_thread {
        got = s.threads.values_mut().find_map(|t| from(&mut t.pending, &mut t.infos));
    }
    if got.is_some() {
        if s.pending == 0 && s.threads.values().all(|t| t.pending == 0) {
            p.clear_signal_hint();
        }
        sync_signalfds(&mut s);
    }
    got
}

/// Delivers the next pending signal `thread` accepts, if any: returns the stop when its
/// action ends the process, else sets up the handler's frame (or drops the signal).
pub fn deliver(p: &Process, thread: &mut GuestThread) -> Option<StopReason> {
    if !p.has_signals() {
        return None;
    }
    loop {
        let info = take_signal(p, thread)?;
        let sig = info.signo;
        let action = p.sigactions().get(sig as usize).copied().unwrap_or([0; 4]);
        match action[0] {
            SIG_IGN if bit(sig) & UNBLOCKABLE == 0 => continue,
            SIG_DFL | SIG_IGN => match default_action(sig) {
                DefaultAction::Ignore | DefaultAction::Stop => continue,
                DefaultAction::Terminate => {
                    p.sig().fatal_traced = true;
                    trace_taken(p, &info);
                    return Some(fatal(thread, sig, &info));
                }
            },
            _ => {
                trace_taken(p, &info);
                return setup_frame(p, thread, &info, action).err();
            }
        }
    }
}

/// `--strace`: qemu's `--- SIGxxx {siginfo} ---` line for a signal being taken by a handler
/// or by a fatal default action. Not for ignored signals (qemu leaves those to the host
/// kernel, which drops them) nor `SIGKILL` (the host kernel carries it out itself); a fatal
/// signal posted to a process is printed when it is posted (it ends the process at once).
fn trace_taken(p: &Process, info: &SigInfo) {
    if let Some(sink) = &p.config.strace {
        if info.signo != 9 {
            crate::syscall::strace::signal_taken(sink, info);
        }
    }
}

/// The stop for a fatal `sig`.
fn fatal(thread: &GuestThread, sig: i32, info: &SigInfo) -> StopReason {
    StopReason::Finished(GuestExit::Signaled(GuestSignal {
        signo: sig,
        pc: thread.cpu.pc,
        addr: info.is_fault.then_some(info.addr),
    }))
}

/// A synchronous fault the engine reported (`sig` at `sig.pc`): if the process has a handler
/// for it that the thread does not block, the thread is put into the handler (with the fault
/// address in `si_addr`) and `None` is returned; otherwise the fault stays fatal.
pub fn handle_fault(
    p: &Process,
    thread: &mut GuestThread,
    sig: &GuestSignal,
) -> Option<StopReason> {
    let action = p.sigactions().get(sig.signo as usize).copied().unwrap_or([0; 4]);
    let blocked = thread.signal_mask & bit(sig.signo) != 0;
    // SEGV_ACCERR (mapped, not permitted) or SEGV_MAPERR; ILL_ILLOPC, BUS_ADRALN,
    // TRAP_BRKPT, FPE_INTDIV: 1.
    let code = match sig.signo {
        11 if sig.addr.is_some_and(|a| p.mem.page_perms(a) != 0) => 2,
        _ => 1,
    };
    let addr = match sig.signo {
        11 | 7 => sig.addr.unwrap_or(sig.pc),
        _ => sig.pc,
    };
    let info = SigInfo { signo: sig.signo, code, addr, is_fault: true, ..Default::default() };
    if action[0] <= SIG_IGN || blocked {
        // A fatal fault; or a fatal signal `deliver` took (and traced) after a system call,
        // which reaches here as the same kind of stop.
        if !std::mem::replace(&mut p.sig().fatal_traced, true) {
            trace_taken(p, &info);
        }
        return Some(StopReason::Finished(GuestExit::Signaled(sig.clone())));
    }
    trace_taken(p, &info);
    thread.cpu.pc = sig.pc;
    setup_frame(p, thread, &info, action).err()
}

const FRAME_SIZE: u64 = 848;
const INFO_OFF: u64 = 8;
const UC_OFF: u64 = 144;
const MCONTEXT_OFF: u64 = 176;
const SS_ONSTACK: u32 = 1;
const SS_DISABLE: u32 = 2;

/// The trampoline page's address (mapped on first use).
fn trampoline(p: &Process) -> Option<u64> {
    let mut abi = p.abi();
    if abi.sigtramp != 0 {
        return Some(abi.sigtramp);
    }
    let _l = p.mem.layout_lock();
    let at = p.mem.find_free(PAGE_SIZE)?;
    p.mem.map_fixed(at, PAGE_SIZE, PERM_READ | PERM_WRITE).ok()?;
    let code = [0x08b0_0893u32.to_le_bytes(), 0x0000_0073u32.to_le_bytes()].concat();
    p.mem.write_bytes(at, &code).ok()?;
    p.mem.protect(at, PAGE_SIZE, PERM_READ | PERM_EXEC).ok()?;
    abi.sigtramp = at;
    Some(at)
}

/// The thread's alternate stack `[sp, flags, size]`.
fn altstack(p: &Process, tid: i32) -> [u64; 3] {
    p.abi().altstacks.iter().find(|e| e.0 == tid).map_or([0, SS_DISABLE as u64, 0], |e| e.1)
}

/// Builds the frame for `info` and points the thread at the handler. On a frame that cannot
/// be written, the process dies by SIGSEGV (as Linux forces it).
fn setup_frame(
    p: &Process,
    thread: &mut GuestThread,
    info: &SigInfo,
    action: [u64; 4],
) -> Result<(), StopReason> {
    let sig = info.signo;
    let [handler, flags, _, amask] = action;
    let segv =
        |thread: &GuestThread| fatal(thread, 11, &SigInfo { signo: 11, ..Default::default() });
    let Some(tramp) = trampoline(p) else { return Err(segv(thread)) };
    let sp0 = thread.cpu.x[reg::SP];
    let alt = altstack(p, thread.tid);
    let on_alt = alt[2] != 0 && sp0 > alt[0] && sp0 <= alt[0].wrapping_add(alt[2]);
    let mut sp = sp0;
    if flags & SA_ONSTACK != 0 && alt[1] as u32 & SS_DISABLE == 0 && alt[2] != 0 && !on_alt {
        sp = alt[0].wrapping_add(alt[2]);
    }
    let frame = sp.wrapping_sub(FRAME_SIZE) & !15;
    let saved_mask = {
        let mut s = p.sig();
        s.threads.get_mut(&thread.tid).and_then(|t| t.saved_mask.take())
    }
    .unwrap_or(thread.signal_mask);
    let mut b = vec![0u8; FRAME_SIZE as usize];
    b[0..4].copy_from_slice(&0x08b0_0893u32.to_le_bytes());
    b[4..8].copy_from_slice(&0x0000_0073u32.to_le_bytes());
    b[INFO_OFF as usize..INFO_OFF as usize + 128].copy_from_slice(&info.to_bytes());
    let uc = UC_OFF as usize;
    // uc_stack: the alternate stack as it was.
    b[uc + 16..uc + 24].copy_from_slice(&alt[0].to_le_bytes());
    let ss_flags = if alt[2] == 0 || alt[1] as u32 & SS_DISABLE != 0 {
        SS_DISABLE
    } else if on_alt {
        SS_ONSTACK
    } else {
        0
    };
    b[uc + 24..uc + 28].copy_from_slice(&ss_flags.to_le_bytes());
    b[uc + 32..uc + 40].copy_from_slice(&alt[2].to_le_bytes());
    b[uc + 40..uc + 48].copy_from_slice(&saved_mask.to_le_bytes());
    let mc = uc + MCONTEXT_OFF as usize;
    b[mc..mc + 8].copy_from_slice(&thread.cpu.pc.to_le_bytes());
    for i in 1..32 {
        b[mc + 8 * i..mc + 8 * i + 8].copy_from_slice(&thread.cpu.x[i].to_le_bytes());
    }
    let fo = mc + 256;
    for i in 0..32 {
        b[fo + 8 * i..fo + 8 * i + 8].copy_from_slice(&thread.cpu.f[i].to_le_bytes());
    }
    b[fo + 256..fo + 260].copy_from_slice(&(thread.cpu.fcsr() as u32).to_le_bytes());
    if p.mem.write_bytes(frame, &b).is_err() {
        return Err(segv(thread));
    }
    let mut new_mask = thread.signal_mask | amask;
    if flags & SA_NODEFER == 0 {
        new_mask |= bit(sig);
    }
    set_mask(p, thread, new_mask);
    if flags & SA_RESETHAND != 0 {
        if let Some(a) = p.sigactions().get_mut(sig as usize) {
            *a = [SIG_DFL, 0, 0, 0];
        }
    }
    thread.cpu.x[reg::SP] = frame;
    thread.cpu.x[reg::A0] = sig as u64;
    thread.cpu.x[reg::A0 + 1] = frame + INFO_OFF;
    thread.cpu.x[reg::A0 + 2] = frame + UC_OFF;
    thread.cpu.x[reg::RA] = tramp;
    thread.cpu.pc = handler;
    thread.cpu.reservation = None;
    Ok(())
}

/// `rt_sigreturn`: restores the registers and mask saved in the frame at `sp`. Returns the
/// restored `a0` (the system-call layer stores it back), or the fatal stop for a bad frame.
pub fn sigreturn(p: &Process, thread: &mut GuestThread) -> Result<u64, StopReason> {
    let frame = thread.cpu.x[reg::SP];
    let mut b = vec![0u8; FRAME_SIZE as usize];
    if p.mem.read_bytes(frame, &mut b).is_err() {
        return Err(fatal(thread, 11, &SigInfo { signo: 11, ..Default::default() }));
    }
    let word = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let uc = UC_OFF as usize;
    let mc = uc + MCONTEXT_OFF as usize;
    thread.cpu.pc = word(mc);
    for i in 1..32 {
        thread.cpu.x[i] = word(mc + 8 * i);
    }
    let fo = mc + 256;
    for i in 0..32 {
        thread.cpu.f[i] = word(fo + 8 * i);
    }
    thread
        .cpu
        .set_fcsr(u32::from_le_bytes([b[fo + 256], b[fo + 257], b[fo + 258], b[fo + 259]]) as u64);
    thread.cpu.reservation = None;
    set_mask(p, thread, word(uc + 40));
    Ok(thread.cpu.x[reg::A0])
}

/// Drops a thread's signal state (it exited).
pub fn forget_thread(p: &Process, tid: i32) {
    let t = p.sig().threads.remove(&tid);
    // Signals sent to it are lost, as on Linux.
    drop(t);
}

/// `ITIMER_REAL` timers of every process: one host thread sleeps until the earliest and
/// sends `SIGALRM` (`si_code` `SI_KERNEL`) to the process, found through its sandbox.
pub mod itimer {
    use super::{post_process, SigInfo, SI_KERNEL};
    use crate::process::Process;
    use crate::sandbox::Sandbox;
    use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
    use std::time::{Duration, Instant};

    struct Armed {
        at: Instant,
        sandbox: Weak<Sandbox>,
        pid: i32,
        generation: u64,
    }

    struct Timers {
        armed: Mutex<Vec<Armed>>,
        cv: Condvar,
    }

    fn timers() -> &'static Timers {
        static T: OnceLock<&'static Timers> = OnceLock::new();
        T.get_or_init(|| {
            let t: &'static Timers =
                Box::leak(Box::new(Timers { armed: Mutex::new(Vec::new()), cv: Condvar::new() }));
            let spawned =
                std::thread::Builder::new().name("vmx-itimer".into()).spawn(move || run(t));
            if spawned.is_err() {
                tracing::warn!("cannot start the interval-timer thread: SIGALRM will not fire");
            }
            t
        })
    }

    fn run(t: &'static Timers) {
        let mut armed = t.armed.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            armed.retain(|a| {
                if a.at <= now {
                    due.push((a.sandbox.clone(), a.pid, a.generation));
                    false
                } else {
                    true
                }
            });
            if !due.is_empty() {
                drop(armed);
                for (sb, pid, generation) in due {
                    if let Some(p) = sb.upgrade().and_then(|sb| sb.process(pid)) {
                        fire(&p, generation);
                    }
                }
                armed = t.armed.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let wait = armed.iter().map(|a| a.at).min().map(|m| m.saturating_duration_since(now));
            armed = match wait {
                Some(d) => t.cv.wait_timeout(armed, d).unwrap_or_else(|e| e.into_inner()).0,
                None => t.cv.wait(armed).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    /// The timer of `p` expired (if `generation` is still its current one): send SIGALRM
    /// and re-arm a periodic timer.
    fn fire(p: &Arc<Process>, generation: u64) {
        let rearm = {
            let mut abi = p.abi();
            if abi.itimer_generation != generation || abi.itimer_deadline.is_none() {
                return;
            }
            if abi.itimer_interval.is_zero() {
                abi.itimer_deadline = None;
                None
            } else {
                let next = Instant::now() + abi.itimer_interval;
                abi.itimer_deadline = Some(next);
                Some(next)
            }
        };
        if let Some(at) = rearm {
            arm(p, at, generation);
        }
        post_process(p, SigInfo::from_sender(14, SI_KERNEL, 0));
    }

    fn arm(p: &Process, at: Instant, generation: u64) {
        let t = timers();
        let mut armed = t.armed.lock().unwrap_or_else(|e| e.into_inner());
        armed.push(Armed { at, sandbox: Arc::downgrade(&p.sandbox), pid: p.pid, generation });
        drop(armed);
        t.cv.notify_all();
    }

    /// Sets `p`'s real-time timer (`None` disarms); returns the old `(remaining, interval)`.
    pub fn set(p: &Process, value: Option<Duration>, interval: Duration) -> (Duration, Duration) {
        let (old, generation, at) = {
            let mut abi = p.abi();
            let now = Instant::now();
            let old_left = abi.itimer_deadline.map_or(Duration::ZERO, |d| {
                d.saturating_duration_since(now).max(Duration::from_micros(1))
            });
            let old = (old_left, abi.itimer_interval);
            abi.itimer_generation += 1;
            abi.itimer_interval = if value.is_some() { interval } else { Duration::ZERO };
            abi.itimer_deadline = value.map(|v| now + v);
            (old, abi.itimer_generation, abi.itimer_deadline)
        };
        if let Some(at) = at {
            arm(p, at, generation);
        }
        old
    }

    /// `p`'s real-time timer: `(remaining, interval)`.
    pub fn get(p: &Process) -> (Duration, Duration) {
        let abi = p.abi();
        let left = abi.itimer_deadline.map_or(Duration::ZERO, |d| {
            d.saturating_duration_since(Instant::now()).max(Duration::from_micros(1))
        });
        (left, abi.itimer_interval)
    }
}
