//! Task placement: which node runs the next task.
//!
//! [`TaskScheduler`] keeps, per node, its capabilities, the tasks the coordinator has running
//! there and the guest memory they reserve, and picks a node with a
//! [`LoadBalancingStrategy`].
//!
//! # Invariants
//! - A node never gets more than its `max_concurrent` tasks, and the memory limits of its
//!   running tasks never add up to more than its `memory_bytes`; a node that is not available
//!   (suspect, or not registered) gets nothing. When no node has room, [`TaskScheduler::pick`]
//!   returns `None` and the coordinator keeps the task queued (backpressure).
//! - The strategy only chooses among nodes with room; it never overrides those limits.

use crate::protocol::{NodeId, VmCapabilities};
use crate::Error;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// How the coordinator chooses among nodes with room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadBalancingStrategy {
    /// Each node in turn (in node-id order), skipping full ones.
    RoundRobin,
    /// The node with the smallest share of its slots in use (ties: fewer running, then id).
    #[default]
    LeastLoaded,
    /// The node with the most idle vCPUs (vCPUs minus running tasks; ties: lower reported
    /// host load, then fewer running, then id): CPU-bound work spreads over cores.
    CpuAware,
    /// The node with the most guest memory left after placing the task (ties: fewer running,
    /// then id).
    MemoryAware,
}

impl LoadBalancingStrategy {
    /// Every strategy.
    pub const ALL: [LoadBalancingStrategy; 4] = [
        LoadBalancingStrategy::RoundRobin,
        LoadBalancingStrategy::LeastLoaded,
        LoadBalancingStrategy::CpuAware,
        LoadBalancingStrategy::MemoryAware,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LoadBalancingStrategy::RoundRobin => "round-robin",
            LoadBalancingStrategy::LeastLoaded => "least-loaded",
            LoadBalancingStrategy::CpuAware => "cpu-aware",
            LoadBalancingStrategy::MemoryAware => "memory-aware",
        }
    }
}

impl std::fmt::Display for LoadBalancingStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for LoadBalancingStrategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL.into_iter().find(|x| x.name() == s).ok_or_else(|| {
            Error::Invalid(format!(
                "unknown strategy `{s}` (round-robin, least-loaded, cpu-aware, memory-aware)"
            ))
        })
    }
}

/// A node as the scheduler sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSlot {
    /// What it offers.
    pub capabilities: VmCapabilities,
    /// Tasks running there.
    pub running: u32,
    /// Guest memory reserved by them.
    pub memory_reserved: u64,
    /// Host load it last reported (load average per CPU).
    pub cpu_load: f32,
    /// Whether it may get work.
    pub available: bool,
}

impl NodeSlot {
    fn fits(&self, memory: u64) -> bool {
        self.available
            && self.running < self.capabilities.max_concurrent
            && self.memory_reserved.saturating_add(memory) <= self.capabilities.memory_bytes
    }

    fn idle_vcpus(&self) -> i64 {
        i64::from(self.capabilities.vcpus) - i64::from(self.running)
    }

    fn free_memory_after(&self, memory: u64) -> u64 {
        self.capabilities.memory_bytes.saturating_sub(self.memory_reserved.saturating_add(memory))
    }
}

/// Places tasks on nodes. See the module docs.
#[derive(Clone, Debug)]
pub struct TaskScheduler {
    strategy: LoadBalancingStrategy,
    nodes: BTreeMap<NodeId, NodeSlot>,
    last: Option<NodeId>,
}

impl TaskScheduler {
    /// A scheduler with no nodes.
    pub fn new(strategy: LoadBalancingStrategy) -> TaskScheduler {
        TaskScheduler { strategy, nodes: BTreeMap::new(), last: None }
    }

    /// Its strategy.
    pub fn strategy(&self) -> LoadBalancingStrategy {
        self.strategy
    }

    /// Adds a node (available, nothing running) or updates its capabilities and makes it
    /// available, keeping its counts.
    pub fn upsert_node(&mut self, id: NodeId, capabilities: VmCapabilities) {
        let slot = self.nodes.entry(id).or_insert_with(|| NodeSlot {
            capabilities: capabilities.clone(),
            running: 0,
            memory_reserved: 0,
            cpu_load: 0.0,
            available: true,
        });
        slot.capabilities = capabilities;
        slot.available = true;
    }

