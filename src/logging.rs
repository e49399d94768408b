//! Log output: JSON lines (default, for journald/Loki) or human text, on stderr.
//!
//! stdout stays free for command output (`check`, `status` tables).

use std::str::FromStr;

use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::telemetry::OtelLayer;

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Plain text for terminals.
    Text,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            other => Err(format!("unknown log format {other:?} (use json or text)")),
        }
    }
}

/// Parses a level filter: a level (`error`, `warn`, `info`, `debug`, `trace`)
/// or per-target directives such as `info,oracle_watchdog::consul=debug`.
pub fn parse_level(spec: &str) -> Result<Targets, String> {
    const LEVELS: &str = "error, warn, info, debug, trace or off";
    let mut targets = Targets::new();
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, level) = match directive.split_once('=') {
            Some((t, l)) if !t.trim().is_empty() => (Some(t.trim()), l.trim()),
            Some(_) => {
                return Err(format!(
                    "invalid log level {spec:?}: empty target in {directive:?}"
                ));
            }
            None => (None, directive),
        };
        let level = LevelFilter::from_str(level)
            .map_err(|_| format!("invalid log level {spec:?}: {level:?} is not one of {LEVELS}"))?;
        targets = match target {
            Some(t) => targets.with_target(t.to_string(), level),
            None => targets.with_default(level),
        };
    }
    Ok(targets)
}

/// Level at which spans (and the events inside them) go to OpenTelemetry,
/// whatever `-log-level` says: `-log-level warn` must not remove traces.
pub const TRACE_EXPORT_LEVEL: LevelFilter = LevelFilter::INFO;

/// Which spans the OpenTelemetry layer sees: ours, at [`TRACE_EXPORT_LEVEL`].
fn otel_filter() -> Targets {
    Targets::new().with_target("oracle_watchdog", TRACE_EXPORT_LEVEL)
}

/// Installs the global subscriber. Call once, before any thread starts.
///
/// Each layer has its own filter: log lines follow `filter` (the user's
/// `-log-level`), the optional OpenTelemetry layer (`otel`, from
/// `telemetry::Telemetry::layer`) always sees our spans at INFO.
pub fn init(format: LogFormat, filter: Targets, otel: Option<OtelLayer>) {
    let registry = tracing_subscriber::registry().with(otel.map(|l| l.with_filter(otel_filter())));
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_thread_names(true)
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_thread_names(true)
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("oracle-watchdog: logging already initialised: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_levels_parse() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().is_err());
        assert!(parse_level("debug").is_ok());
        assert!(parse_level("info,oracle_watchdog::consul=trace").is_ok());
        assert!(parse_level("loud").is_err());
        assert!(parse_level("info,oracle_watchdog=loud").is_err());
        assert!(parse_level("=debug").is_err());
        let t = parse_level("warn,oracle_watchdog::consul=debug").unwrap();
        assert!(t.would_enable("oracle_watchdog::consul", &tracing::Level::DEBUG));
        assert!(!t.would_enable("oracle_watchdog::monitor", &tracing::Level::INFO));
    }
}
