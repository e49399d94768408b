//! Consul stand-in: the part of Consul's HTTP API v1 oracle-watchdog uses, with fault injection.
//!
//! Behaves like a single-server Consul for status, sessions (TTL, expiry at
//! `expiry_factor` x TTL, release/delete behaviour, lock-delay) and KV
//! (acquire/release/cas, recurse/keys, tombstones, blocking queries with a
//! Raft-like index), plus an optional ACL token. Faults switch at run time:
//! refuse (nothing listens; same port when cleared), hang, no leader,
//! latency, a fixed status code, and a wipe that moves the index backwards.
//!
//! ```no_run
//! use watchdog_standins::consul::{ConsulStandin, Fault};
//! let consul = ConsulStandin::start().expect("bind loopback");
//! let addr = consul.http_addr(); // "127.0.0.1:PORT"
//! consul.set_fault(Fault::NoLeader).expect("set fault");
//! consul.clear_faults().expect("clear faults");
//! # let _ = addr;
//! ```
//!
//! The same controls exist over HTTP under `/_standin/` (see `admin.rs`).

mod admin;
mod api;
mod duration;
mod http;
mod server;
mod store;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use server::Core;

/// How to start a [`ConsulStandin`].
#[derive(Clone)]
pub struct ConsulOptions {
    /// Where to listen; `127.0.0.1:0` picks a free port.
    pub bind: SocketAddr,
    /// Sessions are invalidated after `expiry_factor` x TTL without renewal
    /// (Consul: 2.0). Tests use e.g. 0.1 so a 10 s TTL expires after 1 s.
    pub expiry_factor: f64,
    /// ACL token every request (except `/v1/status/*`) must carry.
    pub token: Option<String>,
    /// The agent's node name; sessions default to it.
    pub node_name: String,
    /// What `/v1/status/leader` reports while there is a leader.
    pub leader_addr: String,
    /// Behave like a server without blocking queries: `index`/`wait` are
    /// ignored (reads answer at once) and `X-Consul-Index` is omitted, so
    /// clients fall back to plain polling. Used to benchmark that fallback.
    pub no_blocking: bool,
}

impl Default for ConsulOptions {
    fn default() -> Self {
        ConsulOptions {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            expiry_factor: 2.0,
            token: None,
            node_name: "consul-standin".to_string(),
            leader_addr: "127.0.0.1:8300".to_string(),
            no_blocking: false,
        }
    }
}

impl fmt::Debug for ConsulOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulOptions")
            .field("bind", &self.bind)
            .field("expiry_factor", &self.expiry_factor)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("node_name", &self.node_name)
            .field("leader_addr", &self.leader_addr)
            .field("no_blocking", &self.no_blocking)
            .finish()
    }
}

/// A failure mode to inject. Refuse, Hang, NoLeader and Status replace each
/// other; Latency adds to whichever is active; Wipe is a one-shot action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Stop listening and close open connections: clients get "connection
    /// refused". Clearing listens again on the same port.
    Refuse,
    /// Accept and read requests but never answer until cleared, then close.
    Hang,
    /// `/v1/status/leader` answers `""`; every other endpoint 500 "No cluster leader".
    NoLeader,
    /// Delay every answer by this long.
    Latency(Duration),
    /// Answer every API request with this status code.
    Status(u16),
    /// Drop all sessions and keys; the index goes back to a low number
    /// (like a snapshot restore). Wakes blocking queries.
    Wipe,
}

/// What happens to a session's locked keys when it is invalidated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionBehavior {
    /// Keys stay, unlocked (Consul's default).
    Release,
    /// Keys are deleted.
    Delete,
}

impl SessionBehavior {
    /// The wire name (`"release"` / `"delete"`).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionBehavior::Release => "release",
            SessionBehavior::Delete => "delete",
        }
    }
}

/// A session as the stand-in holds it, for assertions.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionView {
    /// Session id (UUID).
    pub id: String,
    /// `Name` from the create request.
    pub name: String,
    /// Node the session belongs to.
    pub node: String,
    /// Release or delete on invalidation.
    pub behavior: SessionBehavior,
    /// The TTL, if any.
    pub ttl: Option<Duration>,
    /// Lock-delay applied to held keys on invalidation.
    pub lock_delay: Duration,
    /// Health checks the session is tied to (`serfHealth` by default).
    pub checks: Vec<String>,
    /// Index at creation.
    pub create_index: u64,
    /// When the session expires unless renewed.
    pub expires_at: Option<Instant>,
}

