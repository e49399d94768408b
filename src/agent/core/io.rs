//! The agent core's vocabulary: what goes in ([`Input`]), what comes out
//! ([`Command`]), and the facts they carry.
//!
//! Everything here is plain data. The daemon's thread shell turns Consul
//! answers, OCI results, leadership changes and signals into [`Input`]s and
//! carries out [`Command`]s; the deterministic simulation (`make sim`) does
//! the same against simulated services. Neither may decide anything: all
//! decisions are the core's.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::agent::cycle::ActionErrorKind;
use crate::agent::records::RestartRecord;
use crate::oci::LifecycleState;

/// Identifies one cycle (a claim of a node's restart record) within one
/// core, so a late reply for an ended cycle is recognised and ignored.
pub type CycleId = u64;

/// One node the agent watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Heartbeat name: `oracle-watchdog/nodes/{name}`.
    pub name: String,
    /// The instance OCID that is stopped and started.
    pub instance_id: String,
    /// The node's name in Consul's member list, when the VM also runs a
    /// Consul client agent: its `serfHealth` is then a second opinion
    /// before any STOP. `None` when the VM is no Consul member.
    pub consul_node: Option<String>,
}

/// The core's knobs, from the agent config.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreSettings {
    /// This agent's identity (`host:pid`), written into restart records.
    pub identity: String,
    /// How long a node must be seen missing, by this agent as leader,
    /// before a power cycle (spec default 5m).
    pub timeout: Duration,
    /// Power cycles (STOPs) per outage before giving up on STOPs; 0 =
    /// unlimited. STARTs of a STOPPED instance are never limited.
    pub max_restart_attempts: u32,
    /// Cycles running at once; 0 = unlimited.
    pub max_concurrent_restarts: u32,
    /// Mass-outage guard: no STOP while more than this fraction of the
    /// nodes not in maintenance (and at least two) are missing.
    pub max_missing_fraction: Option<f64>,
    /// Decide and report, change nothing: no leadership, no records, no
    /// state-changing OCI request.
    pub dry_run: bool,
    /// Leader lock session TTL: the leader acts only while its last
    /// successful renewal is less than half of it old.
    pub leader_ttl: Duration,
    /// Time between instance reads while a cycle waits for a state.
    pub poll_interval: Duration,
    /// How long one phase may last before a warning (the cycle goes on).
    pub phase_timeout: Duration,
    /// First delay before retrying a failed STOP or START.
    pub retry_initial: Duration,
    /// Longest delay between STOP or START retries (START is retried for
    /// as long as the heartbeat stays missing).
    pub retry_max: Duration,
    /// How often the owner of a restart record rewrites it, so others can
    /// tell a live cycle from an abandoned one.
    pub record_refresh: Duration,
    /// A record whose modify index has not changed for this long (as seen
    /// by this agent) is abandoned and may be adopted or cleared.
    pub record_stale_after: Duration,
    /// How often the instance of a missing node is read to catch a STOPPED
    /// instance (reclaimed by Oracle, or left stopped), which is started at
    /// once without waiting for `timeout`.
    pub probe_interval: Duration,
}

impl CoreSettings {
    /// Defaults matching the spec and the config's defaults.
    pub fn new(identity: impl Into<String>) -> Self {
        CoreSettings {
            identity: identity.into(),
            timeout: Duration::from_secs(300),
            max_restart_attempts: 0,
            max_concurrent_restarts: 0,
            max_missing_fraction: None,
            dry_run: false,
            leader_ttl: Duration::from_secs(15),
            poll_interval: Duration::from_secs(10),
            phase_timeout: Duration::from_secs(300),
            retry_initial: Duration::from_secs(10),
            retry_max: Duration::from_secs(60),
            record_refresh: Duration::from_secs(15),
            record_stale_after: Duration::from_secs(60),
            probe_interval: Duration::from_secs(30),
        }
    }
}

/// A restart record as listed: the parsed value (`None` when malformed) and
/// the modify index its compare-and-set lock works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record, or `None` when the value does not parse.
    pub record: Option<RestartRecord>,
    /// Consul's `ModifyIndex` of the key.
    pub modify_index: u64,
}

/// One positive answer from Consul about everything under
/// `oracle-watchdog/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsulView {
    /// Nodes whose heartbeat key exists and is held by a session.
    pub heartbeats: BTreeSet<String>,
    /// Nodes with a maintenance key.
    pub maintenance: BTreeSet<String>,
    /// Restart records by node (key suffix), malformed ones included.
    pub records: BTreeMap<String, StoredRecord>,
    /// The session holding `oracle-watchdog/agent/leader`, if any.
    pub leader_session: Option<String>,
    /// Consul said it left keys out for the token
    /// (`X-Consul-Results-Filtered-By-ACLs`): absence proves nothing.
    pub filtered_by_acls: bool,
}

/// The consistent read taken right before a STOP, after the cycle's last
/// OCI call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// `GET /v1/kv/oracle-watchdog/?recurse&consistent`.
    pub view: ConsulView,
    /// The node's `serfHealth`, when it has a `consul_node`.
    pub serf: Option<SerfHealth>,
}

