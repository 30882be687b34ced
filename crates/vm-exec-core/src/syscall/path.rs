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
use super::vfs::{self, Special};
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
        Target::FdDir => Ok(PathBuf::from("/proc/self/fd")),
        _ => err(libc::ENOTDIR),
    }
}

/// The guest's working directory (a guest path).
pub(super) fn cwd(p: &Process) -> PathBuf {
    super::state::peek(p, |s| s.cwd.clone())
}

/// The guest path of host path `host`: inside the root it is the part below the root, else
/// the host path itself.
pub(super) fn guest_of_host(p: &Process, host: &Path) -> PathBuf {
    if let Some(root) = &p.config.root {
        if let Ok(rest) = host.strip_prefix(root) {
            return Path::new("/").join(rest);
        }
    }
    host.to_path_buf()
}

/// What `/proc/self/fd/N` reads as for guest descriptor `fd`.
pub(super) fn fd_link_text(p: &Process, fd: i64) -> Vec<u8> {
    if let Some(e) = super::fs::pipe_end(p, fd).filter(|e| !e.is_host()) {
        return format!("pipe:[{}]", e.id()).into_bytes();
    }
    match target(p, fd) {
        Ok(Target::Host(h)) => match std::fs::read_link(format!("/proc/self/fd/{h}")) {
            Ok(t) if t.is_absolute() => guest_of_host(p, &t).into_os_string().into_vec(),
            Ok(t) => t.into_os_string().into_vec(),
            Err(_) => b"anon_inode:[unknown]".to_vec(),
        },
        Ok(Target::Null) => b"/dev/null".to_vec(),
        _ => format!("pipe:[{}]", 4026531840u64 + fd as u64).into_bytes(),
    }
}

/// Whether host path `path` may be read (`write` false) or changed (`write` true): below a
/// granted directory, or, for reading, inside the root.
fn allowed(p: &Process, path: &Path, write: bool) -> bool {
    p.config.allowed_dirs.iter().any(|d| path.starts_with(d))
        || (!write && p.config.root.as_ref().is_some_and(|r| path.starts_with(r)))
}

fn refuse(path: &Path) -> Errno {
    if first_time("path-refused") {
        tracing::warn!(path = %path.display(), "guest file access outside the allowed directories refused (EACCES)");
    } else {
        tracing::debug!(path = %path.display(), "guest file access refused");
    }
    Errno(libc::EACCES)
}

/// The errno for a change to host path `host` that is not granted: `EROFS` inside the
/// (read-only) root, `EACCES` elsewhere.
fn deny(p: &Process, host: &Path, full: &Path) -> Errno {
    if allowed(p, host, false) {
        Errno(libc::EROFS)
    } else {
        refuse(full)
    }
}

/// Checks that the guest may change the host file behind descriptor `h` (`fchmod`,
/// `fchown`, `futimens`): it must be below a grant (`EROFS` inside the root).
pub(super) fn check_fd_writable(p: &Process, h: i32) -> Result<(), Errno> {
    match std::fs::read_link(format!("/proc/self/fd/{h}")) {
        Ok(path) if path.is_absolute() && !allowed(p, &path, true) => {
            if path.starts_with("/dev") || !path.exists() {
                Ok(()) // device nodes, pipes, memory files, deleted files: nothing to protect
            } else {
                Err(deny(p, &path, &path))
            }
        }
        _ => Ok(()),
    }
}

/// The errno for a path that could not be canonicalized: `EACCES` if its deepest existing
/// ancestor is outside the sandbox, else the host's error.
fn judge_missing(p: &Process, full: &Path, e: std::io::Error, write: bool) -> Errno {
    for a in full.ancestors().skip(1) {
        if let Ok(c) = std::fs::canonicalize(a) {
            return if allowed(p, &c, write) { Errno::from(e) } else { refuse(full) };
        }
    }
    refuse(full)
}

