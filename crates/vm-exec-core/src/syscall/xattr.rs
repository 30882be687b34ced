//! Reading extended attributes: `getxattr`, `lgetxattr`, `fgetxattr`, `listxattr`,
//! `llistxattr` and `flistxattr` (`ls -l` asks for ACLs and SELinux labels on every file).
//!
//! Paths resolve like every read of the sandbox ([`resolve`]); the host call then runs on the
//! resolved host path (or the host descriptor), so the guest sees the host file's attributes,
//! as under qemu. Descriptors that are not host files (captured streams, in-memory input,
//! `/dev/null`) have none: `EOPNOTSUPP`, as pipes on Linux.
//!
//! Invariants: at most `XATTR_SIZE_MAX` (64 KiB) bytes are read from the host per call, what
//! the kernel itself allows; a size of 0 asks for the needed size only (nothing is written).
//! Setting and removing attributes are not implemented (`ENOSYS`).

use super::fs::{target, Target};
use super::path::{read_path, resolve};
use super::{err, read_cstr, Call, Errno, SysResult};
use std::ffi::CString;

/// The kernel's limit on one attribute value or one list (`XATTR_SIZE_MAX`, `XATTR_LIST_MAX`).
const SIZE_MAX: u64 = 65536;
/// The kernel's limit on an attribute's name (`XATTR_NAME_MAX`).
const NAME_MAX: usize = 255;

/// Where a call reads attributes from.
enum On {
    Path(CString, bool),
    Fd(i32),
}

fn on_path(c: &Call<'_>, follow: bool) -> Result<On, Errno> {
    let raw = read_path(c.process, c.args[0])?;
    let r = resolve(c.process, libc::AT_FDCWD, &raw, follow, false)?;
    Ok(On::Path(r.cstr()?, follow))
}

fn on_fd(c: &Call<'_>) -> Result<On, Errno> {
    match target(c.process, c.args[0] as i64)? {
        Target::Host(h) => Ok(On::Fd(h)),
        _ => err(libc::EOPNOTSUPP),
    }
}

/// Runs `host(buffer, len)` with a host buffer of the guest's `size` (capped at the kernel's
/// limit; none for 0) and copies the result to the guest's `buf`.
fn into_guest(
    c: &mut Call<'_>,
    buf: u64,
    size: u64,
    host: impl Fn(*mut libc::c_void, usize) -> isize,
) -> SysResult {
    let mut out = vec![0u8; size.min(SIZE_MAX) as usize];
    let ptr = if out.is_empty() { std::ptr::null_mut() } else { out.as_mut_ptr().cast() };
    let n = host(ptr, out.len());
    if n < 0 {
        return Err(Errno::last());
    }
    let n = n as usize;
    if !out.is_empty() {
        c.process.mem.write_bytes(buf, &out[..n.min(out.len())])?;
    }
    Ok(n as u64)
}

fn get(c: &mut Call<'_>, on: On) -> SysResult {
    let name = read_cstr(&c.process.mem, c.args[1], NAME_MAX + 1)?;
    if name.is_empty() || name.len() > NAME_MAX {
        return err(libc::ERANGE);
    }
    let name = CString::new(name).map_err(|_| Errno(libc::EINVAL))?;
    let (buf, size) = (c.args[2], c.args[3]);
    into_guest(c, buf, size, |ptr, len| match &on {
        // SAFETY: `path` and `name` are NUL-terminated; `ptr` is null with `len` 0 or
        // `len` writable bytes.
        On::Path(path, true) => unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), ptr, len) },
        // SAFETY: as above.
        On::Path(path, false) => unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), ptr, len) },
        // SAFETY: as above; `h` is a descriptor vmx owns.
        On::Fd(h) => unsafe { libc::fgetxattr(*h, name.as_ptr(), ptr, len) },
    })
}

fn list(c: &mut Call<'_>, on: On) -> SysResult {
    let (buf, size) = (c.args[1], c.args[2]);
    into_guest(c, buf, size, |ptr, len| {
        let ptr = ptr.cast::<libc::c_char>();
        match &on {
            // SAFETY: `path` is NUL-terminated; `ptr` is null with `len` 0 or `len`
            // writable bytes.
            On::Path(path, true) => unsafe { libc::listxattr(path.as_ptr(), ptr, len) },
            // SAFETY: as above.
            On::Path(path, false) => unsafe { libc::llistxattr(path.as_ptr(), ptr, len) },
            // SAFETY: as above; `h` is a descriptor vmx owns.
            On::Fd(h) => unsafe { libc::flistxattr(*h, ptr, len) },
        }
    })
}

/// `getxattr(path, name, value, size)`.
pub(super) fn getxattr(c: &mut Call<'_>) -> SysResult {
    let on = on_path(c, true)?;
    get(c, on)
}

/// `lgetxattr(path, name, value, size)`: of a symbolic link itself.
pub(super) fn lgetxattr(c: &mut Call<'_>) -> SysResult {
    let on = on_path(c, false)?;
    get(c, on)
}

/// `fgetxattr(fd, name, value, size)`.
pub(super) fn fgetxattr(c: &mut Call<'_>) -> SysResult {
    let on = on_fd(c)?;
    get(c, on)
}

/// `listxattr(path, list, size)`.
pub(super) fn listxattr(c: &mut Call<'_>) -> SysResult {
    let on = on_path(c, true)?;
    list(c, on)
}

/// `llistxattr(path, list, size)`.
pub(super) fn llistxattr(c: &mut Call<'_>) -> SysResult {
    let on = on_path(c, false)?;
    list(c, on)
}

/// `flistxattr(fd, list, size)`.
pub(super) fn flistxattr(c: &mut Call<'_>) -> SysResult {
    let on = on_fd(c)?;
    list(c, on)
}
