//! WAN-IP detection provider stand-in: answers like `api.ipify.org` (plain
//! body) or `1.1.1.1/cdn-cgi/trace` (trace lines), with programmable answers
//! and faults.
//!
//! `GET /cdn-cgi/trace` answers in the trace format (`ip=` among other
//! `key=value` lines); any other path answers the bare address. What is
//! answered comes from a per-request queue ([`IpProvider::push`]) and, when
//! the queue is empty, from the standing answer ([`IpProvider::set_ip`] /
//! [`IpProvider::set_fault`]).
//!
//! Admin API under `/_standin/`: `PUT ip?value=A.B.C.D`, `PUT fault?kind=html`
//! (`html`, `ipv6`, `empty`, `garbage`, `oversized`, `hang`, `status500`),
//! `DELETE fault`, `GET requests` (the count).

use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A wrong answer a provider can give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpFault {
    /// 200 with a captive-portal HTML page.
    Html,
    /// 200 with an IPv6 address (in the requested format).
    Ipv6,
    /// 200 with an empty body.
    Empty,
    /// 200 with text that is no address.
    Garbage,
    /// 200 with a body of 64 KiB.
    Oversized,
    /// Reads the request and never answers (until the hang time passes).
    Hang,
    /// This HTTP status with a short text body.
    Status(u16),
}

impl IpFault {
    /// Parses the admin API's spelling.
    pub fn parse(s: &str) -> Option<IpFault> {
        Some(match s {
            "html" => IpFault::Html,
            "ipv6" => IpFault::Ipv6,
            "empty" => IpFault::Empty,
            "garbage" => IpFault::Garbage,
            "oversized" => IpFault::Oversized,
            "hang" => IpFault::Hang,
            other => IpFault::Status(other.strip_prefix("status")?.parse().ok()?),
        })
    }
}

/// One programmed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpAnswer {
    /// Answer this address (any text: it is sent as is).
    Ip(String),
    /// Misbehave.
    Fault(IpFault),
}

struct State {
    standing: IpAnswer,
    queue: VecDeque<IpAnswer>,
    requests: Vec<String>,
}

struct Core {
    state: Mutex<State>,
    stopping: AtomicBool,
    hang_time: Duration,
    hung: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running IP provider; stops when dropped.
pub struct IpProvider {
    core: Arc<Core>,
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    worker: Option<JoinHandle<()>>,
}

impl IpProvider {
    /// Starts on a free loopback port answering `ip`; hung requests are held
    /// for 60 s.
    pub fn start(ip: &str) -> io::Result<IpProvider> {
        Self::start_with(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            ip,
            Duration::from_secs(60),
        )
    }

