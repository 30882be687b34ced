//! Memory calls: `brk`, `mmap`/`munmap`/`mprotect`/`mremap` (anonymous and file-backed,
//! placement and errors as Linux), `madvise(MADV_DONTNEED)`.

use super::*;

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
