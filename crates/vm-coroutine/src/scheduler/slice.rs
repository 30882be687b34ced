//! Running one slice of a coroutine on a vCPU and acting on how it ended: requeue, yield,
//! park on its waiter (and hand it back when the wait ends), adopt a new thread, finish.

use super::*;

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

impl Shared {
    /// Parks a blocked guest thread on its waiter; it comes back through [`Shared::wake`].
    pub(super) fn park_thread(self: &Arc<Self>, c: Coroutine, w: Arc<Waiter>) {
        self.parked.fetch_add(1, Ordering::Relaxed);
        if let Some(at) = w.deadline() {
            self.timer.arm(at, w.clone());
        }
        if !w.watched().is_empty() {
            if VCPU_LOOP.with(Cell::get) == Arc::as_ptr(self) as usize {
                self.readiness.defer(w.clone());
            } else {
                self.readiness.watch(w.clone());
            }
        }
        let shared = Arc::downgrade(self);
        w.on_ready(Box::new(move || {
            // Without a scheduler to go back to (it was shut down), the coroutine is dropped,
            // which kills its process.
            if let Some(s) = shared.upgrade() {
                s.parked.fetch_sub(1, Ordering::Relaxed);
                s.wake(c);
            }
        }));
    }

    /// Makes a woken guest thread runnable: into the local queue of the vCPU this host thread
    /// runs a slice for, else into the global queue.
    pub(super) fn wake(&self, c: Coroutine) {
        let (sched, vcpu) = CURRENT.with(Cell::get);
        match self.vcpus.get(vcpu).filter(|_| sched == self as *const Shared as usize) {
            Some(v) => v.lock().worker.push(c),
            None => self.injector.push(c),
        }
        self.lot.notify_one();
    }

    pub(super) fn run_slice(self: &Arc<Self>, i: usize, mut c: Coroutine) -> SliceOutcome {
        let v = &self.vcpus[i];
        let control = c.link().map(|l| l.control.clone());
        if control.as_ref().is_some_and(|c| c.kill.load(Ordering::Acquire)) {
            return SliceOutcome::Finished(self.complete(Some(i), c));
        }
        if let Some(ctl) = &control {
            ctl.state.store(1 + i, Ordering::Relaxed);
        }
        let id = c.id();
        if v.last_run.swap(id.0, Ordering::Relaxed) != id.0 {
            v.counters.context_switches.fetch_add(1, Ordering::Relaxed);
        }
        let prev = v.set_state(VCPUState::Running);
        let outer = CURRENT.with(|cur| cur.replace((Arc::as_ptr(self) as usize, i)));
        let mut left = self.config.time_slice.max(1);
        let mut retired = 0;
        let end = loop {
            let r = match std::panic::catch_unwind(AssertUnwindSafe(|| c.run_slice(left))) {
                Ok(r) => r,
                Err(payload) => {
                    let msg = panic_message(&*payload);
                    tracing::error!(coroutine = %id, vcpu = i, "engine panicked: {msg}");
                    c.finish(GuestExit::EnginePanicked(msg.clone()));
                    RunResult {
                        stop: SliceEnd::Finished(GuestExit::EnginePanicked(msg)),
                        retired: 0,
                    }
                }
            };
            retired += r.retired;
            left = left.saturating_sub(r.retired);
            match r.stop {
                // The parent goes on with the rest of its slice.
                SliceEnd::Spawned(mut child) if child.is_forked() => {
                    // A new process of this scheduler, in this vCPU's queue.
                    if self.admit(&mut child).is_ok() {
                        self.threads_created.fetch_add(1, Ordering::Relaxed);
                        self.vcpus[i].lock().worker.push(child);
                        self.lot.notify_one();
                    }
                    if left == 0 {
                        break SliceEnd::Preempted;
                    }
                }
                SliceEnd::Spawned(child) => {
                    self.adopt(i, &c, child);
                    if left == 0 {
                        break SliceEnd::Preempted;
                    }
                }
                other => break other,
            }
        };
        CURRENT.with(|cur| cur.set(outer));
        v.set_state(prev);
        v.counters.slices.fetch_add(1, Ordering::Relaxed);
        v.counters.instructions.fetch_add(retired, Ordering::Relaxed);
        if let Some(ctl) = &control {
            ctl.state.store(0, Ordering::Relaxed);
        }
        let killed = control.as_ref().is_some_and(|c| c.kill.load(Ordering::Acquire));
        if killed {
            return SliceOutcome::Finished(self.complete(Some(i), c));
        }
        let yielded = match end {
            SliceEnd::Finished(_) => return SliceOutcome::Finished(self.complete(Some(i), c)),
            SliceEnd::ThreadExited(_) => {
                self.retire_thread(i, c);
                return SliceOutcome::ThreadExited(id);
            }
            SliceEnd::Blocked(w) => {
                v.counters.blocks.fetch_add(1, Ordering::Relaxed);
                self.park_thread(c, w);
                return SliceOutcome::Blocked(id);
            }
            SliceEnd::Yielded => {
                v.counters.yields.fetch_add(1, Ordering::Relaxed);
                true
            }
            // A coroutine handles forks and execs itself; they never reach here.
            SliceEnd::Preempted
            | SliceEnd::Spawned(_)
            | SliceEnd::Forked(_)
            | SliceEnd::Exec(_) => false,
        };
        let local = v.lock();
        local.worker.push(c);
        let waiting = local.worker.len();
        drop(local);
        // Others wait behind it: an idle vCPU may steal them. And a caller that drives this
        // vCPU while its thread is parked (`prev` is not `Searching`) must not leave the
        // coroutine in a queue nobody is awake to look at.
        if waiting > 1 || prev != VCPUState::Searching {
            self.lot.notify_one();
        }
        if yielded {
            SliceOutcome::Yielded(id)
        } else {
            SliceOutcome::Preempted(id)
        }
    }
}
