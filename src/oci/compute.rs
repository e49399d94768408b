//! The compute API client: GetInstance and InstanceAction, with retries.
//!
//! One `ComputeClient` per agent. Every call signs its request, picks the
//! endpoint for the instance's region, and retries 429 (honouring
//! `Retry-After`), 5xx other than "out of host capacity", timeouts and
//! connection failures with capped exponential backoff and jitter, bounded by
//! a retry budget. A POST keeps its `opc-retry-token` across retries, so OCI
//! performs the action at most once.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::error::{OciError, OciErrorKind, Operation};
use super::region::EndpointResolver;
use super::signer::RequestSigner;
use crate::backoff::Backoff;
use crate::http::{self, Timeouts, TrustRoots};

/// Connection establishment limit for OCI calls.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit for one whole OCI call (one attempt), body included.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Core Services API version prefix.
const API_PREFIX: &str = "/20160918";

/// The power actions of `InstanceAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceAction {
    /// Hard power off.
    Stop,
    /// Power on.
    Start,
    /// ACPI shutdown, then power off after a timeout.
    SoftStop,
    /// Hard power cycle.
    Reset,
    /// ACPI reboot, then hard reset after a timeout.
    SoftReset,
}

impl InstanceAction {
    /// The `action=` query value.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceAction::Stop => "STOP",
            InstanceAction::Start => "START",
            InstanceAction::SoftStop => "SOFTSTOP",
            InstanceAction::Reset => "RESET",
            InstanceAction::SoftReset => "SOFTRESET",
        }
    }
}

impl fmt::Display for InstanceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instance's `lifecycleState`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LifecycleState {
    /// Being moved to another host.
    Moving,
    /// Being created.
    Provisioning,
    /// Up.
    Running,
    /// Powering on.
    Starting,
    /// Powering off.
    Stopping,
    /// Off.
    Stopped,
    /// A custom image is being taken.
    CreatingImage,
    /// Being deleted.
    Terminating,
    /// Deleted.
    Terminated,
    /// A state this program does not know (OCI may add states).
    Unknown(String),
}

impl LifecycleState {
    /// Parses OCI's spelling; unknown values are kept, not rejected.
    pub fn parse(s: &str) -> LifecycleState {
        match s {
            "MOVING" => LifecycleState::Moving,
            "PROVISIONING" => LifecycleState::Provisioning,
            "RUNNING" => LifecycleState::Running,
            "STARTING" => LifecycleState::Starting,
            "STOPPING" => LifecycleState::Stopping,
            "STOPPED" => LifecycleState::Stopped,
            "CREATING_IMAGE" => LifecycleState::CreatingImage,
            "TERMINATING" => LifecycleState::Terminating,
            "TERMINATED" => LifecycleState::Terminated,
            other => LifecycleState::Unknown(other.to_string()),
        }
    }

