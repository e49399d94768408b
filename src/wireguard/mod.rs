//! WireGuard endpoint re-resolver (monitor mode, optional): keeps one peer's
//! endpoint pointed at what its hostname resolves to.
//!
//! * [`decide`]: pure timing and "should I update" logic (virtual time).
//! * [`resolve`]: hostname -> IPv4 addresses (system resolver).
//! * [`device`]: the [`device::WgBackend`] trait and its `wireguard-control`
//!   implementation, which never creates interfaces or peers.
//! * [`metrics`]: the `oracle_watchdog_wg_*` families.
//! * [`runner`]: the loop thread.
//!
//! Rule for several A records: keep the current endpoint while its IP is
//! among the answers, else take the numerically smallest IPv4 address.

pub mod decide;
pub mod device;
pub mod metrics;
pub mod resolve;
pub mod runner;

use crate::config::WireguardSettings;

pub use device::{PeerKey, WgBackend, WgControl, WgError};
pub use metrics::WgMetrics;
pub use resolve::{Resolve, ResolveError, SystemResolver};
pub use runner::{Resolver, ResolverHandle, ResolverSettings, TickOutcome};

/// Why the resolver could not be started.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// `peer_pubkey` is not a key (validation should have caught it).
    PeerKey(device::InvalidPeerKey),
    /// The metric families could not be registered.
    Metrics(prometheus::Error),
    /// The thread could not be spawned.
    Thread(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::PeerKey(e) => write!(f, "wireguard.peer_pubkey: {e}"),
            StartError::Metrics(e) => write!(f, "cannot register WireGuard metrics: {e}"),
            StartError::Thread(e) => write!(f, "cannot start the WireGuard resolver thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl ResolverSettings {
    /// Settings from the validated `wireguard:` block.
    pub fn from_config(w: &WireguardSettings) -> Result<ResolverSettings, StartError> {
        Ok(ResolverSettings {
            interface: w.interface.clone(),
            peer: PeerKey::parse(&w.peer_pubkey).map_err(StartError::PeerKey)?,
            hostname: w.endpoint_hostname.clone(),
            port: w.endpoint_port,
            timing: decide::Timing::new(w.resolve_interval, w.stale_handshake_threshold),
        })
    }
}

/// Registers the metrics on `registry` and starts the resolver thread with
/// the real device adapter and the system resolver. Call only for an
/// enabled block.
pub fn start(
    w: &WireguardSettings,
    registry: &prometheus::Registry,
) -> Result<ResolverHandle, StartError> {
    let settings = ResolverSettings::from_config(w)?;
    let metrics = WgMetrics::register(registry).map_err(StartError::Metrics)?;
    runner::spawn(settings, WgControl::new(w.backend), SystemResolver, metrics)
        .map_err(StartError::Thread)
}
