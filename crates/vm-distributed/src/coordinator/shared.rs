//! The core's work with a task store that several coordinators share (PostgreSQL): the
//! database is the one source of truth, and each coordinator holds in memory only the tasks
//! it has a lease on.
//!
//! # Invariants
//! - Task ids come from the database (a sequence): a submission is acknowledged after its
//!   commit. It is inserted leased to the coordinator that took it (attempt 1, same
//!   transaction) while that coordinator's workers have room (free slots and backlog),
//!   otherwise unleased, and `NOTIFY` wakes every coordinator.
//! - A coordinator claims queued tasks (`FOR UPDATE SKIP LOCKED`) only while its workers
//!   have free slots, for those slots and a backlog of [`BACKLOG`] tasks per slot (so a
//!   slot that frees finds work without waiting for a commit); it claims on a
//!   notification, after a claim that came back full, and at least every [`POLL`] (the
//!   safety net for lost notifications and for leases that expired). Without workers it
//!   claims nothing.
//! - Every [`BEAT`] a coordinator writes its heartbeat row and extends every lease it holds
//!   to [`LEASE`] from now (only to [`WAITING_LEASE`] for tasks it holds that have not
//!   started: claims and leased inserts last that long too, so the work a dead coordinator
//!   held but had not started is claimed elsewhere within [`WAITING_LEASE`] and a [`POLL`],
//!   while its running tasks wait for their workers to fail over), in one transaction;
//!   a task it holds in memory whose lease is not
//!   among those extended was taken from it (expired, or cancelled through another
//!   coordinator): its worker is told to stop and the task is forgotten.
//! - A result is recorded only for the task's current attempt, in the transaction that ends
//!   the task ([`LeaseOp::Finish`], [`LeaseOp::FinishReported`]): a late or duplicate result
//!   of an older attempt is ignored, whichever coordinator it reaches.
//! - A worker that registers with tasks this coordinator does not know (its coordinator
//!   died) gets their leases taken over ([`LeaseOp::Adopt`]) when its attempt is current;
//!   the others are cancelled on it.
//! - A failed attempt gives the task back ([`LeaseOp::Release`]), claimable after its
//!   back-off by any coordinator; the attempt number grows with every claim.
//! - The queue limit (backpressure) is on the database's unfinished tasks: counted every
//!   [`BEAT`], plus the submissions accepted here since the count was asked for (between
//!   two counts, coordinators do not see each other's submissions: the limit can be
//!   overshot by what the others accept in that time). A submission beyond it is refused.
//! - Status, wait and cancel of a task held elsewhere (or not at all) read and write the
//!   database; waiters on such tasks are answered by polling every [`WAITER_POLL`].
//! - A final outcome whose commit failed (the database is unreachable) is retried until it
//!   commits or is refused; waiters are answered only after its commit.

use super::core::{dec, now_ms, Core, Event, Responder, Task};
use crate::fault_tolerance::Attempts;
use crate::protocol::{
    CoordinatorInfo, ImageHash, NodeId, TaskId, TaskInfo, TaskResult, TaskSpec, TaskStatus,
    TaskType, VmMessage,
};
use crate::store::{Claim, LeaseOp, LeaseOutcome, StoreOp, TaskRecord, TaskStore};
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a lease on a running task (and a heartbeat) lasts unless renewed.
pub const LEASE: Duration = Duration::from_millis(3000);
/// How long a lease on a task held here but not started lasts unless renewed: if this
/// coordinator dies, such tasks are claimable elsewhere after at most this long.
pub const WAITING_LEASE: Duration = Duration::from_millis(1500);
/// How often a coordinator renews its leases and heartbeat (well within
/// [`WAITING_LEASE`]).
pub const BEAT: Duration = Duration::from_millis(500);
/// Longest time between two claims while workers have free slots.
pub const POLL: Duration = Duration::from_millis(250);
/// How often waiters on tasks held elsewhere are checked.
pub const WAITER_POLL: Duration = Duration::from_millis(100);
/// Tasks a coordinator holds queued beyond its workers' free slots, per slot.
const BACKLOG: usize = 8;
/// Delay before a failed final commit is tried again.
const RETRY: Duration = Duration::from_millis(250);

