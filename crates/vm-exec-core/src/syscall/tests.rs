//! Tests of the system-call layer: each builds a process from the tiny test ELF, sets the
//! registers of an `ecall` and calls [`dispatch`] directly.

use super::*;
use crate::elf::{tests_support::tiny_elf, Program};
use crate::exec::{GuestExit, GuestSignal};
use crate::loader;
use crate::memory::{PERM_READ, PERM_WRITE};
use crate::process::{CaptureBuffer, ProcessConfig, Stdio};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SCRATCH: u64 = 0x100_0000;
const SCRATCH_LEN: u64 = 0x10000;
const STDIN: &[u8] = b"hello stdin";

const AT_FDCWD: u64 = -100i64 as u64;
const AT_EMPTY_PATH: u64 = 0x1000;
const O_RDONLY: u64 = 0;
const O_RDWR: u64 = 2;
const O_CREAT: u64 = 0o100;
const O_WRONLY: u64 = 1;
const O_DIRECTORY: u64 = 0o200000;
const O_NOFOLLOW: u64 = 0o400000;
const PROT_READ: u64 = 1;
const PROT_WRITE: u64 = 2;
const MAP_SHARED: u64 = 1;
const MAP_PRIVATE: u64 = 2;
const MAP_FIXED: u64 = 0x10;
const MAP_ANON: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;

fn e(errno: i32) -> i64 {
    -(errno as i64)
}

struct Guest {
    p: Process,
    t: GuestThread,
    out: CaptureBuffer,
    err: CaptureBuffer,
}

fn guest_with(f: impl FnOnce(&mut ProcessConfig)) -> Guest {
    let out = CaptureBuffer::with_limit(1 << 20);
    let err = CaptureBuffer::with_limit(1 << 20);
    let mut config = ProcessConfig {
        memory_size: 1 << 28,
        stack_size: 1 << 20,
        stdin: Stdio::Bytes(Arc::from(STDIN)),
        stdout: Stdio::Capture(out.clone()),
        stderr: Stdio::Capture(err.clone()),
        random_seed: Some(42),
        exe_path: PathBuf::from("/opt/guests/program-with-a-long-name"),
        ..Default::default()
    };
    f(&mut config);
    let program = Arc::new(Program::parse(tiny_elf()).unwrap());
    let (p, t) = loader::load(program, Arc::new(config), 1234).unwrap();
    p.mem.map_fixed(SCRATCH, SCRATCH_LEN, PERM_READ | PERM_WRITE).unwrap();
    Guest { p, t, out, err }
}

fn guest() -> Guest {
    guest_with(|_| {})
}

impl Guest {
    fn call(&mut self, nr: u64, args: &[u64]) -> (i64, Option<StopReason>) {
        self.t.cpu.x[reg::A7] = nr;
        for i in 0..6 {
            self.t.cpu.x[reg::A0 + i] = args.get(i).copied().unwrap_or(0);
        }
        let o = dispatch(&mut self.t, &self.p);
        (self.t.cpu.x[reg::A0] as i64, o)
    }

    /// The stop of a call that raises the fatal signal `signo` (reported at the `ecall`).
    fn signal(&self, signo: i32) -> Option<StopReason> {
        let sig = GuestSignal { signo, pc: self.t.cpu.pc.wrapping_sub(4), addr: None };
        Some(StopReason::Finished(GuestExit::Signaled(sig)))
    }

    /// A call that must let the thread continue.
    fn sys(&mut self, nr: u64, args: &[u64]) -> i64 {
        let (r, o) = self.call(nr, args);
        assert_eq!(o, None, "syscall {nr} ({:?})", name_of(nr));
        r
    }

    fn put(&mut self, addr: u64, bytes: &[u8]) {
        self.p.mem.write_bytes(addr, bytes).unwrap();
    }

    /// Writes a NUL-terminated string.
    fn put_str(&mut self, addr: u64, s: &[u8]) {
        self.put(addr, s);
        self.put(addr + s.len() as u64, &[0]);
    }

