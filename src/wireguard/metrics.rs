//! The `oracle_watchdog_wg_*` metric families of the monitor (spec table
//! "Monitor Mode"), and the bookkeeping that keeps one `current_ip` series.

use prometheus::{Gauge, GaugeVec, IntCounter, IntGaugeVec, Opts, Registry};

/// The resolver's metrics, registered on the monitor's registry.
#[derive(Clone)]
pub struct WgMetrics {
    /// `oracle_watchdog_wg_endpoint_resolution_failures_total`.
    pub failures: IntCounter,
    /// `oracle_watchdog_wg_endpoint_changes_total`.
    pub changes: IntCounter,
    /// `oracle_watchdog_wg_endpoint_last_update_timestamp_seconds`.
    pub last_update: Gauge,
    /// `oracle_watchdog_wg_endpoint_current_ip{interface,peer,ip}`.
    current_ip: IntGaugeVec,
    /// `oracle_watchdog_wg_peer_handshake_age_seconds{peer}`.
    handshake_age: GaugeVec,
    /// The `ip` label currently exported, so it can be removed on change.
    shown_ip: Option<String>,
}

impl WgMetrics {
    /// Creates and registers the families. The two counters start at 0.
    pub fn register(registry: &Registry) -> Result<WgMetrics, prometheus::Error> {
        let failures = IntCounter::with_opts(Opts::new(
            "oracle_watchdog_wg_endpoint_resolution_failures_total",
            "Resolver ticks that failed before applying an update",
        ))?;
        let changes = IntCounter::with_opts(Opts::new(
            "oracle_watchdog_wg_endpoint_changes_total",
            "Successful peer endpoint updates applied",
        ))?;
        let last_update = Gauge::with_opts(Opts::new(
            "oracle_watchdog_wg_endpoint_last_update_timestamp_seconds",
            "Unix timestamp of the most recent successful update",
        ))?;
        let current_ip = IntGaugeVec::new(
            Opts::new(
                "oracle_watchdog_wg_endpoint_current_ip",
                "Always 1; current peer endpoint IP encoded in the ip label",
            ),
            &["interface", "peer", "ip"],
        )?;
        let handshake_age = GaugeVec::new(
            Opts::new(
                "oracle_watchdog_wg_peer_handshake_age_seconds",
                "Seconds since the most recent peer handshake; -1 if never",
            ),
            &["peer"],
        )?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(changes.clone()))?;
        registry.register(Box::new(last_update.clone()))?;
        registry.register(Box::new(current_ip.clone()))?;
        registry.register(Box::new(handshake_age.clone()))?;
        Ok(WgMetrics {
            failures,
            changes,
            last_update,
            current_ip,
            handshake_age,
            shown_ip: None,
        })
    }

    /// Exports `ip` as the peer's current endpoint IP; the previous `ip`
    /// series is removed so exactly one series (or none) exists.
    pub fn set_current_ip(&mut self, interface: &str, peer: &str, ip: Option<String>) {
        if self.shown_ip == ip {
            return;
        }
        if let Some(old) = self.shown_ip.take() {
            // Err only means "not there", which is the goal.
            let _ = self
                .current_ip
                .remove_label_values(&[interface, peer, old.as_str()]);
        }
        if let Some(new) = &ip {
            self.current_ip
                .with_label_values(&[interface, peer, new.as_str()])
                .set(1);
        }
        self.shown_ip = ip;
    }

    /// Sets the handshake age in seconds; `None` (never) exports -1.
    pub fn set_handshake_age(&self, peer: &str, age_seconds: Option<f64>) {
        self.handshake_age
            .with_label_values(&[peer])
            .set(age_seconds.unwrap_or(-1.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    fn text(r: &Registry) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&r.gather(), &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn names_types_and_labels_match_the_spec() {
        let r = Registry::new();
        let mut m = WgMetrics::register(&r).unwrap();
        m.set_current_ip("wg0", "PK", Some("10.0.0.1".into()));
        m.set_handshake_age("PK", None);
        let t = text(&r);
        for line in [
            "# TYPE oracle_watchdog_wg_endpoint_resolution_failures_total counter",
            "oracle_watchdog_wg_endpoint_resolution_failures_total 0",
            "# TYPE oracle_watchdog_wg_endpoint_changes_total counter",
            "oracle_watchdog_wg_endpoint_changes_total 0",
            "# TYPE oracle_watchdog_wg_endpoint_last_update_timestamp_seconds gauge",
            "# TYPE oracle_watchdog_wg_endpoint_current_ip gauge",
            "oracle_watchdog_wg_endpoint_current_ip{interface=\"wg0\",ip=\"10.0.0.1\",peer=\"PK\"} 1",
            "# TYPE oracle_watchdog_wg_peer_handshake_age_seconds gauge",
            "oracle_watchdog_wg_peer_handshake_age_seconds{peer=\"PK\"} -1",
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line:?} in\n{t}");
        }
    }

    #[test]
    fn changing_the_ip_removes_the_old_series() {
        let r = Registry::new();
        let mut m = WgMetrics::register(&r).unwrap();
        m.set_current_ip("wg0", "PK", Some("10.0.0.1".into()));
        m.set_current_ip("wg0", "PK", Some("10.0.0.2".into()));
        let t = text(&r);
        assert!(!t.contains("10.0.0.1"), "{t}");
        assert!(t.contains("ip=\"10.0.0.2\""), "{t}");
        m.set_current_ip("wg0", "PK", None);
        assert!(!text(&r).contains("oracle_watchdog_wg_endpoint_current_ip{"));
        m.set_handshake_age("PK", Some(12.5));
        assert!(
            text(&r).contains("oracle_watchdog_wg_peer_handshake_age_seconds{peer=\"PK\"} 12.5")
        );
    }
}
