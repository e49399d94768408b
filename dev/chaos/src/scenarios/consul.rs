//! Consul faults under two monitors and an agent: refused, hanging, slow,
//! leaderless, ACL-denied, wiped, sessions invalidated, the key taken,
//! flapping. Nothing may exit, nothing may be restarted, everything recovers.

use std::time::Duration;

use watchdog_standins::consul::Fault;

use crate::Env;
use crate::ensure;
use crate::harness::{Context, Daemon, Outcome, SEC, holds_for, http, wait_until};
use crate::world::{AgentCfg, World, WorldOpts, is_leader};

const MISSING: &str = "oracle_watchdog_agent_nodes_missing";
const AGENT_CONSUL: &str = "oracle_watchdog_agent_consul_connected";
const CHECK_FAILURES: &str = "oracle_watchdog_agent_consul_check_failures_total";
const CONNECTED: &str = "oracle_watchdog_consul_connected";
const ACTIVE: &str = "oracle_watchdog_session_active";
const FAILURES: &str = "oracle_watchdog_session_failures_total";
const RECONNECTS: &str = "oracle_watchdog_reconnect_attempts_total";

/// Two monitors and a leading agent whose timeout outlasts the monitors'
/// reconnect backoff.
fn setup(env: &Env, opts: WorldOpts) -> Result<(World, Daemon), String> {
    let mut w = World::new(&env.bin, &env.book, opts)?;
    w.start_monitor("n1")?;
    w.start_monitor("n2")?;
    let a = w.leading_agent(&w.agent_config(&AgentCfg::consul_faults())?)?;
    ensure!(
        wait_until(10 * SEC, || a.metric(MISSING) == Some(0.0)
            && a.metric(AGENT_CONSUL) == Some(1.0)),
        "agent not settled: missing={} consul_connected={}",
        a.val(MISSING),
        a.val(AGENT_CONSUL)
    );
    Ok((w, a))
}

/// After a fault cleared: monitors heartbeat again, the agent sees every
/// node, and a few more seconds pass without any OCI request.
fn recovered(w: &mut World, a: &mut Daemon) -> Outcome {
    ensure!(
        wait_until(35 * SEC, || w.monitors_healthy()),
        "monitors did not recover: n1 active={} n2 active={}",
        w.monitor("n1")?.val(ACTIVE),
        w.monitor("n2")?.val(ACTIVE)
    );
    ensure!(
        wait_until(15 * SEC, || a.metric(AGENT_CONSUL) == Some(1.0)
            && a.metric(MISSING) == Some(0.0)
            && is_leader(a)),
        "agent did not recover: consul_connected={} missing={} leader={}",
        a.val(AGENT_CONSUL),
        a.val(MISSING),
        a.val("oracle_watchdog_agent_leader")
    );
    std::thread::sleep(3 * SEC);
    w.no_posts()?;
    w.finish(&mut [a])
}

/// An outage (refused, hung, leaderless): both sides report it, nobody
/// restarts anything, both recover once it clears.
fn outage(env: &Env, fault: Fault) -> Outcome {
    let (mut w, mut a) = setup(env, WorldOpts::default())?;
    w.consul.set_fault(fault).ctx("set fault")?;
    ensure!(
        wait_until(20 * SEC, || ["n1", "n2"].iter().all(|n| {
            w.monitor(n)
                .is_ok_and(|d| d.metric(CONNECTED) == Some(0.0) && d.metric(ACTIVE) == Some(0.0))
        })),
        "monitors do not report the outage (n1 connected={} active={})",
        w.monitor("n1")?.val(CONNECTED),
        w.monitor("n1")?.val(ACTIVE)
    );
    ensure!(
        wait_until(20 * SEC, || a.metric(AGENT_CONSUL) == Some(0.0)
            && a.val(CHECK_FAILURES) >= 1.0),
        "agent does not report the outage: consul_connected={} check_failures={}",
        a.val(AGENT_CONSUL),
        a.val(CHECK_FAILURES)
    );
    // Longer than the sessions' expiry and the agent's timeout would allow.
    std::thread::sleep(6 * SEC);
    for n in ["n1", "n2"] {
        let d = w.monitor(n)?;
        ensure!(
            d.val(RECONNECTS) >= 1.0,
            "monitor {n}: reconnect attempts not counted ({})",
            d.val(RECONNECTS)
        );
    }
    a.ensure_alive("agent")?;
    w.no_posts()?;
    w.consul.clear_faults().ctx("clear faults")?;
    recovered(&mut w, &mut a)
}

