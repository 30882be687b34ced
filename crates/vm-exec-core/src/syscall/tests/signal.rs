//! Signals: `rt_sigaction`, `rt_sigprocmask`, default actions of self-sent signals, pending
//! blocked signals, `sigaltstack`.

use super::*;

#[test]
fn rt_sigaction_round_trips_in_the_riscv_layout() {
    let mut g = guest();
    let act = SCRATCH;
    let old = SCRATCH + 0x100;
    g.put(act, &0x1_2340u64.to_le_bytes());
    g.put(act + 8, &0x1000_0004u64.to_le_bytes()); // SA_RESTART | SA_SIGINFO
    g.put(act + 16, &(0b101u64 | 1 << 8).to_le_bytes()); // SIGHUP, SIGQUIT, SIGKILL (dropped)
    assert_eq!(g.sys(134, &[10, act, old, 8]), 0);
    assert_eq!(g.get(old, 24), [0; 24], "default action before");
    assert_eq!(g.sys(134, &[10, 0, old, 8]), 0);
    assert_eq!(g.u64_at(old), 0x1_2340);
    assert_eq!(g.u64_at(old + 8), 0x1000_0004);
    assert_eq!(g.u64_at(old + 16), 0b101, "SIGKILL cannot be blocked");
    assert_eq!(g.p.sigactions()[10], [0x1_2340, 0x1000_0004, 0, 0b101]);
    // Errors.
    assert_eq!(g.sys(134, &[9, act, 0, 8]), e(libc::EINVAL), "SIGKILL");
    assert_eq!(g.sys(134, &[19, act, 0, 8]), e(libc::EINVAL), "SIGSTOP");
    assert_eq!(g.sys(134, &[9, 0, old, 8]), 0, "querying SIGKILL is fine");
    assert_eq!(g.sys(134, &[0, act, 0, 8]), e(libc::EINVAL));
    assert_eq!(g.sys(134, &[65, act, 0, 8]), e(libc::EINVAL));
    assert_eq!(g.sys(134, &[10, act, 0, 16]), e(libc::EINVAL));
    assert_eq!(g.sys(134, &[10, 0x10, 0, 8]), e(libc::EFAULT));
    assert_eq!(g.sys(134, &[10, 0, 0x10, 8]), e(libc::EFAULT));
}

#[test]
fn rt_sigprocmask_records_the_mask() {
    let mut g = guest();
    g.put(SCRATCH, &0b1010u64.to_le_bytes());
    assert_eq!(g.sys(135, &[0, SCRATCH, 0, 8]), 0);
    assert_eq!(g.t.signal_mask, 0b1010);
    g.put(SCRATCH, &0b10u64.to_le_bytes());
    assert_eq!(g.sys(135, &[1, SCRATCH, SCRATCH + 8, 8]), 0);
    assert_eq!(g.u64_at(SCRATCH + 8), 0b1010);
    assert_eq!(g.t.signal_mask, 0b1000);
    g.put(SCRATCH, &u64::MAX.to_le_bytes());
    assert_eq!(g.sys(135, &[2, SCRATCH, 0, 8]), 0);
    assert_eq!(g.t.signal_mask, !(1 << 8 | 1 << 18), "SIGKILL and SIGSTOP are never blocked");
    assert_eq!(g.sys(135, &[3, SCRATCH, 0, 8]), e(libc::EINVAL));
    assert_eq!(g.sys(135, &[0, SCRATCH, 0, 4]), e(libc::EINVAL));
    assert_eq!(g.sys(135, &[0, 0x10, 0, 8]), e(libc::EFAULT));
}

#[test]
fn self_signals_take_their_default_action() {
    let mut g = guest();
    let (pid, tid) = (g.p.pid as u64, g.t.tid as u64);
    assert_eq!(g.call(131, &[pid, tid, 6]), (0, g.signal(6)));
    let mut g = guest();
    assert_eq!(g.call(130, &[tid, 15]), (0, g.signal(15)));
    let mut g = guest();
    assert_eq!(g.call(129, &[pid, 9]), (0, g.signal(9)));
    // Signal 0, ignored-by-default signals, other targets.
    let mut g = guest();
    assert_eq!(g.sys(129, &[pid, 0]), 0);
    assert_eq!(g.sys(129, &[0, 17]), 0, "SIGCHLD is ignored");
    assert_eq!(g.sys(129, &[pid + 1, 6]), e(libc::ESRCH));
    assert_eq!(g.sys(131, &[pid, tid + 1, 6]), e(libc::ESRCH));
    assert_eq!(g.sys(131, &[pid, tid, 65]), e(libc::EINVAL));
    assert_eq!(g.sys(131, &[0, tid, 6]), e(libc::EINVAL));
    // SIG_IGN: nothing happens; a handler runs before the call returns (a0 = the signal,
    // ra = the return trampoline, SIGABRT blocked meanwhile).
    g.put(SCRATCH, &[0; 24]);
    g.put(SCRATCH, &1u64.to_le_bytes());
    assert_eq!(g.sys(134, &[15, SCRATCH, 0, 8]), 0);
    assert_eq!(g.sys(131, &[pid, tid, 15]), 0);
    g.put(SCRATCH, &0x1_0000u64.to_le_bytes());
    assert_eq!(g.sys(134, &[6, SCRATCH, 0, 8]), 0);
    assert_eq!(g.sys(131, &[pid, tid, 6]), 6);
    assert_eq!(g.t.cpu.pc, 0x1_0000);
    assert_eq!(g.t.signal_mask, 1 << 5);
    assert_eq!(g.p.mem.read_u32(g.t.cpu.x[reg::RA]).unwrap(), 0x08b0_0893, "li a7, 139");
    // abort() then resets SIGABRT to the default and raises again; unblocking it kills.
    g.put(SCRATCH, &0u64.to_le_bytes());
    assert_eq!(g.sys(134, &[6, SCRATCH, 0, 8]), 0);
    assert_eq!(g.sys(131, &[pid, tid, 6]), 0, "blocked while in the handler");
    assert_eq!(g.call(135, &[2, SCRATCH, 0, 8]), (0, g.signal(6)));
}

