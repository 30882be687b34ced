//! File operations beyond open/read/write: `renameat2`, `linkat`, `symlinkat`, `fchmodat`,
//! `fchmod`, `fchownat`, `fchown`, `utimensat`, `truncate`, `statfs`, `fstatfs`,
//! `sendfile` and `fadvise64`.
//!
//! Every path goes through [`super::path`]'s resolution with the intent to change (so both
//! ends of a rename or a hard link must be inside a grant: nothing in the read-only root or
//! outside the grants can be moved, linked to or changed), and the host call acts on the
//! resolved path, so the errors are the host kernel's, which are Linux's. Calls on a
//! descriptor that change the file (`fchmod`, `fchown`, `futimens`) check that the file lies
//! inside a grant too.

use super::fs::{target, Target};
use super::path::{check_fd_writable, read_path, resolve, resolve_mut, AT_SYMLINK_NOFOLLOW};
use super::{err, Call, Errno, SysResult, MAX_RW_COUNT};
use crate::memory::PERM_WRITE;
use crate::process::Process;

const AT_SYMLINK_FOLLOW: u64 = 0x400;
const AT_EMPTY_PATH: u64 = 0x1000;

fn check(rc: libc::c_int) -> SysResult {
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc as u64)
    }
}

/// `renameat2(olddirfd, oldpath, newdirfd, newpath, flags)`.
pub(super) fn renameat2(c: &mut Call<'_>) -> SysResult {
    let flags = c.args[4] as u32;
    let old = read_path(c.process, c.args[1])?;
    let new = read_path(c.process, c.args[3])?;
    let from = resolve_mut(c.process, c.int(0), &old, false, false)?;
    let to = resolve_mut(c.process, c.int(2), &new, false, true)?;
    let (from, to) = (from.cstr()?, to.cstr()?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    check(rc as libc::c_int)
}

/// `linkat(olddirfd, oldpath, newdirfd, newpath, flags)`: the existing file must be inside a
/// grant too (a hard link to a root file would make it writable).
pub(super) fn linkat(c: &mut Call<'_>) -> SysResult {
    let flags = c.args[4] as u32 as u64;
    if flags & !(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH) != 0 {
        return err(libc::EINVAL);
    }
    let old = read_path(c.process, c.args[1])?;
    let new = read_path(c.process, c.args[3])?;
    if old.is_empty() && flags & AT_EMPTY_PATH != 0 {
        return err(libc::ENOENT); // linking an open descriptor needs CAP_DAC_READ_SEARCH
    }
    let from = resolve_mut(c.process, c.int(0), &old, flags & AT_SYMLINK_FOLLOW != 0, false)?;
    let to = resolve_mut(c.process, c.int(2), &new, false, true)?;
    let (from, to) = (from.cstr()?, to.cstr()?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    check(unsafe { libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), 0) })
}

/// `symlinkat(target, newdirfd, linkpath)`: the link's text is stored as given; following it
/// later goes through the sandbox's resolution like any path.
pub(super) fn symlinkat(c: &mut Call<'_>) -> SysResult {
    let text = read_path(c.process, c.args[0])?;
    if text.is_empty() {
        return err(libc::ENOENT);
    }
    let link = read_path(c.process, c.args[2])?;
    let to = resolve_mut(c.process, c.int(1), &link, false, true)?;
    let text = std::ffi::CString::new(text).map_err(|_| Errno(libc::EINVAL))?;
    let to = to.cstr()?;
    // SAFETY: both strings are NUL-terminated and outlive the call.
    check(unsafe { libc::symlink(text.as_ptr(), to.as_ptr()) })
}

/// `fchmodat(dirfd, path, mode)`.
pub(super) fn fchmodat(c: &mut Call<'_>) -> SysResult {
    let raw = read_path(c.process, c.args[1])?;
    let r = resolve_mut(c.process, c.int(0), &raw, true, false)?.cstr()?;
    // SAFETY: `r` is NUL-terminated and outlives the call.
    check(unsafe { libc::chmod(r.as_ptr(), (c.args[2] as u32 & 0o7777) as libc::mode_t) })
}

/// The host descriptor behind guest `fd` that a metadata change may act on.
fn changeable_fd(p: &Process, fd: i64) -> Result<i32, Errno> {
    match target(p, fd)? {
        Target::Host(h) => {
            check_fd_writable(p, h)?;
            Ok(h)
        }
        // A pipe's metadata: nothing the guest can observe changes.
        _ => Err(Errno(libc::EPERM)),
    }
}

