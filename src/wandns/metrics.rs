//! The WAN-IP DDNS updater's metric families (spec table "Agent Mode", the
//! `oracle_watchdog_wan_*` and `oracle_watchdog_cloudflare_*` rows).

use std::net::Ipv4Addr;

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::metrics::{counter, gauge};

/// Handles to the updater's metrics, registered on the agent's registry.
#[derive(Clone)]
pub struct WanDnsMetrics {
    /// `oracle_watchdog_wan_ip_current{ip}`: 1 for the current IP only.
    pub ip_current: IntGaugeVec,
    /// `oracle_watchdog_wan_ip_changes_total`: detected IP differed from
    /// the previous detection.
    pub ip_changes: IntCounter,
    /// `oracle_watchdog_cloudflare_record_updates_total{result}`.
    pub record_updates: IntCounterVec,
    /// `oracle_watchdog_wan_ip_detection_failures_total{provider}`.
    pub detection_failures: IntCounterVec,
    /// `oracle_watchdog_wan_dns_last_check_timestamp_seconds`.
    pub last_check: Gauge,
    /// `oracle_watchdog_wan_dns_in_cooldown`.
    pub in_cooldown: IntGauge,
    /// Extra: `oracle_watchdog_cloudflare_api_errors_total`, every failed
    /// Cloudflare call (lookup included), so a revoked token or a throttled
    /// account can be alerted on even while no update is due.
    pub api_errors: IntCounter,
}

impl WanDnsMetrics {
    /// Creates and registers the families; the `result` series and one
    /// `provider` series per configured provider start at 0.
    pub fn register(registry: &Registry, providers: &[String]) -> Result<Self, prometheus::Error> {
        let ip_current = IntGaugeVec::new(
            Opts::new(
                "oracle_watchdog_wan_ip_current",
                "Always 1; current detected WAN IPv4 in the ip label",
            ),
            &["ip"],
        )?;
        registry.register(Box::new(ip_current.clone()))?;
        let record_updates = IntCounterVec::new(
            Opts::new(
                "oracle_watchdog_cloudflare_record_updates_total",
                "Cloudflare DNS record updates split by success or fail",
            ),
            &["result"],
        )?;
        registry.register(Box::new(record_updates.clone()))?;
        let detection_failures = IntCounterVec::new(
            Opts::new(
                "oracle_watchdog_wan_ip_detection_failures_total",
                "Detection failures per provider URL",
            ),
            &["provider"],
        )?;
        registry.register(Box::new(detection_failures.clone()))?;
        let last_check = Gauge::new(
            "oracle_watchdog_wan_dns_last_check_timestamp_seconds",
            "Unix timestamp of the most recent detection attempt",
        )?;
        registry.register(Box::new(last_check.clone()))?;
        let m = WanDnsMetrics {
            ip_current,
            ip_changes: counter(
                registry,
                "oracle_watchdog_wan_ip_changes_total",
                "WAN IP changes detected",
            )?,
            record_updates,
            detection_failures,
            last_check,
            in_cooldown: gauge(
                registry,
                "oracle_watchdog_wan_dns_in_cooldown",
                "1 when within the post-update cooldown window, 0 otherwise",
            )?,
            api_errors: counter(
                registry,
                "oracle_watchdog_cloudflare_api_errors_total",
                "Failed Cloudflare API calls (lookups, updates, creations)",
            )?,
        };
        for result in ["success", "fail"] {
            m.record_updates.with_label_values(&[result]).inc_by(0);
        }
        for p in providers {
            m.detection_failures
                .with_label_values(&[p.as_str()])
                .inc_by(0);
        }
        Ok(m)
    }

    /// Moves the `ip_current` series from `previous` to `ip`.
    pub fn set_current_ip(&self, ip: Ipv4Addr, previous: Option<Ipv4Addr>) {
        if let Some(old) = previous.filter(|old| *old != ip) {
            let _ = self
                .ip_current
                .remove_label_values(&[old.to_string().as_str()]);
        }
        self.ip_current
            .with_label_values(&[ip.to_string().as_str()])
            .set(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::render;

    #[test]
    fn families_have_the_spec_names_types_and_start_at_zero() {
        let r = Registry::new();
        let providers = vec!["https://api.ipify.org".to_string()];
        let m = WanDnsMetrics::register(&r, &providers).unwrap();
        m.set_current_ip(Ipv4Addr::new(203, 0, 113, 1), None);
        let text = render(&r);
        for (name, kind) in [
            ("oracle_watchdog_wan_ip_current", "gauge"),
            ("oracle_watchdog_wan_ip_changes_total", "counter"),
            ("oracle_watchdog_cloudflare_record_updates_total", "counter"),
            ("oracle_watchdog_wan_ip_detection_failures_total", "counter"),
            (
                "oracle_watchdog_wan_dns_last_check_timestamp_seconds",
                "gauge",
            ),
            ("oracle_watchdog_wan_dns_in_cooldown", "gauge"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name}\n{text}"
            );
        }
        assert!(
            text.contains("oracle_watchdog_cloudflare_record_updates_total{result=\"fail\"} 0")
        );
        assert!(
            text.contains("oracle_watchdog_cloudflare_record_updates_total{result=\"success\"} 0")
        );
        assert!(text.contains(
            "oracle_watchdog_wan_ip_detection_failures_total{provider=\"https://api.ipify.org\"} 0"
        ));
    }

    #[test]
    fn the_old_ip_series_is_removed_on_change() {
        let r = Registry::new();
        let m = WanDnsMetrics::register(&r, &[]).unwrap();
        let a = Ipv4Addr::new(203, 0, 113, 1);
        let b = Ipv4Addr::new(203, 0, 113, 2);
        m.set_current_ip(a, None);
        m.set_current_ip(b, Some(a));
        let text = render(&r);
        assert!(text.contains("oracle_watchdog_wan_ip_current{ip=\"203.0.113.2\"} 1"));
        assert!(!text.contains("203.0.113.1"), "{text}");
    }
}
