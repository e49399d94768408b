//! The blocking Consul client: one method per API call the daemon makes.

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use super::error::ConsulError;
use super::settings::ConsulSettings;
use crate::http::{self, Timeouts};
use crate::secret::Secret;

/// Default timeouts for ordinary (non-blocking) calls: well under the
/// monitor's 10 s renew interval so one hung call cannot cost a renewal.
pub const DEFAULT_TIMEOUTS: Timeouts =
    Timeouts::new(Duration::from_secs(3), Duration::from_secs(5));

/// What `Behavior` a session applies to its locks when it is invalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionBehavior {
    /// Release the lock, keep the key.
    Release,
    /// Delete the key: the monitor's heartbeat disappears with its session.
    Delete,
}

impl SessionBehavior {
    fn as_str(self) -> &'static str {
        match self {
            SessionBehavior::Release => "release",
            SessionBehavior::Delete => "delete",
        }
    }
}

/// Parameters of `PUT /v1/session/create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    /// Human-readable name shown by `consul lock`/UI.
    pub name: String,
    /// Session TTL (Consul accepts 10s..24h; it invalidates after up to 2x).
    pub ttl: Duration,
    /// What happens to held keys on invalidation.
    pub behavior: SessionBehavior,
    /// Lock delay; sent explicitly because Consul's default is 15 s.
    pub lock_delay: Duration,
}

/// One KV entry as Consul returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPair {
    /// Full key.
    pub key: String,
    /// Decoded value (`None` for a key stored without a value).
    pub value: Option<Vec<u8>>,
    /// Session holding the lock, if locked.
    pub session: Option<String>,
    /// Raft index of the last modification.
    pub modify_index: u64,
    /// Number of times the key's lock has been acquired.
    pub lock_index: u64,
}

/// Blocking-query parameters: return when the result changes after `index`,
/// or after `wait` at the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockingQuery {
    /// The `X-Consul-Index` of the previous answer (0 = answer immediately).
    pub index: u64,
    /// Longest time Consul may hold the request.
    pub wait: Duration,
}

/// A Consul HTTP API client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct ConsulClient {
    base_url: String,
    token: Option<Secret>,
    agent: ureq::Agent,
    timeouts: Timeouts,
}

#[derive(Deserialize)]
struct RawKv {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value")]
    value: Option<String>,
    #[serde(rename = "Session")]
    session: Option<String>,
    #[serde(rename = "ModifyIndex", default)]
    modify_index: u64,
    #[serde(rename = "LockIndex", default)]
    lock_index: u64,
}

#[derive(Deserialize)]
struct SessionCreated {
    #[serde(rename = "ID")]
    id: String,
}

/// A successful answer: status, body, `X-Consul-Index`.
struct Answer {
    status: u16,
    body: String,
    index: Option<u64>,
}

impl ConsulClient {
    /// A client with [`DEFAULT_TIMEOUTS`].
    pub fn new(settings: &ConsulSettings) -> Self {
        Self::with_timeouts(settings, DEFAULT_TIMEOUTS)
    }

    /// A client whose ordinary calls use `timeouts` (blocking queries extend
    /// the total by their wait time).
    pub fn with_timeouts(settings: &ConsulSettings, timeouts: Timeouts) -> Self {
        ConsulClient {
            base_url: settings.base_url.clone(),
            token: settings.token.clone(),
            agent: http::agent(timeouts, &settings.roots),
            timeouts,
        }
    }

    /// The base URL this client talks to (for logs; holds no secret).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET /v1/status/leader`: `Some("ip:port")`, or `None` without a leader.
    pub fn leader(&self) -> Result<Option<String>, ConsulError> {
        const ACTION: &str = "read cluster leader";
        let a = self.request("GET", "/v1/status/leader", None, None, ACTION)?;
        expect_ok(&a, ACTION)?;
        let leader: String = parse_json(&a.body, ACTION)?;
        Ok(Some(leader).filter(|l| !l.is_empty()))
    }

    /// `PUT /v1/session/create`; returns the new session ID.
    pub fn create_session(&self, spec: &SessionSpec) -> Result<String, ConsulError> {
        const ACTION: &str = "create session";
        let body = serde_json::json!({
            "Name": spec.name,
            "TTL": go_duration(spec.ttl),
            "Behavior": spec.behavior.as_str(),
            "LockDelay": go_duration(spec.lock_delay),
        })
        .to_string();
        let a = self.request(
            "PUT",
            "/v1/session/create",
            Some(body.as_bytes()),
            None,
            ACTION,
        )?;
        expect_ok(&a, ACTION)?;
        let created: SessionCreated = parse_json(&a.body, ACTION)?;
        if created.id.is_empty() {
            return Err(bad(ACTION, "empty session ID"));
        }
        Ok(created.id)
    }

