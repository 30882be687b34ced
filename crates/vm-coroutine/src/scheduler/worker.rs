//! The loop of a vCPU thread: find work, run it, spin a little, then park.

use super::*;

impl Shared {
    /// The loop of vCPU thread `i`.
    pub(super) fn vcpu_main(self: &Arc<Self>, i: usize) {
        let v = &self.vcpus[i];
        let _span = tracing::debug_span!("vcpu", id = i).entered();
        v.set_state(VCPUState::Searching);
        'outer: while !self.stopping.load(Ordering::Acquire) {
            if let Some(c) = self.next_coroutine(i) {
                self.run_slice(i, c);
                continue;
            }
            for _ in 0..self.config.spin_rounds {
                std::thread::yield_now();
                if self.stopping.load(Ordering::Acquire) {
                    break 'outer;
                }
                if let Some(c) = self.next_coroutine(i) {
                    self.run_slice(i, c);
                    continue 'outer;
                }
            }
            v.set_state(VCPUState::Parked);
            v.counters.parks.fetch_add(1, Ordering::Relaxed);
            let t0 = Instant::now();
            let wake = self.lot.park(i, || self.has_work(i));
            v.counters.idle_nanos.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            v.set_state(VCPUState::Searching);
            if wake == Wake::Shutdown {
                break;
            }
        }
        v.set_state(VCPUState::Stopped);
        tracing::debug!("vCPU {i} stopped");
    }
}
