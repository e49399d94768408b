//! Command line: parsing (seed-compatible, Go-style `-flag` spellings), help,
//! and dispatch to the daemon modes ([`crate::daemon`]) and the one-shot
//! commands ([`crate::check`], [`crate::ops`]).
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::http::Timeouts;
use crate::logging::{self, LogFormat};

/// Default config file location (spec).
pub const DEFAULT_CONFIG: &str = "/etc/oracle-watchdog/config.yaml";

/// Short usage printed with usage errors.
pub const USAGE: &str = "\
usage: oracle-watchdog -mode monitor|agent [options]
       oracle-watchdog monitor|agent [options]
       oracle-watchdog check [-config PATH]
       oracle-watchdog healthcheck [-metrics-address HOST:PORT]
       oracle-watchdog status | restart NODE | maintenance on|off NODE [-reason TEXT]
       oracle-watchdog --help | --version";

/// Full help text.
pub fn help() -> String {
    format!(
        "oracle-watchdog {version}: keeps Oracle Cloud free-tier instances alive.

{USAGE}

Modes:
  monitor   run on an Oracle node: hold a Consul session + heartbeat key
  agent     run elsewhere: restart instances whose heartbeat is gone
  check     validate the config and test Consul and (agent config) OCI access
            for every node; exit 0 only when everything works
  healthcheck
            exit 0 when the daemon's /healthz answers (default 127.0.0.1:9105),
            for container health checks
  status    table of nodes from Consul: heartbeat alive or missing (and for how
            long), restart phase and attempts, maintenance, current leader
  restart NODE
            run one stop/start cycle for NODE now (honours -dry-run)
  maintenance on|off NODE [-reason TEXT]
            make agents leave NODE alone (e.g. before a planned systemctl stop)

Options (one or two dashes; -flag=value works too):
  -mode MODE            monitor or agent (or give the mode as the first word)
  -node NAME            node name for the heartbeat key (default: hostname)
  -config PATH          YAML config file (default: {DEFAULT_CONFIG});
                        required in agent mode, optional in monitor mode
  -dry-run              agent: decide and log, but send no state-changing OCI request
  -tracing              export OpenTelemetry traces (also config tracing.enabled)
  -metrics-address A    metrics listen address (default :9104 monitor, :9105 agent)
  -log-format F         json (default) or text
  -reason TEXT          maintenance on: why (shown by status)
  -log-level L          error, warn, info (default), debug, trace, or
                        per-target directives like info,oracle_watchdog::consul=debug
  -h, -help             show this help
  -V, -version          show the version

Environment (monitor and agent):
  CONSUL_HTTP_ADDR        Consul address, host:port or URL (default consul.service.consul:8500;
                          the config file's consul_address wins when set)
  CONSUL_HTTP_SSL         true to use https with a host:port address
  CONSUL_HTTP_TOKEN       ACL token
  CONSUL_HTTP_TOKEN_FILE  file holding the ACL token (wins over CONSUL_HTTP_TOKEN)
  CONSUL_CACERT           PEM file of the CA that signed Consul's certificate

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.",
        version = env!("CARGO_PKG_VERSION")
    )
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run a daemon mode.
    Run(RunOptions),
    /// Probe a running daemon's `/healthz` (for container HEALTHCHECKs:
    /// scratch images have no curl).
    Healthcheck {
        /// `host:port` of the metrics server.
        address: String,
    },
    /// Print every node's heartbeat, restart and maintenance state.
    Status {
        /// The agent config file.
        config: PathBuf,
    },
    /// Run one restart cycle for a node now.
    Restart {
        /// Node name from the config.
        node: String,
        /// The agent config file.
        config: PathBuf,
        /// Only say what would be done.
        dry_run: bool,
    },
    /// Set or clear a node's maintenance flag.
    Maintenance {
        /// On or off.
        on: bool,
        /// The node.
        node: String,
        /// Why (shown by `status`).
        reason: Option<String>,
        /// Config file (for the Consul address).
        config: PathBuf,
        /// Whether `-config` was given (then it must exist).
        config_given: bool,
    },
    /// Validate a config file and test its connections.
    Check {
        /// The config file.
        config: PathBuf,
    },
    /// Print help.
    Help,
    /// Print the version.
    Version,
}

/// Which daemon to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Heartbeat publisher on an Oracle node.
    Monitor,
    /// Watcher and restarter.
    Agent,
}

