//! Agent mode end to end: real agent and monitor processes against the
//! Consul and OCI stand-ins, with short timers.
//!
//! The Consul stand-in expires sessions after 0.5 x TTL (5 s for the 10 s
//! minimum TTL) so a killed monitor's key vanishes quickly; the agent's
//! timeout is 2 s and the OCI stand-in's transitions take 300 ms.

mod common;

use std::time::{Duration, Instant};

use common::world::{I1, I2, SEC, World};
use common::{Daemon, wait_until};
use watchdog_standins::consul::Fault;

fn leader(agent: &Daemon) -> bool {
    agent.metric("oracle_watchdog_agent_leader") == Some(1.0)
}

#[test]
fn dead_node_gets_exactly_one_stop_and_start_and_metrics_say_so() {
    let mut w = World::new();
    w.start_monitor("n1");
    w.start_monitor("n2");
    let agent = w.agent(&w.agent_config(""), &[]);
    assert!(
        wait_until(5 * SEC, || leader(&agent)),
        "{:#?}",
        agent.logs()
    );
    assert_eq!(
        agent.metric("oracle_watchdog_agent_nodes_monitored"),
        Some(2.0)
    );
    assert_eq!(
        agent.metric("oracle_watchdog_agent_restart_attempts_total{node=\"n2\"}"),
        Some(0.0)
    );
    w.kill_monitor("n1");
    // The key vanishes after ~2 s, then the 2 s timeout, then the cycle.
    assert!(
        wait_until(20 * SEC, || w
            .oci
            .actions_performed(I1)
            .contains(&"START".to_string())),
        "{:#?}",
        agent.logs()
    );
    w.start_monitor("n1"); // the instance boots, its monitor comes back
    assert!(wait_until(10 * SEC, || {
        agent.metric("oracle_watchdog_agent_restart_successes_total{node=\"n1\"}") == Some(1.0)
            && agent.metric("oracle_watchdog_agent_nodes_missing") == Some(0.0)
    }));
    std::thread::sleep(3 * SEC); // nothing more happens once it is back
    assert_eq!(
        w.oci.actions_performed(I1),
        vec!["STOP".to_string(), "START".to_string()]
    );
    assert!(w.oci.actions_performed(I2).is_empty());
    assert!(
        w.oci.requests().iter().all(|r| r.signature_ok),
        "every request signed correctly"
    );
    assert_eq!(
        agent.metric("oracle_watchdog_agent_restart_attempts_total{node=\"n1\"}"),
        Some(1.0)
    );
    assert_eq!(
        agent.metric("oracle_watchdog_agent_restart_failures_total{node=\"n1\"}"),
        Some(0.0)
    );
    assert_eq!(
        agent.metric("oracle_watchdog_agent_consul_connected"),
        Some(1.0)
    );
    assert_eq!(
        agent.metric("oracle_watchdog_agent_oci_connected"),
        Some(1.0)
    );
    assert!(
        w.consul
            .kv_get("oracle-watchdog/agent/restarts/n1")
            .is_none(),
        "finished cycle record removed"
    );
}

#[test]
fn dry_run_decides_but_sends_no_state_changing_request() {
    let mut w = World::new();
    w.start_monitor("n1");
    w.start_monitor("n2");
    let agent = w.agent(&w.agent_config(""), &["-dry-run"]);
    assert!(wait_until(5 * SEC, || leader(&agent)));
    w.kill_monitor("n1");
    assert!(wait_until(15 * SEC, || {
        agent
            .metric("oracle_watchdog_agent_restart_attempts_total{node=\"n1\"}")
            .unwrap_or(0.0)
            >= 1.0
    }));
    assert!(agent.logs().iter().any(|l| l.contains("DRY RUN")));
    assert!(w.posts().is_empty(), "dry run sent {:?}", w.posts());
}

#[test]
fn consul_outage_never_restarts_anything() {
    let mut w = World::new();
    w.start_monitor("n1");
    w.start_monitor("n2");
    let mut agent = w.agent(&w.agent_config(""), &[]);
    assert!(wait_until(5 * SEC, || leader(&agent)));
    w.consul.set_fault(Fault::Refuse).unwrap();
    assert!(wait_until(10 * SEC, || agent
        .metric("oracle_watchdog_agent_consul_connected")
        == Some(0.0)));
    std::thread::sleep(5 * SEC); // well past the 2 s timeout
    assert!(
        agent
            .metric("oracle_watchdog_agent_consul_check_failures_total")
            .unwrap()
            >= 1.0
    );
    w.consul.clear_faults().unwrap();
    assert!(wait_until(15 * SEC, || agent
        .metric("oracle_watchdog_agent_consul_connected")
        == Some(1.0)));
    std::thread::sleep(4 * SEC);
    assert!(agent.alive());
    assert!(w.posts().is_empty(), "an outage caused {:?}", w.posts());
}

