//! Operator commands against the stand-ins: maintenance, status, restart.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::world::{I1, SEC, World};
use common::{binary, wait_until};

fn run(args: &[&str], config: &Path) -> (Option<i32>, String, String) {
    let o: Output = Command::new(binary())
        .args(args)
        .arg("-config")
        .arg(config)
        .env_remove("CONSUL_HTTP_TOKEN")
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn row<'a>(out: &'a str, node: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(node))
        .unwrap_or("")
}

#[test]
fn maintenance_on_and_off_round_trip_and_show_in_status() {
    let w = World::new();
    let cfg = w.agent_config("");
    let (code, out, err) = run(
        &["maintenance", "on", "n1", "-reason", "kernel upgrade"],
        &cfg,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let kv = w
        .consul
        .kv_get("oracle-watchdog/maintenance/n1")
        .expect("maintenance key");
    let v: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    assert_eq!(v["reason"], "kernel upgrade");
    let (code, out, _) = run(&["status"], &cfg);
    assert_eq!(code, Some(0));
    assert!(row(&out, "n1").contains("on: kernel upgrade"), "{out}");
    assert!(row(&out, "n2").ends_with('-'), "{out}");
    let (code, _, _) = run(&["maintenance", "off", "n1"], &cfg);
    assert_eq!(code, Some(0));
    assert!(w.consul.kv_get("oracle-watchdog/maintenance/n1").is_none());
}

#[test]
fn status_shows_heartbeats_stored_cycles_and_the_leader() {
    let mut w = World::new();
    w.start_monitor("n1");
    w.consul.kv_put(
        "oracle-watchdog/agent/restarts/n2",
        r#"{"node":"n2","instance_id":"x","phase":"wait_stopped","attempt":2,"agent":"old:1","started_at":"t","updated_at":"t"}"#,
    );
    let cfg = w.agent_config("");
    let (code, out, err) = run(&["status"], &cfg);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("leader: none"), "{out}");
    assert!(row(&out, "n1").contains("alive"), "{out}");
    assert!(
        row(&out, "n2").contains("missing")
            && row(&out, "n2").contains("wait_stopped (attempt 2, by old:1)"),
        "{out}"
    );

    // With a (dry-run) leader, the missing node's age is known.
    w.consul.kv_delete("oracle-watchdog/agent/restarts/n2");
    let agent = w.agent(&cfg, &["-dry-run"]);
    assert!(
        wait_until(10 * SEC, || w
            .consul
            .kv_get("oracle-watchdog/agent/missing/n2")
            .is_some()),
        "{:#?}",
        agent.logs()
    );
    let (_, out, _) = run(&["status"], &cfg);
    assert!(
        out.starts_with("leader: ") && !out.starts_with("leader: none"),
        "{out}"
    );
    assert!(row(&out, "n2").contains("missing for"), "{out}");
    drop(agent);
}

#[test]
fn restart_dry_run_reads_but_sends_nothing() {
    let w = World::new();
    let (code, out, err) = run(&["restart", "n1", "-dry-run"], &w.agent_config(""));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("DRY RUN") && out.contains("RUNNING"), "{out}");
    assert!(w.posts().is_empty());
}

#[test]
fn restart_runs_one_cycle_and_cleans_up() {
    let w = World::new();
    let cfg = w.agent_config(""); // poll_interval 1s, 300 ms transitions
    let (code, out, err) = run(&["restart", "n1"], &cfg);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("restarted"), "{out}");
    assert_eq!(
        w.oci.actions_performed(I1),
        vec!["STOP".to_string(), "START".to_string()]
    );
    assert!(
        w.consul
            .kv_get("oracle-watchdog/agent/restarts/n1")
            .is_none()
    );
}

#[test]
fn restart_refuses_while_a_cycle_is_in_progress() {
    let w = World::new();
    w.consul.kv_put(
        "oracle-watchdog/agent/restarts/n1",
        r#"{"node":"n1","instance_id":"x","phase":"starting","attempt":1,"agent":"a:1","started_at":"t","updated_at":"t"}"#,
    );
    let (code, _, err) = run(&["restart", "n1"], &w.agent_config(""));
    assert_eq!(code, Some(1));
    assert!(err.contains("already in progress"), "{err}");
    assert!(w.posts().is_empty());
    let (code, _, err) = run(&["restart", "ghost"], &w.agent_config(""));
    assert_eq!(code, Some(2), "{err}");
}
