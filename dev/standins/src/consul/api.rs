//! Consul HTTP API v1 endpoints the stand-in serves: status, session, kv (with blocking queries).

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde_json::Value;

use super::SessionBehavior;
use super::duration::{format_go_duration, parse_go_duration};
use super::http::{Request, Response};
use super::server::Core;
use super::store::{Entry, Session, SessionSpec, Store};

/// Blocking-query wait when the client sends none (Consul's default).
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Longest blocking-query wait Consul honours.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// Consul's KV value size limit.
const MAX_VALUE_BYTES: usize = 512 * 1024;
/// Session TTL bounds Consul enforces.
const TTL_MIN: Duration = Duration::from_secs(10);
const TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// Consul reads numeric or tiny lock-delays below this many nanoseconds as seconds.
const LOCK_DELAY_SECONDS_THRESHOLD: u128 = 1000;
/// The only health check a stand-in node has.
const SERF_CHECK: &str = "serfHealth";

/// Adds the headers Consul puts on API responses.
pub(crate) fn with_meta(response: Response, index: u64, known_leader: bool) -> Response {
    response
        .with_header("X-Consul-Index", index.max(1).to_string())
        .with_header("X-Consul-KnownLeader", known_leader.to_string())
        .with_header("X-Consul-LastContact", "0")
}

/// Serves one `/v1/...` request (faults and ACL were handled by the caller).
pub(crate) fn handle(core: &Core, request: &Request, known_leader: bool) -> Response {
    let path = request.path.as_str();
    let outcome = if path == "/v1/status/leader" {
        only(request, "GET").map(|()| {
            let leader = if known_leader {
                core.options.leader_addr.as_str()
            } else {
                ""
            };
            (Response::json(200, leader), None)
        })
    } else if path == "/v1/status/peers" {
        only(request, "GET").map(|()| {
            let peers: Vec<&str> = if known_leader {
                vec![core.options.leader_addr.as_str()]
            } else {
                vec![]
            };
            (Response::json(200, &peers), None)
        })
    } else if let Some(rest) = path.strip_prefix("/v1/session/") {
        session(core, request, rest)
    } else if let Some(key) = path.strip_prefix("/v1/kv/") {
        kv(core, request, key)
    } else if path == "/v1/kv" {
        kv(core, request, "")
    } else {
        Err(Response::text(404, "404 page not found"))
    };
    let mut response = match outcome {
        Ok((response, Some(index))) => with_meta(response, index, known_leader),
        Ok((response, None)) | Err(response) => {
            with_meta(response, core.inner().store.index(), known_leader)
        }
    };
    if core.options.no_blocking {
        // A server without blocking queries: no index to block on.
        response
            .headers
            .retain(|(name, _)| name != "X-Consul-Index");
    }
    response
}

/// A response plus the index to report (None: the current global index).
type Outcome = Result<(Response, Option<u64>), Response>;

fn only(request: &Request, method: &str) -> Result<(), Response> {
    if request.method == method {
        Ok(())
    } else {
        Err(Response::text(
            405,
            format!("method {} not allowed", request.method),
        ))
    }
}

/// Runs `query` as a Consul blocking query: with `?index=N` it waits until
/// the query's index exceeds N, `?wait` passes, or a wipe resets the store.
/// With `no_blocking` it answers at once whatever the client asked.
fn blocking<T>(
    core: &Core,
    request: &Request,
    query: impl Fn(&Store) -> (u64, T),
) -> Result<(u64, T), Response> {
    let min_index = match request.param("index") {
        _ if core.options.no_blocking => 0,
        None | Some("") => 0,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| Response::text(400, "Invalid index"))?,
    };
    let wait = match request.param("wait") {
        None | Some("") => DEFAULT_WAIT,
        Some(w) => match parse_go_duration(w) {
            Ok(d) if d.is_zero() => DEFAULT_WAIT,
            Ok(d) => d.min(MAX_WAIT),
            Err(_) => return Err(Response::text(400, "Invalid wait time")),
        },
    };
    let deadline = Instant::now() + wait;
    let mut inner = core.inner();
    let wipe_epoch = inner.wipe_epoch;
    let mut parked = false;
    let result = loop {
        let (index, value) = query(&inner.store);
        let now = Instant::now();
        if min_index == 0
            || index > min_index
            || inner.wipe_epoch != wipe_epoch
            || inner.shutting_down
            || now >= deadline
        {
            break (index, value);
        }
        if !parked {
            parked = true;
            inner.parked_queries += 1;
            core.changed.notify_all();
        }
        inner = core
            .changed
            .wait_timeout(inner, deadline - now)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    };
    if parked {
        inner.parked_queries -= 1;
        drop(inner);
        core.changed.notify_all();
    }
    Ok(result)
}

