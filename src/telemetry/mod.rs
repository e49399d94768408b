//! OpenTelemetry traces over OTLP/HTTP protobuf, without an async runtime.
//!
//! `tracing` spans are bridged to OpenTelemetry by tracing-opentelemetry;
//! finished spans go through our [`processor::QueueProcessor`] (bounded
//! queue, `otlp-export` thread, counted drops) to the OTLP exporter, which
//! talks HTTP through [`http_client::UreqHttpClient`]. A collector that is
//! down, slow or rejecting costs spans (counted), never a blocked loop.

pub mod http_client;
pub mod processor;

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Registry;

use http_client::UreqHttpClient;
use processor::{ProcessorConfig, QueueProcessor, SpanCounters};

/// Collector used when neither the config nor the environment names one.
pub const DEFAULT_ENDPOINT: &str = "localhost:4318";
/// Path of the OTLP/HTTP traces signal, appended to a base endpoint.
pub const TRACES_PATH: &str = "/v1/traces";
/// Base endpoint for all signals (the standard OTel variable).
pub const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Full traces URL, used verbatim (the standard OTel variable).
pub const ENV_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `service.name` of every span.
pub const SERVICE_NAME: &str = "oracle-watchdog";
/// Resource attribute naming the mode (`monitor` or `agent`).
pub const MODE_ATTRIBUTE: &str = "oracle_watchdog.mode";
/// How long the exporter may spend on one batch, retries included.
const EXPORT_DEADLINE: Duration = Duration::from_secs(5);

/// The tracing layer that feeds spans to OpenTelemetry, type-erased so
/// `logging::init` can stack it under its own filter.
pub type OtelLayer = Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync>;

/// What [`init`] needs: the config's endpoint and the mode for the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// `tracing.endpoint` from the config file, if set.
    pub endpoint: Option<String>,
    /// `monitor` or `agent`.
    pub mode: &'static str,
}

/// Why traces cannot be exported. Neither stops the daemon: the caller
/// logs it and runs without traces.
#[derive(Debug)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The endpoint is not an http(s) URL with a host: fix the config or env.
    InvalidEndpoint {
        /// Where the value came from (`tracing.endpoint` or an env var name).
        source: &'static str,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The OTLP exporter could not be built from the settings.
    Exporter(String),
    /// The metrics or the export thread could not be set up (resources).
    Setup(String),
}

impl TelemetryError {
    /// True when trying again later could succeed (thread/resource limits);
    /// false for configuration mistakes.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TelemetryError::Setup(_))
    }
}

impl std::fmt::Display for TelemetryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TelemetryError::InvalidEndpoint {
                source,
                value,
                reason,
            } => write!(f, "invalid OTLP endpoint {value:?} from {source}: {reason}"),
            TelemetryError::Exporter(e) => write!(f, "cannot build the OTLP exporter: {e}"),
            TelemetryError::Setup(e) => write!(f, "cannot set up trace export: {e}"),
        }
    }
}

impl std::error::Error for TelemetryError {}

/// Export is running: hand [`Telemetry::layer`] to logging, register the
/// counters on the mode's registry, and [`Telemetry::shutdown`] at the end.
pub struct Telemetry {
    provider: SdkTracerProvider,
    endpoint: String,
    counters: SpanCounters,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Builds the tracer provider (resource, exporter, our processor and its
/// `otlp-export` thread). Reads the OTel endpoint variables from the
/// environment; see [`resolve_endpoint`].
pub fn init(settings: &TelemetrySettings) -> Result<Telemetry, TelemetryError> {
    let endpoint = resolve_endpoint(settings.endpoint.as_deref(), |k| std::env::var(k).ok())?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(UreqHttpClient::new())
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.clone())
        .with_timeout(EXPORT_DEADLINE)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let counters = SpanCounters::new().map_err(|e| TelemetryError::Setup(e.to_string()))?;
    let processor = QueueProcessor::start(exporter, counters.clone(), ProcessorConfig::default())
        .map_err(|e| {
        TelemetryError::Setup(format!("cannot start the otlp-export thread: {e}"))
    })?;
    let provider = SdkTracerProvider::builder()
        .with_resource(resource(settings.mode))
        .with_span_processor(processor)
        .build();
    Ok(Telemetry {
        provider,
        endpoint,
        counters,
    })
}

/// The resource every span carries. `OTEL_RESOURCE_ATTRIBUTES` adds to it;
/// the service name, version and mode are always ours.
pub fn resource(mode: &'static str) -> Resource {
    Resource::builder()
        .with_service_name(SERVICE_NAME)
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new(MODE_ATTRIBUTE, mode),
        ])
        .build()
}