    /// Forgets a node.
    pub fn remove_node(&mut self, id: NodeId) {
        self.nodes.remove(&id);
    }

    /// Allows or stops new work on a node.
    pub fn set_available(&mut self, id: NodeId, available: bool) {
        if let Some(s) = self.nodes.get_mut(&id) {
            s.available = available;
        }
    }

    /// Records a node's reported host load.
    pub fn set_cpu_load(&mut self, id: NodeId, load: f32) {
        if let Some(s) = self.nodes.get_mut(&id) {
            s.cpu_load = if load.is_finite() { load } else { 0.0 };
        }
    }

    /// A node's slot.
    pub fn node(&self, id: NodeId) -> Option<&NodeSlot> {
        self.nodes.get(&id)
    }

    /// Whether some available node has a free slot (whatever the memory).
    pub fn has_free_slot(&self) -> bool {
        self.nodes.values().any(|s| s.available && s.running < s.capabilities.max_concurrent)
    }

    /// Free slots on available nodes (whatever the memory).
    pub fn free_slots(&self) -> usize {
        self.nodes
            .values()
            .filter(|s| s.available)
            .map(|s| s.capabilities.max_concurrent.saturating_sub(s.running) as usize)
            .sum()
    }

    /// Slots of available nodes, free or not.
    pub fn capacity(&self) -> usize {
        self.nodes
            .values()
            .filter(|s| s.available)
            .map(|s| s.capabilities.max_concurrent as usize)
            .sum()
    }

    /// Whether some node could take a task needing `memory`.
    pub fn has_room(&self, memory: u64) -> bool {
        self.nodes.values().any(|s| s.fits(memory))
    }

    /// Chooses a node for a task needing `memory` bytes of guest memory, or `None` when no
    /// node has room. Does not record the placement: call [`TaskScheduler::started`].
    pub fn pick(&mut self, memory: u64) -> Option<NodeId> {
        let candidates = self.nodes.iter().filter(|(_, s)| s.fits(memory));
        let chosen = match self.strategy {
            LoadBalancingStrategy::RoundRobin => {
                let after = self.last;
                let mut first = None;
                let mut next = None;
                for (id, _) in candidates {
                    first.get_or_insert(*id);
                    if after.is_none_or(|a| *id > a) {
                        next = Some(*id);
                        break;
                    }
                }
                next.or(first)
            }
            LoadBalancingStrategy::LeastLoaded => candidates
                .min_by(|(ia, a), (ib, b)| {
                    let la = u64::from(a.running) * u64::from(b.capabilities.max_concurrent);
                    let lb = u64::from(b.running) * u64::from(a.capabilities.max_concurrent);
                    la.cmp(&lb).then(a.running.cmp(&b.running)).then(ia.cmp(ib))
                })
                .map(|(id, _)| *id),
            LoadBalancingStrategy::CpuAware => candidates
                .max_by(|(ia, a), (ib, b)| {
                    a.idle_vcpus()
                        .cmp(&b.idle_vcpus())
                        .then(b.cpu_load.partial_cmp(&a.cpu_load).unwrap_or(Ordering::Equal))
                        .then(b.running.cmp(&a.running))
                        .then(ib.cmp(ia))
                })
                .map(|(id, _)| *id),
            LoadBalancingStrategy::MemoryAware => candidates
                .max_by(|(ia, a), (ib, b)| {
                    a.free_memory_after(memory)
                        .cmp(&b.free_memory_after(memory))
                        .then(b.running.cmp(&a.running))
                        .then(ib.cmp(ia))
                })
                .map(|(id, _)| *id),
        };
        if chosen.is_some() {
            self.last = chosen;
        }
        chosen
    }

    /// Records that a task needing `memory` started on `id`.
    pub fn started(&mut self, id: NodeId, memory: u64) {
        if let Some(s) = self.nodes.get_mut(&id) {
            s.running += 1;
            s.memory_reserved = s.memory_reserved.saturating_add(memory);
        }
    }

