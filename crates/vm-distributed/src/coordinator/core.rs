//! The coordinator's state machine: one task owns every piece of mutable state (tasks, queue,
//! node registry, placement, waiters) and handles [`Event`]s one at a time.
//!
//! The invariants are those of the [parent module](super).

use crate::architecture::DistributedArchitectureConfig;
use crate::fault_tolerance::{Attempts, FailureVerdict, FaultToleranceManager, ResultVerdict};
use crate::protocol::{
    ImageHash, NodeId, TaskCounts, TaskId, TaskInfo, TaskResult, TaskSpec, TaskStatus, TaskType,
    VmMessage,
};
use crate::registry::{NodeRegistry, NodeState, VmInfo};
use crate::scheduler::TaskScheduler;
use crate::store::{status_of_result, Recovered, StoreOp, TaskRecord, TaskStore};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Largest guest address space a task may ask for.
const MAX_TASK_MEMORY: u64 = 1 << 40;
/// Period of the core's housekeeping (liveness, deadlines, retries).
const TICK: Duration = Duration::from_millis(20);
/// Most queued tasks one placement pass looks at (tasks that fit nowhere now are skipped,
/// not waited on, so a pass may have to look past many of them).
const MAX_SCAN: usize = 4096;

/// Where a reply goes: a client connection, or a caller in this process.
pub(super) enum Responder {
    Remote { tx: mpsc::UnboundedSender<VmMessage>, req: u64 },
    Local(oneshot::Sender<VmMessage>),
}

impl Responder {
    pub(super) fn reply(self, make: impl FnOnce(u64) -> VmMessage) {
        match self {
            Responder::Remote { tx, req } => {
                let _ = tx.send(make(req));
            }
            Responder::Local(tx) => {
                let _ = tx.send(make(0));
            }
        }
    }

    pub(super) fn fail(self, message: String) {
        self.reply(|req| VmMessage::Failure { req, message });
    }
}

/// What the core reacts to.
pub(super) enum Event {
    PutImage {
        hash: ImageHash,
        bytes: Arc<Vec<u8>>,
        reply: Responder,
    },
    Submit {
        task_type: TaskType,
        spec: TaskSpec,
        reply: Responder,
    },
    Status {
        task: TaskId,
        reply: Responder,
    },
    Wait {
        task: TaskId,
        reply: Responder,
    },
    Cluster {
        reply: Responder,
    },
    HasImage {
        hash: ImageHash,
        reply: Responder,
    },
    Cancel {
        task: TaskId,
        by: String,
        reply: Responder,
    },
    NodeUp {
        conn: u64,
        addr: String,
        register: VmMessage,
        tx: mpsc::UnboundedSender<VmMessage>,
    },
    FromNode {
        node: NodeId,
        conn: u64,
        msg: VmMessage,
    },
    NodeDown {
        node: NodeId,
        conn: u64,
    },
    Durable {
        task: TaskId,
        ok: bool,
    },
    /// Work to do on the core (a store operation's continuation, shared stores).
    Run(Box<dyn FnOnce(&mut Core) + Send>),
    /// Another coordinator (or this one) queued work in a shared store.
    Wake,
    Shutdown,
}

pub(super) struct Task {
    pub(super) task_type: TaskType,
    pub(super) spec: Arc<TaskSpec>,
    pub(super) submitted_at_ms: u64,
    pub(super) status: TaskStatus,
    pub(super) att: Attempts,
    /// The final result until it is durable (kept if the commit failed).
    pub(super) result: Option<TaskResult>,
    /// The final record committed.
    pub(super) durable: bool,
    /// With a shared store: the attempt this coordinator's lease covers (0 otherwise).
    pub(super) lease: u32,
}