impl Telemetry {
    /// The full URL spans are posted to (for the startup log line).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The tracing-opentelemetry layer writing into this provider.
    pub fn layer(&self) -> OtelLayer {
        let tracer = self.provider.tracer(SERVICE_NAME);
        Box::new(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false),
        )
    }

    /// Registers `oracle_watchdog_trace_spans_{exported,dropped}_total` on
    /// the mode's registry so `/metrics` shows what the collector missed.
    pub fn register_metrics(
        &self,
        registry: &prometheus::Registry,
    ) -> Result<(), prometheus::Error> {
        self.counters.register(registry)
    }

    /// Exports what is queued and stops the export thread, waiting at most
    /// `timeout` (a hung collector cannot delay the exit longer).
    pub fn shutdown(&self, timeout: Duration) {
        match self.provider.shutdown_with_timeout(timeout) {
            Ok(()) => tracing::debug!("trace export stopped"),
            Err(e) => tracing::debug!(error = %e, "trace export stopped without a complete flush"),
        }
    }
}

/// Marks `span` as failed: status ERROR with `message` as its description.
/// The span must declare `otel.status_code` and `otel.status_description` as
/// `tracing::field::Empty`. The code is recorded first because recording
/// the message is what carries the description.
pub fn record_error(span: &tracing::Span, message: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", message);
}

/// The full traces URL: `tracing.endpoint` from the config, else
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), else
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, else `localhost:4318`. A value without a
/// scheme gets `http://`; `/v1/traces` is appended to base endpoints (not
/// twice when the value already ends with it).
pub fn resolve_endpoint(
    config: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, TelemetryError> {
    let non_empty = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let (source, value, verbatim) = if let Some(c) = non_empty(config.map(str::to_string)) {
        ("tracing.endpoint", c, false)
    } else if let Some(v) = non_empty(env(ENV_TRACES_ENDPOINT)) {
        (ENV_TRACES_ENDPOINT, v, true)
    } else if let Some(v) = non_empty(env(ENV_ENDPOINT)) {
        (ENV_ENDPOINT, v, false)
    } else {
        ("the default", DEFAULT_ENDPOINT.to_string(), false)
    };
    let invalid = |reason: String| TelemetryError::InvalidEndpoint {
        source,
        value: value.clone(),
        reason,
    };
    let with_scheme = if value.contains("://") {
        value.clone()
    } else {
        format!("http://{value}")
    };
    let uri: ureq::http::Uri = with_scheme
        .parse()
        .map_err(|e: ureq::http::uri::InvalidUri| invalid(e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(invalid("the scheme must be http or https".into())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    if uri.query().is_some() {
        return Err(invalid("a query string is not allowed".into()));
    }
    if verbatim {
        return Ok(with_scheme);
    }
    let base = with_scheme.trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        Ok(base.to_string())
    } else {
        Ok(format!("{base}{TRACES_PATH}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(config: Option<&str>, env: &[(&str, &str)]) -> Result<String, TelemetryError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve_endpoint(config, |k| env.get(k).cloned())
    }

    #[test]
    fn default_is_localhost_4318_with_the_traces_path() {
        assert_eq!(
            resolve(None, &[]).unwrap(),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            resolve(Some("  "), &[(ENV_ENDPOINT, "")]).unwrap(),
            "http://localhost:4318/v1/traces"
        );
    }

    #[test]
    fn config_beats_environment() {
        let env = [
            (ENV_ENDPOINT, "http://env:4318"),
            (ENV_TRACES_ENDPOINT, "http://traces:4318/custom"),
        ];
        assert_eq!(
            resolve(Some("tempo.lan:4318"), &env).unwrap(),
            "http://tempo.lan:4318/v1/traces"
        );
    }

    #[test]
    fn generic_env_is_a_base_and_traces_env_is_verbatim() {
        assert_eq!(
            resolve(None, &[(ENV_ENDPOINT, "https://otel.example.com/prefix/")]).unwrap(),
            "https://otel.example.com/prefix/v1/traces"
        );
        assert_eq!(
            resolve(
                None,
                &[
                    (ENV_ENDPOINT, "http://env:4318"),
                    (ENV_TRACES_ENDPOINT, "http://collector:9999/custom/path")
                ]
            )
            .unwrap(),
            "http://collector:9999/custom/path"
        );
    }

    #[test]
    fn full_url_in_config_is_not_doubled() {
        assert_eq!(
            resolve(Some("http://127.0.0.1:4318/v1/traces"), &[]).unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
    }

    #[test]
    fn bad_endpoints_name_their_source() {
        let e = resolve(Some("ftp://x:21"), &[]).unwrap_err();
        assert!(matches!(
            e,
            TelemetryError::InvalidEndpoint {
                source: "tracing.endpoint",
                ..
            }
        ));
        assert!(!e.is_retryable());
        let e = resolve(None, &[(ENV_ENDPOINT, "http://bad host:1")]).unwrap_err();
        assert!(e.to_string().contains(ENV_ENDPOINT), "{e}");
        assert!(resolve(Some("http://:4318"), &[]).is_err());
    }

    #[test]
    fn resource_names_service_version_and_mode() {
        let r = resource("agent");
        let get = |k: &str| {
            r.get(&opentelemetry::Key::from(k.to_string()))
                .map(|v| v.to_string())
        };
        assert_eq!(get("service.name").as_deref(), Some(SERVICE_NAME));
        assert_eq!(
            get("service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(get(MODE_ATTRIBUTE).as_deref(), Some("agent"));
    }
}
