//! Agent mode's coordinator: the one thread that owns node and restart
//! state and turns events into decisions.
//!
//! ```text
//!  consul-watch ──WatchEvent──┐
//!  leader ───────LeaderEvent──┼──► coordinator (NodeTracker) ──spawn──► restart-{node}
//!  restart-* ───WorkerEvent───┤                                          (one per cycle)
//!  signals ──────Shutdown─────┘
//! ```
//! Only the leader starts cycles. On becoming leader, cycles stored in KV by
//! an earlier agent are resumed. On SIGTERM no new cycle starts, running
//! ones get `shutdown_grace` to finish, and the rest stay resumable in KV.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, after, bounded, never, select};

use super::cycle::{CycleSettings, Phase};
use super::kvwriter::{KvWrite, KvWriter};
use super::leader::{Elector, LeaderEvent, LeaderSettings};
use super::records::{KvView, MissingRecord, missing_key};
use super::tracker::{CycleOutcome, Decision, NodeTracker, Snapshot, TrackerSettings};
use super::watcher::{WatchEvent, Watcher};
use super::worker::{self, CycleJob, WorkerContext, WorkerEvent};
use crate::config::NodeConfig;
use crate::consul::ConsulClient;
use crate::metrics::AgentMetrics;
use crate::oci::ComputeClient;
use crate::shutdown::ShutdownRequested;

/// Everything the agent needs to run, resolved from config and CLI.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The nodes to watch.
    pub nodes: Vec<NodeConfig>,
    /// Restart decision rules.
    pub tracker: TrackerSettings,
    /// Restart cycle timers.
    pub cycle: CycleSettings,
    /// Longest blocking-query wait, and the polling period without blocking.
    pub check_interval: Duration,
    /// Leader lock TTL.
    pub leader_ttl: Duration,
    /// How long running cycles may go on after SIGTERM.
    pub shutdown_grace: Duration,
    /// This agent's identity (host:pid).
    pub identity: String,
}

/// Runs the agent until a shutdown request arrives.
pub fn run(
    opts: AgentOptions,
    consul: ConsulClient,
    oci: ComputeClient,
    metrics: AgentMetrics,
    shutdown: Receiver<ShutdownRequested>,
) {
    let (watch_tx, mut watch_rx) = bounded::<WatchEvent>(16);
    let (leader_tx, mut leader_rx) = bounded::<LeaderEvent>(16);
    // Bounded like every queue here: workers block briefly if the
    // coordinator falls behind (it drains this channel continuously).
    let (worker_tx, worker_rx) = bounded::<WorkerEvent>(1024);
    // Dropping `cancel_tx` tells every waiting worker to stop (end of grace).
    let (cancel_tx, cancel_rx) = bounded::<()>(0);
    let dry_run = opts.tracker.dry_run;
    tracing::info!(
        nodes = opts.nodes.len(),
        consul = %consul.base_url(),
        timeout_s = opts.tracker.timeout.as_secs(),
        check_interval_s = opts.check_interval.as_secs(),
        dry_run,
        agent = %opts.identity,
        "agent starting"
    );
    metrics.nodes_monitored.set(opts.nodes.len() as i64);
    metrics.consul_connected.set(0);
    metrics.leader.set(0);
    spawn_oci_probe(&oci, &opts.nodes, worker_tx.clone());

    let watcher = match Watcher::spawn(consul.clone(), opts.check_interval, watch_tx) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the Consul watcher thread");
            None
        }
    };
    let elector = Elector::spawn(
        consul.clone(),
        LeaderSettings {
            ttl: opts.leader_ttl,
            identity: opts.identity.clone(),
        },
        leader_tx,
    )
    .map_err(|e| tracing::error!(error = %e, "cannot start the leader election thread"))
    .ok();

    let kv = KvWriter::spawn(consul.clone())
        .map_err(|e| tracing::warn!(error = %e, "cannot start the KV writer thread; status will lack missing-since times"))
        .ok();
    let mut c = Coordinator {
        kv,
        tracker: NodeTracker::new(
            opts.nodes.iter().map(|n| n.name.clone()),
            opts.tracker.clone(),
        ),
        nodes: opts
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.clone()))
            .collect(),
        metrics,
        ctx: WorkerContext {
            oci,
            consul,
            settings: opts.cycle,
            identity: opts.identity.clone(),
            events: worker_tx,
            cancel: cancel_rx,
        },
        running: BTreeMap::new(),
        dry_run,
        timeout: opts.tracker.timeout,
        last_view: None,
        resume_pending: false,
        stopping: false,
    };
    let mut out = Vec::new();
    c.tracker.set_leader(false, Instant::now(), &mut out);
    c.decide(&mut out);

    let signal = loop {
        let timer = match c.tracker.next_wakeup() {
            Some(t) => after(t.saturating_duration_since(Instant::now())),
            None => never(),
        };
        select! {
            recv(watch_rx) -> ev => match ev {
                Ok(ev) => c.on_watch(ev),
                Err(_) => {
                    // Only possible when the watcher thread could not start:
                    // stop selecting on the closed channel (no busy loop).
                    tracing::error!("Consul watcher is not running; no node state updates");
                    watch_rx = never();
                }
            },
            recv(leader_rx) -> ev => match ev {
                Ok(ev) => c.on_leader(ev),
                Err(_) => {
                    tracing::error!("leader election is not running; this agent will not act");
                    leader_rx = never();
                }
            },
            recv(worker_rx) -> ev => if let Ok(ev) = ev { c.on_worker(ev) },
            recv(timer) -> _ => {
                c.tracker.tick(Instant::now(), &mut out);
                c.decide(&mut out);
            }
            recv(shutdown) -> s => break s.ok(),
        }
    };

    tracing::info!(
        signal = signal.map(|s| s.signal),
        running = c.running.len(),
        grace_s = opts.shutdown_grace.as_secs(),
        "agent shutting down: no new restarts"
    );
    c.stopping = true;
    if let Some(w) = watcher {
        w.stop();
    }
    let deadline = Instant::now() + opts.shutdown_grace;
    while !c.running.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        select! {
            recv(worker_rx) -> ev => if let Ok(ev) = ev { c.on_worker(ev) },
            recv(after(left)) -> _ => {}
        }
    }
    if !c.running.is_empty() {
        tracing::warn!(
            nodes = ?c.running.keys().collect::<Vec<_>>(),
            "grace period over; leaving running cycles in Consul KV for the next leader"
        );
        drop(cancel_tx);
        let deadline = Instant::now() + Duration::from_secs(3);
        while !c.running.is_empty() {
            match worker_rx.recv_deadline(deadline) {
                Ok(ev) => c.on_worker(ev),
                Err(_) => break,
            }
        }
    }
    if let Some(e) = elector {
        e.stop(Duration::from_secs(2));
    }
    c.metrics.leader.set(0);
    tracing::info!("agent stopped");
}

