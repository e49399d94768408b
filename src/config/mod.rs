//! Configuration: the YAML file both modes share, its defaults, loading and per-mode validation.
//!
//! One file (default `/etc/oracle-watchdog/config.yaml`) serves both modes.
//! Agent mode requires it; monitor mode runs on defaults plus environment when
//! it does not exist. Loading is strict: unknown keys (with a "did you mean"),
//! wrong types, duplicate keys and bad durations are errors that name the file
//! and the field path, and [`Config::validate`] applies each mode's rules.
//!
//! ```
//! use std::path::Path;
//! use oracle_watchdog::config::{Config, Mode};
//!
//! let cfg = Config::from_yaml_str("check_interval: 10s\n", Path::new("inline.yaml")).unwrap();
//! assert_eq!(cfg.check_interval.as_secs(), 10);
//! cfg.validate(Mode::Monitor).unwrap();
//! let err = Config::from_yaml_str("chek_interval: 10s\n", Path::new("inline.yaml")).unwrap_err();
//! assert_eq!(err.to_string(), "config error: inline.yaml: chek_interval: unknown key (did you mean `check_interval`?)");
//! ```

mod duration;
mod error;
mod read;
mod suggest;
mod validate;
mod yaml;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use duration::{DurationError, DurationErrorKind, format_duration, parse_duration};
pub use error::{ConfigError, ConfigErrorKind};

/// Where the config file lives unless `-config` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/oracle-watchdog/config.yaml";

/// Config files larger than this are refused rather than read (a path such as
/// `/dev/zero` must not hang or exhaust memory).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Which mode's rules [`Config::validate`] applies: each mode checks only the
/// settings it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Runs on each Oracle node and holds the Consul heartbeat.
    Monitor,
    /// Watches heartbeats and restarts instances through OCI.
    Agent,
}

/// The whole configuration of either mode, with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from; `None` when a monitor runs without a file.
    pub source: Option<PathBuf>,
    /// How long a node's heartbeat must be missing before the agent restarts it (default 5m).
    pub timeout: Duration,
    /// How often the agent scans for missing heartbeats (default 30s).
    pub check_interval: Duration,
    /// Consul HTTP address from the file; `None` lets the consul module apply
    /// `CONSUL_HTTP_ADDR` or its default.
    pub consul_address: Option<String>,
    /// Consecutive restarts per node before the agent gives up; 0 = unlimited.
    pub max_restart_attempts: u32,
    /// Metrics listen address; `None` means the mode's default (`:9104` monitor, `:9105` agent).
    pub metrics_address: Option<String>,
    /// Monitor-mode heartbeat timing (`monitor:` block).
    pub monitor: MonitorSettings,
    /// Agent-mode restart and election tuning (`agent:` block).
    pub agent: AgentSettings,
    /// How the agent reaches OCI (`oci:` block).
    pub oci: OciSettings,
    /// The instances the agent watches and may restart.
    pub nodes: Vec<NodeConfig>,
    /// Monitor-mode WireGuard endpoint re-resolver; `None` when the block is absent.
    pub wireguard: Option<WireguardSettings>,
    /// Agent-mode WAN-IP DDNS updater; `None` when the block is absent.
    pub wan_dns: Option<WanDnsSettings>,
    /// OpenTelemetry trace export (both modes).
    pub tracing: TracingSettings,
}

/// Consul session timing for monitor mode: how fast a dead node's key vanishes.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSettings {
    /// Session TTL sent to Consul (default 30s; Consul allows 10s..=24h).
    pub session_ttl: Duration,
    /// How often the session is renewed (default 10s; at most half the TTL).
    pub renew_interval: Duration,
}

/// Agent-mode tuning beyond the spec's keys: restart cycle timers, safety
/// valves and standby election.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    /// Time between instance state reads during a restart cycle (default 10s).
    pub poll_interval: Duration,
    /// Longest time one cycle phase (e.g. waiting for STOPPED) may last (default 5m).
    pub phase_timeout: Duration,
    /// Restart cycles allowed at once; 0 = unlimited (default 0).
    pub max_concurrent_restarts: u32,
    /// Hold all restarts while more than this percentage of the (non-maintenance)
    /// nodes are missing at once, which points at the agent's own network
    /// rather than at the nodes; 0 = off (default 0).
    pub max_missing_percent: u32,
    /// TTL of the leader lock session; a dead leader is replaced within about
    /// one to two TTLs (default 15s, Consul allows 10s..24h).
    pub leader_ttl: Duration,
    /// On SIGTERM, how long running cycles may go on before they are left in
    /// KV for the next leader (default 30s).
    pub shutdown_grace: Duration,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            poll_interval: Duration::from_secs(10),
            phase_timeout: Duration::from_secs(300),
            max_concurrent_restarts: 0,
            max_missing_percent: 0,
            leader_ttl: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Where the agent finds its OCI credentials and API.
