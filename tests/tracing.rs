//! OpenTelemetry traces end to end: a real agent exporting OTLP/HTTP
//! protobuf to the receiver stand-in during a real outage and recovery, and
//! a collector that refuses or hangs never delaying a restart or the exit.

mod common;

use common::world::{I1, SEC, World};
use common::{Daemon, wait_until};
use watchdog_standins::oci::Fault as OciFault;
use watchdog_standins::otlp::{OtlpFault, OtlpReceiver, ReceivedSpan, StatusCode};

const DROPPED: &str = "oracle_watchdog_trace_spans_dropped_total";
const EXPORTED: &str = "oracle_watchdog_trace_spans_exported_total";

fn tracing_block(receiver: &OtlpReceiver) -> String {
    format!(
        "tracing:\n  enabled: true\n  endpoint: \"{}\"\n",
        receiver.endpoint()
    )
}

fn leader(agent: &Daemon) -> bool {
    agent.metric("oracle_watchdog_agent_leader") == Some(1.0)
}

/// Kills n1's monitor and waits for the agent's START; then brings the
/// monitor back and waits for the recovery to be counted.
fn outage_and_recovery(w: &mut World, agent: &Daemon) {
    assert!(wait_until(5 * SEC, || leader(agent)), "{:#?}", agent.logs());
    w.kill_monitor("n1");
    assert!(
        wait_until(20 * SEC, || w
            .oci
            .actions_performed(I1)
            .contains(&"START".to_string())),
        "restart did not happen in time: {:#?}",
        agent.logs()
    );
    w.start_monitor("n1");
    assert!(wait_until(10 * SEC, || agent.metric(
        "oracle_watchdog_agent_restart_successes_total{node=\"n1\"}"
    ) == Some(1.0)));
    assert_eq!(
        w.oci.actions_performed(I1),
        vec!["STOP".to_string(), "START".to_string()]
    );
}

/// How a child appears in the expected order: its name, plus the target
/// state for waits.
fn label(s: &ReceivedSpan) -> String {
    match s.attr("target_state") {
        Some(t) => format!("{}({t})", s.name),
        None => s.name.clone(),
    }
}