/// Decrements a count, never below zero.
pub(super) fn dec(c: &mut u64) {
    *c = c.saturating_sub(1);
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub(super) struct Core {
    pub(super) ft: FaultToleranceManager,
    registry: NodeRegistry,
    pub(super) sched: TaskScheduler,
    pub(super) store: Arc<dyn TaskStore>,
    pub(super) max_queued: u64,
    max_output_cap: u32,
    pub(super) tasks: HashMap<TaskId, Task>,
    pub(super) queue: VecDeque<TaskId>,
    delayed: BinaryHeap<Reverse<(Instant, TaskId)>>,
    pub(super) deadlines: BinaryHeap<Reverse<(Instant, TaskId)>>,
    pub(super) waiters: HashMap<TaskId, Vec<Responder>>,
    /// Per node: its current connection's outgoing queue.
    links: HashMap<NodeId, mpsc::UnboundedSender<VmMessage>>,
    /// Per node: the tasks occupying its slots, with their memory.
    pub(super) node_tasks: HashMap<NodeId, HashMap<TaskId, u64>>,
    pub(super) images: HashMap<ImageHash, Arc<Vec<u8>>>,
    next_id: u64,
    pub(super) counts: TaskCounts,
    pub(super) events: mpsc::UnboundedSender<Event>,
    /// With a store several coordinators share: claims, leases, heartbeats.
    pub(super) shared: Option<super::shared::Shared>,
}

pub(super) fn count_of<'a>(counts: &'a mut TaskCounts, s: &TaskStatus) -> &'a mut u64 {
    match s {
        TaskStatus::Queued => &mut counts.queued,
        TaskStatus::Running { .. } => &mut counts.running,
        TaskStatus::Completed { .. } => &mut counts.completed,
        TaskStatus::Failed { .. } => &mut counts.failed,
        TaskStatus::Cancelled { .. } => &mut counts.cancelled,
    }
}

impl Core {
    pub(super) fn new(
        config: &DistributedArchitectureConfig,
        store: Arc<dyn TaskStore>,
        recovered: Recovered,
        events: mpsc::UnboundedSender<Event>,
        addr: std::net::SocketAddr,
    ) -> Core {
        let shared = store.shared().then(|| super::shared::Shared::new(addr));
        let mut core = Core {
            ft: FaultToleranceManager::new(config.fault_tolerance.clone()),
            registry: NodeRegistry::new(&config.fault_tolerance),
            sched: TaskScheduler::new(config.strategy),
            store,
            max_queued: config.max_queued as u64,
            max_output_cap: config.max_output_cap.min(crate::protocol::MAX_OUTPUT_CAP),
            tasks: HashMap::new(),
            queue: VecDeque::new(),
            delayed: BinaryHeap::new(),
            deadlines: BinaryHeap::new(),
            waiters: HashMap::new(),
            links: HashMap::new(),
            node_tasks: HashMap::new(),
            images: HashMap::new(),
            next_id: 1,
            counts: TaskCounts::default(),
            events,
            shared,
        };
        if core.shared.is_some() {
            let events = core.events.clone();
            core.store.subscribe(Box::new(move || {
                let _ = events.send(Event::Wake);
            }));
        }
        for (hash, bytes) in recovered.images {
            core.images.insert(hash, Arc::new(bytes));
        }
        let (now, now_ms) = (Instant::now(), now_ms());
        let (mut pending, mut fin) = (0, 0);
        // A shared store's tasks are claimed as they go (none are recovered).
        for rec in recovered.tasks {
            core.next_id = core.next_id.max(rec.id.0 + 1);
            let final_ = rec.status.is_final();
            let deadline = rec.spec.limits.deadline_ms.map(|ms| {
                let left = (rec.submitted_at_ms + ms).saturating_sub(now_ms);
                now + Duration::from_millis(left)
            });
            let att = Attempts {
                started: rec.attempts.max(rec.failed_attempts),
                failed: rec.failed_attempts,
                reasons: rec.reasons,
                deadline,
                finished: final_,
                ..Default::default()
            };
            *count_of(&mut core.counts, &rec.status) += 1;
            if final_ {
                fin += 1;
            } else {
                pending += 1;
                core.queue.push_back(rec.id);
                if let Some(d) = deadline {
                    core.deadlines.push(Reverse((d, rec.id)));
                }
            }
            core.tasks.insert(
                rec.id,
                Task {
                    task_type: rec.task_type,
                    spec: Arc::new(rec.spec),
                    submitted_at_ms: rec.submitted_at_ms,
                    status: rec.status,
                    att,
                    result: None,
                    durable: true,
                    lease: 0,
                },
            );
        }
        if pending + fin > 0 {
            tracing::info!(
                "recovered {} tasks: {pending} to dispatch again, {fin} final",
                pending + fin
            );
        }
        core
    }

    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    None | Some(Event::Shutdown) => break,
                    Some(ev) => {
                        self.handle(ev);
                        // Drain what else is waiting before placing work, so a burst of
                        // submissions is placed in one pass.
                        let mut n = 0;
                        while n < 1024 {
                            match rx.try_recv() {
                                Ok(Event::Shutdown) => return,
                                Ok(ev) => self.handle(ev),
                                Err(_) => break,
                            }
                            n += 1;
                        }
                        self.pump();
                    }
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    pub(super) fn set_status(&mut self, id: TaskId, status: TaskStatus) {
        let Some(t) = self.tasks.get_mut(&id) else { return };
        dec(count_of(&mut self.counts, &t.status));
        *count_of(&mut self.counts, &status) += 1;
        t.status = status;
    }