#[derive(Debug, Clone, PartialEq)]
pub struct OciSettings {
    /// OCI SDK-style config file (default `/etc/oracle-watchdog/oci-config`).
    pub config_path: PathBuf,
    /// Profile (section) in that file (default `DEFAULT`).
    pub profile: String,
    /// API base URL override (tests, stand-ins); `http://` is allowed because
    /// it is explicit. `None` derives the endpoint from each instance's region.
    pub endpoint: Option<String>,
}

/// One Oracle instance the agent watches: its Consul node name and its OCIDs.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Node name the monitor on that instance heartbeats under.
    pub name: String,
    /// Instance OCID (`ocid1.instance.…`).
    pub instance_id: String,
    /// Compartment OCID holding the instance.
    pub compartment_id: String,
    /// Region override when the OCID does not say (or says something else).
    pub region: Option<String>,
}

/// Monitor-mode WireGuard endpoint re-resolver settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WireguardSettings {
    /// Whether the resolver runs; a block with `enabled: false` is inert.
    pub enabled: bool,
    /// WireGuard interface name (default `wg0`).
    pub interface: String,
    /// Base64 public key of the peer whose endpoint is kept up to date.
    pub peer_pubkey: String,
    /// DNS name the peer's endpoint is resolved from.
    pub endpoint_hostname: String,
    /// UDP port of the peer (default 51820).
    pub endpoint_port: u16,
    /// How often DNS is consulted (default 60s).
    pub resolve_interval: Duration,
    /// A handshake older than this forces an endpoint update (default 180s).
    pub stale_handshake_threshold: Duration,
    /// Which WireGuard implementation to talk to (default kernel).
    pub backend: WireguardBackend,
}

/// How the WireGuard device is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireguardBackend {
    /// Kernel module over netlink.
    #[default]
    Kernel,
    /// wireguard-go / boringtun over the UAPI socket.
    Userspace,
    /// Kernel if the interface is a kernel device, else userspace.
    Auto,
}

impl WireguardBackend {
    /// The config spelling (`kernel`, `userspace`, `auto`).
    pub fn as_str(self) -> &'static str {
        match self {
            WireguardBackend::Kernel => "kernel",
            WireguardBackend::Userspace => "userspace",
            WireguardBackend::Auto => "auto",
        }
    }
}

/// Agent-mode WAN-IP DDNS updater settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WanDnsSettings {
    /// Whether the updater runs; a block with `enabled: false` is inert.
    pub enabled: bool,
    /// The A record kept in sync with the WAN IPv4.
    pub hostname: String,
    /// Which Cloudflare zone and token to use.
    pub cloudflare: CloudflareSettings,
    /// IP detection URLs tried in order; first success wins.
    pub detection_providers: Vec<String>,
    /// How often the WAN IP is checked (default 5m).
    pub poll_interval: Duration,
    /// Minimum time between record updates (default 15m).
    pub cooldown: Duration,
}

/// Cloudflare API settings. The token itself never enters the config: only
/// the name of the environment variable holding it.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudflareSettings {
    /// Name of the env var with the API token (default `CLOUDFLARE_API_TOKEN`).
    pub api_token_env: String,
    /// Zone that holds the record.
    pub zone_id: String,
    /// API base URL (default `https://api.cloudflare.com/client/v4`; tests override it).
    pub api_url: String,
    /// Create the A record when it does not exist (default false: report it).
    pub create_if_missing: bool,
}

/// OpenTelemetry export settings; the `-tracing` flag also turns it on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TracingSettings {
    /// Export traces.
    pub enabled: bool,
    /// OTLP/HTTP collector (URL or host:port); `None` uses
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or `localhost:4318`.
    pub endpoint: Option<String>,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            session_ttl: Duration::from_secs(30),
            renew_interval: Duration::from_secs(10),
        }
    }
}