    fn put_path(&mut self, addr: u64, p: &Path) {
        use std::os::unix::ffi::OsStrExt;
        self.put_str(addr, p.as_os_str().as_bytes());
    }

    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.p.mem.read_bytes(addr, &mut v).unwrap();
        v
    }

    fn u64_at(&self, addr: u64) -> u64 {
        self.p.mem.read_u64(addr).unwrap()
    }

    fn u32_at(&self, addr: u64) -> u32 {
        self.p.mem.read_u32(addr).unwrap()
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("vmx-syscall-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(std::fs::canonicalize(&d).unwrap())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn table_is_sorted_named_and_numbered_like_the_kernel() {
    let v: Vec<_> = implemented().collect();
    assert!(v.windows(2).all(|w| w[0].0 < w[1].0));
    for (nr, name) in [
        (17, "getcwd"),
        (56, "openat"),
        (63, "read"),
        (64, "write"),
        (79, "newfstatat"),
        (80, "fstat"),
        (93, "exit"),
        (94, "exit_group"),
        (96, "set_tid_address"),
        (98, "futex"),
        (113, "clock_gettime"),
        (131, "tgkill"),
        (134, "rt_sigaction"),
        (160, "uname"),
        (214, "brk"),
        (215, "munmap"),
        (216, "mremap"),
        (220, "clone"),
        (222, "mmap"),
        (226, "mprotect"),
        (233, "madvise"),
        (259, "riscv_flush_icache"),
        (261, "prlimit64"),
        (278, "getrandom"),
        (291, "statx"),
        (293, "rseq"),
    ] {
        assert_eq!(name_of(nr), Some(name));
    }
    assert_eq!(name_of(999), None);
    assert_eq!(name_of(u64::MAX), None);
}

#[test]
fn unknown_syscalls_are_enosys_and_never_fatal() {
    let mut g = guest();
    for nr in [999, 258, 1 << 40, u64::MAX, 141] {
        assert_eq!(g.sys(nr, &[1, 2, 3]), e(libc::ENOSYS));
        assert_eq!(g.sys(nr, &[]), e(libc::ENOSYS), "second call to {nr}");
    }
}

#[test]
fn write_and_writev_go_to_the_capture_buffers() {
    let mut g = guest();
    g.put(SCRATCH, b"hello, world\n");
    assert_eq!(g.sys(64, &[1, SCRATCH, 13]), 13);
    assert_eq!(g.sys(64, &[2, SCRATCH, 5]), 5);
    // iovecs: "world\n" then "hello"
    let iov = SCRATCH + 0x100;
    for (i, (base, len)) in [(SCRATCH + 7, 6u64), (SCRATCH, 0), (SCRATCH, 5)].iter().enumerate() {
        g.put(iov + 16 * i as u64, &base.to_le_bytes());
        g.put(iov + 16 * i as u64 + 8, &len.to_le_bytes());
    }
    assert_eq!(g.sys(66, &[1, iov, 3]), 11);
    assert_eq!(g.out.contents(), b"hello, world\nworld\nhello");
    assert_eq!(g.err.contents(), b"hello");
    // Not writable / not open / bad buffers.
    assert_eq!(g.sys(64, &[0, SCRATCH, 1]), e(libc::EBADF));
    assert_eq!(g.sys(64, &[77, SCRATCH, 1]), e(libc::EBADF));
    assert_eq!(g.sys(64, &[-1i64 as u64, SCRATCH, 1]), e(libc::EBADF));
    assert_eq!(g.sys(64, &[1, 0, 1]), e(libc::EFAULT));
    assert_eq!(g.sys(64, &[1, u64::MAX - 2, 10]), e(libc::EFAULT));
    assert_eq!(g.sys(66, &[1, iov, 1025]), e(libc::EINVAL));
    assert_eq!(g.sys(66, &[1, 0, 1]), e(libc::EFAULT));
    // A buffer running into unmapped memory writes its mapped prefix, like Linux.
    let end = SCRATCH + SCRATCH_LEN;
    g.put(end - 3, b"xyz");
    assert_eq!(g.sys(64, &[1, end - 3, 100]), 3);
    assert!(g.out.contents().ends_with(b"xyz"));
    // Zero-length writes succeed whatever the pointer.
    assert_eq!(g.sys(64, &[1, 0, 0]), 0);
}

#[test]
fn null_streams_discard_and_read_eof() {
    let mut g = guest_with(|c| {
        c.stdin = Stdio::Null;
        c.stdout = Stdio::Null;
    });
    assert_eq!(g.sys(64, &[1, 0, 100]), 100);
    assert_eq!(g.sys(63, &[0, SCRATCH, 100]), 0);
    assert_eq!(g.sys(62, &[1, 0, 0]), 0);
}

#[test]
fn read_and_readv_serve_bytes_stdin() {
    let mut g = guest();
    assert_eq!(g.sys(63, &[0, SCRATCH, 5]), 5);
    assert_eq!(g.get(SCRATCH, 5), b"hello");
    // readv: 1 byte then up to 100 more.
    let iov = SCRATCH + 0x100;
    g.put(iov, &(SCRATCH + 0x200).to_le_bytes());
    g.put(iov + 8, &1u64.to_le_bytes());
    g.put(iov + 16, &(SCRATCH + 0x300).to_le_bytes());
    g.put(iov + 24, &100u64.to_le_bytes());
    assert_eq!(g.sys(65, &[0, iov, 2]), 6);
    assert_eq!(g.get(SCRATCH + 0x200, 1), b" ");
    assert_eq!(g.get(SCRATCH + 0x300, 5), b"stdin");
    assert_eq!(g.sys(63, &[0, SCRATCH, 5]), 0, "end of input");
    // Reading a capture buffer or into bad memory fails.
    assert_eq!(g.sys(63, &[1, SCRATCH, 5]), e(libc::EBADF));
    let mut g = guest();
    assert_eq!(g.sys(63, &[0, 0x10, 5]), e(libc::EFAULT));
    assert_eq!(g.sys(63, &[0, SCRATCH, 5]), 5, "a failed read consumes nothing");
    // Read-only memory cannot be read into.
    assert_eq!(g.sys(63, &[0, 0x10078, 1]), e(libc::EFAULT));
    // lseek on a pipe-like stream.
    assert_eq!(g.sys(62, &[0, 0, 0]), e(libc::ESPIPE));
    assert_eq!(g.sys(67, &[0, SCRATCH, 1, 0]), e(libc::ESPIPE));
}

#[test]
fn brk_grows_and_shrinks() {
    let mut g = guest();
    let b0 = g.sys(214, &[0]) as u64;
    assert_eq!(b0 % PAGE_SIZE, 0);
    assert_eq!(g.sys(214, &[b0 + 0x2345]) as u64, b0 + 0x2345);
    g.p.mem.write_u8(b0 + 0x2344, 7).unwrap();
    assert_eq!(g.sys(214, &[0]) as u64, b0 + 0x2345);
    assert_eq!(g.sys(214, &[b0]) as u64, b0);
    assert!(g.p.mem.read_u8(b0 + 0x1000).is_err());
    assert_eq!(g.sys(214, &[1 << 40]) as u64, b0, "impossible break is refused");
}

#[test]
fn mmap_munmap_mprotect_mremap_round_trip() {
    let mut g = guest();
    let rw = PROT_READ | PROT_WRITE;
    let a = g.sys(222, &[0, 0x3000, rw, MAP_PRIVATE | MAP_ANON, -1i64 as u64, 0]) as u64;
    assert!(a > 0 && a % PAGE_SIZE == 0, "{a:#x}");
    assert_eq!(g.get(a, 16), [0; 16]);
    g.put(a + 0x2ff8, &42u64.to_le_bytes());
    // A second mapping does not overlap.
    let b = g.sys(222, &[0, 0x1000, rw, MAP_PRIVATE | MAP_ANON, -1i64 as u64, 0]) as u64;
    assert!(b + 0x1000 <= a || b >= a + 0x3000);
    // mprotect to read-only: stores fault, loads work.
    assert_eq!(g.sys(226, &[a, 0x1000, PROT_READ]), 0);
    assert!(g.p.mem.write_u8(a, 1).is_err());
    assert!(g.p.mem.read_u8(a).is_ok());
    assert_eq!(g.sys(226, &[a + 1, 0x1000, PROT_READ]), e(libc::EINVAL));
    assert_eq!(g.sys(226, &[a, 0x1000, 0x40]), e(libc::EINVAL));
    assert_eq!(g.sys(226, &[0x200_0000, 0x1000, PROT_READ]), e(libc::ENOMEM));
    assert_eq!(g.sys(226, &[a, 0, PROT_READ]), 0);
    // mremap moves one mapping: mixed permissions are refused like a range spanning VMAs.
    assert_eq!(g.sys(216, &[a, 0x3000, 0x10000, 1]), e(libc::EFAULT));
    assert_eq!(g.sys(226, &[a, 0x1000, rw]), 0);
    // mremap: grow (moving if needed) keeps the contents.
    let c = g.sys(216, &[a, 0x3000, 0x10000, 1]) as u64;
    assert!(c > 0 && c % PAGE_SIZE == 0, "{c:#x}");
    assert_eq!(g.u64_at(c + 0x2ff8), 42);
    g.put(c + 0xfff8, &1u64.to_le_bytes());
    assert_eq!(g.sys(216, &[c, 0x10000, 0x1000, 0]) as u64, c, "shrink in place");
    assert!(g.p.mem.read_u8(c + 0x1000).is_err());
    assert_eq!(g.sys(216, &[0x200_0000, 0x1000, 0x2000, 1]), e(libc::EFAULT));
    assert_eq!(g.sys(216, &[c, 0x1000, 0x2000, 2]), e(libc::EINVAL), "MREMAP_FIXED");
    assert_eq!(g.sys(216, &[c + 1, 0x1000, 0x2000, 1]), e(libc::EINVAL));
    assert_eq!(g.sys(216, &[c, 0x1000, 0, 1]), e(libc::ENOMEM), "zero length, as in qemu");
    // munmap: later accesses fault.
    assert_eq!(g.sys(215, &[c, 0x1000]), 0);
    assert!(g.p.mem.read_u8(c).is_err());
    assert!(g.p.mem.write_u8(c, 0).is_err());
    assert_eq!(g.sys(215, &[c, 0x1000]), 0, "unmapping twice is fine");
    assert_eq!(g.sys(215, &[c + 1, 0x1000]), e(libc::EINVAL));
    assert_eq!(g.sys(215, &[c, 0]), e(libc::EINVAL));
    assert_eq!(g.sys(215, &[!0xfffu64, 0x2000]), e(libc::EINVAL));
}

#[test]
fn mmap_placement_and_errors_follow_linux() {
    let mut g = guest();
    let rw = PROT_READ | PROT_WRITE;
    let anon = MAP_PRIVATE | MAP_ANON;
    let fd = -1i64 as u64;
    let fixed = 0x300_0000;
    assert_eq!(g.sys(222, &[fixed, 0x2000, rw, anon | MAP_FIXED, fd, 0]) as u64, fixed);
    g.put(fixed, b"x");
    // MAP_FIXED replaces (fresh zero page); MAP_FIXED_NOREPLACE is a hint, as in qemu 7.2.
    assert_eq!(g.sys(222, &[fixed, 0x1000, rw, anon | MAP_FIXED, fd, 0]) as u64, fixed);
    assert_eq!(g.get(fixed, 1), [0]);
    let other = g.sys(222, &[fixed, 0x1000, rw, anon | MAP_FIXED_NOREPLACE, fd, 0]);
    assert!(other > 0 && other as u64 != fixed);
    assert_eq!(
        g.sys(222, &[fixed + 0x4000, 0x1000, rw, anon | MAP_FIXED_NOREPLACE, fd, 0]) as u64,
        fixed + 0x4000
    );
    // A free hint is honoured.
    assert_eq!(g.sys(222, &[0x500_0000, 0x1000, rw, anon, fd, 0]) as u64, 0x500_0000);
    // Errors.
    assert_eq!(g.sys(222, &[0, 0, rw, anon, fd, 0]), e(libc::EINVAL));
    assert_eq!(g.sys(222, &[0, 0x1000, rw, MAP_ANON, fd, 0]), e(libc::EINVAL), "no map type");
    assert_eq!(g.sys(222, &[fixed + 1, 0x1000, rw, anon | MAP_FIXED, fd, 0]), e(libc::EINVAL));
    assert_eq!(g.sys(222, &[0, 0x1000, rw, MAP_PRIVATE, fd, 0]), e(libc::EBADF));
    assert_eq!(g.sys(222, &[0, 0x1000, rw, MAP_PRIVATE, 1, 0]), e(libc::ENODEV), "capture fd");
    assert_eq!(g.sys(222, &[0, 0x1000, rw, anon, fd, 0x123]), e(libc::EINVAL));
    assert_eq!(g.sys(222, &[0, 1 << 40, rw, anon, fd, 0]), e(libc::ENOMEM));
    assert_eq!(g.sys(222, &[0, u64::MAX, rw, anon, fd, 0]), e(libc::ENOMEM));
    assert_eq!(
        g.sys(222, &[(1 << 28) - 0x1000, 0x2000, rw, anon | MAP_FIXED, fd, 0]),
        e(libc::ENOMEM)
    );
    assert_eq!(
        g.sys(222, &[0x1000, 0x1000, rw, anon | MAP_FIXED, fd, 0]),
        0x1000,
        "qemu allows low maps"
    );
    assert_ne!(g.sys(222, &[0x2000, 0x1000, rw, anon, fd, 0]), 0x2000, "low hints are not taken");
    // Shared anonymous memory works like private memory.
    let s = g.sys(222, &[0, 0x1000, rw, MAP_SHARED | MAP_ANON, fd, 0]) as u64;
    g.put(s, b"s");
    // PROT_NONE mappings exist but fault.
    let n = g.sys(222, &[0, 0x1000, 0, anon, fd, 0]) as u64;
    assert!(g.p.mem.read_u8(n).is_err());
    assert_eq!(g.sys(226, &[n, 0x1000, PROT_READ]), 0);
    assert_eq!(g.p.mem.read_u8(n).unwrap(), 0);
}

#[test]
fn madvise_dontneed_zeroes_and_keeps_permissions() {
    let mut g = guest();
    let a = g
        .sys(222, &[0, 0x3000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANON, -1i64 as u64, 0])
        as u64;
    g.put(a, &[1; 0x3000]);
    assert_eq!(g.sys(226, &[a + 0x2000, 0x1000, PROT_READ]), 0);
    assert_eq!(g.sys(233, &[a, 0x3000, 4]), 0);
    assert_eq!(g.get(a, 0x3000), vec![0; 0x3000]);
    g.put(a, b"still writable");
    assert!(g.p.mem.write_u8(a + 0x2000, 1).is_err(), "read-only page stays read-only");
    assert_eq!(g.sys(233, &[a, 0x1000, 3]), 0, "MADV_WILLNEED");
    assert_eq!(g.get(a, 5), b"still");
    assert_eq!(g.sys(233, &[a + 1, 0x1000, 4]), e(libc::EINVAL));
    assert_eq!(g.sys(233, &[a, u64::MAX, 4]), e(libc::EINVAL));
    assert_eq!(g.sys(233, &[1 << 40, 0x1000, 4]), e(libc::EINVAL));
    // Like qemu: unknown advice and unmapped ranges succeed.
    assert_eq!(g.sys(233, &[a, 0x1000, 77]), 0);
    assert_eq!(g.sys(233, &[0x200_0000, 0x1000, 4]), 0);
}

#[test]
fn file_backed_mmap_copies_the_file() {
    let dir = TempDir::new("mmap");
    let file = dir.0.join("data.bin");
    let content: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let d = dir.0.clone();
    let mut g = guest_with(|c| c.allowed_dirs.push(d));
    g.put_path(SCRATCH, &file);
    let fd = g.sys(56, &[AT_FDCWD, SCRATCH, O_RDONLY, 0]) as u64;
    assert!(fd >= 3);
    let a = g.sys(222, &[0, 8192, PROT_READ, MAP_PRIVATE, fd, 0]) as u64;
    assert!(a > 0 && a % PAGE_SIZE == 0, "{a:#x}");
    assert_eq!(g.get(a, 6000), content);
    assert_eq!(g.get(a + 6000, 8192 - 6000), vec![0; 8192 - 6000], "past the end is zero");
    assert!(g.p.mem.write_u8(a, 0).is_err(), "PROT_READ mapping");
    // At an offset, writable private copy.
    let b = g.sys(222, &[0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 4096]) as u64;
    assert_eq!(g.get(b, 6000 - 4096), &content[4096..]);
    g.put(b, b"private");
    assert_eq!(std::fs::read(&file).unwrap(), content, "the file is untouched");
    // Read-only shared mapping is a copy too; a writable one is refused.
    assert!(g.sys(222, &[0, 4096, PROT_READ, MAP_SHARED, fd, 0]) > 0);
    assert_eq!(g.sys(222, &[0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0]), e(libc::EACCES));
    assert_eq!(g.sys(57, &[fd]), 0);
    g.put_path(SCRATCH, &file);
    let fd = g.sys(56, &[AT_FDCWD, SCRATCH, O_RDWR, 0]) as u64;
    assert_eq!(g.sys(222, &[0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0]), e(libc::ENODEV));
    // Write-only descriptors cannot be mapped; directories are not mappable.
    let wfd = g.sys(56, &[AT_FDCWD, SCRATCH, O_WRONLY, 0]) as u64;
    assert_eq!(g.sys(222, &[0, 4096, PROT_READ, MAP_PRIVATE, wfd, 0]), e(libc::EACCES));
    g.put_path(SCRATCH, &dir.0);
    let dfd = g.sys(56, &[AT_FDCWD, SCRATCH, O_RDONLY | O_DIRECTORY, 0]) as u64;
    assert_eq!(g.sys(222, &[0, 4096, PROT_READ, MAP_PRIVATE, dfd, 0]), e(libc::ENODEV));
}

#[test]
fn openat_is_confined_to_allowed_dirs() {
    let root = TempDir::new("open");
    let allowed = root.0.join("allowed");
    let outside = root.0.join("outside");
    std::fs::create_dir_all(allowed.join("sub")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(allowed.join("sub/in.txt"), b"inside").unwrap();
    std::fs::write(outside.join("secret.txt"), b"secret").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), allowed.join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.join("new.txt"), allowed.join("dangling")).unwrap();
    std::os::unix::fs::symlink("sub/in.txt", allowed.join("inner-link")).unwrap();
    let a = allowed.clone();
    let mut g = guest_with(|c| c.allowed_dirs.push(a));
    let path = SCRATCH + 0x1000;
    let open = |g: &mut Guest, p: &Path, flags: u64| {
        g.put_path(path, p);
        g.sys(56, &[AT_FDCWD, path, flags, 0o644])
    };
    // Inside: readable.
    let fd = open(&mut g, &allowed.join("sub/in.txt"), O_RDONLY) as u64;
    assert!(fd >= 3);
    assert_eq!(g.sys(63, &[fd, SCRATCH, 100]), 6);
    assert_eq!(g.get(SCRATCH, 6), b"inside");
    assert_eq!(g.sys(62, &[fd, 1, 0]), 1, "lseek SEEK_SET");
    assert_eq!(g.sys(67, &[fd, SCRATCH, 3, 2]), 3, "pread64");
    assert_eq!(g.get(SCRATCH, 3), b"sid");
    assert_eq!(g.sys(57, &[fd]), 0);
    assert_eq!(g.sys(57, &[fd]), e(libc::EBADF));
    // A link that stays inside is fine; O_NOFOLLOW on it is ELOOP.
    assert!(open(&mut g, &allowed.join("inner-link"), O_RDONLY) >= 3);
    assert_eq!(open(&mut g, &allowed.join("inner-link"), O_RDONLY | O_NOFOLLOW), e(libc::ELOOP));
    // Outside, through `..`, through a symlink, or a dangling symlink: refused.
    assert_eq!(open(&mut g, &outside.join("secret.txt"), O_RDONLY), e(libc::EACCES));
    assert_eq!(open(&mut g, &allowed.join("../outside/secret.txt"), O_RDONLY), e(libc::EACCES));
    assert_eq!(open(&mut g, &allowed.join("escape"), O_RDONLY), e(libc::EACCES));
    assert_eq!(open(&mut g, &allowed.join("dangling"), O_RDWR | O_CREAT), e(libc::EACCES));
    assert!(!outside.join("new.txt").exists());
    assert_eq!(open(&mut g, Path::new("/etc/passwd"), O_RDONLY), e(libc::EACCES));
    // Missing files: ENOENT inside, EACCES outside (no probing).
    assert_eq!(open(&mut g, &allowed.join("nope"), O_RDONLY), e(libc::ENOENT));
    assert_eq!(open(&mut g, &outside.join("nope"), O_RDONLY), e(libc::EACCES));
    assert_eq!(open(&mut g, &outside.join("nope"), O_RDWR | O_CREAT), e(libc::EACCES));
    assert!(!outside.join("nope").exists());
    // Creating inside works.
    let fd = open(&mut g, &allowed.join("created.txt"), O_RDWR | O_CREAT) as u64;
    assert!(fd >= 3);
    g.put(SCRATCH, b"new file");
    assert_eq!(g.sys(64, &[fd, SCRATCH, 8]), 8);
    assert_eq!(std::fs::read(allowed.join("created.txt")).unwrap(), b"new file");
    // Relative to a directory descriptor the guest opened.
    let dfd = open(&mut g, &allowed.join("sub"), O_RDONLY | O_DIRECTORY) as u64;
    g.put_str(path, b"in.txt");
    let fd = g.sys(56, &[dfd, path, O_RDONLY, 0]);
    assert!(fd >= 3);
    g.put_str(path, b"../../outside/secret.txt");
    assert_eq!(g.sys(56, &[dfd, path, O_RDONLY, 0]), e(libc::EACCES));
    g.put_str(path, b"in.txt");
    assert_eq!(g.sys(56, &[1, path, O_RDONLY, 0]), e(libc::ENOTDIR));
    assert_eq!(g.sys(56, &[99, path, O_RDONLY, 0]), e(libc::EBADF));
    // Bad path pointers and empty paths.
    assert_eq!(g.sys(56, &[AT_FDCWD, 0, O_RDONLY, 0]), e(libc::EFAULT));
    g.put_str(path, b"");
    assert_eq!(g.sys(56, &[AT_FDCWD, path, O_RDONLY, 0]), e(libc::ENOENT));
    // faccessat and readlinkat follow the same rule.
    g.put_path(path, &allowed.join("sub/in.txt"));
    assert_eq!(g.sys(48, &[AT_FDCWD, path, 4]), 0);
    g.put_path(path, &outside.join("secret.txt"));
    assert_eq!(g.sys(48, &[AT_FDCWD, path, 4]), e(libc::EACCES));
    g.put_path(path, &allowed.join("inner-link"));
    assert_eq!(g.sys(78, &[AT_FDCWD, path, SCRATCH, 100]), 10);
    assert_eq!(g.get(SCRATCH, 10), b"sub/in.txt");
    g.put_path(path, &allowed.join("escape"));
    let target_len = outside.join("secret.txt").as_os_str().len() as i64;
    assert_eq!(
        g.sys(78, &[AT_FDCWD, path, SCRATCH, 4096]),
        target_len,
        "the link itself is inside"
    );
}

