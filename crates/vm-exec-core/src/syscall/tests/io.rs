//! Reads and writes on the standard streams, descriptors (`dup`, `fcntl`, `ioctl`, pipes,
//! `close_range`) and `ppoll` on in-memory streams.

use super::*;

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
    // A pipe (in memory).
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
fn in_memory_pipe_capacity_and_conversion_keep_linux_behaviour() {
    let mut g = guest();
    let fds = SCRATCH + 0x100;
    // O_NONBLOCK: 100-byte writes fill 16 pages of 40 writes each (Linux's merging).
    assert_eq!(g.sys(59, &[fds, 0o4000]), 0);
    let (r, w) = (g.u32_at(fds) as u64, g.u32_at(fds + 4) as u64);
    let mut total = 0;
    while g.sys(64, &[w, SCRATCH, 100]) == 100 {
        total += 100;
    }
    assert_eq!(total, 64000);
    assert_eq!(g.sys(64, &[w, SCRATCH, 200]), e(libc::EAGAIN), "full: 200 bytes fit no page");
    assert_eq!(g.sys(64, &[w, SCRATCH, 96]), 96, "96 still fit the last page");
    assert_eq!(g.sys(25, &[w, 1032]), 65536, "F_GETPIPE_SZ");
    // F_SETPIPE_SZ is served by a host pipe: the buffered bytes move into it.
    assert_eq!(g.sys(25, &[w, 1031, 1 << 17]), 1 << 17);
    assert_eq!(g.sys(25, &[r, 3]), 0o4000, "F_GETFL: O_RDONLY | O_NONBLOCK kept");
    let mut read = 0;
    loop {
        match g.sys(63, &[r, SCRATCH + 0x1000, 4096]) {
            n if n > 0 => read += n,
            n => {
                assert_eq!(n, e(libc::EAGAIN));
                break;
            }
        }
    }
    assert_eq!(read, 64096);
    assert_eq!(g.sys(57, &[w]), 0);
    assert_eq!(g.sys(63, &[r, SCRATCH + 0x1000, 4096]), 0, "end of file after the close");
    // A blocking pipe of a process without a scheduler: a write larger than the pipe with
    // no reader left ends with EPIPE and SIGPIPE.
    assert_eq!(g.sys(59, &[fds, 0]), 0);
    let (r, w) = (g.u32_at(fds) as u64, g.u32_at(fds + 4) as u64);
    assert_eq!(g.sys(57, &[r]), 0);
    assert_eq!(g.call(64, &[w, SCRATCH, 10]), (e(libc::EPIPE), g.signal(13)));
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
