//! Paths: resolving a guest path to a host path inside the sandbox, and the path-based calls
//! (`openat`, `readlinkat`, `faccessat`, `faccessat2`, `mkdirat`, `unlinkat`, `getcwd`).
//!
//! Sandbox rule: a guest path is resolved against the host's current directory (or a
//! directory descriptor the guest opened), canonicalized on the host (so `..` and every
//! symbolic link are resolved), and admitted only if the result lies below one of
//! `ProcessConfig::allowed_dirs`. Anything else is `EACCES`, logged once with `tracing::warn!`.
//! A path that does not exist is judged by its deepest existing ancestor, so the guest cannot
//! probe for files outside the allowed directories through `ENOENT` versus `EACCES`.
//! When the final component is not to be followed (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`,
//! `readlink`, `unlink`), only its parent is canonicalized and the host call acts on the link
//! itself. A file that is created is opened with `O_EXCL` on the host, so a symbolic link
//! planted in place of a new name cannot redirect the creation outside the sandbox.
//!
//! `/proc/self/exe` (and `/proc/<own pid>/exe`, `/proc/thread-self/exe`) read as a link to
//! `ProcessConfig::exe_path`, like under qemu; nothing else under `/proc` is reachable unless
//! granted.

use super::fs::{oflag, oflags_to_host, target, Target};
use super::{err, first_time, Call, Errno, SysResult};
use crate::process::{FileDesc, FileKind, Process};
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// `AT_FDCWD`.
pub(super) const AT_FDCWD: i32 = -100;
/// `AT_SYMLINK_NOFOLLOW`.
pub(super) const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
/// `AT_REMOVEDIR` (and `AT_EACCESS` for `faccessat2`).
const AT_REMOVEDIR: u64 = 0x200;
/// `AT_EACCESS`.
const AT_EACCESS: u64 = 0x200;
/// `AT_NO_AUTOMOUNT`.
pub(super) const AT_NO_AUTOMOUNT: u64 = 0x800;
/// `AT_EMPTY_PATH`.
pub(super) const AT_EMPTY_PATH: u64 = 0x1000;
/// Longest path the kernel accepts, including the NUL.
const PATH_MAX: usize = 4096;

/// Reads a guest path (`EFAULT`, `ENAMETOOLONG`).
pub(super) fn read_path(p: &Process, addr: u64) -> Result<Vec<u8>, Errno> {
    let s = super::read_cstr(&p.mem, addr, PATH_MAX)?;
    if s.len() >= PATH_MAX {
        return err(libc::ENAMETOOLONG);
    }
    Ok(s)
}

/// A guest path resolved inside the sandbox.
#[derive(Debug)]
pub(super) struct Resolved {
    /// Host path to operate on: canonical, except possibly for an unfollowed final component.
    pub path: PathBuf,
    /// Whether something (possibly a dangling link) exists at `path`.
    pub exists: bool,
}

impl Resolved {
    /// The path as a C string for host calls.
    pub fn cstr(&self) -> Result<CString, Errno> {
        CString::new(self.path.as_os_str().as_bytes()).map_err(|_| Errno(libc::EINVAL))
    }
}

/// The host path of a directory descriptor the guest holds.
fn dir_of_fd(p: &Process, dirfd: i32) -> Result<PathBuf, Errno> {
    match target(p, dirfd as i64)? {
        Target::Host(h) => {
            let path =
                std::fs::read_link(format!("/proc/self/fd/{h}")).map_err(|_| Errno(libc::EBADF))?;
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => Ok(path),
                _ => err(libc::ENOTDIR),
            }
        }
        _ => err(libc::ENOTDIR),
    }
}

fn allowed(p: &Process, path: &Path) -> bool {
    p.config.allowed_dirs.iter().any(|d| path.starts_with(d))
}

fn refuse(path: &Path) -> Errno {
    if first_time("path-refused") {
        tracing::warn!(path = %path.display(), "guest file access outside the allowed directories refused (EACCES)");
    } else {
        tracing::debug!(path = %path.display(), "guest file access refused");
    }
    Errno(libc::EACCES)
}

/// The errno for a path that could not be canonicalized: `EACCES` if its deepest existing
/// ancestor is outside the sandbox, else the host's error.
fn judge_missing(p: &Process, full: &Path, e: std::io::Error) -> Errno {
    for a in full.ancestors().skip(1) {
        if let Ok(c) = std::fs::canonicalize(a) {
            return if allowed(p, &c) { Errno::from(e) } else { refuse(full) };
        }
    }
    refuse(full)
}

