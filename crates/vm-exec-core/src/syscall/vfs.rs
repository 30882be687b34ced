//! The virtual `/dev` and `/proc` a guest sees, whatever the host or the guest root holds.
//!
//! - `/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`, `/dev/urandom` and `/dev/tty` are
//!   the host's character devices of the same names, opened by vmx itself (no other host
//!   path under `/dev` is reachable); `/dev/tty` is the controlling terminal, so it opens only
//!   when vmx has one (else `ENXIO`, as on Linux).
//! - `/dev/stdin`, `/dev/stdout`, `/dev/stderr`, `/dev/fd/N` and `/proc/self/fd/N` open a
//!   duplicate of the guest's descriptor (Linux reopens the file; for pipes and terminals,
//!   the streams these names are used for, the two agree); as links they read as Linux's.
//! - `/proc/self/fd` is a directory that lists the guest's open descriptors (read from the
//!   table at each `getdents64`, so a listing shows the descriptor it is read through).
//! - Every virtual path has a status (`stat`, `lstat`, `access`): generated files are
//!   read-only regular files of size 0 and the descriptor links are links, as in Linux's
//!   proc; following a link gives the status of what it names.
//! - `/proc/self/exe` is the program file; `/proc/self/cwd` and `/proc/self/root` are links
//!   that read as the guest's working directory and `/`, and lead nowhere else.
//! - `/proc/self/{cmdline,environ,maps,status,stat,auxv}`, `/proc/cpuinfo` (a RISC-V one),
//!   `/proc/meminfo`, `/proc/filesystems` (the host kernel's list, as under qemu),
//!   `/proc/sys/kernel/osrelease` and `/proc/version` are generated when
//!   opened, into a host memory file (so `fstat`, `lseek`, `pread` and `mmap` work on them).
//! - `/proc/<own pid>` and `/proc/thread-self` stand for `/proc/self`.
//!
//! Every other path under `/dev` or `/proc` does not exist (`ENOENT`).
//! Invariant: nothing here returns a host path other than the six device nodes above and
//! the program file.

use super::{Errno, SysResult};
use crate::memory::{PERM_EXEC, PERM_MAPPED, PERM_READ, PERM_WRITE};
use crate::process::Process;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What a virtual path stands for.
#[derive(Debug)]
pub(super) enum Special {
    /// A host file vmx opens on the guest's behalf (a device node, the program file).
    Host(PathBuf),
    /// A duplicate of this guest descriptor when opened; this link text when read as a link.
    Fd(i64, Vec<u8>),
    /// A symbolic link that reads as this text and cannot be followed.
    Link(Vec<u8>),
    /// Generated contents.
    Content(Vec<u8>),
    /// The directory `/proc/self/fd`, listed from the descriptor table.
    FdDir,
}

const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// The plain components of an absolute guest path, or `None` if it has `.` or `..`
/// components (those are resolved physically by the caller) or is not absolute.
fn parts(path: &Path) -> Option<Vec<&[u8]>> {
    let mut it = path.components();
    if it.next() != Some(Component::RootDir) {
        return None;
    }
    it.map(|c| match c {
        Component::Normal(n) => Some(n.as_bytes()),
        _ => None,
    })
    .collect()
}

/// Whether the absolute guest path `path` lies in the virtual `/dev` or `/proc`.
pub(super) fn is_virtual(path: &Path) -> bool {
    let mut it = path.components();
    it.next() == Some(Component::RootDir)
        && matches!(it.next(), Some(Component::Normal(n)) if n == "dev" || n == "proc")
}

/// What the absolute guest path `path` stands for, `Err(ENOENT)` for a missing virtual path.
/// Only called for paths [`is_virtual`] accepts.
pub(super) fn lookup(p: &Process, path: &Path) -> Result<Special, Errno> {
    let enoent = Errno(libc::ENOENT);
    let parts = parts(path).ok_or(enoent)?;
    match parts.as_slice() {
        [b"dev", dev] if DEVICES.iter().any(|d| d.as_bytes() == *dev) => {
            Ok(Special::Host(Path::new("/dev").join(OsStr::from_bytes(dev))))
        }
        [b"dev", b"stdin"] => Ok(Special::Fd(0, b"/proc/self/fd/0".to_vec())),
        [b"dev", b"stdout"] => Ok(Special::Fd(1, b"/proc/self/fd/1".to_vec())),
        [b"dev", b"stderr"] => Ok(Special::Fd(2, b"/proc/self/fd/2".to_vec())),
        [b"dev", b"fd"] => Ok(Special::Link(b"/proc/self/fd".to_vec())),
        [b"dev", b"fd", n] => fd_entry(p, n),
        [b"proc", rest @ ..] => {
            let (who, rest) = match rest {
                [who, rest @ ..] => (*who, rest),
                [] => return Err(enoent),
            };
            let own = p.pid.to_string();
            if who == b"self" || who == b"thread-self" || who == own.as_bytes() {
                proc_self(p, rest)
            } else {
                proc_global(p, who, rest)
            }
        }
        _ => Err(enoent),
    }
}

