//! OCI Core Services stand-in: verifies every request signature and simulates instance lifecycles and faults.
//!
//! Serves `GET /20160918/instances/{id}` and
//! `POST /20160918/instances/{id}?action=STOP|START|SOFTSTOP|RESET|SOFTRESET`.
//! Every API request's signature is checked like OCI does (required headers
//! signed, `date` within the allowed skew, `x-content-sha256` and
//! `content-length` matching the body, `keyId` registered, RSA signature
//! valid); a failure is answered 401 `NotAuthenticated` with the reason as
//! message. Every answer carries `opc-request-id`. `opc-retry-token` makes a
//! repeated action return the first answer without acting twice.
//!
//! Admin API (no signature needed) under `/_standin/`:
//! `GET requests`, `GET instances`, `PUT instances/{id}?state=RUNNING`,
//! `POST stick/{id}`, `PUT transition?ms=N`, `POST keys` `{"key_id","pem"}`,
//! `POST faults` `{"fault":"throttle","count":2,"retry_after":1}` (faults:
//! `409`, `throttle`, `500`, `capacity`, `hang`, `unauthorized`,
//! `status` with `"status":N`), `DELETE faults`.

mod model;
mod server;
mod verify;

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use server::{Core, lock};

/// Instance lifecycle states the stand-in models.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LifecycleState {
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
    /// Being deleted.
    Terminating,
    /// Deleted.
    Terminated,
    /// Any other OCI state name.
    Other(String),
}

impl LifecycleState {
    /// OCI's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            LifecycleState::Provisioning => "PROVISIONING",
            LifecycleState::Running => "RUNNING",
            LifecycleState::Starting => "STARTING",
            LifecycleState::Stopping => "STOPPING",
            LifecycleState::Stopped => "STOPPED",
            LifecycleState::Terminating => "TERMINATING",
            LifecycleState::Terminated => "TERMINATED",
            LifecycleState::Other(s) => s,
        }
    }

    /// Parses OCI's spelling (case-insensitive).
    pub fn parse(s: &str) -> LifecycleState {
        match s.to_ascii_uppercase().as_str() {
            "PROVISIONING" => LifecycleState::Provisioning,
            "RUNNING" => LifecycleState::Running,
            "STARTING" => LifecycleState::Starting,
            "STOPPING" => LifecycleState::Stopping,
            "STOPPED" => LifecycleState::Stopped,
            "TERMINATING" => LifecycleState::Terminating,
            "TERMINATED" => LifecycleState::Terminated,
            other => LifecycleState::Other(other.to_string()),
        }
    }
}

/// A fault injected into upcoming API requests (after signature checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 409 `IncorrectState`.
    Status409,
    /// 429 `TooManyRequests`, with `Retry-After: N` seconds when given.
    Throttle {
        /// `Retry-After` seconds.
        retry_after: Option<u64>,
    },
    /// 500 `InternalError` (a transient server error).
    Status500,
    /// 500 "Out of host capacity." — only consumed by START actions.
    OutOfCapacityOnStart,
    /// Reads the request and never answers (until the hang time passes).
    Hang,
    /// 401 `NotAuthenticated` even for a valid signature.
    Unauthorized,
    /// Any other status, with code `InjectedFault`.
    Status(u16),
}

/// One API request as the stand-in saw it (admin requests are not recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedOciRequest {
    /// HTTP method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// `action=` value for instance actions.
    pub action: Option<String>,
    /// `opc-retry-token` header.
    pub retry_token: Option<String>,
    /// `keyId` of a valid signature.
    pub key_id: Option<String>,
    /// Whether the signature verified.
    pub signature_ok: bool,
    /// Why the signature failed (or that the request was hung).
    pub reason: Option<String>,
    /// Status answered (0 when hung).
    pub status: u16,
    /// `opc-request-id` answered.
    pub opc_request_id: String,
}

/// How to start the stand-in.
#[derive(Debug, Clone)]
pub struct OciOptions {
    /// Listen address (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
    /// STOPPING -> STOPPED and STARTING -> RUNNING take this long.
    pub transition_time: Duration,
    /// Largest accepted difference between `date` and the stand-in's clock.
    pub max_skew: Duration,
    /// How long a hung request is held before the connection is dropped.
    pub hang_time: Duration,
    /// Worker threads answering requests.
    pub workers: usize,
}

impl Default for OciOptions {
    fn default() -> Self {
        OciOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            transition_time: Duration::from_millis(200),
            max_skew: Duration::from_secs(300),
            hang_time: Duration::from_secs(60),
            workers: 4,
        }
    }
}

/// A running OCI stand-in; stops when dropped.
pub struct OciStandin {
    core: Arc<Core>,
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
}

impl OciStandin {
    /// Starts with default options on a free loopback port.
    pub fn start() -> io::Result<OciStandin> {
        Self::start_with(OciOptions::default())
    }

