//! [`Scheduler`]: the public handle, which submits, drives, kills, waits for and reports on
//! coroutines, and starts and stops the vCPU threads.

use super::*;

/// A GMP-style scheduler of guest processes over N vCPUs. See the module docs.
///
/// Two ways to drive it:
/// - [`Scheduler::start`] (or [`Scheduler::run_to_completion`]) runs one thread per vCPU;
/// - a caller drives vCPU `i` itself with [`Scheduler::next_coroutine`] and
///   [`Scheduler::run_slice`] (or [`Scheduler::run_once`]).
///
/// ```no_run
/// use std::sync::Arc;
/// use vm_coroutine::{EngineFactory, Scheduler};
/// use vm_exec_core::elf::Program;
/// use vm_exec_core::process::ProcessConfig;
///
/// let program = Arc::new(Program::parse(std::fs::read("guests/bin/hello")?)?);
/// let config = Arc::new(ProcessConfig::default());
/// // The scheduler names no engine: the caller says which one runs the guests.
/// let engine: EngineFactory = Arc::new(|| Box::new(vm_exec_interp::Interpreter::new()));
/// let scheduler = Scheduler::new(4);
/// for _ in 0..10 {
///     let c = scheduler.create_coroutine(program.clone(), config.clone(), engine.clone());
///     scheduler.submit_coroutine(c)?;
/// }
/// for result in scheduler.run_to_completion()? {
///     println!("{}: {}", result.id, result.exit);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Scheduler {
    pub(super) shared: Arc<Shared>,
    pub(super) threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("config", &self.shared.config)
            .field("live", &self.live_coroutines())
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler with `n_vcpus` vCPUs (clamped to `1..=MAX_VCPUS`) and default settings.
    /// No thread runs until [`Scheduler::start`].
    pub fn new(n_vcpus: usize) -> Scheduler {
        Self::with_config(SchedulerConfig { vcpus: n_vcpus, ..Default::default() })
    }

    /// A scheduler with the given settings (out-of-range values are clamped).
    pub fn with_config(mut config: SchedulerConfig) -> Scheduler {
        config.vcpus = config.vcpus.clamp(1, MAX_VCPUS);
        config.time_slice = config.time_slice.max(1);
        config.global_queue_interval = config.global_queue_interval.max(1);
        let n = config.vcpus;
        Scheduler {
            shared: Arc::new(Shared {
                vcpus: (0..n).map(VCPU::new).collect(),
                injector: Injector::new(),
                lot: ParkingLot::new(n),
                registry: Mutex::new(Registry::default()),
                finished: Condvar::new(),
                spawned: AtomicU64::new(0),
                exited: AtomicU64::new(0),
                killed: AtomicU64::new(0),
                threads_created: AtomicU64::new(0),
                parked: AtomicU64::new(0),
                timer: Arc::new(Timer::default()),
                readiness: Arc::new(Readiness::default()),
                stopping: AtomicBool::new(false),
                awake_vcpus: AtomicUsize::new(0),
                config,
            }),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.shared.config
    }

    /// Number of vCPUs.
    pub fn num_vcpus(&self) -> usize {
        self.shared.vcpus.len()
    }

    /// The vCPUs.
    pub fn vcpus(&self) -> &[VCPU] {
        &self.shared.vcpus
    }

    /// vCPU `i`, if it exists.
    pub fn vcpu(&self, i: usize) -> Option<&VCPU> {
        self.shared.vcpus.get(i)
    }

    /// A coroutine that runs `program` as a new process built from `config` on engines made
    /// by `engine`, built lazily by the vCPU that first runs it. Not yet submitted.
    pub fn create_coroutine(
        &self,
        program: Arc<Program>,
        config: Arc<ProcessConfig>,
        engine: EngineFactory,
    ) -> Coroutine {
        Coroutine::new(program, config, engine)
    }

    /// A coroutine around an already built process, its main thread and what makes its
    /// engines. Not yet submitted.
    pub fn create_coroutine_from(
        &self,
        process: Process,
        thread: GuestThread,
        engine: EngineFactory,
    ) -> Coroutine {
        Coroutine::from_process(process, thread, engine)
    }

    /// Admits `c`; one that has already ended is recorded at once.
    pub(super) fn admit(&self, mut c: Coroutine) -> Result<Admitted, SubmitError> {
        if self.shared.admit(&mut c).is_err() {
            return Err(SubmitError::Foreign(c));
        }
        if c.is_finished() {
            return Ok(Admitted::Finished(self.shared.complete(None, c)));
        }
        Ok(Admitted::Runnable(c))
    }

    /// Puts `c` in the global queue and wakes a parked vCPU. A coroutine that has already
    /// ended is recorded at once.
    pub fn submit_coroutine(&self, c: Coroutine) -> Result<CoroutineId, SubmitError> {
        let id = c.id();
        if let Admitted::Runnable(c) = self.admit(c)? {
            self.shared.injector.push(c);
            self.shared.lot.notify_one();
        }
        Ok(id)
    }

    /// Puts `c` at the back of vCPU `vcpu`'s local queue (other vCPUs may steal it) and wakes
    /// a parked vCPU.
    pub fn submit_local(&self, vcpu: usize, c: Coroutine) -> Result<CoroutineId, SubmitError> {
        let Some(v) = self.shared.vcpus.get(vcpu) else {
            return Err(SubmitError::NoSuchVcpu { vcpu, coroutine: c });
        };
        let id = c.id();
        if let Admitted::Runnable(c) = self.admit(c)? {
            v.lock().worker.push(c);
            self.shared.lot.notify_one();
        }
        Ok(id)
    }

    /// Puts `c` in vCPU `vcpu`'s next-to-run slot: it runs next on that vCPU and is never
    /// stolen. A coroutine already in the slot moves to the back of the local queue.
    pub fn submit_next(&self, vcpu: usize, c: Coroutine) -> Result<CoroutineId, SubmitError> {
        let Some(v) = self.shared.vcpus.get(vcpu) else {
            return Err(SubmitError::NoSuchVcpu { vcpu, coroutine: c });
        };
        let id = c.id();
        if let Admitted::Runnable(c) = self.admit(c)? {
            let mut local = v.lock();
            let displaced = local.next.replace(c);
            v.next_full.store(true, Ordering::Release);
            if let Some(d) = &displaced {
                tracing::trace!(vcpu, displaced = %d.id(), "next-to-run slot displaced");
            }
            let displaced = displaced.map(|d| local.worker.push(d)).is_some();
            drop(local);
            self.shared.lot.notify_vcpu(vcpu);
            if displaced {
                self.shared.lot.notify_one();
            }
        }
        Ok(id)
    }

    /// Takes the next runnable coroutine for vCPU `vcpu` (see the module docs for the order),
    /// or `None` if there is none anywhere (or no such vCPU). Coroutines with a pending kill
    /// request are finished instead of returned. Hand the coroutine back with
    /// [`Scheduler::run_slice`], [`Scheduler::submit_local`] or another submit; dropping it
    /// finishes it as killed.
    pub fn next_coroutine(&self, vcpu: usize) -> Option<Coroutine> {
        self.shared.next_coroutine(vcpu)
    }

    /// Runs one slice of `c` on vCPU `vcpu`'s account: afterwards the coroutine is at the back
    /// of that vCPU's local queue, or finished and recorded. Admits `c` if needed.
    pub fn run_slice(&self, vcpu: usize, c: Coroutine) -> Result<SliceOutcome, SubmitError> {
        if vcpu >= self.num_vcpus() {
            return Err(SubmitError::NoSuchVcpu { vcpu, coroutine: c });
        }
        Ok(match self.admit(c)? {
            Admitted::Runnable(c) => self.shared.run_slice(vcpu, c),
            Admitted::Finished(result) => SliceOutcome::Finished(result),
        })
    }

    /// Takes the next coroutine for vCPU `vcpu` and runs one slice of it. `None` if there was
    /// nothing to run.
    pub fn run_once(&self, vcpu: usize) -> Option<SliceOutcome> {
        let c = self.shared.next_coroutine(vcpu)?;
        Some(self.shared.run_slice(vcpu, c))
    }

    /// Asks coroutine `id` to end. It ends as [`GuestExit::Killed`] when it is next taken
    /// from a queue or at the end of its current slice. False if no live coroutine has that
    /// id.
    pub fn kill(&self, id: CoroutineId) -> bool {
        let reg = self.shared.registry();
        match reg.live.get(&id) {
            Some(ctl) => {
                ctl.kill.store(true, Ordering::Release);
                let group = ctl.group.upgrade();
                drop(reg);
                // Parked threads come back to see the kill.
                if let Some(g) = group {
                    g.cancel_waits();
                }
                // Idle vCPUs may be parked while the coroutine waits in a queue only a
                // running vCPU looks at; waking one makes the kill prompt.
                self.shared.lot.notify_one();
                true
            }
            None => false,
        }
    }

    /// Asks every live coroutine to end (see [`Scheduler::kill`]). Returns how many.
    pub fn kill_all(&self) -> usize {
        let reg = self.shared.registry();
        let mut groups = Vec::new();
        for ctl in reg.live.values() {
            ctl.kill.store(true, Ordering::Release);
            groups.extend(ctl.group.upgrade());
        }
        let n = reg.live.len();
        drop(reg);
        for g in groups {
            g.cancel_waits();
        }
        self.shared.lot.notify_one();
        n
    }

    /// Where coroutine `id` is: `None` if this scheduler never admitted it or its result was
    /// taken.
    pub fn coroutine_state(&self, id: CoroutineId) -> Option<CoroutineState> {
        let reg = self.shared.registry();
        if let Some(ctl) = reg.live.get(&id) {
            return Some(match ctl.state.load(Ordering::Relaxed) {
                0 => CoroutineState::Ready,
                s => CoroutineState::Running { vcpu: s - 1 },
            });
        }
        reg.results.get(&id).map(|r| CoroutineState::Finished(r.exit.clone()))
    }

    /// Number of admitted coroutines that have not ended.
    pub fn live_coroutines(&self) -> usize {
        self.shared.registry().live.len()
    }

    /// Waits until coroutine `id` ends (at most `timeout`, if given) and returns its result
    /// (the result stays recorded). `None` on time-out or for an id this scheduler does not
    /// know.
    pub fn wait(&self, id: CoroutineId, timeout: Option<Duration>) -> Option<CoroutineResult> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut reg = self.shared.registry();
        loop {
            if let Some(r) = reg.results.get(&id) {
                return Some(r.clone());
            }
            if !reg.live.contains_key(&id) {
                return None;
            }
            reg = self.wait_step(reg, deadline)?;
        }
    }

    /// Waits until fewer than `n` admitted coroutines are live (at most `timeout`, if given).
    /// True if fewer are. (`vmx batch --concurrency` admits a new instance each time.)
    pub fn wait_live_below(&self, n: usize, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut reg = self.shared.registry();
        while reg.live.len() >= n.max(1) {
            match self.wait_step(reg, deadline) {
                Some(g) => reg = g,
                None => return false,
            }
        }
        true
    }

    /// Waits until no admitted coroutine is live (at most `timeout`, if given). True if none
    /// is.
    pub fn wait_all(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut reg = self.shared.registry();
        while !reg.live.is_empty() {
            match self.wait_step(reg, deadline) {
                Some(g) => reg = g,
                None => return false,
            }
        }
        true
    }

    pub(super) fn wait_step<'a>(
        &self,
        reg: MutexGuard<'a, Registry>,
        deadline: Option<Instant>,
    ) -> Option<MutexGuard<'a, Registry>> {
        let cv = &self.shared.finished;
        match deadline {
            None => Some(cv.wait(reg).ignore_poison()),
            Some(d) => {
                let left = d.checked_duration_since(Instant::now())?;
                Some(cv.wait_timeout(reg, left).ignore_poison().0)
            }
        }
    }

    /// Takes the results recorded so far, in id order.
    pub fn take_results(&self) -> Vec<CoroutineResult> {
        std::mem::take(&mut self.shared.registry().results).into_values().collect()
    }

    /// Starts one thread per vCPU (named `vmx-vcpu-N`); a no-op if they run already.
    pub fn start(&self) -> Result<(), SchedulerError> {
        let mut threads = self.threads.lock().ignore_poison();
        if !threads.is_empty() {
            return Ok(());
        }
        for i in 0..self.num_vcpus() {
            let shared = self.shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("vmx-vcpu-{i}"))
                .spawn(move || shared.vcpu_main(i))
                .map_err(SchedulerError::Spawn)?;
            threads.push(h);
        }
        Ok(())
    }

    /// Starts the vCPU threads if needed, waits until every admitted coroutine has ended, stops
    /// the threads and returns every result not taken yet, in id order. A guest that never
    /// ends keeps it waiting (kill it from another thread, or use [`Scheduler::wait_all`] with
    /// a time-out and then [`Scheduler::kill_all`]), and so does a coroutine the caller still
    /// holds (from [`Scheduler::next_coroutine`]): hand it back or drop it first.
    pub fn run_to_completion(self) -> Result<Vec<CoroutineResult>, SchedulerError> {
        self.start()?;
        self.wait_all(None);
        Ok(self.shutdown())
    }

    pub(super) fn stop_threads(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.timer.stop();
        self.shared.readiness.stop();
        self.shared.lot.shutdown();
        let threads = std::mem::take(&mut *self.threads.lock().ignore_poison());
        for h in threads {
            if h.join().is_err() {
                tracing::error!("a vCPU thread panicked");
            }
        }
    }

    /// Stops the vCPU threads (each finishes its current slice), kills every coroutine still
    /// queued, and returns every result not taken yet, in id order.
    pub fn shutdown(self) -> Vec<CoroutineResult> {
        self.stop_threads();
        // Parked threads come back into the queues, to be completed below.
        self.kill_all();
        let shared = &self.shared;
        for v in shared.vcpus.iter() {
            let mut queued = Vec::new();
            {
                let mut local = v.lock();
                queued.extend(local.next.take());
                v.next_full.store(false, Ordering::Release);
                while let Some(c) = local.worker.pop() {
                    queued.push(c);
                }
            }
            for c in queued {
                shared.complete(None, c);
            }
        }
        while let Some(c) = steal_retrying(|| shared.injector.steal()) {
            shared.complete(None, c);
        }
        self.take_results()
    }

    /// Counters of the scheduler and of each vCPU.
    pub fn get_stats(&self) -> SchedulerStats {
        let shared = &self.shared;
        let vcpus: Vec<VCPUStats> = shared.vcpus.iter().map(VCPU::stats).collect();
        let instructions: u64 = vcpus.iter().map(|v| v.instructions).sum();
        let max = vcpus.iter().map(|v| v.instructions).max().unwrap_or(0);
        let load_imbalance = if instructions == 0 {
            0.0
        } else {
            let mean = instructions as f64 / vcpus.len() as f64;
            max as f64 / mean - 1.0
        };
        SchedulerStats {
            spawned: shared.spawned.load(Ordering::Relaxed),
            exited: shared.exited.load(Ordering::Relaxed),
            killed: shared.killed.load(Ordering::Relaxed),
            live: self.live_coroutines(),
            threads_created: shared.threads_created.load(Ordering::Relaxed),
            parked: shared.parked.load(Ordering::Relaxed),
            timeouts: shared.timer.fired.load(Ordering::Relaxed),
            yields: vcpus.iter().map(|v| v.yields).sum(),
            blocks: vcpus.iter().map(|v| v.blocks).sum(),
            context_switches: vcpus.iter().map(|v| v.context_switches).sum(),
            slices: vcpus.iter().map(|v| v.slices).sum(),
            steals: vcpus.iter().map(|v| v.steals).sum(),
            instructions,
            global_queue_length: shared.injector.len(),
            load_imbalance,
            vcpus,
        }
    }
}

impl Drop for Scheduler {
    /// Stops the vCPU threads and cancels the waits of parked guest threads (a parked thread
    /// is owned by its wait, which its own process holds: without the cancel that cycle
    /// would keep the process alive); coroutines still queued are dropped without results.
    fn drop(&mut self) {
        self.stop_threads();
        self.kill_all();
    }
}
