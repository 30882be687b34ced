//! The node registry: the coordinator's record of worker nodes, their capabilities, heartbeats and
//! liveness.
//!
//! A node registers over an authenticated connection with its capabilities, then sends a
//! heartbeat carrying its load every heartbeat period.
//!
//! # Invariants
//! - States move `Alive -> Suspect -> Dead`. A node is `Suspect` once nothing was heard from
//!   it for `suspect_after`, or at once when its connection closes; a suspect node gets no
//!   new work. It is `Dead` once nothing was heard for `dead_after`; the coordinator then
//!   re-dispatches its tasks and closes its connection.
//! - A suspect node that is heard from again over a live connection is `Alive` again; a
//!   dead node comes back only by registering anew (its tasks have gone elsewhere).
//! - A node dead for `forget_dead_after` is forgotten: it leaves status listings (and, should
//!   it register again, it is new).
//! - Only the node's current connection counts: messages and disconnections of a replaced
//!   connection (`conn` id) are ignored.

use crate::fault_tolerance::FaultToleranceConfig;
use crate::protocol::{ImageHash, NodeId, NodeLoad, VmCapabilities};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// Liveness of a node as the coordinator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Heard from recently; gets work.
    Alive,
    /// Silent for a while or disconnected; gets no new work.
    Suspect,
    /// Given up on; its tasks were re-dispatched.
    Dead,
}

impl NodeState {
    /// A one-word name.
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Alive => "alive",
            NodeState::Suspect => "suspect",
            NodeState::Dead => "dead",
        }
    }
}

/// A worker node as status queries show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmInfo {
    /// Its id.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// The address it connected from.
    pub addr: String,
    /// Its operating-system process id.
    pub pid: u32,
    /// What it offers.
    pub capabilities: VmCapabilities,
    /// Its liveness.
    pub state: NodeState,
    /// Its last reported load.
    pub load: NodeLoad,
    /// Tasks the coordinator has running on it now.
    pub running: u32,
    /// Milliseconds since it was last heard from.
    pub last_seen_ms: u64,
}

#[derive(Debug)]
struct Entry {
    info: VmInfo,
    last_seen: Instant,
    /// When it was declared dead.
    dead_since: Option<Instant>,
    conn: Option<u64>,
    images: HashSet<ImageHash>,
}

/// The registry. See the module docs.
#[derive(Debug)]
pub struct NodeRegistry {
    suspect_after: Duration,
    dead_after: Duration,
    forget_after: Duration,
    nodes: BTreeMap<NodeId, Entry>,
}

/// What a registration replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// A node never seen before.
    New,
    /// A node that was known (alive, suspect or dead), reconnecting.
    Returning(NodeState),
}

impl NodeRegistry {
    /// An empty registry with the time-outs of `config`.
    pub fn new(config: &FaultToleranceConfig) -> NodeRegistry {
        NodeRegistry {
            suspect_after: config.suspect_after,
            dead_after: config.dead_after.max(config.suspect_after),
            forget_after: config.forget_dead_after,
            nodes: BTreeMap::new(),
        }
    }

