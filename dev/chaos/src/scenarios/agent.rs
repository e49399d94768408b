//! The agent itself misbehaving or disturbed: SIGKILLed in each phase of a
//! restart cycle, two agents at once, the wall clock jumping an hour.

use std::path::Path;
use std::time::{Duration, SystemTime};

use watchdog_standins::oci::{Fault, LifecycleState};

use crate::Env;
use crate::ensure;
use crate::harness::{Context, Daemon, Outcome, SEC, holds_for, wait_until, write_file};
use crate::scenarios::oci::catch_phase_write;
use crate::world::{AgentCfg, I1, I2, World, WorldOpts, is_leader, per_node};

const MISSING: &str = "oracle_watchdog_agent_nodes_missing";
const ATTEMPTS: &str = "oracle_watchdog_agent_restart_attempts_total";

/// Which phase to kill the agent in, and how to hold it there.
#[derive(Clone, Copy, PartialEq)]
enum KillIn {
    Inspect,
    Stopping,
    WaitStopped,
    Starting,
    WaitRunning,
}

/// SIGKILLs the leading agent while its cycle for n1 is in `phase`, starts
/// a new agent, and expects the stored cycle to be resumed and finished
/// with exactly one STOP and one START.
fn killed_in(env: &Env, phase: KillIn) -> Outcome {
    let opts = WorldOpts {
        transition: Duration::from_secs(3),
        ..WorldOpts::default()
    };
    let mut w = World::new(&env.bin, &env.book, opts)?;
    w.start_monitor("n1")?;
    w.start_monitor("n2")?;
    let cfg = w.agent_config(&AgentCfg::default())?;
    let mut first = w.leading_agent(&cfg)?;
    w.wait_probe()?;
    let name = match phase {
        KillIn::Inspect => {
            w.oci.fail_next(1, Fault::Hang);
            w.kill_monitor("n1")?;
            ensure!(
                wait_until(30 * SEC, || w.oci.requests().iter().any(|r| r.status == 0)),
                "the inspect read never arrived"
            );
            "inspect"
        }
        KillIn::Stopping => {
            w.kill_monitor("n1")?;
            catch_phase_write(&w, "n1", "stopping")?;
            w.oci.fail_next(1, Fault::Hang);
            w.consul.clear_faults().ctx("clear latency")?;
            ensure!(
                wait_until(10 * SEC, || w
                    .oci
                    .requests()
                    .iter()
                    .any(|r| r.status == 0 && r.action.as_deref() == Some("STOP"))),
                "the STOP never arrived"
            );
            "stopping"
        }
        KillIn::WaitStopped => {
            w.kill_monitor("n1")?;
            "wait_stopped"
        }
        KillIn::Starting => {
            w.oci.fail_next(1, Fault::OutOfCapacityOnStart);
            w.kill_monitor("n1")?;
            ensure!(
                wait_until(40 * SEC, || w
                    .oci
                    .requests()
                    .iter()
                    .any(|r| r.status == 500 && r.action.as_deref() == Some("START"))),
                "the failing START never arrived"
            );
            "starting"
        }
        KillIn::WaitRunning => {
            w.kill_monitor("n1")?;
            "wait_running"
        }
    };
    ensure!(
        wait_until(40 * SEC, || w.stored_phase("n1").as_deref() == Some(name)),
        "cycle never stored phase {name} (stored: {:?})",
        w.stored_phase("n1")
    );
    first.kill();
    // The instance may already have been started: its node boots.
    let started = w.actions(I1).iter().any(|a| a == "START");
    if started {
        w.start_monitor("n1")?;
    }
    let mut second = w.agent_with("agent 2", &cfg, &[], &[])?;
    if !started {
        ensure!(
            wait_until(45 * SEC, || w.actions(I1).iter().any(|a| a == "START")),
            "the resumed cycle never started the instance (OCI performed {:?})",
            w.actions(I1)
        );
        w.start_monitor("n1")?;
    }
    ensure!(
        wait_until(30 * SEC, || w.leftover_cycles().is_empty()
            && w.oci.instance_state(I1) == Some(LifecycleState::Running)),
        "resumed cycle did not finish: stored {:?}, instance {:?}",
        w.stored_phase("n1"),
        w.oci.instance_state(I1)
    );
    ensure!(
        second.logged("resuming a restart cycle"),
        "the second agent did not resume the stored cycle"
    );
    std::thread::sleep(3 * SEC);
    w.one_stop_one_start(I1)?;
    ensure!(w.actions(I2).is_empty(), "the healthy instance was touched");
    w.finish(&mut [&mut second])
}