/// Consul refuses connections (nothing listens) for a while.
pub fn refusing(env: &Env) -> Outcome {
    outage(env, Fault::Refuse)
}

/// Consul accepts connections and never answers.
pub fn hanging(env: &Env) -> Outcome {
    outage(env, Fault::Hang)
}

/// `/v1/status/leader` is empty and everything else 500 "No cluster leader".
pub fn no_leader(env: &Env) -> Outcome {
    outage(env, Fault::NoLeader)
}

/// Every answer takes a second: slow, but inside every timeout, so the
/// heartbeats must stay up the whole time.
pub fn slow(env: &Env) -> Outcome {
    let (mut w, mut a) = setup(env, WorldOpts::default())?;
    let f0 = w.monitor("n1")?.val(FAILURES);
    w.consul
        .set_fault(Fault::Latency(Duration::from_secs(1)))
        .ctx("set latency")?;
    holds_for(
        10 * SEC,
        "a heartbeat dropped while Consul was slow",
        || w.monitors_healthy() && a.metric(MISSING) == Some(0.0),
    )?;
    ensure!(
        a.metric(AGENT_CONSUL) == Some(1.0),
        "agent says Consul is down although it only is slow"
    );
    let f1 = w.monitor("n1")?.val(FAILURES);
    ensure!(
        f1 == f0,
        "session failures counted while slow: {f0} -> {f1}"
    );
    w.consul.clear_faults().ctx("clear faults")?;
    recovered(&mut w, &mut a)
}

/// The ACL token is revoked (403 for everyone), then restored.
pub fn acl_denied(env: &Env) -> Outcome {
    let token = format!("chaos-acl-{:016x}", fastrand::u64(..));
    let opts = WorldOpts {
        consul_token: Some(token.clone()),
        ..WorldOpts::default()
    };
    let (mut w, mut a) = setup(env, opts)?;
    let f0 = w.monitor("n1")?.val(FAILURES);
    w.consul
        .require_token(Some(format!("rotated-{:016x}", fastrand::u64(..))));
    ensure!(
        wait_until(15 * SEC, || {
            w.monitor("n1")
                .is_ok_and(|d| d.metric(ACTIVE) == Some(0.0) && d.val(FAILURES) > f0)
        }),
        "monitor does not report the 403: active={} failures={}",
        w.monitor("n1")?.val(ACTIVE),
        w.monitor("n1")?.val(FAILURES)
    );
    ensure!(
        wait_until(15 * SEC, || a.val(CHECK_FAILURES) >= 1.0),
        "agent does not count the 403 as a failed check"
    );
    std::thread::sleep(6 * SEC);
    w.no_posts()?;
    w.consul.require_token(Some(token.clone()));
    recovered(&mut w, &mut a)?;
    let leaked = env.book.dump().contains(&token)
        || w.monitors
            .iter()
            .any(|(_, d)| d.scrape().is_some_and(|m| m.contains(&token)))
        || a.scrape().is_some_and(|m| m.contains(&token));
    ensure!(!leaked, "the Consul token appears in logs or metrics");
    Ok(())
}

/// All sessions and keys vanish and the index goes backwards (a snapshot
/// restore): the monitors re-register, the agent re-reads from index 0
/// and keeps seeing changes.
pub fn wiped(env: &Env) -> Outcome {
    let (mut w, mut a) = setup(env, WorldOpts::default())?;
    let old = w.consul.sessions();
    w.consul.wipe();
    ensure!(
        wait_until(15 * SEC, || w.monitors_healthy()
            && w.consul.sessions().iter().all(|s| !old.contains(s))),
        "monitors did not re-register after the wipe"
    );
    ensure!(
        wait_until(15 * SEC, || is_leader(&a) && a.metric(MISSING) == Some(0.0)),
        "agent did not recover leadership/view after the wipe"
    );
    // The watcher must not be stuck on the old (higher) index: a node that
    // dies now is noticed.
    w.kill_monitor("n2")?;
    ensure!(
        wait_until(15 * SEC, || a.metric(MISSING) == Some(1.0)),
        "agent did not notice a node vanishing after the wipe (stale index?)"
    );
    w.start_monitor("n2")?;
    recovered(&mut w, &mut a)
}