    /// Records a registration over connection `conn`; the node is `Alive` and knows exactly
    /// `images`.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &mut self,
        id: NodeId,
        name: String,
        addr: String,
        pid: u32,
        capabilities: VmCapabilities,
        images: impl IntoIterator<Item = ImageHash>,
        conn: u64,
        now: Instant,
    ) -> Registration {
        let previous = self.nodes.get(&id).map(|e| e.info.state);
        let info = VmInfo {
            id,
            name,
            addr,
            pid,
            capabilities,
            state: NodeState::Alive,
            load: NodeLoad::default(),
            running: 0,
            last_seen_ms: 0,
        };
        self.nodes.insert(
            id,
            Entry {
                info,
                last_seen: now,
                dead_since: None,
                conn: Some(conn),
                images: images.into_iter().collect(),
            },
        );
        match previous {
            None => Registration::New,
            Some(s) => Registration::Returning(s),
        }
    }

    /// Whether `conn` is `id`'s current connection.
    pub fn is_current(&self, id: NodeId, conn: u64) -> bool {
        self.nodes.get(&id).is_some_and(|e| e.conn == Some(conn))
    }

    /// Something arrived from `id` over `conn`: it is alive (unless dead). Returns true if it
    /// went from suspect back to alive.
    pub fn heard(&mut self, id: NodeId, conn: u64, now: Instant) -> bool {
        let Some(e) = self.nodes.get_mut(&id) else { return false };
        if e.conn != Some(conn) {
            return false;
        }
        e.last_seen = now;
        if e.info.state == NodeState::Suspect {
            e.info.state = NodeState::Alive;
            return true;
        }
        false
    }

    /// A heartbeat with the node's load.
    pub fn heartbeat(&mut self, id: NodeId, conn: u64, load: NodeLoad, now: Instant) -> bool {
        let back = self.heard(id, conn, now);
        if let Some(e) = self.nodes.get_mut(&id) {
            if e.conn == Some(conn) {
                e.info.load = load;
            }
        }
        back
    }

    /// `conn` of `id` closed: the node is suspect. False if `conn` was not current.
    pub fn disconnected(&mut self, id: NodeId, conn: u64) -> bool {
        let Some(e) = self.nodes.get_mut(&id) else { return false };
        if e.conn != Some(conn) {
            return false;
        }
        e.conn = None;
        if e.info.state == NodeState::Alive {
            e.info.state = NodeState::Suspect;
        }
        true
    }

    /// Applies the time-outs; returns the nodes that changed state, with their new state.
    /// Nodes dead for longer than `forget_dead_after` are dropped.
    pub fn sweep(&mut self, now: Instant) -> Vec<(NodeId, NodeState)> {
        let forget = self.forget_after;
        self.nodes
            .retain(|_, e| e.dead_since.is_none_or(|d| now.saturating_duration_since(d) < forget));
        let mut changed = Vec::new();
        for (id, e) in self.nodes.iter_mut() {
            let silent = now.saturating_duration_since(e.last_seen);
            let next = match e.info.state {
                NodeState::Dead => continue,
                _ if silent >= self.dead_after => NodeState::Dead,
                NodeState::Alive if silent >= self.suspect_after => NodeState::Suspect,
                s => s,
            };
            if next != e.info.state {
                e.info.state = next;
                if next == NodeState::Dead {
                    e.conn = None;
                    e.dead_since = Some(now);
                }
                changed.push((*id, next));
            }
        }
        changed
    }

    /// Declares `id` dead now (for example when its connection broke the protocol).
    pub fn declare_dead(&mut self, id: NodeId) {
        if let Some(e) = self.nodes.get_mut(&id) {
            e.info.state = NodeState::Dead;
            e.conn = None;
            e.dead_since.get_or_insert_with(Instant::now);
        }
    }

    /// `id`'s state.
    pub fn state(&self, id: NodeId) -> Option<NodeState> {
        self.nodes.get(&id).map(|e| e.info.state)
    }

    /// Records that `id` has `image`; true if it did not have it before.
    pub fn add_image(&mut self, id: NodeId, image: ImageHash) -> bool {
        self.nodes.get_mut(&id).is_some_and(|e| e.images.insert(image))
    }

    /// The most guest memory a node that is not dead offers (the most any one task can
    /// get); `None` when no such node is known.
    pub fn largest_memory_offer(&self) -> Option<u64> {
        self.nodes
            .values()
            .filter(|e| e.info.state != NodeState::Dead)
            .map(|e| e.info.capabilities.memory_bytes)
            .max()
    }

    /// Every node, with `running` filled in by `running_of`.
    pub fn list(&self, now: Instant, running_of: impl Fn(NodeId) -> u32) -> Vec<VmInfo> {
        self.nodes
            .values()
            .map(|e| {
                let mut info = e.info.clone();
                info.running = running_of(info.id);
                info.last_seen_ms = now.saturating_duration_since(e.last_seen).as_millis() as u64;
                info
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> VmCapabilities {
        VmCapabilities {
            vcpus: 1,
            max_concurrent: 2,
            memory_bytes: 1 << 30,
            engine: "interp".into(),
            isa: "rv64gc".into(),
        }
    }

    fn registry() -> NodeRegistry {
        NodeRegistry::new(&FaultToleranceConfig {
            suspect_after: Duration::from_millis(100),
            dead_after: Duration::from_millis(300),
            forget_dead_after: Duration::from_millis(1000),
            ..Default::default()
        })
    }

    #[test]
    fn silence_makes_a_node_suspect_then_dead() {
        let mut r = registry();
        let t0 = Instant::now();
        let id = NodeId(1);
        r.register(id, "a".into(), "x".into(), 1, caps(), [], 7, t0);
        assert!(r.sweep(t0 + Duration::from_millis(50)).is_empty());
        assert_eq!(r.sweep(t0 + Duration::from_millis(150)), vec![(id, NodeState::Suspect)]);
        assert!(r.heartbeat(id, 7, NodeLoad::default(), t0 + Duration::from_millis(160)));
        assert_eq!(r.state(id), Some(NodeState::Alive));
        assert_eq!(r.sweep(t0 + Duration::from_millis(500)), vec![(id, NodeState::Dead)]);
        // A dead node is not revived by a stray heartbeat; only by registering again.
        assert!(!r.heartbeat(id, 7, NodeLoad::default(), t0 + Duration::from_millis(510)));
        assert_eq!(r.state(id), Some(NodeState::Dead));
        let again = r.register(id, "a".into(), "x".into(), 1, caps(), [], 8, t0);
        assert_eq!(again, Registration::Returning(NodeState::Dead));
        assert_eq!(r.state(id), Some(NodeState::Alive));
    }

    #[test]
    fn a_closed_connection_makes_a_node_suspect_and_stale_connections_are_ignored() {
        let mut r = registry();
        let t0 = Instant::now();
        let id = NodeId(2);
        r.register(id, "a".into(), "x".into(), 1, caps(), [], 1, t0);
        r.register(id, "a".into(), "x".into(), 1, caps(), [], 2, t0);
        assert!(!r.disconnected(id, 1), "old connection");
        assert_eq!(r.state(id), Some(NodeState::Alive));
        assert!(r.disconnected(id, 2));
        assert_eq!(r.state(id), Some(NodeState::Suspect));
        assert!(!r.heard(id, 2, t0), "a closed connection cannot revive it");
    }

    #[test]
    fn dead_nodes_are_forgotten_after_the_configured_time() {
        let mut r = registry();
        let t0 = Instant::now();
        r.register(NodeId(5), "a".into(), "x".into(), 1, caps(), [], 1, t0);
        r.register(NodeId(6), "b".into(), "x".into(), 1, caps(), [], 2, t0);
        let t1 = t0 + Duration::from_millis(400);
        r.heard(NodeId(6), 2, t1);
        assert_eq!(r.sweep(t1), vec![(NodeId(5), NodeState::Dead)]);
        assert_eq!(r.list(t1, |_| 0).len(), 2, "a dead node is listed for a while");
        r.heard(NodeId(6), 2, t1 + Duration::from_millis(999));
        r.sweep(t1 + Duration::from_millis(999));
        assert_eq!(r.list(t1, |_| 0).len(), 2);
        r.heard(NodeId(6), 2, t1 + Duration::from_millis(1000));
        r.sweep(t1 + Duration::from_millis(1000));
        let left: Vec<NodeId> = r.list(t1, |_| 0).iter().map(|n| n.id).collect();
        assert_eq!(left, vec![NodeId(6)], "then forgotten");
        assert_eq!(r.state(NodeId(5)), None);
    }

    #[test]
    fn images_are_tracked_per_node() {
        let mut r = registry();
        let h = ImageHash::of(b"a");
        r.register(NodeId(3), "a".into(), "x".into(), 1, caps(), [h], 1, Instant::now());
        assert!(!r.add_image(NodeId(3), h));
        assert!(r.add_image(NodeId(3), ImageHash::of(b"b")));
    }
}