fn fd_entry(p: &Process, n: &[u8]) -> Result<Special, Errno> {
    let fd: i64 = std::str::from_utf8(n)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()) && (s.len() == 1 || !s.starts_with('0')))
        .and_then(|s| s.parse().ok())
        .ok_or(Errno(libc::ENOENT))?;
    if p.files().get(fd).is_none() {
        return Err(Errno(libc::ENOENT));
    }
    Ok(Special::Fd(fd, super::path::fd_link_text(p, fd)))
}

fn proc_self(p: &Process, rest: &[&[u8]]) -> Result<Special, Errno> {
    let cfg = &p.config;
    Ok(match rest {
        [b"exe"] => {
            if cfg.exe_path.as_os_str().is_empty() {
                return Err(Errno(libc::ENOENT));
            }
            Special::Host(cfg.exe_path.clone())
        }
        [b"cwd"] => Special::Link(super::path::cwd(p).into_os_string().into_encoded_bytes()),
        [b"root"] => Special::Link(b"/".to_vec()),
        [b"fd"] => Special::FdDir,
        [b"fd", n] => fd_entry(p, n)?,
        [b"cmdline"] => {
            Special::Content(cfg.args.iter().flat_map(|a| a.iter().chain(&[0])).copied().collect())
        }
        [b"environ"] => {
            Special::Content(cfg.env.iter().flat_map(|a| a.iter().chain(&[0])).copied().collect())
        }
        [b"maps"] => Special::Content(maps(p)),
        [b"auxv"] => Special::Content(p.abi().auxv.clone()),
        [b"status"] => Special::Content(status(p)),
        [b"stat"] => Special::Content(stat(p)),
        [b"comm"] => {
            let comm = super::state::peek(p, |s| s.comm);
            let n = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
            let mut v = comm[..n].to_vec();
            v.push(b'\n');
            Special::Content(v)
        }
        _ => return Err(Errno(libc::ENOENT)),
    })
}

fn proc_global(p: &Process, who: &[u8], rest: &[&[u8]]) -> Result<Special, Errno> {
    Ok(match (who, rest) {
        (b"cpuinfo", []) => Special::Content(cpuinfo()),
        // The host kernel's list, as qemu shows it (libselinux reads it on every start).
        (b"filesystems", []) => {
            Special::Content(std::fs::read("/proc/filesystems").unwrap_or_default())
        }
        (b"meminfo", []) => Special::Content(meminfo(p)),
        (b"version", []) => Special::Content(
            format!("Linux version {} (vmx) #1 SMP\n", host_release()).into_bytes(),
        ),
        (b"sys", [b"kernel", b"osrelease"]) => {
            Special::Content(format!("{}\n", host_release()).into_bytes())
        }
        _ => return Err(Errno(libc::ENOENT)),
    })
}

/// The host kernel's release, which `uname` also reports to the guest (as qemu does).
fn host_release() -> String {
    let mut u = std::mem::MaybeUninit::<libc::utsname>::zeroed();
    // SAFETY: `u` is writable storage for one `struct utsname`.
    if unsafe { libc::uname(u.as_mut_ptr()) } < 0 {
        return "6.1.0".into();
    }
    // SAFETY: uname succeeded, so `u` is initialised.
    let u = unsafe { u.assume_init() };
    let bytes: Vec<u8> = u.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn cpuinfo() -> Vec<u8> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "processor\t: {i}\nhart\t\t: {i}\nisa\t\t: rv64imafdc_zicsr_zifencei\nmmu\t\t: sv39\n\
             mvendorid\t: 0x0\nmarchid\t\t: 0x0\nmimpid\t\t: 0x0\n\n"
        ));
    }
    s.into_bytes()
}

fn meminfo(p: &Process) -> Vec<u8> {
    let total_kb = p.mem.size() / 1024;
    let mapped: u64 = mapped_ranges(p).iter().map(|r| r.1 - r.0).sum();
    let free_kb = total_kb.saturating_sub(mapped / 1024);
    format!(
        "MemTotal:       {total_kb:>8} kB\nMemFree:        {free_kb:>8} kB\n\
         MemAvailable:   {free_kb:>8} kB\nBuffers:               0 kB\nCached:                0 kB\n\
         SwapTotal:             0 kB\nSwapFree:              0 kB\n"
    )
    .into_bytes()
}

