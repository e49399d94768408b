//! Operator commands: `status`, `restart NODE`, `maintenance on|off NODE`.
//!
//! They talk to Consul (and OCI for `restart`) directly, so they work
//! whether or not an agent is running, and reuse the agent's own records and
//! restart worker so what they show and do is what the agent sees and does.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::bounded;

use crate::agent::cycle::CycleSettings;
use crate::agent::records::{
    KvView, MaintenanceRecord, WATCH_PREFIX, agent_identity, maintenance_key, restart_key,
};
use crate::agent::tracker::CycleOutcome;
use crate::agent::worker::{self, CycleJob, WorkerContext};
use crate::cli::fail;
use crate::config::{Config, Mode};
use crate::consul::{ConsulClient, ConsulSettings};

/// Loads the config (`required`: agent commands) and a Consul client.
fn setup(
    config: &Path,
    required: bool,
    mode: Option<Mode>,
) -> Result<(Config, ConsulClient), ExitCode> {
    let cfg = Config::load(config, required).map_err(|e| fail(2, e))?;
    if let Some(m) = mode {
        cfg.validate(m).map_err(|e| fail(2, e))?;
    }
    let settings = ConsulSettings::from_env(cfg.consul_address.as_deref())
        .map_err(|e| fail(2, format!("config error: {e}")))?;
    Ok((cfg, ConsulClient::new(&settings)))
}

/// `maintenance on|off NODE [-reason TEXT]`.
pub fn maintenance(
    on: bool,
    node: &str,
    reason: Option<&str>,
    config: &Path,
    config_given: bool,
) -> ExitCode {
    let (cfg, consul) = match setup(config, config_given, None) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if !cfg.nodes.is_empty() && !cfg.nodes.iter().any(|n| n.name == node) {
        eprintln!(
            "warning: {node} is not among the nodes in {}",
            config.display()
        );
    }
    let key = maintenance_key(node);
    let result = if on {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        let host = crate::cli::hostname().unwrap_or_else(|_| "unknown".into());
        let record = MaintenanceRecord {
            reason: reason.unwrap_or("").to_string(),
            by: format!("{user}@{host}"),
            since: crate::wallclock::rfc3339(SystemTime::now()),
        };
        consul.put(&key, &serde_json::to_vec(&record).unwrap_or_default())
    } else {
        consul.delete(&key)
    };
    match result {
        Ok(()) if on => {
            println!(
                "{node}: maintenance on; agents will not restart it until `maintenance off {node}`"
            );
            ExitCode::SUCCESS
        }
        Ok(()) => {
            println!("{node}: maintenance off; agents watch it again");
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, format!("maintenance {node}: {e}")),
    }
}

/// `status`: one row per configured node (plus unknown nodes with keys).
pub fn status(config: &Path) -> ExitCode {
    let (cfg, consul) = match setup(config, true, Some(Mode::Agent)) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let view = match consul.list(WATCH_PREFIX, None) {
        Ok((pairs, _)) => KvView::from_pairs(&pairs),
        Err(e) => return fail(1, format!("status: {e}")),
    };
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match &view.leader {
        Some(l) => println!("leader: {} (since {})", l.agent, l.since),
        None => println!("leader: none (no agent is acting)"),
    }
    let mut names: Vec<String> = cfg.nodes.iter().map(|n| n.name.clone()).collect();
    for extra in &view.present {
        if !names.contains(extra) {
            names.push(extra.clone());
        }
    }
    let mut rows = vec![[
        "NODE".to_string(),
        "HEARTBEAT".into(),
        "RESTART".into(),
        "MAINTENANCE".into(),
    ]];
    for name in names {
        let heartbeat = if view.present.contains(&name) {
            if cfg.nodes.iter().any(|n| n.name == name) {
                "alive".to_string()
            } else {
                "alive (not in config)".to_string()
            }
        } else {
            match view.missing.get(&name) {
                Some(m) => format!(
                    "missing for {} (since {})",
                    human(now_unix.saturating_sub(m.since_unix)),
                    m.since
                ),
                None => "missing".to_string(),
            }
        };
        let restart = view
            .restarts
            .get(&name)
            .map(|r| format!("{} (attempt {}, by {})", r.phase, r.attempt, r.agent))
            .unwrap_or_else(|| "-".into());
        let maint = view
            .maintenance
            .get(&name)
            .map(|m| {
                let who = if m.by.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", m.by)
                };
                if m.reason.is_empty() {
                    format!("on{who}")
                } else {
                    format!("on: {}{who}", m.reason)
                }
            })
            .unwrap_or_else(|| "-".into());
        rows.push([name, heartbeat, restart, maint]);
    }
    let _ = crate::table::write(&mut std::io::stdout().lock(), &rows);
    ExitCode::SUCCESS
}