impl From<&store::Session> for SessionView {
    fn from(s: &store::Session) -> Self {
        SessionView {
            id: s.id.clone(),
            name: s.name.clone(),
            node: s.node.clone(),
            behavior: s.behavior,
            ttl: s.ttl,
            lock_delay: s.lock_delay,
            checks: s.checks.clone(),
            create_index: s.create_index,
            expires_at: s.deadline,
        }
    }
}

/// A KV entry as the stand-in holds it, for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvView {
    /// Full key.
    pub key: String,
    /// Raw value bytes.
    pub value: Vec<u8>,
    /// Opaque flags.
    pub flags: u64,
    /// Session holding the lock, if any.
    pub session: Option<String>,
    /// Number of times the lock was newly acquired.
    pub lock_index: u64,
    /// Index at creation.
    pub create_index: u64,
    /// Index of the last change.
    pub modify_index: u64,
}

impl From<&store::Entry> for KvView {
    fn from(e: &store::Entry) -> Self {
        KvView {
            key: e.key.clone(),
            value: e.value.clone(),
            flags: e.flags,
            session: e.session.clone(),
            lock_index: e.lock_index,
            create_index: e.create_index,
            modify_index: e.modify_index,
        }
    }
}

/// One API request the stand-in received (admin requests are not recorded).
#[derive(Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Decoded path, e.g. `/v1/kv/oracle-watchdog/nodes/n1`.
    pub path: String,
    /// Decoded query pairs, without `token`.
    pub query: Vec<(String, String)>,
    /// ACL token used (query `token`, `X-Consul-Token` or `Authorization: Bearer`).
    pub token: Option<String>,
    /// Request body.
    pub body: Vec<u8>,
    /// When the request was read (before any fault delay).
    pub received_at: Instant,
}

impl RecordedRequest {
    /// First value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("body_len", &self.body.len())
            .field("received_at", &self.received_at)
            .finish()
    }
}

/// A running Consul stand-in. Dropping it stops it and joins its threads.
pub struct ConsulStandin {
    core: Arc<Core>,
}

impl fmt::Debug for ConsulStandin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulStandin")
            .field("addr", &self.core.addr)
            .finish()
    }
}

pub(crate) fn wipe_core(core: &Core) {
    core.mutate(|inner| {
        inner.store.wipe();
        inner.wipe_epoch += 1;
    });
}

pub(crate) fn invalidate_on(core: &Core, id: &str) -> bool {
    core.mutate(|inner| inner.store.invalidate_session(id, Instant::now()))
}

impl ConsulStandin {
    /// Starts on `127.0.0.1:0` with Consul's defaults.
    pub fn start() -> io::Result<ConsulStandin> {
        ConsulStandin::start_with(ConsulOptions::default())
    }