struct Coordinator {
    kv: Option<KvWriter>,
    tracker: NodeTracker,
    nodes: BTreeMap<String, NodeConfig>,
    metrics: AgentMetrics,
    ctx: WorkerContext,
    /// Running cycles: node -> current phase.
    running: BTreeMap<String, Phase>,
    dry_run: bool,
    timeout: Duration,
    last_view: Option<KvView>,
    /// Became leader before the first view: resume stored cycles when it comes.
    resume_pending: bool,
    stopping: bool,
}

impl Coordinator {
    fn on_watch(&mut self, ev: WatchEvent) {
        let now = Instant::now();
        let mut out = Vec::new();
        match ev {
            WatchEvent::View(view) => {
                if self.metrics.consul_connected.get() == 0 {
                    tracing::info!("Consul answers; watching heartbeats");
                }
                self.metrics.consul_connected.set(1);
                let snapshot = Snapshot {
                    present: view.present.clone(),
                    maintenance: view.maintenance.keys().cloned().collect::<BTreeSet<_>>(),
                };
                self.metrics.nodes_in_maintenance.set(
                    snapshot
                        .maintenance
                        .iter()
                        .filter(|n| self.nodes.contains_key(*n))
                        .count() as i64,
                );
                self.last_view = Some(view);
                // Resume stored cycles before the tracker decides anything
                // for those nodes, or it would start fresh cycles instead.
                if self.resume_pending {
                    self.resume_stored_cycles();
                }
                self.tracker.observe(&snapshot, now, &mut out);
            }
            WatchEvent::Failed(e) => {
                self.metrics.consul_check_failures.inc();
                if self.metrics.consul_connected.get() == 1 {
                    tracing::warn!(error = %e, "Consul check failed; no node counts as missing until Consul answers again");
                } else {
                    tracing::debug!(error = %e, "Consul check failed again");
                }
                self.metrics.consul_connected.set(0);
                self.tracker.consul_unavailable(now);
            }
        }
        self.decide(&mut out);
    }

