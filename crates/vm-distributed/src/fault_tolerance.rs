//! Fault tolerance: retries with back-off, re-dispatch after node death, deadlines, and
//! exactly one recorded result per task.
//!
//! [`FaultToleranceManager`] decides; the coordinator acts. Each task carries an
//! [`Attempts`] record that only the manager changes.
//!
//! # Invariants
//! - A task gets at most `max_retries + 1` attempts. An attempt fails when its node is
//!   declared dead or the worker reports that it could not run it; the task is then queued
//!   again (after an exponential back-off for worker-reported failures, at once after a node
//!   death) or, once the attempts are used up, fails with every reason collected.
//! - The first result to arrive for a task that is not final is recorded, even when it comes
//!   from an earlier attempt on a node since declared dead (a *late* result); every later
//!   result for it is ignored. So each task has exactly one recorded outcome.
//! - A failure report for an attempt that is no longer current is ignored.
//! - A task past its deadline fails (a running attempt is cancelled), whatever its attempts.

use crate::protocol::NodeId;
use std::time::{Duration, Instant};

/// Settings of failure detection and recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultToleranceConfig {
    /// Retries after the first attempt before a task fails.
    pub max_retries: u32,
    /// Back-off before the first retry of a worker-reported failure; doubles per retry.
    pub retry_backoff: Duration,
    /// Longest back-off.
    pub max_backoff: Duration,
    /// How often workers send heartbeats.
    pub heartbeat_interval: Duration,
    /// Silence after which a node is suspect (gets no new work).
    pub suspect_after: Duration,
    /// Silence after which a node is dead (its tasks are re-dispatched).
    pub dead_after: Duration,
    /// Time after which a dead node is forgotten (leaves status listings).
    pub forget_dead_after: Duration,
}

impl Default for FaultToleranceConfig {
    fn default() -> Self {
        FaultToleranceConfig {
            max_retries: 3,
            retry_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            heartbeat_interval: Duration::from_millis(250),
            suspect_after: Duration::from_millis(1000),
            dead_after: Duration::from_millis(2000),
            forget_dead_after: Duration::from_secs(600),
        }
    }
}

/// A task's attempts, as the manager tracks them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Attempts started.
    pub started: u32,
    /// Attempts that failed.
    pub failed: u32,
    /// The attempt running now: node and attempt number.
    pub current: Option<(NodeId, u32)>,
    /// Why attempts failed.
    pub reasons: Vec<String>,
    /// When the task must be final by.
    pub deadline: Option<Instant>,
    /// Whether the task has its one outcome.
    pub finished: bool,
}

/// What to do with an arriving result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultVerdict {
    /// Record it; `late` when it is not from the current attempt (an attempt given up on).
    Record {
        /// Whether it came from an attempt other than the current one.
        late: bool,
    },
    /// The task already has its outcome: ignore it.
    Duplicate,
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureVerdict {
    /// Queue the task again after this delay.
    Retry {
        /// The back-off.
        after: Duration,
    },
    /// Attempts are used up: the task fails.
    GiveUp,
}

/// Makes the decisions of the module docs.
#[derive(Clone, Debug, Default)]
pub struct FaultToleranceManager {
    config: FaultToleranceConfig,
}

impl FaultToleranceManager {
    /// A manager with these settings.
    pub fn new(config: FaultToleranceConfig) -> FaultToleranceManager {
        FaultToleranceManager { config }
    }

    /// Its settings.
    pub fn config(&self) -> &FaultToleranceConfig {
        &self.config
    }

    /// Records that a new attempt starts on `node`; returns its number (1 for the first).
    pub fn begin_attempt(&self, a: &mut Attempts, node: NodeId) -> u32 {
        a.started += 1;
        a.current = Some((node, a.started));
        a.started
    }

    /// A result arrived from `node` for attempt `attempt`.
    pub fn on_result(&self, a: &mut Attempts, node: NodeId, attempt: u32) -> ResultVerdict {
        if a.finished {
            return ResultVerdict::Duplicate;
        }
        let late = a.current != Some((node, attempt));
        a.finished = true;
        a.current = None;
        ResultVerdict::Record { late }
    }

    /// The worker `node` reports that attempt `attempt` could not run. `None` if that attempt
    /// is not current (stale report, or the task is final).
    pub fn on_worker_failure(
        &self,
        a: &mut Attempts,
        node: NodeId,
        attempt: u32,
        reason: String,
    ) -> Option<FailureVerdict> {
        if a.finished || a.current != Some((node, attempt)) {
            return None;
        }
        Some(self.fail_attempt(a, reason, true))
    }

    /// The node running the current attempt was declared dead. `None` if the task has no
    /// attempt running on `node`.
    pub fn on_node_dead(
        &self,
        a: &mut Attempts,
        node: NodeId,
        reason: String,
    ) -> Option<FailureVerdict> {
        if a.finished || a.current.map(|(n, _)| n) != Some(node) {
            return None;
        }
        Some(self.fail_attempt(a, reason, false))
    }

    fn fail_attempt(&self, a: &mut Attempts, reason: String, backoff: bool) -> FailureVerdict {
        a.current = None;
        a.failed += 1;
        a.reasons.push(reason);
        if a.failed > self.config.max_retries {
            a.finished = true;
            return FailureVerdict::GiveUp;
        }
        FailureVerdict::Retry {
            after: if backoff { self.backoff(a.failed) } else { Duration::ZERO },
        }
    }

