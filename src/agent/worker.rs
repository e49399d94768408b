//! One restart cycle on a thread of its own: drives a
//! [`RestartCycle`](super::cycle::RestartCycle) with real OCI calls,
//! persists every phase change in Consul KV and reports to the coordinator.
//!
//! The worker only does I/O; what to call next is the cycle's decision. It
//! keeps going when Consul is down (finishing a cycle is safer than leaving
//! an instance STOPPED) and stops early only when the coordinator cancels
//! it at the end of a shutdown grace period, leaving the KV record behind so
//! the cycle resumes later.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, after, select};

use super::cycle::{
    Action, ActionError, ActionErrorKind, CycleNote, CycleSettings, InstanceState, Phase,
    RestartCycle, Step,
};
use super::cycle_trace::CycleTrace;
use super::records::{RestartRecord, restart_key};
use super::tracker::CycleOutcome;
use crate::config::NodeConfig;
use crate::consul::ConsulClient;
use crate::oci::{ComputeClient, InstanceAction, OciError, OciErrorKind};

/// What a worker tells the coordinator.
#[derive(Debug, Clone)]
pub enum WorkerEvent {
    /// The cycle of `node` entered `phase`.
    Phase {
        /// Node name.
        node: String,
        /// New phase.
        phase: Phase,
    },
    /// Whether the last OCI call got an answer from OCI.
    OciReachable(bool),
    /// The cycle of `node` is over.
    Finished {
        /// Node name.
        node: String,
        /// How it ended.
        outcome: CycleOutcome,
    },
}

/// Everything a worker needs besides its job.
#[derive(Clone)]
pub struct WorkerContext {
    /// OCI compute client.
    pub oci: ComputeClient,
    /// Consul client for the KV record.
    pub consul: ConsulClient,
    /// Cycle timers.
    pub settings: CycleSettings,
    /// This agent's identity, stored in the record.
    pub identity: String,
    /// Where to report.
    pub events: Sender<WorkerEvent>,
    /// Closed (or sent to) when waiting cycles must stop: end of shutdown grace.
    pub cancel: Receiver<()>,
}

/// One cycle to run.
#[derive(Debug, Clone)]
pub struct CycleJob {
    /// The node and its instance.
    pub node: NodeConfig,
    /// Consecutive attempt number.
    pub attempt: u32,
    /// Phase stored in KV when resuming an interrupted cycle.
    pub resume_from: Option<Phase>,
    /// When the cycle originally started (display), for resumed cycles.
    pub started_at: Option<String>,
}

/// Starts the cycle on a thread named `restart-{node}`. A panic inside the
/// cycle is caught and reported as a failed (non-permanent) cycle.
pub fn spawn(job: CycleJob, ctx: WorkerContext) -> std::io::Result<std::thread::JoinHandle<()>> {
    let name = format!("restart-{}", job.node.name);
    std::thread::Builder::new().name(name).spawn(move || {
        let node = job.node.name.clone();
        let events = ctx.events.clone();
        let outcome = catch_unwind(AssertUnwindSafe(|| run(job, ctx))).unwrap_or_else(|_| {
            crate::supervise::count_panic("restart");
            tracing::error!(node = %node, "restart cycle panicked; reporting it as failed");
            CycleOutcome::Failed {
                permanent: false,
                reason: "internal error: restart cycle panicked".into(),
            }
        });
        let _ = events.send(WorkerEvent::Finished { node, outcome });
    })
}

/// Runs a cycle to its end on the current thread (also used by
/// `oracle-watchdog restart NODE`). The cycle is one trace (see
/// [`CycleTrace`]); Consul calls made meanwhile are children of its root.
pub fn run(job: CycleJob, ctx: WorkerContext) -> CycleOutcome {
    let mut trace = CycleTrace::start(&job.node, job.attempt, job.resume_from.is_some());
    let root = trace.root().clone();
    let outcome = root.in_scope(|| drive(&job, &ctx, &mut trace));
    trace.finish(&outcome);
    outcome
}

