//! OTLP/HTTP trace receiver stand-in: decodes real `ExportTraceServiceRequest`
//! protobuf posted to `/v1/traces` and keeps every span for assertions.
//!
//! Faults: [`OtlpFault::Refuse`] stops listening (connections are refused),
//! [`OtlpFault::Hang`] reads requests and never answers, [`OtlpFault::Reject`]
//! answers an HTTP error status. Every answer carries `Connection: close`, so
//! a client never keeps a pooled connection across a fault change.
//!
//! Admin API under `/_standin/`: `GET spans` (JSON list), `PUT
//! fault?kind=hang|statusNNN`, `DELETE fault` (refusing cannot be set over
//! HTTP: nobody could clear it).

use std::collections::BTreeMap;
use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use serde::Serialize;

/// Path the OTLP/HTTP exporter posts traces to.
pub const TRACES_PATH: &str = "/v1/traces";
/// Largest request body accepted.
const MAX_BODY: u64 = 16 * 1024 * 1024;

/// A collector misbehaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpFault {
    /// Not listening: connections are refused.
    Refuse,
    /// Accept and read requests, never answer.
    Hang,
    /// Answer this HTTP status.
    Reject(u16),
}

/// OTLP span status code, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StatusCode {
    /// Not set.
    Unset,
    /// Explicitly OK.
    Ok,
    /// Failed.
    Error,
}

/// One received span, flattened for assertions (ids in lower-case hex,
/// attribute values as strings).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceivedSpan {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, empty for a root span.
    pub parent_span_id: String,
    /// Span name.
    pub name: String,
    /// Start time, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// End time, nanoseconds since the Unix epoch.
    pub end_unix_nano: u64,
    /// Span attributes.
    pub attributes: BTreeMap<String, String>,
    /// Names of the span's events (log lines inside the span), in order.
    pub events: Vec<String>,
    /// Status code.
    pub status_code: StatusCode,
    /// Status message (set with errors).
    pub status_message: String,
    /// Attributes of the resource the span came with.
    pub resource: BTreeMap<String, String>,
    /// Instrumentation scope name.
    pub scope: String,
}

impl ReceivedSpan {
    /// An attribute's value.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// True for a span without a parent.
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_empty()
    }
}

struct State {
    spans: Vec<ReceivedSpan>,
    fault: Option<OtlpFault>,
    posts: usize,
    hung: Vec<tiny_http::Request>,
}