/// Runs of mapped pages with equal permissions: `(start, end, perms)`.
fn mapped_ranges(p: &Process) -> Vec<(u64, u64, u8)> {
    let mem = &p.mem;
    let page = crate::memory::PAGE_SIZE;
    let mut out: Vec<(u64, u64, u8)> = Vec::new();
    let mut a = 0;
    while a < mem.size() {
        let perms = mem.page_perms(a) & (PERM_MAPPED | PERM_READ | PERM_WRITE | PERM_EXEC);
        if perms & PERM_MAPPED != 0 {
            match out.last_mut() {
                Some(last) if last.1 == a && last.2 == perms => last.1 = a + page,
                _ => out.push((a, a + page, perms)),
            }
        }
        a += page;
    }
    out
}

fn maps(p: &Process) -> Vec<u8> {
    let brk = p.mem.brk();
    let mut s = String::new();
    let sp_guess = p.mem.size() - 16 * crate::memory::PAGE_SIZE - 1;
    for (start, end, perms) in mapped_ranges(p) {
        let flag = |bit, ch| if perms & bit != 0 { ch } else { '-' };
        let name = if (start..end).contains(&sp_guess) {
            "[stack]"
        } else if end == crate::memory::page_round_up(brk).unwrap_or(brk) && start < brk {
            "[heap]"
        } else {
            ""
        };
        s.push_str(&format!(
            "{start:08x}-{end:08x} {}{}{}p 00000000 00:00 0 {}{name}\n",
            flag(PERM_READ, 'r'),
            flag(PERM_WRITE, 'w'),
            flag(PERM_EXEC, 'x'),
            if name.is_empty() { "" } else { "                          " },
        ));
    }
    s.into_bytes()
}

fn comm(p: &Process) -> String {
    let comm = super::state::peek(p, |s| s.comm);
    let n = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..n]).into_owned()
}

fn status(p: &Process) -> Vec<u8> {
    // SAFETY: getuid and friends have no preconditions and cannot fail.
    let (uid, euid, gid, egid) =
        unsafe { (libc::getuid(), libc::geteuid(), libc::getgid(), libc::getegid()) };
    let umask = super::state::peek(p, |s| s.umask);
    format!(
        "Name:\t{}\nUmask:\t{umask:04o}\nState:\tR (running)\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\n\
         PPid:\t{ppid}\nTracerPid:\t0\nUid:\t{uid}\t{euid}\t{euid}\t{euid}\n\
         Gid:\t{gid}\t{egid}\t{egid}\t{egid}\nFDSize:\t64\nGroups:\t\nVmSize:\t{vm} kB\n\
         Threads:\t1\nSigQ:\t0/0\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n\
         Cpus_allowed_list:\t0-{cpus}\n",
        comm(p),
        pid = p.pid,
        // SAFETY: getppid has no preconditions.
        ppid = unsafe { libc::getppid() },
        vm = mapped_ranges(p).iter().map(|r| r.1 - r.0).sum::<u64>() / 1024,
        cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1,
    )
    .into_bytes()
}

fn stat(p: &Process) -> Vec<u8> {
    // pid (comm) state ppid pgrp session tty_nr tpgid flags ... (52 fields).
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    let mut f = vec!["0".to_string(); 49];
    f[0] = "R".into();
    f[1] = ppid.to_string();
    f[2] = p.pid.to_string();
    f[3] = p.pid.to_string();
    f[16] = "1".into(); // num_threads
    format!("{} ({}) {}\n", p.pid, comm(p), f.join(" ")).into_bytes()
}

/// A host memory file holding `bytes`, positioned at its start; returned as an owned raw
/// descriptor for the guest's table.
pub(super) fn content_fd(bytes: &[u8]) -> SysResult {
    // SAFETY: a NUL-terminated name and valid flags; the result is a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(c"vmx-proc".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Errno::last());
    }
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: the pointer and length describe the unwritten tail of `bytes`.
        let n = unsafe { libc::write(fd, bytes[done..].as_ptr().cast(), bytes.len() - done) };
        if n <= 0 {
            let e = Errno::last();
            // SAFETY: `fd` is ours and closed once.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        done += n as usize;
    }
    // SAFETY: lseek on a descriptor we own.
    unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };
    Ok(fd as u64)
}