/// Resolves guest path `raw` relative to `dirfd`. `follow`: resolve a final symbolic link;
/// `create`: a missing final component is fine (its parent must exist).
pub(super) fn resolve(
    p: &Process,
    dirfd: i32,
    raw: &[u8],
    follow: bool,
    create: bool,
) -> Result<Resolved, Errno> {
    if raw.is_empty() {
        return err(libc::ENOENT);
    }
    let rel = Path::new(OsStr::from_bytes(raw));
    let full = if raw[0] == b'/' {
        rel.to_path_buf()
    } else if dirfd == AT_FDCWD {
        std::env::current_dir().map_err(Errno::from)?.join(rel)
    } else {
        dir_of_fd(p, dirfd)?.join(rel)
    };
    // A trailing slash forces the final component to be followed (and to be a directory).
    let trailing_slash = raw.ends_with(b"/");
    let follow = follow || trailing_slash;
    let with_slash = |p: PathBuf| {
        if trailing_slash {
            let mut s = p.into_os_string();
            s.push("/");
            PathBuf::from(s)
        } else {
            p
        }
    };
    let last = match full.components().next_back() {
        Some(Component::Normal(n)) => Some(n.to_os_string()),
        _ => None,
    };
    let parent = full.parent().unwrap_or(Path::new("/"));
    match (&last, follow) {
        (Some(name), false) => match std::fs::canonicalize(parent) {
            Ok(cp) => {
                let path = cp.join(name);
                if !allowed(p, &path) {
                    return Err(refuse(&full));
                }
                let exists = std::fs::symlink_metadata(&path).is_ok();
                Ok(Resolved { path, exists })
            }
            Err(e) => Err(judge_missing(p, &full, e)),
        },
        _ => match std::fs::canonicalize(&full) {
            Ok(c) => {
                if allowed(p, &c) {
                    Ok(Resolved { path: with_slash(c), exists: true })
                } else {
                    Err(refuse(&full))
                }
            }
            Err(e) if create && e.kind() == std::io::ErrorKind::NotFound && last.is_some() => {
                let name = last.as_deref().unwrap_or_default();
                match std::fs::canonicalize(parent) {
                    Ok(cp) => {
                        let path = cp.join(name);
                        if !allowed(p, &path) {
                            return Err(refuse(&full));
                        }
                        if std::fs::symlink_metadata(&path).is_ok() {
                            // A dangling symbolic link: where it points is not checked, so
                            // creating through it is refused.
                            return Err(refuse(&full));
                        }
                        Ok(Resolved { path: with_slash(path), exists: false })
                    }
                    Err(e) => Err(judge_missing(p, &full, e)),
                }
            }
            Err(e) => Err(judge_missing(p, &full, e)),
        },
    }
}

/// True if `raw` names the guest's own executable through `/proc`.
pub(super) fn is_proc_exe(p: &Process, raw: &[u8]) -> bool {
    let own = format!("/proc/{}/exe", p.pid);
    raw == b"/proc/self/exe" || raw == b"/proc/thread-self/exe" || raw == own.as_bytes()
}

/// `openat(dirfd, path, flags, mode)`.
pub(super) fn openat(c: &mut Call<'_>) -> SysResult {
    let (dirfd, flags, mode) = (c.int(0), c.args[2] as u32 as u64, c.args[3] as u32);
    let raw = read_path(c.process, c.args[1])?;
    let tmpfile = flags & oflag::O_TMPFILE_BIT != 0;
    let create = flags & oflag::O_CREAT != 0;
    let follow = flags & oflag::O_NOFOLLOW == 0;
    let umask = super::state::peek(c.process, |s| s.umask);
    let mut attempts = 0;
    let h = loop {
        let r = resolve(c.process, dirfd, &raw, follow || tmpfile, create && !tmpfile)?;
        let mut host_flags = oflags_to_host(flags) | libc::O_CLOEXEC;
        // A new file is created with O_EXCL, which never follows a symbolic link that might
        // have appeared in its place (and, unlike O_NOFOLLOW, does not show in F_GETFL).
        let fresh = create && !r.exists;
        if fresh {
            host_flags |= libc::O_EXCL;
        }
        let path = r.cstr()?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call; the mode is passed
        // as the variadic `mode_t` argument open expects.
        let h = unsafe {
            libc::open(path.as_ptr(), host_flags, (mode & 0o7777 & !umask) as libc::c_uint)
        };
        if h >= 0 {
            break h;
        }
        let e = Errno::last();
        attempts += 1;
        // Something appeared at the new name meanwhile: resolve again, unless the guest
        // itself asked for O_EXCL.
        if fresh && e.0 == libc::EEXIST && flags & oflag::O_EXCL == 0 && attempts < 3 {
            continue;
        }
        return Err(e);
    };
    let desc = FileDesc {
        kind: FileKind::Host { fd: h, owned: true },
        cloexec: flags & oflag::O_CLOEXEC != 0,
    };
    c.process.files().insert_from(0, desc).map(|n| n as u64).ok_or(Errno(libc::EMFILE))
}

