//! Cloudflare API v4 stand-in for DNS records: bearer-token auth, list with
//! `type`/`name` filters, get, PATCH (merge), POST, and injected faults.
//!
//! Paths live under `/client/v4`: `GET zones/{zone}/dns_records[?type=&name=|name.exact=&page=&per_page=]`,
//! `GET|PATCH zones/{zone}/dns_records/{id}`, `POST zones/{zone}/dns_records`.
//! Answers use the real envelope `{"success","errors","messages","result"}`
//! and real error codes: a missing `Authorization` header is 401 code 9106,
//! a wrong token 401 code 1000 (`Invalid API Token`), a zone the token may
//! not edit 403 code 10000, an unknown record 404 code 81044, invalid content
//! 400 code 9005. Faults ([`CfFault`]) apply to the next authorised requests:
//! 429 with `Retry-After` (code 971), any status, `success:false` with a
//! given error, or a hang.
//!
//! Admin API under `/_standin/`: `GET requests`, `GET records`,
//! `POST faults` `{"fault":"429"|"status"|"unsuccessful"|"hang","count":1,
//! "retry_after":1,"status":502,"code":9005,"message":"..."}`.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A fault injected into the next authorised API requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CfFault {
    /// 429 with `Retry-After: retry_after` seconds, code 971.
    RateLimited {
        /// Seconds in `Retry-After`.
        retry_after: u64,
    },
    /// This status with a generic error (e.g. 500, 502, 503).
    Status(u16),
    /// 200 with `"success": false` and this error.
    Unsuccessful {
        /// Error code.
        code: i64,
        /// Error message.
        message: String,
    },
    /// Never answers (until the hang time passes).
    Hang,
}

/// A DNS record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRecord {
    /// Record id.
    pub id: String,
    /// Zone id.
    pub zone_id: String,
    /// Name (lower case).
    pub name: String,
    /// `A`, `AAAA`, ...
    #[serde(rename = "type")]
    pub record_type: String,
    /// Content.
    pub content: String,
    /// TTL (1 = automatic).
    pub ttl: u64,
    /// Proxied through Cloudflare.
    pub proxied: bool,
}

/// One API request as seen (admin requests are not recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CfRequest {
    /// HTTP method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Request body (JSON text), if any.
    pub body: Option<String>,
    /// Whether the bearer token was right.
    pub authorized: bool,
    /// Status answered (0 when hung).
    pub status: u16,
    /// When the request arrived.
    #[serde(skip)]
    pub at: Instant,
}

struct State {
    zones: HashSet<String>,
    records: BTreeMap<String, StoredRecord>,
    faults: VecDeque<(CfFault, u32)>,
    requests: Vec<CfRequest>,
}

struct Core {
    token: String,
    state: Mutex<State>,
    stopping: AtomicBool,
    hang_time: Duration,
    hung: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running Cloudflare stand-in; stops when dropped.
pub struct CloudflareStandin {
    core: Arc<Core>,
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
}

impl CloudflareStandin {
    /// Starts on a free loopback port accepting `token`.
    pub fn start(token: &str) -> io::Result<CloudflareStandin> {
        Self::start_with(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            token,
            Duration::from_secs(60),
        )
    }