struct Core {
    state: Mutex<State>,
    changed: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Listening {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// A running OTLP receiver on loopback; stops when dropped.
pub struct OtlpReceiver {
    core: Arc<Core>,
    addr: SocketAddr,
    listening: Mutex<Option<Listening>>,
}

impl OtlpReceiver {
    /// Starts on a free loopback port.
    pub fn start() -> io::Result<OtlpReceiver> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts on `bind`.
    pub fn start_on(bind: SocketAddr) -> io::Result<OtlpReceiver> {
        let core = Arc::new(Core {
            state: Mutex::new(State {
                spans: Vec::new(),
                fault: None,
                posts: 0,
                hung: Vec::new(),
            }),
            changed: Condvar::new(),
        });
        let listening = listen(&core, bind)?;
        let addr = listening
            .server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("not listening on an IP address"))?;
        Ok(OtlpReceiver {
            core,
            addr,
            listening: Mutex::new(Some(listening)),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base endpoint, as a user would configure it (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The full traces URL.
    pub fn traces_url(&self) -> String {
        format!("http://{}{TRACES_PATH}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.core.state).spans.clone()
    }

    /// How many POSTs to `/v1/traces` arrived (faulted ones included).
    pub fn post_count(&self) -> usize {
        lock(&self.core.state).posts
    }

    /// Waits until `pred` holds for the spans received, up to `timeout`.
    pub fn wait_for_spans(
        &self,
        timeout: Duration,
        pred: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.core.state);
        loop {
            if pred(&state.spans) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .core
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Applies a fault (replacing any other), or clears it with `None`.
    /// Clearing Hang releases hung requests (they get an error answer).
    pub fn set_fault(&self, fault: Option<OtlpFault>) -> io::Result<()> {
        let mut listening = lock(&self.listening);
        let released = {
            let mut state = lock(&self.core.state);
            state.fault = fault;
            if fault == Some(OtlpFault::Hang) {
                Vec::new()
            } else {
                std::mem::take(&mut state.hung)
            }
        };
        drop(released);
        match fault {
            Some(OtlpFault::Refuse) => {
                if let Some(l) = listening.take() {
                    stop(l, self.addr);
                }
            }
            _ if listening.is_none() => *listening = Some(listen(&self.core, self.addr)?),
            _ => {}
        }
        Ok(())
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(l) = lock(&self.listening).take() {
            stop(l, self.addr);
        }
        drop(std::mem::take(&mut lock(&self.core.state).hung));
    }
}

fn listen(core: &Arc<Core>, bind: SocketAddr) -> io::Result<Listening> {
    let server = Arc::new(tiny_http::Server::http(bind).map_err(io::Error::other)?);
    let stop = Arc::new(AtomicBool::new(false));
    let (s, c, flag) = (Arc::clone(&server), Arc::clone(core), Arc::clone(&stop));
    let thread = std::thread::Builder::new()
        .name("otlp-standin".into())
        .spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match s.recv_timeout(Duration::from_millis(100)) {
                    Ok(Some(request)) => handle(&c, request),
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        })?;
    Ok(Listening {
        server,
        stop,
        thread,
    })
}

/// Stops serving and closes the listening socket; returns once `addr`
/// refuses connections (tiny_http closes its listener on a thread of its
/// own, shortly after the server is dropped).
fn stop(l: Listening, addr: SocketAddr) {
    l.stop.store(true, Ordering::SeqCst);
    l.server.unblock();
    let _ = l.thread.join();
    drop(l.server);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline
        && std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn respond(request: tiny_http::Request, status: u16, content_type: &str, body: Vec<u8>) {
    let mut response = tiny_http::Response::from_data(body).with_status_code(status);
    for (k, v) in [("Content-Type", content_type), ("Connection", "close")] {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            response.add_header(h);
        }
    }
    let _ = request.respond(response);
}

fn handle(core: &Core, mut request: tiny_http::Request) {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let method = request.method().as_str().to_string();
    if let Some(admin) = path.strip_prefix("/_standin/") {
        let (status, text) = admin_call(core, &method, admin, query);
        return respond(request, status, "application/json", text.into_bytes());
    }
    if path != TRACES_PATH || method != "POST" {
        return respond(request, 404, "text/plain", b"not found".to_vec());
    }
    let fault = {
        let mut state = lock(&core.state);
        state.posts += 1;
        state.fault
    };
    match fault {
        Some(OtlpFault::Hang) => {
            // Read the body like a real server would, then never answer.
            let mut sink = Vec::new();
            let _ = request.as_reader().take(MAX_BODY).read_to_end(&mut sink);
            lock(&core.state).hung.push(request);
            return;
        }
        Some(OtlpFault::Reject(status)) => {
            return respond(
                request,
                status,
                "text/plain",
                b"rejected by stand-in".to_vec(),
            );
        }
        Some(OtlpFault::Refuse) | None => {}
    }
    let mut body = Vec::new();
    if let Err(e) = request.as_reader().take(MAX_BODY).read_to_end(&mut body) {
        return respond(request, 400, "text/plain", e.to_string().into_bytes());
    }
    let export = match ExportTraceServiceRequest::decode(body.as_slice()) {
        Ok(export) => export,
        Err(e) => {
            let text = format!("not an ExportTraceServiceRequest: {e}");
            return respond(request, 400, "text/plain", text.into_bytes());
        }
    };
    let spans = flatten(export);
    {
        let mut state = lock(&core.state);
        state.spans.extend(spans);
    }
    core.changed.notify_all();
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    respond(request, 200, "application/x-protobuf", answer);
}

fn admin_call(core: &Core, method: &str, what: &str, query: &str) -> (u16, String) {
    match (method, what) {
        ("GET", "spans") => {
            let state = lock(&core.state);
            match serde_json::to_string(&state.spans) {
                Ok(json) => (200, json),
                Err(e) => (500, format!("{{\"error\":{:?}}}", e.to_string())),
            }
        }
        ("PUT", "fault") => {
            let kind = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("kind="))
                .unwrap_or("");
            let fault = match kind {
                "hang" => OtlpFault::Hang,
                other => match other.strip_prefix("status").and_then(|s| s.parse().ok()) {
                    Some(code) => OtlpFault::Reject(code),
                    None => return (400, "{\"error\":\"kind must be hang or statusNNN\"}".into()),
                },
            };
            lock(&core.state).fault = Some(fault);
            (200, "true".into())
        }
        ("DELETE", "fault") => {
            let released = {
                let mut state = lock(&core.state);
                state.fault = None;
                std::mem::take(&mut state.hung)
            };
            drop(released);
            (200, "true".into())
        }
        _ => (404, "{\"error\":\"unknown admin call\"}".into()),
    }
}

/// Decodes the nested request into flat spans.
pub fn flatten(export: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for rs in export.resource_spans {
        let resource = rs
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            let scope = ss.scope.map(|s| s.name).unwrap_or_default();
            for span in ss.spans {
                let (status_code, status_message) = match span.status {
                    Some(s) => (
                        match s.code {
                            1 => StatusCode::Ok,
                            2 => StatusCode::Error,
                            _ => StatusCode::Unset,
                        },
                        s.message,
                    ),
                    None => (StatusCode::Unset, String::new()),
                };
                out.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                    attributes: attributes(&span.attributes),
                    events: span.events.into_iter().map(|e| e.name).collect(),
                    status_code,
                    status_message,
                    resource: resource.clone(),
                    scope: scope.clone(),
                });
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), value_text(kv.value.as_ref())))
        .collect()
}

fn value_text(value: Option<&AnyValue>) -> String {
    use any_value::Value;
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex(b),
        // Profiles-only string-table reference; traces never use it.
        Some(Value::StringValueStrindex(i)) => format!("strindex:{i}"),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| value_text(Some(v))).collect();
            format!("[{}]", items.join(", "))
        }
        Some(Value::KvlistValue(l)) => {
            let items: Vec<String> = l
                .values
                .iter()
                .map(|kv| format!("{}={}", kv.key, value_text(kv.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// `watchdog-standins otlp [--listen ADDR]`: prints `otlp listening on
/// ADDR`, then one JSON line per received span, until killed.
pub fn serve_from_args(mut args: pico_args::Arguments) -> Result<(), String> {
    let bind: SocketAddr = args
        .opt_value_from_str("--listen")
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4318)));
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!("unexpected arguments: {rest:?}"));
    }
    let receiver =
        OtlpReceiver::start_on(bind).map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    let mut out = io::stdout();
    writeln!(out, "otlp listening on {}", receiver.addr()).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    let mut printed = 0;
    loop {
        receiver.wait_for_spans(Duration::from_secs(3600), |s| s.len() > printed);
        let spans = receiver.spans();
        for span in &spans[printed..] {
            let line = serde_json::to_string(span).map_err(|e| e.to_string())?;
            writeln!(out, "{line}").map_err(|e| e.to_string())?;
        }
        out.flush().map_err(|e| e.to_string())?;
        printed = spans.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn request() -> ExportTraceServiceRequest {
        use any_value::Value::*;
        let span = |id: u8, parent: Option<u8>, name: &str| Span {
            trace_id: vec![0xab; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            start_time_unix_nano: 1_000 + u64::from(id),
            end_time_unix_nano: 2_000,
            ..Default::default()
        };
        let mut root = span(1, None, "restart_cycle");
        root.attributes = vec![
            kv("node", StringValue("n1".into())),
            kv("attempt", IntValue(2)),
            kv("resumed", BoolValue(false)),
        ];
        root.status = Some(Status {
            message: "gave up".into(),
            code: 2,
        });
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", StringValue("svc".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "scope".into(),
                        ..Default::default()
                    }),
                    spans: vec![root, span(2, Some(1), "oci STOP")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// What a raw HTTP/1.1 exchange ended with.
    #[derive(Debug)]
    enum Sent {
        Status(u16, String),
        Refused,
        NoAnswer,
    }

    /// One request over a fresh connection (no shared code with the
    /// production client).
    fn send(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Sent {
        use std::net::TcpStream;
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Sent::Refused,
            Err(e) => panic!("connect: {e}"),
        };
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if answer.is_empty() {
                    return Sent::NoAnswer;
                }
            }
            Err(e) => panic!("read: {e}"),
        }
        let text = String::from_utf8_lossy(&answer).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Sent::Status(status, body)
    }