#[test]
fn no_allowed_dirs_means_no_host_files() {
    let mut g = guest();
    g.put_str(SCRATCH, b"/etc/hostname");
    assert_eq!(g.sys(56, &[AT_FDCWD, SCRATCH, O_RDONLY, 0]), e(libc::EACCES));
    g.put_str(SCRATCH, b".");
    assert_eq!(g.sys(56, &[AT_FDCWD, SCRATCH, O_RDONLY, 0]), e(libc::EACCES));
    assert_eq!(g.sys(79, &[AT_FDCWD, SCRATCH, SCRATCH + 0x100, 0]), e(libc::EACCES));
}

#[test]
fn readlink_proc_self_exe_reports_the_configured_path() {
    let mut g = guest();
    let exe = b"/opt/guests/program-with-a-long-name";
    for p in [&b"/proc/self/exe"[..], b"/proc/1234/exe"] {
        g.put_str(SCRATCH, p);
        assert_eq!(g.sys(78, &[AT_FDCWD, SCRATCH, SCRATCH + 0x100, 4096]), exe.len() as i64);
        assert_eq!(g.get(SCRATCH + 0x100, exe.len()), exe);
    }
    g.put_str(SCRATCH, b"/proc/self/exe");
    assert_eq!(g.sys(78, &[AT_FDCWD, SCRATCH, SCRATCH + 0x200, 4]), 4, "truncated, no NUL");
    assert_eq!(g.get(SCRATCH + 0x200, 5), b"/opt\0");
    assert_eq!(g.sys(78, &[AT_FDCWD, SCRATCH, SCRATCH + 0x200, 0]), e(libc::EINVAL));
    assert_eq!(g.sys(78, &[AT_FDCWD, SCRATCH, 0x10, 100]), e(libc::EFAULT));
}