impl Default for OciSettings {
    fn default() -> Self {
        OciSettings {
            config_path: PathBuf::from("/etc/oracle-watchdog/oci-config"),
            profile: "DEFAULT".into(),
            endpoint: None,
        }
    }
}

impl Default for WireguardSettings {
    fn default() -> Self {
        WireguardSettings {
            enabled: false,
            interface: "wg0".into(),
            peer_pubkey: String::new(),
            endpoint_hostname: String::new(),
            endpoint_port: 51820,
            resolve_interval: Duration::from_secs(60),
            stale_handshake_threshold: Duration::from_secs(180),
            backend: WireguardBackend::Kernel,
        }
    }
}

impl Default for CloudflareSettings {
    fn default() -> Self {
        CloudflareSettings {
            api_token_env: "CLOUDFLARE_API_TOKEN".into(),
            zone_id: String::new(),
            api_url: "https://api.cloudflare.com/client/v4".into(),
            create_if_missing: false,
        }
    }
}

impl Default for WanDnsSettings {
    fn default() -> Self {
        WanDnsSettings {
            enabled: false,
            hostname: String::new(),
            cloudflare: CloudflareSettings::default(),
            detection_providers: vec![
                "https://api.ipify.org".into(),
                "https://1.1.1.1/cdn-cgi/trace".into(),
            ],
            poll_interval: Duration::from_secs(5 * 60),
            cooldown: Duration::from_secs(15 * 60),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::defaults()
    }
}

impl Config {
    /// Defaults for every key (what an env-only monitor runs with).
    pub fn defaults() -> Config {
        Config {
            source: None,
            timeout: Duration::from_secs(5 * 60),
            check_interval: Duration::from_secs(30),
            consul_address: None,
            max_restart_attempts: 0,
            metrics_address: None,
            monitor: MonitorSettings::default(),
            agent: AgentSettings::default(),
            oci: OciSettings::default(),
            nodes: Vec::new(),
            wireguard: None,
            wan_dns: None,
            tracing: TracingSettings::default(),
        }
    }

    /// Reads, parses and type-checks the file at `path`, rejecting unknown keys.
    ///
    /// With `required == false` a file that does not exist yields
    /// [`Config::defaults`] (source `None`): monitor mode without a file. A
    /// file that exists but cannot be read or parsed is an error either way.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let read_err = |kind: std::io::ErrorKind, what: String| {
            ConfigError::whole(
                ConfigErrorKind::Read(kind),
                format!("cannot read file: {what}"),
            )
            .in_file(Some(path))
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::defaults());
            }
            Err(e) => return Err(read_err(e.kind(), describe_io(&e))),
        };
        let mut bytes = Vec::new();
        if let Err(e) = file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
            return Err(read_err(e.kind(), describe_io(&e)));
        }
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(read_err(
                std::io::ErrorKind::FileTooLarge,
                format!("larger than {MAX_FILE_BYTES} bytes"),
            ));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| read_err(std::io::ErrorKind::InvalidData, "not UTF-8 text".into()))?;
        Config::from_yaml_str(&text, path)
    }

    /// Parses YAML text; `origin` is the file name errors and `source` carry.
    pub fn from_yaml_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let node = yaml::parse(text).map_err(|e| e.in_file(Some(origin)))?;
        let mut config = read::config(&node).map_err(|e| e.in_file(Some(origin)))?;
        config.source = Some(origin.to_path_buf());
        Ok(config)
    }

    /// Mode-specific checks: required fields, ranges, cross-field rules.
    /// Returns the first problem found, naming its field path.
    pub fn validate(&self, mode: Mode) -> Result<(), ConfigError> {
        validate::validate(self, mode).map_err(|e| e.in_file(self.source.as_deref()))
    }

    /// The metrics listen address for `mode`: the configured one or the
    /// spec's default (`:9104` monitor, `:9105` agent).
    pub fn metrics_address_or_default(&self, mode: Mode) -> &str {
        match (&self.metrics_address, mode) {
            (Some(a), _) => a,
            (None, Mode::Monitor) => ":9104",
            (None, Mode::Agent) => ":9105",
        }
    }
}

/// An I/O error in lower case without the OS error number
/// ("permission denied", "is a directory").
fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "file does not exist".into(),
        kind => kind.to_string(),
    }
}