impl RunMode {
    /// The mode's name as typed on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Monitor => "monitor",
            RunMode::Agent => "agent",
        }
    }
}

/// Options of a daemon run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// The mode.
    pub mode: RunMode,
    /// `-node`; `None` means the hostname.
    pub node: Option<String>,
    /// `-config`.
    pub config: PathBuf,
    /// Whether `-config` was given (a named file must exist in any mode).
    pub config_given: bool,
    /// `-dry-run`.
    pub dry_run: bool,
    /// `-tracing`.
    pub tracing: bool,
    /// `-metrics-address`.
    pub metrics_address: Option<String>,
    /// `-log-format`.
    pub log_format: LogFormat,
    /// `-log-level`.
    pub log_level: String,
}

/// A command line that cannot be used; printed with [`USAGE`], exit 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Long flags that may be written with one dash, Go style.
const LONG_FLAGS: &[&str] = &[
    "mode",
    "node",
    "config",
    "dry-run",
    "tracing",
    "metrics-address",
    "log-format",
    "log-level",
    "reason",
    "help",
    "version",
];

/// Rewrites `-flag` / `-flag=value` into `--flag` / `--flag=value` for the
/// known long flags so pico-args sees one spelling.
fn normalise(args: Vec<OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|arg| {
            let Some(s) = arg.to_str() else { return arg };
            if let Some(rest) = s.strip_prefix('-')
                && !rest.starts_with('-')
                && LONG_FLAGS.contains(&rest.split('=').next().unwrap_or(""))
            {
                return OsString::from(format!("-{s}"));
            }
            arg
        })
        .collect()
}

/// Parses the arguments after the program name.
pub fn parse(args: Vec<OsString>) -> Result<Command, UsageError> {
    let mut p = pico_args::Arguments::from_vec(normalise(args));
    if p.contains(["-h", "--help"]) {
        return Ok(Command::Help);
    }
    if p.contains(["-V", "--version"]) {
        return Ok(Command::Version);
    }
    let err = |e: pico_args::Error| UsageError(e.to_string());
    let flag_mode: Option<String> = p.opt_value_from_str("--mode").map_err(err)?;
    let node: Option<String> = p.opt_value_from_str("--node").map_err(err)?;
    let config: Option<PathBuf> = p
        .opt_value_from_str::<_, String>("--config")
        .map_err(err)?
        .map(PathBuf::from);
    let dry_run = p.contains("--dry-run");
    let tracing = p.contains("--tracing");
    let metrics_address: Option<String> = p.opt_value_from_str("--metrics-address").map_err(err)?;
    let log_format = match p
        .opt_value_from_str::<_, String>("--log-format")
        .map_err(err)?
    {
        Some(f) => f.parse::<LogFormat>().map_err(UsageError)?,
        None => LogFormat::Json,
    };
    let log_level: String = p
        .opt_value_from_str("--log-level")
        .map_err(err)?
        .unwrap_or_else(|| "info".into());
    logging::parse_level(&log_level).map_err(UsageError)?;
    let reason: Option<String> = p.opt_value_from_str("--reason").map_err(err)?;

    let rest = p.finish();
    let words: Vec<String> = rest
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(flag) = words.iter().find(|w| w.starts_with('-')) {
        return Err(UsageError(format!("unknown option {flag:?}")));
    }
    let config_path = || {
        config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    };
    match words.first().map(String::as_str) {
        Some("status") if words.len() == 1 => {
            return Ok(Command::Status {
                config: config_path(),
            });
        }
        Some("restart") => {
            let [_, node] = words.as_slice() else {
                return Err(UsageError(
                    "usage: oracle-watchdog restart NODE [-config PATH] [-dry-run]".into(),
                ));
            };
            validate_node_name(node).map_err(UsageError)?;
            return Ok(Command::Restart {
                node: node.clone(),
                config: config_path(),
                dry_run,
            });
        }
        Some("maintenance") => {
            let (on, node) = match words.as_slice() {
                [_, state, node] if state == "on" || state == "off" => {
                    (state == "on", node.clone())
                }
                _ => {
                    return Err(UsageError(
                        "usage: oracle-watchdog maintenance on|off NODE [-reason TEXT] [-config PATH]".into(),
                    ));
                }
            };
            validate_node_name(&node).map_err(UsageError)?;
            return Ok(Command::Maintenance {
                on,
                node,
                reason,
                config: config_path(),
                config_given: config.is_some(),
            });
        }
        _ => {}
    }
    if reason.is_some() {
        return Err(UsageError(
            "-reason only applies to `maintenance on`".into(),
        ));
    }
    let mut words = words.into_iter();
    let word_mode = words.next();
    if let Some(extra) = words.next() {
        return Err(UsageError(format!("unexpected argument {extra:?}")));
    }
    let mode_name = match (flag_mode, word_mode) {
        (Some(a), Some(b)) if a != b => {
            return Err(UsageError(format!("mode given twice: -mode {a} and {b}")));
        }
        (Some(m), _) | (None, Some(m)) => m,
        (None, None) => {
            return Err(UsageError(
                "missing mode: use -mode monitor or -mode agent".into(),
            ));
        }
    };
    let mode = match mode_name.as_str() {
        "healthcheck" => {
            let address = metrics_address.unwrap_or_else(|| "127.0.0.1:9105".into());
            return Ok(Command::Healthcheck { address });
        }
        "check" => {
            return Ok(Command::Check {
                config: config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)),
            });
        }
        "monitor" => RunMode::Monitor,
        "agent" => RunMode::Agent,
        other => {
            return Err(UsageError(format!(
                "unknown mode {other:?}: use monitor, agent, check or healthcheck"
            )));
        }
    };
    if let Some(n) = &node {
        validate_node_name(n).map_err(|e| UsageError(format!("-node: {e}")))?;
    }
    Ok(Command::Run(RunOptions {
        mode,
        node,
        config_given: config.is_some(),
        config: config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)),
        dry_run,
        tracing,
        metrics_address,
        log_format,
        log_level,
    }))
}

