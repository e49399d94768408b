//! The agent's node tracker: a pure state machine deciding which node to
//! restart when.
//!
//! The coordinator owns one [`NodeTracker`]. It feeds it what Consul says
//! ([`NodeTracker::observe`], [`NodeTracker::consul_unavailable`]), what the
//! leader election says ([`NodeTracker::set_leader`]) and how restart cycles
//! end ([`NodeTracker::cycle_finished`]), and calls [`NodeTracker::tick`] at
//! [`NodeTracker::next_wakeup`]. Each call pushes [`Decision`]s: start a
//! cycle, log a missing node, give up, hold a restart back.
//!
//! Safety first: a node is missing only when Consul has positively answered
//! without its key (an unreachable Consul makes nothing missing and starts
//! nothing), a node never has two cycles at once, and the clock restarts
//! after every cycle so the next attempt waits another full `timeout`.
//! Times are monotonic `Instant`s passed in by the caller, never read here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::cycle::Outcome;

/// The tracker's knobs (from the agent config).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerSettings {
    /// How long a node's key must be missing before a restart (spec: 5m).
    pub timeout: Duration,
    /// Consecutive cycles per outage before giving up; 0 = unlimited.
    pub max_restart_attempts: u32,
    /// Cycles allowed to run at once; 0 = unlimited.
    pub max_concurrent_restarts: u32,
    /// Guard: hold every new restart while more than this fraction of the
    /// (non-maintenance) nodes are missing at once and at least two are:
    /// that looks like a network problem on the agent's side, not dead nodes.
    pub max_missing_fraction: Option<f64>,
    /// Decide as usual but start no cycle ([`Decision::WouldRestart`]).
    pub dry_run: bool,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        TrackerSettings {
            timeout: Duration::from_secs(300),
            max_restart_attempts: 0,
            max_concurrent_restarts: 0,
            max_missing_fraction: None,
            dry_run: false,
        }
    }
}

/// One successful Consul answer: which node keys exist and which nodes are
/// in maintenance. Names not configured in the tracker are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Nodes whose heartbeat key `oracle-watchdog/nodes/{node}` exists.
    pub present: BTreeSet<String>,
    /// Nodes with a `oracle-watchdog/maintenance/{node}` key.
    pub maintenance: BTreeSet<String>,
}

/// How a restart cycle ended, as the tracker needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CycleOutcome {
    /// The instance is RUNNING again (the heartbeat may still take a while).
    Recovered,
    /// The cycle gave up.
    Failed {
        /// True when retrying cannot help (TERMINATED, not found): no more
        /// attempts until the node's key reappears.
        permanent: bool,
        /// Why, for logs.
        reason: String,
    },
    /// The agent is stopping; the cycle stays resumable in KV.
    Interrupted,
}

impl From<Outcome> for CycleOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Recovered => CycleOutcome::Recovered,
            Outcome::Failed { permanent, reason } => CycleOutcome::Failed { permanent, reason },
        }
    }
}

/// Why a due restart was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldReason {
    /// The node has a maintenance key.
    Maintenance,
    /// Consul's last answer failed: the node's state is not current.
    ConsulUnavailable,
    /// Another agent is the leader; it does the restarting.
    NotLeader,
    /// Too many nodes are missing at once (see
    /// [`TrackerSettings::max_missing_fraction`]).
    Guard,
    /// `max_concurrent_restarts` cycles are already running.
    Concurrency,
}

impl HoldReason {
    /// Short name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::Maintenance => "maintenance",
            HoldReason::ConsulUnavailable => "consul_unavailable",
            HoldReason::NotLeader => "not_leader",
            HoldReason::Guard => "guard",
            HoldReason::Concurrency => "concurrency",
        }
    }
}

/// What the coordinator should do or report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start a restart cycle for `node` (it is now in flight).
    Restart {
        /// The node.
        node: String,
        /// 1 for the first cycle of this outage, then 2, 3, ...
        attempt: u32,
        /// Time since the node was first seen missing in this outage.
        missing_for: Duration,
    },
    /// Dry run: a cycle would start now; none runs, but it counts as an attempt.
    WouldRestart {
        /// The node.
        node: String,
        /// Attempt number, as for `Restart`.
        attempt: u32,
        /// Time since the node was first seen missing in this outage.
        missing_for: Duration,
    },
    /// The node's key is gone (first noticed now).
    NodeMissing {
        /// The node.
        node: String,
    },
    /// The node's key is back.
    NodeRecovered {
        /// The node.
        node: String,
        /// Restart attempts made during the outage.
        attempts: u32,
        /// How long it was missing; `None` when this agent never saw it
        /// missing (a resumed cycle for a node found present).
        missing_for: Option<Duration>,
    },
    /// `max_restart_attempts` cycles did not bring the node back; no more
    /// attempts until its key reappears. Once per outage.
    GaveUp {
        /// The node.
        node: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A restart is due but not started. Once per change of reason.
    Held {
        /// The node.
        node: String,
        /// Why.
        reason: HoldReason,
    },
    /// The mass-disappearance guard now holds all new restarts.
    GuardEngaged {
        /// Non-maintenance nodes missing.
        missing: usize,
        /// Non-maintenance nodes configured.
        total: usize,
    },
    /// The guard no longer holds restarts.
    GuardReleased,
}

