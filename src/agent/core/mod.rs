//! The agent's decisions as one deterministic state machine (sans-IO):
//! [`AgentCore::handle`] takes an [`Input`] and `now` and returns
//! [`Command`]s; [`AgentCore::poll_timeout`] says when it next wants a
//! [`Input::Tick`]. No threads, clocks or I/O inside: the daemon's
//! coordinator thread feeds it real Consul and OCI answers, the simulator
//! (`dev/sim`) feeds it simulated ones through millions of schedules.
//!
//! What it decides:
//! * **Node tracking.** A node is missing only when a positive,
//!   unfiltered Consul listing lacks its held heartbeat key. Each node's
//!   missing clock starts afresh whenever this agent becomes leader, Consul
//!   becomes reachable, the listing stops being filtered, maintenance is
//!   cleared or a cycle for the node ends (its own or anybody's).
//! * **Cycles.** One per node, cluster-wide: a cycle exists only while it
//!   holds the node's restart record, taken by compare-and-set. A cycle
//!   reads the instance, and STOPs it only through the interlock
//!   ([`interlock::check_stop`]) with evidence read after that OCI call.
//!   Before STOP a cycle is cancelled by a returning heartbeat, maintenance,
//!   lost leadership, shutdown or a refused interlock. After STOP it always
//!   goes on to START and ends only when the instance is RUNNING.
//! * **START is cheap.** The leader reads the instance of every missing
//!   node every `probe_interval`; a STOPPED instance is started at once,
//!   without waiting for `timeout`, and START is retried with capped
//!   backoff for as long as the heartbeat stays missing.
//! * **Records left behind** are adopted only when nobody refreshed them
//!   for `record_stale_after` and the node is still missing (the adopted
//!   cycle still needs the interlock to STOP); stale records of live,
//!   maintenance, unknown or malformed nodes are cleared.

pub mod interlock;
pub mod io;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

pub use io::{
    CallFailure, Command, ConsulView, CoreSettings, CycleEnd, CycleId, Evidence, Input, NodeSpec,
    Note, Refusal, Reply, SerfHealth, StoredRecord,
};

use crate::agent::cycle::ActionErrorKind;
use crate::agent::records::RestartRecord;
use crate::oci::LifecycleState;
use interlock::StopContext;

/// RUNNING reads tolerated while waiting for STOPPED before STOP is asked
/// for again (through the interlock).
const RUNNING_READS_BEFORE_RESTOP: u32 = 3;

/// Where a node stands, as far as this agent knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    /// No positive, unfiltered answer since the last reconnect.
    Unknown,
    /// Heartbeat key held by a session.
    Present,
    /// Positively absent; the clock runs from `since`.
    Missing { since: Instant, first: Instant },
}

/// What a cycle is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the record claim.
    Claiming,
    /// Reading the instance (or waiting to).
    Inspect,
    /// Waiting for the consistent read before STOP.
    Evidence,
    /// STOP sent, waiting for OCI's answer.
    Stopping,
    /// Waiting for STOPPED.
    WaitStopped,
    /// START sent or to be retried.
    Starting,
    /// Waiting for RUNNING.
    WaitRunning,
}

impl Stage {
    /// The phase name stored in the record (as `status` shows it).
    fn as_str(self) -> &'static str {
        match self {
            Stage::Claiming | Stage::Inspect | Stage::Evidence => "inspect",
            Stage::Stopping => "stopping",
            Stage::WaitStopped => "wait_stopped",
            Stage::Starting => "starting",
            Stage::WaitRunning => "wait_running",
        }
    }
}

/// The one outstanding OCI or evidence request of a cycle, or the timer
/// until the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// Nothing outstanding and nothing scheduled.
    Idle,
    /// A request is outstanding.
    InFlight,
    /// Read the instance at this instant.
    ReadAt(Instant),
    /// Send START at this instant.
    StartAt(Instant),
}

/// One cycle: the holder of a node's restart record.
#[derive(Debug, Clone)]
struct Cycle {
    id: CycleId,
    /// Power-cycle attempt (0: START-only cycle).
    attempt: u32,
    adopted: bool,
    stage: Stage,
    call: Call,
    /// Modify index of the record we hold (None while claiming).
    record_index: Option<u64>,
    /// A record write is outstanding.
    record_write: bool,
    /// The stored phase differs from `stage`: write when possible.
    record_dirty: bool,
    next_refresh: Instant,
    /// STOP has been sent at least once: from now on only START.
    stop_sent: bool,
    running_reads: u32,
    retries: u32,
    stage_since: Instant,
    warned_slow: bool,
    /// When START-only, the cycle ends if the instance turns out RUNNING.
    start_only: bool,
    /// Ending: the record delete is outstanding or the cycle is gone.
    ending: bool,
}

