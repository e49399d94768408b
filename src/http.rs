//! One place that builds HTTP agents, so every outgoing call has timeouts,
//! a bounded response size and a recognisable User-Agent.
//!
//! ureq sets no timeouts by default; a Consul or OCI endpoint that accepts a
//! connection and never answers would otherwise wedge a loop forever.

use std::time::Duration;

/// Largest response body any client reads (Consul KV listings of thousands of
/// nodes fit easily; anything larger is a broken or hostile server).
pub const MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;

/// `User-Agent` sent on every request.
pub const USER_AGENT: &str = concat!("oracle-watchdog/", env!("CARGO_PKG_VERSION"));

/// Timeouts for one kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connection establishment.
    pub connect: Duration,
    /// The whole call, from resolving the host to the last body byte.
    pub total: Duration,
}

impl Timeouts {
    /// Connect within `connect`, finish everything within `total`.
    pub const fn new(connect: Duration, total: Duration) -> Self {
        Timeouts { connect, total }
    }
}

/// Which certificates a TLS connection trusts.
#[derive(Clone, Default)]
pub enum TrustRoots {
    /// Mozilla's roots compiled into the binary (works in a scratch image).
    #[default]
    Bundled,
    /// Only these CA certificates (e.g. from `CONSUL_CACERT`).
    Custom(Vec<ureq::tls::Certificate<'static>>),
}

impl std::fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustRoots::Bundled => f.write_str("Bundled"),
            TrustRoots::Custom(c) => write!(f, "Custom({} certificates)", c.len()),
        }
    }
}

/// Builds an agent with the given timeouts and trust roots. HTTP status codes
/// are returned as responses (callers classify them), not as errors.
pub fn agent(timeouts: Timeouts, roots: &TrustRoots) -> ureq::Agent {
    let root_certs = match roots {
        TrustRoots::Bundled => ureq::tls::RootCerts::WebPki,
        TrustRoots::Custom(certs) => ureq::tls::RootCerts::new_with_certs(certs),
    };
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(root_certs)
        .build();
    ureq::Agent::config_builder()
        .timeout_connect(Some(timeouts.connect))
        .timeout_global(Some(timeouts.total))
        .http_status_as_error(false)
        .user_agent(USER_AGENT)
        .tls_config(tls)
        .build()
        .into()
}

/// Reads a response body as text, refusing bodies over [`MAX_BODY_BYTES`].
pub fn read_body(response: &mut ureq::http::Response<ureq::Body>) -> Result<String, ureq::Error> {
    response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_string()
}

/// True when a ureq error means "the far end did not answer in time".
pub fn is_timeout(err: &ureq::Error) -> bool {
    matches!(err, ureq::Error::Timeout(_))
        || matches!(err, ureq::Error::Io(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock))
}