/// `fchmod(fd, mode)`.
pub(super) fn fchmod(c: &mut Call<'_>) -> SysResult {
    let h = changeable_fd(c.process, c.fd(0))?;
    // SAFETY: fchmod takes no pointers.
    check(unsafe { libc::fchmod(h, (c.args[1] as u32 & 0o7777) as libc::mode_t) })
}

/// `fchownat(dirfd, path, owner, group, flags)`.
pub(super) fn fchownat(c: &mut Call<'_>) -> SysResult {
    let flags = c.args[4] as u32 as u64;
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return err(libc::EINVAL);
    }
    let (uid, gid) = (c.args[2] as u32, c.args[3] as u32);
    let raw = read_path(c.process, c.args[1])?;
    if raw.is_empty() && flags & AT_EMPTY_PATH != 0 {
        let h = changeable_fd(c.process, c.int(0) as i64)?;
        // SAFETY: fchown takes no pointers.
        return check(unsafe { libc::fchown(h, uid, gid) });
    }
    let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
    let r = resolve_mut(c.process, c.int(0), &raw, follow, false)?.cstr()?;
    // SAFETY: `r` is NUL-terminated and outlives the call.
    check(unsafe {
        if follow {
            libc::chown(r.as_ptr(), uid, gid)
        } else {
            libc::lchown(r.as_ptr(), uid, gid)
        }
    })
}

/// `fchown(fd, owner, group)`.
pub(super) fn fchown(c: &mut Call<'_>) -> SysResult {
    let h = changeable_fd(c.process, c.fd(0))?;
    // SAFETY: fchown takes no pointers.
    check(unsafe { libc::fchown(h, c.args[1] as u32, c.args[2] as u32) })
}

/// `utimensat(dirfd, path, times, flags)`; a NULL path acts on `dirfd` itself (`futimens`).
pub(super) fn utimensat(c: &mut Call<'_>) -> SysResult {
    let (path_addr, times_addr, flags) = (c.args[1], c.args[2], c.args[3] as u32 as u64);
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return err(libc::EINVAL);
    }
    let mut times = [libc::timespec { tv_sec: 0, tv_nsec: 0 }; 2];
    let tp = if times_addr == 0 {
        std::ptr::null()
    } else {
        let b = super::read_array::<32>(&c.process.mem, times_addr)?;
        for (i, t) in times.iter_mut().enumerate() {
            t.tv_sec = i64::from_le_bytes(super::le8(&b[i * 16..i * 16 + 8]));
            t.tv_nsec = i64::from_le_bytes(super::le8(&b[i * 16 + 8..i * 16 + 16]));
        }
        times.as_ptr()
    };
    if path_addr == 0 {
        let h = changeable_fd(c.process, c.fd(0))?;
        // SAFETY: `tp` is null or points to two live timespecs; the path is null (futimens).
        return check(unsafe { libc::futimens(h, tp) });
    }
    let raw = read_path(c.process, path_addr)?;
    let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
    let r = resolve_mut(c.process, c.int(0), &raw, follow, false)?.cstr()?;
    let host_flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: `r` is NUL-terminated; `tp` is null or points to two live timespecs.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, r.as_ptr(), tp, host_flags) })
}

/// `truncate(path, length)`.
pub(super) fn truncate(c: &mut Call<'_>) -> SysResult {
    let raw = read_path(c.process, c.args[0])?;
    let r = resolve_mut(c.process, libc::AT_FDCWD, &raw, true, false)?.cstr()?;
    // SAFETY: `r` is NUL-terminated and outlives the call.
    check(unsafe { libc::truncate(r.as_ptr(), c.args[1] as i64) })
}

/// Size of the guest's `struct statfs` (asm-generic 64-bit: 7 longs, `f_fsid`, 3 longs, 4
/// spare longs), the same layout as x86-64's and AArch64's.
const STATFS_SIZE: usize = 120;
const _: () = assert!(std::mem::size_of::<libc::statfs>() == STATFS_SIZE);

fn put_statfs(c: &Call<'_>, st: &libc::statfs) -> SysResult {
    // SAFETY: `statfs` is a plain C structure of STATFS_SIZE bytes (checked above).
    let bytes = unsafe {
        std::slice::from_raw_parts((st as *const libc::statfs).cast::<u8>(), STATFS_SIZE)
    };
    c.process.mem.write_bytes(c.args[1], bytes)?;
    Ok(0)
}