    pub(super) fn record(&self, id: TaskId) -> Option<TaskRecord> {
        let t = self.tasks.get(&id)?;
        Some(TaskRecord {
            id,
            task_type: t.task_type,
            spec: (*t.spec).clone(),
            submitted_at_ms: t.submitted_at_ms,
            failed_attempts: t.att.failed,
            attempts: t.att.started,
            reasons: t.att.reasons.clone(),
            status: if t.status.is_final() { t.status.clone() } else { TaskStatus::Queued },
        })
    }

    pub(super) fn info(&self, id: TaskId) -> Option<TaskInfo> {
        let t = self.tasks.get(&id)?;
        let result = match (&t.result, t.durable && t.status.is_final()) {
            (Some(r), _) => Some(r.clone()),
            (None, true) => self.store.result(id).unwrap_or_else(|e| {
                tracing::error!("cannot read the result of {id}: {e}");
                None
            }),
            (None, false) => None,
        };
        Some(TaskInfo {
            id,
            task_type: t.task_type,
            status: t.status.clone(),
            attempts: t.att.started,
            submitted_at_ms: t.submitted_at_ms,
            result,
        })
    }

    pub(super) fn send(&self, node: NodeId, msg: VmMessage) -> bool {
        self.links.get(&node).is_some_and(|tx| tx.send(msg).is_ok())
    }

    pub(super) fn handle(&mut self, ev: Event) {
        match ev {
            Event::PutImage { hash, bytes, reply } => {
                if self.images.contains_key(&hash) {
                    reply.reply(|req| VmMessage::ImageStored { req, hash });
                    return;
                }
                self.images.insert(hash, bytes.clone());
                self.store.apply(
                    StoreOp::PutImage(hash, bytes),
                    Some(Box::new(move |r| match r {
                        Ok(()) => reply.reply(|req| VmMessage::ImageStored { req, hash }),
                        Err(e) => reply.fail(format!("cannot store the image: {e}")),
                    })),
                );
            }
            Event::Submit { task_type, spec, reply } => self.submit(task_type, spec, reply),
            Event::Status { task, reply } if self.is_remote(task) => {
                self.status_remote(task, reply)
            }
            Event::Wait { task, reply } if self.is_remote(task) => self.wait_remote(task, reply),
            Event::Cancel { task, by, reply } if self.is_remote(task) => {
                self.cancel_remote(task, by, reply)
            }
            Event::Cluster { reply } if self.shared.is_some() => self.cluster_shared(reply),
            Event::Run(f) => f(self),
            Event::Wake => {
                if let Some(sh) = &mut self.shared {
                    sh.want_claim = true;
                }
            }
            Event::Status { task, reply } => {
                let info = self.info(task);
                reply.reply(|req| VmMessage::Status { req, info });
            }
            Event::Wait { task, reply } => match self.tasks.get(&task) {
                None => reply.reply(|req| VmMessage::Status { req, info: None }),
                Some(t) if t.status.is_final() && t.result.is_none() => {
                    let info = self.info(task);
                    reply.reply(|req| VmMessage::Status { req, info });
                }
                Some(_) => self.waiters.entry(task).or_default().push(reply),
            },
            Event::HasImage { hash, reply } => {
                if self.images.contains_key(&hash) {
                    reply.reply(|req| VmMessage::ImageStored { req, hash });
                } else {
                    reply.fail(format!("no image {hash}"));
                }
            }
            Event::Cancel { task, by, reply } => self.cancel(task, by, reply),
            Event::Cluster { reply } => {
                let nodes = self.nodes_list();
                let tasks = self.counts.clone();
                reply.reply(|req| VmMessage::ClusterStatus {
                    req,
                    nodes,
                    tasks,
                    coordinators: vec![],
                });
            }
            Event::NodeUp { conn, addr, register, tx } => self.node_up(conn, addr, register, tx),
            Event::FromNode { node, conn, msg } => self.node_message(node, conn, msg),
            Event::NodeDown { node, conn } => {
                if self.registry.disconnected(node, conn) {
                    tracing::warn!("{node} disconnected; suspect until it returns");
                    self.links.remove(&node);
                    self.sched.set_available(node, false);
                }
            }
            Event::Durable { task, ok } => {
                if let Some(t) = self.tasks.get_mut(&task) {
                    t.durable = ok;
                    // One durable event per `finalize`: the outcome now counts (in memory
                    // only if the commit failed, which is logged).
                    dec(&mut self.counts.running);
                    *count_of(&mut self.counts, &t.status) += 1;
                }
                let info = self.info(task);
                for w in self.waiters.remove(&task).unwrap_or_default() {
                    let info = info.clone();
                    w.reply(|req| VmMessage::Status { req, info });
                }
                if ok {
                    self.answer_remote_waiters(task, &info);
                }
                if ok {
                    if let Some(t) = self.tasks.get_mut(&task) {
                        t.result = None;
                    }
                    // A shared store answers for final tasks from now on.
                    if self.shared.is_some() {
                        self.forget(task);
                    }
                }
            }
            Event::Shutdown => {}
        }
    }

