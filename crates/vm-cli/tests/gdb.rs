//! `vmx run --gdb`: gdb-multiarch in batch mode against every engine, and a raw client that
//! sends bad input.
//!
//! The guest is `guests/bin/gdb_target` (built with `-g -O0`, source in guests/src). Without
//! gdb-multiarch the gdb tests say so and pass, unless `VMX_REQUIRE_GDB` is set (CI sets it);
//! the raw-protocol tests need nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn gdb_available() -> bool {
    vm_test_support::tools::required("gdb-multiarch", "VMX_REQUIRE_GDB", "gdb")
}

/// A free TCP port on loopback (bound and released; the stub binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something listens on 127.0.0.1:`port` (read from /proc/net/tcp, so that the
/// stub's only accept is not used up by the check).
fn wait_listening(port: u16, child: &mut Child) {
    let needle = format!(":{port:04X} 00000000:0000 0A");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        if tcp.contains(&needle) {
            return;
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!("vmx ended before listening: {s}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("vmx never listened on port {port}");
}

fn spawn_vmx(engine: &str, port: u16, program: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .args(["run", "--engine", engine, "--gdb", &port.to_string(), program])
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(port, &mut child);
    child
}

fn finish(child: Child) -> (String, Option<i32>) {
    let out = child.wait_with_output().unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
}

fn gdb(port: u16, program: &str, script: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("script.gdb");
    std::fs::write(
        &file,
        format!("set pagination off\nset confirm off\ntarget remote 127.0.0.1:{port}\n{script}"),
    )
    .unwrap();
    let out = Command::new("gdb-multiarch")
        .arg("--batch")
        .arg("-nx")
        .arg("-x")
        .arg(&file)
        .arg(program)
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

const SCRIPT: &str = "\
break main
continue
info registers pc
x/s greeting
next
p local
printf \"PC %lx\\n\", $pc
x/2i $pc
stepi
printf \"PC %lx\\n\", $pc
x/2i $pc
stepi
printf \"PC %lx\\n\", $pc
x/2i $pc
stepi
printf \"PC %lx\\n\", $pc
x/2i $pc
stepi
printf \"PC %lx\\n\", $pc
x/2i $pc
stepi
printf \"PC %lx\\n\", $pc
p $fcsr
p $f0
watch watched
continue
delete
break worker
continue
info threads
thread 3
stepi
info threads
delete
continue
";

/// The addresses `x/2i $pc` printed (current, next) and the pcs printed by `printf PC`.
fn check_steps(out: &str) {
    let pcs: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("PC "))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .collect();
    assert_eq!(pcs.len(), 6, "{out}");
    // The instruction after each one, as gdb disassembled it before the step.
    let nexts: Vec<u64> = out
        .lines()
        .filter(|l| l.starts_with("   0x"))
        .filter_map(|l| u64::from_str_radix(l[5..].split_whitespace().next()?, 16).ok())
        .collect();
    assert_eq!(nexts.len(), 5, "{out}");
    let mut lengths = Vec::new();
    for i in 0..5 {
        assert_eq!(pcs[i + 1], nexts[i], "stepi {i} did not reach the next instruction\n{out}");
        lengths.push(pcs[i + 1] - pcs[i]);
    }
    assert!(lengths.iter().all(|l| *l == 2 || *l == 4), "{lengths:?}");
    assert!(lengths.contains(&2) && lengths.contains(&4), "compressed and full: {lengths:?}");
}

#[test]
fn gdb_debugs_the_guest_on_every_engine() {
    if !gdb_available() {
        return;
    }
    let expected =
        std::fs::read_to_string(root().join("guests/expected/gdb_target.stdout")).unwrap();
    for engine in ["interp", "jit", "hybrid"] {
        let port = free_port();
        let child = spawn_vmx(engine, port, "guests/bin/gdb_target");
        let out = gdb(port, "guests/bin/gdb_target", SCRIPT);
        let (stdout, status) = finish(child);
        let ctx = format!("engine {engine}:\n{out}");
        let bp = out
            .lines()
            .find_map(|l| l.strip_prefix("Breakpoint 1 at 0x"))
            .and_then(|r| u64::from_str_radix(r.split(':').next()?, 16).ok())
            .unwrap_or_else(|| panic!("no breakpoint at main: {ctx}"));
        assert!(out.contains("Breakpoint 1, main (argc=1,"), "{ctx}");
        assert!(out.contains(&format!("pc             {bp:#x}")), "{ctx}");
        assert!(out.contains("\"hello from the gdb target\""), "{ctx}");
        assert!(out.contains("$1 = 42"), "{ctx}");
        check_steps(&out);
        assert!(out.contains("$2 = 0"), "fcsr: {ctx}");
        assert!(out.contains("$3 = {float = "), "f0 by name: {ctx}");
        assert!(out.contains("Old value = 0\nNew value = 84"), "{ctx}");
        assert!(out.contains("gdb_target.c:33"), "watchpoint stops after the store: {ctx}");
        assert!(out.contains("hit Breakpoint 3, worker ("), "{ctx}");
        let threads = out.lines().filter(|l| l.contains(" Thread 100")).count();
        assert!(threads >= 6, "info threads lists the three threads twice: {ctx}");
        assert!(out.contains("[Switching to thread 3 (Thread 1003)]"), "{ctx}");
        assert!(out.contains("[Inferior 1 (Remote target) exited with code 03]"), "{ctx}");
        assert_eq!(stdout, expected, "{ctx}");
        assert_eq!(status, Some(3), "{ctx}");
    }
}

#[test]
fn gdb_sees_a_fatal_signal_before_the_guest_dies() {
    if !gdb_available() {
        return;
    }
    let port = free_port();
    let child = spawn_vmx("hybrid", port, "guests/bin/fault_segv");
    let out = gdb(port, "guests/bin/fault_segv", "continue\ncontinue\n");
    let (_, status) = finish(child);
    assert!(out.contains("Program received signal SIGSEGV"), "{out}");
    assert!(out.contains("Program terminated with signal SIGSEGV"), "{out}");
    assert_eq!(status, None, "vmx dies by the guest's signal");
}

/// A raw protocol client.
struct Client(TcpStream);

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client(s)
    }
    fn raw(&mut self, b: &[u8]) {
        self.0.write_all(b).unwrap();
    }
    fn packet(&mut self, data: &[u8]) {
        let sum = data.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        let mut p = vec![b'$'];
        p.extend_from_slice(data);
        p.extend_from_slice(format!("#{sum:02x}").as_bytes());
        self.raw(&p);
    }
    /// The next reply packet's data (acks skipped).
    fn reply(&mut self) -> String {
        let mut b = [0u8; 1];
        loop {
            self.0.read_exact(&mut b).unwrap();
            if b[0] == b'$' {
                break;
            }
        }
        let mut data = Vec::new();
        loop {
            self.0.read_exact(&mut b).unwrap();
            if b[0] == b'#' {
                break;
            }
            data.push(b[0]);
        }
        let mut sum = [0u8; 2];
        self.0.read_exact(&mut sum).unwrap();
        String::from_utf8_lossy(&data).into_owned()
    }
    fn ask(&mut self, data: &str) -> String {
        self.packet(data.as_bytes());
        self.reply()
    }
    /// The next single byte (an ack or a nack).
    fn byte(&mut self) -> u8 {
        let mut b = [0u8; 1];
        self.0.read_exact(&mut b).unwrap();
        b[0]
    }
}

