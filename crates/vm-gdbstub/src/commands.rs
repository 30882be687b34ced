//! The commands of the remote protocol, as methods of the session.

use crate::target::{Resume, Stop};
use crate::{Next, Session, MAX_PACKET};
use vm_exec_core::exec::GuestExit;

/// gdb's register numbers (the target description below defines them).
const PC: usize = 32;
const F0: usize = 33;
const FFLAGS: usize = 65;
const FRM: usize = 66;
const FCSR: usize = 67;

const X_NAMES: [&str; 32] = [
    "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "fp", "s1", "a0", "a1", "a2", "a3", "a4",
    "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4",
    "t5", "t6",
];
const F_NAMES: [&str; 32] = [
    "ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1", "fa0", "fa1", "fa2",
    "fa3", "fa4", "fa5", "fa6", "fa7", "fs2", "fs3", "fs4", "fs5", "fs6", "fs7", "fs8", "fs9",
    "fs10", "fs11", "ft8", "ft9", "ft10", "ft11",
];

/// The RV64GC target description served through `qXfer:features:read:target.xml`.
pub fn target_xml() -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE target SYSTEM \"gdb-target.dtd\">\n<target version=\"1.0\">\n<architecture>riscv:rv64</architecture>\n<feature name=\"org.gnu.gdb.riscv.cpu\">\n",
    );
    for (i, n) in X_NAMES.iter().enumerate() {
        let ty = match i {
            1 => "code_ptr",
            2 | 3 | 4 | 8 => "data_ptr",
            _ => "int",
        };
        s += &format!("  <reg name=\"{n}\" bitsize=\"64\" type=\"{ty}\" regnum=\"{i}\"/>\n");
    }
    s += "  <reg name=\"pc\" bitsize=\"64\" type=\"code_ptr\" regnum=\"32\"/>\n</feature>\n";
    s += "<feature name=\"org.gnu.gdb.riscv.fpu\">\n";
    s += "  <union id=\"riscv_double\">\n    <field name=\"float\" type=\"ieee_single\"/>\n    <field name=\"double\" type=\"ieee_double\"/>\n  </union>\n";
    for (i, n) in F_NAMES.iter().enumerate() {
        s += &format!(
            "  <reg name=\"{n}\" bitsize=\"64\" type=\"riscv_double\" regnum=\"{}\"/>\n",
            F0 + i
        );
    }
    s += &format!("  <reg name=\"fflags\" bitsize=\"32\" type=\"int\" regnum=\"{FFLAGS}\"/>\n");
    s += &format!("  <reg name=\"frm\" bitsize=\"32\" type=\"int\" regnum=\"{FRM}\"/>\n");
    s += &format!("  <reg name=\"fcsr\" bitsize=\"32\" type=\"int\" regnum=\"{FCSR}\"/>\n");
    s += "</feature>\n</target>\n";
    s
}

/// gdb's signal numbering for a Linux signal.
fn gdb_signal(linux: i32) -> u8 {
    match linux {
        7 => 10,  // SIGBUS
        10 => 30, // SIGUSR1
        12 => 31, // SIGUSR2
        17 => 20, // SIGCHLD
        n if (1..=15).contains(&n) => n as u8,
        _ => 143, // GDB_SIGNAL_UNKNOWN
    }
}

fn hex(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().flat_map(|b| format!("{b:02x}").into_bytes()).collect()
}

fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks(2)
        .map(|c| std::str::from_utf8(c).ok().and_then(|t| u8::from_str_radix(t, 16).ok()))
        .collect()
}