/// Resolves absolute guest path `guest` inside `root` as under a chroot: every component
/// must exist (the last one too, unless it is a link not to be followed), `..` stops at the
/// root, and symbolic links are followed inside the root (absolute ones from the root).
/// Returns the host path (below `root`), or `None` when the path does not exist there.
pub fn resolve_in_root(root: &Path, guest: &[u8], follow_last: bool) -> Option<PathBuf> {
    let mut pending: std::collections::VecDeque<Vec<u8>> =
        guest.split(|&b| b == b'/').filter(|c| !c.is_empty()).map(<[u8]>::to_vec).collect();
    let mut done: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    let host_of = |done: &[Vec<u8>]| {
        let mut h = root.to_path_buf();
        for c in done {
            h.push(OsStr::from_bytes(c));
        }
        h
    };
    while let Some(c) = pending.pop_front() {
        if c == b"." {
            continue;
        }
        if c == b".." {
            done.pop();
            continue;
        }
        let mut here = host_of(&done);
        here.push(OsStr::from_bytes(&c));
        let meta = std::fs::symlink_metadata(&here).ok()?;
        let last = pending.is_empty();
        if meta.file_type().is_symlink() && (!last || follow_last) {
            links += 1;
            if links > 40 {
                return None;
            }
            let target = std::fs::read_link(&here).ok()?.into_os_string().into_vec();
            if target.first() == Some(&b'/') {
                done.clear();
            }
            for t in target.split(|&b| b == b'/').filter(|c| !c.is_empty()).rev() {
                pending.push_front(t.to_vec());
            }
            continue;
        }
        if !last && !meta.is_dir() {
            return None;
        }
        done.push(c);
    }
    Some(host_of(&done))
}

/// The absolute guest path `raw` names relative to `dirfd` (lexically joined; `..` and
/// links are resolved later).
fn guest_full(p: &Process, dirfd: i32, raw: &[u8]) -> Result<PathBuf, Errno> {
    let rel = Path::new(OsStr::from_bytes(raw));
    Ok(if raw.first() == Some(&b'/') {
        rel.to_path_buf()
    } else if dirfd == AT_FDCWD {
        cwd(p).join(rel)
    } else {
        guest_of_host(p, &dir_of_fd(p, dirfd)?).join(rel)
    })
}

/// Resolves guest path `raw` relative to `dirfd` for reading. `follow`: resolve a final
/// symbolic link; `create`: a missing final component is fine (its parent must exist).
pub(super) fn resolve(
    p: &Process,
    dirfd: i32,
    raw: &[u8],
    follow: bool,
    create: bool,
) -> Result<Resolved, Errno> {
    resolve_as(p, dirfd, raw, follow, create, false)
}

/// Like [`resolve`], for a call that changes what it names (write, create, remove, rename,
/// chmod, ...): inside the root that needs a grant too.
pub(super) fn resolve_mut(
    p: &Process,
    dirfd: i32,
    raw: &[u8],
    follow: bool,
    create: bool,
) -> Result<Resolved, Errno> {
    resolve_as(p, dirfd, raw, follow, create, true)
}

fn resolve_as(
    p: &Process,
    dirfd: i32,
    raw: &[u8],
    follow: bool,
    create: bool,
    write: bool,
) -> Result<Resolved, Errno> {
    if raw.is_empty() {
        return err(libc::ENOENT);
    }
    let full = guest_full(p, dirfd, raw)?;
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
    if vfs::is_virtual(&full) {
        return match vfs::lookup(p, &full)? {
            Special::Host(path) => Ok(Resolved { path, exists: true }),
            _ => err(libc::ENOENT),
        };
    }
    let last = match full.components().next_back() {
        Some(Component::Normal(n)) => Some(n.to_os_string()),
        _ => None,
    };
    let parent = full.parent().unwrap_or(Path::new("/"));
    if let Some(root) = &p.config.root {
        let bytes = full.as_os_str().as_bytes();
        if let Some(host) = resolve_in_root(root, bytes, follow) {
            if !allowed(p, &host, write) {
                return Err(deny(p, &host, &full));
            }
            return Ok(Resolved { path: with_slash(host), exists: true });
        }
        if let (true, Some(name)) = (create, &last) {
            let dir = resolve_in_root(root, parent.as_os_str().as_bytes(), true);
            if let Some(dir) = dir.filter(|d| d.is_dir()) {
                let path = dir.join(name);
                if !allowed(p, &path, true) {
                    return Err(deny(p, &path, &full));
                }
                if std::fs::symlink_metadata(&path).is_ok() {
                    // A dangling link whose target is not checked.
                    return Err(refuse(&full));
                }
                return Ok(Resolved { path: with_slash(path), exists: false });
            }
        }
    }
    match (&last, follow) {
        (Some(name), false) => match std::fs::canonicalize(parent) {
            Ok(cp) => {
                let path = cp.join(name);
                if !allowed(p, &path, write) {
                    return Err(deny(p, &path, &full));
                }
                let exists = std::fs::symlink_metadata(&path).is_ok();
                Ok(Resolved { path, exists })
            }
            Err(e) => Err(judge_missing(p, &full, e, write)),
        },
        _ => match std::fs::canonicalize(&full) {
            Ok(c) => {
                if allowed(p, &c, write) {
                    Ok(Resolved { path: with_slash(c), exists: true })
                } else {
                    Err(deny(p, &c, &full))
                }
            }
            Err(e) if create && e.kind() == std::io::ErrorKind::NotFound && last.is_some() => {
                let name = last.as_deref().unwrap_or_default();
                match std::fs::canonicalize(parent) {
                    Ok(cp) => {
                        let path = cp.join(name);
                        if !allowed(p, &path, true) {
                            return Err(deny(p, &path, &full));
                        }
                        if std::fs::symlink_metadata(&path).is_ok() {
                            // A dangling symbolic link: where it points is not checked, so
                            // creating through it is refused.
                            return Err(refuse(&full));
                        }
                        Ok(Resolved { path: with_slash(path), exists: false })
                    }
                    Err(e) => Err(judge_missing(p, &full, e, write)),
                }
            }
            Err(e) => Err(judge_missing(p, &full, e, write)),
        },
    }
}

