//! Monitor mode: publish this node's heartbeat in Consul until told to stop.
//!
//! Threads: the coordinator (the caller's thread, [`run`]) owns the
//! [`heartbeat::Heartbeat`] state machine and the metrics; a worker thread
//! (`consul-heartbeat`) performs one Consul request at a time and sends back
//! its outcome. A Consul that hangs therefore blocks only the worker, never
//! the coordinator's reaction to a shutdown signal.

pub mod heartbeat;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, after, bounded, never, select, tick};
use tracing::Span;

use crate::consul::{ConsulClient, ConsulError, SessionBehavior, SessionSpec, node_key};
use crate::metrics::MonitorMetrics;
use crate::shutdown::ShutdownRequested;
use heartbeat::{FailureKind, Heartbeat, Note, Outcome, Phase, Request, Timing};

/// How often a healthy monitor logs an info-level summary.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(300);

/// What the monitor needs to run.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Node name: the heartbeat key is `oracle-watchdog/nodes/{node}`.
    pub node: String,
    /// Session TTL (spec: 30 s).
    pub session_ttl: Duration,
    /// Renewal and retry timers.
    pub timing: Timing,
    /// Upper bound for destroying the session at shutdown.
    pub shutdown_timeout: Duration,
}

/// The JSON value stored in the heartbeat key: who holds it and since when.
pub fn heartbeat_value(node: &str, started_at: SystemTime) -> Vec<u8> {
    serde_json::json!({
        "node": node,
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": crate::wallclock::rfc3339(started_at),
    })
    .to_string()
    .into_bytes()
}

/// Runs the monitor until a shutdown request arrives; then destroys the
/// session (which deletes the heartbeat key) within `shutdown_timeout`.
///
/// `client` is used by the worker thread; `shutdown_client` (short timeouts)
/// by the coordinator for the final destroy, so a hung worker cannot delay it.
pub fn run(
    opts: MonitorOptions,
    client: ConsulClient,
    shutdown_client: ConsulClient,
    metrics: MonitorMetrics,
    shutdown: Receiver<ShutdownRequested>,
) {
    let key = node_key(&opts.node);
    let spec = SessionSpec {
        name: format!("oracle-watchdog/{}", opts.node),
        ttl: opts.session_ttl,
        behavior: SessionBehavior::Delete,
        lock_delay: Duration::ZERO,
    };
    let value = heartbeat_value(&opts.node, SystemTime::now());
    tracing::info!(
        node = %opts.node,
        key = %key,
        consul = %client.base_url(),
        ttl_s = opts.session_ttl.as_secs(),
        renew_interval_s = opts.timing.renew_interval.as_secs_f64(),
        "monitor starting"
    );
    metrics.consul_connected.set(0);
    metrics.session_active.set(0);

    // Each request travels with its trace span; the coordinator keeps a
    // handle (`pending`) so the transitions its outcome causes are events
    // of that span.
    let (req_tx, req_rx) = bounded::<(Request, Span)>(1);
    let (out_tx, out_rx) = bounded::<Outcome>(1);
    let worker = Worker {
        client,
        key: key.clone(),
        spec,
        value,
    };
    let mut worker_handle = spawn_worker(worker.clone(), req_rx.clone(), out_tx.clone());

    let mut hb = Heartbeat::new(opts.timing, Instant::now());
    let mut summary = Summary::default();
    let summary_tick = tick(SUMMARY_INTERVAL);
    let mut notes = Vec::new();
    let mut pending: Option<Span> = None;
    let signal = loop {
        let now = Instant::now();
        if let Some(request) = hb.poll(now, &mut notes) {
            tracing::debug!(request = ?request, "consul request");
            let span = request_span(&request, &opts.node);
            pending = Some(span.clone());
            if req_tx.send((request, span)).is_err() {
                // Cannot happen while we hold req_rx; treat like a failure.
                hb.on_outcome(worker_gone(), now, &mut notes);
            }
        }
        apply(&mut notes, &metrics, &mut summary, &opts.node);
        let timer = match hb.next_wakeup() {
            Some(t) => after(t.saturating_duration_since(now)),
            None => never(),
        };
        select! {
            recv(out_rx) -> outcome => {
                let outcome = outcome.unwrap_or_else(|_| worker_gone());
                let span = pending.take().unwrap_or_else(Span::none);
                let _entered = span.enter();
                record_outcome(&span, &outcome);
                hb.on_outcome(outcome, Instant::now(), &mut notes);
                apply(&mut notes, &metrics, &mut summary, &opts.node);
            }
            recv(shutdown) -> s => break s.ok(),
            recv(timer) -> _ => {}
            recv(summary_tick) -> _ => summary.log(hb.phase(), &opts.node),
        }
        apply(&mut notes, &metrics, &mut summary, &opts.node);
        if worker_handle.as_ref().is_none_or(|h| h.is_finished()) {
            tracing::error!("heartbeat worker thread is not running; restarting it");
            worker_handle = spawn_worker(worker.clone(), req_rx.clone(), out_tx.clone());
            pending = None;
            if hb.next_wakeup().is_none() {
                // Its request will never be answered.
                hb.on_outcome(worker_gone(), Instant::now(), &mut notes);
            }
        }
    };

    tracing::info!(
        signal = signal.map(|s| s.signal),
        phase = hb.phase().as_str(),
        "monitor shutting down"
    );
    drop(req_tx);
    if let Some(session) = hb.session() {
        let started = Instant::now();
        match destroy_bounded(&shutdown_client, session, opts.shutdown_timeout) {
            Ok(()) => tracing::info!(
                session,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "session destroyed; heartbeat key removed"
            ),
            Err(e) => tracing::warn!(
                session,
                error = %e,
                "could not destroy session at shutdown; Consul will expire it after its TTL"
            ),
        }
    }
    metrics.session_active.set(0);
}

