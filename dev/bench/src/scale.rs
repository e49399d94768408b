//! Figures: the agent with 1,000 and 10,000 nodes: RSS, CPU per check pass, Consul requests per pass.

use std::time::{Duration, Instant};

use watchdog_standins::consul::ConsulStandin;

use crate::report::{Figure, Verdict, against, fmt_num, mib};
use crate::sys;
use crate::world::{self, Daemon, OciSide, Paths};

/// An unrelated key the bench rewrites to wake the agent's blocking query.
const TOUCH_KEY: &str = "oracle-watchdog/bench/touch";

/// Runs an agent with `n` nodes and forces one check pass a second for `secs`.
pub fn scale(paths: &Paths, oci: &OciSide, n: usize, secs: u64, clk_tck: u64) -> Figure {
    let title = format!("Scale: agent with {n} nodes");
    let budget = if n == 1000 {
        "one Consul request per check pass; 20 MiB RSS at 1,000 nodes"
    } else {
        "one Consul request per check pass (no memory budget stated at this size)"
    };
    let how = format!(
        "A fresh Consul stand-in; one bench session acquires `oracle-watchdog/nodes/s-0..s-{}` \
         through the HTTP API (`PUT /v1/kv/...?acquire=`); the agent (dist/ x86_64 musl binary) gets \
         a generated config with those {n} nodes (one flow-style YAML line per node with short \
         OCIDs, because the daemon refuses config files over 1 MiB, see the result; check_interval 30s, timeout 5m; the OCI side is \
         only the profile and a stand-in nobody calls). Once it reports {n} monitored and 0 missing \
         and 3 s have passed, the stand-in's request log is cleared and for {secs} s the bench \
         rewrites the unrelated key `{TOUCH_KEY}` once a second, which wakes the agent's blocking \
         query: each wake-up is one check pass. Passes = recursive reads of `oracle-watchdog/` in \
         the stand-in's request log; requests per pass = every request in the log except the leader lock's upkeep \
         (session renewal and leader-key read, on their own leader_ttl timer; listed) / passes; CPU per pass = (utime+stime) difference over the window / passes; \
         VmRSS sampled once a second.",
        n - 1
    );
    match measure(paths, oci, n, secs) {
        Ok(m) => {
            let cpu_ms = m.cpu_ticks as f64 * 1000.0 / clk_tck as f64;
            let per_pass = m.pass_requests as f64 / m.passes.max(1) as f64;
            let result = format!(
                "- setup: acquiring {n} keys over HTTP took {:.1} s; the agent reported all {n} present {:.1} s after start\n\
                 - check passes in {secs} s: **{}**; Consul requests in the window: {} ({} not leader-lock upkeep; besides the watch reads: {})\n\
                 - **Consul requests per pass: {}** (every request except the leader lock's upkeep, which runs on its own timer)\n\
                 - CPU: {} ticks = {} ms in the window = **{} ms per pass** (tick resolution {} ms, so ±{} ms per pass; nanosecond cross-check from `/proc/PID/task/*/schedstat`: {} ms per pass)\n\
                 - VmRSS: max **{}**, at the end {}; VmHWM (peak since start, includes config load and first read) {}\n\
                 - size of one `oracle-watchdog/?recurse` answer: {} bytes\n\
                 - config file: the compact one is {} bytes; written the way users write it (block style, 83-character OCIDs) the `nodes:` list alone would be {} bytes{}",
                m.setup.as_secs_f64(),
                m.ready.as_secs_f64(),
                m.passes,
                m.requests,
                m.pass_requests,
                m.other_kinds,
                fmt_num(per_pass),
                m.cpu_ticks,
                fmt_num(cpu_ms),
                fmt_num(cpu_ms / m.passes.max(1) as f64),
                1000 / clk_tck.max(1),
                fmt_num(1000.0 / clk_tck as f64 / m.passes.max(1) as f64),
                fmt_num(m.cpu_ns as f64 / 1e6 / m.passes.max(1) as f64),
                mib(m.max_rss_kib),
                mib(m.end_rss_kib),
                mib(m.hwm_kib),
                m.answer_bytes,
                m.config_bytes,
                world::realistic_nodes_bytes(n),
                if world::realistic_nodes_bytes(n) > 1024 * 1024 {
                    format!(
                        ", over the daemon's 1 MiB config-file limit (`MAX_FILE_BYTES` in src/config/mod.rs): \
                         with real OCIDs one config holds at most about {} nodes",
                        1024 * 1024 * n / world::realistic_nodes_bytes(n)
                    )
                } else {
                    String::new()
                }
            );
            let mut verdicts = Vec::new();
            let mut missed = false;
            // Every request counts except the leader lock's upkeep (a per-node
            // GET or a KV write per pass would show up here).
            match against(per_pass, 1.0, "requests per pass", "") {
                Verdict::Met(s) => verdicts.push(format!("requests {s}")),
                Verdict::Missed(s) => {
                    missed = true;
                    verdicts.push(format!("requests {s}"));
                }
                _ => {}
            }
            if n == 1000 {
                match against(m.max_rss_kib as f64 / 1024.0, 20.0, "MiB", "") {
                    Verdict::Met(s) => verdicts.push(format!("RSS {s}")),
                    Verdict::Missed(s) => {
                        missed = true;
                        verdicts.push(format!("RSS {s}"));
                    }
                    _ => {}
                }
            }
            let text = verdicts.join("; ");
            Figure {
                title,
                how,
                budget: budget.into(),
                result,
                verdict: if missed {
                    Verdict::Missed(text)
                } else {
                    Verdict::Met(text)
                },
            }
        }
        Err(e) => Figure::failed(&title, &how, budget, e),
    }
}