/// `restart NODE [-dry-run]`: one cycle now, with the agent's own worker.
pub fn restart(node_name: &str, config: &Path, dry_run: bool) -> ExitCode {
    let (cfg, consul) = match setup(config, true, Some(Mode::Agent)) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(node) = cfg.nodes.iter().find(|n| n.name == node_name).cloned() else {
        return fail(
            2,
            format!(
                "restart: {node_name} is not among the nodes in {}",
                config.display()
            ),
        );
    };
    let oci = match crate::oci::connect(&cfg.oci) {
        Ok(s) => s,
        Err(e) => return fail(2, format!("config error: {e}")),
    };
    for w in &oci.warnings {
        eprintln!("warning: {w}");
    }
    match consul.get(&restart_key(node_name)) {
        Ok(Some(_)) => {
            return fail(
                1,
                format!(
                    "restart: a cycle for {node_name} is already in progress (see `oracle-watchdog status`); the leader agent resumes it"
                ),
            );
        }
        Ok(None) => {}
        Err(e) => return fail(1, format!("restart: cannot read Consul: {e}")),
    }
    if dry_run {
        return match oci
            .client
            .get_instance(&node.instance_id, node.region.as_deref())
        {
            Ok(i) => {
                println!(
                    "DRY RUN: {node_name} ({}) is {}; would STOP it if running, wait for STOPPED, START it and wait for RUNNING. No request sent.",
                    node.instance_id,
                    i.lifecycle_state.as_str()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(1, format!("restart: {e}")),
        };
    }
    crate::logging::init(
        crate::logging::LogFormat::Text,
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO),
        None,
    );
    // Nobody listens to progress events here (the log shows them): with the
    // receiver dropped, the worker's sends fail at once and are ignored.
    let (events, _) = bounded(1);
    let (cancel_tx, cancel_rx) = bounded::<()>(0);
    // Ctrl-C / SIGTERM: stop at the next wait and leave the cycle in KV.
    if let Ok(signals) = crate::shutdown::install() {
        std::thread::spawn(move || {
            if signals.recv().is_ok() {
                drop(cancel_tx);
            }
        });
    }
    let ctx = WorkerContext {
        oci: oci.client,
        consul,
        settings: CycleSettings {
            poll_interval: cfg.agent.poll_interval,
            phase_timeout: cfg.agent.phase_timeout,
            ..CycleSettings::default()
        },
        identity: format!("{} (restart command)", agent_identity()),
        events,
        cancel: cancel_rx,
    };
    let job = CycleJob {
        node,
        attempt: 1,
        resume_from: None,
        started_at: None,
    };
    match worker::run(job, ctx) {
        CycleOutcome::Recovered => {
            println!("{node_name}: restarted, instance RUNNING");
            ExitCode::SUCCESS
        }
        CycleOutcome::Failed { reason, .. } => {
            fail(1, format!("{node_name}: restart failed: {reason}"))
        }
        CycleOutcome::Interrupted => fail(
            1,
            format!(
                "{node_name}: interrupted; the cycle is stored in Consul and the leader agent resumes it"
            ),
        ),
    }
}

/// `3m12s`-style age.
fn human(secs: u64) -> String {
    crate::config::format_duration(Duration::from_secs(secs))
}
