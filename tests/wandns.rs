//! The WAN-IP DDNS updater in the real binary (agent mode) against the
//! Cloudflare and IP-provider stand-ins, with the Consul and OCI stand-ins
//! and real monitors around it so the agent's main job runs too.
//!
//! Validation keeps `poll_interval >= 30s` and `cooldown >= 1m`, so most
//! tests look at the first check after start (immediate) and at restarts;
//! one test runs through a real cooldown (about 80 s).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::world::World;
use common::{Daemon, wait_until};
use watchdog_standins::cloudflare::{CfFault, CloudflareStandin};
use watchdog_standins::ipprovider::{IpFault, IpProvider};

const TOKEN: &str = "e2e-cloudflare-token-5d7c0a91";
const TOKEN_VAR: &str = "OW_E2E_WANDNS_TOKEN";
const ZONE: &str = "9a7806061c88ada191ed06f989cc3dac";
const HOST: &str = "home.example.com";
const SEC: Duration = Duration::from_secs(1);

struct Setup {
    world: World,
    cf: CloudflareStandin,
}

impl Setup {
    fn new() -> Setup {
        let mut world = World::new();
        world.start_monitor("n1");
        world.start_monitor("n2");
        let cf = CloudflareStandin::start(TOKEN).unwrap();
        cf.add_zone(ZONE);
        Setup { world, cf }
    }

    fn config(&self, providers: &[String], extra: &str, poll: &str, cooldown: &str) -> PathBuf {
        let list: Vec<String> = providers.iter().map(|p| format!("\"{p}\"")).collect();
        self.world.agent_config(&format!(
            "wan_dns:\n  enabled: true\n  hostname: {HOST}\n  cloudflare:\n    api_token_env: {TOKEN_VAR}\n    zone_id: \"{ZONE}\"\n    api_url: \"{}\"\n{extra}  detection_providers: [{}]\n  poll_interval: {poll}\n  cooldown: {cooldown}\n",
            self.cf.api_url(),
            list.join(", ")
        ))
    }

    fn agent(&self, config: &std::path::Path, token: Option<&str>) -> Daemon {
        let args = [
            "-mode",
            "agent",
            "-config",
            config.to_str().unwrap(),
            "-log-level",
            "debug",
        ];
        match token {
            Some(t) => Daemon::spawn(&args, &[(TOKEN_VAR, t)]),
            None => Daemon::spawn(&args, &[]),
        }
    }

    fn patches(&self) -> usize {
        self.cf.successful_patches().len()
    }
}

fn has_log(d: &Daemon, needle: &str) -> bool {
    d.logs().iter().any(|l| l.contains(needle))
}

fn count_logs(d: &Daemon, needle: &str) -> usize {
    d.logs().iter().filter(|l| l.contains(needle)).count()
}

/// The token must not appear in anything the process shows.
fn assert_token_hidden(d: &Daemon) {
    let logs = d.logs().join("\n");
    assert!(!logs.contains(TOKEN), "token in the logs");
    if let Some(m) = d.scrape() {
        assert!(!m.contains(TOKEN), "token in the metrics");
    }
}

