//! Information calls: `uname`, `getrandom`, limits and identity, clocks.

use super::*;

#[test]
fn uname_reports_linux_riscv64_and_the_host_release() {
    let mut g = guest();
    assert_eq!(g.sys(160, &[SCRATCH]), 0);
    let field = |g: &Guest, i: u64| {
        let v = g.get(SCRATCH + 65 * i, 65);
        let n = v.iter().position(|&b| b == 0).unwrap();
        v[..n].to_vec()
    };
    assert_eq!(field(&g, 0), b"Linux");
    assert_eq!(field(&g, 4), b"riscv64");
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    if !host.is_empty() {
        assert_eq!(field(&g, 2), host.trim().as_bytes());
    }
    assert!(!field(&g, 1).is_empty(), "nodename");
    assert_eq!(g.sys(160, &[0]), e(libc::EFAULT));
}

#[test]
fn getrandom_is_deterministic_with_a_seed_and_honours_buflen() {
    let run = |seed| {
        let mut g = guest_with(|c| c.random_seed = Some(seed));
        g.put(SCRATCH, &[0xee; 64]);
        assert_eq!(g.sys(278, &[SCRATCH, 40, 1]), 40);
        assert_eq!(g.get(SCRATCH + 40, 24), [0xee; 24], "nothing past buflen");
        g.get(SCRATCH, 40)
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    let mut g = guest();
    assert_eq!(g.sys(278, &[SCRATCH, 0, 0]), 0);
    assert_eq!(g.sys(278, &[SCRATCH, 8, 8]), e(libc::EINVAL));
    assert_eq!(g.sys(278, &[SCRATCH, 8, 6]), e(libc::EINVAL));
    // Up to the end of mapped memory.
    assert_eq!(g.sys(278, &[SCRATCH + SCRATCH_LEN - 5, 100, 0]), 5);
}

#[test]
fn limits_and_identity() {
    let mut g = guest();
    assert_eq!(g.sys(172, &[]), 1234);
    assert_eq!(g.sys(178, &[]), 1234);
    // SAFETY: getppid/getuid have no preconditions.
    let (ppid, uid) = unsafe { (libc::getppid(), libc::getuid()) };
    assert_eq!(g.sys(173, &[]), ppid as i64);
    assert_eq!(g.sys(174, &[]), uid as i64);
    // RLIMIT_STACK is the configured stack size.
    assert_eq!(g.sys(261, &[0, 3, 0, SCRATCH]), 0);
    assert_eq!(g.u64_at(SCRATCH), 1 << 20);
    assert_eq!(g.sys(163, &[7, SCRATCH]), 0);
    assert!(g.u64_at(SCRATCH) <= 1024 && g.u64_at(SCRATCH + 8) <= 1024);
    assert_eq!(g.sys(163, &[16, SCRATCH]), e(libc::EINVAL));
    assert_eq!(g.sys(261, &[999_999, 3, 0, SCRATCH]), e(libc::ESRCH));
    // setrlimit is remembered (RLIMIT_CORE, keeping the hard limit).
    assert_eq!(g.sys(163, &[4, SCRATCH]), 0);
    let max = g.u64_at(SCRATCH + 8);
    g.put(SCRATCH, &100u64.min(max).to_le_bytes());
    assert_eq!(g.sys(164, &[4, SCRATCH]), 0);
    assert_eq!(g.sys(163, &[4, SCRATCH + 16]), 0);
    assert_eq!(g.get(SCRATCH + 16, 16), g.get(SCRATCH, 16));
    g.put(SCRATCH, &1u64.to_le_bytes());
    g.put(SCRATCH + 8, &0u64.to_le_bytes());
    assert_eq!(g.sys(164, &[4, SCRATCH]), e(libc::EINVAL), "soft above hard");
    // umask and the prctl name.
    let first = g.sys(166, &[0o077]);
    assert!((0..=0o777).contains(&first));
    assert_eq!(g.sys(166, &[0o022]), 0o077);
    assert_eq!(g.sys(167, &[16, SCRATCH]), 0);
    assert_eq!(g.get(SCRATCH, 16), b"program-with-a-\0");
    g.put_str(SCRATCH, b"renamed-thread-name-too-long");
    assert_eq!(g.sys(167, &[15, SCRATCH]), 0);
    assert_eq!(g.sys(167, &[16, SCRATCH + 64]), 0);
    assert_eq!(g.get(SCRATCH + 64, 16), b"renamed-thread-\0");
    assert_eq!(g.sys(167, &[4, 1]), e(libc::EINVAL));
    // sysinfo, getrusage, sched_getaffinity.
    assert_eq!(g.sys(179, &[SCRATCH]), 0);
    assert!(g.u64_at(SCRATCH + 32) > 0, "totalram");
    assert_eq!(g.sys(165, &[0, SCRATCH]), 0);
    assert_eq!(g.sys(165, &[5, SCRATCH]), e(libc::EINVAL));
    let n = g.sys(123, &[0, 128, SCRATCH]);
    assert!(n > 0 && n % 8 == 0, "{n}");
    assert_eq!(g.sys(123, &[77_777, 128, SCRATCH]), e(libc::ESRCH));
}

#[test]
fn time_calls_use_host_clocks() {
    let mut g = guest();
    assert_eq!(g.sys(113, &[1, SCRATCH]), 0);
    let t0 = (g.u64_at(SCRATCH), g.u64_at(SCRATCH + 8));
    assert!(t0.1 < 1_000_000_000);
    // 2 ms sleep.
    g.put(SCRATCH + 16, &0u64.to_le_bytes());
    g.put(SCRATCH + 24, &2_000_000u64.to_le_bytes());
    assert_eq!(g.sys(101, &[SCRATCH + 16, 0]), 0);
    assert_eq!(g.sys(115, &[1, 0, SCRATCH + 16, 0]), 0);
    assert_eq!(g.sys(113, &[1, SCRATCH]), 0);
    let t1 = (g.u64_at(SCRATCH), g.u64_at(SCRATCH + 8));
    let ns = |t: (u64, u64)| t.0 as u128 * 1_000_000_000 + t.1 as u128;
    assert!(ns(t1) >= ns(t0) + 4_000_000);
    assert_eq!(g.sys(113, &[0, SCRATCH]), 0);
    assert!(g.u64_at(SCRATCH) > 1_600_000_000, "realtime is the epoch clock");
    assert_eq!(g.sys(169, &[SCRATCH, SCRATCH + 16]), 0);
    assert!(g.u64_at(SCRATCH + 8) < 1_000_000, "tv_usec");
    assert_eq!(g.sys(114, &[1, SCRATCH]), 0);
    assert_eq!(g.sys(114, &[1, 0]), 0);
    assert_eq!(g.sys(113, &[-7i64 as u64, SCRATCH]), e(libc::EINVAL));
    assert_eq!(g.sys(113, &[99, SCRATCH]), e(libc::EINVAL));
    g.put(SCRATCH + 24, &1_000_000_000u64.to_le_bytes());
    assert_eq!(g.sys(101, &[SCRATCH + 16, 0]), e(libc::EINVAL));
    assert_eq!(g.sys(124, &[]), 0);
}
