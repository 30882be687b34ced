//! Memory management: `brk`, `mmap`, `munmap`, `mprotect`, `mremap`, `madvise` and
//! `riscv_flush_icache`, on top of [`crate::memory::AddressSpace`].
//!
//! Every mapping is private memory of the guest's address space:
//! - anonymous mappings (private or shared: with no `fork`, a shared anonymous mapping is
//!   indistinguishable from a private one) are fresh zero pages;
//! - private file mappings of regular files map the file's pages from the host file
//!   copy-on-write (`AddressSpace::map_file_private`: only pages the guest touches are read);
//!   other files' bytes are copied (`pread` from the host descriptor) when the mapping is made;
//!   bytes past the end of the file read as zero (Linux would raise `SIGBUS` on whole pages
//!   past the end);
//! - shared file mappings are copied the same way when they are not writable (the guest cannot
//!   tell, unless the file changes underneath), and refused with `ENODEV` when writable,
//!   because writes could not reach the file.
//!
//! Errors follow Linux where qemu-riscv64 (7.2, the reference) does: misaligned addresses or
//! offsets and zero lengths are `EINVAL`, no room is `ENOMEM`. Where qemu differs from Linux,
//! qemu is followed: `MAP_FIXED` may map below 64 KiB (Linux: `EPERM`), `MAP_FIXED_NOREPLACE`
//! is only a hint (Linux: `EEXIST` when taken), `madvise` succeeds on unmapped ranges and
//! unknown advice, `riscv_flush_icache` ignores its flags, and `mremap` of a zero length is
//! `ENOMEM`.

use super::fs::{target, Target};
use super::{err, Call, Errno, SysResult};
use crate::memory::{
    page_round_up, perms_from_prot, MapError, PAGE_SIZE, PERM_CODE, PERM_MAPPED, PERM_READ,
    PERM_WRITE,
};
use crate::process::{FileMapping, MapSource, Process};

const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_SHARED_VALIDATE: u64 = 0x03;
const MAP_TYPE: u64 = 0x0f;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const PROT_WRITE: u64 = 0x2;
/// Linux's default `vm.mmap_min_addr`: hints below it are not taken.
const MMAP_MIN_ADDR: u64 = 0x1_0000;

const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;
const MREMAP_DONTUNMAP: u64 = 4;

const PAGE_MASK: u64 = PAGE_SIZE - 1;

/// `brk(addr)`: returns the new break, or the old one if it cannot move.
pub(super) fn brk(c: &mut Call<'_>) -> SysResult {
    Ok(c.process.mem.set_brk(c.args[0]))
}

/// `mmap(addr, length, prot, flags, fd, offset)`.
pub(super) fn mmap(c: &mut Call<'_>) -> SysResult {
    let (hint, len, prot, flags, fd, off) =
        (c.args[0], c.args[1], c.args[2], c.args[3] as u32 as u64, c.fd(4), c.args[5]);
    if len == 0 || off & PAGE_MASK != 0 {
        return err(libc::EINVAL);
    }
    let shared = match flags & MAP_TYPE {
        MAP_SHARED | MAP_SHARED_VALIDATE => true,
        MAP_PRIVATE => false,
        _ => return err(libc::EINVAL),
    };
    let len = page_round_up(len).ok_or(Errno(libc::ENOMEM))?;
    let mem_size = c.process.mem.size();
    if len > mem_size {
        return err(libc::ENOMEM);
    }
    let anonymous = flags & MAP_ANONYMOUS != 0;
    // The host descriptor to copy from, for file mappings.
    let file = if anonymous {
        None
    } else {
        let h = match target(c.process, fd)? {
            Target::Host(h) => h,
            _ => return err(libc::ENODEV),
        };
        check_mappable(h, shared, prot)?;
        if off.checked_add(len).is_none_or(|e| e > i64::MAX as u64) {
            return err(libc::EOVERFLOW);
        }
        Some(h)
    };
    let mem = &c.process.mem;
    // Choosing the range and mapping it must not interleave with another thread's mmap.
    let _layout = mem.layout_lock();
    let start = if flags & MAP_FIXED != 0 {
        if hint & PAGE_MASK != 0 {
            return err(libc::EINVAL);
        }
        if hint.checked_add(len).is_none_or(|e| e > mem_size) {
            return err(libc::ENOMEM);
        }
        hint
    } else {
        // A hint (qemu-riscv64 7.2 treats MAP_FIXED_NOREPLACE as one too: a taken range gives
        // another address rather than EEXIST).
        let h = page_round_up(hint).unwrap_or(0);
        if h >= MMAP_MIN_ADDR
            && h.checked_add(len).is_some_and(|e| e <= mem_size)
            && mem.is_free(h, h + len)
        {
            h
        } else {
            mem.find_free(len).ok_or(Errno(libc::ENOMEM))?
        }
    };
    let perms = perms_from_prot(prot);
    forget_file_maps(c.process, start, start + len);
    match file {
        None => mem.map_fixed(start, len, perms)?,
        Some(h) => {
            if !map_from_file(mem, h, start, len, off, perms)? {
                mem.map_fixed(start, len, PERM_READ | PERM_WRITE)?;
                if let Err(e) = fill_from_file(mem, h, start, len, off) {
                    let _ = mem.unmap(start, len);
                    return Err(e);
                }
                mem.protect(start, len, perms)?;
            }
            // SAFETY: F_DUPFD_CLOEXEC on a descriptor the guest's table holds.
            let dup = unsafe { libc::fcntl(h, libc::F_DUPFD_CLOEXEC, 0) };
            if dup >= 0 {
                // SAFETY: `dup` is a new descriptor nobody else owns.
                let fd =
                    unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dup) };
                let m = FileMapping {
                    start,
                    end: start + len,
                    offset: off,
                    source: MapSource::File(std::sync::Arc::new(fd)),
                };
                super::state::with(c.process, |s| add_file_map(&mut s.file_maps, m));
            }
        }
    }
    Ok(start)
}