    /// Records that a task needing `memory` ended on `id`.
    pub fn finished(&mut self, id: NodeId, memory: u64) {
        if let Some(s) = self.nodes.get_mut(&id) {
            s.running = s.running.saturating_sub(1);
            s.memory_reserved = s.memory_reserved.saturating_sub(memory);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn caps(vcpus: u32, slots: u32, memory_mib: u64) -> VmCapabilities {
        VmCapabilities {
            vcpus,
            max_concurrent: slots,
            memory_bytes: memory_mib * MIB,
            engine: "interp".into(),
            isa: "rv64gc".into(),
        }
    }

    fn place(s: &mut TaskScheduler, n: usize, memory: u64) -> Vec<u64> {
        (0..n)
            .map(|_| {
                let id = s.pick(memory).expect("room");
                s.started(id, memory);
                id.0
            })
            .collect()
    }

    #[test]
    fn round_robin_takes_turns_and_skips_full_nodes() {
        let mut s = TaskScheduler::new(LoadBalancingStrategy::RoundRobin);
        s.upsert_node(NodeId(1), caps(1, 1, 1024));
        s.upsert_node(NodeId(2), caps(1, 8, 1024));
        s.upsert_node(NodeId(3), caps(1, 8, 1024));
        assert_eq!(place(&mut s, 5, MIB), vec![1, 2, 3, 2, 3]);
    }

    #[test]
    fn least_loaded_fills_by_share_of_slots_and_avoids_a_full_node() {
        let mut s = TaskScheduler::new(LoadBalancingStrategy::LeastLoaded);
        s.upsert_node(NodeId(1), caps(1, 2, 1024));
        s.upsert_node(NodeId(2), caps(1, 4, 1024));
        // Node 1 (2 slots) and node 2 (4 slots) end up equally loaded by share.
        let placed = place(&mut s, 6, MIB);
        assert_eq!(placed.iter().filter(|&&n| n == 1).count(), 2, "{placed:?}");
        assert_eq!(placed.iter().filter(|&&n| n == 2).count(), 4, "{placed:?}");
        assert_eq!(s.pick(MIB), None, "everything is full");
        s.finished(NodeId(2), MIB);
        assert_eq!(s.pick(MIB), Some(NodeId(2)));
    }

    #[test]
    fn cpu_aware_prefers_idle_vcpus_then_low_host_load() {
        let mut s = TaskScheduler::new(LoadBalancingStrategy::CpuAware);
        s.upsert_node(NodeId(1), caps(1, 8, 1024));
        s.upsert_node(NodeId(2), caps(4, 8, 1024));
        // Node 2 has four vCPUs: it takes work until its idle vCPUs drop to node 1's.
        assert_eq!(place(&mut s, 4, MIB), vec![2, 2, 2, 1]);
        let mut s = TaskScheduler::new(LoadBalancingStrategy::CpuAware);
        s.upsert_node(NodeId(1), caps(2, 8, 1024));
        s.upsert_node(NodeId(2), caps(2, 8, 1024));
        s.set_cpu_load(NodeId(1), 0.9);
        s.set_cpu_load(NodeId(2), 0.1);
        assert_eq!(s.pick(MIB), Some(NodeId(2)));
    }

    #[test]
    fn memory_aware_prefers_free_memory_and_never_overcommits() {
        let mut s = TaskScheduler::new(LoadBalancingStrategy::MemoryAware);
        s.upsert_node(NodeId(1), caps(4, 16, 512));
        s.upsert_node(NodeId(2), caps(4, 16, 2048));
        let placed = place(&mut s, 7, 256 * MIB);
        // 2048 MiB takes six before it drops to node 1's 512 MiB, then they alternate.
        assert_eq!(placed, vec![2, 2, 2, 2, 2, 2, 1]);
        // Then node 1 fills up and node 2 takes the last 256 MiB it has.
        assert_eq!(place(&mut s, 3, 256 * MIB), vec![2, 1, 2]);
        assert_eq!(s.pick(256 * MIB), None, "no node has 256 MiB left");
        assert_eq!(s.pick(4096 * MIB), None);
    }

    #[test]
    fn unavailable_nodes_get_nothing() {
        for strategy in LoadBalancingStrategy::ALL {
            let mut s = TaskScheduler::new(strategy);
            s.upsert_node(NodeId(1), caps(4, 4, 1024));
            s.upsert_node(NodeId(2), caps(1, 1, 1024));
            s.set_available(NodeId(1), false);
            assert_eq!(s.pick(MIB), Some(NodeId(2)), "{strategy}");
            s.started(NodeId(2), MIB);
            assert_eq!(s.pick(MIB), None, "{strategy}");
            assert!(!s.has_room(MIB));
            assert!(!s.has_free_slot());
            assert_eq!(strategy.name().parse::<LoadBalancingStrategy>().unwrap(), strategy);
        }
    }
}