/// Consul's gossip failure detector about a node's machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerfHealth {
    /// The machine answers gossip: it is alive, only the monitor is down.
    Passing,
    /// Critical, warning or not registered: no sign of life.
    NotPassing,
}

/// A failed OCI call, classified by the adapter's typed error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// What kind of failure, which decides the reaction.
    pub kind: ActionErrorKind,
    /// What OCI or the transport said (no secrets).
    pub message: String,
}

/// The answer to one [`Command`] the core sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// [`Command::ReadInstance`].
    Instance(Result<LifecycleState, CallFailure>),
    /// [`Command::Stop`]: `Ok` when OCI accepted it.
    Stopped(Result<(), CallFailure>),
    /// [`Command::Start`]: `Ok` when OCI accepted it.
    Started(Result<(), CallFailure>),
    /// [`Command::ReadEvidence`]; `Err` when Consul could not be read.
    Evidence(Result<Evidence, String>),
    /// [`Command::WriteRecord`]: `Ok(Some(index))` the compare-and-set won
    /// and the record now has this modify index; `Ok(None)` it lost
    /// (someone else holds or changed the record); `Err` unknown.
    RecordWritten(Result<Option<u64>, String>),
    /// [`Command::DeleteRecord`]: `Ok(true)` deleted, `Ok(false)` the index
    /// no longer matched, `Err` unknown.
    RecordDeleted(Result<bool, String>),
}

/// What the core receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The watch listing answered.
    View(ConsulView),
    /// The watch listing failed: nothing is known about any node.
    ConsulUnreachable,
    /// This agent now holds the leader lock with this session.
    LeaderAcquired {
        /// The lock's session ID (compared with the evidence's holder).
        session: String,
    },
    /// The leader session was renewed and the lock verified as still ours.
    LeaderRenewed,
    /// This agent must not act as leader any more.
    LeaderLost,
    /// An answer to a command of cycle `cycle` of `node`.
    Reply {
        /// Node name.
        node: String,
        /// The cycle that asked.
        cycle: CycleId,
        /// The answer.
        reply: Reply,
    },
    /// SIGTERM: no new cycles; cycles that have not sent STOP end now, the
    /// others go on (toward START) until [`Input::GraceOver`].
    Shutdown,
    /// The shutdown grace is over: the core stops issuing commands.
    GraceOver,
    /// Time passed (the shell calls this at [`super::AgentCore::poll_timeout`]).
    Tick,
}

/// What the core asks the shell to do. Every command of a cycle is
/// answered by exactly one [`Input::Reply`] with the same node and cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `GET /20160918/instances/{id}`.
    ReadInstance {
        /// Node name.
        node: String,
        /// Asking cycle.
        cycle: CycleId,
    },
    /// `POST ...?action=STOP`. Only ever emitted by the interlock.
    Stop {
        /// Node name.
        node: String,
        /// Asking cycle.
        cycle: CycleId,
    },
    /// `POST ...?action=START`.
    Start {
        /// Node name.
        node: String,
        /// Asking cycle.
        cycle: CycleId,
    },
    /// Consistent read of the prefix (and the node's serfHealth when
    /// `consul_node` is set), the evidence a STOP needs.
    ReadEvidence {
        /// Node name.
        node: String,
        /// Asking cycle.
        cycle: CycleId,
        /// Name in Consul's member list, if any.
        consul_node: Option<String>,
    },
    /// Compare-and-set write of the node's restart record: `cas` 0 creates
    /// it only if absent, otherwise only if its modify index is `cas`.
    WriteRecord {
        /// Node name.
        node: String,
        /// Asking cycle.
        cycle: CycleId,
        /// The value.
        record: RestartRecord,
        /// Expected modify index (0: must not exist).
        cas: u64,
    },
    /// Compare-and-set delete of the node's restart record.
    DeleteRecord {
        /// Node name.
        node: String,
        /// Asking cycle (0: housekeeping of an abandoned record).
        cycle: CycleId,
        /// Expected modify index.
        cas: u64,
    },
    /// Something to log and count.
    Report(Note),
}

/// Why the interlock refused a STOP: each condition of the safety contract
/// that can fail, named for the log line and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The evidence read failed: Consul's state is unknown.
    EvidenceUnavailable,
    /// The listing was ACL-filtered or lacks this agent's own leader
    /// record: absence of a key proves nothing.
    ListingIncomplete,
    /// The heartbeat key is held by a session: the node is alive.
    HeartbeatPresent,
    /// The node is in maintenance.
    Maintenance,
    /// This agent does not hold the leader lock (or not recently renewed).
    NotLeader,
    /// The node has not been missing for `timeout` as this agent saw it.
    NotMissingLongEnough,
    /// Too many nodes missing at once.
    Guard,
    /// The restart record is not this cycle's (another cycle runs).
    RecordNotHeld,
    /// Consul's serfHealth for the node's machine is passing.
    SerfPassing,
    /// Dry run or shutting down.
    NotActing,
}