/// Whether a node's key exists, as far as Consul has told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// No successful Consul answer yet.
    Unknown,
    /// The key exists.
    Present,
    /// The key is absent.
    Missing {
        /// When this outage was first noticed.
        first_seen: Instant,
        /// Start of the current wait: first noticed, or the end of the last
        /// cycle. The next restart is due at `since + timeout`.
        since: Instant,
    },
}

/// A read-only view of one node, for `status` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Whether its key exists.
    pub presence: Presence,
    /// Consecutive restart attempts in this outage.
    pub attempts: u32,
    /// A cycle is running for it.
    pub in_flight: bool,
    /// It has a maintenance key.
    pub maintenance: bool,
    /// `max_restart_attempts` reached in this outage.
    pub gave_up: bool,
    /// A cycle failed permanently (e.g. TERMINATED) in this outage.
    pub permanently_failed: bool,
    /// Why a due restart is being held, if it is.
    pub held: Option<HoldReason>,
}

#[derive(Debug, Clone)]
struct Node {
    presence: Presence,
    attempts: u32,
    in_flight: bool,
    maintenance: bool,
    gave_up: bool,
    permanent: bool,
    held: Option<HoldReason>,
}

impl Node {
    fn new() -> Self {
        Node {
            presence: Presence::Unknown,
            attempts: 0,
            in_flight: false,
            maintenance: false,
            gave_up: false,
            permanent: false,
            held: None,
        }
    }

    /// When this node's next restart (or GaveUp) falls due, if it can.
    fn due_at(&self, timeout: Duration) -> Option<Instant> {
        match self.presence {
            Presence::Missing { since, .. }
                if !self.in_flight && !self.gave_up && !self.permanent =>
            {
                Some(since + timeout)
            }
            _ => None,
        }
    }
}

/// Tracks every configured node. See the module docs.
#[derive(Debug, Clone)]
pub struct NodeTracker {
    settings: TrackerSettings,
    nodes: BTreeMap<String, Node>,
    consul_ok: bool,
    leader: bool,
    guard: bool,
}

impl NodeTracker {
    /// A tracker for these node names (duplicates collapse). Nothing is
    /// missing until the first [`NodeTracker::observe`]. Leader by default,
    /// so a single agent needs no election.
    pub fn new(nodes: impl IntoIterator<Item = String>, settings: TrackerSettings) -> Self {
        NodeTracker {
            settings,
            nodes: nodes.into_iter().map(|n| (n, Node::new())).collect(),
            consul_ok: false,
            leader: true,
            guard: false,
        }
    }

    /// Applies a successful Consul answer, then decides (as [`NodeTracker::tick`]).
    /// A node absent from it becomes missing now unless it already was;
    /// a node present again is recovered (attempts and flags reset).
    pub fn observe(&mut self, snapshot: &Snapshot, now: Instant, out: &mut Vec<Decision>) {
        self.consul_ok = true;
        for (name, node) in &mut self.nodes {
            node.maintenance = snapshot.maintenance.contains(name);
            if snapshot.present.contains(name) {
                let missing_for = match node.presence {
                    Presence::Missing { first_seen, .. } => Some(Some(now - first_seen)),
                    Presence::Unknown if node.attempts > 0 || node.in_flight => Some(None),
                    _ => None,
                };
                if let Some(missing_for) = missing_for {
                    out.push(Decision::NodeRecovered {
                        node: name.clone(),
                        attempts: node.attempts,
                        missing_for,
                    });
                }
                node.presence = Presence::Present;
                node.attempts = 0;
                node.gave_up = false;
                node.permanent = false;
                node.held = None;
            } else if !matches!(node.presence, Presence::Missing { .. }) {
                node.presence = Presence::Missing {
                    first_seen: now,
                    since: now,
                };
                out.push(Decision::NodeMissing { node: name.clone() });
            }
        }
        self.evaluate(now, out);
    }

