//! The Consul stand-in's moving parts: listener, one thread per connection, fault gate, expiry thread.
//!
//! Locking: `inner` (data, faults, recorded requests) is held only for short
//! sections and never across socket I/O; blocking queries, latency and hang
//! wait on the `changed` condvar. `listener` serialises going down/up for the
//! refuse fault (joining the accept thread happens under it, nothing else
//! does). `conns` tracks open sockets so that "down" and shutdown can close
//! them and join their threads.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::http::{self, ReadError, Request, Response};
use super::store::Store;
use super::{ConsulOptions, Fault, RecordedRequest, admin, api};

/// How many requests the recorder keeps (oldest dropped first).
const MAX_RECORDED: usize = 10_000;

/// The stand-in's exclusive fault modes; latency combines with any of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Normal,
    Refuse,
    Hang,
    NoLeader,
    Status(u16),
}

/// Everything behind the `inner` mutex.
pub(crate) struct Inner {
    pub store: Store,
    pub mode: Mode,
    pub latency: Option<Duration>,
    /// Bumped by every fault change; a timed clear only fires if unchanged.
    pub fault_epoch: u64,
    /// Bumped by every wipe; wakes blocking queries like a snapshot restore.
    pub wipe_epoch: u64,
    pub token: Option<String>,
    /// Blocking queries currently parked waiting for a change.
    pub parked_queries: usize,
    pub requests: VecDeque<RecordedRequest>,
    pub shutting_down: bool,
}

/// The running accept loop.
struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Open connections, so they can be closed when the stand-in goes down.
#[derive(Default)]
struct Conns {
    next_id: u64,
    live: HashMap<u64, (TcpStream, Option<JoinHandle<()>>)>,
}