    /// Starts with the given options.
    pub fn start_with(options: ConsulOptions) -> io::Result<ConsulStandin> {
        Ok(ConsulStandin {
            core: Core::start(options)?,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.core.addr
    }

    /// `"127.0.0.1:PORT"`, the form `CONSUL_HTTP_ADDR` takes.
    pub fn http_addr(&self) -> String {
        self.core.addr.to_string()
    }

    /// `"http://127.0.0.1:PORT"`.
    pub fn url(&self) -> String {
        format!("http://{}", self.core.addr)
    }

    /// Injects a fault. Fails only when leaving refuse mode cannot re-bind
    /// the port (then the stand-in stays down).
    pub fn set_fault(&self, fault: Fault) -> io::Result<()> {
        self.core.set_fault(fault).map(|_| ())
    }

    /// Injects a fault that clears itself after `duration` (unless faults
    /// were changed in the meantime).
    pub fn set_fault_for(&self, fault: Fault, duration: Duration) -> io::Result<()> {
        let epoch = self.core.set_fault(fault)?;
        self.core.schedule_clear(fault, epoch, duration)
    }

    /// Clears every fault (listening again on the same port after refuse).
    pub fn clear_faults(&self) -> io::Result<()> {
        self.core.clear_faults()
    }

    /// Drops all sessions and keys; the index goes back to a low number.
    pub fn wipe(&self) {
        wipe_core(&self.core);
    }

    /// Requires (or with `None` stops requiring) an ACL token.
    pub fn require_token(&self, token: Option<String>) {
        self.core.mutate(|inner| inner.token = token);
    }

    /// Invalidates a session as if its TTL ran out. Returns whether it existed.
    pub fn invalidate_session(&self, id: &str) -> bool {
        invalidate_on(&self.core, id)
    }

    /// All live sessions.
    pub fn sessions(&self) -> Vec<SessionView> {
        let inner = self.core.inner();
        inner
            .store
            .session_list(None)
            .1
            .iter()
            .map(SessionView::from)
            .collect()
    }

    /// One key, if present.
    pub fn kv_get(&self, key: &str) -> Option<KvView> {
        self.core
            .inner()
            .store
            .kv_get(key)
            .1
            .as_ref()
            .map(KvView::from)
    }

    /// Every key under a prefix.
    pub fn kv_list(&self, prefix: &str) -> Vec<KvView> {
        self.core
            .inner()
            .store
            .kv_list(prefix)
            .1
            .iter()
            .map(KvView::from)
            .collect()
    }

    /// Writes a key like a plain `PUT` (keeps an existing lock, bumps the index).
    pub fn kv_put(&self, key: &str, value: impl Into<Vec<u8>>) {
        let value = value.into();
        self.core.mutate(|inner| inner.store.kv_set(key, value, 0));
    }

    /// Deletes a key like `DELETE` (wakes blocking queries). Returns whether it existed.
    pub fn kv_delete(&self, key: &str) -> bool {
        self.core.mutate(|inner| {
            let existed = inner.store.kv_get(key).1.is_some();
            inner.store.kv_delete(key, None);
            existed
        })
    }

    /// The current global index.
    pub fn index(&self) -> u64 {
        self.core.inner().store.index()
    }

    /// Every recorded API request, oldest first (the last 10 000).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.core.inner().requests.iter().cloned().collect()
    }

    /// Forgets recorded requests.
    pub fn clear_requests(&self) {
        self.core.mutate(|inner| inner.requests.clear());
    }

    /// Waits until a recorded request matches `pred` (already recorded ones
    /// count) or `timeout` passes; returns the first match. Avoids sleeps in tests.
    pub fn wait_for_request(
        &self,
        timeout: Duration,
        pred: impl Fn(&RecordedRequest) -> bool,
    ) -> Option<RecordedRequest> {
        self.wait_on_state(timeout, |inner| {
            inner.requests.iter().find(|r| pred(r)).cloned()
        })
    }

    /// Waits until `pred` holds for the key's current entry (or absence) or
    /// `timeout` passes; returns whether it held.
    pub fn wait_for_kv(
        &self,
        key: &str,
        timeout: Duration,
        pred: impl Fn(Option<&KvView>) -> bool,
    ) -> bool {
        self.wait_on_state(timeout, |inner| {
            let view = inner.store.kv_get(key).1.as_ref().map(KvView::from);
            pred(view.as_ref()).then_some(())
        })
        .is_some()
    }

    /// How many blocking queries are parked right now, waiting for a change.
    pub fn parked_queries(&self) -> usize {
        self.core.inner().parked_queries
    }

    /// Waits until at least `n` blocking queries are parked (a client is
    /// really waiting on the stand-in) or `timeout` passes; returns whether
    /// that happened.
    pub fn wait_for_parked_queries(&self, n: usize, timeout: Duration) -> bool {
        self.wait_on_state(timeout, |inner| (inner.parked_queries >= n).then_some(()))
            .is_some()
    }

    /// Re-evaluates `check` on the state after every change until it yields
    /// a value, `timeout` passes or the stand-in shuts down.
    fn wait_on_state<T>(
        &self,
        timeout: Duration,
        check: impl Fn(&server::Inner) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.core.inner();
        loop {
            if let Some(found) = check(&inner) {
                return Some(found);
            }
            let now = Instant::now();
            if now >= deadline || inner.shutting_down {
                return None;
            }
            inner = self
                .core
                .changed
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Stops listening, closes connections and joins all threads. Idempotent;
    /// also done on drop.
    pub fn shutdown(&self) {
        self.core.shutdown();
    }
}

impl Drop for ConsulStandin {
    fn drop(&mut self) {
        self.core.shutdown();
    }
}