/// A record this agent does not own, tracked for staleness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Foreign {
    index: u64,
    /// When this agent first saw this index.
    seen: Instant,
    malformed: bool,
    attempt: u32,
    /// A housekeeping delete is outstanding.
    clearing: bool,
}

#[derive(Debug, Clone)]
struct NodeState {
    spec: NodeSpec,
    presence: Presence,
    maintenance: bool,
    /// Power cycles (STOPs) made in this outage.
    power_cycles: u32,
    gave_up: bool,
    /// Instance TERMINATED: nothing to do until the heartbeat returns.
    terminated: bool,
    cycle: Option<Cycle>,
    foreign: Option<Foreign>,
    /// Leader's START-cheap probe.
    next_probe: Option<Instant>,
    probe: Option<CycleId>,
    /// Dry run: a "would restart" was reported at this clock start.
    dry_reported: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Leadership {
    session: String,
    last_renewal: Instant,
}

/// The agent's whole decision state. See the module docs.
#[derive(Debug, Clone)]
pub struct AgentCore {
    s: CoreSettings,
    nodes: BTreeMap<String, NodeState>,
    /// Records under keys of no configured node: key -> tracking.
    strays: BTreeMap<String, Foreign>,
    consul_up: bool,
    filtered: bool,
    leader: Option<Leadership>,
    /// The leadership was fresh at the last evaluation (to notice lapses).
    leader_fresh: bool,
    shutting_down: bool,
    grace_over: bool,
    guard: bool,
    next_id: CycleId,
    out: Vec<Command>,
    last_counts: (usize, usize, usize),
}

impl AgentCore {
    /// A core watching `nodes`, knowing nothing yet.
    pub fn new(settings: CoreSettings, nodes: impl IntoIterator<Item = NodeSpec>) -> Self {
        let nodes = nodes
            .into_iter()
            .map(|spec| {
                (
                    spec.name.clone(),
                    NodeState {
                        spec,
                        presence: Presence::Unknown,
                        maintenance: false,
                        power_cycles: 0,
                        gave_up: false,
                        terminated: false,
                        cycle: None,
                        foreign: None,
                        next_probe: None,
                        probe: None,
                        dry_reported: None,
                    },
                )
            })
            .collect();
        AgentCore {
            s: settings,
            nodes,
            strays: BTreeMap::new(),
            consul_up: false,
            filtered: false,
            leader: None,
            leader_fresh: false,
            shutting_down: false,
            grace_over: false,
            guard: false,
            next_id: 1,
            out: Vec::new(),
            last_counts: (usize::MAX, usize::MAX, usize::MAX),
        }
    }

    /// The settings this core runs with.
    pub fn settings(&self) -> &CoreSettings {
        &self.s
    }

    /// Feeds one input; returns what to do now.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Command> {
        if self.grace_over {
            return Vec::new();
        }
        match input {
            Input::View(view) => self.on_view(view, now),
            Input::ConsulUnreachable => self.on_unreachable(),
            Input::LeaderAcquired { session } => {
                if self.s.dry_run {
                    // Dry run never leads; a shell that campaigned anyway
                    // gets nothing out of it.
                } else {
                    self.leader = Some(Leadership {
                        session,
                        last_renewal: now,
                    });
                    self.out
                        .push(Command::Report(Note::Leader { leading: true }));
                }
            }
            Input::LeaderRenewed => {
                if let Some(l) = &mut self.leader {
                    l.last_renewal = now;
                }
            }
            Input::LeaderLost => {
                if self.leader.take().is_some() {
                    self.out
                        .push(Command::Report(Note::Leader { leading: false }));
                }
            }
            Input::Reply { node, cycle, reply } => self.on_reply(&node, cycle, reply, now),
            Input::Shutdown => self.shutting_down = true,
            Input::GraceOver => {
                self.shutting_down = true;
                for n in self.nodes.values_mut() {
                    if let Some(c) = n.cycle.take() {
                        self.out.push(Command::Report(Note::CycleEnded {
                            node: n.spec.name.clone(),
                            end: CycleEnd::Abandoned,
                            stopped: c.stop_sent,
                        }));
                    }
                }
                self.grace_over = true;
                return std::mem::take(&mut self.out);
            }
            Input::Tick => {}
        }
        self.evaluate(now);
        std::mem::take(&mut self.out)
    }