fn drive(job: &CycleJob, ctx: &WorkerContext, trace: &mut CycleTrace) -> CycleOutcome {
    let node = &job.node;
    let now = Instant::now();
    let mut cycle = match job.resume_from {
        Some(phase) => RestartCycle::resume(ctx.settings, phase, now),
        None => RestartCycle::new(ctx.settings, now),
    };
    let started_at = job
        .started_at
        .clone()
        .unwrap_or_else(|| crate::wallclock::rfc3339(SystemTime::now()));
    let mut w = Run {
        job,
        ctx,
        started_at,
        calls: 0,
        trace,
    };
    w.trace.phase(cycle.phase());
    tracing::info!(
        node = %node.name,
        instance = %node.instance_id,
        attempt = job.attempt,
        phase = cycle.phase().as_str(),
        resumed = job.resume_from.is_some(),
        "restart cycle started"
    );
    w.persist(cycle.phase());
    let mut notes = Vec::new();
    loop {
        let step = cycle.next(Instant::now(), &mut notes);
        w.notes(&mut notes, cycle.phase());
        match step {
            Step::Do(Action::GetInstance) => {
                let span = w.trace.oci_call(Action::GetInstance);
                let _call = span.enter();
                let result = ctx
                    .oci
                    .get_instance(&node.instance_id, node.region.as_deref());
                match result {
                    Ok(instance) => {
                        CycleTrace::call_ok(&span, &instance);
                        w.reachable(true);
                        tracing::debug!(
                            node = %node.name,
                            instance = %node.instance_id,
                            phase = cycle.phase().as_str(),
                            attempt = job.attempt,
                            state = instance.lifecycle_state.as_str(),
                            opc_request_id = instance.opc_request_id.as_deref().unwrap_or(""),
                            "instance state"
                        );
                        let state = InstanceState::parse(instance.lifecycle_state.as_str());
                        cycle.on_instance(state, Instant::now(), &mut notes);
                    }
                    Err(e) => {
                        CycleTrace::call_failed(&span, &e);
                        w.failed_call(&e, cycle.phase());
                        cycle.on_error(
                            Action::GetInstance,
                            map_error(&e),
                            Instant::now(),
                            &mut notes,
                        );
                    }
                }
            }
            Step::Do(action @ (Action::Stop | Action::Start)) => {
                let oci_action = if action == Action::Stop {
                    InstanceAction::Stop
                } else {
                    InstanceAction::Start
                };
                let token = w.retry_token(action);
                let span = w.trace.oci_call(action);
                let _call = span.enter();
                match ctx.oci.instance_action(
                    &node.instance_id,
                    node.region.as_deref(),
                    oci_action,
                    &token,
                ) {
                    Ok(instance) => {
                        CycleTrace::call_ok(&span, &instance);
                        w.reachable(true);
                        tracing::info!(
                            node = %node.name,
                            instance = %node.instance_id,
                            phase = cycle.phase().as_str(),
                            attempt = job.attempt,
                            action = action.as_str(),
                            state = instance.lifecycle_state.as_str(),
                            opc_request_id = instance.opc_request_id.as_deref().unwrap_or(""),
                            "OCI accepted the action"
                        );
                        cycle.on_action_ok(action, Instant::now(), &mut notes);
                    }
                    Err(e) => {
                        CycleTrace::call_failed(&span, &e);
                        w.failed_call(&e, cycle.phase());
                        cycle.on_error(action, map_error(&e), Instant::now(), &mut notes);
                    }
                }
            }
            Step::WaitUntil(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                select! {
                    recv(ctx.cancel) -> _ => {
                        tracing::warn!(
                            node = %node.name,
                            instance = %node.instance_id,
                            phase = cycle.phase().as_str(),
                            attempt = job.attempt,
                            "restart cycle interrupted by shutdown; it stays in Consul KV and resumes when an agent leads again"
                        );
                        return CycleOutcome::Interrupted;
                    }
                    recv(after(wait)) -> _ => {}
                }
            }
            Step::Finished(outcome) => {
                w.notes(&mut notes, cycle.phase());
                if let Err(e) = ctx.consul.delete(&restart_key(&node.name)) {
                    tracing::warn!(node = %node.name, error = %e, "could not delete the finished cycle's KV record");
                }
                return outcome.into();
            }
        }
        w.notes(&mut notes, cycle.phase());
    }
}