/// The shared-store state of a core.
pub(super) struct Shared {
    /// This coordinator's heartbeat row (its `id` owns its leases).
    info: CoordinatorInfo,
    claiming: bool,
    pub(super) want_claim: bool,
    next_poll: Instant,
    beating: bool,
    next_beat: Instant,
    beat_failed: bool,
    remote_waiters: HashMap<TaskId, Vec<Responder>>,
    /// Submissions being inserted with a lease to this coordinator.
    inserting: usize,
    polling: bool,
    next_waiter_poll: Instant,
    /// The database's unfinished tasks at the last count, plus the submissions accepted
    /// here since that count was asked for: what the queue limit is checked against.
    unfinished: u64,
    counting: bool,
    next_count: Instant,
}

impl Shared {
    pub(super) fn new(addr: std::net::SocketAddr) -> Shared {
        let suffix =
            crate::auth::random_nonce().map_or(0, |n| u32::from_le_bytes([n[0], n[1], n[2], n[3]]));
        let pid = std::process::id();
        let now = Instant::now();
        Shared {
            info: CoordinatorInfo {
                id: format!("{addr}/{pid}/{suffix:08x}"),
                addr: addr.to_string(),
                pid,
                started_ms: now_ms(),
                seen_ms: 0,
                until_ms: 0,
            },
            claiming: false,
            want_claim: true,
            next_poll: now,
            beating: false,
            next_beat: now,
            beat_failed: false,
            remote_waiters: HashMap::new(),
            inserting: 0,
            polling: false,
            next_waiter_poll: now,
            unfinished: 0,
            counting: false,
            next_count: now,
        }
    }
}

fn info_of(rec: TaskRecord, result: Option<TaskResult>, running: Option<u32>) -> TaskInfo {
    let status = match (&rec.status, running) {
        (TaskStatus::Queued, Some(attempt)) => {
            // Held by another coordinator: which node runs it is known there only.
            TaskStatus::Running { node: NodeId(0), attempt }
        }
        (s, _) => s.clone(),
    };
    TaskInfo {
        id: rec.id,
        task_type: rec.task_type,
        status,
        attempts: rec.attempts,
        submitted_at_ms: rec.submitted_at_ms,
        result,
    }
}

/// A task's info as the database has it (`None`: unknown).
fn read_info(store: &dyn TaskStore, task: TaskId) -> Result<Option<TaskInfo>, crate::Error> {
    let Some(rec) = store.task(task)? else { return Ok(None) };
    if rec.status.is_final() {
        let result = store.result(task)?;
        return Ok(Some(info_of(rec, result, None)));
    }
    let now = now_ms();
    let running =
        store.lease(task)?.filter(|l| !l.owner.is_empty() && l.until_ms > now).map(|l| l.attempt);
    Ok(Some(info_of(rec, None, running)))
}

impl Core {
    fn shared_mut(&mut self) -> Option<&mut Shared> {
        self.shared.as_mut()
    }

    /// Whether a request about `task` is answered from the database.
    pub(super) fn is_remote(&self, task: TaskId) -> bool {
        self.shared.is_some() && !self.tasks.contains_key(&task)
    }

