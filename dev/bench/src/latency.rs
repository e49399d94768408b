//! Figures: start to first heartbeat, and heartbeat deleted -> agent counts the node missing.

use std::time::{Duration, Instant};

use watchdog_standins::consul::{ConsulOptions, ConsulStandin};

use crate::report::{Figure, Verdict, against, fmt_num, percentile};
use crate::world::{self, Daemon, OciSide, Paths};

/// Milliseconds of a duration.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `median, p90, min, max` line of a sample in ms.
fn spread(v: &[f64]) -> String {
    format!(
        "median **{} ms**, p90 **{} ms**, min {} ms, max {} ms (n = {})",
        fmt_num(percentile(v, 50.0)),
        fmt_num(percentile(v, 90.0)),
        fmt_num(percentile(v, 0.0)),
        fmt_num(percentile(v, 100.0)),
        v.len()
    )
}

/// Spawns `runs` monitors one after the other and times spawn -> heartbeat key held.
pub fn start_to_heartbeat(paths: &Paths, runs: usize) -> Figure {
    let how = format!(
        "{runs} runs, one after the other: `oracle-watchdog -mode monitor -node bench-start-N -config \
         monitor.yaml` (dist/ x86_64 musl binary) against a local Consul stand-in; the clock starts \
         just before `fork/exec` and stops when the stand-in holds `oracle-watchdog/nodes/bench-start-N` \
         locked by a session (the bench waits on the stand-in's state, no polling interval). Each \
         monitor is then stopped with SIGTERM. Includes process start, config load, `status/leader`, \
         session create and KV acquire."
    );
    let budget = "100 ms";
    let consul = match ConsulStandin::start() {
        Ok(c) => c,
        Err(e) => return Figure::failed("Start to first heartbeat", &how, budget, e.to_string()),
    };
    let addr = consul.http_addr();
    let cfg = match world::monitor_config(paths) {
        Ok(c) => c,
        Err(e) => return Figure::failed("Start to first heartbeat", &how, budget, e),
    };
    let cfg = cfg.to_string_lossy();
    let mut times = Vec::new();
    for i in 0..runs {
        let node = format!("bench-start-{i}");
        let key = format!("{}{node}", world::NODES_PREFIX);
        let t0 = Instant::now();
        let d = match Daemon::spawn(
            paths,
            &["-mode", "monitor", "-node", &node, "-config", &cfg],
            &[("CONSUL_HTTP_ADDR", addr.as_str())],
            "start-monitor.log",
        ) {
            Ok(d) => d,
            Err(e) => {
                return Figure::failed("Start to first heartbeat", &how, budget, e.to_string());
            }
        };
        let ok = consul.wait_for_kv(&key, Duration::from_secs(10), |kv| {
            kv.is_some_and(|k| k.session.is_some())
        });
        let t = t0.elapsed();
        d.terminate();
        if !ok {
            return Figure::failed(
                "Start to first heartbeat",
                &how,
                budget,
                format!("run {i}: no heartbeat within 10 s"),
            );
        }
        times.push(ms(t));
    }
    let p90 = percentile(&times, 90.0);
    Figure {
        title: "Start to first heartbeat".into(),
        how,
        budget: budget.into(),
        result: spread(&times),
        verdict: match against(p90, 100.0, "ms", "") {
            Verdict::Met(s) => Verdict::Met(format!("p90 {s}")),
            Verdict::Missed(s) => Verdict::Missed(format!("p90 {s}")),
            other => other,
        },
    }
}

