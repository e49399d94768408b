//! The OCI stand-in's world: instances and their lifecycle, pending faults, retry tokens.
//!
//! Pure data plus decisions; no sockets. Time comes in as `now` so the
//! transitions are easy to reason about.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::{Fault, LifecycleState, RecordedOciRequest};

/// One simulated instance.
pub(crate) struct InstanceRec {
    pub state: LifecycleState,
    /// The state it reaches at the deadline (STOPPING -> STOPPED, ...).
    pub pending: Option<(Instant, LifecycleState)>,
    /// Stays in STOPPING forever (the "stuck" fault).
    pub stuck: bool,
    /// Actions actually performed (idempotent replays not counted).
    pub actions: Vec<String>,
}

/// A stored answer for an `opc-retry-token`.
#[derive(Clone)]
pub(crate) struct Replay {
    pub instance: String,
    pub action: String,
    pub status: u16,
    pub body: String,
}

/// Everything behind the stand-in's mutex.
pub(crate) struct World {
    pub instances: HashMap<String, InstanceRec>,
    pub transition: Duration,
    pub faults: VecDeque<(Fault, u32)>,
    pub retry_tokens: HashMap<String, Replay>,
    pub requests: Vec<RecordedOciRequest>,
    pub next_request_id: u64,
}

/// The answer to one API call.
pub(crate) struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<u64>,
}

impl Answer {
    pub fn error(status: u16, code: &str, message: &str) -> Answer {
        Answer {
            status,
            body: serde_json::json!({"code": code, "message": message}).to_string(),
            retry_after: None,
        }
    }
}

impl World {
    pub fn new(transition: Duration) -> World {
        World {
            instances: HashMap::new(),
            transition,
            faults: VecDeque::new(),
            retry_tokens: HashMap::new(),
            requests: Vec::new(),
            next_request_id: 0,
        }
    }

    /// Applies due transitions.
    pub fn settle(&mut self, now: Instant) {
        for rec in self.instances.values_mut() {
            if rec.stuck {
                continue;
            }
            if let Some((at, target)) = &rec.pending
                && *at <= now
            {
                rec.state = target.clone();
                rec.pending = None;
            }
        }
    }

    /// Takes the first pending fault that applies to this request.
    pub fn take_fault(&mut self, action: Option<&str>) -> Option<Fault> {
        let pos = self.faults.iter().position(|(f, _)| match f {
            Fault::OutOfCapacityOnStart => action == Some("START"),
            _ => true,
        })?;
        let (fault, left) = self.faults.get_mut(pos)?;
        let fault = fault.clone();
        *left -= 1;
        if *left == 0 {
            self.faults.remove(pos);
        }
        Some(fault)
    }

    pub fn instance_json(&self, id: &str) -> Option<String> {
        let rec = self.instances.get(id)?;
        let region = id.split('.').nth(3).unwrap_or("iad");
        Some(
            serde_json::json!({
                "id": id,
                "lifecycleState": rec.state.as_str(),
                "displayName": id.rsplit('.').next().unwrap_or(id),
                "region": region,
                "compartmentId": "ocid1.compartment.oc1..standin",
                "availabilityDomain": "Uocm:STANDIN-AD-1",
                "shape": "VM.Standard.A1.Flex",
                "timeCreated": "2024-01-01T00:00:00.000Z",
            })
            .to_string(),
        )
    }

    pub fn get_instance(&mut self, id: &str, now: Instant) -> Answer {
        self.settle(now);
        match self.instance_json(id) {
            Some(body) => Answer {
                status: 200,
                body,
                retry_after: None,
            },
            None => not_found(),
        }
    }

    /// Performs (or replays) an action.
    pub fn action(&mut self, id: &str, action: &str, token: Option<&str>, now: Instant) -> Answer {
        self.settle(now);
        if let Some(token) = token
            && let Some(replay) = self.retry_tokens.get(token)
        {
            if replay.instance == id && replay.action == action {
                return Answer {
                    status: replay.status,
                    body: replay.body.clone(),
                    retry_after: None,
                };
            }
            return Answer::error(
                409,
                "Conflict",
                "opc-retry-token was already used for a different request",
            );
        }
        let transition = self.transition;
        let Some(rec) = self.instances.get_mut(id) else {
            return not_found();
        };
        use LifecycleState::*;
        let (now_state, then) = match (action, &rec.state) {
            ("STOP" | "SOFTSTOP", Running) => (Stopping, Stopped),
            ("START", Stopped) => (Starting, Running),
            ("RESET" | "SOFTRESET", Running) => (Starting, Running),
            ("STOP" | "SOFTSTOP" | "START" | "RESET" | "SOFTRESET", state) => {
                let msg = format!(
                    "Instance is in state {}; action {action} is not allowed",
                    state.as_str()
                );
                return Answer::error(409, "IncorrectState", &msg);
            }
            _ => {
                return Answer::error(
                    400,
                    "InvalidParameter",
                    &format!("unknown action {action:?}"),
                );
            }
        };
        rec.state = now_state;
        rec.pending = Some((now + transition, then));
        rec.actions.push(action.to_string());
        let body = self.instance_json(id).unwrap_or_default();
        if let Some(token) = token {
            self.retry_tokens.insert(
                token.to_string(),
                Replay {
                    instance: id.to_string(),
                    action: action.to_string(),
                    status: 200,
                    body: body.clone(),
                },
            );
        }
        Answer {
            status: 200,
            body,
            retry_after: None,
        }
    }
}

fn not_found() -> Answer {
    Answer::error(
        404,
        "NotAuthorizedOrNotFound",
        "Authorization failed or requested resource not found.",
    )
}
