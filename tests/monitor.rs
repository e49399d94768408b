//! Monitor mode end to end: the real binary against the Consul stand-in.
//!
//! Timers are shortened through the config file (renew every 1 s, TTL 10 s)
//! except in the test that checks the spec's session parameters.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Daemon, temp_dir, wait_until, write_file};
use oracle_watchdog::consul::{
    ConsulClient, ConsulSettings, SessionBehavior as Behavior, SessionSpec,
};
use watchdog_standins::consul::{ConsulOptions, ConsulStandin, Fault, SessionBehavior};

const NODE: &str = "n1";
const KEY: &str = "oracle-watchdog/nodes/n1";
const SEC: Duration = Duration::from_secs(1);

fn fast_config() -> PathBuf {
    let dir = temp_dir("monitor");
    write_file(
        &dir,
        "config.yaml",
        "monitor:\n  session_ttl: 10s\n  renew_interval: 1s\n",
    )
}

fn spawn(consul: &ConsulStandin, config: &Path, env: &[(&str, &str)]) -> Daemon {
    let addr = consul.http_addr();
    let mut all = vec![("CONSUL_HTTP_ADDR", addr.as_str())];
    all.extend_from_slice(env);
    Daemon::spawn(
        &[
            "-mode",
            "monitor",
            "-node",
            NODE,
            "-config",
            config.to_str().unwrap(),
            "-log-level",
            "debug",
        ],
        &all,
    )
}

fn held_by_live_session(consul: &ConsulStandin) -> Option<String> {
    let kv = consul.kv_get(KEY)?;
    let s = kv.session?;
    consul.sessions().iter().any(|v| v.id == s).then_some(s)
}

fn wait_active(consul: &ConsulStandin, daemon: &Daemon, timeout: Duration) -> bool {
    wait_until(timeout, || {
        held_by_live_session(consul).is_some()
            && daemon.metric("oracle_watchdog_session_active") == Some(1.0)
    })
}

#[test]
fn first_heartbeat_uses_the_spec_session_and_a_json_value() {
    let consul = ConsulStandin::start().unwrap();
    let config = write_file(&temp_dir("monitor-spec"), "config.yaml", "");
    let started = Instant::now();
    let mut daemon = spawn(&consul, &config, &[]);
    assert!(
        consul.wait_for_kv(KEY, 5 * SEC, |kv| kv.is_some_and(|kv| kv.session.is_some())),
        "no heartbeat key; logs: {:#?}",
        daemon.logs()
    );
    eprintln!("first heartbeat after {:?}", started.elapsed());
    let kv = consul.kv_get(KEY).unwrap();
    let session = consul
        .sessions()
        .into_iter()
        .find(|s| Some(&s.id) == kv.session.as_ref())
        .unwrap();
    assert_eq!(session.ttl, Some(Duration::from_secs(30)));
    assert_eq!(session.behavior, SessionBehavior::Delete);
    assert_eq!(session.lock_delay, Duration::ZERO);
    assert_eq!(session.name, "oracle-watchdog/n1");
    let value: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    assert_eq!(value["node"], NODE);
    assert_eq!(value["version"], env!("CARGO_PKG_VERSION"));
    assert!(value["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(wait_until(5 * SEC, || daemon
        .metric("oracle_watchdog_consul_connected")
        == Some(1.0)));
    assert_eq!(daemon.metric("oracle_watchdog_session_active"), Some(1.0));
    // Logs are JSON lines with the transitions at info.
    let logs = daemon.logs();
    let transitions: Vec<serde_json::Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "heartbeat state changed")
        .collect();
    assert!(
        transitions
            .iter()
            .any(|v| v["to"] == "active" && v["level"] == "INFO"),
        "{logs:#?}"
    );
    assert!(daemon.alive());
}

#[test]
fn renews_every_interval_and_counts_renewals() {
    let consul = ConsulStandin::start().unwrap();
    let daemon = spawn(&consul, &fast_config(), &[]);
    assert!(wait_active(&consul, &daemon, 5 * SEC));
    assert!(wait_until(10 * SEC, || {
        daemon
            .metric("oracle_watchdog_session_renewals_total")
            .unwrap_or(0.0)
            >= 3.0
    }));
    let renewals: Vec<Instant> = consul
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.starts_with("/v1/session/renew/"))
        .map(|r| r.received_at)
        .collect();
    assert!(renewals.len() >= 3);
    for pair in renewals.windows(2) {
        // Never renews more often than the interval.
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(900),
            "{:?}",
            pair[1] - pair[0]
        );
    }
    assert_eq!(
        daemon.metric("oracle_watchdog_session_failures_total"),
        Some(0.0)
    );
}