    pub(super) fn nodes_list(&self) -> Vec<VmInfo> {
        self.registry
            .list(Instant::now(), |n| self.node_tasks.get(&n).map_or(0, |m| m.len() as u32))
    }

    fn submit(&mut self, task_type: TaskType, spec: TaskSpec, reply: Responder) {
        if !self.images.contains_key(&spec.image) {
            return reply.fail(format!("unknown image {}: store it first", spec.image));
        }
        if spec.args.is_empty() {
            return reply.fail("a task needs at least argv[0]".into());
        }
        if spec.limits.memory_bytes == 0 || spec.limits.memory_bytes > MAX_TASK_MEMORY {
            return reply.fail("the task's memory limit is out of range".into());
        }
        if spec.limits.output_cap > self.max_output_cap {
            return reply.fail(format!(
                "an output cap of {} bytes exceeds this cluster's maximum of {} bytes",
                spec.limits.output_cap, self.max_output_cap
            ));
        }
        if spec.stdin.len() > crate::protocol::MAX_STDIN_BYTES {
            return reply.fail(format!(
                "stdin of {} bytes exceeds the maximum of {} bytes",
                spec.stdin.len(),
                crate::protocol::MAX_STDIN_BYTES
            ));
        }
        let arg_bytes: usize = spec.args.iter().chain(&spec.env).map(|a| a.len() + 1).sum();
        if arg_bytes > crate::protocol::MAX_ARGS_BYTES {
            return reply.fail(format!(
                "arguments and environment of {arg_bytes} bytes exceed the maximum of {} bytes",
                crate::protocol::MAX_ARGS_BYTES
            ));
        }
        // A task that no node could hold even when idle would wait forever: refuse it now
        // (when no node is known yet, it waits for one).
        let memory = spec.limits.memory_bytes;
        if let Some(largest) = self.registry.largest_memory_offer().filter(|&m| m < memory) {
            return reply.fail(format!(
                "no worker can hold a task of {} MiB of guest memory (the largest offers {} MiB)",
                memory >> 20,
                largest >> 20
            ));
        }
        if self.shared.is_some() {
            return self.submit_shared(task_type, spec, reply);
        }
        if self.counts.queued >= self.max_queued {
            return reply.fail(format!("the queue is full ({} tasks waiting)", self.counts.queued));
        }
        let id = TaskId(self.next_id);
        self.next_id += 1;
        let now = Instant::now();
        let deadline = spec.limits.deadline_ms.map(|ms| now + Duration::from_millis(ms));
        if let Some(d) = deadline {
            self.deadlines.push(Reverse((d, id)));
        }
        self.tasks.insert(
            id,
            Task {
                task_type,
                spec: Arc::new(spec),
                submitted_at_ms: now_ms(),
                status: TaskStatus::Queued,
                att: Attempts { deadline, ..Default::default() },
                result: None,
                durable: false,
                lease: 0,
            },
        );
        self.counts.queued += 1;
        self.queue.push_back(id);
        if let Some(rec) = self.record(id) {
            self.store.apply(
                StoreOp::PutTask(rec),
                Some(Box::new(move |r| match r {
                    Ok(()) => reply.reply(|req| VmMessage::Submitted { req, task: id }),
                    Err(e) => reply.fail(format!("cannot store the task: {e}")),
                })),
            );
        }
    }

