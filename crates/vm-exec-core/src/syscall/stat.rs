//! `fstat`, `newfstatat` and `statx`, in the guest's layouts.
//!
//! riscv64 uses the asm-generic 128-byte `struct stat` (offsets checked with a program built
//! by `riscv64-linux-gnu-gcc`): `st_dev` 0, `st_ino` 8, `st_mode` 16 (u32), `st_nlink` 20
//! (u32), `st_uid` 24, `st_gid` 28, `st_rdev` 32, padding 40, `st_size` 48, `st_blksize` 56
//! (i32), padding 60, `st_blocks` 64, then `st_atime`, `st_atime_nsec`, `st_mtime`,
//! `st_mtime_nsec`, `st_ctime`, `st_ctime_nsec` at 72..120 and 8 unused bytes. Device numbers
//! use the kernel's `new_encode_dev` on the host and the guest alike, so they pass unchanged.
//! `struct statx` is the same on every architecture.
//!
//! Descriptors that are not host files report what a qemu guest would see for the stream it
//! stands for: capture buffers and in-memory input are pipes (`S_IFIFO | 0600`, block size
//! 4096, so glibc buffers stdout fully, as for a pipe), `Null` is the host's `/dev/null`.

use super::fs::{target, Target};
use super::path::{
    read_path, resolve, special, AT_EMPTY_PATH, AT_FDCWD, AT_NO_AUTOMOUNT, AT_SYMLINK_NOFOLLOW,
};
use super::vfs::Special;
use super::{err, Call, Errno, Out, SysResult};
use crate::process::Process;