/// `readlinkat(dirfd, path, buf, bufsiz)`.
pub(super) fn readlinkat(c: &mut Call<'_>) -> SysResult {
    let (dirfd, buf, size) = (c.int(0), c.args[2], c.int(3));
    let raw = read_path(c.process, c.args[1])?;
    if size <= 0 {
        return err(libc::EINVAL);
    }
    let target_bytes = if is_proc_exe(c.process, &raw) {
        let exe = c.process.config.exe_path.as_os_str().as_bytes().to_vec();
        if exe.is_empty() {
            return err(libc::ENOENT);
        }
        exe
    } else {
        let r = resolve(c.process, dirfd, &raw, false, false)?;
        std::fs::read_link(&r.path).map_err(Errno::from)?.into_os_string().into_vec()
    };
    let n = target_bytes.len().min(size as usize);
    c.process.mem.write_bytes(buf, &target_bytes[..n])?;
    Ok(n as u64)
}

/// `faccessat(dirfd, path, mode)`. Paths outside the sandbox are `EACCES`.
pub(super) fn faccessat(c: &mut Call<'_>) -> SysResult {
    access(c, 0)
}

/// `faccessat2(dirfd, path, mode, flags)`.
pub(super) fn faccessat2(c: &mut Call<'_>) -> SysResult {
    let flags = c.args[3] as u32 as u64;
    if flags & !(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return err(libc::EINVAL);
    }
    access(c, flags)
}

fn access(c: &mut Call<'_>, flags: u64) -> SysResult {
    let (dirfd, mode) = (c.int(0), c.args[2] as u32);
    if mode & !7 != 0 {
        return err(libc::EINVAL);
    }
    let raw = read_path(c.process, c.args[1])?;
    let r = if raw.is_empty() && flags & AT_EMPTY_PATH != 0 {
        if dirfd == AT_FDCWD {
            resolve(c.process, dirfd, b".", true, false)?
        } else {
            // Access to an open descriptor: it exists; judge it on the host.
            return match target(c.process, dirfd as i64)? {
                Target::Host(h) => host_access_fd(h, mode, flags),
                _ => Ok(0),
            };
        }
    } else {
        resolve(c.process, dirfd, &raw, flags & AT_SYMLINK_NOFOLLOW == 0, false)?
    };
    let path = r.cstr()?;
    let host_flags = if flags & AT_EACCESS != 0 { libc::AT_EACCESS } else { 0 }
        | if flags & AT_SYMLINK_NOFOLLOW != 0 { libc::AT_SYMLINK_NOFOLLOW } else { 0 };
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    if unsafe { libc::faccessat(libc::AT_FDCWD, path.as_ptr(), mode as i32, host_flags) } < 0 {
        return Err(Errno::last());
    }
    Ok(0)
}

fn host_access_fd(h: i32, mode: u32, flags: u64) -> SysResult {
    let host_flags =
        libc::AT_EMPTY_PATH | if flags & AT_EACCESS != 0 { libc::AT_EACCESS } else { 0 };
    // SAFETY: the path is a static empty C string; AT_EMPTY_PATH makes the call act on `h`.
    let r =
        unsafe { libc::syscall(libc::SYS_faccessat2, h, c"".as_ptr(), mode as i32, host_flags) };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(0)
}

/// `mkdirat(dirfd, path, mode)`.
pub(super) fn mkdirat(c: &mut Call<'_>) -> SysResult {
    let (dirfd, mode) = (c.int(0), c.args[2] as u32);
    let raw = read_path(c.process, c.args[1])?;
    let r = resolve(c.process, dirfd, &raw, false, true)?;
    let umask = super::state::peek(c.process, |s| s.umask);
    let path = r.cstr()?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    if unsafe { libc::mkdir(path.as_ptr(), (mode & 0o7777 & !umask) as libc::mode_t) } < 0 {
        return Err(Errno::last());
    }
    Ok(0)
}

/// `unlinkat(dirfd, path, flags)`.
pub(super) fn unlinkat(c: &mut Call<'_>) -> SysResult {
    let (dirfd, flags) = (c.int(0), c.args[2] as u32 as u64);
    if flags & !AT_REMOVEDIR != 0 {
        return err(libc::EINVAL);
    }
    let raw = read_path(c.process, c.args[1])?;
    let r = resolve(c.process, dirfd, &raw, false, false)?;
    let path = r.cstr()?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        if flags & AT_REMOVEDIR != 0 {
            libc::rmdir(path.as_ptr())
        } else {
            libc::unlink(path.as_ptr())
        }
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(0)
}

/// `getcwd(buf, size)`: the host's current directory, as qemu reports it. Returns the length
/// including the NUL.
pub(super) fn getcwd(c: &mut Call<'_>) -> SysResult {
    let (buf, size) = (c.args[0], c.args[1]);
    let cwd = std::env::current_dir().map_err(Errno::from)?;
    let mut bytes = cwd.into_os_string().into_vec();
    bytes.push(0);
    if (bytes.len() as u64) > size {
        return err(libc::ERANGE);
    }
    c.process.mem.write_bytes(buf, &bytes)?;
    Ok(bytes.len() as u64)
}
