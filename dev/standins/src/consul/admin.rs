//! `/_standin/...`: the HTTP control API for scripts and the demo (faults, wipe, state, request log).
//!
//! Admin requests bypass every fault except `refuse` (nothing listens then)
//! and are not recorded. To leave refuse mode from outside the process, set
//! it with a timer: `{"fault":"refuse","for_ms":N}`; in Rust use
//! `ConsulStandin::clear_faults`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::json;

use super::http::{Request, Response};
use super::server::{Core, Mode};
use super::{Fault, KvView, SessionView};

/// Work to do after the admin response has been written (going down would
/// otherwise cut the connection that asked for it).
pub(crate) type After = Box<dyn FnOnce(&Arc<Core>) + Send>;

#[derive(Deserialize)]
struct FaultRequest {
    fault: String,
    ms: Option<u64>,
    code: Option<u16>,
    for_ms: Option<u64>,
}

#[derive(Deserialize)]
struct TokenRequest {
    token: Option<String>,
}

fn ok() -> Response {
    Response::json(200, &json!({ "ok": true }))
}

fn bad(why: impl Into<String>) -> Response {
    Response::json(400, &json!({ "ok": false, "error": why.into() }))
}

fn mutating(request: &Request) -> bool {
    matches!(request.method.as_str(), "POST" | "PUT")
}

/// Serves one admin request.
pub(crate) fn handle(core: &Arc<Core>, request: &Request) -> (Response, Option<After>) {
    let path = request.path.trim_end_matches('/');
    match (path, request.method.as_str()) {
        ("/_standin/fault", _) if mutating(request) => fault(core, request),
        ("/_standin/clear", _) if mutating(request) => match core.clear_faults() {
            Ok(()) => (ok(), None),
            Err(err) => (
                Response::json(500, &json!({ "ok": false, "error": err.to_string() })),
                None,
            ),
        },
        ("/_standin/wipe", _) if mutating(request) => {
            crate::consul::wipe_core(core);
            (ok(), None)
        }
        ("/_standin/token", _) if mutating(request) => {
            match serde_json::from_slice::<TokenRequest>(&request.body) {
                Ok(t) => {
                    core.mutate(|inner| inner.token = t.token.filter(|t| !t.is_empty()));
                    (ok(), None)
                }
                Err(err) => (
                    bad(format!("body must be {{\"token\": string|null}}: {err}")),
                    None,
                ),
            }
        }
        ("/_standin/requests", "GET") => (requests(core), None),
        ("/_standin/requests", "DELETE") => {
            core.mutate(|inner| inner.requests.clear());
            (ok(), None)
        }
        ("/_standin/state", "GET") => (state(core), None),
        (p, _)
            if mutating(request)
                && p.starts_with("/_standin/sessions/")
                && p.ends_with("/invalidate") =>
        {
            let id = &p["/_standin/sessions/".len()..p.len() - "/invalidate".len()];
            let found = crate::consul::invalidate_on(core, id);
            (
                Response::json(if found { 200 } else { 404 }, &json!({ "ok": found })),
                None,
            )
        }
        _ => (
            Response::json(
                404,
                &json!({ "ok": false, "error": "unknown admin endpoint or method" }),
            ),
            None,
        ),
    }
}

fn fault(core: &Arc<Core>, request: &Request) -> (Response, Option<After>) {
    let parsed: FaultRequest = match serde_json::from_slice(&request.body) {
        Ok(p) => p,
        Err(err) => return (bad(format!("body must be {{\"fault\": ...}}: {err}")), None),
    };
    let fault = match parsed.fault.as_str() {
        "refuse" => Fault::Refuse,
        "hang" => Fault::Hang,
        "no_leader" => Fault::NoLeader,
        "latency" => match parsed.ms {
            Some(ms) => Fault::Latency(Duration::from_millis(ms)),
            None => return (bad("latency needs \"ms\""), None),
        },
        "status" => match parsed.code {
            Some(code) if (100..=599).contains(&code) => Fault::Status(code),
            _ => return (bad("status needs \"code\" between 100 and 599"), None),
        },
        "wipe" => Fault::Wipe,
        other => return (bad(format!("unknown fault {other:?}")), None),
    };
    let timer = parsed.for_ms.map(Duration::from_millis);
    let apply = move |core: &Arc<Core>| -> std::io::Result<()> {
        let epoch = core.set_fault(fault)?;
        if let Some(after) = timer {
            core.schedule_clear(fault, epoch, after)?;
        }
        Ok(())
    };
    if matches!(fault, Fault::Refuse) {
        // Answer first, then go down (which closes this very connection).
        let after: After = Box::new(move |core| {
            if let Err(err) = apply(core) {
                eprintln!("consul stand-in: refuse fault failed: {err}");
            }
        });
        return (ok(), Some(after));
    }
    match apply(core) {
        Ok(()) => (ok(), None),
        Err(err) => (
            Response::json(500, &json!({ "ok": false, "error": err.to_string() })),
            None,
        ),
    }
}

fn requests(core: &Arc<Core>) -> Response {
    let inner = core.inner();
    let list: Vec<serde_json::Value> = inner
        .requests
        .iter()
        .map(|r| {
            json!({
                "method": r.method,
                "path": r.path,
                "query": r.query,
                "token": r.token,
                "at_ms": r.received_at.saturating_duration_since(core.started).as_millis() as u64,
            })
        })
        .collect();
    drop(inner);
    Response::json(200, &list)
}

fn mode_name(mode: Mode) -> String {
    match mode {
        Mode::Normal => "none".into(),
        Mode::Refuse => "refuse".into(),
        Mode::Hang => "hang".into(),
        Mode::NoLeader => "no_leader".into(),
        Mode::Status(code) => format!("status {code}"),
    }
}

fn state(core: &Arc<Core>) -> Response {
    let inner = core.inner();
    let now = std::time::Instant::now();
    let sessions: Vec<serde_json::Value> = inner
        .store
        .session_list(None)
        .1
        .iter()
        .map(|s| {
            let v = SessionView::from(s);
            json!({
                "id": v.id,
                "name": v.name,
                "node": v.node,
                "behavior": v.behavior.as_str(),
                "ttl_ms": v.ttl.map(|d| d.as_millis() as u64),
                "lock_delay_ms": v.lock_delay.as_millis() as u64,
                "expires_in_ms": v.expires_at.map(|d| d.saturating_duration_since(now).as_millis() as u64),
                "create_index": v.create_index,
            })
        })
        .collect();
    let kv: Vec<serde_json::Value> = inner
        .store
        .all_entries()
        .iter()
        .map(|e| {
            let v = KvView::from(e);
            json!({
                "key": v.key,
                "value_base64": BASE64.encode(&v.value),
                "value_text": String::from_utf8_lossy(&v.value),
                "flags": v.flags,
                "session": v.session,
                "lock_index": v.lock_index,
                "create_index": v.create_index,
                "modify_index": v.modify_index,
            })
        })
        .collect();
    let body = json!({
        "addr": core.addr.to_string(),
        "index": inner.store.index(),
        "fault": mode_name(inner.mode),
        "latency_ms": inner.latency.map(|d| d.as_millis() as u64),
        "token_required": inner.token.is_some(),
        "sessions": sessions,
        "kv": kv,
        "recorded_requests": inner.requests.len(),
        "parked_queries": inner.parked_queries,
    });
    drop(inner);
    Response::json(200, &body)
}