#[test]
fn fstat_reports_pipes_for_captured_streams_in_the_riscv_layout() {
    let mut g = guest();
    let buf = SCRATCH + 0x100;
    for (nr, args) in [(80u64, vec![1, buf]), (79, vec![1, SCRATCH, buf, AT_EMPTY_PATH])] {
        g.put_str(SCRATCH, b"");
        g.put(buf, &[0xaa; 128]);
        assert_eq!(g.sys(nr, &args), 0);
        assert_eq!(g.u32_at(buf + 16), libc::S_IFIFO | 0o600, "st_mode");
        assert_eq!(g.u32_at(buf + 20), 1, "st_nlink");
        assert_eq!(g.u32_at(buf + 56), 4096, "st_blksize");
        assert_eq!(g.u64_at(buf + 48), 0, "st_size");
        assert_eq!(g.u64_at(buf + 40), 0, "padding is zeroed");
        assert_eq!(g.u64_at(buf + 120), 0, "unused tail is zeroed");
    }
    assert_eq!(g.sys(80, &[0, buf]), 0);
    assert_eq!(g.u32_at(buf + 16) & libc::S_IFMT, libc::S_IFIFO);
    assert_eq!(g.sys(80, &[9, buf]), e(libc::EBADF));
    assert_eq!(g.sys(80, &[1, 0x10]), e(libc::EFAULT));
    g.put_str(SCRATCH, b"");
    assert_eq!(g.sys(79, &[1, SCRATCH, buf, 0]), e(libc::ENOENT), "empty path needs AT_EMPTY_PATH");
    assert_eq!(g.sys(79, &[1, SCRATCH, buf, 0x8000_0000]), e(libc::EINVAL));
}