    /// Places queued tasks on nodes with room, in queue order. A task that fits on no node
    /// now keeps its place and is stepped over (so one big task never holds up smaller ones
    /// behind it); once a task of some size did not fit, larger ones are not tried again in
    /// the same pass. A pass ends when no node has a free slot or after [`MAX_SCAN`] tasks.
    pub(super) fn pump(&mut self) {
        let mut skipped = Vec::new();
        let mut smallest_unfit = u64::MAX;
        let mut scanned = 0;
        while scanned < MAX_SCAN && self.sched.has_free_slot() {
            let Some(id) = self.queue.pop_front() else { break };
            let Some(t) = self.tasks.get(&id) else { continue };
            if t.status != TaskStatus::Queued {
                continue;
            }
            scanned += 1;
            let memory = t.spec.limits.memory_bytes;
            if memory >= smallest_unfit {
                skipped.push(id);
                continue;
            }
            match self.sched.pick(memory) {
                Some(node) => self.dispatch(id, node),
                None => {
                    smallest_unfit = memory;
                    skipped.push(id);
                }
            }
        }
        for id in skipped.into_iter().rev() {
            self.queue.push_front(id);
        }
        self.maybe_claim();
    }

    fn dispatch(&mut self, id: TaskId, node: NodeId) {
        let now = Instant::now();
        let Some(t) = self.tasks.get_mut(&id) else { return };
        let attempt = self.ft.begin_attempt(&mut t.att, node);
        let spec = t.spec.clone();
        let timeout_ms = self.ft.remaining(&t.att, now).map(|d| d.as_millis() as u64);
        let memory = spec.limits.memory_bytes;
        self.set_status(id, TaskStatus::Running { node, attempt });
        self.sched.started(node, memory);
        self.node_tasks.entry(node).or_default().insert(id, memory);
        if self.registry.add_image(node, spec.image) {
            match self.images.get(&spec.image) {
                Some(bytes) => {
                    self.send(
                        node,
                        VmMessage::Image { hash: spec.image, bytes: (**bytes).clone() },
                    );
                }
                None => tracing::error!("{id} refers to the unknown image {}", spec.image),
            }
        }
        let msg = VmMessage::RunTask { task: id, attempt, spec: (*spec).clone(), timeout_ms };
        if !self.send(node, msg) {
            tracing::warn!("{node} went away while {id} was sent to it");
        }
    }

    fn free_slot(&mut self, node: NodeId, task: TaskId) {
        if let Some(memory) = self.node_tasks.get_mut(&node).and_then(|m| m.remove(&task)) {
            self.sched.finished(node, memory);
        }
    }