    /// OCI's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            LifecycleState::Moving => "MOVING",
            LifecycleState::Provisioning => "PROVISIONING",
            LifecycleState::Running => "RUNNING",
            LifecycleState::Starting => "STARTING",
            LifecycleState::Stopping => "STOPPING",
            LifecycleState::Stopped => "STOPPED",
            LifecycleState::CreatingImage => "CREATING_IMAGE",
            LifecycleState::Terminating => "TERMINATING",
            LifecycleState::Terminated => "TERMINATED",
            LifecycleState::Unknown(s) => s,
        }
    }
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parts of an OCI instance the watchdog needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Instance OCID.
    pub id: String,
    /// Current lifecycle state.
    pub lifecycle_state: LifecycleState,
    /// Display name, when OCI sent one.
    pub display_name: Option<String>,
    /// Region identifier as OCI reports it, when sent.
    pub region: Option<String>,
    /// `opc-request-id` of the response this came from.
    pub opc_request_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstanceBody {
    id: String,
    lifecycle_state: String,
    display_name: Option<String>,
    region: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// How persistently one call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total HTTP attempts per call, first one included (at least 1).
    pub max_attempts: u32,
    /// First backoff delay.
    pub initial_backoff: Duration,
    /// Backoff cap.
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured; longer values are capped to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Compute API client for one signing identity.
#[derive(Clone)]
pub struct ComputeClient {
    signer: RequestSigner,
    endpoints: EndpointResolver,
    agent: ureq::Agent,
    retry: RetryPolicy,
    sleeper: Arc<dyn Fn(Duration) + Send + Sync>,
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
}

impl fmt::Debug for ComputeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComputeClient")
            .field("signer", &self.signer)
            .field("endpoints", &self.endpoints)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// What one attempt produced, before retry decisions.
enum Attempt {
    Done(Result<Instance, OciError>),
    Retry {
        kind: OciErrorKind,
        opc_request_id: Option<String>,
        retry_after: Option<Duration>,
    },
}

impl ComputeClient {
    /// A client with the default timeouts ([`CONNECT_TIMEOUT`],
    /// [`TOTAL_TIMEOUT`]), bundled TLS roots and the default retry policy.
    pub fn new(signer: RequestSigner, endpoints: EndpointResolver) -> Self {
        ComputeClient {
            signer,
            endpoints,
            agent: http::agent(
                Timeouts::new(CONNECT_TIMEOUT, TOTAL_TIMEOUT),
                &TrustRoots::Bundled,
            ),
            retry: RetryPolicy::default(),
            sleeper: Arc::new(std::thread::sleep),
            clock: Arc::new(SystemTime::now),
        }
    }

    /// Replaces the per-attempt timeouts (tests use short ones).
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.agent = http::agent(timeouts, &TrustRoots::Bundled);
        self
    }

    /// Replaces the retry policy.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces how the client waits between attempts (tests record the
    /// delays instead of sleeping).
    pub fn with_sleeper(mut self, sleeper: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        self.sleeper = Arc::new(sleeper);
        self
    }

    /// Replaces the wall clock used for the `date` header.
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The endpoint resolver (for `check` output: which region a node is in).
    pub fn endpoints(&self) -> &EndpointResolver {
        &self.endpoints
    }

    /// `GetInstance`: the instance's current state.
    pub fn get_instance(
        &self,
        instance_id: &str,
        region_hint: Option<&str>,
    ) -> Result<Instance, OciError> {
        self.call(Operation::GetInstance, instance_id, region_hint, None)
    }

    /// `InstanceAction`: asks OCI to STOP/START/... the instance. Every retry
    /// of this call sends the same `retry_token`; reuse the token when the
    /// caller itself repeats the same logical action.
    pub fn instance_action(
        &self,
        instance_id: &str,
        region_hint: Option<&str>,
        action: InstanceAction,
        retry_token: &str,
    ) -> Result<Instance, OciError> {
        self.call(
            Operation::InstanceAction(action),
            instance_id,
            region_hint,
            Some(retry_token),
        )
    }

    fn call(
        &self,
        operation: Operation,
        instance_id: &str,
        region_hint: Option<&str>,
        retry_token: Option<&str>,
    ) -> Result<Instance, OciError> {
        let fail = |kind: OciErrorKind, opc_request_id: Option<String>, attempts: u32| OciError {
            operation,
            instance: instance_id.to_string(),
            opc_request_id,
            attempts,
            kind,
        };
        if instance_id.is_empty()
            || !instance_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(fail(
                OciErrorKind::Endpoint {
                    detail: "not a valid instance OCID".into(),
                },
                None,
                0,
            ));
        }
        let base = self
            .endpoints
            .base_url(instance_id, region_hint)
            .map_err(|e| {
                fail(
                    OciErrorKind::Endpoint {
                        detail: e.to_string(),
                    },
                    None,
                    0,
                )
            })?;
        let url = match operation {
            Operation::GetInstance => format!("{base}{API_PREFIX}/instances/{instance_id}"),
            Operation::InstanceAction(a) => {
                format!("{base}{API_PREFIX}/instances/{instance_id}?action={a}")
            }
        };
        let max_attempts = self.retry.max_attempts.max(1);
        let mut backoff = Backoff::new(self.retry.initial_backoff, self.retry.max_backoff);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(operation, instance_id, &url, retry_token) {
                Attempt::Done(Ok(instance)) => return Ok(instance),
                Attempt::Done(Err(mut e)) => {
                    e.attempts = attempt;
                    return Err(e);
                }
                Attempt::Retry {
                    kind,
                    opc_request_id,
                    retry_after,
                } => {
                    if attempt >= max_attempts {
                        return Err(fail(kind, opc_request_id, attempt));
                    }
                    let delay = match retry_after {
                        Some(d) => d.min(self.retry.max_retry_after),
                        None => backoff.next_delay(),
                    };
                    let reason = match &kind {
                        OciErrorKind::Throttled => "throttled (429)".to_string(),
                        OciErrorKind::Transient { detail } => detail.clone(),
                        other => format!("{other:?}"),
                    };
                    tracing::warn!(
                        operation = %operation,
                        instance = instance_id,
                        opc_request_id = opc_request_id.as_deref().unwrap_or("-"),
                        attempt,
                        max_attempts,
                        delay_ms = delay.as_millis() as u64,
                        "OCI call failed ({reason}); retrying"
                    );
                    (self.sleeper)(delay);
                }
            }
        }
    }

    fn attempt(
        &self,
        operation: Operation,
        instance_id: &str,
        url: &str,
        retry_token: Option<&str>,
    ) -> Attempt {
        let done_err = |kind: OciErrorKind, opc_request_id: Option<String>| {
            Attempt::Done(Err(OciError {
                operation,
                instance: instance_id.to_string(),
                opc_request_id,
                attempts: 0,
                kind,
            }))
        };
        let date = httpdate::fmt_http_date((self.clock)());
        let is_post = matches!(operation, Operation::InstanceAction(_));
        let method = if is_post { "POST" } else { "GET" };
        let body: &[u8] = b"";
        let signed = match self
            .signer
            .sign(method, url, &date, body, "application/json")
        {
            Ok(s) => s,
            Err(e) => {
                return done_err(
                    OciErrorKind::Endpoint {
                        detail: e.to_string(),
                    },
                    None,
                );
            }
        };
        let mut builder = if is_post {
            ureq::http::Request::post(url)
        } else {
            ureq::http::Request::get(url)
        };
        for (name, value) in &signed.headers {
            if *name != "content-length" {
                builder = builder.header(*name, value.as_str());
            }
        }
        builder = builder
            .header("authorization", signed.authorization.as_str())
            .header("accept", "application/json");
        if let Some(token) = retry_token {
            builder = builder.header("opc-retry-token", token);
        }
        let request = match builder.body(body.to_vec()) {
            Ok(r) => r,
            Err(e) => {
                return done_err(
                    OciErrorKind::Endpoint {
                        detail: format!("cannot build request: {e}"),
                    },
                    None,
                );
            }
        };
        let mut response = match self.agent.run(request) {
            Ok(r) => r,
            Err(e) => {
                let detail = if http::is_timeout(&e) {
                    "timed out".to_string()
                } else {
                    format!("connection failed: {e}")
                };
                tracing::debug!(operation = %operation, instance = instance_id, %detail, "OCI request failed");
                return Attempt::Retry {
                    kind: OciErrorKind::Transient { detail },
                    opc_request_id: None,
                    retry_after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let opc_request_id = header(&response, "opc-request-id");
        let retry_after = header(&response, "retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        tracing::debug!(
            operation = %operation,
            instance = instance_id,
            status,
            opc_request_id = opc_request_id.as_deref().unwrap_or("-"),
            "OCI {method} {url}"
        );
        let text = match http::read_body(&mut response) {
            Ok(t) => t,
            Err(e) => {
                let detail = if http::is_timeout(&e) {
                    "timed out reading the response".to_string()
                } else {
                    format!("reading the response failed: {e}")
                };
                return Attempt::Retry {
                    kind: OciErrorKind::Transient { detail },
                    opc_request_id,
                    retry_after: None,
                };
            }
        };
        match decode_response(status, &text, opc_request_id.clone(), retry_after) {
            Decoded::Instance(instance) => Attempt::Done(Ok(instance)),
            Decoded::Failed(kind) => done_err(kind, opc_request_id),
            Decoded::Retry { kind, retry_after } => Attempt::Retry {
                kind,
                opc_request_id,
                retry_after,
            },
        }
    }
}

/// What one OCI answer means, decided from its status and body alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A 2xx answer with an instance body.
    Instance(Instance),
    /// A failure that retrying the same call will not fix.
    Failed(OciErrorKind),
    /// A failure worth retrying (429, 5xx other than out of capacity).
    Retry {
        /// The classification.
        kind: OciErrorKind,
        /// `Retry-After`, when the answer had one.
        retry_after: Option<Duration>,
    },
}

/// Decodes an answer's status and body the way [`ComputeClient`] does.
/// Public so fuzz targets and property tests reach the client's own decoder.
pub fn decode_response(
    status: u16,
    text: &str,
    opc_request_id: Option<String>,
    retry_after: Option<Duration>,
) -> Decoded {
    if (200..300).contains(&status) {
        return match serde_json::from_str::<InstanceBody>(text) {
            Ok(b) => Decoded::Instance(Instance {
                id: b.id,
                lifecycle_state: LifecycleState::parse(&b.lifecycle_state),
                display_name: b.display_name,
                region: b.region,
                opc_request_id,
            }),
            Err(e) => Decoded::Failed(OciErrorKind::BadResponse {
                detail: format!("HTTP {status}: {e}"),
            }),
        };
    }
    let mut err: ErrorBody = serde_json::from_str(text).unwrap_or_default();
    // OCI's text ends up in our errors and log lines: keep it on one line.
    err.code = single_line(&err.code);
    err.message = single_line(&err.message);
    match status {
        401 => Decoded::Failed(OciErrorKind::NotAuthenticated {
            message: err.message,
        }),
        404 => Decoded::Failed(OciErrorKind::NotAuthorizedOrNotFound {
            message: err.message,
        }),
        409 => Decoded::Failed(OciErrorKind::IncorrectState {
            message: err.message,
        }),
        429 => Decoded::Retry {
            kind: OciErrorKind::Throttled,
            retry_after,
        },
        500..=599 if is_out_of_capacity(&err) => Decoded::Failed(OciErrorKind::OutOfCapacity {
            message: err.message,
        }),
        500..=599 => {
            let detail = if err.code.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status} {}: {}", err.code, err.message)
            };
            Decoded::Retry {
                kind: OciErrorKind::Transient { detail },
                retry_after,
            }
        }
        _ => Decoded::Failed(OciErrorKind::Rejected {
            status,
            code: err.code,
            message: err.message,
        }),
    }
}