    /// When the core next needs a [`Input::Tick`], if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.grace_over {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if let Some(l) = &self.leader
            && self.leader_fresh
        {
            at(l.last_renewal + self.s.leader_ttl / 2);
        }
        for n in self.nodes.values() {
            if let Presence::Missing { since, .. } = n.presence
                && n.cycle.is_none()
            {
                at(since + self.s.timeout);
            }
            if let Some(p) = n.next_probe {
                at(p);
            }
            if let Some(f) = n.foreign {
                at(f.seen + self.s.record_stale_after);
            }
            if let Some(c) = &n.cycle {
                match c.call {
                    Call::ReadAt(t) | Call::StartAt(t) => at(t),
                    Call::Idle | Call::InFlight => {}
                }
                if c.record_index.is_some() {
                    at(c.next_refresh);
                }
                if !c.warned_slow {
                    at(c.stage_since + self.s.phase_timeout);
                }
            }
        }
        for f in self.strays.values() {
            at(f.seen + self.s.record_stale_after);
        }
        next
    }

    /// True while this agent holds a leader lock renewed within the safe
    /// window (half the TTL).
    pub fn is_leader(&self, now: Instant) -> bool {
        self.leader
            .as_ref()
            .is_some_and(|l| now.saturating_duration_since(l.last_renewal) < self.s.leader_ttl / 2)
    }

    /// Nodes with a cycle in progress.
    pub fn in_flight(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .values()
            .filter(|n| n.cycle.is_some())
            .map(|n| n.spec.name.as_str())
    }

    /// True when a cycle of `node` has sent STOP and not yet seen RUNNING.
    pub fn stopped_by_us(&self, node: &str) -> bool {
        self.nodes
            .get(node)
            .and_then(|n| n.cycle.as_ref())
            .is_some_and(|c| c.stop_sent)
    }

    /// How many nodes this agent currently sees missing.
    pub fn missing_count(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| matches!(n.presence, Presence::Missing { .. }))
            .count()
    }

    /// Since when `node` has been missing (first sighting in this outage),
    /// for the `missing/` display records.
    pub fn missing_since(&self, node: &str) -> Option<Instant> {
        match self.nodes.get(node)?.presence {
            Presence::Missing { first, .. } => Some(first),
            _ => None,
        }
    }

    /// Whether the core is acting at all (not dry run, not shutting down).
    fn acting(&self) -> bool {
        !self.s.dry_run && !self.shutting_down
    }

    fn fresh_id(&mut self) -> CycleId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    // ---- inputs -------------------------------------------------------

    fn on_view(&mut self, view: ConsulView, now: Instant) {
        if !self.consul_up {
            self.consul_up = true;
            self.out.push(Command::Report(Note::ConsulUp));
        }
        if view.filtered_by_acls != self.filtered {
            self.filtered = view.filtered_by_acls;
            if self.filtered {
                self.out.push(Command::Report(Note::ListingFiltered));
            }
        }
        let mut ended_foreign = Vec::new();
        for (name, n) in self.nodes.iter_mut() {
            let present = view.heartbeats.contains(name);
            let was = n.presence;
            if present {
                if was != Presence::Present {
                    let missing_for = match was {
                        Presence::Missing { first, .. } => {
                            Some(now.saturating_duration_since(first))
                        }
                        _ => None,
                    };
                    if matches!(was, Presence::Missing { .. }) {
                        self.out.push(Command::Report(Note::NodeRecovered {
                            node: name.clone(),
                            missing_for,
                        }));
                    }
                    n.presence = Presence::Present;
                    n.power_cycles = 0;
                    n.gave_up = false;
                    n.terminated = false;
                    n.next_probe = None;
                    n.dry_reported = None;
                }
            } else if view.filtered_by_acls {
                // Absence in a filtered listing proves nothing.
                n.presence = Presence::Unknown;
            } else if !matches!(was, Presence::Missing { .. }) {
                n.presence = Presence::Missing {
                    since: now,
                    first: now,
                };
                n.next_probe = Some(now);
                self.out
                    .push(Command::Report(Note::NodeMissing { node: name.clone() }));
            }
            let maint = view.maintenance.contains(name);
            if n.maintenance && !maint {
                restart_clock(n, now);
            }
            n.maintenance = maint;
            // Records of others.
            match view.records.get(name) {
                Some(stored) if n.cycle.is_none() => {
                    let same = n.foreign.is_some_and(|f| f.index == stored.modify_index);
                    if !same {
                        n.foreign = Some(Foreign {
                            index: stored.modify_index,
                            seen: now,
                            malformed: stored.record.is_none(),
                            attempt: stored.record.as_ref().map_or(0, |r| r.attempt),
                            clearing: false,
                        });
                    }
                }
                Some(_) => {}
                None => {
                    if n.foreign.take().is_some() {
                        // Somebody's cycle for this node ended: a new
                        // observation period starts.
                        ended_foreign.push(name.clone());
                    }
                }
            }
        }
        for name in ended_foreign {
            if let Some(n) = self.nodes.get_mut(&name) {
                restart_clock(n, now);
            }
        }
        // Records under keys no configured node has.
        let strays: BTreeSet<&String> = view
            .records
            .keys()
            .filter(|k| !self.nodes.contains_key(*k))
            .collect();
        self.strays.retain(|k, _| strays.contains(k));
        for k in strays {
            let stored = &view.records[k];
            let same = self
                .strays
                .get(k)
                .is_some_and(|f| f.index == stored.modify_index);
            if !same {
                self.strays.insert(
                    k.clone(),
                    Foreign {
                        index: stored.modify_index,
                        seen: now,
                        malformed: stored.record.is_none(),
                        attempt: 0,
                        clearing: false,
                    },
                );
            }
        }
        // Cycles follow the node: before STOP, a returning heartbeat or
        // maintenance ends them.
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in names {
            let n = &self.nodes[&name];
            let Some(c) = &n.cycle else { continue };
            if c.stop_sent || c.ending {
                continue;
            }
            if n.presence == Presence::Present {
                self.end_cycle(
                    &name,
                    CycleEnd::Cancelled {
                        reason: "heartbeat is back".into(),
                    },
                    now,
                );
            } else if n.maintenance {
                self.end_cycle(
                    &name,
                    CycleEnd::Cancelled {
                        reason: "node is in maintenance".into(),
                    },
                    now,
                );
            }
        }
    }

    fn on_unreachable(&mut self) {
        if self.consul_up {
            self.out.push(Command::Report(Note::ConsulDown));
        }
        self.consul_up = false;
        for n in self.nodes.values_mut() {
            n.presence = Presence::Unknown;
            n.next_probe = None;
        }
    }

    fn on_reply(&mut self, name: &str, id: CycleId, reply: Reply, now: Instant) {
        let Some(n) = self.nodes.get_mut(name) else {
            // Housekeeping of a stray key.
            if let Reply::RecordDeleted(_) = reply {
                self.strays.remove(name);
            }
            return;
        };
        if id == 0 {
            // Housekeeping delete of a stale record.
            if let Some(f) = &mut n.foreign {
                f.clearing = false;
            }
            return;
        }
        if n.probe == Some(id) {
            n.probe = None;
            n.next_probe = Some(now + self.s.probe_interval);
            if let Reply::Instance(Ok(LifecycleState::Stopped)) = reply
                && matches!(n.presence, Presence::Missing { .. })
                && !n.maintenance
                && n.cycle.is_none()
                && n.foreign.is_none()
                && self.acting_leader(now)
            {
                self.start_cycle(name, true, None, now);
            } else if let Reply::Instance(Err(f)) = reply {
                self.out.push(Command::Report(Note::CallFailed {
                    node: name.to_string(),
                    call: "GetInstance",
                    kind: f.kind,
                    message: f.message,
                    retry_in: self.s.probe_interval,
                }));
            }
            return;
        }
        let Some(c) = &mut n.cycle else { return };
        if c.id != id {
            return;
        }
        match reply {
            Reply::RecordWritten(r) => self.on_record_written(name, r, now),
            Reply::RecordDeleted(_) => {}
            // Answers count only for the one call the cycle is waiting on:
            // a duplicated or late reply (a retried request, a confused
            // shell) must never reach the interlock a second time.
            _ if c.call != Call::InFlight => {}
            Reply::Evidence(_) if c.stage != Stage::Evidence => {}
            Reply::Instance(r) => {
                c.call = Call::Idle;
                match r {
                    Ok(state) => self.on_instance(name, state, now),
                    Err(f) => self.on_call_failed(name, "GetInstance", f, now),
                }
            }
            Reply::Evidence(r) => {
                c.call = Call::Idle;
                self.on_evidence(name, r, now);
            }
            Reply::Stopped(r) | Reply::Started(r) => {
                let (call, waiting) = if c.stage == Stage::Stopping {
                    ("STOP", Stage::WaitStopped)
                } else {
                    ("START", Stage::WaitRunning)
                };
                c.call = Call::Idle;
                match r {
                    Ok(()) => {
                        c.retries = 0;
                        set_stage(c, waiting, now);
                        c.call = Call::ReadAt(now + self.s.poll_interval);
                    }
                    Err(f) => self.on_call_failed(name, call, f, now),
                }
            }
        }
    }

    fn on_record_written(&mut self, name: &str, r: Result<Option<u64>, String>, now: Instant) {
        let poll = self.s.record_refresh;
        let Some(c) = self.nodes.get_mut(name).and_then(|n| n.cycle.as_mut()) else {
            return;
        };
        c.record_write = false;
        match r {
            Ok(Some(index)) => {
                let claimed = c.record_index.is_none();
                c.record_index = Some(index);
                c.next_refresh = now + poll;
                if claimed {
                    set_stage(c, Stage::Inspect, now);
                    c.call = Call::ReadAt(now);
                }
            }
            Ok(None) => {
                self.end_cycle(name, CycleEnd::RecordLost, now);
            }
            Err(_) if c.record_index.is_none() => {
                // Unknown whether the claim went through: give up the
                // cycle; a record it may have left is cleared as stale.
                self.end_cycle(
                    name,
                    CycleEnd::Cancelled {
                        reason: "could not claim the restart record".into(),
                    },
                    now,
                );
            }
            Err(_) => {
                c.record_dirty = true;
                c.next_refresh = now + poll.min(self.s.poll_interval);
            }
        }
    }

    fn on_instance(&mut self, name: &str, state: LifecycleState, now: Instant) {
        let poll = self.s.poll_interval;
        let n = self.nodes.get_mut(name).expect("caller checked");
        let c = n.cycle.as_mut().expect("caller checked");
        self.out.push(Command::Report(Note::Observed {
            node: name.to_string(),
            state: state.clone(),
        }));
        let after_start = matches!(c.stage, Stage::Starting | Stage::WaitRunning);
        match state {
            LifecycleState::Terminated | LifecycleState::Terminating => {
                n.terminated = true;
                self.end_cycle(
                    name,
                    CycleEnd::Failed {
                        reason: format!("instance is {state}"),
                    },
                    now,
                );
            }
            LifecycleState::Running if after_start || (c.start_only && !c.stop_sent) => {
                self.end_cycle(name, CycleEnd::Recovered, now);
            }
            LifecycleState::Running
                if c.stage == Stage::WaitStopped
                    && c.running_reads < RUNNING_READS_BEFORE_RESTOP =>
            {
                c.running_reads += 1;
                c.call = Call::ReadAt(now + poll);
            }
            LifecycleState::Running => {
                c.running_reads = 0;
                if !c.stop_sent
                    && n.power_cycles >= self.s.max_restart_attempts
                    && self.s.max_restart_attempts > 0
                {
                    self.end_cycle(
                        name,
                        CycleEnd::Cancelled {
                            reason: "max_restart_attempts reached".into(),
                        },
                        now,
                    );
                    return;
                }
                // STOP wanted: gather evidence first.
                set_stage(c, Stage::Evidence, now);
                c.call = Call::InFlight;
                self.out.push(Command::ReadEvidence {
                    node: name.to_string(),
                    cycle: c.id,
                    consul_node: n.spec.consul_node.clone(),
                });
            }
            LifecycleState::Stopping => {
                if !after_start {
                    set_stage(c, Stage::WaitStopped, now);
                }
                c.call = Call::ReadAt(now + poll);
            }
            LifecycleState::Stopped => {
                set_stage(c, Stage::Starting, now);
                c.call = Call::StartAt(now);
            }
            LifecycleState::Starting | LifecycleState::Provisioning => {
                set_stage(c, Stage::WaitRunning, now);
                c.call = Call::ReadAt(now + poll);
            }
            _ => c.call = Call::ReadAt(now + poll),
        }
    }

    fn on_evidence(&mut self, name: &str, r: Result<Evidence, String>, now: Instant) {
        let ctx_leader = self.fresh_leader_session(now);
        let guard = self.guard;
        let acting = self.acting();
        let n = self.nodes.get_mut(name).expect("caller checked");
        let c = n.cycle.as_mut().expect("caller checked");
        let missing_since = match n.presence {
            Presence::Missing { since, .. } => Some(since),
            _ => None,
        };
        let verdict = match &r {
            Err(_) => Err(Refusal::EvidenceUnavailable),
            Ok(ev) => interlock::check_stop(
                &StopContext {
                    node: name,
                    consul_member: n.spec.consul_node.is_some(),
                    acting,
                    leader_session: ctx_leader.as_deref(),
                    missing_since,
                    timeout: self.s.timeout,
                    record_index: c.record_index,
                    guard,
                    now,
                },
                ev,
            ),
        };
        match verdict {
            Ok(()) => {
                c.stop_sent = true;
                c.call = Call::InFlight;
                set_stage(c, Stage::Stopping, now);
                if c.attempt == 0 {
                    c.attempt = n.power_cycles + 1;
                }
                if !c.adopted || n.power_cycles == 0 {
                    n.power_cycles += 1;
                }
                self.out.push(Command::Report(Note::StopSent {
                    node: name.to_string(),
                    attempt: n.power_cycles,
                }));
                self.out.push(Command::Stop {
                    node: name.to_string(),
                    cycle: c.id,
                });
            }
            Err(refusal) => {
                self.out.push(Command::Report(Note::StopRefused {
                    node: name.to_string(),
                    refusal,
                }));
                if refusal == Refusal::SerfPassing {
                    self.out
                        .push(Command::Report(Note::MonitorDownMachineAlive {
                            node: name.to_string(),
                        }));
                }
                if c.stop_sent {
                    // A re-STOP of an instance that is RUNNING again: it runs,
                    // which is what the cycle was for.
                    self.end_cycle(name, CycleEnd::Recovered, now);
                } else {
                    self.end_cycle(
                        name,
                        CycleEnd::Cancelled {
                            reason: format!("STOP refused: {}", refusal.as_str()),
                        },
                        now,
                    );
                }
            }
        }
    }

    fn on_call_failed(&mut self, name: &str, call: &'static str, f: CallFailure, now: Instant) {
        let s = &self.s;
        let c = self
            .nodes
            .get_mut(name)
            .and_then(|n| n.cycle.as_mut())
            .expect("caller checked");
        c.retries = c.retries.saturating_add(1);
        let backoff = backoff(s.retry_initial, s.retry_max, c.retries);
        let (next, delay) = match (call, f.kind) {
            // 409: the action did not fit the state; read it now.
            (_, ActionErrorKind::IncorrectState) => (Call::ReadAt(now), Duration::ZERO),
            ("GetInstance", _) => (
                Call::ReadAt(now + s.poll_interval.max(backoff.min(s.retry_max))),
                s.poll_interval,
            ),
            // START is cheap: retry it directly.
            ("START", _) => (Call::StartAt(now + backoff), backoff),
            // A failed STOP may or may not have been applied: read the
            // instance, and STOP again only through the interlock.
            _ => (Call::ReadAt(now + backoff), backoff),
        };
        c.call = next;
        let mut message = f.message;
        if f.kind == ActionErrorKind::NotFound {
            message = format!(
                "{message} (OCI answers 404 also when the agent's user lacks the permission: {call} needs `{}` on the instance's compartment)",
                if call == "GetInstance" {
                    "read instances"
                } else {
                    "use instances (INSTANCE_POWER_ACTIONS)"
                }
            );
        }
        self.out.push(Command::Report(Note::CallFailed {
            node: name.to_string(),
            call,
            kind: f.kind,
            message,
            retry_in: delay,
        }));
    }

    // ---- evaluation ---------------------------------------------------

    fn fresh_leader_session(&self, now: Instant) -> Option<String> {
        self.leader
            .as_ref()
            .filter(|_| self.is_leader(now))
            .map(|l| l.session.clone())
    }

    /// Leader with a fresh lock, acting, Consul up and unfiltered.
    fn acting_leader(&self, now: Instant) -> bool {
        self.acting() && self.is_leader(now) && self.consul_up && !self.filtered
    }

    fn evaluate(&mut self, now: Instant) {
        // Leadership lapses and regains restart every missing clock.
        let fresh = self.is_leader(now);
        if fresh && !self.leader_fresh {
            for n in self.nodes.values_mut() {
                restart_clock(n, now);
                if matches!(n.presence, Presence::Missing { .. }) {
                    n.next_probe = Some(now);
                }
            }
        }
        if !fresh && self.leader_fresh && self.leader.is_some() {
            // Renewals stopped arriving: the lock may be gone.
            self.leader = None;
            self.out
                .push(Command::Report(Note::Leader { leading: false }));
        }
        self.leader_fresh = fresh;
        self.update_guard();
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        // Cycles that may not go on: pre-STOP cycles need an acting leader.
        for name in &names {
            let n = &self.nodes[name];
            if let Some(c) = &n.cycle
                && !c.stop_sent
                && !c.ending
                && (!self.acting() || !fresh)
            {
                let reason = if self.shutting_down {
                    "agent shutting down"
                } else {
                    "leadership lost"
                };
                self.end_cycle(
                    name,
                    CycleEnd::Cancelled {
                        reason: reason.into(),
                    },
                    now,
                );
            }
        }
        for name in &names {
            self.drive_cycle(name, now);
            self.consider(name, now);
        }
        self.housekeep_strays(now);
        let counts = (
            self.missing_count(),
            self.in_flight().count(),
            self.nodes.values().filter(|n| n.maintenance).count(),
        );
        if counts != self.last_counts {
            self.last_counts = counts;
            self.out.push(Command::Report(Note::Counts {
                missing: counts.0,
                in_flight: counts.1,
                maintenance: counts.2,
            }));
        }
    }

    fn update_guard(&mut self) {
        let Some(fraction) = self.s.max_missing_fraction else {
            return;
        };
        let considered: Vec<&NodeState> = self.nodes.values().filter(|n| !n.maintenance).collect();
        let total = considered.len();
        let missing = considered
            .iter()
            .filter(|n| matches!(n.presence, Presence::Missing { .. }))
            .count();
        let engaged = missing >= 2 && (missing as f64) > fraction * total as f64;
        if engaged != self.guard {
            self.guard = engaged;
            self.out.push(Command::Report(Note::Guard {
                engaged,
                missing,
                total,
            }));
        }
    }

    /// Issues what a running cycle is due to send.
    fn drive_cycle(&mut self, name: &str, now: Instant) {
        let refresh = self.s.record_refresh;
        let phase_timeout = self.s.phase_timeout;
        let identity = self.s.identity.clone();
        let n = self.nodes.get_mut(name).expect("known node");
        let instance_id = n.spec.instance_id.clone();
        let power_cycles = n.power_cycles;
        let Some(c) = &mut n.cycle else { return };
        if c.ending {
            return;
        }
        if !c.warned_slow && now >= c.stage_since + phase_timeout && c.stage != Stage::Claiming {
            c.warned_slow = true;
            self.out.push(Command::Report(Note::PhaseSlow {
                node: name.to_string(),
                phase: c.stage.as_str(),
            }));
        }
        match c.call {
            Call::ReadAt(t) if now >= t => {
                c.call = Call::InFlight;
                self.out.push(Command::ReadInstance {
                    node: name.to_string(),
                    cycle: c.id,
                });
            }
            Call::StartAt(t) if now >= t => {
                c.call = Call::InFlight;
                self.out.push(Command::Report(Note::StartSent {
                    node: name.to_string(),
                }));
                self.out.push(Command::Start {
                    node: name.to_string(),
                    cycle: c.id,
                });
            }
            _ => {}
        }
        if let Some(index) = c.record_index
            && !c.record_write
            && (c.record_dirty || now >= c.next_refresh)
        {
            c.record_write = true;
            c.record_dirty = false;
            self.out.push(Command::WriteRecord {
                node: name.to_string(),
                cycle: c.id,
                record: RestartRecord {
                    node: name.to_string(),
                    instance_id,
                    phase: c.stage.as_str().to_string(),
                    attempt: c.attempt.max(power_cycles),
                    agent: identity,
                    started_at: String::new(),
                    updated_at: String::new(),
                },
                cas: index,
            });
            c.next_refresh = now + refresh;
        }
    }

    /// Starts cycles and probes for a node without one, and clears or
    /// adopts records others left behind.
    fn consider(&mut self, name: &str, now: Instant) {
        let leader = self.acting_leader(now);
        let timeout = self.s.timeout;
        let stale_after = self.s.record_stale_after;
        let max = self.s.max_restart_attempts;
        let dry = self.s.dry_run;
        let guard = self.guard;
        let concurrency_ok = self.s.max_concurrent_restarts == 0
            || (self.in_flight().count() as u32) < self.s.max_concurrent_restarts;
        let consul_ok = self.consul_up && !self.filtered;
        let n = self.nodes.get_mut(name).expect("known node");
        if n.cycle.is_some() {
            return;
        }
        let Presence::Missing { since, .. } = n.presence else {
            // Present (or unknown): a stale record of a live node is cleared.
            if leader
                && n.presence == Presence::Present
                && let Some(f) = &mut n.foreign
                && !f.clearing
                && now >= f.seen + stale_after
            {
                f.clearing = true;
                let cas = f.index;
                self.out.push(Command::Report(Note::StaleRecordCleared {
                    node: name.to_string(),
                    why: "the node's heartbeat is present",
                }));
                self.out.push(Command::DeleteRecord {
                    node: name.to_string(),
                    cycle: 0,
                    cas,
                });
            }
            return;
        };
        if dry {
            if consul_ok
                && !n.maintenance
                && now >= since + timeout
                && n.dry_reported != Some(since)
            {
                n.dry_reported = Some(since);
                self.out.push(Command::Report(Note::WouldRestart {
                    node: name.to_string(),
                    missing_for: now.saturating_duration_since(since),
                }));
            }
            return;
        }
        if !leader {
            return;
        }
        if let Some(f) = &mut n.foreign {
            if f.clearing || now < f.seen + stale_after {
                return; // somebody's cycle, or not yet known to be abandoned
            }
            if n.maintenance || f.malformed {
                f.clearing = true;
                let cas = f.index;
                self.out.push(Command::Report(Note::StaleRecordCleared {
                    node: name.to_string(),
                    why: if n.maintenance {
                        "the node is in maintenance"
                    } else {
                        "the record is malformed"
                    },
                }));
                self.out.push(Command::DeleteRecord {
                    node: name.to_string(),
                    cycle: 0,
                    cas,
                });
                return;
            }
            // Abandoned record of a missing node: adopt it. The adopted
            // cycle reads the instance first and STOPs only through the
            // interlock.
            let f = *f;
            if n.power_cycles == 0 {
                n.power_cycles = f.attempt.saturating_sub(1);
            }
            self.start_cycle(name, false, Some(f.index), now);
            return;
        }
        if n.maintenance || n.terminated {
            return;
        }
        let due = now >= since + timeout;
        if due && !n.gave_up && !guard && concurrency_ok {
            if max > 0 && n.power_cycles >= max {
                n.gave_up = true;
                let attempts = n.power_cycles;
                self.out.push(Command::Report(Note::GaveUp {
                    node: name.to_string(),
                    attempts,
                }));
            } else {
                self.start_cycle(name, false, None, now);
                return;
            }
        }
        // START is cheap: look for a STOPPED instance.
        if n.probe.is_none() && n.next_probe.is_some_and(|t| now >= t) {
            let id = self.fresh_id();
            let n = self.nodes.get_mut(name).expect("known node");
            n.probe = Some(id);
            n.next_probe = None;
            self.out.push(Command::ReadInstance {
                node: name.to_string(),
                cycle: id,
            });
        }
    }

    fn housekeep_strays(&mut self, now: Instant) {
        if !self.acting_leader(now) {
            return;
        }
        let stale_after = self.s.record_stale_after;
        for (key, f) in self.strays.iter_mut() {
            if !f.clearing && now >= f.seen + stale_after {
                f.clearing = true;
                self.out.push(Command::Report(Note::StaleRecordCleared {
                    node: key.clone(),
                    why: "no such node in the config",
                }));
                self.out.push(Command::DeleteRecord {
                    node: key.clone(),
                    cycle: 0,
                    cas: f.index,
                });
            }
        }
    }

    fn start_cycle(&mut self, name: &str, start_only: bool, adopt: Option<u64>, now: Instant) {
        let id = self.fresh_id();
        let identity = self.s.identity.clone();
        let refresh = self.s.record_refresh;
        let n = self.nodes.get_mut(name).expect("known node");
        let attempt = if start_only { 0 } else { n.power_cycles + 1 };
        n.foreign = None;
        n.cycle = Some(Cycle {
            id,
            attempt,
            adopted: adopt.is_some(),
            stage: Stage::Claiming,
            call: Call::Idle,
            record_index: None,
            record_write: true,
            record_dirty: false,
            next_refresh: now + refresh,
            stop_sent: false,
            running_reads: 0,
            retries: 0,
            stage_since: now,
            warned_slow: false,
            start_only,
            ending: false,
        });
        self.out.push(Command::Report(Note::CycleStarted {
            node: name.to_string(),
            attempt,
            start_only,
            adopted: adopt.is_some(),
        }));
        self.out.push(Command::WriteRecord {
            node: name.to_string(),
            cycle: id,
            record: RestartRecord {
                node: name.to_string(),
                instance_id: n.spec.instance_id.clone(),
                phase: if start_only { "starting" } else { "inspect" }.to_string(),
                attempt: attempt.max(1),
                agent: identity,
                started_at: String::new(),
                updated_at: String::new(),
            },
            cas: adopt.unwrap_or(0),
        });
    }

    /// Ends a cycle: releases its record (when it holds one) and starts a
    /// new observation period for the node.
    fn end_cycle(&mut self, name: &str, end: CycleEnd, now: Instant) {
        let n = self.nodes.get_mut(name).expect("known node");
        let Some(c) = n.cycle.take() else { return };
        if let Some(index) = c.record_index
            && end != CycleEnd::RecordLost
        {
            self.out.push(Command::DeleteRecord {
                node: name.to_string(),
                cycle: c.id,
                cas: index,
            });
        }
        if matches!(end, CycleEnd::Recovered) && c.stop_sent {
            // Power cycle done; the heartbeat should return. If it does
            // not within `timeout`, the next attempt follows.
        }
        restart_clock(n, now);
        if matches!(n.presence, Presence::Missing { .. }) {
            n.next_probe = Some(now + self.s.probe_interval);
        }
        self.out.push(Command::Report(Note::CycleEnded {
            node: name.to_string(),
            end,
            stopped: c.stop_sent,
        }));
    }
}

/// A new observation period: a missing node's clock starts now.
fn restart_clock(n: &mut NodeState, now: Instant) {
    if let Presence::Missing { first, .. } = n.presence {
        n.presence = Presence::Missing { since: now, first };
    }
}

fn set_stage(c: &mut Cycle, stage: Stage, now: Instant) {
    if c.stage != stage {
        if c.stage.as_str() != stage.as_str() {
            c.record_dirty = true;
        }
        c.stage = stage;
        c.stage_since = now;
        c.warned_slow = false;
    }
}

/// Capped exponential backoff without jitter (the core is deterministic):
/// `initial`, 2x, 4x, ... at most `max`.
fn backoff(initial: Duration, max: Duration, retries: u32) -> Duration {
    let factor = 1u32 << retries.saturating_sub(1).min(16);
    initial.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests;