/// SIGKILL while reading the instance first.
pub fn killed_in_inspect(env: &Env) -> Outcome {
    killed_in(env, KillIn::Inspect)
}

/// SIGKILL while the STOP request is in flight.
pub fn killed_in_stopping(env: &Env) -> Outcome {
    killed_in(env, KillIn::Stopping)
}

/// SIGKILL while waiting for STOPPED.
pub fn killed_in_wait_stopped(env: &Env) -> Outcome {
    killed_in(env, KillIn::WaitStopped)
}

/// SIGKILL while START is being retried (out of capacity).
pub fn killed_in_starting(env: &Env) -> Outcome {
    killed_in(env, KillIn::Starting)
}

/// SIGKILL while waiting for RUNNING.
pub fn killed_in_wait_running(env: &Env) -> Outcome {
    killed_in(env, KillIn::WaitRunning)
}

/// Two agents started at once: one leader, one cycle per outage.
pub fn two_agents(env: &Env) -> Outcome {
    let mut w = World::new(&env.bin, &env.book, WorldOpts::default())?;
    w.start_monitor("n1")?;
    w.start_monitor("n2")?;
    let cfg = w.agent_config(&AgentCfg::default())?;
    let mut a = w.agent_with("agent A", &cfg, &[], &[])?;
    let mut b = w.agent_with("agent B", &cfg, &[], &[])?;
    ensure!(
        wait_until(15 * SEC, || is_leader(&a) || is_leader(&b)),
        "no leader"
    );
    holds_for(3 * SEC, "two leaders at once", || {
        !(is_leader(&a) && is_leader(&b))
    })?;
    w.outage_until_started("n1", I1, 40 * SEC)?;
    ensure!(
        wait_until(15 * SEC, || a.metric(MISSING) == Some(0.0)
            && b.metric(MISSING) == Some(0.0)),
        "agents did not see n1 come back"
    );
    std::thread::sleep(3 * SEC);
    w.one_stop_one_start(I1)?;
    let sum = a.metric(&per_node(ATTEMPTS, "n1")).unwrap_or(0.0)
        + b.metric(&per_node(ATTEMPTS, "n1")).unwrap_or(0.0);
    ensure!(sum == 1.0, "{sum} attempts between the two agents");
    w.finish(&mut [&mut a, &mut b])
}

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// Monitors and agent run with libfaketime reading a shifting offset from
/// a file (monotonic time untouched, as a real clock step would leave it).
/// The clock jumps by `offset` while everything is healthy: no restart,
/// heartbeats go on; then a real outage is handled after the normal timeout.
fn clock_jump(env: &Env, offset: &str) -> Outcome {
    ensure!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} missing: install Debian's faketime (make chaos does)"
    );
    let dir = crate::harness::temp_dir("clock")?;
    let stamp = write_file(&dir, "faketime", "+0\n")?;
    let opts = WorldOpts {
        oci_max_skew: Duration::from_secs(3 * 3600),
        env: vec![
            ("LD_PRELOAD".into(), LIBFAKETIME.into()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                stamp.display().to_string(),
            ),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ],
        ..WorldOpts::default()
    };
    let mut w = World::new(&env.bin, &env.book, opts)?;
    w.start_monitor("n1")?;
    w.start_monitor("n2")?;
    let mut a = w.leading_agent(&w.agent_config(&AgentCfg::default())?)?;
    let renewals = |w: &World| {
        w.monitor("n1")
            .map(|d| d.val("oracle_watchdog_session_renewals_total"))
            .unwrap_or(f64::NAN)
    };
    std::fs::write(&stamp, format!("{offset}\n")).ctx("write faketime offset")?;
    let r0 = renewals(&w);
    holds_for(8 * SEC, "a heartbeat dropped after the clock jump", || {
        w.monitors_healthy() && a.metric(MISSING) == Some(0.0)
    })?;
    ensure!(
        renewals(&w) >= r0 + 4.0,
        "renewals stalled after the clock jump ({r0} -> {})",
        renewals(&w)
    );
    w.no_posts()?;
    // The jump really reached the daemons: their log timestamps moved.
    let secs: i64 = offset.trim_start_matches('+').parse().ctx("offset")?;
    ensure!(
        logs_shifted(w.monitor("n1")?, secs) && logs_shifted(&a, secs),
        "the daemons' wall clock did not move (libfaketime not effective?)"
    );
    w.outage_until_started("n1", I1, 40 * SEC)?;
    ensure!(
        wait_until(20 * SEC, || a.metric(MISSING) == Some(0.0)),
        "n1 coming back not noticed"
    );
    std::thread::sleep(2 * SEC);
    w.one_stop_one_start(I1)?;
    ensure!(
        a.val(&per_node(ATTEMPTS, "n1")) == 1.0,
        "attempts after the jump: {}",
        a.val(&per_node(ATTEMPTS, "n1"))
    );
    w.finish(&mut [&mut a])
}