fn num(s: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

/// A thread id: hex, `-1` (all) or `0` (any).
fn thread_id(s: &[u8]) -> Option<i64> {
    if s == b"-1" {
        return Some(-1);
    }
    num(s).map(|v| v as i64)
}

fn split2(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

const ERR: &[u8] = b"E01";
const EFAULT: &[u8] = b"E14";

impl Session {
    pub(crate) fn stop_reply(&self) -> Vec<u8> {
        match &self.last_stop {
            Stop::Signal { signo, tid, watch } => {
                let w = watch.map(|a| format!("watch:{a:x};")).unwrap_or_default();
                format!("T{:02x}{w}thread:{tid:x};", gdb_signal(*signo)).into_bytes()
            }
            Stop::Fatal { signal, tid } => {
                format!("T{:02x}thread:{tid:x};", gdb_signal(signal.signo)).into_bytes()
            }
            Stop::Exited(code) => match &self.target.exit {
                Some(GuestExit::Signaled(s)) => {
                    format!("X{:02x}", gdb_signal(s.signo)).into_bytes()
                }
                Some(GuestExit::Exited(c)) => format!("W{:02x}", c & 0xff).into_bytes(),
                Some(GuestExit::Killed) => b"X09".to_vec(),
                Some(other) => format!("W{:02x}", other.shell_status() & 0xff).into_bytes(),
                None => format!("W{:02x}", code & 0xff).into_bytes(),
            },
        }
    }

    fn tid_for(&self, t: i32) -> i32 {
        if self.target.thread(t).is_some() {
            t
        } else {
            self.target.threads.first().map_or(t, |t| t.thread.tid)
        }
    }

    /// Register `n` of the `Hg` thread as little-endian bytes.
    fn reg(&self, n: usize) -> Option<Vec<u8>> {
        let t = self.target.thread(self.tid_for(self.g_thread))?;
        let c = &t.thread.cpu;
        Some(match n {
            0..=31 => c.x[n].to_le_bytes().to_vec(),
            PC => c.pc.to_le_bytes().to_vec(),
            33..=64 => c.f[n - F0].to_le_bytes().to_vec(),
            FFLAGS => (c.fflags as u32).to_le_bytes().to_vec(),
            FRM => (c.frm as u32).to_le_bytes().to_vec(),
            FCSR => (((c.frm as u32) << 5) | c.fflags as u32).to_le_bytes().to_vec(),
            _ => return None,
        })
    }

    fn set_reg(&mut self, n: usize, bytes: &[u8]) -> bool {
        let tid = self.tid_for(self.g_thread);
        let Some(t) = self.target.thread_mut(tid) else { return false };
        let mut b8 = [0u8; 8];
        let k = bytes.len().min(8);
        b8[..k].copy_from_slice(&bytes[..k]);
        let v = u64::from_le_bytes(b8);
        let c = &mut t.thread.cpu;
        match n {
            0 => {}
            1..=31 => c.x[n] = v,
            PC => c.pc = v,
            33..=64 => c.f[n - F0] = v,
            FFLAGS => c.fflags = (v & 0x1f) as u8,
            FRM => c.frm = (v & 7) as u8,
            FCSR => {
                c.fflags = (v & 0x1f) as u8;
                c.frm = ((v >> 5) & 7) as u8;
            }
            _ => return false,
        }
        true
    }

    fn read_memory(&self, addr: u64, len: u64) -> Vec<u8> {
        let len = len.min(MAX_PACKET as u64 / 2);
        let mem = &self.target.process.mem;
        let mut out = Vec::new();
        for i in 0..len {
            let Some(a) = addr.checked_add(i) else { break };
            match mem.read_u8(a) {
                Ok(b) => out.push(b),
                Err(_) => break,
            }
        }
        if out.is_empty() && len > 0 {
            return EFAULT.to_vec();
        }
        hex(&out)
    }

    fn write_memory(&self, addr: u64, data: &[u8]) -> Vec<u8> {
        match self.target.process.mem.write_bytes(addr, data) {
            Ok(()) => b"OK".to_vec(),
            Err(_) => EFAULT.to_vec(),
        }
    }

    pub(crate) fn command(&mut self, p: &[u8]) -> Next {
        let reply = |r: &[u8]| Next::Reply(r.to_vec());
        let Some(&first) = p.first() else { return reply(b"") };
        let rest = &p[1..];
        match first {
            b'?' => Next::Reply(self.stop_reply()),
            b'g' => {
                let mut out = Vec::new();
                for n in 0..=PC {
                    match self.reg(n) {
                        Some(b) => out.extend(hex(&b)),
                        None => return reply(ERR),
                    }
                }
                Next::Reply(out)
            }
            b'G' => {
                let Some(bytes) = unhex(rest) else { return reply(ERR) };
                for (n, chunk) in bytes.chunks(8).enumerate().take(PC + 1) {
                    self.set_reg(n, chunk);
                }
                reply(b"OK")
            }
            b'p' => match num(rest).and_then(|n| self.reg(n as usize)) {
                Some(b) => Next::Reply(hex(&b)),
                None => reply(ERR),
            },
            b'P' => {
                let Some((n, v)) = split2(rest, b'=') else { return reply(ERR) };
                match (num(n), unhex(v)) {
                    (Some(n), Some(v)) if self.set_reg(n as usize, &v) => reply(b"OK"),
                    _ => reply(ERR),
                }
            }
            b'm' => {
                let Some((a, l)) = split2(rest, b',') else { return reply(ERR) };
                match (num(a), num(l)) {
                    (Some(a), Some(l)) => Next::Reply(self.read_memory(a, l)),
                    _ => reply(ERR),
                }
            }
            b'M' => {
                let Some((al, data)) = split2(rest, b':') else { return reply(ERR) };
                let Some((a, l)) = split2(al, b',') else { return reply(ERR) };
                match (num(a), num(l), unhex(data)) {
                    (Some(a), Some(l), Some(d)) if d.len() as u64 == l => {
                        Next::Reply(self.write_memory(a, &d))
                    }
                    _ => reply(ERR),
                }
            }
            b'X' => {
                let Some((al, data)) = split2(rest, b':') else { return reply(ERR) };
                let Some((a, l)) = split2(al, b',') else { return reply(ERR) };
                let mut d = Vec::with_capacity(data.len());
                let mut esc = false;
                for &b in data {
                    if esc {
                        d.push(b ^ 0x20);
                        esc = false;
                    } else if b == b'}' {
                        esc = true;
                    } else {
                        d.push(b);
                    }
                }
                match (num(a), num(l)) {
                    (Some(a), Some(l)) if d.len() as u64 == l => {
                        if l == 0 {
                            reply(b"OK")
                        } else {
                            Next::Reply(self.write_memory(a, &d))
                        }
                    }
                    _ => reply(ERR),
                }
            }
            b'Z' | b'z' => self.point(first == b'Z', rest),
            b'H' => {
                let (Some(&op), Some(t)) = (rest.first(), thread_id(rest.get(1..).unwrap_or(b"")))
                else {
                    return reply(ERR);
                };
                let tid = if t <= 0 { self.current() } else { t as i32 };
                if t > 0 && self.target.thread(tid).is_none() {
                    return reply(ERR);
                }
                match op {
                    b'g' => self.g_thread = tid,
                    b'c' => self.c_thread = tid,
                    _ => return reply(ERR),
                }
                reply(b"OK")
            }
            b'T' => match thread_id(rest) {
                Some(t) if t > 0 && self.target.thread(t as i32).is_some() => reply(b"OK"),
                _ => reply(ERR),
            },
            b'c' | b'C' => Next::Resume(Resume::Continue),
            b's' | b'S' => Next::Resume(Resume::Step(self.tid_for(self.c_thread))),
            b'D' => Next::Detach,
            b'k' => Next::Kill,
            b'q' | b'Q' => self.query(p),
            b'v' => self.v_command(p),
            _ => reply(b""),
        }
    }

    fn current(&self) -> i32 {
        match &self.last_stop {
            Stop::Signal { tid, .. } | Stop::Fatal { tid, .. } => self.tid_for(*tid),
            Stop::Exited(_) => self.tid_for(0),
        }
    }

    fn point(&mut self, insert: bool, rest: &[u8]) -> Next {
        let mut it = rest.split(|&b| b == b',');
        let (Some(kind), Some(addr), Some(len)) = (
            it.next(),
            it.next().and_then(num),
            it.next().and_then(|l| num(l.split(|&b| b == b';').next().unwrap_or(l))),
        ) else {
            return Next::Reply(ERR.to_vec());
        };
        match kind {
            b"0" | b"1" => {
                if insert {
                    self.target.add_breakpoint(addr);
                } else {
                    self.target.remove_breakpoint(addr);
                }
                Next::Reply(b"OK".to_vec())
            }
            b"2" => {
                if insert {
                    if !self.target.add_watch(addr, len) {
                        return Next::Reply(ERR.to_vec());
                    }
                } else {
                    self.target.remove_watch(addr, len);
                }
                Next::Reply(b"OK".to_vec())
            }
            _ => Next::Reply(Vec::new()),
        }
    }

    fn query(&mut self, p: &[u8]) -> Next {
        let s = String::from_utf8_lossy(p);
        let r: Vec<u8> = if s.starts_with("qSupported") {
            format!(
                "PacketSize={MAX_PACKET:x};qXfer:features:read+;QStartNoAckMode+;vContSupported+"
            )
            .into_bytes()
        } else if s == "QStartNoAckMode" {
            self.pending_no_ack = true;
            b"OK".to_vec()
        } else if let Some(args) = s.strip_prefix("qXfer:features:read:target.xml:") {
            let xml = target_xml();
            let Some((o, l)) = args.split_once(',') else { return Next::Reply(ERR.to_vec()) };
            let (Ok(o), Ok(l)) = (usize::from_str_radix(o, 16), usize::from_str_radix(l, 16))
            else {
                return Next::Reply(ERR.to_vec());
            };
            let b = xml.as_bytes();
            let start = o.min(b.len());
            let end = start.saturating_add(l.min(MAX_PACKET - 16)).min(b.len());
            let mut out = vec![if end < b.len() { b'm' } else { b'l' }];
            out.extend_from_slice(&b[start..end]);
            out
        } else if s.starts_with("qXfer:") {
            b"E00".to_vec()
        } else if s == "qfThreadInfo" {
            let ids: Vec<String> =
                self.target.threads.iter().map(|t| format!("{:x}", t.thread.tid)).collect();
            format!("m{}", ids.join(",")).into_bytes()
        } else if s == "qsThreadInfo" {
            b"l".to_vec()
        } else if s == "qC" {
            format!("QC{:x}", self.current()).into_bytes()
        } else if s == "qAttached" {
            b"1".to_vec()
        } else if s.starts_with("qSymbol") {
            b"OK".to_vec()
        } else if let Some(t) = s.strip_prefix("qThreadExtraInfo,") {
            let tid = i32::from_str_radix(t, 16).unwrap_or(0);
            match self.target.thread(tid) {
                Some(t) if t.blocked.is_some() => hex(b"blocked in a system call"),
                Some(_) => hex(b"runnable"),
                None => ERR.to_vec(),
            }
        } else {
            Vec::new()
        };
        Next::Reply(r)
    }

    fn v_command(&mut self, p: &[u8]) -> Next {
        if p == b"vCont?" {
            return Next::Reply(b"vCont;c;C;s;S".to_vec());
        }
        let Some(actions) = p.strip_prefix(b"vCont;") else { return Next::Reply(Vec::new()) };
        for action in actions.split(|&b| b == b';') {
            let (a, t) = match split2(action, b':') {
                Some((a, t)) => (a, thread_id(t)),
                None => (action, None),
            };
            match a.first() {
                Some(b's') | Some(b'S') => {
                    let tid = match t {
                        Some(t) if t > 0 => t as i32,
                        _ => self.tid_for(self.c_thread),
                    };
                    return Next::Resume(Resume::Step(tid));
                }
                Some(b'c') | Some(b'C') => {}
                _ => return Next::Reply(ERR.to_vec()),
            }
        }
        Next::Resume(Resume::Continue)
    }
}
