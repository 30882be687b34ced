//! The behaviour every [`TaskStore`] promises (see `vm_distributed::store`), checked against
//! each backend: redb in a temporary directory, and PostgreSQL on a server this test starts
//! (`vm_test_support::pg`; skipped with a printed reason when PostgreSQL is absent, unless
//! `VMX_REQUIRE_POSTGRES` is set).

use vm_test_support::pg;

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Weak};
use vm_distributed::protocol::CoordinatorInfo;
use vm_distributed::protocol::{
    ImageHash, NodeId, TaskExit, TaskId, TaskLimits, TaskResult, TaskSpec, TaskStatus, TaskType,
};
use vm_distributed::store::postgres::PgOptions;
use vm_distributed::store::{
    Lease, LeaseOp, LeaseOutcome, PgStore, Recovered, RedbStore, StoreOp, TaskRecord, TaskStore,
};

/// Opens (and reopens) one store.
trait Backend {
    fn open(&self) -> (Arc<dyn TaskStore>, Recovered);
}

struct Redb(tempfile::TempDir);

impl Backend for Redb {
    fn open(&self) -> (Arc<dyn TaskStore>, Recovered) {
        let (s, r) = RedbStore::open(self.0.path(), true).unwrap();
        (Arc::new(s), r)
    }
}

struct Pg(String);

impl Backend for Pg {
    fn open(&self) -> (Arc<dyn TaskStore>, Recovered) {
        let (s, r) = PgStore::open(&self.0, PgOptions::default()).unwrap();
        (Arc::new(s), r)
    }
}

fn record(id: u64) -> TaskRecord {
    TaskRecord {
        id: TaskId(id),
        task_type: TaskType::CpuIntensive,
        spec: TaskSpec {
            image: ImageHash::of(b"x"),
            args: vec![b"p".to_vec(), id.to_string().into_bytes()],
            env: vec![],
            stdin: vec![],
            limits: TaskLimits::default(),
        },
        submitted_at_ms: 1000 + id,
        failed_attempts: 0,
        attempts: 0,
        reasons: vec![],
        status: TaskStatus::Queued,
    }
}

fn result(code: i32, attempt: u32) -> TaskResult {
    TaskResult {
        exit: TaskExit::Exited(code),
        stdout: format!("out {code} {attempt}").into_bytes(),
        stderr: vec![],
        output_dropped: 0,
        instructions: 10,
        run_time_us: 5,
        node: NodeId(1),
        attempt,
    }
}

fn completed(mut rec: TaskRecord, code: i32) -> TaskRecord {
    rec.status = TaskStatus::Completed { exit_status: code };
    rec
}

fn put(store: &dyn TaskStore, ids: std::ops::RangeInclusive<u64>) {
    for i in ids {
        store.apply(StoreOp::PutTask(record(i)), None);
    }
    store.sync();
}

/// A submission's callback runs only once a read (and a reopened store) sees it.
fn submit_is_durable_before_its_acknowledgement(b: &dyn Backend) {
    let (store, rec) = b.open();
    assert!(rec.tasks.is_empty());
    let weak: Weak<dyn TaskStore> = Arc::downgrade(&store);
    let (tx, rx) = mpsc::channel();
    for i in 1..=300 {
        let (tx, weak) = (tx.clone(), weak.clone());
        store.apply(
            StoreOp::PutTask(record(i)),
            Some(Box::new(move |r| {
                let seen = weak.upgrade().map(|s| s.task(TaskId(i)).unwrap().is_some());
                tx.send((i, r.is_ok(), seen)).unwrap();
            })),
        );
    }
    for _ in 1..=300 {
        let (i, ok, seen) = rx.recv().unwrap();
        assert!(ok, "task {i} not committed");
        assert_eq!(seen, Some(true), "task {i} acknowledged before it was readable");
    }
    let commits = store.stats().commits.load(Ordering::Relaxed);
    assert!(commits < 300, "group commit should batch: {commits} commits");
    drop(store);
    let (_store, rec) = b.open();
    assert_eq!(rec.tasks.len(), 300);
}

