//! `/metrics` and `/healthz` over tiny_http on a thread of its own.
//!
//! A busy or forbidden port must never stop the heartbeat, so binding is
//! retried in the background (logged, every few seconds) while the mode's
//! real work goes on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use prometheus::Registry;

/// How long to wait between attempts to bind a busy port.
const BIND_RETRY: Duration = Duration::from_secs(5);
/// Pause after a failed accept, so a persistent error cannot spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(250);

/// The spec's default listen address per mode: `:9104` monitor, `:9105` agent.
pub fn default_listen_address(mode: &str) -> &'static str {
    if mode == "agent" { ":9105" } else { ":9104" }
}

/// Turns `:9104` (all interfaces, Go style), `host:port` or `[v6]:port` into a
/// socket address.
pub fn parse_listen_address(addr: &str) -> Result<SocketAddr, String> {
    let full = if let Some(port) = addr.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else {
        addr.to_string()
    };
    full.parse().map_err(|_| {
        format!(
            "invalid listen address {addr:?}: expected [host]:port, e.g. :9104 or 127.0.0.1:9104"
        )
    })
}

/// Handle of the running metrics server; dropping it does not stop it, call
/// [`MetricsServer::stop`].
pub struct MetricsServer {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
    bound: Receiver<SocketAddr>,
    /// The bound server, so `stop` can wake a thread blocked in `recv`.
    live: Arc<Mutex<Option<Arc<tiny_http::Server>>>>,
}

impl MetricsServer {
    /// Starts serving `registry` on `addr` from a thread named `metrics`.
    pub fn start(
        addr: SocketAddr,
        registry: Registry,
        mode: &'static str,
    ) -> std::io::Result<Self> {
        let (stop_tx, stop_rx) = bounded::<()>(1);
        let (bound_tx, bound_rx) = bounded::<SocketAddr>(1);
        let live = Arc::new(Mutex::new(None));
        let slot = live.clone();
        let thread = crate::supervise::spawn("metrics", move || {
            serve(
                addr,
                registry.clone(),
                mode,
                stop_rx.clone(),
                bound_tx.clone(),
                slot.clone(),
            )
        })?;
        Ok(MetricsServer {
            stop: stop_tx,
            thread: Some(thread),
            bound: bound_rx,
            live,
        })
    }

    /// Waits up to `timeout` for the port to be bound; returns the real
    /// address (useful with port 0).
    pub fn wait_bound(&self, timeout: Duration) -> Option<SocketAddr> {
        self.bound.recv_timeout(timeout).ok()
    }

    /// Stops serving and joins the thread.
    pub fn stop(mut self) {
        let _ = self.stop.try_send(());
        if let Some(server) = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            server.unblock();
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("metrics server thread panicked");
        }
    }
}

fn serve(
    addr: SocketAddr,
    registry: Registry,
    mode: &'static str,
    stop: Receiver<()>,
    bound: Sender<SocketAddr>,
    live: Arc<Mutex<Option<Arc<tiny_http::Server>>>>,
) {
    let mut warned = false;
    let server = loop {
        match tiny_http::Server::http(addr) {
            Ok(s) => break Arc::new(s),
            Err(e) => {
                if !warned {
                    tracing::warn!(address = %addr, error = %e, retry_in_s = BIND_RETRY.as_secs(), "cannot bind metrics port; retrying in the background");
                    warned = true;
                } else {
                    tracing::debug!(address = %addr, error = %e, "metrics port still unavailable");
                }
                if stop.recv_timeout(BIND_RETRY).is_ok() {
                    return;
                }
            }
        }
    };
    let local = server.server_addr().to_ip().unwrap_or(addr);
    *live.lock().unwrap_or_else(PoisonError::into_inner) = Some(server.clone());
    tracing::info!(address = %local, "metrics server listening");
    let _ = bound.try_send(local);
    // A stop request sent before `live` was filled would find nothing to unblock.
    if stop.try_recv().is_ok() {
        return;
    }
    // Blocks without polling; `MetricsServer::stop` unblocks it.
    loop {
        match server.recv() {
            Ok(request) => respond(request, &registry, mode),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted || stop.try_recv().is_ok() => {
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics server receive failed");
                if stop.recv_timeout(ACCEPT_ERROR_PAUSE).is_ok() {
                    return;
                }
            }
        }
    }
}

fn respond(request: tiny_http::Request, registry: &Registry, mode: &str) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let (status, content_type, body) = match (request.method(), path.as_str()) {
        (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            super::render(registry),
        ),
        (tiny_http::Method::Get | tiny_http::Method::Head, "/healthz") => (
            200,
            "application/json",
            format!(
                "{{\"status\":\"ok\",\"mode\":\"{mode}\",\"version\":\"{}\"}}\n",
                env!("CARGO_PKG_VERSION")
            ),
        ),
        (_, "/metrics" | "/healthz") => (405, "text/plain", "method not allowed\n".to_string()),
        _ => (
            404,
            "text/plain",
            "not found: try /metrics or /healthz\n".to_string(),
        ),
    };
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes());
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(h) = header {
        response = response.with_header(h);
    }
    if let Err(e) = request.respond(response) {
        tracing::debug!(error = %e, "metrics client went away");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_address_forms() {
        assert_eq!(
            parse_listen_address(":9104").unwrap().to_string(),
            "0.0.0.0:9104"
        );
        assert_eq!(
            parse_listen_address("127.0.0.1:1").unwrap().to_string(),
            "127.0.0.1:1"
        );
        assert_eq!(
            parse_listen_address("[::1]:9105").unwrap().to_string(),
            "[::1]:9105"
        );
        assert!(parse_listen_address("9104").is_err());
        assert!(parse_listen_address("localhost:x").is_err());
    }

    #[test]
    fn busy_port_is_retried_without_blocking_start() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let server = MetricsServer::start(addr, Registry::new(), "monitor").unwrap();
        assert_eq!(server.wait_bound(Duration::from_millis(300)), None);
        drop(taken);
        assert_eq!(server.wait_bound(BIND_RETRY * 3), Some(addr));
        server.stop();
    }
}