    /// Records that Consul could not be asked (refused, hung, no leader).
    /// Nothing becomes missing and no restart starts until the next
    /// successful [`NodeTracker::observe`]; nodes already missing keep their
    /// timers.
    pub fn consul_unavailable(&mut self, _now: Instant) {
        self.consul_ok = false;
    }

    /// Sets whether this agent holds the leader lock. Only the leader
    /// restarts. Gaining leadership decides at once, so call
    /// [`NodeTracker::resume`] for cycles stored in KV before this.
    pub fn set_leader(&mut self, leader: bool, now: Instant, out: &mut Vec<Decision>) {
        self.leader = leader;
        self.evaluate(now, out);
    }

    /// Marks a cycle found in KV as running again (in flight) with its
    /// stored attempt number. False for an unknown node.
    pub fn resume(&mut self, node: &str, attempt: u32, _now: Instant) -> bool {
        let Some(n) = self.nodes.get_mut(node) else {
            return false;
        };
        n.in_flight = true;
        n.attempts = n.attempts.max(attempt);
        n.held = None;
        true
    }

    /// Records the end of a node's cycle, then decides (a freed concurrency
    /// slot may start a held node). The node's clock restarts now, so if
    /// its key is still missing the next attempt comes a full `timeout`
    /// later. Ignored for unknown nodes and nodes with no cycle in flight.
    pub fn cycle_finished(
        &mut self,
        node: &str,
        outcome: CycleOutcome,
        now: Instant,
        out: &mut Vec<Decision>,
    ) {
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        if !n.in_flight {
            return;
        }
        n.in_flight = false;
        if let Presence::Missing { since, .. } = &mut n.presence {
            *since = now;
            if let CycleOutcome::Failed {
                permanent: true, ..
            } = outcome
            {
                n.permanent = true;
            }
        }
        self.evaluate(now, out);
    }

