//! Running a daemon mode: configuration, logging and tracing set-up, the
//! pieces every mode shares (metrics registry and server, signals), then the
//! mode itself and its optional loops. Exit codes as in [`crate::cli`].

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use crossbeam_channel::Receiver;
use prometheus::Registry;

use crate::cli::{RunMode, RunOptions, fail, hostname, validate_node_name};
use crate::config::{Config, Mode};
use crate::consul::{ConsulClient, ConsulSettings};
use crate::http::Timeouts;
use crate::logging;
use crate::metrics::{self, AgentMetrics, MetricsServer, MonitorMetrics};
use crate::monitor::{self, MonitorOptions, heartbeat::Timing};
use crate::shutdown::ShutdownRequested;
use crate::telemetry::Telemetry;

/// Loads and checks everything, then runs the chosen mode until SIGTERM.
pub fn run(opts: RunOptions) -> ExitCode {
    let mode = match opts.mode {
        RunMode::Monitor => Mode::Monitor,
        RunMode::Agent => Mode::Agent,
    };
    let required = opts.mode == RunMode::Agent || opts.config_given;
    let config = match Config::load(&opts.config, required) {
        Ok(c) => c,
        Err(e) => return fail(2, e),
    };
    if let Err(e) = config.validate(mode) {
        return fail(2, e);
    }
    let listen = opts
        .metrics_address
        .clone()
        .or_else(|| config.metrics_address.clone())
        .unwrap_or_else(|| metrics::default_listen_address(opts.mode.as_str()).to_string());
    let listen = match metrics::parse_listen_address(&listen) {
        Ok(a) => a,
        Err(e) => return fail(2, format!("oracle-watchdog: metrics address: {e}")),
    };
    let consul = match ConsulSettings::from_env(config.consul_address.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(2, format!("config error: {e}")),
    };
    let filter = match logging::parse_level(&opts.log_level) {
        Ok(f) => f,
        Err(e) => return fail(2, e),
    };
    let telemetry = (opts.tracing || config.tracing.enabled).then(|| {
        crate::telemetry::init(&crate::telemetry::TelemetrySettings {
            endpoint: config.tracing.endpoint.clone(),
            mode: opts.mode.as_str(),
        })
    });
    let otel = match &telemetry {
        Some(Ok(t)) => Some(t.layer()),
        _ => None,
    };
    logging::init(opts.log_format, filter, otel);
    crate::supervise::install_panic_hook();
    let telemetry = match telemetry {
        Some(Ok(t)) => {
            tracing::info!(endpoint = t.endpoint(), "exporting OpenTelemetry traces");
            Some(t)
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "OpenTelemetry export is off; continuing without traces");
            None
        }
        None => None,
    };
    let code = match opts.mode {
        RunMode::Monitor => run_monitor(&opts, &config, consul, listen, telemetry.as_ref()),
        RunMode::Agent => run_agent(&opts, &config, consul, listen, telemetry.as_ref()),
    };
    // Bounded: a collector that hangs delays the exit by at most this.
    if let Some(t) = telemetry {
        t.shutdown(Duration::from_secs(2));
    }
    code
}

/// What every mode runs alongside its own work.
struct Shared {
    registry: Registry,
    shutdown: Receiver<ShutdownRequested>,
    server: Option<MetricsServer>,
}

impl Shared {
    /// Registry with the mode's families (from `register`) plus build info,
    /// panic and span counters; signal handlers; the metrics server (a
    /// server that cannot start is logged and the mode runs without it).
    fn start<M>(
        mode: &'static str,
        listen: SocketAddr,
        telemetry: Option<&Telemetry>,
        register: impl FnOnce(&Registry) -> Result<M, prometheus::Error>,
    ) -> Result<(Shared, M), ExitCode> {
        let registry = Registry::new();
        let families = register(&registry)
            .and_then(|m| {
                metrics::register_build_info(&registry, mode)?;
                crate::supervise::register_metrics(&registry)?;
                Ok(m)
            })
            .map_err(|e| fail(1, format!("oracle-watchdog: cannot set up metrics: {e}")))?;
        if let Some(Err(e)) = telemetry.map(|t| t.register_metrics(&registry)) {
            tracing::warn!(error = %e, "trace span counters are not on /metrics");
        }
        let shutdown = crate::shutdown::install().map_err(|e| {
            fail(
                1,
                format!("oracle-watchdog: cannot install signal handlers: {e}"),
            )
        })?;
        let server = match MetricsServer::start(listen, registry.clone(), mode) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot start metrics thread; continuing without metrics");
                None
            }
        };
        Ok((
            Shared {
                registry,
                shutdown,
                server,
            },
            families,
        ))
    }

    fn stop(self) {
        if let Some(s) = self.server {
            s.stop();
        }
        tracing::info!("stopped");
    }
}

