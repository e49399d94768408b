//! `oracle-watchdog check`: what a user runs after editing the config.
//!
//! Validates the file for the modes it serves, then tries every connection it
//! names: Consul (leader, token, the heartbeat prefix) and, for an agent
//! config, the OCI profile and key and a GetInstance per node. Prints one
//! line per component and one table row per node. Exit 0 only when all is
//! well; 2 for configuration problems (file, profile, key, fingerprint); 1
//! when something configured correctly does not answer as it should.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, Mode};
use crate::consul::{ConsulClient, ConsulSettings, NODES_PREFIX};
use crate::oci::{self, RetryPolicy};

/// Runs the checks, printing to stdout; returns the exit code.
pub fn run(config_path: &Path) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let code = check(config_path, &mut out);
    let _ = out.flush();
    ExitCode::from(code)
}

/// The checks, writing the report to `out`; returns 0, 1 or 2.
pub fn check(config_path: &Path, out: &mut dyn Write) -> u8 {
    let mut failed = false;
    let config = match Config::load(config_path, true) {
        Ok(c) => c,
        Err(e) => return report_fatal(out, "config", &e),
    };
    if let Err(e) = config.validate(Mode::Monitor) {
        return report_fatal(out, "config", &e);
    }
    let agent = !config.nodes.is_empty();
    if agent && let Err(e) = config.validate(Mode::Agent) {
        return report_fatal(out, "config", &e);
    }
    let kind = if agent {
        format!("agent and monitor config, {} node(s)", config.nodes.len())
    } else {
        "monitor config (no nodes: OCI not checked)".to_string()
    };
    let _ = writeln!(out, "config  {}: ok ({kind})", config_path.display());

    match ConsulSettings::from_env(config.consul_address.as_deref()) {
        Err(e) => return report_fatal(out, "consul", &format!("config error: {e}")),
        Ok(settings) => {
            let line = consul_line(&settings);
            failed |= line.starts_with("FAILED");
            let _ = writeln!(out, "consul  {}: {line}", settings.base_url);
        }
    }

    if agent {
        let setup = match oci::connect(&config.oci) {
            Ok(s) => s,
            Err(e) => return report_fatal(out, "oci", &e),
        };
        let _ = writeln!(
            out,
            "oci     profile [{}] in {}: ok: key {} matches fingerprint {}",
            setup.profile.name,
            setup.profile.config_path.display(),
            setup.profile.key_file.display(),
            setup.fingerprint
        );
        for w in &setup.warnings {
            let _ = writeln!(out, "        warning: {w}");
        }
        let client = setup.client.with_retry_policy(RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(5),
        });
        let mut rows = vec![[
            "NODE".to_string(),
            "INSTANCE".into(),
            "REGION".into(),
            "STATE".into(),
        ]];
        for node in &config.nodes {
            let region = client
                .endpoints()
                .region(&node.instance_id, node.region.as_deref())
                .map(|r| r.id.to_string())
                .unwrap_or_else(|_| "?".into());
            let state = match client.get_instance(&node.instance_id, node.region.as_deref()) {
                Ok(i) => i.lifecycle_state.as_str().to_string(),
                Err(e) => {
                    failed = true;
                    format!("ERROR {e}")
                }
            };
            rows.push([node.name.clone(), node.instance_id.clone(), region, state]);
        }
        let _ = crate::table::write(out, &rows);
    }
    u8::from(failed)
}

fn consul_line(settings: &ConsulSettings) -> String {
    let client = ConsulClient::new(settings);
    let leader = match client.leader() {
        Ok(Some(l)) => l,
        Ok(None) => return "FAILED: the cluster has no leader".into(),
        Err(e) => return format!("FAILED: {e}"),
    };
    let token = if settings.token.is_some() {
        "token accepted"
    } else {
        "no token set"
    };
    match client.list(NODES_PREFIX, None) {
        Ok((keys, _)) => format!(
            "ok: leader {leader}, {token}, {} heartbeat key(s) under {NODES_PREFIX}",
            keys.len()
        ),
        Err(e) => format!("FAILED: leader {leader}, but {e}"),
    }
}

fn report_fatal(out: &mut dyn Write, what: &str, e: &dyn std::fmt::Display) -> u8 {
    let _ = writeln!(out, "{what:<7} FAILED: {e}");
    2
}
