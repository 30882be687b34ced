//! Threads and futexes: `exit`/`exit_group`, futexes with and without a scheduler, `clone`
//! of a thread, the calls refused like qemu.

use super::*;

#[test]
fn exit_and_exit_group_end_the_thread_or_process() {
    let mut g = guest();
    let tidp = SCRATCH + 0x40;
    g.put(tidp, &1234u32.to_le_bytes());
    assert_eq!(g.sys(96, &[tidp]), 1234, "set_tid_address returns the tid");
    assert_eq!(g.t.clear_child_tid, tidp);
    assert_eq!(g.call(93, &[0x1_0007]).1, Some(StopReason::ThreadExited(7)));
    assert_eq!(g.u32_at(tidp), 0, "clear_child_tid is cleared");
    let mut g = guest();
    assert_eq!(g.call(94, &[259]).1, Some(StopReason::Finished(GuestExit::Exited(3))));
    let mut g = guest();
    assert_eq!(g.call(94, &[-1i64 as u64]).1, Some(StopReason::Finished(GuestExit::Exited(255))));
    let mut g = guest();
    g.t.clear_child_tid = 0x10; // unmapped: ignored
    assert_eq!(g.call(93, &[0]).1, Some(StopReason::ThreadExited(0)));
}

#[test]
fn futex_single_threaded_semantics() {
    let mut g = guest();
    let f = SCRATCH + 0x80;
    g.put(f, &5u32.to_le_bytes());
    assert_eq!(g.sys(98, &[f, 1, 1]), 0, "FUTEX_WAKE");
    assert_eq!(g.sys(98, &[f, 129, i32::MAX as u64]), 0, "FUTEX_WAKE_PRIVATE");
    assert_eq!(g.sys(98, &[f, 0, 4]), e(libc::EAGAIN), "value mismatch");
    g.put(SCRATCH, &0u64.to_le_bytes());
    g.put(SCRATCH + 8, &1_000_000u64.to_le_bytes());
    assert_eq!(g.sys(98, &[f, 128, 5, SCRATCH]), e(libc::ETIMEDOUT));
    assert_eq!(g.sys(98, &[f, 0, 5]), e(libc::EINTR), "a deadlock returns a spurious wake-up");
    assert_eq!(g.sys(98, &[f + 1, 0, 5]), e(libc::EINVAL));
    assert_eq!(g.sys(98, &[f, 9, 5, 0, 0, 0]), e(libc::EINVAL), "WAIT_BITSET with empty mask");
    // FUTEX_WAKE_OP: *uaddr2 += 3.
    let f2 = f + 8;
    g.put(f2, &10u32.to_le_bytes());
    assert_eq!(g.sys(98, &[f, 5, 1, 1, f2, (1 << 28) | (3 << 12)]), 0);
    assert_eq!(g.u32_at(f2), 13);
    assert_eq!(g.sys(98, &[f, 6]), e(libc::ENOSYS), "PI futexes");
}

#[test]
fn threads_robust_lists_and_rseq_are_refused_like_qemu() {
    let mut g = guest();
    // glibc's pthread_create flags: no threads without a scheduler.
    assert_eq!(g.sys(220, &[0x3d0f00, 0, 0, 0, 0]), e(libc::EAGAIN));
    // fork (no CLONE_VM), by clone and by clone3 (flags 0): no processes without a
    // scheduler either.
    assert_eq!(g.sys(220, &[17, 0, 0, 0, 0]), e(libc::EAGAIN));
    assert_eq!(g.sys(435, &[SCRATCH, 88]), e(libc::EAGAIN));
    assert_eq!(g.sys(435, &[SCRATCH, 8]), e(libc::EINVAL), "clone_args too small");
    assert_eq!(g.sys(99, &[SCRATCH, 24]), e(libc::ENOSYS));
    assert_eq!(g.sys(293, &[SCRATCH, 32, 0, 0x53053053]), e(libc::ENOSYS));
    assert!(g.sys(283, &[0, 0]) >= 0, "membarrier query is the host's");
}

/// glibc's `pthread_create` clone flags.
const THREAD_FLAGS: u64 = 0x3d0f00;

#[test]
fn clone_in_a_scheduled_process_builds_the_thread_and_hands_it_over() {
    let mut g = guest();
    g.p.set_scheduled(true);
    g.t.cpu.x[reg::TP] = 0x1111;
    g.t.cpu.x[8] = 0xabcd; // s0: copied to the child
    let (ptid, ctid) = (SCRATCH + 0x100, SCRATCH + 0x104);
    let (tid, o) = g.call(220, &[THREAD_FLAGS, SCRATCH + 0x8000, ptid, 0x7777, ctid]);
    let Some(StopReason::Spawned(child)) = o else { panic!("clone must spawn: {o:?}") };
    assert!(tid > g.p.pid as i64, "a fresh tid: {tid}");
    assert_eq!(child.tid as i64, tid);
    assert_eq!(child.cpu.x[reg::A0], 0, "the child sees 0");
    assert_eq!(child.cpu.x[reg::SP], SCRATCH + 0x8000);
    assert_eq!(child.cpu.x[reg::TP], 0x7777, "CLONE_SETTLS");
    assert_eq!(child.cpu.x[8], 0xabcd);
    assert_eq!(child.cpu.pc, g.t.cpu.pc, "both continue after the ecall");
    assert_eq!(child.clear_child_tid, ctid, "CLONE_CHILD_CLEARTID");
    assert_eq!(g.u32_at(ptid) as i64, tid, "CLONE_PARENT_SETTID");
    // clone3 with the same request: struct clone_args { flags, pidfd, child_tid, parent_tid,
    // exit_signal, stack, stack_size, tls }.
    let mut args = Vec::new();
    for w in [THREAD_FLAGS, 0, ctid, ptid, 0, SCRATCH + 0x4000, 0x4000, 0x9999] {
        args.extend_from_slice(&u64::to_le_bytes(w));
    }
    g.put(SCRATCH + 0x200, &args);
    let (tid3, o) = g.call(435, &[SCRATCH + 0x200, 64]);
    let Some(StopReason::Spawned(child)) = o else { panic!("clone3 must spawn: {o:?}") };
    assert_eq!((child.tid as i64, child.cpu.x[reg::SP]), (tid3, SCRATCH + 0x8000));
    assert_eq!(child.cpu.x[reg::TP], 0x9999);
    assert_ne!(tid3, tid);
    // Missing CLONE_THREAD or CLONE_SIGHAND with CLONE_VM is invalid.
    assert_eq!(g.sys(220, &[0x100, 0, 0, 0, 0]), e(libc::EINVAL));
}