struct Measured {
    setup: Duration,
    ready: Duration,
    passes: usize,
    pass_requests: usize,
    requests: usize,
    other_kinds: String,
    cpu_ticks: u64,
    cpu_ns: u64,
    max_rss_kib: u64,
    end_rss_kib: u64,
    hwm_kib: u64,
    answer_bytes: usize,
    config_bytes: u64,
}

fn measure(paths: &Paths, oci: &OciSide, n: usize, secs: u64) -> Result<Measured, String> {
    let consul = ConsulStandin::start().map_err(|e| format!("Consul stand-in: {e}"))?;
    let nodes = world::names("s", n);
    let t = Instant::now();
    world::hold_heartbeats(&consul, &nodes)?;
    let setup = t.elapsed();
    let cfg = world::agent_config(
        paths,
        &format!("scale-{n}.yaml"),
        &consul,
        oci,
        "30s",
        &nodes,
        "",
        true,
    )?;
    let config_bytes = std::fs::metadata(&cfg).map(|m| m.len()).unwrap_or(0);
    let cfg = cfg.to_string_lossy();
    let t = Instant::now();
    let agent = Daemon::spawn(
        paths,
        &["-mode", "agent", "-config", &cfg],
        &[],
        &format!("scale-{n}.log"),
    )
    .map_err(|e| format!("spawn agent: {e}"))?;
    let want = n as f64;
    let ready = world::wait_until(Duration::from_secs(120), Duration::from_millis(100), || {
        agent.metric("oracle_watchdog_agent_nodes_monitored") == Some(want)
            && agent.metric("oracle_watchdog_agent_nodes_missing") == Some(0.0)
    });
    if !ready {
        return Err(format!(
            "the agent did not report {n} monitored and 0 missing within 120 s"
        ));
    }
    let ready = t.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let answer_bytes =
        crate::net::call(consul.addr(), "GET", "/v1/kv/oracle-watchdog/?recurse", b"")
            .map(|r| r.body.len())
            .unwrap_or(0);
    consul.clear_requests();
    let first = sys::sample(agent.pid()).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut max_rss_kib = first.rss_kib;
    for tick in 0..secs {
        let at = started + Duration::from_secs(tick);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        consul.kv_put(TOUCH_KEY, tick.to_string());
        if let Ok(s) = sys::sample(agent.pid()) {
            max_rss_kib = max_rss_kib.max(s.rss_kib);
        }
    }
    // The last touch's pass finishes well within a second.
    std::thread::sleep(Duration::from_secs(1));
    let last = sys::sample(agent.pid()).map_err(|e| format!("the agent exited: {e}"))?;
    max_rss_kib = max_rss_kib.max(last.rss_kib);
    let requests = consul.requests();
    let is_watch = |r: &watchdog_standins::consul::RecordedRequest| {
        r.method == "GET"
            && r.path.starts_with("/v1/kv/oracle-watchdog")
            && r.query.iter().any(|(k, _)| k == "recurse")
    };
    let passes = requests.iter().filter(|r| is_watch(r)).count();
    // The leader lock is kept up on its own timer (leader_ttl), not per pass:
    // session renewals and reads/writes of the leader key.
    let is_upkeep = |r: &watchdog_standins::consul::RecordedRequest| {
        r.path.starts_with("/v1/session/") || r.path == "/v1/kv/oracle-watchdog/agent/leader"
    };
    let pass_requests = requests.iter().filter(|r| !is_upkeep(r)).count();
    let mut kinds: Vec<String> = requests
        .iter()
        .filter(|r| !is_watch(r))
        .map(|r| {
            let path = r.path.split('/').take(6).collect::<Vec<_>>().join("/");
            let blocking = if r.param("index").is_some() {
                " (blocking)"
            } else {
                ""
            };
            format!("{} {path}{blocking}", r.method)
        })
        .collect();
    kinds.sort();
    let mut other_kinds = Vec::new();
    for k in &kinds {
        if !other_kinds.iter().any(|(kk, _): &(String, usize)| kk == k) {
            other_kinds.push((k.clone(), kinds.iter().filter(|x| *x == k).count()));
        }
    }
    let other_kinds = if other_kinds.is_empty() {
        "none".to_string()
    } else {
        other_kinds
            .iter()
            .map(|(k, c)| format!("{c} x `{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(Measured {
        setup,
        ready,
        passes,
        pass_requests,
        requests: requests.len(),
        other_kinds,
        cpu_ticks: last.cpu_ticks.saturating_sub(first.cpu_ticks),
        cpu_ns: last.cpu_ns.saturating_sub(first.cpu_ns),
        max_rss_kib,
        end_rss_kib: last.rss_kib,
        hwm_kib: last.hwm_kib,
        answer_bytes,
        config_bytes,
    })
}
