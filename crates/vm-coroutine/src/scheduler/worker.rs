//! The loop of a vCPU thread: find work, run it, spin a little, hand deferred readiness
//! waits to the poller thread, then park.

use super::*;

impl Shared {
    /// The loop of vCPU thread `i`.
    pub(super) fn vcpu_main(self: &Arc<Self>, i: usize) {
        let v = &self.vcpus[i];
        let _span = tracing::debug_span!("vcpu", id = i).entered();
        v.set_state(VCPUState::Searching);
        VCPU_LOOP.with(|l| l.set(Arc::as_ptr(self) as usize));
        self.awake_vcpus.fetch_add(1, Ordering::AcqRel);
        'outer: while !self.stopping.load(Ordering::Acquire) {
            if let Some(c) = self.next_coroutine(i) {
                self.run_slice(i, c);
                self.readiness.flush_old();
                continue;
            }
            for _ in 0..self.config.spin_rounds {
                std::thread::yield_now();
                if self.stopping.load(Ordering::Acquire) {
                    break 'outer;
                }
                if let Some(c) = self.next_coroutine(i) {
                    self.run_slice(i, c);
                    self.readiness.flush_old();
                    continue 'outer;
                }
            }
            // Out of work. The last vCPU loop to go to sleep hands every deferred readiness
            // wait to the poller thread first; while another loop is awake, that one will
            // (when it goes to sleep, or at its next slice end once they are old). The
            // counter's read-modify-writes are totally ordered and every wait is deferred by
            // a loop while it counts as awake, so the loop that takes the count to zero
            // finds every wait deferred before.
            if self.awake_vcpus.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.readiness.flush();
            }
            v.set_state(VCPUState::Parked);
            v.counters.parks.fetch_add(1, Ordering::Relaxed);
            let t0 = Instant::now();
            let wake = self.lot.park(i, || self.has_work(i));
            self.awake_vcpus.fetch_add(1, Ordering::AcqRel);
            v.counters.idle_nanos.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            v.set_state(VCPUState::Searching);
            if wake == Wake::Shutdown {
                break;
            }
        }
        VCPU_LOOP.with(|l| l.set(0));
        v.set_state(VCPUState::Stopped);
        tracing::debug!("vCPU {i} stopped");
    }
}