#[test]
fn futex_waits_block_and_wakes_and_exits_release_them_in_a_scheduled_process() {
    use crate::futex::WaitEnd;
    let mut g = guest();
    g.p.set_scheduled(true);
    let word = SCRATCH + 0x40;
    g.put(word, &5u32.to_le_bytes());
    assert_eq!(g.sys(98, &[word, 128, 4]), e(libc::EAGAIN), "value differs");
    let (_, o) = g.call(98, &[word, 128, 5]);
    let Some(StopReason::Blocked(w)) = o else { panic!("FUTEX_WAIT_PRIVATE must block: {o:?}") };
    assert!(w.deadline().is_none());
    assert_eq!(g.sys(98, &[word, 129, 10]), 1, "FUTEX_WAKE_PRIVATE wakes the one waiter");
    assert_eq!(w.end(), Some(WaitEnd::Woken));
    w.complete(&mut g.t);
    assert_eq!(g.t.cpu.x[reg::A0], 0);
    // A timed wait carries its deadline; a bitset wait only answers matching wakes.
    g.put(SCRATCH + 0x60, &[0; 16]);
    let (_, o) = g.call(98, &[word, 0, 5, SCRATCH + 0x60]);
    let Some(StopReason::Blocked(timed)) = o else { panic!("{o:?}") };
    assert!(timed.deadline().is_some());
    let (_, o) = g.call(98, &[word, 9 | 128, 5, 0, 0, 0b10]);
    let Some(StopReason::Blocked(bits)) = o else { panic!("{o:?}") };
    // Only the plain waiter (bitset all ones) matches 0b01.
    assert_eq!(g.sys(98, &[word, 10 | 128, 10, 0, 0, 0b01]), 1);
    assert_eq!((timed.end(), bits.end()), (Some(WaitEnd::Woken), None));
    // FUTEX_WAKE_OP: set *word2 = 1 (op SET, cmp EQ 0) and wake on both words.
    let word2 = SCRATCH + 0x48;
    let (_, o) = g.call(98, &[word2, 128, 0]);
    let Some(StopReason::Blocked(other)) = o else { panic!("{o:?}") };
    let op = 1u64 << 12; // op 0 (SET), oparg 1, cmp 0 (EQ), cmparg 0
    assert_eq!(g.sys(98, &[word, 5 | 128, 1, 1, word2, op]), 2);
    assert_eq!(g.u32_at(word2), 1);
    assert_eq!((other.end(), bits.end()), (Some(WaitEnd::Woken), Some(WaitEnd::Woken)));
    // A thread's exit clears its tid word and wakes a joiner.
    let tid_word = SCRATCH + 0x80;
    g.put(tid_word, &77u32.to_le_bytes());
    let (_, o) = g.call(98, &[tid_word, 9, 77, 0, 0, u32::MAX as u64]);
    let Some(StopReason::Blocked(joiner)) = o else { panic!("{o:?}") };
    g.t.clear_child_tid = tid_word;
    let (_, o) = g.call(93, &[0]);
    assert_eq!(o, Some(StopReason::ThreadExited(0)));
    assert_eq!((g.u32_at(tid_word), joiner.end()), (0, Some(WaitEnd::Woken)));
    // Sleeps and yields park or yield instead of blocking the host.
    let (_, o) = g.call(101, &[SCRATCH + 0x60]);
    assert!(matches!(o, Some(StopReason::Blocked(ref s)) if s.deadline().is_some()));
    assert_eq!(g.call(124, &[]).1, Some(StopReason::Yielded));
    // After exit_group, calls of the process's other threads end them instead of running.
    let (_, o) = g.call(94, &[4]);
    assert_eq!(o, Some(StopReason::Finished(GuestExit::Exited(4))));
    assert_eq!(g.call(64, &[1, SCRATCH, 1]).1, Some(StopReason::ThreadExited(0)));
    assert!(g.out.contents().is_empty(), "nothing written after exit_group");
}

#[test]
fn futex_wake_on_an_unmapped_word_is_efault_unless_private() {
    for scheduled in [false, true] {
        let mut g = guest();
        g.p.set_scheduled(scheduled);
        let unmapped = 0x0800_0000u64;
        assert_eq!(g.sys(98, &[unmapped, 1, 1]), e(libc::EFAULT), "shared FUTEX_WAKE");
        assert_eq!(g.sys(98, &[unmapped, 10, 1, 0, 0, u32::MAX as u64]), e(libc::EFAULT));
        assert_eq!(g.sys(98, &[unmapped, 1 | 128, 1]), 0, "FUTEX_WAKE_PRIVATE");
        assert_eq!(g.sys(98, &[SCRATCH, 1, 1]), 0, "a mapped word");
    }
}