// ---- sessions ----

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SessionJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    node: &'a str,
    /// Nanoseconds, as Go's `time.Duration` marshals.
    lock_delay: u128,
    behavior: &'a str,
    #[serde(rename = "TTL")]
    ttl: &'a str,
    checks: &'a [String],
    node_checks: &'a [String],
    service_checks: Option<()>,
    create_index: u64,
    modify_index: u64,
}

fn session_json(s: &Session) -> SessionJson<'_> {
    SessionJson {
        id: &s.id,
        name: &s.name,
        node: &s.node,
        lock_delay: s.lock_delay.as_nanos(),
        behavior: s.behavior.as_str(),
        ttl: &s.ttl_text,
        checks: &s.checks,
        node_checks: &s.checks,
        service_checks: None,
        create_index: s.create_index,
        modify_index: s.modify_index,
    }
}

fn sessions_response(index: u64, sessions: &[Session]) -> (Response, Option<u64>) {
    let list: Vec<SessionJson<'_>> = sessions.iter().map(session_json).collect();
    (Response::json(200, &list), Some(index))
}

fn session(core: &Core, request: &Request, rest: &str) -> Outcome {
    let missing = || Response::text(400, "Missing session");
    if rest == "create" {
        only(request, "PUT")?;
        let spec = parse_session_create(core, &request.body)?;
        let id = core.mutate(|inner| inner.store.create_session(spec, Instant::now()));
        return Ok((Response::json(200, &serde_json::json!({ "ID": id })), None));
    }
    if let Some(id) = rest.strip_prefix("destroy/") {
        only(request, "PUT")?;
        if id.is_empty() {
            return Err(missing());
        }
        core.mutate(|inner| inner.store.invalidate_session(id, Instant::now()));
        return Ok((Response::json(200, &true), None));
    }
    if let Some(id) = rest.strip_prefix("renew/") {
        only(request, "PUT")?;
        if id.is_empty() {
            return Err(missing());
        }
        let renewed = core.mutate(|inner| inner.store.renew_session(id, Instant::now()));
        return match renewed {
            Some(s) => Ok(sessions_response(s.modify_index, std::slice::from_ref(&s))),
            None => Err(Response::text(404, format!("Session id '{id}' not found"))),
        };
    }
    if let Some(id) = rest.strip_prefix("info/") {
        only(request, "GET")?;
        if id.is_empty() {
            return Err(missing());
        }
        let (index, found) = blocking(core, request, |store| store.session_info(id))?;
        return Ok(sessions_response(index, found.as_slice()));
    }
    if rest == "list" {
        only(request, "GET")?;
        let (index, list) = blocking(core, request, |store| store.session_list(None))?;
        return Ok(sessions_response(index, &list));
    }
    if let Some(node) = rest.strip_prefix("node/") {
        only(request, "GET")?;
        if node.is_empty() {
            return Err(Response::text(400, "Missing node name"));
        }
        let (index, list) = blocking(core, request, |store| store.session_list(Some(node)))?;
        return Ok(sessions_response(index, &list));
    }
    Err(Response::text(404, "404 page not found"))
}