#[test]
fn one_outage_is_one_trace_with_the_cycle_as_root() {
    let receiver = OtlpReceiver::start().unwrap();
    let mut w = World::new();
    w.start_monitor("n1");
    w.start_monitor("n2");
    let config = w.agent_config(&tracing_block(&receiver));
    let agent = w.agent(&config, &[]);
    outage_and_recovery(&mut w, &agent);

    assert!(
        receiver.wait_for_spans(15 * SEC, |s| s.iter().any(|x| x.name == "restart_cycle")),
        "no restart_cycle span; got {:?}",
        receiver
            .spans()
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    );
    let spans = receiver.spans();
    let roots: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "restart_cycle").collect();
    assert_eq!(roots.len(), 1, "one outage, one cycle: {roots:#?}");
    let root = roots[0];
    assert!(root.is_root(), "the cycle starts its own trace");
    assert_eq!(root.attr("node"), Some("n1"));
    assert_eq!(root.attr("instance_id"), Some(I1));
    assert_eq!(root.attr("attempt"), Some("1"));
    assert_eq!(root.attr("resumed"), Some("false"));
    assert_eq!(root.attr("outcome"), Some("recovered"));
    assert_ne!(root.status_code, StatusCode::Error);
    assert_eq!(
        root.resource.get("service.name").map(String::as_str),
        Some("oracle-watchdog")
    );
    assert_eq!(
        root.resource.get("service.version").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        root.resource
            .get("oracle_watchdog.mode")
            .map(String::as_str),
        Some("agent")
    );

    let in_trace: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    let mut children: Vec<&ReceivedSpan> = in_trace
        .iter()
        .copied()
        .filter(|s| s.parent_span_id == root.span_id)
        .collect();
    children.sort_by_key(|s| s.start_unix_nano);
    let steps: Vec<String> = children
        .iter()
        .filter(|s| s.name.starts_with("oci ") || s.name == "wait_for_state")
        .map(|s| label(s))
        .collect();
    assert_eq!(
        steps,
        [
            "oci GetInstance",
            "oci STOP",
            "wait_for_state(STOPPED)",
            "oci START",
            "wait_for_state(RUNNING)",
        ],
        "children of the cycle: {:#?}",
        children.iter().map(|s| label(s)).collect::<Vec<_>>()
    );
    for action in ["oci STOP", "oci START"] {
        let call = children.iter().find(|s| s.name == action).unwrap();
        assert!(
            call.attr("opc_request_id").is_some_and(|id| !id.is_empty()),
            "{call:#?}"
        );
        assert!(call.attr("lifecycle_state").is_some(), "{call:#?}");
    }
    // Each wait counts its polls, which are its own children.
    for (target, final_state) in [("STOPPED", "STOPPED"), ("RUNNING", "RUNNING")] {
        let wait = children
            .iter()
            .find(|s| s.name == "wait_for_state" && s.attr("target_state") == Some(target))
            .unwrap();
        let mut polls: Vec<&ReceivedSpan> = in_trace
            .iter()
            .copied()
            .filter(|s| s.parent_span_id == wait.span_id)
            .collect();
        polls.sort_by_key(|s| s.start_unix_nano);
        assert!(!polls.is_empty(), "wait for {target} made no poll");
        assert!(polls.iter().all(|p| p.name == "oci GetInstance"));
        assert_eq!(wait.attr("polls"), Some(polls.len().to_string().as_str()));
        assert!(wait.attr("duration_ms").is_some(), "{wait:#?}");
        assert_eq!(
            polls.last().unwrap().attr("lifecycle_state"),
            Some(final_state)
        );
    }
    // The cycle's Consul KV writes belong to the same trace.
    assert!(
        children.iter().any(|s| s.name.starts_with("consul ")),
        "{children:#?}"
    );
    // Other activity is traced too, in traces of its own.
    assert!(spans.iter().any(|s| s.name == "watch_pass" && s.is_root()));
    assert!(agent.metric(EXPORTED).unwrap_or(0.0) >= spans.len() as f64 - 0.5);
}

#[test]
fn a_failed_cycle_and_its_failed_call_carry_error_status_and_message() {
    let receiver = OtlpReceiver::start().unwrap();
    let mut w = World::new();
    w.start_monitor("n1");
    w.start_monitor("n2");
    let config = w.agent_config(&tracing_block(&receiver));
    let agent = w.agent(&config, &[]);
    assert!(wait_until(5 * SEC, || leader(&agent)));
    // OCI rejects our credentials from now on: the cycle cannot proceed.
    w.oci.fail_next(1000, OciFault::Unauthorized);
    w.kill_monitor("n1");
    assert!(
        receiver.wait_for_spans(30 * SEC, |s| s.iter().any(|x| x.name == "restart_cycle")),
        "{:#?}",
        agent.logs()
    );
    let spans = receiver.spans();
    let root = spans.iter().find(|s| s.name == "restart_cycle").unwrap();
    assert_eq!(root.attr("outcome"), Some("failed"));
    assert_eq!(root.status_code, StatusCode::Error);
    assert!(!root.status_message.is_empty(), "{root:#?}");
    let call = spans
        .iter()
        .find(|s| s.parent_span_id == root.span_id && s.name == "oci GetInstance")
        .expect("the failed call is traced");
    assert_eq!(call.status_code, StatusCode::Error);
    assert!(
        call.attr("error").is_some_and(|e| !e.is_empty()),
        "{call:#?}"
    );
    assert_eq!(call.attr("error"), Some(call.status_message.as_str()));
    assert!(w.posts().is_empty(), "nothing was stopped: {:?}", w.posts());
}