    /// Starts on `bind`, answering `ip`, holding hung requests `hang_time`.
    pub fn start_with(bind: SocketAddr, ip: &str, hang_time: Duration) -> io::Result<IpProvider> {
        let server = tiny_http::Server::http(bind).map_err(io::Error::other)?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("not listening on an IP address"))?;
        let server = Arc::new(server);
        let core = Arc::new(Core {
            state: Mutex::new(State {
                standing: IpAnswer::Ip(ip.to_string()),
                queue: VecDeque::new(),
                requests: Vec::new(),
            }),
            stopping: AtomicBool::new(false),
            hang_time,
            hung: Mutex::new(Vec::new()),
        });
        let (s, c) = (Arc::clone(&server), Arc::clone(&core));
        let worker = std::thread::Builder::new()
            .name("ip-standin".into())
            .spawn(move || {
                while !c.stopping.load(Ordering::SeqCst) {
                    match s.recv_timeout(Duration::from_millis(100)) {
                        Ok(Some(request)) => handle(&c, request),
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
            })?;
        Ok(IpProvider {
            core,
            server,
            addr,
            worker: Some(worker),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// URL answering the plain format (like `https://api.ipify.org`).
    pub fn plain_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// URL answering the trace format (like `https://1.1.1.1/cdn-cgi/trace`).
    pub fn trace_url(&self) -> String {
        format!("http://{}/cdn-cgi/trace", self.addr)
    }

    /// From now on answer `ip` (clears a standing fault).
    pub fn set_ip(&self, ip: &str) {
        lock(&self.core.state).standing = IpAnswer::Ip(ip.to_string());
    }

    /// From now on misbehave with `fault`.
    pub fn set_fault(&self, fault: IpFault) {
        lock(&self.core.state).standing = IpAnswer::Fault(fault);
    }

    /// Queues answers for the next requests, in order, before the standing one.
    pub fn push(&self, answers: impl IntoIterator<Item = IpAnswer>) {
        lock(&self.core.state).queue.extend(answers);
    }

    /// How many detection requests arrived (admin requests not counted).
    pub fn request_count(&self) -> usize {
        lock(&self.core.state).requests.len()
    }

    /// The paths of all detection requests, oldest first.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.core.state).requests.clone()
    }
}

impl Drop for IpProvider {
    fn drop(&mut self) {
        self.core.stopping.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        let hung: Vec<_> = lock(&self.core.hung).drain(..).collect();
        for h in hung {
            let _ = h.join();
        }
    }
}

fn handle(core: &Arc<Core>, request: tiny_http::Request) {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    if let Some(admin) = path.strip_prefix("/_standin/") {
        let (status, text) = admin_call(core, request.method().as_str(), admin, query);
        let _ = request.respond(tiny_http::Response::from_string(text).with_status_code(status));
        return;
    }
    let trace = path == "/cdn-cgi/trace";
    let answer = {
        let mut st = lock(&core.state);
        st.requests.push(path.to_string());
        st.queue.pop_front().unwrap_or_else(|| st.standing.clone())
    };
    let (status, body, html) = match answer {
        IpAnswer::Ip(ip) => (200, format_ip(&ip, trace), false),
        IpAnswer::Fault(IpFault::Ipv6) => (200, format_ip("2001:db8::17", trace), false),
        IpAnswer::Fault(IpFault::Html) => (
            200,
            "<!DOCTYPE html>\n<html><head><title>Welcome</title></head><body>Please accept the terms to use this network.</body></html>\n".to_string(),
            true,
        ),
        IpAnswer::Fault(IpFault::Empty) => (200, String::new(), false),
        IpAnswer::Fault(IpFault::Garbage) => (200, "your address is unknown\n".to_string(), false),
        IpAnswer::Fault(IpFault::Oversized) => (200, "9".repeat(64 * 1024), false),
        IpAnswer::Fault(IpFault::Status(s)) => (s, format!("error {s}\n"), false),
        IpAnswer::Fault(IpFault::Hang) => {
            park(core, request);
            return;
        }
    };
    let content_type = if html { "text/html" } else { "text/plain" };
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", content_type) {
        response = response.with_header(h);
    }
    let _ = request.respond(response);
}

/// The body a real provider sends for `ip`.
fn format_ip(ip: &str, trace: bool) -> String {
    if trace {
        format!(
            "fl=29f1\nh=1.1.1.1\nip={ip}\nts=1732420000.123\nvisit_scheme=https\nuag=oracle-watchdog\ncolo=FRA\nsliver=none\nhttp=http/1.1\nloc=DE\ntls=TLSv1.3\nsni=off\nwarp=off\ngateway=off\nrbi=off\nkex=X25519\n"
        )
    } else {
        ip.to_string()
    }
}

fn park(core: &Arc<Core>, request: tiny_http::Request) {
    let c = Arc::clone(core);
    let spawned = std::thread::Builder::new()
        .name("ip-standin-hang".into())
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

fn admin_call(core: &Core, method: &str, path: &str, query: &str) -> (u16, String) {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    let mut st = lock(&core.state);
    match (method, path) {
        ("PUT", "ip") => match param("value") {
            Some(v) => {
                st.standing = IpAnswer::Ip(v);
                (200, "ok\n".into())
            }
            None => (400, "value= is required\n".into()),
        },
        ("PUT", "fault") => match param("kind").as_deref().and_then(IpFault::parse) {
            Some(f) => {
                st.standing = IpAnswer::Fault(f);
                (200, "ok\n".into())
            }
            None => (
                400,
                "kind= html|ipv6|empty|garbage|oversized|hang|statusNNN\n".into(),
            ),
        },
        ("DELETE", "fault") => {
            if let IpAnswer::Fault(_) = st.standing {
                st.standing = IpAnswer::Ip("198.51.100.1".into());
            }
            (200, "ok\n".into())
        }
        ("GET", "requests") => (200, format!("{}\n", st.requests.len())),
        _ => (
            404,
            format!("no admin endpoint {method} /_standin/{path}\n"),
        ),
    }
}

/// Runs the stand-in as a process: `ipprovider --listen ADDR --ip A.B.C.D`.
/// Prints `ipprovider listening on ADDR` and serves until killed.
pub fn serve_from_args(mut args: pico_args::Arguments) -> Result<(), String> {
    let bind: SocketAddr = args
        .opt_value_from_str("--listen")
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let ip: String = args
        .opt_value_from_str("--ip")
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| "198.51.100.1".into());
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!("unexpected arguments: {rest:?}"));
    }
    let p = IpProvider::start_with(bind, &ip, Duration::from_secs(60))
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    let mut out = io::stdout();
    writeln!(out, "ipprovider listening on {}", p.addr()).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    loop {
        std::thread::park();
    }
}
