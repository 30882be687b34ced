//! A GDB remote serial protocol stub for one guest process (`vmx run --gdb PORT|PATH`).
//!
//! `gdb-multiarch PROGRAM -ex 'target remote :PORT'` attaches; the guest is stopped before
//! its first instruction. Supported: the RV64GC target description (`qXfer:features:read`,
//! x0-x31, pc, f0-f31, fflags, frm, fcsr), `g`/`G`/`p`/`P`, `m`/`M`/`X`, software
//! breakpoints (`Z0`/`Z1`), write watchpoints (`Z2`), `vCont` with `c`/`s` (stepping one
//! thread), `c`/`s`, Ctrl-C, threads (`qfThreadInfo`, `qC`, `H`, `T`), `W`/`X` exit reports
//! (a fatal signal is reported as a stop first, `X` when resumed), `D` detach (the guest
//! runs on), `k`, `qSupported` with `PacketSize`, and `QStartNoAckMode`.
//!
//! Invariants:
//! - Nothing a client sends can panic the host: packets longer than [`MAX_PACKET`] are
//!   refused with `E16` and never buffered whole, malformed checksums get `-`, malformed
//!   commands `E01`, memory outside the guest's mapped pages `E14`, unknown commands the
//!   empty reply.
//! - If the connection drops, the guest runs on to its end with no breakpoints, as after a
//!   detach.
//! - Guest code runs only through [`target::Debuggee`]; see its invariants for how
//!   breakpoints and single steps work on every engine.

mod commands;
pub mod target;

pub use commands::target_xml;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;
use target::{Debuggee, Resume, Stop};
use vm_exec_core::exec::GuestExit;

/// The largest packet accepted (and advertised as `PacketSize`), in bytes.
pub const MAX_PACKET: usize = 0x4000;

/// Errors of the stub itself (not of the guest).
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// Listening or accepting failed.
    #[error("gdb stub: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the stub listens: `PORT` or `HOST:PORT` (TCP, host defaults to 127.0.0.1), or a
/// path (a Unix socket, created; it must not exist yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP address.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty gdb endpoint".into());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            let port: u16 = s.parse().map_err(|_| format!("bad port {s}"))?;
            return Ok(Endpoint::Tcp(format!("127.0.0.1:{port}")));
        }
        if let Some(port) = s.strip_prefix(':') {
            let port: u16 = port.parse().map_err(|_| format!("bad port {s}"))?;
            return Ok(Endpoint::Tcp(format!("127.0.0.1:{port}")));
        }
        if !s.contains('/') && s.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            return Ok(Endpoint::Tcp(s.to_string()));
        }
        Ok(Endpoint::Unix(PathBuf::from(s)))
    }
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn fd(&self) -> i32 {
        match self {
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Unix(s) => s.as_raw_fd(),
        }
    }
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(b),
            Conn::Unix(s) => s.read(b),
        }
    }
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(b),
            Conn::Unix(s) => s.write_all(b),
        }
    }
}

/// Waits for one gdb connection on `endpoint`, then serves it until the guest ends, the
/// client detaches or kills, or the connection drops (the guest then runs to its end).
/// Returns how the guest ended. `ready` is called once the stub listens.
pub fn serve(
    endpoint: &Endpoint,
    debuggee: Debuggee,
    ready: impl FnOnce(&str),
) -> Result<GuestExit, GdbError> {
    let conn = match endpoint {
        Endpoint::Tcp(addr) => {
            let l = TcpListener::bind(addr)?;
            ready(&l.local_addr()?.to_string());
            let (s, _) = l.accept()?;
            let _ = s.set_nodelay(true);
            Conn::Tcp(s)
        }
        Endpoint::Unix(path) => {
            let l = UnixListener::bind(path)?;
            ready(&path.display().to_string());
            let (s, _) = l.accept()?;
            let _ = std::fs::remove_file(path);
            Conn::Unix(s)
        }
    };
    Ok(Session::new(conn, debuggee).run())
}

enum Packet {
    Data(Vec<u8>),
    TooLong,
    Interrupt,
    Closed,
}

/// The connection: packet framing, acks, interrupts.
struct Link {
    conn: Conn,
    buf: Vec<u8>,
    pos: usize,
    no_ack: bool,
    dropped: bool,
}

struct Session {
    link: Link,
    target: Debuggee,
    /// Thread for `g`/`p` (`Hg`) and for `c`/`s` (`Hc`).
    g_thread: i32,
    c_thread: i32,
    last_stop: Stop,
    pending_no_ack: bool,
}