    /// Starts on `bind`, accepting `token`, holding hung requests `hang_time`.
    pub fn start_with(
        bind: SocketAddr,
        token: &str,
        hang_time: Duration,
    ) -> io::Result<CloudflareStandin> {
        let server = tiny_http::Server::http(bind).map_err(io::Error::other)?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("not listening on an IP address"))?;
        let server = Arc::new(server);
        let core = Arc::new(Core {
            token: token.to_string(),
            state: Mutex::new(State {
                zones: HashSet::new(),
                records: BTreeMap::new(),
                faults: VecDeque::new(),
                requests: Vec::new(),
            }),
            stopping: AtomicBool::new(false),
            hang_time,
            hung: Mutex::new(Vec::new()),
        });
        let mut workers = Vec::new();
        for i in 0..2 {
            let (s, c) = (Arc::clone(&server), Arc::clone(&core));
            workers.push(
                std::thread::Builder::new()
                    .name(format!("cf-standin-{i}"))
                    .spawn(move || {
                        while !c.stopping.load(Ordering::SeqCst) {
                            match s.recv_timeout(Duration::from_millis(100)) {
                                Ok(Some(request)) => handle(&c, request),
                                Ok(None) => {}
                                Err(_) => break,
                            }
                        }
                    })?,
            );
        }
        Ok(CloudflareStandin {
            core,
            server,
            addr,
            workers,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/client/v4`, the client's `api_url`.
    pub fn api_url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    /// Lets the token edit this zone.
    pub fn add_zone(&self, zone: &str) {
        lock(&self.core.state).zones.insert(zone.to_string());
    }

    /// Adds a record directly (no request recorded); returns its id.
    pub fn add_record(
        &self,
        zone: &str,
        record_type: &str,
        name: &str,
        content: &str,
        ttl: u64,
        proxied: bool,
    ) -> String {
        let id = new_id();
        lock(&self.core.state).records.insert(
            id.clone(),
            StoredRecord {
                id: id.clone(),
                zone_id: zone.to_string(),
                name: name.to_ascii_lowercase(),
                record_type: record_type.to_string(),
                content: content.to_string(),
                ttl,
                proxied,
            },
        );
        id
    }

    /// Deletes a record directly (e.g. to make a cached id stale).
    pub fn delete_record(&self, id: &str) -> Option<StoredRecord> {
        lock(&self.core.state).records.remove(id)
    }

    /// A record by id.
    pub fn record(&self, id: &str) -> Option<StoredRecord> {
        lock(&self.core.state).records.get(id).cloned()
    }

    /// All records, ordered by id.
    pub fn records(&self) -> Vec<StoredRecord> {
        lock(&self.core.state).records.values().cloned().collect()
    }

    /// Makes the next `n` authorised API requests fail with `fault`.
    pub fn fail_next(&self, n: u32, fault: CfFault) {
        if n > 0 {
            lock(&self.core.state).faults.push_back((fault, n));
        }
    }

    /// All API requests so far, oldest first.
    pub fn requests(&self) -> Vec<CfRequest> {
        lock(&self.core.state).requests.clone()
    }

    /// The API requests with this method.
    pub fn requests_with_method(&self, method: &str) -> Vec<CfRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method)
            .collect()
    }

    /// PATCH requests answered 200 with success (the updates really made).
    pub fn successful_patches(&self) -> Vec<CfRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && r.status == 200)
            .collect()
    }
}

impl Drop for CloudflareStandin {
    fn drop(&mut self) {
        self.core.stopping.store(true, Ordering::SeqCst);
        self.server.unblock();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let hung: Vec<_> = lock(&self.core.hung).drain(..).collect();
        for h in hung {
            let _ = h.join();
        }
    }
}

fn new_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

fn envelope(result: Value) -> Value {
    json!({"success": true, "errors": [], "messages": [], "result": result})
}

fn failure(code: i64, message: &str) -> Value {
    json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})
}

struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

impl Answer {
    fn ok(result: Value) -> Answer {
        Answer {
            status: 200,
            body: envelope(result),
            retry_after: None,
        }
    }
    fn err(status: u16, code: i64, message: &str) -> Answer {
        Answer {
            status,
            body: failure(code, message),
            retry_after: None,
        }
    }
}

fn handle(core: &Arc<Core>, mut request: tiny_http::Request) {
    let method = request.method().as_str().to_string();
    let url = request.url().to_string();
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (url.clone(), None),
    };
    let auth = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let mut raw = Vec::new();
    if request
        .as_reader()
        .take(1024 * 1024)
        .read_to_end(&mut raw)
        .is_err()
    {
        let _ = request.respond(tiny_http::Response::empty(400));
        return;
    }
    let body = String::from_utf8_lossy(&raw).into_owned();
    if let Some(admin) = path.strip_prefix("/_standin/") {
        let (status, value) = admin_call(core, &method, admin, &body);
        respond(request, status, &value, None);
        return;
    }
    let authorized = auth.as_deref() == Some(format!("Bearer {}", core.token).as_str());
    let mut record = CfRequest {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        body: (!body.is_empty()).then(|| body.clone()),
        authorized,
        status: 0,
        at: Instant::now(),
    };
    let answer = match auth {
        None => Answer::err(
            401,
            9106,
            "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
        ),
        Some(_) if !authorized => Answer::err(401, 1000, "Invalid API Token"),
        Some(_) => {
            let fault = take_fault(&mut lock(&core.state));
            match fault {
                Some(CfFault::Hang) => {
                    lock(&core.state).requests.push(record);
                    park(core, request);
                    return;
                }
                Some(CfFault::RateLimited { retry_after }) => Answer {
                    retry_after: Some(retry_after),
                    ..Answer::err(
                        429,
                        971,
                        "Please wait and consider throttling your request speed",
                    )
                },
                Some(CfFault::Status(s)) => {
                    Answer::err(s, 10000 + i64::from(s), "Injected failure")
                }
                Some(CfFault::Unsuccessful { code, message }) => Answer {
                    status: 200,
                    body: failure(code, &message),
                    retry_after: None,
                },
                None => route(
                    &mut lock(&core.state),
                    &method,
                    &path,
                    query.as_deref(),
                    &body,
                ),
            }
        }
    };
    record.status = answer.status;
    lock(&core.state).requests.push(record);
    respond(request, answer.status, &answer.body, answer.retry_after);
}

fn take_fault(st: &mut State) -> Option<CfFault> {
    let (fault, left) = st.faults.front_mut()?;
    let fault = fault.clone();
    *left -= 1;
    if *left == 0 {
        st.faults.pop_front();
    }
    Some(fault)
}

fn respond(request: tiny_http::Request, status: u16, body: &Value, retry_after: Option<u64>) {
    let mut response = tiny_http::Response::from_string(body.to_string()).with_status_code(status);
    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", "application/json") {
        response = response.with_header(h);
    }
    if let Some(s) = retry_after
        && let Ok(h) = tiny_http::Header::from_bytes("Retry-After", s.to_string())
    {
        response = response.with_header(h);
    }
    let _ = request.respond(response);
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .map(percent_decode)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Deserialize)]
struct RecordInput {
    #[serde(rename = "type")]
    record_type: Option<String>,
    name: Option<String>,
    content: Option<String>,
    ttl: Option<u64>,
    proxied: Option<bool>,
}

fn valid_content(record_type: &str, content: &str) -> Result<(), Answer> {
    let ok = match record_type {
        "A" => content.parse::<std::net::Ipv4Addr>().is_ok(),
        "AAAA" => content.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => !content.is_empty(),
    };
    if ok {
        Ok(())
    } else {
        Err(Answer::err(
            400,
            9005,
            &format!("Content for {record_type} record is invalid."),
        ))
    }
}

fn route(st: &mut State, method: &str, path: &str, query: Option<&str>, body: &str) -> Answer {
    let Some(rest) = path.strip_prefix("/client/v4/zones/") else {
        return Answer::err(404, 7003, "Could not route to this path");
    };
    let mut parts = rest.split('/');
    let (zone, kind, id) = (parts.next(), parts.next(), parts.next());
    if parts.next().is_some() || kind != Some("dns_records") {
        return Answer::err(404, 7003, "Could not route to this path");
    }
    let zone = zone.unwrap_or_default().to_string();
    if !st.zones.contains(&zone) {
        return Answer::err(403, 10000, "Authentication error");
    }
    let input = || -> Result<RecordInput, Answer> {
        serde_json::from_str(body)
            .map_err(|e| Answer::err(400, 9207, &format!("Request body is invalid JSON: {e}")))
    };
    match (method, id) {
        ("GET", None) => {
            let want_type = query_param(query, "type");
            let want_name = query_param(query, "name")
                .or_else(|| query_param(query, "name.exact"))
                .map(|n| n.to_ascii_lowercase());
            let all: Vec<&StoredRecord> = st
                .records
                .values()
                .filter(|r| r.zone_id == zone)
                .filter(|r| want_type.as_ref().is_none_or(|t| *t == r.record_type))
                .filter(|r| want_name.as_ref().is_none_or(|n| *n == r.name))
                .collect();
            let number = |name: &str, default: usize| {
                query_param(query, name)
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|n| *n > 0)
                    .unwrap_or(default)
            };
            let (page, per_page) = (number("page", 1), number("per_page", 100));
            let list: Vec<&StoredRecord> = all
                .iter()
                .skip((page - 1).saturating_mul(per_page))
                .take(per_page)
                .copied()
                .collect();
            let mut a = Answer::ok(json!(list));
            a.body["result_info"] = json!({
                "page": page,
                "per_page": per_page,
                "count": list.len(),
                "total_count": all.len(),
                "total_pages": all.len().div_ceil(per_page),
            });
            a
        }
        ("GET", Some(id)) => match st.records.get(id).filter(|r| r.zone_id == zone) {
            Some(r) => Answer::ok(json!(r)),
            None => Answer::err(404, 81044, "Record does not exist."),
        },
        ("PATCH", Some(id)) => {
            let input = match input() {
                Ok(i) => i,
                Err(a) => return a,
            };
            let Some(current) = st.records.get(id).filter(|r| r.zone_id == zone).cloned() else {
                return Answer::err(404, 81044, "Record does not exist.");
            };
            let mut next = current;
            if let Some(t) = input.record_type {
                next.record_type = t;
            }
            if let Some(n) = input.name {
                next.name = n.to_ascii_lowercase();
            }
            if let Some(c) = input.content {
                next.content = c;
            }
            if let Some(t) = input.ttl {
                next.ttl = t;
            }
            if let Some(p) = input.proxied {
                next.proxied = p;
            }
            if let Err(a) = valid_content(&next.record_type, &next.content) {
                return a;
            }
            st.records.insert(id.to_string(), next.clone());
            Answer::ok(json!(next))
        }
        ("POST", None) => {
            let input = match input() {
                Ok(i) => i,
                Err(a) => return a,
            };
            let (Some(t), Some(n), Some(c)) = (input.record_type, input.name, input.content) else {
                return Answer::err(400, 9000, "DNS record type, name and content are required.");
            };
            if let Err(a) = valid_content(&t, &c) {
                return a;
            }
            let n = n.to_ascii_lowercase();
            if st
                .records
                .values()
                .any(|r| r.zone_id == zone && r.record_type == t && r.name == n && r.content == c)
            {
                return Answer::err(400, 81057, "Identical record already exists.");
            }
            let id = new_id();
            let rec = StoredRecord {
                id: id.clone(),
                zone_id: zone,
                name: n,
                record_type: t,
                content: c,
                ttl: input.ttl.unwrap_or(1),
                proxied: input.proxied.unwrap_or(false),
            };
            st.records.insert(id, rec.clone());
            Answer::ok(json!(rec))
        }
        _ => Answer::err(405, 10405, "Method not allowed for this path"),
    }
}

fn park(core: &Arc<Core>, request: tiny_http::Request) {
    let c = Arc::clone(core);
    let spawned = std::thread::Builder::new()
        .name("cf-standin-hang".into())
        .spawn(move || {
            let deadline = Instant::now() + c.hang_time;
            while Instant::now() < deadline && !c.stopping.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(request);
        });
    if let Ok(h) = spawned {
        lock(&core.hung).push(h);
    }
}

#[derive(Deserialize)]
struct FaultInput {
    fault: String,
    #[serde(default = "one")]
    count: u32,
    #[serde(default)]
    retry_after: u64,
    #[serde(default)]
    status: u16,
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

fn one() -> u32 {
    1
}

fn admin_call(core: &Core, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut st = lock(&core.state);
    match (method, path) {
        ("GET", "requests") => (200, json!(st.requests)),
        ("GET", "records") => (200, json!(st.records.values().collect::<Vec<_>>())),
        ("POST", "faults") => {
            let f: FaultInput = match serde_json::from_str(body) {
                Ok(f) => f,
                Err(e) => return (400, json!({"error": e.to_string()})),
            };
            let fault = match f.fault.as_str() {
                "429" => CfFault::RateLimited {
                    retry_after: f.retry_after,
                },
                "status" => CfFault::Status(f.status),
                "unsuccessful" => CfFault::Unsuccessful {
                    code: f.code,
                    message: f.message,
                },
                "hang" => CfFault::Hang,
                other => return (400, json!({"error": format!("unknown fault {other:?}")})),
            };
            if f.count > 0 {
                st.faults.push_back((fault, f.count));
            }
            (200, json!({"ok": true}))
        }
        _ => (
            404,
            json!({"error": format!("no admin endpoint {method} /_standin/{path}")}),
        ),
    }
}

/// Runs the stand-in as a process: `cloudflare --listen ADDR --token T
/// --zone Z [--record NAME=IP]...`. Prints `cloudflare listening on ADDR`
/// and serves until killed.
pub fn serve_from_args(mut args: pico_args::Arguments) -> Result<(), String> {
    let bind: SocketAddr = args
        .opt_value_from_str("--listen")
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let token: String = args
        .value_from_str("--token")
        .map_err(|e| format!("--token: {e}"))?;
    let zone: String = args
        .value_from_str("--zone")
        .map_err(|e| format!("--zone: {e}"))?;
    let records: Vec<String> = args
        .values_from_str("--record")
        .map_err(|e| e.to_string())?;
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!("unexpected arguments: {rest:?}"));
    }
    let cf = CloudflareStandin::start_with(bind, &token, Duration::from_secs(60))
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    cf.add_zone(&zone);
    for spec in &records {
        let (name, ip) = spec
            .split_once('=')
            .ok_or_else(|| format!("--record {spec}: expected NAME=IP"))?;
        cf.add_record(&zone, "A", name, ip, 1, false);
    }
    let mut out = io::stdout();
    writeln!(out, "cloudflare listening on {}", cf.addr()).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    loop {
        std::thread::park();
    }
}