#[test]
fn maintenance_key_keeps_the_agent_away() {
    let mut w = World::new();
    w.start_monitor("n1");
    w.start_monitor("n2");
    w.consul.kv_put(
        "oracle-watchdog/maintenance/n1",
        r#"{"reason":"kernel upgrade"}"#,
    );
    let agent = w.agent(&w.agent_config(""), &[]);
    assert!(wait_until(5 * SEC, || leader(&agent)));
    w.kill_monitor("n1");
    assert!(wait_until(10 * SEC, || agent
        .metric("oracle_watchdog_agent_nodes_missing")
        == Some(1.0)));
    std::thread::sleep(5 * SEC);
    assert!(w.posts().is_empty(), "{:?}", w.posts());
}

#[test]
fn killed_agent_mid_cycle_is_resumed_by_the_next_one() {
    let mut w = World::new();
    w.oci.set_transition_time(Duration::from_secs(3));
    w.start_monitor("n1");
    w.start_monitor("n2");
    let config = w.agent_config("");
    let first = w.agent(&config, &[]);
    assert!(wait_until(5 * SEC, || leader(&first)));
    w.kill_monitor("n1");
    // Kill the agent right after STOP was accepted, while waiting for STOPPED.
    assert!(wait_until(20 * SEC, || w
        .oci
        .actions_performed(I1)
        .contains(&"STOP".to_string())));
    first.signal("KILL");
    let record = w
        .consul
        .kv_get("oracle-watchdog/agent/restarts/n1")
        .expect("cycle stored in KV");
    let stored: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
    assert!(
        ["stopping", "wait_stopped"].contains(&stored["phase"].as_str().unwrap()),
        "{stored}"
    );
    let second = w.agent(&config, &[]);
    // Takes over once the dead agent's lock session expires, then resumes.
    assert!(
        wait_until(30 * SEC, || w
            .oci
            .actions_performed(I1)
            .contains(&"START".to_string())),
        "{:#?}",
        second.logs()
    );
    assert!(
        second
            .logs()
            .iter()
            .any(|l| l.contains("resuming a restart cycle"))
    );
    w.start_monitor("n1");
    std::thread::sleep(2 * SEC);
    assert_eq!(
        w.oci.actions_performed(I1),
        vec!["STOP".to_string(), "START".to_string()]
    );
}

#[test]
fn two_agents_run_exactly_one_cycle_per_outage() {
    let mut w = World::new();
    w.start_monitor("n1");
    w.start_monitor("n2");
    let config = w.agent_config("");
    let a = w.agent(&config, &[]);
    let b = w.agent(&config, &[]);
    assert!(wait_until(10 * SEC, || leader(&a) || leader(&b)));
    std::thread::sleep(SEC);
    assert!(!(leader(&a) && leader(&b)), "two leaders");
    w.kill_monitor("n1");
    assert!(wait_until(20 * SEC, || w
        .oci
        .actions_performed(I1)
        .contains(&"START".to_string())));
    w.start_monitor("n1");
    std::thread::sleep(3 * SEC);
    assert_eq!(
        w.oci.actions_performed(I1),
        vec!["STOP".to_string(), "START".to_string()]
    );
    let attempts = |d: &Daemon| {
        d.metric("oracle_watchdog_agent_restart_attempts_total{node=\"n1\"}")
            .unwrap_or(0.0)
    };
    assert_eq!(attempts(&a) + attempts(&b), 1.0);
}

#[test]
fn sigterm_exits_zero_and_releases_leadership() {
    let w = World::new();
    let mut a = w.agent(&w.agent_config(""), &[]);
    assert!(wait_until(5 * SEC, || leader(&a)));
    let started = Instant::now();
    a.signal("TERM");
    let status = a.wait_exit(10 * SEC).expect("agent exits");
    eprintln!("agent exited {:?} after SIGTERM", started.elapsed());
    assert_eq!(status.code(), Some(0));
    assert!(
        w.consul
            .kv_get("oracle-watchdog/agent/leader")
            .is_none_or(|k| k.session.is_none()),
        "leader lock released"
    );
}

#[test]
fn standby_finishes_the_cycle_when_the_leader_is_killed() {
    let mut w = World::new();
    w.oci.set_transition_time(Duration::from_secs(3));
    w.start_monitor("n1");
    w.start_monitor("n2");
    let config = w.agent_config("");
    let mut agents = vec![w.agent(&config, &[]), w.agent(&config, &[])];
    assert!(wait_until(10 * SEC, || agents.iter().any(leader)));
    w.kill_monitor("n1");
    assert!(wait_until(20 * SEC, || w
        .oci
        .actions_performed(I1)
        .contains(&"STOP".to_string())));
    let i = agents.iter().position(leader).expect("a leader");
    let dead = agents.remove(i);
    dead.signal("KILL");
    let standby = &agents[0];
    // The dead leader's lock session expires (0.5 x 10 s here), the standby
    // takes the lock, finds the stored cycle and starts the instance.
    assert!(
        wait_until(30 * SEC, || w
            .oci
            .actions_performed(I1)
            .contains(&"START".to_string())),
        "{:#?}",
        standby.logs()
    );
    assert!(leader(standby));
    w.start_monitor("n1");
    std::thread::sleep(2 * SEC);
    assert_eq!(
        w.oci.actions_performed(I1),
        vec!["STOP".to_string(), "START".to_string()]
    );
}