#[test]
fn fstat_of_host_files_matches_the_host() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("stat");
    let file = dir.0.join("f");
    std::fs::write(&file, vec![7u8; 12345]).unwrap();
    let meta = std::fs::metadata(&file).unwrap();
    let d = dir.0.clone();
    let mut g = guest_with(|c| c.allowed_dirs.push(d));
    let buf = SCRATCH + 0x100;
    g.put_path(SCRATCH, &file);
    assert_eq!(g.sys(79, &[AT_FDCWD, SCRATCH, buf, 0]), 0);
    let check = |g: &Guest| {
        assert_eq!(g.u64_at(buf), meta.dev(), "st_dev");
        assert_eq!(g.u64_at(buf + 8), meta.ino(), "st_ino");
        assert_eq!(g.u32_at(buf + 16), meta.mode(), "st_mode");
        assert_eq!(g.u32_at(buf + 20) as u64, meta.nlink());
        assert_eq!(g.u32_at(buf + 24), meta.uid());
        assert_eq!(g.u64_at(buf + 48), 12345, "st_size");
        assert_eq!(g.u32_at(buf + 56) as u64, meta.blksize());
        assert_eq!(g.u64_at(buf + 64), meta.blocks());
        assert_eq!(g.u64_at(buf + 88) as i64, meta.mtime());
        assert_eq!(g.u64_at(buf + 96) as i64, meta.mtime_nsec());
    };
    check(&g);
    let fd = g.sys(56, &[AT_FDCWD, SCRATCH, O_RDONLY, 0]) as u64;
    g.put(buf, &[0; 128]);
    assert_eq!(g.sys(80, &[fd, buf]), 0);
    check(&g);
    // statx agrees.
    let sx = SCRATCH + 0x400;
    assert_eq!(g.sys(291, &[AT_FDCWD, SCRATCH, 0, 0x7ff, sx]), 0);
    assert_eq!(g.u64_at(sx + 40), 12345);
    assert_eq!(g.p.mem.read_u16(sx + 28).unwrap() as u32, meta.mode());
    g.put_str(SCRATCH + 0x300, b"");
    assert_eq!(g.sys(291, &[1, SCRATCH + 0x300, AT_EMPTY_PATH, 0x7ff, sx]), 0);
    assert_eq!(g.p.mem.read_u16(sx + 28).unwrap() as u32, libc::S_IFIFO | 0o600);
}

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
fn bad_pointers_are_efault() {
    let mut g = guest();
    let bad = [0u64, 0x10, 0x10078 /* read-only text */, u64::MAX - 7, 1 << 40];
    for b in bad {
        assert_eq!(g.sys(113, &[1, b]), e(libc::EFAULT), "clock_gettime {b:#x}");
        assert_eq!(g.sys(160, &[b]), e(libc::EFAULT), "uname {b:#x}");
        assert_eq!(g.sys(80, &[1, b]), e(libc::EFAULT), "fstat {b:#x}");
        assert_eq!(g.sys(17, &[b, 4096]), e(libc::EFAULT), "getcwd {b:#x}");
        assert_eq!(g.sys(179, &[b]), e(libc::EFAULT), "sysinfo {b:#x}");
        assert_eq!(g.sys(165, &[0, b]), e(libc::EFAULT), "getrusage {b:#x}");
        if b != 0 {
            assert_eq!(g.sys(261, &[0, 3, 0, b]), e(libc::EFAULT), "prlimit64 {b:#x}");
        }
        assert_eq!(g.sys(278, &[b, 16, 0]), e(libc::EFAULT), "getrandom {b:#x}");
        assert_eq!(g.sys(59, &[b, 0]), e(libc::EFAULT), "pipe2 {b:#x}");
        assert_eq!(g.sys(167, &[16, b]), e(libc::EFAULT), "prctl {b:#x}");
        if b != 0 {
            assert_eq!(g.sys(169, &[b, 0]), e(libc::EFAULT), "gettimeofday {b:#x}");
        }
    }
    for b in [0u64, 0x10, u64::MAX - 7, 1 << 40] {
        assert_eq!(g.sys(101, &[b, 0]), e(libc::EFAULT), "nanosleep {b:#x}");
        assert_eq!(g.sys(98, &[b & !3, 0, 0, 0, 0, 0]), e(libc::EFAULT), "futex {b:#x}");
        if b != 0 {
            assert_eq!(g.sys(134, &[10, b, 0, 8]), e(libc::EFAULT), "rt_sigaction {b:#x}");
        }
        assert_eq!(g.sys(56, &[AT_FDCWD, b, 0, 0]), e(libc::EFAULT), "openat {b:#x}");
        assert_eq!(g.sys(66, &[1, b, 1]), e(libc::EFAULT), "writev {b:#x}");
    }
    // Reads (not writes) of read-only memory are fine.
    assert_eq!(g.sys(64, &[1, 0x10078, 4]), 4);
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
fn descriptors_dup_fcntl_ioctl_and_pipes() {
    let mut g = guest();
    // fcntl.
    assert_eq!(g.sys(25, &[1, 3]), 1, "F_GETFL on the capture: O_WRONLY");
    assert_eq!(g.sys(25, &[0, 3]), 0, "F_GETFL on the input: O_RDONLY");
    assert_eq!(g.sys(25, &[1, 1]), 0, "F_GETFD");
    assert_eq!(g.sys(25, &[1, 2, 1]), 0, "F_SETFD");
    assert_eq!(g.sys(25, &[1, 1]), 1);
    assert_eq!(g.sys(25, &[42, 1]), e(libc::EBADF));
    assert_eq!(g.sys(25, &[1, 9999]), e(libc::EINVAL));
    // dup / F_DUPFD / dup3 write to the same capture.
    let d = g.sys(23, &[1]) as u64;
    assert_eq!(d, 3);
    assert_eq!(g.sys(25, &[1, 1030, 10]), 10, "F_DUPFD_CLOEXEC");
    assert_eq!(g.sys(25, &[10, 1]), 1);
    assert_eq!(g.sys(24, &[1, 20, 0o2000000]), 20);
    assert_eq!(g.sys(24, &[1, 1, 0]), e(libc::EINVAL));
    assert_eq!(g.sys(24, &[1, 5000, 0]), e(libc::EBADF));
    assert_eq!(g.sys(24, &[1, 21, 1]), e(libc::EINVAL));
    g.put(SCRATCH, b"abc");
    for fd in [3, 10, 20] {
        assert_eq!(g.sys(64, &[fd, SCRATCH, 1]), 1);
    }
    assert_eq!(g.out.contents(), b"aaa");
    // dup3 over stdin replaces it.
    assert_eq!(g.sys(24, &[1, 0, 0]), 0);
    assert_eq!(g.sys(64, &[0, SCRATCH + 1, 1]), 1);
    assert_eq!(g.out.contents(), b"aaab");
    // Terminal ioctls fail on captures like on a pipe.
    assert_eq!(g.sys(29, &[1, 0x5401, SCRATCH]), e(libc::ENOTTY));
    assert_eq!(g.sys(29, &[1, 0x5413, SCRATCH]), e(libc::ENOTTY));
    assert_eq!(g.sys(29, &[77, 0x5401, SCRATCH]), e(libc::EBADF));
    assert_eq!(g.sys(29, &[1, 0x540b, 0]), e(libc::ENOTTY), "TCFLSH");
    assert_eq!(g.sys(29, &[1, 0x5490, 0]), e(libc::ENOSYS), "unknown request, as in qemu");
    assert_eq!(g.sys(29, &[1, 0x5421, SCRATCH]), 0, "FIONBIO");
    let mut fresh = guest();
    assert_eq!(fresh.sys(29, &[0, 0x541b, SCRATCH]), 0, "FIONREAD on in-memory input");
    assert_eq!(fresh.u32_at(SCRATCH), STDIN.len() as u32);
    // A host pipe.
    let fds = SCRATCH + 0x100;
    assert_eq!(g.sys(59, &[fds, 0o2000000]), 0);
    let (r, w) = (g.u32_at(fds) as u64, g.u32_at(fds + 4) as u64);
    assert_eq!(g.sys(25, &[r, 1]), 1, "O_CLOEXEC recorded");
    assert_eq!(g.sys(29, &[r, 0x5401, SCRATCH]), e(libc::ENOTTY), "a pipe is no terminal");
    g.put(SCRATCH, b"through the pipe");
    assert_eq!(g.sys(64, &[w, SCRATCH, 16]), 16);
    assert_eq!(g.sys(29, &[r, 0x541b, SCRATCH + 0x200]), 0, "FIONREAD");
    assert_eq!(g.u32_at(SCRATCH + 0x200), 16);
    assert_eq!(g.sys(63, &[r, SCRATCH + 0x40, 100]), 16);
    assert_eq!(g.get(SCRATCH + 0x40, 16), b"through the pipe");
    assert_eq!(g.sys(80, &[r, SCRATCH + 0x300]), 0);
    assert_eq!(g.u32_at(SCRATCH + 0x300 + 16) & libc::S_IFMT, libc::S_IFIFO);
    assert_eq!(g.sys(62, &[r, 0, 0]), e(libc::ESPIPE));
    // Writing to a pipe with no reader: EPIPE and SIGPIPE.
    assert_eq!(g.sys(57, &[r]), 0);
    assert_eq!(g.call(64, &[w, SCRATCH, 1]), (e(libc::EPIPE), g.signal(13)));
    assert_eq!(g.sys(59, &[fds, 0x1]), e(libc::EINVAL));
}

#[test]
fn ppoll_sees_in_memory_streams_as_ready() {
    let mut g = guest();
    let fds = SCRATCH;
    let entry = |fd: i32, events: i16| {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&fd.to_le_bytes());
        b[4..6].copy_from_slice(&events.to_le_bytes());
        b
    };
    g.put(fds, &entry(0, 1));
    g.put(fds + 8, &entry(1, 4));
    g.put(fds + 16, &entry(55, 1));
    g.put(fds + 24, &entry(-1, 1));
    assert_eq!(g.sys(73, &[fds, 4, 0, 0, 0]), 3);
    assert_eq!(g.p.mem.read_u16(fds + 6).unwrap(), 1);
    assert_eq!(g.p.mem.read_u16(fds + 14).unwrap(), 4);
    assert_eq!(g.p.mem.read_u16(fds + 22).unwrap(), 0x20, "POLLNVAL");
    assert_eq!(g.p.mem.read_u16(fds + 30).unwrap(), 0);
    assert_eq!(g.sys(73, &[fds, 2000, 0, 0, 0]), e(libc::EINVAL));
}