#[test]
fn invalidated_session_is_replaced_and_key_reacquired() {
    let consul = ConsulStandin::start().unwrap();
    let daemon = spawn(&consul, &fast_config(), &[]);
    assert!(wait_active(&consul, &daemon, 5 * SEC));
    let first = held_by_live_session(&consul).unwrap();
    assert!(consul.invalidate_session(&first));
    assert!(
        consul.kv_get(KEY).is_none(),
        "delete behaviour removes the key"
    );
    assert!(
        wait_until(5 * SEC, || held_by_live_session(&consul)
            .is_some_and(|s| s != first)),
        "{:#?}",
        daemon.logs()
    );
    assert!(
        daemon
            .metric("oracle_watchdog_session_failures_total")
            .unwrap()
            >= 1.0
    );
}

#[test]
fn deleted_key_under_a_live_session_is_put_back() {
    let consul = ConsulStandin::start().unwrap();
    let daemon = spawn(&consul, &fast_config(), &[]);
    assert!(wait_active(&consul, &daemon, 5 * SEC));
    let session = held_by_live_session(&consul).unwrap();
    consul.kv_delete(KEY);
    assert!(wait_until(5 * SEC, || held_by_live_session(&consul)
        == Some(session.clone())));
}

#[test]
fn consul_outage_sets_metrics_to_zero_and_recovers() {
    let consul = ConsulStandin::start().unwrap();
    let mut daemon = spawn(&consul, &fast_config(), &[]);
    assert!(wait_active(&consul, &daemon, 5 * SEC));
    consul.set_fault(Fault::Refuse).unwrap();
    assert!(wait_until(10 * SEC, || {
        daemon.metric("oracle_watchdog_consul_connected") == Some(0.0)
            && daemon.metric("oracle_watchdog_session_active") == Some(0.0)
    }));
    std::thread::sleep(3 * SEC);
    assert!(daemon.alive(), "the monitor must survive a Consul outage");
    assert!(
        daemon
            .metric("oracle_watchdog_reconnect_attempts_total")
            .unwrap()
            >= 1.0
    );
    consul.clear_faults().unwrap();
    let cleared = Instant::now();
    // Recovery within one renew interval plus the backoff cap (15 s).
    assert!(
        wait_active(&consul, &daemon, 17 * SEC),
        "{:#?}",
        daemon.logs()
    );
    eprintln!("recovered {:?} after the outage cleared", cleared.elapsed());
    assert_eq!(daemon.metric("oracle_watchdog_consul_connected"), Some(1.0));
}

#[test]
fn leaderless_cluster_is_an_outage() {
    let consul = ConsulStandin::start().unwrap();
    let daemon = spawn(&consul, &fast_config(), &[]);
    assert!(wait_active(&consul, &daemon, 5 * SEC));
    consul.set_fault(Fault::NoLeader).unwrap();
    assert!(wait_until(10 * SEC, || daemon
        .metric("oracle_watchdog_consul_connected")
        == Some(0.0)));
    consul.clear_faults().unwrap();
    assert!(wait_active(&consul, &daemon, 17 * SEC));
}

#[test]
fn hanging_consul_does_not_wedge_the_monitor() {
    let consul = ConsulStandin::start().unwrap();
    let mut daemon = spawn(&consul, &fast_config(), &[]);
    assert!(wait_active(&consul, &daemon, 5 * SEC));
    consul.set_fault(Fault::Hang).unwrap();
    // The 5 s call timeout turns the hang into a visible outage.
    assert!(wait_until(15 * SEC, || daemon
        .metric("oracle_watchdog_consul_connected")
        == Some(0.0)));
    assert!(daemon.alive());
    consul.clear_faults().unwrap();
    assert!(
        wait_active(&consul, &daemon, 25 * SEC),
        "{:#?}",
        daemon.logs()
    );
}