/// The virtual object `raw` names relative to `dirfd`, if it is one of `/dev`'s or
/// `/proc`'s (`Some(Err(ENOENT))` for a missing one there).
pub(super) fn special(p: &Process, dirfd: i32, raw: &[u8]) -> Option<Result<Special, Errno>> {
    if raw.is_empty() {
        return None;
    }
    let full = match guest_full(p, dirfd, raw) {
        Ok(f) => f,
        Err(e) => return Some(Err(e)),
    };
    vfs::is_virtual(&full).then(|| vfs::lookup(p, &full))
}

/// True if `raw` (which resolved to the host file `path`) names the program file through
/// `/proc/.../exe` rather than a device node.
fn is_proc_exe(path: &Path, raw: &[u8]) -> bool {
    !path.starts_with("/dev") && raw.ends_with(b"/exe")
}

/// A new guest descriptor for `fd` (opening `/dev/stdout`, `/proc/self/fd/N`, ...).
fn dup_for_open(p: &Process, fd: i64, cloexec: bool) -> SysResult {
    let kind = match target(p, fd)? {
        Target::Host(h) => {
            // SAFETY: F_DUPFD_CLOEXEC on a descriptor the table holds; the result is new.
            let n = unsafe { libc::fcntl(h, libc::F_DUPFD_CLOEXEC, 0) };
            if n < 0 {
                return Err(Errno::last());
            }
            FileKind::Host { fd: n, owned: true }
        }
        Target::Capture(b) => FileKind::Capture(b),
        Target::Null => FileKind::Null,
        Target::FdDir => FileKind::FdDir { pos: 0 },
        Target::Bytes => match p.files().get(fd).map(|d| &d.kind) {
            Some(FileKind::Bytes { data, pos }) => {
                FileKind::Bytes { data: data.clone(), pos: *pos }
            }
            _ => return err(libc::EBADF),
        },
    };
    let desc = FileDesc { kind, cloexec };
    p.files().insert_from(0, desc).map(|n| n as u64).ok_or(Errno(libc::EMFILE))
}

/// True if `raw` names the guest's own executable through `/proc`.
pub(super) fn names_own_exe(p: &Process, raw: &[u8]) -> bool {
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
    let write = create || tmpfile || flags & oflag::O_TRUNC != 0 || flags & oflag::O_ACCMODE != 0;
    let cloexec = flags & oflag::O_CLOEXEC != 0;
    match special(c.process, dirfd, &raw) {
        Some(Ok(Special::Fd(fd, _))) => return dup_for_open(c.process, fd, cloexec),
        Some(Ok(Special::Content(bytes))) => {
            if write {
                return err(libc::EACCES);
            }
            let h = vfs::content_fd(&bytes)? as i32;
            let desc = FileDesc { kind: FileKind::Host { fd: h, owned: true }, cloexec };
            return c
                .process
                .files()
                .insert_from(0, desc)
                .map(|n| n as u64)
                .ok_or(Errno(libc::EMFILE));
        }
        Some(Ok(Special::FdDir)) => return open_fd_dir(c, flags),
        Some(Ok(Special::Link(text))) => {
            if !follow {
                return err(libc::ELOOP);
            }
            // The links lead to `/proc/self/fd`, `/` or the working directory: open that
            // (none of them is a virtual link itself, so this goes one level deep).
            return open_link_target(c, &text, flags, mode);
        }
        Some(Err(e)) => return Err(e),
        Some(Ok(Special::Host(_))) | None => {}
    }
    open_path(c, dirfd, &raw, flags, mode)
}

/// Opens the guest path a virtual link reads as, with the flags of the `openat` that
/// followed it.
fn open_link_target(c: &mut Call<'_>, text: &[u8], flags: u64, mode: u32) -> SysResult {
    if let Some(Ok(Special::FdDir)) = special(c.process, AT_FDCWD, text) {
        return open_fd_dir(c, flags);
    }
    open_path(c, AT_FDCWD, text, flags, mode)
}

