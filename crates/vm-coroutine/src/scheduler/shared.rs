//! What the vCPUs and the handle share: queues, the registry of admitted processes and their
//! results, and admission, completion and adoption of new threads.

use super::*;

/// Per-process flags shared between the process's coroutines and their scheduler.
pub(super) struct Control {
    pub(super) kill: AtomicBool,
    /// 0: ready; `1 + i`: running on vCPU `i` (the last of its threads to start a slice).
    pub(super) state: AtomicUsize,
    /// The process's threads, to cancel their waits on a kill.
    pub(super) group: Weak<ThreadGroup>,
}

/// A coroutine's admission to a scheduler (shared by all threads of a process).
#[derive(Clone)]
pub(crate) struct Link {
    pub(super) shared: Weak<Shared>,
    pub(super) control: Arc<Control>,
}

impl Link {
    /// Reports a coroutine dropped while admitted (already marked killed).
    pub(crate) fn abandoned(self, result: CoroutineResult) {
        if let Some(shared) = self.shared.upgrade() {
            shared.record(result);
        }
    }

    pub(super) fn kill_requested(&self) -> bool {
        self.control.kill.load(Ordering::Acquire)
    }
}

#[derive(Default)]
pub(super) struct Registry {
    pub(super) live: HashMap<CoroutineId, Arc<Control>>,
    pub(super) results: BTreeMap<CoroutineId, CoroutineResult>,
}

pub(super) struct Shared {
    pub(super) config: SchedulerConfig,
    pub(super) vcpus: Box<[VCPU]>,
    pub(super) injector: Injector<Coroutine>,
    pub(super) lot: ParkingLot,
    pub(super) registry: Mutex<Registry>,
    pub(super) finished: Condvar,
    pub(super) spawned: AtomicU64,
    pub(super) exited: AtomicU64,
    pub(super) killed: AtomicU64,
    pub(super) threads_created: AtomicU64,
    /// Guest threads parked on a waiter right now.
    pub(super) parked: AtomicU64,
    pub(super) timer: Arc<Timer>,
    pub(super) readiness: Arc<Readiness>,
    /// Tells vCPU threads to leave.
    pub(super) stopping: AtomicBool,
    /// vCPU loops not parked in the lot (see `worker`: the last to park flushes the
    /// readiness waits deferred by the loops).
    pub(super) awake_vcpus: AtomicUsize,
}

thread_local! {
    /// The scheduler (its `Shared`'s address) and vCPU whose slice this host thread runs, if
    /// any: a guest thread woken from inside a slice goes to that vCPU's local queue.
    pub(super) static CURRENT: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// The scheduler (its `Shared`'s address) whose vCPU loop this host thread runs, or 0:
    /// only such a thread defers readiness waits, since it flushes them before it parks.
    pub(super) static VCPU_LOOP: Cell<usize> = const { Cell::new(0) };
}

/// A coroutine after admission.
pub(super) enum Admitted {
    Runnable(Coroutine),
    Finished(CoroutineResult),
}

impl Shared {
    pub(super) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().ignore_poison()
    }

    /// Admits `c` (if not admitted yet). Errors if it belongs to another scheduler.
    pub(super) fn admit(self: &Arc<Self>, c: &mut Coroutine) -> Result<(), ()> {
        if let Some(link) = c.link() {
            return if std::ptr::eq(link.shared.as_ptr(), Arc::as_ptr(self)) {
                Ok(())
            } else {
                Err(())
            };
        }
        let control = Arc::new(Control {
            kill: AtomicBool::new(false),
            state: AtomicUsize::new(0),
            group: Arc::downgrade(c.group()),
        });
        // A forked process is not a result anyone waits for: its parent learns of its end
        // through `wait`, and it is killed when its sandbox's root ends.
        if !c.is_forked() {
            self.registry().live.insert(c.process_id(), control.clone());
            self.spawned.fetch_add(1, Ordering::Relaxed);
        }
        c.set_link(Link { shared: Arc::downgrade(self), control });
        // A process built before admission (`from_process`) is scheduled from now on; one
        // built later is marked when it loads.
        if let Some(p) = c.process() {
            p.set_scheduled(true);
        }
        Ok(())
    }

    /// Records a process's result; only the first report of a process counts.
    pub(super) fn record(&self, result: CoroutineResult) {
        let mut reg = self.registry();
        if reg.live.remove(&result.id).is_none() {
            return;
        }
        self.exited.fetch_add(1, Ordering::Relaxed);
        if result.exit == GuestExit::Killed {
            self.killed.fetch_add(1, Ordering::Relaxed);
        }
        reg.results.insert(result.id, result);
        drop(reg);
        self.finished.notify_all();
    }

    /// Ends `c`'s process (as killed if it has not ended), drops `c` and records the result.
    pub(super) fn complete(&self, vcpu: Option<usize>, mut c: Coroutine) -> CoroutineResult {
        c.kill(); // no-op if its process ended by itself
        let link = c.take_link();
        let result = c.result().unwrap_or_else(|| CoroutineResult {
            id: c.process_id(),
            pid: c.pid(),
            exit: GuestExit::Killed,
            instructions: c.instructions(),
            slices: c.slices(),
            run_time: c.run_time(),
            engine: c.engine_stats(),
        });
        drop(c);
        if let Some(v) = vcpu.and_then(|v| self.vcpus.get(v)) {
            v.counters.finished.fetch_add(1, Ordering::Relaxed);
        }
        if link.is_some() {
            self.record(result.clone());
        }
        result
    }

    /// Drops a guest thread that ended while its process goes on.
    pub(super) fn retire_thread(&self, vcpu: usize, mut c: Coroutine) {
        c.take_link();
        drop(c);
        if let Some(v) = self.vcpus.get(vcpu) {
            v.counters.finished.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Puts a guest thread created on vCPU `i` into its local queue.
    pub(super) fn adopt(&self, i: usize, parent: &Coroutine, mut child: Coroutine) {
        self.threads_created.fetch_add(1, Ordering::Relaxed);
        match parent.link() {
            Some(link) => child.set_link(link.clone()),
            None => {
                // Only admitted coroutines run here; an unlinked child could not be tracked,
                // so it is dropped (which kills its process).
                tracing::error!("thread {} spawned by an unadmitted coroutine", child.id());
                return;
            }
        }
        self.vcpus[i].lock().worker.push(child);
        self.lot.notify_one();
    }
}