fn claim_lease_renew_and_expire(b: &dyn Backend) {
    let (s, _) = b.open();
    put(&*s, 1..=3);
    let c = s.claim("A", 1000, 100, 2).unwrap();
    assert_eq!(c.iter().map(|c| (c.record.id.0, c.attempt)).collect::<Vec<_>>(), [(1, 1), (2, 1)]);
    assert_eq!(c[0].record.attempts, 1);
    let c = s.claim("B", 1050, 100, 10).unwrap();
    assert_eq!(c.iter().map(|c| c.record.id.0).collect::<Vec<_>>(), [3], "live leases are kept");
    assert!(s.claim("B", 1050, 100, 10).unwrap().is_empty());
    assert!(s.renew(TaskId(1), "A", 1, 1090, 100).unwrap(), "the owner renews");
    assert!(!s.renew(TaskId(2), "B", 1, 1090, 100).unwrap(), "not the owner");
    assert!(!s.renew(TaskId(2), "A", 2, 1090, 100).unwrap(), "not the attempt");
    // At 1140 the lease on 2 (until 1100) expired; those on 1 (renewed until 1190) and 3
    // (until 1150) not.
    let c = s.claim("B", 1140, 100, 10).unwrap();
    assert_eq!(c.iter().map(|c| (c.record.id.0, c.attempt)).collect::<Vec<_>>(), [(2, 2)]);
    assert_eq!(
        s.lease(TaskId(2)).unwrap(),
        Some(Lease { owner: "B".into(), attempt: 2, until_ms: 1240 })
    );
    assert!(!s.renew(TaskId(2), "A", 1, 1160, 100).unwrap(), "an expired, re-claimed lease");
    assert_eq!(s.task(TaskId(2)).unwrap().unwrap().attempts, 2);
}

fn one_result_per_task_fenced_by_attempt(b: &dyn Backend) {
    let (s, _) = b.open();
    put(&*s, 1..=1);
    let first = s.claim("A", 1000, 100, 1).unwrap().remove(0);
    let second = s.claim("B", 1200, 100, 1).unwrap().remove(0);
    assert_eq!((first.attempt, second.attempt), (1, 2));
    // A's late result (attempt 1) is refused; B's is recorded once; a duplicate is refused.
    let late = completed(first.record.clone(), 1);
    assert!(!s.finish(late, 1, Some(result(1, 1))).unwrap(), "a stale attempt");
    let done = completed(second.record.clone(), 2);
    assert!(s.finish(done.clone(), 2, Some(result(2, 2))).unwrap());
    assert!(!s.finish(done, 2, Some(result(3, 2))).unwrap(), "a duplicate");
    assert_eq!(s.result(TaskId(1)).unwrap(), Some(result(2, 2)));
    assert_eq!(
        s.task(TaskId(1)).unwrap().unwrap().status,
        TaskStatus::Completed { exit_status: 2 }
    );
    assert_eq!(s.lease(TaskId(1)).unwrap(), None, "a final task holds no lease");
    assert!(s.claim("C", 5000, 100, 10).unwrap().is_empty(), "a final task is not claimed");
    // Finishing with a record that is not final is refused too.
    put(&*s, 2..=2);
    let c = s.claim("A", 1000, 100, 1).unwrap().remove(0);
    assert!(!s.finish(c.record, 1, None).unwrap());
}

fn everything_survives_a_restart(b: &dyn Backend) {
    let (s, rec) = b.open();
    assert!(rec.tasks.is_empty() && rec.images.is_empty());
    s.apply(StoreOp::PutImage(ImageHash::of(b"x"), Arc::new(b"x".to_vec())), None);
    s.apply(StoreOp::PutImage(ImageHash::of(b"x"), Arc::new(b"x".to_vec())), None);
    put(&*s, 1..=20);
    s.apply(StoreOp::Finish(completed(record(7), 3), Some(result(3, 1))), None);
    let claimed = s.claim("A", 1000, 60_000, 2).unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(s.cancel(TaskId(9), "someone", 77).unwrap());
    s.sync();
    drop(s);
    let (s, rec) = b.open();
    assert_eq!(rec.tasks.len(), 20);
    assert_eq!(rec.images, vec![(ImageHash::of(b"x"), b"x".to_vec())]);
    assert_eq!(rec.tasks[6].status, TaskStatus::Completed { exit_status: 3 });
    assert_eq!(rec.tasks[8].status, TaskStatus::Cancelled { by: "someone".into(), at_ms: 77 });
    assert_eq!(rec.tasks[0].attempts, 1, "attempt counts survive");
    assert_eq!(rec.tasks[7], record(8));
    assert_eq!(s.result(TaskId(7)).unwrap(), Some(result(3, 1)));
    assert_eq!(s.result(TaskId(8)).unwrap(), None);
    assert_eq!(
        s.lease(TaskId(1)).unwrap(),
        Some(Lease { owner: "A".into(), attempt: 1, until_ms: 61_000 }),
        "leases survive"
    );
    // The next claim skips the leased, final and cancelled tasks.
    let c = s.claim("B", 2000, 100, 1).unwrap();
    assert_eq!(c[0].record.id, TaskId(3));
}

