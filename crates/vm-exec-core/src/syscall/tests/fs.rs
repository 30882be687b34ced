//! Files: `openat` confined to the allowed directories, `readlink` of `/proc/self/exe`,
//! `fstat` layouts, `getcwd`.

use super::*;

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

/// The names `getdents64` wrote into `len` bytes at `buf`.
fn dirent_names(g: &Guest, buf: u64, len: usize) -> Vec<String> {
    let bytes = g.get(buf, len);
    let mut names = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let reclen = u16::from_le_bytes([bytes[at + 16], bytes[at + 17]]) as usize;
        assert!(reclen >= 24 && reclen % 8 == 0, "record length {reclen}");
        let name = &bytes[at + 19..at + reclen];
        let end = name.iter().position(|&b| b == 0).unwrap();
        names.push(String::from_utf8(name[..end].to_vec()).unwrap());
        at += reclen;
    }
    names
}

#[test]
fn proc_self_fd_lists_the_open_descriptors_as_they_are_when_read() {
    let mut g = guest();
    let (path, buf) = (SCRATCH, SCRATCH + 0x1000);
    g.put_str(path, b"/proc/self/fd");
    let dir = g.sys(56, &[AT_FDCWD, path, O_RDONLY | O_DIRECTORY, 0]);
    assert!(dir >= 3, "open /proc/self/fd: {dir}");
    let n = g.sys(61, &[dir as u64, buf, 4096]);
    assert!(n > 0);
    let want: Vec<String> =
        [".", "..", "0", "1", "2"].iter().map(|s| s.to_string()).chain([dir.to_string()]).collect();
    assert_eq!(dirent_names(&g, buf, n as usize), want, "the listing shows its own descriptor");
    assert_eq!(g.sys(61, &[dir as u64, buf, 4096]), 0, "then end of directory");
    // A descriptor opened and one closed before the directory is read again from its start.
    assert_eq!(g.sys(57, &[2]), 0);
    let again = g.sys(24, &[0, 9, 0]);
    assert_eq!(again, 9, "dup3 to 9");
    assert_eq!(g.sys(62, &[dir as u64, 0, 0]), 0, "rewind");
    let n = g.sys(61, &[dir as u64, buf, 4096]);
    let names = dirent_names(&g, buf, n as usize);
    assert_eq!(names, [".", "..", "0", "1", &dir.to_string(), "9"]);
    // A buffer too small for one record, then records one at a time.
    assert_eq!(g.sys(62, &[dir as u64, 0, 0]), 0);
    assert_eq!(g.sys(61, &[dir as u64, buf, 10]), e(libc::EINVAL));
    assert_eq!(g.sys(61, &[dir as u64, buf, 24]), 24);
    assert_eq!(dirent_names(&g, buf, 24), ["."]);
    assert_eq!(g.sys(61, &[dir as u64, buf, 24]), 24);
    assert_eq!(dirent_names(&g, buf, 24), [".."]);
    // Reading, writing and opening it for writing are refused as for a directory.
    assert_eq!(g.sys(63, &[dir as u64, buf, 10]), e(libc::EISDIR));
    assert_eq!(g.sys(64, &[dir as u64, buf, 10]), e(libc::EBADF));
    assert_eq!(g.sys(56, &[AT_FDCWD, path, 2, 0]), e(libc::EISDIR));
    // Entries open relative to it.
    g.put_str(path, b"1");
    let one = g.sys(56, &[dir as u64, path, 1, 0]);
    assert!(one > 0, "openat(dir, \"1\"): {one}");
    // The directory's and its entries' status.
    let st = SCRATCH + 0x3000;
    assert_eq!(g.sys(80, &[dir as u64, st]), 0);
    assert_eq!(g.u32_at(st + 16) & libc::S_IFMT, libc::S_IFDIR);
    for (p, follow, kind) in [
        (&b"/proc/self/fd/1"[..], false, libc::S_IFLNK),
        (b"/proc/self/fd/1", true, libc::S_IFIFO),
        (b"/proc/self/cmdline", true, libc::S_IFREG),
        (b"/dev/fd", true, libc::S_IFDIR),
        (b"/dev/fd", false, libc::S_IFLNK),
    ] {
        g.put_str(path, p);
        let flags = if follow { 0 } else { 0x100 }; // AT_SYMLINK_NOFOLLOW
        assert_eq!(g.sys(79, &[AT_FDCWD, path, st, flags]), 0, "{}", String::from_utf8_lossy(p));
        assert_eq!(g.u32_at(st + 16) & libc::S_IFMT, kind, "{}", String::from_utf8_lossy(p));
    }
    g.put_str(path, b"/proc/self/fd/77");
    assert_eq!(g.sys(79, &[AT_FDCWD, path, st, 0]), e(libc::ENOENT));
    // access(2): readable, not writable.
    g.put_str(path, b"/proc/self/status");
    assert_eq!(g.sys(48, &[AT_FDCWD, path, 4, 0]), 0);
}