#[test]
fn sigterm_mid_cycle_waits_the_grace_then_leaves_the_cycle_resumable() {
    let mut w = World::new();
    w.oci.set_transition_time(Duration::from_secs(4));
    w.start_monitor("n1");
    w.start_monitor("n2");
    let config = w.agent_config(""); // shutdown_grace: 3s
    let mut agent = w.agent(&config, &[]);
    assert!(wait_until(5 * SEC, || leader(&agent)));
    w.kill_monitor("n1");
    assert!(wait_until(20 * SEC, || w
        .oci
        .actions_performed(I1)
        .contains(&"STOP".to_string())));
    let sent = Instant::now();
    agent.signal("TERM");
    let status = agent
        .wait_exit(15 * SEC)
        .expect("agent exits after the grace period");
    eprintln!("agent exited {:?} after SIGTERM mid-cycle", sent.elapsed());
    assert_eq!(status.code(), Some(0));
    assert!(
        sent.elapsed() >= Duration::from_secs(3),
        "the running cycle got its grace period"
    );
    assert!(
        w.consul
            .kv_get("oracle-watchdog/agent/restarts/n1")
            .is_some(),
        "cycle left in KV"
    );
    assert!(!w.oci.actions_performed(I1).contains(&"START".to_string()));
    // The next agent resumes it: START, no second STOP.
    let next = w.agent(&config, &[]);
    assert!(
        wait_until(30 * SEC, || w
            .oci
            .actions_performed(I1)
            .contains(&"START".to_string())),
        "{:#?}",
        next.logs()
    );
    w.start_monitor("n1");
    std::thread::sleep(SEC);
    assert_eq!(
        w.oci.actions_performed(I1),
        vec!["STOP".to_string(), "START".to_string()]
    );
}

#[test]
fn guard_holds_all_restarts_when_most_nodes_vanish_at_once() {
    let mut w = World::new();
    w.start_monitor("n1");
    w.start_monitor("n2");
    let cfg = std::fs::read_to_string(w.agent_config(""))
        .unwrap()
        .replace(
            "  shutdown_grace: 3s\n",
            "  shutdown_grace: 3s\n  max_missing_percent: 50\n",
        );
    assert!(cfg.contains("max_missing_percent: 50"));
    let path = common::write_file(&w.dir, "guard.yaml", &cfg);
    let agent = w.agent(&path, &[]);
    assert!(wait_until(5 * SEC, || leader(&agent)));
    w.kill_monitor("n1");
    w.kill_monitor("n2");
    assert!(wait_until(15 * SEC, || agent
        .metric("oracle_watchdog_agent_restart_guard_active")
        == Some(1.0)));
    std::thread::sleep(4 * SEC); // past the 2 s timeout
    assert!(w.posts().is_empty(), "guard let through {:?}", w.posts());
    assert!(
        agent
            .logs()
            .iter()
            .any(|l| l.contains("holding ALL restarts"))
    );
    // One node comes back: 1 of 2 missing is not more than 50 %, restarts resume.
    w.start_monitor("n2");
    assert!(wait_until(20 * SEC, || w
        .oci
        .actions_performed(I1)
        .contains(&"STOP".to_string())));
    assert_eq!(
        agent.metric("oracle_watchdog_agent_restart_guard_active"),
        Some(0.0)
    );
}

#[test]
fn an_agent_that_cannot_elect_says_so_loudly_and_acts_on_nothing() {
    let mut w = World::new();
    w.start_monitor("n1");
    w.start_monitor("n2");
    // ACLs switched on: the agent has no token, so every request gets 403.
    w.consul.require_token(Some("the-right-token".into()));
    let agent = w.agent(&w.agent_config(""), &[]);
    assert!(
        wait_until(10 * SEC, || agent
            .logs()
            .iter()
            .any(|l| l.contains("leader election failing"))),
        "{:#?}",
        agent.logs()
    );
    assert!(
        agent
            .logs()
            .iter()
            .any(|l| l.contains("\"level\":\"WARN\"") && l.contains("leader election failing"))
    );
    assert_eq!(agent.metric("oracle_watchdog_agent_leader"), Some(0.0));
    assert!(
        agent
            .metric("oracle_watchdog_agent_consul_check_failures_total")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(w.posts().is_empty());
}