fn cancel_ends_a_task_once(b: &dyn Backend) {
    let (s, _) = b.open();
    put(&*s, 1..=3);
    assert!(s.cancel(TaskId(1), "me", 5).unwrap(), "a queued task");
    let c = s.claim("A", 1000, 100, 1).unwrap().remove(0);
    assert_eq!(c.record.id, TaskId(2), "a cancelled task is not claimed");
    assert!(s.cancel(TaskId(2), "me", 6).unwrap(), "a claimed task");
    assert!(!s.finish(completed(c.record, 0), 1, Some(result(0, 1))).unwrap(), "then its result");
    assert_eq!(s.result(TaskId(2)).unwrap(), None);
    assert!(!s.cancel(TaskId(2), "me", 7).unwrap(), "twice");
    assert!(!s.cancel(TaskId(99), "me", 7).unwrap(), "an unknown task");
    assert_eq!(
        s.task(TaskId(2)).unwrap().unwrap().status,
        TaskStatus::Cancelled { by: "me".into(), at_ms: 6 }
    );
}

/// One behaviour of the suite.
type Case = fn(&dyn Backend);

fn run_suite(fresh: &mut dyn FnMut() -> Box<dyn Backend>) {
    let cases: [(&str, Case); 5] = [
        (
            "submit is durable before its acknowledgement",
            submit_is_durable_before_its_acknowledgement,
        ),
        ("claim, lease, renew and expire", claim_lease_renew_and_expire),
        ("one result per task, fenced by attempt", one_result_per_task_fenced_by_attempt),
        ("everything survives a restart", everything_survives_a_restart),
        ("cancel ends a task once", cancel_ends_a_task_once),
    ];
    for (name, case) in cases {
        eprintln!("  {name}");
        case(&*fresh());
    }
}

fn lease_op(s: &dyn TaskStore, op: LeaseOp) -> LeaseOutcome {
    s.lease_op(op).unwrap()
}

fn beat(s: &dyn TaskStore, id: &str, now_ms: u64) -> Vec<(TaskId, u32)> {
    beat_waiting(s, id, now_ms, &[])
}

/// A heartbeat of a coordinator that has not started `waiting` (their leases last 20 ms).
fn beat_waiting(
    s: &dyn TaskStore,
    id: &str,
    now_ms: u64,
    waiting: &[TaskId],
) -> Vec<(TaskId, u32)> {
    let info =
        CoordinatorInfo { id: id.into(), addr: format!("{id}:1"), pid: 1, ..Default::default() };
    let op =
        LeaseOp::Beat { info, now_ms, lease_ms: 100, waiting: waiting.to_vec(), waiting_ms: 20 };
    match lease_op(s, op) {
        LeaseOutcome::Held(mut h) => {
            h.sort();
            h
        }
        o => panic!("{o:?}"),
    }
}