    /// Time-based decisions: restarts, holds, give-ups and the guard.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Decision>) {
        self.evaluate(now, out);
    }

    /// The earliest instant at which [`NodeTracker::tick`] could decide
    /// something: a missing node crossing `timeout` (or its GaveUp falling
    /// due). `None` when nothing is pending. Held nodes wait for an event
    /// (snapshot, cycle end, leadership), which decides by itself, so they
    /// are not polled for. May lie in the past after calls that do not
    /// decide (`resume`, `consul_unavailable`): then tick at once.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.nodes
            .values()
            .filter(|n| n.held.is_none())
            .filter_map(|n| n.due_at(self.settings.timeout))
            .min()
    }

    /// Configured nodes whose key is missing (maintenance included).
    pub fn missing_count(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| matches!(n.presence, Presence::Missing { .. }))
            .count()
    }

    /// Configured nodes (the spec's `nodes_monitored` gauge).
    pub fn monitored_count(&self) -> usize {
        self.nodes.len()
    }

    /// Nodes with a cycle in flight.
    pub fn in_flight(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.in_flight)
            .map(|(name, _)| name.as_str())
    }

    /// One node's state, for `status` and metrics; `None` if not configured.
    pub fn node_view(&self, name: &str) -> Option<NodeView> {
        self.nodes.get(name).map(|n| NodeView {
            presence: n.presence,
            attempts: n.attempts,
            in_flight: n.in_flight,
            maintenance: n.maintenance,
            gave_up: n.gave_up,
            permanently_failed: n.permanent,
            held: n.held,
        })
    }

    /// Whether this agent currently acts (holds the leader lock).
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// Whether the mass-disappearance guard currently holds restarts.
    pub fn guard_engaged(&self) -> bool {
        self.guard
    }

    fn evaluate(&mut self, now: Instant, out: &mut Vec<Decision>) {
        self.update_guard(out);
        let timeout = self.settings.timeout;
        let max_attempts = self.settings.max_restart_attempts;
        let max_concurrent = self.settings.max_concurrent_restarts as usize;
        let mut running = self.nodes.values().filter(|n| n.in_flight).count();

        // Longest-waiting first, so a concurrency limit serves nodes in order.
        let mut due: Vec<(Instant, String)> = Vec::new();
        for (name, node) in &mut self.nodes {
            match node.due_at(timeout) {
                Some(at) if at <= now => due.push((at, name.clone())),
                _ => node.held = None,
            }
        }
        due.sort();

        for (_, name) in due {
            let Some(node) = self.nodes.get_mut(&name) else {
                continue;
            };
            let hold = if node.maintenance {
                Some(HoldReason::Maintenance)
            } else if max_attempts > 0 && node.attempts >= max_attempts {
                node.gave_up = true;
                node.held = None;
                out.push(Decision::GaveUp {
                    node: name,
                    attempts: node.attempts,
                });
                continue;
            } else if !self.consul_ok {
                Some(HoldReason::ConsulUnavailable)
            } else if !self.leader {
                Some(HoldReason::NotLeader)
            } else if self.guard {
                Some(HoldReason::Guard)
            } else if !self.settings.dry_run && max_concurrent > 0 && running >= max_concurrent {
                Some(HoldReason::Concurrency)
            } else {
                None
            };
            if let Some(reason) = hold {
                if node.held != Some(reason) {
                    node.held = Some(reason);
                    out.push(Decision::Held { node: name, reason });
                }
                continue;
            }
            let Presence::Missing { first_seen, since } = &mut node.presence else {
                continue;
            };
            node.held = None;
            node.attempts = node.attempts.saturating_add(1);
            let attempt = node.attempts;
            let missing_for = now - *first_seen;
            if self.settings.dry_run {
                *since = now;
                out.push(Decision::WouldRestart {
                    node: name,
                    attempt,
                    missing_for,
                });
            } else {
                node.in_flight = true;
                running += 1;
                out.push(Decision::Restart {
                    node: name,
                    attempt,
                    missing_for,
                });
            }
        }
    }

    fn update_guard(&mut self, out: &mut Vec<Decision>) {
        let Some(fraction) = self.settings.max_missing_fraction else {
            return;
        };
        let watched = self.nodes.values().filter(|n| !n.maintenance);
        let (mut total, mut missing) = (0usize, 0usize);
        for node in watched {
            total += 1;
            if matches!(node.presence, Presence::Missing { .. }) {
                missing += 1;
            }
        }
        let engaged = missing >= 2 && (missing as f64) > fraction * (total as f64);
        if engaged != self.guard {
            self.guard = engaged;
            out.push(if engaged {
                Decision::GuardEngaged { missing, total }
            } else {
                Decision::GuardReleased
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: Duration = Duration::from_nanos(1);
    const MIN: Duration = Duration::from_secs(60);
    const T: Duration = Duration::from_secs(300);

    struct Clock {
        t0: Instant,
    }

    impl Clock {
        fn new() -> Self {
            Clock { t0: Instant::now() }
        }
        /// `t0 + d`.
        fn at(&self, d: Duration) -> Instant {
            self.t0 + d
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn snap(present: &[&str]) -> Snapshot {
        Snapshot {
            present: present.iter().map(|s| s.to_string()).collect(),
            maintenance: BTreeSet::new(),
        }
    }

    fn snap_maint(present: &[&str], maintenance: &[&str]) -> Snapshot {
        Snapshot {
            maintenance: maintenance.iter().map(|s| s.to_string()).collect(),
            ..snap(present)
        }
    }

    fn tracker(nodes: &[&str], settings: TrackerSettings) -> NodeTracker {
        NodeTracker::new(names(nodes), settings)
    }

    fn restarts(out: &[Decision]) -> Vec<(String, u32)> {
        out.iter()
            .filter_map(|d| match d {
                Decision::Restart { node, attempt, .. } => Some((node.clone(), *attempt)),
                _ => None,
            })
            .collect()
    }

    fn restart(node: &str, attempt: u32, missing_for: Duration) -> Decision {
        Decision::Restart {
            node: node.into(),
            attempt,
            missing_for,
        }
    }

    fn held(node: &str, reason: HoldReason) -> Decision {
        Decision::Held {
            node: node.into(),
            reason,
        }
    }

    fn failed(permanent: bool) -> CycleOutcome {
        CycleOutcome::Failed {
            permanent,
            reason: "test".into(),
        }
    }

    #[test]
    fn nothing_is_missing_before_consul_has_answered() {
        let c = Clock::new();
        let mut t = tracker(&["a", "b"], TrackerSettings::default());
        let mut out = Vec::new();
        t.tick(c.at(10 * T), &mut out);
        assert!(out.is_empty());
        assert_eq!(t.missing_count(), 0);
        assert_eq!(t.monitored_count(), 2);
        assert_eq!(t.next_wakeup(), None);
        assert_eq!(t.node_view("a").unwrap().presence, Presence::Unknown);
    }

    #[test]
    fn restart_exactly_at_timeout_not_a_nanosecond_before() {
        let c = Clock::new();
        let mut t = tracker(&["a", "b"], TrackerSettings::default());
        let mut out = Vec::new();
        t.observe(&snap(&["b"]), c.at(Duration::ZERO), &mut out);
        assert_eq!(out, vec![Decision::NodeMissing { node: "a".into() }]);
        assert_eq!(t.missing_count(), 1);
        assert_eq!(t.next_wakeup(), Some(c.at(T)));
        out.clear();
        t.tick(c.at(T - NS), &mut out);
        // Still missing one nanosecond before the timeout: nothing.
        t.observe(&snap(&["b"]), c.at(T - NS), &mut out);
        assert!(out.is_empty(), "{out:?}");
        t.tick(c.at(T), &mut out);
        assert_eq!(out, vec![restart("a", 1, T)]);
        assert_eq!(t.in_flight().collect::<Vec<_>>(), vec!["a"]);
    }

    #[test]
    fn never_two_cycles_for_one_node() {
        let c = Clock::new();
        let mut t = tracker(&["a"], TrackerSettings::default());
        let mut out = Vec::new();
        t.observe(&snap(&[]), c.at(Duration::ZERO), &mut out);
        t.tick(c.at(T), &mut out);
        assert_eq!(restarts(&out).len(), 1);
        // While in flight: no wakeup, no second restart however long it takes.
        assert_eq!(t.next_wakeup(), None);
        for m in 6..120 {
            t.observe(&snap(&[]), c.at(m * MIN), &mut out);
            t.tick(c.at(m * MIN), &mut out);
        }
        assert_eq!(restarts(&out).len(), 1);
        assert!(t.node_view("a").unwrap().in_flight);
    }

    #[test]
    fn next_attempt_waits_a_full_timeout_after_the_cycle_ends() {
        let c = Clock::new();
        let mut t = tracker(&["a"], TrackerSettings::default());
        let mut out = Vec::new();
        t.observe(&snap(&[]), c.at(Duration::ZERO), &mut out);
        t.tick(c.at(T), &mut out);
        out.clear();
        let end = c.at(T + 2 * MIN);
        t.cycle_finished("a", CycleOutcome::Recovered, end, &mut out);
        assert!(out.is_empty());
        assert_eq!(t.next_wakeup(), Some(end + T));
        t.tick(end + T - NS, &mut out);
        assert!(out.is_empty());
        t.tick(end + T, &mut out);
        assert_eq!(out, vec![restart("a", 2, 2 * T + 2 * MIN)]);
    }

    #[test]
    fn recovery_resets_attempts() {
        let c = Clock::new();
        let mut t = tracker(&["a"], TrackerSettings::default());
        let mut out = Vec::new();
        t.observe(&snap(&[]), c.at(Duration::ZERO), &mut out);
        t.tick(c.at(T), &mut out);
        t.cycle_finished("a", failed(false), c.at(T + MIN), &mut out);
        t.tick(c.at(2 * T + MIN), &mut out);
        assert_eq!(restarts(&out), vec![("a".into(), 1), ("a".into(), 2)]);
        t.cycle_finished(
            "a",
            CycleOutcome::Recovered,
            c.at(2 * T + 2 * MIN),
            &mut out,
        );
        out.clear();
        t.observe(&snap(&["a"]), c.at(2 * T + 3 * MIN), &mut out);
        assert_eq!(
            out,
            vec![Decision::NodeRecovered {
                node: "a".into(),
                attempts: 2,
                missing_for: Some(2 * T + 3 * MIN),
            }]
        );
        assert_eq!(t.missing_count(), 0);
        assert_eq!(t.next_wakeup(), None);
        // A new outage starts counting at 1 again.
        out.clear();
        let t1 = c.at(60 * MIN);
        t.observe(&snap(&[]), t1, &mut out);
        t.tick(t1 + T, &mut out);
        assert_eq!(
            out,
            vec![
                Decision::NodeMissing { node: "a".into() },
                restart("a", 1, T)
            ]
        );
    }

    #[test]
    fn max_attempts_then_gave_up_exactly_once() {
        let c = Clock::new();
        let settings = TrackerSettings {
            max_restart_attempts: 2,
            ..TrackerSettings::default()
        };
        let mut t = tracker(&["a"], settings);
        let mut out = Vec::new();
        t.observe(&snap(&[]), c.at(Duration::ZERO), &mut out);
        let mut now = c.at(Duration::ZERO);
        for _ in 0..2 {
            now = t.next_wakeup().unwrap();
            t.tick(now, &mut out);
            now += MIN;
            t.cycle_finished("a", failed(false), now, &mut out);
        }
        assert_eq!(restarts(&out), vec![("a".into(), 1), ("a".into(), 2)]);
        // GaveUp comes when the last attempt's timeout has passed.
        assert_eq!(t.next_wakeup(), Some(now + T));
        out.clear();
        t.tick(now + T - NS, &mut out);
        assert!(out.is_empty());
        t.tick(now + T, &mut out);
        assert_eq!(
            out,
            vec![Decision::GaveUp {
                node: "a".into(),
                attempts: 2
            }]
        );
        assert_eq!(t.next_wakeup(), None);
        out.clear();
        for m in 1..100 {
            t.tick(now + T + m * MIN, &mut out);
            t.observe(&snap(&[]), now + T + m * MIN, &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        assert!(t.node_view("a").unwrap().gave_up);
        // Coming back clears it; the next outage is handled again.
        let later = now + 10 * T;
        t.observe(&snap(&["a"]), later, &mut out);
        t.observe(&snap(&[]), later + MIN, &mut out);
        out.clear();
        t.tick(later + MIN + T, &mut out);
        assert_eq!(restarts(&out), vec![("a".into(), 1)]);
    }

    #[test]
    fn permanent_failure_stops_attempts_until_the_node_reappears() {
        let c = Clock::new();
        let mut t = tracker(&["a"], TrackerSettings::default());
        let mut out = Vec::new();
        t.observe(&snap(&[]), c.at(Duration::ZERO), &mut out);
        t.tick(c.at(T), &mut out);
        t.cycle_finished("a", failed(true), c.at(T + MIN), &mut out);
        assert!(t.node_view("a").unwrap().permanently_failed);
        assert_eq!(t.next_wakeup(), None);
        for m in 1..200 {
            t.tick(c.at(T + m * MIN), &mut out);
        }
        assert_eq!(restarts(&out).len(), 1);
        assert!(!out.iter().any(|d| matches!(d, Decision::GaveUp { .. })));
        let back = c.at(300 * MIN);
        t.observe(&snap(&["a"]), back, &mut out);
        assert!(!t.node_view("a").unwrap().permanently_failed);
        t.observe(&snap(&[]), back + MIN, &mut out);
        t.tick(back + MIN + T, &mut out);
        assert_eq!(restarts(&out).len(), 2);
    }

    #[test]
    fn consul_outage_never_causes_a_restart() {
        let c = Clock::new();
        let mut t = tracker(&["a", "b"], TrackerSettings::default());
        let mut out = Vec::new();
        t.observe(&snap(&["a", "b"]), c.at(Duration::ZERO), &mut out);
        t.consul_unavailable(c.at(MIN));
        // Hours of outage: nothing is missing, nothing is restarted.
        for m in 1..240 {
            t.consul_unavailable(c.at(m * MIN));
            t.tick(c.at(m * MIN), &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(t.missing_count(), 0);
        assert_eq!(t.next_wakeup(), None);
        // Consul is back and "a" is absent: missing since now, not since
        // the outage began.
        let back = c.at(240 * MIN);
        t.observe(&snap(&["b"]), back, &mut out);
        assert_eq!(out, vec![Decision::NodeMissing { node: "a".into() }]);
        assert_eq!(t.next_wakeup(), Some(back + T));
        out.clear();
        t.tick(back + T - NS, &mut out);
        assert!(out.is_empty());
        t.tick(back + T, &mut out);
        assert_eq!(out, vec![restart("a", 1, T)]);
    }

    #[test]
    fn consul_outage_holds_due_restarts_and_keeps_missing_timers() {
        let c = Clock::new();
        let mut t = tracker(&["a", "b"], TrackerSettings::default());
        let mut out = Vec::new();
        t.observe(&snap(&["b"]), c.at(Duration::ZERO), &mut out);
        out.clear();
        t.consul_unavailable(c.at(MIN));
        t.tick(c.at(T), &mut out);
        t.tick(c.at(T + MIN), &mut out);
        assert_eq!(out, vec![held("a", HoldReason::ConsulUnavailable)]);
        assert_eq!(t.next_wakeup(), None, "held: waits for Consul, no polling");
        out.clear();
        // Consul answers again and "a" is still absent: it was positively
        // missing before and after, so the restart starts right away.
        t.observe(&snap(&["b"]), c.at(6 * MIN), &mut out);
        assert_eq!(out, vec![restart("a", 1, 6 * MIN)]);
    }

    #[test]
    fn maintenance_nodes_are_never_restarted_until_they_leave_maintenance() {
        let c = Clock::new();
        let mut t = tracker(&["a", "b"], TrackerSettings::default());
        let mut out = Vec::new();
        t.observe(&snap_maint(&["b"], &["a"]), c.at(Duration::ZERO), &mut out);
        out.clear();
        for m in 1..60 {
            t.observe(&snap_maint(&["b"], &["a"]), c.at(m * MIN), &mut out);
            t.tick(c.at(m * MIN), &mut out);
        }
        assert_eq!(out, vec![held("a", HoldReason::Maintenance)]);
        assert_eq!(t.missing_count(), 1);
        assert!(t.node_view("a").unwrap().maintenance);
        out.clear();
        // Out of maintenance while missing for longer than the timeout.
        t.observe(&snap(&["b"]), c.at(60 * MIN), &mut out);
        assert_eq!(out, vec![restart("a", 1, 60 * MIN)]);
    }

    #[test]
    fn guard_holds_all_restarts_while_too_many_nodes_vanish() {
        let c = Clock::new();
        let settings = TrackerSettings {
            max_missing_fraction: Some(0.5),
            ..TrackerSettings::default()
        };
        let mut t = tracker(&["a", "b", "c", "d"], settings);
        let mut out = Vec::new();
        t.observe(&snap(&["d"]), c.at(Duration::ZERO), &mut out);
        assert!(out.contains(&Decision::GuardEngaged {
            missing: 3,
            total: 4
        }));
        assert!(t.guard_engaged());
        out.clear();
        t.tick(c.at(T), &mut out);
        t.tick(c.at(T + MIN), &mut out);
        t.observe(&snap(&["d"]), c.at(T + 2 * MIN), &mut out);
        assert_eq!(
            out,
            vec![
                held("a", HoldReason::Guard),
                held("b", HoldReason::Guard),
                held("c", HoldReason::Guard)
            ]
        );
        out.clear();
        // "c" comes back: 2 of 4 missing is not more than half.
        t.observe(&snap(&["c", "d"]), c.at(T + 3 * MIN), &mut out);
        assert_eq!(out[1], Decision::GuardReleased);
        assert_eq!(restarts(&out), vec![("a".into(), 1), ("b".into(), 1)]);
        assert!(!t.guard_engaged());
    }

    #[test]
    fn guard_needs_two_missing_and_ignores_maintenance_nodes() {
        let c = Clock::new();
        let settings = TrackerSettings {
            max_missing_fraction: Some(0.3),
            ..TrackerSettings::default()
        };
        // One of two missing is 50% > 30%, but a single node is not a pattern.
        let mut t = tracker(&["a", "b"], settings.clone());
        let mut out = Vec::new();
        t.observe(&snap(&["b"]), c.at(Duration::ZERO), &mut out);
        t.tick(c.at(T), &mut out);
        assert!(!t.guard_engaged());
        assert_eq!(restarts(&out), vec![("a".into(), 1)]);

        // Maintenance nodes count neither as missing nor in the total.
        let mut t = tracker(&["a", "b", "c", "d", "e"], settings);
        let mut out = Vec::new();
        t.observe(
            &snap_maint(&["b", "e"], &["c", "d"]),
            c.at(Duration::ZERO),
            &mut out,
        );
        assert!(!t.guard_engaged(), "1 of 3 watched missing: {out:?}");
        t.observe(&snap_maint(&["e"], &["c", "d"]), c.at(MIN), &mut out);
        assert!(out.contains(&Decision::GuardEngaged {
            missing: 2,
            total: 3
        }));
    }

    #[test]
    fn concurrency_limit_holds_and_then_serves_the_longest_missing() {
        let c = Clock::new();
        let settings = TrackerSettings {
            max_concurrent_restarts: 1,
            ..TrackerSettings::default()
        };
        let mut t = tracker(&["a", "b", "c"], settings);
        let mut out = Vec::new();
        t.observe(&snap(&["a", "b"]), c.at(Duration::ZERO), &mut out);
        t.observe(&snap(&["a"]), c.at(MIN), &mut out);
        t.observe(&snap(&[]), c.at(2 * MIN), &mut out);
        out.clear();
        t.tick(c.at(T + 2 * MIN), &mut out);
        assert_eq!(
            out,
            vec![
                restart("c", 1, T + 2 * MIN),
                held("b", HoldReason::Concurrency),
                held("a", HoldReason::Concurrency)
            ]
        );
        out.clear();
        t.tick(c.at(T + 3 * MIN), &mut out);
        assert!(out.is_empty(), "held is reported once: {out:?}");
        assert_eq!(t.next_wakeup(), None);
        t.cycle_finished("c", CycleOutcome::Recovered, c.at(T + 4 * MIN), &mut out);
        assert_eq!(out, vec![restart("b", 1, T + 3 * MIN)]);
        assert_eq!(t.in_flight().collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn dry_run_would_restart_counts_attempts_and_runs_nothing() {
        let c = Clock::new();
        let settings = TrackerSettings {
            dry_run: true,
            max_restart_attempts: 2,
            max_concurrent_restarts: 1,
            ..TrackerSettings::default()
        };
        let mut t = tracker(&["a"], settings);
        let mut out = Vec::new();
        t.observe(&snap(&[]), c.at(Duration::ZERO), &mut out);
        out.clear();
        let mut seen = Vec::new();
        while let Some(at) = t.next_wakeup() {
            t.tick(at, &mut out);
            seen.push((at - c.t0, out.clone()));
            out.clear();
            assert_eq!(t.in_flight().count(), 0);
        }
        assert_eq!(
            seen,
            vec![
                (
                    T,
                    vec![Decision::WouldRestart {
                        node: "a".into(),
                        attempt: 1,
                        missing_for: T
                    }]
                ),
                (
                    2 * T,
                    vec![Decision::WouldRestart {
                        node: "a".into(),
                        attempt: 2,
                        missing_for: 2 * T
                    }]
                ),
                (
                    3 * T,
                    vec![Decision::GaveUp {
                        node: "a".into(),
                        attempts: 2
                    }]
                ),
            ]
        );
    }

    #[test]
    fn only_the_leader_restarts() {
        let c = Clock::new();
        let mut t = tracker(&["a"], TrackerSettings::default());
        assert!(t.is_leader(), "a lone agent leads without setup");
        let mut out = Vec::new();
        t.set_leader(false, c.at(Duration::ZERO), &mut out);
        t.observe(&snap(&[]), c.at(Duration::ZERO), &mut out);
        out.clear();
        for m in 5..30 {
            t.tick(c.at(m * MIN), &mut out);
        }
        assert_eq!(out, vec![held("a", HoldReason::NotLeader)]);
        assert_eq!(t.missing_count(), 1, "standbys keep tracking");
        out.clear();
        t.set_leader(true, c.at(30 * MIN), &mut out);
        assert_eq!(out, vec![restart("a", 1, 30 * MIN)]);
    }

    #[test]
    fn resumed_cycles_are_in_flight_with_their_attempt_number() {
        let c = Clock::new();
        let mut t = tracker(&["a", "b"], TrackerSettings::default());
        let mut out = Vec::new();
        assert!(!t.resume("zzz", 1, c.at(Duration::ZERO)));
        assert!(t.resume("a", 3, c.at(Duration::ZERO)));
        assert_eq!(t.in_flight().collect::<Vec<_>>(), vec!["a"]);
        t.observe(&snap(&["b"]), c.at(Duration::ZERO), &mut out);
        t.tick(c.at(2 * T), &mut out);
        assert!(restarts(&out).is_empty(), "a cycle already runs for a");
        t.cycle_finished("a", failed(false), c.at(2 * T), &mut out);
        t.tick(c.at(3 * T), &mut out);
        assert_eq!(restarts(&out), vec![("a".into(), 4)]);

        // A resumed cycle for a node found present reports the recovery.
        let mut t = tracker(&["a"], TrackerSettings::default());
        let mut out = Vec::new();
        t.resume("a", 2, c.at(Duration::ZERO));
        t.observe(&snap(&["a"]), c.at(MIN), &mut out);
        assert_eq!(
            out,
            vec![Decision::NodeRecovered {
                node: "a".into(),
                attempts: 2,
                missing_for: None
            }]
        );
    }

    #[test]
    fn finishing_a_cycle_that_is_not_in_flight_changes_nothing() {
        let c = Clock::new();
        let mut t = tracker(&["a"], TrackerSettings::default());
        let mut out = Vec::new();
        t.observe(&snap(&[]), c.at(Duration::ZERO), &mut out);
        t.cycle_finished("a", failed(true), c.at(MIN), &mut out);
        t.cycle_finished("nope", failed(true), c.at(MIN), &mut out);
        assert!(!t.node_view("a").unwrap().permanently_failed);
        assert_eq!(t.next_wakeup(), Some(c.at(T)));
    }

    #[test]
    fn missing_is_reported_once_per_outage() {
        let c = Clock::new();
        let mut t = tracker(&["a"], TrackerSettings::default());
        let mut out = Vec::new();
        for s in 0..30 {
            t.observe(&snap(&[]), c.at(Duration::from_secs(s)), &mut out);
        }
        assert_eq!(out, vec![Decision::NodeMissing { node: "a".into() }]);
        // Unconfigured names in a snapshot are ignored.
        t.observe(&snap(&["a", "other"]), c.at(MIN), &mut out);
        assert_eq!(t.monitored_count(), 1);
        assert!(t.node_view("other").is_none());
    }
}