/// Checks that host descriptor `h` can back a mapping like Linux would.
fn check_mappable(h: i32, shared: bool, prot: u64) -> Result<(), Errno> {
    // SAFETY: F_GETFL takes no argument.
    let fl = unsafe { libc::fcntl(h, libc::F_GETFL) };
    if fl < 0 {
        return Err(Errno::last());
    }
    let acc = fl & libc::O_ACCMODE;
    if acc == libc::O_WRONLY || fl & libc::O_PATH != 0 {
        return err(if fl & libc::O_PATH != 0 { libc::EBADF } else { libc::EACCES });
    }
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `st` is writable storage for one `struct stat`.
    if unsafe { libc::fstat(h, st.as_mut_ptr()) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: fstat succeeded (and the zeroed plain-integer structure is valid regardless).
    let mode = unsafe { st.assume_init() }.st_mode & libc::S_IFMT;
    if mode != libc::S_IFREG && mode != libc::S_IFBLK {
        return err(libc::ENODEV);
    }
    if shared && prot & PROT_WRITE != 0 {
        if acc != libc::O_RDWR {
            return err(libc::EACCES);
        }
        if super::first_time("mmap-shared-write") {
            tracing::warn!(
                "writable MAP_SHARED file mappings are not supported; returning -ENODEV"
            );
        }
        return err(libc::ENODEV);
    }
    Ok(())
}

/// Maps `[start, start + len)` with `perms`, its pages within regular host file `h` (from
/// `off`) mapped from the file copy-on-write, so only the pages the guest touches are read, and
/// from the host's page cache; pages wholly past the end of the file stay zero, and the bytes
/// after the end in the last page are zero (the host zero-fills them). False, with nothing
/// done or the range left for the caller to map again, when `h` is not a regular file or the
/// host refuses the mapping: the caller copies the bytes instead.
fn map_from_file(
    mem: &crate::memory::AddressSpace,
    h: i32,
    start: u64,
    len: u64,
    off: u64,
    perms: u8,
) -> Result<bool, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `st` is writable storage for one `struct stat`.
    if unsafe { libc::fstat(h, st.as_mut_ptr()) } < 0 {
        return Ok(false);
    }
    // SAFETY: fstat succeeded (and the zeroed plain-integer structure is valid regardless).
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(false);
    }
    let size = st.st_size.max(0) as u64;
    let in_file = match size.checked_sub(off) {
        Some(rest) if rest > 0 => page_round_up(rest).unwrap_or(len).min(len),
        _ => 0,
    };
    mem.map_fixed(start, len, perms)?;
    if in_file > 0 {
        // SAFETY: `h` is a descriptor of the guest's table, open for the whole call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(h) };
        if mem.map_file_private(start, in_file, fd, off).is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies up to `len` bytes of host file `h` from `off` into guest memory at `start` (already
/// mapped read-write); stops at end of file.
fn fill_from_file(
    mem: &crate::memory::AddressSpace,
    h: i32,
    start: u64,
    len: u64,
    off: u64,
) -> Result<(), Errno> {
    let dst = mem.slice_mut(start, len)?;
    let mut done = 0usize;
    while done < dst.len() {
        let rest = &mut dst[done..];
        // SAFETY: `rest` is a live, exclusively borrowed slice of host-mapped guest memory; the
        // host writes at most `rest.len()` bytes into it.
        let n = unsafe {
            libc::pread(h, rest.as_mut_ptr().cast(), rest.len(), (off + done as u64) as i64)
        };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        done += n as usize;
    }
    Ok(())
}

/// `munmap(addr, length)`.
pub(super) fn munmap(c: &mut Call<'_>) -> SysResult {
    let (addr, len) = (c.args[0], c.args[1]);
    let mem = &c.process.mem;
    if addr & PAGE_MASK != 0
        || len == 0
        || page_round_up(len).and_then(|l| addr.checked_add(l)).is_none_or(|e| e > mem.size())
    {
        return err(libc::EINVAL);
    }
    mem.unmap(addr, len)?;
    forget_file_maps(c.process, addr, addr.saturating_add(page_round_up(len).unwrap_or(len)));
    Ok(0)
}

/// Inserts `m` (whose range no entry overlaps) keeping `maps` sorted.
pub(crate) fn add_file_map(maps: &mut Vec<FileMapping>, m: FileMapping) {
    let i = maps.partition_point(|x| x.start < m.start);
    maps.insert(i, m);
}

/// Removes `[lo, hi)` from the file-backed ranges (they are unmapped or replaced), splitting
/// the entries that straddle its ends.
fn forget_file_maps(p: &Process, lo: u64, hi: u64) {
    super::state::with(p, |s| {
        let mut out = Vec::with_capacity(s.file_maps.len() + 1);
        for m in s.file_maps.drain(..) {
            if m.end <= lo || m.start >= hi {
                out.push(m);
                continue;
            }
            if m.start < lo {
                out.push(FileMapping { end: lo, ..m.clone() });
            }
            if m.end > hi {
                out.push(FileMapping { start: hi, offset: m.offset + (hi - m.start), ..m });
            }
        }
        s.file_maps = out;
    });
}

/// After `MADV_DONTNEED` of `[lo, hi)`: the file-backed pages in it show their file's bytes
/// again (bytes past the end of the file are zero), as on Linux.
fn refill_file_maps(p: &Process, lo: u64, hi: u64) -> Result<(), Errno> {
    let maps: Vec<FileMapping> = super::state::peek(p, |s| {
        s.file_maps.iter().filter(|m| m.end > lo && m.start < hi).cloned().collect()
    });
    let mem = &p.mem;
    for m in maps {
        let (a, b) = (m.start.max(lo), m.end.min(hi));
        let off = m.offset + (a - m.start);
        use std::os::fd::AsRawFd;
        let fd = match &m.source {
            MapSource::File(f) => f.as_raw_fd(),
            MapSource::Image(prog) => match prog.image_fd() {
                Some(f) => f.as_raw_fd(),
                None => {
                    // No image file: copy from the image's bytes.
                    let bytes = prog.bytes();
                    let start = (off as usize).min(bytes.len());
                    let end = ((off + (b - a)) as usize).min(bytes.len());
                    write_mapped(mem, a, &bytes[start..end]);
                    continue;
                }
            },
        };
        let mut buf = vec![0u8; (b - a) as usize];
        let mut done = 0;
        while done < buf.len() {
            // SAFETY: the pointer and length describe the unfilled tail of `buf`.
            let n = unsafe {
                libc::pread(
                    fd,
                    buf[done..].as_mut_ptr().cast(),
                    buf.len() - done,
                    (off + done as u64) as i64,
                )
            };
            if n <= 0 {
                break;
            }
            done += n as usize;
        }
        buf.truncate(done);
        write_mapped(mem, a, &buf);
    }
    Ok(())
}

/// Copies `data` to guest address `addr` whatever the guest's permissions, page by page,
/// skipping pages that are not mapped.
fn write_mapped(mem: &crate::memory::AddressSpace, addr: u64, data: &[u8]) {
    let mut done = 0usize;
    while done < data.len() {
        let a = addr + done as u64;
        let n = ((PAGE_SIZE - (a & PAGE_MASK)) as usize).min(data.len() - done);
        if mem.page_perms(a) & PERM_MAPPED != 0 {
            crate::loader::write_ignoring_perms(mem, a, &data[done..done + n]);
        }
        done += n;
    }
}

/// `mprotect(addr, length, prot)`.
pub(super) fn mprotect(c: &mut Call<'_>) -> SysResult {
    let (addr, len, prot) = (c.args[0], c.args[1], c.args[2]);
    const PROT_SEM: u64 = 0x8;
    const PROT_GROWSDOWN: u64 = 0x0100_0000;
    const PROT_GROWSUP: u64 = 0x0200_0000;
    if addr & PAGE_MASK != 0
        || prot & !(7 | PROT_SEM | PROT_GROWSDOWN | PROT_GROWSUP) != 0
        || prot & (PROT_GROWSDOWN | PROT_GROWSUP) == PROT_GROWSDOWN | PROT_GROWSUP
    {
        return err(libc::EINVAL);
    }
    if len == 0 {
        return Ok(0);
    }
    let mem = &c.process.mem;
    match page_round_up(len).and_then(|l| addr.checked_add(l)) {
        Some(e) if e <= mem.size() => {}
        _ => return err(libc::ENOMEM),
    }
    mem.protect(addr, len, perms_from_prot(prot))?;
    Ok(0)
}

/// `mremap(old_address, old_size, new_size, flags, new_address)`. `MREMAP_FIXED` and
/// `MREMAP_DONTUNMAP` are refused with `EINVAL`.
pub(super) fn mremap(c: &mut Call<'_>) -> SysResult {
    let (old, old_len, new_len, flags) = (c.args[0], c.args[1], c.args[2], c.args[3]);
    if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) != 0 || old & PAGE_MASK != 0 {
        return err(libc::EINVAL);
    }
    if new_len == 0 || old_len == 0 {
        // Linux: EINVAL; qemu-riscv64 7.2 finds the empty range invalid: ENOMEM.
        return err(libc::ENOMEM);
    }
    if flags & (MREMAP_FIXED | MREMAP_DONTUNMAP) != 0 {
        if super::first_time("mremap-fixed") {
            tracing::warn!(
                flags,
                "mremap with MREMAP_FIXED/MREMAP_DONTUNMAP is not supported; returning -EINVAL"
            );
        }
        return err(libc::EINVAL);
    }
    let mem = &c.process.mem;
    let (Some(ol), Some(nl)) = (page_round_up(old_len), page_round_up(new_len)) else {
        return err(libc::EINVAL);
    };
    if old.checked_add(ol).is_none_or(|e| e > mem.size()) {
        return err(libc::EFAULT);
    }
    if nl > mem.size() {
        return err(libc::ENOMEM);
    }
    // Linux moves one mapping (VMA): the old range must be mapped with uniform permissions.
    let first = mem.page_perms(old) & !PERM_CODE;
    if first & PERM_MAPPED == 0
        || (old..old + ol)
            .step_by(PAGE_SIZE as usize)
            .any(|pg| mem.page_perms(pg) & !PERM_CODE != first)
    {
        return err(libc::EFAULT);
    }
    match mem.remap(old, ol, nl, flags & MREMAP_MAYMOVE != 0) {
        Ok(a) => {
            // The moved or resized range no longer follows its file (a simplification: Linux
            // keeps the file behind a moved private mapping).
            forget_file_maps(c.process, old, old + ol);
            forget_file_maps(c.process, a, a + nl);
            Ok(a)
        }
        // The old range is not (entirely) mapped.
        Err(MapError::Invalid) => err(libc::EFAULT),
        Err(e) => Err(e.into()),
    }
}

const MADV_DONTNEED: u64 = 4;
const MADV_DONTNEED_LOCKED: u64 = 24;

/// `madvise(addr, length, advice)`, as qemu-riscv64 answers it: a misaligned address, or a
/// range that wraps or leaves the address space, is `EINVAL`; everything else succeeds.
/// `MADV_DONTNEED` zeroes the mapped pages of the range (keeping their permissions), as for
/// private anonymous memory, and file-backed pages (the program's segments, file `mmap`s)
/// show their file's bytes again, as on Linux; other advice does nothing.
pub(super) fn madvise(c: &mut Call<'_>) -> SysResult {
    let (addr, len, advice) = (c.args[0], c.args[1], c.args[2] as u32 as u64);
    let mem = &c.process.mem;
    let Some(end) = page_round_up(len).and_then(|l| addr.checked_add(l)) else {
        return err(libc::EINVAL);
    };
    if addr & PAGE_MASK != 0 || end > mem.size() {
        return err(libc::EINVAL);
    }
    if advice != MADV_DONTNEED && advice != MADV_DONTNEED_LOCKED {
        return Ok(0);
    }
    mem.discard(addr, end - addr)?;
    refill_file_maps(c.process, addr, end)?;
    Ok(0)
}

/// `riscv_flush_icache(start, end, flags)`: drops every translated block (a `fence.i` for
/// the whole space). The flags are ignored, as by qemu-riscv64.
pub(super) fn riscv_flush_icache(c: &mut Call<'_>) -> SysResult {
    c.process.mem.invalidate_all_code();
    Ok(0)
}