/// A file's status, in the guest's terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct GuestStat {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: i64,
    pub blksize: i32,
    pub blocks: i64,
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl GuestStat {
    fn from_host(st: &libc::stat) -> GuestStat {
        GuestStat {
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev,
            size: st.st_size,
            blksize: st.st_blksize as i32,
            blocks: st.st_blocks,
            atime: (st.st_atime, st.st_atime_nsec),
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    /// A file that exists only in vmx: owned by the guest's user, every time now.
    fn synthetic(dev: u64, ino: u64, mode: u32, size: i64, blksize: i32) -> GuestStat {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| (d.as_secs() as i64, d.subsec_nanos() as i64))
            .unwrap_or((0, 0));
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        GuestStat {
            dev,
            ino,
            mode,
            nlink: if mode & libc::S_IFMT == libc::S_IFDIR { 2 } else { 1 },
            uid,
            gid,
            size,
            blksize,
            atime: now,
            mtime: now,
            ctime: now,
            ..Default::default()
        }
    }

    /// What a pipe looks like (for capture buffers and in-memory input).
    fn pipe(fd: i64) -> GuestStat {
        GuestStat::synthetic(0xe, 0x1000 + fd as u64, libc::S_IFIFO | 0o600, 0, 4096)
    }

    /// What an entry of the virtual `/proc` looks like: owned by the guest's user, times of
    /// now, on the proc file system's device, `ino` an arbitrary but stable number.
    fn proc_entry(mode: u32, size: i64, ino: u64) -> GuestStat {
        GuestStat::synthetic(0x16, ino, mode, size, 1024)
    }

    /// What `/dev/null` looks like: the host's, or a faithful stand-in.
    fn dev_null() -> GuestStat {
        host_stat_path(c"/dev/null", 0).unwrap_or(GuestStat {
            dev: 6,
            ino: 4,
            mode: libc::S_IFCHR | 0o666,
            nlink: 1,
            rdev: 0x103,
            blksize: 4096,
            ..Default::default()
        })
    }

    /// The guest's 128-byte `struct stat`.
    pub fn to_guest(self) -> [u8; 128] {
        let mut o = Out::<128>::new();
        o.u64(0, self.dev);
        o.u64(8, self.ino);
        o.u32(16, self.mode);
        o.u32(20, self.nlink);
        o.u32(24, self.uid);
        o.u32(28, self.gid);
        o.u64(32, self.rdev);
        o.u64(48, self.size as u64);
        o.u32(56, self.blksize as u32);
        o.u64(64, self.blocks as u64);
        o.u64(72, self.atime.0 as u64);
        o.u64(80, self.atime.1 as u64);
        o.u64(88, self.mtime.0 as u64);
        o.u64(96, self.mtime.1 as u64);
        o.u64(104, self.ctime.0 as u64);
        o.u64(112, self.ctime.1 as u64);
        o.0
    }

    /// A 256-byte `struct statx` with the basic fields.
    fn to_statx(self) -> [u8; 256] {
        let mut o = Out::<256>::new();
        o.u32(0, 0x7ff); // STATX_BASIC_STATS
        o.u32(4, self.blksize as u32);
        o.u32(16, self.nlink);
        o.u32(20, self.uid);
        o.u32(24, self.gid);
        o.u16(28, self.mode as u16);
        o.u64(32, self.ino);
        o.u64(40, self.size as u64);
        o.u64(48, self.blocks as u64);
        for (off, t) in [(64, self.atime), (96, self.ctime), (112, self.mtime)] {
            o.u64(off, t.0 as u64);
            o.u32(off + 8, t.1 as u32);
        }
        let (rmaj, rmin) = split_dev(self.rdev);
        let (dmaj, dmin) = split_dev(self.dev);
        o.u32(128, rmaj);
        o.u32(132, rmin);
        o.u32(136, dmaj);
        o.u32(140, dmin);
        o.0
    }
}

/// glibc's `major`/`minor` of a `new_encode_dev` device number.
fn split_dev(d: u64) -> (u32, u32) {
    let major = ((d >> 8) & 0xfff) | ((d >> 32) & !0xfff);
    let minor = (d & 0xff) | ((d >> 12) & !0xff);
    (major as u32, minor as u32)
}

fn host_fstat(h: i32) -> Result<GuestStat, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `st` is writable storage for one `struct stat`.
    if unsafe { libc::fstat(h, st.as_mut_ptr()) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: fstat succeeded and filled the structure (which was zeroed, and every field is
    // a plain integer, so any bit pattern is valid anyway).
    Ok(GuestStat::from_host(unsafe { &st.assume_init() }))
}

fn host_stat_path(path: &std::ffi::CStr, flags: i32) -> Result<GuestStat, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `path` is NUL-terminated and `st` is writable storage for one `struct stat`.
    if unsafe { libc::fstatat(libc::AT_FDCWD, path.as_ptr(), st.as_mut_ptr(), flags) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: as in `host_fstat`.
    Ok(GuestStat::from_host(unsafe { &st.assume_init() }))
}

/// The status of guest descriptor `fd`.
pub(super) fn stat_fd(p: &Process, fd: i64) -> Result<GuestStat, Errno> {
    if let Some(e) = super::fs::pipe_end(p, fd).filter(|e| !e.is_host()) {
        // An in-memory pipe: pipefs's device, the pipe's number as the inode.
        return Ok(GuestStat::synthetic(0xe, e.id(), libc::S_IFIFO | 0o600, 0, 4096));
    }
    match target(p, fd)? {
        Target::Host(h) => host_fstat(h),
        Target::Capture(_) | Target::Bytes => Ok(GuestStat::pipe(fd)),
        Target::Null => Ok(GuestStat::dev_null()),
        Target::FdDir => Ok(GuestStat::proc_entry(libc::S_IFDIR | 0o500, 0, 0x2000)),
    }
}

/// The status of a virtual path that is not a host file (`None` for those), following its
/// link when `follow`.
fn stat_special(p: &Process, sp: &Special, follow: bool) -> Option<Result<GuestStat, Errno>> {
    Some(match sp {
        Special::Host(_) => return None,
        Special::Fd(fd, _) if follow => stat_fd(p, *fd),
        // As Linux: read and search bits for a readable descriptor, write and search bits
        // for a writable one, a size of 64.
        Special::Fd(fd, _) => {
            let t = match target(p, *fd) {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            };
            let access = match t {
                // SAFETY: F_GETFL takes no pointer.
                Target::Host(h) => (unsafe { libc::fcntl(h, libc::F_GETFL) }) & libc::O_ACCMODE,
                Target::Capture(_) => libc::O_WRONLY,
                Target::Null => libc::O_RDWR,
                Target::Bytes | Target::FdDir => libc::O_RDONLY,
            };
            let mut mode = libc::S_IFLNK;
            if access != libc::O_WRONLY {
                mode |= 0o500;
            }
            if access != libc::O_RDONLY {
                mode |= 0o300;
            }
            Ok(GuestStat::proc_entry(mode, 64, 0x1000 + *fd as u64))
        }
        Special::Link(text) if follow => match special(p, AT_FDCWD, text) {
            Some(Ok(inner)) => match stat_special(p, &inner, false) {
                Some(r) => r,
                None => stat_path(p, text, true),
            },
            Some(Err(e)) => Err(e),
            None => stat_path(p, text, true),
        },
        Special::Link(_) => Ok(GuestStat::proc_entry(libc::S_IFLNK | 0o777, 0, 0x3000)),
        Special::Content(_) => Ok(GuestStat::proc_entry(libc::S_IFREG | 0o444, 0, 0x4000)),
        Special::FdDir => Ok(GuestStat::proc_entry(libc::S_IFDIR | 0o500, 0, 0x2000)),
    })
}

/// The status of the guest path `raw` (relative to the working directory).
fn stat_path(p: &Process, raw: &[u8], follow: bool) -> Result<GuestStat, Errno> {
    let r = resolve(p, AT_FDCWD, raw, follow, false)?;
    host_stat_path(&r.cstr()?, if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW })
}

/// The status of `raw` relative to `dirfd` when it names a virtual entry that is not a host
/// file.
pub(super) fn stat_virtual(
    p: &Process,
    dirfd: i32,
    raw: &[u8],
    follow: bool,
) -> Option<Result<GuestStat, Errno>> {
    match special(p, dirfd, raw)? {
        Ok(sp) => stat_special(p, &sp, follow),
        Err(e) => Some(Err(e)),
    }
}

/// `fstat(fd, statbuf)`.
pub(super) fn fstat(c: &mut Call<'_>) -> SysResult {
    let st = stat_fd(c.process, c.fd(0))?;
    c.process.mem.write_bytes(c.args[1], &st.to_guest())?;
    Ok(0)
}

/// `newfstatat(dirfd, path, statbuf, flags)` (glibc's `fstat` is
/// `newfstatat(fd, "", buf, AT_EMPTY_PATH)`).
pub(super) fn newfstatat(c: &mut Call<'_>) -> SysResult {
    let (dirfd, buf, flags) = (c.int(0), c.args[2], c.args[3] as u32 as u64);
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH) != 0 {
        return err(libc::EINVAL);
    }
    let raw = read_path(c.process, c.args[1])?;
    let st = if raw.is_empty() && flags & AT_EMPTY_PATH != 0 && dirfd != AT_FDCWD {
        stat_fd(c.process, dirfd as i64)?
    } else {
        let raw: &[u8] = if raw.is_empty() && flags & AT_EMPTY_PATH != 0 { b"." } else { &raw };
        let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
        if let Some(st) = stat_virtual(c.process, dirfd, raw, follow) {
            c.process.mem.write_bytes(buf, &st?.to_guest())?;
            return Ok(0);
        }
        let r = resolve(c.process, dirfd, raw, follow, false)?;
        let nofollow = if flags & AT_SYMLINK_NOFOLLOW != 0 { libc::AT_SYMLINK_NOFOLLOW } else { 0 };
        host_stat_path(&r.cstr()?, nofollow)?
    };
    c.process.mem.write_bytes(buf, &st.to_guest())?;
    Ok(0)
}

