//! The OCI stand-in's HTTP side: worker threads, API routing, the `/_standin/` admin API, hung requests.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use rsa::RsaPublicKey;
use tiny_http::{Header, Request, Response};

use super::model::{Answer, World};
use super::verify::{self, SignedParts};
use super::{Fault, LifecycleState, OciOptions, RecordedOciRequest};

/// Largest request body read.
const MAX_BODY: u64 = 1024 * 1024;

/// Shared by the handle and all threads.
pub(crate) struct Core {
    pub options: OciOptions,
    pub world: Mutex<World>,
    pub keys: Mutex<HashMap<String, RsaPublicKey>>,
    /// Set at shutdown; hung requests wait on `wake` for it.
    pub stopping: Mutex<bool>,
    pub wake: Condvar,
    pub hung: Mutex<Vec<JoinHandle<()>>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    pub fn new(options: OciOptions) -> Core {
        Core {
            world: Mutex::new(World::new(options.transition_time)),
            options,
            keys: Mutex::new(HashMap::new()),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
            hung: Mutex::new(Vec::new()),
        }
    }

    pub fn is_stopping(&self) -> bool {
        *lock(&self.stopping)
    }

    /// Serves one request to completion (or parks it for the hang fault).
    pub fn handle(self: &Arc<Self>, mut request: Request) {
        let method = request.method().as_str().to_string();
        let target = request.url().to_string();
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.as_str().to_string(),
                )
            })
            .collect();
        let mut body = Vec::new();
        if request
            .as_reader()
            .take(MAX_BODY)
            .read_to_end(&mut body)
            .is_err()
        {
            let _ = request.respond(Response::empty(400));
            return;
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target.clone(), None),
        };
        if let Some(admin) = path.strip_prefix("/_standin/") {
            let (status, text) = self.admin(&method, admin, query.as_deref(), &body);
            let _ = request.respond(json_response(status, text, None, None));
            return;
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let opc_request_id = {
            let mut w = lock(&self.world);
            w.next_request_id += 1;
            format!(
                "standin{:016X}/{:08}",
                std::process::id(),
                w.next_request_id
            )
        };
        let action = query.as_deref().and_then(|q| query_param(q, "action"));
        let retry_token = header("opc-retry-token");
        let verdict = {
            let keys = lock(&self.keys);
            let parts = SignedParts {
                method: &method,
                target: &target,
                header: &header,
                body: &body,
            };
            verify::verify(&parts, &keys, SystemTime::now(), self.options.max_skew)
        };
        let mut record = RecordedOciRequest {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            action: action.clone(),
            retry_token: retry_token.clone(),
            key_id: verdict.as_ref().ok().cloned(),
            signature_ok: verdict.is_ok(),
            reason: verdict.as_ref().err().cloned(),
            status: 0,
            opc_request_id: opc_request_id.clone(),
        };
        let answer = match &verdict {
            Err(reason) => Answer::error(401, "NotAuthenticated", reason),
            Ok(_) => {
                let fault = lock(&self.world).take_fault(action.as_deref());
                match fault {
                    Some(Fault::Hang) => {
                        record.status = 0;
                        record.reason = Some("hang fault: no answer".into());
                        lock(&self.world).requests.push(record);
                        self.park(request);
                        return;
                    }
                    Some(fault) => fault_answer(&fault),
                    None => self.route(&method, &path, action.as_deref(), retry_token.as_deref()),
                }
            }
        };
        record.status = answer.status;
        lock(&self.world).requests.push(record);
        let _ = request.respond(json_response(
            answer.status,
            answer.body,
            Some(&opc_request_id),
            answer.retry_after,
        ));
    }

    fn route(&self, method: &str, path: &str, action: Option<&str>, token: Option<&str>) -> Answer {
        let Some(id) = path
            .strip_prefix("/20160918/instances/")
            .filter(|id| !id.is_empty() && !id.contains('/'))
        else {
            return Answer::error(404, "NotFound", &format!("no such API path {path}"));
        };
        let now = Instant::now();
        let mut world = lock(&self.world);
        match (method, action) {
            ("GET", None) => world.get_instance(id, now),
            ("POST", Some(action)) => world.action(id, action, token, now),
            ("POST", None) => Answer::error(
                400,
                "MissingParameter",
                "query parameter `action` is required",
            ),
            _ => Answer::error(
                405,
                "NotAllowed",
                &format!("{method} is not supported on {path}"),
            ),
        }
    }

    /// Holds a request unanswered until the hang time passes or shutdown.
    fn park(self: &Arc<Self>, request: Request) {
        let core = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("oci-standin-hang".into())
            .spawn(move || {
                let deadline = Instant::now() + core.options.hang_time;
                let mut stopping = lock(&core.stopping);
                while !*stopping {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    stopping = core
                        .wake
                        .wait_timeout(stopping, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                drop(stopping);
                drop(request);
            });
        if let Ok(handle) = spawned {
            lock(&self.hung).push(handle);
        }
    }

    fn admin(&self, method: &str, path: &str, query: Option<&str>, body: &[u8]) -> (u16, String) {
        let now = Instant::now();
        let parts: Vec<&str> = path.split('/').collect();
        match (method, parts.as_slice()) {
            ("GET", ["requests"]) => (
                200,
                serde_json::to_string(&lock(&self.world).requests).unwrap_or_default(),
            ),
            ("GET", ["instances"]) => {
                let mut world = lock(&self.world);
                world.settle(now);
                let map: HashMap<&String, &str> = world
                    .instances
                    .iter()
                    .map(|(k, v)| (k, v.state.as_str()))
                    .collect();
                (200, serde_json::to_string(&map).unwrap_or_default())
            }
            ("PUT" | "POST", ["instances", id]) => {
                let Some(state) = query.and_then(|q| query_param(q, "state")) else {
                    return (400, r#"{"error":"state= is required"}"#.into());
                };
                set_instance(&mut lock(&self.world), id, LifecycleState::parse(&state));
                (200, "{}".into())
            }
            ("POST", ["stick", id]) => {
                let mut world = lock(&self.world);
                match world.instances.get_mut(*id) {
                    Some(rec) => {
                        rec.stuck = true;
                        (200, "{}".into())
                    }
                    None => (404, r#"{"error":"unknown instance"}"#.into()),
                }
            }
            ("PUT" | "POST", ["transition"]) => match query
                .and_then(|q| query_param(q, "ms"))
                .and_then(|v| v.parse().ok())
            {
                Some(ms) => {
                    lock(&self.world).transition = std::time::Duration::from_millis(ms);
                    (200, "{}".into())
                }
                None => (400, r#"{"error":"ms= is required"}"#.into()),
            },
            ("POST", ["faults"]) => match parse_fault(body) {
                Ok((fault, count)) => {
                    lock(&self.world).faults.push_back((fault, count));
                    (200, "{}".into())
                }
                Err(e) => (400, serde_json::json!({ "error": e }).to_string()),
            },
            ("DELETE", ["faults"]) => {
                lock(&self.world).faults.clear();
                (200, "{}".into())
            }
            ("POST", ["keys"]) => {
                let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                let (Some(key_id), Some(pem)) = (v["key_id"].as_str(), v["pem"].as_str()) else {
                    return (400, r#"{"error":"key_id and pem are required"}"#.into());
                };
                match verify::parse_public_key(pem) {
                    Ok(key) => {
                        lock(&self.keys).insert(key_id.to_string(), key);
                        (200, "{}".into())
                    }
                    Err(e) => (400, serde_json::json!({ "error": e }).to_string()),
                }
            }
            _ => (404, r#"{"error":"unknown admin endpoint"}"#.into()),
        }
    }
}

/// Adds an instance or forces its state.
pub(crate) fn set_instance(world: &mut World, id: &str, state: LifecycleState) {
    let rec = world
        .instances
        .entry(id.to_string())
        .or_insert_with(|| super::model::InstanceRec {
            state: state.clone(),
            pending: None,
            stuck: false,
            actions: Vec::new(),
        });
    rec.state = state;
    rec.pending = None;
}

fn fault_answer(fault: &Fault) -> Answer {
    match fault {
        Fault::Status409 => Answer::error(
            409,
            "IncorrectState",
            "The instance is in an incorrect state (injected)",
        ),
        Fault::Throttle { retry_after } => Answer {
            retry_after: *retry_after,
            ..Answer::error(429, "TooManyRequests", "Too many requests for the user")
        },
        Fault::Status500 => Answer::error(500, "InternalError", "Internal error occurred"),
        Fault::OutOfCapacityOnStart => Answer::error(500, "InternalError", "Out of host capacity."),
        Fault::Unauthorized => Answer::error(
            401,
            "NotAuthenticated",
            "The required information to complete authentication was not provided (injected)",
        ),
        Fault::Status(code) => Answer::error(*code, "InjectedFault", "injected status"),
        Fault::Hang => Answer::error(500, "InternalError", "unreachable"),
    }
}

fn parse_fault(body: &[u8]) -> Result<(Fault, u32), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let count = v["count"].as_u64().unwrap_or(1).clamp(1, u32::MAX as u64) as u32;
    let fault = match v["fault"].as_str().unwrap_or_default() {
        "409" | "incorrect_state" => Fault::Status409,
        "throttle" | "429" => Fault::Throttle {
            retry_after: v["retry_after"].as_u64(),
        },
        "500" => Fault::Status500,
        "capacity" | "out_of_capacity_on_start" => Fault::OutOfCapacityOnStart,
        "hang" => Fault::Hang,
        "unauthorized" | "401" => Fault::Unauthorized,
        "status" => Fault::Status(
            v["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .ok_or("status= needed")?,
        ),
        other => return Err(format!("unknown fault {other:?}")),
    };
    Ok((fault, count))
}

/// First value of `name` in a query string (no percent-decoding: OCI values here are plain).
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn json_response(
    status: u16,
    body: String,
    opc_request_id: Option<&str>,
    retry_after: Option<u64>,
) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut response = Response::from_string(body).with_status_code(status);
    let mut add = |name: &str, value: &str| {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    };
    add("Content-Type", "application/json");
    if let Some(id) = opc_request_id {
        add("opc-request-id", id);
    }
    if let Some(s) = retry_after {
        add("Retry-After", &s.to_string());
    }
    response
}
