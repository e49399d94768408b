//! Figures: idle RSS and CPU of a monitor and of an agent watching 10 nodes.

use std::time::{Duration, Instant};

use watchdog_standins::consul::ConsulStandin;

use crate::report::{Figure, Verdict, against, fmt_num, mib};
use crate::sys::{self, ProcSample};
use crate::world::{self, Daemon, OciSide, Paths};

/// What one daemon did during the idle window.
struct Idle {
    first: ProcSample,
    last: ProcSample,
    max_rss_kib: u64,
    min_rss_kib: u64,
    elapsed: Duration,
}

/// Runs a monitor and a 10-node agent side by side for `secs` and reports both.
pub fn idle(paths: &Paths, secs: u64, clk_tck: u64) -> Vec<Figure> {
    match measure(paths, secs) {
        Ok((mon, agent, requests)) => figures(&mon, &agent, &requests, secs, clk_tck),
        Err(e) => vec![Figure::failed(
            "Idle monitor and agent",
            "see below",
            "4 MiB / 0.1% / 6 MiB",
            e,
        )],
    }
}

fn measure(paths: &Paths, secs: u64) -> Result<(Idle, Idle, String), String> {
    let consul = ConsulStandin::start().map_err(|e| format!("Consul stand-in: {e}"))?;
    let oci = OciSide::start(paths, Duration::from_millis(200))?;
    let addr = consul.http_addr();
    let mon_cfg = world::monitor_config(paths)?;
    let mon_cfg = mon_cfg.to_string_lossy();
    let monitor = Daemon::spawn(
        paths,
        &[
            "-mode",
            "monitor",
            "-node",
            "bench-idle",
            "-config",
            &mon_cfg,
        ],
        &[("CONSUL_HTTP_ADDR", addr.as_str())],
        "idle-monitor.log",
    )
    .map_err(|e| format!("spawn monitor: {e}"))?;
    let key = format!("{}bench-idle", world::NODES_PREFIX);
    if !consul.wait_for_kv(&key, Duration::from_secs(10), |kv| {
        kv.is_some_and(|k| k.session.is_some())
    }) {
        return Err("the monitor did not take its heartbeat key within 10 s".into());
    }
    let nodes = world::names("idle", 10);
    world::hold_heartbeats(&consul, &nodes)?;
    let cfg = world::agent_config(
        paths,
        "idle-agent.yaml",
        &consul,
        &oci,
        "30s",
        &nodes,
        "",
        false,
    )?;
    let cfg = cfg.to_string_lossy();
    let agent = Daemon::spawn(
        paths,
        &["-mode", "agent", "-config", &cfg],
        &[],
        "idle-agent.log",
    )
    .map_err(|e| format!("spawn agent: {e}"))?;
    let ready = world::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        agent.metric("oracle_watchdog_agent_nodes_monitored") == Some(10.0)
            && agent.metric("oracle_watchdog_agent_nodes_missing") == Some(0.0)
    });
    if !ready {
        return Err("the agent did not report 10 monitored, 0 missing within 20 s".into());
    }
    // Let start-up work (leader election, first reads) settle.
    std::thread::sleep(Duration::from_secs(3));
    consul.clear_requests();
    let started = Instant::now();
    let mut runs = [(&monitor, None::<Idle>), (&agent, None)];
    for (d, slot) in runs.iter_mut() {
        let s = sys::sample(d.pid()).map_err(|e| e.to_string())?;
        *slot = Some(Idle {
            first: s,
            last: s,
            max_rss_kib: s.rss_kib,
            min_rss_kib: s.rss_kib,
            elapsed: Duration::ZERO,
        });
    }
    for tick in 1..=secs {
        let next = started + Duration::from_secs(tick);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        for (d, slot) in runs.iter_mut() {
            let s = sys::sample(d.pid())
                .map_err(|e| format!("the daemon exited during the idle window: {e}"))?;
            if let Some(idle) = slot.as_mut() {
                idle.last = s;
                idle.max_rss_kib = idle.max_rss_kib.max(s.rss_kib);
                idle.min_rss_kib = idle.min_rss_kib.min(s.rss_kib);
                idle.elapsed = started.elapsed();
            }
        }
    }
    let requests = consul.requests();
    // Requests by kind, e.g. `GET /v1/kv/oracle-watchdog/agent/leader`.
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for r in &requests {
        let path = if r.path.starts_with("/v1/session/") {
            r.path
                .rsplit_once('/')
                .map_or(r.path.as_str(), |(p, _)| p)
                .to_string()
                + "/ID"
        } else {
            r.path.clone()
        };
        let query: Vec<&str> = r.query.iter().map(|(k, _)| k.as_str()).collect();
        let kind = if query.is_empty() {
            format!("{} {path}", r.method)
        } else {
            format!("{} {path}?{}", r.method, query.join("&"))
        };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    kinds.sort();
    let summary = format!(
        "Consul requests during the window (monitor and agent together): {}.",
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds
                .iter()
                .map(|(k, n)| format!("{n} x `{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let [(_, mon), (_, agent)] = runs;
    match (mon, agent) {
        (Some(m), Some(a)) => Ok((m, a, summary)),
        _ => Err("no samples".into()),
    }
}

fn cpu_percent(i: &Idle, clk_tck: u64) -> f64 {
    let ticks = i.last.cpu_ticks.saturating_sub(i.first.cpu_ticks) as f64;
    100.0 * ticks / clk_tck as f64 / i.elapsed.as_secs_f64().max(1e-9)
}

fn figures(mon: &Idle, agent: &Idle, requests: &str, secs: u64, clk_tck: u64) -> Vec<Figure> {
    let how = |who: &str| {
        format!(
            "{who} Both run at once from the dist/ x86_64 musl binary against a local Consul stand-in \
             (sessions expire at 2 x TTL like Consul). After the heartbeat is up / the agent reports \
             all nodes present, 3 s settle, then a {secs} s window: VmRSS sampled once a second \
             (max and min reported) and VmHWM at the end; CPU = (utime+stime) difference over the \
             window / window length. One window per run."
        )
    };
    let rss_result = |i: &Idle| {
        format!(
            "VmRSS max {} (min {}) over {} samples; VmHWM (peak since start) {}.",
            mib(i.max_rss_kib),
            mib(i.min_rss_kib),
            secs + 1,
            mib(i.last.hwm_kib)
        )
    };
    let cpu_result = |i: &Idle| {
        let ticks = i.last.cpu_ticks.saturating_sub(i.first.cpu_ticks);
        let ns = i.last.cpu_ns.saturating_sub(i.first.cpu_ns);
        let secs = i.elapsed.as_secs_f64().max(1e-9);
        format!(
            "{} ticks ({} ms) of CPU in {:.1} s = **{}% of one core**{}. Cross-check with \
             nanosecond resolution (sum of `/proc/PID/task/*/schedstat`): {} ms = {}% of one core. \
             {requests}",
            ticks,
            ticks * 1000 / clk_tck.max(1),
            secs,
            fmt_num(cpu_percent(i, clk_tck)),
            if ticks == 0 {
                format!(" (less than one {} ms tick)", 1000 / clk_tck.max(1))
            } else {
                String::new()
            },
            fmt_num(ns as f64 / 1e6),
            fmt_num(100.0 * ns as f64 / 1e9 / secs),
        )
    };
    let mon_how = how(
        "Monitor: `oracle-watchdog -mode monitor -node bench-idle -config monitor.yaml` \
         (session_ttl 30s, renew_interval 10s: the defaults).",
    );
    let agent_how = how(
        "Agent: `oracle-watchdog -mode agent -config agent.yaml` with 10 nodes whose heartbeat \
         keys one bench session holds (check_interval 30s, timeout 5m, other settings default; \
         blocking queries on).",
    );
    vec![
        Figure {
            title: "Idle RSS: monitor".into(),
            how: mon_how.clone(),
            budget: "4 MiB".into(),
            result: rss_result(mon),
            verdict: against(mon.max_rss_kib as f64 / 1024.0, 4.0, "MiB", ""),
        },
        Figure {
            title: "Idle CPU: monitor".into(),
            how: mon_how,
            budget: "under 0.1% of one core".into(),
            result: cpu_result(mon),
            verdict: against(cpu_percent(mon, clk_tck), 0.1, "% of a core", ""),
        },
        Figure {
            title: "Idle RSS: agent, 10 nodes".into(),
            how: agent_how.clone(),
            budget: "6 MiB".into(),
            result: rss_result(agent),
            verdict: against(agent.max_rss_kib as f64 / 1024.0, 6.0, "MiB", ""),
        },
        Figure {
            title: "Idle CPU: agent, 10 nodes".into(),
            how: agent_how,
            budget: "none stated for the agent (the monitor's 0.1% of a core shown for comparison)"
                .into(),
            result: cpu_result(agent),
            verdict: match against(cpu_percent(agent, clk_tck), 0.1, "% of a core", "") {
                Verdict::Met(s) => Verdict::Met(format!("{s} (monitor's bar)")),
                _ => Verdict::Info,
            },
        },
    ]
}