/// Consul invalidates the monitor's session and the agent's leader session.
pub fn session_invalidated(env: &Env) -> Outcome {
    let (mut w, mut a) = setup(env, WorldOpts::default())?;
    let key = w
        .consul
        .kv_get("oracle-watchdog/nodes/n1")
        .ctx("n1 heartbeat key")?;
    let s1 = key.session.ctx("n1 key has no session")?;
    let leader = w
        .consul
        .kv_get("oracle-watchdog/agent/leader")
        .and_then(|k| k.session)
        .ctx("agent leader key has no session")?;
    ensure!(w.consul.invalidate_session(&s1), "session {s1} unknown");
    ensure!(
        w.consul.invalidate_session(&leader),
        "session {leader} unknown"
    );
    ensure!(
        wait_until(10 * SEC, || w.heartbeat_held("n1")
            && w.consul
                .kv_get("oracle-watchdog/nodes/n1")
                .and_then(|k| k.session)
                .is_some_and(|s| s != s1)),
        "monitor n1 did not re-register with a new session"
    );
    ensure!(
        w.monitor("n1")?.val(FAILURES) >= 1.0,
        "the lost session was not counted as a failure"
    );
    recovered(&mut w, &mut a)
}

/// Another session grabs the node's key between the monitor's requests: the
/// monitor must keep its own session alive, say it is not active, count the
/// conflict, and take the key back once it is free. The agent sees a key
/// and restarts nothing.
pub fn key_taken(env: &Env) -> Outcome {
    let (mut w, mut a) = setup(env, WorldOpts::default())?;
    let base = w.consul.url();
    let agent = http();
    let mut r = agent
        .put(&format!("{base}/v1/session/create"))
        .send(r#"{"Name":"intruder","TTL":"60s","Behavior":"release","LockDelay":"0s"}"#)
        .ctx("create intruder session")?;
    let body: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().ctx("read body")?)
            .ctx("session JSON")?;
    let intruder = body["ID"].as_str().ctx("no session ID")?.to_string();
    let mine = w
        .consul
        .kv_get("oracle-watchdog/nodes/n1")
        .and_then(|k| k.session)
        .ctx("n1 key has no session")?;
    // Free the key (delete behaviour) and grab it before the monitor can.
    ensure!(w.consul.invalidate_session(&mine), "session {mine} unknown");
    let mut r = agent
        .put(&format!(
            "{base}/v1/kv/oracle-watchdog/nodes/n1?acquire={intruder}"
        ))
        .send("intruder")
        .ctx("acquire as intruder")?;
    let got = r.body_mut().read_to_string().ctx("read body")?;
    ensure!(
        got.trim() == "true",
        "intruder could not take the key: {got}"
    );
    let m = w.monitor("n1")?;
    ensure!(
        wait_until(10 * SEC, || m.val("oracle_watchdog_lock_conflicts_total")
            >= 1.0),
        "lock conflict not counted"
    );
    holds_for(
        5 * SEC,
        "monitor claims to be active without the key",
        || m.metric(ACTIVE) == Some(0.0),
    )?;
    ensure!(
        w.consul
            .kv_get("oracle-watchdog/nodes/n1")
            .and_then(|k| k.session)
            .as_deref()
            == Some(intruder.as_str()),
        "the intruder lost the key while holding a live session"
    );
    w.no_posts()?;
    let mut r = agent
        .put(&format!("{base}/v1/session/destroy/{intruder}"))
        .send("")
        .ctx("destroy intruder")?;
    let _ = r.body_mut().read_to_string();
    recovered(&mut w, &mut a)
}

/// Consul goes away and comes back every second for 14 s.
pub fn flapping(env: &Env) -> Outcome {
    let (mut w, mut a) = setup(env, WorldOpts::default())?;
    for _ in 0..7 {
        w.consul.set_fault(Fault::Refuse).ctx("refuse")?;
        std::thread::sleep(SEC);
        w.consul.clear_faults().ctx("clear")?;
        std::thread::sleep(SEC);
    }
    for (n, d) in w.monitors.iter_mut() {
        d.ensure_alive(&format!("monitor {n}"))?;
    }
    a.ensure_alive("agent")?;
    w.no_posts()?;
    recovered(&mut w, &mut a)
}