/// Reads a lock-delay the way Consul's `FixupLockDelay` does.
fn lock_delay_from(value: &Value) -> Result<Duration, String> {
    let nanos: u128 = match value {
        Value::String(s) => parse_go_duration(s)?.as_nanos(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f >= 0.0 && f.is_finite() => f as u128,
            _ => return Err(format!("invalid LockDelay {n}")),
        },
        Value::Null => return Ok(Duration::from_secs(15)),
        other => return Err(format!("invalid LockDelay {other}")),
    };
    let nanos = if nanos < LOCK_DELAY_SECONDS_THRESHOLD {
        nanos * 1_000_000_000
    } else {
        nanos
    };
    Ok(Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    ))
}

/// Validates a session-create body like Consul (field names case-insensitive).
fn parse_session_create(core: &Core, body: &[u8]) -> Result<SessionSpec, Response> {
    let decode_failed = |why: String| Response::text(400, format!("Request decode failed: {why}"));
    let mut name = String::new();
    let mut node = core.options.node_name.clone();
    let mut behavior_text = String::new();
    let mut ttl_text = String::new();
    let mut lock_delay = Duration::from_secs(15);
    let mut checks = vec![SERF_CHECK.to_string()];
    if !body.is_empty() {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| decode_failed(e.to_string()))?;
        let Value::Object(fields) = value else {
            return Err(decode_failed("body is not a JSON object".into()));
        };
        let string = |key: &str, v: &Value| match v {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Ok(String::new()),
            _ => Err(decode_failed(format!("'{key}' expected type 'string'"))),
        };
        let mut explicit_checks: Option<Vec<String>> = None;
        for (key, v) in &fields {
            match key.to_ascii_lowercase().as_str() {
                "name" => name = string(key, v)?,
                "node" => node = string(key, v)?,
                "behavior" => behavior_text = string(key, v)?,
                "ttl" => ttl_text = string(key, v)?,
                "lockdelay" => lock_delay = lock_delay_from(v).map_err(decode_failed)?,
                "checks" | "nodechecks" => {
                    let list = match v {
                        Value::Null => Vec::new(),
                        Value::Array(items) => items
                            .iter()
                            .map(|i| i.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| {
                                decode_failed(format!("'{key}' expected a list of strings"))
                            })?,
                        _ => {
                            return Err(decode_failed(format!(
                                "'{key}' expected a list of strings"
                            )));
                        }
                    };
                    explicit_checks.get_or_insert_with(Vec::new).extend(list);
                }
                _ => {}
            }
        }
        if let Some(list) = explicit_checks {
            checks = list;
            checks.dedup();
        }
    }
    if node.is_empty() {
        return Err(Response::text(500, "Must provide Node"));
    }
    if node != core.options.node_name {
        return Err(Response::text(500, "Missing node registration"));
    }
    if let Some(unknown) = checks.iter().find(|c| *c != SERF_CHECK) {
        return Err(Response::text(
            500,
            format!("Missing check '{unknown}' registration"),
        ));
    }
    let behavior = match behavior_text.as_str() {
        "" | "release" => SessionBehavior::Release,
        "delete" => SessionBehavior::Delete,
        other => {
            return Err(Response::text(
                400,
                format!("Invalid Behavior setting '{other}'"),
            ));
        }
    };
    let ttl = if ttl_text.is_empty() {
        None
    } else {
        let ttl = parse_go_duration(&ttl_text)
            .map_err(|e| Response::text(400, format!("Session TTL '{ttl_text}' invalid: {e}")))?;
        if ttl.is_zero() {
            None
        } else if ttl < TTL_MIN || ttl > TTL_MAX {
            return Err(Response::text(
                400,
                format!(
                    "Invalid Session TTL '{}', must be between [{}={}]",
                    ttl.as_nanos(),
                    format_go_duration(TTL_MIN),
                    format_go_duration(TTL_MAX)
                ),
            ));
        } else {
            Some(ttl)
        }
    };
    Ok(SessionSpec {
        name,
        node,
        behavior,
        ttl_text,
        ttl,
        lock_delay,
        checks,
    })
}

