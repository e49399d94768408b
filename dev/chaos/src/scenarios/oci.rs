//! OCI faults during a real outage (a monitor SIGKILLed): 401, 404, 409,
//! 429 with Retry-After, out of host capacity on START, a hanging API, an
//! instance stuck STOPPING, a TERMINATED instance.

use std::time::Duration;

use watchdog_standins::oci::{Fault, LifecycleState};

use crate::Env;
use crate::ensure;
use crate::harness::{Context, Daemon, Outcome, SEC, wait_until};
use crate::world::{AgentCfg, I1, World, WorldOpts, per_node};

const ATTEMPTS: &str = "oracle_watchdog_agent_restart_attempts_total";
const SUCCESSES: &str = "oracle_watchdog_agent_restart_successes_total";
const FAILURES: &str = "oracle_watchdog_agent_restart_failures_total";
const MISSING: &str = "oracle_watchdog_agent_nodes_missing";
const OCI_UP: &str = "oracle_watchdog_agent_oci_connected";

/// Two monitors and a leading agent (timeout 2 s); no OCI request yet.
fn setup(env: &Env, opts: WorldOpts, cfg: AgentCfg) -> Result<(World, Daemon), String> {
    let mut w = World::new(&env.bin, &env.book, opts)?;
    w.start_monitor("n1")?;
    w.start_monitor("n2")?;
    let a = w.leading_agent(&w.agent_config(&cfg)?)?;
    ensure!(
        wait_until(10 * SEC, || a.metric(MISSING) == Some(0.0)),
        "agent does not see both nodes"
    );
    w.wait_probe()?;
    std::thread::sleep(SEC);
    let early = w.oci.requests();
    ensure!(
        early.len() == 1,
        "agent called OCI beyond its startup probe with every node healthy: {early:?}"
    );
    Ok((w, a))
}

/// The cycle for n1 recovered exactly once with one STOP and one START,
/// the node is back, and the other instance was never touched.
fn recovered_once(w: &mut World, a: &mut Daemon, attempts: f64) -> Outcome {
    ensure!(
        wait_until(20 * SEC, || a.metric(&per_node(SUCCESSES, "n1"))
            == Some(1.0)
            && a.metric(MISSING) == Some(0.0)),
        "no recorded success for n1 (successes={} missing={})",
        a.val(&per_node(SUCCESSES, "n1")),
        a.val(MISSING)
    );
    std::thread::sleep(2 * SEC);
    w.one_stop_one_start(I1)?;
    ensure!(
        w.actions(crate::world::I2).is_empty(),
        "the healthy instance was touched"
    );
    let got = a.val(&per_node(ATTEMPTS, "n1"));
    ensure!(
        got == attempts,
        "attempts for n1: {got}, expected {attempts}"
    );
    ensure!(
        w.oci.instance_state(I1) == Some(LifecycleState::Running),
        "instance not RUNNING at the end: {:?}",
        w.oci.instance_state(I1)
    );
    ensure!(
        w.oci.requests().iter().all(|r| r.signature_ok),
        "a request was not signed correctly"
    );
    w.finish(&mut [a])
}

fn statuses(w: &World, method: &str, action: Option<&str>) -> Vec<u16> {
    w.oci
        .requests()
        .into_iter()
        .filter(|r| r.method == method && r.action.as_deref() == action)
        .map(|r| r.status)
        .collect()
}

/// 401 on the first call: that cycle fails (not permanently), the next one
/// after another timeout succeeds.
pub fn unauthorized(env: &Env) -> Outcome {
    let (mut w, mut a) = setup(env, WorldOpts::default(), AgentCfg::default())?;
    w.oci.fail_next(1, Fault::Unauthorized);
    w.outage_until_started("n1", I1, 40 * SEC)?;
    ensure!(
        a.val(&per_node(FAILURES, "n1")) == 1.0,
        "the 401 cycle was not counted as a failure ({})",
        a.val(&per_node(FAILURES, "n1"))
    );
    ensure!(statuses(&w, "GET", None).contains(&401), "no 401 seen");
    recovered_once(&mut w, &mut a, 2.0)
}