/// A new descriptor for the virtual directory `/proc/self/fd`.
fn open_fd_dir(c: &mut Call<'_>, flags: u64) -> SysResult {
    let write = flags & (oflag::O_CREAT | oflag::O_TRUNC | oflag::O_ACCMODE) != 0;
    if write {
        return err(libc::EISDIR);
    }
    let desc =
        FileDesc { kind: FileKind::FdDir { pos: 0 }, cloexec: flags & oflag::O_CLOEXEC != 0 };
    c.process.files().insert_from(0, desc).map(|n| n as u64).ok_or(Errno(libc::EMFILE))
}

/// The host part of `openat`: resolves `raw` inside the sandbox and opens it on the host.
fn open_path(c: &mut Call<'_>, dirfd: i32, raw: &[u8], flags: u64, mode: u32) -> SysResult {
    let tmpfile = flags & oflag::O_TMPFILE_BIT != 0;
    let create = flags & oflag::O_CREAT != 0;
    let follow = flags & oflag::O_NOFOLLOW == 0;
    let write = create || tmpfile || flags & oflag::O_TRUNC != 0 || flags & oflag::O_ACCMODE != 0;
    let umask = super::state::peek(c.process, |s| s.umask);
    let mut attempts = 0;
    let h = loop {
        let r = resolve_as(c.process, dirfd, raw, follow || tmpfile, create && !tmpfile, write)?;
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
    let target_bytes = if let Some(sp) = special(c.process, dirfd, &raw) {
        match sp? {
            Special::Fd(_, text) | Special::Link(text) => text,
            Special::Host(path) if is_proc_exe(&path, &raw) => {
                guest_of_host(c.process, &path).into_os_string().into_vec()
            }
            _ => return err(libc::EINVAL),
        }
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
        let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
        if let Some(st) = super::stat::stat_virtual(c.process, dirfd, &raw, follow) {
            // A virtual entry, judged by its owner bits (the guest's user owns them), with
            // root's override for reading and writing, as Linux judges proc's files.
            let (st, wanted) = (st?, mode & 7);
            // SAFETY: getuid has no preconditions.
            let root = unsafe { libc::getuid() } == 0;
            let owner = (st.mode >> 6) & 7;
            let denied = if root {
                wanted & 1 & !(st.mode | st.mode >> 3 | st.mode >> 6)
            } else {
                wanted & !owner
            };
            return if denied != 0 { err(libc::EACCES) } else { Ok(0) };
        }
        resolve(c.process, dirfd, &raw, follow, false)?
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
    let r = resolve_mut(c.process, dirfd, &raw, false, true)?;
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
    let r = resolve_mut(c.process, dirfd, &raw, false, false)?;
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

/// `getcwd(buf, size)`: the guest's working directory (a guest path: inside the root it is
/// the path below the root). Returns the length including the NUL.
pub(super) fn getcwd(c: &mut Call<'_>) -> SysResult {
    let (buf, size) = (c.args[0], c.args[1]);
    let mut bytes = cwd(c.process).into_os_string().into_vec();
    bytes.push(0);
    if (bytes.len() as u64) > size {
        return err(libc::ERANGE);
    }
    c.process.mem.write_bytes(buf, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Makes host directory `host` the working directory, after Linux's checks (a directory the
/// caller may search).
fn set_cwd(p: &Process, host: &Path) -> SysResult {
    let meta = std::fs::metadata(host).map_err(Errno::from)?;
    if !meta.is_dir() {
        return err(libc::ENOTDIR);
    }
    let cpath = CString::new(host.as_os_str().as_bytes()).map_err(|_| Errno(libc::EINVAL))?;
    // SAFETY: `cpath` is a NUL-terminated string that outlives the call.
    if unsafe { libc::access(cpath.as_ptr(), libc::X_OK) } < 0 {
        return Err(Errno::last());
    }
    let guest = guest_of_host(p, host);
    super::state::with(p, |s| s.cwd = guest);
    Ok(0)
}

/// `chdir(path)`.
pub(super) fn chdir(c: &mut Call<'_>) -> SysResult {
    let raw = read_path(c.process, c.args[0])?;
    let r = resolve(c.process, AT_FDCWD, &raw, true, false)?;
    let mut bytes = r.path.into_os_string().into_vec();
    while bytes.len() > 1 && bytes.ends_with(b"/") {
        bytes.pop();
    }
    set_cwd(c.process, Path::new(OsStr::from_bytes(&bytes)))
}

/// `fchdir(fd)`.
pub(super) fn fchdir(c: &mut Call<'_>) -> SysResult {
    let dir = dir_of_fd(c.process, c.int(0))?;
    set_cwd(c.process, &dir)
}