    /// `PUT /v1/session/renew/{id}`; [`ConsulError::NotFound`] when the
    /// session has been invalidated and a new one is needed.
    pub fn renew_session(&self, id: &str) -> Result<(), ConsulError> {
        const ACTION: &str = "renew session";
        let path = format!("/v1/session/renew/{}", encode_segment(id));
        let a = self.request("PUT", &path, None, None, ACTION)?;
        if a.status == 404 {
            return Err(ConsulError::NotFound { action: ACTION });
        }
        expect_ok(&a, ACTION)?;
        let entries: Vec<serde_json::Value> = parse_json(&a.body, ACTION)?;
        if entries.is_empty() {
            // Older Consul versions answer 200 with an empty list for a
            // session that no longer exists.
            return Err(ConsulError::NotFound { action: ACTION });
        }
        Ok(())
    }

    /// `PUT /v1/session/destroy/{id}`: invalidates the session now, which
    /// applies its behaviour (the heartbeat key is deleted at once).
    pub fn destroy_session(&self, id: &str) -> Result<(), ConsulError> {
        const ACTION: &str = "destroy session";
        let path = format!("/v1/session/destroy/{}", encode_segment(id));
        let a = self.request("PUT", &path, None, None, ACTION)?;
        expect_ok(&a, ACTION)
    }

    /// `PUT /v1/kv/{key}?acquire={session}`: `true` when the lock is ours
    /// (re-acquiring a key we hold updates its value), `false` when another
    /// session holds it or it is inside a lock delay.
    pub fn acquire(&self, key: &str, session: &str, value: &[u8]) -> Result<bool, ConsulError> {
        const ACTION: &str = "acquire key";
        let path = format!("/v1/kv/{}", encode_key(key));
        let query = format!("acquire={}", encode_segment(session));
        let a = self.request("PUT", &path, Some(value), Some(&query), ACTION)?;
        expect_ok(&a, ACTION)?;
        parse_json(&a.body, ACTION)
    }

    /// `PUT /v1/kv/{key}?release={session}`.
    pub fn release(&self, key: &str, session: &str) -> Result<bool, ConsulError> {
        const ACTION: &str = "release key";
        let path = format!("/v1/kv/{}", encode_key(key));
        let query = format!("release={}", encode_segment(session));
        let a = self.request("PUT", &path, None, Some(&query), ACTION)?;
        expect_ok(&a, ACTION)?;
        parse_json(&a.body, ACTION)
    }

