//! The handshake gate: bounds the connections that have not authenticated yet, in total and
//! per source address, so that strangers cannot lock out token holders.
//!
//! # Invariants
//! - At most `max_total` connections are in their handshake at once, and at most
//!   `max_per_source` from one IP address. A new connection is always admitted: when a bound
//!   is reached, the oldest connection under that bound is closed to make room, preferring
//!   one that has not sent a byte yet ("silent"). A peer holding the token finishes its
//!   handshake in one round trip, so it is never the oldest for long; idle sockets are.
//! - Every admitted connection holds a [`Ticket`]; dropping it (handshake done, failed,
//!   timed out, or the connection was evicted) removes the connection from the gate.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::task::AbortHandle;
use vm_exec_core::sync::IgnorePoison;

struct Pending {
    source: IpAddr,
    spoke: Arc<AtomicBool>,
    abort: Option<AbortHandle>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    /// By admission order: the first is the oldest.
    pending: BTreeMap<u64, Pending>,
    per_source: HashMap<IpAddr, usize>,
    evicted: u64,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&p.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&p.source);
            }
        }
        Some(p)
    }

    /// Closes the oldest silent connection matching `source` (any source if `None`), or the
    /// oldest one if none is silent.
    fn evict_one(&mut self, source: Option<IpAddr>) {
        let matching = |p: &Pending| source.is_none_or(|s| p.source == s);
        let victim = self
            .pending
            .iter()
            .find(|(_, p)| matching(p) && !p.spoke.load(Ordering::Relaxed))
            .or_else(|| self.pending.iter().find(|(_, p)| matching(p)))
            .map(|(id, _)| *id);
        if let Some(p) = victim.and_then(|id| self.remove(id)) {
            self.evicted += 1;
            if let Some(a) = p.abort {
                a.abort();
            }
        }
    }
}

/// The gate. See the module docs.
pub(super) struct HandshakeGate {
    max_total: usize,
    max_per_source: usize,
    inner: Mutex<Inner>,
}

/// An admitted connection's place in the gate.
pub(super) struct Ticket {
    gate: Arc<HandshakeGate>,
    id: u64,
    spoke: Arc<AtomicBool>,
}

impl Ticket {
    /// The connection sent its first bytes.
    pub(super) fn spoke(&self) {
        self.spoke.store(true, Ordering::Relaxed);
    }

    /// Its id in the gate.
    pub(super) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.lock().remove(self.id);
    }
}

impl HandshakeGate {
    pub(super) fn new(max_total: usize, max_per_source: usize) -> HandshakeGate {
        HandshakeGate {
            max_total: max_total.max(1),
            max_per_source: max_per_source.max(1),
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().ignore_poison()
    }

    /// Admits a connection from `source`, evicting others if a bound is reached.
    pub(super) fn admit(self: &Arc<Self>, source: IpAddr) -> Ticket {
        let mut g = self.lock();
        while g.per_source.get(&source).copied().unwrap_or(0) >= self.max_per_source {
            g.evict_one(Some(source));
        }
        while g.pending.len() >= self.max_total {
            g.evict_one(None);
        }
        let id = g.next;
        g.next += 1;
        let spoke = Arc::new(AtomicBool::new(false));
        g.pending.insert(id, Pending { source, spoke: spoke.clone(), abort: None });
        *g.per_source.entry(source).or_default() += 1;
        if g.evicted > 0 && g.evicted.is_power_of_two() {
            tracing::warn!(
                "{} connections closed so far to make room for new handshakes (latest from {source})",
                g.evicted
            );
        }
        Ticket { gate: self.clone(), id, spoke }
    }

    /// Records the task serving connection `id`, so that eviction can close it (nothing if
    /// it left the gate already).
    pub(super) fn set_abort(&self, id: u64, abort: AbortHandle) {
        if let Some(p) = self.lock().pending.get_mut(&id) {
            p.abort = Some(abort);
        }
    }

    /// Connections in their handshake now.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.lock().pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_source_loses_its_oldest_silent_connection_and_others_are_untouched() {
        let gate = Arc::new(HandshakeGate::new(8, 3));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let t1 = gate.admit(a);
        let t2 = gate.admit(a);
        t1.spoke(); // t1 is talking: t2 is the oldest silent one
        let t3 = gate.admit(a);
        let other = gate.admit(b);
        let t4 = gate.admit(a);
        let g = gate.lock();
        assert!(g.pending.contains_key(&t1.id), "a talking connection stays");
        assert!(!g.pending.contains_key(&t2.id), "the oldest silent one is evicted");
        assert!(g.pending.contains_key(&t3.id) && g.pending.contains_key(&t4.id));
        assert!(g.pending.contains_key(&other.id), "another source is untouched");
        assert_eq!(g.per_source[&a], 3);
        drop(g);
        drop(t2); // an evicted ticket dropping later changes nothing
        assert_eq!(gate.pending(), 4);
        drop((t1, t3, t4, other));
        assert_eq!(gate.pending(), 0);
    }

    #[test]
    fn the_total_bound_evicts_across_sources() {
        let gate = Arc::new(HandshakeGate::new(4, 4));
        let tickets: Vec<Ticket> = (0..10u8).map(|i| gate.admit([10, 0, 0, i].into())).collect();
        assert_eq!(gate.pending(), 4);
        let g = gate.lock();
        let left: Vec<u64> = g.pending.keys().copied().collect();
        assert_eq!(left, vec![6, 7, 8, 9], "the newest stay");
        drop(g);
        drop(tickets);
        assert_eq!(gate.pending(), 0);
    }
}