/// Everything the worker thread needs to turn a [`Request`] into Consul calls.
#[derive(Clone)]
struct Worker {
    client: ConsulClient,
    key: String,
    spec: SessionSpec,
    value: Vec<u8>,
}

impl Worker {
    fn execute(&self, request: &Request) -> Outcome {
        let result = match request {
            Request::CreateSession => self
                .client
                .create_session(&self.spec)
                .map(Outcome::SessionCreated),
            Request::Acquire { session } => self
                .client
                .acquire(&self.key, session, &self.value)
                .map(Outcome::Acquired),
            Request::Renew { session } => match self.client.renew_session(session) {
                Ok(()) => Ok(Outcome::Renewed),
                Err(ConsulError::NotFound { .. }) => Ok(Outcome::SessionGone),
                Err(e) => Err(e),
            },
            Request::Verify { .. } => self
                .client
                .get(&self.key)
                .map(|pair| Outcome::KeyHolder(pair.and_then(|p| p.session))),
        };
        result.unwrap_or_else(|e| Outcome::Failed {
            kind: if e.is_connectivity() {
                FailureKind::Unavailable
            } else {
                FailureKind::Rejected
            },
            message: e.to_string(),
        })
    }
}

/// The root span of one heartbeat request (`heartbeat create`, `acquire`,
/// `renew`, `verify`); its Consul call is a child, the state transitions
/// it causes are its events.
fn request_span(request: &Request, node: &str) -> Span {
    macro_rules! request_span {
        ($name:literal) => {
            tracing::info_span!(
                parent: None,
                $name,
                node,
                outcome = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                otel.status_description = tracing::field::Empty,
            )
        };
    }
    match request {
        Request::CreateSession => request_span!("heartbeat create"),
        Request::Acquire { .. } => request_span!("heartbeat acquire"),
        Request::Renew { .. } => request_span!("heartbeat renew"),
        Request::Verify { .. } => request_span!("heartbeat verify"),
    }
}

fn record_outcome(span: &Span, outcome: &Outcome) {
    let name = match outcome {
        Outcome::SessionCreated(_) => "session_created",
        Outcome::Acquired(true) => "acquired",
        Outcome::Acquired(false) => "held_by_another_session",
        Outcome::Renewed => "renewed",
        Outcome::SessionGone => "session_gone",
        Outcome::KeyHolder(_) => "key_read",
        Outcome::Failed { .. } => "failed",
    };
    span.record("outcome", name);
    if let Outcome::Failed { message, .. } = outcome {
        crate::telemetry::record_error(span, message);
    }
}