    fn on_leader(&mut self, ev: LeaderEvent) {
        let mut out = Vec::new();
        match ev {
            LeaderEvent::Acquired => {
                self.metrics.leader.set(1);
                // Resume first: gaining leadership makes the tracker decide
                // at once, and a node with a stored cycle must not get a new one.
                self.resume_pending = true;
                if self.last_view.is_some() {
                    self.resume_stored_cycles();
                }
                self.tracker.set_leader(true, Instant::now(), &mut out);
                self.publish_all_missing();
            }
            LeaderEvent::Lost { reason } => {
                self.metrics.leader.set(0);
                tracing::warn!(
                    reason,
                    running = self.running.len(),
                    "not the leader any more: no new restarts (running cycles finish)"
                );
                self.tracker.set_leader(false, Instant::now(), &mut out);
            }
        }
        self.decide(&mut out);
    }

    fn on_worker(&mut self, ev: WorkerEvent) {
        match ev {
            WorkerEvent::Phase { node, phase } => {
                if let Some(p) = self.running.get_mut(&node) {
                    *p = phase;
                }
            }
            WorkerEvent::OciReachable(up) => self.metrics.oci_connected.set(i64::from(up)),
            WorkerEvent::Finished { node, outcome } => {
                self.running.remove(&node);
                self.metrics
                    .restarts_in_flight
                    .set(self.running.len() as i64);
                match &outcome {
                    CycleOutcome::Recovered => {
                        self.metrics
                            .restart_successes
                            .with_label_values(&[node.as_str()])
                            .inc();
                        tracing::info!(node = %node, "restart cycle finished: instance RUNNING; waiting for its heartbeat");
                    }
                    CycleOutcome::Failed { permanent, reason } => {
                        self.metrics
                            .restart_failures
                            .with_label_values(&[node.as_str()])
                            .inc();
                        if *permanent {
                            tracing::error!(node = %node, reason, "restart cycle failed permanently; no further attempts until the node's heartbeat returns");
                        } else {
                            tracing::error!(node = %node, reason, "restart cycle failed; will try again after the timeout");
                        }
                    }
                    CycleOutcome::Interrupted => {}
                }
                let mut out = Vec::new();
                self.tracker
                    .cycle_finished(&node, outcome, Instant::now(), &mut out);
                self.decide(&mut out);
            }
        }
    }

    /// Resumes cycles found in KV (left by a stopped or dead agent).
    fn resume_stored_cycles(&mut self) {
        let Some(view) = &self.last_view else { return };
        self.resume_pending = false;
        let stored: Vec<_> = view.restarts.values().cloned().collect();
        for record in stored {
            let Some(node) = self.nodes.get(&record.node).cloned() else {
                tracing::warn!(node = %record.node, "stored restart cycle for a node not in the config; ignoring");
                continue;
            };
            let phase = match record.phase.parse::<Phase>() {
                Ok(p) if !p.is_terminal() => p,
                _ => continue,
            };
            if self.running.contains_key(&node.name) || self.stopping {
                continue;
            }
            if self.dry_run {
                tracing::warn!(node = %node.name, phase = phase.as_str(), "DRY RUN: would resume the stored restart cycle");
                continue;
            }
            if self
                .tracker
                .resume(&node.name, record.attempt, Instant::now())
            {
                tracing::warn!(node = %node.name, phase = phase.as_str(), attempt = record.attempt, previous_agent = %record.agent, "resuming a restart cycle left unfinished");
                self.start_cycle(CycleJob {
                    node,
                    attempt: record.attempt,
                    resume_from: Some(phase),
                    started_at: Some(record.started_at.clone()),
                });
            }
        }
    }

    fn start_cycle(&mut self, job: CycleJob) {
        let name = job.node.name.clone();
        let phase = job.resume_from.unwrap_or(Phase::Inspect);
        match worker::spawn(job, self.ctx.clone()) {
            Ok(_) => {
                self.running.insert(name, phase);
                self.metrics
                    .restarts_in_flight
                    .set(self.running.len() as i64);
            }
            Err(e) => {
                tracing::error!(node = %name, error = %e, "cannot start a restart worker thread");
                let mut out = Vec::new();
                let outcome = CycleOutcome::Failed {
                    permanent: false,
                    reason: format!("cannot start worker thread: {e}"),
                };
                self.tracker
                    .cycle_finished(&name, outcome, Instant::now(), &mut out);
                self.decide(&mut out);
            }
        }
    }

    /// After winning the election: record nodes that went missing while
    /// another agent (or none) led, with the time this agent first saw it.
    fn publish_all_missing(&self) {
        let Some(kv) = &self.kv else { return };
        let now = Instant::now();
        let wall = std::time::SystemTime::now();
        for name in self.nodes.keys() {
            let Some(view) = self.tracker.node_view(name) else {
                continue;
            };
            if let super::tracker::Presence::Missing { first_seen, .. } = view.presence {
                let at = wall - now.saturating_duration_since(first_seen);
                kv.send(missing_write(name, at));
            }
        }
    }