fn run_monitor(
    opts: &RunOptions,
    config: &Config,
    consul: ConsulSettings,
    listen: SocketAddr,
    telemetry: Option<&Telemetry>,
) -> ExitCode {
    let node = match opts.node.clone().map(Ok).unwrap_or_else(hostname) {
        Ok(n) => n,
        Err(e) => return fail(2, format!("oracle-watchdog: {e}")),
    };
    if let Err(e) = validate_node_name(&node) {
        return fail(2, format!("oracle-watchdog: {e}; pass -node NAME"));
    }
    let (shared, metrics) =
        match Shared::start("monitor", listen, telemetry, MonitorMetrics::register) {
            Ok(x) => x,
            Err(code) => return code,
        };
    // Optional: the WireGuard endpoint re-resolver, on its own thread so its
    // failures never reach the heartbeat.
    let wg_resolver = config
        .wireguard
        .as_ref()
        .filter(|w| w.enabled)
        .and_then(|w| {
            crate::wireguard::start(w, &shared.registry)
                .map_err(|e| tracing::error!(error = %e, "WireGuard endpoint resolver not started"))
                .ok()
        });
    let shutdown_timeout = Duration::from_millis(1200);
    let client = ConsulClient::new(&consul);
    let shutdown_client = ConsulClient::with_timeouts(
        &consul,
        Timeouts::new(Duration::from_millis(800), shutdown_timeout),
    );
    let monitor_opts = MonitorOptions {
        node,
        session_ttl: config.monitor.session_ttl,
        timing: Timing {
            renew_interval: config.monitor.renew_interval,
            ..Timing::default()
        },
        shutdown_timeout,
    };
    monitor::run(
        monitor_opts,
        client,
        shutdown_client,
        metrics,
        shared.shutdown.clone(),
    );
    if let Some(h) = wg_resolver {
        h.stop(Duration::from_secs(1));
    }
    shared.stop();
    ExitCode::SUCCESS
}

fn run_agent(
    opts: &RunOptions,
    config: &Config,
    consul: ConsulSettings,
    listen: SocketAddr,
    telemetry: Option<&Telemetry>,
) -> ExitCode {
    use crate::agent::cycle::CycleSettings;
    use crate::agent::tracker::TrackerSettings;
    use crate::agent::{self, AgentOptions};

    let setup = match crate::oci::connect(&config.oci) {
        Ok(s) => s,
        Err(e) => return fail(2, format!("config error: {e}")),
    };
    for w in &setup.warnings {
        tracing::warn!(warning = %w, "OCI key file");
    }
    let names: Vec<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
    let (shared, metrics) = match Shared::start("agent", listen, telemetry, |r| {
        AgentMetrics::register(r, names)
    }) {
        Ok(x) => x,
        Err(code) => return code,
    };
    // Optional: the WAN-IP DDNS updater; the agent carries on without it.
    let wan_dns = config.wan_dns.as_ref().filter(|w| w.enabled).and_then(|w| {
        crate::wandns::start(w, &shared.registry)
            .map_err(|e| tracing::error!(error = %e, "WAN-IP DDNS updater is off; the agent carries on without it"))
            .ok()
    });
    let a = &config.agent;
    let agent_opts = AgentOptions {
        nodes: config.nodes.clone(),
        tracker: TrackerSettings {
            timeout: config.timeout,
            max_restart_attempts: config.max_restart_attempts,
            max_concurrent_restarts: a.max_concurrent_restarts,
            max_missing_fraction: (a.max_missing_percent > 0)
                .then(|| f64::from(a.max_missing_percent) / 100.0),
            dry_run: opts.dry_run,
        },
        cycle: CycleSettings {
            poll_interval: a.poll_interval,
            phase_timeout: a.phase_timeout,
            ..CycleSettings::default()
        },
        check_interval: config.check_interval,
        leader_ttl: a.leader_ttl,
        shutdown_grace: a.shutdown_grace,
        identity: crate::agent::records::agent_identity(),
    };
    agent::run(
        agent_opts,
        ConsulClient::new(&consul),
        setup.client,
        metrics,
        shared.shutdown.clone(),
    );
    if let Some(w) = wan_dns {
        w.stop(Duration::from_secs(1));
    }
    shared.stop();
    ExitCode::SUCCESS
}