/// `0.1.0 (rev 1f23923abcde, x86_64-linux)`: the version, the git revision
/// the Makefile builds from (when built that way) and the platform.
pub fn version_line() -> String {
    let rev = option_env!("OW_BUILD_REV").filter(|r| !r.is_empty());
    format!(
        "{} ({}{}-{})",
        env!("CARGO_PKG_VERSION"),
        rev.map(|r| format!("rev {r}, ")).unwrap_or_default(),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// Node names become a Consul key segment: keep them to a safe alphabet.
pub fn validate_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!("node name {name:?} must be 1 to 128 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "node name {name:?} contains {c:?}; use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// This machine's host name (the default node name).
pub fn hostname() -> Result<String, String> {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    from_kernel
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .ok_or_else(|| "cannot determine the host name; pass -node NAME".to_string())
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match parse(args) {
        Ok(Command::Help) => {
            println!("{}", help());
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("oracle-watchdog {}", version_line());
            ExitCode::SUCCESS
        }
        Ok(Command::Run(opts)) => crate::daemon::run(opts),
        Ok(Command::Check { config }) => crate::check::run(&config),
        Ok(Command::Healthcheck { address }) => healthcheck(&address),
        Ok(Command::Status { config }) => crate::ops::status(&config),
        Ok(Command::Restart {
            node,
            config,
            dry_run,
        }) => crate::ops::restart(&node, &config, dry_run),
        Ok(Command::Maintenance {
            on,
            node,
            reason,
            config,
            config_given,
        }) => crate::ops::maintenance(on, &node, reason.as_deref(), &config, config_given),
        Err(e) => {
            eprintln!("oracle-watchdog: {e}\n{USAGE}\nTry 'oracle-watchdog --help' for more.");
            ExitCode::from(2)
        }
    }
}

/// GET `/healthz` of a running daemon; exit 0 on 200, 1 otherwise.
fn healthcheck(address: &str) -> ExitCode {
    let host = match address.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => address.replace("0.0.0.0", "127.0.0.1"),
    };
    let agent = crate::http::agent(
        Timeouts::new(Duration::from_secs(2), Duration::from_secs(3)),
        &crate::http::TrustRoots::Bundled,
    );
    match agent.get(&format!("http://{host}/healthz")).call() {
        Ok(r) if r.status().as_u16() == 200 => ExitCode::SUCCESS,
        Ok(r) => fail(
            1,
            format!("healthcheck: {host} answered HTTP {}", r.status().as_u16()),
        ),
        Err(e) => fail(1, format!("healthcheck: {host}: {e}")),
    }
}

/// Prints `message` on stderr and returns exit `code` (1 runtime, 2 usage or
/// configuration); shared by every command.
pub(crate) fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    fn run_opts(s: &str) -> RunOptions {
        match parse(args(s)) {
            Ok(Command::Run(o)) => o,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn seed_spellings_parse() {
        let o = run_opts("-mode monitor -node oraclenode1");
        assert_eq!(
            (o.mode, o.node.as_deref()),
            (RunMode::Monitor, Some("oraclenode1"))
        );
        assert!(!o.config_given);
        assert_eq!(o.config, PathBuf::from(DEFAULT_CONFIG));
        let o = run_opts("-mode agent -config /etc/oracle-watchdog/config.yaml");
        assert_eq!(o.mode, RunMode::Agent);
        assert!(o.config_given);
        assert!(run_opts("-mode agent -config config.yaml -dry-run").dry_run);
        assert!(run_opts("-mode agent -config config.yaml -tracing").tracing);
    }

    #[test]
    fn double_dash_equals_and_positional_mode() {
        let o =
            run_opts("--mode=agent --config=c.yaml --dry-run --log-format text --log-level debug");
        assert_eq!(o.mode, RunMode::Agent);
        assert_eq!(o.config, PathBuf::from("c.yaml"));
        assert_eq!(o.log_format, LogFormat::Text);
        assert_eq!(o.log_level, "debug");
        let o = run_opts("monitor -node n1 -metrics-address 127.0.0.1:9999");
        assert_eq!(o.mode, RunMode::Monitor);
        assert_eq!(o.metrics_address.as_deref(), Some("127.0.0.1:9999"));
        assert_eq!(run_opts("agent -mode agent").mode, RunMode::Agent);
        let check = Command::Check {
            config: PathBuf::from("c.yaml"),
        };
        assert_eq!(parse(args("check -config c.yaml")), Ok(check.clone()));
        assert_eq!(parse(args("-mode check --config=c.yaml")), Ok(check));
        assert_eq!(
            parse(args("maintenance on n1 -reason kernel")),
            Ok(Command::Maintenance {
                on: true,
                node: "n1".into(),
                reason: Some("kernel".into()),
                config: PathBuf::from(DEFAULT_CONFIG),
                config_given: false,
            })
        );
        assert_eq!(
            parse(args("restart n2 -dry-run -config c.yaml")),
            Ok(Command::Restart {
                node: "n2".into(),
                config: PathBuf::from("c.yaml"),
                dry_run: true
            })
        );
        assert!(matches!(parse(args("status")), Ok(Command::Status { .. })));
        for bad in [
            "maintenance",
            "maintenance maybe n1",
            "maintenance on",
            "restart",
            "restart a b",
            "status x",
            "monitor -reason x",
        ] {
            assert!(parse(args(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            parse(args("healthcheck")),
            Ok(Command::Healthcheck {
                address: "127.0.0.1:9105".into()
            })
        );
        assert_eq!(
            parse(args("healthcheck -metrics-address :9104")),
            Ok(Command::Healthcheck {
                address: ":9104".into()
            })
        );
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse(args("-h")), Ok(Command::Help));
        assert_eq!(parse(args("-help")), Ok(Command::Help));
        assert_eq!(parse(args("--version")), Ok(Command::Version));
        assert_eq!(parse(args("-V")), Ok(Command::Version));
    }

    #[test]
    fn usage_errors() {
        for bad in [
            "",
            "-mode",
            "-mode banana",
            "monitor -bogus",
            "monitor --bogus",
            "monitor extra",
            "-mode monitor agent",
            "monitor -log-format xml",
            "monitor -log-level loud",
            "monitor -node a/b",
        ] {
            assert!(parse(args(bad)).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn node_names() {
        assert!(validate_node_name("oracle-node_1.a").is_ok());
        assert!(validate_node_name("").is_err());
        assert!(validate_node_name("a b").is_err());
        assert!(validate_node_name(&"x".repeat(129)).is_err());
    }
}