#[test]
fn blocked_signals_stay_pending_until_unblocked() {
    let mut g = guest();
    let (pid, tid) = (g.p.pid as u64, g.t.tid as u64);
    g.put(SCRATCH, &(1u64 << 5).to_le_bytes()); // SIGABRT
    assert_eq!(g.sys(135, &[0, SCRATCH, 0, 8]), 0);
    assert_eq!(g.sys(131, &[pid, tid, 6]), 0, "blocked: pending");
    assert_eq!(g.sys(136, &[SCRATCH + 0x10, 8]), 0);
    assert_eq!(g.u64_at(SCRATCH + 0x10), 1 << 5);
    assert_eq!(g.sys(136, &[SCRATCH + 0x10, 16]), e(libc::EINVAL));
    assert_eq!(g.sys(135, &[0, SCRATCH, 0, 8]), 0, "still blocked");
    assert_eq!(g.call(135, &[1, SCRATCH, 0, 8]), (0, g.signal(6)));
    // A pending signal whose disposition becomes SIG_IGN is discarded.
    let mut g = guest();
    g.put(SCRATCH, &(1u64 << 14).to_le_bytes()); // SIGTERM
    assert_eq!(g.sys(135, &[0, SCRATCH, 0, 8]), 0);
    assert_eq!(g.sys(129, &[pid, 15]), 0);
    g.put(SCRATCH + 8, &[0; 24]);
    g.put(SCRATCH + 8, &1u64.to_le_bytes());
    assert_eq!(g.sys(134, &[15, SCRATCH + 8, 0, 8]), 0);
    assert_eq!(g.sys(135, &[1, SCRATCH, 0, 8]), 0);
}

#[test]
fn sigaltstack_round_trips() {
    let mut g = guest();
    let old = SCRATCH + 0x100;
    assert_eq!(g.sys(132, &[0, old]), 0);
    assert_eq!(g.u32_at(old + 8), 2, "SS_DISABLE initially");
    g.put(SCRATCH, &0x40_0000u64.to_le_bytes());
    g.put(SCRATCH + 8, &0u64.to_le_bytes());
    g.put(SCRATCH + 16, &0x8000u64.to_le_bytes());
    assert_eq!(g.sys(132, &[SCRATCH, 0]), 0);
    assert_eq!(g.sys(132, &[0, old]), 0);
    assert_eq!((g.u64_at(old), g.u32_at(old + 8), g.u64_at(old + 16)), (0x40_0000, 0, 0x8000));
    g.put(SCRATCH + 16, &100u64.to_le_bytes());
    assert_eq!(g.sys(132, &[SCRATCH, 0]), e(libc::ENOMEM));
}

/// A sender that found a process's old image (before an `execve` swapped it) reaches the new
/// one: a fatal default action, a pending (blocked) signal and a thread-directed one.
#[test]
fn signals_to_an_image_replaced_by_execve_reach_the_new_one() {
    use crate::signals::{post_process, post_thread, ExecSuccessor, SigInfo};
    let old = guest();
    let new = Arc::new(guest().p);
    let tid = old.t.tid;
    old.p.sig().exec_successor = Some(ExecSuccessor { process: Arc::downgrade(&new), tid });
    post_process(&old.p, SigInfo { signo: 10, ..Default::default() });
    assert_eq!(new.fatal_signal(), Some(10), "SIGUSR1's default action, on the new image");
    assert_eq!(old.p.fatal_signal(), None);
    let new = Arc::new(guest().p);
    new.sig().threads.get_mut(&new.pid).unwrap().mask = 1 << 11; // SIGUSR2 blocked
    old.p.sig().exec_successor = Some(ExecSuccessor { process: Arc::downgrade(&new), tid });
    post_process(&old.p, SigInfo { signo: 12, ..Default::default() });
    assert!(post_thread(&old.p, tid, SigInfo { signo: 12, ..Default::default() }));
    assert!(!post_thread(&old.p, tid + 1, SigInfo { signo: 12, ..Default::default() }));
    let s = new.sig();
    assert_eq!(s.pending, 1 << 11);
    assert_eq!(s.threads[&new.pid].pending, 1 << 11);
    assert!(new.has_signals());
    assert_eq!(old.p.sig().pending, 0);
}