impl Refusal {
    /// Short name for logs and the `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::EvidenceUnavailable => "evidence_unavailable",
            Refusal::ListingIncomplete => "listing_incomplete",
            Refusal::HeartbeatPresent => "heartbeat_present",
            Refusal::Maintenance => "maintenance",
            Refusal::NotLeader => "not_leader",
            Refusal::NotMissingLongEnough => "not_missing_long_enough",
            Refusal::Guard => "guard",
            Refusal::RecordNotHeld => "record_not_held",
            Refusal::SerfPassing => "serf_passing",
            Refusal::NotActing => "not_acting",
        }
    }

    /// Every refusal, for registering metric labels.
    pub const ALL: [Refusal; 10] = [
        Refusal::EvidenceUnavailable,
        Refusal::ListingIncomplete,
        Refusal::HeartbeatPresent,
        Refusal::Maintenance,
        Refusal::NotLeader,
        Refusal::NotMissingLongEnough,
        Refusal::Guard,
        Refusal::RecordNotHeld,
        Refusal::SerfPassing,
        Refusal::NotActing,
    ];
}

/// How a cycle ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CycleEnd {
    /// The instance is RUNNING after our START (or the heartbeat returned
    /// after our STOP).
    Recovered,
    /// Ended before STOP: heartbeat back, maintenance, interlock refused,
    /// leadership lost, shutdown.
    Cancelled {
        /// Why.
        reason: String,
    },
    /// The cycle lost its record to another agent.
    RecordLost,
    /// Given up (instance TERMINATED).
    Failed {
        /// Why.
        reason: String,
    },
    /// Left for the next leader at the end of the shutdown grace.
    Abandoned,
}

/// Something the shell logs and counts. Each says what the agent did or
/// refused to do, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Consul answers again.
    ConsulUp,
    /// Consul stopped answering.
    ConsulDown,
    /// The watch listing is ACL-filtered: no node is judged missing.
    ListingFiltered,
    /// A node's heartbeat is gone (this agent's clock starts now).
    NodeMissing {
        /// Node.
        node: String,
    },
    /// A node's heartbeat is back.
    NodeRecovered {
        /// Node.
        node: String,
        /// How long it was seen missing, if it was.
        missing_for: Option<Duration>,
    },
    /// Leadership gained or lost.
    Leader {
        /// Now leading.
        leading: bool,
    },
    /// A power cycle starts (record claimed).
    CycleStarted {
        /// Node.
        node: String,
        /// Power-cycle attempt in this outage (0 for a START-only cycle).
        attempt: u32,
        /// True when the instance was found STOPPED: START only.
        start_only: bool,
        /// True when an abandoned record was adopted.
        adopted: bool,
    },
    /// Dry run: a cycle would start now.
    WouldRestart {
        /// Node.
        node: String,
        /// How long it has been missing.
        missing_for: Duration,
    },
    /// The interlock let a STOP through.
    StopSent {
        /// Node.
        node: String,
        /// Attempt.
        attempt: u32,
    },
    /// The interlock refused a STOP.
    StopRefused {
        /// Node.
        node: String,
        /// Which condition failed.
        refusal: Refusal,
    },
    /// serfHealth is passing although the heartbeat is gone: only the
    /// monitor is down, and no power cycle will fix it.
    MonitorDownMachineAlive {
        /// Node.
        node: String,
    },
    /// START sent (first or retry).
    StartSent {
        /// Node.
        node: String,
    },
    /// An OCI call failed and is retried.
    CallFailed {
        /// Node.
        node: String,
        /// `GetInstance`, `STOP` or `START`.
        call: &'static str,
        /// Failure class.
        kind: ActionErrorKind,
        /// Message.
        message: String,
        /// Retry after.
        retry_in: Duration,
    },
    /// A phase has lasted beyond `phase_timeout`; the cycle goes on.
    PhaseSlow {
        /// Node.
        node: String,
        /// Phase name.
        phase: &'static str,
    },
    /// The instance state read during a cycle.
    Observed {
        /// Node.
        node: String,
        /// Its state.
        state: LifecycleState,
    },
    /// A cycle ended.
    CycleEnded {
        /// Node.
        node: String,
        /// How.
        end: CycleEnd,
        /// Whether this cycle sent STOP.
        stopped: bool,
    },
    /// `max_restart_attempts` power cycles failed to bring the heartbeat
    /// back: no more STOPs this outage (STARTs go on).
    GaveUp {
        /// Node.
        node: String,
        /// Power cycles made.
        attempts: u32,
    },
    /// A restart record that nobody refreshes, for a node that is alive or
    /// in maintenance, or that is malformed or unknown: cleared, not resumed.
    StaleRecordCleared {
        /// Key suffix.
        node: String,
        /// Why.
        why: &'static str,
    },
    /// Mass-outage guard engaged or released.
    Guard {
        /// Engaged now.
        engaged: bool,
        /// Missing nodes.
        missing: usize,
        /// Nodes considered.
        total: usize,
    },
    /// The metrics-facing counts changed.
    Counts {
        /// Nodes seen missing.
        missing: usize,
        /// Cycles running.
        in_flight: usize,
        /// Nodes in maintenance.
        maintenance: usize,
    },
}
