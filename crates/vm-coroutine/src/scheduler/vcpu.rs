//! A vCPU: its local run queue, next-to-run slot, state and counters.

use super::*;

/// The part of a vCPU only its driver touches (behind a mutex that is uncontended unless
/// a caller drives the vCPU from several threads at once).
pub(super) struct LocalQueue {
    pub(super) worker: Worker<Coroutine>,
    pub(super) next: Option<Coroutine>,
    pub(super) tick: u32,
    pub(super) next_streak: u32,
    pub(super) rng: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) slices: AtomicU64,
    pub(super) instructions: AtomicU64,
    pub(super) steals: AtomicU64,
    pub(super) stolen: AtomicU64,
    pub(super) context_switches: AtomicU64,
    pub(super) finished: AtomicU64,
    pub(super) parks: AtomicU64,
    pub(super) idle_nanos: AtomicU64,
    pub(super) yields: AtomicU64,
    pub(super) blocks: AtomicU64,
}

/// A virtual CPU: a local run queue, a next-to-run slot and counters. A scheduler thread
/// drives each vCPU once the scheduler is started; before that, callers may drive it with
/// [`Scheduler::next_coroutine`] and [`Scheduler::run_slice`].
pub struct VCPU {
    pub(super) id: usize,
    pub(super) local: Mutex<LocalQueue>,
    pub(super) stealer: Stealer<Coroutine>,
    pub(super) next_full: AtomicBool,
    pub(super) state: AtomicU8,
    /// Id of the coroutine of its last slice (0: none).
    pub(super) last_run: AtomicU64,
    pub(super) counters: Counters,
}

impl std::fmt::Debug for VCPU {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VCPU")
            .field("id", &self.id)
            .field("state", &self.state())
            .field("queue_length", &self.queue_length())
            .finish_non_exhaustive()
    }
}

impl VCPU {
    pub(super) fn new(id: usize) -> VCPU {
        let worker = Worker::new_fifo();
        VCPU {
            id,
            stealer: worker.stealer(),
            local: Mutex::new(LocalQueue {
                worker,
                next: None,
                tick: 0,
                next_streak: 0,
                rng: 0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            }),
            next_full: AtomicBool::new(false),
            state: AtomicU8::new(VCPUState::Idle.as_u8()),
            last_run: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, LocalQueue> {
        self.local.lock().ignore_poison()
    }

    /// Its index.
    pub fn id(&self) -> usize {
        self.id
    }

    /// What it is doing now.
    pub fn state(&self) -> VCPUState {
        VCPUState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub(super) fn set_state(&self, s: VCPUState) -> VCPUState {
        VCPUState::from_u8(self.state.swap(s.as_u8(), Ordering::Relaxed))
    }

    /// Coroutines waiting in its local queue and next-to-run slot.
    pub fn queue_length(&self) -> usize {
        self.stealer.len() + usize::from(self.next_full.load(Ordering::Relaxed))
    }

    /// Its counters.
    pub fn stats(&self) -> VCPUStats {
        let c = &self.counters;
        VCPUStats {
            id: self.id,
            state: self.state(),
            slices: c.slices.load(Ordering::Relaxed),
            instructions: c.instructions.load(Ordering::Relaxed),
            steals: c.steals.load(Ordering::Relaxed),
            stolen: c.stolen.load(Ordering::Relaxed),
            context_switches: c.context_switches.load(Ordering::Relaxed),
            finished: c.finished.load(Ordering::Relaxed),
            parks: c.parks.load(Ordering::Relaxed),
            yields: c.yields.load(Ordering::Relaxed),
            blocks: c.blocks.load(Ordering::Relaxed),
            idle_time: Duration::from_nanos(c.idle_nanos.load(Ordering::Relaxed)),
            queue_length: self.queue_length(),
        }
    }
}