fn spawn_worker(
    worker: Worker,
    requests: Receiver<(Request, Span)>,
    outcomes: Sender<Outcome>,
) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name("consul-heartbeat".into())
        .spawn(move || {
            // Ends when the coordinator drops its request sender.
            for (request, span) in requests.iter() {
                let _entered = span.enter();
                let outcome = catch_unwind(AssertUnwindSafe(|| worker.execute(&request)))
                    .unwrap_or_else(|_| {
                        crate::supervise::count_panic("consul-heartbeat");
                        Outcome::Failed {
                            kind: FailureKind::Rejected,
                            message: "internal error: heartbeat request panicked".into(),
                        }
                    });
                if outcomes.send(outcome).is_err() {
                    return;
                }
            }
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(e) => {
            // Out of threads or memory: the coordinator retries on its next turn.
            tracing::error!(error = %e, "cannot start heartbeat worker thread");
            None
        }
    }
}

fn worker_gone() -> Outcome {
    Outcome::Failed {
        kind: FailureKind::Rejected,
        message: "internal error: heartbeat worker stopped".into(),
    }
}

/// Destroys `session`, giving up after `timeout` even if Consul hangs.
fn destroy_bounded(client: &ConsulClient, session: &str, timeout: Duration) -> Result<(), String> {
    let (tx, rx) = bounded(1);
    let client = client.clone();
    let id = session.to_string();
    std::thread::Builder::new()
        .name("consul-destroy".into())
        .spawn(move || {
            let _ = tx.send(client.destroy_session(&id));
        })
        .map_err(|e| e.to_string())?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// Counts for the periodic info summary.
#[derive(Default)]
struct Summary {
    renewals: u64,
    failures: u64,
}

impl Summary {
    fn log(&mut self, phase: Phase, node: &str) {
        tracing::info!(
            node,
            phase = phase.as_str(),
            renewals = self.renewals,
            failures = self.failures,
            window_s = SUMMARY_INTERVAL.as_secs(),
            "heartbeat summary"
        );
        *self = Summary::default();
    }
}

/// Turns state-machine notes into metrics and log lines.
fn apply(notes: &mut Vec<Note>, metrics: &MonitorMetrics, summary: &mut Summary, node: &str) {
    for note in notes.drain(..) {
        match note {
            Note::Transition { from, to, reason } => {
                metrics.session_active.set(i64::from(to == Phase::Active));
                if to == Phase::Disconnected {
                    tracing::warn!(
                        node,
                        from = from.as_str(),
                        to = to.as_str(),
                        reason,
                        "heartbeat state changed"
                    );
                } else {
                    tracing::info!(
                        node,
                        from = from.as_str(),
                        to = to.as_str(),
                        reason,
                        "heartbeat state changed"
                    );
                }
            }
            Note::ConsulReachable(up) => metrics.consul_connected.set(i64::from(up)),
            Note::SessionCreated(id) => {
                tracing::info!(node, session = %id, "consul session created")
            }
            Note::RenewalSucceeded => {
                metrics.session_renewals.inc();
                summary.renewals += 1;
                tracing::debug!(node, "session renewed");
            }
            Note::SessionFailure(message) => {
                metrics.session_failures.inc();
                summary.failures += 1;
                tracing::warn!(node, error = %message, "heartbeat request failed");
            }
            Note::ReconnectAttempt => {
                metrics.reconnect_attempts.inc();
                tracing::debug!(node, "reconnecting to consul");
            }
            Note::LockConflict => {
                metrics.lock_conflicts.inc();
                tracing::warn!(
                    node,
                    "heartbeat key is held by another live session; is a second monitor running with the same node name? not fighting over it, will retry"
                );
            }
            Note::KeyLost { holder } => {
                tracing::warn!(
                    node,
                    holder = holder.as_deref().unwrap_or("nobody"),
                    "heartbeat key no longer held by our session; re-acquiring"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_value_is_documented_json() {
        let v: serde_json::Value =
            serde_json::from_slice(&heartbeat_value("n1", SystemTime::UNIX_EPOCH)).unwrap();
        assert_eq!(v["node"], "n1");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["started_at"], "1970-01-01T00:00:00Z");
    }
}