/// Detection latency: the bench deletes a held heartbeat key and polls the
/// agent's `oracle_watchdog_agent_nodes_missing` every 5 ms.
pub fn detection(paths: &Paths, blocking: bool, runs: usize, check_interval_s: u64) -> Figure {
    let (title, budget) = if blocking {
        ("Detection latency: blocking queries", "1 s")
    } else {
        (
            "Detection latency: plain polling",
            "none (bounded by check_interval)",
        )
    };
    let how = format!(
        "Agent (dist/ x86_64 musl binary) watching 3 nodes whose keys one bench session holds, \
         check_interval {check_interval_s}s, against a Consul stand-in {}. {runs} runs: the key is \
         (re)acquired, the bench waits until the agent reports 0 missing{}, then deletes the key \
         through the stand-in (as session expiry does) and polls \
         `oracle_watchdog_agent_nodes_missing` on the agent's /metrics every 5 ms until it is 1; \
         the time from the delete to that scrape is one sample (resolution ~5 ms plus one scrape).",
        if blocking {
            "with blocking queries (Consul's behaviour)"
        } else {
            "started with `no_blocking` (`watchdog-standins consul --no-blocking`): it ignores \
             `index`/`wait` and sends no `X-Consul-Index`, so the agent falls back to reading every \
             check_interval"
        },
        if blocking {
            " and its watch request is parked in the stand-in"
        } else {
            " and then a further 0..check_interval (spread evenly over the runs) so deletes land at \
             different points of the poll period"
        }
    );
    match measure_detection(paths, blocking, runs, check_interval_s) {
        Ok(times) => {
            let verdict = if blocking {
                match against(percentile(&times, 100.0), 1000.0, "ms", "") {
                    Verdict::Met(s) => Verdict::Met(format!("worst case (max) {s}")),
                    Verdict::Missed(s) => Verdict::Missed(format!("worst case (max) {s}")),
                    other => other,
                }
            } else {
                Verdict::Info
            };
            let mut result = spread(&times);
            if !blocking {
                result.push_str(&format!(
                    "\n\nWith polling the latency is the time to the next read: uniform between 0 and \
                     check_interval ({check_interval_s} s here; 30 s by default, so up to 30 s and \
                     about 15 s on average in production without blocking queries)."
                ));
            }
            Figure {
                title: title.into(),
                how,
                budget: budget.into(),
                result,
                verdict,
            }
        }
        Err(e) => Figure::failed(title, &how, budget, e),
    }
}

fn measure_detection(
    paths: &Paths,
    blocking: bool,
    runs: usize,
    check_interval_s: u64,
) -> Result<Vec<f64>, String> {
    let consul = ConsulStandin::start_with(ConsulOptions {
        no_blocking: !blocking,
        ..ConsulOptions::default()
    })
    .map_err(|e| format!("Consul stand-in: {e}"))?;
    let oci = OciSide::start(paths, Duration::from_millis(200))?;
    let nodes = world::names("det", 3);
    let session = world::hold_heartbeats(&consul, &nodes)?;
    let file = if blocking {
        "det-blocking.yaml"
    } else {
        "det-polling.yaml"
    };
    let cfg = world::agent_config(
        paths,
        file,
        &consul,
        &oci,
        &format!("{check_interval_s}s"),
        &nodes,
        "",
        false,
    )?;
    let cfg = cfg.to_string_lossy();
    let agent = Daemon::spawn(
        paths,
        &["-mode", "agent", "-config", &cfg],
        &[],
        &format!("{file}.log"),
    )
    .map_err(|e| format!("spawn agent: {e}"))?;
    let settle = Duration::from_secs(check_interval_s * 2 + 10);
    let missing = || agent.metric("oracle_watchdog_agent_nodes_missing");
    let victim = &nodes[0];
    let key = format!("{}{victim}", world::NODES_PREFIX);
    let mut times = Vec::new();
    for i in 0..runs {
        if consul.kv_get(&key).is_none() {
            world::acquire(&consul, &session, victim)?;
        }
        if !world::wait_until(settle, Duration::from_millis(5), || missing() == Some(0.0)) {
            return Err(format!(
                "run {i}: the agent did not report 0 missing within {settle:?}"
            ));
        }
        if blocking {
            // Let the pass triggered by the re-acquire (and any KV writes of
            // the agent) finish, then make sure the watch is parked.
            std::thread::sleep(Duration::from_millis(300));
            if !consul.wait_for_parked_queries(1, Duration::from_secs(5)) {
                return Err(format!("run {i}: no blocking query parked in the stand-in"));
            }
        } else {
            let frac = (i as f64 * 0.618_034).fract();
            std::thread::sleep(Duration::from_secs_f64(frac * check_interval_s as f64));
        }
        let t0 = Instant::now();
        consul.kv_delete(&key);
        if !world::wait_until(settle, Duration::from_millis(5), || {
            missing().is_some_and(|m| m >= 1.0)
        }) {
            return Err(format!(
                "run {i}: the agent did not count the node missing within {settle:?}"
            ));
        }
        times.push(ms(t0.elapsed()));
    }
    Ok(times)
}