/// The instance does not exist (404): a permanent failure, no STOP/START,
/// no further attempts; the node coming back clears it.
pub fn not_found(env: &Env) -> Outcome {
    const GONE: &str = "ocid1.instance.oc1.iad.chaosgone";
    let cfg = AgentCfg {
        nodes: vec![("n1", I1), ("n2", crate::world::I2), ("n3", GONE)],
        ..AgentCfg::default()
    };
    let mut w = World::new(&env.bin, &env.book, WorldOpts::default())?;
    for n in ["n1", "n2", "n3"] {
        w.start_monitor(n)?;
    }
    let mut a = w.leading_agent(&w.agent_config(&cfg)?)?;
    w.wait_probe()?;
    w.kill_monitor("n3")?;
    ensure!(
        wait_until(30 * SEC, || a.metric(&per_node(FAILURES, "n3"))
            == Some(1.0)),
        "404 not counted as a failed restart of n3 ({})",
        a.val(&per_node(FAILURES, "n3"))
    );
    std::thread::sleep(8 * SEC); // four timeouts
    let attempts = a.val(&per_node(ATTEMPTS, "n3"));
    ensure!(
        attempts == 1.0,
        "retried a missing instance: {attempts} attempts"
    );
    w.no_posts()?;
    w.start_monitor("n3")?;
    ensure!(
        wait_until(15 * SEC, || a.metric(MISSING) == Some(0.0)),
        "n3 coming back not noticed"
    );
    w.no_posts()?;
    w.finish(&mut [&mut a])
}

/// Holds the agent's next cycle-phase write to Consul for a second and
/// waits until the write storing `phase` for `node` arrives: until that
/// write is answered the worker cannot make its next OCI call.
pub fn catch_phase_write(w: &World, node: &str, phase: &str) -> Outcome {
    let path = format!("/v1/kv/{}{node}", crate::world::RESTARTS);
    let needle = format!("\"phase\":\"{phase}\"");
    w.consul
        .set_fault(watchdog_standins::consul::Fault::Latency(
            Duration::from_millis(1500),
        ))
        .ctx("set latency")?;
    let seen = w.consul.wait_for_request(40 * SEC, |r| {
        r.method == "PUT" && r.path == path && String::from_utf8_lossy(&r.body).contains(&needle)
    });
    ensure!(
        seen.is_some(),
        "the agent never stored phase {phase} for {node}"
    );
    Ok(())
}

/// 409 IncorrectState on STOP: the cycle re-reads the instance and goes on
/// inside the same attempt.
pub fn conflict(env: &Env) -> Outcome {
    let (mut w, mut a) = setup(env, WorldOpts::default(), AgentCfg::default())?;
    w.kill_monitor("n1")?;
    catch_phase_write(&w, "n1", "stopping")?;
    w.oci.fail_next(1, Fault::Status409);
    w.consul.clear_faults().ctx("clear latency")?;
    ensure!(
        wait_until(30 * SEC, || w.actions(I1).iter().any(|x| x == "START")),
        "no START after the 409"
    );
    w.start_monitor("n1")?;
    ensure!(
        statuses(&w, "POST", Some("STOP")).contains(&409),
        "the 409 did not hit the STOP"
    );
    recovered_once(&mut w, &mut a, 1.0)
}

/// 429 with Retry-After on the first calls: waited out, same attempt.
pub fn throttled(env: &Env) -> Outcome {
    let (mut w, mut a) = setup(env, WorldOpts::default(), AgentCfg::default())?;
    w.oci.fail_next(
        2,
        Fault::Throttle {
            retry_after: Some(1),
        },
    );
    w.outage_until_started("n1", I1, 40 * SEC)?;
    let throttled = w.oci.requests().iter().filter(|r| r.status == 429).count();
    ensure!(throttled == 2, "expected two 429 answers, saw {throttled}");
    recovered_once(&mut w, &mut a, 1.0)
}

/// "Out of host capacity" on START: START is retried, STOP never repeated.
pub fn out_of_capacity(env: &Env) -> Outcome {
    let (mut w, mut a) = setup(env, WorldOpts::default(), AgentCfg::default())?;
    w.oci.fail_next(1, Fault::OutOfCapacityOnStart);
    w.outage_until_started("n1", I1, 60 * SEC)?;
    let starts = statuses(&w, "POST", Some("START"));
    ensure!(
        starts.len() >= 2 && starts.contains(&500) && starts.last() == Some(&200),
        "START answers {starts:?}: expected a 500 then a 200"
    );
    let stops = statuses(&w, "POST", Some("STOP"));
    ensure!(stops.len() == 1, "STOP sent {} times", stops.len());
    recovered_once(&mut w, &mut a, 1.0)
}