    fn node_up(
        &mut self,
        conn: u64,
        addr: String,
        register: VmMessage,
        tx: mpsc::UnboundedSender<VmMessage>,
    ) {
        let VmMessage::Register { node, name, pid, capabilities, images, running } = register
        else {
            return;
        };
        let heartbeat_ms = self.ft.config().heartbeat_interval.as_millis() as u64;
        let back = self.registry.register(
            node,
            name.clone(),
            addr,
            pid,
            capabilities.clone(),
            images,
            conn,
            Instant::now(),
        );
        tracing::info!(
            "{node} ({name}, pid {pid}) registered: {back:?}, {} running",
            running.len()
        );
        let previous = self.node_tasks.remove(&node).unwrap_or_default();
        self.sched.remove_node(node);
        self.sched.upsert_node(node, capabilities);
        // Tasks this coordinator does not know were placed by another one (that died, or
        // the worker failed over): take over their leases.
        let unknown: Vec<(TaskId, u32)> =
            running.iter().filter(|(t, _)| !self.tasks.contains_key(t)).copied().collect();
        if self.shared.is_some() && !unknown.is_empty() {
            self.adopt(node, unknown);
        }
        // What the node says it runs occupies its slots; queued tasks among them are adopted.
        let mut stale = Vec::new();
        for &(task, attempt) in &running {
            let memory = self.tasks.get(&task).map_or(0, |t| t.spec.limits.memory_bytes);
            self.sched.started(node, memory);
            self.node_tasks.entry(node).or_default().insert(task, memory);
            if let Some(t) = self.tasks.get_mut(&task) {
                // With a shared store, an attempt other than the one this coordinator's
                // lease covers is stale (the task was claimed again): stop it.
                if self.shared.is_some() && attempt != t.lease {
                    stale.push(task);
                    continue;
                }
                if t.status == TaskStatus::Queued {
                    t.att.started = t.att.started.max(attempt);
                    t.att.current = Some((node, attempt));
                    self.set_status(task, TaskStatus::Running { node, attempt });
                }
            }
        }
        // What the coordinator had placed there and the node no longer runs is lost.
        for (task, _) in previous {
            if running.iter().any(|(t, _)| *t == task) {
                continue;
            }
            let reason = format!("{node} reconnected without it");
            self.attempt_lost(task, node, reason);
        }
        let _ = tx.send(VmMessage::Registered { heartbeat_ms });
        for task in stale {
            let _ = tx.send(VmMessage::Cancel { task });
        }
        self.links.insert(node, tx);
    }

    pub(super) fn attempt_lost(&mut self, task: TaskId, node: NodeId, reason: String) {
        let Some(t) = self.tasks.get_mut(&task) else { return };
        match self.ft.on_node_dead(&mut t.att, node, reason) {
            None => {}
            Some(FailureVerdict::Retry { after }) => self.requeue(task, after),
            Some(FailureVerdict::GiveUp) => self.give_up(task),
        }
    }

    fn requeue(&mut self, task: TaskId, after: Duration) {
        if self.shared.is_some() {
            return self.release(task, after);
        }
        self.set_status(task, TaskStatus::Queued);
        if let Some(rec) = self.record(task) {
            self.store.apply(StoreOp::PutTask(rec), None);
        }
        if after.is_zero() {
            self.queue.push_front(task);
        } else {
            self.delayed.push(Reverse((Instant::now() + after, task)));
        }
    }

    /// A cancel request: a queued task ends at once, a running one is told to stop (its slot
    /// stays taken until its node reports the end). The requester is answered once the
    /// cancelled state is durable.
    fn cancel(&mut self, task: TaskId, by: String, reply: Responder) {
        let Some(t) = self.tasks.get_mut(&task) else {
            return reply.reply(|req| VmMessage::Status { req, info: None });
        };
        match self.ft.cancel(&mut t.att) {
            Err(()) => {
                let name = t.status.name();
                reply.fail(format!("{task} is already {name}"))
            }
            Ok(running_on) => {
                if let Some(node) = running_on {
                    self.send(node, VmMessage::Cancel { task });
                }
                tracing::info!("{task} cancelled by {by}");
                self.waiters.entry(task).or_default().push(reply);
                self.finalize(task, TaskStatus::Cancelled { by, at_ms: now_ms() }, None);
            }
        }
    }

    pub(super) fn give_up(&mut self, task: TaskId) {
        let reasons = self.tasks.get(&task).map(|t| t.att.reasons.clone()).unwrap_or_default();
        tracing::warn!("{task} failed: {}", reasons.join("; "));
        self.finalize(task, TaskStatus::Failed { reasons }, None);
    }

    pub(super) fn finalize(
        &mut self,
        task: TaskId,
        status: TaskStatus,
        result: Option<TaskResult>,
    ) {
        self.set_status(task, status);
        if let Some(t) = self.tasks.get_mut(&task) {
            t.result = result.clone();
            t.durable = false;
            // Until its outcome is durable the task still counts as running, so that the
            // counts a status request reports survive a crash of the coordinator.
            dec(count_of(&mut self.counts, &t.status));
            self.counts.running += 1;
        }
        if self.shared.is_some() {
            return self.finish_shared(task);
        }
        let Some(rec) = self.record(task) else { return };
        let events = self.events.clone();
        self.store.apply(
            StoreOp::Finish(rec, result),
            Some(Box::new(move |r| {
                if let Err(e) = &r {
                    tracing::error!("the outcome of {task} is not durable: {e}");
                }
                let _ = events.send(Event::Durable { task, ok: r.is_ok() });
            })),
        );
    }

