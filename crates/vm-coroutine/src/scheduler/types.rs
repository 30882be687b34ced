//! The scheduler's public vocabulary: limits and defaults, its configuration, errors, what a
//! slice did, and the counters of the scheduler and of its vCPUs.

use super::*;

/// Default fuel of one slice, in guest instructions.
pub const DEFAULT_TIME_SLICE: u64 = 100_000;
/// Default period (in `next_coroutine` calls per vCPU) of looking at the global queue first.
pub const DEFAULT_GLOBAL_QUEUE_INTERVAL: u32 = 61;
/// Most consecutive takes from the next-to-run slot while the local queue has work.
pub const MAX_NEXT_STREAK: u32 = 3;
/// Most vCPUs a scheduler has.
pub const MAX_VCPUS: usize = 1024;

/// How a scheduler runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Number of vCPUs (clamped to `1..=MAX_VCPUS`).
    pub vcpus: usize,
    /// Guest instructions per slice (at least 1).
    pub time_slice: u64,
    /// Every this many `next_coroutine` calls, a vCPU looks at the global queue first (at
    /// least 1).
    pub global_queue_interval: u32,
    /// Times an idle vCPU thread retries (yielding in between) before it parks.
    pub spin_rounds: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            vcpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            time_slice: DEFAULT_TIME_SLICE,
            global_queue_interval: DEFAULT_GLOBAL_QUEUE_INTERVAL,
            spin_rounds: 4,
        }
    }
}

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// A vCPU thread could not be started.
    #[error("cannot start a vCPU thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Why a coroutine was not accepted; the coroutine comes back.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// There is no vCPU with that index.
    #[error("no vCPU {vcpu}")]
    NoSuchVcpu {
        /// The index asked for.
        vcpu: usize,
        /// The coroutine, returned.
        coroutine: Coroutine,
    },
    /// The coroutine is admitted to another scheduler.
    #[error("coroutine {} belongs to another scheduler", .0.id())]
    Foreign(Coroutine),
}

impl SubmitError {
    /// The coroutine that was not accepted.
    pub fn into_coroutine(self) -> Coroutine {
        match self {
            SubmitError::NoSuchVcpu { coroutine, .. } | SubmitError::Foreign(coroutine) => {
                coroutine
            }
        }
    }
}

/// What one slice did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SliceOutcome {
    /// The slice was spent; the coroutine is back in the vCPU's local queue.
    Preempted(CoroutineId),
    /// The guest thread called `sched_yield`; it is at the back of the vCPU's local queue.
    Yielded(CoroutineId),
    /// The guest thread blocked in a system call; it is parked until the wait ends.
    Blocked(CoroutineId),
    /// The guest thread ended; its process goes on.
    ThreadExited(CoroutineId),
    /// The process ended (the result is under its main thread's id).
    Finished(CoroutineResult),
}

/// What a vCPU is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VCPUState {
    /// No thread drives it, and no caller is running a slice on it.
    Idle,
    /// Its thread looks for work.
    Searching,
    /// It runs a slice.
    Running,
    /// Its thread sleeps in the parking lot.
    Parked,
    /// Its thread has ended (the scheduler shut down).
    Stopped,
}

impl VCPUState {
    pub(super) fn from_u8(v: u8) -> VCPUState {
        match v {
            1 => VCPUState::Searching,
            2 => VCPUState::Running,
            3 => VCPUState::Parked,
            4 => VCPUState::Stopped,
            _ => VCPUState::Idle,
        }
    }
    pub(super) fn as_u8(self) -> u8 {
        match self {
            VCPUState::Idle => 0,
            VCPUState::Searching => 1,
            VCPUState::Running => 2,
            VCPUState::Parked => 3,
            VCPUState::Stopped => 4,
        }
    }
}

/// Counters of one vCPU.
#[derive(Clone, Debug, PartialEq)]
pub struct VCPUStats {
    /// The vCPU's index.
    pub id: usize,
    /// What it is doing now.
    pub state: VCPUState,
    /// Slices it ran.
    pub slices: u64,
    /// Guest instructions retired in its slices.
    pub instructions: u64,
    /// Successful steal operations (each takes a batch from another vCPU's queue).
    pub steals: u64,
    /// Coroutines it obtained by stealing (sum of the batch sizes).
    pub stolen: u64,
    /// Times it started a slice of a coroutine other than the one it ran last.
    pub context_switches: u64,
    /// Coroutines that ended on it.
    pub finished: u64,
    /// Times its thread parked.
    pub parks: u64,
    /// Guest `sched_yield` calls in its slices.
    pub yields: u64,
    /// Guest threads that blocked (were parked on a wait) in its slices.
    pub blocks: u64,
    /// Time its thread spent parked.
    pub idle_time: Duration,
    /// Coroutines waiting in its local queue and next-to-run slot.
    pub queue_length: usize,
}

/// Counters of a whole scheduler.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerStats {
    /// Per vCPU.
    pub vcpus: Vec<VCPUStats>,
    /// Processes admitted (main coroutines).
    pub spawned: u64,
    /// Processes that ended (killed ones included).
    pub exited: u64,
    /// Processes that ended by being killed.
    pub killed: u64,
    /// Processes admitted and not ended.
    pub live: usize,
    /// Guest threads created by `clone` (besides each process's main thread).
    pub threads_created: u64,
    /// Guest threads parked in a blocking system call right now.
    pub parked: u64,
    /// Waits ended by the timer (sleeps, futex timeouts).
    pub timeouts: u64,
    /// Sum of the vCPUs' guest `sched_yield` calls.
    pub yields: u64,
    /// Sum of the vCPUs' blocked guest threads.
    pub blocks: u64,
    /// Sum of the vCPUs' context switches.
    pub context_switches: u64,
    /// Sum of the vCPUs' slices.
    pub slices: u64,
    /// Guest instructions retired on all vCPUs.
    pub instructions: u64,
    /// Sum of the vCPUs' steal operations.
    pub steals: u64,
    /// Coroutines waiting in the global queue.
    pub global_queue_length: usize,
    /// How unevenly work was spread: the busiest vCPU's instructions over the mean, minus 1
    /// (0 when perfectly even or when nothing ran; N - 1 when one of N vCPUs did everything).
    pub load_imbalance: f64,
}