/// The first OCI call never gets an answer: the client times out and
/// retries, the agent stays responsive, and the cycle goes on.
pub fn hanging(env: &Env) -> Outcome {
    let cfg = AgentCfg {
        phase_timeout: "90s",
        ..AgentCfg::default()
    };
    let (mut w, mut a) = setup(env, WorldOpts::default(), cfg)?;
    w.oci.fail_next(1, Fault::Hang);
    w.kill_monitor("n1")?;
    ensure!(
        wait_until(30 * SEC, || w.oci.requests().iter().any(|r| r.status == 0)),
        "the hung request never arrived"
    );
    std::thread::sleep(2 * SEC);
    ensure!(
        a.metric(MISSING) == Some(1.0),
        "agent metrics unresponsive or wrong while OCI hangs"
    );
    ensure!(
        wait_until(60 * SEC, || w.actions(I1).iter().any(|x| x == "START")),
        "the cycle did not go on after the hung call"
    );
    ensure!(a.logged("timed out"), "the timed-out call is not logged");
    ensure!(
        wait_until(10 * SEC, || a.metric(OCI_UP) == Some(1.0)),
        "oci_connected not back to 1 after recovery ({})",
        a.val(OCI_UP)
    );
    w.start_monitor("n1")?;
    recovered_once(&mut w, &mut a, 1.0)
}

/// The instance sticks in STOPPING past the phase timeout: counted as a
/// failure, retried after the timeout, and once it reaches STOPPED the
/// retry starts it (it is never left STOPPED).
pub fn stuck_stopping(env: &Env) -> Outcome {
    let cfg = AgentCfg {
        phase_timeout: "5s",
        ..AgentCfg::default()
    };
    let (mut w, mut a) = setup(env, WorldOpts::default(), cfg)?;
    // Stuck STOPPING = a transition far longer than any timeout. (The
    // stand-in's stick_in_stopping cannot be undone, and once set it also
    // blocks the later START, so it cannot show the recovery.)
    w.oci.set_transition_time(Duration::from_secs(600));
    w.kill_monitor("n1")?;
    ensure!(
        wait_until(40 * SEC, || a.metric(&per_node(FAILURES, "n1"))
            == Some(1.0)),
        "stuck STOPPING not counted as a failure ({})",
        a.val(&per_node(FAILURES, "n1"))
    );
    ensure!(
        wait_until(15 * SEC, || a.val(&per_node(ATTEMPTS, "n1")) >= 2.0),
        "no second attempt after the timeout"
    );
    // The hypervisor finally lets go.
    w.oci.set_transition_time(Duration::from_millis(300));
    w.oci.add_instance(I1, LifecycleState::Stopped);
    ensure!(
        wait_until(30 * SEC, || w.actions(I1).iter().any(|x| x == "START")),
        "STOPPED instance not started by the retry"
    );
    w.start_monitor("n1")?;
    ensure!(
        wait_until(20 * SEC, || a.metric(&per_node(SUCCESSES, "n1"))
            == Some(1.0)),
        "no success recorded"
    );
    w.one_stop_one_start(I1)?;
    ensure!(
        w.oci.instance_state(I1) == Some(LifecycleState::Running),
        "instance left {:?}",
        w.oci.instance_state(I1)
    );
    w.finish(&mut [&mut a])
}

/// TERMINATED: permanent, no STOP/START, no further attempts.
pub fn terminated(env: &Env) -> Outcome {
    let (mut w, mut a) = setup(env, WorldOpts::default(), AgentCfg::default())?;
    w.oci.add_instance(I1, LifecycleState::Terminated);
    w.kill_monitor("n1")?;
    ensure!(
        wait_until(30 * SEC, || a.metric(&per_node(FAILURES, "n1"))
            == Some(1.0)),
        "TERMINATED not counted as a failed restart"
    );
    std::thread::sleep(8 * SEC);
    let attempts = a.val(&per_node(ATTEMPTS, "n1"));
    ensure!(
        attempts == 1.0,
        "kept trying a TERMINATED instance: {attempts} attempts"
    );
    let gets = w.oci.requests().len();
    std::thread::sleep(3 * SEC);
    ensure!(
        w.oci.requests().len() == gets,
        "still polling a TERMINATED instance"
    );
    w.no_posts()?;
    // A replacement instance comes up under the same node name.
    w.oci.add_instance(I1, LifecycleState::Running);
    w.start_monitor("n1")?;
    ensure!(
        wait_until(15 * SEC, || a.metric(MISSING) == Some(0.0)),
        "node coming back not noticed"
    );
    w.no_posts()?;
    w.finish(&mut [&mut a])
}