enum Next {
    Reply(Vec<u8>),
    Resume(Resume),
    Detach,
    Kill,
}

impl Link {
    fn byte(&mut self) -> Option<u8> {
        if self.pos >= self.buf.len() {
            self.buf.resize(4096, 0);
            let n = loop {
                match self.conn.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break 0,
                }
            };
            self.buf.truncate(n);
            self.pos = 0;
            if n == 0 {
                self.dropped = true;
                return None;
            }
        }
        self.pos += 1;
        Some(self.buf[self.pos - 1])
    }

    fn send_raw(&mut self, b: &[u8]) {
        if self.conn.write_all(b).is_err() {
            self.dropped = true;
        }
    }

    fn send(&mut self, data: &[u8]) {
        let sum = data.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        let mut p = Vec::with_capacity(data.len() + 4);
        p.push(b'$');
        p.extend_from_slice(data);
        p.extend_from_slice(format!("#{sum:02x}").as_bytes());
        self.send_raw(&p);
    }

    fn recv(&mut self) -> Packet {
        loop {
            let Some(b) = self.byte() else { return Packet::Closed };
            match b {
                0x03 => return Packet::Interrupt,
                b'$' => {}
                _ => continue, // acks, noise
            }
            let mut data = Vec::new();
            let mut too_long = false;
            let mut sum = 0u8;
            loop {
                let Some(c) = self.byte() else { return Packet::Closed };
                if c == b'#' {
                    break;
                }
                sum = sum.wrapping_add(c);
                if data.len() < MAX_PACKET {
                    data.push(c);
                } else {
                    too_long = true;
                }
            }
            let (Some(h), Some(l)) = (self.byte(), self.byte()) else { return Packet::Closed };
            let given =
                std::str::from_utf8(&[h, l]).ok().and_then(|s| u8::from_str_radix(s, 16).ok());
            if given != Some(sum) && !self.no_ack {
                self.send_raw(b"-");
                continue;
            }
            if !self.no_ack {
                self.send_raw(b"+");
            }
            return if too_long { Packet::TooLong } else { Packet::Data(data) };
        }
    }

    /// Polls the connection for Ctrl-C for at most `wait`; a dropped connection also stops.
    fn interrupted(&mut self, wait: Duration) -> bool {
        if self.pos >= self.buf.len() {
            let mut p = libc::pollfd { fd: self.conn.fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut p, 1, wait.as_millis().min(1000) as i32) };
            if n <= 0 {
                return false;
            }
        }
        loop {
            match self.byte() {
                Some(0x03) | None => return true,
                Some(_) => {}
            }
            if self.pos >= self.buf.len() {
                return false;
            }
        }
    }
}

impl Session {
    fn new(conn: Conn, target: Debuggee) -> Session {
        let main = target.threads.first().map_or(1, |t| t.thread.tid);
        Session {
            link: Link { conn, buf: Vec::new(), pos: 0, no_ack: false, dropped: false },
            target,
            g_thread: main,
            c_thread: main,
            last_stop: Stop::Signal { signo: 5, tid: main, watch: None },
            pending_no_ack: false,
        }
    }

    fn run(mut self) -> GuestExit {
        loop {
            if self.link.dropped {
                return self.target.run_to_end();
            }
            let next = match self.link.recv() {
                Packet::Closed => return self.target.run_to_end(),
                Packet::Interrupt => Next::Reply(self.stop_reply()),
                Packet::TooLong => Next::Reply(b"E16".to_vec()),
                Packet::Data(d) => self.command(&d),
            };
            match next {
                Next::Reply(r) => {
                    self.link.send(&r);
                    if self.pending_no_ack {
                        self.link.no_ack = true;
                        self.pending_no_ack = false;
                    }
                }
                Next::Resume(how) => {
                    let link = &mut self.link;
                    let stop = self.target.resume(how, &mut |d| link.interrupted(d));
                    if self.link.dropped {
                        return self.target.run_to_end();
                    }
                    if let Stop::Signal { tid, .. } | Stop::Fatal { tid, .. } = &stop {
                        self.g_thread = *tid;
                        self.c_thread = *tid;
                    }
                    self.last_stop = stop;
                    let r = self.stop_reply();
                    self.link.send(&r);
                    if let Stop::Exited(_) = self.last_stop {
                        return self.target.exit.clone().unwrap_or(GuestExit::Exited(0));
                    }
                }
                Next::Detach => {
                    self.link.send(b"OK");
                    return self.target.run_to_end();
                }
                Next::Kill => {
                    self.target.process.begin_exit();
                    return GuestExit::Killed;
                }
            }
        }
    }
}