/// `s` with control characters (newlines included) replaced by spaces.
fn single_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// OCI reports a lack of capacity as HTTP 500 `InternalError` whose
/// documented message is "Out of host capacity." — there is no dedicated
/// error code, so this one API field is the only signal. (This inspects the
/// provider's structured `message` field, never our own error strings.)
fn is_out_of_capacity(err: &ErrorBody) -> bool {
    let code = err.code.to_ascii_lowercase();
    code == "outofhostcapacity"
        || code == "outofcapacity"
        || err
            .message
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("out of host capacity")
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_states_round_trip_and_keep_unknown_values() {
        for s in [
            "MOVING",
            "PROVISIONING",
            "RUNNING",
            "STARTING",
            "STOPPING",
            "STOPPED",
            "CREATING_IMAGE",
            "TERMINATING",
            "TERMINATED",
        ] {
            let parsed = LifecycleState::parse(s);
            assert!(!matches!(parsed, LifecycleState::Unknown(_)), "{s}");
            assert_eq!(parsed.as_str(), s);
        }
        assert_eq!(
            LifecycleState::parse("HIBERNATING"),
            LifecycleState::Unknown("HIBERNATING".into())
        );
    }

    #[test]
    fn capacity_is_recognised_from_oci_error_body() {
        let cap = ErrorBody {
            code: "InternalError".into(),
            message: "Out of host capacity.".into(),
        };
        assert!(is_out_of_capacity(&cap));
        let other = ErrorBody {
            code: "InternalError".into(),
            message: "Internal error occurred".into(),
        };
        assert!(!is_out_of_capacity(&other));
    }
}
