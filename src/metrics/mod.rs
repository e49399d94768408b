//! Prometheus metrics: the spec's metric families per mode, and the HTTP
//! server that exposes them ([`server`]).
//!
//! Names, types and labels of the spec's tables are used exactly; extra
//! metrics are prefixed `oracle_watchdog_` too and documented in the README.

pub mod server;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

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

/// The agent mode's metric families (spec table "Agent Mode (:9105)", the
/// restart and Consul rows; the WAN-DNS rows arrive with that feature).
#[derive(Clone)]
pub struct AgentMetrics {
    /// `oracle_watchdog_agent_consul_connected`.
    pub consul_connected: IntGauge,
    /// `oracle_watchdog_agent_oci_connected`.
    pub oci_connected: IntGauge,
    /// `oracle_watchdog_agent_nodes_monitored`: configured nodes.
    pub nodes_monitored: IntGauge,
    /// `oracle_watchdog_agent_nodes_missing`.
    pub nodes_missing: IntGauge,
    /// `oracle_watchdog_agent_restart_attempts_total{node}`.
    pub restart_attempts: IntCounterVec,
    /// `oracle_watchdog_agent_restart_successes_total{node}`.
    pub restart_successes: IntCounterVec,
    /// `oracle_watchdog_agent_restart_failures_total{node}`.
    pub restart_failures: IntCounterVec,
    /// `oracle_watchdog_agent_consul_check_failures_total`.
    pub consul_check_failures: IntCounter,
    /// Extra: `oracle_watchdog_agent_leader`, 1 while this agent may act.
    pub leader: IntGauge,
    /// Extra: `oracle_watchdog_agent_restarts_in_flight`.
    pub restarts_in_flight: IntGauge,
    /// Extra: `oracle_watchdog_agent_restart_guard_active`, 1 while the
    /// mass-outage guard holds all restarts.
    pub guard_active: IntGauge,
    /// Extra: `oracle_watchdog_agent_nodes_in_maintenance`.
    pub nodes_in_maintenance: IntGauge,
    /// Extra: `oracle_watchdog_agent_restarts_exhausted_total{node}`: gave up
    /// after `max_restart_attempts`.
    pub restarts_exhausted: IntCounterVec,
}

impl AgentMetrics {
    /// Creates and registers the agent families; every node-labelled
    /// counter starts at 0 for each configured node so dashboards and
    /// `increase()` see the series from the beginning.
    pub fn register<'a>(
        registry: &Registry,
        nodes: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, prometheus::Error> {
        let m = AgentMetrics {
            consul_connected: gauge(
                registry,
                "oracle_watchdog_agent_consul_connected",
                "Consul connection status",
            )?,
            oci_connected: gauge(
                registry,
                "oracle_watchdog_agent_oci_connected",
                "OCI connection status",
            )?,
            nodes_monitored: gauge(
                registry,
                "oracle_watchdog_agent_nodes_monitored",
                "Number of configured nodes",
            )?,
            nodes_missing: gauge(
                registry,
                "oracle_watchdog_agent_nodes_missing",
                "Currently missing nodes",
            )?,
            restart_attempts: counter_vec(
                registry,
                "oracle_watchdog_agent_restart_attempts_total",
                "Restart attempts per node",
            )?,
            restart_successes: counter_vec(
                registry,
                "oracle_watchdog_agent_restart_successes_total",
                "Successful restarts per node",
            )?,
            restart_failures: counter_vec(
                registry,
                "oracle_watchdog_agent_restart_failures_total",
                "Failed restarts per node",
            )?,
            consul_check_failures: counter(
                registry,
                "oracle_watchdog_agent_consul_check_failures_total",
                "Consul KV check failures",
            )?,
            leader: gauge(
                registry,
                "oracle_watchdog_agent_leader",
                "1 while this agent holds the leader lock and may restart instances",
            )?,
            restarts_in_flight: gauge(
                registry,
                "oracle_watchdog_agent_restarts_in_flight",
                "Restart cycles currently running",
            )?,
            guard_active: gauge(
                registry,
                "oracle_watchdog_agent_restart_guard_active",
                "1 while the mass-outage guard holds all restarts",
            )?,
            nodes_in_maintenance: gauge(
                registry,
                "oracle_watchdog_agent_nodes_in_maintenance",
                "Nodes currently in maintenance",
            )?,
            restarts_exhausted: counter_vec(
                registry,
                "oracle_watchdog_agent_restarts_exhausted_total",
                "Times a node reached max_restart_attempts",
            )?,
        };
        for node in nodes {
            for vec in [
                &m.restart_attempts,
                &m.restart_successes,
                &m.restart_failures,
                &m.restarts_exhausted,
            ] {
                vec.with_label_values(&[node]).inc_by(0);
            }
        }
        Ok(m)
    }
}

/// Creates and registers a counter family labelled by `node`.
fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
) -> Result<IntCounterVec, prometheus::Error> {
    let c = IntCounterVec::new(Opts::new(name, help), &["node"])?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
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
    fn agent_families_have_the_spec_names_and_start_at_zero_per_node() {
        let r = Registry::new();
        let m = AgentMetrics::register(&r, ["n1", "n2"]).unwrap();
        m.restart_attempts.with_label_values(&["n1"]).inc();
        let text = render(&r);
        for (name, kind) in [
            ("oracle_watchdog_agent_consul_connected", "gauge"),
            ("oracle_watchdog_agent_oci_connected", "gauge"),
            ("oracle_watchdog_agent_nodes_monitored", "gauge"),
            ("oracle_watchdog_agent_nodes_missing", "gauge"),
            ("oracle_watchdog_agent_restart_attempts_total", "counter"),
            ("oracle_watchdog_agent_restart_successes_total", "counter"),
            ("oracle_watchdog_agent_restart_failures_total", "counter"),
            (
                "oracle_watchdog_agent_consul_check_failures_total",
                "counter",
            ),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} missing:\n{text}"
            );
        }
        assert!(text.contains("oracle_watchdog_agent_restart_attempts_total{node=\"n1\"} 1\n"));
        assert!(text.contains("oracle_watchdog_agent_restart_attempts_total{node=\"n2\"} 0\n"));
        assert!(text.contains("oracle_watchdog_agent_restart_failures_total{node=\"n2\"} 0\n"));
        assert!(text.contains("oracle_watchdog_agent_restart_successes_total{node=\"n1\"} 0\n"));
    }

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