/// Per-run helpers (logging, KV, tokens, trace spans).
struct Run<'a> {
    job: &'a CycleJob,
    ctx: &'a WorkerContext,
    started_at: String,
    calls: u32,
    trace: &'a mut CycleTrace,
}

impl Run<'_> {
    fn notes(&mut self, notes: &mut Vec<CycleNote>, _phase: Phase) {
        let node = &self.job.node;
        for note in notes.drain(..) {
            match note {
                CycleNote::PhaseChanged { from, to } => {
                    tracing::info!(
                        node = %node.name,
                        instance = %node.instance_id,
                        attempt = self.job.attempt,
                        from = from.as_str(),
                        phase = to.as_str(),
                        "restart cycle phase"
                    );
                    self.trace.phase(to);
                    if !to.is_terminal() {
                        self.persist(to);
                    }
                    let _ = self.ctx.events.send(WorkerEvent::Phase {
                        node: node.name.clone(),
                        phase: to,
                    });
                }
                CycleNote::Observed { state } => {
                    tracing::debug!(node = %node.name, state = state.as_str(), "observed instance state");
                }
                CycleNote::Retrying {
                    action,
                    delay,
                    reason,
                } => tracing::warn!(
                    node = %node.name,
                    instance = %node.instance_id,
                    attempt = self.job.attempt,
                    action = action.as_str(),
                    retry_in_s = delay.as_secs_f64(),
                    reason,
                    "OCI call failed; retrying"
                ),
                CycleNote::Refused { action, reason } => tracing::info!(
                    node = %node.name,
                    instance = %node.instance_id,
                    action = action.as_str(),
                    reason,
                    "OCI refused the action for the instance's state; re-reading it"
                ),
            }
        }
    }

    fn persist(&self, phase: Phase) {
        let node = &self.job.node;
        let record = RestartRecord {
            node: node.name.clone(),
            instance_id: node.instance_id.clone(),
            phase: phase.as_str().to_string(),
            attempt: self.job.attempt,
            agent: self.ctx.identity.clone(),
            started_at: self.started_at.clone(),
            updated_at: crate::wallclock::rfc3339(SystemTime::now()),
        };
        let value = serde_json::to_vec(&record).unwrap_or_default();
        if let Err(e) = self.ctx.consul.put(&restart_key(&node.name), &value) {
            tracing::warn!(node = %node.name, phase = phase.as_str(), error = %e, "could not store the cycle's phase in Consul; continuing");
        }
    }

    fn reachable(&self, up: bool) {
        let _ = self.ctx.events.send(WorkerEvent::OciReachable(up));
    }

    fn failed_call(&self, e: &OciError, phase: Phase) {
        if e.is_connectivity() {
            self.reachable(false);
        }
        tracing::warn!(
            node = %self.job.node.name,
            instance = %self.job.node.instance_id,
            phase = phase.as_str(),
            attempt = self.job.attempt,
            opc_request_id = e.opc_request_id.as_deref().unwrap_or(""),
            error = %e,
            "OCI call failed"
        );
    }

    /// A fresh `opc-retry-token` for each STOP/START request of this cycle;
    /// the client reuses it across its own retries of that request.
    fn retry_token(&mut self, action: Action) -> String {
        self.calls += 1;
        format!(
            "ow-{}-{:016x}-{}",
            action.as_str().to_ascii_lowercase(),
            fastrand::u64(..),
            self.calls
        )
    }
}

/// The adapter's typed error onto the cycle's decision categories.
fn map_error(e: &OciError) -> ActionError {
    let kind = match &e.kind {
        OciErrorKind::NotAuthenticated { .. } => ActionErrorKind::NotAuthenticated,
        OciErrorKind::NotAuthorizedOrNotFound { .. } => ActionErrorKind::NotFound,
        OciErrorKind::IncorrectState { .. } => ActionErrorKind::IncorrectState,
        OciErrorKind::OutOfCapacity { .. } => ActionErrorKind::OutOfCapacity,
        OciErrorKind::Throttled => ActionErrorKind::Throttled,
        OciErrorKind::Transient { .. } | OciErrorKind::BadResponse { .. } => {
            ActionErrorKind::Transient
        }
        _ => ActionErrorKind::Other,
    };
    ActionError::new(kind, e.to_string())
}