#[test]
fn sigterm_while_consul_hangs_still_exits_promptly() {
    let consul = ConsulStandin::start().unwrap();
    let mut daemon = spawn(&consul, &fast_config(), &[]);
    assert!(wait_active(&consul, &daemon, 5 * SEC));
    consul.set_fault(Fault::Hang).unwrap();
    std::thread::sleep(2 * SEC); // a renewal is now stuck in the worker
    let sent = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit(10 * SEC).expect("exit while Consul hangs");
    eprintln!(
        "exited {:?} after SIGTERM with Consul hanging",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigterm_removes_the_key_and_exits_zero() {
    let consul = ConsulStandin::start().unwrap();
    let mut daemon = spawn(&consul, &fast_config(), &[]);
    assert!(wait_active(&consul, &daemon, 5 * SEC));
    let sent = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit(5 * SEC).expect("exit after SIGTERM");
    eprintln!("exited {:?} after SIGTERM", sent.elapsed());
    assert_eq!(status.code(), Some(0));
    assert!(
        consul.kv_get(KEY).is_none(),
        "key must be gone after a clean stop"
    );
    assert!(consul.sessions().is_empty(), "session must be destroyed");
}

#[test]
fn acl_token_is_sent_from_env_or_file() {
    let consul = ConsulStandin::start_with(ConsulOptions {
        token: Some("s3cret-acl-token".into()),
        ..ConsulOptions::default()
    })
    .unwrap();
    let daemon = spawn(
        &consul,
        &fast_config(),
        &[("CONSUL_HTTP_TOKEN", "s3cret-acl-token")],
    );
    assert!(wait_active(&consul, &daemon, 5 * SEC));
    let reqs = consul.requests();
    assert!(!reqs.is_empty());
    assert!(
        reqs.iter()
            .all(|r| r.token.as_deref() == Some("s3cret-acl-token"))
    );
    drop(daemon);

    let dir = temp_dir("token-file");
    let file = write_file(&dir, "token", "s3cret-acl-token\n");
    consul.kv_delete(KEY);
    let daemon = spawn(
        &consul,
        &fast_config(),
        &[("CONSUL_HTTP_TOKEN_FILE", file.to_str().unwrap())],
    );
    assert!(wait_active(&consul, &daemon, 5 * SEC));
    assert!(
        !daemon.logs().iter().any(|l| l.contains("s3cret-acl-token")),
        "token leaked into logs"
    );
}

#[test]
fn wrong_token_is_counted_and_retried_without_crashing() {
    let consul = ConsulStandin::start_with(ConsulOptions {
        token: Some("right".into()),
        ..ConsulOptions::default()
    })
    .unwrap();
    let mut daemon = spawn(&consul, &fast_config(), &[("CONSUL_HTTP_TOKEN", "wrong")]);
    assert!(wait_until(5 * SEC, || daemon
        .metric("oracle_watchdog_session_failures_total")
        .unwrap_or(0.0)
        >= 2.0));
    assert!(daemon.alive());
    assert!(consul.kv_get(KEY).is_none());
    assert!(
        daemon
            .logs()
            .iter()
            .any(|l| l.contains("permission denied"))
    );
    // Fixing the ACL on the Consul side is picked up without a restart.
    consul.require_token(Some("wrong".into()));
    assert!(wait_active(&consul, &daemon, 20 * SEC));
}

#[test]
fn key_held_by_another_session_is_not_stolen() {
    let consul = ConsulStandin::start().unwrap();
    let settings = ConsulSettings::resolve(None, |k| {
        (k == "CONSUL_HTTP_ADDR").then(|| consul.http_addr())
    })
    .unwrap();
    let other = ConsulClient::new(&settings);
    let rival = other
        .create_session(&SessionSpec {
            name: "rival".into(),
            ttl: Duration::from_secs(60),
            behavior: Behavior::Delete,
            lock_delay: Duration::ZERO,
        })
        .unwrap();
    assert!(other.acquire(KEY, &rival, b"rival").unwrap());
    let daemon = spawn(&consul, &fast_config(), &[]);
    assert!(wait_until(5 * SEC, || daemon
        .metric("oracle_watchdog_lock_conflicts_total")
        .unwrap_or(0.0)
        >= 2.0));
    assert_eq!(
        consul.kv_get(KEY).unwrap().session.as_deref(),
        Some(rival.as_str())
    );
    assert_eq!(daemon.metric("oracle_watchdog_session_active"), Some(0.0));
    // When the rival goes away, the monitor takes the key within a renew interval or so.
    other.destroy_session(&rival).unwrap();
    assert!(wait_active(&consul, &daemon, 5 * SEC));
}

#[test]
fn busy_metrics_port_does_not_stop_the_heartbeat() {
    let consul = ConsulStandin::start().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = fast_config();
    let addr = consul.http_addr();
    let mut daemon = Daemon::spawn_on_port(
        &[
            "-mode",
            "monitor",
            "-node",
            NODE,
            "-config",
            config.to_str().unwrap(),
        ],
        &[("CONSUL_HTTP_ADDR", addr.as_str())],
        port,
    );
    assert!(wait_until(5 * SEC, || held_by_live_session(&consul).is_some()));
    assert!(daemon.alive());
    assert!(
        daemon
            .logs()
            .iter()
            .any(|l| l.contains("cannot bind metrics port"))
    );
    drop(taken);
    assert!(wait_until(10 * SEC, || daemon
        .metric("oracle_watchdog_session_active")
        == Some(1.0)));
}