fn stop(mut d: Daemon) -> Vec<String> {
    d.signal("TERM");
    let status = d.wait_exit(15 * SEC).expect("agent exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert_token_hidden(&d);
    d.logs()
}

#[test]
fn first_update_is_immediate_and_an_unchanged_ip_is_not_patched() {
    let s = Setup::new();
    let id = s.cf.add_record(ZONE, "A", HOST, "198.51.100.10", 300, true);
    let ip = IpProvider::start("203.0.113.77").unwrap();
    let cfg = s.config(&[ip.plain_url()], "", "5m", "15m");

    let a = s.agent(&cfg, Some(TOKEN));
    assert!(wait_until(20 * SEC, || s.patches() == 1), "first update");
    let rec = s.cf.record(&id).unwrap();
    assert_eq!(rec.content, "203.0.113.77");
    assert_eq!(
        (rec.ttl, rec.proxied),
        (300, true),
        "ttl and proxied preserved"
    );
    let patch = &s.cf.successful_patches()[0];
    assert!(patch.authorized);
    assert!(wait_until(5 * SEC, || {
        a.metric("oracle_watchdog_cloudflare_record_updates_total{result=\"success\"}") == Some(1.0)
    }));
    let m = a.scrape().unwrap();
    assert!(
        m.contains("oracle_watchdog_wan_ip_current{ip=\"203.0.113.77\"} 1"),
        "{m}"
    );
    assert_eq!(a.metric("oracle_watchdog_wan_dns_in_cooldown"), Some(1.0));
    assert_eq!(
        a.metric("oracle_watchdog_cloudflare_record_updates_total{result=\"fail\"}"),
        Some(0.0)
    );
    assert!(
        a.metric("oracle_watchdog_wan_dns_last_check_timestamp_seconds")
            .unwrap()
            > 1.0e9
    );
    assert!(has_log(&a, "DNS record updated"));
    stop(a);

    // A restart sees the same IP: one more detection and read, no PATCH.
    let before = ip.request_count();
    let b = s.agent(&cfg, Some(TOKEN));
    assert!(
        wait_until(20 * SEC, || has_log(&b, "DNS record already up to date")),
        "second agent checked the record"
    );
    assert_eq!(ip.request_count(), before + 1);
    assert_eq!(s.patches(), 1, "unchanged IP: no PATCH");
    assert_eq!(b.metric("oracle_watchdog_wan_dns_in_cooldown"), Some(0.0));
    assert_eq!(s.cf.requests_with_method("PATCH").len(), 1);
    stop(b);
}

#[test]
fn providers_are_tried_in_order_and_failures_counted_per_provider() {
    let s = Setup::new();
    s.cf.add_record(ZONE, "A", HOST, "203.0.113.5", 1, false);
    let html = IpProvider::start("203.0.113.1").unwrap();
    html.set_fault(IpFault::Html);
    let v6 = IpProvider::start("203.0.113.2").unwrap();
    v6.set_fault(IpFault::Ipv6);
    let good = IpProvider::start("203.0.113.5").unwrap();
    let spare = IpProvider::start("203.0.113.6").unwrap();
    let providers = [
        html.plain_url(),
        v6.trace_url(),
        good.trace_url(),
        spare.plain_url(),
    ];
    let a = s.agent(&s.config(&providers, "", "5m", "15m"), Some(TOKEN));
    assert!(wait_until(20 * SEC, || has_log(
        &a,
        "DNS record already up to date"
    )));
    let m = a.scrape().unwrap();
    let failures = |url: &str| {
        common::metric_value(
            &m,
            &format!("oracle_watchdog_wan_ip_detection_failures_total{{provider=\"{url}\"}}"),
        )
    };
    assert_eq!(failures(&providers[0]), Some(1.0));
    assert_eq!(failures(&providers[1]), Some(1.0));
    assert_eq!(failures(&providers[2]), Some(0.0));
    assert_eq!(failures(&providers[3]), Some(0.0));
    assert_eq!(
        [
            html.request_count(),
            v6.request_count(),
            good.request_count(),
            spare.request_count()
        ],
        [1, 1, 1, 0]
    );
    assert!(m.contains("oracle_watchdog_wan_ip_current{ip=\"203.0.113.5\"} 1"));
    assert_eq!(s.patches(), 0, "record already right");
    stop(a);
}

#[test]
fn a_change_inside_the_cooldown_is_applied_right_after_it() {
    // Checks at 0, 30, 60, 90 s; the cooldown after the first update ends
    // at about 75 s. The change made right after the first update is seen
    // at 30 s and 60 s (held back) and applied by the wake-up at the end of
    // the cooldown: the 4th detection, not the 5th (the 90 s tick).
    let s = Setup::new();
    let id = s.cf.add_record(ZONE, "A", HOST, "198.51.100.1", 120, false);
    let ip = IpProvider::start("203.0.113.10").unwrap();
    let a = s.agent(&s.config(&[ip.trace_url()], "", "30s", "75s"), Some(TOKEN));
    assert!(wait_until(20 * SEC, || s.patches() == 1), "first update");
    ip.set_ip("203.0.113.20");
    assert_eq!(ip.request_count(), 1);

    assert!(
        wait_until(50 * SEC, || count_logs(&a, "update deferred") >= 1),
        "the 30 s check sees the change and defers it"
    );
    assert_eq!(s.patches(), 1, "no update inside the cooldown");
    assert_eq!(a.metric("oracle_watchdog_wan_dns_in_cooldown"), Some(1.0));
    assert_eq!(a.metric("oracle_watchdog_wan_ip_changes_total"), Some(1.0));
    let m = a.scrape().unwrap();
    assert!(m.contains("oracle_watchdog_wan_ip_current{ip=\"203.0.113.20\"} 1"));
    assert!(!m.contains("203.0.113.10"), "old ip series removed:\n{m}");
    assert_eq!(s.cf.record(&id).unwrap().content, "203.0.113.10");

    assert!(wait_until(40 * SEC, || count_logs(&a, "update deferred") >= 2));
    assert_eq!(s.patches(), 1, "still no update inside the cooldown");

    assert!(
        wait_until(40 * SEC, || s.patches() == 2),
        "applied after the cooldown"
    );
    assert_eq!(
        ip.request_count(),
        4,
        "applied by the wake-up at the cooldown's end, before the next regular check"
    );
    let p = s.cf.successful_patches();
    assert!(p[1].at.duration_since(p[0].at) >= Duration::from_secs(75));
    assert_eq!(s.cf.record(&id).unwrap().content, "203.0.113.20");
    assert!(wait_until(5 * SEC, || {
        a.metric("oracle_watchdog_cloudflare_record_updates_total{result=\"success\"}") == Some(2.0)
    }));
    assert_eq!(a.metric("oracle_watchdog_wan_dns_in_cooldown"), Some(1.0));
    stop(a);
}

#[test]
fn missing_record_is_an_error_unless_create_if_missing() {
    let s = Setup::new();
    let ip = IpProvider::start("203.0.113.30").unwrap();
    let a = s.agent(&s.config(&[ip.plain_url()], "", "5m", "15m"), Some(TOKEN));
    assert!(wait_until(20 * SEC, || has_log(
        &a,
        "no A record with this name"
    )));
    assert!(wait_until(5 * SEC, || {
        a.metric("oracle_watchdog_cloudflare_record_updates_total{result=\"fail\"}") == Some(1.0)
    }));
    assert!(s.cf.requests_with_method("POST").is_empty());
    assert!(a.logs().iter().any(|l| l.contains("create_if_missing")));
    stop(a);

    let cfg = s.config(
        &[ip.plain_url()],
        "    create_if_missing: true\n",
        "5m",
        "15m",
    );
    let b = s.agent(&cfg, Some(TOKEN));
    assert!(wait_until(20 * SEC, || has_log(&b, "DNS record created")));
    let recs: Vec<_> =
        s.cf.records()
            .into_iter()
            .filter(|r| r.name == HOST)
            .collect();
    assert_eq!(recs.len(), 1);
    assert_eq!(
        (recs[0].record_type.as_str(), recs[0].content.as_str()),
        ("A", "203.0.113.30")
    );
    assert_eq!(
        b.metric("oracle_watchdog_cloudflare_record_updates_total{result=\"success\"}"),
        Some(1.0)
    );
    stop(b);
}

#[test]
fn cloudflare_errors_are_logged_with_their_codes_and_never_the_token() {
    let s = Setup::new();
    s.cf.add_record(ZONE, "A", HOST, "198.51.100.1", 1, false);
    let ip = IpProvider::start("203.0.113.40").unwrap();
    let cfg = s.config(&[ip.plain_url()], "", "5m", "15m");

    let wrong = "wrong-token-0000";
    let a = s.agent(&cfg, Some(wrong));
    assert!(wait_until(20 * SEC, || has_log(&a, "Invalid API Token")));
    assert!(has_log(&a, "code 1000"));
    // A revoked token is alertable even though no update was attempted.
    assert!(wait_until(5 * SEC, || {
        a.metric("oracle_watchdog_cloudflare_api_errors_total")
            .unwrap_or(0.0)
            >= 1.0
    }));
    assert!(
        !a.logs().join("\n").contains(wrong),
        "the wrong token is not logged either"
    );
    assert_eq!(s.patches(), 0);
    stop(a);

    s.cf.fail_next(
        1,
        CfFault::Unsuccessful {
            code: 9005,
            message: "Content for A record is invalid.".into(),
        },
    );
    let b = s.agent(&cfg, Some(TOKEN));
    assert!(wait_until(20 * SEC, || has_log(&b, "code 9005")));
    assert_eq!(s.patches(), 0);
    stop(b);

    s.cf.fail_next(1, CfFault::RateLimited { retry_after: 30 });
    let mut c = s.agent(&cfg, Some(TOKEN));
    assert!(wait_until(20 * SEC, || has_log(&c, "HTTP 429")));
    assert_eq!(
        s.patches(),
        0,
        "429: retried at the next check, not hammered"
    );
    assert!(c.alive());
    stop(c);
}

#[test]
fn missing_token_turns_the_updater_off_and_the_agent_carries_on() {
    let s = Setup::new();
    s.cf.add_record(ZONE, "A", HOST, "198.51.100.1", 1, false);
    let ip = IpProvider::start("203.0.113.50").unwrap();
    let mut a = s.agent(&s.config(&[ip.plain_url()], "", "5m", "15m"), None);
    assert!(
        wait_until(20 * SEC, || has_log(&a, TOKEN_VAR)),
        "error names the variable"
    );
    assert!(has_log(&a, "WAN-IP DDNS updater is off"));
    assert!(wait_until(10 * SEC, || {
        a.metric("oracle_watchdog_agent_nodes_monitored") == Some(2.0)
    }));
    assert!(a.alive());
    assert_eq!(ip.request_count(), 0);
    assert!(s.cf.requests().is_empty());
    stop(a);
}