#[test]
fn monitor_heartbeats_are_traced_with_their_consul_calls() {
    let receiver = OtlpReceiver::start().unwrap();
    let w = World::new();
    let config = common::write_file(
        &w.dir,
        "monitor-traced.yaml",
        &format!(
            "monitor:\n  session_ttl: 10s\n  renew_interval: 1s\n{}",
            tracing_block(&receiver)
        ),
    );
    let addr = w.consul.http_addr();
    let mut monitor = Daemon::spawn(
        // Spans go out at INFO whatever the log level: -log-level warn
        // must not remove them (or the info events inside them).
        &[
            "-mode",
            "monitor",
            "-node",
            "n9",
            "-config",
            config.to_str().unwrap(),
            "-log-level",
            "warn",
        ],
        &[("CONSUL_HTTP_ADDR", addr.as_str())],
    );
    assert!(
        receiver.wait_for_spans(15 * SEC, |s| s.iter().any(|x| x.name == "heartbeat renew")),
        "{:#?}",
        monitor.logs()
    );
    monitor.signal("TERM");
    assert_eq!(monitor.wait_exit(10 * SEC).map(|s| s.code()), Some(Some(0)));
    let spans = receiver.spans();
    let create = spans
        .iter()
        .find(|s| s.name == "heartbeat create")
        .expect("session creation traced");
    assert!(create.is_root());
    assert_eq!(create.attr("outcome"), Some("session_created"));
    assert!(
        create.events.iter().any(|e| e == "heartbeat state changed"),
        "transitions are events of the request that caused them: {create:#?}"
    );
    let call = spans
        .iter()
        .find(|s| s.parent_span_id == create.span_id)
        .expect("the Consul call is a child");
    assert_eq!(call.name, "consul create session");
    assert_eq!(call.attr("method"), Some("PUT"));
    assert_eq!(call.attr("status"), Some("200"));
    assert_eq!(
        call.resource
            .get("oracle_watchdog.mode")
            .map(String::as_str),
        Some("monitor")
    );
}

/// With the collector in `fault`, the agent restarts on time, counts the
/// spans it could not deliver, and still stops promptly on SIGTERM.
fn collector_fault_changes_nothing(fault: OtlpFault) {
    let receiver = OtlpReceiver::start().unwrap();
    receiver.set_fault(Some(fault)).unwrap();
    let mut w = World::new();
    w.start_monitor("n1");
    w.start_monitor("n2");
    let config = w.agent_config(&tracing_block(&receiver));
    let mut agent = w.agent(&config, &[]);
    outage_and_recovery(&mut w, &agent);
    assert!(
        wait_until(20 * SEC, || agent.metric(DROPPED).unwrap_or(0.0) > 0.0),
        "dropped spans not counted: {:?}",
        agent.scrape()
    );
    assert_eq!(agent.metric(EXPORTED), Some(0.0));
    assert!(receiver.spans().is_empty());
    assert!(
        agent
            .logs()
            .iter()
            .filter(|l| l.contains("cannot export traces"))
            .count()
            <= 1,
        "warned once, not per batch"
    );
    agent.signal("TERM");
    let status = agent.wait_exit(8 * SEC);
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "{:#?}",
        agent.logs()
    );
    assert_eq!(
        w.oci.actions_performed(I1),
        vec!["STOP".to_string(), "START".to_string()]
    );
}

#[test]
fn collector_refusing_connections_never_delays_a_restart_or_the_exit() {
    collector_fault_changes_nothing(OtlpFault::Refuse);
}

#[test]
fn collector_that_hangs_never_delays_a_restart_or_the_exit() {
    collector_fault_changes_nothing(OtlpFault::Hang);
}

#[test]
fn collector_rejecting_with_503_never_delays_a_restart() {
    collector_fault_changes_nothing(OtlpFault::Reject(503));
}