/// Register `n` (hex number) of the current thread.
fn reg(c: &mut Client, n: &str) -> u64 {
    let hex = c.ask(&format!("p{n}"));
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut b = [0u8; 8];
    b[..bytes.len().min(8)].copy_from_slice(&bytes[..bytes.len().min(8)]);
    u64::from_le_bytes(b)
}

#[test]
fn bad_input_never_hurts_the_host_and_a_dropped_connection_lets_the_guest_finish() {
    let expected =
        std::fs::read_to_string(root().join("guests/expected/gdb_target.stdout")).unwrap();
    let port = free_port();
    let child = spawn_vmx("jit", port, "guests/bin/gdb_target");
    let mut c = Client::connect(port);
    assert!(c.ask("qSupported:multiprocess+").contains("PacketSize=4000"));
    assert!(c.ask("?").starts_with("T05thread:"));
    // A wrong checksum is refused with '-'.
    c.raw(b"$g#00");
    assert_eq!(c.byte(), b'-');
    // Oversized packet: refused, connection still usable.
    let big = vec![b'm'; 100_000];
    assert_eq!(c.ask(std::str::from_utf8(&big).unwrap()), "E16");
    // Malformed commands.
    assert_eq!(c.ask("mzz,qq"), "E01");
    assert_eq!(c.ask("p1000"), "E01");
    assert_eq!(c.ask("Hgffffff"), "E01");
    assert_eq!(c.ask("X10,4:ab"), "E01");
    assert_eq!(c.ask("vCont;x"), "E01");
    assert_eq!(c.ask("qXfer:features:read:target.xml:zz"), "E01");
    // Unmapped memory and a breakpoint there.
    assert_eq!(c.ask("mdeadbeef000,10"), "E14");
    assert_eq!(c.ask("Mdeadbeef000,1:00"), "E14");
    assert_eq!(c.ask("Z0,deadbeef000,2"), "OK");
    assert_eq!(c.ask("Z2,0,100000"), "E01");
    assert_eq!(c.ask("unknown-command"), "");
    // Registers still read.
    assert_eq!(c.ask("g").len(), 33 * 16);
    // `vCont;s` runs exactly one instruction (gdb itself steps RISC-V with breakpoints):
    // the pcs of the committed binary's `_start`, `load_gp` and back, 2- and 4-byte
    // instructions and jumps.
    let tid = c.ask("qC")[2..].to_string();
    let expected_pcs = [
        0x10584, 0x105a6, 0x105aa, 0x105ae, 0x10588, 0x1058a, 0x1058e, 0x10592, 0x10594, 0x10596,
        0x1059a, 0x1059c, 0x1059e, 0x105a0, 0x10866,
    ];
    let mut pcs = vec![reg(&mut c, "20")];
    for _ in 1..expected_pcs.len() {
        let stop = c.ask(&format!("vCont;s:{tid}"));
        assert!(stop.starts_with("T05"), "{stop}");
        pcs.push(reg(&mut c, "20"));
    }
    assert_eq!(pcs, expected_pcs);
    // Drop the connection mid-session: the guest runs to its end, output intact.
    drop(c);
    let (stdout, status) = finish(child);
    assert_eq!(stdout, expected);
    assert_eq!(status, Some(3));
}

#[test]
fn ctrl_c_interrupts_a_running_guest_and_detach_lets_it_run_on() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .args(["run", "--gdb", &port.to_string(), "guests/bin/stdin_wait"])
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(port, &mut child);
    let mut c = Client::connect(port);
    assert_eq!(c.ask("QStartNoAckMode"), "OK");
    c.packet(b"vCont;c");
    std::thread::sleep(Duration::from_millis(300));
    c.raw(&[0x03]);
    let stop = c.reply();
    assert!(stop.starts_with("T02thread:"), "{stop}");
    assert!(c.ask("qfThreadInfo").starts_with('m'));
    assert_eq!(c.ask("D"), "OK");
    // Detached: the guest goes on and ends normally once its stdin is given and closed.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"line one\nline two\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("line two"), "{out:?}");
}