    /// Starts with the given options.
    pub fn start_with(options: OciOptions) -> io::Result<OciStandin> {
        let server = tiny_http::Server::http(options.bind).map_err(io::Error::other)?;
        let addr = server.server_addr().to_ip().ok_or_else(|| {
            io::Error::other("the OCI stand-in is not listening on an IP address")
        })?;
        let server = Arc::new(server);
        let core = Arc::new(Core::new(options.clone()));
        let mut workers = Vec::new();
        for i in 0..options.workers.max(1) {
            let server = Arc::clone(&server);
            let core = Arc::clone(&core);
            workers.push(
                std::thread::Builder::new()
                    .name(format!("oci-standin-{i}"))
                    .spawn(move || {
                        while !core.is_stopping() {
                            match server.recv_timeout(Duration::from_millis(100)) {
                                Ok(Some(request)) => core.handle(request),
                                Ok(None) => {}
                                Err(_) => break,
                            }
                        }
                    })?,
            );
        }
        Ok(OciStandin {
            core,
            server,
            addr,
            workers,
        })
    }

    /// `http://127.0.0.1:PORT`, to use as the client's endpoint override.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds an instance (or forces the state of an existing one).
    pub fn add_instance(&self, id: &str, state: LifecycleState) {
        server::set_instance(&mut lock(&self.core.world), id, state);
    }

    /// The instance's current state (pending transitions applied).
    pub fn instance_state(&self, id: &str) -> Option<LifecycleState> {
        let mut world = lock(&self.core.world);
        world.settle(std::time::Instant::now());
        world.instances.get(id).map(|r| r.state.clone())
    }

    /// Actions actually performed on the instance, in order (replays of an
    /// `opc-retry-token` are not counted).
    pub fn actions_performed(&self, id: &str) -> Vec<String> {
        lock(&self.core.world)
            .instances
            .get(id)
            .map(|r| r.actions.clone())
            .unwrap_or_default()
    }

    /// Sets how long STOPPING and STARTING last.
    pub fn set_transition_time(&self, duration: Duration) {
        lock(&self.core.world).transition = duration;
    }

    /// Accepts signatures by `key_id` made with this key. `pem` is a public
    /// key (`PUBLIC KEY`/`RSA PUBLIC KEY`) or an unencrypted private key.
    pub fn register_key(&self, key_id: &str, pem: &str) -> Result<(), String> {
        let key = verify::parse_public_key(pem)?;
        lock(&self.core.keys).insert(key_id.to_string(), key);
        Ok(())
    }

    /// Makes the next `n` applicable API requests fail with `fault`.
    pub fn fail_next(&self, n: u32, fault: Fault) {
        if n > 0 {
            lock(&self.core.world).faults.push_back((fault, n));
        }
    }

    /// Removes all pending faults.
    pub fn clear_faults(&self) {
        lock(&self.core.world).faults.clear();
    }

    /// The instance stays in STOPPING forever once stopped.
    pub fn stick_in_stopping(&self, id: &str) {
        if let Some(rec) = lock(&self.core.world).instances.get_mut(id) {
            rec.stuck = true;
        }
    }

    /// All API requests so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedOciRequest> {
        lock(&self.core.world).requests.clone()
    }
}

impl Drop for OciStandin {
    fn drop(&mut self) {
        *lock(&self.core.stopping) = true;
        self.core.wake.notify_all();
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

/// Runs the stand-in as a process: `oci --listen ADDR --instance OCID=STATE
/// --key KEYID=PEMFILE --transition-ms N`. Prints `oci listening on ADDR`
/// and serves until killed.
pub fn serve_from_args(mut args: pico_args::Arguments) -> Result<(), String> {
    let mut options = OciOptions::default();
    if let Some(listen) = args
        .opt_value_from_str::<_, String>("--listen")
        .map_err(|e| e.to_string())?
    {
        options.bind = listen
            .parse()
            .map_err(|e| format!("--listen {listen}: {e}"))?;
    }
    if let Some(ms) = args
        .opt_value_from_str::<_, u64>("--transition-ms")
        .map_err(|e| e.to_string())?
    {
        options.transition_time = Duration::from_millis(ms);
    }
    if let Some(ms) = args
        .opt_value_from_str::<_, u64>("--hang-ms")
        .map_err(|e| e.to_string())?
    {
        options.hang_time = Duration::from_millis(ms);
    }
    let instances: Vec<String> = args
        .values_from_str("--instance")
        .map_err(|e| e.to_string())?;
    let keys: Vec<String> = args.values_from_str("--key").map_err(|e| e.to_string())?;
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!("unexpected arguments: {rest:?}"));
    }
    let standin = OciStandin::start_with(options).map_err(|e| format!("cannot start: {e}"))?;
    for spec in &instances {
        let (id, state) = spec
            .split_once('=')
            .ok_or_else(|| format!("--instance {spec}: expected OCID=STATE"))?;
        standin.add_instance(id, LifecycleState::parse(state));
    }
    for spec in &keys {
        // keyIds contain `/`; the file path follows the last `=`.
        let (key_id, file) = spec
            .rsplit_once('=')
            .ok_or_else(|| format!("--key {spec}: expected KEYID=PEMFILE"))?;
        let pem = std::fs::read_to_string(file).map_err(|e| format!("--key {file}: {e}"))?;
        standin
            .register_key(key_id, &pem)
            .map_err(|e| format!("--key {file}: {e}"))?;
    }
    let mut out = io::stdout();
    writeln!(out, "oci listening on {}", standin.addr()).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    loop {
        std::thread::park();
    }
}
