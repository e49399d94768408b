//! Agent-mode WAN-IP DDNS updater: keeps a Cloudflare A record equal to the
//! agent host's public IPv4.
//!
//! * [`decide`]: the pure "should I patch" machine (schedule, cooldown,
//!   cached record id), tested in virtual time;
//! * [`detect`]: IP providers and body parsing (plain and trace formats);
//! * [`cloudflare`]: the API v4 client with typed errors;
//! * [`metrics`]: the spec's `wan_*` / `cloudflare_*` families;
//! * [`runner`]: the `wan-dns` loop thread.
//!
//! [`start`] reads the API token once from the configured environment
//! variable; it lives in a [`Secret`] inside the client and nowhere else.

pub mod cloudflare;
pub mod decide;
pub mod detect;
pub mod metrics;
pub mod runner;

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::config::WanDnsSettings;
use crate::secret::Secret;
use cloudflare::CloudflareClient;
use decide::{Timing, Updater};
use detect::Detector;
pub use metrics::WanDnsMetrics;

/// Why the updater could not start. The agent carries on without it.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The token variable is unset or empty.
    TokenMissing {
        /// The variable's name.
        var: String,
    },
    /// The token variable holds something that cannot be an API token
    /// (non-UTF-8, spaces or control characters). The value is not shown.
    TokenInvalid {
        /// The variable's name.
        var: String,
    },
    /// The metric families could not be registered.
    Metrics(prometheus::Error),
    /// The thread could not be spawned.
    Spawn(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::TokenMissing { var } => write!(
                f,
                "environment variable {var} (wan_dns.cloudflare.api_token_env) is not set or empty; set it to a Cloudflare API token with DNS:Edit on the zone"
            ),
            StartError::TokenInvalid { var } => write!(
                f,
                "environment variable {var} does not hold a usable API token (it contains spaces, control or non-ASCII characters)"
            ),
            StartError::Metrics(e) => write!(f, "cannot register metrics: {e}"),
            StartError::Spawn(e) => write!(f, "cannot start the wan-dns thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Reads the API token from the variable `var` (once, at start).
pub fn read_token(var: &str) -> Result<Secret, StartError> {
    let value = match std::env::var(var) {
        Ok(v) => v,
        Err(std::env::VarError::NotPresent) => {
            return Err(StartError::TokenMissing { var: var.into() });
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(StartError::TokenInvalid { var: var.into() });
        }
    };
    let token = value.trim();
    if token.is_empty() {
        return Err(StartError::TokenMissing { var: var.into() });
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StartError::TokenInvalid { var: var.into() });
    }
    Ok(Secret::new(token))
}

/// Handle of the running `wan-dns` thread.
pub struct WanDns {
    stop: Sender<()>,
    done: Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WanDns {
    /// Asks the thread to stop and waits up to `grace` for it (it may be in
    /// the middle of an HTTP call bounded by its own timeout). A thread
    /// still busy after that is left behind: the process is exiting.
    pub fn stop(mut self, grace: Duration) {
        let _ = self.stop.try_send(());
        match self.done.recv_timeout(grace) {
            Err(RecvTimeoutError::Disconnected) => {
                if let Some(t) = self.thread.take()
                    && t.join().is_err()
                {
                    tracing::error!("wan-dns thread panicked");
                }
            }
            _ => tracing::warn!("wan-dns thread still busy at shutdown; not waiting for it"),
        }
    }
}

/// Starts the updater for `settings` (already validated and enabled),
/// registering its metrics on `registry`.
pub fn start(
    settings: &WanDnsSettings,
    registry: &prometheus::Registry,
) -> Result<WanDns, StartError> {
    let token = read_token(&settings.cloudflare.api_token_env)?;
    start_with_token(settings, token, registry)
}

/// Like [`start`] with the token given (tests, or a token from elsewhere).
pub fn start_with_token(
    settings: &WanDnsSettings,
    token: Secret,
    registry: &prometheus::Registry,
) -> Result<WanDns, StartError> {
    let metrics = WanDnsMetrics::register(registry, &settings.detection_providers)
        .map_err(StartError::Metrics)?;
    let io = runner::Io {
        detector: Detector::new(settings.detection_providers.clone()),
        cloudflare: CloudflareClient::new(
            &settings.cloudflare.api_url,
            &settings.cloudflare.zone_id,
            token,
        ),
        hostname: settings.hostname.clone(),
        zone_id: settings.cloudflare.zone_id.clone(),
    };
    let machine = Updater::new(
        Timing {
            poll_interval: settings.poll_interval,
            cooldown: settings.cooldown,
        },
        settings.cloudflare.create_if_missing,
        Instant::now(),
    );
    tracing::info!(
        hostname = %settings.hostname,
        zone = %settings.cloudflare.zone_id,
        providers = ?settings.detection_providers,
        poll_interval_s = settings.poll_interval.as_secs(),
        cooldown_s = settings.cooldown.as_secs(),
        "WAN-IP DDNS updater starting"
    );
    let (stop_tx, stop_rx) = bounded(1);
    let (done_tx, done_rx) = bounded::<()>(0);
    let thread = std::thread::Builder::new()
        .name("wan-dns".into())
        .spawn(move || {
            let _done = done_tx;
            runner::run(machine, io, metrics, stop_rx);
        })
        .map_err(StartError::Spawn)?;
    Ok(WanDns {
        stop: stop_tx,
        done: done_rx,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_errors_name_the_variable_and_never_the_value() {
        let missing = "OW_TEST_WANDNS_TOKEN_UNSET_7f3a";
        let e = read_token(missing).unwrap_err();
        assert!(matches!(e, StartError::TokenMissing { .. }));
        assert!(e.to_string().contains(missing));
    }
}