    fn node_message(&mut self, node: NodeId, conn: u64, msg: VmMessage) {
        let current = self.registry.is_current(node, conn);
        if current && self.registry.heard(node, conn, Instant::now()) {
            tracing::info!("{node} is alive again");
            self.sched.set_available(node, true);
        }
        match msg {
            VmMessage::Heartbeat(load) if current => {
                self.sched.set_cpu_load(node, load.cpu_load);
                self.registry.heartbeat(node, conn, load, Instant::now());
            }
            // Outcomes count even from a replaced connection: a late result is still a result.
            VmMessage::TaskDone { task, result } => self.task_done(node, task, result),
            VmMessage::TaskError { task, attempt, reason } => {
                self.free_slot(node, task);
                let Some(t) = self.tasks.get_mut(&task) else { return };
                match self.ft.on_worker_failure(&mut t.att, node, attempt, reason) {
                    None => {}
                    Some(FailureVerdict::Retry { after }) => self.requeue(task, after),
                    Some(FailureVerdict::GiveUp) => self.give_up(task),
                }
            }
            VmMessage::NeedImage(hash) if current => match self.images.get(&hash) {
                Some(bytes) => {
                    let bytes = (**bytes).clone();
                    self.registry.add_image(node, hash);
                    self.send(node, VmMessage::Image { hash, bytes });
                }
                None => tracing::error!("{node} asked for the unknown image {hash}"),
            },
            _ => {}
        }
    }

    fn task_done(&mut self, node: NodeId, task: TaskId, result: TaskResult) {
        self.free_slot(node, task);
        let Some(t) = self.tasks.get_mut(&task) else {
            if self.shared.is_some() {
                return self.finish_reported(node, task, result);
            }
            tracing::warn!("{node} reported {task}, which this coordinator does not know");
            return;
        };
        // With a shared store only the current attempt's result counts (fencing).
        if self.shared.is_some() && result.attempt != t.lease {
            tracing::debug!("result of {task}'s attempt {} from {node} ignored", result.attempt);
            return;
        }
        let previous = t.att.current;
        match self.ft.on_result(&mut t.att, node, result.attempt) {
            ResultVerdict::Duplicate => {
                tracing::debug!("duplicate result for {task} from {node} ignored");
            }
            ResultVerdict::Record { late } => {
                if late {
                    tracing::info!("late result for {task} from {node} accepted");
                }
                let status = status_of_result(&t.att.reasons, &result);
                if let Some((other, _)) = previous {
                    if other != node {
                        self.send(other, VmMessage::Cancel { task });
                    }
                }
                self.finalize(task, status, Some(result));
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        for (node, state) in self.registry.sweep(now) {
            match state {
                NodeState::Suspect => {
                    tracing::warn!("{node} is suspect (no heartbeat)");
                    self.sched.set_available(node, false);
                }
                NodeState::Dead => self.node_dead(node),
                NodeState::Alive => {}
            }
        }
        while let Some(Reverse((at, task))) = self.delayed.peek().copied() {
            if at > now {
                break;
            }
            self.delayed.pop();
            if self.tasks.get(&task).is_some_and(|t| t.status == TaskStatus::Queued) {
                self.queue.push_back(task);
            }
        }
        while let Some(Reverse((at, task))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(t) = self.tasks.get_mut(&task) else { continue };
            let running_on = t.att.current.map(|(n, _)| n);
            if self.ft.check_deadline(&mut t.att, now) {
                if let Some(n) = running_on {
                    self.send(n, VmMessage::Cancel { task });
                }
                self.give_up(task);
            }
        }
        self.shared_tick(now);
        self.pump();
    }

    fn node_dead(&mut self, node: NodeId) {
        let silent = self.ft.config().dead_after;
        tracing::warn!("{node} declared dead (silent for {silent:?}); re-dispatching its tasks");
        self.registry.declare_dead(node);
        self.links.remove(&node);
        self.sched.remove_node(node);
        let tasks = self.node_tasks.remove(&node).unwrap_or_default();
        let mut ids: Vec<TaskId> = tasks.into_keys().collect();
        ids.sort();
        for task in ids.into_iter().rev() {
            self.attempt_lost(task, node, format!("{node} declared dead"));
        }
    }
}