    /// Runs `f` on a blocking thread, then `then` with its outcome on the core.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn TaskStore) -> T + Send + 'static,
        then: impl FnOnce(&mut Core, T) + Send + 'static,
    ) {
        let store = self.store.clone();
        let events = self.events.clone();
        tokio::task::spawn_blocking(move || {
            let out = f(&*store);
            let _ = events.send(Event::Run(Box::new(move |core| then(core, out))));
        });
    }

    /// Queues a lease operation; `then` runs on the core with its outcome once committed.
    fn lease_then(
        &self,
        op: LeaseOp,
        then: impl FnOnce(&mut Core, Result<LeaseOutcome, String>) + Send + 'static,
    ) {
        let events = self.events.clone();
        self.store.apply(
            StoreOp::Lease(
                op,
                Box::new(move |r| {
                    let _ = events.send(Event::Run(Box::new(move |core| then(core, r))));
                }),
            ),
            None,
        );
    }

    /// Runs `f` on the core after [`RETRY`].
    fn later(&self, f: impl FnOnce(&mut Core) + Send + 'static) {
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RETRY).await;
            let _ = events.send(Event::Run(Box::new(f)));
        });
    }

    /// Answers the waiters polling the database for `task`, which ended here (committed).
    pub(super) fn answer_remote_waiters(&mut self, task: TaskId, info: &Option<TaskInfo>) {
        let Some(sh) = self.shared.as_mut() else { return };
        for w in sh.remote_waiters.remove(&task).unwrap_or_default() {
            let info = info.clone();
            w.reply(|req| VmMessage::Status { req, info });
        }
    }

    /// Drops a task from memory (the database keeps it); its waiters wait on the database.
    pub(super) fn forget(&mut self, task: TaskId) -> Option<Task> {
        let t = self.tasks.remove(&task)?;
        let status = if t.status.is_final() && !t.durable {
            // Counted as running until durable (see `finalize`).
            TaskStatus::Running { node: NodeId(0), attempt: 0 }
        } else {
            t.status.clone()
        };
        dec(super::core::count_of(&mut self.counts, &status));
        if let Some(w) = self.waiters.remove(&task) {
            if let Some(sh) = self.shared.as_mut() {
                sh.remote_waiters.entry(task).or_default().extend(w);
            }
        }
        Some(t)
    }

    /// Room for more tasks held here: the workers' free slots and the backlog, less what is
    /// held queued or being inserted leased to this coordinator.
    fn room(&self) -> usize {
        let pending = self.shared.as_ref().map_or(0, |sh| sh.inserting);
        (self.sched.free_slots() + BACKLOG * self.sched.capacity())
            .saturating_sub(self.queue.len() + pending)
    }

    /// A submission: inserted with an id from the database, acknowledged after its commit.
    /// While this coordinator's workers have room, the task is leased to it in the same
    /// transaction (one commit less before it runs); otherwise it is left for any
    /// coordinator to claim.
    pub(super) fn submit_shared(&mut self, task_type: TaskType, spec: TaskSpec, reply: Responder) {
        let mut record = TaskRecord {
            id: TaskId(0),
            task_type,
            spec,
            submitted_at_ms: now_ms(),
            failed_attempts: 0,
            attempts: 0,
            reasons: Vec::new(),
            status: TaskStatus::Queued,
        };
        let room = self.room();
        let max_queued = self.max_queued;
        let Some(sh) = self.shared.as_mut() else { return };
        if sh.unfinished >= max_queued {
            return reply.fail(format!(
                "the queue is full ({} tasks unfinished in the database)",
                sh.unfinished
            ));
        }
        sh.unfinished += 1;
        let lease =
            (room > 0).then(|| (sh.info.id.clone(), now_ms() + WAITING_LEASE.as_millis() as u64));
        let leased = lease.is_some();
        sh.inserting += usize::from(leased);
        let events = self.events.clone();
        let op = LeaseOp::Insert { record: Box::new(record.clone()), lease };
        self.store.apply(
            StoreOp::Lease(
                op,
                Box::new(move |r| {
                    let ok = match r {
                        Ok(LeaseOutcome::Inserted(task)) => {
                            reply.reply(|req| VmMessage::Submitted { req, task });
                            record.id = task;
                            record.attempts = 1;
                            Some(record)
                        }
                        Ok(o) => {
                            reply.fail(format!("cannot store the task: unexpected {o:?}"));
                            None
                        }
                        Err(e) => {
                            reply.fail(format!("cannot store the task: {e}"));
                            None
                        }
                    };
                    if !leased {
                        let _ = events.send(Event::Wake);
                        return;
                    }
                    let _ = events.send(Event::Run(Box::new(move |core| {
                        if let Some(sh) = core.shared_mut() {
                            sh.inserting = sh.inserting.saturating_sub(1);
                        }
                        if let Some(record) = ok {
                            core.take_claims(vec![Claim { record, attempt: 1 }], None);
                        }
                    })));
                }),
            ),
            None,
        );
    }

    /// Claims queued tasks for the free slots of this coordinator's workers (see the module
    /// docs for when).
    pub(super) fn maybe_claim(&mut self) {
        let now = Instant::now();
        // Enough for the free slots and a backlog of BACKLOG times the slots, so a slot that
        // frees finds work at once instead of waiting for the next claim's commit.
        let room = self.room();
        let Some(sh) = self.shared.as_mut() else { return };
        if sh.claiming || !(sh.want_claim || now >= sh.next_poll) {
            return;
        }
        if room == 0 {
            return;
        }
        sh.claiming = true;
        sh.want_claim = false;
        sh.next_poll = now + POLL;
        let op = LeaseOp::Claim {
            owner: sh.info.id.clone(),
            now_ms: now_ms(),
            lease_ms: WAITING_LEASE.as_millis() as u64,
            max: room,
        };
        self.lease_then(op, move |core, r| {
            if let Some(sh) = core.shared_mut() {
                sh.claiming = false;
            }
            match r {
                Ok(LeaseOutcome::Claimed(claims)) => {
                    if claims.len() >= room {
                        // There may be more.
                        if let Some(sh) = core.shared_mut() {
                            sh.want_claim = true;
                        }
                    }
                    core.take_claims(claims, None);
                }
                Ok(o) => tracing::error!("claim: unexpected {o:?}"),
                Err(e) => tracing::warn!("cannot claim tasks: {e}"),
            }
        });
    }

    /// Holds `claims` in memory: queued for dispatch, or (`on`) running on that node. Images
    /// this coordinator has not seen are read from the database first.
    fn take_claims(&mut self, claims: Vec<Claim>, on: Option<NodeId>) {
        let missing: HashSet<ImageHash> = claims
            .iter()
            .map(|c| c.record.spec.image)
            .filter(|h| !self.images.contains_key(h))
            .collect();
        if missing.is_empty() || on.is_some() {
            return self.hold(claims, on);
        }
        self.blocking(
            move |store| missing.into_iter().map(|h| (h, store.image(h))).collect::<Vec<_>>(),
            move |core, images| {
                for (h, r) in images {
                    match r {
                        Ok(Some(bytes)) => {
                            core.images.insert(h, Arc::new(bytes));
                        }
                        Ok(None) => tracing::error!("image {h} is not in the database"),
                        Err(e) => tracing::error!("cannot read image {h}: {e}"),
                    }
                }
                core.hold(claims, on);
            },
        );
    }

    fn hold(&mut self, claims: Vec<Claim>, on: Option<NodeId>) {
        let (now, wall) = (Instant::now(), now_ms());
        for Claim { record: rec, attempt } in claims {
            let id = rec.id;
            if self.tasks.contains_key(&id) {
                continue;
            }
            let deadline = rec.spec.limits.deadline_ms.map(|ms| {
                now + Duration::from_millis((rec.submitted_at_ms + ms).saturating_sub(wall))
            });
            let image_known = self.images.contains_key(&rec.spec.image);
            let att = Attempts {
                started: if on.is_some() { attempt } else { attempt - 1 },
                failed: rec.failed_attempts,
                reasons: rec.reasons,
                deadline,
                current: on.map(|n| (n, attempt)),
                ..Default::default()
            };
            let status = match on {
                Some(node) => TaskStatus::Running { node, attempt },
                None => TaskStatus::Queued,
            };
            *super::core::count_of(&mut self.counts, &status) += 1;
            self.tasks.insert(
                id,
                Task {
                    task_type: rec.task_type,
                    spec: Arc::new(rec.spec),
                    submitted_at_ms: rec.submitted_at_ms,
                    status,
                    att,
                    result: None,
                    durable: true,
                    lease: attempt,
                },
            );
            if let Some(d) = deadline {
                self.deadlines.push(Reverse((d, id)));
            }
            // Waiters on it are answered when it ends here, without polling.
            if let Some(w) = self.shared.as_mut().and_then(|sh| sh.remote_waiters.remove(&id)) {
                self.waiters.entry(id).or_default().extend(w);
            }
            if on.is_none() {
                if image_known {
                    self.queue.push_back(id);
                } else {
                    let reason = "its program image is missing from the database".to_string();
                    if let Some(t) = self.tasks.get_mut(&id) {
                        t.att.reasons.push(reason);
                        t.att.finished = true;
                    }
                    self.give_up(id);
                }
            }
        }
    }

    /// A worker registered running tasks this coordinator does not hold.
    pub(super) fn adopt(&mut self, node: NodeId, tasks: Vec<(TaskId, u32)>) {
        let Some(sh) = self.shared.as_ref() else { return };
        let op = LeaseOp::Adopt {
            owner: sh.info.id.clone(),
            tasks: tasks.clone(),
            now_ms: now_ms(),
            lease_ms: LEASE.as_millis() as u64,
        };
        self.lease_then(op, move |core, r| match r {
            Ok(LeaseOutcome::Claimed(claims)) => {
                let taken: HashSet<TaskId> = claims.iter().map(|c| c.record.id).collect();
                tracing::info!("{node}: took over {} of its {} tasks", taken.len(), tasks.len());
                for (task, _) in &tasks {
                    if !taken.contains(task) && !core.tasks.contains_key(task) {
                        core.send(node, VmMessage::Cancel { task: *task });
                    }
                }
                core.take_claims(claims, Some(node));
            }
            Ok(o) => tracing::error!("adopt: unexpected {o:?}"),
            // Their leases expire and they run again elsewhere; results still count if
            // their attempt is current when reported.
            Err(e) => tracing::warn!("cannot take over the tasks of {node}: {e}"),
        });
    }

    /// A result for a task this coordinator does not hold: recorded if its attempt is
    /// current.
    pub(super) fn finish_reported(&mut self, node: NodeId, task: TaskId, result: TaskResult) {
        self.finish_reported_try(node, task, result, 0);
    }

    fn finish_reported_try(&mut self, node: NodeId, task: TaskId, result: TaskResult, tries: u32) {
        let op = LeaseOp::FinishReported { task, result: Box::new(result.clone()) };
        self.lease_then(op, move |core, r| match r {
            Ok(LeaseOutcome::Finished(recorded)) => {
                tracing::debug!("result of {task} from {node}: recorded {recorded}");
                if recorded && core.tasks.get(&task).is_some_and(|t| t.lease == result.attempt) {
                    core.forget(task);
                }
            }
            Ok(o) => tracing::error!("finish: unexpected {o:?}"),
            Err(e) if tries < 240 => {
                tracing::warn!("cannot record the result of {task} yet: {e}");
                core.later(move |core| core.finish_reported_try(node, task, result, tries + 1));
            }
            Err(e) => tracing::error!("the result of {task} from {node} is lost: {e}"),
        });
    }

    /// Commits a held task's final outcome (fenced by its lease's attempt); retried while
    /// the database cannot be reached.
    pub(super) fn finish_shared(&mut self, task: TaskId) {
        let Some(t) = self.tasks.get(&task) else { return };
        let Some(record) = self.record(task) else { return };
        let op = match &t.status {
            TaskStatus::Cancelled { by, at_ms } => {
                LeaseOp::Cancel { task, by: by.clone(), at_ms: *at_ms }
            }
            _ => LeaseOp::Finish {
                record: Box::new(record),
                attempt: t.lease,
                result: t.result.clone(),
            },
        };
        self.lease_then(op, move |core, r| match r {
            Ok(LeaseOutcome::Finished(true) | LeaseOutcome::Cancelled(true)) => {
                core.handle(Event::Durable { task, ok: true });
            }
            Ok(LeaseOutcome::Finished(false) | LeaseOutcome::Cancelled(false)) => {
                // Ended elsewhere, or the lease was lost: the database has the outcome.
                tracing::info!("{task}: outcome not recorded here (ended elsewhere or lease lost)");
                core.forget(task);
            }
            Ok(o) => tracing::error!("finish: unexpected {o:?}"),
            Err(e) => {
                tracing::warn!("the outcome of {task} is not durable yet: {e}");
                core.later(move |core| core.finish_shared(task));
            }
        });
    }

    /// Gives a task back after a failed attempt: claimable again after `after`.
    pub(super) fn release(&mut self, task: TaskId, after: Duration) {
        let Some(t) = self.tasks.get(&task) else { return };
        let attempt = t.lease;
        let Some(record) = self.record(task) else { return };
        let Some(owner) = self.shared.as_ref().map(|sh| sh.info.id.clone()) else { return };
        self.forget(task);
        let op = LeaseOp::Release {
            record: Box::new(record),
            owner,
            attempt,
            retry_at_ms: now_ms() + after.as_millis() as u64,
        };
        self.lease_then(op, move |_, r| {
            if let Err(e) = r {
                tracing::warn!("cannot give {task} back (its lease will expire): {e}");
            }
        });
    }

    pub(super) fn status_remote(&mut self, task: TaskId, reply: Responder) {
        self.blocking(
            move |store| read_info(store, task),
            move |_, r| match r {
                Ok(info) => reply.reply(|req| VmMessage::Status { req, info }),
                Err(e) => reply.fail(format!("cannot read {task}: {e}")),
            },
        );
    }

    /// A wait on a task this coordinator does not hold: answered when it ends here (if it
    /// is claimed here meanwhile) or by the next poll of the database (which also finds
    /// unknown tasks), without a read per request.
    pub(super) fn wait_remote(&mut self, task: TaskId, reply: Responder) {
        if let Some(sh) = self.shared_mut() {
            sh.remote_waiters.entry(task).or_default().push(reply);
        }
    }

    pub(super) fn cancel_remote(&mut self, task: TaskId, by: String, reply: Responder) {
        self.blocking(
            move |store| {
                let cancelled = store.cancel(task, &by, now_ms())?;
                Ok::<_, crate::Error>((cancelled, read_info(store, task)?))
            },
            move |_, r| match r {
                Ok((true, info)) => {
                    tracing::info!("{task} cancelled (held by another coordinator, or queued)");
                    reply.reply(|req| VmMessage::Status { req, info })
                }
                Ok((false, None)) => reply.reply(|req| VmMessage::Status { req, info: None }),
                Ok((false, Some(info))) => {
                    reply.fail(format!("{task} is already {}", info.status.name()))
                }
                Err(e) => reply.fail(format!("cannot cancel {task}: {e}")),
            },
        );
    }

    pub(super) fn cluster_shared(&mut self, reply: Responder) {
        let nodes = self.nodes_list();
        self.blocking(
            |store| Ok::<_, crate::Error>((store.counts(now_ms())?, store.coordinators()?)),
            move |_, r| match r {
                Ok((tasks, coordinators)) => {
                    reply.reply(|req| VmMessage::ClusterStatus { req, nodes, tasks, coordinators })
                }
                Err(e) => reply.fail(format!("cannot read the task counts: {e}")),
            },
        );
    }

    /// The periodic work of a shared store: heartbeat and lease renewal, the claim poll,
    /// waiters on tasks held elsewhere.
    pub(super) fn shared_tick(&mut self, now: Instant) {
        let Some(sh) = self.shared.as_mut() else { return };
        if !sh.beating && now >= sh.next_beat {
            sh.beating = true;
            sh.next_beat = now + BEAT;
            let info = sh.info.clone();
            let waiting: Vec<TaskId> = self
                .tasks
                .iter()
                .filter(|(_, t)| matches!(t.status, TaskStatus::Queued))
                .map(|(id, _)| *id)
                .collect();
            let op = LeaseOp::Beat {
                info,
                now_ms: now_ms(),
                lease_ms: LEASE.as_millis() as u64,
                waiting,
                waiting_ms: WAITING_LEASE.as_millis() as u64,
            };
            self.lease_then(op, |core, r| core.beaten(r));
        }
        let Some(sh) = self.shared.as_mut() else { return };
        if !sh.counting && now >= sh.next_count {
            // Submissions accepted from now on are added to the count read.
            sh.counting = true;
            sh.next_count = now + BEAT;
            let before = sh.unfinished;
            self.blocking(
                |store| store.unfinished(),
                move |core, r| {
                    let Some(sh) = core.shared_mut() else { return };
                    sh.counting = false;
                    match r {
                        Ok(n) => sh.unfinished = n + sh.unfinished.saturating_sub(before),
                        Err(e) => tracing::warn!("cannot count the unfinished tasks: {e}"),
                    }
                },
            );
        }
        let Some(sh) = self.shared.as_mut() else { return };
        if !sh.polling && !sh.remote_waiters.is_empty() && now >= sh.next_waiter_poll {
            sh.polling = true;
            sh.next_waiter_poll = now + WAITER_POLL;
            let ids: Vec<TaskId> = sh.remote_waiters.keys().copied().collect();
            self.blocking(
                move |store| (store.finals(&ids), ids),
                |core, (r, ids)| {
                    let Some(sh) = core.shared_mut() else { return };
                    sh.polling = false;
                    match r {
                        Ok(known) => {
                            let mut unknown: HashSet<TaskId> = ids.into_iter().collect();
                            for (id, fin) in known {
                                unknown.remove(&id);
                                let Some((rec, result)) = fin else { continue };
                                let info = Some(info_of(rec, result, None));
                                for w in sh.remote_waiters.remove(&id).unwrap_or_default() {
                                    let info = info.clone();
                                    w.reply(|req| VmMessage::Status { req, info });
                                }
                            }
                            for id in unknown {
                                for w in sh.remote_waiters.remove(&id).unwrap_or_default() {
                                    w.reply(|req| VmMessage::Status { req, info: None });
                                }
                            }
                        }
                        Err(e) => tracing::warn!("cannot read finished tasks: {e}"),
                    }
                },
            );
        }
    }

    /// A heartbeat committed (or failed): tasks held in memory whose lease was not renewed
    /// were taken away.
    fn beaten(&mut self, r: Result<LeaseOutcome, String>) {
        let Some(sh) = self.shared.as_mut() else { return };
        sh.beating = false;
        let held = match r {
            Ok(LeaseOutcome::Held(held)) => {
                if sh.beat_failed {
                    tracing::info!("heartbeat written again");
                    sh.beat_failed = false;
                }
                held
            }
            Ok(o) => return tracing::error!("heartbeat: unexpected {o:?}"),
            Err(e) => {
                if !sh.beat_failed {
                    tracing::warn!("cannot write the heartbeat: {e}");
                    sh.beat_failed = true;
                }
                return;
            }
        };
        let held: HashSet<(TaskId, u32)> = held.into_iter().collect();
        let lost: Vec<(TaskId, Option<NodeId>)> = self
            .tasks
            .iter()
            .filter(|(id, t)| !t.status.is_final() && !held.contains(&(**id, t.lease)))
            .map(|(id, t)| (*id, t.att.current.map(|(n, _)| n)))
            .collect();
        for (task, node) in lost {
            tracing::info!("{task}: lease lost (cancelled or taken over elsewhere)");
            if let Some(node) = node {
                self.send(node, VmMessage::Cancel { task });
            }
            self.forget(task);
        }
    }
}
