//! Finding work: the next-to-run slot, the local queue, the global queue and stealing from
//! the other vCPUs, in the order the module docs give.

use super::*;

/// Retries a steal until it is not `Retry` (bounded; contention is transient).
pub(super) fn steal_retrying<T>(mut f: impl FnMut() -> Steal<T>) -> Option<T> {
    for _ in 0..64 {
        match f() {
            Steal::Success(t) => return Some(t),
            Steal::Empty => return None,
            Steal::Retry => std::hint::spin_loop(),
        }
    }
    None
}

impl Shared {
    pub(super) fn has_work(&self, vcpu: usize) -> bool {
        self.vcpus.get(vcpu).is_some_and(|v| v.next_full.load(Ordering::Acquire))
            || !self.injector.is_empty()
            || self.vcpus.iter().any(|v| !v.stealer.is_empty())
    }

    /// Finds the next coroutine for `vcpu` (see the module docs for the order), without
    /// looking at kill requests.
    pub(super) fn find(&self, i: usize) -> Option<Coroutine> {
        let v = self.vcpus.get(i)?;
        let mut local = v.lock();
        local.tick = local.tick.wrapping_add(1);
        let interval = self.config.global_queue_interval.max(1);
        let mut found = None;
        if local.tick % interval == 0 {
            found = steal_retrying(|| self.injector.steal());
        }
        if found.is_none() && local.next.is_some() {
            if local.next_streak < MAX_NEXT_STREAK || local.worker.is_empty() {
                local.next_streak += 1;
                found = local.next.take();
                v.next_full.store(false, Ordering::Release);
            } else {
                local.next_streak = 0;
            }
        } else {
            local.next_streak = 0;
        }
        if found.is_none() {
            found = local.worker.pop();
        }
        if found.is_none() {
            let limit = (self.injector.len() / self.vcpus.len() + 1).min(32);
            found = steal_retrying(|| {
                self.injector.steal_batch_with_limit_and_pop(&local.worker, limit)
            });
        }
        if found.is_none() && self.vcpus.len() > 1 {
            found = self.steal(i, &mut local);
        }
        let more = found.is_some() && (!local.worker.is_empty() || !self.injector.is_empty());
        drop(local);
        if more {
            self.lot.notify_one();
        }
        found
    }

    /// Steals half of a random other vCPU's local queue into `local`, returning one.
    pub(super) fn steal(&self, i: usize, local: &mut LocalQueue) -> Option<Coroutine> {
        let n = self.vcpus.len();
        // xorshift64
        local.rng ^= local.rng << 13;
        local.rng ^= local.rng >> 7;
        local.rng ^= local.rng << 17;
        let start = (local.rng % n as u64) as usize;
        for k in 0..n {
            let j = (start + k) % n;
            if j == i {
                continue;
            }
            let victim = &self.vcpus[j].stealer;
            if let Some(c) = steal_retrying(|| victim.steal_batch_and_pop(&local.worker)) {
                let c_ = &self.vcpus[i].counters;
                c_.steals.fetch_add(1, Ordering::Relaxed);
                c_.stolen.fetch_add(1 + local.worker.len() as u64, Ordering::Relaxed);
                return Some(c);
            }
        }
        None
    }

    pub(super) fn next_coroutine(&self, i: usize) -> Option<Coroutine> {
        loop {
            let c = self.find(i)?;
            if c.link().is_some_and(Link::kill_requested) {
                self.complete(Some(i), c);
                continue;
            }
            return Some(c);
        }
    }
}
