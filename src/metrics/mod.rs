//! Prometheus metrics: the spec's metric families per mode, and the HTTP
//! server that exposes them ([`server`]).
//!
//! Names, types and labels of the spec's tables are used exactly; extra
//! metrics are prefixed `oracle_watchdog_` too and documented in the README.

pub mod server;

use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

pub use server::{MetricsServer, default_listen_address, parse_listen_address};

/// The monitor mode's metric families (spec table "Monitor Mode (:9104)").
#[derive(Clone)]
pub struct MonitorMetrics {
    /// `oracle_watchdog_consul_connected`: 1 while Consul answers.
    pub consul_connected: IntGauge,
    /// `oracle_watchdog_session_active`: 1 while our session holds the key.
    pub session_active: IntGauge,
    /// `oracle_watchdog_reconnect_attempts_total`.
    pub reconnect_attempts: IntCounter,
    /// `oracle_watchdog_session_renewals_total`.
    pub session_renewals: IntCounter,
    /// `oracle_watchdog_session_failures_total`.
    pub session_failures: IntCounter,
    /// Extra: `oracle_watchdog_lock_conflicts_total`, another session held our key.
    pub lock_conflicts: IntCounter,
}

impl MonitorMetrics {
    /// Creates and registers the monitor families.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(MonitorMetrics {
            consul_connected: gauge(
                registry,
                "oracle_watchdog_consul_connected",
                "Consul connection status (1=connected, 0=disconnected)",
            )?,
            session_active: gauge(
                registry,
                "oracle_watchdog_session_active",
                "Session status (1=active, 0=inactive)",
            )?,
            reconnect_attempts: counter(
                registry,
                "oracle_watchdog_reconnect_attempts_total",
                "Consul reconnection attempts",
            )?,
            session_renewals: counter(
                registry,
                "oracle_watchdog_session_renewals_total",
                "Successful session renewals",
            )?,
            session_failures: counter(
                registry,
                "oracle_watchdog_session_failures_total",
                "Session creation or renewal failures",
            )?,
            lock_conflicts: counter(
                registry,
                "oracle_watchdog_lock_conflicts_total",
                "Times the heartbeat key was held by another live session",
            )?,
        })
    }
}

/// Registers `oracle_watchdog_build_info{version,mode} 1`, so dashboards can
/// tell which version runs where.
pub fn register_build_info(registry: &Registry, mode: &str) -> Result<(), prometheus::Error> {
    let info = IntGaugeVec::new(
        Opts::new("oracle_watchdog_build_info", "Build information; always 1"),
        &["version", "mode"],
    )?;
    registry.register(Box::new(info.clone()))?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION"), mode])
        .set(1);
    Ok(())
}

/// Creates and registers an integer gauge.
pub fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Creates and registers an integer counter.
pub fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// Renders a registry in the Prometheus text exposition format.
pub fn render(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&registry.gather(), &mut buf) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_families_have_the_spec_names_and_types() {
        let r = Registry::new();
        let m = MonitorMetrics::register(&r).unwrap();
        m.session_renewals.inc();
        let text = render(&r);
        for (name, kind) in [
            ("oracle_watchdog_consul_connected", "gauge"),
            ("oracle_watchdog_session_active", "gauge"),
            ("oracle_watchdog_reconnect_attempts_total", "counter"),
            ("oracle_watchdog_session_renewals_total", "counter"),
            ("oracle_watchdog_session_failures_total", "counter"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} missing:\n{text}"
            );
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} has no unlabelled sample"
            );
        }
        assert!(text.contains("oracle_watchdog_session_renewals_total 1\n"));
    }
}