    /// `PUT /v1/kv/{key}` without a lock.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), ConsulError> {
        const ACTION: &str = "write key";
        let path = format!("/v1/kv/{}", encode_key(key));
        let a = self.request("PUT", &path, Some(value), None, ACTION)?;
        expect_ok(&a, ACTION)
    }

    /// `DELETE /v1/kv/{key}`.
    pub fn delete(&self, key: &str) -> Result<(), ConsulError> {
        const ACTION: &str = "delete key";
        let path = format!("/v1/kv/{}", encode_key(key));
        let a = self.request("DELETE", &path, None, None, ACTION)?;
        expect_ok(&a, ACTION)
    }

    /// `GET /v1/kv/{key}`: the entry, or `None` when the key does not exist.
    pub fn get(&self, key: &str) -> Result<Option<KvPair>, ConsulError> {
        const ACTION: &str = "read key";
        let path = format!("/v1/kv/{}", encode_key(key));
        let a = self.request("GET", &path, None, None, ACTION)?;
        if a.status == 404 {
            return Ok(None);
        }
        expect_ok(&a, ACTION)?;
        Ok(decode_pairs(&a.body, ACTION)?
            .into_iter()
            .find(|p| p.key == key))
    }

    /// `GET /v1/kv/{prefix}?recurse`, optionally as a blocking query: every
    /// entry under `prefix` plus the `X-Consul-Index` to block on next time.
    /// An empty prefix listing (404) is `Ok` with no entries: Consul has
    /// positively answered that nothing is there.
    pub fn list(
        &self,
        prefix: &str,
        blocking: Option<BlockingQuery>,
    ) -> Result<(Vec<KvPair>, u64), ConsulError> {
        const ACTION: &str = "list keys";
        let path = format!("/v1/kv/{}", encode_key(prefix));
        let mut query = String::from("recurse");
        let mut extra = Duration::ZERO;
        if let Some(b) = blocking {
            query.push_str(&format!("&index={}&wait={}ms", b.index, b.wait.as_millis()));
            // Consul adds up to wait/16 of jitter; allow that plus our usual budget.
            extra = b.wait + b.wait / 16;
        }
        let a = self.request_with_extra_time("GET", &path, None, Some(&query), ACTION, extra)?;
        let index = a.index.unwrap_or(0);
        if a.status == 404 {
            return Ok((Vec::new(), index));
        }
        expect_ok(&a, ACTION)?;
        Ok((decode_pairs(&a.body, ACTION)?, index))
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        query: Option<&str>,
        action: &'static str,
    ) -> Result<Answer, ConsulError> {
        self.request_with_extra_time(method, path, body, query, action, Duration::ZERO)
    }

    /// One HTTP call inside a `consul <action>` span (method, path, status;
    /// transport failures and error statuses other than 404 mark it ERROR).
    fn request_with_extra_time(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        query: Option<&str>,
        action: &'static str,
        extra: Duration,
    ) -> Result<Answer, ConsulError> {
        let span = tracing::info_span!(
            "consul",
            otel.name = format!("consul {action}").as_str(),
            method,
            path,
            status = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        let _entered = span.enter();
        let result = self.call(method, path, body, query, action, extra);
        let failure = match &result {
            Ok(a) => {
                span.record("status", a.status);
                (a.status >= 400 && a.status != 404).then(|| format!("HTTP {}", a.status))
            }
            Err(e) => Some(e.to_string()),
        };
        if let Some(message) = failure {
            crate::telemetry::record_error(&span, &message);
        }
        result
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        query: Option<&str>,
        action: &'static str,
        extra: Duration,
    ) -> Result<Answer, ConsulError> {
        let url = match query {
            Some(q) => format!("{}{path}?{q}", self.base_url),
            None => format!("{}{path}", self.base_url),
        };
        let token = self
            .token
            .as_ref()
            .map(|t| t.expose().to_string())
            .unwrap_or_default();
        let total = Some(self.timeouts.total + extra);
        let result = match method {
            "GET" => with_token(self.agent.get(&url), &token)
                .config()
                .timeout_global(total)
                .build()
                .call(),
            "DELETE" => with_token(self.agent.delete(&url), &token)
                .config()
                .timeout_global(total)
                .build()
                .call(),
            _ => with_token(self.agent.put(&url), &token)
                .config()
                .timeout_global(total)
                .build()
                .send(body.unwrap_or_default()),
        };
        let mut response = result.map_err(|e| transport_error(action, &e))?;
        let status = response.status().as_u16();
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = http::read_body(&mut response).map_err(|e| transport_error(action, &e))?;
        Ok(Answer {
            status,
            body,
            index,
        })
    }
}

fn with_token<B>(req: ureq::RequestBuilder<B>, token: &str) -> ureq::RequestBuilder<B> {
    if token.is_empty() {
        req
    } else {
        req.header("X-Consul-Token", token)
    }
}

fn transport_error(action: &'static str, e: &ureq::Error) -> ConsulError {
    if http::is_timeout(e) {
        ConsulError::Timeout { action }
    } else {
        ConsulError::Unreachable {
            action,
            detail: e.to_string(),
        }
    }
}