/// The operations of a store several coordinators share (PostgreSQL only): ids from the
/// database, heartbeats renewing leases, take-over of a failed-over worker's tasks, results
/// reported to a coordinator that does not hold the task, giving a task back; every one
/// fenced by the attempt.
fn shared_operations(s: &dyn TaskStore) {
    assert!(s.shared());
    let ids: Vec<TaskId> = (0..3).map(|_| s.insert(record(0)).unwrap()).collect();
    assert_eq!(ids, [TaskId(1), TaskId(2), TaskId(3)], "ids from the database's sequence");
    assert_eq!(s.task(TaskId(2)).unwrap().unwrap().spec, record(0).spec);
    let c = s.claim("A", 1000, 100, 2).unwrap();
    assert_eq!(c.len(), 2);
    // A's heartbeat renews both its leases; B holds nothing.
    assert_eq!(beat(s, "A", 1050), [(TaskId(1), 1), (TaskId(2), 1)]);
    assert_eq!(s.lease(TaskId(1)).unwrap().unwrap().until_ms, 1150);
    // Task 2 has not started: its lease is renewed for a shorter time only (were A to die,
    // it would be claimable elsewhere sooner); the next heartbeat renews it fully again.
    assert_eq!(beat_waiting(s, "A", 1051, &[TaskId(2)]), [(TaskId(1), 1), (TaskId(2), 1)]);
    assert_eq!(s.lease(TaskId(1)).unwrap().unwrap().until_ms, 1151);
    assert_eq!(s.lease(TaskId(2)).unwrap().unwrap().until_ms, 1071);
    assert_eq!(beat(s, "A", 1052), [(TaskId(1), 1), (TaskId(2), 1)]);
    assert_eq!(s.lease(TaskId(2)).unwrap().unwrap().until_ms, 1152);
    assert!(beat(s, "B", 1050).is_empty());
    let names: Vec<String> = s.coordinators().unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // A dies; its worker fails over to B and reports task 1 (attempt 1) and a stale attempt
    // of task 2: B takes over task 1 only.
    let op = LeaseOp::Adopt {
        owner: "B".into(),
        tasks: vec![(TaskId(1), 1), (TaskId(2), 7)],
        now_ms: 1100,
        lease_ms: 100,
    };
    match lease_op(s, op) {
        LeaseOutcome::Claimed(c) => {
            assert_eq!(
                c.iter().map(|c| (c.record.id, c.attempt)).collect::<Vec<_>>(),
                [(TaskId(1), 1)]
            )
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(beat(s, "A", 1110), [(TaskId(2), 1)], "A no longer holds task 1");
    // A result reported for a stale attempt is ignored; the current one is recorded, once.
    let report = |task: u64, code: i32, attempt: u32| LeaseOp::FinishReported {
        task: TaskId(task),
        result: Box::new(result(code, attempt)),
    };
    assert_eq!(lease_op(s, report(1, 9, 2)), LeaseOutcome::Finished(false));
    assert_eq!(lease_op(s, report(1, 4, 1)), LeaseOutcome::Finished(true));
    assert_eq!(lease_op(s, report(1, 5, 1)), LeaseOutcome::Finished(false), "a duplicate");
    assert_eq!(s.result(TaskId(1)).unwrap(), Some(result(4, 1)));
    assert_eq!(
        s.task(TaskId(1)).unwrap().unwrap().status,
        TaskStatus::Completed { exit_status: 4 }
    );
    // Giving task 2 back: only its owner may, and it is claimable after the back-off, as
    // attempt 2.
    let mut back = s.task(TaskId(2)).unwrap().unwrap();
    back.failed_attempts = 1;
    back.reasons = vec!["worker error".into()];
    let release = |owner: &str| LeaseOp::Release {
        record: Box::new(back.clone()),
        owner: owner.into(),
        attempt: 1,
        retry_at_ms: 1500,
    };
    assert_eq!(lease_op(s, release("B")), LeaseOutcome::Released(false), "not B's lease");
    assert_eq!(lease_op(s, release("A")), LeaseOutcome::Released(true));
    let c = s.claim("B", 1400, 1000, 10).unwrap();
    assert_eq!(c.iter().map(|c| c.record.id).collect::<Vec<_>>(), [TaskId(3)], "2 backs off");
    let c = s.claim("B", 1500, 100, 10).unwrap();
    assert_eq!(c.iter().map(|c| (c.record.id, c.attempt)).collect::<Vec<_>>(), [(TaskId(2), 2)]);
    assert_eq!(c[0].record.reasons, ["worker error"]);
    // Counts from the database: 1 completed, 2 and 3 running (live leases at 1550).
    let n = s.counts(1550).unwrap();
    assert_eq!((n.queued, n.running, n.completed), (0, 2, 1), "{n:?}");
    let n = s.counts(9999).unwrap();
    assert_eq!((n.queued, n.running), (2, 0), "expired leases count as queued: {n:?}");
    let mut finals = s.finals(&[TaskId(1), TaskId(2), TaskId(9)]).unwrap();
    finals.sort_by_key(|f| f.0);
    assert_eq!(finals.len(), 2, "9 is unknown");
    assert_eq!(finals[0].1.as_ref().map(|f| f.1.clone()), Some(Some(result(4, 1))));
    assert_eq!((finals[1].0, finals[1].1.is_none()), (TaskId(2), true), "2 is not final");
    // Many results queued at once (committed together): each fenced in order, duplicates
    // within the batch refused.
    let ids: Vec<TaskId> = (0..50).map(|_| s.insert(record(0)).unwrap()).collect();
    let claims = s.claim("C", 2000, 10_000, 100).unwrap();
    assert_eq!(claims.len(), 51, "the 50 new ones, and 2 whose lease expired");
    let (tx, rx) = std::sync::mpsc::channel();
    for (n, c) in claims.iter().enumerate() {
        for (k, attempt) in [c.attempt, c.attempt, c.attempt + 1].into_iter().enumerate() {
            let op = if k == 0 && n % 2 == 0 {
                LeaseOp::Finish {
                    record: Box::new(completed(c.record.clone(), 1)),
                    attempt,
                    result: Some(result(1, attempt)),
                }
            } else {
                LeaseOp::FinishReported { task: c.record.id, result: Box::new(result(2, attempt)) }
            };
            let (tx, id) = (tx.clone(), c.record.id);
            s.apply(
                StoreOp::Lease(
                    op,
                    Box::new(move |r| {
                        tx.send((id, k, r.unwrap())).unwrap();
                    }),
                ),
                None,
            );
        }
    }
    drop(tx);
    let mut recorded = std::collections::HashMap::new();
    for (id, k, o) in rx {
        assert_eq!(o == LeaseOutcome::Finished(true), k == 0, "{id:?} op {k}: {o:?}");
        if k == 0 {
            *recorded.entry(id).or_insert(0) += 1;
        }
    }
    assert_eq!(recorded.len(), 51);
    for (n, c) in claims.iter().enumerate() {
        let code = if n % 2 == 0 { 1 } else { 2 };
        assert_eq!(s.result(c.record.id).unwrap(), Some(result(code, c.attempt)));
        assert_eq!(s.lease(c.record.id).unwrap(), None);
    }
    assert!(ids.iter().all(|id| s.task(*id).unwrap().unwrap().status.is_final()));
    let n = s.counts(2000).unwrap();
    assert_eq!((n.queued, n.running, n.completed), (0, 1, 52), "3 is still leased: {n:?}");
}

#[test]
fn redb_backend() {
    run_suite(&mut || Box::new(Redb(tempfile::tempdir().unwrap())));
}

#[test]
fn postgres_backend() {
    let Some(server) = pg::PgServer::start() else { return };
    let mut n = 0;
    run_suite(&mut || {
        n += 1;
        Box::new(Pg(server.new_db(&format!("suite{n}"))))
    });
    eprintln!("  shared operations");
    let (s, _) = Pg(server.new_db("shared")).open();
    shared_operations(&*s);
    // A value altered in the database is refused, not served.
    let url = server.new_db("damaged");
    {
        let (s, _) = PgStore::open(&url, PgOptions::default()).unwrap();
        put(&s, 1..=2);
        s.apply(StoreOp::Finish(completed(record(2), 0), Some(result(0, 1))), None);
        s.sync();
    }
    server.sql(
        "damaged",
        "UPDATE vmx_results SET result = set_byte(result, 12, get_byte(result, 12) # 1)",
    );
    let (s, _) = PgStore::open(&url, PgOptions::default()).unwrap();
    let e = s.result(TaskId(2)).unwrap_err().to_string();
    assert!(e.contains("damaged"), "{e}");
    server.sql(
        "damaged",
        "UPDATE vmx_tasks SET record = set_byte(record, 12, get_byte(record, 12) # 1) WHERE id = 1",
    );
    let e = PgStore::open(&url, PgOptions::default()).unwrap_err().to_string();
    assert!(e.contains("damaged"), "{e}");
}