    /// The leader records since when a node is missing, for `status`.
    fn publish_missing(&self, node: &str, missing: bool) {
        let (Some(kv), true) = (&self.kv, self.metrics.leader.get() == 1) else {
            return;
        };
        if missing {
            kv.send(missing_write(node, std::time::SystemTime::now()));
        } else {
            kv.send(KvWrite::Delete {
                key: missing_key(node),
            });
        }
    }

    /// Carries out decisions: logs, metrics, cycles.
    fn decide(&mut self, out: &mut Vec<Decision>) {
        for d in std::mem::take(out) {
            match d {
                Decision::Restart {
                    node,
                    attempt,
                    missing_for,
                } => {
                    self.metrics
                        .restart_attempts
                        .with_label_values(&[node.as_str()])
                        .inc();
                    let Some(cfg) = self.nodes.get(&node).cloned() else {
                        continue;
                    };
                    if self.stopping {
                        let mut more = Vec::new();
                        self.tracker.cycle_finished(
                            &node,
                            CycleOutcome::Interrupted,
                            Instant::now(),
                            &mut more,
                        );
                        continue;
                    }
                    tracing::warn!(node = %node, instance = %cfg.instance_id, attempt, missing_for_s = missing_for.as_secs(), "heartbeat missing beyond the timeout: restarting the instance");
                    self.start_cycle(CycleJob {
                        node: cfg,
                        attempt,
                        resume_from: None,
                        started_at: None,
                    });
                }
                Decision::WouldRestart {
                    node,
                    attempt,
                    missing_for,
                } => {
                    self.metrics
                        .restart_attempts
                        .with_label_values(&[node.as_str()])
                        .inc();
                    let instance = self
                        .nodes
                        .get(&node)
                        .map(|n| n.instance_id.clone())
                        .unwrap_or_default();
                    tracing::warn!(node = %node, instance = %instance, attempt, missing_for_s = missing_for.as_secs(), "DRY RUN: would restart the instance (no OCI request sent)");
                }
                Decision::NodeMissing { node } => {
                    tracing::warn!(node = %node, timeout_s = self.timeout.as_secs(), "heartbeat missing");
                    self.publish_missing(&node, true);
                }
                Decision::NodeRecovered {
                    node,
                    attempts,
                    missing_for,
                } => {
                    tracing::info!(node = %node, attempts, missing_for_s = missing_for.map(|d| d.as_secs()), "heartbeat is back");
                    self.publish_missing(&node, false);
                }
                Decision::GaveUp { node, attempts } => {
                    self.metrics
                        .restarts_exhausted
                        .with_label_values(&[node.as_str()])
                        .inc();
                    tracing::error!(node = %node, attempts, "giving up on this node: max_restart_attempts reached; it will be retried once its heartbeat returns");
                }
                Decision::Held { node, reason } => {
                    tracing::info!(node = %node, reason = reason.as_str(), "restart due but held");
                }
                Decision::GuardEngaged { missing, total } => {
                    self.metrics.guard_active.set(1);
                    tracing::error!(
                        missing,
                        total,
                        "too many nodes missing at once: holding ALL restarts (likely a network problem on the agent's side)"
                    );
                }
                Decision::GuardReleased => {
                    self.metrics.guard_active.set(0);
                    tracing::info!("restart guard released");
                }
            }
        }
        self.metrics
            .nodes_missing
            .set(self.tracker.missing_count() as i64);
    }
}

/// The KV write recording that `node` has been missing since `at`.
fn missing_write(node: &str, at: std::time::SystemTime) -> KvWrite {
    let record = MissingRecord {
        since: crate::wallclock::rfc3339(at),
        since_unix: at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    KvWrite::Put {
        key: missing_key(node),
        value: serde_json::to_vec(&record).unwrap_or_default(),
    }
}

/// Reads one instance in the background at start so `*_oci_connected`
/// reflects reality before the first restart is ever needed.
fn spawn_oci_probe(oci: &ComputeClient, nodes: &[NodeConfig], events: Sender<WorkerEvent>) {
    let Some(first) = nodes.first().cloned() else {
        return;
    };
    let oci = oci.clone();
    let spawned = std::thread::Builder::new().name("oci-probe".into()).spawn(move || {
        match oci.get_instance(&first.instance_id, first.region.as_deref()) {
            Ok(i) => {
                tracing::info!(node = %first.name, state = i.lifecycle_state.as_str(), "OCI reachable");
                let _ = events.send(WorkerEvent::OciReachable(true));
            }
            Err(e) => {
                tracing::warn!(node = %first.name, error = %e, "OCI probe failed");
                let _ = events.send(WorkerEvent::OciReachable(!e.is_connectivity()));
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the OCI probe thread");
    }
}