// ---- KV ----

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EntryJson<'a> {
    lock_index: u64,
    key: &'a str,
    flags: u64,
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a str>,
    create_index: u64,
    modify_index: u64,
}

fn entry_json(e: &Entry) -> EntryJson<'_> {
    EntryJson {
        lock_index: e.lock_index,
        key: &e.key,
        flags: e.flags,
        value: (!e.value.is_empty()).then(|| BASE64.encode(&e.value)),
        session: e.session.as_deref(),
        create_index: e.create_index,
        modify_index: e.modify_index,
    }
}

fn parse_u64(request: &Request, name: &str, error: &str) -> Result<Option<u64>, Response> {
    match request.param(name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| Response::text(400, error.to_string())),
    }
}

fn kv(core: &Core, request: &Request, key: &str) -> Outcome {
    let missing_key = || Response::text(400, "Missing key name");
    match request.method.as_str() {
        "GET" => {
            if request.has_param("keys") {
                let separator = request.param("separator");
                let (index, keys) = blocking(core, request, |store| store.kv_keys(key, separator))?;
                if keys.is_empty() {
                    return Ok((Response::empty(404), Some(index)));
                }
                Ok((Response::json(200, &keys), Some(index)))
            } else if request.has_param("recurse") {
                let (index, entries) = blocking(core, request, |store| store.kv_list(key))?;
                if entries.is_empty() {
                    return Ok((Response::empty(404), Some(index)));
                }
                let list: Vec<EntryJson<'_>> = entries.iter().map(entry_json).collect();
                Ok((Response::json(200, &list), Some(index)))
            } else {
                if key.is_empty() {
                    return Err(missing_key());
                }
                let (index, entry) = blocking(core, request, |store| store.kv_get(key))?;
                let Some(entry) = entry else {
                    return Ok((Response::empty(404), Some(index)));
                };
                if request.has_param("raw") {
                    let mut raw = Response::empty(200);
                    raw.body = entry.value;
                    return Ok((
                        raw.with_header("Content-Type", "application/octet-stream"),
                        Some(index),
                    ));
                }
                Ok((Response::json(200, &[entry_json(&entry)]), Some(index)))
            }
        }
        "PUT" => {
            if key.is_empty() {
                return Err(missing_key());
            }
            if request.body.len() > MAX_VALUE_BYTES {
                return Err(Response::text(
                    413,
                    format!(
                        "Request body({} bytes) too large, max size: {MAX_VALUE_BYTES} bytes.",
                        request.body.len()
                    ),
                ));
            }
            let flags = parse_u64(request, "flags", "Invalid flags")?.unwrap_or(0);
            let cas = parse_u64(request, "cas", "Invalid cas index")?;
            let value = request.body.clone();
            let now = Instant::now();
            // Consul picks the operation in this order; cas wins over acquire/release.
            let result = core.mutate(|inner| {
                let store = &mut inner.store;
                if let Some(cas) = cas {
                    Ok(store.kv_cas(key, value, flags, cas))
                } else if let Some(session) = request.param("release") {
                    store.kv_release(key, value, flags, session)
                } else if let Some(session) = request.param("acquire") {
                    store.kv_acquire(key, value, flags, session, now)
                } else {
                    Ok(store.kv_set(key, value, flags))
                }
            });
            match result {
                Ok(done) => Ok((Response::json(200, &done), None)),
                Err(err) => Err(Response::text(500, err.to_string())),
            }
        }
        "DELETE" => {
            let cas = parse_u64(request, "cas", "Invalid cas index")?;
            let done = if request.has_param("recurse") {
                core.mutate(|inner| inner.store.kv_delete_tree(key))
            } else {
                if key.is_empty() {
                    return Err(missing_key());
                }
                core.mutate(|inner| inner.store.kv_delete(key, cas))
            };
            Ok((Response::json(200, &done), None))
        }
        other => Err(Response::text(405, format!("method {other} not allowed"))),
    }
}
