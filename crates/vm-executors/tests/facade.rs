//! The facade's execution API on real guest programs: running to completion with captured
//! streams, stepping with fuel, background execution, and errors.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use vm_exec_core::exec::Executor;
use vm_executors::{
    AsyncExecutionContext, CaptureBuffer, Error, ExecutorType, GuestExit, GuestRunner,
    HybridExecutor, InterpreterExecutor, JitExecutor, ProcessConfig, Program, Stdio,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn program(name: &str) -> Arc<Program> {
    let bytes = std::fs::read(repo().join("guests/bin").join(name)).expect("guest binary");
    Arc::new(Program::parse(bytes).expect("parses"))
}

fn expected(case: &str) -> Vec<u8> {
    std::fs::read(repo().join("guests/expected").join(format!("{case}.stdout"))).unwrap()
}

fn captured(args: &[&str]) -> (ProcessConfig, CaptureBuffer, CaptureBuffer) {
    let out = CaptureBuffer::with_limit(1 << 20);
    let err = CaptureBuffer::with_limit(1 << 20);
    let config = ProcessConfig {
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        stdout: Stdio::Capture(out.clone()),
        stderr: Stdio::Capture(err.clone()),
        stdin: Stdio::Null,
        ..Default::default()
    };
    (config, out, err)
}

#[test]
fn every_engine_type_runs_hello() {
    fn check<E: Executor>(mut ex: GuestRunner<E>) {
        let (config, out, _) = captured(&["guests/bin/hello"]);
        ex.load(program("hello"), config).unwrap();
        assert_eq!(ex.run_to_completion().unwrap().exit, GuestExit::Exited(0));
        assert_eq!(out.contents(), expected("hello"));
    }
    check(InterpreterExecutor::new());
    check(JitExecutor::new());
    check(HybridExecutor::new());
    for e in ExecutorType::ALL {
        check(GuestRunner::with_engine(e));
    }
}

#[test]
fn runs_hello_to_completion_with_captured_output() {
    let (config, out, err) = captured(&["guests/bin/hello"]);
    let mut ex = InterpreterExecutor::new();
    ex.load(program("hello"), config).unwrap();
    let r = ex.run_to_completion().unwrap();
    assert_eq!(r.exit, GuestExit::Exited(0));
    assert_eq!(out.contents(), expected("hello"));
    assert!(err.contents().is_empty());
    assert!(r.instructions > 1000);
    assert_eq!(r.stats.instructions, r.instructions);
    assert!(ex.get_stats().total_executions > 0);
}

#[test]
fn stepping_with_any_fuel_gives_the_same_run() {
    let args = ["guests/bin/hello", "one", "two words", "", "--flag=x"];
    let (config, out, _) = captured(&args);
    let mut straight = InterpreterExecutor::new();
    straight.load(program("hello"), config).unwrap();
    let whole = straight.run_to_completion().unwrap();
    let whole_out = out.contents();
    for fuel in [1u64, 2, 3, 7, 64, 1000, 12_345] {
        let (config, out, _) = captured(&args);
        let mut ex = InterpreterExecutor::new();
        ex.load(program("hello"), config).unwrap();
        let exit = loop {
            if let Some(exit) = ex.execute_block(fuel).unwrap() {
                break exit;
            }
        };
        assert_eq!(exit, whole.exit, "fuel {fuel}");
        assert_eq!(ex.instructions(), whole.instructions, "fuel {fuel}");
        assert_eq!(out.contents(), whole_out, "fuel {fuel}");
        assert!(matches!(ex.execute_block(1), Err(Error::Finished)));
    }
    // Batches stop early when the guest ends.
    let (config, _, _) = captured(&args);
    let mut ex = InterpreterExecutor::new();
    ex.load(program("hello"), config).unwrap();
    assert_eq!(ex.execute_batch(3, 10).unwrap(), None);
    assert_eq!(ex.instructions(), 30);
    assert_eq!(ex.execute_batch(usize::MAX, 1 << 20).unwrap(), Some(GuestExit::Exited(0)));
}

#[test]
fn guest_faults_are_reported_as_signals() {
    let (config, _, err) = captured(&["guests/bin/fault_segv"]);
    let mut ex = InterpreterExecutor::new();
    ex.load(program("fault_segv"), config).unwrap();
    match ex.run_to_completion().unwrap().exit {
        GuestExit::Signaled(s) => {
            assert_eq!(s.signo, 11);
            assert_eq!(s.addr, Some(0x10));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.contents(), b"stderr before fault\n");
}

#[test]
fn errors_are_values_not_panics() {
    let mut ex = InterpreterExecutor::new();
    assert!(matches!(ex.execute_block(10), Err(Error::NotLoaded)));
    assert!(matches!(ex.run_to_completion(), Err(Error::NotLoaded)));
    "wasm".parse::<ExecutorType>().expect_err("no such engine");
    for e in ExecutorType::ALL {
        assert_eq!(e.name().parse::<ExecutorType>(), Ok(e));
    }
}

struct ThreadWaker(std::thread::Thread);
impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn background_runs_can_be_awaited_or_waited_for() {
    let ctx = AsyncExecutionContext::new(ExecutorType::Hybrid);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (config, out, _) = captured(&["guests/bin/hello"]);
            (ctx.spawn(program("hello"), config), out)
        })
        .collect();
    for (i, (h, out)) in handles.into_iter().enumerate() {
        let r = if i % 2 == 0 { h.wait() } else { block_on(h) }.unwrap();
        assert_eq!(r.exit, GuestExit::Exited(0));
        assert_eq!(out.contents(), expected("hello"));
    }
}