/// `statfs(path, buf)`.
pub(super) fn statfs(c: &mut Call<'_>) -> SysResult {
    let raw = read_path(c.process, c.args[0])?;
    let r = resolve(c.process, libc::AT_FDCWD, &raw, true, false)?.cstr()?;
    // SAFETY: all-zero is a valid `statfs`.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is NUL-terminated; `st` is writable storage for one `struct statfs`.
    check(unsafe { libc::statfs(r.as_ptr(), &mut st) })?;
    put_statfs(c, &st)
}

/// `fstatfs(fd, buf)`.
pub(super) fn fstatfs(c: &mut Call<'_>) -> SysResult {
    let h = match target(c.process, c.fd(0))? {
        Target::Host(h) => h,
        // Capture buffers and in-memory input stand for pipes: pipefs.
        _ => {
            // SAFETY: all-zero is a valid `statfs`.
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            st.f_type = 0x5049_5045; // PIPEFS_MAGIC
            st.f_bsize = 4096;
            st.f_namelen = 255;
            st.f_frsize = 4096;
            return put_statfs(c, &st);
        }
    };
    // SAFETY: all-zero is a valid `statfs`.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is writable storage for one `struct statfs`.
    check(unsafe { libc::fstatfs(h, &mut st) })?;
    put_statfs(c, &st)
}

/// `sendfile(out_fd, in_fd, offset, count)`: host to host descriptors go through the host's
/// `sendfile`; otherwise the bytes are read from `in_fd` and written to `out_fd` here.
pub(super) fn sendfile(c: &mut Call<'_>) -> SysResult {
    let (out_fd, in_fd, off_addr) = (c.fd(0), c.fd(1), c.args[2]);
    let count = c.args[3].min(MAX_RW_COUNT);
    let out_t = target(c.process, out_fd)?;
    let in_h = match target(c.process, in_fd)? {
        Target::Host(h) => h,
        Target::Null => return Ok(0),
        _ => return err(libc::EINVAL),
    };
    let mut off = if off_addr == 0 {
        None
    } else {
        let o = super::read_u64(&c.process.mem, off_addr)? as i64;
        if o < 0 {
            return err(libc::EINVAL);
        }
        if super::accessible_prefix(&c.process.mem, off_addr, 8, PERM_WRITE) < 8 {
            return err(libc::EFAULT);
        }
        Some(o)
    };
    let n = match out_t {
        Target::Host(out_h) => {
            let offp = off.as_mut().map_or(std::ptr::null_mut(), |o| o as *mut i64);
            // SAFETY: `offp` is null or points to a live i64; no other pointers.
            let r = unsafe { libc::sendfile(out_h, in_h, offp, count as usize) };
            if r < 0 {
                return Err(Errno::last());
            }
            r as u64
        }
        Target::Bytes => return err(libc::EBADF),
        other => {
            let mut buf = vec![0u8; count.min(1 << 20) as usize];
            let r = match off {
                // SAFETY: `buf` is a live, exclusively borrowed buffer of its length.
                Some(o) => unsafe { libc::pread(in_h, buf.as_mut_ptr().cast(), buf.len(), o) },
                // SAFETY: as above.
                None => unsafe { libc::read(in_h, buf.as_mut_ptr().cast(), buf.len()) },
            };
            if r < 0 {
                return Err(Errno::last());
            }
            let r = r as usize;
            if let Target::Capture(b) = other {
                b.append(&buf[..r]);
            }
            if let Some(o) = off.as_mut() {
                *o += r as i64;
            }
            r as u64
        }
    };
    if let Some(o) = off {
        c.process.mem.write_bytes(off_addr, &o.to_le_bytes())?;
    }
    Ok(n)
}

/// `fadvise64(fd, offset, len, advice)`: checked like Linux, forwarded for host files.
pub(super) fn fadvise64(c: &mut Call<'_>) -> SysResult {
    let advice = c.int(3);
    let t = target(c.process, c.fd(0))?;
    if !(0..=5).contains(&advice) {
        return err(libc::EINVAL);
    }
    match t {
        Target::Host(h) => {
            // SAFETY: posix_fadvise takes no pointers.
            let r = unsafe { libc::posix_fadvise(h, c.args[1] as i64, c.args[2] as i64, advice) };
            if r != 0 {
                return err(r);
            }
            Ok(0)
        }
        Target::Null | Target::FdDir => Ok(0),
        Target::Capture(_) | Target::Bytes => err(libc::ESPIPE),
    }
}
