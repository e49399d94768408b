//! Trace spans of one restart cycle, kept out of the worker's control flow.
//!
//! A cycle is one trace: a root span `restart_cycle` (node, instance_id,
//! attempt, resumed, outcome) with a child per OCI call (`oci GetInstance`,
//! `oci STOP`, `oci START`) and a child per wait for a state
//! (`wait_for_state`, covering the WaitStopped / WaitRunning phases, with
//! target_state, polls and duration_ms). GetInstance polls made during a
//! wait are children of that wait. Errors set the span status to ERROR.

use std::time::Instant;

use tracing::Span;
use tracing::field::Empty;

use super::cycle::{Action, Phase};
use super::tracker::CycleOutcome;
use crate::config::NodeConfig;
use crate::oci::{Instance, OciError};
use crate::telemetry::record_error;

/// The open spans of a running cycle.
pub struct CycleTrace {
    root: Span,
    wait: Option<Wait>,
}

struct Wait {
    span: Span,
    started: Instant,
    polls: u32,
}

impl CycleTrace {
    /// Opens the root span of a new trace (it has no parent, whatever span
    /// the caller is in).
    pub fn start(node: &NodeConfig, attempt: u32, resumed: bool) -> CycleTrace {
        let root = tracing::info_span!(
            parent: None,
            "restart_cycle",
            node = %node.name,
            instance_id = %node.instance_id,
            attempt,
            resumed,
            outcome = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
        );
        CycleTrace { root, wait: None }
    }

    /// The root span, to enter while the cycle runs.
    pub fn root(&self) -> &Span {
        &self.root
    }

    /// Follows the cycle's phase: entering WaitStopped/WaitRunning opens a
    /// `wait_for_state` span, leaving it closes the span.
    pub fn phase(&mut self, phase: Phase) {
        let target = match phase {
            Phase::WaitStopped => "STOPPED",
            Phase::WaitRunning => "RUNNING",
            _ => {
                self.close_wait(None);
                return;
            }
        };
        if self.wait.is_some() {
            return;
        }
        let span = tracing::info_span!(
            parent: &self.root,
            "wait_for_state",
            target_state = target,
            polls = Empty,
            duration_ms = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
        );
        self.wait = Some(Wait {
            span,
            started: Instant::now(),
            polls: 0,
        });
    }

    /// A span for one OCI call, under the open wait (polls) or the root.
    pub fn oci_call(&mut self, action: Action) -> Span {
        let parent = match (&mut self.wait, action) {
            (Some(wait), Action::GetInstance) => {
                wait.polls += 1;
                &wait.span
            }
            _ => &self.root,
        };
        macro_rules! call_span {
            ($name:literal) => {
                tracing::info_span!(
                    parent: parent,
                    $name,
                    lifecycle_state = Empty,
                    opc_request_id = Empty,
                    error = Empty,
                    otel.status_code = Empty,
                    otel.status_description = Empty,
                )
            };
        }
        match action {
            Action::GetInstance => call_span!("oci GetInstance"),
            Action::Stop => call_span!("oci STOP"),
            Action::Start => call_span!("oci START"),
        }
    }

    /// Records OCI's answer on a call span.
    pub fn call_ok(span: &Span, instance: &Instance) {
        span.record("lifecycle_state", instance.lifecycle_state.as_str());
        if let Some(id) = &instance.opc_request_id {
            span.record("opc_request_id", id.as_str());
        }
    }

    /// Records a failed OCI call on its span.
    pub fn call_failed(span: &Span, error: &OciError) {
        if let Some(id) = &error.opc_request_id {
            span.record("opc_request_id", id.as_str());
        }
        let message = error.to_string();
        span.record("error", message.as_str());
        record_error(span, &message);
    }

    /// Records how the cycle ended and closes every span.
    pub fn finish(mut self, outcome: &CycleOutcome) {
        let (name, failure) = match outcome {
            CycleOutcome::Recovered => ("recovered", None),
            CycleOutcome::Failed { reason, .. } => ("failed", Some(reason.as_str())),
            CycleOutcome::Interrupted => ("interrupted", None),
        };
        self.close_wait(failure);
        self.root.record("outcome", name);
        if let Some(reason) = failure {
            record_error(&self.root, reason);
        }
    }

    fn close_wait(&mut self, failure: Option<&str>) {
        if let Some(wait) = self.wait.take() {
            wait.span.record("polls", wait.polls);
            wait.span.record(
                "duration_ms",
                u64::try_from(wait.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            );
            if let Some(reason) = failure {
                record_error(&wait.span, reason);
            }
        }
    }
}