/// The wall clock jumps one hour forward.
pub fn clock_forward(env: &Env) -> Outcome {
    clock_jump(env, "+3600")
}

/// The wall clock jumps one hour back.
pub fn clock_backward(env: &Env) -> Outcome {
    clock_jump(env, "-3600")
}

/// A heartbeat whose JSON says it started an hour in the future (a node
/// with a wrong clock) is still a heartbeat: nothing happens.
pub fn skewed_started_at(env: &Env) -> Outcome {
    let mut w = World::new(&env.bin, &env.book, WorldOpts::default())?;
    w.start_monitor("n1")?;
    w.start_monitor("n2")?;
    let mut a = w.leading_agent(&w.agent_config(&AgentCfg::default())?)?;
    let key = "oracle-watchdog/nodes/n1";
    let kv = w.consul.kv_get(key).ctx("n1 key")?;
    let mut v: serde_json::Value = serde_json::from_slice(&kv.value).ctx("heartbeat JSON")?;
    v["started_at"] = serde_json::Value::String("2099-01-01T01:00:00Z".into());
    w.consul.kv_put(key, v.to_string());
    holds_for(6 * SEC, "a skewed started_at changed something", || {
        a.metric(MISSING) == Some(0.0) && w.heartbeat_held("n1")
    })?;
    w.no_posts()?;
    w.finish(&mut [&mut a])
}

/// Whether the daemon's latest JSON log line carries a wall-clock time
/// `offset_secs` away from ours (to the minute).
fn logs_shifted(d: &Daemon, offset_secs: i64) -> bool {
    let Some(ts) = d.logs().iter().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        Some(v["timestamp"].as_str()?.to_string())
    }) else {
        return false;
    };
    let now = SystemTime::now();
    [-60i64, 0, 60].iter().any(|delta| {
        let shift = offset_secs + delta;
        let t = if shift >= 0 {
            now + Duration::from_secs(shift.unsigned_abs())
        } else {
            now - Duration::from_secs(shift.unsigned_abs())
        };
        let want = oracle_watchdog::wallclock::rfc3339(t);
        ts.get(..16) == want.get(..16)
    })
}
