//! A guest thread reading an empty stdin pipe is parked, not blocking its vCPU: on one vCPU,
//! another thread of the same guest keeps running and printing while the read waits, and the
//! read completes with the data written later.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn a_read_of_an_empty_pipe_does_not_hold_the_only_vcpu() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .args(["run", "--vcpus", "1", "guests/bin/stdin_wait"])
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("vmx starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // The ticker's five lines arrive while nothing has been written to stdin yet (if the read
    // held the only vCPU, they could not).
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut ticks = Vec::new();
        for _ in 0..5 {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            ticks.push(line);
        }
        tx.send(ticks).unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        rest
    });
    let ticks = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(t) => t,
        Err(_) => {
            let _ = child.kill();
            panic!("the ticks never came: the waiting read blocked the vCPU");
        }
    };
    assert_eq!(ticks, (0..5).map(|i| format!("tick {i}\n")).collect::<Vec<_>>());
    stdin.write_all(b"late input\n").unwrap();
    drop(stdin);
    let rest = reader.join().unwrap();
    assert_eq!(rest, "got 11 bytes: late input\n");
    assert!(child.wait().unwrap().success());
}