    fn post(r: &OtlpReceiver, body: &[u8]) -> Sent {
        send(r.addr(), "POST", TRACES_PATH, body)
    }

    fn status(sent: Sent) -> u16 {
        match sent {
            Sent::Status(code, _) => code,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn decodes_a_hand_built_protobuf_request() {
        let r = OtlpReceiver::start().unwrap();
        assert_eq!(status(post(&r, &request().encode_to_vec())), 200);
        let spans = r.spans();
        assert_eq!(spans.len(), 2);
        let root = &spans[0];
        assert!(root.is_root());
        assert_eq!(root.name, "restart_cycle");
        assert_eq!(root.trace_id, "ab".repeat(16));
        assert_eq!(root.span_id, "01".repeat(8));
        assert_eq!(root.attr("node"), Some("n1"));
        assert_eq!(root.attr("attempt"), Some("2"));
        assert_eq!(root.attr("resumed"), Some("false"));
        assert_eq!(root.status_code, StatusCode::Error);
        assert_eq!(root.status_message, "gave up");
        assert_eq!(
            root.resource.get("service.name").map(String::as_str),
            Some("svc")
        );
        assert_eq!(root.scope, "scope");
        assert_eq!(spans[1].parent_span_id, root.span_id);
        assert_eq!(spans[1].status_code, StatusCode::Unset);
        assert!(r.wait_for_spans(Duration::from_millis(10), |s| s.len() == 2));
        assert!(!r.wait_for_spans(Duration::from_millis(10), |s| s.len() == 3));
    }

    #[test]
    fn garbage_is_a_400_and_other_paths_404() {
        let r = OtlpReceiver::start().unwrap();
        assert_eq!(status(post(&r, b"\xff\xff\xff")), 400);
        assert_eq!(status(send(r.addr(), "POST", "/v1/logs", b"")), 404);
        assert!(r.spans().is_empty());
    }

    #[test]
    fn faults_refuse_hang_and_reject_then_recover() {
        let r = OtlpReceiver::start().unwrap();
        let body = request().encode_to_vec();
        r.set_fault(Some(OtlpFault::Reject(503))).unwrap();
        assert_eq!(status(post(&r, &body)), 503);
        r.set_fault(Some(OtlpFault::Refuse)).unwrap();
        assert!(matches!(post(&r, &body), Sent::Refused));
        r.set_fault(Some(OtlpFault::Hang)).unwrap();
        assert!(matches!(post(&r, &body), Sent::NoAnswer));
        assert!(r.spans().is_empty());
        assert_eq!(r.post_count(), 2, "the refused one never arrived");
        r.set_fault(None).unwrap();
        assert_eq!(status(post(&r, &body)), 200);
        assert_eq!(r.spans().len(), 2);
    }

    #[test]
    fn admin_api_lists_spans_and_sets_faults() {
        let r = OtlpReceiver::start().unwrap();
        assert_eq!(status(post(&r, &request().encode_to_vec())), 200);
        let Sent::Status(200, listing) = send(r.addr(), "GET", "/_standin/spans", b"") else {
            panic!("spans listing failed");
        };
        let list: serde_json::Value = serde_json::from_str(&listing).unwrap();
        assert_eq!(list[1]["name"], "oci STOP");
        assert_eq!(list[0]["attributes"]["node"], "n1");
        assert_eq!(
            status(send(r.addr(), "PUT", "/_standin/fault?kind=status429", b"")),
            200
        );
        assert_eq!(status(post(&r, b"")), 429);
        assert_eq!(
            status(send(r.addr(), "DELETE", "/_standin/fault", b"")),
            200
        );
        assert_eq!(status(post(&r, &request().encode_to_vec())), 200);
        assert_eq!(r.spans().len(), 4);
    }
}