/// `statx(dirfd, path, flags, mask, statxbuf)`.
pub(super) fn statx(c: &mut Call<'_>) -> SysResult {
    let (dirfd, flags, mask, buf) =
        (c.int(0), c.args[2] as u32 as u64, c.args[3] as u32, c.args[4]);
    const SYNC_TYPE: u64 = 0x6000;
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | SYNC_TYPE) != 0
        || flags & SYNC_TYPE == SYNC_TYPE
        || mask & 0x8000_0000 != 0
    {
        return err(libc::EINVAL);
    }
    let raw = read_path(c.process, c.args[1])?;
    let mut out = [0u8; 256];
    let host_flags = (flags & !AT_EMPTY_PATH) as i32;
    let host =
        |fd: i32, path: &std::ffi::CStr, fl: i32, out: &mut [u8; 256]| -> Result<(), Errno> {
            // SAFETY: `path` is NUL-terminated; `out` is 256 writable bytes, the size of the
            // kernel's `struct statx`, which the kernel fills.
            let r = unsafe {
                libc::syscall(libc::SYS_statx, fd, path.as_ptr(), fl, mask, out.as_mut_ptr())
            };
            if r < 0 {
                return Err(Errno::last());
            }
            Ok(())
        };
    if raw.is_empty() && flags & AT_EMPTY_PATH != 0 && dirfd != AT_FDCWD {
        match target(c.process, dirfd as i64)? {
            Target::Host(h) => host(h, c"", host_flags | libc::AT_EMPTY_PATH, &mut out)?,
            _ => out = stat_fd(c.process, dirfd as i64)?.to_statx(),
        }
    } else {
        let raw: &[u8] = if raw.is_empty() && flags & AT_EMPTY_PATH != 0 { b"." } else { &raw };
        let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
        if let Some(st) = stat_virtual(c.process, dirfd, raw, follow) {
            out = st?.to_statx();
        } else {
            let r = resolve(c.process, dirfd, raw, follow, false)?;
            host(libc::AT_FDCWD, &r.cstr()?, host_flags, &mut out)?;
        }
    }
    c.process.mem.write_bytes(buf, &out)?;
    Ok(0)
}