/// Maps a non-2xx answer to its error. Consul signals a leaderless cluster
/// only through the body of a 500 (`No cluster leader`, possibly prefixed by
/// `rpc error making call: `); that exact protocol text is matched here.
fn expect_ok(a: &Answer, action: &'static str) -> Result<(), ConsulError> {
    if (200..300).contains(&a.status) {
        return Ok(());
    }
    let detail = snippet(&a.body);
    match a.status {
        403 => Err(ConsulError::AclDenied { action, detail }),
        404 => Err(ConsulError::NotFound { action }),
        500 if detail.ends_with("No cluster leader") => Err(ConsulError::NoLeader { action }),
        status => Err(ConsulError::Status {
            action,
            status,
            detail,
        }),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(
    body: &str,
    action: &'static str,
) -> Result<T, ConsulError> {
    serde_json::from_str(body).map_err(|e| bad(action, &format!("{e} in {:?}", snippet(body))))
}

fn decode_pairs(body: &str, action: &'static str) -> Result<Vec<KvPair>, ConsulError> {
    let raw: Vec<RawKv> = parse_json(body, action)?;
    raw.into_iter()
        .map(|r| {
            let value = match r.value {
                Some(v) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(v.as_bytes())
                        .map_err(|e| {
                            bad(
                                action,
                                &format!("value of {} is not base64: {e}", r.key.escape_debug()),
                            )
                        })?,
                ),
                None => None,
            };
            Ok(KvPair {
                key: r.key,
                value,
                session: r.session.filter(|s| !s.is_empty()),
                modify_index: r.modify_index,
                lock_index: r.lock_index,
            })
        })
        .collect()
}

/// Decodes a `GET /v1/kv/...` body the way [`ConsulClient::get`] and
/// [`ConsulClient::list`] do. Public so fuzz targets and property tests reach
/// the client's own decoder.
pub fn decode_kv_listing(body: &str) -> Result<Vec<KvPair>, ConsulError> {
    decode_pairs(body, "list keys")
}

fn bad(action: &'static str, detail: &str) -> ConsulError {
    ConsulError::BadResponse {
        action,
        detail: detail.to_string(),
    }
}

/// First line of a response body, bounded, for error messages.
fn snippet(body: &str) -> String {
    let line = body.trim().lines().next().unwrap_or("");
    let mut s: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        s.push('…');
    }
    s
}

/// Seconds (`30s`, `0s`) when whole, milliseconds otherwise: the forms Consul
/// parses and echoes back the way operators expect to read them.
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Percent-encodes a KV key, keeping `/` as the path separator.
fn encode_key(key: &str) -> String {
    key.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// Percent-encodes one path segment or query value (RFC 3986 unreserved kept).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.into(),
            index: None,
        }
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        assert!(expect_ok(&answer(200, "true"), "x").is_ok());
        assert!(matches!(
            expect_ok(&answer(403, "Permission denied"), "x"),
            Err(ConsulError::AclDenied { .. })
        ));
        assert!(matches!(
            expect_ok(&answer(500, "No cluster leader"), "x"),
            Err(ConsulError::NoLeader { .. })
        ));
        assert!(matches!(
            expect_ok(
                &answer(500, "rpc error making call: No cluster leader\n"),
                "x"
            ),
            Err(ConsulError::NoLeader { .. })
        ));
        let e = expect_ok(&answer(500, "invalid session \"abc\""), "x").unwrap_err();
        assert!(matches!(e, ConsulError::Status { status: 500, .. }));
        assert!(e.is_retryable());
        assert!(
            !ConsulError::AclDenied {
                action: "x",
                detail: String::new()
            }
            .is_retryable()
        );
    }

    #[test]
    fn decodes_kv_entries() {
        let body = r#"[{"Key":"oracle-watchdog/nodes/a","Value":"aGk=","Session":"s1","ModifyIndex":7,"LockIndex":1,"Flags":0,"CreateIndex":5},
                       {"Key":"oracle-watchdog/nodes/b","Value":null,"ModifyIndex":8}]"#;
        let pairs = decode_pairs(body, "x").unwrap();
        assert_eq!(pairs[0].value.as_deref(), Some(&b"hi"[..]));
        assert_eq!(pairs[0].session.as_deref(), Some("s1"));
        assert_eq!(pairs[1].value, None);
        assert_eq!(pairs[1].session, None);
        assert!(matches!(
            decode_pairs("{\"oops\":1}", "x"),
            Err(ConsulError::BadResponse { .. })
        ));
        assert!(matches!(
            decode_pairs(r#"[{"Key":"k","Value":"%%%"}]"#, "x"),
            Err(ConsulError::BadResponse { .. })
        ));
    }

    #[test]
    fn keys_are_percent_encoded_per_segment() {
        assert_eq!(
            encode_key("oracle-watchdog/nodes/node-1.a"),
            "oracle-watchdog/nodes/node-1.a"
        );
        assert_eq!(encode_key("a b/c?d"), "a%20b/c%3Fd");
    }

    #[test]
    fn durations_use_consul_forms() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn snippet_is_bounded() {
        let long = "x".repeat(1000);
        assert!(snippet(&long).chars().count() <= 201);
    }
}