/// Shared by the handle, the accept thread and every connection thread.
pub(crate) struct Core {
    pub options: ConsulOptions,
    pub addr: SocketAddr,
    pub started: Instant,
    inner: Mutex<Inner>,
    /// Notified on every state, fault or request-log change.
    pub changed: Condvar,
    listener: Mutex<Option<Acceptor>>,
    conns: Mutex<Conns>,
    background: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    /// Binds, starts the accept and expiry threads.
    pub fn start(options: ConsulOptions) -> io::Result<Arc<Core>> {
        if !(options.expiry_factor.is_finite() && options.expiry_factor > 0.0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "expiry_factor must be a positive number",
            ));
        }
        let listener = TcpListener::bind(options.bind)?;
        let addr = listener.local_addr()?;
        let core = Arc::new(Core {
            addr,
            started: Instant::now(),
            inner: Mutex::new(Inner {
                store: Store::new(options.expiry_factor),
                mode: Mode::Normal,
                latency: None,
                fault_epoch: 0,
                wipe_epoch: 0,
                token: options.token.clone(),
                parked_queries: 0,
                requests: VecDeque::new(),
                shutting_down: false,
            }),
            options,
            changed: Condvar::new(),
            listener: Mutex::new(None),
            conns: Mutex::new(Conns::default()),
            background: Mutex::new(Vec::new()),
        });
        *lock(&core.listener) = Some(Core::spawn_acceptor(&core, listener)?);
        let reaper_core = Arc::clone(&core);
        let reaper = thread::Builder::new()
            .name("consul-standin-expiry".into())
            .spawn(move || reaper_core.expiry_loop())?;
        lock(&core.background).push(reaper);
        Ok(core)
    }

    /// Locks the shared data.
    pub fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Runs `f` on the data and wakes every waiter afterwards.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let result = f(&mut self.inner());
        self.changed.notify_all();
        result
    }

    fn spawn_acceptor(core: &Arc<Core>, listener: TcpListener) -> io::Result<Acceptor> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread_core = Arc::clone(core);
        let thread = thread::Builder::new()
            .name("consul-standin-accept".into())
            .spawn(move || thread_core.accept_loop(listener, &thread_stop))?;
        Ok(Acceptor { stop, thread })
    }

    fn accept_loop(self: &Arc<Self>, listener: TcpListener, stop: &AtomicBool) {
        loop {
            let accepted = listener.accept();
            if stop.load(Ordering::SeqCst) {
                return; // dropping the listener: new connections are refused
            }
            match accepted {
                Ok((stream, _)) => self.spawn_connection(stream),
                // Transient accept errors (aborted handshakes, fd limits): back off briefly.
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    fn spawn_connection(self: &Arc<Self>, stream: TcpStream) {
        let Ok(control) = stream.try_clone() else {
            return;
        };
        let mut conns = lock(&self.conns);
        let id = conns.next_id;
        conns.next_id += 1;
        let core = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("consul-standin-conn".into())
            .spawn(move || {
                core.serve_connection(stream);
                lock(&core.conns).live.remove(&id);
            });
        if let Ok(handle) = spawned {
            conns.live.insert(id, (control, Some(handle)));
        }
    }

    /// Stops listening and closes every open connection (the refuse fault).
    fn go_down(&self, listener: &mut Option<Acceptor>) {
        if let Some(acceptor) = listener.take() {
            acceptor.stop.store(true, Ordering::SeqCst);
            let wake = match self.addr {
                SocketAddr::V4(a) if a.ip().is_unspecified() => {
                    SocketAddr::from((Ipv4Addr::LOCALHOST, a.port()))
                }
                SocketAddr::V6(a) if a.ip().is_unspecified() => {
                    SocketAddr::from((Ipv6Addr::LOCALHOST, a.port()))
                }
                other => other,
            };
            // Unblock accept(); the thread sees `stop` and drops the listener.
            if TcpStream::connect_timeout(&wake, Duration::from_secs(2)).is_ok() {
                let _ = acceptor.thread.join();
            }
        }
        for (stream, _) in lock(&self.conns).live.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same address.
    fn go_up(self: &Arc<Self>, listener: &mut Option<Acceptor>) -> io::Result<()> {
        if listener.is_some() || self.inner().shutting_down {
            return Ok(());
        }
        let bound = TcpListener::bind(self.addr)?;
        *listener = Some(Core::spawn_acceptor(self, bound)?);
        Ok(())
    }

    /// Applies a fault (see [`Fault`]).
    pub fn set_fault(self: &Arc<Self>, fault: Fault) -> io::Result<u64> {
        let mut listener = lock(&self.listener);
        let (previous, epoch) = {
            let mut inner = self.inner();
            let previous = inner.mode;
            match fault {
                Fault::Latency(d) => inner.latency = (!d.is_zero()).then_some(d),
                Fault::Refuse => inner.mode = Mode::Refuse,
                Fault::Hang => inner.mode = Mode::Hang,
                Fault::NoLeader => inner.mode = Mode::NoLeader,
                Fault::Status(code) => inner.mode = Mode::Status(code),
                Fault::Wipe => {
                    inner.store.wipe();
                    inner.wipe_epoch += 1;
                }
            }
            inner.fault_epoch += 1;
            (previous, inner.fault_epoch)
        };
        self.changed.notify_all();
        let now_refusing = matches!(fault, Fault::Refuse);
        if now_refusing && previous != Mode::Refuse {
            self.go_down(&mut listener);
        } else if previous == Mode::Refuse
            && matches!(fault, Fault::Hang | Fault::NoLeader | Fault::Status(_))
        {
            self.come_back(&mut listener)?;
        }
        Ok(epoch)
    }

    fn come_back(self: &Arc<Self>, listener: &mut Option<Acceptor>) -> io::Result<()> {
        if let Err(err) = self.go_up(listener) {
            // Still down: say so in the state.
            self.mutate(|inner| inner.mode = Mode::Refuse);
            return Err(err);
        }
        Ok(())
    }

    /// Clears every fault; listens again if the stand-in was refusing.
    pub fn clear_faults(self: &Arc<Self>) -> io::Result<()> {
        let mut listener = lock(&self.listener);
        let previous = self.mutate(|inner| {
            inner.fault_epoch += 1;
            inner.latency = None;
            std::mem::replace(&mut inner.mode, Mode::Normal)
        });
        if previous == Mode::Refuse {
            self.come_back(&mut listener)?;
        }
        Ok(())
    }

    /// Clears only `fault` after `after`, unless faults changed in between.
    pub fn schedule_clear(
        self: &Arc<Self>,
        fault: Fault,
        epoch: u64,
        after: Duration,
    ) -> io::Result<()> {
        let core = Arc::clone(self);
        let timer = thread::Builder::new()
            .name("consul-standin-timer".into())
            .spawn(move || {
                let deadline = Instant::now() + after;
                let mut inner = core.inner();
                loop {
                    if inner.shutting_down || inner.fault_epoch != epoch {
                        return;
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    inner = core
                        .changed
                        .wait_timeout(inner, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                drop(inner);
                let mut listener = lock(&core.listener);
                let previous = {
                    let mut inner = core.inner();
                    if inner.fault_epoch != epoch {
                        return;
                    }
                    inner.fault_epoch += 1;
                    let previous = inner.mode;
                    match fault {
                        Fault::Latency(_) => inner.latency = None,
                        Fault::Wipe => {}
                        _ => inner.mode = Mode::Normal,
                    }
                    previous
                };
                core.changed.notify_all();
                if previous == Mode::Refuse
                    && !matches!(fault, Fault::Latency(_))
                    && let Err(err) = core.come_back(&mut listener)
                {
                    eprintln!(
                        "consul stand-in: could not listen again on {}: {err}",
                        core.addr
                    );
                }
            })?;
        let mut background = lock(&self.background);
        background.retain(|h| !h.is_finished());
        background.push(timer);
        Ok(())
    }

    /// Stops everything and joins every thread. Idempotent.
    pub fn shutdown(&self) {
        self.mutate(|inner| inner.shutting_down = true);
        {
            let mut listener = lock(&self.listener);
            self.go_down(&mut listener);
        }
        let handles: Vec<JoinHandle<()>> = lock(&self.conns)
            .live
            .values_mut()
            .filter_map(|(_, handle)| handle.take())
            .collect();
        for handle in handles {
            let _ = handle.join();
        }
        let background: Vec<JoinHandle<()>> = lock(&self.background).drain(..).collect();
        for handle in background {
            let _ = handle.join();
        }
    }

    /// Invalidates sessions when their deadline passes.
    fn expiry_loop(&self) {
        let mut inner = self.inner();
        loop {
            if inner.shutting_down {
                return;
            }
            let now = Instant::now();
            if inner.store.expire_sessions(now) > 0 {
                self.changed.notify_all();
            }
            inner = match inner.store.next_deadline() {
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(inner, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(inner)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// Reads requests off one connection until it closes.
    fn serve_connection(self: &Arc<Self>, stream: TcpStream) {
        let mut reader = BufReader::new(stream);
        loop {
            let request = match http::read_request(&mut reader) {
                Ok(request) => request,
                Err(ReadError::Closed | ReadError::Io) => break,
                Err(ReadError::Malformed(why)) => {
                    let _ =
                        http::write_response(reader.get_mut(), &Response::text(400, why), false);
                    break;
                }
                Err(ReadError::TooLarge) => {
                    let _ = http::write_response(
                        reader.get_mut(),
                        &Response::text(413, "Request too large"),
                        false,
                    );
                    break;
                }
            };
            let Some((response, after)) = self.dispatch(&request) else {
                break; // hang ended or the stand-in went down: close without answering
            };
            let keep_alive = request.keep_alive && !self.inner().shutting_down;
            let written = http::write_response(reader.get_mut(), &response, keep_alive);
            if let Some(after) = after {
                after(self);
            }
            if written.is_err() || !keep_alive {
                break;
            }
        }
        let _ = reader.get_ref().shutdown(Shutdown::Both);
    }

    /// Routes a request through the fault gate; `None` means "close, no answer".
    fn dispatch(self: &Arc<Self>, request: &Request) -> Option<(Response, Option<admin::After>)> {
        if request.path == "/_standin" || request.path.starts_with("/_standin/") {
            let (response, after) = admin::handle(self, request);
            return Some((response, after));
        }
        self.record(request);

        let latency = self.inner().latency;
        if let Some(latency) = latency {
            let deadline = Instant::now() + latency;
            let mut inner = self.inner();
            while !inner.shutting_down {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                inner = self
                    .changed
                    .wait_timeout(inner, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }

        let mut inner = self.inner();
        match inner.mode {
            Mode::Refuse => return None,
            Mode::Hang => {
                while inner.mode == Mode::Hang && !inner.shutting_down {
                    inner = self
                        .changed
                        .wait(inner)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                return None;
            }
            Mode::Status(code) => {
                return Some((
                    Response::text(code, format!("stand-in fault: status {code}")),
                    None,
                ));
            }
            Mode::NoLeader | Mode::Normal => {}
        }
        let known_leader = inner.mode != Mode::NoLeader;
        let required = inner.token.clone();
        drop(inner);

        let response = if !known_leader && !request.path.starts_with("/v1/status/") {
            api::with_meta(
                Response::text(500, "No cluster leader"),
                self.inner().store.index(),
                false,
            )
        } else if let Some(problem) = acl_problem(request, required.as_deref()) {
            api::with_meta(
                Response::text(403, problem),
                self.inner().store.index(),
                known_leader,
            )
        } else {
            api::handle(self, request, known_leader)
        };
        Some((response, None))
    }

    fn record(&self, request: &Request) {
        let recorded = RecordedRequest {
            method: request.method.clone(),
            path: request.path.clone(),
            query: request
                .query
                .iter()
                .filter(|(k, _)| k != "token")
                .cloned()
                .collect(),
            token: request_token(request).map(str::to_string),
            body: request.body.clone(),
            received_at: Instant::now(),
        };
        self.mutate(|inner| {
            if inner.requests.len() >= MAX_RECORDED {
                inner.requests.pop_front();
            }
            inner.requests.push_back(recorded);
        });
    }
}

/// The ACL token a request carries, in Consul's order of precedence.
pub(crate) fn request_token(request: &Request) -> Option<&str> {
    request
        .param("token")
        .filter(|t| !t.is_empty())
        .or_else(|| request.header("x-consul-token").filter(|t| !t.is_empty()))
        .or_else(|| {
            request
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
        })
}

/// Why the ACL check fails, if it does. Status endpoints need no token in Consul.
fn acl_problem(request: &Request, required: Option<&str>) -> Option<&'static str> {
    let required = required?;
    if request.path.starts_with("/v1/status/") {
        return None;
    }
    match request_token(request) {
        None => Some("Permission denied"),
        Some(token) if token == required => None,
        Some(_) => Some("ACL not found"),
    }
}
