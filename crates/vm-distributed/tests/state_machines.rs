//! The coordinator's and the worker's state machines in one process: a [`VmCoordinator`] and
//! in-process [`Worker`]s on loopback, driven through the library API (the `vmx` process
//! tests in `vm-cli/tests/cluster.rs` cover the same ground with real processes).

use std::time::{Duration, Instant};
use vm_distributed::auth::ClusterToken;
use vm_distributed::protocol::{
    TaskExit, TaskId, TaskInfo, TaskLimits, TaskPayload, TaskStatus, TaskType,
};
use vm_distributed::worker::{Worker, WorkerConfig};
use vm_distributed::{ClusterClient, DistributedArchitectureConfig, VmCoordinator};

const MIB: u64 = 1 << 20;

fn program(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../guests/bin/");
    std::fs::read(format!("{path}{name}")).unwrap()
}

fn token() -> ClusterToken {
    ClusterToken::new(b"state-machine-test-token-0123").unwrap()
}

async fn coordinator(dir: &std::path::Path) -> VmCoordinator {
    VmCoordinator::start(DistributedArchitectureConfig {
        data_dir: dir.to_path_buf(),
        token: Some(token()),
        durable: false,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn worker(c: &VmCoordinator, slots: usize, memory: u64) -> Worker {
    // The hybrid engine, as `vmx worker` uses by default (vm-distributed names no engine).
    let engine = std::sync::Arc::new(|| Box::new(vm_exec_jit::HybridEngine::new()) as _);
    let mut config = WorkerConfig::new(c.local_addr().to_string(), token(), engine, "hybrid");
    config.vcpus = 1;
    config.max_concurrent = slots;
    config.memory_bytes = memory;
    Worker::spawn(config).unwrap()
}

async fn wait_nodes(c: &VmCoordinator, n: usize) {
    let t0 = Instant::now();
    while c.cluster_status().await.unwrap().nodes.len() < n {
        assert!(t0.elapsed() < Duration::from_secs(20), "workers did not register");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_status(
    c: &VmCoordinator,
    id: TaskId,
    what: &str,
    ok: impl Fn(&TaskStatus) -> bool,
) -> TaskInfo {
    let t0 = Instant::now();
    loop {
        let info = c.get_task_status(&id).await.unwrap();
        if ok(&info.status) {
            return info;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{id} never {what}: {info:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `stream gen N` as a payload with `memory` bytes of guest memory.
fn gen(n: u64, memory: u64, cap: u32) -> TaskPayload {
    let mut p = TaskPayload::new(program("stream"), "stream", &["gen", &n.to_string()]);
    p.limits = TaskLimits { memory_bytes: memory, output_cap: cap, ..Default::default() };
    p
}

/// The pattern `stream gen` writes.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 131 + i / 4093) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_larger_than_a_frame_comes_back_whole_and_frees_the_slot() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(dir.path()).await;
    let w = worker(&c, 1, 1 << 30);
    wait_nodes(&c, 1).await;
    let n = 20 << 20; // more than one 16 MiB frame
    let id = c.submit_task(TaskType::IoIntensive, gen(n, 64 * MIB, 24 << 20)).await.unwrap();
    // (Before frames, the worker could not send this result: the wait never ended.)
    let info = tokio::time::timeout(Duration::from_secs(120), c.wait_task(&id))
        .await
        .expect("the result never came back")
        .unwrap();
    assert_eq!(info.status, TaskStatus::Completed { exit_status: 0 }, "{info:?}");
    let r = info.result.unwrap();
    assert_eq!(r.stdout.len(), n as usize);
    assert!(r.stdout == pattern(n as usize), "the output differs from the pattern");
    assert_eq!(r.output_dropped, 0);
    // The slot is free: the one-slot worker runs the next task.
    let id = c.submit_task(TaskType::CpuIntensive, gen(10, 64 * MIB, 1024)).await.unwrap();
    let info = c.wait_task(&id).await.unwrap();
    assert_eq!(info.status, TaskStatus::Completed { exit_status: 0 });
    assert_eq!(c.cluster_status().await.unwrap().nodes[0].running, 0);
    w.stop().await.unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_refuses_the_impossible_and_steps_over_what_does_not_fit_now() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(dir.path()).await;
    let w = worker(&c, 4, 1024 * MIB);
    wait_nodes(&c, 1).await;
    // No node could ever hold 2 GiB: refused at once, with the reason.
    let e = c.submit_task(TaskType::MemoryIntensive, gen(1, 2048 * MIB, 64)).await.unwrap_err();
    assert!(e.to_string().contains("no worker can hold"), "{e}");
    // A long task takes 768 MiB; a second one of 768 MiB cannot run next to it...
    let long = gen(1 << 40, 768 * MIB, 64);
    let a = c.submit_task(TaskType::MemoryIntensive, long.clone()).await.unwrap();
    wait_status(&c, a, "ran", |s| matches!(s, TaskStatus::Running { .. })).await;
    let b = c.submit_task(TaskType::MemoryIntensive, long).await.unwrap();
    // ...and does not hold up a small task behind it.
    let small = c.submit_task(TaskType::CpuIntensive, gen(10, 64 * MIB, 64)).await.unwrap();
    let info = tokio::time::timeout(Duration::from_secs(10), c.wait_task(&small))
        .await
        .expect("the small task waited behind the big one")
        .unwrap();
    assert_eq!(info.status, TaskStatus::Completed { exit_status: 0 });
    assert_eq!(c.get_task_status(&b).await.unwrap().status, TaskStatus::Queued);
    // Cancelling the running one makes room for the queued one; cancel that too.
    let info = c.cancel_task(&a, "test").await.unwrap();
    assert!(matches!(info.status, TaskStatus::Cancelled { .. }), "{info:?}");
    wait_status(&c, b, "ran", |s| matches!(s, TaskStatus::Running { .. })).await;
    c.cancel_task(&b, "test").await.unwrap();
    let t0 = Instant::now();
    while c.cluster_status().await.unwrap().nodes[0].running > 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "a cancelled task kept its slot");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    w.stop().await.unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellations_attempts_and_load_errors_are_recorded_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(dir.path()).await;
    // No worker yet: the task stays queued, and is cancelled from the queue.
    let queued = c.submit_task(TaskType::CpuIntensive, gen(10, 64 * MIB, 64)).await.unwrap();
    let info = c.cancel_task(&queued, "alice").await.unwrap();
    let TaskStatus::Cancelled { by, at_ms } = &info.status else { panic!("{info:?}") };
    assert_eq!(by, "alice");
    assert!(*at_ms > 0);
    assert!(c.cancel_task(&queued, "bob").await.is_err(), "cancelled twice");
    let w = worker(&c, 2, 1 << 30);
    wait_nodes(&c, 1).await;
    // A program that cannot be loaded (its memory is too small for it) fails with a reason.
    let mut tiny = TaskPayload::new(program("hello"), "hello", &[]);
    tiny.limits.memory_bytes = 64 << 10;
    let bad = c.submit_task(TaskType::CpuIntensive, tiny).await.unwrap();
    let info = c.wait_task(&bad).await.unwrap();
    let TaskStatus::Failed { reasons } = &info.status else { panic!("{info:?}") };
    assert!(reasons.iter().any(|r| r.starts_with("load error")), "{reasons:?}");
    assert!(matches!(info.result.as_ref().map(|r| &r.exit), Some(TaskExit::LoadFailed(_))));
    let ok = c.submit_task(TaskType::CpuIntensive, gen(10, 64 * MIB, 64)).await.unwrap();
    assert_eq!(c.wait_task(&ok).await.unwrap().attempts, 1);
    w.stop().await.unwrap();
    c.shutdown().await;
    // Restarted on the same data: every outcome and attempt count is as it was.
    let c = coordinator(dir.path()).await;
    let info = c.get_task_status(&queued).await.unwrap();
    assert!(matches!(&info.status, TaskStatus::Cancelled { by, .. } if by == "alice"));
    let info = c.get_task_status(&bad).await.unwrap();
    assert!(matches!(info.status, TaskStatus::Failed { .. }), "{info:?}");
    assert_eq!(info.attempts, 1, "attempts survive a restart");
    assert_eq!(c.get_task_status(&ok).await.unwrap().attempts, 1);
    let counts = c.cluster_status().await.unwrap().tasks;
    assert_eq!((counts.cancelled, counts.failed, counts.completed), (1, 1, 1), "{counts:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_uploads_an_image_once_and_large_inputs_travel_in_frames() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(dir.path()).await;
    let w = worker(&c, 2, 1 << 30);
    wait_nodes(&c, 1).await;
    let client = ClusterClient::connect_retrying(
        &c.local_addr().to_string(),
        &token(),
        Duration::from_secs(5),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    // An image padded past one frame still loads (the bytes after its segments are unused).
    let mut image = program("stream");
    image.resize(image.len() + (18 << 20), 0);
    let hash = vm_distributed::protocol::ImageHash::of(&image);
    assert!(!client.has_image(hash).await.unwrap());
    let mut p = TaskPayload::new(image, "stream", &[]);
    p.stdin = pattern(17 << 20);
    p.limits.output_cap = 20 << 20;
    let id = tokio::time::timeout(
        Duration::from_secs(120),
        client.submit_payload(TaskType::IoIntensive, p.clone()),
    )
    .await
    .expect("the submission never finished")
    .unwrap();
    assert!(client.has_image(hash).await.unwrap());
    let info = tokio::time::timeout(Duration::from_secs(120), client.wait(id))
        .await
        .expect("the result never came back")
        .unwrap()
        .unwrap();
    assert_eq!(info.status, TaskStatus::Completed { exit_status: 0 }, "{info:?}");
    assert!(info.result.unwrap().stdout == p.stdin, "stdin did not come back as stdout");
    // Over the limits: refused by the client, before sending.
    let mut spec = p.spec();
    spec.stdin = vec![0; vm_distributed::protocol::MAX_STDIN_BYTES + 1]; // untouched pages
    let e = client.submit(TaskType::IoIntensive, spec).await.unwrap_err();
    assert!(e.to_string().contains("stdin has"), "{e}");
    drop(client);
    w.stop().await.unwrap();
    c.shutdown().await;
}