    /// The back-off before retry number `retry` (1 for the first): `retry_backoff * 2^(retry-1)`,
    /// at most `max_backoff`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(20);
        self.config.retry_backoff.saturating_mul(factor).min(self.config.max_backoff)
    }

    /// A cancel request: the task becomes final (later results and failure reports are
    /// ignored). Returns the node of the attempt running now, if any, so it can be told to
    /// stop; `Err(())` if the task was final already.
    #[allow(clippy::result_unit_err)]
    pub fn cancel(&self, a: &mut Attempts) -> Result<Option<NodeId>, ()> {
        if a.finished {
            return Err(());
        }
        a.finished = true;
        Ok(a.current.take().map(|(n, _)| n))
    }

    /// Whether the task's deadline has passed at `now` (and it is not final). If so, marks it
    /// final and records the reason.
    pub fn check_deadline(&self, a: &mut Attempts, now: Instant) -> bool {
        match a.deadline {
            Some(d) if !a.finished && now >= d => {
                a.finished = true;
                a.current = None;
                a.reasons.push("deadline exceeded".into());
                true
            }
            _ => false,
        }
    }

    /// Time left before the deadline (zero when past), `None` without one.
    pub fn remaining(&self, a: &Attempts, now: Instant) -> Option<Duration> {
        a.deadline.map(|d| d.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager() -> FaultToleranceManager {
        FaultToleranceManager::new(FaultToleranceConfig {
            max_retries: 2,
            retry_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(25),
            ..Default::default()
        })
    }

    #[test]
    fn retries_back_off_up_to_the_limit_then_give_up_with_every_reason() {
        let m = manager();
        let mut a = Attempts::default();
        let n = NodeId(1);
        let k = m.begin_attempt(&mut a, n);
        assert_eq!(
            m.on_worker_failure(&mut a, n, k, "engine panicked".into()),
            Some(FailureVerdict::Retry { after: Duration::from_millis(10) })
        );
        let k = m.begin_attempt(&mut a, n);
        assert_eq!(
            m.on_worker_failure(&mut a, n, k, "again".into()),
            Some(FailureVerdict::Retry { after: Duration::from_millis(20) })
        );
        let k = m.begin_attempt(&mut a, n);
        assert_eq!(m.on_worker_failure(&mut a, n, k, "third".into()), Some(FailureVerdict::GiveUp));
        assert!(a.finished);
        assert_eq!(a.reasons, ["engine panicked", "again", "third"]);
        assert_eq!(m.backoff(9), Duration::from_millis(25));
    }

    #[test]
    fn node_death_redispatches_at_once_and_a_late_result_is_recorded_once() {
        let m = manager();
        let mut a = Attempts::default();
        let (dead, other) = (NodeId(1), NodeId(2));
        m.begin_attempt(&mut a, dead);
        assert_eq!(m.on_node_dead(&mut a, other, "x".into()), None, "not running there");
        assert_eq!(
            m.on_node_dead(&mut a, dead, "node-1 declared dead".into()),
            Some(FailureVerdict::Retry { after: Duration::ZERO })
        );
        let second = m.begin_attempt(&mut a, other);
        assert_eq!(second, 2);
        // The dead node's result arrives late: recorded, once.
        assert_eq!(m.on_result(&mut a, dead, 1), ResultVerdict::Record { late: true });
        assert_eq!(m.on_result(&mut a, other, second), ResultVerdict::Duplicate);
        assert_eq!(m.on_result(&mut a, dead, 1), ResultVerdict::Duplicate);
        // A failure report for a finished task changes nothing.
        assert_eq!(m.on_worker_failure(&mut a, other, second, "late".into()), None);
    }

    #[test]
    fn stale_failure_reports_are_ignored() {
        let m = manager();
        let mut a = Attempts::default();
        m.begin_attempt(&mut a, NodeId(1));
        m.on_node_dead(&mut a, NodeId(1), "dead".into());
        let k = m.begin_attempt(&mut a, NodeId(2));
        assert_eq!(m.on_worker_failure(&mut a, NodeId(1), 1, "old".into()), None);
        assert_eq!(m.on_result(&mut a, NodeId(2), k), ResultVerdict::Record { late: false });
    }

    #[test]
    fn a_cancelled_task_ignores_later_results_and_failures() {
        let m = manager();
        let mut a = Attempts::default();
        let k = m.begin_attempt(&mut a, NodeId(4));
        assert_eq!(m.cancel(&mut a), Ok(Some(NodeId(4))));
        assert_eq!(m.cancel(&mut a), Err(()), "cancelled twice");
        assert_eq!(m.on_result(&mut a, NodeId(4), k), ResultVerdict::Duplicate);
        assert_eq!(m.on_worker_failure(&mut a, NodeId(4), k, "x".into()), None);
        assert_eq!(m.on_node_dead(&mut a, NodeId(4), "x".into()), None);
        let mut queued = Attempts::default();
        assert_eq!(m.cancel(&mut queued), Ok(None));
    }

    #[test]
    fn deadlines_fail_the_task_once() {
        let m = manager();
        let now = Instant::now();
        let mut a =
            Attempts { deadline: Some(now + Duration::from_millis(5)), ..Default::default() };
        assert!(!m.check_deadline(&mut a, now));
        assert_eq!(m.remaining(&a, now), Some(Duration::from_millis(5)));
        assert!(m.check_deadline(&mut a, now + Duration::from_millis(5)));
        assert!(!m.check_deadline(&mut a, now + Duration::from_millis(6)));
        assert_eq!(m.on_result(&mut a, NodeId(1), 1), ResultVerdict::Duplicate);
        assert_eq!(a.reasons, ["deadline exceeded"]);
    }
}