#[test]
fn getcwd_and_flush_icache() {
    let mut g = guest();
    let cwd = std::env::current_dir().unwrap();
    let n = g.sys(17, &[SCRATCH, 4096]);
    assert_eq!(n as usize, cwd.as_os_str().len() + 1);
    let s = g.get(SCRATCH, n as usize);
    assert_eq!(&s[..s.len() - 1], cwd.as_os_str().as_encoded_bytes());
    assert_eq!(s[s.len() - 1], 0);
    assert_eq!(g.sys(17, &[SCRATCH, 2]), e(libc::ERANGE));
    // Code decoded from a writable page is dropped; read-only text needs no flush (every
    // write to it is seen as it happens, see `AddressSpace::invalidate_all_code`).
    g.p.mem.mark_code(0x10078, 4);
    g.p.mem.mark_code(SCRATCH + 8, 4);
    let before = g.p.mem.code_generation();
    assert_eq!(g.sys(259, &[0, u64::MAX, 0]), 0);
    assert_eq!(
        g.p.mem.invalidations_since(before).0,
        crate::memory::Invalidations::Pages(vec![SCRATCH & !0xfff])
    );
    assert_eq!(g.sys(259, &[0, 0, 2]), 0, "flags are ignored, as by qemu");
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

/// Random arguments for every implemented call; `VMX_SYSCALL_FUZZ=N` runs N calls instead of
/// 20000 (2,000,000 passed when this was written).
#[test]
fn dispatch_never_panics_on_random_arguments() {
    let mut g = guest();
    let mut s = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    // Everything except calls that end the thread, sleep, block on host stdin or open host
    // files (there are no allowed dirs, but keep the run fast and side-effect free).
    let iterations: usize =
        std::env::var("VMX_SYSCALL_FUZZ").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    // Event and socket calls that can wait are fuzzed in a scheduled process below.
    let skip = [
        93, 94, 101, 115, 98, 73, 129, 130, 131, 63, 65, 67, 59, 22, 72, 441, 202, 203, 206, 207,
        211, 212, 242,
    ];
    let nrs: Vec<u64> = implemented().map(|(n, _)| n).filter(|n| !skip.contains(n)).collect();
    for i in 0..iterations {
        let nr = nrs[i % nrs.len()];
        let pick = |v: u64| match v % 6 {
            0 => 0,
            1 => SCRATCH + (v >> 8) % SCRATCH_LEN,
            2 => v % 8,
            3 => v,
            4 => -((v % 200) as i64) as u64,
            _ => (v >> 3) % 0x10000,
        };
        let args: Vec<u64> = (0..6).map(|_| pick(next())).collect();
        let (_, o) = g.call(nr, &args);
        if o.is_some() {
            g = guest();
        }
    }
}

#[test]
fn madvise_dontneed_brings_back_a_private_file_mappings_bytes() {
    let dir = TempDir::new("dontneed");
    let file = dir.0.join("data.bin");
    let content: Vec<u8> = (0..10000u32).map(|i| (i % 253) as u8 + 1).collect();
    std::fs::write(&file, &content).unwrap();
    let d = dir.0.clone();
    let mut g = guest_with(|c| c.allowed_dirs.push(d));
    g.put_path(SCRATCH, &file);
    let fd = g.sys(56, &[AT_FDCWD, SCRATCH, O_RDONLY, 0]) as u64;
    let a = g.sys(222, &[0, 0x3000, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0]) as u64;
    g.put(a, &[0xee; 0x3000]);
    assert_eq!(g.sys(57, &[fd]), 0, "the mapping outlives the descriptor");
    // Only the middle page: it shows the file again, the others keep the guest's writes.
    assert_eq!(g.sys(233, &[a + 0x1000, 0x1000, 4]), 0);
    assert_eq!(g.get(a + 0x1000, 0x1000), content[0x1000..0x2000].to_vec());
    assert_eq!(g.get(a, 0x1000), vec![0xee; 0x1000]);
    // The last page: the file's tail, then zeros past its end.
    assert_eq!(g.sys(233, &[a + 0x2000, 0x1000, 4]), 0);
    assert_eq!(g.get(a + 0x2000, 10000 - 0x2000), content[0x2000..].to_vec());
    assert_eq!(g.get(a + 10000, 0x3000 - 10000), vec![0; 0x3000 - 10000]);
    // Unmapped and mapped again anonymously: no file behind it any more.
    assert_eq!(g.sys(215, &[a, 0x3000]), 0);
    let b = g.sys(
        222,
        &[a, 0x3000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANON | MAP_FIXED, -1i64 as u64, 0],
    ) as u64;
    assert_eq!(b, a);
    g.put(a, &[7; 0x3000]);
    assert_eq!(g.sys(233, &[a, 0x3000, 4]), 0);
    assert_eq!(g.get(a, 0x3000), vec![0; 0x3000]);
}

#[test]
fn madvise_dontneed_brings_back_the_programs_data() {
    use crate::elf_writer::{write_executable, SegmentSpec};
    let code = vec![0x73u8, 0, 0, 0]; // ecall
    let data: Vec<u8> = (0..0x1800u32).map(|i| (i % 200) as u8 + 3).collect();
    let elf = write_executable(
        0x10000,
        &[
            SegmentSpec { addr: 0x10000, bytes: &code, zero_tail: 0, flags: 5 },
            SegmentSpec { addr: 0x40000, bytes: &data, zero_tail: 0x2000, flags: 6 },
        ],
    );
    let program = Arc::new(Program::parse(elf).unwrap());
    let config = Arc::new(ProcessConfig { memory_size: 1 << 26, ..Default::default() });
    let (p, t) = loader::load(program, config, 7).unwrap();
    let mut g =
        Guest { p, t, out: CaptureBuffer::with_limit(16), err: CaptureBuffer::with_limit(16) };
    g.put(0x40000, &[0; 0x1800]);
    g.put(0x42000, &[9; 0x100]); // bss
    assert_eq!(g.sys(233, &[0x40000, 0x3000, 4]), 0);
    assert_eq!(g.get(0x40000, 0x1800), data, ".data is the file's again");
    assert_eq!(g.get(0x42000, 0x100), vec![0; 0x100], "bss is zero");
}

#[test]
fn event_and_socket_calls_never_panic_or_block_on_random_arguments() {
    // In a scheduled process a call that would wait parks instead (its waiter is cancelled
    // here), so random arguments can never block the host thread. A few real objects are
    // made first so that random descriptors often name an epoll instance, an eventfd, a
    // timerfd or a socket.
    let fresh = || {
        let mut g = guest();
        g.p.set_scheduled(true);
        g.sys(20, &[0]); // epoll_create1 -> 3
        g.sys(19, &[1, 0]); // eventfd2 -> 4
        g.sys(85, &[1, 0]); // timerfd_create -> 5
        g.sys(199, &[1, 1, 0, SCRATCH]); // socketpair -> 6, 7
        g.sys(198, &[1, 2, 0]); // socket(AF_UNIX, SOCK_DGRAM) -> 8
        g.sys(198, &[2, 1, 0]); // AF_INET without network: EACCES
        g
    };
    let mut g = fresh();
    let mut s = 0x0bad_5eed_1234_5678u64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let nrs: [u64; 28] = [
        19, 20, 21, 22, 72, 73, 85, 86, 87, 441, 198, 199, 200, 201, 202, 203, 204, 205, 206, 207,
        208, 209, 210, 211, 212, 242, 63, 64,
    ];
    let iterations: usize =
        std::env::var("VMX_SYSCALL_FUZZ").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    for i in 0..iterations {
        let nr = nrs[(next() as usize) % nrs.len()];
        let pick = |v: u64| match v % 7 {
            0 => 0,
            1 => SCRATCH + (v >> 8) % SCRATCH_LEN,
            2 => v % 10,
            3 => v,
            4 => -((v % 200) as i64) as u64,
            5 => 3 + (v >> 8) % 6,
            _ => (v >> 3) % 0x10000,
        };
        let mut args: Vec<u64> = (0..6).map(|_| pick(next())).collect();
        if nr == 64 {
            args[2] %= 512; // keep writes small: they are not what is tested here
        }
        let (_, o) = g.call(nr, &args);
        match o {
            None => {}
            Some(StopReason::Blocked(w)) => {
                w.cancel();
                g = fresh();
            }
            Some(_) => g = fresh(),
        }
        if i % 2000 == 1999 {
            g = fresh();
        }
    }
    let r = g.sys(198, &[2, 1, 0]);
    assert_eq!(r, e(libc::EACCES), "no network without ProcessConfig::network");
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

#[test]
fn close_range_closes_or_marks_close_on_exec() {
    let mut g = guest();
    let fds = SCRATCH;
    assert_eq!(g.sys(59, &[fds, 0]), 0);
    assert_eq!(g.sys(59, &[fds + 8, 0]), 0);
    let n: Vec<i64> = (0..4)
        .map(|i| u32::from_le_bytes(g.get(fds + i * 4, 4).try_into().unwrap()) as i64)
        .collect();
    assert_eq!(g.sys(436, &[5, 3, 0]), e(libc::EINVAL), "first > last");
    assert_eq!(g.sys(436, &[3, u32::MAX as u64, 1]), e(libc::EINVAL), "unknown flag");
    // CLOSE_RANGE_CLOEXEC marks the last two without closing them.
    assert_eq!(g.sys(436, &[n[2] as u64, u32::MAX as u64, 4]), 0);
    assert_eq!(g.sys(25, &[n[3] as u64, 1]), 1, "F_GETFD shows FD_CLOEXEC");
    assert_eq!(g.sys(25, &[n[1] as u64, 1]), 0);
    // Closing the first two leaves the others open.
    assert_eq!(g.sys(436, &[n[0] as u64, n[1] as u64, 0]), 0);
    assert_eq!(g.sys(57, &[n[0] as u64]), e(libc::EBADF));
    assert_eq!(g.sys(57, &[n[1] as u64]), e(libc::EBADF));
    assert_eq!(g.sys(57, &[n[2] as u64]), 0);
    assert_eq!(g.sys(436, &[0, u32::MAX as u64, 0]), 0, "everything, standard streams too");
    assert_eq!(g.sys(57, &[1]), e(libc::EBADF));
}

#[test]
fn xattrs_read_the_host_files_inside_the_sandbox_only() {
    let root = TempDir::new("xattr");
    let allowed = root.0.join("allowed");
    let outside = root.0.join("outside");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let file = allowed.join("f.txt");
    std::fs::write(&file, b"x").unwrap();
    std::fs::write(outside.join("secret.txt"), b"s").unwrap();
    let cpath = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: NUL-terminated name and path, a 5-byte value.
    let set = unsafe {
        libc::setxattr(cpath.as_ptr(), c"user.vmx".as_ptr(), b"hello".as_ptr().cast(), 5, 0)
    };
    let a = allowed.clone();
    let mut g = guest_with(|c| c.allowed_dirs.push(a));
    let (path, name, buf) = (SCRATCH + 0x1000, SCRATCH + 0x2000, SCRATCH + 0x3000);
    g.put_path(path, &file);
    g.put_str(name, b"user.vmx");
    if set == 0 {
        // listxattr: the size first, then the names.
        assert_eq!(g.sys(11, &[path, 0, 0]), 9);
        assert_eq!(g.sys(12, &[path, buf, 100]), 9);
        assert_eq!(g.get(buf, 9), b"user.vmx\0");
        assert_eq!(g.sys(11, &[path, buf, 3]), e(libc::ERANGE));
        assert_eq!(g.sys(8, &[path, name, 0, 0]), 5);
        assert_eq!(g.sys(9, &[path, name, buf, 64]), 5);
        assert_eq!(g.get(buf, 5), b"hello");
        assert_eq!(g.sys(8, &[path, name, 0xdead_0000_0000, 64]), e(libc::EFAULT));
        let fd = g.sys(56, &[AT_FDCWD, path, 0, 0]);
        assert!(fd >= 0);
        assert_eq!(g.sys(10, &[fd as u64, name, buf, 64]), 5);
        assert_eq!(g.sys(13, &[fd as u64, buf, 64]), 9);
    } else {
        eprintln!("host file system has no user xattrs: only the errors are checked");
    }
    g.put_str(name, b"user.none");
    assert_eq!(g.sys(8, &[path, name, buf, 64]), e(libc::ENODATA));
    g.put_str(name, &[b'a'; 300]);
    assert_eq!(g.sys(8, &[path, name, buf, 64]), e(libc::ERANGE));
    // Outside the sandbox: refused like any read; a captured stream has none.
    g.put_path(path, &outside.join("secret.txt"));
    assert_eq!(g.sys(11, &[path, buf, 64]), e(libc::EACCES));
    assert_eq!(g.sys(13, &[1, buf, 64]), e(libc::EOPNOTSUPP));
    assert_eq!(g.sys(13, &[99, buf, 64]), e(libc::EBADF));
}
